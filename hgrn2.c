// hgrn2.c: train, evaluate and sample HGRN2 language models ("HGRN2: Gated Linear RNNs with State Expansion",
// Qin et al., 2024) in the parameterisation of flash-linear-attention. The model is docs/model.md.
// Read top to bottom: configuration, the parameter table, the forward and backward passes, AdamW,
// checkpoints, then the subcommands (train, eval, sample, bench) and main.
#include <getopt.h>
#include <math.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <signal.h>
#include <omp.h>

#include "common.h"
#include "ops.h"
#include "data.h"
#include "tokenizer.h"
#include "hf.h"

// ----------------------------------------------------------------------------------------------------------
// Backends: every op runs on the CPU (cpu.c) or, built with nvcc and chosen with --device cuda, on the GPU
// (kernels.cu), through OP(name, ...). Tensors of the model live where their backend computes; the few
// host/device crossings (token ids in, losses and logits out, checkpoints) go through dev_* below.
#if defined(HGRN2_CUDA) && !defined(HGRN2_F64)
#define USE_CUDA 1
#include "cuda_ops.h"
#define OP(name, ...) \
    ((g_prof ? cuda_prof_mark(g_section, #name) : (void)0), g_gpu ? cuda_##name(__VA_ARGS__) : op_##name(__VA_ARGS__))
#else
#define USE_CUDA 0
#define OP(name, ...) op_##name(__VA_ARGS__)
#endif
static int g_gpu = 0;
static int g_prof = 0;                      // hgrn2 bench --profile (GPU): every op is timed ...
static const char *g_section = "";          // ... and charged to the part of the model set by SECTION
#define SECTION(name) (g_section = (name))

static void *dev_alloc(size_t bytes, const char *what) {
#if USE_CUDA
    if (g_gpu) return cuda_alloc(bytes, what);
#endif
    (void)what;
    return xcalloc(1, bytes);
}
static void dev_free(void *p) {
#if USE_CUDA
    if (g_gpu) { cuda_free(p); return; }
#endif
    free(p);
}
static void dev_upload(void *dst, const void *src, size_t bytes) {
#if USE_CUDA
    if (g_gpu) { cuda_to_device(dst, src, bytes); return; }
#endif
    memcpy(dst, src, bytes);
}
static void dev_sync(void) {
#if USE_CUDA
    if (g_gpu) cuda_sync();
#endif
}
static double dev_peak_mib(void) {
#if USE_CUDA
    if (g_gpu) return (double)cuda_peak_bytes() / (1024.0 * 1024.0);
#endif
    return 0;
}
static void dev_download(void *dst, const void *src, size_t bytes) {
#if USE_CUDA
    if (g_gpu) { cuda_to_host(dst, src, bytes); return; }
#endif
    memcpy(dst, src, bytes);
}

// ----------------------------------------------------------------------------------------------------------
// Configuration

typedef struct {
    int V;          // vocabulary size
    int D;          // hidden size
    int L;          // layers
    int K;          // expand ratio: key (forget-gate) dim per head
    int H;          // heads = D / K
    int Dv;         // value dim per head = D / H
    int I;          // MLP width
    int tie;        // lm_head tied to the embedding
    int lower_bound;// use the learned lower bounds of the forget gates
    double eps;     // RMSNorm eps of attn_norm, mlp_norm and the final norm
} Config;

#define EPS_O 1e-5          // the token mixer's output norm always uses this eps (docs/model.md "The token mixer (HGRU2)")
// The token mixer's form: 0 runs the plain recurrence, C > 0 the chunked form with chunks of C steps.
// Both compute the same function (tests/test_ops.c). On the CPU the plain recurrence is the faster (about
// 12 against 17 us per token and head at K = Dv = 128); the chunked form is what tensor-core kernels compute.
static int g_hgru_chunk = 0;
static int mixer_chunk(int T) {   // the form a forward or backward over T steps uses
    if (T <= 1) return 0;
#if USE_CUDA
    if (g_gpu) return cuda_get_gemm_precision() ? 64 : 0;   // tensor cores unless --precision fp32
#endif
    return g_hgru_chunk;
}

// Operands (ops.h) in the backend's format: bytes per value, the address of value i, and a real tensor as an
// operand (itself where the formats agree, else converted into the scratch `to`).
static size_t opnd_size(void) {
#if USE_CUDA
    if (g_gpu) return cuda_opnd_size();
#endif
    return sizeof(real);
}
static opnd *opnd_at(const opnd *p, int64_t i) { return (char *)p + i * (int64_t)opnd_size(); }
static const opnd *as_opnd(opnd *to, const real *x, int64_t n) {
    if (opnd_size() == sizeof(real)) return x;
    OP(to_opnd, to, x, n);
    return to;
}

// MLP width of fla: 256 * ceil(int(D * hidden_ratio * 2 / 3) / 256), hidden_ratio 4 unless a config says.
static int mlp_width(int D, double ratio) {
    int64_t h = (int64_t)(D * ratio * 2 / 3);
    return (int)(256 * ((h + 255) / 256));
}

// Fills the derived sizes; returns NULL when the configuration is valid, otherwise what is wrong.
static const char *config_finish(Config *c) {
    static char msg[160];
    if (c->V < 2 || c->V > (1 << 24)) return "vocabulary size must be in [2, 16777216]";
    if (c->D < 1 || c->D > 65536) return "--dim must be in [1, 65536]";
    if (c->L < 1 || c->L > 1024) return "--layers must be in [1, 1024]";
    if (c->K < 1 || c->D % c->K) {
        snprintf(msg, sizeof msg, "--expand-ratio %d must divide --dim %d", c->K, c->D);
        return msg;
    }
    c->H = c->D / c->K;
    c->Dv = c->D / c->H;
    if (c->I <= 0) c->I = mlp_width(c->D, 4);
    return NULL;
}

// ----------------------------------------------------------------------------------------------------------
// The parameter table: one row per tensor drives allocation, initialisation, AdamW, checkpoints and the
// Hugging Face names. Parameters live in one buffer: the global tensors first, then one block per layer
// in which q/f/i and gate/up sit next to each other, so each pair or triple is one matrix product.

enum {
    P_EMB, P_LB, P_NORM, P_LM,                                            // global
    P_ATTN_NORM, P_WQ, P_WF, P_WI, P_GNORM, P_WO, P_MLP_NORM, P_WGATE, P_WUP, P_WDOWN,  // per layer
    NPARAM
};
#define P_FIRST_LAYER P_ATTN_NORM

typedef enum { INIT_NORMAL, INIT_ONES, INIT_ZEROS } Init;
typedef struct {
    const char *name;   // our name
    const char *hf;     // Hugging Face (fla) name, %d = layer
    int decay;          // AdamW weight decay applies
    Init init;
} ParamDesc;

static const ParamDesc PARAMS[NPARAM] = {
    [P_EMB]       = {"embeddings",  "model.embeddings.weight",                1, INIT_NORMAL},
    [P_LB]        = {"lower_bounds","model.lower_bounds",                     0, INIT_ZEROS},
    [P_NORM]      = {"norm",        "model.norm.weight",                      0, INIT_ONES},
    [P_LM]        = {"lm_head",     "lm_head.weight",                         1, INIT_NORMAL},
    [P_ATTN_NORM] = {"attn_norm",   "model.layers.%d.attn_norm.weight",       0, INIT_ONES},
    [P_WQ]        = {"q_proj",      "model.layers.%d.attn.q_proj.weight",     1, INIT_NORMAL},
    [P_WF]        = {"f_proj",      "model.layers.%d.attn.f_proj.weight",     1, INIT_NORMAL},
    [P_WI]        = {"i_proj",      "model.layers.%d.attn.i_proj.weight",     1, INIT_NORMAL},
    [P_GNORM]     = {"g_norm",      "model.layers.%d.attn.g_norm.weight",     0, INIT_ONES},
    [P_WO]        = {"o_proj",      "model.layers.%d.attn.o_proj.weight",     1, INIT_NORMAL},
    [P_MLP_NORM]  = {"mlp_norm",    "model.layers.%d.mlp_norm.weight",        0, INIT_ONES},
    [P_WGATE]     = {"gate_proj",   "model.layers.%d.mlp.gate_proj.weight",   1, INIT_NORMAL},
    [P_WUP]       = {"up_proj",     "model.layers.%d.mlp.up_proj.weight",     1, INIT_NORMAL},
    [P_WDOWN]     = {"down_proj",   "model.layers.%d.mlp.down_proj.weight",   1, INIT_NORMAL},
};

// Shape [rows, cols] of one tensor (one layer's, for per-layer tensors). 0 x 0 when absent.
static void param_shape(const Config *c, int p, int64_t *rows, int64_t *cols) {
    int64_t HK = (int64_t)c->H * c->K, D = c->D;
    int64_t r = 1, k = D;
    switch (p) {
    case P_EMB: r = c->V; break;
    case P_LB: r = c->lower_bound ? c->L : 0; k = c->lower_bound ? HK : 0; break;
    case P_NORM: case P_ATTN_NORM: case P_GNORM: case P_MLP_NORM: break;
    case P_LM: r = c->tie ? 0 : c->V; k = c->tie ? 0 : D; break;
    case P_WQ: case P_WF: r = HK; break;
    case P_WI: case P_WO: r = D; break;
    case P_WGATE: case P_WUP: r = c->I; break;
    case P_WDOWN: r = D; k = c->I; break;
    }
    *rows = r;
    *cols = k;
}
static int64_t param_numel(const Config *c, int p) {
    int64_t r, k;
    param_shape(c, p, &r, &k);
    return r * k;
}

typedef struct {
    int64_t off[NPARAM];    // global tensors: offset in the buffer; per-layer: offset inside a layer block
    int64_t layers_at;      // where layer 0's block starts
    int64_t layer_size;     // elements per layer block
    int64_t n;              // total elements
} Layout;

static Layout layout_of(const Config *c) {
    Layout lay = {0};
    int64_t at = 0;
    for (int p = 0; p < P_FIRST_LAYER; p++) { lay.off[p] = at; at += param_numel(c, p); }
    lay.layers_at = at;
    int64_t in = 0;
    for (int p = P_FIRST_LAYER; p < NPARAM; p++) { lay.off[p] = in; in += param_numel(c, p); }
    lay.layer_size = in;
    lay.n = at + in * c->L;
    return lay;
}

// The tensor p (of layer l, for per-layer tensors) inside a parameter-shaped buffer.
static real *tensor_at(const Layout *lay, real *base, int p, int l) {
    if (p < P_FIRST_LAYER) return base + lay->off[p];
    return base + lay->layers_at + (int64_t)l * lay->layer_size + lay->off[p];
}

// ----------------------------------------------------------------------------------------------------------
// The model: parameters, their gradients and AdamW moments (one allocation each), and activations.

typedef struct {
    Config c;
    Layout lay;
    real *params, *grads, *m, *v;   // grads, m, v are NULL until training asks for them
    int on_device;                  // params, m and v moved to the GPU (grads are always backend memory)
} Model;

static real *W(Model *m, int p, int l) { return tensor_at(&m->lay, m->params, p, l); }
static real *G(Model *m, int p, int l) { return tensor_at(&m->lay, m->grads, p, l); }
// The classifier: lm_head, or the embedding when tied.
static int lm_tensor(const Model *m) { return m->c.tie ? P_EMB : P_LM; }

// Parameters are made and loaded on the host (model_alloc, model_init, checkpoint_load), then moved to
// the backend's memory by model_to_device; gradients and AdamW moments are born there.
static void model_alloc(Model *m, const Config *c) {
    m->c = *c;
    m->lay = layout_of(c);
    m->params = xcalloc(m->lay.n, sizeof(real));
    m->grads = m->m = m->v = NULL;
    m->on_device = 0;
}
static real *dev_zeros(int64_t n, const char *what) {
    real *p = dev_alloc((size_t)n * sizeof(real), what);
    OP(zero, p, n);
    return p;
}
static void model_to_device(Model *m) {
    if (!g_gpu || m->on_device) return;
    size_t bytes = (size_t)m->lay.n * sizeof(real);
    real *params = dev_alloc(bytes, "parameters");
    dev_upload(params, m->params, bytes);
    free(m->params);
    m->params = params;
    // moments loaded from a checkpoint travel too
    if (m->m) { real *d = dev_alloc(bytes, "AdamW moments"); dev_upload(d, m->m, bytes); free(m->m); m->m = d; }
    if (m->v) { real *d = dev_alloc(bytes, "AdamW moments"); dev_upload(d, m->v, bytes); free(m->v); m->v = d; }
    m->on_device = 1;
}
static void model_alloc_training(Model *m) {
    if (!m->grads) m->grads = dev_zeros(m->lay.n, "gradients");
    if (!m->m) m->m = dev_zeros(m->lay.n, "AdamW moments");
    if (!m->v) m->v = dev_zeros(m->lay.n, "AdamW moments");
}
static void model_free(Model *m) {
    void (*release)(void *) = m->on_device ? dev_free : free;
    release(m->params);
    if (m->grads) dev_free(m->grads);
    if (m->m) release(m->m);
    if (m->v) release(m->v);
    memset(m, 0, sizeof *m);
}
// A host copy of n values at p (the pointer itself on the CPU); free *tmp afterwards.
static const real *host_view(const Model *m, const real *p, int64_t n, real **tmp) {
    *tmp = NULL;
    if (!m->on_device) return p;
    *tmp = xmalloc((size_t)n * sizeof(real));
    dev_download(*tmp, p, (size_t)n * sizeof(real));
    return *tmp;
}

// fla's initialisation: linear weights and the embedding ~ N(0, 0.02), norms 1, lower bounds 0.
// Every tensor is filled in blocks of 64Ki values, each block drawn from its own seed (tensor, layer, block),
// so the values are the same at any thread count and a billion parameters take a second or two on all cores.
#define INIT_BLOCK 65536
static void model_init(Model *m, uint64_t seed) {
    int64_t first[NPARAM * 1024 + 1];   // first block of each (tensor, layer), in order; at most 1024 layers
    int tp[NPARAM * 1024], tl[NPARAM * 1024], nt = 0;
    first[0] = 0;
    for (int p = 0; p < NPARAM; p++)
        for (int l = 0; l < (p < P_FIRST_LAYER ? 1 : m->c.L); l++, nt++) {
            tp[nt] = p;
            tl[nt] = l;
            first[nt + 1] = first[nt] + (param_numel(&m->c, p) + INIT_BLOCK - 1) / INIT_BLOCK;
        }
    #pragma omp parallel for schedule(dynamic, 8)
    for (int64_t blk = 0; blk < first[nt]; blk++) {
        int t = 0;
        while (first[t + 1] <= blk) t++;
        const int p = tp[t], kind = PARAMS[p].init;
        const int64_t n = param_numel(&m->c, p), b = blk - first[t], i0 = b * INIT_BLOCK;
        const int64_t i1 = i0 + INIT_BLOCK < n ? i0 + INIT_BLOCK : n;
        real *x = W(m, p, tl[t]);
        if (kind != INIT_NORMAL) {
            for (int64_t i = i0; i < i1; i++) x[i] = kind == INIT_ONES ? 1 : 0;
            continue;
        }
        uint64_t s = seed * 1000003ull + (uint64_t)p * 4099ull + (uint64_t)tl[t];
        s = splitmix64(&s) ^ ((uint64_t)b * 0xD1B54A32D192ED03ull);
        for (int64_t i = i0; i < i1; i += 2) {   // both normals of each pair
            double r, a;
            rng_polar(&s, &r, &a);
            r *= 0.02;
            x[i] = (real)(r * cos(a));
            if (i + 1 < i1) x[i + 1] = (real)(r * sin(a));
        }
    }
}

// Activations of one forward pass over B x T tokens, carved from one allocation. With `train`, every layer
// keeps the inputs of its norms, of the gates and of SwiGLU (resid, xmid, qfi, o, gu and the rstds); the
// cheap elementwise results in between (h1, q, k, g, yo, h2, a) are shared by all layers and recomputed
// in the backward, bit for bit as the forward made them. That keeps 5D + 2I values per token and layer
// instead of 11D + 3I. Without `train`, every per-layer buffer is shared.
// The classifier runs over this many rows at a time, so [N, V] logits never exist: 256 on the CPU (the block
// stays in cache), 1024 on the GPU (GEMMs large enough to fill it; 206 MB of logits at V = 50304).
static int cls_rows(void) { return g_gpu ? 1024 : 256; }

typedef struct {
    int B, T, train;
    int64_t N;
    real *lb;                               // [L, HK] lower bounds of this forward
    real *resid;                            // [L+1, N, D] residual stream entering each layer, and the last
    real *xmid;                             // [L, N, D] residual between mixer and MLP
    real *rstd1, *qfi, *o, *rstdo;          // per layer: [N] [N,2HK+D] [N,D] [N]
    real *rstd2;                            // per layer: [N]
    opnd *gu;                               // per layer: [N,2I], an operand
    real *q, *k, *g;                        // shared: [N,HK] x3
    opnd *h1, *yo, *h2, *a;                 // shared operands (ops.h): [N,D] x3 [N,I]
    opnd *hf;                               // final norm [N,D]
    real *rstdf;                            // [N]
    real *logits;                           // [cls_rows(), V]
    real *losses;                           // [N]
    int32_t *ids_d, *tgt_d;                 // on the GPU: device copies of the ids and targets [N]
    real *losses_h;                         // host copy of the losses [N]
    // backward scratch
    real *dx, *dt, *dh, *dqfi, *dq, *dk, *dg, *dout, *da, *dlb;
    opnd *dgu;                              // [N,2I]
    opnd *dyo;                              // dx or dqfi as an operand, where that format is not real's
    void *mem;
    int64_t bytes;
} Acts;

static void acts_alloc(Acts *a, const Config *c, int B, int T, int train) {
    memset(a, 0, sizeof *a);
    a->B = B; a->T = T; a->train = train;
    int64_t N = (int64_t)B * T, D = c->D, HK = (int64_t)c->H * c->K, I = c->I, L = c->L;
    int64_t nl = train ? L : 1, QFI = 2 * HK + D;
    a->N = N;
    // every part in bytes: values of `real`, or operands (O) in the backend's operand format
    const int64_t R = sizeof(real), O = (int64_t)opnd_size();
    const int64_t CR = cls_rows(), DY = opnd_size() == sizeof(real) || !train ? 0 : (N * QFI > CR * c->V ? N * QFI : CR * c->V);
    struct { void **p; int64_t bytes; } parts[] = {
        {(void **)&a->lb, L * HK * R}, {(void **)&a->resid, (L + 1) * N * D * R}, {(void **)&a->xmid, nl * N * D * R},
        {(void **)&a->rstd1, nl * N * R}, {(void **)&a->qfi, nl * N * QFI * R}, {(void **)&a->o, nl * N * D * R},
        {(void **)&a->rstdo, nl * N * R}, {(void **)&a->rstd2, nl * N * R}, {&a->gu, nl * N * 2 * I * O},
        {(void **)&a->q, N * HK * R}, {(void **)&a->k, N * HK * R}, {(void **)&a->g, N * HK * R},
        {&a->h1, N * D * O}, {&a->yo, N * D * O}, {&a->h2, N * D * O}, {&a->a, N * I * O}, {&a->hf, N * D * O},
        {(void **)&a->rstdf, N * R}, {(void **)&a->logits, CR * c->V * R}, {(void **)&a->losses, N * R},
        {(void **)&a->dx, train ? N * D * R : 0}, {(void **)&a->dt, train ? N * D * R : 0},
        {(void **)&a->dh, train ? N * D * R : 0}, {(void **)&a->dqfi, train ? N * QFI * R : 0},
        {(void **)&a->dq, train ? N * HK * R : 0}, {(void **)&a->dk, train ? N * HK * R : 0},
        {(void **)&a->dg, train ? N * HK * R : 0}, {(void **)&a->dout, train ? N * D * R : 0},
        {&a->dgu, train ? N * 2 * I * O : 0}, {(void **)&a->da, train ? N * I * R : 0},
        {(void **)&a->dlb, train ? L * HK * R : 0}, {&a->dyo, DY * O},
    };
    int n = sizeof parts / sizeof parts[0];
    int64_t total = 0;   // every part starts at a multiple of 256 bytes (aligned vector loads)
    for (int i = 0; i < n; i++) total += (parts[i].bytes + 255) / 256 * 256;
    a->mem = dev_alloc((size_t)total, "activations");
    a->bytes = total;
    int64_t at = 0;
    for (int i = 0; i < n; i++) {
        *parts[i].p = parts[i].bytes ? (char *)a->mem + at : NULL;
        at += (parts[i].bytes + 255) / 256 * 256;
    }
    a->losses_h = xmalloc((size_t)N * sizeof(real));
    if (g_gpu) {
        a->ids_d = dev_alloc((size_t)N * sizeof(int32_t), "token ids");
        a->tgt_d = dev_alloc((size_t)N * sizeof(int32_t), "token ids");
    }
}
static void acts_free(Acts *a) {
    dev_free(a->mem);
    free(a->losses_h);
    if (a->ids_d) { dev_free(a->ids_d); dev_free(a->tgt_d); }
    memset(a, 0, sizeof *a);
}

// Layer l's slice of a per-layer activation of `per` elements per token (of `per` operands: LAYER_OPND).
#define LAYER(a, field, l, per) ((a)->field + ((a)->train ? (int64_t)(l) : 0) * (a)->N * (int64_t)(per))
#define LAYER_OPND(a, field, l, per) opnd_at((a)->field, ((a)->train ? (int64_t)(l) : 0) * (a)->N * (int64_t)(per))

// ----------------------------------------------------------------------------------------------------------
// Forward pass. ids [B,T]; targets [B,T] (< 0: no loss there) or NULL.
// states: NULL (zero state, nothing kept), or [L][B,H,K,Dv] carried in and out (prefill and decoding).
// logits_out: NULL, or [B,T,V] (all positions) / [B,V] (last_only) receiving the logits.
// With a->train, the classifier's backward runs here too (it is fused with the loss: logits are never kept)
// with dloss/dlogit = 1 / loss_count, and dhf is left in a->dx for model_backward.
// Returns the sum of the losses over valid targets; *count receives their number.

static double model_forward(Model *m, Acts *a, const int32_t *ids, const int32_t *targets, real *states,
                            real *logits_out, int last_only, double loss_scale, int64_t *count) {
    const Config *c = &m->c;
    const int B = a->B, T = a->T, D = c->D, HK = c->H * c->K, I = c->I, V = c->V, QFI = 2 * HK + D;
    const int64_t N = a->N;
    const int chunk = mixer_chunk(T);
    const int64_t state_size = (int64_t)B * c->H * c->K * c->Dv;

    const int32_t *ids_b = ids, *tgt_b = targets;     // the ids where the backend reads them
    if (g_gpu) {
        dev_upload(a->ids_d, ids, (size_t)N * sizeof(int32_t));
        ids_b = a->ids_d;
        if (targets) { dev_upload(a->tgt_d, targets, (size_t)N * sizeof(int32_t)); tgt_b = a->tgt_d; }
    }
    SECTION("embedding");
    if (c->lower_bound) OP(lower_bounds_fwd, a->lb, W(m, P_LB, 0), c->L, HK);
    OP(embed_fwd, a->resid, ids_b, W(m, P_EMB, 0), N, D);                    // x [N,D]

    for (int l = 0; l < c->L; l++) {
        real *x = a->resid + (int64_t)l * N * D, *xn = a->resid + (int64_t)(l + 1) * N * D;
        real *qfi = LAYER(a, qfi, l, QFI), *o = LAYER(a, o, l, D), *xmid = LAYER(a, xmid, l, D);
        opnd *gu = LAYER_OPND(a, gu, l, 2 * I);
        real *q = a->q, *k = a->k, *g = a->g;
        opnd *h1 = a->h1, *yo = a->yo, *h2 = a->h2, *act = a->a;
        real *S = states ? states + l * state_size : NULL;
        const real *lb = (c->lower_bound && l > 0) ? a->lb + (int64_t)l * HK : NULL;
        // Each residual add is done by the norm after it: x holds the last layer's MLP output until this norm
        // adds the residual it goes around (that layer's xmid), and xmid holds y until the MLP norm adds x.
        const real *x_res = l > 0 ? LAYER(a, xmid, l - 1, D) : NULL;

        SECTION("mixer");
        OP(rmsnorm_fwd, h1, LAYER(a, rstd1, l, 1), x, x_res, W(m, P_ATTN_NORM, l), N, D, c->eps);   // h [N,D]
        OP(matmul_fwd, qfi, h1, W(m, P_WQ, l), N, D, QFI);                   // [q | f | v] [N, 2HK+D]
        OP(gates_fwd, q, k, g, qfi, QFI, lb, N, HK);                         // q, k, g [N,HK]
        OP(hgru_fwd, o, S, q, k, g, qfi + 2 * HK, QFI, S, B, T, c->H, c->K, c->Dv, chunk);  // o [N,D]
        OP(rmsnorm_fwd, yo, LAYER(a, rstdo, l, 1), o, NULL, W(m, P_GNORM, l), N, D, EPS_O);
        OP(matmul_fwd, xmid, yo, W(m, P_WO, l), N, D, D);                    // y [N,D]
        SECTION("mlp");
        OP(rmsnorm_fwd, h2, LAYER(a, rstd2, l, 1), xmid, x, W(m, P_MLP_NORM, l), N, D, c->eps);  // xmid = x + y
        OP(matmul_fwd_opnd, gu, h2, W(m, P_WGATE, l), N, D, 2 * I);          // [gate | up] [N, 2I]
        OP(swiglu_fwd, act, gu, N, I);                                       // [N,I]
        OP(matmul_fwd, xn, act, W(m, P_WDOWN, l), N, I, D);                  // [N,D]; + xmid in the next norm
    }

    real *xL = a->resid + (int64_t)c->L * N * D;
    SECTION("final norm");
    OP(rmsnorm_fwd, a->hf, a->rstdf, xL, c->L > 0 ? LAYER(a, xmid, c->L - 1, D) : NULL, W(m, P_NORM, 0), N, D,
                    c->eps);                                                 // xL = the last MLP's output + xmid

    // Classifier, cls_rows() rows at a time: logits, loss, and in training straight away their gradient.
    SECTION("classifier");
    real *Wlm = W(m, lm_tensor(m), 0);
    real *dWlm = a->train ? G(m, lm_tensor(m), 0) : NULL;
    const int64_t CR = cls_rows();
    if (a->train) OP(zero, a->dx, N * D);
    for (int64_t r0 = 0; r0 < N; r0 += CR) {
        int64_t rows = N - r0 < CR ? N - r0 : CR;
        if (last_only) {
            // only the last position of each sequence: row b*T + T-1
            if (r0 >= B) break;
            rows = B - r0 < CR ? B - r0 : CR;
            for (int64_t i = 0; i < rows; i++)
                OP(matmul_fwd, a->logits + i * V, opnd_at(a->hf, ((r0 + i) * T + T - 1) * D), Wlm, 1, D, V);
        } else if (a->train && targets && !logits_out) {   // logits, loss and gradient: one op
            OP(classifier_train, a->losses + r0, a->dx + r0 * D, dWlm, a->logits, opnd_at(a->hf, r0 * D), Wlm, tgt_b + r0,
                                 (real)loss_scale, rows, D, V);
            continue;
        } else {
            OP(matmul_fwd, a->logits, opnd_at(a->hf, r0 * D), Wlm, rows, D, V);
        }
        if (logits_out) dev_download(logits_out + r0 * V, a->logits, (size_t)(rows * V) * sizeof(real));
        if (!targets || last_only) continue;
        OP(xent_fwd, a->losses + r0, a->logits, tgt_b + r0, rows, V);
        if (a->train) {
            OP(xent_bwd, a->logits, a->logits, tgt_b + r0, (real)loss_scale, rows, V);
            const opnd *dlog = as_opnd(a->dyo, a->logits, rows * V);
            OP(matmul_bwd, a->dx + r0 * D, dWlm, dlog, opnd_at(a->hf, r0 * D), Wlm, rows, D, V);
        }
    }
    double loss = 0;   // summed on the host in row order, once the losses are all there
    int64_t cnt = 0;
    if (targets && !last_only) {
        dev_download(a->losses_h, a->losses, (size_t)N * sizeof(real));
        for (int64_t i = 0; i < N; i++)
            if (targets[i] >= 0) { loss += a->losses_h[i]; cnt++; }
    }
    if (count) *count = cnt;
    return loss;
}

// Backward pass after a training forward: gradients accumulate (+=) into m->grads.
static void model_backward(Model *m, Acts *a, const int32_t *ids) {
    const Config *c = &m->c;
    const int B = a->B, T = a->T, D = c->D, HK = c->H * c->K, I = c->I, QFI = 2 * HK + D;
    const int64_t N = a->N;
    const int chunk = mixer_chunk(T);
    real *dx = a->dx, *dt = a->dt, *dh = a->dh;

    // final norm: dx holds dhf, turn it into the gradient of the last residual
    real *xL = a->resid + (int64_t)c->L * N * D;
    SECTION("final norm bwd");
    OP(rmsnorm_bwd, dt, 0, G(m, P_NORM, 0), dx, xL, W(m, P_NORM, 0), a->rstdf, N, D, c->eps);
    real *swap = dx;        // the residual gradient now lives in dt: trade the buffers' roles
    dx = dt;
    dt = swap;
    if (c->lower_bound) OP(zero, a->dlb, (int64_t)c->L * HK);

    for (int l = c->L - 1; l >= 0; l--) {
        real *x = a->resid + (int64_t)l * N * D;
        real *qfi = LAYER(a, qfi, l, QFI), *o = LAYER(a, o, l, D), *xmid = LAYER(a, xmid, l, D);
        opnd *gu = LAYER_OPND(a, gu, l, 2 * I);
        real *q = a->q, *k = a->k, *g = a->g;
        opnd *h1 = a->h1, *yo = a->yo, *h2 = a->h2, *act = a->a;
        const real *lb = (c->lower_bound && l > 0) ? a->lb + (int64_t)l * HK : NULL;
        real *dlb = lb ? a->dlb + (int64_t)l * HK : NULL;

        SECTION("mlp bwd");   // dx is the gradient of the layer's output
        OP(swiglu_fwd, act, gu, N, I);                                               // recomputed
        const opnd *dyo = as_opnd(a->dyo, dx, N * D);   // (outside OP: the profile charges it apart)
        OP(matmul_bwd, a->da, G(m, P_WDOWN, l), dyo, act, W(m, P_WDOWN, l), N, I, D);  // da [N,I]
        OP(swiglu_bwd, a->dgu, a->da, gu, N, I);                                     // dgu [N,2I]
        OP(rmsnorm_fwd, h2, NULL, xmid, NULL, W(m, P_MLP_NORM, l), N, D, c->eps);    // recomputed
        OP(matmul_bwd, dh, G(m, P_WGATE, l), a->dgu, h2, W(m, P_WGATE, l), N, D, 2 * I);
        OP(rmsnorm_bwd, dx, 1, G(m, P_MLP_NORM, l), dh, xmid, W(m, P_MLP_NORM, l), LAYER(a, rstd2, l, 1),
                    N, D, c->eps);                                                   // dx += d xmid
        SECTION("mixer bwd");
        OP(rmsnorm_fwd, yo, NULL, o, NULL, W(m, P_GNORM, l), N, D, EPS_O);           // recomputed
        dyo = as_opnd(a->dyo, dx, N * D);
        OP(matmul_bwd, dh, G(m, P_WO, l), dyo, yo, W(m, P_WO, l), N, D, D);          // d yo
        OP(rmsnorm_bwd, a->dout, 0, G(m, P_GNORM, l), dh, o, W(m, P_GNORM, l), LAYER(a, rstdo, l, 1), N, D, EPS_O);
        OP(gates_fwd, q, k, g, qfi, QFI, lb, N, HK);                                 // recomputed
        OP(hgru_bwd, a->dq, a->dk, a->dg, a->dqfi + 2 * HK, QFI, a->dout, q, k, g, qfi + 2 * HK, QFI,
                    B, T, c->H, c->K, c->Dv, chunk);
        OP(gates_bwd, a->dqfi, QFI, dlb, a->dq, a->dk, a->dg, qfi, QFI, lb, N, HK);
        OP(rmsnorm_fwd, h1, NULL, x, NULL, W(m, P_ATTN_NORM, l), N, D, c->eps);      // recomputed
        dyo = as_opnd(a->dyo, a->dqfi, N * QFI);
        OP(matmul_bwd, dh, G(m, P_WQ, l), dyo, h1, W(m, P_WQ, l), N, D, QFI);
        OP(rmsnorm_bwd, dx, 1, G(m, P_ATTN_NORM, l), dh, x, W(m, P_ATTN_NORM, l), LAYER(a, rstd1, l, 1),
                    N, D, c->eps);                                                   // dx += d x
    }
    SECTION("embedding bwd");
    OP(embed_bwd, G(m, P_EMB, 0), dx, g_gpu ? a->ids_d : ids, N, D);
    if (c->lower_bound) OP(lower_bounds_bwd, G(m, P_LB, 0), a->dlb, W(m, P_LB, 0), c->L, HK);
}

// ----------------------------------------------------------------------------------------------------------
// Optimizer: AdamW with global-norm clipping, and the learning-rate schedules.

typedef enum { SCHED_COSINE, SCHED_INVSQRT, SCHED_CONSTANT } Sched;
static const char *SCHED_NAMES[] = {"cosine", "invsqrt", "constant"};

typedef struct {
    int B, T, accum;
    int64_t steps;
    double lr, min_lr, wd, beta1, beta2, adam_eps, clip;
    int64_t warmup;
    int sched;
    uint64_t seed;
} Hyper;

static double lr_at(const Hyper *h, int64_t step) {   // step counts from 1
    if (h->warmup > 0 && step <= h->warmup) return h->lr * (double)step / (double)h->warmup;
    switch (h->sched) {
    case SCHED_INVSQRT: return h->lr * sqrt((double)(h->warmup > 0 ? h->warmup : 1) / (double)step);
    case SCHED_CONSTANT: return h->lr;
    default: {
        double span = (double)(h->steps - h->warmup);
        double t = span > 0 ? (double)(step - h->warmup) / span : 1.0;
        if (t > 1) t = 1;
        return h->min_lr + 0.5 * (h->lr - h->min_lr) * (1 + cos(M_PI * t));
    }
    }
}

static double grad_norm(Model *m) {
    SECTION("optimizer");
    return sqrt(OP(sumsq, m->grads, m->lay.n));
}

static void adamw_step(Model *m, const Hyper *h, double lr, double grad_scale, int64_t step) {
    SECTION("optimizer");
    for (int p = 0; p < NPARAM; p++) {
        int64_t n = param_numel(&m->c, p);
        if (!n) continue;
        int nl = p < P_FIRST_LAYER ? 1 : m->c.L;
        double wd = PARAMS[p].decay ? h->wd : 0.0;
        for (int l = 0; l < nl; l++) {
            real *pp = W(m, p, l);
            int64_t o = pp - m->params;
            OP(adamw, pp, m->grads + o, m->m + o, m->v + o, n, lr, h->beta1, h->beta2, h->adam_eps, wd,
                     grad_scale, step);
        }
    }
}

// ----------------------------------------------------------------------------------------------------------
// Checkpoints (docs/checkpoint.md): a versioned little-endian header, the fp32 parameters, optionally the
// AdamW moments, and a 64-bit checksum of everything before it. Written to PATH.tmp, flushed, synced and
// renamed, so a crash or a full disk never leaves a broken file under PATH and never loses the previous one.

#define CKPT_MAGIC "HGRN2CKP"
#define CKPT_VERSION 1

typedef struct {
    Config c;
    Hyper h;
    int64_t step;           // optimizer steps done
    LoaderState loader;
    char tokenizer[1024];   // tokenizer spec ("byte", a directory or a tokenizer.json path)
    char data[1024];        // the data directory trained on
} RunState;

// A 64-bit checksum fed in pieces: FNV-style mixing of 8-byte words, fast enough for multi-GB files.
typedef struct { uint64_t h, tail; int ntail; } Hash;
static void hash_init(Hash *s) { s->h = 0xcbf29ce484222325ull; s->tail = 0; s->ntail = 0; }
static inline void hash_word(Hash *s, uint64_t w) { s->h = (s->h ^ w) * 0x100000001b3ull; s->h ^= s->h >> 29; }
static void hash_bytes(Hash *s, const void *p, size_t n) {
    const unsigned char *b = p;
    while (n && s->ntail) { s->tail |= (uint64_t)*b++ << (8 * s->ntail); n--; if (++s->ntail == 8) { hash_word(s, s->tail); s->tail = 0; s->ntail = 0; } }
    for (; n >= 8; n -= 8, b += 8) { uint64_t w; memcpy(&w, b, 8); hash_word(s, w); }
    while (n--) { s->tail |= (uint64_t)*b++ << (8 * s->ntail); s->ntail++; }
}
static uint64_t hash_final(Hash *s) { Hash t = *s; if (t.ntail) hash_word(&t, t.tail ^ ((uint64_t)t.ntail << 56)); return t.h; }

typedef struct { FILE *f; const char *path; Hash hash; } Out;
static void out_write(Out *o, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, o->f) != n)
        die("writing checkpoint %s failed: %s; free disk space or choose another --out", o->path, strerror(errno));
    hash_bytes(&o->hash, p, n);
}
static void out_i64(Out *o, int64_t v) { out_write(o, &v, 8); }
static void out_f64(Out *o, double v) { out_write(o, &v, 8); }
static void out_str(Out *o, const char *s) { int64_t n = (int64_t)strlen(s); out_i64(o, n); out_write(o, s, (size_t)n); }
// Tensors go out as fp32 whatever `real` is.
static void out_reals(Out *o, const real *x, int64_t n) {
    float buf[4096];
    for (int64_t i = 0; i < n; i += 4096) {
        int64_t k = n - i < 4096 ? n - i : 4096;
        for (int64_t j = 0; j < k; j++) buf[j] = (float)x[i + j];
        out_write(o, buf, (size_t)k * 4);
    }
}

static void fsync_dir_of(const char *path) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0; else snprintf(dir, sizeof dir, ".");
    int fd = open(dir, O_RDONLY);
    if (fd >= 0) { fsync(fd); close(fd); }
}

