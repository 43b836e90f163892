// The timings of test_gpu (--bench: the token mixer, the classifier, the products and decoding; --bench-decode:
// decoding's products and step alone), included by tests/test_gpu.cu after its checks, whose helpers (Pool,
// randn, hgru_inputs, ...) they use. Each figure is the median of 20 runs after a warm-up, timed with events on
// the legacy default stream, which orders against the ops' stream.
#pragma once

static double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

template <typename F> static double time_ms(F f, int warm = 3, int reps = 20) {
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    for (int i = 0; i < warm; i++) f();
    cuda_sync();
    std::vector<double> ts;
    for (int i = 0; i < reps; i++) {
        cuda_sync();
        CK(cudaEventRecord(a, 0));   // the legacy default stream orders against the ops' stream
        f();
        CK(cudaEventRecord(b, 0));
        CK(cudaEventSynchronize(b));
        float ms;
        CK(cudaEventElapsedTime(&ms, a, b));
        ts.push_back(ms);
    }
    CK(cudaEventDestroy(a));
    CK(cudaEventDestroy(b));
    return median(ts);
}

// The training classifier at the language models' block (1024 rows, V 50304, D 768 and 2048): the whole op with
// its pass over the logits in float4s and one value at a time, its logits product alone, and xent_fwd both ways
static void bench_classifier(void) {
    const int64_t N = 1024;
    const int V = 50304;
    cuda_set_gemm_precision(2);
    for (int D : {768, 2048}) {
        Pool Q;
        std::vector<int32_t> t(N);
        for (auto &x : t) x = (int32_t)(next_u64() % V);
        int32_t *gt = Q.up(t);
        float *W = Q.up(randn((size_t)V * D, 0.02)), *dW = Q.f((size_t)V * D), *lg = Q.f(N * V), *loss = Q.f(N),
              *dx = Q.f(N * D);
        void *h = opnd_of(Q, Q.up(randn(N * D)), N * D);
        cuda_zero(dW, (int64_t)V * D);
        const double fl = 2.0 * N * D * V;
        const double tl = time_ms([&] { cuda_matmul_fwd(lg, h, W, N, D, V); });
        printf("classifier N%lld D%d V%d bf16: logits product alone %7.3f ms %6.1f TFLOP/s\n", (long long)N, D, V, tl,
               fl / tl * 1e-9);
        for (int vec : {1, 0}) {
            cuda_set_xent_vec(vec);
            const double tc = time_ms([&] { cuda_classifier_train(loss, dx, dW, lg, h, W, gt, 1.f / N, N, D, V); });
            printf("classifier N%lld D%d V%d bf16, logits read %s: %7.3f ms %6.1f TFLOP/s\n", (long long)N, D, V,
                   vec ? "in float4s" : "a value at a time", tc, 3 * fl / tc * 1e-9);
        }
        for (int vec : {1, 0}) {
            cuda_set_xent_vec(vec);
            const double tx = time_ms([&] { cuda_xent_fwd(loss, lg, gt, N, V); });
            printf("classifier N%lld V%d: xent_fwd alone (one read of the logits, %s) %7.3f ms %7.1f GB/s\n",
                   (long long)N, V, vec ? "in float4s" : "a value at a time", tx, 4.0 * N * V / tx * 1e-6);
        }
        cuda_set_xent_vec(-1);
    }
    cuda_set_gemm_precision(1);
}

