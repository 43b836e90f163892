// tests/bf16_emul.h: the CPU backend with its inputs rounded as the GPU's tensor cores round them, for the GPU
// model tests' tolerances in tf32 and bf16. Include it in one test file and link with the --wrap flags of
// BF16_EMUL_WRAP in the Makefile: the library's calls to op_matmul_fwd, op_matmul_fwd_opnd, op_matmul_bwd,
// op_hgru_fwd, op_hgru_bwd, op_attention_fwd and op_attention_bwd then come here. The attention's inputs and
// outputs are rounded to bf16 where the GPU would run it on cuDNN (cuda_attention_uses_cudnn: bf16, training's
// form, a shape cuDNN takes), as cuDNN's are: q, k, v (and do, o in the backward) in, o (dq, dk, dv) out. With g_emul set to a GEMM precision (1 tf32, 2 bf16) the products'
// inputs are rounded to that format, and the token mixer's to bf16 where the GPU runs it on tensor cores
// (K = Dv = 64 or 128, cuda/mixer.cuh); then the real op runs. g_emul = 0 rounds nothing.
//
// Why: how far a bf16 run's gradient may be from the exact one depends on the model as well as on the format.
// Most configurations move by about 1e-2 when their operands are rounded, but some are ill-conditioned: in one
// head of K = 128 at D = 128, rounding the operands alone (on the float64 CPU) moves the first layer's gradients
// by 0.09 to 0.5. A fixed bf16 tolerance is then either too loose for the rest or fails where the GPU is right.
// So each tf32 and bf16 check measures this sensitivity on the CPU (the same step with and without the
// rounding) and allows a tensor BF16_SITES times it: the GPU rounds at more places than these five ops' inputs (the outputs
// of norms and products kept as bf16 operands, the chunked mixer's scaled factors), and where both were
// measured the GPU's error was 1.6 to 2.7 times the emulated one.
#pragma once
#include <string.h>

#include "../ops.h"
#include "../cuda_ops.h"

#define BF16_SITES 4.0

static int g_emul = 0;   // 0: nothing rounded; 1: tf32 products; 2: bf16 products (both: a bf16 mixer where the GPU's is)

// to the nearest float with `bits` mantissa bits (bf16 7, tf32 10), ties to even; inf and NaN as they are
static float mantissa_round(float f, int bits) {
    const int drop = 23 - bits;
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7f800000u) != 0x7f800000u)
        u = (u + ((1u << (drop - 1)) - 1) + ((u >> drop) & 1u)) & ~((1u << drop) - 1);
    memcpy(&f, &u, 4);
    return f;
}
// rows x w values of x (row stride ld), rounded to `bits` (0: as they are), into a new buffer of row stride w
static real *round_copy(const real *x, int64_t rows, int64_t ld, int64_t w, int bits) {
    real *y = xmalloc((size_t)(rows * w > 0 ? rows * w : 1) * sizeof(real));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < w; i++) y[r * w + i] = bits ? (real)mantissa_round((float)x[r * ld + i], bits) : x[r * ld + i];
    return y;
}
static int gemm_bits(void) { return g_emul == 2 ? 7 : g_emul == 1 ? 10 : 0; }
static int mixer_bits(int K, int Dv) { return g_emul && K == Dv && (K == 64 || K == 128) ? 7 : 0; }

void __real_op_matmul_fwd(real *y, const opnd *x, const real *W, int64_t N, int I, int O);
void __real_op_matmul_fwd_opnd(opnd *y, const opnd *x, const real *W, int64_t N, int I, int O);
void __real_op_matmul_bwd(real *dx, real *dW, const opnd *dy, const opnd *x, const real *W, int64_t N, int I, int O);
void __real_op_hgru_fwd(real *o, real *ST, const real *q, const real *k, const real *g, const real *v, int64_t ldv,
                        const real *S0, int B, int T, int H, int K, int Dv, int chunk, int reverse, int acc);
void __real_op_hgru_bwd(real *dq, real *dk, real *dg, real *dv, int64_t lddv, const real *dout, const real *q,
                        const real *k, const real *g, const real *v, int64_t ldv, int B, int T, int H, int K, int Dv,
                        int chunk, int reverse, int acc);

