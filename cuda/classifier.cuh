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

// logsumexp of x[0..V) for the whole block (every thread gets it), in double for the final log
__device__ double block_logsumexp(const float *x, int V) {
    __shared__ float bm[32], bs[32];
    float m = -INFINITY, s = 0.f;
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        float xv = x[j];
        if (xv > m) { s = s * expf(m - xv) + 1.f; m = xv; }
        else s += expf(xv - m);
    }
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

__global__ void xent_fwd_kernel(float *__restrict__ losses, const float *__restrict__ logits,
                                const int32_t *__restrict__ targets, int V) {
    int64_t n = blockIdx.x;
    int t = targets[n];
    if (t < 0) {   // the whole block leaves together
        if (threadIdx.x == 0) losses[n] = 0.f;
        return;
    }
    const float *x = logits + n * V;
    double lse = block_logsumexp(x, V);
    if (threadIdx.x == 0) losses[n] = (float)(lse - x[t]);
}

// dlogits may equal logits: block_logsumexp reads the row before its barrier; afterwards each thread reads and
// rewrites only its own elements.
__global__ void xent_bwd_kernel(float *dlogits, const float *logits, const int32_t *__restrict__ targets, float scale,
                                int V) {
    int64_t n = blockIdx.x;
    int t = targets[n];
    const float *x = logits + n * V;
    float *d = dlogits + n * V;
    if (t < 0) {
        for (int j = threadIdx.x; j < V; j += blockDim.x) d[j] = 0.f;
        return;
    }
    float lse = (float)block_logsumexp(x, V);
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        float val = scale * expf(x[j] - lse);
        d[j] = j == t ? val - scale : val;
    }
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
    double lse = block_logsumexp(x, V), sx = block_sum(x, V), l = lam[n], e = eps;
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
    float lse = (float)block_logsumexp(x, V);
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        float y = off + (j == a ? ya : 0.f) + (j == b ? yb : 0.f);
        d[j] = scale * (expf(x[j] - lse) - y);
    }
}

// The classifier in training, fused (cuda_classifier_train): logits, then one pass per row for its loss and
// the gradient G = scale (softmax - onehot), which under --precision bf16 is written only in bf16, straight
// into the operand of the two products after it. dlogits never exists in fp32. Rows of logits and G are ld
// apart (ld >= V): G's columns from V to ld are written as zeros, the logits' there are not read.
__global__ void xent_fused_kernel(float *__restrict__ losses, bf16 *__restrict__ G, const float *__restrict__ logits,
                                  const int32_t *__restrict__ targets, float scale, int V, int64_t ld) {
    int64_t n = blockIdx.x;
    int t = targets[n];
    const float *x = logits + n * ld;
    bf16 *g = G + n * ld;
    if (t < 0) {
        if (threadIdx.x == 0) losses[n] = 0.f;
        for (int64_t j = threadIdx.x; j < ld; j += blockDim.x) g[j] = __float2bfloat16(0.f);
        return;
    }
    double lse = block_logsumexp(x, V);
    if (threadIdx.x == 0) losses[n] = (float)(lse - x[t]);
    const float l = (float)lse;
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        float val = scale * expf(x[j] - l);
        g[j] = __float2bfloat16(j == t ? val - scale : val);
    }
    for (int64_t j = V + threadIdx.x; j < ld; j += blockDim.x) g[j] = __float2bfloat16(0.f);
}

// ---------------------------------------------------------------------------------------------------------
// launchers
// ---------------------------------------------------------------------------------------------------------
extern "C" void cuda_xent_fwd(float *losses, const float *logits, const int32_t *targets, int64_t N, int V) {
    if (N <= 0) return;
    PROF_COST(3.0 * N * V, 4.0 * N * V + 8.0 * N);
    if (N > INT_MAX) die("cross-entropy: %lld rows is too many", (long long)N);
    xent_fwd_kernel<<<(unsigned)N, XENT_THREADS, 0, g_stream>>>(losses, logits, targets, V);
    LAUNCH_CHECK("xent_fwd");
}

extern "C" void cuda_xent_bwd(float *dlogits, const float *logits, const int32_t *targets, float scale, int64_t N,
                              int V) {
    if (N <= 0) return;
    if (N > INT_MAX) die("cross-entropy: %lld rows is too many", (long long)N);
    xent_bwd_kernel<<<(unsigned)N, XENT_THREADS, 0, g_stream>>>(dlogits, logits, targets, scale, V);
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
    xent_fused_kernel<<<(unsigned)N, XENT_THREADS, 0, g_stream>>>(losses, G, lg, targets, scale, V, ld);
    LAUNCH_CHECK("xent_fused");
    gemm(CUBLAS_OP_N, CUBLAS_OP_N, D, N, ld, W16, D, G, ld, 0.f, dx, D);
    gemm(CUBLAS_OP_N, CUBLAS_OP_T, D, V, N, h, D, G, ld, 1.f, dW, D);
}
