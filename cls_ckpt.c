// cls_ckpt.c: the classifier's checkpoint format: written atomically, read back with every field checked
// against the range the command line accepts for it (docs/classify.md). The writing and reading halves,
// the checksum and the range checks are those of the language model's format (checkpoint.h).
#include <math.h>

#include "cls_run.h"
#include "augment.h"
#include "checkpoint.h"
#include "lra.h"
#include "model.h"
#include "train.h"

// Version 2 added the input (ids or pixels, their channels and normalisation) and the scans (1-D, or 2-D with
// the grid); a version 1 file is a token model with 1-D scans and reads as one. Version 3 added the patch size
// (and the grid of a 1-D model of patches); versions 1 and 2 read as models without patches.
// Version 4 added the kind of the final norm (a plain RMSNorm or the model's); versions 1 to 3 read as the model's.
// Version 5 added imagenet's augmentations (RandAugment, the erasing probability, the repeated augmentation's
// count), which decide what a resumed run draws; versions 1 to 4 read as none (off, 0, 1), what they trained with.
// Version 6 added the targets (label smoothing; mixup's and cutmix's alphas, the switch and mixing probabilities)
// and the schedule's stepping (per step or per epoch, the per-epoch warmup's start); versions 1 to 5 read as no
// smoothing, no mixing (switch 0.5, probability 1) and the per-step schedule (warmup lr 1e-6, unused), what
// they trained with.
// Version 7 added the input's own dropout; versions 1 to 6 read it as the dropout, which they applied there too.
// Version 8 added the token mixer (--arch: HGRN2's or HGRN1's) and HGRN2's layer (--mixer-layer: the language
// model's or the authors' LRA one); versions 1 to 7 read as HGRN2 with the language model's layer, the only ones then.
// Version 9 added what the LRA layer's scans compute in (--scan-dtype); versions 1 to 8 read as fp32, the only one then.
// Version 10 added the padding groups (--pad-group); versions 1 to 9 read as 0, every document padded to the length.
#define CLS_CKPT_VERSION 10

// The header integers, in the order they are stored.
enum { I_V, I_D, I_L, I_K, I_I, I_CLASSES, I_NDOC, I_NORM, I_POS, I_LB, I_B, I_T, I_EPOCHS, I_STEPS, I_WARMUP,
       I_SCHED_STEPS, I_SEED, I_STEP, I_TRAIN_EXAMPLES, I_VOCAB_HASH, I_LOADER_SEED, I_LOADER_EPOCH, I_LOADER_INDEX,
       I_LOADER_RESERVED, I_N, I_NSTATS, I_OPT, I_INPUT, I_CHANNELS, I_SCAN, I_GRID_H, I_GRID_W, I_PATCH, I_FNORM, I_RANDAUG, I_REPEAT, I_LR_PER_EPOCH, I_MIXER, I_LAYER, I_SCAN_DTYPE, I_PAD_GROUP, NINTS };
#define NINTS_V1 I_INPUT
#define NINTS_V2 I_PATCH
#define NINTS_V3 I_FNORM
#define NINTS_V4 I_RANDAUG
#define NINTS_V5 I_LR_PER_EPOCH
#define NINTS_V7 I_MIXER
#define NINTS_V8 I_SCAN_DTYPE
#define NINTS_V9 I_PAD_GROUP
// The header floats.
enum { F_DROPOUT, F_EPS, F_LR, F_MIN_LR, F_WD, F_BETA1, F_BETA2, F_ADAM_EPS, F_CLIP, F_MEAN0, F_MEAN1, F_MEAN2,
       F_STD0, F_STD1, F_STD2, F_REPROB, F_SMOOTHING, F_MIXUP, F_CUTMIX, F_MIX_SWITCH, F_MIX_PROB, F_WARMUP_LR,
       F_INPUT_DROPOUT, NFLOATS };
#define NFLOATS_V1 F_MEAN0
#define NFLOATS_V4 F_REPROB
#define NFLOATS_V5 F_SMOOTHING
#define NFLOATS_V6 F_INPUT_DROPOUT

// A backend tensor as host values: itself on the CPU, a downloaded copy (in *tmp, freed by the caller) on
// the GPU.
static const real *host_of(const ClsModel *m, const real *p, int64_t n, real **tmp) {
    *tmp = NULL;
    if (!m->on_device || n == 0) return p;
    *tmp = xmalloc((size_t)n * sizeof(real));
    dev_download(*tmp, p, (size_t)n * sizeof(real));
    return *tmp;
}

