// cli.c: what the commands' option parsing shares: usage errors, numbers, machine and size options, presets.
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/sysinfo.h>
#include <time.h>

#include "cli.h"
#include "dist.h"
#include "mqar.h"

// ----------------------------------------------------------------------------------------------------------
// Usage errors

static const char *g_prog = "hgrn2";
static const char *g_usage = "hgrn2 COMMAND [options]";

void cli_start(const char *prog, const char *usage) {
    g_prog = prog;
    g_usage = usage;
    optind = 0;     // 0, not 1: glibc's getopt then also forgets where it was inside a group of short options
}

void usage_error(const char *fmt, ...) {
    // the processes mpirun started share one command line and one terminal: rank 0 speaks for them all
    if (g_dist.mpi_launch && g_dist.rank > 0) exit(EXIT_USAGE);
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", g_prog);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nusage: %s\n(see '%s --help')\n", g_usage, g_prog);
    exit(EXIT_USAGE);
}

int64_t arg_int(const char *flag, const char *v, int64_t lo, int64_t hi) {
    long long x;
    if (parse_i64(v, lo, hi, &x)) usage_error("%s needs an integer in [%lld, %lld], got '%s'", flag, (long long)lo, (long long)hi, v);
    return x;
}
double arg_num(const char *flag, const char *v, double lo, double hi) {
    double x;
    if (parse_f64(v, lo, hi, &x)) usage_error("%s needs a number in [%g, %g], got '%s'", flag, lo, hi, v);
    return x;
}

int64_t arg_int_in(const Range *r, const char *v) {
    char flag[64];
    snprintf(flag, sizeof flag, "--%s", r->name);
    return arg_int(flag, v, (int64_t)r->lo, r->hi >= 0x1p63 ? INT64_MAX : (int64_t)r->hi);
}
double arg_num_in(const Range *r, const char *v) {
    char flag[64];
    snprintf(flag, sizeof flag, "--%s", r->name);
    return arg_num(flag, v, r->lo, r->hi);
}

void bad_option(char **argv, int c) {
    if (c == ':') usage_error("option '%s' needs a value", argv[optind - 1]);
    usage_error("unknown option '%s'", argv[optind - 1]);
}

void print_help(const char *usage, const char *help) { printf("usage: %s\n\n%s", usage, help); }

const char *cli_option_value(int argc, char **argv, const char *name) {
    size_t n = strlen(name);
    const char *v = NULL;
    for (int i = 1; i < argc && strcmp(argv[i], "--"); i++) {
        if (!strcmp(argv[i], name) && i + 1 < argc) v = argv[++i];
        else if (!strncmp(argv[i], name, n) && argv[i][n] == '=') v = argv[i] + n + 1;
    }
    return v;
}

// ----------------------------------------------------------------------------------------------------------
// The machine options

int machine_arg(int c, MachineArgs *m) {
    switch (c) {
    case O_DEVICE: m->device = optarg; return 1;
    case O_PRECISION: m->precision = optarg; return 1;
    case O_THREADS: m->threads = arg_int("--threads", optarg, 1, 4096); return 1;
    }
    return 0;
}

void machine_start(const MachineArgs *m) {
    const char *dev = m->device ? m->device : "cpu";
    int mode = PRECISION_BF16;
    if (m->precision) {
        for (mode = 0; mode < NPRECISIONS && strcmp(m->precision, PRECISION_NAMES[mode]); mode++) {}
        if (mode == NPRECISIONS) usage_error("--precision must be bf16, tf32 or fp32, got '%s'", m->precision);
    }
    if (!strcmp(dev, "cpu")) {
        // fp32 is what the CPU computes in, so asking for it is no error
        if (m->precision && mode != PRECISION_FP32)
            usage_error("--precision %s needs --device cuda (the CPU computes in fp32)", m->precision);
    } else if (!strcmp(dev, "cuda")) {
        select_device(1, mode);
    } else {
        usage_error("--device must be cpu or cuda, got '%s'", dev);
    }
    if (m->threads) omp_set_num_threads((int)m->threads);
    else if (!getenv("OMP_NUM_THREADS")) {
        // the processes of a run on one machine share its free cores
        const int n = free_cores() / g_dist.local_world;
        omp_set_num_threads(n > 1 ? n : 1);
    }
}

