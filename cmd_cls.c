// cmd_cls.c: `hgrn2 train` and `hgrn2 eval` for the Long Range Arena's classification tasks (--task lra-*):
// options and presets in, the run or the evaluation of cls_run.c out; and `eval --task lra`, the table of
// every task's test accuracy beside the paper's. hgrn2.c hands these command lines over (cls_command_line).
#define _GNU_SOURCE
#include <getopt.h>
#include <sys/stat.h>

#include "cli.h"
#include "commands.h"
#include "cls_run.h"
#include "train.h"
#include "lra.h"
#include "jpeg.h"

// Options of the classifier only, numbered after the shared ones of cli.h.
enum { OC_GLU = O_LAST, OC_NORM, OC_POS, OC_DROPOUT, OC_EPOCHS, OC_SCHED_STEPS, OC_RUNS, OC_DATA_ROOT, OC_KEEP, OC_MAX_BAD,
       OC_PATCH, OC_PRESET, OC_IMAGE_SIZE, OC_LOADER_THREADS, OC_RANDAUG, OC_REPROB, OC_REPEAT,
       OC_SMOOTHING, OC_MIXUP, OC_CUTMIX, OC_MIX_SWITCH, OC_MIX_PROB, OC_LR_PER_EPOCH, OC_WARMUP_LR, OC_INIT, OC_INPUT_DROPOUT, OC_LAYER,
       OC_SCAN_DTYPE, OC_PAD_GROUP, OC_PREDICTIONS, OC_PER_CLASS, OC_EVAL_TEST, OC_LAST };

// ----------------------------------------------------------------------------------------------------------
// Which command lines are the classifier's

static int argv_flag(int argc, char **argv, const char *name) {
    for (int i = 1; i < argc && strcmp(argv[i], "--"); i++) if (!strcmp(argv[i], name)) return 1;
    return 0;
}

int cls_command_line(int argc, char **argv, int eval) {
    const char *task = cli_option_value(argc, argv, "--task");
    if (task) return !strncmp(task, "lra", 3) || !strcmp(task, "fashion-mnist") || !strcmp(task, "imagenet");
    // no task: a checkpoint to resume or evaluate says whose it is
    const char *ckpt = cli_option_value(argc, argv, "--ckpt"), *out = cli_option_value(argc, argv, "--out");
    if (!eval && !argv_flag(argc, argv, "--resume")) return 0;
    if (ckpt) return cls_checkpoint_is(ckpt);
    char *path = xasprintf("%s/model.ckpt", !eval && out ? out : DEFAULT_OUT);
    int is = cls_checkpoint_is(path);
    free(path);
    return is;
}

static const ClsPreset *task_or_usage(const char *task) {
    const ClsPreset *ps = strncmp(task, "imagenet-", 9) ? cls_preset_find(task) : NULL;
    if (!ps)
        usage_error("--task must be lra-listops, lra-text, lra-retrieval, lra-image, lra-pathfinder, lra-pathx, "
                    "fashion-mnist or imagenet, got '%s'", task);
    return ps;
}

// ----------------------------------------------------------------------------------------------------------
// hgrn2 train --task lra-*

static const char *TRAIN_USAGE =
    "hgrn2 train --task lra-listops|lra-text|lra-retrieval|lra-image|lra-pathfinder|lra-pathx|fashion-mnist|imagenet "
    "--data DIR [--out DIR] [options]";
static const char *TRAIN_HELP =
    "Train the bidirectional HGRN2 classifier (--arch hgrn1: HGRN1's) on a Long Range Arena task, on example\n"
    "files made by 'hgrn2 prepare --task lra-*' (docs/lra.md), or on Fashion-MNIST ('hgrn2 prepare --task\n"
    "fashion-mnist').\n"
    "Each LRA task starts from the HGRN2 authors' settings:\n"
    "\n"
    "                   lra-listops   lra-text   lra-retrieval\n"
    "  layers, dim           5, 64    4, 128        2, 256\n"
    "  expand, glu ratio      4, 1      8, 1          2, 2\n"
    "  norm, positions  batch, sin.  layer, none  batch, sin.\n"
    "  dropout                   0       0.1             0\n"
    "  input dropout           0.1         0           0.1\n"
    "  batch x seq-len   128 x 2048  64 x 4096    128 x 4000 (two documents)\n"
    "  lr, warmup         5e-4, 5000  5e-3, 10000  5e-3, 312\n"
    "  epochs, clip          50, 0      40, 0         20, 1\n"
    "\n"
    "                   lra-image    lra-pathfinder  lra-pathx   (pixels in, four 2-D scans)\n"
    "  layers, dim           6, 512      6, 128       6, 32\n"
    "  expand, glu ratio      2, 1        2, 1         1, 1\n"
    "  norm, positions  batch, sin.  batch, none   batch, sin.\n"
    "  input dropout            0.1          0          0.1   (dropout 0)\n"
    "  batch                    64         128          256   (seq-len: the images' size)\n"
    "  lr, warmup       3e-3, 30000  2e-3, 50000  7.5e-4, 150000\n"
    "  cosine, epochs    50000, 75   500000, 100  500000, 200\n"
    "  clip                      0           0            1\n"
    "Image trains on random crops (4 pixels of mirrored padding) and horizontal flips; 3-channel images are\n"
    "normalised with CIFAR-10's channel statistics, 1-channel ones as (x - 0.5) / 0.5.\n"
    "fashion-mnist: 4 x 4 patches (7 x 7 = 49 tokens), four 2-D scans over the 7 x 7 patch grid; 6 layers,\n"
    "dim 256, expand 4, glu 2, batch norm, sin. positions, dropout 0.1 (input 0.1); batch 128, lr 2e-3, warmup 844, cosine\n"
    "16880 (to 0 at the end), 40 epochs, clip 1, wd 0.05; crops from 2 pixels of padding, and flips.\n"
    "imagenet: the HGRN2 paper's image classifiers on JPEG example files ('hgrn2 prepare --task imagenet'):\n"
    "224 x 224 RGB as 16 x 16 patches of 14 x 14 pixels, ImageNet's mean and std, no positions, 12 layers of\n"
    "LayerNorm, 1-D scans both ways over the patches' raster order, expand 64, glu 3, mean pool, a plain\n"
    "RMSNorm (no weight), linear head. --preset imagenet-tiny (default; dim 192, batch 1024, wd 0.05, warmup 20\n"
    "epochs) or imagenet-small (dim 384, batch 2048, wd 0.1, warmup 10 epochs); both: AdamW lr 7.5e-4 x\n"
    "batch / 512, betas (0.9, 0.98), cosine to 1e-5 over the run, 300 epochs, clip 5, random resized crops\n"
    "and flips, RandAugment (m9 mstd0.5, 2 ops), random erasing 0.25, repeated augmentation x3, mixup 0.8 or\n"
    "cutmix 1.0 (half and half), label smoothing 0.1, the schedule stepped once an epoch from 1e-6.\n"
    "docs/imagenet.md.\n"
    "The learning rate warms up linearly, then follows a cosine to --min-lr over --sched-steps (50000)\n"
    "steps, stepped once a batch; the run ends after --epochs epochs of ceil(train examples / batch) steps,\n"
    "usually before the cosine does. AdamW betas (0.9, 0.999), eps 1e-8, no weight decay. docs/classify.md.\n"
    "\n"
    "Task and files:\n"
    "  --task NAME          lra-listops, lra-text, lra-retrieval, lra-image, lra-pathfinder, lra-pathx or\n"
    "                       fashion-mnist\n"
    "  --data DIR           DIR/{train,val}.examples (required, except with --resume)\n"
    "  --out DIR            run directory: model.ckpt, log.tsv (default runs/TASK)\n"
    "  --resume             continue the run in --out (or --ckpt PATH) exactly where it stopped\n"
    "  --ckpt PATH          the checkpoint --resume reads (default OUT/model.ckpt)\n"
    "  --init PATH          start a new run from the weights of a classifier's checkpoint (fine-tuning, or a\n"
    "                       curriculum: another length, data or task): the model (its sizes, norms, mixer,\n"
    "                       BatchNorm statistics) is the checkpoint's, the rest the command line's; the data\n"
    "                       must have the checkpoint's vocabulary (image tasks: its channels and a multiple of\n"
    "                       its patch); other classes get a fresh head\n"
    "  --epochs N           epochs in all (with --resume: the new total)\n"
    "  --steps N            optimizer steps in all, instead of the epochs (with --resume: the new total)\n"
    "Model (override the preset):\n"
    "  --arch hgrn2|hgrn1   the token mixer (default hgrn2): hgrn1 is HGRN1's element-wise recurrence (the paper's\n"
    "                       baseline), scanned both ways like HGRN2's, with its gated output norm; expand 1\n"
    "  --mixer-layer fla|lra HGRN2's layer: fla (default), the language model's (flash-linear-attention's: q =\n"
    "                       swish(q), o = S^T q / sqrt(K), RMSNorm, no biases); lra, the layer of the HGRN2\n"
    "                       authors' LRA code (q = sigmoid(q), v = silu(v), o = S^T q, LayerNorm, biases)\n"
    "  --scan-dtype fp32|bf16 what the lra layer's gates and scans compute in: fp32 (default), or bf16 as the\n"
    "                       authors' bf16 runs did (every element-wise result and the states at every step\n"
    "                       rounded to bf16; 1-D tasks, expand ratio dividing 32; slower)\n"
    "  --layers N --dim N --expand-ratio N (key dim per head; heads = dim / expand-ratio)\n"
    "  --glu-ratio N (GLU width N x dim) --norm batch|layer|rms --pos sinusoidal|none\n"
    "  --dropout X          dropout on each mixer and GLU output in training\n"
    "  --input-dropout X    dropout on the embedded input (with its positions) in training (default: 0.1 where\n"
    "                       the preset adds positions, as the reference LRA runs; fashion-mnist 0.1; else 0)\n"
    "  --weight-init torch|normal\n"
    "                       the initial weights: PyTorch's defaults (embedding N(0, 1), linear layers uniform\n"
    "                       within 1/sqrt(fan-in), as the reference LRA code; default for the lra-* tasks) or\n"
    "                       N(0, 0.02) and zero biases (DeiT's; default for fashion-mnist and imagenet)\n"
    "  --patch P            image tasks: a token per P x P patch of pixels (P must divide the images' height and\n"
    "                       width; 1: a token per pixel; default: fashion-mnist 4, imagenet 14, the LRA tasks 1)\n"
    "  --pad-group G        pad each group of G examples of a batch only to its longest document, as a run of\n"
    "                       G examples per process on several GPUs whose loader pads each batch to its longest\n"
    "                       did: the positions past it take no part in the reverse scans or in BatchNorm's\n"
    "                       statistics (text tasks; default: the authors' examples per GPU, lra-listops and\n"
    "                       lra-retrieval 16, lra-text 32; 0: every document padded to --seq-len; kept in the\n"
    "                       checkpoint, so evaluation pads the same way)\n"
    "ImageNet:\n"
    "  --preset NAME        imagenet-tiny (default) or imagenet-small\n"
    "  --image-size N       train and validate on N x N crops instead of 224 x 224 (a multiple of --patch;\n"
    "                       the evaluation resize keeps the ratio 256 / 224)\n"
    "  --loader-threads N   decoding threads (default: the cores)\n"
    "  --randaugment on|off RandAugment after the crop (default on: 2 ops, magnitude 9, std 0.5)\n"
    "  --reprob P           random erasing's probability (default 0.25; 0: off)\n"
    "  --repeated-aug N     each drawn example N times an epoch, differently augmented (default 3; 1: off)\n"
    "Targets:\n"
    "  --smoothing E        label smoothing in [0, 0.99] (default: imagenet 0.1, the other tasks 0); training only\n"
    "  --mixup A            image tasks: mixup with lam ~ Beta(A, A) (default: imagenet 0.8, the others 0: off)\n"
    "  --cutmix A           image tasks: cutmix with lam ~ Beta(A, A) (default: imagenet 1.0, the others 0: off)\n"
    "  --mix-switch P       with both on, the probability of cutmix for a batch (default 0.5)\n"
    "  --mix-prob P         the probability that a batch is mixed at all (default 1); each batch is mixed with\n"
    "                       itself reversed, so mixing needs --batch 2 or more\n"
    "Optimization:\n"
    "  --batch B (examples) --seq-len T (tokens per document; longer documents are cut)\n"
    "  --lr X --min-lr X (default 0) --warmup N --sched-steps N (the cosine's length)\n"
    "  --lr-per-epoch on|off the schedule constant within an epoch, with --warmup and --sched-steps counted\n"
    "                       in epochs of their steps (default: imagenet on, the other tasks off: per step)\n"
    "  --warmup-lr X        with --lr-per-epoch on: the warmup's first rate (default 1e-6)\n"
    "  --wd X --beta1 X --beta2 X --adam-eps X --clip X (0: off)\n"
    "Progress:\n"
    "  --eval-every N       validation loss and accuracy every N steps (default: once an epoch; 0: at the end)\n"
    "  --eval-batches N     batches per validation (default 0: the whole split)\n"
    "  --eval-test on|off   with each validation, also the test split's loss and accuracy (DIR/test.examples),\n"
    "                       in log.tsv's test_loss and test_acc (default off; not for imagenet)\n"
    "  --ckpt-every N       (default: once an epoch; 0: at the end) --log-every N (default 10)\n"
    "  --stop-at N          save and stop after step N, as if interrupted (a later --resume continues);\n"
    "                       Ctrl-C also saves and stops after the step in progress\n"
    "  --keep N             also keep the newest N checkpoints as OUT/model_step<step>.ckpt, and the one of\n"
    "                       the best validation accuracy as OUT/best.ckpt (default 0: model.ckpt alone)\n"
    "  --max-bad-steps N    a step whose loss or gradient is not finite is skipped (no update) and counted;\n"
    "                       the run stops after N more than that in a row (default 10)\n"
    "  --profile            (GPU) time every op of this call's steps 3 to 12 and print where a step's time goes\n"
    "Machine:\n"
    "  --device cpu|cuda --threads N (default: the cores not busy at the start) --seed N (default 1337)\n"
    "  --precision bf16|tf32|fp32   GPU tensor-core precision (default bf16)\n";

