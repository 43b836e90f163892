// cuda/mixer_small.cuh: the HGRU2 recurrence for small heads (K = Dv = 1, 2 or 4), one thread per head.
#pragma once
#include "runtime.cuh"

// The sweeps of mixer_sweep.cuh give each (b, h) a block and reduce across its lanes; with the LRA presets'
// heads of K = Dv = 1 to 8 that leaves one working thread in a warp and reads each row's few values through
// scattered loads. Here a thread owns a whole head: its K x K state sits in its registers, its reductions are
// sums in that thread, and the threads of a warp hold consecutive heads of a row, so each step's loads of
// q, k, g, v, dout are contiguous across the warp. A thread loads U steps of inputs before it computes them,
// so U loads are in flight at once where the heads are too few to hide the latency by themselves.
//
// The same recurrences as mixer_sweep.cuh (S_t = diag(a_t) S_{t-1} + k_t v_t^T, o_t = S_t^T q_t / sqrt(K)),
// in three kernels: the forward; the backward's forward sweep (dq_t = S_t do_t / sqrt(K)); and its reverse
// sweep, which runs dS_t = diag(a_{t+1}) dS_{t+1} + q~_t do_t^T once for dv_t = dS_t^T k_t and dk_t = dS_t v_t,
// with dg_t = sum_{s>=t} (q_s dq_s - k_s dk_s) summed in double. DIR = 1 reads the sequence backwards (the
// reverse scan); ACC adds the outputs to what is there.

// K = Dv = 8 measured slower here than in the sweeps (44 against 24 ms for Text's preset: 64 state registers
// and U = 1 leave one load in flight per thread), so it stays with them.
static bool small_path(int K, int Dv) { return K == Dv && (K == 1 || K == 2 || K == 4); }

template <int K> struct SmallU { static constexpr int U = K == 1 ? 16 : K == 2 ? 8 : 4; };

struct SmallArgs {
    const float *q, *k, *g, *v, *dout, *S0;
    float *dq1, *o, *ST, *dq, *dk, *dg, *dv;
    int64_t ldv, ldo, lddv;
    int B, T, H;
    int per;   // sequences interleaved per block of T*per rows: 1 for the 1-D op, gw for the columns of images
    float scale;
};

// Where sequence b lies (ops.h): its position t is row small_base(...) + t * per. per = 1: sequence b holds rows
// b T .. b T + T - 1. per = gw: sequence b = s gw + c is column c of image s of T x gw positions in raster order,
// read in place by a stride of gw rows; consecutive threads hold consecutive heads of a row and then consecutive
// columns, so the loads of a step stay contiguous across a warp as on the 1-D path.
__device__ __forceinline__ int64_t small_base(int b, int T, int per) {
    return (int64_t)(b / per) * T * per + b % per;
}
// row of scan step t of the sequence at base
__device__ __forceinline__ int64_t small_row(int64_t base, int T, int per, int t, int dir) {
    return base + (int64_t)(dir ? T - 1 - t : t) * per;
}

// K values of a head's row
template <int K> __device__ __forceinline__ void small_ld(float (&x)[K], const float *p) {
#pragma unroll
    for (int i = 0; i < K; i++) x[i] = __ldg(p + i);
}

// The rows the reverse sweep reads at a step of row `row`: q, k, g, v, dout, and dq1 (written by the dq kernel
// just before, so not through the read-only cache)
template <int K>
__device__ __forceinline__ void small_ld_rev(const SmallArgs &a, int64_t row, int64_t HK, int h, float (&q)[K],
                                             float (&k)[K], float (&g)[K], float (&v)[K], float (&dout)[K],
                                             float (&q1)[K]) {
    const int64_t o = row * HK + (int64_t)h * K;
    small_ld(v, a.v + row * a.ldv + (int64_t)h * K);
    small_ld(dout, a.dout + o);
    small_ld(q, a.q + o);
    small_ld(k, a.k + o);
    small_ld(g, a.g + o);
#pragma unroll
    for (int i = 0; i < K; i++) q1[i] = a.dq1[o + i];
}

