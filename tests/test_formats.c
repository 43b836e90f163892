// test_formats.c: the readers of the file formats that come from outside (json.c, and the safetensors
// reader of hf.c) against valid and hostile input: values and messages, nesting, the memory a document may
// take (peak RSS of a forked child under a memory cap), and safetensors headers whose sizes overflow or lie.
// Run from the repository root; needs no shared data. Exits 1 on any failure.
#include "../hf.h"
#include "../json.h"
#include "check.h"
#include "child.h"

#include <math.h>
#include <sys/stat.h>
#include <sys/time.h>

#define TMP "tests/tmp/test_formats"

#ifdef UNDER_ASAN
// The sanitizer's limits stand in for the children's memory cap (tests/child.h). Leak checks are off: the error
// paths under test end in exit(1) with their memory still held, by design.
const char *__asan_default_options(void);
const char *__asan_default_options(void) {
    return "detect_leaks=0:allocator_may_return_null=1:malloc_limit_mb=3000:hard_rss_limit_mb=4000";
}
#endif

// ---------------------------------------------------------------- running hostile cases in a child

// How a child (tests/child.h) ended, its peak memory and the start of its standard error.
typedef struct {
    int status;       // the exit status, or -1 when a signal ended the child
    double peak_mib;  // its peak resident memory beyond what it had at its start (-1: not reported)
    char err[1024];   // the start of its standard error
} Outcome;

// Runs fn(arg) in a child whose address space may grow by at most cap_mib (the safety net: a regression
// fails the test instead of taking the machine's memory).
static Outcome run_capped(void (*fn)(const void *), const void *arg, long cap_mib) {
    ChildRun r = child_run(fn, arg, cap_mib, NULL, TMP "/out.txt", TMP "/err.txt");
    Outcome o = { .status = r.status, .peak_mib = r.peak_mib };
    FILE *f = fopen(TMP "/err.txt", "r");
    if (f) {
        size_t n = fread(o.err, 1, sizeof o.err - 1, f);
        o.err[n] = 0;
        fclose(f);
    }
    return o;
}

// ---------------------------------------------------------------- JSON: values

static Json *parse_ok(const char *text) {
    char err[256];
    Json *j = json_parse(text, strlen(text), json_default_limit(strlen(text)), err, sizeof err);
    CHECK(j != NULL, "json_parse(%s) failed: %s", text, err);
    return j;
}

