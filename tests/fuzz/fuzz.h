// fuzz.h: what every libFuzzer harness of tests/fuzz shares. Include it in exactly one file per harness
// (it defines the die() seam of common.h). Built with clang, -fsanitize=fuzzer,address,undefined and
// -DHGRN2_FUZZ: see the fuzz targets of the Makefile.
//
// The library reports bad input with die(), which in a fuzz build jumps back to the harness (common.h).
// A harness runs the library calls between FUZZ_TRY and FUZZ_END:
//
//     FUZZ_TRY { ...calls that may die... } FUZZ_END;
//
// When a call dies halfway it leaves behind what it had allocated and opened. So that thousands of
// rejected inputs a second do not add up to the memory limit, the allocations made inside FUZZ_TRY are
// recorded (the sanitizer's malloc and free hooks) and those still live after a die() are freed; the
// streams it had opened with fopen are closed first (they sit in libc's list of open streams, which exit
// walks: the harnesses link with -Wl,--wrap=fopen,--wrap=fclose), then the descriptors left open on the
// harness's scratch files. What escapes that (a table overflow) is tolerated: leak detection is off and
// tests/fuzz/run.sh restarts each target every minute. Library code that keeps an allocation in a global
// must not make it for the first time inside FUZZ_TRY (none of the fuzzed readers does).
#ifndef HGRN2_FUZZ_H
#define HGRN2_FUZZ_H

#ifndef HGRN2_FUZZ
#error "tests/fuzz harnesses are built with -DHGRN2_FUZZ (make fuzz)"
#endif

#include "common.h"
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sanitizer/allocator_interface.h>

jmp_buf *hgrn2_fuzz_die;
int hgrn2_fuzz_quiet;

static jmp_buf fuzz_jmp;

// ---- the allocations of one FUZZ_TRY: an open-addressing set of live pointers ----
#define TRACK_BITS 21
#define TRACK_SLOTS (1u << TRACK_BITS)
#define TRACK_MAX (TRACK_SLOTS / 2)          // inserts per FUZZ_TRY; past that the rest is not recorded
#define TRACK_GONE ((uintptr_t)1)            // a freed slot (probing goes on past it)
static uintptr_t *track_tab;                 // mmap'd: the hooks must not allocate
static uint32_t *track_used;                 // the slots written since the last reset
static size_t track_nused;
static volatile int track_on;
static pthread_t track_thread;               // only the harness's thread is recorded

static size_t track_slot(uintptr_t p) { return (size_t)(((p >> 4) * 0x9E3779B97F4A7C15ull) >> (64 - TRACK_BITS)); }

static void track_malloc(const volatile void *ptr, size_t n) {
    (void)n;
    if (!track_on || !ptr || !pthread_equal(pthread_self(), track_thread) || track_nused >= TRACK_MAX) return;
    size_t i = track_slot((uintptr_t)ptr);
    while (track_tab[i]) i = (i + 1) & (TRACK_SLOTS - 1);
    track_tab[i] = (uintptr_t)ptr;
    track_used[track_nused++] = (uint32_t)i;
}

static void track_free(const volatile void *ptr) {
    if (!track_on || !ptr) return;
    for (size_t i = track_slot((uintptr_t)ptr); track_tab[i]; i = (i + 1) & (TRACK_SLOTS - 1))
        if (track_tab[i] == (uintptr_t)ptr) { track_tab[i] = TRACK_GONE; return; }
}

static void track_reset(void) {
    for (size_t k = 0; k < track_nused; k++) track_tab[track_used[k]] = 0;
    track_nused = 0;
}

// Closes every descriptor still open on one of the scratch files (fuzz_path).
static void fuzz_close_scratch_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return;
    char prefix[64];
    int plen = snprintf(prefix, sizeof prefix, "hgrn2-fuzz-%d-", (int)getpid());
    int dfd = dirfd(d), fds[256], nfd = 0;
    struct dirent *e;
    while ((e = readdir(d)) && nfd < 256) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] == '.' || fd <= 2 || fd == dfd) continue;
        char link[64], target[512];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t k = readlink(link, target, sizeof target - 1);
        if (k <= 0) continue;
        target[k] = 0;
        const char *base = strrchr(target, '/');
        if (base && !strncmp(base + 1, prefix, (size_t)plen)) fds[nfd++] = fd;
    }
    closedir(d);
    for (int i = 0; i < nfd; i++) close(fds[i]);
}

