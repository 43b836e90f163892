// cpu.c: the CPU backend. Every op of ops.h in plain C over `real` (float, or double with -DHGRN2_F64),
// parallel with OpenMP. It is also the oracle the GPU kernels are tested against, so it follows docs/model.md
// literally and stays readable; speed comes from cache blocking and from loops gcc can vectorise.
//
// Determinism: every output element is computed by exactly one thread, in an order that does not depend on
// the number of threads (static partitions of independent outputs; reductions over rows run per column in
// row order, or over fixed-size blocks combined in block order). No float atomics anywhere.
#include "common.h"
#include "cpu_math.h"
#include "ops.h"
#include <math.h>
#include <omp.h>
#if defined(__SSE2__)
#include <xmmintrin.h>
#endif

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// ---------------------------------------------------------------------------------------------------------
// small vector helpers
// ---------------------------------------------------------------------------------------------------------

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

// Rows may share an id, so parallelise over column blocks: every dE element is summed in row order by the one
// thread that owns its columns.
#define COLBLK 64
void op_embed_bwd(real *dE, const real *dx, const int32_t *ids, int64_t N, int D) {
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
static inline double rms_rstd(const real *x, int C, double eps) {
    return 1.0 / sqrt(sumsq_d(x, C) / C + eps);
}

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
// the HGRU2 recurrence
// ---------------------------------------------------------------------------------------------------------
// Decays of very negative gates underflow, and subnormal numbers trap to microcode on many x86 CPUs: with one
// gate in ten near -20, the chunked form ran 5x slower on a Xeon. The recurrence therefore runs with
// flush-to-zero and denormals-are-zero set in each of its threads (and restored after): numbers below 1e-38
// carry nothing here, and the flush is deterministic.
#if defined(__SSE2__)
static inline unsigned ftz_begin(void) { unsigned csr = _mm_getcsr(); _mm_setcsr(csr | 0x8040); return csr; }
static inline void ftz_end(unsigned csr) { _mm_setcsr(csr); }
#else
static inline unsigned ftz_begin(void) { return 0; }
static inline void ftz_end(unsigned csr) { (void)csr; }
#endif

// exp of a decay exponent: 0 below the smallest normal number, without exp's slow underflow path.
#ifdef HGRN2_F64
#define DECAY_MIN (-708.0)
#else
#define DECAY_MIN (-87.0f)
#endif
static inline real decay(real x) { return x < DECAY_MIN ? 0 : rexp(x); }

// One worker per (sequence, head) pair. Seq holds that pair's row pointers in the order of the scan: step t of
// q/k/g is at +t*sqk, of v at +t*sv, of o/dout at +t*so, of dv at +t*sdv. A reverse scan (ops.h) starts at
// position T-1 with negative strides, so step t is position T-1-t: every loop below reads and writes the
// sequence backwards in place, with the arithmetic of the forward scan.
typedef struct {
    const real *q, *k, *g, *v;
    int64_t sqk, sv, so;
    int64_t row;   // the row of step 0 (position 0, or T-1 in reverse)
    int64_t rstep; // rows from one step to the next: dir * (the rows between consecutive positions)
    int dir;       // 1, or -1 in reverse: the sign of every stride
    int T, K, Dv;
    real scale;    // 1/sqrt(K)
} Seq;

// Where sequence b of a call lies. Sequences come in blocks of `per` interleaved ones, a block of T*per rows:
// position t of sequence b is row (b / per) T per + b % per + t per. per = 1 is the 1-D op (sequence b at rows
// b T .. b T + T - 1); per = gw are the columns of images of gh = T rows of gw positions in raster order.
static Seq seq_at(const real *q, const real *k, const real *g, const real *v, int64_t ldv, int b, int h, int T,
                  int per, int H, int K, int Dv, int reverse) {
    Seq s;
    s.dir = reverse ? -1 : 1;
    const int64_t first = reverse && T > 0 ? T - 1 : 0;
    s.row = (int64_t)(b / per) * T * per + b % per + first * per;
    s.rstep = (int64_t)s.dir * per;
    int64_t qk0 = (s.row * H + h) * K;
    s.q = q + qk0; s.k = k + qk0; s.g = g + qk0;
    s.v = v + s.row * ldv + (int64_t)h * Dv;
    s.sqk = s.rstep * H * K; s.sv = s.rstep * ldv; s.so = s.rstep * H * Dv;
    s.T = T; s.K = K; s.Dv = Dv;
    s.scale = (real)(1.0 / sqrt((double)K));
    return s;
}

// One step of the recurrence, S = diag(exp(g_t)) Sin + k_t v_t^T (Sin may be S), and o_t = S^T q_t / sqrt(K)
// when o is given. ag: exp(g_t) when already computed, else NULL.
static void rec_step(const Seq *sq, real *S, const real *Sin, int t, const real *ag, real *restrict o) {
    const real *q = sq->q + t * sq->sqk, *k = sq->k + t * sq->sqk, *g = sq->g + t * sq->sqk;
    const real *v = sq->v + t * sq->sv;
    int Dv = sq->Dv;
    if (o) for (int j = 0; j < Dv; j++) o[j] = 0;
    for (int i = 0; i < sq->K; i++) {
        real a = ag ? ag[i] : decay(g[i]), ki = k[i];
        real *Si = S + (int64_t)i * Dv;
        const real *Ii = Sin + (int64_t)i * Dv;
        for (int j = 0; j < Dv; j++) Si[j] = a * Ii[j] + ki * v[j];
        if (o) axpy(o, q[i] * sq->scale, Si, Dv);
    }
}

// ---- chunked form ----
// Per chunk of n <= chunk steps starting at t0, with b_r = g_1 + ... + g_r (local cumulative, per channel):
//   o_r = (q~_r exp(b_r))^T S0 + sum_{s<=r} A[r,s] v_s,   A[r,s] = sum_i q~_{r,i} k_{s,i} exp(b_{r,i} - b_{s,i})
//   S_n = diag(exp(b_n)) S0 + sum_s (k_s exp(b_n - b_s)) v_s^T
// Every exponent used is <= 0 because g <= 0. A is built in SB-row sub-blocks: off the diagonal the decay is
// split around the anchor a = r0 - 1 just before the row block, exp(b_r - b_a) exp(b_a - b_s), both factors
// <= 1, which makes the block a plain product of two matrices; inside a diagonal block the decay is the
// running product of the per-step factors exp(g_u) <= 1, which never overflows either and needs no exp per
// (r, s, i).
#define SB 16

typedef struct {
    int C, K, Dv;
    real *qs, *kk, *ag, *b, *eb; // [C][K]: q / sqrt(K), k, exp(g), local cumulative g, exp(b)
    real *Ka, *Eb;               // [C][K] anchored keys and their decay factors
    real *kc;                    // [C][K] k_s exp(b_n - b_s)
    real *dqs, *dks;             // [C][K] gradients wrt q~ and k inside the chunk (backward)
    real *A, *D;                 // [C][C] intra-chunk scores, and do_r . v_s (backward)
    real *Qa, *Ea;               // [SB][K] anchored queries and their decay factors
    real *tmp, *E, *run;         // [K]; run: dg's running sum over the later chunks (backward)
    real *row;                   // [Dv] an output row before it is added (acc)
} Chunk;

static void chunk_alloc(Chunk *c, int C, int K, int Dv) {
    c->C = C; c->K = K; c->Dv = Dv;
    size_t ck = (size_t)C * K;
    real *p = xmalloc((10 * ck + 2 * (size_t)C * C + 2 * (size_t)SB * K + 3 * (size_t)K + Dv) * sizeof(real));
    c->qs = p; p += ck; c->kk = p; p += ck; c->ag = p; p += ck; c->b = p; p += ck; c->eb = p; p += ck;
    c->Ka = p; p += ck; c->Eb = p; p += ck; c->kc = p; p += ck; c->dqs = p; p += ck; c->dks = p; p += ck;
    c->A = p; p += (size_t)C * C; c->D = p; p += (size_t)C * C;
    c->Qa = p; p += (size_t)SB * K; c->Ea = p; p += (size_t)SB * K;
    c->tmp = p; p += K; c->E = p; p += K; c->run = p; p += K; c->row = p;
}
static void chunk_free(Chunk *c) { free(c->qs); }

// Loads rows t0..t0+n-1: q~, k, exp(g), the local cumulative sums b, exp(b), and kc.
static void chunk_load(Chunk *c, const Seq *sq, int t0, int n) {
    int K = c->K;
    for (int r = 0; r < n; r++) {
        const real *q = sq->q + (t0 + r) * sq->sqk, *k = sq->k + (t0 + r) * sq->sqk;
        const real *g = sq->g + (t0 + r) * sq->sqk;
        real *qs = c->qs + (int64_t)r * K, *kk = c->kk + (int64_t)r * K, *ag = c->ag + (int64_t)r * K;
        real *b = c->b + (int64_t)r * K, *eb = c->eb + (int64_t)r * K;
        for (int i = 0; i < K; i++) {
            qs[i] = q[i] * sq->scale;
            kk[i] = k[i];
            ag[i] = decay(g[i]);
            b[i] = r ? b[i - K] + g[i] : g[i];
            eb[i] = decay(b[i]);
        }
    }
    // kc[s] = k_s exp(b_n - b_s): the weight with which step s enters the state leaving the chunk
    const real *bn = c->b + (int64_t)(n - 1) * K;
    for (int s = 0; s < n; s++) {
        const real *bs = c->b + (int64_t)s * K, *ks = c->kk + (int64_t)s * K;
        real *kc = c->kc + (int64_t)s * K;
        for (int i = 0; i < K; i++) kc[i] = ks[i] * decay(bn[i] - bs[i]);
    }
}

// Intra-chunk scores A[r,s] (s <= r, row stride C). In the backward (dk != NULL, D filled) it also adds
//   dqs[r] += sum_{s<=r} D[r,s] k_s exp(b_r - b_s)   and   dk[s] += sum_{r>=s} D[r,s] q~_r exp(b_r - b_s).
static void chunk_intra(Chunk *c, int n, real *dk) {
    int K = c->K, C = c->C;
    const real *D = dk ? c->D : NULL;
    real *A = c->A, *E = c->E, *tmp = c->tmp;
    for (int r0 = 0; r0 < n; r0 += SB) {
        int r1 = r0 + SB < n ? r0 + SB : n;
        // diagonal block: E = exp(b_r - b_s) as the running product of exp(g_u), u = s+1..r
        for (int s = r0; s < r1; s++) {
            const real *ks = c->kk + (int64_t)s * K;
            for (int i = 0; i < K; i++) E[i] = 1;
            for (int r = s; r < r1; r++) {
                const real *qr = c->qs + (int64_t)r * K, *ag = c->ag + (int64_t)r * K;
                if (r > s) for (int i = 0; i < K; i++) E[i] *= ag[i];
                for (int i = 0; i < K; i++) tmp[i] = ks[i] * E[i];
                A[r * C + s] = dot(qr, tmp, K);
                if (D) {
                    real d = D[r * C + s];
                    axpy(c->dqs + (int64_t)r * K, d, tmp, K);
                    real *dks = dk + (int64_t)s * K;
                    for (int i = 0; i < K; i++) dks[i] += d * qr[i] * E[i];
                }
            }
        }
        if (r0 == 0) continue;
        // off-diagonal blocks, anchored at row a = r0 - 1
        const real *ba = c->b + (int64_t)(r0 - 1) * K;
        for (int r = r0; r < r1; r++) {
            const real *br = c->b + (int64_t)r * K, *qr = c->qs + (int64_t)r * K;
            real *ea = c->Ea + (int64_t)(r - r0) * K, *qa = c->Qa + (int64_t)(r - r0) * K;
            for (int i = 0; i < K; i++) { ea[i] = decay(br[i] - ba[i]); qa[i] = qr[i] * ea[i]; }
        }
        for (int s = 0; s < r0; s++) {
            const real *bs = c->b + (int64_t)s * K, *ks = c->kk + (int64_t)s * K;
            real *eb = c->Eb + (int64_t)s * K, *ka = c->Ka + (int64_t)s * K;
            for (int i = 0; i < K; i++) { eb[i] = decay(ba[i] - bs[i]); ka[i] = ks[i] * eb[i]; }
        }
        for (int r = r0; r < r1; r++)
            for (int s = 0; s < r0; s++)
                A[r * C + s] = dot(c->Qa + (int64_t)(r - r0) * K, c->Ka + (int64_t)s * K, K);
        if (!D) continue;
        for (int r = r0; r < r1; r++) {
            for (int i = 0; i < K; i++) tmp[i] = 0;
            for (int s = 0; s < r0; s++) axpy(tmp, D[r * C + s], c->Ka + (int64_t)s * K, K);
            const real *ea = c->Ea + (int64_t)(r - r0) * K;
            real *dq = c->dqs + (int64_t)r * K;
            for (int i = 0; i < K; i++) dq[i] += ea[i] * tmp[i];
        }
        for (int s = 0; s < r0; s++) {
            for (int i = 0; i < K; i++) tmp[i] = 0;
            for (int r = r0; r < r1; r++) axpy(tmp, D[r * C + s], c->Qa + (int64_t)(r - r0) * K, K);
            const real *eb = c->Eb + (int64_t)s * K;
            real *dks = dk + (int64_t)s * K;
            for (int i = 0; i < K; i++) dks[i] += eb[i] * tmp[i];
        }
    }
}

// S = diag(exp(b_n)) S + sum_s kc_s v_s^T   (after chunk_load)
static void chunk_state(Chunk *c, const Seq *sq, int t0, int n, real *S) {
    int K = c->K, Dv = c->Dv;
    const real *ebn = c->eb + (int64_t)(n - 1) * K;
    for (int i = 0; i < K; i++) {
        real *Si = S + (int64_t)i * Dv;
        for (int j = 0; j < Dv; j++) Si[j] *= ebn[i];
        for (int s = 0; s < n; s++) axpy(Si, c->kc[(int64_t)s * K + i], sq->v + (t0 + s) * sq->sv, Dv);
    }
}

// o = the chunk's outputs, or o += them when acc (each row formed apart first, then added: one rounding)
static void chunk_fwd(Chunk *c, const Seq *sq, int t0, int n, real *S, real *o, int acc) {
    int K = c->K, Dv = c->Dv, C = c->C;
    chunk_load(c, sq, t0, n);
    chunk_intra(c, n, NULL);
    for (int r = 0; r < n; r++) {
        real *orow = o + (t0 + r) * sq->so, *out = acc ? c->row : orow;
        const real *qr = c->qs + (int64_t)r * K, *ebr = c->eb + (int64_t)r * K;
        for (int j = 0; j < Dv; j++) out[j] = 0;
        for (int i = 0; i < K; i++) axpy(out, qr[i] * ebr[i], S + (int64_t)i * Dv, Dv);
        for (int s = 0; s <= r; s++) axpy(out, c->A[r * C + s], sq->v + (t0 + s) * sq->sv, Dv);
        if (acc) for (int j = 0; j < Dv; j++) orow[j] += out[j];
    }
    chunk_state(c, sq, t0, n, S);
}

// Backward of one chunk from its entering state S0 and dS, the gradient wrt the state leaving it: writes dq
// (wrt q, not q~), dk, dg and dv of its rows (= or, when acc, +=), and turns dS into the gradient wrt S0.
// dg_j = sum_{t>=j} (q_t dq_t - k_t dk_t) (hgru_chunk_bwd): c->run carries the sum over the later chunks.
// dq and dk are formed in dqs and dks, which dg reads whatever acc says.
static void chunk_bwd(Chunk *c, const Seq *sq, int t0, int n, const real *S0, real *dS, const real *dout,
                      real *dq, real *dk, real *dg, real *dv, int64_t sdv, int acc) {
    int K = c->K, Dv = c->Dv, C = c->C;
    chunk_load(c, sq, t0, n);
    for (int r = 0; r < n; r++)
        for (int s = 0; s <= r; s++)
            c->D[r * C + s] = dot(dout + (t0 + r) * sq->so, sq->v + (t0 + s) * sq->sv, Dv);
    memset(c->dqs, 0, (size_t)n * K * sizeof(real));
    memset(c->dks, 0, (size_t)n * K * sizeof(real));
    chunk_intra(c, n, c->dks);
    // dq~_r += exp(b_r) (S0 do_r)
    for (int r = 0; r < n; r++) {
        const real *dor = dout + (t0 + r) * sq->so, *ebr = c->eb + (int64_t)r * K;
        real *dqr = c->dqs + (int64_t)r * K;
        for (int i = 0; i < K; i++) dqr[i] = (dqr[i] + ebr[i] * dot(S0 + (int64_t)i * Dv, dor, Dv)) * sq->scale;
    }
    const real *bn = c->b + (int64_t)(n - 1) * K, *ebn = c->eb + (int64_t)(n - 1) * K;
    for (int s = 0; s < n; s++) {
        const real *vs = sq->v + (t0 + s) * sq->sv, *kcs = c->kc + (int64_t)s * K, *bs = c->b + (int64_t)s * K;
        // dv_s = sum_{r>=s} A[r,s] do_r + dS^T kc_s
        real *dvo = dv + (t0 + s) * sdv, *dvs = acc ? c->row : dvo;
        for (int j = 0; j < Dv; j++) dvs[j] = 0;
        for (int r = s; r < n; r++) axpy(dvs, c->A[r * C + s], dout + (t0 + r) * sq->so, Dv);
        for (int i = 0; i < K; i++) axpy(dvs, kcs[i], dS + (int64_t)i * Dv, Dv);
        if (acc) for (int j = 0; j < Dv; j++) dvo[j] += dvs[j];
        // dk_s += exp(b_n - b_s) (dS v_s)
        real *dks = c->dks + (int64_t)s * K;
        for (int i = 0; i < K; i++) dks[i] = dks[i] + decay(bn[i] - bs[i]) * dot(dS + (int64_t)i * Dv, vs, Dv);
    }
    // dS_prev = diag(exp(b_n)) dS + sum_r (q~_r exp(b_r)) do_r^T
    for (int i = 0; i < K; i++) {
        real *dSi = dS + (int64_t)i * Dv;
        for (int j = 0; j < Dv; j++) dSi[j] *= ebn[i];
        for (int r = 0; r < n; r++)
            axpy(dSi, c->qs[(int64_t)r * K + i] * c->eb[(int64_t)r * K + i], dout + (t0 + r) * sq->so, Dv);
    }
    // dg's running sum over the chunk's rows, last first; then dq, dk, dg out
    real *run = c->run;
    for (int r = n - 1; r >= 0; r--) {
        const real *q = sq->q + (t0 + r) * sq->sqk, *k = sq->k + (t0 + r) * sq->sqk;
        const real *dqr = c->dqs + (int64_t)r * K, *dkr = c->dks + (int64_t)r * K;
        real *dqo = dq + (t0 + r) * sq->sqk, *dko = dk + (t0 + r) * sq->sqk, *dgo = dg + (t0 + r) * sq->sqk;
        for (int i = 0; i < K; i++) run[i] += q[i] * dqr[i] - k[i] * dkr[i];
        if (acc)
            for (int i = 0; i < K; i++) { dqo[i] += dqr[i]; dko[i] += dkr[i]; dgo[i] += run[i]; }
        else
            for (int i = 0; i < K; i++) { dqo[i] = dqr[i]; dko[i] = dkr[i]; dgo[i] = run[i]; }
    }
}

// The forward over B sequences of T steps laid out as seq_at says (per = 1: op_hgru_fwd; per = gw: the columns).
static void hgru_fwd_lines(real *o, real *ST, const real *q, const real *k, const real *g, const real *v,
                           int64_t ldv, const real *S0, int B, int T, int per, int H, int K, int Dv, int chunk,
                           int reverse, int acc) {
    int64_t KD = (int64_t)K * Dv;
    #pragma omp parallel
    {
        unsigned csr = ftz_begin();
        real *S = xmalloc((size_t)KD * sizeof(real));
        real *row = acc && chunk <= 0 ? xmalloc((size_t)Dv * sizeof(real)) : NULL;   // o_t before it is added
        Chunk c;
        // a chunk longer than the sequence is the sequence: size the buffers (C x C) by what is used
        if (chunk > 0) chunk_alloc(&c, chunk < T ? chunk : (T > 0 ? T : 1), K, Dv);
        #pragma omp for schedule(static)
        for (int bh = 0; bh < B * H; bh++) {
            int b = bh / H, h = bh % H;
            Seq sq = seq_at(q, k, g, v, ldv, b, h, T, per, H, K, Dv, reverse);
            real *ob = o + (sq.row * H + h) * Dv;
            // read S0 before anything is written: ST may be the same memory
            if (S0) memcpy(S, S0 + (int64_t)bh * KD, (size_t)KD * sizeof(real));
            else memset(S, 0, (size_t)KD * sizeof(real));
            if (chunk > 0)
                for (int t0 = 0; t0 < T; t0 += chunk)
                    chunk_fwd(&c, &sq, t0, T - t0 < chunk ? T - t0 : chunk, S, ob, acc);
            else
                for (int t = 0; t < T; t++) {
                    real *ot = ob + t * sq.so;
                    rec_step(&sq, S, S, t, NULL, acc ? row : ot);
                    if (acc) for (int j = 0; j < Dv; j++) ot[j] += row[j];
                }
            if (ST) memcpy(ST + (int64_t)bh * KD, S, (size_t)KD * sizeof(real));
        }
        if (chunk > 0) chunk_free(&c);
        free(S);
        free(row);
        ftz_end(csr);
    }
}

// One row i of a reverse step of the recurrence, fused into a single pass over the Dv columns:
//   row = a row + c do  (dS_t from dS_{t+1});  dv += k_i row;  returns Sc_i . do, row . v and row . Sp_i.
// (noinline: inlined into the large OpenMP body, gcc spills the partial sums to the stack.)
__attribute__((noinline))
static void rec_bwd_row(real *restrict row, const real *restrict Sc, const real *restrict Sp,
                        const real *restrict dor, const real *restrict v, real *restrict dv, real a, real c,
                        real ki, int Dv, real out[3]) {
    real aq[LANES] = {0}, ak[LANES] = {0}, ag[LANES] = {0}, tq = 0, tk = 0, tg = 0;
    int j0 = 0;
    for (; j0 + LANES <= Dv; j0 += LANES)
        for (int l = 0; l < LANES; l++) {
            int j = j0 + l;
            real r = a * row[j] + c * dor[j];
            row[j] = r;
            dv[j] += ki * r;
            aq[l] += Sc[j] * dor[j];
            ak[l] += r * v[j];
            ag[l] += r * Sp[j];
        }
    for (int j = j0; j < Dv; j++) {
        real r = a * row[j] + c * dor[j];
        row[j] = r;
        dv[j] += ki * r;
        tq += Sc[j] * dor[j];
        tk += r * v[j];
        tg += r * Sp[j];
    }
    out[0] = hsum(aq) + tq; out[1] = hsum(ak) + tk; out[2] = hsum(ag) + tg;
}

// Recurrent backward of one (b, h). S_{t-1} is needed at every step in reverse: the forward is rerun once
// keeping a checkpoint every seg ~ sqrt(T) steps, then each segment is recomputed from its checkpoint, so
// the states take O(sqrt(T) K Dv) memory rather than O(T K Dv). exp(g) is computed once into ag [T][K].
// fresh [3K + Dv], when not NULL: the step's dq, dk, dg and dv are formed there and then added to the outputs.
static void rec_bwd(const Seq *sq, const real *dout, real *dq, real *dk, real *dg, real *dv, int64_t sdv,
                    real *ck, real *buf, real *dS, real *ag, int seg, real *fresh) {
    int T = sq->T, K = sq->K, Dv = sq->Dv;
    int64_t KD = (int64_t)K * Dv;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < K; i++) ag[(int64_t)t * K + i] = decay(sq->g[t * sq->sqk + i]);
    memset(buf, 0, (size_t)KD * sizeof(real));
    for (int t = 0; t < T; t++) {
        if (t % seg == 0) memcpy(ck + (int64_t)(t / seg) * KD, buf, (size_t)KD * sizeof(real));
        rec_step(sq, buf, buf, t, ag + (int64_t)t * K, NULL);
    }
    memset(dS, 0, (size_t)KD * sizeof(real));
    for (int m = (T + seg - 1) / seg - 1; m >= 0; m--) {
        int t0 = m * seg, t1 = t0 + seg < T ? t0 + seg : T;
        // buf[u] = the state after step t0 + u - 1 (buf[0] enters step t0)
        memcpy(buf, ck + (int64_t)m * KD, (size_t)KD * sizeof(real));
        for (int t = t0; t < t1; t++)
            rec_step(sq, buf + (t - t0 + 1) * KD, buf + (t - t0) * KD, t, ag + (int64_t)t * K, NULL);
        for (int t = t1 - 1; t >= t0; t--) {
            const real *Sp = buf + (t - t0) * KD, *Sc = buf + (t - t0 + 1) * KD;
            const real *q = sq->q + t * sq->sqk, *k = sq->k + t * sq->sqk;
            const real *at = ag + (int64_t)t * K, *an = t + 1 < T ? at + K : NULL;
            const real *v = sq->v + t * sq->sv, *dor = dout + t * sq->so;
            real *dqt = dq + t * sq->sqk, *dkt = dk + t * sq->sqk, *dgt = dg + t * sq->sqk, *dvt = dv + t * sdv;
            if (fresh) { dqt = fresh; dkt = fresh + K; dgt = fresh + 2 * K; dvt = fresh + 3 * K; }
            for (int j = 0; j < Dv; j++) dvt[j] = 0;
            for (int i = 0; i < K; i++) {
                // dS_t = diag(exp(g_{t+1})) dS_{t+1} + q~_t do_t^T
                real d[3];
                rec_bwd_row(dS + (int64_t)i * Dv, Sc + (int64_t)i * Dv, Sp + (int64_t)i * Dv, dor, v, dvt,
                            an ? an[i] : 0, q[i] * sq->scale, k[i], Dv, d);
                dqt[i] = d[0] * sq->scale;
                dkt[i] = d[1];
                dgt[i] = at[i] * d[2];
            }
            if (fresh) {
                real *oq = dq + t * sq->sqk, *ok = dk + t * sq->sqk, *og = dg + t * sq->sqk, *ov = dv + t * sdv;
                for (int i = 0; i < K; i++) { oq[i] += dqt[i]; ok[i] += dkt[i]; og[i] += dgt[i]; }
                for (int j = 0; j < Dv; j++) ov[j] += dvt[j];
            }
        }
    }
}

