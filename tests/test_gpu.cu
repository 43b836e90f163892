// tests/test_gpu.cu: every CUDA op (kernels.cu, cuda_*) against the CPU op (cpu.c in its float build, op_*).
//
// Each check draws fresh random inputs (gates as the model makes them: g = logsigmoid(x) <= 0, k = 1 - exp(g)),
// runs both backends and prints one line: the op, the shape, the relative error |gpu - cpu| / |cpu| (2-norms over
// the whole output), the largest elementwise error over the largest |cpu|, and the tolerance. A check passes
// when the relative error is within the tolerance and the elementwise one within 10x it; NaN fails.
// GPU outputs are poisoned with NaN (bytes 0xFF) before each op, so an element the op forgets to write fails;
// "+=" outputs start from the same random values on both sides; strided outputs keep random values in the
// gaps between rows, which must come back untouched.
//
// Tolerances (fp32 storage everywhere):
//   elementwise ops, same formulas: 2e-6 (CUDA's expf/log1pf are within 2 ulp of glibc's)
//   reductions (norms, column sums, softmax, embedding gradient, the recurrence): 1e-5
//   hgru backward dq, dk, dv: 2e-5; dg: 5e-5, because the GPU gets it from the identity dg_t =
//     sum_{s>=t} (q_s dq_s - k_s dk_s), which cancels: float rounding of dq and dk (1e-7) grows to ~5e-6 at
//     T = 2048 (the CPU recurrent oracle computes dg directly)
//   hgru backward on inputs whose dq cancels (a state of near rank one, do orthogonal to o, as the authors'
//     layer can make them): against float64, dq, dk and dv within 4 times the CPU recurrence's own float32
//     error on them, dg within 4 times that of the identity above summed over the recurrence's dq and dk
//   rotary positions: 2e-6, as the elementwise ops (angles, cos and sin in double on both sides)
//   attention: 4 u sqrt(n) with u = 2^-24, n = hd + Tk for the forward, 2 hd + T for the backward (derived
//     above test_attention_one): 3e-6 at T 63 and hd 64, 8e-6 at T 1000 and hd 128
//   cuDNN's bf16 attention (a build with cuDNN): 2^-7 against the CPU on the fp32 inputs, 2^-8 against the
//     CPU on the inputs rounded to bf16 (derived above test_attention_cudnn_one)
//   matmul: exact fp32 GEMM 1e-5; TF32 (10-bit mantissa inputs) 2e-3; bf16 (7-bit) 1.5e-2
//   hgru on tensor cores (chunk 64, bf16 operands): each operand rounds by up to 2^-8 relative (~2^-9 in the
//     mean square), a product of two by ~2^-8.5 in the mean square, and a sum of products of mixed signs keeps
//     that relative size in the 2-norm; o goes through two such products (qs S, with S itself a sum of bf16
//     products): ~4e-3, held to 1e-2 (as the bf16 GEMM). dq, dk, dv likewise 1e-2. dg is a sum of up to 64 terms w = q dq - k dk that largely
//     cancel (the true dg is small next to sum |w|, as the fp32 case shows), held to 3e-2.
//
// Also: determinism (the backward ops and the reductions run twice give the same bits), the gradients' reduction
// in buckets on NCCL's stream (a communicator of this one GPU: the streams' order) and, with --bench,
// timings of the HGRU2 forward and forward+backward at B 8, T 2048, H 6, K = Dv = 128 (median of 20 after
// warm-up, CUDA events) with the achieved bandwidth of their compulsory traffic, and of a bidirectional mixer
// (causal + reverse) against two causal passes at that shape.
//
// --quick runs only the small shapes (a smoke test in seconds). --no-nccl leaves out the NCCL check: the
// sanitizer runs use it, as NCCL's own start-up asks the driver about kernels of GPU architectures the
// library holds no code for, and the sanitizer counts each such refused query as an error of the program.
// Exit status 1 when any check fails.
#include "gpu_check.h"
extern "C" {
#include "../ops.h"
}
#include <algorithm>
#include <string>

// Gates as the model makes them: g = logsigmoid(x) <= 0 (one in ten strongly forgetting), k = 1 - exp(g).
// steep(i): whether element i may draw a nearly closed gate (10% of them, g in [-30, -10])
template <typename F> static void gates_like(Vec &g, Vec &k, size_t n, F steep) {
    g.resize(n);
    k.resize(n);
    for (size_t i = 0; i < n; i++) {
        double x = steep(i) && urand() < 0.1 ? -10 - 20 * urand() : 2 * nrand() + 1;
        double lg = x > 0 ? -log1p(exp(-x)) : x - log1p(exp(x));
        g[i] = (float)lg;
        k[i] = (float)(-expm1(lg));
    }
}

// a strided buffer for the GPU: the host values in the gaps, NaN in the `used` leading columns of every row
static Vec poisoned_rows(const Vec &h, int64_t rows, int64_t ld, int64_t used) {
    Vec p = h;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < used; c++) p[r * ld + c] = NAN;
    return p;
}

// nb random bytes: an operand buffer's contents before an op writes part of it
static std::vector<uint8_t> random_bytes(size_t nb) {
    std::vector<uint8_t> b(nb);
    for (auto &v : b) v = (uint8_t)next_u64();
    return b;
}
// The bytes of an operand buffer of N rows of ld values (os bytes each: bf16 rounded to nearest even, or fp32)
// once columns [col0, col0 + C) are set from src's rows (stride sld), the rest left as they are in buf
static std::vector<uint8_t> opnd_cols_bytes(std::vector<uint8_t> buf, int64_t N, int64_t ld, int64_t col0, int64_t C,
                                            const float *src, int64_t sld, size_t os) {
    for (int64_t r = 0; r < N; r++)
        for (int64_t c = 0; c < C; c++) {
            const float v = src[r * sld + c];
            const uint16_t b = bf16_bits(v);
            memcpy(&buf[(r * ld + col0 + c) * os], os == 2 ? (const void *)&b : (const void *)&v, os);
        }
    return buf;
}

static void *opnd_of(Pool &P, const float *d, size_t n) {   // a device operand holding device values d
    void *o = opnd_buf(P, n);
    cuda_to_opnd(o, d, n);
    return o;
}

static void check_scalar(const char *op, const char *shape, double gpu, double cpu, double tol) {
    double rel = fabs(gpu - cpu) / (fabs(cpu) > 0 ? fabs(cpu) : 1);
    bool ok = rel <= tol;
    printf("%s  %-26s %-40s rel %.2e  (gpu %.10g cpu %.10g)  tol %.0e\n", ok ? "PASS" : "FAIL", op, shape, rel, gpu,
           cpu, tol);
    ok ? n_pass++ : n_fail++;
}

#define TOL_EW 2e-6
#define TOL_RED 1e-5
// An output stored as a bf16 operand: rounding to nearest with 8 significant bits changes each value by at
// most half a unit in the last place, 2^-8 (3.9e-3) relative just above a power of two, on top of the fp32
// differences above.
#define TOL_OPND 4e-3

// ======================================================================================================
// matmul, in the three GEMM precisions
// ======================================================================================================
static void test_matmul(void) {
    // N up to 8 in bf16: decoding's own kernel (dense.cuh), also where I is no multiple of 8 (cuBLAS then)
    struct { int64_t N; int I, O; } sh[] = {{1, 128, 128},  {63, 256, 768},  {64, 768, 256},
                                            {65, 128, 768}, {2048, 768, 768}, {2048, 256, 128},
                                            {1, 2048, 6144}, {4, 1024, 50257}, {8, 5632, 512}, {3, 100, 64},
                                            {7, 8, 1}, {2, 1032, 33}};
    const double tol[3] = {1e-5, 2e-3, 1.5e-2};
    const char *mname[3] = {"fp32", "tf32", "bf16"};
    for (auto s : sh) {
        // (--quick, the sanitizers' run, leaves out the large ones: racecheck reports hazards inside cuBLAS's own
        // split-K kernels, which it picks for the fp32 products of a few rows against a large matrix)
        if (g_quick && (s.N > 100 || (int64_t)s.I * s.O > 1000000)) continue;
        seed(100 + s.N + s.I + s.O);
        Vec x = randn(s.N * s.I), W = randn((size_t)s.O * s.I, 0.05), dy = randn(s.N * s.O), dW0 = randn((size_t)s.O * s.I);
        Vec y(s.N * s.O), dx(s.N * s.I), dW = dW0;
        op_matmul_fwd(y.data(), x.data(), W.data(), s.N, s.I, s.O);
        op_matmul_bwd(dx.data(), dW.data(), dy.data(), x.data(), W.data(), s.N, s.I, s.O);
        Pool P;
        float *gx = P.up(x), *gW = P.up(W), *gdy = P.up(dy), *gy = P.f(y.size()), *gdx = P.f(dx.size()),
              *gdW = P.f(dW.size());
        for (int m = 0; m < 3; m++) {
            cuda_set_gemm_precision(m);
            const void *ox = opnd_of(P, gx, x.size()), *ody = opnd_of(P, gdy, dy.size());   // bf16 in mode 2
            char shape[96], op[32];
            snprintf(shape, sizeof shape, "N%lld I%d O%d", (long long)s.N, s.I, s.O);
            poison(gy, y.size() * 4);
            cuda_matmul_fwd(gy, ox, gW, s.N, s.I, s.O);
            snprintf(op, sizeof op, "matmul_fwd y %s", mname[m]);
            compare(op, shape, down(gy, y.size()), y, tol[m]);
            void *oy = opnd_buf(P, y.size());   // y as an operand (rounded once more in mode 2)
            poison(oy, y.size() * cuda_opnd_size());
            cuda_matmul_fwd_opnd(oy, ox, gW, s.N, s.I, s.O);
            snprintf(op, sizeof op, "matmul_fwd_opnd y %s", mname[m]);
            compare(op, shape, opnd_down(oy, y.size()), y, tol[m] + (m == 2 ? TOL_OPND : 0));
            poison(gdx, dx.size() * 4);
            set(gdW, dW0);
            cuda_matmul_bwd(gdx, gdW, ody, ox, gW, s.N, s.I, s.O);
            snprintf(op, sizeof op, "matmul_bwd dx %s", mname[m]);
            compare(op, shape, down(gdx, dx.size()), dx, tol[m]);
            snprintf(op, sizeof op, "matmul_bwd dW+= %s", mname[m]);
            compare(op, shape, down(gdW, dW.size()), dW, tol[m]);
            // one output at a time (the other NULL)
            set(gdW, dW0);
            cuda_matmul_bwd(NULL, gdW, ody, ox, gW, s.N, s.I, s.O);
            poison(gdx, dx.size() * 4);
            cuda_matmul_bwd(gdx, NULL, ody, ox, gW, s.N, s.I, s.O);
            snprintf(op, sizeof op, "matmul_bwd dx only %s", mname[m]);
            compare(op, shape, down(gdx, dx.size()), dx, tol[m]);
            snprintf(op, sizeof op, "matmul_bwd dW only %s", mname[m]);
            compare(op, shape, down(gdW, dW.size()), dW, tol[m]);
        }
    }
    cuda_set_gemm_precision(1);
    // the conversion itself: round to nearest even, bit for bit, at aligned and unaligned starts
    cuda_set_gemm_precision(2);
    for (int64_t n : {1, 7, 1000, 100003}) {
        seed(190 + n);
        Vec x = randn(n + 3, 100);
        Pool P;
        float *gx = P.up(x);
        for (int off = 0; off < 2; off++) {
            uint16_t *go = (uint16_t *)opnd_buf(P, n + 1);
            cuda_to_opnd(go + off, gx + off, n);
            std::vector<uint16_t> got(n), want(n);
            cuda_to_host(got.data(), go + off, n * 2);
            for (int64_t i = 0; i < n; i++) want[i] = bf16_bits(x[off + i]);
            char shape[64];
            snprintf(shape, sizeof shape, "n %lld, offset %d", (long long)n, off);
            check_bits("to_opnd bf16", shape, got.data(), want.data(), n * 2);
        }
    }
    // columns of rows: C of N rows from rows of ldx at column ox into rows of ldy at column oy, the rest of y's
    // rows untouched; bf16 (four a thread where aligned: C, ldx, ldy multiples of 4 and the starts aligned) and
    // fp32 (a 2-D copy)
    const int cs[][6] = {{1, 1, 3, 0, 5, 2}, {63, 128, 384, 256, 384, 256}, {65, 130, 390, 260, 392, 261},
                         {2048, 768, 2304, 1536, 2304, 1536}, {1000, 64, 260, 196, 256, 192}, {7, 5, 9, 3, 6, 1}};
    for (auto &cc : cs) {
        const int64_t N = cc[0];
        const int C = cc[1], ldx = cc[2], ox = cc[3], ldy = cc[4], oy = cc[5];
        seed(170 + N + C);
        Vec x = randn(N * ldx, 10);
        Pool P;
        float *gx = P.up(x);
        for (int mode : {2, 1}) {
            cuda_set_gemm_precision(mode);
            const size_t os = cuda_opnd_size(), nb = (size_t)N * ldy * os;
            const std::vector<uint8_t> pat = random_bytes(nb), want = opnd_cols_bytes(pat, N, ldy, oy, C, &x[ox], ldx, os);
            std::vector<uint8_t> got(nb);
            char *gy = (char *)opnd_buf(P, (size_t)N * ldy);
            cuda_to_device(gy, pat.data(), nb);
            cuda_to_opnd_cols(gy + oy * os, ldy, gx + ox, ldx, N, C);
            cuda_to_host(got.data(), gy, nb);
            char shape[96];
            snprintf(shape, sizeof shape, "N %lld C %d, x %d+%d, y %d+%d", (long long)N, C, ldx, ox, ldy, oy);
            check_bits(mode == 2 ? "to_opnd_cols bf16" : "to_opnd_cols fp32", shape, got.data(), want.data(), nb);
        }
    }
    cuda_set_gemm_precision(1);
}