void cls_checkpoint_save(const char *path, const ClsModel *m, const ClsRunState *rs, int with_optimizer) {
    const ClsConfig *c = &m->c;
    const ClsHyper *h = &rs->h;
    int64_t nstats = cls_nstats(c);
    const int grid = c->scan != SCAN_1D || c->patch > 1;     // the image's size is kept where it is used
    CkptOut o;
    ckpt_out_open(&o, path);
    ckpt_out_write(&o, CLS_CKPT_MAGIC, 8);
    ckpt_out_i64(&o, CLS_CKPT_VERSION);
    const int64_t ints[NINTS] = {
        [I_V] = c->V, [I_D] = c->D, [I_L] = c->L, [I_K] = c->K, [I_I] = c->I, [I_CLASSES] = c->classes,
        [I_NDOC] = c->ndoc, [I_NORM] = c->norm, [I_POS] = c->pos, [I_LB] = c->lower_bound, [I_B] = h->B,
        [I_T] = h->T, [I_EPOCHS] = h->epochs, [I_STEPS] = h->steps, [I_WARMUP] = h->warmup,
        [I_SCHED_STEPS] = h->sched_steps, [I_SEED] = (int64_t)h->seed, [I_STEP] = rs->step,
        [I_TRAIN_EXAMPLES] = (int64_t)rs->train_examples, [I_VOCAB_HASH] = (int64_t)rs->vocab_hash,
        [I_LOADER_SEED] = (int64_t)rs->loader.seed, [I_LOADER_EPOCH] = (int64_t)rs->loader.epoch,
        [I_LOADER_INDEX] = (int64_t)rs->loader.index, [I_LOADER_RESERVED] = (int64_t)rs->loader.reserved,
        [I_N] = m->lay.n, [I_NSTATS] = nstats, [I_OPT] = with_optimizer, [I_INPUT] = c->input,
        [I_CHANNELS] = c->input == INPUT_PIXELS ? c->channels : 0, [I_SCAN] = c->scan,
        [I_GRID_H] = grid ? c->grid_h : 0, [I_GRID_W] = grid ? c->grid_w : 0, [I_PATCH] = c->patch > 1 ? c->patch : 0,
        [I_FNORM] = c->fnorm_plain, [I_RANDAUG] = h->randaug, [I_REPEAT] = h->repeat,
        [I_LR_PER_EPOCH] = h->lr_per_epoch, [I_MIXER] = c->mixer, [I_LAYER] = c->layer,
        [I_SCAN_DTYPE] = c->scan_dtype, [I_PAD_GROUP] = c->pad_group};
    ckpt_out_i64(&o, NINTS);
    for (int i = 0; i < NINTS; i++) ckpt_out_i64(&o, ints[i]);
    const double fl[NFLOATS] = {[F_DROPOUT] = c->dropout, [F_EPS] = c->eps, [F_LR] = h->lr, [F_MIN_LR] = h->min_lr,
                                [F_WD] = h->wd, [F_BETA1] = h->beta1, [F_BETA2] = h->beta2,
                                [F_ADAM_EPS] = h->adam_eps, [F_CLIP] = h->clip,
                                [F_MEAN0] = c->pix_mean[0], [F_MEAN1] = c->pix_mean[1], [F_MEAN2] = c->pix_mean[2],
                                [F_STD0] = c->pix_std[0], [F_STD1] = c->pix_std[1], [F_STD2] = c->pix_std[2],
                                [F_REPROB] = h->reprob, [F_SMOOTHING] = h->smoothing, [F_MIXUP] = h->mixup,
                                [F_CUTMIX] = h->cutmix, [F_MIX_SWITCH] = h->mix_switch, [F_MIX_PROB] = h->mix_prob,
                                [F_WARMUP_LR] = h->warmup_lr, [F_INPUT_DROPOUT] = c->input_dropout};
    ckpt_out_i64(&o, NFLOATS);
    for (int i = 0; i < NFLOATS; i++) ckpt_out_f64(&o, fl[i]);
    ckpt_out_str(&o, rs->task);
    ckpt_out_str(&o, rs->data);
    const real *tensors[4] = {m->params, m->stats, m->m, m->v};     // the moments only with the optimizer state
    const int64_t sizes[4] = {m->lay.n, nstats, m->lay.n, m->lay.n};
    for (int i = 0; i < (with_optimizer ? 4 : 2); i++) {
        real *staged;
        ckpt_out_reals(&o, host_of(m, tensors[i], sizes[i], &staged), sizes[i]);
        free(staged);
    }
    ckpt_out_close(&o);
}

