// model.h: the HGRN2 model: config, the parameter table, parameters, activations, forward, backward, AdamW.
// The model is written once over the ops of ops.h (through OP, backend.h) and runs on either backend. Its
// architecture and parameterisation follow flash-linear-attention's HGRN2 (docs/model.md).
#ifndef HGRN2_MODEL_H
#define HGRN2_MODEL_H

#include "common.h"
#include "backend.h"

// ---- configuration ----

// A model is an input stage, L blocks (a token mixer and an MLP, each behind an RMSNorm and around a
// residual; the token mixer alone when the MLP width is 0) and a head. The kinds below pick each stage's
// form (model.c switches on them); a task that needs another form adds a kind and its cases beside the
// existing ones, and the compiler's -Wswitch points at every stage still to write. Zero is the language
// model, so a Config written without them is one.
typedef enum { INPUT_TOKENS } InputKind;        // token ids through an embedding table
// The token mixer is the model's architecture (--arch): HGRN2's HGRU2, whose state is a K x Dv matrix per head,
// HGRN1's HGRU, whose state is a vector of D (docs/model.md "HGRN1's token mixer"), or the Transformer++
// baseline's causal softmax attention with rotary positions (docs/model.md "Transformer++"). Checkpoints store it.
typedef enum {
    MIXER_CAUSAL,       // hgrn2: the HGRU2 recurrence, left to right
    MIXER_HGRN1,        // hgrn1: the element-wise HGRU recurrence, left to right (K = 1)
    MIXER_TRANSFORMER,  // transformer: LLaMA's attention, H heads of K values (K: the head dim)
    NMIXERS
} MixerKind;
extern const char *const ARCH_NAMES[NMIXERS];   // "hgrn2", "hgrn1", "transformer": the values of --arch
// The MixerKind of an --arch value, or -1 when it names none.
int arch_parse(const char *name);
typedef enum { HEAD_NEXT_TOKEN } HeadKind;      // the final norm and a classifier over the vocabulary: next token
// HGRN2's mixer layer (--mixer-layer), in the language model and the classifiers alike: LAYER_FLA,
// flash-linear-attention's HGRN2 (q = swish, v as it is, o = S^T q / sqrt(K), an RMSNorm, projections without
// biases), or LAYER_LRA, the layer of the HGRN2 authors' own code, the one of their LRA and MQAR runs (q =
// sigmoid, v = silu, o = S^T q unscaled, a LayerNorm with a bias, projections with biases; docs/model.md).
typedef enum { LAYER_FLA, LAYER_LRA, NLAYERS } LayerKind;
extern const char *const LAYER_NAMES[NLAYERS];       // "fla", "lra"
// The blocks around the mixer (--block): BLOCK_FLA, flash-linear-attention's (RMSNorms before the mixer and the
// MLP and at the end; without an MLP the block is the mixer alone), or BLOCK_ZOOLOGY, the Zoology benchmark's
// language model, on which the HGRN2 authors ran MQAR: LayerNorms with biases in those three places, and without
// an MLP its state mixer is the identity, so the block adds its second norm's output to the stream (docs/model.md).
typedef enum { BLOCK_FLA, BLOCK_ZOOLOGY, NBLOCKS } BlockKind;
extern const char *const BLOCK_NAMES[NBLOCKS];       // "fla", "zoology"

typedef struct {
    int V;          // vocabulary size
    int D;          // hidden size
    int L;          // layers
    int K;          // expand ratio: key (forget-gate) dim per head; the transformer's head dim
    int H;          // heads = D / K
    int Dv;         // value dim per head = D / H
    int I;          // MLP width; 0: no MLP, each block is its token mixer alone (MLP_DEFAULT: fla's width)
    int tie;        // lm_head tied to the embedding
    int lower_bound;// use the learned lower bounds of the forget gates
    double eps;     // eps of attn_norm, mlp_norm and the final norm (RMSNorms, or Zoology's LayerNorms)
    InputKind input;
    MixerKind mixer;
    HeadKind head;
    LayerKind layer;    // HGRN2's layer (MIXER_CAUSAL only): fla's (0) or the authors' (LAYER_LRA)
    BlockKind block;    // the blocks' norms: fla's RMSNorms (0) or Zoology's LayerNorms (BLOCK_ZOOLOGY)
} Config;

