// lra.c: `hgrn2 prepare` for the Long Range Arena's token tasks, from their official files to example files:
// ListOps (TSV of expressions, a vocabulary built from the training split), Text (the aclImdb folder of
// reviews, bytes) and Retrieval (TSV of paper pairs, bytes). Policies and choices: docs/lra.md.
#define _GNU_SOURCE
#include <sys/stat.h>
#include <unistd.h>

#include "data.h"
#include "input.h"
#include "examples.h"
#include "lra.h"
#include "tokenizer.h"

static const char *const TASK_NAMES[] = {"lra-listops", "lra-text", "lra-retrieval"};
static const char *const SPLITS[3] = {"train", "val", "test"};

const char *lra_task_name(LraTask task) { return (unsigned)task < 3 ? TASK_NAMES[task] : NULL; }

int lra_task_parse(const char *name, LraTask *task) {
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, TASK_NAMES[i])) { *task = (LraTask)i; return 0; }
    return -1;
}

// ----------------------------------------------------------------------------------------------------------
// The run: its outputs, counters, bad lines and progress

typedef struct {
    uint64_t examples, truncated, malformed, too_long;
    uint32_t longest;           // the longest document written, in tokens
} SplitOut;

typedef struct {
    const LraPrepareOptions *o;
    SplitOut split[3];
    SplitFile files[3];         // the outputs (examples.h)
    uint64_t warned;            // bad lines reported so far (the first five are)
    uint64_t bytes_in;          // input bytes read (progress)
    double t0, last_print;
    int tty;
    // the example being built: each document's ids
    int32_t *ids[2];
    size_t idcap[2];
} Lra;

// A bad line of an input: fatal with --strict; otherwise skipped, counted by the caller, the first five
// reported as warnings.
__attribute__((format(printf, 4, 5)))
static void bad_line(Lra *p, const char *path, uint64_t line, const char *fmt, ...) {
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (p->o->strict) die("%s:%llu: %s", path, (unsigned long long)line, msg);
    if (++p->warned <= 5)
        fprintf(stderr, "hgrn2 prepare: warning: %s:%llu: %s; skipped (--strict makes this an error)\n", path,
                (unsigned long long)line, msg);
}

// The progress line: rewritten in place on a terminal, a new line every 5 s otherwise (logs).
static void progress(Lra *p, const char *what, int final) {
    double t = now_s();
    if (final && !p->tty) return;
    if (!final && t - p->last_print < (p->tty ? 0.25 : 5.0)) return;
    p->last_print = t;
    uint64_t n = p->split[0].examples + p->split[1].examples + p->split[2].examples;
    double el = t - p->t0 > 1e-9 ? t - p->t0 : 1e-9;
    fprintf(stderr, "%sprepare: %s: %s, %llu examples, %.1f MB read, %.1f MB/s%s", p->tty ? "\r" : "",
            lra_task_name(p->o->task), what, (unsigned long long)n, (double)p->bytes_in / 1e6, (double)p->bytes_in / 1e6 / el,
            p->tty ? "\x1b[K" : "\n");
    if (final && p->tty) fputc('\n', stderr);
}

static void ids_reserve(Lra *p, int d, size_t n) {
    if (p->idcap[d] < n) p->ids[d] = xrealloc(p->ids[d], (p->idcap[d] = n) * sizeof(int32_t));
}

// One example into split s; docs are p->ids[d][0, lens[d]).
static void emit(Lra *p, int s, int32_t label, const uint32_t *lens, int ndoc) {
    SplitOut *o = &p->split[s];
    const int32_t *docs[2] = {p->ids[0], p->ids[1]};
    example_writer_add(p->files[s].w, label, docs, lens);
    for (int d = 0; d < ndoc; d++)
        if (lens[d] > o->longest) o->longest = lens[d];
    o->examples++;
}

static void require_dir(const char *dir, const char *what) {
    struct stat st;
    if (stat(dir, &st) != 0) die("cannot read %s %s: %s", what, dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) die("%s %s is not a directory", what, dir);
}

// An input file must be a regular file: a FIFO would block, a device never end.
static void require_file(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0 || access(path, R_OK) != 0) die("cannot read input %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) die("input %s is not a regular file", path);
}

