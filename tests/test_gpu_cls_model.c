// test_gpu_cls_model.c: the whole sequence classifier (cls.c) on the GPU against the CPU, run by `make test-gpu`.
//  1. one training step from the same initialisation on the same batch: the loss, the number right, every
//     gradient tensor and BatchNorm's running statistics, at T 1, 63, 64, 65 and 4096, both heads, all norms,
//     pixels and patches of pixels
//     (and with padding groups, --pad-group)
//  2. an evaluation forward (running statistics): the loss and the predictions
//  3. 100 training steps on both from the same start: the loss curves agree within the GPU's rounding
// With --bench it times instead the token mixer's scans at the LRA presets' shapes (fp32 state, as trained):
// the bidirectional 1-D scans against two causal passes, the 2-D four scans against four causal passes over
// the same positions (as raster-order sequences, and as the rows alone, where no column is gathered); and for
// the 2-D presets the column pass alone both ways, through the ops: read in place (cuda_hgru_cols_fwd/bwd) against
// gathered into column-major order, scanned and scattered back (the path the model takes for other head shapes,
// or built with HGRU_COLS_DIRECT, cuda/mixer.cuh, at 0): the evidence on which it is on.
// Tolerances as the language model's (test_gpu_model.c): fp32 runs exact GEMMs and the plain recurrence, so
// losses agree to 1e-5 and gradients to 1e-4 relative (float32 sums in other orders); bf16 rounds each product's
// inputs to 8 bits, and a gradient passes several bf16 products per layer: 3e-2, or BF16_SITES times what
// rounding the operands as the GPU does moves that gradient on the CPU where that is more (bf16_emul.h).
#include <math.h>
#include <omp.h>

#include "../cls.h"
#include "../model.h"
#include "check.h"
#include "bf16_emul.h"

// ||got - ref|| / max(||ref||, floor)
static double rel_floor(const real *ref, const real *got, int64_t n, double floor) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) { double d = (double)got[i] - ref[i]; num += d * d; den += (double)ref[i] * ref[i]; }
    den = sqrt(den);
    return sqrt(num) / (den > floor ? den : floor > 0 ? floor : 1e-300);
}
static double rel(const real *ref, const real *got, int64_t n) { return rel_floor(ref, got, n, 0); }

typedef struct { ClsModel m; ClsActs *a, *e; } Side;

static void side_init(Side *s, const ClsConfig *c, int gpu, int B, int T) {
    g_gpu = gpu;
    cls_alloc(&s->m, c);
    cls_init(&s->m, 11, CLS_INIT_NORMAL);
    uint64_t r = 17;        // norms and biases away from their initial values
    for (int p = 0; p < NCPARAM; p++) {
        int64_t rows, cols;
        cls_param_shape(c, p, &rows, &cols);
        for (int l = 0; l < (p < C_FIRST_LAYER ? 1 : c->L); l++) {
            real *t = CW(&s->m, p, l);
            for (int64_t i = 0; i < rows * cols; i++)
                t[i] = CPARAMS[p].init == INIT_NORMAL ? t[i] * 5 : t[i] + (real)(0.3 * rng_normal(&r));
        }
    }
    cls_to_device(&s->m);
    cls_alloc_training(&s->m);
    s->a = cls_acts_alloc(c, B, T, 1);
    s->e = cls_acts_alloc(c, B, T, 0);
    g_gpu = 0;
}
static void side_free(Side *s, int gpu) {
    g_gpu = gpu;
    cls_acts_free(s->a);
    cls_acts_free(s->e);
    cls_free(&s->m);
    g_gpu = 0;
}

typedef struct { int32_t *tok, *lens, *lab; } Batch;
static Batch batch(const ClsConfig *c, int B, int T, uint64_t r) {
    const int pix = c->input == INPUT_PIXELS, CH = cls_pos_values(c);
    Batch b = {xmalloc((size_t)B * c->ndoc * T * CH * 4), xmalloc((size_t)B * c->ndoc * 4), xmalloc((size_t)B * 4)};
    for (int i = 0; i < B * c->ndoc; i++) {
        const int len = i % 3 == 0 || c->scan != SCAN_1D || c->patch > 1 ? T : 1 + (int)(splitmix64(&r) % (uint64_t)T);
        b.lens[i] = len * CH;
        for (int t = 0; t < T * CH; t++)
            b.tok[(int64_t)i * T * CH + t] = t >= len * CH ? 0 : (int32_t)(splitmix64(&r) % (uint64_t)(pix ? 256 : c->V));
    }
    for (int i = 0; i < B; i++) b.lab[i] = (int32_t)(splitmix64(&r) % (uint64_t)(c->ndoc == 2 ? 2 : c->classes));
    return b;
}
static void batch_free(Batch *b) { free(b->tok); free(b->lens); free(b->lab); }

