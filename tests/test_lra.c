// test_lra.c: the Long Range Arena's token tasks. The ListOps generator: every label recomputed by an
// evaluator of this test (a stack machine over the flat token stream, not the generator's recursive tree),
// the textual layout checked by a parser of the original's nested pairs, the length, depth and argument
// bounds, distinct expressions, the same bytes from the same seed. `prepare` on fixtures of each official
// layout written here (ListOps TSVs, an aclImdb-shaped folder, AAN-shaped TSVs), read back through the
// example reader; bad lines skipped and counted or fatal with --strict; bad inputs refused leaving nothing.
// Run from the repository root; writes under tests/tmp. Exits 1 on any failure. SHOWMSG=1 prints the message
// of every refusal.
#define _GNU_SOURCE
#include <sys/stat.h>
#include <zstd.h>

#include "../commands.h"
#include "../examples.h"
#include "../lra.h"
#include "../tokenizer.h"
#include "check.h"
#include "child.h"
#include "files.h"

#define TMP "tests/tmp/test_lra"
#include "data_cmd.h"

// ---- files and child processes ----

static void mkdirs(const char *path) { mkdir_p(path); }

// One check: text holds every fragment of a NULL-terminated list; a failure names the first one missing.
static void holds_all(const char *what, const char *text, const char *const *frags) {
    const char *missing = NULL;
    for (; *frags && !missing; frags++)
        if (!text || !strstr(text, *frags)) missing = *frags;
    CHECK(!missing, "%s lacks \"%s\": %s", what, missing, text ? text : "");
}

// The command must fail with exit status rc and a message holding both fragments.
static void expect_fail(const char *what, int rc, const char *cmd, const char *const *args, const char *frag1, const char *frag2) {
    expect_msg_of(what, rc, cmd, args, frag1, frag2);
}

// Usage errors: each case must exit 2 with its fragment and the usage line, and none may create TMP/u.
typedef struct {
    const char *what;
    const char *args[12];
    const char *frag;
} Usage;
static void expect_usage(const char *cmd, const Usage *cases, size_t n) {
    for (size_t i = 0; i < n; i++) expect_fail(cases[i].what, 2, cmd, cases[i].args, cases[i].frag, "usage:");
    CHECK(access(TMP "/u", F_OK) != 0, "a refused %s created its directory", cmd);
}

// ---- an evaluator of ListOps written for this test ----

// The original's text is nested pairs: ( A B ) where an operator applied to arguments a0 .. ak-1 is
// ( ( ... ( ( OP a0 ) a1 ) ... ak-1 ) ] ). This parser checks that layout exactly and measures the tree;
// it computes no values (the stack machine below does).
typedef struct {
    const char *s, *end;
    int ok, max_depth, max_args, min_args, tokens, max_op_depth;
} Pairs;

static int next_token(Pairs *p, const char **tok, size_t *n) {
    while (p->s < p->end && *p->s == ' ') p->s++;
    if (p->s == p->end) return 0;
    *tok = p->s;
    while (p->s < p->end && *p->s != ' ') p->s++;
    *n = (size_t)(p->s - *tok);
    return 1;
}
static int is_tok(const char *t, size_t n, const char *w) { return n == strlen(w) && !memcmp(t, w, n); }
static int is_op(const char *t, size_t n) {
    return is_tok(t, n, "[MIN") || is_tok(t, n, "[MAX") || is_tok(t, n, "[MED") || is_tok(t, n, "[SM");
}

// An expression at depth: a digit, or "(" CHAIN "]" ")" where CHAIN is k + 1 opening parentheses, the
// operator, and k arguments each followed by ")".
static void parse_expr(Pairs *p, int depth) {
    const char *t;
    size_t n;
    if (!p->ok || !next_token(p, &t, &n)) { p->ok = 0; return; }
    if (n == 1 && *t >= '0' && *t <= '9') {
        p->tokens++;
        if (depth > p->max_depth) p->max_depth = depth;
        return;
    }
    if (!is_tok(t, n, "(")) { p->ok = 0; return; }
    int opens = 1;
    while (next_token(p, &t, &n) && is_tok(t, n, "(")) opens++;
    if (!is_op(t, n)) { p->ok = 0; return; }
    p->tokens += 2;   // the operator and its "]"
    if (depth > p->max_depth) p->max_depth = depth;
    if (depth > p->max_op_depth) p->max_op_depth = depth;
    int k = opens - 1;   // one parenthesis closes the chain after "]"
    for (int a = 0; a < k && p->ok; a++) {
        parse_expr(p, depth + 1);
        if (!next_token(p, &t, &n) || !is_tok(t, n, ")")) p->ok = 0;
    }
    if (!next_token(p, &t, &n) || !is_tok(t, n, "]")) p->ok = 0;
    if (!next_token(p, &t, &n) || !is_tok(t, n, ")")) p->ok = 0;
    if (k > p->max_args) p->max_args = k;
    if (k < p->min_args) p->min_args = k;
}

// The k-th smallest (from 0) of digit counts.
static int kth(const int *count, int k) {
    for (int d = 0; d < 10; d++) {
        if (k < count[d]) return d;
        k -= count[d];
    }
    return -1;
}

