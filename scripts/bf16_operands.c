// What storing the token mixer's inputs in bf16 would cost in accuracy, before any kernel is written: the
// exact recurrence and its backward (the CPU ops in float64) on inputs drawn as the model makes them, once as
// they are and once with q and k (then also v) rounded to bf16, and the relative 2-norm difference of each
// output (o, dq, dk, dg, dv). g stays as it is: its cumulative sums need fp32. The chunked GPU kernels' error
// against the same ops is about 2.4e-3 (docs/kernels.md, Numerics); what this prints adds to that.
//
// Build against the float64 library the gradient tests use (make test builds it in build/f64, or in build/f64-...
// with a suffix for each optional library make did not find: ls build/f64*/libhgrn2.a), in one command:
//   cc -O2 -std=gnu11 -fopenmp -DHGRN2_F64 -I. -o /tmp/bf16_operands scripts/bf16_operands.c
//      build/f64/libhgrn2.a -lzstd -lpng -lz -lpthread -lm
//   /tmp/bf16_operands [T [LOWER_BOUND]]     (default T 256, lower bound 0; B 2, H 2, K = Dv = 128)
#include "hf.h"
#include "ops.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 12345;
static double urand(void) {   // xorshift64, [0, 1)
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}
static double nrand(void) { return sqrt(-2 * log(urand() + 1e-300)) * cos(6.283185307179586 * urand()); }
static double to_bf16(double x) { return bf16_to_f32(f32_to_bf16((float)x)); }   // common.h's, nearest even
static double rel(const double *a, const double *b, size_t n) {
    double e = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        e += (a[i] - b[i]) * (a[i] - b[i]);
        r += b[i] * b[i];
    }
    return sqrt(e / r);
}
static double *alloc(size_t n) {
    double *p = calloc(n, sizeof *p);
    if (!p) { fprintf(stderr, "bf16_operands: out of memory\n"); exit(1); }
    return p;
}

int main(int argc, char **argv) {
    const int B = 2, H = 2, K = 128, Dv = 128, T = argc > 1 ? atoi(argv[1]) : 256;
    const double lb = argc > 2 ? atof(argv[2]) : 0.0;
    if (T < 1 || T > 65536 || !(lb >= 0 && lb < 1)) {
        fprintf(stderr, "usage: %s [T (1..65536) [LOWER_BOUND (0 <= lb < 1)]]\n", argv[0]);
        return 2;
    }
    const size_t n = (size_t)B * T * H * K, nv = (size_t)B * T * H * Dv;
    double *q = alloc(n), *k = alloc(n), *g = alloc(n), *v = alloc(nv), *dout = alloc(nv);
    double *qr = alloc(n), *kr = alloc(n), *vr = alloc(nv);
    for (size_t i = 0; i < n; i++) {   // q = swish(x); the forget gate a = lb + (1 - lb) sigmoid(f), g = log a, k = 1 - a
        const double x = nrand(), f = nrand() + 2.0, a = lb + (1 - lb) / (1 + exp(-f));
        q[i] = x / (1 + exp(-x));
        g[i] = log(a);
        k[i] = 1 - a;
        qr[i] = to_bf16(q[i]);
        kr[i] = to_bf16(k[i]);
    }
    for (size_t i = 0; i < nv; i++) {
        v[i] = nrand();
        vr[i] = to_bf16(v[i]);
        dout[i] = nrand();
    }
    static const char *const names[5] = {"o", "dq", "dk", "dg", "dv"};
    double *ref[5] = {0};
    for (int c = 0; c < 3; c++) {   // 0: as drawn; 1: q and k in bf16; 2: q, k and v in bf16
        const double *qq = c ? qr : q, *kk = c ? kr : k, *vv = c == 2 ? vr : v;
        double *out[5] = {alloc(nv), alloc(n), alloc(n), alloc(n), alloc(nv)};
        op_hgru_fwd(out[0], NULL, qq, kk, g, vv, (int64_t)H * Dv, NULL, B, T, H, K, Dv, 0, 0, 0);
        op_hgru_bwd(out[1], out[2], out[3], out[4], (int64_t)H * Dv, dout, qq, kk, g, vv, (int64_t)H * Dv, B, T, H, K,
                    Dv, 0, 0, 0);
        if (c == 0) {
            memcpy(ref, out, sizeof ref);
            continue;
        }
        printf("T %d, lower bound %.2f, %s in bf16:", T, lb, c == 1 ? "q and k" : "q, k and v");
        for (int j = 0; j < 5; j++) printf("  %s %.2e", names[j], rel(out[j], ref[j], j == 0 || j == 4 ? nv : n));
        printf("\n");
        for (int j = 0; j < 5; j++) free(out[j]);
    }
    return 0;
}
