// cpu_mixer.c: the CPU backend's token-mixer recurrences (ops.h): HGRU2's, plain and chunked, causal and reverse,
// over sequences or the columns of images, with its backward; decoding's step with its gates; HGRN1's element-wise
// recurrence and its gated RMSNorm. In plain C over `real` with OpenMP, deterministic as cpu.c (one thread per
// output, fixed orders); the oracle of the CUDA kernels.
#include "common.h"
#include "cpu_math.h"
#include "cpu_vec.h"
#include "ops.h"
#include <math.h>
#include <omp.h>
#if defined(__SSE2__)
#include <xmmintrin.h>
#endif

// ---------------------------------------------------------------------------------------------------------
// the HGRU2 recurrence
// ---------------------------------------------------------------------------------------------------------
// Decays of very negative gates underflow, and subnormal numbers trap to microcode on many x86 CPUs: with one
// gate in ten near -20, the chunked form ran 5x slower on a Xeon. The recurrence therefore runs with
// flush-to-zero and denormals-are-zero set in each of its threads (and restored after): numbers below 1e-38
// carry nothing here, and the flush is deterministic.
#if defined(__SSE2__)
static inline unsigned ftz_begin(void) { unsigned csr = _mm_getcsr(); _mm_setcsr(csr | 0x8040); return csr; }
static inline void ftz_end(unsigned csr) { _mm_setcsr(csr); }
#else
static inline unsigned ftz_begin(void) { return 0; }
static inline void ftz_end(unsigned csr) { (void)csr; }
#endif

// exp of a decay exponent: 0 below the smallest normal number, without exp's slow underflow path.
#ifdef HGRN2_F64
#define DECAY_MIN (-708.0)
#else
#define DECAY_MIN (-87.0f)
#endif
static inline real decay(real x) { return x < DECAY_MIN ? 0 : rexp(x); }

// One worker per (sequence, head) pair. Seq holds that pair's row pointers in the order of the scan: step t of
// q/k/g is at +t*sqk, of v at +t*sv, of o/dout at +t*so, of dv at +t*sdv. A reverse scan (ops.h) starts at
// position T-1 with negative strides, so step t is position T-1-t: every loop below reads and writes the
// sequence backwards in place, with the arithmetic of the forward scan.
typedef struct {
    const real *q, *k, *g, *v;
    int64_t sqk, sv, so;
    int64_t row;   // the row of step 0 (position 0, or T-1 in reverse)
    int64_t rstep; // rows from one step to the next: dir * (the rows between consecutive positions)
    int dir;       // 1, or -1 in reverse: the sign of every stride
    int T, K, Dv;
    real scale;    // 1/sqrt(K)
} Seq;

// Where sequence b of a call lies. Sequences come in blocks of `per` interleaved ones, a block of T*per rows:
// position t of sequence b is row (b / per) T per + b % per + t per. per = 1 is the 1-D op (sequence b at rows
// b T .. b T + T - 1); per = gw are the columns of images of gh = T rows of gw positions in raster order.
static Seq seq_at(const real *q, const real *k, const real *g, const real *v, int64_t ldv, int b, int h, int T,
                  int per, int H, int K, int Dv, int reverse) {
    Seq s;
    s.dir = reverse ? -1 : 1;
    const int64_t first = reverse && T > 0 ? T - 1 : 0;
    s.row = (int64_t)(b / per) * T * per + b % per + first * per;
    s.rstep = (int64_t)s.dir * per;
    int64_t qk0 = (s.row * H + h) * K;
    s.q = q + qk0; s.k = k + qk0; s.g = g + qk0;
    s.v = v + s.row * ldv + (int64_t)h * Dv;
    s.sqk = s.rstep * H * K; s.sv = s.rstep * ldv; s.so = s.rstep * H * Dv;
    s.T = T; s.K = K; s.Dv = Dv;
    s.scale = (real)(1.0 / sqrt((double)K));
    return s;
}

// One step of the recurrence, S = diag(exp(g_t)) Sin + k_t v_t^T (Sin may be S), and o_t = S^T q_t / sqrt(K)
// when o is given. ag: exp(g_t) when already computed, else NULL.
static void rec_step(const Seq *sq, real *S, const real *Sin, int t, const real *ag, real *restrict o) {
    const real *q = sq->q + t * sq->sqk, *k = sq->k + t * sq->sqk, *g = sq->g + t * sq->sqk;
    const real *v = sq->v + t * sq->sv;
    int Dv = sq->Dv;
    if (o) for (int j = 0; j < Dv; j++) o[j] = 0;
    for (int i = 0; i < sq->K; i++) {
        real a = ag ? ag[i] : decay(g[i]), ki = k[i];
        real *Si = S + (int64_t)i * Dv;
        const real *Ii = Sin + (int64_t)i * Dv;
        for (int j = 0; j < Dv; j++) Si[j] = a * Ii[j] + ki * v[j];
        if (o) axpy(o, q[i] * sq->scale, Si, Dv);
    }
}

