// cuda/hgrn1.cuh: HGRN1's token mixer (ops.h "HGRN1"): the element-wise gated recurrence as a chunked parallel
// scan, and its gated output RMSNorm.
#pragma once
#include "pointwise.cuh"

// ---------------------------------------------------------------------------------------------------------
// The recurrence h_t = a_t h_{t-1} + q_t k_t per (b, d), a_t = exp(g_t), over T split into chunks of HG_CHUNK
// steps, in three launches:
//   1. a thread per (b, chunk, d) scans its chunk from a zero state: the chunk's own contribution e and the
//      product P of its decays, so that the state leaving the chunk is e + P (state entering it);
//   2. a thread per (b, d) walks the chunks in order and turns those into the state entering each chunk;
//   3. a thread per (b, chunk, d) runs the recurrence over its chunk again from the true entering state,
//      writing o (so o's roundings are the sequential recurrence's, restarted at each chunk).
// The backward is the same scan run from the end: dh_t = dout_t + a_{t+1} dh_{t+1}, where the decay that
// carries a chunk's entering gradient (from its right) is the product of a_{t+1} over the chunk. Threads of a
// warp hold consecutive d, so every load and store of a time step is one coalesced row segment.
// With dir = 1 the whole scan runs over the sequence from its end (the classifier's reverse scan): scan step s
// reads and writes position T - 1 - s, in place, with no reversed copy; `acc` adds o (dq, dk, dg) to what is
// there, so the two directions of a bidirectional mixer sum into one buffer.
// ---------------------------------------------------------------------------------------------------------
#define HG_CHUNK 64
#define HG_THREADS 128

__device__ __forceinline__ float hg_decay(float g) { return g < -87.f ? 0.f : expf(g); }   // cpu.c's decay
// the row offset of scan step s of sequence b: position s, or T - 1 - s when the scan runs from the end
__device__ __forceinline__ int64_t hg_row(int64_t base, int s, int T, int D, int dir) {
    return base + (int64_t)(dir ? T - 1 - s : s) * D;
}

// Phase 1. Forward: e = the chunk's state from zero, P = prod a_t. Backward (rev): e = the gradient at the
// chunk's first step from zero at its right edge, P = prod a_{t+1} over the chunk (a_T: none, the sequence ends).
__global__ void __launch_bounds__(HG_THREADS) hgrn_chunk_kernel(float *__restrict__ e, float *__restrict__ P,
                                                                const float *__restrict__ x, const float *__restrict__ k,
                                                                const float *__restrict__ g, int T, int D, int rev,
                                                                int dir) {
    const int d = blockIdx.x * HG_THREADS + threadIdx.x, c = blockIdx.y, b = blockIdx.z, nch = gridDim.y;
    if (d >= D) return;
    const int t0 = c * HG_CHUNK, t1 = min(T, t0 + HG_CHUNK);
    const int64_t base = (int64_t)b * T * D + d;
    float h = 0.f, p = 1.f;
    if (!rev) {
        for (int t = t0; t < t1; t++) {
            const int64_t i = hg_row(base, t, T, D, dir);
            const float a = hg_decay(g[i]);
            h = a * h + x[i] * k[i];
            p *= a;
        }
    } else {
        for (int t = t1 - 1; t >= t0; t--) {
            const int64_t i = hg_row(base, t, T, D, dir);
            const float a = t + 1 < T ? hg_decay(g[hg_row(base, t + 1, T, D, dir)]) : 0.f;
            h = a * h + x[i];
            p *= a;
        }
    }
    const int64_t j = ((int64_t)b * nch + c) * D + d;
    e[j] = h;
    P[j] = p;
}

// Phase 2: carry[b, c, d] = the state entering chunk c (forward: from the left, starting at h0; backward: the
// gradient at the first step of chunk c + 1, zero past the end). Forward also writes hT; it reads h0 first, so
// hT may equal h0.
__global__ void hgrn_carry_kernel(float *__restrict__ carry, const float *__restrict__ e, const float *__restrict__ P,
                                  const float *h0, float *hT, int B, int D, int nch, int rev) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)B * D) return;
    const int b = (int)(i / D), d = (int)(i % D);
    float s = !rev && h0 ? h0[i] : 0.f;
    for (int n = 0; n < nch; n++) {
        const int c = rev ? nch - 1 - n : n;
        const int64_t j = ((int64_t)b * nch + c) * D + d;
        carry[j] = s;
        s = e[j] + P[j] * s;
    }
    if (!rev && hT) hT[i] = s;
}

