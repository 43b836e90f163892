// test_cls.c: the sequence classifier (cls.c) in float64 (it links the library compiled with -DHGRN2_F64).
//  - finite differences of the mean loss against the backward pass, for every parameter tensor, with each
//    norm, both heads, positions, dropout, lower bounds, and the chunked and plain token mixers
//  - in evaluation (running statistics, no dropout) an example's logits do not depend on the rest of its batch
//  - training updates BatchNorm's running statistics, evaluation leaves them alone
//  - pixel inputs, and the 2-D scans against an explicit sum of the four directional recurrences per pixel
//  - patch inputs: their gradients, and where the rearrangement puts every pixel of an image
//  - mixup and cutmix: the staged pixels against lam x_b + (1 - lam) x_partner and the box's partner values
//    (pixels and patches), the draws (corrected lam, determinism, the switch and mixing rates), the gradients
//    with soft targets (mixing and label smoothing) by finite differences, evaluation never mixing
//  - the per-epoch schedule against its formula, the per-step one unchanged
#include <math.h>
#include <omp.h>

#include "../cls.h"
#include "../model.h"
#include "../cls_run.h"
#include "check.h"

typedef struct {
    int B, T;
    int32_t *tok, *lens, *lab;
} Batch;

// Token documents of random lengths (one full); pixel documents of T positions x channels values (random
// lengths too with 1-D scans; 2-D scans need whole images).
static Batch make_batch(const ClsConfig *c, int B, int T, uint64_t *s) {
    const int pix = c->input == INPUT_PIXELS, CH = cls_pos_values(c);
    Batch b = {B, T, xmalloc((size_t)B * c->ndoc * T * CH * sizeof(int32_t)), xmalloc((size_t)B * c->ndoc * sizeof(int32_t)),
               xmalloc((size_t)B * sizeof(int32_t))};
    for (int i = 0; i < B * c->ndoc; i++) {
        const int len = i == 0 || c->scan != SCAN_1D || c->patch > 1 ? T : 1 + (int)(splitmix64(s) % (uint64_t)T);
        b.lens[i] = len * CH;
        for (int t = 0; t < T * CH; t++)
            b.tok[(int64_t)i * T * CH + t] = t >= len * CH ? 0 : pix ? (int32_t)(splitmix64(s) % 256)
                                                                     : (int32_t)(splitmix64(s) % (uint64_t)(c->V - 1)) + 1;
    }
    for (int i = 0; i < B; i++) b.lab[i] = (int32_t)(splitmix64(s) % (uint64_t)(c->ndoc == 2 ? 2 : c->classes));
    return b;
}
static void free_batch(Batch *b) { free(b->tok); free(b->lens); free(b->lab); }

// The bf16 scans' ops (--scan-dtype bf16) come here (the linker's --wrap, Makefile): with g_lra16_rnd at 0 they
// run without their roundings, the function whose derivative the backward computes, so finite differences can
// check how the model wires them in; tests/test_cls_ops.c checks the ops themselves, roundings included.
static int g_lra16_rnd = 1;
void __real_op_lra_bf16_fwd(real *o, const real *qfi, int64_t ld, const real *lb, int B, int T, int H, int K, int rnd);
void __real_op_lra_bf16_bwd(real *dqfi, int64_t ldd, real *dlb, const real *dout, const real *qfi, int64_t ld,
                            const real *lb, int B, int T, int H, int K, int rnd);
void __wrap_op_lra_bf16_fwd(real *o, const real *qfi, int64_t ld, const real *lb, int B, int T, int H, int K, int rnd) {
    __real_op_lra_bf16_fwd(o, qfi, ld, lb, B, T, H, K, rnd && g_lra16_rnd);
}
void __wrap_op_lra_bf16_bwd(real *dqfi, int64_t ldd, real *dlb, const real *dout, const real *qfi, int64_t ld,
                            const real *lb, int B, int T, int H, int K, int rnd) {
    __real_op_lra_bf16_bwd(dqfi, ldd, dlb, dout, qfi, ld, lb, B, T, H, K, rnd && g_lra16_rnd);
}

