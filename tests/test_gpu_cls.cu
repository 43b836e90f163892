// tests/test_gpu_cls.cu: the CUDA ops of the classification model (cuda/norms_cls.cuh, cuda/pointwise_cls.cuh)
// against the CPU ops (cpu_cls.c in its float build): biases, LayerNorm, BatchNorm, GELU, sinusoidal positions,
// dropout, mean pooling, the document-pair features, BatchNorm over the rows a RowMask keeps (--pad-group), the staging of 8-bit pixels (bit for bit), the LRA layer in
// bf16 numerics (lra_bf16, its own tolerances below); and the 2-D
// mixer's column scans read in place (op_hgru_cols_fwd/bwd, cuda/mixer.cuh: the small-head kernels,
// K = Dv = 1, 2, 4) against the CPU's (cpu.c).
//
// Each check draws fresh random inputs, runs both backends and prints one line: the op, the shape, the relative
// error |gpu - cpu| / |cpu| (2-norms over the whole output), the largest elementwise error over the largest
// |cpu|, and the tolerance. A check passes when the relative error is within the tolerance and the elementwise
// one within 10x it; NaN fails. GPU outputs are poisoned with NaN (bytes 0xFF) before each op, so an element
// the op forgets to write fails; "+=" outputs start from the same random values on both sides. Shapes: rows
// 1, 63, 64, 65, 4096 (around the 64-row chunks of the column sums) and widths 1, 64, 130, 512.
//
// Tolerances (fp32 storage):
//   TOL_D 1e-6: the ops whose sums are in double on both sides (bias gradients, the norms' statistics and
//     gradients, pooling) and the elementwise ones without library functions. The double sums differ only in
//     their last bits, so each side's float result is one rounding (2^-24) away from the same value; the
//     elementwise formula after it adds a few roundings that the compilers may contract differently: a few
//     2^-24 (< 5e-7). A sum accumulated in float instead would be off by ~eps sqrt(N) (5e-6 at N 4096).
//   TOL_EW 2e-6: GELU: CUDA's erfcf and expf are within 4 and 2 ulps (its documented bounds), glibc's within
//     about 1, and the formula rounds a few times more: some 6 ulps (4e-7) apart at most.
//   TOL_OPND 4e-3: an output stored as a bf16 operand (--precision bf16): rounding to 8 significant bits moves a
//     value by at most half a unit in the last place, 2^-8 relative just above a power of two.
//   The column scans: as tests/test_gpu.cu's exact hgru cases: o 1e-5 (a recurrence of fp32 sums); dq, dk, dv
//     2e-5; dg 5e-5 (the GPU forms it from the identity dg_t = sum_{s>=t} (q_s dq_s - k_s dk_s), which cancels).
//   Dropout is compared bit for bit: the mask is the same hash of (seed, i) and a kept value one multiplication.
//
// Also: determinism (the reductions run twice give the same bits). --quick runs only the small shapes.
// Exit status 1 when any check fails.
#include "gpu_check.h"
extern "C" {
#include "../ops.h"
}

#define TOL_D 1e-6
#define TOL_EW 2e-6
#define TOL_OPND 4e-3

static Vec bf16_round(const Vec &v) {   // each value rounded to bf16, as an operand in GEMM mode 2 holds it
    Vec r(v.size());
    for (size_t i = 0; i < v.size(); i++) r[i] = bf16_value(bf16_bits(v[i]));
    return r;
}
static void *opnd_up(Pool &P, const Vec &h) {   // an operand holding h (rounded to bf16 in mode 2)
    void *o = opnd_buf(P, h.size());
    if (cuda_opnd_size() == 4) {
        cuda_to_device(o, h.data(), h.size() * 4);
    } else {
        std::vector<uint16_t> b(h.size());
        for (size_t i = 0; i < h.size(); i++) b[i] = bf16_bits(h[i]);
        cuda_to_device(o, b.data(), b.size() * 2);
    }
    return o;
}

// compare with the errors measured against sc, the sizes of the terms an output is made of, where the output itself
// may cancel to far less than them (a norm's dx: exactly 0 for LayerNorm at C = 1, where each side keeps its own
// rounding residue of the terms).
static void compare_scaled(const char *op, const char *shape, const Vec &gpu, const Vec &cpu, const Vec &sc,
                           double tol) {
    compare_to(op, shape, gpu, cpu, sc, tol, " (/ terms)");
}

static const int64_t kRows[] = {1, 63, 64, 65, 4096, 20000};   // 20000: the column sums in two passes (313 partials)
static const int kCols[] = {1, 64, 130, 512};

// ======================================================================================================
// biases
// ======================================================================================================
static void test_bias(void) {
    for (int64_t N : kRows)
        for (int C : kCols) {
            if (g_quick && N > 100) continue;
            seed(100 + N * 3 + C);
            Vec y0 = randn(N * C), b = randn(C), dy = randn(N * C), db0 = randn(C);
            Vec y = y0, db = db0;
            op_bias_add(y.data(), b.data(), N, C);
            op_bias_bwd(db.data(), dy.data(), N, C);
            Pool P;
            float *gy = P.up(y0), *gb = P.up(b), *gdy = P.up(dy), *gdb = P.up(db0);
            char shape[64];
            snprintf(shape, sizeof shape, "N%lld C%d", (long long)N, C);
            cuda_bias_add(gy, gb, N, C);
            compare("bias_add y+=", shape, down(gy, y.size()), y, TOL_D);
            set(gy, y0);
            cuda_bias_add_opnd(gy, gb, N, C);   // fp32 operands are the float tensors
            compare("bias_add_opnd y+= fp32", shape, down(gy, y.size()), y, TOL_D);
            cuda_bias_bwd(gdb, gdy, N, C);
            compare("bias_bwd db+=", shape, down(gdb, C), db, TOL_D);
            set(gdb, db0);
            cuda_bias_bwd_opnd(gdb, gdy, N, C);
            compare("bias_bwd_opnd db+= fp32", shape, down(gdb, C), db, TOL_D);
            {   // bf16 operands: the CPU gets the values rounded as the GPU holds them
                cuda_set_gemm_precision(2);
                Vec y0r = bf16_round(y0), dyr = bf16_round(dy), yr = y0r, dbr = db0;
                op_bias_add(yr.data(), b.data(), N, C);
                op_bias_bwd(dbr.data(), dyr.data(), N, C);
                void *oy = opnd_up(P, y0), *ody = opnd_up(P, dy);
                cuda_bias_add_opnd(oy, gb, N, C);
                compare("bias_add_opnd y+= bf16", shape, opnd_down(oy, y.size()), yr, TOL_OPND);
                set(gdb, db0);
                cuda_bias_bwd_opnd(gdb, ody, N, C);
                compare("bias_bwd_opnd db+= bf16", shape, down(gdb, C), dbr, TOL_D);
                cuda_set_gemm_precision(1);
            }
        }
}

