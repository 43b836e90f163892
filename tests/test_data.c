// test_data.c: shards (round trip, 64-bit layout, every corruption), the loader (determinism, resume,
// sequential completeness) and `hgrn2 prepare` (pile .jsonl.zst, wiki103, text, error cases, FIFOs and devices,
// long lines in bounded memory, the JSON Lines scanner).
// Run from the repository root; reads ../shared/data (HGRN2_SHARED overrides ../shared). Exits 1 on any failure.
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zstd.h>

#include "../commands.h"
#include "../data.h"
#include "../tokenizer.h"

#define TMP "tests/tmp/test_data"

static int failures;
#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (!(cond)) {                                                          \
            failures++;                                                         \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
        }                                                                       \
    } while (0)

static char shared_text[2048], shared_gpt2[2048];

// ---- small helpers ----

static uint64_t rng_state = 0x1234567;
static uint64_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

typedef struct { uint8_t *p; size_t n; } Bytes;

static Bytes read_file(const char *path) {
    Bytes b = {0};
    FILE *f = fopen(path, "rb");
    if (!f) die("test: cannot open %s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    b.p = xmalloc((size_t)n + 1);
    b.n = fread(b.p, 1, (size_t)n, f);
    fclose(f);
    if (b.n != (size_t)n) die("test: short read of %s", path);
    return b;
}

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) die("test: cannot write %s", path);
}

static void shared_path(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", shared_text, name); }

static void bb_put(ByteBuf *b, const void *p, size_t n) { bytebuf_append(b, p, n); }
static void bb_puts(ByteBuf *b, const char *s) { bytebuf_append(b, s, strlen(s)); }

// Runs fn(arg) in a child with stderr captured. Returns the child's exit status (-1 if it crashed) and the
// captured text in msg.
typedef void (*ChildFn)(void *);
static int run_child(ChildFn fn, void *arg, char *msg, size_t cap) {
    int fds[2];
    if (pipe(fds) != 0) die("test: pipe failed");
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) die("test: fork failed");
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 2);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) dup2(devnull, 1);
        fn(arg);
        fflush(NULL);
        _exit(0);
    }
    close(fds[1]);
    size_t n = 0;
    ssize_t r;
    char sink[4096];
    while ((r = read(fds[0], n + 1 < cap ? msg + n : sink, n + 1 < cap ? cap - 1 - n : sizeof sink)) > 0)
        if (n + 1 < cap) n += (size_t)r;
    msg[n] = 0;
    close(fds[0]);
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// fn(arg) must exit non-zero (not crash) with a message holding every given fragment.
static void expect_death(const char *what, ChildFn fn, void *arg, const char *frag1, const char *frag2) {
    char msg[8192];
    int rc = run_child(fn, arg, msg, sizeof msg);
    CHECK(rc > 0, "%s: expected a clean non-zero exit, got %s %d; output: %s", what, rc < 0 ? "crash" : "status", rc, msg);
    CHECK(!frag1 || strstr(msg, frag1), "%s: message lacks \"%s\": %s", what, frag1, msg);
    CHECK(!frag2 || strstr(msg, frag2), "%s: message lacks \"%s\": %s", what, frag2, msg);
}

// All tokens of DIR/<split>_*.shard in order.
static int32_t *read_split(const char *dir, const char *split, uint64_t *n, int *nshards) {
    *n = 0;
    *nshards = 0;
    int32_t *all = NULL;
    for (int i = 0;; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s_%06d.shard", dir, split, i);
        if (access(path, F_OK) != 0) break;
        Shard *s = shard_open(path);
        uint64_t m = shard_ntokens(s);
        all = xrealloc(all, (size_t)(*n + m) * sizeof *all);
        shard_read(s, 0, m, all + *n);
        *n += m;
        shard_close(s);
        (*nshards)++;
    }
    return all;
}

// Whether dir holds any file whose name contains frag.
static int dir_has(const char *dir, const char *frag) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int found = 0;
    while ((e = readdir(d)))
        if (strstr(e->d_name, frag)) found = 1;
    closedir(d);
    return found;
}

static void write_shard(const char *path, uint32_t vocab, const int32_t *ids, size_t n) {
    ShardWriter *w = shard_writer_open(path, vocab, "test-tok");
    // uneven appends, so frames fill across calls
    for (size_t i = 0; i < n;) {
        size_t k = 1 + rng() % 3000;
        if (k > n - i) k = n - i;
        shard_writer_append(w, ids + i, k);
        i += k;
    }
    shard_writer_close(w);
}

// ---- shard format ----

static void test_header_encoding(void) {
    // Values above 2^32 in every 64-bit field must survive encode/decode and the size check.
    ShardHeader h = {.version = SHARD_VERSION, .token_bytes = 4, .vocab_size = 200000, .frame_tokens = 65536, .name_len = 4,
                     .ntokens = 5000000000ull + 7, .meta_hash = 0xFEDCBA9876543210ull};
    h.nframes = h.ntokens / 65536 + 1;
    h.index_offset = 6000000000ull + 12345;
    uint64_t size = h.index_offset + h.nframes * SHARD_INDEX_ENTRY_BYTES;
    uint8_t buf[SHARD_HEADER_BYTES];
    shard_header_encode(&h, buf);
    CHECK(!memcmp(buf, "HGRN2SHD", 8), "magic not at the start");
    CHECK(buf[24] == 7 && buf[25] == 0xF2 && buf[28] == 1 && buf[31] == 0, "ntokens not little-endian 64-bit");
    ShardHeader d;
    char err[400];
    CHECK(shard_header_decode(buf, size, &d, err, sizeof err) == 0, "large header rejected: %s", err);
    CHECK(d.ntokens == h.ntokens && d.nframes == h.nframes && d.index_offset == h.index_offset && d.meta_hash == h.meta_hash &&
          d.vocab_size == h.vocab_size && d.frame_tokens == h.frame_tokens && d.name_len == 4 && d.token_bytes == 4,
          "64-bit header fields did not round-trip");
    CHECK(shard_header_decode(buf, size - 1, &d, err, sizeof err) != 0 && strstr(err, "truncated"),
          "a file one byte short was accepted (%s)", err);
    CHECK(shard_header_decode(buf, size + (1ull << 32), &d, err, sizeof err) != 0, "a file 4 GiB too long was accepted");
    uint8_t e[SHARD_INDEX_ENTRY_BYTES];
    uint64_t off, cs;
    shard_index_encode((1ull << 40) + 3, (1ull << 33) + 5, e);
    shard_index_decode(e, &off, &cs);
    CHECK(off == (1ull << 40) + 3 && cs == (1ull << 33) + 5, "index entry did not round-trip 64-bit values");
    CHECK(e[5] == 1 && e[8 + 4] == 2, "index entry not little-endian");
    // u16 width with a vocabulary above 65536 is inconsistent
    h.token_bytes = 2;
    shard_header_encode(&h, buf);
    CHECK(shard_header_decode(buf, size, &d, err, sizeof err) != 0, "u16 width with vocabulary 200000 accepted");
}

static void test_roundtrip(uint32_t vocab) {
    char path[256];
    snprintf(path, sizeof path, TMP "/rt_%u.shard", vocab);
    size_t n = 123457;
    int32_t *ref = xmalloc(n * sizeof *ref), *got = xmalloc(n * sizeof *got);
    for (size_t i = 0; i < n; i++) ref[i] = (int32_t)(rng() % vocab);
    ref[0] = 0;
    ref[1] = (int32_t)vocab - 1;
    shard_set_frame_tokens(1000);
    write_shard(path, vocab, ref, n);
    shard_set_frame_tokens(0);
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(access(tmp, F_OK) != 0 && access(path, F_OK) == 0, "the writer did not rename its temporary file");
    Shard *s = shard_open(path);
    CHECK(shard_ntokens(s) == n && shard_vocab(s) == vocab && !strcmp(shard_tokenizer(s), "test-tok"), "shard metadata wrong");
    shard_read(s, 0, n, got);
    CHECK(!memcmp(ref, got, n * sizeof *ref), "full read differs (vocab %u)", vocab);
    int bad = 0;
    for (int t = 0; t < 2000; t++) {
        uint64_t len = rng() % 2500, start = rng() % (n - len + 1);
        if (t % 4 == 0) {   // straddle a frame boundary (frames hold 1000 tokens)
            start = (rng() % 123 + 1) * 1000 - 1 - len / 2;
            if (start > n - len) start = n - len;
        }
        shard_read(s, start, len, got);
        if (memcmp(ref + start, got, len * sizeof *ref)) bad++;
    }
    shard_read(s, n, 0, got);
    shard_read(s, n - 1, 1, got);
    CHECK(got[0] == ref[n - 1], "last token wrong");
    CHECK(bad == 0, "%d random windows differ from the reference (vocab %u)", bad, vocab);
    shard_close(s);
    struct stat st;
    stat(path, &st);
    printf("round trip vocab %u: %zu tokens in %lld bytes (%u-byte ids), 2000 random windows ok\n", vocab, n,
           (long long)st.st_size, vocab <= 65536 ? 2 : 4);
    // an empty shard is valid
    snprintf(path, sizeof path, TMP "/empty.shard");
    write_shard(path, vocab, ref, 0);
    s = shard_open(path);
    CHECK(shard_ntokens(s) == 0, "empty shard has tokens");
    shard_close(s);
    free(ref);
    free(got);
}

