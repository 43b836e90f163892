// train.c: training: schedules, the step train and bench share, evaluation, the default corpus, the run loop.
// The run loop prints the progress and writes log.tsv and checkpoints; Ctrl-C stops it after saving.
#include <math.h>
#include <signal.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <omp.h>
#include <dirent.h>

#include "train.h"
#include "checkpoint.h"
#include "dist.h"

const char *const SCHED_NAMES[NSCHED] = {"cosine", "invsqrt", "constant", "wsd"};

const Range R_BATCH = {"batch", 1, 1 << 20}, R_SEQ_LEN = {"seq-len", 1, 1 << 24}, R_ACCUM = {"accum", 1, 1 << 20},
            R_STEPS = {"steps", 1, 0x1p40}, R_WARMUP = {"warmup", 0, 0x1p40}, R_LR = {"lr", 1e-12, 10},
            R_MIN_LR = {"min-lr", 0, 10}, R_WD = {"wd", 0, 10}, R_BETA1 = {"beta1", 0, 0.999999},
            R_BETA2 = {"beta2", 0, 0.99999999}, R_ADAM_EPS = {"adam-eps", 1e-30, 1}, R_CLIP = {"clip", 0, 1e9},
            R_SEED = {"seed", 0, 0x1p63}, R_DECAY_FRAC = {"decay-fraction", 1e-6, 1},
            R_EMBED_DROP = {"embed-dropout", 0, 0.9};

double lr_at(const Hyper *h, int64_t step) {
    if (h->warmup > 0 && step <= h->warmup) return h->lr * (double)step / (double)h->warmup;
    switch (h->sched) {
    case SCHED_INVSQRT: return h->lr * sqrt((double)(h->warmup > 0 ? h->warmup : 1) / (double)step);
    case SCHED_CONSTANT: return h->lr;
    case SCHED_WSD: {
        // the decay's length is fixed by the total, so a run resumed with a larger --steps from inside its
        // stable phase continues exactly as if it had been started with that total
        int64_t decay = (int64_t)ceil(h->decay_frac * (double)h->steps), start = h->steps - decay;
        if (decay < 1 || step <= start) return h->lr;
        double t = (double)(step - start) / (double)decay;
        if (t > 1) t = 1;
        return h->lr + (h->min_lr - h->lr) * t;
    }
    default: {
        double span = (double)(h->steps - h->warmup);
        double t = span > 0 ? (double)(step - h->warmup) / span : 1.0;
        if (t > 1) t = 1;
        return h->min_lr + 0.5 * (h->lr - h->min_lr) * (1 + cos(M_PI * t));
    }
    }
}

// ----------------------------------------------------------------------------------------------------------
// Batches and evaluation

// Splits a loader batch of B rows of T+1 tokens into inputs and targets; padding (-1) becomes input 0 with
// no target. Ids at or above the vocabulary are refused here, once, before they reach the model.
void split_batch(const int32_t *buf, int B, int T, int V, int32_t *inp, int32_t *tgt, const char *what) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int32_t x = buf[(int64_t)b * (T + 1) + t], y = buf[(int64_t)b * (T + 1) + t + 1];
            if (x >= V || y >= V)
                die("%s holds token id %d, outside the model's vocabulary of %d", what, x >= V ? x : y, V);
            inp[(int64_t)b * T + t] = x < 0 ? 0 : x;
            tgt[(int64_t)b * T + t] = (x < 0 || y < 0) ? -1 : y;
        }
}

// The UTF-8 bytes the valid targets stand for (for bits per byte with any tokenizer).
int64_t target_bytes(const Tokenizer *tok, const int32_t *tgt, int64_t n) {
    ByteBuf b = {0};
    int64_t bytes = 0;
    for (int64_t i = 0; i < n; i++) {
        if (tgt[i] < 0) continue;
        b.n = 0;
        tokenizer_decode_one(tok, tgt[i], 0, &b);
        bytes += (int64_t)b.n;
    }
    free(b.data);
    return bytes;
}

// Mean loss over the whole (or the first max_batches batches of the) sequential split. With a tokenizer,
// *nbytes receives the bytes of text the predicted tokens stand for.
double evaluate(Model *m, Acts *a, Loader *ld, int64_t max_batches, int64_t *ntargets,
                const Tokenizer *tok, int64_t *nbytes) {
    int B = a->B, T = a->T;
    int32_t *buf = xmalloc((size_t)B * (T + 1) * sizeof(int32_t));
    int32_t *inp = xmalloc((size_t)B * T * sizeof(int32_t)), *tgt = xmalloc((size_t)B * T * sizeof(int32_t));
    loader_reset(ld);
    double sum = 0;
    int64_t cnt = 0, bytes = 0;
    for (int64_t i = 0; max_batches <= 0 || i < max_batches; i++) {
        if (loader_next(ld, buf) == 0) break;
        split_batch(buf, B, T, m->c.V, inp, tgt, "the evaluation data");
        int64_t c;
        sum += model_forward(m, a, inp, tgt, NULL, NULL, 0, 0, &c);
        cnt += c;
        if (tok) bytes += target_bytes(tok, tgt, (int64_t)B * T);
    }
    free(buf); free(inp); free(tgt);
    if (g_dist.world > 1) {     // each process scored its rows of every batch
        double tot[3] = {sum, (double)cnt, (double)bytes};
        dist_allreduce_host(tot, 3, DIST_SUM);
        sum = tot[0];
        cnt = (int64_t)tot[1];
        bytes = (int64_t)tot[2];
    }
    if (ntargets) *ntargets = cnt;
    if (nbytes) *nbytes = bytes;
    return cnt ? sum / cnt : NAN;
}

