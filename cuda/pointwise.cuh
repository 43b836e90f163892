// cuda/pointwise.cuh: the elementwise and the small ops: zero, sum of squares, gates, lower bounds, SwiGLU.
#pragma once
#include "reduce.cuh"

// ---------------------------------------------------------------------------------------------------------
// sum of squares
// ---------------------------------------------------------------------------------------------------------
// Sum of squares in double: a fixed grid of SS_BLOCKS blocks whatever n, so the summation order only depends on n.
#define SS_BLOCKS 512
__global__ void sumsq_partial_kernel(double *part, const float *__restrict__ a, int64_t n) {
    double s = 0;
    GRID_STRIDE(i, n) {
        double x = a[i];
        s += x * x;
    }
    s = block_sum_d(s);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}
__global__ void sumsq_final_kernel(double *out, const double *__restrict__ part, int np) {
    double s = 0;
    for (int i = threadIdx.x; i < np; i += blockDim.x) s += part[i];
    s = block_sum_d(s);
    if (threadIdx.x == 0) *out = s;
}

// ---------------------------------------------------------------------------------------------------------
// gates: the same formulas as cpu.c
// ---------------------------------------------------------------------------------------------------------
// One column's gates from its q pre-activation x and forget logit f (ops.h, op_gates_fwd); lb: its lower bound
// or NULL. Shared by the gates' op and decoding's step (decode.cuh), so both compute the same bits.
__device__ __forceinline__ void gate_values(float x, float f, const float *lb, float &q, float &k, float &g) {
    float s, sn;
    sigmoid2(x, s, sn);
    q = x * s;
    sigmoid2(f, s, sn);
    if (!lb) {
        g = -((f < 0 ? -f : 0.f) + log1pf(expf(-fabsf(f))));   // logsigmoid(f) = -softplus(-f)
        k = sn;
    } else {
        // g = log(lam) = log1p(-k): log1p keeps precision when the gate is near 1, log(lam) when near 0
        const float l = *lb, kk = (1 - l) * sn;
        k = kk;
        g = kk < 0.5f ? log1pf(-kk) : logf(l + (1 - l) * s);
    }
}

// V (1 or 4) columns a thread: four when the rows allow float4s, for more bytes in flight per thread.
template <int V>
__global__ void gates_fwd_kernel(float *__restrict__ q, float *__restrict__ k, float *__restrict__ g,
                                 const float *__restrict__ qf, int64_t ldqf, const float *__restrict__ lb, int64_t N,
                                 int HK) {
    ROWS_COLS(n, cv, N, HK / V) {
        const int c = V * cv;
        const int64_t i = n * HK + c;
        const float *qp = qf + n * ldqf;
        float x[V], f[V], qv[V], kv[V], gv[V];
        loadv<V>(qp + c, x);
        loadv<V>(qp + HK + c, f);
#pragma unroll
        for (int u = 0; u < V; u++) gate_values(x[u], f[u], lb ? lb + c + u : NULL, qv[u], kv[u], gv[u]);
        storev<V>(q + i, qv);
        storev<V>(k + i, kv);
        storev<V>(g + i, gv);
    }
}

#define COL_ROWS 64   // rows per chunk of the gates' dlb partials

// col_launch: each thread writes dqf for its column over COL_ROWS rows and, with a lower
// bound, leaves the chunk's dlb partial in part. dqf may equal qf: every element is read before it is written,
// and by the thread that writes it. Since they may alias, the compiler keeps each row's loads behind the row
// before's stores, one row's loads in flight at a time; so a thread loads GB_ROWS rows before it stores any.
#define GB_ROWS 4
template <typename T>
__global__ void gates_bwd_kernel(T *dqf, int64_t lddqf, float *__restrict__ part, const float *__restrict__ dq,
                                 const float *__restrict__ dk, const float *__restrict__ dg, const float *qf,
                                 int64_t ldqf, const float *__restrict__ lb, int64_t N, int HK) {
    COL_CHUNK(j, c);
    const int64_t n0 = j * COL_ROWS, n1 = n0 + COL_ROWS < N ? n0 + COL_ROWS : N;
    if (c >= HK || n0 >= N) return;
    float l = lb ? lb[c] : 0.f, acc = 0.f;
    for (int64_t n = n0; n < n1; n += GB_ROWS) {
        float x[GB_ROWS], f[GB_ROWS], dqv[GB_ROWS], dkv[GB_ROWS], dgv[GB_ROWS];
#pragma unroll
        for (int u = 0; u < GB_ROWS; u++)
            if (n + u < n1) {
                const int64_t r = n + u;
                x[u] = qf[r * ldqf + c];
                f[u] = qf[r * ldqf + HK + c];
                dqv[u] = dq[r * HK + c];
                dkv[u] = dk[r * HK + c];
                dgv[u] = dg[r * HK + c];
            }
#pragma unroll
        for (int u = 0; u < GB_ROWS; u++)
            if (n + u < n1) {
                const int64_t r = n + u;
                float sq, sqn, s, sn;
                sigmoid2(x[u], sq, sqn);
                sigmoid2(f[u], s, sn);
                put(dqf + r * lddqf + c, dqv[u] * (sq + x[u] * sq * sqn));
                if (!lb) {
                    put(dqf + r * lddqf + HK + c, (dgv[u] - dkv[u] * s) * sn);   // lam = s, k = 1 - s
                } else {
                    float lam = l + (1 - l) * s, dlam = dgv[u] / lam - dkv[u];
                    put(dqf + r * lddqf + HK + c, dlam * (1 - l) * s * sn);
                    acc += dlam * sn;
                }
            }
    }
    if (part) part[j * HK + c] = acc;
}

