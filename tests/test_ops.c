// tests/test_ops.c: checks every op of cpu.c.
//
// Built by `make tests/bin/test_ops` in float64 (-DHGRN2_F64): every backward is checked against central
// finite differences of its forward, with the loss L = sum(w * y) for random w, so the backward runs with
// dy = w (tests/fd.h: the step and the tolerance).
// Built without -DHGRN2_F64 (float), finite differences are meaningless and are skipped (each says so); the
// other checks (against naive references, chunked against recurrent, determinism, AdamW) run with
// tolerances scaled to float's epsilon. `--bench` (best in the float build) times the matmuls and the HGRU2.
//
// Exit status 1 when any check fails. One line per check: the measured error and the tolerance.
#include <time.h>

#include "fd.h"

// ======================================================================================================
// matmul
// ======================================================================================================
typedef struct { real *x, *W, *w, *y; int64_t N; int I, O; } MatCtx;
static double mat_loss(void *p) {
    MatCtx *c = p;
    op_matmul_fwd(c->y, c->x, c->W, c->N, c->I, c->O);
    return wsum(c->w, c->y, c->N * c->O);
}

// Blocked results against a naive double loop; the bound on a length-n dot product's rounding error is
// n eps sum |a_i b_i|, so the error is measured relative to that.
static void test_matmul_naive(int64_t N, int I, int O) {
    seed(100 + N * 7 + I * 3 + O);
    real *x = rvec(N * I, 1), *W = rvec((int64_t)O * I, 1), *dy = rvec(N * O, 1);
    real *y = zvec(N * O), *dx = zvec(N * I), *dW0 = rvec((int64_t)O * I, 1), *dW = dup(dW0, (int64_t)O * I);
    op_matmul_fwd(y, x, W, N, I, O);
    op_matmul_bwd(dx, dW, dy, x, W, N, I, O);
    double ey = 0, edx = 0, edw = 0;
    for (int64_t n = 0; n < N; n++)
        for (int o = 0; o < O; o++) {
            double s = 0, a = 0;
            for (int i = 0; i < I; i++) { s += (double)x[n * I + i] * W[(int64_t)o * I + i]; a += fabs((double)x[n * I + i] * W[(int64_t)o * I + i]); }
            double e = fabs(y[n * O + o] - s) / (a + 1e-300);
            ey = e > ey || e != e ? e : ey;
        }
    for (int64_t n = 0; n < N; n++)
        for (int i = 0; i < I; i++) {
            double s = 0, a = 0;
            for (int o = 0; o < O; o++) { s += (double)dy[n * O + o] * W[(int64_t)o * I + i]; a += fabs((double)dy[n * O + o] * W[(int64_t)o * I + i]); }
            double e = fabs(dx[n * I + i] - s) / (a + 1e-300);
            edx = e > edx || e != e ? e : edx;
        }
    for (int o = 0; o < O; o++)
        for (int i = 0; i < I; i++) {
            double s = dW0[(int64_t)o * I + i], a = fabs(s);
            for (int64_t n = 0; n < N; n++) { s += (double)dy[n * O + o] * x[n * I + i]; a += fabs((double)dy[n * O + o] * x[n * I + i]); }
            double e = fabs(dW[(int64_t)o * I + i] - s) / (a + 1e-300);
            edw = e > edw || e != e ? e : edw;
        }
    char name[128];
    snprintf(name, sizeof name, "matmul fwd vs naive N=%lld I=%d O=%d (/ sum|xW|)", (long long)N, I, O);
    near(name, ey, (I + 1) * EPS);
    snprintf(name, sizeof name, "matmul bwd dx vs naive N=%lld I=%d O=%d", (long long)N, I, O);
    near(name, edx, (O + 1) * EPS);
    snprintf(name, sizeof name, "matmul bwd dW += vs naive N=%lld I=%d O=%d", (long long)N, I, O);
    near(name, edw, (N + 2) * EPS);
    // dx NULL and dW NULL leave the other output exactly as the full call computes it
    real *dx2 = zvec(N * I), *dW2 = dup(dW0, (int64_t)O * I);
    op_matmul_bwd(dx2, NULL, dy, x, W, N, I, O);
    op_matmul_bwd(NULL, dW2, dy, x, W, N, I, O);
    snprintf(name, sizeof name, "matmul bwd dW=NULL / dx=NULL give the same bits N=%lld", (long long)N);
    near(name, (double)(memcmp(dx2, dx, (size_t)(N * I) * sizeof(real)) != 0) +
                (memcmp(dW2, dW, (size_t)O * I * sizeof(real)) != 0), 0);
    free(x); free(W); free(dy); free(y); free(dx); free(dW0); free(dW); free(dx2); free(dW2);
}

static void test_matmul_fd(void) {
    const uint64_t s = 1;
    printf("-- matmul finite differences (seed %llu)\n", (unsigned long long)s);
    seed(s);
    MatCtx c = {.N = 7, .I = 20, .O = 9};
    c.x = rvec(c.N * c.I, 1); c.W = rvec((int64_t)c.O * c.I, 1); c.w = rvec(c.N * c.O, 1); c.y = zvec(c.N * c.O);
    real *dx = zvec(c.N * c.I), *dW0 = rvec((int64_t)c.O * c.I, 1), *dW = dup(dW0, (int64_t)c.O * c.I);
    op_matmul_bwd(dx, dW, c.w, c.x, c.W, c.N, c.I, c.O);
    for (int64_t i = 0; i < (int64_t)c.O * c.I; i++) dW[i] -= dW0[i];
    fd("matmul dx", mat_loss, &c, c.x, 1, c.N * c.I, 0, dx, 0);
    fd("matmul dW (the += part)", mat_loss, &c, c.W, 1, (int64_t)c.O * c.I, 0, dW, 0);
    free(c.x); free(c.W); free(c.w); free(c.y); free(dx); free(dW0); free(dW);
}

// ======================================================================================================
// embedding
// ======================================================================================================
typedef struct { real *E, *w, *x; int32_t *ids; int64_t N; int D; } EmbCtx;
static double emb_loss(void *p) {
    EmbCtx *c = p;
    op_embed_fwd(c->x, c->ids, c->E, c->N, c->D);
    return wsum(c->w, c->x, c->N * c->D);
}
static void test_embed(void) {
    const uint64_t s = 2;
    printf("-- embedding (seed %llu)\n", (unsigned long long)s);
    seed(s);
    int V = 6;
    EmbCtx c = {.N = 20, .D = 70};
    c.ids = xmalloc((size_t)c.N * sizeof(int32_t));
    for (int64_t n = 0; n < c.N; n++) c.ids[n] = (int32_t)(next_u64() % 4);  // ids 0..3 repeat, 4, 5 unused
    c.E = rvec((int64_t)V * c.D, 1); c.w = rvec(c.N * c.D, 1); c.x = zvec(c.N * c.D);
    real *dE0 = rvec((int64_t)V * c.D, 1), *dE = dup(dE0, (int64_t)V * c.D);
    op_embed_bwd(dE, c.w, c.ids, c.N, c.D, V);
    for (int64_t i = 0; i < (int64_t)V * c.D; i++) dE[i] -= dE0[i];
    fd("embed dE (repeated ids, +=)", emb_loss, &c, c.E, 1, (int64_t)V * c.D, 0, dE, 0);
    free(c.ids); free(c.E); free(c.w); free(c.x); free(dE0); free(dE);
}

