// test_model.c: the whole model in float64 (it links the library compiled with -DHGRN2_F64).
//  - finite differences of the mean loss against the backward pass, for every parameter tensor
//  - decoding token by token from the recurrent state (the transformer: its key/value cache) equals one forward
//    over the whole sequence; sequences decoded together in one batch equal each decoded alone, bit for bit
//  - checkpoints: round trip (with and without MLPs), and a corrupt or truncated file is refused
//  - the learning-rate schedules
//  - the stretches of gradients the backward reports final (grads_ready), as the trainer's reduction needs
#include <math.h>
#include <omp.h>
#include <unistd.h>
#include <sys/wait.h>

#include "../model.h"
#include "../train.h"
#include "../checkpoint.h"
#include "../cli.h"
#include "check.h"

static double loss_of(Model *m, Acts *a, const int32_t *inp, const int32_t *tgt) {
    int64_t cnt;
    double s = model_forward(m, a, inp, tgt, NULL, NULL, 0, 0, &cnt);
    return s / cnt;
}

// Checks d(mean loss)/d(param) by central differences on `probe` entries of every tensor (all of
// lower_bounds). With sparse, only every fifth position has a target, so the sparse head runs. Float64 and a fourth-order difference: the error of an exact gradient stays near 1e-11,
// so an absolute 1e-8 plus a relative 1e-6 leaves orders of margin while catching any real mistake.
static void fd_model(Config c, int B, int T, uint64_t seed, int sparse, const char *what) {
    const char *bad = config_finish(&c);
    if (bad) { printf("bad config %s\n", bad); exit(1); }
    Model m;
    model_alloc(&m, &c);
    model_init(&m, seed);
    model_alloc_training(&m);
    uint64_t s = seed * 77 + 1;
    // move norms and lower bounds away from their initial values so their gradients are exercised
    for (int p = 0; p < NPARAM; p++) {
        int nl = p < P_FIRST_LAYER ? 1 : c.L;
        if (PARAMS[p].init == INIT_NORMAL) continue;
        for (int l = 0; l < nl; l++) {
            real *t = W(&m, p, l);
            for (int64_t i = 0; i < param_numel(&c, p); i++) t[i] += (real)(0.5 * rng_normal(&s));
        }
    }
    // larger weights than 0.02 so that every path carries signal well above the finite-difference noise
    for (int p = 0; p < NPARAM; p++) {
        if (PARAMS[p].init != INIT_NORMAL) continue;
        int nl = p < P_FIRST_LAYER ? 1 : c.L;
        for (int l = 0; l < nl; l++) {
            real *t = W(&m, p, l);
            for (int64_t i = 0; i < param_numel(&c, p); i++) t[i] *= 15;
        }
    }
    int64_t N = (int64_t)B * T;
    int32_t *inp = xmalloc(N * sizeof(int32_t)), *tgt = xmalloc(N * sizeof(int32_t));
    for (int64_t i = 0; i < N; i++) { inp[i] = (int32_t)(splitmix64(&s) % c.V); tgt[i] = (int32_t)(splitmix64(&s) % c.V); }
    tgt[1] = -1;    // an ignored position
    if (sparse) for (int64_t i = 0; i < N; i++) if (i % 5 != 2) tgt[i] = -1;
    Acts a, e;
    acts_alloc(&a, &c, B, T, 1);
    acts_alloc(&e, &c, B, T, 0);
    int64_t cnt;
    op_zero(m.grads, m.lay.n);
    int64_t valid = 0;
    for (int64_t i = 0; i < N; i++) valid += tgt[i] >= 0;
    model_forward(&m, &a, inp, tgt, NULL, NULL, 0, 1.0 / valid, &cnt);
    CHECK(a.sparse == sparse, "%s: the %s head ran", what, a.sparse ? "sparse" : "dense");
    model_backward(&m, &a, inp);
    double worst = 0;
    int checked = 0;
    for (int p = 0; p < NPARAM; p++) {
        int64_t n = param_numel(&c, p);
        if (!n) continue;
        int nl = p < P_FIRST_LAYER ? 1 : c.L;
        double tworst = 0;
        for (int l = 0; l < nl; l++) {
            real *w = W(&m, p, l), *g = G(&m, p, l);
            int probes = p == P_LB ? (int)n : 6;
            for (int k = 0; k < probes; k++) {
                int64_t i = p == P_LB ? k : (int64_t)(splitmix64(&s) % (uint64_t)n);
                // fourth-order central difference: truncation ~h^4 and rounding ~1e-16/h, both far
                // below the tolerance at h = 5e-5 even where the loss curves sharply
                const double h = 5e-5;
                real keep = w[i];
                double f[4], off[4] = {2 * h, h, -h, -2 * h};
                for (int j = 0; j < 4; j++) { w[i] = keep + off[j]; f[j] = loss_of(&m, &e, inp, tgt); }
                w[i] = keep;
                double fd = (8 * (f[1] - f[2]) - (f[0] - f[3])) / (12 * h), an = g[i];
                double err = fabs(fd - an), tol = 1e-8 + 1e-6 * fabs(an);
                if (err / tol > tworst) tworst = err / tol;
                checked++;
                CHECK(err <= tol, "%s: d loss / d %s[layer %d][%lld]: backward %.12g, finite difference %.12g",
                      what, PARAMS[p].name, l, (long long)i, an, fd);
            }
        }
        if (tworst > worst) worst = tworst;
    }
    printf("%-44s %d probes, worst error / tolerance %.3g\n", what, checked, worst);
    acts_free(&a); acts_free(&e);
    free(inp); free(tgt);
    model_free(&m);
}

// Logits of one forward over T tokens equal those of a prefill of the first P tokens followed by
// single-token steps from the carried recurrent state or key/value cache (the sampling path).
static void decode_matches_forward(int T, int P, MixerKind mixer, LayerKind layer, BlockKind block) {
    Config c = {.V = 13, .D = 16, .L = 2, .K = mixer == MIXER_HGRN1 ? 1 : 4, .I = 24, .tie = 1,
                .lower_bound = mixer != MIXER_TRANSFORMER, .eps = 1e-6, .mixer = mixer, .layer = layer,
                .block = block};
    config_finish(&c);
    Model m;
    model_alloc(&m, &c);
    model_init(&m, 5);
    for (int64_t i = 0; i < m.lay.n; i++) m.params[i] *= 10;
    uint64_t s = 99;
    int32_t *ids = xmalloc(T * sizeof(int32_t));
    for (int t = 0; t < T; t++) ids[t] = (int32_t)(splitmix64(&s) % c.V);
    Acts full, pre, one;
    acts_alloc(&full, &c, 1, T, 0);
    acts_alloc(&pre, &c, 1, P, 0);
    acts_alloc(&one, &c, 1, 1, 0);
    real *ref = xmalloc((size_t)T * c.V * sizeof(real)), *got = xmalloc((size_t)c.V * sizeof(real));
    model_forward(&m, &full, ids, NULL, NULL, ref, 0, 0, NULL);
    DecodeState st;
    decode_state_alloc(&st, &c, 1, T);
    model_forward(&m, &pre, ids, NULL, &st, got, 1, 0, NULL);
    double worst = 0;
    for (int v = 0; v < c.V; v++) worst = fmax(worst, fabs(got[v] - ref[(int64_t)(P - 1) * c.V + v]));
    for (int t = P; t < T; t++) {
        model_forward(&m, &one, ids + t, NULL, &st, got, 1, 0, NULL);
        for (int v = 0; v < c.V; v++) worst = fmax(worst, fabs(got[v] - ref[(int64_t)t * c.V + v]));
    }
    // the two paths differ only in the order of float64 sums: far below 1e-10
    CHECK(worst < 1e-10, "decode T %d prefill %d: max |logit difference| %.3g", T, P, worst);
    printf("%s%s%s decode after prefill %3d of %3d tokens  max |logit difference| %.3g\n", ARCH_NAMES[mixer],
           layer == LAYER_LRA ? " (lra)" : "", block == BLOCK_ZOOLOGY ? " (zoology)" : "", P, T, worst);
    acts_free(&full); acts_free(&pre); acts_free(&one);
    CHECK(st.pos == T, "the state has seen %d positions, not %d", st.pos, T);
    free(ids); free(ref); free(got);
    decode_state_free(&st);
    model_free(&m);
}

