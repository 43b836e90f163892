// cmd_hf.c: the commands import and export, between hgrn2 checkpoints and Hugging Face model directories.
// The directories are those of flash-linear-attention's HGRN2ForCausalLM: config.json, safetensors files and
// the tokenizer's files.
#include <math.h>
#include <unistd.h>
#include <sys/stat.h>

#include "cli.h"
#include "commands.h"
#include "model.h"
#include "checkpoint.h"
#include "tokenizer.h"
#include "hf.h"

static const char *IMPORT_USAGE = "hgrn2 import --hf DIR --out CKPT";
static const char *IMPORT_HELP =
    "Convert a Hugging Face HGRN2 checkpoint (flash-linear-attention, model_type hgrn2) into an hgrn2\n"
    "checkpoint for eval, sample and train --init.\n"
    "\n"
    "  --hf DIR             holds config.json and model.safetensors, or sharded *.safetensors with\n"
    "                       model.safetensors.index.json; F32, BF16, F16 or F64 tensors\n"
    "  --out CKPT           the checkpoint to write\n"
    "When DIR holds a tokenizer.json, the checkpoint remembers DIR as its tokenizer.\n";

static const char *EXPORT_USAGE = "hgrn2 export --ckpt CKPT --hf DIR [--dtype f32|bf16|f16]";
static const char *EXPORT_HELP =
    "Write a checkpoint as a Hugging Face model directory that flash-linear-attention's HGRN2ForCausalLM\n"
    "loads unchanged: config.json, model.safetensors and, when the run has them, its tokenizer files.\n"
    "\n"
    "  --ckpt PATH          the checkpoint (default " DEFAULT_OUT "/model.ckpt)\n"
    "  --hf DIR             the directory to write (created if needed)\n"
    "  --dtype NAME         tensor type in model.safetensors: f32 (default), bf16 or f16\n";

// config.json is read field by field: a field must have its type and range, or import dies naming the
// field and the value. A field that is absent or null takes its default (fla's, where fla has one).

// What a value is, for a message: the number itself, or its type.
static const char *cfg_show(const Json *v, char *buf, size_t n) {
    switch (json_type(v)) {
    case JSON_NUM: snprintf(buf, n, "%.15g", json_num(v)); return buf;
    case JSON_BOOL: return json_num(v) ? "true" : "false";
    case JSON_STR: return "a string";
    case JSON_ARR: return "an array";
    case JSON_OBJ: return "an object";
    default: return "null";
    }
}

// Whether key is there (and not null); dies when it is missing and required.
static const Json *cfg_field(const Json *cfg, const char *path, const char *key, int required) {
    const Json *v = json_get(cfg, key);
    if (v && json_type(v) != JSON_NULL) return v;
    if (required) die("%s: field %s is missing", path, key);
    return NULL;
}

// An integer field within [lo, hi]: a whole, finite JSON number. A fraction would be truncated and a huge
// value would overflow the conversion, so both are refused rather than converted.
static int cfg_int(const Json *cfg, const char *path, const char *key, int def, int required, const Range *r) {
    const Json *v = cfg_field(cfg, path, key, required);
    if (!v) return def;
    double x = json_num(v);
    if (json_type(v) != JSON_NUM || !in_range(r, x) || x != floor(x)) {
        char buf[64];
        die("%s: %s must be an integer in [%.0f, %.0f], got %s", path, key, r->lo, r->hi, cfg_show(v, buf, sizeof buf));
    }
    return (int)x;
}

// A number field within [lo, hi] (finite).
static double cfg_num(const Json *cfg, const char *path, const char *key, double def, double lo, double hi) {
    const Json *v = cfg_field(cfg, path, key, 0);
    if (!v) return def;
    double x = json_num(v);
    if (json_type(v) != JSON_NUM || !(x >= lo && x <= hi)) {
        char buf[64];
        die("%s: %s must be a number in [%g, %g], got %s", path, key, lo, hi, cfg_show(v, buf, sizeof buf));
    }
    return x;
}

// A boolean field: true or false, as Python's json module writes fla's configs (never 0 or 1).
static int cfg_bool(const Json *cfg, const char *path, const char *key, int def) {
    const Json *v = cfg_field(cfg, path, key, 0);
    if (!v) return def;
    if (json_type(v) != JSON_BOOL) {
        char buf[64];
        die("%s: %s must be true or false, got %s", path, key, cfg_show(v, buf, sizeof buf));
    }
    return (int)json_num(v);
}

