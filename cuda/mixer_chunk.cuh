// cuda/mixer_chunk.cuh: the HGRU2 recurrence in chunks on tensor cores: prep, state sweep, backward products, dq/dk/dg.
// It runs where chunk > 0 and K = Dv = 64 or 128 (mixer.cuh).
#pragma once
#include "runtime.cuh"
#include <mma.h>
#include <cuda_pipeline.h>

// The chunked form, with chunks of CK = 64 steps and matrix operands in bf16 (fp32 accumulation,
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
//   chunk_state    (Dv/64, b*h)          the sweep over chunks: S in fp32 in shared memory, one 64-column slice
//                                        of Dv per block (columns of S never mix). Forward: o, and the
//                                        leaving state. Backward: the entering state of each chunk (bf16), or,
//                                        run in reverse with qs and do in place of ks and v, the state
//                                        gradient dS leaving each chunk: dS_c = diag(decay) dS_{c+1} + qs^T do
//   chunk_bwd_mm   (chunk, b*h)          the tensor-core part of the backward: dqs = do S^T, dks = v dS^T,
//                                        dv = A^T do + ks dS, dA = do v^T, and exp(b_C) sum_j S dS
//   chunk_bwd_qkg  (K/32, chunk, b*h)    dq, dk from dqs, dks and dA (the intra-chunk terms, anchored like A,
//                                        diagonal blocks by running products of exp(g)), then dg
//
// dg uses the identity of the exact sweeps (mixer_sweep.cuh) inside each chunk only: with w = q dq - k dk,
//   dg_t = sum_{u >= t in the chunk} w_u + sum_s k_s dk_s(inter) + exp(b_C) sum_j S_c[., j] dS_c[., j]
// where dk(inter) = dks exp(b_C - b) is the part of dk that goes through the leaving state. The last two
// terms are what the later chunks' w would add up to; taking them directly keeps the sum to 64 terms, so the
// bf16 rounding of dq and dk does not accumulate along the sequence.
//
// DIR = 1 is the reverse scan of ops.h: the chunks above are chunks of the scan, whose step t is position
// T-1-t, so every kernel finds a chunk's rows from its position T-1-t0 with negative row strides (the ragged
// chunk is the scan's last, at the start of the sequence). ACC = true adds o (the forward), or dq, dk, dg and
// dv (the backward), to what is there in the final stores; each element has one writer. Then chunk_bwd_mm
// leaves dqs and dks in scratch (tq, tk) instead of in dq and dk, where chunk_bwd_qkg reads them.
// <DIR = 0, ACC = false> is the causal, overwriting code as it was before the flags.

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
    float *tq, *tk;                // ACC: scratch for dqs, dks from chunk_bwd_mm to chunk_bwd_qkg (else dq, dk)
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
// the position of step t of the scan: t, or T-1-t in the reverse scan
template <int DIR> __device__ __forceinline__ int pos(int t, int T) { return DIR ? T - 1 - t : t; }

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

template <int K, int DIR>
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
    const int64_t row0 = bth(bb, pos<DIR>(t0, a.T), h, a.T, a.H) * K, ld = DIR ? -(int64_t)a.H * K : (int64_t)a.H * K;
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

