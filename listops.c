// listops.c: a ListOps generator that writes the Long Range Arena's files (basic_{train,val,test}.tsv):
// random expressions over MIN, MAX, MED and SM on digits, drawn as the original generator draws them, kept
// when their length is in range, labelled with their value. The distribution and the format: docs/lra.md.
#define _GNU_SOURCE
#include <strings.h>
#include <unistd.h>

#include "data.h"
#include "lra.h"
#include "tokenizer.h"

const char *const LISTOPS_OPS[4] = {"[MIN", "[MAX", "[MED", "[SM"};

// The original draws an operator with probability 0.25 at every depth below the maximum (a value otherwise,
// and always at the maximum), 2 to max_args arguments, the operator and the values uniformly.
#define OP_PROBABILITY 0.25

int listops_apply(int op, const int *args, int n) {
    int v[LISTOPS_MAX_ARGS], lo = 9, hi = 0, sum = 0;
    for (int i = 0; i < n; i++) {
        v[i] = args[i];
        lo = args[i] < lo ? args[i] : lo;
        hi = args[i] > hi ? args[i] : hi;
        sum += args[i];
    }
    switch (op) {
    case 0: return lo;
    case 1: return hi;
    case 3: return sum % 10;
    }
    // MED: insertion sort of at most ten digits; an even count takes the mean of the middle two, rounded down
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
            int t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// An expression in preorder: digits 0..9, operators 10..13 (with their argument count), the closing 14.
enum { TOK_OP = 10, TOK_END = 14 };
typedef struct {
    uint64_t rng;
    int nops, op_of[4];   // the operators that may be drawn (--ops): draw(nops), then op_of[]
    uint8_t tok[LISTOPS_MAX_LEN];
    uint8_t nargs[LISTOPS_MAX_LEN];
    int n, overflow;
} Expr;

static uint32_t draw(uint64_t *rng, uint32_t k) { return (uint32_t)(((unsigned __int128)splitmix64(rng) * k) >> 64); }

static void push(Expr *e, int tok, int nargs) {
    if (e->n == LISTOPS_MAX_LEN) { e->overflow = 1; return; }
    e->tok[e->n] = (uint8_t)tok;
    e->nargs[e->n] = (uint8_t)nargs;
    e->n++;
}

// Draws a subtree at depth (the root is 1) and returns its value. Once the expression reaches the maximum
// length it could only be rejected, so drawing stops there (the kept expressions are distributed as if every
// tree were drawn whole).
static int draw_tree(Expr *e, int depth) {
    if (e->overflow) return 0;
    double r = depth < LISTOPS_MAX_DEPTH ? rng_uniform(&e->rng) : 1.0;
    if (r > OP_PROBABILITY) {
        int v = (int)draw(&e->rng, 10);
        push(e, v, 0);
        return v;
    }
    int nargs = 2 + (int)draw(&e->rng, LISTOPS_MAX_ARGS - 1), op = e->op_of[draw(&e->rng, (uint32_t)e->nops)];
    int args[LISTOPS_MAX_ARGS];
    push(e, TOK_OP + op, nargs);
    for (int i = 0; i < nargs; i++) args[i] = draw_tree(e, depth + 1);
    push(e, TOK_END, 0);
    return listops_apply(op, args, nargs);
}

// The original's text of a subtree, from its nested pairs: an operator with k arguments opens k + 1
// parentheses, and each argument and the closing bracket closes one: "( ( ( [MAX 2 ) 9 ) ] )".
static int render(const Expr *e, int i, ByteBuf *out) {
    int t = e->tok[i];
    if (t < TOK_OP) {
        char c = (char)('0' + t);
        bytebuf_append(out, &c, 1);
        return i + 1;
    }
    for (int k = 0; k <= e->nargs[i]; k++) bytebuf_append(out, "( ", 2);
    bytebuf_append(out, LISTOPS_OPS[t - TOK_OP], strlen(LISTOPS_OPS[t - TOK_OP]));
    int nargs = e->nargs[i++];
    for (int a = 0; a < nargs; a++) {
        bytebuf_append(out, " ", 1);
        i = render(e, i, out);
        bytebuf_append(out, " )", 2);
    }
    bytebuf_append(out, " ] )", 4);
    return i + 1;   // past the closing token
}

// The expressions kept so far, by a 128-bit fingerprint of their text: the original keeps a set of trees.
typedef struct {
    uint64_t *slot;   // pairs; (0, 0) is empty
    size_t nslot, n;
} Seen;

static int seen_add(Seen *s, uint64_t a, uint64_t b) {
    if (!a && !b) a = 1;
    if (2 * (s->n + 1) > s->nslot) {
        size_t old = s->nslot;
        uint64_t *o = s->slot;
        s->nslot = old ? 2 * old : 1 << 16;
        s->slot = xcalloc(2 * s->nslot, sizeof *s->slot);
        s->n = 0;
        for (size_t i = 0; i < old; i++)
            if (o[2 * i] || o[2 * i + 1]) seen_add(s, o[2 * i], o[2 * i + 1]);
        free(o);
    }
    size_t mask = s->nslot - 1;
    for (size_t i = (size_t)a & mask;; i = (i + 1) & mask) {
        uint64_t *q = s->slot + 2 * i;
        if (!q[0] && !q[1]) {
            q[0] = a;
            q[1] = b;
            s->n++;
            return 1;
        }
        if (q[0] == a && q[1] == b) return 0;
    }
}

unsigned listops_parse_ops(const char *list, const char **err) {
    unsigned mask = 0;
    *err = NULL;
    for (const char *s = list;;) {
        const char *end = strchr(s, ',');
        size_t n = end ? (size_t)(end - s) : strlen(s);
        if (n && *s == '[') s++, n--;
        int k = 0;
        while (k < 4 && !(n == strlen(LISTOPS_OPS[k] + 1) && !strncasecmp(s, LISTOPS_OPS[k] + 1, n))) k++;
        if (k == 4) { *err = n ? "an unknown operator" : "an empty name"; return 0; }
        if (mask >> k & 1) { *err = "an operator named twice"; return 0; }
        mask |= 1u << k;
        if (!end) return mask;
        s = end + 1;
    }
}

int listops_generate(const ListopsOptions *o) {
    static const char *const NAMES[3] = {"basic_train.tsv", "basic_val.tsv", "basic_test.tsv"};
    if (!o->out) die("generate: an output directory is required");
    uint64_t total = 0;
    for (int s = 0; s < 3; s++) {
        if (o->sizes[s] < 1 || o->sizes[s] > (1ull << 32)) die("generate: %llu examples for a split is outside [1, 2^32]", (unsigned long long)o->sizes[s]);
        total += o->sizes[s];
    }
    mkdir_p(o->out);
    char *final[3], *tmp[3];
    FILE *f[3];
    for (int s = 0; s < 3; s++) {
        final[s] = xasprintf("%s/%s", o->out, NAMES[s]);
        if (file_exists(final[s])) die("%s already exists; remove it or choose another --out", final[s]);
    }
    for (int s = 0; s < 3; s++) {
        tmp[s] = xasprintf("%s.tmp", final[s]);
        data_cleanup_add(tmp[s]);
        f[s] = data_create_file(tmp[s]);
        // The header and the line ends of Python's csv writer, which wrote the original files: CRLF.
        if (fputs("Source\tTarget\r\n", f[s]) < 0) die("writing %s failed: %s", tmp[s], strerror(errno));
    }
    const int min_len = o->min_len, max_len = o->max_len;
    if (min_len < 0 || max_len > LISTOPS_MAX_LEN || min_len + 1 >= max_len)
        die("generate: the lengths must satisfy 0 <= min < max - 1 and max <= %d (kept: min < tokens < max), got %d and %d",
            LISTOPS_MAX_LEN, min_len, max_len);
    Expr *e = xcalloc(1, sizeof *e);
    e->rng = mix64(o->seed ^ 0x6C6973746F7073ull);
    const unsigned ops = o->ops & 15 ? o->ops & 15 : 15;   // all four: the same draws as before the choice existed
    for (int k = 0; k < 4; k++)
        if (ops >> k & 1) e->op_of[e->nops++] = k;
    Seen seen = {0};
    ByteBuf line = {0};
    uint64_t kept = 0, draws = 0, dups = 0, bytes = 0, len_sum = 0, counts[10] = {0}, last_new = 0;
    int len_min = max_len, len_max = 0, tty = isatty(2);
    double t0 = now_s(), last = t0;
    while (kept < total) {
        e->n = 0;
        e->overflow = 0;
        int value = draw_tree(e, 1);
        draws++;
        // a range that holds fewer distinct expressions than asked for (or that draws seldom reach) would loop
        // for ever: give up once many draws in a row brought nothing new
        if (draws - last_new > LISTOPS_GIVE_UP)
            die("generate: listops: no new expression of %d to %d tokens in the last %d draws (%llu of %llu kept): the "
                "range is too narrow for the sizes asked; widen --min-len/--max-len or ask for fewer examples",
                min_len + 1, max_len - 1, LISTOPS_GIVE_UP, (unsigned long long)kept, (unsigned long long)total);
        if (e->overflow || e->n <= min_len || e->n >= max_len) continue;
        line.n = 0;
        render(e, 0, &line);
        uint64_t h1 = data_fnv1a(DATA_FNV_INIT, line.data, line.n), h2 = mix64(h1 ^ (uint64_t)line.n);
        for (size_t i = 0; i < line.n; i += 8) {
            uint64_t w = 0;
            memcpy(&w, line.data + i, line.n - i < 8 ? line.n - i : 8);
            h2 = mix64(h2 ^ w);
        }
        if (!seen_add(&seen, h1, h2)) { dups++; continue; }
        last_new = draws;
        int s = kept < o->sizes[0] ? 0 : kept < o->sizes[0] + o->sizes[1] ? 1 : 2;
        char label[8];
        int k = snprintf(label, sizeof label, "\t%d\r\n", value);
        bytebuf_append(&line, label, (size_t)k);
        if (fwrite(line.data, 1, line.n, f[s]) != line.n) die("writing %s failed: %s", tmp[s], strerror(errno));
        bytes += line.n;
        kept++;
        len_sum += (uint64_t)e->n;
        len_min = e->n < len_min ? e->n : len_min;
        len_max = e->n > len_max ? e->n : len_max;
        counts[value]++;
        double t = now_s();
        if (t - last >= (tty ? 0.25 : 5.0)) {
            last = t;
            double rate = (double)kept / (t - t0), eta = (double)(total - kept) / (rate > 0 ? rate : 1);
            fprintf(stderr, "%sgenerate: listops: %llu of %llu expressions, %.1f MB, %.0f/s, ETA %.0f s%s", tty ? "\r" : "",
                    (unsigned long long)kept, (unsigned long long)total, (double)bytes / 1e6, rate, eta, tty ? "\x1b[K" : "\n");
        }
    }
    if (tty) fputc('\n', stderr);
    for (int s = 0; s < 3; s++) data_close_file(f[s], tmp[s]);
    // All three get their final names, or none: the finals are removed too if a rename fails.
    for (int s = 0; s < 3; s++) data_cleanup_add(final[s]);
    for (int s = 0; s < 3; s++)
        if (rename(tmp[s], final[s]) != 0) die("renaming %s to %s failed: %s", tmp[s], final[s], strerror(errno));
    data_fsync_parent(final[0]);
    for (int s = 0; s < 3; s++) {
        data_cleanup_remove(final[s]);
        data_cleanup_remove(tmp[s]);
    }
    double el = now_s() - t0;
    printf("generate: listops: train %llu, val %llu, test %llu expressions of %d to %d tokens (mean %.0f, parentheses "
           "not counted)", (unsigned long long)o->sizes[0], (unsigned long long)o->sizes[1], (unsigned long long)o->sizes[2],
           len_min, len_max, (double)len_sum / (double)kept);
    if (e->nops < 4) {
        printf(", operators");
        for (int k = 0; k < e->nops; k++) printf("%s %s", k ? "," : "", LISTOPS_OPS[e->op_of[k]] + 1);
        printf(" only");
    }
    printf("; %llu drawn, %llu duplicates; labels 0-9:", (unsigned long long)draws, (unsigned long long)dups);
    for (int v = 0; v < 10; v++) printf(" %.1f%%", 100.0 * (double)counts[v] / (double)kept);
    printf("; %.1f MB in %.1f s; wrote %s\n", (double)bytes / 1e6, el, o->out);
    fflush(stdout);
    for (int s = 0; s < 3; s++) {
        free(final[s]);
        free(tmp[s]);
    }
    free(e);
    free(seen.slot);
    free(line.data);
    return 0;
}
