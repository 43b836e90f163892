// hgrn2.c: main and the commands train and eval: each reads its options and calls the library (sample and bench:
// cmd_sample.c, cmd_bench.c).
// hgrn2 trains, evaluates and samples HGRN2 language models ("HGRN2: Gated Linear RNNs with State Expansion",
// Qin et al., 2024) in the parameterisation of flash-linear-attention (docs/model.md). The library beneath:
// model.c (the model over the ops of ops.h, run by cpu.c or kernels.cu through backend.c), train.c (the step,
// the run, evaluation), checkpoint.c, cli.c (what the commands' option parsing shares); import and export are
// in cmd_hf.c, prepare and tokenize with the data path.
#include <math.h>
#include <omp.h>
#include <unistd.h>

#include "common.h"
#include "backend.h"
#include "model.h"
#include "train.h"
#include "checkpoint.h"
#include "cli.h"
#include "commands.h"
#include "data.h"
#include "tokenizer.h"
#include "mqar.h"
#include "dist.h"
#include "build/version.h"   // HGRN2_VERSION, written by the Makefile

// ----------------------------------------------------------------------------------------------------------
// hgrn2 train

static const char *TRAIN_USAGE =
    "hgrn2 train [--task bible|text|pile|wiki103|mqar|lra-*|fashion-mnist|imagenet] [--preset NAME] [--data DIR] "
    "[--out DIR] [--steps N] [options]";
static const char *TRAIN_HELP =
    "Train an HGRN2 language model (HGRN1 or a Transformer++ with --arch). With no arguments: a 3.5M-parameter\n"
    "byte-level model on the King James Bible (prepared into " DEFAULT_BIBLE_DATA " on first use), saved to " DEFAULT_OUT ".\n"
    "\n"
    "Task and files:\n"
    "  --task NAME          bible (default: the built-in corpus), text (any prepared --data), pile, wiki103,\n"
    "                       mqar (multi-query associative recall, generated: no --data; docs/mqar.md);\n"
    "                       lra-listops, lra-text, lra-retrieval, lra-image, lra-pathfinder, lra-pathx train\n"
    "                       a classifier on Long Range Arena examples, fashion-mnist one on Fashion-MNIST's\n"
    "                       images in 4 x 4 patches, imagenet one on ImageNet (docs/imagenet.md), with options\n"
    "                       of their own:\n"
    "                       hgrn2 train --task lra-listops --help\n"
    "  --preset NAME        tiny (default for bible/text), pile-150m, pile-385m, pile-1b, pile-3b, wiki103-44m,\n"
    "                       mqar (the default for mqar)\n"
    "  --data DIR           prepared shards (hgrn2 prepare); required for text, pile and wiki103\n"
    "  --kv-pairs P         mqar: key-value pairs per example (default 4, 8, 16, 64 at --seq-len 64, 128, 256,\n"
    "                       512; T/16 otherwise); at most seq-len / 4\n"
    "  --train-examples N   mqar: train on a fixed set of N examples, reshuffled every epoch, as Zoology does\n"
    "                       (default: a fresh example every time)\n"
    "  --out DIR            run directory: model.ckpt, log.tsv (default " DEFAULT_OUT ")\n"
    "  --resume             continue the run in --out (or --ckpt PATH) exactly where it stopped\n"
    "  --ckpt PATH          the checkpoint --resume reads (default OUT/model.ckpt)\n"
    "  --init PATH          start a new run from the weights of a checkpoint (fine-tuning; with --task mqar,\n"
    "                       another shape): the model is the checkpoint's, the task and optimizer this line's\n"
    "  --steps N            optimizer steps in all (with --resume: the new total)\n"
    "Model size (override the preset):\n"
    "  --layers N --dim N --expand-ratio N (key dim per head; heads = dim / expand-ratio)\n"
    "  --vocab N (default: the data's) --mlp-width N (default fla's) --tie-embeddings --no-lower-bound\n"
    "  --arch hgrn2|hgrn1|transformer   the architecture (default hgrn2); the paper's baselines: hgrn1, HGRN1's\n"
    "                       element-wise token mixer, whose state is a vector (expand ratio 1); transformer,\n"
    "                       LLaMA's Transformer++ (softmax attention, rotary positions) at the same sizes (on\n"
    "                       the GPU a plain fp32 attention kernel for now); language-model tasks and mqar;\n"
    "                       --resume and --init keep the checkpoint's arch\n"
    "  --heads N            transformer: attention heads, of dim / N each (default: heads of 64 where 64\n"
    "                       divides dim, else one)\n"
    "  --mixer-layer fla|lra  HGRN2's layer: fla (default), flash-linear-attention's (q = swish, v as it is,\n"
    "                       a readout scaled by 1/sqrt(K), an RMSNorm, no biases), the only one export takes;\n"
    "                       lra, the HGRN2 authors' own (q = sigmoid, v = silu, an unscaled readout, a LayerNorm,\n"
    "                       biased projections), as in their LRA and MQAR runs\n"
    "  --block fla|zoology  the blocks around the mixer: fla (default), RMSNorms; zoology, the Zoology\n"
    "                       benchmark's language model, on which the authors ran MQAR: LayerNorms with biases,\n"
    "                       without an MLP the identity in its place (its norm's output joins the stream), the\n"
    "                       output products drawn at 0.02 / sqrt(2 layers); export refuses it\n"
    "Optimization:\n"
    "  --batch B --seq-len T --accum N (micro-batches per step)\n"
    "  --lr X --min-lr X (the floor of cosine and wsd, default lr/10) --warmup N\n"
    "  --schedule cosine|invsqrt|constant|wsd   after the warmup (default: the preset's, cosine for most)\n"
    "  --decay-fraction F   wsd (warmup-stable-decay): the rate holds at --lr, then falls linearly to --min-lr\n"
    "                       over the last F of the steps (default 0.2); --resume --steps N moves the decay to\n"
    "                       the end of the new total\n"
    "  --wd X (AdamW decay; never on norms and lower bounds) --beta1 X --beta2 X --adam-eps X --clip X (0: off)\n"
    "  --embed-dropout P    dropout on the embeddings in training (default 0; Zoology's language model, on which\n"
    "                       the authors ran MQAR, drops them at 0.1); masks per sequence, from the seed and step\n"
    "Progress:\n"
    "  --eval-every N (held-out loss every N steps, 0: only at the end) --eval-batches N (0: whole split;\n"
    "                       mqar: batches of held-out examples, also scored for accuracy; 0: 3000 examples)\n"
    "  --ckpt-every N (0: only at the end) --log-every N\n"
    "  --stop-at N          save and stop after step N, as if interrupted (a later --resume continues);\n"
    "                       Ctrl-C also saves and stops after the step in progress\n"
    "  --keep N             also keep the newest N checkpoints as OUT/model_step<step>.ckpt, and the one of\n"
    "                       the lowest held-out loss as OUT/best.ckpt (default 0: model.ckpt alone)\n"
    "  --max-bad-steps N    a step whose loss or gradient is not finite is skipped (no update) and counted;\n"
    "                       the run stops after N more than that in a row (default 10)\n"
    "Machine:\n"
    "  --device cpu|cuda --threads N (default: the cores not busy at the start, shared by the processes of a\n"
    "                       run on one machine) --seed N\n"
    "  --precision bf16|tf32|fp32   GPU tensor-core precision (default bf16; fp32 is exact and slow)\n"
    "Several processes (data-parallel, language-model tasks and mqar; docs/distributed.md):\n"
    "  mpirun -np N hgrn2 train ...   N processes, each on its B/N rows of the batch (--batch is the global\n"
    "                       batch, a multiple of N), the gradients summed, AdamW's state split over them\n"
    "                       (ZeRO-1); on the CPU over MPI, with --device cuda one GPU each over NCCL\n"
    "  --rendezvous DIR     GPUs without MPI: the processes meet in DIR, a directory they all reach\n"
    "  --rank R --world-size N   with --rendezvous (default: the environment's RANK and WORLD_SIZE; the\n"
    "                       GPU is LOCAL_RANK, else R)\n"
    "  --reduce-dtype fp32|bf16  what the gradients travel in over NCCL (default fp32)\n"
    "  --bucket-mb X        the gradients are summed in buckets of X MiB, each sent while the backward goes on\n"
    "                       (default 25; 0: one bucket, the whole vector after the backward)\n";