// With --resume, the model and the optimization settings come from the checkpoint: flags that would set
// them are refused rather than ignored.
static void refuse_on_resume(const int *set) {
    static const int fixed[] = {O_LAYERS, O_DIM, O_EXPAND, OC_GLU, OC_NORM, OC_POS, OC_DROPOUT, OC_INPUT_DROPOUT, OC_INIT, OC_PATCH, OC_PRESET, OC_LAYER,
                                OC_SCAN_DTYPE, OC_PAD_GROUP, OC_IMAGE_SIZE, OC_RANDAUG, OC_REPROB, OC_REPEAT, OC_SMOOTHING, OC_MIXUP, OC_CUTMIX,
                                OC_MIX_SWITCH, OC_MIX_PROB, OC_LR_PER_EPOCH, OC_WARMUP_LR, O_BATCH, O_SEQ, O_LR,
                                O_MIN_LR, O_WARMUP, OC_SCHED_STEPS, O_WD, O_BETA1, O_BETA2, O_ADAM_EPS, O_CLIP, O_SEED};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (set[fixed[i]])
            usage_error("the model and the optimization settings cannot change on --resume (only --steps, --epochs, "
                        "--data and the progress flags can): the run continues with its saved settings");
}

// With --init, the model comes from the checkpoint: flags that would shape another one are refused (dropout and
// the padding groups are training settings and may change; the optimizer and the data are the command line's).
static void refuse_on_init(const int *set) {
    static const int fixed[] = {O_LAYERS, O_DIM, O_EXPAND, OC_GLU, OC_NORM, OC_POS, OC_INIT, OC_PATCH, OC_PRESET, O_ARCH,
                                OC_LAYER, OC_SCAN_DTYPE};
    static const char *const names[] = {"--layers", "--dim", "--expand-ratio", "--glu-ratio", "--norm", "--pos",
                                        "--weight-init", "--patch", "--preset", "--arch", "--mixer-layer",
                                        "--scan-dtype"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (set[fixed[i]]) usage_error("%s cannot be given with --init: the model comes from the checkpoint", names[i]);
}

// A new run's model: a fresh one, or with --init the checkpoint's (already in m) taking the run's configuration
static void model_for_run(ClsModel *m, const ClsConfig *c, int have_model, uint64_t seed, int init) {
    if (!have_model) {
        cls_alloc(m, c);
        cls_init(m, seed, init);
        return;
    }
    const int had = m->c.classes;
    if (cls_adopt_config(m, c, seed, init))
        printf("a new head for %d classes (the checkpoint's model has %d), initialised as a fresh model's\n",
               c->classes, had);
}

// 1 for on, 0 for off; anything else is a usage error
static int arg_on_off(const char *flag, const char *v) {
    if (strcmp(v, "on") && strcmp(v, "off")) usage_error("%s must be on or off, got '%s'", flag, v);
    return !strcmp(v, "on");
}

// A resume takes the progress flags that its command line leaves out from the run's OUT/progress (train.h).
static void cls_plan_progress(ClsPlan *p, const int *set, const char *out, int resume) {
    int64_t *const v[PF_N] = {&p->eval_every, &p->eval_batches, &p->ckpt_every, &p->log_every, &p->keep,
                              &p->max_bad_steps, &p->eval_test};
    const int given[PF_N] = {set[O_EVAL_EVERY], set[O_EVAL_BATCHES], set[O_CKPT_EVERY], set[O_LOG_EVERY], set[OC_KEEP],
                             set[OC_MAX_BAD], set[OC_EVAL_TEST]};
    progress_flags_sync(out, resume, v, given);
}

// The rest of `train --task imagenet` once the settings are made (or read back): the JPEG loaders, the
// model, the run.
static int train_imagenet(ClsModel *model, ClsRunState *rs, const char *data, const char *out, int resume, int have_model,
                          int init, int threads, ClsPlan *plan, real *moments, const int *set, int argc, char **argv) {
    run_dir_lock(out, argc, argv);
    if (plan->eval_test)   // (before OUT/progress is written)
        die("--eval-test: an imagenet run has no test split (its val split is the one the papers report); start or "
            "resume it with --eval-test off");
    cls_plan_progress(plan, set, out, resume);
    const int side = rs->c.grid_h;
    ImAugment aug = {.randaug = rs->h.randaug, .reprob = rs->h.reprob, .repeat = rs->h.repeat};
    for (int i = 0; i < 3; i++) { aug.mean[i] = rs->c.pix_mean[i]; aug.std[i] = rs->c.pix_std[i]; }
    ClsSource train = {.im = im_loader_open(data, "train", rs->h.B, side, 1, rs->h.seed, threads, &aug)}, val = {0};
    char *val_file = xasprintf("%s/val" JPEGS_SUFFIX, data);
    // validation in batches of at most IMAGENET_EVAL_BATCH: its activations then cost little beside the
    // training batch's (imagenet-small's 2048 would need another 15 GB)
    plan->eval_batch = rs->h.B < IMAGENET_EVAL_BATCH ? rs->h.B : IMAGENET_EVAL_BATCH;
    if (file_exists(val_file)) val.im = im_loader_open(data, "val", plan->eval_batch, side, 0, 0, threads, NULL);
    const JpegSet *ts = im_loader_set(train.im);
    const uint64_t classes_hash = im_classes_hash(ts);
    if (val.im && im_classes_hash(im_loader_set(val.im)) != classes_hash)
        die("%s and %s have different classes: prepare both splits together", jpeg_set_path(ts), val_file);
    if (!resume) {
        rs->c.V = 256;
        rs->c.ndoc = 1;
        rs->c.classes = (int)jpeg_set_classes(ts);
        const char *bad = cls_config_finish(&rs->c);
        if (bad) die("the images of %s do not fit the model: %s", data, bad);
        model_for_run(model, &rs->c, have_model, rs->h.seed, init);
        rs->step = 0;
        rs->train_examples = jpeg_set_count(ts);
        rs->vocab_hash = classes_hash;
        if (!rs->h.steps) rs->h.steps = rs->h.epochs * cls_steps_per_epoch(rs->train_examples, rs->h.B);
        rs->loader = im_loader_get_state(train.im);
    } else {
        if (jpeg_set_count(ts) != rs->train_examples)
            die("%s holds %llu images, but the run trained on %llu: resume on the data it started on", jpeg_set_path(ts),
                (unsigned long long)jpeg_set_count(ts), (unsigned long long)rs->train_examples);
        if (classes_hash != rs->vocab_hash || jpeg_set_classes(ts) != (uint32_t)rs->c.classes)
            die("%s is not the data the run trained on (other classes)", jpeg_set_path(ts));
        im_loader_set_state(train.im, rs->loader);
    }
    cls_to_device(model);
    cls_alloc_training(model);
    if (moments) cls_upload_moments(model, moments);
    const int64_t spe = cls_steps_per_epoch(rs->train_examples, rs->h.B);
    if (plan->eval_every < 0) plan->eval_every = spe;
    if (plan->ckpt_every < 0) plan->ckpt_every = spe;
    plan->out = out;
    plan->resume = resume;
    int rc = cls_train_run(model, rs, &train, val.im ? &val : NULL, NULL, plan);
    if (rc) return rc;
    im_loader_close(train.im);
    im_loader_close(val.im);
    cls_free(model);
    free(val_file);
    return 0;
}

int cmd_cls_train(int argc, char **argv) {
    static const struct option opts[] = {
        COMMON_OPTS,
        {"task", required_argument, 0, O_TASK}, {"data", required_argument, 0, O_DATA},
        {"out", required_argument, 0, O_OUT}, {"resume", no_argument, 0, O_RESUME},
        {"ckpt", required_argument, 0, O_CKPT}, {"steps", required_argument, 0, O_STEPS},
        {"init", required_argument, 0, O_INIT},
        {"epochs", required_argument, 0, OC_EPOCHS}, {"layers", required_argument, 0, O_LAYERS},
        {"dim", required_argument, 0, O_DIM}, {"expand-ratio", required_argument, 0, O_EXPAND},
        {"glu-ratio", required_argument, 0, OC_GLU}, {"norm", required_argument, 0, OC_NORM},
        {"pos", required_argument, 0, OC_POS}, {"dropout", required_argument, 0, OC_DROPOUT},
        {"weight-init", required_argument, 0, OC_INIT}, {"input-dropout", required_argument, 0, OC_INPUT_DROPOUT},
        {"batch", required_argument, 0, O_BATCH}, {"seq-len", required_argument, 0, O_SEQ},
        {"lr", required_argument, 0, O_LR}, {"min-lr", required_argument, 0, O_MIN_LR},
        {"warmup", required_argument, 0, O_WARMUP}, {"sched-steps", required_argument, 0, OC_SCHED_STEPS},
        {"wd", required_argument, 0, O_WD}, {"beta1", required_argument, 0, O_BETA1},
        {"beta2", required_argument, 0, O_BETA2}, {"adam-eps", required_argument, 0, O_ADAM_EPS},
        {"clip", required_argument, 0, O_CLIP}, {"eval-every", required_argument, 0, O_EVAL_EVERY},
        {"eval-batches", required_argument, 0, O_EVAL_BATCHES}, {"eval-test", required_argument, 0, OC_EVAL_TEST},
        {"ckpt-every", required_argument, 0, O_CKPT_EVERY},
        {"log-every", required_argument, 0, O_LOG_EVERY}, {"stop-at", required_argument, 0, O_STOP_AT},
        {"keep", required_argument, 0, OC_KEEP}, {"max-bad-steps", required_argument, 0, OC_MAX_BAD},
        {"patch", required_argument, 0, OC_PATCH}, {"preset", required_argument, 0, OC_PRESET},
        {"image-size", required_argument, 0, OC_IMAGE_SIZE}, {"loader-threads", required_argument, 0, OC_LOADER_THREADS},
        {"randaugment", required_argument, 0, OC_RANDAUG}, {"reprob", required_argument, 0, OC_REPROB},
        {"repeated-aug", required_argument, 0, OC_REPEAT}, {"smoothing", required_argument, 0, OC_SMOOTHING},
        {"mixup", required_argument, 0, OC_MIXUP}, {"cutmix", required_argument, 0, OC_CUTMIX},
        {"mix-switch", required_argument, 0, OC_MIX_SWITCH}, {"mix-prob", required_argument, 0, OC_MIX_PROB},
        {"lr-per-epoch", required_argument, 0, OC_LR_PER_EPOCH}, {"warmup-lr", required_argument, 0, OC_WARMUP_LR},
        {"arch", required_argument, 0, O_ARCH}, {"mixer-layer", required_argument, 0, OC_LAYER},
        {"scan-dtype", required_argument, 0, OC_SCAN_DTYPE}, {"pad-group", required_argument, 0, OC_PAD_GROUP},
        {"profile", no_argument, 0, O_PROFILE}, {0, 0, 0, 0}};
    cli_start("hgrn2 train", TRAIN_USAGE);
    const char *preset = NULL;
    int randaug = 1, repeat = 3;        // the recipe's: RandAugment, erasing 0.25, repeated augmentation x3
    double reprob = 0.25;
    double smoothing = 0, mixup = 0, cutmix = 0, mix_switch = CLS_MIX_SWITCH, mix_prob = CLS_MIX_PROB;
    double warmup_lr = CLS_WARMUP_LR;
    int lr_per_epoch = 0;
    int64_t image_size = IMAGENET_SIDE, loader_threads = 0;
    const char *task = NULL, *data = NULL, *out = NULL, *ckpt = NULL, *init_from = NULL;
    MachineArgs mach = {0};
    int set[OC_LAST] = {0};
    int64_t layers = 0, dim = 0, expand = 0, glu = 0, epochs = 0, steps = 0, warmup = 0, sched_steps = 0;
    int64_t batch = 0, seq = 0, patch = 0, pad_group = 0;
    int norm = 0, pos = 0, init = 0, arch = MIXER_CAUSAL, layer = LAYER_FLA, scan_dtype = SCAN_FP32, c;
    double dropout = 0, input_dropout = 0, lr = 0, min_lr = 0, wd = 0, beta1 = 0.9, beta2 = 0.999, adam_eps = 1e-8, clip = 0;
    uint64_t seed = 1337;
    ClsPlan plan = {.eval_every = -1, .ckpt_every = -1, .log_every = 10, .max_bad_steps = 10};
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        if (c >= 0 && c < OC_LAST) set[c] = 1;
        if (machine_arg(c, &mach)) continue;
        switch (c) {
        case O_HELP: print_help(TRAIN_USAGE, TRAIN_HELP); return 0;
        case O_TASK: task = optarg; break;
        case O_DATA: data = optarg; break;
        case O_OUT: out = optarg; break;
        case O_RESUME: break;
        case O_CKPT: ckpt = optarg; break;
        case O_INIT: init_from = optarg; break;
        case O_STEPS: steps = arg_int_in(&R_STEPS, optarg); break;
        case OC_EPOCHS: epochs = arg_int_in(&R_EPOCHS, optarg); break;
        case O_LAYERS: layers = arg_int_in(&R_LAYERS, optarg); break;
        case O_DIM: dim = arg_int_in(&R_DIM, optarg); break;
        case O_EXPAND: expand = arg_int_in(&R_EXPAND, optarg); break;
        case OC_GLU: glu = arg_int_in(&R_GLU_RATIO, optarg); break;
        case OC_NORM: norm = cli_name_index("--norm", optarg, NORM_NAMES, NNORMS); break;
        case OC_POS: pos = cli_name_index("--pos", optarg, POS_NAMES, NPOS); break;
        case OC_INIT: init = cli_name_index("--weight-init", optarg, CLS_INIT_NAMES, NCLS_INITS); break;
        case OC_DROPOUT: dropout = arg_num_in(&R_DROPOUT, optarg); break;
        case OC_INPUT_DROPOUT: input_dropout = arg_num_in(&R_INPUT_DROPOUT, optarg); break;
        case OC_PATCH: patch = arg_int_in(&R_PATCH, optarg); break;
        case OC_PAD_GROUP: pad_group = arg_int_in(&R_PAD_GROUP, optarg); break;
        case O_ARCH:
            arch = arch_parse(optarg);
            if (arch != MIXER_CAUSAL && arch != MIXER_HGRN1)
                usage_error("--arch must be hgrn2 or hgrn1 for a classifier task, got '%s' (the transformer baseline is "
                            "for the language-model tasks and mqar)", optarg);
            break;
        case OC_LAYER: layer = cli_name_index("--mixer-layer", optarg, LAYER_NAMES, NLAYERS); break;
        case OC_SCAN_DTYPE: scan_dtype = cli_name_index("--scan-dtype", optarg, SCAN_DTYPE_NAMES, NSCAN_DTYPES); break;
        case OC_PRESET:
            if (strcmp(optarg, "imagenet-tiny") && strcmp(optarg, "imagenet-small"))
                usage_error("--preset must be imagenet-tiny or imagenet-small, got '%s'", optarg);
            preset = optarg;
            break;
        case OC_IMAGE_SIZE: image_size = arg_int("--image-size", optarg, IM_SIDE_MIN, 4096); break;
        case OC_LOADER_THREADS: loader_threads = arg_int("--loader-threads", optarg, 1, 256); break;
        case OC_RANDAUG: randaug = arg_on_off("--randaugment", optarg); break;
        case OC_REPROB: reprob = arg_num("--reprob", optarg, 0, 1); break;
        case OC_REPEAT: repeat = (int)arg_int("--repeated-aug", optarg, 1, AUG_REPEAT_MAX); break;
        case OC_SMOOTHING: smoothing = arg_num_in(&R_SMOOTHING, optarg); break;
        case OC_MIXUP: mixup = arg_num_in(&R_MIXUP, optarg); break;
        case OC_CUTMIX: cutmix = arg_num_in(&R_CUTMIX, optarg); break;
        case OC_MIX_SWITCH: mix_switch = arg_num_in(&R_MIX_SWITCH, optarg); break;
        case OC_MIX_PROB: mix_prob = arg_num_in(&R_MIX_PROB, optarg); break;
        case OC_EVAL_TEST: plan.eval_test = arg_on_off("--eval-test", optarg); break;
        case OC_LR_PER_EPOCH: lr_per_epoch = arg_on_off("--lr-per-epoch", optarg); break;
        case OC_WARMUP_LR: warmup_lr = arg_num_in(&R_WARMUP_LR, optarg); break;
        case O_BATCH: batch = arg_int_in(&R_BATCH, optarg); break;
        case O_SEQ: seq = arg_int_in(&R_SEQ_LEN, optarg); break;
        case O_LR: lr = arg_num_in(&R_LR, optarg); break;
        case O_MIN_LR: min_lr = arg_num_in(&R_MIN_LR, optarg); break;
        case O_WARMUP: warmup = arg_int_in(&R_WARMUP, optarg); break;
        case OC_SCHED_STEPS: sched_steps = arg_int_in(&R_SCHED_STEPS, optarg); break;
        case O_WD: wd = arg_num_in(&R_WD, optarg); break;
        case O_BETA1: beta1 = arg_num_in(&R_BETA1, optarg); break;
        case O_BETA2: beta2 = arg_num_in(&R_BETA2, optarg); break;
        case O_ADAM_EPS: adam_eps = arg_num_in(&R_ADAM_EPS, optarg); break;
        case O_CLIP: clip = arg_num_in(&R_CLIP, optarg); break;
        case O_SEED: seed = (uint64_t)arg_int_in(&R_SEED, optarg); break;
        case O_EVAL_EVERY: plan.eval_every = arg_int("--eval-every", optarg, 0, INT64_C(1) << 40); break;
        case O_EVAL_BATCHES: plan.eval_batches = arg_int("--eval-batches", optarg, 0, INT64_C(1) << 40); break;
        case O_CKPT_EVERY: plan.ckpt_every = arg_int("--ckpt-every", optarg, 0, INT64_C(1) << 40); break;
        case O_LOG_EVERY: plan.log_every = arg_int("--log-every", optarg, 1, INT64_C(1) << 40); break;
        case O_STOP_AT: plan.stop_at = arg_int("--stop-at", optarg, 1, INT64_C(1) << 40); break;
        case OC_KEEP: plan.keep = arg_int("--keep", optarg, 0, 1 << 20); break;
        case OC_MAX_BAD: plan.max_bad_steps = arg_int("--max-bad-steps", optarg, 0, INT64_C(1) << 40); break;
        case O_PROFILE: plan.profile = 1; break;
        default: bad_option(argv, c);
        }
    }
    if (optind < argc) usage_error("unexpected argument '%s'", argv[optind]);
    const int resume = set[O_RESUME];
    const ClsPreset *ps = task ? task_or_usage(task) : NULL;
    const int imnet = task && cls_task_imagenet(task);
    if (task && !imnet && (preset || set[OC_IMAGE_SIZE] || set[OC_LOADER_THREADS] || set[OC_RANDAUG] || set[OC_REPROB] ||
                           set[OC_REPEAT]))
        usage_error("--preset, --image-size, --loader-threads, --randaugment, --reprob and --repeated-aug are for --task "
                    "imagenet");
    if (imnet && preset) ps = cls_preset_find(preset);
    if (imnet && seq) usage_error("--seq-len is the images' size for --task imagenet: use --image-size");
    if (!resume && !task)
        usage_error("--task is required (lra-listops, lra-text, lra-retrieval, lra-image, lra-pathfinder, lra-pathx or "
                    "fashion-mnist)");
    if (ps && ps->pixels && seq) usage_error("--seq-len is the images' size for --task %s: it takes no --seq-len", task);
    // mixing needs images (the image tasks' pictures are whole and of a known size)
    if (ps && !ps->pixels && !imnet && (set[OC_MIXUP] || set[OC_CUTMIX] || set[OC_MIX_SWITCH] || set[OC_MIX_PROB]))
        usage_error("--mixup, --cutmix, --mix-switch and --mix-prob mix images: they are for the image tasks (lra-image, "
                    "lra-pathfinder, lra-pathx, fashion-mnist, imagenet); %s reads tokens", task);
    if (ps && !ps->pixels && !imnet && set[OC_PATCH])
        usage_error("--patch is for the image tasks (lra-image, lra-pathfinder, lra-pathx, fashion-mnist): %s reads tokens", task);
    if (ckpt && !resume) usage_error("--ckpt names the checkpoint to --resume from");
    if (resume && init_from) usage_error("--resume and --init exclude each other");
    if (resume) refuse_on_resume(set);
    if (init_from) refuse_on_init(set);
    if (ps && !set[OC_INIT]) init = ps->init;
    if (!resume && !data) usage_error("--task %s needs --data DIR (example files made by 'hgrn2 prepare --task %s')", task, task);
    if (data && strlen(data) >= sizeof ((ClsRunState *)0)->data) usage_error("--data is longer than 1023 bytes");
    machine_start(&mach);
    if (plan.profile && !g_gpu) usage_error("--profile times GPU ops; it needs --device cuda");
    char *out_dflt = task ? xasprintf("runs/%s", task) : xstrdup(DEFAULT_OUT);
    if (!out) out = out_dflt;

    ClsModel model = {0};
    ClsRunState rs;
    memset(&rs, 0, sizeof rs);
    real *moments = NULL;
    uint64_t init_vocab = 0;    // with --init: the vocabulary the checkpoint's model was trained on
    if (resume) {
        char *from = ckpt ? xstrdup(ckpt) : xasprintf("%s/model.ckpt", out);
        cls_checkpoint_load(from, &model, &rs, &moments);
        if (task && strcmp(task, rs.task)) die("%s is a run of %s, not of %s", from, rs.task, task);
        if (set[O_ARCH] && arch != rs.c.mixer)
            usage_error("--arch %s, but %s is a run of %s: a resumed run keeps its architecture", ARCH_NAMES[arch], from,
                        ARCH_NAMES[rs.c.mixer]);
        task = rs.task;
        if (set[OC_EPOCHS]) {
            rs.h.epochs = epochs;
            rs.h.steps = epochs * cls_steps_per_epoch(rs.train_examples, rs.h.B);
        }
        if (set[O_STEPS]) rs.h.steps = steps;
        if (rs.h.steps < rs.step)
            usage_error("%s gives %lld steps in all, below the %lld steps already done", set[O_STEPS] ? "--steps" : "--epochs",
                        (long long)rs.h.steps, (long long)rs.step);
        if (!data) data = rs.data;
        printf("resuming %s at step %lld of %lld\n", from, (long long)rs.step, (long long)rs.h.steps);
        free(from);
    } else if (init_from) {
        // the model and its BatchNorm statistics from the checkpoint, its optimizer state left behind
        ClsRunState from;
        cls_checkpoint_load(init_from, &model, &from, NULL);
        rs.c = from.c;
        if (set[OC_DROPOUT]) rs.c.dropout = dropout;
        if (set[OC_INPUT_DROPOUT]) rs.c.input_dropout = input_dropout;
        if (set[OC_PAD_GROUP]) rs.c.pad_group = (int)pad_group;
        init_vocab = from.vocab_hash;
        const int pixels = imnet || ps->pixels;
        if ((rs.c.input == INPUT_PIXELS) != pixels)
            die("%s holds a model of %s, which reads %s; --task %s reads %s", init_from, from.task,
                rs.c.input == INPUT_PIXELS ? "pixels" : "token ids", task, pixels ? "pixels" : "token ids");
        printf("initialising from the weights of %s (a model of %s after %lld steps)\n", init_from, from.task,
               (long long)from.step);
    }
    if (!resume) {
        if (!init_from) {
            // HGRN1's state is a vector: expand ratio 1, whatever the preset's (the mixer and its layer are checked
            // with the rest of the configuration below)
            if (arch == MIXER_HGRN1 && expand > 1)
                usage_error("--expand-ratio %lld is not possible with --arch hgrn1: HGRN1's state is a vector, one "
                            "value per channel (leave --expand-ratio out)", (long long)expand);
            rs.c = (ClsConfig){.D = (int)(dim ? dim : ps->D), .L = (int)(layers ? layers : ps->L),
                               .K = arch == MIXER_HGRN1 ? 1 : (int)(expand ? expand : ps->K), .mixer = arch, .layer = layer,
                               .scan_dtype = scan_dtype, .norm = set[OC_NORM] ? norm : ps->norm,
                               .pos = set[OC_POS] ? pos : ps->pos, .lower_bound = 1,
                               .dropout = set[OC_DROPOUT] ? dropout : ps->dropout,
                               .input_dropout = set[OC_INPUT_DROPOUT] ? input_dropout : ps->input_dropout, .eps = 1e-5,
                               .pad_group = (int)(set[OC_PAD_GROUP] ? pad_group : ps->pad_group)};
            rs.c.I = (int)((glu ? glu : ps->glu) * rs.c.D);
            // the sizes, checked now with the task's vocabulary and classes, before any data is touched
            ClsConfig probe = rs.c;
            probe.V = LRA_BYTE_VOCAB;
            probe.ndoc = !strcmp(task, "lra-retrieval") ? 2 : 1;
            probe.classes =
                !strcmp(task, "lra-listops") || !strcmp(task, "lra-image") || !strcmp(task, "fashion-mnist") ? 10 : 2;
            const char *bad = cls_config_finish(&probe);
            if (bad) usage_error("%s", bad);
        }
        rs.h = (ClsHyper){.B = (int)(batch ? batch : ps->B), .T = (int)(seq ? seq : ps->T),
                          .epochs = epochs ? epochs : ps->epochs, .warmup = set[O_WARMUP] ? warmup : ps->warmup,
                          .sched_steps = sched_steps ? sched_steps : ps->sched_steps, .lr = lr ? lr : ps->lr,
                          .min_lr = min_lr, .wd = set[O_WD] ? wd : ps->wd, .beta1 = beta1, .beta2 = beta2,
                          .adam_eps = adam_eps, .clip = set[O_CLIP] ? clip : ps->clip, .seed = seed, .repeat = 1};
        snprintf(rs.task, sizeof rs.task, "%s", task);
        snprintf(rs.data, sizeof rs.data, "%s", data);
        // the targets and the schedule's stepping: the recipe's for imagenet, off for the other tasks
        rs.h.smoothing = set[OC_SMOOTHING] ? smoothing : imnet ? IMAGENET_SMOOTHING : 0;
        rs.h.mixup = set[OC_MIXUP] ? mixup : imnet ? IMAGENET_MIXUP : 0;
        rs.h.cutmix = set[OC_CUTMIX] ? cutmix : imnet ? IMAGENET_CUTMIX : 0;
        rs.h.mix_switch = mix_switch;
        rs.h.mix_prob = mix_prob;
        rs.h.lr_per_epoch = set[OC_LR_PER_EPOCH] ? lr_per_epoch : imnet;
        rs.h.warmup_lr = warmup_lr;
        if (set[OC_WARMUP_LR] && !rs.h.lr_per_epoch)
            usage_error("--warmup-lr is the per-epoch schedule's first rate (the per-step warmup rises from 0): give "
                        "--lr-per-epoch on");
        if ((rs.h.mixup > 0 || rs.h.cutmix > 0) && rs.h.B < 2)
            usage_error("mixup and cutmix mix each image with another of its batch: --batch 1 has none (give --batch 2 "
                        "or more, or --mixup 0 --cutmix 0)");
        if (imnet) {
            // 1-D scans over the raster order of the patches of side x side RGB crops, a plain final RMSNorm
            JpegSet *js = jpeg_set_open(data, "train");     // dies naming the missing or damaged file
            const uint64_t n = jpeg_set_count(js);
            jpeg_set_close(js);
            if (!n) die("%s/train" JPEGS_SUFFIX " holds no images", data);
            static const double mean[3] = {0.485, 0.456, 0.406}, sd[3] = {0.229, 0.224, 0.225};
            if (!init_from) {
                rs.c.input = INPUT_PIXELS;
                rs.c.channels = 3;
                for (int i = 0; i < 3; i++) { rs.c.pix_mean[i] = mean[i]; rs.c.pix_std[i] = sd[i]; }
                rs.c.scan = SCAN_1D;
                rs.c.patch = (int)(set[OC_PATCH] ? patch : ps->patch);
                rs.c.fnorm_plain = 1;
            } else if (rs.c.channels != 3 || rs.c.scan != SCAN_1D || rs.c.patch < 2) {
                die("%s holds no ImageNet model (%d channels, %s scans, patch %d): --task imagenet fine-tunes a model "
                    "of patches of RGB images scanned in one dimension", init_from, rs.c.channels,
                    rs.c.scan == SCAN_1D ? "1-D" : "2-D", rs.c.patch);
            }
            rs.c.grid_h = rs.c.grid_w = (int)image_size;
            rs.h.randaug = randaug;
            rs.h.reprob = reprob;
            rs.h.repeat = repeat;
            if (init_from && image_size % rs.c.patch)
                usage_error("the patches of %s (%d x %d) do not divide the %lld x %lld images: pick an --image-size that "
                            "is a multiple of %d", init_from, rs.c.patch, rs.c.patch, (long long)image_size,
                            (long long)image_size, rs.c.patch);
            if (rs.c.patch < 2 || image_size % rs.c.patch)
                usage_error("--patch %d does not divide the %lld x %lld images: pick a patch of 2 or more that divides "
                            "--image-size", rs.c.patch, (long long)image_size, (long long)image_size);
            rs.h.T = (int)(image_size * image_size * 3);
            const int64_t spe = cls_steps_per_epoch(n, rs.h.B);
            if (!lr) rs.h.lr = ps->lr * rs.h.B / IMAGENET_LR_BATCH;
            if (!set[O_MIN_LR]) rs.h.min_lr = rs.h.lr < IMAGENET_MIN_LR ? rs.h.lr : IMAGENET_MIN_LR;  // never above the peak
            if (!set[O_BETA2]) rs.h.beta2 = 0.98;
            if (!set[O_WARMUP]) rs.h.warmup = ps->warmup * spe;
            if (!sched_steps) rs.h.sched_steps = rs.h.epochs * spe;
            rs.h.steps = steps;     // 0: the epochs' (train_imagenet)
            if (rs.h.warmup > R_WARMUP.hi || rs.h.sched_steps > R_SCHED_STEPS.hi) usage_error("the schedule is too long");
            if (rs.h.lr > R_LR.hi) usage_error("lr %g (the preset's x batch / 512) is above %g: give --lr", rs.h.lr, R_LR.hi);
        } else if (ps->pixels) {
            // an image task: pixel input and 2-D scans over the images of the data, whose size is the sequence
            char *train_path = xasprintf("%s/train" EXAMPLES_SUFFIX, data);
            if (!file_exists(train_path))
                die("no training examples in %s (%s is missing): run 'hgrn2 prepare --task %s --input ... --out %s' first",
                    data, train_path, task, data);
            Examples *e = example_open(data, "train");
            int ih, iw, ic;
            if (!cls_data_pixels(e, &ih, &iw, &ic))
                die("%s does not hold images (its vocabulary is '%.60s'): prepare an image set for --task %s",
                    train_path, example_vocab_desc(e), task);
            if ((int64_t)ih * iw * ic > R_SEQ_LEN.hi) die("%s holds images of %d x %d x %d values, more than a document can be", train_path, ih, iw, ic);
            if (!init_from) {
                rs.c.input = INPUT_PIXELS;
                rs.c.channels = ic;
                cls_pixel_norm(&rs.c, ic);
                rs.c.scan = ps->pixels == 2 ? SCAN_SERIES : SCAN_2D;
                rs.c.patch = (int)(set[OC_PATCH] ? patch : ps->patch);
            } else if (rs.c.channels != ic) {
                die("%s holds images of %d channel%s; the model of %s reads %d", train_path, ic, ic == 1 ? "" : "s",
                    init_from, rs.c.channels);
            }
            rs.c.grid_h = ih;
            rs.c.grid_w = iw;
            if (rs.c.patch > 1 && (ih % rs.c.patch || iw % rs.c.patch))
                die("%s %d does not divide the images of %s (%d x %d): %s", init_from ? "the checkpoint's patch" : "--patch",
                    rs.c.patch, train_path, ih, iw, init_from ? "its model needs images whose sides are multiples of it"
                                                                : "pick a patch size that divides both");
            if (rs.c.patch == 1) rs.c.patch = 0;
            rs.h.T = ih * iw * ic;
            example_close(e);
            free(train_path);
        }
    }

    if (imnet || (resume && cls_task_imagenet(rs.task))) {
        int rc = train_imagenet(&model, &rs, data, out, resume, init_from != NULL, init, (int)loader_threads, &plan,
                                moments, set, argc, argv);
        free(out_dflt);
        return rc;
    }
    char *train_file = xasprintf("%s/train" EXAMPLES_SUFFIX, data), *val_file = xasprintf("%s/val" EXAMPLES_SUFFIX, data);
    if (!file_exists(train_file))
        die("no training examples in %s (%s is missing): run 'hgrn2 prepare --task %s --input ... --out %s' first",
            data, train_file, task, data);
    // one trainer per run directory, from here to the exit: a second would interleave its rows with this
    // one's in log.tsv and race it on model.ckpt.tmp
    run_dir_lock(out, argc, argv);
    cls_plan_progress(&plan, set, out, resume);
    ExampleLoader *train = example_loader_open(data, "train", rs.h.B, rs.h.T, 1, rs.h.seed);
    ExampleLoader *val = file_exists(val_file) ? example_loader_open(data, "val", rs.h.B, rs.h.T, 0, 0) : NULL;
    ExampleLoader *test = NULL;
    if (plan.eval_test) {
        char *test_file = xasprintf("%s/test" EXAMPLES_SUFFIX, data);
        if (!file_exists(test_file))
            die("--eval-test on, but %s is missing: prepare the test split too, or start or resume the run with "
                "--eval-test off", test_file);
        test = example_loader_open(data, "test", rs.h.B, rs.h.T, 0, 0);
        free(test_file);
    }
    const Examples *te = example_loader_data(train);
    cls_check_task_data(task, te);
    uint64_t vocab = cls_vocab_hash(te);
    if (val && cls_vocab_hash(example_loader_data(val)) != vocab)
        die("%s and %s describe different vocabularies: prepare both splits together", train_file, val_file);
    if (test && cls_vocab_hash(example_loader_data(test)) != vocab)
        die("%s and %s/test%s describe different vocabularies: prepare the splits together", train_file, data,
            EXAMPLES_SUFFIX);
    if (!resume) {
        if (init_from) {
            if (rs.c.input == INPUT_IDS && vocab != init_vocab)
                die("%s does not have the vocabulary of the data %s was trained on: a model reads the ids of its own "
                    "vocabulary", train_file, init_from);
            if (example_vocab(te) != (uint32_t)rs.c.V || example_ndoc(te) != rs.c.ndoc)
                die("%s does not fit the model of %s: %u symbols and %d document%s an example, where the model has "
                    "%d and %d", train_file, init_from, (unsigned)example_vocab(te), example_ndoc(te),
                    example_ndoc(te) == 1 ? "" : "s", rs.c.V, rs.c.ndoc);
        }
        rs.c.V = (int)example_vocab(te);
        rs.c.classes = (int)example_classes(te);
        rs.c.ndoc = example_ndoc(te);
        const char *bad = cls_config_finish(&rs.c);
        if (bad) die("the examples of %s do not fit the model: %s", data, bad);
        model_for_run(&model, &rs.c, init_from != NULL, rs.h.seed, init);
        rs.step = 0;
        rs.train_examples = example_count(te);
        rs.vocab_hash = vocab;
        rs.h.steps = steps ? steps : rs.h.epochs * cls_steps_per_epoch(rs.train_examples, rs.h.B);
        rs.loader = example_loader_get_state(train);
    } else {
        if (example_count(te) != rs.train_examples)
            die("%s holds %llu examples, but the run trained on %llu: resume on the data it started on", train_file,
                (unsigned long long)example_count(te), (unsigned long long)rs.train_examples);
        if (vocab != rs.vocab_hash || example_classes(te) != (uint32_t)rs.c.classes || example_ndoc(te) != rs.c.ndoc)
            die("%s is not the data the run trained on (another vocabulary, classes or documents per example)", train_file);
        example_loader_set_state(train, rs.loader);
    }
    cls_to_device(&model);
    cls_alloc_training(&model);
    if (moments) cls_upload_moments(&model, moments);

    const int64_t spe = cls_steps_per_epoch(rs.train_examples, rs.h.B);
    if (plan.eval_every < 0) plan.eval_every = spe;
    if (plan.ckpt_every < 0) plan.ckpt_every = spe;
    plan.out = out;
    plan.resume = resume;
    ClsSource tsrc = {.ex = train}, vsrc = {.ex = val}, xsrc = {.ex = test};
    int rc = cls_train_run(&model, &rs, &tsrc, val ? &vsrc : NULL, test ? &xsrc : NULL, &plan);
    if (rc) return rc;      // stopped by a signal, after saving: the process ends here
    if (val) example_loader_close(val);
    if (test) example_loader_close(test);
    example_loader_close(train);
    cls_free(&model);
    free(train_file);
    free(val_file);
    free(out_dflt);
    return 0;
}

