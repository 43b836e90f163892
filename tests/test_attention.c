// test_attention.c: the Transformer++ ops (rotary positions, causal softmax attention) in float64: finite
// differences of their backward passes, a direct double transcription of each formula (Hugging Face LLaMA's
// rotate_half for the rotation), the decoding form against the training form, and determinism across thread
// counts.
#include "fd.h"

#define THETA 10000.0

// ======================================================================================================
// rotary positions
// ======================================================================================================
// Rows of H heads of hd values in a wider row (ld > H hd): the columns past H hd must not be touched.
typedef struct { int B, T, H, hd, pos0; int64_t ld; real *x, *y, *w; } RopeCtx;
static double rope_loss(void *p) {
    RopeCtx *c = p;
    int64_t n = (int64_t)c->B * c->T * c->ld;
    memcpy(c->y, c->x, (size_t)n * sizeof(real));
    op_rope_fwd(c->y, c->ld, c->B, c->T, c->H, c->hd, c->pos0, THETA);
    return wsum(c->w, c->y, n);
}

// Hugging Face's formula word for word: inv_freq = 1 / theta^(arange(0, hd, 2) / hd), emb = cat(freqs, freqs),
// out = x cos(emb) + rotate_half(x) sin(emb), rotate_half(x) = cat(-x[hd/2:], x[:hd/2]).
static void rope_naive(double *out, const real *x, int64_t ld, int B, int T, int H, int hd, int pos0) {
    const int hh = hd / 2;
    for (int64_t r = 0; r < (int64_t)B * T; r++)
        for (int h = 0; h < H; h++) {
            const real *xr = x + r * ld + (int64_t)h * hd;
            double *o = out + (r * H + h) * hd;
            for (int j = 0; j < hd; j++) {
                double inv_freq = 1 / pow(THETA, (double)(2 * (j % hh)) / hd);
                double emb = (double)(pos0 + r % T) * inv_freq;
                double rot = j < hh ? -(double)xr[j + hh] : (double)xr[j - hh];
                o[j] = xr[j] * cos(emb) + rot * sin(emb);
            }
        }
}

static void test_rope(int B, int T, int H, int hd, int pos0, uint64_t s) {
    seed(s);
    RopeCtx c = {.B = B, .T = T, .H = H, .hd = hd, .pos0 = pos0, .ld = (int64_t)H * hd + 3};
    int64_t n = (int64_t)B * T * c.ld, nv = (int64_t)B * T * H * hd;
    c.x = rvec(n, 1); c.y = zvec(n); c.w = rvec(n, 1);
    char name[128];
    // the forward against the formula, and the columns past the heads untouched
    rope_loss(&c);
    double *ref = xmalloc((size_t)nv * sizeof(double)), e = 0, m = 0;
    rope_naive(ref, c.x, c.ld, B, T, H, hd, pos0);
    int untouched = 1;
    for (int64_t r = 0; r < (int64_t)B * T; r++) {
        for (int i = 0; i < H * hd; i++) {
            e = fmax(e, fabs(c.y[r * c.ld + i] - ref[r * H * hd + i]));
            m = fmax(m, fabs(ref[r * H * hd + i]));
        }
        for (int64_t i = (int64_t)H * hd; i < c.ld; i++) untouched &= c.y[r * c.ld + i] == c.x[r * c.ld + i];
    }
    // each value is two products and a sum of double cos/sin: a few ulps of the largest value
    snprintf(name, sizeof name, "rope fwd vs rotate_half formula (B%d T%d H%d hd%d pos0 %d)", B, T, H, hd, pos0);
    near(name, e / m, 8 * EPS);
    snprintf(name, sizeof name, "rope fwd: columns past the heads untouched (hd%d)", hd);
    near(name, !untouched, 0);
    // the backward: the transposed rotation of w (only from position 0, as training uses it)
    if (pos0 == 0) {
        real *dx = dup(c.w, n);
        op_rope_bwd(dx, c.ld, B, T, H, hd, THETA);
        for (int64_t r = 0; r < (int64_t)B * T; r++)          // the untouched columns pass w through: d y = d x
            for (int64_t i = (int64_t)H * hd; i < c.ld; i++) untouched &= dx[r * c.ld + i] == c.w[r * c.ld + i];
        snprintf(name, sizeof name, "rope dx B%d T%d H%d hd%d (seed %llu)", B, T, H, hd, (unsigned long long)s);
        fd_vec(name, rope_loss, &c, c.x, n, dx, 0);
        snprintf(name, sizeof name, "rope bwd: columns past the heads untouched (hd%d)", hd);
        near(name, !untouched, 0);
        free(dx);
    }
    free(ref); free(c.x); free(c.y); free(c.w);
}