// One step of each recurrence, as the one-thread kernels and the chunked ones (below) both take it: the same
// arithmetic in the same order on either path.
// The forward: the state takes step t (decays by exp g, adds k v^T), out = S_t^T q scale.
template <int K>
__device__ __forceinline__ void small_step_fwd(float (&X)[K][K], const float (&q)[K], const float (&k)[K],
                                               const float (&g)[K], const float (&v)[K], float scale, float (&out)[K]) {
#pragma unroll
    for (int j = 0; j < K; j++) out[j] = 0.f;
#pragma unroll
    for (int i = 0; i < K; i++) {
        const float d = expf(g[i]), qs = q[i] * scale;
#pragma unroll
        for (int j = 0; j < K; j++) {
            X[i][j] = fmaf(d, X[i][j], k[i] * v[j]);
            out[j] = fmaf(qs, X[i][j], out[j]);
        }
    }
}
// The backward's forward sweep: the state takes step t, dq = S_t do scale.
template <int K>
__device__ __forceinline__ void small_step_dq(float (&X)[K][K], const float (&k)[K], const float (&g)[K],
                                              const float (&v)[K], const float (&dout)[K], float scale, float (&dq)[K]) {
#pragma unroll
    for (int i = 0; i < K; i++) {
        const float d = expf(g[i]);
        float s = 0.f;
#pragma unroll
        for (int j = 0; j < K; j++) {
            X[i][j] = fmaf(d, X[i][j], k[i] * v[j]);
            s = fmaf(X[i][j], dout[j], s);
        }
        dq[i] = s * scale;
    }
}
// The reverse sweep at step s: dS_s = diag(anext) dS_{s+1} + q~_s do_s^T (anext = a_{s+1}, left as a_s for the
// step before), dv = dS_s^T k, dk = dS_s v, and dg's running sum takes q dq1 - k dk in double.
template <int K>
__device__ __forceinline__ void small_step_rev(float (&X)[K][K], float (&anext)[K], double (&run)[K],
                                               const float (&q)[K], const float (&k)[K], const float (&g)[K],
                                               const float (&v)[K], const float (&dout)[K], const float (&q1)[K],
                                               float scale, float (&dk)[K], float (&dv)[K]) {
#pragma unroll
    for (int j = 0; j < K; j++) dv[j] = 0.f;
#pragma unroll
    for (int i = 0; i < K; i++) {
        const float qs = q[i] * scale;
        float dki = 0.f;
#pragma unroll
        for (int j = 0; j < K; j++) {
            X[i][j] = fmaf(anext[i], X[i][j], qs * dout[j]);
            dv[j] = fmaf(X[i][j], k[i], dv[j]);
            dki = fmaf(X[i][j], v[j], dki);
        }
        run[i] += (double)q[i] * q1[i] - (double)k[i] * dki;
        anext[i] = expf(g[i]);
        dk[i] = dki;
    }
}

template <int K, int DIR, bool ACC>
__global__ void hgru_small_fwd(SmallArgs a) {
    constexpr int U = SmallU<K>::U;
    const int64_t bh = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (bh >= (int64_t)a.B * a.H) return;
    const int b = (int)(bh / a.H), h = (int)(bh % a.H), T = a.T, per = a.per;
    const int64_t HK = (int64_t)a.H * K, base = small_base(b, T, per);
    float X[K][K];
#pragma unroll
    for (int i = 0; i < K; i++)
#pragma unroll
        for (int j = 0; j < K; j++) X[i][j] = a.S0 ? a.S0[(bh * K + i) * K + j] : 0.f;
    for (int t0 = 0; t0 < T; t0 += U) {
        float qq[U][K], kk[U][K], aa[U][K], vv[U][K];
#pragma unroll
        for (int u = 0; u < U; u++)
            if (t0 + u < T) {
                const int64_t row = small_row(base, T, per, t0 + u, DIR), o = row * HK + (int64_t)h * K;
                small_ld(qq[u], a.q + o);
                small_ld(kk[u], a.k + o);
                small_ld(aa[u], a.g + o);
                small_ld(vv[u], a.v + row * a.ldv + (int64_t)h * K);
            }
#pragma unroll
        for (int u = 0; u < U; u++)
            if (t0 + u < T) {
                float out[K];
                small_step_fwd(X, qq[u], kk[u], aa[u], vv[u], a.scale, out);
                float *po = a.o + small_row(base, T, per, t0 + u, DIR) * a.ldo + (int64_t)h * K;
#pragma unroll
                for (int j = 0; j < K; j++) po[j] = ACC ? po[j] + out[j] : out[j];
            }
    }
    if (a.ST)
#pragma unroll
        for (int i = 0; i < K; i++)
#pragma unroll
            for (int j = 0; j < K; j++) a.ST[(bh * K + i) * K + j] = X[i][j];
}

