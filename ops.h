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
// C columns of N rows: y[r ldy + c] = x[r ldx + c] in the operand format, converted as op_to_opnd converts
// (the backward's dqfi, whose other columns an op wrote as operands already).   (y =)
void op_to_opnd_cols(opnd *y, int64_t ldy, const real *x, int64_t ldx, int64_t N, int C);

// ---- dense ----
// y[N,O] = x[N,I] W[O,I]^T                                   (y =)
void op_matmul_fwd(real *y, const opnd *x, const real *W, int64_t N, int I, int O);
// the same with y an operand, for a product whose output is kept for an elementwise op (SwiGLU's input)
void op_matmul_fwd_opnd(opnd *y, const opnd *x, const real *W, int64_t N, int I, int O);
// dx[N,I] = dy[N,O] W[O,I]   (skipped when dx is NULL)        (dx =)
// dW[O,I] += dy^T x          (skipped when dW is NULL)        (dW +=)
void op_matmul_bwd(real *dx, real *dW, const opnd *dy, const opnd *x, const real *W, int64_t N, int I, int O);

// Decoding's fused products (a token step of a few sequences): y[N,O] = a[N,I] W[O,I]^T (+ res) with a, the
// product's input, one of
//   OP_PRO_NONE:    x itself, an operand [N,I];
//   OP_PRO_RMSNORM: op_rmsnorm_fwd of x [N,I] (real, not changed) with weight nw and eps, in the operand format;
//   OP_PRO_SWIGLU:  op_swiglu_fwd of x, an operand [N,2I] of rows [gate | up].
// y is real (y_opnd 0) or an operand (y_opnd 1, then res must be NULL); res [N,O] real or NULL, not y.
// tmp [N,I] (an operand buffer) is where a backend that does not fuse puts a; the CPU computes exactly the ops
// named above in turn, then y += res. A backend that fuses may leave tmp untouched, and may apply the RMSNorm's
// row scale 1 / rms(x) to the row's products instead of to a (the same function, rounded elsewhere).  (y =)
// (the forms OP_PRO_* are in common.h, which the CUDA backend includes too)
void op_matmul_fused_fwd(void *y, int y_opnd, const void *x, int pro, const real *nw, double eps, const real *W,
                         const real *res, opnd *tmp, int64_t N, int I, int O);

// ---- embedding ----
// x[N,D] = E[ids[n], :]; every id is in [0, V) (checked by the caller)  (x =)
void op_embed_fwd(real *x, const int32_t *ids, const real *E, int64_t N, int D);
// dE[ids[n], :] += dx[n, :]                                   (dE +=)
void op_embed_bwd(real *dE, const real *dx, const int32_t *ids, int64_t N, int D, int64_t V);

// ---- elementwise ----
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
// The same (dx not NULL) and the new dx also into dxo [N, C] as an operand, rounded as op_to_opnd rounds: the
// residual stream's gradient for the next layer's products, without a conversion pass.             (dxo =)
void op_rmsnorm_bwd_opnd(real *dx, int acc, opnd *dxo, real *dw, const real *dy, const real *x, const real *w,
                         const real *rstd, int64_t N, int C, double eps);