static void checkpoint_save(const char *path, const Model *m, const RunState *rs, int with_optimizer) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    Out o = {fopen(tmp, "wb"), tmp, {0}};
    if (!o.f) die("cannot create checkpoint %s: %s", tmp, strerror(errno));
    hash_init(&o.hash);
    const Config *c = &m->c;
    const Hyper *h = &rs->h;
    out_write(&o, CKPT_MAGIC, 8);
    out_i64(&o, CKPT_VERSION);
    int64_t ints[] = {c->V, c->D, c->L, c->K, c->I, c->tie, c->lower_bound,
                      h->B, h->T, h->accum, h->steps, h->warmup, h->sched, (int64_t)h->seed, rs->step,
                      (int64_t)rs->loader.seed, (int64_t)rs->loader.batches, (int64_t)rs->loader.cursor,
                      (int64_t)rs->loader.reserved, m->lay.n, with_optimizer};
    out_i64(&o, (int64_t)(sizeof ints / sizeof ints[0]));
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) out_i64(&o, ints[i]);
    double fl[] = {c->eps, h->lr, h->min_lr, h->wd, h->beta1, h->beta2, h->adam_eps, h->clip};
    out_i64(&o, (int64_t)(sizeof fl / sizeof fl[0]));
    for (size_t i = 0; i < sizeof fl / sizeof fl[0]; i++) out_f64(&o, fl[i]);
    out_str(&o, rs->tokenizer);
    out_str(&o, rs->data);
    const real *tensors[3] = {m->params, m->m, m->v};    // the moments only with the optimizer state
    for (int i = 0; i < (with_optimizer ? 3 : 1); i++) {
        real *staged;
        out_reals(&o, host_view(m, tensors[i], m->lay.n, &staged), m->lay.n);
        free(staged);
    }
    uint64_t sum = hash_final(&o.hash);
    if (fwrite(&sum, 8, 1, o.f) != 1 || fflush(o.f) != 0 || fsync(fileno(o.f)) != 0) {
        int e = errno;
        fclose(o.f); unlink(tmp);
        die("writing checkpoint %s failed: %s; the previous checkpoint is untouched", tmp, strerror(e));
    }
    if (fclose(o.f) != 0) { unlink(tmp); die("closing checkpoint %s failed: %s", tmp, strerror(errno)); }
    if (rename(tmp, path) != 0) { int e = errno; unlink(tmp); die("renaming %s to %s failed: %s", tmp, path, strerror(e)); }
    fsync_dir_of(path);
}