// The mixing fd_cls's training forwards use (NULL: none).
static const ClsMix *fd_mix;

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
    cls_init(&m, seed, CLS_INIT_NORMAL);
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
    cls_acts_set_mix(a, fd_mix);
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
    cls_init(&m, 3, CLS_INIT_NORMAL);
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
    const int CH = cls_pos_values(&c);
    for (int i = 0; i < 4; i++) {
        Batch one = {1, 9, b.tok + (int64_t)i * c.ndoc * 9 * CH, b.lens + i * c.ndoc, b.lab + i};
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

// A batch's documents cut or padded (with id 0) to T positions each; the lengths kept (each at most T).
static Batch batch_to(const ClsConfig *c, const Batch *b, int first, int n, int T) {
    Batch o = {n, T, xcalloc((size_t)n * c->ndoc * T, sizeof(int32_t)), xmalloc((size_t)n * c->ndoc * sizeof(int32_t)),
               xmalloc((size_t)n * sizeof(int32_t))};
    for (int i = 0; i < n * c->ndoc; i++) {
        const int from = first * c->ndoc + i, len = b->lens[from];
        if (len > T) { printf("batch_to: a document of %d in %d positions\n", len, T); exit(1); }
        o.lens[i] = len;
        memcpy(o.tok + (int64_t)i * T, b->tok + (int64_t)from * b->T, (size_t)len * sizeof(int32_t));
    }
    memcpy(o.lab, b->lab + first, (size_t)n * sizeof(int32_t));
    return o;
}

// --pad-group: examples whose group's longest document has E positions, in a batch padded to T > E, train as the
// same examples padded to E: the same loss, gradients and running statistics (to rounding: a product may sum its
// rows in other blocks). In evaluation each group of a batch scores as it would alone, padded to its longest.
// Without dropout, whose masks are drawn by place in the batch's array.
static void pad_group_same(ClsConfig c, const char *what) {
    c.dropout = c.input_dropout = 0;
    c.pad_group = 0;
    ClsConfig cg = c;
    cg.pad_group = 2;
    const char *bad = cls_config_finish(&c);
    if (!bad) bad = cls_config_finish(&cg);
    if (bad) { printf("bad config: %s\n", bad); exit(1); }
    ClsModel m;
    cls_alloc(&m, &c);
    cls_init(&m, 7, CLS_INIT_NORMAL);
    cls_alloc_training(&m);
    uint64_t s = 23;
    for (int64_t i = 0; i < m.lay.n; i++) m.params[i] += (real)(0.3 * rng_normal(&s));
    for (int64_t i = 0; i < cls_nstats(&c); i++)     // each norm's running means [D], then variances [D]
        m.stats[i] = (real)((i / c.D) % 2 ? 0.5 + rng_uniform(&s) : rng_normal(&s));
    const int E = 6, T = 11, nd = c.ndoc;
    const int64_t ns = cls_nstats(&c), np = m.lay.n;
    // training: one group of 2 (the first document E long), in arrays of E and of T
    Batch be = make_batch(&c, 2, E, &s), bt = batch_to(&c, &be, 0, 2, T);
    ClsActs *ae = cls_acts_alloc(&c, 2, E, 1), *at = cls_acts_alloc(&cg, 2, T, 1);
    real *st0 = xmalloc((size_t)(ns + 1) * sizeof(real)), *ste = xmalloc((size_t)(ns + 1) * sizeof(real));
    real *ge = xmalloc((size_t)np * sizeof(real));
    if (ns) memcpy(st0, m.stats, (size_t)ns * sizeof(real));
    op_zero(m.grads, np);
    const double le = cls_forward(&m, ae, be.tok, be.lens, be.lab, 2, 1, 5, NULL, NULL);
    cls_backward(&m, ae, 0.5);
    memcpy(ge, m.grads, (size_t)np * sizeof(real));
    if (ns) {   // (LayerNorm has none: stats is NULL)
        memcpy(ste, m.stats, (size_t)ns * sizeof(real));
        memcpy(m.stats, st0, (size_t)ns * sizeof(real));
    }
    m.c.pad_group = 2;
    op_zero(m.grads, np);
    const double lt = cls_forward(&m, at, bt.tok, bt.lens, bt.lab, 2, 1, 5, NULL, NULL);
    cls_backward(&m, at, 0.5);
    double gmax = 0, gerr = 0, serr = 0;
    for (int64_t i = 0; i < np; i++) {
        gmax = fmax(gmax, fabs(ge[i]));
        gerr = fmax(gerr, fabs(m.grads[i] - ge[i]));
    }
    for (int64_t i = 0; i < ns; i++) serr = fmax(serr, fabs(m.stats[i] - ste[i]) / (1 + fabs(ste[i])));
    CHECK(fabs(lt - le) <= 1e-12 * fabs(le), "%s: loss %.15g padded to %d with --pad-group, %.15g padded to %d", what, lt,
          T, le, E);
    CHECK(gerr <= 1e-11 * gmax, "%s: gradients differ by %.3g (largest %.3g) between padding to %d and to %d", what,
          gerr, gmax, T, E);
    CHECK(serr <= 1e-13, "%s: running statistics differ by %.3g between padding to %d and to %d", what, serr, T, E);
    // evaluation: 5 examples in groups {0, 1}, {2, 3}, {4}, each against itself alone padded to its longest
    Batch b5 = make_batch(&c, 5, T, &s);
    ClsActs *ev = cls_acts_alloc(&cg, 5, T, 0);
    const double all = cls_forward(&m, ev, b5.tok, b5.lens, b5.lab, 5, 0, 0, NULL, NULL);
    m.c.pad_group = 0;
    double sum = 0;
    for (int g = 0; g < 5; g += 2) {
        const int n = g + 2 <= 5 ? 2 : 1;
        int Eg = 1;
        for (int i = g * nd; i < (g + n) * nd; i++) Eg = b5.lens[i] > Eg ? b5.lens[i] : Eg;
        Batch bg = batch_to(&c, &b5, g, n, Eg);
        ClsActs *eg = cls_acts_alloc(&c, n, Eg, 0);
        sum += cls_forward(&m, eg, bg.tok, bg.lens, bg.lab, n, 0, 0, NULL, NULL);
        cls_acts_free(eg);
        free_batch(&bg);
    }
    CHECK(fabs(all - sum) <= 1e-12 * fabs(all), "%s: evaluation loss %.15g in groups of 2, %.15g group by group", what, all,
          sum);
    printf("%-58s padding groups: as padded to the group's longest (gradients to %.2g)\n", what, gmax ? gerr / gmax : 0);
    cls_acts_free(ae); cls_acts_free(at); cls_acts_free(ev);
    free_batch(&be); free_batch(&bt); free_batch(&b5);
    free(st0); free(ste); free(ge);
    cls_free(&m);
}

// The 2-D scans against their definition: for every pixel, the sum over the four directions (along its row
// left to right and right to left, along its column top to bottom and bottom to top) of the recurrence
// S = diag(exp g) S + k v^T, o = S^T q / sqrt(K) run up to that pixel, evaluated here directly in double.
// lines 0: all four directions; 1: the rows' two; 2: the columns' two (the series form's passes).
// HGRN1 (mixer MIXER_HGRN1, K = Dv = 1, a head per channel): h = a h + silu(i) (1 - a), o = h, with i and f
// channel h's columns of the first two blocks of qfi. HGRN2's LRA layer (layer LAYER_LRA): the values v are
// silu(v) and the state is read by sigmoid(q), unscaled.
static void scans_2d_explicit_of(int mixer, int layer, int S, int gh, int gw, int H, int K, int Dv, int lines) {
    ClsConfig c = {.V = 5, .D = H * Dv, .L = 1, .K = K, .I = 4, .classes = 2, .ndoc = 1, .norm = NORM_LAYER,
                   .pos = POS_NONE, .lower_bound = 0, .eps = 1e-5, .scan = SCAN_2D, .grid_h = gh, .grid_w = gw,
                   .mixer = mixer, .layer = layer};
    const int h1 = mixer == MIXER_HGRN1, lra = layer == LAYER_LRA;
    const char *bad = cls_config_finish(&c);
    if (bad) { printf("bad config: %s\n", bad); exit(1); }
    if (c.Dv != Dv) { printf("heads of this model have Dv = K\n"); exit(1); }
    ClsModel m;
    cls_alloc(&m, &c);
    ClsActs *a = cls_acts_alloc(&c, S, gh * gw, 0);
    const int T = gh * gw, HK = H * K, QFI = 2 * HK + c.D;
    const int64_t N = (int64_t)S * T;
    uint64_t r = 99 + (uint64_t)gh * 7 + (uint64_t)gw;
    real *qfi = xmalloc((size_t)(N * QFI) * sizeof(real)), *o = xmalloc((size_t)(N * c.D) * sizeof(real));
    for (int64_t i = 0; i < N * QFI; i++) qfi[i] = (real)rng_normal(&r);
    cls_mixer_scans(&m, a, o, qfi, 0, S, lines);
    double worst = 0;
    double *St = xmalloc((size_t)K * Dv * sizeof(double));
    for (int s = 0; s < S; s++)
        for (int y = 0; y < gh; y++)
            for (int x = 0; x < gw; x++)
                for (int h = 0; h < H; h++) {
                    double want[512] = {0};
                    // the four lines through (y, x): direction (dy, dx), from the line's start up to the pixel
                    const int dirs[4][2] = {{0, 1}, {0, -1}, {1, 0}, {-1, 0}};
                    for (int d = lines == 2 ? 2 : 0; d < (lines == 1 ? 2 : 4); d++) {
                        const int dy = dirs[d][0], dx = dirs[d][1];
                        int yy = dy > 0 ? 0 : dy < 0 ? gh - 1 : y, xx = dx > 0 ? 0 : dx < 0 ? gw - 1 : x;
                        memset(St, 0, (size_t)K * Dv * sizeof(double));
                        for (;; yy += dy, xx += dx) {
                            const real *row = qfi + ((int64_t)s * T + (int64_t)yy * gw + xx) * QFI;
                            if (h1) {
                                const double f = row[HK + h], g = -log1p(exp(-f)), ip = row[h];
                                St[0] = exp(g) * St[0] + (1 - exp(g)) * ip / (1 + exp(-ip));
                            } else for (int i = 0; i < K; i++) {
                                const double f = row[HK + h * K + i], g = -log1p(exp(-f)), kk = 1 - exp(g);
                                for (int j = 0; j < Dv; j++) {
                                    const double vp = row[2 * HK + h * Dv + j], vv = lra ? vp / (1 + exp(-vp)) : vp;
                                    St[i * Dv + j] = exp(g) * St[i * Dv + j] + kk * vv;
                                }
                            }
                            if (yy == y && xx == x) break;
                        }
                        const real *row = qfi + ((int64_t)s * T + (int64_t)y * gw + x) * QFI;
                        if (h1) { want[0] += St[0]; continue; }
                        for (int j = 0; j < Dv; j++)
                            for (int i = 0; i < K; i++) {
                                const double qp = row[h * K + i];
                                const double q = lra ? 1 / (1 + exp(-qp)) : qp / (1 + exp(-qp)) / sqrt((double)K);
                                want[j] += St[i * Dv + j] * q;
                            }
                    }
                    for (int j = 0; j < Dv; j++) {
                        const double got = o[((int64_t)s * T + (int64_t)y * gw + x) * c.D + h * Dv + j];
                        const double e = fabs(got - want[j]) / (1 + fabs(want[j]));
                        if (e > worst) worst = e;
                    }
                }
    static const char *const what[3] = {"rows and columns", "rows", "columns"};
    CHECK(worst < 1e-12, "%s (%s layer) 2-D scans (%s) over %d x %d (H %d, K %d, Dv %d) differ from the explicit sum by %.3g",
          ARCH_NAMES[mixer], LAYER_NAMES[layer], what[lines], gh, gw, H, K, Dv, worst);
    printf("%s %s 2-D scans over %2d x %-2d along %-16s (S %d, H %d, K %d, Dv %d) against the explicit sum: worst %.2g\n",
           ARCH_NAMES[mixer], LAYER_NAMES[layer], gh, gw, what[lines], S, H, K, Dv, worst);
    free(St); free(qfi); free(o);
    cls_acts_free(a);
    cls_free(&m);
}
static void scans_2d_explicit(int S, int gh, int gw, int H, int K, int Dv, int lines) {
    scans_2d_explicit_of(MIXER_CAUSAL, LAYER_FLA, S, gh, gw, H, K, Dv, lines);
}

// Image's augmentation: every augmented image is the original cropped from its 4-pixel mirrored padding and
// maybe flipped, found here by trying every shift and flip (pixel values encode their coordinates); over
// many steps both flips and every shift occur; the same (seed, step) gives the same images.
static void augmentation(void) {
    const int h = 10, w = 12, ch = 2, n = 3, vals = h * w * ch;
    int32_t *orig = xmalloc((size_t)vals * sizeof(int32_t)), *img = xmalloc((size_t)n * vals * sizeof(int32_t));
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < ch; c++) orig[(y * w + x) * ch + c] = (y * w + x) * ch + c;
    int seen[9][9][2] = {{{0}}}, bad = 0;
    for (int step = 1; step <= 400; step++) {
        for (int b = 0; b < n; b++) memcpy(img + b * vals, orig, (size_t)vals * sizeof(int32_t));
        cls_augment(img, n, h, w, ch, 4, 7, step);
        for (int b = 0; b < n; b++) {
            int found = 0;
            for (int dy = -4; dy <= 4 && !found; dy++)
                for (int dx = -4; dx <= 4 && !found; dx++)
                    for (int f = 0; f < 2 && !found; f++) {
                        int ok = 1;
                        for (int y = 0; y < h && ok; y++)
                            for (int x = 0; x < w && ok; x++) {
                                int sy = y + dy, sx = x + dx;
                                sy = sy < 0 ? -sy : sy >= h ? 2 * (h - 1) - sy : sy;
                                sx = sx < 0 ? -sx : sx >= w ? 2 * (w - 1) - sx : sx;
                                if (f) sx = w - 1 - sx;
                                for (int c = 0; c < ch; c++) ok &= img[b * vals + (y * w + x) * ch + c] == orig[(sy * w + sx) * ch + c];
                            }
                        if (ok) { found = 1; seen[dy + 4][dx + 4][f]++; }
                    }
            bad += !found;
        }
    }
    int combos = 0;
    for (int i = 0; i < 9; i++) for (int j = 0; j < 9; j++) for (int f = 0; f < 2; f++) combos += seen[i][j][f] > 0;
    CHECK(!bad, "%d augmented images are no crop of the mirrored padding", bad);
    CHECK(combos >= 150, "only %d of the 162 shifts and flips occurred in 1200 images", combos);
    int32_t *again = xmalloc((size_t)n * vals * sizeof(int32_t));
    for (int b = 0; b < n; b++) { memcpy(img + b * vals, orig, (size_t)vals * 4); memcpy(again + b * vals, orig, (size_t)vals * 4); }
    cls_augment(img, n, h, w, ch, 4, 7, 5);
    cls_augment(again, n, h, w, ch, 4, 7, 5);
    CHECK(!memcmp(img, again, (size_t)n * vals * 4), "the same seed and step gave different images");
    printf("augmentation: 1200 images, each a crop of the mirrored padding (flipped or not), %d of 162 combinations\n", combos);
    free(orig); free(img); free(again);
}