// ---------------------------------------------------------------------------------------------------------
// lower bounds: one thread per channel, looping over the L layers (tiny)
// ---------------------------------------------------------------------------------------------------------
// p = softmax over layers; lb[l] = p[1] + ... + p[l] (= cumsum(p)[l] - p[0] without the cancellation)
__global__ void lb_fwd_kernel(float *__restrict__ lb, const float *__restrict__ P, int L, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C || L <= 0) return;
    float m = P[c];
    for (int l = 1; l < L; l++) m = fmaxf(m, P[(int64_t)l * C + c]);
    float z = 0.f;
    for (int l = 0; l < L; l++) z += expf(P[(int64_t)l * C + c] - m);
    float acc = 0.f;
    lb[c] = 0.f;
    for (int l = 1; l < L; l++) {
        acc += expf(P[(int64_t)l * C + c] - m) / z;
        lb[(int64_t)l * C + c] = acc;
    }
}

// dp[j] = sum_{l>=j} dlb[l] for j >= 1, dp[0] = 0; dP += p (dp - sum_l p dp)
__global__ void lb_bwd_kernel(float *__restrict__ dP, const float *__restrict__ dlb, const float *__restrict__ P,
                              int L, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C || L <= 0) return;
    float m = P[c];
    for (int l = 1; l < L; l++) m = fmaxf(m, P[(int64_t)l * C + c]);
    float z = 0.f;
    for (int l = 0; l < L; l++) z += expf(P[(int64_t)l * C + c] - m);
    float acc = 0.f, s = 0.f;
    for (int l = L - 1; l >= 1; l--) {
        acc += dlb[(int64_t)l * C + c];
        s += expf(P[(int64_t)l * C + c] - m) / z * acc;
    }
    acc = 0.f;
    for (int l = L - 1; l >= 0; l--) {
        if (l >= 1) acc += dlb[(int64_t)l * C + c];
        float p = expf(P[(int64_t)l * C + c] - m) / z;
        dP[(int64_t)l * C + c] += p * ((l >= 1 ? acc : 0.f) - s);
    }
}

// ---------------------------------------------------------------------------------------------------------
// SwiGLU
// ---------------------------------------------------------------------------------------------------------
// ROWS_COLS over the rows; with V = 4 each thread takes four consecutive columns per load (I a multiple of 4,
// rows aligned), else one.
template <int V, typename T>
__global__ void swiglu_fwd_kernel(T *__restrict__ h, const T *__restrict__ gu, int64_t N, int I) {
    ROWS_COLS(n, j, N, I / V) {
        const T *gt = gu + n * 2 * I + j * V;
        float x[V], up[V], y[V];
        if constexpr (V == 4) { load4(gt, x); load4(gt + I, up); }
        else { x[0] = ld1(gt); up[0] = ld1(gt + I); }
#pragma unroll
        for (int e = 0; e < V; e++) {
            float s, sn;
            sigmoid2(x[e], s, sn);
            y[e] = x[e] * s * up[e];
        }
        if constexpr (V == 4) store4(h + n * I + j * V, y);
        else put(h + n * I + j, y[0]);
    }
}

template <int V, typename T>
__global__ void swiglu_bwd_kernel(T *__restrict__ dgu, const float *__restrict__ dh, const T *__restrict__ gu,
                                  int64_t N, int I) {
    ROWS_COLS(n, j, N, I / V) {
        const T *gt = gu + n * 2 * I + j * V;
        float x[V], up[V], d[V], dg[V], du[V];
        if constexpr (V == 4) { load4(gt, x); load4(gt + I, up); load4(dh + n * I + j * V, d); }
        else { x[0] = ld1(gt); up[0] = ld1(gt + I); d[0] = dh[n * I + j]; }
#pragma unroll
        for (int e = 0; e < V; e++) {
            float s, sn;
            sigmoid2(x[e], s, sn);
            dg[e] = d[e] * up[e] * (s + x[e] * s * sn);
            du[e] = d[e] * x[e] * s;
        }
        T *o = dgu + n * 2 * I + j * V;
        if constexpr (V == 4) { store4(o, dg); store4(o + I, du); }
        else { put(o, dg[0]); put(o + I, du[0]); }
    }
}

