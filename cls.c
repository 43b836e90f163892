// cls.c: the sequence classifier (cls.h): parameter table, initialisation, activations, forward and backward.
// Written over the ops of ops.h like the language model (model.c), so it runs on either backend; the
// architecture, its parameterisation and the choices where the authors' code is silent: docs/classifier.md.
#include <math.h>

#include "cls.h"
#include "model.h"

const char *const NORM_NAMES[NNORMS] = {"batch", "layer", "rms"};
const char *const POS_NAMES[NPOS] = {"none", "sinusoidal"};
const char *const SCAN_DTYPE_NAMES[NSCAN_DTYPES] = {[SCAN_FP32] = "fp32", [SCAN_BF16] = "bf16"};
const Range R_CLASSES = {"classes", 2, 1 << 24}, R_PATCH = {"patch", 1, 1024},
            R_PAD_GROUP = {"pad-group", 0, 1 << 20};

const char *cls_config_finish(ClsConfig *c) {
    if (!in_range(&R_VOCAB, c->V)) return "the vocabulary must be in [2, 16777216]";
    if (!in_range(&R_DIM, c->D)) return "--dim must be in [1, 65536]";
    if (!in_range(&R_LAYERS, c->L)) return "--layers must be in [1, 1024]";
    if (!in_range(&R_EXPAND, c->K) || c->D % c->K) return "--expand-ratio must divide --dim";
    if (c->I < 1 || c->I > (1 << 20)) return "the GLU width (--glu-ratio x --dim) must be in [1, 1048576]";
    if (!in_range(&R_CLASSES, c->classes)) return "the classes must be in [2, 16777216]";
    if (c->ndoc != 1 && c->ndoc != 2) return "examples must hold 1 or 2 documents";
    if (c->ndoc == 2 && c->classes != 2) return "the document-pair head has 2 classes";
    if (c->norm < 0 || c->norm >= NNORMS) return "--norm must be batch, layer or rms";
    if (c->pos < 0 || c->pos >= NPOS) return "--pos must be sinusoidal or none";
    if (c->lower_bound != 0 && c->lower_bound != 1) return "lower bounds are on (1) or off (0)";
    if (!(c->dropout >= 0 && c->dropout < 1)) return "--dropout must be in [0, 1)";
    if (!(c->input_dropout >= 0 && c->input_dropout < 1)) return "--input-dropout must be in [0, 1)";
    if (!(c->eps > 0 && c->eps < 1)) return "the norm eps must be in (0, 1)";
    if (c->input != INPUT_IDS && c->input != INPUT_PIXELS) return "the input is token ids or pixels";
    if (c->input == INPUT_PIXELS) {
        if (c->channels < 1 || c->channels > 3) return "pixels have 1 to 3 channels";
        for (int i = 0; i < c->channels; i++)
            if (!(fabs(c->pix_mean[i]) <= 1e3 && c->pix_std[i] >= 1e-6 && c->pix_std[i] <= 1e3))
                return "a pixel normalisation is out of range (|mean| <= 1000, std in [1e-6, 1000])";
    }
    if (c->scan < 0 || c->scan >= NSCANS) return "the scans are 1-D, 2-D or 2-D in series";
    if (c->mixer != MIXER_CAUSAL && c->mixer != MIXER_HGRN1) return "a classifier's --arch must be hgrn2 or hgrn1";
    if (c->mixer == MIXER_HGRN1 && c->K != 1)
        return "--arch hgrn1 needs --expand-ratio 1: HGRN1's state is a vector, one value per channel";
    if (c->layer < 0 || c->layer >= NLAYERS) return "--mixer-layer must be fla or lra";
    if (c->layer != LAYER_FLA && c->mixer != MIXER_CAUSAL)
        return "--mixer-layer lra is a form of HGRN2's layer: not with --arch hgrn1";
    if (c->scan_dtype < 0 || c->scan_dtype >= NSCAN_DTYPES) return "--scan-dtype must be fp32 or bf16";
    if (c->scan_dtype == SCAN_BF16) {
        if (c->layer != LAYER_LRA || c->mixer != MIXER_CAUSAL)
            return "--scan-dtype bf16 is the numerics of the authors' layer: it needs --mixer-layer lra";
        if (c->scan != SCAN_1D) return "--scan-dtype bf16 scans sequences (1-D) only, not the 2-D image scans";
        if (c->K < 1 || c->K > 32 || 32 % c->K)
            return "--scan-dtype bf16 needs an expand ratio that divides 32 (1, 2, 4, 8, 16 or 32)";
    }
    if (c->fnorm_plain != 0 && c->fnorm_plain != 1) return "the final norm is the model's (0) or a plain RMSNorm (1)";
    if ((c->scan != SCAN_1D || c->patch > 1) && (c->grid_h < 1 || c->grid_w < 1 || (int64_t)c->grid_h * c->grid_w > (1 << 24)))
        return "a 2-D grid needs a height and width of at least 1 and at most 2^24 positions";
    if (c->patch < 0 || c->patch > R_PATCH.hi) return "--patch must be in [1, 1024]";
    if (c->patch > 1) {
        if (c->input != INPUT_PIXELS) return "patches are made of pixels: --patch needs an image task";
        if (c->grid_h % c->patch || c->grid_w % c->patch) return "--patch must divide the images' height and width";
    }
    if (!in_range(&R_PAD_GROUP, c->pad_group)) return "--pad-group must be in [0, 1048576]";
    if (c->pad_group && (c->scan != SCAN_1D || c->patch > 1))
        return "--pad-group pads documents of varying length: it needs 1-D scans over tokens or pixels, not a grid";
    c->H = c->D / c->K;
    c->Dv = c->D / c->H;
    return NULL;
}

const ClsParamDesc CPARAMS[NCPARAM] = {
    [C_EMB] = {"embedding", 1, INIT_NORMAL},     [C_LB] = {"lower_bounds", 0, INIT_ZEROS},
    [C_FNORM] = {"norm", 0, INIT_ONES},          [C_FNORM_B] = {"norm_bias", 0, INIT_ZEROS},
    [C_HEAD] = {"head", 1, INIT_NORMAL},         [C_HEAD_B] = {"head_bias", 0, INIT_ZEROS},
    [C_PAIR1] = {"pair_proj", 1, INIT_NORMAL},   [C_PAIR1_B] = {"pair_proj_bias", 0, INIT_ZEROS},
    [C_PAIR2] = {"pair_out", 1, INIT_NORMAL},    [C_PAIR2_B] = {"pair_out_bias", 0, INIT_ZEROS},
    [C_NORM1] = {"mixer_norm", 0, INIT_ONES},    [C_NORM1_B] = {"mixer_norm_bias", 0, INIT_ZEROS},
    [C_WQFI] = {"qfi_proj", 1, INIT_NORMAL},     [C_GNORM] = {"g_norm", 0, INIT_ONES},
    [C_WO] = {"o_proj", 1, INIT_NORMAL},         [C_NORM2] = {"glu_norm", 0, INIT_ONES},
    [C_NORM2_B] = {"glu_norm_bias", 0, INIT_ZEROS}, [C_W12] = {"glu_in", 1, INIT_NORMAL},
    [C_B12] = {"glu_in_bias", 0, INIT_ZEROS},    [C_W3] = {"glu_out", 1, INIT_NORMAL},
    [C_B3] = {"glu_out_bias", 0, INIT_ZEROS},
    [C_PIX] = {"pixel_proj", 1, INIT_NORMAL},    [C_PIX_B] = {"pixel_proj_bias", 0, INIT_ZEROS},
    [C_BQFI] = {"qfi_proj_bias", 0, INIT_ZEROS}, [C_BO] = {"o_proj_bias", 0, INIT_ZEROS},
    [C_GNORM_B] = {"g_norm_bias", 0, INIT_ZEROS},
};

void cls_param_shape(const ClsConfig *c, int p, int64_t *rows, int64_t *cols) {
    const int64_t D = c->D, HK = (int64_t)c->H * c->K, QFI = 2 * HK + D, I = c->I;
    const int bias = c->norm != NORM_RMS, one = c->ndoc == 1, pix = c->input == INPUT_PIXELS, lra = c->layer == LAYER_LRA;
    int64_t r = 0, k = 0;
    switch (p) {
    case C_EMB: r = pix ? 0 : c->V; k = pix ? 0 : D; break;
    case C_PIX: r = pix ? D : 0; k = pix ? cls_pos_values(c) : 0; break;
    case C_PIX_B: r = pix; k = pix ? D : 0; break;
    case C_LB: r = c->lower_bound ? c->L : 0; k = c->lower_bound ? HK : 0; break;
    case C_FNORM: r = !c->fnorm_plain; k = c->fnorm_plain ? 0 : D; break;
    case C_FNORM_B: r = bias && !c->fnorm_plain; k = r ? D : 0; break;
    case C_NORM1: case C_GNORM: case C_NORM2: case C_B3: r = 1; k = D; break;
    case C_NORM1_B: case C_NORM2_B: r = bias; k = bias ? D : 0; break;
    case C_HEAD: r = one ? c->classes : 0; k = one ? D : 0; break;
    case C_HEAD_B: r = one; k = one ? c->classes : 0; break;
    case C_PAIR1: r = one ? 0 : D; k = one ? 0 : 4 * D; break;
    case C_PAIR1_B: r = !one; k = one ? 0 : D; break;
    case C_PAIR2: r = one ? 0 : 2; k = one ? 0 : D; break;
    case C_PAIR2_B: r = !one; k = one ? 0 : 2; break;
    case C_WQFI: r = QFI; k = D; break;
    case C_WO: r = D; k = D; break;
    case C_W12: r = 2 * I; k = D; break;
    case C_B12: r = 1; k = 2 * I; break;
    case C_W3: r = D; k = I; break;
    case C_BQFI: r = lra; k = lra ? QFI : 0; break;
    case C_BO: case C_GNORM_B: r = lra; k = lra ? D : 0; break;
    }
    *rows = r;
    *cols = k;
}

static int64_t numel(const ClsConfig *c, int p) {
    int64_t r, k;
    cls_param_shape(c, p, &r, &k);
    return r * k;
}

ClsLayout cls_layout_of(const ClsConfig *c) {
    ClsLayout lay = {{0}, 0, 0, 0};
    int64_t at = 0;
    for (int p = 0; p < C_FIRST_LAYER; p++) { lay.off[p] = at; at += numel(c, p); }
    lay.layers_at = at;
    int64_t in = 0;
    for (int p = C_FIRST_LAYER; p < NCPARAM; p++) { lay.off[p] = in; in += numel(c, p); }
    lay.layer_size = in;
    lay.n = at + in * c->L;
    return lay;
}

int64_t cls_nstats(const ClsConfig *c) { return c->norm == NORM_BATCH ? (int64_t)(2 * c->L + 1) * 2 * c->D : 0; }

