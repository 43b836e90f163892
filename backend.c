// backend.c: the backend's globals, its memory and copies, operands, and the choice of device.
#include "backend.h"

int g_gpu = 0;
int g_prof = 0;
const char *g_section = "";
int g_hgru_chunk = 0;

const char *const PRECISION_NAMES[NPRECISIONS] = {"fp32", "tf32", "bf16"};

int mixer_chunk(int T) {
    if (T <= 1) return 0;
#if USE_CUDA
    if (g_gpu) return cuda_get_gemm_precision() != PRECISION_FP32 ? 64 : 0;   // tensor cores unless fp32
#endif
    return g_hgru_chunk;
}

int opnd_real_begin(void) {
#if USE_CUDA
    if (g_gpu && opnd_size() != sizeof(real)) {
        const int prec = cuda_get_gemm_precision();
        cuda_set_gemm_precision(PRECISION_TF32);
        return prec;
    }
#endif
    return -1;
}
void opnd_real_end(int saved) {
#if USE_CUDA
    if (saved >= 0) cuda_set_gemm_precision(saved);
#endif
    (void)saved;
}

void *dev_alloc(size_t bytes, const char *what) {
#if USE_CUDA
    if (g_gpu) return cuda_alloc(bytes, what);
#endif
    (void)what;
    return xcalloc(1, bytes);
}
real *dev_zeros(int64_t n, const char *what) {
    real *p = dev_alloc((size_t)n * sizeof(real), what);
    OP(zero, p, n);
    return p;
}
void dev_free(void *p) {
#if USE_CUDA
    if (g_gpu) { cuda_free(p); return; }
#endif
    free(p);
}
void dev_upload(void *dst, const void *src, size_t bytes) {
#if USE_CUDA
    if (g_gpu) { cuda_to_device(dst, src, bytes); return; }
#endif
    memcpy(dst, src, bytes);
}
void dev_upload_async(void *dst, const void *src, size_t bytes) {
#if USE_CUDA
    if (g_gpu) { cuda_to_device_async(dst, src, bytes); return; }
#endif
    memcpy(dst, src, bytes);
}
void *dev_host_alloc(size_t bytes) {
#if USE_CUDA
    if (g_gpu) {
        void *p = cuda_host_alloc(bytes);
        if (p) return p;
    }
#endif
    return xmalloc(bytes ? bytes : 1);
}
void dev_host_free(void *p) {
#if USE_CUDA
    if (cuda_host_free(p)) return;
#endif
    free(p);
}
void dev_download(void *dst, const void *src, size_t bytes) {
#if USE_CUDA
    if (g_gpu) { cuda_to_host(dst, src, bytes); return; }
#endif
    memcpy(dst, src, bytes);
}
void dev_download_async(void *dst, const void *src, size_t bytes) {
#if USE_CUDA
    if (g_gpu) { cuda_to_host_async(dst, src, bytes); return; }
#endif
    memcpy(dst, src, bytes);
}
int dev_host_is_pinned(const void *p) {
#if USE_CUDA
    if (g_gpu) return cuda_host_is_pinned(p);
#endif
    (void)p;
    return 0;
}
void dev_sumsq_into(double *ss, const real *x, int64_t n) {
#if USE_CUDA
    if (g_gpu) { cuda_sumsq_into(ss, x, n); return; }
#endif
    (void)ss; (void)x; (void)n;
    die("internal error: dev_sumsq_into without the GPU");
}
void dev_flag_nonfinite(int32_t *flag, const real *losses, const int32_t *tgt, int64_t n) {
#if USE_CUDA
    if (g_gpu) { cuda_flag_nonfinite(flag, losses, tgt, n); return; }
#endif
    (void)flag; (void)losses; (void)tgt; (void)n;
    die("internal error: dev_flag_nonfinite without the GPU");
}
void dev_adamw_ctl(const AdamwPart *parts, int nparts, double beta1, double beta2, double eps, const StepCtl *ctl) {
#if USE_CUDA
    if (g_gpu) { cuda_adamw_multi_ctl(parts, nparts, beta1, beta2, eps, ctl); return; }
#endif
    (void)parts; (void)nparts; (void)beta1; (void)beta2; (void)eps; (void)ctl;
    die("internal error: dev_adamw_ctl without the GPU");
}
void dev_copy(void *dst, const void *src, size_t bytes) {
#if USE_CUDA
    if (g_gpu) { cuda_copy(dst, src, bytes); return; }
#endif
    memmove(dst, src, bytes);
}
void dev_sync(void) {
#if USE_CUDA
    if (g_gpu) cuda_sync();
#endif
}
int dev_graph_begin(void) {
#if USE_CUDA
    if (g_gpu) return cuda_graph_begin();
#endif
    return 0;
}
void *dev_graph_end(void) {
#if USE_CUDA
    if (g_gpu) return cuda_graph_end();
#endif
    return NULL;
}
void dev_graph_launch(void *graph) {
#if USE_CUDA
    if (g_gpu && graph) { cuda_graph_launch(graph); return; }
#endif
    if (graph) die("internal error: a CUDA graph launched without the GPU");
}
void dev_graph_free(void *graph) {
#if USE_CUDA
    if (graph) cuda_graph_free(graph);
#endif
    (void)graph;
}
int dev_decode_step(const DecodeStep *d) {
#if USE_CUDA
    if (g_gpu) return cuda_decode_step(d);
#endif
    (void)d;
    return 0;
}
uint64_t dev_mem_epoch(void) {
#if USE_CUDA
    if (g_gpu) return cuda_mem_epoch();
#endif
    return 0;
}
double dev_peak_mib(void) {
#if USE_CUDA
    if (g_gpu) return (double)cuda_peak_bytes() / (1024.0 * 1024.0);
#endif
    return 0;
}

