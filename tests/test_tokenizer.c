// test_tokenizer.c: the tokenizers against ids from independent implementations (tests/fixtures/tokenizer,
// made by scripts/make_tokenizer_fixtures.py), decode round trips, invalid UTF-8, long inputs, thread safety,
// error paths and `hgrn2 tokenize`. Run from the repository root; reads ../shared/data (or $HGRN2_SHARED/data).
// `--bench` instead prints the single-thread GPT-2 encoding speed on the shared text files.
#include "../commands.h"
#include "../tokenizer.h"
#include "check.h"
#include "child.h"

#include <sys/stat.h>
#include <time.h>

#ifdef UNDER_ASAN
// The sanitizer's limits stand in for the children's memory cap (tests/child.h). Leak checks are off: the error
// paths under test end in exit(1) with their memory still held, by design.
const char *__asan_default_options(void);
const char *__asan_default_options(void) {
    return "detect_leaks=0:allocator_may_return_null=1:malloc_limit_mb=1024:hard_rss_limit_mb=3000";
}
#endif

#define FIXTURES "tests/fixtures/tokenizer"
#define TMP "tests/tmp/tokenizer"

static char g_shared[2048];

static const char *g_text_files[] = {
    "canterbury-alice29.txt", "canterbury-asyoulik.txt", "canterbury-lcet10.txt", "canterbury-plrabn12.txt",
    "tinyshakespeare.txt", "wikitext-103-raw.test.txt", "wikitext-103-raw.valid.txt",
    "wikitext-2.test.tokens", "wikitext-2.valid.tokens",
};
#define NTEXT (int)(sizeof g_text_files / sizeof g_text_files[0])

// ---------------------------------------------------------------- helpers

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open %s: %s (run the test from the repository root; set HGRN2_SHARED for another shared/)", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) die("cannot seek %s: %s", path, strerror(errno));
    long n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) die("cannot seek %s: %s", path, strerror(errno));
    char *buf = xmalloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) die("cannot read %s", path);
    if (fclose(f) != 0) die("cannot close %s: %s", path, strerror(errno));
    buf[n] = 0;
    *len = (size_t)n;
    return buf;
}

static void spit_str(const char *path, const char *s) { spit(path, s, strlen(s)); }

static char *text_path(const char *name) {
    static char buf[8192];
    snprintf(buf, sizeof buf, "%s/data/text/%s", g_shared, name);
    return buf;
}

static uint64_t fnv1a(const void *p, size_t n) {
    const uint8_t *s = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t fnv_ids(const int32_t *ids, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        uint32_t v = (uint32_t)ids[i];
        for (int k = 0; k < 4; k++) h = (h ^ ((v >> (8 * k)) & 0xFF)) * 0x100000001b3ull;
    }
    return h;
}

// Prints where two id sequences first differ.
static void show_diff(const int32_t *want, size_t nw, const int32_t *got, size_t ng) {
    size_t i = 0;
    while (i < nw && i < ng && want[i] == got[i]) i++;
    printf("    %zu expected ids, %zu got; first difference at %zu:\n    expected:", nw, ng, i);
    for (size_t k = i; k < nw && k < i + 8; k++) printf(" %d", want[k]);
    printf("\n    got:     ");
    for (size_t k = i; k < ng && k < i + 8; k++) printf(" %d", got[k]);
    printf("\n");
}

static void show_bytes_diff(const char *want, size_t nw, const char *got, size_t ng) {
    size_t i = 0;
    while (i < nw && i < ng && want[i] == got[i]) i++;
    printf("    %zu bytes expected, %zu got; first difference at byte %zu\n", nw, ng, i);
}

static int decode_equals(const Tokenizer *t, const int32_t *ids, size_t n, const char *want, size_t nw) {
    ByteBuf out = { 0 };
    tokenizer_decode(t, ids, n, &out);
    int ok = out.n == nw && (nw == 0 || !memcmp(out.data, want, nw));
    if (!ok) show_bytes_diff(want, nw, out.data, out.n);
    // streaming one token at a time must give the same bytes
    ByteBuf one = { 0 };
    for (size_t i = 0; i < n; i++) tokenizer_decode_one(t, ids[i], i == 0, &one);
    if (one.n != out.n || (one.n && memcmp(one.data, out.data, one.n))) {
        printf("    tokenizer_decode_one differs from tokenizer_decode\n");
        ok = 0;
    }
    free(out.data);
    free(one.data);
    return ok;
}

// ---------------------------------------------------------------- fixture cases

static void expect_line(char **p, char *end, char *line, size_t cap, const char *file) {
    char *nl = memchr(*p, '\n', (size_t)(end - *p));
    if (!nl || (size_t)(nl - *p) >= cap) die("%s: malformed case file near byte %zu", file, (size_t)(end - *p));
    memcpy(line, *p, (size_t)(nl - *p));
    line[nl - *p] = 0;
    *p = nl + 1;
}

