// The checks of the HGRU2 recurrence (op_hgru_fwd/bwd against cuda_hgru_fwd/bwd: both forms, both scan
// directions, accumulation, and inputs whose dq cancels against a float64 recurrence), included by
// tests/test_gpu.cu after the helpers they use (Pool, gates_like, poisoned_rows, compare, TOL_RED); hgru_inputs
// serves its later checks and timings too.
#pragma once

struct HgruIn {
    int B, T, H, K, Dv;
    int64_t ldv, lddv, nqk, nv, no, ns, rows;
    Vec q, k, g, v, dout, S0;
};
static HgruIn hgru_inputs(int B, int T, int H, int K, int Dv, uint64_t s, bool steep = true) {
    HgruIn in;
    in.B = B; in.T = T; in.H = H; in.K = K; in.Dv = Dv;
    in.ldv = (int64_t)H * Dv + (T % 2 ? 5 : 4);   // v inside wider rows (as in the fused q/f/i projection),
                                                  // 16-byte aligned rows or not (the kernels copy either way)
    in.lddv = (int64_t)H * Dv + 3;
    in.rows = (int64_t)B * T;
    in.nqk = in.rows * H * K;
    in.nv = in.rows * in.ldv;
    in.no = in.rows * H * Dv;
    in.ns = (int64_t)B * H * K * Dv;
    seed(s);
    in.q = randn(in.nqk);
    // closed gates only in odd chunks of 64 steps (none without steep): there, 15 steps can sum past exp(-64)
    // and the tensor-core kernels take their elementwise path for a diagonal block; even chunks stay on
    // tensor cores
    const int64_t HK = (int64_t)H * K;
    gates_like(in.g, in.k, in.nqk, [&](size_t i) { return steep && (i / HK % T) / 64 % 2 == 1; });
    in.v = randn(in.nv);
    in.dout = randn(in.no);
    in.S0 = randn(in.ns);
    return in;
}