// A shard of 2^32 + 1000 tokens built by hand (zero frames are tiny), read near its end: 64-bit token
// addressing in the reader.
static void test_big_ntokens(void) {
    const char *path = TMP "/big.shard";
    const uint32_t F = 65536;
    uint64_t nframes = 65537, ntokens = 65536ull * 65536ull + 1000;
    uint16_t *raw = xcalloc(F, 2);
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1);
    size_t cap = ZSTD_compressBound(2 * F);
    uint8_t *zero = xmalloc(cap), *last = xmalloc(cap);
    size_t zn = ZSTD_compress2(cc, zero, cap, raw, 2 * F);
    for (int i = 0; i < 1000; i++) raw[i] = (uint16_t)(i + 1);   // little-endian host assumed by this test only
    size_t ln = ZSTD_compress2(cc, last, cap, raw, 2000);
    CHECK(!ZSTD_isError(zn) && !ZSTD_isError(ln), "compression failed");
    ZSTD_freeCCtx(cc);
    const char *name = "big";
    uint8_t *index = xmalloc(nframes * SHARD_INDEX_ENTRY_BYTES);
    FILE *f = fopen(path, "wb");
    uint8_t hdr[SHARD_HEADER_BYTES] = {0};
    fwrite(hdr, 1, sizeof hdr, f);
    fwrite(name, 1, 3, f);
    uint64_t pos = SHARD_HEADER_BYTES + 3;
    for (uint64_t i = 0; i < nframes; i++) {
        size_t c = i + 1 < nframes ? zn : ln;
        fwrite(i + 1 < nframes ? zero : last, 1, c, f);
        shard_index_encode(pos, c, index + i * SHARD_INDEX_ENTRY_BYTES);
        pos += c;
    }
    fwrite(index, 1, nframes * SHARD_INDEX_ENTRY_BYTES, f);
    ShardHeader h = {.version = SHARD_VERSION, .token_bytes = 2, .vocab_size = 50000, .frame_tokens = F, .name_len = 3,
                     .ntokens = ntokens, .nframes = nframes, .index_offset = pos};
    shard_header_encode(&h, hdr);
    h.meta_hash = shard_meta_hash(hdr, name, 3, index, nframes);
    shard_header_encode(&h, hdr);
    fseek(f, 0, SEEK_SET);
    fwrite(hdr, 1, sizeof hdr, f);
    CHECK(fclose(f) == 0, "writing %s failed", path);
    Shard *s = shard_open(path);
    CHECK(shard_ntokens(s) == ntokens, "ntokens %llu", (unsigned long long)shard_ntokens(s));
    int32_t got[20];
    shard_read(s, (1ull << 32) - 5, 20, got);
    int ok = 1;
    for (int i = 0; i < 20; i++) ok &= got[i] == (i < 5 ? 0 : i - 4);
    CHECK(ok, "tokens around 2^32 wrong: %d %d %d", got[4], got[5], got[19]);
    shard_read(s, ntokens - 1, 1, got);
    CHECK(got[0] == 1000, "last token of a 2^32+ shard wrong: %d", got[0]);
    shard_close(s);
    free(raw);
    free(zero);
    free(last);
    free(index);
    unlink(path);
}

// ---- corruption: each case dies in a child with a message naming the file ----

typedef struct { const char *path; uint64_t start, n; } ReadArgs;
static void child_open_read(void *arg) {
    ReadArgs *a = arg;
    Shard *s = shard_open(a->path);
    int32_t *buf = xmalloc((a->n ? a->n : 1) * sizeof *buf);
    shard_read(s, a->start, a->n, buf);
    shard_close(s);
}

static void patch(const char *path, uint64_t off, const void *p, size_t n) {
    int fd = open(path, O_WRONLY);
    if (fd < 0 || pwrite(fd, p, n, (off_t)off) != (ssize_t)n) die("test: patching %s failed", path);
    close(fd);
}

static void copy_file(const char *from, const char *to) {
    Bytes b = read_file(from);
    write_file(to, b.p, b.n);
    free(b.p);
}

// Rewrites a shard's header fields and recomputes its checksum, so only the intended defect remains.
static void reseal(const char *path, void (*edit)(ShardHeader *h, uint8_t *index)) {
    Bytes b = read_file(path);
    ShardHeader h;
    char err[400];
    if (shard_header_decode(b.p, b.n, &h, err, sizeof err)) die("test: reseal: %s", err);
    uint8_t *index = b.p + h.index_offset;
    edit(&h, index);
    shard_header_encode(&h, b.p);
    h.meta_hash = shard_meta_hash(b.p, (const char *)b.p + SHARD_HEADER_BYTES, h.name_len, index, h.nframes);
    shard_header_encode(&h, b.p);
    write_file(path, b.p, b.n);
    free(b.p);
}
static void edit_vocab(ShardHeader *h, uint8_t *index) { h->vocab_size = 100; }
static void edit_past_eof(ShardHeader *h, uint8_t *index) {
    uint64_t off, cs;
    uint8_t *e = index + (h->nframes - 1) * SHARD_INDEX_ENTRY_BYTES;
    shard_index_decode(e, &off, &cs);
    shard_index_encode(off, cs + 1000000, e);
}

typedef struct { const char *path; uint32_t vocab; int32_t id; } WriteArgs;
static void child_write_bad(void *arg) {
    WriteArgs *a = arg;
    ShardWriter *w = shard_writer_open(a->path, a->vocab, "t");
    int32_t ids[3] = {1, 2, a->id};
    shard_writer_append(w, ids, 3);
    shard_writer_close(w);
}

static void test_corruption(void) {
    const char *good = TMP "/good.shard", *bad = TMP "/bad.shard";
    size_t n = 20000;
    int32_t *ref = xmalloc(n * sizeof *ref);
    for (size_t i = 0; i < n; i++) ref[i] = (int32_t)(rng() % 1000);
    shard_set_frame_tokens(1000);
    write_shard(good, 1000, ref, n);
    shard_set_frame_tokens(0);
    Bytes g = read_file(good);
    ShardHeader h;
    char err[400];
    CHECK(shard_header_decode(g.p, g.n, &h, err, sizeof err) == 0, "good shard: %s", err);
    ReadArgs all = {bad, 0, n};
    uint64_t off3, cs3;
    shard_index_decode(g.p + h.index_offset + 3 * SHARD_INDEX_ENTRY_BYTES, &off3, &cs3);

    write_file(bad, g.p, 10);
    expect_death("truncated header", child_open_read, &all, bad, "truncated header");
    copy_file(good, bad);
    patch(bad, 0, "HGRN2XXX", 8);
    expect_death("bad magic", child_open_read, &all, bad, "bad magic");
    copy_file(good, bad);
    patch(bad, 8, "\x02\x00\x00\x00", 4);
    expect_death("wrong version", child_open_read, &all, bad, "expected 1, found 2");
    write_file(bad, g.p, off3 + cs3 / 2);
    expect_death("truncated in a frame", child_open_read, &all, bad, "truncated");
    write_file(bad, g.p, g.n - 1);
    expect_death("truncated index", child_open_read, &all, bad, "truncated");
    copy_file(good, bad);
    uint8_t flip = g.p[off3 + cs3 / 2] ^ 0x55;
    patch(bad, off3 + cs3 / 2, &flip, 1);
    ReadArgs f3 = {bad, 3 * 1000 + 10, 5};
    expect_death("flipped byte in a frame", child_open_read, &f3, bad, "frame 3");
    // the frames before the damaged one still read
    ReadArgs f0 = {bad, 0, 3000};
    char msg[4096];
    CHECK(run_child(child_open_read, &f0, msg, sizeof msg) == 0, "reading undamaged frames failed: %s", msg);
    copy_file(good, bad);
    flip = g.p[SHARD_HEADER_BYTES + 1] ^ 1;   // inside the tokenizer name
    patch(bad, SHARD_HEADER_BYTES + 1, &flip, 1);
    expect_death("flipped byte in the header", child_open_read, &all, bad, "checksum");
    copy_file(good, bad);
    reseal(bad, edit_past_eof);
    expect_death("index past EOF", child_open_read, &all, bad, "past");
    copy_file(good, bad);
    reseal(bad, edit_vocab);
    expect_death("token >= vocab", child_open_read, &all, bad, "not below the vocabulary size 100");
    ReadArgs past = {good, n - 5, 10};
    expect_death("read past the end", child_open_read, &past, good, "past the end");
    WriteArgs wa = {TMP "/w.shard", 1000, 1000};
    expect_death("writer: id >= vocab", child_write_bad, &wa, TMP "/w.shard", "outside the vocabulary");
    wa.id = -1;
    expect_death("writer: negative id", child_write_bad, &wa, TMP "/w.shard", "outside the vocabulary");
    CHECK(!dir_has(TMP, "w.shard"), "a dying writer left its file behind");
    // an aborted writer removes its temporary file
    ShardWriter *w = shard_writer_open(TMP "/ab.shard", 10, "t");
    int32_t one = 1;
    shard_writer_append(w, &one, 1);
    shard_writer_abort(w);
    CHECK(!dir_has(TMP, "ab.shard"), "shard_writer_abort left a file");
    free(g.p);
    free(ref);
}

// ---- loader ----

#define LV 60000
static int32_t tok_at(uint64_t i) { return (int32_t)((i * 7919) % LV); }   // injective below LV

