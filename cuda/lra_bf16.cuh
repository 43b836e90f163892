// cuda/lra_bf16.cuh: the LRA layer in the authors' bf16 numerics (ops.h, op_lra_bf16_fwd and _bwd; the
// roundings, their places and the order of every rounded sum are cpu_cls.c's).
//
// One thread per (sequence, value column c = h K + e) keeps the K states h[d][e] of its column, d < K, in
// registers and runs the T steps in order: the K threads of a head are K consecutive lanes of a warp (K divides
// 32), so the sums over e (dq, dlam) are butterfly shuffles among them. Every thread computes its head's K gates
// itself (a head's lanes read the same gate values, one transaction). The states that another pass needs go to
// the scratch buffer, [B T, K, D] in bf16 (the values are bf16 already; fp32 with rnd = 0). There are only B D
// threads (8,192 at ListOps' batch of 128 and dim 64), so a block is one warp, to spread them over every SM.
//   forward   pass 1 (t up) the forward states; pass 2 (t down) the reverse states and the readout.
//   backward  pass A (t up) the forward states; pass B (t down) the reverse states (kept), dq, and the forward
//             scan's G and dlam (over the forward states, which it no longer needs); pass C (t up) the reverse
//             scan's, and the gradients of v and f; dlb per sequence in double, then summed over the sequences.
#pragma once
#include <type_traits>
#include "runtime.cuh"

template <bool R> __device__ __forceinline__ float rb16(float x) {
    return R ? __bfloat162float(__float2bfloat16_rn(x)) : x;
}
template <bool R> using Lra16S = typename std::conditional<R, bf16, float>::type;   // scratch state type
__device__ __forceinline__ float lra16_ld(const bf16 *p) { return __bfloat162float(*p); }
__device__ __forceinline__ float lra16_ld(const float *p) { return *p; }
__device__ __forceinline__ void lra16_st(bf16 *p, float x) { *p = __float2bfloat16_rn(x); }
__device__ __forceinline__ void lra16_st(float *p, float x) { *p = x; }

// The gates of one row for head hK (its first column), as lra16_gates in cpu_cls.c: lam and 1 - lam for every d,
// q for every d when Q, v and its rounded pre-activation for this thread's column c.
// fe: f of this thread's own gate, d = e = c - hK.
template <int K, bool R, bool Q>
__device__ __forceinline__ void lra16_gates(float *lam, float *oml, float *q, float &v, float &vp, float &fe,
                                            const float *row, int HK, int hK, int c, const float *bb,
                                            const float *omb) {
    float s, sn;
    #pragma unroll
    for (int d = 0; d < K; d++) {
        sigmoid2(rb16<R>(__ldg(row + HK + hK + d)), s, sn);
        const float f = rb16<R>(s);
        if (hK + d == c) fe = f;
        lam[d] = rb16<R>(bb[d] + rb16<R>(omb[d] * f));
        oml[d] = rb16<R>(1.f - lam[d]);
        if (Q) {
            sigmoid2(rb16<R>(__ldg(row + hK + d)), s, sn);
            q[d] = rb16<R>(s);
        }
    }
    vp = rb16<R>(__ldg(row + 2 * HK + c));
    sigmoid2(vp, s, sn);
    v = rb16<R>(vp * s);
}

// The sum over the K lanes of a head, the same on every lane: a butterfly (its order is fixed by K).
template <int K> __device__ __forceinline__ float lra16_head_sum(float x) {
    #pragma unroll
    for (int m = 1; m < K; m <<= 1) x += __shfl_xor_sync(0xffffffffu, x, m);
    return x;
}