// Reads FILE: one sequence of ids per line. Returns the number of sequences; seqs/lens are allocated.
static int64_t read_id_file(const char *path, int V, int32_t ***seqs, int64_t **lens) {
    FILE *f = fopen(path, "r");
    if (!f) die("cannot open %s: %s", path, strerror(errno));
    int64_t n = 0, cap = 0, lineno = 0;
    *seqs = NULL; *lens = NULL;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t got;
    while ((got = getline(&line, &lcap, f)) != -1) {
        lineno++;
        int32_t *ids = NULL;
        int64_t k = 0, kcap = 0;
        char *p = line;
        for (;;) {
            while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
            if (!*p) break;
            char *end;
            errno = 0;
            long long v = strtoll(p, &end, 10);
            if (end == p || errno || (*end && !strchr(" \t\r\n", *end)))
                die("%s line %lld: '%.20s' is not a token id", path, (long long)lineno, p);
            if (v < 0 || v >= V) die("%s line %lld: token id %lld is outside the vocabulary [0, %d)", path, (long long)lineno, v, V);
            if (k == kcap) { kcap = kcap ? 2 * kcap : 64; ids = xrealloc(ids, (size_t)kcap * sizeof(int32_t)); }
            ids[k++] = (int32_t)v;
            p = end;
        }
        if (!k) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            *seqs = xrealloc(*seqs, (size_t)cap * sizeof(int32_t *));
            *lens = xrealloc(*lens, (size_t)cap * sizeof(int64_t));
        }
        (*seqs)[n] = ids;
        (*lens)[n] = k;
        n++;
    }
    if (ferror(f)) die("reading %s failed: %s", path, strerror(errno));
    free(line);
    fclose(f);
    if (!n) die("%s holds no token ids", path);
    return n;
}

double evaluate_ids(Model *m, const char *ids_path, const char *logits_path, const Tokenizer *tok, int64_t *nseq,
                    int64_t *count, int64_t *nbytes) {
    const Config *cf = &m->c;
    int32_t **seqs;
    int64_t *lens;
    int64_t ns = read_id_file(ids_path, cf->V, &seqs, &lens);
    FILE *lf = NULL;
    if (logits_path) {
        for (int64_t i = 1; i < ns; i++)
            if (lens[i] != lens[0]) die("--logits needs sequences of one length; %s line %lld has %lld ids, the first %lld",
                                        ids_path, (long long)i + 1, (long long)lens[i], (long long)lens[0]);
        lf = fopen(logits_path, "wb");
        if (!lf) die("cannot create %s: %s", logits_path, strerror(errno));
    }
    double sum = 0;
    int64_t cnt_all = 0, bytes = 0;
    Acts a = {0};
    float *lbuf = NULL;
    for (int64_t i = 0; i < ns; i++) {
        int64_t n = lens[i];
        if (!a.mem || a.T != n) { if (a.mem) acts_free(&a); acts_alloc(&a, cf, 1, (int)n, 0); }
        int32_t *tgt = xmalloc((size_t)n * sizeof(int32_t));
        for (int64_t t = 0; t < n; t++) tgt[t] = t + 1 < n ? seqs[i][t + 1] : -1;
        real *logits = lf ? xmalloc((size_t)(n * cf->V) * sizeof(real)) : NULL;
        int64_t cnt;
        sum += model_forward(m, &a, seqs[i], tgt, NULL, logits, 0, 0, &cnt);
        cnt_all += cnt;
        if (tok) bytes += target_bytes(tok, tgt, n);
        if (lf) {
            lbuf = xrealloc(lbuf, (size_t)(n * cf->V) * sizeof(float));
            for (int64_t j = 0; j < n * cf->V; j++) lbuf[j] = (float)logits[j];
            if (fwrite(lbuf, sizeof(float), (size_t)(n * cf->V), lf) != (size_t)(n * cf->V))
                die("writing %s failed: %s", logits_path, strerror(errno));
        }
        free(logits); free(tgt); free(seqs[i]);
    }
    if (lf && fclose(lf) != 0) die("writing %s failed: %s", logits_path, strerror(errno));
    free(lbuf); free(seqs); free(lens);
    if (a.mem) acts_free(&a);
    *nseq = ns;
    *count = cnt_all;
    if (nbytes) *nbytes = bytes;
    return sum;
}

// ----------------------------------------------------------------------------------------------------------
// Data

int data_tokenizer_spec(const char *dir, char *out, size_t cap) {
    char *path = xasprintf("%s/meta.txt", dir), *line = NULL;
    size_t lcap = 0;
    FILE *f = fopen(path, "r");
    int found = 0;
    if (f) {
        while (getline(&line, &lcap, f) != -1) {
            if (!strncmp(line, "tokenizer ", 10)) {
                line[strcspn(line, "\r\n")] = 0;
                if (strlen(line + 10) >= cap) die("the tokenizer path in %s is longer than %zu bytes", path, cap - 1);
                memcpy(out, line + 10, strlen(line + 10) + 1);
                found = 1;
                break;
            }
        }
        fclose(f);
    }
    free(line);
    free(path);
    return found;
}

void prepare_bible(const char *dir) {
    if (data_has_split(dir, "train") && data_has_split(dir, "val")) return;
    mkdir_p(dir);
    char *txt = xasprintf("%s/kjv.txt", dir), *tmp = xasprintf("%s.tmp", txt);
    if (system("command -v bible >/dev/null 2>&1") != 0)
        die("the default corpus needs Debian's bible-kjv package: run 'make setup' (or apt-get install bible-kjv)");
    printf("preparing the default corpus: the King James Bible (Debian's bible-kjv) into %s\n", dir);
    char *cmd = xasprintf("bible 'gen1:1-rev22:21' > '%s' 2>/dev/null", tmp);
    int rc = system(cmd);
    free(cmd);
    struct stat st;
    if (rc != 0 || stat(tmp, &st) != 0 || st.st_size < 1000000) {
        unlink(tmp);
        die("running 'bible' to extract the King James Bible failed; reinstall bible-kjv and bible-kjv-text");
    }
    if (rename(tmp, txt) != 0) die("renaming %s failed: %s", tmp, strerror(errno));
    PrepareOptions o;
    prepare_defaults(&o);
    const char *inputs[] = {txt};
    o.task = PREPARE_TEXT;
    o.inputs = inputs;
    o.ninputs = 1;
    o.tokenizer = "byte";
    o.out = dir;
    o.val_fraction = 0.01;
    prepare_run(&o);
    free(txt);
    free(tmp);
}

// ----------------------------------------------------------------------------------------------------------
// The training step

// For the tests of --max-bad-steps: HGRN2_FAULT_NONFINITE=A-B makes the loss of steps A to B not finite, as a
// diverging step's would be (the step then changes nothing).
int fault_nonfinite(int64_t step) {
    const char *e = getenv("HGRN2_FAULT_NONFINITE");
    long long a, b;
    return e && sscanf(e, "%lld-%lld", &a, &b) == 2 && step >= a && step <= b;
}