// decoding's products and step (part of --bench; --bench-decode runs it alone)
static void bench_decode(Pool &P) {
    {   // decoding's products (bf16, a few rows): the streaming kernel against cuBLAS, in GB/s of the weights read
        cuda_set_gemm_precision(2);
        const int dsh[][3] = {{1, 2048, 6144}, {1, 2048, 2048}, {1, 5632, 2048}, {1, 2048, 50304}, {8, 2048, 6144}, {1, 512, 1536}};
        for (auto d : dsh) {
            const int n = d[0], I = d[1], O = d[2];
            float *W = P.up(randn((size_t)O * I, 0.05)), *yd = P.f((size_t)n * O);
            void *xd = opnd_buf(P, (size_t)n * I);
            cuda_to_opnd(xd, P.up(randn((size_t)n * I)), (int64_t)n * I);
            double tg[2];
            for (int on = 0; on < 2; on++) {
                cuda_set_gemv(on);
                tg[on] = time_ms([&] { cuda_matmul_fwd(yd, xd, W, n, I, O); });
            }
            cuda_set_gemv(-1);
            printf("decode matmul N%d I%d O%d bf16: %7.4f ms %7.1f GB/s (cuBLAS %7.4f ms %7.1f GB/s)\n", n, I, O, tg[1],
                   2.0 * O * I / tg[1] * 1e-6, tg[0], 2.0 * O * I / tg[0] * 1e-6);
        }
        // the fused products against the ops they replace (an RMSNorm, or SwiGLU, then the product, then the
        // residual's add in the next norm), and the step with its gates against the gates op and the recurrence
        const int fsh[][4] = {{1, 2048, 6144, OP_PRO_RMSNORM}, {1, 5632, 2048, OP_PRO_SWIGLU}, {8, 2048, 6144, OP_PRO_RMSNORM},
                              {8, 5632, 2048, OP_PRO_SWIGLU}};
        for (auto d : fsh) {
            const int n = d[0], I = d[1], O = d[2], pro = d[3], win = pro == OP_PRO_SWIGLU ? 2 * I : I;
            float *W = P.up(randn((size_t)O * I, 0.05)), *yd = P.f((size_t)n * O), *res = P.up(randn((size_t)n * O)),
                  *xf = P.up(randn((size_t)n * win)), *nw = P.up(randn(I, 0.1, 1)), *rs = P.f(n);
            void *xo = opnd_buf(P, (size_t)n * win), *tmp = opnd_buf(P, (size_t)n * I);
            cuda_to_opnd(xo, xf, (int64_t)n * win);
            const void *in = pro == OP_PRO_RMSNORM ? (const void *)xf : xo;
            const double tf = time_ms([&] { cuda_matmul_fused_fwd(yd, 0, in, pro, nw, 1e-5, W, res, tmp, n, I, O); });
            const double tu = time_ms([&] {
                if (pro == OP_PRO_RMSNORM) cuda_rmsnorm_fwd(tmp, rs, xf, res, nw, n, I, 1e-5);
                else cuda_swiglu_fwd(tmp, xo, n, I);
                cuda_matmul_fwd(yd, tmp, W, n, I, O);
            });
            printf("decode fused %s N%d I%d O%d bf16: %7.4f ms %7.1f GB/s (the ops: %7.4f ms)\n",
                   pro == OP_PRO_RMSNORM ? "rmsnorm+matmul" : "swiglu+matmul+res", n, I, O, tf, 2.0 * O * I / tf * 1e-6, tu);
        }
        {   // a decoding step's products as the 1.13B model runs them (D 2048, MLP 5632, 16 heads of 128), six layers
            // of their own weights (620 MB of bf16, far more than L2 holds), back to back as dependent launches: the
            // weights come from memory as in decoding, and the launches and their ends overlap as there.
            const int D = 2048, F = 5632, L = 6;
            struct { float *qfv, *wo, *gu, *dn, *n1, *n2; } ly[L];
            for (auto &l : ly) {
                l.qfv = P.up(randn((size_t)3 * D * D, 0.02));
                l.wo = P.up(randn((size_t)D * D, 0.02));
                l.gu = P.up(randn((size_t)2 * F * D, 0.02));
                l.dn = P.up(randn((size_t)D * F, 0.02));
                l.n1 = P.up(randn(D, 0.1, 1));
                l.n2 = P.up(randn(D, 0.1, 1));
            }
            float *xs = P.up(randn(D)), *qkv = P.f(3 * D);
            void *gu = opnd_buf(P, 2 * F), *tmp = opnd_buf(P, F), *ob = opnd_buf(P, D);
            cuda_to_opnd(ob, P.up(randn(D)), D);
            auto stack = [&] {
                for (auto &l : ly) {
                    cuda_matmul_fused_fwd(qkv, 0, xs, OP_PRO_RMSNORM, l.n1, 1e-5, l.qfv, NULL, tmp, 1, D, 3 * D);
                    cuda_matmul_fused_fwd(xs, 0, ob, OP_PRO_NONE, NULL, 1e-5, l.wo, xs, tmp, 1, D, D);
                    cuda_matmul_fused_fwd(gu, 1, xs, OP_PRO_RMSNORM, l.n2, 1e-5, l.gu, NULL, tmp, 1, D, 2 * F);
                    cuda_matmul_fused_fwd(xs, 0, gu, OP_PRO_SWIGLU, NULL, 1e-5, l.dn, xs, tmp, 1, F, D);
                }
            };
            const double bytes = 2.0 * L * ((double)3 * D * D + (double)D * D + 2.0 * F * D + (double)D * F);
            const double tl = time_ms(stack);
            printf("decode products, %d layers of D%d F%d, L2-cold: %7.4f ms %7.1f GB/s\n", L, D, F, tl, bytes / tl * 1e-6);
        }
        for (int B : {1, 64}) {
            const int H = 16, K = 128, Dv = 128, HK = H * K;
            const int64_t ld = 2 * HK + H * Dv;
            float *qfi = P.up(randn(B * ld)), *S = P.up(randn((size_t)B * HK * Dv, 0.1)), *o = P.f((size_t)B * H * Dv),
                  *q = P.f((size_t)B * HK), *k = P.f((size_t)B * HK), *g = P.f((size_t)B * HK), *lb = P.up(randn(HK, 0.1, 0.5));
            cuda_set_step4(0);
            const double t1 = time_ms([&] { cuda_hgru_step_fwd(o, S, q, k, g, qfi, ld, lb, B, H, K, Dv); });
            cuda_set_step4(1);
            const double tf = time_ms([&] { cuda_hgru_step_fwd(o, S, q, k, g, qfi, ld, lb, B, H, K, Dv); });
            if (B * H >= 128) printf("decode step with gates B%d, a column a thread: %7.4f ms %7.1f GB/s of state\n", B, t1,
                                     8.0 * B * HK * Dv / t1 * 1e-6);
            const double tu = time_ms([&] {
                cuda_gates_fwd(q, k, g, qfi, ld, lb, B, HK);
                cuda_hgru_fwd(o, S, q, k, g, qfi + 2 * HK, ld, S, B, 1, H, K, Dv, 0, 0, 0);
            });
            printf("decode step with gates B%d H%d K%d Dv%d: %7.4f ms %7.1f GB/s of state (the ops: %7.4f ms)\n", B, H, K,
                   Dv, tf, 8.0 * B * HK * Dv / tf * 1e-6, tu);
        }
        cuda_set_gemm_precision(1);
    }
}

