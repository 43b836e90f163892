// ops.h: the op interface of the model. cpu.c implements it in `real` (fp32, or fp64 for the gradient tests)
// with OpenMP. Every tensor is row-major and contiguous unless a leading dimension (ld*) is given, in elements.
// N = B*T rows. Backward ops say per output whether they overwrite (=) or accumulate (+=).
// All reductions are deterministic: the same inputs give bit-identical outputs whatever the thread count
// schedule, so a resumed run repeats an uninterrupted one exactly.
#ifndef HGRN2_OPS_H
#define HGRN2_OPS_H

#include "common.h"

// ---- operands ----
// An operand is an activation whose only readers are matrix products: RMSNorm's output (the input of the
// projections), SwiGLU's output and gradient, and the dy of a product's backward. A backend keeps operands in
// the format its products read: `real` on the CPU; on the GPU bf16 under --precision bf16 and fp32 otherwise.
// Written once in that format, they need no conversion pass before each product and, in bf16, half the
// bytes. `opnd` is void, so a buffer of `real` passes as an operand where the format is `real`.
typedef void opnd;
// y[n] = x (n values) in the operand format                  (y =)
void op_to_opnd(opnd *y, const real *x, int64_t n);

// ---- dense ----
// y[N,O] = x[N,I] W[O,I]^T                                   (y =)
void op_matmul_fwd(real *y, const opnd *x, const real *W, int64_t N, int I, int O);
// the same with y an operand, for a product whose output is kept for an elementwise op (SwiGLU's input)
void op_matmul_fwd_opnd(opnd *y, const opnd *x, const real *W, int64_t N, int I, int O);
// dx[N,I] = dy[N,O] W[O,I]   (skipped when dx is NULL)        (dx =)
// dW[O,I] += dy^T x          (skipped when dW is NULL)        (dW +=)
void op_matmul_bwd(real *dx, real *dW, const opnd *dy, const opnd *x, const real *W, int64_t N, int I, int O);

// ---- embedding ----
// x[N,D] = E[ids[n], :]; every id is in [0, V) (checked by the caller)  (x =)
void op_embed_fwd(real *x, const int32_t *ids, const real *E, int64_t N, int D);
// dE[ids[n], :] += dx[n, :]                                   (dE +=)
void op_embed_bwd(real *dE, const real *dx, const int32_t *ids, int64_t N, int D);

// ---- elementwise ----
void op_add(real *y, const real *a, int64_t n);          // y += a
void op_zero(real *y, int64_t n);                        // y = 0
double op_sumsq(const real *a, int64_t n);               // sum a^2 in double

// ---- RMSNorm ----
// y = x / sqrt(mean(x^2) + eps) * w over the last dim C, an operand; rstd[N] saved when not NULL   (y =)
// With res not NULL, x += res first (x [N,C] is updated in place): the residual add before a norm costs no
// pass of its own.                                                                 (x += when res)
void op_rmsnorm_fwd(opnd *y, real *rstd, real *x, const real *res, const real *w, int64_t N, int C, double eps);
// dx = d/dx, or dx += d/dx when acc is 1 (dx = or +=); dw += d/dw. rstd as saved by the forward (recomputed
// when NULL, with eps). acc lets the backward add into the residual stream's gradient without a pass of its own.
void op_rmsnorm_bwd(real *dx, int acc, real *dw, const real *dy, const real *x, const real *w, const real *rstd,
                    int64_t N, int C, double eps);

// ---- gates (docs/model.md "The token mixer (HGRU2)" and "Gradients of the gates") ----
// qf: rows of row stride ldqf holding [q pre-activation (HK) | f logits (HK)] (the first 2*HK columns of
// the fused q/f/i projection). lb[HK] is the layer's lower bound, NULL in layer 0 (lb = 0).
// q = swish(qpre); g = log(lb + (1 - lb) sigmoid(f)) (= logsigmoid(f) when lb is NULL); k = 1 - exp(g),
// computed as (1 - lb) * sigmoid(-f) so it keeps full relative precision.     q, k, g [N, HK] (=)
void op_gates_fwd(real *q, real *k, real *g, const real *qf, int64_t ldqf, const real *lb, int64_t N, int HK);
// dqf: the first 2*HK columns of rows of stride lddqf (=); dlb[HK] += sum over rows of dlam * (1 - s)
// (skipped when lb or dlb is NULL).
void op_gates_bwd(real *dqf, int64_t lddqf, real *dlb, const real *dq, const real *dk, const real *dg,
                  const real *qf, int64_t ldqf, const real *lb, int64_t N, int HK);

