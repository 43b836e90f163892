// cls.h: the sequence classifier of the Long Range Arena tasks: a non-causal (bidirectional) HGRN2 over token
// ids, pre-norm blocks with BatchNorm, LayerNorm or RMSNorm, a GLU with biases, a mean pool over the valid
// positions and a linear head, or for document pairs (Retrieval) the two-document head. Config, parameters,
// forward, backward; code in cls.c, the architecture and its choices in docs/classifier.md.
#ifndef HGRN2_CLS_H
#define HGRN2_CLS_H

#include "common.h"
#include "backend.h"
#include "model.h"

typedef enum { NORM_BATCH, NORM_LAYER, NORM_RMS, NNORMS } NormKind;
extern const char *const NORM_NAMES[NNORMS];         // "batch", "layer", "rms"
typedef enum { POS_NONE, POS_SINUSOIDAL, NPOS } PosKind;
extern const char *const POS_NAMES[NPOS];            // "none", "sinusoidal"
// The input: token ids through an embedding, or pixels (8-bit channel values, normalised per channel with
// pix_mean and pix_std after scaling to [0, 1]) through a linear map of the channels.
typedef enum { INPUT_IDS, INPUT_PIXELS, NINPUTS } ClsInputKind;
// The token mixer's scans: along the sequence both ways (1-D), or over a grid_h x grid_w image read in raster
// order, along rows and along columns, each both ways, all four summed (2-D), or in series: the whole mixer
// (projections, scans both ways, output norm) along the rows, then with the same weights along the columns of
// its output (Path-X's form).
typedef enum { SCAN_1D, SCAN_2D, SCAN_SERIES, NSCANS } ClsScanKind;
// What the LRA layer computes its gates and scans in: fp32, or bf16 with every element-wise result and the
// states at every step rounded, as the authors' bf16 runs did (ops.h, op_lra_bf16_fwd).
typedef enum { SCAN_FP32, SCAN_BF16, NSCAN_DTYPES } ClsScanDtype;
extern const char *const SCAN_DTYPE_NAMES[NSCAN_DTYPES];   // "fp32", "bf16"

typedef struct {
    int V;              // vocabulary (token ids below V)
    int D;              // hidden size
    int L;              // layers
    int K;              // expand ratio: key dim per head
    int H, Dv;          // derived: heads D / K, value dim per head D / H
    int I;              // GLU hidden width (ratio x D)
    int classes;        // output classes (the pair head's output is 2 classes)
    int ndoc;           // documents per example: 1, or 2 with the pair head (Retrieval)
    int norm;           // NormKind of every norm of the model
    int pos;            // PosKind of the input
    int lower_bound;    // the learned lower bounds of the forget gates
    double dropout;     // on each mixer and GLU output, in training
    double input_dropout;   // on the embedded input (with its positions), in training
    double eps;         // eps of every norm except the mixer's output RMSNorm (1e-5, as EPS_O)
    int input;          // ClsInputKind (0: token ids, so a Config written without it is a token model)
    int channels;       // pixels: channel values per position (1 or 3)
    double pix_mean[3], pix_std[3];   // pixels: x = (value / 255 - mean[c]) / std[c]
    int scan;           // ClsScanKind
    int grid_h, grid_w; // 2-D, or patches: the image's height and width in pixels; every sequence is one image
    int patch;          // pixels: 0 or 1, a position per pixel; p >= 2, a position per p x p patch of the image
                        // (grid_h and grid_w multiples of p), its p p channels values in (row, column, channel)
                        // order, the patches in raster order over the (grid_h / p) x (grid_w / p) patch grid
    int fnorm_plain;    // 1: the final norm (before the pool) is an RMSNorm without weight or bias, whatever `norm`
                        // is (the HGRN2 ImageNet models'); 0: a norm of kind `norm`, with its weight
    int mixer;          // MixerKind (model.h): MIXER_CAUSAL, HGRN2's HGRU2 (0, so a Config written without it is
                        // one), or MIXER_HGRN1, HGRN1's element-wise recurrence (K = 1) with its gated output norm;
                        // either way scanned both ways along every line
    int layer;          // HGRN2's mixer layer, LayerKind (model.h): fla's (0) or the authors' (LAYER_LRA)
    int scan_dtype;     // ClsScanDtype: the LRA layer's gates and scans in fp32 (0) or in the authors' bf16 numerics
    int pad_group;      // 0: every document padded to the task's length; G > 0: each group of G consecutive examples
                        // of a batch padded only to its longest document, the positions past it taking no part in
                        // the reverse scans or BatchNorm's statistics (as a data-parallel run of G a process)
} ClsConfig;


