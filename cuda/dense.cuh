// cuda/dense.cuh: the dense products on cuBLAS and the operands they read (bf16 conversion, the weights' bf16 copies).
#pragma once
#include "runtime.cuh"
#include "reduce.cuh"

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

// C columns of N rows, y[r ldy + c] = bf16 of x[r ldx + c]; V values a thread where every row start is aligned
template <int V>
__global__ void to_bf16_cols_kernel(bf16 *__restrict__ y, int64_t ldy, const float *__restrict__ x, int64_t ldx,
                                    int64_t N, int C) {
    ROWS_COLS(n, j, N, C / V) {
        float v[V];
        if constexpr (V == 4) {
            load4(x + n * ldx + 4 * j, v);
            store4(y + n * ldy + 4 * j, v);
        } else {
            y[n * ldy + j] = __float2bfloat16(x[n * ldx + j]);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// launchers: the bf16 conversion, the weights' bf16 copies, operands
// ---------------------------------------------------------------------------------------------------------
static void to_bf16(bf16 *y, const float *x, int64_t n) {
    const int vec = al(x, 16) && al(y, 8);
    to_bf16_kernel<<<blocks_for(vec ? n / 4 + 1 : n, 256), 256, 0, g_stream>>>(y, x, n, vec);
    LAUNCH_CHECK("to_bf16");
}

// --precision bf16: cuBLAS reads bf16 operands (half the bytes of fp32, the full bf16 tensor-core rate) and
// writes fp32. Activation operands arrive in bf16 (ops.h: their producers write that format); weights are
// converted into a cache keyed by their address, which the AdamW kernel keeps up to date as it writes the new
// weights (weight_bf16).
//
// The invariant: an entry for W that is `current` holds exactly to_bf16 of W[0, n). Only cuda_adamw,
// cuda_to_device and, in a run of several GPUs, cuda_nccl_all_gather write parameters (and cuda_free may give
// their memory to another tensor), so:
// - cuda_adamw over [p, p + n) writes the bf16 of the new values, in the same pass, into one current entry that
//   contains the range, which so stays current (an entry may hold several tensors, each updated by its own
//   cuda_adamw: the fused q/f/i and gate/up projections); the other entries over the range go stale;
// - cuda_to_device and cuda_free make the entries over their bytes stale, and only those: the token ids go up
//   through cuda_to_device at every forward, which must not cost a conversion of every weight;
// - cuda_nccl_all_gather makes the entries over the other ranks' parts stale (nccl.cuh).
// room > n asks for a copy followed by zeros up to room (the classifier's rows padded to 64): written is where
// the values written so far end, and the buffer is zero from there on.
struct W16 { bf16 *p; int64_t cap, n, written; bool current; };
static std::unordered_map<const float *, W16> g_w16;
// bf16 copies written by weight_bf16 so far: a product that streams its weights before waiting for the kernel
// before it (pdl_wait) may do so only when that kernel did not just write them
static int64_t g_w16_writes = 0;
static const bf16 *weight_bf16(const float *W, int64_t n, int64_t room = 0) {
    W16 &e = g_w16[W];
    const int64_t need = room > n ? room : n;
    if (e.cap < need) {
        cuda_free(e.p);
        e.p = (bf16 *)cuda_alloc((size_t)need * sizeof(bf16), "bf16 copies of the weights (--precision bf16)");
        e.cap = need;
        CUDA_CHECK(cudaMemsetAsync(e.p, 0, (size_t)need * sizeof(bf16), g_stream));
        g_w16_writes++;
        e.written = 0;
        e.current = false;
    }
    // with room, exactly n values: a longer copy's values past n would stand where zeros must
    if (!(e.current && (room > n ? e.n == n : e.n >= n))) {
        to_bf16(e.p, W, n);
        g_w16_writes++;
        e.n = n;
        e.current = true;
        if (e.written < n) e.written = n;
    }
    if (room > n && e.written > n) {   // values a longer tensor at this address once left
        CUDA_CHECK(cudaMemsetAsync(e.p + n, 0, (size_t)(e.written - n) * sizeof(bf16), g_stream));
        g_w16_writes++;
        e.written = n;
    }
    return e.p;
}
// weight_bf16 for a product that streams the copy before its pdl_wait: *pdl says whether it may, which it may not
// when the copy was written just now (by the kernel right before the product)
static const bf16 *weight_bf16_ahead(const float *W, int64_t n, bool *pdl) {
    const int64_t writes = g_w16_writes;
    const bf16 *p = weight_bf16(W, n);
    *pdl = g_w16_writes == writes;
    return p;
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
        else {
            e.current = false;
            g_mem_epoch++;   // (a graph recorded with this copy would read old weights)
        }
    }
    return kept;
}
static void w16_stale(const void *p, size_t bytes) { w16_over(p, bytes, false); }
// Where cuda_adamw over [p, p + n) writes the bf16 of its results (NULL: nowhere)
static bf16 *adamw_copy_for(const float *p, int64_t n) { return w16_over(p, (size_t)n * sizeof(float), true); }

// A real tensor as an operand: converted to bf16 in mode 2, copied (unless in place) otherwise.
extern "C" void cuda_to_opnd(void *y, const float *x, int64_t n) {
    if (n <= 0) return;
    PROF_COST(0, n * (4 + prof_os()));
    if (opnd_bf16()) to_bf16((bf16 *)y, x, n);
    else if (y != x) CUDA_CHECK(cudaMemcpyAsync(y, x, (size_t)n * sizeof(float), cudaMemcpyDeviceToDevice, g_stream));
}
extern "C" void cuda_to_opnd_cols(void *y, int64_t ldy, const float *x, int64_t ldx, int64_t N, int C) {
    if (N <= 0 || C <= 0) return;
    PROF_COST(0, (double)N * C * (4 + prof_os()));
    if (!opnd_bf16()) {
        if (y != x || ldy != ldx)
            CUDA_CHECK(cudaMemcpy2DAsync(y, (size_t)ldy * sizeof(float), x, (size_t)ldx * sizeof(float),
                                         (size_t)C * sizeof(float), (size_t)N, cudaMemcpyDeviceToDevice, g_stream));
        return;
    }
    bf16 *yb = (bf16 *)y;
    if (C % 4 == 0 && ldx % 4 == 0 && ldy % 4 == 0 && al(x, 16) && al(yb, 8)) {
        const Launch2D rl = rows_launch(N, C / 4);
        to_bf16_cols_kernel<4><<<rl.grid, rl.block, 0, g_stream>>>(yb, ldy, x, ldx, N, C);
    } else {
        const Launch2D rl = rows_launch(N, C);
        to_bf16_cols_kernel<1><<<rl.grid, rl.block, 0, g_stream>>>(yb, ldy, x, ldx, N, C);
    }
    LAUNCH_CHECK("to_opnd_cols");
}

// ---------------------------------------------------------------------------------------------------------
// the products: cuBLAS, column-major view of row-major data
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

// ---------------------------------------------------------------------------------------------------------
// decoding's products: a handful of rows against a whole weight matrix
// ---------------------------------------------------------------------------------------------------------
// y[N,O] = x[N,I] W[O,I]^T with N <= GEMV_MAX_ROWS (a token step of a small batch), bf16 operands: reading W once
// is all the work, so the product runs at the memory's rate or not at all. One warp per output column o streams
// W's row o in 16-byte loads, eight in flight a lane, and takes its dot products with the N rows of x in fp32;
// the block first copies x (a few KB) into shared memory where it fits (SX), so that only W's loads wait on the
// memory. A fixed shuffle tree sums the lanes, so a row's result does not depend on the others in the batch.
// HGRN2_GEMV=0 leaves these products to cuBLAS (which chooses its kernels by the batch).
#define GEMV_MAX_ROWS 8
#define GEMV_SMEM (48 * 1024)
__device__ __forceinline__ void bf16x8(uint4 u, float f[8]) {
    const unsigned w[4] = {u.x, u.y, u.z, u.w};
    #pragma unroll
    for (int j = 0; j < 4; j++) {
        const float2 t = __bfloat1622float2(*(const __nv_bfloat162 *)&w[j]);
        f[2 * j] = t.x;
        f[2 * j + 1] = t.y;
    }
}
template <int NR>
__device__ __forceinline__ void gemv_take(float acc[NR], uint4 wu, const bf16 *x, int64_t I, int i) {
    float w[8], xv[8];
    bf16x8(wu, w);
    #pragma unroll
    for (int n = 0; n < NR; n++) {
        bf16x8(*(const uint4 *)(x + n * I + i), xv);
        #pragma unroll
        for (int j = 0; j < 8; j++) acc[n] = fmaf(w[j], xv[j], acc[n]);
    }
}
// The prologue forms the product's input x in shared memory (ops.h's op_matmul_fused_fwd) in one pass over what
// it reads: PRO 0 copies the operand; OP_PRO_SWIGLU takes swish(gate) up of bf16 rows [gate | up] as
// op_swiglu_fwd does; OP_PRO_RMSNORM stages x w (fp32 rows, rounded to bf16) and the sum of squares of each row,
// leaving r = 1 / sqrt(ss / I + eps) (in double, as op_rmsnorm_fwd) to the epilogue: a row's product with x r w is
// r times its product with x w, so r scales the dot products instead of the inputs (the operand rounds at x w
// instead of x r w: the same relative rounding). Every block forms the whole input (a few KB from L2) while its
// first weight loads are in flight, then streams its part of W.
template <int NR, int PRO>
__device__ __forceinline__ void gemv_stage(bf16 *xs, float r[NR], const void *xin, const float *__restrict__ nw,
                                           double eps, int I) {
    const int n8 = I / 8;
    if (PRO == OP_PRO_NONE) {
        for (int t = threadIdx.x; t < NR * n8; t += blockDim.x) ((uint4 *)xs)[t] = ((const uint4 *)xin)[t];
        __syncthreads();
    } else if (PRO == OP_PRO_SWIGLU) {
        const bf16 *gu = (const bf16 *)xin;
        for (int t = threadIdx.x; t < NR * n8; t += blockDim.x) {
            const int n = t / n8, c = (t - n * n8) * 8;
            float a[8], u[8];
            bf16x8(*(const uint4 *)(gu + (int64_t)n * 2 * I + c), a);
            bf16x8(*(const uint4 *)(gu + (int64_t)n * 2 * I + I + c), u);
            #pragma unroll
            for (int j = 0; j < 8; j++) {
                float sg, sn;
                sigmoid2(a[j], sg, sn);
                a[j] = a[j] * sg * u[j];
            }
            store4(xs + (int64_t)n * I + c, a);
            store4(xs + (int64_t)n * I + c + 4, a + 4);
        }
        __syncthreads();
    } else {
        __shared__ float part[NR][8];   // blockDim 256: eight warps' sums per row
        const float *x = (const float *)xin;
        float ss[NR];
        #pragma unroll
        for (int n = 0; n < NR; n++) {
            ss[n] = 0.f;
            for (int c = 4 * threadIdx.x; c < I; c += 4 * blockDim.x) {
                float v[4], w[4];
                load4(x + (int64_t)n * I + c, v);
                load4(nw + c, w);
                #pragma unroll
                for (int k = 0; k < 4; k++) {
                    ss[n] += v[k] * v[k];
                    v[k] *= w[k];
                }
                store4(xs + (int64_t)n * I + c, v);
            }
            ss[n] = warp_sum(ss[n]);
            if ((threadIdx.x & 31) == 0) part[n][threadIdx.x >> 5] = ss[n];
        }
        __syncthreads();
        #pragma unroll
        for (int n = 0; n < NR; n++) {
            float t = 0.f;
            #pragma unroll
            for (int w = 0; w < 8; w++) t += part[n][w];
            r[n] = (float)(1.0 / sqrt((double)t / I + eps));
        }
    }
}
// y[n, o] = r[n] x[n] . W[o] (+ res[n, o] with RES, one rounding, as adding to the stored product); r = 1 but for
// OP_PRO_RMSNORM. SX: x is staged in shared memory (always with a prologue); otherwise read from global memory.
template <int NR, typename TY, bool SX, int PRO, bool RES>
__global__ void __launch_bounds__(256) gemv_bf16_kernel(TY *__restrict__ y, const void *__restrict__ x,
                                                        const float *__restrict__ nw, double eps,
                                                        const float *__restrict__ res, const bf16 *__restrict__ W,
                                                        int I, int O) {
    extern __shared__ uint4 gemv_xs[];   // x [NR, I] when SX
    const int o = (int)(((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5), lane = threadIdx.x & 31;
    const bf16 *w = W + (int64_t)(o < O ? o : 0) * I;
    int i = lane * 8;
    uint4 u[8];
    // the first eight loads go out before the wait for the kernel before (pdl_wait) and the prologue
    const bool first = o < O && i + 7 * 256 < I;
    if (first) {
        #pragma unroll
        for (int k = 0; k < 8; k++) u[k] = __ldcs((const uint4 *)(w + i + k * 256));   // read once: stream it
    }
    pdl_wait();      // (launched as a dependent: the kernel before has written x)
    pdl_release();
    const bf16 *xr = (const bf16 *)x;
    float r[NR];
    #pragma unroll
    for (int n = 0; n < NR; n++) r[n] = 1.f;
    if (SX) {
        gemv_stage<NR, PRO>((bf16 *)gemv_xs, r, x, nw, eps, I);
        xr = (const bf16 *)gemv_xs;
    }
    if (o >= O) return;
    float acc[NR];
    #pragma unroll
    for (int n = 0; n < NR; n++) acc[n] = 0.f;
    for (bool have = first; i + 7 * 256 < I; i += 8 * 256, have = false) {
        if (!have) {
            #pragma unroll
            for (int k = 0; k < 8; k++) u[k] = __ldcs((const uint4 *)(w + i + k * 256));
        }
        #pragma unroll
        for (int k = 0; k < 8; k++) gemv_take<NR>(acc, u[k], xr, I, i + k * 256);
    }
    for (; i + 3 * 256 < I; i += 4 * 256) {
        #pragma unroll
        for (int k = 0; k < 4; k++) u[k] = __ldcs((const uint4 *)(w + i + k * 256));
        #pragma unroll
        for (int k = 0; k < 4; k++) gemv_take<NR>(acc, u[k], xr, I, i + k * 256);
    }
    for (; i < I; i += 256) gemv_take<NR>(acc, __ldcs((const uint4 *)(w + i)), xr, I, i);
    #pragma unroll
    for (int n = 0; n < NR; n++)
        for (int off = 16; off > 0; off >>= 1) acc[n] += __shfl_xor_sync(0xffffffffu, acc[n], off);
    if (lane == 0) {
        #pragma unroll
        for (int n = 0; n < NR; n++) {
            const float v = PRO == OP_PRO_RMSNORM ? acc[n] * r[n] : acc[n];
            put(y + (int64_t)n * O + o, RES ? v + res[(int64_t)n * O + o] : v);
        }
    }
}
// The shared memory a block may have (opted in above the default 48 KB where the input needs it), queried once.
static int gemv_smem_max(void) {
    static int v = -1;
    if (v < 0) {
        int dev = 0;
        CUDA_CHECK(cudaGetDevice(&dev));
        CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
        v -= 1024;   // the prologue's own static shared memory
    }
    return v;
}
// pdl: launched as a programmatic dependent (runtime.cuh), its first weight loads ahead of the kernel before
template <int NR, typename TY, int PRO, bool RES>
static void gemv_bf16_rows(TY *y, const void *x, const float *nw, double eps, const float *res, const bf16 *W, int I,
                           int O, bool pdl) {
    const unsigned blocks = (unsigned)(((int64_t)O * 32 + 255) / 256);
    const size_t smem = (size_t)NR * I * sizeof(bf16);
    if (PRO == OP_PRO_NONE && smem > GEMV_SMEM) {
        launch_kernel(pdl, gemv_bf16_kernel<NR, TY, false, PRO, RES>, blocks, 256, 0, y, x, nw, eps, res, W, I, O);
        return;
    }
    if (smem > GEMV_SMEM) {   // (the callers checked it against gemv_smem_max)
        static size_t opted = GEMV_SMEM;
        if (smem > opted) {
            CUDA_CHECK(cudaFuncSetAttribute(gemv_bf16_kernel<NR, TY, true, PRO, RES>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
            opted = smem;
        }
    }
    launch_kernel(pdl, gemv_bf16_kernel<NR, TY, true, PRO, RES>, blocks, 256, smem, y, x, nw, eps, res, W, I, O);
}
template <typename TY, int PRO, bool RES>
static void gemv_bf16(TY *y, const void *x, const float *nw, double eps, const float *res, const bf16 *W, int N, int I,
                      int O, bool pdl) {
    switch (N) {
#define GEMV_CASE(nr) case nr: gemv_bf16_rows<nr, TY, PRO, RES>(y, x, nw, eps, res, W, I, O, pdl); break;
    GEMV_CASE(1) GEMV_CASE(2) GEMV_CASE(3) GEMV_CASE(4) GEMV_CASE(5) GEMV_CASE(6) GEMV_CASE(7) GEMV_CASE(8)
#undef GEMV_CASE
    default: die("gemv_bf16: %d rows", N);
    }
    LAUNCH_CHECK("gemv_bf16");
}
static int g_gemv = -1;   // -1: as HGRN2_GEMV says (on unless it is 0)
static bool gemv_on(void) {
    if (g_gemv < 0) {
        const char *e = getenv("HGRN2_GEMV");
        g_gemv = !(e && !strcmp(e, "0"));
    }
    return g_gemv;
}
extern "C" void cuda_set_gemv(int on) { g_gemv = on; }

// In mode 2 the weight operand is its bf16 copy; the activation operands come in the mode's format.
static const void *weight_opnd(const float *W, int64_t n) { return opnd_bf16() ? (const void *)weight_bf16(W, n) : W; }

// y = x W^T, y fp32 or (y_opnd) in the operand format
static void matmul_fwd(void *y, bool y_opnd, const void *x, const float *W, int64_t N, int I, int O) {
    if (N <= 0 || O <= 0) return;
    if (I <= 0) {
        CUDA_CHECK(cudaMemsetAsync(y, 0, (size_t)(N * O) * (y_opnd ? cuda_opnd_size() : sizeof(float)), g_stream));
        return;
    }
    if (opnd_bf16() && N <= GEMV_MAX_ROWS && I % 8 == 0 && O <= INT_MAX / 32 && al(x, 16) && gemv_on()) {
        bool pdl;
        const bf16 *Wb = weight_bf16_ahead(W, (int64_t)O * I, &pdl);
        if (y_opnd) gemv_bf16<bf16, OP_PRO_NONE, false>((bf16 *)y, x, NULL, 0, NULL, Wb, (int)N, I, O, pdl);
        else gemv_bf16<float, OP_PRO_NONE, false>((float *)y, x, NULL, 0, NULL, Wb, (int)N, I, O, pdl);
        return;
    }
    gemm(CUBLAS_OP_T, CUBLAS_OP_N, O, N, I, weight_opnd(W, (int64_t)O * I), I, x, I, 0.f, y, O, y_opnd);
}
extern "C" void cuda_matmul_fwd(float *y, const void *x, const float *W, int64_t N, int I, int O) {
    PROF_COST(2.0 * N * I * O, (double)N * I * prof_os() + (double)O * I * prof_ws() + 4.0 * N * O);
    matmul_fwd(y, false, x, W, N, I, O);
}
extern "C" void cuda_matmul_fwd_opnd(void *y, const void *x, const float *W, int64_t N, int I, int O) {
    PROF_COST(2.0 * N * I * O, ((double)N * I + (double)N * O) * prof_os() + (double)O * I * prof_ws());
    matmul_fwd(y, true, x, W, N, I, O);
}
extern "C" void cuda_matmul_bwd(float *dx, float *dW, const void *dy, const void *x, const float *W, int64_t N,
                                int I, int O) {
    // dy once; dx = dy W reads W and writes dx; dW += dy^T x reads x and reads and writes dW
    PROF_COST(2.0 * N * I * O * ((dx != NULL) + (dW != NULL)),
              (double)N * O * prof_os() + (dx ? (double)O * I * prof_ws() + 4.0 * N * I : 0) +
              (dW ? (double)N * I * prof_os() + 8.0 * O * I : 0));
    if (N <= 0 || I <= 0) return;
    if (O <= 0) {
        if (dx) cuda_zero(dx, N * I);
        return;
    }
    if (dx) gemm(CUBLAS_OP_N, CUBLAS_OP_N, I, N, O, weight_opnd(W, (int64_t)O * I), I, dy, O, 0.f, dx, I);
    if (dW) gemm(CUBLAS_OP_N, CUBLAS_OP_T, I, O, N, x, I, dy, O, 1.f, dW, I);
}
