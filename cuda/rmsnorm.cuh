// cuda/rmsnorm.cuh: RMSNorm forward (with the residual add) and backward (dx and the deterministic dw).
#pragma once
#include "reduce.cuh"

// A block of NT threads walks RN_ROWS consecutive rows (the forward: fewer when N is small) one at a time; thread t
// holds the columns 4 (t + NT i) .. +3 (i < V) of the row in registers, and w the whole time. The next row's loads
// are issued before the current row's sum is reduced, so each block has two rows in flight: the latency of one
// row's loads hides behind the reduction and the stores of the other. (One warp per row waiting on each row's loads
// in turn moved the backward's bytes at ~1.3 TB/s.) VEC: C % 4 == 0 and every row 16-byte aligned (float4 loads);
// otherwise the same kernel loads column by column. Rows wider than RN_MAXV * 4 * 256 columns take the
// one-warp-per-row kernels further down.
#define RN_ROWS 16
#define RN_MAXV 4

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
                                                               double eps, int rows) {
    __shared__ float buf[2][32];
    const int64_t n0 = (int64_t)blockIdx.x * rows, n1 = n0 + rows < N ? n0 + rows : N;
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
// part[block, c] = sum over its rows of dy x r (each thread owns its columns: no reduction across threads). With
// dxo, the new dx is also stored there as an operand (T: bf16, rounded as cuda_to_opnd rounds).
template <int V, bool VEC, typename T>
__global__ void __launch_bounds__(256) rmsnorm_bwd_rows_kernel(float *__restrict__ dx, int acc, T *__restrict__ dxo,
                                                               float *__restrict__ part,
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
            if (dxo) rn_store<V, VEC>(dxo + row * C, o, C);
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

// y = x rstd w from the rstd a forward kept: that forward's y again, the same bits (the same two float products in
// the same order), without the row sums and their barriers. A block is 32 columns (float4 groups with VEC) by
// RS_ROWS rows; each thread loads its RS_ROWS / 8 rows before storing any.
#define RS_ROWS 32
template <bool VEC, typename T>
__global__ void __launch_bounds__(256) rmsnorm_scale_kernel(T *__restrict__ y, const float *__restrict__ x,
                                                            const float *__restrict__ rstd,
                                                            const float *__restrict__ w, int64_t N, int C) {
    constexpr int R = RS_ROWS / 8, W = VEC ? 4 : 1;
    const int c = W * (blockIdx.x * 32 + threadIdx.x);
    const int64_t n0 = (int64_t)blockIdx.y * RS_ROWS + threadIdx.y;
    if (c >= C) return;
    float wv[W], xv[R][W], r[R];
    loadv<W>(w + c, wv);
#pragma unroll
    for (int i = 0; i < R; i++) {
        const int64_t n = n0 + 8 * i;
        if (n < N) {
            loadv<W>(x + n * C + c, xv[i]);
            r[i] = rstd[n];
        }
    }
#pragma unroll
    for (int i = 0; i < R; i++) {
        const int64_t n = n0 + 8 * i;
        if (n < N) {
            float o[W];
#pragma unroll
            for (int k = 0; k < W; k++) o[k] = xv[i][k] * r[i] * wv[k];
            storev<W>(y + n * C + c, o);
        }
    }
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

// The one-warp-per-row backward for rows too wide for registers: dx (and dxo, as above) here, dw below.
template <typename T>
__global__ void rmsnorm_bwd_dx_kernel(float *dx, int acc, T *dxo, const float *dy, const float *x,
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
        const float t = r * w[c] * dyr[c] - coef * xr[c], v = acc ? dxr[c] + t : t;
        dxr[c] = v;
        if (dxo) put(dxo + row * C + c, v);
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

// ---------------------------------------------------------------------------------------------------------
// launchers
// ---------------------------------------------------------------------------------------------------------
// float4 groups per thread for a row of C columns (1, 2 or 4, so that at most 256 threads cover it), 0 if none
static int rn_v(int C) {
    const int G = (C + 3) / 4;
    for (int v = 1; v <= RN_MAXV; v *= 2)
        if ((G + v - 1) / v <= 256) return v;
    return 0;
}
static int rn_threads(int C, int v) { return ((((C + 3) / 4 + v - 1) / v) + 31) & ~31; }

template <typename T>
static void rmsnorm_fwd_launch(T *y, float *rstd, float *x, const float *res, const float *w, int64_t N, int C,
                               double eps) {
    const int v = rn_v(C);
    const bool vec = C % 4 == 0 && al(x, 16) && al(w, 16) && al(res, 16) && al(y, 4 * sizeof(T));
    // RN_ROWS rows a block where there are rows enough for two blocks an SM; fewer (down to one) below that, so a
    // few rows (decoding a batch) still spread over the card instead of waiting on each other in a few blocks
    const int64_t few = N / (2 * (int64_t)g_prop.multiProcessorCount);
    const int rows = few >= RN_ROWS ? RN_ROWS : few < 1 ? 1 : (int)few;
    const unsigned nb = (unsigned)((N + rows - 1) / rows), nt = v ? (unsigned)rn_threads(C, v) : 0;
#define RN_FWD(V, VEC) rmsnorm_fwd_rows_kernel<V, VEC, T><<<nb, nt, 0, g_stream>>>(y, rstd, x, res, w, N, C, eps, rows)
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
    // x (and res, added into x), y, rstd; the weights once
    PROF_COST(4.0 * N * C, 4.0 * N * C * (res ? 3 : 1) + (y ? (double)N * C * prof_os() : 0) + (rstd ? 4.0 * N : 0) + 4.0 * C);
    if (opnd_bf16()) rmsnorm_fwd_launch((bf16 *)y, rstd, x, res, w, N, C, eps);
    else rmsnorm_fwd_launch((float *)y, rstd, x, res, w, N, C, eps);
    LAUNCH_CHECK("rmsnorm_fwd");
}

template <typename T>
static void rmsnorm_scale_launch(T *y, const float *x, const float *rstd, const float *w, int64_t N, int C) {
    const bool vec = C % 4 == 0 && al(x, 16) && al(w, 16) && al(y, 4 * sizeof(T));
    const int cols = vec ? C / 4 : C;
    const int64_t most = (int64_t)65535 * RS_ROWS;   // rows a launch's grid can cover
    for (int64_t n0 = 0; n0 < N; n0 += most) {
        const int64_t n = N - n0 < most ? N - n0 : most;
        const dim3 grid((unsigned)((cols + 31) / 32), (unsigned)((n + RS_ROWS - 1) / RS_ROWS)), block(32, 8);
        if (vec) rmsnorm_scale_kernel<true><<<grid, block, 0, g_stream>>>(y + n0 * C, x + n0 * C, rstd + n0, w, n, C);
        else rmsnorm_scale_kernel<false><<<grid, block, 0, g_stream>>>(y + n0 * C, x + n0 * C, rstd + n0, w, n, C);
    }
}

extern "C" void cuda_rmsnorm_scale(void *y, const float *x, const float *rstd, const float *w, int64_t N, int C) {
    if (N <= 0 || C <= 0) return;
    // x, y; rstd and the weights once
    PROF_COST(2.0 * N * C, 4.0 * N * C + (double)N * C * prof_os() + 4.0 * N + 4.0 * C);
    if (opnd_bf16()) rmsnorm_scale_launch((bf16 *)y, x, rstd, w, N, C);
    else rmsnorm_scale_launch((float *)y, x, rstd, w, N, C);
    LAUNCH_CHECK("rmsnorm_scale");
}

template <typename T>
static void rmsnorm_bwd_as(float *dx, int acc, T *dxo, float *dw, const float *dy, const float *x, const float *w,
                           const float *rstd, int64_t N, int C, double eps) {
    const int64_t nchunks = (N + RN_ROWS - 1) / RN_ROWS;
    Carve cv = {scratch(align256(N * sizeof(float)) + (dw ? align256(nchunks * C * sizeof(float)) : 0))};
    float *rs = cv.take<float>(N), *part = dw ? cv.take<float>(nchunks * C) : NULL;
    if (!rstd) {   // recompute it once for both outputs
        cuda_rmsnorm_fwd(NULL, rs, (float *)x, NULL, w, N, C, eps);   // reads x only
        rstd = rs;
    }
    const int v = rn_v(C);
    if (v) {   // dx and the dw partials in one pass
        const bool vec = C % 4 == 0 && al(dx, 16) && al(dy, 16) && al(x, 16) && al(w, 16) && al(dxo, 4 * sizeof(T));
        const unsigned nt = (unsigned)rn_threads(C, v);
#define RN_BWD(V, VEC)                                                                                               \
    rmsnorm_bwd_rows_kernel<V, VEC, T><<<(unsigned)nchunks, nt, 0, g_stream>>>(dx, acc, dxo, part, dy, x, w, rstd, N, C)
        if (v == 1) { if (vec) RN_BWD(1, true); else RN_BWD(1, false); }
        else if (v == 2) { if (vec) RN_BWD(2, true); else RN_BWD(2, false); }
        else { if (vec) RN_BWD(4, true); else RN_BWD(4, false); }
#undef RN_BWD
        LAUNCH_CHECK("rmsnorm_bwd_rows");
    } else {
        if (dx) {
            unsigned nb = (unsigned)((N + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK);
            rmsnorm_bwd_dx_kernel<T><<<nb, 32 * ROWS_PER_BLOCK, 0, g_stream>>>(dx, acc, dxo, dy, x, w, rstd, N, C);
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

extern "C" void cuda_rmsnorm_bwd(float *dx, int acc, float *dw, const float *dy, const float *x, const float *w,
                                 const float *rstd, int64_t N, int C, double eps) {
    if (N <= 0 || C <= 0 || (!dx && !dw)) return;
    // dy and x; dx written (and read first with acc); rstd when kept; w, and dw read and written
    PROF_COST(6.0 * N * C, 8.0 * N * C + (dx ? 4.0 * N * C * (acc ? 2 : 1) : 0) + (rstd ? 4.0 * N : 0) + 12.0 * C);
    rmsnorm_bwd_as(dx, acc, (float *)NULL, dw, dy, x, w, rstd, N, C, eps);
}

// The same with the new dx also written as an operand into dxo (bf16 under --precision bf16; otherwise a copy)
extern "C" void cuda_rmsnorm_bwd_opnd(float *dx, int acc, void *dxo, float *dw, const float *dy, const float *x,
                                      const float *w, const float *rstd, int64_t N, int C, double eps) {
    if (N <= 0 || C <= 0) return;
    PROF_COST(6.0 * N * C, 8.0 * N * C + 4.0 * N * C * (acc ? 2 : 1) + (double)N * C * prof_os() + (rstd ? 4.0 * N : 0) +
                               12.0 * C);
    if (opnd_bf16()) rmsnorm_bwd_as(dx, acc, (bf16 *)dxo, dw, dy, x, w, rstd, N, C, eps);
    else rmsnorm_bwd_as(dx, acc, dxo == dx ? NULL : (float *)dxo, dw, dy, x, w, rstd, N, C, eps);
}