// dq_t = S_t do_t / sqrt(K), into a.dq1 (always overwritten: with acc, the reverse sweep adds it to dq)
template <int K, int DIR>
__global__ void hgru_small_dq(SmallArgs a) {
    constexpr int U = SmallU<K>::U;
    const int64_t bh = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (bh >= (int64_t)a.B * a.H) return;
    const int b = (int)(bh / a.H), h = (int)(bh % a.H), T = a.T, per = a.per;
    const int64_t HK = (int64_t)a.H * K, base = small_base(b, T, per);
    float X[K][K];
#pragma unroll
    for (int i = 0; i < K; i++)
#pragma unroll
        for (int j = 0; j < K; j++) X[i][j] = 0.f;
    for (int t0 = 0; t0 < T; t0 += U) {
        float kk[U][K], aa[U][K], vv[U][K], dd[U][K];
#pragma unroll
        for (int u = 0; u < U; u++)
            if (t0 + u < T) {
                const int64_t row = small_row(base, T, per, t0 + u, DIR), o = row * HK + (int64_t)h * K;
                small_ld(kk[u], a.k + o);
                small_ld(aa[u], a.g + o);
                small_ld(vv[u], a.v + row * a.ldv + (int64_t)h * K);
                small_ld(dd[u], a.dout + o);   // dout's rows are H Dv = H K wide
            }
#pragma unroll
        for (int u = 0; u < U; u++)
            if (t0 + u < T) {
                float dq[K];
                small_step_dq(X, kk[u], aa[u], vv[u], dd[u], a.scale, dq);
                float *pq = a.dq1 + small_row(base, T, per, t0 + u, DIR) * HK + (int64_t)h * K;
#pragma unroll
                for (int i = 0; i < K; i++) pq[i] = dq[i];
            }
    }
}

// The reverse sweep: dv, dk, dg (and with acc, dq += dq1).
template <int K, int DIR, bool ACC>
__global__ void hgru_small_rev(SmallArgs a) {
    constexpr int U = SmallU<K>::U;
    const int64_t bh = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (bh >= (int64_t)a.B * a.H) return;
    const int b = (int)(bh / a.H), h = (int)(bh % a.H), T = a.T, per = a.per;
    const int64_t HK = (int64_t)a.H * K, base = small_base(b, T, per);
    float X[K][K], anext[K];
    double run[K];
#pragma unroll
    for (int i = 0; i < K; i++) {
        anext[i] = 1.f;   // dS_T = 0: any decay
        run[i] = 0.0;
#pragma unroll
        for (int j = 0; j < K; j++) X[i][j] = 0.f;
    }
    for (int s0 = T - 1; s0 >= 0; s0 -= U) {   // scan steps s0, s0-1, ..., s0-U+1
        float qq[U][K], kk[U][K], gg[U][K], vv[U][K], dd[U][K], q1[U][K];
#pragma unroll
        for (int u = 0; u < U; u++)
            if (s0 - u >= 0) {
                small_ld_rev(a, small_row(base, T, per, s0 - u, DIR), HK, h, qq[u], kk[u], gg[u], vv[u], dd[u], q1[u]);
            }
#pragma unroll
        for (int u = 0; u < U; u++)
            if (s0 - u >= 0) {
                const int64_t row = small_row(base, T, per, s0 - u, DIR), o = row * HK + (int64_t)h * K;
                float dk[K], dvv[K];
                small_step_rev(X, anext, run, qq[u], kk[u], gg[u], vv[u], dd[u], q1[u], a.scale, dk, dvv);
#pragma unroll
                for (int i = 0; i < K; i++) {
                    if (ACC) {
                        a.dk[o + i] += dk[i];
                        a.dg[o + i] += (float)run[i];
                        a.dq[o + i] += q1[u][i];
                    } else {
                        a.dk[o + i] = dk[i];
                        a.dg[o + i] = (float)run[i];
                    }
                }
                float *pv = a.dv + row * a.lddv + (int64_t)h * K;
#pragma unroll
                for (int j = 0; j < K; j++) pv[j] = ACC ? pv[j] + dvv[j] : dvv[j];
            }
    }
}

// ---------------------------------------------------------------------------------------------------------
// The same recurrences in chunks of SC_CHUNK steps, for long sequences with too few heads to fill the card one
// thread each (ListOps: 128 sequences x 16 heads = 2,048 threads over 2,048 steps, some 15 threads an SM, each
// waiting on its loads in turn). A thread per (head, chunk) instead, in three launches a sweep:
//   1. each chunk from a zero state: its own part E of the state leaving it, and P, the product of its decays
//      per key row (the state leaving = diag(P) (state entering) + E);
//   2. a thread per head walks the chunks in order and turns those into the state entering each chunk;
//   3. each chunk runs the recurrence of the kernels above from its entering state (the same steps,
//      small_step_fwd, _dq and _rev).
// The forward and the backward's dq sweep share phases 1 and 2 (the forward states). The reverse sweep runs them
// from the end on dS_t = diag(a_{t+1}) dS_{t+1} + q~_t do_t^T, where a chunk passes the gradient entering it at
// its right edge through Pi_s = prod_{u=s+1}^{end} a_u. Its dg_t = sum_{s>=t} (q_s dq_s - k_s dk_s) needs the
// part R of that sum from the chunks after t's; dk_s is linear in the entering gradient dS_in, so phase 1 keeps
// each chunk's own part R_local (from a zero dS_in) and W[i][j] = sum_s k_s,i Pi_s,i v_s,j, and phase 2, walking
// back, has R = R_local - sum_j dS_in[i][j] W[i][j], all in double as the one-thread sweep sums it.
// Chunk c of head bh keeps its numbers at slot c BH + bh, so a warp's threads (consecutive heads) are adjacent.
// ---------------------------------------------------------------------------------------------------------
#define SC_CHUNK 64
// Threads a block of the chunked kernels. At most 128 registers a thread (the bounds below) keep 4 such blocks on
// an SM, where the steps loaded ahead would otherwise take them down to 3: ListOps' 512 blocks then all fit on the
// 132 SMs of an H100 or H200 at once.
#define SC_THREADS 128