// ======================================================================================================
// LayerNorm
// ======================================================================================================
static void test_layernorm(void) {
    const double eps = 1e-5;
    for (int64_t N : kRows)
        for (int C : kCols) {
            if (g_quick && N > 100) continue;
            seed(200 + N * 3 + C);
            Vec x = randn(N * C, 1, 0.5), w = randn(C, 0.1, 1), b = randn(C), dy = randn(N * C), dw0 = randn(C),
                db0 = randn(C), res = randn(N * C);
            Vec y(N * C), mean(N), rstd(N), dx(N * C), dw = dw0, db = db0;
            op_layernorm_fwd(y.data(), mean.data(), rstd.data(), x.data(), NULL, w.data(), b.data(), N, C, eps);
            op_layernorm_bwd(dx.data(), 0, dw.data(), db.data(), dy.data(), x.data(), w.data(), mean.data(),
                             rstd.data(), N, C);
            Vec dxp = randn(N * C), dxa = dxp;   // acc = 1 adds to a gradient already there
            op_layernorm_bwd(dxa.data(), 1, NULL, NULL, dy.data(), x.data(), w.data(), mean.data(), rstd.data(), N, C);
            Vec sdx(N * C), sdxa(N * C);   // dx's terms: rstd w dy, and what acc adds it to
            for (int64_t n = 0; n < N; n++)
                for (int c = 0; c < C; c++) {
                    sdx[n * C + c] = fabsf(rstd[n] * w[c] * dy[n * C + c]);
                    sdxa[n * C + c] = sdx[n * C + c] + fabsf(dxp[n * C + c]);
                }
            Pool P;
            float *gx = P.up(x), *gw = P.up(w), *gb = P.up(b), *gdy = P.up(dy), *gy = P.f(y.size()), *gm = P.f(N),
                  *gr = P.f(N), *gdx = P.f(dx.size()), *gdw = P.up(dw0), *gdb = P.up(db0);
            char shape[64];
            snprintf(shape, sizeof shape, "N%lld C%d", (long long)N, C);
            poison(gy, y.size() * 4);
            poison(gm, N * 4);
            poison(gr, N * 4);
            cuda_layernorm_fwd(gy, gm, gr, gx, NULL, gw, gb, N, C, eps);
            compare("layernorm_fwd y", shape, down(gy, y.size()), y, TOL_D);
            compare("layernorm_fwd mean", shape, down(gm, N), mean, TOL_D);
            compare("layernorm_fwd rstd", shape, down(gr, N), rstd, TOL_D);
            poison(gy, y.size() * 4);
            cuda_layernorm_fwd(gy, NULL, NULL, gx, NULL, gw, gb, N, C, eps);
            compare("layernorm_fwd y (no stats)", shape, down(gy, y.size()), y, TOL_D);
            {   // with a residual: x += res in place, then the norm of the sum
                Vec xs = x, ys(N * C), ms(N), rs(N);
                op_layernorm_fwd(ys.data(), ms.data(), rs.data(), xs.data(), res.data(), w.data(), b.data(), N, C, eps);
                float *gxs = P.up(x), *gres = P.up(res), *gys = P.f(y.size()), *gms = P.f(N), *grs = P.f(N);
                poison(gys, y.size() * 4);
                poison(gms, N * 4);
                poison(grs, N * 4);
                cuda_layernorm_fwd(gys, gms, grs, gxs, gres, gw, gb, N, C, eps);
                compare("layernorm_fwd res: x+=", shape, down(gxs, xs.size()), xs, TOL_D);
                compare("layernorm_fwd res: y", shape, down(gys, y.size()), ys, TOL_D);
                compare("layernorm_fwd res: mean", shape, down(gms, N), ms, TOL_D);
                compare("layernorm_fwd res: rstd", shape, down(grs, N), rs, TOL_D);
            }
            {   // y as a bf16 operand
                cuda_set_gemm_precision(2);
                void *oy = opnd_buf(P, y.size());
                poison(oy, y.size() * 2);
                cuda_layernorm_fwd(oy, NULL, NULL, gx, NULL, gw, gb, N, C, eps);
                compare("layernorm_fwd y bf16", shape, opnd_down(oy, y.size()), y, TOL_OPND);
                cuda_set_gemm_precision(1);
            }
            // the backward from the CPU's statistics, so that it is tested alone
            float *cm = P.up(mean), *cr = P.up(rstd);
            poison(gdx, dx.size() * 4);
            cuda_layernorm_bwd(gdx, 0, gdw, gdb, gdy, gx, gw, cm, cr, N, C);
            compare_scaled("layernorm_bwd dx", shape, down(gdx, dx.size()), dx, sdx, TOL_D);
            compare("layernorm_bwd dw+=", shape, down(gdw, C), dw, TOL_D);
            compare("layernorm_bwd db+=", shape, down(gdb, C), db, TOL_D);
            set(gdx, dxp);
            cuda_layernorm_bwd(gdx, 1, NULL, NULL, gdy, gx, gw, cm, cr, N, C);
            compare_scaled("layernorm_bwd dx+= (acc)", shape, down(gdx, dx.size()), dxa, sdxa, TOL_D);
            if (N == 65 && C == 130) {   // one output at a time
                set(gdw, dw0);
                cuda_layernorm_bwd(NULL, 0, gdw, NULL, gdy, gx, gw, cm, cr, N, C);
                compare("layernorm_bwd dw only", shape, down(gdw, C), dw, TOL_D);
                set(gdb, db0);
                cuda_layernorm_bwd(NULL, 0, NULL, gdb, gdy, gx, gw, cm, cr, N, C);
                compare("layernorm_bwd db only", shape, down(gdb, C), db, TOL_D);
            }
        }
}