// Chunked backward of one (b, h): the states entering every chunk first, then the chunks in reverse, each
// with its part of dg_j = sum_{t>=j} (q_t dq_t - k_t dk_t). That identity holds because, from a zero entering
// state, q_t and G_t = g_1 + ... + g_t enter every output only as q_t exp(G_t), and k_s only as k_s exp(-G_s).
static void hgru_chunk_bwd(Chunk *c, const Seq *sq, const real *dout, real *dq, real *dk, real *dg, real *dv,
                           int64_t sdv, real *states, real *dS, int acc) {
    int T = sq->T, K = sq->K, C = c->C;
    int64_t KD = (int64_t)K * sq->Dv;
    int nc = (T + C - 1) / C;
    memset(states, 0, (size_t)KD * sizeof(real));
    for (int ci = 0; ci + 1 < nc; ci++) {
        memcpy(states + (ci + 1) * KD, states + ci * KD, (size_t)KD * sizeof(real));
        chunk_load(c, sq, ci * C, C);
        chunk_state(c, sq, ci * C, C, states + (ci + 1) * KD);
    }
    memset(dS, 0, (size_t)KD * sizeof(real));
    memset(c->run, 0, (size_t)K * sizeof(real));
    for (int ci = nc - 1; ci >= 0; ci--) {
        int t0 = ci * C, n = T - t0 < C ? T - t0 : C;
        chunk_bwd(c, sq, t0, n, states + ci * KD, dS, dout, dq, dk, dg, dv, sdv, acc);
    }
}