// Runs every case of a .cases file; returns the number of cases.
static int run_cases(const Tokenizer *t, const char *name) {
    char path[512];
    snprintf(path, sizeof path, FIXTURES "/%s.cases", name);
    size_t len;
    char *data = slurp(path, &len), *p = data, *end = data + len;
    while (p < end && *p == '#') {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        p = nl ? nl + 1 : end;
    }
    int ncases = 0;
    char *idline = NULL;
    size_t idcap = 0;
    while (p < end) {
        char head[1024], cname[512];
        expect_line(&p, end, head, sizeof head, path);
        char *text = NULL, *owned = NULL;
        long long n = 0, off = 0;
        if (sscanf(head, "text %511s %lld", cname, &n) == 2) {
            if (n < 0 || n > end - p) die("%s: case %s: bad length", path, cname);
            text = p;
            p += n + 1;
        } else if (sscanf(head, "file %511s %lld %lld", cname, &off, &n) == 3) {
            char fp[4096];
            snprintf(fp, sizeof fp, "%s/data/%s", g_shared, cname);
            size_t flen;
            owned = slurp(fp, &flen);
            if (n < 0) n = (long long)flen;
            if (off < 0 || (size_t)(off + n) > flen) die("%s: case %s: range outside the file", path, cname);
            text = owned + off;
            char tail[64];
            snprintf(tail, sizeof tail, "@%lld+%lld", off, n);
            strncat(cname, tail, sizeof cname - strlen(cname) - 1);
        } else {
            die("%s: malformed case header \"%s\"", path, head);
        }
        // the ids line can be long: read it directly
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) die("%s: case %s: no ids line", path, cname);
        size_t il = (size_t)(nl - p);
        if (il + 1 > idcap) idline = xrealloc(idline, idcap = il + 1);
        memcpy(idline, p, il);
        idline[il] = 0;
        p = nl + 1;
        IdBuf got = { 0 };
        tokenizer_encode(t, text, (size_t)n, &got);
        IdBuf want = { 0 };
        long long count;
        char *q;
        if (!strncmp(idline, "ids ", 4)) {
            count = strtoll(idline + 4, &q, 10);
            for (long long i = 0; i < count; i++) idbuf_push(&want, (int32_t)strtol(q, &q, 10));
            int same = want.n == got.n && (got.n == 0 || !memcmp(want.ids, got.ids, got.n * sizeof *got.ids));
            CHECK(same, "%s: encode of case %s differs from the reference", name, cname);
            if (!same) show_diff(want.ids, want.n, got.ids, got.n);
        } else if (!strncmp(idline, "hash ", 5)) {
            count = strtoll(idline + 5, &q, 10);
            unsigned long long h = strtoull(q, NULL, 16);
            CHECK((long long)got.n == count && fnv_ids(got.ids, got.n) == h,
                  "%s: encode of case %s differs from the reference (%lld ids expected, %zu got, or another hash)", name, cname, count, got.n);
        } else {
            die("%s: case %s: expected an ids or hash line", path, cname);
        }
        const char *dec = text;
        long long ndec = n;
        if (end - p > 8 && !strncmp(p, "dechash ", 8)) {
            // the reference decoding of a whole file, as its length and hash
            expect_line(&p, end, head, sizeof head, path);
            unsigned long long dn = strtoull(head + 8, &q, 10), dh = strtoull(q, NULL, 16);
            ByteBuf out = { 0 };
            tokenizer_decode(t, got.ids, got.n, &out);
            CHECK(out.n == dn && fnv1a(out.data, out.n) == dh, "%s: decode of case %s differs from the reference (%llu bytes expected, %zu got, or another hash)",
                  name, cname, dn, out.n);
            free(out.data);
            free(got.ids);
            free(want.ids);
            free(owned);
            ncases++;
            continue;
        }
        if (end - p > 8 && !strncmp(p, "decoded ", 8)) {
            expect_line(&p, end, head, sizeof head, path);
            ndec = strtoll(head + 8, NULL, 10);
            dec = p;
            p += ndec + 1;
        }
        CHECK(decode_equals(t, got.ids, got.n, dec, (size_t)ndec), "%s: decode of case %s differs from the reference", name, cname);
        free(got.ids);
        free(want.ids);
        free(owned);
        ncases++;
    }
    free(idline);
    free(data);
    return ncases;
}

// ---------------------------------------------------------------- the tokenizers under test

typedef struct {
    const char *name;      // fixture name
    char spec[4096];
    // 0: decode(encode(x)) == x; 1: "▁" decodes as a space and one leading space is lost (Metaspace
    // pre-tokenizer); 2: a space is added in front (ByteLevel add_prefix_space); 3: "▁" decodes as a space;
    // 4: a Unicode normalizer: y = decode(encode(x)) is x normalized, so decode(encode(y)) == y;
    // 5: a Split that removes text: decoding is checked only against the reference cases
    int lossy;
    Tokenizer *t;
} Tok;

static Tok g_toks[10];
static int g_ntoks;

static void add_tok(const char *name, const char *spec, int lossy) {
    Tok *k = &g_toks[g_ntoks++];
    k->name = name;
    snprintf(k->spec, sizeof k->spec, "%s", spec);
    k->lossy = lossy;
    k->t = tokenizer_load(spec);
}

static void load_all(void) {
    char gpt2[4096];
    snprintf(gpt2, sizeof gpt2, "%s/data/tokenizers/gpt2", g_shared);
    add_tok("byte", "byte", 0);
    add_tok("gpt2", gpt2, 0);
    add_tok("sp_llama", FIXTURES "/sp_llama.json", 3);
    add_tok("sp_meta", FIXTURES "/sp_meta.json", 1);
    add_tok("bl", FIXTURES "/bl.json", 0);
    add_tok("bl_prefix", FIXTURES "/bl_prefix.json", 2);
    add_tok("llama3", FIXTURES "/llama3.json", 0);
    add_tok("qwen2", FIXTURES "/qwen2.json", 4);
    add_tok("nfkc", FIXTURES "/nfkc.json", 4);
    add_tok("split_mix", FIXTURES "/split_mix.json", 5);
}

// What decoding the encoding of x gives, by the tokenizer's documented behaviour.
static void expected_round_trip(const Tok *k, const char *x, size_t n, ByteBuf *out) {
    if (k->lossy == 2 && n && x[0] != ' ') bytebuf_append(out, " ", 1);
    size_t start = out->n;
    for (size_t i = 0; i < n; i++) {
        if ((k->lossy == 1 || k->lossy == 3) && i + 2 < n && !memcmp(x + i, "\xe2\x96\x81", 3)) {
            bytebuf_append(out, " ", 1);
            i += 2;
        } else {
            bytebuf_append(out, x + i, 1);
        }
    }
    if (k->lossy == 1 && out->n > start && out->data[start] == ' ') memmove(out->data + start, out->data + start + 1, --out->n - start);
}

static int round_trips(const Tok *k, const char *x, size_t n) {
    IdBuf ids = { 0 };
    tokenizer_encode(k->t, x, n, &ids);
    if (k->lossy == 5) {
        free(ids.ids);
        return 1;
    }
    if (k->lossy == 4) {   // normalization is idempotent: the decoded text comes back as it is
        ByteBuf y = { 0 };
        tokenizer_decode(k->t, ids.ids, ids.n, &y);
        ids.n = 0;
        tokenizer_encode(k->t, y.data, y.n, &ids);
        int ok = decode_equals(k->t, ids.ids, ids.n, y.data, y.n);
        free(ids.ids);
        free(y.data);
        return ok;
    }
    ByteBuf want = { 0 };
    expected_round_trip(k, x, n, &want);
    int ok = decode_equals(k->t, ids.ids, ids.n, want.data, want.n);
    free(ids.ids);
    free(want.data);
    return ok;
}