// The value by a stack machine over the tokens, parentheses ignored: an operator opens a frame, a digit joins
// the open frame, "]" closes it and its value joins the frame below. Frames keep digit counts, not lists.
static int stack_eval(const char *s, size_t n) {
    int op[64], count[64][10], sp = 0, result = -1;
    Pairs p = {s, s + n, 1, 0, 0, 0, 0, 0};
    const char *t;
    size_t len;
    while (next_token(&p, &t, &len)) {
        if (is_tok(t, len, "(") || is_tok(t, len, ")")) continue;
        int v = -1;
        if (is_op(t, len)) {
            if (sp == 64) return -2;
            op[sp] = t[1] == 'S' ? 3 : t[2] == 'I' ? 0 : t[2] == 'A' ? 1 : 2;
            memset(count[sp], 0, sizeof count[sp]);
            sp++;
            continue;
        }
        if (is_tok(t, len, "]")) {
            if (!sp) return -2;
            sp--;
            int *c = count[sp], total = 0, sum = 0, lo = -1, hi = -1;
            for (int d = 0; d < 10; d++) {
                total += c[d];
                sum += d * c[d];
                if (c[d] && lo < 0) lo = d;
                if (c[d]) hi = d;
            }
            if (total == 0) return -2;
            v = op[sp] == 0 ? lo : op[sp] == 1 ? hi : op[sp] == 3 ? sum % 10
                : total % 2 ? kth(c, total / 2) : (kth(c, total / 2 - 1) + kth(c, total / 2)) / 2;
        } else if (len == 1 && *t >= '0' && *t <= '9')
            v = *t - '0';
        else
            return -2;
        if (sp) count[sp - 1][v]++;
        else result = v;
    }
    return sp ? -2 : result;
}

// ---- the generator ----

static const char *SPLIT_FILES[3] = {"basic_train.tsv", "basic_val.tsv", "basic_test.tsv"};