// The backward over B sequences of T steps laid out as seq_at says.
static void hgru_bwd_lines(real *dq, real *dk, real *dg, real *dv, int64_t lddv, const real *dout,
                           const real *q, const real *k, const real *g, const real *v, int64_t ldv,
                           int B, int T, int per, int H, int K, int Dv, int chunk, int reverse, int acc) {
    if (T <= 0) return;
    int64_t KD = (int64_t)K * Dv;
    int seg = (int)ceil(sqrt((double)T));
    #pragma omp parallel
    {
        unsigned csr = ftz_begin();
        Chunk c;
        real *st, *dS, *ag = NULL, *fresh = NULL;
        if (chunk > 0) {
            chunk_alloc(&c, chunk < T ? chunk : T, K, Dv);
            st = xmalloc((size_t)(((T + chunk - 1) / chunk + 1) * KD) * sizeof(real));
        } else {
            st = xmalloc((size_t)(((T + seg - 1) / seg + seg + 2) * KD) * sizeof(real));
            ag = xmalloc((size_t)T * K * sizeof(real));
            if (acc) fresh = xmalloc((size_t)(3 * K + Dv) * sizeof(real));
        }
        dS = xmalloc((size_t)KD * sizeof(real));
        #pragma omp for schedule(static)
        for (int bh = 0; bh < B * H; bh++) {
            int b = bh / H, h = bh % H;
            Seq sq = seq_at(q, k, g, v, ldv, b, h, T, per, H, K, Dv, reverse);
            int64_t row = sq.row, qk0 = (row * H + h) * K, sdv = sq.rstep * lddv;
            const real *dob = dout + (row * H + h) * Dv;
            real *dvb = dv + row * lddv + (int64_t)h * Dv;
            if (chunk > 0)
                hgru_chunk_bwd(&c, &sq, dob, dq + qk0, dk + qk0, dg + qk0, dvb, sdv, st, dS, acc);
            else
                rec_bwd(&sq, dob, dq + qk0, dk + qk0, dg + qk0, dvb, sdv, st,
                        st + (int64_t)((T + seg - 1) / seg) * KD, dS, ag, seg, fresh);
        }
        if (chunk > 0) chunk_free(&c);
        free(st);
        free(dS);
        free(ag);
        free(fresh);
        ftz_end(csr);
    }
}