// ======================================================================================================
// embedding
// ======================================================================================================
static void test_embed(void) {
    struct { int64_t N; int D, V; const char *what; } sh[] = {
        {1, 128, 37, ""}, {63, 256, 37, ""}, {64, 768, 37, ""}, {65, 128, 37, ""},
        {8192, 256, 37, "(few ids, long runs)"}, {8192, 768, 50304, ""}, {4096, 128, 1, "(one id)"},
        {3000, 768, 3, ""}, {2048, 768, 2048, ""}, {4096, 64, 256, "(one digit)"}, {4096, 64, 257, "(two digits)"},
        {3000, 64, 70000, "(three digits)"}, {3000, 2, 1 << 24, "(three digits, the last full)"},
        {3000, 2, 1 << 25, "(four digits)"},
        // the shared-memory table of small vocabularies: ListOps' 18 ids, several blocks and a ragged last one,
        // the largest table that fits (D 64: 48 ids), one just past it (the sort), D that does not divide 256
        {32768, 64, 18, "(ListOps' vocabulary)"}, {35001, 64, 18, "(ListOps', ragged)"}, {5000, 64, 48, "(table full)"},
        {5000, 64, 49, "(table too big: sorted)"}, {3001, 100, 20, ""}, {2500, 3, 16, ""}};
    for (auto s : sh) {
        if (g_quick && s.N * s.D > 3000 * 768) continue;
        seed(200 + s.N + s.D + s.V);
        std::vector<int32_t> ids(s.N);
        for (auto &id : ids) id = (int32_t)(next_u64() % s.V);
        Vec E = randn((size_t)s.V * s.D), dx = randn(s.N * s.D), dE0 = randn((size_t)s.V * s.D);
        Vec x(s.N * s.D), dE = dE0;
        op_embed_fwd(x.data(), ids.data(), E.data(), s.N, s.D);
        op_embed_bwd(dE.data(), dx.data(), ids.data(), s.N, s.D, s.V);
        Pool P;
        int32_t *gid = P.up(ids);
        float *gE = P.up(E), *gdx = P.up(dx), *gdE = P.up(dE0), *gx = P.f(x.size());
        poison(gx, x.size() * 4);
        cuda_embed_fwd(gx, gid, gE, s.N, s.D);
        cuda_embed_bwd(gdE, gdx, gid, s.N, s.D, s.V);
        char shape[96];
        snprintf(shape, sizeof shape, "N%lld D%d V%d %s", (long long)s.N, s.D, s.V, s.what);
        compare("embed_fwd x", shape, down(gx, x.size()), x, 0);
        compare("embed_bwd dE+=", shape, down(gdE, dE.size()), dE, TOL_RED);
        if (s.D <= 256 && s.V <= 48) {   // the sort, where the table would be taken
            float *gdE2 = P.up(dE0);
            cuda_embed_small_table(0);
            cuda_embed_bwd(gdE2, gdx, gid, s.N, s.D, s.V);
            cuda_embed_small_table(-1);
            compare("embed_bwd dE+= (sorted)", shape, down(gdE2, dE.size()), dE, TOL_RED);
        }
    }
}

// ======================================================================================================
// zero, sumsq
// ======================================================================================================
static void test_elementwise(void) {
    int64_t ns[] = {1, 1000, 100003, 12582912};
    for (int64_t n : ns) {
        if (g_quick && n > 100003) continue;
        seed(300 + n);
        Vec y = randn(n), a = randn(n);
        Pool P;
        float *gy = P.up(y), *ga = P.up(a);
        char shape[64];
        snprintf(shape, sizeof shape, "n %lld", (long long)n);
        poison(gy, n * 4);
        cuda_zero(gy, n);
        Vec z(n, 0.f);
        Vec r = down(gy, n);
        check_bits("zero", shape, r.data(), z.data(), n * 4);
        check_scalar("sumsq", shape, cuda_sumsq(ga, n), op_sumsq(a.data(), n), 1e-10);
    }
}

