// cli.h: what the commands' option parsing shares: usage errors, numbers, option ids, machine options, presets.
#ifndef HGRN2_CLI_H
#define HGRN2_CLI_H

#include <getopt.h>

#include "common.h"
#include "model.h"
#include "train.h"

#define DEFAULT_OUT "runs/default"          // train's run directory, and where the other commands look
#define DEFAULT_BIBLE_DATA "data/bible"     // the built-in corpus, prepared on first use

// ---- usage errors ----

// Names the command for usage_error (prog, e.g. "hgrn2 train", and its one-line usage) and resets getopt
// for a fresh parse of its arguments. Each command calls it first.
void cli_start(const char *prog, const char *usage);
// "PROG: message", the usage line and a pointer to --help on stderr, then exit 2.
__attribute__((noreturn, format(printf, 1, 2))) void usage_error(const char *fmt, ...);
// An option's value as an integer (a number) in [lo, hi], or a usage error naming flag.
int64_t arg_int(const char *flag, const char *v, int64_t lo, int64_t hi);
double arg_num(const char *flag, const char *v, double lo, double hi);
// The same for the setting r (model.h, train.h): the flag is --NAME, the bounds r's.
int64_t arg_int_in(const Range *r, const char *v);
double arg_num_in(const Range *r, const char *v);
// getopt_long's answer for an unknown option (or ':' for one missing its value; the option string must
// start with ':'), turned into the usage error.
__attribute__((noreturn)) void bad_option(char **argv, int c);
// --help: the usage line, a blank line, then the help text, on stdout.
void print_help(const char *usage, const char *help);
// The index of v among the n names of flag's values (2 or 3 of them); a usage error naming them otherwise.
int cli_name_index(const char *flag, const char *v, const char *const *names, int n);
// The value of option name ("--task") in a command's argv, "--task X" or "--task=X" (the last one given), read
// before the command parses its options, to choose which command parses them; NULL when absent.
const char *cli_option_value(int argc, char **argv, const char *name);

// ---- option ids of the model commands ----

enum {
    O_HELP = 'h', O_TASK = 256, O_PRESET, O_DATA, O_OUT, O_STEPS, O_CKPT, O_RESUME, O_INIT, O_SEED, O_DEVICE,
    O_LAYERS, O_DIM, O_EXPAND, O_VOCAB, O_MLP, O_TIE, O_NO_LB, O_BATCH, O_SEQ, O_ACCUM, O_LR, O_MIN_LR,
    O_WARMUP, O_SCHED, O_WD, O_BETA1, O_BETA2, O_ADAM_EPS, O_CLIP, O_EVAL_EVERY, O_EVAL_BATCHES,
    O_CKPT_EVERY, O_LOG_EVERY, O_THREADS, O_SPLIT, O_IDS, O_LOGITS, O_PROMPT, O_PROMPT_IDS, O_TOKENS,
    O_TEMP, O_TOPK, O_TOPP, O_PRINT_IDS, O_TOKENIZER, O_MAX_BATCHES, O_HF, O_STOP_AT, O_PRECISION, O_PROFILE,
    O_KV_PAIRS, O_EXAMPLES, O_ARCH, O_HEADS, O_LAYER, O_BLOCK, O_LAST
};

// Options of every command that runs a model: --help, --seed and the machine options.
#define COMMON_OPTS \
    {"help", no_argument, 0, O_HELP}, {"seed", required_argument, 0, O_SEED}, \
    {"device", required_argument, 0, O_DEVICE}, {"threads", required_argument, 0, O_THREADS}, \
    {"precision", required_argument, 0, O_PRECISION}
// Options of the commands that build a model from a preset (train, bench).
#define SIZE_OPTS \
    {"preset", required_argument, 0, O_PRESET}, {"layers", required_argument, 0, O_LAYERS}, \
    {"dim", required_argument, 0, O_DIM}, {"expand-ratio", required_argument, 0, O_EXPAND}, \
    {"vocab", required_argument, 0, O_VOCAB}, {"mlp-width", required_argument, 0, O_MLP}, \
    {"tie-embeddings", no_argument, 0, O_TIE}, {"no-lower-bound", no_argument, 0, O_NO_LB}, \
    {"batch", required_argument, 0, O_BATCH}, {"seq-len", required_argument, 0, O_SEQ}, \
    {"arch", required_argument, 0, O_ARCH}, {"heads", required_argument, 0, O_HEADS}, \
    {"mixer-layer", required_argument, 0, O_LAYER}, {"block", required_argument, 0, O_BLOCK}

// ---- the machine options: --device, --threads, --precision ----

typedef struct { const char *device, *precision; int64_t threads; } MachineArgs;   // NULL, 0: not given
// Takes option c when it is one of the three; returns whether it was.
int machine_arg(int c, MachineArgs *m);
// Checks them together (usage errors), selects the backend (cpu unless --device cuda) and the CPU's thread
// count (--threads, else OMP_NUM_THREADS, else the cores other processes leave free).
void machine_start(const MachineArgs *m);
int free_cores(void);   // the cores other processes leave free (the default thread count)

// ---- the model-size options and the presets ----

// 0: not given; but --mlp-width 0 is a width (no MLP), so mlp counts only where has_mlp says it was given,
// and arch (a MixerKind: --arch) only where has_arch says so. heads: the transformer's attention heads. layer:
// HGRN2's layer (a LayerKind: --mixer-layer; 0, fla's, unless given); block: the blocks (a BlockKind: --block).
typedef struct {
    int64_t layers, dim, expand, vocab, mlp, B, T, heads;
    int tie, nolb, has_mlp, arch, has_arch, layer, block;
} SizeArgs;
// Takes option c when it is one of SIZE_OPTS; returns whether it was.
int size_arg(int c, SizeArgs *z);

// The paper's configurations (docs/model.md) and the small default that trains in minutes on a laptop.
// K 0: the expand ratio is min(D, 128) (1 with --arch hgrn1, whose state is a vector). vocab 0: the data's. no_mlp: blocks without an MLP (else fla's width).
// A transformer ignores K: its heads are 64 wide where 64 divides D (LLaMA's head dim), one head of D otherwise.
typedef struct {
    const char *name, *task;
    int D, L, K, tie, B, T;
    int64_t steps, warmup;
    double lr, wd, beta1, beta2;
    int sched;
    const char *about;
    int vocab, no_mlp;
} Preset;
extern const Preset PRESETS[];
extern const int NPRESETS;

const Preset *preset_find(const char *name);           // NULL when there is none of that name
const char *task_default_preset(const char *task);
// The model of a preset with the size flags applied; vocab is the vocabulary when neither --vocab nor the
// preset gives one. A size flag of another architecture (--heads without --arch transformer, --expand-ratio
// with it) is a usage error.
Config preset_config(const Preset *ps, const SizeArgs *z, int vocab);
// The optimization settings of a preset with the flags given applied: --batch and --seq-len from z; in g,
// steps and lr 0 and min_lr, wd, beta1, beta2, warmup, sched < 0 mean not given, while accum, adam_eps,
// clip and seed are taken as they are (their defaults do not depend on the preset).
Hyper preset_hyper(const Preset *ps, const SizeArgs *z, const Hyper *g);

#endif
