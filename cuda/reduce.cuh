// cuda/reduce.cuh: the deterministic reductions several op families share: warp and block sums, column sums.
#pragma once
#include "runtime.cuh"

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ double warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// A block sum (blockDim a multiple of 32): every thread gets the result; every warp reduces the same per-warp
// partials in the same order, so all agree bit for bit.
__device__ double block_sum_d(double v) {
    __shared__ double bufd[32];
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum_d(v);
    __syncthreads();
    if (lane == 0) bufd[w] = v;
    __syncthreads();
    return warp_sum_d(lane < nw ? bufd[lane] : 0.0);
}

// Column sums over rows, deterministic: fixed chunks of rows (COL_ROWS of them for the gates in pointwise.cuh,
// RN_ROWS for RMSNorm in rmsnorm.cuh) give partials part[chunk, c], each summed in row order; colsum_finish
// adds those in a fixed order.
#define COL_THREADS 128   // threads per block of the column kernels (one thread per column)

// A column kernel's launch: one thread per (chunk of rows, column). A block takes x = C columns (rounded up to a
// power of two, at most `threads`) of y = threads / x chunks, so that a narrow array (a classifier of D 64) fills
// its blocks; COL_CHUNK names the thread's chunk j and column c (past the end when j or c is out of range).
static Launch2D col_launch(int64_t nchunks, int C, unsigned threads = COL_THREADS) {
    const unsigned tx = row_threads(C, threads), ty = threads / tx;
    return {dim3((unsigned)((nchunks + ty - 1) / ty), (unsigned)((C + tx - 1) / tx)), dim3(tx, ty)};
}
#define COL_CHUNK(j, c)                                                       \
    const int64_t j = (int64_t)blockIdx.x * blockDim.y + threadIdx.y;         \
    const int c = blockIdx.y * blockDim.x + threadIdx.x

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