// A call from position P over T - P rows gives the bits of rows P .. T-1 of a call over all T from position 0,
// which is what decoding a token at a time relies on.
static void test_rope_offset(int T, int P, int H, int hd) {
    seed(40);
    int64_t ld = (int64_t)H * hd, n = (int64_t)T * ld;
    real *full = rvec(n, 1), *tail = dup(full + P * ld, (T - P) * ld);
    op_rope_fwd(full, ld, 1, T, H, hd, 0, THETA);
    op_rope_fwd(tail, ld, 1, T - P, H, hd, P, THETA);
    char name[96];
    snprintf(name, sizeof name, "rope from position %d == rows %d.. of a call from 0 (same bits)", P, P);
    near(name, relerr(tail, full + P * ld, (T - P) * ld), 0);
    free(full); free(tail);
}

static void rope_det(void *p, real *out) {
    RopeCtx *c = p;
    int64_t n = (int64_t)c->B * c->T * c->ld;
    memcpy(out, c->x, (size_t)n * sizeof(real));
    op_rope_fwd(out, c->ld, c->B, c->T, c->H, c->hd, 0, THETA);
    op_rope_bwd(out, c->ld, c->B, c->T, c->H, c->hd, THETA);
}

// ======================================================================================================
// attention
// ======================================================================================================
// q | k | v packed in one row of stride ld (as the model's [q | k | v] projection leaves them, plus a spare
// column), the loss sum(w * o).
typedef struct { int B, T, H, hd; int64_t ld; real *qkv, *w, *o, *lse; } AttCtx;
static double att_loss(void *p) {
    AttCtx *c = p;
    const int64_t D = (int64_t)c->H * c->hd;
    op_attention_fwd(c->o, c->lse, c->qkv, c->ld, c->qkv + D, c->qkv + 2 * D, c->ld, (int64_t)c->T * c->ld, c->B,
                     c->T, c->T, c->H, c->hd);
    return wsum(c->w, c->o, (int64_t)c->B * c->T * D);
}
static void att_inputs(AttCtx *c, double scale, uint64_t s) {
    seed(s);
    const int64_t D = (int64_t)c->H * c->hd, N = (int64_t)c->B * c->T;
    c->ld = 3 * D + 1;
    c->qkv = rvec(N * c->ld, scale); c->w = rvec(N * D, 1); c->o = zvec(N * D); c->lse = zvec(N * c->H);
}
static void att_free(AttCtx *c) { free(c->qkv); free(c->w); free(c->o); free(c->lse); }