typedef struct { FILE *f; const char *path; Hash hash; int64_t left; } In;
static void in_read(In *r, void *p, size_t n) {
    if ((int64_t)n > r->left || (n && fread(p, 1, n, r->f) != n))
        die("checkpoint %s is truncated or unreadable; it was not written completely (use an earlier one)", r->path);
    r->left -= (int64_t)n;
    hash_bytes(&r->hash, p, n);
}
static int64_t in_i64(In *r) { int64_t v; in_read(r, &v, 8); return v; }
static double in_f64(In *r) { double v; in_read(r, &v, 8); return v; }
static void in_str(In *r, char *dst, size_t cap) {
    int64_t n = in_i64(r);
    if (n < 0 || (size_t)n >= cap) die("checkpoint %s is corrupt: a string of %lld bytes", r->path, (long long)n);
    in_read(r, dst, (size_t)n);
    dst[n] = 0;
}
static void in_reals(In *r, real *x, int64_t n) {
    float buf[4096];
    for (int64_t i = 0; i < n; i += 4096) {
        int64_t k = n - i < 4096 ? n - i : 4096;
        in_read(r, buf, (size_t)k * 4);
        if (x) for (int64_t j = 0; j < k; j++) x[i + j] = buf[j];
    }
}

// Loads a checkpoint into a freshly allocated model. want_optimizer: 1 = the AdamW moments must be there,
// 0 = skip them. Every field is validated; any problem dies with a message naming the file.
static void checkpoint_load(const char *path, Model *m, RunState *rs, int want_optimizer) {
    In r = {fopen(path, "rb"), path, {0}, 0};
    if (!r.f) die("cannot open checkpoint %s: %s (train a model first, or pass --ckpt PATH)", path, strerror(errno));
    if (fseeko(r.f, 0, SEEK_END) != 0) die("cannot read checkpoint %s: %s", path, strerror(errno));
    r.left = ftello(r.f) - 8;     // the checksum is not part of the hashed bytes
    rewind(r.f);
    hash_init(&r.hash);
    char magic[8];
    in_read(&r, magic, 8);
    if (memcmp(magic, CKPT_MAGIC, 8)) die("%s is not an hgrn2 checkpoint (bad magic)", path);
    int64_t version = in_i64(&r);
    if (version != CKPT_VERSION)
        die("checkpoint %s has format version %lld; this hgrn2 reads version %d", path, (long long)version, CKPT_VERSION);
    int64_t nints = in_i64(&r);
    if (nints != 21) die("checkpoint %s is corrupt: %lld header integers, expected 21", path, (long long)nints);
    int64_t v[21];
    for (int i = 0; i < 21; i++) v[i] = in_i64(&r);
    int64_t nfl = in_i64(&r);
    if (nfl != 8) die("checkpoint %s is corrupt: %lld header floats, expected 8", path, (long long)nfl);
    double fl[8];
    for (int i = 0; i < 8; i++) fl[i] = in_f64(&r);
    memset(rs, 0, sizeof *rs);
    in_str(&r, rs->tokenizer, sizeof rs->tokenizer);
    in_str(&r, rs->data, sizeof rs->data);
    Config c = {.V = (int)v[0], .D = (int)v[1], .L = (int)v[2], .K = (int)v[3], .I = (int)v[4],
                .tie = (int)v[5], .lower_bound = (int)v[6], .eps = fl[0]};
    for (int i = 0; i < 7; i++)
        if (v[i] < 0 || v[i] > (1 << 24)) die("checkpoint %s is corrupt: configuration value %lld", path, (long long)v[i]);
    const char *bad = config_finish(&c);
    if (bad || c.I < 1 || c.tie > 1 || c.lower_bound > 1 || !(c.eps > 0 && c.eps < 1))
        die("checkpoint %s is corrupt: invalid configuration (%s)", path, bad ? bad : "sizes");
    rs->c = c;
    rs->h = (Hyper){.B = (int)v[7], .T = (int)v[8], .accum = (int)v[9], .steps = v[10], .warmup = v[11],
                    .sched = (int)v[12], .seed = (uint64_t)v[13], .lr = fl[1], .min_lr = fl[2], .wd = fl[3],
                    .beta1 = fl[4], .beta2 = fl[5], .adam_eps = fl[6], .clip = fl[7]};
    rs->step = v[14];
    rs->loader = (LoaderState){(uint64_t)v[15], (uint64_t)v[16], (uint64_t)v[17], (uint64_t)v[18]};
    int has_opt = (int)v[20];
    model_alloc(m, &c);
    if (v[19] != m->lay.n) die("checkpoint %s is corrupt: %lld parameters for a model of %lld", path, (long long)v[19], (long long)m->lay.n);
    int64_t need = m->lay.n * 4 * (has_opt ? 3 : 1);
    if (r.left != need)
        die("checkpoint %s has %lld payload bytes, expected %lld: it is truncated or corrupt", path, (long long)r.left, (long long)need);
    if (want_optimizer && !has_opt)
        die("checkpoint %s holds no optimizer state, so training cannot resume from it (start a new run with --init %s)", path, path);
    in_reals(&r, m->params, m->lay.n);
    if (has_opt && want_optimizer) {
        m->m = xmalloc((size_t)m->lay.n * sizeof(real));
        m->v = xmalloc((size_t)m->lay.n * sizeof(real));
        in_reals(&r, m->m, m->lay.n);
        in_reals(&r, m->v, m->lay.n);
    } else if (has_opt) {
        in_reals(&r, NULL, 2 * m->lay.n);
    }
    uint64_t want = hash_final(&r.hash), got;
    if (fread(&got, 8, 1, r.f) != 1 || got != want)
        die("checkpoint %s is corrupt (checksum mismatch); use an earlier checkpoint", path);
    fclose(r.f);
    for (int64_t i = 0; i < m->lay.n; i++)
        if (!isfinite(m->params[i])) die("checkpoint %s holds a non-finite parameter", path);
}

// ----------------------------------------------------------------------------------------------------------
// Presets: the paper's configurations (docs/model.md "Presets") and the small default that trains in minutes on a laptop.

typedef struct {
    const char *name, *task;
    int D, L, K, tie, B, T;
    int64_t steps, warmup;
    double lr, wd, beta1, beta2;
    int sched;
    const char *about;
} Preset;