static int line_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void test_generator(void) {
    const char *args[] = {"--task", "listops", "--out", TMP "/gen", "--seed", "5", "--train-size", "150", "--val-size", "30",
                          "--test-size", "20", NULL};
    CHECK(run("generate", args) == 0, "generate failed: %s", err_text.p);
    CHECK(strstr(out_text.p, "generate: listops: train 150, val 30, test 20 expressions"), "summary: %s", out_text.p);
    int sizes[3] = {150, 30, 20}, bad_layout = 0, bad_label = 0, bad_bounds = 0, total = 0, labels[10] = {0}, ops_seen = 0;
    int deepest = 0, widest = 0, shortest = 1 << 30, longest = 0;
    char **lines = xmalloc(200 * sizeof *lines);
    for (int s = 0; s < 3; s++) {
        char path[256];
        snprintf(path, sizeof path, TMP "/gen/%s", SPLIT_FILES[s]);
        Text t = slurp(path);
        CHECK(t.p && !strncmp(t.p, "Source\tTarget\r\n", 15), "%s lacks the header line", path);
        int count = 0;
        for (char *line = t.p + 15; line < t.p + t.n;) {
            char *eol = strstr(line, "\r\n");
            if (!eol) { bad_layout++; break; }
            *eol = 0;
            char *tab = strchr(line, '\t');
            if (!tab || tab[1] < '0' || tab[1] > '9' || tab[2]) { bad_layout++; line = eol + 2; continue; }
            int label = tab[1] - '0';
            Pairs p = {line, tab, 1, 0, 0, 99, 0, 0};
            parse_expr(&p, 1);
            const char *rest;
            size_t rn;
            if (!p.ok || next_token(&p, &rest, &rn)) bad_layout++;
            if (p.tokens <= LISTOPS_MIN_LEN || p.tokens >= LISTOPS_MAX_LEN || p.max_depth > LISTOPS_MAX_DEPTH || p.max_op_depth >= LISTOPS_MAX_DEPTH ||
                p.max_args > LISTOPS_MAX_ARGS || p.min_args < 2)
                bad_bounds++;
            if (stack_eval(line, (size_t)(tab - line)) != label) bad_label++;
            deepest = p.max_depth > deepest ? p.max_depth : deepest;
            widest = p.max_args > widest ? p.max_args : widest;
            shortest = p.tokens < shortest ? p.tokens : shortest;
            longest = p.tokens > longest ? p.tokens : longest;
            ops_seen |= (strstr(line, "[MIN") != 0) | (strstr(line, "[MAX") != 0) << 1 | (strstr(line, "[MED") != 0) << 2 |
                        (strstr(line, "[SM") != 0) << 3;
            labels[label]++;
            if (total < 200) lines[total] = xstrdup(line);
            total++;
            count++;
            line = eol + 2;
        }
        CHECK(count == sizes[s], "%s holds %d expressions, expected %d", path, count, sizes[s]);
        free(t.p);
    }
    CHECK(!bad_layout, "%d lines are not in the original's nested-pair layout", bad_layout);
    CHECK(!bad_label, "%d labels differ from the stack machine's value", bad_label);
    CHECK(!bad_bounds, "%d expressions break the bounds (length %d..%d, depth <= %d, 2..%d arguments)", bad_bounds,
          LISTOPS_MIN_LEN + 1, LISTOPS_MAX_LEN - 1, LISTOPS_MAX_DEPTH, LISTOPS_MAX_ARGS);
    // the bounds are reached, not just respected: the distribution is the original's, not a narrower one
    CHECK(deepest == LISTOPS_MAX_DEPTH && widest == LISTOPS_MAX_ARGS && ops_seen == 15, "depth %d, arguments %d, operators %x",
          deepest, widest, ops_seen);
    CHECK(shortest < 600 && longest > 1700, "lengths %d..%d do not span the range", shortest, longest);
    int classes = 0;
    for (int v = 0; v < 10; v++) classes += labels[v] > 0;
    CHECK(classes >= 8, "only %d distinct labels in 200 expressions", classes);
    qsort(lines, (size_t)total, sizeof *lines, line_cmp);
    int dup = 0;
    for (int i = 1; i < total; i++) dup += !strcmp(lines[i - 1], lines[i]);
    CHECK(!dup, "%d repeated expressions", dup);
    for (int i = 0; i < total; i++) free(lines[i]);
    free(lines);

    // the same seed gives the same bytes; another seed other ones
    const char *again[] = {"--task", "listops", "--out", TMP "/gen2", "--seed", "5", "--train-size", "150", "--val-size", "30",
                           "--test-size", "20", NULL};
    const char *other[] = {"--task", "listops", "--out", TMP "/gen3", "--seed", "6", "--train-size", "150", "--val-size", "30",
                           "--test-size", "20", NULL};
    CHECK(run("generate", again) == 0 && run("generate", other) == 0, "generate failed: %s", err_text.p);
    for (int s = 0; s < 3; s++) {
        char a[256], b[256], c[256];
        snprintf(a, sizeof a, TMP "/gen/%s", SPLIT_FILES[s]);
        snprintf(b, sizeof b, TMP "/gen2/%s", SPLIT_FILES[s]);
        snprintf(c, sizeof c, TMP "/gen3/%s", SPLIT_FILES[s]);
        Text x = slurp(a), y = slurp(b), z = slurp(c);
        CHECK(x.n == y.n && !memcmp(x.p, y.p, x.n), "%s differs between two runs with the same seed", SPLIT_FILES[s]);
        CHECK(x.n != z.n || memcmp(x.p, z.p, x.n), "%s is the same for seeds 5 and 6", SPLIT_FILES[s]);
        free(x.p);
        free(y.p);
        free(z.p);
    }

    // --ops: only the operators named are drawn, the labels still the stack machine's; the default draws as before
    const char *two_ops[] = {"--task", "listops", "--out", TMP "/gen4", "--seed", "5", "--train-size", "120", "--val-size", "10",
                             "--test-size", "10", "--min-len", "20", "--max-len", "300", "--ops", "sm,[MED", NULL};
    CHECK(run("generate", two_ops) == 0, "generate --ops failed: %s", err_text.p);
    CHECK(strstr(out_text.p, ", operators MED, SM only;"), "summary of --ops: %s", out_text.p);
    int n_med = 0, n_sm = 0, n_other = 0, ops_bad_label = 0, ops_lines = 0;
    for (int s = 0; s < 3; s++) {
        char path[256];
        snprintf(path, sizeof path, TMP "/gen4/%s", SPLIT_FILES[s]);
        Text t = slurp(path);
        CHECK(t.p && t.n > 15, "%s is missing", path);
        for (char *line = t.p + 15; line < t.p + t.n;) {
            char *eol = strstr(line, "\r\n");
            if (!eol) break;
            *eol = 0;
            char *tab = strchr(line, '\t');
            CHECK(tab, "a line of %s has no tab", path);
            for (const char *q = line; (q = strchr(q, '[')) && q < tab; q++) {
                if (!strncmp(q, "[MED ", 5)) n_med++;
                else if (!strncmp(q, "[SM ", 4)) n_sm++;
                else n_other++;
            }
            ops_bad_label += stack_eval(line, (size_t)(tab - line)) != tab[1] - '0';
            ops_lines++;
            line = eol + 2;
        }
        free(t.p);
    }
    CHECK(ops_lines == 140 && !n_other && n_med > 50 && n_sm > 50 && !ops_bad_label,
          "--ops MED,SM: %d lines, %d MED, %d SM, %d other operators, %d labels off", ops_lines, n_med, n_sm, n_other, ops_bad_label);
    const char *perr;
    CHECK(listops_parse_ops("SM", &perr) == 8 && !perr && listops_parse_ops("min,MAX,[Med,sm", &perr) == 15 && !perr,
          "listops_parse_ops of good lists");
    CHECK(!listops_parse_ops("SM,SM", &perr) && perr && !listops_parse_ops("SUM", &perr) && perr &&
              !listops_parse_ops("MIN,", &perr) && perr && !listops_parse_ops("", &perr) && perr,
          "listops_parse_ops of bad lists");

    // listops_apply: MED of an even count is the mean of the middle two, rounded down (numpy.median, int())
    int a1[] = {2, 5}, a2[] = {9, 1, 4, 4}, a3[] = {7, 3, 8}, a4[] = {9, 9, 9};
    CHECK(listops_apply(2, a1, 2) == 3 && listops_apply(2, a2, 4) == 4 && listops_apply(2, a3, 3) == 7, "MED");
    CHECK(listops_apply(3, a4, 3) == 7 && listops_apply(0, a3, 3) == 3 && listops_apply(1, a2, 4) == 9, "SM, MIN, MAX");

    // refusals: existing files are not overwritten; usage errors exit 2
    expect_fail("generate over existing files", 1, "generate", args, "basic_train.tsv", "already exists");
    static const Usage usage[] = {
        {"generate --task nope", {"--task", "nope", "--out", TMP "/u", NULL}, "--task must be listops or pathfinder"},
        {"generate without --out", {"--task", "listops", NULL}, "--out is required"},
        {"generate --train-size 0", {"--task", "listops", "--out", TMP "/u", "--train-size", "0", NULL}, "--train-size"},
        {"generate --seed -1", {"--task", "listops", "--out", TMP "/u", "--seed", "-1", NULL}, "--seed"},
        {"generate --bogus", {"--task", "listops", "--out", TMP "/u", "--bogus", NULL}, "unknown option '--bogus'"},
        {"generate --ops SUM", {"--task", "listops", "--out", TMP "/u", "--ops", "MIN,SUM", NULL}, "holds an unknown operator"},
        {"generate --ops twice", {"--task", "listops", "--out", TMP "/u", "--ops", "SM,sm", NULL}, "an operator named twice"},
        {"generate pathfinder --ops", {"--task", "pathfinder", "--size", "32", "--out", TMP "/u", "--ops", "SM", NULL},
         "--ops does not apply to --task pathfinder"},
        {"generate without --task", {"--out", TMP "/u", NULL}, "--task is required"},
    };
    expect_usage("generate", usage, sizeof usage / sizeof *usage);
}