template <int K, int REV, int DIR, bool ACC>
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
    const int64_t ldr = REV ? (int64_t)a.H * DV : a.ldv, ldrs = DIR ? -ldr : ldr;   // ldrs: step to step
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
        rows_async<VT, VT>(x.Rf, R + ((int64_t)bb * a.T + pos<DIR>(t0, a.T)) * ldr, ldrs, len, vec, tid, NTH);
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
            float *o = a.o + bth(bb, pos<DIR>(t0 + ri * 16, a.T), h, a.T, a.H) * DV + c0 + j0 * 16 + lane;
            const int64_t ldo = DIR ? -(int64_t)a.H * DV : (int64_t)a.H * DV;
            for (int rr = 0; rr < 16 && ri * 16 + rr < len; rr++) {
                if (ACC) o[rr * ldo] += of[rr * LDS + lane];
                else o[rr * ldo] = of[rr * LDS + lane];
            }
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
// (dst and gld 16-byte aligned; sld and COLS are multiples of 4), else 4. ACC: added to what dst holds.
template <int COLS, bool ACC = false>
__device__ __forceinline__ void rows_out(float *dst, int64_t gld, const float *src, int sld, int rows, bool vec,
                                         int tid, int nthr) {
    if (vec) {
        for (int i = 4 * tid; i < rows * COLS; i += 4 * nthr) {
            const int r = i / COLS, col = i % COLS;
            if (ACC) {
                float4 v = *(const float4 *)(src + r * sld + col);
                const float4 d = *(const float4 *)(dst + r * gld + col);
                v.x += d.x; v.y += d.y; v.z += d.z; v.w += d.w;
                *(float4 *)(dst + r * gld + col) = v;
            } else {
                *(float4 *)(dst + r * gld + col) = *(const float4 *)(src + r * sld + col);
            }
        }
    } else {
        for (int i = tid; i < rows * COLS; i += nthr) {
            const int r = i / COLS, col = i % COLS;
            if (ACC) dst[r * gld + col] += src[r * sld + col];
            else dst[r * gld + col] = src[r * sld + col];
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

template <int K, int DV, int DIR, bool ACC>
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
        const int64_t row0 = (int64_t)bb * a.T + pos<DIR>(t0, a.T);
        rows_async<DV, DV>(Of, a.dout + (row0 * a.H + h) * DV, DIR ? -(int64_t)a.H * DV : (int64_t)a.H * DV, len,
                           a.do_vec, tid, blockDim.x);
        rows_async<DV, DV>(Of + CK * DV, a.v + row0 * a.ldv + (int64_t)h * DV, DIR ? -a.ldv : a.ldv, len, a.v_vec, tid,
                           blockDim.x);
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
        float *dst = (pass ? (ACC ? a.tk : a.dk) : (ACC ? a.tq : a.dq)) + bth(bb, pos<DIR>(t0, a.T), h, a.T, a.H) * K;
        rows_out<K>(dst, DIR ? -(int64_t)a.H * K : (int64_t)a.H * K, Of, LDO, len, a.dqk_vec, tid, blockDim.x);
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
    float *dv = a.dv + ((int64_t)bb * a.T + pos<DIR>(t0, a.T)) * a.lddv + (int64_t)h * DV;
    rows_out<DV, ACC>(dv, DIR ? -a.lddv : a.lddv, Of, LDO, len, a.dv_vec, tid, blockDim.x);
}

// ---- chunk_bwd_qkg: dq, dk and dg ----
// Thread (channel i, row block rb of 16 rows). dq_r = [dqs_r exp(b_r) + sum_{s<=r} dA_rs k_s exp(b_r - b_s)] / sqrt(K):
// the earlier blocks through the anchor n = 16 rb (k_s exp(b_n - b_s), then times exp(b_r - b_n)), the block
// itself through running products of exp(g). dk_s = dks_s exp(b_C - b_s) + sum_{r>=s} dA_rs q_r exp(b_r - b_s)
// / sqrt(K), the later blocks through the anchor m = 16 rb + 15. The chunk's dA and its 32 channels of q, k,
// b, g sit in shared memory.
template <int K, int DIR, bool ACC>
__global__ void __launch_bounds__(128) chunk_bwd_qkg_kernel(ChunkArgs a) {
    __shared__ __align__(16) float dA[CK * CK];
    __shared__ __align__(16) float qS[CK * 32], kS[CK * 32], bS[CK * 32], gS[CK * 32];
    float (*wtot)[32] = (float (*)[32])gS, (*ktot)[32] = (float (*)[32])(gS + 4 * 32);   // once g is read
    const int c = blockIdx.y, bh = blockIdx.z, bb = bh / a.H, h = bh - bb * a.H, tid = threadIdx.x;
    const int lane = tid & 31, rb = tid >> 5, ch0 = blockIdx.x * 32, ch = ch0 + lane;
    const int t0 = c * CK, len = min(CK, a.T - t0), n = rb * 16;
    const int64_t cidx = (int64_t)bh * a.NC + c, row0 = bth(bb, pos<DIR>(t0, a.T), h, a.T, a.H) * K + ch0;
    const int64_t ld = DIR ? -(int64_t)a.H * K : (int64_t)a.H * K;
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
            dq = ((ACC ? a.tq : a.dq)[gi] * __expf(bv[j]) + accO[j] * __expf(bv[j] - bv[0]) + accD[j]) * a.scale;
            const float dki = (ACC ? a.tk : a.dk)[gi] * __expf(bC - bv[j]);
            dk = dki + (accK[j] * __expf(bv[15] - bv[j]) + dkD[j]) * a.scale;
            kint += kv[j] * dki;
            if (ACC) {
                a.dq[gi] += dq;
                a.dk[gi] += dk;
            } else {
                a.dq[gi] = dq;
                a.dk[gi] = dk;
            }
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
        if (n + j < len) {
            if (ACC) a.dg[at(n + j)] += wsum[j] + later;
            else a.dg[at(n + j)] = wsum[j] + later;
        }
}

template <typename F> static void set_smem(F *kernel, size_t bytes) {
    if (bytes > 48 * 1024)
        CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

// Scratch for the chunked kernels, carved from the shared scratch buffer; acc (backward) adds tq and tk.
static ChunkArgs chunk_scratch(int B, int T, int H, int K, int Dv, bool bwd, bool acc) {
    ChunkArgs a = {};
    a.T = T; a.H = H; a.NC = (T + CK - 1) / CK;
    a.scale = 1.f / sqrtf((float)K);
    const size_t nch = (size_t)B * H * a.NC;
    size_t bytes = align256((size_t)B * T * H * K * 4) + align256(nch * CK * K * 2) * 2 + align256(nch * CK * CK * 2) +
                   align256(nch * K * 4);
    if (bwd) bytes += align256(nch * K * Dv * 2) * 2 + align256(nch * CK * CK * 4) + align256(nch * K * 4);
    if (bwd && acc) bytes += align256((size_t)B * T * H * K * 4) * 2;
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
        if (acc) {
            a.tq = cv.take<float>((size_t)B * T * H * K);
            a.tk = cv.take<float>((size_t)B * T * H * K);
        }
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

template <int K, int DIR>
static void chunk_prep(const ChunkArgs &a, int BH) {
    static bool set = false;
    if (!set) { set_smem(chunk_prep_kernel<K, DIR>, PrepSmem<K>::bytes); set = true; }
    chunk_prep_kernel<K, DIR><<<dim3(a.NC, BH), 256, PrepSmem<K>::bytes, g_stream>>>(a);
    LAUNCH_CHECK("hgru chunk_prep");
}

template <int K, int REV, int DIR, bool ACC>
static void chunk_state(const ChunkArgs &a, int BH) {
    static bool set = false;
    if (!set) { set_smem(chunk_state_kernel<K, REV, DIR, ACC>, StateSmem<K>::bytes); set = true; }
    chunk_state_kernel<K, REV, DIR, ACC><<<dim3(K / ST_VT, BH), 256, StateSmem<K>::bytes, g_stream>>>(a);
    LAUNCH_CHECK(REV ? "hgru chunk_state (reverse)" : "hgru chunk_state");
}

template <int K, int DIR, bool ACC>
static void chunk_fwd(ChunkArgs a, int B) {
    chunk_prep<K, DIR>(a, B * a.H);
    chunk_state<K, 0, DIR, ACC>(a, B * a.H);
}

template <int K, int DIR, bool ACC>
static void chunk_bwd(ChunkArgs a, int B) {
    const int BH = B * a.H;
    chunk_prep<K, DIR>(a, BH);
    ChunkArgs s = a;
    s.o = NULL; s.ST = NULL; s.S0 = NULL;
    chunk_state<K, 0, DIR, false>(s, BH);      // hs
    chunk_state<K, 1, DIR, false>(a, BH);      // dhs
    static bool set = false;
    if (!set) { set_smem(chunk_bwd_mm_kernel<K, K, DIR, ACC>, BwdSmem<K, K>::bytes); set = true; }
    chunk_bwd_mm_kernel<K, K, DIR, ACC><<<dim3(a.NC, BH), 256, BwdSmem<K, K>::bytes, g_stream>>>(a);
    LAUNCH_CHECK("hgru chunk_bwd_mm");
    chunk_bwd_qkg_kernel<K, DIR, ACC><<<dim3(K / 32, a.NC, BH), 128, 0, g_stream>>>(a);
    LAUNCH_CHECK("hgru chunk_bwd_qkg");
}