// ======================================================================================================
// BatchNorm
// ======================================================================================================
static void test_batchnorm(void) {
    const double eps = 1e-5, mom = 0.1;
    for (int64_t N : kRows)
        for (int C : kCols) {
            if (g_quick && N > 100) continue;
            seed(300 + N * 3 + C);
            Vec x = randn(N * C, 2, 0.5), w = randn(C, 0.1, 1), b = randn(C), dy = randn(N * C), dw0 = randn(C),
                db0 = randn(C), res = randn(N * C), rm0 = randn(C, 0.1), rv0(C);
            for (auto &v : rv0) v = (float)(0.5 + urand());
            Pool P;
            char shape[64];
            snprintf(shape, sizeof shape, "N%lld C%d", (long long)N, C);
            float *gx = P.up(x), *gw = P.up(w), *gb = P.up(b), *gdy = P.up(dy), *gy = P.f(N * C), *gm = P.f(C),
                  *gr = P.f(C), *grm = P.up(rm0), *grv = P.up(rv0);
            // eval: the running statistics (N = 1 too)
            {
                Vec ye(N * C), xs = x, yr(N * C);
                op_batchnorm_fwd(ye.data(), NULL, NULL, rm0.data(), rv0.data(), x.data(), NULL, w.data(), b.data(),
                                 N, C, rows_all(), eps, mom, 0);
                poison(gy, N * C * 4);
                cuda_batchnorm_fwd(gy, NULL, NULL, grm, grv, gx, NULL, gw, gb, N, C, rows_all(), eps, mom, 0);
                compare("batchnorm_fwd eval y", shape, down(gy, N * C), ye, TOL_D);
                op_batchnorm_fwd(yr.data(), NULL, NULL, rm0.data(), rv0.data(), xs.data(), res.data(), w.data(),
                                 b.data(), N, C, rows_all(), eps, mom, 0);
                float *gxs = P.up(x), *gres = P.up(res);
                poison(gy, N * C * 4);
                cuda_batchnorm_fwd(gy, NULL, NULL, grm, grv, gxs, gres, gw, gb, N, C, rows_all(), eps, mom, 0);
                compare("batchnorm_fwd eval res: x+=", shape, down(gxs, N * C), xs, TOL_D);
                compare("batchnorm_fwd eval res: y", shape, down(gy, N * C), yr, TOL_D);
                compare("batchnorm_fwd eval: run_mean", shape, down(grm, C), rm0, 0);   // left alone
                compare("batchnorm_fwd eval: run_var", shape, down(grv, C), rv0, 0);
                cuda_set_gemm_precision(2);
                void *oy = opnd_buf(P, N * C);
                poison(oy, N * C * 2);
                cuda_batchnorm_fwd(oy, NULL, NULL, grm, grv, gx, NULL, gw, gb, N, C, rows_all(), eps, mom, 0);
                compare("batchnorm_fwd eval y bf16", shape, opnd_down(oy, N * C), ye, TOL_OPND);
                cuda_set_gemm_precision(1);
            }
            if (N < 2) continue;   // training needs two positions per channel
            Vec y(N * C), mean(C), rstd(C), rm = rm0, rv = rv0, dx(N * C), dw = dw0, db = db0;
            op_batchnorm_fwd(y.data(), mean.data(), rstd.data(), rm.data(), rv.data(), x.data(), NULL, w.data(),
                             b.data(), N, C, rows_all(), eps, mom, 1);
            op_batchnorm_bwd(dx.data(), 0, dw.data(), db.data(), dy.data(), x.data(), w.data(), mean.data(),
                             rstd.data(), N, C, rows_all());
            Vec dxp = randn(N * C), dxa = dxp;
            op_batchnorm_bwd(dxa.data(), 1, NULL, NULL, dy.data(), x.data(), w.data(), mean.data(), rstd.data(), N, C, rows_all());
            Vec sdx(N * C), sdxa(N * C);   // dx's terms: w rstd dy, and what acc adds it to
            for (int64_t n = 0; n < N; n++)
                for (int c = 0; c < C; c++) {
                    sdx[n * C + c] = fabsf(w[c] * rstd[c] * dy[n * C + c]);
                    sdxa[n * C + c] = sdx[n * C + c] + fabsf(dxp[n * C + c]);
                }
            poison(gy, N * C * 4);
            poison(gm, C * 4);
            poison(gr, C * 4);
            cuda_batchnorm_fwd(gy, gm, gr, grm, grv, gx, NULL, gw, gb, N, C, rows_all(), eps, mom, 1);
            compare("batchnorm_fwd y", shape, down(gy, N * C), y, TOL_D);
            compare("batchnorm_fwd mean", shape, down(gm, C), mean, TOL_D);
            compare("batchnorm_fwd rstd", shape, down(gr, C), rstd, TOL_D);
            compare("batchnorm_fwd run_mean", shape, down(grm, C), rm, TOL_D);
            compare("batchnorm_fwd run_var", shape, down(grv, C), rv, TOL_D);
            compare("batchnorm_fwd x unchanged", shape, down(gx, N * C), x, 0);
            poison(gy, N * C * 4);
            cuda_batchnorm_fwd(gy, NULL, NULL, NULL, NULL, gx, NULL, gw, gb, N, C, rows_all(), eps, mom, 1);
            compare("batchnorm_fwd y (no stats)", shape, down(gy, N * C), y, TOL_D);
            {   // with a residual
                Vec xs = x, ys(N * C), ms(C), rs(C), rms = rm0, rvs = rv0;
                op_batchnorm_fwd(ys.data(), ms.data(), rs.data(), rms.data(), rvs.data(), xs.data(), res.data(),
                                 w.data(), b.data(), N, C, rows_all(), eps, mom, 1);
                float *gxs = P.up(x), *gres = P.up(res), *grms = P.up(rm0), *grvs = P.up(rv0);
                poison(gy, N * C * 4);
                poison(gm, C * 4);
                poison(gr, C * 4);
                cuda_batchnorm_fwd(gy, gm, gr, grms, grvs, gxs, gres, gw, gb, N, C, rows_all(), eps, mom, 1);
                compare("batchnorm_fwd res: x+=", shape, down(gxs, N * C), xs, TOL_D);
                compare("batchnorm_fwd res: y", shape, down(gy, N * C), ys, TOL_D);
                compare("batchnorm_fwd res: mean", shape, down(gm, C), ms, TOL_D);
                compare("batchnorm_fwd res: rstd", shape, down(gr, C), rs, TOL_D);
                compare("batchnorm_fwd res: run_mean", shape, down(grms, C), rms, TOL_D);
                compare("batchnorm_fwd res: run_var", shape, down(grvs, C), rvs, TOL_D);
            }
            {   // y as a bf16 operand
                cuda_set_gemm_precision(2);
                void *oy = opnd_buf(P, N * C);
                poison(oy, N * C * 2);
                cuda_batchnorm_fwd(oy, NULL, NULL, NULL, NULL, gx, NULL, gw, gb, N, C, rows_all(), eps, mom, 1);
                compare("batchnorm_fwd y bf16", shape, opnd_down(oy, N * C), y, TOL_OPND);
                cuda_set_gemm_precision(1);
            }
            // the backward from the CPU's statistics
            float *cm = P.up(mean), *cr = P.up(rstd), *gdx = P.f(N * C), *gdw = P.up(dw0), *gdb = P.up(db0);
            poison(gdx, N * C * 4);
            cuda_batchnorm_bwd(gdx, 0, gdw, gdb, gdy, gx, gw, cm, cr, N, C, rows_all());
            compare_scaled("batchnorm_bwd dx", shape, down(gdx, N * C), dx, sdx, TOL_D);
            compare("batchnorm_bwd dw+=", shape, down(gdw, C), dw, TOL_D);
            compare("batchnorm_bwd db+=", shape, down(gdb, C), db, TOL_D);
            set(gdx, dxp);
            cuda_batchnorm_bwd(gdx, 1, NULL, NULL, gdy, gx, gw, cm, cr, N, C, rows_all());
            compare_scaled("batchnorm_bwd dx+= (acc)", shape, down(gdx, N * C), dxa, sdxa, TOL_D);
            if (N == 65 && C == 130) {   // one output at a time
                set(gdw, dw0);
                cuda_batchnorm_bwd(NULL, 0, gdw, NULL, gdy, gx, gw, cm, cr, N, C, rows_all());
                compare("batchnorm_bwd dw only", shape, down(gdw, C), dw, TOL_D);
                set(gdb, db0);
                cuda_batchnorm_bwd(NULL, 0, NULL, gdb, gdy, gx, gw, cm, cr, N, C, rows_all());
                compare("batchnorm_bwd db only", shape, down(gdb, C), db, TOL_D);
            }
        }
}