// ----------------------------------------------------------------------------------------------------------
// hgrn2 eval --task lra-*, and the table of --task lra

static const char *EVAL_USAGE =
    "hgrn2 eval --task lra-listops|lra-text|lra-retrieval|lra-image|lra-pathfinder|lra-pathx|fashion-mnist|imagenet [--ckpt PATH] "
    "[--data DIR] [--split test|val|train] "
    "[--batch N] [--predictions FILE] [--per-class] | --task lra [--runs DIR] [--data-root DIR]";
static const char *EVAL_HELP =
    "Score a classifier trained on a Long Range Arena task or Fashion-MNIST: the mean cross-entropy and the\n"
    "accuracy, the fraction of examples whose most likely class is the label. The last line printed is\n"
    "'accuracy X'.\n"
    "A checkpoint of a classifier is recognised without --task too.\n"
    "\n"
    "  --task NAME          an LRA task (lra-listops ... lra-pathx) or fashion-mnist: the checkpoint must be of\n"
    "                       that task\n"
    "  --ckpt PATH          the model (default runs/TASK/model.ckpt)\n"
    "  --data DIR           example files (default: the data the model was trained on)\n"
    "  --split NAME         test (default; imagenet: val), val or train\n"
    "  --batch B --seq-len T  (default: the training run's)\n"
    "  --max-batches N      stop after N batches (default 0: the whole split)\n"
    "  --predictions FILE   also write a line per example, in the split's order: index, label, predicted class,\n"
    "                       its probability and the example's loss (tab-separated, with a header)\n"
    "  --per-class          also print each class's accuracy and how often it is predicted, and for up to 16\n"
    "                       classes the confusion matrix\n"
    "imagenet: the JPEG example files of 'hgrn2 prepare --task imagenet', evaluated at the model's image size\n"
    "(resize to 256 / 224 of it, center crop); prints 'top5 Y' (the label among the 5 most likely classes),\n"
    "then 'accuracy X' (top-1). --loader-threads N: decoding threads (default: the cores).\n"
    "The whole benchmark:\n"
    "  --task lra           every DIR/lra-*/model.ckpt of the six tasks (lra-listops, lra-text, lra-retrieval,\n"
    "                       lra-image, lra-pathfinder, lra-pathx) on its test split, in a table beside the\n"
    "                       HGRN2 paper's accuracies of HGRN2 and HGRN1 (the arch column: each run's own);\n"
    "                       tasks without a checkpoint are shown as missing, and the\n"
    "                       average is over the tasks present\n"
    "  --runs DIR           the folder of the runs (default runs): a task's runs are DIR/TASK and\n"
    "                       DIR/TASK-* (lra-listops-seed2); several give their mean, count and range,\n"
    "                       a row per architecture\n"
    "  --data-root R        the data of task T is R/T, a folder named as the task (R/lra-listops ...;\n"
    "                       default: each checkpoint's own data)\n"
    "  --seq-len T          the token tasks' documents cut to T; the image tasks keep their images\n"
    "  --threads N --device cpu|cuda --precision bf16|tf32|fp32 (GPU; default bf16)\n";

