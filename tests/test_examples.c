// test_examples.c: example files (round trips of one- and two-document examples at both token widths, the
// header's 64-bit fields, every corruption refused with a clear message and without a large allocation) and
// the batch loader (shuffled epochs cover every example once, resuming repeats batches exactly, sequential
// mode with a partial last batch). Run from the repository root; writes under tests/tmp. Exits 1 on a failure.
// SHOWMSG=1 prints the message of every refusal.
#define _GNU_SOURCE
#include <sys/stat.h>

#include "../data.h"
#include "../examples.h"
#include "check.h"
#include "child.h"
#include "files.h"

#define TMP "tests/tmp/test_examples"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng(void) { return splitmix64(&rng_state); }

// ---- children (tests/child.h): a failure must be a clean exit with a message, never a crash, a hang or a
// huge allocation; each gets 20 s and 1 GiB more address space ----

static const ChildSpec capped = {.cap_mib = 1024, .alarm_s = 20, .err_path = TMP "/child.err"};

// A reference set of examples, kept in memory to compare with what the reader returns.
typedef struct {
    int ndoc;
    uint64_t n;
    int32_t *labels;
    uint32_t *lens;    // [n][ndoc]
    int32_t **docs;    // [n][ndoc]
} Ref;

// n examples of ndoc documents of 1 to max_len tokens: document d of example i starts with i and d (below
// the vocabulary), so that a test can tell which example a loader row holds.
static Ref make_ref(uint64_t n, int ndoc, uint32_t max_len, uint32_t vocab, uint32_t classes) {
    Ref r = {.ndoc = ndoc, .n = n};
    r.labels = xmalloc(n * sizeof *r.labels);
    r.lens = xmalloc(n * (size_t)ndoc * sizeof *r.lens);
    r.docs = xmalloc(n * (size_t)ndoc * sizeof *r.docs);
    for (uint64_t i = 0; i < n; i++) {
        r.labels[i] = (int32_t)(rng() % classes);
        for (int d = 0; d < ndoc; d++) {
            uint32_t len = 1 + (uint32_t)(rng() % max_len);
            if (i == 3) len = max_len;   // the longest is reached
            int32_t *doc = xmalloc(len * sizeof *doc);
            for (uint32_t t = 0; t < len; t++) doc[t] = (int32_t)(rng() % vocab);
            doc[0] = (int32_t)(i % vocab);
            if (len > 1) doc[1] = d;
            r.lens[i * (size_t)ndoc + (size_t)d] = len;
            r.docs[i * (size_t)ndoc + (size_t)d] = doc;
        }
    }
    return r;
}
static void free_ref(Ref *r) {
    for (uint64_t i = 0; i < r->n * (uint64_t)r->ndoc; i++) free(r->docs[i]);
    free(r->labels);
    free(r->lens);
    free(r->docs);
}

static void write_ref(const char *path, const Ref *r, uint32_t vocab, uint32_t pad, uint32_t classes, const char *desc) {
    ExampleSpec spec = {.vocab_size = vocab, .pad_id = pad, .nclasses = classes, .ndoc = r->ndoc, .desc = desc};
    ExampleWriter *w = example_writer_open(path, &spec);
    for (uint64_t i = 0; i < r->n; i++)
        example_writer_add(w, r->labels[i], (const int32_t *const *)&r->docs[i * (size_t)r->ndoc], &r->lens[i * (size_t)r->ndoc]);
    CHECK(example_writer_count(w) == r->n, "writer count %llu, expected %llu", (unsigned long long)example_writer_count(w),
          (unsigned long long)r->n);
    example_writer_close(w);
}

