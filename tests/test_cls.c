// test_cls.c: the sequence classifier (cls.c) in float64 (it links the library compiled with -DHGRN2_F64).
//  - finite differences of the mean loss against the backward pass, for every parameter tensor, with each
//    norm, both heads, positions, dropout, lower bounds, and the chunked and plain token mixers
//  - in evaluation (running statistics, no dropout) an example's logits do not depend on the rest of its batch
//  - training updates BatchNorm's running statistics, evaluation leaves them alone
#include <math.h>
#include <omp.h>

#include "../cls.h"
#include "../model.h"
#include "check.h"

typedef struct {
    int B, T;
    int32_t *tok, *lens, *lab;
} Batch;

static Batch make_batch(const ClsConfig *c, int B, int T, uint64_t *s) {
    Batch b = {B, T, xmalloc((size_t)B * c->ndoc * T * sizeof(int32_t)), xmalloc((size_t)B * c->ndoc * sizeof(int32_t)),
               xmalloc((size_t)B * sizeof(int32_t))};
    for (int i = 0; i < B * c->ndoc; i++) {
        b.lens[i] = i == 0 ? T : 1 + (int)(splitmix64(s) % (uint64_t)T);     // one full-length document
        for (int t = 0; t < T; t++) b.tok[(int64_t)i * T + t] = t < b.lens[i] ? (int32_t)(splitmix64(s) % (uint64_t)(c->V - 1)) + 1 : 0;
    }
    for (int i = 0; i < B; i++) b.lab[i] = (int32_t)(splitmix64(s) % (uint64_t)(c->ndoc == 2 ? 2 : c->classes));
    return b;
}
static void free_batch(Batch *b) { free(b->tok); free(b->lens); free(b->lab); }

static double mean_loss(ClsModel *m, ClsActs *a, const Batch *b) {
    return cls_forward(m, a, b->tok, b->lens, b->lab, b->B, 1, 99, NULL, NULL) / b->B;
}

// Checks d(mean loss)/d(param) by a fourth-order central difference on 6 entries of every tensor (all of the
// lower bounds), in training mode: batch statistics and the same dropout masks (a function of the seed) in
// every evaluation. Float64: an exact gradient lands near 1e-11, so an absolute 1e-8 plus a relative 1e-6
// leaves orders of margin while catching any wrong term.
static void fd_cls(ClsConfig c, int B, int T, uint64_t seed, const char *what) {
    const char *bad = cls_config_finish(&c);
    if (bad) { printf("bad config: %s\n", bad); exit(1); }
    ClsModel m;
    cls_alloc(&m, &c);
    cls_init(&m, seed);
    cls_alloc_training(&m);
    uint64_t s = seed * 77 + 1;
    // norms, biases and lower bounds away from their initial values; weights larger than 0.02 so every path
    // carries signal well above the finite-difference noise
    for (int p = 0; p < NCPARAM; p++) {
        int64_t r, k;
        cls_param_shape(&c, p, &r, &k);
        for (int l = 0; l < (p < C_FIRST_LAYER ? 1 : c.L); l++) {
            real *t = CW(&m, p, l);
            for (int64_t i = 0; i < r * k; i++)
                t[i] = CPARAMS[p].init == INIT_NORMAL ? t[i] * 15 : t[i] + (real)(0.5 * rng_normal(&s));
        }
    }
    Batch b = make_batch(&c, B, T, &s);
    ClsActs *a = cls_acts_alloc(&c, B, T, 1);
    op_zero(m.grads, m.lay.n);
    cls_forward(&m, a, b.tok, b.lens, b.lab, B, 1, 99, NULL, NULL);
    cls_backward(&m, a, 1.0 / B);
    double worst = 0;
    int checked = 0;
    for (int p = 0; p < NCPARAM; p++) {
        int64_t r, k;
        cls_param_shape(&c, p, &r, &k);
        const int64_t n = r * k;
        if (!n) continue;
        for (int l = 0; l < (p < C_FIRST_LAYER ? 1 : c.L); l++) {
            real *w = CW(&m, p, l), *g = CG(&m, p, l);
            const int probes = p == C_LB ? (int)n : 6;
            for (int j = 0; j < probes; j++) {
                const int64_t i = p == C_LB ? j : (int64_t)(splitmix64(&s) % (uint64_t)n);
                const double h = 5e-5, off[4] = {2 * h, h, -h, -2 * h};
                const real keep = w[i];
                double f[4];
                for (int q = 0; q < 4; q++) { w[i] = keep + off[q]; f[q] = mean_loss(&m, a, &b); }
                w[i] = keep;
                const double fd = (8 * (f[1] - f[2]) - (f[0] - f[3])) / (12 * h), an = g[i];
                const double err = fabs(fd - an), tol = 1e-8 + 1e-6 * fabs(an);
                if (err / tol > worst) worst = err / tol;
                checked++;
                CHECK(err <= tol, "%s: d loss / d %s[layer %d][%lld]: backward %.12g, finite difference %.12g", what,
                      CPARAMS[p].name, l, (long long)i, an, fd);
            }
        }
    }
    printf("%-58s %4d probes, worst error / tolerance %.3g\n", what, checked, worst);
    cls_acts_free(a);
    free_batch(&b);
    cls_free(&m);
}