// ---- chunked form ----
// Per chunk of n <= chunk steps starting at t0, with b_r = g_1 + ... + g_r (local cumulative, per channel):
//   o_r = (q~_r exp(b_r))^T S0 + sum_{s<=r} A[r,s] v_s,   A[r,s] = sum_i q~_{r,i} k_{s,i} exp(b_{r,i} - b_{s,i})
//   S_n = diag(exp(b_n)) S0 + sum_s (k_s exp(b_n - b_s)) v_s^T
// Every exponent used is <= 0 because g <= 0. A is built in SB-row sub-blocks: off the diagonal the decay is
// split around the anchor a = r0 - 1 just before the row block, exp(b_r - b_a) exp(b_a - b_s), both factors
// <= 1, which makes the block a plain product of two matrices; inside a diagonal block the decay is the
// running product of the per-step factors exp(g_u) <= 1, which never overflows either and needs no exp per
// (r, s, i).
#define SB 16

typedef struct {
    int C, K, Dv;
    real *qs, *kk, *ag, *b, *eb; // [C][K]: q / sqrt(K), k, exp(g), local cumulative g, exp(b)
    real *Ka, *Eb;               // [C][K] anchored keys and their decay factors
    real *kc;                    // [C][K] k_s exp(b_n - b_s)
    real *dqs, *dks;             // [C][K] gradients wrt q~ and k inside the chunk (backward)
    real *A, *D;                 // [C][C] intra-chunk scores, and do_r . v_s (backward)
    real *Qa, *Ea;               // [SB][K] anchored queries and their decay factors
    real *tmp, *E, *run;         // [K]; run: dg's running sum over the later chunks (backward)
    real *row;                   // [Dv] an output row before it is added (acc)
} Chunk;

static void chunk_alloc(Chunk *c, int C, int K, int Dv) {
    c->C = C; c->K = K; c->Dv = Dv;
    size_t ck = (size_t)C * K;
    real *p = xmalloc((10 * ck + 2 * (size_t)C * C + 2 * (size_t)SB * K + 3 * (size_t)K + Dv) * sizeof(real));
    c->qs = p; p += ck; c->kk = p; p += ck; c->ag = p; p += ck; c->b = p; p += ck; c->eb = p; p += ck;
    c->Ka = p; p += ck; c->Eb = p; p += ck; c->kc = p; p += ck; c->dqs = p; p += ck; c->dks = p; p += ck;
    c->A = p; p += (size_t)C * C; c->D = p; p += (size_t)C * C;
    c->Qa = p; p += (size_t)SB * K; c->Ea = p; p += (size_t)SB * K;
    c->tmp = p; p += K; c->E = p; p += K; c->run = p; p += K; c->row = p;
}
static void chunk_free(Chunk *c) { free(c->qs); }

// Loads rows t0..t0+n-1: q~, k, exp(g), the local cumulative sums b, exp(b), and kc.
static void chunk_load(Chunk *c, const Seq *sq, int t0, int n) {
    int K = c->K;
    for (int r = 0; r < n; r++) {
        const real *q = sq->q + (t0 + r) * sq->sqk, *k = sq->k + (t0 + r) * sq->sqk;
        const real *g = sq->g + (t0 + r) * sq->sqk;
        real *qs = c->qs + (int64_t)r * K, *kk = c->kk + (int64_t)r * K, *ag = c->ag + (int64_t)r * K;
        real *b = c->b + (int64_t)r * K, *eb = c->eb + (int64_t)r * K;
        for (int i = 0; i < K; i++) {
            qs[i] = q[i] * sq->scale;
            kk[i] = k[i];
            ag[i] = decay(g[i]);
            b[i] = r ? b[i - K] + g[i] : g[i];
            eb[i] = decay(b[i]);
        }
    }
    // kc[s] = k_s exp(b_n - b_s): the weight with which step s enters the state leaving the chunk
    const real *bn = c->b + (int64_t)(n - 1) * K;
    for (int s = 0; s < n; s++) {
        const real *bs = c->b + (int64_t)s * K, *ks = c->kk + (int64_t)s * K;
        real *kc = c->kc + (int64_t)s * K;
        for (int i = 0; i < K; i++) kc[i] = ks[i] * decay(bn[i] - bs[i]);
    }
}

