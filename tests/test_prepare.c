// test_prepare.c: `hgrn2 prepare` of token shards: pile .jsonl.zst, wiki103, text, error cases, FIFOs and
// devices, long lines in bounded memory, the JSON Lines scanner. (Shards and the loader: test_data.c.)
// Run from the repository root; reads ../shared/data (HGRN2_SHARED overrides ../shared). Exits 1 on any failure.
// SHOWMSG=1 prints the message of every refusal.
#define _GNU_SOURCE
#include <sys/stat.h>
#include <zstd.h>

#include "../commands.h"
#include "../data.h"
#include "../tokenizer.h"
#include "check.h"
#include "child.h"
#include "files.h"

#define TMP "tests/tmp/test_prepare"

static char shared_text[2048], shared_gpt2[2048];

// ---- small helpers ----

static uint64_t rng_state = 0x1234567;
static uint64_t rng(void) { return splitmix64(&rng_state); }

static void shared_path(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", shared_text, name); }

static void bb_put(ByteBuf *b, const void *p, size_t n) { bytebuf_append(b, p, n); }
static void bb_puts(ByteBuf *b, const char *s) { bytebuf_append(b, s, strlen(s)); }

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

// ---- prepare ----

static int prepare(const char *const *args) {
    const char *argv[64];
    int argc = 0;
    argv[argc++] = "prepare";
    for (; *args; args++) argv[argc++] = *args;
    argv[argc] = NULL;
    return cmd_prepare(argc, (char **)argv);
}

// prepare in a child (tests/child.h), its stderr captured. Most run as they would from the command line;
// those that could block on a FIFO or read a device forever get 30 s and 4 GiB more address space, so that
// a regression fails the test instead of hanging the suite or eating the machine.
static void child_prepare(const void *args) { exit(prepare(args)); }
static const ChildSpec unlimited = {.err_path = TMP "/child.err"};
static const ChildSpec limited = {.cap_mib = 4096, .alarm_s = 30, .err_path = TMP "/child.err"};

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
    Bytes a = read_bytes(path);
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
        Bytes t = read_bytes(path);
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
    spit(zpath, z.p, z.n);
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
    spit(npath, z.p, z.n);
    const char *args2[] = {"--task", "pile", "--input", npath, "--tokenizer", "byte", "--out", out2, "--val-fraction", "0",
                           "--threads", "1", NULL};
    CHECK(prepare(args2) == 0, "prepare pile (plain name) failed");
    tr = read_split(out2, "train", &ntr, &str);
    CHECK(!data_has_split(out2, "val"), "val split written with --val-fraction 0");
    check_split("pile byte, all train", d, tr, ntr, NULL, 0, 0);
    free(tr);

    // uncompressed JSON Lines given with --val-input: that file is the whole validation split
    const char *ppath = TMP "/pile/plain.jsonl", *out3 = TMP "/pile/out3";
    spit(ppath, plain.data, plain.n);
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
    spit(gpath, z.p, z.n);
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
    Bytes fa = read_bytes(a), fb = read_bytes(b), ft = read_bytes(t);
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
    Bytes l1 = read_bytes(c1), l2 = read_bytes(c2);
    ByteBuf crlf = {0};
    for (int r = 0; r < 2; r++) {
        bb_put(&crlf, l1.p, l1.n);
        bb_put(&crlf, l2.p, l2.n);
        bb_put(&crlf, fa.p, fa.n);
    }
    const char *cpath = TMP "/text/crlf.txt", *out3 = TMP "/text/crlf";
    spit(cpath, crlf.data, crlf.n);
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
    Bytes f = read_bytes(path);
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
    spit(bad, lines, strlen(lines));
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
    expect_death(&unlimited, "--strict malformed line", child_prepare, sargs, TMP "/err/bad.jsonl:3:", "invalid escape");
    CHECK(!dir_has(TMP "/err/strict", ".shard"), "a failed prepare left shards");

    // truncated and corrupted .zst inputs, after several shards were already finished: nothing is left
    // (four copies of the documents: more than the reader may run ahead of the writer, so shards are done)
    Docs d = pile_docs(1);
    Bytes z = jsonl_zst(d, NULL, 4);
    const char *trunc = TMP "/err/trunc.jsonl.zst", *tout = TMP "/err/trunc";
    spit(trunc, z.p, z.n - 20);
    const char *targs[] = {"--task", "pile", "--input", trunc, "--tokenizer", "byte", "--out", tout, "--shard-tokens", "50000",
                           "--val-fraction", "0.2", NULL};
    expect_death(&unlimited, "truncated .zst", child_prepare, targs, trunc, "truncated");
    CHECK(!dir_has(tout, ".shard") && !dir_has(tout, ".tmp") && !dir_has(tout, "meta"), "a failed prepare left files in %s", tout);
    const char *corr = TMP "/err/corr.jsonl.zst", *cout = TMP "/err/corr";
    z.p[z.n / 4] ^= 0x5A;
    z.p[z.n / 4 + 1] ^= 0xA5;
    spit(corr, z.p, z.n);
    const char *cargs[] = {"--task", "pile", "--input", corr, "--tokenizer", "byte", "--out", cout, "--shard-tokens", "50000", NULL};
    expect_death(&unlimited, "corrupted .zst", child_prepare, cargs, corr, NULL);
    CHECK(!dir_has(cout, ".shard") && !dir_has(cout, ".tmp"), "a failed prepare left files in %s", cout);
    free(z.p);
    docs_free(d);

    // an output directory holding shards already is refused
    const char *again[] = {"--task", "pile", "--input", bad, "--tokenizer", "byte", "--out", skip_out, NULL};
    expect_death(&unlimited, "existing shards", child_prepare, again, skip_out, "already holds");
    const char *missing[] = {"--task", "text", "--input", TMP "/err/nope.txt", "--tokenizer", "byte", "--out", TMP "/err/x", NULL};
    expect_death(&unlimited, "missing input", child_prepare, missing, "nope.txt", NULL);

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
        int rc = child_status(&unlimited, child_prepare, us[i], msg, sizeof msg);
        CHECK(rc == 2 && strstr(msg, "hgrn2 prepare: ") && strstr(msg, frags[i]) && strstr(msg, "usage: hgrn2 prepare"),
              "usage error %d: status %d, message: %s", i, rc, msg);
    }
    const char *help[] = {"--help", NULL};
    CHECK(child_status(&unlimited, child_prepare, help, msg, sizeof msg) == 0, "--help failed: %s", msg);
}