// The six tasks of the benchmark and the HGRN2 paper's test accuracy on each (%), of HGRN2 and of HGRN1.
static const struct { const char *task, *name; double paper, paper1; } LRA_TABLE[6] = {
    {"lra-listops", "ListOps", 60.52, 59.95}, {"lra-text", "Text", 88.97, 88.14},
    {"lra-retrieval", "Retrieval", 95.07, 94.23}, {"lra-image", "Image", 89.33, 88.69},
    {"lra-pathfinder", "Pathfinder", 93.95, 92.92}, {"lra-pathx", "Path-X", 98.12, 97.50}};
#define LRA_PAPER_AVERAGE 87.66
#define LRA_PAPER1_AVERAGE 86.91

typedef struct {
    int64_t B, T, max_batches;      // 0: the run's
    const char *split;              // NULL: test (val for imagenet)
    int threads;                    // imagenet: decoding threads (0: the cores)
    double *top5;                   // imagenet: receives the top-5 accuracy (when not NULL)
    int *mixer;                     // receives the model's MixerKind (when not NULL)
    int t_tokens_only;              // the table: T cuts the token tasks' documents and leaves images as they are
    const char *predictions;        // a file for a line per example (NULL: none)
    int per_class;                  // print each class's accuracy (and the confusion matrix of up to 16 classes)
} EvalShape;

