// cuda/norms_cls.cuh: the per-channel ops of the classification model: biases, LayerNorm, BatchNorm, and the
// deterministic column sums in double that they share. The formulas and roundings are cpu_cls.c's.
#pragma once
#include "reduce.cuh"

// ---------------------------------------------------------------------------------------------------------
// column sums over rows in double, deterministic
// ---------------------------------------------------------------------------------------------------------
// A partial kernel runs on col_launch's grid, one thread per (chunk of CLS_ROWS rows, column): each thread sums
// its column over the chunk's rows in row order, in double, into part[chunk, column]. The partials of a column
// are then added in a fixed order by cls_colsum. Double, because these sums run over every position of a batch
// (2^18 rows and more) and feed statistics (BatchNorm) as well as gradients.
#define CLS_ROWS 64
#define CLS_COLS 128
#define CLS_SLICES 32
#define CLS_RUN 8   // partials a thread adds in the first pass of cls_colsum, at most

static unsigned cls_chunks(int64_t N) { return (unsigned)((N + CLS_ROWS - 1) / CLS_ROWS); }

// Sums part[j * ld + c] over the group's partials j for c < W. The grid's y splits the np partials into
// gridDim.y groups of consecutive partials; a block's CLS_SLICES warps each add a fixed run of its group in
// order, then the first warp adds the runs in order. ADD 1 (one group): outf[c] += (float)sum; ADD 0:
// outd[group * W + c] = sum.
template <bool ADD>
__global__ void cls_colsum_kernel(float *__restrict__ outf, double *__restrict__ outd, const double *__restrict__ part,
                                  int64_t np, int W, int64_t ld) {
    __shared__ double run[CLS_SLICES][32];
    const int lane = threadIdx.x & 31, sl = threadIdx.x >> 5, c = blockIdx.x * 32 + lane;
    const int64_t pg = (np + gridDim.y - 1) / gridDim.y, g0 = blockIdx.y * pg, g1 = g0 + pg < np ? g0 + pg : np;
    const int64_t per = (pg + CLS_SLICES - 1) / CLS_SLICES, j0 = g0 + sl * per, j1 = j0 + per < g1 ? j0 + per : g1;
    double s = 0;
    if (c < W)
        for (int64_t j = j0; j < j1; j++) s += part[j * ld + c];
    run[sl][lane] = s;
    __syncthreads();
    if (sl == 0 && c < W) {
        double t = 0;
        for (int k = 0; k < CLS_SLICES; k++) t += run[k][lane];
        if (ADD) outf[c] += (float)t;
        else outd[(int64_t)blockIdx.y * W + c] = t;
    }
}

// The groups of the first pass over np partials: a pass over all of them in one group of 32 blocks' worth of
// warps would leave a handful of blocks waiting on long chains of loads (4,096 partials for a ListOps batch).
static unsigned cls_groups(int64_t np) { return (unsigned)((np + CLS_SLICES * CLS_RUN - 1) / (CLS_SLICES * CLS_RUN)); }
// Doubles of the temporary a sum of np partials of W columns needs (the first pass's group sums).
static size_t cls_colsum_tmp(int64_t np, int W) { return cls_groups(np) > 1 ? (size_t)cls_groups(np) * W : 1; }

// The column sums of part (np partials of W columns, ld apart) into outf (added) or outd (written); tmp holds
// cls_colsum_tmp(np, W) doubles. Two passes when there are many partials: the groups, then their sums in order.
static void cls_colsum(float *outf, double *outd, const double *part, int64_t np, int W, int64_t ld, double *tmp) {
    const unsigned G = cls_groups(np), cb = (unsigned)((W + 31) / 32);
    if (G > 1) {
        cls_colsum_kernel<false><<<dim3(cb, G), 32 * CLS_SLICES, 0, g_stream>>>(NULL, tmp, part, np, W, ld);
        LAUNCH_CHECK("cls_colsum_groups");
        part = tmp;
        np = G;
        ld = W;
    }
    if (outf) cls_colsum_kernel<true><<<cb, 32 * CLS_SLICES, 0, g_stream>>>(outf, NULL, part, np, W, ld);
    else cls_colsum_kernel<false><<<cb, 32 * CLS_SLICES, 0, g_stream>>>(NULL, outd, part, np, W, ld);
    LAUNCH_CHECK("cls_colsum");
}