// The patch rearrangement: every pixel (y, x, channel) of an image must go to position (y / p) (gw / p) + x / p,
// value ((y % p) p + x % p) channels + ch, each slot once (cls_patch_index, which the forward's staging uses).
// The forward must read that layout: transposing the pixels within each patch changes the loss, while reversing
// the order of the patches leaves it (1-D scans both ways and a mean pool cannot tell a sequence from its
// reverse), which holds only if a position holds exactly one patch.
static void patch_layout(int gh, int gw, int p, int ch) {
    ClsConfig c = {.V = 256, .D = 8, .L = 1, .K = 4, .I = 8, .classes = 3, .ndoc = 1, .norm = NORM_LAYER, .pos = POS_NONE,
                   .eps = 1e-5, .input = INPUT_PIXELS, .channels = ch, .scan = SCAN_1D, .grid_h = gh, .grid_w = gw, .patch = p};
    for (int i = 0; i < 3; i++) { c.pix_mean[i] = 0.5; c.pix_std[i] = 0.5; }
    const char *bad = cls_config_finish(&c);
    if (bad) { printf("bad config: %s\n", bad); exit(1); }
    const int64_t vals = (int64_t)gh * gw * ch, VP = (int64_t)p * p * ch, gwp = gw / p;
    CHECK(cls_pos_values(&c) == VP && cls_rows(&c) == gh / p && cls_cols(&c) == gw / p,
          "patch %d of %d x %d x %d: %d values per position, grid %d x %d", p, gh, gw, ch, cls_pos_values(&c), cls_rows(&c), cls_cols(&c));
    int *hit = xcalloc((size_t)vals, sizeof(int)), wrong = 0;
    for (int y = 0; y < gh; y++)
        for (int x = 0; x < gw; x++)
            for (int k = 0; k < ch; k++) {
                const int64_t t = ((int64_t)y * gw + x) * ch + k, at = cls_patch_index(&c, t);
                const int64_t want = ((int64_t)(y / p) * gwp + x / p) * VP + ((y % p) * p + x % p) * ch + k;
                wrong += at != want;
                if (at >= 0 && at < vals) hit[at]++;
            }
    int once = 1;
    for (int64_t i = 0; i < vals; i++) once &= hit[i] == 1;
    CHECK(!wrong && once, "patch %d of %d x %d x %d: %d pixels misplaced, every slot once: %d", p, gh, gw, ch, wrong, once);
    ClsModel m;
    cls_alloc(&m, &c);
    cls_init(&m, 21, CLS_INIT_NORMAL);
    uint64_t s = 17;
    const int B = 3;
    int32_t *img = xmalloc((size_t)(B * vals) * sizeof(int32_t)), *lens = xmalloc(B * sizeof(int32_t)), lab[3] = {0, 1, 2};
    for (int64_t i = 0; i < B * vals; i++) img[i] = (int32_t)(splitmix64(&s) % 256);
    for (int b = 0; b < B; b++) lens[b] = (int32_t)vals;
    ClsActs *a = cls_acts_alloc(&c, B, (int)(vals / VP), 0);
    int32_t pred[3];
    const double loss = cls_forward(&m, a, img, lens, lab, B, 0, 0, NULL, pred);
    // the same images with their pixels moved within patches by a transposition of each patch (y % p <-> x % p)
    // are different inputs: the loss must change, so the forward does read the patch layout, not the raster one
    int32_t *tr = xmalloc((size_t)(B * vals) * sizeof(int32_t));
    for (int b = 0; b < B; b++)
        for (int y = 0; y < gh; y++)
            for (int x = 0; x < gw; x++)
                for (int k = 0; k < ch; k++) {
                    const int ty = y / p * p + x % p, tx = x / p * p + y % p;
                    tr[b * vals + ((int64_t)ty * gw + tx) * ch + k] = img[b * vals + ((int64_t)y * gw + x) * ch + k];
                }
    const double loss_tr = cls_forward(&m, a, tr, lens, lab, B, 0, 0, NULL, NULL);
    CHECK(fabs(loss - loss_tr) > 1e-9, "patch %d: transposing the patches left the loss at %.12g", p, loss);
    // moving whole patches around the grid, with the 1-D scans' direction reversed (the grid read backwards: patch
    // i to patch n-1-i) is a sequence reversal, which the bidirectional mixer and the mean pool do not see
    int32_t *rev = xmalloc((size_t)(B * vals) * sizeof(int32_t));
    const int np = (gh / p) * gwp;
    for (int b = 0; b < B; b++)
        for (int y = 0; y < gh; y++)
            for (int x = 0; x < gw; x++) {
                const int pi = (y / p) * gwp + x / p, pj = np - 1 - pi, ry = pj / gwp * p + y % p, rx = pj % gwp * p + x % p;
                for (int k = 0; k < ch; k++)
                    rev[b * vals + ((int64_t)ry * gw + rx) * ch + k] = img[b * vals + ((int64_t)y * gw + x) * ch + k];
            }
    const double loss_rev = cls_forward(&m, a, rev, lens, lab, B, 0, 0, NULL, NULL);
    CHECK(fabs(loss - loss_rev) <= 1e-12 * fabs(loss), "patch %d: the patches in reverse order give loss %.15g, not %.15g", p,
          loss_rev, loss);
    printf("patches %d x %d of %2d x %-2d x %d: every pixel at its token and value; patch order reversed, same loss\n", p, p,
           gh, gw, ch);
    free(hit); free(img); free(lens); free(tr); free(rev);
    cls_acts_free(a);
    cls_free(&m);
}