void cls_alloc(ClsModel *m, const ClsConfig *c) {
    memset(m, 0, sizeof *m);
    m->c = *c;
    m->lay = cls_layout_of(c);
    m->params = xcalloc((size_t)m->lay.n, sizeof(real));
    const int64_t ns = cls_nstats(c);
    m->stats = ns ? xcalloc((size_t)ns, sizeof(real)) : NULL;
}

// Elements of tensor p in configuration c, or -1 when its shape differs from that in configuration o (two
// absent tensors count as the same).
static int64_t kept_numel(const ClsConfig *o, const ClsConfig *c, int p) {
    int64_t r0, k0, r1, k1;
    cls_param_shape(o, p, &r0, &k0);
    cls_param_shape(c, p, &r1, &k1);
    if (r1 * k1 == 0) return r0 * k0 == 0 ? 0 : -1;
    return r0 == r1 && k0 == k1 ? r1 * k1 : -1;
}

int cls_adopt_config(ClsModel *m, const ClsConfig *c, uint64_t seed, int init) {
    if (cls_nstats(c) != cls_nstats(&m->c) || c->L != m->c.L)
        die("internal error: a classifier's new configuration changes its layers or norms");
    int fresh = 0, changed = 0;
    for (int p = 0; p < NCPARAM; p++) {
        int64_t r, k;
        cls_param_shape(c, p, &r, &k);
        if (kept_numel(&m->c, c, p) < 0) { changed = 1; fresh += r * k > 0; }
    }
    if (!changed) {
        m->c = *c;
        m->lay = cls_layout_of(c);
        return 0;
    }
    // a fresh model of the new configuration, then every tensor of an unchanged shape copied over it
    ClsModel nm;
    cls_alloc(&nm, c);
    cls_init(&nm, seed, init);
    for (int p = 0; p < NCPARAM; p++) {
        const int64_t n = kept_numel(&m->c, c, p);
        for (int l = 0; n > 0 && l < (p < C_FIRST_LAYER ? 1 : c->L); l++)
            memcpy(cls_tensor(&nm.lay, nm.params, p, l), cls_tensor(&m->lay, m->params, p, l), (size_t)n * sizeof(real));
    }
    if (nm.stats) memcpy(nm.stats, m->stats, (size_t)cls_nstats(c) * sizeof(real));
    cls_free(m);
    *m = nm;
    return fresh;
}

const char *const CLS_INIT_NAMES[NCLS_INITS] = {"normal", "torch"};

// The linear layer a bias belongs to (-1: not a linear layer's bias).
static int bias_of(int p) {
    switch (p) {
    case C_HEAD_B: return C_HEAD;
    case C_PAIR1_B: return C_PAIR1;
    case C_PAIR2_B: return C_PAIR2;
    case C_B12: return C_W12;
    case C_B3: return C_W3;
    case C_PIX_B: return C_PIX;
    case C_BQFI: return C_WQFI;
    case C_BO: return C_WO;
    }
    return -1;
}

void cls_init(ClsModel *m, uint64_t seed, int init) {
    const ClsConfig *c = &m->c;
    for (int p = 0; p < NCPARAM; p++) {
        const int64_t n = numel(c, p);
        // PyTorch's nn.Linear: weight and bias uniform within 1/sqrt(fan_in), the weight's columns
        const int weight = CPARAMS[p].init == INIT_NORMAL && p != C_EMB, lin = weight ? p : bias_of(p);
        int64_t rows, fan_in = 0;
        if (lin >= 0) cls_param_shape(c, lin, &rows, &fan_in);
        for (int l = 0; l < (p < C_FIRST_LAYER ? 1 : c->L) && n; l++) {
            real *x = CW(m, p, l);
            uint64_t s = mix64(seed * 1000003ull + (uint64_t)p * 4099ull + (uint64_t)l);
            if (init == CLS_INIT_TORCH && lin >= 0 && fan_in > 0) {
                const double bound = 1 / sqrt((double)fan_in);
                for (int64_t i = 0; i < n; i++) x[i] = (real)(bound * (2 * rng_uniform(&s) - 1));
                continue;
            }
            if (CPARAMS[p].init != INIT_NORMAL) {
                for (int64_t i = 0; i < n; i++) x[i] = CPARAMS[p].init == INIT_ONES ? 1 : 0;
                continue;
            }
            const double sd = init == CLS_INIT_TORCH ? 1.0 : 0.02;   // (torch: the embedding, nn.Embedding's)
            for (int64_t i = 0; i < n; i += 2) {
                double r, a;
                rng_polar(&s, &r, &a);
                x[i] = (real)(sd * r * cos(a));
                if (i + 1 < n) x[i + 1] = (real)(sd * r * sin(a));
            }
        }
    }
    for (int j = 0; j < 2 * c->L + 1 && m->stats; j++)
        for (int d = 0; d < c->D; d++) { cls_stat(m, j)[d] = 0; cls_stat(m, j)[c->D + d] = 1; }
}

static real *to_backend(real *host, int64_t n, const char *what) {
    if (!host || !n) return host;
    real *d = dev_alloc((size_t)n * sizeof(real), what);
    dev_upload(d, host, (size_t)n * sizeof(real));
    free(host);
    return d;
}

void cls_to_device(ClsModel *m) {
    if (!g_gpu || m->on_device) return;
    m->params = to_backend(m->params, m->lay.n, "parameters");
    m->stats = to_backend(m->stats, cls_nstats(&m->c), "BatchNorm statistics");
    m->m = to_backend(m->m, m->lay.n, "AdamW moments");
    m->v = to_backend(m->v, m->lay.n, "AdamW moments");
    m->on_device = 1;
}

void cls_alloc_training(ClsModel *m) {
    if (!m->grads) m->grads = dev_zeros(m->lay.n, "gradients");
    if (!m->m) m->m = dev_zeros(m->lay.n, "AdamW moments");
    if (!m->v) m->v = dev_zeros(m->lay.n, "AdamW moments");
}

void cls_free(ClsModel *m) {
    void (*release)(void *) = m->on_device ? dev_free : free;
    release(m->params);
    if (m->stats) release(m->stats);
    if (m->grads) dev_free(m->grads);
    if (m->m) release(m->m);
    if (m->v) release(m->v);
    memset(m, 0, sizeof *m);
}

void cls_print_config(const ClsConfig *c, const ClsLayout *lay, FILE *f) {
    char mixer[96];
    if (c->mixer == MIXER_HGRN1) snprintf(mixer, sizeof mixer, "HGRN1, state a vector of %d", c->D);
    else snprintf(mixer, sizeof mixer, "HGRN2%s, %d heads of key dim %d",
                  c->layer != LAYER_LRA ? "" : c->scan_dtype == SCAN_BF16 ? " (the LRA layer, its scans in bf16)"
                                                                          : " (the LRA layer)", c->H, c->K);
    fprintf(f, "| model        | bidirectional classifier, %s: %d layers, dim %d, GLU %d, %s norm%s, %s positions, "
               "dropout %g (input %g)\n", mixer, c->L, c->D, c->I, NORM_NAMES[c->norm],
            c->fnorm_plain ? " (the final one a plain RMSNorm)" : "", POS_NAMES[c->pos], c->dropout, c->input_dropout);
    if (c->input == INPUT_PIXELS || c->scan != SCAN_1D) {
        char grid[96] = "", patch[128] = "";
        const int gh = cls_rows(c), gw = cls_cols(c);
        if (c->scan == SCAN_2D) snprintf(grid, sizeof grid, "; four scans over %d x %d", gh, gw);
        if (c->scan == SCAN_SERIES)
            snprintf(grid, sizeof grid, "; over %d x %d, the mixer along rows, then along columns", gh, gw);
        if (c->scan == SCAN_1D && c->patch > 1) snprintf(grid, sizeof grid, "; scans both ways along the %d patches", gh * gw);
        if (c->patch > 1)
            snprintf(patch, sizeof patch, " in %d x %d patches: %d x %d = %d tokens of %d values", c->patch, c->patch, gh,
                     gw, gh * gw, cls_pos_values(c));
        fprintf(f, "| input        | %s%s%s\n", c->input == INPUT_PIXELS ? (c->channels == 3 ? "RGB pixels" : "pixels") : "token ids",
                patch, grid);
    }
    fprintf(f, "| head         | %s, %d classes; %s%s\n",
            c->ndoc == 2 ? "two documents pooled apart, [a, b, a-b, ab] -> linear -> GELU -> linear" : "mean pool -> linear",
            c->classes, c->input != INPUT_PIXELS ? "embedding" : c->patch > 1 ? "linear map of the patch values" : "linear map of the channels",
            c->lower_bound ? "; learned forget-gate lower bounds" : "");
    if (c->pad_group)
        fprintf(f, "| padding      | each group of %d examples of a batch to its longest document (--pad-group)\n",
                c->pad_group);
    fprintf(f, "| parameters   | %.3fM\n", (double)lay->n / 1e6);
}

double cls_flops_per_example(const ClsConfig *c, int T) {
    const double D = c->D, HK = (double)c->H * c->K, QFI = 2 * HK + D, I = c->I;
    // the scans both ways: HGRU2's outer-product update and readout, 4 HK Dv each; HGRN1's element-wise, 4 D
    const double scan = c->mixer == MIXER_HGRN1 ? 4 * D : 4 * HK * c->Dv;
    const double per_token = 2 * (D * QFI + D * D + D * 2 * I + I * D) + 2 * scan;
    return per_token * c->L * (double)T * c->ndoc;
}

// ----------------------------------------------------------------------------------------------------------
// Activations. Sequences: the documents of a batch, doc d of example b at d n + b (so the pair head's a and
// b are the first and second n pooled rows). Per-layer buffers exist L times in training, once otherwise;
// the residual stream needs L + 1 buffers in training and two in evaluation (layer l reads one and writes the
// other).