// ---------------------------------------------------------------------------------------------------------
// biases
// ---------------------------------------------------------------------------------------------------------
// The elementwise kernels of this file take V = 4 consecutive columns a thread when every row allows it (C a
// multiple of 4, rows aligned: vec4_rows), else one; the arithmetic is the same either way.
template <int V, typename T>
__global__ void bias_add_kernel(T *__restrict__ y, const float *__restrict__ b, int64_t N, int C) {
    ROWS_COLS(n, j, N, C / V) {
        T *p = y + n * C + j * V;
        float v[V], bb[V];
        loadv<V>(p, v);
        loadv<V>(b + j * V, bb);
#pragma unroll
        for (int e = 0; e < V; e++) v[e] += bb[e];
        storev<V>(p, v);
    }
}

// Whether row n exists (RowMask, common.h): a 32-bit division where n allows (a 64-bit one is several times
// the instructions, and the elementwise passes make one a thread)
__device__ __forceinline__ bool row_in_d(const RowMask &r, int64_t n) {
    if (!r.ext) return true;
    if (n <= 0x7fffffff) {
        const uint32_t u = (uint32_t)n, s = u / (uint32_t)r.T;
        return (int)(u - s * (uint32_t)r.T) < r.ext[s];
    }
    return n % r.T < r.ext[n / r.T];
}

// Rows n0, n0 + 1, ... of a RowMask in order, for the partial kernels: one division at the start, then a
// counter; a sequence's extent is read as the walk enters it. in(): whether the current row exists. A row
// that does not exist is still loaded and its term replaced by +0.0, which leaves a sum's bits as skipping it
// would (the sums start at +0.0 and so are never -0.0), and keeps the loads unconditional.
struct RowWalk {
    const int32_t *ext;
    int64_t s, ns;   // the current sequence, the number of sequences
    int T, t, e;     // positions per sequence, the current row's position, the current sequence's extent
    __device__ __forceinline__ RowWalk(const RowMask &r, int64_t n0, int64_t N) : ext(r.ext), T(r.T) {
        if (ext) {
            s = n0 / T;
            ns = (N + T - 1) / T;
            t = (int)(n0 - s * T);
            e = ext[s];
        } else {
            s = ns = 0;
            t = 0;
            e = 1;
        }
    }
    __device__ __forceinline__ bool in() const { return t < e; }
    __device__ __forceinline__ void next() {
        if (!ext) return;
        if (++t == T) {
            t = 0;
            e = ++s < ns ? ext[s] : 0;
        }
    }
    // whether rows [n0, n0 + rows) hold none that exists (only said where they lie in one sequence)
    __device__ __forceinline__ bool none(int rows) const { return ext && t >= e && t + rows <= T; }
};

// Partial kernels: the chunk's rows in order, a few loads in flight
#define CLS_PART(j, c, n0, n1)                                                   \
    COL_CHUNK(j, c);                                                             \
    const int64_t n0 = j * CLS_ROWS, n1 = n0 + CLS_ROWS < N ? n0 + CLS_ROWS : N; \
    if (c >= C || n0 >= N) return

template <typename T>
__global__ void bias_part_kernel(double *__restrict__ part, const T *__restrict__ dy, int64_t N, int C) {
    CLS_PART(j, c, n0, n1);
    double s = 0;
#pragma unroll 8
    for (int64_t n = n0; n < n1; n++) s += ld1(dy + n * C + c);
    part[j * C + c] = s;
}