#define EPS_O 1e-5          // HGRN2's output norm always uses this eps (either layer's); HGRN1's uses the model's
                            // (docs/model.md)
#define ROPE_THETA 10000.0  // the transformer's rotary base, LLaMA's (import refuses any other)

// The ranges of the sizes (the flags --vocab, --dim, --layers, --expand-ratio and --mlp-width).
extern const Range R_VOCAB, R_DIM, R_LAYERS, R_EXPAND, R_MLP;

// MLP width of fla: 256 * ceil(int(D * hidden_ratio * 2 / 3) / 256), hidden_ratio 4 unless a config says.
int mlp_width(int D, double ratio);
// A Config's I before config_finish: fla's width for its D, mlp_width(D, 4). (0 is a width: no MLP.)
#define MLP_DEFAULT (-1)
// Fills the derived sizes (I = mlp_width(D, 4) when MLP_DEFAULT); returns NULL when the configuration is
// valid, otherwise what is wrong. Calling it again on its result changes nothing.
const char *config_finish(Config *c);

// ---- the parameter table ----
// One row per tensor drives allocation, initialisation, AdamW, checkpoints and the Hugging Face names.
// Parameters live in one buffer: the global tensors first, then one block per layer in which q/f/i and
// gate/up sit next to each other, so each pair or triple is one matrix product.

enum {
    P_EMB, P_LB, P_NORM, P_LM, P_NORM_B,        // global (P_NORM_B: BLOCK_ZOOLOGY only, the final norm's bias)
    P_ATTN_NORM, P_WQ, P_WF, P_WI, P_GNORM, P_WO, P_MLP_NORM, P_WGATE, P_WUP, P_WDOWN,  // per layer
    P_BQFI, P_BO, P_GNORM_B,                    // per layer, LAYER_LRA only: the biases of [q|f|i], o and g_norm
    P_ATTN_NORM_B, P_MLP_NORM_B,                // per layer, BLOCK_ZOOLOGY only: the block norms' biases
    NPARAM
};
#define P_FIRST_LAYER P_ATTN_NORM

typedef enum { INIT_NORMAL, INIT_ONES, INIT_ZEROS } Init;
// HGRN1 (MIXER_HGRN1) keeps the same rows: its i, f and g projections sit in the slots of q, f and i, so the
// product by the triple gives [i | f | g] (the first 2D columns are what op_gates_fwd reads as [q | f]); where
// a slot holds another tensor, hgrn1 names it. The transformer (MIXER_TRANSFORMER) keeps them too: its q, k and
// v projections sit in the slots of q, f and i, so the triple gives [q | k | v]; o_proj and the norms are in
// the slots of the same role (mlp_norm holds post_attention_layernorm); g_norm and lower_bounds stay empty.
typedef struct {
    const char *name;   // our name
    const char *hf;     // Hugging Face (fla) name, %d = layer
    int decay;          // AdamW weight decay applies
    Init init;
    const char *hgrn1;  // fla's HGRNForCausalLM name where HGRN1's tensor in this slot differs, else NULL
    const char *llama;  // the transformer's tensor in this slot, named as in LlamaForCausalLM; NULL: none
    int id;             // the tensor's number in model_init's seeds, fixed when it was added: a new row in the
                        // table changes no other tensor's initial values
} ParamDesc;
extern const ParamDesc PARAMS[NPARAM];

// Shape [rows, cols] of one tensor (one layer's, for per-layer tensors). 0 x 0 when absent: lm_head when
// tied, lower_bounds without lower bounds, mlp_norm, gate/up and down_proj without an MLP, g_norm in a
// transformer, the three biases unless the layer is LAYER_LRA, the norms' biases unless the block is BLOCK_ZOOLOGY
// (whose mlp_norm is there without an MLP too).
void param_shape(const Config *c, int p, int64_t *rows, int64_t *cols);
int64_t param_numel(const Config *c, int p);
// The Hugging Face name of tensor p of layer l in a model of configuration c (HGRN2's, HGRN1's or LLaMA's names).
void hf_name(char *buf, size_t n, const Config *c, int p, int l);

