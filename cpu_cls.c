// cpu_cls.c: the CPU ops of the classification model (ops.h, "the classification model"): biases, LayerNorm,
// BatchNorm, GELU, sinusoidal positions, dropout, mean pooling, the document-pair features, the LRA layer's
// activations and that layer in bf16 numerics. The rules of
// cpu.c hold here: every output element is written by one thread, in an order fixed by the shapes, so the
// results are bit-identical at any thread count; no float atomics.
//
// Sums (a row's statistics, column sums over rows) are accumulated in double and rounded once: the column
// sums run over every position of a batch (up to B*T = 2^18 rows and more), where a float running sum would
// lose about sqrt(N) ulps. Column sums are parallel over blocks of CB columns, each summed in row order by the
// thread that owns the block; a row's sums keep LANES partial sums combined in a fixed tree.
#include "common.h"
#include "cpu_math.h"
#include "ops.h"
#include <math.h>
#include <omp.h>

#define CB 16      // columns per block of the column sums: one 64-byte line of floats per row
#define LANES 8    // partial sums of a row sum

// sum of a[i] and sum of (a[i] - m)^2, in double, in an order fixed by n
static double sum_d(const real *a, int n) {
    double acc[LANES] = {0}, t = 0;
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) acc[l] += a[i + l];
    for (; i < n; i++) t += a[i];
    return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7])) + t;
}
static double sqdev_d(const real *a, double m, int n) {
    double acc[LANES] = {0}, t = 0;
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) { double d = a[i + l] - m; acc[l] += d * d; }
    for (; i < n; i++) { double d = a[i] - m; t += d * d; }
    return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7])) + t;
}

// ---------------------------------------------------------------------------------------------------------
// biases
// ---------------------------------------------------------------------------------------------------------
void op_bias_add(real *y, const real *b, int64_t N, int C) {
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        real *yr = y + n * C;
        for (int c = 0; c < C; c++) yr[c] += b[c];
    }
}

void op_bias_add_opnd(opnd *y, const real *b, int64_t N, int C) { op_bias_add(y, b, N, C); }

void op_bias_bwd(real *db, const real *dy, int64_t N, int C) {
    #pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += CB) {
        int nc = C - c0 < CB ? C - c0 : CB;
        double acc[CB] = {0};
        for (int64_t n = 0; n < N; n++) {
            const real *r = dy + n * C + c0;
            for (int j = 0; j < nc; j++) acc[j] += r[j];
        }
        for (int j = 0; j < nc; j++) db[c0 + j] += (real)acc[j];
    }
}

void op_bias_bwd_opnd(real *db, const opnd *dy, int64_t N, int C) { op_bias_bwd(db, dy, N, C); }

// The LRA layer's activations (sigmoid2 of cpu_math.h): silu(x) = x sigmoid(x), its derivative
// sigmoid(x) (1 + x sigmoid(-x)), as the gates' swish in cpu.c.
void op_lra_acts_fwd(real *q, real *v, const real *qfi, int64_t ld, int64_t N, int HK, int D, double s) {
    const real sc = (real)s;
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const real *row = qfi + n * ld, *vp = row + 2 * HK;
        real *qr = q + n * HK, *vr = v + n * D, a, b;
        for (int c = 0; c < HK; c++) { sigmoid2(row[c], &a, &b); qr[c] = sc * a; }
        for (int c = 0; c < D; c++) { sigmoid2(vp[c], &a, &b); vr[c] = vp[c] * a; }
    }
}

void op_lra_acts_bwd(real *dqfi, int64_t ldd, const real *dq, const real *dv, const real *qfi, int64_t ld,
                     int64_t N, int HK, int D, double s) {
    const real sc = (real)s;
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const real *row = qfi + n * ld, *vp = row + 2 * HK, *dqr = dq + n * HK, *dvr = dv + n * D;
        real *dr = dqfi + n * ldd, *dvo = dr + 2 * HK, a, b;
        for (int c = 0; c < HK; c++) { sigmoid2(row[c], &a, &b); dr[c] = dqr[c] * sc * a * b; }
        for (int c = 0; c < D; c++) { sigmoid2(vp[c], &a, &b); dvo[c] = dvr[c] * a * (1 + vp[c] * b); }
    }
}

