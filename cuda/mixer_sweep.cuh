// cuda/mixer_sweep.cuh: the HGRU2 recurrence, exact in fp32: four register-resident sweeps over time.
#pragma once
#include "runtime.cuh"

// Forward and backward are four sweeps over time of one kernel template. Each sweep keeps a K x Dv matrix X per
// (b, h) in registers, updates it with a per-row decay and a rank-1 term, and reduces it against a vector:
//
//   sweep  time     state                                      output
//   FWD    forward  S_t  = diag(a_t) S_{t-1} + k_t v_t^T         o_t  = S_t^T q~_t         (sum over rows i)
//   DV     reverse  dS_t = diag(a_{t+1}) dS_{t+1} + q~_t do_t^T  dv_t = dS_t^T k_t         (sum over rows i)
//   DQ     forward  S_t  as in FWD                               dq_t = S_t do_t / sqrt(K) (sum over columns j)
//   DKG    reverse  dS_t as in DV                                dk_t = dS_t v_t           (sum over columns j)
//                   and dg_t = sum_{s>=t} (q_s dq_s - k_s dk_s) (a running sum in double, from DQ's dq)
//
// with a = exp(g) and q~ = q / sqrt(K). The dg identity holds because, from a zero entering state, q_t and
// G_t = g_1 + ... + g_t enter the outputs only as q_t exp(G_t), and k_s only as k_s exp(-G_s).
// So the backward needs no stored states: DQ reruns the forward, DV and DKG run dS backwards from zero.
//
// The reduced dimension runs across lanes: the "lane dim" is rows i (FWD, DV) or columns j (DQ, DKG), the
// "thread dim" the other. A block owns one (b, h) and NM consecutive thread-dim indices; thread (lg, mg) holds
// X[l][m] for the LR lane-dim indices l = lg + LG*r (interleaved, so the lanes of a warp read consecutive shared
// words) and the MC consecutive m = mg*MC + c. The LG lanes of a group (a power of two, within one warp) hold the
// whole lane dim, padded to PL = LG*LR with zero vectors (decay 1), so the output is a sum over their registers
// and a few shuffles (group_reduce4). Time runs in chunks of C steps whose vectors are staged in shared memory:
// LV[t][l] = {x_l, w_l, d_l} for the lane dim (rank-1 factor, reduction weight, decay when rows are lanes) and
// y, d for the thread dim; outputs collect in shared memory and leave coalesced at the end of the chunk.
// Rows of the state never mix (the decay is per row), so the split into blocks needs no communication.
//
// DIR = 1 is the reverse scan of ops.h: step t of every sweep above reads and writes position T-1-t (its rows
// are found backwards by index, and the next step's gate is the previous row's), so "forward" and "reverse"
// in the table are in the order of the scan. ACC = true adds the outputs to what is there in the final stores
// (each element has one writer, so += is a plain read-modify-write). DQ never accumulates: with acc its dq
// goes to scratch, where DKG reads it for dg and adds it to dq along with its own outputs.
// <DIR = 0, ACC = false> is the causal, overwriting code as it was before the flags.
enum { SW_FWD = 0, SW_DV = 1, SW_DQ = 2, SW_DKG = 3 };
#define SW_MC 4          // thread-dim elements per thread (one float4)
#define SW_THREADS 128   // target block size