static double step(Side *s, int gpu, const Batch *b, int B, int64_t *right, double lr, int64_t t) {
    g_gpu = gpu;
    OP(zero, s->m.grads, s->m.lay.n);
    double loss = cls_forward(&s->m, s->a, b->tok, b->lens, b->lab, B, 1, 7 + (uint64_t)t, right, NULL) / B;
    cls_backward(&s->m, s->a, 1.0 / B);
    if (lr > 0) {
        double gn = cls_grad_norm(&s->m);
        cls_adamw(&s->m, lr, 0.9, 0.999, 1e-8, 0, gn > 1 ? 1 / gn : 1, t);
    }
    g_gpu = 0;
    return loss;
}

static real *host_copy(const real *p, int64_t n, int gpu) {
    real *h = xmalloc((size_t)n * sizeof(real));
    if (gpu) cuda_to_host(h, p, (size_t)n * sizeof(real));
    else memcpy(h, p, (size_t)n * sizeof(real));
    return h;
}

static void one_step(const char *what, ClsConfig c, int B, int T, int mode, double tol_loss, double tol_grad) {
    cls_config_finish(&c);
    cuda_set_gemm_precision(mode);
    Side cpu, gpu;
    side_init(&cpu, &c, 0, B, T);
    side_init(&gpu, &c, 1, B, T);
    Batch b = batch(&c, B, T, 5 + (uint64_t)T);
    int64_t rc, rg;
    double lc = step(&cpu, 0, &b, B, &rc, 0, 1), lg = step(&gpu, 1, &b, B, &rg, 0, 1);
    CHECK(fabs(lc - lg) <= tol_loss * fabs(lc), "%s: loss cpu %.8g gpu %.8g", what, lc, lg);
    real *g = host_copy(gpu.m.grads, gpu.m.lay.n, 1);
    // tf32, bf16: the same CPU step with the operands rounded as the GPU rounds them (ge), for each tensor's
    // sensitivity to that rounding; the running statistics it moves are put back
    real *ge = NULL;
    const int64_t ns = cls_nstats(&c);
    if (mode != 0) {
        real *gx = host_copy(cpu.m.grads, cpu.m.lay.n, 0), *sx = ns ? host_copy(cpu.m.stats, ns, 0) : NULL;
        int64_t r;
        g_emul = mode;
        step(&cpu, 0, &b, B, &r, 0, 1);
        g_emul = 0;
        ge = host_copy(cpu.m.grads, cpu.m.lay.n, 0);
        memcpy(cpu.m.grads, gx, (size_t)cpu.m.lay.n * sizeof(real));
        if (ns) memcpy(cpu.m.stats, sx, (size_t)ns * sizeof(real));
        free(gx); free(sx);
    }
    // A tensor's error is measured against its own gradient, or where that is much smaller than its share of the
    // whole gradient (||g|| sqrt(n / total)), against that share: the GLU's output bias feeds only BatchNorms
    // (which remove every per-channel constant), so its exact gradient is 0 and both backends return rounding noise.
    const double gall = sqrt(op_sumsq(cpu.m.grads, cpu.m.lay.n));
    double worst = 0, worst_sens = 0;
    const char *wn = "";
    for (int p = 0; p < NCPARAM; p++) {
        int64_t rows, cols;
        cls_param_shape(&c, p, &rows, &cols);
        if (rows == 0 || cols == 0) continue;
        for (int l = 0; l < (p < C_FIRST_LAYER ? 1 : c.L); l++) {
            const int64_t off = CG(&cpu.m, p, l) - cpu.m.grads;
            const double floor = gall * sqrt((double)(rows * cols) / (double)cpu.m.lay.n);
            double e = rel_floor(cpu.m.grads + off, g + off, rows * cols, floor), tol = tol_grad;
            if (ge) {
                const double sens = rel_floor(cpu.m.grads + off, ge + off, rows * cols, floor);
                if (sens > worst_sens) worst_sens = sens;
                if (BF16_SITES * sens > tol) tol = BF16_SITES * sens;
            }
            if (e > worst) { worst = e; wn = CPARAMS[p].name; }
            CHECK(e <= tol, "%s: gradient of %s[layer %d] differs by %.3g relative (limit %.2g)", what, CPARAMS[p].name,
                  l, e, tol);
        }
    }
    double es = 0;
    if (ns) {
        real *st = host_copy(gpu.m.stats, ns, 1);
        es = rel(cpu.m.stats, st, ns);
        CHECK(es <= tol_grad, "%s: running statistics differ by %.3g relative", what, es);
        free(st);
    }
    // evaluation: running statistics, predictions
    int32_t *pc = xmalloc((size_t)B * 4), *pg = xmalloc((size_t)B * 4);
    g_gpu = 0;
    double ec = cls_forward(&cpu.m, cpu.e, b.tok, b.lens, b.lab, B, 0, 0, NULL, pc);
    g_gpu = 1;
    double eg = cls_forward(&gpu.m, gpu.e, b.tok, b.lens, b.lab, B, 0, 0, NULL, pg);
    g_gpu = 0;
    CHECK(fabs(ec - eg) <= tol_loss * fabs(ec) * 10, "%s: evaluation loss cpu %.8g gpu %.8g", what, ec, eg);
    int same = 0;
    for (int i = 0; i < B; i++) same += pc[i] == pg[i];
    CHECK(mode != 0 || same == B, "%s: %d of %d predictions agree in fp32", what, same, B);
    printf("%-52s %s: loss %.6f / %.6f, worst gradient %.2e (%s), statistics %.2e, predictions %d/%d", what,
           mode == 0 ? "fp32" : "bf16", lc, lg, worst, wn, es, same, B);
    if (ge) printf(", CPU sensitivity to rounded operands at most %.2e", worst_sens);
    printf("\n");
    free(pc); free(pg); free(g); free(ge);
    batch_free(&b);
    side_free(&cpu, 0);
    side_free(&gpu, 1);
}

