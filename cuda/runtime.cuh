// cuda/runtime.cuh: what every op stands on: errors, device, stream, cuBLAS, allocations, scratch, precision, helpers.
// The helpers: launches (blocks_for, GRID_STRIDE, ROWS_COLS) and the bf16 operand format (load4, store4, put).
#pragma once
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
#include <unordered_set>
#include <vector>

#include "../common.h"      // die(); its functions are static inline, so C++ compiles them as they are
#include "../cuda_ops.h"
typedef __nv_bfloat16 bf16;   // the operand format under --precision bf16

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
static int g_device = 0;       // cuda_use_device: the GPU of this process among the visible ones
static cublasHandle_t g_blas;
static cudaDeviceProp g_prop;
// The GEMM precision (cuda_set_gemm_precision). The program sets it before any op; the initial value only serves
// a caller that does not, and is the program's default, bf16.
static int g_gemm_mode = 2;
static std::unordered_map<void *, size_t> g_allocs;
static size_t g_cur_bytes = 0, g_peak_bytes = 0;

extern "C" void cuda_init(void) {
    if (g_init) return;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0)
        die("no usable CUDA device (%s); use --device cpu", e != cudaSuccess ? cudaGetErrorString(e) : "none found");
    if (g_device >= n)
        die("this process drives GPU %d (its local rank), but %d GPU%s visible: start at most one process per GPU on "
            "each machine", g_device, n, n == 1 ? " is" : "s are");
    CUDA_CHECK(cudaSetDevice(g_device));
    CUDA_CHECK(cudaGetDeviceProperties(&g_prop, g_device));
    CUDA_CHECK(cudaStreamCreate(&g_stream));
    CUBLAS_CHECK(cublasCreate(&g_blas));
    CUBLAS_CHECK(cublasSetStream(g_blas, g_stream));
    const char *s = getenv("HGRN2_CUDA_SYNC");
    g_debug_sync = s && *s && strcmp(s, "0") != 0;
    g_init = 1;
}

extern "C" void cuda_use_device(int device) {
    if (g_init && device != g_device) die("internal error: GPU %d chosen after GPU %d started", device, g_device);
    g_device = device;
}

extern "C" const char *cuda_device_name(void) {
    cuda_init();
    return g_prop.name;
}

// The stream records instead of running while g_capturing (cuda_graph_begin, cuda_ops.h). The capture's mode is
// thread-local: another thread's allocations go on; this thread's would fail the capture, and say so here first.
static int g_capturing = 0;
// Counts the events after which a recorded graph may read memory that is no longer what it was: a free (the
// address may come back as another buffer) and a bf16 weight copy going stale (cuda_mem_epoch, cuda_ops.h).
static uint64_t g_mem_epoch = 0;
extern "C" uint64_t cuda_mem_epoch(void) { return g_mem_epoch; }
extern "C" void *cuda_alloc(size_t bytes, const char *what) {
    cuda_init();
    if (g_capturing) die("internal error: %s allocated during a CUDA graph capture", what ? what : "a buffer");
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

static void w16_stale(const void *p, size_t bytes);   // marks the bf16 weight copies over these bytes stale (dense.cuh)

extern "C" void cuda_free(void *p) {
    if (!p) return;
    if (g_capturing) die("internal error: memory freed during a CUDA graph capture");
    g_mem_epoch++;
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

// Queued behind the ops already launched, like them: the host does not wait. From page-locked memory
// (cuda_host_alloc) the copy reads src when the stream reaches it, so src must stay as it is until the host
// next waits on the stream; from other memory the call returns once src is copied aside.
extern "C" void cuda_to_device_async(void *dst, const void *src, size_t bytes) {
    cuda_init();
    if (!bytes) return;
    w16_stale(dst, bytes);
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, g_stream));
}

