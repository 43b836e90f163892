// cuda_ops.h: the CUDA backend (kernels.cu, cuda/). Every op of ops.h as cuda_* instead of op_*, with the same
// semantics (= vs +=, NULL handling, strides), on device pointers, in fp32 storage. Plain C interface, so
// hgrn2.c (C) and the tests (C++) can both call it. docs/kernels.md describes the kernels and their numerics.
//
// All ops are launched asynchronously on one stream; cuda_sync() waits for them. cuda_sumsq returns a host
// scalar and so synchronises. Every reduction is deterministic (no float atomics): the same inputs give the
// same bits on the same GPU model.
// Errors (CUDA, cuBLAS, launch) exit through die() naming file, line and the error string. Set the environment
// variable HGRN2_CUDA_SYNC=1 to synchronise after every launch, so an asynchronous fault names its kernel.
#ifndef HGRN2_CUDA_OPS_H
#define HGRN2_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>
#include "common.h"   // (AdamwPart)

#ifdef __cplusplus
extern "C" {
#endif

// ---- backend plumbing ----
void cuda_init(void);                                   // the device, a stream, the cuBLAS handle; prints nothing
void cuda_use_device(int device);                       // before cuda_init: the device (default 0; dist.c)
void *cuda_alloc(size_t bytes, const char *what);       // dies with the sizes and what to reduce on failure
void cuda_free(void *p);                                // NULL is fine
void cuda_to_device(void *dst, const void *src, size_t bytes);   // both wait for the copy to finish
void cuda_to_host(void *dst, const void *src, size_t bytes);
void cuda_to_device_async(void *dst, const void *src, size_t bytes);   // queued, not waited for (runtime.cuh)
void *cuda_host_alloc(size_t bytes);                    // page-locked host memory, NULL when refused
int cuda_host_free(void *p);                            // 0 when p did not come from cuda_host_alloc
int cuda_host_is_pinned(const void *p);                 // p came from cuda_host_alloc
void cuda_to_host_async(void *dst, const void *src, size_t bytes);   // queued, not waited for; dst page-locked
void cuda_copy(void *dst, const void *src, size_t bytes);        // device -> device, queued on the stream
void cuda_sync(void);
// CUDA graphs: the ops queued between cuda_graph_begin and cuda_graph_end are recorded, not run, and
// cuda_graph_launch replays them in one launch: the same kernels with the same arguments on the same memory.
// Nothing recorded may allocate, free or wait (the caller runs the ops once outside a capture first, so that
// every buffer and cached bf16 weight exists). cuda_graph_end returns NULL if the capture failed, and the
// caller then runs its ops itself. cuda_graph_begin returns 0, recording nothing, under HGRN2_CUDA_SYNC (a
// wait after every launch cannot be recorded).
int cuda_graph_begin(void);
void *cuda_graph_end(void);
void cuda_graph_launch(void *graph);
void cuda_graph_free(void *graph);                      // NULL is fine
// Decoding's whole token step in one kernel (decode_step.cuh): 1 when it ran, 0 when the step's shapes, the
// precision (bf16 operands) or HGRN2_DECODE_KERNEL leave it to the ops; the same bits as the ops. It takes
// batches of 2 to 4, and batch 1 where every layer's product holds at most 16 MB of weights (44M, 162M; not
// 1.13B); HGRN2_DECODE_KERNEL=1 batch 1 always, =0 none.
int cuda_decode_step(const DecodeStep *d);
void cuda_set_decode_kernel(int on);   // tests: 0 none, 1 batches 1 to 4, 2 the default, -1 as HGRN2_DECODE_KERNEL says
// Grows by one at every free and every bf16 weight copy that goes stale: a graph recorded at another value may
// read memory that has changed hands or old weights, and must be recorded again.
uint64_t cuda_mem_epoch(void);
const char *cuda_device_name(void);
size_t cuda_peak_bytes(void);                           // peak of the bytes allocated through cuda_alloc
// Matmul precision: 0 = exact fp32 (CUBLAS_COMPUTE_32F), 1 = TF32 tensor cores (~1e-3 relative), 2 = bf16
// tensor cores (bf16 operands, fp32 accumulation; ~1e-2 relative). Storage is fp32 in every mode, except
// operands (ops.h), which are bf16 in mode 2: set the mode before allocating them. The default is the caller's:
// hgrn2 sets its --precision (bf16 unless told otherwise) before any op. The backend starts in mode 2 only so
// that a call made before that behaves as the program's default.
void cuda_set_gemm_precision(int mode);
int cuda_get_gemm_precision(void);

// Op profile: cuda_prof_mark before each op (by section and op name), cuda_prof_step after a step (waits for
// it), cuda_prof_print: the GPU time per step of each (section, op), largest first (and a fresh start).
void cuda_prof_mark(const char *section, const char *op);
void cuda_prof_step(void);
void cuda_prof_print(int steps);

// ---- operands (ops.h): bf16 under --precision bf16 (gemm mode 2), fp32 otherwise ----
size_t cuda_opnd_size(void);                            // bytes per operand value in the current mode
void cuda_to_opnd(void *y, const float *x, int64_t n);
void cuda_to_opnd_cols(void *y, int64_t ldy, const float *x, int64_t ldx, int64_t N, int C);

// ---- dense ----
// In bf16, products of at most 8 rows (decoding) run on a kernel of their own that streams the weights (dense.cuh);
// 0 hands them to cuBLAS like the rest, 1 back, -1 as HGRN2_GEMV says (the default: on unless it is 0).
void cuda_set_gemv(int on);
// Decoding's small products and step start as programmatic dependents of the kernel before them (sm_90 and
// later; cuda/runtime.cuh): 0 launches them plainly, 1 back, -1 as HGRN2_PDL says (the default: on unless it is 0).
void cuda_set_pdl(int on);
void cuda_matmul_fwd(float *y, const void *x, const float *W, int64_t N, int I, int O);
void cuda_matmul_fwd_opnd(void *y, const void *x, const float *W, int64_t N, int I, int O);
void cuda_matmul_bwd(float *dx, float *dW, const void *dy, const void *x, const float *W, int64_t N, int I, int O);
// Decoding's fused products (ops.h): in bf16, up to 8 rows whose input fits in shared memory run as one kernel
// that forms the input in its prologue (the RMSNorm or SwiGLU) and adds res in its epilogue (dense.cuh); the rest
// run the ops one by one, with tmp for the input.
void cuda_matmul_fused_fwd(void *y, int y_opnd, const void *x, int pro, const float *nw, double eps, const float *W,
                           const float *res, void *tmp, int64_t N, int I, int O);

// ---- embedding ----
void cuda_embed_fwd(float *x, const int32_t *ids, const float *E, int64_t N, int D);
void cuda_embed_bwd(float *dE, const float *dx, const int32_t *ids, int64_t N, int D, int64_t V);

// ---- elementwise ----
void cuda_zero(float *y, int64_t n);
double cuda_sumsq(const float *a, int64_t n);           // synchronises
void cuda_sumsq_into(double *out, const float *a, int64_t n);   // the same sum into *out on the device; no wait
// *flag (on the device) = 1 when a value x[i] of a row with tgt[i] >= 0 (every row where tgt is NULL) is not
// finite; left as it is otherwise
void cuda_flag_nonfinite(int32_t *flag, const float *x, const int32_t *tgt, int64_t n);

// ---- RMSNorm ----
void cuda_rmsnorm_fwd(void *y, float *rstd, float *x, const float *res, const float *w, int64_t N, int C, double eps);
void cuda_rmsnorm_bwd(float *dx, int acc, float *dw, const float *dy, const float *x, const float *w,
                      const float *rstd, int64_t N, int C, double eps);
void cuda_rmsnorm_bwd_opnd(float *dx, int acc, void *dxo, float *dw, const float *dy, const float *x, const float *w,
                           const float *rstd, int64_t N, int C, double eps);
void cuda_rmsnorm_scale(void *y, const float *x, const float *rstd, const float *w, int64_t N, int C);

// ---- HGRN1 (cuda/hgrn1.cuh) ----
void cuda_hgrn_fwd(float *o, float *hT, const float *q, const float *k, const float *g, const float *h0, int B, int T,
                   int D, int reverse, int acc);
void cuda_hgrn_bwd(float *dq, float *dk, float *dg, const float *dout, const float *q, const float *k, const float *g,
                   const float *o, int B, int T, int D, int reverse, int acc);
void cuda_rmsnorm_gated_fwd(void *y, float *rstd, const float *x, const float *z, int64_t ldz, const float *w,
                            int64_t N, int C, double eps);
void cuda_rmsnorm_gated_bwd(float *dx, float *dz, int64_t lddz, float *dw, const float *dy, const float *x,
                            const float *z, int64_t ldz, const float *w, const float *rstd, int64_t N, int C,
                            double eps);

// ---- gates ----
void cuda_gates_fwd(float *q, float *k, float *g, const float *qf, int64_t ldqf, const float *lb, int64_t N, int HK);
void cuda_gates_bwd(float *dqf, int64_t lddqf, float *dlb, const float *dq, const float *dk, const float *dg,
                    const float *qf, int64_t ldqf, const float *lb, int64_t N, int HK);
void cuda_gates_bwd_opnd(void *dqf, int64_t lddqf, float *dlb, const float *dq, const float *dk, const float *dg,
                         const float *qf, int64_t ldqf, const float *lb, int64_t N, int HK);

// ---- lower bounds ----
void cuda_lower_bounds_fwd(float *lb, const float *P, int L, int C);
void cuda_lower_bounds_bwd(float *dP, const float *dlb, const float *P, int L, int C);

// ---- the HGRU2 recurrence ----
// chunk = 0: the exact recurrence in fp32 (register-resident sweeps over time). chunk > 0 with K = Dv = 64 or
// 128 on a compute capability 8+ GPU: the chunked form on tensor cores (chunks of 64 whatever chunk says;
// bf16 operands, fp32 state and accumulation; ~1e-2 relative). Other shapes fall back to the exact sweeps.
// cuda_hgru_tensor_cores says which one a call of that shape runs. reverse and acc as in ops.h, on both forms:
// the reverse scan reads rows backwards in place; acc adds in the final stores (no float atomics). With acc the
// backward takes [B,T,H,K] floats of scratch for the exact form, two such for the chunked one.
void cuda_hgru_fwd(float *o, float *ST, const float *q, const float *k, const float *g, const float *v, int64_t ldv,
                   const float *S0, int B, int T, int H, int K, int Dv, int chunk, int reverse, int acc);
void cuda_hgru_bwd(float *dq, float *dk, float *dg, float *dv, int64_t lddv, const float *dout,
                   const float *q, const float *k, const float *g, const float *v, int64_t ldv,
                   int B, int T, int H, int K, int Dv, int chunk, int reverse, int acc);
int cuda_hgru_tensor_cores(int B, int T, int H, int K, int Dv, int chunk);
// Decoding's step with its gates (ops.h): one kernel that computes a head's gates in shared memory and then
// steps its state (cuda/decode.cuh); q, k and g are not written.
void cuda_hgru_step_fwd(float *o, float *S, float *q, float *k, float *g, const float *qfi, int64_t ld, const float *lb,
                        int B, int H, int K, int Dv);
// From 128 (sequence, head) pairs up, with Dv a multiple of 4, the step runs a kernel that moves four columns a
// thread (decode.cuh); 0 keeps those on the kernel of one column a thread, 1 back (tests).
void cuda_set_step4(int on);
// The columns of images read in place (ops.h), for small heads only (K = Dv in 1, 2, 4: the one-thread-per-head
// kernels with a stride of gw rows; the exact recurrence whatever chunk says); other shapes die.
// cuda_hgru_cols_direct(K, Dv) is 1 for those shapes while HGRU_COLS_DIRECT (cuda/mixer.cuh) is on (the
// default); other shapes, or a build with it off, gather the columns instead.
void cuda_hgru_cols_fwd(float *o, const float *q, const float *k, const float *g, const float *v, int64_t ldv,
                        int S, int gh, int gw, int H, int K, int Dv, int chunk, int reverse, int acc);
void cuda_hgru_cols_bwd(float *dq, float *dk, float *dg, float *dv, int64_t lddv, const float *dout,
                        const float *q, const float *k, const float *g, const float *v, int64_t ldv,
                        int S, int gh, int gw, int H, int K, int Dv, int chunk, int reverse, int acc);
int cuda_hgru_cols_direct(int K, int Dv);
// Small heads (K = Dv <= 4) over sequences of 128 steps or more run in chunks of time when the heads are too few
// to fill the card (mixer_small.cuh); for the tests, mode 1 chunks them always, 0 never, -1 (the default) decides.
void cuda_hgru_small_chunks(int mode);
void cuda_embed_small_table(int mode);   // the embedding backward's table for small vocabularies: -1 where it fits, 0 never

// ---- Transformer++ (cuda/attention.cuh): plain fp32 kernels; heads of at most CUDA_ATTENTION_MAX_HD values ----
// The rotation's angles, cos and sin in double as on the CPU. The attention is flash style (online softmax,
// keys streamed through shared memory, no T x T scratch); its backward recomputes p from lse in three kernels
// (delta = do . o, then dq per query tile, dk and dv per key tile) with no atomics: deterministic.
#define CUDA_ATTENTION_MAX_HD 256
void cuda_rope_fwd(float *x, int64_t ldx, int B, int T, int H, int hd, int pos0, double theta);
void cuda_rope_bwd(float *dx, int64_t lddx, int B, int T, int H, int hd, double theta);
void cuda_attention_fwd(float *o, float *lse, const float *q, int64_t ldq, const float *k, const float *v,
                        int64_t ldkv, int64_t skv, int B, int Tq, int Tk, int H, int hd);
void cuda_attention_bwd(float *dq, float *dk, float *dv, int64_t ldd, const float *dout, const float *q,
                        const float *k, const float *v, int64_t ld, const float *o, const float *lse, int B, int T,
                        int H, int hd);
void cuda_kv_append(float *cache, int64_t ldc, int ctx, int pos0, const float *x, int64_t ldx, int B, int T, int C);
// cuDNN's fused attention (a build with cuDNN: cuda/attention_cudnn.cpp) takes the training form (Tq = Tk) under
// --precision bf16 wherever cuDNN supports the shape forward and backward: bf16 q, k, v, o and do, fp32 softmax
// and accumulation, outputs converted back to fp32. The environment variable HGRN2_ATTENTION=kernel keeps the
// fp32 kernels everywhere, =cudnn takes cuDNN in every precision (dying where cuDNN cannot); cuda_attention_path
// overrides it (-1 auto, 0 kernels, 1 cuDNN). cuda_attention_uses_cudnn: whether attention at this shape takes
// cuDNN now (building its plans).
int cuda_attention_cudnn_built(void);
void cuda_attention_path(int mode);
int cuda_attention_uses_cudnn(int B, int Tq, int Tk, int H, int hd);

// ---- SwiGLU ----
void cuda_swiglu_fwd(void *h, const void *gu, int64_t N, int I);
void cuda_swiglu_bwd(void *dgu, const float *dh, const void *gu, int64_t N, int I);

// ---- softmax cross-entropy ----
void cuda_xent_fwd(float *losses, const float *logits, const int32_t *targets, int64_t N, int V);
void cuda_xent_bwd(float *dlogits, const float *logits, const int32_t *targets, float scale, int64_t N, int V);
void cuda_argmax_rows(int32_t *best, const float *logits, int64_t N, int V);
void cuda_xent_soft_fwd(float *losses, const float *logits, const int32_t *ta, const int32_t *tb, const float *lam,
                        float eps, int64_t N, int V);
void cuda_xent_soft_bwd(float *dlogits, const float *logits, const int32_t *ta, const int32_t *tb, const float *lam,
                        float eps, float scale, int64_t N, int V);

// The classifier in training (ops.h): the loss and G come from one pass per row, and under --precision bf16
// G is only ever written in bf16 (the products' operand).
void cuda_classifier_train(float *losses, float *dx, float *dW, float *logits, const void *h, const float *W,
                           const int32_t *targets, float scale, int64_t N, int D, int V);
// Its pass over the logits reads 16-byte aligned rows in float4s, several loads ahead (cuda/classifier.cuh); 0 takes
// them one value at a time, as it does rows that are not aligned (tests and timings), 1 back, -1 as HGRN2_XENT_VEC
// says (the default: on unless it is 0).
void cuda_set_xent_vec(int on);

// ---- AdamW ----
// In fp32 arithmetic (within ~1e-7 of op_adamw's double). The bf16 copy that --precision bf16 keeps of the
// weights it updates is rewritten in the same pass.
void cuda_adamw(float *p, const float *grad, float *m, float *v, int64_t n, double lr, double beta1, double beta2,
                double eps, double wd, double grad_scale, int64_t step);
// Every part (common.h) in one launch (cuda_adamw is the one-part case), each element as cuda_adamw computes it.
void cuda_adamw_multi(const AdamwPart *parts, int nparts, double lr, double beta1, double beta2, double eps,
                      double grad_scale, int64_t step);
// The same with lr, the bias corrections, the clipping scale and the skip of a failed step taken from ctl on the
// device (common.h's StepCtl), so that the launch can be recorded once and replayed every step.
void cuda_adamw_multi_ctl(const AdamwPart *parts, int nparts, double beta1, double beta2, double eps,
                          const StepCtl *ctl);

// ---- the classification model (ops.h; the kernels in cuda/norms_cls.cuh and cuda/pointwise_cls.cuh) ----
// Column sums over rows (bias and norm gradients, BatchNorm statistics) and the pooling sums are in double, in
// fixed chunks added in a fixed order. The dropout mask is ops.h's hash of (seed, i): the same bits as the CPU.
void cuda_bias_add(float *y, const float *b, int64_t N, int C);
void cuda_bias_add_opnd(void *y, const float *b, int64_t N, int C);
void cuda_bias_bwd(float *db, const float *dy, int64_t N, int C);
void cuda_bias_bwd_opnd(float *db, const void *dy, int64_t N, int C);
void cuda_layernorm_fwd(void *y, float *mean, float *rstd, float *x, const float *res, const float *w, const float *b,
                        int64_t N, int C, double eps);
void cuda_layernorm_bwd(float *dx, int acc, float *dw, float *db, const float *dy, const float *x, const float *w,
                        const float *mean, const float *rstd, int64_t N, int C);
void cuda_batchnorm_fwd(void *y, float *mean, float *rstd, float *run_mean, float *run_var, float *x, const float *res,
                        const float *w, const float *b, int64_t N, int C, RowMask rows, double eps, double momentum,
                        int train);
void cuda_batchnorm_bwd(float *dx, int acc, float *dw, float *db, const float *dy, const float *x, const float *w,
                        const float *mean, const float *rstd, int64_t N, int C, RowMask rows);
void cuda_rows_zero(float *x, int64_t ld, int cols, RowMask rows, int64_t N);
void cuda_lra_acts_fwd(float *q, float *v, const float *qfi, int64_t ld, int64_t N, int HK, int D, double s);
void cuda_lra_acts_bwd(float *dqfi, int64_t ldd, const float *dq, const float *dv, const float *qfi, int64_t ld,
                       int64_t N, int HK, int D, double s);
void cuda_lra_bf16_fwd(float *o, const float *qfi, int64_t ld, const float *lb, int B, int T, int H, int K, int rnd);
void cuda_lra_bf16_bwd(float *dqfi, int64_t ldd, float *dlb, const float *dout, const float *qfi, int64_t ld,
                       const float *lb, int B, int T, int H, int K, int rnd);
void cuda_gelu_fwd(void *y, const float *x, int64_t n);
void cuda_gelu_bwd(float *dx, const float *dy, const float *x, int64_t n);
void cuda_add_positions(float *x, int B, int T, int D);
void cuda_dropout_fwd(float *y, const float *x, int64_t n, double p, uint64_t seed);
void cuda_dropout_bwd(float *dx, const float *dy, int64_t n, double p, uint64_t seed);
void cuda_pool_mean_fwd(float *y, const float *x, const int32_t *lens, int B, int T, int D);   // lens on the device
void cuda_pool_mean_bwd(float *dx, const float *dy, const int32_t *lens, int B, int T, int D);
void cuda_pixels_stage(float *x, const uint8_t *src, const double *lut, const int64_t *yoff, const int64_t *xoff,
                       int n, int gh, int gw, int chans, int mix, double lam, int y0, int y1, int x0, int x1);
void cuda_pair_features_fwd(void *f, const float *a, const float *b, int B, int D);
void cuda_pair_features_bwd(float *da, float *db, const float *df, const float *a, const float *b, int B, int D);

// ---- NCCL: the collectives of a run of several processes, one GPU each (cuda/nccl.cuh; built when the
// Makefile finds nccl.h, which defines HGRN2_NCCL). In stream order with the ops; the host ones synchronise.
#define CUDA_NCCL_ID_BYTES 128                          // ncclUniqueId: rank 0 makes it, every rank needs it
void cuda_nccl_unique_id(void *id);
void cuda_nccl_init(const void *id, int rank, int world);   // after cuda_init's device is chosen
void cuda_nccl_finish(void);
void cuda_nccl_allreduce_host(double *x, int n, int max);   // x on the host: the sum (max 0) or the maximum
// The gradients' reduction in buckets (dist.h), on NCCL's own stream. x[world x part]: the bucket [lo, hi),
// which the ops enqueued so far make final, summed piece by piece into the rank of each block the bucket
// touches, in place there, in fp32 or, with bf16_wire, summed in bf16 and widened back; the other ranks'
// pieces are left undefined. The ops' stream goes on meanwhile; cuda_nccl_reduce_wait makes it wait for
// every bucket sent so far.
void cuda_nccl_reduce_bucket(float *x, int64_t lo, int64_t hi, int64_t part, int bf16_wire);
void cuda_nccl_reduce_wait(void);
void cuda_nccl_all_gather(float *x, int64_t part);          // every rank's block `rank` to every rank, in place
// Rank 0 receives every rank's part_buf[part] into all (host, world x part); `all` is unused elsewhere.
void cuda_nccl_gather_host(const float *part_buf, int64_t part, float *all);

#ifdef __cplusplus
}
#endif

#endif