// ======================================================================================================
// RMSNorm
// ======================================================================================================
typedef struct { real *x, *wt, *w, *y; int64_t N; int C; double eps; } RmsCtx;
static double rms_loss(void *p) {
    RmsCtx *c = p;
    op_rmsnorm_fwd(c->y, NULL, c->x, NULL, c->wt, c->N, c->C, c->eps);
    return wsum(c->w, c->y, c->N * c->C);
}
static void test_rmsnorm(void) {
    const uint64_t s = 3;
    printf("-- rmsnorm (seed %llu)\n", (unsigned long long)s);
    seed(s);
    RmsCtx c = {.N = 5, .C = 37, .eps = 1e-5};
    c.x = rvec(c.N * c.C, 1); c.wt = rvec(c.C, 1); c.w = rvec(c.N * c.C, 1); c.y = zvec(c.N * c.C);
    real *rstd = zvec(c.N), *dx = zvec(c.N * c.C), *dw0 = rvec(c.C, 1), *dw = dup(dw0, c.C);
    op_rmsnorm_fwd(c.y, rstd, c.x, NULL, c.wt, c.N, c.C, c.eps);
    op_rmsnorm_bwd(dx, 0, dw, c.w, c.x, c.wt, rstd, c.N, c.C, c.eps);
    for (int i = 0; i < c.C; i++) dw[i] -= dw0[i];
    fd("rmsnorm dx", rms_loss, &c, c.x, 1, c.N * c.C, 0, dx, 0);
    fd("rmsnorm dw (+=)", rms_loss, &c, c.wt, 1, c.C, 0, dw, 0);
    // the forward against a direct double computation
    op_rmsnorm_fwd(c.y, NULL, c.x, NULL, c.wt, c.N, c.C, c.eps);
    double e = 0;
    for (int64_t n = 0; n < c.N; n++) {
        double ss = 0;
        for (int i = 0; i < c.C; i++) ss += (double)c.x[n * c.C + i] * c.x[n * c.C + i];
        double r = 1 / sqrt(ss / c.C + c.eps);
        for (int i = 0; i < c.C; i++) {
            double d = fabs(c.y[n * c.C + i] - c.x[n * c.C + i] * r * c.wt[i]) / (fabs(c.x[n * c.C + i] * r * c.wt[i]) + 1e-300);
            e = d > e || d != d ? d : e;
        }
    }
    near("rmsnorm fwd vs double formula (relative per element)", e, 8 * c.C * EPS);
    // rstd NULL: recomputed with eps, same values
    real *dx2 = zvec(c.N * c.C), *dw2 = zvec(c.C), *dw1 = zvec(c.C);
    op_rmsnorm_bwd(dx2, 0, dw2, c.w, c.x, c.wt, NULL, c.N, c.C, c.eps);
    op_rmsnorm_bwd(NULL, 0, dw1, c.w, c.x, c.wt, rstd, c.N, c.C, c.eps);
    near("rmsnorm bwd with rstd NULL == with saved rstd", relerr(dx2, dx, c.N * c.C) + relerr(dw2, dw1, c.C), 0);
    // acc = 1 adds what acc = 0 writes to what is there: the sum rounds once, as the reference's does; allow one
    // more rounding (2 EPS) in case the compiler contracts the term's products differently in the two loops
    real *dx0 = rvec(c.N * c.C, 1), *dxa = dup(dx0, c.N * c.C);
    op_rmsnorm_bwd(dxa, 1, NULL, c.w, c.x, c.wt, rstd, c.N, c.C, c.eps);
    for (int64_t i = 0; i < c.N * c.C; i++) dx0[i] += dx[i];
    near("rmsnorm bwd acc=1 == prefilled dx + the acc=0 dx", relerr(dxa, dx0, c.N * c.C), 2 * EPS);
    {   // the operand form: the same dx and dw, and dx again in dxo (operands are real here)
        real *dxb = rvec(c.N * c.C, 1), *dxc = dup(dxb, c.N * c.C), *dxo = rvec(c.N * c.C, 1), *dwb = zvec(c.C),
             *dwc = zvec(c.C);
        op_rmsnorm_bwd(dxb, 1, dwb, c.w, c.x, c.wt, rstd, c.N, c.C, c.eps);
        op_rmsnorm_bwd_opnd(dxc, 1, dxo, dwc, c.w, c.x, c.wt, rstd, c.N, c.C, c.eps);
        near("rmsnorm bwd_opnd: dx, dw and dxo == rmsnorm bwd's dx and dw",
             relerr(dxc, dxb, c.N * c.C) + relerr(dwc, dwb, c.C) + relerr(dxo, dxb, c.N * c.C), 0);
        free(dxb); free(dxc); free(dxo); free(dwb); free(dwc);
    }
    // with a residual: x += res, then the norm of the sum; the same bits as the add followed by the norm
    real *res = rvec(c.N * c.C, 1), *xs = dup(c.x, c.N * c.C), *ys = zvec(c.N * c.C), *rs = zvec(c.N);
    op_rmsnorm_fwd(ys, rs, xs, res, c.wt, c.N, c.C, c.eps);
    for (int64_t i = 0; i < c.N * c.C; i++) c.x[i] += res[i];
    op_rmsnorm_fwd(c.y, rstd, c.x, NULL, c.wt, c.N, c.C, c.eps);
    near("rmsnorm fwd with res: x += res in place", relerr(xs, c.x, c.N * c.C), 0);
    near("rmsnorm fwd with res == add, then the norm", relerr(ys, c.y, c.N * c.C) + relerr(rs, rstd, c.N), 0);
    // the backward's copy of y from the kept rstd: the forward's bits
    real *y2 = rvec(c.N * c.C, 1);
    op_rmsnorm_scale(y2, c.x, rstd, c.wt, c.N, c.C);
    near("rmsnorm scale from the kept rstd == the forward's y", relerr(y2, c.y, c.N * c.C), 0);
    free(y2);
    free(res); free(xs); free(ys); free(rs);
    free(c.x); free(c.wt); free(c.w); free(c.y); free(rstd); free(dx); free(dw0); free(dw); free(dx2); free(dw2); free(dw1);
    free(dx0); free(dxa);
}

// ======================================================================================================
// gates
// ======================================================================================================
typedef struct { real *qf, *lb, *wq, *wk, *wg, *q, *k, *g; int64_t N, ldqf; int HK; } GateCtx;
static double gate_loss(void *p) {
    GateCtx *c = p;
    op_gates_fwd(c->q, c->k, c->g, c->qf, c->ldqf, c->lb, c->N, c->HK);
    int64_t n = c->N * c->HK;
    return wsum(c->wq, c->q, n) + wsum(c->wk, c->k, n) + wsum(c->wg, c->g, n);
}
static void test_gates(int with_lb) {
    const uint64_t s = 4 + with_lb;
    printf("-- gates, %s (seed %llu)\n", with_lb ? "lb in (0,1)" : "layer 0, lb NULL", (unsigned long long)s);
    seed(s);
    GateCtx c = {.N = 6, .HK = 21, .ldqf = 3 * 21 + 5};
    int64_t n = c.N * c.HK;
    c.qf = rvec(c.N * c.ldqf, 3);
    // a few large logits in both directions, where the stable forms matter
    for (int64_t r = 0; r < c.N; r++) { c.qf[r * c.ldqf + c.HK] = 25; c.qf[r * c.ldqf + c.HK + 1] = -25; }
    c.lb = NULL;
    if (with_lb) { c.lb = xmalloc((size_t)c.HK * sizeof(real)); for (int i = 0; i < c.HK; i++) c.lb[i] = (real)(0.05 + 0.9 * urand()); }
    c.wq = rvec(n, 1); c.wk = rvec(n, 1); c.wg = rvec(n, 1); c.q = zvec(n); c.k = zvec(n); c.g = zvec(n);
    int64_t ld2 = 2 * c.HK + 3;
    real *dqf = rvec(c.N * ld2, 1), *dqf0 = dup(dqf, c.N * ld2);
    real *dlb0 = rvec(c.HK, 1), *dlb = dup(dlb0, c.HK);
    op_gates_bwd(dqf, ld2, with_lb ? dlb : NULL, c.wq, c.wk, c.wg, c.qf, c.ldqf, c.lb, c.N, c.HK);
    for (int i = 0; i < c.HK; i++) dlb[i] -= dlb0[i];
    // columns past 2*HK of dqf are not touched
    int untouched = 1;
    for (int64_t r = 0; r < c.N; r++)
        for (int64_t j = 2 * c.HK; j < ld2; j++) untouched &= dqf[r * ld2 + j] == dqf0[r * ld2 + j];
    char name[96];
    snprintf(name, sizeof name, "gates%s: dqf columns past 2*HK untouched", with_lb ? " lb" : "");
    near(name, !untouched, 0);
    snprintf(name, sizeof name, "gates%s dqf (q and f, strides %lld/%lld)", with_lb ? " lb" : "", (long long)c.ldqf, (long long)ld2);
    fd(name, gate_loss, &c, c.qf, c.N, 2 * c.HK, c.ldqf, dqf, ld2);
    if (with_lb) fd("gates lb dlb (+=)", gate_loss, &c, c.lb, 1, c.HK, 0, dlb, 0);
    {   // the operand form writes the same values (operands are real here), dlb the same sum
        real *dqf2 = dup(dqf0, c.N * ld2), *dlb2 = dup(dlb0, c.HK);
        op_gates_bwd_opnd(dqf2, ld2, with_lb ? dlb2 : NULL, c.wq, c.wk, c.wg, c.qf, c.ldqf, c.lb, c.N, c.HK);
        int same = 1;
        for (int64_t i = 0; i < c.N * ld2; i++) same &= memcmp(&dqf2[i], i % ld2 < 2 * c.HK ? &dqf[i] : &dqf0[i], sizeof(real)) == 0;
        for (int i = 0; with_lb && i < c.HK; i++) same &= dlb2[i] - dlb0[i] == dlb[i];
        snprintf(name, sizeof name, "gates%s: gates_bwd_opnd == gates_bwd", with_lb ? " lb" : "");
        near(name, !same, 0);
        free(dqf2); free(dlb2);
    }
    // k = 1 - exp(g), g <= 0, finite
    op_gates_fwd(c.q, c.k, c.g, c.qf, c.ldqf, c.lb, c.N, c.HK);
    double e = 0; int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        bad |= !(c.g[i] <= 0) || !isfinite(c.g[i]);
        double d = fabs(c.k[i] - (-expm1((double)c.g[i])));
        e = d > e ? d : e;
    }
    snprintf(name, sizeof name, "gates%s: g <= 0 finite, |k - (1 - exp(g))|", with_lb ? " lb" : "");
    near(name, bad ? INFINITY : e, 4 * EPS);
    free(c.qf); free(c.lb); free(c.wq); free(c.wk); free(c.wg); free(c.q); free(c.k); free(c.g);
    free(dqf); free(dqf0); free(dlb0); free(dlb);
}

// ======================================================================================================
// lower bounds
// ======================================================================================================
typedef struct { real *P, *w, *lb; int L, C; } LbCtx;
static double lb_loss(void *p) {
    LbCtx *c = p;
    op_lower_bounds_fwd(c->lb, c->P, c->L, c->C);
    return wsum(c->w, c->lb, (int64_t)c->L * c->C);
}
static void test_lower_bounds(void) {
    const uint64_t s = 6;
    printf("-- lower bounds (seed %llu)\n", (unsigned long long)s);
    seed(s);
    LbCtx c = {.L = 5, .C = 3};
    int64_t n = (int64_t)c.L * c.C;
    c.P = rvec(n, 1); c.w = rvec(n, 1); c.lb = zvec(n);
    real *dP0 = rvec(n, 1), *dP = dup(dP0, n);
    op_lower_bounds_bwd(dP, c.w, c.P, c.L, c.C);
    for (int64_t i = 0; i < n; i++) dP[i] -= dP0[i];
    fd("lower bounds dP (+=)", lb_loss, &c, c.P, 1, n, 0, dP, 0);
    // zeros give lb[l] = l / L
    real *Z = zvec(n);
    op_lower_bounds_fwd(c.lb, Z, c.L, c.C);
    double e = 0;
    for (int l = 0; l < c.L; l++)
        for (int j = 0; j < c.C; j++) e = fmax(e, fabs(c.lb[l * c.C + j] - (double)l / c.L));
    near("lower bounds of zeros = l / L", e, 8 * EPS);
    free(c.P); free(c.w); free(c.lb); free(dP0); free(dP); free(Z);
}

