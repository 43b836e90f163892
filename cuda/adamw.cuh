// cuda/adamw.cuh: the AdamW update, one fused fp32 kernel that also rewrites the weights' bf16 copies.
#pragma once
#include "dense.cuh"

// ---------------------------------------------------------------------------------------------------------
// AdamW: one fused elementwise kernel in fp32, float4 loads and stores, with the bf16 copy of the weights
// ---------------------------------------------------------------------------------------------------------
// Why fp32 is enough against cpu.c's double (test_gpu allows 1e-6 relative): m and v are each a sum of two terms
// with a few roundings of 2^-24 (6e-8), from the products, the sum and the float coefficients; the terms of v are
// positive, and those of m cancel in a few elements only, not in the norm over a tensor. p moves by lr * upd, a
// small fraction of |p|, so the update's rounding errors reach p scaled down by that fraction, and p rounds once
// as on the CPU. A float simulation of the test's three steps gives ~1e-8 for p and ~6e-8 for m and v; m and v
// carry their error from step to step, but beta < 1 damps it (~2.5e-7 after 100 steps). Gradients so small that
// g^2 leaves fp32's normal range (|g| < 1e-19) have sqrt(v) far below eps, where the difference does not show.
struct AdamW { float lr, beta1, beta2, c1, c2, eps, wd, grad_scale, rbc1, rbc2; };   // c = 1 - beta, rbc = 1/bc

__device__ __forceinline__ void adamw1(float &p, float grad, float &m, float &v, const AdamW &a) {
    const float g = grad * a.grad_scale;
    m = a.beta1 * m + a.c1 * g;
    v = a.beta2 * v + a.c2 * g * g;
    const float upd = (m * a.rbc1) / (sqrtf(v * a.rbc2) + a.eps) + a.wd * p;   // wd with the old p
    p = p - a.lr * upd;
}

// Elements 4i .. 4i + 3 (every pointer 16-byte aligned, p16 8-byte), and element i alone. p16 (NULL: none) receives
// bf16(p) rounded as to_bf16 rounds, so the copy is the one a fresh conversion gives.
__device__ __forceinline__ void adamw4(float *__restrict__ p, const float *__restrict__ grad, float *__restrict__ m,
                                       float *__restrict__ v, bf16 *__restrict__ p16, int64_t i, const AdamW &a) {
    float4 pp = ((float4 *)p)[i], mm = ((float4 *)m)[i], vv = ((float4 *)v)[i];
    const float4 g = ((const float4 *)grad)[i];
    adamw1(pp.x, g.x, mm.x, vv.x, a);
    adamw1(pp.y, g.y, mm.y, vv.y, a);
    adamw1(pp.z, g.z, mm.z, vv.z, a);
    adamw1(pp.w, g.w, mm.w, vv.w, a);
    ((float4 *)p)[i] = pp;
    ((float4 *)m)[i] = mm;
    ((float4 *)v)[i] = vv;
    if (p16) {
        const float np[4] = {pp.x, pp.y, pp.z, pp.w};
        store4(p16 + 4 * i, np);
    }
}
__device__ __forceinline__ void adamw_one(float *__restrict__ p, const float *__restrict__ grad, float *__restrict__ m,
                                          float *__restrict__ v, bf16 *__restrict__ p16, int64_t i, const AdamW &a) {
    float pi = p[i], mi = m[i], vi = v[i];
    adamw1(pi, grad[i], mi, vi, a);
    p[i] = pi;
    m[i] = mi;
    v[i] = vi;
    if (p16) p16[i] = __float2bfloat16(pi);
}

// Many tensors in one launch (cuda_adamw_multi; cuda_adamw is its one-part case): a part per tensor, each cut into
// chunks of ADAMW_CHUNK elements, a block per chunk. A block finds its part by a binary search over the parts'
// first chunks; every element's update is adamw1 with its part's weight decay, whatever the other parts are.
#define ADAMW_CHUNK 4096
struct AdamwSeg {
    float *p, *m, *v;
    const float *grad;
    bf16 *p16;
    int64_t n, first;   // first: the part's first chunk (the block index)
    float wd;
    int vec;
};
// With ctl (the training step queued for a CUDA graph, common.h's StepCtl), the numbers that change from step to
// step come from the device: lr and the bias corrections as the host wrote them, and the clipping scale and the
// skip of a step with a non-finite loss or norm decided here, as train_step decides them on the host (the same
// double arithmetic: sqrt and division round correctly on both), so both give the same bits.
template <bool CTL>
__global__ void __launch_bounds__(256) adamw_multi_kernel(const AdamwSeg *__restrict__ segs, int nseg, AdamW a,
                                                          const StepCtl *__restrict__ ctl) {
    if constexpr (CTL) {
        if (ctl->skip) return;
        double scale = 1.0;
        if (ctl->measure) {
            const double norm = sqrt(ctl->ss);
            if (!isfinite(norm)) return;
            if (ctl->clip > 0 && norm > ctl->clip) scale = ctl->clip / norm;
        }
        a.grad_scale = (float)scale;
        a.lr = ctl->lr;
        a.rbc1 = ctl->rbc1;
        a.rbc2 = ctl->rbc2;
    }
    int lo = 0, hi = nseg - 1;   // the last part whose first chunk is at or before this block
    while (lo < hi) {
        const int mid = (lo + hi + 1) >> 1;
        if (segs[mid].first <= (int64_t)blockIdx.x) lo = mid;
        else hi = mid - 1;
    }
    const AdamwSeg s = segs[lo];
    a.wd = s.wd;
    const int64_t c0 = ((int64_t)blockIdx.x - s.first) * ADAMW_CHUNK, c1 = min(s.n, c0 + ADAMW_CHUNK);
    int64_t i = c0;
    if (s.vec) {   // (c0 is a multiple of 4)
        const int64_t e4 = c0 / 4 + (c1 - c0) / 4;
        for (int64_t j = c0 / 4 + threadIdx.x; j < e4; j += blockDim.x) adamw4(s.p, s.grad, s.m, s.v, s.p16, j, a);
        i = 4 * e4;
    }
    for (i += threadIdx.x; i < c1; i += blockDim.x) adamw_one(s.p, s.grad, s.m, s.v, s.p16, i, a);
}