void op_hgru_fwd(real *o, real *ST, const real *q, const real *k, const real *g, const real *v, int64_t ldv,
                 const real *S0, int B, int T, int H, int K, int Dv, int chunk, int reverse, int acc) {
    hgru_fwd_lines(o, ST, q, k, g, v, ldv, S0, B, T, 1, H, K, Dv, chunk, reverse, acc);
}

void op_hgru_step_fwd(real *o, real *S, real *q, real *k, real *g, const real *qfi, int64_t ld, const real *lb,
                      int B, int H, int K, int Dv) {
    const int HK = H * K;
    op_gates_fwd(q, k, g, qfi, ld, lb, B, HK);
    op_hgru_fwd(o, S, q, k, g, qfi + 2 * HK, ld, S, B, 1, H, K, Dv, 0, 0, 0);
}

void op_hgru_bwd(real *dq, real *dk, real *dg, real *dv, int64_t lddv, const real *dout,
                 const real *q, const real *k, const real *g, const real *v, int64_t ldv,
                 int B, int T, int H, int K, int Dv, int chunk, int reverse, int acc) {
    hgru_bwd_lines(dq, dk, dg, dv, lddv, dout, q, k, g, v, ldv, B, T, 1, H, K, Dv, chunk, reverse, acc);
}