static const Preset PRESETS[] = {
    {"tiny", "bible", 256, 4, 64, 0, 16, 256, 400, 40, 2e-3, 0.1, 0.9, 0.95, SCHED_COSINE,
     "3.5M parameters, byte-level: the default run, minutes on 2 CPU cores"},
    {"pile-150m", "pile", 768, 15, 128, 0, 8, 2048, 50000, 2000, 3e-4, 0.1, 0.9, 0.95, SCHED_COSINE, "Pile 0.15B"},
    {"pile-385m", "pile", 1024, 26, 128, 0, 8, 2048, 50000, 2000, 3e-4, 0.1, 0.9, 0.95, SCHED_COSINE, "Pile 0.385B"},
    {"pile-1b", "pile", 2048, 18, 128, 0, 8, 2048, 50000, 2000, 3e-4, 0.1, 0.9, 0.95, SCHED_COSINE, "Pile 1B"},
    {"pile-3b", "pile", 2560, 36, 128, 0, 8, 2048, 50000, 2000, 3e-4, 0.1, 0.9, 0.95, SCHED_COSINE, "Pile 2.9B"},
    {"wiki103-44m", "wiki103", 512, 6, 128, 1, 128, 512, 50000, 4000, 5e-4, 0.1, 0.9, 0.98, SCHED_INVSQRT,
     "WikiText-103 44M (GPT-2 BPE), tied embeddings, inverse-sqrt schedule"},
};
#define NPRESETS ((int)(sizeof PRESETS / sizeof PRESETS[0]))

static const Preset *preset_find(const char *name) {
    for (int i = 0; i < NPRESETS; i++) if (!strcmp(PRESETS[i].name, name)) return &PRESETS[i];
    return NULL;
}
static const char *task_default_preset(const char *task) {
    if (!strcmp(task, "pile")) return "pile-150m";
    if (!strcmp(task, "wiki103")) return "wiki103-44m";
    return "tiny";
}

// ----------------------------------------------------------------------------------------------------------
// Small helpers of the subcommands

// The tokenizer spec a prepared data directory was made with (its meta.txt), or NULL.
static int data_tokenizer_spec(const char *dir, char *out, size_t cap) {
    char path[4200], line[4400];
    snprintf(path, sizeof path, "%s/meta.txt", dir);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "tokenizer ", 10)) {
            line[strcspn(line, "\r\n")] = 0;
            if (strlen(line + 10) >= cap) die("the tokenizer path in %s is longer than %zu bytes", path, cap - 1);
            memcpy(out, line + 10, strlen(line + 10) + 1);
            found = 1;
            break;
        }
    }
    fclose(f);
    return found;
}

// Splits a loader batch of B rows of T+1 tokens into inputs and targets; padding (-1) becomes input 0 with
// no target. Ids at or above the vocabulary are refused here, once, before they reach the model.
static void split_batch(const int32_t *buf, int B, int T, int V, int32_t *inp, int32_t *tgt, const char *what) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int32_t x = buf[(int64_t)b * (T + 1) + t], y = buf[(int64_t)b * (T + 1) + t + 1];
            if (x >= V || y >= V)
                die("%s holds token id %d, outside the model's vocabulary of %d", what, x >= V ? x : y, V);
            inp[(int64_t)b * T + t] = x < 0 ? 0 : x;
            tgt[(int64_t)b * T + t] = (x < 0 || y < 0) ? -1 : y;
        }
}

static void print_config(const Config *c, const Layout *lay, FILE *f) {
    fprintf(f, "| model        | V %d, D %d, layers %d, heads %d x (K %d, Dv %d), MLP %d, %s, %s\n", c->V, c->D,
            c->L, c->H, c->K, c->Dv, c->I, c->tie ? "tied embeddings" : "untied lm_head",
            c->lower_bound ? "lower bounds" : "no lower bounds");
    fprintf(f, "| parameters   | %lld (%.2fM)\n", (long long)lay->n, lay->n / 1e6);
}

// The UTF-8 bytes the valid targets stand for (for bits per byte with any tokenizer).
static int64_t target_bytes(const Tokenizer *tok, const int32_t *tgt, int64_t n) {
    ByteBuf b = {0};
    int64_t bytes = 0;
    for (int64_t i = 0; i < n; i++) {
        if (tgt[i] < 0) continue;
        b.n = 0;
        tokenizer_decode_one(tok, tgt[i], 0, &b);
        bytes += (int64_t)b.n;
    }
    free(b.data);
    return bytes;
}

// Mean loss over the whole (or the first max_batches batches of the) sequential split. With a tokenizer,
// *nbytes receives the bytes of text the predicted tokens stand for.
static double evaluate(Model *m, Acts *a, Loader *ld, int64_t max_batches, int64_t *ntargets,
                       const Tokenizer *tok, int64_t *nbytes) {
    int B = a->B, T = a->T;
    int32_t *buf = xmalloc((size_t)B * (T + 1) * sizeof(int32_t));
    int32_t *inp = xmalloc((size_t)B * T * sizeof(int32_t)), *tgt = xmalloc((size_t)B * T * sizeof(int32_t));
    loader_reset(ld);
    double sum = 0;
    int64_t cnt = 0, bytes = 0;
    for (int64_t i = 0; max_batches <= 0 || i < max_batches; i++) {
        if (loader_next(ld, buf) == 0) break;
        split_batch(buf, B, T, m->c.V, inp, tgt, "the evaluation data");
        int64_t c;
        sum += model_forward(m, a, inp, tgt, NULL, NULL, 0, 0, &c);
        cnt += c;
        if (tok) bytes += target_bytes(tok, tgt, (int64_t)B * T);
    }
    free(buf); free(inp); free(tgt);
    if (ntargets) *ntargets = cnt;
    if (nbytes) *nbytes = bytes;
    return cnt ? sum / cnt : NAN;
}

// ----------------------------------------------------------------------------------------------------------
// Command line

static const char *g_prog = "hgrn2";
static const char *g_usage;

__attribute__((noreturn, format(printf, 1, 2)))
static void usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", g_prog);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nusage: %s\n(see '%s --help')\n", g_usage, g_prog);
    exit(EXIT_USAGE);
}

static int64_t arg_int(const char *flag, const char *v, int64_t lo, int64_t hi) {
    long long x;
    if (parse_i64(v, lo, hi, &x)) usage_error("%s needs an integer in [%lld, %lld], got '%s'", flag, (long long)lo, (long long)hi, v);
    return x;
}
static double arg_num(const char *flag, const char *v, double lo, double hi) {
    double x;
    if (parse_f64(v, lo, hi, &x)) usage_error("%s needs a number in [%g, %g], got '%s'", flag, lo, hi, v);
    return x;
}

// getopt_long's error for an unknown or incomplete option, turned into the usage error.
static void bad_option(char **argv, int c) {
    if (c == ':') usage_error("option '%s' needs a value", argv[optind - 1]);
    usage_error("unknown option '%s'", argv[optind - 1]);
}

// --precision (GPU only): what the tensor cores compute in. Storage is fp32 in every mode.
//   bf16 (default): bf16 GEMMs and the chunked token mixer on tensor cores (bf16 operands, fp32 accumulation)
//   tf32: TF32 GEMMs, the chunked token mixer as in bf16
//   fp32: exact fp32 GEMMs and the plain recurrence (slow; for checking)
static const char *g_precision = NULL;
static const char *PRECISIONS[] = {"fp32", "tf32", "bf16"};   // index = cuda_set_gemm_precision's mode

static int select_device(const char *dev) {
    int mode = 2;
    if (g_precision) {
        for (mode = 0; mode < 3 && strcmp(g_precision, PRECISIONS[mode]); mode++) {}
        if (mode == 3) usage_error("--precision must be bf16, tf32 or fp32, got '%s'", g_precision);
    }
    if (!strcmp(dev, "cpu")) {
        if (mode != 0 && g_precision) usage_error("--precision %s needs --device cuda (the CPU computes in fp32)", g_precision);
        return 0;
    }
    if (strcmp(dev, "cuda")) usage_error("--device must be cpu or cuda, got '%s'", dev);
#if USE_CUDA
    cuda_init();
    cuda_set_gemm_precision(mode);
    g_gpu = 1;
    return 1;
#else
    die("this hgrn2 was built without the CUDA backend (no nvcc at build time); use --device cpu");
#endif
}
static const char *device_name(void) {
#if USE_CUDA
    if (g_gpu) {
        static char buf[300];
        snprintf(buf, sizeof buf, "%s, %s", cuda_device_name(), PRECISIONS[cuda_get_gemm_precision()]);
        return buf;
    }
#endif
    return "cpu";
}

#define DEFAULT_OUT "runs/default"
#define DEFAULT_BIBLE_DATA "data/bible"

