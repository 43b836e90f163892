// cmd_sample.c: the sample command: prompts prefilled in one pass, then decoded a token at a time from the
// recurrent state (or the transformer's key/value cache), greedily or by sampling, one sequence or a batch.
#include <math.h>
#include <unistd.h>

#include "common.h"
#include "backend.h"
#include "model.h"
#include "train.h"
#include "checkpoint.h"
#include "cli.h"
#include "commands.h"
#include "data.h"
#include "tokenizer.h"

// ----------------------------------------------------------------------------------------------------------
// One token from a row of logits (model.h)

static int cand_cmp(const void *a, const void *b) {
    const Cand *x = a, *y = b;
    if (x->p != y->p) return x->p < y->p ? 1 : -1;
    return x->id < y->id ? -1 : x->id > y->id;
}

int32_t sample_token(const real *logits, int V, double temp, int topk, double topp, uint64_t *rng, Cand *c) {
    if (temp <= 0) {
        int32_t best;
        op_argmax_rows(&best, logits, 1, V);
        return best;
    }
    double mx = logits[0];
    for (int i = 1; i < V; i++) if (logits[i] > mx) mx = logits[i];
    double z = 0;
    for (int i = 0; i < V; i++) { c[i].p = exp((logits[i] - mx) / temp); c[i].id = i; z += c[i].p; }
    int n = V;
    if ((topk > 0 && topk < V) || topp < 1) {
        qsort(c, (size_t)V, sizeof *c, cand_cmp);
        if (topk > 0 && topk < n) n = topk;
        if (topp < 1) {
            double cum = 0;
            for (int i = 0; i < n; i++) { cum += c[i].p / z; if (cum >= topp) { n = i + 1; break; } }
        }
        z = 0;
        for (int i = 0; i < n; i++) z += c[i].p;
    }
    double u = rng_uniform(rng) * z, cum = 0;
    for (int i = 0; i < n; i++) { cum += c[i].p; if (u < cum) return c[i].id; }
    return c[n - 1].id;
}

// ----------------------------------------------------------------------------------------------------------
// hgrn2 sample

static const char *SAMPLE_USAGE =
    "hgrn2 sample [--ckpt PATH] [--prompt TEXT | --prompt-file PATH | --prompt-ids \"1 2 3\" | --prompts PATH] [-n N]\n"
    "                    [--temperature X] [--top-k K] [--top-p P] [--num-samples N] [--batch B] [--stop STRING]\n"
    "                    [--repetition-penalty X]";
static const char *SAMPLE_HELP =
    "Generate text: the prompt is prefilled in one pass over all its tokens, then each token advances the\n"
    "recurrent state by one step (constant memory per token; a transformer instead adds the token's keys and\n"
    "values to a cache that every later token attends to). Text is streamed as it is generated (--batch 1).\n"
    "\n"
    "  --ckpt PATH          the model (default " DEFAULT_OUT "/model.ckpt)\n"
    "  --prompt TEXT        the text to continue (default: the beginning-of-text token, or a newline)\n"
    "  --prompt-ids IDS     the prompt as token ids, space-separated\n"
    "  -n, --tokens N       tokens to generate (default 256)\n"
    "  --temperature X      0 is greedy (default 0.8)\n"
    "  --top-k K            sample among the K most likely tokens (default 0: all)\n"
    "  --top-p P            nucleus sampling: the smallest set with probability >= P (default 1: all)\n"
    "  --seed N             random seed (default 1337); each sequence draws from its own stream of it, so on\n"
    "                       the CPU its tokens do not depend on --batch (on the GPU: up to rounding)\n"
    "  --prompt-file PATH   the prompt's text from a file ('-': standard input)\n"
    "  --prompts PATH       many prompts: each line of the file ('-': standard input) is one prompt's text (a\n"
    "                       \\r before the newline is dropped; no line may be empty)\n"
    "  --num-samples N      N continuations of each prompt, each from the state after it (default 1)\n"
    "  --batch B            decode up to B sequences together, one forward pass per token for all (default 1);\n"
    "                       each sequence is printed whole once it ends, in order (only --batch 1 streams).\n"
    "                       A transformer decodes together only prompts of one length (tokens)\n"
    "  --ignore-eos         go on past the end-of-text token (default: a sample ends there, not printed)\n"
    "  --stop STRING        a sample also ends once its text ends with STRING (printed); repeatable\n"
    "  --repetition-penalty X  divide the positive logits (multiply the negative ones) of every token the\n"
    "                       prompt or the sample already holds by X (default 1: off)\n"
    "  --ids                print only the generated ids, space-separated, one line a sample\n"
    "  --tokenizer PATH     override the tokenizer the model was trained with (a directory or tokenizer.json)\n"
    "  --threads N --device cpu|cuda --precision bf16|tf32|fp32 (GPU; default bf16)\n";

