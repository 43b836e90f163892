// json.c: a recursive-descent JSON reader. Strings are decoded (escapes, \u surrogate pairs) into UTF-8.
// All nodes and strings live in one arena so a multi-megabyte tokenizer.json parses in one pass with few
// allocations; the arena's first bytes hold the root.
#include "json.h"
#include <math.h>

typedef struct {
    const char *s, *end, *start;
    char *err;
    size_t errlen;
    int failed;
    // arena of blocks; each block starts with a pointer to the previous one
    char *block;
    size_t used, cap;
    int depth;
} Parser;

static void *arena(Parser *p, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (p->used + n > p->cap) {
        // blocks grow with the input: a small config.json costs a few KiB, a tokenizer.json a few blocks
        size_t want = p->cap ? 2 * p->cap : 4096 + 2 * (size_t)(p->end - p->start);
        size_t cap = n + 16 > want ? n + 16 : want;
        char *b = xmalloc(cap);
        *(char **)b = p->block;
        p->block = b;
        p->used = 16;
        p->cap = cap;
    }
    void *r = p->block + p->used;
    p->used += n;
    return r;
}

static void fail(Parser *p, const char *what) {
    if (!p->failed) snprintf(p->err, p->errlen, "byte %zu: %s", (size_t)(p->s - p->start), what);
    p->failed = 1;
}

static void skip_ws(Parser *p) {
    while (p->s < p->end && (*p->s == ' ' || *p->s == '\t' || *p->s == '\n' || *p->s == '\r')) p->s++;
}

static int hex4(const char *s, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | cp >> 6); o[1] = (char)(0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) { o[0] = (char)(0xE0 | cp >> 12); o[1] = (char)(0x80 | ((cp >> 6) & 63)); o[2] = (char)(0x80 | (cp & 63)); return 3; }
    o[0] = (char)(0xF0 | cp >> 18); o[1] = (char)(0x80 | ((cp >> 12) & 63));
    o[2] = (char)(0x80 | ((cp >> 6) & 63)); o[3] = (char)(0x80 | (cp & 63));
    return 4;
}

// A string at p->s (the opening quote). The decoded form is never longer than the source.
static void parse_string(Parser *p, Json *out) {
    const char *q = ++p->s;
    while (q < p->end && *q != '"') q += (*q == '\\' && q + 1 < p->end) ? 2 : 1;
    if (q >= p->end) { fail(p, "unterminated string"); return; }
    char *o = arena(p, (size_t)(q - p->s) + 1), *w = o;
    while (p->s < q) {
        unsigned char c = (unsigned char)*p->s;
        if (c < 0x20) { fail(p, "control character in string"); return; }
        if (c != '\\') { *w++ = (char)c; p->s++; continue; }
        char e = p->s[1];
        p->s += 2;
        switch (e) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '/': *w++ = '/'; break;
        case 'b': *w++ = '\b'; break;
        case 'f': *w++ = '\f'; break;
        case 'n': *w++ = '\n'; break;
        case 'r': *w++ = '\r'; break;
        case 't': *w++ = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (q - p->s < 4 || hex4(p->s, &cp)) { fail(p, "bad \\u escape"); return; }
            p->s += 4;
            // a high surrogate followed by a low one is one code point; a lone one becomes U+FFFD
            if (cp >= 0xD800 && cp < 0xDC00 && q - p->s >= 6 && p->s[0] == '\\' && p->s[1] == 'u' &&
                !hex4(p->s + 2, &lo) && lo >= 0xDC00 && lo < 0xE000) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p->s += 6;
            } else if (cp >= 0xD800 && cp < 0xE000) {
                cp = 0xFFFD;
            }
            w += put_utf8(w, cp);
            break;
        }
        default: fail(p, "bad escape in string"); return;
        }
    }
    *w = 0;
    p->s = q + 1;
    out->type = JSON_STR;
    out->str = o;
    out->len = (size_t)(w - o);
}

static void parse_value(Parser *p, Json *out);