// The token mixer alone (--bench-mixer; also the start of --bench): the chunked form at the three op shapes of
// the README's token-mixer table, and both directions against two causal passes.
static void bench_mixer(bool exact) {
    // the three op shapes of the README's token-mixer table (docs/kernels.md, Performance), K = Dv = 128
    const int shapes[3][3] = {{8, 2048, 6}, {4, 2048, 16}, {16, 1024, 6}};
    for (int si = 0; si < 3; si++) {
        const int B = shapes[si][0], T = shapes[si][1], H = shapes[si][2], K = 128, Dv = 128;
        HgruIn in = hgru_inputs(B, T, H, K, Dv, 1200 + si, false);   // gates as a trained model's, mostly open
        Pool P;
        float *q = P.up(in.q), *k = P.up(in.k), *g = P.up(in.g), *v = P.up(in.v), *dout = P.up(in.dout),
              *o = P.f(in.no), *dq = P.f(in.nqk), *dk = P.f(in.nqk), *dg = P.f(in.nqk), *dv = P.f(in.rows * in.lddv);
        auto fwd = [&] { cuda_hgru_fwd(o, NULL, q, k, g, v, in.ldv, NULL, B, T, H, K, Dv, 64, 0, 0); };
        auto fwdbwd = [&] {
            fwd();
            cuda_hgru_bwd(dq, dk, dg, dv, in.lddv, dout, q, k, g, v, in.ldv, B, T, H, K, Dv, 64, 0, 0);
        };
        double nqk = (double)in.nqk, nvo = (double)in.no;
        double fbytes = 4 * (3 * nqk + 2 * nvo);                    // q, k, g, v in; o out
        double bbytes = fbytes + 4 * (3 * nqk + 2 * nvo + 3 * nqk + nvo);   // + q, k, g, v, do in; dq, dk, dg, dv out
        double tf = time_ms(fwd), tb = time_ms(fwdbwd);
        printf("hgru fwd      B%d T%d H%d K%d Dv%d: %8.3f ms  %7.1f GB/s\n", B, T, H, K, Dv, tf, fbytes / tf * 1e-6);
        printf("hgru fwd+bwd  B%d T%d H%d K%d Dv%d: %8.3f ms  %7.1f GB/s\n", B, T, H, K, Dv, tb, bbytes / tb * 1e-6);
    }
    {   // a bidirectional mixer (causal, then reverse with acc) against two causal passes (the second with acc)
        const int B = 8, T = 2048, H = 6, K = 128, Dv = 128;
        HgruIn in = hgru_inputs(B, T, H, K, Dv, 1210, false);
        Pool P;
        float *q = P.up(in.q), *k = P.up(in.k), *g = P.up(in.g), *v = P.up(in.v), *dout = P.up(in.dout),
              *o = P.f(in.no), *dq = P.f(in.nqk), *dk = P.f(in.nqk), *dg = P.f(in.nqk), *dv = P.f(in.rows * in.lddv);
        for (int chunk : {64, 0}) {
            if (chunk == 0 && !exact) continue;
            auto fwd = [&](int rev2) {
                cuda_hgru_fwd(o, NULL, q, k, g, v, in.ldv, NULL, B, T, H, K, Dv, chunk, 0, 0);
                cuda_hgru_fwd(o, NULL, q, k, g, v, in.ldv, NULL, B, T, H, K, Dv, chunk, rev2, 1);
            };
            auto fwdbwd = [&](int rev2) {
                fwd(rev2);
                cuda_hgru_bwd(dq, dk, dg, dv, in.lddv, dout, q, k, g, v, in.ldv, B, T, H, K, Dv, chunk, 0, 0);
                cuda_hgru_bwd(dq, dk, dg, dv, in.lddv, dout, q, k, g, v, in.ldv, B, T, H, K, Dv, chunk, rev2, 1);
            };
            double tf2 = time_ms([&] { fwd(0); }), tfb = time_ms([&] { fwd(1); });
            double tb2 = time_ms([&] { fwdbwd(0); }), tbb = time_ms([&] { fwdbwd(1); });
            const char *form = chunk ? "chunk 64" : "exact";
            printf("hgru bidir fwd      B%d T%d H%d K%d Dv%d %s: %8.3f ms (two causal passes %8.3f ms: x%.2f)\n", B, T, H,
                   K, Dv, form, tfb, tf2, tfb / tf2);
            printf("hgru bidir fwd+bwd  B%d T%d H%d K%d Dv%d %s: %8.3f ms (two causal passes %8.3f ms: x%.2f)\n", B, T, H,
                   K, Dv, form, tbb, tb2, tbb / tb2);
        }
    }
}