// Chunks when there are two of them at least and fewer than 2,048 heads an SM (one thread each), unless
// cuda_hgru_small_chunks (the tests) says always (1) or never (0).
static int g_small_chunks = -1;
extern "C" void cuda_hgru_small_chunks(int mode) { g_small_chunks = mode; }
static bool small_chunked(int64_t heads, int T) {
    if (T < 2 * SC_CHUNK) return false;
    if (g_small_chunks >= 0) return g_small_chunks;
    return heads < (int64_t)g_prop.multiProcessorCount * 2048;
}

struct SmallCarry {
    float *S;     // [nch][BH][K K]: phase 1, a chunk's own state (or gradient) from zero; phase 2, what enters it
    float *P;     // [nch][BH][K]: the product of its decays
    double *W;    // reverse: [nch][BH][K K] sum_s k_s,i Pi_s,i v_s,j
    double *R;    // reverse: [nch][BH][K] the chunk's own part of dg's sum; after phase 2, the later chunks'
    int nch;
};

// the thread's (head, chunk) and the chunk's steps [t0, t1)
#define SC_PROLOGUE(K)                                                                                        \
    const int64_t BH = (int64_t)a.B * a.H, idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;              \
    if (idx >= BH * cr.nch) return;                                                                           \
    const int64_t bh = idx % BH, slot = idx;                                                                  \
    const int c = (int)(idx / BH), b = (int)(bh / a.H), h = (int)(bh % a.H), T = a.T, per = a.per;            \
    const int64_t HK = (int64_t)a.H * (K), base = small_base(b, T, per);                                      \
    const int t0 = c * SC_CHUNK, t1 = min(T, t0 + SC_CHUNK);

// The chunked kernels load U steps of every input a step reads before they compute any of them, so each thread
// has U steps of loads in flight rather than one (the compiler cannot move the next step's loads above this
// step's stores by itself: the pointers may alias as far as it knows). The arithmetic and its order are those
// of one step at a time. The reverse kernels read more arrays a step and keep fewer steps ahead (2 for K = 4,
// 4 for K = 1 and 2), so that every kernel stays within the 128 registers of SC_THREADS' bounds.
template <int K> struct ScU { static constexpr int F = SmallU<K>::U, R = K == 4 ? 2 : 4; };

// Phase 1, forward states: E and P of the chunk.
template <int K, int DIR>
__global__ void __launch_bounds__(SC_THREADS, 4) hgru_small_chunk_state(SmallArgs a, SmallCarry cr) {
    SC_PROLOGUE(K)
    constexpr int U = ScU<K>::F;
    float X[K][K], p[K];
#pragma unroll
    for (int i = 0; i < K; i++) {
        p[i] = 1.f;
#pragma unroll
        for (int j = 0; j < K; j++) X[i][j] = 0.f;
    }
    for (int tb = t0; tb < t1; tb += U) {
        float gg[U][K], kk[U][K], vv[U][K];
#pragma unroll
        for (int u = 0; u < U; u++)
            if (tb + u < t1) {
                const int64_t row = small_row(base, T, per, tb + u, DIR), o = row * HK + (int64_t)h * K,
                              ov = row * a.ldv + (int64_t)h * K;
                small_ld(gg[u], a.g + o);
                small_ld(kk[u], a.k + o);
                small_ld(vv[u], a.v + ov);
            }
#pragma unroll
        for (int u = 0; u < U; u++)
            if (tb + u < t1)
#pragma unroll
                for (int i = 0; i < K; i++) {
                    const float d = expf(gg[u][i]);
                    p[i] *= d;
#pragma unroll
                    for (int j = 0; j < K; j++) X[i][j] = fmaf(d, X[i][j], kk[u][i] * vv[u][j]);
                }
    }
#pragma unroll
    for (int i = 0; i < K; i++) {
        cr.P[slot * K + i] = p[i];
#pragma unroll
        for (int j = 0; j < K; j++) cr.S[(slot * K + i) * K + j] = X[i][j];
    }
}