struct ClsActs {
    int B, T, train, ndoc, classes_out;   // classes_out: the logits per row
    int64_t N;                      // rows at full size: B ndoc T
    real *resid, *xmid;             // [L+1 or 2][N,D], [L or 1][N,D]
    real *st1, *st2;                // per layer, a norm's saved statistics: [2 max(N, D)] (mean, then rstd)
    opnd *h1, *h2, *yo, *gu, *ga;   // per layer operands: [N,D] x3, [N,2I], [N,I]
    real *qfi, *o, *rstdo;          // per layer: [N,QFI] [N,D] [N] (LAYER_LRA: [2N], its LayerNorm's mean, rstd)
    real *vact, *dvs;               // LAYER_LRA: silu(v) [N,D], and its gradient (training)
    real *q, *k, *g;                // shared [N,HK] x3, recomputed in the backward
    real *hf, *stf;                 // final norm [N,D] (real: the pool reads it), its statistics
    real *pooled;                   // [B ndoc, D]
    opnd *f, *gz;                   // pair head: [B,4D], [B,D]
    real *z, *logits, *losses, *lb; // [B,D] [B,C] [B] [L,HK]
    real *pix;                      // pixel input: normalised values [N, channels]
    opnd *pixo;                     // ... as an operand, where the formats differ
    real *qfiT, *oT;                // 2-D, gather path: the column scans' inputs and outputs in column-major order
    real *doutT, *dqfiT;            // ... and their gradients (training)
    real *qfi2, *o2, *rstdo2, *y1;  // series: the second (column) pass's per-layer activations, the first's output
    opnd *yo2, *y1o;                // ... its output norm, and the first pass's output as an operand
    real *dy1;                      // ... the gradient of the first pass's output (training)
    // backward; dh is [N, max(D, I)] (the GLU's hidden gradient passes through it)
    real *dx, *dt, *dh, *dqfi, *dq, *dk, *dg, *dout, *dlb, *dpooled, *dlogits, *dz, *df;
    opnd *dgu, *cv;                 // [N,2I]; conversions of a product's dy into an operand [N, max(QFI, 2I)]
    void *mem;
    int64_t bytes;
    // the batch: host staging and, on the GPU, device copies
    int n;                          // examples of the last forward
    int32_t *ids_h, *lens_h, *lab_h, *ids_d, *lens_d, *lab_d;
    // --pad-group: the positions of each sequence that exist (the longest document of its group), and the rows
    // of the last forward that exist (rows_all() when every row does)
    int32_t *ext_h, *ext_d;
    RowMask rows;
    int32_t *perm_h, *perm_d;       // 2-D, gather path: row n of the column-major order is row perm[n] of the raster order
    real *pix_h;                    // on the GPU, inputs not on a grid: host staging of the pixels (the CPU writes a->pix)
    // pixel input on a grid (whole images of a known size): the values per channel and level, where each pixel
    // lands (op_pixels_stage), the batch's 8-bit pixels; on the host, and on the GPU the device copies
    int grid;
    double *lut_h, *lut_d;
    int64_t *yoff_h, *yoff_d, *xoff_h, *xoff_d;
    uint8_t *px8_h, *px8_d;
    real *out_h;                    // host copy of logits and losses
    real *ones, *dones;             // [D]: the plain final RMSNorm's constant unit weight, its unused gradient
    uint64_t drop_seed;
    // mixing and soft targets (cls_acts_set_mix): the setting, whether the last training forward used the soft
    // loss, and per row its second label and weight (host; on the GPU device copies)
    ClsMix mix;
    int mix_on, soft;
    int32_t *tb_h, *tb_d;
    real *lam_h, *lam_d;
};

static int64_t stat_len(const ClsActs *a, int D) { return 2 * (a->N > D ? a->N : D); }
// The mixer output norm's saved statistics per layer: rstd [N], or the LRA layer's LayerNorm's mean and rstd.
static int64_t rstdo_len(const ClsConfig *c, int64_t N) { return c->layer == LAYER_LRA ? 2 * N : N; }

// Whether the column scans read the columns in place (op_hgru_cols_fwd/bwd), or gather them into
// column-major order and back: the backend says per head shape (ops.h; on the GPU only once its kernels have
// been checked and timed on one, cuda_ops.h).
static int cols_direct(const ClsConfig *c) {
    if (c->mixer == MIXER_HGRN1) return 0;   // HGRN1's column scans always gather
#if USE_CUDA
    if (g_gpu) return cuda_hgru_cols_direct(c->K, c->Dv);
#endif
    return op_hgru_cols_direct(c->K, c->Dv);
}

ClsActs *cls_acts_alloc(const ClsConfig *c, int B, int T, int train) {
    ClsActs *a = xcalloc(1, sizeof *a);
    a->B = B; a->T = T; a->train = train; a->ndoc = c->ndoc;
    a->classes_out = c->ndoc == 2 ? 2 : c->classes;
    const int64_t S = (int64_t)B * c->ndoc, N = S * T, D = c->D, HK = (int64_t)c->H * c->K, QFI = 2 * HK + D,
                  I = c->I, L = c->L, C = c->ndoc == 2 ? 2 : c->classes, nl = train ? L : 1;
    a->N = N;
    const double widest = (double)(QFI > 2 * I ? QFI : 2 * I);
    if (40.0 * 8.0 * (double)(L + 1) * ((double)N + 1024) * widest > 0x1p62)
        die("the activations of batch %d x sequence length %d at this model size would need more than 2^62 bytes; "
            "use a smaller batch, sequence length or model", B, T);
    const int64_t R = sizeof(real), O = (int64_t)opnd_size(), SL = stat_len(a, (int)D);
    // conversions into operands (only where the formats differ): a product's dy in the backward, and the head's
    // inputs and output gradient ([n,C] then [n,D] at most)
    const int64_t CVT = train ? N * (QFI > 2 * I ? QFI : 2 * I) : 0, CVH = (int64_t)B * C + S * 4 * D;
    const int64_t CV = opnd_size() == sizeof(real) ? 0 : CVT > CVH ? CVT : CVH;
    const int pix = c->input == INPUT_PIXELS, two = c->scan != SCAN_1D, ser = c->scan == SCAN_SERIES;
    const int gather = two && !cols_direct(c);   // the column-major copies of the gather path
    const int lra = c->layer == LAYER_LRA;
    const int64_t RO = rstdo_len(c, N);
    const int64_t NC = pix ? N * cls_pos_values(c) : 0;
    struct { void *p; int64_t bytes; } parts[] = {
        {&a->resid, (train ? L + 1 : 2) * N * D * R}, {&a->xmid, nl * N * D * R},
        {&a->st1, nl * SL * R}, {&a->st2, nl * SL * R},
        {&a->h1, nl * N * D * O}, {&a->h2, nl * N * D * O}, {&a->yo, nl * N * D * O},
        {&a->gu, nl * N * 2 * I * O}, {&a->ga, nl * N * I * O},
        {&a->qfi, nl * N * QFI * R}, {&a->o, nl * N * D * R}, {&a->rstdo, nl * RO * R},
        {&a->vact, lra ? N * D * R : 0}, {&a->dvs, lra && train ? N * D * R : 0},
        {&a->q, N * HK * R}, {&a->k, N * HK * R}, {&a->g, N * HK * R},
        {&a->hf, N * D * R}, {&a->stf, SL * R}, {&a->pooled, S * D * R},
        {&a->f, B * 4 * D * O}, {&a->gz, B * D * O}, {&a->z, B * D * R}, {&a->logits, B * C * R},
        {&a->losses, B * R}, {&a->lb, L * HK * R},
        {&a->ones, c->fnorm_plain ? D * R : 0}, {&a->dones, c->fnorm_plain && train ? D * R : 0},
        {&a->dx, train ? N * D * R : 0}, {&a->dt, train ? N * D * R : 0}, {&a->dh, train ? N * (D > I ? D : I) * R : 0},
        {&a->dqfi, train ? N * QFI * R : 0}, {&a->dq, train ? N * HK * R : 0}, {&a->dk, train ? N * HK * R : 0},
        {&a->dg, train ? N * HK * R : 0}, {&a->dout, train ? N * D * R : 0}, {&a->dlb, train ? L * HK * R : 0},
        {&a->dpooled, train ? S * D * R : 0}, {&a->dlogits, train ? B * C * R : 0}, {&a->dz, train ? B * D * R : 0},
        {&a->df, train ? B * 4 * D * R : 0}, {&a->dgu, train ? N * 2 * I * O : 0}, {&a->cv, CV * O},
        {&a->pix, NC * R}, {&a->pixo, opnd_size() == sizeof(real) ? 0 : NC * O},
        {&a->qfiT, gather ? N * QFI * R : 0}, {&a->oT, gather ? N * D * R : 0},
        {&a->doutT, gather && train ? N * D * R : 0}, {&a->dqfiT, gather && train ? N * QFI * R : 0},
        {&a->qfi2, ser ? nl * N * QFI * R : 0}, {&a->o2, ser ? nl * N * D * R : 0}, {&a->rstdo2, ser ? nl * RO * R : 0},
        {&a->y1, ser ? nl * N * D * R : 0}, {&a->yo2, ser ? nl * N * D * O : 0},
        {&a->y1o, ser && opnd_size() != sizeof(real) ? nl * N * D * O : 0}, {&a->dy1, ser && train ? N * D * R : 0},
    };
    const int np = (int)(sizeof parts / sizeof parts[0]);
    int64_t total = 0;
    for (int i = 0; i < np; i++) total += (parts[i].bytes + 255) / 256 * 256;
    a->mem = dev_alloc((size_t)total, "activations");
    a->bytes = total;
    int64_t at = 0;
    for (int i = 0; i < np; i++) {
        *(void **)parts[i].p = parts[i].bytes ? (char *)a->mem + at : NULL;
        at += (parts[i].bytes + 255) / 256 * 256;
    }
    // the batch's inputs, staged on the host and copied up without waiting (page-locked on the GPU)
    a->ids_h = dev_host_alloc((size_t)N * sizeof(int32_t));
    a->lens_h = dev_host_alloc((size_t)S * sizeof(int32_t));
    a->ext_h = c->pad_group ? dev_host_alloc((size_t)S * sizeof(int32_t)) : NULL;
    a->lab_h = dev_host_alloc((size_t)B * sizeof(int32_t));
    a->out_h = xmalloc((size_t)B * (C + 1) * sizeof(real));
    if (c->fnorm_plain) {
        real *one = xmalloc((size_t)D * sizeof(real));
        for (int64_t i = 0; i < D; i++) one[i] = 1;
        dev_upload(a->ones, one, (size_t)D * sizeof(real));
        free(one);
    }
    if (pix) {
        // the pixels' normalisation, one value per channel and level (the formula's double, rounded once where
        // staged); on a grid, where each pixel of the image lands: with patches, row y of the image starts at
        // yoff[y] and column x adds xoff[x]; otherwise the raster order itself
        const int chans = c->channels, gh = c->grid_h, gw = c->grid_w;
        a->grid = gh >= 1 && gw >= 1 && (int64_t)gh * gw * chans == (int64_t)T * cls_pos_values(c);
        if (a->grid && c->ndoc != 1) die("internal error: images in documents of two");
        a->lut_h = xmalloc((size_t)chans * 256 * sizeof(double));
        for (int ch = 0; ch < chans; ch++)
            for (int id = 0; id < 256; id++) a->lut_h[ch * 256 + id] = (id / 255.0 - c->pix_mean[ch]) / c->pix_std[ch];
        if (a->grid) {
            a->yoff_h = xmalloc((size_t)gh * sizeof(int64_t));
            a->xoff_h = xmalloc((size_t)gw * sizeof(int64_t));
            for (int y = 0; y < gh; y++) a->yoff_h[y] = cls_patch_index(c, (int64_t)y * gw * chans);
            for (int x = 0; x < gw; x++) a->xoff_h[x] = cls_patch_index(c, (int64_t)x * chans) - cls_patch_index(c, 0);
            a->px8_h = xmalloc((size_t)NC);
            a->lut_d = a->lut_h; a->yoff_d = a->yoff_h; a->xoff_d = a->xoff_h; a->px8_d = a->px8_h;
            if (g_gpu) {
                a->lut_d = dev_alloc((size_t)chans * 256 * sizeof(double), "pixel values");
                a->yoff_d = dev_alloc((size_t)gh * sizeof(int64_t), "pixel rows");
                a->xoff_d = dev_alloc((size_t)gw * sizeof(int64_t), "pixel columns");
                a->px8_d = dev_alloc((size_t)NC, "8-bit pixels");
                dev_upload(a->lut_d, a->lut_h, (size_t)chans * 256 * sizeof(double));
                dev_upload(a->yoff_d, a->yoff_h, (size_t)gh * sizeof(int64_t));
                dev_upload(a->xoff_d, a->xoff_h, (size_t)gw * sizeof(int64_t));
            }
        }
        a->pix_h = !g_gpu ? a->pix : a->grid ? NULL : dev_host_alloc((size_t)NC * sizeof(real));
    }
    if (gather) {
        // column-major order: sequence s, then column x, then row y
        const int gh = cls_rows(c), gw = cls_cols(c);
        if ((int64_t)gh * gw != T) die("internal error: a %d x %d grid for sequences of %d positions", gh, gw, T);
        if (N > INT32_MAX) die("a 2-D scan over %lld positions in a batch is more than its row index holds", (long long)N);
        a->perm_h = xmalloc((size_t)N * sizeof(int32_t));
        for (int64_t s = 0, n = 0; s < S; s++)
            for (int x = 0; x < gw; x++)
                for (int y = 0; y < gh; y++) a->perm_h[n++] = (int32_t)(s * T + (int64_t)y * gw + x);
        a->perm_d = a->perm_h;
        if (g_gpu) {
            a->perm_d = dev_alloc((size_t)N * sizeof(int32_t), "2-D scan order");
            dev_upload(a->perm_d, a->perm_h, (size_t)N * sizeof(int32_t));
        }
    }
    if (g_gpu) {
        a->ids_d = dev_alloc((size_t)N * sizeof(int32_t), "token ids");
        a->lens_d = dev_alloc((size_t)S * sizeof(int32_t), "document lengths");
        a->lab_d = dev_alloc((size_t)B * sizeof(int32_t), "labels");
        a->ext_d = c->pad_group ? dev_alloc((size_t)S * sizeof(int32_t), "documents' padded lengths") : NULL;
    }
    if (train) {
        a->tb_h = dev_host_alloc((size_t)B * sizeof(int32_t));
        a->lam_h = dev_host_alloc((size_t)B * sizeof(real));
        a->tb_d = a->tb_h;
        a->lam_d = a->lam_h;
        if (g_gpu) {
            a->tb_d = dev_alloc((size_t)B * sizeof(int32_t), "second labels");
            a->lam_d = dev_alloc((size_t)B * sizeof(real), "label weights");
        }
    }
    return a;
}

