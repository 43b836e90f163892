// cuda/classifier.cuh: softmax cross-entropy and the fused classifier of training (loss and gradient in one pass).
#pragma once
#include "dense.cuh"

// ---------------------------------------------------------------------------------------------------------
// softmax cross-entropy: one block per row, an online (max, sum of exp) in one pass over the logits
// ---------------------------------------------------------------------------------------------------------
#define XENT_THREADS 512

// merge (m2, s2) into (m, s): s is a sum of exp(x - m)
__device__ __forceinline__ void ms_merge(float &m, float &s, float m2, float s2) {
    if (m2 > m) {
        float t = m; m = m2; m2 = t;
        t = s; s = s2; s2 = t;
    }
    if (m2 != -INFINITY) s += s2 * expf(m2 - m);   // an empty side (-inf, 0) adds nothing
}

// a running (max m, sum s of exp(x - m)) takes one more value
__device__ __forceinline__ void ms_take(float &m, float &s, float xv) {
    if (xv > m) { s = s * expf(m - xv) + 1.f; m = xv; }
    else s += expf(xv - m);
}

// Rows that are 16-byte aligned (V, or ld, a multiple of 4 and the block aligned) are read in float4s, a thread's
// next XF loads issued before it uses any of them. The loop of one value a thread at a time (as
// row_lse without vec) waits on each load in turn, its running max and sum being one chain: it reads the logits at
// under half the memory's rate (1.8 of an H200's 4.3 TB/s). Each group of 4 XF values first takes their max,
// then the sum of their exponentials against it: one rescale of the running sum a group, not a branch a value.
#define XF 4
// G's element (scale (softmax - onehot)) from its logit x, the row's log-sum-exp l and whether it is the target's
__device__ __forceinline__ float g_elem(float x, float l, float scale, bool target) {
    const float val = scale * expf(x - l);
    return target ? val - scale : val;
}
__device__ __forceinline__ void ms_take4(float &m, float &s, const float4 (&v)[XF]) {
    float bm = m;
#pragma unroll
    for (int u = 0; u < XF; u++) bm = fmaxf(bm, fmaxf(fmaxf(v[u].x, v[u].y), fmaxf(v[u].z, v[u].w)));
    if (bm > m) {   // (from m = -inf the sum is 0 and stays 0)
        s *= expf(m - bm);
        m = bm;
    }
#pragma unroll
    for (int u = 0; u < XF; u++) s += expf(v[u].x - m) + expf(v[u].y - m) + expf(v[u].z - m) + expf(v[u].w - m);
}

// the block's threads' (m, s) merged: the logsumexp, in double for the final log (every thread gets it)
__device__ double block_ms_lse(float m, float s) {
    __shared__ float bm[32], bs[32];
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        ms_merge(m, s, m2, s2);
    }
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if (lane == 0) { bm[w] = m; bs[w] = s; }
    __syncthreads();
    m = lane < nw ? bm[lane] : -INFINITY;
    s = lane < nw ? bs[lane] : 0.f;
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        ms_merge(m, s, m2, s2);
    }
    return (double)m + log((double)s);
}

// The log-sum-exp of a row x[0..V) for the whole block (every thread gets it): float4s when vec (V's whole
// fours; the rest one at a time), else one value at a time (any row, aligned or not).
__device__ double row_lse(const float *x, int V, bool vec) {
    const int bd = blockDim.x, v4 = vec ? V / 4 : 0;
    const float4 *x4 = (const float4 *)x;
    float m = -INFINITY, s = 0.f;
    int j = threadIdx.x;
    for (; j + (XF - 1) * bd < v4; j += XF * bd) {
        float4 v[XF];
#pragma unroll
        for (int u = 0; u < XF; u++) v[u] = x4[j + u * bd];
        ms_take4(m, s, v);
    }
    for (; j < v4; j += bd) {
        const float4 v = x4[j];
        ms_take(m, s, v.x);
        ms_take(m, s, v.y);
        ms_take(m, s, v.z);
        ms_take(m, s, v.w);
    }
    for (int c = 4 * v4 + threadIdx.x; c < V; c += bd) ms_take(m, s, x[c]);
    return block_ms_lse(m, s);
}

