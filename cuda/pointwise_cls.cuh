// cuda/pointwise_cls.cuh: the other ops of the classification model: GELU, dropout, sinusoidal positions, mean
// pooling, the document-pair features, the staging of 8-bit pixels. The formulas and roundings are cpu_cls.c's.
#pragma once
#include "norms_cls.cuh"

// ---------------------------------------------------------------------------------------------------------
// GELU, exact: x Phi(x) with Phi(x) = erfc(-x / sqrt 2) / 2 (erfc keeps its relative precision for x << 0)
// ---------------------------------------------------------------------------------------------------------
#define GELU_SQRT1_2 ((float)0.70710678118654752440)
#define GELU_INV_SQRT_2PI ((float)0.39894228040143267794)

template <typename T>
__global__ void gelu_fwd_kernel(T *__restrict__ y, const float *__restrict__ x, int64_t n) {
    GRID_STRIDE(i, n) put(y + i, 0.5f * x[i] * erfcf(-x[i] * GELU_SQRT1_2));
}

__global__ void gelu_bwd_kernel(float *dx, const float *dy, const float *__restrict__ x, int64_t n) {
    GRID_STRIDE(i, n) {
        const float v = x[i];
        const float d = 0.5f * erfcf(-v * GELU_SQRT1_2) + v * expf(-0.5f * v * v) * GELU_INV_SQRT_2PI;
        dx[i] = dy[i] * d;
    }
}

// ---------------------------------------------------------------------------------------------------------
// The LRA layer's activations (ops.h): q = s sigmoid(qpre) over each row's first HK columns, v = silu(vpre)
// over its last D, one thread per element of the [N, HK + D] the two make together; the backward the same.
// ---------------------------------------------------------------------------------------------------------
__global__ void lra_acts_fwd_kernel(float *__restrict__ q, float *__restrict__ v, const float *__restrict__ qfi,
                                    int64_t ld, int64_t N, int HK, int D, float sc) {
    const int64_t W = (int64_t)HK + D;
    GRID_STRIDE(i, N * W) {
        const int64_t n = i / W, c = i % W;
        float a, b;
        if (c < HK) {
            sigmoid2(qfi[n * ld + c], a, b);
            q[n * HK + c] = sc * a;
        } else {
            const float x = qfi[n * ld + HK + c];   // column 2 HK + (c - HK)
            sigmoid2(x, a, b);
            v[n * D + (c - HK)] = x * a;
        }
    }
}

