// test_checkpoint.c: checkpoints that pass the checksum but must still be refused, and saves that fail.
//  - every header field out of its range, the checksum recomputed so that only the range check can catch
//    it: eval, sample and train --resume each exit 1 with "checkpoint P is corrupt: FIELD = VALUE ..."
//  - sizes that ask for terabytes, or strings longer than the file: refused as corrupt or truncated before
//    anything is allocated (the children run under an address-space cap)
//  - a save that runs out of space (a file-size limit): exit 1, no temporary file, the old checkpoint intact
// Runs ./hgrn2 (build it first, as `make test` does) from the repository root; needs no shared data.
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../checkpoint.h"
#include "check.h"
#include "child.h"

#define TMPD "tests/tmp/test_checkpoint"

// Where the header fields sit: magic, version and the count take 24 bytes, then 24 integers (22 in version 3,
// 21 before), the count of floats, 10 floats (9 in versions 2 and 3, 8 in version 1), then the two strings
// (docs/checkpoint.md).
#define INT_AT(i) (24 + 8 * (i))
#define FLOAT_AT(i) (24 + 8 * 24 + 8 + 8 * (i))
#define STRINGS_AT FLOAT_AT(10)
enum { I_V, I_D, I_L, I_K, I_I, I_TIE, I_LB, I_B, I_T, I_ACCUM, I_STEPS, I_WARMUP, I_SCHED, I_SEED, I_STEP,
       I_LOADER_SEED, I_LOADER_BATCHES, I_LOADER_CURSOR, I_LOADER_RESERVED, I_N, I_OPT, I_ARCH, I_LAYER, I_BLOCK };
enum { F_EPS, F_LR, F_MIN_LR, F_WD, F_BETA1, F_BETA2, F_ADAM_EPS, F_CLIP, F_DECAY_FRAC, F_EMBED_DROP };

static unsigned char *g_good;   // the valid checkpoint every case edits
static size_t g_size;

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open %s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    rewind(f);
    unsigned char *b = xmalloc(*n);
    if (fread(b, 1, *n, f) != *n) die("cannot read %s", path);
    fclose(f);
    return b;
}

// Writes b (a whole checkpoint) to path with the checksum recomputed, as an honest writer would have.
static void write_resummed(const char *path, unsigned char *b, size_t n) {
    Hash h;
    hash_init(&h);
    hash_bytes(&h, b, n - 8);
    uint64_t sum = hash_final(&h);
    memcpy(b + n - 8, &sum, 8);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b, 1, n, f) != n || fclose(f) != 0) die("cannot write %s", path);
}

// Runs argv (argv[0] the program) in a child (tests/child.h) with stderr into TMPD/err and 8 GiB more address
// space: far more than these tiny models need, far less than a size read as real. Returns the exit status
// (-1: ended by a signal) with the start of its stderr in err.
static void exec_argv(const void *argv) {
    execv(((char *const *)argv)[0], (char *const *)argv);
    _exit(98);
}
static int run(char *const argv[], char *err, size_t errcap) {
    static const ChildSpec capped = {.cap_mib = 8192, .err_path = TMPD "/err"};
    return child_status(&capped, exec_argv, argv, err, errcap);
}

// eval, sample and train --resume on ckpt: each must exit 1 with a message holding want. With
// resume_only, only train --resume (the others do not read the AdamW moments).
static void refused(const char *what, const char *ckpt, const char *want, int resume_only) {
    char *eval[] = {"./hgrn2", "eval", "--ckpt", (char *)ckpt, "--ids", TMPD "/ids.txt", NULL};
    char *sample[] = {"./hgrn2", "sample", "--ckpt", (char *)ckpt, "--prompt-ids", "1 2", "--ids", "-n", "2", NULL};
    char *train[] = {"./hgrn2", "train", "--resume", "--ckpt", (char *)ckpt, "--out", TMPD "/run", NULL};
    char *const *cmds[] = {eval, sample, train};
    for (int k = resume_only ? 2 : 0; k < 3; k++) {
        char err[2048];
        int st = run(cmds[k], err, sizeof err);
        CHECK(st == 1 && strstr(err, want) && !strstr(err, "out of memory"),
              "%s: %s %s exited %d, expected 1 with '%s'; stderr: %s", what, cmds[k][1], cmds[k][2], st, want, err);
    }
    printf("refused by %s: %s\n", resume_only ? "train --resume" : "eval, sample and train --resume", what);
}

