// tests/child.h: running a piece of a test in a forked child under a memory cap and a time limit, its standard
// streams from and to files, and learning how it ended and how much memory it took; for error paths (which
// exit) and hostile inputs (which must not take the machine's memory or hang the suite). expect_death is the
// check most of them make. Each test program that forks includes it once (after check.h).
#ifndef HGRN2_TESTS_CHILD_H
#define HGRN2_TESTS_CHILD_H

#include "../common.h"
#include "check.h"

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

// How a child runs.
typedef struct {
    long cap_mib;           // how far its address space may grow, in MiB (0: no cap)
    unsigned alarm_s;       // SIGALRM ends it after this many seconds (0: no limit)
    const char *in_path;    // its standard input (NULL: /dev/null)
    const char *out_path;   // its standard output and error, created or truncated (NULL: /dev/null)
    const char *err_path;
} ChildSpec;

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
// A forked child inherits its parent's high-water mark, which may lie far above what the child holds: it is
// reset to the resident size first (clear_refs, Linux 4.0+), then the report at exit is set up.
static inline void child_start_peak(int fd) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
    g_child_start_kib = vm_kib("VmRSS");
    g_child_peak_fd = fd;
    atexit(child_send_peak);
}

// Runs fn(arg) in a child as s says. A cap makes a regression fail the test instead of taking the machine's
// memory, an alarm instead of hanging the suite. The child reports its peak memory at exit, whether fn
// returns, exits or dies (a child that execs reports none).
static inline ChildRun child_spawn(const ChildSpec *s, void (*fn)(const void *), const void *arg) {
    fflush(stdout);
    fflush(stderr);
    int fds[2];
    if (pipe(fds) != 0) die("pipe failed: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) die("fork failed: %s", strerror(errno));
    if (pid == 0) {
        close(fds[0]);
        int fin = open(s->in_path ? s->in_path : "/dev/null", O_RDONLY);
        int fout = open(s->out_path ? s->out_path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0666);
        int ferr = open(s->err_path ? s->err_path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0666);
        if (fin < 0 || fout < 0 || ferr < 0 || dup2(fin, 0) < 0 || dup2(fout, 1) < 0 || dup2(ferr, 2) < 0) _exit(99);
#ifndef UNDER_ASAN
        if (s->cap_mib > 0) {
            struct rlimit rl = { .rlim_cur = (rlim_t)(vm_kib("VmSize") + s->cap_mib * 1024) * 1024 };
            rl.rlim_max = rl.rlim_cur;
            if (setrlimit(RLIMIT_AS, &rl) != 0) _exit(97);
        }
#endif
        if (s->alarm_s) alarm(s->alarm_s);
        child_start_peak(fds[1]);
        fn(arg);
        fflush(NULL);
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

// child_spawn with no time limit, its address space allowed to grow by cap_mib.
static inline ChildRun child_run(void (*fn)(const void *), const void *arg, long cap_mib, const char *in_path,
                                 const char *out_path, const char *err_path) {
    ChildSpec s = { cap_mib, 0, in_path, out_path, err_path };
    return child_spawn(&s, fn, arg);
}

// The start of the file at path (what a child wrote), NUL-terminated, in buf[cap]; empty when it is missing.
static inline void child_text(const char *path, char *buf, size_t cap) {
    size_t n = 0;
    FILE *f = fopen(path, "rb");
    if (f) {
        n = fread(buf, 1, cap - 1, f);
        fclose(f);
    }
    buf[n] = 0;
}

// Runs fn(arg) as s says; returns its exit status (-1: ended by a signal) with the start of its standard error
// in msg[cap] (s->err_path must name a file).
static inline int child_status(const ChildSpec *s, void (*fn)(const void *), const void *arg, char *msg, size_t cap) {
    int status = child_spawn(s, fn, arg).status;
    child_text(s->err_path, msg, cap);
    return status;
}

// fn(arg), run as s says, must exit 1 with one "hgrn2: error:" message that holds both fragments (NULL: any)
// and does not blame a lack of memory: a failure must be a clean exit that says what is wrong, never a crash,
// a hang or a huge allocation. Three checks; SHOWMSG=1 in the environment prints every message.
static inline void expect_death(const ChildSpec *s, const char *what, void (*fn)(const void *), const void *arg,
                                const char *frag1, const char *frag2) {
    char msg[8192];
    int rc = child_status(s, fn, arg, msg, sizeof msg);
    if (getenv("SHOWMSG")) printf("[%s] %s", what, msg);
    CHECK(rc == 1 && strstr(msg, "hgrn2: error: ") && !strstr(msg, "out of memory"),
          "%s: expected exit 1 with an error message, got %s %d: %s", what, rc < 0 ? "a signal," : "status", rc, msg);
    CHECK(!frag1 || strstr(msg, frag1), "%s: the message lacks \"%s\": %s", what, frag1, msg);
    CHECK(!frag2 || strstr(msg, frag2), "%s: the message lacks \"%s\": %s", what, frag2, msg);
}

// Writes the n bytes at p to path (a child's input, a file under test).
static inline void spit(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) die("cannot create %s: %s", path, strerror(errno));
    if ((n && fwrite(p, 1, n, f) != n) || fclose(f) != 0) die("cannot write %s: %s", path, strerror(errno));
}

#endif