static void make_split(const char *dir, const char *split, const size_t *sizes, int nshards, uint64_t first) {
    shard_set_frame_tokens(256);
    uint64_t pos = first;
    for (int i = 0; i < nshards; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s_%06d.shard", dir, split, i);
        int32_t *ids = xmalloc((sizes[i] + 1) * sizeof *ids);
        for (size_t k = 0; k < sizes[i]; k++) ids[k] = tok_at(pos++);
        write_shard(path, LV, ids, sizes[i]);
        free(ids);
    }
    shard_set_frame_tokens(0);
}

typedef struct { const char *dir, *split; } LoaderArgs;
static void child_loader(void *arg) {
    LoaderArgs *a = arg;
    Loader *l = loader_open(a->dir, a->split, 2, 8, 1, 1);
    int32_t ids[18];
    loader_next(l, ids);
    loader_close(l);
}

static void test_loader(void) {
    const char *dir = TMP "/loader";
    mkdir(dir, 0777);
    const size_t sizes[] = {5000, 17, 3001};
    make_split(dir, "train", sizes, 3, 0);
    const size_t vs[] = {1234};
    make_split(dir, "val", vs, 1, 0);
    uint64_t N = 5000 + 17 + 3001;
    int32_t *pos_of = xmalloc(LV * sizeof *pos_of);
    for (uint64_t i = 0; i < LV; i++) pos_of[tok_at(i)] = (int32_t)i;
    CHECK(data_has_split(dir, "train") && data_has_split(dir, "val") && !data_has_split(dir, "test") &&
          !data_has_split(TMP "/nonexistent", "train"), "data_has_split wrong");

    // random windows: rows are contiguous slices of the stream at starts in [0, N-T-1], crossing shards
    const int B = 4, T = 300, W = T + 1, NB = 40;
    Loader *a = loader_open(dir, "train", B, T, 1, 42);
    CHECK(loader_ntokens(a) == N && loader_vocab(a) == LV && !strcmp(loader_tokenizer(a), "test-tok"), "loader metadata wrong");
    int32_t *ba = xmalloc((size_t)NB * B * W * sizeof(int32_t)), *bb = xmalloc((size_t)NB * B * W * sizeof(int32_t));
    int bad = 0, crossing = 0;
    uint64_t minstart = N, maxstart = 0;
    for (int i = 0; i < NB; i++) {
        CHECK(loader_next(a, ba + (size_t)i * B * W) == B, "random mode must return B rows");
        for (int r = 0; r < B; r++) {
            int32_t *row = ba + ((size_t)i * B + r) * W;
            uint64_t s = (uint64_t)pos_of[row[0]];
            for (int k = 0; k < W; k++) bad += row[k] != tok_at(s + (uint64_t)k);
            if (s + (uint64_t)T >= N) bad++;
            if (s < 5017 && s + (uint64_t)T >= 5000) crossing++;
            if (s < minstart) minstart = s;
            if (s > maxstart) maxstart = s;
        }
    }
    CHECK(bad == 0, "%d tokens of random windows differ from the stream", bad);
    CHECK(crossing > 0 && minstart < N / 10 && maxstart > N - T - N / 10, "window starts not spread: crossing %d, min %llu, max %llu",
          crossing, (unsigned long long)minstart, (unsigned long long)maxstart);
    LoaderState mid;
    // determinism and resume: same seed, same batches; set_state replays from any point
    Loader *b = loader_open(dir, "train", B, T, 1, 42);
    for (int i = 0; i < NB; i++) {
        if (i == 17) mid = loader_get_state(b);
        loader_next(b, bb + (size_t)i * B * W);
    }
    CHECK(!memcmp(ba, bb, (size_t)NB * B * W * sizeof(int32_t)), "same seed gave different batches");
    CHECK(mid.batches == 17 && mid.seed == 42, "state after 17 batches: %llu, seed %llu", (unsigned long long)mid.batches,
          (unsigned long long)mid.seed);
    loader_set_state(b, mid);
    for (int i = 17; i < NB; i++) {
        int32_t tmp[4 * 301];
        loader_next(b, tmp);
        if (memcmp(tmp, ba + (size_t)i * B * W, sizeof tmp)) { bad++; }
    }
    CHECK(bad == 0, "set_state did not replay the same batches");
    LoaderState end = loader_get_state(b);
    CHECK(end.batches == NB, "state after the replay: %llu batches", (unsigned long long)end.batches);
    loader_close(b);
    Loader *c = loader_open(dir, "train", B, T, 1, 7);   // a fresh loader resumed from a saved state
    loader_set_state(c, mid);
    loader_next(c, bb);
    CHECK(!memcmp(bb, ba + (size_t)17 * B * W, (size_t)B * W * sizeof(int32_t)), "a fresh loader did not resume exactly");
    loader_close(c);
    Loader *d = loader_open(dir, "train", B, T, 1, 43);
    loader_next(d, bb);
    CHECK(memcmp(bb, ba, (size_t)B * W * sizeof(int32_t)) != 0, "different seeds gave the same batch");
    loader_close(d);
    loader_close(a);

    // sequential: every token after the first predicted exactly once, padding -1, then 0 rows
    const char *splits[2] = {"train", "val"};
    uint64_t ns[2] = {N, 1234};
    for (int sp = 0; sp < 2; sp++) {
        int Bs = 3, Ts = 100, Ws = Ts + 1;
        Loader *l = loader_open(dir, splits[sp], Bs, Ts, 0, 0);
        uint8_t *seen = xcalloc(ns[sp], 1);
        int32_t *buf = xmalloc((size_t)Bs * Ws * sizeof(int32_t)), *first = xmalloc((size_t)Bs * Ws * sizeof(int32_t));
        uint64_t targets = 0, cursor = 0;
        int rows, nbatch = 0, wrong = 0;
        while ((rows = loader_next(l, buf)) > 0) {
            if (nbatch++ == 0) memcpy(first, buf, (size_t)Bs * Ws * sizeof(int32_t));
            for (int r = 0; r < Bs; r++) {
                int32_t *row = buf + (size_t)r * Ws;
                uint64_t s = cursor + (uint64_t)r * (uint64_t)Ts;
                if (r >= rows) {
                    for (int k = 0; k < Ws; k++) wrong += row[k] != -1;
                    continue;
                }
                for (int k = 0; k < Ws; k++) {
                    if (s + (uint64_t)k < ns[sp]) {
                        wrong += row[k] != tok_at(s + (uint64_t)k);
                        if (k > 0) { targets++; seen[s + (uint64_t)k]++; }
                    } else wrong += row[k] != -1;
                }
            }
            cursor += (uint64_t)Bs * (uint64_t)Ts;
            LoaderState st = loader_get_state(l);
            wrong += st.cursor != cursor;
        }
        int twice = 0;
        for (uint64_t i = 1; i < ns[sp]; i++) twice += seen[i] != 1;
        CHECK(wrong == 0, "%s: %d sequential tokens wrong", splits[sp], wrong);
        CHECK(targets == ns[sp] - 1 && twice == 0 && seen[0] == 0, "%s: %llu targets for %llu tokens, %d predicted not exactly once",
              splits[sp], (unsigned long long)targets, (unsigned long long)ns[sp], twice);
        CHECK(loader_next(l, buf) == 0 && buf[0] == -1, "%s: exhausted loader returned data", splits[sp]);
        loader_reset(l);
        CHECK(loader_next(l, buf) == Bs && !memcmp(buf, first, (size_t)Bs * Ws * sizeof(int32_t)), "%s: reset did not restart", splits[sp]);
        LoaderState st = {.cursor = 2 * (uint64_t)Bs * Ts};
        loader_set_state(l, st);
        loader_next(l, buf);
        CHECK(buf[0] == tok_at(st.cursor), "%s: set_state(cursor) did not seek", splits[sp]);
        loader_close(l);
        free(seen);
        free(buf);
        free(first);
    }

    // a split with a gap in its numbering, or shards of different vocabularies, is refused
    const char *gap = TMP "/gap";
    mkdir(gap, 0777);
    const size_t gs[] = {100, 100, 100};
    make_split(gap, "train", gs, 3, 0);
    unlink(TMP "/gap/train_000001.shard");
    LoaderArgs la = {gap, "train"};
    expect_death("gap in shard numbers", child_loader, &la, "train_000002.shard", "gaps");
    la.dir = TMP "/nonexistent";
    expect_death("no shards", child_loader, &la, "nonexistent", "no train shards");
    free(pos_of);
    free(ba);
    free(bb);
}

// ---- prepare ----

static int prepare(const char **args) {
    const char *argv[64];
    int argc = 0;
    argv[argc++] = "prepare";
    for (; *args; args++) argv[argc++] = *args;
    argv[argc] = NULL;
    return cmd_prepare(argc, (char **)argv);
}
static void child_prepare(void *arg) { exit(prepare(arg)); }

static void rmrf(const char *dir) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) die("test: %s failed", cmd);
}