template <int K, bool R>
__global__ void __launch_bounds__(32) lra16_fwd_kernel(float *__restrict__ o, const float *__restrict__ qfi,
                                                        int64_t ld, const float *__restrict__ lb,
                                                        Lra16S<R> *__restrict__ ws, int B, int T, int H) {
    const int D = H * K, HK = D;
    const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const bool live = idx < (int64_t)B * D;
    const int64_t b = live ? idx / D : B - 1;   // a spare thread past the end computes the last sequence, unwritten
    const int c = (int)(idx % D), hK = c - c % K;
    float bb[K], omb[K], lam[K], oml[K], q[K], st[K], v, vp, fe;
    #pragma unroll
    for (int d = 0; d < K; d++) {
        bb[d] = lb ? rb16<R>(lb[hK + d]) : 0.f;
        omb[d] = rb16<R>(1.f - bb[d]);
        st[d] = 0.f;
    }
    const float *q0 = qfi + b * T * ld;
    Lra16S<R> *w0 = ws + b * T * K * D + c;
    #pragma unroll 4
    for (int t = 0; t < T; t++) {
        lra16_gates<K, R, false>(lam, oml, q, v, vp, fe, q0 + (int64_t)t * ld, HK, hK, c, bb, omb);
        #pragma unroll
        for (int d = 0; d < K; d++) {
            st[d] = rb16<R>(rb16<R>(lam[d] * st[d]) + rb16<R>(oml[d] * v));
            if (live) lra16_st(w0 + ((int64_t)t * K + d) * D, st[d]);
        }
    }
    #pragma unroll
    for (int d = 0; d < K; d++) st[d] = 0.f;
    #pragma unroll 4
    for (int t = T - 1; t >= 0; t--) {
        lra16_gates<K, R, true>(lam, oml, q, v, vp, fe, q0 + (int64_t)t * ld, HK, hK, c, bb, omb);
        float acc = 0.f;
        #pragma unroll
        for (int d = 0; d < K; d++) {
            st[d] = rb16<R>(rb16<R>(lam[d] * st[d]) + rb16<R>(oml[d] * v));
            acc = fmaf(rb16<R>(lra16_ld(w0 + ((int64_t)t * K + d) * D) + st[d]), q[d], acc);
        }
        if (live) o[(b * T + t) * D + c] = rb16<R>(acc);
    }
}