enum { OS_PROMPT_FILE = O_LAST, OS_NUM_SAMPLES, OS_IGNORE_EOS, OS_STOP, OS_REP_PENALTY, OS_PROMPTS };
#define MAX_STOPS 16
#define MAX_SEQUENCES (1 << 24)   // prompts x --num-samples

// The text of a file ('-': standard input), at most 64 MiB, NUL-terminated; its length in *len. flag names the
// option in the messages.
static char *read_text_file(const char *flag, const char *path, size_t *len) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) die("cannot read %s %s: %s", flag, path, strerror(errno));
    ByteBuf b = {0};
    char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (b.n + got > (size_t)64 << 20) die("%s %s is longer than 64 MiB", flag, path);
        bytebuf_append(&b, chunk, got);
    }
    if (ferror(f)) die("cannot read %s %s: %s", flag, path, strerror(errno));
    if (f != stdin) fclose(f);
    *len = b.n;
    bytebuf_append(&b, "", 1);   // a terminating NUL
    return b.data;
}

// CTRL's repetition penalty: the logits of the ids seen (seen[id] = 1) move toward "less likely" by x.
static void repetition_penalty(real *logits, const uint8_t *seen, int V, double x) {
    for (int i = 0; i < V; i++)
        if (seen[i]) logits[i] = logits[i] > 0 ? (real)(logits[i] / x) : (real)(logits[i] * x);
}

// A prompt: its ids, and the text printed before its samples (NULL: its ids decoded). line: its line of
// --prompts (0: the one prompt of --prompt, --prompt-file, --prompt-ids or the default start).
typedef struct { IdBuf ids; const char *text; size_t len; int line; } Prompt;

// The start of a sample without a prompt (or with one that encodes to nothing): the beginning-of-text token,
// else the end-of-text one, else a newline, else id 0.
static void default_start(const Tokenizer *tok, IdBuf *pr) {
    int32_t start = tok ? tokenizer_bos(tok) : -1;
    if (start < 0 && tok) start = tokenizer_eot(tok);
    if (start >= 0) idbuf_push(pr, start);
    else if (tok) tokenizer_encode(tok, "\n", 1, pr);
    if (!pr->n) idbuf_push(pr, 0);
}

// The lines of --prompts' text, each a prompt (a line ends at \n, and a \r before it is dropped).
static Prompt *split_prompts(const char *path, const char *text, size_t len, int *n) {
    Prompt *ps = NULL;
    int np = 0, cap = 0;
    for (size_t at = 0; at < len; ) {
        const char *nl = memchr(text + at, '\n', len - at);
        size_t end = nl ? (size_t)(nl - text) : len, e = end;
        if (e > at && text[e - 1] == '\r') e--;
        if (np == MAX_SEQUENCES) die("--prompts %s has more than %d lines", path, MAX_SEQUENCES);
        if (e == at)
            die("--prompts %s: line %d is empty (every line is a prompt; without one, leave --prompts out)", path, np + 1);
        if (np == cap) ps = xrealloc(ps, (size_t)(cap = cap ? 2 * cap : 64) * sizeof *ps);
        ps[np] = (Prompt){.text = text + at, .len = e - at, .line = np + 1};
        np++;
        at = end + 1;
    }
    if (!np) die("--prompts %s holds no prompts (one per line)", path);
    *n = np;
    return ps;
}

