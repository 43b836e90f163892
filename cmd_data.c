// cmd_data.c: the data commands, `hgrn2 prepare` (text corpora, the Long Range Arena's files, image sets) and
// `hgrn2 tokenize`: options in, one library call, exit code out.
#define _GNU_SOURCE
#include <getopt.h>
#include <limits.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "data.h"
#include "imagenet.h"
#include "images.h"
#include "lra.h"
#include "tokenizer.h"

// ----------------------------------------------------------------------------------------------------------
// hgrn2 prepare

static const char *PREPARE_USAGE =
    "hgrn2 prepare --task pile|wiki103|text --input FILE... --tokenizer SPEC --out DIR [--val-input FILE...]\n"
    "              [--val-fraction F] [--shard-tokens N] [--threads N] [--strict] [--max-line-bytes N] [--text-field NAME]\n"
    "       hgrn2 prepare --task lra-listops|lra-text|lra-retrieval --input DIR --out DIR [--strict]\n"
    "              [--max-line-bytes N]\n"
    "       hgrn2 prepare --task lra-image|fashion-mnist --input DIR --out DIR\n"
    "       hgrn2 prepare --task lra-pathfinder|lra-pathx --input DIR --out DIR [--strict] [--max-line-bytes N]\n"
    "       hgrn2 prepare --task imagenet (--input DIR | --train-list FILE --val-list FILE [--classes N]) --out DIR\n"
    "              [--short-side N] [--quality N] [--threads N]";
static const char *PREPARE_HELP =
    "Tokenize text into zstd-compressed token shards: DIR/train_NNNNNN.shard, DIR/val_NNNNNN.shard and DIR/meta.txt\n"
    "(format and policies: docs/shards.md). Inputs may be zstd-compressed (recognised by content, not name).\n"
    "Or turn the official files of a Long Range Arena task into labelled examples: DIR/{train,val,test}.examples\n"
    "(formats and policies: docs/lra.md, docs/examples.md), or an image set into examples of pixel tokens\n"
    "(docs/images.md), or ImageNet's JPEGs into JPEG example files DIR/{train,val}.jpegs (docs/imagenet.md).\n"
    "\n"
    "  --task NAME         pile: JSON Lines, one document per line in its \"text\" field (*.jsonl, *.jsonl.zst);\n"
    "                      wiki103: WikiText .tokens/.raw files, one document per ' = Title = ' article;\n"
    "                      text: each input file is one document;\n"
    "                      lra-listops: --input is the folder of basic_{train,val,test}.tsv (hgrn2 generate\n"
    "                      --task listops writes one); the vocabulary comes from the training split;\n"
    "                      lra-text: --input is the aclImdb folder ({train,test}/{pos,neg}/*.txt), bytes;\n"
    "                      lra-retrieval: --input is the folder of new_aan_pairs.{train,eval,test}.tsv, bytes\n"
    "                      lra-image: --input is cifar-10-batches-bin (CIFAR-10's binary batches), 32x32x3;\n"
    "                      lra-pathfinder, lra-pathx: --input is a Pathfinder folder such as\n"
    "                      pathfinder32/curv_contour_length_14 (metadata/*.npy and the PNGs; hgrn2 generate\n"
    "                      --task pathfinder writes one), 32x32 or 128x128 gray;\n"
    "                      fashion-mnist: --input is the folder of the four IDX files (plain or .gz), 28x28;\n"
    "                      imagenet: --input is the folder of train/<class>/*.JPEG and val/<class>/*.JPEG (class\n"
    "                      c: the c-th of train's folders in byte order), or --train-list and --val-list give\n"
    "                      files of \"path label\" lines (paths relative to the list's folder); each image is\n"
    "                      shrunk to --short-side (bicubic, antialiased) and re-encoded at --quality\n"
    "  --input FILE...     training inputs; repeat the flag or list several files after it\n"
    "  --val-input FILE... held-out inputs: all of them form the validation split (--val-fraction is ignored)\n"
    "  --tokenizer SPEC    byte, a GPT-2 directory (encoder.json, vocab.bpe) or a tokenizer.json\n"
    "  --out DIR           output directory (created; must not hold shards already)\n"
    "  --val-fraction F    documents sent to validation, chosen by a hash of their index (default 0.005, range\n"
    "                      0 to 0.5); when that picks none, the last F of the tokens are used instead\n"
    "  --shard-tokens N    tokens per shard at most (default 100000000)\n"
    "  --threads N         tokenizer threads; imagenet: decoding threads (default: all cores)\n"
    "  --train-list FILE   imagenet: the training images, one \"path label\" line each\n"
    "  --val-list FILE     imagenet: the validation images, likewise\n"
    "  --classes N         imagenet with lists: labels are in [0, N) (default 1000)\n"
    "  --short-side N      imagenet: images are shrunk so their short side is at most N (default 256)\n"
    "  --quality N         imagenet: JPEG quality of the stored images, 1 to 100 (default 90)\n"
    "  --text-field NAME   pile: the member of each record that holds its text (default text)\n"
    "  --strict            a malformed or too long JSON or TSV line (Pathfinder: metadata line, unreadable\n"
    "                      image) stops the run (default: skipped, counted, first 5 reported)\n"
    "  --max-line-bytes N  the longest line held in memory (default 16777216 = 16 MiB, range 1024 to 1073741824):\n"
    "                      a longer JSON or TSV line is skipped as it is read, a longer WikiText line is read in\n"
    "                      parts\n"
    "The LRA tasks take --input (one folder), --out, --strict and --max-line-bytes only; lra-image and\n"
    "fashion-mnist only --input and --out (every problem in their files is fatal).\n";