// ---------------------------------------------------------------------------------------------------------
// The LRA layer in bf16 numerics (ops.h, op_lra_bf16_fwd): one (sequence, head) at a time, its states of both
// directions and its gates kept for all T steps in the thread's own buffers.
// ---------------------------------------------------------------------------------------------------------
// x rounded to bfloat16, to nearest with ties to even (a double, in the float64 build, to float first)
#define RB(x) (rnd ? (real)bf16_to_f32(f32_to_bf16((float)(x))) : (x))
#define LRA16_KMAX 32

// The gates of head h of one row [q pre | f logits | v pre]: q, f, v, b (the rounded lower bound), lam, 1 - lam
// and v's rounded pre-activation (for silu's derivative).
typedef struct { real q[LRA16_KMAX], f[LRA16_KMAX], v[LRA16_KMAX], b[LRA16_KMAX], lam[LRA16_KMAX], oml[LRA16_KMAX],
                 vp[LRA16_KMAX]; } Lra16Gates;
static void lra16_gates(Lra16Gates *g, const real *row, int HK, int h, int K, const real *lb, int rnd) {
    for (int d = 0; d < K; d++) {
        const int c = h * K + d;
        real s, sn;
        sigmoid2(RB(row[c]), &s, &sn);
        g->q[d] = RB(s);
        sigmoid2(RB(row[HK + c]), &s, &sn);
        g->f[d] = RB(s);
        g->vp[d] = RB(row[2 * HK + c]);
        sigmoid2(g->vp[d], &s, &sn);
        g->v[d] = RB(g->vp[d] * s);
        g->b[d] = lb ? RB(lb[c]) : 0;
        g->lam[d] = RB(g->b[d] + RB(RB(1 - g->b[d]) * g->f[d]));
        g->oml[d] = RB(1 - g->lam[d]);
    }
}

// The gates of every row of one (sequence, head) into gs [T], then its states, [T][K][K] each: forward (hf)
// and reverse (hr).
static void lra16_states(real *hf, real *hr, Lra16Gates *gs, const real *qfi, int64_t ld, const real *lb, int T,
                         int HK, int h, int K, int rnd) {
    const int KK = K * K;
    for (int t = 0; t < T; t++) lra16_gates(&gs[t], qfi + (int64_t)t * ld, HK, h, K, lb, rnd);
    for (int dir = 0; dir < 2; dir++) {
        real *hs = dir ? hr : hf;
        for (int i = 0; i < T; i++) {
            const int t = dir ? T - 1 - i : i;
            const Lra16Gates *g = &gs[t];
            const real *prev = i ? hs + (int64_t)(dir ? t + 1 : t - 1) * KK : NULL;
            real *st = hs + (int64_t)t * KK;
            for (int d = 0; d < K; d++)
                for (int e = 0; e < K; e++)
                    st[d * K + e] = RB(RB(g->lam[d] * (prev ? prev[d * K + e] : 0)) + RB(g->oml[d] * g->v[e]));
        }
    }
}

void op_lra_bf16_fwd(real *o, const real *qfi, int64_t ld, const real *lb, int B, int T, int H, int K, int rnd) {
    const int HK = H * K, KK = K * K;
    #pragma omp parallel
    {
        real *hf = xmalloc((size_t)2 * T * KK * sizeof(real)), *hr = hf + (int64_t)T * KK;
        Lra16Gates *gs = xmalloc((size_t)T * sizeof(Lra16Gates));
        #pragma omp for schedule(static)
        for (int64_t bh = 0; bh < (int64_t)B * H; bh++) {
            const int64_t b = bh / H;
            const int h = (int)(bh % H);
            const real *q0 = qfi + b * T * ld;
            lra16_states(hf, hr, gs, q0, ld, lb, T, HK, h, K, rnd);
            for (int t = 0; t < T; t++) {
                const Lra16Gates *g = &gs[t];
                const real *f = hf + (int64_t)t * KK, *r = hr + (int64_t)t * KK;
                real *orow = o + (b * T + t) * HK + h * K;
                for (int e = 0; e < K; e++) {
                    real acc = 0;
                    for (int d = 0; d < K; d++) acc = rfma(RB(f[d * K + e] + r[d * K + e]), g->q[d], acc);
                    orow[e] = RB(acc);
                }
            }
        }
        free(hf);
        free(gs);
    }
}