// ---------------------------------------------------------------------------------------------------------
// LayerNorm: one warp per row, the row read from global memory (the second and third reads hit the cache)
// ---------------------------------------------------------------------------------------------------------
#define LN_WARPS 8   // rows (warps) per block

// Statistics in double, two passes (the mean, then the mean square deviation from it), as cpu_cls.c. With res,
// x += res first and the sum is written back; each lane reads back only what it wrote.
template <typename T>
__global__ void layernorm_fwd_kernel(T *__restrict__ y, float *__restrict__ mean, float *__restrict__ rstd,
                                     float *__restrict__ x, const float *__restrict__ res, const float *__restrict__ w,
                                     const float *__restrict__ b, int64_t N, int C, double eps) {
    const int64_t row = (int64_t)blockIdx.x * LN_WARPS + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= N) return;   // the whole warp
    float *xr = x + row * C;
    double s = 0;
    if (res) {
        const float *rr = res + row * C;
        for (int c = lane; c < C; c += 32) {
            const float v = xr[c] + rr[c];
            xr[c] = v;
            s += v;
        }
    } else {
        for (int c = lane; c < C; c += 32) s += xr[c];
    }
    const double m = warp_sum_d(s) / C;
    double q = 0;
    for (int c = lane; c < C; c += 32) {
        const double d = xr[c] - m;
        q += d * d;
    }
    const double var = warp_sum_d(q) / C;
    const float mf = (float)m, r = (float)(1.0 / sqrt(var + eps));
    T *yr = y + row * C;
    for (int c = lane; c < C; c += 32) put(yr + c, (xr[c] - mf) * r * w[c] + b[c]);
    if (lane == 0) {
        if (mean) mean[row] = mf;
        if (rstd) rstd[row] = r;
    }
}

// dx = rstd (g - mean(g) - xh mean(g xh)), g = w dy, xh = (x - mean) rstd; the row sums in double
__global__ void layernorm_bwd_dx_kernel(float *dx, int acc, const float *__restrict__ dy, const float *__restrict__ x,
                                        const float *__restrict__ w, const float *__restrict__ mean,
                                        const float *__restrict__ rstd, int64_t N, int C) {
    const int64_t row = (int64_t)blockIdx.x * LN_WARPS + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= N) return;
    const float *xr = x + row * C, *dyr = dy + row * C;
    const float m = mean[row], r = rstd[row];
    double s1 = 0, s2 = 0;
    for (int c = lane; c < C; c += 32) {
        const float g = w[c] * dyr[c], xh = (xr[c] - m) * r;
        s1 += g;
        s2 += (double)g * xh;
    }
    const float a1 = (float)(warp_sum_d(s1) / C), a2 = (float)(warp_sum_d(s2) / C);
    float *dxr = dx + row * C;
    for (int c = lane; c < C; c += 32) {
        const float xh = (xr[c] - m) * r, t = r * (w[c] * dyr[c] - a1 - xh * a2);
        dxr[c] = acc ? dxr[c] + t : t;
    }
}

// The dw and db partials of both norms: part[chunk, c] = sum dy xh, part[chunk, C + c] = sum dy over the chunk's
// rows, xh = (x - mean) rstd with the statistics per row (LayerNorm) or per column (BatchNorm).
template <bool PER_ROW>
__global__ void norm_wb_part_kernel(double *__restrict__ part, const float *__restrict__ dy,
                                    const float *__restrict__ x, const float *__restrict__ mean,
                                    const float *__restrict__ rstd, int64_t N, int C, RowMask rows) {
    CLS_PART(j, c, n0, n1);
    const float mc = PER_ROW ? 0.f : mean[c], rc = PER_ROW ? 0.f : rstd[c];
    double sw = 0, sb = 0;
    RowWalk w(rows, n0, N);
    if (!w.none((int)(n1 - n0))) {
#pragma unroll 8
        for (int64_t n = n0; n < n1; n++, w.next()) {
            const float m = PER_ROW ? mean[n] : mc, r = PER_ROW ? rstd[n] : rc;
            const float d = dy[n * C + c], xh = (x[n * C + c] - m) * r;
            const bool in = w.in();
            sw += in ? (double)d * xh : 0.0;
            sb += in ? d : 0.f;
        }
    }
    part[j * 2 * C + c] = sw;
    part[j * 2 * C + C + c] = sb;
}