// The columns of S images of gh x gw: S gw sequences of gh steps, gw of them interleaved per image.
void op_hgru_cols_fwd(real *o, const real *q, const real *k, const real *g, const real *v, int64_t ldv,
                      int S, int gh, int gw, int H, int K, int Dv, int chunk, int reverse, int acc) {
    if (S <= 0 || gw <= 0) return;
    hgru_fwd_lines(o, NULL, q, k, g, v, ldv, NULL, S * gw, gh, gw, H, K, Dv, chunk, reverse, acc);
}

void op_hgru_cols_bwd(real *dq, real *dk, real *dg, real *dv, int64_t lddv, const real *dout,
                      const real *q, const real *k, const real *g, const real *v, int64_t ldv,
                      int S, int gh, int gw, int H, int K, int Dv, int chunk, int reverse, int acc) {
    if (S <= 0 || gw <= 0) return;
    hgru_bwd_lines(dq, dk, dg, dv, lddv, dout, q, k, g, v, ldv, S * gw, gh, gw, H, K, Dv, chunk, reverse, acc);
}

// Every head shape reads columns in place on the CPU.
int op_hgru_cols_direct(int K, int Dv) { (void)K; (void)Dv; return 1; }

// ---------------------------------------------------------------------------------------------------------
// HGRN1: the element-wise recurrence and the gated RMSNorm
// ---------------------------------------------------------------------------------------------------------
// One worker per (sequence, block of COLBLK channels): the channels are independent, and a block's inner loop
// runs over contiguous columns, which gcc vectorises. The state lives in a block-sized array; scan step s is
// position s, or T - 1 - s in reverse. Flush-to-zero as in the HGRU2 recurrence (decays underflow).
void op_hgrn_fwd(real *o, real *hT, const real *q, const real *k, const real *g, const real *h0, int B, int T, int D,
                 int reverse, int acc) {
    const int nblk = (D + COLBLK - 1) / COLBLK;
    #pragma omp parallel for schedule(static)
    for (int64_t w = 0; w < (int64_t)B * nblk; w++) {
        const int64_t b = w / nblk;
        const int c0 = (int)(w % nblk) * COLBLK, c1 = c0 + COLBLK < D ? c0 + COLBLK : D;
        unsigned csr = ftz_begin();
        const int64_t base = b * T * D;
        real h[COLBLK];
        for (int c = c0; c < c1; c++) h[c - c0] = h0 ? h0[b * D + c] : 0;
        for (int s = 0; s < T; s++) {
            const int64_t r = base + (int64_t)(reverse ? T - 1 - s : s) * D;
            if (s || h0) for (int c = c0; c < c1; c++) h[c - c0] = decay(g[r + c]) * h[c - c0] + q[r + c] * k[r + c];
            else         for (int c = c0; c < c1; c++) h[c - c0] = q[r + c] * k[r + c];
            if (acc) for (int c = c0; c < c1; c++) o[r + c] += h[c - c0];
            else     for (int c = c0; c < c1; c++) o[r + c] = h[c - c0];
        }
        // written after the scan: hT may be h0, which the first step read
        if (hT) for (int c = c0; c < c1; c++) hT[b * D + c] = h[c - c0];
        ftz_end(csr);
    }
}