// ---- prepare: reading back ----

// The description's "ID SYMBOL" lines as a table: symbol of each id (byte ranges as NULL).
typedef struct { char **sym; uint32_t n; } Desc;
static Desc parse_desc(const char *d, uint32_t vocab) {
    Desc r = {xcalloc(vocab, sizeof(char *)), vocab};
    while (*d) {
        const char *eol = strchr(d, '\n');
        if (!eol) break;
        unsigned id;
        int used;
        if (sscanf(d, "%u %n", &id, &used) == 1 && id < vocab && d[used - 1] == ' ')
            r.sym[id] = strndup(d + used, (size_t)(eol - d - used));
        d = eol + 1;
    }
    return r;
}
static void free_desc(Desc *d) {
    for (uint32_t i = 0; i < d->n; i++) free(d->sym[i]);
    free(d->sym);
}

// Every example of DIR/<split>.examples, in order.
typedef struct { uint64_t n; int ndoc; int32_t *labels, *lens, *tok; int T; } Split;
static Split read_split(const char *dir, const char *split, int T) {
    Examples *e = example_open(dir, split);
    Split s = {example_count(e), example_ndoc(e), 0, 0, 0, T};
    s.labels = xmalloc((s.n + 1) * sizeof *s.labels);
    s.lens = xmalloc((s.n + 1) * (size_t)s.ndoc * sizeof *s.lens);
    s.tok = xmalloc((s.n + 1) * (size_t)s.ndoc * (size_t)T * sizeof *s.tok);
    for (uint64_t i = 0; i < s.n; i++)
        s.labels[i] = example_read(e, i, T, s.tok + i * (size_t)s.ndoc * T, s.lens + i * (size_t)s.ndoc);
    example_close(e);
    return s;
}
static void free_split(Split *s) { free(s->labels); free(s->lens); free(s->tok); }

// Whether document d of example i is exactly bytes[0, n) cut to cap - 1, then eos.
static int doc_is_bytes(const Split *s, uint64_t i, int d, const char *bytes, size_t n, size_t cap) {
    size_t keep = n < cap - 1 ? n : cap - 1;
    const int32_t *t = s->tok + (i * (size_t)s->ndoc + (size_t)d) * (size_t)s->T;
    if (s->lens[i * (size_t)s->ndoc + (size_t)d] != (int32_t)keep + 1) return 0;
    for (size_t k = 0; k < keep; k++)
        if (t[k] != (uint8_t)bytes[k]) return 0;
    return t[keep] == LRA_BYTE_EOS;
}

// ---- prepare: ListOps ----

// The symbols of a Source by this test's own reading of the rule: drop '(' and ')', ']' is "X", split at
// spaces and tabs.
static int source_symbols(const char *src, char syms[][16], int max) {
    int n = 0, k = 0;
    for (const char *c = src;; c++) {
        if (*c == '(' || *c == ')') continue;
        if (*c == ' ' || *c == '\t' || !*c) {
            if (k) { syms[n][k] = 0; if (++n == max) return n; k = 0; }
            if (!*c) return n;
            continue;
        }
        if (k < 15) syms[n][k++] = *c == ']' ? 'X' : *c;
    }
}

static void test_prepare_listops_generated(void) {
    const char *args[] = {"--task", "lra-listops", "--input", TMP "/gen", "--out", TMP "/lo", NULL};
    CHECK(run("prepare", args) == 0, "prepare lra-listops failed: %s", err_text.p);
    CHECK(strstr(out_text.p, "train 150, val 30, test 20 examples; vocabulary 18 (15 symbols"), "summary: %s", out_text.p);
    static char syms[2100][16];
    int bad = 0;
    for (int s = 0; s < 3; s++) {
        static const char *names[3] = {"train", "val", "test"};
        Split sp = read_split(TMP "/lo", names[s], LRA_LISTOPS_LEN);
        Examples *e = example_open(TMP "/lo", names[s]);
        CHECK(example_vocab(e) == 18 && example_classes(e) == 10 && example_pad(e) == 0 && example_ndoc(e) == 1,
              "%s: vocabulary %u, classes %u", names[s], example_vocab(e), example_classes(e));
        Desc d = parse_desc(example_vocab_desc(e), example_vocab(e));
        CHECK(d.sym[0] && !strcmp(d.sym[0], "<pad>") && d.sym[1] && !strcmp(d.sym[1], "<unk>") && d.sym[2] &&
                  !strcmp(d.sym[2], "<eos>") && d.sym[13] && !strcmp(d.sym[13], "X") && d.sym[17] && !strcmp(d.sym[17], "[SM"),
              "%s: the description does not list the symbols in byte order", names[s]);
        char path[256];
        snprintf(path, sizeof path, TMP "/gen/%s", SPLIT_FILES[s]);
        Text t = slurp(path);
        uint64_t i = 0;
        for (char *line = strstr(t.p, "\r\n") + 2; line < t.p + t.n; i++) {
            char *eol = strstr(line, "\r\n"), *tab = strchr(line, '\t');
            *tab = 0;
            int n = source_symbols(line, syms, 2100);
            const int32_t *tok = sp.tok + i * LRA_LISTOPS_LEN;
            int ok = i < sp.n && sp.labels[i] == tab[1] - '0' && sp.lens[i] == n + 1 && tok[n] == LRA_LISTOPS_EOS;
            for (int k = 0; ok && k < n; k++) ok = tok[k] >= 3 && tok[k] < 18 && !strcmp(d.sym[tok[k]], syms[k]);
            bad += !ok;
            line = eol + 2;
        }
        CHECK(i == sp.n, "%s: %llu examples for %llu lines", names[s], (unsigned long long)sp.n, (unsigned long long)i);
        free(t.p);
        free_desc(&d);
        example_close(e);
        free_split(&sp);
    }
    CHECK(!bad, "%d ListOps examples differ from their lines", bad);
    // a second prepare into the same directory is refused
    expect_fail("prepare over example files", 1, "prepare", args, TMP "/lo", "already holds example files");
}