// g[c] = g_elem(x[c]) for the row's V columns (float4s when vec, as row_lse). g may be x: each thread reads
// and then writes only its own elements.
template <typename T>
__device__ __forceinline__ void row_g(T *g, const float *x, int V, int t, float l, float scale, bool vec) {
    const int bd = blockDim.x, v4 = vec ? V / 4 : 0;
    const float4 *x4 = (const float4 *)x;
    auto out = [&](int j4, float4 v) {   // four columns from 4 j4
        float a[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int k = 0; k < 4; k++) a[k] = g_elem(a[k], l, scale, 4 * j4 + k == t);
        store4(g + 4 * (int64_t)j4, a);
    };
    int j = threadIdx.x;
    for (; j + (XF - 1) * bd < v4; j += XF * bd) {
        float4 v[XF];
#pragma unroll
        for (int u = 0; u < XF; u++) v[u] = x4[j + u * bd];
#pragma unroll
        for (int u = 0; u < XF; u++) out(j + u * bd, v[u]);
    }
    for (; j < v4; j += bd) out(j, x4[j]);
    for (int c = 4 * v4 + threadIdx.x; c < V; c += bd) put(g + c, g_elem(x[c], l, scale, c == t));
}

__global__ void xent_fwd_kernel(float *__restrict__ losses, const float *__restrict__ logits,
                                const int32_t *__restrict__ targets, int V, int vec) {
    int64_t n = blockIdx.x;
    int t = targets[n];
    if (t < 0) {   // the whole block leaves together
        if (threadIdx.x == 0) losses[n] = 0.f;
        return;
    }
    const float *x = logits + n * V;
    double lse = row_lse(x, V, vec);
    if (threadIdx.x == 0) losses[n] = (float)(lse - x[t]);
}

// dlogits may equal logits: row_lse reads the row before its barrier; afterwards each thread reads and
// rewrites only its own elements.
__global__ void xent_bwd_kernel(float *dlogits, const float *logits, const int32_t *__restrict__ targets, float scale,
                                int V, int vec) {
    int64_t n = blockIdx.x;
    int t = targets[n];
    const float *x = logits + n * V;
    float *d = dlogits + n * V;
    if (t < 0) {
        for (int j = threadIdx.x; j < V; j += blockDim.x) d[j] = 0.f;
        return;
    }
    row_g(d, x, V, t, (float)row_lse(x, V, vec), scale, vec);
}

// Greedy decoding's pick (ops.h): one block per row. Each thread keeps the first of its largest values among
// the ones that are not NaN (i -1: none yet), the block keeps the larger of two and of equal ones the earlier.
// That is the first largest value of the row without its NaNs, which is what the sequential scan picks unless
// the row starts with a NaN (then 0).
__device__ __forceinline__ void argmax_merge(float &v, int &i, float v2, int i2) {
    if (i2 >= 0 && (i < 0 || v2 > v || (v2 == v && i2 < i))) { v = v2; i = i2; }
}

__global__ void argmax_rows_kernel(int32_t *__restrict__ best, const float *__restrict__ logits, int V) {
    __shared__ float sv[32];
    __shared__ int si[32];
    const float *x = logits + (int64_t)blockIdx.x * V;
    float v = 0.f;
    int i = -1;
    // eight loads in flight a thread before the comparisons (a row of 50,000 logits is read by one block, so
    // one load at a time would wait on the memory's latency 100 times over); still in increasing j per thread
    for (int j0 = threadIdx.x; j0 < V; j0 += 8 * blockDim.x) {
        float t[8];
        #pragma unroll
        for (int u = 0; u < 8; u++) {
            const int j = j0 + u * blockDim.x;
            t[u] = j < V ? x[j] : NAN;
        }
        #pragma unroll
        for (int u = 0; u < 8; u++)
            if (!isnan(t[u]) && (i < 0 || t[u] > v)) { v = t[u]; i = j0 + u * blockDim.x; }
    }
    for (int o = 16; o > 0; o >>= 1) argmax_merge(v, i, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, i, o));
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if (lane == 0) { sv[w] = v; si[w] = i; }
    __syncthreads();
    if (w == 0) {
        v = lane < nw ? sv[lane] : 0.f;
        i = lane < nw ? si[lane] : -1;
        for (int o = 16; o > 0; o >>= 1) argmax_merge(v, i, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, i, o));
        if (lane == 0) best[blockIdx.x] = i < 0 || isnan(x[0]) ? 0 : i;
    }
}

// Soft targets (label smoothing, mixup, cutmix; ops.h): y = eps / V + (1 - eps) (lam onehot(a) + (1 - lam)
// onehot(b)). The loss needs the row's sum too: lse - eps / V sum(x) - (1 - eps) (lam x_a + (1 - lam) x_b).
__device__ double block_sum(const float *x, int V) {
    __shared__ double part[32];
    double s = 0;
    for (int j = threadIdx.x; j < V; j += blockDim.x) s += x[j];
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();   // part[] may still be read by a previous call's threads
    if (lane == 0) part[w] = s;
    __syncthreads();
    s = lane < nw ? part[lane] : 0;
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    return s;
}