// Phase 3, forward: o over the chunk from its entering state.
__global__ void __launch_bounds__(HG_THREADS) hgrn_fwd_kernel(float *__restrict__ o, const float *__restrict__ carry,
                                                              const float *__restrict__ q, const float *__restrict__ k,
                                                              const float *__restrict__ g, int T, int D, int dir,
                                                              int acc) {
    const int d = blockIdx.x * HG_THREADS + threadIdx.x, c = blockIdx.y, b = blockIdx.z, nch = gridDim.y;
    if (d >= D) return;
    const int t0 = c * HG_CHUNK, t1 = min(T, t0 + HG_CHUNK);
    const int64_t base = (int64_t)b * T * D + d;
    float h = carry[((int64_t)b * nch + c) * D + d];
    for (int t = t0; t < t1; t++) {
        const int64_t i = hg_row(base, t, T, D, dir);
        h = hg_decay(g[i]) * h + q[i] * k[i];
        o[i] = acc ? o[i] + h : h;
    }
}

// Phase 3, backward: dh over the chunk from the right, then dq = dh k, dk = dh q, dg_t = dh_t a_t o_{t-1}
// (0 at t = 0: a zero entering state).
__global__ void __launch_bounds__(HG_THREADS) hgrn_bwd_kernel(float *__restrict__ dq, float *__restrict__ dk,
                                                              float *__restrict__ dg, const float *__restrict__ carry,
                                                              const float *__restrict__ dout,
                                                              const float *__restrict__ q, const float *__restrict__ k,
                                                              const float *__restrict__ g, const float *__restrict__ o,
                                                              int T, int D, int dir, int acc) {
    const int d = blockIdx.x * HG_THREADS + threadIdx.x, c = blockIdx.y, b = blockIdx.z, nch = gridDim.y;
    if (d >= D) return;
    const int t0 = c * HG_CHUNK, t1 = min(T, t0 + HG_CHUNK);
    const int64_t base = (int64_t)b * T * D + d;
    float dh = carry[((int64_t)b * nch + c) * D + d];   // dh at step t1
    for (int t = t1 - 1; t >= t0; t--) {
        const int64_t i = hg_row(base, t, T, D, dir);
        const float an = t + 1 < T ? hg_decay(g[hg_row(base, t + 1, T, D, dir)]) : 0.f;
        dh = dout[i] + an * dh;
        const float vq = dh * k[i], vk = dh * q[i];
        const float vg = t ? dh * hg_decay(g[i]) * o[hg_row(base, t - 1, T, D, dir)] : 0.f;
        if (acc) { dq[i] += vq; dk[i] += vk; dg[i] += vg; }
        else { dq[i] = vq; dk[i] = vk; dg[i] = vg; }
    }
}

// ---------------------------------------------------------------------------------------------------------
// The gated RMSNorm y = x r w swish(z), r = (mean x^2 + eps)^-1/2: one warp per row (rows of D = a model's
// width, a few thousand at most). The backward with u = dy swish(z): dx = r w u - x r^3 / C sum(w u x),
// dz = dy x r w swish'(z), and dw's partials per chunk of RN_ROWS rows, added by colsum_finish in chunk order.
// ---------------------------------------------------------------------------------------------------------
__device__ __forceinline__ void swish2(float z, float &sw, float &dsw) {
    float s, sn;
    sigmoid2(z, s, sn);
    sw = z * s;
    dsw = s * (1.f + z * sn);
}

template <typename T>
__global__ void rmsnorm_gated_fwd_kernel(T *y, float *rstd, const float *__restrict__ x, const float *__restrict__ z,
                                         int64_t ldz, const float *__restrict__ w, int64_t N, int C, double eps) {
    const int64_t row = (int64_t)blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= N) return;   // the whole warp
    const float *xr = x + row * C, *zr = z + row * ldz;
    float ss = 0.f;
    for (int c = lane; c < C; c += 32) ss += xr[c] * xr[c];
    ss = warp_sum(ss);
    const float r = (float)(1.0 / sqrt((double)ss / C + eps));
    T *yr = y + row * C;
    for (int c = lane; c < C; c += 32) {
        float sw, dsw;
        swish2(zr[c], sw, dsw);
        put(yr + c, xr[c] * r * w[c] * sw);
    }
    if (rstd && lane == 0) rstd[row] = r;
}