// Evaluation uses the running statistics and no dropout, so an example's loss is the same alone or beside
// others; training changes the running statistics (BatchNorm), evaluation does not.
static void eval_is_per_example(ClsConfig c, const char *what) {
    cls_config_finish(&c);
    ClsModel m;
    cls_alloc(&m, &c);
    cls_init(&m, 3);
    uint64_t s = 5;
    Batch b = make_batch(&c, 4, 9, &s);
    ClsActs *tr = cls_acts_alloc(&c, 4, 9, 1), *ev = cls_acts_alloc(&c, 4, 9, 0);
    cls_alloc_training(&m);
    const int64_t ns = cls_nstats(&c);
    real *before = ns ? xmalloc((size_t)ns * sizeof(real)) : NULL;
    if (ns) memcpy(before, m.stats, (size_t)ns * sizeof(real));
    cls_forward(&m, tr, b.tok, b.lens, b.lab, 4, 1, 1, NULL, NULL);     // moves the running statistics
    int moved = 0;
    for (int64_t i = 0; i < ns; i++) moved += m.stats[i] != before[i];
    if (ns) CHECK(moved > ns / 2, "%s: a training forward moved %d of %lld running statistics", what, moved, (long long)ns);
    if (ns) memcpy(before, m.stats, (size_t)ns * sizeof(real));
    int32_t pred[4];
    int64_t right;
    const double all = cls_forward(&m, ev, b.tok, b.lens, b.lab, 4, 0, 0, &right, pred);
    double sum = 0;
    for (int i = 0; i < 4; i++) {
        Batch one = {1, 9, b.tok + (int64_t)i * c.ndoc * 9, b.lens + i * c.ndoc, b.lab + i};
        int32_t p1;
        const double li = cls_forward(&m, ev, one.tok, one.lens, one.lab, 1, 0, 0, NULL, &p1);
        sum += li;
        CHECK(p1 == pred[i], "%s: example %d predicted %d alone and %d in the batch", what, i, p1, pred[i]);
    }
    CHECK(fabs(all - sum) <= 1e-12 * fabs(all), "%s: batch loss %.15g, per-example losses sum to %.15g", what, all, sum);
    for (int64_t i = 0; i < ns; i++) CHECK(m.stats[i] == before[i], "%s: evaluation changed running statistic %lld", what, (long long)i);
    CHECK(right >= 0 && right <= 4, "%s: %lld correct of 4", what, (long long)right);
    printf("%-58s evaluation is per example (loss %.6f)\n", what, all / 4);
    free(before);
    cls_acts_free(tr);
    cls_acts_free(ev);
    free_batch(&b);
    cls_free(&m);
}

int main(void) {
    omp_set_num_threads(1);   // thousands of tiny forwards
    ClsConfig listops = {.V = 13, .D = 8, .L = 2, .K = 4, .I = 8, .classes = 5, .ndoc = 1, .norm = NORM_BATCH,
                         .pos = POS_SINUSOIDAL, .lower_bound = 1, .dropout = 0, .eps = 1e-5};
    fd_cls(listops, 3, 7, 1, "BatchNorm, positions, lower bounds, T 7");
    ClsConfig text = listops;
    text.norm = NORM_LAYER; text.pos = POS_NONE; text.dropout = 0.25; text.K = 2;
    fd_cls(text, 3, 6, 2, "LayerNorm, no positions, dropout 0.25, K 2");
    ClsConfig rms = listops;
    rms.norm = NORM_RMS; rms.lower_bound = 0; rms.L = 1; rms.I = 16;
    fd_cls(rms, 2, 5, 3, "RMSNorm, no lower bounds, one layer, GLU 2D");
    ClsConfig pair = listops;
    pair.ndoc = 2; pair.classes = 2; pair.dropout = 0.1;
    fd_cls(pair, 3, 6, 4, "document pairs, BatchNorm, dropout 0.1");
    pair.norm = NORM_LAYER; pair.L = 3;
    fd_cls(pair, 2, 5, 5, "document pairs, LayerNorm, three layers");
    g_hgru_chunk = 64;      // the chunked token mixer both ways, across a chunk boundary
    fd_cls(listops, 2, 70, 6, "BatchNorm, chunked mixer, T 70 (two chunks)");
    g_hgru_chunk = 0;
    fd_cls(listops, 2, 70, 6, "BatchNorm, plain mixer, T 70");
    eval_is_per_example(listops, "BatchNorm");
    eval_is_per_example(text, "LayerNorm with dropout");
    eval_is_per_example(pair, "document pairs");
    return check_summary("test_cls");
}