int cls_checkpoint_is(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char magic[8];
    int is = fread(magic, 1, 8, f) == 8 && !memcmp(magic, CLS_CKPT_MAGIC, 8);
    fclose(f);
    return is;
}

// Every field against the range the command line accepts for it (cmd_cls.c), and the loader's position
// against the steps done: a checksum proves only that the writer wrote it.
static void check_header(const char *path, const int64_t *v, const double *fl) {
    ckpt_check_range_int(path, &R_VOCAB, v[I_V]);
    ckpt_check_range_int(path, &R_DIM, v[I_D]);
    ckpt_check_range_int(path, &R_LAYERS, v[I_L]);
    ckpt_check_range_int(path, &R_EXPAND, v[I_K]);
    if (v[I_D] % v[I_K])
        die("checkpoint %s is corrupt: expand-ratio %lld does not divide dim %lld", path, (long long)v[I_K], (long long)v[I_D]);
    // the GLU's width is --glu-ratio x dim
    ckpt_check_int(path, "glu width", v[I_I], (int64_t)R_GLU_RATIO.lo * v[I_D], (int64_t)R_GLU_RATIO.hi * v[I_D]);
    if (v[I_I] % v[I_D])
        die("checkpoint %s is corrupt: glu width %lld is not a multiple of dim %lld", path, (long long)v[I_I], (long long)v[I_D]);
    ckpt_check_range_int(path, &R_CLASSES, v[I_CLASSES]);
    ckpt_check_int(path, "documents", v[I_NDOC], 1, EXAMPLES_DOCS_MAX);
    ckpt_check_int(path, "norm", v[I_NORM], 0, NNORMS - 1);
    ckpt_check_int(path, "pos", v[I_POS], 0, NPOS - 1);
    ckpt_check_int(path, "lower-bounds", v[I_LB], 0, 1);
    ckpt_check_range_num(path, &R_DROPOUT, fl[F_DROPOUT]);
    ckpt_check_range_num(path, &R_INPUT_DROPOUT, fl[F_INPUT_DROPOUT]);
    if (!(fl[F_EPS] > 0 && fl[F_EPS] < 1)) die("checkpoint %s is corrupt: norm eps = %g is out of range (0, 1)", path, fl[F_EPS]);
    ckpt_check_range_int(path, &R_BATCH, v[I_B]);
    ckpt_check_range_int(path, &R_SEQ_LEN, v[I_T]);
    ckpt_check_range_int(path, &R_EPOCHS, v[I_EPOCHS]);
    ckpt_check_range_int(path, &R_STEPS, v[I_STEPS]);
    ckpt_check_range_int(path, &R_WARMUP, v[I_WARMUP]);
    ckpt_check_range_int(path, &R_SCHED_STEPS, v[I_SCHED_STEPS]);
    ckpt_check_range_int(path, &R_SEED, v[I_SEED]);
    ckpt_check_int(path, "steps done", v[I_STEP], 0, v[I_STEPS]);
    ckpt_check_range_int(path, &R_TRAIN_EXAMPLES, v[I_TRAIN_EXAMPLES]);
    // the training loader was opened with the run's seed and has handed out `step` full batches since
    ckpt_check_int(path, "loader seed", v[I_LOADER_SEED], v[I_SEED], v[I_SEED]);
    int64_t read = v[I_STEP] * v[I_B];      // below 2^60: steps <= 2^40, batch <= 2^20
    ckpt_check_int(path, "loader epoch", v[I_LOADER_EPOCH], read / v[I_TRAIN_EXAMPLES], read / v[I_TRAIN_EXAMPLES]);
    ckpt_check_int(path, "loader index", v[I_LOADER_INDEX], read % v[I_TRAIN_EXAMPLES], read % v[I_TRAIN_EXAMPLES]);
    ckpt_check_int(path, "loader reserved", v[I_LOADER_RESERVED], 0, 0);
    ckpt_check_int(path, "optimizer flag", v[I_OPT], 0, 1);
    ckpt_check_optimizer(path, fl[F_LR], fl[F_MIN_LR], fl[F_WD], fl[F_BETA1], fl[F_BETA2], fl[F_ADAM_EPS], fl[F_CLIP]);
    // version 2: the input and the scans (version 1 reads as ids and 1-D, all zeros here)
    ckpt_check_int(path, "input", v[I_INPUT], 0, NINPUTS - 1);
    ckpt_check_int(path, "channels", v[I_CHANNELS], v[I_INPUT] == INPUT_PIXELS ? 1 : 0, v[I_INPUT] == INPUT_PIXELS ? 3 : 0);
    ckpt_check_int(path, "scan", v[I_SCAN], 0, NSCANS - 1);
    ckpt_check_int(path, "final norm", v[I_FNORM], 0, 1);
    // version 3: the patch size, 0 (none; versions 1 and 2) or in [2, 1024] with pixels, dividing the grid
    const int pix = v[I_INPUT] == INPUT_PIXELS;
    ckpt_check_int(path, "patch", v[I_PATCH], 0, pix ? R_PATCH.hi : 0);
    if (v[I_PATCH] == 1) die("checkpoint %s is corrupt: patch = 1 (a model without patches stores 0)", path);
    const int two = v[I_SCAN] != SCAN_1D, grid = two || v[I_PATCH] > 1;
    ckpt_check_int(path, "grid height", v[I_GRID_H], grid, grid ? 1 << 24 : 0);
    ckpt_check_int(path, "grid width", v[I_GRID_W], grid, grid ? 1 << 24 : 0);
    if (grid && v[I_GRID_H] * v[I_GRID_W] * (v[I_CHANNELS] ? v[I_CHANNELS] : 1) != v[I_T])
        die("checkpoint %s is corrupt: a %lld x %lld grid does not make documents of seq-len %lld values", path,
            (long long)v[I_GRID_H], (long long)v[I_GRID_W], (long long)v[I_T]);
    if (v[I_PATCH] > 1 && (v[I_GRID_H] % v[I_PATCH] || v[I_GRID_W] % v[I_PATCH]))
        die("checkpoint %s is corrupt: patch %lld does not divide the %lld x %lld images", path, (long long)v[I_PATCH],
            (long long)v[I_GRID_H], (long long)v[I_GRID_W]);
    // version 5: the augmentations, imagenet's alone (a file of another task holds none)
    const int any = v[I_INPUT] == INPUT_PIXELS && v[I_CHANNELS] == 3;
    ckpt_check_int(path, "randaugment", v[I_RANDAUG], 0, any);
    ckpt_check_int(path, "repeated augmentation", v[I_REPEAT], 1, any ? AUG_REPEAT_MAX : 1);
    if (!(fl[F_REPROB] >= 0 && fl[F_REPROB] <= (any ? 1 : 0)))
        die("checkpoint %s is corrupt: erasing probability = %g is out of range [0, %d]", path, fl[F_REPROB], any);
    // version 6: the targets and the schedule's stepping; mixing needs whole images of a known size (pixels with
    // 2-D scans or patches), smoothing suits any task
    ckpt_check_int(path, "lr per epoch", v[I_LR_PER_EPOCH], 0, 1);
    // version 8: the token mixer, HGRN2's (0) or HGRN1's, whose state is a vector (expand ratio 1)
    if (v[I_MIXER] != MIXER_CAUSAL && v[I_MIXER] != MIXER_HGRN1)
        die("checkpoint %s is corrupt: arch = %lld is neither hgrn2 (%d) nor hgrn1 (%d)", path, (long long)v[I_MIXER],
            MIXER_CAUSAL, MIXER_HGRN1);
    if (v[I_MIXER] == MIXER_HGRN1 && v[I_K] != 1)
        die("checkpoint %s is corrupt: an hgrn1 model with expand-ratio %lld (HGRN1's is 1)", path, (long long)v[I_K]);
    ckpt_check_int(path, "mixer layer", v[I_LAYER], 0, v[I_MIXER] == MIXER_CAUSAL ? NLAYERS - 1 : 0);
    // version 9: bf16 scans only for the authors' layer (the rest of what they need is cls_config_finish's)
    ckpt_check_int(path, "scan dtype", v[I_SCAN_DTYPE], 0, v[I_LAYER] == LAYER_LRA ? NSCAN_DTYPES - 1 : 0);
    // version 10: the padding groups (where they apply is cls_config_finish's)
    ckpt_check_range_int(path, &R_PAD_GROUP, v[I_PAD_GROUP]);
    ckpt_check_range_num(path, &R_SMOOTHING, fl[F_SMOOTHING]);
    ckpt_check_range_num(path, &R_MIX_SWITCH, fl[F_MIX_SWITCH]);
    ckpt_check_range_num(path, &R_MIX_PROB, fl[F_MIX_PROB]);
    ckpt_check_range_num(path, &R_WARMUP_LR, fl[F_WARMUP_LR]);
    const int mixable = pix && grid;
    const Range *alphas[] = {&R_MIXUP, &R_CUTMIX};
    for (int i = 0; i < 2; i++) {
        const double a = fl[i ? F_CUTMIX : F_MIXUP], hi = mixable ? alphas[i]->hi : 0;
        if (!(a >= 0 && a <= hi))
            die("checkpoint %s is corrupt: %s = %g is out of range [0, %g]", path, alphas[i]->name, a, hi);
    }
    if ((fl[F_MIXUP] > 0 || fl[F_CUTMIX] > 0) && v[I_B] < 2)
        die("checkpoint %s is corrupt: mixing in batches of %lld", path, (long long)v[I_B]);
    for (int i = F_MEAN0; i <= F_STD2; i++) {
        const int std = i >= F_STD0, used = v[I_INPUT] == INPUT_PIXELS && (i - (std ? F_STD0 : F_MEAN0)) < v[I_CHANNELS];
        const double lo = used ? (std ? 1e-6 : -1e3) : 0, hi = used ? 1e3 : 0;
        if (!(fl[i] >= lo && fl[i] <= hi))
            die("checkpoint %s is corrupt: pixel %s %d = %g is out of range [%g, %g]", path, std ? "std" : "mean",
                i - (std ? F_STD0 : F_MEAN0), fl[i], lo, hi);
    }
}

