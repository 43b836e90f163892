// cuda/mixer.cuh: the token mixer's ops: the chunked tensor-core form where it applies, the one-thread-per-head
// kernels for small heads, the exact sweeps otherwise.
#pragma once
#include "mixer_sweep.cuh"
#include "mixer_chunk.cuh"
#include "mixer_small.cuh"
#include <type_traits>

// The chunked kernels take K = Dv = 64 or 128, need bf16 tensor cores (compute capability 8+) and put b*h on a
// grid dimension of at most 65535 blocks.
static bool chunk_path(int chunk, int B, int T, int H, int K, int Dv) {
    return chunk > 0 && T > 0 && K == Dv && (K == 64 || K == 128) && g_prop.major >= 8 && (int64_t)B * H <= 65535;
}

extern "C" int cuda_hgru_tensor_cores(int B, int T, int H, int K, int Dv, int chunk) {
    cuda_init();
    return chunk_path(chunk, B, T, H, K, Dv);
}

static void hgru_check_dims(const char *op, int B, int T, int H, int K, int Dv) {
    if (B < 0 || T < 0 || H < 0 || K <= 0 || Dv <= 0)
        die("%s: bad dimensions B %d T %d H %d K %d Dv %d", op, B, T, H, K, Dv);
}

// Calls f(dir, acc) with the flags as compile-time constants (std::integral_constant): the kernels take them as
// template parameters, so the causal, overwriting path (0, false) is compiled as if they did not exist.
template <typename F> static void with_flags(int reverse, int acc, F f) {
    using D0 = std::integral_constant<int, 0>;
    using D1 = std::integral_constant<int, 1>;
    if (!reverse && !acc) f(D0{}, std::false_type{});
    else if (!reverse) f(D0{}, std::true_type{});
    else if (!acc) f(D1{}, std::false_type{});
    else f(D1{}, std::true_type{});
}

// The small-head kernels (mixer_small.cuh), in chunks of time where the heads are too few (small_chunked).
// With acc the backward's dq of this call goes to scratch first (the reverse sweep adds it to dq, as its dg reads
// this call's dq alone); the chunks' carries follow it in the same scratch.
static void small_fwd(const SmallArgs &s, int K, int reverse, int acc) {
    SmallCarry cr;
    const bool ch = small_chunked((int64_t)s.B * s.H, s.T);
    if (ch) cr = small_carry(s, K, false, 0);
    with_flags(reverse, acc, [&](auto dir, auto ac) { small_fwd_launch<dir.value, ac.value>(s, K, ch ? &cr : NULL); });
}
static void small_bwd(SmallArgs s, int K, int reverse, int acc, float *dq) {
    const size_t dq1 = acc ? align256((size_t)s.B * s.T * s.H * K * sizeof(float)) : 0;
    const bool ch = small_chunked((int64_t)s.B * s.H, s.T);
    SmallCarry cr;
    if (ch) cr = small_carry(s, K, true, dq1);
    s.dq1 = !acc ? dq : (float *)scratch(dq1);   // the scratch small_carry sized (dq1 first), or just dq1
    with_flags(reverse, acc, [&](auto dir, auto ac) { small_bwd_launch<dir.value, ac.value>(s, K, ch ? &cr : NULL); });
}