typedef struct {
    int64_t off[NPARAM];    // global tensors: offset in the buffer; per-layer: offset inside a layer block
    int64_t layers_at;      // where layer 0's block starts
    int64_t layer_size;     // elements per layer block
    int64_t n;              // total elements
} Layout;

Layout layout_of(const Config *c);
// The tensor p (of layer l, for per-layer tensors) inside a parameter-shaped buffer.
static inline real *tensor_at(const Layout *lay, real *base, int p, int l) {
    if (p < P_FIRST_LAYER) return base + lay->off[p];
    return base + lay->layers_at + (int64_t)l * lay->layer_size + lay->off[p];
}

// ---- the model: parameters, their gradients and AdamW moments (one allocation each) ----

typedef struct {
    Config c;
    Layout lay;
    real *params, *grads, *m, *v;   // grads, m, v are NULL until training asks for them
    int on_device;                  // params, m and v moved to the GPU (grads are always backend memory)
    // ZeRO-1 over the processes of a run (model_shard): params and grads hold `padded` values, lay.n rounded up
    // to a multiple of the process count (the tail stays 0), in one part of `part` values per process; this
    // process updates [opt_lo, opt_hi), the stretch of its part within lay.n, and m and v hold AdamW's moments
    // of its part alone. One process: padded = part = opt_hi = lay.n, opt_lo = 0.
    int64_t padded, part, opt_lo, opt_hi;
    // model_backward's word, as it goes, that a stretch of grads is final (no op of this backward writes it
    // again): grads_ready(grads_ready_ctx, lo, hi) after each layer's backward with that layer's block, then
    // once at the end with the global tensors (the embedding, the head, the lower bounds), finished last. The
    // stretches come in descending order and tile [0, padded): the first, layer L-1's, runs on to the padding.
    // The trainer sets it for the backward of a step's last micro-batch in a run of several processes, to
    // start their reduction while the backward goes on (train_step, dist.h); NULL: nothing is said.
    void (*grads_ready)(void *ctx, int64_t lo, int64_t hi);
    void *grads_ready_ctx;
} Model;

// Tensor p of layer l: its weights and its gradient.
static inline real *W(Model *m, int p, int l) { return tensor_at(&m->lay, m->params, p, l); }
static inline real *G(Model *m, int p, int l) { return tensor_at(&m->lay, m->grads, p, l); }

// Parameters are made and loaded on the host (model_alloc, model_init, checkpoint_load), then moved to
// the backend's memory by model_to_device; gradients and AdamW moments are born there.
void model_alloc(Model *m, const Config *c);
// Before model_to_device, in a run of `world` processes: this process's part of the optimizer (rank), the
// parameters padded, and moments loaded from a checkpoint (for every parameter) cut to the part. Nothing
// changes for a world of 1.
void model_shard(Model *m, int rank, int world);
void model_to_device(Model *m);
void model_alloc_training(Model *m);
void model_free(Model *m);
// fla's initialisation: linear weights and the embedding ~ N(0, 0.02), norms 1, lower bounds 0; the same
// values at any thread count. Zoology's blocks draw the output products (o_proj, down_proj) from N(0, 0.02 /
// sqrt(2 L)) instead, as Zoology initialises them.
void model_init(Model *m, uint64_t seed);
// A host copy of n values at p (the pointer itself on the CPU); free *tmp afterwards.
const real *host_view(const Model *m, const real *p, int64_t n, real **tmp);
// The startup table's rows for the model: sizes and the parameter count.
void print_config(const Config *c, const Layout *lay, FILE *f);