// The lines of a TSV input, each without its '\n' and one '\r' before it (CRLF files); blank lines are
// passed over, lines longer than --max-line-bytes are bad lines. Returns 0 at the end.
typedef struct {
    const char *path;
    InStream in;
    LineReader lr;
} Tsv;

static void tsv_open(Lra *p, Tsv *t, const char *path) {
    require_file(path);
    t->path = path;
    input_open(&t->in, path, &p->bytes_in);
    t->lr = (LineReader){.in = &t->in, .max = p->o->max_line_bytes};
}
static void tsv_close(Tsv *t) {
    free(t->lr.buf);
    input_close(&t->in);
}
static int tsv_line(Lra *p, Tsv *t, int s, const char **line, size_t *n) {
    for (;;) {
        int r = next_line(&t->lr, line, n);
        if (r == LINE_END) return 0;
        if (r == LINE_SKIPPED) {
            bad_line(p, t->path, t->lr.lineno, "line longer than %zu bytes (--max-line-bytes)", p->o->max_line_bytes);
            p->split[s].too_long++;
            continue;
        }
        if (*n && (*line)[*n - 1] == '\n') (*n)--;
        if (*n && (*line)[*n - 1] == '\r') (*n)--;
        size_t k = 0;
        while (k < *n && ((*line)[k] == ' ' || (*line)[k] == '\t' || (*line)[k] == '\r')) k++;
        if (k < *n) return 1;
    }
}

// Splits line[0, n) at tabs into at most max fields; returns the number of fields there are (which may be
// more than max, then only the first max are set).
static int tsv_fields(const char *line, size_t n, const char **f, size_t *len, int max) {
    int k = 0;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++)
        if (i == n || line[i] == '\t') {
            if (k < max) { f[k] = line + start; len[k] = i - start; }
            k++;
            start = i + 1;
        }
    return k;
}

// A field shown in a message: at most 40 bytes, control bytes as '?'.
static const char *shown(const char *s, size_t n, char *buf, size_t cap) {
    size_t k = 0;
    for (; k < n && k + 4 < cap && k < 40; k++) buf[k] = (unsigned char)s[k] < 0x20 ? '?' : s[k];
    if (k < n) { memcpy(buf + k, "...", 3); k += 3; }
    buf[k] = 0;
    return buf;
}

// ----------------------------------------------------------------------------------------------------------
// ListOps: "Source<TAB>Target" lines after a header. The Source loses its '(' and ')', its ']' become 'X',
// and what remains splits on whitespace into symbols; the vocabulary is the training split's symbols.

typedef struct {
    char **sym;                 // the symbols, in the order found (then sorted for the ids)
    uint32_t *len;
    size_t n, cap;
    uint32_t *slot;             // open addressing: symbol index + 1, 0 for empty
    size_t nslot;
    size_t bytes;               // of all symbols
    int32_t *id;                // per symbol, once sorted
} Vocab;

#define LISTOPS_VOCAB_MAX (1u << 20)    // distinct symbols: ListOps has 15; a file of millions is not ListOps
#define LISTOPS_SYMBOL_BYTES (4u << 20)  // so that the description stays below the format's 16 MiB

static uint64_t sym_hash(const char *s, size_t n) { return data_fnv1a(DATA_FNV_INIT, s, n); }

