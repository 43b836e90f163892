// zeroshot.c: zero-shot evaluation, `hgrn2 eval --task mc|lambada`: the readers of each benchmark's released
// JSON Lines, lm-evaluation-harness's prompts and tokenisation, batched scoring of every continuation's
// log-likelihood through model_forward, and the metrics (acc, acc_norm, LAMBADA's accuracy and perplexity).
// The exact definitions are in docs/zeroshot.md.
#define _GNU_SOURCE
#include <getopt.h>
#include <math.h>
#include <omp.h>
#include <sys/stat.h>

#include "zeroshot.h"
#include "cli.h"
#include "commands.h"
#include "checkpoint.h"
#include "input.h"
#include "json.h"
#include "tokenizer.h"

const char *const ZS_FORMAT_NAMES[ZS_NFORMATS] = {"hellaswag", "piqa", "arc", "winogrande", "boolq", "lambada", "jsonl"};

// ----------------------------------------------------------------------------------------------------------
// Text: Python's string operations that the prompts are written with (ASCII whitespace and case only)

// Python's str.strip() whitespace, ASCII part: space, \t \n \v \f \r and the separators \x1c-\x1f.
static int py_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f); }

// The bytes of b as a NUL-terminated string (b is taken over).
static char *bb_take(ByteBuf *b) {
    bytebuf_append(b, "", 1);
    return b->data;
}

static char *strip_dup(const char *s) {
    size_t i = 0, n = strlen(s);
    while (i < n && py_space((unsigned char)s[i])) i++;
    while (n > i && py_space((unsigned char)s[n - 1])) n--;
    return xasprintf("%.*s", (int)(n - i), s + i);
}

// str.capitalize(): the first character upper case, every other lower case (ASCII letters; other bytes kept).
static char *capitalize_dup(const char *s) {
    char *t = xstrdup(s);
    for (size_t i = 0; t[i]; i++) {
        unsigned char c = (unsigned char)t[i];
        if (i == 0 && c >= 'a' && c <= 'z') t[i] = (char)(c - 32);
        else if (i > 0 && c >= 'A' && c <= 'Z') t[i] = (char)(c + 32);
    }
    return t;
}

