// tests/test_cls_ops.c: checks the CPU ops of the classification model (cpu_cls.c): biases, LayerNorm,
// BatchNorm, GELU, sinusoidal positions, dropout, mean pooling, the document-pair features.
//
// Built by `make tests/bin/test_cls_ops` in float64 (-DHGRN2_F64): every backward is checked against central
// finite differences of its forward with the loss L = sum(wt * y) for random wt (so the backward runs with
// dy = wt; tests/fd.h: the step and the tolerance).
// Forwards are checked against direct formulas in long double with bounds derived from the rounding steps of
// the op (in units of the build's epsilon); the parallel ops must give the same bits with 1, 2 and 3 threads.
// The column scans of the 2-D mixer (op_hgru_cols_fwd/bwd, cpu.c) are checked against gathering the columns
// into column-major order, op_hgru_fwd/bwd and scattering back: the same arithmetic, so to 1e-12 relative.
// Built without -DHGRN2_F64 (float), the finite differences are skipped (each says so) and the rest runs with
// float's epsilon.
//
// Shapes include N = 1 and C = 1, odd sizes, and sizes that are not multiples of the column blocks (16) or the
// row-sum lanes (8). Exit status 1 when any check fails; one line per check with the error and the tolerance.
#include "fd.h"

static void check_same(const char *name, const void *a, const void *b, size_t bytes) {
    near(name, memcmp(a, b, bytes) != 0, 0);
}
static double maxd(double a, double b) { return a > b || a != a ? a : b; }   // keeps a NaN

// ======================================================================================================
// biases
// ======================================================================================================
typedef struct { real *y0, *y, *b, *wt; int64_t N; int C; } BiasCtx;
static double bias_loss(void *p) {
    BiasCtx *c = p;
    memcpy(c->y, c->y0, (size_t)(c->N * c->C) * sizeof(real));
    op_bias_add(c->y, c->b, c->N, c->C);
    return wsum(c->wt, c->y, c->N * c->C);
}
static void test_bias(int64_t N, int C) {
    seed(100 + N * 7 + C);
    char name[160];
    BiasCtx c = {.N = N, .C = C};
    c.y0 = rvec(N * C, 1); c.y = zvec(N * C); c.b = rvec(C, 1); c.wt = rvec(N * C, 1);
    // the add: one rounding per element, the same as the direct sum
    real *y = dup(c.y0, N * C), *yo = dup(c.y0, N * C), *ref = zvec(N * C);
    op_bias_add(y, c.b, N, C);
    op_bias_add_opnd(yo, c.b, N, C);
    for (int64_t n = 0; n < N; n++)
        for (int j = 0; j < C; j++) ref[n * C + j] = c.y0[n * C + j] + c.b[j];
    snprintf(name, sizeof name, "bias_add == y + b N=%lld C=%d", (long long)N, C);
    check_same(name, y, ref, (size_t)(N * C) * sizeof(real));
    snprintf(name, sizeof name, "bias_add_opnd == bias_add N=%lld C=%d", (long long)N, C);
    check_same(name, yo, y, (size_t)(N * C) * sizeof(real));
    // the column sums against a long double sum: a sum of N terms in double, then two roundings to real
    real *db0 = rvec(C, 1), *db = dup(db0, C), *dbo = dup(db0, C);
    op_bias_bwd(db, c.wt, N, C);
    op_bias_bwd_opnd(dbo, c.wt, N, C);
    double e = 0;
    for (int j = 0; j < C; j++) {
        long double s = db0[j], a = fabsl((long double)db0[j]);
        for (int64_t n = 0; n < N; n++) { s += c.wt[n * C + j]; a += fabsl((long double)c.wt[n * C + j]); }
        e = maxd(e, (double)(fabsl(db[j] - s) / a));
    }
    snprintf(name, sizeof name, "bias_bwd db += vs long double sum N=%lld C=%d (/ sum|.|)", (long long)N, C);
    near(name, e, 2 * EPS + N * 1.2e-16);
    snprintf(name, sizeof name, "bias_bwd_opnd == bias_bwd N=%lld C=%d", (long long)N, C);
    check_same(name, dbo, db, (size_t)C * sizeof(real));
    // finite differences: the backward is the adjoint of the add
    real *g = zvec(C);
    op_bias_bwd(g, c.wt, N, C);
    snprintf(name, sizeof name, "bias db (finite differences) N=%lld C=%d", (long long)N, C);
    fd_vec(name, bias_loss, &c, c.b, C, g, 0);
    free(c.y0); free(c.y); free(c.b); free(c.wt); free(y); free(yo); free(ref); free(db0); free(db); free(dbo); free(g);
}

// ======================================================================================================
// LayerNorm and BatchNorm
// ======================================================================================================
// Bound on a norm's output against the exact formula, per element, with u = eps / 2: the mean is rounded to
// real (u |m|), x - m rounds (u |x - m|), rstd (rounded from double statistics) and the products by it and by
// w three more times, the add of b once: |err| <= u (|w| r (|m| + 5 |x - m|) + |b|) to first order, where |m|
// is at most mean|x| = ma. The statistics' own error is a sum of K terms in double, K u_double relative at
// most, which matters only in the float64 build: norm_tol.
static double norm_err(double y, double x, double m, double r, double w, double b, double ma) {
    double ref = (x - m) * r * w + b, scale = fabs(w) * r * (fabs(x - m) + ma) + fabs(b);
    return fabs(y - ref) / (scale > 0 ? scale : 1);
}
static double norm_tol(int64_t K) { return 3 * EPS + 4 * K * 1.2e-16; }

// The checks of a norm's statistics and output against long double (the errors measured by the caller), with
// K values in each statistic: the mean a sum of K terms in double; the variance K squared deviations summed in
// double, the rstd then rounding once; the output bound at norm_err.
static void norm_fwd_checks(const char *op, const char *y, const char *shape, int64_t K, double em, double er,
                            double ey) {
    char name[160];
    snprintf(name, sizeof name, "%s mean vs long double %s (/ mean|x|)", op, shape);
    near(name, em, EPS + K * 1.2e-16);
    snprintf(name, sizeof name, "%s rstd vs long double %s (relative)", op, shape);
    near(name, er, EPS + 4 * K * 1.2e-16);
    snprintf(name, sizeof name, "%s %s vs long double %s (bound at norm_err)", op, y, shape);
    near(name, ey, norm_tol(K));
}

// The context of both norms' losses.
typedef struct { real *x, *w, *b, *wt, *y; int64_t N; int C; double eps; } NormCtx;

// The backward checks of both norms (their backward ops take the same arguments), from the forward's saved mean
// and rstd: dx, dw += and db += against finite differences of loss; acc = 1 adds the same term to what is there
// (the sum rounds once; allow one more rounding for a contraction the compiler may make differently in the two
// loops); one output at a time (the others NULL) gives the same bits.
typedef void (*norm_bwd_fn)(real *dx, int acc, real *dw, real *db, const real *dy, const real *x, const real *w,
                            const real *mean, const real *rstd, int64_t N, int C);
static void norm_bwd_checks(const char *op, const char *shape, norm_bwd_fn bwd, loss_fn loss, NormCtx *c,
                            const real *mean, const real *rstd) {
    int64_t N = c->N;
    int C = c->C;
    char name[160];
    real *dx = zvec(N * C), *dw0 = rvec(C, 1), *db0 = rvec(C, 1), *dw = dup(dw0, C), *db = dup(db0, C);
    bwd(dx, 0, dw, db, c->wt, c->x, c->w, mean, rstd, N, C);
    real *gw = zvec(C), *gb = zvec(C);
    for (int j = 0; j < C; j++) { gw[j] = dw[j] - dw0[j]; gb[j] = db[j] - db0[j]; }
    double gs = maxd(maxd(maxabs(dx, N * C), maxabs(gw, C)), maxabs(gb, C));
    snprintf(name, sizeof name, "%s dx (finite differences) %s", op, shape);
    fd_vec(name, loss, c, c->x, N * C, dx, gs);
    snprintf(name, sizeof name, "%s dw += (finite differences) %s", op, shape);
    fd_vec(name, loss, c, c->w, C, gw, gs);
    snprintf(name, sizeof name, "%s db += (finite differences) %s", op, shape);
    fd_vec(name, loss, c, c->b, C, gb, gs);
    real *dxp = rvec(N * C, 1), *dxa = dup(dxp, N * C), *dw2 = dup(dw0, C), *db2 = dup(db0, C), *dx2 = zvec(N * C);
    bwd(dxa, 1, NULL, NULL, c->wt, c->x, c->w, mean, rstd, N, C);
    double ea = 0;
    for (int64_t i = 0; i < N * C; i++) ea = maxd(ea, fabs(dxa[i] - (dxp[i] + dx[i])) / (fabs(dxp[i]) + fabs(dx[i]) + 1e-300));
    snprintf(name, sizeof name, "%s bwd acc=1 == prefilled dx + the acc=0 dx %s", op, shape);
    near(name, ea, 2 * EPS);
    bwd(NULL, 0, dw2, NULL, c->wt, c->x, c->w, mean, rstd, N, C);
    bwd(NULL, 0, NULL, db2, c->wt, c->x, c->w, mean, rstd, N, C);
    bwd(dx2, 0, NULL, NULL, c->wt, c->x, c->w, mean, rstd, N, C);
    snprintf(name, sizeof name, "%s bwd one output at a time: the same bits %s", op, shape);
    near(name, (double)(memcmp(dw2, dw, (size_t)C * sizeof(real)) != 0) + (memcmp(db2, db, (size_t)C * sizeof(real)) != 0) +
               (memcmp(dx2, dx, (size_t)(N * C) * sizeof(real)) != 0), 0);
    free(dx); free(dw0); free(db0); free(dw); free(db); free(gw); free(gb); free(dxp); free(dxa); free(dw2); free(db2);
    free(dx2);
}