// The index of symbol s in v, or -1; with add, added when missing.
static int64_t vocab_find(Vocab *v, const char *s, size_t n, int add, const char *path) {
    if (!v->nslot) {
        v->nslot = 1024;
        v->slot = xcalloc(v->nslot, sizeof *v->slot);
    }
    size_t mask = v->nslot - 1, i = (size_t)sym_hash(s, n) & mask;
    for (; v->slot[i]; i = (i + 1) & mask) {
        uint32_t k = v->slot[i] - 1;
        if (v->len[k] == n && !memcmp(v->sym[k], s, n)) return k;
    }
    if (!add) return -1;
    if (v->n == LISTOPS_VOCAB_MAX || v->bytes + n > LISTOPS_SYMBOL_BYTES)
        die("%s: more than %u distinct symbols (or %u MiB of them) in the training split: this is not ListOps data", path,
            LISTOPS_VOCAB_MAX, LISTOPS_SYMBOL_BYTES >> 20);
    if (v->n == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 64;
        v->sym = xrealloc(v->sym, v->cap * sizeof *v->sym);
        v->len = xrealloc(v->len, v->cap * sizeof *v->len);
    }
    v->sym[v->n] = xmalloc(n + 1);
    memcpy(v->sym[v->n], s, n);
    v->sym[v->n][n] = 0;
    v->len[v->n] = (uint32_t)n;
    v->bytes += n;
    v->slot[i] = (uint32_t)++v->n;
    if (2 * v->n > v->nslot) {   // keep the table at most half full
        free(v->slot);
        v->nslot *= 2;
        v->slot = xcalloc(v->nslot, sizeof *v->slot);
        for (size_t k = 0; k < v->n; k++) {
            size_t j = (size_t)sym_hash(v->sym[k], v->len[k]) & (v->nslot - 1);
            while (v->slot[j]) j = (j + 1) & (v->nslot - 1);
            v->slot[j] = (uint32_t)(k + 1);
        }
    }
    return (int64_t)(v->n - 1);
}

static const Vocab *sort_vocab;
static int sym_cmp(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    uint32_t lx = sort_vocab->len[x], ly = sort_vocab->len[y];
    int c = memcmp(sort_vocab->sym[x], sort_vocab->sym[y], lx < ly ? lx : ly);
    return c ? c : (lx > ly) - (lx < ly);
}

// Ids: the three specials, then the symbols in byte order (so that they depend on the set of symbols, not
// on the order of the file). The description lists them, one "ID SYMBOL" line each.
static char *vocab_finish(Vocab *v) {
    uint32_t *order = xmalloc((v->n ? v->n : 1) * sizeof *order);
    for (uint32_t k = 0; k < v->n; k++) order[k] = k;
    sort_vocab = v;
    qsort(order, v->n, sizeof *order, sym_cmp);
    v->id = xmalloc((v->n ? v->n : 1) * sizeof *v->id);
    ByteBuf d = {0};
    char line[64];
    int k = snprintf(line, sizeof line, "%d <pad>\n%d <unk>\n%d <eos>\n", LRA_LISTOPS_PAD, LRA_LISTOPS_UNK, LRA_LISTOPS_EOS);
    bytebuf_append(&d, line, (size_t)k);
    for (uint32_t r = 0; r < v->n; r++) {
        v->id[order[r]] = (int32_t)(3 + r);
        k = snprintf(line, sizeof line, "%u ", 3 + r);
        bytebuf_append(&d, line, (size_t)k);
        bytebuf_append(&d, v->sym[order[r]], v->len[order[r]]);
        bytebuf_append(&d, "\n", 1);
    }
    bytebuf_append(&d, "", 1);
    free(order);
    return d.data;
}

static void vocab_free(Vocab *v) {
    for (size_t k = 0; k < v->n; k++) free(v->sym[k]);
    free(v->sym);
    free(v->len);
    free(v->slot);
    free(v->id);
}

// Calls fn on each symbol of a Source: '(' and ')' dropped, ']' read as 'X', split at whitespace. A symbol
// is handed over in buf (bytes of the line with the mapping applied).
static size_t listops_symbols(const char *s, size_t n, char *buf, const char **sym, size_t *len, size_t max) {
    size_t count = 0, b = 0, start = 0;
    int in = 0;
    for (size_t i = 0; i <= n; i++) {
        char c = i < n ? s[i] : ' ';
        if (c == '(' || c == ')') continue;
        int space = c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
        if (space) {
            if (in) {
                if (count < max) { sym[count] = buf + start; len[count] = b - start; }
                count++;
                in = 0;
            }
            continue;
        }
        if (!in) { start = b; in = 1; }
        buf[b++] = c == ']' ? 'X' : c;
    }
    return count;
}

typedef struct {
    char *buf;
    const char **sym;
    size_t *len;
    size_t cap;
} SymBuf;

