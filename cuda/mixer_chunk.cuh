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
//   chunk_prep     (chunk, b*h)          qs, ks, decay and A for every chunk: fully parallel (b stays on chip;
//                                        chunk_bwd_qkg sums it again from g, in the same order)
//   chunk_state    (Dv/64, b*h)          the sweep over chunks: S in fp32 in the warps' registers, one 64-column
//                                        slice of Dv per block (columns of S never mix), 16 columns per warp.
//                                        Forward: o, and the leaving state.
//   chunk_states_bwd (Dv/64, b*h, 2)     the backward's two sweeps in one launch: the entering state of each
//                                        chunk (bf16), and, run in reverse with qs and do in place of ks and v,
//                                        the state gradient dS leaving each chunk: dS_c = diag(decay) dS_{c+1} + qs^T do
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

// The same for an M x N block of output tiles, acc[m N + n] += sum over kk in [k0, k1) of A_{m,kk} B_{n,kk} with
// A_{m,kk} at a + m * dam + kk * dak and B_{n,kk} at b + n * dbn + kk * dbk: each fragment loaded once a k-step
// serves N (or M) products, where a tile at a time loads two fragments a product. Each tile still takes its
// k-steps in order, so its sums are mma_run's.
template <typename FA, typename FB, int M, int N>
__device__ __forceinline__ void mma_blk(FragC *acc, const bf16 *a, int lda, int dam, int dak, const bf16 *b, int ldb,
                                        int dbn, int dbk, int k0, int k1) {
    FA fa[M];
    FB fb[N];
#pragma unroll
    for (int kk = k0; kk < k1; kk++) {
#pragma unroll
        for (int m = 0; m < M; m++) wm::load_matrix_sync(fa[m], a + m * dam + kk * dak, lda);
#pragma unroll
        for (int n = 0; n < N; n++) wm::load_matrix_sync(fb[n], b + n * dbn + kk * dbk, ldb);
#pragma unroll
        for (int m = 0; m < M; m++)
#pragma unroll
            for (int n = 0; n < N; n++) wm::mma_sync(acc[m * N + n], fa[m], fb[n], acc[m * N + n]);
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
// MODE 0 (forward): S_{c+1} = diag(decay_c) S_c + ks_c^T v_c and o_c = qs_c S_c + A_c v_c, from S0 (or zero)
//   to ST (when given).
// MODE 1 (backward): the same sweep from zero without o; states out (hs) = S_c, in bf16.
// MODE 2 (backward): X_c = diag(decay_c) X_{c+1} + qs_c^T do_c, run from the last chunk; states out (dhs) =
//   X_{c+1}. The backward runs modes 1 and 2 in one launch: they are independent, and together they fill
//   the card where either alone leaves SMs idle.
// One block per (b, h, VT columns of Dv), one warp per 16 of those columns. The state never leaves the
// registers: warp w holds the transposed slice S^T[16 columns of Dv][K] in fp32 mma accumulators, and every
// product is set up so that S^T is the left operand or the accumulator:
//   o^T   = S^T qs^T + R^T A^T        (the accumulators of S^T, rounded to bf16, are the left operand as they lie)
//   S^T  <- S^T diag(decay) + R^T Lm   (R = v or do, Lm = ks or qs)
// so the warps never exchange anything: one barrier per chunk, for the inputs. The inputs of chunk c+1 load
// (cp.async) while chunk c computes, into the other of two stages; R^T's fragments are read from the fp32
// rows in shared memory and rounded to bf16 as they are read.
#define ST_VT 64

// mma.sync m16n8k16, bf16 operands, fp32 accumulators (sm_80 and later). The fragments, with g = lane / 4 and
// t = lane % 4: A (16 x 16, row-major) a0 = (g, 2t..2t+1), a1 = (g + 8, 2t..), a2 = (g, 2t + 8..), a3 = (g + 8,
// 2t + 8..); B (16 x 8) b0 = (k 2t..2t+1, n g), b1 = (k 2t + 8.., n g); C (16 x 8) c0, c1 = (g, 2t..2t+1),
// c2, c3 = (g + 8, 2t..2t+1).
__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
// four 8 x 8 bf16 matrices from shared memory; lanes 8m .. 8m + 7 give the row addresses of matrix m. Plain:
// register m holds (row g, columns 2t..2t+1) of matrix m; TRANS: (rows 2t..2t+1, column g).
template <bool TRANS> __device__ __forceinline__ void ldsm4(uint32_t r[4], const bf16 *p) {
    const uint32_t s = (uint32_t)__cvta_generic_to_shared(p);
    if (TRANS)
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s) : "memory");
    else
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s) : "memory");
}
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&v;
}

