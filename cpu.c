// cpu.c: the CPU backend. Every op of ops.h in plain C over `real` (float, or double with -DHGRN2_F64),
// parallel with OpenMP; the token mixers' recurrences are in cpu_mixer.c, the classifier's ops in cpu_cls.c. It
// is also the oracle the GPU kernels are tested against, so it follows docs/model.md literally and stays
// readable; speed comes from cache blocking and from loops gcc can vectorise.
//
// Determinism: every output element is computed by exactly one thread, in an order that does not depend on
// the number of threads (static partitions of independent outputs; reductions over rows run per column in
// row order, or over fixed-size blocks combined in block order). No float atomics anywhere.
#include "common.h"
#include "cpu_math.h"
#include "cpu_vec.h"
#include "ops.h"
#include <math.h>
#include <omp.h>

// ---------------------------------------------------------------------------------------------------------
// dense: a blocked GEMM  C[M,N] (= or +=) sum_k A(m,k) B(k,n)  with arbitrary strides on A and B
// ---------------------------------------------------------------------------------------------------------
// GotoBLAS structure in plain C: B is packed per block of NC columns x KS depth into NR-wide panels shared by
// all threads; each thread packs its rows of A into MR-high panels; an MR x NR register tile accumulates a
// broadcast of A times a vector of B (the inner loop runs over NR contiguous columns, which gcc vectorises
// without reordering any sum). The depth is cut in fixed KC steps, so the summation order of every element
// is the same whatever the thread count, and tiles sit at fixed multiples of MR and NR. B is packed a whole
// KS deep at a time so that a call costs few barriers (a barrier waits for the slowest thread, which on a
// busy machine is one that was descheduled).
#define MR 6
#define NR ((int)(128 / sizeof(real)))   // 32 floats or 16 doubles: 2 AVX-512 or 4 AVX2 registers per row
#define KC 256                            // depth of one register-tile pass
#define KS (4 * KC)                       // depth packed between barriers
#define MC (16 * MR)                      // most rows per work item
#define NG (8 * NR)                       // columns per work item
#define NC (128 * NR)                     // columns per packed B block

static inline void gemm_tile(int64_t kc, const real *restrict a, const real *restrict b, real *restrict c,
                             int64_t ldc, int mr, int nr, int first) {
    real acc[MR][NR];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) acc[i][j] = 0;
    for (int64_t p = 0; p < kc; p++) {
        const real *ap = a + p * MR, *bp = b + p * NR;
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++) acc[i][j] += ap[i] * bp[j];
    }
    if (mr == MR && nr == NR) {
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++) c[i * ldc + j] = first ? acc[i][j] : c[i * ldc + j] + acc[i][j];
    } else {
        for (int i = 0; i < mr; i++)
            for (int j = 0; j < nr; j++) c[i * ldc + j] = first ? acc[i][j] : c[i * ldc + j] + acc[i][j];
    }
}

// A rows m0..m0+mc-1, depth p0..p0+kc-1, as MR-row panels [kc][MR], zero padded.
static void pack_a(real *restrict Ap, const real *A, int64_t sam, int64_t sak, int64_t m0, int64_t mc,
                   int64_t p0, int64_t kc) {
    for (int64_t ir = 0; ir < mc; ir += MR) {
        real *dst = Ap + ir * kc;
        int mr = (int)min64(MR, mc - ir);
        if (sam == 1) {
            // A is a transposed operand (dW = dy^T x): the MR values of a step are contiguous
            for (int64_t p = 0; p < kc; p++) {
                const real *src = A + (p0 + p) * sak + m0 + ir;
                for (int i = 0; i < MR; i++) dst[p * MR + i] = i < mr ? src[i] : 0;
            }
            continue;
        }
        for (int i = 0; i < MR; i++) {
            const real *src = A + (m0 + ir + i) * sam + p0 * sak;
            if (i < mr) for (int64_t p = 0; p < kc; p++) dst[p * MR + i] = src[p * sak];
            else        for (int64_t p = 0; p < kc; p++) dst[p * MR + i] = 0;
        }
    }
}