// train's options beyond the common ones
enum { OT_KEEP = O_LAST, OT_MAX_BAD, OT_DECAY_FRAC, OT_EMBED_DROP, OT_RENDEZVOUS, OT_RANK, OT_WORLD, OT_REDUCE_DTYPE, OT_BUCKET,
       OT_TRAIN_EXAMPLES, OT_LAST };

// With --resume the model and the optimization settings come from the checkpoint, with --init the model:
// flags that would set them are refused rather than ignored.
static void refuse_fixed_flags(const int *set, int resume, int init) {
    // --init takes the model from the checkpoint and everything else from the command line: the task (another
    // corpus to fine-tune on, or another MQAR shape) and its preset's optimizer settings, which flags override
    if (resume || init) {
        static const int fixed[] = {O_PRESET, O_LAYERS, O_DIM, O_EXPAND, O_VOCAB, O_MLP, O_TIE, O_NO_LB,
                                    O_HEADS, O_LAYER, O_BLOCK};
        static const char *names[] = {"--preset", "--layers", "--dim", "--expand-ratio", "--vocab",
                                      "--mlp-width", "--tie-embeddings", "--no-lower-bound", "--heads", "--mixer-layer",
                                      "--block"};
        for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
            if (set[fixed[i]]) usage_error("%s cannot be given with %s: the model comes from the checkpoint", names[i], resume ? "--resume" : "--init");
    }
    if (resume) {
        if (set[O_TASK]) usage_error("--task cannot be given with --resume: the run continues with its saved task");
        static const int fixed[] = {O_BATCH, O_SEQ, O_ACCUM, O_LR, O_MIN_LR, O_WARMUP, O_SCHED, O_WD, O_BETA1,
                                    O_BETA2, O_ADAM_EPS, O_CLIP, O_SEED, OT_DECAY_FRAC, OT_EMBED_DROP};
        for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
            if (set[fixed[i]]) usage_error("optimization settings cannot change on --resume (only --steps and the progress flags can): the run continues with its saved settings");
    }
}