static void set_int(unsigned char *b, int i, int64_t v) { memcpy(b + INT_AT(i), &v, 8); }
static void set_float(unsigned char *b, int i, double v) { memcpy(b + FLOAT_AT(i), &v, 8); }
static void set_i64(unsigned char *b, size_t at, int64_t v) { memcpy(b + at, &v, 8); }
// A copy of the n bytes at src with the len bytes at `at` removed; *m receives its size.
static unsigned char *cut_bytes(const unsigned char *src, size_t n, size_t at, size_t len, size_t *m) {
    unsigned char *b = xmalloc(n - len);
    memcpy(b, src, at);
    memcpy(b + at, src + at + len, n - at - len);
    *m = n - len;
    return b;
}

// One header field set to a value outside its range, the checksum recomputed.
static void bad_field(const char *what, int is_float, int i, double v, const char *want) {
    unsigned char *b = xmalloc(g_size);
    memcpy(b, g_good, g_size);
    if (is_float) set_float(b, i, v); else set_int(b, i, (int64_t)v);
    write_resummed(TMPD "/bad.ckpt", b, g_size);
    free(b);
    refused(what, TMPD "/bad.ckpt", want, 0);
}

static Config g_cfg;

static void header_ranges(void) {
    // the run-state fields, each at a value the command line would refuse for its flag
    bad_field("schedule -100000000", 0, I_SCHED, -100000000, "is corrupt: schedule = -100000000 is out of range [0, 3]");
    bad_field("schedule 99", 0, I_SCHED, 99, "is corrupt: schedule = 99 is out of range [0, 3]");
    bad_field("wsd without its decay fraction", 0, I_SCHED, 3, "is corrupt: decay-fraction = 0 is out of range [1e-06, 1]");
    bad_field("a decay fraction with cosine", 1, F_DECAY_FRAC, 0.5, "is corrupt: decay-fraction = 0.5 with schedule cosine");
    bad_field("decay fraction NaN", 1, F_DECAY_FRAC, NAN, "is corrupt: decay-fraction = ");
    bad_field("embedding dropout 1", 1, F_EMBED_DROP, 1, "is corrupt: embed-dropout = 1 is out of range [0, 0.9]");
    bad_field("embedding dropout -0.1", 1, F_EMBED_DROP, -0.1, "is corrupt: embed-dropout = -0.1 is out of range");
    bad_field("accumulation -1", 0, I_ACCUM, -1, "is corrupt: accum = -1 is out of range [1, 1048576]");
    bad_field("steps -1", 0, I_STEPS, -1, "is corrupt: steps = -1 is out of range");
    bad_field("warmup -10", 0, I_WARMUP, -10, "is corrupt: warmup = -10 is out of range");
    bad_field("batch 0", 0, I_B, 0, "is corrupt: batch = 0 is out of range [1, 1048576]");
    bad_field("seq-len 2^30", 0, I_T, 1 << 30, "is corrupt: seq-len = 1073741824 is out of range [1, 16777216]");
    bad_field("seed -1", 0, I_SEED, -1, "is corrupt: seed = -1 is out of range");
    bad_field("steps done beyond the steps", 0, I_STEP, 11, "is corrupt: steps done = 11 is out of range [0, 10]");
    bad_field("steps done -3", 0, I_STEP, -3, "is corrupt: steps done = -3 is out of range [0, 10]");
    bad_field("loader batches not the steps done", 0, I_LOADER_BATCHES, 5, "is corrupt: loader batches = 5");
    bad_field("a loader cursor", 0, I_LOADER_CURSOR, 7, "is corrupt: loader cursor = 7 is out of range [0, 0]");
    bad_field("a reserved loader field", 0, I_LOADER_RESERVED, 1, "is corrupt: loader reserved = 1 is out of range [0, 0]");
    bad_field("optimizer flag 5", 0, I_OPT, 5, "is corrupt: optimizer flag = 5 is out of range [0, 1]");
    bad_field("lr NaN", 1, F_LR, NAN, "is corrupt: lr = ");
    bad_field("lr 0", 1, F_LR, 0, "is corrupt: lr = 0 is out of range");
    bad_field("min-lr -1", 1, F_MIN_LR, -1, "is corrupt: min-lr = -1 is out of range");
    bad_field("wd 11", 1, F_WD, 11, "is corrupt: wd = 11 is out of range");
    bad_field("beta1 2", 1, F_BETA1, 2, "is corrupt: beta1 = 2 is out of range");
    bad_field("beta2 inf", 1, F_BETA2, INFINITY, "is corrupt: beta2 = inf is out of range");
    bad_field("adam eps 0", 1, F_ADAM_EPS, 0, "is corrupt: adam-eps = 0 is out of range");
    bad_field("clip NaN", 1, F_CLIP, NAN, "is corrupt: clip = ");
    bad_field("clip -1", 1, F_CLIP, -1, "is corrupt: clip = -1 is out of range");
    // the model's fields
    bad_field("vocabulary 1", 0, I_V, 1, "is corrupt: vocab = 1 is out of range [2, 16777216]");
    bad_field("vocabulary -2^40", 0, I_V, -0x1p40, "is corrupt: vocab = -1099511627776 is out of range");
    bad_field("dim 0", 0, I_D, 0, "is corrupt: dim = 0 is out of range [1, 65536]");
    bad_field("layers 5000", 0, I_L, 5000, "is corrupt: layers = 5000 is out of range [1, 1024]");
    bad_field("expand ratio 0", 0, I_K, 0, "is corrupt: expand-ratio = 0 is out of range");
    bad_field("expand ratio not dividing dim", 0, I_K, 3, "is corrupt: expand-ratio 3 does not divide dim 16");
    bad_field("MLP width -1", 0, I_I, -1, "is corrupt: mlp-width = -1 is out of range [0, 1048576]");
    // width 0 is a model without MLPs: a valid configuration, so the parameter count no longer matches
    bad_field("MLP width 0 (no MLPs)", 0, I_I, 0, "is corrupt: it says");
    bad_field("tied 2", 0, I_TIE, 2, "is corrupt: tied = 2 is out of range [0, 1]");
    bad_field("lower bounds -1", 0, I_LB, -1, "is corrupt: lower-bounds = -1 is out of range [0, 1]");
    bad_field("architecture 3", 0, I_ARCH, 3, "is corrupt: architecture = 3 is out of range [0, 2]");
    bad_field("architecture -1", 0, I_ARCH, -1, "is corrupt: architecture = -1 is out of range [0, 2]");
    // hgrn1 over an expand ratio of 8: its state is a vector, so the configuration itself is invalid
    bad_field("hgrn1 with expand ratio 8", 0, I_ARCH, 1, "invalid configuration (--expand-ratio 8 is not possible with --arch hgrn1");
    // the transformer over a model with lower bounds: it has no forget gates to bound
    bad_field("transformer with lower bounds", 0, I_ARCH, 2, "invalid configuration (the transformer has no forget gates");
    bad_field("mixer layer 2", 0, I_LAYER, 2, "is corrupt: mixer layer = 2 is out of range [0, 1]");
    bad_field("mixer layer -1", 0, I_LAYER, -1, "is corrupt: mixer layer = -1 is out of range [0, 1]");
    // the authors' layer has its biases: over this model's tensors, the parameter count does not match
    bad_field("mixer layer lra over fla's tensors", 0, I_LAYER, 1, "is corrupt: it says");
    bad_field("blocks 2", 0, I_BLOCK, 2, "is corrupt: blocks = 2 is out of range [0, 1]");
    bad_field("blocks zoology over fla's tensors", 0, I_BLOCK, 1, "is corrupt: it says");
    bad_field("norm eps 0", 1, F_EPS, 0, "is corrupt: norm eps = 0 is out of range (0, 1)");
    bad_field("norm eps NaN", 1, F_EPS, NAN, "is corrupt: norm eps = ");
    bad_field("a parameter count that is not the configuration's", 0, I_N, 12345, "is corrupt: it says 12345 parameters");
}

