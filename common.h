// common.h: what every part of hgrn2 uses: the scalar type, errors, checked allocation, paths, number
// parsing, clocks and random numbers. The inline half compiles as C and C++ (kernels.cu includes it).
#ifndef HGRN2_COMMON_H
#define HGRN2_COMMON_H

#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>
#include <errno.h>

// The CPU backend computes in `real`: float for the program, double for the finite-difference tests,
// which compile the same sources with -DHGRN2_F64.
#ifdef HGRN2_F64
typedef double real;
#else
typedef float real;
#endif

// The input forms of decoding's fused products (ops.h, op_matmul_fused_fwd), shared by both backends: the product's
// input as given, its RMSNorm, or SwiGLU of it.
#define OP_PRO_NONE 0
#define OP_PRO_RMSNORM 1
#define OP_PRO_SWIGLU 2

// One tensor's part of an AdamW step over many tensors (ops.h, op_adamw_multi), shared by both backends: the
// values [p, p + n) with their gradient and moments, and the weight decay the tensor takes.
typedef struct AdamwPart {
    real *p;
    const real *grad;
    real *m, *v;
    int64_t n;
    double wd;
} AdamwPart;

// What changes from one training step to the next, or is decided on the GPU, in the step that train_step queues
// without waiting so that it can be recorded once as a CUDA graph and replayed (train.c): the host writes lr,
// the bias corrections, clip, measure and skip before each step; the step's ops write ss, the gradients' sum of
// squares, and set skip when a loss is not finite; AdamW (cuda_adamw_multi_ctl) reads them all.
typedef struct StepCtl {
    double ss;              // the gradients' sum of squares (when measured)
    double clip;            // the norm's limit (0: none)
    float lr, rbc1, rbc2;   // as cuda_adamw_multi derives them from lr and the step: 1 / (1 - beta^step)
    int32_t measure;        // ss is measured: it clips the update and, when not finite, skips it
    int32_t skip;           // the update is skipped: a loss was not finite (or the host said so)
    int32_t pad;
} StepCtl;

// The rows of a batch that exist (ops.h): a batch of S sequences of T positions (row s T + t) padded to T,
// where sequence s has only its first ext[s] positions. The rest are there because the batch is one array, but
// take no part in BatchNorm's statistics, as if the batch had been cut into groups each padded to its own
// longest document (the classifier's --pad-group). ext [S] (backend memory: on the device for the GPU's ops),
// each in [1, T], or NULL: every row exists (T and n unused). n: the rows that exist, the sum of ext.
typedef struct RowMask {
    const int32_t *ext;
    int T;
    int64_t n;
} RowMask;
static inline RowMask rows_all(void) { RowMask r = {NULL, 0, 0}; return r; }
static inline int64_t rows_in(RowMask r, int64_t N) { return r.ext ? r.n : N; }

// Decoding's whole token step of HGRN2 in one GPU kernel (backend.h, dev_decode_step): each layer's tensors as
// block_step in model.c passes them to its ops (lb NULL where the layer has no lower bound, S its state), then
// the sizes, the activations the ops would write, and the head. The GPU takes batches of up to 4 (by default 2
// to 4) and up to DECODE_STEP_MAX_L layers (their pointers travel in the kernel's parameters).
#define DECODE_STEP_MAX_L 40
typedef struct DecodeStepLayer {
    const real *attn_norm, *wqfi, *gnorm, *wo, *mlp_norm, *wgu, *wdown, *lb;
    real *S;
} DecodeStepLayer;
typedef struct DecodeStep {
    int L, B, D, I, H, K, Dv, V;
    double eps, eps_o;
    real *resid, *qfi, *o, *mid, *logits;   // resid [L + 1, B, D], the layers' entering streams and the last
    void *gu;                               // [B, 2I] operands
    int32_t *best;                          // NULL, or where op_argmax_rows of the logits goes
    const real *norm, *wlm;
    const DecodeStepLayer *layers;          // [L]
} DecodeStep;

// Exit codes: 1 for a runtime failure, 2 for a usage error (bad flag, missing value, out-of-range number).
#define EXIT_RUNTIME 1
#define EXIT_USAGE 2

#ifdef HGRN2_FUZZ
// Fuzz builds only (tests/fuzz, -DHGRN2_FUZZ): a rejected input must not end the fuzzer's process, so a
// harness points hgrn2_fuzz_die at its jmp_buf and die() jumps back there instead of exiting; with
// hgrn2_fuzz_quiet set it also drops the message. The harness defines both. Normal builds have neither.
#include <setjmp.h>
#ifdef __cplusplus
extern "C" {
#endif
extern jmp_buf *hgrn2_fuzz_die;
extern int hgrn2_fuzz_quiet;
#ifdef __cplusplus
}
#endif
#endif

// Set by the first die() of the process (common.c). exit() from two threads at once is undefined (both run the
// exit handlers and flush the same streams), and a second thread's error is usually a consequence of the first
// (the exit handlers removing a file it was about to rename): so a later die() in another thread waits for
// the first to end the process, and the user reads one message.
#ifdef __cplusplus
extern "C" {
#endif
extern int g_dying;
__attribute__((noreturn)) void die_wait(void);   // sleeps until the process ends (common.c)
// What messages call the program: "hgrn2", or in a run of several processes "hgrn2 (rank R)" on all but
// rank 0 (dist.c), so that the user sees which process failed.
extern const char *g_prog_name;
#ifdef __cplusplus
}
#endif