// ======================================================================================================
// swiglu
// ======================================================================================================
typedef struct { real *gu, *w, *h; int64_t N; int I; } SwiCtx;
static double swi_loss(void *p) {
    SwiCtx *c = p;
    op_swiglu_fwd(c->h, c->gu, c->N, c->I);
    return wsum(c->w, c->h, c->N * c->I);
}
// op_to_opnd_cols: C columns of N rows copied between row strides, the rest of y untouched; in place a no-op
static void test_to_opnd_cols(void) {
    printf("-- to_opnd_cols\n");
    seed(77);
    const int64_t N = 9, ldx = 13, ldy = 11;
    const int C = 6;
    real *x = rvec(N * ldx, 1), *y0 = rvec(N * ldy, 1), *y = dup(y0, N * ldy), *x0 = dup(x, N * ldx);
    op_to_opnd_cols(y + 4, ldy, x + 5, ldx, N, C);
    int ok = 1;
    for (int64_t r = 0; r < N; r++)
        for (int64_t j = 0; j < ldy; j++)
            ok &= y[r * ldy + j] == (j >= 4 && j < 4 + C ? x[r * ldx + 5 + j - 4] : y0[r * ldy + j]);
    near("to_opnd_cols: the columns copied, the rest untouched", !ok, 0);
    op_to_opnd_cols(x + 2, ldx, x + 2, ldx, N, C);
    near("to_opnd_cols in place leaves x as it was", memcmp(x, x0, (size_t)(N * ldx) * sizeof(real)) != 0, 0);
    free(x); free(y0); free(y); free(x0);
}

static void test_swiglu(void) {
    const uint64_t s = 7;
    printf("-- swiglu (seed %llu)\n", (unsigned long long)s);
    seed(s);
    SwiCtx c = {.N = 3, .I = 21};
    c.gu = rvec(c.N * 2 * c.I, 3); c.w = rvec(c.N * c.I, 1); c.h = zvec(c.N * c.I);
    real *dgu = zvec(c.N * 2 * c.I);
    op_swiglu_bwd(dgu, c.w, c.gu, c.N, c.I);
    fd("swiglu dgu", swi_loss, &c, c.gu, 1, c.N * 2 * c.I, 0, dgu, 0);
    free(c.gu); free(c.w); free(c.h); free(dgu);
}

// ======================================================================================================
// cross-entropy
// ======================================================================================================
typedef struct { real *x, *loss; int32_t *t; int64_t N; int V; double scale; } XentCtx;
static double xent_loss(void *p) {
    XentCtx *c = p;
    op_xent_fwd(c->loss, c->x, c->t, c->N, c->V);
    double s = 0;
    for (int64_t n = 0; n < c->N; n++) s += c->loss[n];
    return c->scale * s;
}
static void test_xent(void) {
    const uint64_t s = 8;
    printf("-- cross-entropy (seed %llu)\n", (unsigned long long)s);
    seed(s);
    XentCtx c = {.N = 5, .V = 37, .scale = 0.37};
    c.x = rvec(c.N * c.V, 3); c.loss = zvec(c.N);
    c.t = xmalloc((size_t)c.N * sizeof(int32_t));
    for (int64_t n = 0; n < c.N; n++) c.t[n] = (int32_t)(next_u64() % c.V);
    c.t[1] = -1; c.t[3] = -100;
    c.x[2 * c.V + 5] = 80;  // a large logit: logsumexp must not overflow in float either
    real *dx = zvec(c.N * c.V);
    op_xent_bwd(dx, c.x, c.t, (real)c.scale, c.N, c.V);
    fd("xent dlogits (ignored targets, scale)", xent_loss, &c, c.x, 1, c.N * c.V, 0, dx, 0);
    op_xent_fwd(c.loss, c.x, c.t, c.N, c.V);
    double e = 0;
    for (int64_t n = 0; n < c.N; n++) {
        if (c.t[n] < 0) { e = fmax(e, fabs(c.loss[n])); e = fmax(e, maxabs(dx + n * c.V, c.V)); continue; }
        double m = -INFINITY, z = 0;
        for (int j = 0; j < c.V; j++) m = fmax(m, c.x[n * c.V + j]);
        for (int j = 0; j < c.V; j++) z += exp(c.x[n * c.V + j] - m);
        e = fmax(e, fabs(c.loss[n] - (m + log(z) - c.x[n * c.V + c.t[n]])) / (m + log(z) - c.x[n * c.V + c.t[n]] + 1));
    }
    near("xent loss vs double formula; ignored rows 0", e, 64 * EPS * 8);
    real *a = dup(c.x, c.N * c.V);
    op_xent_bwd(a, a, c.t, (real)c.scale, c.N, c.V);
    near("xent bwd in place (dlogits == logits) gives the same bits", memcmp(a, dx, (size_t)(c.N * c.V) * sizeof(real)) != 0, 0);
    free(c.x); free(c.loss); free(c.t); free(dx); free(a);
}

// Soft targets: finite differences of the summed loss, the loss against the double formula written from the
// target distribution, the hard loss when eps = 0 and lam = 1, and the in-place backward.
typedef struct { real *x, *loss, *lam; int32_t *ta, *tb; int64_t N; int V; double eps, scale; } SoftCtx;
static double soft_loss(void *p) {
    SoftCtx *c = p;
    op_xent_soft_fwd(c->loss, c->x, c->ta, c->tb, c->lam, (real)c->eps, c->N, c->V);
    double s = 0;
    for (int64_t n = 0; n < c->N; n++) s += c->loss[n];
    return c->scale * s;
}
static void test_xent_soft(void) {
    const uint64_t s = 81;
    printf("-- cross-entropy with soft targets (seed %llu)\n", (unsigned long long)s);
    seed(s);
    SoftCtx c = {.N = 6, .V = 29, .eps = 0.1, .scale = 0.41};
    c.x = rvec(c.N * c.V, 3); c.loss = zvec(c.N); c.lam = zvec(c.N);
    c.ta = xmalloc((size_t)c.N * sizeof(int32_t)); c.tb = xmalloc((size_t)c.N * sizeof(int32_t));
    for (int64_t n = 0; n < c.N; n++) {
        c.ta[n] = (int32_t)(next_u64() % c.V); c.tb[n] = (int32_t)(next_u64() % c.V);
        c.lam[n] = (real)((next_u64() >> 11) * 0x1p-53);
    }
    c.tb[2] = c.ta[2];      // both targets on one class
    c.lam[4] = 1;           // no mixing
    c.ta[1] = -1;           // an ignored row
    c.x[3 * c.V + 7] = 80;  // a large logit
    real *dx = zvec(c.N * c.V);
    op_xent_soft_bwd(dx, c.x, c.ta, c.tb, c.lam, (real)c.eps, (real)c.scale, c.N, c.V);
    fd("xent soft dlogits (mixed, smoothed, an ignored row)", soft_loss, &c, c.x, 1, c.N * c.V, 0, dx, 0);
    op_xent_soft_fwd(c.loss, c.x, c.ta, c.tb, c.lam, (real)c.eps, c.N, c.V);
    double e = 0;
    for (int64_t n = 0; n < c.N; n++) {
        if (c.ta[n] < 0) { e = fmax(e, fabs(c.loss[n])); e = fmax(e, maxabs(dx + n * c.V, c.V)); continue; }
        double m = -INFINITY, z = 0, ref = 0;
        for (int j = 0; j < c.V; j++) m = fmax(m, c.x[n * c.V + j]);
        for (int j = 0; j < c.V; j++) z += exp(c.x[n * c.V + j] - m);
        for (int j = 0; j < c.V; j++) {   // - sum_j y_j log p_j
            double y = c.eps / c.V + (1 - c.eps) * (c.lam[n] * (j == c.ta[n]) + (1 - c.lam[n]) * (j == c.tb[n]));
            ref -= y * (c.x[n * c.V + j] - m - log(z));
        }
        e = fmax(e, fabs(c.loss[n] - ref) / (ref + 1));
    }
    near("xent soft loss vs - sum y log softmax in double; ignored rows 0", e, 64 * EPS * 8);
    // eps 0 and lam 1: the hard loss and gradient
    real *one = zvec(c.N), *hl = zvec(c.N), *hd = zvec(c.N * c.V), *sd = zvec(c.N * c.V);
    for (int64_t n = 0; n < c.N; n++) one[n] = 1;
    op_xent_fwd(hl, c.x, c.ta, c.N, c.V);
    op_xent_bwd(hd, c.x, c.ta, (real)c.scale, c.N, c.V);
    op_xent_soft_fwd(c.loss, c.x, c.ta, c.tb, one, 0, c.N, c.V);
    op_xent_soft_bwd(sd, c.x, c.ta, c.tb, one, 0, (real)c.scale, c.N, c.V);
    double h = 0;
    for (int64_t n = 0; n < c.N; n++) h = fmax(h, fabs(hl[n] - c.loss[n]) / (fabs(hl[n]) + 1));
    for (int64_t i = 0; i < c.N * c.V; i++) h = fmax(h, fabs(hd[i] - sd[i]));
    near("xent soft with eps 0 and lam 1 equals the hard loss", h, 64 * EPS * 8);
    real *a = dup(c.x, c.N * c.V);
    op_xent_soft_bwd(a, a, c.ta, c.tb, c.lam, (real)c.eps, (real)c.scale, c.N, c.V);
    near("xent soft bwd in place gives the same bits", memcmp(a, dx, (size_t)(c.N * c.V) * sizeof(real)) != 0, 0);
    free(c.x); free(c.loss); free(c.lam); free(c.ta); free(c.tb); free(dx); free(a);
    free(one); free(hl); free(hd); free(sd);
}