void cls_acts_free(ClsActs *a) {
    if (!a) return;
    dev_free(a->mem);
    dev_host_free(a->ids_h); dev_host_free(a->lens_h); dev_host_free(a->lab_h); free(a->out_h);
    if (a->pix_h != a->pix) dev_host_free(a->pix_h);
    if (a->px8_d != a->px8_h) { dev_free(a->lut_d); dev_free(a->yoff_d); dev_free(a->xoff_d); dev_free(a->px8_d); }
    free(a->lut_h); free(a->yoff_h); free(a->xoff_h); free(a->px8_h);
    if (a->perm_d && a->perm_d != a->perm_h) dev_free(a->perm_d);
    free(a->perm_h);
    if (a->ids_d) { dev_free(a->ids_d); dev_free(a->lens_d); dev_free(a->lab_d); dev_free(a->ext_d); }
    dev_host_free(a->ext_h);
    if (a->tb_d && a->tb_d != a->tb_h) { dev_free(a->tb_d); dev_free(a->lam_d); }
    dev_host_free(a->tb_h); dev_host_free(a->lam_h);
    free(a);
}

int64_t cls_acts_bytes(const ClsActs *a) { return a->bytes; }

void cls_acts_set_mix(ClsActs *a, const ClsMix *mix) {
    a->mix_on = mix && (mix->kind != MIX_NONE || mix->smoothing > 0);
    if (!a->mix_on) return;
    if (mix->kind < MIX_NONE || mix->kind > MIX_CUTMIX || !(mix->lam >= 0 && mix->lam <= 1) ||
        !(mix->smoothing >= 0 && mix->smoothing < 1))
        die("internal error: mixing of kind %d, lam %g, smoothing %g", mix->kind, mix->lam, mix->smoothing);
    a->mix = *mix;
}

const real *cls_acts_staged_pixels(const ClsActs *a) { return a->pix_h; }
const real *cls_acts_outputs(const ClsActs *a) { return a->out_h; }

#define PER(a, field, l, per) ((a)->field + ((a)->train ? (int64_t)(l) : 0) * (int64_t)(per))
#define PER_OPND(a, field, l, per) opnd_at((a)->field, ((a)->train ? (int64_t)(l) : 0) * (int64_t)(per))

// The residual stream entering layer l (l = L: leaving the last layer), rows N.
static real *stream(const ClsActs *a, int l, int64_t N, int D) {
    return a->resid + (a->train ? (int64_t)l : (int64_t)(l % 2)) * N * D;
}

// ----------------------------------------------------------------------------------------------------------
// Norms: one of three kinds everywhere in a model. y = norm(x (+= res)); st: [mean | rstd] saved (training);
// j: the norm's index among the BatchNorm statistics (2l, 2l + 1, 2L).

static void norm_fwd(ClsModel *m, const ClsActs *a, opnd *y, real *st, real *x, const real *res, int p_w, int p_b,
                     int l, int j, int64_t N, int train) {
    const ClsConfig *c = &m->c;
    const int D = c->D;
    const int64_t half = stat_len(a, D) / 2;
    real *w = CW(m, p_w, l), *b = numel(c, p_b) ? CW(m, p_b, l) : NULL;
    if (p_w == C_FNORM && c->fnorm_plain) {
        // the plain RMSNorm: the rmsnorm op with a constant unit weight, which no optimizer sees
        OP(rmsnorm_fwd, y, st + half, x, res, a->ones, N, D, c->eps);
        return;
    }
    switch (c->norm) {
    case NORM_LAYER: OP(layernorm_fwd, y, st, st + half, x, res, w, b, N, D, c->eps); break;
    case NORM_RMS: OP(rmsnorm_fwd, y, st + half, x, res, w, N, D, c->eps); break;
    case NORM_BATCH: {
        real *rm = cls_stat(m, j), *rv = rm + D;
        if (train) OP(batchnorm_fwd, y, st, st + half, rm, rv, x, res, w, b, N, D, a->rows, c->eps, CLS_BN_MOMENTUM, 1);
        else OP(batchnorm_fwd, y, NULL, NULL, rm, rv, x, res, w, b, N, D, a->rows, c->eps, CLS_BN_MOMENTUM, 0);
        break;
    }
    }
}

// dx = or += (acc) the gradient through the norm; its weight's and bias's gradients +=.
static void norm_bwd(ClsModel *m, const ClsActs *a, real *dx, int acc, const real *dy, const real *x, const real *st,
                     int p_w, int p_b, int l, int64_t N) {
    const ClsConfig *c = &m->c;
    const int D = c->D;
    const int64_t half = stat_len(a, D) / 2;
    real *w = CW(m, p_w, l), *dw = CG(m, p_w, l), *db = numel(c, p_b) ? CG(m, p_b, l) : NULL;
    if (p_w == C_FNORM && c->fnorm_plain) {
        OP(rmsnorm_bwd, dx, acc, a->dones, dy, x, a->ones, st + half, N, D, c->eps);
        return;
    }
    switch (c->norm) {
    case NORM_LAYER: OP(layernorm_bwd, dx, acc, dw, db, dy, x, w, st, st + half, N, D); break;
    case NORM_RMS: OP(rmsnorm_bwd, dx, acc, dw, dy, x, w, st + half, N, D, c->eps); break;
    case NORM_BATCH: OP(batchnorm_bwd, dx, acc, dw, db, dy, x, w, st, st + half, N, D, a->rows); break;
    }
}

// The final norm writes `real` (the pool reads it), where norms write operands (opnd_real_begin).
static void final_norm_fwd(ClsModel *m, ClsActs *a, real *x, const real *res, int64_t N, int train) {
    const int saved = opnd_real_begin();
    norm_fwd(m, a, a->hf, a->stf, x, res, C_FNORM, C_FNORM_B, 0, 2 * m->c.L, N, train);
    opnd_real_end(saved);
}

static uint64_t drop_site(uint64_t seed, int site) { return mix64(seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)(site + 1))); }

// ----------------------------------------------------------------------------------------------------------
// Forward

// The scans of the token mixer, over one of four sets of lines: the sequence (1-D), the rows or the columns of
// the grid, or both (the four-scan 2-D mixer). Each line is scanned both ways and the results summed.
typedef enum { LINES_SEQ, LINES_ROWS, LINES_COLS, LINES_BOTH } Lines;

// o [N,D] (=) from q, k, g (the gates of qfi, computed into a->q, k, g) and v (qfi's last D columns). Rows are
// contiguous in raster order (S H sequences of W). The columns are read in place by stride where the backend
// does that (cols_direct: the gates in raster order serve both line sets, and the column scans add into o);
// otherwise qfi is gathered into column-major order (embed_fwd reads rows by index), scanned as S W sequences of
// H, and added back to o in raster order (embed_bwd adds rows by index).
// The gates of rows x (qfi or its column-major copy): q, k, g, and with the LRA layer q's sigmoid and v's silu
// (into vact) in place of the gates' swish and the raw v.
static void gates_of(const ClsModel *m, ClsActs *a, const real *x, const real *lb, int64_t N) {
    const ClsConfig *c = &m->c;
    const int HK = c->H * c->K, QFI = 2 * HK + c->D;
    OP(gates_fwd, a->q, a->k, a->g, x, QFI, lb, N, HK);
    if (c->layer == LAYER_LRA) OP(lra_acts_fwd, a->q, a->vact, x, QFI, N, HK, c->D, sqrt((double)c->K));
}
// Their backward into dx's first 2 HK columns, and with the LRA layer its v columns too (from dvs), once the
// scans' backward has summed dq, dk, dg (and dv) over the directions.
static void gates_of_bwd(const ClsModel *m, ClsActs *a, real *dx, real *dlb, const real *x, const real *lb, int64_t N) {
    const ClsConfig *c = &m->c;
    const int HK = c->H * c->K, QFI = 2 * HK + c->D;
    OP(gates_bwd, dx, QFI, dlb, a->dq, a->dk, a->dg, x, QFI, lb, N, HK);
    if (c->layer == LAYER_LRA) OP(lra_acts_bwd, dx, QFI, a->dq, a->dvs, x, QFI, N, HK, c->D, sqrt((double)c->K));
}