// ---- the streams opened inside FUZZ_TRY and not yet closed ----
FILE *__real_fopen(const char *path, const char *mode);
int __real_fclose(FILE *f);
static FILE *open_files[64];
static int nopen_files;

FILE *__wrap_fopen(const char *path, const char *mode) {
    FILE *f = __real_fopen(path, mode);
    if (f && track_on && pthread_equal(pthread_self(), track_thread) && nopen_files < 64) open_files[nopen_files++] = f;
    return f;
}
int __wrap_fclose(FILE *f) {
    for (int i = 0; i < nopen_files; i++)
        if (open_files[i] == f) { open_files[i] = open_files[--nopen_files]; break; }
    return __real_fclose(f);
}

static void fuzz_begin(void) {
    nopen_files = 0;
    track_reset();
    track_on = 1;
    hgrn2_fuzz_die = &fuzz_jmp;
}
// After a die(): what the abandoned call still held.
static void fuzz_died(void) {
    while (nopen_files) __wrap_fclose(open_files[nopen_files - 1]);   // still recording: fclose's frees count
    track_on = 0;
    fuzz_close_scratch_fds();
    for (size_t k = 0; k < track_nused; k++) {
        uintptr_t p = track_tab[track_used[k]];
        if (p > TRACK_GONE) free((void *)p);
    }
}
static void fuzz_end(void) {
    track_on = 0;
    hgrn2_fuzz_die = NULL;
    track_reset();
}

#define FUZZ_TRY do { fuzz_begin(); if (setjmp(fuzz_jmp) == 0)
#define FUZZ_END else fuzz_died(); fuzz_end(); } while (0)

// die()'s messages are dropped unless HGRN2_FUZZ_VERBOSE is set (useful when replaying one input).
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    hgrn2_fuzz_quiet = getenv("HGRN2_FUZZ_VERBOSE") == NULL;
    track_tab = mmap(NULL, TRACK_SLOTS * sizeof *track_tab, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    track_used = mmap(NULL, TRACK_MAX * sizeof *track_used, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (track_tab == MAP_FAILED || track_used == MAP_FAILED) { perror("mmap"); abort(); }
    track_thread = pthread_self();
    if (!__sanitizer_install_malloc_and_free_hooks(track_malloc, track_free)) {
        fprintf(stderr, "fuzz: cannot install the sanitizer's malloc hooks\n");
        abort();
    }
    return 0;
}

// The harness's scratch files: /dev/shm/hgrn2-fuzz-PID-NAME (memory, not disk), one per name, removed at
// exit (tests/fuzz/run.sh removes those of a process that crashed).
static char fuzz_paths[4][256];
static const char *fuzz_names[4];
static void fuzz_remove_scratch(void) {
    for (int i = 0; i < 4; i++) if (fuzz_names[i]) unlink(fuzz_paths[i]);
}
static const char *fuzz_path(const char *name) {
    char (*paths)[256] = fuzz_paths;
    const char **names = fuzz_names;
    if (!names[0]) atexit(fuzz_remove_scratch);
    for (int i = 0; i < 4; i++) {
        if (names[i] && !strcmp(names[i], name)) return paths[i];
        if (!names[i]) {
            const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
            snprintf(paths[i], sizeof paths[i], "%s/hgrn2-fuzz-%d-%s", dir, (int)getpid(), name);
            names[i] = name;
            return paths[i];
        }
    }
    abort();   // a harness uses at most four names
}

// Writes data[0..n) to the scratch file NAME and returns its path.
static const char *fuzz_write(const char *name, const void *data, size_t n) {
    const char *path = fuzz_path(name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) { perror(path); abort(); }
    const char *p = data;
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k <= 0) { perror(path); abort(); }
        p += k;
        n -= (size_t)k;
    }
    close(fd);
    return path;
}

// fuzz_write of a copy of the input that seal() has given the checksum the format expects, so that mutations
// reach the fields behind it; HGRN2_FUZZ_RAW=1 writes the bytes as they are.
static const char *fuzz_write_sealed(const char *name, const uint8_t *data, size_t n, void (*seal)(uint8_t *, size_t)) {
    static int raw = -1;
    if (raw < 0) raw = getenv("HGRN2_FUZZ_RAW") != NULL;
    uint8_t *copy = malloc(n ? n : 1);
    if (!copy) abort();
    memcpy(copy, data, n);
    if (!raw) seal(copy, n);
    const char *path = fuzz_write(name, copy, n);
    free(copy);
    return path;
}

#endif