// Intra-chunk scores A[r,s] (s <= r, row stride C). In the backward (dk != NULL, D filled) it also adds
//   dqs[r] += sum_{s<=r} D[r,s] k_s exp(b_r - b_s)   and   dk[s] += sum_{r>=s} D[r,s] q~_r exp(b_r - b_s).
static void chunk_intra(Chunk *c, int n, real *dk) {
    int K = c->K, C = c->C;
    const real *D = dk ? c->D : NULL;
    real *A = c->A, *E = c->E, *tmp = c->tmp;
    for (int r0 = 0; r0 < n; r0 += SB) {
        int r1 = r0 + SB < n ? r0 + SB : n;
        // diagonal block: E = exp(b_r - b_s) as the running product of exp(g_u), u = s+1..r
        for (int s = r0; s < r1; s++) {
            const real *ks = c->kk + (int64_t)s * K;
            for (int i = 0; i < K; i++) E[i] = 1;
            for (int r = s; r < r1; r++) {
                const real *qr = c->qs + (int64_t)r * K, *ag = c->ag + (int64_t)r * K;
                if (r > s) for (int i = 0; i < K; i++) E[i] *= ag[i];
                for (int i = 0; i < K; i++) tmp[i] = ks[i] * E[i];
                A[r * C + s] = dot(qr, tmp, K);
                if (D) {
                    real d = D[r * C + s];
                    axpy(c->dqs + (int64_t)r * K, d, tmp, K);
                    real *dks = dk + (int64_t)s * K;
                    for (int i = 0; i < K; i++) dks[i] += d * qr[i] * E[i];
                }
            }
        }
        if (r0 == 0) continue;
        // off-diagonal blocks, anchored at row a = r0 - 1
        const real *ba = c->b + (int64_t)(r0 - 1) * K;
        for (int r = r0; r < r1; r++) {
            const real *br = c->b + (int64_t)r * K, *qr = c->qs + (int64_t)r * K;
            real *ea = c->Ea + (int64_t)(r - r0) * K, *qa = c->Qa + (int64_t)(r - r0) * K;
            for (int i = 0; i < K; i++) { ea[i] = decay(br[i] - ba[i]); qa[i] = qr[i] * ea[i]; }
        }
        for (int s = 0; s < r0; s++) {
            const real *bs = c->b + (int64_t)s * K, *ks = c->kk + (int64_t)s * K;
            real *eb = c->Eb + (int64_t)s * K, *ka = c->Ka + (int64_t)s * K;
            for (int i = 0; i < K; i++) { eb[i] = decay(ba[i] - bs[i]); ka[i] = ks[i] * eb[i]; }
        }
        for (int r = r0; r < r1; r++)
            for (int s = 0; s < r0; s++)
                A[r * C + s] = dot(c->Qa + (int64_t)(r - r0) * K, c->Ka + (int64_t)s * K, K);
        if (!D) continue;
        for (int r = r0; r < r1; r++) {
            for (int i = 0; i < K; i++) tmp[i] = 0;
            for (int s = 0; s < r0; s++) axpy(tmp, D[r * C + s], c->Ka + (int64_t)s * K, K);
            const real *ea = c->Ea + (int64_t)(r - r0) * K;
            real *dq = c->dqs + (int64_t)r * K;
            for (int i = 0; i < K; i++) dq[i] += ea[i] * tmp[i];
        }
        for (int s = 0; s < r0; s++) {
            for (int i = 0; i < K; i++) tmp[i] = 0;
            for (int r = r0; r < r1; r++) axpy(tmp, D[r * C + s], c->Qa + (int64_t)(r - r0) * K, K);
            const real *eb = c->Eb + (int64_t)s * K;
            real *dks = dk + (int64_t)s * K;
            for (int i = 0; i < K; i++) dks[i] += eb[i] * tmp[i];
        }
    }
}

// S = diag(exp(b_n)) S + sum_s kc_s v_s^T   (after chunk_load)
static void chunk_state(Chunk *c, const Seq *sq, int t0, int n, real *S) {
    int K = c->K, Dv = c->Dv;
    const real *ebn = c->eb + (int64_t)(n - 1) * K;
    for (int i = 0; i < K; i++) {
        real *Si = S + (int64_t)i * Dv;
        for (int j = 0; j < Dv; j++) Si[j] *= ebn[i];
        for (int s = 0; s < n; s++) axpy(Si, c->kc[(int64_t)s * K + i], sq->v + (t0 + s) * sq->sv, Dv);
    }
}

// o = the chunk's outputs, or o += them when acc (each row formed apart first, then added: one rounding)
static void chunk_fwd(Chunk *c, const Seq *sq, int t0, int n, real *S, real *o, int acc) {
    int K = c->K, Dv = c->Dv, C = c->C;
    chunk_load(c, sq, t0, n);
    chunk_intra(c, n, NULL);
    for (int r = 0; r < n; r++) {
        real *orow = o + (t0 + r) * sq->so, *out = acc ? c->row : orow;
        const real *qr = c->qs + (int64_t)r * K, *ebr = c->eb + (int64_t)r * K;
        for (int j = 0; j < Dv; j++) out[j] = 0;
        for (int i = 0; i < K; i++) axpy(out, qr[i] * ebr[i], S + (int64_t)i * Dv, Dv);
        for (int s = 0; s <= r; s++) axpy(out, c->A[r * C + s], sq->v + (t0 + s) * sq->sv, Dv);
        if (acc) for (int j = 0; j < Dv; j++) orow[j] += out[j];
    }
    chunk_state(c, sq, t0, n, S);
}