// B columns n0..n0+nr-1, depth p0..p0+kc-1, as one panel [kc][NR], zero padded.
static void pack_b_panel(real *restrict dst, const real *B, int64_t sbk, int64_t sbn, int64_t n0, int nr,
                         int64_t p0, int64_t kc) {
    if (sbn == 1 && nr == NR) {
        for (int64_t p = 0; p < kc; p++) {
            const real *src = B + (p0 + p) * sbk + n0;
            for (int j = 0; j < NR; j++) dst[p * NR + j] = src[j];
        }
        return;
    }
    for (int j = 0; j < NR; j++) {
        const real *src = B + p0 * sbk + (n0 + j) * sbn;
        if (j < nr) for (int64_t p = 0; p < kc; p++) dst[p * NR + j] = src[p * sbk];
        else        for (int64_t p = 0; p < kc; p++) dst[p * NR + j] = 0;
    }
}

static void gemm(real *C, int64_t ldc, const real *A, int64_t sam, int64_t sak, const real *B, int64_t sbk,
                 int64_t sbn, int64_t M, int64_t N, int64_t K, int accumulate) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        if (!accumulate)
            for (int64_t m = 0; m < M; m++) memset(C + m * ldc, 0, (size_t)N * sizeof(real));
        return;
    }
    int64_t ncmax = min64(NC, (N + NR - 1) / NR * NR), ksmax = min64(KS, K);
    real *Bp = xmalloc((size_t)(ksmax * ncmax) * sizeof(real));
    // Smaller row blocks when there would be too few work items to balance the threads (dW of a square
    // layer). Tiles stay at multiples of MR, so this changes who computes an element, never how.
    int64_t mc_rows = MC, groups = (ncmax + NG - 1) / NG;
    while (mc_rows > MR && ((M + mc_rows - 1) / mc_rows) * groups < 4 * omp_get_max_threads())
        mc_rows = mc_rows / 2 / MR * MR > MR ? mc_rows / 2 / MR * MR : MR;
    #pragma omp parallel
    {
        real *Ap = xmalloc((size_t)(mc_rows * ksmax) * sizeof(real));
        for (int64_t jc = 0; jc < N; jc += NC) {
            int64_t nc = min64(NC, N - jc), npan = (nc + NR - 1) / NR;
            for (int64_t ks = 0; ks < K; ks += KS) {
                int64_t kd = min64(KS, K - ks);
                // packed B: for each KC step pc of this block, npan panels [kc][NR]
                #pragma omp for schedule(static)
                for (int64_t jp = 0; jp < npan; jp++)
                    for (int64_t pc = 0; pc < kd; pc += KC)
                        pack_b_panel(Bp + pc * npan * NR + jp * NR * min64(KC, kd - pc), B, sbk, sbn, jc + jp * NR,
                                     (int)min64(NR, nc - jp * NR), ks + pc, min64(KC, kd - pc));
                // work items: (mc_rows rows) x (NG columns); a thread repacks A only when its row block changes
                int64_t nmb = (M + mc_rows - 1) / mc_rows, njb = (nc + NG - 1) / NG, packed = -1;
                #pragma omp for schedule(static)
                for (int64_t it = 0; it < nmb * njb; it++) {
                    int64_t ib = it / njb, jb = it % njb;
                    int64_t m0 = ib * mc_rows, mc = min64(mc_rows, M - m0);
                    for (int64_t pc = 0; pc < kd; pc += KC) {
                        int64_t kc = min64(KC, kd - pc);
                        real *Apc = Ap + pc * mc_rows;
                        if (ib != packed) pack_a(Apc, A, sam, sak, m0, mc, ks + pc, kc);
                        int first = ks + pc == 0 && !accumulate;
                        for (int64_t j0 = jb * NG; j0 < min64(nc, (jb + 1) * NG); j0 += NR) {
                            const real *Bpc = Bp + pc * npan * NR + (j0 / NR) * NR * kc;
                            for (int64_t ir = 0; ir < mc; ir += MR)
                                gemm_tile(kc, Apc + ir * kc, Bpc, C + (m0 + ir) * ldc + jc + j0, ldc,
                                          (int)min64(MR, mc - ir), (int)min64(NR, nc - j0), first);
                        }
                    }
                    packed = ib;
                }
            }
        }
        free(Ap);
    }
    free(Bp);
}