// ---- activations ----
#define GREEDY_GRAPHS 4                           // model_greedy_steps: graphs of 2, 4, 8, 16 steps
#define GREEDY_CHUNK (2 << (GREEDY_GRAPHS - 1))   // the longest: 16
// Activations of one forward pass over B x T tokens, carved from one allocation. With `train`, every layer
// keeps the inputs of its norms, of the gates and of SwiGLU (resid, xmid, qfi, o, gu and the rstds); the
// cheap elementwise results in between (h1, q, k, g, yo, h2, a) are shared by all layers and recomputed
// in the backward, bit for bit as the forward made them. That keeps 5D + 2I values per token and layer
// instead of 11D + 3I. A transformer keeps in qfi its rotated [q | k | v], in o the attention's output, and
// per row and head its log-sum-exp (lse); it has no gates, so q, k, g, their gradients and rstdo are not
// allocated. Without `train`, every per-layer buffer is shared.
typedef struct {
    int B, T, train;
    int64_t N;
    int64_t cap;                            // the tokens allocated for (acts_reshape)
    real *lb;                               // [L, HK] lower bounds of this forward
    real *resid;                            // [L+1, N, D] residual stream entering each layer, and the last
    real *xmid;                             // [L, N, D] residual between mixer and MLP
    real *rstd1, *qfi, *o, *rstdo;          // per layer: [N] [N,2HK+D] [N,D] [N] (LAYER_LRA: [2N], its
                                            // LayerNorm's mean, then rstd; rstd1, rstd2 and rstdf likewise
                                            // with BLOCK_ZOOLOGY)
    real *rstd2;                            // per layer: [N]
    real *lse;                              // per layer: [N,H], the transformer's attention log-sum-exps
    opnd *gu;                               // per layer: [N,2I], an operand
    real *q, *k, *g;                        // shared: [N,HK] x3
    real *vact, *dvs;                       // LAYER_LRA, shared: silu(v) [N,D], and in training its gradient
    opnd *h1, *yo, *h2, *a;                 // shared operands (ops.h): [N,D] x3 [N,I]
    opnd *hf;                               // final norm [N,D]
    real *rstdf;                            // [N]
    real *logits;                           // [cls_rows, V] (model.c)
    real *losses;                           // [N]
    int32_t *ids_d, *tgt_d;                 // on the GPU: device copies of the ids and targets [N]
    real *losses_h;                         // host copy of the losses [N]
    // The sparse head (model.c), for targets on a few positions only (MQAR's answers)
    int32_t *sel_h, *sel_d;                 // the rows with a target, then their targets [2N]; sel_d on the GPU
    int sparse;                             // the last forward took it (its backward is then done)
    int32_t *pred;                          // NULL, or [N] given by the caller: see model_forward
    // Dropout on the embeddings in a training forward (and its backward), set by the trainer before each call:
    // p (0: none), the call's seed, and the global index of this process's first sequence; sequence b's mask
    // comes from mix64(drop_seed ^ (drop_row0 + b)), so it does not depend on how the batch is split
    double embed_drop;
    uint64_t drop_seed;
    int64_t drop_row0;
    // backward scratch
    real *dx, *dt, *dh, *dqfi, *dq, *dk, *dg, *dout, *da, *dlb;
    opnd *dgu;                              // [N,2I]
    opnd *dyo;                              // dx or dqfi as an operand, where that format is not real's
    const real *dyo_of;                     // the stream gradient whose operand dyo holds (rmsnorm_bwd_opnd), or NULL
    // Decoding on the GPU (model_forward): the CUDA graph of a one-token step, recorded for graph_B sequences,
    // the decoding state at graph_state and the memory as dev_mem_epoch() found it; the steps taken since;
    // whether a recording failed; whether it ends in the greedy picks (model_forward_greedy) or the logits
    void *graph;
    const real *graph_state;
    uint64_t graph_epoch;
    int graph_B, graph_runs, graph_failed, graph_best;
    // model_greedy_steps' graphs of 2, 4, 8 and 16 greedy steps (steps [GREEDY_CHUNK][B] on the GPU: their
    // picks), each recorded for the state, batch and memory its fields say
    void *sgraph[GREEDY_GRAPHS];
    const real *sgraph_state[GREEDY_GRAPHS];
    uint64_t sgraph_epoch[GREEDY_GRAPHS];
    int sgraph_B[GREEDY_GRAPHS], sgraph_failed;
    // The GPU's training step queued without a wait (model_queue_batch; train.c records it as a CUDA graph): the
    // batch in page-locked memory, where the queued uploads read it [N] each; the head it takes (sparse or not),
    // its targets and the losses the forward leaves in losses_h (the targets' rows for the sparse head, all rows
    // else); the step's StepCtl on the host ([0] sent, [1] received) and on the GPU
    int32_t *ids_h, *tgt_h;
    int queued, q_sparse;
    int64_t q_count, q_nloss;
    StepCtl *ctl_h, *ctl_d;
    // train.c's graph of that step, recorded for the memory as dev_mem_epoch() found it, for the head (q_sparse,
    // q_nloss) and the norm's measure as they were then; the steps queued since it was made or dropped
    void *tgraph;
    uint64_t tgraph_epoch;
    int tgraph_runs, tgraph_failed, tgraph_sparse, tgraph_measure;
    int64_t tgraph_nloss;
    int32_t *steps_d;
    uint64_t steps_epoch;                   // the memory as a step of steps_B sequences left it (0: none yet):
    int steps_B;                            // what recording the graphs needs allocated exists then
    void *mem;
    int64_t bytes;
} Acts;

