// kernels.cu: the CUDA backend of hgrn2. Every op of ops.h as cuda_* (cuda_ops.h), fp32 storage, on one stream.
// Matmuls go to cuBLAS; everything else is a plain kernel here. docs/kernels.md describes the design.
//
// Determinism: no float atomics anywhere. Reductions over rows (dW, dw, dlb, dE) run in a fixed order: cuBLAS
// for the matmuls (bit-reproducible on one stream), fixed row chunks combined in chunk order for the column sums,
// a stable radix sort followed by fixed chunks for the embedding gradient. Integer atomics (histograms) give
// the same counts whatever the order.
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cublas_v2.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>
#include <errno.h>
#include <stdint.h>
#include <limits.h>
#include <math.h>
#include <unordered_map>
typedef __nv_bfloat16 bf16;
#include <map>
#include <string>
#include <vector>
#include <algorithm>

#include "common.h"      // die(); its functions are static inline, so C++ compiles them as they are
#include "cuda_ops.h"

// ---------------------------------------------------------------------------------------------------------
// errors
// ---------------------------------------------------------------------------------------------------------
static int g_debug_sync = 0;   // HGRN2_CUDA_SYNC=1: synchronise after every launch
static cudaStream_t g_stream = 0;

#define CUDA_CHECK(call)                                                                                      \
    do {                                                                                                      \
        cudaError_t e_ = (call);                                                                              \
        if (e_ != cudaSuccess)                                                                                \
            die("CUDA error at %s:%d: %s (%s)", __FILE__, __LINE__, cudaGetErrorString(e_), #call);           \
    } while (0)

#define CUBLAS_CHECK(call)                                                                                    \
    do {                                                                                                      \
        cublasStatus_t s_ = (call);                                                                           \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                                      \
            die("cuBLAS error at %s:%d: %s (%s)", __FILE__, __LINE__, cublasGetStatusString(s_), #call);      \
    } while (0)

// After every kernel launch: a bad configuration shows up here, a fault inside the kernel at the next sync
// (or here at once with HGRN2_CUDA_SYNC=1).
#define LAUNCH_CHECK(name)                                                                                    \
    do {                                                                                                      \
        cudaError_t e_ = cudaGetLastError();                                                                  \
        if (e_ == cudaSuccess && g_debug_sync) e_ = cudaStreamSynchronize(g_stream);                          \
        if (e_ != cudaSuccess)                                                                                \
            die("CUDA error at %s:%d in kernel %s: %s", __FILE__, __LINE__, name, cudaGetErrorString(e_));    \
    } while (0)

// ---------------------------------------------------------------------------------------------------------
// plumbing: device, stream, cuBLAS, tracked allocations, scratch
// ---------------------------------------------------------------------------------------------------------
static int g_init = 0;
static cublasHandle_t g_blas;
static cudaDeviceProp g_prop;
static int g_gemm_mode = 1;   // TF32 by default
static std::unordered_map<void *, size_t> g_allocs;
static size_t g_cur_bytes = 0, g_peak_bytes = 0;

extern "C" void cuda_init(void) {
    if (g_init) return;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0)
        die("no usable CUDA device (%s); use --device cpu", e != cudaSuccess ? cudaGetErrorString(e) : "none found");
    CUDA_CHECK(cudaSetDevice(0));
    CUDA_CHECK(cudaGetDeviceProperties(&g_prop, 0));
    CUDA_CHECK(cudaStreamCreate(&g_stream));
    CUBLAS_CHECK(cublasCreate(&g_blas));
    CUBLAS_CHECK(cublasSetStream(g_blas, g_stream));
    const char *s = getenv("HGRN2_CUDA_SYNC");
    g_debug_sync = s && *s && strcmp(s, "0") != 0;
    g_init = 1;
}

extern "C" const char *cuda_device_name(void) {
    cuda_init();
    return g_prop.name;
}

extern "C" void *cuda_alloc(size_t bytes, const char *what) {
    cuda_init();
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        cudaGetLastError();   // clear it, so it does not resurface at the next launch check
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        die("out of GPU memory: %s needs %zu bytes (%.1f MiB); %.1f MiB of %.1f MiB are free, %.1f MiB already held "
            "by hgrn2 (%s); reduce --batch or --seq-len, or use a smaller model (--dim, --layers, --vocab)",
            what ? what : "a buffer", bytes, bytes / 1048576.0, fr / 1048576.0, tot / 1048576.0,
            g_cur_bytes / 1048576.0, cudaGetErrorString(e));
    }
    g_allocs[p] = bytes;
    g_cur_bytes += bytes;
    if (g_cur_bytes > g_peak_bytes) g_peak_bytes = g_cur_bytes;
    return p;
}

static void w16_stale(const void *p, size_t bytes);   // marks the bf16 weight copies over these bytes stale

extern "C" void cuda_free(void *p) {
    if (!p) return;
    auto it = g_allocs.find(p);
    if (it != g_allocs.end()) {
        w16_stale(p, it->second);   // the address may come back as another tensor
        g_cur_bytes -= it->second;
        g_allocs.erase(it);
    }
    CUDA_CHECK(cudaStreamSynchronize(g_stream));   // kernels in flight may still use it
    CUDA_CHECK(cudaFree(p));
}

extern "C" size_t cuda_peak_bytes(void) { return g_peak_bytes; }

extern "C" void cuda_to_device(void *dst, const void *src, size_t bytes) {
    cuda_init();
    if (!bytes) return;
    w16_stale(dst, bytes);
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, g_stream));
    CUDA_CHECK(cudaStreamSynchronize(g_stream));
}

extern "C" void cuda_to_host(void *dst, const void *src, size_t bytes) {
    cuda_init();
    if (!bytes) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, g_stream));
    CUDA_CHECK(cudaStreamSynchronize(g_stream));
}

extern "C" void cuda_sync(void) {
    cuda_init();
    CUDA_CHECK(cudaStreamSynchronize(g_stream));
}

extern "C" void cuda_set_gemm_precision(int mode) {
    if (mode < 0 || mode > 2) die("GEMM precision must be 0 (fp32), 1 (tf32) or 2 (bf16), got %d", mode);
    g_gemm_mode = mode;
}
extern "C" int cuda_get_gemm_precision(void) { return g_gemm_mode; }

// One scratch buffer shared by the ops that need temporaries (embedding sort, column partial sums, rstd,
// sumsq partials). Ops run in stream order, so consecutive ops can reuse it; it only grows, after a sync.
static void *g_scratch = NULL;
static size_t g_scratch_bytes = 0;

static size_t align256(size_t b) { return (b + 255) & ~(size_t)255; }

static char *scratch(size_t bytes) {
    if (bytes > g_scratch_bytes) {
        if (g_scratch) cuda_free(g_scratch);   // synchronises first
        size_t nb = align256(bytes > g_scratch_bytes * 3 / 2 ? bytes : g_scratch_bytes * 3 / 2);
        g_scratch = cuda_alloc(nb, "scratch space of the CUDA ops");
        g_scratch_bytes = nb;
    }
    return (char *)g_scratch;
}

// Hands out consecutive 256-byte aligned pieces of one scratch allocation.
struct Carve {
    char *p;
    template <typename T> T *take(size_t n) {
        T *r = (T *)p;
        p += align256(n * sizeof(T));
        return r;
    }
};

static unsigned blocks_for(int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads;
    if (b > (1 << 20)) b = 1 << 20;   // the kernels loop (grid stride) past this
    return (unsigned)(b < 1 ? 1 : b);
}

// Row n, column c of an [N, C] array: a block per row (grid stride), the block's threads along the row.
#define ROWS_COLS(n, c, N, C)                                                        \
    for (int64_t n = blockIdx.x; n < (N); n += gridDim.x)                            \
        for (int c = threadIdx.x; c < (C); c += blockDim.x)

#define GRID_STRIDE(i, n) \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

// ---------------------------------------------------------------------------------------------------------
// op profile (hgrn2 bench --profile): an event before every op; the time from one op's event to the next is
// charged to the op, by section ("mixer", "classifier", ...) and name. Launch gaps count with the op before.
// ---------------------------------------------------------------------------------------------------------
struct ProfMark { const char *section, *op; cudaEvent_t ev; };
static std::vector<ProfMark> g_marks;
static size_t g_nmarks = 0;
struct ProfSum { double ms = 0; long calls = 0; };
static std::map<std::string, ProfSum> g_prof;

extern "C" void cuda_prof_mark(const char *section, const char *op) {
    if (g_nmarks == g_marks.size()) {
        ProfMark m = {section, op, NULL};
        CUDA_CHECK(cudaEventCreate(&m.ev));
        g_marks.push_back(m);
    }
    g_marks[g_nmarks].section = section;
    g_marks[g_nmarks].op = op;
    CUDA_CHECK(cudaEventRecord(g_marks[g_nmarks].ev, g_stream));
    g_nmarks++;
}

extern "C" void cuda_prof_step(void) {
    if (!g_nmarks) return;
    cuda_prof_mark("", "");
    CUDA_CHECK(cudaEventSynchronize(g_marks[g_nmarks - 1].ev));
    for (size_t i = 0; i + 1 < g_nmarks; i++) {
        float ms;
        CUDA_CHECK(cudaEventElapsedTime(&ms, g_marks[i].ev, g_marks[i + 1].ev));
        ProfSum &p = g_prof[std::string(g_marks[i].section) + " / " + g_marks[i].op];
        p.ms += ms;
        p.calls++;
    }
    g_nmarks = 0;
}

extern "C" void cuda_prof_print(int steps) {
    std::vector<std::pair<std::string, ProfSum>> v(g_prof.begin(), g_prof.end());
    std::sort(v.begin(), v.end(), [](const auto &a, const auto &b) { return a.second.ms > b.second.ms; });
    double total = 0;
    for (auto &e : v) total += e.second.ms;
    printf("GPU time per step by section and op (%d steps; %.2f ms per step in all):\n", steps, total / steps);
    for (auto &e : v)
        printf("  %-34s %6.1f calls %9.3f ms %6.1f%%\n", e.first.c_str(), (double)e.second.calls / steps,
               e.second.ms / steps, 100 * e.second.ms / (total > 0 ? total : 1));
}

// ---------------------------------------------------------------------------------------------------------
// small device helpers
// ---------------------------------------------------------------------------------------------------------
__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ double warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Block sums (blockDim a multiple of 32): every thread gets the result; every warp reduces the same per-warp
// partials in the same order, so all agree bit for bit.
__device__ float block_sum(float v) {
    __shared__ float buf[32];
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();   // buf may still be read by a previous call
    if (lane == 0) buf[w] = v;
    __syncthreads();
    return warp_sum(lane < nw ? buf[lane] : 0.f);
}
__device__ double block_sum_d(double v) {
    __shared__ double bufd[32];
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum_d(v);
    __syncthreads();
    if (lane == 0) bufd[w] = v;
    __syncthreads();
    return warp_sum_d(lane < nw ? bufd[lane] : 0.0);
}

// sigmoid(x) and sigmoid(-x), each to full relative precision; exp never overflows (as cpu.c)
__device__ __forceinline__ void sigmoid2(float x, float &s, float &sn) {
    float e = expf(-fabsf(x));
    float r = 1.f / (1.f + e);
    if (x >= 0) { s = r; sn = e * r; }
    else        { s = e * r; sn = r; }
}

// ---------------------------------------------------------------------------------------------------------
// dense: cuBLAS, column-major view of row-major data
// ---------------------------------------------------------------------------------------------------------
// A row-major [R, C] matrix is a column-major [C, R] one with leading dimension C. So
//   y[N,O] = x[N,I] W[O,I]^T   is   y^T[O,N] = W^T x^T:  gemm(T, N, m=O, n=N, k=I, A=W (ld I), B=x (ld I), C=y (ld O))
//   dx[N,I] = dy[N,O] W[O,I]    is  dx^T[I,N] = W^T dy^T: gemm(N, N, m=I, n=N, k=O, A=W (ld I), B=dy (ld O), C=dx (ld I))
//   dW[O,I] += dy^T x           is  dW^T[I,O] += x^T dy:  gemm(N, T, m=I, n=O, k=N, A=x (ld I), B=dy (ld O), C=dW (ld I))
// One cuBLAS call for every product: operands fp32 (modes 0 and 1: exact or TF32 compute) or bf16 (mode 2),
// accumulation in fp32, C fp32 or (c_opnd) in the operand format.
static void gemm(cublasOperation_t ta, cublasOperation_t tb, int64_t m, int64_t n, int64_t k, const void *A,
                 int64_t lda, const void *B, int64_t ldb, float beta, void *C, int64_t ldc, bool c_opnd = false) {
    if (m > INT_MAX || n > INT_MAX || k > INT_MAX || lda > INT_MAX || ldb > INT_MAX || ldc > INT_MAX)
        die("matmul dimensions too large for cuBLAS (m %lld, n %lld, k %lld); reduce --batch or --seq-len",
            (long long)m, (long long)n, (long long)k);
    cuda_init();
    const cudaDataType_t ab = g_gemm_mode == 2 ? CUDA_R_16BF : CUDA_R_32F;
    const cublasComputeType_t ct = g_gemm_mode == 1 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    float alpha = 1.f;
    const cudaDataType_t cty = c_opnd ? ab : CUDA_R_32F;
    CUBLAS_CHECK(cublasGemmEx(g_blas, ta, tb, (int)m, (int)n, (int)k, &alpha, A, ab, (int)lda, B, ab, (int)ldb, &beta,
                              C, cty, (int)ldc, ct, CUBLAS_GEMM_DEFAULT));
    if (g_debug_sync) CUDA_CHECK(cudaStreamSynchronize(g_stream));
}

// --precision bf16: cuBLAS reads bf16 operands (half the bytes of fp32, the full bf16 tensor-core rate) and
// writes fp32. Activation operands arrive in bf16 (ops.h: their producers write that format); weights are
// converted into a cache keyed by their address, which the AdamW kernel keeps up to date as it writes the new
// weights (weight_bf16).
static bool al(const void *p, int bytes) { return ((uintptr_t)p % bytes) == 0; }   // p is bytes-aligned

// Stores in the operand formats (float or bf16, round to nearest).
__device__ __forceinline__ void put(float *p, float v) { *p = v; }
__device__ __forceinline__ void put(bf16 *p, float v) { *p = __float2bfloat16(v); }
// Four consecutive values of either format in one load or store (16 bytes of fp32, 8 of bf16).
__device__ __forceinline__ void load4(const float *p, float v[4]) {
    const float4 t = *(const float4 *)p;
    v[0] = t.x; v[1] = t.y; v[2] = t.z; v[3] = t.w;
}
__device__ __forceinline__ void load4(const bf16 *p, float v[4]) {
    const uint2 t = *(const uint2 *)p;
    const float2 a = __bfloat1622float2(*(const __nv_bfloat162 *)&t.x), b = __bfloat1622float2(*(const __nv_bfloat162 *)&t.y);
    v[0] = a.x; v[1] = a.y; v[2] = b.x; v[3] = b.y;
}
__device__ __forceinline__ void store4(float *p, const float v[4]) { *(float4 *)p = make_float4(v[0], v[1], v[2], v[3]); }
__device__ __forceinline__ void store4(bf16 *p, const float v[4]) {
    __nv_bfloat162 a = __floats2bfloat162_rn(v[0], v[1]), b = __floats2bfloat162_rn(v[2], v[3]);
    uint2 t;
    t.x = *(unsigned *)&a;
    t.y = *(unsigned *)&b;
    *(uint2 *)p = t;
}

__global__ void to_bf16_kernel(bf16 *__restrict__ y, const float *__restrict__ x, int64_t n, int vec) {
    if (!vec) {
        GRID_STRIDE(i, n) y[i] = __float2bfloat16(x[i]);
        return;
    }
    const int64_t n4 = n >> 2;
    GRID_STRIDE(i, n4) {
        float v[4];
        load4(x + 4 * i, v);
        store4(y + 4 * i, v);
    }
    GRID_STRIDE(i, n - 4 * n4) y[4 * n4 + i] = __float2bfloat16(x[4 * n4 + i]);
}
static void to_bf16(bf16 *y, const float *x, int64_t n) {
    const int vec = al(x, 16) && al(y, 8);
    to_bf16_kernel<<<blocks_for(vec ? n / 4 + 1 : n, 256), 256, 0, g_stream>>>(y, x, n, vec);
    LAUNCH_CHECK("to_bf16");
}