// The GPU's step as one CUDA graph. A step's few hundred to few thousand launches cost the host a few
// microseconds each, and the GPU waits for each of them after the step's waits (the batch's upload, the loss,
// the norm): at a small model's step of a few milliseconds those waits and launches are most of the step. So
// on one GPU, with one micro-batch and no dropout on the embeddings (whose masks change every step), the step
// runs queued: the batch from page-locked memory, the loss and the norm left on the GPU, AdamW taking its
// learning rate, clipping scale and the skip of a non-finite step from the GPU (StepCtl), one wait at the end.
// That sequence is recorded at the second such step and replayed from then on, one launch a step, until the
// memory it reads changes (dev_mem_epoch), or the head (sparse or not, and how many targets), or measure_norm;
// then it runs as it is once and is recorded again. Every op is the one train_step's other path launches, in
// the same order, so both give the same bits (make test-gpu checks it). HGRN2_CUDA_GRAPHS=0 or
// g_train_graphs = 0 takes the other path; bench --profile, which times every op, does too.
int g_train_graphs = -1;   // -1: as HGRN2_CUDA_GRAPHS says (on unless it is 0)
static int queued_step_on(const Hyper *h) {
    if (!g_gpu || g_prof || h->accum != 1 || g_dist.world > 1 || h->embed_drop > 0) return 0;
    if (g_train_graphs < 0) {
        const char *e = getenv("HGRN2_CUDA_GRAPHS");
        g_train_graphs = !(e && !strcmp(e, "0"));
    }
    return g_train_graphs;
}

// The ops of a queued step (the graph's content): ctl up, the gradients cleared, the forward with its losses
// back, their check, the backward, the norm, AdamW, ctl back.
static void queue_step(Model *m, Acts *a, const Hyper *h, int measure_norm) {
    dev_upload_async(a->ctl_d, &a->ctl_h[0], sizeof(StepCtl));
    OP(zero, m->grads, m->padded);
    a->embed_drop = 0;
    model_forward_queued(m, a, 1.0 / ((double)h->B * h->T));
    dev_flag_nonfinite(&a->ctl_d->skip, a->losses, a->q_sparse ? NULL : a->tgt_d, a->q_nloss);
    model_backward(m, a, a->ids_h);
    if (measure_norm) grad_sumsq_queued(m, &a->ctl_d->ss);
    adamw_step_queued(m, &(AdamW){h->beta1, h->beta2, h->adam_eps, h->wd}, a->ctl_d);
    dev_download_async(&a->ctl_h[1], a->ctl_d, sizeof(StepCtl));
}

static StepResult train_step_queued(Model *m, Acts *a, const Hyper *h, int64_t step, const BatchSource *src,
                                    int measure_norm) {
    StepResult r = {.lr = lr_at(h, step)};
    const int32_t *inp, *tgt;
    src->next(src->ctx, &inp, &tgt);
    const int64_t cnt = model_queue_batch(a, inp, tgt);
    if (!a->ctl_h) {
        a->ctl_h = dev_host_alloc(2 * sizeof(StepCtl));
        a->ctl_d = dev_alloc(sizeof(StepCtl), "the training step's numbers");
    }
    // lr and the bias corrections as cuda_adamw_multi derives them; clipping and the skip as below
    const double bc1 = 1 - pow(h->beta1, (double)step), bc2 = 1 - pow(h->beta2, (double)step);
    a->ctl_h[0] = (StepCtl){.clip = h->clip, .lr = (float)r.lr, .rbc1 = (float)(1 / bc1), .rbc2 = (float)(1 / bc2),
                            .measure = measure_norm, .skip = fault_nonfinite(step)};
    // a graph recorded for other memory, another head or another measure is dropped
    if (a->tgraph && (a->tgraph_epoch != dev_mem_epoch() || a->tgraph_sparse != a->q_sparse ||
                      a->tgraph_nloss != a->q_nloss || a->tgraph_measure != measure_norm)) {
        dev_graph_free(a->tgraph);
        a->tgraph = NULL;
        a->tgraph_runs = 0;
    }
    if (!a->tgraph && a->tgraph_runs > 0 && !a->tgraph_failed && model_queue_pinned(a) && dev_host_is_pinned(a->ctl_h)) {
        const uint64_t epoch = dev_mem_epoch();
        if (dev_graph_begin()) {
            queue_step(m, a, h, measure_norm);
            a->tgraph = dev_graph_end();
        }
        // (a recording that changed what it records against is not kept)
        if (a->tgraph && dev_mem_epoch() != epoch) {
            dev_graph_free(a->tgraph);
            a->tgraph = NULL;
        }
        a->tgraph_failed = !a->tgraph;
        a->tgraph_epoch = dev_mem_epoch();
        a->tgraph_sparse = a->q_sparse;
        a->tgraph_nloss = a->q_nloss;
        a->tgraph_measure = measure_norm;
    }
    if (a->tgraph) dev_graph_launch(a->tgraph);
    else queue_step(m, a, h, measure_norm);
    a->tgraph_runs++;
    dev_sync();
    r.loss = model_queued_loss(a) / (cnt ? (double)cnt : 1);
    if (fault_nonfinite(step)) r.loss = NAN;
    if (measure_norm) r.grad_norm = sqrt(a->ctl_h[1].ss);
    return r;
}