// ======================================================================================================
// RMSNorm
// ======================================================================================================
static void test_rmsnorm(void) {
    // the forward's blocks take from one row (N 1 to 65) to 15 (4096) and 16 (5000, the last block half full)
    int64_t Ns[] = {1, 63, 64, 65, 4096, 5000};
    // rows held in registers by up to 256 threads, 1, 2 or 4 float4 groups each: 128, 256, 768, 2048 (the 1.13B
    // model's width), 2100 (4 groups, the last thread's partly past the row); 130: rows that are not whole
    // float4s, loaded column by column; 4098: past the registers, the one-warp-per-row kernels
    int Cs[] = {128, 130, 256, 768, 2048, 2100, 4098};
    const double eps = 1e-6;
    for (int64_t N : Ns)
        for (int C : Cs) {
            if (g_quick && N > 100) continue;
            seed(400 + N * 3 + C);
            Vec x = randn(N * C), w(C), dy = randn(N * C), dw0 = randn(C);
            for (auto &v : w) v = (float)(1 + 0.1 * nrand());
            Vec y(N * C), rstd(N), dx(N * C), dw = dw0;
            op_rmsnorm_fwd(y.data(), rstd.data(), x.data(), NULL, w.data(), N, C, eps);
            op_rmsnorm_bwd(dx.data(), 0, dw.data(), dy.data(), x.data(), w.data(), rstd.data(), N, C, eps);
            Vec dxp = randn(N * C), dxa = dxp;   // acc = 1 adds to a gradient already there
            op_rmsnorm_bwd(dxa.data(), 1, NULL, dy.data(), x.data(), w.data(), rstd.data(), N, C, eps);
            Pool P;
            float *gx = P.up(x), *gw = P.up(w), *gdy = P.up(dy), *gy = P.f(y.size()), *gr = P.f(N),
                  *gdx = P.f(dx.size()), *gdw = P.up(dw0);
            char shape[64];
            snprintf(shape, sizeof shape, "N%lld C%d", (long long)N, C);
            poison(gy, y.size() * 4);
            poison(gr, N * 4);
            cuda_rmsnorm_fwd(gy, gr, gx, NULL, gw, N, C, eps);
            compare("rmsnorm_fwd y", shape, down(gy, y.size()), y, TOL_RED);
            compare("rmsnorm_fwd rstd", shape, down(gr, N), rstd, TOL_RED);
            poison(gy, y.size() * 4);
            cuda_rmsnorm_fwd(gy, NULL, gx, NULL, gw, N, C, eps);
            compare("rmsnorm_fwd y (no rstd)", shape, down(gy, y.size()), y, TOL_RED);
            {   // the backward's copy of y from the kept rstd: against the CPU, and the forward's own bits
                Vec ys(N * C);
                op_rmsnorm_scale(ys.data(), x.data(), rstd.data(), w.data(), N, C);
                float *gys = P.f(y.size());
                poison(gys, y.size() * 4);
                cuda_rmsnorm_scale(gys, gx, gr, gw, N, C);
                compare("rmsnorm_scale y", shape, down(gys, y.size()), ys, TOL_RED);
                check_bits("rmsnorm_scale y == rmsnorm_fwd y", shape, down(gys, y.size()).data(),
                           down(gy, y.size()).data(), y.size() * 4);
            }
            {   // y as a bf16 operand
                cuda_set_gemm_precision(2);
                void *oy = opnd_buf(P, y.size()), *os = opnd_buf(P, y.size());
                poison(oy, y.size() * 2);
                cuda_rmsnorm_fwd(oy, NULL, gx, NULL, gw, N, C, eps);
                compare("rmsnorm_fwd y bf16", shape, opnd_down(oy, y.size()), y, TOL_OPND);
                poison(os, y.size() * 2);
                cuda_rmsnorm_scale(os, gx, gr, gw, N, C);
                check_bits("rmsnorm_scale y bf16 == rmsnorm_fwd y bf16", shape, opnd_down(os, y.size()).data(),
                           opnd_down(oy, y.size()).data(), y.size() * 4);
                cuda_set_gemm_precision(1);
            }
            {   // with a residual: x += res in place, then the norm of the sum
                Vec res = randn(N * C), xs = x, ys(N * C), rs(N);
                op_rmsnorm_fwd(ys.data(), rs.data(), xs.data(), res.data(), w.data(), N, C, eps);
                float *gxs = P.up(x), *gres = P.up(res), *gys = P.f(y.size()), *grs = P.f(N);   // (gr stays for below)
                poison(gys, y.size() * 4);
                poison(grs, N * 4);
                cuda_rmsnorm_fwd(gys, grs, gxs, gres, gw, N, C, eps);
                compare("rmsnorm_fwd res: x+=", shape, down(gxs, xs.size()), xs, TOL_EW);
                compare("rmsnorm_fwd res: y", shape, down(gys, y.size()), ys, TOL_RED);
                compare("rmsnorm_fwd res: rstd", shape, down(grs, N), rs, TOL_RED);
            }
            for (int saved = 1; saved >= 0; saved--) {
                poison(gdx, dx.size() * 4);
                set(gdw, dw0);
                cuda_rmsnorm_bwd(gdx, 0, gdw, gdy, gx, gw, saved ? gr : NULL, N, C, eps);
                compare(saved ? "rmsnorm_bwd dx" : "rmsnorm_bwd dx (rstd NULL)", shape, down(gdx, dx.size()), dx,
                        TOL_RED);
                compare(saved ? "rmsnorm_bwd dw+=" : "rmsnorm_bwd dw+= (rstd NULL)", shape, down(gdw, C), dw, TOL_RED);
            }
            // acc = 1: the one-pass kernel up to C 4096, the separate dx kernel past it
            set(gdx, dxp);
            set(gdw, dw0);
            cuda_rmsnorm_bwd(gdx, 1, gdw, gdy, gx, gw, gr, N, C, eps);
            compare("rmsnorm_bwd dx+= (acc)", shape, down(gdx, dx.size()), dxa, TOL_RED);
            compare("rmsnorm_bwd dw+= (acc)", shape, down(gdw, C), dw, TOL_RED);
            // with the new dx also as an operand (acc 0 and 1): dx and dw the plain op's bits, dxo those of dx
            // converted (bf16 rounded; in fp32 a copy)
            for (int acc = 0; acc < 2; acc++) {
                set(gdx, dxp);
                set(gdw, dw0);
                cuda_rmsnorm_bwd(gdx, acc, gdw, gdy, gx, gw, gr, N, C, eps);
                const Vec want_dx = down(gdx, dx.size()), want_dw = down(gdw, C);
                for (int mode : {2, 1}) {
                    cuda_set_gemm_precision(mode);
                    const size_t os = cuda_opnd_size(), nb = (size_t)N * C * os;
                    const std::vector<uint8_t> want = opnd_cols_bytes(random_bytes(nb), N, C, 0, C, want_dx.data(), C, os);
                    std::vector<uint8_t> got(nb);
                    void *gdxo = opnd_buf(P, (size_t)N * C);
                    poison(gdxo, nb);
                    set(gdx, dxp);
                    set(gdw, dw0);
                    cuda_rmsnorm_bwd_opnd(gdx, acc, gdxo, gdw, gdy, gx, gw, gr, N, C, eps);
                    cuda_to_host(got.data(), gdxo, nb);
                    char op[96];
                    snprintf(op, sizeof op, "rmsnorm_bwd_opnd%s dxo %s == dx's", acc ? " (acc)" : "", mode == 2 ? "bf16" : "fp32");
                    check_bits(op, shape, got.data(), want.data(), nb);
                    check_bits("rmsnorm_bwd_opnd dx == rmsnorm_bwd's", shape, down(gdx, dx.size()).data(), want_dx.data(),
                               dx.size() * 4);
                    check_bits("rmsnorm_bwd_opnd dw == rmsnorm_bwd's", shape, down(gdw, C).data(), want_dw.data(), C * 4);
                }
                cuda_set_gemm_precision(1);
            }
            if (N == 65 && C == 256) {   // one output at a time
                set(gdw, dw0);
                cuda_rmsnorm_bwd(NULL, 0, gdw, gdy, gx, gw, gr, N, C, eps);
                compare("rmsnorm_bwd dw only", shape, down(gdw, C), dw, TOL_RED);
                poison(gdx, dx.size() * 4);
                cuda_rmsnorm_bwd(gdx, 0, NULL, gdy, gx, gw, gr, N, C, eps);
                compare("rmsnorm_bwd dx only", shape, down(gdx, dx.size()), dx, TOL_RED);
                set(gdx, dxp);
                cuda_rmsnorm_bwd(gdx, 1, NULL, gdy, gx, gw, gr, N, C, eps);
                compare("rmsnorm_bwd dx+= only (acc)", shape, down(gdx, dx.size()), dxa, TOL_RED);
                // rows 16-byte aligned but a buffer not: the column-by-column loads
                float *ux = P.f(x.size() + 1) + 1, *uy = P.f(y.size() + 1) + 1, *ur = P.f(N + 1) + 1,
                      *udy = P.f(dy.size() + 1) + 1, *udx = P.f(dx.size() + 1) + 1;
                set(ux, x);
                set(udy, dy);
                poison(uy, y.size() * 4);
                cuda_rmsnorm_fwd(uy, ur, ux, NULL, gw, N, C, eps);
                compare("rmsnorm_fwd y, unaligned", shape, down(uy, y.size()), y, TOL_RED);
                float *uys = P.f(y.size() + 1) + 1;
                poison(uys, y.size() * 4);
                cuda_rmsnorm_scale(uys, ux, ur, gw, N, C);
                check_bits("rmsnorm_scale y, unaligned == rmsnorm_fwd's", shape, down(uys, y.size()).data(),
                           down(uy, y.size()).data(), y.size() * 4);
                set(udx, dxp);
                set(gdw, dw0);
                cuda_rmsnorm_bwd(udx, 1, gdw, udy, ux, gw, ur, N, C, eps);
                compare("rmsnorm_bwd dx+=, unaligned", shape, down(udx, dx.size()), dxa, TOL_RED);
                compare("rmsnorm_bwd dw+=, unaligned", shape, down(gdw, C), dw, TOL_RED);
            }
        }
}

// ======================================================================================================
// gates
// ======================================================================================================
static void test_gates(void) {
    int64_t Ns[] = {1, 63, 64, 65, 2048};
    int HKs[] = {128, 130, 256, 768};   // 130: rows that are not whole float4s, one column a thread
    for (int64_t N : Ns)
        for (int HK : HKs)
            for (int withlb = 0; withlb < 2; withlb++) {
                if (g_quick && N > 100) continue;
                seed(500 + N * 7 + HK + withlb);
                int64_t ldqf = 3 * (int64_t)HK, lddqf = 3 * (int64_t)HK + 4;   // the fused q/f/i projection rows
                Vec qf = randn(N * ldqf, 3);
                for (auto &v : qf)
                    if (urand() < 0.05) v = (float)((urand() < 0.5 ? -1 : 1) * (20 + 20 * urand()));   // saturated
                Vec lb(HK);
                for (auto &v : lb) v = (float)(0.95 * urand());
                Vec dq = randn(N * HK), dk = randn(N * HK), dg = randn(N * HK), dlb0 = randn(HK);
                Vec q(N * HK), k(N * HK), g(N * HK), dqf0 = randn(N * lddqf), dqf = dqf0, dlb = dlb0;
                const float *lbp = withlb ? lb.data() : NULL;
                op_gates_fwd(q.data(), k.data(), g.data(), qf.data(), ldqf, lbp, N, HK);
                op_gates_bwd(dqf.data(), lddqf, dlb.data(), dq.data(), dk.data(), dg.data(), qf.data(), ldqf, lbp, N,
                             HK);
                Pool P;
                float *gqf = P.up(qf), *glb = withlb ? P.up(lb) : NULL, *gq = P.f(q.size()), *gk = P.f(k.size()),
                      *gg = P.f(g.size()), *gdq = P.up(dq), *gdk = P.up(dk), *gdg = P.up(dg),
                      *gdqf = P.up(poisoned_rows(dqf0, N, lddqf, 2 * (int64_t)HK)), *gdlb = P.up(dlb0);
                poison(gq, q.size() * 4);
                poison(gk, k.size() * 4);
                poison(gg, g.size() * 4);
                cuda_gates_fwd(gq, gk, gg, gqf, ldqf, glb, N, HK);
                cuda_gates_bwd(gdqf, lddqf, gdlb, gdq, gdk, gdg, gqf, ldqf, glb, N, HK);
                char shape[64];
                snprintf(shape, sizeof shape, "N%lld HK%d %s", (long long)N, HK, withlb ? "lb" : "no lb");
                compare("gates_fwd q", shape, down(gq, q.size()), q, TOL_EW);
                compare("gates_fwd k", shape, down(gk, k.size()), k, TOL_EW);
                compare("gates_fwd g", shape, down(gg, g.size()), g, TOL_EW);
                compare("gates_bwd dqf (strided)", shape, down(gdqf, dqf.size()), dqf, TOL_EW);
                compare(withlb ? "gates_bwd dlb+=" : "gates_bwd dlb untouched", shape, down(gdlb, HK), dlb, TOL_RED);
                // into an operand: in bf16 the fp32 op's values rounded (to the bit), in fp32 the same bits; the
                // rows' other columns untouched, dlb the fp32 op's to the bit
                const Vec want_dqf = down(gdqf, dqf.size()), want_dlb = down(gdlb, HK);
                for (int mode : {2, 1}) {
                    cuda_set_gemm_precision(mode);
                    const size_t os = cuda_opnd_size(), nb = (size_t)N * lddqf * os;
                    const std::vector<uint8_t> pat = random_bytes(nb),
                                               want = opnd_cols_bytes(pat, N, lddqf, 0, 2 * HK, want_dqf.data(), lddqf, os);
                    std::vector<uint8_t> got(nb);
                    void *go = opnd_buf(P, (size_t)N * lddqf);
                    cuda_to_device(go, pat.data(), nb);
                    float *gdlb2 = P.up(dlb0);
                    cuda_gates_bwd_opnd(go, lddqf, gdlb2, gdq, gdk, gdg, gqf, ldqf, glb, N, HK);
                    cuda_to_host(got.data(), go, nb);
                    check_bits(mode == 2 ? "gates_bwd_opnd bf16 == gates_bwd rounded" : "gates_bwd_opnd fp32 == gates_bwd",
                               shape, got.data(), want.data(), nb);
                    check_bits("gates_bwd_opnd dlb == gates_bwd's", shape, down(gdlb2, HK).data(), want_dlb.data(),
                               HK * 4);
                }
                cuda_set_gemm_precision(1);
            }
}