// --predictions and --per-class: what cls_evaluate collects for them (NULL when neither is asked for)
typedef struct {
    ClsEvalOut out;
    char *tmp;      // the predictions' file under a temporary name until the split is done
} EvalExtras;
static ClsEvalOut *extras_open(EvalExtras *x, const EvalShape *e, int classes) {
    memset(x, 0, sizeof *x);
    if (!e->predictions && !e->per_class) return NULL;
    if (e->predictions) {
        x->tmp = xasprintf("%s.tmp", e->predictions);
        x->out.tsv = fopen(x->tmp, "w");
        if (!x->out.tsv) die("cannot write the predictions to %s: %s", x->tmp, strerror(errno));
        fprintf(x->out.tsv, "index\tlabel\tpredicted\tprob\tloss\n");
    }
    if (e->per_class) x->out.confusion = xcalloc((size_t)classes * (size_t)classes, sizeof(int64_t));
    return &x->out;
}
// After the split: the predictions' file under its name; each class's accuracy (recall), how often it is
// predicted, and for up to 16 classes the confusion matrix.
static void extras_close(EvalExtras *x, const EvalShape *e, int classes) {
    if (x->out.tsv) {
        if (fflush(x->out.tsv) != 0 || ferror(x->out.tsv) | fclose(x->out.tsv))
            die("cannot write the predictions to %s: %s", x->tmp, strerror(errno));
        if (rename(x->tmp, e->predictions) != 0)
            die("cannot rename %s to %s: %s", x->tmp, e->predictions, strerror(errno));
        printf("predictions: %s (index, label, predicted, prob, loss)\n", e->predictions);
    }
    const int64_t *cm = x->out.confusion;
    if (cm) {
        printf("class  examples     right  accuracy  predicted\n");
        for (int i = 0; i < classes; i++) {
            int64_t n = 0, as = 0;
            for (int j = 0; j < classes; j++) { n += cm[(int64_t)i * classes + j]; as += cm[(int64_t)j * classes + i]; }
            const int64_t right = cm[(int64_t)i * classes + i];
            if (n) printf("%5d  %8lld  %8lld    %.4f  %9lld\n", i, (long long)n, (long long)right, (double)right / (double)n, (long long)as);
            else printf("%5d  %8d  %8d         -  %9lld\n", i, 0, 0, (long long)as);
        }
        if (classes <= 16) {
            printf("confusion (rows: label, columns: predicted)\n      ");
            for (int j = 0; j < classes; j++) printf(" %6d", j);
            printf("\n");
            for (int i = 0; i < classes; i++) {
                printf("%5d ", i);
                for (int j = 0; j < classes; j++) printf(" %6lld", (long long)cm[(int64_t)i * classes + j]);
                printf("\n");
            }
        }
    }
    free(x->out.confusion);
    free(x->tmp);
}

