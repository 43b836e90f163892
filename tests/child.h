// tests/child.h: running a piece of a test in a forked child under a memory cap, its standard streams from and to
// files, and learning how it ended and how much memory it took; for error paths (which exit) and hostile inputs
// (which must not take the machine's memory). Used by test_tokenizer.c and test_formats.c, each including it once.
#ifndef HGRN2_TESTS_CHILD_H
#define HGRN2_TESTS_CHILD_H

#include "../common.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

// AddressSanitizer reserves terabytes of address space, so the children cannot be capped with RLIMIT_AS under it:
// each program's __asan_default_options sets the sanitizer's own limits instead (an allocation too large fails,
// as malloc would under the cap).
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

// A field of /proc/self/status in KiB (VmSize, VmRSS, VmHWM), -1 when it is missing.
static inline long vm_kib(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) die("cannot open /proc/self/status: %s", strerror(errno));
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':') v = atol(line + n + 1);
    fclose(f);
    return v;
}

typedef struct {
    int status;        // the exit status, or -1 when a signal ended the child
    double peak_mib;   // its peak resident memory beyond what it had at its start, in MiB; -1 when not reported
} ChildRun;

// The child's peak memory (VmHWM at exit less VmRSS at its start), sent to the parent through a pipe at exit.
static int g_child_peak_fd = -1;
static long g_child_start_kib;
static inline void child_send_peak(void) {
    long d = vm_kib("VmHWM") - g_child_start_kib;
    if (g_child_peak_fd >= 0 && write(g_child_peak_fd, &d, sizeof d) != (ssize_t)sizeof d) _exit(98);
}

// Runs fn(arg) in a child with standard input from in_path (NULL: /dev/null) and standard output and error to
// out_path and err_path. Its address space may grow by at most cap_mib, so that a regression fails the test instead
// of taking the machine's memory. The child reports its peak memory at exit, whether fn returns or dies.
static inline ChildRun child_run(void (*fn)(const void *), const void *arg, long cap_mib, const char *in_path,
                                 const char *out_path, const char *err_path) {
    fflush(stdout);
    fflush(stderr);
    int fds[2];
    if (pipe(fds) != 0) die("pipe failed: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) die("fork failed: %s", strerror(errno));
    if (pid == 0) {
        close(fds[0]);
        int fin = open(in_path ? in_path : "/dev/null", O_RDONLY);
        int fout = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0666), ferr = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0666);
        if (fin < 0 || fout < 0 || ferr < 0 || dup2(fin, 0) < 0 || dup2(fout, 1) < 0 || dup2(ferr, 2) < 0) _exit(99);
#ifndef UNDER_ASAN
        struct rlimit rl = { .rlim_cur = (rlim_t)(vm_kib("VmSize") + cap_mib * 1024) * 1024 };
        rl.rlim_max = rl.rlim_cur;
        if (setrlimit(RLIMIT_AS, &rl) != 0) _exit(97);
#endif
        g_child_start_kib = vm_kib("VmRSS");
        g_child_peak_fd = fds[1];
        atexit(child_send_peak);
        fn(arg);
        fflush(stdout);
        child_send_peak();
        _exit(0);
    }
    close(fds[1]);
    ChildRun r = { -1, -1 };
    long d = -1;
    if (read(fds[0], &d, sizeof d) == (ssize_t)sizeof d) r.peak_mib = (double)d / 1024;
    close(fds[0]);
    int st;
    if (waitpid(pid, &st, 0) != pid) die("waitpid failed: %s", strerror(errno));
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return r;
}

// Writes the n bytes at p to path (a child's input, a file under test).
static inline void spit(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) die("cannot create %s: %s", path, strerror(errno));
    if ((n && fwrite(p, 1, n, f) != n) || fclose(f) != 0) die("cannot write %s: %s", path, strerror(errno));
}

#endif