// Backward of one chunk from its entering state S0 and dS, the gradient wrt the state leaving it: writes dq
// (wrt q, not q~), dk, dg and dv of its rows (= or, when acc, +=), and turns dS into the gradient wrt S0.
// dg_j = sum_{t>=j} (q_t dq_t - k_t dk_t) (hgru_chunk_bwd): c->run carries the sum over the later chunks.
// dq and dk are formed in dqs and dks, which dg reads whatever acc says.
static void chunk_bwd(Chunk *c, const Seq *sq, int t0, int n, const real *S0, real *dS, const real *dout,
                      real *dq, real *dk, real *dg, real *dv, int64_t sdv, int acc) {
    int K = c->K, Dv = c->Dv, C = c->C;
    chunk_load(c, sq, t0, n);
    for (int r = 0; r < n; r++)
        for (int s = 0; s <= r; s++)
            c->D[r * C + s] = dot(dout + (t0 + r) * sq->so, sq->v + (t0 + s) * sq->sv, Dv);
    memset(c->dqs, 0, (size_t)n * K * sizeof(real));
    memset(c->dks, 0, (size_t)n * K * sizeof(real));
    chunk_intra(c, n, c->dks);
    // dq~_r += exp(b_r) (S0 do_r)
    for (int r = 0; r < n; r++) {
        const real *dor = dout + (t0 + r) * sq->so, *ebr = c->eb + (int64_t)r * K;
        real *dqr = c->dqs + (int64_t)r * K;
        for (int i = 0; i < K; i++) dqr[i] = (dqr[i] + ebr[i] * dot(S0 + (int64_t)i * Dv, dor, Dv)) * sq->scale;
    }
    const real *bn = c->b + (int64_t)(n - 1) * K, *ebn = c->eb + (int64_t)(n - 1) * K;
    for (int s = 0; s < n; s++) {
        const real *vs = sq->v + (t0 + s) * sq->sv, *kcs = c->kc + (int64_t)s * K, *bs = c->b + (int64_t)s * K;
        // dv_s = sum_{r>=s} A[r,s] do_r + dS^T kc_s
        real *dvo = dv + (t0 + s) * sdv, *dvs = acc ? c->row : dvo;
        for (int j = 0; j < Dv; j++) dvs[j] = 0;
        for (int r = s; r < n; r++) axpy(dvs, c->A[r * C + s], dout + (t0 + r) * sq->so, Dv);
        for (int i = 0; i < K; i++) axpy(dvs, kcs[i], dS + (int64_t)i * Dv, Dv);
        if (acc) for (int j = 0; j < Dv; j++) dvo[j] += dvs[j];
        // dk_s += exp(b_n - b_s) (dS v_s)
        real *dks = c->dks + (int64_t)s * K;
        for (int i = 0; i < K; i++) dks[i] = dks[i] + decay(bn[i] - bs[i]) * dot(dS + (int64_t)i * Dv, vs, Dv);
    }
    // dS_prev = diag(exp(b_n)) dS + sum_r (q~_r exp(b_r)) do_r^T
    for (int i = 0; i < K; i++) {
        real *dSi = dS + (int64_t)i * Dv;
        for (int j = 0; j < Dv; j++) dSi[j] *= ebn[i];
        for (int r = 0; r < n; r++)
            axpy(dSi, c->qs[(int64_t)r * K + i] * c->eb[(int64_t)r * K + i], dout + (t0 + r) * sq->so, Dv);
    }
    // dg's running sum over the chunk's rows, last first; then dq, dk, dg out
    real *run = c->run;
    for (int r = n - 1; r >= 0; r--) {
        const real *q = sq->q + (t0 + r) * sq->sqk, *k = sq->k + (t0 + r) * sq->sqk;
        const real *dqr = c->dqs + (int64_t)r * K, *dkr = c->dks + (int64_t)r * K;
        real *dqo = dq + (t0 + r) * sq->sqk, *dko = dk + (t0 + r) * sq->sqk, *dgo = dg + (t0 + r) * sq->sqk;
        for (int i = 0; i < K; i++) run[i] += q[i] * dqr[i] - k[i] * dkr[i];
        if (acc)
            for (int i = 0; i < K; i++) { dqo[i] += dqr[i]; dko[i] += dkr[i]; dgo[i] += run[i]; }
        else
            for (int i = 0; i < K; i++) { dqo[i] = dqr[i]; dko[i] = dkr[i]; dgo[i] = run[i]; }
    }
}