// ---------------------------------------------------------------------------------------------------------
// launchers
// ---------------------------------------------------------------------------------------------------------
extern "C" void cuda_zero(float *y, int64_t n) {
    if (n <= 0) return;
    PROF_COST(0, 4.0 * n);
    CUDA_CHECK(cudaMemsetAsync(y, 0, (size_t)n * sizeof(float), g_stream));   // 0.0f is all zero bits
}

// The sum of squares of a[n] into *out on the device: block partials (part [SS_BLOCKS]) then one block's sum
static void sumsq_launch(double *out, double *part, const float *a, int64_t n) {
    sumsq_partial_kernel<<<SS_BLOCKS, 256, 0, g_stream>>>(part, a, n);
    LAUNCH_CHECK("sumsq_partial");
    sumsq_final_kernel<<<1, 512, 0, g_stream>>>(out, part, SS_BLOCKS);
    LAUNCH_CHECK("sumsq_final");
}

extern "C" void cuda_sumsq_into(double *out, const float *a, int64_t n) {
    PROF_COST(2.0 * n, 4.0 * n);
    if (n <= 0) {
        CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(double), g_stream));   // 0.0 is all zero bits
        return;
    }
    sumsq_launch(out, (double *)scratch(SS_BLOCKS * sizeof(double)), a, n);
}

extern "C" double cuda_sumsq(const float *a, int64_t n) {
    if (n <= 0) return 0;
    PROF_COST(2.0 * n, 4.0 * n);
    Carve cv = {scratch(align256(SS_BLOCKS * sizeof(double)) + align256(sizeof(double)))};
    double *part = cv.take<double>(SS_BLOCKS), *out = cv.take<double>(1);
    sumsq_launch(out, part, a, n);
    double r;
    cuda_to_host(&r, out, sizeof r);
    return r;
}

// *flag = 1 when a value of x (of a row with a target, where tgt is given) is not finite; it is left alone
// otherwise, so that several calls gather into one flag.
__global__ void flag_nonfinite_kernel(int32_t *flag, const float *__restrict__ x, const int32_t *__restrict__ tgt,
                                      int64_t n) {
    GRID_STRIDE(i, n) if ((!tgt || tgt[i] >= 0) && !isfinite(x[i])) *flag = 1;
}
extern "C" void cuda_flag_nonfinite(int32_t *flag, const float *x, const int32_t *tgt, int64_t n) {
    if (n <= 0) return;
    PROF_COST(0, 8.0 * n);
    const int64_t blocks = (n + 255) / 256 < 1024 ? (n + 255) / 256 : 1024;
    flag_nonfinite_kernel<<<(unsigned)blocks, 256, 0, g_stream>>>(flag, x, tgt, n);
    LAUNCH_CHECK("flag_nonfinite");
}

extern "C" void cuda_gates_fwd(float *q, float *k, float *g, const float *qf, int64_t ldqf, const float *lb, int64_t N,
                               int HK) {
    if (N <= 0 || HK <= 0) return;
    PROF_COST(0, 20.0 * N * HK);   // q's and f's logits in, q, k and g out
    if (ldqf % 4 == 0 && vec4_rows(qf, HK) && vec4_rows(q, HK) && vec4_rows(k, HK) && vec4_rows(g, HK)) {
        const Launch2D rl = rows_launch(N, HK / 4);
        gates_fwd_kernel<4><<<rl.grid, rl.block, 0, g_stream>>>(q, k, g, qf, ldqf, lb, N, HK);
    } else {
        const Launch2D rl = rows_launch(N, HK);
        gates_fwd_kernel<1><<<rl.grid, rl.block, 0, g_stream>>>(q, k, g, qf, ldqf, lb, N, HK);
    }
    LAUNCH_CHECK("gates_fwd");
}

