// mqar.h: multi-query associative recall (MQAR, after the Zoology benchmark), a generated task: key-value
// pairs, then queries of the keys among noise; the model must emit each queried key's value (docs/mqar.md).
// Examples are drawn on the fly from (seed, index), so training needs no files and a resumed run draws the
// same ones; the training batches and the held-out accuracy are here too.
#ifndef HGRN2_MQAR_H
#define HGRN2_MQAR_H

#include "common.h"
#include "model.h"
#include "train.h"

#define MQAR_VOCAB 8192                         // keys from its lower half, values from its upper half
#define MQAR_FILLER 0                           // the token between the queries: never a key or a value
#define MQAR_HELD_OUT (UINT64_C(1) << 62)       // example indices from here on are held out: never trained on
#define MQAR_EVAL_EXAMPLES 3000                 // the held-out set of hgrn2 eval (Zoology's test size)

// One shape of examples.
typedef struct {
    int V;              // vocabulary: keys in [1, V/2), values in [V/2, V), 0 the filler
    int T;              // sequence length
    int P;              // key-value pairs per example
    uint64_t seed;      // with the index, picks the example
    int S;              // query slots: (T - 2P) / 2, each a query position and the position after it
    double *w;          // [S] the weight of each slot when the queries are placed: a power law, early ones first
    uint64_t train_examples;   // 0: every training example fresh; N: a fixed set of N, reshuffled every epoch
} Mqar;

// Checks the shape and prepares it; returns NULL, or what is wrong (a usage error for the caller).
const char *mqar_init(Mqar *g, int V, int T, int P, uint64_t seed);
void mqar_free(Mqar *g);
// The pairs of the HGRN2 paper's MQAR grid (docs/mqar.md) for a sequence length (T 64, 128, 256, 512: 4, 8,
// 16, 64 pairs), T / 16 for others.
int mqar_default_pairs(int T);

// Example `index`: ids [T] and targets [T], the value of its key at each query position, -1 elsewhere.
void mqar_example(const Mqar *g, uint64_t index, int32_t *ids, int32_t *targets);

// The most training examples a fixed set may hold (--train-examples)
#define MQAR_MAX_TRAIN_EXAMPLES (UINT64_C(1) << 40)

// The index of the i-th example a training run takes. With g->train_examples N = 0 it is i itself; with N > 0
// the run cycles through examples 0 .. N-1 (the examples of the fresh run's first N indices), each epoch of N
// in an order of its own, a permutation of [0, N) drawn from the seed and the epoch, as a data loader that
// shuffles a fixed training set gives.
uint64_t mqar_train_index(const Mqar *g, uint64_t i);

// How a checkpoint's data field names the task: "mqar:kv-pairs=P", and ",train-examples=N" after it for a
// fixed set of N. mqar_parse returns 1 and sets *P (and *N, 0 without a fixed set, when N is not NULL) when
// spec is such a name, 0 otherwise.
void mqar_spec(char *buf, size_t n, int P, uint64_t N);
int mqar_parse(const char *spec, int *P, uint64_t *N);

// ---- training and evaluation ----

// The training batches: B examples per micro-batch, the run's examples mqar_train_index(g, i) in the order of
// i from `next` (the run's first micro-batch is i = 0, so a run at step s with accumulation A continues at
// s A B). A process of a run of several (dist.h) takes the examples [row0, row0 + rows) of each micro-batch;
// one process all B.
typedef struct {
    const Mqar *g;
    int B, row0, rows;
    uint64_t next;
    int32_t *ids, *tgt;
} MqarBatches;
void mqar_batches_init(MqarBatches *b, const Mqar *g, int B, int row0, int rows, uint64_t next);
void mqar_batches_free(MqarBatches *b);
// The BatchSource next() of MqarBatches (train.h).
void mqar_batches_next(void *ctx, const int32_t **inp, const int32_t **tgt);

// The first n held-out examples, a->B at a time: the mean loss over the answer positions, and in *acc the
// accuracy, the fraction of answer positions whose most likely token is the right value. In a run of several
// processes each scores a->B examples of every batch of a->B x world and the result is that of them all.
double mqar_evaluate(Model *m, Acts *a, const Mqar *g, int64_t n, double *acc);

// What train_run needs of the task (train.h): the batches (rows as in MqarBatches), and eval_batches x B
// held-out examples at each evaluation (0: MQAR_EVAL_EXAMPLES). g and the batches must outlive the run.
typedef struct {
    GenTask task;
    const Mqar *g;
    MqarBatches batches;
} MqarTask;
void mqar_task_init(MqarTask *t, const Mqar *g, int B, int row0, int rows, uint64_t first_example);
void mqar_task_free(MqarTask *t);

#endif