// ---------------------------------------------------------------- tests

static void test_identity(void) {
    for (int i = 0; i < g_ntoks; i++) {
        const Tok *k = &g_toks[i];
        const char *nm = tokenizer_name(k->t);
        if (!strcmp(k->name, "byte") || !strcmp(k->name, "gpt2")) {
            CHECK(!strcmp(nm, k->name), "%s: name is \"%s\"", k->name, nm);
        } else {
            int hex = strlen(nm) == 19 && !strncmp(nm, "hf:", 3) && strspn(nm + 3, "0123456789abcdef") == 16;
            CHECK(hex, "%s: name \"%s\" is not hf: and 16 hex digits", k->name, nm);
            for (int j = 0; j < i; j++) CHECK(strcmp(nm, tokenizer_name(g_toks[j].t)), "%s and %s have the same name", k->name, g_toks[j].name);
        }
    }
    struct { const char *name; int vocab, eot, bos; } want[] = {
        { "byte", 256, -1, -1 }, { "gpt2", 50257, 50256, -1 }, { "sp_llama", 2000, 2, 1 },
        { "sp_meta", 2000, 2, 1 }, { "bl", 1500, 0, -1 }, { "bl_prefix", 1500, 0, -1 },
        { "llama3", 1500, 1, 0 }, { "qwen2", 1500, 0, -1 }, { "nfkc", 1000, 0, -1 }, { "split_mix", 1000, 0, -1 },
    };
    for (int i = 0; i < g_ntoks; i++) {
        const Tok *k = &g_toks[i];
        CHECK(tokenizer_vocab_size(k->t) == want[i].vocab, "%s: vocab size %d, expected %d", k->name, tokenizer_vocab_size(k->t), want[i].vocab);
        CHECK(tokenizer_eot(k->t) == want[i].eot, "%s: eot %d, expected %d", k->name, tokenizer_eot(k->t), want[i].eot);
        CHECK(tokenizer_bos(k->t) == want[i].bos, "%s: bos %d, expected %d", k->name, tokenizer_bos(k->t), want[i].bos);
    }
    // the special tokens decode as their text
    ByteBuf b = { 0 };
    tokenizer_decode_one(g_toks[1].t, 50256, 0, &b);
    CHECK(b.n == 13 && !memcmp(b.data, "<|endoftext|>", 13), "gpt2: 50256 does not decode to <|endoftext|>");
    b.n = 0;
    tokenizer_decode_one(g_toks[2].t, 2, 1, &b);
    CHECK(b.n == 4 && !memcmp(b.data, "</s>", 4), "sp_llama: 2 does not decode to </s>");
    free(b.data);
    // a directory holding tokenizer.json is the same tokenizer as the file
    mkdir_p(TMP "/hfdir");
    size_t n;
    char *js = slurp(FIXTURES "/bl.json", &n);
    spit(TMP "/hfdir/tokenizer.json", js, n);
    free(js);
    Tokenizer *t = tokenizer_load(TMP "/hfdir");
    CHECK(!strcmp(tokenizer_name(t), tokenizer_name(g_toks[4].t)), "a directory with tokenizer.json loads as another tokenizer");
    tokenizer_free(t);
    printf("ok   names, vocabulary sizes, special tokens\n");
}

static void test_fixtures(void) {
    for (int i = 1; i < g_ntoks; i++) {
        int before = check_failed;
        int n = run_cases(g_toks[i].t, g_toks[i].name);
        printf("%s %s: %d reference cases (encode ids and decoded text)\n", check_failed == before ? "ok  " : "FAIL", g_toks[i].name, n);
    }
}

static void test_round_trips(void) {
    for (int f = 0; f < NTEXT; f++) {
        size_t n;
        char *x = slurp(text_path(g_text_files[f]), &n);
        for (int i = 0; i < g_ntoks; i++)
            CHECK(round_trips(&g_toks[i], x, n), "%s: decode(encode(%s)) is not the text", g_toks[i].name, g_text_files[f]);
        free(x);
    }
    printf("ok   decode(encode(x)) == x (as each tokenizer's rules allow) for %d shared text files x %d tokenizers\n", NTEXT, g_ntoks);

    // invalid UTF-8 and random bytes: every tokenizer with a byte-level alphabet or byte fallback
    static const char *invalid[] = {
        "\xff", "\xfe\xff", "abc\xff" "def", " \xff", "\xc3", "\xc3\xa9\xc3", "x\xe2\x82", "\xed\xa0\x80",
        "\xc0\x80", "\xf4\x90\x80\x80", "\xf8\x88\x80\x80\x80", "\x80\x80", "'\xffs", "\xe4\xb8\xad\xe6\x96",
        "\xef\xbb\xbf\xff \xff\xfe", "  \xff\n\xff\t \xff", "\xe2\x96", "\xe2\x96\x81\xff",
    };
    int ninv = (int)(sizeof invalid / sizeof invalid[0]);
    uint64_t rng = 0x1234567887654321ull;
    char buf[4096];
    for (int i = 0; i < g_ntoks; i++) {
        const Tok *k = &g_toks[i];
        for (int c = 0; c < ninv; c++) CHECK(round_trips(k, invalid[c], strlen(invalid[c])), "%s: invalid UTF-8 case %d does not round-trip", k->name, c);
        for (int r = 0; r < 300; r++) {
            size_t n = 1 + (size_t)(r * 13 % 4000);
            for (size_t j = 0; j < n; j++) {
                rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
                // half the strings: only bytes >= 0x80 and a few ASCII, to hit many broken sequences
                buf[j] = (char)(r % 2 ? (rng >> 24) : ((rng >> 24) % 5 == 0 ? ' ' + (rng >> 40) % 90 : 0x80 | (rng >> 32)));
            }
            CHECK(round_trips(k, buf, n), "%s: random bytes (string %d, %zu bytes) do not round-trip", k->name, r, n);
        }
    }
    printf("ok   invalid UTF-8 and 300 random byte strings round-trip for %d tokenizers\n", g_ntoks);
}