// Scores the classifier in ckpt on a split of data (NULL: its own); prints a line of counts. Returns the
// accuracy; want_task (NULL: any) must be the checkpoint's task.
// eval of an ImageNet model: the top-5 and top-1 accuracy on a split of JPEG example files; returns the
// top-1 accuracy, the top-5 one in *top5.
static double eval_imagenet(ClsModel *m, const ClsRunState *rs, const char *ckpt, const char *data, const EvalShape *e,
                            double *top5) {
    if (e->T) die("%s is an image model: its documents are its images, so --seq-len does not apply", ckpt);
    const int B = (int)(e->B ? e->B : rs->h.B), T = rs->h.T;
    ClsSource src = {.im = im_loader_open(data, e->split, B, m->c.grid_h, 0, 0, e->threads, NULL)};
    const JpegSet *js = im_loader_set(src.im);
    if (im_classes_hash(js) != rs->vocab_hash || jpeg_set_classes(js) != (uint32_t)m->c.classes)
        die("%s does not hold the classes %s was trained on", jpeg_set_path(js), ckpt);
    cls_to_device(m);
    ClsActs *a = cls_acts_alloc(&m->c, B, cls_positions(&m->c, T), 0);
    double t0 = now_s();
    EvalExtras x;
    ClsScore sc = cls_evaluate(m, a, &src, B, T, e->max_batches, extras_open(&x, e, m->c.classes));
    if (!sc.count) die("%s holds no images to evaluate", jpeg_set_path(js));
    printf("%s: %s split of %s, %lld images (%d x %d, %d tokens of %d x %d patches): %lld right, %lld in the top 5, "
           "loss %.6f, %.1f s\n", rs->task, e->split, data, (long long)sc.count, m->c.grid_h, m->c.grid_w,
           cls_positions(&m->c, T), m->c.patch, m->c.patch, (long long)sc.correct, (long long)sc.correct5, sc.loss,
           now_s() - t0);
    extras_close(&x, e, m->c.classes);
    fflush(stdout);
    *top5 = (double)sc.correct5 / (double)sc.count;
    cls_acts_free(a);
    im_loader_close(src.im);
    return (double)sc.correct / (double)sc.count;
}