// One step (T = 1: a decoding step, the same in either direction). The state is read and written once, which is
// all the work, so the step is a pass over it at the memory's rate: a block per (b, h) and 32 columns j, its
// WARPS warps a share of the rows i each, a lane a column (coalesced rows of the state), eight rows' loads in
// flight; the partial sums of o_j meet in shared memory. S0 and ST may be one buffer (each element is read, then
// written by the same thread). GATES (decoding's op_hgru_step_fwd): q points at rows [q pre-activation | f
// logits | v] of stride ldv and lb at the lower bounds (or NULL); the block first computes its head's K gates
// into shared memory with the gates op's own formulas, and v follows at 2 H K in the row. Decoding launches it as a
// dependent of the product that writes its q/f/v rows (runtime.cuh): before pdl_wait it reads only its first
// STEP_PRE rows of the state, which an earlier step wrote, so that their loads overlap that product's end.
#define STEP_PRE 4
// Head h's K gates of a row [q pre-activation | f logits | ...] of the fused projection (HK = H K values each) into
// shared memory sg = [q | k | g], by the gates op's own formulas; then the block waits for all of them.
__device__ __forceinline__ void step_gates_fill(float *sg, const float *row, const float *__restrict__ lb, int HK, int h,
                                                int K) {
    for (int i = threadIdx.x; i < K; i += blockDim.x) {
        const int c = h * K + i;
        gate_values(row[c], row[HK + c], lb ? lb + c : NULL, sg[i], sg[K + i], sg[2 * K + i]);
    }
    __syncthreads();
}
// One entry of the state after the step: decay, then the outer product's share (the whole-step kernel's too)
__device__ __forceinline__ float step_entry(float g, float s, float k, float v) { return expf(g) * s + k * v; }
template <int WARPS, bool GATES>
__global__ void __launch_bounds__(32 * WARPS) hgru_step_kernel(float *o, float *ST, const float *__restrict__ q,
        const float *__restrict__ k, const float *__restrict__ g, const float *__restrict__ v, int64_t ldv,
        const float *S0, const float *__restrict__ lb, int H, int K, int Dv, float scale, int acc) {
    __shared__ float part[WARPS][32];
    extern __shared__ float step_gates[];   // GATES: q, k, g [K] each
    const int bh = blockIdx.x, b = bh / H, h = bh - b * H, lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    const int j = blockIdx.y * 32 + lane, per = (K + WARPS - 1) / WARPS;
    const int i0 = w * per, i1 = min(K, i0 + per);
    const int64_t base = (int64_t)bh * K * Dv + j;
    int64_t hk = (int64_t)b * H * K + (int64_t)h * K;
    float pre[STEP_PRE];
    #pragma unroll
    for (int u = 0; u < STEP_PRE; u++) pre[u] = S0 && j < Dv && i0 + u < i1 ? S0[base + (int64_t)(i0 + u) * Dv] : 0.f;
    pdl_wait();
    pdl_release();
    if (GATES) {
        const int HK = H * K;
        const float *row = q + (int64_t)b * ldv;
        step_gates_fill(step_gates, row, lb, HK, h, K);
        q = step_gates;
        k = step_gates + K;
        g = step_gates + 2 * K;
        v = row + 2 * HK;
        ldv = 0;
        hk = 0;
    }
    float sum = 0.f;
    if (j < Dv) {
        const float vj = v[(int64_t)b * ldv + (int64_t)h * Dv + j];
        #pragma unroll
        for (int u = 0; u < STEP_PRE; u++) {
            const int i = i0 + u;
            if (i < i1) {
                const float st = step_entry(g[hk + i], pre[u], k[hk + i], vj);
                if (ST) ST[base + (int64_t)i * Dv] = st;
                sum = fmaf(st, q[hk + i], sum);
            }
        }
        #pragma unroll 8
        for (int i = i0 + STEP_PRE; i < i1; i++) {
            float st = S0 ? S0[base + (int64_t)i * Dv] : 0.f;
            st = step_entry(g[hk + i], st, k[hk + i], vj);
            if (ST) ST[base + (int64_t)i * Dv] = st;
            sum = fmaf(st, q[hk + i], sum);
        }
    }
    part[w][lane] = sum;
    __syncthreads();
    if (w == 0 && j < Dv) {
        float t = part[0][lane];
        #pragma unroll
        for (int u = 1; u < WARPS; u++) t += part[u][lane];
        float *out = o + (int64_t)b * H * Dv + (int64_t)h * Dv + j;
        *out = acc ? *out + t * scale : t * scale;
    }
}
#define STEP_WARPS 4