// 100 steps of AdamW from the same start on the same batches: the curves stay together.
static void curves(ClsConfig c, int B, int T) {
    cls_config_finish(&c);
    cuda_set_gemm_precision(0);
    Side cpu, gpu;
    side_init(&cpu, &c, 0, B, T);
    side_init(&gpu, &c, 1, B, T);
    double worst = 0, first = 0, last_c = 0, last_g = 0;
    for (int t = 1; t <= 100; t++) {
        Batch b = batch(&c, B, T, 1000 + (uint64_t)(t % 4));   // four batches, seen 25 times each
        int64_t r;
        double lc = step(&cpu, 0, &b, B, &r, 3e-3, t), lg = step(&gpu, 1, &b, B, &r, 3e-3, t);
        if (t == 1) first = lc;
        last_c = lc; last_g = lg;
        double e = fabs(lc - lg) / fabs(lc);
        if (e > worst) worst = e;
        batch_free(&b);
    }
    CHECK(worst <= 1e-3, "training curves differ by %.3g relative", worst);
    CHECK(last_c < first * 0.8, "the CPU run did not learn its four batches: %.4f -> %.4f", first, last_c);
    printf("100 training steps (fp32): loss %.4f -> cpu %.4f / gpu %.4f, worst step difference %.2e\n", first, last_c,
           last_g, worst);
    side_free(&cpu, 0);
    side_free(&gpu, 1);
}

// ---- --bench ----

static double time_it(void (*f)(void *), void *ctx) {
    f(ctx);                                  // warm-up
    dev_sync();
    int reps = 0;
    const double t0 = now_s();
    do { f(ctx); reps++; dev_sync(); } while (now_s() - t0 < 0.25 || reps < 3);
    return (now_s() - t0) / reps * 1e3;
}

typedef struct {
    ClsModel *m; ClsActs *a; const ClsConfig *c;
    real *qfi, *o, *q, *k, *g, *dq, *dk, *dg, *dqfi, *dout;
    int S, T, nseq, len, passes;   // the causal reference: `passes` scans of nseq sequences of len
} Bench;

static void mix_fwd(void *p) { Bench *b = p; cls_mixer_scans(b->m, b->a, b->o, b->qfi, 1, b->S, 0); }
static void mix_fwdbwd(void *p) { Bench *b = p; mix_fwd(p); cls_mixer_scans_bwd(b->m, b->a, b->qfi, 1, b->S, 0); }
static void ref_fwd(void *p) {
    Bench *b = p;
    const ClsConfig *c = b->c;
    const int HK = c->H * c->K, QFI = 2 * HK + c->D;
    const int64_t N = (int64_t)b->S * b->T;
    OP(gates_fwd, b->q, b->k, b->g, b->qfi, QFI, NULL, N, HK);
    for (int i = 0; i < b->passes; i++)
        OP(hgru_fwd, b->o, NULL, b->q, b->k, b->g, b->qfi + 2 * HK, QFI, NULL, b->nseq, b->len, c->H, c->K, c->Dv,
           mixer_chunk(b->len), 0, i > 0);
}
static void ref_fwdbwd(void *p) {
    Bench *b = p;
    const ClsConfig *c = b->c;
    const int HK = c->H * c->K, QFI = 2 * HK + c->D;
    const int64_t N = (int64_t)b->S * b->T;
    ref_fwd(p);
    OP(gates_fwd, b->q, b->k, b->g, b->qfi, QFI, NULL, N, HK);
    for (int i = 0; i < b->passes; i++)
        OP(hgru_bwd, b->dq, b->dk, b->dg, b->dqfi + 2 * HK, QFI, b->dout, b->q, b->k, b->g, b->qfi + 2 * HK, QFI,
           b->nseq, b->len, c->H, c->K, c->Dv, mixer_chunk(b->len), 0, i > 0);
    OP(gates_bwd, b->dqfi, QFI, NULL, b->dq, b->dk, b->dg, b->qfi, QFI, NULL, N, HK);
}