static void scans_fwd(ClsModel *m, ClsActs *a, real *o, const real *qfi, const real *lb, int S, int64_t N, Lines lines) {
    const ClsConfig *c = &m->c;
    const int T = a->T, D = c->D, HK = c->H * c->K, QFI = 2 * HK + D, lra = c->layer == LAYER_LRA;
    const int direct = lines != LINES_SEQ && lines != LINES_ROWS && cols_direct(c);
    if (c->scan_dtype == SCAN_BF16) {   // the authors' bf16 numerics: gates, both scans and the readout in one op
        OP(lra_bf16_fwd, o, qfi, QFI, lb, S, T, c->H, c->K, 1);
        return;
    }
    // the values the scans read: qfi's last D columns, or with the LRA layer their silu
    const real *v = lra ? a->vact : qfi + 2 * HK;
    const int64_t ldv = lra ? D : QFI;
    if (lines != LINES_COLS) {
        const int nseq = lines == LINES_SEQ ? S : S * cls_rows(c), len = lines == LINES_SEQ ? T : cls_cols(c), ck = mixer_chunk(len);
        gates_of(m, a, qfi, lb, N);
        OP(hgru_fwd, o, NULL, a->q, a->k, a->g, v, ldv, NULL, nseq, len, c->H, c->K, c->Dv, ck, 0, 0);
        OP(hgru_fwd, o, NULL, a->q, a->k, a->g, v, ldv, NULL, nseq, len, c->H, c->K, c->Dv, ck, 1, 1);
    }
    if (direct) {
        const int gh = cls_rows(c), gw = cls_cols(c), ck = mixer_chunk(gh), both = lines == LINES_BOTH;
        if (!both) gates_of(m, a, qfi, lb, N);
        OP(hgru_cols_fwd, o, a->q, a->k, a->g, v, ldv, S, gh, gw, c->H, c->K, c->Dv, ck, 0, both);
        OP(hgru_cols_fwd, o, a->q, a->k, a->g, v, ldv, S, gh, gw, c->H, c->K, c->Dv, ck, 1, 1);
    } else if (lines == LINES_COLS || lines == LINES_BOTH) {
        const int gh = cls_rows(c), nc = S * cls_cols(c), ck = mixer_chunk(gh);
        OP(embed_fwd, a->qfiT, a->perm_d, qfi, N, QFI);
        gates_of(m, a, a->qfiT, lb, N);
        const real *vT = lra ? a->vact : a->qfiT + 2 * HK;
        OP(hgru_fwd, a->oT, NULL, a->q, a->k, a->g, vT, ldv, NULL, nc, gh, c->H, c->K, c->Dv, ck, 0, 0);
        OP(hgru_fwd, a->oT, NULL, a->q, a->k, a->g, vT, ldv, NULL, nc, gh, c->H, c->K, c->Dv, ck, 1, 1);
        if (lines == LINES_COLS) OP(zero, o, N * D);
        OP(embed_bwd, o, a->oT, a->perm_d, N, D, N);
    }
}

static Lines lines_of(const ClsConfig *c) { return c->scan == SCAN_1D ? LINES_SEQ : LINES_BOTH; }

// HGRN1's scans (--arch hgrn1): the gates of the rows [i | f | g] once in raster order, q = silu(i), k = 1 - a,
// g = log a (as op_gates_fwd makes them for HGRN2, K = 1); the element-wise recurrence both ways along each line,
// summed into o [N,D] (=). For the columns q, k and g are gathered into column-major order (in qfiT's three
// thirds), scanned as S W sequences of H, and the result added back into o in raster order.
static void hgrn1_scans_fwd(ClsModel *m, ClsActs *a, real *o, const real *qfi, const real *lb, int S, int64_t N,
                            Lines lines) {
    const ClsConfig *c = &m->c;
    const int T = a->T, D = c->D, QFI = 3 * D;
    OP(gates_fwd, a->q, a->k, a->g, qfi, QFI, lb, N, D);
    if (lines != LINES_COLS) {
        const int nseq = lines == LINES_SEQ ? S : S * cls_rows(c), len = lines == LINES_SEQ ? T : cls_cols(c);
        OP(hgrn_fwd, o, NULL, a->q, a->k, a->g, NULL, nseq, len, D, 0, 0);
        OP(hgrn_fwd, o, NULL, a->q, a->k, a->g, NULL, nseq, len, D, 1, 1);
    }
    if (lines == LINES_COLS || lines == LINES_BOTH) {
        const int gh = cls_rows(c), nc = S * cls_cols(c);
        real *qT = a->qfiT, *kT = qT + N * D, *gT = kT + N * D;
        OP(embed_fwd, qT, a->perm_d, a->q, N, D);
        OP(embed_fwd, kT, a->perm_d, a->k, N, D);
        OP(embed_fwd, gT, a->perm_d, a->g, N, D);
        OP(hgrn_fwd, a->oT, NULL, qT, kT, gT, NULL, nc, gh, D, 0, 0);
        OP(hgrn_fwd, a->oT, NULL, qT, kT, gT, NULL, nc, gh, D, 1, 1);
        if (lines == LINES_COLS) OP(zero, o, N * D);
        OP(embed_bwd, o, a->oT, a->perm_d, N, D, N);
    }
}

void cls_mixer_scans(ClsModel *m, ClsActs *a, real *o, real *qfi, int l, int S, int lines) {
    const int HK = m->c.H * m->c.K;
    if (m->c.lower_bound) OP(lower_bounds_fwd, a->lb, CW(m, C_LB, 0), m->c.L, HK);
    const Lines ln = lines == 0 ? lines_of(&m->c) : lines == 1 ? LINES_ROWS : LINES_COLS;
    (m->c.mixer == MIXER_HGRN1 ? hgrn1_scans_fwd : scans_fwd)(
        m, a, o, qfi, (m->c.lower_bound && l > 0) ? a->lb + (int64_t)l * HK : NULL, S, (int64_t)S * a->T, ln);
}

// The scans' backward from dout (a->dout): dq, dk, dg recomputed and consumed per set of lines, into dqfi
// [N, QFI] (=) and the layer's dlb (+=). On the direct column path the gates are those of the rows, so the
// scans of both line sets add their dq, dk, dg (and dv, into dqfi) into one set of buffers, and one gates_bwd
// takes their sum: gates_bwd is linear in dq, dk, dg and writes dqfi's first 2 HK columns (=).
static void scans_bwd(ClsModel *m, ClsActs *a, real *qfi, const real *lb, real *dlb, int S, int64_t N, Lines lines) {
    const ClsConfig *c = &m->c;
    const int T = a->T, D = c->D, HK = c->H * c->K, QFI = 2 * HK + D, lra = c->layer == LAYER_LRA;
    const int direct = lines != LINES_SEQ && lines != LINES_ROWS && cols_direct(c);
    if (c->scan_dtype == SCAN_BF16) {
        OP(lra_bf16_bwd, a->dqfi, QFI, dlb, a->dout, qfi, QFI, lb, S, T, c->H, c->K, 1);
        return;
    }
    // the values read and their gradients: qfi's (dqfi's) last D columns, or the LRA layer's silu(v) and dvs
    const real *v = lra ? a->vact : qfi + 2 * HK;
    real *dv = lra ? a->dvs : a->dqfi + 2 * HK;
    const int64_t ldv = lra ? D : QFI;
    if (lines != LINES_COLS) {
        const int nseq = lines == LINES_SEQ ? S : S * cls_rows(c), len = lines == LINES_SEQ ? T : cls_cols(c), ck = mixer_chunk(len);
        gates_of(m, a, qfi, lb, N);                                                                // recomputed
        OP(hgru_bwd, a->dq, a->dk, a->dg, dv, ldv, a->dout, a->q, a->k, a->g, v, ldv, nseq, len, c->H, c->K, c->Dv,
           ck, 0, 0);
        OP(hgru_bwd, a->dq, a->dk, a->dg, dv, ldv, a->dout, a->q, a->k, a->g, v, ldv, nseq, len, c->H, c->K, c->Dv,
           ck, 1, 1);
        if (!direct) gates_of_bwd(m, a, a->dqfi, dlb, qfi, lb, N);
    }
    if (direct) {
        const int gh = cls_rows(c), gw = cls_cols(c), ck = mixer_chunk(gh), both = lines == LINES_BOTH;
        if (!both) gates_of(m, a, qfi, lb, N);                                                     // recomputed
        OP(hgru_cols_bwd, a->dq, a->dk, a->dg, dv, ldv, a->dout, a->q, a->k, a->g, v, ldv, S, gh, gw, c->H, c->K,
           c->Dv, ck, 0, both);
        OP(hgru_cols_bwd, a->dq, a->dk, a->dg, dv, ldv, a->dout, a->q, a->k, a->g, v, ldv, S, gh, gw, c->H, c->K,
           c->Dv, ck, 1, 1);
        gates_of_bwd(m, a, a->dqfi, dlb, qfi, lb, N);
    } else if (lines == LINES_COLS || lines == LINES_BOTH) {
        const int gh = cls_rows(c), nc = S * cls_cols(c), ck = mixer_chunk(gh);
        OP(embed_fwd, a->qfiT, a->perm_d, qfi, N, QFI);
        OP(embed_fwd, a->doutT, a->perm_d, a->dout, N, D);
        gates_of(m, a, a->qfiT, lb, N);
        const real *vT = lra ? a->vact : a->qfiT + 2 * HK;
        real *dvT = lra ? a->dvs : a->dqfiT + 2 * HK;
        OP(hgru_bwd, a->dq, a->dk, a->dg, dvT, ldv, a->doutT, a->q, a->k, a->g, vT, ldv, nc, gh, c->H, c->K, c->Dv,
           ck, 0, 0);
        OP(hgru_bwd, a->dq, a->dk, a->dg, dvT, ldv, a->doutT, a->q, a->k, a->g, vT, ldv, nc, gh, c->H, c->K, c->Dv,
           ck, 1, 1);
        gates_of_bwd(m, a, a->dqfiT, dlb, a->qfiT, lb, N);
        if (lines == LINES_COLS) OP(zero, a->dqfi, N * QFI);
        OP(embed_bwd, a->dqfi, a->dqfiT, a->perm_d, N, QFI, N);
    }
}