// The step with its gates for many (sequence, head) pairs (decoding a batch), Dv a multiple of 4 and the state
// 16-byte aligned: a block per pair and 128 columns, a lane four adjacent columns (16-byte loads and stores of
// the state's rows, four times the bytes in flight of a lane per column), its 8 warps every 8th row each; the
// partial sums of o meet in shared memory. Otherwise as hgru_step_kernel<WARPS, true> (the same formulas; the
// sum over rows in another order), the first STEP_PRE rows of each warp read before pdl_wait.
#define STEP4_WARPS 8
__global__ void __launch_bounds__(32 * STEP4_WARPS) hgru_step4_kernel(float *o, float *ST, const float *__restrict__ qfi,
        int64_t ldv, const float *S0, const float *__restrict__ lb, int H, int K, int Dv, float scale) {
    __shared__ float4 part[STEP4_WARPS][32];
    extern __shared__ float step_gates[];   // q, k, g [K] each
    const int bh = blockIdx.x, b = bh / H, h = bh - b * H, lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    const int j = blockIdx.y * 128 + lane * 4;   // the lane's first column; with Dv % 4 == 0, all four or none
    const bool on = j < Dv;
    const int64_t base = (int64_t)bh * K * Dv + j;
    float4 pre[STEP_PRE];
    #pragma unroll
    for (int u = 0; u < STEP_PRE; u++) {
        const int i = w + u * STEP4_WARPS;
        pre[u] = S0 && on && i < K ? *(const float4 *)(S0 + base + (int64_t)i * Dv) : make_float4(0.f, 0.f, 0.f, 0.f);
    }
    pdl_wait();
    pdl_release();
    const int HK = H * K;
    const float *row = qfi + (int64_t)b * ldv;
    step_gates_fill(step_gates, row, lb, HK, h, K);
    const float *q = step_gates, *k = step_gates + K, *g = step_gates + 2 * K;
    float4 sum = make_float4(0.f, 0.f, 0.f, 0.f);
    if (on) {
        const float *vr = row + 2 * HK + (int64_t)h * Dv + j;
        const float v0 = vr[0], v1 = vr[1], v2 = vr[2], v3 = vr[3];
        auto take = [&](int i, float4 st) {
            const float a = expf(g[i]), kk = k[i], qq = q[i];
            st.x = a * st.x + kk * v0;
            st.y = a * st.y + kk * v1;
            st.z = a * st.z + kk * v2;
            st.w = a * st.w + kk * v3;
            if (ST) *(float4 *)(ST + base + (int64_t)i * Dv) = st;
            sum.x = fmaf(st.x, qq, sum.x);
            sum.y = fmaf(st.y, qq, sum.y);
            sum.z = fmaf(st.z, qq, sum.z);
            sum.w = fmaf(st.w, qq, sum.w);
        };
        #pragma unroll
        for (int u = 0; u < STEP_PRE; u++)
            if (w + u * STEP4_WARPS < K) take(w + u * STEP4_WARPS, pre[u]);
        #pragma unroll 4
        for (int i = w + STEP_PRE * STEP4_WARPS; i < K; i += STEP4_WARPS)
            take(i, S0 ? *(const float4 *)(S0 + base + (int64_t)i * Dv) : make_float4(0.f, 0.f, 0.f, 0.f));
    }
    part[w][lane] = sum;
    __syncthreads();
    const int t = threadIdx.x, c = blockIdx.y * 128 + t;
    if (t < 128 && c < Dv) {
        const float *pf = (const float *)part;
        float r = pf[t];
        #pragma unroll
        for (int u = 1; u < STEP4_WARPS; u++) r += pf[u * 128 + t];
        o[(int64_t)b * H * Dv + (int64_t)h * Dv + c] = r * scale;
    }
}

// The work of a pass over B x T x H heads (PROF_COST): the chunked form's matrix products per chunk of C = 64 steps,
// Q K^T and A V within it (2 C^2 (K + Dv)) and Q S and K^T V across (4 C K Dv), per step 2 C (K + Dv) + 4 K Dv; the
// plain recurrence's 5 K Dv (decay, outer product, output); a backward counts twice its forward. Bytes: q, k, g and
// v read, o written (and read first with acc), the states given or kept.
static double hgru_flops(int B, int T, int H, int K, int Dv, int chunk) {
    const double per = chunk_path(chunk, B, T, H, K, Dv) ? 2.0 * 64 * (K + Dv) + 4.0 * K * Dv : 5.0 * K * Dv;
    return per * B * T * H;
}