// Prepares the default corpus (the King James Bible from Debian's bible-kjv) on first use.
static void prepare_bible(const char *dir) {
    if (data_has_split(dir, "train") && data_has_split(dir, "val")) return;
    mkdir_p(dir);
    char txt[4200], tmp[4300], cmd[4400];
    snprintf(txt, sizeof txt, "%s/kjv.txt", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", txt);
    if (system("command -v bible >/dev/null 2>&1") != 0)
        die("the default corpus needs Debian's bible-kjv package: run 'make setup' (or apt-get install bible-kjv)");
    printf("preparing the default corpus: the King James Bible (Debian's bible-kjv) into %s\n", dir);
    snprintf(cmd, sizeof cmd, "bible 'gen1:1-rev22:21' > '%s' 2>/dev/null", tmp);
    int rc = system(cmd);
    struct stat st;
    if (rc != 0 || stat(tmp, &st) != 0 || st.st_size < 1000000) {
        unlink(tmp);
        die("running 'bible' to extract the King James Bible failed; reinstall bible-kjv and bible-kjv-text");
    }
    if (rename(tmp, txt) != 0) die("renaming %s failed: %s", tmp, strerror(errno));
    char *pargv[] = {"prepare", "--task", "text", "--input", txt, "--tokenizer", "byte", "--out", (char *)dir,
                     "--val-fraction", "0.01", NULL};
    int saved = optind;
    optind = 0;
    rc = cmd_prepare(11, pargv);
    optind = saved;
    if (rc != 0) die("preparing the default corpus failed");
}

// ----------------------------------------------------------------------------------------------------------
// hgrn2 train

enum {
    O_HELP = 'h', O_TASK = 256, O_PRESET, O_DATA, O_OUT, O_STEPS, O_CKPT, O_RESUME, O_INIT, O_SEED, O_DEVICE,
    O_LAYERS, O_DIM, O_EXPAND, O_VOCAB, O_MLP, O_TIE, O_NO_LB, O_BATCH, O_SEQ, O_ACCUM, O_LR, O_MIN_LR,
    O_WARMUP, O_SCHED, O_WD, O_BETA1, O_BETA2, O_ADAM_EPS, O_CLIP, O_EVAL_EVERY, O_EVAL_BATCHES,
    O_CKPT_EVERY, O_LOG_EVERY, O_THREADS, O_SPLIT, O_IDS, O_LOGITS, O_PROMPT, O_PROMPT_IDS, O_TOKENS,
    O_TEMP, O_TOPK, O_TOPP, O_PRINT_IDS, O_TOKENIZER, O_MAX_BATCHES, O_HF, O_STOP_AT, O_PRECISION, O_PROFILE, O_LAST
};

#define COMMON_OPTS \
    {"help", no_argument, 0, O_HELP}, {"seed", required_argument, 0, O_SEED}, \
    {"device", required_argument, 0, O_DEVICE}, {"threads", required_argument, 0, O_THREADS}, \
    {"precision", required_argument, 0, O_PRECISION}
#define SIZE_OPTS \
    {"preset", required_argument, 0, O_PRESET}, {"layers", required_argument, 0, O_LAYERS}, \
    {"dim", required_argument, 0, O_DIM}, {"expand-ratio", required_argument, 0, O_EXPAND}, \
    {"vocab", required_argument, 0, O_VOCAB}, {"mlp-width", required_argument, 0, O_MLP}, \
    {"tie-embeddings", no_argument, 0, O_TIE}, {"no-lower-bound", no_argument, 0, O_NO_LB}, \
    {"batch", required_argument, 0, O_BATCH}, {"seq-len", required_argument, 0, O_SEQ}

// The values of SIZE_OPTS (0: not given).
typedef struct { int64_t layers, dim, expand, vocab, mlp, B, T; int tie, nolb; } SizeArgs;
// Takes option c when it is one of SIZE_OPTS; returns whether it was.
static int size_arg(int c, SizeArgs *z) {
    switch (c) {
    case O_LAYERS: z->layers = arg_int("--layers", optarg, 1, 1024); return 1;
    case O_DIM: z->dim = arg_int("--dim", optarg, 1, 65536); return 1;
    case O_EXPAND: z->expand = arg_int("--expand-ratio", optarg, 1, 65536); return 1;
    case O_VOCAB: z->vocab = arg_int("--vocab", optarg, 2, 1 << 24); return 1;
    case O_MLP: z->mlp = arg_int("--mlp-width", optarg, 1, 1 << 20); return 1;
    case O_TIE: z->tie = 1; return 1;
    case O_NO_LB: z->nolb = 1; return 1;
    case O_BATCH: z->B = arg_int("--batch", optarg, 1, 1 << 20); return 1;
    case O_SEQ: z->T = arg_int("--seq-len", optarg, 1, 1 << 24); return 1;
    }
    return 0;
}
// The model of a preset with the size flags applied; vocab is the vocabulary when --vocab is absent.
static Config preset_config(const Preset *ps, const SizeArgs *z, int vocab) {
    return (Config){.V = (int)(z->vocab ? z->vocab : vocab), .D = (int)(z->dim ? z->dim : ps->D),
                    .L = (int)(z->layers ? z->layers : ps->L), .K = (int)(z->expand ? z->expand : ps->K),
                    .I = (int)z->mlp, .tie = z->tie || ps->tie, .lower_bound = !z->nolb, .eps = 1e-6};
}

// Ctrl-C (SIGINT) or SIGTERM during training: finish the step, save a checkpoint, stop. A second signal
// while that happens takes the default action; the checkpoint's write-and-rename keeps the last one whole.
static volatile sig_atomic_t g_stop_signal = 0;
static void on_stop_signal(int sig) {
    g_stop_signal = sig;
    signal(sig, SIG_DFL);
}

static const char *TRAIN_USAGE =
    "hgrn2 train [--task bible|text|pile|wiki103] [--preset NAME] [--data DIR] [--out DIR] [--steps N] [options]";
static const char *TRAIN_HELP =
    "Train an HGRN2 language model. With no arguments: a 3.5M-parameter byte-level model on the King James\n"
    "Bible (prepared into " DEFAULT_BIBLE_DATA " on first use), saved to " DEFAULT_OUT ".\n"
    "\n"
    "Task and files:\n"
    "  --task NAME          bible (default: the built-in corpus), text (any prepared --data), pile, wiki103\n"
    "  --preset NAME        tiny (default for bible/text), pile-150m, pile-385m, pile-1b, pile-3b, wiki103-44m\n"
    "  --data DIR           prepared shards (hgrn2 prepare); required for text, pile and wiki103\n"
    "  --out DIR            run directory: model.ckpt, log.tsv (default " DEFAULT_OUT ")\n"
    "  --resume             continue the run in --out (or --ckpt PATH) exactly where it stopped\n"
    "  --ckpt PATH          the checkpoint --resume reads (default OUT/model.ckpt)\n"
    "  --init PATH          start a new run from the weights of a checkpoint (fine-tuning)\n"
    "  --steps N            optimizer steps in all (with --resume: the new total)\n"
    "Model size (override the preset):\n"
    "  --layers N --dim N --expand-ratio N (key dim per head; heads = dim / expand-ratio)\n"
    "  --vocab N (default: the data's) --mlp-width N (default fla's) --tie-embeddings --no-lower-bound\n"
    "Optimization:\n"
    "  --batch B --seq-len T --accum N (micro-batches per step)\n"
    "  --lr X --min-lr X (cosine floor, default lr/10) --warmup N --schedule cosine|invsqrt|constant\n"
    "  --wd X (AdamW decay; never on norms and lower bounds) --beta1 X --beta2 X --adam-eps X --clip X (0: off)\n"
    "Progress:\n"
    "  --eval-every N (held-out loss every N steps, 0: only at the end) --eval-batches N (0: whole split)\n"
    "  --ckpt-every N (0: only at the end) --log-every N\n"
    "  --stop-at N          save and stop after step N, as if interrupted (a later --resume continues);\n"
    "                       Ctrl-C also saves and stops after the step in progress\n"
    "Machine:\n"
    "  --device cpu|cuda --threads N (default: all cores) --seed N\n"
    "  --precision bf16|tf32|fp32   GPU tensor-core precision (default bf16; fp32 is exact and slow)\n";

static void print_help(const char *usage, const char *help) { printf("usage: %s\n\n%s", usage, help); }

static int cmd_train(int argc, char **argv) {
    static const struct option opts[] = {
        COMMON_OPTS, SIZE_OPTS,
        {"task", required_argument, 0, O_TASK}, {"data", required_argument, 0, O_DATA},
        {"out", required_argument, 0, O_OUT}, {"steps", required_argument, 0, O_STEPS},
        {"ckpt", required_argument, 0, O_CKPT}, {"resume", no_argument, 0, O_RESUME},
        {"init", required_argument, 0, O_INIT}, {"accum", required_argument, 0, O_ACCUM},
        {"lr", required_argument, 0, O_LR}, {"min-lr", required_argument, 0, O_MIN_LR},
        {"warmup", required_argument, 0, O_WARMUP}, {"schedule", required_argument, 0, O_SCHED},
        {"wd", required_argument, 0, O_WD}, {"beta1", required_argument, 0, O_BETA1},
        {"beta2", required_argument, 0, O_BETA2}, {"adam-eps", required_argument, 0, O_ADAM_EPS},
        {"clip", required_argument, 0, O_CLIP}, {"eval-every", required_argument, 0, O_EVAL_EVERY},
        {"eval-batches", required_argument, 0, O_EVAL_BATCHES}, {"ckpt-every", required_argument, 0, O_CKPT_EVERY},
        {"log-every", required_argument, 0, O_LOG_EVERY}, {"stop-at", required_argument, 0, O_STOP_AT},
        {0, 0, 0, 0}};
    g_prog = "hgrn2 train";
    g_usage = TRAIN_USAGE;
    const char *task = "bible", *preset_name = NULL, *data = NULL, *out = DEFAULT_OUT, *ckpt = NULL, *init = NULL;
    const char *device = "cpu";
    int set[O_LAST] = {0};
    SizeArgs z = {0};
    int64_t steps = 0, accum = 1, warmup = -1;
    int64_t eval_every = -1, eval_batches = 20, ckpt_every = -1, log_every = 1, threads = 0, stop_at = 0;
    double lr = 0, min_lr = -1, wd = -1, beta1 = -1, beta2 = -1, adam_eps = 1e-8, clip = 1.0;
    uint64_t seed = 1337;
    int sched = -1;
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        if (c >= 0 && c < O_LAST) set[c] = 1;
        if (size_arg(c, &z)) continue;
        switch (c) {
        case O_HELP: print_help(TRAIN_USAGE, TRAIN_HELP); return 0;
        case O_TASK: task = optarg; break;
        case O_PRESET: preset_name = optarg; break;
        case O_DATA: data = optarg; break;
        case O_OUT: out = optarg; break;
        case O_STEPS: steps = arg_int("--steps", optarg, 1, INT64_C(1) << 40); break;
        case O_CKPT: ckpt = optarg; break;
        case O_RESUME: break;
        case O_INIT: init = optarg; break;
        case O_SEED: seed = (uint64_t)arg_int("--seed", optarg, 0, INT64_MAX); break;
        case O_DEVICE: device = optarg; break;
        case O_PRECISION: g_precision = optarg; break;
        case O_THREADS: threads = arg_int("--threads", optarg, 1, 4096); break;
        case O_ACCUM: accum = arg_int("--accum", optarg, 1, 1 << 20); break;
        case O_LR: lr = arg_num("--lr", optarg, 1e-12, 10); break;
        case O_MIN_LR: min_lr = arg_num("--min-lr", optarg, 0, 10); break;
        case O_WARMUP: warmup = arg_int("--warmup", optarg, 0, INT64_C(1) << 40); break;
        case O_SCHED:
            for (sched = 0; sched < 3 && strcmp(optarg, SCHED_NAMES[sched]); sched++) {}
            if (sched == 3) usage_error("--schedule must be cosine, invsqrt or constant, got '%s'", optarg);
            break;
        case O_WD: wd = arg_num("--wd", optarg, 0, 10); break;
        case O_BETA1: beta1 = arg_num("--beta1", optarg, 0, 0.999999); break;
        case O_BETA2: beta2 = arg_num("--beta2", optarg, 0, 0.99999999); break;
        case O_ADAM_EPS: adam_eps = arg_num("--adam-eps", optarg, 1e-30, 1); break;
        case O_CLIP: clip = arg_num("--clip", optarg, 0, 1e9); break;
        case O_EVAL_EVERY: eval_every = arg_int("--eval-every", optarg, 0, INT64_C(1) << 40); break;
        case O_EVAL_BATCHES: eval_batches = arg_int("--eval-batches", optarg, 0, INT64_C(1) << 40); break;
        case O_CKPT_EVERY: ckpt_every = arg_int("--ckpt-every", optarg, 0, INT64_C(1) << 40); break;
        case O_LOG_EVERY: log_every = arg_int("--log-every", optarg, 1, INT64_C(1) << 40); break;
        case O_STOP_AT: stop_at = arg_int("--stop-at", optarg, 1, INT64_C(1) << 40); break;
        default: bad_option(argv, c);
        }
    }
    if (optind < argc) usage_error("unexpected argument '%s'", argv[optind]);
    select_device(device);
    if (threads) omp_set_num_threads((int)threads);
    if (strcmp(task, "bible") && strcmp(task, "text") && strcmp(task, "pile") && strcmp(task, "wiki103"))
        usage_error("--task must be bible, text, pile or wiki103, got '%s'", task);
    int resume = set[O_RESUME];
    if (resume && init) usage_error("--resume and --init exclude each other");
    if (ckpt && !resume) usage_error("--ckpt names the checkpoint to --resume from; to start from weights use --init");
    if (resume || init) {
        static const int fixed[] = {O_TASK, O_PRESET, O_LAYERS, O_DIM, O_EXPAND, O_VOCAB, O_MLP, O_TIE, O_NO_LB};
        static const char *names[] = {"--task", "--preset", "--layers", "--dim", "--expand-ratio", "--vocab",
                                      "--mlp-width", "--tie-embeddings", "--no-lower-bound"};
        for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
            if (set[fixed[i]]) usage_error("%s cannot be given with %s: the model comes from the checkpoint", names[i], resume ? "--resume" : "--init");
    }
    if (resume) {
        static const int fixed[] = {O_BATCH, O_SEQ, O_ACCUM, O_LR, O_MIN_LR, O_WARMUP, O_SCHED, O_WD, O_BETA1,
                                    O_BETA2, O_ADAM_EPS, O_CLIP, O_SEED};
        for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
            if (set[fixed[i]]) usage_error("optimization settings cannot change on --resume (only --steps and the progress flags can): the run continues with its saved settings");
    }

    Model model = {0};
    RunState rs;
    memset(&rs, 0, sizeof rs);
    char ckpt_path[4200];
    snprintf(ckpt_path, sizeof ckpt_path, "%s/model.ckpt", out);

    if (resume) {
        const char *from = ckpt ? ckpt : ckpt_path;
        checkpoint_load(from, &model, &rs, 1);
        if (set[O_STEPS]) {
            if (steps < rs.step) usage_error("--steps %lld is below the %lld steps already done", (long long)steps, (long long)rs.step);
            rs.h.steps = steps;
        }
        if (!data) data = rs.data;
        printf("resuming %s at step %lld of %lld\n", from, (long long)rs.step, (long long)rs.h.steps);
    } else {
        const Preset *ps = preset_find(preset_name ? preset_name : task_default_preset(task));
        if (!ps) {
            fprintf(stderr, "hgrn2 train: unknown preset '%s'; the presets are:\n", preset_name);
            for (int i = 0; i < NPRESETS; i++) fprintf(stderr, "  %-12s %s\n", PRESETS[i].name, PRESETS[i].about);
            exit(EXIT_USAGE);
        }
        rs.h = (Hyper){.B = (int)(z.B ? z.B : ps->B), .T = (int)(z.T ? z.T : ps->T), .accum = (int)accum,
                       .steps = steps ? steps : ps->steps, .lr = lr ? lr : ps->lr,
                       .wd = wd >= 0 ? wd : ps->wd, .beta1 = beta1 >= 0 ? beta1 : ps->beta1,
                       .beta2 = beta2 >= 0 ? beta2 : ps->beta2, .adam_eps = adam_eps, .clip = clip,
                       .warmup = warmup >= 0 ? warmup : ps->warmup, .sched = sched >= 0 ? sched : ps->sched,
                       .seed = seed};
        rs.h.min_lr = min_lr >= 0 ? min_lr : rs.h.lr / 10;
        if (rs.h.warmup > rs.h.steps) rs.h.warmup = rs.h.steps;
        rs.c = preset_config(ps, &z, 0);
        Config probe = rs.c;             // check the sizes now, before any data is touched
        if (!probe.V) probe.V = 256;
        const char *bad = config_finish(&probe);
        if (bad) usage_error("%s", bad);
        if (!data) {
            if (!strcmp(task, "bible")) data = DEFAULT_BIBLE_DATA;
            else usage_error("--task %s needs --data DIR (shards made by 'hgrn2 prepare')", task);
        }
    }

    if (!resume && !strcmp(task, "bible") && !strcmp(data, DEFAULT_BIBLE_DATA)) prepare_bible(data);
    if (!data_has_split(data, "train"))
        die("no training shards in %s: run 'hgrn2 prepare --out %s ...' first", data, data);
    Loader *train_ld = loader_open(data, "train", rs.h.B, rs.h.T, 1, rs.h.seed);
    Loader *val_ld = data_has_split(data, "val") ? loader_open(data, "val", rs.h.B, rs.h.T, 0, 0) : NULL;
    int data_vocab = (int)loader_vocab(train_ld);
    char spec[1024] = "";
    if (!data_tokenizer_spec(data, spec, sizeof spec)) snprintf(spec, sizeof spec, "%s", loader_tokenizer(train_ld));

    if (!resume) {
        if (init) {
            RunState from;
            checkpoint_load(init, &model, &from, 0);
            rs.c = from.c;
            printf("initialising from the weights of %s\n", init);
        } else {
            rs.c.V = (int)(z.vocab ? z.vocab : data_vocab);
        }
        const char *bad = config_finish(&rs.c);
        if (bad) usage_error("%s", bad);
        if (!init) { model_alloc(&model, &rs.c); model_init(&model, rs.h.seed); }
        model_to_device(&model);
        model_alloc_training(&model);
        rs.step = 0;
        rs.loader = loader_get_state(train_ld);
        snprintf(rs.tokenizer, sizeof rs.tokenizer, "%s", spec);
        snprintf(rs.data, sizeof rs.data, "%s", data);
    } else {
        model_to_device(&model);
        model_alloc_training(&model);
        loader_set_state(train_ld, rs.loader);
    }
    if (rs.c.V < data_vocab)
        die("the data in %s has a vocabulary of %d but the model only %d ids", data, data_vocab, rs.c.V);
    mkdir_p(out);

    const Config *cf = &model.c;
    const Hyper *h = &rs.h;
    if (eval_every < 0) eval_every = h->steps >= 10 ? h->steps / 4 : 0;
    if (ckpt_every < 0) ckpt_every = h->steps >= 10 ? h->steps / 4 : 0;
    Acts acts, eacts;
    acts_alloc(&acts, cf, h->B, h->T, 1);
    if (val_ld) acts_alloc(&eacts, cf, h->B, h->T, 0);

    printf("+--------------+----------------------------------------------------------\n");
    printf("| task         | %s, data %s (%llu train tokens%s), tokenizer %s\n", task, data,
           (unsigned long long)loader_ntokens(train_ld), val_ld ? "" : ", no validation split", rs.tokenizer);
    print_config(cf, &model.lay, stdout);
    printf("| batch        | %d x %d tokens x %d accumulation = %lld tokens per step\n", h->B, h->T, h->accum,
           (long long)h->B * h->T * h->accum);
    printf("| optimizer    | AdamW lr %g (%s, warmup %lld, min %g), betas (%g, %g), eps %g, wd %g, clip %g\n",
           h->lr, SCHED_NAMES[h->sched], (long long)h->warmup, h->min_lr, h->beta1, h->beta2, h->adam_eps, h->wd, h->clip);
    printf("| steps        | %lld (eval every %lld, checkpoint every %lld)\n", (long long)h->steps,
           (long long)eval_every, (long long)ckpt_every);
    printf("| memory       | parameters+grads+AdamW %.1f MiB, activations %.1f MiB\n",
           bytes_mib(model.lay.n * 4 * (int64_t)sizeof(real)), bytes_mib(acts.bytes + (val_ld ? eacts.bytes : 0)));
    if (g_gpu) printf("| machine      | %s, out %s\n", device_name(), out);
    else printf("| machine      | cpu, %d threads, out %s\n", omp_get_max_threads(), out);
    printf("+--------------+----------------------------------------------------------\n");
    fflush(stdout);

    char log_path[4200];
    snprintf(log_path, sizeof log_path, "%s/log.tsv", out);
    FILE *logf = fopen(log_path, resume ? "a" : "w");
    if (!logf) die("cannot write %s: %s", log_path, strerror(errno));
    if (!resume) fprintf(logf, "step\ttrain_loss\tval_loss\tlr\tgrad_norm\n");

    int64_t N = (int64_t)h->B * h->T;
    int32_t *buf = xmalloc((size_t)h->B * (h->T + 1) * sizeof(int32_t));
    int32_t *inp = xmalloc((size_t)N * sizeof(int32_t)), *tgt = xmalloc((size_t)N * sizeof(int32_t));
    double t_start = now_s(), t_first = -1, loss = NAN, val_loss = NAN, first_loss = NAN;
    int64_t step0 = rs.step;
    double tok_per_s = 0;

    int64_t last_step = stop_at && stop_at < h->steps ? stop_at : h->steps;
    signal(SIGINT, on_stop_signal);
    signal(SIGTERM, on_stop_signal);
    while (rs.step < last_step) {
        int64_t step = rs.step + 1;
        double t0 = now_s();
        OP(zero, model.grads, model.lay.n);
        double loss_sum = 0;
        for (int micro = 0; micro < h->accum; micro++) {
            loader_next(train_ld, buf);
            split_batch(buf, h->B, h->T, cf->V, inp, tgt, "the training data");
            int64_t cnt;
            double s = model_forward(&model, &acts, inp, tgt, NULL, NULL, 0, 1.0 / ((double)N * h->accum), &cnt);
            model_backward(&model, &acts, inp);
            loss_sum += s / (double)(cnt ? cnt : 1);
        }
        loss = loss_sum / h->accum;
        double gnorm = grad_norm(&model);
        if (!isfinite(loss) || !isfinite(gnorm))
            die("training diverged at step %lld (loss %g, grad norm %g); lower --lr or raise --warmup; the last "
                "checkpoint in %s is intact", (long long)step, loss, gnorm, out);
        double scale = (h->clip > 0 && gnorm > h->clip) ? h->clip / gnorm : 1.0;
        double lr_now = lr_at(h, step);
        adamw_step(&model, h, lr_now, scale, step);
        rs.step = step;
        rs.loader = loader_get_state(train_ld);
        double dt = now_s() - t0;
        if (t_first < 0) { t_first = now_s() - t_start; first_loss = loss; }
        tok_per_s = (double)N * h->accum / dt;

        int do_eval = val_ld && ((eval_every && step % eval_every == 0) || step == h->steps);
        if (do_eval) val_loss = evaluate(&model, &eacts, val_ld, eval_batches, NULL, NULL, NULL);
        if (step % log_every == 0 || step == h->steps || do_eval) {
            double elapsed = now_s() - t_start, eta = elapsed / (double)(step - step0) * (double)(h->steps - step);
            char etas[32];
            fmt_duration(etas, sizeof etas, eta);
            printf("step %6lld/%lld | loss %.4f | lr %.2e | grad norm %.3f | %.0f tok/s", (long long)step,
                   (long long)h->steps, loss, lr_now, gnorm, tok_per_s);
            if (g_gpu) printf(" | MFU %.1f%%", 100 * 6.0 * (double)model.lay.n * tok_per_s / 989e12);
            printf(" | ETA %s", etas);
            if (do_eval) printf(" | val loss %.4f", val_loss);
            printf("\n");
            fflush(stdout);
        }
        fprintf(logf, "%lld\t%.9g\t", (long long)step, loss);
        if (do_eval) fprintf(logf, "%.9g", val_loss);
        fprintf(logf, "\t%.9g\t%.9g\n", lr_now, gnorm);
        fflush(logf);
        if ((ckpt_every && step % ckpt_every == 0) || step == last_step || g_stop_signal)
            checkpoint_save(ckpt_path, &model, &rs, 1);
        if (g_stop_signal) {
            printf("%s: saved %s at step %lld of %lld; continue with: hgrn2 train --resume --out %s\n",
                   g_stop_signal == SIGINT ? "interrupted" : "terminated", ckpt_path, (long long)rs.step,
                   (long long)h->steps, out);
            fclose(logf);
            return 128 + g_stop_signal;
        }
    }
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    if (rs.step < h->steps) printf("stopped at step %lld of %lld; continue with --resume\n", (long long)rs.step, (long long)h->steps);
    if (rs.step == step0) {                 // nothing to do: still leave a checkpoint behind
        checkpoint_save(ckpt_path, &model, &rs, 1);
        printf("the run is already at step %lld of %lld\n", (long long)rs.step, (long long)h->steps);
    }
    double total = now_s() - t_start;
    char tot[32];
    fmt_duration(tot, sizeof tot, total);
    printf("done: %lld steps in %s (first step %.2f s), %.0f tokens/s, train loss %.4f (first %.4f)",
           (long long)(rs.step - step0), tot, t_first, (double)(rs.step - step0) * N * h->accum / total, loss, first_loss);
    if (val_ld) printf(", held-out loss %.4f", val_loss);
    if (g_gpu) printf(", peak GPU memory %.0f MiB", dev_peak_mib());
    printf("\nsaved %s\n", ckpt_path);
    fclose(logf);
    free(buf); free(inp); free(tgt);
    acts_free(&acts);
    if (val_ld) { acts_free(&eacts); loader_close(val_ld); }
    loader_close(train_ld);
    model_free(&model);
    return 0;
}