// Parses one ListOps line into its symbols (in sb) and label; returns the symbol count, or -1 for a bad line
// (reported through bad_line and counted).
static int64_t listops_line(Lra *p, Tsv *t, int s, const char *line, size_t n, SymBuf *sb, int32_t *label) {
    const char *f[2];
    size_t fl[2];
    char show[64];
    int nf = tsv_fields(line, n, f, fl, 2);
    if (nf != 2) {
        bad_line(p, t->path, t->lr.lineno, "expected 2 tab-separated fields (Source, Target), found %d", nf);
        p->split[s].malformed++;
        return -1;
    }
    if (memchr(line, 0, n)) {
        bad_line(p, t->path, t->lr.lineno, "a NUL byte in the line");
        p->split[s].malformed++;
        return -1;
    }
    size_t a = 0, b = fl[1];
    while (a < b && (f[1][a] == ' ' || f[1][a] == '\r')) a++;
    while (b > a && (f[1][b - 1] == ' ' || f[1][b - 1] == '\r')) b--;
    if (b - a != 1 || f[1][a] < '0' || f[1][a] > '9') {
        bad_line(p, t->path, t->lr.lineno, "the Target '%s' is not a class in 0..9", shown(f[1], fl[1], show, sizeof show));
        p->split[s].malformed++;
        return -1;
    }
    *label = f[1][a] - '0';
    if (fl[0] + 1 > sb->cap) {
        sb->cap = fl[0] + 1;
        sb->buf = xrealloc(sb->buf, sb->cap);
        sb->sym = xrealloc(sb->sym, sb->cap * sizeof *sb->sym);
        sb->len = xrealloc(sb->len, sb->cap * sizeof *sb->len);
    }
    return (int64_t)listops_symbols(f[0], fl[0], sb->buf, sb->sym, sb->len, sb->cap);
}

static char *join(const char *dir, const char *name) { return xasprintf("%s/%s", dir, name); }

// The header line of a ListOps file: "Source<TAB>Target". Anything else is not the file prepare expects.
static void listops_header(Tsv *t) {
    const char *line;
    size_t n;
    int r;
    while ((r = next_line(&t->lr, &line, &n)) == LINE_SKIPPED) {}
    if (r == LINE_END) die("%s: the file is empty (expected the header line 'Source<TAB>Target')", t->path);
    if (n && line[n - 1] == '\n') n--;
    if (n && line[n - 1] == '\r') n--;
    char show[64];
    if (n != 13 || memcmp(line, "Source\tTarget", 13) != 0)
        die("%s:%llu: expected the header line 'Source<TAB>Target', found '%s'", t->path, (unsigned long long)t->lr.lineno,
            shown(line, n, show, sizeof show));
}

// A ListOps file being read: the header checked when it is opened, then line by line as symbols.
typedef struct {
    Tsv t;
    SymBuf sb;       // the current line's symbols
    int32_t label;   // and its label
} ListopsFile;
#define LISTOPS_EOF (-2)

static void listops_open(Lra *p, ListopsFile *f, const char *path) {
    *f = (ListopsFile){0};
    tsv_open(p, &f->t, path);
    listops_header(&f->t);
}
// The next line, of split s: its symbol count, -1 for a bad line (reported and counted), LISTOPS_EOF at the end.
static int64_t listops_next(Lra *p, ListopsFile *f, int s) {
    const char *line;
    size_t n;
    if (!tsv_line(p, &f->t, s, &line, &n)) return LISTOPS_EOF;
    return listops_line(p, &f->t, s, line, n, &f->sb, &f->label);
}
static void listops_close(ListopsFile *f) {
    tsv_close(&f->t);
    free(f->sb.buf);
    free(f->sb.sym);
    free(f->sb.len);
}

static char *listops_vocab(Lra *p, Vocab *v, const char *train) {
    ListopsFile f;
    listops_open(p, &f, train);
    // Bad lines are reported and counted on the second reading; here they are only passed over (with
    // --strict the first one stops the run here already, with the same message).
    uint64_t warned = p->warned;
    p->warned = 5;
    SplitOut saved = p->split[0];
    for (int64_t k; (k = listops_next(p, &f, 0)) != LISTOPS_EOF;) {
        for (int64_t i = 0; i < k; i++) vocab_find(v, f.sb.sym[i], f.sb.len[i], 1, train);
        progress(p, "vocabulary", 0);
    }
    p->split[0] = saved;
    p->warned = warned;
    listops_close(&f);
    return vocab_finish(v);
}