// The invariant: an entry for W that is `current` holds exactly to_bf16 of W[0, n). Only cuda_adamw and
// cuda_to_device write parameters (and cuda_free may give their memory to another tensor), so:
// - cuda_adamw over [p, p + n) writes the bf16 of the new values, in the same pass, into one current entry that
//   contains the range, which so stays current (an entry may hold several tensors, each updated by its own
//   cuda_adamw: the fused q/f/i and gate/up projections); the other entries over the range go stale;
// - cuda_to_device and cuda_free make the entries over their bytes stale, and only those: the token ids go up
//   through cuda_to_device at every forward, which must not cost a conversion of every weight.
struct W16 { bf16 *p; int64_t cap, n; bool current; };
static std::unordered_map<const float *, W16> g_w16;
static const bf16 *weight_bf16(const float *W, int64_t n) {
    W16 &e = g_w16[W];
    if (e.current && e.n >= n) return e.p;
    if (e.cap < n) {
        cuda_free(e.p);
        e.p = (bf16 *)cuda_alloc((size_t)n * sizeof(bf16), "bf16 copies of the weights (--precision bf16)");
        e.cap = n;
    }
    to_bf16(e.p, W, n);
    e.n = n;
    e.current = true;
    return e.p;
}
// The current entries over the bytes [p, p + bytes) go stale, except the first that contains them all when
// `keep`: that one is returned, with the position of p in it (NULL when there is none).
static bf16 *w16_over(const void *p, size_t bytes, bool keep) {
    const uintptr_t a = (uintptr_t)p, b = a + bytes;
    bf16 *kept = NULL;
    for (auto &kv : g_w16) {
        W16 &e = kv.second;
        const uintptr_t ka = (uintptr_t)kv.first, kb = (uintptr_t)(kv.first + e.n);
        if (!e.current || kb <= a || b <= ka) continue;   // stale already, or apart
        if (keep && !kept && ka <= a && b <= kb) kept = e.p + ((const float *)p - kv.first);
        else e.current = false;
    }
    return kept;
}
static void w16_stale(const void *p, size_t bytes) { w16_over(p, bytes, false); }
// Where cuda_adamw over [p, p + n) writes the bf16 of its results (NULL: nowhere)
static bf16 *adamw_copy_for(const float *p, int64_t n) { return w16_over(p, (size_t)n * sizeof(float), true); }

// Operands (ops.h): bf16 in gemm mode 2, fp32 otherwise; the matmuls below read them in that format.
static bool opnd_bf16(void) { return g_gemm_mode == 2; }
extern "C" size_t cuda_opnd_size(void) { return opnd_bf16() ? sizeof(bf16) : sizeof(float); }
extern "C" void cuda_to_opnd(void *y, const float *x, int64_t n) {
    if (n <= 0) return;
    if (opnd_bf16()) to_bf16((bf16 *)y, x, n);
    else if (y != x) CUDA_CHECK(cudaMemcpyAsync(y, x, (size_t)n * sizeof(float), cudaMemcpyDeviceToDevice, g_stream));
}

// In mode 2 the weight operand is its bf16 copy; the activation operands come in the mode's format.
static const void *weight_opnd(const float *W, int64_t n) { return opnd_bf16() ? (const void *)weight_bf16(W, n) : W; }

// y = x W^T, y fp32 or (y_opnd) in the operand format
static void matmul_fwd(void *y, bool y_opnd, const void *x, const float *W, int64_t N, int I, int O) {
    if (N <= 0 || O <= 0) return;
    if (I <= 0) {
        CUDA_CHECK(cudaMemsetAsync(y, 0, (size_t)(N * O) * (y_opnd ? cuda_opnd_size() : sizeof(float)), g_stream));
        return;
    }
    gemm(CUBLAS_OP_T, CUBLAS_OP_N, O, N, I, weight_opnd(W, (int64_t)O * I), I, x, I, 0.f, y, O, y_opnd);
}
extern "C" void cuda_matmul_fwd(float *y, const void *x, const float *W, int64_t N, int I, int O) {
    matmul_fwd(y, false, x, W, N, I, O);
}
extern "C" void cuda_matmul_fwd_opnd(void *y, const void *x, const float *W, int64_t N, int I, int O) {
    matmul_fwd(y, true, x, W, N, I, O);
}
extern "C" void cuda_matmul_bwd(float *dx, float *dW, const void *dy, const void *x, const float *W, int64_t N,
                                int I, int O) {
    if (N <= 0 || I <= 0) return;
    if (O <= 0) {
        if (dx) cuda_zero(dx, N * I);
        return;
    }
    if (dx) gemm(CUBLAS_OP_N, CUBLAS_OP_N, I, N, O, weight_opnd(W, (int64_t)O * I), I, dy, O, 0.f, dx, I);
    if (dW) gemm(CUBLAS_OP_N, CUBLAS_OP_T, I, O, N, x, I, dy, O, 1.f, dW, I);
}

// ---------------------------------------------------------------------------------------------------------
// embedding
// ---------------------------------------------------------------------------------------------------------
__global__ void embed_fwd_kernel(float *__restrict__ x, const int32_t *__restrict__ ids, const float *__restrict__ E,
                                 int64_t N, int D) {
    GRID_STRIDE(i, N * D) {
        int64_t n = i / D;
        int c = (int)(i - n * D);
        x[i] = E[(int64_t)ids[n] * D + c];
    }
}

extern "C" void cuda_embed_fwd(float *x, const int32_t *ids, const float *E, int64_t N, int D) {
    if (N <= 0 || D <= 0) return;
    embed_fwd_kernel<<<blocks_for(N * D, 256), 256, 0, g_stream>>>(x, ids, E, N, D);
    LAUNCH_CHECK("embed_fwd");
}

// Backward, deterministic: rows sharing an id must be summed in a fixed order. A stable LSD radix sort of the ids
// (4 passes of 8 bits; the ids are non-negative int32) groups the rows of each id, in row order. The sorted
// positions are then cut into fixed chunks of EB_CH: an id whose rows lie inside one chunk is summed there and
// added to dE by that chunk; an id spanning chunks leaves per-chunk partial sums (P for the chunks it continues
// out of, Q for the chunk where it ends) that a second kernel adds to dE in chunk order.
#define RS_TILE 1024   // rows per radix-sort block (32 warps)
#define EB_CH 64       // sorted positions per reduction chunk
#define COL_THREADS 128

// per tile digit histogram: hist[d * ntiles + tile]
__global__ void rs_hist_kernel(int *hist, const int *__restrict__ keys, int64_t N, int shift, int ntiles) {
    __shared__ int cnt[256];
    for (int i = threadIdx.x; i < 256; i += blockDim.x) cnt[i] = 0;
    __syncthreads();
    int64_t n = (int64_t)blockIdx.x * RS_TILE + threadIdx.x;
    if (n < N) atomicAdd(&cnt[(keys[n] >> shift) & 255], 1);   // integer: the count is order-independent
    __syncthreads();
    for (int d = threadIdx.x; d < 256; d += blockDim.x) hist[(int64_t)d * ntiles + blockIdx.x] = cnt[d];
}

// In-place exclusive prefix sum of a[0..M) by one block (blockDim a multiple of 32, at most 1024).
__global__ void scan_exclusive_kernel(int *a, int64_t M) {
    __shared__ int wsum[32];
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    int carry = 0;
    for (int64_t base = 0; base < M; base += blockDim.x) {
        int64_t i = base + threadIdx.x;
        int x = i < M ? a[i] : 0;
        int s = x;   // inclusive scan within the warp
        for (int o = 1; o < 32; o <<= 1) {
            int y = __shfl_up_sync(0xffffffffu, s, o);
            if (lane >= o) s += y;
        }
        if (lane == 31) wsum[w] = s;
        __syncthreads();
        if (w == 0) {   // inclusive scan of the warp totals
            int ws = lane < nw ? wsum[lane] : 0;
            for (int o = 1; o < 32; o <<= 1) {
                int y = __shfl_up_sync(0xffffffffu, ws, o);
                if (lane >= o) ws += y;
            }
            if (lane < nw) wsum[lane] = ws;
        }
        __syncthreads();
        if (i < M) a[i] = carry + (w > 0 ? wsum[w - 1] : 0) + s - x;
        carry += wsum[nw - 1];
        __syncthreads();   // wsum is rewritten in the next round
    }
}

// Stable scatter of one radix pass. Rank among equal digits: within the warp from __match_any_sync, across the
// warps of the tile from per-warp counts, across tiles from the scanned histogram. vals_in NULL: the row index.
__global__ void rs_scatter_kernel(int *__restrict__ keys_out, int *__restrict__ vals_out,
                                  const int *__restrict__ keys_in, const int *__restrict__ vals_in,
                                  const int *__restrict__ offs, int64_t N, int shift, int ntiles) {
    __shared__ int wcnt[RS_TILE / 32][256];
    int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
    for (int i = tid; i < (RS_TILE / 32) * 256; i += blockDim.x) (&wcnt[0][0])[i] = 0;
    __syncthreads();
    int64_t n = (int64_t)blockIdx.x * RS_TILE + tid;
    bool valid = n < N;
    int key = valid ? keys_in[n] : 0;
    int val = valid ? (vals_in ? vals_in[n] : (int)n) : 0;
    int d = valid ? (key >> shift) & 255 : 256;   // 256: a group of its own for the rows past N
    unsigned same = __match_any_sync(0xffffffffu, d);
    int rank = __popc(same & ((1u << lane) - 1));
    if (valid && rank == 0) wcnt[w][d] = __popc(same);
    __syncthreads();
    if (tid < 256) {   // exclusive prefix over the warps, per digit
        int acc = 0;
        for (int ww = 0; ww < RS_TILE / 32; ww++) {
            int c = wcnt[ww][tid];
            wcnt[ww][tid] = acc;
            acc += c;
        }
    }
    __syncthreads();
    if (valid) {
        int pos = offs[(int64_t)d * ntiles + blockIdx.x] + wcnt[w][d] + rank;
        keys_out[pos] = key;
        vals_out[pos] = val;
    }
}

// Pass 1 over the sorted rows: grid (chunk, column tile); each thread owns one column of one chunk and sums the
// rows of each id segment in order.
__global__ void embed_bwd_chunks_kernel(float *__restrict__ dE, float *__restrict__ P, float *__restrict__ Q,
                                        const float *__restrict__ dx, const int *__restrict__ sid,
                                        const int *__restrict__ srow, int64_t N, int D) {
    __shared__ int s_id[EB_CH], s_row[EB_CH];
    __shared__ int prev_id, next_id;
    int64_t j = blockIdx.x, p0 = j * EB_CH;
    int n = (int)(N - p0 < EB_CH ? N - p0 : EB_CH);
    for (int r = threadIdx.x; r < n; r += blockDim.x) { s_id[r] = sid[p0 + r]; s_row[r] = srow[p0 + r]; }
    if (threadIdx.x == 0) {
        prev_id = p0 > 0 ? sid[p0 - 1] : -1;
        next_id = p0 + n < N ? sid[p0 + n] : -1;
    }
    __syncthreads();
    int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= D) return;
    float acc = 0.f;
    int start = 0;
#pragma unroll 4
    for (int r = 0; r < n; r++) {
        acc += dx[(int64_t)s_row[r] * D + c];
        if (r == n - 1 || s_id[r + 1] != s_id[r]) {   // the segment of s_id[r] ends in this chunk at r
            int id = s_id[r];
            bool continued = start == 0 && id == prev_id;    // began in an earlier chunk
            bool continuing = r == n - 1 && id == next_id;   // goes on in the next chunk
            if (continuing) P[j * D + c] = acc;
            else if (continued) Q[j * D + c] = acc;
            else dE[(int64_t)id * D + c] += acc;             // this chunk holds all of the id's rows
            acc = 0.f;
            start = r + 1;
        }
    }
}

// Pass 2: the chunk where a multi-chunk segment ends adds P of its earlier chunks, in order, then its own Q.
__global__ void embed_bwd_merge_kernel(float *__restrict__ dE, const float *__restrict__ P,
                                       const float *__restrict__ Q, const int *__restrict__ sid, int64_t N, int D) {
    int64_t j = blockIdx.x, p0 = j * EB_CH;
    if (j == 0) return;
    int id = sid[p0];
    if (sid[p0 - 1] != id) return;   // this chunk's first segment starts here: nothing to merge
    int64_t plast = (p0 + EB_CH < N ? p0 + EB_CH : N) - 1;
    if (sid[plast] == id && plast + 1 < N && sid[plast + 1] == id) return;   // it goes on: a later chunk merges
    int64_t k = j - 1;   // chunks k..j-1 hold the earlier rows (each wrote P); find the first
    while (k > 0 && sid[k * EB_CH] == id && sid[k * EB_CH - 1] == id) k--;
    int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= D) return;
    float acc = dE[(int64_t)id * D + c];
    for (int64_t m = k; m < j; m++) acc += P[m * D + c];
    dE[(int64_t)id * D + c] = acc + Q[j * D + c];
}

extern "C" void cuda_embed_bwd(float *dE, const float *dx, const int32_t *ids, int64_t N, int D) {
    if (N <= 0 || D <= 0) return;
    if (N > INT_MAX / 2) die("embedding backward: %lld rows is too many; reduce --batch or --seq-len", (long long)N);
    int64_t ntiles = (N + RS_TILE - 1) / RS_TILE, nchunks = (N + EB_CH - 1) / EB_CH;
    size_t bytes = 4 * align256(N * sizeof(int)) + align256(256 * ntiles * sizeof(int)) +
                   2 * align256(nchunks * D * sizeof(float));
    Carve cv = {scratch(bytes)};
    int *ka = cv.take<int>(N), *va = cv.take<int>(N), *kb = cv.take<int>(N), *vb = cv.take<int>(N);
    int *hist = cv.take<int>(256 * ntiles);
    float *P = cv.take<float>(nchunks * D), *Q = cv.take<float>(nchunks * D);
    const int *kin = ids, *vin = NULL;
    for (int pass = 0; pass < 4; pass++) {
        int *kout = pass % 2 ? kb : ka, *vout = pass % 2 ? vb : va;
        rs_hist_kernel<<<(unsigned)ntiles, RS_TILE, 0, g_stream>>>(hist, kin, N, 8 * pass, (int)ntiles);
        LAUNCH_CHECK("rs_hist");
        scan_exclusive_kernel<<<1, 1024, 0, g_stream>>>(hist, 256 * ntiles);
        LAUNCH_CHECK("scan_exclusive");
        rs_scatter_kernel<<<(unsigned)ntiles, RS_TILE, 0, g_stream>>>(kout, vout, kin, vin, hist, N, 8 * pass,
                                                                      (int)ntiles);
        LAUNCH_CHECK("rs_scatter");
        kin = kout;
        vin = vout;
    }
    dim3 grid((unsigned)nchunks, (unsigned)((D + COL_THREADS - 1) / COL_THREADS));
    embed_bwd_chunks_kernel<<<grid, COL_THREADS, 0, g_stream>>>(dE, P, Q, dx, kin, vin, N, D);
    LAUNCH_CHECK("embed_bwd_chunks");
    embed_bwd_merge_kernel<<<grid, COL_THREADS, 0, g_stream>>>(dE, P, Q, kin, N, D);
    LAUNCH_CHECK("embed_bwd_merge");
}

// ---------------------------------------------------------------------------------------------------------
// elementwise
// ---------------------------------------------------------------------------------------------------------
__global__ void add_kernel(float *__restrict__ y, const float *__restrict__ a, int64_t n) {
    GRID_STRIDE(i, n) y[i] += a[i];
}