// HGRN1's scans' backward from dout: per set of lines and direction, the direction's states recomputed (the
// recurrence is element-wise, so this costs about what storing them would in memory traffic) into a free [N,D]
// buffer (dh, which the mixer's backward has consumed; oT for the columns), then its backward adds into dq,
// dk, dg; the columns' in column-major order, added back by row index. One gates_bwd then writes dqfi's
// first 2D columns (=) and adds into dlb; the last D, the output gate's, are the gated norm's.
static void hgrn1_scans_bwd(ClsModel *m, ClsActs *a, real *qfi, const real *lb, real *dlb, int S, int64_t N,
                            Lines lines) {
    const ClsConfig *c = &m->c;
    const int T = a->T, D = c->D, QFI = 3 * D;
    OP(gates_fwd, a->q, a->k, a->g, qfi, QFI, lb, N, D);                                          // recomputed
    if (lines != LINES_COLS) {
        const int nseq = lines == LINES_SEQ ? S : S * cls_rows(c), len = lines == LINES_SEQ ? T : cls_cols(c);
        for (int r = 0; r < 2; r++) {
            OP(hgrn_fwd, a->dh, NULL, a->q, a->k, a->g, NULL, nseq, len, D, r, 0);
            OP(hgrn_bwd, a->dq, a->dk, a->dg, a->dout, a->q, a->k, a->g, a->dh, nseq, len, D, r, r);
        }
    }
    if (lines == LINES_COLS || lines == LINES_BOTH) {
        const int gh = cls_rows(c), nc = S * cls_cols(c);
        real *qT = a->qfiT, *kT = qT + N * D, *gT = kT + N * D;
        real *dqT = a->dqfiT, *dkT = dqT + N * D, *dgT = dkT + N * D;
        OP(embed_fwd, qT, a->perm_d, a->q, N, D);
        OP(embed_fwd, kT, a->perm_d, a->k, N, D);
        OP(embed_fwd, gT, a->perm_d, a->g, N, D);
        OP(embed_fwd, a->doutT, a->perm_d, a->dout, N, D);
        for (int r = 0; r < 2; r++) {
            OP(hgrn_fwd, a->oT, NULL, qT, kT, gT, NULL, nc, gh, D, r, 0);
            OP(hgrn_bwd, dqT, dkT, dgT, a->doutT, qT, kT, gT, a->oT, nc, gh, D, r, r);
        }
        if (lines == LINES_COLS) { OP(zero, a->dq, N * D); OP(zero, a->dk, N * D); OP(zero, a->dg, N * D); }
        OP(embed_bwd, a->dq, dqT, a->perm_d, N, D, N);
        OP(embed_bwd, a->dk, dkT, a->perm_d, N, D, N);
        OP(embed_bwd, a->dg, dgT, a->perm_d, N, D, N);
    }
    OP(gates_bwd, a->dqfi, QFI, dlb, a->dq, a->dk, a->dg, qfi, QFI, lb, N, D);
}

void cls_mixer_scans_bwd(ClsModel *m, ClsActs *a, real *qfi, int l, int S, int lines) {
    const int HK = m->c.H * m->c.K;
    const Lines ln = lines == 0 ? lines_of(&m->c) : lines == 1 ? LINES_ROWS : LINES_COLS;
    const int lbon = m->c.lower_bound && l > 0;
    (m->c.mixer == MIXER_HGRN1 ? hgrn1_scans_bwd : scans_bwd)(
        m, a, qfi, lbon ? a->lb + (int64_t)l * HK : NULL, lbon ? a->dlb + (int64_t)l * HK : NULL, S,
        (int64_t)S * a->T, ln);
}

// One pass of the token mixer of layer l over a set of lines: in (an operand) -> q/f/v projection -> scans ->
// output RMSNorm -> output projection -> out [N,D] (=). The pass's activations go to the slots given (the
// series form makes two passes with the layer's weights). HGRN1: the projection is [i | f | g], the scans
// HGRN1's, and the output norm gated by swish(g) with the model's eps (as in its language model).
typedef struct { real *qfi, *o, *rstdo; opnd *yo; } MixSlots;
static void mixer_pass_fwd(ClsModel *m, ClsActs *a, int l, const opnd *in, real *out, MixSlots sl, Lines lines, int S,
                           int64_t N) {
    const ClsConfig *c = &m->c;
    const int D = c->D, HK = c->H * c->K, QFI = 2 * HK + D;
    const real *lb = (c->lower_bound && l > 0) ? a->lb + (int64_t)l * HK : NULL;
    const int lra = c->layer == LAYER_LRA;
    OP(matmul_fwd, sl.qfi, in, CW(m, C_WQFI, l), N, D, QFI);                     // [q | f | v]
    if (lra) OP(bias_add, sl.qfi, CW(m, C_BQFI, l), N, QFI);
    // --pad-group: no value enters the state at a position that does not exist (HGRN1's input, HGRN2's v; both
    // enter through silu or as they are, so 0 adds nothing), so each reverse scan starts at its group's end
    OP(rows_zero, sl.qfi + (c->mixer == MIXER_HGRN1 ? 0 : 2 * HK), QFI, D, a->rows, N);
    if (c->mixer == MIXER_HGRN1) {
        hgrn1_scans_fwd(m, a, sl.o, sl.qfi, lb, S, N, lines);
        OP(rmsnorm_gated_fwd, sl.yo, sl.rstdo, sl.o, sl.qfi + 2 * HK, QFI, CW(m, C_GNORM, l), N, D, c->eps);
    } else {
        scans_fwd(m, a, sl.o, sl.qfi, lb, S, N, lines);
        if (lra)
            OP(layernorm_fwd, sl.yo, sl.rstdo, sl.rstdo + N, sl.o, NULL, CW(m, C_GNORM, l), CW(m, C_GNORM_B, l), N, D,
               c->eps);
        else OP(rmsnorm_fwd, sl.yo, sl.rstdo, sl.o, NULL, CW(m, C_GNORM, l), N, D, EPS_O);
    }
    OP(matmul_fwd, out, sl.yo, CW(m, C_WO, l), N, D, D);
    if (lra) OP(bias_add, out, CW(m, C_BO, l), N, D);
}

// Its backward: dy [N,D] (the gradient of out) -> d_in [N,D] (=); the weights' gradients +=. d_in may be a->dh.
static void mixer_pass_bwd(ClsModel *m, ClsActs *a, int l, const opnd *in, const real *dy, real *d_in, MixSlots sl,
                           Lines lines, int S, int64_t N) {
    const ClsConfig *c = &m->c;
    const int D = c->D, HK = c->H * c->K, QFI = 2 * HK + D;
    const real *lb = (c->lower_bound && l > 0) ? a->lb + (int64_t)l * HK : NULL;
    real *dlb = lb ? a->dlb + (int64_t)l * HK : NULL;
    const int lra = c->layer == LAYER_LRA;
    if (lra) OP(bias_bwd, CG(m, C_BO, l), dy, N, D);
    // (each operand is converted before its product's OP, so that the profile charges the product to itself)
    const opnd *dyo = as_opnd(a->cv, dy, N * D);
    OP(matmul_bwd, a->dh, CG(m, C_WO, l), dyo, sl.yo, CW(m, C_WO, l), N, D, D);   // d yo
    if (c->mixer == MIXER_HGRN1) {
        // d o into dout; d g, the gate's, straight into its columns of dqfi, which the scans leave alone
        OP(rmsnorm_gated_bwd, a->dout, a->dqfi + 2 * HK, QFI, CG(m, C_GNORM, l), a->dh, sl.o, sl.qfi + 2 * HK, QFI,
           CW(m, C_GNORM, l), sl.rstdo, N, D, c->eps);
        hgrn1_scans_bwd(m, a, sl.qfi, lb, dlb, S, N, lines);
    } else {
        if (lra)
            OP(layernorm_bwd, a->dout, 0, CG(m, C_GNORM, l), CG(m, C_GNORM_B, l), a->dh, sl.o, CW(m, C_GNORM, l),
               sl.rstdo, sl.rstdo + N, N, D);
        else OP(rmsnorm_bwd, a->dout, 0, CG(m, C_GNORM, l), a->dh, sl.o, CW(m, C_GNORM, l), sl.rstdo, N, D, EPS_O);
        scans_bwd(m, a, sl.qfi, lb, dlb, S, N, lines);
    }
    OP(rows_zero, a->dqfi, QFI, QFI, a->rows, N);   // (the values' zeroing; the rest is 0 up to rounding)
    if (lra) OP(bias_bwd, CG(m, C_BQFI, l), a->dqfi, N, QFI);
    const opnd *dqfio = as_opnd(a->cv, a->dqfi, N * QFI);
    OP(matmul_bwd, d_in, CG(m, C_WQFI, l), dqfio, in, CW(m, C_WQFI, l), N, D, QFI);
}

// Layer l: x -> norm1 -> bidirectional HGRU2 -> dropout -> (+ x) -> norm2 -> GLU -> dropout, into the stream
// entering layer l + 1 (whose residual, xmid, the next norm adds).
static void block_fwd(ClsModel *m, ClsActs *a, int l, int S, int64_t N, int train) {
    const ClsConfig *c = &m->c;
    const int D = c->D, HK = c->H * c->K, QFI = 2 * HK + D, I = c->I;
    real *x = stream(a, l, N, D), *xn = stream(a, l + 1, N, D), *xmid = PER(a, xmid, l, N * D);
    const real *x_res = l > 0 ? PER(a, xmid, l - 1, N * D) : NULL;
    opnd *h1 = PER_OPND(a, h1, l, N * D), *h2 = PER_OPND(a, h2, l, N * D), *yo = PER_OPND(a, yo, l, N * D);
    opnd *gu = PER_OPND(a, gu, l, N * 2 * I), *ga = PER_OPND(a, ga, l, N * I);
    const MixSlots sl = {PER(a, qfi, l, N * QFI), PER(a, o, l, N * D), PER(a, rstdo, l, rstdo_len(c, N)), yo};
    SECTION("mixer");
    norm_fwd(m, a, h1, PER(a, st1, l, stat_len(a, D)), x, x_res, C_NORM1, C_NORM1_B, l, 2 * l, N, train);
    if (c->scan != SCAN_SERIES) mixer_pass_fwd(m, a, l, h1, xmid, sl, lines_of(c), S, N);   // y; + x in norm2
    else {
        // along the rows, then the same weights along the columns of that result
        const MixSlots s2 = {PER(a, qfi2, l, N * QFI), PER(a, o2, l, N * D), PER(a, rstdo2, l, rstdo_len(c, N)),
                             PER_OPND(a, yo2, l, N * D)};
        real *y1 = PER(a, y1, l, N * D);
        mixer_pass_fwd(m, a, l, h1, y1, sl, LINES_ROWS, S, N);
        const opnd *y1o = as_opnd(a->y1o ? PER_OPND(a, y1o, l, N * D) : NULL, y1, N * D);
        mixer_pass_fwd(m, a, l, y1o, xmid, s2, LINES_COLS, S, N);
    }
    if (train && c->dropout > 0) OP(dropout_fwd, xmid, xmid, N * D, c->dropout, drop_site(a->drop_seed, 1 + 2 * l));
    SECTION("glu");
    norm_fwd(m, a, h2, PER(a, st2, l, stat_len(a, D)), xmid, x, C_NORM2, C_NORM2_B, l, 2 * l + 1, N, train);
    OP(matmul_fwd_opnd, gu, h2, CW(m, C_W12, l), N, D, 2 * I);                  // [l1 x | l2 x]
    OP(bias_add_opnd, gu, CW(m, C_B12, l), N, 2 * I);
    OP(swiglu_fwd, ga, gu, N, I);                                               // silu(l1 x + b1) (l2 x + b2)
    OP(matmul_fwd, xn, ga, CW(m, C_W3, l), N, I, D);
    OP(bias_add, xn, CW(m, C_B3, l), N, D);                                     // + xmid in the next norm
    if (train && c->dropout > 0) OP(dropout_fwd, xn, xn, N * D, c->dropout, drop_site(a->drop_seed, 2 + 2 * l));
}