// A resume takes the progress flags that its command line leaves out from the run's OUT/progress (train.h).
static void plan_progress(TrainPlan *p, const int *set, const char *out) {
    int64_t *const v[PF_N] = {&p->eval_every, &p->eval_batches, &p->ckpt_every, &p->log_every, &p->keep,
                              &p->max_bad_steps, NULL};
    const int given[PF_N] = {set[O_EVAL_EVERY], set[O_EVAL_BATCHES], set[O_CKPT_EVERY], set[O_LOG_EVERY], set[OT_KEEP],
                             set[OT_MAX_BAD], 0};
    progress_flags_sync(out, p->resume, v, given);
}

// The rest of hgrn2 train for --task mqar, once the run state holds the preset (or the checkpoint, with
// --resume): the examples come from the generator, so no loaders; the checkpoint's data field names the task.
static int train_mqar(Model *model, RunState *rs, const char *init, int pairs, uint64_t train_examples,
                      TrainPlan *plan, const int *set) {
    if (!plan->resume) {
        if (init) {
            RunState from;
            checkpoint_load(init, model, &from, 0);
            rs->c = from.c;
            printf("initialising from the weights of %s\n", init);
        }
        const char *bad = config_finish(&rs->c);
        if (bad) usage_error("%s", bad);
        if (!init) { model_alloc(model, &rs->c); model_init(model, rs->h.seed); }
        rs->step = 0;
        rs->tokenizer[0] = 0;           // ids only: no tokenizer
        mqar_spec(rs->data, sizeof rs->data, pairs, train_examples);
    }
    Mqar g;
    const char *bad = mqar_init(&g, rs->c.V, rs->h.T, pairs, rs->h.seed);
    if (bad && plan->resume) die("the checkpoint's mqar run cannot continue: %s", bad);
    if (bad) usage_error("%s (the vocabulary of %s is %d)", bad, init, rs->c.V);
    g.train_examples = train_examples;
    if (train_examples)
        printf("mqar: a fixed training set of %llu examples, shuffled anew every epoch\n",
               (unsigned long long)train_examples);
    model_shard(model, g_dist.rank, g_dist.world);
    model_to_device(model);
    model_alloc_training(model);
    mkdir_p(plan->out);
    plan_progress(plan, set, plan->out);
    // the run's micro-batches take the examples in order, so step s begins at example s x accum x B; each
    // process takes its B / world of them
    MqarTask t;
    const int rows = rs->h.B / g_dist.world;
    mqar_task_init(&t, &g, rs->h.B, g_dist.rank * rows, rows, (uint64_t)rs->step * (uint64_t)rs->h.accum * (uint64_t)rs->h.B);
    plan->task = "mqar";
    plan->data = rs->data;
    plan->gen = &t.task;
    int rc = train_run(model, rs, NULL, NULL, plan);
    if (rc) return rc;      // stopped by a signal, after saving: the process ends here
    mqar_task_free(&t);
    mqar_free(&g);
    model_free(model);
    return 0;
}