StepResult train_step(Model *m, Acts *a, const Hyper *h, int64_t step, const BatchSource *src, int measure_norm) {
    if (queued_step_on(h)) return train_step_queued(m, a, h, step, src, measure_norm);
    StepResult r = {.lr = lr_at(h, step)};
    // every loss is scaled by the global batch's positions: over several processes, the sum of their
    // gradients is then the gradient of the one batch they share
    const double N = (double)h->B * h->T;
    OP(zero, m->grads, m->padded);
    double *sums = xmalloc(2 * (size_t)h->accum * sizeof(double));   // per micro-batch: the loss sum, the count
    for (int micro = 0; micro < h->accum; micro++) {
        const int32_t *inp, *tgt;
        src->next(src->ctx, &inp, &tgt);
        int64_t cnt;
        // the embeddings' dropout masks: one per sequence of the global batch, from the seed, the step and the
        // micro-batch, so a resumed run and a run over several processes draw the same ones
        a->embed_drop = h->embed_drop;
        a->drop_seed = mix64(mix64(h->seed ^ 0x656D6264726F70ull) ^ ((uint64_t)step * (uint64_t)h->accum + (uint64_t)micro));
        a->drop_row0 = (int64_t)g_dist.rank * a->B;
        sums[2 * micro] = model_forward(m, a, inp, tgt, NULL, NULL, 0, 1.0 / (N * h->accum), &cnt);
        sums[2 * micro + 1] = (double)cnt;
        // ZeRO-1: each process receives the summed gradients of its part, and updates that part alone. The
        // micro-batches accumulate locally; the backward of the last one sends each bucket of gradients on its
        // way as soon as it is final, so the reduction overlaps the rest of the backward
        const int reduce = micro == h->accum - 1 && g_dist.world > 1;
        if (reduce) {
            dist_reduce_begin(m->grads, m->part);
            m->grads_ready = dist_reduce_ready;
        }
        model_backward(m, a, inp);
        m->grads_ready = NULL;
    }
    dist_reduce_end();   // every bucket has arrived: this process's part holds the sums
    dist_allreduce_host(sums, 2 * h->accum, DIST_SUM);
    // the mean over the micro-batches of their mean loss over every target of the global batch
    double loss_sum = 0;
    for (int micro = 0; micro < h->accum; micro++)
        loss_sum += sums[2 * micro] / (sums[2 * micro + 1] ? sums[2 * micro + 1] : 1);
    free(sums);
    r.loss = loss_sum / h->accum;
    if (fault_nonfinite(step)) r.loss = NAN;
    double scale = 1.0;
    if (measure_norm) {
        double ss = grad_sumsq(m);
        dist_allreduce_host(&ss, 1, DIST_SUM);
        r.grad_norm = sqrt(ss);
        if (h->clip > 0 && r.grad_norm > h->clip) scale = h->clip / r.grad_norm;
    }
    // diverged: the parameters stay as they were (every process sees the same loss and norm)
    if (!isfinite(r.loss) || !isfinite(r.grad_norm)) return r;
    adamw_step(m, &(AdamW){h->beta1, h->beta2, h->adam_eps, h->wd}, r.lr, scale, step);
    dist_all_gather(m->params, m->part);
    return r;
}

// ----------------------------------------------------------------------------------------------------------
// The training run

// The training split's batches, through split_batch (its ids checked against the vocabulary).
typedef struct { Loader *ld; int B, T, V; int32_t *buf, *inp, *tgt; } LoaderBatches;
static void loader_batches_next(void *ctx, const int32_t **inp, const int32_t **tgt) {
    LoaderBatches *lb = ctx;
    loader_next(lb->ld, lb->buf);
    split_batch(lb->buf, lb->B, lb->T, lb->V, lb->inp, lb->tgt, "the training data");
    *inp = lb->inp;
    *tgt = lb->tgt;
}

void run_dir_lock(const char *out, int argc, char **argv) {
    mkdir_p(out);
    char *path = xasprintf("%s/.lock", out);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) die("cannot create the lock file %s: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK) die("cannot lock %s: %s", path, strerror(errno));
        char holder[1024];
        ssize_t n = pread(fd, holder, sizeof holder - 1, 0);
        holder[n > 0 ? n : 0] = 0;
        holder[strcspn(holder, "\n")] = 0;
        char *cmd = strchr(holder, ' ');
        if (!cmd) die("%s is in use by another training run (%s is locked); wait for it to end or choose another --out", out, path);
        *cmd++ = 0;
        die("%s is in use by pid %s (%s); wait for that run to end or choose another --out", out, holder, cmd);
    }
    // "PID hgrn2 ARGS...", on one line
    char line[1024];
    size_t len = (size_t)snprintf(line, sizeof line, "%ld hgrn2", (long)getpid());
    for (int i = 0; i < argc && len < sizeof line - 1; i++)
        len += (size_t)snprintf(line + len, sizeof line - len, " %s", argv[i]);
    if (len > sizeof line - 2) len = sizeof line - 2;
    for (size_t i = 0; i < len; i++) if (line[i] == '\n' || line[i] == '\r') line[i] = ' ';
    line[len++] = '\n';
    if (ftruncate(fd, 0) != 0 || pwrite(fd, line, len, 0) != (ssize_t)len)
        die("writing the lock file %s failed: %s", path, strerror(errno));
    free(path);     // fd stays open, and the lock held, until the process exits
}

// tokens: seen by the end of the step; wall_s: seconds of training so far (continued across --resume)
#define LOG_HEADER "step\ttrain_loss\tval_loss\tlr\tgrad_norm\ttokens\twall_s\n"
#define LOG_HEADER_ACC "step\ttrain_loss\tval_loss\tlr\tgrad_norm\tval_acc\ttokens\twall_s\n"

// On --resume, log.tsv is cut back to the rows of the steps the checkpoint holds: a run killed after its
// last checkpoint had logged steps that the resumed run logs again. Rows after a step already seen, and a
// last row cut short, go too. Written to log.tsv.tmp and renamed, so a crash leaves the old log or the new.
void log_cut(const char *path, const char *header, int64_t last_step) {
    FILE *in = fopen(path, "r");
    int in_errno = errno;
    if (!in && in_errno != ENOENT) die("cannot read %s: %s", path, strerror(in_errno));
    char *tmp = xasprintf("%s.tmp", path);
    FILE *out = fopen(tmp, "w");
    if (!out) die("cannot create %s: %s", tmp, strerror(errno));
    fputs(header, out);
    if (in) {
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        int64_t prev = 0;
        while ((n = getline(&line, &cap, in)) != -1) {
            if (line[n - 1] != '\n') break;                      // cut short by a kill
            char *end;
            errno = 0;
            long long step = strtoll(line, &end, 10);
            if (end == line || *end != '\t' || errno) continue;  // the header
            if (step <= prev || step > last_step) continue;
            fputs(line, out);
            prev = step;
        }
        if (ferror(in)) { int e = errno; fclose(out); unlink(tmp); die("reading %s failed: %s", path, strerror(e)); }
        free(line);
        fclose(in);
    }
    if (ferror(out) || fflush(out) != 0 || fsync(fileno(out)) != 0) {
        int e = errno;
        fclose(out);
        unlink(tmp);
        die("writing %s failed: %s; %s was left as it was", tmp, strerror(e), path);
    }
    if (fclose(out) != 0) { int e = errno; unlink(tmp); die("writing %s failed: %s", tmp, strerror(e)); }
    if (rename(tmp, path) != 0) { int e = errno; unlink(tmp); die("renaming %s to %s failed: %s", tmp, path, strerror(e)); }
    free(tmp);
}