// BatchNorm over the rows that exist (--pad-group: sequence s of T positions has its first ext[s]) and the
// zeroing of the others' values, against the CPU ops with the same RowMask: S sequences of T, T around the
// column sums' 64-row chunks and not a multiple of them, ext random in [1, T] (one sequence whole).
static void test_rows(void) {
    const double eps = 1e-5, mom = 0.1;
    const int shapes[][3] = {{3, 7, 5}, {4, 63, 64}, {5, 65, 130}, {2, 2048, 64}, {16, 1000, 64}, {2, 1100000, 4}};
    for (auto &sh : shapes) {
        const int S = sh[0], T = sh[1], C = sh[2];
        const int64_t N = (int64_t)S * T;
        if (g_quick && N > 1000) continue;
        seed(900 + S * 7 + T + C);
        std::vector<int32_t> ext(S);
        int64_t nin = 0;
        for (int s = 0; s < S; s++) {
            ext[s] = s == 1 ? T : 1 + (int)(urand() * T) % T;
            nin += ext[s];
        }
        char shape[64];
        snprintf(shape, sizeof shape, "S%d T%d C%d (%lld of %lld rows)", S, T, C, (long long)nin, (long long)N);
        Pool P;
        const RowMask hr = {ext.data(), T, nin}, dr = {P.up(ext), T, nin};
        Vec x = randn(N * C, 2, 0.5), w = randn(C, 0.1, 1), b = randn(C), dy = randn(N * C), res = randn(N * C),
            rm0 = randn(C, 0.1), rv0(C), dw0 = randn(C), db0 = randn(C);
        for (auto &v : rv0) v = (float)(0.5 + urand());
        for (int64_t n = 0; n < N; n++)   // the rows that do not exist hold no gradient (as the model's)
            if (n % T >= ext[n / T])
                for (int c = 0; c < C; c++) dy[n * C + c] = 0;
        Vec xs = x, y(N * C), mean(C), rstd(C), rm = rm0, rv = rv0, dx(N * C), dw = dw0, db = db0;
        op_batchnorm_fwd(y.data(), mean.data(), rstd.data(), rm.data(), rv.data(), xs.data(), res.data(), w.data(),
                         b.data(), N, C, hr, eps, mom, 1);
        op_batchnorm_bwd(dx.data(), 0, dw.data(), db.data(), dy.data(), xs.data(), w.data(), mean.data(), rstd.data(),
                         N, C, hr);
        Vec dxp = randn(N * C), dxa = dxp;
        op_batchnorm_bwd(dxa.data(), 1, NULL, NULL, dy.data(), xs.data(), w.data(), mean.data(), rstd.data(), N, C, hr);
        Vec sdx(N * C), sdxa(N * C);
        for (int64_t n = 0; n < N; n++)
            for (int c = 0; c < C; c++) {
                sdx[n * C + c] = fabsf(w[c] * rstd[c] * dy[n * C + c]) + 1e-30f;
                sdxa[n * C + c] = sdx[n * C + c] + fabsf(dxp[n * C + c]);
            }
        float *gx = P.up(x), *gres = P.up(res), *gw = P.up(w), *gb = P.up(b), *gy = P.f(N * C), *gm = P.f(C),
              *gr = P.f(C), *grm = P.up(rm0), *grv = P.up(rv0);
        poison(gy, N * C * 4);
        poison(gm, C * 4);
        poison(gr, C * 4);
        cuda_batchnorm_fwd(gy, gm, gr, grm, grv, gx, gres, gw, gb, N, C, dr, eps, mom, 1);
        compare("batchnorm_fwd rows: x+=", shape, down(gx, N * C), xs, TOL_D);
        compare("batchnorm_fwd rows: y", shape, down(gy, N * C), y, TOL_D);
        compare("batchnorm_fwd rows: mean", shape, down(gm, C), mean, TOL_D);
        compare("batchnorm_fwd rows: rstd", shape, down(gr, C), rstd, TOL_D);
        compare("batchnorm_fwd rows: run_mean", shape, down(grm, C), rm, TOL_D);
        compare("batchnorm_fwd rows: run_var", shape, down(grv, C), rv, TOL_D);
        float *cm = P.up(mean), *cr = P.up(rstd), *cx = P.up(xs), *gdy = P.up(dy), *gdx = P.f(N * C);
        float *gdw = P.up(dw0), *gdb = P.up(db0);
        poison(gdx, N * C * 4);
        cuda_batchnorm_bwd(gdx, 0, gdw, gdb, gdy, cx, gw, cm, cr, N, C, dr);
        compare_scaled("batchnorm_bwd rows: dx", shape, down(gdx, N * C), dx, sdx, TOL_D);
        compare("batchnorm_bwd rows: dw+=", shape, down(gdw, C), dw, TOL_D);
        compare("batchnorm_bwd rows: db+=", shape, down(gdb, C), db, TOL_D);
        set(gdx, dxp);
        cuda_batchnorm_bwd(gdx, 1, NULL, NULL, gdy, cx, gw, cm, cr, N, C, dr);
        compare_scaled("batchnorm_bwd rows: dx+= (acc)", shape, down(gdx, N * C), dxa, sdxa, TOL_D);
        // rows_zero, bit for bit: on columns [2, C + 2) of rows of C + 5 (a value at a time), on whole rows and
        // on columns [4, C + 4) of rows of C + 8 (four at a time where C is a multiple of 4)
        const int cases[][2] = {{2, 5}, {0, 0}, {4, 8}};
        for (auto &cs : cases) {
            const int off = cs[0], ld = C + cs[1];
            Vec z = randn(N * ld), zc = z;
            op_rows_zero(zc.data() + off, ld, C, hr, N);
            float *gz = P.up(z);
            cuda_rows_zero(gz + off, ld, C, dr, N);
            char what[64];
            snprintf(what, sizeof what, "rows_zero (columns %d..%d of %d)", off, off + C - 1, ld);
            compare(what, shape, down(gz, N * ld), zc, 0);
        }
    }
}