static void test_hgru_one(int B, int T, int H, int K, int Dv) {
    HgruIn in = hgru_inputs(B, T, H, K, Dv, 700 + B * 1000 + T * 7 + H * 3 + K + Dv);
    // CPU oracle: the plain recurrence (chunk 0), its most accurate form
    Vec o(in.no), ST(in.ns), o0(in.no);
    op_hgru_fwd(o.data(), ST.data(), in.q.data(), in.k.data(), in.g.data(), in.v.data(), in.ldv, in.S0.data(), B, T, H,
                K, Dv, 0, 0, 0);
    op_hgru_fwd(o0.data(), NULL, in.q.data(), in.k.data(), in.g.data(), in.v.data(), in.ldv, NULL, B, T, H, K, Dv, 0, 0, 0);
    Vec dq(in.nqk), dk(in.nqk), dg(in.nqk), dv0 = randn(in.rows * in.lddv), dv = dv0;
    op_hgru_bwd(dq.data(), dk.data(), dg.data(), dv.data(), in.lddv, in.dout.data(), in.q.data(), in.k.data(),
                in.g.data(), in.v.data(), in.ldv, B, T, H, K, Dv, 0, 0, 0);

    Pool P;
    float *gq = P.up(in.q), *gk = P.up(in.k), *gg = P.up(in.g), *gv = P.up(in.v), *gdo = P.up(in.dout),
          *gS0 = P.up(in.S0), *go = P.f(in.no), *gST = P.f(in.ns), *gX = P.up(in.S0), *go2 = P.f(in.no),
          *gdq = P.f(in.nqk), *gdk = P.f(in.nqk), *gdg = P.f(in.nqk),
          *gdv0 = P.up(poisoned_rows(dv0, in.rows, in.lddv, (int64_t)H * Dv)), *gdv = P.f(dv0.size());
    char shape[96];
    snprintf(shape, sizeof shape, "B%d T%d H%d K%d Dv%d", B, T, H, K, Dv);
    // both forms: chunk 0 the exact fp32 sweeps, chunk 64 the tensor-core kernels where the shape has them
    for (int chunk : {0, 64}) {
        const bool tc = cuda_hgru_tensor_cores(B, T, H, K, Dv, chunk);
        if (chunk && !tc) break;   // the same sweeps as chunk 0
        const double tol_o = tc ? 1e-2 : TOL_RED, tol_d = tc ? 1e-2 : 2e-5, tol_g = tc ? 3e-2 : 5e-5;
        char sh[128];
        snprintf(sh, sizeof sh, "%s %s", shape, tc ? "tensor cores" : "exact");
        poison(go, in.no * 4);
        poison(gST, in.ns * 4);
        cuda_hgru_fwd(go, gST, gq, gk, gg, gv, in.ldv, gS0, B, T, H, K, Dv, chunk, 0, 0);
        Vec go_h = down(go, in.no);
        compare("hgru_fwd o (S0)", sh, go_h, o, tol_o);
        compare("hgru_fwd ST", sh, down(gST, in.ns), ST, tol_o);
        // ST == S0: updated in place, the same bits
        poison(go2, in.no * 4);
        CK(cudaMemcpy(gX, gS0, in.ns * 4, cudaMemcpyDeviceToDevice));
        cuda_hgru_fwd(go2, gX, gq, gk, gg, gv, in.ldv, gX, B, T, H, K, Dv, chunk, 0, 0);
        Vec go2_h = down(go2, in.no), gX_h = down(gX, in.ns), gST_h = down(gST, in.ns);
        check_bits("hgru_fwd ST==S0 o", sh, go2_h.data(), go_h.data(), in.no * 4);
        check_bits("hgru_fwd ST==S0 state", sh, gX_h.data(), gST_h.data(), in.ns * 4);
        // no entering or leaving state
        poison(go, in.no * 4);
        cuda_hgru_fwd(go, NULL, gq, gk, gg, gv, in.ldv, NULL, B, T, H, K, Dv, chunk, 0, 0);
        compare("hgru_fwd o (S0 NULL)", sh, down(go, in.no), o0, tol_o);
        // backward
        poison(gdq, in.nqk * 4);
        poison(gdk, in.nqk * 4);
        poison(gdg, in.nqk * 4);
        CK(cudaMemcpy(gdv, gdv0, dv0.size() * 4, cudaMemcpyDeviceToDevice));
        cuda_hgru_bwd(gdq, gdk, gdg, gdv, in.lddv, gdo, gq, gk, gg, gv, in.ldv, B, T, H, K, Dv, chunk, 0, 0);
        compare("hgru_bwd dq", sh, down(gdq, in.nqk), dq, tol_d);
        compare("hgru_bwd dk", sh, down(gdk, in.nqk), dk, tol_d);
        compare("hgru_bwd dg", sh, down(gdg, in.nqk), dg, tol_g);
        compare("hgru_bwd dv (strided)", sh, down(gdv, dv.size()), dv, tol_d);
    }
}