__global__ void xent_soft_fwd_kernel(float *__restrict__ losses, const float *__restrict__ logits,
                                     const int32_t *__restrict__ ta, const int32_t *__restrict__ tb,
                                     const float *__restrict__ lam, float eps, int V) {
    int64_t n = blockIdx.x;
    int a = ta[n];
    if (a < 0) {
        if (threadIdx.x == 0) losses[n] = 0.f;
        return;
    }
    const float *x = logits + n * V;
    double lse = row_lse(x, V, false), sx = block_sum(x, V), l = lam[n], e = eps;
    if (threadIdx.x == 0) losses[n] = (float)(lse - e / V * sx - (1 - e) * (l * x[a] + (1 - l) * x[tb[n]]));
}

// dlogits may equal logits, as in xent_bwd_kernel.
__global__ void xent_soft_bwd_kernel(float *dlogits, const float *logits, const int32_t *__restrict__ ta,
                                     const int32_t *__restrict__ tb, const float *__restrict__ lam, float eps,
                                     float scale, int V) {
    int64_t n = blockIdx.x;
    int a = ta[n];
    const float *x = logits + n * V;
    float *d = dlogits + n * V;
    if (a < 0) {
        for (int j = threadIdx.x; j < V; j += blockDim.x) d[j] = 0.f;
        return;
    }
    const int b = tb[n];
    const double l = lam[n], e = eps;
    const float off = (float)(e / V), ya = (float)((1 - e) * l), yb = (float)((1 - e) * (1 - l));
    float lse = (float)row_lse(x, V, false);
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        float y = off + (j == a ? ya : 0.f) + (j == b ? yb : 0.f);
        d[j] = scale * (expf(x[j] - lse) - y);
    }
}

// The classifier in training, fused (cuda_classifier_train): logits, then one pass per row for its loss and
// the gradient G = scale (softmax - onehot), which under --precision bf16 is written only in bf16, straight
// into the operand of the two products after it. dlogits never exists in fp32. Rows of logits and G are ld
// apart (ld >= V): G's columns from V to ld are written as zeros, the logits' there are not read. Both passes
// go in float4s when the rows are 16-byte aligned (ld a multiple of 4, checked by the launcher).
__global__ void xent_fused_kernel(float *__restrict__ losses, bf16 *__restrict__ G, const float *__restrict__ logits,
                                  const int32_t *__restrict__ targets, float scale, int V, int64_t ld, int vec) {
    const int64_t n = blockIdx.x;
    const int t = targets[n], bd = blockDim.x;   // (not vec: all of the row one at a time)
    const float *x = logits + n * ld;
    bf16 *g = G + n * ld;
    if (t < 0) {
        if (threadIdx.x == 0) losses[n] = 0.f;
        for (int64_t j = threadIdx.x; j < ld; j += bd) g[j] = __float2bfloat16(0.f);
        return;
    }
    const double lse = row_lse(x, V, vec);
    if (threadIdx.x == 0) losses[n] = (float)(lse - x[t]);
    row_g(g, x, V, t, (float)lse, scale, vec);
    for (int64_t c = V + threadIdx.x; c < ld; c += bd) g[c] = __float2bfloat16(0.f);
}

// ---------------------------------------------------------------------------------------------------------
// launchers
// ---------------------------------------------------------------------------------------------------------
// cuda_set_xent_vec, or HGRN2_XENT_VEC=0 (timings): 0 takes the rows one value at a time; -1 until the variable is read
static int g_xent_vec = -1;
extern "C" void cuda_set_xent_vec(int on) { g_xent_vec = on; }
static bool xent_vec(void) {
    if (g_xent_vec < 0) {
        const char *e = getenv("HGRN2_XENT_VEC");
        g_xent_vec = !(e && !strcmp(e, "0"));
    }
    return g_xent_vec;
}

extern "C" void cuda_xent_fwd(float *losses, const float *logits, const int32_t *targets, int64_t N, int V) {
    if (N <= 0) return;
    PROF_COST(3.0 * N * V, 4.0 * N * V + 8.0 * N);
    if (N > INT_MAX) die("cross-entropy: %lld rows is too many", (long long)N);
    xent_fwd_kernel<<<(unsigned)N, XENT_THREADS, 0, g_stream>>>(losses, logits, targets, V,
                                                                xent_vec() && al(logits, 16) && V % 4 == 0);
    LAUNCH_CHECK("xent_fwd");
}

extern "C" void cuda_xent_bwd(float *dlogits, const float *logits, const int32_t *targets, float scale, int64_t N,
                              int V) {
    if (N <= 0) return;
    if (N > INT_MAX) die("cross-entropy: %lld rows is too many", (long long)N);
    xent_bwd_kernel<<<(unsigned)N, XENT_THREADS, 0, g_stream>>>(dlogits, logits, targets, scale, V,
                                                                xent_vec() && al(logits, 16) && al(dlogits, 16) &&
                                                                    V % 4 == 0);
    LAUNCH_CHECK("xent_bwd");
}