int cmd_prepare(int argc, char **argv) {
    enum { O_TASK = 256, O_INPUT, O_VAL_INPUT, O_TOKENIZER, O_OUT, O_VAL_FRACTION, O_SHARD_TOKENS, O_THREADS, O_STRICT,
           O_TEXT_FIELD, O_TRAIN_LIST, O_VAL_LIST, O_CLASSES, O_SHORT_SIDE, O_QUALITY, O_MAX_LINE };
    static const struct option opts[] = {
        {"task", required_argument, 0, O_TASK}, {"input", required_argument, 0, O_INPUT},
        {"val-input", required_argument, 0, O_VAL_INPUT}, {"tokenizer", required_argument, 0, O_TOKENIZER},
        {"out", required_argument, 0, O_OUT}, {"val-fraction", required_argument, 0, O_VAL_FRACTION},
        {"shard-tokens", required_argument, 0, O_SHARD_TOKENS}, {"threads", required_argument, 0, O_THREADS},
        {"strict", no_argument, 0, O_STRICT}, {"max-line-bytes", required_argument, 0, O_MAX_LINE},
        {"text-field", required_argument, 0, O_TEXT_FIELD}, {"train-list", required_argument, 0, O_TRAIN_LIST},
        {"val-list", required_argument, 0, O_VAL_LIST}, {"classes", required_argument, 0, O_CLASSES},
        {"short-side", required_argument, 0, O_SHORT_SIDE}, {"quality", required_argument, 0, O_QUALITY},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    PrepareOptions o;
    prepare_defaults(&o);
    ImagenetPrepareOptions in = {.classes = 1000, .short_side = 256, .quality = 90};
    const char *task_name = NULL;
    const char **inputs = xmalloc((size_t)argc * sizeof *inputs), **val_inputs = xmalloc((size_t)argc * sizeof *val_inputs);
    int list = 0, rc = 0;
    long long n;
    o.inputs = inputs;
    o.val_inputs = val_inputs;
    cli_start("hgrn2 prepare", PREPARE_USAGE);
    opterr = 0;
    int c;
    // "-" makes getopt return each non-option argument in place (as 1), so "--input a b --val-input c"
    // assigns each file to the list flag before it.
    // Flags of the text corpora that mean nothing to the LRA tasks: refused with them, not ignored.
    static const int text_only[] = {O_VAL_INPUT, O_TOKENIZER, O_VAL_FRACTION, O_SHARD_TOKENS, O_THREADS, O_TEXT_FIELD};
    static const char *const text_only_names[] = {"--val-input", "--tokenizer", "--val-fraction", "--shard-tokens", "--threads",
                                                  "--text-field"};
    int given[O_MAX_LINE - O_TASK + 1] = {0};
    while ((c = getopt_long(argc, argv, "-:h", opts, NULL)) != -1) {
        if (c >= O_TASK && c <= O_MAX_LINE) given[c - O_TASK] = 1;
        if (c != 1) list = 0;
        switch (c) {
        case 1:
            if (list == 1) inputs[o.ninputs++] = optarg;
            else if (list == 2) val_inputs[o.nval_inputs++] = optarg;
            else usage_error("unexpected argument '%s' (input files follow --input or --val-input)", optarg);
            break;
        case O_INPUT: inputs[o.ninputs++] = optarg; list = 1; break;
        case O_VAL_INPUT: val_inputs[o.nval_inputs++] = optarg; list = 2; break;
        case O_TASK: task_name = optarg; break;
        case O_TOKENIZER: o.tokenizer = optarg; break;
        case O_OUT: o.out = optarg; break;
        case O_VAL_FRACTION:
            o.val_fraction = arg_num("--val-fraction", optarg, 0, 0.5);
            break;
        case O_SHARD_TOKENS:
            n = arg_int("--shard-tokens", optarg, 1, 1000000000000LL);
            o.shard_tokens = (uint64_t)n;
            break;
        case O_THREADS:
            n = arg_int("--threads", optarg, 1, 1024);
            o.threads = (int)n;
            break;
        case O_STRICT: o.strict = 1; break;
        case O_TRAIN_LIST: in.train_list = optarg; break;
        case O_VAL_LIST: in.val_list = optarg; break;
        case O_CLASSES: in.classes = (int)arg_int("--classes", optarg, 1, JPEGS_CLASSES_MAX); break;
        case O_SHORT_SIDE: in.short_side = (int)arg_int("--short-side", optarg, 1, 32768); break;
        case O_QUALITY: in.quality = (int)arg_int("--quality", optarg, 1, 100); break;
        case O_TEXT_FIELD:
            if (!optarg[0] || strlen(optarg) > 256) usage_error("--text-field takes a member name of 1 to 256 bytes");
            o.text_field = optarg;
            break;
        case O_MAX_LINE:
            n = arg_int("--max-line-bytes", optarg, PREPARE_MAX_LINE_MIN, PREPARE_MAX_LINE_MAX);
            o.max_line_bytes = (size_t)n;
            break;
        case 'h':
            printf("usage: %s\n\n%s", PREPARE_USAGE, PREPARE_HELP);
            goto done;
        default: bad_option(argv, c);
        }
    }
    if (!task_name) usage_error("--task is required");
    // The ImageNet flags mean nothing to the other tasks, and the text flags nothing to ImageNet: refused.
    static const int imagenet_only[] = {O_TRAIN_LIST, O_VAL_LIST, O_CLASSES, O_SHORT_SIDE, O_QUALITY};
    static const char *const imagenet_only_names[] = {"--train-list", "--val-list", "--classes", "--short-side", "--quality"};
    if (!strcmp(task_name, "imagenet")) {
        static const int not_imagenet[] = {O_VAL_INPUT, O_TOKENIZER, O_VAL_FRACTION, O_SHARD_TOKENS, O_STRICT, O_TEXT_FIELD,
                                           O_MAX_LINE};
        static const char *const not_imagenet_names[] = {"--val-input", "--tokenizer", "--val-fraction", "--shard-tokens",
                                                         "--strict", "--text-field", "--max-line-bytes"};
        for (size_t i = 0; i < sizeof not_imagenet / sizeof not_imagenet[0]; i++)
            if (given[not_imagenet[i] - O_TASK]) usage_error("%s does not apply to --task imagenet", not_imagenet_names[i]);
        if (o.ninputs > 1) usage_error("--task imagenet takes one --input folder, got %d", o.ninputs);
        if (o.ninputs && (in.train_list || in.val_list))
            usage_error("--task imagenet takes --input DIR or --train-list and --val-list, not both");
        if (!o.ninputs && !(in.train_list && in.val_list))
            usage_error("--task imagenet needs --input DIR, or both --train-list FILE and --val-list FILE");
        if (given[O_CLASSES - O_TASK] && o.ninputs) usage_error("--classes goes with --train-list: the folder layout counts its classes");
        if (!o.out) usage_error("--out is required");
        in.input = o.ninputs ? o.inputs[0] : NULL;
        in.out = o.out;
        in.threads = given[O_THREADS - O_TASK] ? o.threads : 0;
        rc = imagenet_prepare(&in);
        goto done;
    }
    for (size_t i = 0; i < sizeof imagenet_only / sizeof imagenet_only[0]; i++)
        if (given[imagenet_only[i] - O_TASK]) usage_error("%s applies to --task imagenet only", imagenet_only_names[i]);
    LraTask lra;
    ImageTask img;
    int is_image = image_task_parse(task_name, &img) == 0;
    if (is_image || lra_task_parse(task_name, &lra) == 0) {
        for (size_t i = 0; i < sizeof text_only / sizeof text_only[0]; i++)
            if (given[text_only[i] - O_TASK]) {
                usage_error("%s does not apply to --task %s", text_only_names[i], task_name);
            }
        if (o.ninputs != 1) {
            usage_error(o.ninputs ? "--task %s takes one --input folder, got %d" : "--input is required",
                             task_name, o.ninputs);
        }
        if (!o.out) usage_error("--out is required");
        if (is_image) {
            if (img == IMAGE_CIFAR || img == IMAGE_FASHION_MNIST) {
                if (given[O_STRICT - O_TASK]) usage_error("--strict does not apply to --task %s (every problem is fatal)", task_name);
                if (given[O_MAX_LINE - O_TASK]) usage_error("--max-line-bytes does not apply to --task %s", task_name);
            }
            ImagePrepareOptions io = {.task = img, .input = o.inputs[0], .out = o.out, .strict = o.strict,
                                      .max_line_bytes = o.max_line_bytes};
            rc = images_prepare(&io);
            goto done;
        }
        LraPrepareOptions lo = {.task = lra, .input = o.inputs[0], .out = o.out, .strict = o.strict,
                                .max_line_bytes = o.max_line_bytes};
        rc = lra_prepare(&lo);
        goto done;
    }
    if (!strcmp(task_name, "pile")) o.task = PREPARE_PILE;
    else if (!strcmp(task_name, "wiki103")) o.task = PREPARE_WIKI103;
    else if (!strcmp(task_name, "text")) o.task = PREPARE_TEXT;
    else {
        usage_error("--task must be pile, wiki103, text, lra-listops, lra-text, lra-retrieval, lra-image, lra-pathfinder, "
                    "lra-pathx, fashion-mnist or imagenet, got '%s'", task_name);
    }
    if (o.text_field && o.task != PREPARE_PILE) usage_error("--text-field names a JSON member: it goes with --task pile only");
    if (!o.ninputs) usage_error("--input is required");
    if (!o.tokenizer) usage_error("--tokenizer is required");
    if (!o.out) usage_error("--out is required");
    rc = prepare_run(&o);
done:
    free(inputs);
    free(val_inputs);
    return rc;
}

// ----------------------------------------------------------------------------------------------------------
// hgrn2 tokenize

static const char *TOKENIZE_USAGE = "hgrn2 tokenize --tokenizer PATH [--decode] < input > output";

// Reads all of f; the result is NUL-terminated (not counted in *len).
static char *read_stream(FILE *f, const char *name, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (cap - n < 2) buf = xrealloc(buf, cap *= 2);
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) die("cannot read %s: %s", name, strerror(errno));
    buf[n] = 0;
    *len = n;
    return buf;
}

