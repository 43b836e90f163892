// cls_run.h: training and evaluating the sequence classifier (cls.h) on the Long Range Arena's token tasks:
// the per-task presets, a run's settings and state, its checkpoints (cls_ckpt.c), the training run and
// evaluation (cls_run.c). The commands are in cmd_cls.c; the loop, the schedule and the format in
// docs/classify.md.
#ifndef HGRN2_CLS_RUN_H
#define HGRN2_CLS_RUN_H

#include "common.h"
#include "cls.h"
#include "examples.h"
#include "imloader.h"

// ---- the tasks and their presets (the HGRN2 authors' LRA runs) ----
typedef struct {
    const char *task;           // "lra-listops", "lra-text", "lra-retrieval", "lra-image", "lra-pathfinder", "lra-pathx",
                                // "fashion-mnist"
    int L, D, K, glu;           // layers, hidden size, expand ratio, GLU width as a multiple of D
    int norm, pos;              // NormKind, PosKind
    double dropout;
    int B, T;                   // batch (examples), sequence length (tokens per document; 0: the images' size)
    double lr, clip, wd;
    int64_t warmup, sched_steps, epochs;
    int pixels;                 // an image task: pixel input, 2-D scans over the data's images (1: four scans
                                // summed, 2: the series form)
    int patch;                  // an image task: positions of patch x patch pixels (0: a position per pixel)
    int augment;                // an image task: the padding of the random crops, with flips (0: no augmentation)
    int init;                   // ClsInit: the reference LRA code's PyTorch defaults, or the image models' N(0, 0.02)
    double input_dropout;       // on the embedded input: the reference LRA runs' 0.1 where they add positions (their
                                // positional encoder drops out at 0.1), none where they do not
    int pad_group;              // --pad-group: the reference runs' batch per GPU, which their loader padded to its
                                // longest document (0: every document padded to the length)
} ClsPreset;
#define NCLS_PRESETS 9
extern const ClsPreset CLS_PRESETS[NCLS_PRESETS];
// NULL: not a classification task. "imagenet" finds its default preset, imagenet-tiny.
const ClsPreset *cls_preset_find(const char *task);
// The ImageNet runs of the HGRN2 paper (DeiT's recipe): the presets imagenet-tiny and imagenet-small read
// ps->warmup as epochs; their peak lr is per 512 examples of batch (scaled by batch / 512).
#define IMAGENET_LR_BATCH 512
#define IMAGENET_MIN_LR 1e-5
#define IMAGENET_EVAL_BATCH 256        // images per validation batch during training (at most the batch)
// ... and its targets: label smoothing, mixup's and cutmix's Beta alphas (DeiT's defaults)
#define IMAGENET_SMOOTHING 0.1
#define IMAGENET_MIXUP 0.8
#define IMAGENET_CUTMIX 1.0
static inline int cls_task_imagenet(const char *task) { return !strncmp(task, "imagenet", 8); }

// Whether the examples are images (their vocabulary description reads "pixels HxWxC ..."): 1 with the height,
// width and channels, else 0.
int cls_data_pixels(const Examples *e, int *h, int *w, int *c);
// The pixel normalisation of images of c channels: CIFAR-10's channel means and deviations for 3, (x - 0.5) / 0.5
// for 1 (Pathfinder's); into the config's pix_mean and pix_std.
void cls_pixel_norm(ClsConfig *cfg, int c);
// Image augmentation of a training batch (Image, Fashion-MNIST): each of the n images (h x w x ch values)
// shifted by a random crop with `pad` pixels of mirrored padding (at most 4) and flipped horizontally with
// probability 1/2, drawn from the run's seed, the step and the row alone, so a resumed run draws the same.
// Always on the pixel image: patches are cut from it afterwards, in the forward.
void cls_augment(int32_t *pix, int n, int h, int w, int ch, int pad, uint64_t seed, int64_t step);
// Positions of a document of T values: T / (values per position: channels, or a patch's values) with pixel
// input, else T.
static inline int cls_positions(const ClsConfig *c, int T) { return T / cls_pos_values(c); }

