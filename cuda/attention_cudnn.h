// cuda/attention_cudnn.h: cuDNN's fused scaled-dot-product attention (cuda/attention_cudnn.cpp, built with
// HGRN2_CUDNN) for the Transformer++ in training form, bf16 operands. The CUDA backend (cuda/attention.cuh) calls
// it; plain C so that nvcc's translation unit and the host compiler's agree.
//
// Layouts (bf16, made by attention.cuh's conversion kernels): qkv [B,T,3D] rows with q at column 0, k at D, v at
// 2D (D = H hd, head h at h hd), o and do [B,T,D], dqkv [B,T,3D] like qkv. Stats (fp32, the natural-log
// log-sum-exp of the scaled scores) are [B,T,H] as the ops' lse when *stats_bht is 0, or [B,H,T] when it is 1.
#ifndef HGRN2_ATTENTION_CUDNN_H
#define HGRN2_ATTENTION_CUDNN_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif
// The plan for causal attention at this shape (bwd 0: forward with stats, 1: backward) with the stats laid out
// [B,H,T] (stats_bht 1) or [B,T,H] (0), built on first use and kept: its index, or -1 when cuDNN does not take
// it (the caller then tries the other layout or uses the fp32 kernels; with must != 0 the reason is printed and
// the program dies instead). A forward and its backward must agree on the layout: cuDNN versions differ in
// which they take. stream: the backend's cudaStream_t.
int cudnn_sdpa_plan(int bwd, int B, int T, int H, int hd, void *stream, int must, int stats_bht);
void cudnn_sdpa_fwd(int plan, void *o, float *stats, const void *qkv);
void cudnn_sdpa_bwd(int plan, void *dqkv, const void *dout, const void *qkv, const void *o, const float *stats);
#ifdef __cplusplus
}
#endif
#endif