// The grid of positions the scans see: the image's pixels, or its patches.
static inline int cls_rows(const ClsConfig *c) { return c->patch > 1 ? c->grid_h / c->patch : c->grid_h; }
static inline int cls_cols(const ClsConfig *c) { return c->patch > 1 ? c->grid_w / c->patch : c->grid_w; }
// Input values per position: 1 token id, a pixel's channels, or a patch's p x p x channels.
static inline int cls_pos_values(const ClsConfig *c) {
    if (c->input != INPUT_PIXELS) return 1;
    return c->patch > 1 ? c->patch * c->patch * c->channels : c->channels;
}
// Where value t of an image's pixels (raster order, the channels of a pixel together) goes among the values of
// its positions: itself without patches; with patches, pixel (y, x) channel ch is value ((y % p) p + x % p)
// channels + ch of position (y / p) (grid_w / p) + x / p.
static inline int64_t cls_patch_index(const ClsConfig *c, int64_t t) {
    if (c->patch < 2) return t;
    const int64_t p = c->patch, ch = c->channels, px = t / ch, y = px / c->grid_w, x = px % c->grid_w;
    return ((y / p) * (c->grid_w / p) + x / p) * p * p * ch + ((y % p) * p + x % p) * ch + t % ch;
}

#define CLS_BN_MOMENTUM 0.1          // BatchNorm's running statistics: run = 0.9 run + 0.1 batch statistic

extern const Range R_CLASSES, R_PATCH, R_PAD_GROUP;   // R_PATCH: --patch (1: none); R_PAD_GROUP: 0 (off) or G
// Fills H and Dv; returns NULL when the configuration is valid, otherwise what is wrong.
const char *cls_config_finish(ClsConfig *c);

// ---- the parameter table ----
// Global tensors first, then one block per layer. Norm biases exist for BatchNorm and LayerNorm only; the head
// is HEAD (+ HEAD_B) for one document, or PAIR1 (+ b) and PAIR2 (+ b) for two.
enum {
    C_EMB, C_LB, C_FNORM, C_FNORM_B, C_HEAD, C_HEAD_B, C_PAIR1, C_PAIR1_B, C_PAIR2, C_PAIR2_B,   // global
    C_PIX, C_PIX_B,                                                                            // (pixels)
    C_NORM1, C_NORM1_B, C_WQFI, C_GNORM, C_WO, C_NORM2, C_NORM2_B, C_W12, C_B12, C_W3, C_B3,   // per layer
    C_BQFI, C_BO, C_GNORM_B,                                                                   // (LAYER_LRA)
    NCPARAM
};
#define C_FIRST_LAYER C_NORM1
typedef struct { const char *name; int decay; int init; } ClsParamDesc;   // init: Init of model.h
extern const ClsParamDesc CPARAMS[NCPARAM];
void cls_param_shape(const ClsConfig *c, int p, int64_t *rows, int64_t *cols);   // 0 x 0: absent

typedef struct {
    int64_t off[NCPARAM];   // global: offset in the buffer; per layer: offset in a layer's block
    int64_t layers_at, layer_size, n;
} ClsLayout;
ClsLayout cls_layout_of(const ClsConfig *c);
// BatchNorm's running statistics: per norm (two per layer, then the final one) a mean [D] and a variance [D];
// 0 values when the model has no BatchNorm. They are state, not parameters: saved, never optimized.
int64_t cls_nstats(const ClsConfig *c);