int cmd_train(int argc, char **argv) {
    if (cls_command_line(argc, argv, 0)) {
        if (g_dist.world > 1) dist_refuse("training a classifier (lra-*, fashion-mnist, imagenet)");
        return cmd_cls_train(argc, argv);
    }
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
        {"kv-pairs", required_argument, 0, O_KV_PAIRS}, {"keep", required_argument, 0, OT_KEEP},
        {"max-bad-steps", required_argument, 0, OT_MAX_BAD}, {"decay-fraction", required_argument, 0, OT_DECAY_FRAC},
        {"embed-dropout", required_argument, 0, OT_EMBED_DROP},
        {"rendezvous", required_argument, 0, OT_RENDEZVOUS}, {"rank", required_argument, 0, OT_RANK},
        {"world-size", required_argument, 0, OT_WORLD}, {"reduce-dtype", required_argument, 0, OT_REDUCE_DTYPE},
        {"bucket-mb", required_argument, 0, OT_BUCKET}, {"train-examples", required_argument, 0, OT_TRAIN_EXAMPLES},
        {0, 0, 0, 0}};
    cli_start("hgrn2 train", TRAIN_USAGE);
    const char *task = "bible", *preset_name = NULL, *data = NULL, *out = DEFAULT_OUT, *ckpt = NULL, *init = NULL;
    MachineArgs mach = {0};
    int set[OT_LAST] = {0};
    SizeArgs z = {0};
    Hyper given = {.accum = 1, .min_lr = -1, .wd = -1, .beta1 = -1, .beta2 = -1, .adam_eps = 1e-8, .clip = 1.0,
                   .warmup = -1, .sched = -1, .decay_frac = -1, .seed = 1337};   // what preset_hyper reads as not given
    TrainPlan plan = {.eval_every = -1, .eval_batches = 20, .ckpt_every = -1, .log_every = 1, .max_bad_steps = 10};
    int pairs = 0, c;     // pairs: mqar's key-value pairs per example
    uint64_t train_examples = 0;   // mqar: a fixed training set of that many examples (0: fresh ones)
    DistArgs dist = {.rank = -1, .world = -1, .bucket_mb = DIST_BUCKET_MB};
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        if (c >= 0 && c < OT_LAST) set[c] = 1;
        if (size_arg(c, &z) || machine_arg(c, &mach)) continue;
        switch (c) {
        case O_HELP: print_help(TRAIN_USAGE, TRAIN_HELP); return 0;
        case O_TASK: task = optarg; break;
        case O_PRESET: preset_name = optarg; break;
        case O_DATA: data = optarg; break;
        case O_OUT: out = optarg; break;
        case O_STEPS: given.steps = arg_int_in(&R_STEPS, optarg); break;
        case O_CKPT: ckpt = optarg; break;
        case O_RESUME: break;
        case O_INIT: init = optarg; break;
        case O_SEED: given.seed = (uint64_t)arg_int_in(&R_SEED, optarg); break;
        case O_ACCUM: given.accum = (int)arg_int_in(&R_ACCUM, optarg); break;
        case O_LR: given.lr = arg_num_in(&R_LR, optarg); break;
        case O_MIN_LR: given.min_lr = arg_num_in(&R_MIN_LR, optarg); break;
        case O_WARMUP: given.warmup = arg_int_in(&R_WARMUP, optarg); break;
        case O_SCHED:
            for (given.sched = 0; given.sched < NSCHED && strcmp(optarg, SCHED_NAMES[given.sched]); given.sched++) {}
            if (given.sched == NSCHED) usage_error("--schedule must be cosine, invsqrt, constant or wsd, got '%s'", optarg);
            break;
        case O_WD: given.wd = arg_num_in(&R_WD, optarg); break;
        case O_BETA1: given.beta1 = arg_num_in(&R_BETA1, optarg); break;
        case O_BETA2: given.beta2 = arg_num_in(&R_BETA2, optarg); break;
        case O_ADAM_EPS: given.adam_eps = arg_num_in(&R_ADAM_EPS, optarg); break;
        case O_CLIP: given.clip = arg_num_in(&R_CLIP, optarg); break;
        case O_EVAL_EVERY: plan.eval_every = arg_int("--eval-every", optarg, 0, INT64_C(1) << 40); break;
        case O_EVAL_BATCHES: plan.eval_batches = arg_int("--eval-batches", optarg, 0, INT64_C(1) << 40); break;
        case O_CKPT_EVERY: plan.ckpt_every = arg_int("--ckpt-every", optarg, 0, INT64_C(1) << 40); break;
        case O_LOG_EVERY: plan.log_every = arg_int("--log-every", optarg, 1, INT64_C(1) << 40); break;
        case O_STOP_AT: plan.stop_at = arg_int("--stop-at", optarg, 1, INT64_C(1) << 40); break;
        case O_KV_PAIRS: pairs = (int)arg_int("--kv-pairs", optarg, 1, 1 << 24); break;
        case OT_KEEP: plan.keep = arg_int("--keep", optarg, 0, 1 << 20); break;
        case OT_MAX_BAD: plan.max_bad_steps = arg_int("--max-bad-steps", optarg, 0, INT64_C(1) << 40); break;
        case OT_DECAY_FRAC: given.decay_frac = arg_num_in(&R_DECAY_FRAC, optarg); break;
        case OT_EMBED_DROP: given.embed_drop = arg_num_in(&R_EMBED_DROP, optarg); break;
        case OT_RENDEZVOUS: dist.rendezvous = optarg; break;
        case OT_RANK: dist.rank = (int)arg_int("--rank", optarg, 0, (1 << 20) - 1); break;
        case OT_WORLD: dist.world = (int)arg_int("--world-size", optarg, 1, 1 << 20); break;
        case OT_REDUCE_DTYPE:
            if (strcmp(optarg, "fp32") && strcmp(optarg, "bf16")) usage_error("--reduce-dtype must be fp32 or bf16, got '%s'", optarg);
            dist.reduce_bf16 = !strcmp(optarg, "bf16");
            break;
        case OT_BUCKET: dist.bucket_mb = arg_num_in(&R_BUCKET_MB, optarg); break;
        case OT_TRAIN_EXAMPLES:
            train_examples = (uint64_t)arg_int("--train-examples", optarg, 1, (int64_t)MQAR_MAX_TRAIN_EXAMPLES);
            break;
        default: bad_option(argv, c);
        }
    }
    if (optind < argc) usage_error("unexpected argument '%s'", argv[optind]);
    dist.gpu = mach.device && !strcmp(mach.device, "cuda");
    dist_start(&dist);
    machine_start(&mach);
    dist_connect(dist.rendezvous);
    if (strcmp(task, "bible") && strcmp(task, "text") && strcmp(task, "pile") && strcmp(task, "wiki103") &&
        strcmp(task, "mqar"))
        usage_error("--task must be bible, text, pile, wiki103, mqar, lra-listops, lra-text or lra-retrieval, got '%s'", task);
    int resume = set[O_RESUME], is_mqar = !strcmp(task, "mqar");
    if (resume && init) usage_error("--resume and --init exclude each other");
    if (ckpt && !resume) usage_error("--ckpt names the checkpoint to --resume from; to start from weights use --init");
    refuse_fixed_flags(set, resume, init != NULL);
    if (given.decay_frac >= 0 && given.sched != SCHED_WSD) usage_error("--decay-fraction goes with --schedule wsd");
    if (pairs && resume) usage_error("--kv-pairs cannot change on --resume: the run continues with its saved task");
    if (pairs && !is_mqar) usage_error("--kv-pairs is for --task mqar");
    if (train_examples && resume)
        usage_error("--train-examples cannot change on --resume: the run continues with its saved task");
    if (train_examples && !is_mqar) usage_error("--train-examples is for --task mqar");
    if (is_mqar && data) usage_error("--task mqar generates its examples: it takes no --data");

    Model model = {0};
    RunState rs;
    memset(&rs, 0, sizeof rs);
    char *ckpt_path = xasprintf("%s/model.ckpt", out);
    if (resume) {
        const char *from = ckpt ? ckpt : ckpt_path;
        checkpoint_load(from, &model, &rs, 1);
        if (set[O_STEPS]) {
            if (given.steps < rs.step) usage_error("--steps %lld is below the %lld steps already done", (long long)given.steps, (long long)rs.step);
            rs.h.steps = given.steps;
        }
        if (z.has_arch && z.arch != (int)rs.c.mixer)
            usage_error("--arch %s, but %s is a run of %s: a resumed run keeps its architecture", ARCH_NAMES[z.arch],
                        from, ARCH_NAMES[rs.c.mixer]);
        is_mqar = mqar_parse(rs.data, &pairs, &train_examples);
        if (is_mqar && data) usage_error("%s is a run of mqar, whose examples are generated: it takes no --data", from);
        if (!data) data = rs.data;
        printf("resuming %s at step %lld of %lld\n", from, (long long)rs.step, (long long)rs.h.steps);
    } else {
        const Preset *ps = preset_find(preset_name ? preset_name : task_default_preset(task));
        if (!ps) {
            fprintf(stderr, "hgrn2 train: unknown preset '%s'; the presets are:\n", preset_name);
            for (int i = 0; i < NPRESETS; i++) fprintf(stderr, "  %-12s %s\n", PRESETS[i].name, PRESETS[i].about);
            exit(EXIT_USAGE);
        }
        rs.h = preset_hyper(ps, &z, &given);
        rs.c = preset_config(ps, &z, 0);
        Config probe = rs.c;             // check the sizes now, before any data is touched
        if (!probe.V) probe.V = 256;
        const char *bad = config_finish(&probe);
        if (bad) usage_error("%s", bad);
        if (is_mqar) {
            if (!pairs) pairs = mqar_default_pairs(rs.h.T);
            Mqar g;                      // the shape, checked now (with --init, once the vocabulary is known)
            if (!init && (bad = mqar_init(&g, rs.c.V, rs.h.T, pairs, rs.h.seed))) usage_error("%s", bad);
            if (!init) mqar_free(&g);
        } else if (!data) {
            if (!strcmp(task, "bible")) data = DEFAULT_BIBLE_DATA;
            else usage_error("--task %s needs --data DIR (shards made by 'hgrn2 prepare')", task);
        }
    }
    // each process takes B / world rows of every batch
    if (rs.h.B % g_dist.world) {
        if (resume) usage_error("the run's batch of %d rows (its checkpoint's) does not split over %d processes: resume "
                                "it on a number of processes that divides it", rs.h.B, g_dist.world);
        usage_error("--batch %d does not split over %d processes: the batch is the global one, B / %d rows on each "
                    "process, so it must be a multiple of %d", rs.h.B, g_dist.world, g_dist.world, g_dist.world);
    }
    plan.out = out;
    plan.resume = resume;
    if (is_mqar) {
        int rc = train_mqar(&model, &rs, init, pairs, train_examples, &plan, set);
        free(ckpt_path);
        return rc;
    }

    // rank 0 prepares the corpus and holds the run directory (the others wait)
    if (g_dist.rank == 0) {
        if (!resume && !strcmp(task, "bible") && !strcmp(data, DEFAULT_BIBLE_DATA)) prepare_bible(data);
        if (!data_has_split(data, "train"))
            die("no training shards in %s: run 'hgrn2 prepare --out %s ...' first", data, data);
        // one trainer per run directory, from here to the exit: a second would interleave its rows with this
        // one's in log.tsv and race it on model.ckpt.tmp
        run_dir_lock(out, argc, argv);
    }
    dist_barrier();
    plan_progress(&plan, set, out);
    const int rows = rs.h.B / g_dist.world, row0 = g_dist.rank * rows;
    Loader *train_ld = loader_open_rows(data, "train", rs.h.B, row0, rows, rs.h.T, 1, rs.h.seed);
    Loader *val_ld = data_has_split(data, "val") ? loader_open_rows(data, "val", rs.h.B, row0, rows, rs.h.T, 0, 0) : NULL;
    int data_vocab = (int)loader_vocab(train_ld);

    if (!resume) {
        if (init) {
            RunState from;
            checkpoint_load(init, &model, &from, 0);
            if (z.has_arch && z.arch != (int)from.c.mixer)
                usage_error("--arch %s, but %s holds a model of %s: --init keeps the architecture of its weights",
                            ARCH_NAMES[z.arch], init, ARCH_NAMES[from.c.mixer]);
            rs.c = from.c;
            printf("initialising from the weights of %s\n", init);
        } else {
            rs.c.V = (int)(z.vocab ? z.vocab : data_vocab);
        }
        const char *bad = config_finish(&rs.c);
        if (bad) usage_error("%s", bad);
        if (!init) { model_alloc(&model, &rs.c); model_init(&model, rs.h.seed); }
        rs.step = 0;
        rs.loader = loader_get_state(train_ld);
        if (!data_tokenizer_spec(data, rs.tokenizer, sizeof rs.tokenizer))
            snprintf(rs.tokenizer, sizeof rs.tokenizer, "%s", loader_tokenizer(train_ld));
        snprintf(rs.data, sizeof rs.data, "%s", data);
    } else {
        loader_set_state(train_ld, rs.loader);
    }
    model_shard(&model, g_dist.rank, g_dist.world);
    model_to_device(&model);
    model_alloc_training(&model);
    if (rs.c.V < data_vocab)
        die("the data in %s has a vocabulary of %d but the model only %d ids", data, data_vocab, rs.c.V);

    plan.task = task;
    plan.data = data;
    int rc = train_run(&model, &rs, train_ld, val_ld, &plan);
    if (rc) return rc;      // stopped by a signal, after saving: the process ends here
    if (val_ld) loader_close(val_ld);
    loader_close(train_ld);
    model_free(&model);
    free(ckpt_path);
    return 0;
}