// ---- lower bounds, once per forward ----
// P[L,C] parameters. p = softmax over layers (per channel c); lb[l] = cumsum(p)[l] - p[0].     lb[L,C] (=)
void op_lower_bounds_fwd(real *lb, const real *P, int L, int C);
// dP[L,C] += gradient through the cumsum and softmax given dlb[L,C]
void op_lower_bounds_bwd(real *dP, const real *dlb, const real *P, int L, int C);

// ---- the HGRU2 recurrence ----
// q, k, g: [B,T,H,K] contiguous; v: [B,T,H,Dv] with row stride ldv (a row = one (b,t), H*Dv values used).
// o: [B,T,H,Dv] contiguous.  Per (b,h): S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T; o_t = S_t^T q_t / sqrt(K).
// S0 [B,H,K,Dv]: the entering state, NULL for zeros. ST [B,H,K,Dv]: the leaving state, not written when NULL;
// ST may equal S0 (updated in place).
// chunk = 0: the plain recurrence; chunk > 0: docs/model.md "The chunked form", with chunks of that many steps
// (T need not be a multiple of it). Both give the same result up to rounding.           (o =, ST =)
void op_hgru_fwd(real *o, real *ST, const real *q, const real *k, const real *g, const real *v, int64_t ldv,
                 const real *S0, int B, int T, int H, int K, int Dv, int chunk);
// Backward from a zero entering state and no gradient on the leaving state (training).
// dq, dk, dg: [B,T,H,K] (=); dv: row stride lddv, H*Dv values per row (=). chunk as in the forward.
void op_hgru_bwd(real *dq, real *dk, real *dg, real *dv, int64_t lddv, const real *dout,
                 const real *q, const real *k, const real *g, const real *v, int64_t ldv,
                 int B, int T, int H, int K, int Dv, int chunk);

// ---- SwiGLU ----
// gu: rows [gate (I) | up (I)] of length 2I. h[N,I] = swish(gate) * up. gu, h and dgu are operands  (h =)
void op_swiglu_fwd(opnd *h, const opnd *gu, int64_t N, int I);
void op_swiglu_bwd(opnd *dgu, const real *dh, const opnd *gu, int64_t N, int I);      // (dgu =)

// ---- classifier: softmax cross-entropy ----
// losses[n] = logsumexp(logits[n]) - logits[n, t[n]]; a target < 0 marks a position with no loss (0).
void op_xent_fwd(real *losses, const real *logits, const int32_t *targets, int64_t N, int V);
// dlogits[n] = scale * (softmax(logits[n]) - onehot(t[n])), 0 for ignored rows. dlogits may equal logits.
void op_xent_bwd(real *dlogits, const real *logits, const int32_t *targets, real scale, int64_t N, int V);

// ---- the classifier in training, one op ----
// logits [N,V] (scratch) = h[N,D] W[V,D]^T (h an operand); losses[N] as op_xent_fwd (=); with G = scale (softmax(logits) -
// onehot(targets)): dx[N,D] = G W (=) and dW[V,D] += G^T h. The CPU runs the four ops above in turn (G in
// place of the logits); the GPU fuses the loss and G into one pass (cuda_ops.h).
void op_classifier_train(real *losses, real *dx, real *dW, real *logits, const opnd *h, const real *W,
                         const int32_t *targets, real scale, int64_t N, int D, int V);

// ---- AdamW ----
// Decoupled weight decay: p -= lr * (mhat / (sqrt(vhat) + eps) + wd * p), with g = grad * grad_scale
// (grad_scale folds in the clipping and the 1/accumulation factor). step counts from 1.
void op_adamw(real *p, const real *grad, real *m, real *v, int64_t n, double lr, double beta1, double beta2,
              double eps, double wd, double grad_scale, int64_t step);

#endif
