// The checks of the Transformer++'s ops (rotary positions, causal softmax attention in its training and
// decoding forms, on cuDNN and on the kernels of its own, the key/value cache's append) against the CPU,
// included by tests/test_gpu.cu after the helpers they use (Pool, poisoned_rows, compare, check_bits).
#pragma once

// Rotary positions: rows of stride ldx, the first H hd columns rotated in place, the rest untouched (the model
// turns q and k, 2H heads, in rows of [q | k | v]). pos0 up to a million: the angles are made in double on
// both sides, so the rotation agrees to the rounding of each result (TOL_EW).
static void test_rope(void) {
    struct { int B, T, H, hd, pos0; int64_t ldx; } sh[] = {
        {1, 1, 1, 2, 0, 2},  {2, 63, 4, 64, 0, 4 * 64 + 5}, {2, 65, 2 * 3, 128, 0, 3 * 3 * 128},
        {3, 7, 2, 32, 100, 3 * 32}, {1, 200, 4, 48, 1000000, 4 * 48 + 1}, {4, 2048, 12, 64, 0, 18 * 64}};
    for (auto s : sh) {
        const int64_t rows = (int64_t)s.B * s.T, n = rows * s.ldx;
        if (g_quick && n > 100000) continue;
        seed(3000 + s.B * 7 + s.T * 3 + s.H + s.hd + s.pos0 % 97);
        const Vec x = randn(n);
        Vec xf = x, xb = x;
        op_rope_fwd(xf.data(), s.ldx, s.B, s.T, s.H, s.hd, s.pos0, 10000.0);
        op_rope_bwd(xb.data(), s.ldx, s.B, s.T, s.H, s.hd, 10000.0);
        Pool P;
        float *gx = P.up(x), *gb = P.up(x);
        cuda_rope_fwd(gx, s.ldx, s.B, s.T, s.H, s.hd, s.pos0, 10000.0);
        cuda_rope_bwd(gb, s.ldx, s.B, s.T, s.H, s.hd, 10000.0);
        char shape[96];
        snprintf(shape, sizeof shape, "B%d T%d H%d hd%d pos0 %d ld%lld", s.B, s.T, s.H, s.hd, s.pos0, (long long)s.ldx);
        compare("rope_fwd x (in place)", shape, down(gx, n), xf, TOL_EW);
        compare("rope_bwd dx (in place)", shape, down(gb, n), xb, TOL_EW);
    }
}

// Attention against the CPU, with tolerances derived from fp32 rounding. u = 2^-24 is float's unit roundoff. A
// float sum of n terms of mixed signs, whose partial sums stay about the size of the result, is off by about
// u sqrt(n/2) relative (independent roundings, a random walk of partial sums). Here q, k, v and do have entries
// of unit variance, so a score s = q . k / sqrt(hd) is about 1 and its absolute error about u sqrt(hd/2), which
// moves every weight p = exp(s - m) by that much relative, hence o = sum_j p_j v_j / l too; the sum over the Tk
// keys adds u sqrt(Tk/2). The CPU's rounding is of the same size or smaller (its dots run in 16 lanes) and
// independent of the GPU's: the difference is about u sqrt(hd + Tk) in the 2-norm. The backward has one more
// hd-long dot before its sums (dp = do . v, with dp - delta of the same size as dp), and sums over up to T keys
// (dq) or queries (dk, dv): u sqrt(2 hd + T). The checks hold 4 times that (for the few fixed roundings, exp's
// ulp and the division by l, and the spread about the typical size); compare() holds the largest elementwise
// error to 10 times it. Larger scores scale the scores' absolute errors with them: the sharp case, with q 4
// times larger, gets 4 times the tolerance.
static double att_tol(int64_t n, double sharp) { return 4 * sharp * 0x1p-24 * sqrt((double)n); }