// Appends s as a JSON string, escaping what must be and, to exercise the reader, every third non-ASCII
// character as \uXXXX (surrogate pairs above U+FFFF), some '/' as "\/"; invalid UTF-8 stays raw.
static void json_string(ByteBuf *o, const uint8_t *s, size_t n) {
    static int k;
    bb_puts(o, "\"");
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        char esc[16];
        if (c == '"' || c == '\\') { esc[0] = '\\'; esc[1] = (char)c; bb_put(o, esc, 2); i++; continue; }
        if (c == '\n') { bb_puts(o, "\\n"); i++; continue; }
        if (c == '\r') { bb_puts(o, "\\r"); i++; continue; }
        if (c == '\t') { bb_puts(o, "\\t"); i++; continue; }
        if (c < 0x20) { snprintf(esc, sizeof esc, "\\u%04x", c); bb_puts(o, esc); i++; continue; }
        if (c == '/' && k++ % 2) { bb_puts(o, "\\/"); i++; continue; }
        int len = c >= 0xF0 && c < 0xF5 ? 4 : c >= 0xE0 && c < 0xF0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 1;
        int valid = len > 1 && i + (size_t)len <= n;
        for (int j = 1; valid && j < len; j++) valid = (s[i + (size_t)j] & 0xC0) == 0x80;
        uint32_t cp = len == 2 ? (uint32_t)(c & 0x1F) : len == 3 ? (uint32_t)(c & 0x0F) : (uint32_t)(c & 0x07);
        for (int j = 1; valid && j < len; j++) cp = cp << 6 | (s[i + (size_t)j] & 0x3F);
        // overlong forms, surrogates and values past U+10FFFF are invalid UTF-8: they stay raw bytes
        if (valid && ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp < 0xE000)))
            valid = 0;
        if (valid && k++ % 3 == 0) {
            if (cp >= 0x10000) snprintf(esc, sizeof esc, "\\u%04X\\u%04x", 0xD800 + ((cp - 0x10000) >> 10), 0xDC00 + ((cp - 0x10000) & 0x3FF));
            else snprintf(esc, sizeof esc, "\\u%04x", cp);
            bb_puts(o, esc);
            i += (size_t)len;
            continue;
        }
        size_t l = valid ? (size_t)len : 1;
        bb_put(o, s + i, l);
        i += l;
    }
    bb_puts(o, "\"");
}

typedef struct { ByteBuf *docs; size_t n; } Docs;

// Documents for the pile test: numbered paragraphs of alice29, some hand-made ones (escapes, non-ASCII,
// invalid UTF-8, empty), and one of about 3.3 MB so that it is tokenized in pieces.
static Docs pile_docs(int with_big) {
    char path[4096];
    shared_path(path, sizeof path, "canterbury-alice29.txt");
    Bytes a = read_file(path);
    Docs d = {xcalloc(4096, sizeof(ByteBuf)), 0};
    size_t i = 0;
    while (i < a.n && d.n < 4000) {
        const uint8_t *e = memmem(a.p + i, a.n - i, "\r\n\r\n", 4);
        size_t end = e ? (size_t)(e - a.p) + 4 : a.n;
        char tag[32];
        snprintf(tag, sizeof tag, "[doc %zu] ", d.n);
        bb_puts(&d.docs[d.n], tag);
        bb_put(&d.docs[d.n], a.p + i, end - i);
        d.n++;
        i = end;
    }
    free(a.p);
    const char *special[] = {"quotes \" and \\ backslash / slash \t tab \x01 control",
                             "caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 emoji \xf0\x9f\x98\x80 \xf0\x9f\x8e\x89 end",
                             "invalid utf-8: \xff\xfe \xc3 alone \xed\xa0\x80 surrogate bytes",
                             "no trailing newline"};
    for (int s = 0; s < 4; s++) {
        char tag[32];
        snprintf(tag, sizeof tag, "[doc %zu] ", d.n);
        bb_puts(&d.docs[d.n], tag);
        bb_puts(&d.docs[d.n], special[s]);
        d.n++;
    }
    if (with_big) {
        shared_path(path, sizeof path, "tinyshakespeare.txt");
        Bytes t = read_file(path);
        bb_puts(&d.docs[d.n], "[big doc]\n");
        for (int r = 0; r < 3; r++) bb_put(&d.docs[d.n], t.p, t.n);
        d.n++;
        free(t.p);
    }
    return d;
}

static void docs_free(Docs d) {
    for (size_t i = 0; i < d.n; i++) free(d.docs[i].data);
    free(d.docs);
}

// JSON Lines of docs (other fields around "text", key order varied, a blank line, an empty text), zstd
// compressed as two concatenated frames.
static Bytes jsonl_zst(Docs d, ByteBuf *plain, int repeat) {
    ByteBuf o = {0};
    for (size_t i = 0; i < d.n * (size_t)repeat; i++) {
        if (i % 2) {
            bb_puts(&o, "{\"text\": ");
            json_string(&o, (const uint8_t *)d.docs[i % d.n].data, d.docs[i % d.n].n);
            bb_puts(&o, ", \"meta\": {\"pile_set_name\": \"Pile-CC\", \"x\": [1, -2.5e3, 0.25, true, false, null, {}, []]}}\n");
        } else {
            bb_puts(&o, " {\"meta\":{\"id\":\"a\\\"b\\u00e9\",\"n\":-0}, \"text\":");
            json_string(&o, (const uint8_t *)d.docs[i % d.n].data, d.docs[i % d.n].n);
            bb_puts(&o, "}\r\n");
        }
        if (i == 3) bb_puts(&o, "\n   \n{\"text\": \"\"}\n");
    }
    if (plain) *plain = o;
    size_t half = o.n / 2, cap = ZSTD_compressBound(o.n) + 64;
    Bytes z = {xmalloc(cap), 0};
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1);   // as the zstd command line writes them
    size_t a = ZSTD_compress2(cc, z.p, cap, o.data, half);
    size_t b = ZSTD_isError(a) ? a : ZSTD_compress2(cc, z.p + a, cap - a, o.data + half, o.n - half);
    ZSTD_freeCCtx(cc);
    if (ZSTD_isError(a) || ZSTD_isError(b)) die("test: zstd compression failed");
    z.n = a + b;
    if (!plain) free(o.data);
    return z;
}

// Each document, in order, must continue either the train or the val stream; both must be used up.
static void check_split(const char *what, Docs d, const int32_t *tr, uint64_t ntr, const int32_t *va, uint64_t nva, int need_val) {
    uint64_t pt = 0, pv = 0;
    size_t nval = 0, i;
    for (i = 0; i < d.n; i++) {
        const uint8_t *s = (const uint8_t *)d.docs[i].data;
        size_t n = d.docs[i].n, k;
        for (k = 0; k < n && pt + k < ntr && tr[pt + k] == s[k]; k++) {}
        if (k == n) { pt += n; continue; }
        for (k = 0; k < n && pv + k < nva && va[pv + k] == s[k]; k++) {}
        if (k == n) { pv += n; nval++; continue; }
        break;
    }
    CHECK(i == d.n, "%s: document %zu is not next in train (at %llu) or val (at %llu)", what, i, (unsigned long long)pt, (unsigned long long)pv);
    CHECK(pt == ntr && pv == nva, "%s: %llu/%llu train and %llu/%llu val tokens accounted for", what, (unsigned long long)pt,
          (unsigned long long)ntr, (unsigned long long)pv, (unsigned long long)nva);
    CHECK(!need_val || (nval > 0 && nval < d.n), "%s: %zu of %zu documents in val", what, nval, d.n);
}

static int32_t *expected_ids(Tokenizer *tok, Docs d, uint64_t *n) {
    IdBuf ids = {0};
    for (size_t i = 0; i < d.n; i++) {
        if (!d.docs[i].n) continue;
        tokenizer_encode(tok, d.docs[i].data, d.docs[i].n, &ids);
        if (tokenizer_eot(tok) >= 0) idbuf_push(&ids, tokenizer_eot(tok));
    }
    *n = ids.n;
    return ids.ids;
}

static char *meta_value(const char *dir, const char *key) {
    char path[4096], line[8192];
    snprintf(path, sizeof path, "%s/meta.txt", dir);
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char *v = NULL;
    size_t kl = strlen(key);
    while (!v && fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl) && line[kl] == ' ') {
            line[strcspn(line, "\n")] = 0;
            v = strdup(line + kl + 1);
        }
    fclose(f);
    return v;
}