// Phase 2, forward: the state entering each chunk (from S0, or zero), and ST after the last.
template <int K>
__global__ void hgru_small_chunk_carry(SmallArgs a, SmallCarry cr) {
    const int64_t BH = (int64_t)a.B * a.H, bh = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (bh >= BH) return;
    float X[K][K];
#pragma unroll
    for (int i = 0; i < K; i++)
#pragma unroll
        for (int j = 0; j < K; j++) X[i][j] = a.S0 ? a.S0[(bh * K + i) * K + j] : 0.f;
    for (int c = 0; c < cr.nch; c++) {
        const int64_t slot = (int64_t)c * BH + bh;
#pragma unroll
        for (int i = 0; i < K; i++) {
            const float p = cr.P[slot * K + i];
#pragma unroll
            for (int j = 0; j < K; j++) {
                float *e = cr.S + (slot * K + i) * K + j;
                const float own = *e;
                *e = X[i][j];
                X[i][j] = fmaf(p, X[i][j], own);
            }
        }
    }
    if (a.ST)
#pragma unroll
        for (int i = 0; i < K; i++)
#pragma unroll
            for (int j = 0; j < K; j++) a.ST[(bh * K + i) * K + j] = X[i][j];
}

// Phase 3, forward: o over the chunk from its entering state.
template <int K, int DIR, bool ACC>
__global__ void __launch_bounds__(SC_THREADS, 4) hgru_small_chunk_fwd(SmallArgs a, SmallCarry cr) {
    SC_PROLOGUE(K)
    constexpr int U = ScU<K>::F;
    float X[K][K];
#pragma unroll
    for (int i = 0; i < K; i++)
#pragma unroll
        for (int j = 0; j < K; j++) X[i][j] = cr.S[(slot * K + i) * K + j];
    for (int tb = t0; tb < t1; tb += U) {
        float qq[U][K], kk[U][K], gg[U][K], vv[U][K], oo[U][K];
#pragma unroll
        for (int u = 0; u < U; u++)
            if (tb + u < t1) {
                const int64_t row = small_row(base, T, per, tb + u, DIR), o = row * HK + (int64_t)h * K,
                              ov = row * a.ldv + (int64_t)h * K, oo_ = row * a.ldo + (int64_t)h * K;
                small_ld(qq[u], a.q + o);
                small_ld(kk[u], a.k + o);
                small_ld(gg[u], a.g + o);
                small_ld(vv[u], a.v + ov);
#pragma unroll
                for (int i = 0; i < K; i++) oo[u][i] = ACC ? a.o[oo_ + i] : 0.f;
            }
#pragma unroll
        for (int u = 0; u < U; u++)
            if (tb + u < t1) {
                float out[K];
                small_step_fwd(X, qq[u], kk[u], gg[u], vv[u], a.scale, out);
                float *po = a.o + small_row(base, T, per, tb + u, DIR) * a.ldo + (int64_t)h * K;
#pragma unroll
                for (int j = 0; j < K; j++) po[j] = ACC ? oo[u][j] + out[j] : out[j];
            }
    }
}

// Phase 3 of the backward's forward sweep: dq_t = S_t do_t / sqrt(K) over the chunk, into a.dq1.
template <int K, int DIR>
__global__ void __launch_bounds__(SC_THREADS, 4) hgru_small_chunk_dq(SmallArgs a, SmallCarry cr) {
    SC_PROLOGUE(K)
    constexpr int U = ScU<K>::F;
    float X[K][K];
#pragma unroll
    for (int i = 0; i < K; i++)
#pragma unroll
        for (int j = 0; j < K; j++) X[i][j] = cr.S[(slot * K + i) * K + j];
    for (int tb = t0; tb < t1; tb += U) {
        float kk[U][K], gg[U][K], vv[U][K], dd[U][K];
#pragma unroll
        for (int u = 0; u < U; u++)
            if (tb + u < t1) {
                const int64_t row = small_row(base, T, per, tb + u, DIR), o = row * HK + (int64_t)h * K,
                              ov = row * a.ldv + (int64_t)h * K;
                small_ld(kk[u], a.k + o);
                small_ld(gg[u], a.g + o);
                small_ld(vv[u], a.v + ov);
                small_ld(dd[u], a.dout + o);   // dout's rows are H Dv = H K wide
            }
#pragma unroll
        for (int u = 0; u < U; u++)
            if (tb + u < t1) {
                float dq[K];
                small_step_dq(X, kk[u], gg[u], vv[u], dd[u], a.scale, dq);
                float *pq = a.dq1 + small_row(base, T, per, tb + u, DIR) * HK + (int64_t)h * K;
#pragma unroll
                for (int i = 0; i < K; i++) pq[i] = dq[i];
            }
    }
}

