// prepare.c: `hgrn2 prepare` as a library call: text, WikiText and JSON Lines inputs into token shards.
// The JSON Lines scanner and the pipeline (input streams and the line reader: input.c). Policies: docs/shards.md.
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include <zstd.h>

#include "data.h"
#include "input.h"
#include "tokenizer.h"

// ----------------------------------------------------------------------------------------------------------
// prepare, part 2: one JSON Lines record -> its "text" field, unescaped. A complete JSON parser for one line,
// so that a malformed record is reported, never half-used. Not json.c's tree builder: this one allocates
// nothing per line, skips the other fields in place and appends the text straight into the document, which
// makes it about twice as fast, and it runs on the one reader thread that feeds all tokenizer threads.

typedef struct {
    const uint8_t *s, *p, *end;
    const char *err;
    const char *field;   // the member whose string is the document ("text" unless --text-field)
} JsonScan;

static int js_fail(JsonScan *j, const char *msg) {
    if (!j->err) j->err = msg;
    return 0;
}

static void js_ws(JsonScan *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\r' || *j->p == '\n')) j->p++;
}

static void utf8_put(ByteBuf *b, uint32_t cp) {
    uint8_t u[4];
    size_t n;
    if (cp < 0x80) { u[0] = (uint8_t)cp; n = 1; }
    else if (cp < 0x800) { u[0] = (uint8_t)(0xC0 | cp >> 6); u[1] = (uint8_t)(0x80 | (cp & 63)); n = 2; }
    else if (cp < 0x10000) {
        u[0] = (uint8_t)(0xE0 | cp >> 12); u[1] = (uint8_t)(0x80 | (cp >> 6 & 63)); u[2] = (uint8_t)(0x80 | (cp & 63)); n = 3;
    } else {
        u[0] = (uint8_t)(0xF0 | cp >> 18); u[1] = (uint8_t)(0x80 | (cp >> 12 & 63));
        u[2] = (uint8_t)(0x80 | (cp >> 6 & 63)); u[3] = (uint8_t)(0x80 | (cp & 63)); n = 4;
    }
    bytebuf_append(b, u, n);
}

static int js_hex4(JsonScan *j, uint32_t *v) {
    if (j->end - j->p < 4) return js_fail(j, "truncated \\u escape");
    *v = 0;
    for (int i = 0; i < 4; i++) {
        uint8_t c = j->p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return js_fail(j, "invalid \\u escape");
        *v = *v << 4 | (uint32_t)d;
    }
    j->p += 4;
    return 1;
}

// The string at j->p (which is '"'); its unescaped bytes are appended to out unless out is NULL. Raw bytes
// pass through as they are, invalid UTF-8 included, except control characters, which JSON forbids; a lone
// surrogate escape becomes U+FFFD.
static int js_string(JsonScan *j, ByteBuf *out) {
    j->p++;
    for (;;) {
        const uint8_t *q = j->p;
        while (q < j->end && *q != '"' && *q != '\\' && *q >= 0x20) q++;
        if (out && q > j->p) bytebuf_append(out, j->p, (size_t)(q - j->p));
        j->p = q;
        if (q == j->end) return js_fail(j, "unterminated string");
        if (*q < 0x20) return js_fail(j, "raw control character in a string (JSON needs it escaped)");
        j->p++;
        if (*q == '"') return 1;
        if (j->p == j->end) return js_fail(j, "unterminated string");
        uint8_t c = *j->p++;
        char e;
        switch (c) {
        case '"': e = '"'; break;
        case '\\': e = '\\'; break;
        case '/': e = '/'; break;
        case 'b': e = '\b'; break;
        case 'f': e = '\f'; break;
        case 'n': e = '\n'; break;
        case 'r': e = '\r'; break;
        case 't': e = '\t'; break;
        case 'u': {
            uint32_t cp;
            if (!js_hex4(j, &cp)) return 0;
            if (cp >= 0xD800 && cp < 0xDC00 && j->end - j->p >= 6 && j->p[0] == '\\' && j->p[1] == 'u') {
                const uint8_t *save = j->p;
                uint32_t lo;
                j->p += 2;
                if (!js_hex4(j, &lo)) return 0;
                if (lo >= 0xDC00 && lo < 0xE000) cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                else j->p = save;   // not a pair: the high half alone, the next escape read on its own
            }
            if (cp >= 0xD800 && cp < 0xE000) cp = 0xFFFD;
            if (out) utf8_put(out, cp);
            continue;
        }
        default:
            j->p--;
            return js_fail(j, "invalid escape");
        }
        if (out) bytebuf_append(out, &e, 1);
    }
}

static int js_literal(JsonScan *j, const char *lit) {
    size_t n = strlen(lit);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n) != 0) return js_fail(j, "invalid literal");
    j->p += n;
    return 1;
}