static real *dev_randn(int64_t n, uint64_t seed, double scale) {
    real *h = xmalloc((size_t)n * sizeof(real));
    for (int64_t i = 0; i < n; i++) h[i] = (real)(scale * rng_normal(&seed));
    real *d = dev_alloc((size_t)n * sizeof(real), "bench");
    dev_upload(d, h, (size_t)n * sizeof(real));
    free(h);
    return d;
}

// The column pass of the four-scan mixer (both directions, the gates included), over S images of gh x gw.
typedef struct {
    const ClsConfig *c;
    real *qfi, *o, *q, *k, *g, *dq, *dk, *dg, *dqfi, *dout;   // raster order
    real *qfiT, *oT, *doutT, *dqfiT;                          // the gather path's column-major copies
    int32_t *perm;                                            // row n of the column-major order: raster row perm[n]
    int S;
} ColBench;

static void col_direct_fwd(void *p) {
    ColBench *b = p;
    const ClsConfig *c = b->c;
    const int HK = c->H * c->K, QFI = 2 * HK + c->D, gh = c->grid_h, gw = c->grid_w;
    const int64_t N = (int64_t)b->S * gh * gw;
    cuda_gates_fwd(b->q, b->k, b->g, b->qfi, QFI, NULL, N, HK);
    cuda_hgru_cols_fwd(b->o, b->q, b->k, b->g, b->qfi + 2 * HK, QFI, b->S, gh, gw, c->H, c->K, c->Dv, 0, 0, 0);
    cuda_hgru_cols_fwd(b->o, b->q, b->k, b->g, b->qfi + 2 * HK, QFI, b->S, gh, gw, c->H, c->K, c->Dv, 0, 1, 1);
}
static void col_direct_fwdbwd(void *p) {
    ColBench *b = p;
    const ClsConfig *c = b->c;
    const int HK = c->H * c->K, QFI = 2 * HK + c->D, gh = c->grid_h, gw = c->grid_w;
    const int64_t N = (int64_t)b->S * gh * gw;
    col_direct_fwd(p);
    cuda_gates_fwd(b->q, b->k, b->g, b->qfi, QFI, NULL, N, HK);
    cuda_hgru_cols_bwd(b->dq, b->dk, b->dg, b->dqfi + 2 * HK, QFI, b->dout, b->q, b->k, b->g, b->qfi + 2 * HK, QFI,
                       b->S, gh, gw, c->H, c->K, c->Dv, 0, 0, 0);
    cuda_hgru_cols_bwd(b->dq, b->dk, b->dg, b->dqfi + 2 * HK, QFI, b->dout, b->q, b->k, b->g, b->qfi + 2 * HK, QFI,
                       b->S, gh, gw, c->H, c->K, c->Dv, 0, 1, 1);
    cuda_gates_bwd(b->dqfi, QFI, NULL, b->dq, b->dk, b->dg, b->qfi, QFI, NULL, N, HK);
}
static void col_gather_fwd(void *p) {
    ColBench *b = p;
    const ClsConfig *c = b->c;
    const int HK = c->H * c->K, QFI = 2 * HK + c->D, gh = c->grid_h, nc = b->S * c->grid_w;
    const int64_t N = (int64_t)b->S * gh * c->grid_w;
    cuda_embed_fwd(b->qfiT, b->perm, b->qfi, N, QFI);
    cuda_gates_fwd(b->q, b->k, b->g, b->qfiT, QFI, NULL, N, HK);
    cuda_hgru_fwd(b->oT, NULL, b->q, b->k, b->g, b->qfiT + 2 * HK, QFI, NULL, nc, gh, c->H, c->K, c->Dv, 0, 0, 0);
    cuda_hgru_fwd(b->oT, NULL, b->q, b->k, b->g, b->qfiT + 2 * HK, QFI, NULL, nc, gh, c->H, c->K, c->Dv, 0, 1, 1);
    cuda_zero(b->o, N * c->D);
    cuda_embed_bwd(b->o, b->oT, b->perm, N, c->D, N);
}
static void col_gather_fwdbwd(void *p) {
    ColBench *b = p;
    const ClsConfig *c = b->c;
    const int HK = c->H * c->K, QFI = 2 * HK + c->D, gh = c->grid_h, nc = b->S * c->grid_w;
    const int64_t N = (int64_t)b->S * gh * c->grid_w;
    col_gather_fwd(p);
    cuda_embed_fwd(b->qfiT, b->perm, b->qfi, N, QFI);
    cuda_embed_fwd(b->doutT, b->perm, b->dout, N, c->D);
    cuda_gates_fwd(b->q, b->k, b->g, b->qfiT, QFI, NULL, N, HK);
    cuda_hgru_bwd(b->dq, b->dk, b->dg, b->dqfiT + 2 * HK, QFI, b->doutT, b->q, b->k, b->g, b->qfiT + 2 * HK, QFI,
                  nc, gh, c->H, c->K, c->Dv, 0, 0, 0);
    cuda_hgru_bwd(b->dq, b->dk, b->dg, b->dqfiT + 2 * HK, QFI, b->doutT, b->q, b->k, b->g, b->qfiT + 2 * HK, QFI,
                  nc, gh, c->H, c->K, c->Dv, 0, 1, 1);
    cuda_gates_bwd(b->dqfiT, QFI, NULL, b->dq, b->dk, b->dg, b->qfiT, QFI, NULL, N, HK);
    cuda_zero(b->dqfi, N * QFI);
    cuda_embed_bwd(b->dqfi, b->dqfiT, b->perm, N, QFI, N);
}