// ======================================================================================================
// lower bounds
// ======================================================================================================
static void test_lower_bounds(void) {
    int Ls[] = {1, 2, 6, 26};
    const int C = 768;
    for (int L : Ls) {
        seed(600 + L);
        Vec Pm = randn((size_t)L * C), dlb = randn((size_t)L * C), dP0 = randn((size_t)L * C);
        Vec lb((size_t)L * C), dP = dP0;
        op_lower_bounds_fwd(lb.data(), Pm.data(), L, C);
        op_lower_bounds_bwd(dP.data(), dlb.data(), Pm.data(), L, C);
        Pool P;
        float *gP = P.up(Pm), *gdlb = P.up(dlb), *gdP = P.up(dP0), *glb = P.f(lb.size());
        poison(glb, lb.size() * 4);
        cuda_lower_bounds_fwd(glb, gP, L, C);
        cuda_lower_bounds_bwd(gdP, gdlb, gP, L, C);
        char shape[64];
        snprintf(shape, sizeof shape, "L%d C%d", L, C);
        compare("lower_bounds_fwd lb", shape, down(glb, lb.size()), lb, TOL_RED);
        compare("lower_bounds_bwd dP+=", shape, down(gdP, dP.size()), dP, TOL_RED);
    }
}

// ======================================================================================================
// the HGRU2 recurrence
// ======================================================================================================
#include "gpu_hgru.h"

// ======================================================================================================
// HGRN1: the element-wise recurrence (cuda/hgrn1.cuh: a scan in chunks of 64 steps) and the gated output norm
// ======================================================================================================
// The scan: each chunk restarts the sequential recurrence from its entering state, which the GPU composes from
// the chunks before it (e + P s): a few more roundings of a sum of decaying terms per chunk than the CPU's one
// pass, so the exact HGRU2 sweeps' tolerances hold (o 1e-5; dq, dk 2e-5; dg 5e-5, dh times the state). Gates as
// the model makes them (gates_like), q = silu of a normal value.
static void test_hgrn1_scan(void) {
    struct { int B, T, D; } cf[] = {{2, 1, 64}, {2, 63, 130}, {2, 64, 128}, {3, 65, 96}, {2, 129, 1},
                                    {1, 4096, 256}, {1, 2048, 2048}, {5, 300, 33}};
    for (auto c : cf) {
        const int B = c.B, T = c.T, D = c.D;
        const int64_t n = (int64_t)B * T * D, ns = (int64_t)B * D;
        if (g_quick && n > 200000) continue;
        seed(2100 + B * 7 + T * 3 + D);
        Vec q = randn(n), g, k, dout = randn(n), h0 = randn(ns);
        for (auto &v : q) v = (float)(v / (1 + exp(-(double)v)));
        gates_like(g, k, n, [](size_t) { return true; });
        Vec o(n), hT(ns), o0(n), dq(n), dk(n), dg(n);
        op_hgrn_fwd(o.data(), hT.data(), q.data(), k.data(), g.data(), h0.data(), B, T, D, 0, 0);
        op_hgrn_fwd(o0.data(), NULL, q.data(), k.data(), g.data(), NULL, B, T, D, 0, 0);
        op_hgrn_bwd(dq.data(), dk.data(), dg.data(), dout.data(), q.data(), k.data(), g.data(), o0.data(), B, T, D, 0, 0);
        Pool P;
        float *gq = P.up(q), *gk = P.up(k), *gg = P.up(g), *gdo = P.up(dout), *gh0 = P.up(h0), *gX = P.up(h0),
              *go = P.f(n), *go2 = P.f(n), *ghT = P.f(ns), *gdq = P.f(n), *gdk = P.f(n), *gdg = P.f(n);
        char shape[64];
        snprintf(shape, sizeof shape, "B%d T%d D%d", B, T, D);
        poison(go, n * 4);
        poison(ghT, ns * 4);
        cuda_hgrn_fwd(go, ghT, gq, gk, gg, gh0, B, T, D, 0, 0);
        const Vec go_h = down(go, n), ghT_h = down(ghT, ns);
        compare("hgrn_fwd o (h0)", shape, go_h, o, TOL_RED);
        compare("hgrn_fwd hT", shape, ghT_h, hT, TOL_RED);
        // hT == h0: updated in place, the same bits
        poison(go2, n * 4);
        cuda_hgrn_fwd(go2, gX, gq, gk, gg, gX, B, T, D, 0, 0);
        const Vec go2_h = down(go2, n), gX_h = down(gX, ns);
        check_bits("hgrn_fwd hT==h0 o", shape, go2_h.data(), go_h.data(), n * 4);
        check_bits("hgrn_fwd hT==h0 state", shape, gX_h.data(), ghT_h.data(), ns * 4);
        poison(go, n * 4);
        cuda_hgrn_fwd(go, NULL, gq, gk, gg, NULL, B, T, D, 0, 0);
        compare("hgrn_fwd o (h0 NULL)", shape, down(go, n), o0, TOL_RED);
        poison(gdq, n * 4);
        poison(gdk, n * 4);
        poison(gdg, n * 4);
        cuda_hgrn_bwd(gdq, gdk, gdg, gdo, gq, gk, gg, go, B, T, D, 0, 0);
        compare("hgrn_bwd dq", shape, down(gdq, n), dq, 2e-5);
        compare("hgrn_bwd dk", shape, down(gdk, n), dk, 2e-5);
        compare("hgrn_bwd dg", shape, down(gdg, n), dg, 5e-5);
        // the scan from the end, read in place (the classifier's reverse direction), alone and added (acc)
        // onto the forward direction's output and gradients, as the bidirectional mixer sums them; each
        // direction's backward reads its own outputs
        Vec orv(n), ob(n), dqb(n), dkb(n), dgb(n), orv0(n);
        op_hgrn_fwd(orv.data(), hT.data(), q.data(), k.data(), g.data(), h0.data(), B, T, D, 1, 0);
        op_hgrn_fwd(orv0.data(), NULL, q.data(), k.data(), g.data(), NULL, B, T, D, 1, 0);
        ob = o0;
        op_hgrn_fwd(ob.data(), NULL, q.data(), k.data(), g.data(), NULL, B, T, D, 1, 1);
        dqb = dq; dkb = dk; dgb = dg;
        op_hgrn_bwd(dqb.data(), dkb.data(), dgb.data(), dout.data(), q.data(), k.data(), g.data(), orv0.data(), B, T, D, 1, 1);
        poison(go, n * 4);
        poison(ghT, ns * 4);
        cuda_hgrn_fwd(go, ghT, gq, gk, gg, gh0, B, T, D, 1, 0);
        compare("hgrn_fwd reverse o (h0)", shape, down(go, n), orv, TOL_RED);
        compare("hgrn_fwd reverse hT", shape, down(ghT, ns), hT, TOL_RED);
        float *gob = P.up(o0), *gorv = P.f(n);
        cuda_hgrn_fwd(gob, NULL, gq, gk, gg, NULL, B, T, D, 1, 1);
        compare("hgrn_fwd both ways (acc)", shape, down(gob, n), ob, TOL_RED);
        cuda_hgrn_fwd(gorv, NULL, gq, gk, gg, NULL, B, T, D, 1, 0);
        float *gdqb = P.up(dq), *gdkb = P.up(dk), *gdgb = P.up(dg);
        cuda_hgrn_bwd(gdqb, gdkb, gdgb, gdo, gq, gk, gg, gorv, B, T, D, 1, 1);
        compare("hgrn_bwd both ways dq (acc)", shape, down(gdqb, n), dqb, 2e-5);
        compare("hgrn_bwd both ways dk (acc)", shape, down(gdkb, n), dkb, 2e-5);
        compare("hgrn_bwd both ways dg (acc)", shape, down(gdgb, n), dgb, 5e-5);
    }
}

// The gated RMSNorm y = x r w swish(z), z in rows of stride 3C at column 2C (HGRN1's [i | f | g] rows); as
// RMSNorm's checks (TOL_RED; the bf16 operand TOL_OPND). dz is written into the same strided rows: the other
// columns must keep their values. dx = r w u - x r^3 / C sum(w u x) (u = dy swish(z)) is measured against the
// size of its first term: at C 1 the two terms cancel to eps / x^2 of either (x r is +-1), and each side keeps
// its own rounding residue of them.
static void test_rmsnorm_gated(void) {
    const int64_t Ns[] = {1, 63, 64, 65, 4096};
    const int Cs[] = {1, 64, 130, 768, 2048};
    const double eps = 1e-6;
    for (int64_t N : Ns)
        for (int C : Cs) {
            if (g_quick && N > 100) continue;
            seed(2300 + N * 3 + C);
            const int64_t ld = 3 * (int64_t)C;
            Vec x = randn(N * C), zr = randn(N * ld), w(C), dy = randn(N * C), dw0 = randn(C), dzr0 = randn(N * ld);
            for (auto &v : w) v = (float)(1 + 0.1 * nrand());
            Vec y(N * C), rstd(N), dx(N * C), dw = dw0, dzr = dzr0, term(N * C);
            op_rmsnorm_gated_fwd(y.data(), rstd.data(), x.data(), zr.data() + 2 * C, ld, w.data(), N, C, eps);
            for (int64_t n = 0; n < N; n++)
                for (int c = 0; c < C; c++) {
                    const double zv = zr[n * ld + 2 * C + c];
                    term[n * C + c] = (float)(rstd[n] * w[c] * dy[n * C + c] * zv / (1 + exp(-zv)));
                }
            op_rmsnorm_gated_bwd(dx.data(), dzr.data() + 2 * C, ld, dw.data(), dy.data(), x.data(), zr.data() + 2 * C,
                                 ld, w.data(), rstd.data(), N, C, eps);
            Pool P;
            float *gx = P.up(x), *gz = P.up(zr), *gw = P.up(w), *gdy = P.up(dy), *gy = P.f(y.size()), *gr = P.f(N),
                  *gdx = P.f(dx.size()), *gdw = P.up(dw0), *gdz = P.up(dzr0);
            char shape[64];
            snprintf(shape, sizeof shape, "N%lld C%d", (long long)N, C);
            poison(gy, y.size() * 4);
            poison(gr, N * 4);
            cuda_rmsnorm_gated_fwd(gy, gr, gx, gz + 2 * C, ld, gw, N, C, eps);
            compare("rmsnorm_gated_fwd y", shape, down(gy, y.size()), y, TOL_RED);
            compare("rmsnorm_gated_fwd rstd", shape, down(gr, N), rstd, TOL_RED);
            {   // y as a bf16 operand
                cuda_set_gemm_precision(2);
                void *oy = opnd_buf(P, y.size());
                poison(oy, y.size() * 2);
                cuda_rmsnorm_gated_fwd(oy, NULL, gx, gz + 2 * C, ld, gw, N, C, eps);
                compare("rmsnorm_gated_fwd y bf16", shape, opnd_down(oy, y.size()), y, TOL_OPND);
                cuda_set_gemm_precision(1);
            }
            for (int saved = 1; saved >= 0; saved--) {
                poison(gdx, dx.size() * 4);
                set(gdw, dw0);
                set(gdz, dzr0);
                cuda_rmsnorm_gated_bwd(gdx, gdz + 2 * C, ld, gdw, gdy, gx, gz + 2 * C, ld, gw, saved ? gr : NULL, N, C,
                                       eps);
                compare_to(saved ? "rmsnorm_gated_bwd dx" : "rmsnorm_gated_bwd dx (rstd NULL)", shape,
                           down(gdx, dx.size()), dx, term, TOL_RED, " (/ terms)");
                compare(saved ? "rmsnorm_gated_bwd dz (rows)" : "rmsnorm_gated_bwd dz (rstd NULL)", shape,
                        down(gdz, dzr.size()), dzr, TOL_RED);
                compare(saved ? "rmsnorm_gated_bwd dw+=" : "rmsnorm_gated_bwd dw+= (rstd NULL)", shape,
                        down(gdw, C), dw, TOL_RED);
            }
        }
}