extern "C" void cuda_add(float *y, const float *a, int64_t n) {
    if (n <= 0) return;
    add_kernel<<<blocks_for(n, 256), 256, 0, g_stream>>>(y, a, n);
    LAUNCH_CHECK("add");
}

extern "C" void cuda_zero(float *y, int64_t n) {
    if (n <= 0) return;
    CUDA_CHECK(cudaMemsetAsync(y, 0, (size_t)n * sizeof(float), g_stream));   // 0.0f is all zero bits
}

// Sum of squares in double: a fixed grid of SS_BLOCKS blocks whatever n, so the summation order only depends on n.
#define SS_BLOCKS 512
__global__ void sumsq_partial_kernel(double *part, const float *__restrict__ a, int64_t n) {
    double s = 0;
    GRID_STRIDE(i, n) {
        double x = a[i];
        s += x * x;
    }
    s = block_sum_d(s);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}
__global__ void sumsq_final_kernel(double *out, const double *__restrict__ part, int np) {
    double s = 0;
    for (int i = threadIdx.x; i < np; i += blockDim.x) s += part[i];
    s = block_sum_d(s);
    if (threadIdx.x == 0) *out = s;
}

extern "C" double cuda_sumsq(const float *a, int64_t n) {
    if (n <= 0) return 0;
    Carve cv = {scratch(align256(SS_BLOCKS * sizeof(double)) + align256(sizeof(double)))};
    double *part = cv.take<double>(SS_BLOCKS), *out = cv.take<double>(1);
    sumsq_partial_kernel<<<SS_BLOCKS, 256, 0, g_stream>>>(part, a, n);
    LAUNCH_CHECK("sumsq_partial");
    sumsq_final_kernel<<<1, 512, 0, g_stream>>>(out, part, SS_BLOCKS);
    LAUNCH_CHECK("sumsq_final");
    double r;
    cuda_to_host(&r, out, sizeof r);
    return r;
}

// Column sums over rows, deterministic: fixed chunks of rows (COL_ROWS of them for the gates, RN_ROWS for
// RMSNorm) give partials part[chunk, c], each summed in row order; colsum_finish adds those in a fixed order.
#define COL_ROWS 64
// out[c] += the sum of part[j, c] over j < np, in a fixed order: a block takes 32 columns, each of its
// CS_SLICES warps sums a fixed run of np / CS_SLICES rows in order, then the first warp adds the runs in order.
// (One thread per column walking all np rows waited on each load in turn: ~50 us for 512 partials.)
#define CS_SLICES 32
__global__ void colsum_finish_kernel(float *__restrict__ out, const float *__restrict__ part, int64_t np, int C) {
    __shared__ float run[CS_SLICES][32];
    const int lane = threadIdx.x & 31, sl = threadIdx.x >> 5, c = blockIdx.x * 32 + lane;
    const int64_t per = (np + CS_SLICES - 1) / CS_SLICES, j0 = sl * per, j1 = j0 + per < np ? j0 + per : np;
    float s = 0.f;
    if (c < C) {
#pragma unroll 8
        for (int64_t j = j0; j < j1; j++) s += part[j * C + c];
    }
    run[sl][lane] = s;
    __syncthreads();
    if (sl == 0 && c < C) {
        float t = 0.f;
        for (int k = 0; k < CS_SLICES; k++) t += run[k][lane];
        out[c] += t;
    }
}

static void colsum_finish(float *out, const float *part, int64_t np, int C) {
    colsum_finish_kernel<<<(C + 31) / 32, 32 * CS_SLICES, 0, g_stream>>>(out, part, np, C);
    LAUNCH_CHECK("colsum_finish");
}

// ---------------------------------------------------------------------------------------------------------
// RMSNorm: rows held in registers, a block per RN_ROWS rows
// ---------------------------------------------------------------------------------------------------------
// A block of NT threads walks RN_ROWS consecutive rows one at a time; thread t holds the columns 4 (t + NT i)
// .. +3 (i < V) of the row in registers, and w the whole time. The next row's loads are issued before the
// current row's sum is reduced, so each block has two rows in flight: the latency of one row's loads hides
// behind the reduction and the stores of the other. (One warp per row waiting on each row's loads in turn
// moved the backward's bytes at ~1.3 TB/s.) VEC: C % 4 == 0 and every row 16-byte aligned (float4 loads);
// otherwise the same kernel loads column by column. Rows wider than RN_MAXV * 4 * 256 columns take the
// one-warp-per-row kernels further down.
#define RN_ROWS 16
#define RN_MAXV 4
// float4 groups per thread for a row of C columns (1, 2 or 4, so that at most 256 threads cover it), 0 if none
static int rn_v(int C) {
    const int G = (C + 3) / 4;
    for (int v = 1; v <= RN_MAXV; v *= 2)
        if ((G + v - 1) / v <= 256) return v;
    return 0;
}
static int rn_threads(int C, int v) { return ((((C + 3) / 4 + v - 1) / v) + 31) & ~31; }

template <int V, bool VEC>
__device__ __forceinline__ void rn_load(float v[V][4], const float *row, int C) {
#pragma unroll
    for (int i = 0; i < V; i++) {
        const int c = 4 * (threadIdx.x + blockDim.x * i);
        if (VEC) {
            if (c < C) load4(row + c, v[i]);
            else v[i][0] = v[i][1] = v[i][2] = v[i][3] = 0.f;
        } else {
#pragma unroll
            for (int k = 0; k < 4; k++) v[i][k] = c + k < C ? row[c + k] : 0.f;
        }
    }
}
template <int V, bool VEC, typename T>
__device__ __forceinline__ void rn_store(T *row, const float v[V][4], int C) {
#pragma unroll
    for (int i = 0; i < V; i++) {
        const int c = 4 * (threadIdx.x + blockDim.x * i);
        if (VEC) {
            if (c < C) store4(row + c, v[i]);
        } else {
#pragma unroll
            for (int k = 0; k < 4; k++)
                if (c + k < C) put(row + c + k, v[i][k]);
        }
    }
}
template <int V>
__device__ __forceinline__ void rn_copy(float d[V][4], const float s[V][4]) {
#pragma unroll
    for (int i = 0; i < V; i++)
#pragma unroll
        for (int k = 0; k < 4; k++) d[i][k] = s[i][k];
}
// The block's sum of v, the same bits in every thread. buf alternates between two halves from row to row:
// a half is written again only two rows later, after a barrier every thread passes once done reading it.
__device__ __forceinline__ float rn_sum(float v, float *buf) {
    v = warp_sum(v);
    if ((threadIdx.x & 31) == 0) buf[threadIdx.x >> 5] = v;
    __syncthreads();
    const int lane = threadIdx.x & 31;
    return warp_sum(lane < (int)(blockDim.x >> 5) ? buf[lane] : 0.f);
}

// y may be NULL (only rstd), rstd may be NULL (only y). y may equal x (T = float): each thread rewrites what
// it read. With res, x += res first and the sum is written back.
template <int V, bool VEC, typename T>
__global__ void __launch_bounds__(256) rmsnorm_fwd_rows_kernel(T *y, float *rstd, float *x, const float *__restrict__ res,
                                                               const float *__restrict__ w, int64_t N, int C,
                                                               double eps) {
    __shared__ float buf[2][32];
    const int64_t n0 = (int64_t)blockIdx.x * RN_ROWS, n1 = n0 + RN_ROWS < N ? n0 + RN_ROWS : N;
    float wv[V][4], xv[V][4], rv[V][4], nx[V][4], nr[V][4];
    rn_load<V, VEC>(wv, w, C);
    rn_load<V, VEC>(xv, x + n0 * C, C);
    if (res) rn_load<V, VEC>(rv, res + n0 * C, C);
    for (int64_t row = n0; row < n1; row++) {
        if (row + 1 < n1) {   // the next row's loads go out now
            rn_load<V, VEC>(nx, x + (row + 1) * C, C);
            if (res) rn_load<V, VEC>(nr, res + (row + 1) * C, C);
        }
        float ss = 0.f;
#pragma unroll
        for (int i = 0; i < V; i++)
#pragma unroll
            for (int k = 0; k < 4; k++) {
                if (res) xv[i][k] += rv[i][k];
                ss += xv[i][k] * xv[i][k];
            }
        ss = rn_sum(ss, buf[row & 1]);
        const float r = (float)(1.0 / sqrt((double)ss / C + eps));
        if (res) rn_store<V, VEC>(x + row * C, xv, C);
        if (y) {
            float o[V][4];
#pragma unroll
            for (int i = 0; i < V; i++)
#pragma unroll
                for (int k = 0; k < 4; k++) o[i][k] = xv[i][k] * r * wv[i][k];
            rn_store<V, VEC>(y + row * C, o, C);
        }
        if (rstd && threadIdx.x == 0) rstd[row] = r;
        rn_copy<V>(xv, nx);
        if (res) rn_copy<V>(rv, nr);
    }
}

// dx (= or += with acc) r w dy - x r^3 / C * sum(w dy x) and, with part, the block's dw partials
// part[block, c] = sum over its rows of dy x r (each thread owns its columns: no reduction across threads).
template <int V, bool VEC>
__global__ void __launch_bounds__(256) rmsnorm_bwd_rows_kernel(float *__restrict__ dx, int acc, float *__restrict__ part,
                                                               const float *__restrict__ dy, const float *__restrict__ x,
                                                               const float *__restrict__ w,
                                                               const float *__restrict__ rstd, int64_t N, int C) {
    __shared__ float buf[2][32];
    const int64_t n0 = (int64_t)blockIdx.x * RN_ROWS, n1 = n0 + RN_ROWS < N ? n0 + RN_ROWS : N;
    const bool add = dx && acc;
    float wv[V][4], d[V][4], xv[V][4], g[V][4], nd[V][4], nx[V][4], ng[V][4], dwp[V][4];
    rn_load<V, VEC>(wv, w, C);
    rn_load<V, VEC>(d, dy + n0 * C, C);
    rn_load<V, VEC>(xv, x + n0 * C, C);
    if (add) rn_load<V, VEC>(g, dx + n0 * C, C);
    float r = rstd[n0], rn = 0.f;
#pragma unroll
    for (int i = 0; i < V; i++)
#pragma unroll
        for (int k = 0; k < 4; k++) dwp[i][k] = 0.f;
    for (int64_t row = n0; row < n1; row++) {
        if (row + 1 < n1) {   // the next row's loads go out now
            rn_load<V, VEC>(nd, dy + (row + 1) * C, C);
            rn_load<V, VEC>(nx, x + (row + 1) * C, C);
            if (add) rn_load<V, VEC>(ng, dx + (row + 1) * C, C);
            rn = rstd[row + 1];
        }
        float s = 0.f;
#pragma unroll
        for (int i = 0; i < V; i++)
#pragma unroll
            for (int k = 0; k < 4; k++) s += wv[i][k] * d[i][k] * xv[i][k];
        s = rn_sum(s, buf[row & 1]);
        const float coef = s * r * r * r / C;
        if (dx) {
            float o[V][4];
#pragma unroll
            for (int i = 0; i < V; i++)
#pragma unroll
                for (int k = 0; k < 4; k++) {
                    const float t = r * wv[i][k] * d[i][k] - coef * xv[i][k];
                    o[i][k] = add ? g[i][k] + t : t;
                }
            rn_store<V, VEC>(dx + row * C, o, C);
        }
#pragma unroll
        for (int i = 0; i < V; i++)
#pragma unroll
            for (int k = 0; k < 4; k++) dwp[i][k] += d[i][k] * xv[i][k] * r;
        rn_copy<V>(d, nd);
        rn_copy<V>(xv, nx);
        if (add) rn_copy<V>(g, ng);
        r = rn;
    }
    if (part) rn_store<V, VEC>(part + (int64_t)blockIdx.x * C, dwp, C);
}

#define ROWS_PER_BLOCK 8   // warps per block of the one-warp-per-row kernels

// The one-warp-per-row forward for rows too wide for registers; the same contract as the kernel above.
template <typename T>
__global__ void rmsnorm_fwd_kernel(T *y, float *rstd, float *x, const float *__restrict__ res,
                                   const float *__restrict__ w, int64_t N, int C, double eps) {
    int64_t row = (int64_t)blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= N) return;   // the whole warp
    float *xr = x + row * C;
    float ss = 0.f;
    if (res) {
        const float *rr = res + row * C;
        for (int c = lane; c < C; c += 32) {
            const float v = xr[c] + rr[c];
            xr[c] = v;
            ss += v * v;
        }
    } else {
        for (int c = lane; c < C; c += 32) ss += xr[c] * xr[c];
    }
    ss = warp_sum(ss);
    float r = (float)(1.0 / sqrt((double)ss / C + eps));
    if (y) {
        T *yr = y + row * C;
        for (int c = lane; c < C; c += 32) put(yr + c, xr[c] * r * w[c]);
    }
    if (rstd && lane == 0) rstd[row] = r;
}

template <typename T>
static void rmsnorm_fwd_launch(T *y, float *rstd, float *x, const float *res, const float *w, int64_t N, int C,
                               double eps) {
    const int v = rn_v(C);
    const bool vec = C % 4 == 0 && al(x, 16) && al(w, 16) && al(res, 16) && al(y, 4 * sizeof(T));
    const unsigned nb = (unsigned)((N + RN_ROWS - 1) / RN_ROWS), nt = v ? (unsigned)rn_threads(C, v) : 0;
#define RN_FWD(V, VEC) rmsnorm_fwd_rows_kernel<V, VEC, T><<<nb, nt, 0, g_stream>>>(y, rstd, x, res, w, N, C, eps)
    if (v == 1) { if (vec) RN_FWD(1, true); else RN_FWD(1, false); }
    else if (v == 2) { if (vec) RN_FWD(2, true); else RN_FWD(2, false); }
    else if (v == 4) { if (vec) RN_FWD(4, true); else RN_FWD(4, false); }
#undef RN_FWD
    else rmsnorm_fwd_kernel<<<(unsigned)((N + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK), 32 * ROWS_PER_BLOCK, 0,
                              g_stream>>>(y, rstd, x, res, w, N, C, eps);
}

extern "C" void cuda_rmsnorm_fwd(void *y, float *rstd, float *x, const float *res, const float *w, int64_t N, int C,
                                 double eps) {
    if (N <= 0 || C <= 0) return;
    if (opnd_bf16()) rmsnorm_fwd_launch((bf16 *)y, rstd, x, res, w, N, C, eps);
    else rmsnorm_fwd_launch((float *)y, rstd, x, res, w, N, C, eps);
    LAUNCH_CHECK("rmsnorm_fwd");
}

// The one-warp-per-row backward for rows too wide for registers: dx (as above) here, dw below.
__global__ void rmsnorm_bwd_dx_kernel(float *dx, int acc, const float *dy, const float *x,
                                      const float *__restrict__ w, const float *__restrict__ rstd, int64_t N, int C) {
    int64_t row = (int64_t)blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= N) return;
    const float *xr = x + row * C, *dyr = dy + row * C;
    float s = 0.f;
    for (int c = lane; c < C; c += 32) s += w[c] * dyr[c] * xr[c];
    s = warp_sum(s);
    float r = rstd[row];
    float coef = s * r * r * r / C;
    float *dxr = dx + row * C;
    for (int c = lane; c < C; c += 32) {
        const float t = r * w[c] * dyr[c] - coef * xr[c];
        dxr[c] = acc ? dxr[c] + t : t;
    }
}

// dw partials: part[chunk, c] = sum over the chunk's RN_ROWS rows of dy x r
__global__ void rmsnorm_dw_partial_kernel(float *__restrict__ part, const float *__restrict__ dy,
                                          const float *__restrict__ x, const float *__restrict__ rstd, int64_t N,
                                          int C) {
    int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= C) return;
    int64_t n0 = (int64_t)blockIdx.x * RN_ROWS, n1 = n0 + RN_ROWS < N ? n0 + RN_ROWS : N;
    float s = 0.f;
#pragma unroll 4
    for (int64_t n = n0; n < n1; n++) s += dy[n * C + c] * x[n * C + c] * rstd[n];
    part[(int64_t)blockIdx.x * C + c] = s;
}

