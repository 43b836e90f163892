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

// vec: every pointer 16-byte aligned (p16 8-byte), so four elements at a time and the last n % 4 one by one.
// p16 (NULL: none) receives bf16(p) rounded as to_bf16 rounds, so the copy is the one a fresh conversion gives.
__global__ void adamw_kernel(float *__restrict__ p, const float *__restrict__ grad, float *__restrict__ m,
                             float *__restrict__ v, bf16 *__restrict__ p16, int64_t n, AdamW a, int vec) {
    const int64_t n4 = vec ? n >> 2 : 0;
    GRID_STRIDE(i, n4) {
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
    GRID_STRIDE(j, n - 4 * n4) {
        const int64_t i = 4 * n4 + j;
        float pi = p[i], mi = m[i], vi = v[i];
        adamw1(pi, grad[i], mi, vi, a);
        p[i] = pi;
        m[i] = mi;
        v[i] = vi;
        if (p16) p16[i] = __float2bfloat16(pi);
    }
}

extern "C" void cuda_adamw(float *p, const float *grad, float *m, float *v, int64_t n, double lr, double beta1,
                           double beta2, double eps, double wd, double grad_scale, int64_t step) {
    if (n <= 0) return;
    bf16 *p16 = adamw_copy_for(p, n);
    const double bc1 = 1 - pow(beta1, (double)step), bc2 = 1 - pow(beta2, (double)step);
    const AdamW a = {(float)lr, (float)beta1, (float)beta2, (float)(1 - beta1), (float)(1 - beta2), (float)eps,
                     (float)wd, (float)grad_scale, (float)(1 / bc1), (float)(1 / bc2)};
    const int vec = al(p, 16) && al(grad, 16) && al(m, 16) && al(v, 16) && al(p16, 8);
    adamw_kernel<<<blocks_for(vec ? n / 4 + 1 : n, 256), 256, 0, g_stream>>>(p, grad, m, v, p16, n, a, vec);
    LAUNCH_CHECK("adamw");
}