// ---------------------------------------------------------------------------------------------------------
// BatchNorm: column sums for the statistics (two passes: sums, then squared deviations from the mean), a
// per-channel kernel for the statistics and the running averages, then the elementwise pass
// ---------------------------------------------------------------------------------------------------------
// part[chunk, c] = sum of x over the rows that exist (after x += res, written back at every row, when res is
// given)
__global__ void bn_sum_part_kernel(double *__restrict__ part, float *__restrict__ x, const float *__restrict__ res,
                                   int64_t N, int C, RowMask rows) {
    CLS_PART(j, c, n0, n1);
    double s = 0;
    RowWalk w(rows, n0, N);
    if (res || !w.none((int)(n1 - n0))) {
#pragma unroll 8
        for (int64_t n = n0; n < n1; n++, w.next()) {
            float v = x[n * C + c];
            if (res) {
                v += res[n * C + c];
                x[n * C + c] = v;
            }
            s += w.in() ? v : 0.f;
        }
    }
    part[j * C + c] = s;
}

// part[chunk, c] = sum of (x - mean)^2 in double over the rows that exist, mean = sums[c] / nin
__global__ void bn_dev_part_kernel(double *__restrict__ part, const float *__restrict__ x,
                                   const double *__restrict__ sums, int64_t N, int C, RowMask rows, int64_t nin) {
    CLS_PART(j, c, n0, n1);
    const double m = sums[c] / nin;
    double q = 0;
    RowWalk w(rows, n0, N);
    if (!w.none((int)(n1 - n0))) {
#pragma unroll 8
        for (int64_t n = n0; n < n1; n++, w.next()) {
            const double d = x[n * C + c] - m;
            q += w.in() ? d * d : 0.0;
        }
    }
    part[j * C + c] = q;
}

// Training: the statistics from the sums over the N rows counted, saved, and the running averages (the variance
// unbiased). The elementwise pass reads the mean and rstd from mr, rr.
__global__ void bn_stats_kernel(float *__restrict__ mr, float *__restrict__ rr, float *__restrict__ mean,
                                float *__restrict__ rstd, float *__restrict__ run_mean, float *__restrict__ run_var,
                                const double *__restrict__ sums, const double *__restrict__ devs, int64_t N, int C,
                                double eps, double momentum) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const double m = sums[c] / N, var = devs[c] / N;
    const float mf = (float)m, r = (float)(1.0 / sqrt(var + eps));
    mr[c] = mf;
    rr[c] = r;
    if (mean) mean[c] = mf;
    if (rstd) rstd[c] = r;
    if (run_mean) run_mean[c] = (float)((1 - momentum) * run_mean[c] + momentum * m);
    if (run_var) run_var[c] = (float)((1 - momentum) * run_var[c] + momentum * (var * N / (N - 1)));
}

// Eval: the running statistics
__global__ void bn_eval_stats_kernel(float *__restrict__ mr, float *__restrict__ rr, const float *__restrict__ run_mean,
                                     const float *__restrict__ run_var, int C, double eps) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    mr[c] = run_mean[c];
    rr[c] = (float)(1.0 / sqrt((double)run_var[c] + eps));
}