// Operands are `real` here: the matmuls read them as they are.
void op_to_opnd(opnd *y, const real *x, int64_t n) { memmove(y, x, (size_t)n * sizeof(real)); }
void op_to_opnd_cols(opnd *y_, int64_t ldy, const real *x, int64_t ldx, int64_t N, int C) {
    real *y = y_;
    if (y == x && ldy == ldx) return;
    for (int64_t r = 0; r < N; r++) memmove(y + r * ldy, x + r * ldx, (size_t)C * sizeof(real));
}

void op_matmul_fwd(real *y, const opnd *x_, const real *W, int64_t N, int I, int O) {
    const real *x = x_;
    // y = x W^T: A = x [N,I], B(i,o) = W[o,i]
    gemm(y, O, x, I, 1, W, 1, I, N, O, I, 0);
}

void op_matmul_fwd_opnd(opnd *y, const opnd *x, const real *W, int64_t N, int I, int O) {
    op_matmul_fwd(y, x, W, N, I, O);
}

// The fused product of decoding is the ops it stands for, in turn (ops.h): nothing to gain from fusing here.
void op_matmul_fused_fwd(void *y, int y_opnd, const void *x, int pro, const real *nw, double eps, const real *W,
                         const real *res, opnd *tmp, int64_t N, int I, int O) {
    const opnd *in = x;
    if (pro == OP_PRO_RMSNORM) op_rmsnorm_fwd(tmp, NULL, (real *)x, NULL, nw, N, I, eps);
    else if (pro == OP_PRO_SWIGLU) op_swiglu_fwd(tmp, x, N, I);
    if (pro != OP_PRO_NONE) in = tmp;
    (void)y_opnd;   // operands are `real` here
    op_matmul_fwd(y, in, W, N, I, O);
    if (res) {
        real *yr = y;
        for (int64_t i = 0; i < N * O; i++) yr[i] += res[i];
    }
}

void op_matmul_bwd(real *dx, real *dW, const opnd *dy_, const opnd *x_, const real *W, int64_t N, int I, int O) {
    const real *dy = dy_, *x = x_;
    // dx = dy W: A = dy [N,O], B = W [O,I]
    if (dx) gemm(dx, I, dy, O, 1, W, I, 1, N, I, O, 0);
    // dW += dy^T x: A(o,n) = dy[n,o], B = x [N,I]; the sum over n runs in row order for every element
    if (dW) gemm(dW, I, dy, 1, O, x, I, 1, O, I, N, 1);
}

// ---------------------------------------------------------------------------------------------------------
// embedding
// ---------------------------------------------------------------------------------------------------------
void op_embed_fwd(real *x, const int32_t *ids, const real *E, int64_t N, int D) {
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) memcpy(x + n * D, E + (int64_t)ids[n] * D, (size_t)D * sizeof(real));
}

// Rows may share an id, so parallelise over column blocks (COLBLK, cpu_vec.h): every dE element is summed in row
// order by the one thread that owns its columns. Every id is below V, the rows of dE.
void op_embed_bwd(real *dE, const real *dx, const int32_t *ids, int64_t N, int D, int64_t V) {
    #pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < D; c0 += COLBLK) {
        int c1 = c0 + COLBLK < D ? c0 + COLBLK : D;
        for (int64_t n = 0; n < N; n++) {
            real *dst = dE + (int64_t)ids[n] * D;
            const real *src = dx + n * D;
            for (int c = c0; c < c1; c++) dst[c] += src[c];
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// elementwise
// ---------------------------------------------------------------------------------------------------------
void op_zero(real *y, int64_t n) {
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] = 0;
}

// Fixed blocks summed in parallel, then the block sums in block order: the same bits for any thread count.
#define SUMBLK 8192
double op_sumsq(const real *a, int64_t n) {
    int64_t nb = (n + SUMBLK - 1) / SUMBLK;
    if (nb == 0) return 0;
    double *part = xmalloc((size_t)nb * sizeof(double));
    #pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < nb; b++) {
        int64_t i0 = b * SUMBLK, i1 = min64(n, i0 + SUMBLK);
        part[b] = sumsq_d(a + i0, i1 - i0);
    }
    double s = 0;
    for (int64_t b = 0; b < nb; b++) s += part[b];
    free(part);
    return s;
}

