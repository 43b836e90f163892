// The checks of the classification losses (cross-entropy, greedy decoding's argmax, the soft-target
// cross-entropy) and of the fused classifier of training against the CPU, included by tests/test_gpu.cu
// after the helpers they use (Pool, compare, check_bits).
#pragma once

static void test_xent(void) {
    struct { int64_t N; int V; } sh[] = {{1, 7}, {65, 1000}, {64, 50304}, {63, 50257}, {300, 32000}};
    for (auto s : sh) {
        if (g_quick && s.N * s.V > 65 * 50304) continue;
        seed(900 + s.N + s.V);
        Vec logits = randn(s.N * s.V, 3);
        for (int64_t n = 0; n < s.N; n++) logits[n * s.V + next_u64() % s.V] += 15;   // a confident entry
        std::vector<int32_t> t(s.N);
        for (int64_t n = 0; n < s.N; n++) t[n] = n > 0 && urand() < 0.2 ? -1 : (int32_t)(next_u64() % s.V);
        float scale = 1.0f / s.N;
        Vec loss(s.N), d(s.N * s.V);
        op_xent_fwd(loss.data(), logits.data(), t.data(), s.N, s.V);
        op_xent_bwd(d.data(), logits.data(), t.data(), scale, s.N, s.V);
        // rows read in float4s where V is a multiple of 4 (1000, 50304, 32000), and one value at a time forced
        for (int vec = 1; vec >= 0; vec--) {
            cuda_set_xent_vec(vec);
            Pool P;
            int32_t *gt = P.up(t);
            float *gl = P.up(logits), *gloss = P.f(s.N), *gd = P.f(d.size()), *gin = P.up(logits);
            poison(gloss, s.N * 4);
            poison(gd, d.size() * 4);
            cuda_xent_fwd(gloss, gl, gt, s.N, s.V);
            cuda_xent_bwd(gd, gl, gt, scale, s.N, s.V);
            cuda_xent_bwd(gin, gin, gt, scale, s.N, s.V);   // in place
            char shape[80];
            snprintf(shape, sizeof shape, "N%lld V%d (20%% ignored)%s", (long long)s.N, s.V, vec ? "" : " one value at a time");
            compare("xent_fwd losses", shape, down(gloss, s.N), loss, TOL_RED);
            Vec gd_h = down(gd, d.size()), gin_h = down(gin, d.size());
            compare("xent_bwd dlogits", shape, gd_h, d, TOL_RED);
            check_bits("xent_bwd in place", shape, gin_h.data(), gd_h.data(), d.size() * 4);
        }
        cuda_set_xent_vec(-1);
    }
}

// Greedy decoding's pick against the CPU's scan, which must agree to the index: rows with their largest value
// repeated (the first wins), values drawn from few levels (many ties), all -inf, NaNs inside a row and at its
// start, and +inf.
static void test_argmax(void) {
    struct { int64_t N; int V; } sh[] = {{1, 1}, {1, 7}, {9, 1000}, {64, 50304}, {63, 50257}, {3, 100000}};
    for (auto s : sh) {
        seed(970 + s.N + s.V);
        Vec x(s.N * s.V);
        for (int64_t n = 0; n < s.N; n++) {
            float *r = x.data() + n * s.V;
            const int kind = (int)(n % 6);
            for (int j = 0; j < s.V; j++) r[j] = kind == 1 ? (float)(next_u64() % 4) : (float)nrand();
            if (kind == 0 && s.V > 2) { int a = (int)(next_u64() % s.V), b = (int)(next_u64() % s.V); r[a] = r[b] = 9; }
            if (kind == 2) for (int j = 0; j < s.V; j++) r[j] = -INFINITY;
            if (kind == 3) for (int j = 1; j < s.V; j += 3) r[j] = NAN;
            if (kind == 4) { r[0] = NAN; r[s.V - 1] = 50; }
            if (kind == 5) r[next_u64() % s.V] = INFINITY;
        }
        std::vector<int32_t> want(s.N), got(s.N);
        op_argmax_rows(want.data(), x.data(), s.N, s.V);
        Pool P;
        float *gx = P.up(x);
        int32_t *gb = P.i(s.N);
        poison(gb, s.N * 4);
        cuda_argmax_rows(gb, gx, s.N, s.V);
        cuda_to_host(got.data(), gb, s.N * sizeof(int32_t));
        char shape[64];
        snprintf(shape, sizeof shape, "N%lld V%d (ties, NaN, inf)", (long long)s.N, s.V);
        check_bits("argmax_rows", shape, got.data(), want.data(), s.N * sizeof(int32_t));
    }
}