// The plain final norm has no parameters; top-k counts: k = 1 is the argmax's, k = classes every labelled row,
// and they rise with k.
static void top_k(ClsConfig c) {
    c.classes = 7;
    const char *bad = cls_config_finish(&c);
    if (bad) { printf("bad config: %s\n", bad); exit(1); }
    int64_t r, k;
    cls_param_shape(&c, C_FNORM, &r, &k);
    CHECK(r * k == 0, "a plain final RMSNorm has a weight of %lld x %lld", (long long)r, (long long)k);
    cls_param_shape(&c, C_FNORM_B, &r, &k);
    CHECK(r * k == 0, "a plain final RMSNorm has a bias of %lld x %lld", (long long)r, (long long)k);
    ClsModel m;
    cls_alloc(&m, &c);
    cls_init(&m, 5, CLS_INIT_NORMAL);
    uint64_t s = 31;
    const int B = 40;
    Batch b = make_batch(&c, B, 6, &s);
    b.lab[3] = -1;      // a row without an example counts nowhere
    ClsActs *a = cls_acts_alloc(&c, B, 6, 0);
    int64_t correct = 0, prev = -1;
    cls_forward(&m, a, b.tok, b.lens, b.lab, B, 0, 0, &correct, NULL);
    CHECK(cls_topk_correct(a, B, 1) == correct, "top-1 %lld, the argmax's %lld", (long long)cls_topk_correct(a, B, 1),
          (long long)correct);
    for (int kk = 1; kk <= 7; kk++) {
        int64_t n = cls_topk_correct(a, B, kk);
        CHECK(n >= prev, "top-%d %lld below top-%d %lld", kk, (long long)n, kk - 1, (long long)prev);
        prev = n;
    }
    CHECK(prev == B - 1, "top-7 of 7 classes %lld, want every labelled row (%d)", (long long)prev, B - 1);
    CHECK(cls_topk_correct(a, B, 3) < B - 1, "top-3 of 7 classes is every row: the ranking is not checked");
    cls_acts_free(a);
    free_batch(&b);
    cls_free(&m);
}

// The staged input of a training forward with mixing, value by value: for row b and raster value t (pixel (y, x),
// channel ch), with v(r) = (pixel / 255 - mean[ch]) / std[ch] of row r and partner n - 1 - b, mixup stages
// lam v(b) + (1 - lam) v(partner), cutmix v(partner) inside the box and v(b) outside, at position
// cls_patch_index(t). Evaluation forwards on the same activations stage the plain pixels and score the plain
// loss; the training loss with mixing is the soft targets' (here checked against the formula).
static void mix_staging(ClsConfig c, const ClsMix *mx, const char *what) {
    const char *bad = cls_config_finish(&c);
    if (bad) { printf("bad config: %s\n", bad); exit(1); }
    ClsModel m;
    cls_alloc(&m, &c);
    cls_init(&m, 41, CLS_INIT_NORMAL);
    cls_alloc_training(&m);
    const int B = 3, P = cls_rows(&c) * cls_cols(&c), CH = cls_pos_values(&c);
    const int64_t vals = (int64_t)P * CH;
    uint64_t s = 43;
    Batch b = make_batch(&c, B, P, &s);
    ClsActs *a = cls_acts_alloc(&c, B, P, 1);
    cls_acts_set_mix(a, mx);
    const double loss = cls_forward(&m, a, b.tok, b.lens, b.lab, B, 1, 5, NULL, NULL);
    const real *got = cls_acts_staged_pixels(a);
    double worst = 0;
    int inside = 0, outside = 0;
    for (int r = 0; r < B; r++) {
        const int q = B - 1 - r;
        for (int64_t t = 0; t < vals; t++) {
            const int ch = (int)(t % c.channels);
            const int64_t px = t / c.channels, y = px / c.grid_w, x = px % c.grid_w;
            const double v = (b.tok[r * vals + t] / 255.0 - c.pix_mean[ch]) / c.pix_std[ch];
            const double vp = (b.tok[q * vals + t] / 255.0 - c.pix_mean[ch]) / c.pix_std[ch];
            double want = v;
            if (mx->kind == MIX_MIXUP) want = mx->lam * v + (1 - mx->lam) * vp;
            else if (mx->kind == MIX_CUTMIX) {
                const int in = y >= mx->y0 && y < mx->y1 && x >= mx->x0 && x < mx->x1;
                if (in) want = vp;
                inside += in && r != q;
                outside += !in && r != q;
            }
            const double e = fabs(got[r * vals + cls_patch_index(&c, t)] - want);
            if (e > worst) worst = e;
        }
    }
    CHECK(worst <= 1e-12, "%s: a staged value differs from the mixed pixel by %.3g", what, worst);
    // the same batch as 8-bit pixels (the JPEG loader's form): the same staged values and loss, bit for bit
    uint8_t *px8 = malloc((size_t)B * vals);
    for (int64_t i = 0; i < B * vals; i++) px8[i] = (uint8_t)b.tok[i];
    ClsActs *a8 = cls_acts_alloc(&c, B, P, 1);
    cls_acts_set_mix(a8, mx);
    const double loss8 = cls_forward8(&m, a8, px8, b.lens, b.lab, B, 1, 5, NULL, NULL);
    CHECK(loss8 == loss && !memcmp(cls_acts_staged_pixels(a8), got, (size_t)B * vals * sizeof(real)),
          "%s: 8-bit pixels staged otherwise than their int32 values (loss %.17g against %.17g)", what, loss8, loss);
    cls_acts_free(a8);
    free(px8);
    if (mx->kind == MIX_CUTMIX)
        CHECK(inside == 2 * (mx->y1 - mx->y0) * (mx->x1 - mx->x0) * c.channels && outside > 0,
              "%s: %d values inside the box, %d outside", what, inside, outside);
    // the mixed training loss differs from an unmixed forward's (soft_loss_value checks its value); evaluation
    // ignores the mixing
    ClsActs *plain = cls_acts_alloc(&c, B, P, 1);
    const double loss_plain = cls_forward(&m, plain, b.tok, b.lens, b.lab, B, 1, 5, NULL, NULL);
    CHECK(fabs(loss - loss_plain) > 1e-9, "%s: mixing left the training loss at %.12g", what, loss);
    ClsActs *ev = cls_acts_alloc(&c, B, P, 0), *ev2 = cls_acts_alloc(&c, B, P, 0);
    cls_acts_set_mix(ev, mx);
    const double l1 = cls_forward(&m, ev, b.tok, b.lens, b.lab, B, 0, 0, NULL, NULL);
    const double l2 = cls_forward(&m, ev2, b.tok, b.lens, b.lab, B, 0, 0, NULL, NULL);
    CHECK(l1 == l2, "%s: an evaluation forward with mixing set scored %.15g, without %.15g", what, l1, l2);
    int plainpix = 1;
    const real *ep = cls_acts_staged_pixels(ev);
    for (int r = 0; r < B; r++)
        for (int64_t t = 0; t < vals; t++) {
            const int ch = (int)(t % c.channels);
            plainpix &= ep[r * vals + cls_patch_index(&c, t)] == (real)((b.tok[r * vals + t] / 255.0 - c.pix_mean[ch]) / c.pix_std[ch]);
        }
    CHECK(plainpix, "%s: an evaluation forward staged mixed pixels", what);
    printf("%-58s staged as mixed (worst %.2g), evaluation unmixed\n", what, worst);
    cls_acts_free(a); cls_acts_free(plain); cls_acts_free(ev); cls_acts_free(ev2);
    free_batch(&b);
    cls_free(&m);
}

