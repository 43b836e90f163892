// common.c: the helpers of common.h that every file shares: strings and paths, clocks, directories, random numbers.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

int g_dying;   // set by the first die() (common.h)
const char *g_prog_name = "hgrn2";

void die_wait(void) {
    for (;;) pause();
}

char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = xmalloc(n);
    memcpy(p, s, n);
    return p;
}

char *xasprintf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) die("formatting a string failed (%s)", fmt);
    char *p = xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void mkdir_p(const char *dir) {
    char *d = xstrdup(dir);
    for (char *s = d + 1;; s++) {
        if (*s != '/' && *s) continue;
        char c = *s;
        *s = 0;
        if (mkdir(d, 0777) != 0 && errno != EEXIST) die("cannot create directory %s: %s", d, strerror(errno));
        *s = c;
        if (!c) break;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) die("%s is not a directory", dir);
    free(d);
}

int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

char **dir_names(const char *dir, int (*keep)(const char *dir, const char *name, void *arg), void *arg, size_t *n) {
    DIR *d = opendir(dir);
    if (!d) die("cannot read folder %s: %s", dir, strerror(errno));
    char **names = NULL;
    size_t cap = 0;
    *n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.' || (keep && !keep(dir, de->d_name, arg))) continue;
        if (*n == cap) names = xrealloc(names, (cap = cap ? 2 * cap : 64) * sizeof *names);
        names[(*n)++] = xstrdup(de->d_name);
    }
    closedir(d);
    if (*n) qsort(names, *n, sizeof *names, cmp_names);
    return names;
}

int dir_keep_suffix(const char *dir, const char *name, void *suffix) {
    size_t n = strlen(name), k = strlen((const char *)suffix);
    return n > k && strcmp(name + n - k, (const char *)suffix) == 0;
}

void free_names(char **names, size_t n) {
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

void copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb");
    if (!in) die("cannot open %s: %s", from, strerror(errno));
    char *tmp = xasprintf("%s.tmp", to);
    FILE *f = fopen(tmp, "wb");
    if (!f) die("cannot create %s: %s", tmp, strerror(errno));
    char buf[1 << 16];
    size_t n;
    int ok = 1, e = 0;
    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0) ok = fwrite(buf, 1, n, f) == n;
    if (!ok) e = errno;
    if (ok && ferror(in)) { e = errno; unlink(tmp); die("reading %s failed: %s", from, strerror(e)); }
    fclose(in);
    if (ok && (fflush(f) != 0 || fsync(fileno(f)) != 0)) { ok = 0; e = errno; }
    if (fclose(f) != 0 && ok) { ok = 0; e = errno; }
    if (!ok) { unlink(tmp); die("writing %s failed: %s", tmp, strerror(e)); }
    if (rename(tmp, to) != 0) { e = errno; unlink(tmp); die("renaming %s to %s failed: %s", tmp, to, strerror(e)); }
    free(tmp);
}

void fmt_duration(char *buf, size_t n, double s) {
    if (s < 0 || !isfinite(s)) { snprintf(buf, n, "?"); return; }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
}

double bytes_mib(int64_t b) { return (double)b / (1024.0 * 1024.0); }

uint64_t mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

uint64_t splitmix64(uint64_t *s) {
    uint64_t x = *s;
    *s += 0x9E3779B97F4A7C15ull;
    return mix64(x);
}

double rng_uniform(uint64_t *s) { return (double)(splitmix64(s) >> 11) * (1.0 / 9007199254740992.0); }

void rng_polar(uint64_t *s, double *r, double *a) {
    double u1 = rng_uniform(s), u2 = rng_uniform(s);
    if (u1 < 1e-300) u1 = 1e-300;
    *r = sqrt(-2.0 * log(u1));
    *a = 2.0 * M_PI * u2;
}

double rng_normal(uint64_t *s) {
    double r, a;
    rng_polar(s, &r, &a);
    return r * cos(a);
}

int open_regular(const char *path, int64_t *size, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open: %s", strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "not a regular file");
        close(fd);
        return -1;
    }
    *size = (int64_t)st.st_size;
    return fd;
}

float bf16_to_f32(uint16_t h) { uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f; }
uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 0x40);  // NaN stays NaN
    u += 0x7fff + ((u >> 16) & 1);                                          // round to nearest even
    return (uint16_t)(u >> 16);
}