void acts_alloc(Acts *a, const Config *c, int B, int T, int train);
// Uses activations allocated for N tokens at another shape B x T with B x T <= N: every part is sized by the
// token count and indexed by the current N, so one allocation serves batches of varying shape (zero-shot
// scoring pads each batch to its own longest sequence).
void acts_reshape(Acts *a, int B, int T);
void acts_free(Acts *a);

// ---- forward and backward ----

// ---- the decoding state ----
// What model_forward carries from one call to the next while decoding (a prompt, then a token at a time): the
// recurrent state of HGRN, [L][B,H,K,Dv] (L x B x D for HGRN1), or the transformer's key/value cache, [L][B,ctx]
// rows [k | v] of 2D (k already rotated) for up to ctx positions. It lives in the backend's memory.
typedef struct {
    real *s;
    int64_t n;      // values in s
    int B, ctx;     // sequences; positions the cache has room for (the transformer's only limit)
    int pos;        // positions seen so far: the next call's first token stands at this position
} DecodeState;
// A zero state (an empty cache) for B sequences of up to ctx positions, pos 0.
void decode_state_alloc(DecodeState *st, const Config *c, int B, int ctx);
void decode_state_free(DecodeState *st);
// Row b of dst becomes row sb of src, in every layer (a backend copy): sequences prefilled apart (one prompt
// each, of any length) then decode together. The transformer's cache takes src's positions [0, src->pos), which
// must fit dst->ctx; its rows share one pos, which this leaves to the caller (dst->pos), so rows decoded
// together must have seen as many positions. HGRN's state has no positions: dst->pos is only a count there.
void decode_state_set_row(const Config *c, DecodeState *dst, int b, const DecodeState *src, int sb);

// Forward pass. ids [B,T]; targets [B,T] (< 0: no loss there) or NULL.
// st: NULL (zero state, nothing kept), or the state carried in and out (prefill and decoding; B = st->B, and a
// transformer's st->pos + T at most st->ctx). The call advances st->pos by T.
// logits_out: NULL, or [B,T,V] (all positions) / [B,V] (last_only) receiving the logits.
// With a->train, the classifier's backward runs here too (it is fused with the loss: logits are never kept)
// with dloss/dlogit = loss_scale, and dhf is left in a->dx for model_backward.
// With targets on at most a quarter of the positions, the head's norm and classifier run at those rows alone
// (the same function; a->sparse says so). With a->pred set, a forward with targets that is not training also
// writes pred[n] = the most likely token (the first of equal logits) at every row n with a target.
// Returns the sum of the losses over valid targets; *count receives their number.
// On the GPU, an HGRN model decoding one token per sequence (st, T 1, last_only, logits_out, no targets) replays a
// CUDA graph of the step from the second step on (model.c); g_decode_graphs 0 (or HGRN2_CUDA_GRAPHS=0) turns
// that off, -1 (the default) reads the variable. HGRN2's one-token steps run the fused step (model.c: five ops a
// layer); g_decode_fused 0 (or HGRN2_DECODE_FUSED=0) runs the layers op by op instead.
double model_forward(Model *m, Acts *a, const int32_t *ids, const int32_t *targets, DecodeState *st,
                     real *logits_out, int last_only, double loss_scale, int64_t *count);