// One pathological input per tokenizer: a megabyte of one character must neither hang nor fail.
static void test_long_inputs(void) {
    static const char *units[] = { "a", " ", "\xff", "\xe4\xb8\xad", "\n", "1" };
    size_t n = 1 << 20;
    char *x = xmalloc(n + 4);
    for (int u = 0; u < 6; u++) {
        size_t ul = strlen(units[u]), m = n / ul * ul;
        for (size_t i = 0; i < m; i += ul) memcpy(x + i, units[u], ul);
        for (int i = 0; i < g_ntoks; i++) {
            double t0 = now_s();
            int ok = round_trips(&g_toks[i], x, m);
            double dt = now_s() - t0;
            CHECK(ok, "%s: a megabyte of \"%s\" does not round-trip", g_toks[i].name, units[u]);
            CHECK(dt < 10, "%s: a megabyte of \"%s\" took %.1f s", g_toks[i].name, units[u], dt);
        }
    }
    free(x);
    printf("ok   1 MB runs of one character (letter, space, invalid byte, CJK, newline, digit) round-trip quickly\n");
}

// Many threads encoding with the same tokenizer (a fresh one: its piece cache fills while they run), each
// file twice at once, in 64 KB chunks cut at line ends, against the single-thread ids.
static void test_threads(void) {
    char *texts[NTEXT];
    size_t lens[NTEXT];
    for (int f = 0; f < NTEXT; f++) texts[f] = slurp(text_path(g_text_files[f]), &lens[f]);
    for (int which = 1; which < g_ntoks; which++) {
        IdBuf want[NTEXT];
        for (int f = 0; f < NTEXT; f++) {
            memset(&want[f], 0, sizeof want[f]);
            for (size_t start = 0, e; start < lens[f]; start = e) {
                e = start + 65536 < lens[f] ? start + 65536 : lens[f];
                while (e < lens[f] && texts[f][e - 1] != '\n') e++;
                tokenizer_encode(g_toks[which].t, texts[f] + start, e - start, &want[f]);
            }
        }
        Tokenizer *fresh = tokenizer_load(g_toks[which].spec);
        int bad = 0;
        #pragma omp parallel for num_threads(4) schedule(dynamic) reduction(+:bad)
        for (int job = 0; job < 2 * NTEXT; job++) {
            int f = job / 2;
            IdBuf got = { 0 };
            for (size_t start = 0, e; start < lens[f]; start = e) {
                e = start + 65536 < lens[f] ? start + 65536 : lens[f];
                while (e < lens[f] && texts[f][e - 1] != '\n') e++;
                tokenizer_encode(fresh, texts[f] + start, e - start, &got);
            }
            bad += got.n != want[f].n || memcmp(got.ids, want[f].ids, got.n * sizeof *got.ids) != 0;
            free(got.ids);
        }
        CHECK(bad == 0, "%s: %d file encodings differ when 4 threads share the tokenizer", g_toks[which].name, bad);
        for (int f = 0; f < NTEXT; f++) free(want[f].ids);
        tokenizer_free(fresh);
    }
    for (int f = 0; f < NTEXT; f++) free(texts[f]);
    printf("ok   4 threads sharing one tokenizer give the single-thread ids\n");
}

// ---- error paths: each runs in a forked child, which must exit 1 with the expected message

typedef struct { const char *spec; int32_t decode_id; } ErrJob;

static void child_load(const ErrJob *j) {
    Tokenizer *t = tokenizer_load(j->spec);
    if (j->decode_id != INT32_MIN) {
        ByteBuf b = { 0 };
        tokenizer_decode_one(t, j->decode_id, 0, &b);
    }
}

// Runs fn in a child (tests/child.h) with its standard input from in_path (NULL: none) and its output and errors
// to TMP/out.txt and TMP/err.txt; returns its exit status (-1 if killed) and leaves its peak memory in
// g_child_peak_mib. The child's address space may grow by at most 1 GiB, so that a file that asks for gigabytes
// fails the test instead of taking the machine's memory.
static double g_child_peak_mib;
static int run_child(void (*fn)(const void *), const void *arg, const char *in_path) {
    ChildRun r = child_run(fn, arg, 1024, in_path, TMP "/out.txt", TMP "/err.txt");
    g_child_peak_mib = r.peak_mib;
    return r.status;
}

static void load_fn(const void *arg) { child_load(arg); }

static void expect_error(const char *what, const char *spec, int32_t decode_id, const char *needle) {
    ErrJob j = { spec, decode_id };
    int rc = run_child(load_fn, &j, NULL);
    size_t n;
    char *err = slurp(TMP "/err.txt", &n);
    CHECK(rc == 1 && strstr(err, "hgrn2: error: ") && strstr(err, needle),
          "%s: expected exit 1 and a message with \"%s\"; got exit %d and: %s", what, needle, rc, err);
    free(err);
}

