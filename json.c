// json.c: a recursive-descent JSON reader in two passes. Strings are decoded (escapes, \u surrogate pairs)
// into UTF-8. At the end, json_quote: the one string escaper of the files hgrn2 writes.
//
// Memory follows what the document holds, never a guess from its size: the first pass checks the syntax
// and counts the nodes, the boxed numbers, the string bytes and each container's item count; the second
// builds the tree into one allocation of exactly that size. A value is one 8-byte node, an object entry
// two (key and value); a string adds its bytes and a NUL (empty strings share one); a number that is not a
// 32-bit integer adds 8 bytes. Real files need under 2.5 bytes of tree per byte of text; the densest valid
// text, a long array of one-digit numbers, needs 4 (5 with the container counts of [[0],[0],...]). Every
// caller passes a limit (json_default_limit) that turns such a document into a clean error in the first
// pass, before anything large is allocated.
//
// A node is { kind and length, payload }. Containers, strings and boxed numbers are reached through the
// payload as a distance in bytes from the node itself: the tree holds no absolute pointers, so a node fits
// in 8 bytes and the whole tree is one block below 4 GiB. Children always lie after their parent (the block
// is [nodes][boxed numbers][string bytes], nodes handed out in the order the text opens them), so the
// distance is never negative.
#include "json.h"
#include <assert.h>
#include <math.h>

enum { K_NULL, K_BOOL, K_INT, K_DBL, K_STR, K_ARR, K_OBJ };

struct Json {
    uint32_t tl;   // the kind in the low 3 bits, the length above: string bytes, array items, object entries
    uint32_t v;    // K_BOOL: 0 or 1; K_INT: the number (two's complement); others: the distance to the payload
};

#define LEN_MAX ((1u << 29) - 1)
#define MAX_DEPTH 512
#define MAX_NUMBER 255    // characters of one number: more is no real file's

typedef struct {
    const char *s, *end, *start;
    char *err;
    size_t errlen, limit;
    int failed, depth, build;
    // first pass: what the tree needs, and each non-empty container's item count in the order they open
    size_t nodes, dbls, strbytes;
    uint32_t *counts;
    size_t ncounts, capcounts;
    // second pass: the next free node, boxed number and string byte, and the next container count
    Json *next;
    char *dbl_at, *str_at, *str0;
    size_t ci;
} Parser;

static void fail(Parser *p, const char *what) {
    if (!p->failed) snprintf(p->err, p->errlen, "malformed JSON at byte %zu: %s", (size_t)(p->s - p->start), what);
    p->failed = 1;
}

// First pass: stops as soon as the tree, with the container counts, would outgrow the limit.
static int over_limit(Parser *p) {
    if (p->build || p->failed) return p->failed;
    size_t need = 8 * (p->nodes + p->dbls) + p->strbytes + 4 * p->ncounts;
    if (need <= p->limit) return 0;
    snprintf(p->err, p->errlen, "needs more than %zu MiB of memory to parse (the most allowed for %zu bytes of JSON)",
             (p->limit + (1u << 20) - 1) >> 20, (size_t)(p->end - p->start));
    p->failed = 1;
    return 1;
}

static uint32_t dist(const Json *from, const void *to) { return (uint32_t)((const char *)to - (const char *)from); }
static const char *payload(const Json *v) { return (const char *)v + v->v; }

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