// ---------------------------------------------------------------------------------------------------------
// RMSNorm
// ---------------------------------------------------------------------------------------------------------
void op_rmsnorm_fwd(opnd *y, real *rstd, real *x, const real *res, const real *w, int64_t N, int C, double eps) {
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        real *xr = x + n * C;
        if (res)
            for (int c = 0; c < C; c++) xr[c] += res[n * C + c];
        real *yr = (real *)y + n * C;
        real r = (real)rms_rstd(xr, C, eps);
        for (int c = 0; c < C; c++) yr[c] = xr[c] * r * w[c];
        if (rstd) rstd[n] = r;
    }
}

void op_rmsnorm_scale(opnd *y, const real *x, const real *rstd, const real *w, int64_t N, int C) {
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const real *xr = x + n * C, r = rstd[n];
        real *yr = (real *)y + n * C;
        for (int c = 0; c < C; c++) yr[c] = xr[c] * r * w[c];
    }
}

// y = x r w with r = (mean(x^2) + eps)^-1/2:  dx (= or +=) r (w dy) - x r^3 / C * sum(w dy x);  dw += sum_n dy x r.
void op_rmsnorm_bwd(real *dx, int acc, real *dw, const real *dy, const real *x, const real *w, const real *rstd,
                    int64_t N, int C, double eps) {
    if (dx) {
        #pragma omp parallel for schedule(static)
        for (int64_t n = 0; n < N; n++) {
            const real *xr = x + n * C, *dyr = dy + n * C;
            real *dxr = dx + n * C;
            real r = rstd ? rstd[n] : (real)rms_rstd(xr, C, eps);
            // the row sum first, so dxr is touched once: with acc it holds a gradient to add to
            real coef = dot3(w, dyr, xr, C) * r * r * r / C;
            if (acc) for (int c = 0; c < C; c++) dxr[c] += r * (w[c] * dyr[c]) - coef * xr[c];
            else     for (int c = 0; c < C; c++) dxr[c] = r * (w[c] * dyr[c]) - coef * xr[c];
        }
    }
    if (dw) {
        // per column block, rows in order (see op_embed_bwd)
        #pragma omp parallel for schedule(static)
        for (int c0 = 0; c0 < C; c0 += COLBLK) {
            int c1 = c0 + COLBLK < C ? c0 + COLBLK : C;
            for (int64_t n = 0; n < N; n++) {
                const real *xr = x + n * C, *dyr = dy + n * C;
                real r = rstd ? rstd[n] : (real)rms_rstd(xr, C, eps);
                for (int c = c0; c < c1; c++) dw[c] += dyr[c] * xr[c] * r;
            }
        }
    }
}
void op_rmsnorm_bwd_opnd(real *dx, int acc, opnd *dxo, real *dw, const real *dy, const real *x, const real *w,
                         const real *rstd, int64_t N, int C, double eps) {
    op_rmsnorm_bwd(dx, acc, dw, dy, x, w, rstd, N, C, eps);
    op_to_opnd(dxo, dx, N * C);
}

// ---------------------------------------------------------------------------------------------------------
// gates
// ---------------------------------------------------------------------------------------------------------
void op_gates_fwd(real *q, real *k, real *g, const real *qf, int64_t ldqf, const real *lb, int64_t N, int HK) {
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const real *qp = qf + n * ldqf, *fp = qp + HK;
        real *qr = q + n * HK, *kr = k + n * HK, *gr = g + n * HK;
        for (int c = 0; c < HK; c++) {
            qr[c] = qp[c] * sigmoid(qp[c]);
            real f = fp[c], s, sn;
            sigmoid2(f, &s, &sn);
            if (!lb) {
                // logsigmoid(f) = -softplus(-f), finite for any f
                gr[c] = -((f < 0 ? -f : 0) + rlog1p(rexp(-rfabs(f))));
                kr[c] = sn;
            } else {
                // g = log(lam) = log1p(-k): log1p keeps precision when the gate is near 1 (k small),
                // log(lam) when it is near 0 (lam small)
                real l = lb[c];
                real kk = (1 - l) * sn;
                kr[c] = kk;
                gr[c] = kk < (real)0.5 ? rlog1p(-kk) : rlog(l + (1 - l) * s);
            }
        }
    }
}