static void test_attention_fd(int B, int T, int H, int hd, uint64_t s) {
    AttCtx c = {.B = B, .T = T, .H = H, .hd = hd};
    att_inputs(&c, 1.5, s);      // scores of a few units: peaked and flat rows both
    const int64_t D = (int64_t)H * hd, N = (int64_t)B * T, ldd = 3 * D + 2;
    real *d = rvec(N * ldd, 1), *d0 = dup(d, N * ldd);       // garbage in: the op overwrites
    att_loss(&c);
    op_attention_bwd(d, d + D, d + 2 * D, ldd, c.w, c.qkv, c.qkv + D, c.qkv + 2 * D, c.ld, c.o, c.lse, B, T, H, hd);
    int untouched = 1;
    for (int64_t r = 0; r < N; r++) for (int64_t i = 3 * D; i < ldd; i++) untouched &= d[r * ldd + i] == d0[r * ldd + i];
    double gs = 0;
    for (int64_t r = 0; r < N; r++) for (int64_t i = 0; i < 3 * D; i++) gs = fmax(gs, fabs(d[r * ldd + i]));
    char name[128];
    snprintf(name, sizeof name, "attention dq B%d T%d H%d hd%d (seed %llu)", B, T, H, hd, (unsigned long long)s);
    fd_scaled(name, att_loss, &c, c.qkv, N, D, c.ld, d, ldd, gs);
    snprintf(name, sizeof name, "attention dk B%d T%d H%d hd%d", B, T, H, hd);
    fd_scaled(name, att_loss, &c, c.qkv + D, N, D, c.ld, d + D, ldd, gs);
    snprintf(name, sizeof name, "attention dv B%d T%d H%d hd%d", B, T, H, hd);
    fd_scaled(name, att_loss, &c, c.qkv + 2 * D, N, D, c.ld, d + 2 * D, ldd, gs);
    snprintf(name, sizeof name, "attention bwd: columns past dq | dk | dv untouched (T%d)", T);
    near(name, !untouched, 0);
    att_free(&c);
    free(d); free(d0);
}

// The forward against the formula in double, with scores large enough (|s| up to ~30) that an unshifted
// softmax would lose digits; then the decoding form: the last Tq queries against a cache of C > T positions
// per sequence give the bits of the training form's last Tq rows.
static void test_attention_naive(int B, int T, int H, int hd, int Tq, uint64_t s) {
    AttCtx c = {.B = B, .T = T, .H = H, .hd = hd};
    att_inputs(&c, 2.5, s);
    const int64_t D = (int64_t)H * hd, N = (int64_t)B * T;
    att_loss(&c);
    double *o = xmalloc((size_t)N * D * sizeof(double)), *sc = xmalloc((size_t)T * sizeof(double));
    double eo = 0, mo = 0, el = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++) {
                const real *q = c.qkv + ((int64_t)b * T + t) * c.ld + (int64_t)h * hd;
                double mx = -INFINITY, z = 0;
                for (int j = 0; j <= t; j++) {
                    const real *k = c.qkv + ((int64_t)b * T + j) * c.ld + D + (int64_t)h * hd;
                    double dd = 0;
                    for (int i = 0; i < hd; i++) dd += (double)q[i] * k[i];
                    sc[j] = dd / sqrt((double)hd);
                    mx = fmax(mx, sc[j]);
                }
                for (int j = 0; j <= t; j++) z += exp(sc[j] - mx);
                double *orow = o + ((int64_t)b * T + t) * D + (int64_t)h * hd;
                for (int i = 0; i < hd; i++) {
                    double acc = 0;
                    for (int j = 0; j <= t; j++)
                        acc += exp(sc[j] - mx) / z * c.qkv[((int64_t)b * T + j) * c.ld + 2 * D + (int64_t)h * hd + i];
                    orow[i] = acc;
                }
                el = fmax(el, fabs(c.lse[((int64_t)b * T + t) * H + h] - (mx + log(z))) / fmax(1, fabs(mx + log(z))));
            }
    for (int64_t i = 0; i < N * D; i++) { eo = fmax(eo, fabs(c.o[i] - o[i])); mo = fmax(mo, fabs(o[i])); }
    // a score carries ~hd roundings of |s| <= 30, which exp turns into the same relative error of every weight;
    // the weighted sum adds ~T more: (hd + T) x 32 ulps leaves room without hiding a wrong term
    char name[128];
    snprintf(name, sizeof name, "attention fwd vs double formula: o (B%d T%d H%d hd%d)", B, T, H, hd);
    near(name, eo / mo, 32.0 * (hd + T) * EPS);
    snprintf(name, sizeof name, "attention fwd vs double formula: lse (B%d T%d H%d hd%d)", B, T, H, hd);
    near(name, el, 32.0 * (hd + T) * EPS);

    // decoding: q of the last Tq steps alone (stride D), keys and values in a cache of C = T + 5 positions of
    // [k | v] rows, the positions past T left as garbage that must not be read
    const int C = T + 5;
    real *qd = zvec((int64_t)B * Tq * D), *cache = rvec((int64_t)B * C * 2 * D, 1e30), *od = zvec((int64_t)B * Tq * D);
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < Tq; t++)
            memcpy(qd + ((int64_t)b * Tq + t) * D, c.qkv + ((int64_t)b * T + T - Tq + t) * c.ld, (size_t)D * sizeof(real));
        for (int j = 0; j < T; j++)
            memcpy(cache + ((int64_t)b * C + j) * 2 * D, c.qkv + ((int64_t)b * T + j) * c.ld + D, (size_t)(2 * D) * sizeof(real));
    }
    op_attention_fwd(od, NULL, qd, D, cache, cache + D, 2 * D, (int64_t)C * 2 * D, B, Tq, T, H, hd);
    double same = 0;
    for (int b = 0; b < B; b++) same += relerr(od + (int64_t)b * Tq * D, c.o + ((int64_t)b * T + T - Tq) * D, (int64_t)Tq * D);
    snprintf(name, sizeof name, "attention: %d queries against a cache of %d == the last rows (same bits)", Tq, T);
    near(name, same, 0);
    free(qd); free(cache); free(od);
    free(o); free(sc);
    att_free(&c);
}