// A string at p->s (the opening quote). The first pass counts its decoded bytes, the second writes them;
// the decoded form is never longer than the source.
static void parse_string(Parser *p, Json *out) {
    const char *q = ++p->s;
    while (q < p->end && *q != '"') q += (*q == '\\' && q + 1 < p->end) ? 2 : 1;
    if (q >= p->end) { fail(p, "unterminated string"); return; }
    char *w = p->build ? p->str_at : NULL, u[4];
    size_t n = 0;
    while (p->s < q) {
        unsigned char c = (unsigned char)*p->s;
        if (c < 0x20) { fail(p, "control character in string"); return; }
        if (c != '\\') { if (w) w[n] = (char)c; n++; p->s++; continue; }
        char e = p->s[1], d;
        p->s += 2;
        switch (e) {
        case '"': d = '"'; break;
        case '\\': d = '\\'; break;
        case '/': d = '/'; break;
        case 'b': d = '\b'; break;
        case 'f': d = '\f'; break;
        case 'n': d = '\n'; break;
        case 'r': d = '\r'; break;
        case 't': d = '\t'; break;
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
            size_t k = put_utf8(u, cp);
            if (w) memcpy(w + n, u, k);
            n += k;
            continue;
        }
        default: fail(p, "bad escape in string"); return;
        }
        if (w) w[n] = d;
        n++;
    }
    p->s = q + 1;
    if (n > LEN_MAX) { p->s = q; fail(p, "a string longer than 512 MiB"); return; }
    if (!w) {
        // empty strings all share the NUL at the start of the string bytes
        if (n) p->strbytes += n + 1;
        over_limit(p);
        return;
    }
    if (n) {
        w[n] = 0;
        p->str_at += n + 1;
    } else {
        w = p->str0;
    }
    out->tl = K_STR | (uint32_t)n << 3;
    out->v = dist(out, w);
}

static void parse_value(Parser *p, Json *out);

static void parse_container(Parser *p, Json *out, int is_obj) {
    char close = is_obj ? '}' : ']';
    p->s++;
    skip_ws(p);
    int empty = p->s < p->end && *p->s == close;
    size_t slot = 0, want = 0, n = 0;
    Json *kids = NULL;
    if (p->build) {
        // the count the first pass found for this container, which it met at the same point of the text
        want = empty ? 0 : p->counts[p->ci++];
        kids = p->next;
        p->next += want * (is_obj ? 2 : 1);
        out->tl = (uint32_t)(is_obj ? K_OBJ : K_ARR) | (uint32_t)want << 3;
        out->v = want ? dist(out, kids) : 0;
    } else if (!empty) {
        if (p->ncounts == p->capcounts) {
            p->capcounts = p->capcounts ? 2 * p->capcounts : 64;
            p->counts = xrealloc(p->counts, p->capcounts * sizeof *p->counts);
        }
        slot = p->ncounts++;
        if (over_limit(p)) return;
    }
    if (empty) { p->s++; return; }
    for (;;) {
        if (n == LEN_MAX) { fail(p, is_obj ? "an object of more than 2^29 entries" : "an array of more than 2^29 items"); return; }
        skip_ws(p);
        Json *slot_out = kids ? kids + (is_obj ? 2 * n + 1 : n) : NULL;
        if (is_obj) {
            if (p->s >= p->end || *p->s != '"') { fail(p, "expected a string key"); return; }
            if (!p->build) p->nodes++;
            parse_string(p, kids ? kids + 2 * n : NULL);
            if (p->failed) return;
            skip_ws(p);
            if (p->s >= p->end || *p->s != ':') { fail(p, "expected ':'"); return; }
            p->s++;
        }
        parse_value(p, slot_out);
        if (p->failed) return;
        n++;
        skip_ws(p);
        if (p->s < p->end && *p->s == ',') { p->s++; continue; }
        if (p->s < p->end && *p->s == close) { p->s++; break; }
        fail(p, is_obj ? "expected ',' or '}'" : "expected ',' or ']'");
        return;
    }
    if (!p->build) p->counts[slot] = (uint32_t)n;
    else assert(n == want);
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

// A number: the run of characters that can belong to one must be exactly one number of JSON's grammar.
// 32-bit integers live in the node; other numbers are boxed.
static void parse_number(Parser *p, Json *out) {
    const char *a = p->s, *e = a;
    while (e < p->end && (is_digit(*e) || *e == '-' || *e == '+' || *e == '.' || *e == 'e' || *e == 'E')) e++;
    const char *q = a;
    if (q < e && *q == '-') q++;
    if (q < e && *q == '0') q++;
    else if (q < e && is_digit(*q)) while (q < e && is_digit(*q)) q++;
    else { fail(p, "bad number"); return; }
    if (q < e && *q == '.') {
        if (++q == e || !is_digit(*q)) { fail(p, "bad number"); return; }
        while (q < e && is_digit(*q)) q++;
    }
    if (q < e && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < e && (*q == '+' || *q == '-')) q++;
        if (q == e || !is_digit(*q)) { fail(p, "bad number"); return; }
        while (q < e && is_digit(*q)) q++;
    }
    if (q != e) { fail(p, "bad number"); return; }
    if (e - a > MAX_NUMBER) { fail(p, "a number longer than 255 characters"); return; }
    char buf[MAX_NUMBER + 1], *end;
    memcpy(buf, a, (size_t)(e - a));
    buf[e - a] = 0;
    double x = strtod(buf, &end);
    if (end != buf + (e - a) || !isfinite(x)) { fail(p, "bad number"); return; }
    p->s = e;
    // the range test comes first: converting an out-of-range double to an integer is undefined
    int inline_int = x >= INT32_MIN && x <= INT32_MAX && x == (double)(int32_t)x;
    if (!p->build) {
        if (!inline_int) p->dbls++;
        over_limit(p);
        return;
    }
    if (inline_int) {
        out->tl = K_INT;
        out->v = (uint32_t)(int32_t)x;
    } else {
        memcpy(p->dbl_at, &x, sizeof x);
        out->tl = K_DBL;
        out->v = dist(out, p->dbl_at);
        p->dbl_at += sizeof x;
    }
}