// the decay a_{t1} that carries the gradient entering a chunk at its right edge into its last step (1 past the
// sequence's end, where that gradient is zero)
template <int K, int DIR>
__device__ __forceinline__ void sc_edge_decay(const SmallArgs &a, int64_t base, int T, int per, int h, int t1,
                                              float an[K]) {
    const int64_t o = small_row(base, T, per, t1 < T ? t1 : 0, DIR) * ((int64_t)a.H * K) + (int64_t)h * K;
#pragma unroll
    for (int i = 0; i < K; i++) an[i] = t1 < T ? expf(__ldg(a.g + o + i)) : 1.f;
}

// Phase 1, reverse: the chunk's own dS at its first step (from zero at its right edge), Pi at its first step,
// W, and its own part of dg's sum.
template <int K, int DIR>
__global__ void __launch_bounds__(SC_THREADS, 4) hgru_small_chunk_rstate(SmallArgs a, SmallCarry cr) {
    SC_PROLOGUE(K)
    constexpr int U = ScU<K>::R;
    float X[K][K], an[K], pi[K], pfirst[K];
    double W[K][K], R[K];
    sc_edge_decay<K, DIR>(a, base, T, per, h, t1, an);
#pragma unroll
    for (int i = 0; i < K; i++) {
        pi[i] = an[i];
        pfirst[i] = an[i];
        R[i] = 0.0;
#pragma unroll
        for (int j = 0; j < K; j++) { X[i][j] = 0.f; W[i][j] = 0.0; }
    }
    for (int sb = t1 - 1; sb >= t0; sb -= U) {   // steps sb, sb - 1, ..., sb - U + 1
        float qq[U][K], kk[U][K], gg[U][K], vv[U][K], dd[U][K], q1[U][K];
#pragma unroll
        for (int u = 0; u < U; u++)
            if (sb - u >= t0) {
                small_ld_rev(a, small_row(base, T, per, sb - u, DIR), HK, h, qq[u], kk[u], gg[u], vv[u], dd[u], q1[u]);
            }
#pragma unroll
        for (int u = 0; u < U; u++)
            if (sb - u >= t0)
#pragma unroll
                for (int i = 0; i < K; i++) {
                    const float qv = qq[u][i], kv = kk[u][i], qs = qv * a.scale;
                    float dk = 0.f;
#pragma unroll
                    for (int j = 0; j < K; j++) {
                        X[i][j] = fmaf(an[i], X[i][j], qs * dd[u][j]);
                        dk = fmaf(X[i][j], vv[u][j], dk);
                        W[i][j] += (double)kv * pi[i] * vv[u][j];
                    }
                    R[i] += (double)qv * q1[u][i] - (double)kv * dk;
                    pfirst[i] = pi[i];
                    an[i] = expf(gg[u][i]);
                    pi[i] *= an[i];
                }
    }
#pragma unroll
    for (int i = 0; i < K; i++) {
        cr.P[slot * K + i] = pfirst[i];
        cr.R[slot * K + i] = R[i];
#pragma unroll
        for (int j = 0; j < K; j++) {
            cr.S[(slot * K + i) * K + j] = X[i][j];
            cr.W[(slot * K + i) * K + j] = W[i][j];
        }
    }
}

// Phase 2, reverse: walking back from the last chunk, the gradient entering each at its right edge (zero past
// the end) and the part of dg's sum from the chunks after it.
template <int K>
__global__ void hgru_small_chunk_rcarry(SmallArgs a, SmallCarry cr) {
    const int64_t BH = (int64_t)a.B * a.H, bh = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (bh >= BH) return;
    float X[K][K];
    double run[K];
#pragma unroll
    for (int i = 0; i < K; i++) {
        run[i] = 0.0;
#pragma unroll
        for (int j = 0; j < K; j++) X[i][j] = 0.f;
    }
    for (int c = cr.nch - 1; c >= 0; c--) {
        const int64_t slot = (int64_t)c * BH + bh;
#pragma unroll
        for (int i = 0; i < K; i++) {
            double r = cr.R[slot * K + i];
#pragma unroll
            for (int j = 0; j < K; j++) r -= (double)X[i][j] * cr.W[(slot * K + i) * K + j];
            cr.R[slot * K + i] = run[i];
            run[i] += r;
            const float p = cr.P[slot * K + i];
#pragma unroll
            for (int j = 0; j < K; j++) {
                float *e = cr.S + (slot * K + i) * K + j;
                const float own = *e;
                *e = X[i][j];
                X[i][j] = fmaf(p, X[i][j], own);
            }
        }
    }
}