static void test_errors(void) {
    mkdir_p(TMP "/empty");
    mkdir_p(TMP "/badgpt2");
    expect_error("missing file", TMP "/no-such-file.json", INT32_MIN, "cannot open tokenizer " TMP "/no-such-file.json");
    expect_error("directory without tokenizer files", TMP "/empty", INT32_MIN, "holds neither encoder.json");
    struct { const char *name, *json, *needle; } cases[] = {
        { "trailing comma", "{\"model\": {\"vocab\": {\"a\": 0,}}}", "malformed JSON at byte 28: expected a string key" },
        { "truncated", "{\"model\": {\"type\": \"BPE\", ", "malformed JSON at byte 26: expected a string key" },
        { "truncated value", "{\"model\": ", "malformed JSON at byte 10: unexpected end of input" },
        { "bad escape", "{\"a\": \"x\\q\"}", "malformed JSON at byte 10: bad escape in string" },
        { "bad \\u escape", "{\"a\": \"\\u12x4\"}", "malformed JSON at byte 9: bad \\u escape" },
        { "bad literal", "{\"a\": tru}", "malformed JSON at byte 6: unexpected character" },
        { "trailing data", "{} {}", "malformed JSON at byte 3: trailing characters after the value" },
        { "control char", "{\"a\": \"x\ny\"}", "control character in string" },
        { "bad number", "{\"a\": 1.2.3}", "malformed JSON at byte 6: bad number" },
        { "unterminated string", "{\"a\": \"xyz", "malformed JSON at byte 7: unterminated string" },
        { "not an object", "[1, 2]", "expected a tokenizer.json object" },
        { "no model", "{\"version\": \"1.0\"}", "no \"model\" object" },
        { "WordPiece", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}", "model type \"WordPiece\" is not supported (only BPE)" },
        { "Unigram", "{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", 0.0]]}}", "model type \"Unigram\" is not supported" },
        { "no merges", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}}", "not a BPE model" },
        { "merge outside vocab", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]}}", "merge 0 (\"a\" \"b\"" },
        { "bad merge", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a\"]}}", "merge 0 \"a\"" },
        { "bad id", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}, \"merges\": []}}", "a vocab id must be an integer" },
        { "Lowercase", "{\"normalizer\": {\"type\": \"Lowercase\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
          "bad.json: normalizer \"Lowercase\" is not supported (supported: NFC, NFD, NFKC, NFKD" },
        { "Whitespace", "{\"pre_tokenizer\": {\"type\": \"Whitespace\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
          "bad.json: pre_tokenizer \"Whitespace\" is not supported (supported: ByteLevel, Metaspace, Split, Digits, Punctuation" },
        { "Split without a pattern", "{\"pre_tokenizer\": {\"type\": \"Split\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
          "bad.json: the Split pre_tokenizer needs a \"pattern\" with a \"Regex\" or a \"String\"" },
        { "invalid regex", "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(?i:'s|\\\\p{L\"}, \"behavior\": \"Isolated\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
          "bad.json: the Split pre_tokenizer: the pattern \"(?i:'s|\\p{L\" is not a valid regular expression (at byte" },
        { "unknown behavior", "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"String\": \" \"}, \"behavior\": \"Sideways\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
          "bad.json: the Split pre_tokenizer: behavior \"Sideways\" is not supported (supported: Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous)" },
        { "no behavior", "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"String\": \" \"}}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
          "bad.json: the Split pre_tokenizer has no \"behavior\"" },
        { "regex with \\w", "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\w+\"}, \"behavior\": \"Isolated\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
          "bad.json: the Split pre_tokenizer: the pattern \"\\w+\" uses \\w, whose Unicode meaning differs" },
        { "Metaspace in a Sequence", "{\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Digits\"}, {\"type\": \"Metaspace\", \"replacement\": \"_\"}]}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
          "bad.json: a Metaspace pre_tokenizer in a Sequence with others is not supported" },
        { "late add_prefix_space", "{\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Digits\"}, {\"type\": \"ByteLevel\", \"add_prefix_space\": true}]}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
          "bad.json: a ByteLevel pre_tokenizer with add_prefix_space after another pre_tokenizer is not supported" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        spit_str(TMP "/bad.json", cases[i].json);
        expect_error(cases[i].name, TMP "/bad.json", INT32_MIN, cases[i].needle);
    }
    spit_str(TMP "/badgpt2/encoder.json", "{\"a\": 0, ");
    spit_str(TMP "/badgpt2/vocab.bpe", "#version: 0.2\n");
    expect_error("malformed encoder.json", TMP "/badgpt2", INT32_MIN, TMP "/badgpt2/encoder.json: malformed JSON at byte 9");
    expect_error("decode out of range", g_toks[1].spec, 50257, "token id 50257 is out of range [0, 50257)");
    expect_error("decode negative", "byte", -1, "token id -1 is out of range [0, 256)");
    printf("ok   error paths: missing files, malformed JSON with byte offsets, unsupported models, normalizers and\n"
           "     pre-tokenizers, invalid regexes and behaviours, bad ids\n");
}

// ---- hostile files: small files that asked for gigabytes, or sizes trusted before they were checked

static void put(ByteBuf *b, const char *s) { bytebuf_append(b, s, strlen(s)); }

// A tokenizer.json of a BPE model; the parts are JSON text (NULL: left out).
static void write_hf(const char *path, const char *normalizer, const char *pre_tokenizer, const char *decoder, const char *vocab,
                     const char *merges, const char *added) {
    ByteBuf b = { 0 };
    put(&b, "{");
    const char *parts[] = { "normalizer", normalizer, "pre_tokenizer", pre_tokenizer, "decoder", decoder, "added_tokens", added };
    for (int i = 0; i < 8; i += 2) {
        if (!parts[i + 1]) continue;
        put(&b, "\"");
        put(&b, parts[i]);
        put(&b, "\": ");
        put(&b, parts[i + 1]);
        put(&b, ", ");
    }
    put(&b, "\"model\": {\"type\": \"BPE\", \"vocab\": ");
    put(&b, vocab);
    put(&b, ", \"merges\": ");
    put(&b, merges);
    put(&b, "}}");
    spit(path, b.data, b.n);
    free(b.data);
}

typedef struct { const char *spec, *text; } EncodeJob;

static void encode_fn(const void *arg) {
    const EncodeJob *j = arg;
    Tokenizer *t = tokenizer_load(j->spec);
    IdBuf ids = { 0 };
    if (j->text) tokenizer_encode(t, j->text, strlen(j->text), &ids);
    free(ids.ids);
    tokenizer_free(t);
}

// Loads spec and encodes text (NULL: loads only) in a capped child: expects exit 1 with needle in its one
// line of error, or exit 0 when needle is NULL.
static void expect_outcome(const char *what, const char *spec, const char *text, const char *needle) {
    EncodeJob j = { spec, text };
    int rc = run_child(encode_fn, &j, NULL);
    size_t n;
    char *err = slurp(TMP "/err.txt", &n);
    if (needle)
        CHECK(rc == 1 && !strncmp(err, "hgrn2: error: ", 14) && strstr(err, needle) && n && memchr(err, '\n', n) == err + n - 1,
              "%s: expected exit 1 and one line with \"%s\"; got exit %d and: %s", what, needle, rc, err);
    else
        CHECK(rc == 0 && n == 0, "%s: expected success; got exit %d and: %s", what, rc, err);
    free(err);
}