extern "C" void cuda_adamw(float *p, const float *grad, float *m, float *v, int64_t n, double lr, double beta1,
                           double beta2, double eps, double wd, double grad_scale, int64_t step) {
    const AdamwPart one = {p, grad, m, v, n, wd};
    cuda_adamw_multi(&one, 1, lr, beta1, beta2, eps, grad_scale, step);
}

// The parts' tables live on the device, each uploaded once and never changed after: a step finds the table it
// needs among those sent before (an upload from pageable host memory waits for the stream, which a step must not
// do every time), and a CUDA graph that recorded a launch keeps reading the right one whatever other models'
// steps send meanwhile. A table changes only when a bf16 copy is made or moved or the tensors change; past 16
// tables all go (a graph recorded with one is then recorded again: cuda_free moves the memory epoch on).
// Returns the table on the device (NULL: nothing to update), its entries in *nseg and the launch's blocks in *chunks.
struct AdamwTable {
    std::vector<AdamwSeg> host;
    AdamwSeg *dev;
};
static std::vector<AdamwTable> g_adamw_tables;
static const AdamwSeg *adamw_table(const AdamwPart *parts, int nparts, int *nseg, int64_t *chunks) {
    static std::vector<AdamwSeg> host;
    host.clear();
    *chunks = 0;
    for (int k = 0; k < nparts; k++) {
        const AdamwPart &q = parts[k];
        if (q.n <= 0) continue;
        AdamwSeg s;
        memset(&s, 0, sizeof s);   // (the padding too: tables are compared byte for byte)
        s.p = q.p;
        s.grad = q.grad;
        s.m = q.m;
        s.v = q.v;
        s.p16 = adamw_copy_for(q.p, q.n);
        s.n = q.n;
        s.first = *chunks;
        s.wd = (float)q.wd;
        s.vec = al(s.p, 16) && al(s.grad, 16) && al(s.m, 16) && al(s.v, 16) && al(s.p16, 8);
        host.push_back(s);
        *chunks += (q.n + ADAMW_CHUNK - 1) / ADAMW_CHUNK;
    }
    if (host.empty()) return NULL;
    {   // p, grad, m, v in; p, m, v out, and the bf16 copy where there is one
        double bytes = 0;
        for (const AdamwSeg &s : host) bytes += (double)s.n * (28 + (s.p16 ? 2 : 0));
        PROF_COST(0, bytes);
    }
    if (*chunks > INT_MAX)
        die("adamw: %lld chunks of %d values is more than one launch takes", (long long)*chunks, ADAMW_CHUNK);
    *nseg = (int)host.size();
    const size_t bytes = host.size() * sizeof(AdamwSeg);
    for (const AdamwTable &t : g_adamw_tables)
        if (t.host.size() == host.size() && !memcmp(t.host.data(), host.data(), bytes)) return t.dev;
    if (g_capturing) die("internal error: a new AdamW table during a CUDA graph capture");
    if (g_adamw_tables.size() >= 16) {
        for (AdamwTable &t : g_adamw_tables) cuda_free(t.dev);
        g_adamw_tables.clear();
    }
    AdamwTable t = {host, (AdamwSeg *)cuda_alloc(bytes, "an AdamW parts' table")};
    CUDA_CHECK(cudaMemcpyAsync(t.dev, t.host.data(), bytes, cudaMemcpyHostToDevice, g_stream));
    g_adamw_tables.push_back(t);
    return t.dev;
}

static AdamW adamw_consts(double lr, double beta1, double beta2, double eps, double grad_scale, int64_t step) {
    const double bc1 = 1 - pow(beta1, (double)step), bc2 = 1 - pow(beta2, (double)step);
    return {(float)lr, (float)beta1, (float)beta2, (float)(1 - beta1), (float)(1 - beta2), (float)eps,
            0.f /* each part's own, set in the kernel */, (float)grad_scale, (float)(1 / bc1), (float)(1 / bc2)};
}

extern "C" void cuda_adamw_multi(const AdamwPart *parts, int nparts, double lr, double beta1, double beta2, double eps,
                                 double grad_scale, int64_t step) {
    int nseg;
    int64_t chunks;
    const AdamwSeg *dev = adamw_table(parts, nparts, &nseg, &chunks);
    if (!dev) return;
    adamw_multi_kernel<false><<<(unsigned)chunks, 256, 0, g_stream>>>(
        dev, nseg, adamw_consts(lr, beta1, beta2, eps, grad_scale, step), NULL);
    LAUNCH_CHECK("adamw");
}

extern "C" void cuda_adamw_multi_ctl(const AdamwPart *parts, int nparts, double beta1, double beta2, double eps,
                                     const StepCtl *ctl) {
    int nseg;
    int64_t chunks;
    const AdamwSeg *dev = adamw_table(parts, nparts, &nseg, &chunks);
    if (!dev) return;
    // lr, the scale and the bias corrections are the kernel's to fill in from ctl
    adamw_multi_kernel<true><<<(unsigned)chunks, 256, 0, g_stream>>>(
        dev, nseg, adamw_consts(0, beta1, beta2, eps, 1, 1), ctl);
    LAUNCH_CHECK("adamw");
}