// ----------------------------------------------------------------------------------------------------------
// hgrn2 eval

static const char *EVAL_USAGE = "hgrn2 eval [--ckpt PATH] [--data DIR] [--split val|train] | --ids FILE [--logits OUT] [--tokenizer PATH]"
                                 " | --task mqar [--examples N] | --task mc|lambada --data FILE | --task lra-*|lra";
static const char *EVAL_HELP =
    "Report the mean next-token loss, the perplexity and bits per byte (from the tokenizer: the bytes of\n"
    "text the predicted tokens stand for).\n"
    "The last line printed is 'loss X'.\n"
    "A model trained on mqar (or any, with --task mqar) is scored on held-out MQAR examples instead: the mean\n"
    "loss at the answer positions, and the accuracy, the fraction of answers whose most likely token is the\n"
    "right value. The last line printed is then 'accuracy X'.\n"
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
    "MQAR (docs/mqar.md):\n"
    "  --task mqar          held-out MQAR examples (the default for a model trained on mqar)\n"
    "  --examples N         how many: the first N of the held-out set (default 3000)\n"
    "  --kv-pairs P --seq-len T  their shape (default: the training run's) --batch B (default: the training batch)\n"
    "Zero-shot benchmarks (their own options: hgrn2 eval --task mc --help; docs/zeroshot.md):\n"
    "  --task mc            multiple choice (--format hellaswag, piqa, arc, winogrande, boolq or jsonl):\n"
    "                       the last lines 'acc X' and 'acc_norm X'\n"
    "  --task lambada       LAMBADA's last word: the last lines 'acc X' and 'perplexity X'\n"
    "Long Range Arena classifiers (their own options: hgrn2 eval --task lra-listops --help):\n"
    "  --task lra-TASK     test accuracy of a classifier (the six LRA tasks, or fashion-mnist); last line\n"
    "                       'accuracy X'\n"
    "  --task lra           the table of every task's test accuracy in a folder of runs, beside the paper's\n"
    "  --threads N --device cpu|cuda --precision bf16|tf32|fp32 (GPU; default bf16)\n";