// ----------------------------------------------------------------------------------------------------------
// hgrn2 eval

static const char *EVAL_USAGE = "hgrn2 eval [--ckpt PATH] [--data DIR] [--split val|train] | --ids FILE [--logits OUT] [--tokenizer PATH]";
static const char *EVAL_HELP =
    "Report the mean next-token loss, the perplexity and bits per byte (from the tokenizer: the bytes of\n"
    "text the predicted tokens stand for).\n"
    "The last line printed is 'loss X'.\n"
    "\n"
    "  --ckpt PATH          the model (default " DEFAULT_OUT "/model.ckpt)\n"
    "  --data DIR           prepared shards (default: the data the model was trained on)\n"
    "  --split NAME         val (default) or train\n"
    "  --batch B --seq-len T  evaluation windows (default: the training shape); every token after the first\n"
    "                       of the split is predicted exactly once\n"
    "  --max-batches N      stop after N batches (default 0: the whole split)\n"
    "  --ids FILE           instead of shards: one sequence of token ids per line, whitespace-separated\n"
    "  --logits OUT         with --ids: write the logits as little-endian float32 [sequences, T, V]\n"
    "                       (all sequences must have the same length T)\n"
    "  --tokenizer PATH     the tokenizer for bits per byte (default: the model's, when its files are here)\n"
    "  --threads N --device cpu|cuda --precision bf16|tf32|fp32 (GPU; default bf16)\n";

// Reads FILE: one sequence of ids per line. Returns the number of sequences; seqs/lens are allocated.
static int64_t read_id_file(const char *path, int V, int32_t ***seqs, int64_t **lens) {
    FILE *f = fopen(path, "r");
    if (!f) die("cannot open %s: %s", path, strerror(errno));
    int64_t n = 0, cap = 0, lineno = 0;
    *seqs = NULL; *lens = NULL;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t got;
    while ((got = getline(&line, &lcap, f)) != -1) {
        lineno++;
        int32_t *ids = NULL;
        int64_t k = 0, kcap = 0;
        char *p = line;
        for (;;) {
            while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
            if (!*p) break;
            char *end;
            errno = 0;
            long long v = strtoll(p, &end, 10);
            if (end == p || errno || (*end && !strchr(" \t\r\n", *end)))
                die("%s line %lld: '%.20s' is not a token id", path, (long long)lineno, p);
            if (v < 0 || v >= V) die("%s line %lld: token id %lld is outside the vocabulary [0, %d)", path, (long long)lineno, v, V);
            if (k == kcap) { kcap = kcap ? 2 * kcap : 64; ids = xrealloc(ids, (size_t)kcap * sizeof(int32_t)); }
            ids[k++] = (int32_t)v;
            p = end;
        }
        if (!k) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            *seqs = xrealloc(*seqs, (size_t)cap * sizeof(int32_t *));
            *lens = xrealloc(*lens, (size_t)cap * sizeof(int64_t));
        }
        (*seqs)[n] = ids;
        (*lens)[n] = k;
        n++;
    }
    if (ferror(f)) die("reading %s failed: %s", path, strerror(errno));
    free(line);
    fclose(f);
    if (!n) die("%s holds no token ids", path);
    return n;
}

static int cmd_eval(int argc, char **argv) {
    static const struct option opts[] = {
        COMMON_OPTS, {"ckpt", required_argument, 0, O_CKPT}, {"data", required_argument, 0, O_DATA},
        {"split", required_argument, 0, O_SPLIT}, {"batch", required_argument, 0, O_BATCH},
        {"seq-len", required_argument, 0, O_SEQ}, {"max-batches", required_argument, 0, O_MAX_BATCHES},
        {"ids", required_argument, 0, O_IDS}, {"logits", required_argument, 0, O_LOGITS},
        {"tokenizer", required_argument, 0, O_TOKENIZER}, {0, 0, 0, 0}};
    g_prog = "hgrn2 eval";
    g_usage = EVAL_USAGE;
    const char *ckpt = DEFAULT_OUT "/model.ckpt", *data = NULL, *split = "val", *ids_path = NULL, *logits_path = NULL;
    const char *device = "cpu", *tok_spec = NULL;
    int64_t B = 0, T = 0, max_batches = 0, threads = 0;
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case O_HELP: print_help(EVAL_USAGE, EVAL_HELP); return 0;
        case O_CKPT: ckpt = optarg; break;
        case O_DATA: data = optarg; break;
        case O_SPLIT:
            if (strcmp(optarg, "val") && strcmp(optarg, "train")) usage_error("--split must be val or train, got '%s'", optarg);
            split = optarg;
            break;
        case O_BATCH: B = arg_int("--batch", optarg, 1, 1 << 20); break;
        case O_SEQ: T = arg_int("--seq-len", optarg, 1, 1 << 24); break;
        case O_MAX_BATCHES: max_batches = arg_int("--max-batches", optarg, 0, INT64_C(1) << 40); break;
        case O_IDS: ids_path = optarg; break;
        case O_LOGITS: logits_path = optarg; break;
        case O_TOKENIZER: tok_spec = optarg; break;
        case O_SEED: break;
        case O_DEVICE: device = optarg; break;
        case O_PRECISION: g_precision = optarg; break;
        case O_THREADS: threads = arg_int("--threads", optarg, 1, 4096); break;
        default: bad_option(argv, c);
        }
    }
    if (optind < argc) usage_error("unexpected argument '%s'", argv[optind]);
    if (logits_path && !ids_path) usage_error("--logits needs --ids");
    if (ids_path && (data || B || T || max_batches)) usage_error("--ids excludes --data, --batch, --seq-len and --max-batches");
    select_device(device);
    if (threads) omp_set_num_threads((int)threads);

    Model m = {0};
    RunState rs;
    checkpoint_load(ckpt, &m, &rs, 0);
    model_to_device(&m);
    const Config *cf = &m.c;
    // bits per byte need the tokenizer: the one given, else the model's when it can be found
    Tokenizer *tok = NULL;
    if (tok_spec) tok = tokenizer_load(tok_spec);
    else if (!strcmp(rs.tokenizer, "byte") || (rs.tokenizer[0] && file_exists(rs.tokenizer))) tok = tokenizer_load(rs.tokenizer);
    if (tok && tokenizer_vocab_size(tok) > cf->V)
        die("the tokenizer has %d ids but the model only %d", tokenizer_vocab_size(tok), cf->V);
    double sum = 0;
    int64_t count = 0, bytes = 0;
    double t0 = now_s();

    if (ids_path) {
        int32_t **seqs;
        int64_t *lens;
        int64_t ns = read_id_file(ids_path, cf->V, &seqs, &lens);
        FILE *lf = NULL;
        if (logits_path) {
            for (int64_t i = 1; i < ns; i++)
                if (lens[i] != lens[0]) die("--logits needs sequences of one length; %s line %lld has %lld ids, the first %lld",
                                            ids_path, (long long)i + 1, (long long)lens[i], (long long)lens[0]);
            lf = fopen(logits_path, "wb");
            if (!lf) die("cannot create %s: %s", logits_path, strerror(errno));
        }
        Acts a = {0};
        float *lbuf = NULL;
        for (int64_t i = 0; i < ns; i++) {
            int64_t n = lens[i];
            if (!a.mem || a.T != n) { if (a.mem) acts_free(&a); acts_alloc(&a, cf, 1, (int)n, 0); }
            int32_t *tgt = xmalloc((size_t)n * sizeof(int32_t));
            for (int64_t t = 0; t < n; t++) tgt[t] = t + 1 < n ? seqs[i][t + 1] : -1;
            real *logits = lf ? xmalloc((size_t)(n * cf->V) * sizeof(real)) : NULL;
            int64_t cnt;
            sum += model_forward(&m, &a, seqs[i], tgt, NULL, logits, 0, 0, &cnt);
            count += cnt;
            if (tok) bytes += target_bytes(tok, tgt, n);
            if (lf) {
                lbuf = xrealloc(lbuf, (size_t)(n * cf->V) * sizeof(float));
                for (int64_t j = 0; j < n * cf->V; j++) lbuf[j] = (float)logits[j];
                if (fwrite(lbuf, sizeof(float), (size_t)(n * cf->V), lf) != (size_t)(n * cf->V))
                    die("writing %s failed: %s", logits_path, strerror(errno));
            }
            free(logits); free(tgt); free(seqs[i]);
        }
        if (lf && fclose(lf) != 0) die("writing %s failed: %s", logits_path, strerror(errno));
        free(lbuf); free(seqs); free(lens);
        if (a.mem) acts_free(&a);
        printf("%lld sequences from %s, %lld predicted positions\n", (long long)ns, ids_path, (long long)count);
    } else {
        if (!data) data = rs.data;
        if (!data_has_split(data, split)) die("no %s shards in %s (pass --data DIR)", split, data);
        Loader *ld = loader_open(data, split, (int)(B ? B : rs.h.B), (int)(T ? T : rs.h.T), 0, 0);
        if (loader_vocab(ld) > (uint32_t)cf->V) die("the data in %s has a vocabulary of %u but the model only %d ids", data, loader_vocab(ld), cf->V);
        Acts a;
        acts_alloc(&a, cf, (int)(B ? B : rs.h.B), (int)(T ? T : rs.h.T), 0);
        double mean = evaluate(&m, &a, ld, max_batches, &count, tok, &bytes);
        sum = mean * count;
        printf("%s split of %s: %lld predicted tokens in windows of %d\n", split, data, (long long)count, a.T);
        acts_free(&a);
        loader_close(ld);
    }
    if (!count) die("nothing to evaluate: no sequence has two or more tokens");
    double loss = sum / count;
    printf("perplexity %.4f", exp(loss));
    if (tok && bytes > 0) printf(" | bits per byte %.4f (%lld bytes)", sum / log(2.0) / (double)bytes, (long long)bytes);
    printf(" | %.0f tokens/s\n", count / (now_s() - t0));
    printf("loss %.6f\n", loss);
    if (tok) tokenizer_free(tok);
    model_free(&m);
    return 0;
}

// ----------------------------------------------------------------------------------------------------------
// hgrn2 sample

static const char *SAMPLE_USAGE =
    "hgrn2 sample [--ckpt PATH] [--prompt TEXT | --prompt-ids \"1 2 3\"] [-n N] [--temperature X] [--top-k K] [--top-p P]";
static const char *SAMPLE_HELP =
    "Generate text: the prompt is prefilled in one pass over all its tokens, then each token advances the\n"
    "recurrent state by one step (constant memory per token). Text is streamed as it is generated.\n"
    "\n"
    "  --ckpt PATH          the model (default " DEFAULT_OUT "/model.ckpt)\n"
    "  --prompt TEXT        the text to continue (default: the beginning-of-text token, or a newline)\n"
    "  --prompt-ids IDS     the prompt as token ids, space-separated\n"
    "  -n, --tokens N       tokens to generate (default 256)\n"
    "  --temperature X      0 is greedy (default 0.8)\n"
    "  --top-k K            sample among the K most likely tokens (default 0: all)\n"
    "  --top-p P            nucleus sampling: the smallest set with probability >= P (default 1: all)\n"
    "  --seed N             random seed (default 1337)\n"
    "  --ids                print only the generated ids, space-separated, on one line\n"
    "  --tokenizer PATH     override the tokenizer the model was trained with (a directory or tokenizer.json)\n"
    "  --threads N --device cpu|cuda --precision bf16|tf32|fp32 (GPU; default bf16)\n";

typedef struct { double p; int32_t id; } Cand;
static int cand_cmp(const void *a, const void *b) {
    const Cand *x = a, *y = b;
    if (x->p != y->p) return x->p < y->p ? 1 : -1;
    return x->id < y->id ? -1 : x->id > y->id;
}

// One token from logits[V]: greedy at temperature 0, else softmax(logits / temperature) cut to top-k/top-p.
static int32_t sample_token(const real *logits, int V, double temp, int topk, double topp, uint64_t *rng, Cand *c) {
    if (temp <= 0) {
        int32_t best = 0;
        for (int i = 1; i < V; i++) if (logits[i] > logits[best]) best = i;
        return best;
    }
    double mx = logits[0];
    for (int i = 1; i < V; i++) if (logits[i] > mx) mx = logits[i];
    double z = 0;
    for (int i = 0; i < V; i++) { c[i].p = exp((logits[i] - mx) / temp); c[i].id = i; z += c[i].p; }
    int n = V;
    if ((topk > 0 && topk < V) || topp < 1) {
        qsort(c, (size_t)V, sizeof *c, cand_cmp);
        if (topk > 0 && topk < n) n = topk;
        if (topp < 1) {
            double cum = 0;
            for (int i = 0; i < n; i++) { cum += c[i].p / z; if (cum >= topp) { n = i + 1; break; } }
        }
        z = 0;
        for (int i = 0; i < n; i++) z += c[i].p;
    }
    double u = rng_uniform(rng) * z, cum = 0;
    for (int i = 0; i < n; i++) { cum += c[i].p; if (u < cum) return c[i].id; }
    return c[n - 1].id;
}

