// cmd_cls.c: `hgrn2 train` and `hgrn2 eval` for the Long Range Arena's classification tasks (--task lra-*):
// options and presets in, the run or the evaluation of cls_run.c out; and `eval --task lra`, the table of
// every task's test accuracy beside the paper's. hgrn2.c hands these command lines over (cls_command_line).
#define _GNU_SOURCE
#include <getopt.h>
#include <sys/stat.h>

#include "cli.h"
#include "commands.h"
#include "cls_run.h"
#include "lra.h"

// Options of the classifier only, numbered after the shared ones of cli.h.
enum { OC_GLU = O_LAST, OC_NORM, OC_POS, OC_DROPOUT, OC_EPOCHS, OC_SCHED_STEPS, OC_RUNS, OC_DATA_ROOT, OC_KEEP, OC_MAX_BAD,
       OC_PATCH, OC_LAST };

// ----------------------------------------------------------------------------------------------------------
// Which command lines are the classifier's

static int argv_flag(int argc, char **argv, const char *name) {
    for (int i = 1; i < argc && strcmp(argv[i], "--"); i++) if (!strcmp(argv[i], name)) return 1;
    return 0;
}

int cls_command_line(int argc, char **argv, int eval) {
    const char *task = cli_option_value(argc, argv, "--task");
    if (task) return !strncmp(task, "lra", 3) || !strcmp(task, "fashion-mnist");
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
    const ClsPreset *ps = cls_preset_find(task);
    if (!ps)
        usage_error("--task must be lra-listops, lra-text, lra-retrieval, lra-image, lra-pathfinder, lra-pathx or "
                    "fashion-mnist, got '%s'", task);
    return ps;
}

static int name_index(const char *flag, const char *v, const char *const *names, int n) {
    for (int i = 0; i < n; i++) if (!strcmp(v, names[i])) return i;
    if (n == 2) usage_error("%s must be %s or %s, got '%s'", flag, names[0], names[1], v);
    usage_error("%s must be %s, %s or %s, got '%s'", flag, names[0], names[1], names[2], v);
}

// ----------------------------------------------------------------------------------------------------------
// hgrn2 train --task lra-*

static const char *TRAIN_USAGE =
    "hgrn2 train --task lra-listops|lra-text|lra-retrieval|lra-image|lra-pathfinder|lra-pathx|fashion-mnist --data DIR "
    "[--out DIR] [options]";