// Whether a row (tokens[ndoc][T], lens, label) is example i of r truncated to T.
static int row_is(const Ref *r, uint64_t i, int T, const int32_t *tok, const int32_t *lens, int32_t label, uint32_t pad) {
    if (i >= r->n || label != r->labels[i]) return 0;
    for (int d = 0; d < r->ndoc; d++) {
        uint32_t len = r->lens[i * (size_t)r->ndoc + (size_t)d];
        uint32_t keep = len < (uint32_t)T ? len : (uint32_t)T;
        if (lens[d] != (int32_t)keep) return 0;
        const int32_t *want = r->docs[i * (size_t)r->ndoc + (size_t)d], *got = tok + (size_t)d * (size_t)T;
        for (int t = 0; t < T; t++)
            if (got[t] != ((uint32_t)t < keep ? want[t] : (int32_t)pad)) return 0;
    }
    return 1;
}

// ---- the format ----

static void test_header(void) {
    ExamplesHeader h = {.version = EXAMPLES_VERSION, .token_bytes = 4, .vocab_size = 100000, .pad_id = 99999, .nclasses = 10,
                        .ndoc = 2, .max_len = 4000, .desc_len = 7, .nexamples = 5000000000ull, .checksum = 0x0123456789ABCDEFull};
    h.ntokens = h.nexamples * 2 * 1000;
    h.nframes = h.nexamples / 1000;
    h.index_offset = 7000000000000ull;
    uint64_t size = h.index_offset + h.nframes * EXAMPLES_INDEX_ENTRY_BYTES;
    uint8_t buf[EXAMPLES_HEADER_BYTES];
    examples_header_encode(&h, buf);
    CHECK(!memcmp(buf, "HGRN2EXS", 8), "magic not at the start");
    ExamplesHeader d;
    char err[400];
    CHECK(examples_header_decode(buf, size, &d, err, sizeof err) == 0, "a large header was refused: %s", err);
    CHECK(d.nexamples == h.nexamples && d.ntokens == h.ntokens && d.nframes == h.nframes && d.index_offset == h.index_offset &&
              d.checksum == h.checksum && d.max_len == 4000 && d.ndoc == 2 && d.pad_id == 99999 && d.desc_len == 7,
          "64-bit header fields did not round-trip");
    CHECK(examples_header_decode(buf, size - 1, &d, err, sizeof err) != 0 && strstr(err, "truncated"),
          "a file one byte short was accepted (%s)", err);
    // each field out of its range, one at a time
    struct { const char *what, *frag; void (*edit)(ExamplesHeader *); } cases[] = {
        {"pad id", "pad id", NULL}, {"classes", "classes", NULL}, {"documents", "documents per example", NULL},
        {"u16 width", "token width", NULL}, {"description", "description", NULL}, {"tokens", "tokens in", NULL},
        {"examples per frame", "examples in", NULL}, {"longest", "longest document", NULL},
    };
    for (int c = 0; c < 8; c++) {
        ExamplesHeader x = h;
        switch (c) {
        case 0: x.pad_id = x.vocab_size; break;
        case 1: x.nclasses = 0; break;
        case 2: x.ndoc = 3; break;
        case 3: x.token_bytes = 2; break;
        case 4: x.desc_len = EXAMPLES_DESC_MAX + 1; break;
        case 5: x.ntokens = x.nexamples * 2 * 4000 + 1; break;
        case 6: x.nexamples = x.nframes * EXAMPLES_FRAME_EXAMPLES_MAX + 1; x.ntokens = x.nexamples * 2; break;
        case 7: x.max_len = EXAMPLES_LEN_MAX + 1; break;
        }
        examples_header_encode(&x, buf);
        CHECK(examples_header_decode(buf, size, &d, err, sizeof err) != 0 && strstr(err, cases[c].frag),
              "header with a bad %s: %s", cases[c].what, err);
    }
}

