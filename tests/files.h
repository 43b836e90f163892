// tests/files.h: the files of the data tests (test_data, test_prepare, test_examples, test_lra): reading one
// whole, whether a folder holds a name, a FIFO, clearing a scratch folder. Each program includes it once.
#ifndef HGRN2_TESTS_FILES_H
#define HGRN2_TESTS_FILES_H

#include "../common.h"

#include <dirent.h>
#include <sys/stat.h>

typedef struct { uint8_t *p; size_t n; } Bytes;

// The whole of path, with a NUL after its n bytes (so that text can be searched); dies when it cannot be read.
static inline Bytes read_bytes(const char *path) {
    Bytes b = {0};
    FILE *f = fopen(path, "rb");
    if (!f) die("test: cannot open %s: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) die("test: cannot seek in %s", path);
    long n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) die("test: cannot seek in %s", path);
    b.n = (size_t)n;
    b.p = xmalloc(b.n + 1);
    if (fread(b.p, 1, b.n, f) != b.n) die("test: short read of %s", path);
    b.p[b.n] = 0;
    fclose(f);
    return b;
}

// Whether dir holds a file whose name contains frag (a missing dir holds none).
static inline int dir_has(const char *dir, const char *frag) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int found = 0;
    while ((e = readdir(d)))
        if (strstr(e->d_name, frag)) found = 1;
    closedir(d);
    return found;
}

// A named pipe at path: a file that blocks whoever opens it, for the readers that must refuse it.
static inline void make_fifo(const char *path) {
    if (mkfifo(path, 0666) != 0) die("test: mkfifo %s failed: %s", path, strerror(errno));
}

// Removes dir and everything under it, if it is there.
static inline void rmrf(const char *dir) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) die("test: %s failed", cmd);
}

#endif