extern "C" void cuda_hgru_fwd(float *o, float *ST, const float *q, const float *k, const float *g, const float *v,
                              int64_t ldv, const float *S0, int B, int T, int H, int K, int Dv, int chunk, int reverse,
                              int acc) {
    hgru_check_dims("hgru_fwd", B, T, H, K, Dv);
    PROF_COST(hgru_flops(B, T, H, K, Dv, chunk), 4.0 * B * T * H * (3.0 * K + Dv * (acc ? 3 : 2)) +
                                                     4.0 * B * H * K * Dv * ((S0 != NULL) + (ST != NULL)));
    if (B == 0 || H == 0 || (T == 0 && !ST)) return;
    cuda_init();
    // (a few sequences' step leaves most of the card idle in this kernel: at 1 x 16 heads of 128 the sweep kernel
    // below was the faster, 939 against 869 tokens/s decoding the 1.13B model; at 64 x 16 this one, 19,629
    // against 15,060)
    if (T == 1 && (int64_t)B * H >= 128) {
        if ((int64_t)B * H > INT_MAX) die("hgru_fwd: %lld sequences x heads is more than one launch takes", (long long)B * H);
        hgru_step_kernel<STEP_WARPS, false><<<dim3((unsigned)(B * H), (unsigned)((Dv + 31) / 32)), 32 * STEP_WARPS, 0,
                                             g_stream>>>(o, ST, q, k, g, v, ldv, S0, NULL, H, K, Dv,
                                                         (float)(1.0 / sqrt((double)K)), acc);
        LAUNCH_CHECK("hgru_step");
        return;
    }
    if (chunk_path(chunk, B, T, H, K, Dv)) {
        ChunkArgs c = chunk_scratch(B, T, H, K, Dv, false, false);
        c.q = q; c.k = k; c.g = g; c.v = v; c.ldv = ldv; c.o = o; c.ST = ST; c.S0 = S0;
        chunk_alignment(c);
        with_flags(reverse, acc, [&](auto dir, auto ac) {
            if (K == 64) chunk_fwd<64, dir.value, ac.value>(c, B);
            else chunk_fwd<128, dir.value, ac.value>(c, B);
        });
        return;
    }
    if (small_path(K, Dv)) {
        SmallArgs s = {};
        s.q = q; s.k = k; s.g = g; s.v = v; s.S0 = S0; s.o = o; s.ST = ST;
        s.ldv = ldv; s.ldo = (int64_t)H * Dv; s.B = B; s.T = T; s.H = H; s.per = 1; s.scale = (float)(1.0 / sqrt((double)K));
        small_fwd(s, K, reverse, acc);
        return;
    }
    SweepArgs a = {};
    a.out = o; a.ST = ST; a.S0 = S0;
    a.q = q; a.k = k; a.g = g; a.v = v;
    a.ldv = ldv; a.ldo = (int64_t)H * Dv;
    a.T = T; a.H = H; a.K = K; a.Dv = Dv;
    with_flags(reverse, acc, [&](auto dir, auto ac) { sweep_launch<SW_FWD, dir.value, ac.value>(a, B); });
}

extern "C" void cuda_hgru_bwd(float *dq, float *dk, float *dg, float *dv, int64_t lddv, const float *dout,
                              const float *q, const float *k, const float *g, const float *v, int64_t ldv, int B, int T,
                              int H, int K, int Dv, int chunk, int reverse, int acc) {
    hgru_check_dims("hgru_bwd", B, T, H, K, Dv);
    // q, k, g, v and dout in; dq, dk, dg and dv out (read first with acc)
    PROF_COST(2 * hgru_flops(B, T, H, K, Dv, chunk), 4.0 * B * T * H * (3.0 * K * (acc ? 3 : 2) + Dv * (acc ? 4 : 3)));
    if (B == 0 || H == 0 || T == 0) return;
    cuda_init();
    if (chunk_path(chunk, B, T, H, K, Dv)) {
        ChunkArgs c = chunk_scratch(B, T, H, K, Dv, true, acc);
        c.q = q; c.k = k; c.g = g; c.v = v; c.ldv = ldv; c.dout = dout;
        c.dq = dq; c.dk = dk; c.dg = dg; c.dv = dv; c.lddv = lddv;
        chunk_alignment(c);
        with_flags(reverse, acc, [&](auto dir, auto ac) {
            if (K == 64) chunk_bwd<64, dir.value, ac.value>(c, B);
            else chunk_bwd<128, dir.value, ac.value>(c, B);
        });
        return;
    }
    if (small_path(K, Dv)) {
        SmallArgs s = {};
        s.q = q; s.k = k; s.g = g; s.v = v; s.dout = dout;
        s.dq = dq; s.dk = dk; s.dg = dg; s.dv = dv; s.lddv = lddv; s.ldv = ldv;
        s.B = B; s.T = T; s.H = H; s.per = 1; s.scale = (float)(1.0 / sqrt((double)K));
        small_bwd(s, K, reverse, acc, dq);
        return;
    }
    SweepArgs a = {};
    a.q = q; a.k = k; a.g = g; a.v = v; a.dout = dout;
    a.ldv = ldv;
    a.T = T; a.H = H; a.K = K; a.Dv = Dv;
    // DKG's dg reads the dq of this call alone: with acc, DQ writes it to scratch and DKG adds it to dq
    float *dq1 = acc ? (float *)scratch((size_t)B * T * H * K * sizeof(float)) : dq;
    with_flags(reverse, acc, [&](auto dir, auto ac) {
        SweepArgs s = a;
        s.out = dq1; s.ldo = (int64_t)H * K;
        sweep_launch<SW_DQ, dir.value, false>(s, B);
        s = a;
        s.out = dv; s.ldo = lddv;
        sweep_launch<SW_DV, dir.value, ac.value>(s, B);
        s = a;
        s.out = dk; s.out2 = dg; s.out3 = dq; s.dq = dq1; s.ldo = (int64_t)H * K;   // after DQ on the same stream
        sweep_launch<SW_DKG, dir.value, ac.value>(s, B);
    });
}