template <int K, bool R>
__global__ void __launch_bounds__(32) lra16_bwd_kernel(float *__restrict__ dqfi, int64_t ldd,
                                                        double *__restrict__ part, const float *__restrict__ dout,
                                                        const float *__restrict__ qfi, int64_t ld,
                                                        const float *__restrict__ lb, Lra16S<R> *__restrict__ wa,
                                                        Lra16S<R> *__restrict__ wl, Lra16S<R> *__restrict__ wr, int B,
                                                        int T, int H) {
    const int D = H * K, HK = D;
    const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const bool live = idx < (int64_t)B * D;
    const int64_t b = live ? idx / D : B - 1;
    const int c = (int)(idx % D), hK = c - c % K, e = c % K;
    float bb[K], omb[K], lam[K], oml[K], q[K], st[K], G[K], lamn[K], v, vp, fe;
    #pragma unroll
    for (int d = 0; d < K; d++) {
        bb[d] = lb ? rb16<R>(lb[hK + d]) : 0.f;
        omb[d] = rb16<R>(1.f - bb[d]);
        st[d] = 0.f;
    }
    float be = 0.f;   // this lane's own gate's rounded lower bound, b[e]
    #pragma unroll
    for (int d = 0; d < K; d++)
        if (d == e) be = bb[d];
    const float *q0 = qfi + b * T * ld;
    const int64_t w0 = b * T * K * D + c;
    #define W(t, d) (w0 + ((int64_t)(t) * K + (d)) * D)
    // A: the forward states into wa
    #pragma unroll 4
    for (int t = 0; t < T; t++) {
        lra16_gates<K, R, false>(lam, oml, q, v, vp, fe, q0 + (int64_t)t * ld, HK, hK, c, bb, omb);
        #pragma unroll
        for (int d = 0; d < K; d++) {
            st[d] = rb16<R>(rb16<R>(lam[d] * st[d]) + rb16<R>(oml[d] * v));
            if (live) lra16_st(wa + W(t, d), st[d]);
        }
    }
    // B: the reverse states into wr; dq; the forward scan's G and dlam into wa and wl
    #pragma unroll
    for (int d = 0; d < K; d++) { st[d] = 0.f; G[d] = 0.f; lamn[d] = 0.f; }
    #pragma unroll 2
    for (int t = T - 1; t >= 0; t--) {
        lra16_gates<K, R, true>(lam, oml, q, v, vp, fe, q0 + (int64_t)t * ld, HK, hK, c, bb, omb);
        const float dO = rb16<R>(dout[(b * T + t) * D + c]);
        float dq = 0.f, qe = 0.f;
        #pragma unroll
        for (int d = 0; d < K; d++) {
            st[d] = rb16<R>(rb16<R>(lam[d] * st[d]) + rb16<R>(oml[d] * v));
            const float hf = lra16_ld(wa + W(t, d)), hp = t ? lra16_ld(wa + W(t - 1, d)) : 0.f;
            const float sum = lra16_head_sum<K>(dO * rb16<R>(hf + st[d]));
            if (d == e) { dq = sum; qe = q[d]; }
            G[d] = rb16<R>(rb16<R>(dO * q[d]) + rb16<R>(lamn[d] * G[d]));
            lamn[d] = lam[d];
            if (live) {
                lra16_st(wr + W(t, d), st[d]);
                lra16_st(wa + W(t, d), G[d]);
                lra16_st(wl + W(t, d), rb16<R>(G[d] * hp));
            }
        }
        if (live) dqfi[(b * T + t) * ldd + c] = dq * qe * (1.f - qe);
    }
    // C: the reverse scan's G and dlam, then what the two scans' gradients feed
    double acc = 0.0;
    #pragma unroll
    for (int d = 0; d < K; d++) { G[d] = 0.f; lamn[d] = 0.f; }
    #pragma unroll 2
    for (int t = 0; t < T; t++) {
        lra16_gates<K, R, true>(lam, oml, q, v, vp, fe, q0 + (int64_t)t * ld, HK, hK, c, bb, omb);
        const float dO = rb16<R>(dout[(b * T + t) * D + c]);
        float dv = 0.f, dlam = 0.f;
        #pragma unroll
        for (int d = 0; d < K; d++) {
            G[d] = rb16<R>(rb16<R>(dO * q[d]) + rb16<R>(lamn[d] * G[d]));
            lamn[d] = lam[d];
            const float hn = t < T - 1 ? lra16_ld(wr + W(t + 1, d)) : 0.f;
            const float dx = rb16<R>(lra16_ld(wa + W(t, d)) + G[d]);
            const float dl = rb16<R>(lra16_ld(wl + W(t, d)) + rb16<R>(G[d] * hn));
            dv += dx * oml[d];
            const float sum = lra16_head_sum<K>(dl - dx * v);
            if (d == e) dlam = sum;
        }
        float s, sn;
        float *dr = dqfi + (b * T + t) * ldd;
        if (live) {
            dr[HK + c] = dlam * (1.f - be) * fe * (1.f - fe);
            sigmoid2(vp, s, sn);
            dr[2 * HK + c] = dv * s * (1.f + vp * sn);
        }
        acc += (double)(dlam * (1.f - fe));
    }
    #undef W
    if (part && live) part[b * HK + c] = acc;
}

// dlb[c] += the sum over the B sequences, in order, of part[b][c]
__global__ void lra16_dlb_kernel(float *dlb, const double *part, int B, int HK) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= HK) return;
    double acc = 0.0;
    for (int b = 0; b < B; b++) acc += part[(int64_t)b * HK + c];
    dlb[c] += (float)acc;
}