static void test_prepare_listops_fixture(void) {
    mkdirs(TMP "/lof");
    // A long Source: 2100 symbols, cut to 2047 and eos.
    ByteBuf longsrc = {0};
    bytebuf_append(&longsrc, "( [MAX", 6);
    for (int i = 0; i < 2098; i++) bytebuf_append(&longsrc, " 7", 2);
    bytebuf_append(&longsrc, " ] )\t7\n", 7);
    bytebuf_append(&longsrc, "", 1);
    char *train = xasprintf(
        "Source\tTarget\r\n"
        "( ( ( [MAX 2 ) 9 ) ] )\t9\r\n"          // CRLF
        "( ( ( [MIN 4 ) 1 ) ] )\t1\n"            // LF
        "   \r\n"                                // blank: passed over
        "( ( ( [SM 4 ) 8 ) ] )\n"                // line 5: no Target
        "( ( ( [MED 4 ) 8 ) ] )\t12\n"           // line 6: Target out of range
        "( ( ( [MED 4 ) 8 ) ] )\tx\n"            // line 7: not a number
        "a\tb\tc\n"                              // line 8: three fields
        "%s", longsrc.data);
    spits(TMP "/lof/basic_train.tsv", train);
    // val: a symbol never seen in training becomes unk; a line over 8192 bytes with --max-line-bytes 8192
    ByteBuf val = {0};
    const char *v0 = "Source\tTarget\n( ( ( [FIRST 4 ) 9 ) ] )\t4\n";
    bytebuf_append(&val, v0, strlen(v0));
    for (int i = 0; i < 5000; i++) bytebuf_append(&val, "1 ", 2);
    const char *v2 = "\t1\n( ( [SM 5 ) ] )\t5";   // the last line without '\n'
    bytebuf_append(&val, v2, strlen(v2));
    spit(TMP "/lof/basic_val.tsv", val.data, val.n);
    spits(TMP "/lof/basic_test.tsv", "Source\tTarget\n");
    const char *args[] = {"--task", "lra-listops", "--input", TMP "/lof", "--out", TMP "/lof-ex", "--max-line-bytes", "8192", NULL};
    CHECK(run("prepare", args) == 0, "prepare of the ListOps fixture failed: %s", err_text.p);
    holds_all("the summary", out_text.p,
              (const char *const[]){"train 3, val 2, test 0 examples", "vocabulary 11 (8 symbols", "longest document 2048 tokens",
                                    "1 truncated", "4 malformed lines skipped, 1 line longer than 8192 bytes skipped", NULL});
    holds_all("the warnings", err_text.p,
              (const char *const[]){"basic_train.tsv:5: expected 2 tab-separated fields",
                                    "basic_train.tsv:6: the Target '12' is not a class in 0..9",
                                    "basic_train.tsv:8: expected 2 tab-separated fields (Source, Target), found 3",
                                    "basic_val.tsv:3: line longer than 8192 bytes", NULL});
    Split tr = read_split(TMP "/lof-ex", "train", LRA_LISTOPS_LEN);
    Split va = read_split(TMP "/lof-ex", "val", 8);
    // the symbols of the good training lines, in byte order after the specials (the bad lines add none)
    Examples *e = example_open(TMP "/lof-ex", "train");
    Desc d = parse_desc(example_vocab_desc(e), example_vocab(e));
    static const char *want[] = {"<pad>", "<unk>", "<eos>", "1", "2", "4", "7", "9", "X", "[MAX", "[MIN"};
    int ok = example_vocab(e) == 11;
    for (int i = 0; ok && i < 11; i++) ok = d.sym[i] && !strcmp(d.sym[i], want[i]);
    CHECK(ok, "fixture vocabulary: %s", example_vocab_desc(e));
    int32_t e0[] = {9, 4, 7, 8, 2}, e1[] = {10, 5, 3, 8, 2};
    CHECK(tr.n == 3 && tr.labels[0] == 9 && tr.labels[1] == 1 && tr.labels[2] == 7 && tr.lens[0] == 5 && tr.lens[1] == 5 &&
              !memcmp(tr.tok, e0, sizeof e0) && !memcmp(tr.tok + LRA_LISTOPS_LEN, e1, sizeof e1),
          "fixture train examples differ");
    const int32_t *big = tr.tok + 2 * LRA_LISTOPS_LEN;
    CHECK(tr.lens[2] == LRA_LISTOPS_LEN && big[0] == 9 && big[1] == 6 && big[2046] == 6 && big[2047] == LRA_LISTOPS_EOS,
          "the long Source is not cut to 2047 symbols and eos (length %d)", tr.lens[2]);
    // val: "[FIRST" is unk; so are "[SM" and "5" of the last line, which only bad training lines had
    int32_t w0[8] = {LRA_LISTOPS_UNK, 5, 7, 8, LRA_LISTOPS_EOS, 0, 0, 0}, v1[8] = {1, 1, 8, LRA_LISTOPS_EOS, 0, 0, 0, 0};
    CHECK(va.n == 2 && va.labels[0] == 4 && va.lens[0] == 5 && !memcmp(va.tok, w0, sizeof w0) && va.labels[1] == 5 &&
              va.lens[1] == 4 && !memcmp(va.tok + 8, v1, sizeof v1),
          "fixture val examples differ (%d %d %d %d %d)", va.tok[0], va.tok[1], va.tok[2], va.tok[3], va.tok[4]);
    free_desc(&d);
    example_close(e);
    free_split(&tr);
    free_split(&va);

    // --strict: the first bad line stops the run, naming file and line; nothing is left
    const char *strict[] = {"--task", "lra-listops", "--input", TMP "/lof", "--out", TMP "/lof-strict", "--strict", NULL};
    expect_fail("ListOps --strict", 1, "prepare", strict, "basic_train.tsv:5:", "expected 2 tab-separated fields");
    CHECK(!dir_has(TMP "/lof-strict", "examples"), "a failed prepare left files");
    // a missing header, a missing split, an input that is not a folder
    spits(TMP "/lof/basic_test.tsv", "( [MAX 1 ] )\t1\n");
    const char *hdr[] = {"--task", "lra-listops", "--input", TMP "/lof", "--out", TMP "/lof-hdr", NULL};
    expect_fail("ListOps without a header", 1, "prepare", hdr, "basic_test.tsv:1: expected the header line 'Source<TAB>Target'", NULL);
    CHECK(!dir_has(TMP "/lof-hdr", "examples"), "a failed prepare left files");
    unlink(TMP "/lof/basic_test.tsv");
    expect_fail("ListOps without a test split", 1, "prepare", hdr, "basic_test.tsv", "No such file");
    CHECK(!dir_has(TMP "/lof-hdr", "examples"), "a failed prepare left files");
    mkfifo(TMP "/lof/basic_test.tsv", 0600);
    expect_fail("ListOps test split a FIFO", 1, "prepare", hdr, "basic_test.tsv", "not a regular file");
    const char *file[] = {"--task", "lra-listops", "--input", TMP "/lof/basic_train.tsv", "--out", TMP "/lof-x", NULL};
    expect_fail("ListOps --input a file", 1, "prepare", file, "basic_train.tsv", "is not a directory");
    const char *none[] = {"--task", "lra-listops", "--input", TMP "/nowhere", "--out", TMP "/lof-x", NULL};
    expect_fail("ListOps --input missing", 1, "prepare", none, "nowhere", "No such file");
    // a training split of ever new long symbols is not ListOps: refused before its vocabulary grows unbounded
    mkdirs(TMP "/lof-big");
    FILE *f = fopen(TMP "/lof-big/basic_train.tsv", "wb");
    if (!f) die("test: cannot write the big ListOps fixture");
    fputs("Source\tTarget\n", f);
    char *sym = xmalloc(20001);
    memset(sym, 'a', 20000);
    sym[20000] = 0;
    for (int i = 0; i < 300; i++) {
        snprintf(sym, 9, "%08d", i);
        sym[8] = 'a';
        fprintf(f, "%s\t1\n", sym);
    }
    fclose(f);
    spits(TMP "/lof-big/basic_val.tsv", "Source\tTarget\n");
    spits(TMP "/lof-big/basic_test.tsv", "Source\tTarget\n");
    const char *bigv[] = {"--task", "lra-listops", "--input", TMP "/lof-big", "--out", TMP "/lof-big-ex", NULL};
    expect_fail("ListOps of 6 MB of distinct symbols", 1, "prepare", bigv, "basic_train.tsv", "this is not ListOps data");
    CHECK(!dir_has(TMP "/lof-big-ex", "examples"), "a failed prepare left files");
    free(sym);
    free(train);
    free(longsrc.data);
    free(val.data);
}