static int js_digits(JsonScan *j) {
    const uint8_t *q = j->p;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
    return j->p > q ? 1 : js_fail(j, "invalid number");
}

static int js_number(JsonScan *j) {
    if (*j->p == '-') j->p++;
    if (j->p < j->end && *j->p == '0') j->p++;
    else if (!(j->p < j->end && *j->p >= '1' && *j->p <= '9') || !js_digits(j)) return js_fail(j, "invalid number");
    if (j->p < j->end && *j->p == '.') {
        j->p++;
        if (!js_digits(j)) return 0;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-')) j->p++;
        if (!js_digits(j)) return 0;
    }
    return 1;
}

// Any value (skipped). Object members and array elements share the loop; key_out, when given, receives each
// key of the top-level object and the caller handles the value (text_out: the "text" member's string).
static int js_value(JsonScan *j, int depth);
static int js_container(JsonScan *j, int depth, ByteBuf *key, ByteBuf *text, int *found) {
    uint8_t close = *j->p == '{' ? '}' : ']';
    j->p++;
    js_ws(j);
    if (j->p < j->end && *j->p == close) { j->p++; return 1; }
    for (;;) {
        js_ws(j);
        int is_text = 0;
        if (close == '}') {
            if (j->p == j->end || *j->p != '"') return js_fail(j, "expected a string key");
            if (key) key->n = 0;
            if (!js_string(j, key)) return 0;
            is_text = key && key->n == strlen(j->field) && !memcmp(key->data, j->field, key->n);
            js_ws(j);
            if (j->p == j->end || *j->p != ':') return js_fail(j, "expected ':' after a key");
            j->p++;
            js_ws(j);
        }
        if (is_text) {
            if (j->p == j->end || *j->p != '"')
                return js_fail(j, strcmp(j->field, "text") ? "the --text-field member is not a string" : "the \"text\" field is not a string");
            text->n = 0;   // a repeated key: the last one counts, as in most JSON readers
            if (!js_string(j, text)) return 0;
            *found = 1;
        } else if (!js_value(j, depth + 1)) return 0;
        js_ws(j);
        if (j->p < j->end && *j->p == ',') { j->p++; continue; }
        if (j->p < j->end && *j->p == close) { j->p++; return 1; }
        return js_fail(j, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static int js_value(JsonScan *j, int depth) {
    if (depth > 200) return js_fail(j, "nested deeper than 200 levels");
    js_ws(j);
    if (j->p == j->end) return js_fail(j, "expected a value");
    switch (*j->p) {
    case '"': return js_string(j, NULL);
    case '{':
    case '[': return js_container(j, depth, NULL, NULL, NULL);
    case 't': return js_literal(j, "true");
    case 'f': return js_literal(j, "false");
    case 'n': return js_literal(j, "null");
    default:
        if (*j->p == '-' || (*j->p >= '0' && *j->p <= '9')) return js_number(j);
        return js_fail(j, "unexpected character");
    }
}

// The string of a JSON Lines record's member `field`, into text (replacing its content). Returns NULL, or what
// is wrong with *col the 1-based byte position in the line.
static const char *json_record_text(const char *line, size_t n, const char *field, ByteBuf *text, ByteBuf *key,
                                    size_t *col) {
    JsonScan j = {(const uint8_t *)line, (const uint8_t *)line, (const uint8_t *)line + n, NULL, field};
    int found = 0;
    text->n = 0;
    js_ws(&j);
    if (j.p == j.end || *j.p != '{') js_fail(&j, "a record must be a JSON object");
    else if (js_container(&j, 0, key, text, &found)) {
        js_ws(&j);
        if (j.p != j.end) js_fail(&j, "characters after the object");
        else if (!found) js_fail(&j, strcmp(field, "text") ? "no member named by --text-field" : "no \"text\" field");
    }
    *col = (size_t)(j.p - j.s) + 1;
    return j.err;
}

static int blank_line(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return 0;
    return 1;
}

enum { JL_END, JL_RECORD, JL_BLANK, JL_MALFORMED, JL_TOO_LONG };

// The next line of a JSON Lines input (a reader in skip mode), classified: JL_RECORD, its "text" string in
// text (replacing its content); JL_BLANK, only whitespace; JL_MALFORMED, with what is wrong in *err and the
// 1-based byte position in *col; JL_TOO_LONG, longer than the reader's max; JL_END.
static int jsonl_next(LineReader *lr, const char *field, ByteBuf *text, ByteBuf *key, const char **err, size_t *col) {
    const char *line;
    size_t n;
    int r = next_line(lr, &line, &n);
    if (r == LINE_END) return JL_END;
    if (r != LINE_WHOLE) return JL_TOO_LONG;
    if (blank_line(line, n)) return JL_BLANK;
    *err = json_record_text(line, n, field, text, key, col);
    return *err ? JL_MALFORMED : JL_RECORD;
}

void prepare_scan_jsonl(const char *buf, size_t n, size_t max_line, PrepareScanCounts *out) {
    LineReader lr = {.mem = (const uint8_t *)buf, .mem_n = n, .max = max_line};
    ByteBuf text = {0}, key = {0};
    const char *err;
    size_t col;
    int kind;
    memset(out, 0, sizeof *out);
    while ((kind = jsonl_next(&lr, "text", &text, &key, &err, &col)) != JL_END) {
        if (kind == JL_RECORD) {
            out->records++;
            out->text_bytes += text.n;
        } else if (kind == JL_BLANK) out->blank++;
        else if (kind == JL_MALFORMED) out->malformed++;
        else out->too_long++;
    }
    out->lines = lr.lineno;
    free(lr.buf);
    free(text.data);
    free(key.data);
}

// ----------------------------------------------------------------------------------------------------------
// prepare, part 3: the pipeline. The main thread reads documents and packs them into jobs of about 1 MiB of
// text; worker threads tokenize jobs in any order; one writer thread appends their ids to the shards in job
// order, so the output does not depend on the thread count. A document longer than PIECE_MAX is tokenized
// in pieces cut where pretokenizers split anyway (see safe_cut), which keeps memory bounded.

#define JOB_BYTES (1u << 20)
#define PIECE_MAX (1u << 20)
#define COPY_TOKENS (1u << 20)

enum { JOB_FREE, JOB_FILLED, JOB_DONE };

typedef struct {
    size_t off, len, ids_end;   // text bytes [off, off+len) tokenize to ids [previous ids_end, ids_end)
    int val, ends_doc;
} Seg;

typedef struct {
    ByteBuf text;
    IdBuf ids;
    Seg *segs;
    size_t nseg, segcap;
    int state;
} Job;

// The shards of one split being written: DIR/<split>_NNNNNN.shard.part until the run succeeds.
typedef struct {
    const char *dir, *split, *tokname;
    uint32_t vocab;
    uint64_t max_tokens, in_shard, total;
    ShardWriter *w;
    size_t nshards, cap;
    uint64_t *counts;
    char **parts;
} SplitOut;

typedef struct {
    const Tokenizer *tok;
    int32_t eot;
    PrepareTask task;
    int strict, have_val_inputs;
    const char *text_field;
    double val_fraction;
    // pipeline
    Job *jobs;
    int njobs, reader_done;
    uint64_t seq_fill, seq_tok, seq_write;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    // reader
    Job *cur;
    ByteBuf doc, key;
    size_t doc_off;
    int doc_val, doc_emitted;
    size_t max_line;                 // longest line held whole (--max-line-bytes)
    uint64_t ndocs, malformed, too_long;
    uint64_t bytes_in, bytes_text;   // atomics: read by the writer for progress
    // writer
    SplitOut train, val;
    double t0, last_print;
    int tty;
} Prep;

static void bytebuf_reserve(ByteBuf *b, size_t extra) {
    if (b->cap - b->n >= extra) return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->n < extra) cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
}

static char *part_name(const SplitOut *o, size_t i, int final) {
    return xasprintf("%s/%s_%06zu.shard%s", o->dir, o->split, i, final ? "" : ".part");
}

static void out_append(SplitOut *o, const int32_t *ids, size_t n) {
    while (n) {
        if (!o->w) {
            if (o->nshards == o->cap) {
                o->cap = o->cap ? 2 * o->cap : 16;
                o->counts = xrealloc(o->counts, o->cap * sizeof *o->counts);
                o->parts = xrealloc(o->parts, o->cap * sizeof *o->parts);
            }
            o->parts[o->nshards] = part_name(o, o->nshards, 0);
            o->counts[o->nshards] = 0;
            data_cleanup_add(o->parts[o->nshards]);
            o->w = shard_writer_open(o->parts[o->nshards], o->vocab, o->tokname);
            o->nshards++;
            o->in_shard = 0;
        }
        size_t take = o->max_tokens - o->in_shard < n ? (size_t)(o->max_tokens - o->in_shard) : n;
        shard_writer_append(o->w, ids, take);
        ids += take;
        n -= take;
        o->in_shard += take;
        o->total += take;
        o->counts[o->nshards - 1] += take;
        if (o->in_shard == o->max_tokens) {
            shard_writer_close(o->w);
            o->w = NULL;
        }
    }
}

static void out_close(SplitOut *o) {
    if (o->w) shard_writer_close(o->w);
    o->w = NULL;
}

// The progress line: rewritten in place on a terminal, a new line every 5 s otherwise (logs). The final call
// only ends the terminal's line; the summary follows on stdout.
static void progress(Prep *p, int final) {
    double t = now_s();
    if (final && !p->tty) return;
    if (!final && t - p->last_print < (p->tty ? 0.25 : 5.0)) return;
    p->last_print = t;
    double mb_in = (double)__atomic_load_n(&p->bytes_in, __ATOMIC_RELAXED) / 1e6;
    double mb_text = (double)__atomic_load_n(&p->bytes_text, __ATOMIC_RELAXED) / 1e6;
    double el = t - p->t0 > 1e-9 ? t - p->t0 : 1e-9;
    fprintf(stderr, "%sprepare: %.2fM tokens, %.1f MB read (%.1f MB text), %.1f MB/s%s", p->tty ? "\r" : "",
            (double)(p->train.total + p->val.total) / 1e6, mb_in, mb_text, mb_text / el, p->tty ? "\x1b[K" : "\n");
    if (final && p->tty) fputc('\n', stderr);
}

static void *prep_worker(void *arg) {
    Prep *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->seq_tok == p->seq_fill && !p->reader_done) pthread_cond_wait(&p->cv, &p->mu);
        if (p->seq_tok == p->seq_fill) break;
        Job *j = &p->jobs[p->seq_tok % (uint64_t)p->njobs];
        p->seq_tok++;
        pthread_mutex_unlock(&p->mu);
        j->ids.n = 0;
        for (size_t i = 0; i < j->nseg; i++) {
            tokenizer_encode(p->tok, j->text.data + j->segs[i].off, j->segs[i].len, &j->ids);
            j->segs[i].ids_end = j->ids.n;
        }
        pthread_mutex_lock(&p->mu);
        j->state = JOB_DONE;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void *prep_writer(void *arg) {
    Prep *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        Job *j = &p->jobs[p->seq_write % (uint64_t)p->njobs];
        while (!(p->seq_write < p->seq_fill && j->state == JOB_DONE) && !(p->reader_done && p->seq_write == p->seq_fill))
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->seq_write == p->seq_fill) break;
        pthread_mutex_unlock(&p->mu);
        size_t prev = 0;
        for (size_t i = 0; i < j->nseg; i++) {
            Seg *s = &j->segs[i];
            SplitOut *o = s->val ? &p->val : &p->train;
            out_append(o, j->ids.ids + prev, s->ids_end - prev);
            if (s->ends_doc && p->eot >= 0) out_append(o, &p->eot, 1);
            prev = s->ids_end;
        }
        progress(p, 0);
        pthread_mutex_lock(&p->mu);
        j->state = JOB_FREE;
        p->seq_write++;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void rd_submit(Prep *p) {
    pthread_mutex_lock(&p->mu);
    p->cur->state = JOB_FILLED;
    p->seq_fill++;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    p->cur = NULL;
}

static void rd_add_seg(Prep *p, const char *text, size_t len, int ends_doc) {
    if (!p->cur) {
        Job *j = &p->jobs[p->seq_fill % (uint64_t)p->njobs];
        pthread_mutex_lock(&p->mu);
        while (j->state != JOB_FREE) pthread_cond_wait(&p->cv, &p->mu);
        pthread_mutex_unlock(&p->mu);
        j->text.n = 0;
        j->nseg = 0;
        p->cur = j;
    }
    Job *j = p->cur;
    if (j->nseg == j->segcap) {
        j->segcap = j->segcap ? 2 * j->segcap : 256;
        j->segs = xrealloc(j->segs, j->segcap * sizeof *j->segs);
    }
    j->segs[j->nseg++] = (Seg){j->text.n, len, 0, p->doc_val, ends_doc};
    bytebuf_append(&j->text, text, len);
    p->doc_emitted = 1;
    if (j->text.n >= JOB_BYTES) rd_submit(p);
}

// Whole documents go to validation by a hash of their index, so the split does not depend on threads,
// shard size or anything but the order of the inputs. Document 0 always trains, so training is never empty.
static int doc_is_val(uint64_t index, double fraction) {
    return index > 0 && (double)(mix64(index ^ 0x76616C6964617465ull) >> 11) * 0x1.0p-53 < fraction;
}

static void rd_begin_doc(Prep *p, int from_val_input) {
    p->doc.n = 0;
    p->doc_off = 0;
    p->doc_emitted = 0;
    p->doc_val = from_val_input || (!p->have_val_inputs && doc_is_val(p->ndocs, p->val_fraction));
}

static int ascii_letter(uint8_t c) { return (c | 32) >= 'a' && (c | 32) <= 'z'; }
static int ascii_space(uint8_t c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

// Where to cut a document too long to tokenize in one piece: a cut in s(lo, hi] of s[0, n), hi < n.
// Preferably before the space of "letter space letter": GPT-2-style regexes split there (the space starts
// the next word's piece) and so does Metaspace, and a tokenizer that adds a prefix space adds none to a
// piece that starts with one, so the ids equal those of the whole text. Else after a newline between two
// non-space characters; else at a UTF-8 character boundary.
static size_t safe_cut(const uint8_t *s, size_t lo, size_t hi, size_t n) {
    for (size_t c = hi; c > lo; c--)
        if (s[c] == ' ' && c + 1 < n && ascii_letter(s[c - 1]) && ascii_letter(s[c + 1])) return c;
    for (size_t c = hi; c >= lo + 2; c--)
        if (s[c - 1] == '\n' && !ascii_space(s[c - 2]) && !ascii_space(s[c])) return c;
    for (size_t c = hi; c > lo; c--)
        if ((s[c] & 0xC0) != 0x80) return c;
    return hi;
}

// After bytes were appended to the current document: hand off pieces while it is too long for one.
static void rd_grew(Prep *p) {
    while (p->doc.n - p->doc_off > PIECE_MAX) {
        size_t cut = safe_cut((const uint8_t *)p->doc.data, p->doc_off + PIECE_MAX / 2, p->doc_off + PIECE_MAX, p->doc.n);
        rd_add_seg(p, p->doc.data + p->doc_off, cut - p->doc_off, 0);
        p->doc_off = cut;
    }
    if (p->doc_off) {
        memmove(p->doc.data, p->doc.data + p->doc_off, p->doc.n - p->doc_off);
        p->doc.n -= p->doc_off;
        p->doc_off = 0;
    }
}

static void rd_end_doc(Prep *p) {
    if (!p->doc_emitted && p->doc.n == 0) return;   // an empty document: no tokens, no separator
    rd_add_seg(p, p->doc.data, p->doc.n, 1);
    p->ndocs++;
    p->doc.n = 0;
}

// A top-level WikiText heading " = Title = " (level-2 headings are " = = Title = = ").
static int wiki_heading(const char *s, size_t n) {
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ')) n--;
    while (n && *s == ' ') { s++; n--; }
    return n >= 5 && s[0] == '=' && s[1] == ' ' && s[2] != '=' && s[n - 1] == '=' && s[n - 2] == ' ' && s[n - 3] != '=';
}

static void read_input(Prep *p, const char *path, int from_val_input) {
    InStream in;
    input_open(&in, path, &p->bytes_in);
    if (p->task == PREPARE_TEXT) {
        rd_begin_doc(p, from_val_input);
        for (;;) {
            bytebuf_reserve(&p->doc, 1u << 20);
            size_t got = input_read(&in, (uint8_t *)p->doc.data + p->doc.n, 1u << 20);
            if (!got) break;
            p->doc.n += got;
            __atomic_fetch_add(&p->bytes_text, (uint64_t)got, __ATOMIC_RELAXED);
            rd_grew(p);
        }
        rd_end_doc(p);
        input_close(&in);
        return;
    }
    LineReader lr = {.in = &in, .max = p->max_line, .parts = p->task == PREPARE_WIKI103};
    const char *line;
    size_t n;
    uint64_t counted = 0;
    int kind;
    if (p->task == PREPARE_WIKI103) {
        // An article runs from its heading to the next one; text before the first heading joins the first.
        // A line longer than max_line comes in parts and is never a heading.
        int in_article = 0;
        rd_begin_doc(p, from_val_input);
        while ((kind = next_line(&lr, &line, &n)) != LINE_END) {
            __atomic_fetch_add(&p->bytes_text, lr.bytes - counted, __ATOMIC_RELAXED);
            counted = lr.bytes;
            if (kind == LINE_WHOLE && wiki_heading(line, n)) {
                if (in_article) {
                    rd_end_doc(p);
                    rd_begin_doc(p, from_val_input);
                }
                in_article = 1;
            }
            bytebuf_append(&p->doc, line, n);
            rd_grew(p);
        }
        rd_end_doc(p);
    } else {
        const char *err = NULL;
        size_t col = 0;
        for (;;) {
            rd_begin_doc(p, from_val_input);
            kind = jsonl_next(&lr, p->text_field, &p->doc, &p->key, &err, &col);
            __atomic_fetch_add(&p->bytes_text, lr.bytes - counted, __ATOMIC_RELAXED);
            counted = lr.bytes;
            if (kind == JL_END) break;
            if (kind == JL_BLANK) continue;
            unsigned long long ln = (unsigned long long)lr.lineno;
            if (kind == JL_TOO_LONG) {
                if (p->strict) die("%s:%llu: line longer than %zu bytes (--max-line-bytes)", path, ln, p->max_line);
                if (++p->too_long <= 5)
                    fprintf(stderr, "hgrn2 prepare: warning: %s:%llu: line longer than %zu bytes (--max-line-bytes); "
                            "skipped (--strict makes this an error)\n", path, ln, p->max_line);
                continue;
            }
            if (kind == JL_MALFORMED) {
                p->doc.n = 0;
                if (p->strict) die("%s:%llu: malformed JSON record at byte %zu: %s", path, ln, col, err);
                if (++p->malformed <= 5)
                    fprintf(stderr, "hgrn2 prepare: warning: %s:%llu: malformed JSON record at byte %zu: %s; skipped "
                            "(--strict makes this an error)\n", path, ln, col, err);
                continue;
            }
            rd_grew(p);
            rd_end_doc(p);
        }
    }
    free(lr.buf);
    input_close(&in);
}

// Small inputs can leave the hashed validation split empty (a single text file always does): then the last
// k tokens of the training stream become the validation split, rewriting only the shards they touch.
static void move_tail_to_val(SplitOut *train, SplitOut *val, uint64_t k) {
    uint64_t cut = train->total - k, base = 0;
    size_t j = 0;
    while (base + train->counts[j] <= cut) base += train->counts[j++];
    size_t keep_shards = j, nold = train->nshards;
    int32_t *buf = xmalloc(COPY_TOKENS * sizeof(int32_t));
    for (size_t i = j; i < nold; i++) {
        Shard *s = shard_open(train->parts[i]);
        uint64_t n = shard_ntokens(s), keep = i == j ? cut - base : 0;
        // Renaming the rewritten shard over the one being read is safe: the open descriptor keeps the old file.
        ShardWriter *w = keep ? shard_writer_open(train->parts[i], train->vocab, train->tokname) : NULL;
        for (uint64_t pos = 0; pos < n;) {
            uint64_t take = n - pos < COPY_TOKENS ? n - pos : COPY_TOKENS;
            shard_read(s, pos, take, buf);
            uint64_t head = pos < keep ? (keep - pos < take ? keep - pos : take) : 0;
            if (head) shard_writer_append(w, buf, (size_t)head);
            out_append(val, buf + head, (size_t)(take - head));
            pos += take;
        }
        shard_close(s);
        if (w) {
            shard_writer_close(w);
            train->counts[i] = keep;
            keep_shards = i + 1;
        } else {
            if (unlink(train->parts[i]) != 0) die("removing %s failed: %s", train->parts[i], strerror(errno));
            data_cleanup_remove(train->parts[i]);
            free(train->parts[i]);
        }
    }
    free(buf);
    train->nshards = keep_shards;
    train->total = cut;
}

// .part -> final names, all registered for removal first so that a failure halfway leaves no final name.
// The order makes train_000000.shard, which every reader of the training split opens first, the last name
// to appear: the validation shards, then the training shards, each split from its last shard down. A kill
// halfway (SIGKILL, power loss: nothing cleans up) therefore leaves either no training shards or a gap at
// number 0, which the loader refuses, and final names that keep a later prepare from mixing in a new run.
static void finalize_outputs(SplitOut **outs, int nouts) {
    for (int o = 0; o < nouts; o++)
        for (size_t i = 0; i < outs[o]->nshards; i++) {
            char *final = part_name(outs[o], i, 1);
            data_cleanup_add(final);
            free(final);
        }
    for (int o = nouts - 1; o >= 0; o--)
        for (size_t i = outs[o]->nshards; i-- > 0;) {
            char *final = part_name(outs[o], i, 1);
            if (rename(outs[o]->parts[i], final) != 0) die("renaming %s to %s failed: %s", outs[o]->parts[i], final, strerror(errno));
            free(final);
        }
    if (nouts) data_fsync_parent(outs[0]->parts[0]);
    for (int o = 0; o < nouts; o++)
        for (size_t i = 0; i < outs[o]->nshards; i++) {
            char *final = part_name(outs[o], i, 1);
            data_cleanup_remove(final);
            data_cleanup_remove(outs[o]->parts[i]);
            free(final);
        }
}

// meta.txt is written to meta.txt.tmp before the shards get their final names, so a failure writing it
// leaves no shards behind either, and renamed before them, so that shards a reader accepts always come
// with it (it names the tokenizer's files, which the shards do not).
static char *write_meta_tmp(const char *dir, const char *spec, const char *name, const char *task, const SplitOut *train,
                            const SplitOut *val) {
    char *tmp = xasprintf("%s/meta.txt.tmp", dir);
    char *abs = strcmp(spec, "byte") ? realpath(spec, NULL) : NULL;
    data_cleanup_add(tmp);
    FILE *f = data_create_file(tmp);
    fprintf(f, "tokenizer %s\ntokenizer_name %s\ntask %s\ntrain_tokens %llu\ntrain_shards %zu\nval_tokens %llu\nval_shards %zu\n",
            abs ? abs : spec, name, task, (unsigned long long)train->total, train->nshards, (unsigned long long)val->total,
            val->nshards);
    data_close_file(f, tmp);
    free(abs);
    return tmp;
}

// meta.txt.tmp -> meta.txt; the final name stays registered for removal until the shards have theirs too
// (the caller unregisters the path returned).
static char *finalize_meta(const char *dir, char *tmp) {
    char *path = xasprintf("%s/meta.txt", dir);
    data_cleanup_add(path);
    if (rename(tmp, path) != 0) die("renaming %s to %s failed: %s", tmp, path, strerror(errno));
    data_cleanup_remove(tmp);
    free(tmp);
    return path;
}

// Whether dir already holds train or val shards (a previous run): mixing runs would corrupt both.
static const char *existing_shard(const char *dir) {
    static char name[300];
    DIR *d = opendir(dir);
    if (!d) die("cannot read directory %s: %s", dir, strerror(errno));
    struct dirent *e;
    const char *found = NULL;
    while (!found && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if ((!strncmp(e->d_name, "train_", 6) || !strncmp(e->d_name, "val_", 4)) && n > 6 && !strcmp(e->d_name + n - 6, ".shard")) {
            snprintf(name, sizeof name, "%s", e->d_name);
            found = name;
        }
    }
    closedir(d);
    return found;
}

void prepare_defaults(PrepareOptions *o) {
    memset(o, 0, sizeof *o);
    o->task = PREPARE_TEXT;
    o->val_fraction = 0.005;
    o->shard_tokens = 100000000;
    o->max_line_bytes = PREPARE_MAX_LINE_DEFAULT;
    long procs = sysconf(_SC_NPROCESSORS_ONLN);
    o->threads = procs < 1 ? 1 : procs > 1024 ? 1024 : (int)procs;
}

const char *prepare_task_name(PrepareTask task) {
    switch (task) {
    case PREPARE_PILE: return "pile";
    case PREPARE_WIKI103: return "wiki103";
    case PREPARE_TEXT: return "text";
    }
    return NULL;
}

int prepare_run(const PrepareOptions *o) {
    // The command line checks all of this with usage errors; a caller of the library gets one message.
    const char *task_name = prepare_task_name(o->task);
    if (!task_name) die("prepare: unknown task %d", (int)o->task);
    if (o->ninputs < 1 || !o->inputs) die("prepare: no input files");
    if (o->nval_inputs < 0 || (o->nval_inputs && !o->val_inputs)) die("prepare: bad list of validation inputs");
    if (!o->tokenizer || !o->out) die("prepare: a tokenizer and an output directory are required");
    if (!(o->val_fraction >= 0 && o->val_fraction <= 0.5)) die("prepare: validation fraction %g is outside [0, 0.5]", o->val_fraction);
    if (o->shard_tokens < 1 || o->shard_tokens > 1000000000000ull)
        die("prepare: %llu tokens per shard is outside [1, 1e12]", (unsigned long long)o->shard_tokens);
    if (o->threads < 1 || o->threads > 1024) die("prepare: %d threads is outside [1, 1024]", o->threads);
    if (o->max_line_bytes < PREPARE_MAX_LINE_MIN || o->max_line_bytes > PREPARE_MAX_LINE_MAX)
        die("prepare: a longest line of %zu bytes is outside [%u, %u]", o->max_line_bytes, PREPARE_MAX_LINE_MIN,
            PREPARE_MAX_LINE_MAX);
    const char *spec = o->tokenizer, *out = o->out;
    int threads = o->threads;

    int stdin_inputs = 0;
    for (int i = 0; i < o->ninputs + o->nval_inputs; i++) {
        const char *f = i < o->ninputs ? o->inputs[i] : o->val_inputs[i - o->ninputs];
        if (!strcmp(f, "-")) {   // standard input: once, streamed to its end
            if (++stdin_inputs > 1) die("standard input ('-') can be given as an input once");
            continue;
        }
        struct stat st;
        if (stat(f, &st) != 0 || access(f, R_OK) != 0) die("cannot read input %s: %s", f, strerror(errno));
        if (S_ISDIR(st.st_mode)) die("input %s is a directory; pass the files in it", f);
        // Standard input, pipes and devices would need reading without knowing the size or the end; a FIFO
        // could block forever and /dev/zero never ends.
        if (!S_ISREG(st.st_mode))
            die("input %s is not a regular file (pipes and devices are not read by name; for a stream, pipe it into "
                "standard input and pass '-')", f);
    }

    Tokenizer *tok = tokenizer_load(spec);
    int vocab = tokenizer_vocab_size(tok);
    if (vocab < 1) die("tokenizer %s reports a vocabulary of %d", spec, vocab);
    mkdir_p(out);
    const char *old = existing_shard(out);
    if (old) die("%s already holds shards (%s); remove them or choose another --out", out, old);

    Prep p = {0};
    p.tok = tok;
    p.eot = tokenizer_eot(tok);
    p.task = o->task;
    p.strict = o->strict;
    p.text_field = o->text_field ? o->text_field : "text";
    p.have_val_inputs = o->nval_inputs > 0;
    p.val_fraction = o->val_fraction;
    p.max_line = o->max_line_bytes;
    p.njobs = 2 * threads + 4;
    p.jobs = xcalloc((size_t)p.njobs, sizeof *p.jobs);
    p.tty = isatty(2);
    p.t0 = p.last_print = now_s();
    SplitOut proto = {.dir = out, .tokname = tokenizer_name(tok), .vocab = (uint32_t)vocab, .max_tokens = o->shard_tokens};
    p.train = proto;
    p.train.split = "train";
    p.val = proto;
    p.val.split = "val";
    if (pthread_mutex_init(&p.mu, NULL) || pthread_cond_init(&p.cv, NULL)) die("prepare: cannot create a mutex");
    pthread_t *workers = xmalloc((size_t)threads * sizeof *workers), writer;
    int e = pthread_create(&writer, NULL, prep_writer, &p);
    for (int i = 0; !e && i < threads; i++) e = pthread_create(&workers[i], NULL, prep_worker, &p);
    if (e) die("prepare: cannot start threads: %s", strerror(e));

    for (int i = 0; i < o->ninputs; i++) read_input(&p, o->inputs[i], 0);
    for (int i = 0; i < o->nval_inputs; i++) read_input(&p, o->val_inputs[i], 1);
    if (p.cur) rd_submit(&p);
    pthread_mutex_lock(&p.mu);
    p.reader_done = 1;
    pthread_cond_broadcast(&p.cv);
    pthread_mutex_unlock(&p.mu);
    for (int i = 0; i < threads; i++) pthread_join(workers[i], NULL);
    pthread_join(writer, NULL);

    out_close(&p.train);
    if (!p.have_val_inputs && o->val_fraction > 0 && p.val.total == 0 && p.train.total >= 2) {
        double want = ceil(o->val_fraction * (double)p.train.total);
        uint64_t k = want < 1 ? 1 : (uint64_t)want;
        if (k > p.train.total - 1) k = p.train.total - 1;
        move_tail_to_val(&p.train, &p.val, k);
    }
    out_close(&p.val);
    if (p.train.total == 0)
        die("no tokens for the training split: the inputs hold no documents%s",
            p.too_long ? " (every JSON line was malformed or longer than --max-line-bytes)"
                       : p.malformed ? " (every JSON line was malformed)" : "");
    char *meta = write_meta_tmp(out, spec, tokenizer_name(tok), task_name, &p.train, &p.val);
    char *meta_path = finalize_meta(out, meta);
    SplitOut *outs[2] = {&p.train, &p.val};
    finalize_outputs(outs, p.val.nshards ? 2 : 1);      // syncs the directory, meta.txt's rename included
    data_cleanup_remove(meta_path);
    free(meta_path);
    progress(&p, 1);
    double el = now_s() - p.t0;
    printf("prepare: %llu documents, %llu tokens: train %llu in %zu shard%s, val %llu in %zu shard%s; %.1f MB text in %.1f s "
           "(%.1f MB/s); %llu malformed line%s skipped; ",
           (unsigned long long)p.ndocs, (unsigned long long)(p.train.total + p.val.total), (unsigned long long)p.train.total,
           p.train.nshards, p.train.nshards == 1 ? "" : "s", (unsigned long long)p.val.total, p.val.nshards,
           p.val.nshards == 1 ? "" : "s", (double)p.bytes_text / 1e6, el, (double)p.bytes_text / 1e6 / (el > 1e-9 ? el : 1e-9),
           (unsigned long long)p.malformed, p.malformed == 1 ? "" : "s");
    if (p.too_long)
        printf("%llu line%s longer than %zu bytes skipped (--max-line-bytes); ", (unsigned long long)p.too_long,
               p.too_long == 1 ? "" : "s", p.max_line);
    printf("wrote %s\n", out);
    fflush(stdout);

    for (int i = 0; i < p.njobs; i++) {
        free(p.jobs[i].text.data);
        free(p.jobs[i].ids.ids);
        free(p.jobs[i].segs);
    }
    free(p.jobs);
    SplitOut *all[2] = {&p.train, &p.val};
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < all[k]->nshards; i++) free(all[k]->parts[i]);
        free(all[k]->parts);
        free(all[k]->counts);
    }
    free(p.doc.data);
    free(p.key.data);
    free(workers);
    pthread_mutex_destroy(&p.mu);
    pthread_cond_destroy(&p.cv);
    tokenizer_free(tok);
    return 0;
}