extern "C" void cuda_argmax_rows(int32_t *best, const float *logits, int64_t N, int V) {
    if (N <= 0) return;
    PROF_COST(0, 4.0 * N * V + 4.0 * N);
    if (N > INT_MAX) die("argmax: %lld rows is too many", (long long)N);
    argmax_rows_kernel<<<(unsigned)N, 1024, 0, g_stream>>>(best, logits, V);
    LAUNCH_CHECK("argmax_rows");
}

extern "C" void cuda_xent_soft_fwd(float *losses, const float *logits, const int32_t *ta, const int32_t *tb,
                                   const float *lam, float eps, int64_t N, int V) {
    if (N <= 0) return;
    if (N > INT_MAX) die("cross-entropy: %lld rows is too many", (long long)N);
    xent_soft_fwd_kernel<<<(unsigned)N, XENT_THREADS, 0, g_stream>>>(losses, logits, ta, tb, lam, eps, V);
    LAUNCH_CHECK("xent_soft_fwd");
}

extern "C" void cuda_xent_soft_bwd(float *dlogits, const float *logits, const int32_t *ta, const int32_t *tb,
                                   const float *lam, float eps, float scale, int64_t N, int V) {
    if (N <= 0) return;
    if (N > INT_MAX) die("cross-entropy: %lld rows is too many", (long long)N);
    xent_soft_bwd_kernel<<<(unsigned)N, XENT_THREADS, 0, g_stream>>>(dlogits, logits, ta, tb, lam, eps, scale, V);
    LAUNCH_CHECK("xent_soft_bwd");
}


extern "C" void cuda_classifier_train(float *losses, float *dx, float *dW, float *logits, const void *h, const float *W,
                                      const int32_t *targets, float scale, int64_t N, int D, int V) {
    if (N <= 0) return;
    // the three products (logits, dx, dW); h, the weights, targets in, losses and dx out, dW read and written
    // (the logits and G between the products are not counted: a kernel that kept them on chip would not move them)
    PROF_COST(6.0 * N * D * V, (double)N * D * prof_os() + (double)V * D * prof_ws() + 8.0 * V * D + 4.0 * N * D + 8.0 * N);
    if (N > INT_MAX) die("cross-entropy: %lld rows is too many", (long long)N);
    if (g_gemm_mode != 2) {
        cuda_matmul_fwd(logits, h, W, N, D, V);
        cuda_xent_fwd(losses, logits, targets, N, V);
        cuda_xent_bwd(logits, logits, targets, scale, N, V);
        cuda_matmul_bwd(dx, dW, logits, h, W, N, D, V);
        return;
    }
    // A vocabulary that is not a multiple of 64 (GPT-2's 50257, the WikiText-103 preset's 50265) would leave the
    // rows of the logits and of G at addresses that break the 16-byte alignment cuBLAS's fastest tensor-core
    // kernels need, and an odd length in the products' inner dimension; so their rows are laid out ld = V
    // rounded up to 64 apart, the logits then in a scratch of this op's own of 4 N ld bytes (the caller's
    // [N,V] block goes unused), and the products run over ld: the weights' bf16 copy has zero rows from V to
    // ld and G zero columns there, so those add nothing (the logits there are 0 and unread). dW's product
    // stops at V, the rows dW has.
    const int64_t ld = V % 64 ? ((int64_t)V + 63) / 64 * 64 : V;
    static bf16 *G;
    static float *padded;
    static int64_t cap, pcap;
    if (N * ld > cap) {
        cuda_free(G);
        cap = N * ld;
        G = (bf16 *)cuda_alloc((size_t)cap * sizeof(bf16), "the classifier's bf16 gradient block");
    }
    float *lg = logits;
    if (ld != V) {
        if (N * ld > pcap) {
            cuda_free(padded);
            pcap = N * ld;
            padded = (float *)cuda_alloc((size_t)pcap * sizeof(float), "the classifier's logits, rows padded to 64");
        }
        lg = padded;
    }
    const bf16 *W16 = weight_bf16(W, (int64_t)V * D, ld * D);
    gemm(CUBLAS_OP_T, CUBLAS_OP_N, ld, N, D, W16, D, h, D, 0.f, lg, ld);   // logits = h W^T (dense.cuh's layout)
    xent_fused_kernel<<<(unsigned)N, XENT_THREADS, 0, g_stream>>>(losses, G, lg, targets, scale, V, ld,
                                                                  xent_vec() && al(lg, 16) && ld % 4 == 0);
    LAUNCH_CHECK("xent_fused");
    gemm(CUBLAS_OP_N, CUBLAS_OP_N, D, N, ld, W16, D, G, ld, 0.f, dx, D);
    gemm(CUBLAS_OP_N, CUBLAS_OP_T, D, V, N, h, D, G, ld, 1.f, dW, D);
}