// Parallel over column blocks so that dlb[c] is summed in row order by one thread.
void op_gates_bwd(real *dqf, int64_t lddqf, real *dlb, const real *dq, const real *dk, const real *dg,
                  const real *qf, int64_t ldqf, const real *lb, int64_t N, int HK) {
    #pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < HK; c0 += COLBLK) {
        int c1 = c0 + COLBLK < HK ? c0 + COLBLK : HK;
        for (int64_t n = 0; n < N; n++) {
            const real *qp = qf + n * ldqf, *fp = qp + HK;
            real *dqp = dqf + n * lddqf, *dfp = dqp + HK;
            const real *dqr = dq + n * HK, *dkr = dk + n * HK, *dgr = dg + n * HK;
            for (int c = c0; c < c1; c++) {
                real sq, sqn;
                sigmoid2(qp[c], &sq, &sqn);
                dqp[c] = dqr[c] * (sq + qp[c] * sq * sqn);
                real s, sn;
                sigmoid2(fp[c], &s, &sn);
                if (!lb) {
                    // lam = s, k = 1 - s: dg/df = 1 - s, dk/df = -s (1 - s)
                    dfp[c] = (dgr[c] - dkr[c] * s) * sn;
                } else {
                    real l = lb[c];
                    real lam = l + (1 - l) * s;
                    real dlam = dgr[c] / lam - dkr[c];
                    dfp[c] = dlam * (1 - l) * s * sn;
                    if (dlb) dlb[c] += dlam * sn;
                }
            }
        }
    }
}
void op_gates_bwd_opnd(opnd *dqf, int64_t lddqf, real *dlb, const real *dq, const real *dk, const real *dg,
                       const real *qf, int64_t ldqf, const real *lb, int64_t N, int HK) {
    op_gates_bwd(dqf, lddqf, dlb, dq, dk, dg, qf, ldqf, lb, N, HK);
}

// ---------------------------------------------------------------------------------------------------------
// lower bounds
// ---------------------------------------------------------------------------------------------------------
// lb[l] = cumsum(p)[l] - p[0] is summed as p[1] + ... + p[l], the same value without the cancellation.
static void lb_softmax(real *p, const real *P, int L, int C, int c) {
    real m = P[c];
    for (int l = 1; l < L; l++) m = P[(int64_t)l * C + c] > m ? P[(int64_t)l * C + c] : m;
    real z = 0;
    for (int l = 0; l < L; l++) { p[l] = rexp(P[(int64_t)l * C + c] - m); z += p[l]; }
    for (int l = 0; l < L; l++) p[l] /= z;
}

void op_lower_bounds_fwd(real *lb, const real *P, int L, int C) {
    #pragma omp parallel
    {
        real *p = xmalloc((size_t)L * sizeof(real));
        #pragma omp for schedule(static)
        for (int c = 0; c < C; c++) {
            lb_softmax(p, P, L, C, c);
            real acc = 0;
            lb[c] = 0;
            for (int l = 1; l < L; l++) { acc += p[l]; lb[(int64_t)l * C + c] = acc; }
        }
        free(p);
    }
}

// dp[j] = sum_{l>=j} dlb[l] for j >= 1 (p[0] cancels); softmax backward: dP += p (dp - sum p dp).
void op_lower_bounds_bwd(real *dP, const real *dlb, const real *P, int L, int C) {
    #pragma omp parallel
    {
        real *p = xmalloc((size_t)2 * L * sizeof(real)), *dp = p + L;
        #pragma omp for schedule(static)
        for (int c = 0; c < C; c++) {
            lb_softmax(p, P, L, C, c);
            real acc = 0;
            for (int l = L - 1; l >= 1; l--) { acc += dlb[(int64_t)l * C + c]; dp[l] = acc; }
            dp[0] = 0;
            real s = 0;
            for (int l = 0; l < L; l++) s += p[l] * dp[l];
            for (int l = 0; l < L; l++) dP[(int64_t)l * C + c] += p[l] * (dp[l] - s);
        }
        free(p);
    }
}