// ======================================================================================================
// GELU, dropout, positions
// ======================================================================================================
static void test_gelu(void) {
    const int64_t ns[] = {1, 63, 64, 65, 4096 * 130, 1000003};
    for (int64_t n : ns) {
        if (g_quick && n > 100) continue;
        seed(400 + n);
        Vec x = randn(n, 3), dy = randn(n), y(n), dx(n);
        op_gelu_fwd(y.data(), x.data(), n);
        op_gelu_bwd(dx.data(), dy.data(), x.data(), n);
        Pool P;
        float *gx = P.up(x), *gdy = P.up(dy), *gy = P.f(n), *gdx = P.f(n);
        char shape[64];
        snprintf(shape, sizeof shape, "n %lld", (long long)n);
        poison(gy, n * 4);
        poison(gdx, n * 4);
        cuda_gelu_fwd(gy, gx, n);
        cuda_gelu_bwd(gdx, gdy, gx, n);
        compare("gelu_fwd y", shape, down(gy, n), y, TOL_EW);
        compare("gelu_bwd dx", shape, down(gdx, n), dx, TOL_EW);
        cuda_gelu_bwd(gdy, gdy, gx, n);   // in place
        compare("gelu_bwd dx in place", shape, down(gdy, n), dx, TOL_EW);
        cuda_set_gemm_precision(2);
        void *oy = opnd_buf(P, n);
        poison(oy, n * 2);
        cuda_gelu_fwd(oy, gx, n);
        compare("gelu_fwd y bf16", shape, opnd_down(oy, n), y, TOL_OPND);
        cuda_set_gemm_precision(1);
    }
}

// The LRA layer's activations: q = s sigmoid over the first HK columns of rows of stride ld, v = silu over the
// last D, and their backward into the same strided rows, whose f columns must keep their values.
static void test_lra_acts(void) {
    struct { int64_t N; int HK, D; } cf[] = {{1, 4, 4}, {63, 64, 64}, {65, 256, 128}, {4096, 128, 512}};
    for (auto c : cf) {
        if (g_quick && c.N > 100) continue;
        const int64_t N = c.N, ld = 2 * c.HK + c.D + 3, nq = N * c.HK, nv = N * c.D;
        const double sc = sqrt(4.0);
        seed(450 + N);
        Vec qfi = randn(N * ld, 4), dq = randn(nq), dv = randn(nv), q(nq), v(nv), dqfi = randn(N * ld);
        const Vec dqfi0 = dqfi;
        op_lra_acts_fwd(q.data(), v.data(), qfi.data(), ld, N, c.HK, c.D, sc);
        op_lra_acts_bwd(dqfi.data(), ld, dq.data(), dv.data(), qfi.data(), ld, N, c.HK, c.D, sc);
        Pool P;
        float *gqfi = P.up(qfi), *gdq = P.up(dq), *gdv = P.up(dv), *gq = P.f(nq), *gv = P.f(nv), *gd = P.up(dqfi0);
        char shape[64];
        snprintf(shape, sizeof shape, "N %lld HK %d D %d", (long long)N, c.HK, c.D);
        poison(gq, nq * 4);
        poison(gv, nv * 4);
        cuda_lra_acts_fwd(gq, gv, gqfi, ld, N, c.HK, c.D, sc);
        cuda_lra_acts_bwd(gd, ld, gdq, gdv, gqfi, ld, N, c.HK, c.D, sc);
        compare("lra_acts_fwd q", shape, down(gq, nq), q, TOL_EW);
        compare("lra_acts_fwd v", shape, down(gv, nv), v, TOL_EW);
        compare("lra_acts_bwd dqfi (q and v columns; f columns kept)", shape, down(gd, N * ld), dqfi, TOL_EW);
    }
}

// The LRA layer in bf16 numerics (op_lra_bf16_fwd/bwd), rnd 0 and 1. Without the roundings both sides run the
// same recurrences in fp32, with sums in other orders: o 1e-5, the gradients 2e-5, as the exact hgru cases.
// With them every rounding is at the same place with the same operands, so the forward agrees bit for bit
// except where a sigmoid or silu (CUDA's expf within 2 ulps, glibc's within 1) lands on the other side of a
// bf16 rounding boundary: about one value in 2^15, which then moves by one bf16 unit (2^-8 relative) and
// moves the states after it by as much. So: at most 0.1% of o's elements may differ at all, and o and the
// gradients (the scans' rounded gradients, then fp32 sums) within 2^-10 in the 2-norm. A rounding left out
// anywhere makes nearly every element differ, by about 2^-9 relative.
static void test_lra_bf16(void) {
    struct { int B, T, H, K, lb; } cf[] = {{1, 1, 1, 1, 0}, {2, 37, 3, 4, 1}, {3, 130, 16, 4, 1}, {2, 65, 4, 8, 1},
                                           {1, 200, 2, 32, 1}, {2, 300, 8, 2, 0}, {4, 2048, 16, 4, 1}};
    for (auto c : cf) {
        if (g_quick && c.T > 200) continue;
        const int HK = c.H * c.K, D = HK;
        const int64_t N = (int64_t)c.B * c.T, ld = 2 * HK + D + 3;
        for (int rnd = 0; rnd < 2; rnd++) {
            seed(470 + N + rnd);
            Vec qfi = randn(N * ld, 1), dout = randn(N * D), lb = randn(HK, 0.2, 0.5), o(N * D), dqfi = randn(N * ld);
            for (int64_t n = 0; n < N; n++)   // a few forget logits large enough that the gate rounds to 1
                qfi[n * ld + HK + n % HK] = (float)(4 + 4 * urand());
            const Vec dqfi0 = dqfi;
            Vec dlb = randn(HK);
            const Vec dlb0 = dlb;
            const float *lbp = c.lb ? lb.data() : NULL;
            op_lra_bf16_fwd(o.data(), qfi.data(), ld, lbp, c.B, c.T, c.H, c.K, rnd);
            op_lra_bf16_bwd(dqfi.data(), ld, c.lb ? dlb.data() : NULL, dout.data(), qfi.data(), ld, lbp, c.B, c.T,
                            c.H, c.K, rnd);
            Pool P;
            float *gqfi = P.up(qfi), *gdout = P.up(dout), *glb = c.lb ? P.up(lb) : NULL, *go = P.f(N * D);
            float *gd = P.up(dqfi0), *gdlb = c.lb ? P.up(dlb0) : NULL;
            char shape[80];
            snprintf(shape, sizeof shape, "rnd %d B %d T %d H %d K %d%s", rnd, c.B, c.T, c.H, c.K, c.lb ? " lb" : "");
            poison(go, N * D * 4);
            cuda_lra_bf16_fwd(go, gqfi, ld, glb, c.B, c.T, c.H, c.K, rnd);
            cuda_lra_bf16_bwd(gd, ld, gdlb, gdout, gqfi, ld, glb, c.B, c.T, c.H, c.K, rnd);
            const Vec og = down(go, N * D);
            const double tol = rnd ? 1.0 / 1024 : 1e-5, tolg = rnd ? 1.0 / 1024 : 2e-5;
            compare("lra_bf16_fwd o", shape, og, o, tol);
            compare("lra_bf16_bwd dqfi", shape, down(gd, N * ld), dqfi, tolg);
            if (c.lb) compare("lra_bf16_bwd dlb (+=)", shape, down(gdlb, HK), dlb, tolg);
            if (rnd) {
                int64_t differ = 0;
                for (int64_t i = 0; i < N * D; i++) differ += memcmp(&og[i], &o[i], 4) != 0;
                const bool ok = differ * 1000 <= N * D;
                printf("%s  %-26s %-40s %lld of %lld differ (at most 0.1%%)\n", ok ? "PASS" : "FAIL", "lra_bf16_fwd o bits",
                       shape, (long long)differ, (long long)(N * D));
                ok ? n_pass++ : n_fail++;
            }
        }
    }
}