// ======================================================================================================
// the Transformer++: rotary positions, causal softmax attention, the key/value cache's append
// ======================================================================================================
#include "gpu_attention.h"

// ======================================================================================================
// SwiGLU
// ======================================================================================================
static void test_swiglu(void) {
    int64_t Ns[] = {1, 65, 2048};
    int Is[] = {128, 130, 768, 2048};   // 130: not a multiple of 4 (one column per load)
    for (int64_t N : Ns)
        for (int I : Is) {
            if (g_quick && N > 100) continue;
            seed(800 + N + I);
            Vec gu = randn(N * 2 * I, 2), dh = randn(N * I);
            Vec h(N * I), dgu(N * 2 * I);
            op_swiglu_fwd(h.data(), gu.data(), N, I);
            op_swiglu_bwd(dgu.data(), dh.data(), gu.data(), N, I);
            Pool P;
            float *ggu = P.up(gu), *gdh = P.up(dh), *gh = P.f(h.size()), *gdgu = P.f(dgu.size());
            poison(gh, h.size() * 4);
            poison(gdgu, dgu.size() * 4);
            cuda_swiglu_fwd(gh, ggu, N, I);
            cuda_swiglu_bwd(gdgu, gdh, ggu, N, I);
            char shape[64];
            snprintf(shape, sizeof shape, "N%lld I%d", (long long)N, I);
            compare("swiglu_fwd h", shape, down(gh, h.size()), h, TOL_EW);
            compare("swiglu_bwd dgu", shape, down(gdgu, dgu.size()), dgu, TOL_EW);
            // gu, h and dgu as bf16 operands: the CPU gets gu rounded as the GPU holds it
            cuda_set_gemm_precision(2);
            Vec gur(gu.size()), hr(h.size()), dgur(dgu.size());
            for (size_t i = 0; i < gu.size(); i++) gur[i] = bf16_value(bf16_bits(gu[i]));
            op_swiglu_fwd(hr.data(), gur.data(), N, I);
            op_swiglu_bwd(dgur.data(), dh.data(), gur.data(), N, I);
            void *ogu = opnd_of(P, ggu, gu.size()), *oh = opnd_buf(P, h.size()), *odgu = opnd_buf(P, dgu.size());
            poison(oh, h.size() * 2);
            poison(odgu, dgu.size() * 2);
            cuda_swiglu_fwd(oh, ogu, N, I);
            cuda_swiglu_bwd(odgu, gdh, ogu, N, I);
            compare("swiglu_fwd h bf16", shape, opnd_down(oh, h.size()), hr, TOL_OPND);
            compare("swiglu_bwd dgu bf16", shape, opnd_down(odgu, dgu.size()), dgur, TOL_OPND);
            cuda_set_gemm_precision(1);
        }
}

// ======================================================================================================
// decoding's fused ops: the products that form their input and add the residual, the step with its gates
// ======================================================================================================
// y = a W^T (+ res), a = x, rmsnorm(x) or swiglu(x). fp32 runs the ops one by one (rmsnorm or SwiGLU, the exact
// GEMM, the add): the tolerances of those ops added. bf16 runs the one kernel where N <= 8 and the input fits
// in shared memory (the largest here: 8 rows of 5632, 88 KB, above the default 48 KB), the ops otherwise (N 12;
// I 100, no multiple of 8): the bf16 product's 1.5e-2 against the CPU on the unrounded input (the input rounds to
// bf16 as the product's operand does), plus TOL_OPND for an output stored as an operand. The CPU gets SwiGLU's
// [gate | up] as the GPU holds it (rounded to bf16 in that mode).
static void test_decode_fused(void) {
    struct { int64_t N; int I, O; } sh[] = {{1, 2048, 6144}, {1, 5632, 2048}, {8, 5632, 512}, {3, 64, 300},
                                            {8, 2048, 2048}, {12, 256, 128}, {2, 100, 64}, {5, 8, 33},
                                            {1, 256, 50304}, {4, 1024, 9001}};
    const char *pname[3] = {"x", "rmsnorm", "swiglu"};
    for (auto s : sh)
        for (int m = 0; m < 3; m += 2)
            for (int pro = 0; pro < 3; pro++)
                for (int form = 0; form < 3; form++) {   // y real; y real + res; y an operand
                    if (g_quick && (int64_t)s.I * s.O > 1000000) continue;
                    if (form == 2 && pro == OP_PRO_SWIGLU) continue;   // (decoding does not use it; the ops run it)
                    seed(4100 + s.N + s.I + s.O + 7 * pro + form);
                    const int64_t nin = s.N * (pro == OP_PRO_SWIGLU ? 2 * s.I : s.I);
                    Vec x = randn(nin, pro == OP_PRO_RMSNORM ? 3 : 1), nw = randn(s.I, 0.3, 1),
                        W = randn((size_t)s.O * s.I, 0.05), res = randn(s.N * s.O), y(s.N * s.O), tmp(s.N * s.I);
                    cuda_set_gemm_precision(m);
                    Vec xc = x;
                    if (m == 2 && pro != OP_PRO_RMSNORM)
                        for (auto &v : xc) v = bf16_value(bf16_bits(v));
                    const float *rp = form == 1 ? res.data() : NULL;
                    op_matmul_fused_fwd(y.data(), form == 2, xc.data(), pro, nw.data(), 1e-5, W.data(), rp, tmp.data(),
                                        s.N, s.I, s.O);
                    Pool P;
                    float *gx = P.up(x), *gnw = P.up(nw), *gW = P.up(W), *gres = P.up(res);
                    const void *gin = pro == OP_PRO_RMSNORM ? (const void *)gx : opnd_of(P, gx, x.size());
                    void *gtmp = opnd_buf(P, tmp.size());
                    void *gy = form == 2 ? opnd_buf(P, y.size()) : (void *)P.f(y.size());
                    poison(gy, y.size() * (form == 2 ? cuda_opnd_size() : 4));
                    cuda_matmul_fused_fwd(gy, form == 2, gin, pro, gnw, 1e-5, gW, form == 1 ? gres : NULL, gtmp, s.N,
                                          s.I, s.O);
                    char shape[96], op[64];
                    snprintf(shape, sizeof shape, "N%lld I%d O%d", (long long)s.N, s.I, s.O);
                    snprintf(op, sizeof op, "matmul_fused %s%s %s", pname[pro],
                             form == 1 ? " +res" : form == 2 ? " y opnd" : "", m == 2 ? "bf16" : "fp32");
                    const double tol = m == 2 ? 1.5e-2 + (form == 2 ? TOL_OPND : 0)
                                              : 1e-5 + (pro == OP_PRO_NONE ? 0 : pro == OP_PRO_RMSNORM ? TOL_RED : TOL_EW);
                    compare(op, shape, form == 2 ? opnd_down(gy, y.size()) : down((float *)gy, y.size()), y, tol);
                    // the input itself is not changed
                    if (pro == OP_PRO_RMSNORM) compare("matmul_fused x untouched", shape, down(gx, x.size()), x, 0);
                }
    cuda_set_gemm_precision(1);
    // the step with its gates: the 32-warp blocks below 128 (sequence, head) pairs, the 4-warp ones above; K not
    // a multiple of the warps (200 over 32), Dv not of 32 (300, 40); rows of the fused projection with a gap at
    // their end (ld > 2HK + H Dv), with and without lower bounds. As the gates (elementwise) and the recurrence
    // (a reduction over K) are: TOL_RED.
    // From 128 pairs up with Dv a multiple of 4, four columns a thread: K below and above 32 (the rows a block
    // reads before pdl_wait), Dv over two 128-column slabs (200), a slab of three lanes (12); Dv 30 keeps the
    // one-column kernel there.
    struct { int B, H, K, Dv; } st[] = {{1, 16, 128, 128}, {64, 16, 128, 128}, {2, 3, 20, 300}, {1, 1, 64, 64},
                                        {3, 2, 200, 40}, {128, 1, 8, 8}, {40, 4, 20, 12}, {32, 8, 64, 200},
                                        {128, 1, 300, 8}, {64, 2, 16, 30}};
    for (auto c : st)
        for (int withlb = 0; withlb < 2; withlb++) {
            if (g_quick && (int64_t)c.B * c.H * c.K * c.Dv > 1 << 20) continue;
            seed(4300 + c.B + c.H + c.K + c.Dv + withlb);
            const int HK = c.H * c.K;
            const int64_t ld = 2 * HK + (int64_t)c.H * c.Dv + 3, ns = (int64_t)c.B * HK * c.Dv;
            Vec qfi = randn(c.B * ld, 2), lb(HK), S0 = randn(ns), S = S0, o(c.B * (int64_t)c.H * c.Dv);
            for (auto &v : lb) v = (float)(0.95 * urand());
            Vec q(c.B * HK), k(c.B * HK), g(c.B * HK);
            const float *lbp = withlb ? lb.data() : NULL;
            op_hgru_step_fwd(o.data(), S.data(), q.data(), k.data(), g.data(), qfi.data(), ld, lbp, c.B, c.H, c.K, c.Dv);
            Pool P;
            float *gqfi = P.up(qfi), *glb = withlb ? P.up(lb) : NULL, *gS = P.up(S0), *go = P.f(o.size()),
                  *gq = P.f(q.size()), *gk = P.f(k.size()), *gg = P.f(g.size());
            poison(go, o.size() * 4);
            cuda_hgru_step_fwd(go, gS, gq, gk, gg, gqfi, ld, glb, c.B, c.H, c.K, c.Dv);
            char shape[96];
            snprintf(shape, sizeof shape, "B%d H%d K%d Dv%d %s", c.B, c.H, c.K, c.Dv, withlb ? "lb" : "no lb");
            compare("hgru_step o", shape, down(go, o.size()), o, TOL_RED);
            compare("hgru_step S (in place)", shape, down(gS, S.size()), S, TOL_RED);
            if (c.B == 64 && c.H == 16) {   // the same on the kernel of one column a thread
                float *gS1 = P.up(S0), *go1 = P.f(o.size());
                cuda_set_step4(0);
                cuda_hgru_step_fwd(go1, gS1, gq, gk, gg, gqfi, ld, glb, c.B, c.H, c.K, c.Dv);
                cuda_set_step4(1);
                compare("hgru_step o, a column a thread", shape, down(go1, o.size()), o, TOL_RED);
                compare("hgru_step S, a column a thread", shape, down(gS1, S.size()), S, TOL_RED);
            }
        }
}

