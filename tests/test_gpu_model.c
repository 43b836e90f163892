// test_gpu_model.c: the whole model on the GPU against the CPU (the oracle), run by `make test-gpu`.
//  1. one training step from the same initialisation on the same tokens: the loss and every gradient (HGRN2,
//     HGRN1 with --arch hgrn1, and the Transformer++ with --arch transformer, whose attention is fp32 except
//     under bf16 in a build with cuDNN, where heads of 64 and 128 run on cuDNN's fused attention: bf16_emul.h
//     rounds its inputs and outputs on the CPU as cuDNN does, so its sensitivity counts in the tolerance)
//  2. 200 steps of training on both from the same start: the loss curves agree within the GPU's rounding
//  3. the flash-linear-attention fixture on the GPU: logits, loss, gradients and the greedy continuation
//  4. batched decoding: rows prefilled apart, copied into one state and decoded together, against the CPU and
//     against each row decoded alone (the transformer's through its key/value cache); HGRN's with and without
//     CUDA graphs, and with and without dependent launches, bit for bit
//  5. the training step queued and replayed as a CUDA graph (train.c) against the same steps op by op: the same
//     losses, norms, weights and moments, bit for bit
// Precision modes (--precision): fp32 runs exact GEMMs and the plain recurrence, held to 1e-5 (loss) and
// 1e-4 (gradients). tf32 GEMMs round inputs to 10-bit mantissas (2^-11 relative); bf16 GEMMs to 7 bits
// (2^-8 relative per product, 4e-3); in both, K = Dv = 64 or 128 runs the token mixer on tensor cores
// with bf16 operands. Losses average many terms, so they stay near 1e-3; a gradient passes through several
// bf16 products per layer, so gradients are held to 1e-2 (tf32 GEMMs) and 3e-2 (bf16 GEMMs), or to BF16_SITES
// times what rounding the operands as the GPU does moves that gradient on the CPU where that is more
// (bf16_emul.h: some configurations are that sensitive).
#include <math.h>

#include "../model.h"
#include "../train.h"
#include "../hf.h"
#include "check.h"
#include "bf16_emul.h"

static double rel(const real *ref, const real *got, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) { double d = (double)got[i] - ref[i]; num += d * d; den += (double)ref[i] * ref[i]; }
    return sqrt(num / (den > 0 ? den : 1e-300));
}

typedef struct { Model m; Acts a; } Side;

// A model of config c with the given seed on the CPU (gpu = 0) or the GPU (gpu = 1).
static void side_init(Side *s, const Config *c, uint64_t seed, int gpu, int B, int T) {
    g_gpu = gpu;
    model_alloc(&s->m, c);
    model_init(&s->m, seed);
    // norms and lower bounds away from their initial values, so their gradients are not trivially equal; the
    // biases only as far as the weights' products reach (0.02). Biases of 0.3 against weights of 0.02 make the
    // authors' layer's v nearly the same at every position (cosine 0.99 with their mean), so its state is nearly
    // of rank one, and its output LayerNorm passes back a do orthogonal to o = S^T q: dq = S do then cancels
    // 772-fold (52 with biases of 0.02), and the float32 CPU's own gradients were 1.1e-4 from float64's. That
    // measures the draw's conditioning, not the GPU's ops.
    uint64_t r = seed + 17;
    for (int p = 0; p < NPARAM; p++) {
        if (PARAMS[p].init == INIT_NORMAL) continue;
        const double sd = PARAMS[p].init == INIT_ZEROS && p != P_LB ? 0.02 : 0.3;
        int nl = p < P_FIRST_LAYER ? 1 : c->L;
        for (int l = 0; l < nl; l++) {
            real *t = W(&s->m, p, l);
            for (int64_t i = 0; i < param_numel(c, p); i++) t[i] += (real)(sd * rng_normal(&r));
        }
    }
    model_to_device(&s->m);
    model_alloc_training(&s->m);
    acts_alloc(&s->a, c, B, T, 1);
    g_gpu = 0;
}

static double side_step(Side *s, int gpu, const int32_t *inp, const int32_t *tgt, int64_t N, const Hyper *h, int64_t step,
                        double *gnorm) {
    g_gpu = gpu;
    OP(zero, s->m.grads, s->m.lay.n);
    int64_t cnt;
    double loss = model_forward(&s->m, &s->a, inp, tgt, NULL, NULL, 0, 1.0 / N, &cnt) / cnt;
    model_backward(&s->m, &s->a, inp);
    double gn = sqrt(grad_sumsq(&s->m));   // one process: every gradient
    if (gnorm) *gnorm = gn;
    if (h) adamw_step(&s->m, &(AdamW){h->beta1, h->beta2, h->adam_eps, h->wd}, lr_at(h, step), gn > h->clip ? h->clip / gn : 1.0, step);
    g_gpu = 0;
    return loss;
}

