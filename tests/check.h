// tests/check.h: the checks the C test programs make and count (CHECK, near) and their closing summary.
// Each program includes it once; a failed check prints a line starting with FAIL and the program exits 1.
#ifndef HGRN2_TESTS_CHECK_H
#define HGRN2_TESTS_CHECK_H

#include <stdio.h>

static int check_passed = 0, check_failed = 0;

// A condition that must hold; when it does not: "FAIL file:line: " and the printf-style message.
#define CHECK(cond, ...)                                       \
    do {                                                       \
        if (cond) {                                            \
            check_passed++;                                    \
        } else {                                               \
            check_failed++;                                    \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);        \
            printf(__VA_ARGS__);                               \
            printf("\n");                                      \
        }                                                      \
    } while (0)

// A measured error against its tolerance: one line either way, PASS or FAIL with both numbers. NaN fails.
static inline void near(const char *name, double err, double tol) {
    int ok = err <= tol;
    printf("%s %-64s err %.3e  tol %.1e\n", ok ? "PASS" : "FAIL", name, err, tol);
    if (ok) check_passed++; else check_failed++;
}

// The last line, "PROG: N passed, M failed"; returns the exit status (1 on any failure).
static inline int check_summary(const char *prog) {
    printf("%s: %d passed, %d failed\n", prog, check_passed, check_failed);
    return check_failed ? 1 : 0;
}

#endif
