// kernels.cu: the CUDA backend of hgrn2. Every op of ops.h as cuda_* (cuda_ops.h), fp32 storage, on one stream.
// Matmuls go to cuBLAS; everything else is a plain kernel in cuda/. docs/kernels.md describes the design.
//
// Determinism: no float atomics anywhere. Reductions over rows (dW, dw, dlb, dE) run in a fixed order: cuBLAS
// for the matmuls (bit-reproducible on one stream), fixed row chunks combined in chunk order for the column sums,
// a stable radix sort followed by fixed chunks for the embedding gradient. Integer atomics (histograms) give
// the same counts whatever the order.
//
// This file is the one translation unit nvcc compiles; the op families live in cuda/, one file each, every one
// kernels first and their launchers (the extern "C" cuda_* functions) after:
//   runtime.cuh      error checks, device, stream, cuBLAS handle, tracked allocations, scratch, copies, the
//                    precision mode, launch helpers, bf16 format helpers
//   reduce.cuh       the reductions several families share: warp and block sums, deterministic column sums
//   profile.cuh      the op profile (hgrn2 bench --profile)
//   dense.cuh        matmuls on cuBLAS, operand conversion to bf16, the weights' bf16 copies
//   embedding.cuh    the token embedding: gather forward, radix-sorted deterministic backward
//   pointwise.cuh    zero, sum of squares, gates, lower bounds, SwiGLU
//   rmsnorm.cuh      RMSNorm forward (with the residual add) and backward
//   mixer_sweep.cuh  the HGRU2 recurrence, exact: register-resident sweeps over time
//   mixer_chunk.cuh  the HGRU2 recurrence in chunks on tensor cores: prep, state sweep, backward products, dq/dk/dg
//   mixer.cuh        the token mixer's ops, choosing between the two forms
//   hgrn1.cuh        HGRN1's element-wise recurrence (a chunked parallel scan) and its gated output RMSNorm
//   decode.cuh       decoding's fused ops: the products that form their input and add the residual, the step
//   decode_step.cuh  decoding's whole token step of HGRN2 in one kernel, its phases apart by grid barriers
//   attention.cuh    the Transformer++: rotary positions, causal softmax attention (flash style, fp32) and its
//                    backward, the key/value cache's append
//   classifier.cuh   softmax cross-entropy and the fused classifier of training
//   adamw.cuh        the AdamW update with the weights' bf16 copies
//   norms_cls.cuh    the classifier's per-channel ops: biases, LayerNorm, BatchNorm, their column sums in double
//   pointwise_cls.cuh  the classifier's other ops: GELU, dropout, sinusoidal positions, mean pooling, pair features
//   nccl.cuh         the collectives of a run over several GPUs (NCCL): ZeRO-1's gradients in buckets, all-gather
#include "cuda/runtime.cuh"
#include "cuda/reduce.cuh"
#include "cuda/profile.cuh"
#include "cuda/dense.cuh"
#include "cuda/embedding.cuh"
#include "cuda/pointwise.cuh"
#include "cuda/rmsnorm.cuh"
#include "cuda/mixer_sweep.cuh"
#include "cuda/mixer_chunk.cuh"
#include "cuda/mixer_small.cuh"
#include "cuda/mixer.cuh"
#include "cuda/hgrn1.cuh"
#include "cuda/decode.cuh"
#include "cuda/decode_step.cuh"
#include "cuda/attention.cuh"
#include "cuda/classifier.cuh"
#include "cuda/adamw.cuh"
#include "cuda/norms_cls.cuh"
#include "cuda/pointwise_cls.cuh"
#include "cuda/lra_bf16.cuh"
#ifdef HGRN2_NCCL
#include "cuda/nccl.cuh"
#endif