// The forward over B sequences of T steps laid out as seq_at says (per = 1: op_hgru_fwd; per = gw: the columns).
static void hgru_fwd_lines(real *o, real *ST, const real *q, const real *k, const real *g, const real *v,
                           int64_t ldv, const real *S0, int B, int T, int per, int H, int K, int Dv, int chunk,
                           int reverse, int acc) {
    int64_t KD = (int64_t)K * Dv;
    #pragma omp parallel
    {
        unsigned csr = ftz_begin();
        real *S = xmalloc((size_t)KD * sizeof(real));
        real *row = acc && chunk <= 0 ? xmalloc((size_t)Dv * sizeof(real)) : NULL;   // o_t before it is added
        Chunk c;
        // a chunk longer than the sequence is the sequence: size the buffers (C x C) by what is used
        if (chunk > 0) chunk_alloc(&c, chunk < T ? chunk : (T > 0 ? T : 1), K, Dv);
        #pragma omp for schedule(static)
        for (int bh = 0; bh < B * H; bh++) {
            int b = bh / H, h = bh % H;
            Seq sq = seq_at(q, k, g, v, ldv, b, h, T, per, H, K, Dv, reverse);
            real *ob = o + (sq.row * H + h) * Dv;
            // read S0 before anything is written: ST may be the same memory
            if (S0) memcpy(S, S0 + (int64_t)bh * KD, (size_t)KD * sizeof(real));
            else memset(S, 0, (size_t)KD * sizeof(real));
            if (chunk > 0)
                for (int t0 = 0; t0 < T; t0 += chunk)
                    chunk_fwd(&c, &sq, t0, T - t0 < chunk ? T - t0 : chunk, S, ob, acc);
            else
                for (int t = 0; t < T; t++) {
                    real *ot = ob + t * sq.so;
                    rec_step(&sq, S, S, t, NULL, acc ? row : ot);
                    if (acc) for (int j = 0; j < Dv; j++) ot[j] += row[j];
                }
            if (ST) memcpy(ST + (int64_t)bh * KD, S, (size_t)KD * sizeof(real));
        }
        if (chunk > 0) chunk_free(&c);
        free(S);
        free(row);
        ftz_end(csr);
    }
}

// One row i of a reverse step of the recurrence, fused into a single pass over the Dv columns:
//   row = a row + c do  (dS_t from dS_{t+1});  dv += k_i row;  returns Sc_i . do, row . v and row . Sp_i.
// (noinline: inlined into the large OpenMP body, gcc spills the partial sums to the stack.)
__attribute__((noinline))
static void rec_bwd_row(real *restrict row, const real *restrict Sc, const real *restrict Sp,
                        const real *restrict dor, const real *restrict v, real *restrict dv, real a, real c,
                        real ki, int Dv, real out[3]) {
    real aq[LANES] = {0}, ak[LANES] = {0}, ag[LANES] = {0}, tq = 0, tk = 0, tg = 0;
    int j0 = 0;
    for (; j0 + LANES <= Dv; j0 += LANES)
        for (int l = 0; l < LANES; l++) {
            int j = j0 + l;
            real r = a * row[j] + c * dor[j];
            row[j] = r;
            dv[j] += ki * r;
            aq[l] += Sc[j] * dor[j];
            ak[l] += r * v[j];
            ag[l] += r * Sp[j];
        }
    for (int j = j0; j < Dv; j++) {
        real r = a * row[j] + c * dor[j];
        row[j] = r;
        dv[j] += ki * r;
        tq += Sc[j] * dor[j];
        tk += r * v[j];
        tg += r * Sp[j];
    }
    out[0] = hsum(aq) + tq; out[1] = hsum(ak) + tk; out[2] = hsum(ag) + tg;
}