// Page-locked host memory, which copies to the GPU without a staging copy and without waiting. NULL when the
// driver will not give it (the caller then uses ordinary memory). cuda_host_free returns 0 for a pointer it did
// not give, which the caller frees itself.
static std::unordered_set<void *> g_pinned;
extern "C" void *cuda_host_alloc(size_t bytes) {
    cuda_init();
    void *p = NULL;
    if (cudaHostAlloc(&p, bytes ? bytes : 1, cudaHostAllocDefault) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    g_pinned.insert(p);
    return p;
}
extern "C" int cuda_host_free(void *p) {
    auto it = g_pinned.find(p);
    if (!p || it == g_pinned.end()) return 0;
    g_pinned.erase(it);
    CUDA_CHECK(cudaFreeHost(p));
    return 1;
}

extern "C" int cuda_host_is_pinned(const void *p) { return p && g_pinned.count((void *)p); }

// Queued behind the ops launched so far; the host does not wait. Into page-locked memory (cuda_host_alloc), so
// that a CUDA graph may record it; dst holds the bytes once the host next waits on the stream.
extern "C" void cuda_to_host_async(void *dst, const void *src, size_t bytes) {
    cuda_init();
    if (!bytes) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, g_stream));
}

extern "C" void cuda_to_host(void *dst, const void *src, size_t bytes) {
    cuda_init();
    if (!bytes) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, g_stream));
    CUDA_CHECK(cudaStreamSynchronize(g_stream));
}

// Queued behind the ops already launched, like them: nothing waits. Any bf16 copy of weights over dst goes stale,
// as with cuda_to_device.
extern "C" void cuda_copy(void *dst, const void *src, size_t bytes) {
    cuda_init();
    if (!bytes) return;
    w16_stale(dst, bytes);
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, g_stream));
}

extern "C" void cuda_sync(void) {
    cuda_init();
    CUDA_CHECK(cudaStreamSynchronize(g_stream));
}

extern "C" int cuda_graph_begin(void) {
    cuda_init();
    if (g_debug_sync) return 0;
    CUDA_CHECK(cudaStreamBeginCapture(g_stream, cudaStreamCaptureModeThreadLocal));
    g_capturing = 1;
    return 1;
}
extern "C" void *cuda_graph_end(void) {
    cudaGraph_t g = NULL;
    cudaGraphExec_t x = NULL;
    cudaError_t e = cudaStreamEndCapture(g_stream, &g);
    g_capturing = 0;
    if (e == cudaSuccess) e = cudaGraphInstantiate(&x, g, 0);
    if (g) cudaGraphDestroy(g);
    if (e != cudaSuccess) {
        cudaGetLastError();   // clear it: the caller runs the ops without a graph
        return NULL;
    }
    return (void *)x;
}
extern "C" void cuda_graph_launch(void *graph) { CUDA_CHECK(cudaGraphLaunch((cudaGraphExec_t)graph, g_stream)); }
extern "C" void cuda_graph_free(void *graph) {
    if (graph) CUDA_CHECK(cudaGraphExecDestroy((cudaGraphExec_t)graph));
}

extern "C" void cuda_set_gemm_precision(int mode) {
    if (mode < 0 || mode > 2) die("GEMM precision must be 0 (fp32), 1 (tf32) or 2 (bf16), got %d", mode);
    g_gemm_mode = mode;
}
extern "C" int cuda_get_gemm_precision(void) { return g_gemm_mode; }

// Operands (ops.h): bf16 in gemm mode 2, fp32 otherwise; the products (dense.cuh) read them in that format.
static bool opnd_bf16(void) { return g_gemm_mode == 2; }
extern "C" size_t cuda_opnd_size(void) { return opnd_bf16() ? sizeof(bf16) : sizeof(float); }

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

// ---------------------------------------------------------------------------------------------------------
// launch helpers
// ---------------------------------------------------------------------------------------------------------
// Blocks of `threads` for n items, one item per thread up to a cap.
static unsigned blocks_for(int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads;
    if (b > (1 << 20)) b = 1 << 20;   // the kernels loop (grid stride) past this
    return (unsigned)(b < 1 ? 1 : b);
}

// Row n, column c of an [N, C] array: blockDim.y rows per block (grid stride), the block's x threads along each
// row. A one-dimensional block takes one row at a time.
#define ROWS_COLS(n, c, N, C)                                                                                   \
    for (int64_t n = (int64_t)blockIdx.x * blockDim.y + threadIdx.y; n < (N); n += (int64_t)gridDim.x * blockDim.y) \
        for (int c = threadIdx.x; c < (C); c += blockDim.x)