static void test_json_values(void) {
    Json *j = parse_ok(" {\"a\": [1, -2, 2147483647, -2147483648, 2147483648, -2147483649, 0.5, -1.25e-3, 1E300, -0],"
                       "  \"s\": \"x\\u00e9\\ud83d\\ude00\\n\\\"\\\\\\/\\b\\f\\r\\t\\u0000y\", \"lone\": \"\\ud800z\","
                       "  \"t\": true, \"f\": false, \"n\": null, \"e\": {}, \"ea\": [], \"es\": \"\","
                       "  \"nest\": [[[]], {\"k\": {\"k\": [\"deep\"]}}], \"a\": \"second a\"} ");
    if (!j) return;
    CHECK(json_type(j) == JSON_OBJ && json_len(j) == 11, "root: type %d, %zu entries", json_type(j), json_len(j));
    const Json *a = json_get(j, "a");
    double want[] = { 1, -2, 2147483647.0, -2147483648.0, 2147483648.0, -2147483649.0, 0.5, -1.25e-3, 1e300, 0 };
    CHECK(json_type(a) == JSON_ARR && json_len(a) == 10, "a: type %d, %zu items", json_type(a), json_len(a));
    for (size_t i = 0; i < 10; i++)
        CHECK(json_type(json_item(a, i)) == JSON_NUM && json_num(json_item(a, i)) == want[i], "a[%zu] = %.17g, expected %.17g",
              i, json_num(json_item(a, i)), want[i]);
    CHECK(json_item(a, 10) == NULL && json_key(a, 0) == NULL, "out-of-range item or key of an array is not NULL");
    const Json *s = json_get(j, "s");
    const char sw[] = "x\xc3\xa9\xf0\x9f\x98\x80\n\"\\/\b\f\r\t\0y";
    CHECK(json_type(s) == JSON_STR && json_len(s) == sizeof sw - 1 && !memcmp(json_str(s), sw, sizeof sw),
          "escapes: %zu bytes", json_len(s));
    CHECK(!strcmp(json_str(json_get(j, "lone")), "\xef\xbf\xbdz"), "a lone surrogate is not U+FFFD");
    CHECK(json_type(json_get(j, "t")) == JSON_BOOL && json_num(json_get(j, "t")) == 1, "true");
    CHECK(json_type(json_get(j, "f")) == JSON_BOOL && json_num(json_get(j, "f")) == 0, "false");
    CHECK(json_type(json_get(j, "n")) == JSON_NULL && isnan(json_num(json_get(j, "n"))), "null");
    CHECK(json_type(json_get(j, "e")) == JSON_OBJ && json_len(json_get(j, "e")) == 0 && !json_get(json_get(j, "e"), "x"), "{}");
    CHECK(json_type(json_get(j, "ea")) == JSON_ARR && json_len(json_get(j, "ea")) == 0 && !json_item(json_get(j, "ea"), 0), "[]");
    CHECK(json_type(json_get(j, "es")) == JSON_STR && json_len(json_get(j, "es")) == 0 && !*json_str(json_get(j, "es")), "\"\"");
    const Json *nest = json_get(j, "nest"), *deep = json_get(json_get(json_item(nest, 1), "k"), "k");
    CHECK(json_len(json_item(json_item(nest, 0), 0)) == 0 && !strcmp(json_str(json_item(deep, 0)), "deep"), "nesting");
    CHECK(!strcmp(json_str(json_key(j, 10)), "a") && !strcmp(json_str(json_item(j, 10)), "second a"), "the last entry");
    CHECK(json_key(j, 11) == NULL && json_item(j, 11) == NULL, "out-of-range entry of an object is not NULL");
    // wrong-type and NULL reads give neutral values, never a read outside the tree
    CHECK(json_len(json_get(j, "t")) == 0 && !*json_str(a) && isnan(json_num(s)) && json_get(a, "x") == NULL, "wrong-type reads");
    CHECK(json_type(NULL) == JSON_NULL && json_len(NULL) == 0 && !*json_str(NULL) && !json_item(NULL, 0) && !json_get(NULL, "a"),
          "reads of NULL");
    json_free(j);

    // scalars at the top, and text that is not NUL-terminated
    const char *scalars[] = { "0", "-0.0", "\"x\"", "true", "null", " 7 " };
    for (size_t i = 0; i < sizeof scalars / sizeof *scalars; i++) json_free(parse_ok(scalars[i]));
    char *buf = xmalloc(3);
    memcpy(buf, "123", 3);
    char err[256];
    Json *n = json_parse(buf, 3, json_default_limit(3), err, sizeof err);
    CHECK(n && json_num(n) == 123, "a number that ends the buffer");
    json_free(n);
    memcpy(buf, "[1,", 3);
    CHECK(!json_parse(buf, 3, json_default_limit(3), err, sizeof err) && strstr(err, "byte 3: unexpected end of input"),
          "an array that ends the buffer: %s", err);
    free(buf);
    printf("ok   JSON values: numbers inline and boxed, escapes, surrogates, empty containers, wrong-type reads\n");
}

// ---------------------------------------------------------------- JSON: the string writer