void __wrap_op_matmul_fwd(real *y, const opnd *x, const real *W, int64_t N, int I, int O) {
    const int b = gemm_bits();
    real *xr = round_copy(x, N, I, I, b), *wr = round_copy(W, I, O, O, b);
    __real_op_matmul_fwd(y, xr, wr, N, I, O);
    free(xr); free(wr);
}
void __wrap_op_matmul_fwd_opnd(opnd *y, const opnd *x, const real *W, int64_t N, int I, int O) {
    const int b = gemm_bits();
    real *xr = round_copy(x, N, I, I, b), *wr = round_copy(W, I, O, O, b);
    __real_op_matmul_fwd_opnd(y, xr, wr, N, I, O);
    free(xr); free(wr);
}
void __wrap_op_matmul_bwd(real *dx, real *dW, const opnd *dy, const opnd *x, const real *W, int64_t N, int I, int O) {
    const int b = gemm_bits();
    real *dyr = round_copy(dy, N, O, O, b), *xr = round_copy(x, N, I, I, b), *wr = round_copy(W, I, O, O, b);
    __real_op_matmul_bwd(dx, dW, dyr, xr, wr, N, I, O);
    free(dyr); free(xr); free(wr);
}
void __wrap_op_hgru_fwd(real *o, real *ST, const real *q, const real *k, const real *g, const real *v, int64_t ldv,
                        const real *S0, int B, int T, int H, int K, int Dv, int chunk, int reverse, int acc) {
    const int64_t rows = (int64_t)B * T, HK = (int64_t)H * K, HDv = (int64_t)H * Dv;
    const int b = mixer_bits(K, Dv);
    real *qr = round_copy(q, rows, HK, HK, b), *kr = round_copy(k, rows, HK, HK, b), *vr = round_copy(v, rows, ldv, HDv, b);
    __real_op_hgru_fwd(o, ST, qr, kr, g, vr, HDv, S0, B, T, H, K, Dv, chunk, reverse, acc);
    free(qr); free(kr); free(vr);
}
void __wrap_op_hgru_bwd(real *dq, real *dk, real *dg, real *dv, int64_t lddv, const real *dout, const real *q,
                        const real *k, const real *g, const real *v, int64_t ldv, int B, int T, int H, int K, int Dv,
                        int chunk, int reverse, int acc) {
    const int64_t rows = (int64_t)B * T, HK = (int64_t)H * K, HDv = (int64_t)H * Dv;
    const int b = mixer_bits(K, Dv);
    real *qr = round_copy(q, rows, HK, HK, b), *kr = round_copy(k, rows, HK, HK, b), *vr = round_copy(v, rows, ldv, HDv, b),
         *dr = round_copy(dout, rows, HDv, HDv, b);
    __real_op_hgru_bwd(dq, dk, dg, dv, lddv, dr, qr, kr, g, vr, HDv, B, T, H, K, Dv, chunk, reverse, acc);
    free(qr); free(kr); free(vr); free(dr);
}

// The attention where the GPU runs it on cuDNN (bf16 in and out; the softmax's own bf16 P is not emulated).
void __real_op_attention_fwd(real *o, real *lse, const real *q, int64_t ldq, const real *k, const real *v,
                             int64_t ldkv, int64_t skv, int B, int Tq, int Tk, int H, int hd);
void __real_op_attention_bwd(real *dq, real *dk, real *dv, int64_t ldd, const real *dout, const real *q,
                             const real *k, const real *v, int64_t ld, const real *o, const real *lse, int B, int T,
                             int H, int hd);
static int att_bits(int B, int Tq, int Tk, int H, int hd) {
    return g_emul == 2 && cuda_attention_uses_cudnn(B, Tq, Tk, H, hd) ? 7 : 0;
}
static void round_rows(real *x, int64_t rows, int64_t ld, int64_t w, int bits) {
    for (int64_t r = 0; r < rows && bits; r++)
        for (int64_t i = 0; i < w; i++) x[r * ld + i] = (real)mantissa_round((float)x[r * ld + i], bits);
}
void __wrap_op_attention_fwd(real *o, real *lse, const real *q, int64_t ldq, const real *k, const real *v,
                             int64_t ldkv, int64_t skv, int B, int Tq, int Tk, int H, int hd) {
    const int b = att_bits(B, Tq, Tk, H, hd);
    if (!b) {
        __real_op_attention_fwd(o, lse, q, ldq, k, v, ldkv, skv, B, Tq, Tk, H, hd);
        return;
    }
    const int64_t D = (int64_t)H * hd;
    real *qr = round_copy(q, (int64_t)B * Tq, ldq, D, b), *kr = xmalloc((size_t)B * Tk * D * sizeof(real)),
         *vr = xmalloc((size_t)B * Tk * D * sizeof(real));
    for (int bb = 0; bb < B; bb++) {
        real *kk = round_copy(k + bb * skv, Tk, ldkv, D, b), *vv = round_copy(v + bb * skv, Tk, ldkv, D, b);
        memcpy(kr + (int64_t)bb * Tk * D, kk, (size_t)Tk * D * sizeof(real));
        memcpy(vr + (int64_t)bb * Tk * D, vv, (size_t)Tk * D * sizeof(real));
        free(kk); free(vv);
    }
    __real_op_attention_fwd(o, lse, qr, D, kr, vr, D, (int64_t)Tk * D, B, Tq, Tk, H, hd);
    round_rows(o, (int64_t)B * Tq, D, D, b);
    free(qr); free(kr); free(vr);
}
void __wrap_op_attention_bwd(real *dq, real *dk, real *dv, int64_t ldd, const real *dout, const real *q,
                             const real *k, const real *v, int64_t ld, const real *o, const real *lse, int B, int T,
                             int H, int hd) {
    const int b = att_bits(B, T, T, H, hd);
    const int64_t rows = (int64_t)B * T, D = (int64_t)H * hd;
    real *qr = round_copy(q, rows, ld, D, b), *kr = round_copy(k, rows, ld, D, b), *vr = round_copy(v, rows, ld, D, b),
         *dr = round_copy(dout, rows, D, D, b), *orr = round_copy(o, rows, D, D, b);
    __real_op_attention_bwd(dq, dk, dv, ldd, dr, qr, kr, vr, D, orr, lse, B, T, H, hd);
    round_rows(dq, rows, ldd, D, b);
    round_rows(dk, rows, ldd, D, b);
    round_rows(dv, rows, ldd, D, b);
    free(qr); free(kr); free(vr); free(dr); free(orr);
}