static void test_prepare_pile(void) {
    Docs d = pile_docs(1);
    ByteBuf plain;
    Bytes z = jsonl_zst(d, &plain, 1);
    const char *zpath = TMP "/pile/in.jsonl.zst", *out = TMP "/pile/out";
    mkdir(TMP "/pile", 0777);
    write_file(zpath, z.p, z.n);
    // hashed document split, many shards, three tokenizer threads
    const char *args[] = {"--task", "pile", "--input", zpath, "--tokenizer", "byte", "--out", out, "--val-fraction", "0.3",
                          "--shard-tokens", "300000", "--threads", "3", NULL};
    CHECK(prepare(args) == 0, "prepare pile failed");
    uint64_t ntr, nva;
    int str, sva;
    int32_t *tr = read_split(out, "train", &ntr, &str), *va = read_split(out, "val", &nva, &sva);
    check_split("pile byte 0.3", d, tr, ntr, va, nva, 1);
    CHECK(str >= 1 && sva >= 1 && str + sva >= 13, "expected 13 shards or more: %d train, %d val", str, sva);
    char *m = meta_value(out, "tokenizer"), *mn = meta_value(out, "tokenizer_name");
    CHECK(m && !strcmp(m, "byte") && mn && !strcmp(mn, "byte"), "meta.txt: tokenizer %s, name %s", m, mn);
    CHECK(!dir_has(out, ".part") && !dir_has(out, ".tmp"), "temporary files left in %s", out);
    free(m);
    free(mn);
    free(tr);
    free(va);

    // the same compressed bytes under a plain name (zstd told by magic), everything in train, one thread
    const char *npath = TMP "/pile/in.jsonl", *out2 = TMP "/pile/out2";
    write_file(npath, z.p, z.n);
    const char *args2[] = {"--task", "pile", "--input", npath, "--tokenizer", "byte", "--out", out2, "--val-fraction", "0",
                           "--threads", "1", NULL};
    CHECK(prepare(args2) == 0, "prepare pile (plain name) failed");
    tr = read_split(out2, "train", &ntr, &str);
    CHECK(!data_has_split(out2, "val"), "val split written with --val-fraction 0");
    check_split("pile byte, all train", d, tr, ntr, NULL, 0, 0);
    free(tr);

    // uncompressed JSON Lines given with --val-input: that file is the whole validation split
    const char *ppath = TMP "/pile/plain.jsonl", *out3 = TMP "/pile/out3";
    write_file(ppath, plain.data, plain.n);
    const char *args3[] = {"--task", "pile", "--input", zpath, "--val-input", ppath, "--tokenizer", "byte", "--out", out3, NULL};
    CHECK(prepare(args3) == 0, "prepare pile with --val-input failed");
    tr = read_split(out3, "train", &ntr, &str);
    va = read_split(out3, "val", &nva, &sva);
    check_split("pile --val-input train", d, tr, ntr, NULL, 0, 0);
    check_split("pile --val-input val", d, va, nva, NULL, 0, 0);
    free(tr);
    free(va);
    free(plain.data);
    free(z.p);
    docs_free(d);

    // GPT-2: every document's ids followed by the end-of-text id
    Docs s = pile_docs(0);
    size_t all_docs = s.n;
    s.n = 400;
    z = jsonl_zst(s, NULL, 1);
    const char *gpath = TMP "/pile/small.jsonl.zst", *gout = TMP "/pile/gpt2";
    write_file(gpath, z.p, z.n);
    const char *gargs[] = {"--task", "pile", "--input", gpath, "--tokenizer", shared_gpt2, "--out", gout, "--val-fraction", "0", NULL};
    CHECK(prepare(gargs) == 0, "prepare pile gpt2 failed");
    Tokenizer *tok = tokenizer_load(shared_gpt2);
    uint64_t nexp;
    int32_t *exp = expected_ids(tok, s, &nexp);
    tr = read_split(gout, "train", &ntr, &str);
    CHECK(ntr == nexp && !memcmp(tr, exp, nexp * sizeof *exp), "gpt2 pile shards differ from encode(doc) + eot (%llu vs %llu ids)",
          (unsigned long long)ntr, (unsigned long long)nexp);
    m = meta_value(gout, "tokenizer");
    mn = meta_value(gout, "tokenizer_name");
    char *abs = realpath(shared_gpt2, NULL);
    CHECK(m && abs && !strcmp(m, abs) && mn && !strcmp(mn, tokenizer_name(tok)), "meta.txt: tokenizer %s (want %s), name %s", m, abs, mn);
    free(abs);
    free(m);
    free(mn);
    free(tr);
    free(exp);
    tokenizer_free(tok);
    free(z.p);
    s.n = all_docs;
    docs_free(s);
}

static void test_prepare_text(void) {
    char a[4096], b[4096], t[4096];
    shared_path(a, sizeof a, "canterbury-alice29.txt");
    shared_path(b, sizeof b, "canterbury-asyoulik.txt");
    shared_path(t, sizeof t, "tinyshakespeare.txt");
    Bytes fa = read_file(a), fb = read_file(b), ft = read_file(t);
    mkdir(TMP "/text", 0777);
    // two files given after one --input, everything in train: the bytes of both files in order
    const char *out = TMP "/text/two";
    const char *args[] = {"--task", "text", "--input", a, b, "--tokenizer", "byte", "--out", out, "--val-fraction", "0", NULL};
    CHECK(prepare(args) == 0, "prepare text failed");
    uint64_t n, nv;
    int ns, nvs;
    int32_t *ids = read_split(out, "train", &n, &ns);
    int ok = n == fa.n + fb.n;
    for (size_t i = 0; ok && i < fa.n; i++) ok = ids[i] == fa.p[i];
    for (size_t i = 0; ok && i < fb.n; i++) ok = ids[fa.n + i] == fb.p[i];
    CHECK(ok, "text shards are not the concatenated files (%llu tokens for %zu bytes)", (unsigned long long)n, fa.n + fb.n);
    free(ids);
    // one document and a validation fraction: the last ceil(F * N) tokens become val
    const char *out1 = TMP "/text/one";
    const char *args1[] = {"--task", "text", "--input", t, "--tokenizer", "byte", "--out", out1, "--val-fraction", "0.01",
                           "--shard-tokens", "100000", NULL};
    CHECK(prepare(args1) == 0, "prepare text (one file) failed");
    ids = read_split(out1, "train", &n, &ns);
    int32_t *val = read_split(out1, "val", &nv, &nvs);
    uint64_t want = (uint64_t)((ft.n * 1 + 99) / 100);
    ok = nv == want && n + nv == ft.n;
    for (size_t i = 0; ok && i < n; i++) ok = ids[i] == ft.p[i];
    for (size_t i = 0; ok && i < nv; i++) ok = val[i] == ft.p[n + i];
    CHECK(ok, "single-document split: %llu train + %llu val tokens (want %llu val of %zu)", (unsigned long long)n,
          (unsigned long long)nv, (unsigned long long)want, ft.n);
    CHECK(ns == (int)((ft.n - want + 99999) / 100000), "train shards after the tail move: %d", ns);
    CHECK(!dir_has(out1, ".part") && !dir_has(out1, ".tmp"), "temporary files left in %s", out1);
    free(ids);
    free(val);
    // GPT-2 on a file larger than one piece (tokenized in pieces): equal to encoding the whole file
    const char *out2 = TMP "/text/gpt2";
    const char *args2[] = {"--task", "text", "--input", t, "--tokenizer", shared_gpt2, "--out", out2, "--val-fraction", "0", NULL};
    CHECK(prepare(args2) == 0, "prepare text gpt2 failed");
    Tokenizer *tok = tokenizer_load(shared_gpt2);
    IdBuf exp = {0};
    tokenizer_encode(tok, (const char *)ft.p, ft.n, &exp);
    if (tokenizer_eot(tok) >= 0) idbuf_push(&exp, tokenizer_eot(tok));
    ids = read_split(out2, "train", &n, &ns);
    CHECK(n == exp.n && !memcmp(ids, exp.ids, n * sizeof *ids), "gpt2 text shards differ from encoding the whole file (%llu vs %zu ids)",
          (unsigned long long)n, exp.n);
    free(ids);
    // the same with CRLF line ends (Project Gutenberg files) and several pieces
    char c1[4096], c2[4096];
    shared_path(c1, sizeof c1, "canterbury-lcet10.txt");
    shared_path(c2, sizeof c2, "canterbury-plrabn12.txt");
    Bytes l1 = read_file(c1), l2 = read_file(c2);
    ByteBuf crlf = {0};
    for (int r = 0; r < 2; r++) {
        bb_put(&crlf, l1.p, l1.n);
        bb_put(&crlf, l2.p, l2.n);
        bb_put(&crlf, fa.p, fa.n);
    }
    const char *cpath = TMP "/text/crlf.txt", *out3 = TMP "/text/crlf";
    write_file(cpath, crlf.data, crlf.n);
    const char *args3[] = {"--task", "text", "--input", cpath, "--tokenizer", shared_gpt2, "--out", out3, "--val-fraction", "0", NULL};
    CHECK(prepare(args3) == 0, "prepare text gpt2 (CRLF) failed");
    exp.n = 0;
    tokenizer_encode(tok, crlf.data, crlf.n, &exp);
    if (tokenizer_eot(tok) >= 0) idbuf_push(&exp, tokenizer_eot(tok));
    ids = read_split(out3, "train", &n, &ns);
    CHECK(n == exp.n && !memcmp(ids, exp.ids, n * sizeof *ids), "gpt2 CRLF text shards differ from encoding the whole file (%llu vs %zu ids)",
          (unsigned long long)n, exp.n);
    free(ids);
    free(crlf.data);
    free(l1.p);
    free(l2.p);
    free(exp.ids);
    tokenizer_free(tok);
    free(fa.p);
    free(fb.p);
    free(ft.p);
}

// Articles of a WikiText file, split independently of prepare.c: a new one at each " = Title = " line.
static Docs wiki_articles(const char *path) {
    Bytes f = read_file(path);
    Docs d = {xcalloc(20000, sizeof(ByteBuf)), 0};
    size_t i = 0, start = 0;
    int seen = 0;
    while (i < f.n) {
        const uint8_t *nl = memchr(f.p + i, '\n', f.n - i);
        size_t end = nl ? (size_t)(nl - f.p) + 1 : f.n;
        if (end - i > 4 && !memcmp(f.p + i, " = ", 3) && f.p[i + 3] != '=') {
            if (seen) {
                bb_put(&d.docs[d.n++], f.p + start, i - start);
                start = i;
            }
            seen = 1;
        }
        i = end;
    }
    bb_put(&d.docs[d.n++], f.p + start, f.n - start);
    free(f.p);
    return d;
}