// The column pass at a 2-D preset's shape, read in place against gathered (fp32 state: chunk 0, as trained).
static void bench_cols(const char *name, const ClsConfig *c, int S) {
    if (!(c->K == c->Dv && (c->K == 1 || c->K == 2 || c->K == 4))) {
        printf("%-11s column pass: heads of K %d Dv %d have no in-place kernels\n", name, c->K, c->Dv);
        return;
    }
    const int HK = c->H * c->K, QFI = 2 * HK + c->D, gh = c->grid_h, gw = c->grid_w;
    const int64_t N = (int64_t)S * gh * gw;
    int32_t *perm_h = xmalloc((size_t)N * sizeof(int32_t));
    for (int64_t s = 0, n = 0; s < S; s++)
        for (int x = 0; x < gw; x++)
            for (int y = 0; y < gh; y++) perm_h[n++] = (int32_t)((s * gh + y) * gw + x);
    ColBench b = {c, dev_randn(N * QFI, 5, 1), dev_zeros(N * c->D, "o"), dev_zeros(N * HK, "q"),
                  dev_zeros(N * HK, "k"), dev_zeros(N * HK, "g"), dev_zeros(N * HK, "dq"), dev_zeros(N * HK, "dk"),
                  dev_zeros(N * HK, "dg"), dev_zeros(N * QFI, "dqfi"), dev_randn(N * c->D, 6, 1),
                  dev_zeros(N * QFI, "qfiT"), dev_zeros(N * c->D, "oT"), dev_zeros(N * c->D, "doutT"),
                  dev_zeros(N * QFI, "dqfiT"), dev_alloc((size_t)N * sizeof(int32_t), "perm"), S};
    dev_upload(b.perm, perm_h, (size_t)N * sizeof(int32_t));
    const double df = time_it(col_direct_fwd, &b), dfb = time_it(col_direct_fwdbwd, &b);
    const double gf = time_it(col_gather_fwd, &b), gfb = time_it(col_gather_fwdbwd, &b);
    printf("%-11s column pass S %3d %dx%d H %3d K %d: in place fwd %7.3f ms, fwd+bwd %7.3f ms; gathered %7.3f / "
           "%7.3f ms (in place x%.2f / x%.2f)\n", name, S, gh, gw, c->H, c->K, df, dfb, gf, gfb, df / gf, dfb / gfb);
    real *bufs[] = {b.qfi, b.o, b.q, b.k, b.g, b.dq, b.dk, b.dg, b.dqfi, b.dout, b.qfiT, b.oT, b.doutT, b.dqfiT};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) dev_free(bufs[i]);
    dev_free(b.perm);
    free(perm_h);
}

static void bench_scans(const char *name, ClsConfig c, int B) {
    cls_config_finish(&c);
    const int T = c.scan == SCAN_1D ? c.grid_w : c.grid_h * c.grid_w;   // 1-D: grid_w holds the length
    if (c.scan == SCAN_1D) c.grid_w = 0;
    g_gpu = 1;
    ClsModel m;
    cls_alloc(&m, &c);
    cls_init(&m, 3, CLS_INIT_NORMAL);
    cls_to_device(&m);
    cls_alloc_training(&m);
    ClsActs *a = cls_acts_alloc(&c, B, T, 1);
    g_gpu = 0;
    Batch bt = batch(&c, B, T, 9);
    g_gpu = 1;
    cls_forward(&m, a, bt.tok, bt.lens, bt.lab, B, 1, 1, NULL, NULL);   // leaves dout and the lower bounds set
    cls_backward(&m, a, 1.0 / B);
    const int S = B, HK = c.H * c.K, QFI = 2 * HK + c.D;
    const int64_t N = (int64_t)S * T;
    Bench b = {&m, a, &c, dev_randn(N * QFI, 1, 1), dev_zeros(N * c.D, "o"), dev_zeros(N * HK, "q"),
               dev_zeros(N * HK, "k"), dev_zeros(N * HK, "g"), dev_zeros(N * HK, "dq"), dev_zeros(N * HK, "dk"),
               dev_zeros(N * HK, "dg"), dev_zeros(N * QFI, "dqfi"), dev_randn(N * c.D, 2, 1), S, T, S, T, 0};
    const int two = c.scan != SCAN_1D;
    const double f = time_it(mix_fwd, &b), fb = time_it(mix_fwdbwd, &b);
    b.passes = two ? 4 : 2;
    const double rf = time_it(ref_fwd, &b), rfb = time_it(ref_fwdbwd, &b);
    printf("%-11s B %3d T %5d D %3d H %3d K %d: %s fwd %7.3f ms, fwd+bwd %7.3f ms; %d causal passes over the "
           "sequences %7.3f / %7.3f ms (x%.2f / x%.2f)", name, B, T, c.D, c.H, c.K, two ? "2-D four scans" : "bidirectional",
           f, fb, b.passes, rf, rfb, f / rf, fb / rfb);
    if (two) {
        b.nseq = S * c.grid_h; b.len = c.grid_w;
        const double lf = time_it(ref_fwd, &b), lfb = time_it(ref_fwdbwd, &b);
        printf("; over the rows %7.3f / %7.3f ms (x%.2f / x%.2f)", lf, lfb, f / lf, fb / lfb);
    }
    printf("\n");
    if (two) bench_cols(name, &c, S);
    real *bufs[] = {b.qfi, b.o, b.q, b.k, b.g, b.dq, b.dk, b.dg, b.dqfi, b.dout};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) dev_free(bufs[i]);
    batch_free(&bt);
    cls_acts_free(a);
    cls_free(&m);
    g_gpu = 0;
}