__global__ void lra_acts_bwd_kernel(float *__restrict__ dqfi, int64_t ldd, const float *__restrict__ dq,
                                    const float *__restrict__ dv, const float *__restrict__ qfi, int64_t ld,
                                    int64_t N, int HK, int D, float sc) {
    const int64_t W = (int64_t)HK + D;
    GRID_STRIDE(i, N * W) {
        const int64_t n = i / W, c = i % W;
        float a, b;
        if (c < HK) {
            sigmoid2(qfi[n * ld + c], a, b);
            dqfi[n * ldd + c] = dq[n * HK + c] * sc * a * b;
        } else {
            const float x = qfi[n * ld + HK + c];
            sigmoid2(x, a, b);
            dqfi[n * ldd + HK + c] = dv[n * D + (c - HK)] * a * (1.f + x * b);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// dropout: the hash of ops.h. mix64 is common.c's splitmix64 finaliser; this is a copy the device can call
// (the tests compare the masks of both backends bit for bit).
// ---------------------------------------------------------------------------------------------------------
__host__ __device__ inline uint64_t mix64_hd(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

__global__ void dropout_kernel(float *y, const float *x, int64_t n, uint64_t key, uint64_t thr, float scale) {
    GRID_STRIDE(i, n) y[i] = (mix64_hd(key ^ (uint64_t)i) >> 32) < thr ? 0.f : x[i] * scale;
}

// ---------------------------------------------------------------------------------------------------------
// sinusoidal positions: a thread per (t, d) computes PE once, in double, and adds it to the B rows
// ---------------------------------------------------------------------------------------------------------
__global__ void add_positions_kernel(float *x, int B, int T, int D) {
    GRID_STRIDE(i, (int64_t)T * D) {
        const int t = (int)(i / D), d = (int)(i % D);
        const double a = t * pow(10000.0, -(double)(d & ~1) / D);
        const float pe = (float)(d & 1 ? cos(a) : sin(a));
        for (int b = 0; b < B; b++) x[((int64_t)b * T + t) * D + d] += pe;
    }
}

// ---------------------------------------------------------------------------------------------------------
// mean pooling: partial sums over chunks of PL_ROWS positions in double (a thread per (chunk, b, d), positions in
// order), then per (b, d) the chunks in order, divided by the length
// ---------------------------------------------------------------------------------------------------------
#define PL_ROWS 64

__global__ void pool_part_kernel(double *__restrict__ part, const float *__restrict__ x,
                                 const int32_t *__restrict__ lens, int T, int D, int nch) {
    const int d = blockIdx.z * blockDim.x + threadIdx.x, k = blockIdx.x, b = blockIdx.y;
    if (d >= D) return;
    const int L = lens ? lens[b] : T, t0 = k * PL_ROWS;
    if (t0 >= L) return;   // past the valid positions: the finish never reads this chunk
    const int t1 = t0 + PL_ROWS < L ? t0 + PL_ROWS : L;
    double s = 0;
    for (int t = t0; t < t1; t++) s += x[((int64_t)b * T + t) * D + d];
    part[((int64_t)b * nch + k) * D + d] = s;
}

__global__ void pool_finish_kernel(float *__restrict__ y, const double *__restrict__ part,
                                   const int32_t *__restrict__ lens, int B, int T, int D, int nch) {
    GRID_STRIDE(i, (int64_t)B * D) {
        const int b = (int)(i / D), d = (int)(i % D), L = lens ? lens[b] : T, nk = (L + PL_ROWS - 1) / PL_ROWS;
        double s = 0;
        for (int k = 0; k < nk; k++) s += part[((int64_t)b * nch + k) * D + d];
        y[i] = (float)(s / L);
    }
}

__global__ void pool_bwd_kernel(float *__restrict__ dx, const float *__restrict__ dy, const int32_t *__restrict__ lens,
                                int B, int T, int D) {
    ROWS_COLS(n, d, (int64_t)B * T, D) {
        const int b = (int)(n / T), t = (int)(n % T), L = lens ? lens[b] : T;
        dx[n * D + d] = t < L ? dy[(int64_t)b * D + d] / (float)L : 0.f;
    }
}

// ---------------------------------------------------------------------------------------------------------
// the document-pair features
// ---------------------------------------------------------------------------------------------------------
template <typename T>
__global__ void pair_fwd_kernel(T *__restrict__ f, const float *__restrict__ a, const float *__restrict__ b, int B,
                                int D) {
    ROWS_COLS(i, d, B, D) {
        const float av = a[i * D + d], bv = b[i * D + d];
        T *fr = f + i * 4 * D;
        put(fr + d, av);
        put(fr + D + d, bv);
        put(fr + 2 * D + d, av - bv);
        put(fr + 3 * D + d, av * bv);
    }
}

__global__ void pair_bwd_kernel(float *__restrict__ da, float *__restrict__ db, const float *__restrict__ df,
                                const float *__restrict__ a, const float *__restrict__ b, int B, int D) {
    ROWS_COLS(i, d, B, D) {
        const float *g = df + i * 4 * D;
        const float g0 = g[d], g1 = g[D + d], g2 = g[2 * D + d], g3 = g[3 * D + d];
        da[i * D + d] = (g0 + g2) + g3 * b[i * D + d];
        db[i * D + d] = (g1 - g2) + g3 * a[i * D + d];
    }
}

// ---------------------------------------------------------------------------------------------------------
// launchers
// ---------------------------------------------------------------------------------------------------------
extern "C" void cuda_gelu_fwd(void *y, const float *x, int64_t n) {
    if (n <= 0) return;
    if (opnd_bf16()) gelu_fwd_kernel<<<blocks_for(n, 256), 256, 0, g_stream>>>((bf16 *)y, x, n);
    else gelu_fwd_kernel<<<blocks_for(n, 256), 256, 0, g_stream>>>((float *)y, x, n);
    LAUNCH_CHECK("gelu_fwd");
}

extern "C" void cuda_gelu_bwd(float *dx, const float *dy, const float *x, int64_t n) {
    if (n <= 0) return;
    gelu_bwd_kernel<<<blocks_for(n, 256), 256, 0, g_stream>>>(dx, dy, x, n);
    LAUNCH_CHECK("gelu_bwd");
}

extern "C" void cuda_lra_acts_fwd(float *q, float *v, const float *qfi, int64_t ld, int64_t N, int HK, int D, double s) {
    if (N <= 0) return;
    lra_acts_fwd_kernel<<<blocks_for(N * (HK + D), 256), 256, 0, g_stream>>>(q, v, qfi, ld, N, HK, D, (float)s);
    LAUNCH_CHECK("lra_acts_fwd");
}

extern "C" void cuda_lra_acts_bwd(float *dqfi, int64_t ldd, const float *dq, const float *dv, const float *qfi,
                                  int64_t ld, int64_t N, int HK, int D, double s) {
    if (N <= 0) return;
    lra_acts_bwd_kernel<<<blocks_for(N * (HK + D), 256), 256, 0, g_stream>>>(dqfi, ldd, dq, dv, qfi, ld, N, HK, D,
                                                                             (float)s);
    LAUNCH_CHECK("lra_acts_bwd");
}

extern "C" void cuda_dropout_fwd(float *y, const float *x, int64_t n, double p, uint64_t seed) {
    if (n <= 0) return;
    if (p == 0) {   // an exact copy
        if (y != x) CUDA_CHECK(cudaMemcpyAsync(y, x, (size_t)n * sizeof(float), cudaMemcpyDeviceToDevice, g_stream));
        return;
    }
    const uint64_t key = mix64_hd(seed), thr = (uint64_t)(p * 4294967296.0);
    dropout_kernel<<<blocks_for(n, 256), 256, 0, g_stream>>>(y, x, n, key, thr, (float)(1.0 / (1.0 - p)));
    LAUNCH_CHECK("dropout");
}

extern "C" void cuda_dropout_bwd(float *dx, const float *dy, int64_t n, double p, uint64_t seed) {
    cuda_dropout_fwd(dx, dy, n, p, seed);
}

extern "C" void cuda_add_positions(float *x, int B, int T, int D) {
    if (B <= 0 || T <= 0 || D <= 0) return;
    add_positions_kernel<<<blocks_for((int64_t)T * D, 256), 256, 0, g_stream>>>(x, B, T, D);
    LAUNCH_CHECK("add_positions");
}

extern "C" void cuda_pool_mean_fwd(float *y, const float *x, const int32_t *lens, int B, int T, int D) {
    if (B <= 0 || T <= 0 || D <= 0) return;
    const int nch = (T + PL_ROWS - 1) / PL_ROWS;
    double *part = (double *)scratch(align256((size_t)B * nch * D * sizeof(double)));
    dim3 grid((unsigned)nch, (unsigned)B, (unsigned)((D + 127) / 128));
    pool_part_kernel<<<grid, 128, 0, g_stream>>>(part, x, lens, T, D, nch);
    LAUNCH_CHECK("pool_mean_part");
    pool_finish_kernel<<<blocks_for((int64_t)B * D, 256), 256, 0, g_stream>>>(y, part, lens, B, T, D, nch);
    LAUNCH_CHECK("pool_mean_finish");
}

extern "C" void cuda_pool_mean_bwd(float *dx, const float *dy, const int32_t *lens, int B, int T, int D) {
    if (B <= 0 || T <= 0 || D <= 0) return;
    const Launch2D rl = rows_launch((int64_t)B * T, D);
    pool_bwd_kernel<<<rl.grid, rl.block, 0, g_stream>>>(dx, dy, lens, B, T, D);
    LAUNCH_CHECK("pool_mean_bwd");
}

extern "C" void cuda_pair_features_fwd(void *f, const float *a, const float *b, int B, int D) {
    if (B <= 0 || D <= 0) return;
    const Launch2D rl = rows_launch(B, D);
    if (opnd_bf16()) pair_fwd_kernel<<<rl.grid, rl.block, 0, g_stream>>>((bf16 *)f, a, b, B, D);
    else pair_fwd_kernel<<<rl.grid, rl.block, 0, g_stream>>>((float *)f, a, b, B, D);
    LAUNCH_CHECK("pair_features_fwd");
}

extern "C" void cuda_pair_features_bwd(float *da, float *db, const float *df, const float *a, const float *b, int B,
                                       int D) {
    if (B <= 0 || D <= 0) return;
    const Launch2D rl = rows_launch(B, D);
    pair_bwd_kernel<<<rl.grid, rl.block, 0, g_stream>>>(da, db, df, a, b, B, D);
    LAUNCH_CHECK("pair_features_bwd");
}

// ---------------------------------------------------------------------------------------------------------
// pixels: a block per image row and 256 of its values (blockIdx.x = b gh + y), a thread per (x, channel); the value in double
// from the table, mixed as cpu_cls.c mixes it (fma, then one rounding), written where the patch order puts it.
// Only 8-bit values cross the bus: a quarter of the bytes of the normalised floats.
// ---------------------------------------------------------------------------------------------------------
__global__ void pixels_stage_kernel(float *__restrict__ x, const uint8_t *__restrict__ src, const double *__restrict__ lut,
                                    const int64_t *__restrict__ yoff, const int64_t *__restrict__ xoff, int n, int gh,
                                    int gw, int chans, int mix, double lam, int y0, int y1, int x0, int x1) {
    const int row = blockIdx.x, b = row / gh, y = row % gh, w = gw * chans;
    const int i = blockIdx.y * blockDim.x + threadIdx.x;
    if (i >= w) return;
    const int xx = i / chans, ch = i % chans;
    const int64_t vals = (int64_t)gh * w, t = (int64_t)y * w + i;
    double v = lut[ch * 256 + src[(int64_t)b * vals + t]];
    if (mix) {
        const double vp = lut[ch * 256 + src[(int64_t)(n - 1 - b) * vals + t]];
        if (mix == 1) v = fma(lam, v, (1 - lam) * vp);
        else if (y >= y0 && y < y1 && xx >= x0 && xx < x1) v = vp;
    }
    x[(int64_t)b * vals + yoff[y] + xoff[xx] + ch] = (float)v;
}

extern "C" void cuda_pixels_stage(float *x, const uint8_t *src, const double *lut, const int64_t *yoff,
                                  const int64_t *xoff, int n, int gh, int gw, int chans, int mix, double lam, int y0,
                                  int y1, int x0, int x1) {
    if (n <= 0 || gh <= 0 || gw <= 0 || chans <= 0) return;
    const int w = gw * chans;
    if ((int64_t)n * gh > INT32_MAX || (w + 255) / 256 > 65535) die("internal error: staging %d images of %d x %d", n, gh, w);
    dim3 grid((unsigned)(n * gh), (unsigned)((w + 255) / 256));
    pixels_stage_kernel<<<grid, 256, 0, g_stream>>>(x, src, lut, yoff, xoff, n, gh, gw, chans, mix, lam, y0, y1, x0, x1);
    LAUNCH_CHECK("pixels_stage");
}
