// cuda/norms_cls.cuh: the per-channel ops of the classification model: biases, LayerNorm, BatchNorm, and the
// deterministic column sums in double that they share. The formulas and roundings are cpu_cls.c's.
#pragma once
#include "reduce.cuh"

// An operand value as float, from either operand format.
__device__ __forceinline__ float ld_opnd(const float *p) { return *p; }
__device__ __forceinline__ float ld_opnd(const bf16 *p) { return __bfloat162float(*p); }

// Threads of a block that walks a row of C columns (ROWS_COLS): whole warps, at most 256.
static unsigned cls_threads(int C) { return C >= 256 ? 256u : (unsigned)((C + 31) / 32 * 32); }

// ---------------------------------------------------------------------------------------------------------
// column sums over rows in double, deterministic
// ---------------------------------------------------------------------------------------------------------
// A partial kernel runs on a grid (row chunk, column tile) of CLS_COLS threads, one per column: each thread
// sums its column over the chunk's CLS_ROWS rows in row order, in double, into part[chunk, column]. The partials
// of a column are then added in a fixed order by cls_colsum (CLS_SLICES fixed runs of chunks, each in chunk
// order, then the runs in order). Double, because these sums run over every position of a batch (2^18 rows and
// more) and feed statistics (BatchNorm) as well as gradients.
#define CLS_ROWS 64
#define CLS_COLS 128
#define CLS_SLICES 32

static unsigned cls_chunks(int64_t N) { return (unsigned)((N + CLS_ROWS - 1) / CLS_ROWS); }

// Sums part[j * ld + c] over j < np for c < W: ADD 1: outf[c] += (float)sum; ADD 0: outd[c] = sum.
template <bool ADD>
__global__ void cls_colsum_kernel(float *__restrict__ outf, double *__restrict__ outd, const double *__restrict__ part,
                                  int64_t np, int W, int64_t ld) {
    __shared__ double run[CLS_SLICES][32];
    const int lane = threadIdx.x & 31, sl = threadIdx.x >> 5, c = blockIdx.x * 32 + lane;
    const int64_t per = (np + CLS_SLICES - 1) / CLS_SLICES, j0 = sl * per, j1 = j0 + per < np ? j0 + per : np;
    double s = 0;
    if (c < W)
        for (int64_t j = j0; j < j1; j++) s += part[j * ld + c];
    run[sl][lane] = s;
    __syncthreads();
    if (sl == 0 && c < W) {
        double t = 0;
        for (int k = 0; k < CLS_SLICES; k++) t += run[k][lane];
        if (ADD) outf[c] += (float)t;
        else outd[c] = t;
    }
}

static void cls_colsum_add(float *out, const double *part, int64_t np, int W, int64_t ld) {
    cls_colsum_kernel<true><<<(W + 31) / 32, 32 * CLS_SLICES, 0, g_stream>>>(out, NULL, part, np, W, ld);
    LAUNCH_CHECK("cls_colsum");
}
static void cls_colsum_to(double *out, const double *part, int64_t np, int W, int64_t ld) {
    cls_colsum_kernel<false><<<(W + 31) / 32, 32 * CLS_SLICES, 0, g_stream>>>(NULL, out, part, np, W, ld);
    LAUNCH_CHECK("cls_colsum");
}

// ---------------------------------------------------------------------------------------------------------
// biases
// ---------------------------------------------------------------------------------------------------------
template <typename T>
__global__ void bias_add_kernel(T *__restrict__ y, const float *__restrict__ b, int64_t N, int C) {
    ROWS_COLS(n, c, N, C) {
        T *p = y + n * C + c;
        put(p, ld_opnd(p) + b[c]);
    }
}

template <typename T>
__global__ void bias_part_kernel(double *__restrict__ part, const T *__restrict__ dy, int64_t N, int C) {
    const int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const int64_t n0 = (int64_t)blockIdx.x * CLS_ROWS, n1 = n0 + CLS_ROWS < N ? n0 + CLS_ROWS : N;
    double s = 0;
    for (int64_t n = n0; n < n1; n++) s += ld_opnd(dy + n * C + c);
    part[(int64_t)blockIdx.x * C + c] = s;
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
                                    const float *__restrict__ rstd, int64_t N, int C) {
    const int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const int64_t n0 = (int64_t)blockIdx.x * CLS_ROWS, n1 = n0 + CLS_ROWS < N ? n0 + CLS_ROWS : N;
    const float mc = PER_ROW ? 0.f : mean[c], rc = PER_ROW ? 0.f : rstd[c];
    double sw = 0, sb = 0;
    for (int64_t n = n0; n < n1; n++) {
        const float m = PER_ROW ? mean[n] : mc, r = PER_ROW ? rstd[n] : rc;
        const float d = dy[n * C + c], xh = (x[n * C + c] - m) * r;
        sw += (double)d * xh;
        sb += d;
    }
    part[(int64_t)blockIdx.x * 2 * C + c] = sw;
    part[(int64_t)blockIdx.x * 2 * C + C + c] = sb;
}