static int bench(void) {
    // the presets' shapes (cls_run.c): ListOps, Text, Image, Pathfinder, Path-X
    ClsConfig base = {.V = 20, .L = 2, .classes = 10, .ndoc = 1, .norm = NORM_BATCH, .pos = POS_NONE,
                      .lower_bound = 1, .eps = 1e-5};
    ClsConfig listops = base, text = base, image = base, pf = base, px = base;
    listops.D = 64; listops.K = 4; listops.I = 64; listops.grid_w = 2048;
    text.D = 128; text.K = 8; text.I = 128; text.grid_w = 4096; text.norm = NORM_LAYER;
    image.D = 512; image.K = 2; image.I = 512; image.input = INPUT_PIXELS; image.channels = 3; image.V = 256;
    image.scan = SCAN_2D; image.grid_h = image.grid_w = 32;
    for (int i = 0; i < 3; i++) { image.pix_mean[i] = 0.5; image.pix_std[i] = 0.25; }
    pf = image; pf.D = 128; pf.I = 128; pf.channels = 1;
    px = pf; px.D = 32; px.K = 1; px.I = 32; px.scan = SCAN_SERIES; px.grid_h = px.grid_w = 128;
    ClsConfig retr = listops;
    retr.D = 256; retr.K = 2; retr.I = 512; retr.grid_w = 4000;
    cuda_set_gemm_precision(2);
    // small heads over long sequences: the one-thread sweeps against the chunks of time (mixer_small.cuh)
    for (int mode = 0; mode <= 1; mode++) {
        printf("-- small heads, chunks of time %s\n", mode ? "on" : "off");
        cuda_hgru_small_chunks(mode);
        bench_scans("ListOps", listops, 128);
        bench_scans("Retrieval", retr, 256);   // 128 pairs of documents
    }
    cuda_hgru_small_chunks(-1);
    printf("-- every preset as the program runs it\n");
    bench_scans("ListOps", listops, 128);
    bench_scans("Text", text, 64);
    bench_scans("Image", image, 64);
    bench_scans("Pathfinder", pf, 128);
    bench_scans("Path-X", px, 256);
    return 0;
}