// Recurrent backward of one (b, h). S_{t-1} is needed at every step in reverse: the forward is rerun once
// keeping a checkpoint every seg ~ sqrt(T) steps, then each segment is recomputed from its checkpoint, so
// the states take O(sqrt(T) K Dv) memory rather than O(T K Dv). exp(g) is computed once into ag [T][K].
// fresh [3K + Dv], when not NULL: the step's dq, dk, dg and dv are formed there and then added to the outputs.
static void rec_bwd(const Seq *sq, const real *dout, real *dq, real *dk, real *dg, real *dv, int64_t sdv,
                    real *ck, real *buf, real *dS, real *ag, int seg, real *fresh) {
    int T = sq->T, K = sq->K, Dv = sq->Dv;
    int64_t KD = (int64_t)K * Dv;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < K; i++) ag[(int64_t)t * K + i] = decay(sq->g[t * sq->sqk + i]);
    memset(buf, 0, (size_t)KD * sizeof(real));
    for (int t = 0; t < T; t++) {
        if (t % seg == 0) memcpy(ck + (int64_t)(t / seg) * KD, buf, (size_t)KD * sizeof(real));
        rec_step(sq, buf, buf, t, ag + (int64_t)t * K, NULL);
    }
    memset(dS, 0, (size_t)KD * sizeof(real));
    for (int m = (T + seg - 1) / seg - 1; m >= 0; m--) {
        int t0 = m * seg, t1 = t0 + seg < T ? t0 + seg : T;
        // buf[u] = the state after step t0 + u - 1 (buf[0] enters step t0)
        memcpy(buf, ck + (int64_t)m * KD, (size_t)KD * sizeof(real));
        for (int t = t0; t < t1; t++)
            rec_step(sq, buf + (t - t0 + 1) * KD, buf + (t - t0) * KD, t, ag + (int64_t)t * K, NULL);
        for (int t = t1 - 1; t >= t0; t--) {
            const real *Sp = buf + (t - t0) * KD, *Sc = buf + (t - t0 + 1) * KD;
            const real *q = sq->q + t * sq->sqk, *k = sq->k + t * sq->sqk;
            const real *at = ag + (int64_t)t * K, *an = t + 1 < T ? at + K : NULL;
            const real *v = sq->v + t * sq->sv, *dor = dout + t * sq->so;
            real *dqt = dq + t * sq->sqk, *dkt = dk + t * sq->sqk, *dgt = dg + t * sq->sqk, *dvt = dv + t * sdv;
            if (fresh) { dqt = fresh; dkt = fresh + K; dgt = fresh + 2 * K; dvt = fresh + 3 * K; }
            for (int j = 0; j < Dv; j++) dvt[j] = 0;
            for (int i = 0; i < K; i++) {
                // dS_t = diag(exp(g_{t+1})) dS_{t+1} + q~_t do_t^T
                real d[3];
                rec_bwd_row(dS + (int64_t)i * Dv, Sc + (int64_t)i * Dv, Sp + (int64_t)i * Dv, dor, v, dvt,
                            an ? an[i] : 0, q[i] * sq->scale, k[i], Dv, d);
                dqt[i] = d[0] * sq->scale;
                dkt[i] = d[1];
                dgt[i] = at[i] * d[2];
            }
            if (fresh) {
                real *oq = dq + t * sq->sqk, *ok = dk + t * sq->sqk, *og = dg + t * sq->sqk, *ov = dv + t * sdv;
                for (int i = 0; i < K; i++) { oq[i] += dqt[i]; ok[i] += dkt[i]; og[i] += dgt[i]; }
                for (int j = 0; j < Dv; j++) ov[j] += dvt[j];
            }
        }
    }
}

// Chunked backward of one (b, h): the states entering every chunk first, then the chunks in reverse, each
// with its part of dg_j = sum_{t>=j} (q_t dq_t - k_t dk_t). That identity holds because, from a zero entering
// state, q_t and G_t = g_1 + ... + g_t enter every output only as q_t exp(G_t), and k_s only as k_s exp(-G_s).
static void hgru_chunk_bwd(Chunk *c, const Seq *sq, const real *dout, real *dq, real *dk, real *dg, real *dv,
                           int64_t sdv, real *states, real *dS, int acc) {
    int T = sq->T, K = sq->K, C = c->C;
    int64_t KD = (int64_t)K * sq->Dv;
    int nc = (T + C - 1) / C;
    memset(states, 0, (size_t)KD * sizeof(real));
    for (int ci = 0; ci + 1 < nc; ci++) {
        memcpy(states + (ci + 1) * KD, states + ci * KD, (size_t)KD * sizeof(real));
        chunk_load(c, sq, ci * C, C);
        chunk_state(c, sq, ci * C, C, states + (ci + 1) * KD);
    }
    memset(dS, 0, (size_t)KD * sizeof(real));
    memset(c->run, 0, (size_t)K * sizeof(real));
    for (int ci = nc - 1; ci >= 0; ci--) {
        int t0 = ci * C, n = T - t0 < C ? T - t0 : C;
        chunk_bwd(c, sq, t0, n, states + ci * KD, dS, dout, dq, dk, dg, dv, sdv, acc);
    }
}

// The backward over B sequences of T steps laid out as seq_at says.
static void hgru_bwd_lines(real *dq, real *dk, real *dg, real *dv, int64_t lddv, const real *dout,
                           const real *q, const real *k, const real *g, const real *v, int64_t ldv,
                           int B, int T, int per, int H, int K, int Dv, int chunk, int reverse, int acc) {
    if (T <= 0) return;
    int64_t KD = (int64_t)K * Dv;
    int seg = (int)ceil(sqrt((double)T));
    #pragma omp parallel
    {
        unsigned csr = ftz_begin();
        Chunk c;
        real *st, *dS, *ag = NULL, *fresh = NULL;
        if (chunk > 0) {
            chunk_alloc(&c, chunk < T ? chunk : T, K, Dv);
            st = xmalloc((size_t)(((T + chunk - 1) / chunk + 1) * KD) * sizeof(real));
        } else {
            st = xmalloc((size_t)(((T + seg - 1) / seg + seg + 2) * KD) * sizeof(real));
            ag = xmalloc((size_t)T * K * sizeof(real));
            if (acc) fresh = xmalloc((size_t)(3 * K + Dv) * sizeof(real));
        }
        dS = xmalloc((size_t)KD * sizeof(real));
        #pragma omp for schedule(static)
        for (int bh = 0; bh < B * H; bh++) {
            int b = bh / H, h = bh % H;
            Seq sq = seq_at(q, k, g, v, ldv, b, h, T, per, H, K, Dv, reverse);
            int64_t row = sq.row, qk0 = (row * H + h) * K, sdv = sq.rstep * lddv;
            const real *dob = dout + (row * H + h) * Dv;
            real *dvb = dv + row * lddv + (int64_t)h * Dv;
            if (chunk > 0)
                hgru_chunk_bwd(&c, &sq, dob, dq + qk0, dk + qk0, dg + qk0, dvb, sdv, st, dS, acc);
            else
                rec_bwd(&sq, dob, dq + qk0, dk + qk0, dg + qk0, dvb, sdv, st,
                        st + (int64_t)((T + seg - 1) / seg) * KD, dS, ag, seg, fresh);
        }
        if (chunk > 0) chunk_free(&c);
        free(st);
        free(dS);
        free(ag);
        free(fresh);
        ftz_end(csr);
    }
}