// Training form (Tq = Tk = T): q, k, v read in place from rows [q | k | v] of stride 3D (D = H hd), as the model
// keeps them; o and lse against the CPU's; then the backward from the CPU's o and lse, its dq, dk, dv written
// into the columns of rows of stride 3D + 4 whose 4 last values must come back untouched.
static void test_attention_one(int B, int T, int H, int hd, double sharp) {
    const int64_t D = (int64_t)H * hd, ld = 3 * D, ldd = 3 * D + 4, rows = (int64_t)B * T;
    seed(3100 + B * 13 + T * 7 + H * 3 + hd + (int)sharp);
    Vec qkv = randn(rows * ld), dout = randn(rows * D), d0 = randn(rows * ldd);
    if (sharp != 1)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < D; c++) qkv[r * ld + c] *= (float)sharp;
    Vec o(rows * D), lse(rows * H), d = d0;
    const float *q = qkv.data(), *k = q + D, *v = q + 2 * D;
    op_attention_fwd(o.data(), lse.data(), q, ld, k, v, ld, T * ld, B, T, T, H, hd);
    op_attention_bwd(d.data(), d.data() + D, d.data() + 2 * D, ldd, dout.data(), q, k, v, ld, o.data(), lse.data(), B,
                     T, H, hd);
    Pool P;
    float *gqkv = P.up(qkv), *gdo = P.up(dout), *gco = P.up(o), *gcl = P.up(lse), *go = P.f(o.size()),
          *gl = P.f(lse.size()), *gd = P.up(poisoned_rows(d0, rows, ldd, 3 * D));
    char shape[96];
    snprintf(shape, sizeof shape, "B%d T%d H%d hd%d%s", B, T, H, hd, sharp != 1 ? " sharp" : "");
    const double tf = att_tol(hd + T, sharp), tb = att_tol(2 * hd + T, sharp);
    poison(go, o.size() * 4);
    poison(gl, lse.size() * 4);
    cuda_attention_fwd(go, gl, gqkv, ld, gqkv + D, gqkv + 2 * D, ld, T * ld, B, T, T, H, hd);
    compare("attention_fwd o", shape, down(go, o.size()), o, tf);
    compare("attention_fwd lse", shape, down(gl, lse.size()), lse, tf);
    poison(go, o.size() * 4);
    cuda_attention_fwd(go, NULL, gqkv, ld, gqkv + D, gqkv + 2 * D, ld, T * ld, B, T, T, H, hd);
    compare("attention_fwd o (no lse)", shape, down(go, o.size()), o, tf);
    cuda_attention_bwd(gd, gd + D, gd + 2 * D, ldd, gdo, gqkv, gqkv + D, gqkv + 2 * D, ld, gco, gcl, B, T, H, hd);
    // dq, dk, dv apart (each to its own size), and the gaps, which must hold the host's values to the bit
    const Vec gdh = down(gd, d.size());
    Vec a[4], c[4];
    for (int w = 0; w < 4; w++)
        for (int64_t r = 0; r < rows; r++) {
            const int64_t c0 = w * D, c1 = w < 3 ? c0 + D : ldd;
            a[w].insert(a[w].end(), gdh.begin() + r * ldd + c0, gdh.begin() + r * ldd + c1);
            c[w].insert(c[w].end(), d.begin() + r * ldd + c0, d.begin() + r * ldd + c1);
        }
    compare("attention_bwd dq", shape, a[0], c[0], tb);
    compare("attention_bwd dk", shape, a[1], c[1], tb);
    compare("attention_bwd dv", shape, a[2], c[2], tb);
    check_bits("attention_bwd gaps untouched", shape, a[3].data(), c[3].data(), a[3].size() * 4);
}