extern "C" void cuda_rmsnorm_bwd(float *dx, int acc, float *dw, const float *dy, const float *x, const float *w,
                                 const float *rstd, int64_t N, int C, double eps) {
    if (N <= 0 || C <= 0 || (!dx && !dw)) return;
    const int64_t nchunks = (N + RN_ROWS - 1) / RN_ROWS;
    Carve cv = {scratch(align256(N * sizeof(float)) + (dw ? align256(nchunks * C * sizeof(float)) : 0))};
    float *rs = cv.take<float>(N), *part = dw ? cv.take<float>(nchunks * C) : NULL;
    if (!rstd) {   // recompute it once for both outputs
        cuda_rmsnorm_fwd(NULL, rs, (float *)x, NULL, w, N, C, eps);   // reads x only
        rstd = rs;
    }
    const int v = rn_v(C);
    if (v) {   // dx and the dw partials in one pass
        const bool vec = C % 4 == 0 && al(dx, 16) && al(dy, 16) && al(x, 16) && al(w, 16);
        const unsigned nt = (unsigned)rn_threads(C, v);
#define RN_BWD(V, VEC) rmsnorm_bwd_rows_kernel<V, VEC><<<(unsigned)nchunks, nt, 0, g_stream>>>(dx, acc, part, dy, x, w, rstd, N, C)
        if (v == 1) { if (vec) RN_BWD(1, true); else RN_BWD(1, false); }
        else if (v == 2) { if (vec) RN_BWD(2, true); else RN_BWD(2, false); }
        else { if (vec) RN_BWD(4, true); else RN_BWD(4, false); }
#undef RN_BWD
        LAUNCH_CHECK("rmsnorm_bwd_rows");
    } else {
        if (dx) {
            unsigned nb = (unsigned)((N + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK);
            rmsnorm_bwd_dx_kernel<<<nb, 32 * ROWS_PER_BLOCK, 0, g_stream>>>(dx, acc, dy, x, w, rstd, N, C);
            LAUNCH_CHECK("rmsnorm_bwd_dx");
        }
        if (dw) {
            dim3 grid((unsigned)nchunks, (unsigned)((C + COL_THREADS - 1) / COL_THREADS));
            rmsnorm_dw_partial_kernel<<<grid, COL_THREADS, 0, g_stream>>>(part, dy, x, rstd, N, C);
            LAUNCH_CHECK("rmsnorm_dw_partial");
        }
    }
    if (dw) colsum_finish(dw, part, nchunks, C);
}

// ---------------------------------------------------------------------------------------------------------
// gates (docs/model.md "The token mixer (HGRU2)" and "Gradients of the gates"); the same formulas as cpu.c
// ---------------------------------------------------------------------------------------------------------
__global__ void gates_fwd_kernel(float *__restrict__ q, float *__restrict__ k, float *__restrict__ g,
                                 const float *__restrict__ qf, int64_t ldqf, const float *__restrict__ lb, int64_t N,
                                 int HK) {
    ROWS_COLS(n, c, N, HK) {
        const int64_t i = n * HK + c;
        const float *qp = qf + n * ldqf;
        float x = qp[c], f = qp[HK + c], s, sn;
        sigmoid2(x, s, sn);
        q[i] = x * s;
        sigmoid2(f, s, sn);
        if (!lb) {
            g[i] = -((f < 0 ? -f : 0.f) + log1pf(expf(-fabsf(f))));   // logsigmoid(f) = -softplus(-f)
            k[i] = sn;
        } else {
            // g = log(lam) = log1p(-k): log1p keeps precision when the gate is near 1, log(lam) when near 0
            float l = lb[c], kk = (1 - l) * sn;
            k[i] = kk;
            g[i] = kk < 0.5f ? log1pf(-kk) : logf(l + (1 - l) * s);
        }
    }
}

extern "C" void cuda_gates_fwd(float *q, float *k, float *g, const float *qf, int64_t ldqf, const float *lb, int64_t N,
                               int HK) {
    if (N <= 0 || HK <= 0) return;
    gates_fwd_kernel<<<blocks_for(N, 1), 256, 0, g_stream>>>(q, k, g, qf, ldqf, lb, N, HK);
    LAUNCH_CHECK("gates_fwd");
}

// grid (row chunk, column tile): each thread writes dqf for its column over COL_ROWS rows and, with a lower
// bound, leaves the chunk's dlb partial in part. dqf may equal qf: every element is read before it is written.
__global__ void gates_bwd_kernel(float *dqf, int64_t lddqf, float *__restrict__ part, const float *__restrict__ dq,
                                 const float *__restrict__ dk, const float *__restrict__ dg, const float *qf,
                                 int64_t ldqf, const float *__restrict__ lb, int64_t N, int HK) {
    int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= HK) return;
    int64_t n0 = (int64_t)blockIdx.x * COL_ROWS, n1 = n0 + COL_ROWS < N ? n0 + COL_ROWS : N;
    float l = lb ? lb[c] : 0.f, acc = 0.f;
#pragma unroll 4
    for (int64_t n = n0; n < n1; n++) {
        float x = qf[n * ldqf + c], f = qf[n * ldqf + HK + c];
        float dqv = dq[n * HK + c], dkv = dk[n * HK + c], dgv = dg[n * HK + c];
        float sq, sqn, s, sn;
        sigmoid2(x, sq, sqn);
        sigmoid2(f, s, sn);
        dqf[n * lddqf + c] = dqv * (sq + x * sq * sqn);
        if (!lb) {
            dqf[n * lddqf + HK + c] = (dgv - dkv * s) * sn;   // lam = s, k = 1 - s
        } else {
            float lam = l + (1 - l) * s, dlam = dgv / lam - dkv;
            dqf[n * lddqf + HK + c] = dlam * (1 - l) * s * sn;
            acc += dlam * sn;
        }
    }
    if (part) part[(int64_t)blockIdx.x * HK + c] = acc;
}

extern "C" void cuda_gates_bwd(float *dqf, int64_t lddqf, float *dlb, const float *dq, const float *dk,
                               const float *dg, const float *qf, int64_t ldqf, const float *lb, int64_t N, int HK) {
    if (N <= 0 || HK <= 0) return;
    int64_t nchunks = (N + COL_ROWS - 1) / COL_ROWS;
    float *part = NULL;
    if (lb && dlb) part = (float *)scratch(align256(nchunks * HK * sizeof(float)));
    dim3 grid((unsigned)nchunks, (unsigned)((HK + COL_THREADS - 1) / COL_THREADS));
    gates_bwd_kernel<<<grid, COL_THREADS, 0, g_stream>>>(dqf, lddqf, part, dq, dk, dg, qf, ldqf, lb, N, HK);
    LAUNCH_CHECK("gates_bwd");
    if (part) colsum_finish(dlb, part, nchunks, HK);
}

// ---------------------------------------------------------------------------------------------------------
// lower bounds: one thread per channel, looping over the L layers (tiny)
// ---------------------------------------------------------------------------------------------------------
// p = softmax over layers; lb[l] = p[1] + ... + p[l] (= cumsum(p)[l] - p[0] without the cancellation)
__global__ void lb_fwd_kernel(float *__restrict__ lb, const float *__restrict__ P, int L, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C || L <= 0) return;
    float m = P[c];
    for (int l = 1; l < L; l++) m = fmaxf(m, P[(int64_t)l * C + c]);
    float z = 0.f;
    for (int l = 0; l < L; l++) z += expf(P[(int64_t)l * C + c] - m);
    float acc = 0.f;
    lb[c] = 0.f;
    for (int l = 1; l < L; l++) {
        acc += expf(P[(int64_t)l * C + c] - m) / z;
        lb[(int64_t)l * C + c] = acc;
    }
}

// dp[j] = sum_{l>=j} dlb[l] for j >= 1, dp[0] = 0; dP += p (dp - sum_l p dp)
__global__ void lb_bwd_kernel(float *__restrict__ dP, const float *__restrict__ dlb, const float *__restrict__ P,
                              int L, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C || L <= 0) return;
    float m = P[c];
    for (int l = 1; l < L; l++) m = fmaxf(m, P[(int64_t)l * C + c]);
    float z = 0.f;
    for (int l = 0; l < L; l++) z += expf(P[(int64_t)l * C + c] - m);
    float acc = 0.f, s = 0.f;
    for (int l = L - 1; l >= 1; l--) {
        acc += dlb[(int64_t)l * C + c];
        s += expf(P[(int64_t)l * C + c] - m) / z * acc;
    }
    acc = 0.f;
    for (int l = L - 1; l >= 0; l--) {
        if (l >= 1) acc += dlb[(int64_t)l * C + c];
        float p = expf(P[(int64_t)l * C + c] - m) / z;
        dP[(int64_t)l * C + c] += p * ((l >= 1 ? acc : 0.f) - s);
    }
}

extern "C" void cuda_lower_bounds_fwd(float *lb, const float *P, int L, int C) {
    if (L <= 0 || C <= 0) return;
    lb_fwd_kernel<<<(C + 127) / 128, 128, 0, g_stream>>>(lb, P, L, C);
    LAUNCH_CHECK("lower_bounds_fwd");
}

extern "C" void cuda_lower_bounds_bwd(float *dP, const float *dlb, const float *P, int L, int C) {
    if (L <= 0 || C <= 0) return;
    lb_bwd_kernel<<<(C + 127) / 128, 128, 0, g_stream>>>(dP, dlb, P, L, C);
    LAUNCH_CHECK("lower_bounds_bwd");
}

// ---------------------------------------------------------------------------------------------------------
// the HGRU2 recurrence
// ---------------------------------------------------------------------------------------------------------
// Forward and backward are four sweeps over time of one kernel template. Each sweep keeps a K x Dv matrix X per
// (b, h) in registers, updates it with a per-row decay and a rank-1 term, and reduces it against a vector:
//
//   sweep  time     state                                      output
//   FWD    forward  S_t  = diag(a_t) S_{t-1} + k_t v_t^T         o_t  = S_t^T q~_t         (sum over rows i)
//   DV     reverse  dS_t = diag(a_{t+1}) dS_{t+1} + q~_t do_t^T  dv_t = dS_t^T k_t         (sum over rows i)
//   DQ     forward  S_t  as in FWD                               dq_t = S_t do_t / sqrt(K) (sum over columns j)
//   DKG    reverse  dS_t as in DV                                dk_t = dS_t v_t           (sum over columns j)
//                   and dg_t = sum_{s>=t} (q_s dq_s - k_s dk_s) (a running sum in double, from DQ's dq)
//
// with a = exp(g) and q~ = q / sqrt(K). The dg identity holds because, from a zero entering state, q_t and
// G_t = g_1 + ... + g_t enter the outputs only as q_t exp(G_t), and k_s only as k_s exp(-G_s) (docs/model.md "Gradients of the gates").
// So the backward needs no stored states: DQ reruns the forward, DV and DKG run dS backwards from zero.
//
// The reduced dimension runs across lanes: the "lane dim" is rows i (FWD, DV) or columns j (DQ, DKG), the
// "thread dim" the other. A block owns one (b, h) and NM consecutive thread-dim indices; thread (lg, mg) holds
// X[l][m] for the LR lane-dim indices l = lg + LG*r (interleaved, so the lanes of a warp read consecutive shared
// words) and the MC consecutive m = mg*MC + c. The LG lanes of a group (a power of two, within one warp) hold the
// whole lane dim, padded to PL = LG*LR with zero vectors (decay 1), so the output is a sum over their registers
// and a few shuffles (group_reduce4). Time runs in chunks of C steps whose vectors are staged in shared memory:
// LV[t][l] = {x_l, w_l, d_l} for the lane dim (rank-1 factor, reduction weight, decay when rows are lanes) and
// y, d for the thread dim; outputs collect in shared memory and leave coalesced at the end of the chunk.
// Rows of the state never mix (the decay is per row), so the split into blocks needs no communication.
enum { SW_FWD = 0, SW_DV = 1, SW_DQ = 2, SW_DKG = 3 };
#define SW_MC 4          // thread-dim elements per thread (one float4)
#define SW_THREADS 128   // target block size