// With targets on few positions the head runs at those rows alone: its summed loss and its predictions
// (a->pred) equal those computed from the dense head's logits, in evaluation and in training alike.
// Sequences prefilled one at a time (B = 1, prompts of different lengths; the transformer's of one length, as
// its rows share a position) and copied into the rows of one state by decode_state_set_row, then decoded
// together, give each row exactly the logits of that sequence decoded alone: every op computes a row as it
// would alone, so not a bit differs. The rows after the first three are copied from rows of the batched state
// (sb > 0). B 4 decodes HGRN2 through the fused step (model.c), B 10 through the layers op by op.
static void batched_decode_matches_single(MixerKind mixer, LayerKind layer, BlockKind block, int B) {
    Config c = {.V = 13, .D = 16, .L = 2, .K = mixer == MIXER_HGRN1 ? 1 : 4, .I = 24, .tie = 0,
                .lower_bound = mixer != MIXER_TRANSFORMER, .eps = 1e-6, .mixer = mixer, .layer = layer,
                .block = block};
    config_finish(&c);
    Model m;
    model_alloc(&m, &c);
    model_init(&m, 7);
    for (int64_t i = 0; i < m.lay.n; i++) m.params[i] *= 10;
    enum { NP = 3, S = 12 };
    const int att = mixer == MIXER_TRANSFORMER;
    const int len[NP] = {att ? 6 : 5, att ? 6 : 1, att ? 6 : 9}, P = 9;
    int from[B];   // the prompt of each row: rows 0..2 their own, the others a copy of row (2b + 1) mod 3
    for (int b = 0; b < B; b++) from[b] = b < NP ? b : (2 * b + 1) % NP;
    uint64_t r = 41;
    int32_t prompt[NP][P], feed[B][S];     // the prompts, and the token each row is fed at each step
    for (int p = 0; p < NP; p++) for (int t = 0; t < P; t++) prompt[p][t] = (int32_t)(splitmix64(&r) % c.V);
    for (int b = 0; b < B; b++) for (int t = 0; t < S; t++) feed[b][t] = (int32_t)(splitmix64(&r) % c.V);
    real *alone = xmalloc((size_t)B * S * c.V * sizeof(real)), *got = xmalloc((size_t)B * c.V * sizeof(real));
    Acts pre, one, batch;
    acts_alloc(&pre, &c, 1, P, 0);
    acts_alloc(&one, &c, 1, 1, 0);
    acts_alloc(&batch, &c, B, 1, 0);
    // each row alone: its prompt, then S steps; alone[b][t] are the logits before feed[b][t]
    for (int b = 0; b < B; b++) {
        const int p = from[b];
        DecodeState st;
        decode_state_alloc(&st, &c, 1, len[p] + S);
        acts_reshape(&pre, 1, len[p]);
        model_forward(&m, &pre, prompt[p], NULL, &st, alone + (int64_t)b * S * c.V, 1, 0, NULL);
        for (int t = 0; t + 1 < S; t++)
            model_forward(&m, &one, &feed[b][t], NULL, &st, alone + ((int64_t)b * S + t + 1) * c.V, 1, 0, NULL);
        decode_state_free(&st);
    }
    // together: rows 0..2 from their own prefills, row 3 from row 1 of the batched state. A second state
    // (gst) decodes the same in lockstep through model_forward_greedy, whose picks must be the logits' argmax.
    DecodeState bst, gst;
    decode_state_alloc(&bst, &c, B, P + S);
    decode_state_alloc(&gst, &c, B, P + S);
    int64_t diff = 0, wrong = 0;
    int32_t best[B], want;
    for (int p = 0; p < NP; p++) {
        DecodeState st;
        decode_state_alloc(&st, &c, 1, len[p]);
        acts_reshape(&pre, 1, len[p]);
        model_forward(&m, &pre, prompt[p], NULL, &st, got + (int64_t)p * c.V, 1, 0, NULL);
        decode_state_set_row(&c, &bst, p, &st, 0);
        OP(zero, st.s, st.n);
        st.pos = 0;
        model_forward_greedy(&m, &pre, prompt[p], &st, best);
        op_argmax_rows(&want, got + (int64_t)p * c.V, 1, c.V);
        wrong += best[0] != want;
        decode_state_set_row(&c, &gst, p, &st, 0);
        decode_state_free(&st);
    }
    bst.pos = gst.pos = len[0];       // (the transformer copies the positions its source has seen)
    for (int b = NP; b < B; b++) {
        decode_state_set_row(&c, &bst, b, &bst, from[b]);
        decode_state_set_row(&c, &gst, b, &gst, from[b]);
        memcpy(got + (int64_t)b * c.V, got + (int64_t)from[b] * c.V, (size_t)c.V * sizeof(real));
    }
    for (int t = 0; t < S; t++) {
        if (t > 0) {
            int32_t ids[B];
            for (int b = 0; b < B; b++) ids[b] = feed[b][t - 1];
            model_forward(&m, &batch, ids, NULL, &bst, got, 1, 0, NULL);
            model_forward_greedy(&m, &batch, ids, &gst, best);
            for (int b = 0; b < B; b++) {
                op_argmax_rows(&want, got + (int64_t)b * c.V, 1, c.V);
                wrong += best[b] != want;
            }
        }
        for (int b = 0; b < B; b++)
            for (int v = 0; v < c.V; v++) diff += got[(int64_t)b * c.V + v] != alone[((int64_t)b * S + t) * c.V + v];
    }
    CHECK(wrong == 0, "%s: %lld greedy picks differ from the logits' argmax", ARCH_NAMES[mixer], (long long)wrong);
    decode_state_free(&gst);
    CHECK(diff == 0, "%s: %lld logits of %d rows decoded together differ from the rows decoded alone",
          ARCH_NAMES[mixer], (long long)diff, B);
    printf("%s%s%s %d rows decoded together after separate prefills  logits identical to each alone: %s\n",
           ARCH_NAMES[mixer], layer == LAYER_LRA ? " (lra)" : "", block == BLOCK_ZOOLOGY ? " (zoology)" : "", B,
           diff ? "NO" : "yes");
    acts_free(&pre); acts_free(&one); acts_free(&batch);
    decode_state_free(&bst);
    free(alone); free(got);
    model_free(&m);
}

