// cpu_vec.h: the vector helpers of the CPU ops (cpu.c, cpu_mixer.c): dot products and sums in a fixed order, so
// that results do not depend on the thread count or the compiler's choices.
#ifndef HGRN2_CPU_VEC_H
#define HGRN2_CPU_VEC_H

#include <math.h>
#include "common.h"

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// Columns per worker where the ops split a reduction over rows by columns (one thread owns each column's sum).
#define COLBLK 64

// gcc does not vectorise a floating-point sum (it may not reorder it), so the reductions keep LANES
// independent partial sums, which it holds in vector registers, combined by a fixed tree at the end (the
// tail goes to a separate scalar). The order depends only on n, so the result is deterministic.
#define LANES 16
static inline real hsum(const real *acc) {
    real h[8], q[4];
    for (int l = 0; l < 8; l++) h[l] = acc[l] + acc[l + 8];
    for (int l = 0; l < 4; l++) q[l] = h[l] + h[l + 4];
    return (q[0] + q[2]) + (q[1] + q[3]);
}
static inline real dot(const real *restrict a, const real *restrict b, int64_t n) {
    real acc[LANES] = {0}, tail = 0;
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) acc[l] += a[i + l] * b[i + l];
    for (; i < n; i++) tail += a[i] * b[i];
    return hsum(acc) + tail;
}
// sum of (a b) c in the lanes of dot: the same bits as dot of the stored products a b, without storing them
static inline real dot3(const real *restrict a, const real *restrict b, const real *restrict c, int64_t n) {
    real acc[LANES] = {0}, tail = 0;
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) acc[l] += (a[i + l] * b[i + l]) * c[i + l];
    for (; i < n; i++) tail += (a[i] * b[i]) * c[i];
    return hsum(acc) + tail;
}

// sum of squares accumulated in double, the same way
static inline double sumsq_d(const real *restrict a, int64_t n) {
    double acc[LANES] = {0}, h[8], q[4], tail = 0;
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) acc[l] += (double)a[i + l] * a[i + l];
    for (; i < n; i++) tail += (double)a[i] * a[i];
    for (int l = 0; l < 8; l++) h[l] = acc[l] + acc[l + 8];
    for (int l = 0; l < 4; l++) q[l] = h[l] + h[l + 4];
    return (q[0] + q[2]) + (q[1] + q[3]) + tail;
}

static inline void axpy(real *restrict y, real a, const real *restrict x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

// 1 / sqrt(mean(x^2) + eps) of a row of C values, the sum of squares in double (the RMSNorms)
static inline double rms_rstd(const real *x, int C, double eps) {
    return 1.0 / sqrt(sumsq_d(x, C) / C + eps);
}

#endif