static void test_roundtrip(int ndoc, uint32_t vocab, uint64_t n, uint32_t max_len) {
    char path[256];
    snprintf(path, sizeof path, TMP "/rt_%d_%u.examples", ndoc, vocab);
    Ref r = make_ref(n, ndoc, max_len, vocab, 7);
    write_ref(path, &r, vocab, vocab - 1, 7, "symbols\n<pad>\na\nb");
    Examples *e = example_open_file(path);
    uint64_t ntok = 0;
    for (uint64_t i = 0; i < n * (uint64_t)ndoc; i++) ntok += r.lens[i];
    CHECK(example_count(e) == n && example_ndoc(e) == ndoc && example_vocab(e) == vocab && example_classes(e) == 7 &&
              example_max_len(e) == max_len && example_pad(e) == vocab - 1 && example_ntokens(e) == ntok,
          "round trip %d/%u: counts", ndoc, vocab);
    CHECK(!strcmp(example_vocab_desc(e), "symbols\n<pad>\na\nb"), "round trip: description %s", example_vocab_desc(e));
    int Ts[] = {(int)max_len, (int)max_len + 5, 3, 1};
    for (int k = 0; k < 4; k++) {
        int T = Ts[k];
        int32_t *tok = xmalloc((size_t)ndoc * (size_t)T * sizeof *tok), lens[2];
        int bad = 0;
        // in order, then in a scattered order (frames reloaded)
        for (uint64_t j = 0; j < 2 * n; j++) {
            uint64_t i = j < n ? j : (j * 7919) % n;
            int32_t label = example_read(e, i, T, tok, lens);
            if (!row_is(&r, i, T, tok, lens, label, vocab - 1)) bad++;
        }
        CHECK(!bad, "round trip %d/%u, T %d: %d examples differ", ndoc, vocab, T, bad);
        free(tok);
    }
    example_close(e);
    free_ref(&r);
}

// ---- corruption: each case dies in a child with a message naming the file ----

static const char *good_path = TMP "/good.examples", *bad_path = TMP "/bad.examples";
static Bytes good;
static uint64_t good_n;

static void child_read_all(const void *arg) {
    Examples *e = example_open_file(arg);
    int32_t tok[2 * 64], lens[2];
    for (uint64_t i = 0; i < example_count(e); i++) example_read(e, i, 64, tok, lens);
    example_close(e);
}

static void put_bad(const Bytes *b) { spit(bad_path, b->p, b->n); }

// The good file with header fields changed and the checksum recomputed, so that only the intended defect
// remains (a checksum mismatch would hide it).
static void reseal(void (*edit)(ExamplesHeader *h)) {
    ExamplesHeader h;
    char err[400];
    if (examples_header_decode(good.p, good.n, &h, err, sizeof err) != 0) die("test: %s", err);
    edit(&h);
    uint8_t hdr[EXAMPLES_HEADER_BYTES];
    examples_header_encode(&h, hdr);
    // over the description and index the edited header names, where they lie inside the file
    if (EXAMPLES_HEADER_BYTES + (uint64_t)h.desc_len <= h.index_offset && h.nframes <= good.n / EXAMPLES_INDEX_ENTRY_BYTES &&
        h.index_offset + h.nframes * EXAMPLES_INDEX_ENTRY_BYTES == good.n)
        h.checksum = examples_checksum(hdr, (const char *)good.p + EXAMPLES_HEADER_BYTES, h.desc_len, good.p + h.index_offset,
                                       h.nframes);
    examples_header_encode(&h, hdr);
    Bytes b = {xmalloc(good.n), good.n};
    memcpy(b.p, good.p, good.n);
    memcpy(b.p, hdr, sizeof hdr);
    put_bad(&b);
    free(b.p);
}
static void edit_vocab(ExamplesHeader *h) { h->vocab_size = 5; h->pad_id = 0; }
static void edit_classes(ExamplesHeader *h) { h->nclasses = 1; }
static void edit_max_len(ExamplesHeader *h) { h->max_len = 2; h->ntokens = h->nexamples; }
static void edit_huge_desc(ExamplesHeader *h) { h->desc_len = EXAMPLES_DESC_MAX; }
static void edit_huge_frames(ExamplesHeader *h) { h->nframes = 1ull << 40; }
static void edit_huge_examples(ExamplesHeader *h) { h->nexamples = 1ull << 60; h->ntokens = 1ull << 61; }
static void edit_index_offset(ExamplesHeader *h) { h->index_offset -= EXAMPLES_INDEX_ENTRY_BYTES; h->nframes += 1; }