// ---- prepare: Text ----

static void test_prepare_text(void) {
    const char *root = TMP "/aclImdb";
    const char *dirs[] = {"train/pos", "train/neg", "test/pos", "test/neg", "train/unsup"};
    for (int i = 0; i < 5; i++) {
        char *d = xasprintf("%s/%s", root, dirs[i]);
        mkdirs(d);
        free(d);
    }
    // train/neg: 0_1.txt "bad", 10_2.txt an empty review, 3_4.txt with bytes 0x00 and 0xff;
    // train/pos: 5_9.txt a review of 5000 bytes (cut to 4095 and eos), 2_8.txt "<br />good"
    spits(TMP "/aclImdb/train/neg/0_1.txt", "bad");
    spits(TMP "/aclImdb/train/neg/10_2.txt", "");
    spit(TMP "/aclImdb/train/neg/3_4.txt", "a\0b\xff", 4);
    char *big = xmalloc(5000);
    for (int i = 0; i < 5000; i++) big[i] = (char)('a' + i % 26);
    spit(TMP "/aclImdb/train/pos/5_9.txt", big, 5000);
    spits(TMP "/aclImdb/train/pos/2_8.txt", "<br />good");
    spits(TMP "/aclImdb/train/pos/notes.md", "not a review");   // not *.txt: ignored
    spits(TMP "/aclImdb/train/urls_pos.txt", "http://x");       // beside the class folders: ignored
    spits(TMP "/aclImdb/train/unsup/0_0.txt", "unlabelled");    // unsup: ignored
    spits(TMP "/aclImdb/test/neg/1_2.txt", "meh");
    spit(TMP "/aclImdb/test/neg/7_1.txt", big + 1, 4200);   // cut too: counted once, though val repeats test
    spits(TMP "/aclImdb/test/pos/1_10.txt", "great");
    spits(TMP "/aclImdb/test/pos/0_7.txt", "fine");
    const char *args[] = {"--task", "lra-text", "--input", root, "--out", TMP "/text", NULL};
    CHECK(run("prepare", args) == 0, "prepare lra-text failed: %s", err_text.p);
    CHECK(strstr(out_text.p, "train 5, val 4, test 4 examples; vocabulary 258 (bytes, pad, eos); longest document 4096 tokens "
                             "with eos (cap 4096), 2 truncated"),
          "summary: %s", out_text.p);
    Split tr = read_split(TMP "/text", "train", LRA_TEXT_LEN), va = read_split(TMP "/text", "val", LRA_TEXT_LEN),
          te = read_split(TMP "/text", "test", LRA_TEXT_LEN);
    // order: neg then pos, names sorted
    CHECK(tr.n == 5 && doc_is_bytes(&tr, 0, 0, "bad", 3, LRA_TEXT_LEN) && doc_is_bytes(&tr, 1, 0, "", 0, LRA_TEXT_LEN) &&
              doc_is_bytes(&tr, 2, 0, "a\0b\xff", 4, LRA_TEXT_LEN) && doc_is_bytes(&tr, 3, 0, "<br />good", 10, LRA_TEXT_LEN) &&
              doc_is_bytes(&tr, 4, 0, big, 5000, LRA_TEXT_LEN),
          "Text train documents differ");
    CHECK(tr.labels[0] == 0 && tr.labels[1] == 0 && tr.labels[2] == 0 && tr.labels[3] == 1 && tr.labels[4] == 1, "Text train labels");
    CHECK(te.n == 4 && doc_is_bytes(&te, 0, 0, "meh", 3, LRA_TEXT_LEN) && doc_is_bytes(&te, 1, 0, big + 1, 4200, LRA_TEXT_LEN) &&
              doc_is_bytes(&te, 2, 0, "fine", 4, LRA_TEXT_LEN) && doc_is_bytes(&te, 3, 0, "great", 5, LRA_TEXT_LEN) &&
              te.labels[0] == 0 && te.labels[1] == 0 && te.labels[2] == 1 && te.labels[3] == 1,
          "Text test examples differ");
    CHECK(va.n == te.n && !memcmp(va.tok, te.tok, te.n * LRA_TEXT_LEN * sizeof *te.tok) &&
              !memcmp(va.labels, te.labels, te.n * sizeof *te.labels),
          "Text val is not the test split");
    Examples *e = example_open(TMP "/text", "train");
    CHECK(!strcmp(example_vocab_desc(e), "0-255 bytes\n256 <pad>\n257 <eos>\n") && example_pad(e) == LRA_BYTE_PAD &&
              example_classes(e) == 2 && example_vocab(e) == LRA_BYTE_VOCAB,
          "Text description: %s", example_vocab_desc(e));
    example_close(e);
    free_split(&tr);
    free_split(&va);
    free_split(&te);
    free(big);
    // a review that is a FIFO, a missing class folder: fatal, nothing left
    mkfifo(TMP "/aclImdb/test/pos/9_9.txt", 0600);
    const char *a2[] = {"--task", "lra-text", "--input", root, "--out", TMP "/text2", NULL};
    expect_fail("a review that is a FIFO", 1, "prepare", a2, "9_9.txt", "not a regular file");
    CHECK(!dir_has(TMP "/text2", "examples"), "a failed prepare left files");
    unlink(TMP "/aclImdb/test/pos/9_9.txt");
    if (rename(TMP "/aclImdb/test/neg", TMP "/aclImdb/test/negative") != 0) die("test: rename failed");
    expect_fail("no test/neg folder", 1, "prepare", a2, "test/neg", "No such file");
    CHECK(!dir_has(TMP "/text2", "examples"), "a failed prepare left files");
}