// ======================================================================================================
// cross-entropy, argmax and the fused classifier of training
// ======================================================================================================
#include "gpu_xent.h"

// ======================================================================================================
// AdamW
// ======================================================================================================
static void test_adamw(void) {
    const int64_t n = 100003;
    for (int off = 0; off < 2; off++) {   // off 1: not 16-byte aligned, so one element at a time
        seed(1000 + off);
        Vec p = randn(n, 0.02), m(n, 0.f), v(n, 0.f);
        Pool P;
        float *gp = P.f(n + off) + off, *gm = P.f(n + off) + off, *gv = P.f(n + off) + off, *gg = P.f(n + off) + off;
        set(gp, p);
        set(gm, m);
        set(gv, v);
        for (int step = 1; step <= 3; step++) {
            Vec g = randn(n, 0.1);
            set(gg, g);
            op_adamw(p.data(), g.data(), m.data(), v.data(), n, 3e-4, 0.9, 0.95, 1e-8, 0.1, 0.5, step);
            cuda_adamw(gp, gg, gm, gv, n, 3e-4, 0.9, 0.95, 1e-8, 0.1, 0.5, step);
        }
        const char *shape = off ? "n 100003, 3 steps, unaligned" : "n 100003, 3 steps";
        compare("adamw p", shape, down(gp, n), p, 1e-6);
        compare("adamw m", shape, down(gm, n), m, 1e-6);
        compare("adamw v", shape, down(gv, n), v, 1e-6);
    }
}

// Many tensors in one launch: parts of 1, 3, 4096 (one chunk), 4097 (a chunk and one), 100003 and 13 values, every
// other one not 16-byte aligned, each with its own weight decay. Against the CPU (as test_adamw) and bit for bit
// against cuda_adamw on each part in turn.
static void test_adamw_multi(void) {
    const int64_t ns[] = {1, 3, 4096, 4097, 100003, 13};
    const int K = (int)(sizeof ns / sizeof ns[0]);
    Pool P;
    std::vector<Vec> p(K), m(K), v(K);
    std::vector<float *> gp(K), gm(K), gv(K), gg(K), hp(K), hm(K), hv(K);
    std::vector<AdamwPart> parts(K), cparts(K);
    for (int k = 0; k < K; k++) {
        const int64_t n = ns[k], off = k % 2;
        seed(1020 + k);
        p[k] = randn(n, 0.02);
        m[k] = Vec(n, 0.f);
        v[k] = Vec(n, 0.f);
        for (auto *t : {&gp[k], &gm[k], &gv[k], &gg[k], &hp[k], &hm[k], &hv[k]}) *t = P.f(n + off) + off;
        set(gp[k], p[k]);
        set(hp[k], p[k]);
        set(gm[k], m[k]);
        set(hm[k], m[k]);
        set(gv[k], v[k]);
        set(hv[k], v[k]);
        parts[k] = AdamwPart{gp[k], gg[k], gm[k], gv[k], n, 0.05 * k};
    }
    for (int step = 1; step <= 3; step++) {
        std::vector<Vec> g(K);
        for (int k = 0; k < K; k++) {
            g[k] = randn(ns[k], 0.1);
            set(gg[k], g[k]);
            cparts[k] = AdamwPart{p[k].data(), g[k].data(), m[k].data(), v[k].data(), ns[k], 0.05 * k};
        }
        op_adamw_multi(cparts.data(), K, 3e-4, 0.9, 0.95, 1e-8, 0.5, step);
        cuda_adamw_multi(parts.data(), K, 3e-4, 0.9, 0.95, 1e-8, 0.5, step);
        for (int k = 0; k < K; k++)
            cuda_adamw(hp[k], gg[k], hm[k], hv[k], ns[k], 3e-4, 0.9, 0.95, 1e-8, 0.05 * k, 0.5, step);
    }
    for (int k = 0; k < K; k++) {
        char shape[64];
        snprintf(shape, sizeof shape, "part %d of %d: n %lld%s", k + 1, K, (long long)ns[k], k % 2 ? ", unaligned" : "");
        compare("adamw_multi p", shape, down(gp[k], ns[k]), p[k], 1e-6);
        compare("adamw_multi m", shape, down(gm[k], ns[k]), m[k], 1e-6);
        compare("adamw_multi v", shape, down(gv[k], ns[k]), v[k], 1e-6);
        const Vec a = down(gp[k], ns[k]), b = down(hp[k], ns[k]), c = down(gv[k], ns[k]), d = down(hv[k], ns[k]);
        check_bits("adamw_multi p = adamw", shape, a.data(), b.data(), a.size() * sizeof a[0]);
        check_bits("adamw_multi v = adamw", shape, c.data(), d.data(), c.size() * sizeof c[0]);
    }
}

// cuda_adamw_multi_ctl (the training step recorded as a CUDA graph) against cuda_adamw_multi given what the host
// would have decided, bit for bit: lr and the bias corrections from ctl; the norm sqrt(ss) clipped to ctl's limit
// (above it, at it, below it, no limit, not measured); the update skipped for a loss (skip) or a norm (an
// infinite or NaN ss) that is not finite.
static void test_adamw_ctl(void) {
    const int64_t ns[] = {4097, 13, 100003};
    const int K = 3;
    const double b1 = 0.9, b2 = 0.95, eps = 1e-8, lr = 3e-4;
    Pool P;
    struct Case { const char *name; double ss, clip; int measure, skip; };
    const Case cases[] = {{"norm above the limit", 4.0, 0.5, 1, 0}, {"norm at the limit", 0.25, 0.5, 1, 0},
                          {"norm below the limit", 0.01, 0.5, 1, 0}, {"no limit", 4.0, 0, 1, 0},
                          {"norm not measured", 0, 0.5, 0, 0}, {"loss not finite", 4.0, 0.5, 1, 1},
                          {"norm infinite", INFINITY, 0.5, 1, 0}, {"norm NaN", NAN, 0.5, 1, 0}};
    StepCtl *ctl_d = (StepCtl *)P.add(cuda_alloc(sizeof(StepCtl), "test ctl"));
    // the sum of squares into the device: the bits cuda_sumsq returns (the norm the host path clips with)
    for (int64_t n : {(int64_t)1, (int64_t)1000, (int64_t)300001}) {
        seed(1050);
        const float *x = P.up(randn((size_t)n, 0.3));
        const double want = cuda_sumsq(x, n);
        cuda_sumsq_into(&ctl_d->ss, x, n);
        double got;
        cuda_to_host(&got, &ctl_d->ss, sizeof got);
        char shape[64];
        snprintf(shape, sizeof shape, "n %lld", (long long)n);
        check_bits("sumsq_into = sumsq", shape, &got, &want, sizeof got);
    }
    for (const Case &c : cases) {
        std::vector<AdamwPart> pa(K), pb(K);
        std::vector<float *> ga(K), gb(K), gg(K), ma(K), mb(K), va(K), vb(K);
        std::vector<Vec> p0(K);
        for (int k = 0; k < K; k++) {
            const int64_t n = ns[k];
            seed(1040 + k);
            p0[k] = randn(n, 0.02);
            const Vec g = randn(n, 0.1), m = randn(n, 0.01), v = randn(n, 0.001, 0.01);
            ga[k] = P.up(p0[k]); gb[k] = P.up(p0[k]); gg[k] = P.up(g);
            ma[k] = P.up(m); mb[k] = P.up(m); va[k] = P.up(v); vb[k] = P.up(v);
            pa[k] = AdamwPart{ga[k], gg[k], ma[k], va[k], n, 0.05 * k};
            pb[k] = AdamwPart{gb[k], gg[k], mb[k], vb[k], n, 0.05 * k};
        }
        const int64_t step = 7;
        const double bc1 = 1 - pow(b1, (double)step), bc2 = 1 - pow(b2, (double)step);
        StepCtl h;
        memset(&h, 0, sizeof h);
        h.ss = c.ss; h.clip = c.clip; h.lr = (float)lr; h.rbc1 = (float)(1 / bc1); h.rbc2 = (float)(1 / bc2);
        h.measure = c.measure; h.skip = c.skip;
        cuda_to_device(ctl_d, &h, sizeof h);
        cuda_adamw_multi_ctl(pa.data(), K, b1, b2, eps, ctl_d);
        // the host's decision, as train_step makes it
        const double norm = c.measure ? sqrt(c.ss) : 0;
        const bool run = !c.skip && std::isfinite(norm);
        const double scale = c.measure && c.clip > 0 && norm > c.clip ? c.clip / norm : 1.0;
        if (run) cuda_adamw_multi(pb.data(), K, lr, b1, b2, eps, scale, step);
        bool same = true, moved = false;
        for (int k = 0; k < K; k++) {
            const Vec a = down(ga[k], ns[k]), b = down(gb[k], ns[k]), am = down(ma[k], ns[k]), bm = down(mb[k], ns[k]);
            const Vec av = down(va[k], ns[k]), bv = down(vb[k], ns[k]);
            same &= !memcmp(a.data(), b.data(), a.size() * 4) && !memcmp(am.data(), bm.data(), am.size() * 4) &&
                    !memcmp(av.data(), bv.data(), av.size() * 4);
            moved |= memcmp(a.data(), p0[k].data(), a.size() * 4) != 0;
        }
        const bool ok = same && moved == run;
        printf("%s  %-26s %-40s %s\n", ok ? "PASS" : "FAIL", "adamw_ctl", c.name,
               !same ? "differs from adamw_multi" : run ? "updated, as adamw_multi" : "skipped");
        ok ? n_pass++ : n_fail++;
    }
}