// y = (x - mr) rr w + b; with res (eval: the training path added it in the sums' pass), x += res first
template <int V, typename T>
__global__ void bn_apply_kernel(T *__restrict__ y, float *__restrict__ x, const float *__restrict__ res,
                                const float *__restrict__ mr, const float *__restrict__ rr, const float *__restrict__ w,
                                const float *__restrict__ b, int64_t N, int C) {
    ROWS_COLS(n, j, N, C / V) {
        const int64_t i = n * C + j * V;
        const int c = j * V;
        float v[V], m[V], r[V], ww[V], bb[V], o[V];
        loadv<V>(x + i, v);
        if (res) {
            float t[V];
            loadv<V>(res + i, t);
#pragma unroll
            for (int e = 0; e < V; e++) v[e] += t[e];
            storev<V>(x + i, v);
        }
        loadv<V>(mr + c, m);
        loadv<V>(rr + c, r);
        loadv<V>(w + c, ww);
        loadv<V>(b + c, bb);
#pragma unroll
        for (int e = 0; e < V; e++) o[e] = (v[e] - m[e]) * r[e] * ww[e] + bb[e];
        storev<V>(y + i, o);
    }
}

// The backward's per-channel step: dw += sum dy xh, db += sum dy; the coefficients of dx:
// a = w rstd, k1 = mean_n(dy), k2 = mean_n(dy xh), the means over the N rows counted
__global__ void bn_bwd_coef_kernel(float *__restrict__ coef, float *__restrict__ dw, float *__restrict__ db,
                                   const double *__restrict__ sums, const float *__restrict__ w,
                                   const float *__restrict__ rstd, int64_t N, int C) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const double sx = sums[c], sy = sums[C + c];
    if (dw) dw[c] += (float)sx;
    if (db) db[c] += (float)sy;
    coef[c] = w[c] * rstd[c];
    coef[C + c] = (float)(sy / N);
    coef[2 * C + c] = (float)(sx / N);
}

template <int V>
__global__ void bn_bwd_dx_kernel(float *dx, int acc, const float *__restrict__ dy, const float *__restrict__ x,
                                 const float *__restrict__ mean, const float *__restrict__ rstd,
                                 const float *__restrict__ coef, int64_t N, int C, RowMask rows) {
    ROWS_COLS(n, j, N, C / V) {
        const int64_t i = n * C + j * V;
        const int c = j * V;
        float xv[V], d[V], m[V], r[V], a[V], k1[V], k2[V], t[V];
        loadv<V>(x + i, xv);
        loadv<V>(dy + i, d);
        loadv<V>(mean + c, m);
        loadv<V>(rstd + c, r);
        loadv<V>(coef + c, a);
        loadv<V>(coef + C + c, k1);
        loadv<V>(coef + 2 * C + c, k2);
#pragma unroll
        for (int e = 0; e < V; e++) {
            const float xh = (xv[e] - m[e]) * r[e];
            t[e] = a[e] * (d[e] - k1[e] - xh * k2[e]);
        }
        if (!row_in_d(rows, n))
#pragma unroll
            for (int e = 0; e < V; e++) t[e] = 0.f;
        if (acc) {
            float o[V];
            loadv<V>(dx + i, o);
#pragma unroll
            for (int e = 0; e < V; e++) t[e] = o[e] + t[e];
        }
        storev<V>(dx + i, t);
    }
}

// ---------------------------------------------------------------------------------------------------------
// launchers
// ---------------------------------------------------------------------------------------------------------
template <typename T> static void bias_add_as(T *y, const float *b, int64_t N, int C) {
    if (vec4_rows(y, C) && al(b, 16)) {
        const Launch2D rl = rows_launch(N, C / 4);
        bias_add_kernel<4><<<rl.grid, rl.block, 0, g_stream>>>(y, b, N, C);
    } else {
        const Launch2D rl = rows_launch(N, C);
        bias_add_kernel<1><<<rl.grid, rl.block, 0, g_stream>>>(y, b, N, C);
    }
}

extern "C" void cuda_bias_add(float *y, const float *b, int64_t N, int C) {
    if (N <= 0 || C <= 0) return;
    bias_add_as(y, b, N, C);
    LAUNCH_CHECK("bias_add");
}