// Sizes that would need terabytes, or strings longer than the file: the message says corrupt or
// truncated, with what was expected and found, and nothing of that size is allocated (the cap would
// turn an attempt into "out of memory", which refused() rejects).
static void sizes_before_allocation(void) {
    unsigned char *b = xmalloc(g_size);
    // a bit flipped in the vocabulary and one in the dim: a consistent header for 2^24 x 65536 embeddings
    memcpy(b, g_good, g_size);
    Config big = g_cfg;
    big.V = 1 << 24;
    big.D = 65536;
    config_finish(&big);
    Layout lay = layout_of(&big);
    set_int(b, I_V, big.V);
    set_int(b, I_D, big.D);
    set_int(b, I_N, lay.n);
    write_resummed(TMPD "/huge.ckpt", b, g_size);
    char want[256];
    snprintf(want, sizeof want, "is truncated or corrupt: its header describes %lld parameters with the AdamW moments, "
             "%lld bytes of tensors, but", (long long)lay.n, (long long)lay.n * 12);
    refused("a header describing a model of 17 TB", TMPD "/huge.ckpt", want, 0);
    // the same with the parameter count left as it was
    memcpy(b, g_good, g_size);
    set_int(b, I_V, big.V);
    set_int(b, I_D, big.D);
    write_resummed(TMPD "/huge2.ckpt", b, g_size);
    refused("a huge configuration with the old parameter count", TMPD "/huge2.ckpt", "is corrupt: it says", 0);
    // more bytes than the header describes
    unsigned char *longer = xcalloc(g_size + 64, 1);
    memcpy(longer, g_good, g_size - 8);
    write_resummed(TMPD "/long.ckpt", longer, g_size + 64);
    refused("64 bytes more than the header describes", TMPD "/long.ckpt", "is corrupt: its header describes", 0);
    free(longer);
    // a string length of 2^62, and one longer than the field can hold
    memcpy(b, g_good, g_size);
    int64_t n = INT64_C(1) << 62;
    memcpy(b + STRINGS_AT, &n, 8);
    write_resummed(TMPD "/str.ckpt", b, g_size);
    refused("a tokenizer spec of 2^62 bytes", TMPD "/str.ckpt", "is corrupt: the tokenizer spec is 4611686018427387904 bytes long, but", 0);
    memcpy(b, g_good, g_size);
    n = 5000;
    memcpy(b + STRINGS_AT, &n, 8);
    write_resummed(TMPD "/str2.ckpt", b, g_size);
    refused("a tokenizer spec of 5000 bytes", TMPD "/str2.ckpt", "is corrupt: the tokenizer spec is 5000 bytes long, at most 1023 fit", 0);
    memcpy(b, g_good, g_size);
    n = -1;
    memcpy(b + STRINGS_AT, &n, 8);
    write_resummed(TMPD "/str3.ckpt", b, g_size);
    refused("a tokenizer spec of -1 bytes", TMPD "/str3.ckpt", "is corrupt: the tokenizer spec is -1 bytes long", 0);
    // a negative second moment: only resuming reads the moments
    memcpy(b, g_good, g_size);
    int64_t tl, dl;
    memcpy(&tl, b + STRINGS_AT, 8);
    memcpy(&dl, b + STRINGS_AT + 8 + tl, 8);
    size_t moments_v = STRINGS_AT + 16 + (size_t)tl + (size_t)dl + 2 * 4 * (size_t)layout_of(&g_cfg).n;
    float neg = -1;
    memcpy(b + moments_v, &neg, 4);
    write_resummed(TMPD "/moment.ckpt", b, g_size);
    refused("a negative second moment", TMPD "/moment.ckpt", "is corrupt: an AdamW moment", 1);
    free(b);
}