// Decoding: Tq queries (rows of stride 3D, as the model's) at the last Tq of Tk positions, against a key/value
// cache [B, ctx, 2D] (keys, then values, in each row) of ctx > Tk positions, read through its sequence stride.
// The cache's new rows are appended as the model appends them: op_kv_append's copy, bit for bit.
static void test_attention_decode(int B, int Tq, int Tk, int H, int hd) {
    const int64_t D = (int64_t)H * hd, ld = 3 * D, ctx = Tk + 28, ldc = 2 * D;
    seed(3200 + B * 13 + Tq * 7 + Tk + H * 3 + hd);
    Vec qkv = randn((int64_t)B * Tq * ld), cache = randn(B * ctx * ldc), o((int64_t)B * Tq * D), lse((int64_t)B * Tq * H);
    Pool P;
    float *gqkv = P.up(qkv), *gc = P.up(cache), *go = P.f(o.size()), *gl = P.f(lse.size());
    const int pos0 = Tk - Tq;   // the cache holds pos0 positions; the new rows' keys and values join them
    op_kv_append(cache.data(), ldc, (int)ctx, pos0, qkv.data() + D, ld, B, Tq, (int)(2 * D));
    cuda_kv_append(gc, ldc, (int)ctx, pos0, gqkv + D, ld, B, Tq, (int)(2 * D));
    char shape[96];
    snprintf(shape, sizeof shape, "B%d Tq%d Tk%d H%d hd%d ctx%lld", B, Tq, Tk, H, hd, (long long)ctx);
    const Vec gch = down(gc, cache.size());
    check_bits("kv_append cache", shape, gch.data(), cache.data(), cache.size() * 4);
    op_attention_fwd(o.data(), lse.data(), qkv.data(), ld, cache.data(), cache.data() + D, ldc, ctx * ldc, B, Tq, Tk, H,
                     hd);
    poison(go, o.size() * 4);
    poison(gl, lse.size() * 4);
    cuda_attention_fwd(go, gl, gqkv, ld, gc, gc + D, ldc, ctx * ldc, B, Tq, Tk, H, hd);
    const double tol = att_tol(hd + Tk, 1);
    compare("attention_fwd decode o", shape, down(go, o.size()), o, tol);
    compare("attention_fwd decode lse", shape, down(gl, lse.size()), lse, tol);
}

static void test_attention(void) {
    const int Ts[] = {1, 63, 64, 65, 200, 1000}, hds[] = {32, 64, 128};
    for (int T : Ts)
        for (int hd : hds) {
            if (g_quick && T > 65) continue;
            test_attention_one(2, T, 2, hd, 1);
        }
    // heads of other widths: 2 (the smallest), 48 (not a multiple of 32), 256 (the widest the kernels take);
    // sharper softmaxes (scores 4 times larger), where the running maximum moves more
    test_attention_one(3, 65, 4, 2, 1);
    test_attention_one(1, 100, 3, 48, 1);
    test_attention_one(1, 65, 1, 256, 1);
    test_attention_one(2, 65, 2, 64, 4);
    if (!g_quick) {
        test_attention_one(1, 300, 1, 256, 1);
        test_attention_one(1, 1000, 2, 128, 4);
        test_attention_one(1, 2048, 2, 64, 1);
    }
    for (int Tq : {1, 3})
        for (int hd : hds) test_attention_decode(2, Tq, 100, 2, hd);
    test_attention_decode(3, 1, 1, 2, 64);   // the first token of a sequence: one key, its own
    if (!g_quick) test_attention_decode(2, 1, 3000, 4, 128);
}

// cuDNN's fused attention (a build with cuDNN; the path forced, whatever the precision), training form, q, k, v
// read from rows [q | k | v] of 3D and dq, dk, dv written into rows of 3D + 4 as the model lays them out.
// Two references. (a) The CPU op on the fp32 inputs: cuDNN rounds q, k, v, do (and o in the backward) to bf16,
// relative error up to 2^-9 each, about 2^-9/sqrt(3) = 1.1e-3 in the mean square. A score q . k / sqrt(hd)
// (unit-variance entries) then moves by about sqrt(2) 1.1e-3 = 1.6e-3 times the size of its terms, and every
// weight p_j relatively by that; o = sum_j p_j v_j / l, a weighted average, keeps the relative size of
// independent errors of its terms: 1.6e-3 from the scores, 1.1e-3 from v, 1.1e-3 from the bf16 P that cuDNN
// multiplies V with, 1.1e-3 from o's bf16 output: about 2.3e-3 in all. The backward has the same kinds of terms
// (do, v and o rounded, bf16 P for dV and bf16 dS for dQ and dK, bf16 outputs): about 3e-3. Both held to
// 2 x 2^-8 = 7.8e-3. (b) The CPU op on the bf16-rounded inputs (rounded on the host, as cuDNN rounds them):
// only cuDNN's internal roundings remain: bf16 P (or dS) and the bf16 outputs, about sqrt(2) 1.1e-3 = 1.6e-3,
// held to 2^-8 = 3.9e-3. lse: its error is the weighted average of the scores' absolute errors, about 1.6e-3
// against inputs of unit size in (a), held to 2^-8 as an rms absolute error (compare_to against max(1, |lse|));
// in (b) the scores are fp32 sums of exact products of bf16 values and cuDNN's exponentials are within a few
// float ulp: held to 4 times the fp32 attention's tolerance. The backward also runs twice: the same bits.
static Vec bf16_round(const Vec &x) {
    Vec y(x.size());
    for (size_t i = 0; i < x.size(); i++) y[i] = bf16_value(bf16_bits(x[i]));
    return y;
}
static Vec lse_scale(const Vec &lse) {
    Vec s(lse.size());
    for (size_t i = 0; i < lse.size(); i++) s[i] = fabsf(lse[i]) > 1 ? fabsf(lse[i]) : 1.f;
    return s;
}