int main(int argc, char **argv) {
    omp_set_num_threads(8);
    cuda_init();
    if (argc > 1 && strcmp(argv[1], "--bench") == 0) return bench();
    ClsConfig listops = {.V = 20, .D = 64, .L = 2, .K = 4, .I = 64, .classes = 10, .ndoc = 1, .norm = NORM_BATCH,
                         .pos = POS_SINUSOIDAL, .lower_bound = 1, .dropout = 0, .eps = 1e-5};
    ClsConfig text = listops;
    text.D = 128; text.K = 8; text.I = 128; text.norm = NORM_LAYER; text.pos = POS_NONE; text.dropout = 0.1; text.input_dropout = 0.2; text.classes = 2;
    ClsConfig pair = listops;
    pair.D = 64; pair.K = 2; pair.I = 128; pair.ndoc = 2; pair.classes = 2;
    ClsConfig rms = listops;
    rms.norm = NORM_RMS; rms.K = 64; rms.D = 128; rms.I = 128;   // K = Dv = 64: tensor cores in bf16
    const int Ts[] = {1, 63, 64, 65};
    for (int i = 0; i < 4; i++) {
        char w[96];
        snprintf(w, sizeof w, "BatchNorm, positions, T %d", Ts[i]);
        one_step(w, listops, 4, Ts[i], 0, 1e-5, 1e-4);
        snprintf(w, sizeof w, "pairs, T %d", Ts[i]);
        one_step(w, pair, 3, Ts[i], 0, 1e-5, 1e-4);
    }
    one_step("LayerNorm, dropout, T 65", text, 3, 65, 0, 1e-5, 1e-4);
    one_step("RMSNorm, K 64, T 130", rms, 2, 130, 0, 1e-5, 1e-4);
    one_step("BatchNorm, positions, T 4096", listops, 2, 4096, 0, 1e-5, 1e-4);
    one_step("BatchNorm, positions, T 65", listops, 4, 65, 2, 1e-2, 3e-2);
    one_step("RMSNorm, K 64, T 130", rms, 2, 130, 2, 1e-2, 3e-2);
    one_step("pairs, T 300", pair, 3, 300, 2, 1e-2, 3e-2);
    // pixels and the 2-D scans (the column scans gather rows into column-major order and add them back)
    ClsConfig img = listops;
    img.input = INPUT_PIXELS; img.channels = 3; img.V = 256; img.scan = SCAN_2D;
    for (int c = 0; c < 3; c++) { img.pix_mean[c] = 0.48; img.pix_std[c] = 0.25; }
    const int grids[4][2] = {{1, 1}, {7, 9}, {32, 32}, {128, 128}};
    for (int i = 0; i < 4; i++) {
        char w[96];
        img.grid_h = grids[i][0]; img.grid_w = grids[i][1];
        snprintf(w, sizeof w, "RGB pixels, 2-D scans over %d x %d", grids[i][0], grids[i][1]);
        one_step(w, img, i == 3 ? 2 : 3, grids[i][0] * grids[i][1], 0, 1e-5, 1e-4);
    }
    ClsConfig pathx = img;    // Path-X's shape: D 32, expand ratio 1 (32 heads of K = Dv = 1), gray
    pathx.channels = 1; pathx.D = 32; pathx.K = 1; pathx.I = 32; pathx.grid_h = pathx.grid_w = 128;
    one_step("gray pixels, D 32, K 1, 2-D scans over 128 x 128", pathx, 2, 128 * 128, 0, 1e-5, 1e-4);
    pathx.scan = SCAN_SERIES;   // Path-X's own form: the mixer along rows, then along columns
    one_step("gray pixels, D 32, K 1, series scans over 128 x 128", pathx, 2, 128 * 128, 0, 1e-5, 1e-4);
    pathx.grid_h = 7; pathx.grid_w = 9;
    one_step("gray pixels, series scans over 7 x 9", pathx, 3, 63, 0, 1e-5, 1e-4);
    one_step("gray pixels, series scans over 7 x 9", pathx, 3, 63, 2, 1e-2, 3e-2);
    img.grid_h = img.grid_w = 32;
    one_step("RGB pixels, 2-D scans over 32 x 32", img, 4, 1024, 2, 1e-2, 3e-2);
    // patches (the host rearranges them; the input product has p p channels columns): Fashion-MNIST's 4 x 4 of
    // 28 x 28 gray, 2-D over the 7 x 7 patch grid and 1-D over its 49 patches; CIFAR's shape in 4 x 4 RGB patches
    ClsConfig fm = img;
    fm.channels = 1; fm.grid_h = fm.grid_w = 28; fm.patch = 4; fm.D = 64; fm.I = 128;
    one_step("gray 28 x 28 in 4 x 4 patches, 2-D scans over 7 x 7", fm, 4, 49, 0, 1e-5, 1e-4);
    one_step("gray 28 x 28 in 4 x 4 patches, 2-D scans over 7 x 7", fm, 4, 49, 2, 1e-2, 3e-2);
    fm.scan = SCAN_1D;
    one_step("gray 28 x 28 in 4 x 4 patches, 1-D scans over 49", fm, 4, 49, 0, 1e-5, 1e-4);
    img.patch = 4;
    one_step("RGB 32 x 32 in 4 x 4 patches, 2-D scans over 8 x 8", img, 3, 64, 0, 1e-5, 1e-4);
    // HGRN1's mixer (--arch hgrn1): the element-wise scans both ways, in place from the end, and the gated norm
    ClsConfig h1 = listops;
    h1.mixer = MIXER_HGRN1; h1.K = 1;
    for (int i = 0; i < 4; i++) {
        char w[96];
        snprintf(w, sizeof w, "HGRN1, BatchNorm, positions, T %d", Ts[i]);
        one_step(w, h1, 4, Ts[i], 0, 1e-5, 1e-4);
    }
    one_step("HGRN1, BatchNorm, positions, T 4096", h1, 2, 4096, 0, 1e-5, 1e-4);
    one_step("HGRN1, BatchNorm, positions, T 65", h1, 4, 65, 2, 1e-2, 3e-2);
    ClsConfig h1p = pair;
    h1p.mixer = MIXER_HGRN1; h1p.K = 1;
    one_step("HGRN1, pairs, T 300", h1p, 3, 300, 0, 1e-5, 1e-4);
    ClsConfig h1i = img;
    h1i.mixer = MIXER_HGRN1; h1i.K = 1; h1i.patch = 0; h1i.grid_h = 7; h1i.grid_w = 9;
    one_step("HGRN1, RGB pixels, 2-D scans over 7 x 9", h1i, 3, 63, 0, 1e-5, 1e-4);
    h1i.scan = SCAN_SERIES;
    one_step("HGRN1, RGB pixels, series scans over 7 x 9", h1i, 3, 63, 0, 1e-5, 1e-4);
    // HGRN2's LRA layer (--mixer-layer lra): sigmoid q, silu v, the unscaled readout, LayerNorm, biases; on the
    // 2-D images also through the column gather where the backend does not read columns in place
    ClsConfig lr = listops;
    lr.layer = LAYER_LRA;
    one_step("LRA layer, BatchNorm, positions, T 65", lr, 4, 65, 0, 1e-5, 1e-4);
    one_step("LRA layer, BatchNorm, positions, T 4096", lr, 2, 4096, 0, 1e-5, 1e-4);
    one_step("LRA layer, BatchNorm, positions, T 65", lr, 4, 65, 2, 1e-2, 3e-2);
    ClsConfig lrp = pair;
    lrp.layer = LAYER_LRA;
    one_step("LRA layer, pairs, T 300", lrp, 3, 300, 0, 1e-5, 1e-4);
    ClsConfig lri = img;
    lri.layer = LAYER_LRA; lri.patch = 0; lri.grid_h = 7; lri.grid_w = 9;
    one_step("LRA layer, RGB pixels, 2-D scans over 7 x 9", lri, 3, 63, 0, 1e-5, 1e-4);
    lri.scan = SCAN_SERIES;
    one_step("LRA layer, RGB pixels, series scans over 7 x 9", lri, 3, 63, 0, 1e-5, 1e-4);
    ClsConfig lrx = lri;     // K = Dv = 8: heads the GPU's column scans do not read in place, so it gathers them
    lrx.scan = SCAN_2D; lrx.K = 8;
    one_step("LRA layer, RGB pixels, K 8 (columns gathered), 2-D scans over 7 x 9", lrx, 3, 63, 0, 1e-5, 1e-4);
    // the LRA layer in the authors' bf16 numerics (--scan-dtype bf16): the same roundings at the same places on
    // both sides, but a projection output that the GPU's fp32 products leave on the other side of a bf16 rounding
    // boundary (about one in 2^15 when the sums differ in their last bits) rounds one bf16 unit (2^-8) away,
    // and the values after it move with it: the loss within 1e-3, the gradients 1e-2
    ClsConfig l16 = lr;
    l16.scan_dtype = SCAN_BF16;
    one_step("LRA layer, bf16 scans, BatchNorm, positions, T 65", l16, 4, 65, 0, 1e-3, 1e-2);
    one_step("LRA layer, bf16 scans, BatchNorm, positions, T 2048", l16, 2, 2048, 0, 1e-3, 1e-2);
    ClsConfig l16p = lrp;
    l16p.scan_dtype = SCAN_BF16;
    one_step("LRA layer, bf16 scans, pairs, T 300", l16p, 3, 300, 0, 1e-3, 1e-2);
    // --pad-group: BatchNorm's statistics over the rows that exist and the values zeroed past each group's longest
    // document (batch() makes every third document whole: groups of 1 leave two of every three short)
    ClsConfig pg = listops;
    pg.pad_group = 1;
    one_step("padding groups of 1, BatchNorm, T 65", pg, 4, 65, 0, 1e-5, 1e-4);
    one_step("padding groups of 1, BatchNorm, T 2048", pg, 4, 2048, 0, 1e-5, 1e-4);
    pg.pad_group = 2;
    one_step("padding groups of 2, BatchNorm, T 300", pg, 6, 300, 0, 1e-5, 1e-4);
    one_step("padding groups of 2, BatchNorm, T 300", pg, 6, 300, 2, 1e-2, 3e-2);
    ClsConfig pgl = lr, pg16 = l16, pgp = pair, pgh = h1;
    pgl.pad_group = pg16.pad_group = pgp.pad_group = pgh.pad_group = 1;
    one_step("padding groups of 1, LRA layer, T 2048", pgl, 4, 2048, 0, 1e-5, 1e-4);
    one_step("padding groups of 1, LRA layer, bf16 scans, T 2048", pg16, 4, 2048, 0, 1e-3, 1e-2);
    one_step("padding groups of 1, pairs, T 300", pgp, 3, 300, 0, 1e-5, 1e-4);
    one_step("padding groups of 1, HGRN1, T 300", pgh, 4, 300, 0, 1e-5, 1e-4);
    curves(listops, 8, 40);
    return check_summary("test_gpu_cls_model");
}