static double eval_ckpt(const char *ckpt, const char *want_task, const char *data, const EvalShape *e) {
    ClsModel m = {0};
    ClsRunState rs;
    cls_checkpoint_load(ckpt, &m, &rs, NULL);
    if (want_task && strcmp(want_task, rs.task))
        die("%s is a model of %s, not of %s: give --task %s, or the checkpoint of a run of %s", ckpt, rs.task, want_task,
            rs.task, want_task);
    if (!data) data = rs.data;
    if (e->mixer) *e->mixer = m.c.mixer;
    EvalShape es = *e;      // ImageNet's labelled held-out split is val
    if (!es.split) es.split = cls_task_imagenet(rs.task) ? "val" : "test";
    e = &es;
    if (cls_task_imagenet(rs.task)) {
        double top5, acc = eval_imagenet(&m, &rs, ckpt, data, e, &top5);
        cls_free(&m);
        if (e->top5) *e->top5 = top5;
        return acc;
    }
    if (e->threads) die("--loader-threads is for models of --task imagenet");
    char *file = xasprintf("%s/%s" EXAMPLES_SUFFIX, data, e->split);
    if (!file_exists(file)) die("no %s examples in %s (%s is missing; pass --data DIR)", e->split, data, file);
    if (e->T && m.c.input == INPUT_PIXELS) {
        if (!e->t_tokens_only) die("%s is an image model: its documents are its images, so --seq-len does not apply", ckpt);
        es.T = 0;
    }
    int B = (int)(e->B ? e->B : rs.h.B), T = (int)(e->T ? e->T : rs.h.T);
    cls_to_device(&m);
    ExampleLoader *ld = example_loader_open(data, e->split, B, T, 0, 0);
    const Examples *ex = example_loader_data(ld);
    if (cls_vocab_hash(ex) != rs.vocab_hash || example_classes(ex) != (uint32_t)rs.c.classes || example_ndoc(ex) != rs.c.ndoc)
        die("%s does not hold the kind of examples %s was trained on (another vocabulary, classes or documents per "
            "example)", file, ckpt);
    ClsActs *a = cls_acts_alloc(&m.c, B, cls_positions(&m.c, T), 0);
    double t0 = now_s();
    ClsSource src = {.ex = ld};
    EvalExtras x;
    ClsScore sc = cls_evaluate(&m, a, &src, B, T, e->max_batches, extras_open(&x, e, m.c.classes));
    if (!sc.count) die("%s holds no examples to evaluate", file);
    double acc = (double)sc.correct / (double)sc.count;
    char shape[96];
    if (m.c.patch > 1)
        snprintf(shape, sizeof shape, "%d tokens of %d x %d patches", cls_positions(&m.c, T), m.c.patch, m.c.patch);
    else snprintf(shape, sizeof shape, "%s%d tokens", m.c.ndoc == 2 ? "2 documents of up to " : "up to ", T);
    printf("%s: %s split of %s, %lld examples (%s): %lld right, loss %.6f, %.1f s\n", rs.task, e->split, data,
           (long long)sc.count, shape, (long long)sc.correct, sc.loss, now_s() - t0);
    extras_close(&x, e, m.c.classes);
    fflush(stdout);
    cls_acts_free(a);
    example_loader_close(ld);
    cls_free(&m);
    free(file);
    return acc;
}

// eval --task lra: the table.

// 1 when a folder of the runs holds a run of task: named the task, or the task, '-' and anything (a seed's or
// a variant's run beside the first: lra-listops-seed2).
static int run_of_task(const char *name, const char *task) {
    size_t n = strlen(task);
    return strncmp(name, task, n) == 0 && (name[n] == 0 || (name[n] == '-' && name[n + 1]));
}

// dir_names' filter: a folder of the runs that holds a model.ckpt
static int has_ckpt(const char *dir, const char *name, void *arg) {
    char *ckpt = xasprintf("%s/%s/model.ckpt", dir, name);
    int keep = file_exists(ckpt);
    free(ckpt);
    return keep;
}

// Every run of each task in the folder (DIR/<task> and DIR/<task>-*), scored on its test split; a row per
// task and architecture: the mean of its runs, and with several runs their count and range.
static int eval_table(const char *runs, const char *data_root, const EvalShape *e) {
    struct stat st;
    if (stat(runs, &st) != 0 || !S_ISDIR(st.st_mode)) die("no folder of runs %s (pass --runs DIR)", runs);
    enum { NARCH = 2 };   // the classifier's token mixers: HGRN2's and HGRN1's
    struct { double sum, lo, hi; int n; } row[6][NARCH] = {{{0}}};
    size_t nruns;
    char **names = dir_names(runs, has_ckpt, NULL, &nruns);
    EvalShape es = *e;
    es.t_tokens_only = 1;
    for (int i = 0; i < 6; i++)
        for (size_t r = 0; r < nruns; r++) {
            if (!run_of_task(names[r], LRA_TABLE[i].task)) continue;
            char *ckpt = xasprintf("%s/%s/model.ckpt", runs, names[r]);
            char *data = data_root ? xasprintf("%s/%s", data_root, LRA_TABLE[i].task) : NULL;
            int arch = 0;
            es.mixer = &arch;
            double acc = 100 * eval_ckpt(ckpt, LRA_TABLE[i].task, data, &es);
            if (arch < 0 || arch >= NARCH) die("%s: a classifier of an unknown token mixer (%d)", ckpt, arch);
            if (!row[i][arch].n || acc < row[i][arch].lo) row[i][arch].lo = acc;
            if (!row[i][arch].n || acc > row[i][arch].hi) row[i][arch].hi = acc;
            row[i][arch].sum += acc;
            row[i][arch].n++;
            free(data);
            free(ckpt);
        }
    free_names(names, nruns);
    // one average over every task present, unless a task has runs of both mixers: then one per mixer
    int split = 0;
    for (int i = 0; i < 6; i++) split |= row[i][0].n && row[i][1].n;
    printf("\nLong Range Arena, test accuracy (%%): the runs in %s (arch: each run's) beside the HGRN2 paper's\n"
           "numbers for HGRN2 and HGRN1\n", runs);
    printf("%-12s %8s %6s %8s %8s\n", "task", "ours", "arch", "HGRN2", "HGRN1");
    double sum[NARCH] = {0}, paper_sum[NARCH] = {0}, paper1_sum[NARCH] = {0};
    int tasks[NARCH] = {0};
    for (int i = 0; i < 6; i++) {
        if (!row[i][0].n && !row[i][1].n)
            printf("%-12s %8s %6s %8.2f %8.2f\n", LRA_TABLE[i].name, "missing", "-", LRA_TABLE[i].paper, LRA_TABLE[i].paper1);
        for (int a = 0; a < NARCH; a++) {
            if (!row[i][a].n) continue;
            double mean = row[i][a].sum / row[i][a].n;
            printf("%-12s %8.2f %6s %8.2f %8.2f", LRA_TABLE[i].name, mean, ARCH_NAMES[a], LRA_TABLE[i].paper, LRA_TABLE[i].paper1);
            if (row[i][a].n > 1) printf("   mean of %d runs: %.2f to %.2f", row[i][a].n, row[i][a].lo, row[i][a].hi);
            printf("\n");
            sum[a] += mean;
            paper_sum[a] += LRA_TABLE[i].paper;
            paper1_sum[a] += LRA_TABLE[i].paper1;
            tasks[a]++;
        }
    }
    if (!split) {   // no task has rows of both: one average over every task's one row
        sum[0] += sum[1];
        paper_sum[0] += paper_sum[1];
        paper1_sum[0] += paper1_sum[1];
        tasks[0] += tasks[1];
    }
    for (int a = 0; a < (split ? NARCH : 1); a++) {
        int n = tasks[a];
        const char *arch = split ? ARCH_NAMES[a] : "";
        if (n == 6) printf("%-12s %8.2f %6s %8.2f %8.2f\n", "average", sum[a] / n, arch, LRA_PAPER_AVERAGE, LRA_PAPER1_AVERAGE);
        else if (n) printf("%-12s %8.2f %6s %8.2f %8.2f   partial: over the %d of 6 tasks present (the paper's over all six: "
                           "%.2f and %.2f)\n", "average", sum[a] / n, arch, paper_sum[a] / n, paper1_sum[a] / n, n,
                           LRA_PAPER_AVERAGE, LRA_PAPER1_AVERAGE);
        else printf("%-12s %8s %6s %8.2f %8.2f   no task has a checkpoint in %s\n", "average", "-", "", LRA_PAPER_AVERAGE,
                    LRA_PAPER1_AVERAGE, runs);
    }
    return 0;
}

int cmd_cls_eval(int argc, char **argv) {
    static const struct option opts[] = {
        COMMON_OPTS, {"task", required_argument, 0, O_TASK}, {"ckpt", required_argument, 0, O_CKPT},
        {"data", required_argument, 0, O_DATA}, {"split", required_argument, 0, O_SPLIT},
        {"batch", required_argument, 0, O_BATCH}, {"seq-len", required_argument, 0, O_SEQ},
        {"max-batches", required_argument, 0, O_MAX_BATCHES}, {"runs", required_argument, 0, OC_RUNS},
        {"data-root", required_argument, 0, OC_DATA_ROOT},
        {"loader-threads", required_argument, 0, OC_LOADER_THREADS},
        {"predictions", required_argument, 0, OC_PREDICTIONS}, {"per-class", no_argument, 0, OC_PER_CLASS}, {0, 0, 0, 0}};
    cli_start("hgrn2 eval", EVAL_USAGE);
    const char *task = NULL, *ckpt = NULL, *data = NULL, *runs = NULL, *data_root = NULL;
    MachineArgs mach = {0};
    EvalShape e = {0};
    double top5 = -1;
    e.top5 = &top5;
    int c;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        if (machine_arg(c, &mach)) continue;
        switch (c) {
        case O_HELP: print_help(EVAL_USAGE, EVAL_HELP); return 0;
        case O_TASK: task = optarg; break;
        case O_CKPT: ckpt = optarg; break;
        case O_DATA: data = optarg; break;
        case O_SPLIT:
            if (strcmp(optarg, "test") && strcmp(optarg, "val") && strcmp(optarg, "train"))
                usage_error("--split must be test, val or train, got '%s'", optarg);
            e.split = optarg;
            break;
        case O_BATCH: e.B = arg_int_in(&R_BATCH, optarg); break;
        case O_SEQ: e.T = arg_int_in(&R_SEQ_LEN, optarg); break;
        case O_MAX_BATCHES: e.max_batches = arg_int("--max-batches", optarg, 0, INT64_C(1) << 40); break;
        case OC_RUNS: runs = optarg; break;
        case OC_DATA_ROOT: data_root = optarg; break;
        case OC_LOADER_THREADS: e.threads = (int)arg_int("--loader-threads", optarg, 1, 256); break;
        case OC_PREDICTIONS: e.predictions = optarg; break;
        case OC_PER_CLASS: e.per_class = 1; break;
        case O_SEED: break;
        default: bad_option(argv, c);
        }
    }
    if (optind < argc) usage_error("unexpected argument '%s'", argv[optind]);
    int table = task && !strcmp(task, "lra");
    if (task && !table) task_or_usage(task);
    if (table && (ckpt || data || e.split))
        usage_error("--task lra scores the test split of every run in --runs: it takes no --ckpt, --data or --split");
    if (!table && (runs || data_root)) usage_error("--runs and --data-root are for --task lra");
    if (table && (e.predictions || e.per_class))
        usage_error("--predictions and --per-class are for one model (--ckpt), not the table of --task lra");
    machine_start(&mach);
    if (table) {
        e.split = "test";
        e.top5 = NULL;
        return eval_table(runs ? runs : "runs", data_root, &e);
    }
    char *dflt = task ? xasprintf("runs/%s/model.ckpt", task) : xstrdup(DEFAULT_OUT "/model.ckpt");
    double acc = eval_ckpt(ckpt ? ckpt : dflt, task, data, &e);
    if (top5 >= 0) printf("top5 %.4f\n", top5);
    printf("accuracy %.4f\n", acc);
    free(dflt);
    return 0;
}