// Soft targets (label smoothing, mixup): the CPU's ops on the same rows, with ignored rows, equal targets and
// lam 0 and 1 among them
static void test_xent_soft(void) {
    struct { int64_t N; int V; } sh[] = {{1, 7}, {65, 1000}, {256, 1000}, {63, 50257}};
    for (auto s : sh) {
        if (g_quick && s.N * s.V > 65 * 50304) continue;
        seed(950 + s.N + s.V);
        Vec logits = randn(s.N * s.V, 3), lam(s.N);
        for (int64_t n = 0; n < s.N; n++) logits[n * s.V + next_u64() % s.V] += 15;
        std::vector<int32_t> ta(s.N), tb(s.N);
        for (int64_t n = 0; n < s.N; n++) {
            ta[n] = n > 0 && urand() < 0.2 ? -1 : (int32_t)(next_u64() % s.V);
            tb[n] = n % 5 == 1 ? ta[n] < 0 ? 0 : ta[n] : (int32_t)(next_u64() % s.V);
            lam[n] = n % 7 == 2 ? 1.f : n % 7 == 3 ? 0.f : (float)urand();
        }
        float scale = 1.0f / s.N, eps = 0.1f;
        Vec loss(s.N), d(s.N * s.V);
        op_xent_soft_fwd(loss.data(), logits.data(), ta.data(), tb.data(), lam.data(), eps, s.N, s.V);
        op_xent_soft_bwd(d.data(), logits.data(), ta.data(), tb.data(), lam.data(), eps, scale, s.N, s.V);
        Pool P;
        int32_t *ga = P.up(ta), *gb = P.up(tb);
        float *glam = P.up(lam), *gl = P.up(logits), *gloss = P.f(s.N), *gd = P.f(d.size()), *gin = P.up(logits);
        poison(gloss, s.N * 4);
        poison(gd, d.size() * 4);
        cuda_xent_soft_fwd(gloss, gl, ga, gb, glam, eps, s.N, s.V);
        cuda_xent_soft_bwd(gd, gl, ga, gb, glam, eps, scale, s.N, s.V);
        cuda_xent_soft_bwd(gin, gin, ga, gb, glam, eps, scale, s.N, s.V);   // in place
        char shape[64];
        snprintf(shape, sizeof shape, "N%lld V%d eps 0.1 (20%% ignored)", (long long)s.N, s.V);
        compare("xent_soft_fwd losses", shape, down(gloss, s.N), loss, TOL_RED);
        Vec gd_h = down(gd, d.size()), gin_h = down(gin, d.size());
        compare("xent_soft_bwd dlogits", shape, gd_h, d, TOL_RED);
        check_bits("xent_soft_bwd in place", shape, gin_h.data(), gd_h.data(), d.size() * 4);
    }
}

// The fused classifier against the CPU's op_classifier_train (matmul, xent_fwd, xent_bwd, matmul_bwd), in all
// three GEMM modes
static void test_classifier(void) {
    // V 1000 and 50265 are not multiples of 64: in bf16 their rows are laid out padded (classifier.cuh)
    struct { int64_t N; int D, V; } sh[] = {{65, 64, 1000}, {300, 128, 50304}, {257, 96, 50265}};
    for (auto s : sh) {
        if (g_quick && s.V > 1000) continue;
        seed(950 + s.N + s.V);
        Vec h = randn(s.N * s.D), W = randn((int64_t)s.V * s.D, 0.2), dW0 = randn((int64_t)s.V * s.D, 1e-7);
        std::vector<int32_t> t(s.N);
        for (int64_t n = 0; n < s.N; n++) t[n] = n > 0 && urand() < 0.2 ? -1 : (int32_t)(next_u64() % s.V);
        float scale = 1.0f / s.N;
        Vec logits(s.N * s.V), loss(s.N), dx(s.N * s.D), dW = dW0;
        op_classifier_train(loss.data(), dx.data(), dW.data(), logits.data(), h.data(), W.data(), t.data(), scale, s.N,
                            s.D, s.V);
        for (int mode = 0; mode < 4; mode++) {   // 3: bf16 with the logits read one value at a time
            cuda_set_gemm_precision(mode < 3 ? mode : 2);
            cuda_set_xent_vec(mode != 3);
            Pool P;
            int32_t *gt = P.up(t);
            float *gh = P.up(h), *gW = P.up(W), *gdW = P.up(dW0), *gl = P.f(s.N * s.V), *gloss = P.f(s.N),
                  *gdx = P.f(s.N * s.D);
            poison(gloss, s.N * 4);
            poison(gdx, s.N * s.D * 4);
            cuda_classifier_train(gloss, gdx, gdW, gl, opnd_of(P, gh, h.size()), gW, gt, scale, s.N, s.D, s.V);
            const double tol = mode == 0 ? 1e-5 : mode == 1 ? 2e-3 : 1.5e-2;
            char shape[96];
            snprintf(shape, sizeof shape, "N%lld D%d V%d %s", (long long)s.N, s.D, s.V,
                     mode == 0 ? "fp32" : mode == 1 ? "tf32" : mode == 2 ? "bf16" : "bf16 scalar");
            compare("classifier losses", shape, down(gloss, s.N), loss, tol);
            compare("classifier dx", shape, down(gdx, s.N * s.D), dx, tol);
            compare("classifier dW+=", shape, down(gdW, dW.size()), dW, tol);
        }
        cuda_set_xent_vec(-1);
        cuda_set_gemm_precision(1);
    }
}