// ---------------------------------------------------------------------------------------------------------
// BatchNorm: column sums for the statistics (two passes: sums, then squared deviations from the mean), a
// per-channel kernel for the statistics and the running averages, then the elementwise pass
// ---------------------------------------------------------------------------------------------------------
// part[chunk, c] = sum of x (after x += res, written back, when res is given)
__global__ void bn_sum_part_kernel(double *__restrict__ part, float *__restrict__ x, const float *__restrict__ res,
                                   int64_t N, int C) {
    const int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const int64_t n0 = (int64_t)blockIdx.x * CLS_ROWS, n1 = n0 + CLS_ROWS < N ? n0 + CLS_ROWS : N;
    double s = 0;
    for (int64_t n = n0; n < n1; n++) {
        float v = x[n * C + c];
        if (res) {
            v += res[n * C + c];
            x[n * C + c] = v;
        }
        s += v;
    }
    part[(int64_t)blockIdx.x * C + c] = s;
}

// part[chunk, c] = sum of (x - mean)^2 in double, mean = sums[c] / N
__global__ void bn_dev_part_kernel(double *__restrict__ part, const float *__restrict__ x,
                                   const double *__restrict__ sums, int64_t N, int C) {
    const int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const int64_t n0 = (int64_t)blockIdx.x * CLS_ROWS, n1 = n0 + CLS_ROWS < N ? n0 + CLS_ROWS : N;
    const double m = sums[c] / N;
    double q = 0;
    for (int64_t n = n0; n < n1; n++) {
        const double d = x[n * C + c] - m;
        q += d * d;
    }
    part[(int64_t)blockIdx.x * C + c] = q;
}

// Training: the statistics from the sums, saved, and the running averages (the variance unbiased). The
// elementwise pass reads the mean and rstd from mr, rr.
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
template <typename T>
__global__ void bn_apply_kernel(T *__restrict__ y, float *__restrict__ x, const float *__restrict__ res,
                                const float *__restrict__ mr, const float *__restrict__ rr, const float *__restrict__ w,
                                const float *__restrict__ b, int64_t N, int C) {
    ROWS_COLS(n, c, N, C) {
        float v = x[n * C + c];
        if (res) {
            v += res[n * C + c];
            x[n * C + c] = v;
        }
        put(y + n * C + c, (v - mr[c]) * rr[c] * w[c] + b[c]);
    }
}

// The backward's per-channel step: dw += sum dy xh, db += sum dy; the coefficients of dx:
// a = w rstd, k1 = mean_n(dy), k2 = mean_n(dy xh)
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

__global__ void bn_bwd_dx_kernel(float *dx, int acc, const float *__restrict__ dy, const float *__restrict__ x,
                                 const float *__restrict__ mean, const float *__restrict__ rstd,
                                 const float *__restrict__ coef, int64_t N, int C) {
    ROWS_COLS(n, c, N, C) {
        const int64_t i = n * C + c;
        const float xh = (x[i] - mean[c]) * rstd[c], t = coef[c] * (dy[i] - coef[C + c] - xh * coef[2 * C + c]);
        dx[i] = acc ? dx[i] + t : t;
    }
}

// ---------------------------------------------------------------------------------------------------------
// launchers
// ---------------------------------------------------------------------------------------------------------
extern "C" void cuda_bias_add(float *y, const float *b, int64_t N, int C) {
    if (N <= 0 || C <= 0) return;
    bias_add_kernel<<<blocks_for(N, 1), cls_threads(C), 0, g_stream>>>(y, b, N, C);
    LAUNCH_CHECK("bias_add");
}

extern "C" void cuda_bias_add_opnd(void *y, const float *b, int64_t N, int C) {
    if (N <= 0 || C <= 0) return;
    if (opnd_bf16()) bias_add_kernel<<<blocks_for(N, 1), cls_threads(C), 0, g_stream>>>((bf16 *)y, b, N, C);
    else bias_add_kernel<<<blocks_for(N, 1), cls_threads(C), 0, g_stream>>>((float *)y, b, N, C);
    LAUNCH_CHECK("bias_add_opnd");
}