__global__ void rmsnorm_gated_bwd_kernel(float *__restrict__ dx, float *__restrict__ dz, int64_t lddz,
                                         const float *__restrict__ dy, const float *__restrict__ x,
                                         const float *__restrict__ z, int64_t ldz, const float *__restrict__ w,
                                         const float *__restrict__ rstd, int64_t N, int C, double eps) {
    const int64_t row = (int64_t)blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= N) return;
    const float *xr = x + row * C, *dyr = dy + row * C, *zr = z + row * ldz;
    float r;
    if (rstd) r = rstd[row];
    else {
        float ss = 0.f;
        for (int c = lane; c < C; c += 32) ss += xr[c] * xr[c];
        r = (float)(1.0 / sqrt((double)warp_sum(ss) / C + eps));
    }
    float s = 0.f;
    float *dzr = dz + row * lddz;
    for (int c = lane; c < C; c += 32) {
        float sw, dsw;
        swish2(zr[c], sw, dsw);
        s += w[c] * (dyr[c] * sw) * xr[c];
        dzr[c] = dyr[c] * xr[c] * r * w[c] * dsw;
    }
    s = warp_sum(s);
    const float coef = s * r * r * r / C;
    float *dxr = dx + row * C;
    for (int c = lane; c < C; c += 32) {
        float sw, dsw;
        swish2(zr[c], sw, dsw);
        dxr[c] = r * (w[c] * (dyr[c] * sw)) - coef * xr[c];
    }
}

// dw partials: part[chunk, c] = sum over the chunk's RN_ROWS rows of dy swish(z) x r
__global__ void rmsnorm_gated_dw_partial_kernel(float *__restrict__ part, const float *__restrict__ dy,
                                                const float *__restrict__ x, const float *__restrict__ z, int64_t ldz,
                                                const float *__restrict__ rstd, int64_t N, int C) {
    const int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const int64_t n0 = (int64_t)blockIdx.x * RN_ROWS, n1 = n0 + RN_ROWS < N ? n0 + RN_ROWS : N;
    float s = 0.f;
    for (int64_t n = n0; n < n1; n++) {
        float sw, dsw;
        swish2(z[n * ldz + c], sw, dsw);
        s += dy[n * C + c] * sw * x[n * C + c] * rstd[n];
    }
    part[(int64_t)blockIdx.x * C + c] = s;
}

// ---------------------------------------------------------------------------------------------------------
// launchers
// ---------------------------------------------------------------------------------------------------------
static dim3 hg_grid(int B, int T, int D) {
    const int64_t nch = (T + HG_CHUNK - 1) / HG_CHUNK;
    if (nch > 65535 || B > 65535) die("HGRN1's scan takes at most 65535 sequences of %d steps (got %d of %d)",
                                      65535 * HG_CHUNK, B, T);
    return dim3((unsigned)((D + HG_THREADS - 1) / HG_THREADS), (unsigned)nch, (unsigned)B);
}

// Phases 1 and 2 into scratch: the state (or gradient) entering every chunk, [B, nch, D].
static float *hg_carries(const float *x, const float *k, const float *g, const float *h0, float *hT, int B, int T,
                         int D, int rev, int dir) {
    const dim3 grid = hg_grid(B, T, D);
    const int64_t n = (int64_t)B * grid.y * D;
    Carve cv = {scratch(3 * align256(n * sizeof(float)))};
    float *e = cv.take<float>(n), *P = cv.take<float>(n), *carry = cv.take<float>(n);
    hgrn_chunk_kernel<<<grid, HG_THREADS, 0, g_stream>>>(e, P, x, k, g, T, D, rev, dir);
    LAUNCH_CHECK("hgrn_chunk");
    hgrn_carry_kernel<<<blocks_for((int64_t)B * D, 256), 256, 0, g_stream>>>(carry, e, P, h0, hT, B, D, (int)grid.y, rev);
    LAUNCH_CHECK("hgrn_carry");
    return carry;
}