// ----------------------------------------------------------------------------------------------------------
// hgrn2 bench --task imagenet

static const char *BENCH_USAGE =
    "hgrn2 bench --task imagenet --data DIR [--preset imagenet-tiny|imagenet-small] [--batch B] [--steps N] [options]";
static const char *BENCH_HELP =
    "Which limits an ImageNet run: the JPEG loader alone (decoding and the training transform of DIR/train.jpegs\n"
    "on --loader-threads threads, images/s over N batches after the first), then the training steps alone\n"
    "(forward, backward, AdamW of the preset's model on one batch again and again, images/s). A run goes at\n"
    "about the lower of the two.\n"
    "\n"
    "  --preset NAME        imagenet-tiny (default) or imagenet-small; --layers N --dim N --expand-ratio N\n"
    "  --batch B            (default: the preset's) --image-size N (default 224) --patch P (default 14)\n"
    "  --steps N            timed batches of each after the first (default 5)\n"
    "  --loader-threads N   decoding threads (default: the cores)\n"
    "  --threads N --device cpu|cuda --precision bf16|tf32|fp32 --seed N\n";

int cmd_cls_bench(int argc, char **argv) {
    static const struct option opts[] = {
        COMMON_OPTS, {"task", required_argument, 0, O_TASK}, {"data", required_argument, 0, O_DATA},
        {"preset", required_argument, 0, OC_PRESET}, {"batch", required_argument, 0, O_BATCH},
        {"steps", required_argument, 0, O_STEPS}, {"image-size", required_argument, 0, OC_IMAGE_SIZE},
        {"patch", required_argument, 0, OC_PATCH}, {"loader-threads", required_argument, 0, OC_LOADER_THREADS},
        {"layers", required_argument, 0, O_LAYERS}, {"dim", required_argument, 0, O_DIM},
        {"expand-ratio", required_argument, 0, O_EXPAND}, {0, 0, 0, 0}};
    cli_start("hgrn2 bench", BENCH_USAGE);
    const char *data = NULL, *preset = "imagenet-tiny";
    MachineArgs mach = {0};
    int64_t batch = 0, steps = 5, side = IMAGENET_SIDE, patch = 0, threads = 0, layers = 0, dim = 0, expand = 0;
    uint64_t seed = 1337;
    int c;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        if (machine_arg(c, &mach)) continue;
        switch (c) {
        case O_HELP: print_help(BENCH_USAGE, BENCH_HELP); return 0;
        case O_TASK: break;     // imagenet: hgrn2.c sends only that here
        case O_DATA: data = optarg; break;
        case OC_PRESET:
            if (strcmp(optarg, "imagenet-tiny") && strcmp(optarg, "imagenet-small"))
                usage_error("--preset must be imagenet-tiny or imagenet-small, got '%s'", optarg);
            preset = optarg;
            break;
        case O_BATCH: batch = arg_int_in(&R_BATCH, optarg); break;
        case O_STEPS: steps = arg_int("--steps", optarg, 1, 1 << 20); break;
        case OC_IMAGE_SIZE: side = arg_int("--image-size", optarg, IM_SIDE_MIN, 4096); break;
        case OC_PATCH: patch = arg_int_in(&R_PATCH, optarg); break;
        case OC_LOADER_THREADS: threads = arg_int("--loader-threads", optarg, 1, 256); break;
        case O_LAYERS: layers = arg_int_in(&R_LAYERS, optarg); break;
        case O_DIM: dim = arg_int_in(&R_DIM, optarg); break;
        case O_EXPAND: expand = arg_int_in(&R_EXPAND, optarg); break;
        case O_SEED: seed = (uint64_t)arg_int_in(&R_SEED, optarg); break;
        default: bad_option(argv, c);
        }
    }
    if (optind < argc) usage_error("unexpected argument '%s'", argv[optind]);
    if (!data) usage_error("--task imagenet needs --data DIR (JPEG example files made by 'hgrn2 prepare --task imagenet')");
    const ClsPreset *ps = cls_preset_find(preset);
    if (!patch) patch = ps->patch;
    if (patch < 2 || side % patch)
        usage_error("--patch %lld does not divide the %lld x %lld images: pick a patch of 2 or more that divides --image-size",
                    (long long)patch, (long long)side, (long long)side);
    machine_start(&mach);
    const int B = (int)(batch ? batch : ps->B), T = (int)(side * side * 3);
    // the recipe's augmentations, as training draws them by default
    const ImAugment aug = {.randaug = 1, .reprob = 0.25, .repeat = 3, .mean = {0.485, 0.456, 0.406}, .std = {0.229, 0.224, 0.225}};
    ImLoader *ld = im_loader_open(data, "train", B, (int)side, 1, seed, (int)threads, &aug);
    const JpegSet *js = im_loader_set(ld);
    uint8_t *pix = xmalloc((size_t)B * T);   // the last batch, kept for the steps after the loader closes
    const uint8_t *last;
    int32_t *lens = xmalloc((size_t)B * sizeof(int32_t)), *labels = xmalloc((size_t)B * sizeof(int32_t));
    for (int i = 0; i < B; i++) lens[i] = T;
    // the model's settings, checked before anything is timed
    const int classes = jpeg_set_classes(js) < 2 ? 2 : (int)jpeg_set_classes(js);
    ClsConfig cfg = {.D = (int)(dim ? dim : ps->D), .L = (int)(layers ? layers : ps->L), .K = (int)(expand ? expand : ps->K),
                     .I = 0, .classes = classes, .ndoc = 1,
                     .norm = ps->norm, .pos = ps->pos, .lower_bound = 1, .eps = 1e-5, .V = 256, .input = INPUT_PIXELS,
                     .channels = 3, .pix_mean = {0.485, 0.456, 0.406}, .pix_std = {0.229, 0.224, 0.225},
                     .scan = SCAN_1D, .grid_h = (int)side, .grid_w = (int)side, .patch = (int)patch, .fnorm_plain = 1};
    cfg.I = ps->glu * cfg.D;
    const char *bad = cls_config_finish(&cfg);
    if (bad) usage_error("%s", bad);
    printf("bench --task imagenet: %s (%llu images, %u classes), batch %d of %lld x %lld, %d loader threads\n",
           jpeg_set_path(js), (unsigned long long)jpeg_set_count(js), jpeg_set_classes(js), B, (long long)side,
           (long long)side, im_loader_threads(ld));
    fflush(stdout);
    // the loader alone: the first batch (the ring filling) apart, then `steps` batches
    double t0 = now_s();
    im_loader_next(ld, &last, labels);
    double t1 = now_s();
    for (int64_t i = 0; i < steps; i++) im_loader_next(ld, &last, labels);
    const double load_ips = (double)steps * B / (now_s() - t1);
    printf("loader: first batch %.2f s, then %.1f images/s\n", t1 - t0, load_ips);
    fflush(stdout);
    memcpy(pix, last, (size_t)B * T);
    im_loader_close(ld);
    for (int i = 0; i < B; i++) if (labels[i] >= cfg.classes) labels[i] = 0;
    // the steps alone, on the last batch again and again
    ClsModel m;
    cls_alloc(&m, &cfg);
    cls_init(&m, seed, CLS_INIT_NORMAL);
    cls_to_device(&m);
    cls_alloc_training(&m);
    ClsActs *a = cls_acts_alloc(&cfg, B, cls_positions(&cfg, T), 1);
    double ts = 0, first = 0;
    for (int64_t i = 0; i <= steps; i++) {
        double s0 = now_s();
        OP(zero, m.grads, m.lay.n);
        cls_forward8(&m, a, pix, lens, labels, B, 1, cls_drop_seed(seed, i + 1), NULL, NULL);
        cls_backward(&m, a, 1.0 / B);
        double gn = cls_grad_norm(&m);      // downloads: the step has finished on a GPU too
        cls_adamw(&m, 1e-4, 0.9, 0.98, 1e-8, 0.05, gn > 5 ? 5 / gn : 1, i + 1);
        if (i == 0) first = now_s() - s0;
        else ts += now_s() - s0;
    }
    const double step_ips = (double)steps * B / ts;
    printf("training steps: %.2fM parameters, first step %.2f s, then %.1f images/s", (double)m.lay.n / 1e6, first, step_ips);
    const char *peak_label;
    const double peak = dev_peak_flops(&peak_label);
    const double flops = 3 * cls_flops_per_example(&cfg, cls_positions(&cfg, T)) * step_ips;   // forward and backward
    printf(" | %.1f TFLOP/s", flops / 1e12);
    if (peak > 0) printf(", MFU %.1f%% of %.0f TFLOP/s (%s)", 100 * flops / peak, peak / 1e12, peak_label);
    if (g_gpu) printf(" | peak memory %.0f MiB", dev_peak_mib());
    printf("\n");
    printf("the %s limits: a run goes at about %.1f images/s\n", load_ips < step_ips ? "loader" : "training step",
           load_ips < step_ips ? load_ips : step_ips);
    cls_acts_free(a);
    cls_free(&m);
    free(pix); free(lens); free(labels);
    return 0;
}
