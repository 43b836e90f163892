// cmd_bench.c: the bench command: the training step's speed (with --profile, the GPU time of every op), or with
// --generate the time to the first token and the decoding speed at batch 1 and 64.
#include <omp.h>

#include "common.h"
#include "backend.h"
#include "model.h"
#include "train.h"
#include "checkpoint.h"
#include "cli.h"
#include "commands.h"

// ----------------------------------------------------------------------------------------------------------
// hgrn2 bench: training speed on random tokens; with --generate, decoding speed

static const char *BENCH_USAGE =
    "hgrn2 bench [--preset NAME] [--layers N --dim N ...] [--batch B] [--seq-len T] [--steps N]\n"
    "       hgrn2 bench --generate [--ckpt PATH | --preset NAME --layers N ...] [--batch B] [--prompt-len P] [--tokens N]\n"
    "                   [--profile]";
static const char *BENCH_HELP =
    "Time training steps (forward, backward, AdamW) on random tokens; prints the time to the first finished\n"
    "step and the median tokens/s of the rest. With --generate, time generation instead.\n"
    "\n"
    "  --preset NAME        a preset of 'hgrn2 train' (default tiny), sizes as in train:\n"
    "  --layers N --dim N --expand-ratio N --vocab N (default 50304, or 256 for tiny) --mlp-width N\n"
    "  --tie-embeddings --no-lower-bound --batch B --seq-len T --arch hgrn2|hgrn1|transformer\n"
    "                       --heads N (transformer) --mixer-layer fla|lra --block fla|zoology\n"
    "  --steps N            timed steps after the first (default 5)\n"
    "  --profile            (GPU) also time every op of the timed steps and print where the time goes; with\n"
    "                       --generate, of the decoding steps (then run op by op, without a CUDA graph)\n"
    "  --threads N --device cpu|cuda --seed N --precision bf16|tf32|fp32 (GPU; default bf16)\n"
    "Generation (--generate): B sequences of P random token ids prefilled together, then N tokens each decoded\n"
    "greedily, B at a time, as 'hgrn2 sample --batch B' decodes them; after a warm-up, a table of the time to\n"
    "the first token (the prefill and its sampling) and the decoding speed, per batch size:\n"
    "  --generate           time generation\n"
    "  --ckpt PATH          the model of a checkpoint (default: the size flags' model, random weights)\n"
    "  --batch B            sequences decoded together (default: both 1 and 64)\n"
    "  --prompt-len P       prompt tokens (default 128)\n"
    "  --tokens N           tokens generated per sequence, the first from the prefill (default 128)\n";

// bench's options beyond the common and size ones
enum { OB_GENERATE = O_LAST, OB_PROMPT_LEN };

// Every step trains on the same random tokens: targets are the ids shifted by one (ids holds N + 1).
static void same_batch(void *ids, const int32_t **inp, const int32_t **tgt) {
    *inp = ids;
    *tgt = (const int32_t *)ids + 1;
}

static int dbl_cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }

// One generation of ntok tokens for B random prompts of P ids, greedy, as sample decodes: the prefill of all B
// together, then ntok - 1 steps of B tokens (the last token is never fed back). *first: seconds from the start to
// the first tokens picked (the prefill and its pick); *decode: seconds of the steps after.
static void generate_once(Model *m, Acts *pre, Acts *one, DecodeState *st, const int32_t *prompt, int64_t ntok,
                          int32_t *feed, double *first, double *decode) {
    OP(zero, st->s, st->n);
    st->pos = 0;
    const int B = one->B;
    int32_t *steps = xmalloc((size_t)GREEDY_CHUNK * B * sizeof(int32_t));
    double t0 = now_s();
    model_forward_greedy(m, pre, prompt, st, feed);
    double t1 = now_s();
    for (int64_t i = 1; i < ntok; ) {   // as sample: up to GREEDY_CHUNK steps, then the host reads their picks
        const int n = (int)(ntok - i < GREEDY_CHUNK ? ntok - i : GREEDY_CHUNK);
        model_greedy_steps(m, one, feed, st, n, steps);
        memcpy(feed, steps + (int64_t)(n - 1) * B, (size_t)B * sizeof(int32_t));
        i += n;
    }
    *decode = now_s() - t1;
    *first = t1 - t0;
    free(steps);
}