static void sparse_head_matches_dense(void) {
    Config c = {.V = 23, .D = 8, .L = 2, .K = 4, .I = 0, .tie = 0, .lower_bound = 1, .eps = 1e-6};
    config_finish(&c);
    Model m;
    model_alloc(&m, &c);
    model_init(&m, 11);
    model_alloc_training(&m);
    for (int64_t i = 0; i < m.lay.n; i++) m.params[i] *= 20;
    const int B = 3, T = 16, N = B * T;
    uint64_t s = 5;
    int32_t ids[48], tgt[48], pred[48];
    for (int i = 0; i < N; i++) {
        ids[i] = (int32_t)(splitmix64(&s) % c.V);
        tgt[i] = i % 8 == 3 ? (int32_t)(splitmix64(&s) % c.V) : -1;
        pred[i] = -7;
    }
    Acts e, a;
    acts_alloc(&e, &c, B, T, 0);
    acts_alloc(&a, &c, B, T, 1);
    real *logits = xmalloc((size_t)N * c.V * sizeof(real));
    model_forward(&m, &e, ids, NULL, NULL, logits, 0, 0, NULL);    // dense: every row's logits
    double want = 0;          // the summed cross-entropy at the targets, and the argmax of every row
    int argmax[48], wrong = 0;
    for (int i = 0; i < N; i++) {
        const real *l = logits + (int64_t)i * c.V;
        argmax[i] = 0;
        for (int v = 1; v < c.V; v++) if (l[v] > l[argmax[i]]) argmax[i] = v;
        double mx = l[argmax[i]], z = 0;
        for (int v = 0; v < c.V; v++) z += exp(l[v] - mx);
        if (tgt[i] >= 0) want += mx + log(z) - l[tgt[i]];
    }
    e.pred = pred;
    int64_t cnt;
    double got = model_forward(&m, &e, ids, tgt, NULL, NULL, 0, 0, &cnt);
    CHECK(e.sparse && cnt == 6, "evaluation: sparse head %d, %lld targets", e.sparse, (long long)cnt);
    for (int i = 0; i < N; i++) if (tgt[i] >= 0 ? pred[i] != argmax[i] : pred[i] != -7) wrong++;
    CHECK(fabs(got - want) < 1e-10 * fabs(want), "sparse head loss %.15g, from the dense logits %.15g", got, want);
    CHECK(wrong == 0, "%d predictions differ from the dense logits' argmax (or touch rows without a target)", wrong);
    op_zero(m.grads, m.lay.n);
    double got_train = model_forward(&m, &a, ids, tgt, NULL, NULL, 0, 1.0, &cnt);
    CHECK(a.sparse && fabs(got_train - want) < 1e-10 * fabs(want), "training: sparse head %d, loss %.15g against %.15g",
          a.sparse, got_train, want);
    printf("sparse head: loss and predictions equal the dense head's\n");
    acts_free(&e); acts_free(&a);
    free(logits);
    model_free(&m);
}

// model_backward's grads_ready: what it reported, and a copy of each stretch's values at the time.
typedef struct { int n; int64_t lo[64], hi[64]; real *copy[64]; const real *grads; } Reports;
static void note_ready(void *ctx, int64_t lo, int64_t hi) {
    Reports *r = ctx;
    if (r->n == 64) return;
    r->lo[r->n] = lo;
    r->hi[r->n] = hi;
    r->copy[r->n] = xmalloc((size_t)(hi > lo ? hi - lo : 1) * sizeof(real));
    if (hi > lo) memcpy(r->copy[r->n], r->grads + lo, (size_t)(hi - lo) * sizeof(real));
    r->n++;
}

// The stretches model_backward reports final (the trainer starts their reduction then, dist.h): they come in
// descending order and tile [0, padded) (padded: a model cut into 3 parts, as for 3 processes), one a layer
// and the global tensors last; no op of the backward writes a stretch after it was reported (its values
// then are its final ones); and reporting changes nothing (the gradients of a backward without the hook).
static void grads_ready_reports(Config c, const char *what) {
    config_finish(&c);
    Model m;
    model_alloc(&m, &c);
    model_init(&m, 17);
    model_shard(&m, 0, 3);
    model_alloc_training(&m);
    for (int64_t i = 0; i < m.lay.n; i++) m.params[i] *= 10;
    const int B = 2, T = 9, N = B * T;
    uint64_t s = 23;
    int32_t ids[18], tgt[18];
    for (int i = 0; i < N; i++) { ids[i] = (int32_t)(splitmix64(&s) % c.V); tgt[i] = (int32_t)(splitmix64(&s) % c.V); }
    Acts a;
    acts_alloc(&a, &c, B, T, 1);
    real *plain = xmalloc((size_t)m.padded * sizeof(real));
    int64_t cnt;
    for (int hooked = 0; hooked < 2; hooked++) {
        // twice over (an accumulation of two micro-batches): the reports come with the second backward only
        op_zero(m.grads, m.padded);
        Reports r = {.grads = m.grads};
        for (int micro = 0; micro < 2; micro++) {
            model_forward(&m, &a, ids, tgt, NULL, NULL, 0, 1.0 / N, &cnt);
            if (hooked && micro == 1) { m.grads_ready = note_ready; m.grads_ready_ctx = &r; }
            model_backward(&m, &a, ids);
            m.grads_ready = NULL;
        }
        if (!hooked) { memcpy(plain, m.grads, (size_t)m.padded * sizeof(real)); continue; }
        CHECK(r.n == c.L + 1, "%s: %d reports for %d layers", what, r.n, c.L);
        int64_t at = m.padded;
        int tiled = 1, stale = 0;
        for (int i = 0; i < r.n; i++) {
            int64_t want_lo = i < c.L ? m.lay.layers_at + (int64_t)(c.L - 1 - i) * m.lay.layer_size : 0;
            if (r.hi[i] != at || r.lo[i] != want_lo) tiled = 0;
            at = r.lo[i];
            if (r.hi[i] > r.lo[i] && memcmp(r.copy[i], m.grads + r.lo[i], (size_t)(r.hi[i] - r.lo[i]) * sizeof(real)))
                stale++;
            free(r.copy[i]);
        }
        CHECK(tiled && at == 0, "%s: the reported stretches do not tile [0, %lld) from the top, a layer each",
              what, (long long)m.padded);
        CHECK(stale == 0, "%s: %d stretches changed after they were reported final", what, stale);
        CHECK(!memcmp(plain, m.grads, (size_t)m.padded * sizeof(real)), "%s: the hook changed the gradients", what);
    }
    printf("%-44s gradients reported final a layer at a time\n", what);
    free(plain);
    acts_free(&a);
    model_free(&m);
}