// ---------------------------------------------------------------------------------------------------------
// Transformer++: rotary positions and causal softmax attention
// ---------------------------------------------------------------------------------------------------------
// Rotates every head of every row by the angles of its position, sin scaled by sign (1: the forward, -1: the
// transposed rotation). The cos and sin of each (step, frequency) are made once per call in double, [T][hd/2]
// pairs, and read by the B H rows of that step; the rows are independent, so any schedule gives the same bits.
static void rope_rotate(real *x, int64_t ldx, int B, int T, int H, int hd, int pos0, double theta, double sign) {
    const int hh = hd / 2;
    double *cs = xmalloc((size_t)T * hh * 2 * sizeof(double));
    for (int t = 0; t < T; t++)
        for (int i = 0; i < hh; i++) {
            double a = (double)(pos0 + t) * pow(theta, -2.0 * i / hd);
            cs[((int64_t)t * hh + i) * 2] = cos(a);
            cs[((int64_t)t * hh + i) * 2 + 1] = sign * sin(a);
        }
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < (int64_t)B * T; r++) {
        const double *c = cs + (r % T) * hh * 2;
        real *row = x + r * ldx;
        for (int h = 0; h < H; h++) {
            real *lo = row + (int64_t)h * hd, *hi = lo + hh;
            for (int i = 0; i < hh; i++) {
                const double x1 = lo[i], x2 = hi[i];
                lo[i] = (real)(x1 * c[2 * i] - x2 * c[2 * i + 1]);
                hi[i] = (real)(x2 * c[2 * i] + x1 * c[2 * i + 1]);
            }
        }
    }
    free(cs);
}
void op_rope_fwd(real *x, int64_t ldx, int B, int T, int H, int hd, int pos0, double theta) {
    rope_rotate(x, ldx, B, T, H, hd, pos0, theta, 1);
}
void op_rope_bwd(real *dx, int64_t lddx, int B, int T, int H, int hd, double theta) {
    rope_rotate(dx, lddx, B, T, H, hd, 0, theta, -1);
}

// One worker per (query row, head): the scores of the visible keys into per-thread scratch, their maximum, the
// exponentials and their sum (in double), then the weighted values. The rows cost in proportion to how many
// keys they see, so they are handed out dynamically; each output is still made by one thread in a fixed order.
void op_attention_fwd(real *o, real *lse, const real *q, int64_t ldq, const real *k, const real *v, int64_t ldkv,
                      int64_t skv, int B, int Tq, int Tk, int H, int hd) {
    const real scale = (real)(1 / sqrt((double)hd));
    const int64_t D = (int64_t)H * hd;
    #pragma omp parallel
    {
        real *s = xmalloc((size_t)Tk * sizeof(real));
        #pragma omp for schedule(dynamic, 16)
        for (int64_t w = 0; w < (int64_t)B * Tq * H; w++) {
            const int64_t row = w / H, b = row / Tq;
            const int h = (int)(w % H), n = Tk - Tq + (int)(row % Tq) + 1;    // keys 0 .. n-1
            const real *qr = q + row * ldq + (int64_t)h * hd;
            const real *kb = k + b * skv + (int64_t)h * hd, *vb = v + b * skv + (int64_t)h * hd;
            real mx = -INFINITY;
            for (int j = 0; j < n; j++) {
                s[j] = dot(qr, kb + j * ldkv, hd) * scale;
                mx = s[j] > mx ? s[j] : mx;
            }
            double z = 0;
            for (int j = 0; j < n; j++) { s[j] = rexp(s[j] - mx); z += s[j]; }
            real *orow = o + row * D + (int64_t)h * hd;
            for (int i = 0; i < hd; i++) orow[i] = 0;
            for (int j = 0; j < n; j++) axpy(orow, s[j], vb + j * ldkv, hd);
            const real inv = (real)(1 / z);
            for (int i = 0; i < hd; i++) orow[i] *= inv;
            if (lse) lse[row * H + h] = (real)(mx + log(z));
        }
        free(s);
    }
}

