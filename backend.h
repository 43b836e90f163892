// backend.h: the seam between the model and its two backends: ops through OP(), memory, device choice.
// Every op runs on the CPU (cpu.c) or, built with nvcc and chosen with --device cuda, on the GPU (kernels.cu).
// Tensors of the model live where their backend computes; the few host/device crossings (token ids in,
// losses and logits out, checkpoints) go through the dev_* functions below.
#ifndef HGRN2_BACKEND_H
#define HGRN2_BACKEND_H

#include "common.h"
#include "ops.h"

// OP(matmul_fwd, y, x, W, N, I, O) calls op_matmul_fwd (cpu.c, declared in ops.h) or, when the GPU was
// selected, cuda_matmul_fwd (kernels.cu, declared in cuda_ops.h) with the same arguments: both backends
// implement every op of ops.h under the same name and calling convention. Under bench --profile every op
// is also timed and charged to the section of the model last named by SECTION.
#if defined(HGRN2_CUDA) && !defined(HGRN2_F64)
#define USE_CUDA 1
#include "cuda_ops.h"
#define OP(name, ...) \
    ((g_prof ? cuda_prof_mark(g_section, #name) : (void)0), g_gpu ? cuda_##name(__VA_ARGS__) : op_##name(__VA_ARGS__))
#else
#define USE_CUDA 0
#define OP(name, ...) op_##name(__VA_ARGS__)
#endif

extern int g_gpu;                   // 1 once select_device chose the GPU
extern int g_prof;                  // hgrn2 bench --profile (GPU): every op is timed ...
extern const char *g_section;       // ... and charged to the part of the model set by SECTION
#define SECTION(name) (g_section = (name))

// The token mixer's form on the CPU: 0 runs the plain recurrence, C > 0 the chunked form with chunks of C
// steps. Both compute the same function (tests/test_ops.c). On the CPU the plain recurrence is the faster
// (about 12 against 17 us per token and head at K = Dv = 128); the chunked form is what tensor-core kernels
// compute, and the tests set this to check it on the CPU.
extern int g_hgru_chunk;
int mixer_chunk(int T);             // the form a forward or backward over T steps uses

// Memory of the selected backend (`what` names it in the message when it runs out). dev_alloc's bytes are
// zero on the CPU only; dev_zeros clears them on both.
void *dev_alloc(size_t bytes, const char *what);
real *dev_zeros(int64_t n, const char *what);           // n values of `real`, all 0
void dev_free(void *p);
void dev_upload(void *dst, const void *src, size_t bytes);      // host -> backend
void dev_download(void *dst, const void *src, size_t bytes);    // backend -> host
// Host buffers that a forward fills and uploads every batch: page-locked on the GPU (ordinary memory where the
// driver refuses), so that dev_upload_async's copy neither stages nor waits. dev_host_free takes NULL too.
void *dev_host_alloc(size_t bytes);
void dev_host_free(void *p);
// host -> backend, queued behind the ops launched so far as an op is: the host does not wait for it. src must
// stay as it is until the host next waits on the backend (dev_download, dev_sync), which every forward does
// before it returns.
void dev_upload_async(void *dst, const void *src, size_t bytes);
// backend -> host, queued as an op is: dst (from dev_host_alloc) holds the bytes once the host next waits
void dev_download_async(void *dst, const void *src, size_t bytes);
int dev_host_is_pinned(const void *p);                  // p is page-locked (dev_host_alloc on the GPU)
void dev_copy(void *dst, const void *src, size_t bytes);        // backend -> backend (in the order of the ops)
void dev_sync(void);                                    // waits for every op launched so far
// CUDA graphs of a sequence of ops (cuda_ops.h says what may be recorded): dev_graph_begin returns 0 when it
// cannot record (on the CPU, which has none, or under HGRN2_CUDA_SYNC), dev_graph_end NULL when the recording
// failed; the caller then runs the ops itself.
int dev_graph_begin(void);
void *dev_graph_end(void);
void dev_graph_launch(void *graph);
void dev_graph_free(void *graph);                      // NULL is fine
// Decoding's whole token step of HGRN2 (common.h's DecodeStep) in one launch: 1 when the backend ran it (the
// GPU, for the shapes it takes), 0 when the caller runs the ops, on the CPU always. The same results as the ops.
int dev_decode_step(const DecodeStep *d);
// The GPU's training step queued without a wait (train.c, common.h's StepCtl; the GPU only: they die on the CPU):
// the sum of squares of x into *ss on the device, *flag = 1 where a loss (of a row with a target) is not finite,
// and AdamW over parts with lr, scale and skip from ctl on the device.
void dev_sumsq_into(double *ss, const real *x, int64_t n);
void dev_flag_nonfinite(int32_t *flag, const real *losses, const int32_t *tgt, int64_t n);
void dev_adamw_ctl(const AdamwPart *parts, int nparts, double beta1, double beta2, double eps, const StepCtl *ctl);
uint64_t dev_mem_epoch(void);                           // cuda_mem_epoch (cuda_ops.h); 0 on the CPU
double dev_peak_mib(void);                              // the GPU's peak allocation; 0 on the CPU

// Operands (ops.h) in the backend's format: bytes per value, the address of value i, and a real tensor as an
// operand (itself where the formats agree, else converted into the scratch `to`).
size_t opnd_size(void);
opnd *opnd_at(const opnd *p, int64_t i);
const opnd *as_opnd(opnd *to, const real *x, int64_t n);
// Ops that write operands write `real` from opnd_real_begin to opnd_real_end (a GPU computing in bf16 switches its
// operand format to fp32 in between; ops run in launch order, so nothing else sees the switch): for a norm whose
// output is not an operand. begin returns what end restores.
int opnd_real_begin(void);
void opnd_real_end(int saved);

// What the GPU's tensor cores compute in (--precision); the values are cuda_set_gemm_precision's modes.
// Storage is fp32 in every mode.
//   bf16 (the default): bf16 GEMMs and the chunked token mixer on tensor cores (bf16 operands, fp32 accumulation)
//   tf32: TF32 GEMMs, the chunked token mixer as in bf16
//   fp32: exact fp32 GEMMs and the plain recurrence (slow; for checking)
enum { PRECISION_FP32, PRECISION_TF32, PRECISION_BF16, NPRECISIONS };
extern const char *const PRECISION_NAMES[NPRECISIONS];

// Runs every op from now on on the CPU (gpu 0) or on the GPU with the given precision (gpu 1). Dies when
// the GPU is asked for and this hgrn2 was built without the CUDA backend.
void select_device(int gpu, int precision);
const char *device_name(void);      // "cpu", or the GPU's name and precision

// The selected device's peak dense bf16 throughput in FLOP/s, the denominator of MFU, and in *label what it
// is. 0 (and no label) on the CPU and on GPUs this table does not know: then no MFU is printed.
double dev_peak_flops(const char **label);

#endif