// Sums p[0..3] over the LG lanes of a group (LG a power of two, the group aligned within its warp) as a
// reduce-scatter: the first level halves the values each lane carries, the second halves them again, the
// rest all-reduce the one left (LG = 16: 5 shuffles instead of 16). Returns a mask: bit c set when this lane
// holds the group's full sum of value c in p[c]; every c has exactly one such lane, always the same one.
__device__ __forceinline__ unsigned group_reduce4(float p[4], int lg, int LG) {
    if (LG == 1) return 0xFu;
    const int h = LG >> 1;
    const bool hi = (lg & h) != 0;
    float k0 = hi ? p[2] : p[0], k1 = hi ? p[3] : p[1];          // keep two values ...
    const float s0 = hi ? p[0] : p[2], s1 = hi ? p[1] : p[3];    // ... the partner lane keeps the other two
    k0 += __shfl_xor_sync(0xffffffffu, s0, h);
    k1 += __shfl_xor_sync(0xffffffffu, s1, h);
    if (LG == 2) {
        p[0] = p[2] = k0;
        p[1] = p[3] = k1;
        return hi ? 0xCu : 0x3u;
    }
    const int h2 = LG >> 2;
    const bool hi2 = (lg & h2) != 0;
    float v = hi2 ? k1 : k0;
    v += __shfl_xor_sync(0xffffffffu, hi2 ? k0 : k1, h2);
    for (int off = h2 >> 1; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    p[0] = p[1] = p[2] = p[3] = v;
    if (lg & (h2 - 1)) return 0;   // one writer per value: the lane whose remaining low bits are clear
    return 1u << ((hi ? 2 : 0) + (hi2 ? 1 : 0));
}

struct SweepArgs {
    float *out, *out2, *ST;   // o / dv / dq / dk; dg (DKG); the leaving state (FWD)
    const float *S0, *q, *k, *g, *v, *dout, *dq;
    int64_t ldv, ldo;         // row strides of v and of out (and out2)
    int T, H, K, Dv;
    int LG, PL, PLsh, NM, C;  // PL = 1 << PLsh
    float scale;              // 1 / sqrt(K)
};

template <int MODE, int LR>
__global__ void __launch_bounds__(SW_THREADS) hgru_sweep_kernel(SweepArgs a) {
    constexpr bool TR = MODE == SW_DQ || MODE == SW_DKG;   // lanes run over columns j, threads over rows i
    constexpr bool REV = MODE == SW_DV || MODE == SW_DKG;  // reverse time
    constexpr int MC = SW_MC;
    static_assert(MC == 4, "the step loop reads the thread-dim vectors as float4");
    extern __shared__ float4 smem[];
    const int C = a.C, PL = a.PL, NM = a.NM, LG = a.LG, T = a.T, H = a.H, K = a.K, Dv = a.Dv;
    float4 *LV = smem;                              // [C][PL]
    float *yM = (float *)(LV + (size_t)C * PL);     // [C][NM] thread-dim rank-1 factor
    float *oM = yM + C * NM;                        // [C][NM] outputs
    float *dM = oM + C * NM;                        // [C][NM] thread-dim decay (TR)
    float *qM = dM + C * NM, *kM = qM + C * NM, *dqM = kM + C * NM, *gM = dqM + C * NM;   // DKG only

    const int bh = blockIdx.x, b = bh / H, h = bh - b * H;
    const int m0 = blockIdx.y * NM;
    const int Ld = TR ? Dv : K, Md = TR ? K : Dv;
    const int tid = threadIdx.x, nthr = blockDim.x;
    const int lg = tid % LG, mloc = (tid / LG) * MC;
    const int64_t HK = (int64_t)H * K, HDv = (int64_t)H * Dv;

    float X[LR][MC];
#pragma unroll
    for (int r = 0; r < LR; r++)
#pragma unroll
        for (int c = 0; c < MC; c++) {
            X[r][c] = 0.f;
            if (MODE == SW_FWD && a.S0) {
                int i = lg + LG * r, j = m0 + mloc + c;
                if (i < K && j < Dv) X[r][c] = a.S0[((int64_t)bh * K + i) * Dv + j];
            }
        }
    double acc[MC] = {};   // DKG: running sum of q dq - k dk, per owned row

    const int nch = (T + C - 1) / C;
    for (int ci = 0; ci < nch; ci++) {
        const int t0 = (REV ? nch - 1 - ci : ci) * C, n = T - t0 < C ? T - t0 : C;
        __syncthreads();   // the previous chunk is done with the staging buffers
        // ---- stage the lane-dim vectors: {x, w, d} ----
        // (__ldg: read-only global loads, which the compiler may batch across the unrolled iterations ahead of
        // the shared-memory stores; plain generic loads could alias shared memory and would go one at a time)
#pragma unroll 4
        for (int idx = tid; idx < n * PL; idx += nthr) {
            int tt = idx >> a.PLsh, l = idx & (PL - 1), t = t0 + tt;
            int64_t row = (int64_t)b * T + t;
            float4 e = make_float4(0.f, 0.f, 1.f, 0.f);
            if (l < Ld) {
                if (MODE == SW_FWD || MODE == SW_DV) {
                    int64_t o = row * HK + (int64_t)h * K + l;
                    if (MODE == SW_FWD) {
                        e.x = __ldg(a.k + o);
                        e.y = __ldg(a.q + o) * a.scale;
                        e.z = expf(__ldg(a.g + o));
                    } else {
                        e.x = __ldg(a.q + o) * a.scale;
                        e.y = __ldg(a.k + o);
                        e.z = t + 1 < T ? expf(__ldg(a.g + o + HK)) : 1.f;   // dS_{T} = 0: any finite decay
                    }
                } else {
                    float vv = __ldg(a.v + row * a.ldv + (int64_t)h * Dv + l);
                    float dd = __ldg(a.dout + row * HDv + (int64_t)h * Dv + l);
                    e.x = MODE == SW_DQ ? vv : dd;
                    e.y = MODE == SW_DQ ? dd : vv;
                }
            }
            LV[idx] = e;
        }
        // ---- stage the thread-dim vectors ----
#pragma unroll 4
        for (int idx = tid; idx < n * NM; idx += nthr) {
            int tt = idx / NM, mm = idx - tt * NM, t = t0 + tt, m = m0 + mm;
            int64_t row = (int64_t)b * T + t;
            float y = 0.f, d = 1.f, qq = 0.f, kk = 0.f, dqq = 0.f;
            if (m < Md) {
                if (MODE == SW_FWD) y = __ldg(a.v + row * a.ldv + (int64_t)h * Dv + m);
                else if (MODE == SW_DV) y = __ldg(a.dout + row * HDv + (int64_t)h * Dv + m);
                else {
                    int64_t o = row * HK + (int64_t)h * K + m;
                    if (MODE == SW_DQ) {
                        y = __ldg(a.k + o);
                        d = expf(__ldg(a.g + o));
                    } else {
                        qq = __ldg(a.q + o);
                        kk = __ldg(a.k + o);
                        dqq = __ldg(a.dq + o);   // written by the DQ sweep, an earlier kernel
                        y = qq * a.scale;
                        d = t + 1 < T ? expf(__ldg(a.g + o + HK)) : 1.f;
                    }
                }
            }
            yM[idx] = y;
            if (TR) dM[idx] = d;
            if (MODE == SW_DKG) { qM[idx] = qq; kM[idx] = kk; dqM[idx] = dqq; }
        }
        __syncthreads();
        // ---- the steps ----
        for (int s = 0; s < n; s++) {
            const int tt = REV ? n - 1 - s : s;
            const float4 *lv = LV + (size_t)tt * PL;
            const float4 y4 = *(const float4 *)(yM + tt * NM + mloc);
            const float ym[MC] = {y4.x, y4.y, y4.z, y4.w};
            float dm[MC] = {1.f, 1.f, 1.f, 1.f};
            if (TR) {
                const float4 d4 = *(const float4 *)(dM + tt * NM + mloc);
                dm[0] = d4.x; dm[1] = d4.y; dm[2] = d4.z; dm[3] = d4.w;
            }
            float p[MC] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
            for (int r = 0; r < LR; r++) {
                const float4 e = lv[lg + LG * r];
#pragma unroll
                for (int c = 0; c < MC; c++) {
                    X[r][c] = fmaf(TR ? dm[c] : e.z, X[r][c], e.x * ym[c]);
                    p[c] = fmaf(e.y, X[r][c], p[c]);
                }
            }
            const unsigned own = group_reduce4(p, lg, LG);
#pragma unroll
            for (int c = 0; c < MC; c++)
                if (own >> c & 1) {   // this lane holds the group's sum for output c (a fixed lane per c)
                    const int mi = tt * NM + mloc + c;
                    const float val = MODE == SW_DQ ? p[c] * a.scale : p[c];
                    oM[mi] = val;
                    if (MODE == SW_DKG) {
                        acc[c] += (double)qM[mi] * dqM[mi] - (double)kM[mi] * val;
                        gM[mi] = (float)acc[c];
                    }
                }
        }
        __syncthreads();
        // ---- write the chunk's outputs ----
        for (int idx = tid; idx < n * NM; idx += nthr) {
            int tt = idx / NM, mm = idx - tt * NM, m = m0 + mm;
            if (m < Md) {
                int64_t o = ((int64_t)b * T + t0 + tt) * a.ldo + (int64_t)h * Md + m;
                a.out[o] = oM[idx];
                if (MODE == SW_DKG) a.out2[o] = gM[idx];
            }
        }
    }
    if (MODE == SW_FWD && a.ST) {   // each thread rewrites only the S0 elements it read: ST may equal S0
#pragma unroll
        for (int r = 0; r < LR; r++)
#pragma unroll
            for (int c = 0; c < MC; c++) {
                int i = lg + LG * r, j = m0 + mloc + c;
                if (i < K && j < Dv) a.ST[((int64_t)bh * K + i) * Dv + j] = X[r][c];
            }
    }
}

template <int MODE, int LR>
static void sweep_launch_lr(const SweepArgs &a, dim3 grid, int threads, size_t smem) {
    static size_t attr_bytes = 0;   // per instantiation: the dynamic shared memory already allowed
    if (smem > 48 * 1024 && smem > attr_bytes) {
        CUDA_CHECK(cudaFuncSetAttribute(hgru_sweep_kernel<MODE, LR>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)smem));
        attr_bytes = smem;
    }
    hgru_sweep_kernel<MODE, LR><<<grid, threads, smem, g_stream>>>(a);
    LAUNCH_CHECK(MODE == SW_FWD ? "hgru_fwd" : MODE == SW_DV ? "hgru_bwd_dv" : MODE == SW_DQ ? "hgru_bwd_dq"
                                                                                               : "hgru_bwd_dk_dg");
}

// Picks the thread layout and chunk length for one sweep and launches it.
template <int MODE>
static void sweep_launch(SweepArgs a, int B) {
    const bool TR = MODE == SW_DQ || MODE == SW_DKG;
    const int Ld = TR ? a.Dv : a.K, Md = TR ? a.K : a.Dv;
    if (Ld > 512) die("the CUDA HGRU2 kernels support K and Dv up to 512, got K %d, Dv %d", a.K, a.Dv);
    const int LR = Ld <= 256 ? 8 : 16;
    int LG = 1;
    while (LG * LR < Ld) LG *= 2;   // at most 32
    const int PL = LG * LR;
    int MG = (Md + SW_MC - 1) / SW_MC;                      // thread groups to cover the thread dim
    if (MG > SW_THREADS / LG) MG = SW_THREADS / LG;
    const int wq = 32 / LG;                                  // whole warps: shuffles use the full mask
    MG = (MG + wq - 1) / wq * wq;
    const int NM = MG * SW_MC, threads = LG * MG;
    const int nM = MODE == SW_DKG ? 7 : TR ? 3 : 2;          // thread-dim arrays in shared memory
    auto smem_for = [&](int C) { return (size_t)C * PL * sizeof(float4) + (size_t)nM * C * NM * sizeof(float); };
    // 64 steps per chunk unless that takes more than ~80 KiB (then fewer, so 2-3 blocks fit on an SM)
    int C = 64;
    while (C > 8 && smem_for(C) > 80 * 1024) C /= 2;
    while (C > 1 && smem_for(C) > (size_t)g_prop.sharedMemPerBlockOptin) C /= 2;
    if (smem_for(C) > (size_t)g_prop.sharedMemPerBlockOptin)
        die("HGRU2 kernel: K %d, Dv %d need more shared memory than this GPU has", a.K, a.Dv);
    a.LG = LG;
    a.PL = PL;
    a.PLsh = 0;
    while ((1 << a.PLsh) < PL) a.PLsh++;
    a.NM = NM;
    a.C = C;
    a.scale = (float)(1.0 / sqrt((double)a.K));
    if ((int64_t)B * a.H > INT_MAX) die("HGRU2 kernel: B*H = %lld is too large", (long long)B * a.H);
    dim3 grid((unsigned)(B * a.H), (unsigned)((Md + NM - 1) / NM));
    if (LR == 8) sweep_launch_lr<MODE, 8>(a, grid, threads, smem_for(C));
    else sweep_launch_lr<MODE, 16>(a, grid, threads, smem_for(C));
}

// ---------------------------------------------------------------------------------------------------------
// the HGRU2 recurrence, chunked form on tensor cores (chunk > 0, K = Dv = 64 or 128)
// ---------------------------------------------------------------------------------------------------------
// docs/model.md "The chunked form", with chunks of CK = 64 steps and matrix operands in bf16 (fp32 accumulation,
// fp32 state). Per (b, h) and chunk c, with b_r the cumulative sum of g inside the chunk (b_C its last value):
//
//   qs_r = q_r exp(b_r) / sqrt(K)            ks_s = k_s exp(b_C - b_s)          decay = exp(b_C)
//   A_rs = sum_i q_ri k_si exp(b_ri - b_si) / sqrt(K)   (s <= r)
//   o    = qs S_c + A v                      S_{c+1} = diag(decay) S_c + ks^T v
//
// Every exponent is <= 0 (g <= 0 and each is a difference b_r - b_s with r >= s), so nothing overflows. A's
// off-diagonal 16 x 16 blocks are tensor-core products of q exp(b - b_n) and k exp(b_n - b) with the anchor n
// the first row of the query block (both factors <= 1); its diagonal blocks are summed elementwise in fp32.
//
// Kernels (all one launch over the grid shown):
//   chunk_prep     (chunk, b*h)          b, qs, ks, decay and A for every chunk: fully parallel
//   chunk_state    (Dv/32, b*h)          the sweep over chunks: S in fp32 in shared memory, one 32-column slice
//                                        of Dv per block (columns of S never mix). Forward: o, and the
//                                        leaving state. Backward: the entering state of each chunk (bf16), or,
//                                        run in reverse with qs and do in place of ks and v, the state
//                                        gradient dS leaving each chunk: dS_c = diag(decay) dS_{c+1} + qs^T do
//   chunk_bwd_mm   (chunk, b*h)          the tensor-core part of the backward: dqs = do S^T, dks = v dS^T,
//                                        dv = A^T do + ks dS, dA = do v^T, and exp(b_C) sum_j S dS
//   chunk_bwd_qkg  (K/32, chunk, b*h)    dq, dk from dqs, dks and dA (the intra-chunk terms, anchored like A,
//                                        diagonal blocks by running products of exp(g)), then dg
//
// dg uses the identity of docs/model.md "Gradients of the gates" inside each chunk only: with w = q dq - k dk,
//   dg_t = sum_{u >= t in the chunk} w_u + sum_s k_s dk_s(inter) + exp(b_C) sum_j S_c[., j] dS_c[., j]
// where dk(inter) = dks exp(b_C - b) is the part of dk that goes through the leaving state. The last two
// terms are what the later chunks' w would add up to; taking them directly keeps the sum to 64 terms, so the
// bf16 rounding of dq and dk does not accumulate along the sequence.
#include <mma.h>
#include <cuda_pipeline.h>

#define CK 64   // chunk length

struct ChunkArgs {
    const float *q, *k, *g, *v, *dout, *S0;
    float *o, *ST, *dq, *dk, *dg, *dv;
    int64_t ldv, lddv;
    // scratch, per (b, h, chunk) unless said
    float *b;                 // [B,T,H,K] cumulative g inside each chunk
    bf16 *qs, *ks;            // [BH][NC][CK][K] (rows past T are zero)
    bf16 *A;                  // [BH][NC][CK][CK] lower triangle, zero above
    float *decay;             // [BH][NC][K]
    bf16 *hs, *dhs;           // [BH][NC][K][Dv]: state entering chunk c; state gradient leaving chunk c
    float *dA;                // [BH][NC][CK][CK] (blocks on and below the diagonal)
    float *bnd;               // [BH][NC][K] exp(b_C) sum_j S_c dS_c
    int T, H, NC;
    float scale;
    bool qkg_vec, v_vec, do_vec;   // q, k, g / v / dout rows 16-byte aligned (the copies go 16 bytes at a time)
    bool dqk_vec, dv_vec;          // likewise dq and dk / dv (the backward's stores)
};

namespace wm = nvcuda::wmma;
typedef wm::fragment<wm::matrix_a, 16, 16, 16, bf16, wm::row_major> FragA;
typedef wm::fragment<wm::matrix_a, 16, 16, 16, bf16, wm::col_major> FragAt;
typedef wm::fragment<wm::matrix_b, 16, 16, 16, bf16, wm::row_major> FragB;
typedef wm::fragment<wm::matrix_b, 16, 16, 16, bf16, wm::col_major> FragBt;
typedef wm::fragment<wm::accumulator, 16, 16, 16, float> FragC;

// acc += sum over kk in [k0, k1) of A_kk B_kk, 16 x 16 bf16 tiles at a + kk * da and b + kk * db (elements);
// FA and FB say how each sits in memory (a col_major fragment reads a transposed operand).
template <typename FA, typename FB>
__device__ __forceinline__ void mma_run(FragC &acc, const bf16 *a, int lda, int da, const bf16 *b, int ldb, int db,
                                        int k0, int k1) {
    FA fa;
    FB fb;
#pragma unroll
    for (int kk = k0; kk < k1; kk++) {
        wm::load_matrix_sync(fa, a + kk * da, lda);
        wm::load_matrix_sync(fb, b + kk * db, ldb);
        wm::mma_sync(acc, fa, fb, acc);
    }
}

// global row of (b, h, t) in a [B,T,H,X] tensor, in units of X
__device__ __forceinline__ int64_t bth(int bb, int t, int h, int T, int H) { return ((int64_t)bb * T + t) * H + h; }

// ---- asynchronous copies into shared memory (cp.async: no registers, and the loads of the next chunk
// overlap the work on this one) ----
// bytes (a multiple of 16) from 16-byte aligned src to dst
__device__ __forceinline__ void copy_async(void *dst, const void *src, int bytes, int tid, int nthr) {
    for (int i = tid * 16; i < bytes; i += nthr * 16)
        __pipeline_memcpy_async((char *)dst + i, (const char *)src + i, 16);
}
// rows x COLS floats, global row stride gld, shared row stride SLD (in floats); 16-byte pieces when vec
// (src, gld, SLD and COLS all multiples of 4 floats), else 4-byte ones
template <int COLS, int SLD>
__device__ __forceinline__ void rows_async(float *dst, const float *src, int64_t gld, int rows, bool vec, int tid,
                                           int nthr) {
    if (vec) {
        constexpr int per = COLS / 4;
        for (int i = tid; i < rows * per; i += nthr) {
            const int r = i / per, c = (i % per) * 4;
            __pipeline_memcpy_async(dst + r * SLD + c, src + r * gld + c, 16);
        }
    } else {
        for (int i = tid; i < rows * COLS; i += nthr) {
            const int r = i / COLS, c = i % COLS;
            __pipeline_memcpy_async(dst + r * SLD + c, src + r * gld + c, 4);
        }
    }
}