extern "C" void cuda_bias_add_opnd(void *y, const float *b, int64_t N, int C) {
    if (N <= 0 || C <= 0) return;
    if (opnd_bf16()) bias_add_as((bf16 *)y, b, N, C);
    else bias_add_as((float *)y, b, N, C);
    LAUNCH_CHECK("bias_add_opnd");
}

template <typename T> static void bias_bwd_as(float *db, const T *dy, int64_t N, int C) {
    const unsigned nch = cls_chunks(N);
    Carve cv = {scratch(align256((size_t)nch * C * sizeof(double)) + align256(cls_colsum_tmp(nch, C) * sizeof(double)))};
    double *part = cv.take<double>((size_t)nch * C), *tmp = cv.take<double>(cls_colsum_tmp(nch, C));
    const Launch2D cl = col_launch(nch, C, CLS_COLS);
    bias_part_kernel<<<cl.grid, cl.block, 0, g_stream>>>(part, dy, N, C);
    LAUNCH_CHECK("bias_part");
    cls_colsum(db, NULL, part, nch, C, C, tmp);
}

extern "C" void cuda_bias_bwd(float *db, const float *dy, int64_t N, int C) {
    if (N <= 0 || C <= 0) return;
    bias_bwd_as(db, dy, N, C);
}

extern "C" void cuda_bias_bwd_opnd(float *db, const void *dy, int64_t N, int C) {
    if (N <= 0 || C <= 0) return;
    if (opnd_bf16()) bias_bwd_as(db, (const bf16 *)dy, N, C);
    else bias_bwd_as(db, (const float *)dy, N, C);
}

extern "C" void cuda_layernorm_fwd(void *y, float *mean, float *rstd, float *x, const float *res, const float *w,
                                   const float *b, int64_t N, int C, double eps) {
    if (N <= 0 || C <= 0) return;
    const unsigned nb = (unsigned)((N + LN_WARPS - 1) / LN_WARPS);
    if (opnd_bf16())
        layernorm_fwd_kernel<<<nb, 32 * LN_WARPS, 0, g_stream>>>((bf16 *)y, mean, rstd, x, res, w, b, N, C, eps);
    else layernorm_fwd_kernel<<<nb, 32 * LN_WARPS, 0, g_stream>>>((float *)y, mean, rstd, x, res, w, b, N, C, eps);
    LAUNCH_CHECK("layernorm_fwd");
}

extern "C" void cuda_layernorm_bwd(float *dx, int acc, float *dw, float *db, const float *dy, const float *x,
                                   const float *w, const float *mean, const float *rstd, int64_t N, int C) {
    if (N <= 0 || C <= 0) return;
    if (dx) {
        layernorm_bwd_dx_kernel<<<(unsigned)((N + LN_WARPS - 1) / LN_WARPS), 32 * LN_WARPS, 0, g_stream>>>(
            dx, acc, dy, x, w, mean, rstd, N, C);
        LAUNCH_CHECK("layernorm_bwd_dx");
    }
    if (dw || db) {
        const unsigned nch = cls_chunks(N);
        Carve cv = {scratch(align256((size_t)nch * 2 * C * sizeof(double)) +
                            align256(cls_colsum_tmp(nch, C) * sizeof(double)))};
        double *part = cv.take<double>((size_t)nch * 2 * C), *tmp = cv.take<double>(cls_colsum_tmp(nch, C));
        const Launch2D cl = col_launch(nch, C, CLS_COLS);
        norm_wb_part_kernel<true><<<cl.grid, cl.block, 0, g_stream>>>(part, dy, x, mean, rstd, N, C, rows_all());
        LAUNCH_CHECK("layernorm_wb_part");
        if (dw) cls_colsum(dw, NULL, part, nch, C, 2 * (int64_t)C, tmp);
        if (db) cls_colsum(db, NULL, part + C, nch, C, 2 * (int64_t)C, tmp);
    }
}