// sparse: targets at every eighth position only (MQAR's answers), so the sparse head runs
static void one_step(const char *what, Config c, int B, int T, int sparse, int gemm_mode, double tol_loss, double tol_grad) {
    config_finish(&c);
    cuda_set_gemm_precision(gemm_mode);
    Side cpu, gpu;
    side_init(&cpu, &c, 11, 0, B, T);
    side_init(&gpu, &c, 11, 1, B, T);
    int64_t N = (int64_t)B * T;
    int32_t *inp = xmalloc(N * 4), *tgt = xmalloc(N * 4);
    uint64_t r = 5;
    for (int64_t i = 0; i < N; i++) { inp[i] = (int32_t)(splitmix64(&r) % c.V); tgt[i] = (int32_t)(splitmix64(&r) % c.V); }
    if (sparse) for (int64_t i = 0; i < N; i++) if (i % 8 != 3) tgt[i] = -1;
    double lc = side_step(&cpu, 0, inp, tgt, N, NULL, 0, NULL), lg = side_step(&gpu, 1, inp, tgt, N, NULL, 0, NULL);
    CHECK(cpu.a.sparse == sparse && gpu.a.sparse == sparse, "%s: the sparse head ran on the CPU %d, the GPU %d",
          what, cpu.a.sparse, gpu.a.sparse);
    real *g = xmalloc((size_t)gpu.m.lay.n * sizeof(real));
    cuda_to_host(g, gpu.m.grads, (size_t)gpu.m.lay.n * sizeof(real));
    // tf32, bf16: the same CPU step with the operands rounded as the GPU rounds them (ge), for each tensor's
    // sensitivity to that rounding
    real *ge = NULL;
    if (gemm_mode != 0) {
        real *gx = xmalloc((size_t)cpu.m.lay.n * sizeof(real));
        memcpy(gx, cpu.m.grads, (size_t)cpu.m.lay.n * sizeof(real));
        g_emul = gemm_mode;
        side_step(&cpu, 0, inp, tgt, N, NULL, 0, NULL);
        g_emul = 0;
        ge = xmalloc((size_t)cpu.m.lay.n * sizeof(real));
        memcpy(ge, cpu.m.grads, (size_t)cpu.m.lay.n * sizeof(real));
        memcpy(cpu.m.grads, gx, (size_t)cpu.m.lay.n * sizeof(real));   // the exact gradients back in place
        free(gx);
    }
    double worst = 0, worst_sens = 0;
    const char *worst_name = "";
    for (int p = 0; p < NPARAM; p++) {
        int64_t n = param_numel(&c, p);
        if (!n) continue;
        int nl = p < P_FIRST_LAYER ? 1 : c.L;
        for (int l = 0; l < nl; l++) {
            const real *gc = tensor_at(&cpu.m.lay, cpu.m.grads, p, l), *gg = tensor_at(&gpu.m.lay, g, p, l);
            double e = rel(gc, gg, n), tol = tol_grad;
            if (ge) {
                const double sens = rel(gc, tensor_at(&cpu.m.lay, ge, p, l), n);
                if (sens > worst_sens) worst_sens = sens;
                if (BF16_SITES * sens > tol) tol = BF16_SITES * sens;
            }
            if (e > worst) { worst = e; worst_name = PARAMS[p].name; }
            CHECK(e < tol, "%s: gradient of %s (layer %d) differs by %.3g (limit %.2g)", what, PARAMS[p].name, l, e, tol);
        }
    }
    double el = fabs(lg - lc) / lc;
    CHECK(el < tol_loss, "%s: loss %.7f on the GPU, %.7f on the CPU", what, lg, lc);
    printf("%-46s loss rel %.2e (limit %.0e) | worst gradient rel %.2e (%s; limit %.0e", what, el, tol_loss, worst,
           worst_name, tol_grad);
    if (ge) printf(" or %.0f x the tensor's own sensitivity to rounded operands on the CPU, the largest %.2e", BF16_SITES, worst_sens);
    printf(")\n");
    free(g); free(ge); free(inp); free(tgt);
    g_gpu = 1; acts_free(&gpu.a); model_free(&gpu.m); g_gpu = 0;
    acts_free(&cpu.a); model_free(&cpu.m);
    cuda_set_gemm_precision(1);
}

// 200 AdamW steps on real text from the same start. Rounding differences grow through training, so the
// curves are compared step by step (3%) and over the last 20 steps (1%).
static void training_curves(void) {
    cuda_set_gemm_precision(2);   // the default: bf16 GEMMs, the token mixer on tensor cores (K = 64)
    Config c = {.V = 256, .D = 128, .L = 2, .K = 64, .I = MLP_DEFAULT, .tie = 0, .lower_bound = 1, .eps = 1e-6};
    config_finish(&c);
    int B = 8, T = 128, steps = 200;
    Hyper h = {.B = B, .T = T, .accum = 1, .steps = steps, .lr = 2e-3, .min_lr = 2e-4, .wd = 0.1, .beta1 = 0.9,
               .beta2 = 0.95, .adam_eps = 1e-8, .clip = 1.0, .warmup = 20, .sched = SCHED_COSINE};
    Side cpu, gpu;
    side_init(&cpu, &c, 3, 0, B, T);
    side_init(&gpu, &c, 3, 1, B, T);
    const char *shared = getenv("HGRN2_SHARED") ? getenv("HGRN2_SHARED") : "../shared";
    char path[512];
    snprintf(path, sizeof path, "%s/data/text/tinyshakespeare.txt", shared);
    size_t len;
    char *text = read_file(path, &len);
    int64_t N = (int64_t)B * T;
    int32_t *inp = xmalloc(N * 4), *tgt = xmalloc(N * 4);
    uint64_t r = 9;
    double worst = 0, tail_c = 0, tail_g = 0, first = 0, lc = 0, lg = 0;
    for (int s = 1; s <= steps; s++) {
        for (int b = 0; b < B; b++) {
            size_t at = splitmix64(&r) % (len - T - 1);
            for (int t = 0; t < T; t++) { inp[b * T + t] = (unsigned char)text[at + t]; tgt[b * T + t] = (unsigned char)text[at + t + 1]; }
        }
        lc = side_step(&cpu, 0, inp, tgt, N, &h, s, NULL);
        lg = side_step(&gpu, 1, inp, tgt, N, &h, s, NULL);
        if (s == 1) first = lc;
        double e = fabs(lg - lc) / lc;
        if (e > worst) worst = e;
        if (s > steps - 20) { tail_c += lc / 20; tail_g += lg / 20; }
    }
    double et = fabs(tail_g - tail_c) / tail_c;
    printf("200 training steps (tinyshakespeare bytes, bf16) loss %.3f -> cpu %.4f gpu %.4f | worst step rel %.2e | last-20 mean rel %.2e\n",
           first, lc, lg, worst, et);
    CHECK(worst < 3e-2, "training curves drift apart: worst step %.3g", worst);
    CHECK(et < 1e-2, "training curves end apart: %.3g", et);
    CHECK(tail_c < first - 1.5, "the CPU run did not learn (%.3f -> %.3f)", first, tail_c);
    free(text); free(inp); free(tgt);
    g_gpu = 1; acts_free(&gpu.a); model_free(&gpu.m); g_gpu = 0;
    acts_free(&cpu.a); model_free(&cpu.m);
}