void op_lra_bf16_bwd(real *dqfi, int64_t ldd, real *dlb, const real *dout, const real *qfi, int64_t ld, const real *lb,
                     int B, int T, int H, int K, int rnd) {
    const int HK = H * K, KK = K * K;
    double *part = dlb && lb ? xmalloc((size_t)B * HK * sizeof(double)) : NULL;   // dlb per sequence
    #pragma omp parallel
    {
        real *hf = xmalloc((size_t)4 * T * KK * sizeof(real)), *hr = hf + (int64_t)T * KK;
        real *gf = hr + (int64_t)T * KK, *lf = gf + (int64_t)T * KK;      // the forward scan's G and dlam
        Lra16Gates *gs = xmalloc((size_t)T * sizeof(Lra16Gates));
        real lamn[LRA16_KMAX], G[LRA16_KMAX * LRA16_KMAX];
        #pragma omp for schedule(static)
        for (int64_t bh = 0; bh < (int64_t)B * H; bh++) {
            const int64_t b = bh / H;
            const int h = (int)(bh % H);
            const real *q0 = qfi + b * T * ld;
            lra16_states(hf, hr, gs, q0, ld, lb, T, HK, h, K, rnd);
            // the forward scan's backward, from t = T - 1 down: G = r(ds + r(lam_{t+1} G)), dlam = r(G h_{t-1})
            for (int i = 0; i < KK; i++) G[i] = 0;
            for (int d = 0; d < K; d++) lamn[d] = 0;
            for (int t = T - 1; t >= 0; t--) {
                const Lra16Gates *g = &gs[t];
                const real *dor = dout + (b * T + t) * HK + h * K;
                for (int d = 0; d < K; d++)
                    for (int e = 0; e < K; e++) {
                        const int i = d * K + e;
                        G[i] = RB(RB(RB(dor[e]) * g->q[d]) + RB(lamn[d] * G[i]));
                        gf[(int64_t)t * KK + i] = G[i];
                        lf[(int64_t)t * KK + i] = RB(G[i] * (t ? hf[(int64_t)(t - 1) * KK + i] : 0));
                    }
                for (int d = 0; d < K; d++) lamn[d] = g->lam[d];
            }
            // the reverse scan's, from t = 0 up (h_{t+1} its previous state), and what both feed
            for (int i = 0; i < KK; i++) G[i] = 0;
            for (int d = 0; d < K; d++) lamn[d] = 0;
            for (int c = 0; c < K; c++)
                if (part) part[b * HK + h * K + c] = 0;
            for (int t = 0; t < T; t++) {
                const Lra16Gates *g = &gs[t];
                const real *dor = dout + (b * T + t) * HK + h * K;
                real dx[LRA16_KMAX * LRA16_KMAX], dl[LRA16_KMAX * LRA16_KMAX];
                for (int d = 0; d < K; d++)
                    for (int e = 0; e < K; e++) {
                        const int i = d * K + e;
                        G[i] = RB(RB(RB(dor[e]) * g->q[d]) + RB(lamn[d] * G[i]));
                        const real dlr = RB(G[i] * (t < T - 1 ? hr[(int64_t)(t + 1) * KK + i] : 0));
                        dx[i] = RB(gf[(int64_t)t * KK + i] + G[i]);
                        dl[i] = RB(lf[(int64_t)t * KK + i] + dlr);
                    }
                for (int d = 0; d < K; d++) lamn[d] = g->lam[d];
                real *dr = dqfi + (b * T + t) * ldd;
                for (int d = 0; d < K; d++) {
                    real dq = 0, dlam = 0;
                    for (int e = 0; e < K; e++) {
                        const int i = d * K + e;
                        dq += RB(dor[e]) * RB(hf[(int64_t)t * KK + i] + hr[(int64_t)t * KK + i]);
                        dlam += dl[i] - dx[i] * g->v[e];
                    }
                    const int c = h * K + d;
                    dr[c] = dq * g->q[d] * (1 - g->q[d]);
                    dr[HK + c] = dlam * (1 - g->b[d]) * g->f[d] * (1 - g->f[d]);
                    if (part) part[b * HK + c] += (double)(dlam * (1 - g->f[d]));
                }
                for (int e = 0; e < K; e++) {
                    real dv = 0, s, sn;
                    for (int d = 0; d < K; d++) dv += dx[d * K + e] * g->oml[d];
                    sigmoid2(g->vp[e], &s, &sn);
                    dr[2 * HK + h * K + e] = dv * s * (1 + g->vp[e] * sn);
                }
            }
        }
        free(hf);
        free(gs);
    }
    if (part) {
        for (int c = 0; c < HK; c++) {
            double acc = 0;
            for (int64_t b = 0; b < B; b++) acc += part[b * HK + c];
            dlb[c] += (real)acc;
        }
        free(part);
    }
}
#undef RB

