// model.c: the HGRN2 model: config, parameter table, init, activations, forward and backward, AdamW, decoding.
// The passes are written as stages: the input, one block per layer (token mixer and MLP), the head.
#include <math.h>

#include "model.h"

// ----------------------------------------------------------------------------------------------------------
// Configuration

int mlp_width(int D, double ratio) {
    int64_t h = (int64_t)(D * ratio * 2 / 3);
    return (int)(256 * ((h + 255) / 256));
}

const Range R_VOCAB = {"vocab", 2, 1 << 24}, R_DIM = {"dim", 1, 65536}, R_LAYERS = {"layers", 1, 1024},
            R_EXPAND = {"expand-ratio", 1, 65536}, R_MLP = {"mlp-width", 0, 1 << 20};

const char *const ARCH_NAMES[NMIXERS] = {[MIXER_CAUSAL] = "hgrn2", [MIXER_HGRN1] = "hgrn1",
                                         [MIXER_TRANSFORMER] = "transformer"};

const char *const LAYER_NAMES[NLAYERS] = {[LAYER_FLA] = "fla", [LAYER_LRA] = "lra"};
const char *const BLOCK_NAMES[NBLOCKS] = {[BLOCK_FLA] = "fla", [BLOCK_ZOOLOGY] = "zoology"};

int arch_parse(const char *name) {
    for (int i = 0; i < NMIXERS; i++) if (!strcmp(name, ARCH_NAMES[i])) return i;
    return -1;
}

const char *config_finish(Config *c) {
    static char msg[160];
    if (c->mixer < 0 || c->mixer >= NMIXERS) return "unknown architecture";
    if (c->layer < 0 || c->layer >= NLAYERS) return "--mixer-layer must be fla or lra";
    if (c->block < 0 || c->block >= NBLOCKS) return "--block must be fla or zoology";
    if (c->layer != LAYER_FLA && c->mixer != MIXER_CAUSAL) {
        snprintf(msg, sizeof msg, "--mixer-layer %s is a form of HGRN2's layer: not with --arch %s",
                 LAYER_NAMES[c->layer], ARCH_NAMES[c->mixer]);
        return msg;
    }
    // HGRN1's state is a vector: one channel per head, no key dimension to expand
    if (c->mixer == MIXER_HGRN1 && c->K != 1) {
        snprintf(msg, sizeof msg, "--expand-ratio %d is not possible with --arch hgrn1: HGRN1's state is a vector "
                 "(expand ratio 1)", c->K);
        return msg;
    }
    if (!in_range(&R_VOCAB, c->V)) return "vocabulary size must be in [2, 16777216]";
    if (!in_range(&R_DIM, c->D)) return "--dim must be in [1, 65536]";
    if (!in_range(&R_LAYERS, c->L)) return "--layers must be in [1, 1024]";
    if (c->mixer == MIXER_TRANSFORMER) {
        // K is the head dim: rotary positions turn its two halves against each other
        if (c->K < 2 || c->K % 2 || c->D % c->K) {
            snprintf(msg, sizeof msg, "the transformer's head dim (--dim %d / --heads) must be even and divide "
                     "--dim, got %d", c->D, c->K);
            return msg;
        }
        if (c->lower_bound) return "the transformer has no forget gates, so no lower bounds";
    }
    if (c->K < 1 || c->D % c->K) {
        snprintf(msg, sizeof msg, "--expand-ratio %d must divide --dim %d", c->K, c->D);
        return msg;
    }
    c->H = c->D / c->K;
    c->Dv = c->D / c->H;
    if (c->I < 0) c->I = mlp_width(c->D, 4);
    if (!in_range(&R_MLP, c->I)) return "--mlp-width must be in [0, 1048576]";
    return NULL;
}

// ----------------------------------------------------------------------------------------------------------
// The parameter table

const ParamDesc PARAMS[NPARAM] = {
    [P_EMB]       = {"embeddings",  "model.embeddings.weight",                1, INIT_NORMAL, NULL,
                     "model.embed_tokens.weight", .id = 0},
    [P_LB]        = {"lower_bounds","model.lower_bounds",                     0, INIT_ZEROS, .id = 1},
    [P_NORM]      = {"norm",        "model.norm.weight",                      0, INIT_ONES, NULL, "model.norm.weight",
                     .id = 2},
    [P_LM]        = {"lm_head",     "lm_head.weight",                         1, INIT_NORMAL, NULL, "lm_head.weight",
                     .id = 3},
    [P_ATTN_NORM] = {"attn_norm",   "model.layers.%d.attn_norm.weight",       0, INIT_ONES, NULL,
                     "model.layers.%d.input_layernorm.weight", .id = 4},
    [P_WQ]        = {"q_proj",      "model.layers.%d.attn.q_proj.weight",     1, INIT_NORMAL, "model.layers.%d.attn.i_proj.weight",
                     "model.layers.%d.self_attn.q_proj.weight", .id = 5},
    [P_WF]        = {"f_proj",      "model.layers.%d.attn.f_proj.weight",     1, INIT_NORMAL, NULL,
                     "model.layers.%d.self_attn.k_proj.weight", .id = 6},
    [P_WI]        = {"i_proj",      "model.layers.%d.attn.i_proj.weight",     1, INIT_NORMAL, "model.layers.%d.attn.g_proj.weight",
                     "model.layers.%d.self_attn.v_proj.weight", .id = 7},
    [P_GNORM]     = {"g_norm",      "model.layers.%d.attn.g_norm.weight",     0, INIT_ONES, .id = 8},
    [P_WO]        = {"o_proj",      "model.layers.%d.attn.o_proj.weight",     1, INIT_NORMAL, NULL,
                     "model.layers.%d.self_attn.o_proj.weight", .id = 9},
    [P_MLP_NORM]  = {"mlp_norm",    "model.layers.%d.mlp_norm.weight",        0, INIT_ONES, NULL,
                     "model.layers.%d.post_attention_layernorm.weight", .id = 10},
    [P_WGATE]     = {"gate_proj",   "model.layers.%d.mlp.gate_proj.weight",   1, INIT_NORMAL, NULL,
                     "model.layers.%d.mlp.gate_proj.weight", .id = 11},
    [P_WUP]       = {"up_proj",     "model.layers.%d.mlp.up_proj.weight",     1, INIT_NORMAL, NULL,
                     "model.layers.%d.mlp.up_proj.weight", .id = 12},
    [P_WDOWN]     = {"down_proj",   "model.layers.%d.mlp.down_proj.weight",   1, INIT_NORMAL, NULL,
                     "model.layers.%d.mlp.down_proj.weight", .id = 13},
    // the authors' layer has no Hugging Face form (export refuses it); these names only label the tensors
    [P_BQFI]      = {"qfi_proj_bias", "model.layers.%d.attn.qfi_proj.bias",   0, INIT_ZEROS, .id = 14},
    [P_BO]        = {"o_proj_bias", "model.layers.%d.attn.o_proj.bias",       0, INIT_ZEROS, .id = 15},
    [P_GNORM_B]   = {"g_norm_bias", "model.layers.%d.attn.g_norm.bias",       0, INIT_ZEROS, .id = 16},
    // Zoology's blocks have no Hugging Face form either (export refuses them)
    [P_NORM_B]    = {"norm_bias",   "model.norm.bias",                        0, INIT_ZEROS, .id = 17},
    [P_ATTN_NORM_B] = {"attn_norm_bias", "model.layers.%d.attn_norm.bias",    0, INIT_ZEROS, .id = 18},
    [P_MLP_NORM_B]  = {"mlp_norm_bias", "model.layers.%d.mlp_norm.bias",      0, INIT_ZEROS, .id = 19},
};

void param_shape(const Config *c, int p, int64_t *rows, int64_t *cols) {
    int64_t HK = (int64_t)c->H * c->K, D = c->D;
    int64_t r = 1, k = D, lra = c->layer == LAYER_LRA, zb = c->block == BLOCK_ZOOLOGY;
    switch (p) {
    case P_EMB: r = c->V; break;
    case P_LB: r = c->lower_bound ? c->L : 0; k = c->lower_bound ? HK : 0; break;
    case P_NORM: case P_ATTN_NORM: break;
    case P_GNORM: if (c->mixer == MIXER_TRANSFORMER) r = k = 0; break;
    case P_MLP_NORM: r = c->I || zb; k = c->I || zb ? D : 0; break;
    case P_LM: r = c->tie ? 0 : c->V; k = c->tie ? 0 : D; break;
    case P_WQ: case P_WF: r = HK; break;
    case P_WI: case P_WO: r = D; break;
    case P_WGATE: case P_WUP: r = c->I; k = c->I ? D : 0; break;
    case P_WDOWN: r = c->I ? D : 0; k = c->I; break;
    case P_BQFI: r = lra; k = lra ? 2 * HK + D : 0; break;
    case P_BO: case P_GNORM_B: r = lra; k = lra ? D : 0; break;
    case P_NORM_B: case P_ATTN_NORM_B: case P_MLP_NORM_B: r = zb; k = zb ? D : 0; break;
    }
    *rows = r;
    *cols = k;
}
int64_t param_numel(const Config *c, int p) {
    int64_t r, k;
    param_shape(c, p, &r, &k);
    return r * k;
}

void hf_name(char *buf, size_t n, const Config *c, int p, int l) {
    const char *f = c->mixer == MIXER_TRANSFORMER ? PARAMS[p].llama
                  : c->mixer == MIXER_HGRN1 && PARAMS[p].hgrn1 ? PARAMS[p].hgrn1 : PARAMS[p].hf;
    if (!f) f = "(none)";   // a slot the transformer leaves empty (param_numel 0)
    if (p < P_FIRST_LAYER) snprintf(buf, n, "%s", f);
    else snprintf(buf, n, f, l);
}