// The model config.json in dir describes, checked against what hgrn2 implements.
static Config hf_config(const char *dir) {
    char *path = xasprintf("%s/config.json", dir);
    size_t len;
    char *text = read_file(path, &len), err[200];
    Json *cfg = json_parse(text, len, json_default_limit(len), err, sizeof err);
    if (!cfg || json_type(cfg) != JSON_OBJ) die("%s is not a JSON object%s%s", path, cfg ? "" : ": ", cfg ? "" : err);
    const Json *mt = json_get(cfg, "model_type");
    if (!mt || json_type(mt) != JSON_STR || strcmp(json_str(mt), "hgrn2"))
        die("%s: model_type is %s%s%s, not hgrn2: hgrn2 imports only HGRN2 models", path, mt && json_type(mt) == JSON_STR ? "'" : "",
            mt && json_type(mt) == JSON_STR ? json_str(mt) : "missing", mt && json_type(mt) == JSON_STR ? "'" : "");
    if (cfg_bool(cfg, path, "use_short_conv", 0))
        die("%s: use_short_conv is true; hgrn2 implements the model without short convolutions", path);
    const Json *attn = json_get(cfg, "attn");
    if (attn && json_type(attn) != JSON_NULL) die("%s: field attn asks for hybrid softmax-attention layers, which hgrn2 does not implement", path);
    const Json *attnres = json_get(cfg, "attnres_block_size");
    if (attnres && json_type(attnres) != JSON_NULL) die("%s: field attnres_block_size is set; hgrn2 does not implement attention residuals", path);
    if (!cfg_bool(cfg, path, "elementwise_affine", 1)) die("%s: elementwise_affine is false; hgrn2 needs norm weights", path);
    const Json *act = json_get(cfg, "hidden_act");
    if (act && json_type(act) == JSON_STR && strcmp(json_str(act), "swish") && strcmp(json_str(act), "silu"))
        die("%s: hidden_act is '%s'; hgrn2 implements swish", path, json_str(act));
    Config cf = {.V = cfg_int(cfg, path, "vocab_size", 0, 1, &R_VOCAB), .D = cfg_int(cfg, path, "hidden_size", 0, 1, &R_DIM),
                 .L = cfg_int(cfg, path, "num_hidden_layers", 0, 1, &R_LAYERS),
                 .tie = cfg_bool(cfg, path, "tie_word_embeddings", 0), .lower_bound = cfg_bool(cfg, path, "use_lower_bound", 1),
                 .eps = cfg_num(cfg, path, "norm_eps", 1e-6, 0, 1)};
    if (!(cf.eps > 0 && cf.eps < 1)) die("%s: norm_eps must be a number in (0, 1), got %g", path, cf.eps);
    // the heads come from expand_ratio (the key dim per head) or, without it, from num_heads, as in fla
    int expand = cfg_int(cfg, path, "expand_ratio", 0, 0, &R_EXPAND), heads = cfg_int(cfg, path, "num_heads", 0, 0, &R_DIM);
    if (expand) cf.K = expand;
    else if (heads) {
        if (cf.D % heads) die("%s: num_heads %d does not divide hidden_size %d", path, heads, cf.D);
        cf.K = cf.D / heads;
    } else die("%s: neither expand_ratio nor num_heads is set", path);
    // flash-linear-attention's HGRN2 always has MLPs: a width of 0 (a model of this program only) is refused
    static const Range R_HF_MLP = {"intermediate_size", 1, 1 << 20};
    cf.I = cfg_int(cfg, path, "intermediate_size", 0, 0, &R_HF_MLP);
    if (!cf.I) {
        double ratio = cfg_num(cfg, path, "hidden_ratio", 4, 1e-3, 1024);
        cf.I = mlp_width(cf.D, ratio);
        if (!in_range(&R_HF_MLP, cf.I))
            die("%s: hidden_ratio %g makes an MLP width of %d, outside [%.0f, %.0f]", path, ratio, cf.I, R_HF_MLP.lo, R_HF_MLP.hi);
    }
    const char *bad = config_finish(&cf);
    if (bad) die("%s: the configuration cannot be represented: %s", path, bad);
    json_free(cfg);
    free(text);
    free(path);
    return cf;
}

