// tests/fd.h: what the op tests (test_ops.c, test_cls_ops.c) share: random inputs, central finite differences
// of a loss, and the check that 1, 2 and 3 threads give the same bits. Each program includes it once.
//
// Built in float64 (-DHGRN2_F64) the finite differences use the step FD_H = 1e-6: the truncation error is
// O(h^2) ~ 1e-12 and the rounding error O(eps |L| / h) ~ 1e-10 relative, so a correct backward lands near 1e-9
// and FD_TOL is 1e-6 of the largest gradient component (a wrong term shows up as O(1)). Built in float they are
// meaningless and skipped (each says so). EPS is the build's epsilon, for the tolerances of the other checks.
#ifndef HGRN2_TESTS_FD_H
#define HGRN2_TESTS_FD_H

#include "../common.h"
#include "../ops.h"
#include "check.h"
#include <math.h>
#include <omp.h>

#ifdef HGRN2_F64
#define EPS 2.220446049250313e-16
#define FD 1
#else
#define EPS 1.1920929e-07
#define FD 0
#endif
#define FD_H 1e-6
#define FD_TOL 1e-6

// ---- random numbers (splitmix64 of common.h), fixed seeds ----
static uint64_t rng;
static inline void seed(uint64_t s) { rng = s; }
static inline uint64_t next_u64(void) { return splitmix64(&rng); }
static inline double urand(void) { return rng_uniform(&rng); }
static inline double nrand(void) { return rng_normal(&rng); }

static inline real *rvec(int64_t n, double scale) {   // scale * normal
    real *p = xmalloc((size_t)n * sizeof(real));
    for (int64_t i = 0; i < n; i++) p[i] = (real)(scale * nrand());
    return p;
}
static inline real *zvec(int64_t n) { return xcalloc((size_t)n, sizeof(real)); }
static inline real *dup(const real *a, int64_t n) {
    real *p = xmalloc((size_t)n * sizeof(real));
    memcpy(p, a, (size_t)n * sizeof(real));
    return p;
}
static inline double wsum(const real *w, const real *y, int64_t n) {   // the loss sum(w * y)
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)w[i] * y[i];
    return s;
}
static inline double maxabs(const real *a, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fabs((double)a[i]) > m ? fabs((double)a[i]) : m;
    return m;
}

// max |a - b| / max |b| over n elements (NaN in a counts as the worst)
static inline double relerr(const real *a, const real *b, int64_t n) {
    double e = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        e = d > e || d != d ? d : e;
        m = fabs((double)b[i]) > m ? fabs((double)b[i]) : m;
    }
    return e / (m > 0 ? m : 1);
}

// ---- finite differences ----
// The loss is a function of a context; fd_err perturbs the rows x cols elements x[r*ldx + c] one at a time and
// compares with ana[r*lda + c]. Returns max |fd - ana| / max(max |ana|, gscale): gscale is the largest gradient
// component over all inputs of the op, so an input whose true gradient is zero (dg at T = 1) is measured
// against the size of the op's gradients instead of its own rounding noise.
typedef double (*loss_fn)(void *ctx);
static inline double fd_err(loss_fn f, void *ctx, real *x, int64_t rows, int64_t cols, int64_t ldx, const real *ana,
                            int64_t lda, double gscale) {
    double e = 0, m = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            real *xi = x + r * ldx + c, x0 = *xi;
            *xi = x0 + FD_H;
            double lp = f(ctx);
            *xi = x0 - FD_H;
            double lm = f(ctx);
            *xi = x0;
            double num = (lp - lm) / (2 * FD_H), a = ana[r * lda + c];
            double d = fabs(num - a);
            e = d > e || d != d ? d : e;
            m = fabs(a) > m ? fabs(a) : m;
        }
    m = m > gscale ? m : gscale;
    return e / (m > 0 ? m : 1);
}
// One check line for fd_err (or SKIP in the float build).
static inline void fd_scaled(const char *name, loss_fn f, void *ctx, real *x, int64_t rows, int64_t cols, int64_t ldx,
                             const real *ana, int64_t lda, double gscale) {
    if (!FD) { printf("SKIP %-64s (float build: finite differences need -DHGRN2_F64)\n", name); return; }
    near(name, fd_err(f, ctx, x, rows, cols, ldx, ana, lda, gscale), FD_TOL);
}
static inline void fd(const char *name, loss_fn f, void *ctx, real *x, int64_t rows, int64_t cols, int64_t ldx,
                      const real *ana, int64_t lda) {
    fd_scaled(name, f, ctx, x, rows, cols, ldx, ana, lda, 0);
}
// The n contiguous elements x[0..n) against ana[0..n).
static inline void fd_vec(const char *name, loss_fn f, void *ctx, real *x, int64_t n, const real *ana, double gscale) {
    fd_scaled(name, f, ctx, x, 1, n, 0, ana, 0, gscale);
}

// ---- determinism across thread counts: f writes nout values; 1, 2 and 3 threads must agree bit for bit ----
typedef void (*det_fn)(void *ctx, real *out);
static inline void det_check(const char *name, det_fn f, void *ctx, int64_t nout) {
    real *ref = zvec(nout), *out = zvec(nout);
    int prev = omp_get_max_threads(), same = 1;
    omp_set_num_threads(1);
    f(ctx, ref);
    for (int nt = 2; nt <= 3; nt++) {
        omp_set_num_threads(nt);
        f(ctx, out);
        same &= memcmp(out, ref, (size_t)nout * sizeof(real)) == 0;
    }
    omp_set_num_threads(prev);
    char full[160];
    snprintf(full, sizeof full, "determinism, 1, 2, 3 threads bit-identical: %s", name);
    near(full, !same, 0);
    free(ref); free(out);
}

#endif
