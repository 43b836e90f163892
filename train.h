// train.h: training: hyperparameters, schedules, the step train and bench share, evaluation, the run loop.
#ifndef HGRN2_TRAIN_H
#define HGRN2_TRAIN_H

#include "common.h"
#include "model.h"
#include "data.h"
#include "tokenizer.h"

typedef enum { SCHED_COSINE, SCHED_INVSQRT, SCHED_CONSTANT, SCHED_WSD, NSCHED } Sched;
extern const char *const SCHED_NAMES[NSCHED];     // indexed by Sched, as --schedule spells them

// The optimization settings of a run (checkpoints keep them, so a resumed run continues with the same).
typedef struct {
    int B, T, accum;
    int64_t steps;
    double lr, min_lr, wd, beta1, beta2, adam_eps, clip;
    int64_t warmup;
    int sched;
    double decay_frac;  // wsd: the share of the steps over which the rate decays to min_lr (0 otherwise)
    uint64_t seed;
    double embed_drop;  // dropout on the embeddings in training (Zoology's embed_dropout; 0: none)
} Hyper;

// The ranges of the settings of a run (train's flags of the same names). A checkpoint holds the same
// settings, checked against the same ranges when it is loaded.
extern const Range R_BATCH, R_SEQ_LEN, R_ACCUM, R_STEPS, R_WARMUP, R_LR, R_MIN_LR, R_WD, R_BETA1, R_BETA2,
    R_ADAM_EPS, R_CLIP, R_SEED, R_DECAY_FRAC, R_EMBED_DROP;

// The learning rate of step `step` (from 1): a linear warmup, then the schedule. wsd holds the peak until
// the last ceil(decay_frac x steps) steps, which fall linearly to min_lr (reached at the last step).
double lr_at(const Hyper *h, int64_t step);

// ---- the training step, shared by train and bench ----

// Where a step's micro-batches come from: next() points *inp and *tgt at B x T ids each (targets < 0: no
// loss there), valid until its next call.
typedef struct {
    void (*next)(void *ctx, const int32_t **inp, const int32_t **tgt);
    void *ctx;
} BatchSource;

typedef struct {
    double loss;        // the mean over the micro-batches of their mean loss
    double grad_norm;   // the global gradient norm before clipping (0 when not measured)
    double lr;          // the learning rate AdamW used
} StepResult;

// Optimizer step number `step` (from 1): the gradients zeroed; forward and backward over h->accum
// micro-batches from src, each loss scaled by 1 / (B T accum); with measure_norm, the global gradient norm
// and clipping to it when h->clip > 0 (bench leaves it out of what it times); AdamW at lr_at(h, step).
// When the loss or the norm is not finite, AdamW is skipped and the parameters stay as they were.
// In a run of several processes (dist.h) h->B is the global batch, of which src gives and `a` holds this
// process's B / world rows: the gradients are summed into each process's part (ZeRO-1, model_shard), the
// loss and the norm are those of the global batch, each process updates its part and then every process
// receives the others' (the same result as one process, up to the order of the sums).
StepResult train_step(Model *m, Acts *a, const Hyper *h, int64_t step, const BatchSource *src, int measure_norm);
// On the GPU the step is queued and, from its second step, replayed as a CUDA graph (train.c says when); 0 (or
// HGRN2_CUDA_GRAPHS=0 in the environment) runs it op by op as the CPU does. -1: as the environment says.
extern int g_train_graphs;

// ---- evaluation ----

// Splits a loader batch of B rows of T+1 tokens into inputs and targets; padding (-1) becomes input 0 with
// no target. Ids at or above the vocabulary are refused here (dies naming `what`), before they reach the model.
void split_batch(const int32_t *buf, int B, int T, int V, int32_t *inp, int32_t *tgt, const char *what);
// The UTF-8 bytes the valid targets stand for (for bits per byte with any tokenizer).
int64_t target_bytes(const Tokenizer *tok, const int32_t *tgt, int64_t n);
// Mean loss over the whole (or the first max_batches batches of the) sequential split. With a tokenizer,
// *nbytes receives the bytes of text the predicted tokens stand for. In a run of several processes each
// scores its rows of every batch (ld from loader_open_rows) and the result is that of the whole batches.
double evaluate(Model *m, Acts *a, Loader *ld, int64_t max_batches, int64_t *ntargets,
                const Tokenizer *tok, int64_t *nbytes);
// The summed next-token loss of the sequences in ids_path (one sequence of token ids per line, whitespace-
// separated), each its own forward from a zero state. *nseq: the sequences; *count: the predicted positions;
// *nbytes (with a tokenizer): the bytes they stand for. With logits_path, every position's logits are also
// written there as little-endian float32 [sequences, T, V] (the sequences must then have one length T).
double evaluate_ids(Model *m, const char *ids_path, const char *logits_path, const Tokenizer *tok, int64_t *nseq,
                    int64_t *count, int64_t *nbytes);

// ---- data ----

// The tokenizer spec a prepared data directory was made with (its meta.txt) into out; 0 when it says none.
int data_tokenizer_spec(const char *dir, char *out, size_t cap);
// Prepares the default corpus (the King James Bible from Debian's bible-kjv) in dir on first use.
void prepare_bible(const char *dir);

// ---- the training run ----