static void lra16_check(const char *op, int B, int T, int H, int K) {
    if (K < 1 || K > 32 || 32 % K) die("%s: head dim %d must divide 32", op, K);
    if (B < 0 || T < 0 || H < 1) die("%s: bad shape B %d T %d H %d", op, B, T, H);
}

template <int K, bool R>
static void lra16_fwd_launch(float *o, const float *qfi, int64_t ld, const float *lb, int B, int T, int H) {
    const int64_t n = (int64_t)B * H * K;
    Lra16S<R> *ws = (Lra16S<R> *)scratch((size_t)n * T * K * sizeof(Lra16S<R>));
    lra16_fwd_kernel<K, R><<<(unsigned)((n + 31) / 32), 32, 0, g_stream>>>(o, qfi, ld, lb, ws, B, T, H);
}

template <int K, bool R>
static void lra16_bwd_launch(float *dqfi, int64_t ldd, float *dlb, const float *dout, const float *qfi, int64_t ld,
                             const float *lb, int B, int T, int H) {
    const int64_t n = (int64_t)B * H * K, per = n * T * K;
    const int want_dlb = lb && dlb;
    Carve cv = {scratch(3 * align256((size_t)per * sizeof(Lra16S<R>)) + align256((size_t)n * sizeof(double)))};
    Lra16S<R> *wa = cv.take<Lra16S<R>>(per), *wl = cv.take<Lra16S<R>>(per), *wr = cv.take<Lra16S<R>>(per);
    double *part = want_dlb ? cv.take<double>(n) : NULL;
    lra16_bwd_kernel<K, R><<<(unsigned)((n + 31) / 32), 32, 0, g_stream>>>(dqfi, ldd, part, dout, qfi, ld, lb, wa,
                                                                            wl, wr, B, T, H);
    if (want_dlb) lra16_dlb_kernel<<<(H * K + 127) / 128, 128, 0, g_stream>>>(dlb, part, B, H * K);
}

#define LRA16_DISPATCH(F, K, rnd, ...)                                                                            \
    switch (K) {                                                                                                 \
    case 1: rnd ? F<1, true>(__VA_ARGS__) : F<1, false>(__VA_ARGS__); break;                                     \
    case 2: rnd ? F<2, true>(__VA_ARGS__) : F<2, false>(__VA_ARGS__); break;                                     \
    case 4: rnd ? F<4, true>(__VA_ARGS__) : F<4, false>(__VA_ARGS__); break;                                     \
    case 8: rnd ? F<8, true>(__VA_ARGS__) : F<8, false>(__VA_ARGS__); break;                                     \
    case 16: rnd ? F<16, true>(__VA_ARGS__) : F<16, false>(__VA_ARGS__); break;                                  \
    default: rnd ? F<32, true>(__VA_ARGS__) : F<32, false>(__VA_ARGS__); break;                                  \
    }

extern "C" void cuda_lra_bf16_fwd(float *o, const float *qfi, int64_t ld, const float *lb, int B, int T, int H, int K,
                                  int rnd) {
    lra16_check("lra_bf16_fwd", B, T, H, K);
    if (B == 0 || T == 0) return;
    LRA16_DISPATCH(lra16_fwd_launch, K, rnd, o, qfi, ld, lb, B, T, H);
    LAUNCH_CHECK("lra_bf16_fwd");
}

extern "C" void cuda_lra_bf16_bwd(float *dqfi, int64_t ldd, float *dlb, const float *dout, const float *qfi, int64_t ld,
                                  const float *lb, int B, int T, int H, int K, int rnd) {
    lra16_check("lra_bf16_bwd", B, T, H, K);
    if (B == 0 || T == 0) return;
    LRA16_DISPATCH(lra16_bwd_launch, K, rnd, dqfi, ldd, dlb, dout, qfi, ld, lb, B, T, H);
    LAUNCH_CHECK("lra_bf16_bwd");
}