// odd: row strides that are no multiple of 4 values, which the conversions to and from bf16 take a value at a time
static void test_attention_cudnn_one(int B, int T, int H, int hd, int odd = 0) {
    const int64_t D = (int64_t)H * hd, ld = 3 * D + odd, ldd = 3 * D + 4 + odd, rows = (int64_t)B * T;
    seed(3300 + B * 13 + T * 7 + H * 3 + hd);
    const Vec qkv = randn(rows * ld), dout = randn(rows * D), d0 = randn(rows * ldd);
    const Vec qkvr = bf16_round(qkv), doutr = bf16_round(dout);
    // (a) fp32 inputs
    Vec o(rows * D), lse(rows * H), d = d0;
    const float *q = qkv.data();
    op_attention_fwd(o.data(), lse.data(), q, ld, q + D, q + 2 * D, ld, T * ld, B, T, T, H, hd);
    op_attention_bwd(d.data(), d.data() + D, d.data() + 2 * D, ldd, dout.data(), q, q + D, q + 2 * D, ld, o.data(),
                     lse.data(), B, T, H, hd);
    // (b) bf16-rounded inputs; the backward from o rounded as cuDNN gets it
    Vec orr(rows * D), lser(rows * H), dr = d0;
    const float *qr = qkvr.data();
    op_attention_fwd(orr.data(), lser.data(), qr, ld, qr + D, qr + 2 * D, ld, T * ld, B, T, T, H, hd);
    const Vec orb = bf16_round(orr);
    op_attention_bwd(dr.data(), dr.data() + D, dr.data() + 2 * D, ldd, doutr.data(), qr, qr + D, qr + 2 * D, ld,
                     orb.data(), lser.data(), B, T, H, hd);
    Pool P;
    float *gqkv = P.up(qkv), *gdo = P.up(dout), *gco = P.up(orr), *gcl = P.up(lser), *go = P.f(o.size()),
          *gl = P.f(lse.size()), *gd = P.f(d0.size());
    char shape[96];
    snprintf(shape, sizeof shape, "B%d T%d H%d hd%d%s", B, T, H, hd, odd ? " odd strides" : "");
    const double loose = 2 * 0x1p-8, tight = 0x1p-8;
    if (!cuda_attention_uses_cudnn(B, T, T, H, hd)) {
        printf("FAIL  %-26s %-40s cuDNN does not take this shape\n", "cudnn attention", shape);
        n_fail++;
        return;
    }
    poison(go, o.size() * 4);
    poison(gl, lse.size() * 4);
    cuda_attention_fwd(go, gl, gqkv, ld, gqkv + D, gqkv + 2 * D, ld, T * ld, B, T, T, H, hd);
    const Vec ho = down(go, o.size()), hl = down(gl, lse.size());
    compare("cudnn fwd o (fp32 in)", shape, ho, o, loose);
    compare("cudnn fwd o (bf16 in)", shape, ho, orr, tight);
    compare_to("cudnn fwd lse (fp32 in)", shape, hl, lse, lse_scale(lse), loose, "");
    compare_to("cudnn fwd lse (bf16 in)", shape, hl, lser, lse_scale(lser), 4 * att_tol(hd + T, 1), "");
    poison(go, o.size() * 4);
    cuda_attention_fwd(go, NULL, gqkv, ld, gqkv + D, gqkv + 2 * D, ld, T * ld, B, T, T, H, hd);
    check_bits("cudnn fwd o (no lse)", shape, down(go, o.size()).data(), ho.data(), ho.size() * 4);
    Vec gdh[2];
    for (int rep = 0; rep < 2; rep++) {
        set(gd, poisoned_rows(d0, rows, ldd, 3 * D));
        cuda_attention_bwd(gd, gd + D, gd + 2 * D, ldd, gdo, gqkv, gqkv + D, gqkv + 2 * D, ld, gco, gcl, B, T, H, hd);
        gdh[rep] = down(gd, d0.size());
    }
    check_bits("cudnn bwd deterministic", shape, gdh[0].data(), gdh[1].data(), gdh[0].size() * 4);
    Vec a[4], c[4], cr[4];
    for (int w = 0; w < 4; w++)
        for (int64_t r = 0; r < rows; r++) {
            const int64_t c0 = w * D, c1 = w < 3 ? c0 + D : ldd;
            a[w].insert(a[w].end(), gdh[0].begin() + r * ldd + c0, gdh[0].begin() + r * ldd + c1);
            c[w].insert(c[w].end(), d.begin() + r * ldd + c0, d.begin() + r * ldd + c1);
            cr[w].insert(cr[w].end(), dr.begin() + r * ldd + c0, dr.begin() + r * ldd + c1);
        }
    const char *names[3][2] = {{"cudnn bwd dq (fp32 in)", "cudnn bwd dq (bf16 in)"},
                               {"cudnn bwd dk (fp32 in)", "cudnn bwd dk (bf16 in)"},
                               {"cudnn bwd dv (fp32 in)", "cudnn bwd dv (bf16 in)"}};
    for (int w = 0; w < 3; w++) {
        compare(names[w][0], shape, a[w], c[w], loose);
        compare(names[w][1], shape, a[w], cr[w], tight);
    }
    check_bits("cudnn bwd gaps untouched", shape, a[3].data(), c[3].data(), a[3].size() * 4);
}