// The soft targets reach the loss as the formula says, on a model whose rows are independent (LayerNorm, no
// dropout): mixup at lam 1 without smoothing is the plain loss; at lam 0 every row is its partner's image with
// its partner's label, so the batch's loss is the plain one (the rows reversed); smoothing eps gives
// (1 - eps) L0 + eps U with U = sum of (logsumexp - mean logit), so the loss is affine in eps and moves with it.
static void soft_loss_value(ClsConfig c) {
    c.norm = NORM_LAYER; c.dropout = 0;
    const char *bad = cls_config_finish(&c);
    if (bad) { printf("bad config: %s\n", bad); exit(1); }
    ClsModel m;
    cls_alloc(&m, &c);
    cls_init(&m, 51, CLS_INIT_NORMAL);
    cls_alloc_training(&m);
    const int B = 4, P = cls_rows(&c) * cls_cols(&c);
    uint64_t s = 53;
    Batch b = make_batch(&c, B, P, &s);
    b.lab[0] = 0; b.lab[1] = 1; b.lab[2] = 2; b.lab[3] = 1;
    ClsActs *a = cls_acts_alloc(&c, B, P, 1);
    const double L0 = cls_forward(&m, a, b.tok, b.lens, b.lab, B, 1, 5, NULL, NULL);
    double L[5];
    const ClsMix mixes[5] = {{.kind = MIX_MIXUP, .lam = 1}, {.kind = MIX_MIXUP, .lam = 0}, {.smoothing = 0.5},
                             {.smoothing = 0.2}, {.kind = MIX_MIXUP, .lam = 0.5}};
    for (int i = 0; i < 5; i++) {
        cls_acts_set_mix(a, &mixes[i]);
        L[i] = cls_forward(&m, a, b.tok, b.lens, b.lab, B, 1, 5, NULL, NULL);
    }
    CHECK(fabs(L[0] - L0) <= 1e-12 * fabs(L0), "mixup at lam 1: loss %.15g, plain %.15g", L[0], L0);
    CHECK(fabs(L[1] - L0) <= 1e-12 * fabs(L0), "mixup at lam 0 (the partners' images and labels): loss %.15g, plain %.15g",
          L[1], L0);
    const double U = (L[2] - 0.5 * L0) / 0.5;
    CHECK(fabs(L[2] - L0) > 1e-6, "smoothing 0.5 left the loss at %.15g", L0);
    CHECK(fabs(L[3] - (0.8 * L0 + 0.2 * U)) <= 1e-12 * fabs(L0), "smoothing 0.2: loss %.15g, want %.15g", L[3],
          0.8 * L0 + 0.2 * U);
    CHECK(fabs(L[4] - L0) > 1e-6, "mixup at lam 0.5 left the loss at %.15g", L0);
    printf("soft targets: lam 1 and lam 0 give the plain loss %.6f, smoothing affine in eps\n", L0 / B);
    cls_acts_free(a);
    free_batch(&b);
    cls_free(&m);
}

// cls_mix_draw: the same (seed, step), the same draw; other steps, other draws; cutmix's boxes inside the image,
// of the size int(side sqrt(1 - lam0)) halved twice around a center (clipped), with lam = 1 - area / total; the
// switch and mixing probabilities as rates over 4000 steps (within 4 sigma); mixup alone never cuts.
static void mix_draws(void) {
    ClsHyper h = {.seed = 9, .mixup = 0.8, .cutmix = 1.0, .mix_switch = 0.5, .mix_prob = 1, .smoothing = 0.1};
    const int H = 12, W = 20, n = 4000;
    int cuts = 0, mixed = 0, badbox = 0, badlam = 0, same = 0;
    double prev = -1;
    for (int step = 1; step <= n; step++) {
        const ClsMix a = cls_mix_draw(&h, H, W, step), b = cls_mix_draw(&h, H, W, step);
        CHECK(a.kind == b.kind && a.lam == b.lam && a.y0 == b.y0 && a.y1 == b.y1 && a.x0 == b.x0 && a.x1 == b.x1,
              "step %d: two draws differ", step);
        CHECK(a.smoothing == 0.1, "step %d: smoothing %g", step, a.smoothing);
        mixed += a.kind != MIX_NONE;
        // mixup's lam is continuous (cutmix's corrected one takes few values)
        if (a.kind == MIX_MIXUP) { same += a.lam == prev; prev = a.lam; }
        if (a.kind != MIX_CUTMIX) { badlam += !(a.lam >= 0 && a.lam <= 1); continue; }
        cuts++;
        badbox += !(0 <= a.y0 && a.y0 <= a.y1 && a.y1 <= H && 0 <= a.x0 && a.x0 <= a.x1 && a.x1 <= W);
        badlam += fabs(a.lam - (1 - (double)(a.y1 - a.y0) * (a.x1 - a.x0) / (H * W))) > 1e-15;
        // unclipped sides are even (2 x the half cut), and a side clipped at a border ends there
        badbox += ((a.y1 - a.y0) % 2 && a.y0 != 0 && a.y1 != H) || ((a.x1 - a.x0) % 2 && a.x0 != 0 && a.x1 != W);
    }
    CHECK(mixed == n, "mix-prob 1: %d of %d batches mixed", mixed, n);
    CHECK(!badbox && !badlam, "cutmix: %d boxes out of the image or odd, %d lams not 1 - area / total", badbox, badlam);
    CHECK(same == 0, "%d mixup steps drew the lam of the mixup before", same);
    CHECK(fabs(cuts - 0.5 * n) < 4 * sqrt(0.25 * n), "switch 0.5: %d of %d batches cut", cuts, n);
    h.seed = 10;
    const ClsMix o = cls_mix_draw(&h, H, W, 1);
    h.seed = 9;
    CHECK(o.lam != cls_mix_draw(&h, H, W, 1).lam, "seeds 9 and 10 drew the same lam at step 1");
    h.mix_prob = 0.3;
    mixed = 0;
    for (int step = 1; step <= n; step++) mixed += cls_mix_draw(&h, H, W, step).kind != MIX_NONE;
    CHECK(fabs(mixed - 0.3 * n) < 4 * sqrt(0.21 * n), "mix-prob 0.3: %d of %d batches mixed", mixed, n);
    h.mix_prob = 1; h.cutmix = 0;
    cuts = 0;
    for (int step = 1; step <= n; step++) cuts += cls_mix_draw(&h, H, W, step).kind != MIX_MIXUP;
    CHECK(cuts == 0, "mixup alone: %d batches not mixup", cuts);
    h.mixup = 0;
    CHECK(cls_mix_draw(&h, H, W, 3).kind == MIX_NONE && cls_mix_draw(&h, H, W, 3).lam == 1, "both off: a batch mixed");
    printf("mixing draws: deterministic per (seed, step), boxes and lam consistent, switch and mixing rates\n");
}

// The per-epoch schedule at its turning points (5 steps an epoch, warmup 2 epochs, cosine over 10), and the
// per-step one as it was.
static void schedules(void) {
    ClsHyper h = {.lr = 1e-3, .min_lr = 1e-5, .warmup = 10, .sched_steps = 50, .lr_per_epoch = 1, .warmup_lr = 1e-6};
    const int64_t steps[] = {1, 5, 6, 10, 11, 16, 46, 50, 51, 90};
    for (int i = 0; i < 10; i++) {
        const double e = (double)((steps[i] - 1) / 5);
        const double want = e < 2 ? 1e-6 + e * (1e-3 - 1e-6) / 2 : e >= 10 ? 1e-5 : 1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + cos(M_PI * e / 10));
        const double got = cls_lr_at(&h, steps[i], 5);
        CHECK(fabs(got - want) <= 1e-15, "per epoch, step %lld: lr %.17g, want %.17g", (long long)steps[i], got, want);
    }
    CHECK(cls_lr_at(&h, 1, 5) == 1e-6 && cls_lr_at(&h, 5, 5) == 1e-6, "the first epoch is not at the warmup lr");
    h.lr_per_epoch = 0;
    CHECK(fabs(cls_lr_at(&h, 3, 5) - 3e-4) <= 1e-18, "per step, step 3 of warmup 10: %.17g", cls_lr_at(&h, 3, 5));
    const double c30 = 1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + cos(M_PI * 20.0 / 40.0));
    CHECK(fabs(cls_lr_at(&h, 30, 5) - c30) <= 1e-15, "per step, step 30: %.17g, want %.17g", cls_lr_at(&h, 30, 5), c30);
    printf("schedules: per epoch at its turning points, per step unchanged\n");
}