// bf16 tiles in shared memory get rows of cols + 8 elements: a 16-byte shift per row puts the eight rows a
// tensor-core fragment load reads at once in different banks.
#define PADB 8
// ROWS x COLS bf16 from a dense [ROWS][COLS] global tile into shared rows of stride COLS + PADB
template <int ROWS, int COLS>
__device__ __forceinline__ void tile_async(bf16 *dst, const bf16 *src, int tid, int nthr) {
    constexpr int per = COLS / 8;
    for (int i = tid; i < ROWS * per; i += nthr) {
        const int r = i / per, c = (i % per) * 8;
        __pipeline_memcpy_async(dst + r * (COLS + PADB) + c, src + r * COLS + c, 16);
    }
}

// ---- chunk_prep ----
// Scores A: the 16 x 16 blocks (qb, kb), kb <= qb, are products of Qn = q exp(b - b_n) and Kn = k exp(b_n - b)
// with n = 16 qb. Off the diagonal both factors are <= 1. On it Kn's factor is >= 1, up to exp(b_n - b_{n+15});
// where that span exceeds DIAG_SPAN in some channel (gates near zero for 15 steps), that block is summed
// elementwise in fp32 instead (exp(b_r - b_s) <= 1 term by term).
#define DIAG_SPAN 64.f
template <int K>
struct PrepSmem {
    static constexpr int LDF = K + 4, LDA = CK + 4, LDB = K + PADB;
    static constexpr size_t bytes = sizeof(float) * (CK * LDF + CK * LDA) + sizeof(bf16) * (CK + 160) * LDB + 16;
};
__device__ __forceinline__ int kn_row0(int qb) { return 8 * qb * (qb + 1); }   // Kn rows of query block qb

template <int K>
__global__ void __launch_bounds__(256, 2) chunk_prep_kernel(ChunkArgs a) {
    typedef PrepSmem<K> L;
    constexpr int LDF = L::LDF, LDA = L::LDA, LDB = L::LDB;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    float *bs = (float *)smem_raw;            // [CK][LDF] g, then b
    float *Af = bs + CK * LDF;                // [CK][LDA] scores
    bf16 *Qn = (bf16 *)(Af + CK * LDA);       // [CK][LDB]
    bf16 *Kn = Qn + CK * LDB;                 // [160][LDB]: for query block qb, rows kn_row0(qb) .. + 16 qb + 15
    int *wide = (int *)(Kn + 160 * LDB);      // [4]: diagonal blocks summed elementwise

    constexpr int NTH = 256;
    const int c = blockIdx.x, bh = blockIdx.y, bb = bh / a.H, h = bh - bb * a.H, tid = threadIdx.x;
    const int t0 = c * CK, len = min(CK, a.T - t0);
    const int64_t row0 = bth(bb, t0, h, a.T, a.H) * K, ld = (int64_t)a.H * K;
    rows_async<K, LDF>(bs, a.g + row0, ld, len, a.qkg_vec, tid, NTH);
    __pipeline_commit();
    for (int i = len * K + tid; i < CK * K; i += blockDim.x) bs[(i / K) * LDF + i % K] = 0.f;   // rows past T
    if (tid < 4) wide[tid] = 0;
    __pipeline_wait_prior(0);
    __syncthreads();
    const int64_t cidx = (int64_t)bh * a.NC + c;
    if (tid < K) {   // cumulative sums down each channel; rows past T add g = 0
        float run = 0, bn = 0;
        for (int r = 0; r < CK; r++) {
            run += bs[r * LDF + tid];
            bs[r * LDF + tid] = run;
            if (r < len) a.b[row0 + (int64_t)r * ld + tid] = run;
            if ((r & 15) == 0) bn = run;
            if ((r & 15) == 15 && bn - run > DIAG_SPAN) atomicOr(&wide[r >> 4], 1);
        }
        a.decay[cidx * K + tid] = __expf(run);
    }
    __syncthreads();
    bf16 *qs = a.qs + cidx * CK * K, *ks = a.ks + cidx * CK * K;
    // four consecutive channels per thread: 16-byte loads of q and k (when their rows allow), 8-byte stores
#pragma unroll 2
    for (int i = 4 * tid; i < CK * K; i += 4 * NTH) {
        const int r = i / K, col = i % K, rb = r >> 4;
        float qv[4] = {0.f, 0.f, 0.f, 0.f}, kv[4] = {0.f, 0.f, 0.f, 0.f};
        if (r < len) {
            const float *qr = a.q + row0 + (int64_t)r * ld + col, *kr = a.k + row0 + (int64_t)r * ld + col;
            if (a.qkg_vec) { load4(qr, qv); load4(kr, kv); }
            else
                for (int e = 0; e < 4; e++) { qv[e] = qr[e]; kv[e] = kr[e]; }
        }
        float br[4], bC[4], bn[4], v[4];
        load4(bs + r * LDF + col, br);
        load4(bs + (CK - 1) * LDF + col, bC);
        load4(bs + rb * 16 * LDF + col, bn);
        for (int e = 0; e < 4; e++) v[e] = qv[e] * __expf(br[e]) * a.scale;
        store4(qs + i, v);
        for (int e = 0; e < 4; e++) v[e] = kv[e] * __expf(bC[e] - br[e]);
        store4(ks + i, v);
        for (int e = 0; e < 4; e++) v[e] = qv[e] * __expf(br[e] - bn[e]);
        store4(Qn + r * LDB + col, v);
        for (int qb = rb; qb < 4; qb++) {
            load4(bs + qb * 16 * LDF + col, bn);
            for (int e = 0; e < 4; e++) v[e] = kv[e] * __expf(fminf(bn[e] - br[e], 80.f));
            store4(Kn + (kn_row0(qb) + r) * LDB + col, v);
        }
    }
    __syncthreads();
    const int warp = tid >> 5;
    for (int t = warp; t < 10; t += 8) {   // the ten blocks on and below the diagonal, on tensor cores
        const int qb = t < 1 ? 0 : t < 3 ? 1 : t < 6 ? 2 : 3, kb = t - (qb * (qb + 1)) / 2;
        FragC acc;
        wm::fill_fragment(acc, 0.f);
        mma_run<FragA, FragBt>(acc, Qn + qb * 16 * LDB, LDB, 16, Kn + (kn_row0(qb) + kb * 16) * LDB, LDB, 16, 0, K / 16);
        wm::store_matrix_sync(Af + qb * 16 * LDA + kb * 16, acc, LDA, wm::mem_row_major);
    }
    __syncthreads();
    for (int blk = 0; blk < 4; blk++) {   // rare: a diagonal block with a wide span, elementwise in fp32
        if (!wide[blk]) continue;
        for (int p = tid; p < 136; p += blockDim.x) {
            int rr = 0;
            while ((rr + 1) * (rr + 2) / 2 <= p) rr++;
            const int r = blk * 16 + rr, s_ = blk * 16 + p - rr * (rr + 1) / 2;
            float acc = 0;
            if (r < len)
                for (int i = 0; i < K; i++)
                    acc += a.q[row0 + (int64_t)r * ld + i] * a.k[row0 + (int64_t)s_ * ld + i] *
                           __expf(bs[r * LDF + i] - bs[s_ * LDF + i]);
            Af[r * LDA + s_] = acc;
        }
    }
    __syncthreads();
    bf16 *A = a.A + cidx * CK * CK;
    for (int i = 4 * tid; i < CK * CK; i += 4 * blockDim.x) {   // four columns at a time
        const int r = i / CK, s_ = i - r * CK;
        float v[4];
        load4(Af + r * LDA + s_, v);
        for (int e = 0; e < 4; e++) v[e] = s_ + e <= r ? v[e] * a.scale : 0.f;
        store4(A + i, v);
    }
}

// ---- chunk_state: the sweep over chunks ----
// REV = 0: S_{c+1} = diag(decay_c) S_c + ks_c^T v_c, o_c = qs_c S_c + A_c v_c (when o), states out = S_c.
// REV = 1: X_c = diag(decay_c) X_{c+1} + qs_c^T do_c, run from the last chunk, states out = X_{c+1}.
// One block per (b, h, 64 columns of Dv), 8 warps, two barriers per chunk. The inputs of chunk c+1 load
// (cp.async) while chunk c computes, into the other of two stages. Each warp owns fixed 16 x 16 tiles of the
// fp32 state: it decays them, adds its products and writes their bf16 copy for the next chunk's output into
// the other of two bf16 buffers, all without waiting for the other warps; likewise its part of o.
#define ST_VT 64
template <int K>
struct StateSmem {
    static constexpr int VT = ST_VT, LDS = VT + 4, LDK = K + PADB, LDC = CK + PADB, LDV = VT + PADB;
    static constexpr size_t stage = sizeof(bf16) * (2 * CK * LDK + CK * LDC) + sizeof(float) * (CK * VT + K);
    static constexpr size_t bytes =
        sizeof(float) * (K * LDS + CK * LDS) + sizeof(bf16) * (2 * K * LDV + CK * LDV) + 2 * stage;
};

template <int K, int REV>
__global__ void __launch_bounds__(256) chunk_state_kernel(ChunkArgs a) {
    typedef StateSmem<K> L;
    constexpr int VT = L::VT, LDS = L::LDS, LDK = L::LDK, LDC = L::LDC, LDV = L::LDV, DV = K, NTH = 256;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    float *Sf = (float *)smem_raw;            // [K][LDS] the state slice, fp32
    float *Of = Sf + K * LDS;                 // [CK][LDS] output staging (each warp its own part)
    bf16 *Sb0 = (bf16 *)(Of + CK * LDS);      // [2][K][LDV] the state in bf16 (operand of qs S), by chunk parity
    bf16 *Rb = Sb0 + 2 * K * LDV;             // [CK][LDV] v or do slice, bf16
    unsigned char *stages = (unsigned char *)(Rb + CK * LDV);
    struct Stage { bf16 *Lm, *Qm, *Am; float *Rf, *dec; };   // ks or qs, qs, A, v or do (fp32), decay
    auto stage = [&](int st) {
        Stage x;
        x.Lm = (bf16 *)(stages + st * L::stage);
        x.Qm = x.Lm + CK * LDK;
        x.Am = x.Qm + CK * LDK;
        x.Rf = (float *)(x.Am + CK * LDC);
        x.dec = x.Rf + CK * VT;
        return x;
    };

    const int vt = blockIdx.x, bh = blockIdx.y, bb = bh / a.H, h = bh - bb * a.H, tid = threadIdx.x;
    const int warp = tid >> 5, lane = tid & 31;
    const int c0 = vt * VT;
    const bool want_o = !REV && a.o;
    bf16 *states = REV ? a.dhs : a.hs;
    const float *R = (REV ? a.dout : a.v) + (int64_t)h * DV + c0;   // row bb*T + t at stride ldr
    const int64_t ldr = REV ? (int64_t)a.H * DV : a.ldv;
    const bool vec = REV ? a.do_vec : a.v_vec;
    auto chunk_of = [&](int step) { return REV ? a.NC - 1 - step : step; };
    auto issue = [&](int step) {   // the inputs of the step-th chunk of the sweep, into stage step & 1
        const int c = chunk_of(step), t0 = c * CK, len = min(CK, a.T - t0);
        const int64_t cidx = (int64_t)bh * a.NC + c;
        Stage x = stage(step & 1);
        tile_async<CK, K>(x.Lm, (REV ? a.qs : a.ks) + cidx * CK * K, tid, NTH);
        if (want_o) {
            tile_async<CK, K>(x.Qm, a.qs + cidx * CK * K, tid, NTH);
            tile_async<CK, CK>(x.Am, a.A + cidx * CK * CK, tid, NTH);
        }
        copy_async(x.dec, a.decay + cidx * K, K * 4, tid, NTH);
        rows_async<VT, VT>(x.Rf, R + ((int64_t)bb * a.T + t0) * ldr, ldr, len, vec, tid, NTH);
        __pipeline_commit();
    };

    for (int i = tid; i < K * VT; i += NTH) {
        int r = i / VT, col = i % VT;
        float v0 = (!REV && a.S0) ? a.S0[((int64_t)bh * K + r) * DV + c0 + col] : 0.f;
        Sf[r * LDS + col] = v0;
        Sb0[r * LDV + col] = __float2bfloat16(v0);
    }
    issue(0);
    for (int step = 0; step < a.NC; step++) {
        __pipeline_wait_prior(0);   // this step's inputs have landed (for this thread) ...
        __syncthreads();            // ... for every thread, and every warp is done with the previous step
        if (step + 1 < a.NC) issue(step + 1);   // into the stage the previous step read
        const int c = chunk_of(step), t0 = c * CK, len = min(CK, a.T - t0);
        const int64_t cidx = (int64_t)bh * a.NC + c;
        const Stage x = stage(step & 1);
        const bf16 *Sb = Sb0 + (step & 1) * K * LDV;   // S entering this chunk, bf16
        bf16 *Sn = Sb0 + ((step + 1) & 1) * K * LDV;   // S leaving it, bf16
        for (int i = 4 * tid; i < CK * VT; i += 4 * NTH) {   // four columns at a time
            const int r = i / VT, col = i % VT;
            float v[4] = {0.f, 0.f, 0.f, 0.f};
            if (r < len) load4(x.Rf + i, v);
            store4(Rb + r * LDV + col, v);
        }
        if (states)
            for (int i = tid; i < K * VT / 8; i += NTH) {
                int r = i / (VT / 8), col = (i % (VT / 8)) * 8;
                *(uint4 *)(states + (cidx * K + r) * DV + c0 + col) = *(const uint4 *)(Sb + r * LDV + col);
            }
        __syncthreads();
        if (want_o) {   // o = qs S + A R: warp w owns rows 16 (w / 2) and 32 columns
            const int ri = warp >> 1, j0 = (warp & 1) * 2;
            FragA fa;
            FragB fb;
            FragC acc[2];
            wm::fill_fragment(acc[0], 0.f);
            wm::fill_fragment(acc[1], 0.f);
#pragma unroll
            for (int kk = 0; kk < K / 16; kk++) {
                wm::load_matrix_sync(fa, x.Qm + ri * 16 * LDK + kk * 16, LDK);
#pragma unroll
                for (int j = 0; j < 2; j++) {
                    wm::load_matrix_sync(fb, Sb + kk * 16 * LDV + (j0 + j) * 16, LDV);
                    wm::mma_sync(acc[j], fa, fb, acc[j]);
                }
            }
            for (int kk = 0; kk <= ri; kk++) {
                wm::load_matrix_sync(fa, x.Am + ri * 16 * LDC + kk * 16, LDC);
#pragma unroll
                for (int j = 0; j < 2; j++) {
                    wm::load_matrix_sync(fb, Rb + kk * 16 * LDV + (j0 + j) * 16, LDV);
                    wm::mma_sync(acc[j], fa, fb, acc[j]);
                }
            }
            float *of = Of + ri * 16 * LDS + j0 * 16;
#pragma unroll
            for (int j = 0; j < 2; j++) wm::store_matrix_sync(of + j * 16, acc[j], LDS, wm::mem_row_major);
            __syncwarp();
            float *o = a.o + bth(bb, t0 + ri * 16, h, a.T, a.H) * DV + c0 + j0 * 16 + lane;
            const int64_t ldo = (int64_t)a.H * DV;
            for (int rr = 0; rr < 16 && ri * 16 + rr < len; rr++) o[rr * ldo] = of[rr * LDS + lane];
        }
        {   // S = diag(decay) S + Lm^T R, tile by tile
            constexpr int NT = (K / 16) * (VT / 16);
            FragC acc;
            for (int t = warp; t < NT; t += NTH / 32) {
                const int ri = t / (VT / 16), j = t % (VT / 16);
                float *sf = Sf + ri * 16 * LDS + j * 16;
                // lane: row lane / 2 of the tile, eight columns from 8 (lane % 2), in two 16-byte pieces
                float *mine = sf + (lane >> 1) * LDS + (lane & 1) * 8;
                const float d = x.dec[ri * 16 + (lane >> 1)];
                float v[8];
                load4(mine, v);
                load4(mine + 4, v + 4);
#pragma unroll
                for (int e = 0; e < 8; e++) v[e] *= d;
                store4(mine, v);
                store4(mine + 4, v + 4);
                __syncwarp();
                wm::load_matrix_sync(acc, sf, LDS, wm::mem_row_major);
                mma_run<FragAt, FragB>(acc, x.Lm + ri * 16, LDK, 16 * LDK, Rb + j * 16, LDV, 16 * LDV, 0, CK / 16);
                wm::store_matrix_sync(sf, acc, LDS, wm::mem_row_major);
                __syncwarp();
                load4(mine, v);
                load4(mine + 4, v + 4);
                bf16 *sn = Sn + ri * 16 * LDV + j * 16 + (lane >> 1) * LDV + (lane & 1) * 8;
                store4(sn, v);
                store4(sn + 4, v + 4);
            }
        }
    }
    __syncthreads();
    if (!REV && a.ST)
        for (int i = tid; i < K * VT; i += NTH) {
            int r = i / VT, col = i % VT;
            a.ST[((int64_t)bh * K + r) * DV + c0 + col] = Sf[r * LDS + col];
        }
}

