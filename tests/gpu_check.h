// tests/gpu_check.h: what the CUDA op tests (test_gpu.cu, test_gpu_cls.cu) share: random inputs, device buffers
// and operands, and the checks of a GPU result against the CPU's, counted. C++; each program includes it once.
#ifndef HGRN2_TESTS_GPU_CHECK_H
#define HGRN2_TESTS_GPU_CHECK_H

#include "../common.h"
#include "../cuda_ops.h"
#include <cuda_runtime.h>
#include <math.h>
#include <string.h>
#include <vector>

typedef std::vector<float> Vec;

#define CK(call)                                                                                              \
    do {                                                                                                      \
        cudaError_t e_ = (call);                                                                              \
        if (e_ != cudaSuccess) die("CUDA error at %s:%d: %s", __FILE__, __LINE__, cudaGetErrorString(e_));   \
    } while (0)

static int n_fail = 0, n_pass = 0;
static int g_quick = 0;   // --quick: only the small shapes (a fast smoke test)

// ---- random numbers (splitmix64 of common.h) ----
static uint64_t rng_state = 1;
static inline void seed(uint64_t s) { rng_state = s * 0x2545F4914F6CDD1Dull + 12345; }
static inline uint64_t next_u64(void) { return splitmix64(&rng_state); }
static inline double urand(void) { return rng_uniform(&rng_state); }
static inline double nrand(void) { return rng_normal(&rng_state); }
static inline Vec randn(size_t n, double scale = 1, double offset = 0) {   // offset + scale * normal
    Vec v(n);
    for (auto &x : v) x = (float)(offset + scale * nrand());
    return v;
}

// ---- device buffers: a pool freed at the end of each test ----
struct Pool {
    std::vector<void *> ps;
    float *f(size_t n) { return (float *)add(cuda_alloc(n * sizeof(float), "test buffer")); }
    int32_t *i(size_t n) { return (int32_t *)add(cuda_alloc(n * sizeof(int32_t), "test buffer")); }
    float *up(const Vec &h) {
        float *d = f(h.size());
        cuda_to_device(d, h.data(), h.size() * sizeof(float));
        return d;
    }
    int32_t *up(const std::vector<int32_t> &h) {
        int32_t *d = i(h.size());
        cuda_to_device(d, h.data(), h.size() * sizeof(int32_t));
        return d;
    }
    void *add(void *p) { ps.push_back(p); return p; }
    ~Pool() { for (void *p : ps) cuda_free(p); }
};
static inline Vec down(const float *d, size_t n) {
    Vec h(n);
    cuda_to_host(h.data(), d, n * sizeof(float));
    return h;
}
static inline void poison(void *d, size_t bytes) {   // NaN in every float (and every bf16)
    cuda_sync();
    CK(cudaMemset(d, 0xFF, bytes));
    CK(cudaDeviceSynchronize());
}
static inline void set(float *d, const Vec &h) { cuda_to_device(d, h.data(), h.size() * sizeof(float)); }

// ---- operands (ops.h): bf16 in GEMM mode 2, fp32 otherwise ----
static inline void *opnd_buf(Pool &P, size_t n) { return P.add(cuda_alloc(n * cuda_opnd_size(), "test operand")); }
static inline float bf16_value(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline uint16_t bf16_bits(float f) {   // round to nearest even, as __float2bfloat16 (no NaN inputs here)
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
}
static inline Vec opnd_down(const void *d, size_t n) {
    if (cuda_opnd_size() == 4) return down((const float *)d, n);
    std::vector<uint16_t> b(n);
    cuda_to_host(b.data(), d, n * 2);
    Vec h(n);
    for (size_t i = 0; i < n; i++) h[i] = bf16_value(b[i]);
    return h;
}

// ---- checks: one line each, PASS or FAIL, the op and the shape in columns ----
// gpu against cpu, the errors measured against sc (cpu itself, or the sizes of the terms an output is made of
// where it may cancel to far less than them): the relative error in the 2-norm within tol and the largest
// elementwise one within 10 tol; NaN or inf where the CPU has a number fails. note ends the line.
static inline void compare_to(const char *op, const char *shape, const Vec &gpu, const Vec &cpu, const Vec &sc,
                              double tol, const char *note) {
    double e2 = 0, r2 = 0, emax = 0, rmax = 0;
    bool bad = gpu.size() != cpu.size() || sc.size() != cpu.size();
    for (size_t i = 0; i < cpu.size() && !bad; i++) {
        double d = fabs((double)gpu[i] - cpu[i]);
        if (!(d == d) || isinf(d)) { bad = true; break; }
        e2 += d * d;
        r2 += (double)sc[i] * sc[i];
        emax = d > emax ? d : emax;
        rmax = fabs(sc[i]) > rmax ? fabs(sc[i]) : rmax;
    }
    double rel = bad ? NAN : (r2 > 0 ? sqrt(e2 / r2) : sqrt(e2));
    double mrel = bad ? NAN : emax / (rmax > 0 ? rmax : 1);
    bool ok = !bad && rel <= tol && mrel <= 10 * tol;
    printf("%s  %-26s %-40s rel %.2e  max %.2e  tol %.0e%s\n", ok ? "PASS" : "FAIL", op, shape, rel, mrel, tol, note);
    ok ? n_pass++ : n_fail++;
}
static inline void compare(const char *op, const char *shape, const Vec &gpu, const Vec &cpu, double tol) {
    compare_to(op, shape, gpu, cpu, cpu, tol, "");
}
static inline void check_bits(const char *op, const char *shape, const void *a, const void *b, size_t bytes) {
    bool ok = memcmp(a, b, bytes) == 0;
    printf("%s  %-26s %-40s %s\n", ok ? "PASS" : "FAIL", op, shape, ok ? "bitwise equal" : "DIFFER");
    ok ? n_pass++ : n_fail++;
}

// The last line; returns the exit status (1 on any failure).
static inline int gpu_check_summary(void) {
    printf("%d passed, %d failed; peak GPU memory %.1f MiB\n", n_pass, n_fail, cuda_peak_bytes() / 1048576.0);
    return n_fail ? 1 : 0;
}

#endif