static const char *TRAIN_HELP =
    "Train the bidirectional HGRN2 classifier on a Long Range Arena task, on example files made by\n"
    "'hgrn2 prepare --task lra-*' (docs/lra.md), or on Fashion-MNIST ('hgrn2 prepare --task fashion-mnist').\n"
    "Each LRA task starts from the HGRN2 authors' settings:\n"
    "\n"
    "                   lra-listops   lra-text   lra-retrieval\n"
    "  layers, dim           5, 64    4, 128        2, 256\n"
    "  expand, glu ratio      4, 1      8, 1          2, 2\n"
    "  norm, positions  batch, sin.  layer, none  batch, sin.\n"
    "  dropout                   0       0.1             0\n"
    "  batch x seq-len   128 x 2048  64 x 4096    128 x 4000 (two documents)\n"
    "  lr, warmup         5e-4, 5000  5e-3, 10000  5e-3, 312\n"
    "  epochs, clip          50, 0      40, 0         20, 1\n"
    "\n"
    "                   lra-image    lra-pathfinder  lra-pathx   (pixels in, four 2-D scans)\n"
    "  layers, dim           6, 512      6, 128       6, 32\n"
    "  expand, glu ratio      2, 1        2, 1         1, 1\n"
    "  norm, positions  batch, sin.  batch, none   batch, sin.\n"
    "  batch                    64         128          256   (seq-len: the images' size)\n"
    "  lr, warmup       3e-3, 30000  2e-3, 50000  7.5e-4, 150000\n"
    "  cosine, epochs    50000, 75   500000, 100  500000, 200\n"
    "  clip                      0           0            1\n"
    "Image trains on random crops (4 pixels of mirrored padding) and horizontal flips; 3-channel images are\n"
    "normalised with CIFAR-10's channel statistics, 1-channel ones as (x - 0.5) / 0.5.\n"
    "fashion-mnist: 4 x 4 patches (7 x 7 = 49 tokens), four 2-D scans over the 7 x 7 patch grid; 6 layers,\n"
    "dim 256, expand 4, glu 2, batch norm, sin. positions, dropout 0.1; batch 128, lr 2e-3, warmup 844, cosine\n"
    "16880 (to 0 at the end), 40 epochs, clip 1, wd 0.05; crops from 2 pixels of padding, and flips.\n"
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
    "  --epochs N           epochs in all (with --resume: the new total)\n"
    "  --steps N            optimizer steps in all, instead of the epochs (with --resume: the new total)\n"
    "Model (override the preset):\n"
    "  --layers N --dim N --expand-ratio N (key dim per head; heads = dim / expand-ratio)\n"
    "  --glu-ratio N (GLU width N x dim) --norm batch|layer|rms --pos sinusoidal|none --dropout X\n"
    "  --patch P            image tasks: a token per P x P patch of pixels (P must divide the images' height and\n"
    "                       width; 1: a token per pixel; default: fashion-mnist 4, the LRA tasks 1)\n"
    "Optimization:\n"
    "  --batch B (examples) --seq-len T (tokens per document; longer documents are cut)\n"
    "  --lr X --min-lr X (default 0) --warmup N --sched-steps N (the cosine's length)\n"
    "  --wd X --beta1 X --beta2 X --adam-eps X --clip X (0: off)\n"
    "Progress:\n"
    "  --eval-every N       validation loss and accuracy every N steps (default: once an epoch; 0: at the end)\n"
    "  --eval-batches N     batches per validation (default 0: the whole split)\n"
    "  --ckpt-every N       (default: once an epoch; 0: at the end) --log-every N (default 10)\n"
    "  --stop-at N          save and stop after step N, as if interrupted (a later --resume continues);\n"
    "                       Ctrl-C also saves and stops after the step in progress\n"
    "  --keep N             also keep the newest N checkpoints as OUT/model_step<step>.ckpt, and the one of\n"
    "                       the best validation accuracy as OUT/best.ckpt (default 0: model.ckpt alone)\n"
    "  --max-bad-steps N    a step whose loss or gradient is not finite is skipped (no update) and counted;\n"
    "                       the run stops after N more than that in a row (default 10)\n"
    "Machine:\n"
    "  --device cpu|cuda --threads N (default: the cores not busy at the start) --seed N (default 1337)\n"
    "  --precision bf16|tf32|fp32   GPU tensor-core precision (default bf16)\n";

// With --resume, the model and the optimization settings come from the checkpoint: flags that would set
// them are refused rather than ignored.
static void refuse_on_resume(const int *set) {
    static const int fixed[] = {O_LAYERS, O_DIM, O_EXPAND, OC_GLU, OC_NORM, OC_POS, OC_DROPOUT, OC_PATCH, O_BATCH, O_SEQ, O_LR,
                                O_MIN_LR, O_WARMUP, OC_SCHED_STEPS, O_WD, O_BETA1, O_BETA2, O_ADAM_EPS, O_CLIP, O_SEED};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (set[fixed[i]])
            usage_error("the model and the optimization settings cannot change on --resume (only --steps, --epochs, "
                        "--data and the progress flags can): the run continues with its saved settings");
}