// Characters of UTF-8 text as Python counts them (code points): the bytes that do not continue a sequence.
static int64_t utf8_chars(const char *s) {
    int64_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

// HellaSwag's cleaning in lm-evaluation-harness: strip; " [title]" -> ". "; every "[...]" (non-greedy, not
// across a newline, as the regular expression \[.*?\] matches) removed; then each "  " -> " " in one pass.
static char *hellaswag_clean(const char *s) {
    char *t = strip_dup(s);
    ByteBuf a = {0}, b = {0}, c = {0};
    for (size_t i = 0; t[i];) {
        if (!strncmp(t + i, " [title]", 8)) { bytebuf_append(&a, ". ", 2); i += 8; }
        else bytebuf_append(&a, t + i++, 1);
    }
    char *u = bb_take(&a);
    for (size_t i = 0; u[i];) {
        if (u[i] == '[') {
            size_t j = i + 1;
            while (u[j] && u[j] != ']' && u[j] != '\n') j++;
            if (u[j] == ']') { i = j + 1; continue; }
        }
        bytebuf_append(&b, u + i++, 1);
    }
    char *v = bb_take(&b);
    for (size_t i = 0; v[i];) {
        if (v[i] == ' ' && v[i + 1] == ' ') { bytebuf_append(&c, " ", 1); i += 2; }
        else bytebuf_append(&c, v + i++, 1);
    }
    free(t); free(u); free(v);
    return bb_take(&c);
}

// ----------------------------------------------------------------------------------------------------------
// Reading: one reader per format, from one parsed line to an item

typedef struct { const char *path; int64_t line; } Where;

__attribute__((noreturn, format(printf, 2, 3)))
static void bad_line(const Where *w, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    die("%s line %lld: %s", w->path, (long long)w->line, msg);
}

// The string at key of object o; name is how the message calls the field ("question.stem").
static const char *str_at(const Where *w, const Json *o, const char *key, const char *name) {
    const Json *v = json_get(o, key);
    if (!v) bad_line(w, "no field \"%s\"", name);
    if (json_type(v) != JSON_STR) bad_line(w, "field \"%s\" is not a string", name);
    if (strlen(json_str(v)) != json_len(v)) bad_line(w, "field \"%s\" holds a NUL character", name);
    return json_str(v);
}
static const char *str_field(const Where *w, const Json *o, const char *key) { return str_at(w, o, key, key); }

// An index in [lo, lo + n) given as a number or a string of digits ("label": 2 or "2"), minus lo.
static int index_field(const Where *w, const Json *o, const char *key, int lo, int n) {
    const Json *v = json_get(o, key);
    if (!v) bad_line(w, "no field \"%s\"", key);
    double x = NAN;
    if (json_type(v) == JSON_NUM) x = json_num(v);
    else if (json_type(v) == JSON_STR) {
        const char *s = json_str(v);
        long long k;
        if (strlen(s) == json_len(v) && parse_i64(s, -1000000, 1000000, &k) == 0) x = (double)k;
        else bad_line(w, "field \"%s\" is \"%.40s\", not a number", key, s);
    } else {
        bad_line(w, "field \"%s\" is not a number", key);
    }
    if (x != floor(x)) bad_line(w, "field \"%s\" is not a whole number", key);
    if (x < lo || x >= lo + n)
        bad_line(w, "field \"%s\" is %.0f, outside the %d choices (%d to %d)", key, x, n, lo, lo + n - 1);
    return (int)x - lo;
}

static void item_init(const Where *w, ZsItem *it, int n, int shared) {
    if (n < 1 || n > ZS_MAX_CHOICES) bad_line(w, "%d choices; 2 to %d are possible", n, ZS_MAX_CHOICES);
    it->n = n;
    it->shared = shared;
    it->ctx = xcalloc((size_t)(shared ? 1 : n), sizeof(char *));
    it->cont = xcalloc((size_t)n, sizeof(char *));
    it->norm_len = xcalloc((size_t)n, sizeof(int64_t));
    it->line = w->line;
}

// Choice j: the continuation delim + text; acc_norm divides by the characters of text (lm-evaluation-harness
// measures the choice without the delimiter it puts before it).
static void set_choice(ZsItem *it, int j, const char *delim, const char *text) {
    it->cont[j] = xasprintf("%s%s", delim, text);
    it->norm_len[j] = utf8_chars(text);
}

// An array of 2 to ZS_MAX_CHOICES strings at key.
static const Json *choice_array(const Where *w, const Json *o, const char *key) {
    const Json *a = json_get(o, key);
    if (!a) bad_line(w, "no field \"%s\"", key);
    if (json_type(a) != JSON_ARR) bad_line(w, "field \"%s\" is not an array", key);
    size_t n = json_len(a);
    if (n < 2 || n > ZS_MAX_CHOICES) bad_line(w, "field \"%s\" has %zu choices; 2 to %d are possible", key, n, ZS_MAX_CHOICES);
    for (size_t j = 0; j < n; j++) {
        const Json *s = json_item(a, j);
        if (json_type(s) != JSON_STR) bad_line(w, "%s[%zu] is not a string", key, j);
        if (strlen(json_str(s)) != json_len(s)) bad_line(w, "%s[%zu] holds a NUL character", key, j);
    }
    return a;
}

static void read_hellaswag(const Where *w, const Json *o, ZsItem *it) {
    const char *act = str_field(w, o, "activity_label"), *a = str_field(w, o, "ctx_a"), *b = str_field(w, o, "ctx_b");
    const Json *e = choice_array(w, o, "endings");
    item_init(w, it, (int)json_len(e), 1);
    char *cb = capitalize_dup(b), *raw = xasprintf("%s: %s %s", act, a, cb);
    it->ctx[0] = hellaswag_clean(raw);
    free(cb); free(raw);
    for (int j = 0; j < it->n; j++) {
        char *t = hellaswag_clean(json_str(json_item(e, (size_t)j)));
        set_choice(it, j, " ", t);
        free(t);
    }
    it->gold = index_field(w, o, "label", 0, it->n);
}

static void read_piqa(const Where *w, const Json *o, ZsItem *it, int label) {
    const char *goal = str_field(w, o, "goal"), *s1 = str_field(w, o, "sol1"), *s2 = str_field(w, o, "sol2");
    item_init(w, it, 2, 1);
    it->ctx[0] = xasprintf("Question: %s\nAnswer:", goal);
    set_choice(it, 0, " ", s1);
    set_choice(it, 1, " ", s2);
    it->gold = label;
}

static void read_arc(const Where *w, const Json *o, ZsItem *it) {
    const Json *q = json_get(o, "question");
    if (!q) bad_line(w, "no field \"question\"");
    if (json_type(q) != JSON_OBJ) bad_line(w, "field \"question\" is not an object");
    const char *stem = str_at(w, q, "stem", "question.stem");
    const Json *ch = json_get(q, "choices");
    if (!ch) bad_line(w, "no field \"question.choices\"");
    if (json_type(ch) != JSON_ARR) bad_line(w, "field \"question.choices\" is not an array");
    size_t n = json_len(ch);
    if (n < 2 || n > ZS_MAX_CHOICES) bad_line(w, "question.choices has %zu choices; 2 to %d are possible", n, ZS_MAX_CHOICES);
    // answerKey names a choice by its label: a letter (A-E) or, in a few questions, a digit (1-4)
    const Json *k = json_get(o, "answerKey");
    if (!k) bad_line(w, "no field \"answerKey\"");
    char key[32];
    if (json_type(k) == JSON_STR && json_len(k) < sizeof key && strlen(json_str(k)) == json_len(k)) snprintf(key, sizeof key, "%s", json_str(k));
    else if (json_type(k) == JSON_NUM && json_num(k) == floor(json_num(k)) && fabs(json_num(k)) < 1e9) snprintf(key, sizeof key, "%.0f", json_num(k));
    else bad_line(w, "field \"answerKey\" is not a choice's label");
    item_init(w, it, (int)n, 1);
    it->ctx[0] = xasprintf("Question: %s\nAnswer:", stem);
    it->gold = -1;
    for (size_t j = 0; j < n; j++) {
        const Json *c = json_item(ch, j);
        char name[64];
        snprintf(name, sizeof name, "question.choices[%zu]", j);
        if (json_type(c) != JSON_OBJ) bad_line(w, "%s is not an object", name);
        snprintf(name, sizeof name, "question.choices[%zu].text", j);
        const char *text = str_at(w, c, "text", name);
        snprintf(name, sizeof name, "question.choices[%zu].label", j);
        const char *label = str_at(w, c, "label", name);
        set_choice(it, (int)j, " ", text);
        if (it->gold < 0 && !strcmp(label, key)) it->gold = (int)j;
    }
    if (it->gold < 0) bad_line(w, "answerKey \"%.20s\" is the label of none of the %zu choices", key, n);
}

static void read_winogrande(const Where *w, const Json *o, ZsItem *it) {
    const char *s = str_field(w, o, "sentence"), *o1 = str_field(w, o, "option1"), *o2 = str_field(w, o, "option2");
    const char *blank = strchr(s, '_');
    if (!blank) bad_line(w, "the sentence has no '_' to put an option in");
    // partial scoring: the option goes into the context, the rest of the sentence is the one continuation
    item_init(w, it, 2, 0);
    int at = (int)(blank - s);
    it->ctx[0] = xasprintf("%.*s%s", at, s, o1);
    it->ctx[1] = xasprintf("%.*s%s", at, s, o2);
    char *rest = strip_dup(blank + 1);
    set_choice(it, 0, " ", rest);
    set_choice(it, 1, " ", rest);
    free(rest);
    it->gold = index_field(w, o, "answer", 1, 2);
}

static void read_boolq(const Where *w, const Json *o, ZsItem *it) {
    const char *q = str_field(w, o, "question"), *p = str_field(w, o, "passage");
    item_init(w, it, 2, 1);
    it->ctx[0] = xasprintf("%s\nQuestion: %s?\nAnswer:", p, q);
    set_choice(it, 0, " ", "no");
    set_choice(it, 1, " ", "yes");
    const Json *a = json_get(o, "answer");
    if (a) {
        if (json_type(a) != JSON_BOOL) bad_line(w, "field \"answer\" is not true or false");
        it->gold = (int)json_num(a);
    } else if (json_get(o, "label")) {
        it->gold = index_field(w, o, "label", 0, 2);
    } else {
        bad_line(w, "no field \"answer\" (or \"label\")");
    }
}

// LAMBADA: the context is the text up to its last space, the continuation the space and the last word.
static void read_lambada(const Where *w, const Json *o, ZsItem *it) {
    const char *t = str_field(w, o, "text");
    if (!t[0]) bad_line(w, "field \"text\" is empty");
    const char *sp = strrchr(t, ' ');
    item_init(w, it, 1, 1);
    it->ctx[0] = sp ? xasprintf("%.*s", (int)(sp - t), t) : xstrdup("");
    set_choice(it, 0, " ", sp ? sp + 1 : t);
    it->gold = 0;
}

static void read_jsonl(const Where *w, const Json *o, ZsItem *it) {
    const char *ctx = str_field(w, o, "context");
    const Json *ch = choice_array(w, o, "choices");
    item_init(w, it, (int)json_len(ch), 1);
    it->ctx[0] = xstrdup(ctx);
    for (int j = 0; j < it->n; j++) {
        const char *c = json_str(json_item(ch, (size_t)j));
        if (!c[0]) bad_line(w, "choices[%d] is empty: there is nothing to score", j);
        set_choice(it, j, "", c);
    }
    it->gold = index_field(w, o, "gold", 0, it->n);
}

// PIQA's labels: one 0 or 1 a line. path NULL: the released name beside the data (valid.jsonl ->
// valid-labels.lst).
static int8_t *read_piqa_labels(const char *data, const char *path, int64_t *n, char **used) {
    char *own = NULL;
    if (!path) {
        const char *base = strrchr(data, '/');
        base = base ? base + 1 : data;
        const char *dot = strrchr(base, '.');
        size_t stem = dot && dot != base ? (size_t)(dot - data) : strlen(data);
        path = own = xasprintf("%.*s-labels.lst", (int)stem, data);
        if (!file_exists(path))
            die("PIQA's labels are a file of their own: %s is not there (give --labels FILE)", path);
    }
    struct stat st;
    if (stat(path, &st) != 0) die("cannot read the labels %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) die("the labels %s are not a regular file", path);
    if (st.st_size > (off_t)1 << 30) die("the labels %s are larger than 1 GiB", path);
    size_t len;
    char *text = read_file(path, &len);
    int8_t *lab = xmalloc(len / 2 + 2);
    int64_t k = 0, line = 0;
    for (size_t i = 0; i < len;) {
        size_t e = i;
        while (e < len && text[e] != '\n') e++;
        line++;
        size_t a = i, b = e;
        while (a < b && py_space((unsigned char)text[a])) a++;
        while (b > a && py_space((unsigned char)text[b - 1])) b--;
        if (b - a != 1 || (text[a] != '0' && text[a] != '1'))
            die("%s line %lld: a label is 0 or 1, got \"%.*s\"", path, (long long)line, (int)(b - a < 20 ? b - a : 20), text + a);
        lab[k++] = (int8_t)(text[a] - '0');
        i = e + 1;
    }
    free(text);
    *used = own ? own : xstrdup(path);
    *n = k;
    return lab;
}

int64_t zs_read_items(const char *path, ZsFormat f, const char *labels, int64_t limit, ZsItem **out) {
    struct stat st;
    if (stat(path, &st) != 0) die("cannot read %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) die("%s is not a regular file", path);
    int64_t nlabels = 0;
    char *label_path = NULL;
    int8_t *lab = f == ZS_PIQA ? read_piqa_labels(path, labels, &nlabels, &label_path) : NULL;
    InStream in;
    input_open(&in, path, NULL);
    LineReader lr = {.in = &in, .max = (size_t)64 << 20, .parts = 0};
    ZsItem *items = NULL;
    int64_t n = 0, cap = 0;
    const char *line;
    size_t len;
    int r;
    Where w = {path, 0};
    while ((r = next_line(&lr, &line, &len)) != LINE_END) {
        w.line = (int64_t)lr.lineno;
        if (r == LINE_SKIPPED) bad_line(&w, "longer than 64 MiB");
        size_t i = 0;
        while (i < len && py_space((unsigned char)line[i])) i++;
        if (i == len) continue;                 // blank lines hold no item
        if (limit && n == limit) break;
        char err[256];
        Json *root = json_parse(line, len, json_default_limit(len), err, sizeof err);
        if (!root) bad_line(&w, "%s", err);
        if (json_type(root) != JSON_OBJ) bad_line(&w, "not a JSON object");
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            items = xrealloc(items, (size_t)cap * sizeof *items);
        }
        ZsItem *it = &items[n];
        memset(it, 0, sizeof *it);
        switch (f) {
        case ZS_HELLASWAG: read_hellaswag(&w, root, it); break;
        case ZS_PIQA:
            if (n >= nlabels) die("%s has %lld labels, but line %lld of %s is item %lld", label_path,
                                  (long long)nlabels, (long long)w.line, path, (long long)n + 1);
            read_piqa(&w, root, it, lab[n]);
            break;
        case ZS_ARC: read_arc(&w, root, it); break;
        case ZS_WINOGRANDE: read_winogrande(&w, root, it); break;
        case ZS_BOOLQ: read_boolq(&w, root, it); break;
        case ZS_LAMBADA: read_lambada(&w, root, it); break;
        case ZS_JSONL: read_jsonl(&w, root, it); break;
        case ZS_NFORMATS: break;
        }
        json_free(root);
        n++;
    }
    input_close(&in);
    free(lr.buf);
    if (!n) die("%s holds no items", path);
    if (lab && !limit && nlabels != n)
        die("%s has %lld labels for the %lld items of %s", label_path, (long long)nlabels, (long long)n, path);
    free(lab);
    free(label_path);
    *out = items;
    return n;
}

void zs_free_items(ZsItem *items, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        ZsItem *it = &items[i];
        for (int j = 0; j < (it->shared ? 1 : it->n); j++) free(it->ctx[j]);
        for (int j = 0; j < it->n; j++) free(it->cont[j]);
        free(it->ctx); free(it->cont); free(it->norm_len);
    }
    free(items);
}

// ----------------------------------------------------------------------------------------------------------
// Requests: one (context, continuation) pair each, tokenised as lm-evaluation-harness does

typedef struct {
    int32_t *ids;       // the window scored: the context's last tokens, then the continuation's
    int n, ncont;       // its length; the continuation's tokens at its end
    int64_t item;
    int choice;
    double ll;          // the continuation's summed log-likelihood
    int greedy;         // every continuation token is the most likely one at its position
} Req;

typedef struct {
    const Tokenizer *tok;
    int32_t eot;
    int V, seq_len;
    const char *path, *tok_name;
} Enc;

// The requests of one item into out[0..n). lm-evaluation-harness: whitespace ending the context moves to the
// start of the continuation; whole = encode(context + continuation), the context's ids encode(context), the
// continuation's whole[len(context ids):]. An empty context is the end-of-text token alone. The window keeps
// the last seq_len + 1 tokens: seq_len inputs, as the harness truncates on the left.
static void item_requests(const Enc *e, const ZsItem *it, int64_t index, Req *out) {
    IdBuf c = {0}, whole = {0};
    const Where w = {e->path, it->line};
    for (int j = 0; j < it->n; j++) {
        const char *ctx = it->ctx[it->shared ? 0 : j];
        size_t k = strlen(ctx);
        while (k > 0 && py_space((unsigned char)ctx[k - 1])) k--;
        char *full = xasprintf("%s%s", ctx, it->cont[j]);   // = ctx[0..k) + the continuation it now has
        if (j == 0 || !it->shared) {
            c.n = 0;
            if (k) tokenizer_encode(e->tok, ctx, k, &c);
            else if (e->eot < 0)
                bad_line(&w, "the context is empty, which is scored after the end-of-text token, and the tokenizer "
                         "%s has none", e->tok_name);
            else idbuf_push(&c, e->eot);
        }
        whole.n = 0;
        if (k) tokenizer_encode(e->tok, full, strlen(full), &whole);
        else { idbuf_push(&whole, e->eot); tokenizer_encode(e->tok, full, strlen(full), &whole); }
        free(full);
        if (whole.n <= c.n) bad_line(&w, "choice %d adds no token to its context: there is nothing to score", j);
        int64_t ncont = (int64_t)(whole.n - c.n), first = 0;
        if (ncont > e->seq_len)
            bad_line(&w, "choice %d's continuation has %lld tokens, more than --seq-len %d", j, (long long)ncont, e->seq_len);
        if ((int64_t)whole.n - 1 > e->seq_len) first = (int64_t)whole.n - 1 - e->seq_len;
        for (size_t t = 0; t < whole.n; t++)
            if (whole.ids[t] < 0 || whole.ids[t] >= e->V)
                bad_line(&w, "the text encodes to id %d, outside the model's vocabulary of %d", whole.ids[t], e->V);
        Req *r = &out[j];
        r->n = (int)(whole.n - first);
        r->ncont = (int)ncont;
        r->ids = xmalloc((size_t)r->n * sizeof(int32_t));
        memcpy(r->ids, whole.ids + first, (size_t)r->n * sizeof(int32_t));
        r->item = index;
        r->choice = j;
    }
    free(c.ids);
    free(whole.ids);
}

// ----------------------------------------------------------------------------------------------------------
// Scoring: the requests sorted by length, longest first, in batches padded to their longest; each row's
// result depends on its own tokens only, so it is the same in any batch and any order.

typedef struct { int64_t len, req; } ByLen;
static int bylen_cmp(const void *a, const void *b) {
    const ByLen *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return (x->req > y->req) - (x->req < y->req);
}

// Scores every request: ll and greedy. batch: sequences a forward (0: as many as fill `budget` tokens).
// Returns the tokens fed (padding not counted).
static int64_t score(Model *m, Req *req, int64_t nreq, int batch, int64_t budget, int want_greedy) {
    ByLen *ord = xmalloc((size_t)nreq * sizeof *ord);
    for (int64_t i = 0; i < nreq; i++) ord[i] = (ByLen){req[i].n - 1, i};
    qsort(ord, (size_t)nreq, sizeof *ord, bylen_cmp);
    // the batches: a start in ord, a count, the padded length (at least 2, so that every batch takes the same
    // form of the recurrence: mixer_chunk(1) is the step form)
    int64_t nb = 0, capN = 0, fed = 0;
    int64_t *bstart = xmalloc((size_t)nreq * sizeof(int64_t)), *bcount = xmalloc((size_t)nreq * sizeof(int64_t));
    int *bT = xmalloc((size_t)nreq * sizeof(int));
    for (int64_t i = 0; i < nreq;) {
        int T = ord[i].len < 2 ? 2 : (int)ord[i].len;
        int64_t cnt = batch ? batch : budget / T;
        if (cnt < 1) cnt = 1;
        if (cnt > nreq - i) cnt = nreq - i;
        bstart[nb] = i; bcount[nb] = cnt; bT[nb] = T;
        if (cnt * T > capN) capN = cnt * T;
        nb++;
        i += cnt;
    }
    if (capN > INT32_MAX) die("a batch of %lld tokens is too large: give a smaller --batch", (long long)capN);
    Acts a;
    acts_alloc(&a, &m->c, 1, (int)capN, 0);
    int32_t *ids = xmalloc((size_t)capN * sizeof(int32_t)), *tgt = xmalloc((size_t)capN * sizeof(int32_t));
    int32_t *pred = want_greedy ? xmalloc((size_t)capN * sizeof(int32_t)) : NULL;
    a.pred = pred;
    for (int64_t b = 0; b < nb; b++) {
        const int T = bT[b], B = (int)bcount[b];
        acts_reshape(&a, B, T);
        for (int r = 0; r < B; r++) {
            const Req *q = &req[ord[bstart[b] + r].req];
            int32_t *x = ids + (int64_t)r * T, *y = tgt + (int64_t)r * T;
            // inputs: every token but the last; targets: the continuation's tokens, at the positions before them
            for (int t = 0; t < T; t++) {
                x[t] = t < q->n - 1 ? q->ids[t] : 0;
                y[t] = t < q->n - 1 && t >= q->n - 1 - q->ncont ? q->ids[t + 1] : -1;
            }
            fed += q->n - 1;
        }
        int64_t cnt;
        model_forward(m, &a, ids, tgt, NULL, NULL, 0, 0, &cnt);
        // per-row losses: the dense head leaves them by position, the sparse one by target in position order
        int64_t k = 0;
        for (int r = 0; r < B; r++) {
            Req *q = &req[ord[bstart[b] + r].req];
            double ll = 0;
            int greedy = 1;
            for (int t = 0; t < T; t++) {
                const int64_t at = (int64_t)r * T + t;
                if (tgt[at] < 0) continue;
                ll -= (double)(a.sparse ? a.losses_h[k] : a.losses_h[at]);
                k++;
                if (pred && pred[at] != tgt[at]) greedy = 0;
            }
            q->ll = ll;
            q->greedy = pred ? greedy : -1;
        }
        if (k != cnt) die("zero-shot scoring: %lld targets scored, %lld expected", (long long)cnt, (long long)k);
    }
    a.pred = NULL;
    acts_free(&a);
    free(ids); free(tgt); free(pred); free(ord); free(bstart); free(bcount); free(bT);
    return fed;
}

// The standard error of a mean of n values of which `hits` are 1 and the rest 0: the sample standard
// deviation (n - 1 in the denominator) over sqrt(n), as lm-evaluation-harness reports it.
static double stderr_of(double hits, int64_t n) {
    if (n < 2) return NAN;
    double p = hits / (double)n, var = (hits * (1 - p) * (1 - p) + ((double)n - hits) * p * p) / (double)(n - 1);
    return sqrt(var / (double)n);
}

// ----------------------------------------------------------------------------------------------------------
// hgrn2 eval --task mc|lambada

static const char *ZS_USAGE =
    "hgrn2 eval --task mc --format F --data FILE | --task lambada --data FILE  [--ckpt PATH] [--tokenizer SPEC]\n"
    "                  [--limit N] [--batch N] [--seq-len N] [--dump FILE] [--device cpu|cuda]";
static const char *ZS_HELP =
    "Zero-shot evaluation as lm-evaluation-harness defines it (docs/zeroshot.md): every choice's continuation\n"
    "is scored by its log-likelihood given the context.\n"
    "--task mc: multiple choice. acc is the fraction of items whose most likely choice is the right one,\n"
    "acc_norm the same with each log-likelihood divided by the choice's length in characters. The last lines\n"
    "printed are 'acc X' and 'acc_norm X' (fractions), after 'items N' and their standard errors\n"
    "'acc_stderr X' and 'acc_norm_stderr X'.\n"
    "--task lambada: last-word prediction. acc is the fraction of items whose last word the model predicts\n"
    "greedily (every token the most likely one), perplexity exp(-mean log-likelihood of the last word). The\n"
    "last lines printed are 'acc X' and 'perplexity X'.\n"
    "\n"
    "  --data FILE          the benchmark's JSON Lines file as released (plain or zstd)\n"
    "  --format F           mc: hellaswag, piqa, arc, winogrande, boolq, or jsonl: one item a line,\n"
    "                       {\"context\": \"...\", \"choices\": [\"...\", ...], \"gold\": k} (2 to 64 choices,\n"
    "                       continuations taken as written); lambada: lambada (the default), {\"text\": \"...\"}\n"
    "  --labels FILE        piqa: the labels, one 0 or 1 a line (default: the released name beside the data,\n"
    "                       valid.jsonl -> valid-labels.lst)\n"
    "  --ckpt PATH          the model (default " DEFAULT_OUT "/model.ckpt)\n"
    "  --tokenizer SPEC     byte, a directory or a tokenizer.json (default: the model's)\n"
    "  --limit N            the first N items only\n"
    "  --batch N            sequences a forward pass (default: as many as fill 8192 tokens, 32768 on the GPU)\n"
    "  --seq-len N          longer inputs keep their last N tokens (default 2048)\n"
    "  --dump FILE          write each item's choices: log-likelihood, tokens, greedy, the token ids scored\n"
    "  --threads N --device cpu|cuda --precision bf16|tf32|fp32 (GPU; default bf16)\n";

enum { OZ_FORMAT = O_LAST, OZ_LABELS, OZ_LIMIT, OZ_DUMP };

int zeroshot_command_line(int argc, char **argv) {
    const char *task = cli_option_value(argc, argv, "--task");
    return task && (!strcmp(task, "mc") || !strcmp(task, "lambada"));
}

// The tokenizer: the one given, else the model's (as eval finds it); zero-shot scoring encodes text, so
// without one it stops.
static Tokenizer *model_tokenizer(const char *spec, const RunState *rs, const char *ckpt, int V) {
    Tokenizer *tok = NULL;
    if (spec) tok = tokenizer_load(spec);
    else if (!strcmp(rs->tokenizer, "byte") || (rs->tokenizer[0] && file_exists(rs->tokenizer))) tok = tokenizer_load(rs->tokenizer);
    else if (rs->tokenizer[0])
        die("the tokenizer %s was trained with is not here: give --tokenizer (zero-shot scoring encodes text)", ckpt);
    else
        die("%s was trained on token ids without a tokenizer: zero-shot scoring encodes text, give --tokenizer", ckpt);
    if (tokenizer_vocab_size(tok) > V) die("the tokenizer has %d ids but the model only %d", tokenizer_vocab_size(tok), V);
    return tok;
}

static void write_dump(const char *path, const ZsItem *items, const Req *req, int64_t nreq) {
    FILE *f = fopen(path, "w");
    if (!f) die("cannot create %s: %s", path, strerror(errno));
    fprintf(f, "#item\tline\tchoice\tgold\tloglik\ttokens\tgreedy\tids\n");
    for (int64_t i = 0; i < nreq; i++) {
        const Req *q = &req[i];
        const ZsItem *it = &items[q->item];
        fprintf(f, "%lld\t%lld\t%d\t%d\t%.17g\t%d\t%d\t", (long long)q->item, (long long)it->line, q->choice, it->gold,
                q->ll, q->ncont, q->greedy);
        for (int t = 0; t < q->n; t++) fprintf(f, t ? " %d" : "%d", q->ids[t]);
        fputc('\n', f);
    }
    if (ferror(f) | (fclose(f) != 0)) die("writing %s failed: %s", path, strerror(errno));
}

int cmd_zeroshot_eval(int argc, char **argv) {
    static const struct option opts[] = {
        COMMON_OPTS, {"ckpt", required_argument, 0, O_CKPT}, {"task", required_argument, 0, O_TASK},
        {"data", required_argument, 0, O_DATA}, {"format", required_argument, 0, OZ_FORMAT},
        {"labels", required_argument, 0, OZ_LABELS}, {"tokenizer", required_argument, 0, O_TOKENIZER},
        {"limit", required_argument, 0, OZ_LIMIT}, {"batch", required_argument, 0, O_BATCH},
        {"seq-len", required_argument, 0, O_SEQ}, {"dump", required_argument, 0, OZ_DUMP}, {0, 0, 0, 0}};
    cli_start("hgrn2 eval", ZS_USAGE);
    const char *ckpt = DEFAULT_OUT "/model.ckpt", *data = NULL, *labels = NULL, *tok_spec = NULL, *dump = NULL;
    const char *task = NULL;
    MachineArgs mach = {0};
    int fmt = -1, c;
    int64_t limit = 0, batch = 0, seq_len = 2048;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        if (machine_arg(c, &mach)) continue;
        switch (c) {
        case O_HELP: print_help(ZS_USAGE, ZS_HELP); return 0;
        case O_CKPT: ckpt = optarg; break;
        case O_TASK: task = optarg; break;
        case O_DATA: data = optarg; break;
        case OZ_FORMAT:
            for (fmt = 0; fmt < ZS_NFORMATS && strcmp(optarg, ZS_FORMAT_NAMES[fmt]); fmt++) {}
            if (fmt == ZS_NFORMATS)
                usage_error("--format must be hellaswag, piqa, arc, winogrande, boolq, jsonl or lambada, got '%s'", optarg);
            break;
        case OZ_LABELS: labels = optarg; break;
        case O_TOKENIZER: tok_spec = optarg; break;
        case OZ_LIMIT: limit = arg_int("--limit", optarg, 1, INT64_C(1) << 40); break;
        case O_BATCH: batch = arg_int_in(&R_BATCH, optarg); break;
        case O_SEQ: seq_len = arg_int_in(&R_SEQ_LEN, optarg); break;
        case OZ_DUMP: dump = optarg; break;
        case O_SEED: break;
        default: bad_option(argv, c);
        }
    }
    if (optind < argc) usage_error("unexpected argument '%s'", argv[optind]);
    const int lambada = !strcmp(task, "lambada");
    if (!data) usage_error("--task %s needs --data FILE: the benchmark's JSON Lines", task);
    if (lambada && fmt < 0) fmt = ZS_LAMBADA;
    if (lambada && fmt != ZS_LAMBADA) usage_error("--task lambada reads --format lambada, got '%s'", ZS_FORMAT_NAMES[fmt]);
    if (!lambada && fmt < 0) usage_error("--task mc needs --format: hellaswag, piqa, arc, winogrande, boolq or jsonl");
    if (!lambada && fmt == ZS_LAMBADA) usage_error("--format lambada is scored by --task lambada");
    if (labels && fmt != ZS_PIQA) usage_error("--labels is for --format piqa");
    machine_start(&mach);
    const char *fname = ZS_FORMAT_NAMES[fmt];

    // the data first: a bad line is reported before the model loads
    ZsItem *items;
    int64_t nitems = zs_read_items(data, (ZsFormat)fmt, labels, limit, &items);
    Model m = {0};
    RunState rs;
    checkpoint_load(ckpt, &m, &rs, 0);
    Tokenizer *tok = model_tokenizer(tok_spec, &rs, ckpt, m.c.V);
    model_to_device(&m);

    double t0 = now_s();
    int64_t *first = xmalloc((size_t)(nitems + 1) * sizeof(int64_t));
    first[0] = 0;
    for (int64_t i = 0; i < nitems; i++) first[i + 1] = first[i] + items[i].n;
    const int64_t nreq = first[nitems];
    Req *req = xcalloc((size_t)nreq, sizeof *req);
    const Enc enc = {tok, tokenizer_eot(tok), m.c.V, (int)seq_len, data, tokenizer_name(tok)};
    if (enc.eot >= m.c.V) die("the tokenizer's end-of-text id %d is outside the model's vocabulary of %d", enc.eot, m.c.V);
    #pragma omp parallel for schedule(dynamic, 8)
    for (int64_t i = 0; i < nitems; i++) item_requests(&enc, &items[i], i, req + first[i]);
    double t1 = now_s();
    int64_t fed = score(&m, req, nreq, (int)batch, g_gpu ? 32768 : 8192, lambada || dump);
    double t2 = now_s();
    if (dump) write_dump(dump, items, req, nreq);

    printf("%s: %lld items of %s, %lld continuations, %lld tokens scored in %.2f s (%.0f tokens/s; tokenized in %.2f s)\n",
           fname, (long long)nitems, data, (long long)nreq, (long long)fed, t2 - t1, fed / (t2 - t1 > 0 ? t2 - t1 : 1e-9),
           t1 - t0);
    printf("items %lld\n", (long long)nitems);
    if (lambada) {
        double hits = 0, ll = 0;
        for (int64_t i = 0; i < nitems; i++) { hits += req[first[i]].greedy == 1; ll += req[first[i]].ll; }
        printf("acc_stderr %.6f\n", stderr_of(hits, nitems));
        printf("acc %.6f\n", hits / (double)nitems);
        printf("perplexity %.6f\n", exp(-ll / (double)nitems));
    } else {
        double hits = 0, hits_norm = 0;
        for (int64_t i = 0; i < nitems; i++) {
            const ZsItem *it = &items[i];
            const Req *q = req + first[i];
            int best = 0, best_norm = 0;
            // the first of equal scores, as numpy's argmax
            for (int j = 1; j < it->n; j++) {
                if (q[j].ll > q[best].ll) best = j;
                if (q[j].ll / (double)it->norm_len[j] > q[best_norm].ll / (double)it->norm_len[best_norm]) best_norm = j;
            }
            hits += best == it->gold;
            hits_norm += best_norm == it->gold;
        }
        printf("acc_stderr %.6f\n", stderr_of(hits, nitems));
        printf("acc_norm_stderr %.6f\n", stderr_of(hits_norm, nitems));
        printf("acc %.6f\n", hits / (double)nitems);
        printf("acc_norm %.6f\n", hits_norm / (double)nitems);
    }
    for (int64_t i = 0; i < nreq; i++) free(req[i].ids);
    free(req); free(first);
    zs_free_items(items, nitems);
    tokenizer_free(tok);
    model_free(&m);
    return 0;
}