static int cmd_sample(int argc, char **argv) {
    static const struct option opts[] = {
        COMMON_OPTS, {"ckpt", required_argument, 0, O_CKPT}, {"prompt", required_argument, 0, O_PROMPT},
        {"prompt-ids", required_argument, 0, O_PROMPT_IDS}, {"tokens", required_argument, 0, 'n'},
        {"temperature", required_argument, 0, O_TEMP}, {"top-k", required_argument, 0, O_TOPK},
        {"top-p", required_argument, 0, O_TOPP}, {"ids", no_argument, 0, O_PRINT_IDS},
        {"tokenizer", required_argument, 0, O_TOKENIZER}, {0, 0, 0, 0}};
    g_prog = "hgrn2 sample";
    g_usage = SAMPLE_USAGE;
    const char *ckpt = DEFAULT_OUT "/model.ckpt", *prompt = NULL, *prompt_ids = NULL, *tok_spec = NULL;
    const char *device = "cpu";
    int64_t ntok = 256, topk = 0, threads = 0;
    double temp = 0.8, topp = 1.0;
    uint64_t seed = 1337;
    int print_ids = 0, c;
    optind = 0;
    while ((c = getopt_long(argc, argv, ":hn:", opts, NULL)) != -1) {
        switch (c) {
        case O_HELP: print_help(SAMPLE_USAGE, SAMPLE_HELP); return 0;
        case O_CKPT: ckpt = optarg; break;
        case O_PROMPT: prompt = optarg; break;
        case O_PROMPT_IDS: prompt_ids = optarg; break;
        case 'n': ntok = arg_int("--tokens", optarg, 0, INT64_C(1) << 40); break;
        case O_TEMP: temp = arg_num("--temperature", optarg, 0, 100); break;
        case O_TOPK: topk = arg_int("--top-k", optarg, 0, 1 << 24); break;
        case O_TOPP: topp = arg_num("--top-p", optarg, 1e-9, 1); break;
        case O_PRINT_IDS: print_ids = 1; break;
        case O_TOKENIZER: tok_spec = optarg; break;
        case O_SEED: seed = (uint64_t)arg_int("--seed", optarg, 0, INT64_MAX); break;
        case O_DEVICE: device = optarg; break;
        case O_PRECISION: g_precision = optarg; break;
        case O_THREADS: threads = arg_int("--threads", optarg, 1, 4096); break;
        default: bad_option(argv, c);
        }
    }
    if (optind < argc) usage_error("unexpected argument '%s'", argv[optind]);
    if (prompt && prompt_ids) usage_error("--prompt and --prompt-ids exclude each other");
    select_device(device);
    if (threads) omp_set_num_threads((int)threads);

    Model m = {0};
    RunState rs;
    checkpoint_load(ckpt, &m, &rs, 0);
    model_to_device(&m);
    const Config *cf = &m.c;
    // The tokenizer is needed for a text prompt or text output; ids in and ids out need none.
    Tokenizer *tok = NULL;
    if (!print_ids || !prompt_ids) tok = tokenizer_load(tok_spec ? tok_spec : rs.tokenizer);
    if (tok && tokenizer_vocab_size(tok) > cf->V)
        die("the tokenizer has %d ids but the model only %d", tokenizer_vocab_size(tok), cf->V);

    IdBuf pr = {0};
    if (prompt_ids) {
        const char *p = prompt_ids;
        for (;;) {
            while (*p == ' ' || *p == '\t' || *p == ',') p++;
            if (!*p) break;
            char *end;
            errno = 0;
            long long v = strtoll(p, &end, 10);
            if (end == p || errno) usage_error("--prompt-ids: '%s' is not a list of token ids", prompt_ids);
            if (v < 0 || v >= cf->V) die("--prompt-ids: token id %lld is outside the vocabulary [0, %d)", v, cf->V);
            idbuf_push(&pr, (int32_t)v);
            p = end;
        }
    } else if (prompt) {
        tokenizer_encode(tok, prompt, strlen(prompt), &pr);
    }
    if (!pr.n) {
        int32_t start = tok ? tokenizer_bos(tok) : -1;
        if (start < 0 && tok) start = tokenizer_eot(tok);
        if (start >= 0) idbuf_push(&pr, start);
        else if (tok) tokenizer_encode(tok, "\n", 1, &pr);
        if (!pr.n) idbuf_push(&pr, 0);
    }
    for (size_t i = 0; i < pr.n; i++)
        if (pr.ids[i] >= cf->V) die("the prompt encodes to id %d, outside the model's vocabulary of %d", pr.ids[i], cf->V);

    int64_t state_n = (int64_t)cf->L * cf->H * cf->K * cf->Dv;
    real *states = dev_zeros(state_n, "recurrent state");
    real *logits = xmalloc((size_t)cf->V * sizeof(real));
    Cand *cand = xmalloc((size_t)cf->V * sizeof(Cand));
    Acts pre, one;
    acts_alloc(&pre, cf, 1, (int)pr.n, 0);
    acts_alloc(&one, cf, 1, 1, 0);
    uint64_t rng = seed ^ 0x5DEECE66Dull;
    ByteBuf text = {0};

    if (!print_ids) {
        if (prompt) fputs(prompt, stdout);
        else { tokenizer_decode(tok, pr.ids, pr.n, &text); fwrite(text.data, 1, text.n, stdout); }
        fflush(stdout);
    }
    double t0 = now_s();
    model_forward(&m, &pre, pr.ids, NULL, states, logits, 1, 0, NULL);   // prefill: the state after the prompt
    double t_prefill = now_s() - t0;
    t0 = now_s();
    for (int64_t i = 0; i < ntok; i++) {
        int32_t id = sample_token(logits, cf->V, temp, (int)topk, topp, &rng, cand);
        if (print_ids) printf(i ? " %d" : "%d", id);
        else {
            text.n = 0;
            tokenizer_decode_one(tok, id, 0, &text);
            fwrite(text.data, 1, text.n, stdout);
            fflush(stdout);
        }
        if (i + 1 < ntok) model_forward(&m, &one, &id, NULL, states, logits, 1, 0, NULL);
    }
    double t_gen = now_s() - t0;
    printf("\n");
    if (!print_ids)
        fprintf(stderr, "[prompt %zu tokens in %.3f s, %lld tokens in %.3f s, %.1f tokens/s]\n", pr.n, t_prefill,
                (long long)ntok, t_gen, ntok / (t_gen > 0 ? t_gen : 1e-9));
    free(text.data); free(pr.ids); free(logits); free(cand);
    dev_free(states);
    acts_free(&pre); acts_free(&one);
    if (tok) tokenizer_free(tok);
    model_free(&m);
    return 0;
}

// ----------------------------------------------------------------------------------------------------------
// hgrn2 bench: training speed on random tokens

static const char *BENCH_USAGE = "hgrn2 bench [--preset NAME] [--layers N --dim N ...] [--batch B] [--seq-len T] [--steps N]";
static const char *BENCH_HELP =
    "Time training steps (forward, backward, AdamW) on random tokens; prints the time to the first finished\n"
    "step and the median tokens/s of the rest.\n"
    "\n"
    "  --preset NAME        a preset of 'hgrn2 train' (default tiny), sizes as in train:\n"
    "  --layers N --dim N --expand-ratio N --vocab N (default 50304, or 256 for tiny) --mlp-width N\n"
    "  --tie-embeddings --no-lower-bound --batch B --seq-len T\n"
    "  --steps N            timed steps after the first (default 5)\n"
    "  --profile            (GPU) also time every op of the timed steps and print where the time goes\n"
    "  --threads N --device cpu|cuda --seed N --precision bf16|tf32|fp32 (GPU; default bf16)\n";

static int dbl_cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }

static int cmd_bench(int argc, char **argv) {
    static const struct option opts[] = {COMMON_OPTS, SIZE_OPTS, {"steps", required_argument, 0, O_STEPS},
                                         {"profile", no_argument, 0, O_PROFILE}, {0, 0, 0, 0}};
    g_prog = "hgrn2 bench";
    g_usage = BENCH_USAGE;
    const char *preset_name = "tiny", *device = "cpu";
    int64_t steps = 5, threads = 0;
    int profile = 0;
    uint64_t seed = 1;
    SizeArgs z = {0};
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        if (size_arg(c, &z)) continue;
        switch (c) {
        case O_HELP: print_help(BENCH_USAGE, BENCH_HELP); return 0;
        case O_PRESET: preset_name = optarg; break;
        case O_STEPS: steps = arg_int("--steps", optarg, 1, 1 << 20); break;
        case O_PROFILE: profile = 1; break;
        case O_SEED: seed = (uint64_t)arg_int("--seed", optarg, 0, INT64_MAX); break;
        case O_DEVICE: device = optarg; break;
        case O_PRECISION: g_precision = optarg; break;
        case O_THREADS: threads = arg_int("--threads", optarg, 1, 4096); break;
        default: bad_option(argv, c);
        }
    }
    if (optind < argc) usage_error("unexpected argument '%s'", argv[optind]);
    select_device(device);
    if (profile && !g_gpu) usage_error("--profile times GPU ops; it needs --device cuda");
    if (threads) omp_set_num_threads((int)threads);
    const Preset *ps = preset_find(preset_name);
    if (!ps) usage_error("unknown preset '%s' (see 'hgrn2 train --help')", preset_name);
    double t_start = now_s();
    Config cf = preset_config(ps, &z, !strcmp(ps->name, "tiny") ? 256 : 50304);
    const char *bad = config_finish(&cf);
    if (bad) usage_error("%s", bad);
    Hyper h = {.B = (int)(z.B ? z.B : ps->B), .T = (int)(z.T ? z.T : ps->T), .accum = 1, .steps = steps + 1, .lr = 1e-4,
               .min_lr = 1e-5, .wd = 0.1, .beta1 = 0.9, .beta2 = 0.95, .adam_eps = 1e-8, .clip = 1, .warmup = 0};
    Model m = {0};
    model_alloc(&m, &cf);
    model_init(&m, seed);
    model_to_device(&m);
    model_alloc_training(&m);
    Acts a;
    acts_alloc(&a, &cf, h.B, h.T, 1);
    int64_t N = (int64_t)h.B * h.T;
    int32_t *ids = xmalloc((size_t)(N + 1) * sizeof(int32_t));
    uint64_t rng = seed;
    for (int64_t i = 0; i <= N; i++) ids[i] = (int32_t)(splitmix64(&rng) % (uint64_t)cf.V);
    print_config(&cf, &m.lay, stdout);
    if (g_gpu) printf("| batch        | %d x %d on %s\n", h.B, h.T, device_name());
    else printf("| batch        | %d x %d, cpu with %d threads, memory %.1f MiB\n", h.B, h.T, omp_get_max_threads(),
                bytes_mib(m.lay.n * 4 * (int64_t)sizeof(real) + a.bytes));
    double *times = xmalloc((size_t)(steps + 1) * sizeof(double)), t_first = 0;
    for (int64_t s = 0; s <= steps; s++) {
        double t0 = now_s();
        OP(zero, m.grads, m.lay.n);
        model_forward(&m, &a, ids, ids + 1, NULL, NULL, 0, 1.0 / N, NULL);
        model_backward(&m, &a, ids);
        adamw_step(&m, &h, 1e-4, 1.0, s + 1);
        dev_sync();
        times[s] = now_s() - t0;
        if (s == 0) t_first = now_s() - t_start;
    }
#if USE_CUDA
    if (profile) {   // separate steps: the events themselves cost a little, so the timings above go without
        for (int64_t s = 0; s < steps; s++) {
            g_prof = 1;
            OP(zero, m.grads, m.lay.n);
            model_forward(&m, &a, ids, ids + 1, NULL, NULL, 0, 1.0 / N, NULL);
            model_backward(&m, &a, ids);
            adamw_step(&m, &h, 1e-4, 1.0, s + 1);
            g_prof = 0;
            cuda_prof_step();
        }
    }
#endif
    qsort(times + 1, (size_t)steps, sizeof(double), dbl_cmp);
    double med = times[1 + steps / 2];
    double flops = 6.0 * (double)m.lay.n * N;
    printf("time to first step %.2f s | step %.1f ms (median of %lld) | %.0f tokens/s | %.1f GFLOP/s (6 x params x tokens)\n",
           t_first, med * 1e3, (long long)steps, N / med, flops / med / 1e9);
    if (g_gpu) printf("MFU %.1f%% of 989 TFLOP/s (dense bf16 peak of an H100 or H200 SXM) | peak GPU memory %.0f MiB\n",
                      100 * flops / med / 989e12, dev_peak_mib());
#if USE_CUDA
    if (profile) cuda_prof_print((int)steps);
#endif
    free(times); free(ids);
    acts_free(&a);
    model_free(&m);
    return 0;
}

// ----------------------------------------------------------------------------------------------------------
// hgrn2 import / export: Hugging Face checkpoints of flash-linear-attention's HGRN2ForCausalLM

static const char *IMPORT_USAGE = "hgrn2 import --hf DIR --out CKPT";
static const char *IMPORT_HELP =
    "Convert a Hugging Face HGRN2 checkpoint (flash-linear-attention, model_type hgrn2) into an hgrn2\n"
    "checkpoint for eval, sample and train --init.\n"
    "\n"
    "  --hf DIR             holds config.json and model.safetensors, or sharded *.safetensors with\n"
    "                       model.safetensors.index.json; F32, BF16, F16 or F64 tensors\n"
    "  --out CKPT           the checkpoint to write\n"
    "When DIR holds a tokenizer.json, the checkpoint remembers DIR as its tokenizer.\n";

static const char *EXPORT_USAGE = "hgrn2 export --ckpt CKPT --hf DIR [--dtype f32|bf16|f16]";
static const char *EXPORT_HELP =
    "Write a checkpoint as a Hugging Face model directory that flash-linear-attention's HGRN2ForCausalLM\n"
    "loads unchanged: config.json, model.safetensors and, when the run has them, its tokenizer files.\n"
    "\n"
    "  --ckpt PATH          the checkpoint (default " DEFAULT_OUT "/model.ckpt)\n"
    "  --hf DIR             the directory to write (created if needed)\n"
    "  --dtype NAME         tensor type in model.safetensors: f32 (default), bf16 or f16\n";

// One number of config.json: the field, or def when absent or null; dies when it is of another type.
static double cfg_num(const Json *cfg, const char *path, const char *key, double def, int required) {
    const Json *v = json_get(cfg, key);
    if (!v || v->type == JSON_NULL) {
        if (required) die("%s: field %s is missing", path, key);
        return def;
    }
    if (v->type != JSON_NUM && v->type != JSON_BOOL) die("%s: field %s is not a number", path, key);
    return v->num;
}

// The Hugging Face name of tensor p of layer l.
static void hf_name(char *buf, size_t n, int p, int l) {
    if (p < P_FIRST_LAYER) snprintf(buf, n, "%s", PARAMS[p].hf);
    else snprintf(buf, n, PARAMS[p].hf, l);
}