// Normalizers and decoders that multiply a text, and long normalizer strings.
static void test_hostile_growth(void) {
    const char *f = TMP "/hostile.json";
    const char *ab = "{\"a\": 0, \"b\": 1, \"ab\": 2}";
    // eight Replace normalizers that multiply "a" by ten: 20 bytes became 2 GB, and 23.8 GB was reached
    ByteBuf seq = { 0 };
    put(&seq, "{\"type\": \"Sequence\", \"normalizers\": [");
    for (int i = 0; i < 8; i++) {
        const char *r = "{\"type\": \"Replace\", \"pattern\": {\"String\": \"a\"}, \"content\": \"aaaaaaaaaa\"}";
        if (i) put(&seq, ", ");
        put(&seq, r);
    }
    put(&seq, "]}");
    bytebuf_append(&seq, "", 1);
    write_hf(f, seq.data, NULL, NULL, ab, "[]", NULL);
    expect_outcome("eight normalizers that multiply a text by ten", f, "aaaaaaaaaaaaaaaaaaaa",
                   "normalizer 4 of 8 (Replace) grows a text of 20 bytes beyond 65536 bytes");
    expect_outcome("the same normalizers on a text they do not grow", f, "bbbbbbbbbbbbbbbbbbbb", NULL);
    // beyond 64 KiB the bound is 16 x the text: 2 MB of "a" pass one step (20 MB), not two; one "a" in
    // 2 MB passes seven steps (10 MB more), not eight
    char *big = xmalloc((2 << 20) + 1);
    memset(big, 'b', 2 << 20);
    big[0] = 'a';
    big[2 << 20] = 0;
    expect_outcome("a 2 MB text with one \"a\"", f, big, "normalizer 8 of 8 (Replace) grows a text of 2097152 bytes beyond 33554432 bytes");
    memset(big, 'a', 2 << 20);
    expect_outcome("a 2 MB text of \"a\"", f, big, "normalizer 2 of 8 (Replace) grows a text of 2097152 bytes beyond 33554432 bytes");
    free(big);
    free(seq.data);
    // the Metaspace pre-tokenizer also grows text (one space to three bytes): the bound holds there too
    write_hf(f, "{\"type\": \"Replace\", \"pattern\": {\"String\": \"a\"}, \"content\": \"a a a a a a a\"}",
             "{\"type\": \"Metaspace\", \"replacement\": \"\\u2581\"}", NULL, "{\"\\u2581\": 0, \"a\": 1}", "[]", NULL);
    char *as = xmalloc(5001);
    memset(as, 'a', 5000);
    as[5000] = 0;
    expect_outcome("Replace then Metaspace", f, as, "the Metaspace pre_tokenizer grows a text of 5000 bytes beyond 80000 bytes");
    free(as);

    // a Replace normalizer or a Prepend with a long string
    char longs[400];
    memset(longs, 'x', 300);
    longs[300] = 0;
    char *norm = xasprintf("{\"type\": \"Replace\", \"pattern\": {\"String\": \"%s\"}, \"content\": \"y\"}", longs);
    write_hf(f, norm, NULL, NULL, ab, "[]", NULL);
    expect_outcome("a Replace pattern of 300 bytes", f, NULL, "the Replace normalizer's pattern has 300 bytes; the limit is 256");
    free(norm);
    norm = xasprintf("{\"type\": \"Replace\", \"pattern\": {\"String\": \"a\"}, \"content\": \"%s\"}", longs);
    write_hf(f, norm, NULL, NULL, ab, "[]", NULL);
    expect_outcome("a Replace content of 300 bytes", f, NULL, "the Replace normalizer's content has 300 bytes; the limit is 256");
    free(norm);
    norm = xasprintf("{\"type\": \"Prepend\", \"prepend\": \"%s\"}", longs);
    write_hf(f, norm, NULL, NULL, ab, "[]", NULL);
    expect_outcome("a Prepend of 300 bytes", f, NULL, "the Prepend normalizer's string has 300 bytes; the limit is 256");
    free(norm);

    // eight Replace decoders that multiply "a" by fifteen, run over each token at load
    ByteBuf dseq = { 0 };
    put(&dseq, "{\"type\": \"Sequence\", \"decoders\": [");
    for (int i = 0; i < 8; i++) {
        const char *r = "{\"type\": \"Replace\", \"pattern\": {\"String\": \"a\"}, \"content\": \"aaaaaaaaaaaaaaa\"}";
        if (i) put(&dseq, ", ");
        put(&dseq, r);
    }
    put(&dseq, "]}");
    bytebuf_append(&dseq, "", 1);
    memset(longs, 'a', 100);
    longs[100] = 0;
    char *vocab = xasprintf("{\"b\": 0, \"%s\": 1}", longs);
    write_hf(f, NULL, NULL, dseq.data, vocab, "[]", NULL);
    expect_outcome("eight decoders that multiply a token by fifteen", f, NULL,
                   "decoder 3 of 8 (Replace) grows token 1 of 100 bytes beyond 65536 bytes");
    free(vocab);
    free(dseq.data);

    // Sequences nested as deep as JSON allows load (the recursion is bounded by the parser's depth)
    ByteBuf deep = { 0 };
    for (int i = 0; i < 250; i++) put(&deep, "{\"type\": \"Sequence\", \"normalizers\": [");
    for (int i = 0; i < 250; i++) put(&deep, "]}");
    bytebuf_append(&deep, "", 1);
    write_hf(f, deep.data, NULL, NULL, ab, "[]", NULL);
    expect_outcome("250 nested normalizer Sequences", f, "ab", NULL);
    free(deep.data);
    printf("ok   hostile files: normalizers and decoders that grow text, long normalizer strings, deep Sequences\n");
}

// Ids far beyond the entries of the file.
static void test_hostile_ids(void) {
    const char *f = TMP "/hostile.json";
    // ids far beyond the vocabulary: one entry with id 2^26 - 1 allocated 3 GB
    write_hf(f, NULL, NULL, NULL, "{\"a\": 0, \"b\": 1, \"c\": 2, \"d\": 3, \"x\": 67108863}", "[]", NULL);
    expect_outcome("a vocab id of 2^26 - 1", f, NULL, "vocab id 67108863 of \"x\" is beyond the 5 entries of the vocabulary");
    write_hf(f, NULL, NULL, NULL, "{\"a\": 0, \"b\": 1}", "[]", "[{\"id\": 50000000, \"content\": \"<s>\"}]");
    expect_outcome("an added token id of 5e7", f, NULL,
                   "added token id 50000000 of \"<s>\" is beyond the 2 entries of the vocabulary and 1 added token");
    write_hf(f, NULL, NULL, NULL, "{\"a\": 0, \"b\": 3}", "[]", "[{\"id\": 2, \"content\": \"<s>\"}, {\"id\": 1, \"content\": \"</s>\"}]");
    expect_outcome("ids with added tokens in between", f, "ab", NULL);
    write_hf(f, NULL, NULL, NULL, "{\"a\": 0, \"b\": 2}", "[]", NULL);
    expect_outcome("ids with a hole", f, NULL, "vocab id 2 of \"b\" is beyond the 2 entries of the vocabulary");
    mkdir_p(TMP "/gpt2big");
    spit_str(TMP "/gpt2big/encoder.json", "{\"a\": 0, \"b\": 16777215}");
    spit_str(TMP "/gpt2big/vocab.bpe", "#version: 0.2\n");
    expect_outcome("an encoder.json id of 2^24 - 1", TMP "/gpt2big", NULL, "token id 16777215 of \"b\" is beyond the 2 entries of");
    printf("ok   hostile files: ids beyond the entries of the vocabulary\n");
}