static void test_prepare_wiki(void) {
    char w[4096];
    shared_path(w, sizeof w, "wikitext-2.valid.tokens");
    Docs d = wiki_articles(w);
    CHECK(d.n == 60, "the test's own split found %zu articles", d.n);
    mkdir(TMP "/wiki", 0777);
    const char *out = TMP "/wiki/out";
    const char *args[] = {"--task", "wiki103", "--input", w, "--tokenizer", "byte", "--out", out, "--val-fraction", "0.3", NULL};
    CHECK(prepare(args) == 0, "prepare wiki103 failed");
    uint64_t ntr, nva;
    int a, b;
    int32_t *tr = read_split(out, "train", &ntr, &a), *va = read_split(out, "val", &nva, &b);
    check_split("wiki103", d, tr, ntr, va, nva, 1);
    free(tr);
    free(va);
    docs_free(d);
}

static void test_prepare_errors(void) {
    mkdir(TMP "/err", 0777);
    char msg[8192];
    // a malformed line: skipped and counted by default, fatal with --strict (naming file and line)
    const char *bad = TMP "/err/bad.jsonl";
    const char *lines = "{\"text\": \"one\\n\"}\n{\"text\": \"two\\n\"}\n{\"text\": \"thr\\ee\"}\n{\"text\": \"four\\n\"}\n"
                        "{\"text\": 5}\n{\"txt\": \"x\"}\n[\"text\"]\n{\"text\": \"x\"} extra\n{\"text\": \"\\ud83d\\ude00\\ud800!\"}\n"
                        "{\"text\": \"raw\ttab\"}\n{\"text\": \"cut short\n";
    write_file(bad, lines, strlen(lines));
    const char *skip_out = TMP "/err/skip";
    const char *args[] = {"--task", "pile", "--input", bad, "--tokenizer", "byte", "--out", skip_out, "--val-fraction", "0", NULL};
    CHECK(prepare(args) == 0, "prepare with malformed lines (not strict) failed");
    uint64_t n;
    int ns;
    int32_t *ids = read_split(skip_out, "train", &n, &ns);
    const char *want = "one\ntwo\nfour\n\xf0\x9f\x98\x80\xef\xbf\xbd!";
    int ok = n == strlen(want);
    for (size_t i = 0; ok && i < n; i++) ok = ids[i] == (uint8_t)want[i];
    CHECK(ok, "skipping malformed lines kept the wrong text (%llu tokens)", (unsigned long long)n);
    free(ids);
    const char *sargs[] = {"--task", "pile", "--input", bad, "--tokenizer", "byte", "--out", TMP "/err/strict", "--strict", NULL};
    expect_death("--strict malformed line", child_prepare, (void *)sargs, TMP "/err/bad.jsonl:3:", "invalid escape");
    CHECK(!dir_has(TMP "/err/strict", ".shard"), "a failed prepare left shards");

    // truncated and corrupted .zst inputs, after several shards were already finished: nothing is left
    // (four copies of the documents: more than the reader may run ahead of the writer, so shards are done)
    Docs d = pile_docs(1);
    Bytes z = jsonl_zst(d, NULL, 4);
    const char *trunc = TMP "/err/trunc.jsonl.zst", *tout = TMP "/err/trunc";
    write_file(trunc, z.p, z.n - 20);
    const char *targs[] = {"--task", "pile", "--input", trunc, "--tokenizer", "byte", "--out", tout, "--shard-tokens", "50000",
                           "--val-fraction", "0.2", NULL};
    expect_death("truncated .zst", child_prepare, (void *)targs, trunc, "truncated");
    CHECK(!dir_has(tout, ".shard") && !dir_has(tout, ".tmp") && !dir_has(tout, "meta"), "a failed prepare left files in %s", tout);
    const char *corr = TMP "/err/corr.jsonl.zst", *cout = TMP "/err/corr";
    z.p[z.n / 4] ^= 0x5A;
    z.p[z.n / 4 + 1] ^= 0xA5;
    write_file(corr, z.p, z.n);
    const char *cargs[] = {"--task", "pile", "--input", corr, "--tokenizer", "byte", "--out", cout, "--shard-tokens", "50000", NULL};
    expect_death("corrupted .zst", child_prepare, (void *)cargs, corr, NULL);
    CHECK(!dir_has(cout, ".shard") && !dir_has(cout, ".tmp"), "a failed prepare left files in %s", cout);
    free(z.p);
    docs_free(d);

    // an output directory holding shards already is refused
    const char *again[] = {"--task", "pile", "--input", bad, "--tokenizer", "byte", "--out", skip_out, NULL};
    expect_death("existing shards", child_prepare, (void *)again, skip_out, "already holds");
    const char *missing[] = {"--task", "text", "--input", TMP "/err/nope.txt", "--tokenizer", "byte", "--out", TMP "/err/x", NULL};
    expect_death("missing input", child_prepare, (void *)missing, "nope.txt", NULL);

    // usage errors: exit 2 with "hgrn2 prepare: <problem>" and the usage line
    const char *u1[] = {"--task", "pile", "--bogus", NULL};
    const char *u2[] = {"--task", "pile", "--input", bad, "--tokenizer", "byte", "--out", NULL};
    const char *u3[] = {"--task", "pile", "--input", bad, "--tokenizer", "byte", "--out", TMP "/err/u", "--val-fraction", "0.9", NULL};
    const char *u4[] = {"--input", bad, "--tokenizer", "byte", "--out", TMP "/err/u", NULL};
    const char *u5[] = {"--task", "pile", "stray.jsonl", "--input", bad, "--tokenizer", "byte", "--out", TMP "/err/u", NULL};
    const char *u6[] = {"--task", "csv", "--input", bad, "--tokenizer", "byte", "--out", TMP "/err/u", NULL};
    const char *u7[] = {"--task", "pile", "--input", bad, "--tokenizer", "byte", "--out", TMP "/err/u", "--threads", "0", NULL};
    const char **us[] = {u1, u2, u3, u4, u5, u6, u7};
    const char *frags[] = {"unknown option '--bogus'", "needs a value", "--val-fraction", "--task is required", "stray.jsonl",
                           "--task must be", "--threads"};
    for (int i = 0; i < 7; i++) {
        int rc = run_child(child_prepare, (void *)us[i], msg, sizeof msg);
        CHECK(rc == 2 && strstr(msg, "hgrn2 prepare: ") && strstr(msg, frags[i]) && strstr(msg, "usage: hgrn2 prepare"),
              "usage error %d: status %d, message: %s", i, rc, msg);
    }
    const char *help[] = {"--help", NULL};
    CHECK(run_child(child_prepare, (void *)help, msg, sizeof msg) == 0, "--help failed: %s", msg);
}

// ---- files that are not regular: refused at once, never waited on or read forever ----

// A regression here would block in open() or read without end: each child gets an alarm and a memory
// limit, so it fails the test instead of hanging the suite or eating the machine.
static void limit_child(void) {
    alarm(30);
    struct rlimit r = {4ull << 30, 4ull << 30};
    setrlimit(RLIMIT_AS, &r);
}
static void child_shard_open_limited(void *arg) {
    limit_child();
    shard_close(shard_open(arg));
}
static void child_loader_limited(void *arg) {
    limit_child();
    loader_close(loader_open(arg, "train", 1, 4, 1, 1));
}
static void child_prepare_limited(void *arg) {
    limit_child();
    exit(prepare(arg));
}

static void make_fifo(const char *path) {
    if (mkfifo(path, 0666) != 0) die("test: mkfifo %s failed: %s", path, strerror(errno));
}

static void test_not_regular(void) {
    mkdir(TMP "/fifo", 0777);
    const char *fifo = TMP "/fifo/pipe.shard";
    make_fifo(fifo);
    expect_death("shard_open of a FIFO", child_shard_open_limited, (void *)fifo, fifo, "is not a regular file");
    mkdir(TMP "/fifo/dir.shard", 0777);
    expect_death("shard_open of a directory", child_shard_open_limited, TMP "/fifo/dir.shard", "dir.shard", "is not a regular file");
    mkdir(TMP "/fifo/split", 0777);
    make_fifo(TMP "/fifo/split/train_000000.shard");
    expect_death("loader on a split whose shard is a FIFO", child_loader_limited, TMP "/fifo/split", "train_000000.shard",
                 "is not a regular file");

    // prepare inputs: a FIFO (standard input through a named pipe) and a device that never ends
    const char *a1[] = {"--task", "pile", "--input", fifo, "--tokenizer", "byte", "--out", TMP "/fifo/o1", NULL};
    expect_death("prepare from a FIFO", child_prepare_limited, (void *)a1, fifo, "is not a regular file");
    const char *a2[] = {"--task", "text", "--input", "/dev/zero", "--tokenizer", "byte", "--out", TMP "/fifo/o2", NULL};
    expect_death("prepare from /dev/zero", child_prepare_limited, (void *)a2, "/dev/zero", "is not a regular file");
    const char *a3[] = {"--task", "pile", "--val-input", "/dev/zero", "--input", TMP "/fifo/in.jsonl", "--tokenizer", "byte",
                        "--out", TMP "/fifo/o3", NULL};
    write_file(TMP "/fifo/in.jsonl", "{\"text\": \"a\"}\n", 14);
    expect_death("prepare --val-input /dev/zero", child_prepare_limited, (void *)a3, "/dev/zero", "is not a regular file");

    // outputs: a FIFO where prepare writes a shard's temporary file or its metadata
    const char *a4[] = {"--task", "pile", "--input", TMP "/fifo/in.jsonl", "--tokenizer", "byte", "--out", TMP "/fifo/o4", NULL};
    mkdir(TMP "/fifo/o4", 0777);
    make_fifo(TMP "/fifo/o4/train_000000.shard.part.tmp");
    expect_death("prepare writing a shard into a FIFO", child_prepare_limited, (void *)a4, "train_000000.shard.part.tmp",
                 "is not a regular file");
    const char *a5[] = {"--task", "pile", "--input", TMP "/fifo/in.jsonl", "--tokenizer", "byte", "--out", TMP "/fifo/o5", NULL};
    mkdir(TMP "/fifo/o5", 0777);
    make_fifo(TMP "/fifo/o5/meta.txt.tmp");
    expect_death("prepare writing meta.txt into a FIFO", child_prepare_limited, (void *)a5, "meta.txt.tmp", "is not a regular file");
    CHECK(!dir_has(TMP "/fifo/o5", ".shard"), "a failed prepare left shards");
    struct stat st;
    CHECK(lstat(TMP "/fifo/o5/meta.txt.tmp", &st) == 0 && S_ISFIFO(st.st_mode), "a failed prepare removed a FIFO it did not create");
}

