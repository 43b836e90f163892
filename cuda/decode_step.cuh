// cuda/decode_step.cuh: decoding's whole token step of HGRN2 (batch 1 to 4) in one kernel: every layer's five
// fused ops (decode.cuh) and the head's product, as phases of one launch separated by barriers over the grid.
//
// A token step of a small model is a chain of about 5 L + 2 short kernels; with CUDA graphs and dependent launches
// each still costs a few microseconds of launch, ramp-up and tail, more than its bytes take at 44M. Here the
// blocks stay resident (a grid no larger than the card holds at once, so that every block runs and a barrier
// cannot wait on a block that never starts), and between two phases each block arrives at the barrier, then
// issues the loads of its first weights (or state rows) of the next phase, then waits: the memory's latency
// overlaps the barrier's. Each phase computes exactly what its op computes, in the same order: the products as
// gemv_bf16_kernel (a warp per output row, its lanes' 16-byte chunks in increasing order, the same shuffle tree,
// the prologue by gemv_stage), the step as hgru_step_kernel<32, true> (32 groups of rows, a virtual warp each,
// their sums met in shared memory in order), so the logits are the same bits as the ops'
// (tests/test_gpu_model.c checks it).
#pragma once
#include "decode.cuh"

#define DSTEP_THREADS 256   // gemv_stage's norm sums and the products' warps assume 8 warps a block
#define DSTEP_VW 32         // hgru_step_kernel<32, true>'s warps, each real warp taking four

struct DStepLayer {
    const float *attn_norm, *gnorm, *mlp_norm, *lb;   // lb NULL: no lower bound
    const bf16 *wqfi, *wo, *wgu, *wdown;
    float *S;                                         // the layer's state [B, H, K, Dv], carried in place
};
struct DStepArgs {
    int L, D, I, H, K, Dv, V, early;   // early: the first phase's weights may be read before pdl_wait
    double eps, eps_o;
    float scale;
    float *resid, *qfi, *o, *mid, *logits;   // resid [L + 1, B, D]; qfi [B, 2HK + D]; o, mid [B, D]; logits [B, V]
    bf16 *gu;                                // [B, 2I]
    const float *norm;
    const bf16 *wlm;
    unsigned long long *bar;                 // the barrier's count of arrivals
    int32_t *best;                           // greedy decoding's picks [B] (NULL: none)
    unsigned long long *keys;                // their running maxima [4], 0 between launches
    DStepLayer layer[DECODE_STEP_MAX_L];   // (in the kernel's parameters: under 4 KB)
};