// ---- prepare: Retrieval ----

static void test_prepare_retrieval(void) {
    const char *dir = TMP "/aan";
    mkdirs(dir);
    char *big = xmalloc(4500);
    for (int i = 0; i < 4499; i++) big[i] = (char)('A' + i % 26);
    big[4499] = 0;
    char *train = xasprintf(
        "1\tW00-1\tP01-2\tfirst paper\tsecond paper\n"
        "0.0\tW00-3\tP01-4\tthird\t%s\r\n"
        "1.0\ta\tb\tc\td\n"
        "2\ta\tb\tc\td\n"                        // line 4: label out of range
        "label\tid1\tid2\ttext1\ttext2\n"        // line 5: a header is no example
        "1\ta\tb\tc\n"                           // line 6: four fields
        "0\ta\tb\tc\td\te\n"                     // line 7: six fields
        "0\tx\ty\t\tquite empty\n",              // an empty text: eos alone
        big);
    spits(TMP "/aan/new_aan_pairs.train.tsv", train);
    // an input may be zstd-compressed under its usual name: told apart by its content
    const char *eval = "0\ta\tb\tvalidation one\tvalidation two\n";
    char z[256];
    size_t zn = ZSTD_compress(z, sizeof z, eval, strlen(eval), 3);
    if (ZSTD_isError(zn)) die("test: zstd failed");
    spit(TMP "/aan/new_aan_pairs.eval.tsv", z, zn);
    spits(TMP "/aan/new_aan_pairs.test.tsv", "1\ta\tb\ttest one\ttest two\n0\ta\tb\tx\ty");
    const char *args[] = {"--task", "lra-retrieval", "--input", dir, "--out", TMP "/ret", NULL};
    CHECK(run("prepare", args) == 0, "prepare lra-retrieval failed: %s", err_text.p);
    holds_all("the summary", out_text.p,
              (const char *const[]){"train 4, val 1, test 2 examples", "longest document 4000 tokens", "1 truncated",
                                    "4 malformed lines skipped", NULL});
    holds_all("the warnings", err_text.p,
              (const char *const[]){"new_aan_pairs.train.tsv:4: the label '2' is not 0 or 1",
                                    "new_aan_pairs.train.tsv:5: the label 'label' is not 0 or 1",
                                    "new_aan_pairs.train.tsv:6: expected 5 tab-separated fields (label, id1, id2, text1, text2), found 4",
                                    "new_aan_pairs.train.tsv:7: expected 5 tab-separated fields", NULL});
    Split tr = read_split(TMP "/ret", "train", LRA_RETRIEVAL_LEN), va = read_split(TMP "/ret", "val", 32),
          te = read_split(TMP "/ret", "test", 32);
    CHECK(tr.n == 4 && tr.ndoc == 2 && tr.labels[0] == 1 && tr.labels[1] == 0 && tr.labels[2] == 1 && tr.labels[3] == 0, "labels");
    CHECK(doc_is_bytes(&tr, 0, 0, "first paper", 11, LRA_RETRIEVAL_LEN) && doc_is_bytes(&tr, 0, 1, "second paper", 12, LRA_RETRIEVAL_LEN) &&
              doc_is_bytes(&tr, 1, 0, "third", 5, LRA_RETRIEVAL_LEN) && doc_is_bytes(&tr, 1, 1, big, 4499, LRA_RETRIEVAL_LEN) &&
              doc_is_bytes(&tr, 3, 0, "", 0, LRA_RETRIEVAL_LEN) && doc_is_bytes(&tr, 3, 1, "quite empty", 11, LRA_RETRIEVAL_LEN),
          "Retrieval train documents differ");
    CHECK(va.n == 1 && doc_is_bytes(&va, 0, 1, "validation two", 14, 32) && te.n == 2 && doc_is_bytes(&te, 1, 1, "y", 1, 32) &&
              te.labels[0] == 1 && te.labels[1] == 0,
          "Retrieval val or test differ");
    free_split(&tr);
    free_split(&va);
    free_split(&te);
    const char *strict[] = {"--task", "lra-retrieval", "--input", dir, "--out", TMP "/ret2", "--strict", NULL};
    expect_fail("Retrieval --strict", 1, "prepare", strict, "new_aan_pairs.train.tsv:4:", "not 0 or 1");
    CHECK(!dir_has(TMP "/ret2", "examples"), "a failed prepare left files");
    // every line skipped: no training examples is an error
    spits(TMP "/aan/new_aan_pairs.train.tsv", "x\ty\n");
    const char *empty[] = {"--task", "lra-retrieval", "--input", dir, "--out", TMP "/ret3", NULL};
    expect_fail("Retrieval with no training example", 1, "prepare", empty, "no training examples", "every line was skipped");
    CHECK(!dir_has(TMP "/ret3", "examples"), "a failed prepare left files");
    free(train);
    free(big);
}