// hgrn2 eval --task mqar: accuracy on the first n held-out examples of shape (T, P), B at a time, drawn with
// the training run's seed (held out by index from what it trained on).
static int eval_mqar(Model *m, const RunState *rs, int B, int T, int P, int64_t n) {
    Mqar g;
    const char *bad = mqar_init(&g, m->c.V, T, P, rs->h.seed);
    if (bad) usage_error("%s", bad);
    Acts a;
    acts_alloc(&a, &m->c, B, T, 0);
    double t0 = now_s(), acc;
    double loss = mqar_evaluate(m, &a, &g, n, &acc);
    printf("mqar: %lld held-out examples of length %d with %d key-value pairs (%lld answers) in %.1f s\n",
           (long long)n, T, P, (long long)n * P, now_s() - t0);
    printf("loss %.6f at the answer positions\n", loss);
    printf("accuracy %.6f\n", acc);
    acts_free(&a);
    mqar_free(&g);
    return 0;
}

int cmd_eval(int argc, char **argv) {
    if (cls_command_line(argc, argv, 1)) return cmd_cls_eval(argc, argv);
    if (zeroshot_command_line(argc, argv)) return cmd_zeroshot_eval(argc, argv);
    static const struct option opts[] = {
        COMMON_OPTS, {"ckpt", required_argument, 0, O_CKPT}, {"data", required_argument, 0, O_DATA},
        {"split", required_argument, 0, O_SPLIT}, {"batch", required_argument, 0, O_BATCH},
        {"seq-len", required_argument, 0, O_SEQ}, {"max-batches", required_argument, 0, O_MAX_BATCHES},
        {"ids", required_argument, 0, O_IDS}, {"logits", required_argument, 0, O_LOGITS},
        {"tokenizer", required_argument, 0, O_TOKENIZER}, {"task", required_argument, 0, O_TASK},
        {"examples", required_argument, 0, O_EXAMPLES}, {"kv-pairs", required_argument, 0, O_KV_PAIRS}, {0, 0, 0, 0}};
    cli_start("hgrn2 eval", EVAL_USAGE);
    const char *ckpt = DEFAULT_OUT "/model.ckpt", *data = NULL, *split = "val", *ids_path = NULL, *logits_path = NULL;
    const char *tok_spec = NULL;
    MachineArgs mach = {0};
    int64_t B = 0, T = 0, max_batches = 0, examples = 0;
    int pairs = 0, mqar = 0, c;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        if (machine_arg(c, &mach)) continue;
        switch (c) {
        case O_HELP: print_help(EVAL_USAGE, EVAL_HELP); return 0;
        case O_CKPT: ckpt = optarg; break;
        case O_DATA: data = optarg; break;
        case O_SPLIT:
            if (strcmp(optarg, "val") && strcmp(optarg, "train")) usage_error("--split must be val or train, got '%s'", optarg);
            split = optarg;
            break;
        case O_BATCH: B = arg_int_in(&R_BATCH, optarg); break;
        case O_SEQ: T = arg_int_in(&R_SEQ_LEN, optarg); break;
        case O_MAX_BATCHES: max_batches = arg_int("--max-batches", optarg, 0, INT64_C(1) << 40); break;
        case O_IDS: ids_path = optarg; break;
        case O_LOGITS: logits_path = optarg; break;
        case O_TOKENIZER: tok_spec = optarg; break;
        case O_SEED: break;
        case O_TASK:
            if (strcmp(optarg, "mqar"))
                usage_error("--task of eval is mqar, mc, lambada, lra-listops, lra-text, lra-retrieval or lra (a language "
                            "model needs none), got '%s'", optarg);
            mqar = 1;
            break;
        case O_EXAMPLES: examples = arg_int("--examples", optarg, 1, INT64_C(1) << 40); break;
        case O_KV_PAIRS: pairs = (int)arg_int("--kv-pairs", optarg, 1, 1 << 24); break;
        default: bad_option(argv, c);
        }
    }
    if (optind < argc) usage_error("unexpected argument '%s'", argv[optind]);
    if (mqar && (data || ids_path || logits_path || tok_spec || max_batches || strcmp(split, "val")))
        usage_error("--task mqar scores generated examples: it takes none of --data, --split, --ids, --logits, "
                    "--tokenizer and --max-batches");
    if (logits_path && !ids_path) usage_error("--logits needs --ids");
    if (ids_path && (data || B || T || max_batches)) usage_error("--ids excludes --data, --batch, --seq-len and --max-batches");
    machine_start(&mach);

    Model m = {0};
    RunState rs;
    checkpoint_load(ckpt, &m, &rs, 0);
    model_to_device(&m);
    const Config *cf = &m.c;
    int trained_pairs = 0;
    if (mqar_parse(rs.data, &trained_pairs, NULL) && !data && !ids_path && !tok_spec && !max_batches && !strcmp(split, "val"))
        mqar = 1;           // a model trained on mqar is scored on it
    if (!mqar && (examples || pairs)) usage_error("--examples and --kv-pairs are for --task mqar");
    if (mqar) {
        if (!pairs) pairs = trained_pairs;
        if (!pairs) usage_error("%s was not trained on mqar: give --kv-pairs", ckpt);
        int rc = eval_mqar(&m, &rs, (int)(B ? B : rs.h.B), (int)(T ? T : rs.h.T), pairs,
                           examples ? examples : MQAR_EVAL_EXAMPLES);
        model_free(&m);
        return rc;
    }
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
        int64_t ns;
        sum = evaluate_ids(&m, ids_path, logits_path, tok, &ns, &count, &bytes);
        printf("%lld sequences from %s, %lld predicted positions\n", (long long)ns, ids_path, (long long)count);
    } else {
        if (!data) data = rs.data;
        if (!data[0])
            die("%s records no data directory (an imported model): pass --data DIR (token shards from hgrn2 "
                "prepare, with this model's tokenizer) or --ids FILE (lines of token ids)", ckpt);
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
// main

static const char *MAIN_HELP =
    "usage: hgrn2 COMMAND [options]     (hgrn2 COMMAND --help for each)\n"
    "\n"
    "HGRN2 language models: gated linear RNNs with state expansion, trained, evaluated and sampled in C.\n"
    "\n"
    "commands:\n"
    "  train      train a model (no arguments: a small byte-level model on the King James Bible; --task pile,\n"
    "             wiki103, text: a language model on prepared shards; --task mqar: associative recall), or a\n"
    "             classifier on a Long Range Arena task (--task lra-listops, -text, -retrieval, -image, -pathfinder, -pathx),\n"
    "             on Fashion-MNIST in patches (--task fashion-mnist) or on ImageNet (--task imagenet)\n"
    "  eval       held-out loss, perplexity and bits per byte of a checkpoint; MQAR's or a classifier's accuracy;\n"
    "             zero-shot benchmarks (--task mc, lambada); the LRA table of a folder of runs (--task lra)\n"
    "  sample     generate text from a checkpoint\n"
    "  prepare    tokenize raw text, WikiText or (zstd) JSON Lines into compressed token shards, or the Long\n"
    "             Range Arena's, Fashion-MNIST's and ImageNet's files into example files\n"
    "  generate   write synthetic task data (ListOps; Pathfinder and Path-X) in the layout of its official release\n"
    "  tokenize   encode standard input to token ids, or --decode ids to text\n"
    "  bench      time training steps on random tokens (--task imagenet: the JPEG loader and the steps;\n"
    "             --generate: the first token and decoding, batched)\n"
    "  plot       draw runs' training and held-out losses into a PNG (with gnuplot)\n"
    "  import     convert a Hugging Face HGRN2 (flash-linear-attention) or LLaMA (transformers) checkpoint\n"
    "  export     write a checkpoint as a Hugging Face model directory\n"
    "\n"
    "hgrn2 --version prints the commit it was built from.\n";

// OpenMP's idle threads spin while they wait for the next parallel region: libgomp polls 300,000 times before
// it sleeps. On a machine whose cores are busy with other processes a spinning thread takes time from the one
// with work, and sampling (many small regions a token) ran 12 times slower so. Passive waiting costs the idle
// machine instead (each region wakes sleeping threads: sampling 3 times slower). A short spin keeps both:
// 10,000 polls, unless the user chose a policy or a count. libgomp reads them once, as it loads, before main
// runs, so the program runs itself again with the variable set (if that cannot be done, it goes on as it is).
static void omp_short_spin(char **argv) {
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
    if (setenv("GOMP_SPINCOUNT", "10000", 1) != 0) return;
    execv("/proc/self/exe", argv);
}

int main(int argc, char **argv) {
    omp_short_spin(argv);
    if (argc < 2) { fputs(MAIN_HELP, stderr); return EXIT_USAGE; }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) { fputs(MAIN_HELP, stdout); return 0; }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
#if USE_CUDA
        printf("hgrn2 %s (CPU and CUDA backends)\n", HGRN2_VERSION);
#else
        printf("hgrn2 %s (CPU backend; built without CUDA)\n", HGRN2_VERSION);
#endif
        return 0;
    }
    argc--; argv++;
    // a launch of several processes (mpirun) is for training; every other command runs in one
    if (dist_detect() && strcmp(cmd, "train")) {
        char what[64];
        snprintf(what, sizeof what, "'hgrn2 %.40s'", cmd);
        dist_refuse(what);
    }
    if (!strcmp(cmd, "train")) {
        int rc = cmd_train(argc, argv);
        dist_finish();
        return rc;
    }
    if (!strcmp(cmd, "eval")) return cmd_eval(argc, argv);
    if (!strcmp(cmd, "sample")) return cmd_sample(argc, argv);
    if (!strcmp(cmd, "bench")) {
        const char *task = cli_option_value(argc, argv, "--task");
        return task && !strcmp(task, "imagenet") ? cmd_cls_bench(argc, argv) : cmd_bench(argc, argv);
    }
    if (!strcmp(cmd, "import")) return cmd_import(argc, argv);
    if (!strcmp(cmd, "export")) return cmd_export(argc, argv);
    if (!strcmp(cmd, "prepare")) { optind = 0; return cmd_prepare(argc, argv); }
    if (!strcmp(cmd, "tokenize")) { optind = 0; return cmd_tokenize(argc, argv); }
    if (!strcmp(cmd, "generate")) return cmd_generate(argc, argv);
    if (!strcmp(cmd, "plot")) return cmd_plot(argc, argv);
    fprintf(stderr, "hgrn2: unknown command '%s'\n%s", cmd, MAIN_HELP);
    return EXIT_USAGE;
}