// Reads every tensor of the model m (allocated for the directory's configuration) from dir's safetensors
// files, checking names, shapes and values; a file holding a tensor the model has no place for is refused.
// Returns the number of tensors read.
static int hf_read_tensors(const char *dir, Model *m) {
    StSet *st = st_open_dir(dir);
    float *buf = NULL;
    char name[256];
    int used = 0;
    for (int p = 0; p < NPARAM; p++) {
        int64_t rows, cols;
        param_shape(&m->c, p, &rows, &cols);
        if (!rows) continue;
        int nl = p < P_FIRST_LAYER ? 1 : m->c.L;
        int vec = rows == 1 && p != P_LB;       // norms are 1-D tensors
        for (int l = 0; l < nl; l++) {
            hf_name(name, sizeof name, p, l);
            const StTensor *t = st_find(st, name);
            if (!t) die("%s: tensor %s is missing", dir, name);
            if (t->dtype == ST_I32 || t->dtype == ST_I64) die("%s: tensor %s holds integers, not weights", dir, name);
            int shape_ok = vec ? (t->ndim == 1 && t->shape[0] == cols) : (t->ndim == 2 && t->shape[0] == rows && t->shape[1] == cols);
            if (!shape_ok) {
                char got[128] = "";
                for (int d = 0; d < t->ndim; d++) snprintf(got + strlen(got), sizeof got - strlen(got), d ? ", %lld" : "%lld", (long long)t->shape[d]);
                if (vec) die("%s: tensor %s has shape [%s]; config.json implies [%lld]", dir, name, got, (long long)cols);
                die("%s: tensor %s has shape [%s]; config.json implies [%lld, %lld]", dir, name, got, (long long)rows, (long long)cols);
            }
            buf = xrealloc(buf, (size_t)t->numel * sizeof(float));
            st_read(st, t, buf);
            real *dst = W(m, p, l);
            for (int64_t i = 0; i < t->numel; i++) {
                if (!isfinite(buf[i])) die("%s: tensor %s holds a non-finite value", dir, name);
                dst[i] = buf[i];
            }
            used++;
        }
    }
    for (int i = 0; i < st->n; i++) {
        int known = 0;
        for (int p = 0; p < NPARAM && !known; p++) {
            int nl = p < P_FIRST_LAYER ? 1 : m->c.L;
            for (int l = 0; l < nl && !known; l++) { hf_name(name, sizeof name, p, l); known = !strcmp(name, st->t[i].name) && param_numel(&m->c, p); }
        }
        if (!known && m->c.tie && !strcmp(st->t[i].name, "lm_head.weight")) known = 1;   // a tied copy
        if (!known) die("%s: tensor %s is not part of an HGRN2 model of this configuration", dir, st->t[i].name);
    }
    free(buf);
    st_close(st);
    return used;
}

int cmd_import(int argc, char **argv) {
    static const struct option opts[] = {{"help", no_argument, 0, O_HELP}, {"hf", required_argument, 0, O_HF},
                                         {"out", required_argument, 0, O_OUT}, {0, 0, 0, 0}};
    cli_start("hgrn2 import", IMPORT_USAGE);
    const char *dir = NULL, *out = NULL;
    int c;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case O_HELP: print_help(IMPORT_USAGE, IMPORT_HELP); return 0;
        case O_HF: dir = optarg; break;
        case O_OUT: out = optarg; break;
        default: bad_option(argv, c);
        }
    }
    if (optind < argc) usage_error("unexpected argument '%s'", argv[optind]);
    if (!dir || !out) usage_error("import needs --hf DIR and --out CKPT");

    Config cf = hf_config(dir);
    Model m = {0};
    model_alloc(&m, &cf);
    int used = hf_read_tensors(dir, &m);

    RunState rs;
    memset(&rs, 0, sizeof rs);
    rs.c = cf;
    rs.h = (Hyper){.B = 4, .T = 512, .accum = 1, .steps = 0, .lr = 3e-4, .min_lr = 3e-5, .wd = 0.1, .beta1 = 0.9,
                   .beta2 = 0.95, .adam_eps = 1e-8, .clip = 1, .warmup = 0, .seed = 1337};
    char *tj = xasprintf("%s/tokenizer.json", dir);
    if (file_exists(tj)) {
        char *abs = realpath(dir, NULL);
        if (abs && strlen(abs) < sizeof rs.tokenizer) snprintf(rs.tokenizer, sizeof rs.tokenizer, "%s", abs);
        free(abs);
    }
    free(tj);
    checkpoint_save(out, &m, &rs, 0);
    char mlp[48] = "no MLP";
    if (cf.I) snprintf(mlp, sizeof mlp, "MLP width %d", cf.I);
    printf("imported %s: %d tensors, %lld parameters (%.2fM): vocabulary %d, dim %d, %d layers of %d heads (K %d, "
           "Dv %d), %s, %s, %s\n", dir, used, (long long)m.lay.n, m.lay.n / 1e6, cf.V, cf.D, cf.L, cf.H, cf.K, cf.Dv,
           mlp, cf.tie ? "tied embeddings" : "untied lm_head", cf.lower_bound ? "lower bounds" : "no lower bounds");
    printf("tokenizer: %s\nwrote %s\n", rs.tokenizer[0] ? rs.tokenizer : "none (pass --tokenizer to sample)", out);
    model_free(&m);
    return 0;
}