static void listops_split(Lra *p, Vocab *v, const char *path, int s) {
    ListopsFile f;
    listops_open(p, &f, path);
    ids_reserve(p, 0, LRA_LISTOPS_LEN);
    for (int64_t k; (k = listops_next(p, &f, s)) != LISTOPS_EOF;) {
        if (k < 0) continue;
        // Cut to the length with eos: the first LEN - 1 symbols, then eos.
        size_t keep = (size_t)k < LRA_LISTOPS_LEN - 1 ? (size_t)k : LRA_LISTOPS_LEN - 1;
        if ((size_t)k > keep) p->split[s].truncated++;
        for (size_t i = 0; i < keep; i++) {
            int64_t j = vocab_find(v, f.sb.sym[i], f.sb.len[i], 0, path);
            p->ids[0][i] = j < 0 ? LRA_LISTOPS_UNK : v->id[j];
        }
        p->ids[0][keep] = LRA_LISTOPS_EOS;
        uint32_t len = (uint32_t)keep + 1;
        emit(p, s, f.label, &len, 1);
        progress(p, SPLITS[s], 0);
    }
    listops_close(&f);
}

// ----------------------------------------------------------------------------------------------------------
// Text: the aclImdb folder, {train,test}/{neg,pos}/*.txt, one review a file; a review's bytes are its tokens.

// The *.txt names of dir, sorted (so that the order does not depend on the file system).
static char **txt_names(const char *dir, size_t *n) {
    require_dir(dir, "review folder");
    return dir_names(dir, dir_keep_suffix, ".txt", n);
}