// ---- the barrier over the grid ----
// One 64-bit count of arrivals, 0 when a launch starts: a block arrives by adding 1 (a release, not waited for)
// and, having arrived p times, waits until the count reaches p times the grid (an acquire). The head's phase
// ends the launch: the last block to arrive (its add returns the last count) sets the count back to 0 for the
// next launch. A block's writes before it arrives are seen by every block after its wait (the release by the
// arriving thread and the acquire by the waiting one, each behind a barrier of its block).
__device__ __forceinline__ unsigned long long ld_acquire_gpu(const unsigned long long *p) {
    unsigned long long v;
    asm volatile("ld.acquire.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
    return v;
}
__device__ __forceinline__ void dstep_arrive(unsigned long long *bar, unsigned &ph) {
    __syncthreads();
    if (threadIdx.x == 0) asm volatile("red.release.gpu.global.add.u64 [%0], 1;" ::"l"(bar) : "memory");
    ph++;
}
// first: the launch's first phase, which waits for the kernel before it instead (pdl_wait)
__device__ __forceinline__ void dstep_wait(const unsigned long long *bar, unsigned ph, bool first) {
    if (first) {
        pdl_wait();
        pdl_release();
        return;
    }
    if (threadIdx.x == 0) {
        // a block that never started (the card shared with another program's kernels beyond what the grid was
        // sized for) would leave the others waiting for ever: after 10 s the kernel fails instead
        const unsigned long long want = (unsigned long long)ph * gridDim.x;
        unsigned long long t0, t;
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
        for (unsigned n = 1; ld_acquire_gpu(bar) < want; n++) {
            if (n % 4096 == 0) {
                asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
                if (t - t0 > 10000000000ull) __trap();
            }
        }
    }
    __syncthreads();
}

// ---- greedy decoding's pick, as argmax_rows_kernel: each row's first largest logit that is not NaN (0 when
// there is none or the row starts with a NaN) ----
// A key orders (value, index) as the pick does: the value's bits made monotone (-0 taken as +0, which compares
// equal), then the index inverted so that of equal values the earlier is the larger key. 0 is below every key.
__device__ __forceinline__ unsigned long long pick_key(float v, int i) {
    unsigned u = __float_as_uint(v + 0.f);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ((unsigned long long)u << 32) | (unsigned)~(unsigned)i;
}
// The head's end, the launch's last arrival: with picks, the block's warps merge theirs (lane 0 of each: bv, bi)
// and thread 0 raises each row's key before it arrives; the last block to arrive writes best, clears the keys
// and sets the count back to 0.
template <int NR>
__device__ __forceinline__ void dstep_last(const DStepArgs &a, unsigned ph, const float bv[NR], const int bi[NR]) {
    __shared__ unsigned long long wk[DSTEP_THREADS / 32][NR];
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    if (a.best && lane == 0) {
        #pragma unroll
        for (int n = 0; n < NR; n++) wk[w][n] = bi[n] < 0 ? 0ull : pick_key(bv[n], bi[n]);
    }
    __syncthreads();
    if (threadIdx.x != 0) return;
    if (a.best) {
        #pragma unroll
        for (int n = 0; n < NR; n++) {
            unsigned long long k = 0;
            for (int u = 0; u < DSTEP_THREADS / 32; u++) k = wk[u][n] > k ? wk[u][n] : k;
            if (k) atomicMax(a.keys + n, k);
        }
    }
    __threadfence();
    if (atomicAdd(a.bar, 1ull) != (unsigned long long)(ph + 1) * gridDim.x - 1) return;
    __threadfence();   // every block's logits and keys are in
    if (a.best) {
        for (int n = 0; n < NR; n++) {
            const unsigned long long k = atomicExch(a.keys + n, 0ull);
            const float x0 = __ldcg(a.logits + (int64_t)n * a.V);
            a.best[n] = k == 0 || isnan(x0) ? 0 : (int32_t)~(unsigned)(k & 0xffffffffu);
        }
    }
    atomicExch(a.bar, 0ull);
}

// ---- a product: y[n, o] = r[n] a[n] . W[o] (+ res[n, o]), a formed by gemv_stage<NR, PRO> ----
// A warp takes G adjacent rows of W at a time, KB 16-byte chunks of each a lane in one batch of loads: 8 loads
// a lane in flight (G 4 only for 1 or 2 sequences, whose G NR sums fit the registers), the groups of rows dealt
// round the grid's warps. Its first group's first loads go out before the wait. (16 loads a lane for one
// sequence spilled registers and ran slower: 0.81x the fused ops at 44M, where 8 ran 1.04x.)
template <int NR, int PRO, bool RES, int G, int KB, typename TY>
__device__ __forceinline__ void dstep_gemv_g(TY *__restrict__ y, const void *x, const float *__restrict__ nw,
                                             double eps, const float *res, const bf16 *__restrict__ W, int I, int O,
                                             bf16 *xs, unsigned long long *bar, unsigned &ph, bool first,
                                             const DStepArgs *last = nullptr) {
    // KB chunks a row in one batch of G KB loads a lane
    const int lane = threadIdx.x & 31, nw8 = gridDim.x * (DSTEP_THREADS / 32);
    const int nk = (I + 255) / 256, ngroups = (O + G - 1) / G;
    int grp = blockIdx.x * (DSTEP_THREADS / 32) + (threadIdx.x >> 5);
    uint4 u[G * KB];
    // load the batch of chunks [kb, kb + KB) of the group's rows (G > 1: the whole rows, nk <= KB)
    auto load = [&](int gi, int kb) {
        #pragma unroll
        for (int j = 0; j < G; j++) {
            const int o = gi * G + j;
            #pragma unroll
            for (int k = 0; k < KB; k++) {
                const int i = lane * 8 + (kb + k) * 256;
                if (o < O && kb + k < nk && i < I) u[j * KB + k] = __ldcs((const uint4 *)(W + (int64_t)o * I + i));
            }
        }
    };
    if (grp < ngroups) load(grp, 0);
    dstep_wait(bar, ph, first);
    float r[NR];
    #pragma unroll
    for (int n = 0; n < NR; n++) r[n] = 1.f;
    gemv_stage<NR, PRO>(xs, r, x, nw, eps, I);
    const bool pick = last && last->best;
    float bv[NR];   // pick: lane 0's first largest value of each row so far (bi -1: none) in increasing o
    int bi[NR];
    #pragma unroll
    for (int n = 0; n < NR; n++) { bv[n] = 0.f; bi[n] = -1; }
    for (bool have = true; grp < ngroups; grp += nw8, have = false) {
        float acc[G][NR], rv[G][NR];   // rv: the residuals lane 0 adds, loaded while the products' loads fly
        #pragma unroll
        for (int j = 0; j < G; j++)
            #pragma unroll
            for (int n = 0; n < NR; n++) {
                acc[j][n] = 0.f;
                rv[j][n] = RES && lane == 0 && grp * G + j < O ? res[(int64_t)n * O + grp * G + j] : 0.f;
            }
        for (int kb = 0; kb < nk; kb += KB, have = false) {
            if (!have) load(grp, kb);
            #pragma unroll
            for (int j = 0; j < G; j++)
                #pragma unroll
                for (int k = 0; k < KB; k++) {
                    const int i = lane * 8 + (kb + k) * 256;
                    if (kb + k < nk && i < I) gemv_take<NR>(acc[j], u[j * KB + k], xs, I, i);
                }
        }
        #pragma unroll
        for (int j = 0; j < G; j++) {
            const int o = grp * G + j;
            #pragma unroll
            for (int n = 0; n < NR; n++)
                for (int off = 16; off > 0; off >>= 1) acc[j][n] += __shfl_xor_sync(0xffffffffu, acc[j][n], off);
            if (lane == 0 && o < O) {
                #pragma unroll
                for (int n = 0; n < NR; n++) {
                    const float v = PRO == OP_PRO_RMSNORM ? acc[j][n] * r[n] : acc[j][n];
                    put(y + (int64_t)n * O + o, RES ? v + rv[j][n] : v);
                    if (pick && !isnan(v) && (bi[n] < 0 || v > bv[n])) { bv[n] = v; bi[n] = o; }
                }
            }
        }
    }
    if (last) dstep_last<NR>(*last, ph, bv, bi);
    else dstep_arrive(bar, ph);
}
template <int NR, int PRO, bool RES, typename TY>
__device__ __forceinline__ void dstep_gemv(TY *y, const void *x, const float *nw, double eps, const float *res,
                                           const bf16 *W, int I, int O, bf16 *xs, unsigned long long *bar,
                                           unsigned &ph, bool first, const DStepArgs *last = nullptr) {
    const int nk = (I + 255) / 256;
#define DSTEP_GEMV(g, kb) dstep_gemv_g<NR, PRO, RES, g, kb>(y, x, nw, eps, res, W, I, O, xs, bar, ph, first, last)
    if (nk <= 2 && NR <= 2) DSTEP_GEMV(4, 2);
    else if (nk <= 4) DSTEP_GEMV(2, 4);
    else DSTEP_GEMV(1, 8);
#undef DSTEP_GEMV
}

// ---- the recurrence's step with its gates, as hgru_step_kernel<32, true> ----
// Items (sequence and head, 32 columns) are dealt round the blocks; in each the block's warp w takes the row
// groups w, w + 8, w + 16 and w + 24 of the 32. The first item's first STEP_PRE rows of each group load before
// the wait (the state only an earlier launch wrote).
template <int NR>
__device__ __forceinline__ void dstep_step(float *__restrict__ o, float *S, const float *qfi, int ldq,
                                           const float *__restrict__ lb, int H, int K, int Dv, float scale,
                                           float *sm, unsigned long long *bar, unsigned &ph) {
    constexpr int VPW = DSTEP_VW / (DSTEP_THREADS / 32);   // row groups a warp
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, ncol = (Dv + 31) / 32, per = (K + DSTEP_VW - 1) / DSTEP_VW;
    const int items = NR * H * ncol;
    float *sg = sm, *part = sm + 3 * K;   // gates [3K], then the groups' sums [32][32]
    float pre[VPW][STEP_PRE];
    auto load_pre = [&](int it) {
        const int bh = it / ncol, j = (it - bh * ncol) * 32 + lane;
        #pragma unroll
        for (int v = 0; v < VPW; v++) {
            const int i0 = (w + v * 8) * per, i1 = min(K, i0 + per);
            #pragma unroll
            for (int p = 0; p < STEP_PRE; p++)
                pre[v][p] = j < Dv && i0 + p < i1 ? S[(int64_t)bh * K * Dv + j + (int64_t)(i0 + p) * Dv] : 0.f;
        }
    };
    int it = blockIdx.x;
    if (it < items) load_pre(it);
    dstep_wait(bar, ph, false);
    for (bool have = true; it < items; it += gridDim.x, have = false) {
        if (!have) load_pre(it);
        const int bh = it / ncol, b = bh / H, h = bh - b * H, j = (it - bh * ncol) * 32 + lane;
        const int64_t base = (int64_t)bh * K * Dv + j;
        const float *row = qfi + (int64_t)b * ldq;
        const float vj = j < Dv ? row[2 * H * K + h * Dv + j] : 0.f;   // (its load beside the gates')
        step_gates_fill(sg, row, lb, H * K, h, K);
        const float *q = sg, *k = sg + K, *g = sg + 2 * K;
        #pragma unroll
        for (int v = 0; v < VPW; v++) {
            const int vw = w + v * 8, i0 = vw * per, i1 = min(K, i0 + per);
            float sum = 0.f;
            if (j < Dv) {
                #pragma unroll
                for (int p = 0; p < STEP_PRE; p++) {
                    const int i = i0 + p;
                    if (i < i1) {
                        const float st = step_entry(g[i], pre[v][p], k[i], vj);
                        S[base + (int64_t)i * Dv] = st;
                        sum = fmaf(st, q[i], sum);
                    }
                }
                for (int i = i0 + STEP_PRE; i < i1; i++) {
                    const float st = step_entry(g[i], S[base + (int64_t)i * Dv], k[i], vj);
                    S[base + (int64_t)i * Dv] = st;
                    sum = fmaf(st, q[i], sum);
                }
            }
            part[vw * 32 + lane] = sum;
        }
        __syncthreads();
        if (w == 0 && j < Dv) {
            float t = part[lane];
            #pragma unroll
            for (int u = 1; u < DSTEP_VW; u++) t += part[u * 32 + lane];
            o[(int64_t)b * H * Dv + (int64_t)h * Dv + j] = t * scale;
        }
        __syncthreads();   // (the next item's gates overwrite sg and part)
    }
    dstep_arrive(bar, ph);
}

template <int NR>
__global__ void __launch_bounds__(DSTEP_THREADS, 2) decode_step_kernel(const __grid_constant__ DStepArgs a) {
    extern __shared__ uint4 dstep_smem[];
    bf16 *xs = (bf16 *)dstep_smem;
    const int D = a.D, HK = a.H * a.K, QFI = 2 * HK + D;
    unsigned ph = 0;   // the block's arrivals so far
    for (int l = 0; l < a.L; l++) {
        const DStepLayer &w = a.layer[l];
        float *x = a.resid + (int64_t)l * NR * D, *xn = x + (int64_t)NR * D, *mid = a.I ? a.mid : xn;
        // [q | f | v] of norm(x); the step; x + o-proj of norm(o); [gate | up] of norm(mid); mid + MLP
        dstep_gemv<NR, OP_PRO_RMSNORM, false>(a.qfi, x, w.attn_norm, a.eps, (const float *)NULL, w.wqfi, D, QFI, xs,
                                              a.bar, ph, l == 0);
        dstep_step<NR>(a.o, w.S, a.qfi, QFI, w.lb, a.H, a.K, a.Dv, a.scale, (float *)dstep_smem, a.bar, ph);
        dstep_gemv<NR, OP_PRO_RMSNORM, true>(mid, a.o, w.gnorm, a.eps_o, x, w.wo, D, D, xs, a.bar, ph, false);
        if (!a.I) continue;
        dstep_gemv<NR, OP_PRO_RMSNORM, false>(a.gu, mid, w.mlp_norm, a.eps, (const float *)NULL, w.wgu, D, 2 * a.I, xs,
                                              a.bar, ph, false);
        dstep_gemv<NR, OP_PRO_SWIGLU, true>(xn, a.gu, (const float *)NULL, 0.0, mid, w.wdown, a.I, D, xs, a.bar, ph,
                                            false);
    }
    // the head: the final norm's row scale applied to the classifier's products, then the greedy picks
    dstep_gemv<NR, OP_PRO_RMSNORM, false>(a.logits, a.resid + (int64_t)a.L * NR * D, a.norm, a.eps,
                                          (const float *)NULL, a.wlm, D, a.V, xs, a.bar, ph, a.L == 0, &a);
}

// Which batches take the kernel: 1 to 4 (1), none (0), or by default (2) 2 to 4 and batch 1 of a model whose
// layers' products are each at most DSTEP_B1_BYTES of weights; -1: as HGRN2_DECODE_KERNEL says (0 or 1, else the
// default). At batch 1 the fused ops, a launch each, stream the weights of a large product faster (one H100, one
// call, decode tokens/s, kernel against fused ops: 44M 8,931 / 8,086 and 162M 4,353 / 3,977, whose largest
// products are 2.9 and 6.3 MB, against 1.13B 1,020 / 1,052, whose MLP's first product is 46 MB).
#define DSTEP_B1_BYTES (16ll << 20)
static int g_decode_kernel = -1;
extern "C" void cuda_set_decode_kernel(int on) { g_decode_kernel = on; }
static int decode_kernel_mode(void) {
    if (g_decode_kernel < 0) {
        const char *e = getenv("HGRN2_DECODE_KERNEL");
        g_decode_kernel = e && !strcmp(e, "0") ? 0 : e && !strcmp(e, "1") ? 1 : 2;
    }
    return g_decode_kernel;
}

template <int NR> static int dstep_grid(size_t smem) {
    static size_t opted = 0;
    if (smem > GEMV_SMEM && smem > opted) {
        CUDA_CHECK(
            cudaFuncSetAttribute(decode_step_kernel<NR>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        opted = smem;
    }
    int per_sm = 0;
    CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, decode_step_kernel<NR>, DSTEP_THREADS, smem));
    // 2 blocks an SM (more would add to each barrier's arrivals; the registers allow 2); HGRN2_DECODE_KERNEL_BLOCKS
    // = 1 tries one
    static int want = -1;
    if (want < 0) {
        const char *e = getenv("HGRN2_DECODE_KERNEL_BLOCKS");
        want = e && !strcmp(e, "1") ? 1 : 2;
    }
    if (per_sm > want) per_sm = want;
    return per_sm * g_prop.multiProcessorCount;
}

extern "C" int cuda_decode_step(const DecodeStep *d) {
    const int B = d->B, D = d->D, I = d->I, H = d->H, K = d->K, Dv = d->Dv, V = d->V, L = d->L;
    const int64_t HK = (int64_t)H * K;
    const int mode = decode_kernel_mode();
    const int64_t widest = 2 * HK + D > 2 * (int64_t)I ? 2 * HK + D : 2 * (int64_t)I;   // the layers' widest product
    if (!mode || (mode == 2 && B == 1 && widest * D * (int64_t)sizeof(bf16) > DSTEP_B1_BYTES)) return 0;
    if (!opnd_bf16() || !gemv_on() || B < 1 || B > 4 || L < 0 || L > DECODE_STEP_MAX_L ||
        H < 1 || (int64_t)B * H >= 128 || (int64_t)H * Dv != D || D % 8 || I % 8 || I < 0 || V < 1 || K < 1 ||
        2 * HK + D > INT_MAX / 32 || 2 * (int64_t)I > INT_MAX / 32 || (int64_t)V > INT_MAX / 32)
        return 0;
    cuda_init();
    const size_t smem_x = (size_t)B * (I > D ? I : D) * sizeof(bf16),
                 smem_s = ((size_t)3 * K + DSTEP_VW * 32) * sizeof(float),
                 smem = smem_x > smem_s ? smem_x : smem_s;
    if (smem > (size_t)gemv_smem_max()) return 0;
    bool ok = al(d->resid, 16) && al(d->o, 16) && al(d->mid, 16) && al(d->gu, 16) && al(d->norm, 16);
    for (int l = 0; l < L && ok; l++) {
        const DecodeStepLayer &e = d->layers[l];
        ok = al(e.attn_norm, 16) && al(e.gnorm, 16) && (!I || al(e.mlp_norm, 16));
    }
    if (!ok) return 0;
    DStepArgs a = {};
    a.L = L; a.D = D; a.I = I; a.H = H; a.K = K; a.Dv = Dv; a.V = V;
    a.eps = d->eps; a.eps_o = d->eps_o;
    a.scale = (float)(1.0 / sqrt((double)K));
    a.resid = d->resid; a.qfi = d->qfi; a.o = d->o; a.mid = d->mid; a.logits = d->logits; a.gu = (bf16 *)d->gu;
    a.norm = d->norm;
    // the bf16 copies (weight_bf16_ahead: the first phase reads its weights early only if none was written now)
    bool early = true, pdl;
    for (int l = 0; l < L; l++) {
        const DecodeStepLayer &e = d->layers[l];
        DStepLayer &o = a.layer[l];
        o.attn_norm = e.attn_norm; o.gnorm = e.gnorm; o.mlp_norm = e.mlp_norm; o.lb = e.lb; o.S = e.S;
        o.wqfi = weight_bf16_ahead(e.wqfi, (2 * HK + D) * D, &pdl); early = early && pdl;
        o.wo = weight_bf16_ahead(e.wo, (int64_t)D * D, &pdl); early = early && pdl;
        if (I) {
            o.wgu = weight_bf16_ahead(e.wgu, 2 * (int64_t)I * D, &pdl); early = early && pdl;
            o.wdown = weight_bf16_ahead(e.wdown, (int64_t)D * I, &pdl); early = early && pdl;
        }
    }
    a.wlm = weight_bf16_ahead(d->wlm, (int64_t)V * D, &pdl);
    a.early = early && pdl;
    static unsigned long long *bar = NULL;   // the barrier's count, then the picks' keys
    if (!bar) {
        bar = (unsigned long long *)cuda_alloc(5 * sizeof(unsigned long long), "the decoding step's grid barrier");
        CUDA_CHECK(cudaMemsetAsync(bar, 0, 5 * sizeof(unsigned long long), g_stream));
    }
    a.bar = bar;
    a.keys = bar + 1;
    a.best = d->best;
    int grid = 0;
    switch (B) {
    case 1: grid = dstep_grid<1>(smem); break;
    case 2: grid = dstep_grid<2>(smem); break;
    case 3: grid = dstep_grid<3>(smem); break;
    default: grid = dstep_grid<4>(smem); break;
    }
    if (grid < 1) return 0;
    switch (B) {
    case 1: launch_kernel(a.early, decode_step_kernel<1>, grid, DSTEP_THREADS, smem, a); break;
    case 2: launch_kernel(a.early, decode_step_kernel<2>, grid, DSTEP_THREADS, smem, a); break;
    case 3: launch_kernel(a.early, decode_step_kernel<3>, grid, DSTEP_THREADS, smem, a); break;
    default: launch_kernel(a.early, decode_step_kernel<4>, grid, DSTEP_THREADS, smem, a); break;
    }
    LAUNCH_CHECK("decode_step");
    return 1;
}