template <typename T>
static void bn_apply_as(T *y, float *x, const float *res, const float *mr, const float *rr, const float *w,
                        const float *b, int64_t N, int C) {
    if (vec4_rows(y, C) && vec4_rows(x, C) && (!res || vec4_rows(res, C)) && al(w, 16) && al(b, 16)) {
        const Launch2D rl = rows_launch(N, C / 4);   // (mr and rr are carved 256-byte aligned)
        bn_apply_kernel<4><<<rl.grid, rl.block, 0, g_stream>>>(y, x, res, mr, rr, w, b, N, C);
    } else {
        const Launch2D rl = rows_launch(N, C);
        bn_apply_kernel<1><<<rl.grid, rl.block, 0, g_stream>>>(y, x, res, mr, rr, w, b, N, C);
    }
}

extern "C" void cuda_batchnorm_fwd(void *y, float *mean, float *rstd, float *run_mean, float *run_var, float *x,
                                   const float *res, const float *w, const float *b, int64_t N, int C, RowMask rows,
                                   double eps, double momentum, int train) {
    const int64_t nin = rows_in(rows, N);   // the rows counted in the statistics
    if (train && nin < 2)
        die("BatchNorm in training needs at least 2 positions per channel, got %lld", (long long)nin);
    if (N <= 0 || C <= 0) return;
    const unsigned nch = cls_chunks(N);
    Carve cv = {scratch(align256((size_t)nch * C * sizeof(double)) + 2 * align256((size_t)C * sizeof(double)) +
                        align256(cls_colsum_tmp(nch, C) * sizeof(double)) + 2 * align256((size_t)C * sizeof(float)))};
    double *part = cv.take<double>((size_t)nch * C), *sums = cv.take<double>(C), *devs = cv.take<double>(C);
    double *tmp = cv.take<double>(cls_colsum_tmp(nch, C));
    float *mr = cv.take<float>(C), *rr = cv.take<float>(C);
    const unsigned cb = (unsigned)((C + 127) / 128);
    if (train) {
        const Launch2D cl = col_launch(nch, C, CLS_COLS);
        bn_sum_part_kernel<<<cl.grid, cl.block, 0, g_stream>>>(part, x, res, N, C, rows);
        LAUNCH_CHECK("batchnorm_sum_part");
        cls_colsum(NULL, sums, part, nch, C, C, tmp);
        bn_dev_part_kernel<<<cl.grid, cl.block, 0, g_stream>>>(part, x, sums, N, C, rows, nin);
        LAUNCH_CHECK("batchnorm_dev_part");
        cls_colsum(NULL, devs, part, nch, C, C, tmp);
        bn_stats_kernel<<<cb, 128, 0, g_stream>>>(mr, rr, mean, rstd, run_mean, run_var, sums, devs, nin, C, eps,
                                                  momentum);
        LAUNCH_CHECK("batchnorm_stats");
        res = NULL;   // added in the sums' pass
    } else {
        bn_eval_stats_kernel<<<cb, 128, 0, g_stream>>>(mr, rr, run_mean, run_var, C, eps);
        LAUNCH_CHECK("batchnorm_eval_stats");
    }
    if (opnd_bf16()) bn_apply_as((bf16 *)y, x, res, mr, rr, w, b, N, C);
    else bn_apply_as((float *)y, x, res, mr, rr, w, b, N, C);
    LAUNCH_CHECK("batchnorm_apply");
}

