// test_data.c: shards (round trip, 64-bit layout, every corruption, files that are not regular) and the
// loader (determinism, resume, sequential completeness). `hgrn2 prepare` has its own program, test_prepare.c.
// Run from the repository root; writes under tests/tmp, needs no shared data. Exits 1 on any failure.
// SHOWMSG=1 prints the message of every refusal.
#define _GNU_SOURCE
#include <sys/stat.h>
#include <zstd.h>

#include "../data.h"
#include "check.h"
#include "child.h"
#include "files.h"

#define TMP "tests/tmp/test_data"

// Every failure runs in a child (tests/child.h): it must exit cleanly with a message within 30 s and 4 GiB
// more address space; a reader that blocks on a FIFO or reads a device forever fails instead of hanging.
static const ChildSpec capped = {.cap_mib = 4096, .alarm_s = 30, .err_path = TMP "/child.err"};

static uint64_t rng_state = 0x1234567;
static uint64_t rng(void) { return splitmix64(&rng_state); }

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
static void child_open_read(const void *arg) {
    const ReadArgs *a = arg;
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

// Rewrites a shard's header fields and recomputes its checksum, so only the intended defect remains.
static void reseal(const char *path, void (*edit)(ShardHeader *h, uint8_t *index)) {
    Bytes b = read_bytes(path);
    ShardHeader h;
    char err[400];
    if (shard_header_decode(b.p, b.n, &h, err, sizeof err)) die("test: reseal: %s", err);
    uint8_t *index = b.p + h.index_offset;
    edit(&h, index);
    shard_header_encode(&h, b.p);
    h.meta_hash = shard_meta_hash(b.p, (const char *)b.p + SHARD_HEADER_BYTES, h.name_len, index, h.nframes);
    shard_header_encode(&h, b.p);
    spit(path, b.p, b.n);
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
static void child_write_bad(const void *arg) {
    const WriteArgs *a = arg;
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
    Bytes g = read_bytes(good);
    ShardHeader h;
    char err[400];
    CHECK(shard_header_decode(g.p, g.n, &h, err, sizeof err) == 0, "good shard: %s", err);
    ReadArgs all = {bad, 0, n};
    uint64_t off3, cs3;
    shard_index_decode(g.p + h.index_offset + 3 * SHARD_INDEX_ENTRY_BYTES, &off3, &cs3);

    spit(bad, g.p, 10);
    expect_death(&capped, "truncated header", child_open_read, &all, bad, "truncated header");
    copy_file(good, bad);
    patch(bad, 0, "HGRN2XXX", 8);
    expect_death(&capped, "bad magic", child_open_read, &all, bad, "bad magic");
    copy_file(good, bad);
    patch(bad, 8, "\x02\x00\x00\x00", 4);
    expect_death(&capped, "wrong version", child_open_read, &all, bad, "expected 1, found 2");
    spit(bad, g.p, off3 + cs3 / 2);
    expect_death(&capped, "truncated in a frame", child_open_read, &all, bad, "truncated");
    spit(bad, g.p, g.n - 1);
    expect_death(&capped, "truncated index", child_open_read, &all, bad, "truncated");
    copy_file(good, bad);
    uint8_t flip = g.p[off3 + cs3 / 2] ^ 0x55;
    patch(bad, off3 + cs3 / 2, &flip, 1);
    ReadArgs f3 = {bad, 3 * 1000 + 10, 5};
    expect_death(&capped, "flipped byte in a frame", child_open_read, &f3, bad, "frame 3");
    // the frames before the damaged one still read
    ReadArgs f0 = {bad, 0, 3000};
    char msg[4096];
    CHECK(child_status(&capped, child_open_read, &f0, msg, sizeof msg) == 0, "reading undamaged frames failed: %s", msg);
    copy_file(good, bad);
    flip = g.p[SHARD_HEADER_BYTES + 1] ^ 1;   // inside the tokenizer name
    patch(bad, SHARD_HEADER_BYTES + 1, &flip, 1);
    expect_death(&capped, "flipped byte in the header", child_open_read, &all, bad, "checksum");
    copy_file(good, bad);
    reseal(bad, edit_past_eof);
    expect_death(&capped, "index past EOF", child_open_read, &all, bad, "past");
    copy_file(good, bad);
    reseal(bad, edit_vocab);
    expect_death(&capped, "token >= vocab", child_open_read, &all, bad, "not below the vocabulary size 100");
    ReadArgs past = {good, n - 5, 10};
    expect_death(&capped, "read past the end", child_open_read, &past, good, "past the end");
    WriteArgs wa = {TMP "/w.shard", 1000, 1000};
    expect_death(&capped, "writer: id >= vocab", child_write_bad, &wa, TMP "/w.shard", "outside the vocabulary");
    wa.id = -1;
    expect_death(&capped, "writer: negative id", child_write_bad, &wa, TMP "/w.shard", "outside the vocabulary");
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
static void child_loader(const void *arg) {
    const LoaderArgs *a = arg;
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
    expect_death(&capped, "gap in shard numbers", child_loader, &la, "train_000002.shard", "gaps");
    la.dir = TMP "/nonexistent";
    expect_death(&capped, "no shards", child_loader, &la, "nonexistent", "no train shards");
    free(pos_of);
    free(ba);
    free(bb);
}

// ---- files that are not regular: refused at once, never waited on or read forever ----

static void child_shard_open(const void *path) { shard_close(shard_open(path)); }

static void test_not_regular(void) {
    mkdir(TMP "/fifo", 0777);
    const char *fifo = TMP "/fifo/pipe.shard";
    make_fifo(fifo);
    expect_death(&capped, "shard_open of a FIFO", child_shard_open, fifo, fifo, "is not a regular file");
    mkdir(TMP "/fifo/dir.shard", 0777);
    expect_death(&capped, "shard_open of a directory", child_shard_open, TMP "/fifo/dir.shard", "dir.shard", "is not a regular file");
    mkdir(TMP "/fifo/split", 0777);
    make_fifo(TMP "/fifo/split/train_000000.shard");
    LoaderArgs la = {TMP "/fifo/split", "train"};
    expect_death(&capped, "loader on a split whose shard is a FIFO", child_loader, &la, "train_000000.shard", "is not a regular file");
}

int main(void) {
    rmrf(TMP);
    mkdir("tests/tmp", 0777);
    if (mkdir(TMP, 0777) != 0) die("test: cannot create " TMP);

    test_header_encoding();
    test_roundtrip(1000);
    test_roundtrip(100000);
    test_big_ntokens();
    test_corruption();
    test_loader();
    test_not_regular();
    return check_summary("test_data");
}