// Where the sequences' text goes, in sequence order, "\n---\n" between two (a newline with --ids): straight to
// standard output as each token is made (stream: --batch 1), or into a buffer per sequence printed whole once
// the sequence and every one before it are finished.
typedef struct {
    int stream;
    const char *sep;
    int64_t n, next;    // sequences; the first not yet printed
    ByteBuf *buf;       // [n], unless streaming
    uint8_t *done;      // [n]
} Printer;

static void printer_begin(Printer *p, int64_t s) {
    if (p->stream && s > 0) fputs(p->sep, stdout);
}
static void printer_put(Printer *p, int64_t s, const void *data, size_t n) {
    if (p->stream) { fwrite(data, 1, n, stdout); fflush(stdout); }
    else bytebuf_append(&p->buf[s], data, n);
}
static void printer_end(Printer *p, int64_t s) {
    if (p->stream) return;
    p->done[s] = 1;
    for (; p->next < p->n && p->done[p->next]; p->next++) {
        ByteBuf *b = &p->buf[p->next];
        if (p->next > 0) fputs(p->sep, stdout);
        if (b->n) fwrite(b->data, 1, b->n, stdout);
        free(b->data);
        memset(b, 0, sizeof *b);
    }
    fflush(stdout);
}

// Prompts by length (equal ones in their order): the transformer's rows share one position, so a batch of it
// holds prompts of one length.
static const Prompt *g_sort_prompts;
static int prompt_len_cmp(const void *a, const void *b) {
    const int x = *(const int *)a, y = *(const int *)b;
    const size_t lx = g_sort_prompts[x].ids.n, ly = g_sort_prompts[y].ids.n;
    if (lx != ly) return lx < ly ? -1 : 1;
    return (x > y) - (x < y);
}