static void bench(void) {
    printf("-- bench on %s (median of 20 after warm-up)\n", cuda_device_name());
    bench_mixer(true);
    {   // causal attention at the 162M Transformer++'s shape (D 768 = 12 heads of 64, B 16 x T 2048), the model's
        // layout: q, k and v in one [B,T,3D] fp32 matrix. cuDNN (bf16, conversions included) and the fp32 kernels.
        const int B = 16, T = 2048, H = 12, hd = 64;
        const int64_t D = (int64_t)H * hd, ld = 3 * D, rows = (int64_t)B * T;
        seed(1220);
        Pool P;
        float *qkv = P.up(randn(rows * ld)), *dout = P.up(randn(rows * D)), *o = P.f(rows * D), *lse = P.f(rows * H),
              *d = P.f(rows * ld);
        // useful work of causal attention: q k^T and p v over the T (T + 1) / 2 pairs, 2 hd FLOPs each; the
        // backward redoes q k^T and adds four products (dp, dv, dq, dk): 2.5 times the forward
        const double fl = 4.0 * B * H * hd * ((double)T * (T + 1) / 2);
        cuda_set_gemm_precision(2);
        for (int path : {1, 0}) {
            if (path == 1 && !cuda_attention_cudnn_built()) continue;
            cuda_attention_path(path);
            auto fwd = [&] { cuda_attention_fwd(o, lse, qkv, ld, qkv + D, qkv + 2 * D, ld, T * ld, B, T, T, H, hd); };
            auto fwdbwd = [&] {
                fwd();
                cuda_attention_bwd(d, d + D, d + 2 * D, ld, dout, qkv, qkv + D, qkv + 2 * D, ld, o, lse, B, T, H, hd);
            };
            const int reps = path ? 20 : 3;
            double tf = time_ms(fwd, 1, reps), tb = time_ms(fwdbwd, 1, reps);
            const char *name = path ? "cudnn bf16" : "kernel fp32";
            printf("attention fwd      B%d T%d H%d hd%d %s: %8.3f ms  %6.1f TFLOP/s\n", B, T, H, hd, name, tf,
                   fl / tf * 1e-9);
            printf("attention fwd+bwd  B%d T%d H%d hd%d %s: %8.3f ms  %6.1f TFLOP/s\n", B, T, H, hd, name, tb,
                   3.5 * fl / tb * 1e-9);
        }
        cuda_attention_path(-1);
        cuda_set_gemm_precision(1);
    }
    const int B = 8, T = 2048;
    Pool P;

    // a few other ops at the same scale (D = 768, N = B*T)
    const int64_t N = (int64_t)B * T;
    const int D = 768, V = 50304;
    seed(1201);
    std::vector<int32_t> ids(N);
    for (auto &id : ids) id = (int32_t)(next_u64() % V);
    int32_t *gid = P.up(ids);
    float *dx = P.up(randn(N * D)), *dE = P.f((size_t)V * D);
    cuda_zero(dE, (int64_t)V * D);
    double te = time_ms([&] { cuda_embed_bwd(dE, dx, gid, N, D, V); });
    printf("embed_bwd     N%lld D%d V%d: %8.3f ms\n", (long long)N, D, V, te);
    {   // ListOps' batch (128 x 2048 tokens, D 64, 18 ids): the shared-memory table against the sort
        const int64_t NL = 128 * 2048;
        const int DL = 64, VL = 18;
        std::vector<int32_t> il(NL);
        for (auto &id : il) id = (int32_t)(next_u64() % VL);
        int32_t *gil = P.up(il);
        float *dxl = P.up(randn(NL * DL)), *dEl = P.f((size_t)VL * DL);
        cuda_zero(dEl, (int64_t)VL * DL);
        double tt = time_ms([&] { cuda_embed_bwd(dEl, dxl, gil, NL, DL, VL); });
        cuda_embed_small_table(0);
        double ts = time_ms([&] { cuda_embed_bwd(dEl, dxl, gil, NL, DL, VL); });
        cuda_embed_small_table(-1);
        printf("embed_bwd     N%lld D%d V%d: %8.3f ms with the table, %8.3f ms sorted  %7.1f / %7.1f GB/s\n",
               (long long)NL, DL, VL, tt, ts, 4.0 * NL * (DL + 1) / tt * 1e-6, 4.0 * NL * (DL + 1) / ts * 1e-6);
    }
    float *x = P.up(randn(N * D)), *w = P.up(randn(D)), *dy = P.up(randn(N * D)), *ddx = P.up(randn(N * D)),
          *dw = P.f(D), *rs = P.f(N), *res = P.up(randn(N * D));
    cuda_zero(dw, D);
    // as the model calls them: the forward adds the residual in place and writes a bf16 operand (x, res in; x, y
    // out), the backward adds into the residual gradient with rstd saved (dy, x, dx in; dx out)
    cuda_set_gemm_precision(2);
    void *y16 = opnd_buf(P, N * D);
    double tn = time_ms([&] { cuda_rmsnorm_fwd(y16, rs, x, res, w, N, D, 1e-6); });
    cuda_set_gemm_precision(1);
    printf("rmsnorm_fwd   N%lld C%d res, bf16 y: %8.3f ms  %7.1f GB/s\n", (long long)N, D, tn,
           (4.0 * 3 + 2) * N * D / tn * 1e-6);
    double tr = time_ms([&] { cuda_rmsnorm_bwd(ddx, 1, dw, dy, x, w, rs, N, D, 1e-6); });
    printf("rmsnorm_bwd   N%lld C%d acc:  %8.3f ms  %7.1f GB/s\n", (long long)N, D, tr, 4.0 * 4 * N * D / tr * 1e-6);
    const int64_t NX = 2048;
    float *lg = P.up(randn(NX * V)), *loss = P.f(NX);
    std::vector<int32_t> t(NX);
    for (auto &x : t) x = (int32_t)(next_u64() % V);
    int32_t *gt = P.up(t);
    double tx = time_ms([&] { cuda_xent_fwd(loss, lg, gt, NX, V); });
    printf("xent_fwd      N%lld V%d: %8.3f ms  %7.1f GB/s\n", (long long)NX, V, tx, 4.0 * NX * V / tx * 1e-6);
    bench_decode(P);
    {   // the training classifier (bf16) at a vocabulary that is a multiple of 64 and at one that is not: the
        // padded layout's point is that the two cost the same per useful FLOP (three products of 2 N D V each)
        const int64_t NC = 1024;
        const int DC = 512;
        Pool Q;
        cuda_set_gemm_precision(2);
        for (int VC : {50304, 50265}) {
            std::vector<int32_t> tc(NC);
            for (auto &x : tc) x = (int32_t)(next_u64() % VC);
            int32_t *gtc = Q.up(tc);
            float *hW = Q.up(randn((size_t)VC * DC, 0.02)), *hdW = Q.f((size_t)VC * DC), *hl = Q.f(NC * VC),
                  *hloss = Q.f(NC), *hdx = Q.f(NC * DC);
            void *hh = opnd_of(Q, Q.up(randn(NC * DC)), NC * DC);
            cuda_zero(hdW, (int64_t)VC * DC);
            double tc_ms = time_ms([&] { cuda_classifier_train(hloss, hdx, hdW, hl, hh, hW, gtc, 1.f / NC, NC, DC, VC); });
            printf("classifier    N%lld D%d V%d bf16: %8.3f ms  %7.1f TFLOP/s\n", (long long)NC, DC, VC, tc_ms,
                   6.0 * NC * DC * VC / tc_ms * 1e-9);
        }
        cuda_set_gemm_precision(1);
    }
    bench_classifier();
    float *W = P.up(randn((size_t)D * D, 0.05));
    double tm = time_ms([&] { cuda_matmul_fwd(ddx, x, W, N, D, D); });
    printf("matmul_fwd    N%lld I%d O%d tf32: %8.3f ms  %7.1f TFLOP/s\n", (long long)N, D, D, tm,
           2.0 * N * D * D / tm * 1e-9);
}