// ======================================================================================================
// AdamW
// ======================================================================================================
static void test_adamw(void) {
    const uint64_t s = 9;
    printf("-- adamw (seed %llu)\n", (unsigned long long)s);
    seed(s);
    int64_t n = 33;
    real *p = rvec(n, 1), *m = zvec(n), *v = zvec(n);
    double *pr = xmalloc((size_t)n * sizeof(double)), *mr = xcalloc((size_t)n, sizeof(double)), *vr = xcalloc((size_t)n, sizeof(double));
    for (int64_t i = 0; i < n; i++) pr[i] = p[i];
    double lr = 3e-3, b1 = 0.9, b2 = 0.98, eps = 1e-8, wd = 0.1, gs = 0.5;
    double e = 0;
    for (int step = 1; step <= 5; step++) {
        real *g = rvec(n, 1);
        op_adamw(p, g, m, v, n, lr, b1, b2, eps, wd, gs, step);
        for (int64_t i = 0; i < n; i++) {
            double gi = g[i] * gs;
            mr[i] = b1 * mr[i] + (1 - b1) * gi;
            vr[i] = b2 * vr[i] + (1 - b2) * gi * gi;
            double mh = mr[i] / (1 - pow(b1, step)), vh = vr[i] / (1 - pow(b2, step));
            pr[i] -= lr * (mh / (sqrt(vh) + eps) + wd * pr[i]);
            e = fmax(e, fabs(p[i] - pr[i]) / (fabs(pr[i]) + lr));
        }
        free(g);
    }
    near("adamw 5 steps vs closed form in double (/ (|p| + lr))", e, 64 * EPS);
    free(p); free(m); free(v); free(pr); free(mr); free(vr);
}

// One update of three parts with their own weight decay is the three updates one by one: the same values.
static void test_adamw_multi(void) {
    seed(10);
    const int64_t ns[3] = {5, 1, 17};
    real *p[3], *q[3], *m[3], *v[3], *m2[3], *v2[3], *g[3];
    AdamwPart parts[3];
    for (int k = 0; k < 3; k++) {
        p[k] = rvec(ns[k], 1);
        q[k] = xmalloc((size_t)ns[k] * sizeof(real));
        memcpy(q[k], p[k], (size_t)ns[k] * sizeof(real));
        m[k] = zvec(ns[k]);
        v[k] = zvec(ns[k]);
        m2[k] = zvec(ns[k]);
        v2[k] = zvec(ns[k]);
        g[k] = rvec(ns[k], 1);
        parts[k] = (AdamwPart){p[k], g[k], m[k], v[k], ns[k], 0.1 * k};
    }
    double e = 0;
    for (int step = 1; step <= 3; step++) {
        op_adamw_multi(parts, 3, 3e-3, 0.9, 0.98, 1e-8, 0.5, step);
        for (int k = 0; k < 3; k++) {
            op_adamw(q[k], g[k], m2[k], v2[k], ns[k], 3e-3, 0.9, 0.98, 1e-8, 0.1 * k, 0.5, step);
            for (int64_t i = 0; i < ns[k]; i++) e = fmax(e, fabs((double)p[k][i] - q[k][i]));
        }
    }
    near("adamw_multi = adamw part by part (3 parts, own weight decay)", e, 0);
    for (int k = 0; k < 3; k++) { free(p[k]); free(q[k]); free(m[k]); free(v[k]); free(m2[k]); free(v2[k]); free(g[k]); }
}

// ======================================================================================================
// sumsq
// ======================================================================================================
static void test_sumsq(void) {
    seed(10);
    int64_t n = 100003;
    real *a = rvec(n, 1);
    double s = 0, r = op_sumsq(a, n);
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * a[i];
    near("sumsq vs sequential double sum (n = 100003)", fabs(r - s) / s, 1e-12);
    free(a);
}

// ======================================================================================================
// HGRU2
// ======================================================================================================
typedef struct {
    int B, T, H, K, Dv, chunk;
    int dir;   // 0 causal, 1 reverse, 2 both summed (a bidirectional mixer: the reverse scan added, acc = 1)
    int64_t ldv, lddv;
    real *q, *k, *g, *v, *w, *o;
} HgruCtx;

static double hgru_loss(void *p) {
    HgruCtx *c = p;
    for (int r = 0; r < 2; r++)
        if (c->dir == r || c->dir == 2)
            op_hgru_fwd(c->o, NULL, c->q, c->k, c->g, c->v, c->ldv, NULL, c->B, c->T, c->H, c->K, c->Dv, c->chunk, r,
                        c->dir == 2 && r == 1);
    return wsum(c->w, c->o, (int64_t)c->B * c->T * c->H * c->Dv);
}
// The gradients of hgru_loss (dy = w): one backward per direction, the second adding into the first's
static void hgru_grads(const HgruCtx *c, real *dq, real *dk, real *dg, real *dv) {
    for (int r = 0; r < 2; r++)
        if (c->dir == r || c->dir == 2)
            op_hgru_bwd(dq, dk, dg, dv, c->lddv, c->w, c->q, c->k, c->g, c->v, c->ldv, c->B, c->T, c->H, c->K, c->Dv,
                        c->chunk, r, c->dir == 2 && r == 1);
}

// Gates as the model makes them: g = logsigmoid(x) <= 0, one in ten very negative (forget almost all),
// k = 1 - exp(g) = sigmoid(-x).
static void hgru_inputs(HgruCtx *c, uint64_t s) {
    seed(s);
    int64_t nqk = (int64_t)c->B * c->T * c->H * c->K, rows = (int64_t)c->B * c->T;
    c->q = rvec(nqk, 1); c->k = zvec(nqk); c->g = zvec(nqk);
    for (int64_t i = 0; i < nqk; i++) {
        double x = urand() < 0.1 ? -10 - 20 * urand() : 2 * nrand() + 1;
        double g = x > 0 ? -log1p(exp(-x)) : x - log1p(exp(x));
        c->g[i] = (real)g;
        c->k[i] = (real)(-expm1(g));
    }
    c->v = rvec(rows * c->ldv, 1);
    c->w = rvec(rows * c->H * c->Dv, 1);
    c->o = zvec(rows * c->H * c->Dv);
}
static void hgru_free(HgruCtx *c) { free(c->q); free(c->k); free(c->g); free(c->v); free(c->w); free(c->o); }

// dir as in HgruCtx
static void test_hgru_fd_dir(int B, int T, int H, int K, int Dv, int chunk, int dir, uint64_t s) {
    HgruCtx c = {.B = B, .T = T, .H = H, .K = K, .Dv = Dv, .chunk = chunk, .dir = dir, .ldv = H * Dv + 2,
                 .lddv = H * Dv + 1};
    hgru_inputs(&c, s);
    int64_t nqk = (int64_t)B * T * H * K, rows = (int64_t)B * T;
    real *dq = zvec(nqk), *dk = zvec(nqk), *dg = zvec(nqk), *dv = zvec(rows * c.lddv);
    hgru_grads(&c, dq, dk, dg, dv);
    char name[128];
    const char *nm[4] = {"dq", "dk", "dg", "dv"}, *dn[3] = {"", " reverse", " bidirectional"};
    double gs = fmax(fmax(maxabs(dq, nqk), maxabs(dk, nqk)), fmax(maxabs(dg, nqk), maxabs(dv, rows * c.lddv)));
    for (int a = 0; a < 4; a++) {
        snprintf(name, sizeof name, "hgru%s %s B%d T%d H%d K%d Dv%d chunk %d (seed %llu)", dn[dir], nm[a], B, T, H, K,
                 Dv, chunk, (unsigned long long)s);
        if (a == 0) fd_scaled(name, hgru_loss, &c, c.q, 1, nqk, 0, dq, 0, gs);
        if (a == 1) fd_scaled(name, hgru_loss, &c, c.k, 1, nqk, 0, dk, 0, gs);
        if (a == 2) fd_scaled(name, hgru_loss, &c, c.g, 1, nqk, 0, dg, 0, gs);
        if (a == 3) fd_scaled(name, hgru_loss, &c, c.v, rows, H * Dv, c.ldv, dv, c.lddv, gs);
    }
    hgru_free(&c);
    free(dq); free(dk); free(dg); free(dv);
}
static void test_hgru_fd(int B, int T, int H, int K, int Dv, int chunk, uint64_t s) {
    test_hgru_fd_dir(B, T, H, K, Dv, chunk, 0, s);
}

// The plain recurrence in double, straight from docs/model.md "The token mixer (HGRU2)", with an entering state.
static void hgru_naive(double *o, double *ST, const HgruCtx *c, const real *S0) {
    int K = c->K, Dv = c->Dv, H = c->H, T = c->T;
    double *S = xmalloc((size_t)K * Dv * sizeof(double));
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < H; h++) {
            for (int64_t i = 0; i < (int64_t)K * Dv; i++) S[i] = S0[((int64_t)b * H + h) * K * Dv + i];
            for (int t = 0; t < T; t++) {
                int64_t qk = (((int64_t)b * T + t) * H + h) * K;
                const real *v = c->v + ((int64_t)b * T + t) * c->ldv + h * Dv;
                for (int i = 0; i < K; i++)
                    for (int j = 0; j < Dv; j++)
                        S[i * Dv + j] = exp((double)c->g[qk + i]) * S[i * Dv + j] + (double)c->k[qk + i] * v[j];
                for (int j = 0; j < Dv; j++) {
                    double s = 0;
                    for (int i = 0; i < K; i++) s += S[i * Dv + j] * c->q[qk + i] / sqrt((double)K);
                    o[(((int64_t)b * T + t) * H + h) * Dv + j] = s;
                }
            }
            for (int64_t i = 0; i < (int64_t)K * Dv; i++) ST[((int64_t)b * H + h) * K * Dv + i] = S[i];
        }
    free(S);
}