static double ln_loss(void *p) {
    NormCtx *c = p;
    op_layernorm_fwd(c->y, NULL, NULL, c->x, NULL, c->w, c->b, c->N, c->C, c->eps);
    return wsum(c->wt, c->y, c->N * c->C);
}
// offset, scale: x = offset + scale * normal, to check the statistics away from 0
static void test_layernorm(int64_t N, int C, double offset, double scale) {
    seed(200 + N * 5 + C);
    char name[160], shape[64];
    snprintf(shape, sizeof shape, "N=%lld C=%d x=%g+%g*z", (long long)N, C, offset, scale);
    NormCtx c = {.N = N, .C = C, .eps = 1e-5};
    c.x = rvec(N * C, scale); c.w = rvec(C, 1); c.b = rvec(C, 1); c.wt = rvec(N * C, 1); c.y = zvec(N * C);
    for (int64_t i = 0; i < N * C; i++) c.x[i] += (real)offset;
    real *mean = zvec(N), *rstd = zvec(N);
    op_layernorm_fwd(c.y, mean, rstd, c.x, NULL, c.w, c.b, N, C, c.eps);
    // forward and statistics against long double two-pass formulas
    double ey = 0, em = 0, er = 0;
    for (int64_t n = 0; n < N; n++) {
        const real *xr = c.x + n * C;
        long double s = 0, q = 0, sa = 0;
        for (int j = 0; j < C; j++) { s += xr[j]; sa += fabsl((long double)xr[j]); }
        long double m = s / C;
        for (int j = 0; j < C; j++) q += (xr[j] - m) * (xr[j] - m);
        long double r = 1 / sqrtl(q / C + c.eps);
        em = maxd(em, (double)(fabsl(mean[n] - m) / (sa / C)));
        er = maxd(er, (double)(fabsl(rstd[n] - r) / r));
        for (int j = 0; j < C; j++)
            ey = maxd(ey, norm_err(c.y[n * C + j], xr[j], (double)m, (double)r, c.w[j], c.b[j], (double)(sa / C)));
    }
    norm_fwd_checks("layernorm", "y", shape, C, em, er, ey);
    // backward
    norm_bwd_checks("layernorm", shape, op_layernorm_bwd, ln_loss, &c, mean, rstd);
    // with a residual: x += res in place, then the norm of the sum, the same bits as the two steps
    real *res = rvec(N * C, 1), *xs = dup(c.x, N * C), *ys = zvec(N * C), *ms = zvec(N), *rs = zvec(N);
    op_layernorm_fwd(ys, ms, rs, xs, res, c.w, c.b, N, C, c.eps);
    for (int64_t i = 0; i < N * C; i++) c.x[i] += res[i];
    op_layernorm_fwd(c.y, mean, rstd, c.x, NULL, c.w, c.b, N, C, c.eps);
    snprintf(name, sizeof name, "layernorm fwd with res == add, then the norm %s", shape);
    near(name, (double)(memcmp(xs, c.x, (size_t)(N * C) * sizeof(real)) != 0) +
               (memcmp(ys, c.y, (size_t)(N * C) * sizeof(real)) != 0) + (memcmp(ms, mean, (size_t)N * sizeof(real)) != 0) +
               (memcmp(rs, rstd, (size_t)N * sizeof(real)) != 0), 0);
    free(c.x); free(c.w); free(c.b); free(c.wt); free(c.y); free(mean); free(rstd); free(res); free(xs); free(ys);
    free(ms); free(rs);
}

static double bn_loss(void *p) {
    NormCtx *c = p;
    op_batchnorm_fwd(c->y, NULL, NULL, NULL, NULL, c->x, NULL, c->w, c->b, c->N, c->C, rows_all(), c->eps, 0.1, 1);
    return wsum(c->wt, c->y, c->N * c->C);
}
// BatchNorm over the rows that exist (RowMask: sequence s of T positions has its first ext[s]): the same bits as
// BatchNorm over those rows alone, packed together in order, for y, the statistics, the running statistics, dx,
// dw and db; the other rows' y is the same affine map of x, their dx 0 (left alone with acc). op_rows_zero
// zeroes exactly their first `cols` values.
static void test_batchnorm_rows(int S, int T, int C) {
    seed(700 + S * 31 + T * 7 + C);
    char name[160], shape[64];
    snprintf(shape, sizeof shape, "S=%d T=%d C=%d", S, T, C);
    const int64_t N = (int64_t)S * T;
    int32_t *ext = xmalloc((size_t)S * sizeof(int32_t));
    int64_t nin = 0;
    for (int s = 0; s < S; s++) { ext[s] = 1 + (int)(urand() * T) % T; nin += ext[s]; }
    if (nin < 2) { ext[0] = T; nin += T - 1; }     // (T >= 2 in every call)
    const RowMask rows = {ext, T, nin};
    real *x = rvec(N * C, 1), *w = rvec(C, 1), *b = rvec(C, 1), *dy = rvec(N * C, 1), *res = rvec(N * C, 1);
    real *xp = zvec(nin * C), *dyp = zvec(nin * C), *resp = zvec(nin * C);
    for (int64_t n = 0, k = 0; n < N; n++)
        if (n % T < ext[n / T]) {
            memcpy(xp + k * C, x + n * C, (size_t)C * sizeof(real));
            memcpy(dyp + k * C, dy + n * C, (size_t)C * sizeof(real));
            memcpy(resp + k * C, res + n * C, (size_t)C * sizeof(real));
            k++;
        }
    real *y = zvec(N * C), *yp = zvec(nin * C), *m = zvec(C), *r = zvec(C), *mp = zvec(C), *rp = zvec(C);
    real *rm = rvec(C, 1), *rv = zvec(C);
    for (int j = 0; j < C; j++) rv[j] = (real)(0.5 + urand());
    real *rmp = dup(rm, C), *rvp = dup(rv, C);
    op_batchnorm_fwd(y, m, r, rm, rv, x, res, w, b, N, C, rows, 1e-5, 0.1, 1);
    op_batchnorm_fwd(yp, mp, rp, rmp, rvp, xp, resp, w, b, nin, C, rows_all(), 1e-5, 0.1, 1);
    real *dx = rvec(N * C, 1), *dx0 = dup(dx, N * C), *dxp = zvec(nin * C), *dxa = dup(dx, N * C), *dxpa = zvec(nin * C);
    real *dw = zvec(C), *db = zvec(C), *dwp = zvec(C), *dbp = zvec(C);
    op_batchnorm_bwd(dx, 0, dw, db, dy, x, w, m, r, N, C, rows);
    op_batchnorm_bwd(dxp, 0, dwp, dbp, dyp, xp, w, mp, rp, nin, C, rows_all());
    op_batchnorm_bwd(dxa, 1, NULL, NULL, dy, x, w, m, r, N, C, rows);
    double ey = 0, ea = 0, ed = 0, eda = 0, ez = 0;
    for (int64_t n = 0, k = 0; n < N; n++) {
        const int in = n % T < ext[n / T];
        for (int j = 0; j < C; j++) {
            const int64_t i = n * C + j;
            if (in) {
                ey += y[i] != yp[k * C + j];
                ea += x[i] != xp[k * C + j];
                ed += dx[i] != dxp[k * C + j];
                // (the add may be fused into the product: one rounding fewer)
                eda += fabs(dxa[i] - (dx0[i] + dxp[k * C + j])) > 2 * EPS * (fabs(dx0[i]) + fabs(dxp[k * C + j]));
            } else {
                const double want = ((double)x[i] - m[j]) * r[j] * w[j] + b[j];
                ey += fabs(y[i] - want) > 1e-4 * (1 + fabs(want));
                ez += dx[i] != 0;
                eda += dxa[i] != dx0[i];
            }
        }
        k += in;
    }
    snprintf(name, sizeof name, "batchnorm rows: y == packed rows' y, the others x's map %s", shape);
    near(name, ey, 0);
    snprintf(name, sizeof name, "batchnorm rows: x += res at the rows that exist as packed %s", shape);
    near(name, ea, 0);
    snprintf(name, sizeof name, "batchnorm rows: mean, rstd, running mean, var == packed %s", shape);
    near(name, (double)(memcmp(m, mp, (size_t)C * sizeof(real)) != 0) + (memcmp(r, rp, (size_t)C * sizeof(real)) != 0) +
               (memcmp(rm, rmp, (size_t)C * sizeof(real)) != 0) + (memcmp(rv, rvp, (size_t)C * sizeof(real)) != 0), 0);
    snprintf(name, sizeof name, "batchnorm rows: dx == packed rows' dx, 0 at the others %s", shape);
    near(name, ed + ez, 0);
    snprintf(name, sizeof name, "batchnorm rows: dx += (acc), the others left alone %s", shape);
    near(name, eda, 0);
    snprintf(name, sizeof name, "batchnorm rows: dw, db == packed %s", shape);
    near(name, (double)(memcmp(dw, dwp, (size_t)C * sizeof(real)) != 0) + (memcmp(db, dbp, (size_t)C * sizeof(real)) != 0), 0);
    // op_rows_zero on the first C - 1 columns of rows of C + 3
    const int ld = C + 3, cols = C > 1 ? C - 1 : 1;
    real *z = rvec(N * ld, 1), *z0 = dup(z, N * ld);
    op_rows_zero(z, ld, cols, rows, N);
    double bad = 0;
    for (int64_t n = 0; n < N; n++)
        for (int j = 0; j < ld; j++) {
            const int gone = n % T >= ext[n / T] && j < cols;
            bad += gone ? z[n * ld + j] != 0 : z[n * ld + j] != z0[n * ld + j];
        }
    snprintf(name, sizeof name, "rows_zero: the first %d of %d values of the rows that do not exist %s", cols, ld, shape);
    near(name, bad, 0);
    memcpy(z, z0, (size_t)(N * ld) * sizeof(real));
    op_rows_zero(z, ld, cols, rows_all(), N);
    snprintf(name, sizeof name, "rows_zero: every row exists, nothing changes %s", shape);
    check_same(name, z, z0, (size_t)(N * ld) * sizeof(real));
    free(ext); free(x); free(w); free(b); free(dy); free(res); free(xp); free(dyp); free(resp); free(y); free(yp);
    free(m); free(r); free(mp); free(rp); free(rm); free(rv); free(rmp); free(rvp); free(dx); free(dx0); free(dxp);
    free(dxa); free(dxpa); free(dw); free(db); free(dwp); free(dbp); free(z); free(z0);
}