// Writes dir/model.safetensors: every tensor of m under its Hugging Face name, in the order of the parameter
// table, stored as dtype. Returns the number of tensors.
static int hf_write_tensors(const char *dir, Model *m, StDtype dtype) {
    const Config *cf = &m->c;
    int n = 0, cap = NPARAM * cf->L + NPARAM;
    char **names = xcalloc((size_t)cap, sizeof(char *));
    const float **data = xcalloc((size_t)cap, sizeof(float *));
    int64_t (*shapes)[8] = xcalloc((size_t)cap, sizeof *shapes);
    int *ndims = xcalloc((size_t)cap, sizeof(int));
    for (int p = 0; p < NPARAM; p++) {
        int64_t rows, cols;
        param_shape(cf, p, &rows, &cols);
        if (!rows) continue;
        int nl = p < P_FIRST_LAYER ? 1 : cf->L;
        for (int l = 0; l < nl; l++) {
            names[n] = xmalloc(256);
            hf_name(names[n], 256, p, l);
            float *t = xmalloc((size_t)(rows * cols) * sizeof(float));
            const real *src = W(m, p, l);
            for (int64_t i = 0; i < rows * cols; i++) t[i] = (float)src[i];
            data[n] = t;
            if (rows == 1 && p != P_LB) { ndims[n] = 1; shapes[n][0] = cols; }
            else { ndims[n] = 2; shapes[n][0] = rows; shapes[n][1] = cols; }
            n++;
        }
    }
    char *path = xasprintf("%s/model.safetensors", dir);
    st_write(path, n, (const char *const *)names, data, (const int64_t(*)[8])shapes, ndims, dtype);
    free(path);
    for (int i = 0; i < n; i++) { free(names[i]); free((void *)data[i]); }
    free(names); free(data); free(shapes); free(ndims);
    return n;
}