typedef struct RunState RunState;   // checkpoint.h

// Creates the run directory out and locks it for the rest of the process: out/.lock, held with flock(2),
// which the kernel releases however the process ends, so a killed run leaves no stale lock. The file names
// the holder (its pid and command line, argv as a command received it); when another process holds it,
// dies saying so.
void run_dir_lock(const char *out, int argc, char **argv);
// On --resume: cuts the log at path (tab-separated, the step first) back to the rows of steps 1 to last_step,
// once each, under header; a missing log becomes the header alone. Written through path.tmp and a rename.
void log_cut(const char *path, const char *header, int64_t last_step);

// A task whose examples are generated rather than read from shards (MQAR, mqar.h): train_run takes its
// batches and its held-out evaluation from here.
typedef struct {
    BatchSource batches;            // the micro-batches of the run's steps, in order from its first step
    // The held-out loss, and in *acc the task's accuracy in [0, 1]; eval_batches as TrainPlan's.
    double (*evaluate)(void *ctx, Model *m, Acts *a, int64_t eval_batches, double *acc);
    void *ctx;
} GenTask;

// How a run reports, saves and stops.
typedef struct {
    const char *task, *data;        // named in the startup table
    const char *out;                // the run directory: model.ckpt and log.tsv
    int64_t eval_every;             // held-out loss every N steps (0: at the end only; < 0: a quarter of the run)
    int64_t eval_batches;           // batches per evaluation (0: the whole split)
    int64_t ckpt_every;             // as eval_every, for checkpoints
    int64_t log_every;              // a progress line every N steps
    int64_t stop_at;                // save and stop after this step, as if interrupted (0: run to the end)
    int resume;                     // continue log.tsv (cut back to the checkpoint's step) instead of starting it
    const GenTask *gen;             // a generated task: batches and evaluation from it, no loaders (NULL: shards)
    int64_t keep;                   // > 0: also keep the newest `keep` checkpoints as model_step<N>.ckpt, and
                                    // the best held-out loss's as best.ckpt
    int64_t max_bad_steps;          // steps with a non-finite loss or gradient in a row before the run stops
} TrainPlan;

// What the language model's and the classifier's runs share beyond the stop signals:
// --keep: the checkpoint just saved at ckpt_path kept also as OUT/model_step<step>.ckpt, the newest `keep` of them.
void keep_step_checkpoint(const char *out, const char *ckpt_path, int64_t step, int64_t keep);
// On a resume without --keep, a warning when OUT/best.ckpt exists (it will not be updated).
void warn_resume_without_keep(const char *out, int resume, int64_t keep);
// The progress flags of a run (how often it evaluates, checkpoints and prints, how many batches an evaluation
// takes, how many step checkpoints it keeps, how many non-finite steps in a row it skips) are not part of its
// checkpoint. OUT/progress keeps the ones the run was started or last resumed with, a "--flag value" a line, and --resume takes from it each flag that the
// command line does not give again (and says which it took). v points at the plan's fields, in the order of
// the enum (-1 there: the run's default, which it works out itself; NULL: a flag the command does not have);
// given says which the command line gave. Every process reads; the first writes the file anew, through a rename.
enum { PF_EVAL_EVERY, PF_EVAL_BATCHES, PF_CKPT_EVERY, PF_LOG_EVERY, PF_KEEP, PF_MAX_BAD, PF_EVAL_TEST, PF_N };
void progress_flags_sync(const char *out, int resume, int64_t *const v[PF_N], const int given[PF_N]);
// A number from every row of a run's log.tsv (the header skipped): of column `column` (from 0; -1: the last),
// its lowest (LOG_MIN: INFINITY if none), highest (LOG_MAX: -INFINITY if none) or last (LOG_LAST: 0 if none).
// Empty and unreadable fields are passed over; so is a missing log.
typedef enum { LOG_MIN, LOG_MAX, LOG_LAST } LogPick;
double log_column(const char *log_path, int column, LogPick pick);
// For the tests of --max-bad-steps: whether HGRN2_FAULT_NONFINITE=A-B names this step (its loss is then NaN).
int fault_nonfinite(int64_t step);

// Ctrl-C (SIGINT) or SIGTERM during a training run (the language model's and the classifier's): the run
// finishes the step in progress, saves and stops. A second signal while that happens takes the default
// action; a checkpoint's write-and-rename keeps the last one whole.
void stop_signals_catch(void);      // from now on a signal is noted, not acted on
int stop_signal(void);              // the signal noted, or 0
void stop_signals_release(void);    // the default actions again
// After the checkpoint of a stop is saved: what happened and how to continue. Returns 128 + the signal.
int stop_signal_report(const char *ckpt_path, int64_t step, int64_t steps, const char *out);

// Trains the model from rs->step to rs->h.steps on train_ld, evaluating on val_ld (NULL: none), or on the
// plan's generated task (both loaders NULL): the startup table, a progress line and a log.tsv row per step
// (with a generated task, the held-out accuracy too), checkpoints (with the AdamW moments and rs), and a
// summary. Ctrl-C or SIGTERM saves and stops after the step in progress. Returns 0, or 128 + the signal
// that stopped it.
int train_run(Model *m, RunState *rs, Loader *train_ld, Loader *val_ld, const TrainPlan *p);

#endif