// Chunked against recurrent, forward (with an entering state, the leaving state, and ST == S0 in place) and
// backward. The two differ only in rounding: other summation orders over up to a chunk of terms, and the
// local cumulative sums b, whose absolute error eps |b| enters every decay exp(b_r - b_s). Measured errors
// are about 50 eps in both builds; the tolerance is 4096 eps (9e-13 in float64).
static void test_hgru_agree(int T, int chunk, uint64_t s) {
    int B = 2, H = 2, K = 8, Dv = 5;
    HgruCtx c = {.B = B, .T = T, .H = H, .K = K, .Dv = Dv, .ldv = H * Dv + 3, .lddv = H * Dv + 1};
    hgru_inputs(&c, s);
    int64_t nqk = (int64_t)B * T * H * K, rows = (int64_t)B * T, no = rows * H * Dv, ns = (int64_t)B * H * K * Dv;
    real *S0 = rvec(ns, 1);
    real *o0 = zvec(no), *o1 = zvec(no), *o2 = zvec(no), *ST0 = zvec(ns), *ST1 = zvec(ns), *X = dup(S0, ns);
    op_hgru_fwd(o0, ST0, c.q, c.k, c.g, c.v, c.ldv, S0, B, T, H, K, Dv, 0, 0, 0);
    op_hgru_fwd(o1, ST1, c.q, c.k, c.g, c.v, c.ldv, S0, B, T, H, K, Dv, chunk, 0, 0);
    op_hgru_fwd(o2, X, c.q, c.k, c.g, c.v, c.ldv, X, B, T, H, K, Dv, chunk, 0, 0);
    double tol = 4096 * EPS;
    char name[128];
    double *on = xmalloc((size_t)no * sizeof(double)), *STn = xmalloc((size_t)ns * sizeof(double));
    hgru_naive(on, STn, &c, S0);
    real *onr = zvec(no), *STnr = zvec(ns);
    for (int64_t i = 0; i < no; i++) onr[i] = (real)on[i];
    for (int64_t i = 0; i < ns; i++) STnr[i] = (real)STn[i];
    snprintf(name, sizeof name, "hgru fwd recurrent vs naive double: o, ST (T=%d, S0 != 0)", T);
    near(name, fmax(relerr(o0, onr, no), relerr(ST0, STnr, ns)), 512 * EPS);
    snprintf(name, sizeof name, "hgru fwd chunk %d vs recurrent: o (T=%d, S0 != 0)", chunk, T);
    near(name, relerr(o1, o0, no), tol);
    snprintf(name, sizeof name, "hgru fwd chunk %d vs recurrent: ST (T=%d)", chunk, T);
    near(name, relerr(ST1, ST0, ns), tol);
    snprintf(name, sizeof name, "hgru fwd chunk %d ST == S0 in place: same bits (T=%d)", chunk, T);
    near(name, (memcmp(o2, o1, (size_t)no * sizeof(real)) != 0) + (memcmp(X, ST1, (size_t)ns * sizeof(real)) != 0), 0);
    real *dout = rvec(no, 1);
    real *d0[4], *d1[4];
    for (int m = 0; m < 2; m++) {
        real **d = m ? d1 : d0;
        d[0] = zvec(nqk); d[1] = zvec(nqk); d[2] = zvec(nqk); d[3] = zvec(rows * c.lddv);
        op_hgru_bwd(d[0], d[1], d[2], d[3], c.lddv, dout, c.q, c.k, c.g, c.v, c.ldv, B, T, H, K, Dv, m ? chunk : 0, 0, 0);
    }
    const char *nm[4] = {"dq", "dk", "dg", "dv"};
    for (int a = 0; a < 4; a++) {
        snprintf(name, sizeof name, "hgru bwd chunk %d vs recurrent: %s (T=%d)", chunk, nm[a], T);
        near(name, relerr(d1[a], d0[a], a == 3 ? rows * c.lddv : nqk), tol);
        free(d0[a]); free(d1[a]);
    }
    hgru_free(&c);
    free(S0); free(o0); free(o1); free(o2); free(ST0); free(ST1); free(X); free(on); free(STn); free(onr); free(STnr); free(dout);
}

// ======================================================================================================
// determinism across thread counts (det_check: tests/fd.h)
// ======================================================================================================
typedef struct { real *x, *W, *dy, *dW0; int64_t N; int I, O; } DetMat;
static void det_matmul(void *p, real *out) {
    DetMat *c = p;
    memcpy(out + c->N * c->I, c->dW0, (size_t)c->O * c->I * sizeof(real));
    op_matmul_bwd(out, out + c->N * c->I, c->dy, c->x, c->W, c->N, c->I, c->O);
    op_matmul_fwd(out + c->N * c->I + (int64_t)c->O * c->I, c->x, c->W, c->N, c->I, c->O);
}
typedef struct { real *dx; int32_t *ids; int64_t N; int D, V; } DetEmb;
static void det_embed(void *p, real *out) {
    DetEmb *c = p;
    memset(out, 0, (size_t)c->V * c->D * sizeof(real));
    op_embed_bwd(out, c->dx, c->ids, c->N, c->D, c->V);
}
typedef struct { real *qf, *lb, *dq, *dk, *dg; int64_t N; int HK; } DetGate;
static void det_gates(void *p, real *out) {
    DetGate *c = p;
    memset(out + c->N * 2 * c->HK, 0, (size_t)c->HK * sizeof(real));
    op_gates_bwd(out, 2 * c->HK, out + c->N * 2 * c->HK, c->dq, c->dk, c->dg, c->qf, 2 * c->HK, c->lb, c->N, c->HK);
}
typedef struct { HgruCtx h; real *dout; int chunk; } DetHgru;
static void det_hgru(void *p, real *out) {
    DetHgru *c = p;
    HgruCtx *h = &c->h;
    int64_t nqk = (int64_t)h->B * h->T * h->H * h->K;
    op_hgru_bwd(out, out + nqk, out + 2 * nqk, out + 3 * nqk, h->H * h->Dv, c->dout, h->q, h->k, h->g, h->v, h->ldv,
                h->B, h->T, h->H, h->K, h->Dv, c->chunk, 0, 0);
}
typedef struct { real *a; int64_t n; } DetSum;
static void det_sumsq(void *p, real *out) { DetSum *c = p; out[0] = (real)op_sumsq(c->a, c->n); }
typedef struct { real *x, *w, *dy; int64_t N; int C; } DetRms;
static void det_rms(void *p, real *out) {
    DetRms *c = p;
    memset(out + c->N * c->C, 0, (size_t)c->C * sizeof(real));
    op_rmsnorm_bwd(out, 0, out + c->N * c->C, c->dy, c->x, c->w, NULL, c->N, c->C, 1e-6);
}

static void test_determinism(void) {
    printf("-- determinism (seed 11)\n");
    seed(11);
    DetMat m = {.N = 300, .I = 290, .O = 200};
    m.x = rvec(m.N * m.I, 1); m.W = rvec((int64_t)m.O * m.I, 1); m.dy = rvec(m.N * m.O, 1); m.dW0 = rvec((int64_t)m.O * m.I, 1);
    det_check("matmul fwd and bwd (dx, dW +=)", det_matmul, &m, m.N * m.I + (int64_t)m.O * m.I + m.N * m.O);
    DetEmb e = {.N = 3000, .D = 300, .V = 50};
    e.dx = rvec(e.N * e.D, 1);
    e.ids = xmalloc((size_t)e.N * sizeof(int32_t));
    for (int64_t n = 0; n < e.N; n++) e.ids[n] = (int32_t)(next_u64() % e.V);
    det_check("embed bwd (repeated ids)", det_embed, &e, (int64_t)e.V * e.D);
    DetGate g = {.N = 1000, .HK = 300};
    g.qf = rvec(g.N * 2 * g.HK, 2); g.dq = rvec(g.N * g.HK, 1); g.dk = rvec(g.N * g.HK, 1); g.dg = rvec(g.N * g.HK, 1);
    g.lb = xmalloc((size_t)g.HK * sizeof(real));
    for (int i = 0; i < g.HK; i++) g.lb[i] = (real)(0.1 + 0.8 * urand());
    det_check("gates bwd (dqf, dlb +=)", det_gates, &g, g.N * 2 * g.HK + g.HK);
    DetRms r = {.N = 1000, .C = 300};
    r.x = rvec(r.N * r.C, 1); r.w = rvec(r.C, 1); r.dy = rvec(r.N * r.C, 1);
    det_check("rmsnorm bwd (dx, dw +=)", det_rms, &r, r.N * r.C + r.C);
    DetSum s = {.n = 1000003};
    s.a = rvec(s.n, 1);
    det_check("sumsq (n = 1000003)", det_sumsq, &s, 1);
    for (int ch = 0; ch <= 64; ch += 64) {
        DetHgru h = {.h = {.B = 3, .T = 150, .H = 2, .K = 16, .Dv = 12, .ldv = 2 * 12}, .chunk = ch};
        hgru_inputs(&h.h, 12);
        h.dout = rvec((int64_t)3 * 150 * 2 * 12, 1);
        int64_t nqk = (int64_t)3 * 150 * 2 * 16;
        det_check(ch ? "hgru bwd chunk 64" : "hgru bwd recurrent", det_hgru, &h, 3 * nqk + (int64_t)3 * 150 * 2 * 12);
        hgru_free(&h.h);
        free(h.dout);
    }
    free(m.x); free(m.W); free(m.dy); free(m.dW0); free(e.dx); free(e.ids);
    free(g.qf); free(g.dq); free(g.dk); free(g.dg); free(g.lb); free(r.x); free(r.w); free(r.dy); free(s.a);
}

// ======================================================================================================
// --bench
// ======================================================================================================
static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}
// The fastest of REPS runs: on a shared machine other processes only ever add time.
#define REPS 9
static double best(const double *t) {
    double m = t[0];
    for (int r = 1; r < REPS; r++) m = t[r] < m ? t[r] : m;
    return m;
}