static int cmd_import(int argc, char **argv) {
    static const struct option opts[] = {{"help", no_argument, 0, O_HELP}, {"hf", required_argument, 0, O_HF},
                                         {"out", required_argument, 0, O_OUT}, {0, 0, 0, 0}};
    g_prog = "hgrn2 import";
    g_usage = IMPORT_USAGE;
    const char *dir = NULL, *out = NULL;
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case O_HELP: print_help(IMPORT_USAGE, IMPORT_HELP); return 0;
        case O_HF: dir = optarg; break;
        case O_OUT: out = optarg; break;
        default: bad_option(argv, c);
        }
    }
    if (optind < argc) usage_error("unexpected argument '%s'", argv[optind]);
    if (!dir || !out) usage_error("import needs --hf DIR and --out CKPT");

    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    size_t len;
    char *text = read_file(path, &len), err[200];
    Json *cfg = json_parse(text, len, err, sizeof err);
    if (!cfg || cfg->type != JSON_OBJ) die("%s is not a JSON object%s%s", path, cfg ? "" : ": ", cfg ? "" : err);
    const Json *mt = json_get(cfg, "model_type");
    if (!mt || mt->type != JSON_STR || strcmp(mt->str, "hgrn2"))
        die("%s: model_type is %s%s%s, not hgrn2: hgrn2 imports only HGRN2 models", path, mt && mt->type == JSON_STR ? "'" : "",
            mt && mt->type == JSON_STR ? mt->str : "missing", mt && mt->type == JSON_STR ? "'" : "");
    if (cfg_num(cfg, path, "use_short_conv", 0, 0))
        die("%s: use_short_conv is true; hgrn2 implements the model without short convolutions", path);
    const Json *attn = json_get(cfg, "attn");
    if (attn && attn->type != JSON_NULL) die("%s: field attn asks for hybrid softmax-attention layers, which hgrn2 does not implement", path);
    const Json *attnres = json_get(cfg, "attnres_block_size");
    if (attnres && attnres->type != JSON_NULL) die("%s: field attnres_block_size is set; hgrn2 does not implement attention residuals", path);
    const Json *aff = json_get(cfg, "elementwise_affine");
    if (aff && aff->type == JSON_BOOL && !aff->num) die("%s: elementwise_affine is false; hgrn2 needs norm weights", path);
    const Json *act = json_get(cfg, "hidden_act");
    if (act && act->type == JSON_STR && strcmp(act->str, "swish") && strcmp(act->str, "silu"))
        die("%s: hidden_act is '%s'; hgrn2 implements swish", path, act->str);
    Config cf = {.V = (int)cfg_num(cfg, path, "vocab_size", 0, 1), .D = (int)cfg_num(cfg, path, "hidden_size", 0, 1),
                 .L = (int)cfg_num(cfg, path, "num_hidden_layers", 0, 1),
                 .tie = (int)cfg_num(cfg, path, "tie_word_embeddings", 0, 0),
                 .lower_bound = (int)cfg_num(cfg, path, "use_lower_bound", 1, 0), .eps = cfg_num(cfg, path, "norm_eps", 1e-6, 0)};
    double expand = cfg_num(cfg, path, "expand_ratio", 0, 0), heads = cfg_num(cfg, path, "num_heads", 0, 0);
    if (expand > 0) cf.K = (int)expand;
    else if (heads > 0 && cf.D > 0) cf.K = cf.D / (int)heads;
    else die("%s: neither expand_ratio nor num_heads is set", path);
    double inter = cfg_num(cfg, path, "intermediate_size", 0, 0);
    cf.I = inter > 0 ? (int)inter : mlp_width(cf.D, cfg_num(cfg, path, "hidden_ratio", 4, 0));
    const char *bad = config_finish(&cf);
    if (bad) die("%s: the configuration cannot be represented: %s", path, bad);
    if (!(cf.eps > 0 && cf.eps < 1)) die("%s: norm_eps %g is out of range", path, cf.eps);
    json_free(cfg);
    free(text);

    StSet *st = st_open_dir(dir);
    Model m = {0};
    model_alloc(&m, &cf);
    float *buf = NULL;
    char name[256];
    int used = 0;
    for (int p = 0; p < NPARAM; p++) {
        int64_t rows, cols;
        param_shape(&cf, p, &rows, &cols);
        if (!rows) continue;
        int nl = p < P_FIRST_LAYER ? 1 : cf.L;
        int vec = rows == 1 && p != P_LB;       // norms are 1-D tensors
        for (int l = 0; l < nl; l++) {
            hf_name(name, sizeof name, p, l);
            const StTensor *t = st_find(st, name);
            if (!t) die("%s: tensor %s is missing", dir, name);
            if (t->dtype == ST_I32 || t->dtype == ST_I64) die("%s: tensor %s holds integers, not weights", dir, name);
            int shape_ok = vec ? (t->ndim == 1 && t->shape[0] == cols) : (t->ndim == 2 && t->shape[0] == rows && t->shape[1] == cols);
            if (!shape_ok) {
                char got[128] = "";
                for (int d = 0; d < t->ndim; d++) snprintf(got + strlen(got), sizeof got - strlen(got), d ? ", %lld" : "%lld", (long long)t->shape[d]);
                if (vec) die("%s: tensor %s has shape [%s]; config.json implies [%lld]", dir, name, got, (long long)cols);
                die("%s: tensor %s has shape [%s]; config.json implies [%lld, %lld]", dir, name, got, (long long)rows, (long long)cols);
            }
            buf = xrealloc(buf, (size_t)t->numel * sizeof(float));
            st_read(st, t, buf);
            real *dst = W(&m, p, l);
            for (int64_t i = 0; i < t->numel; i++) {
                if (!isfinite(buf[i])) die("%s: tensor %s holds a non-finite value", dir, name);
                dst[i] = buf[i];
            }
            used++;
        }
    }
    for (int i = 0; i < st->n; i++) {
        int known = 0;
        for (int p = 0; p < NPARAM && !known; p++) {
            int nl = p < P_FIRST_LAYER ? 1 : cf.L;
            for (int l = 0; l < nl && !known; l++) { hf_name(name, sizeof name, p, l); known = !strcmp(name, st->t[i].name) && param_numel(&cf, p); }
        }
        if (!known && cf.tie && !strcmp(st->t[i].name, "lm_head.weight")) known = 1;   // a tied copy
        if (!known) die("%s: tensor %s is not part of an HGRN2 model of this configuration", dir, st->t[i].name);
    }
    free(buf);
    st_close(st);

    RunState rs;
    memset(&rs, 0, sizeof rs);
    rs.c = cf;
    rs.h = (Hyper){.B = 4, .T = 512, .accum = 1, .steps = 0, .lr = 3e-4, .min_lr = 3e-5, .wd = 0.1, .beta1 = 0.9,
                   .beta2 = 0.95, .adam_eps = 1e-8, .clip = 1, .warmup = 0, .seed = 1337};
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (file_exists(path)) {
        char *abs = realpath(dir, NULL);
        if (abs && strlen(abs) < sizeof rs.tokenizer) snprintf(rs.tokenizer, sizeof rs.tokenizer, "%s", abs);
        free(abs);
    }
    checkpoint_save(out, &m, &rs, 0);
    printf("imported %s: %d tensors, ", dir, used);
    print_config(&cf, &m.lay, stdout);
    printf("tokenizer: %s\nwrote %s\n", rs.tokenizer[0] ? rs.tokenizer : "none (pass --tokenizer to sample)", out);
    model_free(&m);
    return 0;
}

static void copy_file(const char *from, const char *to) {
    size_t len;
    char *data = read_file(from, &len);
    FILE *f = fopen(to, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) die("writing %s failed: %s", to, strerror(errno));
    free(data);
}

static int cmd_export(int argc, char **argv) {
    static const struct option opts[] = {{"help", no_argument, 0, O_HELP}, {"hf", required_argument, 0, O_HF},
                                         {"ckpt", required_argument, 0, O_CKPT}, {"dtype", required_argument, 0, O_SPLIT},
                                         {0, 0, 0, 0}};
    g_prog = "hgrn2 export";
    g_usage = EXPORT_USAGE;
    const char *dir = NULL, *ckpt = DEFAULT_OUT "/model.ckpt";
    StDtype dtype = ST_F32;
    int c;
    optind = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case O_HELP: print_help(EXPORT_USAGE, EXPORT_HELP); return 0;
        case O_HF: dir = optarg; break;
        case O_CKPT: ckpt = optarg; break;
        case O_SPLIT:
            if (!strcmp(optarg, "f32")) dtype = ST_F32;
            else if (!strcmp(optarg, "bf16")) dtype = ST_BF16;
            else if (!strcmp(optarg, "f16")) dtype = ST_F16;
            else usage_error("--dtype must be f32, bf16 or f16, got '%s'", optarg);
            break;
        default: bad_option(argv, c);
        }
    }
    if (optind < argc) usage_error("unexpected argument '%s'", argv[optind]);
    if (!dir) usage_error("export needs --hf DIR");
    Model m = {0};
    RunState rs;
    checkpoint_load(ckpt, &m, &rs, 0);
    const Config *cf = &m.c;
    mkdir_p(dir);

    // tensors, in the order of the parameter table
    int n = 0, cap = NPARAM * cf->L + NPARAM;
    char **names = xcalloc((size_t)cap, sizeof(char *));
    const float **data = xcalloc((size_t)cap, sizeof(float *));
    int64_t (*shapes)[8] = xcalloc((size_t)cap, sizeof *shapes);
    int *ndims = xcalloc((size_t)cap, sizeof(int));
    for (int p = 0; p < NPARAM; p++) {
        int64_t rows, cols;
        param_shape(cf, p, &rows, &cols);
        if (!rows) continue;
        int nl = p < P_FIRST_LAYER ? 1 : cf->L;
        for (int l = 0; l < nl; l++) {
            names[n] = xmalloc(256);
            hf_name(names[n], 256, p, l);
            float *t = xmalloc((size_t)(rows * cols) * sizeof(float));
            const real *src = W(&m, p, l);
            for (int64_t i = 0; i < rows * cols; i++) t[i] = (float)src[i];
            data[n] = t;
            if (rows == 1 && p != P_LB) { ndims[n] = 1; shapes[n][0] = cols; }
            else { ndims[n] = 2; shapes[n][0] = rows; shapes[n][1] = cols; }
            n++;
        }
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    st_write(path, n, (const char *const *)names, data, (const int64_t(*)[8])shapes, ndims, dtype);

    // config.json in the form fla's HGRN2Config writes it
    snprintf(path, sizeof path, "%s/config.json", dir);
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) die("cannot create %s: %s", tmp, strerror(errno));
    fprintf(f, "{\n  \"architectures\": [\"HGRN2ForCausalLM\"],\n  \"model_type\": \"hgrn2\",\n"
               "  \"attn\": null,\n  \"attn_mode\": \"chunk\",\n  \"hidden_size\": %d,\n  \"num_hidden_layers\": %d,\n"
               "  \"expand_ratio\": %d,\n  \"num_heads\": %d,\n  \"vocab_size\": %d,\n  \"hidden_ratio\": 4,\n"
               "  \"intermediate_size\": %d,\n  \"hidden_act\": \"swish\",\n  \"norm_eps\": %.17g,\n"
               "  \"tie_word_embeddings\": %s,\n  \"use_lower_bound\": %s,\n  \"use_short_conv\": false,\n"
               "  \"conv_size\": 4,\n  \"elementwise_affine\": true,\n  \"max_position_embeddings\": 2048,\n"
               "  \"initializer_range\": 0.02,\n  \"use_cache\": true,\n  \"fuse_norm\": true,\n  \"fuse_swiglu\": true,\n"
               "  \"fuse_cross_entropy\": true,\n  \"fuse_linear_cross_entropy\": false,\n  \"use_l2warp\": false,\n",
            cf->D, cf->L, cf->K, cf->H, cf->V, cf->I, cf->eps, cf->tie ? "true" : "false", cf->lower_bound ? "true" : "false");
    // special tokens of the tokenizer the run used, when there is one
    Tokenizer *tok = NULL;
    if (rs.tokenizer[0] && strcmp(rs.tokenizer, "byte")) tok = tokenizer_load(rs.tokenizer);
    int32_t bos = tok ? tokenizer_bos(tok) : -1, eos = tok ? tokenizer_eot(tok) : -1;
    if (bos >= 0) fprintf(f, "  \"bos_token_id\": %d,\n", bos); else fprintf(f, "  \"bos_token_id\": null,\n");
    if (eos >= 0) fprintf(f, "  \"eos_token_id\": %d,\n", eos); else fprintf(f, "  \"eos_token_id\": null,\n");
    fprintf(f, "  \"pad_token_id\": null\n}\n");
    if (fflush(f) != 0 || fsync(fileno(f)) != 0 || fclose(f) != 0) die("writing %s failed: %s", tmp, strerror(errno));
    if (rename(tmp, path) != 0) die("renaming %s failed: %s", tmp, strerror(errno));

    // tokenizer files: a tokenizer.json as it is; GPT-2's encoder.json/vocab.bpe under the names
    // transformers' GPT2Tokenizer reads (vocab.json, merges.txt)
    if (tok) {
        char from[4400], to[4400];
        struct stat st;
        if (stat(rs.tokenizer, &st) == 0 && S_ISREG(st.st_mode)) {
            snprintf(to, sizeof to, "%s/tokenizer.json", dir);
            copy_file(rs.tokenizer, to);
        } else {
            snprintf(from, sizeof from, "%s/tokenizer.json", rs.tokenizer);
            if (file_exists(from)) { snprintf(to, sizeof to, "%s/tokenizer.json", dir); copy_file(from, to); }
            snprintf(from, sizeof from, "%s/encoder.json", rs.tokenizer);
            if (file_exists(from)) { snprintf(to, sizeof to, "%s/vocab.json", dir); copy_file(from, to); }
            snprintf(from, sizeof from, "%s/vocab.bpe", rs.tokenizer);
            if (file_exists(from)) { snprintf(to, sizeof to, "%s/merges.txt", dir); copy_file(from, to); }
        }
        tokenizer_free(tok);
    }
    printf("wrote %s: config.json, model.safetensors (%d tensors)%s\n", dir, n, tok ? ", tokenizer files" : "");
    for (int i = 0; i < n; i++) { free(names[i]); free((void *)data[i]); }
    free(names); free(data); free(shapes); free(ndims);
    model_free(&m);
    return 0;
}

// ----------------------------------------------------------------------------------------------------------
// main

static const char *MAIN_HELP =
    "usage: hgrn2 COMMAND [options]     (hgrn2 COMMAND --help for each)\n"
    "\n"
    "HGRN2 language models: gated linear RNNs with state expansion, trained, evaluated and sampled in C.\n"
    "\n"
    "commands:\n"
    "  train      train a model (no arguments: a small byte-level model on the King James Bible)\n"
    "  eval       held-out loss, perplexity and bits per byte of a checkpoint\n"
    "  sample     generate text from a checkpoint\n"
    "  prepare    tokenize raw text, WikiText or (zstd) JSON Lines into compressed token shards\n"
    "  tokenize   encode standard input to token ids, or --decode ids to text\n"
    "  bench      time training steps on random tokens\n"
    "  import     convert a Hugging Face (flash-linear-attention) HGRN2 checkpoint\n"
    "  export     write a checkpoint as a Hugging Face model directory\n";

#ifndef HGRN2_TESTING
int main(int argc, char **argv) {
    if (argc < 2) { fputs(MAIN_HELP, stderr); return EXIT_USAGE; }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) { fputs(MAIN_HELP, stdout); return 0; }
    argc--; argv++;
    if (!strcmp(cmd, "train")) return cmd_train(argc, argv);
    if (!strcmp(cmd, "eval")) return cmd_eval(argc, argv);
    if (!strcmp(cmd, "sample")) return cmd_sample(argc, argv);
    if (!strcmp(cmd, "bench")) return cmd_bench(argc, argv);
    if (!strcmp(cmd, "import")) return cmd_import(argc, argv);
    if (!strcmp(cmd, "export")) return cmd_export(argc, argv);
    if (!strcmp(cmd, "prepare")) { optind = 0; return cmd_prepare(argc, argv); }
    if (!strcmp(cmd, "tokenize")) { optind = 0; return cmd_tokenize(argc, argv); }
    fprintf(stderr, "hgrn2: unknown command '%s'\n%s", cmd, MAIN_HELP);
    return EXIT_USAGE;
}
#endif