typedef struct {
    ClsConfig c;
    ClsLayout lay;
    real *params, *grads, *m, *v;   // backend memory once on the device; grads, m, v NULL until training
    real *stats;                    // cls_nstats values: the running means and variances
    int on_device;
} ClsModel;

static inline real *cls_tensor(const ClsLayout *lay, real *base, int p, int l) {
    if (p < C_FIRST_LAYER) return base + lay->off[p];
    return base + lay->layers_at + (int64_t)l * lay->layer_size + lay->off[p];
}
static inline real *CW(ClsModel *m, int p, int l) { return cls_tensor(&m->lay, m->params, p, l); }
static inline real *CG(ClsModel *m, int p, int l) { return cls_tensor(&m->lay, m->grads, p, l); }
// The running mean of norm j (2l: layer l's first, 2l+1: its second, 2L: the final norm); the variance follows
// it at + D.
static inline real *cls_stat(ClsModel *m, int j) { return m->stats + (int64_t)j * 2 * m->c.D; }

// Made on the host (cls_alloc, cls_init or a checkpoint), then moved to the backend (cls_to_device).
void cls_alloc(ClsModel *m, const ClsConfig *c);
// A model read from a checkpoint (on the host) takes its new run's configuration: another image size, dropout,
// or number of classes. Tensors whose shape changes (the head, for other classes) start afresh, as cls_init
// makes them with `seed` and `init`; the others and the running statistics are kept. Returns how many tensors
// start afresh. The layers and norms must be the checkpoint's.
int cls_adopt_config(ClsModel *m, const ClsConfig *c, uint64_t seed, int init);
// The initial weights, by scheme (--weight-init):
//   CLS_INIT_NORMAL: linear weights and the embedding ~ N(0, 0.02), biases 0 (DeiT's, for the image models);
//   CLS_INIT_TORCH: PyTorch's defaults, as in the reference LRA code: the embedding ~ N(0, 1), each linear
//     layer's weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (nn.Linear's).
// Both: norm weights 1 and biases 0, lower bounds 0, running means 0 and variances 1; the same values at any
// thread count.
typedef enum { CLS_INIT_NORMAL, CLS_INIT_TORCH, NCLS_INITS } ClsInit;
extern const char *const CLS_INIT_NAMES[NCLS_INITS];   // "normal", "torch"
void cls_init(ClsModel *m, uint64_t seed, int init);
void cls_to_device(ClsModel *m);
void cls_alloc_training(ClsModel *m);   // zeroed gradients and AdamW moments in backend memory
void cls_free(ClsModel *m);
void cls_print_config(const ClsConfig *c, const ClsLayout *lay, FILE *f);   // rows of the startup table

// ---- activations ----
typedef struct ClsActs ClsActs;
// For batches of up to B examples of T tokens per document. train: keep what the backward needs.
ClsActs *cls_acts_alloc(const ClsConfig *c, int B, int T, int train);
void cls_acts_free(ClsActs *a);
int64_t cls_acts_bytes(const ClsActs *a);

// ---- mixing a training batch, and soft targets ----
// DeiT's mixup and cutmix (timm's Mixup in its batch mode) and label smoothing: the batch is mixed with itself
// reversed, row b with row n - 1 - b. Mixup: the row's normalised pixels become lam x_b + (1 - lam) x_partner;
// cutmix: the pixels of a box of the image (every channel) come from the partner. The target of row b is then
// smoothing / C + (1 - smoothing) (lam onehot(y_b) + (1 - lam) onehot(y_partner)) (the op_xent_soft ops). The
// draws are made by the caller (cls_mix_draw in cls_run.h); docs/imagenet.md.
typedef enum { MIX_NONE, MIX_MIXUP, MIX_CUTMIX } ClsMixKind;
typedef struct {
    int kind;           // ClsMixKind
    double lam;         // the weight of the row's own image and label (cutmix: 1 - the box's share of the image)
    int y0, y1, x0, x1; // cutmix: the box [y0, y1) x [x0, x1) of the image's pixels (not patches)
    double smoothing;   // label smoothing eps in [0, 1) (0: none)
} ClsMix;