// The cores that other processes leave free: the cores this process may use, less the busy share of all of
// them over 30 ms of /proc/stat (rounded), at least 1; all of them where /proc/stat cannot be read. The results
// are the same at any thread count; only the time changes.
int free_cores(void) {
    const int n = omp_get_num_procs();
    unsigned long long v[2][8];
    for (int k = 0; k < 2; k++) {
        FILE *f = fopen("/proc/stat", "r");
        if (!f) return n;
        const int got = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[k][0], &v[k][1], &v[k][2],
                               &v[k][3], &v[k][4], &v[k][5], &v[k][6], &v[k][7]);
        fclose(f);
        if (got != 8) return n;
        if (k == 0) nanosleep(&(struct timespec){0, 30 * 1000 * 1000}, NULL);
    }
    // user nice system idle iowait irq softirq steal: all but idle and iowait are busy
    double busy = 0, total = 0;
    for (int i = 0; i < 8; i++) {
        const double d = (double)(v[1][i] - v[0][i]);
        total += d;
        if (i != 3 && i != 4) busy += d;
    }
    if (total <= 0) return n;
    const int machine = get_nprocs();   // /proc/stat's shares are of every core of the machine
    const int freec = n - (int)(busy / total * machine + 0.5);
    return freec < 1 ? 1 : freec;
}

// ----------------------------------------------------------------------------------------------------------
// The model-size options and the presets

int cli_name_index(const char *flag, const char *v, const char *const *names, int n) {
    for (int i = 0; i < n; i++) if (!strcmp(v, names[i])) return i;
    if (n == 2) usage_error("%s must be %s or %s, got '%s'", flag, names[0], names[1], v);
    usage_error("%s must be %s, %s or %s, got '%s'", flag, names[0], names[1], names[2], v);
}

int size_arg(int c, SizeArgs *z) {
    switch (c) {
    case O_LAYERS: z->layers = arg_int_in(&R_LAYERS, optarg); return 1;
    case O_DIM: z->dim = arg_int_in(&R_DIM, optarg); return 1;
    case O_EXPAND: z->expand = arg_int_in(&R_EXPAND, optarg); return 1;
    case O_VOCAB: z->vocab = arg_int_in(&R_VOCAB, optarg); return 1;
    case O_MLP: z->mlp = arg_int_in(&R_MLP, optarg); z->has_mlp = 1; return 1;
    case O_TIE: z->tie = 1; return 1;
    case O_NO_LB: z->nolb = 1; return 1;
    case O_BATCH: z->B = arg_int_in(&R_BATCH, optarg); return 1;
    case O_SEQ: z->T = arg_int_in(&R_SEQ_LEN, optarg); return 1;
    case O_ARCH:
        if ((z->arch = arch_parse(optarg)) < 0) usage_error("--arch must be hgrn2, hgrn1 or transformer, got '%s'", optarg);
        z->has_arch = 1;
        return 1;
    case O_HEADS: z->heads = arg_int_in(&R_DIM, optarg); return 1;
    case O_LAYER: z->layer = cli_name_index("--mixer-layer", optarg, LAYER_NAMES, NLAYERS); return 1;
    case O_BLOCK: z->block = cli_name_index("--block", optarg, BLOCK_NAMES, NBLOCKS); return 1;
    }
    return 0;
}

const Preset PRESETS[] = {
    {"tiny", "bible", 256, 4, 64, 0, 16, 256, 400, 40, 2e-3, 0.1, 0.9, 0.95, SCHED_COSINE,
     "3.5M parameters, byte-level: the default run, minutes on 2 CPU cores", 0, 0},
    {"pile-150m", "pile", 768, 15, 128, 0, 8, 2048, 50000, 2000, 3e-4, 0.1, 0.9, 0.95, SCHED_COSINE, "Pile 0.15B", 0, 0},
    {"pile-385m", "pile", 1024, 26, 128, 0, 8, 2048, 50000, 2000, 3e-4, 0.1, 0.9, 0.95, SCHED_COSINE, "Pile 0.385B", 0, 0},
    {"pile-1b", "pile", 2048, 18, 128, 0, 8, 2048, 50000, 2000, 3e-4, 0.1, 0.9, 0.95, SCHED_COSINE, "Pile 1B", 0, 0},
    {"pile-3b", "pile", 2560, 36, 128, 0, 8, 2048, 50000, 2000, 3e-4, 0.1, 0.9, 0.95, SCHED_COSINE, "Pile 2.9B", 0, 0},
    {"wiki103-44m", "wiki103", 512, 6, 128, 1, 128, 512, 50000, 4000, 5e-4, 0.1, 0.9, 0.98, SCHED_INVSQRT,
     "WikiText-103 44M (GPT-2 BPE), tied embeddings, inverse-sqrt schedule", 0, 0},
    {"mqar", "mqar", 64, 2, 0, 1, 64, 64, 6000, 100, 1e-2, 0, 0.9, 0.95, SCHED_COSINE,
     "MQAR (docs/mqar.md): 2 layers without MLPs, tied embeddings, vocabulary 8192", MQAR_VOCAB, 1},
};
const int NPRESETS = (int)(sizeof PRESETS / sizeof PRESETS[0]);