static void test_corruption(void) {
    good_n = 3000;
    Ref r = make_ref(good_n, 1, 60, 300, 4);
    write_ref(good_path, &r, 300, 0, 4, "a vocabulary");
    free_ref(&r);
    good = read_bytes(good_path);
    ExamplesHeader h;
    char err[400], msg[8192];
    CHECK(examples_header_decode(good.p, good.n, &h, err, sizeof err) == 0 && h.nframes >= 4, "good file: %s (%llu frames)", err,
          (unsigned long long)h.nframes);
    CHECK(child_status(&capped, child_read_all, good_path, msg, sizeof msg) == 0, "the good file does not read: %s", msg);
    uint64_t off2 = le_get_u64(good.p + h.index_offset + 2 * EXAMPLES_INDEX_ENTRY_BYTES);
    uint64_t cs2 = le_get_u64(good.p + h.index_offset + 2 * EXAMPLES_INDEX_ENTRY_BYTES + 8);

    struct { size_t n; const char *what, *frag; } cuts[] = {
        {40, "truncated header", "truncated header"},
        {(size_t)(off2 + cs2 / 2), "truncated in a frame", "truncated"},
        {good.n - 1, "truncated index", "truncated"},
    };
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
        spit(bad_path, good.p, cuts[k].n);
        expect_death(&capped, cuts[k].what, child_read_all, bad_path, bad_path, cuts[k].frag);
    }
    Bytes b = good;
    b.p = xmalloc(good.n);
    struct { size_t at; const char *frag; } flips[] = {
        {0, "bad magic"}, {8, "expected 1, found"}, {20, "checksum"}, {40, "checksum"}, {EXAMPLES_HEADER_BYTES + 2, "checksum"},
        {(size_t)h.index_offset + 2 * EXAMPLES_INDEX_ENTRY_BYTES + 17, "checksum"}, {80, "reserved"},
    };
    for (size_t k = 0; k < sizeof flips / sizeof flips[0]; k++) {
        memcpy(b.p, good.p, good.n);
        b.p[flips[k].at] ^= 0x10;
        put_bad(&b);
        char what[64];
        snprintf(what, sizeof what, "bit flipped at byte %zu", flips[k].at);
        expect_death(&capped, what, child_read_all, bad_path, bad_path, flips[k].frag);
    }
    // a flipped bit inside frame 2: found when that frame is read, naming it
    memcpy(b.p, good.p, good.n);
    b.p[off2 + cs2 / 2] ^= 0x04;
    put_bad(&b);
    expect_death(&capped, "bit flipped in a frame", child_read_all, bad_path, bad_path, "frame 2");
    free(b.p);
    // consistent headers (checksum recomputed) that the data contradicts; then sizes that would allocate
    // without bound, refused before any allocation (the child runs under a 1 GiB cap)
    struct { void (*edit)(ExamplesHeader *h); const char *what, *frag; } edits[] = {
        {edit_vocab, "token id >= vocabulary", "not below the vocabulary size 5"},
        {edit_classes, "label >= classes", "not below the 1 classes"},
        {edit_max_len, "documents longer than the header's longest", "frame 0"},
        {edit_index_offset, "index moved into the frames", "frame"},
        {edit_huge_desc, "description of 16 MiB in a small file", "description of 16777216 bytes runs past"},
        {edit_huge_frames, "2^40 frames", "truncated or corrupted"},
        {edit_huge_examples, "2^60 examples", "corrupted header"},
    };
    for (size_t k = 0; k < sizeof edits / sizeof edits[0]; k++) {
        reseal(edits[k].edit);
        expect_death(&capped, edits[k].what, child_read_all, bad_path, bad_path, edits[k].frag);
    }
    // what is not a regular file, or not there
    const char *fifo = TMP "/fifo.examples";
    unlink(fifo);
    make_fifo(fifo);
    expect_death(&capped, "a FIFO", child_read_all, fifo, fifo, "not a regular file");
    expect_death(&capped, "a directory", child_read_all, TMP, TMP, "not a regular file");
    expect_death(&capped, "a missing file", child_read_all, TMP "/none.examples", "none.examples", "No such file");
    expect_death(&capped, "/dev/zero", child_read_all, "/dev/zero", "/dev/zero", "not a regular file");
    free(good.p);
}