// The reverse scan (reverse = 1) and the accumulating outputs (acc = 1) of a bidirectional mixer, which sums a
// causal and a reverse scan into one o and one set of gradients: against the CPU's plain recurrence, in both
// forms, with the tolerances of the causal checks. A reverse scan is a causal one on other data; in a sum of the
// two directions their independent errors add in quadrature, as the two outputs' norms do, so the relative
// error of the sum is that of each part. Both orders of the pair, so that each direction runs with acc 0 and 1.
struct HgruGrads {
    Vec dq, dk, dg, dv;
};
static void test_hgru_dir_one(int B, int T, int H, int K, int Dv) {
    HgruIn in = hgru_inputs(B, T, H, K, Dv, 1700 + B * 1000 + T * 7 + H * 3 + K + Dv);
    const float *q = in.q.data(), *k = in.k.data(), *g = in.g.data(), *v = in.v.data(), *dout = in.dout.data();
    // CPU oracle: the plain recurrence. rS: reverse with S0; r, c: reverse, causal; rc, cr: the other added (acc)
    Vec o_rS(in.no), ST_r(in.ns), o_r(in.no), o_c(in.no);
    op_hgru_fwd(o_rS.data(), ST_r.data(), q, k, g, v, in.ldv, in.S0.data(), B, T, H, K, Dv, 0, 1, 0);
    op_hgru_fwd(o_r.data(), NULL, q, k, g, v, in.ldv, NULL, B, T, H, K, Dv, 0, 1, 0);
    op_hgru_fwd(o_c.data(), NULL, q, k, g, v, in.ldv, NULL, B, T, H, K, Dv, 0, 0, 0);
    Vec o_cr = o_c, o_rc = o_r;
    op_hgru_fwd(o_cr.data(), NULL, q, k, g, v, in.ldv, NULL, B, T, H, K, Dv, 0, 1, 1);
    op_hgru_fwd(o_rc.data(), NULL, q, k, g, v, in.ldv, NULL, B, T, H, K, Dv, 0, 0, 1);
    const Vec dv0 = randn(in.rows * in.lddv);   // dv's gaps between rows keep these values
    auto cpu_bwd = [&](HgruGrads &d, int reverse, int acc) {
        op_hgru_bwd(d.dq.data(), d.dk.data(), d.dg.data(), d.dv.data(), in.lddv, dout, q, k, g, v, in.ldv, B, T, H, K,
                    Dv, 0, reverse, acc);
    };
    HgruGrads d_r = {Vec(in.nqk), Vec(in.nqk), Vec(in.nqk), dv0}, d_c = d_r;
    cpu_bwd(d_r, 1, 0);
    cpu_bwd(d_c, 0, 0);
    HgruGrads d_cr = d_c, d_rc = d_r;
    cpu_bwd(d_cr, 1, 1);
    cpu_bwd(d_rc, 0, 1);

    Pool P;
    float *gq = P.up(in.q), *gk = P.up(in.k), *gg = P.up(in.g), *gv = P.up(in.v), *gdo = P.up(in.dout),
          *gS0 = P.up(in.S0), *go = P.f(in.no), *gST = P.f(in.ns), *gdq = P.f(in.nqk), *gdk = P.f(in.nqk),
          *gdg = P.f(in.nqk), *gdv0 = P.up(poisoned_rows(dv0, in.rows, in.lddv, (int64_t)H * Dv)),
          *gdv = P.f(dv0.size());
    char shape[96];
    snprintf(shape, sizeof shape, "B%d T%d H%d K%d Dv%d", B, T, H, K, Dv);
    for (int chunk : {0, 64}) {
        const bool tc = cuda_hgru_tensor_cores(B, T, H, K, Dv, chunk);
        if (chunk && !tc) break;
        const double tol_o = tc ? 1e-2 : TOL_RED, tol_d = tc ? 1e-2 : 2e-5, tol_g = tc ? 3e-2 : 5e-5;
        char sh[128];
        snprintf(sh, sizeof sh, "%s %s", shape, tc ? "tensor cores" : "exact");
        auto fwd = [&](const float *S0, float *ST, int reverse, int acc) {
            cuda_hgru_fwd(go, ST, gq, gk, gg, gv, in.ldv, S0, B, T, H, K, Dv, chunk, reverse, acc);
        };
        poison(go, in.no * 4);
        poison(gST, in.ns * 4);
        fwd(gS0, gST, 1, 0);
        compare("hgru_fwd rev o (S0)", sh, down(go, in.no), o_rS, tol_o);
        compare("hgru_fwd rev ST", sh, down(gST, in.ns), ST_r, tol_o);
        poison(go, in.no * 4);
        fwd(NULL, NULL, 1, 0);
        compare("hgru_fwd rev o", sh, down(go, in.no), o_r, tol_o);
        fwd(NULL, NULL, 0, 1);
        compare("hgru_fwd rev, fwd+= o", sh, down(go, in.no), o_rc, tol_o);
        poison(go, in.no * 4);
        fwd(NULL, NULL, 0, 0);
        fwd(NULL, NULL, 1, 1);
        compare("hgru_fwd fwd, rev+= o", sh, down(go, in.no), o_cr, tol_o);

        auto bwd = [&](int reverse, int acc) {
            cuda_hgru_bwd(gdq, gdk, gdg, gdv, in.lddv, gdo, gq, gk, gg, gv, in.ldv, B, T, H, K, Dv, chunk, reverse, acc);
        };
        auto fresh = [&] {   // NaN where the first (acc = 0) call must write
            poison(gdq, in.nqk * 4);
            poison(gdk, in.nqk * 4);
            poison(gdg, in.nqk * 4);
            CK(cudaMemcpy(gdv, gdv0, dv0.size() * 4, cudaMemcpyDeviceToDevice));
        };
        auto check = [&](const char *what, const HgruGrads &d) {
            std::string w(what);
            compare((w + " dq").c_str(), sh, down(gdq, in.nqk), d.dq, tol_d);
            compare((w + " dk").c_str(), sh, down(gdk, in.nqk), d.dk, tol_d);
            compare((w + " dg").c_str(), sh, down(gdg, in.nqk), d.dg, tol_g);
            compare((w + " dv").c_str(), sh, down(gdv, dv0.size()), d.dv, tol_d);
        };
        fresh();
        bwd(1, 0);
        check("hgru_bwd rev", d_r);
        bwd(0, 1);
        check("hgru_bwd rev, fwd+=", d_rc);
        fresh();
        bwd(0, 0);
        bwd(1, 1);
        check("hgru_bwd fwd, rev+=", d_cr);
    }
}