// ---- a save that fails: the file-size limit stands in for a full disk ----

typedef struct { Model *m; RunState *rs; rlim_t limit; } SaveArgs;
static void save_limited(const SaveArgs *a) {
    struct rlimit rl = {a->limit, a->limit};
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(97);
    signal(SIGXFSZ, SIG_IGN);    // a write past the limit then fails with EFBIG instead of killing
    checkpoint_save(TMPD "/full.ckpt", a->m, a->rs, 1);
    _exit(0);
}

static void failed_saves(Model *m, RunState *rs) {
    checkpoint_save(TMPD "/full.ckpt", m, rs, 1);
    size_t n0;
    unsigned char *before = slurp(TMPD "/full.ckpt", &n0);
    RunState later = *rs;
    later.step = 9;             // a different checkpoint, so that a half-written one would show
    later.loader.batches = 9;
    // limits that end the write early, mid-way, and within the final flush of the last bytes
    rlim_t limits[] = {100, (rlim_t)(n0 / 2), (rlim_t)(n0 - 4)};
    for (int k = 0; k < 3; k++) {
        // stderr through a pipe: the limit would cut a file short like the checkpoint
        int fds[2];
        if (pipe(fds) != 0) die("pipe failed: %s", strerror(errno));
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            close(fds[0]);
            if (dup2(fds[1], 2) < 0) _exit(99);
            save_limited(&(SaveArgs){m, &later, limits[k]});
        }
        close(fds[1]);
        char err[1024];
        size_t got = 0;
        ssize_t r;
        while (got < sizeof err - 1 && (r = read(fds[0], err + got, sizeof err - 1 - got)) > 0) got += (size_t)r;
        err[got] = 0;
        close(fds[0]);
        int st;
        waitpid(pid, &st, 0);
        size_t n1;
        unsigned char *after = slurp(TMPD "/full.ckpt", &n1);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1, "save under a %llu-byte limit: status %d, expected exit 1",
              (unsigned long long)limits[k], st);
        CHECK(strstr(err, "full.ckpt.tmp failed: File too large") && strstr(err, "full.ckpt was left as it was"),
              "save under a %llu-byte limit: message '%s'", (unsigned long long)limits[k], err);
        CHECK(access(TMPD "/full.ckpt.tmp", F_OK) != 0, "save under a %llu-byte limit left full.ckpt.tmp behind",
              (unsigned long long)limits[k]);
        CHECK(n1 == n0 && !memcmp(before, after, n0), "save under a %llu-byte limit changed the previous checkpoint",
              (unsigned long long)limits[k]);
        free(after);
    }
    printf("a save that hits a file-size limit (3 places) leaves no temporary file and the old checkpoint\n");
    free(before);
}