static void parse_value(Parser *p, Json *out) {
    skip_ws(p);
    if (p->s >= p->end) { fail(p, "unexpected end of input"); return; }
    if (p->depth == MAX_DEPTH) { fail(p, "nesting deeper than 512"); return; }
    if (!p->build) {
        p->nodes++;
        if (over_limit(p)) return;
    }
    p->depth++;
    char c = *p->s;
    Json lit = { K_NULL, 0 };
    int is_lit = 1;
    if (c == '{' || c == '[') { parse_container(p, out, c == '{'); is_lit = 0; }
    else if (c == '"') { parse_string(p, out); is_lit = 0; }
    else if (p->end - p->s >= 4 && !memcmp(p->s, "true", 4)) { lit = (Json){ K_BOOL, 1 }; p->s += 4; }
    else if (p->end - p->s >= 5 && !memcmp(p->s, "false", 5)) { lit = (Json){ K_BOOL, 0 }; p->s += 5; }
    else if (p->end - p->s >= 4 && !memcmp(p->s, "null", 4)) p->s += 4;
    else if (c == '-' || is_digit(c)) { parse_number(p, out); is_lit = 0; }
    else { fail(p, "unexpected character"); is_lit = 0; }
    if (is_lit && out) *out = lit;
    p->depth--;
}

size_t json_default_limit(size_t len) {
    return len > (SIZE_MAX - (1u << 20)) / 3 ? SIZE_MAX : 3 * len + (1u << 20);
}

Json *json_parse(const char *text, size_t len, size_t limit, char *err, size_t errlen) {
    // distances inside the tree are 32-bit: it must stay below 4 GiB whatever the caller allows
    if (limit > UINT32_MAX) limit = UINT32_MAX;
    Parser p = {.s = text, .end = text + len, .start = text, .err = err, .errlen = errlen, .limit = limit, .strbytes = 1};
    parse_value(&p, NULL);
    skip_ws(&p);
    if (!p.failed && p.s != p.end) fail(&p, "trailing characters after the value");
    if (p.failed) {
        free(p.counts);
        return NULL;
    }
    size_t size = 8 * (p.nodes + p.dbls) + p.strbytes;
    char *block = xmalloc(size);
    Json *root = (Json *)block;
    p.build = 1;
    p.s = text;
    p.next = root + 1;
    p.dbl_at = block + 8 * p.nodes;
    p.str0 = p.dbl_at + 8 * p.dbls;
    *p.str0 = 0;
    p.str_at = p.str0 + 1;
    parse_value(&p, root);
    assert(!p.failed && (char *)p.next == block + 8 * p.nodes && p.str_at == block + size);
    free(p.counts);
    return root;
}