// Logits [S][B][V] of B rows decoded S steps on the CPU (gpu 0) or the GPU (gpu 1): with `together`, three
// prompts of different lengths prefilled one at a time (B = 1), copied into the rows of one state by
// decode_state_set_row (the last row from row 1 of that state, a copy on the device) and decoded together;
// otherwise each row prefilled and decoded alone. Row b is fed feed[b][t] at step t, whatever its logits say.
// The transformer's rows share a position, so its three prompts have one length (70: three tiles of the GPU's
// attention queries), and its states are key/value caches of the 80 positions the rows reach.
// picks: NULL, or [S][B] receiving what model_forward_greedy picks when a second state decodes the same rows
// in lockstep through it (together only).
enum { BD_NP = 3, BD_B = 4, BD_S = 10, BD_P = 70 };
static void decode_rows(int gpu, const Config *c, int together, int32_t prompt[BD_NP][BD_P], int32_t feed[BD_B][BD_S],
                        real *out, int32_t *picks) {
    static const int len_rec[BD_NP] = {5, 1, BD_P}, len_att[BD_NP] = {BD_P, BD_P, BD_P}, from[BD_B] = {0, 1, 2, 1};
    const int att = c->mixer == MIXER_TRANSFORMER, ctx = att ? BD_P + BD_S : 1;
    const int *len = att ? len_att : len_rec;
    const int64_t V = c->V;
    g_gpu = gpu;
    Model m;
    model_alloc(&m, c);
    model_init(&m, 23);
    model_to_device(&m);
    Acts pre, rows;
    acts_alloc(&pre, c, 1, BD_P, 0);
    acts_alloc(&rows, c, together ? BD_B : 1, 1, 0);
    real *lg = xmalloc((size_t)BD_B * V * sizeof(real));
    if (together) {
        DecodeState bst, gst;
        Acts grows;
        decode_state_alloc(&bst, c, BD_B, ctx);
        if (picks) { decode_state_alloc(&gst, c, BD_B, ctx); acts_alloc(&grows, c, BD_B, 1, 0); }
        for (int p = 0; p < BD_NP; p++) {
            DecodeState st;
            decode_state_alloc(&st, c, 1, ctx);
            acts_reshape(&pre, 1, len[p]);
            model_forward(&m, &pre, prompt[p], NULL, &st, lg + p * V, 1, 0, NULL);
            decode_state_set_row(c, &bst, p, &st, 0);
            if (picks) {
                OP(zero, st.s, st.n);
                st.pos = 0;
                model_forward_greedy(&m, &pre, prompt[p], &st, &picks[p]);
                decode_state_set_row(c, &gst, p, &st, 0);
            }
            decode_state_free(&st);
        }
        if (att) bst.pos = BD_P;   // (the transformer's copies take the positions their source has seen)
        decode_state_set_row(c, &bst, 3, &bst, 1);
        memcpy(lg + 3 * V, lg + 1 * V, (size_t)V * sizeof(real));
        if (picks) {
            gst.pos = bst.pos;
            decode_state_set_row(c, &gst, 3, &gst, 1);
            picks[3] = picks[1];
        }
        for (int t = 0; t < BD_S; t++) {
            if (t > 0) {
                int32_t ids[BD_B];
                for (int b = 0; b < BD_B; b++) ids[b] = feed[b][t - 1];
                model_forward(&m, &rows, ids, NULL, &bst, lg, 1, 0, NULL);
                if (picks) model_forward_greedy(&m, &grows, ids, &gst, picks + t * BD_B);
            }
            memcpy(out + (int64_t)t * BD_B * V, lg, (size_t)BD_B * V * sizeof(real));
        }
        decode_state_free(&bst);
        if (picks) { decode_state_free(&gst); acts_free(&grows); }
    } else {
        for (int b = 0; b < BD_B; b++) {
            DecodeState st;
            decode_state_alloc(&st, c, 1, ctx);
            acts_reshape(&pre, 1, len[from[b]]);
            model_forward(&m, &pre, prompt[from[b]], NULL, &st, lg, 1, 0, NULL);
            for (int t = 0; t < BD_S; t++) {
                if (t > 0) model_forward(&m, &rows, &feed[b][t - 1], NULL, &st, lg, 1, 0, NULL);
                memcpy(out + ((int64_t)t * BD_B + b) * V, lg, (size_t)V * sizeof(real));
            }
            decode_state_free(&st);
        }
    }
    free(lg);
    acts_free(&pre); acts_free(&rows);
    model_free(&m);
    g_gpu = 0;
}

// Batched decoding (hgrn2 sample --batch, bench --generate) on the GPU against the CPU: rows prefilled apart and
// copied into one state, then decoded together, against the same on the CPU and against each row decoded alone
// on the GPU. The CPU's rows are exactly its rows alone (test_model); the GPU's may differ by rounding, as its
// products choose their kernels by the batch.
static void batched_decode(const char *what, Config c, int gemm_mode, double tol) {
    config_finish(&c);
    cuda_set_gemm_precision(gemm_mode);
    int32_t prompt[BD_NP][BD_P], feed[BD_B][BD_S];
    uint64_t r = 77;
    for (int p = 0; p < BD_NP; p++) for (int t = 0; t < BD_P; t++) prompt[p][t] = (int32_t)(splitmix64(&r) % c.V);
    for (int b = 0; b < BD_B; b++) for (int t = 0; t < BD_S; t++) feed[b][t] = (int32_t)(splitmix64(&r) % c.V);
    const int64_t n = (int64_t)BD_S * BD_B * c.V;
    real *cpu = xmalloc((size_t)n * sizeof(real)), *gpu = xmalloc((size_t)n * sizeof(real)),
         *alone = xmalloc((size_t)n * sizeof(real));
    int32_t picks[BD_S * BD_B];
    decode_rows(0, &c, 1, prompt, feed, cpu, NULL);
    decode_rows(1, &c, 1, prompt, feed, gpu, picks);
    decode_rows(1, &c, 0, prompt, feed, alone, NULL);
    // the greedy picks made on the GPU (the prefill's, then the steps', replayed from a graph after the second)
    // are the argmax of the logits it gave the other state, to the index
    int wrong = 0;
    for (int i = 0; i < BD_S * BD_B; i++) {
        int32_t want;
        op_argmax_rows(&want, gpu + (int64_t)i * c.V, 1, c.V);
        wrong += picks[i] != want;
    }
    printf("%-46s greedy picks on the GPU against its logits' argmax: %d of %d differ\n", what, wrong, BD_S * BD_B);
    CHECK(wrong == 0, "%s: %d greedy picks differ from the argmax of the logits", what, wrong);
    // HGRN's decoding steps replay a CUDA graph from the second step on (model.c): the same kernels on the same
    // memory, so the same bits as without one; the rows decoded alone record theirs again for each new state
    if (c.mixer != MIXER_TRANSFORMER) {
        real *plain = xmalloc((size_t)n * sizeof(real));
        g_decode_graphs = 0;
        decode_rows(1, &c, 1, prompt, feed, plain, NULL);
        g_decode_graphs = 1;
        int64_t differ = 0;
        for (int64_t i = 0; i < n; i++) differ += memcmp(&plain[i], &gpu[i], sizeof(real)) != 0;
        printf("%-46s with and without CUDA graphs: %lld of %lld logits differ\n", what, (long long)differ, (long long)n);
        CHECK(differ == 0, "%s: decoding with CUDA graphs changed %lld logits", what, (long long)differ);
        // the small products and the step start before the kernel ahead of them ends (programmatic dependent
        // launch, sm_90 on): the order in which their work lands must not change a bit either
        cuda_set_pdl(0);
        decode_rows(1, &c, 1, prompt, feed, plain, NULL);
        cuda_set_pdl(-1);
        differ = 0;
        for (int64_t i = 0; i < n; i++) differ += memcmp(&plain[i], &gpu[i], sizeof(real)) != 0;
        printf("%-46s with and without dependent launches: %lld of %lld logits differ\n", what, (long long)differ,
               (long long)n);
        CHECK(differ == 0, "%s: dependent launches changed %lld logits", what, (long long)differ);
        // the whole step in one kernel (bf16 operands; cuda/decode_step.cuh) computes what the fused ops compute,
        // in their order: the same bits as the ops one launch each. By default it takes the 4 rows together (and
        // a row alone of a model this small): so the rows together without it, and the rows alone with and without
        cuda_set_decode_kernel(0);
        decode_rows(1, &c, 1, prompt, feed, plain, NULL);
        real *plain1 = xmalloc((size_t)n * sizeof(real)), *plain0 = xmalloc((size_t)n * sizeof(real));
        decode_rows(1, &c, 0, prompt, feed, plain0, NULL);
        cuda_set_decode_kernel(1);
        decode_rows(1, &c, 0, prompt, feed, plain1, NULL);
        cuda_set_decode_kernel(-1);
        differ = 0;
        int64_t differ1 = 0;
        for (int64_t i = 0; i < n; i++) {
            differ += memcmp(&plain[i], &gpu[i], sizeof(real)) != 0;
            differ1 += memcmp(&plain1[i], &plain0[i], sizeof(real)) != 0 || memcmp(&plain1[i], &alone[i], sizeof(real)) != 0;
        }
        printf("%-46s with and without the whole-step kernel: %lld and %lld (rows alone) of %lld logits differ\n",
               what, (long long)differ, (long long)differ1, (long long)n);
        CHECK(differ == 0 && differ1 == 0, "%s: the whole-step kernel changed %lld and %lld logits", what,
              (long long)differ, (long long)differ1);
        free(plain1); free(plain0);
        free(plain);
    }
    double worst = 0, worst_alone = 0;
    for (int64_t i = 0; i < (int64_t)BD_S * BD_B; i++) {   // each row's logits at each step
        worst = fmax(worst, rel(cpu + i * c.V, gpu + i * c.V, c.V));
        worst_alone = fmax(worst_alone, rel(alone + i * c.V, gpu + i * c.V, c.V));
    }
    printf("%-46s %d rows together: worst row rel %.2e against the CPU, %.2e against each alone (limit %.0e)\n",
           what, BD_B, worst, worst_alone, tol);
    CHECK(worst < tol, "%s: the GPU's batched logits differ from the CPU's by %.3g", what, worst);
    CHECK(worst_alone < tol, "%s: the GPU's batched logits differ from its rows alone by %.3g", what, worst_alone);
    free(cpu); free(gpu); free(alone);
    cuda_set_gemm_precision(1);
}