// ---------------------------------------------------------------------------------------------------------
// LayerNorm: two passes over the row (it is in cache), both in double: mean, then the mean square deviation
// from it, so no E[x^2] - E[x]^2 cancellation whatever the offset of the row.
// ---------------------------------------------------------------------------------------------------------
void op_layernorm_fwd(opnd *y_, real *mean, real *rstd, real *x, const real *res, const real *w, const real *b,
                      int64_t N, int C, double eps) {
    real *y = y_;
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        real *xr = x + n * C, *yr = y + n * C;
        if (res)
            for (int c = 0; c < C; c++) xr[c] += res[n * C + c];
        double m = sum_d(xr, C) / C;
        double var = sqdev_d(xr, m, C) / C;
        real mr = (real)m, r = (real)(1.0 / sqrt(var + eps));
        for (int c = 0; c < C; c++) yr[c] = (xr[c] - mr) * r * w[c] + b[c];
        if (mean) mean[n] = mr;
        if (rstd) rstd[n] = r;
    }
}

// xh = (x - mean) rstd, g = w dy:  dx = rstd (g - mean(g) - xh mean(g xh));  dw += sum_n dy xh;  db += sum_n dy
void op_layernorm_bwd(real *dx, int acc, real *dw, real *db, const real *dy, const real *x, const real *w,
                      const real *mean, const real *rstd, int64_t N, int C) {
    if (dx) {
        #pragma omp parallel for schedule(static)
        for (int64_t n = 0; n < N; n++) {
            const real *xr = x + n * C, *dyr = dy + n * C;
            real *dxr = dx + n * C, m = mean[n], r = rstd[n];
            double s1[LANES] = {0}, s2[LANES] = {0}, t1 = 0, t2 = 0;
            int c = 0;
            for (; c + LANES <= C; c += LANES)
                for (int l = 0; l < LANES; l++) {
                    real g = w[c + l] * dyr[c + l], xh = (xr[c + l] - m) * r;
                    s1[l] += g;
                    s2[l] += (double)g * xh;
                }
            for (; c < C; c++) {
                real g = w[c] * dyr[c], xh = (xr[c] - m) * r;
                t1 += g;
                t2 += (double)g * xh;
            }
            real a1 = (real)((((s1[0] + s1[4]) + (s1[2] + s1[6])) + ((s1[1] + s1[5]) + (s1[3] + s1[7])) + t1) / C);
            real a2 = (real)((((s2[0] + s2[4]) + (s2[2] + s2[6])) + ((s2[1] + s2[5]) + (s2[3] + s2[7])) + t2) / C);
            for (c = 0; c < C; c++) {
                real xh = (xr[c] - m) * r, t = r * (w[c] * dyr[c] - a1 - xh * a2);
                dxr[c] = acc ? dxr[c] + t : t;
            }
        }
    }
    if (dw || db) {
        #pragma omp parallel for schedule(static)
        for (int c0 = 0; c0 < C; c0 += CB) {
            int nc = C - c0 < CB ? C - c0 : CB;
            double aw[CB] = {0}, ab[CB] = {0};
            for (int64_t n = 0; n < N; n++) {
                const real *xr = x + n * C + c0, *dyr = dy + n * C + c0;
                real m = mean[n], r = rstd[n];
                for (int j = 0; j < nc; j++) {
                    aw[j] += (double)dyr[j] * ((xr[j] - m) * r);
                    ab[j] += dyr[j];
                }
            }
            for (int j = 0; j < nc; j++) {
                if (dw) dw[c0 + j] += (real)aw[j];
                if (db) db[c0 + j] += (real)ab[j];
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// BatchNorm: per channel over the rows that exist (all N, or those a RowMask keeps), and the zeroing of the
// others' values (op_rows_zero). Training statistics in two passes in double (the mean, then the mean
// square deviation from it), for the reason given at LayerNorm; a column block's rows are read three times
// (sums, deviations, output), which the CPU can afford.
// ---------------------------------------------------------------------------------------------------------
// Whether row n exists (RowMask, common.h).
static inline int row_in(RowMask r, int64_t n) { return !r.ext || n % r.T < r.ext[n / r.T]; }

void op_rows_zero(real *x, int64_t ld, int cols, RowMask rows, int64_t N) {
    if (!rows.ext) return;
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++)
        if (!row_in(rows, n))
            for (int j = 0; j < cols; j++) x[n * ld + j] = 0;
}

void op_batchnorm_fwd(opnd *y_, real *mean, real *rstd, real *run_mean, real *run_var, real *x, const real *res,
                      const real *w, const real *b, int64_t N, int C, RowMask rows, double eps, double momentum,
                      int train) {
    const int64_t n_in = rows_in(rows, N);
    if (train && n_in < 2)
        die("BatchNorm in training needs at least 2 positions per channel, got %lld", (long long)n_in);
    real *y = y_;
    #pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += CB) {
        int nc = C - c0 < CB ? C - c0 : CB;
        real mr[CB], r[CB];
        if (res)
            for (int64_t n = 0; n < N; n++)
                for (int j = 0; j < nc; j++) x[n * C + c0 + j] += res[n * C + c0 + j];
        if (train) {
            double s[CB] = {0}, q[CB] = {0}, m[CB];
            for (int64_t n = 0; n < N; n++)
                if (row_in(rows, n))
                    for (int j = 0; j < nc; j++) s[j] += x[n * C + c0 + j];
            for (int j = 0; j < nc; j++) m[j] = s[j] / n_in;
            for (int64_t n = 0; n < N; n++)
                if (row_in(rows, n))
                    for (int j = 0; j < nc; j++) { double d = x[n * C + c0 + j] - m[j]; q[j] += d * d; }
            for (int j = 0; j < nc; j++) {
                int c = c0 + j;
                double var = q[j] / n_in;
                mr[j] = (real)m[j];
                r[j] = (real)(1.0 / sqrt(var + eps));
                if (mean) mean[c] = mr[j];
                if (rstd) rstd[c] = r[j];
                // PyTorch's BatchNorm1d: the running variance takes the unbiased estimate
                if (run_mean) run_mean[c] = (real)((1 - momentum) * run_mean[c] + momentum * m[j]);
                if (run_var) run_var[c] = (real)((1 - momentum) * run_var[c] + momentum * (var * n_in / (n_in - 1)));
            }
        } else {
            for (int j = 0; j < nc; j++) {
                mr[j] = run_mean[c0 + j];
                r[j] = (real)(1.0 / sqrt((double)run_var[c0 + j] + eps));
            }
        }
        for (int64_t n = 0; n < N; n++)
            for (int j = 0; j < nc; j++) {
                int c = c0 + j;
                y[n * C + c] = (x[n * C + c] - mr[j]) * r[j] * w[c] + b[c];
            }
    }
}

// Training mode, through the batch statistics. xh = (x - mean) rstd:
//   dx = w rstd (dy - mean_n(dy) - xh mean_n(dy xh));  dw += sum_n dy xh;  db += sum_n dy
void op_batchnorm_bwd(real *dx, int acc, real *dw, real *db, const real *dy, const real *x, const real *w,
                      const real *mean, const real *rstd, int64_t N, int C, RowMask rows) {
    const int64_t n_in = rows_in(rows, N);
    #pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += CB) {
        int nc = C - c0 < CB ? C - c0 : CB;
        double sy[CB] = {0}, sx[CB] = {0};
        for (int64_t n = 0; n < N; n++) {
            if (!row_in(rows, n)) continue;
            for (int j = 0; j < nc; j++) {
                int64_t i = n * C + c0 + j;
                sx[j] += (double)dy[i] * ((x[i] - mean[c0 + j]) * rstd[c0 + j]);
                sy[j] += dy[i];
            }
        }
        for (int j = 0; j < nc; j++) {
            if (dw) dw[c0 + j] += (real)sx[j];
            if (db) db[c0 + j] += (real)sy[j];
        }
        if (!dx) continue;
        real a[CB], k1[CB], k2[CB];
        for (int j = 0; j < nc; j++) {
            a[j] = w[c0 + j] * rstd[c0 + j];
            k1[j] = (real)(sy[j] / n_in);
            k2[j] = (real)(sx[j] / n_in);
        }
        for (int64_t n = 0; n < N; n++) {
            const int in = row_in(rows, n);
            for (int j = 0; j < nc; j++) {
                int64_t i = n * C + c0 + j;
                real xh = (x[i] - mean[c0 + j]) * rstd[c0 + j], t = in ? a[j] * (dy[i] - k1[j] - xh * k2[j]) : 0;
                dx[i] = acc ? dx[i] + t : t;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// GELU, exact. Phi(x) = erfc(-x / sqrt 2) / 2: erfc keeps full relative precision where 1 + erf(x / sqrt 2)
// would cancel (x very negative).
// ---------------------------------------------------------------------------------------------------------
#define SQRT1_2 0.70710678118654752440
#define INV_SQRT_2PI 0.39894228040143267794

void op_gelu_fwd(opnd *y_, const real *x, int64_t n) {
    real *y = y_;
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] = (real)0.5 * x[i] * rerfc(-x[i] * (real)SQRT1_2);
}

// d/dx x Phi(x) = Phi(x) + x phi(x), phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
void op_gelu_bwd(real *dx, const real *dy, const real *x, int64_t n) {
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        real v = x[i];
        real d = (real)0.5 * rerfc(-v * (real)SQRT1_2) + v * rexp((real)-0.5 * v * v) * (real)INV_SQRT_2PI;
        dx[i] = dy[i] * d;
    }
}

// ---------------------------------------------------------------------------------------------------------
// sinusoidal positions: each PE(t, d) computed once in double, rounded once, added to the B rows at t
// ---------------------------------------------------------------------------------------------------------
void op_add_positions(real *x, int B, int T, int D) {
    #pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++)
        for (int d = 0; d < D; d++) {
            double a = t * pow(10000.0, -(double)(d & ~1) / D);
            real pe = (real)(d & 1 ? cos(a) : sin(a));
            for (int b = 0; b < B; b++) x[((int64_t)b * T + t) * D + d] += pe;
        }
}

// ---------------------------------------------------------------------------------------------------------
// dropout: element i is dropped when the high 32 bits of mix64(mix64(seed) ^ i) fall below floor(p 2^32). The
// key mix64(seed) spreads nearby seeds over the whole 64-bit space, so the counters of two seeds never meet
// in practice; kept elements are multiplied by 1 / (1 - p) rounded once to `real`, as on the GPU, so both
// backends give the same bits.
// ---------------------------------------------------------------------------------------------------------
void op_dropout_fwd(real *y, const real *x, int64_t n, double p, uint64_t seed) {
    if (p == 0) {   // an exact copy, without hashing
        if (y != x) memmove(y, x, (size_t)n * sizeof(real));
        return;
    }
    const uint64_t key = mix64(seed), thr = (uint64_t)(p * 4294967296.0);
    const real scale = (real)(1.0 / (1.0 - p));
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] = (mix64(key ^ (uint64_t)i) >> 32) < thr ? 0 : x[i] * scale;
}

void op_dropout_bwd(real *dx, const real *dy, int64_t n, double p, uint64_t seed) {
    op_dropout_fwd(dx, dy, n, p, seed);
}

// ---------------------------------------------------------------------------------------------------------
// mean pooling over the valid positions; each (b, column block) sums its rows in order, in double
// ---------------------------------------------------------------------------------------------------------
void op_pool_mean_fwd(real *y, const real *x, const int32_t *lens, int B, int T, int D) {
    int nblk = (D + CB - 1) / CB;
    #pragma omp parallel for schedule(static)
    for (int64_t it = 0; it < (int64_t)B * nblk; it++) {
        int b = (int)(it / nblk), c0 = (int)(it % nblk) * CB, nc = D - c0 < CB ? D - c0 : CB;
        int L = lens ? lens[b] : T;
        double acc[CB] = {0};
        for (int t = 0; t < L; t++) {
            const real *r = x + ((int64_t)b * T + t) * D + c0;
            for (int j = 0; j < nc; j++) acc[j] += r[j];
        }
        for (int j = 0; j < nc; j++) y[(int64_t)b * D + c0 + j] = (real)(acc[j] / L);
    }
}

void op_pool_mean_bwd(real *dx, const real *dy, const int32_t *lens, int B, int T, int D) {
    #pragma omp parallel for schedule(static)
    for (int64_t bt = 0; bt < (int64_t)B * T; bt++) {
        int b = (int)(bt / T), t = (int)(bt % T), L = lens ? lens[b] : T;
        real *o = dx + bt * D;
        const real *g = dy + (int64_t)b * D;
        if (t < L) for (int d = 0; d < D; d++) o[d] = g[d] / (real)L;
        else       for (int d = 0; d < D; d++) o[d] = 0;
    }
}

// ---------------------------------------------------------------------------------------------------------
// pixels: a thread per few images (an ImageNet batch holds 1024 x 150,528 values)
// ---------------------------------------------------------------------------------------------------------
void op_pixels_stage(real *x, const uint8_t *src, const double *lut, const int64_t *yoff, const int64_t *xoff, int n,
                     int gh, int gw, int chans, int mix, double lam, int y0, int y1, int x0, int x1) {
    const int64_t vals = (int64_t)gh * gw * chans;
    #pragma omp parallel for schedule(dynamic, 4)
    for (int b = 0; b < n; b++) {
        const uint8_t *s = src + (int64_t)b * vals, *p = src + (int64_t)(n - 1 - b) * vals;
        real *dst = x + (int64_t)b * vals;
        for (int y = 0; y < gh; y++)
            for (int xx = 0; xx < gw; xx++) {
                const int64_t t0 = ((int64_t)y * gw + xx) * chans;
                const int inbox = mix == 2 && y >= y0 && y < y1 && xx >= x0 && xx < x1;
                for (int ch = 0; ch < chans; ch++) {
                    double v = lut[ch * 256 + s[t0 + ch]];
                    if (mix == 1) v = fma(lam, v, (1 - lam) * lut[ch * 256 + p[t0 + ch]]);
                    else if (inbox) v = lut[ch * 256 + p[t0 + ch]];
                    dst[yoff[y] + xoff[xx] + ch] = (real)v;
                }
            }
    }
}

// ---------------------------------------------------------------------------------------------------------
// the document-pair features
// ---------------------------------------------------------------------------------------------------------
void op_pair_features_fwd(opnd *f_, const real *a, const real *b, int B, int D) {
    real *f = f_;
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < B; i++) {
        const real *ar = a + (int64_t)i * D, *br = b + (int64_t)i * D;
        real *fr = f + (int64_t)i * 4 * D;
        for (int d = 0; d < D; d++) {
            fr[d] = ar[d];
            fr[D + d] = br[d];
            fr[2 * D + d] = ar[d] - br[d];
            fr[3 * D + d] = ar[d] * br[d];
        }
    }
}

void op_pair_features_bwd(real *da, real *db, const real *df, const real *a, const real *b, int B, int D) {
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < B; i++) {
        const real *ar = a + (int64_t)i * D, *br = b + (int64_t)i * D, *g = df + (int64_t)i * 4 * D;
        real *dar = da + (int64_t)i * D, *dbr = db + (int64_t)i * D;
        for (int d = 0; d < D; d++) {
            real g0 = g[d], g1 = g[D + d], g2 = g[2 * D + d], g3 = g[3 * D + d];
            dar[d] = (g0 + g2) + g3 * br[d];
            dbr[d] = (g1 - g2) + g3 * ar[d];
        }
    }
}