// Items are parsed into a growing temporary array, then copied into the arena once their number is known.
static void parse_container(Parser *p, Json *out, int is_obj) {
    char close = is_obj ? '}' : ']';
    p->s++;
    size_t n = 0, cap = 8;
    Json *vals = xmalloc(cap * sizeof(Json)), *keys = is_obj ? xmalloc(cap * sizeof(Json)) : NULL;
    skip_ws(p);
    if (p->s < p->end && *p->s == close) p->s++;
    else for (;;) {
        if (n == cap) {
            cap *= 2;
            vals = xrealloc(vals, cap * sizeof(Json));
            if (is_obj) keys = xrealloc(keys, cap * sizeof(Json));
        }
        skip_ws(p);
        if (is_obj) {
            if (p->s >= p->end || *p->s != '"') { fail(p, "expected a string key"); break; }
            memset(&keys[n], 0, sizeof(Json));
            parse_string(p, &keys[n]);
            if (p->failed) break;
            skip_ws(p);
            if (p->s >= p->end || *p->s != ':') { fail(p, "expected ':'"); break; }
            p->s++;
        }
        parse_value(p, &vals[n]);
        if (p->failed) break;
        n++;
        skip_ws(p);
        if (p->s < p->end && *p->s == ',') { p->s++; continue; }
        if (p->s < p->end && *p->s == close) { p->s++; break; }
        fail(p, is_obj ? "expected ',' or '}'" : "expected ',' or ']'");
        break;
    }
    out->type = is_obj ? JSON_OBJ : JSON_ARR;
    out->len = n;
    out->items = arena(p, n * sizeof(Json));
    memcpy(out->items, vals, n * sizeof(Json));
    if (is_obj) { out->keys = arena(p, n * sizeof(Json)); memcpy(out->keys, keys, n * sizeof(Json)); }
    free(vals);
    free(keys);
}

static void parse_value(Parser *p, Json *out) {
    memset(out, 0, sizeof *out);
    skip_ws(p);
    if (p->s >= p->end) { fail(p, "unexpected end of input"); return; }
    if (++p->depth > 512) { fail(p, "nesting deeper than 512"); return; }
    char c = *p->s;
    if (c == '{' || c == '[') parse_container(p, out, c == '{');
    else if (c == '"') parse_string(p, out);
    else if (p->end - p->s >= 4 && !memcmp(p->s, "true", 4)) { out->type = JSON_BOOL; out->num = 1; p->s += 4; }
    else if (p->end - p->s >= 5 && !memcmp(p->s, "false", 5)) { out->type = JSON_BOOL; p->s += 5; }
    else if (p->end - p->s >= 4 && !memcmp(p->s, "null", 4)) { out->type = JSON_NULL; p->s += 4; }
    else if (c == '-' || (c >= '0' && c <= '9')) {
        char buf[64];
        size_t k = 0;
        while (p->s + k < p->end && k < sizeof buf - 1 && strchr("+-.eE0123456789", p->s[k])) { buf[k] = p->s[k]; k++; }
        buf[k] = 0;
        char *e;
        out->num = strtod(buf, &e);
        if (e != buf + k || !isfinite(out->num)) { fail(p, "bad number"); return; }
        out->type = JSON_NUM;
        p->s += k;
    } else fail(p, "unexpected character");
    p->depth--;
}

Json *json_parse(const char *text, size_t len, char *err, size_t errlen) {
    Parser p = {.s = text, .end = text + len, .start = text, .err = err, .errlen = errlen};
    Json *root = arena(&p, sizeof(Json));
    parse_value(&p, root);
    skip_ws(&p);
    if (!p.failed && p.s != p.end) fail(&p, "trailing characters after the value");
    // the root is the first allocation of the first block: remember the newest block inside it
    Json *r = p.failed ? NULL : root;
    char *first = (char *)root - 16;
    if (p.failed) {
        while (p.block) { char *prev = *(char **)p.block; free(p.block); p.block = prev; }
        return NULL;
    }
    // chain: the first block's link slot must reach every later block; store the newest in slot 8
    *(char **)(first + 8) = p.block;
    return r;
}

void json_free(Json *root) {
    if (!root) return;
    char *first = (char *)root - 16;
    char *b = *(char **)(first + 8);
    while (b) { char *prev = *(char **)b; free(b); b = prev; }
}

const Json *json_get(const Json *obj, const char *key) {
    if (!obj || obj->type != JSON_OBJ) return NULL;
    size_t n = strlen(key);
    for (size_t i = 0; i < obj->len; i++)
        if (obj->keys[i].len == n && !memcmp(obj->keys[i].str, key, n)) return &obj->items[i];
    return NULL;
}

char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open %s: %s", path, strerror(errno));
    if (fseeko(f, 0, SEEK_END) != 0) die("cannot read %s: %s", path, strerror(errno));
    off_t n = ftello(f);
    if (n < 0) die("cannot read %s: %s", path, strerror(errno));
    rewind(f);
    char *buf = xmalloc((size_t)n + 1);
    if (n && fread(buf, 1, (size_t)n, f) != (size_t)n) die("reading %s failed: %s", path, strerror(errno));
    fclose(f);
    buf[n] = 0;
    *len = (size_t)n;
    return buf;
}