// Runs fn in a child process; returns its exit status (or -1 if it did not exit normally).
static int in_child(void (*fn)(const char *), const char *arg) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        freopen("/dev/null", "w", stderr);
        fn(arg);
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
static void load_it(const char *path) {
    Model m;
    RunState rs;
    checkpoint_load(path, &m, &rs, 1);
}

static void checkpoints(void) {
    Config c = {.V = 17, .D = 8, .L = 2, .K = 4, .I = 12, .tie = 0, .lower_bound = 1, .eps = 1e-6};
    config_finish(&c);
    Model m, r;
    model_alloc(&m, &c);
    model_init(&m, 3);
    model_alloc_training(&m);
    for (int64_t i = 0; i < m.lay.n; i++) { m.params[i] = (float)m.params[i]; m.m[i] = (float)(i * 1e-3); m.v[i] = (float)(i * 1e-4); }
    RunState rs = {.c = c, .h = {.B = 2, .T = 8, .accum = 1, .steps = 10, .lr = 1e-3, .min_lr = 1e-4, .wd = 0.1,
                                 .beta1 = 0.9, .beta2 = 0.95, .adam_eps = 1e-8, .clip = 1, .warmup = 2, .seed = 7},
                   .step = 4, .loader = {7, 4, 0, 0}};
    snprintf(rs.tokenizer, sizeof rs.tokenizer, "byte");
    snprintf(rs.data, sizeof rs.data, "data/x");
    mkdir_p("tests/tmp");
    const char *path = "tests/tmp/test_model.ckpt";
    checkpoint_save(path, &m, &rs, 1);
    RunState back;
    checkpoint_load(path, &r, &back, 1);
    int same = r.lay.n == m.lay.n && !memcmp(r.params, m.params, m.lay.n * sizeof(real)) &&
               !memcmp(r.m, m.m, m.lay.n * sizeof(real)) && !memcmp(r.v, m.v, m.lay.n * sizeof(real));
    CHECK(same, "checkpoint round trip changed tensors");
    CHECK(back.step == 4 && back.loader.batches == 4 && back.h.T == 8 && back.h.lr == 1e-3 &&
          !strcmp(back.tokenizer, "byte") && !strcmp(back.data, "data/x") && back.c.I == 12,
          "checkpoint round trip changed the run state");
    model_free(&r);
    CHECK(!file_exists("tests/tmp/test_model.ckpt.tmp"), "a temporary checkpoint file was left behind");

    // corruptions: a flipped payload byte, a truncated file, a bad magic, a wrong version
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    unsigned char *bytes = xmalloc(size);
    CHECK(fread(bytes, 1, size, f) == (size_t)size, "read back");
    fclose(f);
    struct { const char *name; long at, len; int flip; } cases[] = {
        {"flipped payload byte", size - 40, size, 1}, {"truncated", 0, size - 100, 0},
        {"bad magic", 0, size, 2}, {"wrong version", 8, size, 3}, {"empty", 0, 0, 0}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        unsigned char *b = xmalloc(size);
        memcpy(b, bytes, size);
        if (cases[k].flip == 1) b[cases[k].at] ^= 0x40;
        if (cases[k].flip == 2) b[0] = 'X';
        if (cases[k].flip == 3) b[8] = 9;
        const char *bad = "tests/tmp/test_model_bad.ckpt";
        f = fopen(bad, "wb");
        fwrite(b, 1, cases[k].len, f);
        fclose(f);
        int st = in_child(load_it, bad);
        CHECK(st == 1, "corrupt checkpoint (%s): exit status %d, expected 1", cases[k].name, st);
        free(b);
    }
    int st = in_child(load_it, "tests/tmp/does-not-exist.ckpt");
    CHECK(st == 1, "missing checkpoint: exit status %d, expected 1", st);
    printf("checkpoint round trip and 5 corruption cases\n");
    free(bytes);
    model_free(&m);
}

// A model without MLPs round-trips through a checkpoint with I = 0 and none of the MLP tensors; a header
// that says I = 0 over the parameters of a model with MLPs is refused.
static void checkpoint_no_mlp(void) {
    Config c = {.V = 17, .D = 8, .L = 2, .K = 4, .I = 0, .tie = 0, .lower_bound = 1, .eps = 1e-6};
    config_finish(&c);
    Config with = c;
    with.I = 12;
    Layout lw = layout_of(&with);
    Model m, r;
    model_alloc(&m, &c);
    model_init(&m, 9);
    for (int64_t i = 0; i < m.lay.n; i++) m.params[i] = (float)m.params[i];   // what the file keeps
    CHECK(m.lay.n == lw.n - 2 * (8 + 2 * 12 * 8 + 8 * 12), "no-MLP layout: %lld parameters", (long long)m.lay.n);
    RunState rs = {.c = c, .h = {.B = 2, .T = 8, .accum = 1, .steps = 10, .lr = 1e-3, .min_lr = 1e-4, .wd = 0.1,
                                 .beta1 = 0.9, .beta2 = 0.95, .adam_eps = 1e-8, .clip = 1, .warmup = 2, .seed = 7}};
    const char *path = "tests/tmp/test_model_nomlp.ckpt";
    checkpoint_save(path, &m, &rs, 0);
    RunState back;
    checkpoint_load(path, &r, &back, 0);
    CHECK(back.c.I == 0 && r.lay.n == m.lay.n && !memcmp(r.params, m.params, m.lay.n * sizeof(real)),
          "no-MLP checkpoint round trip: I %d, %lld parameters", back.c.I, (long long)r.lay.n);
    model_free(&r);

    // the header's I (the fifth integer, after magic, version and the count) rewritten to 0 over a model with MLPs
    Model w;
    model_alloc(&w, &with);
    model_init(&w, 9);
    rs.c = with;
    checkpoint_save(path, &w, &rs, 0);
    FILE *f = fopen(path, "r+b");
    int64_t zero = 0;
    CHECK(f && fseek(f, 8 + 8 + 8 + 4 * 8, SEEK_SET) == 0 && fwrite(&zero, 8, 1, f) == 1, "patch the header");
    fclose(f);
    int st = in_child(load_it, path);
    CHECK(st == 1, "I = 0 over a model with MLPs: exit status %d, expected 1", st);
    printf("checkpoint without MLPs: round trip, and I = 0 over MLP tensors refused\n");
    model_free(&w);
    model_free(&m);
}