const Preset *preset_find(const char *name) {
    for (int i = 0; i < NPRESETS; i++) if (!strcmp(PRESETS[i].name, name)) return &PRESETS[i];
    return NULL;
}
const char *task_default_preset(const char *task) {
    if (!strcmp(task, "pile")) return "pile-150m";
    if (!strcmp(task, "wiki103")) return "wiki103-44m";
    if (!strcmp(task, "mqar")) return "mqar";
    return "tiny";
}

Hyper preset_hyper(const Preset *ps, const SizeArgs *z, const Hyper *g) {
    Hyper h = {.B = (int)(z->B ? z->B : ps->B), .T = (int)(z->T ? z->T : ps->T), .accum = g->accum,
               .steps = g->steps ? g->steps : ps->steps, .lr = g->lr ? g->lr : ps->lr,
               .wd = g->wd >= 0 ? g->wd : ps->wd, .beta1 = g->beta1 >= 0 ? g->beta1 : ps->beta1,
               .beta2 = g->beta2 >= 0 ? g->beta2 : ps->beta2, .adam_eps = g->adam_eps, .clip = g->clip,
               .warmup = g->warmup >= 0 ? g->warmup : ps->warmup, .sched = g->sched >= 0 ? g->sched : ps->sched,
               .seed = g->seed, .embed_drop = g->embed_drop};
    h.min_lr = g->min_lr >= 0 ? g->min_lr : h.lr / 10;      // a tenth of the peak unless given
    h.decay_frac = h.sched != SCHED_WSD ? 0 : g->decay_frac > 0 ? g->decay_frac : 0.2;
    if (h.warmup > h.steps) h.warmup = h.steps;
    return h;
}

Config preset_config(const Preset *ps, const SizeArgs *z, int vocab) {
    int D = (int)(z->dim ? z->dim : ps->D);
    const MixerKind mixer = z->has_arch ? (MixerKind)z->arch : MIXER_CAUSAL;
    const int hgrn1 = mixer == MIXER_HGRN1, tpp = mixer == MIXER_TRANSFORMER;
    int K = (int)(z->expand ? z->expand : hgrn1 ? 1 : ps->K ? ps->K : D < 128 ? D : 128);
    if (z->heads && !tpp)
        usage_error("--heads is for --arch transformer; HGRN's heads are --dim / --expand-ratio");
    if (tpp) {
        // the transformer's K is its head dim, from --heads or LLaMA's 64
        if (z->expand) usage_error("--expand-ratio is HGRN's; the transformer's heads are set by --heads");
        if (z->heads && D % z->heads) usage_error("--heads %lld must divide --dim %d", (long long)z->heads, D);
        K = z->heads ? D / (int)z->heads : D % 64 ? D : 64;
    }
    return (Config){.V = (int)(z->vocab ? z->vocab : ps->vocab ? ps->vocab : vocab), .D = D,
                    .L = (int)(z->layers ? z->layers : ps->L), .K = K, .mixer = mixer,
                    .I = z->has_mlp ? (int)z->mlp : ps->no_mlp ? 0 : MLP_DEFAULT, .tie = z->tie || ps->tie,
                    .lower_bound = !z->nolb && !tpp, .layer = (LayerKind)z->layer, .block = (BlockKind)z->block,
                    // fla's RMSNorms take 1e-6; Zoology's LayerNorms PyTorch's default
                    .eps = z->block == BLOCK_ZOOLOGY ? 1e-5 : 1e-6};
}