// ---- files that are not regular: refused at once, never waited on or read forever ----

static void test_not_regular(void) {
    mkdir(TMP "/fifo", 0777);
    const char *fifo = TMP "/fifo/pipe.jsonl";
    make_fifo(fifo);
    // prepare inputs: a FIFO (standard input through a named pipe) and a device that never ends
    const char *a1[] = {"--task", "pile", "--input", fifo, "--tokenizer", "byte", "--out", TMP "/fifo/o1", NULL};
    expect_death(&limited, "prepare from a FIFO", child_prepare, a1, fifo, "is not a regular file");
    const char *a2[] = {"--task", "text", "--input", "/dev/zero", "--tokenizer", "byte", "--out", TMP "/fifo/o2", NULL};
    expect_death(&limited, "prepare from /dev/zero", child_prepare, a2, "/dev/zero", "is not a regular file");
    const char *a3[] = {"--task", "pile", "--val-input", "/dev/zero", "--input", TMP "/fifo/in.jsonl", "--tokenizer", "byte",
                        "--out", TMP "/fifo/o3", NULL};
    spit(TMP "/fifo/in.jsonl", "{\"text\": \"a\"}\n", 14);
    expect_death(&limited, "prepare --val-input /dev/zero", child_prepare, a3, "/dev/zero", "is not a regular file");

    // outputs: a FIFO where prepare writes a shard's temporary file or its metadata
    const char *a4[] = {"--task", "pile", "--input", TMP "/fifo/in.jsonl", "--tokenizer", "byte", "--out", TMP "/fifo/o4", NULL};
    mkdir(TMP "/fifo/o4", 0777);
    make_fifo(TMP "/fifo/o4/train_000000.shard.part.tmp");
    expect_death(&limited, "prepare writing a shard into a FIFO", child_prepare, a4, "train_000000.shard.part.tmp",
                 "is not a regular file");
    const char *a5[] = {"--task", "pile", "--input", TMP "/fifo/in.jsonl", "--tokenizer", "byte", "--out", TMP "/fifo/o5", NULL};
    mkdir(TMP "/fifo/o5", 0777);
    make_fifo(TMP "/fifo/o5/meta.txt.tmp");
    expect_death(&limited, "prepare writing meta.txt into a FIFO", child_prepare, a5, "meta.txt.tmp", "is not a regular file");
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

// Runs prepare in a child (120 s, 4 GiB more address space) with its summary (stdout) read into sum; returns
// how much its peak resident memory grew while it ran, in MiB (-1: unknown).
static double prepare_mem(const char *what, const char *const *args, const char *summary, char *sum, size_t cap) {
    ChildSpec s = {.cap_mib = 4096, .alarm_s = 120, .out_path = summary, .err_path = TMP "/child.err"};
    ChildRun r = child_spawn(&s, child_prepare, args);
    char msg[8192];
    child_text(s.err_path, msg, sizeof msg);
    CHECK(r.status == 0, "%s: prepare failed (status %d): %s", what, r.status, msg);
    child_text(summary, sum, cap);
    return r.peak_mib;
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
    // A reader that held the line would grow by 40 MiB; the pipeline's own buffers (the line buffer, the jobs,
    // the zstd contexts) take about 14 MiB in a fresh process, less where earlier runs left memory to reuse.
    (void)grew;
#ifndef UNDER_ASAN   // under ASan, redzones and the quarantine of freed blocks make peak memory no measure of the reader
    CHECK(grew >= 0 && grew < big / 2 / 1048576.0, "one 40 MB JSON line: peak memory grew by %.1f MiB (a bounded reader "
          "needs less than half the line)", grew);
#endif
    CHECK(strstr(sum, "3 documents") && strstr(sum, "2 lines longer than 1048576 bytes skipped"),
          "one 40 MB JSON line: the summary does not count 2 long lines and 3 documents: %s", sum);
    Piece want[] = {{"before\n", 0}, {NULL, max - 12}, {"after\n", 0}};
    uint64_t n;
    CHECK(split_matches(out, want, 3, &n), "one 40 MB JSON line: the shards do not hold the other lines' text (%llu tokens)",
          (unsigned long long)n);
    // --strict: fatal at once, naming the file and the line
    const char *sargs[] = {"--task", "pile", "--input", zpath, "--tokenizer", "byte", "--out", TMP "/long/strict",
                           "--max-line-bytes", "1048576", "--strict", NULL};
    expect_death(&limited, "a long JSON line with --strict", child_prepare, sargs, TMP "/long/big.jsonl.zst:2:",
                 "--max-line-bytes");
    // out of range
    const char *u1[] = {"--task", "pile", "--input", zpath, "--tokenizer", "byte", "--out", TMP "/long/u", "--max-line-bytes",
                        "1023", NULL};
    int rc = child_status(&unlimited, child_prepare, u1, msg, sizeof msg);
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
    (void)grew;
#ifndef UNDER_ASAN
    CHECK(grew >= 0 && grew < 100, "one 200 MB WikiText line: peak memory grew by %.1f MiB", grew);
#endif
    CHECK(strstr(sum, "2 documents"), "one 200 MB WikiText line: not 2 articles: %s", sum);
    CHECK(split_matches(wout, wwant, 3, &n), "one 200 MB WikiText line: the shards are not the file's bytes (%llu tokens)",
          (unsigned long long)n);
    rmrf(wout);
    const char *tout = TMP "/long/text";
    const char *targs[] = {"--task", "text", "--input", wpath, "--tokenizer", "byte", "--out", tout, "--val-fraction", "0",
                           "--threads", "1", NULL};
    grew = prepare_mem("one 200 MB text line", targs, TMP "/long/text.txt", sum, sizeof sum);
    (void)grew;
#ifndef UNDER_ASAN
    CHECK(grew >= 0 && grew < 100, "one 200 MB text line: peak memory grew by %.1f MiB", grew);
#endif
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
            spit(path, in.data, in.n);
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

    test_prepare_pile();
    test_prepare_text();
    test_prepare_wiki();
    test_prepare_errors();
    test_not_regular();
    test_long_lines();
    test_scan_jsonl();
    return check_summary("test_prepare");
}