// op_batchnorm_bwd over every row, in the shape of LayerNorm's backward (norm_bwd_checks)
static void bn_bwd_all(real *dx, int acc, real *dw, real *db, const real *dy, const real *x, const real *w,
                       const real *mean, const real *rstd, int64_t N, int C) {
    op_batchnorm_bwd(dx, acc, dw, db, dy, x, w, mean, rstd, N, C, rows_all());
}
static void test_batchnorm(int64_t N, int C, double offset, double scale) {
    seed(300 + N * 5 + C);
    char name[160], shape[64];
    snprintf(shape, sizeof shape, "N=%lld C=%d x=%g+%g*z", (long long)N, C, offset, scale);
    const double mom = 0.1;
    NormCtx c = {.N = N, .C = C, .eps = 1e-5};
    c.x = rvec(N * C, scale); c.w = rvec(C, 1); c.b = rvec(C, 1); c.wt = rvec(N * C, 1); c.y = zvec(N * C);
    for (int64_t i = 0; i < N * C; i++) c.x[i] += (real)offset;
    real *mean = zvec(C), *rstd = zvec(C), *rm0 = rvec(C, 1), *rv0 = zvec(C);
    for (int j = 0; j < C; j++) rv0[j] = (real)(0.5 + urand());
    real *rm = dup(rm0, C), *rv = dup(rv0, C);
    op_batchnorm_fwd(c.y, mean, rstd, rm, rv, c.x, NULL, c.w, c.b, N, C, rows_all(), c.eps, mom, 1);
    double ey = 0, em = 0, er = 0, erm = 0, erv = 0;
    for (int j = 0; j < C; j++) {
        long double s = 0, q = 0, sa = 0;
        for (int64_t n = 0; n < N; n++) { s += c.x[n * C + j]; sa += fabsl((long double)c.x[n * C + j]); }
        long double m = s / N;
        for (int64_t n = 0; n < N; n++) q += (c.x[n * C + j] - m) * (c.x[n * C + j] - m);
        long double var = q / N, r = 1 / sqrtl(var + c.eps);
        em = maxd(em, (double)(fabsl(mean[j] - m) / (sa / N)));
        er = maxd(er, (double)(fabsl(rstd[j] - r) / r));
        for (int64_t n = 0; n < N; n++)
            ey = maxd(ey, norm_err(c.y[n * C + j], c.x[n * C + j], (double)m, (double)r, c.w[j], c.b[j], (double)(sa / N)));
        // the running statistics: a few double operations, rounded once (relative to the sizes of the terms)
        long double rmr = (1 - mom) * (long double)rm0[j] + mom * m, rvr = (1 - mom) * (long double)rv0[j] + mom * var * N / (N - 1);
        erm = maxd(erm, (double)(fabsl(rm[j] - rmr) / ((1 - mom) * fabsl((long double)rm0[j]) + mom * sa / N)));
        erv = maxd(erv, (double)(fabsl(rv[j] - rvr) / rvr));
    }
    norm_fwd_checks("batchnorm", "y (training)", shape, N, em, er, ey);
    snprintf(name, sizeof name, "batchnorm running mean, momentum 0.1 %s", shape);
    near(name, erm, 2 * EPS + N * 1.2e-16);
    snprintf(name, sizeof name, "batchnorm running var (unbiased), momentum 0.1 %s", shape);
    near(name, erv, 2 * EPS + 4 * N * 1.2e-16);
    // eval mode: the running statistics, nothing else written
    real *ye = zvec(N * C), *me = dup(mean, C), *re = dup(rstd, C), *rm2 = dup(rm, C), *rv2 = dup(rv, C);
    op_batchnorm_fwd(ye, me, re, rm2, rv2, c.x, NULL, c.w, c.b, N, C, rows_all(), c.eps, mom, 0);
    double ee = 0;
    for (int j = 0; j < C; j++) {
        double r = 1 / sqrt((double)rv[j] + c.eps);
        for (int64_t n = 0; n < N; n++)
            ee = maxd(ee, norm_err(ye[n * C + j], c.x[n * C + j], rm[j], r, c.w[j], c.b[j], fabs((double)rm[j])));
    }
    snprintf(name, sizeof name, "batchnorm y (eval) vs formula %s (bound at norm_err)", shape);
    near(name, ee, norm_tol(1));
    snprintf(name, sizeof name, "batchnorm eval leaves mean, rstd, running stats alone %s", shape);
    near(name, (double)(memcmp(me, mean, (size_t)C * sizeof(real)) != 0) + (memcmp(re, rstd, (size_t)C * sizeof(real)) != 0) +
               (memcmp(rm2, rm, (size_t)C * sizeof(real)) != 0) + (memcmp(rv2, rv, (size_t)C * sizeof(real)) != 0), 0);
    // backward (training)
    norm_bwd_checks("batchnorm", shape, bn_bwd_all, bn_loss, &c, mean, rstd);
    // with a residual, in both modes
    real *res = rvec(N * C, 1);
    for (int train = 1; train >= 0; train--) {
        real *xs = dup(c.x, N * C), *xa = dup(c.x, N * C), *ys = zvec(N * C), *ya = zvec(N * C);
        real *ms = zvec(C), *rs = zvec(C), *ma = zvec(C), *ra = zvec(C);
        real *rms = dup(rm0, C), *rvs = dup(rv0, C), *rma = dup(rm0, C), *rva = dup(rv0, C);
        op_batchnorm_fwd(ys, ms, rs, rms, rvs, xs, res, c.w, c.b, N, C, rows_all(), c.eps, mom, train);
        for (int64_t i = 0; i < N * C; i++) xa[i] += res[i];
        op_batchnorm_fwd(ya, ma, ra, rma, rva, xa, NULL, c.w, c.b, N, C, rows_all(), c.eps, mom, train);
        snprintf(name, sizeof name, "batchnorm fwd (%s) with res == add, then the norm %s", train ? "train" : "eval", shape);
        near(name, (double)(memcmp(xs, xa, (size_t)(N * C) * sizeof(real)) != 0) +
                   (memcmp(ys, ya, (size_t)(N * C) * sizeof(real)) != 0) + (memcmp(ms, ma, (size_t)C * sizeof(real)) != 0) +
                   (memcmp(rs, ra, (size_t)C * sizeof(real)) != 0) + (memcmp(rms, rma, (size_t)C * sizeof(real)) != 0) +
                   (memcmp(rvs, rva, (size_t)C * sizeof(real)) != 0), 0);
        free(xs); free(xa); free(ys); free(ya); free(ms); free(rs); free(ma); free(ra); free(rms); free(rvs); free(rma); free(rva);
    }
    free(c.x); free(c.w); free(c.b); free(c.wt); free(c.y); free(mean); free(rstd); free(rm0); free(rv0); free(rm); free(rv);
    free(ye); free(me); free(re); free(rm2); free(rv2); free(res);
}