// y = x rstd w with the rstd a forward kept: that forward's y again, to the bit, without the row sums (the
// backward's recomputed operand).                                                              (y =)
void op_rmsnorm_scale(opnd *y, const real *x, const real *rstd, const real *w, int64_t N, int C);

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
// The same with dqf an operand: each value rounded as op_to_opnd would round op_gates_bwd's, so the product
// that reads it sees the same bits without the conversion pass.
void op_gates_bwd_opnd(opnd *dqf, int64_t lddqf, real *dlb, const real *dq, const real *dk, const real *dg,
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
// (T need not be a multiple of it). Both give the same result up to rounding.
// reverse = 1 scans the sequence from t = T-1 down to 0: S_t = diag(exp(g_t)) S_{t+1} + k_t v_t^T, o_t =
// S_t^T q_t / sqrt(K), exactly the reverse = 0 op on the time-reversed sequence with every row read and written
// at its own position (no reversed copies; the same bits as the op on reversed copies). S0 then enters before
// step T-1 and ST leaves after step 0. A bidirectional mixer sums the two directions: reverse 0, then reverse 1
// with acc = 1.
// acc = 0: o = the result; acc = 1: o += the result (the previous contents plus what acc = 0 writes, one
// rounding).                                                                      (o = or +=, ST =)
void op_hgru_fwd(real *o, real *ST, const real *q, const real *k, const real *g, const real *v, int64_t ldv,
                 const real *S0, int B, int T, int H, int K, int Dv, int chunk, int reverse, int acc);
// Decoding's step of the recurrence with its gates: op_gates_fwd on the rows qfi [B, ld] (lb as there), then
// op_hgru_fwd over T = 1 with v = qfi + 2 HK (row stride ld) and the state S [B,H,K,Dv] carried in place.
// q, k, g [B,HK] are where a backend that does not fuse puts the gates (the CPU does; the GPU may not).
//                                                                                         (o =, S =)
void op_hgru_step_fwd(real *o, real *S, real *q, real *k, real *g, const real *qfi, int64_t ld, const real *lb,
                      int B, int H, int K, int Dv);
// Backward from a zero entering state and no gradient on the leaving state (training). chunk and reverse as
// in the forward. dq, dk, dg: [B,T,H,K]; dv: row stride lddv, H*Dv values per row. acc = 0 overwrites them;
// acc = 1 adds the gradients to what is there, so the two directions of a bidirectional mixer share one set
// of gradient buffers.                                                         (dq, dk, dg, dv = or +=)
void op_hgru_bwd(real *dq, real *dk, real *dg, real *dv, int64_t lddv, const real *dout,
                 const real *q, const real *k, const real *g, const real *v, int64_t ldv,
                 int B, int T, int H, int K, int Dv, int chunk, int reverse, int acc);

// The same recurrence over the columns of images, read in place (the classifier's 2-D mixer, docs/classifier.md
// "2-D scans"). S images of gh x gw positions in raster order: position (s, r, c) is row (s gh + r) gw + c of
// q, k, g ([rows of H*K]), v (row stride ldv), o and dout ([rows of H*Dv]) and dv (row stride lddv). Each of the
// S*gw columns is a sequence of gh steps, top to bottom, or bottom to top with reverse = 1; zero entering state,
// no leaving state. chunk, reverse and acc as in op_hgru_fwd/bwd; the result is that of gathering the rows into
// column-major order, running op_hgru_fwd/bwd with B = S*gw, T = gh, and scattering back, without the copies.
// op_hgru_cols_direct(K, Dv) says whether the backend runs these ops for heads of that shape (the CPU: always;
// the GPU: see cuda_ops.h); where it says 0, they must not be called.        (o = or +=; dq, dk, dg, dv = or +=)
void op_hgru_cols_fwd(real *o, const real *q, const real *k, const real *g, const real *v, int64_t ldv,
                      int S, int gh, int gw, int H, int K, int Dv, int chunk, int reverse, int acc);
void op_hgru_cols_bwd(real *dq, real *dk, real *dg, real *dv, int64_t lddv, const real *dout,
                      const real *q, const real *k, const real *g, const real *v, int64_t ldv,
                      int S, int gh, int gw, int H, int K, int Dv, int chunk, int reverse, int acc);
int op_hgru_cols_direct(int K, int Dv);

// ---- HGRN1 (docs/model.md "HGRN1's token mixer"): the element-wise recurrence and its gated output norm ----
// HGRN1's gates are op_gates_fwd's, run on rows [i | f]: q = swish(i) = silu(i), k = 1 - a, g = log a with a the
// (lower-bounded) forget gate; the recurrence's input is q k, fla's swiglu(i, 1 - a), formed inside these ops.
// q, k, g, o: [B,T,D] contiguous. Per (b, d), over scan steps s = 0 .. T-1 at position t = s (reverse: T-1-s):
// h_s = exp(g_t) h_{s-1} + q_t k_t; o_t = h_s (acc: o_t += h_s, the reverse scan added to the forward one).
// h0 [B,D]: the state entering the first step, NULL for zeros. hT [B,D]: the state leaving the last step, not
// written when NULL; hT may equal h0 (updated in place).                      (o = or +=, hT =)
void op_hgrn_fwd(real *o, real *hT, const real *q, const real *k, const real *g, const real *h0, int B, int T, int D,
                 int reverse, int acc);
// Backward from a zero entering state and no gradient on the leaving state (training); o as the forward of the
// same direction wrote it alone (o at the step before = h_{s-1}). dh_s = dout_t + exp(g at step s+1) dh_{s+1};
// dq = dh k; dk = dh q; dg = dh exp(g_t) h_{s-1} (0 at s = 0).                 (dq, dk, dg = or += with acc)
void op_hgrn_bwd(real *dq, real *dk, real *dg, const real *dout, const real *q, const real *k, const real *g,
                 const real *o, int B, int T, int D, int reverse, int acc);
// The gated RMSNorm (fla's FusedRMSNormGated, swish): y = x / sqrt(mean(x^2) + eps) * w * swish(z) over the
// last dim C; z in rows of stride ldz; y an operand; rstd[N] saved when not NULL.      (y =)
void op_rmsnorm_gated_fwd(opnd *y, real *rstd, const real *x, const real *z, int64_t ldz, const real *w, int64_t N,
                          int C, double eps);
// dx [N,C] (=); dz in rows of stride lddz (=); dw += (skipped when NULL). rstd as saved (recomputed when NULL).
void op_rmsnorm_gated_bwd(real *dx, real *dz, int64_t lddz, real *dw, const real *dy, const real *x, const real *z,
                          int64_t ldz, const real *w, const real *rstd, int64_t N, int C, double eps);

// ---- Transformer++ (docs/model.md "Transformer++"): rotary positions and causal softmax attention ----
// A row holds H heads of hd values each (hd even). Rows are [B,T]: row (b, t) at x + (b T + t) ldx.
// Rotary positions, Hugging Face LLaMA's convention (rotate_half over the two halves of each head): the row of
// step t is at position pos0 + t, and in every head the pair (x_i, x_{i + hd/2}), i < hd/2, turns by the angle
// a = (pos0 + t) theta^(-2i/hd):  x_i' = x_i cos a - x_{i+hd/2} sin a,  x_{i+hd/2}' = x_{i+hd/2} cos a + x_i sin a.
// The angles and their cos and sin are computed in double; each result is rounded once. In place.    (x =)
void op_rope_fwd(real *x, int64_t ldx, int B, int T, int H, int hd, int pos0, double theta);
// The gradient through op_rope_fwd from position 0 (training): the transposed rotation, by -a. In place.  (dx =)
void op_rope_bwd(real *dx, int64_t lddx, int B, int T, int H, int hd, double theta);
// Causal softmax attention per sequence b and head h, scale 1/sqrt(hd). Query t (t < Tq) stands at position
// Tk - Tq + t and sees the keys of positions 0 .. Tk - Tq + t:
//   s_tj = q_t . k_j / sqrt(hd),   lse_t = log sum_j exp(s_tj),   o_t = sum_j exp(s_tj - lse_t) v_j.
// q: rows of stride ldq ([B,Tq]); key and value j of sequence b at k + b skv + j ldkv, v + b skv + j ldkv (so
// a [B,T] tensor of stride ld has skv = T ld, and a cache of C positions per sequence skv = C ldkv).
// o: [B,Tq,H hd] contiguous. lse: [B,Tq,H], written when not NULL (the backward reads it). Training has
// Tq = Tk; decoding against a key/value cache Tq <= Tk.                                    (o =, lse =)
void op_attention_fwd(real *o, real *lse, const real *q, int64_t ldq, const real *k, const real *v, int64_t ldkv,
                      int64_t skv, int B, int Tq, int Tk, int H, int hd);
// Its backward in the training form (Tq = Tk = T; q, k, v rows of stride ld, sequences T ld apart), from o and
// lse as the forward wrote them: the probabilities p_tj = exp(s_tj - lse_t) are recomputed, never stored.
//   delta_t = do_t . o_t,  ds_tj = p_tj (do_t . v_j - delta_t),
//   dq_t = sum_j ds_tj k_j / sqrt(hd),  dk_j = sum_t ds_tj q_t / sqrt(hd),  dv_j = sum_t p_tj do_t.
// dout: [B,T,H hd] contiguous; dq, dk, dv: rows of stride ldd.                      (dq =, dk =, dv =)
void op_attention_bwd(real *dq, real *dk, real *dv, int64_t ldd, const real *dout, const real *q, const real *k,
                      const real *v, int64_t ld, const real *o, const real *lse, int B, int T, int H, int hd);
// Decoding: the new rows join a key/value cache. Row (b, t) of x ([B,T], stride ldx; C values) is copied to
// position pos0 + t of sequence b of the cache, whose sequences hold ctx rows of stride ldc.        (cache =)
void op_kv_append(real *cache, int64_t ldc, int ctx, int pos0, const real *x, int64_t ldx, int B, int T, int C);

// ---- SwiGLU ----
// gu: rows [gate (I) | up (I)] of length 2I. h[N,I] = swish(gate) * up. gu, h and dgu are operands  (h =)
void op_swiglu_fwd(opnd *h, const opnd *gu, int64_t N, int I);
void op_swiglu_bwd(opnd *dgu, const real *dh, const opnd *gu, int64_t N, int I);      // (dgu =)

// ---- classifier: softmax cross-entropy ----
// losses[n] = logsumexp(logits[n]) - logits[n, t[n]]; a target < 0 marks a position with no loss (0).
void op_xent_fwd(real *losses, const real *logits, const int32_t *targets, int64_t N, int V);
// dlogits[n] = scale * (softmax(logits[n]) - onehot(t[n])), 0 for ignored rows. dlogits may equal logits.
void op_xent_bwd(real *dlogits, const real *logits, const int32_t *targets, real scale, int64_t N, int V);
// best[n] = the index of row n's largest logit, the first of equal ones: the pick of a scan that starts at index
// 0 and moves on to anything greater (greedy decoding's rule), so a NaN is never picked unless it is the row's
// first value.
void op_argmax_rows(int32_t *best, const real *logits, int64_t N, int V);
// Soft targets (label smoothing eps, mixup and cutmix): row n's target distribution is
// y[n] = eps / V + (1 - eps) (lam[n] onehot(ta[n]) + (1 - lam[n]) onehot(tb[n])), which sums to 1;
// losses[n] = logsumexp(logits[n]) - sum_j y[n,j] logits[n,j]; ta[n] < 0 marks an ignored row (loss 0).
void op_xent_soft_fwd(real *losses, const real *logits, const int32_t *ta, const int32_t *tb, const real *lam,
                      real eps, int64_t N, int V);
// dlogits[n] = scale * (softmax(logits[n]) - y[n]), 0 for ignored rows. dlogits may equal logits.
void op_xent_soft_bwd(real *dlogits, const real *logits, const int32_t *ta, const int32_t *tb, const real *lam,
                      real eps, real scale, int64_t N, int V);

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
// op_adamw on every part (common.h) with its own weight decay, in one pass: the GPU updates them all in one launch
void op_adamw_multi(const AdamwPart *parts, int nparts, double lr, double beta1, double beta2, double eps,
                    double grad_scale, int64_t step);

// =========================================================================================================
// the classification model (cpu_cls.c; docs/ops.md "The classification ops")
// =========================================================================================================
// The Long Range Arena classifier: blocks x + drop(mixer(norm(x))) and x + drop(glu(norm(x))) with norm a
// LayerNorm, a BatchNorm or an RMSNorm, sinusoidal positions added to the input, a mean pool over the valid
// positions and a linear head; for document pairs, [a, b, a - b, a b] -> linear -> GELU -> linear.
//
// The GLU l3(silu(l1 x + b1) * (l2 x + b2)) + b3 needs no op of its own: op_swiglu_fwd/_bwd compute
// silu(gate) * up on rows [gate | up] (silu = swish), which is what one product by the stacked [l1; l2]
// weights [2I, D] gives once op_bias_add_opnd has added [b1 | b2]; b3 is an op_bias_add on the l3 product.
// Backward: op_bias_bwd_opnd on swiglu_bwd's dgu gives [db1 | db2], op_bias_bwd on l3's dy gives db3. The
// bias ops come in operand versions because that product and its gradient are operands.

// ---- biases ----
// y[N,C] += b[C] on every row                                            (y +=)
void op_bias_add(real *y, const real *b, int64_t N, int C);
void op_bias_add_opnd(opnd *y, const real *b, int64_t N, int C);     // y an operand (the GLU's [gate | up])
// db[C] += the column sums of dy[N,C], in double, in an order fixed by N and C   (db +=)
void op_bias_bwd(real *db, const real *dy, int64_t N, int C);
void op_bias_bwd_opnd(real *db, const opnd *dy, int64_t N, int C);   // dy an operand (the GLU's dgu)

// ---- the activations of the authors' LRA layer (docs/classifier.md "The mixer layer: fla or lra") ----
// qfi: rows of stride ld holding [q pre-activation (HK) | f logits (HK) | v pre-activation (D)]. Run after
// op_gates_fwd on the same rows, these replace its q = swish(qpre) by q = s sigmoid(qpre) (s = sqrt(K) undoes
// the recurrence's 1/sqrt(K): the LRA layer reads its state unscaled) and write v = silu(vpre).
//                                                                          q [N,HK] (=), v [N,D] contiguous (=)
void op_lra_acts_fwd(real *q, real *v, const real *qfi, int64_t ld, int64_t N, int HK, int D, double s);
// Run after op_gates_bwd wrote dqfi's first 2 HK columns: its q columns become dq s sigmoid'(qpre) and its v
// columns dv silu'(vpre) (dq [N,HK], dv [N,D] contiguous); the f columns are left as they are. (dqfi's q, v =)
void op_lra_acts_bwd(real *dqfi, int64_t ldd, const real *dq, const real *dv, const real *qfi, int64_t ld,
                     int64_t N, int HK, int D, double s);

// ---- the LRA layer in the authors' bf16 numerics (--scan-dtype bf16; docs/classifier.md "bf16 scans") ----
// Under bf16 autocast the authors' layer computes its activations, gates and both scans in bfloat16 tensors:
// every element-wise result is rounded to bf16 (r: to nearest, ties to even), and their scan kernel keeps its
// state in the tensors' type, so the state is rounded at every step. These ops compute that layer between its
// [q | f | v] projection (bias added) and its LayerNorm with those roundings, over B sequences of T rows: qfi
// rows of stride ld, H heads of K, the values D = H K wide (Dv = K). Per row and head (d, e < K):
//   q, f = r(sigmoid(r(pre))) of their columns; v = r(silu(r(v pre))); b = r(lb) (0 when lb is NULL);
//   lam = r(b + r(r(1 - b) f)); x[d,e] = r(r(1 - lam[d]) v[e]);
//   h_t = r(r(lam_t h_{t-1}) + x_t) forward from h = 0 before t = 0, and likewise in reverse from t = T - 1;
//   s = r(h_fwd + h_rev); o[e] = r(the fp32 sum over d ascending of s[d,e] q[d], each term fused in).
// rnd = 0 computes the same without any rounding, in the precision of `real` (the tests' check of the algebra).
//                                                                                           o [B T, D] (=)
// K is at most 32 and divides 32.
void op_lra_bf16_fwd(real *o, const real *qfi, int64_t ld, const real *lb, int B, int T, int H, int K, int rnd);
// The backward. The scans' gradients are those of the authors' scan backward, rounded at every step:
//   ds = r(r(dout[e]) q[d]); forward G_t = r(ds_t + r(lam_{t+1} G_{t+1})) from t = T - 1 (G = 0 after it),
//   dlam_t = r(G_t h_{t-1}) (h_{-1} = 0); the reverse scan's mirrored (lam_{t-1}, h_{t+1});
//   dx = r(G_fwd + G_rev), dlam[d,e] = r(dlam_fwd + dlam_rev).
// Everything after them is exact fp32 through the roundings' places as if they were not there (in the
// authors' run these gradients are bf16 tensors too: a further relative 2^-9 left out):
//   dv[e] = sum_d dx (1 - lam[d]); dlam[d] = sum_e (dlam[d,e] - dx[d,e] v[e]); dq[d] = sum_e r(dout[e]) s[d,e];
//   then through the sigmoids and silu at their rounded values; dlb += dlam (1 - f), summed in double per
//   sequence in row order, then over the sequences in order.
// dqfi: all 2 HK + D columns of rows of stride ldd (=); dlb [HK] += (skipped when lb or dlb is NULL).
void op_lra_bf16_bwd(real *dqfi, int64_t ldd, real *dlb, const real *dout, const real *qfi, int64_t ld, const real *lb,
                     int B, int T, int H, int K, int rnd);

// ---- LayerNorm over the last dim C ----
// y = (x - mean) rstd w + b per row, var the biased mean of (x - mean)^2, rstd = (var + eps)^-1/2, both
// statistics in double, two passes. y an operand; mean[N], rstd[N] saved when not NULL.   (y =, mean =, rstd =)
// With res not NULL, x += res first, as op_rmsnorm_fwd does.                              (x += when res)
void op_layernorm_fwd(opnd *y, real *mean, real *rstd, real *x, const real *res, const real *w, const real *b,
                      int64_t N, int C, double eps);
// From the saved mean and rstd: dx = or += d/dx (acc 0 or 1, as op_rmsnorm_bwd); dw += sum_n dy xh;
// db += sum_n dy (xh = (x - mean) rstd). Each of dx, dw, db is skipped when NULL.   (dx = or +=, dw +=, db +=)
void op_layernorm_bwd(real *dx, int acc, real *dw, real *db, const real *dy, const real *x, const real *w,
                      const real *mean, const real *rstd, int64_t N, int C);

// ---- the rows of a batch that exist (RowMask, common.h) ----
// x[n * ld + j] = 0 for j < cols at every row n of the N that does not exist. rows.ext NULL: nothing.   (x = 0 there)
void op_rows_zero(real *x, int64_t ld, int cols, RowMask rows, int64_t N);

// ---- BatchNorm over the N rows (batch x length positions), per channel of C ----
// y = (x - mean) rstd w + b, y an operand. res as op_layernorm_fwd (x += res first).     (y =; x += when res)
// train 1: mean and the biased var of the rows that exist (rows; every one of the N with rows_all()), in
//   double, two passes (mean, then the mean square deviation from it); mean[C], rstd[C] saved when not NULL
//   (=); run_mean, run_var updated in place when not NULL with momentum m: run = (1 - m) run + m stat, the
//   variance unbiased (var n / (n - 1), n the rows counted), as PyTorch's BatchNorm1d. n >= 2 (dies
//   otherwise, as PyTorch refuses a single value per channel). y and x += res are written at every row.
// train 0: mean = run_mean, rstd = (run_var + eps)^-1/2 (both required); nothing else written; rows unused.
void op_batchnorm_fwd(opnd *y, real *mean, real *rstd, real *run_mean, real *run_var, real *x, const real *res,
                      const real *w, const real *b, int64_t N, int C, RowMask rows, double eps, double momentum,
                      int train);
// The training mode's backward, through the batch statistics, from the saved mean and rstd [C], the means and
// sums over the rows that exist (rows as the forward's); the others' dx is 0 (or left as it was with acc):
// dx = or += (acc) w rstd (dy - mean_n(dy) - xh mean_n(dy xh)); dw += sum_n dy xh; db += sum_n dy.
// Each of dx, dw, db is skipped when NULL.                                 (dx = or +=, dw +=, db +=)
void op_batchnorm_bwd(real *dx, int acc, real *dw, real *db, const real *dy, const real *x, const real *w,
                      const real *mean, const real *rstd, int64_t N, int C, RowMask rows);

// ---- GELU, exact: y = x Phi(x) = x erfc(-x / sqrt 2) / 2 ----
// y an operand (the head's product reads it)                                                   (y =)
void op_gelu_fwd(opnd *y, const real *x, int64_t n);
// dx = dy (Phi(x) + x phi(x)), phi the normal density; dx may equal dy                          (dx =)
void op_gelu_bwd(real *dx, const real *dy, const real *x, int64_t n);

// ---- sinusoidal positions ----
// x[b,t,d] += PE(t,d) for x [B,T,D]: PE(t, 2i) = sin(t / 10000^(2i/D)), PE(t, 2i+1) = cos(t / 10000^(2i/D)),
// computed in double and rounded once.                                                       (x +=)
// No parameters and dy/dx = I: the gradient passes through unchanged, so there is no backward op.
void op_add_positions(real *x, int B, int T, int D);

// ---- dropout, counter-based ----
// y[i] = x[i] / (1 - p), or 0 where element i is dropped: when the high 32 bits of mix64(mix64(seed) ^ i)
// (common.h) are below floor(p 2^32). No state: the mask is a function of (seed, i) alone, the same on every
// backend and thread count, so the backward and a resumed run draw it again. The caller derives the seed from
// the run's seed, the step and the call site. p in [0, 1) (checked by the caller); p = 0 is an exact copy, so
// the caller may as well skip the call. y may equal x.                                         (y =)
void op_dropout_fwd(real *y, const real *x, int64_t n, double p, uint64_t seed);
// dx = dy mask / (1 - p) with the forward's p and seed (the forward applied to dy); dx may equal dy.   (dx =)
void op_dropout_bwd(real *dx, const real *dy, int64_t n, double p, uint64_t seed);

// ---- mean pooling over the valid positions ----
// y[b,:] = the mean of x[b,t,:] over t < lens[b], x [B,T,D], y [B,D]; lens[b] in [1, T] (checked by the
// caller); lens NULL: every position (images). Sums in double.                                 (y =)
void op_pool_mean_fwd(real *y, const real *x, const int32_t *lens, int B, int T, int D);
// dx[b,t,:] = dy[b,:] / lens[b] for t < lens[b], 0 at the padded positions                     (dx =)
void op_pool_mean_bwd(real *dx, const real *dy, const int32_t *lens, int B, int T, int D);

// ---- pixels: the classifier's image input ----
// n images of gh x gw pixels of `chans` 8-bit channels in raster order (src [n, vals], vals = gh gw chans) staged
// as the model's input x [n, vals]: the value of channel ch at level v is lut[ch 256 + v] (double, rounded
// once), and pixel (y, x) of image b lands at x[b vals + yoff[y] + xoff[x] + ch] (the patch order, or the raster
// order itself). Mixing with the partner image n - 1 - b, whose value is v': mix 1 (mixup) stages
// fma(lam, v, (1 - lam) v'), mix 2 (cutmix) v' inside the box [y0, y1) x [x0, x1), mix 0 neither. On the GPU
// src, lut, yoff and xoff are device arrays.                                                    (x =)
void op_pixels_stage(real *x, const uint8_t *src, const double *lut, const int64_t *yoff, const int64_t *xoff, int n,
                     int gh, int gw, int chans, int mix, double lam, int y0, int y1, int x0, int x1);

// ---- the document-pair features (two documents encoded and pooled apart: a, b [B,D]) ----
// f[B,4D] = [a, b, a - b, a * b] per row; f an operand (the head's product reads it)            (f =)
void op_pair_features_fwd(opnd *f, const real *a, const real *b, int B, int D);
// df [B,4D] in four D-wide parts: da = df0 + df2 + df3 * b, db = df1 - df2 + df3 * a            (da =, db =)
void op_pair_features_bwd(real *da, real *db, const real *df, const real *a, const real *b, int B, int D);

#endif