// Greedy decoding many steps at a time (model_greedy_steps: CUDA graphs of 2 to 16 steps that feed each step's
// picks to the next on the GPU) against one step at a time fed its own picks (model_forward_greedy): the same
// picks and the same state, to the bit, for B rows prefilled together from random prompts. The steps come in
// calls of 37, 19 and 6 (a first step alone, then graphs of 16, 16, 4; 16, 2, then one alone; 4, 2), and once
// more after the states were replaced (freed memory: the first step alone again, and the graphs recorded again).
static void greedy_steps(const char *what, Config c, int gemm_mode, int B) {
    config_finish(&c);
    cuda_set_gemm_precision(gemm_mode);
    enum { P = 9, NC = 3, MAXS = 37 };
    static const int calls[NC] = {37, 19, 6};
    g_gpu = 1;
    Model m;
    model_alloc(&m, &c);
    model_init(&m, 31);
    model_to_device(&m);
    Acts pre, one, many;
    acts_alloc(&pre, &c, B, P, 0);
    acts_alloc(&one, &c, B, 1, 0);
    acts_alloc(&many, &c, B, 1, 0);
    int32_t *prompt = xmalloc((size_t)B * P * sizeof(int32_t)), *first = xmalloc((size_t)B * sizeof(int32_t));
    int32_t *want = xmalloc((size_t)MAXS * B * sizeof(int32_t)), *got = xmalloc((size_t)MAXS * B * sizeof(int32_t));
    uint64_t r = 1234 + (uint64_t)B;
    int64_t differ = 0, sdiffer = 0, total = 0;
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < B * P; i++) prompt[i] = (int32_t)(splitmix64(&r) % (uint64_t)c.V);
        DecodeState sa, sb;
        decode_state_alloc(&sa, &c, B, 1);
        decode_state_alloc(&sb, &c, B, 1);
        model_forward_greedy(&m, &pre, prompt, &sa, first);
        model_forward_greedy(&m, &pre, prompt, &sb, first);
        int32_t *fa = xmalloc((size_t)B * sizeof(int32_t)), *fb = xmalloc((size_t)B * sizeof(int32_t));
        memcpy(fa, first, (size_t)B * sizeof(int32_t));
        memcpy(fb, first, (size_t)B * sizeof(int32_t));
        for (int k = 0; k < NC; k++) {
            const int n = calls[k];
            for (int t = 0; t < n; t++) {
                model_forward_greedy(&m, &one, t ? want + (int64_t)(t - 1) * B : fa, &sa, want + (int64_t)t * B);
            }
            model_greedy_steps(&m, &many, fb, &sb, n, got);
            for (int64_t i = 0; i < (int64_t)n * B; i++) differ += want[i] != got[i];
            total += (int64_t)n * B;
            memcpy(fa, want + (int64_t)(n - 1) * B, (size_t)B * sizeof(int32_t));
            memcpy(fb, got + (int64_t)(n - 1) * B, (size_t)B * sizeof(int32_t));
        }
        CHECK(sa.pos == sb.pos, "%s: positions %d and %d after the steps", what, sa.pos, sb.pos);
        real *ha = xmalloc((size_t)sa.n * sizeof(real)), *hb = xmalloc((size_t)sb.n * sizeof(real));
        cuda_to_host(ha, sa.s, (size_t)sa.n * sizeof(real));
        cuda_to_host(hb, sb.s, (size_t)sb.n * sizeof(real));
        for (int64_t i = 0; i < sa.n; i++) sdiffer += memcmp(&ha[i], &hb[i], sizeof(real)) != 0;
        free(ha); free(hb); free(fa); free(fb);
        decode_state_free(&sa);
        decode_state_free(&sb);
    }
    int recorded = 0;
    for (int k = 0; k < GREEDY_GRAPHS; k++) recorded += many.sgraph[k] != NULL;
    printf("%-46s %d rows, steps in graphs of up to %d (%d recorded): %lld of %lld picks and %lld state values differ\n",
           what, B, GREEDY_CHUNK, recorded, (long long)differ, (long long)total, (long long)sdiffer);
    CHECK(differ == 0 && sdiffer == 0, "%s: decoding steps in graphs changed %lld picks and %lld state values", what,
          (long long)differ, (long long)sdiffer);
    CHECK(recorded == 3, "%s: %d of the graphs of 16, 4 and 2 steps were recorded, not 3", what, recorded);
    free(prompt); free(first); free(want); free(got);
    acts_free(&pre); acts_free(&one); acts_free(&many);
    model_free(&m);
    g_gpu = 0;
    cuda_set_gemm_precision(1);
}