void op_hgru_fwd(real *o, real *ST, const real *q, const real *k, const real *g, const real *v, int64_t ldv,
                 const real *S0, int B, int T, int H, int K, int Dv, int chunk, int reverse, int acc) {
    hgru_fwd_lines(o, ST, q, k, g, v, ldv, S0, B, T, 1, H, K, Dv, chunk, reverse, acc);
}

void op_hgru_step_fwd(real *o, real *S, real *q, real *k, real *g, const real *qfi, int64_t ld, const real *lb,
                      int B, int H, int K, int Dv) {
    const int HK = H * K;
    op_gates_fwd(q, k, g, qfi, ld, lb, B, HK);
    op_hgru_fwd(o, S, q, k, g, qfi + 2 * HK, ld, S, B, 1, H, K, Dv, 0, 0, 0);
}

void op_hgru_bwd(real *dq, real *dk, real *dg, real *dv, int64_t lddv, const real *dout,
                 const real *q, const real *k, const real *g, const real *v, int64_t ldv,
                 int B, int T, int H, int K, int Dv, int chunk, int reverse, int acc) {
    hgru_bwd_lines(dq, dk, dg, dv, lddv, dout, q, k, g, v, ldv, B, T, 1, H, K, Dv, chunk, reverse, acc);
}

// The columns of S images of gh x gw: S gw sequences of gh steps, gw of them interleaved per image.
void op_hgru_cols_fwd(real *o, const real *q, const real *k, const real *g, const real *v, int64_t ldv,
                      int S, int gh, int gw, int H, int K, int Dv, int chunk, int reverse, int acc) {
    if (S <= 0 || gw <= 0) return;
    hgru_fwd_lines(o, NULL, q, k, g, v, ldv, NULL, S * gw, gh, gw, H, K, Dv, chunk, reverse, acc);
}

void op_hgru_cols_bwd(real *dq, real *dk, real *dg, real *dv, int64_t lddv, const real *dout,
                      const real *q, const real *k, const real *g, const real *v, int64_t ldv,
                      int S, int gh, int gw, int H, int K, int Dv, int chunk, int reverse, int acc) {
    if (S <= 0 || gw <= 0) return;
    hgru_bwd_lines(dq, dk, dg, dv, lddv, dout, q, k, g, v, ldv, S * gw, gh, gw, H, K, Dv, chunk, reverse, acc);
}

// Every head shape reads columns in place on the CPU.
int op_hgru_cols_direct(int K, int Dv) { (void)K; (void)Dv; return 1; }

// ---------------------------------------------------------------------------------------------------------
// HGRN1: the element-wise recurrence and the gated RMSNorm
// ---------------------------------------------------------------------------------------------------------
// One worker per (sequence, block of COLBLK channels): the channels are independent, and a block's inner loop
// runs over contiguous columns, which gcc vectorises. The state lives in a block-sized array; scan step s is
// position s, or T - 1 - s in reverse. Flush-to-zero as in the HGRU2 recurrence (decays underflow).
void op_hgrn_fwd(real *o, real *hT, const real *q, const real *k, const real *g, const real *h0, int B, int T, int D,
                 int reverse, int acc) {
    const int nblk = (D + COLBLK - 1) / COLBLK;
    #pragma omp parallel for schedule(static)
    for (int64_t w = 0; w < (int64_t)B * nblk; w++) {
        const int64_t b = w / nblk;
        const int c0 = (int)(w % nblk) * COLBLK, c1 = c0 + COLBLK < D ? c0 + COLBLK : D;
        unsigned csr = ftz_begin();
        const int64_t base = b * T * D;
        real h[COLBLK];
        for (int c = c0; c < c1; c++) h[c - c0] = h0 ? h0[b * D + c] : 0;
        for (int s = 0; s < T; s++) {
            const int64_t r = base + (int64_t)(reverse ? T - 1 - s : s) * D;
            if (s || h0) for (int c = c0; c < c1; c++) h[c - c0] = decay(g[r + c]) * h[c - c0] + q[r + c] * k[r + c];
            else         for (int c = c0; c < c1; c++) h[c - c0] = q[r + c] * k[r + c];
            if (acc) for (int c = c0; c < c1; c++) o[r + c] += h[c - c0];
            else     for (int c = c0; c < c1; c++) o[r + c] = h[c - c0];
        }
        // written after the scan: hT may be h0, which the first step read
        if (hT) for (int c = c0; c < c1; c++) hT[b * D + c] = h[c - c0];
        ftz_end(csr);
    }
}