extern "C" void cuda_batchnorm_bwd(float *dx, int acc, float *dw, float *db, const float *dy, const float *x,
                                   const float *w, const float *mean, const float *rstd, int64_t N, int C,
                                   RowMask rows) {
    if (N <= 0 || C <= 0 || (!dx && !dw && !db)) return;
    const unsigned nch = cls_chunks(N);
    Carve cv = {scratch(align256((size_t)nch * 2 * C * sizeof(double)) + align256((size_t)2 * C * sizeof(double)) +
                        align256(cls_colsum_tmp(nch, 2 * C) * sizeof(double)) + align256((size_t)3 * C * sizeof(float)))};
    double *part = cv.take<double>((size_t)nch * 2 * C), *sums = cv.take<double>((size_t)2 * C);
    double *tmp = cv.take<double>(cls_colsum_tmp(nch, 2 * C));
    float *coef = cv.take<float>((size_t)3 * C);
    const Launch2D cl = col_launch(nch, C, CLS_COLS);
    norm_wb_part_kernel<false><<<cl.grid, cl.block, 0, g_stream>>>(part, dy, x, mean, rstd, N, C, rows);
    LAUNCH_CHECK("batchnorm_wb_part");
    cls_colsum(NULL, sums, part, nch, 2 * C, 2 * (int64_t)C, tmp);
    bn_bwd_coef_kernel<<<(unsigned)((C + 127) / 128), 128, 0, g_stream>>>(coef, dw, db, sums, w, rstd, rows_in(rows, N), C);
    LAUNCH_CHECK("batchnorm_bwd_coef");
    if (dx) {
        if (vec4_rows(dx, C) && vec4_rows(dy, C) && vec4_rows(x, C) && al(mean, 16) && al(rstd, 16)) {
            const Launch2D rl = rows_launch(N, C / 4);   // (coef is carved 256-byte aligned; C % 4 == 0)
            bn_bwd_dx_kernel<4><<<rl.grid, rl.block, 0, g_stream>>>(dx, acc, dy, x, mean, rstd, coef, N, C, rows);
        } else {
            const Launch2D rl = rows_launch(N, C);
            bn_bwd_dx_kernel<1><<<rl.grid, rl.block, 0, g_stream>>>(dx, acc, dy, x, mean, rstd, coef, N, C, rows);
        }
        LAUNCH_CHECK("batchnorm_bwd_dx");
    }
}

// The rows past each sequence's extent set to 0. A block takes one sequence's tile of `tile` rows (sequence in
// x, tile in y) and leaves at once where the whole tile exists, so the pass writes only the absent rows, reads
// no element and tests the extent once a block; inside, y threads walk the rows and x threads the columns in
// groups of V.
template <int V>
__global__ void rows_zero_kernel(float *__restrict__ x, int64_t ld, int cols, const int32_t *__restrict__ ext, int T,
                                 int tile) {
    const int64_t s = blockIdx.x;
    const int r0 = (int)blockIdx.y * tile, r1 = min(T, r0 + tile), lo = max(r0, ext[s]);
    const int cv = cols / V;
    for (int r = lo + (int)threadIdx.y; r < r1; r += blockDim.y) {
        float *row = x + (s * T + r) * ld;
        for (int j = threadIdx.x; j < cv; j += blockDim.x) {
            if constexpr (V == 4) ((float4 *)row)[j] = make_float4(0.f, 0.f, 0.f, 0.f);
            else row[j] = 0.f;
        }
    }
}

extern "C" void cuda_rows_zero(float *x, int64_t ld, int cols, RowMask rows, int64_t N) {
    if (!rows.ext || N <= 0 || cols <= 0) return;
    const int64_t S = N / rows.T;
    const int tile = (int)std::max<int64_t>(16, (rows.T + 65534) / 65535);
    const unsigned tiles = (unsigned)((rows.T + tile - 1) / tile);
    const bool v4 = cols % 4 == 0 && ld % 4 == 0 && ((uintptr_t)x & 15) == 0;
    const unsigned tx = row_threads(v4 ? cols / 4 : cols, 256), ty = 256 / tx;
    const dim3 grid((unsigned)S, tiles), block(tx, ty);
    if (v4) rows_zero_kernel<4><<<grid, block, 0, g_stream>>>(x, ld, cols, rows.ext, rows.T, tile);
    else rows_zero_kernel<1><<<grid, block, 0, g_stream>>>(x, ld, cols, rows.ext, rows.T, tile);
    LAUNCH_CHECK("rows_zero");
}