// The reference fixture on the GPU (imported by test_parity into tests/tmp/test_parity/fla.ckpt; imported
// again here so this program stands alone).
static void fixture(int gemm_mode, double tol_logits, double tol_grad) {
    cuda_set_gemm_precision(gemm_mode);
    StSet *hf = st_open_dir("tests/fixtures/fla/hf");
    StSet *fx = st_open_file("tests/fixtures/fla/fixture.safetensors");
    Config c = {.V = 300, .D = 64, .L = 3, .K = 16, .I = MLP_DEFAULT, .tie = 0, .lower_bound = 1, .eps = 1e-6};
    config_finish(&c);
    Model m;
    model_alloc(&m, &c);
    char name[256], gname[300];
    for (int p = 0; p < NPARAM; p++) {
        int nl = p < P_FIRST_LAYER ? 1 : c.L;
        if (!param_numel(&c, p)) continue;
        for (int l = 0; l < nl; l++) { hf_name(name, sizeof name, &c, p, l); st_read(hf, st_find(hf, name), W(&m, p, l)); }
    }
    const StTensor *ti = st_find(fx, "input_ids");
    int B = (int)ti->shape[0], T = (int)ti->shape[1];
    int64_t N = (int64_t)B * T;
    float *idsf = xmalloc(N * sizeof(float));
    st_read(fx, ti, idsf);
    int32_t *ids = xmalloc(N * 4), *tgt = xmalloc(N * 4);
    for (int64_t i = 0; i < N; i++) ids[i] = (int32_t)idsf[i];
    for (int64_t i = 0; i < N; i++) tgt[i] = (i % T) + 1 < T ? ids[i + 1] : -1;
    float *ref = xmalloc((size_t)N * c.V * sizeof(float)), refloss;
    st_read(fx, st_find(fx, "logits"), ref);
    st_read(fx, st_find(fx, "loss"), &refloss);
    g_gpu = 1;
    model_to_device(&m);
    model_alloc_training(&m);
    Acts a;
    acts_alloc(&a, &c, B, T, 1);
    real *logits = xmalloc((size_t)N * c.V * sizeof(real));
    int64_t cnt = 0;
    for (int64_t i = 0; i < N; i++) cnt += tgt[i] >= 0;
    OP(zero, m.grads, m.lay.n);
    double loss = model_forward(&m, &a, ids, tgt, NULL, logits, 0, 1.0 / cnt, &cnt) / cnt;
    model_backward(&m, &a, ids);
    real *g = xmalloc((size_t)m.lay.n * sizeof(real));
    cuda_to_host(g, m.grads, (size_t)m.lay.n * sizeof(real));
    double el = rel(ref, logits, N * c.V), eloss = fabs(loss - refloss) / refloss, worst = 0;
    for (int p = 0; p < NPARAM; p++) {
        int nl = p < P_FIRST_LAYER ? 1 : c.L;
        int64_t n = param_numel(&c, p);
        if (!n) continue;
        for (int l = 0; l < nl; l++) {
            hf_name(name, sizeof name, &c, p, l);
            snprintf(gname, sizeof gname, "grad.%s", name);
            float *gr = xmalloc(n * sizeof(float));
            st_read(fx, st_find(fx, gname), gr);
            double e = rel(gr, tensor_at(&m.lay, g, p, l), n);
            if (e > worst) worst = e;
            free(gr);
        }
    }
    // greedy continuation from the recurrent state on the GPU
    const StTensor *tp = st_find(fx, "prompt"), *tg = st_find(fx, "greedy");
    float *pf = xmalloc(tp->numel * sizeof(float)), *gf = xmalloc(tg->numel * sizeof(float));
    st_read(fx, tp, pf);
    st_read(fx, tg, gf);
    int32_t *prompt = xmalloc(tp->numel * 4);
    for (int64_t i = 0; i < tp->numel; i++) prompt[i] = (int32_t)pf[i];
    Acts pre, one;
    acts_alloc(&pre, &c, 1, (int)tp->numel, 0);
    acts_alloc(&one, &c, 1, 1, 0);
    DecodeState st;
    decode_state_alloc(&st, &c, 1, (int)(tp->numel + tg->numel));
    real *lg = xmalloc(c.V * sizeof(real));
    model_forward(&m, &pre, prompt, NULL, &st, lg, 1, 0, NULL);
    int same = 1;
    for (int64_t i = 0; i < tg->numel; i++) {
        int32_t id = sample_token(lg, c.V, 0, 0, 1, NULL, NULL);
        if (id != (int32_t)gf[i]) same = 0;
        model_forward(&m, &one, &id, NULL, &st, lg, 1, 0, NULL);
    }
    printf("fla fixture on the GPU (gemm mode %d)             logits rel %.2e, loss rel %.2e, worst gradient rel %.2e, greedy %s\n",
           gemm_mode, el, eloss, worst, same ? "identical" : "DIFFERENT");
    CHECK(el < tol_logits, "fixture logits differ by %.3g", el);
    CHECK(eloss < tol_logits, "fixture loss differs by %.3g", eloss);
    CHECK(worst < tol_grad, "fixture gradients differ by %.3g", worst);
    CHECK(same, "the greedy continuation on the GPU differs from fla's");
    decode_state_free(&st);
    acts_free(&a); acts_free(&pre); acts_free(&one);
    model_free(&m);
    g_gpu = 0;
    free(g); free(lg); free(logits); free(ref); free(ids); free(tgt); free(idsf); free(pf); free(gf); free(prompt);
    st_close(hf); st_close(fx);
    cuda_set_gemm_precision(1);
}