// The two initial schemes. normal: matrices and the embedding N(0, 0.02), biases 0. torch (PyTorch's
// defaults): the embedding N(0, 1); each linear layer's weight and bias uniform within 1/sqrt(fan_in), where
// fan_in is the weight's column count; norms, lower bounds and BatchNorm's statistics as in normal. Checks
// the bounds, the spread (a uniform's std is bound / sqrt(3)) on the larger tensors, and that the same seed
// gives the same values.
static void init_schemes(void) {
    ClsConfig c = {.V = 300, .D = 64, .L = 2, .K = 4, .I = 128, .classes = 10, .ndoc = 1, .norm = NORM_BATCH,
                   .pos = POS_SINUSOIDAL, .lower_bound = 1, .eps = 1e-5};
    for (int pair = 0; pair < 2; pair++) {
        c.ndoc = pair ? 2 : 1;
        c.classes = pair ? 2 : 10;
        ClsConfig cc = c;
        if (cls_config_finish(&cc)) { printf("bad config\n"); exit(1); }
        ClsModel mt, mn, again;
        cls_alloc(&mt, &cc); cls_alloc(&mn, &cc); cls_alloc(&again, &cc);
        cls_init(&mt, 7, CLS_INIT_TORCH); cls_init(&mn, 7, CLS_INIT_NORMAL); cls_init(&again, 7, CLS_INIT_TORCH);
        CHECK(!memcmp(mt.params, again.params, (size_t)mt.lay.n * sizeof(real)), "torch init: the same seed gave other values");
        static const int lin[][2] = {{C_HEAD, C_HEAD_B}, {C_PAIR1, C_PAIR1_B}, {C_PAIR2, C_PAIR2_B}, {C_WQFI, -1},
                                     {C_WO, -1}, {C_W12, C_B12}, {C_W3, C_B3}};
        for (size_t j = 0; j < sizeof lin / sizeof lin[0]; j++) {
            int64_t r, fan_in;
            cls_param_shape(&cc, lin[j][0], &r, &fan_in);
            if (!r) continue;
            const double bound = 1 / sqrt((double)fan_in);
            for (int b = 0; b < 2 && lin[j][b] >= 0; b++) {
                const int p = lin[j][b];
                int64_t pr, pk;
                cls_param_shape(&cc, p, &pr, &pk);
                for (int l = 0; l < (p < C_FIRST_LAYER ? 1 : cc.L); l++) {
                    const real *t = CW(&mt, p, l), *u = CW(&mn, p, l);
                    double ss = 0, un = 0;
                    int out = 0;
                    for (int64_t i = 0; i < pr * pk; i++) {
                        out += fabs(t[i]) > bound;
                        ss += (double)t[i] * t[i];
                        un += (double)u[i] * u[i];
                    }
                    const double sd = sqrt(ss / (double)(pr * pk)), want = bound / sqrt(3.0);
                    CHECK(!out, "torch init: %d values of %s[%d] beyond 1/sqrt(%lld)", out, CPARAMS[p].name, l, (long long)fan_in);
                    if (pr * pk >= 500)
                        CHECK(fabs(sd - want) < 0.1 * want, "torch init: %s[%d] has std %.4g, want %.4g", CPARAMS[p].name, l, sd, want);
                    else
                        CHECK(sd > 0.3 * want, "torch init: %s[%d] has std %.4g, want about %.4g", CPARAMS[p].name, l, sd, want);
                    if (b == 1) CHECK(un == 0, "normal init: the bias %s[%d] is not zero", CPARAMS[p].name, l);
                    else CHECK(fabs(sqrt(un / (double)(pr * pk)) - 0.02) < (pr * pk >= 500 ? 0.002 : 0.01),
                               "normal init: %s[%d] has std %.4g, want 0.02", CPARAMS[p].name, l, sqrt(un / (double)(pr * pk)));
                }
            }
        }
        int64_t r, k;
        cls_param_shape(&cc, C_EMB, &r, &k);
        double se = 0;
        for (int64_t i = 0; i < r * k; i++) se += (double)CW(&mt, C_EMB, 0)[i] * CW(&mt, C_EMB, 0)[i];
        CHECK(fabs(sqrt(se / (double)(r * k)) - 1) < 0.05, "torch init: the embedding has std %.4g, want 1", sqrt(se / (double)(r * k)));
        // everything that is not a linear layer or the embedding starts as in the normal scheme
        static const int same[] = {C_LB, C_FNORM, C_FNORM_B, C_NORM1, C_NORM1_B, C_GNORM, C_NORM2, C_NORM2_B};
        for (size_t j = 0; j < sizeof same / sizeof same[0]; j++) {
            const int p = same[j];
            cls_param_shape(&cc, p, &r, &k);
            for (int l = 0; l < (p < C_FIRST_LAYER ? 1 : cc.L); l++)
                CHECK(!memcmp(CW(&mt, p, l), CW(&mn, p, l), (size_t)(r * k) * sizeof(real)), "torch init changed %s[%d]",
                      CPARAMS[p].name, l);
        }
        cls_free(&mt); cls_free(&mn); cls_free(&again);
    }
}

