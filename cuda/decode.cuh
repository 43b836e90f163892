// cuda/decode.cuh: decoding's fused ops (ops.h): the products that form their own input and add the residual, and
// the recurrence's step with its gates. A token step of a few sequences moves little data per op, so each op
// launched costs about as much as it does; these fold the norms, SwiGLU, the residual adds and the gates into
// the kernels next to them, five launches a layer instead of ten.
#pragma once
#include "dense.cuh"
#include "mixer.cuh"

__global__ void add_into_kernel(float *__restrict__ y, const float *__restrict__ x, int64_t n) {
    GRID_STRIDE(i, n) y[i] += x[i];
}

// The one kernel of the forms decoding uses (false: another form, which the ops then run). It streams W from before
// the kernel ahead of it ends (pdl) unless W's bf16 copy was written just now.
static bool gemv_fused(void *y, int y_opnd, const void *x, int pro, const float *nw, double eps, const float *W,
                       const float *res, int n, int I, int O) {
    const bool rms = pro == OP_PRO_RMSNORM, swi = pro == OP_PRO_SWIGLU, none = pro == OP_PRO_NONE;
    if (!(rms || (swi && !y_opnd) || (none && res))) return false;   // (y_opnd with res was refused)
    bool pdl;
    const bf16 *Wb = weight_bf16_ahead(W, (int64_t)O * I, &pdl);
    float *yf = (float *)y;
    if (rms && y_opnd) gemv_bf16<bf16, OP_PRO_RMSNORM, false>((bf16 *)y, x, nw, eps, NULL, Wb, n, I, O, pdl);
    else if (rms && res) gemv_bf16<float, OP_PRO_RMSNORM, true>(yf, x, nw, eps, res, Wb, n, I, O, pdl);
    else if (rms) gemv_bf16<float, OP_PRO_RMSNORM, false>(yf, x, nw, eps, NULL, Wb, n, I, O, pdl);
    else if (swi && res) gemv_bf16<float, OP_PRO_SWIGLU, true>(yf, x, NULL, 0, res, Wb, n, I, O, pdl);
    else if (swi) gemv_bf16<float, OP_PRO_SWIGLU, false>(yf, x, NULL, 0, NULL, Wb, n, I, O, pdl);
    else gemv_bf16<float, OP_PRO_NONE, true>(yf, x, NULL, 0, res, Wb, n, I, O, pdl);
    return true;
}

extern "C" void cuda_matmul_fused_fwd(void *y, int y_opnd, const void *x, int pro, const float *nw, double eps,
                                      const float *W, const float *res, void *tmp, int64_t N, int I, int O) {
    // the weights, the input as stored (real rows and the norm's weight, [gate | up] operands, or operands), y, res
    PROF_COST(2.0 * N * I * O, (double)O * I * prof_ws() +
                                   (pro == OP_PRO_RMSNORM ? 4.0 * N * I + 4.0 * I
                                    : pro == OP_PRO_SWIGLU ? 2.0 * N * I * prof_os() : (double)N * I * prof_os()) +
                                   (double)N * O * (y_opnd ? prof_os() : 4) + (res ? 4.0 * N * O : 0));
    if (N <= 0 || O <= 0) return;
    if (y_opnd && res) die("matmul_fused_fwd: a residual is added to real outputs only");
    if (pro != OP_PRO_NONE && pro != OP_PRO_RMSNORM && pro != OP_PRO_SWIGLU) die("matmul_fused_fwd: input form %d", pro);
    cuda_init();
    // one kernel: bf16, a few rows, whole 16-byte loads, and the input in shared memory
    const size_t smem = (size_t)N * I * sizeof(bf16);
    if (I > 0 && opnd_bf16() && N <= GEMV_MAX_ROWS && I % 8 == 0 && O <= INT_MAX / 32 && al(x, 16) && gemv_on() &&
        (pro != OP_PRO_RMSNORM || al(nw, 16)) && smem <= (size_t)gemv_smem_max() &&
        gemv_fused(y, y_opnd, x, pro, nw, eps, W, res, (int)N, I, O))
        return;
    // the ops one by one: the input into tmp, the product, the residual
    const void *in = x;
    if (pro == OP_PRO_RMSNORM) cuda_rmsnorm_fwd(tmp, NULL, (float *)x, NULL, nw, N, I, eps);
    else if (pro == OP_PRO_SWIGLU) cuda_swiglu_fwd(tmp, x, N, I);
    if (pro != OP_PRO_NONE) in = tmp;
    matmul_fwd(y, y_opnd, in, W, N, I, O);
    if (res) {
        add_into_kernel<<<blocks_for(N * O, 256), 256, 0, g_stream>>>((float *)y, res, N * O);
        LAUNCH_CHECK("add_into");
    }
}

static int g_step4 = 1;   // cuda_set_step4 (tests): 0 keeps the many pairs on hgru_step_kernel
extern "C" void cuda_set_step4(int on) { g_step4 = on; }
extern "C" void cuda_hgru_step_fwd(float *o, float *S, float *q, float *k, float *g, const float *qfi, int64_t ld,
                                   const float *lb, int B, int H, int K, int Dv) {
    hgru_check_dims("hgru_step_fwd", B, 1, H, K, Dv);
    // the state read and written, the row's q and f logits and v, o; decay, outer product and output per entry
    PROF_COST(5.0 * B * H * K * Dv, 8.0 * B * H * K * Dv + 4.0 * B * H * (2.0 * K + 2.0 * Dv));
    if (B == 0 || H == 0) return;
    cuda_init();
    const size_t smem = (size_t)3 * K * sizeof(float);
    if ((int64_t)B * H > INT_MAX || smem > 48 * 1024) {   // the ops one by one
        cuda_gates_fwd(q, k, g, qfi, ld, lb, B, H * K);
        cuda_hgru_fwd(o, S, q, k, g, qfi + 2 * (int64_t)H * K, ld, S, B, 1, H, K, Dv, 0, 0, 0);
        return;
    }
    // a few (sequence, head) pairs leave most of the card idle unless each block has many warps to share the rows
    const dim3 grid((unsigned)(B * H), (unsigned)((Dv + 31) / 32));
    const float scale = (float)(1.0 / sqrt((double)K));
    // a dependent launch (runtime.cuh): its launch overlaps the end of the product before
    if ((int64_t)B * H >= 128 && Dv % 4 == 0 && al(S, 16) && g_step4)
        launch_kernel(true, hgru_step4_kernel, dim3((unsigned)(B * H), (unsigned)((Dv + 127) / 128)), 32 * STEP4_WARPS,
                      smem, o, S, qfi, ld, S, lb, H, K, Dv, scale);
    else if ((int64_t)B * H >= 128)
        launch_kernel(true, hgru_step_kernel<STEP_WARPS, true>, grid, 32 * STEP_WARPS, smem, o, S, qfi, nullptr,
                      nullptr, nullptr, ld, S, lb, H, K, Dv, scale, 0);
    else
        launch_kernel(true, hgru_step_kernel<32, true>, grid, 32 * 32, smem, o, S, qfi, nullptr, nullptr, nullptr, ld,
                      S, lb, H, K, Dv, scale, 0);
    LAUNCH_CHECK("hgru_step");
}