// ======================================================================================================
// GELU
// ======================================================================================================
typedef struct { real *x, *wt, *y; int64_t n; } GeluCtx;
static double gelu_loss(void *p) {
    GeluCtx *c = p;
    op_gelu_fwd(c->y, c->x, c->n);
    return wsum(c->wt, c->y, c->n);
}
static void test_gelu(void) {
    printf("-- gelu (seed 400)\n");
    seed(400);
    GeluCtx c = {.n = 1001};
    c.x = rvec(c.n, 3); c.wt = rvec(c.n, 1); c.y = zvec(c.n);
    c.x[0] = 0; c.x[1] = -12; c.x[2] = 12; c.x[3] = (real)-0.7517915;   // 0, the tails, near the zero of the slope
    op_gelu_fwd(c.y, c.x, c.n);
    real *dx = zvec(c.n);
    op_gelu_bwd(dx, c.wt, c.x, c.n);
    // against long double: the rounding of z = -x / sqrt 2 (relative eps) moves erfc(z) by 2 z^2 eps relative
    // (d log erfc / dz ~ -2z), erfc and exp are within a few ulps, a few products round: 8 + 2 z^2 eps
    double ef = 0, eb = 0;
    for (int64_t i = 0; i < c.n; i++) {
        long double x = c.x[i], z = -x / sqrtl(2), cdf = erfcl(z) / 2, pdf = expl(-x * x / 2) / sqrtl(2 * M_PI);
        double tol = (8 + 2 * (double)(z * z)) * EPS;
        ef = maxd(ef, (double)(fabsl(c.y[i] - x * cdf) / (fabsl(x * cdf) + 1e-300)) / tol);
        // the slope Phi + x phi cancels near x = -0.75: relative to the size of its terms
        long double d = c.wt[i] * (cdf + x * pdf), sc = fabsl((long double)c.wt[i]) * (cdf + fabsl(x) * pdf);
        eb = maxd(eb, (double)(fabsl(dx[i] - d) / (sc + 1e-300)) / tol);
    }
    near("gelu fwd vs long double x erfc(-x/sqrt2)/2 (in units of the bound)", ef, 1);
    near("gelu bwd vs long double dy (Phi + x phi) (in units of the bound)", eb, 1);
    fd_vec("gelu dx (finite differences)", gelu_loss, &c, c.x, c.n, dx, 0);
    real *a = dup(c.wt, c.n);
    op_gelu_bwd(a, a, c.x, c.n);
    check_same("gelu bwd in place (dx == dy) gives the same bits", a, dx, (size_t)c.n * sizeof(real));
    free(c.x); free(c.wt); free(c.y); free(dx); free(a);
}

// ======================================================================================================
// sinusoidal positions
// ======================================================================================================
typedef struct { real *x, *x0, *wt; int B, T, D; } PosCtx;
static double pos_loss(void *p) {
    PosCtx *c = p;
    int64_t n = (int64_t)c->B * c->T * c->D;
    real *y = dup(c->x, n);
    op_add_positions(y, c->B, c->T, c->D);
    double l = wsum(c->wt, y, n);
    free(y);
    return l;
}
static void test_positions(int B, int T, int D) {
    seed(500 + B + T + D);
    char name[160], shape[64];
    snprintf(shape, sizeof shape, "B=%d T=%d D=%d", B, T, D);
    int64_t n = (int64_t)B * T * D;
    // on zeros: PE itself, against long double: a value <= 1 rounded once (eps / 2), plus the error of the
    // double angle t 10000^(-2i/D), about 12 double ulps of it (the exponent's rounding times ln 10000 ~ 9.2,
    // pow's ulp, the product), t 2e-15 at most
    real *z = zvec(n), *x = rvec(n, 1), *y = dup(x, n);
    op_add_positions(z, B, T, D);
    op_add_positions(y, B, T, D);
    double ep = 0, ey = 0;
    int exact0 = 1;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int d = 0; d < D; d++) {
                int64_t i = ((int64_t)b * T + t) * D + d;
                long double a = t * powl(10000.0L, -(long double)(2 * (d / 2)) / D);
                long double pe = d % 2 ? cosl(a) : sinl(a);
                ep = maxd(ep, (double)fabsl(z[i] - pe));
                // x + PE rounds once more
                ey = maxd(ey, (double)(fabsl(y[i] - (x[i] + pe)) / (fabsl((long double)x[i]) + 1)));
                if (t == 0) exact0 &= z[i] == (d % 2 ? 1 : 0);
            }
    snprintf(name, sizeof name, "positions on zeros vs long double sin/cos %s (absolute)", shape);
    near(name, ep, EPS + T * 2e-15);
    snprintf(name, sizeof name, "positions x + PE vs long double %s (/ (|x| + 1))", shape);
    near(name, ey, 2 * EPS + T * 2e-15);
    snprintf(name, sizeof name, "positions at t = 0: exactly 0 (sin), 1 (cos) %s", shape);
    near(name, !exact0, 0);
    // no backward op: dL/dx = dL/dy, which the finite differences confirm
    if (n <= 4096) {
        PosCtx c = {.x = x, .B = B, .T = T, .D = D};
        c.wt = rvec(n, 1);
        snprintf(name, sizeof name, "positions: the gradient passes through (finite differences) %s", shape);
        fd_vec(name, pos_loss, &c, c.x, n, c.wt, 0);
        free(c.wt);
    }
    free(z); free(x); free(y);
}

// ======================================================================================================
// dropout
// ======================================================================================================
static int dropped(uint64_t seed_, int64_t i, double p) {   // the definition in ops.h, written out
    return (mix64(mix64(seed_) ^ (uint64_t)i) >> 32) < (uint64_t)(p * 4294967296.0);
}
typedef struct { real *x, *wt, *y; int64_t n; double p; uint64_t s; } DropCtx;
static double drop_loss(void *p) {
    DropCtx *c = p;
    op_dropout_fwd(c->y, c->x, c->n, c->p, c->s);
    return wsum(c->wt, c->y, c->n);
}
static void test_dropout(void) {
    printf("-- dropout (seed 600)\n");
    seed(600);
    char name[160];
    const int64_t n = 1000003;
    real *x = rvec(n, 1), *y = zvec(n), *y2 = zvec(n);
    // p = 0: an exact copy, in place too
    op_dropout_fwd(y, x, n, 0, 7);
    check_same("dropout p = 0 is an exact copy", y, x, (size_t)n * sizeof(real));
    memcpy(y, x, (size_t)n * sizeof(real));
    op_dropout_fwd(y, y, n, 0, 7);
    check_same("dropout p = 0 in place leaves x as it is", y, x, (size_t)n * sizeof(real));
    const double ps[] = {0.1, 0.5, 0.9};
    for (int k = 0; k < 3; k++) {
        double p = ps[k];
        uint64_t s = 1234 + k;
        real scale = (real)(1.0 / (1.0 - p));
        op_dropout_fwd(y, x, n, p, s);
        int64_t kept = 0, bad = 0;
        for (int64_t i = 0; i < n; i++) {
            int drop = dropped(s, i, p);
            kept += !drop;
            real want = drop ? 0 : x[i] * scale;
            bad += memcmp(&y[i], &want, sizeof(real)) != 0;
        }
        snprintf(name, sizeof name, "dropout p=%.1f: y = x / (1 - p) or 0 by the mask of ops.h, bit for bit", p);
        near(name, (double)bad, 0);
        // kept ~ Binomial(n, 1 - p): 5 standard deviations
        double sd = sqrt(n * p * (1 - p));
        snprintf(name, sizeof name, "dropout p=%.1f: kept fraction (in standard deviations of n (1-p))", p);
        near(name, fabs(kept - n * (1 - p)) / sd, 5);
        // the next seed draws an independent mask, not a shifted one: agreement ~ p^2 + (1-p)^2
        int64_t same = 0, shifted = 0;
        for (int64_t i = 0; i + 1 < n; i++) {
            int a = dropped(s, i, p);
            same += a == dropped(s + 1, i, p);
            shifted += a == dropped(s + 1, i + 1, p);
        }
        double agree = p * p + (1 - p) * (1 - p), sda = sqrt(n * agree * (1 - agree));
        snprintf(name, sizeof name, "dropout p=%.1f: seeds s, s+1 independent (st. dev. from p^2 + (1-p)^2)", p);
        near(name, maxd(fabs(same - n * agree), fabs(shifted - n * agree)) / sda, 5);
        // in place, and the backward: the same mask on dy
        memcpy(y2, x, (size_t)n * sizeof(real));
        op_dropout_fwd(y2, y2, n, p, s);
        snprintf(name, sizeof name, "dropout p=%.1f in place gives the same bits", p);
        check_same(name, y2, y, (size_t)n * sizeof(real));
        op_dropout_bwd(y2, x, n, p, s);
        snprintf(name, sizeof name, "dropout p=%.1f bwd (same seed) == the forward's mask on dy", p);
        check_same(name, y2, y, (size_t)n * sizeof(real));
    }
    DropCtx c = {.n = 777, .p = 0.3, .s = 99};
    c.x = rvec(c.n, 1); c.wt = rvec(c.n, 1); c.y = zvec(c.n);
    real *dx = zvec(c.n);
    op_dropout_bwd(dx, c.wt, c.n, c.p, c.s);
    fd_vec("dropout dx, p = 0.3 (finite differences)", drop_loss, &c, c.x, c.n, dx, 0);
    free(x); free(y); free(y2); free(c.x); free(c.wt); free(c.y); free(dx);
}