static void bench(void) {
    printf("bench: %s build, %d OpenMP threads; fastest of %d runs after a warm-up\n", FD ? "float64" : "float",
           omp_get_max_threads(), REPS);
    int shapes[][3] = {{4096, 256, 768}, {4096, 768, 256}, {4096, 256, 256}, {4096, 256, 4096}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int64_t N = shapes[si][0];
        int I = shapes[si][1], O = shapes[si][2];
        seed(13);
        real *x = rvec(N * I, 1), *W = rvec((int64_t)O * I, 0.02), *y = zvec(N * O), *dy = rvec(N * O, 1);
        real *dx = zvec(N * I), *dW = zvec((int64_t)O * I);
        double tf[REPS], tdx[REPS], tdw[REPS], fl = 2.0 * N * I * O;
        op_matmul_fwd(y, x, W, N, I, O);
        op_matmul_bwd(dx, dW, dy, x, W, N, I, O);
        for (int r = 0; r < REPS; r++) {
            double t0 = now();
            op_matmul_fwd(y, x, W, N, I, O);
            double t1 = now();
            op_matmul_bwd(dx, NULL, dy, x, W, N, I, O);
            double t2 = now();
            op_matmul_bwd(NULL, dW, dy, x, W, N, I, O);
            double t3 = now();
            tf[r] = t1 - t0; tdx[r] = t2 - t1; tdw[r] = t3 - t2;
        }
        double mf = best(tf), mdx = best(tdx), mdw = best(tdw);
        printf("matmul N=%lld I=%4d O=%4d: fwd %6.2f ms %6.1f GFLOP/s | bwd dx %6.2f ms %6.1f GFLOP/s | "
               "dW %6.2f ms %6.1f GFLOP/s | bwd total %6.1f GFLOP/s\n",
               (long long)N, I, O, mf * 1e3, fl / mf * 1e-9, mdx * 1e3, fl / mdx * 1e-9, mdw * 1e3, fl / mdw * 1e-9,
               2 * fl / (mdx + mdw) * 1e-9);
        free(x); free(W); free(y); free(dy); free(dx); free(dW);
    }
    // the recurrence at a small-model shape, recurrent and chunked, with the test's gates (one in ten very
    // negative, whose decays underflow: slow on CPUs that trap subnormal numbers) and with mild ones
    int B = 16, T = 256, H = 2, K = 128, Dv = 128;
    HgruCtx c = {.B = B, .T = T, .H = H, .K = K, .Dv = Dv, .ldv = H * Dv};
    hgru_inputs(&c, 14);
    int64_t nqk = (int64_t)B * T * H * K, no = (int64_t)B * T * H * Dv;
    real *dq = zvec(nqk), *dk = zvec(nqk), *dg = zvec(nqk), *dv = zvec(no);
    for (int mild = 0; mild <= 1; mild++) {
        if (mild)
            for (int64_t i = 0; i < nqk; i++) { c.g[i] = (real)(-0.2 * urand()); c.k[i] = (real)-expm1((double)c.g[i]); }
        for (int ch = 0; ch <= 64; ch += 64) {
            double tf[REPS], tb[REPS];
            for (int r = 0; r < REPS; r++) {
                double t0 = now();
                op_hgru_fwd(c.o, NULL, c.q, c.k, c.g, c.v, c.ldv, NULL, B, T, H, K, Dv, ch, 0, 0);
                double t1 = now();
                op_hgru_bwd(dq, dk, dg, dv, H * Dv, c.w, c.q, c.k, c.g, c.v, c.ldv, B, T, H, K, Dv, ch, 0, 0);
                tb[r] = now() - t1; tf[r] = t1 - t0;
            }
            printf("hgru B=%d T=%d H=%d K=%d Dv=%d chunk %2d, %s gates: fwd %7.2f ms, bwd %7.2f ms (%.2f us per "
                   "token-head fwd+bwd)\n", B, T, H, K, Dv, ch, mild ? "mild" : "test", best(tf) * 1e3, best(tb) * 1e3,
                   (best(tf) + best(tb)) * 1e6 / (B * T * H));
        }
    }
    hgru_free(&c);
    free(dq); free(dk); free(dg); free(dv);
}

// ======================================================================================================
// HGRU2 in both directions: the reverse scan and the accumulating outputs of a bidirectional mixer
// ======================================================================================================
// rows (b, t) -> (b, T-1-t) of a [B,T,cols] tensor with row stride ld
static real *reversed_rows(const real *x, int B, int T, int64_t ld) {
    real *y = xmalloc((size_t)B * T * ld * sizeof(real));
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) memcpy(y + (b * T + t) * ld, x + (b * T + T - 1 - t) * ld, (size_t)ld * sizeof(real));
    return y;
}
static int same_bits(const real *a, const real *b, int64_t n) { return memcmp(a, b, (size_t)n * sizeof(real)) == 0; }

// reverse = 1 against the causal op run on copies reversed here, forward (with an entering and a leaving
// state) and backward. The reverse scan reads rows backwards in place and otherwise does the causal scan's
// arithmetic on the same values in the same order, so it must give the same bits.
static void test_hgru_reverse_ref(int T, int chunk, uint64_t s) {
    int B = 2, H = 2, K = 8, Dv = 5;
    HgruCtx c = {.B = B, .T = T, .H = H, .K = K, .Dv = Dv, .ldv = H * Dv + 3, .lddv = H * Dv + 1};
    hgru_inputs(&c, s);
    int64_t nqk = (int64_t)B * T * H * K, rows = (int64_t)B * T, no = rows * H * Dv, ns = (int64_t)B * H * K * Dv;
    int64_t HK = (int64_t)H * K, HD = (int64_t)H * Dv;
    real *S0 = rvec(ns, 1), *dout = rvec(no, 1);
    real *rq = reversed_rows(c.q, B, T, HK), *rk = reversed_rows(c.k, B, T, HK), *rg = reversed_rows(c.g, B, T, HK);
    real *rv = reversed_rows(c.v, B, T, c.ldv), *rdo = reversed_rows(dout, B, T, HD);
    real *o = zvec(no), *ST = zvec(ns), *ro = zvec(no), *rST = zvec(ns);
    op_hgru_fwd(o, ST, c.q, c.k, c.g, c.v, c.ldv, S0, B, T, H, K, Dv, chunk, 1, 0);
    op_hgru_fwd(ro, rST, rq, rk, rg, rv, c.ldv, S0, B, T, H, K, Dv, chunk, 0, 0);
    real *ro_back = reversed_rows(ro, B, T, HD);
    char name[128];
    snprintf(name, sizeof name, "hgru reverse == causal on reversed copies: o, ST (T=%d chunk %d)", T, chunk);
    near(name, !same_bits(o, ro_back, no) + !same_bits(ST, rST, ns), 0);
    real *d[4], *rd[4];
    int64_t n[4] = {nqk, nqk, nqk, rows * c.lddv}, ld[4] = {HK, HK, HK, c.lddv};
    for (int a = 0; a < 4; a++) { d[a] = zvec(n[a]); rd[a] = zvec(n[a]); }
    op_hgru_bwd(d[0], d[1], d[2], d[3], c.lddv, dout, c.q, c.k, c.g, c.v, c.ldv, B, T, H, K, Dv, chunk, 1, 0);
    op_hgru_bwd(rd[0], rd[1], rd[2], rd[3], c.lddv, rdo, rq, rk, rg, rv, c.ldv, B, T, H, K, Dv, chunk, 0, 0);
    int bad = 0;
    for (int a = 0; a < 4; a++) {
        real *back = reversed_rows(rd[a], B, T, ld[a]);
        bad += !same_bits(d[a], back, n[a]);
        free(back); free(d[a]); free(rd[a]);
    }
    snprintf(name, sizeof name, "hgru reverse == causal on reversed copies: dq dk dg dv (T=%d chunk %d)", T, chunk);
    near(name, bad, 0);
    hgru_free(&c);
    free(S0); free(dout); free(rq); free(rk); free(rg); free(rv); free(rdo); free(o); free(ST); free(ro); free(rST);
    free(ro_back);
}

// acc = 1 adds to what is there exactly what acc = 0 writes: each result is formed apart and then added, so
// the sum rounds once, as the reference's. ST is written (=) either way, and dv's gaps between rows keep
// their values.
static void test_hgru_acc(int T, int chunk, int reverse, uint64_t s) {
    int B = 2, H = 2, K = 8, Dv = 5;
    HgruCtx c = {.B = B, .T = T, .H = H, .K = K, .Dv = Dv, .ldv = H * Dv + 3, .lddv = H * Dv + 1};
    hgru_inputs(&c, s);
    int64_t nqk = (int64_t)B * T * H * K, rows = (int64_t)B * T, no = rows * H * Dv, ns = (int64_t)B * H * K * Dv;
    real *S0 = rvec(ns, 1), *dout = rvec(no, 1);
    real *o = zvec(no), *ST = zvec(ns), *prev = rvec(no, 1), *oa = dup(prev, no), *STa = zvec(ns);
    op_hgru_fwd(o, ST, c.q, c.k, c.g, c.v, c.ldv, S0, B, T, H, K, Dv, chunk, reverse, 0);
    op_hgru_fwd(oa, STa, c.q, c.k, c.g, c.v, c.ldv, S0, B, T, H, K, Dv, chunk, reverse, 1);
    for (int64_t i = 0; i < no; i++) prev[i] += o[i];
    char name[128];
    snprintf(name, sizeof name, "hgru fwd acc=1 == prefilled o + the acc=0 o; ST (T=%d chunk %d rev %d)", T, chunk,
             reverse);
    near(name, !same_bits(oa, prev, no) + !same_bits(STa, ST, ns), 0);
    int64_t n[4] = {nqk, nqk, nqk, rows * c.lddv};
    int bad = 0;
    for (int a = 0; a < 4; a++) {
        real *d[4], *p[4];
        for (int e = 0; e < 4; e++) { d[e] = zvec(n[e]); p[e] = rvec(n[e], 1); }
        real *want = dup(p[a], n[a]);
        op_hgru_bwd(d[0], d[1], d[2], d[3], c.lddv, dout, c.q, c.k, c.g, c.v, c.ldv, B, T, H, K, Dv, chunk, reverse, 0);
        op_hgru_bwd(p[0], p[1], p[2], p[3], c.lddv, dout, c.q, c.k, c.g, c.v, c.ldv, B, T, H, K, Dv, chunk, reverse, 1);
        for (int64_t i = 0; i < n[a]; i++) want[i] += d[a][i];   // dv's gaps: + 0
        bad += !same_bits(p[a], want, n[a]);
        for (int e = 0; e < 4; e++) { free(d[e]); free(p[e]); }
        free(want);
    }
    snprintf(name, sizeof name, "hgru bwd acc=1 == prefilled + the acc=0 dq dk dg dv (T=%d chunk %d rev %d)", T,
             chunk, reverse);
    near(name, bad, 0);
    hgru_free(&c);
    free(S0); free(dout); free(o); free(ST); free(prev); free(oa); free(STa);
}