// The backward on inputs that make dq cancel, as the authors' layer can (--mixer-layer lra): v nearly the same at
// every position (its biases), so the state is nearly of rank one, and do orthogonal to the ones and to o_t =
// S_t^T q~_t, as an output LayerNorm's backward makes it; then dq_t = S_t do_t is a small remainder of large
// terms (the cancellation printed: the 2-norm of |S_t| |do_t| over that of S_t do_t). Such inputs move the float32
// result by the cancellation times its rounding, on either backend, so both are measured against a float64
// recurrence, and the GPU's exact sweeps (chunk 0) are held to 4 times the error their method has in float32
// (floor 1e-6). For dq, dk and dv that is the CPU recurrence's own error. dg the sweeps form from dq and dk
// through the identity dg_t = sum_{s>=t} (q_s dq_s - k_s dk_s) over the whole sequence (a sum in double), which
// passes the error of dq and dk on, unscaled, to a smaller result: its error is that of the identity summed in
// double over the CPU recurrence's float32 dq and dk. The CPU's chunked form (the same identity over its own
// dq and dk, formed from the states at chunk boundaries) and its recurrence (dg from the states) are printed
// beside it: under cancellation both are more exact.
static void test_hgru_conditioning(double spread) {
    const int B = 2, T = 128, K = 128, Dv = 128;
    const int64_t rows = (int64_t)B * T, nqk = rows * K, nv = rows * Dv;
    seed(31);
    Vec q(nqk), k(nqk), g(nqk), v(nv), dout(nv);
    gates_like(g, k, nqk, [](size_t) { return false; });
    for (auto &x : q) x = (float)(sqrt((double)K) / (1 + exp(-nrand())));   // sqrt(K) sigmoid, the lra layer's q
    for (int b = 0; b < B; b++) {
        std::vector<double> vbar(Dv);
        for (auto &x : vbar) x = nrand();
        for (int64_t i = 0; i < (int64_t)T * Dv; i++) {
            const double x = vbar[i % Dv] + spread * nrand();
            v[(int64_t)b * T * Dv + i] = (float)(x / (1 + exp(-x)));               // silu
        }
    }
    // the float64 recurrence: the states forward (do drawn as each o_t appears), then the backward with dg formed
    // from the states, dg_t = a_t sum_j dS_t S_{t-1}
    std::vector<double> rdq(nqk), rdk(nqk), rdg(nqk), rdv(nv), S((size_t)(T + 1) * K * Dv), dS((size_t)K * Dv);
    const double sc = 1 / sqrt((double)K);
    double big = 0, small = 0;
    for (int b = 0; b < B; b++) {
        const int64_t r0 = (int64_t)b * T;   // S's first block, the zero entering state, is never written
        for (int t = 0; t < T; t++) {
            const int64_t r = r0 + t;
            const double *Sp = &S[(size_t)t * K * Dv];
            double *St = &S[(size_t)(t + 1) * K * Dv];
            std::vector<double> o(Dv, 0.0), d(Dv);
            for (int i = 0; i < K; i++)
                for (int j = 0; j < Dv; j++) {
                    St[i * Dv + j] = exp((double)g[r * K + i]) * Sp[i * Dv + j] + (double)k[r * K + i] * v[r * Dv + j];
                    o[j] += St[i * Dv + j] * q[r * K + i] * sc;
                }
            double om = 0, dm = 0, oo = 0, od = 0;
            for (int j = 0; j < Dv; j++) { om += o[j] / Dv; d[j] = nrand(); dm += d[j] / Dv; }
            for (int j = 0; j < Dv; j++) { o[j] -= om; d[j] -= dm; oo += o[j] * o[j]; od += o[j] * d[j]; }
            for (int j = 0; j < Dv; j++) dout[r * Dv + j] = (float)(d[j] - od / oo * o[j]);
        }
        std::fill(dS.begin(), dS.end(), 0.0);
        for (int t = T - 1; t >= 0; t--) {
            const int64_t r = r0 + t;
            const double *Sp = &S[(size_t)t * K * Dv], *St = Sp + (size_t)K * Dv;
            for (int i = 0; i < K; i++) {
                const double an = t + 1 < T ? exp((double)g[(r + 1) * K + i]) : 1;
                double a = 0, a1 = 0, bk = 0, c = 0;
                for (int j = 0; j < Dv; j++) {
                    double &x = dS[i * Dv + j];
                    x = an * x + q[r * K + i] * sc * dout[r * Dv + j];
                    a += St[i * Dv + j] * dout[r * Dv + j];
                    a1 += fabs(St[i * Dv + j] * dout[r * Dv + j]);
                    bk += x * v[r * Dv + j];
                    c += x * Sp[i * Dv + j];
                }
                rdq[r * K + i] = a * sc;
                rdk[r * K + i] = bk;
                rdg[r * K + i] = exp((double)g[r * K + i]) * c;
                big += a1 * a1;
                small += a * a;
            }
            for (int j = 0; j < Dv; j++) {
                double s = 0;
                for (int i = 0; i < K; i++) s += dS[i * Dv + j] * k[r * K + i];
                rdv[r * Dv + j] = s;
            }
        }
    }
    auto err = [](const Vec &x, const std::vector<double> &ref) {
        double e = 0, n = 0;
        for (size_t i = 0; i < ref.size(); i++) e += (x[i] - ref[i]) * (x[i] - ref[i]), n += ref[i] * ref[i];
        return sqrt(e / n);
    };
    // the CPU's float32 errors: its recurrence (chunk 0) and its chunked form (dg through the identity)
    Vec cq(nqk), ck(nqk), cg(nqk), cv(nv), hq(nqk), hk(nqk), hg(nqk), hv(nv);
    op_hgru_bwd(cq.data(), ck.data(), cg.data(), cv.data(), Dv, dout.data(), q.data(), k.data(), g.data(), v.data(), Dv,
                B, T, 1, K, Dv, 0, 0, 0);
    op_hgru_bwd(hq.data(), hk.data(), hg.data(), hv.data(), Dv, dout.data(), q.data(), k.data(), g.data(), v.data(), Dv,
                B, T, 1, K, Dv, 64, 0, 0);
    // the identity over the whole length, in double, from the recurrence's float32 dq and dk
    Vec ig(nqk);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < K; i++) {
            double acc = 0;
            for (int t = T - 1; t >= 0; t--) {
                const int64_t o = ((int64_t)b * T + t) * K + i;
                acc += (double)q[o] * cq[o] - (double)k[o] * ck[o];
                ig[o] = (float)acc;
            }
        }
    Pool P;
    float *gq = P.up(q), *gk = P.up(k), *gg = P.up(g), *gv = P.up(v), *gdo = P.up(dout), *gdq = P.f(nqk),
          *gdk = P.f(nqk), *gdg = P.f(nqk), *gdv = P.f(nv);
    poison(gdq, nqk * 4); poison(gdk, nqk * 4); poison(gdg, nqk * 4); poison(gdv, nv * 4);
    cuda_hgru_bwd(gdq, gdk, gdg, gdv, Dv, gdo, gq, gk, gg, gv, Dv, B, T, 1, K, Dv, 0, 0, 0);
    char sh[96], note[160];
    snprintf(sh, sizeof sh, "B%d T%d K%d Dv%d, cancels %.0fx", B, T, K, Dv, sqrt(big / small));
    const struct { const char *op; float *d; const Vec &cpu; const std::vector<double> &ref; } outs[] = {
        {"hgru_bwd dq vs float64", gdq, cq, rdq}, {"hgru_bwd dk vs float64", gdk, ck, rdk},
        {"hgru_bwd dv vs float64", gdv, cv, rdv}, {"hgru_bwd dg vs float64", gdg, ig, rdg}};
    for (const auto &o : outs) {
        const double ce = err(o.cpu, o.ref), tol = std::max(4 * ce, 1e-6);
        if (o.d == gdg)
            snprintf(note, sizeof note, "  (the identity in float32: %.2e; the CPU's chunked form %.2e, recurrence %.2e)",
                     ce, err(hg, rdg), err(cg, rdg));
        else
            snprintf(note, sizeof note, "  (the CPU's float32: %.2e)", ce);
        const Vec ref(o.ref.begin(), o.ref.end());
        compare_to(o.op, sh, down(o.d, o.ref.size()), ref, ref, tol, note);
    }
}