// Dropout on the embeddings (Acts.embed_drop, set by the trainer): with the masks fixed by the seed the loss is a
// function of the parameters, so the backward is held to finite differences of the training forward itself;
// p = 0 is the pass without dropout, bit for bit, and another seed gives another loss.
static void embed_dropout_grads(void) {
    Config c = {.V = 11, .D = 8, .L = 2, .K = 4, .I = 0, .tie = 1, .lower_bound = 1, .eps = 1e-5,
                .block = BLOCK_ZOOLOGY};
    config_finish(&c);
    Model m;
    model_alloc(&m, &c);
    model_init(&m, 61);
    for (int64_t i = 0; i < m.lay.n; i++) m.params[i] *= 15;
    model_alloc_training(&m);
    enum { B = 2, T = 9 };
    int32_t inp[B * T], tgt[B * T];
    uint64_t s = 62;
    for (int i = 0; i < B * T; i++) { inp[i] = (int32_t)(splitmix64(&s) % c.V); tgt[i] = (int32_t)(splitmix64(&s) % c.V); }
    Acts a;
    acts_alloc(&a, &c, B, T, 1);
    a.embed_drop = 0.3;
    a.drop_seed = 1234;
    a.drop_row0 = 5;
    int64_t cnt;
    const int64_t n = m.lay.n;
    op_zero(m.grads, n);
    const double l0 = model_forward(&m, &a, inp, tgt, NULL, NULL, 0, 1.0 / (B * T), &cnt) / cnt;
    model_backward(&m, &a, inp);
    real *g = xmalloc((size_t)n * sizeof(real));
    memcpy(g, m.grads, (size_t)n * sizeof(real));
    double worst = 0;
    int probes = 0;
    for (int k = 0; k < 40; k++) {
        const int64_t i = k < 20 ? (int64_t)(splitmix64(&s) % (uint64_t)(c.V * c.D)) : (int64_t)(splitmix64(&s) % (uint64_t)n);
        const double h = 5e-5, keep = m.params[i];
        double f[4], off[4] = {2 * h, h, -h, -2 * h};
        for (int j = 0; j < 4; j++) {
            m.params[i] = keep + off[j];
            f[j] = model_forward(&m, &a, inp, tgt, NULL, NULL, 0, 0, &cnt) / cnt;
        }
        m.params[i] = keep;
        const double fd = (8 * (f[1] - f[2]) - (f[0] - f[3])) / (12 * h), err = fabs(fd - g[i]), tol = 1e-8 + 1e-6 * fabs(g[i]);
        worst = fmax(worst, err / tol);
        probes++;
        CHECK(err <= tol, "embedding dropout: d loss / d param[%lld]: backward %.12g, finite difference %.12g",
              (long long)i, (double)g[i], fd);
    }
    a.drop_seed = 1235;
    const double l1 = model_forward(&m, &a, inp, tgt, NULL, NULL, 0, 0, &cnt) / cnt;
    a.embed_drop = 0;
    const double lp0 = model_forward(&m, &a, inp, tgt, NULL, NULL, 0, 0, &cnt) / cnt;
    Acts e;
    acts_alloc(&e, &c, B, T, 0);
    const double le = model_forward(&m, &e, inp, tgt, NULL, NULL, 0, 0, &cnt) / cnt;
    CHECK(l1 != l0, "another seed gives the same loss %.12g", l0);
    CHECK(lp0 == le && lp0 != l0, "p 0 gives %.12g, the pass without dropout %.12g (with p 0.3: %.12g)", lp0, le, l0);
    printf("embedding dropout p 0.3: %d probes, worst error / tolerance %.3g; p 0 = no dropout\n", probes, worst);
    acts_free(&a); acts_free(&e);
    free(g);
    model_free(&m);
}

// The authors' layer (--mixer-layer lra) adds three biases a layer, [q | f | i] (2HK + D), o and g_norm (D each),
// round-trips through a checkpoint with its layer, and is refused for HGRN1 and the transformer.
static void checkpoint_lra(void) {
    Config c = {.V = 17, .D = 8, .L = 2, .K = 4, .I = 12, .lower_bound = 1, .eps = 1e-6, .layer = LAYER_LRA};
    CHECK(!config_finish(&c), "lra configuration");
    Config fla = c;
    fla.layer = LAYER_FLA;
    const int64_t extra = layout_of(&c).n - layout_of(&fla).n, want = 2 * ((2 * 8 + 8) + 8 + 8);
    CHECK(extra == want, "lra layout: %lld parameters more than fla's, expected %lld", (long long)extra, (long long)want);
    Model m, r;
    model_alloc(&m, &c);
    model_init(&m, 11);
    uint64_t s = 5;
    for (int64_t i = 0; i < m.lay.n; i++) m.params[i] = (float)(m.params[i] + 0.1 * rng_normal(&s));
    RunState rs = {.c = c, .h = {.B = 2, .T = 8, .accum = 1, .steps = 10, .lr = 1e-3, .min_lr = 1e-4, .wd = 0.1,
                                 .beta1 = 0.9, .beta2 = 0.95, .adam_eps = 1e-8, .clip = 1, .warmup = 2, .seed = 7}};
    const char *path = "tests/tmp/test_model_lra.ckpt";
    checkpoint_save(path, &m, &rs, 0);
    RunState back;
    checkpoint_load(path, &r, &back, 0);
    CHECK(back.c.layer == LAYER_LRA && r.lay.n == m.lay.n && !memcmp(r.params, m.params, m.lay.n * sizeof(real)),
          "lra checkpoint round trip: layer %d, %lld parameters", back.c.layer, (long long)r.lay.n);
    model_free(&r);
    model_free(&m);
    Config h1 = c;
    h1.mixer = MIXER_HGRN1; h1.K = 1;
    const char *bad = config_finish(&h1);
    CHECK(bad && strstr(bad, "--mixer-layer lra is a form of HGRN2's layer: not with --arch hgrn1"), "lra with hgrn1: %s",
          bad ? bad : "accepted");
    Config tp = c;
    tp.mixer = MIXER_TRANSFORMER; tp.lower_bound = 0;
    bad = config_finish(&tp);
    CHECK(bad && strstr(bad, "not with --arch transformer"), "lra with the transformer: %s", bad ? bad : "accepted");
    Config odd = c;
    odd.layer = 2;
    bad = config_finish(&odd);
    CHECK(bad && strstr(bad, "--mixer-layer must be fla or lra"), "layer 2: %s", bad ? bad : "accepted");
    printf("lra layer: layout, checkpoint round trip, refused with hgrn1 and the transformer\n");
}