// A stage holds Lm (ks or qs), then with o qs and A, then R (fp32) and decay; the backward's modes add a
// [K][16] bf16 tile per warp for the states' stores. At K 128 the forward takes one block per SM (121 KiB),
// the backward two (93 KiB); at K 64 two (88.5 KiB) and three (64.5 KiB).
template <int K, bool O>
struct StateSmem {
    static constexpr int VT = ST_VT, NW = VT / 16, LDK = K + PADB, LDC = CK + PADB, LDR = VT + 4, LDW = 16 + PADB;
    static constexpr size_t stage = sizeof(bf16) * ((O ? 2 : 1) * CK * LDK + (O ? CK * LDC : 0)) + sizeof(float) * (CK * LDR + K);
    static constexpr size_t bytes = 2 * stage + (O ? 0 : sizeof(bf16) * NW * K * LDW);
};

template <int K, int MODE, int DIR, bool ACC>
__device__ __forceinline__ void state_sweep(const ChunkArgs &a) {
    constexpr int REV = MODE == 2, VT = ST_VT;
    constexpr bool O = MODE == 0;
    typedef StateSmem<K, O> L;
    constexpr int LDK = L::LDK, LDC = L::LDC, LDR = L::LDR, LDW = L::LDW, DV = K, NTH = VT * 2, NJ = K / 8;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    struct Stage { bf16 *Lm, *Qm, *Am; float *Rf, *dec; };   // ks or qs, qs, A, v or do (fp32), decay
    auto stage = [&](int st) {
        Stage x;
        x.Lm = (bf16 *)(smem_raw + st * L::stage);
        x.Qm = x.Lm + CK * LDK;
        x.Am = x.Qm + CK * LDK;
        x.Rf = O ? (float *)(x.Am + CK * LDC) : (float *)x.Qm;
        x.dec = x.Rf + CK * LDR;
        return x;
    };

    const int vt = blockIdx.x, bh = blockIdx.y, bb = bh / a.H, h = bh - bb * a.H, tid = threadIdx.x;
    const int warp = tid >> 5, lane = tid & 31, g = lane >> 2, tq = lane & 3;
    const int c0 = vt * VT, dv0 = warp * 16;   // this block's columns of Dv; this warp's, within them
    bf16 *Ws = (bf16 *)(smem_raw + 2 * L::stage) + warp * K * LDW;   // [K][LDW] the warp's bf16 state (modes 1, 2)
    bf16 *states = O ? NULL : REV ? a.dhs : a.hs;
    const float *R = (REV ? a.dout : a.v) + (int64_t)h * DV + c0;   // row bb*T + t at stride ldr
    const int64_t ldr = REV ? (int64_t)a.H * DV : a.ldv, ldrs = DIR ? -ldr : ldr;   // ldrs: step to step
    const bool vec = REV ? a.do_vec : a.v_vec;
    auto chunk_of = [&](int step) { return REV ? a.NC - 1 - step : step; };
    auto issue = [&](int step) {   // the inputs of the step-th chunk of the sweep, into stage step & 1
        const int c = chunk_of(step), t0 = c * CK, len = min(CK, a.T - t0);
        const int64_t cidx = (int64_t)bh * a.NC + c;
        Stage x = stage(step & 1);
        tile_async<CK, K>(x.Lm, (REV ? a.qs : a.ks) + cidx * CK * K, tid, NTH);
        if (O) {
            tile_async<CK, K>(x.Qm, a.qs + cidx * CK * K, tid, NTH);
            tile_async<CK, CK>(x.Am, a.A + cidx * CK * CK, tid, NTH);
        }
        copy_async(x.dec, a.decay + cidx * K, K * 4, tid, NTH);
        rows_async<VT, LDR>(x.Rf, R + ((int64_t)bb * a.T + pos<DIR>(t0, a.T)) * ldr, ldrs, len, vec, tid, NTH);
        __pipeline_commit();
    };

    // S^T in accumulator tiles: tile j holds K columns 8j .. 8j + 7; (row, column) = (Dv column dv0 + row, k)
    float S[NJ][4];
    const int r0 = dv0 + g;   // this lane's Dv columns: r0 and r0 + 8
#pragma unroll
    for (int j = 0; j < NJ; j++) {
        const int k = 8 * j + 2 * tq;
        if (O && a.S0) {
            const float *s0 = a.S0 + ((int64_t)bh * K + k) * DV + c0;
            S[j][0] = s0[r0]; S[j][1] = s0[DV + r0]; S[j][2] = s0[r0 + 8]; S[j][3] = s0[DV + r0 + 8];
        } else S[j][0] = S[j][1] = S[j][2] = S[j][3] = 0.f;
    }
    // ldmatrix row addresses: lane l gives row l % 8 of matrix l / 8
    const int lr = lane & 7, lm = lane >> 3;
    issue(0);
    for (int step = 0; step < a.NC; step++) {
        __pipeline_wait_prior(0);   // this step's inputs have landed (for this thread) ...
        __syncthreads();            // ... for every thread, and every warp is done with the previous step
        if (step + 1 < a.NC) issue(step + 1);   // into the stage the previous step read
        const int c = chunk_of(step), t0 = c * CK, len = min(CK, a.T - t0);
        const int64_t cidx = (int64_t)bh * a.NC + c;
        const Stage x = stage(step & 1);

        // R^T as the left operand, k-step kk covering steps 16 kk .. 16 kk + 15; rows past T read as zero
        uint32_t ra[CK / 16][4];
#pragma unroll
        for (int kk = 0; kk < CK / 16; kk++) {
            const int s = 16 * kk + 2 * tq;
            auto rv = [&](int ss, int col) { return ss < len ? x.Rf[ss * LDR + col] : 0.f; };
            ra[kk][0] = pack_bf16(rv(s, r0), rv(s + 1, r0));
            ra[kk][1] = pack_bf16(rv(s, r0 + 8), rv(s + 1, r0 + 8));
            ra[kk][2] = pack_bf16(rv(s + 8, r0), rv(s + 9, r0));
            ra[kk][3] = pack_bf16(rv(s + 8, r0 + 8), rv(s + 9, r0 + 8));
        }

        {
            float o[CK / 8][4];
#pragma unroll
            for (int n = 0; n < CK / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
#pragma unroll
            for (int kk = 0; kk < K / 16; kk++) {   // the entering state, rounded to bf16 as a left operand
                uint32_t sa[4];
                sa[0] = pack_bf16(S[2 * kk][0], S[2 * kk][1]);
                sa[1] = pack_bf16(S[2 * kk][2], S[2 * kk][3]);
                sa[2] = pack_bf16(S[2 * kk + 1][0], S[2 * kk + 1][1]);
                sa[3] = pack_bf16(S[2 * kk + 1][2], S[2 * kk + 1][3]);
                if (!O) {   // S^T[dv][k] into Ws[k][dv]
                    const int k = 16 * kk + 2 * tq;
                    const bf16 *sv = (const bf16 *)sa;
                    Ws[k * LDW + g] = sv[0];
                    Ws[(k + 1) * LDW + g] = sv[1];
                    Ws[k * LDW + g + 8] = sv[2];
                    Ws[(k + 1) * LDW + g + 8] = sv[3];
                    Ws[(k + 8) * LDW + g] = sv[4];
                    Ws[(k + 9) * LDW + g] = sv[5];
                    Ws[(k + 8) * LDW + g + 8] = sv[6];
                    Ws[(k + 9) * LDW + g + 8] = sv[7];
                }
                if (O) {
#pragma unroll
                    for (int np = 0; np < CK / 16; np++) {   // B[k][t] = qs[t][k]: rows t of Qm
                        uint32_t b[4];
                        ldsm4<false>(b, x.Qm + (16 * np + lr + (lm >> 1) * 8) * LDK + 16 * kk + (lm & 1) * 8);
                        mma16816(o[2 * np], sa, b[0], b[1]);
                        mma16816(o[2 * np + 1], sa, b[2], b[3]);
                    }
                }
            }
            if (!O) {
                __syncwarp();
                // K rows of 16 columns (32 bytes): two 16-byte pieces a row
                for (int i = lane; i < 2 * K; i += 32) {
                    const int k = i >> 1, half = i & 1;
                    *(uint4 *)(states + (cidx * K + k) * DV + c0 + dv0 + half * 8) = *(const uint4 *)(Ws + k * LDW + half * 8);
                }
                __syncwarp();
            }
            if (O) {
#pragma unroll
                for (int np = 0; np < CK / 16; np++)   // B[s][t] = A[t][s]: rows t of Am; s <= t only
#pragma unroll
                    for (int kk = 0; kk <= np; kk++) {
                        uint32_t b[4];
                        ldsm4<false>(b, x.Am + (16 * np + lr + (lm >> 1) * 8) * LDC + 16 * kk + (lm & 1) * 8);
                        mma16816(o[2 * np], ra[kk], b[0], b[1]);
                        mma16816(o[2 * np + 1], ra[kk], b[2], b[3]);
                    }
                // o^T[dv][t]: per store, 4 rows t of 8 consecutive columns (32 bytes each)
                const int64_t ldo = DIR ? -(int64_t)a.H * DV : (int64_t)a.H * DV;
                float *ob = a.o + bth(bb, pos<DIR>(t0, a.T), h, a.T, a.H) * DV + c0 + r0;
#pragma unroll
                for (int n = 0; n < CK / 8; n++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const int t = 8 * n + 2 * tq + (e & 1);
                        if (t < len) {
                            float *p = ob + t * ldo + (e >> 1) * 8;
                            if (ACC) *p += o[n][e];
                            else *p = o[n][e];
                        }
                    }
            }
        }

        // S^T <- S^T diag(decay) + R^T Lm: B[s][k] = Lm[s][k], rows s of Lm (transposed loads)
#pragma unroll
        for (int j = 0; j < NJ; j++) {
            const float2 d = *(const float2 *)(x.dec + 8 * j + 2 * tq);
            S[j][0] *= d.x; S[j][1] *= d.y; S[j][2] *= d.x; S[j][3] *= d.y;
        }
#pragma unroll
        for (int kk = 0; kk < CK / 16; kk++)
#pragma unroll
            for (int jp = 0; jp < K / 16; jp++) {
                uint32_t b[4];
                ldsm4<true>(b, x.Lm + (16 * kk + lr + (lm & 1) * 8) * LDK + 16 * jp + (lm >> 1) * 8);
                mma16816(S[2 * jp], ra[kk], b[0], b[1]);
                mma16816(S[2 * jp + 1], ra[kk], b[2], b[3]);
            }
    }
    if (O && a.ST)
#pragma unroll
        for (int j = 0; j < NJ; j++) {
            float *st = a.ST + ((int64_t)bh * K + 8 * j + 2 * tq) * DV + c0;
            st[r0] = S[j][0]; st[DV + r0] = S[j][1]; st[r0 + 8] = S[j][2]; st[DV + r0 + 8] = S[j][3];
        }
}

template <int K, int DIR, bool ACC>
__global__ void __launch_bounds__(ST_VT * 2, 1) chunk_state_kernel(ChunkArgs a) { state_sweep<K, 0, DIR, ACC>(a); }
// blockIdx.z 0: mode 1 (hs), 1: mode 2 (dhs)
template <int K, int DIR>
__global__ void __launch_bounds__(ST_VT * 2, 2) chunk_states_bwd_kernel(ChunkArgs a) {
    if (blockIdx.z == 0) state_sweep<K, 1, DIR, false>(a);
    else state_sweep<K, 2, DIR, false>(a);
}

// ---- chunk_bwd_mm: the tensor-core products of the backward ----
// A warp's 16 x 16 fp32 accumulator tile out to rows r0 .. r0 + 15 (those below len) of dst, 16 columns from dst's
// row start, row stride gld, through the warp's shared tile ws ([16][BWD_LDW]): four 16-byte stores a row when vec
// (dst and gld 16-byte aligned), else one a value. ACC adds the tile to what dst holds.
#define BWD_LDW 20
template <bool ACC>
__device__ __forceinline__ void tile_out(float *dst, int64_t gld, const FragC &acc, float *ws, int r0, int len, bool vec,
                                         int lane) {
    wm::store_matrix_sync(ws, acc, BWD_LDW, wm::mem_row_major);
    __syncwarp();
    if (vec) {
        for (int i = lane; i < 64; i += 32) {
            const int r = i >> 2, col = (i & 3) * 4;
            if (r0 + r >= len) continue;
            float4 v = *(const float4 *)(ws + r * BWD_LDW + col);
            float4 *p = (float4 *)(dst + (r0 + r) * gld + col);
            if (ACC) {
                const float4 d = *p;
                v.x += d.x; v.y += d.y; v.z += d.z; v.w += d.w;
            }
            *p = v;
        }
    } else {
        for (int i = lane; i < 256; i += 32) {
            const int r = i >> 4, col = i & 15;
            if (r0 + r >= len) continue;
            float *p = dst + (r0 + r) * gld + col;
            if (ACC) *p += ws[r * BWD_LDW + col];
            else *p = ws[r * BWD_LDW + col];
        }
    }
    __syncwarp();   // (the warp's next tile overwrites ws)
}

// Its shared memory: dO and V (bf16 tiles of the fp32 do and v rows), dS, Hs, and a [16][BWD_LDW] fp32 tile per
// warp through which the products' tiles go out. Once dqs and the leaving state's share of dg are done, KS and A
// load into Hs's place while dks and dA are computed. At K = Dv = 128 that is 112 KiB, two blocks an SM (the
// loads of one block's chunk overlap the other's products); at 64, 55 KiB.
template <int K, int DV>
struct BwdSmem {
    static constexpr int LDD = DV + PADB, LDK = K + PADB, LDC = CK + PADB;
    static constexpr size_t RE = (size_t)K * LDD > (size_t)CK * (LDK + LDC) ? (size_t)K * LDD : (size_t)CK * (LDK + LDC);
    static constexpr size_t bytes = sizeof(bf16) * (2 * CK * LDD + K * LDD + RE) + sizeof(float) * 8 * 16 * BWD_LDW;
};

template <int K, int DV, int DIR, bool ACC>
__global__ void __launch_bounds__(256, 2) chunk_bwd_mm_kernel(ChunkArgs a) {
    typedef BwdSmem<K, DV> L;
    constexpr int LDD = L::LDD, LDK = L::LDK, LDC = L::LDC, NTH = 256;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    const int c = blockIdx.x, bh = blockIdx.y, bb = bh / a.H, h = bh - bb * a.H, tid = threadIdx.x, warp = tid >> 5,
              lane = tid & 31;
    bf16 *dO = (bf16 *)smem_raw;     // [CK][LDD]
    bf16 *V = dO + CK * LDD;         // [CK][LDD]
    bf16 *dS = V + CK * LDD;         // [K][LDD] state gradient leaving the chunk
    bf16 *Hs = dS + K * LDD;         // [K][LDD] state entering the chunk; then KS and A in its place:
    bf16 *KS = Hs, *Am = Hs + CK * LDK;                        // [CK][LDK], [CK][LDC]
    float *ws = (float *)(Hs + L::RE) + warp * 16 * BWD_LDW;   // the warp's output tile

    const int t0 = c * CK, len = min(CK, a.T - t0);
    const int64_t cidx = (int64_t)bh * a.NC + c;
    const int64_t row0 = (int64_t)bb * a.T + pos<DIR>(t0, a.T);
    tile_async<K, DV>(Hs, a.hs + cidx * K * DV, tid, NTH);
    tile_async<K, DV>(dS, a.dhs + cidx * K * DV, tid, NTH);
    __pipeline_commit();
    // the fp32 rows of do and v into bf16 tiles (rows past T zero) while Hs and dS land: each thread's loads of
    // a tile all go out before any is converted
    auto to_tile = [&](bf16 *dst, const float *src, int64_t gld, bool vec) {
        constexpr int PER = CK * DV / 4 / NTH;
        float x[PER][4];
#pragma unroll
        for (int u = 0; u < PER; u++) {
            const int i = 4 * (tid + NTH * u), r = i / DV, col = i - r * DV;
            x[u][0] = x[u][1] = x[u][2] = x[u][3] = 0.f;
            if (r < len) {
                const float *p = src + r * gld + col;
                if (vec) load4(p, x[u]);
                else
                    for (int e = 0; e < 4; e++) x[u][e] = p[e];
            }
        }
#pragma unroll
        for (int u = 0; u < PER; u++) {
            const int i = 4 * (tid + NTH * u), r = i / DV, col = i - r * DV;
            store4(dst + r * LDD + col, x[u]);
        }
    };
    to_tile(dO, a.dout + (row0 * a.H + h) * DV, DIR ? -(int64_t)a.H * DV : (int64_t)a.H * DV, a.do_vec);
    to_tile(V, a.v + row0 * a.ldv + (int64_t)h * DV, DIR ? -a.ldv : a.ldv, a.v_vec);
    __pipeline_wait_prior(0);
    __syncthreads();
    if (tid < K) {   // exp(b_C) sum_j S dS: the leaving state's share of dg, eight columns to a load
        float s = 0;
        for (int j = 0; j < DV; j += 8) {
            const uint4 hu = *(const uint4 *)(Hs + tid * LDD + j), du = *(const uint4 *)(dS + tid * LDD + j);
            const bf16 *hv = (const bf16 *)&hu, *dv = (const bf16 *)&du;
#pragma unroll
            for (int e = 0; e < 8; e++) s += __bfloat162float(hv[e]) * __bfloat162float(dv[e]);
        }
        a.bnd[cidx * K + tid] = s * a.decay[cidx * K + tid];
    }
    const int64_t qk0 = bth(bb, pos<DIR>(t0, a.T), h, a.T, a.H) * K, qkld = DIR ? -(int64_t)a.H * K : (int64_t)a.H * K;
    const bool qk_vec = ACC || a.dqk_vec;   // (tq and tk are scratch, 256-byte aligned)
    // Each warp takes a block of BM x BN output tiles (2 x 2 at K = Dv = 128, 2 x 1 at 64: eight blocks of a
    // [CK][K] product for the eight warps)
    constexpr int BM = 2, BN = K / 16 >= 8 ? 2 : 1, NBC = K / 16 / BN, NB = CK / 16 / BM * NBC;
    static_assert(K == DV, "the blocks of dqs, dks and dv are laid out alike");
    FragC acc[BM * BN];
    auto block_out = [&](float *dst, int64_t gld, int r0, int j0, bool vec, bool add) {   // add: ACC's stores
#pragma unroll
        for (int m = 0; m < BM; m++)
#pragma unroll
            for (int n = 0; n < BN; n++) {
                float *d = dst + (j0 + n) * 16;
                if (add) tile_out<true>(d, gld, acc[m * BN + n], ws, (r0 + m) * 16, len, vec, lane);
                else tile_out<false>(d, gld, acc[m * BN + n], ws, (r0 + m) * 16, len, vec, lane);
            }
    };
    auto zero = [&] {
#pragma unroll
        for (int u = 0; u < BM * BN; u++) wm::fill_fragment(acc[u], 0.f);
    };
    // X Y^T, [CK][K], out to the rows of dst: dqs = dO Hs^T to dq, dks = V dS^T to dk (ACC: tq, tk)
    auto qk_product = [&](const bf16 *X, const bf16 *Y, float *dst) {
        for (int bi = warp; bi < NB; bi += 8) {
            const int r0 = bi / NBC * BM, j0 = bi % NBC * BN;
            zero();
            mma_blk<FragA, FragBt, BM, BN>(acc, X + r0 * 16 * LDD, LDD, 16 * LDD, 16, Y + j0 * 16 * LDD, LDD, 16 * LDD,
                                           16, 0, DV / 16);
            block_out(dst + qk0, qkld, r0, j0, qk_vec, false);
        }
    };
    qk_product(dO, Hs, ACC ? a.tq : a.dq);
    __syncthreads();   // Hs is read: KS and A land in its place while dks and dA are computed
    tile_async<CK, K>(KS, a.ks + cidx * CK * K, tid, NTH);
    tile_async<CK, CK>(Am, a.A + cidx * CK * CK, tid, NTH);
    __pipeline_commit();
    qk_product(V, dS, ACC ? a.tk : a.dk);
    // dA = dO V^T on and below the diagonal blocks: 10 tiles, straight to global
    for (int t = warp; t < 10; t += 8) {
        const int ri = t < 1 ? 0 : t < 3 ? 1 : t < 6 ? 2 : 3, j = t - (ri * (ri + 1)) / 2;
        wm::fill_fragment(acc[0], 0.f);
        mma_run<FragA, FragBt>(acc[0], dO + ri * 16 * LDD, LDD, 16, V + j * 16 * LDD, LDD, 16, 0, DV / 16);
        wm::store_matrix_sync(a.dA + cidx * CK * CK + ri * 16 * CK + j * 16, acc[0], CK, wm::mem_row_major);
    }
    __pipeline_wait_prior(0);
    __syncthreads();
    // dv = A^T dO + KS dS, [CK][DV]. A^T[s][r] is zero for r-block < s-block: the block's first row of tiles
    // starts at k-step r0, its second at r0 + 1.
    float *dv = a.dv + row0 * a.lddv + (int64_t)h * DV;
    for (int bi = warp; bi < NB; bi += 8) {
        const int r0 = bi / NBC * BM, j0 = bi % NBC * BN;
        zero();
        mma_blk<FragAt, FragB, 1, BN>(acc, Am + r0 * 16, LDC, 16, 16 * LDC, dO + j0 * 16, LDD, 16, 16 * LDD, r0, r0 + 1);
        mma_blk<FragAt, FragB, BM, BN>(acc, Am + r0 * 16, LDC, 16, 16 * LDC, dO + j0 * 16, LDD, 16, 16 * LDD, r0 + 1,
                                       CK / 16);
        mma_blk<FragA, FragB, BM, BN>(acc, KS + r0 * 16 * LDK, LDK, 16 * LDK, 16, dS + j0 * 16, LDD, 16, 16 * LDD, 0,
                                      K / 16);
        block_out(dv, DIR ? -a.lddv : a.lddv, r0, j0, a.dv_vec, ACC);
    }
}

// ---- chunk_bwd_qkg: dq, dk and dg ----
// Thread (channel i, row block rb of 16 rows). dq_r = [dqs_r exp(b_r) + sum_{s<=r} dA_rs k_s exp(b_r - b_s)] / sqrt(K):
// the earlier blocks through the anchor n = 16 rb (k_s exp(b_n - b_s), then times exp(b_r - b_n)), the block
// itself through running products of exp(g). dk_s = dks_s exp(b_C - b_s) + sum_{r>=s} dA_rs q_r exp(b_r - b_s)
// / sqrt(K), the later blocks through the anchor m = 16 rb + 15. The chunk's dA and its 32 channels of q, k,
// b, g sit in shared memory.
// Its shared memory: dA, then the chunk's 32 channels of q, k, b, g, of dqs and dks, and of bnd (loaded at the
// start, so that the final loop's reads do not wait behind its stores to the same arrays, in a second group that
// lands while the sums over dA run). b is summed from g here rather than kept by chunk_prep: 4 bytes an element
// that were written and read back.
#define QKG_SMEM (sizeof(float) * (CK * CK + 6 * CK * 32 + 32))
template <int K, int DIR, bool ACC>
__global__ void __launch_bounds__(128, 3) chunk_bwd_qkg_kernel(ChunkArgs a) {
    extern __shared__ __align__(16) float qkg_smem[];
    float *dA = qkg_smem, *qS = dA + CK * CK, *kS = qS + CK * 32, *bS = kS + CK * 32, *gS = bS + CK * 32;
    float *dqS = gS + CK * 32, *dkS = dqS + CK * 32, *bndS = dkS + CK * 32;
    float (*wtot)[32] = (float (*)[32])gS, (*ktot)[32] = (float (*)[32])(gS + 4 * 32);   // once g is read
    const int c = blockIdx.y, bh = blockIdx.z, bb = bh / a.H, h = bh - bb * a.H, tid = threadIdx.x;
    const int lane = tid & 31, rb = tid >> 5, ch0 = blockIdx.x * 32;
    const int t0 = c * CK, len = min(CK, a.T - t0), n = rb * 16;
    const int64_t cidx = (int64_t)bh * a.NC + c, row0 = bth(bb, pos<DIR>(t0, a.T), h, a.T, a.H) * K + ch0;
    const int64_t ld = DIR ? -(int64_t)a.H * K : (int64_t)a.H * K;
    copy_async(dA, a.dA + cidx * CK * CK, CK * CK * 4, tid, blockDim.x);
    rows_async<32, 32>(qS, a.q + row0, ld, len, a.qkg_vec, tid, blockDim.x);
    rows_async<32, 32>(kS, a.k + row0, ld, len, a.qkg_vec, tid, blockDim.x);
    rows_async<32, 32>(gS, a.g + row0, ld, len, a.qkg_vec, tid, blockDim.x);
    __pipeline_commit();
    // a second group, which only the final loop reads: it lands while the sums over dA run
    rows_async<32, 32>(dqS, (ACC ? a.tq : a.dq) + row0, ld, len, ACC || a.dqk_vec, tid, blockDim.x);
    rows_async<32, 32>(dkS, (ACC ? a.tk : a.dk) + row0, ld, len, ACC || a.dqk_vec, tid, blockDim.x);
    copy_async(bndS, a.bnd + cidx * K + ch0, 32 * 4, tid, blockDim.x);
    __pipeline_commit();
    __pipeline_wait_prior(1);
    __syncthreads();
    if (rb == 0) {   // b, the cumulative sums of g down the chunk, in chunk_prep's order: the same bits
        float run = 0;
        for (int r = 0; r < len; r++) {
            run += gS[r * 32 + lane];
            bS[r * 32 + lane] = run;
        }
    }
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
        // Every lane reads the same dA entries (a broadcast), so the loops below are bound by shared-memory
        // load instructions, not by their arithmetic: dA is read four entries to a load. Each sum still takes
        // its terms in the order of s (or r) one at a time.
        const float bn = bv[0];
        for (int s = 0; s < n; s += 4) {   // earlier blocks -> dq
            float x[4];
#pragma unroll
            for (int e = 0; e < 4; e++) x[e] = kS[(s + e) * 32 + lane] * __expf(bn - bS[(s + e) * 32 + lane]);
#pragma unroll
            for (int j = 0; j < 16; j++) {
                const float4 d = *(const float4 *)(dA + (n + j) * CK + s);
                accO[j] += d.x * x[0];
                accO[j] += d.y * x[1];
                accO[j] += d.z * x[2];
                accO[j] += d.w * x[3];
            }
        }
        const float bm = bv[15];
        for (int r = n + 16; r < len; r++) {   // later blocks -> dk
            const float x = qS[r * 32 + lane] * __expf(bS[r * 32 + lane] - bm);
#pragma unroll
            for (int j = 0; j < 16; j += 4) {
                const float4 d = *(const float4 *)(dA + r * CK + n + j);
                accK[j] += d.x * x;
                accK[j + 1] += d.y * x;
                accK[j + 2] += d.z * x;
                accK[j + 3] += d.w * x;
            }
        }
        // the diagonal block, a row r at a time: e[s] = exp(g_{s+1}) ... exp(g_r), built up as r grows
        float e[16];
#pragma unroll
        for (int r = 0; r < 16; r++) {
            float dr[16];
#pragma unroll
            for (int s = 0; s <= r; s += 4) {
                const float4 t = *(const float4 *)(dA + (n + r) * CK + n + s);
                dr[s] = t.x; dr[s + 1] = t.y; dr[s + 2] = t.z; dr[s + 3] = t.w;
            }
#pragma unroll
            for (int s = 0; s <= r; s++) {
                if (s < r) e[s] *= f[r];
                else e[s] = 1.f;
                const float d = dr[s] * e[s];
                accD[r] += d * kv[s];
                dkD[s] += d * qv[r];
            }
        }
    }
    __pipeline_wait_prior(0);   // dqs, dks and bnd
    __syncthreads();
#pragma unroll
    for (int j = 0; j < 16; j++) {
        float dq = 0, dk = 0;
        if (n + j < len) {
            const int64_t gi = at(n + j);
            dq = (dqS[(n + j) * 32 + lane] * __expf(bv[j]) + accO[j] * __expf(bv[j] - bv[0]) + accD[j]) * a.scale;
            const float dki = dkS[(n + j) * 32 + lane] * __expf(bC - bv[j]);
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
    float later = bndS[lane];
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
    size_t bytes = align256(nch * CK * K * 2) * 2 + align256(nch * CK * CK * 2) + align256(nch * K * 4);
    if (bwd) bytes += align256(nch * K * Dv * 2) * 2 + align256(nch * CK * CK * 4) + align256(nch * K * 4);
    if (bwd && acc) bytes += align256((size_t)B * T * H * K * 4) * 2;
    Carve cv = {scratch(bytes)};
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

template <int K, int DIR, bool ACC>
static void chunk_state(const ChunkArgs &a, int BH) {
    static bool set = false;
    if (!set) { set_smem(chunk_state_kernel<K, DIR, ACC>, StateSmem<K, true>::bytes); set = true; }
    chunk_state_kernel<K, DIR, ACC><<<dim3(K / ST_VT, BH), ST_VT * 2, StateSmem<K, true>::bytes, g_stream>>>(a);
    LAUNCH_CHECK("hgru chunk_state");
}

template <int K, int DIR, bool ACC>
static void chunk_fwd(ChunkArgs a, int B) {
    chunk_prep<K, DIR>(a, B * a.H);
    chunk_state<K, DIR, ACC>(a, B * a.H);
}

template <int K, int DIR, bool ACC>
static void chunk_bwd(ChunkArgs a, int B) {
    const int BH = B * a.H;
    chunk_prep<K, DIR>(a, BH);
    static bool set = false;
    if (!set) {
        set_smem(chunk_states_bwd_kernel<K, DIR>, StateSmem<K, false>::bytes);
        set_smem(chunk_bwd_mm_kernel<K, K, DIR, ACC>, BwdSmem<K, K>::bytes);
        set_smem(chunk_bwd_qkg_kernel<K, DIR, ACC>, QKG_SMEM);
        set = true;
    }
    chunk_states_bwd_kernel<K, DIR><<<dim3(K / ST_VT, BH, 2), ST_VT * 2, StateSmem<K, false>::bytes, g_stream>>>(a);   // hs, dhs
    LAUNCH_CHECK("hgru chunk_state (backward)");
    chunk_bwd_mm_kernel<K, K, DIR, ACC><<<dim3(a.NC, BH), 256, BwdSmem<K, K>::bytes, g_stream>>>(a);
    LAUNCH_CHECK("hgru chunk_bwd_mm");
    chunk_bwd_qkg_kernel<K, DIR, ACC><<<dim3(K / 32, a.NC, BH), 128, QKG_SMEM, g_stream>>>(a);
    LAUNCH_CHECK("hgru chunk_bwd_qkg");
}