static void test_dropout(void) {
    const int64_t ns[] = {1, 63, 64, 65, 1000003};
    const double ps[] = {0, 0.1, 0.5};
    for (int64_t n : ns)
        for (double p : ps) {
            if (g_quick && n > 100) continue;
            seed(500 + n);
            const uint64_t s = next_u64();
            Vec x = randn(n), y(n), dx(n);
            op_dropout_fwd(y.data(), x.data(), n, p, s);
            op_dropout_bwd(dx.data(), x.data(), n, p, s + 1);
            Pool P;
            float *gx = P.up(x), *gy = P.f(n);
            char shape[64];
            snprintf(shape, sizeof shape, "n %lld p %.1f", (long long)n, p);
            poison(gy, n * 4);
            cuda_dropout_fwd(gy, gx, n, p, s);
            Vec g = down(gy, n);
            check_bits("dropout_fwd y", shape, g.data(), y.data(), n * 4);
            poison(gy, n * 4);
            cuda_dropout_bwd(gy, gx, n, p, s + 1);
            g = down(gy, n);
            check_bits("dropout_bwd dx", shape, g.data(), dx.data(), n * 4);
            cuda_dropout_fwd(gx, gx, n, p, s);   // in place
            g = down(gx, n);
            check_bits("dropout_fwd in place", shape, g.data(), y.data(), n * 4);
        }
}

static void test_positions(void) {
    const int Ts[] = {1, 63, 64, 65, 4096};
    for (int T : Ts)
        for (int D : kCols) {
            if (g_quick && T > 100) continue;
            const int B = 3;
            seed(600 + T * 3 + D);
            Vec x = randn((size_t)B * T * D), y = x;
            op_add_positions(y.data(), B, T, D);
            Pool P;
            float *gx = P.up(x);
            char shape[64];
            snprintf(shape, sizeof shape, "B%d T%d D%d", B, T, D);
            cuda_add_positions(gx, B, T, D);
            compare("add_positions x+=", shape, down(gx, y.size()), y, TOL_D);
        }
}

// ======================================================================================================
// mean pooling, pair features
// ======================================================================================================
static void test_pool(void) {
    const int Ts[] = {1, 63, 64, 65, 4096};
    for (int T : Ts)
        for (int D : kCols) {
            if (g_quick && T > 100) continue;
            const int B = 5;
            seed(700 + T * 3 + D);
            std::vector<int32_t> lens(B);
            for (int b = 0; b < B; b++) lens[b] = b == 0 ? T : b == 1 ? 1 : 1 + (int32_t)(next_u64() % T);
            Vec x = randn((size_t)B * T * D), dy = randn((size_t)B * D), y((size_t)B * D), yf((size_t)B * D),
                dx((size_t)B * T * D), dxf((size_t)B * T * D);
            op_pool_mean_fwd(y.data(), x.data(), lens.data(), B, T, D);
            op_pool_mean_fwd(yf.data(), x.data(), NULL, B, T, D);
            op_pool_mean_bwd(dx.data(), dy.data(), lens.data(), B, T, D);
            op_pool_mean_bwd(dxf.data(), dy.data(), NULL, B, T, D);
            Pool P;
            float *gx = P.up(x), *gdy = P.up(dy), *gy = P.f(y.size()), *gdx = P.f(dx.size());
            int32_t *gl = P.up(lens);
            char shape[64];
            snprintf(shape, sizeof shape, "B%d T%d D%d", B, T, D);
            poison(gy, y.size() * 4);
            cuda_pool_mean_fwd(gy, gx, gl, B, T, D);
            compare("pool_mean_fwd y", shape, down(gy, y.size()), y, TOL_D);
            poison(gy, y.size() * 4);
            cuda_pool_mean_fwd(gy, gx, NULL, B, T, D);
            compare("pool_mean_fwd y (lens NULL)", shape, down(gy, y.size()), yf, TOL_D);
            poison(gdx, dx.size() * 4);
            cuda_pool_mean_bwd(gdx, gdy, gl, B, T, D);
            compare("pool_mean_bwd dx", shape, down(gdx, dx.size()), dx, TOL_D);
            poison(gdx, dx.size() * 4);
            cuda_pool_mean_bwd(gdx, gdy, NULL, B, T, D);
            compare("pool_mean_bwd dx (lens NULL)", shape, down(gdx, dx.size()), dxf, TOL_D);
        }
}