// ---- forward and backward ----
// One batch: tokens [B][ndoc][T] (host memory; padded), lens [B][ndoc] in [1, T] (the valid positions of each
// document); with pixel input, tokens [B][ndoc][T x cls_pos_values] (the pixels in raster order, the channels of
// a pixel together) and lens in values (a multiple of cls_pos_values); with 2-D scans or patches, T = cls_rows x
// cls_cols and every lens is full (with patches, the forward rearranges each image's pixels into its patches). labels [B] (< 0: a row with no example, skipped by the loss and the accuracy); n = B rows used
// (n <= the B of the activations, every row below n a real example).
// train 1: batch statistics (the running ones updated), dropout from drop_seed, and the backward's inputs
// kept; train 0: running statistics, no dropout. Returns the summed cross-entropy over the n rows; *correct
// (when not NULL) receives how many rows the argmax gets right, pred [n] (when not NULL) the argmax classes.
double cls_forward(ClsModel *m, ClsActs *a, const int32_t *tokens, const int32_t *lens, const int32_t *labels,
                   int n, int train, uint64_t drop_seed, int64_t *correct, int32_t *pred);
// The same with whole images of 8-bit pixels, pix8 [B][cls_rows x cls_cols x cls_pos_values] (the JPEG
// loader's batches): only these bytes are copied to the GPU, where the backend normalises and places them.
double cls_forward8(ClsModel *m, ClsActs *a, const uint8_t *pix8, const int32_t *lens, const int32_t *labels, int n,
                    int train, uint64_t drop_seed, int64_t *correct, int32_t *pred);
// The mixing and soft targets of the training forwards that follow on these activations (NULL, or kind
// MIX_NONE with smoothing 0: none, the plain cross-entropy). Mixing needs pixel input with the image's height
// and width known (2-D scans or patches) and whole images; evaluation forwards (train 0) never mix and always
// score the plain loss. The returned sum of losses of a training forward is then the soft targets' loss; the
// count of correct rows is against each row's own label.
void cls_acts_set_mix(ClsActs *a, const ClsMix *mix);
// The normalised pixels the last forward staged (after mixing), in the model's input layout (with patches: a
// position's p p channels values together), on the host. For tests.
const real *cls_acts_staged_pixels(const ClsActs *a);   // NULL on the GPU for whole images (staged there)
// After a cls_forward of n rows: their logits [n][classes], then their n losses, on the host.
const real *cls_acts_outputs(const ClsActs *a);
// The token mixer's scans of layer l alone (for tests): o [N,D] (=) from the layer's projection qfi [N, 2HK+D]
// (gates applied here, with the layer's lower bound), over S sequences of the activations' T positions.
// lines 0: the config's (1-D, or rows and columns); 1: the rows only; 2: the columns only (2-D grids).
void cls_mixer_scans(ClsModel *m, ClsActs *a, real *o, real *qfi, int l, int S, int lines);
// Their backward, after cls_mixer_scans over the same qfi: from the activations' dout, dqfi (=) and the layer's
// lower-bound gradient (+=). For tests and benchmarks.
void cls_mixer_scans_bwd(ClsModel *m, ClsActs *a, real *qfi, int l, int S, int lines);
// After a training forward: gradients of (loss_scale x the summed loss) accumulate (+=) into m->grads.
void cls_backward(ClsModel *m, ClsActs *a, double loss_scale);

// After a cls_forward of n rows: how many rows with a label have it among their k highest logits (ties go to
// the lower class, as the argmax's do).
int64_t cls_topk_correct(const ClsActs *a, int n, int k);

double cls_grad_norm(ClsModel *m);
// One AdamW update (weight decay where CPARAMS says); grad_scale multiplies every gradient first.
void cls_adamw(ClsModel *m, double lr, double beta1, double beta2, double eps, double wd, double grad_scale,
               int64_t step);
// The forward's FLOPs per example (matrix products and the scans; backward ~ 2x), for throughput lines.
double cls_flops_per_example(const ClsConfig *c, int T);

#endif