// ---- long lines: memory stays bounded whatever the input, one endless line included ----

// A zstd file written as a stream, so that the test itself never holds a long line in memory.
typedef struct { FILE *f; ZSTD_CCtx *c; uint8_t out[1 << 16]; } ZWriter;
static void zw_open(ZWriter *z, const char *path) {
    z->f = fopen(path, "wb");
    z->c = ZSTD_createCCtx();
    if (!z->f || !z->c) die("test: cannot create %s", path);
    ZSTD_CCtx_setParameter(z->c, ZSTD_c_checksumFlag, 1);
}
static void zw_flush(ZWriter *z, const void *p, size_t n, ZSTD_EndDirective mode) {
    ZSTD_inBuffer in = {p, n, 0};
    for (;;) {
        ZSTD_outBuffer out = {z->out, sizeof z->out, 0};
        size_t r = ZSTD_compressStream2(z->c, &out, &in, mode);
        if (ZSTD_isError(r)) die("test: zstd: %s", ZSTD_getErrorName(r));
        if (out.pos && fwrite(z->out, 1, out.pos, z->f) != out.pos) die("test: write failed");
        if (mode == ZSTD_e_end ? r == 0 : in.pos == in.size) break;
    }
}
static void zw_puts(ZWriter *z, const char *s) { zw_flush(z, s, strlen(s), ZSTD_e_continue); }
static void zw_close(ZWriter *z) {
    zw_flush(z, NULL, 0, ZSTD_e_end);
    if (fclose(z->f) != 0) die("test: closing a zstd file failed");
    ZSTD_freeCCtx(z->c);
}

// The long lines repeat a sentence: byte i of a run of them is LONG_PAT[i % LONG_PAT_N].
static const char LONG_PAT[] = "the quick brown fox jumps over the lazy dog ";
#define LONG_PAT_N (sizeof LONG_PAT - 1)
static void zw_pattern(ZWriter *z, size_t n) {
    static char chunk[LONG_PAT_N * 1500];
    for (size_t i = 0; i < sizeof chunk; i++) chunk[i] = LONG_PAT[i % LONG_PAT_N];
    for (size_t done = 0; done < n;) {
        size_t k = n - done < sizeof chunk ? n - done : sizeof chunk;
        zw_flush(z, chunk, k, ZSTD_e_continue);
        done += k;
    }
}

// What a split must hold, byte-level tokenizer: literal pieces and runs of the pattern, in order.
typedef struct { const char *lit; size_t run; } Piece;
static int split_matches(const char *dir, const Piece *pieces, int npieces, uint64_t *ntokens) {
    size_t pi = 0, off = 0;   // the piece and the offset in it of the next expected byte
    int ok = 1;
    *ntokens = 0;
    int32_t *buf = xmalloc((1u << 20) * sizeof *buf);
    for (int i = 0; ok; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/train_%06d.shard", dir, i);
        if (access(path, F_OK) != 0) break;
        Shard *s = shard_open(path);
        uint64_t n = shard_ntokens(s);
        for (uint64_t pos = 0; ok && pos < n;) {
            size_t k = n - pos < (1u << 20) ? (size_t)(n - pos) : (1u << 20);
            shard_read(s, pos, k, buf);
            for (size_t j = 0; ok && j < k; j++) {
                while (pi < (size_t)npieces && off == (pieces[pi].lit ? strlen(pieces[pi].lit) : pieces[pi].run)) { pi++; off = 0; }
                ok = pi < (size_t)npieces && buf[j] == (uint8_t)(pieces[pi].lit ? pieces[pi].lit[off] : LONG_PAT[off % LONG_PAT_N]);
                off++;
            }
            pos += k;
            *ntokens += k;
        }
        shard_close(s);
    }
    free(buf);
    while (ok && pi < (size_t)npieces && off == (pieces[pi].lit ? strlen(pieces[pi].lit) : pieces[pi].run)) { pi++; off = 0; }
    return ok && pi == (size_t)npieces;
}

static long status_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, strlen(key))) v = strtol(line + strlen(key), NULL, 10);
    if (f) fclose(f);
    return v;
}

// prepare in a child with stdout (the summary) going to a file, followed by how much the peak resident
// memory grew while it ran: "peak growth N kB".
typedef struct { const char **args; const char *summary; } MemArgs;
static void child_prepare_mem(void *arg) {
    MemArgs *m = arg;
    limit_child();
    alarm(120);
    if (!freopen(m->summary, "w", stdout)) die("test: cannot write %s", m->summary);
    FILE *f = fopen("/proc/self/clear_refs", "w");   // resets the peak to the current size (Linux 4.0+)
    if (f) {
        fputs("5", f);
        fclose(f);
    }
    long base = status_kb("VmHWM:");
    int rc = prepare(m->args);
    printf("peak growth %ld kB\n", status_kb("VmHWM:") - base);
    fflush(stdout);
    exit(rc);
}

// Runs prepare that way; returns the growth in MiB (-1 if unknown) and the summary in sum.
static double prepare_mem(const char *what, const char **args, const char *summary, char *sum, size_t cap) {
    char msg[8192];
    MemArgs m = {args, summary};
    int rc = run_child(child_prepare_mem, &m, msg, sizeof msg);
    CHECK(rc == 0, "%s: prepare failed (status %d): %s", what, rc, msg);
    sum[0] = 0;
    FILE *f = fopen(summary, "r");
    size_t n = f ? fread(sum, 1, cap - 1, f) : 0;
    sum[n] = 0;
    if (f) fclose(f);
    const char *g = strstr(sum, "peak growth ");
    return g ? (double)strtol(g + 12, NULL, 10) / 1024 : -1;
}