static volatile sig_atomic_t g_stop_signal = 0;
static volatile double g_stop_time[2];   // when SIGINT, SIGTERM came first (now_s); 0: not yet
// The first SIGINT or SIGTERM is noted: the run saves after its step and stops. The same signal again within a
// second is the same request sent twice (GNU timeout signals the child, then its whole process group) and is
// ignored; later, it stops the run at once, unsaved (a second Ctrl-C when the step or the save takes too
// long). The other signal is noted as before (mpirun sends SIGTERM a second after the Ctrl-C its processes may
// have had too). now_s (clock_gettime) and raise are async-signal-safe.
static void on_stop_signal(int sig) {
    int k = sig == SIGINT ? 0 : 1;
    double now = now_s();
    if (g_stop_time[k] > 0) {
        if (now - g_stop_time[k] < 1.0) return;
        signal(sig, SIG_DFL);
        raise(sig);   // blocked while this handler runs: delivered, with the default action, when it returns
        return;
    }
    g_stop_time[k] = now;
    g_stop_signal = sig;
    // A launcher that is stopping (mpirun after a Ctrl-C) may stop reading its processes' output: rank 0 would
    // then wait in the write of a progress line (a fast run logs many), never reach the end of its step and
    // the save, and be killed. From the signal on, stdout does not block: what the pipe cannot take is lost,
    // the checkpoint is not (the write in progress, restarted after this handler, returns at once too).
    if (g_dist.world > 1) {
        int fl = fcntl(STDOUT_FILENO, F_GETFL);
        if (fl >= 0) fcntl(STDOUT_FILENO, F_SETFL, fl | O_NONBLOCK);
    }
}
void stop_signals_catch(void) {
    signal(SIGINT, on_stop_signal);
    signal(SIGTERM, on_stop_signal);
}
int stop_signal(void) { return g_stop_signal; }
// The signal any process of the run noted (the highest), 0 when none did; from then on this process's own.
// Every process takes the same decision from it, whenever each received its signal.
static int any_stop_signal(void) {
    if (g_dist.world == 1) return g_stop_signal;
    double sig = g_stop_signal;
    dist_allreduce_host(&sig, 1, DIST_MAX);
    if (sig > 0) g_stop_signal = (int)sig;
    return (int)sig;
}
void stop_signals_release(void) {
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
}
int stop_signal_report(const char *ckpt_path, int64_t step, int64_t steps, const char *out) {
    const char *fmt = "%s: saved %s at step %lld of %lld; continue with: hgrn2 train --resume --out %s\n";
    const char *what = g_stop_signal == SIGINT ? "interrupted" : "terminated";
    printf(fmt, what, ckpt_path, (long long)step, (long long)steps, out);
    // stdout may no longer take it (on_stop_signal): then on stderr, which carries little else
    if (fflush(stdout) != 0 || ferror(stdout)) fprintf(stderr, fmt, what, ckpt_path, (long long)step, (long long)steps, out);
    return 128 + g_stop_signal;
}
// A resume that ends up with --keep 0 (given so, or in a run directory without OUT/progress, which runs before
// it existed lack): where the run kept a best.ckpt, say that this one leaves it as it is.
void warn_resume_without_keep(const char *out, int resume, int64_t keep) {
    if (!resume || keep > 0) return;
    char *best = xasprintf("%s/best.ckpt", out);
    if (file_exists(best))
        fprintf(stderr, "hgrn2: warning: %s was kept by --keep, but this run has --keep 0 (given, or no %s/progress "
                "to take it from): it updates neither it nor the step checkpoints\n", best, out);
    free(best);
}
// on_off: a flag given as on|off, kept as 1 or 0 and named so in the resume's message
static const struct { const char *name; int64_t lo, hi; int on_off; } PF_FLAGS[PF_N] = {
    [PF_EVAL_EVERY] = {"--eval-every", -1, INT64_C(1) << 40}, [PF_EVAL_BATCHES] = {"--eval-batches", 0, INT64_C(1) << 40},
    [PF_CKPT_EVERY] = {"--ckpt-every", -1, INT64_C(1) << 40}, [PF_LOG_EVERY] = {"--log-every", 1, INT64_C(1) << 40},
    [PF_KEEP] = {"--keep", 0, 1 << 20}, [PF_MAX_BAD] = {"--max-bad-steps", 0, INT64_C(1) << 40},
    [PF_EVAL_TEST] = {"--eval-test", 0, 1, 1},
};
#define PF_FILE_MAX 4096    // bytes: seven short lines, with room; a larger file is not one of ours

