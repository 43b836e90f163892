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
                const int64_t row = small_row(base, T, per, t0 + u, DIR), o = row * HK + (int64_t)h * K, ov = row * a.ldv + (int64_t)h * K;
#pragma unroll
                for (int i = 0; i < K; i++) {
                    qq[u][i] = __ldg(a.q + o + i);
                    kk[u][i] = __ldg(a.k + o + i);
                    aa[u][i] = __ldg(a.g + o + i);
                    vv[u][i] = __ldg(a.v + ov + i);
                }
            }
#pragma unroll
        for (int u = 0; u < U; u++)
            if (t0 + u < T) {
                float out[K];
#pragma unroll
                for (int j = 0; j < K; j++) out[j] = 0.f;
#pragma unroll
                for (int i = 0; i < K; i++) {
                    const float d = expf(aa[u][i]), qs = qq[u][i] * a.scale;
#pragma unroll
                    for (int j = 0; j < K; j++) {
                        X[i][j] = fmaf(d, X[i][j], kk[u][i] * vv[u][j]);
                        out[j] = fmaf(qs, X[i][j], out[j]);
                    }
                }
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
#pragma unroll
                for (int i = 0; i < K; i++) {
                    kk[u][i] = __ldg(a.k + o + i);
                    aa[u][i] = __ldg(a.g + o + i);
                    vv[u][i] = __ldg(a.v + row * a.ldv + (int64_t)h * K + i);
                    dd[u][i] = __ldg(a.dout + o + i);   // dout's rows are H Dv = H K wide
                }
            }
#pragma unroll
        for (int u = 0; u < U; u++)
            if (t0 + u < T) {
                float *pq = a.dq1 + small_row(base, T, per, t0 + u, DIR) * HK + (int64_t)h * K;
#pragma unroll
                for (int i = 0; i < K; i++) {
                    const float d = expf(aa[u][i]);
                    float s = 0.f;
#pragma unroll
                    for (int j = 0; j < K; j++) {
                        X[i][j] = fmaf(d, X[i][j], kk[u][i] * vv[u][j]);
                        s = fmaf(X[i][j], dd[u][j], s);
                    }
                    pq[i] = s * a.scale;
                }
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
                const int64_t row = small_row(base, T, per, s0 - u, DIR), o = row * HK + (int64_t)h * K;
#pragma unroll
                for (int i = 0; i < K; i++) {
                    qq[u][i] = __ldg(a.q + o + i);
                    kk[u][i] = __ldg(a.k + o + i);
                    gg[u][i] = __ldg(a.g + o + i);
                    vv[u][i] = __ldg(a.v + row * a.ldv + (int64_t)h * K + i);
                    dd[u][i] = __ldg(a.dout + o + i);
                    q1[u][i] = a.dq1[o + i];   // written by the dq kernel just before
                }
            }
#pragma unroll
        for (int u = 0; u < U; u++)
            if (s0 - u >= 0) {
                const int64_t row = small_row(base, T, per, s0 - u, DIR), o = row * HK + (int64_t)h * K;
                float dvv[K];
#pragma unroll
                for (int j = 0; j < K; j++) dvv[j] = 0.f;
#pragma unroll
                for (int i = 0; i < K; i++) {
                    const float qs = qq[u][i] * a.scale;
                    float dk = 0.f;
#pragma unroll
                    for (int j = 0; j < K; j++) {
                        X[i][j] = fmaf(anext[i], X[i][j], qs * dd[u][j]);
                        dvv[j] = fmaf(X[i][j], kk[u][i], dvv[j]);
                        dk = fmaf(X[i][j], vv[u][j], dk);
                    }
                    run[i] += (double)qq[u][i] * q1[u][i] - (double)kk[u][i] * dk;
                    anext[i] = expf(gg[u][i]);
                    if (ACC) {
                        a.dk[o + i] += dk;
                        a.dg[o + i] += (float)run[i];
                        a.dq[o + i] += q1[u][i];
                    } else {
                        a.dk[o + i] = dk;
                        a.dg[o + i] = (float)run[i];
                    }
                }
                float *pv = a.dv + row * a.lddv + (int64_t)h * K;
#pragma unroll
                for (int j = 0; j < K; j++) pv[j] = ACC ? pv[j] + dvv[j] : dvv[j];
            }
    }
}

// Blocks of 128 threads where there are heads enough for every SM, else of 32 (more blocks, more SMs busy).
static void small_grid(int64_t heads, dim3 *grid, int *threads) {
    *threads = heads >= (int64_t)g_prop.multiProcessorCount * 128 ? 128 : 32;
    const int64_t nb = (heads + *threads - 1) / *threads;
    if (nb > INT_MAX) die("HGRU2 kernel: %lld heads are too many", (long long)heads);
    *grid = dim3((unsigned)nb);
}

template <int DIR, bool ACC> static void small_fwd_launch(const SmallArgs &a, int K) {
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

template <int DIR, bool ACC> static void small_bwd_launch(const SmallArgs &a, int K) {
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