// The writer refuses what the format cannot hold, leaving no file behind.
typedef struct { int32_t label; uint32_t len; int32_t id; } BadAdd;
static void child_bad_add(const void *arg) {
    const BadAdd *a = arg;
    ExampleSpec spec = {.vocab_size = 50, .pad_id = 0, .nclasses = 3, .ndoc = 1, .desc = "v"};
    ExampleWriter *w = example_writer_open(TMP "/w.examples", &spec);
    int32_t doc[4] = {1, 2, a->id, 3};
    const int32_t *docs[1] = {doc};
    example_writer_add(w, a->label, docs, &a->len);
    example_writer_close(w);
}

static void test_writer_errors(void) {
    BadAdd label = {3, 4, 5}, empty = {0, 0, 5}, id = {0, 4, 50}, neg = {0, 4, -1};
    expect_death(&capped, "label out of range", child_bad_add, &label, "w.examples", "label 3 is outside [0, 3)");
    expect_death(&capped, "empty document", child_bad_add, &empty, "w.examples", "document 0 of 0 tokens");
    expect_death(&capped, "id out of range", child_bad_add, &id, "w.examples", "outside the vocabulary");
    expect_death(&capped, "negative id", child_bad_add, &neg, "w.examples", "outside the vocabulary");
    CHECK(access(TMP "/w.examples", F_OK) != 0 && access(TMP "/w.examples.tmp", F_OK) != 0, "a dying writer left a file behind");
    ExampleSpec spec = {.vocab_size = 50, .pad_id = 0, .nclasses = 3, .ndoc = 1, .desc = "v"};
    ExampleWriter *w = example_writer_open(TMP "/ab.examples", &spec);
    example_writer_abort(w);
    CHECK(access(TMP "/ab.examples.tmp", F_OK) != 0 && access(TMP "/ab.examples", F_OK) != 0, "abort left a file");
    // an empty file is valid: no examples, no frames
    w = example_writer_open(TMP "/empty.examples", &spec);
    example_writer_close(w);
    Examples *e = example_open(TMP, "empty");
    CHECK(example_count(e) == 0 && example_max_len(e) == 0, "empty file: %llu examples", (unsigned long long)example_count(e));
    example_close(e);
}

// ---- the loader ----

typedef struct { int32_t *tok, *lens, *labels; uint64_t *index; int rows; } Batch;
static Batch batch_new(int B, int nd, int T) {
    Batch b = {xmalloc((size_t)B * nd * T * sizeof(int32_t)), xmalloc((size_t)B * nd * sizeof(int32_t)),
               xmalloc((size_t)B * sizeof(int32_t)), xmalloc((size_t)B * sizeof(uint64_t)), 0};
    return b;
}
static void batch_free(Batch *b) { free(b->tok); free(b->lens); free(b->labels); free(b->index); }
static int batch_eq(const Batch *a, const Batch *b, int B, int nd, int T) {
    return a->rows == b->rows && !memcmp(a->tok, b->tok, (size_t)B * nd * T * sizeof(int32_t)) &&
           !memcmp(a->lens, b->lens, (size_t)B * nd * sizeof(int32_t)) && !memcmp(a->labels, b->labels, (size_t)B * sizeof(int32_t)) &&
           !memcmp(a->index, b->index, (size_t)B * sizeof(uint64_t));
}