void progress_flags_sync(const char *out, int resume, int64_t *const val[PF_N], const int given[PF_N]) {
    char *path = xasprintf("%s/progress", out);
    FILE *f = resume ? fopen(path, "rb") : NULL;
    if (resume && !f && errno != ENOENT) die("cannot read %s: %s", path, strerror(errno));
    if (f) {
        // read whole, bounded, then line by line: every line must be a known flag and a number in its range
        char buf[PF_FILE_MAX + 2];
        const size_t n = fread(buf, 1, sizeof buf - 1, f);
        const int err = ferror(f);
        fclose(f);
        if (err) die("cannot read %s", path);
        if (n > PF_FILE_MAX) die("%s is over %d bytes: not a progress file (remove it to resume without it)", path, PF_FILE_MAX);
        buf[n] = 0;
        if (memchr(buf, 0, n)) die("%s holds a NUL byte: not a progress file (remove it to resume without it)", path);
        int64_t v[PF_N];
        int have[PF_N] = {0}, line = 0;
        for (char *s = buf, *next; *s; s = next) {
            next = strchr(s, '\n');
            if (next) *next++ = 0;
            else next = s + strlen(s);
            line++;
            char name[32], extra[2];
            long long x;
            if (!*s) continue;
            if (sscanf(s, "%31s %lld %1s", name, &x, extra) != 2)
                die("%s:%d: expected a flag and a number, got '%.60s' (remove the file to resume without it)", path, line, s);
            int k = 0;
            while (k < PF_N && strcmp(name, PF_FLAGS[k].name)) k++;
            if (k == PF_N || !val[k])
                die("%s:%d: '%s' is not a progress flag of this command (remove the file to resume without it)", path,
                    line, name);
            if (x < PF_FLAGS[k].lo || x > PF_FLAGS[k].hi)
                die("%s:%d: %s %lld is outside [%lld, %lld] (remove the file to resume without it)", path, line, name, x,
                    (long long)PF_FLAGS[k].lo, (long long)PF_FLAGS[k].hi);
            v[k] = x;
            have[k] = 1;
        }
        // taken where the command line left a flag out; said where that differs from the command's default
        char took[256] = "";
        for (int k = 0; k < PF_N; k++)
            if (val[k] && have[k] && !given[k]) {
                if (v[k] != *val[k] && PF_FLAGS[k].on_off)
                    snprintf(took + strlen(took), sizeof took - strlen(took), " %s %s", PF_FLAGS[k].name, v[k] ? "on" : "off");
                else if (v[k] != *val[k])
                    snprintf(took + strlen(took), sizeof took - strlen(took), " %s %lld", PF_FLAGS[k].name, (long long)v[k]);
                *val[k] = v[k];
            }
        if (*took && g_dist.rank == 0) printf("resuming with the progress flags of %s:%s\n", path, took);
    }
    if (g_dist.rank == 0) {
        char *tmp = xasprintf("%s.tmp", path);
        FILE *w = fopen(tmp, "wb");
        if (!w) die("cannot write %s: %s", tmp, strerror(errno));
        for (int k = 0; k < PF_N; k++)
            if (val[k]) fprintf(w, "%s %lld\n", PF_FLAGS[k].name, (long long)*val[k]);
        if (fclose(w) != 0 || rename(tmp, path) != 0) die("cannot write %s: %s", path, strerror(errno));
        free(tmp);
    }
    free(path);
}

// --keep: the checkpoint just saved at ckpt_path also as OUT/model_step<step>.ckpt: a hard link (each save
// replaces ckpt_path by a rename, so the link keeps this one), or a copy where links do not work; then the step checkpoints beyond the newest `keep` removed.
void keep_step_checkpoint(const char *out, const char *ckpt_path, int64_t step, int64_t keep) {
    char *name = xasprintf("%s/model_step%lld.ckpt", out, (long long)step);
    remove(name);   // one left by an earlier run to this step
    if (link(ckpt_path, name) != 0) copy_file(ckpt_path, name);
    free(name);
    // the newest `keep` step numbers stay
    DIR *d = opendir(out);
    if (!d) return;
    int64_t *steps = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        long long k;
        char tail[8];
        if (sscanf(e->d_name, "model_step%lld.ck%7s", &k, tail) == 2 && !strcmp(tail, "pt")) {
            if (n == cap) steps = xrealloc(steps, (cap = cap ? 2 * cap : 16) * sizeof *steps);
            steps[n++] = k;
        }
    }
    closedir(d);
    for (size_t i = 0; i < n; i++) {   // remove every step with `keep` or more newer ones
        size_t newer = 0;
        for (size_t j = 0; j < n; j++) newer += steps[j] > steps[i];
        if (newer >= (size_t)keep) {
            char *old = xasprintf("%s/model_step%lld.ckpt", out, (long long)steps[i]);
            remove(old);
            free(old);
        }
    }
    free(steps);
}

double log_column(const char *log_path, int column, LogPick pick) {
    double got = pick == LOG_MIN ? INFINITY : pick == LOG_MAX ? -INFINITY : 0;
    FILE *f = fopen(log_path, "r");
    if (!f) return got;
    char line[512];
    for (int row = 0; fgets(line, sizeof line, f); row++) {
        if (row == 0) continue;   // the header
        char *at = line;          // the field: the column's, or after the last tab
        if (column < 0) at = strrchr(line, '\t');
        else
            for (int k = 0; k < column && at; k++) at = strchr(at + (k > 0), '\t');
        if (!at) continue;
        if (at != line) at++;
        if (*at == '\t' || *at == '\n' || !*at) continue;   // an empty field (strtod would skip the tab)
        char *end;
        double v = strtod(at, &end);
        if (end == at || !isfinite(v)) continue;
        if (pick == LOG_LAST || (pick == LOG_MIN && v < got) || (pick == LOG_MAX && v > got)) got = v;
    }
    fclose(f);
    return got;
}


// The run's checkpoint at path, saved by every process together: rank 0 writes it (checkpoint_save), with the
// AdamW moments of every process's part gathered, so the file is the one a single process would write. The
// others wait until it is written.
static void run_save(const char *path, const Model *m, const RunState *rs) {
    if (g_dist.world == 1) { checkpoint_save(path, m, rs, 1); return; }
    const int root = g_dist.rank == 0;
    real *mom[2] = {NULL, NULL};
    if (root)
        for (int k = 0; k < 2; k++) mom[k] = xmalloc((size_t)m->padded * sizeof(real));
    dist_gather_host(m->m, m->part, mom[0]);
    dist_gather_host(m->v, m->part, mom[1]);
    if (root) {
        // the parameters are the same on every process: rank 0's own, on the host
        real *staged;
        Model whole = *m;
        whole.params = (real *)host_view(m, m->params, m->lay.n, &staged);
        whole.m = mom[0];
        whole.v = mom[1];
        whole.on_device = 0;
        checkpoint_save(path, &whole, rs, 1);
        free(staged);
        free(mom[0]);
        free(mom[1]);
    }
    dist_barrier();
}