// --precision bf16: cuda_adamw refreshes the cached bf16 copy of the weights it updates. A product after the
// update must give the bits of one after cuda_to_device of the same values, which makes the copy be converted
// afresh; and no copy that overlaps an updated range may be left stale. W stacks three tensors of R rows, as
// the fused q/f/i projection does; R I = 8710 is not a multiple of 4, so the float4 path, its scalar tail and
// (the middle tensor, 8-byte aligned) the scalar path all write copies.
static void test_adamw_bf16_copy(void) {
    const int64_t N = 64;
    const int I = 130, R = 67, RI = R * I;
    cuda_set_gemm_precision(2);
    seed(1010);
    Vec W = randn(3 * RI, 0.05), x = randn(N * I), g = randn(3 * RI), zero(3 * RI, 0.f);
    Pool P;
    float *w = P.up(W), *gx = P.up(x), *gg = P.up(g), *gm = P.up(zero), *gv = P.up(zero), *gy = P.f(N * 3 * R);
    const void *ox = opnd_of(P, gx, N * I);   // x as the bf16 operand
    auto product = [&](const float *Wt, int rows) {
        cuda_matmul_fwd(gy, ox, Wt, N, I, rows);
        return down(gy, N * rows);
    };
    auto fresh = [&](const float *Wt, int rows) {   // after rewriting W with its own values
        Vec h = down(w, 3 * RI);
        cuda_to_device(w, h.data(), h.size() * sizeof(float));
        return product(Wt, rows);
    };
    auto same = [&](const char *what, const Vec &a, const Vec &b) {
        check_bits("adamw bf16 copy", what, a.data(), b.data(), a.size() * sizeof(float));
    };
    int64_t step = 0;
    auto adamw = [&](int64_t at, int64_t n) {   // lr 1e-2 moves most weights by a bf16 step or more
        cuda_adamw(w + at, gg + at, gm + at, gv + at, n, 1e-2, 0.9, 0.95, 1e-8, 0.1, 1.0, ++step);
    };

    Vec before = product(w, 3 * R);   // the stacked copy, then each tensor updated on its own
    for (int t = 0; t < 3; t++) adamw((int64_t)t * RI, RI);
    Vec after = product(w, 3 * R);
    bool moved = memcmp(before.data(), after.data(), before.size() * sizeof(float)) != 0;
    printf("%s  %-22s %-40s %s\n", moved ? "PASS" : "FAIL", "adamw bf16 copy", "the update changes the product",
           moved ? "yes" : "NO");
    moved ? n_pass++ : n_fail++;
    same("stacked, per-tensor updates", after, fresh(w, 3 * R));
    {   // the three as parts of one update, as training runs them
        AdamwPart parts[3];
        for (int t = 0; t < 3; t++)
            parts[t] = AdamwPart{w + (int64_t)t * RI, gg + (int64_t)t * RI, gm + (int64_t)t * RI, gv + (int64_t)t * RI, RI,
                                 0.1};
        cuda_adamw_multi(parts, 3, 1e-2, 0.9, 0.95, 1e-8, 1.0, ++step);
        same("stacked, one update of three parts", product(w, 3 * R), fresh(w, 3 * R));
    }

    // a copy of the middle tensor alone beside the stacked one; an update over the first two tensors contains it
    product(w + RI, R);
    adamw(0, 2 * RI);
    Vec mid = product(w + RI, R), all = product(w, 3 * R);
    same("update over a tensor: its copy", mid, fresh(w + RI, R));
    same("update over a tensor: stacked copy", all, fresh(w, 3 * R));
    // an update of exactly the middle tensor, inside both copies
    product(w + RI, R);
    adamw(RI, RI);
    mid = product(w + RI, R);
    all = product(w, 3 * R);
    same("update of a tensor in two copies", mid, fresh(w + RI, R));
    same("the other of the two copies", all, fresh(w, 3 * R));
    // cuda_to_device over part of W, with new values
    Vec part = randn(RI, 0.05);
    cuda_to_device(w + 2 * RI, part.data(), part.size() * sizeof(float));
    all = product(w, 3 * R);
    same("to_device over part of W", all, fresh(w, 3 * R));
    cuda_set_gemm_precision(1);
}

// ======================================================================================================
// determinism: the same inputs twice give the same bits
// ======================================================================================================
static void test_determinism(void) {
    Pool P;
    char shape[64];
    // embedding backward with heavily repeated ids: through the sort (V 37 at D 768), and with a vocabulary
    // small enough for the shared-memory table (ListOps' 18 at D 64)
    auto embed_twice = [&](int64_t N, int D, int V, uint64_t sd) {
        seed(sd);
        std::vector<int32_t> ids(N);
        for (auto &id : ids) id = (int32_t)(next_u64() % V);
        Vec dx = randn(N * D), dE0 = randn((size_t)V * D);
        int32_t *gid = P.up(ids);
        float *gdx = P.up(dx), *a = P.up(dE0), *b = P.up(dE0);
        cuda_embed_bwd(a, gdx, gid, N, D, V);
        cuda_embed_bwd(b, gdx, gid, N, D, V);
        Vec ha = down(a, dE0.size()), hb = down(b, dE0.size());
        snprintf(shape, sizeof shape, "N%lld D%d V%d", (long long)N, D, V);
        check_bits("determinism embed_bwd", shape, ha.data(), hb.data(), ha.size() * 4);
    };
    embed_twice(g_quick ? 1000 : 8192, 768, 37, 1100);
    embed_twice(g_quick ? 5000 : 100003, 64, 18, 1101);
    {   // RMSNorm backward
        int64_t N = g_quick ? 100 : 4096;
        int C = 768;
        seed(1101);
        Vec x = randn(N * C), w = randn(C), dy = randn(N * C), dw0 = randn(C);
        float *gx = P.up(x), *gw = P.up(w), *gdy = P.up(dy), *dx1 = P.f(N * C), *dx2 = P.f(N * C), *dw1 = P.up(dw0),
              *dw2 = P.up(dw0);
        cuda_rmsnorm_bwd(dx1, 0, dw1, gdy, gx, gw, NULL, N, C, 1e-6);
        cuda_rmsnorm_bwd(dx2, 0, dw2, gdy, gx, gw, NULL, N, C, 1e-6);
        Vec a = down(dx1, N * C), b = down(dx2, N * C), c = down(dw1, C), d = down(dw2, C);
        snprintf(shape, sizeof shape, "N%lld C%d", (long long)N, C);
        check_bits("determinism rmsnorm_bwd", shape, a.data(), b.data(), a.size() * 4);
        check_bits("determinism rmsnorm dw", shape, c.data(), d.data(), c.size() * 4);
        // acc = 1 on the same prefilled dx
        Vec dxp = randn(N * C);
        set(dx1, dxp);
        set(dx2, dxp);
        cuda_rmsnorm_bwd(dx1, 1, dw1, gdy, gx, gw, NULL, N, C, 1e-6);
        cuda_rmsnorm_bwd(dx2, 1, dw2, gdy, gx, gw, NULL, N, C, 1e-6);
        a = down(dx1, N * C), b = down(dx2, N * C), c = down(dw1, C), d = down(dw2, C);
        check_bits("determinism rmsnorm_bwd acc", shape, a.data(), b.data(), a.size() * 4);
        check_bits("determinism rmsnorm dw acc", shape, c.data(), d.data(), c.size() * 4);
    }
    {   // gates backward with a lower bound
        int64_t N = g_quick ? 100 : 4096;
        int HK = 768;
        seed(1102);
        Vec qf = randn(N * 2 * HK, 3), lb(HK), dq = randn(N * HK), dk = randn(N * HK), dg = randn(N * HK),
            dlb0 = randn(HK);
        for (auto &v : lb) v = (float)(0.9 * urand());
        float *gqf = P.up(qf), *glb = P.up(lb), *gdq = P.up(dq), *gdk = P.up(dk), *gdg = P.up(dg),
              *d1 = P.f(N * 2 * HK), *d2 = P.f(N * 2 * HK), *l1 = P.up(dlb0), *l2 = P.up(dlb0);
        cuda_gates_bwd(d1, 2 * HK, l1, gdq, gdk, gdg, gqf, 2 * HK, glb, N, HK);
        cuda_gates_bwd(d2, 2 * HK, l2, gdq, gdk, gdg, gqf, 2 * HK, glb, N, HK);
        Vec a = down(d1, N * 2 * HK), b = down(d2, N * 2 * HK), c = down(l1, HK), d = down(l2, HK);
        snprintf(shape, sizeof shape, "N%lld HK%d", (long long)N, HK);
        check_bits("determinism gates_bwd", shape, a.data(), b.data(), a.size() * 4);
        check_bits("determinism gates dlb", shape, c.data(), d.data(), c.size() * 4);
    }
    {   // matmul backward (TF32)
        int64_t N = g_quick ? 64 : 2048;
        int I = 768, O = 768;
        seed(1103);
        Vec x = randn(N * I), W = randn((size_t)O * I), dy = randn(N * O), dW0 = randn((size_t)O * I);
        float *gx = P.up(x), *gW = P.up(W), *gdy = P.up(dy), *dx1 = P.f(N * I), *dx2 = P.f(N * I), *w1 = P.up(dW0),
              *w2 = P.up(dW0);
        cuda_matmul_bwd(dx1, w1, gdy, gx, gW, N, I, O);
        cuda_matmul_bwd(dx2, w2, gdy, gx, gW, N, I, O);
        Vec a = down(dx1, N * I), b = down(dx2, N * I), c = down(w1, dW0.size()), d = down(w2, dW0.size());
        snprintf(shape, sizeof shape, "N%lld I%d O%d tf32", (long long)N, I, O);
        check_bits("determinism matmul dx", shape, a.data(), b.data(), a.size() * 4);
        check_bits("determinism matmul dW", shape, c.data(), d.data(), c.size() * 4);
    }
    {   // HGRU2 backward
        HgruIn in = hgru_inputs(2, g_quick ? 100 : 1024, 2, 128, 128, 1104);
        snprintf(shape, sizeof shape, "B2 T%d H2 K128 Dv128", in.T);
        float *gq = P.up(in.q), *gk = P.up(in.k), *gg = P.up(in.g), *gv = P.up(in.v), *gdo = P.up(in.dout);
        std::vector<Vec> res[2];
        for (int r = 0; r < 2; r++) {
            float *dq = P.f(in.nqk), *dk = P.f(in.nqk), *dg = P.f(in.nqk), *dv = P.f(in.rows * in.lddv);
            poison(dv, in.rows * in.lddv * 4);   // the gaps stay NaN on both runs; compare the bytes
            cuda_hgru_bwd(dq, dk, dg, dv, in.lddv, gdo, gq, gk, gg, gv, in.ldv, in.B, in.T, in.H, in.K, in.Dv, 64, 0, 0);
            res[r] = {down(dq, in.nqk), down(dk, in.nqk), down(dg, in.nqk), down(dv, in.rows * in.lddv)};
        }
        const char *nm[4] = {"determinism hgru dq", "determinism hgru dk", "determinism hgru dg", "determinism hgru dv"};
        for (int a = 0; a < 4; a++)
            check_bits(nm[a], shape, res[0][a].data(), res[1][a].data(), res[0][a].size() * 4);
        // a bidirectional backward (causal, then reverse added), in both forms
        for (int chunk : {64, 0}) {
            for (int r = 0; r < 2; r++) {
                float *dq = P.f(in.nqk), *dk = P.f(in.nqk), *dg = P.f(in.nqk), *dv = P.f(in.rows * in.lddv);
                poison(dv, in.rows * in.lddv * 4);
                for (int dir = 0; dir < 2; dir++)
                    cuda_hgru_bwd(dq, dk, dg, dv, in.lddv, gdo, gq, gk, gg, gv, in.ldv, in.B, in.T, in.H, in.K, in.Dv,
                                  chunk, dir, dir);
                res[r] = {down(dq, in.nqk), down(dk, in.nqk), down(dg, in.nqk), down(dv, in.rows * in.lddv)};
            }
            char sh2[96];
            snprintf(sh2, sizeof sh2, "%s bidir chunk %d", shape, chunk);
            for (int a = 0; a < 4; a++)
                check_bits(nm[a], sh2, res[0][a].data(), res[1][a].data(), res[0][a].size() * 4);
        }
    }
    {   // attention backward (dq, dk, dv each from its own kernel, no atomics)
        const int B = 2, T = g_quick ? 65 : 1000, H = 2, hd = 64;
        const int64_t D = (int64_t)H * hd, ld = 3 * D, rows = (int64_t)B * T;
        seed(1106);
        float *qkv = P.up(randn(rows * ld)), *dout = P.up(randn(rows * D)), *o = P.f(rows * D), *lse = P.f(rows * H);
        cuda_attention_fwd(o, lse, qkv, ld, qkv + D, qkv + 2 * D, ld, T * ld, B, T, T, H, hd);
        Vec res[2];
        for (int r = 0; r < 2; r++) {
            float *d = P.f(rows * ld);
            cuda_attention_bwd(d, d + D, d + 2 * D, ld, dout, qkv, qkv + D, qkv + 2 * D, ld, o, lse, B, T, H, hd);
            res[r] = down(d, rows * ld);
        }
        snprintf(shape, sizeof shape, "B%d T%d H%d hd%d", B, T, H, hd);
        check_bits("determinism attention_bwd", shape, res[0].data(), res[1].data(), res[0].size() * 4);
    }
    {   // sumsq and the cross-entropy forward
        seed(1105);
        int64_t N = g_quick ? 8 : 64;
        int V = 50304;
        Vec l = randn(N * V, 3);
        std::vector<int32_t> t(N);
        for (auto &x : t) x = (int32_t)(next_u64() % V);
        float *gl = P.up(l), *a = P.f(N), *b = P.f(N);
        int32_t *gt = P.up(t);
        double s1 = cuda_sumsq(gl, N * V), s2 = cuda_sumsq(gl, N * V);
        snprintf(shape, sizeof shape, "n %lld", (long long)(N * V));
        check_bits("determinism sumsq", shape, &s1, &s2, sizeof s1);
        cuda_xent_fwd(a, gl, gt, N, V);
        cuda_xent_fwd(b, gl, gt, N, V);
        Vec ha = down(a, N), hb = down(b, N);
        snprintf(shape, sizeof shape, "N%lld V%d", (long long)N, V);
        check_bits("determinism xent_fwd", shape, ha.data(), hb.data(), N * 4);
    }
}