// die: one message naming what failed and what to do, then exit 1. Never for programmer errors (use assert).
__attribute__((noreturn, format(printf, 1, 2)))
static inline void die(const char *fmt, ...) {
#ifndef HGRN2_FUZZ
    if (__atomic_exchange_n(&g_dying, 1, __ATOMIC_SEQ_CST)) die_wait();
#endif
    fflush(stdout);
#ifdef HGRN2_FUZZ
    if (!hgrn2_fuzz_quiet) {
#endif
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: error: ", g_prog_name);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
#ifdef HGRN2_FUZZ
    }
    if (hgrn2_fuzz_die) longjmp(*hgrn2_fuzz_die, 1);
#endif
    exit(EXIT_RUNTIME);
}

#define xmalloc(n) xmalloc_at((n), __FILE__, __LINE__)
#define xcalloc(n, s) xcalloc_at((n), (s), __FILE__, __LINE__)
#define xrealloc(p, n) xrealloc_at((p), (n), __FILE__, __LINE__)

static inline void *xmalloc_at(size_t n, const char *file, int line) {
    void *p = malloc(n ? n : 1);
    if (!p) die("out of memory allocating %zu bytes (%s:%d); use a smaller model, batch or sequence length", n, file, line);
    return p;
}
static inline void *xcalloc_at(size_t n, size_t s, const char *file, int line) {
    void *p = calloc(n ? n : 1, s ? s : 1);
    if (!p) die("out of memory allocating %zu x %zu bytes (%s:%d); use a smaller model, batch or sequence length", n, s, file, line);
    return p;
}
static inline void *xrealloc_at(void *q, size_t n, const char *file, int line) {
    void *p = realloc(q, n ? n : 1);
    if (!p) die("out of memory allocating %zu bytes (%s:%d); use a smaller model, batch or sequence length", n, file, line);
    return p;
}

// Strict number parsing for command-line values: the whole string must be a number within [lo, hi].
// Returns 0 on success, -1 otherwise (the caller prints the usage error).
static inline int parse_i64(const char *s, long long lo, long long hi, long long *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}
static inline int parse_f64(const char *s, double lo, double hi, double *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !(v >= lo && v <= hi)) return -1;
    *out = v;
    return 0;
}

// The values a numeric setting may take, [lo, hi], named as its flag without the dashes ("seq-len"). One
// definition serves the command line, import and checkpoint loading, so that each accepts what the others
// write. An integer setting's bounds are whole numbers (a hi of 2^63 stands for INT64_MAX).
typedef struct { const char *name; double lo, hi; } Range;
static inline int in_range(const Range *r, double v) { return v >= r->lo && v <= r->hi; }   // NaN is not

// ---- common.c: one definition each ----
#ifdef __cplusplus
extern "C" {
#endif
char *xstrdup(const char *s);
// A freshly allocated formatted string (paths and messages of any length; the caller frees it).
__attribute__((format(printf, 1, 2))) char *xasprintf(const char *fmt, ...);
double now_s(void);                                  // a monotonic clock in seconds
void mkdir_p(const char *dir);                       // mkdir -p; dies naming the part that failed
int file_exists(const char *path);
// The names in folder dir, hidden ones (a leading '.') left out, that keep(dir, name, arg) accepts (all when
// keep is NULL), sorted by bytes; *n their count. Dies naming the folder when it cannot be read. Free the
// list with free_names.
char **dir_names(const char *dir, int (*keep)(const char *dir, const char *name, void *arg), void *arg, size_t *n);
void free_names(char **names, size_t n);
int cmp_names(const void *a, const void *b);   // qsort and bsearch order of dir_names: strcmp of char * elements
// A dir_names filter: the names that end in the string arg points to, and are longer than it.
int dir_keep_suffix(const char *dir, const char *name, void *suffix);
// Copies a file to `to` through to.tmp (synced) and a rename, in pieces of 64 KiB: a kill never leaves a
// partial file under the final name, and a file of any size takes constant memory. Dies on any failure.
void copy_file(const char *from, const char *to);
// Opens path for reading if it is a regular file: a FIFO or a device under the name neither blocks the open
// (O_NONBLOCK) nor is read. Returns the descriptor and the file's size in *size, or -1 with the reason in err.
int open_regular(const char *path, int64_t *size, char *err, size_t errlen);
void fmt_duration(char *buf, size_t n, double s);    // 1h05m, 3m07s; "?" for a negative or infinite time
double bytes_mib(int64_t b);

// Random numbers: splitmix64 steps a 64-bit state (seeds, streams); mix64 is its finaliser as a stateless
// hash of a counter (random windows, the validation split). Deterministic on every machine.
uint64_t splitmix64(uint64_t *s);
uint64_t mix64(uint64_t x);
double rng_uniform(uint64_t *s);                     // [0, 1) with 53 random bits
void rng_polar(uint64_t *s, double *r, double *a);   // Box-Muller: a normal pair is r cos(a), r sin(a)
double rng_normal(uint64_t *s);

// bf16 (the top half of a float): exact widening, and narrowing to nearest even with NaN kept NaN
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);
#ifdef __cplusplus
}
#endif

#endif