// Zoology's blocks (--block zoology): without an MLP, mlp_norm is there and every norm has a bias (D + L x 3D
// more values than fla's blocks); the blocks round-trip through a checkpoint; o_proj is drawn at 0.02 /
// sqrt(2 L), the other products at 0.02.
static void zoology_blocks(void) {
    // every tensor seeds its initial values with a number of its own
    for (int p = 0; p < NPARAM; p++)
        for (int q = p + 1; q < NPARAM; q++)
            CHECK(PARAMS[p].id != PARAMS[q].id, "%s and %s share the seed number %d", PARAMS[p].name, PARAMS[q].name,
                  PARAMS[p].id);
    Config c = {.V = 17, .D = 64, .L = 2, .K = 16, .I = 0, .tie = 1, .lower_bound = 1, .eps = 1e-5,
                .layer = LAYER_LRA, .block = BLOCK_ZOOLOGY};
    CHECK(!config_finish(&c), "zoology configuration");
    Config fla = c;
    fla.block = BLOCK_FLA;
    const int64_t extra = layout_of(&c).n - layout_of(&fla).n, want = 64 + 2 * 3 * 64;
    CHECK(extra == want, "zoology layout: %lld parameters more than fla's blocks, expected %lld", (long long)extra,
          (long long)want);
    Model m, r;
    model_alloc(&m, &c);
    model_init(&m, 13);
    double sd[2] = {0, 0};
    const int p2[2] = {P_WO, P_WQ};
    for (int j = 0; j < 2; j++) {
        const int64_t n = param_numel(&c, p2[j]);
        for (int l = 0; l < c.L; l++)
            for (int64_t i = 0; i < n; i++) sd[j] += (double)W(&m, p2[j], l)[i] * W(&m, p2[j], l)[i];
        sd[j] = sqrt(sd[j] / (double)(n * c.L));
    }
    // 8192 draws each: an estimated standard deviation has a relative standard error of 1 / sqrt(2 n) = 0.8%,
    // so 3% is almost 4 of them
    CHECK(fabs(sd[0] / (0.02 / 2) - 1) < 0.03 && fabs(sd[1] / 0.02 - 1) < 0.03,
          "zoology initialisation: o_proj std %.5f (want 0.01), q/f/i %.5f (want 0.02)", sd[0], sd[1]);
    for (int64_t i = 0; i < m.lay.n; i++) m.params[i] = (float)m.params[i];
    RunState rs = {.c = c, .h = {.B = 2, .T = 8, .accum = 1, .steps = 10, .lr = 1e-3, .min_lr = 1e-4, .wd = 0.1,
                                 .beta1 = 0.9, .beta2 = 0.95, .adam_eps = 1e-8, .clip = 1, .warmup = 2, .seed = 7}};
    const char *path = "tests/tmp/test_model_zoology.ckpt";
    checkpoint_save(path, &m, &rs, 0);
    RunState back;
    checkpoint_load(path, &r, &back, 0);
    CHECK(back.c.block == BLOCK_ZOOLOGY && back.c.layer == LAYER_LRA && back.c.eps == 1e-5 && r.lay.n == m.lay.n &&
          !memcmp(r.params, m.params, m.lay.n * sizeof(real)),
          "zoology checkpoint round trip: blocks %d, %lld parameters", back.c.block, (long long)r.lay.n);
    model_free(&r);
    model_free(&m);
    Config odd = c;
    odd.block = 2;
    const char *bad = config_finish(&odd);
    CHECK(bad && strstr(bad, "--block must be fla or zoology"), "blocks 2: %s", bad ? bad : "accepted");
    printf("zoology blocks: layout, initialisation (o_proj std %.5f, q/f/i %.5f), checkpoint round trip\n", sd[0], sd[1]);
}

static void schedules(void) {
    Hyper h = {.steps = 100, .warmup = 10, .lr = 1.0, .min_lr = 0.1, .sched = SCHED_COSINE};
    CHECK(fabs(lr_at(&h, 5) - 0.5) < 1e-15, "warmup");
    CHECK(fabs(lr_at(&h, 10) - 1.0) < 1e-15, "end of warmup");
    CHECK(fabs(lr_at(&h, 55) - 0.55) < 1e-12, "cosine midpoint %g", lr_at(&h, 55));
    CHECK(fabs(lr_at(&h, 100) - 0.1) < 1e-12, "cosine end");
    h.sched = SCHED_INVSQRT;
    CHECK(fabs(lr_at(&h, 40) - 0.5) < 1e-12, "inverse sqrt at 4x warmup %g", lr_at(&h, 40));
    h.sched = SCHED_CONSTANT;
    CHECK(lr_at(&h, 77) == 1.0, "constant");
    printf("learning-rate schedules\n");
}

// HGRN1's configuration: expand ratio 1 only; the same parameter count as HGRN2 at the same sizes (the three
// D x D projections and o_proj of both); fla's names for the slots that hold other tensors; and a checkpoint
// round trip that keeps the architecture.
static void hgrn1_config(void) {
    Config c = {.V = 17, .D = 8, .L = 2, .K = 2, .I = 12, .lower_bound = 1, .eps = 1e-6, .mixer = MIXER_HGRN1};
    const char *bad = config_finish(&c);
    CHECK(bad && strstr(bad, "--expand-ratio 2 is not possible with --arch hgrn1"), "hgrn1 with K 2: %s", bad ? bad : "accepted");
    c.K = 1;
    CHECK(!config_finish(&c) && c.H == 8 && c.Dv == 1, "hgrn1 with K 1: H %d, Dv %d", c.H, c.Dv);
    Config c2 = c;
    c2.mixer = MIXER_CAUSAL; c2.K = 4;
    config_finish(&c2);
    Layout l1 = layout_of(&c), l2 = layout_of(&c2);
    CHECK(l1.n == l2.n, "hgrn1 %lld parameters, hgrn2 %lld", (long long)l1.n, (long long)l2.n);
    char n1[96], n2[96], n3[96], n4[96];
    hf_name(n1, sizeof n1, &c, P_WQ, 1); hf_name(n2, sizeof n2, &c, P_WF, 1);
    hf_name(n3, sizeof n3, &c, P_WI, 1); hf_name(n4, sizeof n4, &c2, P_WI, 1);
    CHECK(!strcmp(n1, "model.layers.1.attn.i_proj.weight") && !strcmp(n2, "model.layers.1.attn.f_proj.weight") &&
          !strcmp(n3, "model.layers.1.attn.g_proj.weight") && !strcmp(n4, "model.layers.1.attn.i_proj.weight"),
          "hgrn1 names %s %s %s, hgrn2's i_proj %s", n1, n2, n3, n4);
    Model m, r;
    model_alloc(&m, &c);
    model_init(&m, 3);
    for (int64_t i = 0; i < m.lay.n; i++) m.params[i] = (float)m.params[i];
    RunState rs = {.c = c, .h = {.B = 2, .T = 8, .accum = 1, .steps = 10, .lr = 1e-3, .min_lr = 1e-4, .wd = 0.1,
                                 .beta1 = 0.9, .beta2 = 0.95, .adam_eps = 1e-8, .clip = 1, .warmup = 2, .seed = 7},
                   .step = 0, .loader = {7, 0, 0, 0}};
    snprintf(rs.tokenizer, sizeof rs.tokenizer, "byte");
    snprintf(rs.data, sizeof rs.data, "data/x");
    mkdir_p("tests/tmp");
    checkpoint_save("tests/tmp/test_model_hgrn1.ckpt", &m, &rs, 0);
    RunState back;
    checkpoint_load("tests/tmp/test_model_hgrn1.ckpt", &r, &back, 0);
    CHECK(back.c.mixer == MIXER_HGRN1 && back.c.K == 1 && r.lay.n == m.lay.n &&
          !memcmp(r.params, m.params, m.lay.n * sizeof(real)), "hgrn1 checkpoint round trip: mixer %d", back.c.mixer);
    printf("hgrn1: expand ratio 1 only, %lld parameters as hgrn2's, fla's names, checkpoint round trip\n", (long long)l1.n);
    model_free(&m); model_free(&r);
}