static void test_loader(void) {
    const uint64_t n = 1003;
    const int B = 16, T = 24, nd = 2;
    const uint32_t pad = 999;
    Ref r = make_ref(n, nd, 40, 1000, 5);
    write_ref(TMP "/train.examples", &r, 1000, pad, 5, "v");
    write_ref(TMP "/val.examples", &r, 1000, pad, 5, "v");

    // shuffled: every epoch is a permutation of all examples, batches full, rows what the reader says
    ExampleLoader *l = example_loader_open(TMP, "train", B, T, 1, 42);
    CHECK(example_count(example_loader_data(l)) == n, "loader data count");
    Batch b = batch_new(B, nd, T);
    uint64_t epochs = 3, total = epochs * n + 37, seen = 0;
    uint8_t *hit = xcalloc(n, 1);
    int bad_rows = 0, bad_perm = 0, full = 1;
    uint64_t *perm = xmalloc(n * sizeof *perm);
    while (seen < total) {
        b.rows = example_loader_next(l, b.tok, b.lens, b.labels, b.index);
        if (b.rows != B) full = 0;
        for (int k = 0; k < B; k++, seen++) {
            uint64_t i = b.index[k], e = seen / n, pos = seen % n;
            if (!row_is(&r, i, T, b.tok + (size_t)k * nd * T, b.lens + (size_t)k * nd, b.labels[k], pad)) bad_rows++;
            if (pos == 0) {
                example_permutation(42, e, n, perm);
                memset(hit, 0, n);
            }
            if (perm[pos] != i) bad_perm++;
            if (i < n) hit[i]++;
            if (pos == n - 1)
                for (uint64_t j = 0; j < n; j++)
                    if (hit[j] != 1) { bad_perm++; break; }
        }
    }
    CHECK(full, "a shuffled batch was not full");
    CHECK(!bad_rows, "%d shuffled rows differ from the examples they name", bad_rows);
    CHECK(!bad_perm, "shuffled epochs are not the permutations of (seed, epoch), each example once: %d mismatches", bad_perm);
    ExampleLoaderState s = example_loader_get_state(l);
    CHECK(s.seed == 42 && s.epoch * n + s.index == seen, "state (%llu, %llu) after %llu examples", (unsigned long long)s.epoch,
          (unsigned long long)s.index, (unsigned long long)seen);
    // the permutations differ between epochs and seeds
    uint64_t *p2 = xmalloc(n * sizeof *p2);
    example_permutation(42, 0, n, perm);
    example_permutation(42, 1, n, p2);
    CHECK(memcmp(perm, p2, n * sizeof *perm) != 0, "epochs 0 and 1 have the same order");
    example_permutation(43, 0, n, p2);
    CHECK(memcmp(perm, p2, n * sizeof *perm) != 0, "seeds 42 and 43 give the same order");

    // resuming: the batches after a saved state are those of the uninterrupted run, from a new loader and
    // from the same one after it ran ahead
    enum { AHEAD = 150 };
    Batch *ref = xmalloc(AHEAD * sizeof *ref);
    for (int k = 0; k < AHEAD; k++) {
        ref[k] = batch_new(B, nd, T);
        ref[k].rows = example_loader_next(l, ref[k].tok, ref[k].lens, ref[k].labels, ref[k].index);
    }
    ExampleLoader *l2 = example_loader_open(TMP, "train", B, T, 1, 7);
    example_loader_set_state(l2, s);
    int same = 1;
    for (int k = 0; k < AHEAD; k++) {
        b.rows = example_loader_next(l2, b.tok, b.lens, b.labels, b.index);
        same &= batch_eq(&b, &ref[k], B, nd, T);
    }
    CHECK(same, "a new loader set to a saved state gives other batches");
    example_loader_set_state(l, s);
    same = 1;
    for (int k = 0; k < AHEAD; k++) {
        b.rows = example_loader_next(l, b.tok, b.lens, b.labels, b.index);
        same &= batch_eq(&b, &ref[k], B, nd, T);
    }
    CHECK(same, "the loader set back to a saved state gives other batches");
    // same seed from the start: same stream
    example_loader_reset(l);
    ExampleLoader *l3 = example_loader_open(TMP, "train", B, T, 1, 42);
    Batch c = batch_new(B, nd, T);
    same = 1;
    for (int k = 0; k < 80; k++) {
        b.rows = example_loader_next(l, b.tok, b.lens, b.labels, b.index);
        c.rows = example_loader_next(l3, c.tok, c.lens, c.labels, c.index);
        same &= batch_eq(&b, &c, B, nd, T);
    }
    CHECK(same, "two loaders with the same seed differ");
    for (int k = 0; k < AHEAD; k++) batch_free(&ref[k]);
    free(ref);
    example_loader_close(l);
    example_loader_close(l2);
    example_loader_close(l3);

    // sequential: every example once in order, the last batch partial, then empty until a reset
    l = example_loader_open(TMP, "val", B, T, 0, 0);
    for (int pass = 0; pass < 2; pass++) {
        uint64_t next = 0;
        int bad = 0, batches = 0, rows;
        while ((rows = example_loader_next(l, b.tok, b.lens, b.labels, b.index)) > 0) {
            batches++;
            for (int k = 0; k < B; k++) {
                const int32_t *lens = b.lens + (size_t)k * nd;
                if (k < rows) {
                    if (b.index[k] != next || !row_is(&r, next, T, b.tok + (size_t)k * nd * T, lens, b.labels[k], pad)) bad++;
                    next++;
                } else if (b.index[k] != UINT64_MAX || b.labels[k] != -1 || lens[0] != 0 || lens[1] != 0 ||
                           b.tok[(size_t)k * nd * T] != (int32_t)pad)
                    bad++;
            }
            if (rows < B && rows != (int)(n % B)) bad++;
        }
        CHECK(!bad && next == n && batches == (int)((n + B - 1) / B), "sequential pass %d: %d bad rows, %llu examples, %d batches",
              pass, bad, (unsigned long long)next, batches);
        CHECK(example_loader_next(l, b.tok, b.lens, b.labels, NULL) == 0 && b.labels[0] == -1, "an exhausted loader gave rows");
        example_loader_reset(l);
    }
    example_loader_close(l);
    batch_free(&b);
    batch_free(&c);
    free(hit);
    free(perm);
    free(p2);
    free_ref(&r);
}