int main(void) {
    if (access("./hgrn2", X_OK) != 0) { printf("./hgrn2 is missing: build it first (make)\n"); return 1; }
    mkdir_p(TMPD);
    // a small model with the AdamW moments, as train writes it
    g_cfg = (Config){.V = 256, .D = 16, .L = 2, .K = 8, .I = MLP_DEFAULT, .lower_bound = 1, .eps = 1e-6};
    config_finish(&g_cfg);
    Model m;
    model_alloc(&m, &g_cfg);
    model_init(&m, 5);
    model_alloc_training(&m);
    RunState rs = {.c = g_cfg, .h = {.B = 2, .T = 8, .accum = 1, .steps = 10, .lr = 1e-3, .min_lr = 1e-4, .wd = 0.1,
                                     .beta1 = 0.9, .beta2 = 0.95, .adam_eps = 1e-8, .clip = 1, .warmup = 2, .seed = 7},
                   .step = 4, .loader = {7, 4, 0, 0}};
    snprintf(rs.tokenizer, sizeof rs.tokenizer, "byte");
    snprintf(rs.data, sizeof rs.data, TMPD "/no-data");
    checkpoint_save(TMPD "/good.ckpt", &m, &rs, 1);
    g_good = slurp(TMPD "/good.ckpt", &g_size);
    FILE *f = fopen(TMPD "/ids.txt", "w");
    fputs("1 2 3 4\n", f);
    fclose(f);

    // the unedited file loads, and so does the same bytes re-summed: the edits alone make the cases fail
    write_resummed(TMPD "/same.ckpt", g_good, g_size);
    char *eval[] = {"./hgrn2", "eval", "--ckpt", TMPD "/same.ckpt", "--ids", TMPD "/ids.txt", NULL};
    char *sample[] = {"./hgrn2", "sample", "--ckpt", TMPD "/same.ckpt", "--prompt-ids", "1 2", "--ids", "-n", "2", NULL};
    char err[2048];
    int st = run(eval, err, sizeof err);
    CHECK(st == 0, "eval of the valid checkpoint: exit %d: %s", st, err);
    st = run(sample, err, sizeof err);
    CHECK(st == 0, "sample of the valid checkpoint: exit %d: %s", st, err);

    // Older versions, made from the valid file by cutting out what they lack: a version-3 file (no mixer layer,
    // no blocks, no embedding dropout) loads with fla's layer and blocks and no dropout; a version-2 file (no
    // architecture either) as hgrn2; a version-1 file (no decay fraction either). A file that claims a later
    // version's count of integers or floats, or a version 5, is refused.
    {
        size_t n3, n2, n1;
        // version 3: the last float, then the mixer layer and the blocks (two integers) cut out
        unsigned char *t = cut_bytes(g_good, g_size, FLOAT_AT(F_EMBED_DROP), 8, &n3);
        unsigned char *b3 = cut_bytes(t, n3, INT_AT(I_LAYER), 16, &n3);
        free(t);
        set_i64(b3, 8, 3);
        set_i64(b3, 16, 22);
        set_i64(b3, FLOAT_AT(0) - 8 - 16, 9);
        write_resummed(TMPD "/v3.ckpt", b3, n3);
        char *eval3[] = {"./hgrn2", "eval", "--ckpt", TMPD "/v3.ckpt", "--ids", TMPD "/ids.txt", NULL};
        st = run(eval3, err, sizeof err);
        CHECK(st == 0, "eval of a version-3 checkpoint: exit %d: %s", st, err);
        // version 2: the architecture cut out as well
        unsigned char *b2 = cut_bytes(b3, n3, INT_AT(I_ARCH), 8, &n2);
        set_i64(b2, 8, 2);
        set_i64(b2, 16, 21);
        write_resummed(TMPD "/v2.ckpt", b2, n2);
        char *eval2[] = {"./hgrn2", "eval", "--ckpt", TMPD "/v2.ckpt", "--ids", TMPD "/ids.txt", NULL};
        st = run(eval2, err, sizeof err);
        CHECK(st == 0, "eval of a version-2 checkpoint: exit %d: %s", st, err);
        // version 1: the decay fraction cut out as well (the floats start 24 bytes earlier than in version 4)
        const size_t fl1 = FLOAT_AT(0) - 24;
        unsigned char *b1 = cut_bytes(b2, n2, fl1 + 8 * F_DECAY_FRAC, 8, &n1);
        set_i64(b1, 8, 1);
        set_i64(b1, fl1 - 8, 8);
        write_resummed(TMPD "/v1.ckpt", b1, n1);
        char *eval1[] = {"./hgrn2", "eval", "--ckpt", TMPD "/v1.ckpt", "--ids", TMPD "/ids.txt", NULL};
        st = run(eval1, err, sizeof err);
        CHECK(st == 0, "eval of a version-1 checkpoint: exit %d: %s", st, err);
        set_i64(b1, fl1 - 8, 9);
        write_resummed(TMPD "/v1bad.ckpt", b1, n1);
        refused("version 1 with 9 header floats", TMPD "/v1bad.ckpt", "is corrupt: 9 header floats, expected 8", 0);
        set_i64(b2, 16, 22);
        write_resummed(TMPD "/v2bad.ckpt", b2, n2);
        refused("version 2 with 22 header integers", TMPD "/v2bad.ckpt", "is corrupt: 22 header integers, expected 21", 0);
        set_i64(b3, 16, 24);
        write_resummed(TMPD "/v3bad.ckpt", b3, n3);
        refused("version 3 with 24 header integers", TMPD "/v3bad.ckpt", "is corrupt: 24 header integers, expected 22", 0);
        set_i64(b3, 16, 22);
        set_i64(b3, FLOAT_AT(0) - 8 - 16, 10);
        write_resummed(TMPD "/v3badf.ckpt", b3, n3);
        refused("version 3 with 10 header floats", TMPD "/v3badf.ckpt", "is corrupt: 10 header floats, expected 9", 0);
        free(b1); free(b2); free(b3);
        unsigned char *b = xmalloc(g_size);
        memcpy(b, g_good, g_size);
        int64_t five = 5;
        memcpy(b + 8, &five, 8);
        write_resummed(TMPD "/v5.ckpt", b, g_size);
        refused("format version 5", TMPD "/v5.ckpt", "has format version 5; this hgrn2 reads versions 1 to 4", 0);
        free(b);
    }
    header_ranges();
    sizes_before_allocation();
    failed_saves(&m, &rs);
    model_free(&m);
    free(g_good);
    return check_summary("test_checkpoint");
}