// Writes dir/config.json in the form fla's HGRN2Config writes it (via a temporary file and a rename), with
// the special tokens of tok when the run had a tokenizer.
static void hf_write_config(const char *dir, const Config *cf, const Tokenizer *tok) {
    char *path = xasprintf("%s/config.json", dir), *tmp = xasprintf("%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) die("cannot create %s: %s", tmp, strerror(errno));
    fprintf(f, "{\n  \"architectures\": [\"HGRN2ForCausalLM\"],\n  \"model_type\": \"hgrn2\",\n"
               "  \"attn\": null,\n  \"attn_mode\": \"chunk\",\n  \"hidden_size\": %d,\n  \"num_hidden_layers\": %d,\n"
               "  \"expand_ratio\": %d,\n  \"num_heads\": %d,\n  \"vocab_size\": %d,\n  \"hidden_ratio\": 4,\n"
               "  \"intermediate_size\": %d,\n  \"hidden_act\": \"swish\",\n  \"norm_eps\": %.17g,\n"
               "  \"tie_word_embeddings\": %s,\n  \"use_lower_bound\": %s,\n  \"use_short_conv\": false,\n"
               "  \"conv_size\": 4,\n  \"elementwise_affine\": true,\n  \"max_position_embeddings\": 2048,\n"
               "  \"initializer_range\": 0.02,\n  \"use_cache\": true,\n  \"fuse_norm\": true,\n  \"fuse_swiglu\": true,\n"
               "  \"fuse_cross_entropy\": true,\n  \"fuse_linear_cross_entropy\": false,\n  \"use_l2warp\": false,\n",
            cf->D, cf->L, cf->K, cf->H, cf->V, cf->I, cf->eps, cf->tie ? "true" : "false", cf->lower_bound ? "true" : "false");
    // special tokens of the tokenizer the run used, when there is one
    int32_t bos = tok ? tokenizer_bos(tok) : -1, eos = tok ? tokenizer_eot(tok) : -1;
    if (bos >= 0) fprintf(f, "  \"bos_token_id\": %d,\n", bos); else fprintf(f, "  \"bos_token_id\": null,\n");
    if (eos >= 0) fprintf(f, "  \"eos_token_id\": %d,\n", eos); else fprintf(f, "  \"eos_token_id\": null,\n");
    fprintf(f, "  \"pad_token_id\": null\n}\n");
    if (fflush(f) != 0 || fsync(fileno(f)) != 0 || fclose(f) != 0) { int e = errno; unlink(tmp); die("writing %s failed: %s", tmp, strerror(e)); }
    if (rename(tmp, path) != 0) { int e = errno; unlink(tmp); die("renaming %s failed: %s", tmp, strerror(e)); }
    free(path);
    free(tmp);
}

// Copies from_dir/from to dir/to when the first exists.
static void copy_if_there(const char *from_dir, const char *from, const char *dir, const char *to) {
    char *src = xasprintf("%s/%s", from_dir, from);
    if (file_exists(src)) {
        char *dst = xasprintf("%s/%s", dir, to);
        copy_file(src, dst);
        free(dst);
    }
    free(src);
}

// The tokenizer files of spec (a tokenizer.json, or a directory) into dir: a tokenizer.json as it is;
// GPT-2's encoder.json/vocab.bpe under the names transformers' GPT2Tokenizer reads (vocab.json, merges.txt).
static void hf_write_tokenizer(const char *dir, const char *spec) {
    struct stat st;
    if (stat(spec, &st) == 0 && S_ISREG(st.st_mode)) {
        char *to = xasprintf("%s/tokenizer.json", dir);
        copy_file(spec, to);
        free(to);
        return;
    }
    copy_if_there(spec, "tokenizer.json", dir, "tokenizer.json");
    copy_if_there(spec, "encoder.json", dir, "vocab.json");
    copy_if_there(spec, "vocab.bpe", dir, "merges.txt");
}

int cmd_export(int argc, char **argv) {
    static const struct option opts[] = {{"help", no_argument, 0, O_HELP}, {"hf", required_argument, 0, O_HF},
                                         {"ckpt", required_argument, 0, O_CKPT}, {"dtype", required_argument, 0, O_SPLIT},
                                         {0, 0, 0, 0}};
    cli_start("hgrn2 export", EXPORT_USAGE);
    const char *dir = NULL, *ckpt = DEFAULT_OUT "/model.ckpt";
    StDtype dtype = ST_F32;
    int c;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case O_HELP: print_help(EXPORT_USAGE, EXPORT_HELP); return 0;
        case O_HF: dir = optarg; break;
        case O_CKPT: ckpt = optarg; break;
        case O_SPLIT:
            if (!strcmp(optarg, "f32")) dtype = ST_F32;
            else if (!strcmp(optarg, "bf16")) dtype = ST_BF16;
            else if (!strcmp(optarg, "f16")) dtype = ST_F16;
            else usage_error("--dtype must be f32, bf16 or f16, got '%s'", optarg);
            break;
        default: bad_option(argv, c);
        }
    }
    if (optind < argc) usage_error("unexpected argument '%s'", argv[optind]);
    if (!dir) usage_error("export needs --hf DIR");
    Model m = {0};
    RunState rs;
    checkpoint_load(ckpt, &m, &rs, 0);
    if (!m.c.I) die("%s has no MLPs (--mlp-width 0); fla's HGRN2 always has them, so it has no Hugging Face form", ckpt);
    mkdir_p(dir);

    int n = hf_write_tensors(dir, &m, dtype);
    Tokenizer *tok = NULL;
    if (rs.tokenizer[0] && strcmp(rs.tokenizer, "byte")) tok = tokenizer_load(rs.tokenizer);
    hf_write_config(dir, &m.c, tok);
    if (tok) hf_write_tokenizer(dir, rs.tokenizer);
    printf("wrote %s: config.json, model.safetensors (%d tensors)%s\n", dir, n, tok ? ", tokenizer files" : "");
    if (tok) tokenizer_free(tok);
    model_free(&m);
    return 0;
}