size_t opnd_size(void) {
#if USE_CUDA
    if (g_gpu) return cuda_opnd_size();
#endif
    return sizeof(real);
}
opnd *opnd_at(const opnd *p, int64_t i) { return (char *)p + i * (int64_t)opnd_size(); }
const opnd *as_opnd(opnd *to, const real *x, int64_t n) {
    if (opnd_size() == sizeof(real)) return x;
    OP(to_opnd, to, x, n);
    return to;
}

void select_device(int gpu, int precision) {
    if (!gpu) return;
#if USE_CUDA
    cuda_init();
    cuda_set_gemm_precision(precision);
    g_gpu = 1;
#else
    (void)precision;
    die("this hgrn2 was built without the CUDA backend (no nvcc at build time); use --device cpu");
#endif
}

const char *device_name(void) {
#if USE_CUDA
    if (g_gpu) {
        static char buf[300];
        snprintf(buf, sizeof buf, "%s, %s", cuda_device_name(), PRECISION_NAMES[cuda_get_gemm_precision()]);
        return buf;
    }
#endif
    return "cpu";
}

// Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's data sheets, matched on the name the driver
// reports. MFU is taken against this peak whatever --precision says, so the modes compare on one scale.
double dev_peak_flops(const char **label) {
    static const struct { const char *name_has, *label; double flops; } PEAKS[] = {
        {"H100 PCIe", "dense bf16 peak of an H100 PCIe", 756e12},
        {"H100", "dense bf16 peak of an H100 or H200 SXM", 989e12},
        {"H200", "dense bf16 peak of an H100 or H200 SXM", 989e12},
        {"A100", "dense bf16 peak of an A100", 312e12},
    };
    if (label) *label = NULL;
#if USE_CUDA
    if (g_gpu) {
        const char *name = cuda_device_name();
        for (size_t i = 0; i < sizeof PEAKS / sizeof PEAKS[0]; i++)
            if (strstr(name, PEAKS[i].name_has)) {
                if (label) *label = PEAKS[i].label;
                return PEAKS[i].flops;
            }
    }
#else
    (void)PEAKS;
#endif
    return 0;
}