void cls_checkpoint_load(const char *path, ClsModel *m, ClsRunState *rs, real **moments) {
    CkptIn r;
    ckpt_in_open(&r, path, " (train a classifier first, or pass --ckpt PATH)");
    char magic[8];
    ckpt_in_read(&r, magic, 8);
    if (!memcmp(magic, CKPT_MAGIC, 8))
        die("%s is the checkpoint of a language model, not of a classifier: the classifier tasks cannot read it "
            "('hgrn2 eval --ckpt %s' evaluates it)", path, path);
    if (memcmp(magic, CLS_CKPT_MAGIC, 8)) die("%s is not an hgrn2 checkpoint (bad magic)", path);
    int64_t version = ckpt_in_i64(&r);
    if (version < 1 || version > CLS_CKPT_VERSION)
        die("checkpoint %s has format version %lld; this hgrn2 reads versions 1 to %d", path, (long long)version, CLS_CKPT_VERSION);
    const int want_ints = version == 1 ? NINTS_V1 : version == 2 ? NINTS_V2 : version == 3 ? NINTS_V3
                        : version == 4 ? NINTS_V4 : version == 5 ? NINTS_V5 : version < 8 ? NINTS_V7
                        : version == 8 ? NINTS_V8 : version == 9 ? NINTS_V9 : NINTS;
    const int want_floats = version == 1 ? NFLOATS_V1 : version < 5 ? NFLOATS_V4 : version == 5 ? NFLOATS_V5
                          : version == 6 ? NFLOATS_V6 : NFLOATS;
    int64_t nints = ckpt_in_i64(&r);
    if (nints != want_ints) die("checkpoint %s is corrupt: %lld header integers, expected %d", path, (long long)nints, want_ints);
    int64_t v[NINTS] = {0};
    for (int i = 0; i < want_ints; i++) v[i] = ckpt_in_i64(&r);
    int64_t nfl = ckpt_in_i64(&r);
    if (nfl != want_floats) die("checkpoint %s is corrupt: %lld header floats, expected %d", path, (long long)nfl, want_floats);
    double fl[NFLOATS] = {0};
    for (int i = 0; i < want_floats; i++) fl[i] = ckpt_in_f64(&r);
    if (version < 5) v[I_REPEAT] = 1;       // trained without repeated augmentation
    if (version < 6) {                      // without smoothing or mixing, on the per-step schedule
        fl[F_MIX_SWITCH] = CLS_MIX_SWITCH;
        fl[F_MIX_PROB] = CLS_MIX_PROB;
        fl[F_WARMUP_LR] = CLS_WARMUP_LR;
    }
    if (version < 7) fl[F_INPUT_DROPOUT] = fl[F_DROPOUT];   // one dropout, the input's too
    check_header(path, v, fl);
    memset(rs, 0, sizeof *rs);
    ckpt_in_str(&r, "task name", rs->task, sizeof rs->task);
    if (!cls_preset_find(rs->task))
        die("checkpoint %s is corrupt: task = '%s' is none of the LRA tasks", path, rs->task);
    ckpt_in_str(&r, "data directory", rs->data, sizeof rs->data);
    if (!rs->data[0]) die("checkpoint %s is corrupt: its data directory is empty", path);
    ClsConfig c = {.V = (int)v[I_V], .D = (int)v[I_D], .L = (int)v[I_L], .K = (int)v[I_K], .I = (int)v[I_I],
                   .classes = (int)v[I_CLASSES], .ndoc = (int)v[I_NDOC], .norm = (int)v[I_NORM], .pos = (int)v[I_POS],
                   .lower_bound = (int)v[I_LB], .dropout = fl[F_DROPOUT],
                   .input_dropout = fl[F_INPUT_DROPOUT], .eps = fl[F_EPS], .input = (int)v[I_INPUT],
                   .channels = (int)v[I_CHANNELS], .scan = (int)v[I_SCAN], .grid_h = (int)v[I_GRID_H],
                   .grid_w = (int)v[I_GRID_W], .patch = (int)v[I_PATCH], .fnorm_plain = (int)v[I_FNORM], .mixer = (int)v[I_MIXER], .layer = (int)v[I_LAYER], .scan_dtype = (int)v[I_SCAN_DTYPE], .pad_group = (int)v[I_PAD_GROUP], .pix_mean = {fl[F_MEAN0], fl[F_MEAN1], fl[F_MEAN2]},
                   .pix_std = {fl[F_STD0], fl[F_STD1], fl[F_STD2]}};
    const char *bad = cls_config_finish(&c);
    if (bad) die("checkpoint %s is corrupt: invalid configuration (%s)", path, bad);
    rs->c = c;
    rs->h = (ClsHyper){.B = (int)v[I_B], .T = (int)v[I_T], .epochs = v[I_EPOCHS], .steps = v[I_STEPS],
                       .warmup = v[I_WARMUP], .sched_steps = v[I_SCHED_STEPS], .lr = fl[F_LR], .min_lr = fl[F_MIN_LR],
                       .wd = fl[F_WD], .beta1 = fl[F_BETA1], .beta2 = fl[F_BETA2], .adam_eps = fl[F_ADAM_EPS],
                       .clip = fl[F_CLIP], .seed = (uint64_t)v[I_SEED], .randaug = (int)v[I_RANDAUG],
                       .repeat = (int)v[I_REPEAT], .reprob = fl[F_REPROB], .smoothing = fl[F_SMOOTHING],
                       .mixup = fl[F_MIXUP], .cutmix = fl[F_CUTMIX], .mix_switch = fl[F_MIX_SWITCH],
                       .mix_prob = fl[F_MIX_PROB], .lr_per_epoch = (int)v[I_LR_PER_EPOCH], .warmup_lr = fl[F_WARMUP_LR]};
    rs->step = v[I_STEP];
    rs->train_examples = (uint64_t)v[I_TRAIN_EXAMPLES];
    rs->vocab_hash = (uint64_t)v[I_VOCAB_HASH];
    rs->loader = (ExampleLoaderState){(uint64_t)v[I_LOADER_SEED], (uint64_t)v[I_LOADER_EPOCH],
                                      (uint64_t)v[I_LOADER_INDEX], (uint64_t)v[I_LOADER_RESERVED]};
    int has_opt = (int)v[I_OPT];
    // The sizes the header implies, against the file, before anything is allocated: a flipped bit in a size
    // must read as a damaged file, not as a request for terabytes.
    ClsLayout lay = cls_layout_of(&c);
    int64_t nstats = cls_nstats(&c);
    if (v[I_N] != lay.n)
        die("checkpoint %s is corrupt: it says %lld parameters, its configuration has %lld", path, (long long)v[I_N], (long long)lay.n);
    if (v[I_NSTATS] != nstats)
        die("checkpoint %s is corrupt: it says %lld running statistics, its configuration has %lld", path,
            (long long)v[I_NSTATS], (long long)nstats);
    int64_t need = (lay.n * (has_opt ? 3 : 1) + nstats) * 4;
    if (r.left != need)
        die("checkpoint %s is %s: its header describes %lld parameters and %lld statistics%s, %lld bytes of tensors, "
            "but %lld bytes follow the header", path, r.left < need ? "truncated or corrupt" : "corrupt",
            (long long)lay.n, (long long)nstats, has_opt ? " with the AdamW moments" : "", (long long)need, (long long)r.left);
    if (moments && !has_opt)
        die("checkpoint %s holds no optimizer state, so training cannot resume from it", path);
    cls_alloc(m, &c);
    ckpt_in_reals(&r, m->params, lay.n);
    ckpt_in_reals(&r, m->stats, nstats);
    real *mom = NULL;
    if (moments) {
        mom = xmalloc((size_t)(2 * lay.n) * sizeof(real));
        ckpt_in_reals(&r, mom, 2 * lay.n);
    } else if (has_opt) {
        ckpt_in_reals(&r, NULL, 2 * lay.n);
    }
    ckpt_in_close(&r);
    for (int64_t i = 0; i < lay.n; i++)
        if (!isfinite(m->params[i])) die("checkpoint %s is corrupt: it holds a non-finite parameter", path);
    // per norm a mean [D], then a variance [D]
    for (int64_t i = 0; i < nstats; i++)
        if (!isfinite(m->stats[i]) || ((i / c.D) % 2 == 1 && m->stats[i] < 0))
            die("checkpoint %s is corrupt: a BatchNorm running statistic is not finite, or a running variance is "
                "negative", path);
    for (int64_t i = 0; mom && i < lay.n; i++)
        if (!isfinite(mom[i]) || !(mom[lay.n + i] >= 0 && isfinite(mom[lay.n + i])))
            die("checkpoint %s is corrupt: an AdamW moment is not finite, or a second moment is negative", path);
    if (moments) *moments = mom;
}