// UTF-8 of code point c.
static size_t put_cp(char *o, uint32_t c) {
    if (c < 0x80) { o[0] = (char)c; return 1; }
    if (c < 0x800) { o[0] = (char)(0xC0 | c >> 6); o[1] = (char)(0x80 | (c & 0x3F)); return 2; }
    if (c < 0x10000) { o[0] = (char)(0xE0 | c >> 12); o[1] = (char)(0x80 | (c >> 6 & 0x3F)); o[2] = (char)(0x80 | (c & 0x3F)); return 3; }
    o[0] = (char)(0xF0 | c >> 18); o[1] = (char)(0x80 | (c >> 12 & 0x3F)); o[2] = (char)(0x80 | (c >> 6 & 0x3F)); o[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

static void test_json_quote(void) {
    static const struct { const char *in; size_t n; const char *out; } cases[] = {
        {"", 0, "\"\""},
        {"plain", 5, "\"plain\""},
        {"q\"b\\s/", 6, "\"q\\\"b\\\\s/\""},
        {"\n\t\r\x01\x1f\x7f", 6, "\"\\n\\t\\r\\u0001\\u001f\x7f\""},
        {"a\0b", 3, "\"a\\u0000b\""},
        {"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf", 13, "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *q = json_quote(cases[i].in, cases[i].n);
        CHECK(q && !strcmp(q, cases[i].out), "json_quote case %zu: %s, expected %s", i, q ? q : "NULL", cases[i].out);
        free(q);
    }
    // not UTF-8: a stray continuation byte, bytes never used, overlong forms, surrogates, beyond U+10FFFF, truncated
    static const char *bad[] = {"\x80", "\xff", "a\xfe", "\xc0\x80", "\xc1\xbf", "\xe0\x9f\xbf", "\xf0\x8f\xbf\xbf",
                                "\xed\xa0\x80", "\xed\xbf\xbf", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xe2\x82", "x\xf0\x9f\x98"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *q = json_quote(bad[i], strlen(bad[i]));
        CHECK(q == NULL, "json_quote accepts invalid UTF-8 case %zu: %s", i, q);
        free(q);
    }
    // random strings of every kind of character read back unchanged
    uint64_t rng = 7;
    char s[400], err[256];
    for (int t = 0; t < 5000; t++) {
        size_t n = 0, len = splitmix64(&rng) % 80;
        for (size_t k = 0; k < len; k++) {
            uint64_t r = splitmix64(&rng);
            uint32_t c;
            switch (r % 5) {
            case 0: c = (uint32_t)(r >> 8) % 0x80; break;              // ASCII, controls, quotes and backslashes
            case 1: c = 0x80 + (uint32_t)(r >> 8) % 0x780; break;      // two bytes
            case 2: c = 0x800 + (uint32_t)(r >> 8) % 0xF800; break;    // three bytes
            case 3: c = 0x10000 + (uint32_t)(r >> 8) % 0x100000; break;
            default: c = "\"\\\n\t/"[(r >> 8) % 5];
            }
            if (c >= 0xD800 && c < 0xE000) c = 0xFFFD;
            n += put_cp(s + n, c);
        }
        char *q = json_quote(s, n);
        CHECK(q != NULL, "json_quote refuses valid UTF-8 (string %d)", t);
        if (!q) continue;
        Json *j = json_parse(q, strlen(q), json_default_limit(strlen(q)), err, sizeof err);
        CHECK(j && json_type(j) == JSON_STR && json_len(j) == n && !memcmp(json_str(j), s, n), "string %d does not read back: %s", t, q);
        json_free(j);
        free(q);
    }
    printf("ok   JSON strings written: escapes, UTF-8 kept, invalid UTF-8 refused, 5000 random strings read back\n");
}

// ---------------------------------------------------------------- JSON: errors

static void test_json_errors(void) {
    struct { const char *text, *msg; } cases[] = {
        { "", "malformed JSON at byte 0: unexpected end of input" },
        { "{\"a\": 0,}", "byte 8: expected a string key" },
        { "{\"a\" 0}", "byte 5: expected ':'" },
        { "[1 2]", "byte 3: expected ',' or ']'" },
        { "{\"a\": 1 \"b\"}", "byte 8: expected ',' or '}'" },
        { "\"x\\q\"", "byte 4: bad escape in string" },
        { "\"\\u12x4\"", "byte 3: bad \\u escape" },
        { "\"\\u12\"", "byte 3: bad \\u escape" },
        { "tru", "byte 0: unexpected character" },
        { "{} {}", "byte 3: trailing characters after the value" },
        { "\"x\ny\"", "control character in string" },
        { "\"xyz", "byte 1: unterminated string" },
        { "\"xyz\\\"", "byte 1: unterminated string" },
        { "1.2.3", "byte 0: bad number" },
        { "01", "byte 0: bad number" },
        { "1.", "byte 0: bad number" },
        { "-", "byte 0: bad number" },
        { "--1", "byte 0: bad number" },
        { "1e", "byte 0: bad number" },
        { "1e+", "byte 0: bad number" },
        { "[.5]", "byte 1: unexpected character" },
        { "+1", "byte 0: unexpected character" },
        { "1e999", "byte 0: bad number" },
        { "[-1e400]", "byte 1: bad number" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char err[256] = "";
        Json *j = json_parse(cases[i].text, strlen(cases[i].text), 1 << 20, err, sizeof err);
        CHECK(!j && !strncmp(err, "malformed JSON at byte ", 23) && strstr(err, cases[i].msg), "%s: expected \"%s\", got %s: %s",
              cases[i].text, cases[i].msg, j ? "a value" : "NULL", err);
        json_free(j);
    }
    // a number of 256 characters is refused, 255 are read (the exponent keeps it finite)
    char num[300], err[256];
    memset(num, '1', sizeof num);
    memcpy(num + 250, "e-240", 5);
    Json *j = json_parse(num, 255, 1 << 20, err, sizeof err);
    CHECK(j && json_num(j) > 1, "a number of 255 characters: %s", j ? "" : err);
    json_free(j);
    memset(num, '1', sizeof num);
    memcpy(num + 251, "e-240", 5);
    CHECK(!json_parse(num, 256, 1 << 20, err, sizeof err) && strstr(err, "longer than 255"), "a number of 256 characters: %s", err);
    printf("ok   JSON errors: one message with the byte offset for each kind of malformed text\n");
}

// ---------------------------------------------------------------- JSON: nesting and memory

static void test_json_depth(void) {
    char *t = xmalloc(5 * 600);
    for (int depth = 510; depth <= 514; depth++) {
        for (int arr = 0; arr < 2; arr++) {
            size_t n = 0;
            for (int i = 0; i < depth; i++) {
                if (arr) t[n++] = '[';
                else { memcpy(t + n, "{\"\":", 4); n += 4; }
            }
            t[n++] = '0';
            for (int i = 0; i < depth; i++) t[n++] = arr ? ']' : '}';
            char err[256];
            Json *j = json_parse(t, n, json_default_limit(n), err, sizeof err);
            if (depth < 512) CHECK(j != NULL, "nesting %d deep fails: %s", depth + 1, err);
            else CHECK(!j && strstr(err, "nesting deeper than 512"), "nesting %d deep: %s", depth + 1, j ? "parsed" : err);
            json_free(j);
        }
    }
    free(t);
    printf("ok   JSON nesting: 512 levels parse, 513 are refused (arrays and objects)\n");
}

// The tree of a document never needs more than its limit, and the limit is checked before the tree is
// allocated: a limit too small by one byte fails, the exact need passes.
static void test_json_limit(void) {
    // 6 nodes, one boxed number (8 bytes), "ab" (3 bytes), the NUL all empty strings share, and one
    // container count (4 bytes)
    const char *text = "[1, 0.5, \"ab\", null, \"\"]";
    size_t need = 6 * 8 + 8 + 3 + 1 + 4;
    char err[256];
    Json *j = json_parse(text, strlen(text), need, err, sizeof err);
    CHECK(j && json_len(j) == 5 && !strcmp(json_str(json_item(j, 2)), "ab") && json_len(json_item(j, 4)) == 0, "the exact limit fails: %s", err);
    json_free(j);
    j = json_parse(text, strlen(text), need - 1, err, sizeof err);
    CHECK(!j && strstr(err, "needs more than 1 MiB of memory to parse"), "a limit one byte short: %s", j ? "parsed" : err);
    json_free(j);
    CHECK(json_default_limit(100) == 300 + (1 << 20) && json_default_limit(SIZE_MAX) == SIZE_MAX, "json_default_limit");
    printf("ok   JSON limit: the exact need parses, one byte less is refused with a message\n");
}

typedef struct { const char *unit; size_t bytes; } Hostile;

// [unit,unit,...,unit] of about h->bytes bytes, parsed with the default limit.
static void hostile_json(const void *arg) {
    const Hostile *h = arg;
    size_t ul = strlen(h->unit), reps = h->bytes / (ul + 1), n = 0;
    char *t = xmalloc(reps * (ul + 1) + 2);
    t[n++] = '[';
    for (size_t i = 0; i < reps; i++) {
        memcpy(t + n, h->unit, ul);
        n += ul;
        t[n++] = ',';
    }
    t[n - 1] = ']';
    char err[256];
    Json *j = json_parse(t, n, json_default_limit(n), err, sizeof err);
    if (!j) die("hostile JSON: %s", err);
    if (json_len(j) != reps) die("hostile JSON: %zu items, expected %zu", json_len(j), reps);
    json_free(j);
    free(t);
}

// A hostile document of 100 MB must parse or fail cleanly, using at most 4 x its size (the text included).
static void test_json_memory(void) {
#ifdef UNDER_ASAN
    size_t mb = 8;   // the sanitizers' shadow memory makes RSS meaningless; check the outcome only
#else
    size_t mb = 100;
#endif
    const char *units[] = { "[]", "0", "[0]", "\"\"", "{}", "{\"\":0}", "[[0,0],[0]]", "0.5", "true" };
    for (size_t i = 0; i < sizeof units / sizeof *units; i++) {
        Hostile h = { units[i], mb << 20 };
        Outcome o = run_capped(hostile_json, &h, (long)(6 * mb + 256));
        int clean = o.status == 0 || (o.status == 1 && strstr(o.err, "needs more than") != NULL);
        CHECK(clean, "%zu MB of [%s,...]: exit %d: %s", mb, units[i], o.status, o.err);
#ifndef UNDER_ASAN
        CHECK(o.peak_mib >= 0 && o.peak_mib <= 4.0 * (double)mb + 16, "%zu MB of [%s,...] took %.0f MiB at its peak", mb, units[i], o.peak_mib);
        printf("     %3zu MB of [%s,...]: %s, peak %.0f MiB\n", mb, units[i], o.status == 0 ? "parsed" : "refused", o.peak_mib);
#endif
    }
    printf("ok   JSON memory: hostile %zu MB documents parse or are refused cleanly within 4 x their size\n", mb);
}

// ---------------------------------------------------------------- safetensors

// A safetensors file: the header length (hlen, or the header's own length when hlen is UINT64_MAX), the
// header, then ndata bytes of data.
static void write_st(const char *path, uint64_t hlen, const char *header, size_t ndata) {
    size_t n = strlen(header);
    if (hlen == UINT64_MAX) hlen = n;
    char *b = xcalloc(8 + n + ndata, 1);
    memcpy(b, &hlen, 8);
    memcpy(b + 8, header, n);
    spit(path, b, 8 + n + ndata);
    free(b);
}

typedef struct { const char *path; int dir; } StJob;

static void open_st(const void *arg) {
    const StJob *j = arg;
    StSet *s = j->dir ? st_open_dir(j->path) : st_open_file(j->path);
    st_close(s);
}

static void expect_st_error(const char *what, const char *path, int dir, const char *needle) {
    StJob j = { path, dir };
    Outcome o = run_capped(open_st, &j, 512);
    CHECK(o.status == 1 && !strncmp(o.err, "hgrn2: error: ", 14) && strstr(o.err, needle) && !strchr(o.err, '\n')[1],
          "%s: expected exit 1 and one line with \"%s\"; got exit %d and: %s", what, needle, o.status, o.err);
}

#define ENTRY(name, dtype, shape, offsets) "\"" name "\": {\"dtype\": \"" dtype "\", \"shape\": " shape ", \"data_offsets\": " offsets "}"

static void test_st_errors(void) {
    const char *f = TMP "/bad.safetensors";
    struct { const char *what, *header; size_t ndata; const char *needle; } cases[] = {
        { "2^32 x 2^32 elements", "{" ENTRY("w", "F32", "[4294967296, 4294967296]", "[0, 0]") "}", 16,
          "tensor w has a shape of more bytes than the file's 16 bytes of data" },
        { "2^31 x 2^31 F32, whose byte count wraps to 0", "{" ENTRY("w", "F32", "[2147483648, 2147483648]", "[0, 0]") "}", 16,
          "tensor w has a shape of more bytes than the file's 16 bytes of data" },
        { "2^63 BF16, whose byte count wraps to 0", "{" ENTRY("w", "BF16", "[4503599627370496, 2048]", "[0, 0]") "}", 16,
          "tensor w has a shape of more bytes" },
        { "a shape beyond the file", "{" ENTRY("w", "F32", "[5]", "[0, 20]") "}", 16, "tensor w has a shape of more bytes" },
        { "offsets shorter than the shape", "{" ENTRY("w", "F32", "[3]", "[0, 8]") "}", 16,
          "tensor w has data offsets [0, 8] that disagree with its shape (12 bytes) or the file size (16 data bytes)" },
        { "offsets longer than the shape", "{" ENTRY("w", "F32", "[2]", "[0, 12]") "}", 16, "data offsets [0, 12] that disagree" },
        { "offsets past the end", "{" ENTRY("w", "F32", "[3]", "[8, 20]") "}", 16, "data offsets [8, 20] that disagree" },
        { "offsets reversed", "{" ENTRY("w", "F32", "[0]", "[8, 4]") "}", 16, "data offsets [8, 4] that disagree" },
        { "fractional offsets", "{" ENTRY("w", "F32", "[3]", "[0.5, 12.5]") "}", 16, "that disagree" },
        { "negative offsets", "{" ENTRY("w", "F32", "[3]", "[-4, 8]") "}", 16, "that disagree" },
        { "huge offsets", "{" ENTRY("w", "F32", "[0]", "[1e300, 1e300]") "}", 16, "that disagree" },
        { "string offsets", "{" ENTRY("w", "F32", "[0]", "[\"0\", 0]") "}", 16, "that disagree" },
        { "a negative dimension", "{" ENTRY("w", "F32", "[-1]", "[0, 0]") "}", 16, "tensor w has a bad shape" },
        { "a fractional dimension", "{" ENTRY("w", "F32", "[1.5]", "[0, 6]") "}", 16, "tensor w has a bad shape" },
        { "a dimension beyond 2^53", "{" ENTRY("w", "F32", "[1e17, 0]", "[0, 0]") "}", 16, "tensor w has a bad shape" },
        { "a string dimension", "{" ENTRY("w", "F32", "[\"3\"]", "[0, 12]") "}", 16, "tensor w has a bad shape" },
        { "nine dimensions", "{" ENTRY("w", "F32", "[1,1,1,1,1,1,1,1,1]", "[0, 4]") "}", 16, "tensor w has 9 dimensions" },
        { "an unknown dtype", "{" ENTRY("w", "Q8", "[1]", "[0, 1]") "}", 16, "tensor w has dtype Q8" },
        { "three offsets", "{" ENTRY("w", "F32", "[1]", "[0, 4, 4]") "}", 16, "tensor w has a malformed header entry" },
        { "an entry that is not an object", "{\"w\": 3}", 16, "tensor w has a malformed header entry" },
        { "a name stored twice", "{" ENTRY("w", "F32", "[1]", "[0, 4]") ", " ENTRY("w", "F32", "[1]", "[4, 8]") "}", 16,
          "tensor w is stored twice" },
        { "a name with a NUL", "{" ENTRY("w\\u0000x", "F32", "[1]", "[0, 4]") "}", 16, "a tensor name holds a NUL byte" },
        { "a header that is not an object", "[1]", 16, "the safetensors header is not a JSON object" },
        { "a malformed header", "{\"w\": ", 16, "the safetensors header: malformed JSON at byte 6: unexpected end of input" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        write_st(f, UINT64_MAX, cases[i].header, cases[i].ndata);
        expect_st_error(cases[i].what, f, 0, cases[i].needle);
    }
    // header lengths that the file cannot hold are refused before anything is allocated for them
    uint64_t lies[] = { (uint64_t)1 << 62, UINT64_MAX - 4, 100000001, 9 };
    for (size_t i = 0; i < sizeof lies / sizeof *lies; i++) {
        write_st(f, lies[i], "{}", 0);
        expect_st_error("a header length beyond the file", f, 0, "is not a safetensors file or is truncated");
    }
    spit(f, "\x02\0\0", 3);
    expect_st_error("a file of 3 bytes", f, 0, "is not a safetensors file (shorter than 8 bytes)");

    // sharded: the index names files of the directory, and each tensor once
    mkdir_p(TMP "/sharded");
    write_st(TMP "/sharded/a.safetensors", UINT64_MAX, "{" ENTRY("x", "F32", "[1]", "[0, 4]") "}", 4);
    write_st(TMP "/sharded/b.safetensors", UINT64_MAX, "{" ENTRY("x", "F32", "[1]", "[0, 4]") "}", 4);
    const char *idx = TMP "/sharded/model.safetensors.index.json";
    struct { const char *what, *json, *needle; } icases[] = {
        { "a shard in another directory", "{\"weight_map\": {\"x\": \"../a.safetensors\"}}", "weight_map entry x is not a file name" },
        { "a shard named ..", "{\"weight_map\": {\"x\": \"..\"}}", "weight_map entry x is not a file name" },
        { "a shard with no name", "{\"weight_map\": {\"x\": \"\"}}", "weight_map entry x is not a file name" },
        { "a shard name with a NUL", "{\"weight_map\": {\"x\": \"a.safetensors\\u0000/\"}}", "weight_map entry x is not a file name" },
        { "a tensor the shard lacks", "{\"weight_map\": {\"y\": \"a.safetensors\"}}", "names tensor y in a.safetensors, which does not hold it" },
        { "a tensor in two shards", "{\"weight_map\": {\"x\": \"a.safetensors\", \"z\": \"b.safetensors\"}}",
          "tensor x is stored twice, also in " TMP "/sharded/a.safetensors" },
        { "no weight_map", "{\"weights\": {}}", "has no weight_map object" },
    };
    for (size_t i = 0; i < sizeof icases / sizeof *icases; i++) {
        spit(idx, icases[i].json, strlen(icases[i].json));
        expect_st_error(icases[i].what, TMP "/sharded", 1, icases[i].needle);
    }
    printf("ok   safetensors errors: shapes and byte counts that overflow, offsets that lie, header lengths, names\n");
}

static void test_st_valid(void) {
    // st_write and st_open_file agree, scalars and empty tensors included
    const char *f = TMP "/ok.safetensors";
    float a[6] = { 1, -2, 3.5f, 0, 1e-3f, -7 }, b[1] = { 42 };
    const char *names[] = { "b.weight", "a", "empty" };
    const float *data[] = { a, b, a };
    const int64_t shapes[3][8] = { { 2, 3 }, { 0 }, { 0, 5 } };
    const int ndims[] = { 2, 0, 2 };
    st_write(f, 3, names, data, shapes, ndims, ST_F32);
    StSet *s = st_open_file(f);
    const StTensor *t = st_find(s, "b.weight"), *u = st_find(s, "a"), *e = st_find(s, "empty");
    CHECK(s->n == 3 && t && u && e && !st_find(s, "b") && !st_find(s, "zz"), "st_find after st_write");
    if (t && u && e) {
        float got[6];
        st_read(s, t, got);
        CHECK(t->ndim == 2 && t->numel == 6 && !memcmp(got, a, sizeof a), "b.weight reads back");
        st_read(s, u, got);
        CHECK(u->ndim == 0 && u->numel == 1 && got[0] == 42, "a scalar reads back");
        CHECK(e->numel == 0, "an empty tensor has %lld elements", (long long)e->numel);
    }
    st_close(s);

    // names of any length, and names that need escapes in JSON, come back as they went in
    char longname[1200];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    const char *odd[] = { longname, "quote\"back\\slash\ttab\x01" };
    const int64_t one[2][8] = { { 1 }, { 1 } };
    const int nd1[] = { 1, 1 };
    const float *d2[] = { b, b };
    st_write(f, 2, odd, d2, one, nd1, ST_BF16);
    s = st_open_file(f);
    CHECK(s->n == 2 && st_find(s, odd[0]) && st_find(s, odd[1]), "names of 1199 bytes and with escapes do not come back");
    st_close(s);

    // a sharded checkpoint of many tensors opens in well under a second: names are looked up by bisection
    int n = 200000;
    mkdir_p(TMP "/many");
    char *h = xmalloc((size_t)n * 80 + 16), *m = xmalloc((size_t)n * 40 + 32);
    size_t hn = 0, mn = 0;
    hn += (size_t)sprintf(h + hn, "{");
    mn += (size_t)sprintf(m + mn, "{\"weight_map\": {");
    for (int i = 0; i < n; i++) {
        hn += (size_t)sprintf(h + hn, "%s\"t%d\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}", i ? "," : "", i);
        mn += (size_t)sprintf(m + mn, "%s\"t%d\": \"s.safetensors\"", i ? "," : "", i);
    }
    sprintf(h + hn, "}");
    sprintf(m + mn, "}}");
    write_st(TMP "/many/s.safetensors", UINT64_MAX, h, 0);
    spit(TMP "/many/model.safetensors.index.json", m, strlen(m));
    free(h);
    free(m);
    double t0 = now_s();
    s = st_open_dir(TMP "/many");
    double dt = now_s() - t0;
    CHECK(s->n == n && st_find(s, "t0") && st_find(s, "t199999") && !st_find(s, "t200000"), "the sharded checkpoint of %d tensors", n);
    CHECK(dt < 10, "opening %d tensors through an index took %.1f s", n, dt);
    st_close(s);
    remove(TMP "/many/s.safetensors");
    remove(TMP "/many/model.safetensors.index.json");
    printf("ok   safetensors: st_write round trip, scalars and empty tensors, %d tensors through an index in %.2f s\n", n, dt);
}

typedef struct { const char *path; size_t bytes; } HostileSt;

static void hostile_st(const void *arg) {
    const HostileSt *h = arg;
    // {"a": [[],[],...,[]]}: a header of nothing but empty arrays
    size_t reps = (h->bytes - 16) / 3, n = 0;
    char *t = xmalloc(8 + reps * 3 + 16);
    n += 8;
    memcpy(t + n, "{\"a\": [", 7);
    n += 7;
    for (size_t i = 0; i < reps; i++) { memcpy(t + n, "[],", 3); n += 3; }
    memcpy(t + n - 1, "]}", 2);
    n += 1;
    uint64_t hlen = n - 8;
    memcpy(t, &hlen, 8);
    spit(h->path, t, n);
    free(t);
    // the peak should come from reading the file, not from writing it: start from a fresh high-water mark
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) { fputs("5", f); fclose(f); }
    StSet *s = st_open_file(h->path);
    st_close(s);
}

// A 99 MB header of empty arrays took 3.1 GB before the tree was sized exactly.
static void test_st_memory(void) {
#ifdef UNDER_ASAN
    size_t mb = 8;
#else
    size_t mb = 99;
#endif
    HostileSt h = { TMP "/hostile.safetensors", mb * 1000000 };
    Outcome o = run_capped(hostile_st, &h, (long)(6 * mb + 256));
    CHECK(o.status == 1 && strstr(o.err, "tensor a has a malformed header entry"), "%zu MB header of []: exit %d: %s", mb, o.status, o.err);
#ifndef UNDER_ASAN
    CHECK(o.peak_mib >= 0 && o.peak_mib <= 4.0 * (double)mb + 16, "a %zu MB header of [] took %.0f MiB at its peak", mb, o.peak_mib);
#endif
    remove(h.path);
    printf("ok   safetensors memory: a %zu MB header of empty arrays is refused cleanly, peak %.0f MiB\n", mb, o.peak_mib);
}

int main(void) {
    mkdir_p(TMP);
    double t0 = now_s();
    void (*tests[])(void) = { test_json_values, test_json_quote, test_json_errors, test_json_depth, test_json_limit, test_json_memory,
                              test_st_errors, test_st_valid, test_st_memory };
    for (size_t i = 0; i < sizeof tests / sizeof *tests; i++) {
        double ts = now_s();
        tests[i]();
        printf("     (%.1f s)\n", now_s() - ts);
    }
    printf("\n%.1f s\n", now_s() - t0);
    return check_summary("test_formats");
}