// Phase 3, reverse: the sweep of hgru_small_rev over the chunk, from the gradient and the part of dg's sum that
// enter it at its right edge.
template <int K, int DIR, bool ACC>
__global__ void __launch_bounds__(SC_THREADS, 4) hgru_small_chunk_rev(SmallArgs a, SmallCarry cr) {
    SC_PROLOGUE(K)
    constexpr int U = ScU<K>::R;
    float X[K][K], anext[K];
    double run[K];
    sc_edge_decay<K, DIR>(a, base, T, per, h, t1, anext);
#pragma unroll
    for (int i = 0; i < K; i++) {
        run[i] = cr.R[slot * K + i];
#pragma unroll
        for (int j = 0; j < K; j++) X[i][j] = cr.S[(slot * K + i) * K + j];
    }
    for (int sb = t1 - 1; sb >= t0; sb -= U) {   // steps sb, sb - 1, ..., sb - U + 1
        // with ACC, the dk and dg the outputs add to (each element is this thread's alone, read once); dq and dv
        // are read where they are added to, which keeps the registers within the bounds
        float qq[U][K], kk[U][K], gg[U][K], vv[U][K], dd[U][K], q1[U][K], odk[U][K], odg[U][K];
#pragma unroll
        for (int u = 0; u < U; u++)
            if (sb - u >= t0) {
                const int64_t row = small_row(base, T, per, sb - u, DIR), o = row * HK + (int64_t)h * K;
                small_ld_rev(a, row, HK, h, qq[u], kk[u], gg[u], vv[u], dd[u], q1[u]);
#pragma unroll
                for (int i = 0; i < K; i++) {
                    odk[u][i] = ACC ? a.dk[o + i] : 0.f;
                    odg[u][i] = ACC ? a.dg[o + i] : 0.f;
                }
            }
#pragma unroll
        for (int u = 0; u < U; u++)
            if (sb - u >= t0) {
                const int64_t row = small_row(base, T, per, sb - u, DIR), o = row * HK + (int64_t)h * K;
                float dk[K], dvv[K];
                small_step_rev(X, anext, run, qq[u], kk[u], gg[u], vv[u], dd[u], q1[u], a.scale, dk, dvv);
#pragma unroll
                for (int i = 0; i < K; i++) {
                    if (ACC) {
                        a.dk[o + i] = odk[u][i] + dk[i];
                        a.dg[o + i] = odg[u][i] + (float)run[i];
                        a.dq[o + i] += q1[u][i];
                    } else {
                        a.dk[o + i] = dk[i];
                        a.dg[o + i] = (float)run[i];
                    }
                }
                float *pv = a.dv + row * a.lddv + (int64_t)h * K;
#pragma unroll
                for (int j = 0; j < K; j++) pv[j] = ACC ? pv[j] + dvv[j] : dvv[j];
            }
    }
}

// The carries' scratch, after `before` bytes the caller keeps for itself (dq1 with acc).
static SmallCarry small_carry(const SmallArgs &a, int K, bool reverse_too, size_t before) {
    SmallCarry cr = {};
    cr.nch = (a.T + SC_CHUNK - 1) / SC_CHUNK;
    const size_t n = (size_t)cr.nch * a.B * a.H;
    Carve cv = {scratch(before + align256(n * K * K * sizeof(float)) + align256(n * K * sizeof(float)) +
                        (reverse_too ? align256(n * K * K * sizeof(double)) + align256(n * K * sizeof(double)) : 0))};
    if (before) cv.take<char>(before);
    cr.S = cv.take<float>(n * K * K);
    cr.P = cv.take<float>(n * K);
    if (reverse_too) {
        cr.W = cv.take<double>(n * K * K);
        cr.R = cv.take<double>(n * K);
    }
    return cr;
}

static dim3 sc_grid(const SmallArgs &a, const SmallCarry &cr, int threads) {
    const int64_t n = (int64_t)a.B * a.H * cr.nch, nb = (n + threads - 1) / threads;
    if (nb > INT_MAX) die("HGRU2 kernel: %lld heads x chunks are too many", (long long)n);
    return dim3((unsigned)nb);
}

template <int K, int DIR, bool ACC> static void small_chunk_fwd(const SmallArgs &a, const SmallCarry &cr) {
    const dim3 g = sc_grid(a, cr, SC_THREADS), g1((unsigned)(((int64_t)a.B * a.H + 127) / 128));
    hgru_small_chunk_state<K, DIR><<<g, SC_THREADS, 0, g_stream>>>(a, cr);
    LAUNCH_CHECK("hgru_small_chunk_state");
    hgru_small_chunk_carry<K><<<g1, 128, 0, g_stream>>>(a, cr);
    LAUNCH_CHECK("hgru_small_chunk_carry");
    hgru_small_chunk_fwd<K, DIR, ACC><<<g, SC_THREADS, 0, g_stream>>>(a, cr);
    LAUNCH_CHECK("hgru_small_chunk_fwd");
}