// The transformer's configuration: an even head dim dividing D and no lower bounds; its parameter count (HGRN2's
// without g_norm and the bounds); LLaMA's names in the slots; a checkpoint round trip that keeps the
// architecture and the head dim; and at the Pile presets a count within a few percent of HGRN2's.
static void transformer_config(void) {
    Config c = {.V = 17, .D = 12, .L = 2, .K = 3, .I = 20, .eps = 1e-6, .mixer = MIXER_TRANSFORMER};
    const char *bad = config_finish(&c);
    CHECK(bad && strstr(bad, "must be even"), "transformer with head dim 3: %s", bad ? bad : "accepted");
    c.K = 4; c.lower_bound = 1;
    bad = config_finish(&c);
    CHECK(bad && strstr(bad, "no lower bounds"), "transformer with lower bounds: %s", bad ? bad : "accepted");
    c.lower_bound = 0;
    CHECK(!config_finish(&c) && c.H == 3 && c.Dv == 4, "transformer D 12, head dim 4: H %d, Dv %d", c.H, c.Dv);
    const int64_t D = c.D, want = 2 * c.V * D + D + c.L * (4 * D * D + 3 * D * c.I + 2 * D);
    Layout lay = layout_of(&c);
    CHECK(lay.n == want, "transformer parameters %lld, expected %lld", (long long)lay.n, (long long)want);
    CHECK(param_numel(&c, P_GNORM) == 0 && param_numel(&c, P_LB) == 0, "the transformer has no g_norm or bounds");
    const int slots[] = {P_EMB, P_ATTN_NORM, P_WQ, P_WF, P_WI, P_WO, P_MLP_NORM, P_WGATE, P_WDOWN, P_NORM, P_LM};
    const char *names[] = {"model.embed_tokens.weight", "model.layers.1.input_layernorm.weight",
                           "model.layers.1.self_attn.q_proj.weight", "model.layers.1.self_attn.k_proj.weight",
                           "model.layers.1.self_attn.v_proj.weight", "model.layers.1.self_attn.o_proj.weight",
                           "model.layers.1.post_attention_layernorm.weight", "model.layers.1.mlp.gate_proj.weight",
                           "model.layers.1.mlp.down_proj.weight", "model.norm.weight", "lm_head.weight"};
    for (size_t i = 0; i < sizeof slots / sizeof slots[0]; i++) {
        char n[96];
        hf_name(n, sizeof n, &c, slots[i], 1);
        CHECK(!strcmp(n, names[i]), "the %s slot of a transformer is named %s, not %s", PARAMS[slots[i]].name, n, names[i]);
    }
    Model m, r;
    model_alloc(&m, &c);
    model_init(&m, 3);
    for (int64_t i = 0; i < m.lay.n; i++) m.params[i] = (float)m.params[i];
    RunState rs = {.c = c, .h = {.B = 2, .T = 8, .accum = 1, .steps = 10, .lr = 1e-3, .min_lr = 1e-4, .wd = 0.1,
                                 .beta1 = 0.9, .beta2 = 0.95, .adam_eps = 1e-8, .clip = 1, .warmup = 2, .seed = 7}};
    snprintf(rs.tokenizer, sizeof rs.tokenizer, "byte");
    snprintf(rs.data, sizeof rs.data, "data/x");
    mkdir_p("tests/tmp");
    checkpoint_save("tests/tmp/test_model_tpp.ckpt", &m, &rs, 0);
    RunState back;
    checkpoint_load("tests/tmp/test_model_tpp.ckpt", &r, &back, 0);
    CHECK(back.c.mixer == MIXER_TRANSFORMER && back.c.K == 4 && back.c.H == 3 && !back.c.lower_bound &&
          r.lay.n == m.lay.n && !memcmp(r.params, m.params, m.lay.n * sizeof(real)),
          "transformer checkpoint round trip: mixer %d, K %d", back.c.mixer, back.c.K);
    model_free(&m); model_free(&r);
    printf("transformer: head dim even, no bounds, %lld parameters, LLaMA's names, checkpoint round trip\n",
           (long long)lay.n);
    // the Pile presets at V 32000: the same D, L and MLP; heads of 64
    const char *pile[] = {"pile-150m", "pile-385m", "pile-1b", "pile-3b"};
    for (int i = 0; i < 4; i++) {
        const Preset *ps = preset_find(pile[i]);
        SizeArgs zt = {.arch = MIXER_TRANSFORMER, .has_arch = 1}, zh = {0};
        Config t = preset_config(ps, &zt, 32000), h = preset_config(ps, &zh, 32000);
        config_finish(&t);
        config_finish(&h);
        const double nt = (double)layout_of(&t).n, nh = (double)layout_of(&h).n;
        CHECK(t.K == 64 && fabs(nt / nh - 1) < 0.01, "%s: transformer head dim %d, %.0f parameters against HGRN2's %.0f",
              pile[i], t.K, nt, nh);
        printf("%-9s transformer %d heads x 64: %.0f parameters, HGRN2 %.0f (%+.3f%%)\n", pile[i], t.H, nt, nh,
               100 * (nt / nh - 1));
    }
}