static void test_attention_cudnn(void) {
    if (!cuda_attention_cudnn_built()) {
        printf("-- cuDNN attention checks skipped: this build has no cuDNN attention (make setup fetches the frontend)\n");
        return;
    }
    // as training takes it: bf16, the path chosen by the shape (a shape cuDNN refuses is a FAIL here, not a death);
    // T 1 is left out: cuDNN 9 refuses a query and key length of 1, and the kernels then serve it
    cuda_set_gemm_precision(2);
    const int Ts[] = {2, 63, 64, 65, 200, 1000, 2048}, hds[] = {64, 128};
    int i = 0;
    for (int T : Ts)
        for (int hd : hds) {
            const int H = 2 + i++ % 3;
            if (g_quick && T > 65) continue;
            test_attention_cudnn_one(2, T, H, hd);
        }
    test_attention_cudnn_one(2, 65, 2, 64, 1);
    cuda_set_gemm_precision(1);
    // the dispatch under bf16: training's form at hd 64 takes cuDNN; decoding (Tq < Tk) and heads cuDNN cannot
    // take (not a multiple of 8) keep the kernels; so does tf32
    cuda_set_gemm_precision(2);
    const bool train = cuda_attention_uses_cudnn(2, 64, 64, 2, 64), dec = cuda_attention_uses_cudnn(2, 1, 100, 2, 64),
               odd = cuda_attention_uses_cudnn(1, 64, 64, 2, 36);
    cuda_set_gemm_precision(1);
    const bool tf32 = cuda_attention_uses_cudnn(2, 64, 64, 2, 64), ok = train && !dec && !odd && !tf32;
    printf("%s  %-26s %-40s bf16 T64 %s, decode %s, hd 36 %s, tf32 %s\n", ok ? "PASS" : "FAIL", "cudnn dispatch", "",
           train ? "cuDNN" : "kernels", dec ? "cuDNN" : "kernels", odd ? "cuDNN" : "kernels", tf32 ? "cuDNN" : "kernels");
    ok ? n_pass++ : n_fail++;
}