static void det_hgru_bidir(void *p, real *out) {
    DetHgru *c = p;
    HgruCtx *h = &c->h;
    int64_t nqk = (int64_t)h->B * h->T * h->H * h->K;
    for (int r = 0; r < 2; r++)
        op_hgru_bwd(out, out + nqk, out + 2 * nqk, out + 3 * nqk, h->H * h->Dv, c->dout, h->q, h->k, h->g, h->v, h->ldv,
                    h->B, h->T, h->H, h->K, h->Dv, c->chunk, r, r);
}

static void test_hgru_directions(void) {
    printf("-- hgru reverse scan, finite differences (plain and chunked; a chunk of 64 leaves a ragged one)\n");
    test_hgru_fd_dir(2, 1, 2, 4, 3, 0, 1, 40);
    test_hgru_fd_dir(2, 1, 2, 4, 3, 16, 1, 40);
    int Ts[] = {63, 64, 65};
    for (int ti = 0; ti < 3; ti++) {
        test_hgru_fd_dir(1, Ts[ti], 1, 4, 3, 0, 1, 41 + ti);
        test_hgru_fd_dir(1, Ts[ti], 1, 4, 3, 16, 1, 41 + ti);
    }
    test_hgru_fd_dir(1, 65, 1, 4, 3, 64, 1, 44);
    test_hgru_fd_dir(1, 45, 1, 5, 3, 40, 1, 45);   // off-diagonal sub-blocks; the ragged chunk at position 0
    test_hgru_fd_dir(2, 17, 3, 3, 5, 5, 1, 46);
    test_hgru_fd_dir(2, 17, 3, 3, 5, 0, 1, 46);
    printf("-- hgru bidirectional (causal + reverse, acc), finite differences\n");
    test_hgru_fd_dir(2, 1, 2, 4, 3, 0, 2, 50);
    test_hgru_fd_dir(1, 33, 2, 3, 2, 0, 2, 51);
    test_hgru_fd_dir(1, 65, 2, 3, 2, 16, 2, 52);
    test_hgru_fd_dir(1, 45, 1, 5, 3, 40, 2, 53);
    printf("-- hgru reverse scan against the causal op on reversed copies\n");
    int Tr[] = {1, 63, 64, 65, 200};
    for (int ti = 0; ti < 5; ti++)
        for (int ch = 0; ch <= 64; ch += ch ? 48 : 16)   // 0, 16, 64
            test_hgru_reverse_ref(Tr[ti], ch, 60 + ti);
    printf("-- hgru acc = 1\n");
    for (int ti = 0; ti < 5; ti++)
        for (int ch = 0; ch <= 64; ch += ch ? 48 : 16)
            for (int rev = 0; rev < 2; rev++) test_hgru_acc(Tr[ti], ch, rev, 70 + ti);
    for (int ch = 0; ch <= 64; ch += 64) {
        DetHgru h = {.h = {.B = 3, .T = 150, .H = 2, .K = 16, .Dv = 12, .ldv = 2 * 12}, .chunk = ch};
        hgru_inputs(&h.h, 13);
        h.dout = rvec((int64_t)3 * 150 * 2 * 12, 1);
        int64_t nqk = (int64_t)3 * 150 * 2 * 16;
        det_check(ch ? "hgru bidirectional bwd chunk 64" : "hgru bidirectional bwd recurrent", det_hgru_bidir, &h,
                  3 * nqk + (int64_t)3 * 150 * 2 * 12);
        hgru_free(&h.h);
        free(h.dout);
    }
}

// ======================================================================================================
// HGRN1: the element-wise recurrence and the gated RMSNorm
// ======================================================================================================
// dir: 0 the scan from the start, 1 from the end, 2 both summed (the classifier's bidirectional mixer: the
// second added into the first's output with acc)
typedef struct { int B, T, D, dir; real *q, *k, *g, *w, *o; } HgrnCtx;
static double hgrn_loss(void *p) {
    HgrnCtx *c = p;
    op_hgrn_fwd(c->o, NULL, c->q, c->k, c->g, NULL, c->B, c->T, c->D, c->dir == 1, 0);
    if (c->dir == 2) op_hgrn_fwd(c->o, NULL, c->q, c->k, c->g, NULL, c->B, c->T, c->D, 1, 1);
    return wsum(c->w, c->o, (int64_t)c->B * c->T * c->D);
}
// The loss's gradients (garbage in dq, dk, dg is overwritten): each direction's backward reads that
// direction's own outputs, recomputed alone; the second adds (acc).
static void hgrn_grads(HgrnCtx *c, real *dq, real *dk, real *dg) {
    const int64_t n = (int64_t)c->B * c->T * c->D;
    real *h = zvec(n);
    for (int r = 0; r < 2; r++) {
        if ((c->dir == 0 && r) || (c->dir == 1 && !r)) continue;
        op_hgrn_fwd(h, NULL, c->q, c->k, c->g, NULL, c->B, c->T, c->D, r, 0);
        op_hgrn_bwd(dq, dk, dg, c->w, c->q, c->k, c->g, h, c->B, c->T, c->D, r, c->dir == 2 && r);
    }
    free(h);
}
// q = swish(i) of any sign, k = 1 - exp(g) and g = logsigmoid(x), one in ten very negative, as the model makes them
static void hgrn_inputs(HgrnCtx *c, uint64_t s) {
    seed(s);
    int64_t n = (int64_t)c->B * c->T * c->D;
    c->q = rvec(n, 1); c->k = zvec(n); c->g = zvec(n); c->w = rvec(n, 1); c->o = zvec(n);
    for (int64_t i = 0; i < n; i++) {
        double x = urand() < 0.1 ? -10 - 20 * urand() : 2 * nrand() + 1;
        double g = x > 0 ? -log1p(exp(-x)) : x - log1p(exp(x));
        c->g[i] = (real)g;
        c->k[i] = (real)(-expm1(g));
    }
}
static void hgrn_free(HgrnCtx *c) { free(c->q); free(c->k); free(c->g); free(c->w); free(c->o); }

static void test_hgrn_fd(int B, int T, int D, int dir, uint64_t s) {
    HgrnCtx c = {.B = B, .T = T, .D = D, .dir = dir};
    hgrn_inputs(&c, s);
    int64_t n = (int64_t)B * T * D;
    real *dq = rvec(n, 1), *dk = rvec(n, 1), *dg = rvec(n, 1);   // garbage: the op overwrites
    hgrn_grads(&c, dq, dk, dg);
    double gs = maxabs(dq, n);
    gs = maxabs(dk, n) > gs ? maxabs(dk, n) : gs;
    gs = maxabs(dg, n) > gs ? maxabs(dg, n) : gs;
    const char *dn = dir == 0 ? "" : dir == 1 ? " reverse" : " both ways";
    char name[96];
    snprintf(name, sizeof name, "hgrn%s dq B%d T%d D%d (seed %llu)", dn, B, T, D, (unsigned long long)s);
    fd_vec(name, hgrn_loss, &c, c.q, n, dq, gs);
    snprintf(name, sizeof name, "hgrn%s dk B%d T%d D%d", dn, B, T, D);
    fd_vec(name, hgrn_loss, &c, c.k, n, dk, gs);
    snprintf(name, sizeof name, "hgrn%s dg B%d T%d D%d", dn, B, T, D);
    fd_vec(name, hgrn_loss, &c, c.g, n, dg, gs);
    hgrn_free(&c);
    free(dq); free(dk); free(dg);
}

// The forward against a plain double loop, from a nonzero entering state, and hT == h0 in place.
static void test_hgrn_naive(int B, int T, int D, uint64_t s) {
    HgrnCtx c = {.B = B, .T = T, .D = D};
    hgrn_inputs(&c, s);
    int64_t n = (int64_t)B * T * D;
    real *h0 = rvec((int64_t)B * D, 1), *hT = zvec((int64_t)B * D), *h = dup(h0, (int64_t)B * D), *o2 = zvec(n);
    double *on = xmalloc((size_t)n * sizeof(double)), *hn = xmalloc((size_t)B * D * sizeof(double));
    for (int b = 0; b < B; b++)
        for (int d = 0; d < D; d++) {
            double x = h0[(int64_t)b * D + d];
            for (int t = 0; t < T; t++) {
                int64_t i = ((int64_t)b * T + t) * D + d;
                x = exp((double)c.g[i]) * x + (double)c.q[i] * c.k[i];
                on[i] = x;
            }
            hn[(int64_t)b * D + d] = x;
        }
    op_hgrn_fwd(c.o, hT, c.q, c.k, c.g, h0, B, T, D, 0, 0);
    op_hgrn_fwd(o2, h, c.q, c.k, c.g, h, B, T, D, 0, 0);
    double e = 0, m = 0;
    for (int64_t i = 0; i < n; i++) { e = fmax(e, fabs(c.o[i] - on[i])); m = fmax(m, fabs(on[i])); }
    for (int64_t i = 0; i < (int64_t)B * D; i++) { e = fmax(e, fabs(hT[i] - hn[i])); m = fmax(m, fabs(hn[i])); }
    char name[96];
    snprintf(name, sizeof name, "hgrn fwd vs naive double: o, hT (B%d T%d D%d, h0 != 0)", B, T, D);
    near(name, e / (m > 0 ? m : 1), 8 * T * EPS);
    snprintf(name, sizeof name, "hgrn fwd hT == h0 in place: same bits (T=%d)", T);
    near(name, relerr(o2, c.o, n) + relerr(h, hT, (int64_t)B * D), 0);
    hgrn_free(&c);
    free(h0); free(hT); free(h); free(o2); free(on); free(hn);
}