int cmd_sample(int argc, char **argv) {
    static const struct option opts[] = {
        COMMON_OPTS, {"ckpt", required_argument, 0, O_CKPT}, {"prompt", required_argument, 0, O_PROMPT},
        {"prompt-ids", required_argument, 0, O_PROMPT_IDS}, {"tokens", required_argument, 0, 'n'},
        {"temperature", required_argument, 0, O_TEMP}, {"top-k", required_argument, 0, O_TOPK},
        {"top-p", required_argument, 0, O_TOPP}, {"ids", no_argument, 0, O_PRINT_IDS},
        {"tokenizer", required_argument, 0, O_TOKENIZER}, {"prompt-file", required_argument, 0, OS_PROMPT_FILE},
        {"num-samples", required_argument, 0, OS_NUM_SAMPLES}, {"ignore-eos", no_argument, 0, OS_IGNORE_EOS},
        {"stop", required_argument, 0, OS_STOP}, {"repetition-penalty", required_argument, 0, OS_REP_PENALTY},
        {"batch", required_argument, 0, O_BATCH}, {"prompts", required_argument, 0, OS_PROMPTS},
        {0, 0, 0, 0}};
    cli_start("hgrn2 sample", SAMPLE_USAGE);
    const char *ckpt = DEFAULT_OUT "/model.ckpt", *prompt = NULL, *prompt_ids = NULL, *tok_spec = NULL;
    MachineArgs mach = {0};
    const char *prompt_file = NULL, *prompts_file = NULL, *stops[MAX_STOPS];
    int64_t ntok = 256, topk = 0, nsamples = 1, batch = 1;
    double temp = 0.8, topp = 1.0, rep = 1.0;
    uint64_t seed = 1337;
    int print_ids = 0, ignore_eos = 0, nstops = 0, c;
    while ((c = getopt_long(argc, argv, ":hn:", opts, NULL)) != -1) {
        if (machine_arg(c, &mach)) continue;
        switch (c) {
        case O_HELP: print_help(SAMPLE_USAGE, SAMPLE_HELP); return 0;
        case O_CKPT: ckpt = optarg; break;
        case O_PROMPT: prompt = optarg; break;
        case O_PROMPT_IDS: prompt_ids = optarg; break;
        case 'n': ntok = arg_int("--tokens", optarg, 0, INT64_C(1) << 40); break;
        case O_TEMP: temp = arg_num("--temperature", optarg, 0, 100); break;
        case O_TOPK: topk = arg_int("--top-k", optarg, 0, 1 << 24); break;
        case O_TOPP: topp = arg_num("--top-p", optarg, 1e-9, 1); break;
        case O_PRINT_IDS: print_ids = 1; break;
        case O_TOKENIZER: tok_spec = optarg; break;
        case O_SEED: seed = (uint64_t)arg_int_in(&R_SEED, optarg); break;
        case OS_PROMPT_FILE: prompt_file = optarg; break;
        case OS_NUM_SAMPLES: nsamples = arg_int("--num-samples", optarg, 1, 1 << 20); break;
        case OS_IGNORE_EOS: ignore_eos = 1; break;
        case OS_STOP:
            if (!optarg[0]) usage_error("--stop needs a non-empty string");
            if (nstops == MAX_STOPS) usage_error("at most %d --stop strings", MAX_STOPS);
            stops[nstops++] = optarg;
            break;
        case OS_REP_PENALTY: rep = arg_num("--repetition-penalty", optarg, 1e-3, 1e3); break;
        case O_BATCH: batch = arg_int("--batch", optarg, 1, 1 << 16); break;
        case OS_PROMPTS: prompts_file = optarg; break;
        default: bad_option(argv, c);
        }
    }
    if (optind < argc) usage_error("unexpected argument '%s'", argv[optind]);
    if (!!prompt + !!prompt_ids + !!prompt_file + !!prompts_file > 1)
        usage_error("--prompt, --prompt-file, --prompt-ids and --prompts exclude each other");
    if (nstops && print_ids) usage_error("--stop matches text: it does not go with --ids");
    // an empty list would otherwise read as no prompt at all and start from the default token
    if (prompt_ids && !prompt_ids[strspn(prompt_ids, " \t,")])
        usage_error("--prompt-ids is empty: give at least one token id (or leave the flag out for the default start)");
    machine_start(&mach);
    size_t text_len = 0;
    char *prompt_text = prompt_file ? read_text_file("--prompt-file", prompt_file, &text_len)
                      : prompts_file ? read_text_file("--prompts", prompts_file, &text_len) : NULL;
    if (prompt_file) prompt = prompt_text;

    Model m = {0};
    RunState rs;
    checkpoint_load(ckpt, &m, &rs, 0);
    model_to_device(&m);
    const Config *cf = &m.c;
    const int V = cf->V, att = cf->mixer == MIXER_TRANSFORMER;
    // The tokenizer is needed for a text prompt or text output; ids in and ids out need none.
    Tokenizer *tok = NULL;
    if ((!print_ids || !prompt_ids) && !tok_spec && !rs.tokenizer[0])
        die("%s was trained on token ids without a tokenizer (%s): sample it with --prompt-ids and --ids, or give "
            "--tokenizer", ckpt, rs.data);
    if (!print_ids || !prompt_ids) tok = tokenizer_load(tok_spec ? tok_spec : rs.tokenizer);
    if (tok && tokenizer_vocab_size(tok) > V)
        die("the tokenizer has %d ids but the model only %d", tokenizer_vocab_size(tok), V);

    // the prompts: the lines of --prompts, or the one prompt
    int nprompts = 1;
    Prompt *prompts;
    if (prompts_file) {
        prompts = split_prompts(prompts_file, prompt_text, text_len, &nprompts);
    } else {
        prompts = xcalloc(1, sizeof *prompts);
        if (prompt) { prompts[0].text = prompt; prompts[0].len = strlen(prompt); }
    }
    if ((int64_t)nprompts * nsamples > MAX_SEQUENCES)
        usage_error("%d prompts x --num-samples %lld are more than %d sequences", nprompts, (long long)nsamples,
                    MAX_SEQUENCES);
    size_t maxlen = 0;
    for (int p = 0; p < nprompts; p++) {
        Prompt *q = &prompts[p];
        if (prompt_ids) {
            const char *s = prompt_ids;
            for (;;) {
                while (*s == ' ' || *s == '\t' || *s == ',') s++;
                if (!*s) break;
                char *end;
                errno = 0;
                long long v = strtoll(s, &end, 10);
                if (end == s || errno) usage_error("--prompt-ids: '%s' is not a list of token ids", prompt_ids);
                if (v < 0 || v >= V) die("--prompt-ids: token id %lld is outside the vocabulary [0, %d)", v, V);
                idbuf_push(&q->ids, (int32_t)v);
                s = end;
            }
        } else if (q->text) {
            tokenizer_encode(tok, q->text, q->len, &q->ids);
        }
        if (!q->ids.n) default_start(tok, &q->ids);
        for (size_t i = 0; i < q->ids.n; i++)
            if (q->ids.ids[i] >= V) {
                if (q->line) die("--prompts %s: line %d encodes to id %d, outside the model's vocabulary of %d", prompts_file,
                                 q->line, q->ids.ids[i], V);
                die("the prompt encodes to id %d, outside the model's vocabulary of %d", q->ids.ids[i], V);
            }
        // the transformer's key/value cache holds every position of a sample: the prompt and the tokens after it
        // (the last token generated is never fed back)
        if (att && (int64_t)q->ids.n + ntok > R_SEQ_LEN.hi) {
            if (q->line)
                die("--prompts %s: line %d: a prompt of %zu tokens and %lld more exceed the %.0f positions of the "
                    "transformer's key/value cache", prompts_file, q->line, q->ids.n, (long long)ntok, R_SEQ_LEN.hi);
            die("a prompt of %zu tokens and %lld more exceed the %.0f positions of the transformer's key/value cache",
                q->ids.n, (long long)ntok, R_SEQ_LEN.hi);
        }
        if (q->ids.n > maxlen) maxlen = q->ids.n;
    }

    // the end-of-text id ends a sample (with --ids and no tokenizer, the one the model was trained with if any)
    int32_t eot = -1;
    if (!ignore_eos) {
        if (tok) eot = tokenizer_eot(tok);
        else if (rs.tokenizer[0] && strcmp(rs.tokenizer, "byte")) {   // (bytes have no end-of-text)
            if (access(rs.tokenizer, R_OK) == 0) {
                Tokenizer *t = tokenizer_load(rs.tokenizer);
                eot = tokenizer_eot(t);
                tokenizer_free(t);
            } else {
                fprintf(stderr, "hgrn2: note: the model's tokenizer %s is not here, so its end-of-text id is unknown: "
                        "the samples go on past it (give --tokenizer to stop there)\n", rs.tokenizer);
            }
        }
    }

    // Sequence s is sample s % nsamples of prompt s / nsamples. They are decoded up to `batch` at a time, in
    // this order (the transformer's: prompts by length, as a batch of it holds one length), each prompt
    // prefilled alone once and its state copied into the rows of its samples.
    const int64_t nseq = (int64_t)nprompts * nsamples;
    const int rows = (int)(batch < nseq ? batch : nseq);
    int *porder = xmalloc((size_t)nprompts * sizeof(int));
    for (int p = 0; p < nprompts; p++) porder[p] = p;
    if (att && rows > 1) { g_sort_prompts = prompts; qsort(porder, (size_t)nprompts, sizeof(int), prompt_len_cmp); }
    DecodeState pst;    // a prompt's state after its prefill
    decode_state_alloc(&pst, cf, 1, (int)maxlen);
    Acts pre, step;
    acts_alloc(&pre, cf, 1, (int)maxlen, 0);
    acts_alloc(&step, cf, rows, 1, 0);
    real *logits = xmalloc((size_t)rows * V * sizeof(real)), *logits0 = xmalloc((size_t)V * sizeof(real));
    Cand *cand = xmalloc((size_t)V * sizeof(Cand));
    uint8_t *seen = rep != 1.0 ? xmalloc((size_t)rows * V) : NULL;
    int64_t *seq = xmalloc((size_t)rows * sizeof(int64_t)), *count = xmalloc((size_t)rows * sizeof(int64_t));
    uint64_t *rng = xmalloc((size_t)rows * sizeof(uint64_t));
    // greedy decoding without a repetition penalty needs of each step's logits only their largest: the backend
    // picks it, and the logits stay where they are; it decodes up to GREEDY_CHUNK steps at a time ahead of the
    // printing (model_greedy_steps: on the GPU one wait for them all), picks [steps][nb]
    const int greedy = temp <= 0 && !seen;
    int32_t *feed = xmalloc((size_t)rows * sizeof(int32_t)), *picks = xmalloc((size_t)GREEDY_CHUNK * rows * sizeof(int32_t));
    uint8_t *live = xmalloc((size_t)rows);
    ByteBuf *all = xcalloc((size_t)rows, sizeof(ByteBuf));   // each row's text, for --stop
    ByteBuf text = {0};
    Printer pr = {.stream = batch == 1, .sep = print_ids ? "\n" : "\n---\n", .n = nseq};
    if (!pr.stream) { pr.buf = xcalloc((size_t)nseq, sizeof(ByteBuf)); pr.done = xcalloc((size_t)nseq, 1); }
    int cached = -1;    // the prompt whose state and logits pst and logits0 hold
    int64_t generated = 0, prefilled = 0;
    double t_prefill = 0, t_start = now_s();
    for (int64_t k = 0; k < nseq; ) {
        // the next batch: up to `rows` sequences in order (the transformer's of one prompt length)
        int nb = 0;
        size_t len0 = 0;
        for (; nb < rows && k < nseq; nb++, k++) {
            const int p = porder[k / nsamples];
            if (nb == 0) len0 = prompts[p].ids.n;
            else if (att && prompts[p].ids.n != len0) break;
            seq[nb] = (int64_t)p * nsamples + k % nsamples;
        }
        DecodeState st;
        decode_state_alloc(&st, cf, nb, att ? (int)(len0 + ntok) : 1);
        acts_reshape(&step, nb, 1);
        for (int r = 0; r < nb; r++) {
            const int64_t s = seq[r];
            const Prompt *q = &prompts[s / nsamples];
            if (s / nsamples != cached) {
                double t0 = now_s();
                OP(zero, pst.s, pst.n);
                pst.pos = 0;
                acts_reshape(&pre, 1, (int)q->ids.n);
                model_forward(&m, &pre, q->ids.ids, NULL, &pst, logits0, 1, 0, NULL);
                t_prefill += now_s() - t0;
                prefilled += (int64_t)q->ids.n;
                cached = (int)(s / nsamples);
            }
            decode_state_set_row(cf, &st, r, &pst, 0);
            memcpy(logits + (int64_t)r * V, logits0, (size_t)V * sizeof(real));
            // each sequence draws from its own stream, so its tokens do not depend on the batch it ran in; the
            // first sequence's is the one a single sample has always drawn from
            rng[r] = (seed ^ 0x5DEECE66Dull) + (uint64_t)s * 0xD1B54A32D192ED03ull;
            count[r] = 0;
            live[r] = 1;
            feed[r] = 0;
            all[r].n = 0;
            if (seen) {
                memset(seen + (int64_t)r * V, 0, (size_t)V);
                for (size_t i = 0; i < q->ids.n; i++) seen[(int64_t)r * V + q->ids.ids[i]] = 1;
            }
            printer_begin(&pr, s);
            if (!print_ids) {
                if (q->text) printer_put(&pr, s, q->text, q->len);
                else { text.n = 0; tokenizer_decode(tok, q->ids.ids, q->ids.n, &text); printer_put(&pr, s, text.data, text.n); }
            }
        }
        st.pos = (int)pst.pos;   // the transformer's rows have all seen len0 positions
        int npicks = 0, at = 0;  // greedy: the steps decoded ahead, and which of them step i is
        // A row ends at end-of-text (not printed), at a --stop string or after ntok tokens; an ended row is fed
        // its last token until the whole batch has ended, and nothing of it is printed any more.
        for (int64_t i = 0; i < ntok; i++) {
            int going = 0;
            for (int r = 0; r < nb; r++) {
                if (!live[r]) continue;
                const int64_t s = seq[r];
                real *lg = logits + (int64_t)r * V;
                uint8_t *sn = seen ? seen + (int64_t)r * V : NULL;
                if (sn) repetition_penalty(lg, sn, V, rep);
                const int32_t id = greedy && i > 0 ? picks[(int64_t)at * nb + r]
                                                   : sample_token(lg, V, temp, (int)topk, topp, &rng[r], cand);
                feed[r] = id;
                if (id == eot) { live[r] = 0; continue; }
                generated++;
                if (sn) sn[id] = 1;
                int stop = 0;
                text.n = 0;
                if (print_ids) {
                    char num[16];
                    printer_put(&pr, s, num, (size_t)snprintf(num, sizeof num, count[r] ? " %d" : "%d", id));
                } else {
                    tokenizer_decode_one(tok, id, 0, &text);
                    printer_put(&pr, s, text.data, text.n);
                    if (nstops) {
                        bytebuf_append(&all[r], text.data, text.n);
                        for (int j = 0; j < nstops && !stop; j++) {
                            const size_t L = strlen(stops[j]);
                            stop = all[r].n >= L && !memcmp(all[r].data + all[r].n - L, stops[j], L);
                        }
                    }
                }
                count[r]++;
                if (stop || i + 1 == ntok) live[r] = 0;
                else going = 1;
            }
            if (!going) break;
            if (!greedy) model_forward(&m, &step, feed, NULL, &st, logits, 1, 0, NULL);
            else if (++at >= npicks) {   // the steps for i + 1 on, fed the tokens of i; ended rows' picks unread
                npicks = (int)(ntok - 1 - i < GREEDY_CHUNK ? ntok - 1 - i : GREEDY_CHUNK);
                model_greedy_steps(&m, &step, feed, &st, npicks, picks);
                at = 0;
            }
        }
        for (int r = 0; r < nb; r++) printer_end(&pr, seq[r]);
        decode_state_free(&st);
    }
    double t_gen = now_s() - t_start - t_prefill;
    printf("\n");
    if (!print_ids) {
        char what[32] = "prompt", how[64] = "";
        if (nprompts > 1) snprintf(what, sizeof what, "%d prompts,", nprompts);
        if (batch > 1) snprintf(how, sizeof how, ", %lld sequences, batch %d", (long long)nseq, rows);
        fprintf(stderr, "[%s %lld tokens in %.3f s, %lld tokens in %.3f s, %.1f tokens/s%s]\n", what,
                (long long)prefilled, t_prefill, (long long)generated, t_gen, generated / (t_gen > 0 ? t_gen : 1e-9), how);
    }
    for (int r = 0; r < rows; r++) free(all[r].data);
    for (int p = 0; p < nprompts; p++) free(prompts[p].ids.ids);
    free(all); free(seen); free(logits0); free(prompt_text); free(prompts); free(porder); free(pr.buf); free(pr.done);
    free(text.data); free(logits); free(cand); free(seq); free(count); free(rng); free(feed); free(picks); free(live);
    decode_state_free(&pst);
    acts_free(&pre); acts_free(&step);
    if (tok) tokenizer_free(tok);
    model_free(&m);
    return 0;
}
