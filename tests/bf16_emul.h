// tests/bf16_emul.h: the CPU backend with its products' and token mixer's inputs rounded to bf16, for the GPU
// model tests' bf16 tolerances. Include it in one test file and link with the --wrap flags of BF16_EMUL_WRAP in
// the Makefile: the library's calls to op_matmul_fwd, op_matmul_fwd_opnd, op_matmul_bwd, op_hgru_fwd and
// op_hgru_bwd then come here, which round the inputs while g_emul_bf16 is set and call the real op.
//
// Why: how far a bf16 run's gradient may be from the exact one depends on the model as well as on the format.
// Most configurations move by about 1e-2 when their operands are rounded, but some are ill-conditioned: in one
// head of K = 128 at D = 128, rounding the operands alone (on the float64 CPU) moves the first layer's gradients
// by 0.09 to 0.5. A fixed bf16 tolerance is then either too loose for the rest or fails where the GPU is right.
// So each bf16 check measures this sensitivity on the CPU (the same step with and without the rounding) and
// allows a tensor BF16_SITES times it: the GPU rounds at more places than these five ops' inputs (the outputs
// of norms and products kept as bf16 operands, the chunked mixer's scaled factors), and where both were
// measured the GPU's error was 1.6 to 2.7 times the emulated one.
#pragma once
#include <string.h>

#include "../ops.h"

#define BF16_SITES 4.0

static int g_emul_bf16 = 0;

static float bf16_round(float f) {   // to the nearest bf16, ties to even; inf and NaN as they are
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    memcpy(&f, &u, 4);
    return f;
}
// rows x w values of x (row stride ld), rounded, into a new compact buffer (row stride w)
static real *bf16_copy(const real *x, int64_t rows, int64_t ld, int64_t w) {
    real *y = xmalloc((size_t)(rows * w > 0 ? rows * w : 1) * sizeof(real));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < w; i++) y[r * w + i] = g_emul_bf16 ? (real)bf16_round((float)x[r * ld + i]) : x[r * ld + i];
    return y;
}

void __real_op_matmul_fwd(real *y, const opnd *x, const real *W, int64_t N, int I, int O);
void __real_op_matmul_fwd_opnd(opnd *y, const opnd *x, const real *W, int64_t N, int I, int O);
void __real_op_matmul_bwd(real *dx, real *dW, const opnd *dy, const opnd *x, const real *W, int64_t N, int I, int O);
void __real_op_hgru_fwd(real *o, real *ST, const real *q, const real *k, const real *g, const real *v, int64_t ldv,
                        const real *S0, int B, int T, int H, int K, int Dv, int chunk, int reverse, int acc);
void __real_op_hgru_bwd(real *dq, real *dk, real *dg, real *dv, int64_t lddv, const real *dout, const real *q,
                        const real *k, const real *g, const real *v, int64_t ldv, int B, int T, int H, int K, int Dv,
                        int chunk, int reverse, int acc);

void __wrap_op_matmul_fwd(real *y, const opnd *x, const real *W, int64_t N, int I, int O) {
    real *xr = bf16_copy(x, N, I, I), *wr = bf16_copy(W, I, O, O);
    __real_op_matmul_fwd(y, xr, wr, N, I, O);
    free(xr); free(wr);
}
void __wrap_op_matmul_fwd_opnd(opnd *y, const opnd *x, const real *W, int64_t N, int I, int O) {
    real *xr = bf16_copy(x, N, I, I), *wr = bf16_copy(W, I, O, O);
    __real_op_matmul_fwd_opnd(y, xr, wr, N, I, O);
    free(xr); free(wr);
}
void __wrap_op_matmul_bwd(real *dx, real *dW, const opnd *dy, const opnd *x, const real *W, int64_t N, int I, int O) {
    real *dyr = bf16_copy(dy, N, O, O), *xr = bf16_copy(x, N, I, I), *wr = bf16_copy(W, I, O, O);
    __real_op_matmul_bwd(dx, dW, dyr, xr, wr, N, I, O);
    free(dyr); free(xr); free(wr);
}
void __wrap_op_hgru_fwd(real *o, real *ST, const real *q, const real *k, const real *g, const real *v, int64_t ldv,
                        const real *S0, int B, int T, int H, int K, int Dv, int chunk, int reverse, int acc) {
    const int64_t rows = (int64_t)B * T, HK = (int64_t)H * K, HDv = (int64_t)H * Dv;
    real *qr = bf16_copy(q, rows, HK, HK), *kr = bf16_copy(k, rows, HK, HK), *vr = bf16_copy(v, rows, ldv, HDv);
    __real_op_hgru_fwd(o, ST, qr, kr, g, vr, HDv, S0, B, T, H, K, Dv, chunk, reverse, acc);
    free(qr); free(kr); free(vr);
}
void __wrap_op_hgru_bwd(real *dq, real *dk, real *dg, real *dv, int64_t lddv, const real *dout, const real *q,
                        const real *k, const real *g, const real *v, int64_t ldv, int B, int T, int H, int K, int Dv,
                        int chunk, int reverse, int acc) {
    const int64_t rows = (int64_t)B * T, HK = (int64_t)H * K, HDv = (int64_t)H * Dv;
    real *qr = bf16_copy(q, rows, HK, HK), *kr = bf16_copy(k, rows, HK, HK), *vr = bf16_copy(v, rows, ldv, HDv),
         *dr = bf16_copy(dout, rows, HDv, HDv);
    __real_op_hgru_bwd(dq, dk, dg, dv, lddv, dr, qr, kr, g, vr, HDv, B, T, H, K, Dv, chunk, reverse, acc);
    free(qr); free(kr); free(vr); free(dr);
}