// The forward of cls_forward and cls_forward8: the inputs as int32 values (tokens), or 8-bit pixels (pix8).
static double forward(ClsModel *m, ClsActs *a, const int32_t *tokens, const uint8_t *pix8, const int32_t *lens,
                      const int32_t *labels, int n, int train, uint64_t drop_seed, int64_t *correct, int32_t *pred) {
    const ClsConfig *c = &m->c;
    const int T = a->T, D = c->D, HK = c->H * c->K, nd = c->ndoc, C = nd == 2 ? 2 : c->classes;
    if (n < 1 || n > a->B) die("internal error: a batch of %d examples for activations of %d", n, a->B);
    if (train && !a->train) die("internal error: a training forward on evaluation activations");
    const int S = n * nd;
    const int64_t N = (int64_t)S * T;
    a->n = n;
    a->drop_seed = drop_seed;
    // the documents, reordered so doc d of example b is sequence d n + b; pixels normalised, and with patches
    // moved to their patch's position (cls_patch_index), so the input map below is one product either way
    const int pix = c->input == INPUT_PIXELS, CH = cls_pos_values(c);
    const ClsMix *mx = train && a->mix_on ? &a->mix : NULL;
    const int mixing = mx && mx->kind != MIX_NONE;
    if (mixing) {
        // the image's height and width: known with 2-D scans or patches, and the images whole
        if (!pix || nd != 1 || c->grid_w < 1 || (c->scan == SCAN_1D && c->patch < 2))
            die("internal error: mixing a batch of inputs that are not whole images of a known size");
        if (mx->kind == MIX_CUTMIX && !(mx->y0 >= 0 && mx->y0 <= mx->y1 && mx->y1 <= c->grid_h && mx->x0 >= 0 &&
                                        mx->x0 <= mx->x1 && mx->x1 <= c->grid_w))
            die("internal error: a cutmix box [%d, %d) x [%d, %d) of a %d x %d image", mx->y0, mx->y1, mx->x0, mx->x1,
                c->grid_h, c->grid_w);
    }
    for (int b = 0; b < n; b++)
        for (int d = 0; d < nd; d++) {
            const int s = d * n + b, vals = lens[b * nd + d], len = vals / CH;
            if (vals % CH || len < 1 || len > T || ((c->scan != SCAN_1D || c->patch > 1) && len != T))
                die("internal error: a document of %d values in a batch of %d positions of %d", vals, T, CH);
            // mixing: the partner, row n - 1 - b (the batch reversed), whose image is whole too
            if (mixing && (len != T || lens[n - 1 - b] != T * CH))
                die("internal error: mixing images that are not whole");
            a->lens_h[s] = len;
        }
    // --pad-group: each group of pad_group examples ends at its longest document; the rows past that do not exist
    a->rows = rows_all();
    if (c->pad_group > 0) {
        if (!a->ext_h) die("internal error: padding groups on activations made without them");
        int64_t nin = 0;
        for (int b0 = 0; b0 < n; b0 += c->pad_group) {
            const int b1 = n - b0 > c->pad_group ? b0 + c->pad_group : n;
            int32_t e = 1;
            for (int b = b0; b < b1; b++)
                for (int d = 0; d < nd; d++) e = a->lens_h[d * n + b] > e ? a->lens_h[d * n + b] : e;
            for (int b = b0; b < b1; b++)
                for (int d = 0; d < nd; d++) a->ext_h[d * n + b] = e;
            nin += (int64_t)e * (b1 - b0) * nd;
        }
        if (nin < N) a->rows = (RowMask){g_gpu ? a->ext_d : a->ext_h, T, nin};
    }
    const int chans = pix ? c->channels : 1;
    if (mixing && !a->grid) die("internal error: mixing images of an unknown size");
    if (pix8 && !a->grid) die("internal error: 8-bit pixels for inputs that are not whole images");
    // documents shared out to the threads a few at a time (a batch of ImageNet holds 1024 x 150,528 values),
    // so a thread slowed by the loader's decoding threads on the same cores delays no one else's share. Images
    // on a grid are narrowed to their 8-bit values here and staged by the backend (op_pixels_stage).
    int32_t bad = 0, bad_any = 0;
    if (!pix8) {
        #pragma omp parallel for schedule(dynamic, 4)
        for (int s = 0; s < S; s++) {
            const int b = s % n, d = s / n;
            const int32_t *src = tokens + ((int64_t)b * nd + d) * T * CH;
            const int32_t lim = pix ? 256 : c->V;
            int32_t worst = 0, out = 0;
            if (!pix) {
                int32_t *dst = a->ids_h + (int64_t)s * T;
                for (int64_t t = 0; t < T; t++) {
                    const int32_t id = src[t];
                    if (id < 0 || id >= lim) { out = 1; worst = id; break; }
                    dst[t] = id;
                }
            } else if (a->grid) {
                uint8_t *dst = a->px8_h + (int64_t)s * T * CH;
                for (int64_t t = 0; t < (int64_t)T * CH; t++) {
                    const int32_t id = src[t];
                    if (id < 0 || id >= lim) { out = 1; worst = id; break; }
                    dst[t] = (uint8_t)id;
                }
            } else {
                real *dst = a->pix_h + (int64_t)s * T * CH;
                for (int64_t t = 0; t < (int64_t)T * CH; t++) {
                    const int32_t id = src[t];
                    if (id < 0 || id >= lim) { out = 1; worst = id; break; }
                    dst[t] = (real)a->lut_h[(t % chans) * 256 + id];
                }
            }
            if (out) {
                #pragma omp critical(cls_stage_bad)
                if (!bad_any) { bad_any = 1; bad = worst; }
            }
        }
    }
    if (bad_any)
        die("%s %d is outside the model's %s of %d", pix ? "pixel value" : "token id", bad, pix ? "range" : "vocabulary",
            pix ? 256 : c->V);
    if (a->grid) {
        const uint8_t *px = pix8 ? pix8 : a->px8_h;
        if (g_gpu) {
            dev_upload(a->px8_d, px, (size_t)N * CH);
            px = a->px8_d;
        }
        SECTION("input");
        OP(pixels_stage, a->pix, px, a->lut_d, a->yoff_d, a->xoff_d, n, c->grid_h, c->grid_w, chans,
           mixing ? (int)mx->kind : MIX_NONE, mixing ? mx->lam : 1.0, mixing ? mx->y0 : 0, mixing ? mx->y1 : 0,
           mixing ? mx->x0 : 0, mixing ? mx->x1 : 0);
    }
    for (int b = 0; b < n; b++) a->lab_h[b] = labels[b] < C ? labels[b] : -1;
    // soft targets: the partner's label (the row's own where the partner has none) and the row's weight
    a->soft = mx != NULL;
    if (a->soft)
        for (int b = 0; b < n; b++) {
            const int32_t other = a->lab_h[n - 1 - b];
            a->tb_h[b] = mixing && other >= 0 ? other : a->lab_h[b];
            a->lam_h[b] = (real)(mixing ? mx->lam : 1.0);
        }
    const int32_t *ids = a->ids_h, *lens_b = a->lens_h, *lab_b = a->lab_h;
    // queued, not waited for: the download of the logits below waits, so these buffers are not written again
    // before the copies are done
    if (pix && !a->grid && g_gpu) dev_upload_async(a->pix, a->pix_h, (size_t)N * CH * sizeof(real));
    if (g_gpu) {
        if (!pix) dev_upload_async(a->ids_d, a->ids_h, (size_t)N * sizeof(int32_t));
        dev_upload_async(a->lens_d, a->lens_h, (size_t)S * sizeof(int32_t));
        if (a->rows.ext) dev_upload_async(a->ext_d, a->ext_h, (size_t)S * sizeof(int32_t));
        dev_upload_async(a->lab_d, a->lab_h, (size_t)n * sizeof(int32_t));
        ids = a->ids_d; lens_b = a->lens_d; lab_b = a->lab_d;
        if (a->soft) {
            dev_upload_async(a->tb_d, a->tb_h, (size_t)n * sizeof(int32_t));
            dev_upload_async(a->lam_d, a->lam_h, (size_t)n * sizeof(real));
        }
    }
    SECTION("input");
    real *x0 = stream(a, 0, N, D);
    if (pix) {
        const opnd *pixo = as_opnd(a->pixo, a->pix, N * CH);
        OP(matmul_fwd, x0, pixo, CW(m, C_PIX, 0), N, CH, D);
        OP(bias_add, x0, CW(m, C_PIX_B, 0), N, D);
    } else OP(embed_fwd, x0, ids, CW(m, C_EMB, 0), N, D);
    if (c->pos == POS_SINUSOIDAL) OP(add_positions, x0, S, T, D);
    if (train && c->input_dropout > 0) OP(dropout_fwd, x0, x0, N * D, c->input_dropout, drop_site(drop_seed, 0));
    if (c->lower_bound) OP(lower_bounds_fwd, a->lb, CW(m, C_LB, 0), c->L, HK);
    for (int l = 0; l < c->L; l++) block_fwd(m, a, l, S, N, train);
    SECTION("head");
    final_norm_fwd(m, a, stream(a, c->L, N, D), PER(a, xmid, c->L - 1, N * D), N, train);
    OP(pool_mean_fwd, a->pooled, a->hf, lens_b, S, T, D);
    if (nd == 1) {
        const opnd *po = as_opnd(a->cv, a->pooled, (int64_t)n * D);
        OP(matmul_fwd, a->logits, po, CW(m, C_HEAD, 0), n, D, C);
        OP(bias_add, a->logits, CW(m, C_HEAD_B, 0), n, C);
    } else {
        OP(pair_features_fwd, a->f, a->pooled, a->pooled + (int64_t)n * D, n, D);
        OP(matmul_fwd, a->z, a->f, CW(m, C_PAIR1, 0), n, 4 * D, D);
        OP(bias_add, a->z, CW(m, C_PAIR1_B, 0), n, D);
        OP(gelu_fwd, a->gz, a->z, (int64_t)n * D);
        OP(matmul_fwd, a->logits, a->gz, CW(m, C_PAIR2, 0), n, D, 2);
        OP(bias_add, a->logits, CW(m, C_PAIR2_B, 0), n, 2);
    }
    if (a->soft) OP(xent_soft_fwd, a->losses, a->logits, lab_b, a->tb_d, a->lam_d, (real)a->mix.smoothing, n, C);
    else OP(xent_fwd, a->losses, a->logits, lab_b, n, C);
    dev_download(a->out_h, a->logits, (size_t)n * C * sizeof(real));
    dev_download(a->out_h + (int64_t)n * C, a->losses, (size_t)n * sizeof(real));
    double loss = 0;
    int64_t right = 0;
    for (int b = 0; b < n; b++) {
        const real *lg = a->out_h + (int64_t)b * C;
        int best = 0;
        for (int k = 1; k < C; k++) if (lg[k] > lg[best]) best = k;
        if (pred) pred[b] = best;
        if (a->lab_h[b] >= 0) { loss += a->out_h[(int64_t)n * C + b]; right += best == a->lab_h[b]; }
    }
    if (correct) *correct = right;
    return loss;
}