extern int g_decode_graphs, g_decode_fused;
// Greedy decoding's forward: model_forward of ids [B,T] with last_only, keeping of each row's logits at its last
// position only the most likely token, best[B] (the first of equal logits, as sample_token picks at temperature
// 0). The pick is made where the logits are, so on the GPU B ids cross to the host instead of B x V logits. The
// one-token step replays a CUDA graph as model_forward's does.
void model_forward_greedy(Model *m, Acts *a, const int32_t *ids, DecodeState *st, int32_t *best);
// n greedy steps of one token a sequence: the first fed ids [B], each later one fed the picks of the step before;
// out [n][B] receives every step's picks. The same tokens, state and bits as n calls of model_forward_greedy fed
// their own picks. On the GPU, after the first step of a batch, the steps replay CUDA graphs of 16, 8, 4 or 2
// steps (one graph and one wait a graph instead of one a token; HGRN2_CUDA_GRAPHS=0 or HGRN2_GREEDY_STEPS=0 or
// g_greedy_steps 0: a step at a time).
void model_greedy_steps(Model *m, Acts *a, const int32_t *ids, DecodeState *st, int n, int32_t *out);
extern int g_greedy_steps;
// Backward pass after a training forward: gradients accumulate (+=) into m->grads; m->grads_ready, when set,
// hears of each stretch as it becomes final.
void model_backward(Model *m, Acts *a, const int32_t *ids);

// ---- optimizer ----

// The sum of the squares of the gradients this process updates ([opt_lo, opt_hi)): of every gradient on one
// process; a run of several adds theirs (train_step).
double grad_sumsq(Model *m);
// The GPU's training step without a wait, for train.c to record as a CUDA graph and replay. On the host,
// model_queue_batch copies a batch into a's page-locked buffers and decides the head as model_forward would
// (returns the count of targets; the buffers must stay as they are until the step is done).
// model_forward_queued queues the batch's upload, the forward and the copy of the losses back, and nothing waits;
// once the host has waited, model_queued_loss is the summed loss model_forward would have returned.
// model_queue_pinned: the buffers are page-locked (a recording can read them). The GPU only.
int64_t model_queue_batch(Acts *a, const int32_t *ids, const int32_t *targets);
void model_forward_queued(Model *m, Acts *a, double loss_scale);
double model_queued_loss(const Acts *a);
int model_queue_pinned(const Acts *a);
// AdamW's constants; the learning rate comes per step from the schedule.
typedef struct { double beta1, beta2, eps, wd; } AdamW;
// One AdamW update of every tensor, or of the parameters [opt_lo, opt_hi) of a part, at learning rate lr;
// weight decay only where the parameter table says (per tensor, so a part's stretch of each tensor takes its
// tensor's). grad_scale multiplies every gradient first (clipping); step counts from 1.
void adamw_step(Model *m, const AdamW *o, double lr, double grad_scale, int64_t step);
// grad_sumsq into *ss on the GPU, and adamw_step with lr, scale and skip from ctl on the GPU (common.h's StepCtl)
void grad_sumsq_queued(Model *m, double *ss);
void adamw_step_queued(Model *m, const AdamW *o, const StepCtl *ctl);

// ---- decoding ----

typedef struct { double p; int32_t id; } Cand;
// One token from logits[V]: greedy at temperature 0 (rng and c unused: NULL is fine), else
// softmax(logits / temperature) cut to top-k/top-p; c is scratch of V candidates. (cmd_sample.c)
int32_t sample_token(const real *logits, int V, double temp, int topk, double topp, uint64_t *rng, Cand *c);

#endif