// A ROWS_COLS launch of `threads` threads a block over [N, C]: x takes the row's C items (rounded up to a power
// of two, at most `threads`), y as many rows as fill the block. A short row (a classifier of D 64, a SwiGLU
// row of 16 four-column groups) then fills the block instead of leaving most of its threads idle.
struct Launch2D {
    dim3 grid, block;
};
// Threads along a row of C items: C rounded up to a power of two, at most `threads` (rows_launch, col_launch).
static unsigned row_threads(int C, unsigned threads) {
    unsigned tx = 1;
    while (tx < (unsigned)C && tx < threads) tx <<= 1;
    return tx;
}
static Launch2D rows_launch(int64_t N, int C, unsigned threads = 256) {
    const unsigned tx = row_threads(C, threads), ty = threads / tx;
    return {dim3(blocks_for((N + ty - 1) / ty, 1)), dim3(tx, ty)};
}

#define GRID_STRIDE(i, n) \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

// ---------------------------------------------------------------------------------------------------------
// bf16 format helpers: the operand formats in loads and stores
// ---------------------------------------------------------------------------------------------------------
static bool al(const void *p, int bytes) { return ((uintptr_t)p % bytes) == 0; }   // p is bytes-aligned

// Stores in the operand formats (float or bf16, round to nearest).
__device__ __forceinline__ void put(float *p, float v) { *p = v; }
__device__ __forceinline__ void put(bf16 *p, float v) { *p = __float2bfloat16(v); }
// A value of either format as float.
__device__ __forceinline__ float ld1(const float *p) { return *p; }
__device__ __forceinline__ float ld1(const bf16 *p) { return __bfloat162float(*p); }
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

// V (1 or 4) consecutive values of either format: one element, or load4 / store4.
template <int V, typename T> __device__ __forceinline__ void loadv(const T *p, float v[V]) {
    if constexpr (V == 4) load4(p, v);
    else v[0] = ld1(p);
}
template <int V, typename T> __device__ __forceinline__ void storev(T *p, const float v[V]) {
    if constexpr (V == 4) store4(p, v);
    else put(p, v[0]);
}
// Whether rows of C values of T starting at p may be read and written four at a time.
template <typename T> static bool vec4_rows(const T *p, int C) { return C % 4 == 0 && al(p, 4 * sizeof(T)); }

// sigmoid(x) and sigmoid(-x), each to full relative precision; exp never overflows (as cpu.c)
__device__ __forceinline__ void sigmoid2(float x, float &s, float &sn) {
    float e = expf(-fabsf(x));
    float r = 1.f / (1.f + e);
    if (x >= 0) { s = r; sn = e * r; }
    else        { s = e * r; sn = r; }
}

// ---------------------------------------------------------------------------------------------------------
// programmatic dependent launch (sm_90 and later)
// ---------------------------------------------------------------------------------------------------------
// A kernel launched with launch_kernel(pdl = true) may start while the kernel before it on the stream is still
// running. Until pdl_wait() it may only read what that kernel does not write (weights it streams, a recurrent
// state that only an earlier kernel wrote); pdl_wait() returns once the kernel before has completed and its
// writes are visible. Right after it, pdl_release() lets the next such kernel start: so while any kernel runs
// past its pdl_wait, every kernel two or more places before it on the stream has completed. Each kernel calls
// both, in this order, before it reads its inputs or writes anything. Below sm_90, and for a kernel launched
// plainly, both do nothing. A decoding step of a small batch is a chain of short kernels; this lets each one's
// launch and first weight loads overlap the end of the one before.
__device__ __forceinline__ void pdl_wait(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_release(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
static int g_pdl = -1;   // -1: as HGRN2_PDL says (on unless it is 0)
extern "C" void cuda_set_pdl(int on) { g_pdl = on; }
// whether launch_kernel may use it: on, and a device of compute capability 9.0 or later
static bool pdl_on(void) {
    if (g_pdl < 0) {
        const char *e = getenv("HGRN2_PDL");
        g_pdl = !(e && !strcmp(e, "0"));
    }
    return g_pdl && g_prop.major >= 9;
}
template <typename... KArgs, typename... Args>
static void launch_kernel(bool pdl, void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, Args... args) {
    if (!pdl || !pdl_on()) {
        kernel<<<grid, block, smem, g_stream>>>(args...);
        return;
    }
    cudaLaunchAttribute attr;
    attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr.val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = g_stream;
    cfg.attrs = &attr;
    cfg.numAttrs = 1;
    CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, (KArgs)args...));
}