// ======================================================================================================
// mean pooling
// ======================================================================================================
typedef struct { real *x, *wt, *y; int32_t *lens; int B, T, D; } PoolCtx;
static double pool_loss(void *p) {
    PoolCtx *c = p;
    op_pool_mean_fwd(c->y, c->x, c->lens, c->B, c->T, c->D);
    return wsum(c->wt, c->y, (int64_t)c->B * c->D);
}
static void test_pool(int B, int T, int D) {
    seed(700 + B + T * 3 + D);
    char name[160], shape[64];
    snprintf(shape, sizeof shape, "B=%d T=%d D=%d", B, T, D);
    int64_t n = (int64_t)B * T * D;
    PoolCtx c = {.B = B, .T = T, .D = D};
    c.x = rvec(n, 1); c.wt = rvec((int64_t)B * D, 1); c.y = zvec((int64_t)B * D);
    c.lens = xmalloc((size_t)B * sizeof(int32_t));
    for (int b = 0; b < B; b++) c.lens[b] = b == 0 ? T : b == 1 ? 1 : 1 + (int32_t)(next_u64() % T);
    op_pool_mean_fwd(c.y, c.x, c.lens, B, T, D);
    // a sum of L terms in double, a division and a rounding: (L + 2) double ulps and half a real one
    double e = 0;
    for (int b = 0; b < B; b++)
        for (int d = 0; d < D; d++) {
            long double s = 0, a = 0;
            for (int t = 0; t < c.lens[b]; t++) {
                long double v = c.x[((int64_t)b * T + t) * D + d];
                s += v;
                a += fabsl(v);
            }
            e = maxd(e, (double)(fabsl(c.y[(int64_t)b * D + d] - s / c.lens[b]) / (a / c.lens[b])));
        }
    snprintf(name, sizeof name, "pool_mean fwd vs long double %s (/ mean|x|)", shape);
    near(name, e, EPS + (T + 2) * 1.2e-16);
    // padding is ignored: other values there change nothing
    real *xp = dup(c.x, n), *yp = zvec((int64_t)B * D);
    for (int b = 0; b < B; b++)
        for (int64_t i = ((int64_t)b * T + c.lens[b]) * D; i < (int64_t)(b + 1) * T * D; i++) xp[i] = (real)1e30;
    op_pool_mean_fwd(yp, xp, c.lens, B, T, D);
    snprintf(name, sizeof name, "pool_mean fwd ignores the padded positions %s", shape);
    check_same(name, yp, c.y, (size_t)B * D * sizeof(real));
    // lens NULL: every position
    int32_t *full = xmalloc((size_t)B * sizeof(int32_t));
    for (int b = 0; b < B; b++) full[b] = T;
    op_pool_mean_fwd(c.y, c.x, full, B, T, D);
    op_pool_mean_fwd(yp, c.x, NULL, B, T, D);
    snprintf(name, sizeof name, "pool_mean fwd lens NULL == every length T %s", shape);
    check_same(name, yp, c.y, (size_t)B * D * sizeof(real));
    // backward: dy / L at the valid positions, exactly 0 at the padded ones
    real *dx = rvec(n, 1);   // garbage first: the op writes every element
    op_pool_mean_bwd(dx, c.wt, c.lens, B, T, D);
    int64_t bad = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int d = 0; d < D; d++) {
                real want = t < c.lens[b] ? c.wt[(int64_t)b * D + d] / (real)c.lens[b] : 0;
                bad += memcmp(&dx[((int64_t)b * T + t) * D + d], &want, sizeof(real)) != 0;
            }
    snprintf(name, sizeof name, "pool_mean bwd = dy / L on valid positions, 0 on padding %s", shape);
    near(name, (double)bad, 0);
    if (n <= 5000) {
        snprintf(name, sizeof name, "pool_mean dx (finite differences) %s", shape);
        fd_vec(name, pool_loss, &c, c.x, n, dx, 0);
    }
    free(c.x); free(c.wt); free(c.y); free(c.lens); free(xp); free(yp); free(full); free(dx);
}

// ======================================================================================================
// the document-pair features
// ======================================================================================================
typedef struct { real *a, *b, *wt, *f; int B, D; } PairCtx;
static double pair_loss(void *p) {
    PairCtx *c = p;
    op_pair_features_fwd(c->f, c->a, c->b, c->B, c->D);
    return wsum(c->wt, c->f, (int64_t)c->B * 4 * c->D);
}
static void test_pair(int B, int D) {
    seed(800 + B + D);
    char name[160], shape[64];
    snprintf(shape, sizeof shape, "B=%d D=%d", B, D);
    int64_t n = (int64_t)B * D;
    PairCtx c = {.B = B, .D = D};
    c.a = rvec(n, 1); c.b = rvec(n, 1); c.wt = rvec(4 * n, 1); c.f = zvec(4 * n);
    op_pair_features_fwd(c.f, c.a, c.b, B, D);
    int64_t bad = 0;
    for (int i = 0; i < B; i++)
        for (int d = 0; d < D; d++) {
            real av = c.a[(int64_t)i * D + d], bv = c.b[(int64_t)i * D + d], *fr = c.f + (int64_t)i * 4 * D;
            real want[4] = {av, bv, av - bv, av * bv};
            for (int k = 0; k < 4; k++) bad += memcmp(&fr[k * D + d], &want[k], sizeof(real)) != 0;
        }
    snprintf(name, sizeof name, "pair_features fwd == [a, b, a - b, a * b] %s", shape);
    near(name, (double)bad, 0);
    real *da = rvec(n, 1), *db = rvec(n, 1);   // garbage first: (=)
    op_pair_features_bwd(da, db, c.wt, c.a, c.b, B, D);
    // two adds and a product: 3 roundings of terms at most |g0| + |g2| + |g3 b|
    double e = 0;
    for (int i = 0; i < B; i++)
        for (int d = 0; d < D; d++) {
            const real *g = c.wt + (int64_t)i * 4 * D;
            int64_t j = (int64_t)i * D + d;
            long double ra = (long double)g[d] + g[2 * D + d] + (long double)g[3 * D + d] * c.b[j];
            long double rb = (long double)g[D + d] - g[2 * D + d] + (long double)g[3 * D + d] * c.a[j];
            long double sa = fabsl((long double)g[d]) + fabsl((long double)g[2 * D + d]) + fabsl((long double)g[3 * D + d] * c.b[j]);
            long double sb = fabsl((long double)g[D + d]) + fabsl((long double)g[2 * D + d]) + fabsl((long double)g[3 * D + d] * c.a[j]);
            e = maxd(e, (double)(fabsl(da[j] - ra) / sa));
            e = maxd(e, (double)(fabsl(db[j] - rb) / sb));
        }
    snprintf(name, sizeof name, "pair_features bwd vs long double %s (/ sum of |terms|)", shape);
    near(name, e, 3 * EPS);
    snprintf(name, sizeof name, "pair_features da (finite differences) %s", shape);
    fd_vec(name, pair_loss, &c, c.a, n, da, maxabs(db, n));
    snprintf(name, sizeof name, "pair_features db (finite differences) %s", shape);
    fd_vec(name, pair_loss, &c, c.b, n, db, maxabs(da, n));
    free(c.a); free(c.b); free(c.wt); free(c.f); free(da); free(db);
}