// cuda_flag_nonfinite: rows without a target are not looked at, and the flag gathers over calls
static void flag_nonfinite(void) {
    enum { N = 3000 };
    float *x = xmalloc(N * sizeof(float));
    int32_t *t = xmalloc(N * sizeof(int32_t)), fl;
    for (int i = 0; i < N; i++) { x[i] = (float)i - 1000.f; t[i] = i % 5 == 2 ? -1 : i % 7; }
    float *xd = cuda_alloc(N * sizeof(float), "x");
    int32_t *td = cuda_alloc(N * sizeof(int32_t), "t"), *fd = cuda_alloc(sizeof(int32_t), "flag");
    cuda_to_device(td, t, N * sizeof(int32_t));
    // case: the value at `at` (1e30 * 1e30: inf, or NaN), with or without the targets; the flag expected
    const struct { int at, nan, tgts, want; } cases[] = {
        {-1, 0, 1, 0}, {2, 0, 1, 0}, {2, 1, 1, 0}, {2, 0, 0, 1}, {2999, 1, 1, 1}, {1234, 0, 1, 1}, {0, 1, 0, 1},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        float *y = xmalloc(N * sizeof(float));
        memcpy(y, x, N * sizeof(float));
        if (cases[k].at >= 0) y[cases[k].at] = cases[k].nan ? NAN : INFINITY;
        cuda_to_device(xd, y, N * sizeof(float));
        fl = 0;
        cuda_to_device(fd, &fl, sizeof fl);
        cuda_flag_nonfinite(fd, xd, cases[k].tgts ? td : NULL, N);
        cuda_to_host(&fl, fd, sizeof fl);
        CHECK(fl == cases[k].want, "flag_nonfinite case %zu: %d, expected %d", k, fl, cases[k].want);
        free(y);
    }
    // a second call does not clear what the first set
    fl = 1;
    cuda_to_device(fd, &fl, sizeof fl);
    cuda_to_device(xd, x, N * sizeof(float));
    cuda_flag_nonfinite(fd, xd, td, N);
    cuda_to_host(&fl, fd, sizeof fl);
    CHECK(fl == 1, "flag_nonfinite cleared a flag set before");
    cuda_free(xd); cuda_free(td); cuda_free(fd);
    free(x); free(t);
    printf("flag_nonfinite: %zu cases\n", sizeof cases / sizeof cases[0] + 1);
}

// Random batches of B x T ids below V; targets everywhere, or (sparse) at every eighth position only.
typedef struct { int V, sparse; int64_t N; uint64_t r; int32_t *inp, *tgt; } RandBatches;
static void rand_batches_next(void *ctx, const int32_t **inp, const int32_t **tgt) {
    RandBatches *g = ctx;
    for (int64_t i = 0; i < g->N; i++) {
        g->inp[i] = (int32_t)(splitmix64(&g->r) % (uint64_t)g->V);
        const int32_t y = (int32_t)(splitmix64(&g->r) % (uint64_t)g->V);
        g->tgt[i] = g->sparse && i % 8 != 3 ? -1 : y;
    }
    *inp = g->inp;
    *tgt = g->tgt;
}

// The same 12 steps from the same start, once queued and in CUDA graphs (train.c) and once op by op. Along the
// way: clipping (a limit under the norms), a step skipped for a non-finite loss (HGRN2_FAULT_NONFINITE), the
// memory changing under the graph (recorded again), a step without the norm (another graph).
static void graph_steps(const char *what, Config c, int B, int T, int sparse) {
    config_finish(&c);
    cuda_set_gemm_precision(2);
    enum { STEPS = 12 };
    Side s[2];
    side_init(&s[0], &c, 7, 1, B, T);
    side_init(&s[1], &c, 7, 1, B, T);
    const int64_t N = (int64_t)B * T;
    Hyper h = {.B = B, .T = T, .accum = 1, .steps = STEPS, .lr = 3e-3, .min_lr = 3e-4, .wd = 0.1, .beta1 = 0.9,
               .beta2 = 0.95, .adam_eps = 1e-8, .clip = 0.05, .warmup = 3, .sched = SCHED_COSINE};
    double loss[2][STEPS + 1], gn[2][STEPS + 1];
    int recorded = 0, clipped = 0;
    const int64_t n = s[0].m.lay.n;
    real *w0 = xmalloc((size_t)n * sizeof(real));   // the start, to see that the steps moved the weights
    cuda_to_host(w0, s[0].m.params, (size_t)n * sizeof(real));
    setenv("HGRN2_FAULT_NONFINITE", "5-5", 1);
    g_gpu = 1;
    for (int k = 0; k < 2; k++) {
        RandBatches rb = {.V = c.V, .sparse = sparse, .N = N, .r = 99, .inp = xmalloc(N * 4), .tgt = xmalloc(N * 4)};
        const BatchSource src = {rand_batches_next, &rb};
        g_train_graphs = k == 0;
        for (int step = 1; step <= STEPS; step++) {
            if (step == 8) cuda_free(cuda_alloc(256, "a buffer that moves the memory epoch on"));
            const StepResult r = train_step(&s[k].m, &s[k].a, &h, step, &src, step != 10);
            loss[k][step] = r.loss;
            gn[k][step] = r.grad_norm;
            if (k == 0 && step == 4) recorded = s[0].a.tgraph != NULL;
            if (r.grad_norm > h.clip) clipped++;
        }
        free(rb.inp);
        free(rb.tgt);
    }
    g_train_graphs = -1;
    unsetenv("HGRN2_FAULT_NONFINITE");
    CHECK(recorded && s[0].a.tgraph && !s[0].a.tgraph_failed, "%s: no graph of the step was recorded", what);
    CHECK(!s[1].a.tgraph, "%s: a graph was recorded with the graphs off", what);
    CHECK(clipped > 0, "%s: no step was clipped (norms under %g)", what, h.clip);
    CHECK(isnan(loss[0][5]) && isnan(loss[1][5]), "%s: the faulted step's loss is %g and %g", what, loss[0][5], loss[1][5]);
    int same = 1;
    for (int step = 1; step <= STEPS; step++) {
        if (step != 5 && (memcmp(&loss[0][step], &loss[1][step], sizeof(double)) ||
                          memcmp(&gn[0][step], &gn[1][step], sizeof(double)))) {
            CHECK(0, "%s: step %d: loss %.17g and %.17g, norm %.17g and %.17g", what, step, loss[0][step],
                  loss[1][step], gn[0][step], gn[1][step]);
            same = 0;
        }
    }
    real *a = xmalloc((size_t)n * sizeof(real)), *b = xmalloc((size_t)n * sizeof(real));
    const real *ta[3] = {s[0].m.params, s[0].m.m, s[0].m.v}, *tb[3] = {s[1].m.params, s[1].m.m, s[1].m.v};
    const char *names[3] = {"weights", "first moments", "second moments"};
    for (int t = 0; t < 3; t++) {
        const int64_t len = t == 0 ? n : s[0].m.opt_hi - s[0].m.opt_lo;
        cuda_to_host(a, ta[t], (size_t)len * sizeof(real));
        cuda_to_host(b, tb[t], (size_t)len * sizeof(real));
        int64_t diff = 0;
        for (int64_t i = 0; i < len; i++) diff += memcmp(&a[i], &b[i], sizeof(real)) != 0;
        CHECK(diff == 0, "%s: %lld of %lld %s differ", what, (long long)diff, (long long)len, names[t]);
        same &= diff == 0;
    }
    // and the steps changed the weights: the run is not trivially equal
    cuda_to_host(a, s[0].m.params, (size_t)n * sizeof(real));
    int64_t moved = 0;
    for (int64_t i = 0; i < n; i++) moved += a[i] != w0[i];
    CHECK(moved > n / 10, "%s: only %lld of %lld weights moved in %d steps", what, (long long)moved, (long long)n, STEPS);
    printf("%-46s %d steps, %d clipped, the same bits: %s (loss %.4f -> %.4f)\n", what, STEPS, clipped,
           same ? "yes" : "NO", loss[0][1], loss[0][STEPS]);
    free(a); free(b); free(w0);
    g_gpu = 1;
    for (int k = 0; k < 2; k++) { acts_free(&s[k].a); model_free(&s[k].m); }
    g_gpu = 0;
    cuda_set_gemm_precision(1);
}