// Empty texts, tokens and merge parts.
static void test_hostile_empty(void) {
    const char *f = TMP "/hostile.json";
    const char *ab = "{\"a\": 0, \"b\": 1, \"ab\": 2}";
    // empty strings, where pointer arithmetic on a buffer never allocated used to be undefined: normalizers
    // that delete the whole text (before Metaspace), empty tokens and merges of empty parts
    const char *del = "{\"type\": \"Replace\", \"pattern\": {\"String\": \"a\"}, \"content\": \"\"}";
    write_hf(f, del, NULL, NULL, ab, "[]", NULL);
    expect_outcome("a normalizer that deletes the text", f, "aaa", NULL);
    write_hf(f, del, "{\"type\": \"Metaspace\", \"replacement\": \"\\u2581\", \"prepend_scheme\": \"never\"}", NULL, ab, "[]", NULL);
    expect_outcome("a normalizer that deletes the text before Metaspace", f, "aaa", NULL);
    write_hf(f, NULL, NULL, NULL, "{\"\": 0}", "[]", NULL);
    expect_outcome("a vocabulary of one empty token", f, "x", NULL);
    write_hf(f, NULL, NULL, NULL, "{\"\": 0, \"a\": 1}", "[\" \"]", NULL);
    expect_outcome("a merge of two empty parts", f, "aa", NULL);
    printf("ok   hostile files: empty texts, tokens and merge parts\n");
}

// Regexes that backtrack without end, and long pieces for a Split, end or fail with a message, never hang.
static void test_hostile_regex(void) {
    const char *f = TMP "/hostile.json";
    const char *ab = "{\"a\": 0, \"b\": 1, \"ab\": 2}";
    write_hf(f, NULL, "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(a|aa)+(?:b|c)\"}, \"behavior\": \"Isolated\"}", NULL, ab, "[]", NULL);
    char text[202];
    memset(text, 'a', 200);
    text[200] = '!';
    text[201] = 0;
    double t0 = now_s();
    expect_outcome("a regex that backtracks exponentially", f, text, "hostile.json: the regex of pre_tokenizer 1 of 1 fails on a piece of 201 bytes: match limit exceeded");
    CHECK(now_s() - t0 < 10, "the backtracking regex took %.1f s to fail", now_s() - t0);
    // a megabyte-long match of a greedy pattern, and a pattern with empty matches at every position
    write_hf(f, NULL, "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(?:a|b)+\"}, "
             "\"behavior\": \"Contiguous\"}, {\"type\": \"Split\", \"pattern\": {\"Regex\": \"x*\"}, \"behavior\": \"MergedWithNext\"}]}",
             NULL, ab, "[\"a b\"]", NULL);
    char *big = xmalloc((1 << 20) + 1);
    for (int i = 0; i < 1 << 20; i++) big[i] = "ab"[i & 1];
    big[1 << 20] = 0;
    expect_outcome("a megabyte matched by (?:a|b)+", f, big, NULL);
    free(big);
    printf("ok   hostile files: an exponentially backtracking regex fails with a message; a 1 MB match passes\n");
}

// One merge repeated: memory follows the distinct pairs.
static void test_hostile_merges(void) {
    const char *f = TMP "/hostile.json";
    const char *ab = "{\"a\": 0, \"b\": 1, \"ab\": 2}";
    // four million copies of one merge: the pair table follows the distinct pairs, not the list
    int nm = 1 << 22;
    ByteBuf mb = { 0 };
    put(&mb, "[");
    for (int i = 0; i < nm; i++) put(&mb, i ? ",\"a b\"" : "\"a b\"");
    put(&mb, "]");
    bytebuf_append(&mb, "", 1);
    write_hf(f, NULL, NULL, NULL, ab, mb.data, NULL);
    expect_outcome("four million copies of one merge", f, "ab", NULL);
#ifndef UNDER_ASAN
    double mib = (double)mb.n / (1 << 20);
    CHECK(g_child_peak_mib > 0 && g_child_peak_mib < 4 * mib + 16, "a tokenizer.json of %.0f MiB took %.0f MiB to load", mib, g_child_peak_mib);
    printf("     a tokenizer.json of %.0f MiB (one merge, repeated) took %.0f MiB to load\n", mib, g_child_peak_mib);
#endif
    free(mb.data);
    remove(f);
    printf("ok   hostile files: one merge repeated four million times\n");
}

// ---- hgrn2 tokenize

static const char *g_argv_store[8];
static void tokenize_fn(const void *arg) {
    int argc = 0;
    while (g_argv_store[argc]) argc++;
    exit(cmd_tokenize(argc, (char **)g_argv_store));
}

static int run_tokenize(const char *input, char **out, char **err, ...) {
    va_list ap;
    va_start(ap, err);
    int argc = 0;
    g_argv_store[argc++] = "tokenize";
    const char *a;
    while ((a = va_arg(ap, const char *)) && argc < 7) g_argv_store[argc++] = a;
    g_argv_store[argc] = NULL;
    va_end(ap);
    spit_str(TMP "/in.txt", input);
    int rc = run_child(tokenize_fn, NULL, TMP "/in.txt");
    size_t n;
    *out = slurp(TMP "/out.txt", &n);
    *err = slurp(TMP "/err.txt", &n);
    return rc;
}