// bench --generate: the table's row of batch B (after a warm-up, the same generation once);
// with profile, then the GPU time of each op in a decoding step (the steps run op by op, without a graph)
static void bench_generate_row(Model *m, int B, int P, int64_t ntok, uint64_t seed, int profile) {
    const Config *c = &m->c;
    Acts pre, one;
    acts_alloc(&pre, c, B, P, 0);
    acts_alloc(&one, c, B, 1, 0);
    DecodeState st;
    decode_state_alloc(&st, c, B, (int)(P + ntok));
    int32_t *prompt = xmalloc((size_t)B * P * sizeof(int32_t)), *feed = xmalloc((size_t)B * sizeof(int32_t));
    uint64_t rng = seed;
    for (int64_t i = 0; i < (int64_t)B * P; i++) prompt[i] = (int32_t)(splitmix64(&rng) % (uint64_t)c->V);
    double first, decode;
    generate_once(m, &pre, &one, &st, prompt, ntok, feed, &first, &decode);   // warm-up (records the graphs)
    generate_once(m, &pre, &one, &st, prompt, ntok, feed, &first, &decode);
    char dec[96];
    if (ntok > 1) snprintf(dec, sizeof dec, "%14.3f | %15.0f", decode / (double)(ntok - 1) * 1e3, (double)B * (ntok - 1) / decode);
    else snprintf(dec, sizeof dec, "%14s | %15s", "-", "-");   // one token: no step after the prefill
    printf("| %5d | %16.2f | %16.0f | %s |\n", B, first * 1e3, (double)B * P / first, dec);
#if USE_CUDA
    if (profile && ntok > 1) {
        fflush(stdout);
        // from the prompt again: the transformer's cache has room for P + ntok positions
        OP(zero, st.s, st.n);
        st.pos = 0;
        model_forward_greedy(m, &pre, prompt, &st, feed);
        for (int64_t i = 1; i < ntok; i++) {
            g_prof = 1;
            model_forward_greedy(m, &one, feed, &st, feed);
            g_prof = 0;
            cuda_prof_step();
        }
        printf("\nbatch %d, ", B);
        cuda_prof_print((int)(ntok - 1));
        printf("\n");
    }
#else
    (void)profile;
#endif
    free(prompt); free(feed);
    decode_state_free(&st);
    acts_free(&pre); acts_free(&one);
}

// hgrn2 bench --generate (the options read by cmd_bench)
static int bench_generate(const char *ckpt, const Preset *ps, const SizeArgs *z, int64_t P, int64_t ntok, uint64_t seed,
                          int profile) {
    Model m = {0};
    if (ckpt) {
        RunState rs;
        checkpoint_load(ckpt, &m, &rs, 0);
    } else {
        Config cf = preset_config(ps, z, !strcmp(ps->name, "tiny") ? 256 : 50304);
        const char *bad = config_finish(&cf);
        if (bad) usage_error("%s", bad);
        model_alloc(&m, &cf);
        model_init(&m, seed);
    }
    if (m.c.mixer == MIXER_TRANSFORMER && P + ntok > R_SEQ_LEN.hi)
        usage_error("--prompt-len %lld and --tokens %lld exceed the %.0f positions of the transformer's key/value cache",
                    (long long)P, (long long)ntok, R_SEQ_LEN.hi);
    model_to_device(&m);
    print_config(&m.c, &m.lay, stdout);
    if (g_gpu) printf("| device       | %s\n", device_name());
    else printf("| device       | cpu with %d threads\n", omp_get_max_threads());
    printf("| generate     | prompts of %lld random ids, %lld new tokens each, greedy\n\n", (long long)P, (long long)ntok);
    printf("| batch | first token (ms) | prefill tokens/s | decode ms/step | decode tokens/s |\n");
    printf("|-------|------------------|------------------|----------------|-----------------|\n");
    const int batches[] = {1, 64};
    if (z->B) bench_generate_row(&m, (int)z->B, (int)P, ntok, seed, profile);
    else for (int i = 0; i < 2; i++) bench_generate_row(&m, batches[i], (int)P, ntok, seed, profile);
    if (g_gpu) printf("\npeak GPU memory %.0f MiB\n", dev_peak_mib());
    model_free(&m);
    return 0;
}