static void test_pair(void) {
    const int Bs[] = {1, 63, 64, 65};
    for (int B : Bs)
        for (int D : kCols) {
            seed(800 + B * 3 + D);
            Vec a = randn((size_t)B * D), b = randn((size_t)B * D), df = randn((size_t)B * 4 * D), f((size_t)B * 4 * D),
                da((size_t)B * D), db((size_t)B * D);
            op_pair_features_fwd(f.data(), a.data(), b.data(), B, D);
            op_pair_features_bwd(da.data(), db.data(), df.data(), a.data(), b.data(), B, D);
            Pool P;
            float *ga = P.up(a), *gb = P.up(b), *gdf = P.up(df), *gf = P.f(f.size()), *gda = P.f(da.size()),
                  *gdb = P.f(db.size());
            char shape[64];
            snprintf(shape, sizeof shape, "B%d D%d", B, D);
            poison(gf, f.size() * 4);
            cuda_pair_features_fwd(gf, ga, gb, B, D);
            compare("pair_features_fwd f", shape, down(gf, f.size()), f, TOL_D);
            poison(gda, da.size() * 4);
            poison(gdb, db.size() * 4);
            cuda_pair_features_bwd(gda, gdb, gdf, ga, gb, B, D);
            compare("pair_features_bwd da", shape, down(gda, da.size()), da, TOL_D);
            compare("pair_features_bwd db", shape, down(gdb, db.size()), db, TOL_D);
            cuda_set_gemm_precision(2);
            void *of = opnd_buf(P, f.size());
            poison(of, f.size() * 2);
            cuda_pair_features_fwd(of, ga, gb, B, D);
            compare("pair_features_fwd f bf16", shape, opnd_down(of, f.size()), f, TOL_OPND);
            cuda_set_gemm_precision(1);
        }
}

// ======================================================================================================
// determinism: the reductions run twice give the same bits
// ======================================================================================================
static void test_determinism(void) {
    const int64_t N = g_quick ? 100 : 4096 * 16;
    const int C = 512, B = 16, T = (int)(N / 16);
    seed(900);
    Vec x = randn(N * C, 1, 0.5), w = randn(C, 0.1, 1), b = randn(C), dy = randn(N * C);
    std::vector<int32_t> lens(B);
    for (auto &l : lens) l = 1 + (int32_t)(next_u64() % T);
    Pool P;
    float *gx = P.up(x), *gw = P.up(w), *gb = P.up(b), *gdy = P.up(dy), *gy = P.f(N * C);
    int32_t *gl = P.up(lens);
    char shape[64];
    snprintf(shape, sizeof shape, "N%lld C%d", (long long)N, C);
    std::vector<Vec> r[2];
    for (int k = 0; k < 2; k++) {
        float *db = P.f(C), *dw = P.f(C), *dw2 = P.f(C), *db2 = P.f(C), *m = P.f(C), *rs = P.f(C), *dx = P.f(N * C),
              *pool = P.f((size_t)B * C), *lm = P.f(N), *lr = P.f(N);
        cuda_zero(db, C);
        cuda_zero(dw, C);
        cuda_zero(dw2, C);
        cuda_zero(db2, C);
        cuda_bias_bwd(db, gdy, N, C);
        cuda_batchnorm_fwd(gy, m, rs, NULL, NULL, gx, NULL, gw, gb, N, C, rows_all(), 1e-5, 0.1, 1);
        cuda_batchnorm_bwd(dx, 0, dw, db2, gdy, gx, gw, m, rs, N, C, rows_all());
        r[k].push_back(down(db, C));
        r[k].push_back(down(m, C));
        r[k].push_back(down(rs, C));
        r[k].push_back(down(dx, N * C));
        r[k].push_back(down(dw, C));
        r[k].push_back(down(db2, C));
        cuda_layernorm_fwd(gy, lm, lr, gx, NULL, gw, gb, N, C, 1e-5);
        cuda_layernorm_bwd(NULL, 0, dw2, NULL, gdy, gx, gw, lm, lr, N, C);
        r[k].push_back(down(lm, N));
        r[k].push_back(down(lr, N));
        r[k].push_back(down(dw2, C));
        cuda_pool_mean_fwd(pool, gx, gl, B, T, C);
        r[k].push_back(down(pool, (size_t)B * C));
    }
    const char *nm[] = {"determinism bias_bwd db",  "determinism batchnorm mean", "determinism batchnorm rstd",
                        "determinism batchnorm dx", "determinism batchnorm dw",   "determinism batchnorm db",
                        "determinism layernorm mean", "determinism layernorm rstd", "determinism layernorm dw",
                        "determinism pool_mean y"};
    for (size_t i = 0; i < r[0].size(); i++)
        check_bits(nm[i], shape, r[0][i].data(), r[1][i].data(), r[0][i].size() * 4);
}

// ======================================================================================================
// the column scans of the 2-D mixer (op_hgru_cols_fwd/bwd)
// ======================================================================================================
// h with NaN in the first `used` values of every row of stride ld (what an op must write), the gaps kept
static Vec nan_rows(const Vec &h, int64_t rows, int64_t ld, int64_t used) {
    Vec r = h;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < used; j++) r[i * ld + j] = NAN;
    return r;
}

static void test_cols_one(int S, int gh, int gw, int H, int K) {
    const int Dv = K;
    const int64_t N = (int64_t)S * gh * gw, HK = (int64_t)H * K, HD = (int64_t)H * Dv;
    const int64_t ldv = HD + (gw % 2 ? 5 : 4), lddv = HD + 3, nqk = N * HK;
    seed(900 + gh * 131 + gw * 7 + K);
    Vec q = randn(nqk), k(nqk), g(nqk), v = randn(N * ldv), dout = randn(N * HD);
    for (int64_t i = 0; i < nqk; i++) {   // gates as the model makes them: g = log(lam), k = 1 - lam
        const double lam = 0.5 + 0.49 * urand();
        g[i] = (float)log(lam);
        k[i] = (float)(1 - lam);
    }
    const Vec o0 = randn(N * HD), dq0 = randn(nqk), dk0 = randn(nqk), dg0 = randn(nqk), dv0 = randn(N * lddv);
    Pool P;
    float *gq = P.up(q), *gk = P.up(k), *gg = P.up(g), *gv = P.up(v), *gdo = P.up(dout);
    float *go = P.f(o0.size()), *gdq = P.f(nqk), *gdk = P.f(nqk), *gdg = P.f(nqk), *gdv = P.f(dv0.size());
    char shape[96];
    snprintf(shape, sizeof shape, "S%d %dx%d H%d K%d Dv%d", S, gh, gw, H, K, Dv);
    for (int rev = 0; rev < 2; rev++)
        for (int acc = 0; acc < 2; acc++) {
            char sh[128];
            snprintf(sh, sizeof sh, "%s rev %d acc %d", shape, rev, acc);
            Vec o = o0, dq = dq0, dk = dk0, dg = dg0, dv = dv0;
            op_hgru_cols_fwd(o.data(), q.data(), k.data(), g.data(), v.data(), ldv, S, gh, gw, H, K, Dv, 0, rev, acc);
            op_hgru_cols_bwd(dq.data(), dk.data(), dg.data(), dv.data(), lddv, dout.data(), q.data(), k.data(),
                             g.data(), v.data(), ldv, S, gh, gw, H, K, Dv, 0, rev, acc);
            if (acc) { set(go, o0); set(gdq, dq0); set(gdk, dk0); set(gdg, dg0); set(gdv, dv0); }
            else {
                poison(go, o0.size() * 4); poison(gdq, nqk * 4); poison(gdk, nqk * 4); poison(gdg, nqk * 4);
                set(gdv, nan_rows(dv0, N, lddv, HD));   // the gaps random: they must come back untouched
            }
            cuda_hgru_cols_fwd(go, gq, gk, gg, gv, ldv, S, gh, gw, H, K, Dv, 0, rev, acc);
            cuda_hgru_cols_bwd(gdq, gdk, gdg, gdv, lddv, gdo, gq, gk, gg, gv, ldv, S, gh, gw, H, K, Dv, 0, rev, acc);
            compare("hgru_cols_fwd o", sh, down(go, o.size()), o, 1e-5);
            compare("hgru_cols_bwd dq", sh, down(gdq, nqk), dq, 2e-5);
            compare("hgru_cols_bwd dk", sh, down(gdk, nqk), dk, 2e-5);
            compare("hgru_cols_bwd dg", sh, down(gdg, nqk), dg, 5e-5);
            compare("hgru_cols_bwd dv (strided, gaps kept)", sh, down(gdv, dv.size()), dv, 2e-5);
        }
}