// The scan run back from the last step with the carry exp(g) dh of the step after, per channel in a
// block-sized array; h of the step before is o of the position before it in the scan's order.
void op_hgrn_bwd(real *dq, real *dk, real *dg, const real *dout, const real *q, const real *k, const real *g,
                 const real *o, int B, int T, int D, int reverse, int acc) {
    const int nblk = (D + COLBLK - 1) / COLBLK;
    const int64_t back = reverse ? D : -(int64_t)D;   // from a position's row to that of the scan's step before
    #pragma omp parallel for schedule(static)
    for (int64_t w = 0; w < (int64_t)B * nblk; w++) {
        const int64_t b = w / nblk;
        const int c0 = (int)(w % nblk) * COLBLK, c1 = c0 + COLBLK < D ? c0 + COLBLK : D;
        unsigned csr = ftz_begin();
        real carry[COLBLK] = {0};
        const int64_t base = b * T * D;
        for (int s = T - 1; s >= 0; s--) {
            const int64_t r = base + (int64_t)(reverse ? T - 1 - s : s) * D;
            for (int c = c0; c < c1; c++) {
                real dh = dout[r + c] + carry[c - c0], a = decay(g[r + c]);
                const real vq = dh * k[r + c], vk = dh * q[r + c], vg = s ? dh * a * o[r + back + c] : 0;   // zero entering state
                if (acc) { dq[r + c] += vq; dk[r + c] += vk; dg[r + c] += vg; }
                else     { dq[r + c] = vq;  dk[r + c] = vk;  dg[r + c] = vg; }
                carry[c - c0] = a * dh;
            }
        }
        ftz_end(csr);
    }
}