static void write_out(const void *p, size_t n) {
    if (n && fwrite(p, 1, n, stdout) != n) die("cannot write standard output: %s", strerror(errno));
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

int cmd_tokenize(int argc, char **argv) {
    static const struct option opts[] = {
        { "tokenizer", required_argument, NULL, 't' },
        { "decode", no_argument, NULL, 'd' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *spec = NULL;
    int decode = 0, c;
    cli_start("hgrn2 tokenize", TOKENIZE_USAGE);
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+:", opts, NULL)) != -1) {
        switch (c) {
        case 't': spec = optarg; break;
        case 'd': decode = 1; break;
        case 'h':
            printf("usage: %s\n\n"
                   "Encodes UTF-8 text from standard input and prints its token ids on one line, separated by\n"
                   "spaces; adds no special tokens (special-token text is encoded as ordinary text).\n"
                   "  --tokenizer PATH  \"byte\", a directory with encoder.json and vocab.bpe (GPT-2), a directory\n"
                   "                    with tokenizer.json, or a tokenizer.json file (BPE models)\n"
                   "  --decode          read whitespace-separated ids instead and write their text\n"
                   "  --help            this message\n", TOKENIZE_USAGE);
            return 0;
        default:
            bad_option(argv, c);
        }
    }
    if (optind < argc) usage_error("unexpected argument '%s'", argv[optind]);
    if (!spec) usage_error("--tokenizer is required");
    Tokenizer *t = tokenizer_load(spec);
    size_t len;
    char *in = read_stream(stdin, "standard input", &len);
    ByteBuf out = { 0 };
    if (!decode) {
        IdBuf ids = { 0 };
        tokenizer_encode(t, in, len, &ids);
        char num[16];
        for (size_t i = 0; i < ids.n; i++) {
            int k = snprintf(num, sizeof num, i ? " %d" : "%d", ids.ids[i]);
            bytebuf_append(&out, num, (size_t)k);
            if (out.n > (1 << 20)) { write_out(out.data, out.n); out.n = 0; }
        }
        bytebuf_append(&out, "\n", 1);
        free(ids.ids);
    } else {
        size_t count = 0;
        int nvocab = tokenizer_vocab_size(t);
        for (char *p = in; p < in + len;) {
            while (p < in + len && is_space(*p)) p++;
            if (p >= in + len) break;
            char *s = p;
            while (p < in + len && !is_space(*p)) p++;
            char saved = *p;
            *p = 0;   // the buffer has a NUL past its end, so this is in bounds
            long long id;
            if (parse_i64(s, LLONG_MIN, LLONG_MAX, &id) != 0) die("--decode: \"%s\" (id number %zu) is not an integer", s, count + 1);
            if (id < 0 || id >= nvocab)
                die("--decode: id %lld (number %zu) is out of range [0, %d) of tokenizer %s", id, count + 1, nvocab, tokenizer_name(t));
            *p = saved;
            tokenizer_decode_one(t, (int32_t)id, count == 0, &out);
            count++;
            if (out.n > (1 << 20)) { write_out(out.data, out.n); out.n = 0; }
        }
    }
    write_out(out.data, out.n);
    if (fflush(stdout) != 0) die("cannot write standard output: %s", strerror(errno));
    free(out.data);
    free(in);
    tokenizer_free(t);
    return 0;
}