void cls_upload_moments(ClsModel *m, real *moments) {
    size_t bytes = (size_t)m->lay.n * sizeof(real);
    dev_upload(m->m, moments, bytes);
    dev_upload(m->v, moments + m->lay.n, bytes);
    free(moments);
}

uint64_t cls_vocab_hash(const Examples *e) {
    Hash s;
    hash_init(&s);
    const char *d = example_vocab_desc(e);
    hash_bytes(&s, d, strlen(d));
    return hash_final(&s);
}

void cls_check_task_data(const char *task, const Examples *e) {
    int ndoc = example_ndoc(e), ih, iw, ic;
    uint32_t classes = example_classes(e), V = example_vocab(e);
    const int img = cls_data_pixels(e, &ih, &iw, &ic);
    // Image takes any labelled images (CIFAR-10, or Fashion-MNIST read as pixel sequences); Pathfinder and
    // Path-X their own gray 32 x 32 and 128 x 128 images of two classes; fashion-mnist gray 28 x 28 of ten
    int ok = !strcmp(task, "lra-listops") ? ndoc == 1 && classes == LRA_LISTOPS_CLASSES && !img
           : !strcmp(task, "lra-text") ? ndoc == 1 && classes == 2 && V == LRA_BYTE_VOCAB
           : !strcmp(task, "lra-retrieval") ? ndoc == 2 && classes == 2 && V == LRA_BYTE_VOCAB
           : !strcmp(task, "lra-image") ? ndoc == 1 && img
           : !strcmp(task, "lra-pathfinder") ? ndoc == 1 && img && classes == 2 && ic == 1 && ih == 32 && iw == 32
           : !strcmp(task, "fashion-mnist") ? ndoc == 1 && img && classes == 10 && ic == 1 && ih == 28 && iw == 28
           : ndoc == 1 && img && classes == 2 && ic == 1 && ih == 128 && iw == 128;
    if (!ok)
        die("%s does not hold %s examples: %d document%s per example, %u classes, vocabulary %u (prepare it with "
            "'hgrn2 prepare --task %s')", example_path(e), task, ndoc, ndoc == 1 ? "" : "s", classes, V, task);
}