int train_run(Model *model, RunState *rs, Loader *train_ld, Loader *val_ld, const TrainPlan *p) {
    const Config *cf = &model->c;
    const Hyper *h = &rs->h;
    const char *out = p->out;
    int64_t eval_every = p->eval_every, ckpt_every = p->ckpt_every;
    if (eval_every < 0) eval_every = h->steps >= 10 ? h->steps / 4 : 0;
    if (ckpt_every < 0) ckpt_every = h->steps >= 10 ? h->steps / 4 : 0;
    const GenTask *gen = p->gen;
    const int has_val = val_ld || gen;
    // in a run of several processes each takes its rows of the global batch (cmd_train checked that they divide it)
    const int rows = h->B / g_dist.world, root = g_dist.rank == 0;
    Acts acts, eacts;
    acts_alloc(&acts, cf, rows, h->T, 1);
    if (has_val) acts_alloc(&eacts, cf, rows, h->T, 0);
    const char *peak_label;
    const double peak = dev_peak_flops(&peak_label) * g_dist.world;

    printf("+--------------+----------------------------------------------------------\n");
    if (gen) printf("| task         | %s, data %s (generated on the fly)\n", p->task, p->data);
    else printf("| task         | %s, data %s (%llu train tokens%s), tokenizer %s\n", p->task, p->data,
                (unsigned long long)loader_ntokens(train_ld), val_ld ? "" : ", no validation split", rs->tokenizer);
    print_config(cf, &model->lay, stdout);
    printf("| batch        | %d x %d tokens x %d accumulation = %lld tokens per step", h->B, h->T, h->accum,
           (long long)h->B * h->T * h->accum);
    if (g_dist.world > 1) printf(", %d rows on each of %d processes", rows, g_dist.world);
    printf("\n");
    char sched[64];
    if (h->sched == SCHED_WSD) snprintf(sched, sizeof sched, "wsd, decay over the last %g of the steps", h->decay_frac);
    else snprintf(sched, sizeof sched, "%s", SCHED_NAMES[h->sched]);
    printf("| optimizer    | AdamW lr %g (%s, warmup %lld, min %g), betas (%g, %g), eps %g, wd %g, clip %g\n",
           h->lr, sched, (long long)h->warmup, h->min_lr, h->beta1, h->beta2, h->adam_eps, h->wd, h->clip);
    if (h->embed_drop > 0) printf("| dropout      | on the embeddings, p %g (training only)\n", h->embed_drop);
    printf("| steps        | %lld (eval every %lld, checkpoint every %lld), seed %llu\n", (long long)h->steps,
           (long long)eval_every, (long long)ckpt_every, (unsigned long long)h->seed);
    const double act_mib = bytes_mib(acts.bytes + (has_val ? eacts.bytes : 0));
    if (g_dist.world == 1)
        printf("| memory       | parameters+grads+AdamW %.1f MiB, activations %.1f MiB\n",
               bytes_mib(model->lay.n * 4 * (int64_t)sizeof(real)), act_mib);
    else    // ZeRO-1: each process keeps AdamW's moments of its part of the parameters alone
        printf("| memory       | per process: parameters+grads %.1f MiB, AdamW %.1f MiB (a 1/%d part; one process "
               "holds %.1f MiB), activations %.1f MiB\n", bytes_mib(model->padded * 2 * (int64_t)sizeof(real)),
               bytes_mib(model->part * 2 * (int64_t)sizeof(real)), g_dist.world,
               bytes_mib(model->lay.n * 2 * (int64_t)sizeof(real)), act_mib);
    char procs[128] = "", bucket[40] = "one bucket";   // bucket: how the gradients' reduction is cut
    if (g_dist.bucket) snprintf(bucket, sizeof bucket, "buckets of %g MiB", g_dist.bucket_mb);
    if (g_dist.world > 1)
        snprintf(procs, sizeof procs, "%d processes (%s, %s), ", g_dist.world,
                 !g_dist.nccl ? "MPI" : g_dist.reduce_bf16 ? "NCCL, gradients in bf16" : "NCCL, gradients in fp32", bucket);
    if (g_gpu) printf("| machine      | %s%s, out %s\n", procs, device_name(), out);
    else printf("| machine      | %scpu, %d thread%s%s, out %s\n", procs, omp_get_max_threads(),
                omp_get_max_threads() == 1 ? "" : "s", g_dist.world > 1 ? " each" : "", out);
    printf("+--------------+----------------------------------------------------------\n");
    fflush(stdout);

    // rank 0 alone writes the log (and the checkpoints: run_save)
    char *ckpt_path = xasprintf("%s/model.ckpt", out), *log_path = xasprintf("%s/log.tsv", out);
    FILE *logf = NULL;
    if (root) {
        if (p->resume) log_cut(log_path, gen ? LOG_HEADER_ACC : LOG_HEADER, rs->step);
        logf = fopen(log_path, p->resume ? "a" : "w");
        if (!logf) die("cannot write %s: %s", log_path, strerror(errno));
        if (!p->resume) fputs(gen ? LOG_HEADER_ACC : LOG_HEADER, logf);
    }

    int64_t N = (int64_t)h->B * h->T, n = (int64_t)rows * h->T;   // the global batch's tokens, this process's
    LoaderBatches lb = {0};
    if (!gen) lb = (LoaderBatches){train_ld, rows, h->T, cf->V, xmalloc((size_t)rows * (h->T + 1) * sizeof(int32_t)),
                                   xmalloc((size_t)n * sizeof(int32_t)), xmalloc((size_t)n * sizeof(int32_t))};
    const BatchSource src = gen ? gen->batches : (BatchSource){loader_batches_next, &lb};
    double t_start = now_s(), t_first = -1, loss = NAN, val_loss = NAN, val_acc = NAN, first_loss = NAN;
    int evaluated = 0;
    int64_t step0 = rs->step;
    double tok_per_s = 0, wall0 = root && p->resume ? log_column(log_path, -1, LOG_LAST) : 0;   // wall_s
    int rc = 0;

    int64_t last_step = p->stop_at && p->stop_at < h->steps ? p->stop_at : h->steps;
    int64_t bad_run = 0, bad_total = 0;   // steps skipped for a non-finite loss or gradient: in a row, in all
    // the summary's train loss: the mean over the sitting's last LOSS_WINDOW finite steps, since one step's loss
    // moves with its batch
    enum { LOSS_WINDOW = 100 };
    double loss_win[LOSS_WINDOW];
    int64_t loss_n = 0;
    // --keep: the best held-out loss so far (of this run's log.tsv, so a resumed run knows it too)
    double best_val = p->keep > 0 && p->resume ? (root ? log_column(log_path, 2, LOG_MIN) : -INFINITY) : INFINITY;
    if (root) warn_resume_without_keep(out, p->resume, p->keep);
    dist_allreduce_host(&best_val, 1, DIST_MAX);   // rank 0's, which read the log
    stop_signals_catch();
    while (rs->step < last_step) {
        int64_t step = rs->step + 1;
        double t0 = now_s();
        StepResult r = train_step(model, &acts, h, step, &src, 1);
        loss = r.loss;
        if (!isfinite(r.loss) || !isfinite(r.grad_norm)) {
            // train_step left the parameters and the optimizer as they were: the batch is skipped
            bad_total++;
            if (++bad_run > p->max_bad_steps)
                die("training diverged: %lld steps in a row up to step %lld had a non-finite loss or gradient (loss %g, "
                    "grad norm %g; --max-bad-steps %lld); lower --lr or raise --warmup; the last checkpoint in %s is "
                    "intact", (long long)bad_run, (long long)step, r.loss, r.grad_norm, (long long)p->max_bad_steps, out);
            if (root)
                fprintf(stderr, "hgrn2: warning: step %lld skipped: loss %g, grad norm %g (%lld in a row, %lld in all)\n",
                        (long long)step, r.loss, r.grad_norm, (long long)bad_run, (long long)bad_total);
        } else {
            bad_run = 0;
            loss_win[loss_n++ % LOSS_WINDOW] = r.loss;
        }
        rs->step = step;
        if (train_ld) rs->loader = loader_get_state(train_ld);
        else rs->loader.batches = (uint64_t)(step * h->accum);   // a generated task draws accum batches a step too
        double dt = now_s() - t0;
        if (t_first < 0) { t_first = now_s() - t_start; first_loss = loss; }
        tok_per_s = (double)N * h->accum / dt;

        int do_eval = has_val && ((eval_every && step % eval_every == 0) || step == h->steps);
        evaluated |= do_eval;
        if (do_eval && gen) val_loss = gen->evaluate(gen->ctx, model, &eacts, p->eval_batches, &val_acc);
        else if (do_eval) val_loss = evaluate(model, &eacts, val_ld, p->eval_batches, NULL, NULL, NULL);
        if (step % p->log_every == 0 || step == h->steps || do_eval) {
            double elapsed = now_s() - t_start, eta = elapsed / (double)(step - step0) * (double)(h->steps - step);
            char etas[32];
            fmt_duration(etas, sizeof etas, eta);
            printf("step %6lld/%lld | loss %.4f | lr %.2e | grad norm %.3f | %.0f tok/s", (long long)step,
                   (long long)h->steps, loss, r.lr, r.grad_norm, tok_per_s);
            if (peak > 0) printf(" | MFU %.1f%%", 100 * 6.0 * (double)model->lay.n * tok_per_s / peak);
            printf(" | ETA %s", etas);
            if (do_eval) printf(" | val loss %.4f", val_loss);
            if (do_eval && gen) printf(" | val acc %.4f", val_acc);
            printf("\n");
            fflush(stdout);
        }
        if (logf) {
            fprintf(logf, "%lld\t%.9g\t", (long long)step, loss);
            if (do_eval) fprintf(logf, "%.9g", val_loss);
            fprintf(logf, "\t%.9g\t%.9g", r.lr, r.grad_norm);
            if (gen) { fputc('\t', logf); if (do_eval) fprintf(logf, "%.9g", val_acc); }
            fprintf(logf, "\t%lld\t%.3f\n", (long long)(step * N * h->accum), wall0 + now_s() - t_start);
            fflush(logf);
        }
        // a signal to any process stops them all after this step (mpirun passes Ctrl-C on as SIGTERM to each)
        int stop = any_stop_signal();
        if ((ckpt_every && step % ckpt_every == 0) || step == last_step || stop) {
            run_save(ckpt_path, model, rs);
            if (p->keep > 0 && root) keep_step_checkpoint(out, ckpt_path, step, p->keep);
        }
        if (p->keep > 0 && do_eval && isfinite(val_loss) && val_loss < best_val) {
            best_val = val_loss;
            char *best = xasprintf("%s/best.ckpt", out);
            run_save(best, model, rs);
            free(best);
        }
        if (stop) {
            rc = stop_signal_report(ckpt_path, rs->step, h->steps, out);
            break;
        }
    }
    if (!rc) {
        stop_signals_release();
        if (rs->step < h->steps) printf("stopped at step %lld of %lld; continue with --resume\n", (long long)rs->step, (long long)h->steps);
        if (rs->step == step0) {                 // nothing to do: still leave a checkpoint behind
            run_save(ckpt_path, model, rs);
            printf("the run is already at step %lld of %lld: nothing to train (--steps N sets a new total)\n"
                   "done: 0 steps\nsaved %s\n", (long long)rs->step, (long long)h->steps, ckpt_path);
            goto out;
        }
        double total = now_s() - t_start;
        char tot[32];
        fmt_duration(tot, sizeof tot, total);
        const int nwin = loss_n < LOSS_WINDOW ? (int)loss_n : LOSS_WINDOW;
        double mean_loss = 0;
        for (int i = 0; i < nwin; i++) mean_loss += loss_win[i];
        mean_loss = nwin ? mean_loss / nwin : NAN;
        printf("done: %lld steps in %s (first step %.2f s), %.0f tokens/s, train loss %.4f (mean of the last %d steps; "
               "first step %.4f)", (long long)(rs->step - step0), tot, t_first,
               (double)(rs->step - step0) * N * h->accum / total, mean_loss, nwin, first_loss);
        if (bad_total) printf(", %lld steps skipped (non-finite)", (long long)bad_total);
        if (evaluated) {   // (a sitting stopped before its first evaluation has none to show)
            printf(", held-out loss %.4f", val_loss);
            if (gen) printf(", accuracy %.4f", val_acc);
        }
        if (g_gpu) printf(", peak GPU memory %.0f MiB", dev_peak_mib());
        printf("\nsaved %s\n", ckpt_path);
    }
out:
    if (logf) fclose(logf);
    free(lb.buf); free(lb.inp); free(lb.tgt);
    free(ckpt_path); free(log_path);
    acts_free(&acts);
    if (has_val) acts_free(&eacts);
    return rc;
}