// The reverse scan against a plain double loop from the end (from a nonzero entering state), and acc: the
// forward and the backward added onto what is there give the sums of their fresh outputs.
static void test_hgrn_reverse(int B, int T, int D, uint64_t s) {
    HgrnCtx c = {.B = B, .T = T, .D = D};
    hgrn_inputs(&c, s);
    const int64_t n = (int64_t)B * T * D, nb = (int64_t)B * D;
    real *h0 = rvec(nb, 1), *hT = zvec(nb);
    double *on = xmalloc((size_t)n * sizeof(double)), *hn = xmalloc((size_t)nb * sizeof(double));
    for (int b = 0; b < B; b++)
        for (int d = 0; d < D; d++) {
            double x = h0[(int64_t)b * D + d];
            for (int t = T - 1; t >= 0; t--) {
                int64_t i = ((int64_t)b * T + t) * D + d;
                x = exp((double)c.g[i]) * x + (double)c.q[i] * c.k[i];
                on[i] = x;
            }
            hn[(int64_t)b * D + d] = x;
        }
    op_hgrn_fwd(c.o, hT, c.q, c.k, c.g, h0, B, T, D, 1, 0);
    double e = 0, m = 0;
    for (int64_t i = 0; i < n; i++) { e = fmax(e, fabs(c.o[i] - on[i])); m = fmax(m, fabs(on[i])); }
    for (int64_t i = 0; i < nb; i++) { e = fmax(e, fabs(hT[i] - hn[i])); m = fmax(m, fabs(hn[i])); }
    char name[112];
    snprintf(name, sizeof name, "hgrn reverse fwd vs naive double from the end: o, hT (B%d T%d D%d)", B, T, D);
    near(name, e / (m > 0 ? m : 1), 8 * T * EPS);
    for (int r = 0; r < 2; r++) {
        real *base = rvec(n, 1), *acc = dup(base, n), *fresh = zvec(n), *sum = zvec(n);
        op_hgrn_fwd(fresh, NULL, c.q, c.k, c.g, NULL, B, T, D, r, 0);
        op_hgrn_fwd(acc, NULL, c.q, c.k, c.g, NULL, B, T, D, r, 1);
        for (int64_t i = 0; i < n; i++) sum[i] = base[i] + fresh[i];
        snprintf(name, sizeof name, "hgrn%s fwd acc: what was there + the fresh output, same bits (T=%d)",
                 r ? " reverse" : "", T);
        near(name, relerr(acc, sum, n), 0);
        real *g3 = rvec(3 * n, 1), *g3a = dup(g3, 3 * n), *f3 = zvec(3 * n);
        op_hgrn_bwd(f3, f3 + n, f3 + 2 * n, c.w, c.q, c.k, c.g, fresh, B, T, D, r, 0);
        op_hgrn_bwd(g3a, g3a + n, g3a + 2 * n, c.w, c.q, c.k, c.g, fresh, B, T, D, r, 1);
        for (int64_t i = 0; i < 3 * n; i++) g3[i] += f3[i];
        // the compiler may fuse a product with the sum it is added to (one rounding fewer): one unit apart at most
        snprintf(name, sizeof name, "hgrn%s bwd acc: what was there + the fresh gradients, within a rounding (T=%d)",
                 r ? " reverse" : "", T);
        near(name, relerr(g3a, g3, 3 * n), 2 * EPS);
        free(base); free(acc); free(fresh); free(sum); free(g3); free(g3a); free(f3);
    }
    hgrn_free(&c);
    free(h0); free(hT); free(on); free(hn);
}

static void hgrn_det(void *p, real *out) { HgrnCtx *c = p; hgrn_loss(c); memcpy(out, c->o, (size_t)c->B * c->T * c->D * sizeof(real)); }
static void hgrn_det_bwd(void *p, real *out) {
    HgrnCtx *c = p;
    int64_t n = (int64_t)c->B * c->T * c->D;
    hgrn_grads(c, out, out + n, out + 2 * n);
}

typedef struct { real *x, *z, *w, *wt, *y; int64_t N, ldz; int C; double eps; } GnCtx;
static double gnorm_loss(void *p) {
    GnCtx *c = p;
    op_rmsnorm_gated_fwd(c->y, NULL, c->x, c->z, c->ldz, c->wt, c->N, c->C, c->eps);
    return wsum(c->w, c->y, c->N * c->C);
}
static void test_rmsnorm_gated(int64_t N, int C, uint64_t s) {
    seed(s);
    GnCtx c = {.N = N, .C = C, .ldz = 3 * C + 2, .eps = 1e-6};
    c.x = rvec(N * C, 1); c.z = rvec(N * c.ldz, 2); c.wt = rvec(C, 1); c.w = rvec(N * C, 1); c.y = zvec(N * C);
    for (int64_t r = 0; r < N; r++) { c.z[r * c.ldz] = 30; c.z[r * c.ldz + (C > 1)] = -30; }   // saturated gates
    int64_t lddz = C + 1;
    real *rstd = zvec(N), *dx = rvec(N * C, 1), *dz = rvec(N * lddz, 1), *dz0 = dup(dz, N * lddz);
    real *dw0 = rvec(C, 1), *dw = dup(dw0, C), *dx2 = zvec(N * C), *dz2 = zvec(N * lddz), *dw2 = dup(dw0, C);
    op_rmsnorm_gated_fwd(c.y, rstd, c.x, c.z, c.ldz, c.wt, N, C, c.eps);
    op_rmsnorm_gated_bwd(dx, dz, lddz, dw, c.w, c.x, c.z, c.ldz, c.wt, rstd, N, C, c.eps);
    op_rmsnorm_gated_bwd(dx2, dz2, lddz, dw2, c.w, c.x, c.z, c.ldz, c.wt, NULL, N, C, c.eps);
    int untouched = 1;
    for (int64_t r = 0; r < N; r++) untouched &= dz[r * lddz + C] == dz0[r * lddz + C];
    for (int i = 0; i < C; i++) dw[i] -= dw0[i];
    char name[96];
    snprintf(name, sizeof name, "rmsnorm_gated N%lld C%d: dz column past C untouched", (long long)N, C);
    near(name, !untouched, 0);
    snprintf(name, sizeof name, "rmsnorm_gated N%lld C%d dx", (long long)N, C);
    fd(name, gnorm_loss, &c, c.x, N, C, C, dx, C);
    snprintf(name, sizeof name, "rmsnorm_gated N%lld C%d dz (strides %lld/%lld)", (long long)N, C, (long long)c.ldz,
             (long long)lddz);
    fd(name, gnorm_loss, &c, c.z, N, C, c.ldz, dz, lddz);
    snprintf(name, sizeof name, "rmsnorm_gated N%lld C%d dw (+=)", (long long)N, C);
    fd(name, gnorm_loss, &c, c.wt, 1, C, 0, dw, 0);
    // with rstd NULL: the same bits
    for (int i = 0; i < C; i++) dw2[i] -= dw0[i];
    snprintf(name, sizeof name, "rmsnorm_gated N%lld C%d bwd with rstd NULL == with saved rstd", (long long)N, C);
    near(name, relerr(dx2, dx, N * C) + relerr(dw2, dw, C), 0);
    free(c.x); free(c.z); free(c.wt); free(c.w); free(c.y); free(rstd); free(dx); free(dz); free(dz0); free(dw0);
    free(dw); free(dx2); free(dz2); free(dw2);
}

static void test_hgrn(void) {
    printf("-- hgrn (HGRN1's element-wise recurrence): finite differences, naive double loop, determinism\n");
    int Ts[] = {1, 7, 64, 65};
    for (int ti = 0; ti < 4; ti++) {
        for (int dir = 0; dir < 3; dir++) test_hgrn_fd(2, Ts[ti], 5, dir, 60 + ti);
        test_hgrn_naive(3, Ts[ti], 70, 70 + ti);   // D 70: a full and a partial column block
        test_hgrn_reverse(3, Ts[ti], 70, 75 + ti);
    }
    for (int dir = 0; dir < 3; dir += 2) {
        HgrnCtx c = {.B = 3, .T = 65, .D = 130, .dir = dir};
        hgrn_inputs(&c, 80);
        int64_t n = (int64_t)c.B * c.T * c.D;
        det_check(dir ? "hgrn fwd both ways" : "hgrn fwd", hgrn_det, &c, n);
        det_check(dir ? "hgrn bwd both ways" : "hgrn bwd", hgrn_det_bwd, &c, 3 * n);
        hgrn_free(&c);
    }
    printf("-- rmsnorm_gated (HGRN1's output norm)\n");
    int Ns[] = {1, 7, 64, 65};
    for (int i = 0; i < 4; i++) test_rmsnorm_gated(Ns[i], 9, 90 + i);
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--bench")) { bench(); return 0; }
    if (argc > 1) { fprintf(stderr, "usage: %s [--bench]\n", argv[0]); return EXIT_USAGE; }
    double t0 = now();
    printf("test_ops: %s build, finite-difference step %.0e, tolerance %.0e of the largest gradient component\n",
           FD ? "float64" : "float", FD_H, FD_TOL);

    printf("-- matmul against naive loops\n");
    test_matmul_naive(1, 1, 1);
    test_matmul_naive(37, 19, 13);
    test_matmul_naive(200, 300, 600);   // several row blocks, column groups and K blocks
    test_matmul_naive(7, 600, 45);
    test_matmul_fd();
    test_embed();
    test_rmsnorm();
    test_gates(0);
    test_gates(1);
    test_to_opnd_cols();
    test_lower_bounds();
    test_swiglu();
    test_xent();
    test_xent_soft();
    test_adamw();
    test_adamw_multi();
    test_sumsq();

    printf("-- hgru finite differences (g = logsigmoid(x), one in ten very negative; k = 1 - exp(g))\n");
    int Ts[] = {1, 5, 17};
    for (int ti = 0; ti < 3; ti++) {
        test_hgru_fd(2, Ts[ti], 2, 4, 3, 0, 20 + ti);
        test_hgru_fd(2, Ts[ti], 2, 4, 3, 4, 20 + ti);
        test_hgru_fd(2, Ts[ti], 2, 4, 3, 16, 20 + ti);
    }
    test_hgru_fd(1, 45, 1, 5, 3, 40, 23);   // off-diagonal sub-blocks and a partial last chunk
    test_hgru_fd(1, 45, 1, 5, 3, 0, 23);

    printf("-- hgru chunked vs recurrent\n");
    int Ta[] = {1, 63, 64, 65, 200};
    for (int ti = 0; ti < 5; ti++) {
        test_hgru_agree(Ta[ti], 64, 30 + ti);
        test_hgru_agree(Ta[ti], 16, 30 + ti);
    }

    test_determinism();
    test_hgru_directions();
    test_hgrn();

    printf("\n%.1f s\n", now() - t0);
    return check_summary("test_ops");
}