// A review: its first LEN - 1 bytes, then eos. Reads no more than it keeps.
static uint32_t read_review(Lra *p, const char *path, int *truncated) {
    uint64_t size;
    int fd = data_open_regular(path, "review", &size);
    ids_reserve(p, 0, LRA_TEXT_LEN);
    uint8_t buf[LRA_TEXT_LEN];
    size_t got = 0;
    while (got < LRA_TEXT_LEN) {   // one byte more than kept tells whether the review was cut
        ssize_t r = read(fd, buf + got, LRA_TEXT_LEN - got);
        if (r < 0) {
            if (errno == EINTR) continue;
            die("reading review %s failed: %s", path, strerror(errno));
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    close(fd);
    p->bytes_in += got;
    *truncated = got > LRA_TEXT_LEN - 1;
    size_t keep = got < LRA_TEXT_LEN - 1 ? got : LRA_TEXT_LEN - 1;
    for (size_t i = 0; i < keep; i++) p->ids[0][i] = buf[i];
    p->ids[0][keep] = LRA_BYTE_EOS;
    return (uint32_t)keep + 1;
}

// One split folder of aclImdb into the outputs listed in outs (test goes to val and test).
static void text_split(Lra *p, const char *root, const char *name, const int *outs, int nouts) {
    static const char *const CLASSES[2] = {"neg", "pos"};
    for (int c = 0; c < 2; c++) {
        char *dir = xasprintf("%s/%s/%s", root, name, CLASSES[c]);
        size_t n;
        char **names = txt_names(dir, &n);
        for (size_t i = 0; i < n; i++) {
            char *path = join(dir, names[i]);
            int cut;
            uint32_t len = read_review(p, path, &cut);
            for (int k = 0; k < nouts; k++) {
                emit(p, outs[k], c, &len, 1);
                p->split[outs[k]].truncated += (uint64_t)cut;
            }
            progress(p, name, 0);
            free(path);
            free(names[i]);
        }
        free(names);
        free(dir);
    }
}

// ----------------------------------------------------------------------------------------------------------
// Retrieval: "label<TAB>id1<TAB>id2<TAB>text1<TAB>text2" lines, no header; the label is a number equal to 0
// or 1 ("0", "1.0"); each text's bytes are its tokens.

static int parse_binary_label(const char *s, size_t n, int32_t *label) {
    char buf[32];
    if (n == 0 || n >= sizeof buf) return -1;
    memcpy(buf, s, n);
    buf[n] = 0;
    double v;
    if (parse_f64(buf, -1e300, 1e300, &v) != 0 || !(v == 0.0 || v == 1.0)) return -1;
    *label = v == 1.0;
    return 0;
}

static void retrieval_split(Lra *p, const char *path, int s) {
    Tsv t;
    tsv_open(p, &t, path);
    const char *line;
    size_t n;
    ids_reserve(p, 0, LRA_RETRIEVAL_LEN);
    ids_reserve(p, 1, LRA_RETRIEVAL_LEN);
    char show[64];
    while (tsv_line(p, &t, s, &line, &n)) {
        const char *f[5];
        size_t fl[5];
        int nf = tsv_fields(line, n, f, fl, 5);
        int32_t label;
        if (nf != 5) {
            bad_line(p, path, t.lr.lineno, "expected 5 tab-separated fields (label, id1, id2, text1, text2), found %d", nf);
            p->split[s].malformed++;
            continue;
        }
        if (parse_binary_label(f[0], fl[0], &label) != 0) {
            bad_line(p, path, t.lr.lineno, "the label '%s' is not 0 or 1", shown(f[0], fl[0], show, sizeof show));
            p->split[s].malformed++;
            continue;
        }
        uint32_t lens[2];
        int cut = 0;
        for (int d = 0; d < 2; d++) {
            const uint8_t *text = (const uint8_t *)f[3 + d];
            size_t keep = fl[3 + d] < LRA_RETRIEVAL_LEN - 1 ? fl[3 + d] : LRA_RETRIEVAL_LEN - 1;
            cut |= fl[3 + d] > keep;
            for (size_t i = 0; i < keep; i++) p->ids[d][i] = text[i];
            p->ids[d][keep] = LRA_BYTE_EOS;
            lens[d] = (uint32_t)keep + 1;
        }
        p->split[s].truncated += (uint64_t)cut;
        emit(p, s, label, lens, 2);
        progress(p, SPLITS[s], 0);
    }
    tsv_close(&t);
}

int lra_prepare(const LraPrepareOptions *o) {
    const char *task = lra_task_name(o->task);
    if (!task) die("prepare: unknown LRA task %d", (int)o->task);
    if (!o->input || !o->out) die("prepare: an input folder and an output directory are required");
    if (o->max_line_bytes < PREPARE_MAX_LINE_MIN || o->max_line_bytes > PREPARE_MAX_LINE_MAX)
        die("prepare: a longest line of %zu bytes is outside [%u, %u]", o->max_line_bytes, PREPARE_MAX_LINE_MIN,
            PREPARE_MAX_LINE_MAX);
    require_dir(o->input, "input folder");
    // The inputs of every split are checked before anything is written.
    static const char *const LISTOPS_FILES[3] = {"basic_train.tsv", "basic_val.tsv", "basic_test.tsv"};
    static const char *const AAN_FILES[3] = {"new_aan_pairs.train.tsv", "new_aan_pairs.eval.tsv", "new_aan_pairs.test.tsv"};
    char *inputs[3] = {0};
    for (int s = 0; s < 3; s++) {
        if (o->task == LRA_TEXT) continue;
        inputs[s] = join(o->input, (o->task == LRA_LISTOPS ? LISTOPS_FILES : AAN_FILES)[s]);
        require_file(inputs[s]);
    }
    if (o->task == LRA_TEXT)
        for (int s = 0; s < 4; s++) {
            char *dir = xasprintf("%s/%s/%s", o->input, s < 2 ? "train" : "test", s % 2 ? "pos" : "neg");
            require_dir(dir, "review folder");
            free(dir);
        }
    mkdir_p(o->out);
    for (int s = 0; s < 3; s++) {
        char *f = xasprintf("%s/%s" EXAMPLES_SUFFIX, o->out, SPLITS[s]);
        if (file_exists(f)) die("%s already holds example files (%s); remove them or choose another --out", o->out, f);
        free(f);
    }

    Lra p = {.o = o, .tty = isatty(2)};
    p.t0 = p.last_print = now_s();
    Vocab v = {0};
    char *desc;
    ExampleSpec spec = {.vocab_size = LRA_BYTE_VOCAB, .pad_id = LRA_BYTE_PAD, .nclasses = 2, .ndoc = 1};
    if (o->task == LRA_LISTOPS) {
        // Every split's header first, so that a wrong file fails before the long reading of the others.
        for (int s = 0; s < 3; s++) {
            Tsv t;
            tsv_open(&p, &t, inputs[s]);
            listops_header(&t);
            tsv_close(&t);
        }
        desc = listops_vocab(&p, &v, inputs[0]);
        spec = (ExampleSpec){.vocab_size = 3 + (uint32_t)v.n, .pad_id = LRA_LISTOPS_PAD, .nclasses = LRA_LISTOPS_CLASSES, .ndoc = 1};
    } else
        desc = xasprintf("0-255 bytes\n%d <pad>\n%d <eos>\n", LRA_BYTE_PAD, LRA_BYTE_EOS);
    if (o->task == LRA_RETRIEVAL) spec.ndoc = 2;
    spec.desc = desc;
    split_files_open(p.files, o->out, &spec);
    if (o->task == LRA_LISTOPS)
        for (int s = 0; s < 3; s++) listops_split(&p, &v, inputs[s], s);
    else if (o->task == LRA_RETRIEVAL)
        for (int s = 0; s < 3; s++) retrieval_split(&p, inputs[s], s);
    else {
        // The authors validated on the test reviews (IMDb has no validation split): val is a copy of test.
        int train[1] = {0}, test[2] = {1, 2};
        text_split(&p, o->input, "train", train, 1);
        text_split(&p, o->input, "test", test, 2);
    }
    if (p.split[0].examples == 0)
        die("no training examples: %s holds none that could be read%s", o->input,
            p.split[0].malformed || p.split[0].too_long ? " (every line was skipped)" : "");
    split_files_finish(p.files);
    progress(&p, "done", 1);

    double el = now_s() - p.t0;
    uint64_t malformed = 0, too_long = 0, truncated = 0;
    uint32_t longest = 0;
    for (int s = 0; s < 3; s++) {
        malformed += p.split[s].malformed;
        too_long += p.split[s].too_long;
        if (!(o->task == LRA_TEXT && s == 1)) truncated += p.split[s].truncated;   // Text's val repeats its test
        if (p.split[s].longest > longest) longest = p.split[s].longest;
    }
    printf("prepare: %s: train %llu, val %llu, test %llu examples", task, (unsigned long long)p.split[0].examples,
           (unsigned long long)p.split[1].examples, (unsigned long long)p.split[2].examples);
    if (o->task == LRA_LISTOPS)
        printf("; vocabulary %u (%zu symbols of the training split, pad, unk, eos)", spec.vocab_size, v.n);
    else
        printf("; vocabulary %u (bytes, pad, eos)", spec.vocab_size);
    printf("; longest document %u tokens with eos (cap %d), %llu truncated", longest,
           o->task == LRA_LISTOPS ? LRA_LISTOPS_LEN : o->task == LRA_TEXT ? LRA_TEXT_LEN : LRA_RETRIEVAL_LEN,
           (unsigned long long)truncated);
    if (o->task != LRA_TEXT) {
        printf("; %llu malformed line%s skipped", (unsigned long long)malformed, malformed == 1 ? "" : "s");
        if (too_long)
            printf(", %llu line%s longer than %zu bytes skipped (--max-line-bytes)", (unsigned long long)too_long,
                   too_long == 1 ? "" : "s", o->max_line_bytes);
    }
    printf("; %.1f MB read in %.1f s; wrote %s\n", (double)p.bytes_in / 1e6, el, o->out);
    fflush(stdout);

    for (int s = 0; s < 3; s++) {
        free(inputs[s]);
    }
    free(p.ids[0]);
    free(p.ids[1]);
    free(desc);
    vocab_free(&v);
    return 0;
}