static void test_cmd_tokenize(void) {
    const char *gpt2 = g_toks[1].spec;
    char *out, *err;
    int rc;
#define RUN(input, ...) (free(out), free(err), rc = run_tokenize(input, &out, &err, __VA_ARGS__, (const char *)NULL))
    out = err = NULL;
    RUN("Hello world", "--tokenizer", gpt2);
    CHECK(rc == 0 && !strcmp(out, "15496 995\n"), "tokenize: exit %d, output \"%s\" %s", rc, out, err);
    RUN("Hello world<|endoftext|>", "--tokenizer", gpt2);
    CHECK(rc == 0 && !strcmp(out, "15496 995 27 91 437 1659 5239 91 29\n"), "tokenize treats <|endoftext|> as text: exit %d, output \"%s\"", rc, out);
    RUN("15496 995\n", "--decode", "--tokenizer", gpt2);
    CHECK(rc == 0 && !strcmp(out, "Hello world"), "tokenize --decode: exit %d, output \"%s\" %s", rc, out, err);
    RUN("", "--tokenizer=byte");
    CHECK(rc == 0 && !strcmp(out, "\n"), "tokenize of nothing: exit %d, output \"%s\"", rc, out);
    RUN("hi", "--tokenizer", "byte");
    CHECK(rc == 0 && !strcmp(out, "104 105\n"), "tokenize byte: exit %d, output \"%s\"", rc, out);
    RUN(" 104\t105\n\n", "--tokenizer", "byte", "--decode");
    CHECK(rc == 0 && !strcmp(out, "hi"), "tokenize byte --decode: exit %d, output \"%s\"", rc, out);
    RUN("Hello", "--tokenizer", FIXTURES "/sp_llama.json");
    CHECK(rc == 0 && strlen(out) > 1, "tokenize with a tokenizer.json: exit %d, output \"%s\" %s", rc, out, err);
    RUN("15496 50257", "--tokenizer", gpt2, "--decode");
    CHECK(rc == 1 && strstr(err, "hgrn2: error: ") && strstr(err, "out of range"), "tokenize --decode out of range: exit %d, %s", rc, err);
    RUN("15496 x7", "--tokenizer", gpt2, "--decode");
    CHECK(rc == 1 && strstr(err, "hgrn2: error: ") && strstr(err, "not an integer"), "tokenize --decode junk: exit %d, %s", rc, err);
    RUN("", "--help");
    CHECK(rc == 0 && strstr(out, "usage: hgrn2 tokenize"), "tokenize --help: exit %d, output \"%s\"", rc, out);
    RUN("x", "--decode");
    CHECK(rc == 2 && strstr(err, "usage: hgrn2 tokenize"), "tokenize without --tokenizer: exit %d, %s", rc, err);
    RUN("x", "--tokenizer", gpt2, "--bogus");
    CHECK(rc == 2 && strstr(err, "--bogus") && strstr(err, "usage: hgrn2 tokenize"), "tokenize --bogus: exit %d, %s", rc, err);
    RUN("x", "--tokenizer");
    CHECK(rc == 2 && strstr(err, "usage: hgrn2 tokenize"), "tokenize --tokenizer without a value: exit %d, %s", rc, err);
    RUN("x", "--tokenizer", gpt2, "extra");
    CHECK(rc == 2 && strstr(err, "usage: hgrn2 tokenize"), "tokenize with an extra argument: exit %d, %s", rc, err);
    RUN("x", "--tokenizer", TMP "/nowhere");
    CHECK(rc == 1 && strstr(err, "hgrn2: error: cannot open tokenizer"), "tokenize with a missing tokenizer: exit %d, %s", rc, err);
#undef RUN
    free(out);
    free(err);
    printf("ok   hgrn2 tokenize: encode, --decode, --help, usage errors (exit 2), runtime errors (exit 1)\n");
}

// ---------------------------------------------------------------- benchmark

static void bench(void) {
    char *texts[NTEXT];
    size_t lens[NTEXT], total = 0;
    for (int f = 0; f < NTEXT; f++) { texts[f] = slurp(text_path(g_text_files[f]), &lens[f]); total += lens[f]; }
    const char *which[] = { "gpt2", "bl", "sp_meta", "sp_llama", "llama3", "qwen2" };
    for (int w = 0; w < 6; w++) {
        const Tok *k = NULL;
        for (int i = 0; i < g_ntoks; i++) if (!strcmp(g_toks[i].name, which[w])) k = &g_toks[i];
        Tokenizer *t = tokenizer_load(k->spec);   // fresh: the first pass starts with an empty piece cache
        double best[2] = { 1e30, 1e30 };
        size_t ntok = 0;
        for (int pass = 0; pass < 3; pass++) {
            IdBuf ids = { 0 };
            double t0 = now_s();
            for (int f = 0; f < NTEXT; f++) { ids.n = 0; tokenizer_encode(t, texts[f], lens[f], &ids); ntok += pass == 0 ? ids.n : 0; }
            double dt = now_s() - t0;
            int slot = pass == 0 ? 0 : 1;
            if (dt < best[slot]) best[slot] = dt;
            free(ids.ids);
        }
        printf("%-9s encode, 1 thread: %6.1f MB/s with an empty piece cache, %6.1f MB/s warm (%.1f MB, %zu tokens)\n",
               k->name, total / best[0] / 1e6, total / best[1] / 1e6, total / 1e6, ntok);
        tokenizer_free(t);
    }
    for (int f = 0; f < NTEXT; f++) free(texts[f]);
}

int main(int argc, char **argv) {
    const char *shared = getenv("HGRN2_SHARED");
    snprintf(g_shared, sizeof g_shared, "%s", shared && *shared ? shared : "../shared");
    int do_bench = argc > 1 && !strcmp(argv[1], "--bench");
    if (argc > 1 && !do_bench) { fprintf(stderr, "usage: %s [--bench]\n", argv[0]); return EXIT_USAGE; }
    mkdir_p(TMP);
    double t0 = now_s();
    load_all();
    if (do_bench) {
        bench();
        return 0;
    }
    void (*tests[])(void) = { test_identity, test_fixtures, test_round_trips, test_long_inputs, test_threads, test_errors,
                              test_hostile_growth, test_hostile_ids, test_hostile_empty, test_hostile_regex, test_hostile_merges,
                              test_cmd_tokenize };
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        double ts = now_s();
        tests[i]();
        printf("     (%.1f s)\n", now_s() - ts);
    }
    for (int i = 0; i < g_ntoks; i++) tokenizer_free(g_toks[i].t);
    printf("\n%.1f s\n", now_s() - t0);
    return check_summary("test_tokenizer");
}