static void test_cols(void) {
    printf("-- hgru_cols (the column scans read in place)\n");
    // columns of 128 rows or more also run in chunks of time (mixer_small.cuh): both ways; 200 x 3: a last
    // chunk of 8 rows
    static const int grids[][2] = {{1, 1}, {7, 9}, {32, 32}, {128, 128}, {200, 3}};
    for (auto &gr : grids)
        for (int K : {1, 2, 4}) {
            if (g_quick && gr[0] > 32) continue;
            for (int mode = gr[0] >= 128 ? 0 : -1; mode <= (gr[0] >= 128 ? 1 : -1); mode++) {
                if (mode >= 0) printf("-- %d x %d, K %d, chunks of time %s\n", gr[0], gr[1], K, mode ? "on" : "off");
                cuda_hgru_small_chunks(mode);
                test_cols_one(gr[0] > 32 ? 1 : 3, gr[0], gr[1], gr[0] > 32 ? 2 : 3, K);
            }
            cuda_hgru_small_chunks(-1);
        }
}

// ======================================================================================================
// pixels: 8-bit images staged (normalised, mixed, placed), bit for bit: both sides look the same double up in
// the same table, mix it with the same fma and round it once; the placement is the caller's offsets
// ======================================================================================================
static void test_pixels(void) {
    struct { int n, gh, gw, chans, patch; } shapes[] = {{1, 1, 1, 1, 1}, {3, 7, 9, 3, 1}, {4, 28, 28, 1, 4},
                                                         {5, 32, 32, 3, 1}, {2, 224, 224, 3, 14}, {7, 65, 63, 3, 1}};
    for (auto sh : shapes) {
        const int n = sh.n, gh = sh.gh, gw = sh.gw, C = sh.chans, p = sh.patch;
        if (g_quick && gh > 100) continue;
        seed(900 + n * 7 + gh);
        const int64_t vals = (int64_t)gh * gw * C;
        std::vector<uint8_t> src((size_t)n * vals);
        for (auto &v : src) v = (uint8_t)(next_u64() >> 56);
        std::vector<double> lut((size_t)C * 256);
        for (int ch = 0; ch < C; ch++)
            for (int i = 0; i < 256; i++) lut[ch * 256 + i] = (i / 255.0 - 0.45 + 0.01 * ch) / (0.22 + 0.003 * ch);
        // offsets: p x p patches in raster order of patches (p 1: the raster order itself)
        std::vector<int64_t> yoff(gh), xoff(gw);
        const int pw = gw / p;
        for (int y = 0; y < gh; y++) yoff[y] = ((int64_t)(y / p) * pw * p * p + (int64_t)(y % p) * p) * C;
        for (int x = 0; x < gw; x++) xoff[x] = ((int64_t)(x / p) * p * p + x % p) * C;
        uint8_t *gs = (uint8_t *)cuda_alloc(src.size(), "test buffer");
        double *gl = (double *)cuda_alloc(lut.size() * 8, "test buffer");
        int64_t *gy = (int64_t *)cuda_alloc(gh * 8, "test buffer"), *gxo = (int64_t *)cuda_alloc(gw * 8, "test buffer");
        cuda_to_device(gs, src.data(), src.size());
        cuda_to_device(gl, lut.data(), lut.size() * 8);
        cuda_to_device(gy, yoff.data(), gh * 8);
        cuda_to_device(gxo, xoff.data(), gw * 8);
        Pool P;
        float *gx = P.f((size_t)n * vals);
        const struct { int mix; double lam; int y0, y1, x0, x1; const char *name; } mixes[] = {
            {0, 1, 0, 0, 0, 0, "plain"}, {1, 0.3719, 0, 0, 0, 0, "mixup"},
            {2, 1, gh / 3, gh / 3 + (gh + 1) / 2, gw / 4, gw / 4 + (gw + 2) / 2, "cutmix"}};
        for (auto mx : mixes) {
            Vec x((size_t)n * vals);
            op_pixels_stage(x.data(), src.data(), lut.data(), yoff.data(), xoff.data(), n, gh, gw, C, mx.mix, mx.lam,
                            mx.y0, mx.y1, mx.x0, mx.x1);
            poison(gx, x.size() * 4);
            cuda_pixels_stage(gx, gs, gl, gy, gxo, n, gh, gw, C, mx.mix, mx.lam, mx.y0, mx.y1, mx.x0, mx.x1);
            Vec g = down(gx, x.size());
            char shape[96];
            snprintf(shape, sizeof shape, "%s n%d %dx%d C%d patch %d", mx.name, n, gh, gw, C, p);
            check_bits("pixels_stage x", shape, g.data(), x.data(), x.size() * 4);
        }
        cuda_free(gs); cuda_free(gl); cuda_free(gy); cuda_free(gxo);
    }
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) g_quick = 1;
        else {
            fprintf(stderr, "usage: %s [--quick]\n", argv[0]);
            return EXIT_USAGE;
        }
    }
    cuda_init();
    cuda_set_gemm_precision(1);   // operands in fp32; a check of the bf16 operands sets mode 2 and returns
    printf("-- CUDA classification ops against the CPU ops on %s\n", cuda_device_name());
    test_bias();
    test_layernorm();
    test_batchnorm();
    test_rows();
    test_gelu();
    test_lra_acts();
    test_lra_bf16();
    test_dropout();
    test_positions();
    test_pool();
    test_pair();
    test_determinism();
    test_cols();
    test_pixels();
    return gpu_check_summary();
}