template <typename T>
static void gates_bwd_as(T *dqf, int64_t lddqf, float *dlb, const float *dq, const float *dk, const float *dg,
                         const float *qf, int64_t ldqf, const float *lb, int64_t N, int HK) {
    int64_t nchunks = (N + COL_ROWS - 1) / COL_ROWS;
    float *part = NULL;
    if (lb && dlb) part = (float *)scratch(align256(nchunks * HK * sizeof(float)));
    const Launch2D cl = col_launch(nchunks, HK);
    gates_bwd_kernel<T><<<cl.grid, cl.block, 0, g_stream>>>(dqf, lddqf, part, dq, dk, dg, qf, ldqf, lb, N, HK);
    LAUNCH_CHECK("gates_bwd");
    if (part) colsum_finish(dlb, part, nchunks, HK);
}
extern "C" void cuda_gates_bwd(float *dqf, int64_t lddqf, float *dlb, const float *dq, const float *dk,
                               const float *dg, const float *qf, int64_t ldqf, const float *lb, int64_t N, int HK) {
    if (N <= 0 || HK <= 0) return;
    PROF_COST(0, 28.0 * N * HK);   // dq, dk, dg and both logits in, both logits' gradients out
    gates_bwd_as(dqf, lddqf, dlb, dq, dk, dg, qf, ldqf, lb, N, HK);
}
// The logits' gradients written as operands (bf16 under --precision bf16), rounded as cuda_to_opnd rounds
extern "C" void cuda_gates_bwd_opnd(void *dqf, int64_t lddqf, float *dlb, const float *dq, const float *dk,
                                    const float *dg, const float *qf, int64_t ldqf, const float *lb, int64_t N, int HK) {
    if (N <= 0 || HK <= 0) return;
    PROF_COST(0, (20.0 + 2.0 * prof_os()) * N * HK);
    if (opnd_bf16()) gates_bwd_as((bf16 *)dqf, lddqf, dlb, dq, dk, dg, qf, ldqf, lb, N, HK);
    else gates_bwd_as((float *)dqf, lddqf, dlb, dq, dk, dg, qf, ldqf, lb, N, HK);
}

extern "C" void cuda_lower_bounds_fwd(float *lb, const float *P, int L, int C) {
    if (L <= 0 || C <= 0) return;
    lb_fwd_kernel<<<(C + 127) / 128, 128, 0, g_stream>>>(lb, P, L, C);
    LAUNCH_CHECK("lower_bounds_fwd");
}

extern "C" void cuda_lower_bounds_bwd(float *dP, const float *dlb, const float *P, int L, int C) {
    if (L <= 0 || C <= 0) return;
    lb_bwd_kernel<<<(C + 127) / 128, 128, 0, g_stream>>>(dP, dlb, P, L, C);
    LAUNCH_CHECK("lower_bounds_bwd");
}

template <typename T> static void swiglu_fwd_as(T *h, const T *gu, int64_t N, int I) {
    if (vec4_rows(h, I) && vec4_rows(gu, I)) {
        const Launch2D rl = rows_launch(N, I / 4);
        swiglu_fwd_kernel<4><<<rl.grid, rl.block, 0, g_stream>>>(h, gu, N, I);
    } else {
        const Launch2D rl = rows_launch(N, I);
        swiglu_fwd_kernel<1><<<rl.grid, rl.block, 0, g_stream>>>(h, gu, N, I);
    }
}
template <typename T> static void swiglu_bwd_as(T *dgu, const float *dh, const T *gu, int64_t N, int I) {
    if (vec4_rows(dgu, I) && vec4_rows(gu, I) && vec4_rows(dh, I)) {
        const Launch2D rl = rows_launch(N, I / 4);
        swiglu_bwd_kernel<4><<<rl.grid, rl.block, 0, g_stream>>>(dgu, dh, gu, N, I);
    } else {
        const Launch2D rl = rows_launch(N, I);
        swiglu_bwd_kernel<1><<<rl.grid, rl.block, 0, g_stream>>>(dgu, dh, gu, N, I);
    }
}

extern "C" void cuda_swiglu_fwd(void *h, const void *gu, int64_t N, int I) {
    if (N <= 0 || I <= 0) return;
    PROF_COST(0, 3.0 * N * I * prof_os());
    if (opnd_bf16()) swiglu_fwd_as((bf16 *)h, (const bf16 *)gu, N, I);
    else swiglu_fwd_as((float *)h, (const float *)gu, N, I);
    LAUNCH_CHECK("swiglu_fwd");
}

extern "C" void cuda_swiglu_bwd(void *dgu, const float *dh, const void *gu, int64_t N, int I) {
    if (N <= 0 || I <= 0) return;
    PROF_COST(0, 4.0 * N * I + 4.0 * N * I * prof_os());
    if (opnd_bf16()) swiglu_bwd_as((bf16 *)dgu, dh, (const bf16 *)gu, N, I);
    else swiglu_bwd_as((float *)dgu, dh, (const float *)gu, N, I);
    LAUNCH_CHECK("swiglu_bwd");
}