// rows x COLS floats from shared rows of stride sld to global rows of stride gld: 16 bytes a store when vec
// (dst and gld 16-byte aligned; sld and COLS are multiples of 4), else 4
template <int COLS>
__device__ __forceinline__ void rows_out(float *dst, int64_t gld, const float *src, int sld, int rows, bool vec,
                                         int tid, int nthr) {
    if (vec) {
        for (int i = 4 * tid; i < rows * COLS; i += 4 * nthr) {
            const int r = i / COLS, col = i % COLS;
            *(float4 *)(dst + r * gld + col) = *(const float4 *)(src + r * sld + col);
        }
    } else {
        for (int i = tid; i < rows * COLS; i += nthr) {
            const int r = i / COLS, col = i % COLS;
            dst[r * gld + col] = src[r * sld + col];
        }
    }
}

// ---- chunk_bwd_mm: the tensor-core products of the backward ----
template <int K, int DV>
struct BwdSmem {
    static constexpr int LDO = (K > DV ? K : DV) + 4, LDD = DV + PADB, LDK = K + PADB, LDC = CK + PADB;
    static constexpr size_t F = (size_t)2 * CK * DV > (size_t)CK * LDO ? (size_t)2 * CK * DV : (size_t)CK * LDO;
    static constexpr size_t bytes = sizeof(bf16) * (2 * CK * LDD + 2 * K * LDD + CK * LDK + CK * LDC) + sizeof(float) * F;
};

template <int K, int DV>
__global__ void __launch_bounds__(256) chunk_bwd_mm_kernel(ChunkArgs a) {
    typedef BwdSmem<K, DV> L;
    constexpr int LDO = L::LDO, LDD = L::LDD, LDK = L::LDK, LDC = L::LDC;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    bf16 *dO = (bf16 *)smem_raw;     // [CK][LDD]
    bf16 *V = dO + CK * LDD;         // [CK][LDD]
    bf16 *Hs = V + CK * LDD;         // [K][LDD] state entering the chunk
    bf16 *dS = Hs + K * LDD;         // [K][LDD] state gradient leaving the chunk
    bf16 *KS = dS + K * LDD;         // [CK][LDK]
    bf16 *Am = KS + CK * LDK;        // [CK][LDC]
    float *Of = (float *)(Am + CK * LDC);   // [CK][LDO] output staging; first the fp32 do and v rows

    const int c = blockIdx.x, bh = blockIdx.y, bb = bh / a.H, h = bh - bb * a.H, tid = threadIdx.x, warp = tid >> 5;
    const int t0 = c * CK, len = min(CK, a.T - t0);
    const int64_t cidx = (int64_t)bh * a.NC + c;
    {
        tile_async<K, DV>(Hs, a.hs + cidx * K * DV, tid, blockDim.x);
        tile_async<K, DV>(dS, a.dhs + cidx * K * DV, tid, blockDim.x);
        tile_async<CK, K>(KS, a.ks + cidx * CK * K, tid, blockDim.x);
        tile_async<CK, CK>(Am, a.A + cidx * CK * CK, tid, blockDim.x);
        const int64_t row0 = (int64_t)bb * a.T + t0;
        rows_async<DV, DV>(Of, a.dout + (row0 * a.H + h) * DV, (int64_t)a.H * DV, len, a.do_vec, tid, blockDim.x);
        rows_async<DV, DV>(Of + CK * DV, a.v + row0 * a.ldv + (int64_t)h * DV, a.ldv, len, a.v_vec, tid, blockDim.x);
        __pipeline_commit();
        __pipeline_wait_prior(0);
    }
    __syncthreads();
    for (int i = 4 * tid; i < CK * DV; i += 4 * blockDim.x) {   // four columns at a time
        const int r = i / DV, col = i - r * DV;
        float x[4] = {0.f, 0.f, 0.f, 0.f}, y[4] = {0.f, 0.f, 0.f, 0.f};
        if (r < len) { load4(Of + i, x); load4(Of + CK * DV + i, y); }
        store4(dO + r * LDD + col, x);
        store4(V + r * LDD + col, y);
    }
    __syncthreads();
    if (tid < K) {   // exp(b_C) sum_j S dS: the leaving state's share of dg
        float s = 0;
        for (int j = 0; j < DV; j++)
            s += __bfloat162float(Hs[tid * LDD + j]) * __bfloat162float(dS[tid * LDD + j]);
        a.bnd[cidx * K + tid] = s * a.decay[cidx * K + tid];
    }
    FragC acc;
    // dqs = dO Hs^T and dks = V dS^T, [CK][K] each, staged and written to dq and dk
    for (int pass = 0; pass < 2; pass++) {
        const bf16 *X = pass ? V : dO, *Y = pass ? dS : Hs;
        for (int t = warp; t < (CK / 16) * (K / 16); t += 8) {
            const int ri = t / (K / 16), j = t - ri * (K / 16);
            wm::fill_fragment(acc, 0.f);
            mma_run<FragA, FragBt>(acc, X + ri * 16 * LDD, LDD, 16, Y + j * 16 * LDD, LDD, 16, 0, DV / 16);
            wm::store_matrix_sync(Of + ri * 16 * LDO + j * 16, acc, LDO, wm::mem_row_major);
        }
        __syncthreads();
        float *dst = (pass ? a.dk : a.dq) + bth(bb, t0, h, a.T, a.H) * K;
        rows_out<K>(dst, (int64_t)a.H * K, Of, LDO, len, a.dqk_vec, tid, blockDim.x);
        __syncthreads();
    }
    // dv = A^T dO + KS dS, [CK][DV]
    for (int t = warp; t < (CK / 16) * (DV / 16); t += 8) {
        const int ri = t / (DV / 16), j = t - ri * (DV / 16);
        wm::fill_fragment(acc, 0.f);
        // A^T[s][r] is zero for r-block < s-block
        mma_run<FragAt, FragB>(acc, Am + ri * 16, LDC, 16 * LDC, dO + j * 16, LDD, 16 * LDD, ri, CK / 16);
        mma_run<FragA, FragB>(acc, KS + ri * 16 * LDK, LDK, 16, dS + j * 16, LDD, 16 * LDD, 0, K / 16);
        wm::store_matrix_sync(Of + ri * 16 * LDO + j * 16, acc, LDO, wm::mem_row_major);
    }
    // dA = dO V^T on and below the diagonal blocks: 10 tiles, straight to global
    for (int t = warp; t < 10; t += 8) {
        const int ri = t < 1 ? 0 : t < 3 ? 1 : t < 6 ? 2 : 3, j = t - (ri * (ri + 1)) / 2;
        wm::fill_fragment(acc, 0.f);
        mma_run<FragA, FragBt>(acc, dO + ri * 16 * LDD, LDD, 16, V + j * 16 * LDD, LDD, 16, 0, DV / 16);
        wm::store_matrix_sync(a.dA + cidx * CK * CK + ri * 16 * CK + j * 16, acc, CK, wm::mem_row_major);
    }
    __syncthreads();
    float *dv = a.dv + ((int64_t)bb * a.T + t0) * a.lddv + (int64_t)h * DV;
    rows_out<DV>(dv, a.lddv, Of, LDO, len, a.dv_vec, tid, blockDim.x);
}

// ---- chunk_bwd_qkg: dq, dk and dg ----
// Thread (channel i, row block rb of 16 rows). dq_r = [dqs_r exp(b_r) + sum_{s<=r} dA_rs k_s exp(b_r - b_s)] / sqrt(K):
// the earlier blocks through the anchor n = 16 rb (k_s exp(b_n - b_s), then times exp(b_r - b_n)), the block
// itself through running products of exp(g). dk_s = dks_s exp(b_C - b_s) + sum_{r>=s} dA_rs q_r exp(b_r - b_s)
// / sqrt(K), the later blocks through the anchor m = 16 rb + 15. The chunk's dA and its 32 channels of q, k,
// b, g sit in shared memory.
template <int K>
__global__ void __launch_bounds__(128) chunk_bwd_qkg_kernel(ChunkArgs a) {
    __shared__ __align__(16) float dA[CK * CK];
    __shared__ __align__(16) float qS[CK * 32], kS[CK * 32], bS[CK * 32], gS[CK * 32];
    float (*wtot)[32] = (float (*)[32])gS, (*ktot)[32] = (float (*)[32])(gS + 4 * 32);   // once g is read
    const int c = blockIdx.y, bh = blockIdx.z, bb = bh / a.H, h = bh - bb * a.H, tid = threadIdx.x;
    const int lane = tid & 31, rb = tid >> 5, ch0 = blockIdx.x * 32, ch = ch0 + lane;
    const int t0 = c * CK, len = min(CK, a.T - t0), n = rb * 16;
    const int64_t cidx = (int64_t)bh * a.NC + c, row0 = bth(bb, t0, h, a.T, a.H) * K + ch0, ld = (int64_t)a.H * K;
    copy_async(dA, a.dA + cidx * CK * CK, CK * CK * 4, tid, blockDim.x);
    rows_async<32, 32>(qS, a.q + row0, ld, len, a.qkg_vec, tid, blockDim.x);
    rows_async<32, 32>(kS, a.k + row0, ld, len, a.qkg_vec, tid, blockDim.x);
    rows_async<32, 32>(gS, a.g + row0, ld, len, a.qkg_vec, tid, blockDim.x);
    rows_async<32, 32>(bS, a.b + row0, ld, len, true, tid, blockDim.x);
    __pipeline_commit();
    __pipeline_wait_prior(0);
    __syncthreads();
    auto at = [&](int r) { return row0 + (int64_t)r * ld + lane; };
    const float bC = bS[(len - 1) * 32 + lane];
    float qv[16], kv[16], bv[16], f[16], accO[16], accD[16], accK[16], dkD[16];
#pragma unroll
    for (int j = 0; j < 16; j++) {
        const bool ok = n + j < len;
        qv[j] = ok ? qS[(n + j) * 32 + lane] : 0.f;
        kv[j] = ok ? kS[(n + j) * 32 + lane] : 0.f;
        bv[j] = ok ? bS[(n + j) * 32 + lane] : bC;
        f[j] = ok ? __expf(gS[(n + j) * 32 + lane]) : 1.f;
        accO[j] = accD[j] = accK[j] = dkD[j] = 0.f;
    }
    __syncthreads();   // gS is free from here
    float wsum[16], kint = 0;
    if (n < len) {
        const float bn = bv[0];
        for (int s = 0; s < n; s++) {   // earlier blocks -> dq
            const float x = kS[s * 32 + lane] * __expf(bn - bS[s * 32 + lane]);
#pragma unroll
            for (int j = 0; j < 16; j++) accO[j] += dA[(n + j) * CK + s] * x;
        }
        const float bm = bv[15];
        for (int r = n + 16; r < len; r++) {   // later blocks -> dk
            const float x = qS[r * 32 + lane] * __expf(bS[r * 32 + lane] - bm);
#pragma unroll
            for (int j = 0; j < 16; j++) accK[j] += dA[r * CK + n + j] * x;
        }
#pragma unroll
        for (int s = 0; s < 16; s++) {   // the diagonal block
            float e = 1.f;
#pragma unroll
            for (int r = s; r < 16; r++) {
                const float d = dA[(n + r) * CK + n + s] * e;
                accD[r] += d * kv[s];
                dkD[s] += d * qv[r];
                if (r < 15) e *= f[r + 1];
            }
        }
    }
#pragma unroll
    for (int j = 0; j < 16; j++) {
        float dq = 0, dk = 0;
        if (n + j < len) {
            const int64_t gi = at(n + j);
            dq = (a.dq[gi] * __expf(bv[j]) + accO[j] * __expf(bv[j] - bv[0]) + accD[j]) * a.scale;
            const float dki = a.dk[gi] * __expf(bC - bv[j]);
            dk = dki + (accK[j] * __expf(bv[15] - bv[j]) + dkD[j]) * a.scale;
            kint += kv[j] * dki;
            a.dq[gi] = dq;
            a.dk[gi] = dk;
        }
        wsum[j] = qv[j] * dq - kv[j] * dk;
    }
#pragma unroll
    for (int j = 14; j >= 0; j--) wsum[j] += wsum[j + 1];
    wtot[rb][lane] = wsum[0];
    ktot[rb][lane] = kint;
    __syncthreads();
    float later = a.bnd[cidx * K + ch];
    for (int r2 = 0; r2 < 4; r2++) later += ktot[r2][lane] + (r2 > rb ? wtot[r2][lane] : 0.f);
#pragma unroll
    for (int j = 0; j < 16; j++)
        if (n + j < len) a.dg[at(n + j)] = wsum[j] + later;
}