// One worker per (sequence, head), which owns that head's columns of dq, dk and dv: the rows run in order t,
// each adding its terms into dk_j and dv_j for j <= t, so every sum has one fixed order.
void op_attention_bwd(real *dq, real *dk, real *dv, int64_t ldd, const real *dout, const real *q, const real *k,
                      const real *v, int64_t ld, const real *o, const real *lse, int B, int T, int H, int hd) {
    const real scale = (real)(1 / sqrt((double)hd));
    const int64_t D = (int64_t)H * hd;
    #pragma omp parallel for schedule(dynamic, 1)
    for (int64_t w = 0; w < (int64_t)B * H; w++) {
        const int64_t r0 = (w / H) * T, c = (w % H) * hd;    // the sequence's first row, the head's first column
        for (int j = 0; j < T; j++)
            for (int i = 0; i < hd; i++) dk[(r0 + j) * ldd + c + i] = dv[(r0 + j) * ldd + c + i] = 0;
        for (int t = 0; t < T; t++) {
            const int64_t r = r0 + t;
            const real *qt = q + r * ld + c, *dor = dout + r * D + c;
            const real delta = dot(dor, o + r * D + c, hd), l = lse[r * H + c / hd];
            real *dqt = dq + r * ldd + c;
            for (int i = 0; i < hd; i++) dqt[i] = 0;
            for (int j = 0; j <= t; j++) {
                const real *kj = k + (r0 + j) * ld + c, *vj = v + (r0 + j) * ld + c;
                const real p = rexp(dot(qt, kj, hd) * scale - l);
                const real ds = p * (dot(dor, vj, hd) - delta) * scale;
                axpy(dqt, ds, kj, hd);
                axpy(dk + (r0 + j) * ldd + c, ds, qt, hd);
                axpy(dv + (r0 + j) * ldd + c, p, dor, hd);
            }
        }
    }
}

void op_kv_append(real *cache, int64_t ldc, int ctx, int pos0, const real *x, int64_t ldx, int B, int T, int C) {
    for (int64_t r = 0; r < (int64_t)B * T; r++)
        memcpy(cache + ((r / T) * ctx + pos0 + r % T) * ldc, x + r * ldx, (size_t)C * sizeof(real));
}

// ---------------------------------------------------------------------------------------------------------
// SwiGLU
// ---------------------------------------------------------------------------------------------------------
void op_swiglu_fwd(opnd *h, const opnd *gu, int64_t N, int I) {
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const real *gt = (const real *)gu + n * 2 * I, *up = gt + I;
        real *hr = (real *)h + n * I;
        for (int i = 0; i < I; i++) hr[i] = gt[i] * sigmoid(gt[i]) * up[i];
    }
}

void op_swiglu_bwd(opnd *dgu, const real *dh, const opnd *gu, int64_t N, int I) {
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const real *gt = (const real *)gu + n * 2 * I, *up = gt + I, *dhr = dh + n * I;
        real *dg = (real *)dgu + n * 2 * I, *du = dg + I;
        for (int i = 0; i < I; i++) {
            real s, sn;
            sigmoid2(gt[i], &s, &sn);
            dg[i] = dhr[i] * up[i] * (s + gt[i] * s * sn);
            du[i] = dhr[i] * gt[i] * s;
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// softmax cross-entropy
// ---------------------------------------------------------------------------------------------------------
static double row_lse(const real *x, int V) {
    real m = x[0];
    for (int j = 1; j < V; j++) m = x[j] > m ? x[j] : m;
    double s = 0;
    for (int j = 0; j < V; j++) s += rexp(x[j] - m);
    return m + log(s);
}

void op_xent_fwd(real *losses, const real *logits, const int32_t *targets, int64_t N, int V) {
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const real *x = logits + n * V;
        losses[n] = targets[n] < 0 ? 0 : (real)(row_lse(x, V) - x[targets[n]]);
    }
}

// dlogits may be logits itself: each element is read before it is overwritten.
void op_xent_bwd(real *dlogits, const real *logits, const int32_t *targets, real scale, int64_t N, int V) {
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const real *x = logits + n * V;
        real *d = dlogits + n * V;
        int32_t t = targets[n];
        if (t < 0) { for (int j = 0; j < V; j++) d[j] = 0; continue; }
        real lse = (real)row_lse(x, V);
        for (int j = 0; j < V; j++) d[j] = scale * rexp(x[j] - lse);
        d[t] -= scale;
    }
}