double cls_forward(ClsModel *m, ClsActs *a, const int32_t *tokens, const int32_t *lens, const int32_t *labels,
                   int n, int train, uint64_t drop_seed, int64_t *correct, int32_t *pred) {
    return forward(m, a, tokens, NULL, lens, labels, n, train, drop_seed, correct, pred);
}

double cls_forward8(ClsModel *m, ClsActs *a, const uint8_t *pix8, const int32_t *lens, const int32_t *labels, int n,
                    int train, uint64_t drop_seed, int64_t *correct, int32_t *pred) {
    return forward(m, a, NULL, pix8, lens, labels, n, train, drop_seed, correct, pred);
}

// ----------------------------------------------------------------------------------------------------------
// Backward

// dy, a product's output gradient, as an operand.
static const opnd *dy_opnd(ClsActs *a, const real *dy, int64_t n) { return as_opnd(a->cv, dy, n); }

// Layer l backward: dx holds the gradient of the layer's output and leaves as that of its input.
static void block_bwd(ClsModel *m, ClsActs *a, int l, int S, int64_t N) {
    const ClsConfig *c = &m->c;
    const int D = c->D, HK = c->H * c->K, QFI = 2 * HK + D, I = c->I;
    real *x = stream(a, l, N, D), *xmid = PER(a, xmid, l, N * D), *dx = a->dx;
    opnd *h1 = PER_OPND(a, h1, l, N * D), *h2 = PER_OPND(a, h2, l, N * D), *yo = PER_OPND(a, yo, l, N * D);
    opnd *gu = PER_OPND(a, gu, l, N * 2 * I), *ga = PER_OPND(a, ga, l, N * I);
    const MixSlots sl = {PER(a, qfi, l, N * QFI), PER(a, o, l, N * D), PER(a, rstdo, l, rstdo_len(c, N)), yo};
    // the GLU: d out = dx (through the dropout)
    SECTION("glu bwd");
    real *dy = dx;
    if (c->dropout > 0) { OP(dropout_bwd, a->dt, dx, N * D, c->dropout, drop_site(a->drop_seed, 2 + 2 * l)); dy = a->dt; }
    OP(bias_bwd, CG(m, C_B3, l), dy, N, D);
    const opnd *dyo = dy_opnd(a, dy, N * D);
    OP(matmul_bwd, a->dh, CG(m, C_W3, l), dyo, ga, CW(m, C_W3, l), N, I, D);   // d ga [N,I]
    OP(swiglu_bwd, a->dgu, a->dh, gu, N, I);
    OP(bias_bwd_opnd, CG(m, C_B12, l), a->dgu, N, 2 * I);
    OP(matmul_bwd, a->dh, CG(m, C_W12, l), a->dgu, h2, CW(m, C_W12, l), N, D, 2 * I);             // d h2
    norm_bwd(m, a, dx, 1, a->dh, xmid, PER(a, st2, l, stat_len(a, D)), C_NORM2, C_NORM2_B, l, N);   // dx: d xmid
    // the mixer
    SECTION("mixer bwd");
    dy = dx;
    if (c->dropout > 0) { OP(dropout_bwd, a->dt, dx, N * D, c->dropout, drop_site(a->drop_seed, 1 + 2 * l)); dy = a->dt; }
    if (c->scan != SCAN_SERIES) mixer_pass_bwd(m, a, l, h1, dy, a->dh, sl, lines_of(c), S, N);   // d h1
    else {
        const MixSlots s2 = {PER(a, qfi2, l, N * QFI), PER(a, o2, l, N * D), PER(a, rstdo2, l, rstdo_len(c, N)),
                             PER_OPND(a, yo2, l, N * D)};
        const opnd *y1o = a->y1o ? PER_OPND(a, y1o, l, N * D) : PER(a, y1, l, N * D);
        mixer_pass_bwd(m, a, l, y1o, dy, a->dy1, s2, LINES_COLS, S, N);                       // d y1
        mixer_pass_bwd(m, a, l, h1, a->dy1, a->dh, sl, LINES_ROWS, S, N);                      // d h1
    }
    norm_bwd(m, a, dx, 1, a->dh, x, PER(a, st1, l, stat_len(a, D)), C_NORM1, C_NORM1_B, l, N);           // dx: d x
}

void cls_backward(ClsModel *m, ClsActs *a, double loss_scale) {
    const ClsConfig *c = &m->c;
    const int n = a->n, nd = c->ndoc, S = n * nd, T = a->T, D = c->D, HK = c->H * c->K, C = nd == 2 ? 2 : c->classes;
    const int64_t N = (int64_t)S * T;
    if (!a->train || !m->grads) die("internal error: a backward without a training forward");
    const int32_t *lens_b = g_gpu ? a->lens_d : a->lens_h, *lab_b = g_gpu ? a->lab_d : a->lab_h;
    SECTION("head bwd");
    if (a->soft)
        OP(xent_soft_bwd, a->dlogits, a->logits, lab_b, a->tb_d, a->lam_d, (real)a->mix.smoothing, (real)loss_scale, n, C);
    else OP(xent_bwd, a->dlogits, a->logits, lab_b, (real)loss_scale, n, C);
    const opnd *dl = dy_opnd(a, a->dlogits, (int64_t)n * C);
    if (nd == 1) {
        OP(bias_bwd, CG(m, C_HEAD_B, 0), a->dlogits, n, C);
        const opnd *p = as_opnd(a->cv ? opnd_at(a->cv, (int64_t)n * C) : NULL, a->pooled, (int64_t)n * D);
        OP(matmul_bwd, a->dpooled, CG(m, C_HEAD, 0), dl, p, CW(m, C_HEAD, 0), n, D, C);
    } else {
        OP(bias_bwd, CG(m, C_PAIR2_B, 0), a->dlogits, n, 2);
        OP(matmul_bwd, a->dz, CG(m, C_PAIR2, 0), dl, a->gz, CW(m, C_PAIR2, 0), n, D, 2);         // d gz
        OP(gelu_bwd, a->dz, a->dz, a->z, (int64_t)n * D);
        OP(bias_bwd, CG(m, C_PAIR1_B, 0), a->dz, n, D);
        const opnd *dzo = dy_opnd(a, a->dz, (int64_t)n * D);
        OP(matmul_bwd, a->df, CG(m, C_PAIR1, 0), dzo, a->f, CW(m, C_PAIR1, 0), n, 4 * D, D);
        OP(pair_features_bwd, a->dpooled, a->dpooled + (int64_t)n * D, a->df, a->pooled, a->pooled + (int64_t)n * D, n, D);
    }
    OP(pool_mean_bwd, a->dh, a->dpooled, lens_b, S, T, D);                                         // d hf
    norm_bwd(m, a, a->dx, 0, a->dh, stream(a, c->L, N, D), a->stf, C_FNORM, C_FNORM_B, 0, N);
    if (c->lower_bound) OP(zero, a->dlb, (int64_t)c->L * HK);
    for (int l = c->L - 1; l >= 0; l--) block_bwd(m, a, l, S, N);
    SECTION("input bwd");
    if (c->input_dropout > 0) OP(dropout_bwd, a->dx, a->dx, N * D, c->input_dropout, drop_site(a->drop_seed, 0));
    if (c->input == INPUT_PIXELS) {
        const int CH = cls_pos_values(c);
        OP(bias_bwd, CG(m, C_PIX_B, 0), a->dx, N, D);
        const opnd *dxo = dy_opnd(a, a->dx, N * D), *pixo = as_opnd(a->pixo, a->pix, N * CH);
        OP(matmul_bwd, NULL, CG(m, C_PIX, 0), dxo, pixo, CW(m, C_PIX, 0), N, CH, D);
    } else OP(embed_bwd, CG(m, C_EMB, 0), a->dx, g_gpu ? a->ids_d : a->ids_h, N, D, c->V);
    if (c->lower_bound) OP(lower_bounds_bwd, CG(m, C_LB, 0), a->dlb, CW(m, C_LB, 0), c->L, HK);
}

// ----------------------------------------------------------------------------------------------------------
// Optimizer

double cls_grad_norm(ClsModel *m) {
    SECTION("optimizer");
    return sqrt(OP(sumsq, m->grads, m->lay.n));
}

void cls_adamw(ClsModel *m, double lr, double beta1, double beta2, double eps, double wd, double grad_scale,
               int64_t step) {
    SECTION("optimizer");
    AdamwPart *parts = xmalloc((size_t)NCPARAM * (m->c.L > 1 ? m->c.L : 1) * sizeof *parts);
    int np = 0;
    for (int p = 0; p < NCPARAM; p++) {
        const int64_t n = numel(&m->c, p);
        if (!n) continue;
        for (int l = 0; l < (p < C_FIRST_LAYER ? 1 : m->c.L); l++) {
            const int64_t off = CW(m, p, l) - m->params;
            parts[np++] = (AdamwPart){m->params + off, m->grads + off, m->m + off, m->v + off, n,
                                      CPARAMS[p].decay ? wd : 0.0};
        }
    }
    OP(adamw_multi, parts, np, lr, beta1, beta2, eps, grad_scale, step);   // one launch on the GPU
    free(parts);
}

int64_t cls_topk_correct(const ClsActs *a, int n, int k) {
    const int C = a->classes_out;
    int64_t right = 0;
    for (int b = 0; b < n; b++) {
        const int y = a->lab_h[b];
        if (y < 0 || y >= C) continue;
        // classes ranked above the label: a higher logit, or an equal one of a lower class
        const real *lg = a->out_h + (int64_t)b * C;
        int above = 0;
        for (int j = 0; j < C && above < k; j++) above += lg[j] > lg[y] || (lg[j] == lg[y] && j < y);
        right += above < k;
    }
    return right;
}