int main(void) {
    // thousands of tiny forward passes: one thread avoids paying a parallel region's start-up for each
    omp_set_num_threads(1);
    Config base = {.V = 11, .D = 8, .L = 3, .K = 4, .I = 12, .tie = 0, .lower_bound = 1, .eps = 1e-6};
    fd_model(base, 2, 7, 1, 0, "untied, lower bounds, T 7");
    Config tied = base;
    tied.tie = 1;
    g_hgru_chunk = 64;          // the chunked form of the token mixer, across a chunk boundary
    fd_model(tied, 1, 70, 2, 0, "tied, chunked mixer, T 70 (two chunks)");
    g_hgru_chunk = 0;
    fd_model(tied, 1, 70, 2, 0, "tied, recurrent mixer, T 70");
    Config nolb = base;
    nolb.lower_bound = 0; nolb.K = 2; nolb.L = 2;
    fd_model(nolb, 2, 5, 3, 0, "no lower bounds, K 2");
    Config nomlp = base;        // blocks of the token mixer alone: the residual skips the missing MLP
    nomlp.I = 0;
    fd_model(nomlp, 2, 7, 4, 0, "no MLP, untied, lower bounds, T 7");
    fd_model(nomlp, 2, 11, 6, 1, "no MLP, sparse targets (the sparse head)");
    fd_model(base, 2, 11, 7, 1, "MLP, sparse targets (the sparse head)");
    nomlp.tie = 1; nomlp.L = 1;
    fd_model(nomlp, 1, 6, 5, 0, "no MLP, one layer, tied, T 6");
    sparse_head_matches_dense();
    grads_ready_reports(base, "reports: untied, lower bounds");
    grads_ready_reports(tied, "reports: tied");
    grads_ready_reports((Config){.V = 11, .D = 8, .L = 2, .K = 4, .I = 0, .tie = 1, .lower_bound = 1, .eps = 1e-6},
                        "reports: no MLP, tied, lower bounds");
    grads_ready_reports((Config){.V = 11, .D = 8, .L = 2, .K = 1, .I = 12, .lower_bound = 1, .eps = 1e-6,
                                 .mixer = MIXER_HGRN1}, "reports: hgrn1");
    grads_ready_reports((Config){.V = 11, .D = 8, .L = 2, .K = 4, .I = 12, .eps = 1e-6, .mixer = MIXER_TRANSFORMER},
                        "reports: transformer");
    decode_matches_forward(9, 1, MIXER_CAUSAL, LAYER_FLA, BLOCK_FLA);
    decode_matches_forward(150, 70, MIXER_CAUSAL, LAYER_FLA, BLOCK_FLA);
    g_hgru_chunk = 64;          // a chunked prefill, then recurrent steps
    decode_matches_forward(150, 70, MIXER_CAUSAL, LAYER_FLA, BLOCK_FLA);
    g_hgru_chunk = 0;
    batched_decode_matches_single(MIXER_CAUSAL, LAYER_FLA, BLOCK_FLA, 4);
    batched_decode_matches_single(MIXER_CAUSAL, LAYER_FLA, BLOCK_FLA, 10);
    // the HGRN2 authors' layer (--mixer-layer lra): biases, sigmoid q, silu v, an unscaled readout, a LayerNorm
    Config lra = base;
    lra.layer = LAYER_LRA;
    fd_model(lra, 2, 7, 41, 0, "lra layer: MLP, untied, lower bounds, T 7");
    Config lra2 = tied;
    lra2.layer = LAYER_LRA; lra2.I = 0; lra2.lower_bound = 0; lra2.K = 2;
    g_hgru_chunk = 64;
    fd_model(lra2, 1, 70, 42, 0, "lra layer: no MLP, tied, chunked, T 70");
    g_hgru_chunk = 0;
    fd_model(lra2, 2, 11, 43, 1, "lra layer: no MLP, sparse targets");
    grads_ready_reports(lra, "reports: lra layer");
    decode_matches_forward(9, 1, MIXER_CAUSAL, LAYER_LRA, BLOCK_FLA);
    decode_matches_forward(150, 70, MIXER_CAUSAL, LAYER_LRA, BLOCK_FLA);
    batched_decode_matches_single(MIXER_CAUSAL, LAYER_LRA, BLOCK_FLA, 4);
    // Zoology's blocks (--block zoology): LayerNorms with biases, the identity in an absent MLP's place
    Config zb = base;
    zb.block = BLOCK_ZOOLOGY; zb.eps = 1e-5;
    fd_model(zb, 2, 7, 51, 0, "zoology blocks: MLP, untied, lower bounds, T 7");
    Config zb0 = lra2;          // the authors' MQAR model: their layer in Zoology's blocks, no MLP, tied
    zb0.block = BLOCK_ZOOLOGY; zb0.eps = 1e-5;
    fd_model(zb0, 2, 9, 52, 0, "zoology blocks, lra layer: no MLP, tied, T 9");
    fd_model(zb0, 2, 11, 53, 1, "zoology blocks, lra layer: no MLP, sparse");
    Config zh1 = zb;
    zh1.mixer = MIXER_HGRN1; zh1.K = 1; zh1.I = 0;
    fd_model(zh1, 2, 7, 54, 0, "zoology blocks, hgrn1: no MLP, T 7");
    Config ztp = zb;
    ztp.mixer = MIXER_TRANSFORMER; ztp.lower_bound = 0; ztp.K = 4;
    fd_model(ztp, 2, 7, 55, 0, "zoology blocks, transformer: MLP, T 7");
    grads_ready_reports(zb0, "reports: zoology blocks, no MLP");
    decode_matches_forward(150, 70, MIXER_CAUSAL, LAYER_FLA, BLOCK_ZOOLOGY);
    decode_matches_forward(150, 70, MIXER_CAUSAL, LAYER_LRA, BLOCK_ZOOLOGY);
    batched_decode_matches_single(MIXER_CAUSAL, LAYER_FLA, BLOCK_ZOOLOGY, 4);
    // HGRN1: the element-wise mixer (K = 1), with and without lower bounds and MLPs
    Config h1 = base;
    h1.mixer = MIXER_HGRN1; h1.K = 1;
    fd_model(h1, 2, 7, 21, 0, "hgrn1: MLP, untied, lower bounds, T 7");
    Config h1b = h1;
    h1b.lower_bound = 0; h1b.tie = 1;
    fd_model(h1b, 2, 9, 22, 0, "hgrn1: MLP, tied, no lower bounds, T 9");
    Config h1c = h1;
    h1c.I = 0;
    fd_model(h1c, 1, 65, 23, 0, "hgrn1: no MLP, lower bounds, T 65");
    h1c.lower_bound = 0;
    fd_model(h1c, 2, 6, 24, 1, "hgrn1: no MLP, no lower bounds, sparse targets");
    decode_matches_forward(9, 1, MIXER_HGRN1, LAYER_FLA, BLOCK_FLA);
    decode_matches_forward(150, 70, MIXER_HGRN1, LAYER_FLA, BLOCK_FLA);
    batched_decode_matches_single(MIXER_HGRN1, LAYER_FLA, BLOCK_FLA, 4);
    hgrn1_config();
    // the transformer: attention with rotary positions, with and without MLPs, tied and untied, one head or several
    Config tp = base;
    tp.mixer = MIXER_TRANSFORMER; tp.lower_bound = 0;
    fd_model(tp, 2, 7, 31, 0, "transformer: 2 heads of 4, MLP, untied, T 7");
    Config tp1 = tp;
    tp1.K = 8; tp1.tie = 1; tp1.L = 2;
    fd_model(tp1, 1, 40, 32, 0, "transformer: one head of 8, tied, T 40");
    Config tp2 = tp;
    tp2.K = 2; tp2.I = 0;
    fd_model(tp2, 2, 9, 33, 0, "transformer: 4 heads of 2, no MLP, T 9");
    fd_model(tp2, 2, 11, 34, 1, "transformer: no MLP, sparse targets");
    decode_matches_forward(9, 1, MIXER_TRANSFORMER, LAYER_FLA, BLOCK_FLA);
    decode_matches_forward(150, 70, MIXER_TRANSFORMER, LAYER_FLA, BLOCK_FLA);
    batched_decode_matches_single(MIXER_TRANSFORMER, LAYER_FLA, BLOCK_FLA, 4);
    transformer_config();
    checkpoints();
    checkpoint_no_mlp();
    checkpoint_lra();
    zoology_blocks();
    embed_dropout_grads();
    schedules();
    return check_summary("test_model");
}