// ---- a run's optimization settings (checkpoints keep them) ----
typedef struct {
    int B, T;                   // T: values per document the loader reads (pixel input: positions x channels)
    int64_t epochs;             // what the run was asked for (steps = epochs x steps per epoch unless --steps)
    int64_t steps;              // optimizer steps in all
    int64_t warmup, sched_steps;   // the linear warmup and the cosine's length, in steps
    double lr, min_lr, wd, beta1, beta2, adam_eps, clip;
    uint64_t seed;
    // imagenet's training augmentations after the crop (augment.h): RandAugment on or off, the random
    // erasing's probability, the repeated augmentation's count (the other tasks: 0, 0, 1)
    int randaug, repeat;
    double reprob;
    // the targets (checkpoint version 6): label smoothing (0: none); mixup's and cutmix's Beta alphas (0: off),
    // the probability of cutmix when both are on, and of mixing a batch at all (cls_mix_draw)
    double smoothing, mixup, cutmix, mix_switch, mix_prob;
    // the schedule's stepping (version 6): 0, once a step from 0; 1, timm's per-epoch schedule, the warmup
    // rising from warmup_lr (cls_lr_at)
    int lr_per_epoch;
    double warmup_lr;
} ClsHyper;

// The ranges of the settings that only the classifier has (train's flags of the same names); the others
// are the language model's (R_DIM ..., R_BATCH ... of model.h and train.h). Checkpoints are checked
// against the same ranges.
extern const Range R_GLU_RATIO, R_DROPOUT, R_INPUT_DROPOUT, R_EPOCHS, R_SCHED_STEPS, R_TRAIN_EXAMPLES;
extern const Range R_SMOOTHING, R_MIXUP, R_CUTMIX, R_MIX_SWITCH, R_MIX_PROB, R_WARMUP_LR;
// The defaults of the flags above that are not the imagenet presets' (those: smoothing 0.1, mixup 0.8, cutmix
// 1, the per-epoch schedule): mixing's switch and probability, the per-epoch warmup's start.
#define CLS_MIX_SWITCH 0.5
#define CLS_MIX_PROB 1.0
#define CLS_WARMUP_LR 1e-6

// The learning rate of step `step` (from 1). Per step (lr_per_epoch 0): lr x step / warmup during the warmup,
// then a cosine from lr to min_lr over sched_steps (counted from step 0), constant at min_lr after it.
// Per epoch (timm's CosineLRScheduler stepped once an epoch, as DeiT's runs): constant within epoch
// e = (step - 1) / spe (spe: steps per epoch); with W = warmup / spe and E = sched_steps / spe epochs,
// warmup_lr + e (lr - warmup_lr) / W for e < W, then min_lr + (lr - min_lr) (1 + cos(pi e / E)) / 2 (the cosine
// counted from epoch 0, not from the warmup's end), min_lr from epoch E on.
double cls_lr_at(const ClsHyper *h, int64_t step, int64_t spe);
// The mixing of training step `step` (from 1) of a batch of img_h x img_w images, drawn from a generator keyed
// by the run's seed and the step alone (so a resumed run draws the same): whether the batch is mixed
// (probability mix_prob), cutmix or mixup (cutmix with probability mix_switch when both are on), lam ~
// Beta(alpha, alpha) of the chosen one, and for cutmix the box: cut ratio sqrt(1 - lam), cut_h = int(img_h x
// ratio), cut_w likewise, a center (cy, cx) uniform over the pixels, the box [cy - cut_h / 2, cy + cut_h / 2)
// (integer halves) x the same in x, clipped to the image, and lam corrected to 1 - box area / image area.
// The smoothing is h->smoothing whatever is drawn.
ClsMix cls_mix_draw(const ClsHyper *h, int img_h, int img_w, int64_t step);
// Batches of an epoch: ceil(n / B). The shuffled loader's batches are always full and run on into the next
// epoch, so an "epoch" of steps reads ceil(n / B) x B examples.
int64_t cls_steps_per_epoch(uint64_t n, int B);
// The dropout seed of a training step: a function of the run's seed and the step alone, so a resumed run
// draws what an uninterrupted one drew.
uint64_t cls_drop_seed(uint64_t seed, int64_t step);

// ---- the run state and checkpoints (cls_ckpt.c) ----
typedef struct {
    ClsConfig c;
    ClsHyper h;
    int64_t step;               // optimizer steps done
    uint64_t train_examples;    // the training split's size, which the loader state and the epochs count in
    uint64_t vocab_hash;        // cls_vocab_hash of the data trained on
    ExampleLoaderState loader;  // the training loader's position after `step` steps
    char task[32];              // "lra-listops", ...
    char data[1024];            // the data directory trained on
} ClsRunState;