// swish(z) and its derivative sigmoid(z) (1 + z sigmoid(-z)), the latter without cancellation.
static inline void swish2(real z, real *sw, real *dsw) {
    real s, sn;
    sigmoid2(z, &s, &sn);
    *sw = z * s;
    *dsw = s * (1 + z * sn);
}

void op_rmsnorm_gated_fwd(opnd *y, real *rstd, const real *x, const real *z, int64_t ldz, const real *w, int64_t N,
                          int C, double eps) {
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const real *xr = x + n * C, *zr = z + n * ldz;
        real *yr = (real *)y + n * C;
        real r = (real)rms_rstd(xr, C, eps);
        for (int c = 0; c < C; c++) { real sw, dsw; swish2(zr[c], &sw, &dsw); yr[c] = xr[c] * r * w[c] * sw; }
        if (rstd) rstd[n] = r;
    }
}

// y = (x r w) swish(z): with u = dy swish(z), the plain norm's gradients of u (op_rmsnorm_bwd) for x and w, and
// dz = dy x r w swish'(z).
void op_rmsnorm_gated_bwd(real *dx, real *dz, int64_t lddz, real *dw, const real *dy, const real *x, const real *z,
                          int64_t ldz, const real *w, const real *rstd, int64_t N, int C, double eps) {
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const real *xr = x + n * C, *dyr = dy + n * C, *zr = z + n * ldz;
        real *dxr = dx + n * C, *dzr = dz + n * lddz;
        real r = rstd ? rstd[n] : (real)rms_rstd(xr, C, eps);
        double s = 0;   // sum of w u x, in double in column order
        for (int c = 0; c < C; c++) {
            real sw, dsw;
            swish2(zr[c], &sw, &dsw);
            s += (double)(w[c] * (dyr[c] * sw)) * xr[c];
            dzr[c] = dyr[c] * xr[c] * r * w[c] * dsw;
        }
        real coef = (real)s * r * r * r / C;
        for (int c = 0; c < C; c++) {
            real sw, dsw;
            swish2(zr[c], &sw, &dsw);
            dxr[c] = r * (w[c] * (dyr[c] * sw)) - coef * xr[c];
        }
    }
    if (dw) {
        // per column block, rows in order (see op_embed_bwd)
        #pragma omp parallel for schedule(static)
        for (int c0 = 0; c0 < C; c0 += COLBLK) {
            int c1 = c0 + COLBLK < C ? c0 + COLBLK : C;
            for (int64_t n = 0; n < N; n++) {
                const real *xr = x + n * C, *dyr = dy + n * C, *zr = z + n * ldz;
                real r = rstd ? rstd[n] : (real)rms_rstd(xr, C, eps);
                for (int c = c0; c < c1; c++) {
                    real sw, dsw;
                    swish2(zr[c], &sw, &dsw);
                    dw[c] += dyr[c] * sw * xr[c] * r;
                }
            }
        }
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