void op_argmax_rows(int32_t *best, const real *logits, int64_t N, int V) {
    for (int64_t n = 0; n < N; n++) {
        const real *x = logits + n * V;
        int32_t b = 0;
        for (int j = 1; j < V; j++) if (x[j] > x[b]) b = j;
        best[n] = b;
    }
}

// The soft target's weight on class j of row n (ops.h): eps / V everywhere, plus (1 - eps) lam on ta and
// (1 - eps) (1 - lam) on tb (both on ta when they are equal).
static double soft_target(int j, int32_t a, int32_t b, double lam, double eps, int V) {
    return eps / V + (1 - eps) * ((j == a ? lam : 0) + (j == b ? 1 - lam : 0));
}

void op_xent_soft_fwd(real *losses, const real *logits, const int32_t *ta, const int32_t *tb, const real *lam,
                      real eps, int64_t N, int V) {
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const real *x = logits + n * V;
        if (ta[n] < 0) { losses[n] = 0; continue; }
        // sum_j y_j = 1, so the loss is lse - sum_j y_j x_j
        double sx = 0;
        for (int j = 0; j < V; j++) sx += x[j];
        const double l = lam[n], e = eps;
        losses[n] = (real)(row_lse(x, V) - e / V * sx - (1 - e) * (l * x[ta[n]] + (1 - l) * x[tb[n]]));
    }
}

void op_xent_soft_bwd(real *dlogits, const real *logits, const int32_t *ta, const int32_t *tb, const real *lam,
                      real eps, real scale, int64_t N, int V) {
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const real *x = logits + n * V;
        real *d = dlogits + n * V;
        if (ta[n] < 0) { for (int j = 0; j < V; j++) d[j] = 0; continue; }
        real lse = (real)row_lse(x, V);
        for (int j = 0; j < V; j++)
            d[j] = scale * (rexp(x[j] - lse) - (real)soft_target(j, ta[n], tb[n], lam[n], eps, V));
    }
}

void op_classifier_train(real *losses, real *dx, real *dW, real *logits, const opnd *h, const real *W,
                         const int32_t *targets, real scale, int64_t N, int D, int V) {
    op_matmul_fwd(logits, h, W, N, D, V);
    op_xent_fwd(losses, logits, targets, N, V);
    op_xent_bwd(logits, logits, targets, scale, N, V);
    op_matmul_bwd(dx, dW, logits, h, W, N, D, V);
}

// ---------------------------------------------------------------------------------------------------------
// AdamW
// ---------------------------------------------------------------------------------------------------------
void op_adamw(real *p, const real *grad, real *m, real *v, int64_t n, double lr, double beta1, double beta2,
              double eps, double wd, double grad_scale, int64_t step) {
    double bc1 = 1 - pow(beta1, (double)step), bc2 = 1 - pow(beta2, (double)step);
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        double gi = (double)grad[i] * grad_scale;
        double mi = beta1 * m[i] + (1 - beta1) * gi;
        double vi = beta2 * v[i] + (1 - beta2) * gi * gi;
        double upd = (mi / bc1) / (sqrt(vi / bc2) + eps) + wd * p[i];
        m[i] = (real)mi;
        v[i] = (real)vi;
        p[i] = (real)(p[i] - lr * upd);
    }
}

void op_adamw_multi(const AdamwPart *parts, int nparts, double lr, double beta1, double beta2, double eps,
                    double grad_scale, int64_t step) {
    for (int k = 0; k < nparts; k++)
        op_adamw(parts[k].p, parts[k].grad, parts[k].m, parts[k].v, parts[k].n, lr, beta1, beta2, eps, parts[k].wd,
                 grad_scale, step);
}