// ======================================================================================================
// determinism across thread counts
// ======================================================================================================
typedef struct { real *x, *dy, *w, *b, *res, *rm, *rv; int32_t *lens; int64_t N; int C, B, T; } Det;
static void det_bias(void *p, real *out) {
    Det *c = p;
    memset(out, 0, (size_t)c->C * sizeof(real));
    op_bias_bwd(out, c->dy, c->N, c->C);
}
static void det_ln(void *p, real *out) {   // y, mean, rstd, x (with res), dx, dw, db
    Det *c = p;
    int64_t NC = c->N * c->C;
    real *y = out, *m = y + NC, *r = m + c->N, *x = r + c->N, *dx = x + NC, *dw = dx + NC, *db = dw + c->C;
    memcpy(x, c->x, (size_t)NC * sizeof(real));
    op_layernorm_fwd(y, m, r, x, c->res, c->w, c->b, c->N, c->C, 1e-5);
    memset(dw, 0, 2 * (size_t)c->C * sizeof(real));
    op_layernorm_bwd(dx, 0, dw, db, c->dy, x, c->w, m, r, c->N, c->C);
}
static void det_bn(void *p, real *out) {   // y, mean, rstd, running mean, var, x (with res), dx, dw, db
    Det *c = p;
    int64_t NC = c->N * c->C;
    real *y = out, *m = y + NC, *r = m + c->C, *rm = r + c->C, *rv = rm + c->C, *x = rv + c->C, *dx = x + NC,
         *dw = dx + NC, *db = dw + c->C;
    memcpy(x, c->x, (size_t)NC * sizeof(real));
    memcpy(rm, c->rm, (size_t)c->C * sizeof(real));
    memcpy(rv, c->rv, (size_t)c->C * sizeof(real));
    op_batchnorm_fwd(y, m, r, rm, rv, x, c->res, c->w, c->b, c->N, c->C, rows_all(), 1e-5, 0.1, 1);
    memset(dw, 0, 2 * (size_t)c->C * sizeof(real));
    op_batchnorm_bwd(dx, 0, dw, db, c->dy, x, c->w, m, r, c->N, c->C, rows_all());
}
static void det_pointwise(void *p, real *out) {   // GELU fwd and bwd, dropout, positions, pooling fwd and bwd
    Det *c = p;
    int64_t NC = c->N * c->C;
    real *g = out, *gd = g + NC, *dr = gd + NC, *pos = dr + NC, *pool = pos + NC, *pd = pool + (int64_t)c->B * c->C;
    op_gelu_fwd(g, c->x, NC);
    op_gelu_bwd(gd, c->dy, c->x, NC);
    op_dropout_fwd(dr, c->x, NC, 0.25, 5);
    memcpy(pos, c->x, (size_t)NC * sizeof(real));
    op_add_positions(pos, c->B, c->T, c->C);
    op_pool_mean_fwd(pool, c->x, c->lens, c->B, c->T, c->C);
    op_pool_mean_bwd(pd, c->dy, c->lens, c->B, c->T, c->C);
}
static void test_determinism(void) {
    printf("-- determinism (seed 900)\n");
    seed(900);
    Det c = {.B = 7, .T = 143, .C = 300};
    c.N = (int64_t)c.B * c.T;
    int64_t NC = c.N * c.C;
    c.x = rvec(NC, 1); c.dy = rvec(NC, 1); c.res = rvec(NC, 1); c.w = rvec(c.C, 1); c.b = rvec(c.C, 1);
    c.rm = rvec(c.C, 1); c.rv = rvec(c.C, 1);
    for (int j = 0; j < c.C; j++) c.rv[j] = (real)fabs(c.rv[j]) + 1;
    c.lens = xmalloc((size_t)c.B * sizeof(int32_t));
    for (int b = 0; b < c.B; b++) c.lens[b] = 1 + (int32_t)(next_u64() % c.T);
    det_check("bias bwd (db +=)", det_bias, &c, c.C);
    det_check("layernorm fwd (res) and bwd", det_ln, &c, 3 * NC + 2 * c.N + 2 * c.C);
    det_check("batchnorm fwd (res, training) and bwd", det_bn, &c, 3 * NC + 6 * c.C);
    det_check("gelu, dropout, positions, pool_mean", det_pointwise, &c, 4 * NC + (int64_t)c.B * c.C + NC);
    free(c.x); free(c.dy); free(c.res); free(c.w); free(c.b); free(c.rm); free(c.rv); free(c.lens);
}

// ======================================================================================================
// the column scans (op_hgru_cols_fwd/bwd) against gather + op_hgru_fwd/bwd + scatter
// ======================================================================================================
// max |a - b| over the rows [n][cols] of stride ld, relative to max |b| (1 when b is all zero)
static double rel_err(const real *a, const real *b, int64_t n, int cols, int64_t ld) {
    double e = 0, m = 0;
    for (int64_t r = 0; r < n; r++)
        for (int j = 0; j < cols; j++) {
            e = maxd(e, fabs((double)a[r * ld + j] - (double)b[r * ld + j]));
            m = maxd(m, fabs((double)b[r * ld + j]));
        }
    return e / (m > 0 ? m : 1);
}
// the gaps of rows of stride ld past their first cols values: equal (bits) in a and b
static int gaps_same(const real *a, const real *b, int64_t n, int cols, int64_t ld) {
    for (int64_t r = 0; r < n; r++)
        if (memcmp(a + r * ld + cols, b + r * ld + cols, (size_t)(ld - cols) * sizeof(real))) return 0;
    return 1;
}
// rows of width w: dst[n] = src[perm[n]] (gather), or dst[perm[n]] = or += src[n] (scatter)
static void gather(real *dst, const real *src, const int64_t *perm, int64_t N, int64_t w) {
    for (int64_t n = 0; n < N; n++) memcpy(dst + n * w, src + perm[n] * w, (size_t)w * sizeof(real));
}
static void scatter(real *dst, const real *src, const int64_t *perm, int64_t N, int cols, int64_t ld, int acc) {
    for (int64_t n = 0; n < N; n++)
        for (int j = 0; j < cols; j++) {
            real *d = dst + perm[n] * ld + j;
            *d = acc ? *d + src[n * ld + j] : src[n * ld + j];
        }
}

static void test_cols(int S, int gh, int gw, int H, int K, int Dv, int chunk, int reverse, int acc) {
    const int64_t N = (int64_t)S * gh * gw, HK = (int64_t)H * K, HD = (int64_t)H * Dv;
    const int64_t ldv = HD + 3, lddv = HD + 2;   // gaps that must stay untouched
    int64_t *perm = xmalloc((size_t)N * sizeof(int64_t));   // column-major order: image, column, row
    for (int64_t s = 0, n = 0; s < S; s++)
        for (int c = 0; c < gw; c++)
            for (int r = 0; r < gh; r++) perm[n++] = (s * gh + r) * gw + c;
    real *q = rvec(N * HK, 1), *k = zvec(N * HK), *g = zvec(N * HK), *v = rvec(N * ldv, 1), *dout = rvec(N * HD, 1);
    for (int64_t i = 0; i < N * HK; i++) {   // gates as the model makes them: g = log(lam) < 0, k = 1 - lam
        double lam = 0.5 + 0.49 * urand();
        g[i] = (real)log(lam);
        k[i] = (real)(1 - lam);
    }
    // the ops on the raster order; outputs pre-filled (acc adds to them, acc = 0 must overwrite them)
    real *o = rvec(N * HD, 1), *dq = rvec(N * HK, 1), *dk = rvec(N * HK, 1), *dg = rvec(N * HK, 1);
    real *dv = rvec(N * lddv, 1);
    real *o_r = dup(o, N * HD), *dq_r = dup(dq, N * HK), *dk_r = dup(dk, N * HK), *dg_r = dup(dg, N * HK);
    real *dv_r = dup(dv, N * lddv);
    op_hgru_cols_fwd(o, q, k, g, v, ldv, S, gh, gw, H, K, Dv, chunk, reverse, acc);
    op_hgru_cols_bwd(dq, dk, dg, dv, lddv, dout, q, k, g, v, ldv, S, gh, gw, H, K, Dv, chunk, reverse, acc);
    // the reference: gathered copies, the 1-D ops over S gw sequences of gh, scattered back
    real *qT = zvec(N * HK), *kT = zvec(N * HK), *gT = zvec(N * HK), *vT = zvec(N * ldv), *doT = zvec(N * HD);
    real *oT = zvec(N * HD), *dqT = zvec(N * HK), *dkT = zvec(N * HK), *dgT = zvec(N * HK), *dvT = zvec(N * lddv);
    gather(qT, q, perm, N, HK); gather(kT, k, perm, N, HK); gather(gT, g, perm, N, HK);
    gather(vT, v, perm, N, ldv); gather(doT, dout, perm, N, HD);
    op_hgru_fwd(oT, NULL, qT, kT, gT, vT, ldv, NULL, S * gw, gh, H, K, Dv, chunk, reverse, 0);
    op_hgru_bwd(dqT, dkT, dgT, dvT, lddv, doT, qT, kT, gT, vT, ldv, S * gw, gh, H, K, Dv, chunk, reverse, 0);
    scatter(o_r, oT, perm, N, (int)HD, HD, acc);
    scatter(dq_r, dqT, perm, N, (int)HK, HK, acc); scatter(dk_r, dkT, perm, N, (int)HK, HK, acc);
    scatter(dg_r, dgT, perm, N, (int)HK, HK, acc); scatter(dv_r, dvT, perm, N, (int)HD, lddv, acc);
    char name[200];
    const double tol = 1e-12;
    snprintf(name, sizeof name, "hgru_cols S %d grid %dx%d H %d K %d Dv %d chunk %d rev %d acc %d: o", S, gh, gw, H,
             K, Dv, chunk, reverse, acc);
    near(name, rel_err(o, o_r, N, (int)HD, HD), tol);
    double eb = rel_err(dq, dq_r, N, (int)HK, HK);
    eb = maxd(eb, rel_err(dk, dk_r, N, (int)HK, HK));
    eb = maxd(eb, rel_err(dg, dg_r, N, (int)HK, HK));
    eb = maxd(eb, rel_err(dv, dv_r, N, (int)HD, lddv));
    name[strlen(name) - 1] = 0;
    strcat(name, "dq dk dg dv");
    near(name, eb, tol);
    CHECK(gaps_same(dv, dv_r, N, (int)HD, lddv), "hgru_cols_bwd wrote into dv's gaps (grid %dx%d)", gh, gw);
    free(perm); free(q); free(k); free(g); free(v); free(dout); free(o); free(dq); free(dk); free(dg); free(dv);
    free(o_r); free(dq_r); free(dk_r); free(dg_r); free(dv_r);
    free(qT); free(kT); free(gT); free(vT); free(doT); free(oT); free(dqT); free(dkT); free(dgT); free(dvT);
}