template <typename T> static void bias_bwd_as(float *db, const T *dy, int64_t N, int C) {
    const unsigned nch = cls_chunks(N);
    double *part = (double *)scratch(align256((size_t)nch * C * sizeof(double)));
    dim3 grid(nch, (unsigned)((C + CLS_COLS - 1) / CLS_COLS));
    bias_part_kernel<<<grid, CLS_COLS, 0, g_stream>>>(part, dy, N, C);
    LAUNCH_CHECK("bias_part");
    cls_colsum_add(db, part, nch, C, C);
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
        double *part = (double *)scratch(align256((size_t)nch * 2 * C * sizeof(double)));
        dim3 grid(nch, (unsigned)((C + CLS_COLS - 1) / CLS_COLS));
        norm_wb_part_kernel<true><<<grid, CLS_COLS, 0, g_stream>>>(part, dy, x, mean, rstd, N, C);
        LAUNCH_CHECK("layernorm_wb_part");
        if (dw) cls_colsum_add(dw, part, nch, C, 2 * (int64_t)C);
        if (db) cls_colsum_add(db, part + C, nch, C, 2 * (int64_t)C);
    }
}

extern "C" void cuda_batchnorm_fwd(void *y, float *mean, float *rstd, float *run_mean, float *run_var, float *x,
                                   const float *res, const float *w, const float *b, int64_t N, int C, double eps,
                                   double momentum, int train) {
    if (train && N < 2) die("BatchNorm in training needs at least 2 positions per channel, got %lld", (long long)N);
    if (N <= 0 || C <= 0) return;
    const unsigned nch = cls_chunks(N);
    Carve cv = {scratch(align256((size_t)nch * C * sizeof(double)) + 2 * align256((size_t)C * sizeof(double)) +
                        2 * align256((size_t)C * sizeof(float)))};
    double *part = cv.take<double>((size_t)nch * C), *sums = cv.take<double>(C), *devs = cv.take<double>(C);
    float *mr = cv.take<float>(C), *rr = cv.take<float>(C);
    const unsigned cb = (unsigned)((C + 127) / 128);
    if (train) {
        dim3 grid(nch, (unsigned)((C + CLS_COLS - 1) / CLS_COLS));
        bn_sum_part_kernel<<<grid, CLS_COLS, 0, g_stream>>>(part, x, res, N, C);
        LAUNCH_CHECK("batchnorm_sum_part");
        cls_colsum_to(sums, part, nch, C, C);
        bn_dev_part_kernel<<<grid, CLS_COLS, 0, g_stream>>>(part, x, sums, N, C);
        LAUNCH_CHECK("batchnorm_dev_part");
        cls_colsum_to(devs, part, nch, C, C);
        bn_stats_kernel<<<cb, 128, 0, g_stream>>>(mr, rr, mean, rstd, run_mean, run_var, sums, devs, N, C, eps,
                                                  momentum);
        LAUNCH_CHECK("batchnorm_stats");
        res = NULL;   // added in the sums' pass
    } else {
        bn_eval_stats_kernel<<<cb, 128, 0, g_stream>>>(mr, rr, run_mean, run_var, C, eps);
        LAUNCH_CHECK("batchnorm_eval_stats");
    }
    if (opnd_bf16())
        bn_apply_kernel<<<blocks_for(N, 1), cls_threads(C), 0, g_stream>>>((bf16 *)y, x, res, mr, rr, w, b, N, C);
    else bn_apply_kernel<<<blocks_for(N, 1), cls_threads(C), 0, g_stream>>>((float *)y, x, res, mr, rr, w, b, N, C);
    LAUNCH_CHECK("batchnorm_apply");
}

extern "C" void cuda_batchnorm_bwd(float *dx, int acc, float *dw, float *db, const float *dy, const float *x,
                                   const float *w, const float *mean, const float *rstd, int64_t N, int C) {
    if (N <= 0 || C <= 0 || (!dx && !dw && !db)) return;
    const unsigned nch = cls_chunks(N);
    Carve cv = {scratch(align256((size_t)nch * 2 * C * sizeof(double)) + align256((size_t)2 * C * sizeof(double)) +
                        align256((size_t)3 * C * sizeof(float)))};
    double *part = cv.take<double>((size_t)nch * 2 * C), *sums = cv.take<double>((size_t)2 * C);
    float *coef = cv.take<float>((size_t)3 * C);
    dim3 grid(nch, (unsigned)((C + CLS_COLS - 1) / CLS_COLS));
    norm_wb_part_kernel<false><<<grid, CLS_COLS, 0, g_stream>>>(part, dy, x, mean, rstd, N, C);
    LAUNCH_CHECK("batchnorm_wb_part");
    cls_colsum_to(sums, part, nch, 2 * C, 2 * (int64_t)C);
    bn_bwd_coef_kernel<<<(unsigned)((C + 127) / 128), 128, 0, g_stream>>>(coef, dw, db, sums, w, rstd, N, C);
    LAUNCH_CHECK("batchnorm_bwd_coef");
    if (dx) {
        bn_bwd_dx_kernel<<<blocks_for(N, 1), cls_threads(C), 0, g_stream>>>(dx, acc, dy, x, mean, rstd, coef, N, C);
        LAUNCH_CHECK("batchnorm_bwd_dx");
    }
}