// ---- the columns of images, read in place (ops.h op_hgru_cols_fwd/bwd) ----
// The small-head kernels with sequence b = s gw + c at base row s gh gw + c and a stride of gw rows. Other head
// shapes have no such kernels: cuda_hgru_cols_direct says 0 for them and the model gathers the columns instead.
// HGRU_COLS_DIRECT switches the model onto these kernels: on, since on an H200 they matched the CPU
// (tests/test_gpu_cls.cu) and ran a column pass in 0.34 to 0.54 of the gather path's time (tests/test_gpu_cls_model.c
// --bench). Built with -DHGRU_COLS_DIRECT=0 the model gathers the columns instead, for comparison; the ops
// themselves work either way, so the tests call them whatever the switch says.
#ifndef HGRU_COLS_DIRECT
#define HGRU_COLS_DIRECT 1
#endif

extern "C" int cuda_hgru_cols_direct(int K, int Dv) { return HGRU_COLS_DIRECT && small_path(K, Dv); }

static void cols_check(const char *op, int S, int gh, int gw, int H, int K, int Dv) {
    if (S < 0 || gh < 0 || gw < 0 || H < 0 || K <= 0 || Dv <= 0)
        die("%s: bad dimensions S %d gh %d gw %d H %d K %d Dv %d", op, S, gh, gw, H, K, Dv);
    if (!small_path(K, Dv)) die("%s: no GPU kernel for heads of K %d Dv %d (K = Dv in 1, 2, 4 only)", op, K, Dv);
    if ((int64_t)S * gw > INT_MAX) die("%s: %lld columns are too many", op, (long long)S * gw);
}

extern "C" void cuda_hgru_cols_fwd(float *o, const float *q, const float *k, const float *g, const float *v,
                                   int64_t ldv, int S, int gh, int gw, int H, int K, int Dv, int chunk, int reverse,
                                   int acc) {
    (void)chunk;   // the small kernels run the exact recurrence whatever the form asked for
    cols_check("hgru_cols_fwd", S, gh, gw, H, K, Dv);
    if (S == 0 || gh == 0 || gw == 0 || H == 0) return;
    cuda_init();
    SmallArgs s = {};
    s.q = q; s.k = k; s.g = g; s.v = v; s.o = o;
    s.ldv = ldv; s.ldo = (int64_t)H * Dv; s.B = S * gw; s.T = gh; s.H = H; s.per = gw;
    s.scale = (float)(1.0 / sqrt((double)K));
    small_fwd(s, K, reverse, acc);
}

extern "C" void cuda_hgru_cols_bwd(float *dq, float *dk, float *dg, float *dv, int64_t lddv, const float *dout,
                                   const float *q, const float *k, const float *g, const float *v, int64_t ldv, int S,
                                   int gh, int gw, int H, int K, int Dv, int chunk, int reverse, int acc) {
    (void)chunk;
    cols_check("hgru_cols_bwd", S, gh, gw, H, K, Dv);
    if (S == 0 || gh == 0 || gw == 0 || H == 0) return;
    cuda_init();
    SmallArgs s = {};
    s.q = q; s.k = k; s.g = g; s.v = v; s.dout = dout;
    s.dq = dq; s.dk = dk; s.dg = dg; s.dv = dv; s.lddv = lddv; s.ldv = ldv;
    s.B = S * gw; s.T = gh; s.H = H; s.per = gw; s.scale = (float)(1.0 / sqrt((double)K));
    small_bwd(s, K, reverse, acc, dq);
}