static void test_cols_all(void) {
    printf("-- hgru_cols (against gather + hgru + scatter)\n");
    static const struct { int S, gh, gw, H, K, Dv; } sh[] = {
        {1, 1, 1, 1, 1, 1}, {2, 3, 4, 2, 2, 2}, {3, 7, 9, 1, 3, 2}, {1, 2, 70, 3, 4, 4}, {2, 32, 32, 2, 2, 5},
        {1, 7, 9, 2, 8, 8},
    };
    static const int chunks[] = {0, 3, 5};
    for (size_t i = 0; i < sizeof sh / sizeof sh[0]; i++)
        for (int ci = 0; ci < 3; ci++)
            for (int rev = 0; rev < 2; rev++)
                for (int acc = 0; acc < 2; acc++)
                    test_cols(sh[i].S, sh[i].gh, sh[i].gw, sh[i].H, sh[i].K, sh[i].Dv, chunks[ci], rev, acc);
}

// ======================================================================================================
// the LRA layer in bf16 numerics (op_lra_bf16_fwd/bwd)
// ======================================================================================================
// rnd = 0: the same function as the fp32 layer's ops (op_gates_fwd, op_lra_acts_fwd, op_hgru_fwd both ways;
// their backwards), checked against those, and against finite differences in the float64 build.
// rnd = 1: against a separate evaluator below, element by element with its own loops: bit for bit forward and
// in the scans' rounded gradients, to the build's rounding in the fp32 sums after them.
static float bf16_of(double x) {   // to float, then to bf16 by nearest, ties to even, as ops.h says
    float f = (float)x;
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7f800000u) != 0x7f800000u) {
        const uint32_t low = u & 0xffffu, keep = u & 0xffff0000u;
        u = low > 0x8000u || (low == 0x8000u && (keep & 0x10000u)) ? keep + 0x10000u : keep;
    }
    memcpy(&f, &u, 4);
    return f;
}
static real sig_of(real x) {   // the backend's sigmoid, written out: e = exp(-|x|), 1 / (1 + e) or e / (1 + e)
    real e = (real)exp(-fabs((double)x));
    if (sizeof(real) == sizeof(float)) e = (real)expf(-fabsf((float)x));
    const real r = 1 / (1 + e);
    return x >= 0 ? r : e * r;
}
#ifdef HGRN2_F64
#define FMA_REAL fma
#else
#define FMA_REAL fmaf
#endif
typedef struct { real *o, *dqfi, *dlb; } Lra16Out;
// The evaluator: gate arrays for every (row, column) first, then each state element's two scans on its own.
static Lra16Out lra16_eval(const real *qfi, int64_t ld, const real *lb, const real *dout, int B, int T, int H, int K) {
    const int HK = H * K;
    const int64_t N = (int64_t)B * T;
#define R16(x) ((real)bf16_of(x))
    real *q = zvec(N * HK), *f = zvec(N * HK), *vp = zvec(N * HK), *v = zvec(N * HK), *lam = zvec(N * HK);
    real *bb = zvec(HK);
    for (int c = 0; c < HK; c++) bb[c] = lb ? R16(lb[c]) : 0;
    for (int64_t n = 0; n < N; n++)
        for (int c = 0; c < HK; c++) {
            const real *row = qfi + n * ld;
            q[n * HK + c] = R16(sig_of(R16(row[c])));
            f[n * HK + c] = R16(sig_of(R16(row[HK + c])));
            vp[n * HK + c] = R16(row[2 * HK + c]);
            v[n * HK + c] = R16(vp[n * HK + c] * sig_of(vp[n * HK + c]));
            lam[n * HK + c] = R16(bb[c] + R16(R16(1 - bb[c]) * f[n * HK + c]));
        }
    // states [dir][n][h][d][e]
    const int64_t NS = N * H * K * K;
    real *hs = zvec(2 * NS), *gs = zvec(2 * NS), *ls = zvec(2 * NS);
#define SI(n, h, d, e) ((((n) * H + (h)) * K + (d)) * K + (e))
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int d = 0; d < K; d++)
                for (int e = 0; e < K; e++)
                    for (int dir = 0; dir < 2; dir++) {
                        real st = 0, G = 0;
                        for (int i = 0; i < T; i++) {   // the scan
                            const int64_t n = (int64_t)b * T + (dir ? T - 1 - i : i);
                            const real x = R16(R16(1 - lam[n * HK + h * K + d]) * v[n * HK + h * K + e]);
                            st = R16(R16(lam[n * HK + h * K + d] * st) + x);
                            hs[dir * NS + SI(n, h, d, e)] = st;
                        }
                        for (int i = T - 1; i >= 0; i--) {   // its backward, from its last step
                            const int64_t n = (int64_t)b * T + (dir ? T - 1 - i : i);
                            const real ln = i < T - 1 ? lam[(dir ? n - 1 : n + 1) * HK + h * K + d] : 0;
                            const real ds = R16(R16(dout[n * HK + h * K + e]) * q[n * HK + h * K + d]);
                            G = R16(ds + R16(ln * G));
                            const real hp = i > 0 ? hs[dir * NS + SI(dir ? n + 1 : n - 1, h, d, e)] : 0;
                            gs[dir * NS + SI(n, h, d, e)] = G;
                            ls[dir * NS + SI(n, h, d, e)] = R16(G * hp);
                        }
                    }
    Lra16Out r = {zvec(N * HK), zvec(N * ld), lb ? zvec(HK) : NULL};
    double *dlb = xcalloc((size_t)HK, sizeof(double));
    for (int64_t n = 0; n < N; n++)
        for (int h = 0; h < H; h++) {
            for (int e = 0; e < K; e++) {
                real acc = 0;
                for (int d = 0; d < K; d++)
                    acc = FMA_REAL(R16(hs[SI(n, h, d, e)] + hs[NS + SI(n, h, d, e)]), q[n * HK + h * K + d], acc);
                r.o[n * HK + h * K + e] = R16(acc);
            }
            for (int d = 0; d < K; d++) {
                double dq = 0, dlam = 0, dv = 0;
                const int c = h * K + d;
                for (int e = 0; e < K; e++) {
                    const int64_t i = SI(n, h, d, e);
                    const double dx = R16(gs[i] + gs[NS + i]), dl = R16(ls[i] + ls[NS + i]);
                    dq += (double)R16(dout[n * HK + h * K + e]) * R16(hs[i] + hs[NS + i]);
                    dlam += dl - dx * v[n * HK + h * K + e];
                }
                for (int e = 0; e < K; e++) {   // column c as a value: the sum over the gates d of its head
                    const int64_t i = SI(n, h, e, d);
                    dv += (double)R16(gs[i] + gs[NS + i]) * R16(1 - lam[n * HK + h * K + e]);
                }
                const double qq = q[n * HK + c], ff = f[n * HK + c], vv = vp[n * HK + c], sv = sig_of(vp[n * HK + c]);
                r.dqfi[n * ld + c] = (real)(dq * qq * (1 - qq));
                r.dqfi[n * ld + HK + c] = (real)(dlam * (1 - bb[c]) * ff * (1 - ff));
                r.dqfi[n * ld + 2 * HK + c] = (real)(dv * sv * (1 + vv * (1 - sv)));
                dlb[c] += dlam * (1 - ff);
            }
        }
#undef SI
#undef R16
    for (int c = 0; c < HK; c++)
        if (r.dlb) r.dlb[c] = (real)dlb[c];
    free(dlb);
    free(q); free(f); free(vp); free(v); free(lam); free(bb); free(hs); free(gs); free(ls);
    return r;
}

typedef struct { real *qfi, *lb, *wt, *o; int64_t ld; int B, T, H, K; } Lra16Ctx;
static double lra16_loss(void *p) {
    Lra16Ctx *c = p;
    op_lra_bf16_fwd(c->o, c->qfi, c->ld, c->lb, c->B, c->T, c->H, c->K, 0);
    return wsum(c->wt, c->o, (int64_t)c->B * c->T * c->H * c->K);
}
static void det_lra16(void *p, real *out) {   // o, dqfi, dlb with the roundings
    Lra16Ctx *c = p;
    const int64_t N = (int64_t)c->B * c->T, D = (int64_t)c->H * c->K;
    op_lra_bf16_fwd(out, c->qfi, c->ld, c->lb, c->B, c->T, c->H, c->K, 1);
    memset(out + N * D, 0, (size_t)(N * c->ld + D) * sizeof(real));
    op_lra_bf16_bwd(out + N * D, c->ld, out + N * D + N * c->ld, c->wt, c->qfi, c->ld, c->lb, c->B, c->T, c->H, c->K, 1);
}