// ---- prepare: usage errors of the LRA tasks ----

static void test_prepare_usage(void) {
    static const Usage usage[] = {
        {"lra --tokenizer", {"--task", "lra-listops", "--input", TMP "/gen", "--out", TMP "/u", "--tokenizer", "byte", NULL},
         "--tokenizer does not apply to --task lra-listops"},
        {"lra two inputs", {"--task", "lra-listops", "--input", TMP "/gen", TMP "/gen2", "--out", TMP "/u", NULL},
         "takes one --input folder, got 2"},
        {"lra without --input", {"--task", "lra-text", "--out", TMP "/u", NULL}, "--input is required"},
        {"lra without --out", {"--task", "lra-retrieval", "--input", TMP "/aan", NULL}, "--out is required"},
        {"lra --val-fraction", {"--task", "lra-listops", "--input", TMP "/gen", "--out", TMP "/u", "--val-fraction", "0.1", NULL},
         "--val-fraction does not apply"},
        {"unknown lra task", {"--task", "lra-images", "--input", TMP "/gen", "--out", TMP "/u", NULL},
         "lra-listops, lra-text, lra-retrieval, lra-image"},
        {"lra --max-line-bytes 10", {"--task", "lra-listops", "--input", TMP "/gen", "--out", TMP "/u", "--max-line-bytes", "10", NULL},
         "--max-line-bytes"},
    };
    expect_usage("prepare", usage, sizeof usage / sizeof *usage);
}

int main(void) {
    if (system("rm -rf " TMP) != 0) die("test: cannot clear " TMP);
    mkdirs(TMP);
    test_generator();
    test_prepare_listops_generated();
    test_prepare_listops_fixture();
    test_prepare_text();
    test_prepare_retrieval();
    test_prepare_usage();
    free(out_text.p);
    free(err_text.p);
    return check_summary("test_lra");
}