Layout layout_of(const Config *c) {
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

// ----------------------------------------------------------------------------------------------------------
// The model

// The classifier: lm_head, or the embedding when tied.
static int lm_tensor(const Model *m) { return m->c.tie ? P_EMB : P_LM; }

void model_alloc(Model *m, const Config *c) {
    m->c = *c;
    m->lay = layout_of(c);
    m->params = xcalloc(m->lay.n, sizeof(real));
    m->grads = m->m = m->v = NULL;
    m->on_device = 0;
    m->padded = m->part = m->opt_hi = m->lay.n;
    m->opt_lo = 0;
    m->grads_ready = NULL;
    m->grads_ready_ctx = NULL;
}
// A moment of every parameter cut to the part [lo, lo + part) (zeros past lay.n).
static real *moment_part(real *full, int64_t n, int64_t lo, int64_t part) {
    real *p = xcalloc((size_t)part, sizeof(real));
    if (lo < n) memcpy(p, full + lo, (size_t)(n - lo < part ? n - lo : part) * sizeof(real));
    free(full);
    return p;
}
void model_shard(Model *m, int rank, int world) {
    if (world <= 1) return;
    const int64_t n = m->lay.n;
    m->part = (n + world - 1) / world;
    m->padded = m->part * world;
    m->opt_lo = (int64_t)rank * m->part < n ? (int64_t)rank * m->part : n;
    m->opt_hi = m->opt_lo + m->part < n ? m->opt_lo + m->part : n;
    m->params = xrealloc(m->params, (size_t)m->padded * sizeof(real));
    memset(m->params + n, 0, (size_t)(m->padded - n) * sizeof(real));
    if (m->m) m->m = moment_part(m->m, n, (int64_t)rank * m->part, m->part);
    if (m->v) m->v = moment_part(m->v, n, (int64_t)rank * m->part, m->part);
}
void model_to_device(Model *m) {
    if (!g_gpu || m->on_device) return;
#if USE_CUDA
    // the GPU's attention kernels hold a head's values in registers, up to a width (cuda_ops.h)
    if (m->c.mixer == MIXER_TRANSFORMER && m->c.K > CUDA_ATTENTION_MAX_HD)
        die("the transformer's heads of %d values are wider than the GPU's attention takes (%d): use more --heads, "
            "or --device cpu", m->c.K, CUDA_ATTENTION_MAX_HD);
#endif
    size_t bytes = (size_t)m->padded * sizeof(real), part = (size_t)m->part * sizeof(real);
    real *params = dev_alloc(bytes, "parameters");
    dev_upload(params, m->params, bytes);
    free(m->params);
    m->params = params;
    // moments loaded from a checkpoint travel too
    if (m->m) { real *d = dev_alloc(part, "AdamW moments"); dev_upload(d, m->m, part); free(m->m); m->m = d; }
    if (m->v) { real *d = dev_alloc(part, "AdamW moments"); dev_upload(d, m->v, part); free(m->v); m->v = d; }
    m->on_device = 1;
}
void model_alloc_training(Model *m) {
    if (!m->grads) m->grads = dev_zeros(m->padded, "gradients");
    if (!m->m) m->m = dev_zeros(m->part, "AdamW moments");
    if (!m->v) m->v = dev_zeros(m->part, "AdamW moments");
}
void model_free(Model *m) {
    void (*release)(void *) = m->on_device ? dev_free : free;
    release(m->params);
    if (m->grads) dev_free(m->grads);
    if (m->m) release(m->m);
    if (m->v) release(m->v);
    memset(m, 0, sizeof *m);
}
const real *host_view(const Model *m, const real *p, int64_t n, real **tmp) {
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
void model_init(Model *m, uint64_t seed) {
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
        uint64_t s = seed * 1000003ull + (uint64_t)PARAMS[p].id * 4099ull + (uint64_t)tl[t];
        s = splitmix64(&s) ^ ((uint64_t)b * 0xD1B54A32D192ED03ull);
        const double std = m->c.block == BLOCK_ZOOLOGY && (p == P_WO || p == P_WDOWN) ? 0.02 / sqrt(2.0 * m->c.L) : 0.02;
        for (int64_t i = i0; i < i1; i += 2) {   // both normals of each pair
            double r, a;
            rng_polar(&s, &r, &a);
            r *= std;
            x[i] = (real)(r * cos(a));
            if (i + 1 < i1) x[i + 1] = (real)(r * sin(a));
        }
    }
}

void print_config(const Config *c, const Layout *lay, FILE *f) {
    char mlp[32];
    if (c->I) snprintf(mlp, sizeof mlp, "MLP %d", c->I);
    else snprintf(mlp, sizeof mlp, "no MLP");
    if (c->mixer == MIXER_HGRN1)
        fprintf(f, "| model        | HGRN1, V %d, D %d, layers %d, state a vector of %d, %s, %s, %s\n", c->V, c->D,
                c->L, c->D, mlp, c->tie ? "tied embeddings" : "untied lm_head",
                c->lower_bound ? "lower bounds" : "no lower bounds");
    else if (c->mixer == MIXER_TRANSFORMER)
        fprintf(f, "| model        | Transformer++, V %d, D %d, layers %d, heads %d x %d (RoPE), %s, %s\n", c->V, c->D,
                c->L, c->H, c->K, mlp, c->tie ? "tied embeddings" : "untied lm_head");
    else
        fprintf(f, "| model        | V %d, D %d, layers %d, heads %d x (K %d, Dv %d), %s, %s, %s%s\n", c->V, c->D,
                c->L, c->H, c->K, c->Dv, mlp, c->tie ? "tied embeddings" : "untied lm_head",
                c->lower_bound ? "lower bounds" : "no lower bounds",
                c->layer == LAYER_LRA ? ", the authors' mixer layer (lra)" : "");
    if (c->block == BLOCK_ZOOLOGY)
        fprintf(f, "| blocks       | Zoology's: LayerNorms with biases (eps %g)%s\n", c->eps,
                c->I ? "" : ", the identity as the state mixer (its norm's output joins the stream)");
    fprintf(f, "| parameters   | %lld (%.2fM)\n", (long long)lay->n, lay->n / 1e6);
}

// ----------------------------------------------------------------------------------------------------------
// Activations

// The classifier runs over this many rows at a time, so [N, V] logits never exist: 256 on the CPU (the block
// stays in cache), 1024 on the GPU (GEMMs large enough to fill it; 206 MB of logits at V = 50304), or what
// HGRN2_CLS_ROWS says (a multiple of 64 from 64 to 65536): larger blocks trade memory for speed on the GPU
// (docs/kernels.md, "Against the floors").
static int cls_rows(void) {
    static int rows = -1;   // -1: not read yet; 0: not set (then the backend's default)
    if (rows < 0) {
        const char *e = getenv("HGRN2_CLS_ROWS");
        rows = 0;
        if (e && *e) {
            long long v;
            if (parse_i64(e, 64, 65536, &v) || v % 64)
                die("HGRN2_CLS_ROWS=%s: the classifier's rows per block are a multiple of 64 from 64 to 65536", e);
            rows = (int)v;
        }
    }
    return rows ? rows : g_gpu ? 1024 : 256;
}

void acts_alloc(Acts *a, const Config *c, int B, int T, int train) {
    memset(a, 0, sizeof *a);
    a->B = B; a->T = T; a->train = train;
    int64_t N = (int64_t)B * T, D = c->D, HK = (int64_t)c->H * c->K, I = c->I, L = c->L;
    // mid: xmid, rstd2 and h2 exist with an MLP, or with Zoology's identity in its place; ns: a block norm's
    // statistics per row (Zoology's LayerNorms keep the mean beside the rstd)
    int64_t nl = train ? L : 1, QFI = 2 * HK + D, mid = I > 0 || c->block == BLOCK_ZOOLOGY;
    const int64_t ns = c->block == BLOCK_ZOOLOGY ? 2 : 1;
    // rec: the recurrent mixers' gates and output-norm statistics; att: the transformer's log-sum-exps
    const int64_t att = c->mixer == MIXER_TRANSFORMER, rec = !att, H = c->H;
    // the authors' layer: its LayerNorm keeps mean and rstd (2 values a row), and silu(v) has its own buffer
    const int64_t lra = c->layer == LAYER_LRA, no = lra ? 2 : 1;
    a->N = a->cap = N;
    // The sizes come from flags or a checkpoint: bound them before the byte counts below can overflow. Every part
    // is at most (L+1) x N x the widest row x 8 bytes, and there are fewer than 64 of them.
    const double widest = (double)(QFI > 2 * I ? QFI : 2 * I) > (double)c->V ? (double)(QFI > 2 * I ? QFI : 2 * I) : (double)c->V;
    if (64.0 * 8.0 * (double)(L + 1) * ((double)N + 1024) * widest > 0x1p62)
        die("the activations of batch %d x sequence length %d at this model size would need more than 2^62 bytes; "
            "use a smaller batch, sequence length or model", B, T);
    // every part in bytes: values of `real`, or operands (O) in the backend's operand format
    const int64_t R = sizeof(real), O = (int64_t)opnd_size();
    const int64_t CR = cls_rows(), DY = opnd_size() == sizeof(real) || !train ? 0 : (N * QFI > CR * c->V ? N * QFI : CR * c->V);
    struct { void **p; int64_t bytes; } parts[] = {
        {(void **)&a->lb, L * HK * R}, {(void **)&a->resid, (L + 1) * N * D * R}, {(void **)&a->xmid, mid * nl * N * D * R},
        {(void **)&a->rstd1, nl * ns * N * R}, {(void **)&a->qfi, nl * N * QFI * R}, {(void **)&a->o, nl * N * D * R},
        {(void **)&a->rstdo, rec * nl * no * N * R}, {(void **)&a->rstd2, mid * nl * ns * N * R}, {&a->gu, nl * N * 2 * I * O},
        {(void **)&a->lse, att * nl * N * H * R},
        {(void **)&a->q, rec * N * HK * R}, {(void **)&a->k, rec * N * HK * R}, {(void **)&a->g, rec * N * HK * R},
        {(void **)&a->vact, lra * N * D * R}, {(void **)&a->dvs, train ? lra * N * D * R : 0},
        {&a->h1, N * D * O}, {&a->yo, N * D * O}, {&a->h2, mid * N * D * O}, {&a->a, N * I * O}, {&a->hf, N * D * O},
        {(void **)&a->rstdf, ns * N * R}, {(void **)&a->logits, CR * c->V * R}, {(void **)&a->losses, N * R},
        {(void **)&a->dx, train ? N * D * R : 0}, {(void **)&a->dt, train ? N * D * R : 0},
        {(void **)&a->dh, train ? N * D * R : 0}, {(void **)&a->dqfi, train ? N * QFI * R : 0},
        {(void **)&a->dq, train ? rec * N * HK * R : 0}, {(void **)&a->dk, train ? rec * N * HK * R : 0},
        {(void **)&a->dg, train ? rec * N * HK * R : 0}, {(void **)&a->dout, train ? N * D * R : 0},
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
    // page-locked on the GPU: the training step's queued copies read and write them (model_queue_batch)
    a->losses_h = dev_host_alloc((size_t)N * sizeof(real));
    a->sel_h = dev_host_alloc((size_t)N * 2 * sizeof(int32_t));
    if (g_gpu) {
        a->ids_d = dev_alloc((size_t)N * sizeof(int32_t), "token ids");
        a->tgt_d = dev_alloc((size_t)N * sizeof(int32_t), "token ids");
        a->sel_d = dev_alloc((size_t)N * 2 * sizeof(int32_t), "token ids");
    }
}
void acts_reshape(Acts *a, int B, int T) {
    if (B < 1 || T < 1 || (int64_t)B * T > a->cap)
        die("acts_reshape: %d x %d tokens do not fit activations for %lld", B, T, (long long)a->cap);
    a->B = B; a->T = T; a->N = (int64_t)B * T;
}
void acts_free(Acts *a) {
    dev_graph_free(a->graph);
    for (int k = 0; k < GREEDY_GRAPHS; k++) dev_graph_free(a->sgraph[k]);
    if (a->steps_d) dev_free(a->steps_d);
    dev_free(a->mem);
    dev_graph_free(a->tgraph);
    dev_host_free(a->losses_h);
    dev_host_free(a->sel_h);
    dev_host_free(a->ids_h);
    dev_host_free(a->tgt_h);
    dev_host_free(a->ctl_h);
    if (a->ctl_d) dev_free(a->ctl_d);
    if (a->ids_d) { dev_free(a->ids_d); dev_free(a->tgt_d); dev_free(a->sel_d); }
    memset(a, 0, sizeof *a);
}

// Layer l's slice of a per-layer activation of `per` elements per token (of `per` operands: LAYER_OPND).
#define LAYER(a, field, l, per) ((a)->field + ((a)->train ? (int64_t)(l) : 0) * (a)->N * (int64_t)(per))
#define LAYER_OPND(a, field, l, per) opnd_at((a)->field, ((a)->train ? (int64_t)(l) : 0) * (a)->N * (int64_t)(per))

// ----------------------------------------------------------------------------------------------------------
// Forward pass: the input stage, then per layer a block (an RMSNorm and the token mixer, an RMSNorm and the
// MLP, each around a residual), then the head. Each stage takes its form from the Config's kinds.
// Each residual add is done by the norm after it: the residual stream x of layer l holds the last layer's
// MLP output until the layer's first norm adds the residual it goes around (that layer's xmid), and xmid
// holds the mixer's output y until the MLP's norm adds x. Without an MLP a block is x + y: the mixer writes
// y where the MLP's output would go, and the next norm adds x itself (block_residual).

// The residual that the stream leaving layer l still needs added (by the norm after it): the layer's xmid
// (x + y), to which the MLP's output goes; without an MLP, the stream x entering the layer.
static real *block_residual(const Model *m, Acts *a, int l) {
    if (m->c.I || m->c.block == BLOCK_ZOOLOGY) return LAYER(a, xmid, l, m->c.D);
    return a->resid + (int64_t)l * a->N * m->c.D;
}

// The block norms (attn_norm, mlp_norm, the final norm: tensor pw, its bias pb, of layer l) over N rows: fla's
// RMSNorm, or with Zoology's blocks a LayerNorm with a bias, whose statistics st hold the N means, then the N
// rstds (NULL: not kept). x and res as op_rmsnorm_fwd's (x += res first).
static int bnorm_stats(const Config *c) { return c->block == BLOCK_ZOOLOGY ? 2 : 1; }
static void bnorm_fwd(Model *m, opnd *y, real *st, real *x, const real *res, int pw, int pb, int l, int64_t N) {
    const Config *c = &m->c;
    if (c->block == BLOCK_ZOOLOGY)
        OP(layernorm_fwd, y, st, st ? st + N : NULL, x, res, W(m, pw, l), W(m, pb, l), N, c->D, c->eps);
    else OP(rmsnorm_fwd, y, st, x, res, W(m, pw, l), N, c->D, c->eps);
}
// Its backward from the statistics the forward kept: dx = or += (acc), the weights' gradients +=.
// With `feeds` (dx is the stream's gradient that the next products read: dy_opnd), where operands are not real the
// RMSNorm's backward also leaves dx's operand in a->dyo, and a->dyo_of says so.
static void bnorm_bwd(Model *m, Acts *a, real *dx, int acc, int feeds, const real *dy, const real *x, const real *st,
                      int pw, int pb, int l, int64_t N) {
    const Config *c = &m->c;
    if (c->block == BLOCK_ZOOLOGY)
        OP(layernorm_bwd, dx, acc, G(m, pw, l), G(m, pb, l), dy, x, W(m, pw, l), st, st + N, N, c->D);
    else if (feeds && a->dyo && opnd_size() != sizeof(real)) {
        OP(rmsnorm_bwd_opnd, dx, acc, a->dyo, G(m, pw, l), dy, x, W(m, pw, l), st, N, c->D, c->eps);
        a->dyo_of = dx;
        return;
    } else OP(rmsnorm_bwd, dx, acc, G(m, pw, l), dy, x, W(m, pw, l), st, N, c->D, c->eps);
    if (a->dyo_of == dx) a->dyo_of = NULL;   // dx changed: the operand it left is stale
}
// x [n values] as an operand in a->dyo (which then holds no stream gradient's operand)
static const opnd *dyo_from(Acts *a, const real *x, int64_t n) {
    a->dyo_of = NULL;
    return as_opnd(a->dyo, x, n);
}
// The stream's gradient dy [N, D] as an operand: what the norm's backward that made it left in a->dyo, or
// converted there now
static const opnd *dy_opnd(Acts *a, const real *dy, int D) {
    if (dy == a->dyo_of) return a->dyo;
    return dyo_from(a, dy, a->N * D);
}
// The backward's copy of the norm's output y again, from the statistics st its forward kept (NULL: recomputed
// from x): fla's RMSNorm scales x by the kept rstd, which gives the forward's bits without the row sums.
static void bnorm_again(Model *m, opnd *y, const real *st, real *x, int pw, int pb, int l, int64_t N) {
    if (st && m->c.block != BLOCK_ZOOLOGY) OP(rmsnorm_scale, y, x, st, W(m, pw, l), N, m->c.D);
    else bnorm_fwd(m, y, NULL, x, NULL, pw, pb, l, N);
}
// bnorm_fwd with y in `real` (Zoology's identity state mixer: the norm's output is the block's, in the stream).
static void bnorm_fwd_real(Model *m, real *y, real *st, real *x, const real *res, int pw, int pb, int l, int64_t N) {
    const int saved = opnd_real_begin();
    bnorm_fwd(m, y, st, x, res, pw, pb, l, N);
    opnd_real_end(saved);
}

// The embeddings' dropout in a training pass (Acts, embed_drop): each sequence's rows of x [N,D] in place, with
// that sequence's mask; bwd applies the same masks to the gradient.
static void embed_dropout(Acts *a, real *x, int D, int bwd) {
    if (!a->train || !(a->embed_drop > 0)) return;
    const int64_t n = (int64_t)a->T * D;
    for (int b = 0; b < a->B; b++) {
        const uint64_t seed = mix64(a->drop_seed ^ (uint64_t)(a->drop_row0 + b));
        if (bwd) OP(dropout_bwd, x + b * n, x + b * n, n, a->embed_drop, seed);
        else OP(dropout_fwd, x + b * n, x + b * n, n, a->embed_drop, seed);
    }
}

// Input stage: the ids [N] (where the backend reads them) into the residual stream entering layer 0 [N,D].
static void input_fwd(Model *m, Acts *a, const int32_t *ids) {
    const Config *c = &m->c;
    switch (c->input) {
    case INPUT_TOKENS:
        OP(embed_fwd, a->resid, ids, W(m, P_EMB, 0), a->N, c->D);           // x [N,D]
        break;
    }
    embed_dropout(a, a->resid, c->D, 0);
}

// A decoding switch: *v, or once it is -1, the environment variable `name` (on unless it is "0").
static int env_switch(int *v, const char *name) {
    if (*v < 0) {
        const char *e = getenv(name);
        *v = !(e && !strcmp(e, "0"));
    }
    return *v;
}

// Whether decoding fuses its ops (see block_step below), and up to how many sequences: every block of a fused
// product forms all its rows' input, which at 8 rows costs more than the separate ops save (docs/kernels.md,
// "decoding's fused step": the ops at N 8, and whole steps by scripts/decode_ab.sh).
#define DECODE_FUSED_ROWS 4
int g_decode_fused = -1;   // -1: as HGRN2_DECODE_FUSED says (on unless it is 0)
static int fused_flag(void) { return env_switch(&g_decode_fused, "HGRN2_DECODE_FUSED"); }

// Layer l's part of a decoding state: HGRN's state [B,H,K,Dv] or the transformer's cache [B,ctx,2D]; NULL
// without one.
static real *layer_state(const Config *c, const DecodeState *st, int l) {
    return st ? st->s + (int64_t)l * (st->n / c->L) : NULL;
}

// HGRN2's output norm of layer l over o [N,D] into yo: an RMSNorm, or with the authors' layer a LayerNorm with a
// bias, whose statistics st hold the N means, then the N rstds (NULL: not kept); eps EPS_O either way.
static void out_norm_fwd(Model *m, opnd *yo, real *st, real *o, int l, int64_t N) {
    if (m->c.layer == LAYER_LRA)
        OP(layernorm_fwd, yo, st, st ? st + N : NULL, o, NULL, W(m, P_GNORM, l), W(m, P_GNORM_B, l), N, m->c.D, EPS_O);
    else OP(rmsnorm_fwd, yo, st, o, NULL, W(m, P_GNORM, l), N, m->c.D, EPS_O);
}
// Its output again in the backward, as bnorm_again.
static void out_norm_again(Model *m, opnd *yo, const real *st, real *o, int l, int64_t N) {
    if (st && m->c.layer != LAYER_LRA) OP(rmsnorm_scale, yo, o, st, W(m, P_GNORM, l), N, m->c.D);
    else out_norm_fwd(m, yo, NULL, o, l, N);
}
// Its backward: d o into dout (=), the weights' gradients +=.
static void out_norm_bwd(Model *m, real *dout, const real *dyo, const real *o, const real *st, int l, int64_t N) {
    if (m->c.layer == LAYER_LRA)
        OP(layernorm_bwd, dout, 0, G(m, P_GNORM, l), G(m, P_GNORM_B, l), dyo, o, W(m, P_GNORM, l), st, st + N, N,
                          m->c.D);
    else OP(rmsnorm_bwd, dout, 0, G(m, P_GNORM, l), dyo, o, W(m, P_GNORM, l), st, N, m->c.D, EPS_O);
}

// Token mixer of layer l: the normed stream h1 [N,D] -> y [N,D] into out. st: the decoding state, carried in
// and out, or NULL (a zero state, nothing kept; the transformer's positions start at 0).
static void mixer_fwd(Model *m, Acts *a, int l, const DecodeState *st, real *out) {
    const Config *c = &m->c;
    const int B = a->B, T = a->T, D = c->D, HK = c->H * c->K, QFI = 2 * HK + D;
    const int64_t N = a->N;
    real *S = layer_state(c, st, l);
    switch (c->mixer) {
    case MIXER_CAUSAL: {
        // the authors' layer (lra) adds the projections' biases, replaces q by sigmoid (scaled by sqrt(K) against
        // the scan's 1 / sqrt(K): their readout is unscaled) and v by silu(v) in a buffer of its own, and has a
        // LayerNorm for the output norm
        const int lra = c->layer == LAYER_LRA;
        real *qfi = LAYER(a, qfi, l, QFI), *o = LAYER(a, o, l, D);
        const real *lb = (c->lower_bound && l > 0) ? a->lb + (int64_t)l * HK : NULL;
        OP(matmul_fwd, qfi, a->h1, W(m, P_WQ, l), N, D, QFI);                // [q | f | v] [N, 2HK+D]
        if (lra) OP(bias_add, qfi, W(m, P_BQFI, l), N, QFI);
        if (S && T == 1 && !a->train && !lra && fused_flag()) {              // decoding: the step with its gates
            OP(hgru_step_fwd, o, S, a->q, a->k, a->g, qfi, QFI, lb, B, c->H, c->K, c->Dv);
        } else {
            OP(gates_fwd, a->q, a->k, a->g, qfi, QFI, lb, N, HK);            // q, k, g [N,HK]
            if (lra) OP(lra_acts_fwd, a->q, a->vact, qfi, QFI, N, HK, D, sqrt((double)c->K));
            OP(hgru_fwd, o, S, a->q, a->k, a->g, lra ? a->vact : qfi + 2 * HK, lra ? D : QFI, S, B, T, c->H, c->K,
                         c->Dv, mixer_chunk(T), 0, 0);
        }                                                                    // o [N,D]
        out_norm_fwd(m, a->yo, LAYER(a, rstdo, l, lra ? 2 : 1), o, l, N);
        OP(matmul_fwd, out, a->yo, W(m, P_WO, l), N, D, D);                  // y [N,D]
        if (lra) OP(bias_add, out, W(m, P_BO, l), N, D);
        break;
    }
    case MIXER_HGRN1: {
        // HK = D
        real *ifg = LAYER(a, qfi, l, QFI), *o = LAYER(a, o, l, D);
        const real *lb = (c->lower_bound && l > 0) ? a->lb + (int64_t)l * HK : NULL;
        OP(matmul_fwd, ifg, a->h1, W(m, P_WQ, l), N, D, QFI);                // [i | f | g] [N, 3D]
        OP(gates_fwd, a->q, a->k, a->g, ifg, QFI, lb, N, HK);                // silu(i), 1 - a, log a [N,D]
        OP(hgrn_fwd, o, S, a->q, a->k, a->g, S, B, T, D, 0, 0);                    // h = o [N,D]
        OP(rmsnorm_gated_fwd, a->yo, LAYER(a, rstdo, l, 1), o, ifg + 2 * HK, QFI, W(m, P_GNORM, l), N, D, c->eps);
        OP(matmul_fwd, out, a->yo, W(m, P_WO, l), N, D, D);                  // y [N,D]
        break;
    }
    case MIXER_TRANSFORMER: {
        // H = D / K heads of K values (HK = D)
        real *qkv = LAYER(a, qfi, l, QFI), *o = LAYER(a, o, l, D), *lse = LAYER(a, lse, l, c->H);
        const int pos0 = st ? st->pos : 0;
        OP(matmul_fwd, qkv, a->h1, W(m, P_WQ, l), N, D, QFI);                // [q | k | v] [N, 3D]
        OP(rope_fwd, qkv, QFI, B, T, 2 * c->H, c->K, pos0, ROPE_THETA);     // q and k rotated: 2H heads
        if (S) {
            // decoding: the new keys and values join the cache [B, ctx, 2D] after the pos0 already there, and
            // the queries attend to all of them
            OP(kv_append, S, 2 * D, st->ctx, pos0, qkv + D, QFI, B, T, 2 * D);
            OP(attention_fwd, o, lse, qkv, QFI, S, S + D, 2 * D, (int64_t)st->ctx * 2 * D, B, T, pos0 + T, c->H, c->K);
        } else {
            OP(attention_fwd, o, lse, qkv, QFI, qkv + D, qkv + 2 * D, QFI, (int64_t)T * QFI, B, T, T, c->H, c->K);
        }
        const opnd *oo = as_opnd(a->yo, o, N * D);   // (before the product's OP: the profile charges each its own)
        OP(matmul_fwd, out, oo, W(m, P_WO, l), N, D, D);   // y [N,D]
        break;
    }
    case NMIXERS: break;
    }
}

// MLP of layer l: the normed stream h2 [N,D] -> out [N,D] (SwiGLU).
static void mlp_fwd(Model *m, Acts *a, int l, real *out) {
    const int D = m->c.D, I = m->c.I;
    const int64_t N = a->N;
    opnd *gu = LAYER_OPND(a, gu, l, 2 * I);
    OP(matmul_fwd_opnd, gu, a->h2, W(m, P_WGATE, l), N, D, 2 * I);         // [gate | up] [N, 2I]
    OP(swiglu_fwd, a->a, gu, N, I);                                          // [N,I]
    OP(matmul_fwd, out, a->a, W(m, P_WDOWN, l), N, I, D);                    // [N,D]; + xmid in the next norm
}

// Layer l: x -> attn_norm -> mixer -> (+ x) -> mlp_norm -> MLP, into the stream entering layer l + 1.
// Without an MLP: x -> attn_norm -> mixer, into that stream (+ x there); with Zoology's blocks the identity
// takes the MLP's place: x -> attn_norm -> mixer -> (+ x) -> mlp_norm, into the stream (+ xmid there).
static void block_fwd(Model *m, Acts *a, int l, const DecodeState *st) {
    const Config *c = &m->c;
    const int D = c->D, ns = bnorm_stats(c);
    const int64_t N = a->N;
    real *x = a->resid + (int64_t)l * N * D, *xn = a->resid + (int64_t)(l + 1) * N * D;
    const real *x_res = l > 0 ? block_residual(m, a, l - 1) : NULL;
    SECTION("mixer");
    bnorm_fwd(m, a->h1, LAYER(a, rstd1, l, ns), x, x_res, P_ATTN_NORM, P_ATTN_NORM_B, l, N);        // h [N,D]
    if (!c->I && c->block != BLOCK_ZOOLOGY) {
        mixer_fwd(m, a, l, st, xn);                                          // y [N,D]; + x in the next norm
        return;
    }
    real *xmid = LAYER(a, xmid, l, D);
    mixer_fwd(m, a, l, st, xmid);
    SECTION("mlp");
    if (!c->I) {                                                             // the identity: its norm's output
        bnorm_fwd_real(m, xn, LAYER(a, rstd2, l, ns), xmid, x, P_MLP_NORM, P_MLP_NORM_B, l, N);    // xmid = x + y
        return;
    }
    bnorm_fwd(m, a->h2, LAYER(a, rstd2, l, ns), xmid, x, P_MLP_NORM, P_MLP_NORM_B, l, N);           // xmid = x + y
    mlp_fwd(m, a, l, xn);
}

// The most likely token of each of the first n rows of the classifier's scratch (a->logits [n,V]) into
// best[n]: the first of equal logits, as greedy decoding picks it.
static void logits_argmax(Acts *a, int64_t n, int V, int32_t *best) {
    real *tmp = NULL;
    const real *lg = a->logits;
    if (g_gpu) {
        tmp = xmalloc((size_t)(n * V) * sizeof(real));
        dev_download(tmp, a->logits, (size_t)(n * V) * sizeof(real));
        lg = tmp;
    }
    for (int64_t i = 0; i < n; i++) best[i] = sample_token(lg + i * V, V, 0, 0, 1, NULL, NULL);
    free(tmp);
}

static int64_t count_targets(const int32_t *targets, int64_t N) {
    int64_t n = 0;
    for (int64_t i = 0; i < N; i++) n += targets[i] >= 0;
    return n;
}
// Whether a training forward with n targets among N rows takes the sparse head below
static int sparse_head(int64_t n, int64_t N) { return 4 * n <= N; }
// The sparse head's rows: sel [n] the rows with a target, sel + N [n] their targets
static void sparse_rows(int32_t *sel, const int32_t *targets, int64_t N) {
    for (int64_t i = 0, k = 0; i < N; i++)
        if (targets[i] >= 0) { sel[k] = (int32_t)i; sel[N + k] = targets[i]; k++; }
}

// The head at the n rows with a target only, for targets on few positions (MQAR's answers). The rows of the
// stream leaving the last layer and of its residual are gathered (embed_fwd reads rows by index), added and
// normed, and the classifier runs on them; in training their gradient goes back through the norm and is
// scattered into d stream (embed_bwd adds rows by index into zeros), which finishes the head's backward here.
// Rows without a target have no loss and no gradient, so this is the dense head's function, at n / N of the
// classifier's cost. Returns the summed loss.
static double head_sparse_fwd(Model *m, Acts *a, const int32_t *targets, int64_t n, double loss_scale) {
    const Config *c = &m->c;
    const int D = c->D, V = c->V;
    const int64_t N = a->N;
    int32_t *sel = a->sel_h;                            // the rows [n], and at sel + N their targets [n]
    if (!a->queued) sparse_rows(sel, targets, N);       // (queued: model_queue_batch made them)
    const int32_t *rows_b = sel, *tgt_b = sel + N;      // where the backend reads them
    if (g_gpu && n) {
        // queued: sel is page-locked, and the next step's rows go in only after this step is done
        void (*up)(void *, const void *, size_t) = a->queued ? dev_upload_async : dev_upload;
        up(a->sel_d, sel, (size_t)n * sizeof(int32_t));
        up(a->sel_d + N, sel + N, (size_t)n * sizeof(int32_t));
        rows_b = a->sel_d;
        tgt_b = a->sel_d + N;
    }
    // the gathered rows go where nothing is kept now: buffers the backward overwrites, or in an evaluation
    // the mixer's, which the forward is done with
    real *xr = a->train ? a->dh : a->o, *rr = a->train ? a->dout : a->qfi;
    if (a->train) OP(zero, a->dt, N * D);                                    // d stream [N,D]
    if (!n) return 0;
    real *xL = a->resid + (int64_t)c->L * N * D;
    SECTION("final norm");
    OP(embed_fwd, xr, rows_b, xL, n, D);                                     // the rows of the stream [n,D]
    OP(embed_fwd, rr, rows_b, block_residual(m, a, c->L - 1), n, D);         // and of its residual [n,D]
    bnorm_fwd(m, a->hf, a->rstdf, xr, rr, P_NORM, P_NORM_B, 0, n);          // xr += rr; hf [n,D]
    SECTION("classifier");
    real *Wlm = W(m, lm_tensor(m), 0);
    const int64_t CR = cls_rows();
    int32_t *best = a->pred && !a->train ? xmalloc((size_t)CR * sizeof(int32_t)) : NULL;
    for (int64_t r0 = 0; r0 < n; r0 += CR) {
        int64_t rows = n - r0 < CR ? n - r0 : CR;
        if (a->train) {
            OP(classifier_train, a->losses + r0, a->dx + r0 * D, G(m, lm_tensor(m), 0), a->logits,
                                 opnd_at(a->hf, r0 * D), Wlm, tgt_b + r0, (real)loss_scale, rows, D, V);
            continue;
        }
        OP(matmul_fwd, a->logits, opnd_at(a->hf, r0 * D), Wlm, rows, D, V);
        OP(xent_fwd, a->losses + r0, a->logits, tgt_b + r0, rows, V);
        if (best) {
            logits_argmax(a, rows, V, best);
            for (int64_t i = 0; i < rows; i++) a->pred[sel[r0 + i]] = best[i];
        }
    }
    free(best);
    if (a->train) {
        SECTION("final norm bwd");
        bnorm_bwd(m, a, rr, 0, 0, a->dx, xr, a->rstdf, P_NORM, P_NORM_B, 0, n);                    // [n,D]
        OP(embed_bwd, a->dt, rr, rows_b, n, D, N);                           // into d stream's rows
    }
    if (a->queued) {   // the host adds them up once it has waited (model_queued_loss)
        dev_download_async(a->losses_h, a->losses, (size_t)n * sizeof(real));
        return 0;
    }
    dev_download(a->losses_h, a->losses, (size_t)n * sizeof(real));
    double loss = 0;
    for (int64_t i = 0; i < n; i++) loss += a->losses_h[i];
    return loss;
}

// Head: the stream leaving the last layer -> losses (and logits). Arguments as model_forward's; tgt_b: the
// targets where the backend reads them; best_b: NULL, or where the backend keeps each row's greedy pick (with
// last_only: model_forward_greedy).
static double head_fwd(Model *m, Acts *a, const int32_t *targets, const int32_t *tgt_b, real *logits_out,
                       int32_t *best_b, int last_only, double loss_scale, int64_t *count) {
    const Config *c = &m->c;
    const int B = a->B, T = a->T, D = c->D, V = c->V;
    const int64_t N = a->N;
    double loss = 0;
    int64_t cnt = 0;
    a->sparse = 0;
    switch (c->head) {
    case HEAD_NEXT_TOKEN: {
        if (targets && !logits_out && !last_only) {
            const int64_t n = count_targets(targets, N);
            if (sparse_head(n, N)) {       // few targets: the sparse head
                a->sparse = 1;
                loss = head_sparse_fwd(m, a, targets, n, loss_scale);
                cnt = n;
                break;
            }
        }
        real *xL = a->resid + (int64_t)c->L * N * D;
        SECTION("final norm");
        bnorm_fwd(m, a->hf, a->rstdf, xL, c->L > 0 ? block_residual(m, a, c->L - 1) : NULL, P_NORM, P_NORM_B, 0,
                  N);                                                        // xL += the last block's residual

        // Classifier, cls_rows() rows at a time: logits, loss, and in training straight away their gradient.
        SECTION("classifier");
        real *Wlm = W(m, lm_tensor(m), 0);
        real *dWlm = a->train ? G(m, lm_tensor(m), 0) : NULL;
        const int64_t CR = cls_rows();
        if (a->train) OP(zero, a->dx, N * D);
        for (int64_t r0 = 0; r0 < N; r0 += CR) {
            int64_t rows = N - r0 < CR ? N - r0 : CR;
            if (last_only) {
                // only the last position of each sequence: row b*T + T-1 (one product when those rows are all
                // the rows, as in decoding; a row's logits are the same either way on the CPU)
                if (r0 >= B) break;
                rows = B - r0 < CR ? B - r0 : CR;
                if (T == 1) OP(matmul_fwd, a->logits, opnd_at(a->hf, r0 * D), Wlm, rows, D, V);
                else
                    for (int64_t i = 0; i < rows; i++)
                        OP(matmul_fwd, a->logits + i * V, opnd_at(a->hf, ((r0 + i) * T + T - 1) * D), Wlm, 1, D, V);
            } else if (a->train && targets && !logits_out) {   // logits, loss and gradient: one op
                OP(classifier_train, a->losses + r0, a->dx + r0 * D, dWlm, a->logits, opnd_at(a->hf, r0 * D), Wlm,
                                     tgt_b + r0, (real)loss_scale, rows, D, V);
                continue;
            } else {
                OP(matmul_fwd, a->logits, opnd_at(a->hf, r0 * D), Wlm, rows, D, V);
            }
            if (logits_out) dev_download(logits_out + r0 * V, a->logits, (size_t)(rows * V) * sizeof(real));
            if (best_b) OP(argmax_rows, best_b + r0, a->logits, rows, V);
            if (!targets || last_only) continue;
            OP(xent_fwd, a->losses + r0, a->logits, tgt_b + r0, rows, V);
            if (a->pred && !a->train) {
                int32_t *best = xmalloc((size_t)rows * sizeof(int32_t));
                logits_argmax(a, rows, V, best);
                for (int64_t i = 0; i < rows; i++) if (targets[r0 + i] >= 0) a->pred[r0 + i] = best[i];
                free(best);
            }
            if (a->train) {
                OP(xent_bwd, a->logits, a->logits, tgt_b + r0, (real)loss_scale, rows, V);
                const opnd *dlog = dyo_from(a, a->logits, rows * V);
                OP(matmul_bwd, a->dx + r0 * D, dWlm, dlog, opnd_at(a->hf, r0 * D), Wlm, rows, D, V);
            }
        }
        // summed on the host in row order, once the losses are all there
        if (targets && !last_only && a->queued) {   // (model_queued_loss, once the host has waited)
            dev_download_async(a->losses_h, a->losses, (size_t)N * sizeof(real));
            cnt = a->q_count;
        } else if (targets && !last_only) {
            dev_download(a->losses_h, a->losses, (size_t)N * sizeof(real));
            for (int64_t i = 0; i < N; i++)
                if (targets[i] >= 0) { loss += a->losses_h[i]; cnt++; }
        }
        break;
    }
    }
    if (count) *count = cnt;
    return loss;
}

void decode_state_alloc(DecodeState *st, const Config *c, int B, int ctx) {
    const int att = c->mixer == MIXER_TRANSFORMER;
    const double per = att ? (double)B * ctx * 2 * c->D : (double)B * c->H * c->K * c->Dv;   // values per layer
    if (c->L * per * sizeof(real) > 0x1p62)
        die("a %s of %d sequences x %d positions at this model size would need more than 2^62 bytes",
            att ? "key/value cache" : "decoding state", B, ctx);
    st->n = (int64_t)(c->L * per);
    st->s = dev_zeros(st->n, att ? "key/value cache" : "recurrent state");
    st->B = B;
    st->ctx = ctx;
    st->pos = 0;
}
void decode_state_free(DecodeState *st) {
    dev_free(st->s);
    memset(st, 0, sizeof *st);
}
void decode_state_set_row(const Config *c, DecodeState *dst, int b, const DecodeState *src, int sb) {
    if (b < 0 || b >= dst->B || sb < 0 || sb >= src->B)
        die("decode_state_set_row: row %d of %d from row %d of %d", b, dst->B, sb, src->B);
    const int64_t dper = dst->n / c->L, sper = src->n / c->L;   // values per layer: [B, ...] each
    // a row: HGRN's H x K x Dv (D for HGRN1), or the positions of the transformer's cache that src has filled
    int64_t drow = dper / dst->B, srow = sper / src->B, n = srow;
    if (c->mixer == MIXER_TRANSFORMER) {
        if (src->pos > dst->ctx)
            die("decode_state_set_row: %d positions do not fit a key/value cache of %d", src->pos, dst->ctx);
        n = (int64_t)src->pos * 2 * c->D;
    } else if (drow != srow) {
        die("decode_state_set_row: rows of %lld and %lld values", (long long)drow, (long long)srow);
    }
    for (int l = 0; l < c->L; l++)
        dev_copy(dst->s + l * dper + b * drow, src->s + l * sper + sb * srow, (size_t)n * sizeof(real));
}

// Decoding's token step of HGRN2 (T 1, a state, no targets): the function of block_fwd and the head's last_only
// branch, with the element-wise work folded into the ops beside it (ops.h: op_matmul_fused_fwd and
// op_hgru_step_fwd): each RMSNorm into the product it feeds, each residual add into the product before it (so the
// stream entering a layer is whole, nothing pending), SwiGLU into the down product, the gates into the step.
// Five ops a layer where block_fwd has ten; on the CPU the same ops in turn, with the same results. It serves up to
// DECODE_FUSED_ROWS sequences, where a product is one pass over its weights and the prologue's input is small;
// more rows decode through block_fwd, whose norms add the residuals on the way and whose recurrence still takes
// the step with its gates. HGRN2_DECODE_FUSED=0, or g_decode_fused = 0, decodes op by op throughout.
static int decode_fused_on(const Model *m, const Acts *a, const DecodeState *st, const int32_t *targets, int last_only) {
    return fused_flag() && st && a->T == 1 && a->B <= DECODE_FUSED_ROWS && !a->train && !targets && last_only &&
           m->c.mixer == MIXER_CAUSAL && m->c.layer == LAYER_FLA && m->c.block == BLOCK_FLA &&
           m->c.head == HEAD_NEXT_TOKEN &&
           m->c.input == INPUT_TOKENS;
}
static void block_step(Model *m, Acts *a, int l, const DecodeState *st) {
    const Config *c = &m->c;
    const int B = a->B, D = c->D, I = c->I, HK = c->H * c->K, QFI = 2 * HK + D;
    const int64_t N = a->N;
    real *x = a->resid + (int64_t)l * N * D, *xn = a->resid + (int64_t)(l + 1) * N * D;
    real *qfi = LAYER(a, qfi, l, QFI), *o = LAYER(a, o, l, D), *mid = I ? LAYER(a, xmid, l, D) : xn;
    const real *lb = (c->lower_bound && l > 0) ? a->lb + (int64_t)l * HK : NULL;
    SECTION("mixer");
    OP(matmul_fused_fwd, qfi, 0, x, OP_PRO_RMSNORM, W(m, P_ATTN_NORM, l), c->eps, W(m, P_WQ, l), NULL, a->h1, N, D,
                         QFI);                                               // [q | f | v] of norm(x)
    OP(hgru_step_fwd, o, layer_state(c, st, l), a->q, a->k, a->g, qfi, QFI, lb, B, c->H, c->K, c->Dv);   // o [N,D]
    OP(matmul_fused_fwd, mid, 0, o, OP_PRO_RMSNORM, W(m, P_GNORM, l), EPS_O, W(m, P_WO, l), x, a->yo, N, D, D);  // x + y
    if (!I) return;
    SECTION("mlp");
    opnd *gu = LAYER_OPND(a, gu, l, 2 * I);
    OP(matmul_fused_fwd, gu, 1, mid, OP_PRO_RMSNORM, W(m, P_MLP_NORM, l), c->eps, W(m, P_WGATE, l), NULL, a->h2, N,
                         D, 2 * I);                                          // [gate | up] of norm(mid)
    OP(matmul_fused_fwd, xn, 0, gu, OP_PRO_SWIGLU, NULL, 0.0, W(m, P_WDOWN, l), mid, a->a, N, I, D);   // mid + MLP
}
// The head of a fused step: the final norm folded into the classifier, then logits_out or best_b as head_fwd's
// (its N <= DECODE_FUSED_ROWS rows fit the classifier's scratch at once); done: the whole step ran the product
// and the picks.
static void head_step(Model *m, Acts *a, int done, real *logits_out, int32_t *best_b) {
    const Config *c = &m->c;
    const int D = c->D, V = c->V;
    const int64_t N = a->N;
    SECTION("classifier");
    if (!done)
        OP(matmul_fused_fwd, a->logits, 0, a->resid + (int64_t)c->L * N * D, OP_PRO_RMSNORM, W(m, P_NORM, 0), c->eps,
                             W(m, lm_tensor(m), 0), NULL, a->hf, N, D, V);
    if (logits_out) dev_download(logits_out, a->logits, (size_t)(N * V) * sizeof(real));
    if (best_b && !done) OP(argmax_rows, best_b, a->logits, N, V);
}

// Every layer's block_step, the head's product and best_b's picks as one launch where the backend has it
// (dev_decode_step: the GPU, batches of 2 to 4 and batch 1 of a model of small products; not under bench --profile,
// which times the ops); 0: the caller runs the ops.
static int whole_step(Model *m, Acts *a, const DecodeState *st, int32_t *best_b) {
    const Config *c = &m->c;
    if (g_prof || c->L > DECODE_STEP_MAX_L) return 0;
    const int HK = c->H * c->K;
    DecodeStepLayer ly[DECODE_STEP_MAX_L];
    for (int l = 0; l < c->L; l++)
        ly[l] = (DecodeStepLayer){.attn_norm = W(m, P_ATTN_NORM, l), .wqfi = W(m, P_WQ, l), .gnorm = W(m, P_GNORM, l),
                                  .wo = W(m, P_WO, l), .mlp_norm = c->I ? W(m, P_MLP_NORM, l) : NULL,
                                  .wgu = c->I ? W(m, P_WGATE, l) : NULL, .wdown = c->I ? W(m, P_WDOWN, l) : NULL,
                                  .lb = (c->lower_bound && l > 0) ? a->lb + (int64_t)l * HK : NULL,
                                  .S = layer_state(c, st, l)};
    const DecodeStep d = {.L = c->L, .B = a->B, .D = c->D, .I = c->I, .H = c->H, .K = c->K, .Dv = c->Dv, .V = c->V,
                          .eps = c->eps, .eps_o = EPS_O, .resid = a->resid, .qfi = a->qfi, .o = a->o,
                          .mid = a->xmid, .logits = a->logits, .gu = a->gu, .best = best_b, .norm = W(m, P_NORM, 0),
                          .wlm = W(m, lm_tensor(m), 0), .layers = ly};
    return dev_decode_step(&d);
}

// The forward's ops, with the ids (and targets: tgt_b) where the backend reads them; best_b as head_fwd's.
// lb_ready: a->lb holds the lower bounds of these weights already (the later steps of a graph of several).
static double forward_ops(Model *m, Acts *a, const int32_t *ids_b, const int32_t *targets, const int32_t *tgt_b,
                          DecodeState *st, real *logits_out, int32_t *best_b, int last_only, double loss_scale,
                          int64_t *count, int lb_ready) {
    const Config *c = &m->c;
    SECTION("embedding");
    // the forget gates' lower bounds of every layer, once per pass: a softmax over the layers per channel
    if (c->lower_bound && !lb_ready) OP(lower_bounds_fwd, a->lb, W(m, P_LB, 0), c->L, c->H * c->K);
    input_fwd(m, a, ids_b);
    if (decode_fused_on(m, a, st, targets, last_only)) {
        const int done = whole_step(m, a, st, best_b);
        if (!done)
            for (int l = 0; l < c->L; l++) block_step(m, a, l, st);
        st->pos += 1;
        head_step(m, a, done, logits_out, best_b);
        if (count) *count = 0;
        return 0;
    }
    for (int l = 0; l < c->L; l++) block_fwd(m, a, l, st);
    if (st) st->pos += a->T;
    return head_fwd(m, a, targets, tgt_b, logits_out, best_b, last_only, loss_scale, count);
}

// Decoding a token at a time on the GPU launches a few kernels per layer for very little work each, so at small
// sizes the launches, not the GPU, set the pace. HGRN's step is the same every time (the same kernels on the
// same buffers and state; no positions), so it is recorded once as a CUDA graph and replayed: one launch a
// token. The first step of a batch runs as it is (it creates every buffer and bf16 weight copy the step uses),
// the second records the graph; the graph belongs to the activations and the state it was recorded with.
// The transformer's step changes with its position (its attention reads a longer cache each time), so it
// runs as it is. HGRN2_CUDA_GRAPHS=0, or g_decode_graphs = 0, turns the graphs off (and the backend records
// nothing under HGRN2_CUDA_SYNC).
int g_decode_graphs = -1;   // -1: as HGRN2_CUDA_GRAPHS says (on unless it is 0)
static int decode_graphs_on(void) { return env_switch(&g_decode_graphs, "HGRN2_CUDA_GRAPHS") && !g_prof; }
// Whether a one-token decoding step of a may replay a graph: on the GPU, HGRN (not the transformer, whose step
// changes with its position), a next-token head, not training, rows that fit the classifier's block.
static int step_graphs_on(const Model *m, const Acts *a, const DecodeState *st) {
    return g_gpu && st && a->T == 1 && !a->train && m->c.head == HEAD_NEXT_TOKEN &&
           m->c.mixer != MIXER_TRANSFORMER && a->B <= cls_rows() && decode_graphs_on();
}
// The step of model_forward (logits_out) or model_forward_greedy (best_out); the graph of the one keeps its
// output apart from the other's (graph_best says which it was recorded for).
static void graph_step(Model *m, Acts *a, const int32_t *ids, DecodeState *st, real *logits_out, int32_t *best_out) {
    const int best = best_out != NULL;
    // recorded for another state, batch or output, or before memory it reads changed
    if (a->graph && (a->graph_state != st->s || a->graph_B != a->B || a->graph_best != best ||
                     a->graph_epoch != dev_mem_epoch())) {
        dev_graph_free(a->graph);
        a->graph = NULL;
        a->graph_runs = 0;
    }
    dev_upload(a->ids_d, ids, (size_t)a->N * sizeof(int32_t));
    int32_t *best_b = best ? a->sel_d : NULL;
    const int pos = st->pos;
    if (!a->graph && a->graph_runs > 0 && !a->graph_failed) {
        if (dev_graph_begin()) {
            forward_ops(m, a, a->ids_d, NULL, NULL, st, NULL, best_b, 1, 0, NULL, 0);
            a->graph = dev_graph_end();
        }
        a->graph_failed = !a->graph;
        a->graph_state = st->s;
        a->graph_B = a->B;
        a->graph_best = best;
        a->graph_epoch = dev_mem_epoch();
        st->pos = pos;   // nothing ran yet
    }
    if (a->graph) {
        dev_graph_launch(a->graph);
        st->pos = pos + 1;
    } else {
        forward_ops(m, a, a->ids_d, NULL, NULL, st, NULL, best_b, 1, 0, NULL, 0);
    }
    a->graph_runs++;
    if (best) dev_download(best_out, best_b, (size_t)a->B * sizeof(int32_t));
    else dev_download(logits_out, a->logits, (size_t)a->B * m->c.V * sizeof(real));
}

// model_forward and model_forward_greedy: logits_out and best_out as they say (at most one of them)
static double forward_entry(Model *m, Acts *a, const int32_t *ids, const int32_t *targets, DecodeState *st,
                            real *logits_out, int32_t *best_out, int last_only, double loss_scale, int64_t *count) {
    const Config *c = &m->c;
    const int64_t N = a->N;
    if (count) *count = 0;
    if (st && st->B != a->B) die("model_forward: a decoding state of %d sequences for a batch of %d", st->B, a->B);
    if (st && c->mixer == MIXER_TRANSFORMER && (int64_t)st->pos + a->T > st->ctx)
        die("the key/value cache holds %d positions: %d more after %d do not fit", st->ctx, a->T, st->pos);
    if (step_graphs_on(m, a, st) && last_only && (logits_out || best_out) && !targets) {
        graph_step(m, a, ids, st, logits_out, best_out);
        return 0;
    }
    const int32_t *ids_b = ids, *tgt_b = targets;     // the ids where the backend reads them
    int32_t *best_b = best_out ? a->sel_h : NULL;     // and the greedy picks
    if (g_gpu) {
        dev_upload(a->ids_d, ids, (size_t)N * sizeof(int32_t));
        ids_b = a->ids_d;
        if (targets) { dev_upload(a->tgt_d, targets, (size_t)N * sizeof(int32_t)); tgt_b = a->tgt_d; }
        if (best_out) best_b = a->sel_d;
    }
    double loss = forward_ops(m, a, ids_b, targets, tgt_b, st, logits_out, best_b, last_only, loss_scale, count, 0);
    if (best_out) dev_download(best_out, best_b, (size_t)a->B * sizeof(int32_t));
    return loss;
}

double model_forward(Model *m, Acts *a, const int32_t *ids, const int32_t *targets, DecodeState *st,
                     real *logits_out, int last_only, double loss_scale, int64_t *count) {
    return forward_entry(m, a, ids, targets, st, logits_out, NULL, last_only, loss_scale, count);
}

int64_t model_queue_batch(Acts *a, const int32_t *ids, const int32_t *targets) {
    if (!g_gpu) die("internal error: a queued training step without the GPU");
    const int64_t N = a->N;
    if (!a->ids_h) {
        a->ids_h = dev_host_alloc((size_t)a->cap * sizeof(int32_t));
        a->tgt_h = dev_host_alloc((size_t)a->cap * sizeof(int32_t));
    }
    memcpy(a->ids_h, ids, (size_t)N * sizeof(int32_t));
    memcpy(a->tgt_h, targets, (size_t)N * sizeof(int32_t));
    a->q_count = count_targets(targets, N);
    a->q_sparse = sparse_head(a->q_count, N);
    a->q_nloss = a->q_sparse ? a->q_count : N;
    if (a->q_sparse) sparse_rows(a->sel_h, targets, N);   // where the recorded uploads read them
    return a->q_count;
}

int model_queue_pinned(const Acts *a) {
    return dev_host_is_pinned(a->ids_h) && dev_host_is_pinned(a->tgt_h) && dev_host_is_pinned(a->sel_h) &&
           dev_host_is_pinned(a->losses_h);
}

void model_forward_queued(Model *m, Acts *a, double loss_scale) {
    const int64_t N = a->N;
    dev_upload_async(a->ids_d, a->ids_h, (size_t)N * sizeof(int32_t));
    dev_upload_async(a->tgt_d, a->tgt_h, (size_t)N * sizeof(int32_t));
    a->queued = 1;
    int64_t cnt;
    forward_ops(m, a, a->ids_d, a->tgt_h, a->tgt_d, NULL, NULL, NULL, 0, loss_scale, &cnt, 0);
    a->queued = 0;
    if (a->sparse != a->q_sparse || cnt != a->q_count)
        die("internal error: the queued forward took another head than model_queue_batch decided");
}

double model_queued_loss(const Acts *a) {
    double loss = 0;   // in row order, as head_fwd and head_sparse_fwd add them
    if (a->q_sparse)
        for (int64_t i = 0; i < a->q_nloss; i++) loss += a->losses_h[i];
    else
        for (int64_t i = 0; i < a->N; i++)
            if (a->tgt_h[i] >= 0) loss += a->losses_h[i];
    return loss;
}

void model_forward_greedy(Model *m, Acts *a, const int32_t *ids, DecodeState *st, int32_t *best) {
    if (m->c.head != HEAD_NEXT_TOKEN) die("model_forward_greedy: the model does not predict tokens");
    forward_entry(m, a, ids, NULL, st, NULL, best, 1, 0, NULL);
}

// Graph k of model_greedy_steps: 2 << k steps from ids, their picks into a->steps_d and then out; 0 when it could
// not be recorded (the caller steps one at a time).
static int greedy_graph(Model *m, Acts *a, int k, const int32_t *ids, DecodeState *st, int32_t *out) {
    const int B = a->B, S = 2 << k;
    if (a->sgraph[k] && (a->sgraph_state[k] != st->s || a->sgraph_B[k] != B || a->sgraph_epoch[k] != dev_mem_epoch())) {
        dev_graph_free(a->sgraph[k]);
        a->sgraph[k] = NULL;
    }
    if (!a->steps_d) a->steps_d = dev_alloc((size_t)GREEDY_CHUNK * (size_t)a->cap * sizeof(int32_t), "greedy picks");
    dev_upload(a->ids_d, ids, (size_t)B * sizeof(int32_t));
    const int pos = st->pos;
    if (!a->sgraph[k]) {
        if (!dev_graph_begin()) return 0;
        for (int s = 0; s < S; s++)   // step s reads step s - 1's picks and the lower bounds step 0 made
            forward_ops(m, a, s ? a->steps_d + (int64_t)(s - 1) * B : a->ids_d, NULL, NULL, st, NULL,
                        a->steps_d + (int64_t)s * B, 1, 0, NULL, s > 0);
        st->pos = pos;   // nothing ran yet
        a->sgraph[k] = dev_graph_end();
        if (!a->sgraph[k]) { a->sgraph_failed = 1; return 0; }
        a->sgraph_state[k] = st->s;
        a->sgraph_B[k] = B;
        a->sgraph_epoch[k] = dev_mem_epoch();
    }
    dev_graph_launch(a->sgraph[k]);
    st->pos = pos + S;
    dev_download(out, a->steps_d, (size_t)S * B * sizeof(int32_t));
    return 1;
}

// HGRN2_GREEDY_STEPS=0 (or g_greedy_steps = 0) takes model_greedy_steps' steps one at a time
int g_greedy_steps = -1;
void model_greedy_steps(Model *m, Acts *a, const int32_t *ids, DecodeState *st, int n, int32_t *out) {
    const int B = a->B;
    if (st && st->B != B) die("model_greedy_steps: a decoding state of %d sequences for a batch of %d", st->B, B);
    const int on = step_graphs_on(m, a, st) && env_switch(&g_greedy_steps, "HGRN2_GREEDY_STEPS");
    for (int t = 0; t < n; ) {
        const int32_t *in = t ? out + (int64_t)(t - 1) * B : ids;
        // the graphs take the steps after a batch's first (which makes the buffers and bf16 copies they read)
        const int graphs = on && !a->sgraph_failed && a->steps_B == B && a->steps_epoch == dev_mem_epoch();
        int k = GREEDY_GRAPHS - 1;
        while (k >= 0 && (2 << k) > n - t) k--;
        if (graphs && k >= 0 && greedy_graph(m, a, k, in, st, out + (int64_t)t * B)) { t += 2 << k; continue; }
        model_forward_greedy(m, a, in, st, out + (int64_t)t * B);
        a->steps_B = B;
        a->steps_epoch = dev_mem_epoch();
        t++;
    }
}

// ----------------------------------------------------------------------------------------------------------
// Backward pass: the stages in reverse. dx is the gradient of the residual stream; every block adds its
// part into it (+=) on the way down. The norms' outputs (h1, h2, yo) and the cheap elementwise results are
// recomputed from what the forward kept (Acts), bit for bit as it made them.

// Head backward: the classifier's part ran in the forward (fused with the loss) and left d hf in a->dx.
// Returns the gradient of the stream leaving the last layer (in a->dt; a->dx is not used again).
static real *head_bwd(Model *m, Acts *a) {
    const Config *c = &m->c;
    const int D = c->D;
    const int64_t N = a->N;
    real *dx = NULL;
    switch (c->head) {
    case HEAD_NEXT_TOKEN: {
        if (a->sparse) { dx = a->dt; break; }      // the sparse head did its backward in the forward
        real *xL = a->resid + (int64_t)c->L * N * D;
        SECTION("final norm bwd");
        bnorm_bwd(m, a, a->dt, 0, 1, a->dx, xL, a->rstdf, P_NORM, P_NORM_B, 0, N);
        dx = a->dt;
        break;
    }
    }
    return dx;
}

// MLP backward: dy [N,D], the gradient of its output -> a->dh = d h2 (=); its weights' gradients (+=).
// Needs h2 as the forward made it.
static void mlp_bwd(Model *m, Acts *a, int l, const real *dy) {
    const int D = m->c.D, I = m->c.I;
    const int64_t N = a->N;
    opnd *gu = LAYER_OPND(a, gu, l, 2 * I);
    OP(swiglu_fwd, a->a, gu, N, I);                                                  // recomputed
    const opnd *dyo = dy_opnd(a, dy, D);   // (outside OP: the profile charges a conversion apart)
    OP(matmul_bwd, a->da, G(m, P_WDOWN, l), dyo, a->a, W(m, P_WDOWN, l), N, I, D);   // da [N,I]
    OP(swiglu_bwd, a->dgu, a->da, gu, N, I);                                         // dgu [N,2I]
    OP(matmul_bwd, a->dh, G(m, P_WGATE, l), a->dgu, a->h2, W(m, P_WGATE, l), N, D, 2 * I);
}

// The gates' backward into the projection's gradient dqfi [N, 2 HK + D] as the operand its product reads, the
// last D columns (v's, or HGRN1's output gate's) already in a->dqfi as real. Where operands are not real the
// gates' columns go straight into a->dyo in that format and only the last D are converted (the same bits as
// converting the whole of a->dqfi after the gates' op).
static const opnd *gates_bwd_to_opnd(Acts *a, const real *qf, int QFI, int HK, int D, const real *lb, real *dlb) {
    const int64_t N = a->N;
    if (opnd_size() == sizeof(real)) {
        OP(gates_bwd, a->dqfi, QFI, dlb, a->dq, a->dk, a->dg, qf, QFI, lb, N, HK);
        return a->dqfi;
    }
    a->dyo_of = NULL;
    OP(gates_bwd_opnd, a->dyo, QFI, dlb, a->dq, a->dk, a->dg, qf, QFI, lb, N, HK);
    OP(to_opnd_cols, opnd_at(a->dyo, 2 * HK), QFI, a->dqfi + 2 * HK, QFI, N, D);
    return a->dyo;
}

// Token mixer backward: dy [N,D], the gradient of y -> a->dh = d h1 (=); its weights' gradients and the
// layer's row of a->dlb (+=). Needs h1 as the forward made it.
static void mixer_bwd(Model *m, Acts *a, int l, const real *dy) {
    const Config *c = &m->c;
    const int B = a->B, T = a->T, D = c->D, HK = c->H * c->K, QFI = 2 * HK + D;
    const int64_t N = a->N;
    switch (c->mixer) {
    case MIXER_CAUSAL: {
        // the authors' layer (lra): silu(v) and its gradient in buffers of their own, the biases' gradients
        const int lra = c->layer == LAYER_LRA;
        real *qfi = LAYER(a, qfi, l, QFI), *o = LAYER(a, o, l, D), *v = lra ? a->vact : qfi + 2 * HK;
        real *dv = lra ? a->dvs : a->dqfi + 2 * HK;
        const int64_t ldv = lra ? D : QFI;
        const real *lb = (c->lower_bound && l > 0) ? a->lb + (int64_t)l * HK : NULL;
        real *dlb = lb ? a->dlb + (int64_t)l * HK : NULL;
        if (lra) OP(bias_bwd, G(m, P_BO, l), dy, N, D);
        out_norm_again(m, a->yo, LAYER(a, rstdo, l, lra ? 2 : 1), o, l, N);          // recomputed
        const opnd *dyo = dy_opnd(a, dy, D);
        OP(matmul_bwd, a->dh, G(m, P_WO, l), dyo, a->yo, W(m, P_WO, l), N, D, D);     // d yo
        out_norm_bwd(m, a->dout, a->dh, o, LAYER(a, rstdo, l, lra ? 2 : 1), l, N);
        OP(gates_fwd, a->q, a->k, a->g, qfi, QFI, lb, N, HK);                        // recomputed
        if (lra) OP(lra_acts_fwd, a->q, a->vact, qfi, QFI, N, HK, D, sqrt((double)c->K));
        OP(hgru_bwd, a->dq, a->dk, a->dg, dv, ldv, a->dout, a->q, a->k, a->g, v, ldv,
                    B, T, c->H, c->K, c->Dv, mixer_chunk(T), 0, 0);
        if (lra) {
            OP(gates_bwd, a->dqfi, QFI, dlb, a->dq, a->dk, a->dg, qfi, QFI, lb, N, HK);   // (q's is replaced next)
            OP(lra_acts_bwd, a->dqfi, QFI, a->dq, a->dvs, qfi, QFI, N, HK, D, sqrt((double)c->K));   // d q, d v
            OP(bias_bwd, G(m, P_BQFI, l), a->dqfi, N, QFI);
            dyo = dyo_from(a, a->dqfi, N * QFI);
        } else {
            dyo = gates_bwd_to_opnd(a, qfi, QFI, HK, D, lb, dlb);
        }
        OP(matmul_bwd, a->dh, G(m, P_WQ, l), dyo, a->h1, W(m, P_WQ, l), N, D, QFI);
        break;
    }
    case MIXER_HGRN1: {
        real *ifg = LAYER(a, qfi, l, QFI), *o = LAYER(a, o, l, D);
        const real *lb = (c->lower_bound && l > 0) ? a->lb + (int64_t)l * HK : NULL;
        real *dlb = lb ? a->dlb + (int64_t)l * HK : NULL;
        const real *z = ifg + 2 * HK;                                                // the output gate g
        OP(rmsnorm_gated_fwd, a->yo, NULL, o, z, QFI, W(m, P_GNORM, l), N, D, c->eps);  // recomputed
        const opnd *dyo = dy_opnd(a, dy, D);
        OP(matmul_bwd, a->dh, G(m, P_WO, l), dyo, a->yo, W(m, P_WO, l), N, D, D);     // d yo
        OP(rmsnorm_gated_bwd, a->dout, a->dqfi + 2 * HK, QFI, G(m, P_GNORM, l), a->dh, o, z, QFI, W(m, P_GNORM, l),
                             LAYER(a, rstdo, l, 1), N, D, c->eps);                   // d o, d g
        OP(gates_fwd, a->q, a->k, a->g, ifg, QFI, lb, N, HK);                        // recomputed
        OP(hgrn_bwd, a->dq, a->dk, a->dg, a->dout, a->q, a->k, a->g, o, B, T, D, 0, 0);
        dyo = gates_bwd_to_opnd(a, ifg, QFI, HK, D, lb, dlb);                         // d i, d f
        OP(matmul_bwd, a->dh, G(m, P_WQ, l), dyo, a->h1, W(m, P_WQ, l), N, D, QFI);
        break;
    }
    case MIXER_TRANSFORMER: {
        // q and k as the forward kept them, rotated; their gradients are rotated back after the attention's
        real *qkv = LAYER(a, qfi, l, QFI), *o = LAYER(a, o, l, D);
        const opnd *dyo = dy_opnd(a, dy, D);
        const opnd *oo = as_opnd(a->yo, o, N * D);
        OP(matmul_bwd, a->dout, G(m, P_WO, l), dyo, oo, W(m, P_WO, l), N, D, D);   // d o
        OP(attention_bwd, a->dqfi, a->dqfi + D, a->dqfi + 2 * D, QFI, a->dout, qkv, qkv + D, qkv + 2 * D, QFI, o,
                          LAYER(a, lse, l, c->H), B, T, c->H, c->K);                 // d [q | k | v] [N, 3D]
        OP(rope_bwd, a->dqfi, QFI, B, T, 2 * c->H, c->K, ROPE_THETA);
        dyo = dyo_from(a, a->dqfi, N * QFI);
        OP(matmul_bwd, a->dh, G(m, P_WQ, l), dyo, a->h1, W(m, P_WQ, l), N, D, QFI);
        break;
    }
    case NMIXERS: break;
    }
}

// Layer l backward: dx holds the gradient of the layer's output and leaves as that of its input. Without an
// MLP the output is x + y, so dx is also the gradient of y. Zoology's identity in the MLP's place passes dx on
// as the gradient of its norm's output.
static void block_bwd(Model *m, Acts *a, int l, real *dx) {
    const Config *c = &m->c;
    const int D = c->D, ns = bnorm_stats(c);
    const int64_t N = a->N;
    real *x = a->resid + (int64_t)l * N * D;
    if (c->I) {
        real *xmid = LAYER(a, xmid, l, D);
        SECTION("mlp bwd");
        bnorm_again(m, a->h2, LAYER(a, rstd2, l, ns), xmid, P_MLP_NORM, P_MLP_NORM_B, l, N);   // recomputed
        mlp_bwd(m, a, l, dx);
        bnorm_bwd(m, a, dx, 1, 1, a->dh, xmid, LAYER(a, rstd2, l, ns), P_MLP_NORM, P_MLP_NORM_B, l, N);   // dx += d xmid
    } else if (c->block == BLOCK_ZOOLOGY) {
        SECTION("mlp bwd");
        dev_copy(a->dh, dx, (size_t)(N * D) * sizeof(real));                 // d (the norm's output) = dx
        bnorm_bwd(m, a, dx, 1, 1, a->dh, LAYER(a, xmid, l, D), LAYER(a, rstd2, l, ns), P_MLP_NORM, P_MLP_NORM_B, l,
                  N);
    }
    SECTION("mixer bwd");
    bnorm_again(m, a->h1, LAYER(a, rstd1, l, ns), x, P_ATTN_NORM, P_ATTN_NORM_B, l, N);       // recomputed
    mixer_bwd(m, a, l, dx);
    bnorm_bwd(m, a, dx, 1, l > 0, a->dh, x, LAYER(a, rstd1, l, ns), P_ATTN_NORM, P_ATTN_NORM_B, l, N);  // dx += d x
}

// Input stage backward: dx [N,D], the gradient of the stream entering layer 0 (through the dropout's masks in
// place), into the input's parameters.
static void input_bwd(Model *m, Acts *a, real *dx, const int32_t *ids) {
    const Config *c = &m->c;
    embed_dropout(a, dx, c->D, 1);
    switch (c->input) {
    case INPUT_TOKENS:
        OP(embed_bwd, G(m, P_EMB, 0), dx, g_gpu ? a->ids_d : ids, a->N, c->D, c->V);
        break;
    }
}

void model_backward(Model *m, Acts *a, const int32_t *ids) {
    const Config *c = &m->c;
    const int HK = c->H * c->K;
    const Layout *lay = &m->lay;
    a->dyo_of = NULL;
    real *dx = head_bwd(m, a);
    if (c->lower_bound) OP(zero, a->dlb, (int64_t)c->L * HK);   // every layer's mixer adds its row
    for (int l = c->L - 1; l >= 0; l--) {
        block_bwd(m, a, l, dx);
        // a layer's backward writes its own block of the gradients alone (the lower bounds' rows go to a->dlb)
        if (m->grads_ready) {
            int64_t lo = lay->layers_at + (int64_t)l * lay->layer_size;
            m->grads_ready(m->grads_ready_ctx, lo, l == c->L - 1 ? m->padded : lo + lay->layer_size);
        }
    }
    SECTION("embedding bwd");
    input_bwd(m, a, dx, ids);
    if (c->lower_bound) OP(lower_bounds_bwd, G(m, P_LB, 0), a->dlb, W(m, P_LB, 0), c->L, HK);
    // the global tensors: the head's (written in the forward and by head_bwd), the embedding, the lower bounds
    if (m->grads_ready) m->grads_ready(m->grads_ready_ctx, 0, lay->layers_at);
}

// ----------------------------------------------------------------------------------------------------------
// Optimizer: AdamW; the global gradient norm for clipping.

double grad_sumsq(Model *m) {
    SECTION("optimizer");
    return OP(sumsq, m->grads + m->opt_lo, m->opt_hi - m->opt_lo);
}

// Every tensor a part of one AdamW op (one launch on the GPU), with its own weight decay: *parts (the caller
// frees it), returns their count.
static int adamw_parts(Model *m, const AdamW *o, AdamwPart **out) {
    AdamwPart *parts = xmalloc((size_t)NPARAM * (m->c.L > 1 ? m->c.L : 1) * sizeof *parts);
    int np = 0;
    for (int p = 0; p < NPARAM; p++) {
        int64_t n = param_numel(&m->c, p);
        if (!n) continue;
        int nl = p < P_FIRST_LAYER ? 1 : m->c.L;
        double wd = PARAMS[p].decay ? o->wd : 0.0;
        for (int l = 0; l < nl; l++) {
            // the tensor's values [a, b) within the part this process updates; the moments hold the part alone
            int64_t a = W(m, p, l) - m->params, b = a + n;
            if (a < m->opt_lo) a = m->opt_lo;
            if (b > m->opt_hi) b = m->opt_hi;
            if (a >= b) continue;
            parts[np++] = (AdamwPart){m->params + a, m->grads + a, m->m + (a - m->opt_lo), m->v + (a - m->opt_lo),
                                      b - a, wd};
        }
    }
    *out = parts;
    return np;
}

void adamw_step(Model *m, const AdamW *o, double lr, double grad_scale, int64_t step) {
    SECTION("optimizer");
    AdamwPart *parts;
    const int np = adamw_parts(m, o, &parts);
    OP(adamw_multi, parts, np, lr, o->beta1, o->beta2, o->eps, grad_scale, step);
    free(parts);
}

void grad_sumsq_queued(Model *m, double *ss) {
    SECTION("optimizer");
    dev_sumsq_into(ss, m->grads + m->opt_lo, m->opt_hi - m->opt_lo);
}

void adamw_step_queued(Model *m, const AdamW *o, const StepCtl *ctl) {
    SECTION("optimizer");
    AdamwPart *parts;
    const int np = adamw_parts(m, o, &parts);
    dev_adamw_ctl(parts, np, o->beta1, o->beta2, o->eps, ctl);
    free(parts);
}