template <int K, int DIR, bool ACC> static void small_chunk_bwd(SmallArgs a, const SmallCarry &cr) {
    const dim3 g = sc_grid(a, cr, SC_THREADS), g1((unsigned)(((int64_t)a.B * a.H + 127) / 128));
    a.S0 = NULL;   // the backward starts from a zero state
    hgru_small_chunk_state<K, DIR><<<g, SC_THREADS, 0, g_stream>>>(a, cr);
    LAUNCH_CHECK("hgru_small_chunk_state");
    hgru_small_chunk_carry<K><<<g1, 128, 0, g_stream>>>(a, cr);
    LAUNCH_CHECK("hgru_small_chunk_carry");
    hgru_small_chunk_dq<K, DIR><<<g, SC_THREADS, 0, g_stream>>>(a, cr);
    LAUNCH_CHECK("hgru_small_chunk_dq");
    hgru_small_chunk_rstate<K, DIR><<<g, SC_THREADS, 0, g_stream>>>(a, cr);
    LAUNCH_CHECK("hgru_small_chunk_rstate");
    hgru_small_chunk_rcarry<K><<<g1, 128, 0, g_stream>>>(a, cr);
    LAUNCH_CHECK("hgru_small_chunk_rcarry");
    hgru_small_chunk_rev<K, DIR, ACC><<<g, SC_THREADS, 0, g_stream>>>(a, cr);
    LAUNCH_CHECK("hgru_small_chunk_rev");
}

// Blocks of 128 threads where there are heads enough for every SM, else of 32 (more blocks, more SMs busy).
static void small_grid(int64_t heads, dim3 *grid, int *threads) {
    *threads = heads >= (int64_t)g_prop.multiProcessorCount * 128 ? 128 : 32;
    const int64_t nb = (heads + *threads - 1) / *threads;
    if (nb > INT_MAX) die("HGRU2 kernel: %lld heads are too many", (long long)heads);
    *grid = dim3((unsigned)nb);
}

// The forward; chunked (small_chunked) when the caller passed the carries' scratch.
template <int DIR, bool ACC> static void small_fwd_launch(const SmallArgs &a, int K, const SmallCarry *cr = NULL) {
    if (cr) {
        switch (K) {
        case 1: small_chunk_fwd<1, DIR, ACC>(a, *cr); break;
        case 2: small_chunk_fwd<2, DIR, ACC>(a, *cr); break;
        default: small_chunk_fwd<4, DIR, ACC>(a, *cr); break;
        }
        return;
    }
    dim3 grid;
    int th;
    small_grid((int64_t)a.B * a.H, &grid, &th);
    switch (K) {
    case 1: hgru_small_fwd<1, DIR, ACC><<<grid, th, 0, g_stream>>>(a); break;
    case 2: hgru_small_fwd<2, DIR, ACC><<<grid, th, 0, g_stream>>>(a); break;
    default: hgru_small_fwd<4, DIR, ACC><<<grid, th, 0, g_stream>>>(a); break;
    }
    LAUNCH_CHECK(a.per > 1 ? "hgru_cols_fwd (small heads)" : "hgru_fwd (small heads)");
}

template <int DIR, bool ACC> static void small_bwd_launch(const SmallArgs &a, int K, const SmallCarry *cr = NULL) {
    if (cr) {
        switch (K) {
        case 1: small_chunk_bwd<1, DIR, ACC>(a, *cr); break;
        case 2: small_chunk_bwd<2, DIR, ACC>(a, *cr); break;
        default: small_chunk_bwd<4, DIR, ACC>(a, *cr); break;
        }
        return;
    }
    dim3 grid;
    int th;
    small_grid((int64_t)a.B * a.H, &grid, &th);
    switch (K) {
    case 1: hgru_small_dq<1, DIR><<<grid, th, 0, g_stream>>>(a); break;
    case 2: hgru_small_dq<2, DIR><<<grid, th, 0, g_stream>>>(a); break;
    default: hgru_small_dq<4, DIR><<<grid, th, 0, g_stream>>>(a); break;
    }
    LAUNCH_CHECK(a.per > 1 ? "hgru_cols_bwd_dq (small heads)" : "hgru_bwd_dq (small heads)");
    switch (K) {
    case 1: hgru_small_rev<1, DIR, ACC><<<grid, th, 0, g_stream>>>(a); break;
    case 2: hgru_small_rev<2, DIR, ACC><<<grid, th, 0, g_stream>>>(a); break;
    default: hgru_small_rev<4, DIR, ACC><<<grid, th, 0, g_stream>>>(a); break;
    }
    LAUNCH_CHECK(a.per > 1 ? "hgru_cols_bwd_dv_dk_dg (small heads)" : "hgru_bwd_dv_dk_dg (small heads)");
}