extern "C" void cuda_hgrn_fwd(float *o, float *hT, const float *q, const float *k, const float *g, const float *h0,
                              int B, int T, int D, int reverse, int acc) {
    if (B <= 0 || D <= 0) return;
    if (T <= 0) {   // no steps: the state leaves as it came
        if (hT && hT != h0) {
            if (h0) CUDA_CHECK(cudaMemcpyAsync(hT, h0, (size_t)B * D * sizeof(float), cudaMemcpyDeviceToDevice, g_stream));
            else CUDA_CHECK(cudaMemsetAsync(hT, 0, (size_t)B * D * sizeof(float), g_stream));
        }
        return;
    }
    const float *carry = hg_carries(q, k, g, h0, hT, B, T, D, 0, reverse);
    hgrn_fwd_kernel<<<hg_grid(B, T, D), HG_THREADS, 0, g_stream>>>(o, carry, q, k, g, T, D, reverse, acc);
    LAUNCH_CHECK("hgrn_fwd");
}

extern "C" void cuda_hgrn_bwd(float *dq, float *dk, float *dg, const float *dout, const float *q, const float *k,
                              const float *g, const float *o, int B, int T, int D, int reverse, int acc) {
    if (B <= 0 || T <= 0 || D <= 0) return;
    const float *carry = hg_carries(dout, NULL, g, NULL, NULL, B, T, D, 1, reverse);
    hgrn_bwd_kernel<<<hg_grid(B, T, D), HG_THREADS, 0, g_stream>>>(dq, dk, dg, carry, dout, q, k, g, o, T, D, reverse, acc);
    LAUNCH_CHECK("hgrn_bwd");
}

extern "C" void cuda_rmsnorm_gated_fwd(void *y, float *rstd, const float *x, const float *z, int64_t ldz,
                                       const float *w, int64_t N, int C, double eps) {
    if (N <= 0 || C <= 0) return;
    PROF_COST(6.0 * N * C, 8.0 * N * C + (double)N * C * prof_os() + (rstd ? 4.0 * N : 0) + 4.0 * C);
    const unsigned nb = (unsigned)((N + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK);
    if (opnd_bf16())
        rmsnorm_gated_fwd_kernel<<<nb, 32 * ROWS_PER_BLOCK, 0, g_stream>>>((bf16 *)y, rstd, x, z, ldz, w, N, C, eps);
    else
        rmsnorm_gated_fwd_kernel<<<nb, 32 * ROWS_PER_BLOCK, 0, g_stream>>>((float *)y, rstd, x, z, ldz, w, N, C, eps);
    LAUNCH_CHECK("rmsnorm_gated_fwd");
}

extern "C" void cuda_rmsnorm_gated_bwd(float *dx, float *dz, int64_t lddz, float *dw, const float *dy, const float *x,
                                       const float *z, int64_t ldz, const float *w, const float *rstd, int64_t N, int C,
                                       double eps) {
    if (N <= 0 || C <= 0) return;
    // dy, x and z in, dx and dz out; rstd when kept; w, and dw read and written
    PROF_COST(10.0 * N * C, 20.0 * N * C + (rstd ? 4.0 * N : 0) + (dw ? 12.0 * C : 4.0 * C));
    const int64_t nchunks = (N + RN_ROWS - 1) / RN_ROWS;
    Carve cv = {scratch(align256(N * sizeof(float)) + (dw ? align256(nchunks * C * sizeof(float)) : 0))};
    float *rs = cv.take<float>(N), *part = dw ? cv.take<float>(nchunks * C) : NULL;
    if (!rstd) {   // the plain norm's rstd is the gated one's: recompute it once for dx and dw
        cuda_rmsnorm_fwd(NULL, rs, (float *)x, NULL, w, N, C, eps);   // reads x only
        rstd = rs;
    }
    rmsnorm_gated_bwd_kernel<<<(unsigned)((N + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK), 32 * ROWS_PER_BLOCK, 0,
                               g_stream>>>(dx, dz, lddz, dy, x, z, ldz, w, rstd, N, C, eps);
    LAUNCH_CHECK("rmsnorm_gated_bwd");
    if (dw) {
        dim3 grid((unsigned)nchunks, (unsigned)((C + COL_THREADS - 1) / COL_THREADS));
        rmsnorm_gated_dw_partial_kernel<<<grid, COL_THREADS, 0, g_stream>>>(part, dy, x, z, ldz, rstd, N, C);
        LAUNCH_CHECK("rmsnorm_gated_dw_partial");
        colsum_finish(dw, part, nchunks, C);
    }
}