int main(void) {
    cuda_init();
    printf("device: %s\n", cuda_device_name());
    Config small = {.V = 97, .D = 128, .L = 2, .K = 32, .I = MLP_DEFAULT, .tie = 0, .lower_bound = 1, .eps = 1e-6};
    one_step("one step D 128, T 65, fp32", small, 2, 65, 0, 0, 1e-5, 1e-4);
    one_step("one step D 128, T 65, tf32", small, 2, 65, 0, 1, 1e-3, 1e-2);
    Config mid = {.V = 512, .D = 256, .L = 2, .K = 64, .I = MLP_DEFAULT, .tie = 1, .lower_bound = 1, .eps = 1e-6};
    one_step("one step D 256 tied, T 200, fp32", mid, 2, 200, 0, 0, 1e-5, 1e-4);
    one_step("one step D 256 tied, T 200, tf32", mid, 2, 200, 0, 1, 1e-3, 1e-2);
    one_step("one step D 256 tied, T 200, bf16", mid, 2, 200, 0, 2, 3e-3, 3e-2);
    Config wide = {.V = 1000, .D = 768, .L = 2, .K = 128, .I = MLP_DEFAULT, .tie = 0, .lower_bound = 1, .eps = 1e-6};
    one_step("one step D 768 (K = Dv = 128), T 130, fp32", wide, 1, 130, 0, 0, 1e-5, 1e-4);
    one_step("one step D 768 (K = Dv = 128), T 130, tf32", wide, 1, 130, 0, 1, 1e-3, 1e-2);
    one_step("one step D 768 (K = Dv = 128), T 130, bf16", wide, 1, 130, 0, 2, 3e-3, 3e-2);
    // MQAR's model: no MLP, targets at a few positions (the sparse head)
    Config mqar = {.V = 8192, .D = 128, .L = 2, .K = 128, .I = 0, .tie = 0, .lower_bound = 1, .eps = 1e-6};
    one_step("one step no MLP, sparse targets, T 128, fp32", mqar, 4, 128, 1, 0, 1e-5, 1e-4);
    one_step("one step no MLP, sparse targets, T 128, bf16", mqar, 4, 128, 1, 2, 3e-3, 3e-2);
    one_step("one step no MLP, sparse targets, T 128, tf32", mqar, 4, 128, 1, 1, 1e-3, 1e-2);
    one_step("one step no MLP, dense targets, T 128, bf16", mqar, 4, 128, 0, 2, 3e-3, 3e-2);
    Config mqar64 = mqar;
    mqar64.K = 64;
    one_step("one step no MLP, K 64, sparse targets, T 128, bf16", mqar64, 4, 128, 1, 2, 3e-3, 3e-2);
    // the HGRN2 authors' layer (--mixer-layer lra): biases, sigmoid q, silu v in its own buffer, an unscaled
    // readout, a LayerNorm; MQAR's model and one with MLPs at a length that is not a multiple of the chunk
    Config lq = mqar;
    lq.layer = LAYER_LRA;
    one_step("one step lra layer, no MLP, sparse, T 128, fp32", lq, 4, 128, 1, 0, 1e-5, 1e-4);
    one_step("one step lra layer, no MLP, sparse, T 128, bf16", lq, 4, 128, 1, 2, 3e-3, 3e-2);
    Config lm = small;
    lm.layer = LAYER_LRA;
    one_step("one step lra layer D 128, T 65, fp32", lm, 2, 65, 0, 0, 1e-5, 1e-4);
    one_step("one step lra layer D 128, T 65, tf32", lm, 2, 65, 0, 1, 1e-3, 1e-2);
    Config lw = wide;
    lw.layer = LAYER_LRA;
    one_step("one step lra layer D 768 (K = Dv = 128), T 130, bf16", lw, 1, 130, 0, 2, 3e-3, 3e-2);
    // Zoology's blocks (--block zoology): LayerNorms with biases; without an MLP the identity in its place, whose
    // norm writes the stream in fp32 under every precision (the authors' MQAR model with the lra layer)
    Config zq = lq;
    zq.block = BLOCK_ZOOLOGY; zq.eps = 1e-5;
    one_step("one step zoology blocks, lra, sparse, T 128, fp32", zq, 4, 128, 1, 0, 1e-5, 1e-4);
    one_step("one step zoology blocks, lra, sparse, T 128, bf16", zq, 4, 128, 1, 2, 3e-3, 3e-2);
    Config zm = small;
    zm.block = BLOCK_ZOOLOGY; zm.eps = 1e-5;
    one_step("one step zoology blocks D 128, T 65, fp32", zm, 2, 65, 0, 0, 1e-5, 1e-4);
    one_step("one step zoology blocks D 128, T 65, bf16", zm, 2, 65, 0, 2, 3e-3, 3e-2);
    // HGRN1 (--arch hgrn1): the element-wise recurrence as a scan in chunks of 64 and the gated output norm
    Config h1 = {.V = 97, .D = 128, .L = 2, .K = 1, .I = MLP_DEFAULT, .tie = 0, .lower_bound = 1, .eps = 1e-6,
                 .mixer = MIXER_HGRN1};
    one_step("one step HGRN1 D 128, T 65, fp32", h1, 2, 65, 0, 0, 1e-5, 1e-4);
    one_step("one step HGRN1 D 128, T 65, bf16", h1, 2, 65, 0, 2, 3e-3, 3e-2);
    Config h1w = h1;
    h1w.D = 512; h1w.V = 1000; h1w.tie = 1;
    one_step("one step HGRN1 D 512 tied, T 300, fp32", h1w, 2, 300, 0, 0, 1e-5, 1e-4);
    one_step("one step HGRN1 D 512 tied, T 300, tf32", h1w, 2, 300, 0, 1, 1e-3, 1e-2);
    Config h1q = mqar;
    h1q.K = 1; h1q.mixer = MIXER_HGRN1;
    one_step("one step HGRN1 no MLP, sparse targets, T 128, fp32", h1q, 4, 128, 1, 0, 1e-5, 1e-4);
    // the Transformer++ (--arch transformer): heads of 32, 64 and 128 values (query and key tiles of 32 cut
    // T 65, 200 and 130 unevenly); its attention is fp32 in every mode, the products as the mode says, except
    // under bf16 with cuDNN: heads of 64 and 128 (multiples of 8) then take cuDNN's bf16 attention
    Config tp = {.V = 97, .D = 128, .L = 2, .K = 32, .I = MLP_DEFAULT, .tie = 0, .lower_bound = 0, .eps = 1e-6,
                 .mixer = MIXER_TRANSFORMER};
    one_step("one step transformer D 128 (4 x 32), T 65, fp32", tp, 2, 65, 0, 0, 1e-5, 1e-4);
    one_step("one step transformer D 128 (4 x 32), T 65, tf32", tp, 2, 65, 0, 1, 1e-3, 1e-2);
    Config tpw = tp;
    tpw.D = 256; tpw.K = 64; tpw.V = 512; tpw.tie = 1;
    one_step("one step transformer D 256 tied (4 x 64), T 200, fp32", tpw, 2, 200, 0, 0, 1e-5, 1e-4);
    one_step("one step transformer D 256 tied (4 x 64), T 200, bf16", tpw, 2, 200, 0, 2, 3e-3, 3e-2);
    cuda_set_gemm_precision(2);
    printf("transformer attention under bf16: %s\n", cuda_attention_uses_cudnn(2, 200, 200, 4, 64)
           ? "cuDNN's fused attention" : "the fp32 kernels (a build without cuDNN)");
    CHECK(cuda_attention_uses_cudnn(2, 200, 200, 4, 64) == cuda_attention_cudnn_built(),
          "a build with cuDNN must run the bf16 transformer's attention (B 2, T 200, 4 heads of 64) on it");
    Config tp128 = tp;
    tp128.D = 256; tp128.K = 128;
    one_step("one step transformer D 256 (2 x 128), T 130, fp32", tp128, 1, 130, 0, 0, 1e-5, 1e-4);
    one_step("one step transformer D 256 (2 x 128), T 130, bf16", tp128, 1, 130, 0, 2, 3e-3, 3e-2);
    Config tpq = mqar;
    tpq.K = 64; tpq.lower_bound = 0; tpq.mixer = MIXER_TRANSFORMER;
    one_step("one step transformer no MLP, sparse targets, T 128, fp32", tpq, 4, 128, 1, 0, 1e-5, 1e-4);
    // batched decoding: prompts of 5, 1 and 70 tokens (70: a chunked prefill on tensor cores), K = Dv = 64
    Config dec = {.V = 97, .D = 128, .L = 2, .K = 64, .I = MLP_DEFAULT, .tie = 0, .lower_bound = 1, .eps = 1e-6};
    batched_decode("batched decoding D 128, fp32", dec, 0, 1e-5);
    batched_decode("batched decoding D 128, bf16", dec, 2, 3e-2);
    Config dec2 = dec;   // K = Dv = 128 (the step's four rows a group), no MLP, tied embeddings, 3 layers
    dec2.D = 256; dec2.K = 128; dec2.I = 0; dec2.tie = 1; dec2.L = 3; dec2.V = 300;
    batched_decode("batched decoding D 256, K 128, no MLP, bf16", dec2, 2, 3e-2);
    Config dec3 = dec;   // heads of 32 (one column group), an MLP wider than 2,048 (rows over several batches)
    dec3.K = 32; dec3.I = 2056; dec3.L = 1;
    batched_decode("batched decoding D 128, K 32, MLP 2056, bf16", dec3, 2, 3e-2);
    Config decl = dec;
    decl.layer = LAYER_LRA;   // op by op (no fused step), graphs as for fla's layer
    batched_decode("batched decoding lra layer D 128, fp32", decl, 0, 1e-5);
    batched_decode("batched decoding lra layer D 128, bf16", decl, 2, 3e-2);
    Config decz = dec;
    decz.block = BLOCK_ZOOLOGY; decz.eps = 1e-5; decz.I = 0;
    batched_decode("batched decoding zoology blocks D 128, bf16", decz, 2, 3e-2);
    Config dec1 = dec;
    dec1.K = 1; dec1.mixer = MIXER_HGRN1;
    batched_decode("batched decoding HGRN1 D 128, fp32", dec1, 0, 1e-5);
    batched_decode("batched decoding HGRN1 D 128, bf16", dec1, 2, 3e-2);
    Config decT = dec;
    decT.lower_bound = 0; decT.mixer = MIXER_TRANSFORMER;   // two heads of 64
    batched_decode("batched decoding transformer D 128, fp32", decT, 0, 1e-5);
    batched_decode("batched decoding transformer D 128, bf16", decT, 2, 3e-2);
    // greedy steps many at a time: the fused ops (1 row), the whole-step kernel (4 rows; 1 row when forced), the
    // layers' ops (8 rows), HGRN1
    greedy_steps("greedy steps in graphs D 128, bf16", dec, 2, 1);
    greedy_steps("greedy steps in graphs D 128, bf16", dec, 2, 4);
    greedy_steps("greedy steps in graphs D 256, K 128, no MLP, bf16", dec2, 2, 4);
    cuda_set_decode_kernel(1);
    greedy_steps("greedy steps in graphs, whole-step kernel, bf16", dec, 2, 1);
    cuda_set_decode_kernel(-1);
    greedy_steps("greedy steps in graphs D 128, fp32", dec, 0, 8);
    greedy_steps("greedy steps in graphs HGRN1 D 128, bf16", dec1, 2, 3);
    fixture(0, 1e-5, 1e-4);
    fixture(1, 1e-2, 1e-2);
    fixture(2, 3e-2, 3e-2);
    flag_nonfinite();
    Config gs = {.V = 256, .D = 128, .L = 2, .K = 64, .I = MLP_DEFAULT, .tie = 0, .lower_bound = 1, .eps = 1e-6};
    graph_steps("step graphs D 128, K 64, T 130, bf16", gs, 3, 130, 0);
    Config gq = {.V = 8192, .D = 128, .L = 2, .K = 128, .I = 0, .tie = 0, .lower_bound = 1, .eps = 1e-6};
    graph_steps("step graphs no MLP, sparse targets, T 128, bf16", gq, 4, 128, 1);
    training_curves();
    return check_summary("test_gpu_model");
}