// ======================================================================================================
// the gradients' reduction through NCCL
// ======================================================================================================
#ifdef HGRN2_NCCL
// The gradients' reduction in buckets (cuda_nccl_reduce_bucket, nccl.cuh) on a communicator of this GPU alone:
// each sum is then the GPU's own values, unchanged in fp32, rounded to bf16 through bf16 (the host's rounding,
// bf16_bits). What one GPU can check is the order of the two streams. Each bucket is sent just after a large
// exact-fp32 product has been enqueued on the ops' stream to write the vector (poisoned with NaN before), so a
// communication stream that did not wait for the ops would convert values not yet written and, through bf16,
// write them back; another product follows each bucket, as the backward would, and the result is read on the
// ops' stream right after cuda_nccl_reduce_wait, so an ops' stream that did not wait for the last bucket would
// read values not yet rounded. Two steps each, the second reusing the bf16 copy. The cut into several ranks'
// pieces runs on several GPUs only (scripts/multi_gpu_check.sh).
static void test_nccl_buckets(void) {
    unsigned char id[CUDA_NCCL_ID_BYTES];
    cuda_nccl_unique_id(id);
    cuda_nccl_init(id, 0, 1);
    cuda_set_gemm_precision(0);
    const int64_t N = g_quick ? 256 : 2048;
    const int I = 4096, O = 4096;
    const int64_t n = N * O;
    Pool P;
    seed(4242);
    float *gx = P.up(randn(N * I)), *gW = P.up(randn((size_t)O * I, 0.05)), *gy = P.f(n), *busy = P.f(n);
    cuda_matmul_fwd(gy, gx, gW, N, I, O);   // the values every step writes (cuBLAS gives the same bits each time)
    const Vec ref = down(gy, n);
    // buckets from the top as dist.c cuts them: an odd size, so most start unaligned (the conversion's scalar
    // path), and one a quarter of the vector (its vector path)
    const int64_t sizes[2] = {1000003, n / 4};
    for (int bf16 = 0; bf16 < 2; bf16++)
        for (int b = 0; b < 2; b++)
            for (int step = 0; step < 2; step++) {
                poison(gy, n * sizeof(float));
                cuda_matmul_fwd(gy, gx, gW, N, I, O);
                for (int64_t hi = n; hi > 0; hi -= sizes[b]) {
                    cuda_nccl_reduce_bucket(gy, hi > sizes[b] ? hi - sizes[b] : 0, hi, n, bf16);
                    cuda_matmul_fwd(busy, gx, gW, N, I, O);
                }
                cuda_nccl_reduce_wait();
                Vec got = down(gy, n), want = ref;
                if (bf16)
                    for (auto &v : want) v = bf16_value(bf16_bits(v));
                char shape[96];
                snprintf(shape, sizeof shape, "%lld values, buckets of %lld, step %d", (long long)n, (long long)sizes[b],
                         step + 1);
                check_bits(bf16 ? "nccl buckets bf16" : "nccl buckets fp32", shape, got.data(), want.data(), n * sizeof(float));
            }
    cuda_set_gemm_precision(1);
    cuda_nccl_finish();
}
#endif

#include "bench_gpu.h"   // --bench, --bench-decode and --bench-classifier: timings, not checks

static void test_attention_fp32(void) {   // the fp32 kernels' checks, whatever the precision
    cuda_attention_path(0);
    test_attention();
    cuda_attention_path(-1);
}

// the checks in order; --only NAME runs one group (a focused run under the sanitizers)
static const struct { const char *name; void (*fn)(void); } CHECKS[] = {
    {"matmul", test_matmul}, {"embed", test_embed}, {"elementwise", test_elementwise}, {"rmsnorm", test_rmsnorm},
    {"gates", test_gates}, {"lower_bounds", test_lower_bounds}, {"hgru", test_hgru}, {"hgrn1_scan", test_hgrn1_scan},
    {"rmsnorm_gated", test_rmsnorm_gated}, {"rope", test_rope}, {"attention", test_attention_fp32}, {"attention_cudnn", test_attention_cudnn},
    {"swiglu", test_swiglu}, {"decode_fused", test_decode_fused}, {"xent", test_xent}, {"xent_soft", test_xent_soft},
    {"argmax", test_argmax}, {"classifier", test_classifier}, {"adamw", test_adamw}, {"adamw_multi", test_adamw_multi}, {"adamw_ctl", test_adamw_ctl},
    {"adamw_bf16_copy", test_adamw_bf16_copy}, {"determinism", test_determinism},
};

int main(int argc, char **argv) {
    int do_bench = 0, nccl = 1;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--bench")) do_bench = 1;
        else if (!strcmp(argv[i], "--bench-decode")) do_bench = 2;
        else if (!strcmp(argv[i], "--bench-classifier")) do_bench = 3;
        else if (!strcmp(argv[i], "--bench-mixer")) do_bench = 4;
        else if (!strcmp(argv[i], "--quick")) g_quick = 1;
        else if (!strcmp(argv[i], "--no-nccl")) nccl = 0;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--quick] [--no-nccl] [--only CHECK] | --bench | --bench-decode | --bench-classifier | --bench-mixer\n", argv[0]);
            return EXIT_USAGE;
        }
    }
    bool known = !only;
    for (size_t i = 0; only && i < sizeof CHECKS / sizeof *CHECKS; i++) known |= !strcmp(only, CHECKS[i].name);
    if (!known) {
        fprintf(stderr, "--only: unknown check %s; one of:", only);
        for (size_t i = 0; i < sizeof CHECKS / sizeof *CHECKS; i++) fprintf(stderr, " %s", CHECKS[i].name);
        fprintf(stderr, "\n");
        return EXIT_USAGE;
    }
    cuda_init();
    cuda_set_gemm_precision(1);   // the baseline of the checks and timings; a check of another mode sets it and returns
    if (do_bench) {
        if (do_bench == 2) {
            Pool P;
            bench_decode(P);
        } else if (do_bench == 3) bench_classifier();
        else if (do_bench == 4) {
            printf("-- the token mixer on %s (median of 20 after warm-up)\n", cuda_device_name());
            bench_mixer(false);
        } else bench();
        return 0;
    }
    printf("-- CUDA ops against the CPU ops on %s\n", cuda_device_name());
    for (size_t i = 0; i < sizeof CHECKS / sizeof *CHECKS; i++) {
        if (!only || !strcmp(only, CHECKS[i].name)) CHECKS[i].fn();
    }
#ifdef HGRN2_NCCL
    if (nccl && !only) test_nccl_buckets();
#else
    (void)nccl;
#endif
    return gpu_check_summary();
}