// Sums p[0..3] over the LG lanes of a group (LG a power of two, the group aligned within its warp) as a
// reduce-scatter: the first level halves the values each lane carries, the second halves them again, the
// rest all-reduce the one left (LG = 16: 5 shuffles instead of 16). Returns a mask: bit c set when this lane
// holds the group's full sum of value c in p[c]; every c has exactly one such lane, always the same one.
__device__ __forceinline__ unsigned group_reduce4(float p[4], int lg, int LG) {
    if (LG == 1) return 0xFu;
    const int h = LG >> 1;
    const bool hi = (lg & h) != 0;
    float k0 = hi ? p[2] : p[0], k1 = hi ? p[3] : p[1];          // keep two values ...
    const float s0 = hi ? p[0] : p[2], s1 = hi ? p[1] : p[3];    // ... the partner lane keeps the other two
    k0 += __shfl_xor_sync(0xffffffffu, s0, h);
    k1 += __shfl_xor_sync(0xffffffffu, s1, h);
    if (LG == 2) {
        p[0] = p[2] = k0;
        p[1] = p[3] = k1;
        return hi ? 0xCu : 0x3u;
    }
    const int h2 = LG >> 2;
    const bool hi2 = (lg & h2) != 0;
    float v = hi2 ? k1 : k0;
    v += __shfl_xor_sync(0xffffffffu, hi2 ? k0 : k1, h2);
    for (int off = h2 >> 1; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    p[0] = p[1] = p[2] = p[3] = v;
    if (lg & (h2 - 1)) return 0;   // one writer per value: the lane whose remaining low bits are clear
    return 1u << ((hi ? 2 : 0) + (hi2 ? 1 : 0));
}

struct SweepArgs {
    float *out, *out2, *ST;   // o / dv / dq / dk; dg (DKG); the leaving state (FWD)
    const float *S0, *q, *k, *g, *v, *dout, *dq;
    int64_t ldv, ldo;         // row strides of v and of out (and out2)
    int T, H, K, Dv;
    int LG, PL, PLsh, NM, C;  // PL = 1 << PLsh
    float scale;              // 1 / sqrt(K)
    float *out3;              // DKG with ACC: dq, to which it adds the dq sweep's result (dq above)
};

template <int MODE, int LR, int DIR, bool ACC>
__global__ void __launch_bounds__(SW_THREADS) hgru_sweep_kernel(SweepArgs a) {
    constexpr bool TR = MODE == SW_DQ || MODE == SW_DKG;   // lanes run over columns j, threads over rows i
    constexpr bool REV = MODE == SW_DV || MODE == SW_DKG;  // reverse time (of the scan)
    constexpr int MC = SW_MC;
    static_assert(MC == 4, "the step loop reads the thread-dim vectors as float4");
    static_assert(!(ACC && MODE == SW_DQ), "DQ writes scratch; DKG adds it");
    extern __shared__ float4 smem[];
    const int C = a.C, PL = a.PL, NM = a.NM, LG = a.LG, T = a.T, H = a.H, K = a.K, Dv = a.Dv;
    float4 *LV = smem;                              // [C][PL]
    float *yM = (float *)(LV + (size_t)C * PL);     // [C][NM] thread-dim rank-1 factor
    float *oM = yM + C * NM;                        // [C][NM] outputs
    float *dM = oM + C * NM;                        // [C][NM] thread-dim decay (TR)
    float *qM = dM + C * NM, *kM = qM + C * NM, *dqM = kM + C * NM, *gM = dqM + C * NM;   // DKG only

    const int bh = blockIdx.x, b = bh / H, h = bh - b * H;
    const int m0 = blockIdx.y * NM;
    const int Ld = TR ? Dv : K, Md = TR ? K : Dv;
    const int tid = threadIdx.x, nthr = blockDim.x;
    const int lg = tid % LG, mloc_all = (tid / LG) * MC;
    // Groups past the thread dim's NM (the block is rounded up to whole warps) only help with staging; in the
    // step loop they compute on group 0's vectors (their shuffles must still run) and write nothing.
    const bool active = mloc_all < NM;
    const int mloc = active ? mloc_all : 0;
    const int64_t HK = (int64_t)H * K, HDv = (int64_t)H * Dv;

    float X[LR][MC];
#pragma unroll
    for (int r = 0; r < LR; r++)
#pragma unroll
        for (int c = 0; c < MC; c++) {
            X[r][c] = 0.f;
            if (MODE == SW_FWD && a.S0 && active) {
                int i = lg + LG * r, j = m0 + mloc + c;
                if (i < K && j < Dv) X[r][c] = a.S0[((int64_t)bh * K + i) * Dv + j];
            }
        }
    double acc[MC] = {};   // DKG: running sum of q dq - k dk, per owned row

    const int nch = (T + C - 1) / C;
    for (int ci = 0; ci < nch; ci++) {
        const int t0 = (REV ? nch - 1 - ci : ci) * C, n = T - t0 < C ? T - t0 : C;
        __syncthreads();   // the previous chunk is done with the staging buffers
        // ---- stage the lane-dim vectors: {x, w, d} ----
        // (__ldg: read-only global loads, which the compiler may batch across the unrolled iterations ahead of
        // the shared-memory stores; plain generic loads could alias shared memory and would go one at a time)
#pragma unroll 4
        for (int idx = tid; idx < n * PL; idx += nthr) {
            int tt = idx >> a.PLsh, l = idx & (PL - 1), t = t0 + tt;
            int64_t row = (int64_t)b * T + (DIR ? T - 1 - t : t);
            float4 e = make_float4(0.f, 0.f, 1.f, 0.f);
            if (l < Ld) {
                if (MODE == SW_FWD || MODE == SW_DV) {
                    int64_t o = row * HK + (int64_t)h * K + l;
                    if (MODE == SW_FWD) {
                        e.x = __ldg(a.k + o);
                        e.y = __ldg(a.q + o) * a.scale;
                        e.z = expf(__ldg(a.g + o));
                    } else {
                        e.x = __ldg(a.q + o) * a.scale;
                        e.y = __ldg(a.k + o);
                        e.z = t + 1 < T ? expf(__ldg(a.g + o + (DIR ? -HK : HK))) : 1.f;   // dS_T = 0: any decay
                    }
                } else {
                    float vv = __ldg(a.v + row * a.ldv + (int64_t)h * Dv + l);
                    float dd = __ldg(a.dout + row * HDv + (int64_t)h * Dv + l);
                    e.x = MODE == SW_DQ ? vv : dd;
                    e.y = MODE == SW_DQ ? dd : vv;
                }
            }
            LV[idx] = e;
        }
        // ---- stage the thread-dim vectors ----
#pragma unroll 4
        for (int idx = tid; idx < n * NM; idx += nthr) {
            int tt = idx / NM, mm = idx - tt * NM, t = t0 + tt, m = m0 + mm;
            int64_t row = (int64_t)b * T + (DIR ? T - 1 - t : t);
            float y = 0.f, d = 1.f, qq = 0.f, kk = 0.f, dqq = 0.f;
            if (m < Md) {
                if (MODE == SW_FWD) y = __ldg(a.v + row * a.ldv + (int64_t)h * Dv + m);
                else if (MODE == SW_DV) y = __ldg(a.dout + row * HDv + (int64_t)h * Dv + m);
                else {
                    int64_t o = row * HK + (int64_t)h * K + m;
                    if (MODE == SW_DQ) {
                        y = __ldg(a.k + o);
                        d = expf(__ldg(a.g + o));
                    } else {
                        qq = __ldg(a.q + o);
                        kk = __ldg(a.k + o);
                        dqq = __ldg(a.dq + o);   // written by the DQ sweep, an earlier kernel
                        y = qq * a.scale;
                        d = t + 1 < T ? expf(__ldg(a.g + o + (DIR ? -HK : HK))) : 1.f;
                    }
                }
            }
            yM[idx] = y;
            if (TR) dM[idx] = d;
            if (MODE == SW_DKG) { qM[idx] = qq; kM[idx] = kk; dqM[idx] = dqq; }
        }
        __syncthreads();
        // ---- the steps ----
        for (int s = 0; s < n; s++) {
            const int tt = REV ? n - 1 - s : s;
            const float4 *lv = LV + (size_t)tt * PL;
            const float4 y4 = *(const float4 *)(yM + tt * NM + mloc);
            const float ym[MC] = {y4.x, y4.y, y4.z, y4.w};
            float dm[MC] = {1.f, 1.f, 1.f, 1.f};
            if (TR) {
                const float4 d4 = *(const float4 *)(dM + tt * NM + mloc);
                dm[0] = d4.x; dm[1] = d4.y; dm[2] = d4.z; dm[3] = d4.w;
            }
            float p[MC] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
            for (int r = 0; r < LR; r++) {
                const float4 e = lv[lg + LG * r];
#pragma unroll
                for (int c = 0; c < MC; c++) {
                    X[r][c] = fmaf(TR ? dm[c] : e.z, X[r][c], e.x * ym[c]);
                    p[c] = fmaf(e.y, X[r][c], p[c]);
                }
            }
            const unsigned own = group_reduce4(p, lg, LG);
#pragma unroll
            for (int c = 0; c < MC; c++)
                if (active && (own >> c & 1)) {   // this lane holds the group's sum for output c (a fixed lane per c)
                    const int mi = tt * NM + mloc + c;
                    const float val = MODE == SW_DQ ? p[c] * a.scale : p[c];
                    oM[mi] = val;
                    if (MODE == SW_DKG) {
                        acc[c] += (double)qM[mi] * dqM[mi] - (double)kM[mi] * val;
                        gM[mi] = (float)acc[c];
                    }
                }
        }
        __syncthreads();
        // ---- write the chunk's outputs ----
        for (int idx = tid; idx < n * NM; idx += nthr) {
            int tt = idx / NM, mm = idx - tt * NM, m = m0 + mm;
            if (m < Md) {
                int64_t o = (DIR ? (int64_t)b * T + (T - 1 - t0 - tt) : (int64_t)b * T + t0 + tt) * a.ldo +
                            (int64_t)h * Md + m;
                if (ACC) {
                    a.out[o] += oM[idx];
                    if (MODE == SW_DKG) { a.out2[o] += gM[idx]; a.out3[o] += dqM[idx]; }
                } else {
                    a.out[o] = oM[idx];
                    if (MODE == SW_DKG) a.out2[o] = gM[idx];
                }
            }
        }
    }
    if (MODE == SW_FWD && a.ST && active) {   // each thread rewrites only the S0 elements it read: ST may equal S0
#pragma unroll
        for (int r = 0; r < LR; r++)
#pragma unroll
            for (int c = 0; c < MC; c++) {
                int i = lg + LG * r, j = m0 + mloc + c;
                if (i < K && j < Dv) a.ST[((int64_t)bh * K + i) * Dv + j] = X[r][c];
            }
    }
}

template <int MODE, int LR, int DIR, bool ACC>
static void sweep_launch_lr(const SweepArgs &a, dim3 grid, int threads, size_t smem) {
    static size_t attr_bytes = 0;   // per instantiation: the dynamic shared memory already allowed
    if (smem > 48 * 1024 && smem > attr_bytes) {
        CUDA_CHECK(cudaFuncSetAttribute(hgru_sweep_kernel<MODE, LR, DIR, ACC>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        attr_bytes = smem;
    }
    hgru_sweep_kernel<MODE, LR, DIR, ACC><<<grid, threads, smem, g_stream>>>(a);
    LAUNCH_CHECK(MODE == SW_FWD ? "hgru_fwd" : MODE == SW_DV ? "hgru_bwd_dv" : MODE == SW_DQ ? "hgru_bwd_dq"
                                                                                               : "hgru_bwd_dk_dg");
}

// Picks the thread layout and chunk length for one sweep and launches it.
template <int MODE, int DIR, bool ACC>
static void sweep_launch(SweepArgs a, int B) {
    const bool TR = MODE == SW_DQ || MODE == SW_DKG;
    const int Ld = TR ? a.Dv : a.K, Md = TR ? a.K : a.Dv;
    if (Ld > 512) die("the CUDA HGRU2 kernels support K and Dv up to 512, got K %d, Dv %d", a.K, a.Dv);
    const int LR = Ld <= 256 ? 8 : 16;
    int LG = 1;
    while (LG * LR < Ld) LG *= 2;   // at most 32
    const int PL = LG * LR;
    int MG = (Md + SW_MC - 1) / SW_MC;                      // thread groups to cover the thread dim
    if (MG > SW_THREADS / LG) MG = SW_THREADS / LG;
    // whole warps (shuffles use the full mask, and staging wants at least a warp), but the thread dim held in
    // shared memory is only what the MG groups cover: with small heads (K = Dv = 4: one group) padding it to a
    // warp's worth of groups multiplied the staging and the shared memory by up to 32, and cut the blocks an SM
    // holds to three
    const int wq = 32 / LG;
    const int NM = MG * SW_MC, threads = LG * ((MG + wq - 1) / wq * wq);
    const int nM = MODE == SW_DKG ? 7 : TR ? 3 : 2;          // thread-dim arrays in shared memory
    auto smem_for = [&](int C) { return (size_t)C * PL * sizeof(float4) + (size_t)nM * C * NM * sizeof(float); };
    // 64 steps per chunk unless that takes more than ~80 KiB (then fewer, so 2-3 blocks fit on an SM)
    int C = 64;
    while (C > 8 && smem_for(C) > 80 * 1024) C /= 2;
    while (C > 1 && smem_for(C) > (size_t)g_prop.sharedMemPerBlockOptin) C /= 2;
    if (smem_for(C) > (size_t)g_prop.sharedMemPerBlockOptin)
        die("HGRU2 kernel: K %d, Dv %d need more shared memory than this GPU has", a.K, a.Dv);
    a.LG = LG;
    a.PL = PL;
    a.PLsh = 0;
    while ((1 << a.PLsh) < PL) a.PLsh++;
    a.NM = NM;
    a.C = C;
    a.scale = (float)(1.0 / sqrt((double)a.K));
    if ((int64_t)B * a.H > INT_MAX) die("HGRU2 kernel: B*H = %lld is too large", (long long)B * a.H);
    dim3 grid((unsigned)(B * a.H), (unsigned)((Md + NM - 1) / NM));
    if (LR == 8) sweep_launch_lr<MODE, 8, DIR, ACC>(a, grid, threads, smem_for(C));
    else sweep_launch_lr<MODE, 16, DIR, ACC>(a, grid, threads, smem_for(C));
}