static void test_lra16(int B, int T, int H, int K, int with_lb, double fscale) {
    const int D = H * K, HK = D;
    const int64_t N = (int64_t)B * T, ld = 2 * HK + D + 3;   // a gap past the columns, never written
    Lra16Ctx c = {.qfi = rvec(N * ld, 1), .lb = with_lb ? zvec(HK) : NULL, .wt = rvec(N * D, 1), .o = zvec(N * D),
                  .ld = ld, .B = B, .T = T, .H = H, .K = K};
    for (int64_t n = 0; n < N; n++)   // forget logits of spread fscale: with a large one, gates round to 1
        for (int j = 0; j < HK; j++) c.qfi[n * ld + HK + j] = (real)(fscale * nrand() + 1);
    if (c.lb)
        for (int j = 0; j < HK; j++) c.lb[j] = (real)(0.9 * urand());
    char name[200], shape[96];
    snprintf(shape, sizeof shape, "B %d T %d H %d K %d%s, f logits +- %g", B, T, H, K, with_lb ? ", lower bound" : "",
             fscale);
    // rnd = 0 against the fp32 layer's ops
    real *q = zvec(N * HK), *k = zvec(N * HK), *g = zvec(N * HK), *vact = zvec(N * D), *oref = zvec(N * D);
    op_gates_fwd(q, k, g, c.qfi, ld, c.lb, N, HK);
    op_lra_acts_fwd(q, vact, c.qfi, ld, N, HK, D, sqrt((double)K));
    op_hgru_fwd(oref, NULL, q, k, g, vact, D, NULL, B, T, H, K, K, 0, 0, 0);
    op_hgru_fwd(oref, NULL, q, k, g, vact, D, NULL, B, T, H, K, K, 0, 1, 1);
    op_lra_bf16_fwd(c.o, c.qfi, ld, c.lb, B, T, H, K, 0);
    // the two compute the gates differently (lam from f, against k = (1 - lb) sigmoid(-f) and g = log lam) and
    // sum the states of each direction before the readout: a few roundings a step, kept for up to T steps
    const double tol0 = 16.0 * (T + 4) * EPS;
    snprintf(name, sizeof name, "lra_bf16 rnd 0 fwd vs gates + hgru ops (%s)", shape);
    near(name, relerr(c.o, oref, N * D), tol0);
    real *dq = zvec(N * HK), *dk = zvec(N * HK), *dg = zvec(N * HK), *dvs = zvec(N * D), *dref = zvec(N * ld);
    real *dlbref = c.lb ? zvec(HK) : NULL, *dqfi = zvec(N * ld), *dlb = c.lb ? zvec(HK) : NULL;
    op_hgru_bwd(dq, dk, dg, dvs, D, c.wt, q, k, g, vact, D, B, T, H, K, K, 0, 0, 0);
    op_hgru_bwd(dq, dk, dg, dvs, D, c.wt, q, k, g, vact, D, B, T, H, K, K, 0, 1, 1);
    op_gates_bwd(dref, ld, dlbref, dq, dk, dg, c.qfi, ld, c.lb, N, HK);
    op_lra_acts_bwd(dref, ld, dq, dvs, c.qfi, ld, N, HK, D, sqrt((double)K));
    op_lra_bf16_bwd(dqfi, ld, dlb, c.wt, c.qfi, ld, c.lb, B, T, H, K, 0);
    double e = rel_err(dqfi, dref, N, 2 * HK + D, ld);
    if (c.lb) e = maxd(e, relerr(dlb, dlbref, HK));
    snprintf(name, sizeof name, "lra_bf16 rnd 0 bwd vs the ops' backwards (%s)", shape);
    near(name, e, tol0);
    CHECK(gaps_same(dqfi, dref, N, 2 * HK + D, ld), "lra_bf16_bwd wrote past the columns of dqfi (%s)", shape);
    snprintf(name, sizeof name, "lra_bf16 rnd 0 dqfi (finite differences, %s)", shape);
    const double gs = maxabs(dqfi, N * ld);
    fd_scaled(name, lra16_loss, &c, c.qfi, N, 2 * HK + D, ld, dqfi, ld, gs);
    if (c.lb) {
        snprintf(name, sizeof name, "lra_bf16 rnd 0 dlb (finite differences, %s)", shape);
        fd_vec(name, lra16_loss, &c, c.lb, HK, dlb, gs);
    }
    // rnd = 1 against the evaluator
    Lra16Out r = lra16_eval(c.qfi, ld, c.lb, c.wt, B, T, H, K);
    op_lra_bf16_fwd(c.o, c.qfi, ld, c.lb, B, T, H, K, 1);
    snprintf(name, sizeof name, "lra_bf16 rnd 1 fwd vs the evaluator, bits (%s)", shape);
    near(name, memcmp(c.o, r.o, (size_t)(N * D) * sizeof(real)) != 0, 0);
    memset(dqfi, 0, (size_t)(N * ld) * sizeof(real));
    if (dlb) memset(dlb, 0, (size_t)HK * sizeof(real));
    op_lra_bf16_bwd(dqfi, ld, dlb, c.wt, c.qfi, ld, c.lb, B, T, H, K, 1);
    // the same rounded gradients, then sums of K terms in the build's precision (the evaluator's in double)
    e = rel_err(dqfi, r.dqfi, N, 2 * HK + D, ld);
    if (c.lb) e = maxd(e, relerr(dlb, r.dlb, HK));
    snprintf(name, sizeof name, "lra_bf16 rnd 1 bwd vs the evaluator (%s)", shape);
    near(name, e, 8.0 * (K + 2) * EPS);
    // the roundings matter: the rounded layer is not the fp32 one
    snprintf(name, sizeof name, "lra_bf16 rnd 1 fwd differs from rnd 0 by more than fp32 rounding (%s)", shape);
    near(name, relerr(c.o, oref, N * D) < 1e-4, 0);
    snprintf(name, sizeof name, "lra_bf16 (%s)", shape);
    det_check(name, det_lra16, &c, N * D + N * ld + D);
    free(c.qfi); free(c.lb); free(c.wt); free(c.o); free(q); free(k); free(g); free(vact); free(oref);
    free(dq); free(dk); free(dg); free(dvs); free(dref); free(dlbref); free(dqfi); free(dlb);
    free(r.o); free(r.dqfi); free(r.dlb);
}

static void test_lra16_all(void) {
    printf("-- lra_bf16 (the LRA layer in bf16 numerics)\n");
    seed(900);
    test_lra16(1, 1, 1, 1, 0, 1);
    test_lra16(2, 37, 3, 4, 1, 1);
    test_lra16(1, 70, 2, 2, 0, 1);
    test_lra16(2, 19, 1, 8, 1, 1);
    test_lra16(1, 40, 2, 4, 1, 8);    // gates that round to 1: those states stay 0
    test_lra16(1, 9, 1, 32, 1, 1);
}

int main(int argc, char **argv) {
    if (argc > 1) { fprintf(stderr, "usage: %s\n", argv[0]); return EXIT_USAGE; }
    double t0 = now_s();
    printf("test_cls_ops: %s build, finite-difference step %.0e, tolerance %.0e of the largest gradient component\n",
           FD ? "float64" : "float", FD_H, FD_TOL);
    printf("-- biases\n");
    const int64_t bN[] = {1, 1, 5, 7, 65, 4096};
    const int bC[] = {1, 9, 3, 16, 130, 17};
    for (int i = 0; i < 6; i++) test_bias(bN[i], bC[i]);
    printf("-- layernorm\n");
    test_layernorm(1, 1, 0, 1);
    test_layernorm(5, 37, 0, 1);
    test_layernorm(3, 1, 0, 1);
    test_layernorm(4, 2, 0, 1);
    test_layernorm(2, 64, 0, 1);
    test_layernorm(3, 19, 1000, 0.01);   // a large offset: the two-pass statistics keep the deviations exact
    printf("-- batchnorm\n");
    test_batchnorm(2, 1, 0, 1);
    test_batchnorm(7, 3, 0, 1);
    test_batchnorm(13, 17, 0, 1);
    test_batchnorm(65, 2, 0, 1);
    test_batchnorm(9, 5, 1000, 0.01);
    test_batchnorm_rows(3, 7, 5);
    test_batchnorm_rows(5, 64, 17);
    test_batchnorm_rows(1, 9, 1);
    test_gelu();
    printf("-- positions\n");
    test_positions(1, 1, 1);
    test_positions(2, 5, 1);
    test_positions(3, 7, 7);
    test_positions(2, 65, 130);
    test_positions(1, 4096, 64);
    test_dropout();
    printf("-- pool_mean\n");
    test_pool(3, 1, 1);
    test_pool(4, 5, 7);
    test_pool(3, 64, 17);
    test_pool(5, 65, 3);
    test_pool(2, 4096, 130);
    printf("-- pair_features\n");
    test_pair(1, 1);
    test_pair(3, 7);
    test_pair(5, 130);
    test_determinism();
    test_cols_all();
    test_lra16_all();
    printf("\n%.1f s\n", now_s() - t0);
    return check_summary("test_cls_ops");
}
