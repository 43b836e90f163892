// cuda/attention.cuh: the Transformer++'s ops (ops.h "Transformer++"): rotary positions, causal softmax
// attention forward and backward, and the append of new keys and values to a decoding cache. Plain fp32 kernels
// on the CUDA cores, checked against cpu.c by tests/test_gpu.cu. Under --precision bf16, a build with cuDNN
// (HGRN2_CUDNN) runs the training form's attention on cuDNN's fused SDPA instead (cuda/attention_cudnn.cpp):
// the conversion kernels and the choice of path are at the end of this file.
#pragma once
#include "pointwise.cuh"
#ifdef HGRN2_CUDNN
#include "attention_cudnn.h"
#endif

// ---------------------------------------------------------------------------------------------------------
// Rotary positions: a thread per (row, frequency i) turns the pair (x_i, x_{i+hd/2}) of every head of the row.
// The angle (pos0 + t) theta^(-2i/hd), its cos and sin are computed in double, as cpu.c computes them, and
// each result is rounded once; the heads of a row share the angle, so it is made once per thread. The GPU's
// double pow, sin and cos may differ from glibc's in the last bit of the double, which moves a float result
// only where it lies that close to a rounding boundary: in practice the rotation is the CPU's, bit for bit.
// Consecutive threads take consecutive i, so each head's loads and stores are contiguous runs.
// ---------------------------------------------------------------------------------------------------------
__global__ void rope_kernel(float *x, int64_t ldx, int64_t rows, int T, int H, int hd, int pos0, double theta,
                            double sign) {
    const int hh = hd / 2;
    GRID_STRIDE(e, rows * hh) {
        const int64_t r = e / hh;
        const int i = (int)(e - r * hh);
        const double a = (double)(pos0 + (int)(r % T)) * pow(theta, -2.0 * i / hd);
        double s, c;
        sincos(a, &s, &c);
        s *= sign;
        float *lo = x + r * ldx + i;
        for (int h = 0; h < H; h++, lo += hd) {
            const double x1 = lo[0], x2 = lo[hh];
            lo[0] = (float)(x1 * c - x2 * s);
            lo[hh] = (float)(x2 * c + x1 * s);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Causal attention, flash style: the scores never leave the chip, memory is O(T), not O(T^2).
//
// Forward. A block of ATT_WARPS warps takes one (sequence b, head h) and a tile of BQ = ATT_WARPS x RPW queries;
// warp w owns the tile's rows w, w + ATT_WARPS, ... (interleaved, so that every warp gets early and late rows
// and the causal work is even). The keys and values the tile sees stream through shared memory in tiles of
// ATT_BK = 32, one key per lane: lane j computes the score of key j0 + j for the row, the warp takes their
// maximum and sum by shuffles, and the row's output accumulates sum_j p_j v_j with lane owning the columns
// lane, lane + 32, ... (HD / 32 registers per row). Each row keeps the online softmax's running maximum m and
// sum l: a tile that raises the maximum rescales l and the accumulator by the same exp(m_old - m_new), so the
// rounding of that factor cancels in o = acc / l. Everything is fp32 (the CPU's sum of the exponentials is in
// double; the difference is fp32 rounding, tests/test_gpu.cu derives its size). lse = m + log l in double.
// Shared rows have hd + 1 floats (odd): lanes reading 32 different rows at one column hit 32 different banks.
// Blocks of the heaviest tiles are launched first (att_block): a tile's causal work grows with its position.
//
// Backward (training: Tq = Tk = T), without atomics, so it is deterministic:
//   1. delta_t = do_t . o_t per (row, head): a thread each, summed as dp below is;
//   2. dq: a block per (b, h, tile of BQ queries), as the forward, streaming the keys and values: lane j
//      recomputes s_tj and p_tj = exp(s_tj - lse_t) (lse as the forward saved it), dp_tj = do_t . v_j and
//      ds_tj = p_tj (dp_tj - delta_t) / sqrt(hd); the row accumulates dq_t = sum_j ds_tj k_j;
//   3. dk, dv: a block per (b, h, tile of ATT_WARPS x RPW keys), streaming the queries from the tile's first key
//      to the end in tiles of 32 (q, do, lse and delta of one query per lane): dv_j = sum_t p_tj do_t and
//      dk_j = sum_t ds_tj q_t, each key's sums owned by one warp.
// The scores are the same expression in both backward kernels (att_dot of q and k, times the scale), so the two
// compute p alike. Per (b, h) the work is O(T^2 hd) and the extra traffic is the key/value (or
// query) prefix once per tile, which the L2 cache mostly serves.
// ---------------------------------------------------------------------------------------------------------
#define ATT_WARPS 4
#define ATT_THREADS (32 * ATT_WARPS)
#define ATT_BK 32         // keys per tile in the forward and dq kernels, queries per tile in the dk/dv kernel
#define ATT_RPW 8         // rows per warp in the forward and dq kernels (a tile of 32 queries)
#define ATT_MAX_HD CUDA_ATTENTION_MAX_HD   // the widest head (cuda_ops.h): register accumulators of HD / 32 a row

__device__ __forceinline__ float att_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// a . b over n values in four interleaved partial sums (latency: four independent chains of FMAs)
__device__ __forceinline__ float att_dot(const float *a, const float *b, int n) {
    float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
    int d = 0;
    for (; d + 4 <= n; d += 4) {
        s0 += a[d] * b[d];
        s1 += a[d + 1] * b[d + 1];
        s2 += a[d + 2] * b[d + 2];
        s3 += a[d + 3] * b[d + 3];
    }
    for (; d < n; d++) s0 += a[d] * b[d];
    return (s0 + s1) + (s2 + s3);
}

// rows [r0, r0 + n) of a [rows, hd] slice with row stride ld into shared rows of stride hd + 1
__device__ __forceinline__ void att_load(float *dst, const float *src, int64_t ld, int n, int hd) {
    for (int e = threadIdx.x; e < n * hd; e += blockDim.x) {
        const int r = e / hd, d = e - r * hd;
        dst[r * (hd + 1) + d] = src[r * ld + d];
    }
}

// The block's (b, h, tile), every (b, h) of a tile before the next tile, the heaviest tiles first: the last
// query tiles see the most keys (last_heavy), the first key tiles the most queries.
struct AttBlock { int b, h, tile; };
__device__ __forceinline__ AttBlock att_block(int B, int H, int ntiles, bool last_heavy) {
    const int64_t bh = (int64_t)B * H, i = blockIdx.x;
    AttBlock a;
    a.tile = last_heavy ? ntiles - 1 - (int)(i / bh) : (int)(i / bh);
    a.b = (int)(i % bh / H);
    a.h = (int)(i % H);
    return a;
}

template <int HD>
__global__ void __launch_bounds__(ATT_THREADS) attention_fwd_kernel(float *__restrict__ o, float *__restrict__ lse,
                                                                    const float *__restrict__ q, int64_t ldq,
                                                                    const float *__restrict__ k,
                                                                    const float *__restrict__ v, int64_t ldkv,
                                                                    int64_t skv, int B, int Tq, int Tk, int H, int hd,
                                                                    float scale, int ntiles) {
    constexpr int BQ = ATT_WARPS * ATT_RPW, NC = HD / 32;
    extern __shared__ float att_smem[];
    const int SK = hd + 1, lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    float *sQ = att_smem, *sK = sQ + BQ * SK, *sV = sK + ATT_BK * SK;
    const AttBlock blk = att_block(B, H, ntiles, true);
    const int q0 = blk.tile * BQ, nq = min(BQ, Tq - q0), off = Tk - Tq;   // query t stands at position off + t
    const int kend = off + q0 + nq;                                      // the tile sees keys 0 .. kend - 1
    const int64_t col = (int64_t)blk.h * hd;
    const float *kb = k + blk.b * skv + col, *vb = v + blk.b * skv + col;
    att_load(sQ, q + ((int64_t)blk.b * Tq + q0) * ldq + col, ldq, nq, hd);
    float m[ATT_RPW], l[ATT_RPW], acc[ATT_RPW][NC];
#pragma unroll
    for (int i = 0; i < ATT_RPW; i++) {
        m[i] = -INFINITY;
        l[i] = 0.f;
#pragma unroll
        for (int c = 0; c < NC; c++) acc[i][c] = 0.f;
    }
    for (int j0 = 0; j0 < kend; j0 += ATT_BK) {
        const int nk = min(ATT_BK, kend - j0);
        __syncthreads();   // every warp is done with the previous tile (and, the first time, sQ is written)
        att_load(sK, kb + (int64_t)j0 * ldkv, ldkv, nk, hd);
        att_load(sV, vb + (int64_t)j0 * ldkv, ldkv, nk, hd);
        __syncthreads();
#pragma unroll
        for (int i = 0; i < ATT_RPW; i++) {
            const int r = i * ATT_WARPS + w, pos = off + q0 + r;
            if (r >= nq || j0 > pos) continue;             // (the whole warp) no key of this tile for this row
            const int n = min(nk, pos - j0 + 1);           // the tile's keys the row sees: lanes 0 .. n - 1
            const float s = lane < n ? att_dot(sQ + r * SK, sK + lane * SK, hd) * scale : -INFINITY;
            const float mn = fmaxf(m[i], att_warp_max(s));   // finite: lane 0's key is always seen
            const float f = expf(m[i] - mn);                 // 0 on the row's first tile
            const float p = lane < n ? expf(s - mn) : 0.f;
            l[i] = l[i] * f + warp_sum(p);
            m[i] = mn;
#pragma unroll
            for (int c = 0; c < NC; c++) acc[i][c] *= f;
            for (int jj = 0; jj < n; jj++) {
                const float pj = __shfl_sync(0xffffffffu, p, jj);
                const float *vr = sV + jj * SK;
#pragma unroll
                for (int c = 0; c < NC; c++)
                    if (c * 32 + lane < hd) acc[i][c] += pj * vr[c * 32 + lane];
            }
        }
    }
    const int64_t D = (int64_t)H * hd;
#pragma unroll
    for (int i = 0; i < ATT_RPW; i++) {
        const int r = i * ATT_WARPS + w;
        if (r >= nq) continue;
        const int64_t row = (int64_t)blk.b * Tq + q0 + r;
        const float inv = 1.f / l[i];
        float *orow = o + row * D + col;
#pragma unroll
        for (int c = 0; c < NC; c++)
            if (c * 32 + lane < hd) orow[c * 32 + lane] = acc[i][c] * inv;
        if (lse && lane == 0) lse[row * H + blk.h] = (float)((double)m[i] + log((double)l[i]));
    }
}

// delta[w] = do . o over the hd values of (row, head) w: rows of H hd contiguous values, so w's are at w hd. A
// thread each, in att_dot's order, which is the order of the backward kernels' dp = do . v: where o_t is one
// value v_j (the first row, o_0 = v_0) dp_tj - delta_t is then exactly 0, as on the CPU, not rounding noise.
__global__ void attention_delta_kernel(float *__restrict__ delta, const float *__restrict__ dout,
                                       const float *__restrict__ o, int64_t n, int hd) {
    GRID_STRIDE(w, n) delta[w] = att_dot(dout + w * hd, o + w * hd, hd);
}

template <int HD>
__global__ void __launch_bounds__(ATT_THREADS) attention_dq_kernel(float *__restrict__ dq, int64_t ldd,
                                                                   const float *__restrict__ dout,
                                                                   const float *__restrict__ q,
                                                                   const float *__restrict__ k,
                                                                   const float *__restrict__ v, int64_t ld,
                                                                   const float *__restrict__ lse,
                                                                   const float *__restrict__ delta, int B, int T,
                                                                   int H, int hd, float scale, int ntiles) {
    constexpr int BQ = ATT_WARPS * ATT_RPW, NC = HD / 32;
    extern __shared__ float att_smem[];
    const int SK = hd + 1, lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    float *sQ = att_smem, *sDO = sQ + BQ * SK, *sK = sDO + BQ * SK, *sV = sK + ATT_BK * SK;
    const AttBlock blk = att_block(B, H, ntiles, true);
    const int q0 = blk.tile * BQ, nq = min(BQ, T - q0), kend = q0 + nq;
    const int64_t col = (int64_t)blk.h * hd, D = (int64_t)H * hd, row0 = (int64_t)blk.b * T;
    const float *kb = k + row0 * ld + col, *vb = v + row0 * ld + col;
    att_load(sQ, q + (row0 + q0) * ld + col, ld, nq, hd);
    att_load(sDO, dout + (row0 + q0) * D + col, D, nq, hd);
    float L[ATT_RPW], dl[ATT_RPW], acc[ATT_RPW][NC];
#pragma unroll
    for (int i = 0; i < ATT_RPW; i++) {
        const int r = i * ATT_WARPS + w;
        L[i] = r < nq ? lse[(row0 + q0 + r) * H + blk.h] : 0.f;
        dl[i] = r < nq ? delta[(row0 + q0 + r) * H + blk.h] : 0.f;
#pragma unroll
        for (int c = 0; c < NC; c++) acc[i][c] = 0.f;
    }
    for (int j0 = 0; j0 < kend; j0 += ATT_BK) {
        const int nk = min(ATT_BK, kend - j0);
        __syncthreads();
        att_load(sK, kb + (int64_t)j0 * ld, ld, nk, hd);
        att_load(sV, vb + (int64_t)j0 * ld, ld, nk, hd);
        __syncthreads();
#pragma unroll
        for (int i = 0; i < ATT_RPW; i++) {
            const int r = i * ATT_WARPS + w, t = q0 + r;
            if (r >= nq || j0 > t) continue;
            const int n = min(nk, t - j0 + 1);
            float ds = 0.f;
            if (lane < n) {
                const float p = expf(att_dot(sQ + r * SK, sK + lane * SK, hd) * scale - L[i]);
                ds = p * (att_dot(sDO + r * SK, sV + lane * SK, hd) - dl[i]) * scale;
            }
            for (int jj = 0; jj < n; jj++) {
                const float dsj = __shfl_sync(0xffffffffu, ds, jj);
                const float *kr = sK + jj * SK;
#pragma unroll
                for (int c = 0; c < NC; c++)
                    if (c * 32 + lane < hd) acc[i][c] += dsj * kr[c * 32 + lane];
            }
        }
    }
#pragma unroll
    for (int i = 0; i < ATT_RPW; i++) {
        const int r = i * ATT_WARPS + w;
        if (r >= nq) continue;
        float *dr = dq + (row0 + q0 + r) * ldd + col;
#pragma unroll
        for (int c = 0; c < NC; c++)
            if (c * 32 + lane < hd) dr[c * 32 + lane] = acc[i][c];
    }
}

// RPW keys per warp: 8 (a tile of 32 keys) up to HD 128, 4 at HD 256, where dk and dv take 2 x 8 registers a key
template <int HD, int RPW>
__global__ void __launch_bounds__(ATT_THREADS) attention_dkv_kernel(float *__restrict__ dk, float *__restrict__ dv,
                                                                    int64_t ldd, const float *__restrict__ dout,
                                                                    const float *__restrict__ q,
                                                                    const float *__restrict__ k,
                                                                    const float *__restrict__ v, int64_t ld,
                                                                    const float *__restrict__ lse,
                                                                    const float *__restrict__ delta, int B, int T,
                                                                    int H, int hd, float scale, int ntiles) {
    constexpr int BKT = ATT_WARPS * RPW, NC = HD / 32;
    extern __shared__ float att_smem[];
    const int SK = hd + 1, lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    float *sK = att_smem, *sV = sK + BKT * SK, *sQ = sV + BKT * SK, *sDO = sQ + ATT_BK * SK,
          *sL = sDO + ATT_BK * SK, *sD = sL + ATT_BK;
    const AttBlock blk = att_block(B, H, ntiles, false);
    const int j0 = blk.tile * BKT, nk = min(BKT, T - j0);
    const int64_t col = (int64_t)blk.h * hd, D = (int64_t)H * hd, row0 = (int64_t)blk.b * T;
    att_load(sK, k + (row0 + j0) * ld + col, ld, nk, hd);
    att_load(sV, v + (row0 + j0) * ld + col, ld, nk, hd);
    float ak[RPW][NC], av[RPW][NC];
#pragma unroll
    for (int i = 0; i < RPW; i++)
#pragma unroll
        for (int c = 0; c < NC; c++) ak[i][c] = av[i][c] = 0.f;
    for (int i0 = j0; i0 < T; i0 += ATT_BK) {   // queries before j0 see none of the tile's keys
        const int nq = min(ATT_BK, T - i0);
        __syncthreads();
        att_load(sQ, q + (row0 + i0) * ld + col, ld, nq, hd);
        att_load(sDO, dout + (row0 + i0) * D + col, D, nq, hd);
        if ((int)threadIdx.x < nq) {
            sL[threadIdx.x] = lse[(row0 + i0 + threadIdx.x) * H + blk.h];
            sD[threadIdx.x] = delta[(row0 + i0 + threadIdx.x) * H + blk.h];
        }
        __syncthreads();
#pragma unroll
        for (int i = 0; i < RPW; i++) {
            const int r = i * ATT_WARPS + w, j = j0 + r;
            if (r >= nk || i0 + nq <= j) continue;         // every query of this tile comes before key j
            const int first = max(0, j - i0);              // the tile's first query that sees key j
            float p = 0.f, ds = 0.f;
            if (lane >= first && lane < nq) {
                p = expf(att_dot(sQ + lane * SK, sK + r * SK, hd) * scale - sL[lane]);
                ds = p * (att_dot(sDO + lane * SK, sV + r * SK, hd) - sD[lane]) * scale;
            }
            for (int tt = first; tt < nq; tt++) {
                const float pt = __shfl_sync(0xffffffffu, p, tt), dst = __shfl_sync(0xffffffffu, ds, tt);
                const float *qr = sQ + tt * SK, *dor = sDO + tt * SK;
#pragma unroll
                for (int c = 0; c < NC; c++)
                    if (c * 32 + lane < hd) {
                        av[i][c] += pt * dor[c * 32 + lane];
                        ak[i][c] += dst * qr[c * 32 + lane];
                    }
            }
        }
    }
#pragma unroll
    for (int i = 0; i < RPW; i++) {
        const int r = i * ATT_WARPS + w;
        if (r >= nk) continue;
        float *dkr = dk + (row0 + j0 + r) * ldd + col, *dvr = dv + (row0 + j0 + r) * ldd + col;
#pragma unroll
        for (int c = 0; c < NC; c++)
            if (c * 32 + lane < hd) {
                dkr[c * 32 + lane] = ak[i][c];
                dvr[c * 32 + lane] = av[i][c];
            }
    }
}

// The new keys and values into the decoding cache: a block per new row (b, t), its threads along the C values.
__global__ void kv_append_kernel(float *__restrict__ cache, int64_t ldc, int ctx, int pos0,
                                 const float *__restrict__ x, int64_t ldx, int64_t N, int T, int C) {
    ROWS_COLS(r, c, N, C) cache[((r / T) * ctx + pos0 + r % T) * ldc + c] = x[r * ldx + c];
}

// ---------------------------------------------------------------------------------------------------------
// cuDNN's attention: the fp32 tensors to the bf16 layouts of cuda/attention_cudnn.h and back
// ---------------------------------------------------------------------------------------------------------
// These passes move every byte of q, k, v, o and their gradients once more, so they run eight values a thread:
// two 16-byte loads of fp32 and one 16-byte store of bf16 (or the other way). D and the row strides are multiples
// of 8 values and the pointers 16-byte aligned in every model (att_vec checks); otherwise (vec 0) one value a
// thread. Eight values never straddle q, k and v, since D is a multiple of 8.
__device__ __forceinline__ void load8(const float *p, float v[8]) { load4(p, v); load4(p + 4, v + 4); }
__device__ __forceinline__ void store8(bf16 *p, const float v[8]) {
    uint4 u;
    unsigned *w = (unsigned *)&u;
    #pragma unroll
    for (int j = 0; j < 4; j++) {
        __nv_bfloat162 t = __floats2bfloat162_rn(v[2 * j], v[2 * j + 1]);
        w[j] = *(unsigned *)&t;
    }
    *(uint4 *)p = u;
}
__device__ __forceinline__ void load8(const bf16 *p, float v[8]) {
    const uint4 u = *(const uint4 *)p;
    const unsigned *w = (const unsigned *)&u;
    #pragma unroll
    for (int j = 0; j < 4; j++) {
        const float2 t = __bfloat1622float2(*(const __nv_bfloat162 *)&w[j]);
        v[2 * j] = t.x;
        v[2 * j + 1] = t.y;
    }
}
__device__ __forceinline__ void store8(float *p, const float v[8]) { store4(p, v); store4(p + 4, v + 4); }

// q, k, v (row (b, t) of q at q + (b T + t) ldq, of k and v at k + b skv + t ldkv) into bf16 rows [q | k | v] of 3D
__global__ void att_qkv_bf16_kernel(bf16 *__restrict__ y, const float *__restrict__ q, int64_t ldq,
                                    const float *__restrict__ k, const float *__restrict__ v, int64_t ldkv,
                                    int64_t skv, int64_t N, int T, int D, int vec) {
    const int W = vec ? 8 : 1, per = 3 * D / W;   // groups of W values a row
    GRID_STRIDE(i, N * per) {
        const int64_t r = i / per;
        const int c = (int)(i - r * per) * W, w = c / D, cc = c - w * D;
        const float *x = w == 0 ? q + r * ldq + cc : (w == 1 ? k : v) + (r / T) * skv + (r % T) * ldkv + cc;
        bf16 *out = y + r * 3 * D + c;
        if (vec) {
            float t[8];
            load8(x, t);
            store8(out, t);
        } else {
            *out = __float2bfloat16(*x);
        }
    }
}
// bf16 rows [dq | dk | dv] of 3D into dq, dk, dv, rows of stride ldd
__global__ void att_dqkv_f32_kernel(float *__restrict__ dq, float *__restrict__ dk, float *__restrict__ dv, int64_t ldd,
                                    const bf16 *__restrict__ x, int64_t N, int D, int vec) {
    const int W = vec ? 8 : 1, per = 3 * D / W;
    GRID_STRIDE(i, N * per) {
        const int64_t r = i / per;
        const int c = (int)(i - r * per) * W, w = c / D;
        float *out = (w == 0 ? dq : w == 1 ? dk : dv) + r * ldd + c - w * D;
        if (vec) {
            float t[8];
            load8(x + r * 3 * D + c, t);
            store8(out, t);
        } else {
            *out = __bfloat162float(x[r * 3 * D + c]);
        }
    }
}
// n values between the formats, eight a thread where n is a multiple of 8 and both are 16-byte aligned
template <typename TO, typename TI>
__global__ void att_convert_kernel(TO *__restrict__ y, const TI *__restrict__ x, int64_t n, int vec) {
    if (vec) {
        GRID_STRIDE(i, n / 8) {
            float t[8];
            load8(x + 8 * i, t);
            store8(y + 8 * i, t);
        }
    } else {
        GRID_STRIDE(i, n) put(y + i, (float)x[i]);
    }
}
template <typename TO, typename TI> static void att_convert(TO *y, const TI *x, int64_t n) {
    const int vec = n % 8 == 0 && al(x, 16) && al(y, 16);
    att_convert_kernel<TO, TI><<<blocks_for(vec ? n / 8 : n, 256), 256, 0, g_stream>>>(y, x, n, vec);
    LAUNCH_CHECK("att_convert");
}
static bool att_vec(int64_t D, const void *a, int64_t lda, const void *b, int64_t ldb, int64_t sb, const void *c,
                    const void *y) {
    return D % 8 == 0 && lda % 4 == 0 && ldb % 4 == 0 && sb % 4 == 0 && al(a, 16) && al(b, 16) && al(c, 16) && al(y, 16);
}
// [B, n1, n2] -> [B, n2, n1]
__global__ void att_transpose_kernel(float *__restrict__ y, const float *__restrict__ x, int64_t B, int n1, int n2) {
    GRID_STRIDE(i, B * n1 * n2) {
        const int64_t b = i / ((int64_t)n1 * n2), r = i - b * n1 * n2, a = r / n2, c = r - a * n2;
        y[(b * n2 + c) * n1 + a] = x[i];
    }
}

// ---------------------------------------------------------------------------------------------------------
// launchers
// ---------------------------------------------------------------------------------------------------------
extern "C" void cuda_rope_fwd(float *x, int64_t ldx, int B, int T, int H, int hd, int pos0, double theta) {
    const int64_t n = (int64_t)B * T * (hd / 2);
    if (n <= 0 || H <= 0) return;
    rope_kernel<<<blocks_for(n, 256), 256, 0, g_stream>>>(x, ldx, (int64_t)B * T, T, H, hd, pos0, theta, 1.0);
    LAUNCH_CHECK("rope_fwd");
}

extern "C" void cuda_rope_bwd(float *dx, int64_t lddx, int B, int T, int H, int hd, double theta) {
    const int64_t n = (int64_t)B * T * (hd / 2);
    if (n <= 0 || H <= 0) return;
    rope_kernel<<<blocks_for(n, 256), 256, 0, g_stream>>>(dx, lddx, (int64_t)B * T, T, H, hd, 0, theta, -1.0);
    LAUNCH_CHECK("rope_bwd");
}

// The register width of a head of hd values: the next of 32, 64, 128, 256.
static int att_hd(int hd) {
    if (hd > ATT_MAX_HD)
        die("the GPU's attention takes heads of at most %d values, got %d: use more --heads, or --device cpu",
            ATT_MAX_HD, hd);
    return hd <= 32 ? 32 : hd <= 64 ? 64 : hd <= 128 ? 128 : 256;
}

// Blocks for ntiles tiles of every (b, h), one dimension
static unsigned att_grid(int ntiles, int B, int H) {
    const int64_t n = (int64_t)ntiles * B * H;
    if (n > INT_MAX) die("attention: %lld blocks of (sequence, head, tile) are more than one launch takes", (long long)n);
    return (unsigned)n;
}

// Launches kernel with smem bytes of dynamic shared memory, allowing more than the default 48 KiB once per
// kernel (each instantiation has its own `allowed`).
template <typename K> static void att_allow(K *kernel, size_t smem, size_t &allowed) {
    if (smem > 48 * 1024 && smem > allowed) {
        CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        allowed = smem;
    }
}

// The path of the attention: cuDNN's fused SDPA (a build with HGRN2_CUDNN) for the training form (Tq = Tk: training,
// evaluation, prefill) under --precision bf16 at shapes cuDNN takes forward and backward; the fp32 kernels
// otherwise (decoding's Tq < Tk among them). HGRN2_ATTENTION=kernel keeps the kernels in every precision,
// HGRN2_ATTENTION=cudnn takes cuDNN in every precision (the training form only) and dies where cuDNN cannot;
// cuda_attention_path overrides both (the tests).
static int g_att_path = -2;   // -1: as the precision says, 0: the kernels, 1: cuDNN; -2: HGRN2_ATTENTION not read yet

extern "C" void cuda_attention_path(int mode) {
    if (mode < -1 || mode > 1) die("attention path must be -1 (auto), 0 (kernels) or 1 (cuDNN), got %d", mode);
    g_att_path = mode;
}

static int att_path(void) {
    if (g_att_path == -2) {
        const char *e = getenv("HGRN2_ATTENTION");
        if (!e || !*e || !strcmp(e, "auto")) g_att_path = -1;
        else if (!strcmp(e, "kernel")) g_att_path = 0;
        else if (!strcmp(e, "cudnn")) g_att_path = 1;
        else die("HGRN2_ATTENTION must be kernel, cudnn or auto, got '%s'", e);
#ifndef HGRN2_CUDNN
        if (g_att_path == 1) die("HGRN2_ATTENTION=cudnn: this build has no cuDNN attention (make setup, then make)");
#endif
    }
    return g_att_path;
}

extern "C" int cuda_attention_cudnn_built(void) {
#ifdef HGRN2_CUDNN
    return 1;
#else
    return 0;
#endif
}

#ifdef HGRN2_CUDNN
// The cuDNN plans of the shape (forward and backward; each -1 when cuDNN does not take it) when the path is cuDNN's.
static bool att_cudnn(int B, int Tq, int Tk, int H, int hd, int *pf, int *pb, int *stats_bht) {
    const int path = att_path();
    if (Tq != Tk || path == 0 || (path < 0 && g_gemm_mode != 2)) return false;
    cuda_init();
    // the stats as the ops' lse [B,T,H] first (no transposes), else as cuDNN's own [B,H,T]; forward and backward
    // in the same layout (with HGRN2_ATTENTION=cudnn, the last try dies with cuDNN's reason)
    for (int bht = 0; bht < 2; bht++) {
        const int must = path == 1 && bht == 1;
        *pf = cudnn_sdpa_plan(0, B, Tq, H, hd, g_stream, must, bht);
        *pb = *pf < 0 ? -1 : cudnn_sdpa_plan(1, B, Tq, H, hd, g_stream, must, bht);
        if (*pf >= 0 && *pb >= 0) {
            *stats_bht = bht;
            return true;
        }
    }
    return false;
}
#endif

extern "C" int cuda_attention_uses_cudnn(int B, int Tq, int Tk, int H, int hd) {
#ifdef HGRN2_CUDNN
    int pf, pb, sl;
    return B > 0 && Tq > 0 && H > 0 && hd > 0 && att_cudnn(B, Tq, Tk, H, hd, &pf, &pb, &sl);
#else
    return 0;
#endif
}

#ifdef HGRN2_CUDNN
static void att_cudnn_fwd(int plan, int stats_bht, float *o, float *lse, const float *q, int64_t ldq, const float *k,
                          const float *v, int64_t ldkv, int64_t skv, int B, int T, int H, int hd) {
    const int64_t N = (int64_t)B * T, D = (int64_t)H * hd, nl = N * H;
    const bool direct = lse && !stats_bht;   // cuDNN writes lse itself
    Carve c = {scratch(align256(N * 3 * D * 2) + align256(N * D * 2) + align256(nl * 4))};
    bf16 *qkv16 = c.take<bf16>(N * 3 * D), *o16 = c.take<bf16>(N * D);
    float *st = direct ? lse : c.take<float>(nl);
    const int vec = att_vec(D, q, ldq, k, ldkv, skv, v, qkv16);
    att_qkv_bf16_kernel<<<blocks_for(N * 3 * D / (vec ? 8 : 1), 256), 256, 0, g_stream>>>(qkv16, q, ldq, k, v, ldkv, skv,
                                                                                          N, T, (int)D, vec);
    LAUNCH_CHECK("att_qkv_bf16");
    cudnn_sdpa_fwd(plan, o16, st, qkv16);
    att_convert(o, o16, N * D);
    if (lse && !direct) {
        att_transpose_kernel<<<blocks_for(nl, 256), 256, 0, g_stream>>>(lse, st, B, H, T);   // [B,H,T] -> [B,T,H]
        LAUNCH_CHECK("att_transpose");
    }
}

static void att_cudnn_bwd(int plan, int stats_bht, float *dq, float *dk, float *dv, int64_t ldd, const float *dout,
                          const float *q, const float *k, const float *v, int64_t ld, const float *o,
                          const float *lse, int B, int T, int H, int hd) {
    const int64_t N = (int64_t)B * T, D = (int64_t)H * hd, nl = N * H;
    Carve c = {scratch(2 * align256(N * 3 * D * 2) + 2 * align256(N * D * 2) + align256(nl * 4))};
    bf16 *qkv16 = c.take<bf16>(N * 3 * D), *dqkv16 = c.take<bf16>(N * 3 * D), *o16 = c.take<bf16>(N * D),
         *do16 = c.take<bf16>(N * D);
    const float *st = lse;
    if (stats_bht) {
        float *t = c.take<float>(nl);
        att_transpose_kernel<<<blocks_for(nl, 256), 256, 0, g_stream>>>(t, lse, B, T, H);   // [B,T,H] -> [B,H,T]
        LAUNCH_CHECK("att_transpose");
        st = t;
    }
    const int vec = att_vec(D, q, ld, k, ld, (int64_t)T * ld, v, qkv16);
    att_qkv_bf16_kernel<<<blocks_for(N * 3 * D / (vec ? 8 : 1), 256), 256, 0, g_stream>>>(qkv16, q, ld, k, v, ld,
                                                                                          (int64_t)T * ld, N, T, (int)D, vec);
    LAUNCH_CHECK("att_qkv_bf16");
    att_convert(o16, o, N * D);
    att_convert(do16, dout, N * D);
    cudnn_sdpa_bwd(plan, dqkv16, do16, qkv16, o16, st);
    const int dvec = att_vec(D, dq, ldd, dk, ldd, ldd, dv, dqkv16);
    att_dqkv_f32_kernel<<<blocks_for(N * 3 * D / (dvec ? 8 : 1), 256), 256, 0, g_stream>>>(dq, dk, dv, ldd, dqkv16, N,
                                                                                           (int)D, dvec);
    LAUNCH_CHECK("att_dqkv_f32");
}
#endif

template <int HD>
static void att_fwd_launch(float *o, float *lse, const float *q, int64_t ldq, const float *k, const float *v,
                           int64_t ldkv, int64_t skv, int B, int Tq, int Tk, int H, int hd, float scale) {
    static size_t allowed = 0;
    const int ntiles = (Tq + ATT_WARPS * ATT_RPW - 1) / (ATT_WARPS * ATT_RPW);
    const size_t smem = (size_t)(ATT_WARPS * ATT_RPW + 2 * ATT_BK) * (hd + 1) * sizeof(float);
    att_allow(attention_fwd_kernel<HD>, smem, allowed);
    attention_fwd_kernel<HD><<<att_grid(ntiles, B, H), ATT_THREADS, smem, g_stream>>>(o, lse, q, ldq, k, v, ldkv, skv,
                                                                                      B, Tq, Tk, H, hd, scale, ntiles);
    LAUNCH_CHECK("attention_fwd");
}

extern "C" void cuda_attention_fwd(float *o, float *lse, const float *q, int64_t ldq, const float *k, const float *v,
                                   int64_t ldkv, int64_t skv, int B, int Tq, int Tk, int H, int hd) {
    if (B <= 0 || Tq <= 0 || H <= 0 || hd <= 0) return;
    if (Tk < Tq) die("cuda_attention_fwd: %d queries against %d keys (queries are the last keys' positions)", Tq, Tk);
#ifdef HGRN2_CUDNN
    int pf, pb, sl;
    if (att_cudnn(B, Tq, Tk, H, hd, &pf, &pb, &sl)) {
        att_cudnn_fwd(pf, sl, o, lse, q, ldq, k, v, ldkv, skv, B, Tq, H, hd);
        return;
    }
#endif
    const float scale = (float)(1 / sqrt((double)hd));   // cpu.c's
    switch (att_hd(hd)) {
    case 32: att_fwd_launch<32>(o, lse, q, ldq, k, v, ldkv, skv, B, Tq, Tk, H, hd, scale); break;
    case 64: att_fwd_launch<64>(o, lse, q, ldq, k, v, ldkv, skv, B, Tq, Tk, H, hd, scale); break;
    case 128: att_fwd_launch<128>(o, lse, q, ldq, k, v, ldkv, skv, B, Tq, Tk, H, hd, scale); break;
    default: att_fwd_launch<256>(o, lse, q, ldq, k, v, ldkv, skv, B, Tq, Tk, H, hd, scale); break;
    }
}

template <int HD>
static void att_bwd_launch(float *dq, float *dk, float *dv, int64_t ldd, const float *dout, const float *q,
                           const float *k, const float *v, int64_t ld, const float *lse, const float *delta, int B,
                           int T, int H, int hd, float scale) {
    constexpr int RPW = HD > 128 ? 4 : 8;
    static size_t allowed_q = 0, allowed_kv = 0;
    const int nq = (T + ATT_WARPS * ATT_RPW - 1) / (ATT_WARPS * ATT_RPW), nk = (T + ATT_WARPS * RPW - 1) / (ATT_WARPS * RPW);
    const size_t smem_q = (size_t)(2 * ATT_WARPS * ATT_RPW + 2 * ATT_BK) * (hd + 1) * sizeof(float);
    const size_t smem_kv = ((size_t)(2 * ATT_WARPS * RPW + 2 * ATT_BK) * (hd + 1) + 2 * ATT_BK) * sizeof(float);
    att_allow(attention_dq_kernel<HD>, smem_q, allowed_q);
    att_allow(attention_dkv_kernel<HD, RPW>, smem_kv, allowed_kv);
    attention_dq_kernel<HD><<<att_grid(nq, B, H), ATT_THREADS, smem_q, g_stream>>>(dq, ldd, dout, q, k, v, ld, lse,
                                                                                   delta, B, T, H, hd, scale, nq);
    LAUNCH_CHECK("attention_dq");
    attention_dkv_kernel<HD, RPW><<<att_grid(nk, B, H), ATT_THREADS, smem_kv, g_stream>>>(
        dk, dv, ldd, dout, q, k, v, ld, lse, delta, B, T, H, hd, scale, nk);
    LAUNCH_CHECK("attention_dkv");
}

extern "C" void cuda_attention_bwd(float *dq, float *dk, float *dv, int64_t ldd, const float *dout, const float *q,
                                   const float *k, const float *v, int64_t ld, const float *o, const float *lse, int B,
                                   int T, int H, int hd) {
    if (B <= 0 || T <= 0 || H <= 0 || hd <= 0) return;
#ifdef HGRN2_CUDNN
    int pf, pb, sl;
    if (att_cudnn(B, T, T, H, hd, &pf, &pb, &sl)) {
        att_cudnn_bwd(pb, sl, dq, dk, dv, ldd, dout, q, k, v, ld, o, lse, B, T, H, hd);
        return;
    }
#endif
    const int hdr = att_hd(hd);
    const float scale = (float)(1 / sqrt((double)hd));
    const int64_t n = (int64_t)B * T * H;
    float *delta = (float *)scratch(n * sizeof(float));
    attention_delta_kernel<<<blocks_for(n, 256), 256, 0, g_stream>>>(delta, dout, o, n, hd);
    LAUNCH_CHECK("attention_delta");
    switch (hdr) {
    case 32: att_bwd_launch<32>(dq, dk, dv, ldd, dout, q, k, v, ld, lse, delta, B, T, H, hd, scale); break;
    case 64: att_bwd_launch<64>(dq, dk, dv, ldd, dout, q, k, v, ld, lse, delta, B, T, H, hd, scale); break;
    case 128: att_bwd_launch<128>(dq, dk, dv, ldd, dout, q, k, v, ld, lse, delta, B, T, H, hd, scale); break;
    default: att_bwd_launch<256>(dq, dk, dv, ldd, dout, q, k, v, ld, lse, delta, B, T, H, hd, scale); break;
    }
}

extern "C" void cuda_kv_append(float *cache, int64_t ldc, int ctx, int pos0, const float *x, int64_t ldx, int B,
                               int T, int C) {
    const int64_t N = (int64_t)B * T;
    if (N <= 0 || C <= 0) return;
    kv_append_kernel<<<blocks_for(N, 1), 256, 0, g_stream>>>(cache, ldc, ctx, pos0, x, ldx, N, T, C);
    LAUNCH_CHECK("kv_append");
}