void json_free(Json *root) { free(root); }

JsonType json_type(const Json *v) {
    static const JsonType types[8] = { JSON_NULL, JSON_BOOL, JSON_NUM, JSON_NUM, JSON_STR, JSON_ARR, JSON_OBJ, JSON_NULL };
    return v ? types[v->tl & 7] : JSON_NULL;
}

size_t json_len(const Json *v) {
    int k = v ? (int)(v->tl & 7) : K_NULL;
    return k == K_STR || k == K_ARR || k == K_OBJ ? v->tl >> 3 : 0;
}

double json_num(const Json *v) {
    int k = v ? (int)(v->tl & 7) : K_NULL;
    if (k == K_INT) return (double)(int32_t)v->v;
    if (k == K_BOOL) return v->v;
    if (k != K_DBL) return NAN;
    double x;
    memcpy(&x, payload(v), sizeof x);
    return x;
}

const char *json_str(const Json *v) { return v && (v->tl & 7) == K_STR ? payload(v) : ""; }

const Json *json_item(const Json *v, size_t i) {
    if (i >= json_len(v)) return NULL;
    if ((v->tl & 7) == K_ARR) return (const Json *)payload(v) + i;
    if ((v->tl & 7) == K_OBJ) return (const Json *)payload(v) + 2 * i + 1;
    return NULL;
}

const Json *json_key(const Json *obj, size_t i) {
    if (json_type(obj) != JSON_OBJ || i >= json_len(obj)) return NULL;
    return (const Json *)payload(obj) + 2 * i;
}

const Json *json_get(const Json *obj, const char *key) {
    if (json_type(obj) != JSON_OBJ) return NULL;
    size_t n = strlen(key), len = json_len(obj);
    const Json *e = (const Json *)payload(obj);
    for (size_t i = 0; i < len; i++)
        if (json_len(&e[2 * i]) == n && !memcmp(json_str(&e[2 * i]), key, n)) return &e[2 * i + 1];
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

// The length of the valid UTF-8 sequence at s[0..n), or 0 when there is none (shortest forms only, no
// surrogates, nothing above U+10FFFF).
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t k = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (!k || k > n) return 0;
    for (size_t i = 1; i < k; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    if (c == 0xE0 && s[1] < 0xA0) return 0;          // overlong
    if (c == 0xED && s[1] >= 0xA0) return 0;         // a surrogate
    if (c == 0xF0 && s[1] < 0x90) return 0;          // overlong
    if (c == 0xF4 && s[1] >= 0x90) return 0;         // above U+10FFFF
    return k;
}

char *json_quote(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    // at most 6 bytes (\u00XX) for each input byte, the quotes and the NUL
    if (n > (SIZE_MAX - 3) / 6) return NULL;
    char *out = xmalloc(6 * n + 3), *o = out;
    *o++ = '"';
    for (size_t i = 0; i < n;) {
        unsigned c = u[i];
        size_t k = utf8_seq(u + i, n - i);
        if (!k) { free(out); return NULL; }
        if (c == '"' || c == '\\') { *o++ = '\\'; *o++ = (char)c; }
        else if (c == '\n') { *o++ = '\\'; *o++ = 'n'; }
        else if (c == '\t') { *o++ = '\\'; *o++ = 't'; }
        else if (c == '\r') { *o++ = '\\'; *o++ = 'r'; }
        else if (c < 0x20) o += sprintf(o, "\\u%04x", c);
        else { memcpy(o, u + i, k); o += k; }
        i += k;
    }
    *o++ = '"';
    *o = 0;
    return out;
}