int main(void) {
    omp_set_num_threads(1);   // thousands of tiny forwards
    ClsConfig listops = {.V = 13, .D = 8, .L = 2, .K = 4, .I = 8, .classes = 5, .ndoc = 1, .norm = NORM_BATCH,
                         .pos = POS_SINUSOIDAL, .lower_bound = 1, .dropout = 0, .eps = 1e-5};
    init_schemes();
    fd_cls(listops, 3, 7, 1, "BatchNorm, positions, lower bounds, T 7");
    ClsConfig text = listops;
    text.norm = NORM_LAYER; text.pos = POS_NONE; text.dropout = 0.25; text.input_dropout = 0.25; text.K = 2;
    fd_cls(text, 3, 6, 2, "LayerNorm, no positions, dropout 0.25, K 2");
    ClsConfig indrop = listops;   // the input's dropout alone, and the two at different rates
    indrop.input_dropout = 0.3;
    fd_cls(indrop, 3, 7, 13, "input dropout 0.3 alone, positions");
    indrop.dropout = 0.15; indrop.input_dropout = 0.4;
    fd_cls(indrop, 3, 7, 14, "dropout 0.15, input dropout 0.4");
    ClsConfig rms = listops;
    rms.norm = NORM_RMS; rms.lower_bound = 0; rms.L = 1; rms.I = 16;
    fd_cls(rms, 2, 5, 3, "RMSNorm, no lower bounds, one layer, GLU 2D");
    ClsConfig pair = listops;
    pair.ndoc = 2; pair.classes = 2; pair.dropout = 0.1; pair.input_dropout = 0.1;
    fd_cls(pair, 3, 6, 4, "document pairs, BatchNorm, dropout 0.1");
    pair.norm = NORM_LAYER; pair.L = 3;
    fd_cls(pair, 2, 5, 5, "document pairs, LayerNorm, three layers");
    g_hgru_chunk = 64;      // the chunked token mixer both ways, across a chunk boundary
    fd_cls(listops, 2, 70, 6, "BatchNorm, chunked mixer, T 70 (two chunks)");
    g_hgru_chunk = 0;
    fd_cls(listops, 2, 70, 6, "BatchNorm, plain mixer, T 70");
    // --pad-group: groups of 2 of a batch of 5 ({0, 1}, {2, 3}, {4}), each padded to its longest document
    {
        ClsConfig pg = listops;
        pg.pad_group = 2;
        fd_cls(pg, 5, 9, 50, "padding groups of 2, BatchNorm, T 9");
        pg.dropout = 0.2; pg.input_dropout = 0.1;
        fd_cls(pg, 5, 9, 51, "padding groups of 2, dropout 0.2, input dropout 0.1");
        g_hgru_chunk = 64;
        fd_cls(pg, 5, 70, 52, "padding groups of 2, chunked mixer, T 70");
        g_hgru_chunk = 0;
        ClsConfig pgp = pair;
        pgp.pad_group = 2;
        fd_cls(pgp, 5, 8, 53, "padding groups of 2, document pairs");
        ClsConfig pgh = listops;
        pgh.mixer = MIXER_HGRN1; pgh.K = 1; pgh.pad_group = 2;
        fd_cls(pgh, 5, 9, 54, "padding groups of 2, HGRN1");
        ClsConfig pgl = listops;
        pgl.layer = LAYER_LRA; pgl.pad_group = 3;
        fd_cls(pgl, 5, 9, 55, "padding groups of 3, LRA layer");
        pad_group_same(listops, "BatchNorm");
        pad_group_same(text, "LayerNorm");
        pad_group_same(pair, "document pairs");
        pad_group_same(pgh, "HGRN1");
        pad_group_same(pgl, "LRA layer");
        g_hgru_chunk = 4;
        pad_group_same(listops, "BatchNorm, chunked mixer (chunks of 4)");
        g_hgru_chunk = 0;
        ClsConfig pgbad = listops;
        pgbad.pad_group = 2; pgbad.input = INPUT_PIXELS; pgbad.channels = 1; pgbad.pix_std[0] = 1; pgbad.V = 256;
        pgbad.scan = SCAN_2D; pgbad.grid_h = 2; pgbad.grid_w = 3;
        CHECK(cls_config_finish(&pgbad) != NULL, "padding groups with 2-D scans were accepted");
        pgbad.scan = SCAN_1D;
        CHECK(cls_config_finish(&pgbad) == NULL, "padding groups with 1-D scans over pixels were refused");
        pgbad.pad_group = -1;
        CHECK(cls_config_finish(&pgbad) != NULL, "a padding group of -1 was accepted");
    }
    // pixels, 1-D and 2-D
    ClsConfig img = listops;
    img.input = INPUT_PIXELS; img.channels = 3; img.V = 256;
    img.pix_mean[0] = 0.49; img.pix_mean[1] = 0.48; img.pix_mean[2] = 0.45;
    img.pix_std[0] = 0.25; img.pix_std[1] = 0.24; img.pix_std[2] = 0.26;
    fd_cls(img, 3, 7, 8, "RGB pixels, 1-D scans, BatchNorm");
    img.scan = SCAN_2D; img.grid_h = 3; img.grid_w = 4;
    fd_cls(img, 3, 12, 9, "RGB pixels, 2-D scans over 3 x 4, BatchNorm");
    ClsConfig gray = img;
    gray.channels = 1; gray.pix_mean[0] = 0.5; gray.pix_std[0] = 0.5; gray.norm = NORM_LAYER; gray.pos = POS_NONE;
    gray.grid_h = 7; gray.grid_w = 9;
    fd_cls(gray, 2, 63, 10, "gray pixels, 2-D scans over 7 x 9, LayerNorm");
    gray.grid_h = 1; gray.grid_w = 1;
    fd_cls(gray, 3, 1, 11, "gray pixels, 2-D scans over 1 x 1");
    ClsConfig tok2 = listops;
    tok2.scan = SCAN_2D; tok2.grid_h = 2; tok2.grid_w = 70;
    g_hgru_chunk = 64;      // rows of 70 cross a chunk boundary
    fd_cls(tok2, 2, 140, 12, "token ids, 2-D scans over 2 x 70, chunked mixer");
    g_hgru_chunk = 0;
    scans_2d_explicit(2, 1, 1, 2, 4, 4, 0);
    scans_2d_explicit(2, 7, 9, 2, 4, 4, 0);
    scans_2d_explicit(1, 5, 3, 3, 5, 5, 0);
    scans_2d_explicit(2, 7, 9, 2, 4, 4, 1);
    scans_2d_explicit(2, 7, 9, 2, 4, 4, 2);
    g_hgru_chunk = 4;       // the chunked form too, with chunks shorter than the rows and columns
    scans_2d_explicit(1, 9, 11, 2, 3, 3, 0);
    scans_2d_explicit(1, 9, 11, 2, 3, 3, 2);
    g_hgru_chunk = 0;
    // the series form (Path-X): the mixer along rows, then with the same weights along columns
    ClsConfig ser = gray;
    ser.scan = SCAN_SERIES; ser.grid_h = 4; ser.grid_w = 5; ser.norm = NORM_BATCH; ser.pos = POS_SINUSOIDAL;
    fd_cls(ser, 3, 20, 13, "gray pixels, series scans over 4 x 5, BatchNorm");
    ser.grid_h = 1; ser.grid_w = 1; ser.dropout = 0.2; ser.input_dropout = 0.2;
    fd_cls(ser, 3, 1, 14, "gray pixels, series scans over 1 x 1, dropout 0.2");
    ser.grid_h = 3; ser.grid_w = 7; ser.channels = 3; ser.L = 3; ser.dropout = 0;
    fd_cls(ser, 2, 21, 15, "RGB pixels, series scans over 3 x 7, three layers");
    // patches: p x p x channels values per position through C_PIX, 1-D over the patches' raster order or 2-D
    // over the patch grid
    ClsConfig pat = img;
    pat.patch = 2; pat.grid_h = 4; pat.grid_w = 6; pat.scan = SCAN_1D;
    fd_cls(pat, 3, 6, 16, "RGB 4 x 6 in 2 x 2 patches, 1-D scans, BatchNorm");
    pat.scan = SCAN_2D;
    fd_cls(pat, 3, 6, 17, "RGB 4 x 6 in 2 x 2 patches, 2-D scans over 2 x 3");
    ClsConfig gpat = gray;
    gpat.patch = 3; gpat.grid_h = 6; gpat.grid_w = 6; gpat.scan = SCAN_1D; gpat.dropout = 0.1; gpat.input_dropout = 0.1;
    fd_cls(gpat, 3, 4, 18, "gray 6 x 6 in 3 x 3 patches, 1-D scans, dropout 0.1");
    gpat.scan = SCAN_2D; gpat.dropout = 0; gpat.norm = NORM_RMS;
    fd_cls(gpat, 2, 4, 19, "gray 6 x 6 in 3 x 3 patches, 2-D scans, RMSNorm");
    gpat.channels = 3; gpat.pix_mean[1] = 0.4; gpat.pix_std[1] = 0.3; gpat.pix_mean[2] = 0.6; gpat.pix_std[2] = 0.2;
    gpat.scan = SCAN_SERIES; gpat.norm = NORM_BATCH;
    fd_cls(gpat, 2, 4, 20, "RGB 6 x 6 in 3 x 3 patches, series scans");
    // the ImageNet models' final norm: an RMSNorm without weight, after LayerNorm (or BatchNorm) blocks
    ClsConfig inet = pat;
    inet.norm = NORM_LAYER; inet.pos = POS_NONE; inet.scan = SCAN_1D; inet.fnorm_plain = 1;
    inet.pix_mean[0] = 0.485; inet.pix_mean[1] = 0.456; inet.pix_mean[2] = 0.406;
    inet.pix_std[0] = 0.229; inet.pix_std[1] = 0.224; inet.pix_std[2] = 0.225;
    fd_cls(inet, 3, 6, 21, "RGB 4 x 6 in 2 x 2 patches, LayerNorm, a plain final RMSNorm");
    inet.norm = NORM_BATCH; inet.L = 1;
    fd_cls(inet, 3, 6, 22, "RGB patches, BatchNorm, a plain final RMSNorm");
    top_k(inet);
    // HGRN1's mixer (--arch hgrn1): the element-wise recurrence both ways and the gated output norm, K = 1
    ClsConfig h1 = listops;
    h1.mixer = MIXER_HGRN1; h1.K = 1;
    fd_cls(h1, 3, 7, 30, "HGRN1, BatchNorm, positions, lower bounds, T 7");
    fd_cls(h1, 2, 70, 31, "HGRN1, BatchNorm, T 70");
    ClsConfig h1t = text;
    h1t.mixer = MIXER_HGRN1; h1t.K = 1;
    fd_cls(h1t, 3, 6, 32, "HGRN1, LayerNorm, dropout 0.25");
    ClsConfig h1p = pair;
    h1p.mixer = MIXER_HGRN1; h1p.K = 1;
    fd_cls(h1p, 2, 5, 33, "HGRN1, document pairs, three layers");
    ClsConfig h1g = gray;
    h1g.mixer = MIXER_HGRN1; h1g.K = 1; h1g.grid_h = 7; h1g.grid_w = 9;
    fd_cls(h1g, 2, 63, 34, "HGRN1, gray pixels, 2-D scans over 7 x 9");
    ClsConfig h1s = ser;
    h1s.mixer = MIXER_HGRN1; h1s.K = 1;
    fd_cls(h1s, 2, 21, 35, "HGRN1, RGB pixels, series scans over 3 x 7, three layers");
    scans_2d_explicit_of(MIXER_HGRN1, LAYER_FLA, 2, 7, 9, 8, 1, 1, 0);
    scans_2d_explicit_of(MIXER_HGRN1, LAYER_FLA, 2, 7, 9, 8, 1, 1, 1);
    scans_2d_explicit_of(MIXER_HGRN1, LAYER_FLA, 2, 7, 9, 8, 1, 1, 2);
    scans_2d_explicit_of(MIXER_HGRN1, LAYER_FLA, 1, 1, 1, 3, 1, 1, 0);
    ClsConfig h1bad = h1;
    h1bad.K = 2;
    CHECK(cls_config_finish(&h1bad) != NULL, "HGRN1 with expand ratio 2 was accepted");
    h1bad.K = 1; h1bad.layer = LAYER_LRA;
    CHECK(cls_config_finish(&h1bad) != NULL, "HGRN1 with the LRA layer was accepted");
    // HGRN2's LRA layer (--mixer-layer lra): sigmoid q, silu v, unscaled readout, LayerNorm, biased projections
    ClsConfig lr = listops;
    lr.layer = LAYER_LRA;
    fd_cls(lr, 3, 7, 40, "LRA layer, BatchNorm, positions, lower bounds, T 7");
    g_hgru_chunk = 64;
    fd_cls(lr, 2, 70, 41, "LRA layer, chunked mixer, T 70");
    g_hgru_chunk = 0;
    ClsConfig lrt = text;
    lrt.layer = LAYER_LRA;
    fd_cls(lrt, 3, 6, 42, "LRA layer, LayerNorm, dropout 0.25, K 2");
    ClsConfig lrp = pair;
    lrp.layer = LAYER_LRA;
    fd_cls(lrp, 2, 5, 43, "LRA layer, document pairs, three layers");
    ClsConfig lrg = gray;
    lrg.layer = LAYER_LRA; lrg.grid_h = 7; lrg.grid_w = 9;
    fd_cls(lrg, 2, 63, 44, "LRA layer, gray pixels, 2-D scans over 7 x 9");
    ClsConfig lrs = ser;
    lrs.layer = LAYER_LRA;
    fd_cls(lrs, 2, 21, 45, "LRA layer, RGB pixels, series scans over 3 x 7");
    for (int lines = 0; lines < 3; lines++) scans_2d_explicit_of(MIXER_CAUSAL, LAYER_LRA, 2, 7, 9, 2, 4, 4, lines);
    // the LRA layer with --scan-dtype bf16: its ops without the roundings are the fp32 layer's function, so finite
    // differences check their wiring (every column of dqfi, the lower bounds); with them the loss moves by about
    // bf16's rounding and no more; the configurations it refuses
    {
        ClsConfig l16 = lr;
        l16.scan_dtype = SCAN_BF16;
        g_lra16_rnd = 0;
        fd_cls(l16, 3, 7, 46, "LRA layer, bf16 scans (their roundings off), T 7");
        l16.pad_group = 2;
        fd_cls(l16, 5, 9, 56, "LRA layer, bf16 scans (roundings off), padding groups");
        g_lra16_rnd = 1;
        pad_group_same(l16, "LRA layer, bf16 scans");
        g_lra16_rnd = 0;
        l16.pad_group = 0;
        ClsConfig l16p = lrp;
        l16p.scan_dtype = SCAN_BF16;
        fd_cls(l16p, 2, 5, 47, "LRA layer, bf16 scans (their roundings off), pairs");
        double loss[3];
        for (int i = 0; i < 3; i++) {
            ClsConfig c = i == 0 ? lr : l16;
            g_lra16_rnd = i == 2;
            cls_config_finish(&c);
            ClsModel m;
            cls_alloc(&m, &c);
            cls_init(&m, 48, CLS_INIT_NORMAL);
            uint64_t s = 49;
            Batch b = make_batch(&c, 3, 40, &s);
            ClsActs *a = cls_acts_alloc(&c, 3, 40, 0);
            loss[i] = cls_forward(&m, a, b.tok, b.lens, b.lab, 3, 0, 0, NULL, NULL);
            cls_acts_free(a);
            free_batch(&b);
            cls_free(&m);
        }
        CHECK(fabs(loss[1] - loss[0]) <= 1e-12 * fabs(loss[0]), "bf16 scans without roundings: loss %.15g, the fp32 "
              "layer's %.15g", loss[1], loss[0]);
        const double moved = fabs(loss[2] - loss[0]) / fabs(loss[0]);
        CHECK(moved > 1e-7 && moved < 3e-2, "bf16 scans move the loss by %.3g relative (expected a rounding's worth)",
              moved);
        printf("bf16 scans: loss %.6f against the fp32 layer's %.6f\n", loss[2], loss[0]);
        ClsConfig bad = listops;
        bad.scan_dtype = SCAN_BF16;
        const char *why = cls_config_finish(&bad);
        CHECK(why && strstr(why, "it needs --mixer-layer lra"), "bf16 scans with the fla layer: %s", why);
        bad = lrg;
        bad.scan_dtype = SCAN_BF16;
        why = cls_config_finish(&bad);
        CHECK(why && strstr(why, "1-D"), "bf16 scans with 2-D scans: %s", why);
        bad = l16;
        bad.K = 3; bad.D = 12; bad.I = 12;
        why = cls_config_finish(&bad);
        CHECK(why && strstr(why, "divides 32"), "bf16 scans with K 3: %s", why);
        bad = l16;
        bad.scan_dtype = 2;
        why = cls_config_finish(&bad);
        CHECK(why && strstr(why, "--scan-dtype must be"), "scan dtype 2: %s", why);
        g_lra16_rnd = 1;
    }
    patch_layout(4, 6, 2, 1);
    patch_layout(4, 6, 2, 3);
    patch_layout(6, 6, 3, 1);
    patch_layout(6, 9, 3, 3);
    patch_layout(28, 28, 4, 1);
    {
        ClsConfig no = pat;
        no.grid_w = 5;
        CHECK(cls_config_finish(&no) != NULL, "a patch of 2 accepted for images 5 wide");
        no = listops;
        no.patch = 2;
        CHECK(cls_config_finish(&no) != NULL, "patches accepted for token ids");
    }
    gray.grid_h = 3; gray.grid_w = 3;
    eval_is_per_example(gray, "gray pixels, 2-D scans");
    ClsConfig epat = img;
    epat.patch = 3; epat.grid_h = 3; epat.grid_w = 27; epat.scan = SCAN_1D;     // 9 positions: eval_is_per_example's T
    eval_is_per_example(epat, "RGB 3 x 27 in 3 x 3 patches, 1-D scans");
    augmentation();
    // mixup, cutmix and label smoothing: staging, the loss, the gradients with soft targets, the draws
    {
        ClsConfig mp = img;     // RGB 4 x 6 in 2 x 2 patches, 1-D scans over the patches
        mp.scan = SCAN_1D; mp.patch = 2; mp.grid_h = 4; mp.grid_w = 6;
        const ClsMix mixup = {.kind = MIX_MIXUP, .lam = 0.37, .smoothing = 0.1};
        const ClsMix cut = {.kind = MIX_CUTMIX, .lam = 0.75, .y0 = 1, .y1 = 3, .x0 = 2, .x1 = 5, .smoothing = 0.1};
        mix_staging(mp, &mixup, "mixup 0.37, RGB 4 x 6 in 2 x 2 patches");
        mix_staging(mp, &cut, "cutmix [1,3) x [2,5), RGB 4 x 6 in 2 x 2 patches");
        ClsConfig m2 = img;     // RGB pixels, 2-D scans over 3 x 4
        m2.scan = SCAN_2D; m2.grid_h = 3; m2.grid_w = 4; m2.patch = 0;
        mix_staging(m2, &mixup, "mixup 0.37, RGB pixels, 2-D scans over 3 x 4");
        const ClsMix cut2 = {.kind = MIX_CUTMIX, .lam = 0.5, .y0 = 0, .y1 = 2, .x0 = 1, .x1 = 4};
        mix_staging(m2, &cut2, "cutmix [0,2) x [1,4), RGB pixels, 2-D scans");
        ClsConfig g3 = gray;    // gray 6 x 6 in 3 x 3 patches, 2-D scans over the 2 x 2 patch grid
        g3.scan = SCAN_2D; g3.patch = 3; g3.grid_h = 6; g3.grid_w = 6;
        const ClsMix cut3 = {.kind = MIX_CUTMIX, .lam = 1 - 6.0 / 36, .y0 = 2, .y1 = 4, .x0 = 3, .x1 = 6};
        mix_staging(g3, &cut3, "cutmix [2,4) x [3,6), gray 6 x 6 in 3 x 3 patches");
        // a box as the run draws it
        ClsHyper h = {.seed = 4, .mixup = 0, .cutmix = 1, .mix_switch = 0.5, .mix_prob = 1};
        ClsMix drawn = {0};
        for (int step = 1; step <= 100 && !(drawn.y1 - drawn.y0 > 0 && drawn.x1 - drawn.x0 > 0 && drawn.lam > 0.3); step++)
            drawn = cls_mix_draw(&h, mp.grid_h, mp.grid_w, step);
        CHECK(drawn.kind == MIX_CUTMIX && drawn.y1 > drawn.y0, "no cutmix box drawn in 100 steps");
        mix_staging(mp, &drawn, "a drawn cutmix box, RGB 4 x 6 in 2 x 2 patches");
        soft_loss_value(mp);
        // gradients with soft targets
        fd_mix = &mixup;
        fd_cls(mp, 3, 6, 23, "mixup 0.37 + smoothing 0.1, RGB patches, BatchNorm");
        fd_mix = &cut2;
        fd_cls(m2, 4, 12, 24, "cutmix, RGB pixels, 2-D scans, BatchNorm");
        const ClsMix smooth = {.smoothing = 0.2};
        fd_mix = &smooth;
        fd_cls(listops, 3, 7, 25, "label smoothing 0.2, token ids, BatchNorm");
        fd_mix = NULL;
        mix_draws();
        schedules();
    }
    eval_is_per_example(listops, "BatchNorm");
    eval_is_per_example(text, "LayerNorm with dropout");
    eval_is_per_example(pair, "document pairs");
    return check_summary("test_cls");
}