static void child_loader(const void *arg) {
    const char *const *a = arg;
    ExampleLoader *l = example_loader_open(a[0], a[1], 4, 8, 1, 1);
    ExampleLoaderState s = {.seed = 1, .epoch = 0, .index = 1ull << 40};
    example_loader_set_state(l, s);
}

static void test_loader_errors(void) {
    const char *missing[] = {TMP, "test"};
    expect_death(&capped, "missing split", child_loader, missing, "test.examples", "not found");
    const char *empty[] = {TMP, "empty"};
    expect_death(&capped, "shuffled over no examples", child_loader, empty, "empty.examples", "no examples");
    const char *state[] = {TMP, "train"};
    expect_death(&capped, "a state past the split", child_loader, state, "train.examples", "does not fit");
}

int main(void) {
    if (system("rm -rf " TMP) != 0 || (mkdir("tests/tmp", 0777) != 0 && errno != EEXIST)) die("test: cannot clear " TMP);
    if (mkdir(TMP, 0777) != 0) die("test: cannot create " TMP);
    test_header();
    test_roundtrip(1, 300, 5000, 50);        // u16 ids, many frames
    test_roundtrip(2, 70000, 700, 200);      // u32 ids, pairs
    test_roundtrip(1, 3, 1, 1);              // one example of one token
    test_corruption();
    test_writer_errors();
    test_loader();
    test_loader_errors();
    return check_summary("test_examples");
}