int cmd_bench(int argc, char **argv) {
    static const struct option opts[] = {COMMON_OPTS, SIZE_OPTS, {"steps", required_argument, 0, O_STEPS},
                                         {"profile", no_argument, 0, O_PROFILE}, {"generate", no_argument, 0, OB_GENERATE},
                                         {"ckpt", required_argument, 0, O_CKPT}, {"tokens", required_argument, 0, O_TOKENS},
                                         {"prompt-len", required_argument, 0, OB_PROMPT_LEN}, {0, 0, 0, 0}};
    cli_start("hgrn2 bench", BENCH_USAGE);
    const char *preset_name = "tiny", *ckpt = NULL;
    MachineArgs mach = {0};
    int64_t steps = 5, prompt_len = 128, ntok = 128;
    int profile = 0, generate = 0, set[OB_PROMPT_LEN + 1] = {0};
    uint64_t seed = 1;
    SizeArgs z = {0};
    int c;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        if (c >= 0 && c <= OB_PROMPT_LEN) set[c] = 1;
        if (size_arg(c, &z) || machine_arg(c, &mach)) continue;
        switch (c) {
        case O_HELP: print_help(BENCH_USAGE, BENCH_HELP); return 0;
        case O_PRESET: preset_name = optarg; break;
        case O_STEPS: steps = arg_int("--steps", optarg, 1, 1 << 20); break;
        case O_PROFILE: profile = 1; break;
        case O_SEED: seed = (uint64_t)arg_int_in(&R_SEED, optarg); break;
        case OB_GENERATE: generate = 1; break;
        case O_CKPT: ckpt = optarg; break;
        case O_TOKENS: ntok = arg_int("--tokens", optarg, 1, 1 << 20); break;
        case OB_PROMPT_LEN: prompt_len = arg_int("--prompt-len", optarg, 1, 1 << 20); break;
        default: bad_option(argv, c);
        }
    }
    if (optind < argc) usage_error("unexpected argument '%s'", argv[optind]);
    // each mode refuses the other's flags rather than ignore them
    static const struct { int opt; const char *name; } train_only[] = {{O_SEQ, "--seq-len"}, {O_STEPS, "--steps"}},
        gen_only[] = {{O_CKPT, "--ckpt"}, {O_TOKENS, "--tokens"}, {OB_PROMPT_LEN, "--prompt-len"}};
    for (size_t i = 0; i < sizeof train_only / sizeof train_only[0]; i++)
        if (generate && set[train_only[i].opt])
            usage_error("%s times training steps: it does not go with --generate", train_only[i].name);
    for (size_t i = 0; i < sizeof gen_only / sizeof gen_only[0]; i++)
        if (!generate && set[gen_only[i].opt]) usage_error("%s goes with --generate", gen_only[i].name);
    if (ckpt) {
        static const struct { int opt; const char *name; } sizes[] = {{O_PRESET, "--preset"}, {O_LAYERS, "--layers"},
            {O_DIM, "--dim"}, {O_EXPAND, "--expand-ratio"}, {O_VOCAB, "--vocab"}, {O_MLP, "--mlp-width"},
            {O_TIE, "--tie-embeddings"}, {O_NO_LB, "--no-lower-bound"}, {O_ARCH, "--arch"}, {O_HEADS, "--heads"},
            {O_LAYER, "--mixer-layer"}, {O_BLOCK, "--block"}};
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
            if (set[sizes[i].opt]) usage_error("%s cannot be given with --ckpt: the model comes from the checkpoint", sizes[i].name);
    }
    machine_start(&mach);
    if (profile && !g_gpu) usage_error("--profile times GPU ops; it needs --device cuda");
    const Preset *ps = preset_find(preset_name);
    if (!ps) usage_error("unknown preset '%s' (see 'hgrn2 train --help')", preset_name);
    if (generate) return bench_generate(ckpt, ps, &z, prompt_len, ntok, seed, profile);
    double t_start = now_s();
    Config cf = preset_config(ps, &z, !strcmp(ps->name, "tiny") ? 256 : 50304);
    const char *bad = config_finish(&cf);
    if (bad) usage_error("%s", bad);
    // AdamW at a constant 1e-4; the steps leave out the gradient norm and clipping (train_step's measure_norm)
    Hyper h = {.B = (int)(z.B ? z.B : ps->B), .T = (int)(z.T ? z.T : ps->T), .accum = 1, .steps = steps + 1, .lr = 1e-4,
               .min_lr = 1e-5, .wd = 0.1, .beta1 = 0.9, .beta2 = 0.95, .adam_eps = 1e-8, .clip = 1, .warmup = 0,
               .sched = SCHED_CONSTANT};
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
    const BatchSource src = {same_batch, ids};
    for (int64_t s = 0; s <= steps; s++) {
        double t0 = now_s();
        train_step(&m, &a, &h, s + 1, &src, 0);
        dev_sync();
        times[s] = now_s() - t0;
        if (s == 0) t_first = now_s() - t_start;
    }
#if USE_CUDA
    if (profile) {   // separate steps: the events themselves cost a little, so the timings above go without
        for (int64_t s = 0; s < steps; s++) {
            g_prof = 1;
            train_step(&m, &a, &h, s + 1, &src, 0);
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
    if (g_gpu) {
        const char *label;
        double peak = dev_peak_flops(&label);
        if (peak > 0) printf("MFU %.1f%% of %.0f TFLOP/s (%s) | ", 100 * flops / med / peak, peak / 1e12, label);
        printf("peak GPU memory %.0f MiB\n", dev_peak_mib());
    }
#if USE_CUDA
    if (profile) cuda_prof_print((int)steps);
#endif
    free(times); free(ids);
    acts_free(&a);
    model_free(&m);
    return 0;
}