int cmd_cls_train(int argc, char **argv) {
    static const struct option opts[] = {
        COMMON_OPTS,
        {"task", required_argument, 0, O_TASK}, {"data", required_argument, 0, O_DATA},
        {"out", required_argument, 0, O_OUT}, {"resume", no_argument, 0, O_RESUME},
        {"ckpt", required_argument, 0, O_CKPT}, {"steps", required_argument, 0, O_STEPS},
        {"epochs", required_argument, 0, OC_EPOCHS}, {"layers", required_argument, 0, O_LAYERS},
        {"dim", required_argument, 0, O_DIM}, {"expand-ratio", required_argument, 0, O_EXPAND},
        {"glu-ratio", required_argument, 0, OC_GLU}, {"norm", required_argument, 0, OC_NORM},
        {"pos", required_argument, 0, OC_POS}, {"dropout", required_argument, 0, OC_DROPOUT},
        {"batch", required_argument, 0, O_BATCH}, {"seq-len", required_argument, 0, O_SEQ},
        {"lr", required_argument, 0, O_LR}, {"min-lr", required_argument, 0, O_MIN_LR},
        {"warmup", required_argument, 0, O_WARMUP}, {"sched-steps", required_argument, 0, OC_SCHED_STEPS},
        {"wd", required_argument, 0, O_WD}, {"beta1", required_argument, 0, O_BETA1},
        {"beta2", required_argument, 0, O_BETA2}, {"adam-eps", required_argument, 0, O_ADAM_EPS},
        {"clip", required_argument, 0, O_CLIP}, {"eval-every", required_argument, 0, O_EVAL_EVERY},
        {"eval-batches", required_argument, 0, O_EVAL_BATCHES}, {"ckpt-every", required_argument, 0, O_CKPT_EVERY},
        {"log-every", required_argument, 0, O_LOG_EVERY}, {"stop-at", required_argument, 0, O_STOP_AT},
        {"keep", required_argument, 0, OC_KEEP}, {"max-bad-steps", required_argument, 0, OC_MAX_BAD},
        {"patch", required_argument, 0, OC_PATCH}, {0, 0, 0, 0}};
    cli_start("hgrn2 train", TRAIN_USAGE);
    const char *task = NULL, *data = NULL, *out = NULL, *ckpt = NULL;
    MachineArgs mach = {0};
    int set[OC_LAST] = {0};
    int64_t layers = 0, dim = 0, expand = 0, glu = 0, epochs = 0, steps = 0, warmup = 0, sched_steps = 0;
    int64_t batch = 0, seq = 0, patch = 0;
    int norm = 0, pos = 0, c;
    double dropout = 0, lr = 0, min_lr = 0, wd = 0, beta1 = 0.9, beta2 = 0.999, adam_eps = 1e-8, clip = 0;
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
        case O_STEPS: steps = arg_int_in(&R_STEPS, optarg); break;
        case OC_EPOCHS: epochs = arg_int_in(&R_EPOCHS, optarg); break;
        case O_LAYERS: layers = arg_int_in(&R_LAYERS, optarg); break;
        case O_DIM: dim = arg_int_in(&R_DIM, optarg); break;
        case O_EXPAND: expand = arg_int_in(&R_EXPAND, optarg); break;
        case OC_GLU: glu = arg_int_in(&R_GLU_RATIO, optarg); break;
        case OC_NORM: norm = name_index("--norm", optarg, NORM_NAMES, NNORMS); break;
        case OC_POS: pos = name_index("--pos", optarg, POS_NAMES, NPOS); break;
        case OC_DROPOUT: dropout = arg_num_in(&R_DROPOUT, optarg); break;
        case OC_PATCH: patch = arg_int_in(&R_PATCH, optarg); break;
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
        case OC_KEEP: plan.keep = (int)arg_int("--keep", optarg, 0, 1 << 20); break;
        case OC_MAX_BAD: plan.max_bad_steps = arg_int("--max-bad-steps", optarg, 0, INT64_C(1) << 40); break;
        default: bad_option(argv, c);
        }
    }
    if (optind < argc) usage_error("unexpected argument '%s'", argv[optind]);
    const int resume = set[O_RESUME];
    const ClsPreset *ps = task ? task_or_usage(task) : NULL;
    if (!resume && !task)
        usage_error("--task is required (lra-listops, lra-text, lra-retrieval, lra-image, lra-pathfinder, lra-pathx or "
                    "fashion-mnist)");
    if (ps && ps->pixels && seq) usage_error("--seq-len is the images' size for --task %s: it takes no --seq-len", task);
    if (ps && !ps->pixels && set[OC_PATCH])
        usage_error("--patch is for the image tasks (lra-image, lra-pathfinder, lra-pathx, fashion-mnist): %s reads tokens", task);
    if (ckpt && !resume) usage_error("--ckpt names the checkpoint to --resume from");
    if (resume) refuse_on_resume(set);
    if (!resume && !data) usage_error("--task %s needs --data DIR (example files made by 'hgrn2 prepare --task %s')", task, task);
    if (data && strlen(data) >= sizeof ((ClsRunState *)0)->data) usage_error("--data is longer than 1023 bytes");
    machine_start(&mach);
    char *out_dflt = task ? xasprintf("runs/%s", task) : xstrdup(DEFAULT_OUT);
    if (!out) out = out_dflt;

    ClsModel model = {0};
    ClsRunState rs;
    memset(&rs, 0, sizeof rs);
    real *moments = NULL;
    if (resume) {
        char *from = ckpt ? xstrdup(ckpt) : xasprintf("%s/model.ckpt", out);
        cls_checkpoint_load(from, &model, &rs, &moments);
        if (task && strcmp(task, rs.task)) die("%s is a run of %s, not of %s", from, rs.task, task);
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
    } else {
        rs.c = (ClsConfig){.D = (int)(dim ? dim : ps->D), .L = (int)(layers ? layers : ps->L),
                           .K = (int)(expand ? expand : ps->K), .norm = set[OC_NORM] ? norm : ps->norm,
                           .pos = set[OC_POS] ? pos : ps->pos, .lower_bound = 1,
                           .dropout = set[OC_DROPOUT] ? dropout : ps->dropout, .eps = 1e-5};
        rs.c.I = (int)((glu ? glu : ps->glu) * rs.c.D);
        // the sizes, checked now with the task's vocabulary and classes, before any data is touched
        ClsConfig probe = rs.c;
        probe.V = LRA_BYTE_VOCAB;
        probe.ndoc = !strcmp(task, "lra-retrieval") ? 2 : 1;
        probe.classes = !strcmp(task, "lra-listops") || !strcmp(task, "lra-image") || !strcmp(task, "fashion-mnist") ? 10 : 2;
        const char *bad = cls_config_finish(&probe);
        if (bad) usage_error("%s", bad);
        rs.h = (ClsHyper){.B = (int)(batch ? batch : ps->B), .T = (int)(seq ? seq : ps->T),
                          .epochs = epochs ? epochs : ps->epochs, .warmup = set[O_WARMUP] ? warmup : ps->warmup,
                          .sched_steps = sched_steps ? sched_steps : ps->sched_steps, .lr = lr ? lr : ps->lr,
                          .min_lr = min_lr, .wd = set[O_WD] ? wd : ps->wd, .beta1 = beta1, .beta2 = beta2,
                          .adam_eps = adam_eps, .clip = set[O_CLIP] ? clip : ps->clip, .seed = seed};
        snprintf(rs.task, sizeof rs.task, "%s", task);
        snprintf(rs.data, sizeof rs.data, "%s", data);
        if (ps->pixels) {
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
            rs.c.input = INPUT_PIXELS;
            rs.c.channels = ic;
            cls_pixel_norm(&rs.c, ic);
            rs.c.scan = ps->pixels == 2 ? SCAN_SERIES : SCAN_2D;
            rs.c.grid_h = ih;
            rs.c.grid_w = iw;
            rs.c.patch = (int)(set[OC_PATCH] ? patch : ps->patch);
            if (rs.c.patch > 1 && (ih % rs.c.patch || iw % rs.c.patch))
                die("--patch %d does not divide the images of %s (%d x %d): pick a patch size that divides both", rs.c.patch,
                    train_path, ih, iw);
            if (rs.c.patch == 1) rs.c.patch = 0;
            rs.h.T = ih * iw * ic;
            example_close(e);
            free(train_path);
        }
    }

    char *train_file = xasprintf("%s/train" EXAMPLES_SUFFIX, data), *val_file = xasprintf("%s/val" EXAMPLES_SUFFIX, data);
    if (!file_exists(train_file))
        die("no training examples in %s (%s is missing): run 'hgrn2 prepare --task %s --input ... --out %s' first",
            data, train_file, task, data);
    // one trainer per run directory, from here to the exit: a second would interleave its rows with this
    // one's in log.tsv and race it on model.ckpt.tmp
    run_dir_lock(out, argc, argv);
    ExampleLoader *train = example_loader_open(data, "train", rs.h.B, rs.h.T, 1, rs.h.seed);
    ExampleLoader *val = file_exists(val_file) ? example_loader_open(data, "val", rs.h.B, rs.h.T, 0, 0) : NULL;
    const Examples *te = example_loader_data(train);
    cls_check_task_data(task, te);
    uint64_t vocab = cls_vocab_hash(te);
    if (val && cls_vocab_hash(example_loader_data(val)) != vocab)
        die("%s and %s describe different vocabularies: prepare both splits together", train_file, val_file);
    if (!resume) {
        rs.c.V = (int)example_vocab(te);
        rs.c.classes = (int)example_classes(te);
        rs.c.ndoc = example_ndoc(te);
        const char *bad = cls_config_finish(&rs.c);
        if (bad) die("the examples of %s do not fit the model: %s", data, bad);
        cls_alloc(&model, &rs.c);
        cls_init(&model, rs.h.seed);
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
    int rc = cls_train_run(&model, &rs, train, val, &plan);
    if (rc) return rc;      // stopped by a signal, after saving: the process ends here
    if (val) example_loader_close(val);
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
    "hgrn2 eval --task lra-listops|lra-text|lra-retrieval|lra-image|lra-pathfinder|lra-pathx|fashion-mnist [--ckpt PATH] "
    "[--data DIR] [--split test|val|train] "
    "[--batch N] | --task lra [--runs DIR] [--data-root DIR]";
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
    "  --split NAME         test (default), val or train\n"
    "  --batch B --seq-len T  (default: the training run's)\n"
    "  --max-batches N      stop after N batches (default 0: the whole split)\n"
    "The whole benchmark:\n"
    "  --task lra           every DIR/lra-*/model.ckpt of the six tasks (lra-listops, lra-text, lra-retrieval,\n"
    "                       lra-image, lra-pathfinder, lra-pathx) on its test split, in a table beside the\n"
    "                       HGRN2 paper's accuracy; tasks without a checkpoint are shown as missing, and the\n"
    "                       average is over the tasks present\n"
    "  --runs DIR           the folder of the runs (default runs)\n"
    "  --data-root R        the data of task T is R/T (default: each checkpoint's own data)\n"
    "  --threads N --device cpu|cuda --precision bf16|tf32|fp32 (GPU; default bf16)\n";

// The six tasks of the benchmark and the paper's HGRN2 test accuracy on each (%).
static const struct { const char *task, *name; double paper; } LRA_TABLE[6] = {
    {"lra-listops", "ListOps", 60.52}, {"lra-text", "Text", 88.97}, {"lra-retrieval", "Retrieval", 95.07},
    {"lra-image", "Image", 89.33}, {"lra-pathfinder", "Pathfinder", 93.95}, {"lra-pathx", "Path-X", 98.12}};
#define LRA_PAPER_AVERAGE 87.66

typedef struct { int64_t B, T, max_batches; const char *split; } EvalShape;   // 0: the run's

// Scores the classifier in ckpt on a split of data (NULL: its own); prints a line of counts. Returns the
// accuracy; want_task (NULL: any) must be the checkpoint's task.
static double eval_ckpt(const char *ckpt, const char *want_task, const char *data, const EvalShape *e) {
    ClsModel m = {0};
    ClsRunState rs;
    cls_checkpoint_load(ckpt, &m, &rs, NULL);
    if (want_task && strcmp(want_task, rs.task))
        die("%s is a model of %s, not of %s: give --task %s, or the checkpoint of a run of %s", ckpt, rs.task, want_task,
            rs.task, want_task);
    if (!data) data = rs.data;
    char *file = xasprintf("%s/%s" EXAMPLES_SUFFIX, data, e->split);
    if (!file_exists(file)) die("no %s examples in %s (%s is missing; pass --data DIR)", e->split, data, file);
    if (e->T && m.c.input == INPUT_PIXELS) die("%s is an image model: its documents are its images, so --seq-len does not apply", ckpt);
    int B = (int)(e->B ? e->B : rs.h.B), T = (int)(e->T ? e->T : rs.h.T);
    cls_to_device(&m);
    ExampleLoader *ld = example_loader_open(data, e->split, B, T, 0, 0);
    const Examples *ex = example_loader_data(ld);
    if (cls_vocab_hash(ex) != rs.vocab_hash || example_classes(ex) != (uint32_t)rs.c.classes || example_ndoc(ex) != rs.c.ndoc)
        die("%s does not hold the kind of examples %s was trained on (another vocabulary, classes or documents per "
            "example)", file, ckpt);
    ClsActs *a = cls_acts_alloc(&m.c, B, cls_positions(&m.c, T), 0);
    double t0 = now_s();
    ClsScore sc = cls_evaluate(&m, a, ld, B, T, e->max_batches);
    if (!sc.count) die("%s holds no examples to evaluate", file);
    double acc = (double)sc.correct / (double)sc.count;
    char shape[96];
    if (m.c.patch > 1)
        snprintf(shape, sizeof shape, "%d tokens of %d x %d patches", cls_positions(&m.c, T), m.c.patch, m.c.patch);
    else snprintf(shape, sizeof shape, "%s%d tokens", m.c.ndoc == 2 ? "2 documents of up to " : "up to ", T);
    printf("%s: %s split of %s, %lld examples (%s): %lld right, loss %.6f, %.1f s\n", rs.task, e->split, data,
           (long long)sc.count, shape, (long long)sc.correct, sc.loss, now_s() - t0);
    fflush(stdout);
    cls_acts_free(a);
    example_loader_close(ld);
    cls_free(&m);
    free(file);
    return acc;
}

// eval --task lra: the table.
static int eval_table(const char *runs, const char *data_root, const EvalShape *e) {
    struct stat st;
    if (stat(runs, &st) != 0 || !S_ISDIR(st.st_mode)) die("no folder of runs %s (pass --runs DIR)", runs);
    double ours[6], sum = 0, paper_sum = 0;
    int have[6] = {0}, n = 0;
    for (int i = 0; i < 6; i++) {
        char *ckpt = xasprintf("%s/%s/model.ckpt", runs, LRA_TABLE[i].task);
        if (file_exists(ckpt)) {
            char *data = data_root ? xasprintf("%s/%s", data_root, LRA_TABLE[i].task) : NULL;
            ours[i] = 100 * eval_ckpt(ckpt, LRA_TABLE[i].task, data, e);
            have[i] = 1;
            n++;
            sum += ours[i];
            paper_sum += LRA_TABLE[i].paper;
            free(data);
        }
        free(ckpt);
    }
    printf("\nLong Range Arena, test accuracy (%%): the runs in %s beside the HGRN2 paper's\n", runs);
    printf("%-12s %12s %12s\n", "task", "ours", "paper");
    for (int i = 0; i < 6; i++) {
        if (have[i]) printf("%-12s %12.2f %12.2f\n", LRA_TABLE[i].name, ours[i], LRA_TABLE[i].paper);
        else printf("%-12s %12s %12.2f\n", LRA_TABLE[i].name, "missing", LRA_TABLE[i].paper);
    }
    if (n == 6) printf("%-12s %12.2f %12.2f\n", "average", sum / n, LRA_PAPER_AVERAGE);
    else if (n) printf("%-12s %12.2f %12.2f   partial: over the %d of 6 tasks present (the paper's over all six: %.2f)\n",
                       "average", sum / n, paper_sum / n, n, LRA_PAPER_AVERAGE);
    else printf("%-12s %12s %12.2f   no task has a checkpoint in %s\n", "average", "-", LRA_PAPER_AVERAGE, runs);
    return 0;
}

int cmd_cls_eval(int argc, char **argv) {
    static const struct option opts[] = {
        COMMON_OPTS, {"task", required_argument, 0, O_TASK}, {"ckpt", required_argument, 0, O_CKPT},
        {"data", required_argument, 0, O_DATA}, {"split", required_argument, 0, O_SPLIT},
        {"batch", required_argument, 0, O_BATCH}, {"seq-len", required_argument, 0, O_SEQ},
        {"max-batches", required_argument, 0, O_MAX_BATCHES}, {"runs", required_argument, 0, OC_RUNS},
        {"data-root", required_argument, 0, OC_DATA_ROOT}, {0, 0, 0, 0}};
    cli_start("hgrn2 eval", EVAL_USAGE);
    const char *task = NULL, *ckpt = NULL, *data = NULL, *runs = NULL, *data_root = NULL;
    MachineArgs mach = {0};
    EvalShape e = {.split = "test"};
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
        case O_SEED: break;
        default: bad_option(argv, c);
        }
    }
    if (optind < argc) usage_error("unexpected argument '%s'", argv[optind]);
    int table = task && !strcmp(task, "lra");
    if (task && !table) task_or_usage(task);
    if (table && (ckpt || data || strcmp(e.split, "test")))
        usage_error("--task lra scores the test split of every run in --runs: it takes no --ckpt, --data or --split");
    if (!table && (runs || data_root)) usage_error("--runs and --data-root are for --task lra");
    machine_start(&mach);
    if (table) return eval_table(runs ? runs : "runs", data_root, &e);
    char *dflt = task ? xasprintf("runs/%s/model.ckpt", task) : xstrdup(DEFAULT_OUT "/model.ckpt");
    double acc = eval_ckpt(ckpt ? ckpt : dflt, task, data, &e);
    printf("accuracy %.4f\n", acc);
    free(dflt);
    return 0;
}