// The scan run back from the last step with the carry exp(g) dh of the step after, per channel in a
// block-sized array; h of the step before is o of the position before it in the scan's order.
void op_hgrn_bwd(real *dq, real *dk, real *dg, const real *dout, const real *q, const real *k, const real *g,
                 const real *o, int B, int T, int D, int reverse, int acc) {
    const int nblk = (D + COLBLK - 1) / COLBLK;
    const int64_t back = reverse ? D : -(int64_t)D;   // from a position's row to that of the scan's step before
    #pragma omp parallel for schedule(static)
    for (int64_t w = 0; w < (int64_t)B * nblk; w++) {
        const int64_t b = w / nblk;
        const int c0 = (int)(w % nblk) * COLBLK, c1 = c0 + COLBLK < D ? c0 + COLBLK : D;
        unsigned csr = ftz_begin();
        real carry[COLBLK] = {0};
        const int64_t base = b * T * D;
        for (int s = T - 1; s >= 0; s--) {
            const int64_t r = base + (int64_t)(reverse ? T - 1 - s : s) * D;
            for (int c = c0; c < c1; c++) {
                real dh = dout[r + c] + carry[c - c0], a = decay(g[r + c]);
                const real vq = dh * k[r + c], vk = dh * q[r + c], vg = s ? dh * a * o[r + back + c] : 0;   // zero entering state
                if (acc) { dq[r + c] += vq; dk[r + c] += vk; dg[r + c] += vg; }
                else     { dq[r + c] = vq;  dk[r + c] = vk;  dg[r + c] = vg; }
                carry[c - c0] = a * dh;
            }
        }
        ftz_end(csr);
    }
}

// swish(z) and its derivative sigmoid(z) (1 + z sigmoid(-z)), the latter without cancellation.
static inline void swish2(real z, real *sw, real *dsw) {
    real s, sn;
    sigmoid2(z, &s, &sn);
    *sw = z * s;
    *dsw = s * (1 + z * sn);
}

void op_rmsnorm_gated_fwd(opnd *y, real *rstd, const real *x, const real *z, int64_t ldz, const real *w, int64_t N,
                          int C, double eps) {
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const real *xr = x + n * C, *zr = z + n * ldz;
        real *yr = (real *)y + n * C;
        real r = (real)rms_rstd(xr, C, eps);
        for (int c = 0; c < C; c++) { real sw, dsw; swish2(zr[c], &sw, &dsw); yr[c] = xr[c] * r * w[c] * sw; }
        if (rstd) rstd[n] = r;
    }
}

// y = (x r w) swish(z): with u = dy swish(z), the plain norm's gradients of u (op_rmsnorm_bwd) for x and w, and
// dz = dy x r w swish'(z).
void op_rmsnorm_gated_bwd(real *dx, real *dz, int64_t lddz, real *dw, const real *dy, const real *x, const real *z,
                          int64_t ldz, const real *w, const real *rstd, int64_t N, int C, double eps) {
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const real *xr = x + n * C, *dyr = dy + n * C, *zr = z + n * ldz;
        real *dxr = dx + n * C, *dzr = dz + n * lddz;
        real r = rstd ? rstd[n] : (real)rms_rstd(xr, C, eps);
        double s = 0;   // sum of w u x, in double in column order
        for (int c = 0; c < C; c++) {
            real sw, dsw;
            swish2(zr[c], &sw, &dsw);
            s += (double)(w[c] * (dyr[c] * sw)) * xr[c];
            dzr[c] = dyr[c] * xr[c] * r * w[c] * dsw;
        }
        real coef = (real)s * r * r * r / C;
        for (int c = 0; c < C; c++) {
            real sw, dsw;
            swish2(zr[c], &sw, &dsw);
            dxr[c] = r * (w[c] * (dyr[c] * sw)) - coef * xr[c];
        }
    }
    if (dw) {
        // per column block, rows in order (see op_embed_bwd)
        #pragma omp parallel for schedule(static)
        for (int c0 = 0; c0 < C; c0 += COLBLK) {
            int c1 = c0 + COLBLK < C ? c0 + COLBLK : C;
            for (int64_t n = 0; n < N; n++) {
                const real *xr = x + n * C, *dyr = dy + n * C, *zr = z + n * ldz;
                real r = rstd ? rstd[n] : (real)rms_rstd(xr, C, eps);
                for (int c = c0; c < c1; c++) {
                    real sw, dsw;
                    swish2(zr[c], &sw, &dsw);
                    dw[c] += dyr[c] * sw * xr[c] * r;
                }
            }
        }
    }
}