template <typename F> static void set_smem(F *kernel, size_t bytes) {
    if (bytes > 48 * 1024)
        CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

// Scratch for the chunked kernels, carved from the shared scratch buffer.
static ChunkArgs chunk_scratch(int B, int T, int H, int K, int Dv, bool bwd) {
    ChunkArgs a = {};
    a.T = T; a.H = H; a.NC = (T + CK - 1) / CK;
    a.scale = 1.f / sqrtf((float)K);
    const size_t nch = (size_t)B * H * a.NC;
    size_t bytes = align256((size_t)B * T * H * K * 4) + align256(nch * CK * K * 2) * 2 + align256(nch * CK * CK * 2) +
                   align256(nch * K * 4);
    if (bwd) bytes += align256(nch * K * Dv * 2) * 2 + align256(nch * CK * CK * 4) + align256(nch * K * 4);
    Carve cv = {scratch(bytes)};
    a.b = cv.take<float>((size_t)B * T * H * K);
    a.qs = cv.take<bf16>(nch * CK * K);
    a.ks = cv.take<bf16>(nch * CK * K);
    a.A = cv.take<bf16>(nch * CK * CK);
    a.decay = cv.take<float>(nch * K);
    if (bwd) {
        a.hs = cv.take<bf16>(nch * K * Dv);
        a.dhs = cv.take<bf16>(nch * K * Dv);
        a.dA = cv.take<float>(nch * CK * CK);
        a.bnd = cv.take<float>(nch * K);
    }
    return a;
}

static void chunk_alignment(ChunkArgs &c) {   // K, Dv multiples of 16 here; rows are 16-byte aligned when:
    c.qkg_vec = al(c.q, 16) && al(c.k, 16) && al(c.g, 16);
    c.v_vec = al(c.v, 16) && c.ldv % 4 == 0;
    c.do_vec = !c.dout || al(c.dout, 16);
    c.dqk_vec = al(c.dq, 16) && al(c.dk, 16);
    c.dv_vec = al(c.dv, 16) && c.lddv % 4 == 0;
}

template <int K>
static void chunk_prep(const ChunkArgs &a, int BH) {
    static bool set = false;
    if (!set) { set_smem(chunk_prep_kernel<K>, PrepSmem<K>::bytes); set = true; }
    chunk_prep_kernel<K><<<dim3(a.NC, BH), 256, PrepSmem<K>::bytes, g_stream>>>(a);
    LAUNCH_CHECK("hgru chunk_prep");
}

template <int K, int REV>
static void chunk_state(const ChunkArgs &a, int BH) {
    static bool set = false;
    if (!set) { set_smem(chunk_state_kernel<K, REV>, StateSmem<K>::bytes); set = true; }
    chunk_state_kernel<K, REV><<<dim3(K / ST_VT, BH), 256, StateSmem<K>::bytes, g_stream>>>(a);
    LAUNCH_CHECK(REV ? "hgru chunk_state (reverse)" : "hgru chunk_state");
}

template <int K>
static void chunk_fwd(ChunkArgs a, int B) {
    chunk_prep<K>(a, B * a.H);
    chunk_state<K, 0>(a, B * a.H);
}

template <int K>
static void chunk_bwd(ChunkArgs a, int B) {
    const int BH = B * a.H;
    chunk_prep<K>(a, BH);
    ChunkArgs s = a;
    s.o = NULL; s.ST = NULL; s.S0 = NULL;
    chunk_state<K, 0>(s, BH);      // hs
    chunk_state<K, 1>(a, BH);      // dhs
    static bool set = false;
    if (!set) { set_smem(chunk_bwd_mm_kernel<K, K>, BwdSmem<K, K>::bytes); set = true; }
    chunk_bwd_mm_kernel<K, K><<<dim3(a.NC, BH), 256, BwdSmem<K, K>::bytes, g_stream>>>(a);
    LAUNCH_CHECK("hgru chunk_bwd_mm");
    chunk_bwd_qkg_kernel<K><<<dim3(K / 32, a.NC, BH), 128, 0, g_stream>>>(a);
    LAUNCH_CHECK("hgru chunk_bwd_qkg");
}

static bool chunk_path(int chunk, int B, int T, int H, int K, int Dv) {
    return chunk > 0 && T > 0 && K == Dv && (K == 64 || K == 128) && g_prop.major >= 8 && (int64_t)B * H <= 65535;
}

extern "C" int cuda_hgru_tensor_cores(int B, int T, int H, int K, int Dv, int chunk) {
    cuda_init();
    return chunk_path(chunk, B, T, H, K, Dv);
}

static void hgru_check_dims(const char *op, int B, int T, int H, int K, int Dv) {
    if (B < 0 || T < 0 || H < 0 || K <= 0 || Dv <= 0)
        die("%s: bad dimensions B %d T %d H %d K %d Dv %d", op, B, T, H, K, Dv);
}

extern "C" void cuda_hgru_fwd(float *o, float *ST, const float *q, const float *k, const float *g, const float *v,
                              int64_t ldv, const float *S0, int B, int T, int H, int K, int Dv, int chunk) {
        hgru_check_dims("hgru_fwd", B, T, H, K, Dv);
    if (B == 0 || H == 0 || (T == 0 && !ST)) return;
    cuda_init();
    if (chunk_path(chunk, B, T, H, K, Dv)) {
        ChunkArgs c = chunk_scratch(B, T, H, K, Dv, false);
        c.q = q; c.k = k; c.g = g; c.v = v; c.ldv = ldv; c.o = o; c.ST = ST; c.S0 = S0;
        chunk_alignment(c);
        if (K == 64) chunk_fwd<64>(c, B);
        else chunk_fwd<128>(c, B);
        return;
    }
    SweepArgs a = {};
    a.out = o; a.ST = ST; a.S0 = S0;
    a.q = q; a.k = k; a.g = g; a.v = v;
    a.ldv = ldv; a.ldo = (int64_t)H * Dv;
    a.T = T; a.H = H; a.K = K; a.Dv = Dv;
    sweep_launch<SW_FWD>(a, B);
}

extern "C" void cuda_hgru_bwd(float *dq, float *dk, float *dg, float *dv, int64_t lddv, const float *dout,
                              const float *q, const float *k, const float *g, const float *v, int64_t ldv, int B, int T,
                              int H, int K, int Dv, int chunk) {
    hgru_check_dims("hgru_bwd", B, T, H, K, Dv);
    if (B == 0 || H == 0 || T == 0) return;
    cuda_init();
    if (chunk_path(chunk, B, T, H, K, Dv)) {
        ChunkArgs c = chunk_scratch(B, T, H, K, Dv, true);
        c.q = q; c.k = k; c.g = g; c.v = v; c.ldv = ldv; c.dout = dout;
        c.dq = dq; c.dk = dk; c.dg = dg; c.dv = dv; c.lddv = lddv;
        chunk_alignment(c);
        if (K == 64) chunk_bwd<64>(c, B);
        else chunk_bwd<128>(c, B);
        return;
    }
    SweepArgs a = {};
    a.q = q; a.k = k; a.g = g; a.v = v; a.dout = dout;
    a.ldv = ldv;
    a.T = T; a.H = H; a.K = K; a.Dv = Dv;
    SweepArgs s = a;
    s.out = dq; s.ldo = (int64_t)H * K;
    sweep_launch<SW_DQ>(s, B);
    s = a;
    s.out = dv; s.ldo = lddv;
    sweep_launch<SW_DV>(s, B);
    s = a;
    s.out = dk; s.out2 = dg; s.dq = dq; s.ldo = (int64_t)H * K;   // after DQ on the same stream
    sweep_launch<SW_DKG>(s, B);
}

// ---------------------------------------------------------------------------------------------------------
// SwiGLU
// ---------------------------------------------------------------------------------------------------------
__device__ __forceinline__ float ld1(const float *p) { return *p; }
__device__ __forceinline__ float ld1(const bf16 *p) { return __bfloat162float(*p); }

// A block per row; with V = 4 each thread takes four consecutive columns per load (I a multiple of 4, rows
// aligned), else one.
template <int V, typename T>
__global__ void swiglu_fwd_kernel(T *__restrict__ h, const T *__restrict__ gu, int64_t N, int I) {
    ROWS_COLS(n, j, N, I / V) {
        const T *gt = gu + n * 2 * I + j * V;
        float x[V], up[V], y[V];
        if constexpr (V == 4) { load4(gt, x); load4(gt + I, up); }
        else { x[0] = ld1(gt); up[0] = ld1(gt + I); }
#pragma unroll
        for (int e = 0; e < V; e++) {
            float s, sn;
            sigmoid2(x[e], s, sn);
            y[e] = x[e] * s * up[e];
        }
        if constexpr (V == 4) store4(h + n * I + j * V, y);
        else put(h + n * I + j, y[0]);
    }
}

template <int V, typename T>
__global__ void swiglu_bwd_kernel(T *__restrict__ dgu, const float *__restrict__ dh, const T *__restrict__ gu,
                                  int64_t N, int I) {
    ROWS_COLS(n, j, N, I / V) {
        const T *gt = gu + n * 2 * I + j * V;
        float x[V], up[V], d[V], dg[V], du[V];
        if constexpr (V == 4) { load4(gt, x); load4(gt + I, up); load4(dh + n * I + j * V, d); }
        else { x[0] = ld1(gt); up[0] = ld1(gt + I); d[0] = dh[n * I + j]; }
#pragma unroll
        for (int e = 0; e < V; e++) {
            float s, sn;
            sigmoid2(x[e], s, sn);
            dg[e] = d[e] * up[e] * (s + x[e] * s * sn);
            du[e] = d[e] * x[e] * s;
        }
        T *o = dgu + n * 2 * I + j * V;
        if constexpr (V == 4) { store4(o, dg); store4(o + I, du); }
        else { put(o, dg[0]); put(o + I, du[0]); }
    }
}

template <typename T> static void swiglu_fwd_as(T *h, const T *gu, int64_t N, int I) {
    if (I % 4 == 0 && al(h, 4 * sizeof(T)) && al(gu, 4 * sizeof(T)))
        swiglu_fwd_kernel<4><<<blocks_for(N, 1), 256, 0, g_stream>>>(h, gu, N, I);
    else swiglu_fwd_kernel<1><<<blocks_for(N, 1), 256, 0, g_stream>>>(h, gu, N, I);
}
template <typename T> static void swiglu_bwd_as(T *dgu, const float *dh, const T *gu, int64_t N, int I) {
    if (I % 4 == 0 && al(dgu, 4 * sizeof(T)) && al(gu, 4 * sizeof(T)) && al(dh, 16))
        swiglu_bwd_kernel<4><<<blocks_for(N, 1), 256, 0, g_stream>>>(dgu, dh, gu, N, I);
    else swiglu_bwd_kernel<1><<<blocks_for(N, 1), 256, 0, g_stream>>>(dgu, dh, gu, N, I);
}

extern "C" void cuda_swiglu_fwd(void *h, const void *gu, int64_t N, int I) {
    if (N <= 0 || I <= 0) return;
    if (opnd_bf16()) swiglu_fwd_as((bf16 *)h, (const bf16 *)gu, N, I);
    else swiglu_fwd_as((float *)h, (const float *)gu, N, I);
    LAUNCH_CHECK("swiglu_fwd");
}

extern "C" void cuda_swiglu_bwd(void *dgu, const float *dh, const void *gu, int64_t N, int I) {
    if (N <= 0 || I <= 0) return;
    if (opnd_bf16()) swiglu_bwd_as((bf16 *)dgu, dh, (const bf16 *)gu, N, I);
    else swiglu_bwd_as((float *)dgu, dh, (const float *)gu, N, I);
    LAUNCH_CHECK("swiglu_bwd");
}

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

extern "C" void cuda_xent_fwd(float *losses, const float *logits, const int32_t *targets, int64_t N, int V) {
    if (N <= 0) return;
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

// The classifier in training, fused (cuda_classifier_train): logits, then one pass per row for its loss and
// the gradient G = scale (softmax - onehot), which under --precision bf16 is written only in bf16, straight
// into the operand of the two products after it. dlogits never exists in fp32.
__global__ void xent_fused_kernel(float *__restrict__ losses, bf16 *__restrict__ G, const float *__restrict__ logits,
                                  const int32_t *__restrict__ targets, float scale, int V) {
    int64_t n = blockIdx.x;
    int t = targets[n];
    const float *x = logits + n * V;
    bf16 *g = G + n * V;
    if (t < 0) {
        if (threadIdx.x == 0) losses[n] = 0.f;
        for (int j = threadIdx.x; j < V; j += blockDim.x) g[j] = __float2bfloat16(0.f);
        return;
    }
    double lse = block_logsumexp(x, V);
    if (threadIdx.x == 0) losses[n] = (float)(lse - x[t]);
    const float l = (float)lse;
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        float val = scale * expf(x[j] - l);
        g[j] = __float2bfloat16(j == t ? val - scale : val);
    }
}

extern "C" void cuda_classifier_train(float *losses, float *dx, float *dW, float *logits, const void *h, const float *W,
                                      const int32_t *targets, float scale, int64_t N, int D, int V) {
    if (N <= 0) return;
    if (N > INT_MAX) die("cross-entropy: %lld rows is too many", (long long)N);
    cuda_matmul_fwd(logits, h, W, N, D, V);
    if (g_gemm_mode != 2) {
        cuda_xent_fwd(losses, logits, targets, N, V);
        cuda_xent_bwd(logits, logits, targets, scale, N, V);
        cuda_matmul_bwd(dx, dW, logits, h, W, N, D, V);
        return;
    }
    static bf16 *G;
    static int64_t cap;
    if (N * V > cap) {
        cuda_free(G);
        cap = N * V;
        G = (bf16 *)cuda_alloc((size_t)cap * sizeof(bf16), "the classifier's bf16 gradient block");
    }
    xent_fused_kernel<<<(unsigned)N, XENT_THREADS, 0, g_stream>>>(losses, G, logits, targets, scale, V);
    LAUNCH_CHECK("xent_fused");
    gemm(CUBLAS_OP_N, CUBLAS_OP_N, D, N, V, weight_bf16(W, (int64_t)V * D), D, G, V, 0.f, dx, D);
    gemm(CUBLAS_OP_N, CUBLAS_OP_T, D, V, N, h, D, G, V, 1.f, dW, D);
}

// ---------------------------------------------------------------------------------------------------------
// AdamW: one fused elementwise kernel in fp32, float4 loads and stores, with the bf16 copy of the weights
// ---------------------------------------------------------------------------------------------------------
// Why fp32 is enough against cpu.c's double (test_gpu allows 1e-6 relative): m and v are each a sum of two terms
// with a few roundings of 2^-24 (6e-8), from the products, the sum and the float coefficients; the terms of v are
// positive, and those of m cancel in a few elements only, not in the norm over a tensor. p moves by lr * upd, a
// small fraction of |p|, so the update's rounding errors reach p scaled down by that fraction, and p rounds once
// as on the CPU. A float simulation of the test's three steps gives ~1e-8 for p and ~6e-8 for m and v; m and v
// carry their error from step to step, but beta < 1 damps it (~2.5e-7 after 100 steps). Gradients so small that
// g^2 leaves fp32's normal range (|g| < 1e-19) have sqrt(v) far below eps, where the difference does not show.
struct AdamW { float lr, beta1, beta2, c1, c2, eps, wd, grad_scale, rbc1, rbc2; };   // c = 1 - beta, rbc = 1/bc

__device__ __forceinline__ void adamw1(float &p, float grad, float &m, float &v, const AdamW &a) {
    const float g = grad * a.grad_scale;
    m = a.beta1 * m + a.c1 * g;
    v = a.beta2 * v + a.c2 * g * g;
    const float upd = (m * a.rbc1) / (sqrtf(v * a.rbc2) + a.eps) + a.wd * p;   // wd with the old p
    p = p - a.lr * upd;
}

// vec: every pointer 16-byte aligned (p16 8-byte), so four elements at a time and the last n % 4 one by one.
// p16 (NULL: none) receives bf16(p) rounded as to_bf16 rounds, so the copy is the one a fresh conversion gives.
__global__ void adamw_kernel(float *__restrict__ p, const float *__restrict__ grad, float *__restrict__ m,
                             float *__restrict__ v, bf16 *__restrict__ p16, int64_t n, AdamW a, int vec) {
    const int64_t n4 = vec ? n >> 2 : 0;
    GRID_STRIDE(i, n4) {
        float4 pp = ((float4 *)p)[i], mm = ((float4 *)m)[i], vv = ((float4 *)v)[i];
        const float4 g = ((const float4 *)grad)[i];
        adamw1(pp.x, g.x, mm.x, vv.x, a);
        adamw1(pp.y, g.y, mm.y, vv.y, a);
        adamw1(pp.z, g.z, mm.z, vv.z, a);
        adamw1(pp.w, g.w, mm.w, vv.w, a);
        ((float4 *)p)[i] = pp;
        ((float4 *)m)[i] = mm;
        ((float4 *)v)[i] = vv;
        if (p16) {
            const float np[4] = {pp.x, pp.y, pp.z, pp.w};
            store4(p16 + 4 * i, np);
        }
    }
    GRID_STRIDE(j, n - 4 * n4) {
        const int64_t i = 4 * n4 + j;
        float pi = p[i], mi = m[i], vi = v[i];
        adamw1(pi, grad[i], mi, vi, a);
        p[i] = pi;
        m[i] = mi;
        v[i] = vi;
        if (p16) p16[i] = __float2bfloat16(pi);
    }
}

extern "C" void cuda_adamw(float *p, const float *grad, float *m, float *v, int64_t n, double lr, double beta1,
                           double beta2, double eps, double wd, double grad_scale, int64_t step) {
    if (n <= 0) return;
    bf16 *p16 = adamw_copy_for(p, n);
    const double bc1 = 1 - pow(beta1, (double)step), bc2 = 1 - pow(beta2, (double)step);
    const AdamW a = {(float)lr, (float)beta1, (float)beta2, (float)(1 - beta1), (float)(1 - beta2), (float)eps,
                     (float)wd, (float)grad_scale, (float)(1 / bc1), (float)(1 / bc2)};
    const int vec = al(p, 16) && al(grad, 16) && al(m, 16) && al(v, 16) && al(p16, 8);
    adamw_kernel<<<blocks_for(vec ? n / 4 + 1 : n, 256), 256, 0, g_stream>>>(p, grad, m, v, p16, n, a, vec);
    LAUNCH_CHECK("adamw");
}