// Writes PATH.tmp, flushes, syncs and renames it to PATH (a crash or a full disk never damages PATH).
// Parameters and statistics are read from wherever the model lives. with_optimizer: the AdamW moments too.
void cls_checkpoint_save(const char *path, const ClsModel *m, const ClsRunState *rs, int with_optimizer);
// Loads a checkpoint into a freshly allocated model on the host (cls_alloc). moments NULL: the AdamW moments
// are skipped; otherwise the file must hold them and *moments receives them on the host, m then v (2 x
// lay.n values, for cls_upload_moments). Every field is checked; any problem dies naming the file and field.
void cls_checkpoint_load(const char *path, ClsModel *m, ClsRunState *rs, real **moments);
// After cls_to_device and cls_alloc_training: the moments cls_checkpoint_load read, into the model's; frees
// them.
void cls_upload_moments(ClsModel *m, real *moments);
int cls_checkpoint_is(const char *path);    // whether the file exists and starts with the classifier's magic

// A 64-bit hash of an example file's vocabulary description: equal hashes, equal vocabularies.
uint64_t cls_vocab_hash(const Examples *e);
// Dies unless the examples fit the task (ListOps: 1 document, 10 classes; Text: 1 document of bytes, 2
// classes; Retrieval: 2 documents of bytes, 2 classes), naming the file.
void cls_check_task_data(const char *task, const Examples *e);

// ---- evaluation and the training run (cls_run.c) ----
typedef struct { double loss; int64_t count, correct, correct5; } ClsScore;   // loss: the mean over count examples;
                                                                               // correct5: in the 5 highest
// Where batches come from: example files (ex) or JPEG example files (im), one of them.
typedef struct { ExampleLoader *ex; ImLoader *im; } ClsSource;
uint64_t cls_source_count(const ClsSource *s);      // examples of the split
uint32_t cls_source_classes(const ClsSource *s);
// The whole split (or its first max_batches batches) in order, from its first example: running statistics,
// no dropout. ld is a sequential loader of batches of B examples of T tokens, a the activations for them.
// What an evaluation can also report example by example (a NULL member: not collected).
typedef struct {
    FILE *tsv;              // a line per example in the split's order: index, label, predicted class, the
                            // predicted class's probability, the example's loss
    int64_t *confusion;     // [classes][classes]: how many examples of label i the model predicts as j
} ClsEvalOut;
ClsScore cls_evaluate(ClsModel *m, ClsActs *a, ClsSource *ld, int B, int T, int64_t max_batches, ClsEvalOut *out);

// How a run reports, saves and stops.
typedef struct {
    const char *out;            // the run directory: model.ckpt and log.tsv
    int64_t eval_every;         // validation every N steps (0: at the end only)
    int64_t eval_batches;       // batches per evaluation (0: the whole split)
    int64_t eval_test;          // 1: each evaluation also scores the test split (the caller opens it for cls_train_run)
    int eval_batch;             // examples per validation batch (0: the training batch); the validation source
                                // must deliver batches of this size
    int64_t ckpt_every;         // a checkpoint every N steps (0: at the end only)
    int64_t log_every;          // a progress line every N steps
    int64_t stop_at;            // save and stop after this step, as if interrupted (0: run to the end)
    int resume;                 // continue log.tsv (cut back to the checkpoint's step) instead of starting it
    int64_t keep;               // > 0: also keep the newest `keep` checkpoints as model_step<N>.ckpt, and the
                                // best validation accuracy's as best.ckpt
    int64_t max_bad_steps;      // steps with a non-finite loss or gradient in a row before the run stops
    int profile;                // GPU: time every op of this call's steps 3 to 2 + CLS_PROFILE_STEPS, then print
                                // the GPU time per step of each (section, op)
} ClsPlan;
#define CLS_PROFILE_STEPS 10

// Trains from rs->step to rs->h.steps on train (shuffled), validating on val (sequential; NULL: none) and, at
// the same steps, scoring test (NULL: none): the startup table, progress lines, a log.tsv row per step, checkpoints with the AdamW moments, a summary.
// The model is on its backend with its training buffers. Ctrl-C or SIGTERM saves and stops after the step
// in progress. Returns 0, or 128 + the signal that stopped it.
int cls_train_run(ClsModel *m, ClsRunState *rs, ClsSource *train, ClsSource *val, ClsSource *test, const ClsPlan *p);

#endif