static void test_long_lines(void) {
    mkdir(TMP "/long", 0777);
    char sum[8192], msg[8192];
    // JSON Lines: one 40 MB line, and lines of exactly the limit and one byte more. Each line is
    // {"text": "<run>"}: 12 bytes around the run.
    const size_t max = 1048576, big = 40u << 20;
    const char *zpath = TMP "/long/big.jsonl.zst";
    ZWriter z;
    zw_open(&z, zpath);
    zw_puts(&z, "{\"text\": \"before\\n\"}\n{\"text\": \"");
    zw_pattern(&z, big);
    zw_puts(&z, "\"}\n{\"text\": \"");
    zw_pattern(&z, max - 12);
    zw_puts(&z, "\"}\n{\"text\": \"");
    zw_pattern(&z, max - 11);
    zw_puts(&z, "\"}\n{\"text\": \"after\\n\"}");   // the last line without its newline
    zw_close(&z);
    const char *out = TMP "/long/json";
    const char *args[] = {"--task", "pile", "--input", zpath, "--tokenizer", "byte", "--out", out, "--val-fraction", "0",
                          "--threads", "2", "--max-line-bytes", "1048576", NULL};
    double grew = prepare_mem("one 40 MB JSON line", args, TMP "/long/json.txt", sum, sizeof sum);
    CHECK(grew >= 0 && grew < 12, "one 40 MB JSON line: peak memory grew by %.1f MiB (a bounded reader needs a few)", grew);
    CHECK(strstr(sum, "3 documents") && strstr(sum, "2 lines longer than 1048576 bytes skipped"),
          "one 40 MB JSON line: the summary does not count 2 long lines and 3 documents: %s", sum);
    Piece want[] = {{"before\n", 0}, {NULL, max - 12}, {"after\n", 0}};
    uint64_t n;
    CHECK(split_matches(out, want, 3, &n), "one 40 MB JSON line: the shards do not hold the other lines' text (%llu tokens)",
          (unsigned long long)n);
    // --strict: fatal at once, naming the file and the line
    const char *sargs[] = {"--task", "pile", "--input", zpath, "--tokenizer", "byte", "--out", TMP "/long/strict",
                           "--max-line-bytes", "1048576", "--strict", NULL};
    expect_death("a long JSON line with --strict", child_prepare_limited, (void *)sargs, TMP "/long/big.jsonl.zst:2:",
                 "--max-line-bytes");
    // out of range
    const char *u1[] = {"--task", "pile", "--input", zpath, "--tokenizer", "byte", "--out", TMP "/long/u", "--max-line-bytes",
                        "1023", NULL};
    int rc = run_child(child_prepare, (void *)u1, msg, sizeof msg);
    CHECK(rc == 2 && strstr(msg, "--max-line-bytes") && strstr(msg, "usage: hgrn2 prepare"), "--max-line-bytes 1023: status %d: %s", rc, msg);

    // WikiText and plain text: a 200 MB line is tokenized whole, in bounded memory (one tokenizer thread: 6
    // jobs of about 1 MiB of text and 4 MiB of ids; the old line reader held the whole line)
    const size_t huge = 200u << 20;
    const char *wpath = TMP "/long/wiki.tokens.zst";
    zw_open(&z, wpath);
    zw_puts(&z, " = Title = \n\n");
    zw_pattern(&z, huge);
    zw_puts(&z, "\n = Next = \n text\n");
    zw_close(&z);
    Piece wwant[] = {{" = Title = \n\n", 0}, {NULL, huge}, {"\n = Next = \n text\n", 0}};
    const char *wout = TMP "/long/wiki";
    const char *wargs[] = {"--task", "wiki103", "--input", wpath, "--tokenizer", "byte", "--out", wout, "--val-fraction", "0",
                           "--threads", "1", "--max-line-bytes", "1048576", NULL};
    grew = prepare_mem("one 200 MB WikiText line", wargs, TMP "/long/wiki.txt", sum, sizeof sum);
    CHECK(grew >= 0 && grew < 100, "one 200 MB WikiText line: peak memory grew by %.1f MiB", grew);
    CHECK(strstr(sum, "2 documents"), "one 200 MB WikiText line: not 2 articles: %s", sum);
    CHECK(split_matches(wout, wwant, 3, &n), "one 200 MB WikiText line: the shards are not the file's bytes (%llu tokens)",
          (unsigned long long)n);
    rmrf(wout);
    const char *tout = TMP "/long/text";
    const char *targs[] = {"--task", "text", "--input", wpath, "--tokenizer", "byte", "--out", tout, "--val-fraction", "0",
                           "--threads", "1", NULL};
    grew = prepare_mem("one 200 MB text line", targs, TMP "/long/text.txt", sum, sizeof sum);
    CHECK(grew >= 0 && grew < 100, "one 200 MB text line: peak memory grew by %.1f MiB", grew);
    CHECK(split_matches(tout, wwant, 3, &n), "one 200 MB text line: the shards are not the file's bytes (%llu tokens)",
          (unsigned long long)n);
    rmrf(tout);
}

// ---- prepare_scan_jsonl: the reader and scanner of prepare, against counts known by construction ----

static void test_scan_jsonl(void) {
    PrepareScanCounts c;
    const char *fixed = "{\"text\": \"ab\"}\n\n  \r\n{\"text\": 1}\n{\"a\": [1, {\"text\": \"x\"}], \"text\": \"\\u00e9\"}\r\n"
                        "{\"text\": \"0123456789012345678901234567890123456789012345678901234567890123456789\"}\n"
                        "{\"text\": \"no end\"}";
    prepare_scan_jsonl(fixed, strlen(fixed), 64, &c);
    CHECK(c.lines == 7 && c.records == 3 && c.blank == 2 && c.malformed == 1 && c.too_long == 1 && c.text_bytes == 2 + 2 + 6,
          "scan of the fixed input: %llu lines, %llu records, %llu blank, %llu malformed, %llu too long, %llu text bytes",
          (unsigned long long)c.lines, (unsigned long long)c.records, (unsigned long long)c.blank,
          (unsigned long long)c.malformed, (unsigned long long)c.too_long, (unsigned long long)c.text_bytes);
    prepare_scan_jsonl(NULL, 0, 0, &c);
    CHECK(c.lines == 0 && c.records == 0, "scan of nothing: %llu lines", (unsigned long long)c.lines);

    // Random mixes of records, malformed and blank lines whose lengths straddle the limit, the slices the
    // reader is served and its first buffer (1 MiB): what each line becomes is known as it is made.
    ByteBuf in = {0};
    char summary[8192];
    for (int round = 0; round < 40; round++) {
        size_t max = round < 30 ? 1 + rng() % 300 : round < 38 ? 1024 + rng() % 8192 : 1048576;
        PrepareScanCounts want = {0};
        in.n = 0;
        int nlines = round < 38 ? 1 + (int)(rng() % 200) : 12;
        for (int i = 0; i < nlines; i++) {
            // a record, a malformed line or a blank one, of any length, near the limit or short
            int kind = (int)(rng() % 3), how = (int)(rng() % 3);
            size_t around = kind == 0 ? 12 : kind == 1 ? 23 : 0, k;
            if (how == 0) k = rng() % (3 * max + 10);
            else if (how == 1) k = (max > around ? max - around : 0) + rng() % 3;
            else k = rng() % 64;
            if (k && rng() % 2) k--;
            size_t start = in.n;
            if (kind == 0) bb_puts(&in, "{\"text\": \"");
            if (kind == 1) bb_puts(&in, "{\"text\": \"unterminated ");
            for (size_t j = 0; j < k; j++) bb_put(&in, kind == 2 ? " " : &"abcdefgh"[j % 8], 1);
            if (kind == 0) bb_puts(&in, "\"}");
            size_t body = in.n - start;
            int crlf = rng() % 5 == 0;
            if (crlf) bb_puts(&in, "\r");
            body += (size_t)crlf;
            if (i + 1 < nlines || rng() % 2) bb_puts(&in, "\n");
            want.lines++;
            if (body > max) want.too_long++;
            else if (kind == 0) { want.records++; want.text_bytes += k; }
            else if (kind == 1) want.malformed++;
            else want.blank++;
        }
        prepare_scan_jsonl(in.data, in.n, max, &c);
        CHECK(!memcmp(&c, &want, sizeof c),
              "scan round %d (max %zu, %zu bytes): lines %llu/%llu records %llu/%llu blank %llu/%llu malformed %llu/%llu "
              "too long %llu/%llu text %llu/%llu", round, max, in.n, (unsigned long long)c.lines, (unsigned long long)want.lines,
              (unsigned long long)c.records, (unsigned long long)want.records, (unsigned long long)c.blank,
              (unsigned long long)want.blank, (unsigned long long)c.malformed, (unsigned long long)want.malformed,
              (unsigned long long)c.too_long, (unsigned long long)want.too_long, (unsigned long long)c.text_bytes,
              (unsigned long long)want.text_bytes);
        // and prepare itself, on the same bytes in a file, reports the same counts
        if (round == 30 || round == 39) {
            char path[256], out[256], sumpath[256], expect[200];
            snprintf(path, sizeof path, TMP "/scan%d.jsonl", round);
            snprintf(out, sizeof out, TMP "/scan%d", round);
            snprintf(sumpath, sizeof sumpath, TMP "/scan%d.txt", round);
            char maxs[32];
            snprintf(maxs, sizeof maxs, "%zu", max);
            write_file(path, in.data, in.n);
            const char *args[] = {"--task", "pile", "--input", path, "--tokenizer", "byte", "--out", out, "--val-fraction", "0",
                                  "--max-line-bytes", maxs, NULL};
            prepare_mem("prepare on a scanned input", args, sumpath, summary, sizeof summary);
            snprintf(expect, sizeof expect, "%llu malformed line%s skipped; ", (unsigned long long)want.malformed,
                     want.malformed == 1 ? "" : "s");
            CHECK(strstr(summary, expect), "prepare's summary lacks \"%s\": %s", expect, summary);
            snprintf(expect, sizeof expect, "%llu line%s longer than %zu bytes skipped", (unsigned long long)want.too_long,
                     want.too_long == 1 ? "" : "s", max);
            CHECK(!want.too_long || strstr(summary, expect), "prepare's summary lacks \"%s\": %s", expect, summary);
        }
    }
    free(in.data);
}

int main(void) {
    const char *sh = getenv("HGRN2_SHARED");
    if (!sh) sh = "../shared";
    snprintf(shared_text, sizeof shared_text, "%s/data/text", sh);
    snprintf(shared_gpt2, sizeof shared_gpt2, "%s/data/tokenizers/gpt2", sh);
    if (access(shared_text, R_OK) != 0) die("test: %s not found (run from the repository root or set HGRN2_SHARED)", shared_text);
    rmrf(TMP);
    mkdir("tests/tmp", 0777);
    if (mkdir(TMP, 0777) != 0) die("test: cannot create " TMP);

    test_header_encoding();
    test_roundtrip(1000);
    test_roundtrip(100000);
    test_big_ntokens();
    test_corruption();
    test_loader();
    test_prepare_pile();
    test_prepare_text();
    test_prepare_wiki();
    test_prepare_errors();
    test_not_regular();
    test_long_lines();
    test_scan_jsonl();
    if (failures) {
        fprintf(stderr, "test_data: %d check%s failed\n", failures, failures == 1 ? "" : "s");
        return 1;
    }
    printf("test_data: all checks passed\n");
    return 0;
}