static void test_hgru(void) {
    struct { int B, T, H, K, Dv; } cf[] = {
        // D = 768 (H = 6 heads of 128), every T boundary around the chunk of 64
        {2, 1, 6, 128, 128}, {64, 1, 16, 128, 128}, {64, 1, 3, 20, 300}, {2, 63, 6, 128, 128}, {2, 64, 6, 128, 128}, {2, 65, 6, 128, 128}, {1, 2048, 2, 128, 128},
        // D = 256 and 128
        {2, 65, 4, 64, 64}, {1, 2048, 4, 64, 64}, {3, 64, 1, 128, 128}, {2, 65, 2, 64, 64},
        // tiny and uneven heads (LRA-like K = 4, K = 1), K != Dv both ways, large K or Dv
        {3, 65, 16, 4, 4}, {2, 63, 3, 4, 8}, {2, 33, 4, 1, 1}, {2, 65, 2, 128, 64}, {2, 64, 2, 32, 96},
        // one thread per head (K = Dv = 1, 2, 4): T 1, steps not a multiple of the loads grouped per step
        // (16, 8, 4), more heads than a block of 32 or 128, long sequences; K = Dv = 8 (the sweeps)
        {3, 1, 5, 2, 2}, {2, 70, 50, 2, 2}, {2, 37, 7, 8, 8}, {5, 129, 33, 1, 1}, {1, 2048, 16, 4, 4}, {2, 67, 9, 4, 4},
        {600, 33, 64, 2, 2},
        // ... and in chunks of 64 steps (ListOps' heads of 4; exactly two chunks; a last chunk of one step)
        {2, 128, 3, 2, 2}, {3, 200, 7, 4, 4}, {2, 1000, 5, 2, 2}, {1, 4096, 16, 4, 4}, {2, 193, 9, 1, 1},
        // groups of lanes (K or Dv of 16) with a thread dim of one group: the rest of the warp only stages
        {2, 65, 3, 16, 4}, {2, 65, 3, 4, 16},
        {2, 70, 2, 20, 300}, {1, 100, 1, 256, 256}, {1, 40, 1, 300, 20}};
    for (auto c : cf)
        if (!g_quick || (int64_t)c.B * c.T * c.H * c.K * c.Dv <= 2 * 65 * 6 * 128 * 128) {
            // small heads over 128 steps or more: both the one-thread sweeps and the chunks of time
            const bool both = c.K == c.Dv && c.K <= 4 && c.T >= 128;
            for (int mode = both ? 0 : -1; mode <= (both ? 1 : -1); mode++) {
                if (both) printf("-- small heads, chunks of time %s\n", mode ? "on" : "off");
                cuda_hgru_small_chunks(mode);
                test_hgru_one(c.B, c.T, c.H, c.K, c.Dv);
                test_hgru_dir_one(c.B, c.T, c.H, c.K, c.Dv);
            }
            cuda_hgru_small_chunks(-1);
        }
    // the two directions at T 4096 as well (64 chunks of 64)
    if (!g_quick) {
        test_hgru_dir_one(1, 4096, 2, 128, 128);
        test_hgru_dir_one(1, 4096, 4, 64, 64);
    }
    for (double spread : {0.1, 0.03, 0.01}) test_hgru_conditioning(spread);
}