static void att_det(void *p, real *out) {
    AttCtx *c = p;
    const int64_t D = (int64_t)c->H * c->hd, N = (int64_t)c->B * c->T;
    att_loss(c);
    memcpy(out, c->o, (size_t)(N * D) * sizeof(real));
    memcpy(out + N * D, c->lse, (size_t)(N * c->H) * sizeof(real));
}
static void att_det_bwd(void *p, real *out) {
    AttCtx *c = p;
    const int64_t D = (int64_t)c->H * c->hd;
    att_loss(c);
    op_attention_bwd(out, out + D, out + 2 * D, 3 * D, c->w, c->qkv, c->qkv + D, c->qkv + 2 * D, c->ld, c->o, c->lse,
                     c->B, c->T, c->H, c->hd);
}

int main(void) {
    double t0 = now_s();
    printf("test_attention: %s build, finite-difference step %.0e, tolerance %.0e of the largest gradient component\n",
           FD ? "float64" : "float", FD_H, FD_TOL);
    printf("-- rope: the rotate_half formula, finite differences, offsets\n");
    test_rope(2, 5, 3, 4, 0, 1);
    test_rope(1, 9, 2, 16, 0, 2);
    test_rope(2, 7, 1, 2, 0, 3);          // one frequency
    test_rope(1, 6, 2, 8, 2000, 4);       // far positions: angles of thousands of radians
    test_rope_offset(70, 1, 2, 8);
    test_rope_offset(70, 69, 3, 16);
    printf("-- attention: finite differences (T 1, 2, 7, 33), double formula, decoding form\n");
    int Ts[] = {1, 2, 7, 33};
    for (int i = 0; i < 4; i++) test_attention_fd(2, Ts[i], 2, 4, 10 + i);
    test_attention_fd(1, 5, 1, 16, 20);
    for (int i = 0; i < 4; i++) test_attention_naive(2, Ts[i], 3, 8, 1, 30 + i);
    test_attention_naive(2, 65, 2, 64, 7, 40);
    test_attention_naive(1, 40, 4, 2, 40, 41);    // every query against the cache
    printf("-- determinism\n");
    RopeCtx rc = {.B = 3, .T = 50, .H = 4, .hd = 8, .ld = 40};
    seed(50);
    rc.x = rvec((int64_t)rc.B * rc.T * rc.ld, 1);
    det_check("rope fwd + bwd", rope_det, &rc, (int64_t)rc.B * rc.T * rc.ld);
    free(rc.x);
    AttCtx ac = {.B = 3, .T = 70, .H = 3, .hd = 16};
    att_inputs(&ac, 1, 51);
    const int64_t N = (int64_t)ac.B * ac.T, D = (int64_t)ac.H * ac.hd;
    det_check("attention fwd (o, lse)", att_det, &ac, N * D + N * ac.H);
    det_check("attention bwd (dq, dk, dv)", att_det_bwd, &ac, N * 3 * D);
    att_free(&ac);
    printf("\n%.1f s\n", now_s() - t0);
    return check_summary("test_attention");
}
