// cmd_hf.c: the commands import and export, between hgrn2 checkpoints and Hugging Face model directories.
// The directories are those of flash-linear-attention's HGRN2ForCausalLM, or of transformers' LlamaForCausalLM
// for the Transformer++ baseline: config.json, safetensors files and the tokenizer's files.
#include <math.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "model.h"
#include "checkpoint.h"
#include "tokenizer.h"
#include "hf.h"
#include "train.h"

static const char *IMPORT_USAGE = "hgrn2 import --hf DIR --out CKPT";
static const char *IMPORT_HELP =
    "Convert a Hugging Face HGRN2 checkpoint (flash-linear-attention, model_type hgrn2), an HGRN1 one (model_type\n"
    "hgrn, expand_ratio 1: --arch hgrn1) or a LLaMA one (transformers' LlamaForCausalLM, model_type llama: the\n"
    "Transformer++ baseline, --arch transformer) into an hgrn2 checkpoint for eval, sample and train --init.\n"
    "LLaMA models with grouped-query attention, rope scaling or another rotary base, or biases are refused.\n"
    "\n"
    "  --hf DIR             holds config.json and model.safetensors, or sharded *.safetensors with\n"
    "                       model.safetensors.index.json; F32, BF16, F16 or F64 tensors\n"
    "  --out CKPT           the checkpoint to write\n"
    "When DIR holds a tokenizer.json, the checkpoint remembers DIR as its tokenizer.\n";

static const char *EXPORT_USAGE = "hgrn2 export --ckpt CKPT --hf DIR [--dtype f32|bf16|f16]";
static const char *EXPORT_HELP =
    "Write a checkpoint as a Hugging Face model directory that flash-linear-attention's HGRN2ForCausalLM\n"
    "(HGRNForCausalLM for --arch hgrn1; for a transformer, transformers' LlamaForCausalLM) loads unchanged:\n"
    "config.json, generation_config.json, model.safetensors and, for a run with a tokenizer, tokenizer.json,\n"
    "tokenizer_config.json and special_tokens_map.json, which transformers' AutoTokenizer loads (GPT-2 runs\n"
    "also get vocab.json and merges.txt).\n"
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

// flash-linear-attention's HGRN2 and HGRN always have MLPs, and so does LLaMA: a width of 0 (a model of this
// program only) is refused
static const Range R_HF_MLP = {"intermediate_size", 1, 1 << 20};

// A LlamaForCausalLM config.json (model_type llama) as a transformer's Config, each choice this model cannot
// represent refused by name. *ctx receives max_position_embeddings (the context it was trained for).
static Config llama_config(const Json *cfg, const char *path, int *ctx) {
    const Json *act = json_get(cfg, "hidden_act");
    if (act && json_type(act) != JSON_NULL && (json_type(act) != JSON_STR || strcmp(json_str(act), "silu")))
        die("%s: hidden_act must be \"silu\" (LLaMA's SwiGLU); hgrn2 implements no other", path);
    if (cfg_bool(cfg, path, "attention_bias", 0)) die("%s: attention_bias is true; hgrn2's transformer has no biases", path);
    if (cfg_bool(cfg, path, "mlp_bias", 0)) die("%s: mlp_bias is true; hgrn2's transformer has no biases", path);
    const Json *scaling = json_get(cfg, "rope_scaling");
    if (scaling && json_type(scaling) != JSON_NULL)
        die("%s: rope_scaling is set; hgrn2 implements plain rotary positions only", path);
    double theta = cfg_num(cfg, path, "rope_theta", ROPE_THETA, 0, 1e300);
    // newer transformers write the rotary settings as one object
    const Json *rp = json_get(cfg, "rope_parameters");
    if (rp && json_type(rp) != JSON_NULL) {
        if (json_type(rp) != JSON_OBJ) die("%s: rope_parameters must be an object", path);
        const Json *type = json_get(rp, "rope_type");
        if (type && json_type(type) != JSON_NULL && (json_type(type) != JSON_STR || strcmp(json_str(type), "default")))
            die("%s: rope_parameters.rope_type must be \"default\"; hgrn2 implements plain rotary positions only", path);
        theta = cfg_num(rp, path, "rope_theta", theta, 0, 1e300);
    }
    if (theta != ROPE_THETA)
        die("%s: rope_theta is %g; hgrn2's transformer rotates with LLaMA's base %g only", path, theta, ROPE_THETA);
    Config cf = {.V = cfg_int(cfg, path, "vocab_size", 0, 1, &R_VOCAB), .D = cfg_int(cfg, path, "hidden_size", 0, 1, &R_DIM),
                 .L = cfg_int(cfg, path, "num_hidden_layers", 0, 1, &R_LAYERS),
                 .I = cfg_int(cfg, path, "intermediate_size", 0, 1, &R_HF_MLP),
                 .tie = cfg_bool(cfg, path, "tie_word_embeddings", 0), .lower_bound = 0,
                 .eps = cfg_num(cfg, path, "rms_norm_eps", 1e-6, 0, 1), .mixer = MIXER_TRANSFORMER};
    if (!(cf.eps > 0 && cf.eps < 1)) die("%s: rms_norm_eps must be a number in (0, 1), got %g", path, cf.eps);
    const int heads = cfg_int(cfg, path, "num_attention_heads", 0, 1, &R_DIM);
    const int kv = cfg_int(cfg, path, "num_key_value_heads", heads, 0, &R_DIM);
    if (kv != heads)
        die("%s: num_key_value_heads is %d against %d attention heads: grouped-query attention is not implemented "
            "(hgrn2's transformer has a key and a value per head)", path, kv, heads);
    if (cf.D % heads) die("%s: num_attention_heads %d does not divide hidden_size %d", path, heads, cf.D);
    cf.K = cf.D / heads;
    const int hd = cfg_int(cfg, path, "head_dim", cf.K, 0, &R_DIM);
    if (hd != cf.K) die("%s: head_dim is %d, not hidden_size / num_attention_heads = %d: hgrn2 does not implement that", path, hd, cf.K);
    *ctx = cfg_int(cfg, path, "max_position_embeddings", 2048, 0, &R_SEQ_LEN);
    const char *bad = config_finish(&cf);
    if (bad) die("%s: the configuration cannot be represented: %s", path, bad);
    return cf;
}

// The model config.json in dir describes, checked against what hgrn2 implements. *ctx: a LLaMA config's
// max_position_embeddings, 0 for HGRN2 (no positions, no limit).
static Config hf_config(const char *dir, int *ctx) {
    char *path = xasprintf("%s/config.json", dir);
    size_t len;
    char *text = read_file(path, &len), err[200];
    Json *cfg = json_parse(text, len, json_default_limit(len), err, sizeof err);
    if (!cfg || json_type(cfg) != JSON_OBJ) die("%s is not a JSON object%s%s", path, cfg ? "" : ": ", cfg ? "" : err);
    const Json *mt = json_get(cfg, "model_type");
    // fla's HGRN2 (model_type hgrn2), HGRN1 (hgrn: HGRNForCausalLM, --arch hgrn1), or LLaMA (--arch transformer)
    const int h1 = mt && json_type(mt) == JSON_STR && !strcmp(json_str(mt), "hgrn");
    if (mt && json_type(mt) == JSON_STR && !strcmp(json_str(mt), "llama")) {
        Config cf = llama_config(cfg, path, ctx);
        json_free(cfg);
        free(text);
        free(path);
        return cf;
    }
    if (!h1 && (!mt || json_type(mt) != JSON_STR || strcmp(json_str(mt), "hgrn2")))
        die("%s: model_type is %s%s%s: hgrn2 imports HGRN2 (hgrn2), HGRN1 (hgrn) and LLaMA (llama) models", path,
            mt && json_type(mt) == JSON_STR ? "'" : "", mt && json_type(mt) == JSON_STR ? json_str(mt) : "missing",
            mt && json_type(mt) == JSON_STR ? "'" : "");
    *ctx = 0;
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
    // the heads come from expand_ratio (the key dim per head) or, without it, from num_heads, as in fla;
    // HGRN1's expand_ratio widens its element-wise state (input_dim = expand_ratio x hidden_size): only 1 here
    int expand = cfg_int(cfg, path, "expand_ratio", h1 ? 1 : 0, 0, &R_EXPAND), heads = cfg_int(cfg, path, "num_heads", 0, 0, &R_DIM);
    if (h1) {
        if (expand != 1)
            die("%s: expand_ratio is %d; hgrn2 implements HGRN1 with expand ratio 1 (a state of hidden_size)", path, expand);
        cf.mixer = MIXER_HGRN1;
        cf.K = 1;
    } else if (expand) cf.K = expand;
    else if (heads) {
        if (cf.D % heads) die("%s: num_heads %d does not divide hidden_size %d", path, heads, cf.D);
        cf.K = cf.D / heads;
    } else die("%s: neither expand_ratio nor num_heads is set", path);
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
            hf_name(name, sizeof name, &m->c, p, l);
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
            for (int l = 0; l < nl && !known; l++) { hf_name(name, sizeof name, &m->c, p, l); known = !strcmp(name, st->t[i].name) && param_numel(&m->c, p); }
        }
        if (!known && m->c.tie && !strcmp(st->t[i].name, "lm_head.weight")) known = 1;   // a tied copy
        // older LLaMA files keep each layer's rotary frequencies, which the positions' formula gives anyway
        const char *tail = strstr(st->t[i].name, ".self_attn.rotary_emb.inv_freq");
        if (!known && m->c.mixer == MIXER_TRANSFORMER && tail && !tail[strlen(".self_attn.rotary_emb.inv_freq")]) known = 1;
        if (!known) die("%s: tensor %s is not part of an %s model of this configuration", dir, st->t[i].name,
                        m->c.mixer == MIXER_TRANSFORMER ? "LLaMA" : m->c.mixer == MIXER_HGRN1 ? "HGRN1" : "HGRN2");
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

    int ctx;
    Config cf = hf_config(dir, &ctx);
    Model m = {0};
    model_alloc(&m, &cf);
    int used = hf_read_tensors(dir, &m);

    RunState rs;
    memset(&rs, 0, sizeof rs);
    rs.c = cf;
    // a LLaMA model's context becomes the run's sequence length (eval's default window, export's max_position_embeddings)
    rs.h = (Hyper){.B = 4, .T = ctx ? ctx : 512, .accum = 1, .steps = 0, .lr = 3e-4, .min_lr = 3e-5, .wd = 0.1,
                   .beta1 = 0.9, .beta2 = 0.95, .adam_eps = 1e-8, .clip = 1, .warmup = 0, .seed = 1337};
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
    if (cf.mixer == MIXER_TRANSFORMER)
        printf("imported %s: %d tensors, %lld parameters (%.2fM): a transformer (LLaMA), vocabulary %d, dim %d, %d "
               "layers of %d heads of %d, %s, %s, context %d\n", dir, used, (long long)m.lay.n, m.lay.n / 1e6, cf.V,
               cf.D, cf.L, cf.H, cf.K, mlp, cf.tie ? "tied embeddings" : "untied lm_head", ctx);
    else
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
            hf_name(names[n], 256, cf, p, l);
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

// A file of the export, written as dir/name.tmp and renamed into place once complete and synced, so that a
// kill never leaves a partial file under its final name.
typedef struct { FILE *f; char *path, *tmp; } OutFile;

static OutFile out_open(const char *dir, const char *name) {
    OutFile o = {NULL, xasprintf("%s/%s", dir, name), NULL};
    o.tmp = xasprintf("%s.tmp", o.path);
    o.f = fopen(o.tmp, "w");
    if (!o.f) die("cannot create %s: %s", o.tmp, strerror(errno));
    return o;
}

static void out_close(OutFile *o) {
    if (ferror(o->f) || fflush(o->f) != 0 || fsync(fileno(o->f)) != 0) {
        int e = errno;
        fclose(o->f);
        unlink(o->tmp);
        die("writing %s failed: %s", o->tmp, strerror(e));
    }
    if (fclose(o->f) != 0) { int e = errno; unlink(o->tmp); die("writing %s failed: %s", o->tmp, strerror(e)); }
    if (rename(o->tmp, o->path) != 0) { int e = errno; unlink(o->tmp); die("renaming %s failed: %s", o->tmp, strerror(e)); }
    free(o->path);
    free(o->tmp);
}

// The special tokens an export names, the same in every file: ids for config.json and generation_config.json,
// texts for tokenizer_config.json and special_tokens_map.json. -1 and NULL where the tokenizer has none.
// Padding: none (hgrn2 never pads), so pad_token_id is null and transformers pads with eos where it must.
typedef struct { int32_t bos, eos; char *bos_text, *eos_text, *unk_text; } Specials;

// The text of a special token: what it decodes to (an added token's content, or a vocabulary token's text).
static char *token_text(const Tokenizer *tok, int32_t id) {
    if (id < 0) return NULL;
    ByteBuf b = {0};
    tokenizer_decode_one(tok, id, 0, &b);
    bytebuf_append(&b, "", 1);
    return b.data;
}

static Specials specials_of(const Tokenizer *tok) {
    Specials s = {-1, -1, NULL, NULL, NULL};
    if (!tok) return s;
    s.eos = tokenizer_eot(tok);
    s.bos = tokenizer_bos(tok);
    if (!tokenizer_file(tok) && s.eos >= 0) s.bos = s.eos;   // GPT-2: <|endoftext|> also begins, as in GPT-2's own files
    s.eos_text = token_text(tok, s.eos);
    s.bos_text = token_text(tok, s.bos);
    // GPT-2 has no unknown token (every byte has one); its own files name <|endoftext|>, and so does this
    // (byte: no special token at all)
    s.unk_text = tokenizer_file(tok) ? token_text(tok, tokenizer_unk(tok)) : token_text(tok, s.eos);
    return s;
}

static void specials_free(Specials *s) { free(s->bos_text); free(s->eos_text); free(s->unk_text); }

// "key": id or null, then sep.
static void put_id(FILE *f, const char *key, int32_t id, const char *sep) {
    if (id >= 0) fprintf(f, "  \"%s\": %d%s", key, id, sep);
    else fprintf(f, "  \"%s\": null%s", key, sep);
}

// "key": "text", for each special token the tokenizer has. Returns how many were written.
static int put_token_texts(FILE *f, const char *path, const Specials *s, int first) {
    const char *keys[] = {"bos_token", "eos_token", "unk_token"}, *texts[] = {s->bos_text, s->eos_text, s->unk_text};
    int n = 0;
    for (int i = 0; i < 3; i++) {
        if (!texts[i]) continue;
        char *q = json_quote(texts[i], strlen(texts[i]));
        if (!q) die("%s: the %s is not valid UTF-8", path, keys[i]);
        fprintf(f, "%s\n  \"%s\": %s", first && !n ? "" : ",", keys[i], q);
        free(q);
        n++;
    }
    return n;
}

// dir/config.json in the form fla's HGRN2Config writes it, with the special tokens' ids.
// dir/config.json: fla's HGRN2Config, or for --arch hgrn1 its HGRNConfig (model_type "hgrn", expand ratio 1;
// HGRNConfig has no num_heads: HGRN1's mixer is element-wise).
static void hf_write_config(const char *dir, const Config *cf, const Specials *sp) {
    OutFile o = out_open(dir, "config.json");
    FILE *f = o.f;
    const int h1 = cf->mixer == MIXER_HGRN1;
    fprintf(f, "{\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"%s\",\n", h1 ? "HGRNForCausalLM" : "HGRN2ForCausalLM",
            h1 ? "hgrn" : "hgrn2");
    if (h1) fprintf(f, "  \"attn\": null,\n  \"attn_mode\": \"fused_recurrent\",\n  \"hidden_size\": %d,\n"
                       "  \"num_hidden_layers\": %d,\n  \"expand_ratio\": %d,\n", cf->D, cf->L, cf->K);
    else fprintf(f, "  \"attn\": null,\n  \"attn_mode\": \"chunk\",\n  \"hidden_size\": %d,\n  \"num_hidden_layers\": %d,\n"
                    "  \"expand_ratio\": %d,\n  \"num_heads\": %d,\n", cf->D, cf->L, cf->K, cf->H);
    fprintf(f, "  \"vocab_size\": %d,\n  \"hidden_ratio\": 4,\n"
               "  \"intermediate_size\": %d,\n  \"hidden_act\": \"swish\",\n  \"norm_eps\": %.17g,\n"
               "  \"tie_word_embeddings\": %s,\n  \"use_lower_bound\": %s,\n  \"use_short_conv\": false,\n"
               "  \"conv_size\": 4,\n  \"elementwise_affine\": true,\n  \"max_position_embeddings\": 2048,\n"
               "  \"initializer_range\": 0.02,\n  \"use_cache\": true,\n  \"fuse_norm\": true,\n  \"fuse_swiglu\": true,\n"
               "  \"fuse_cross_entropy\": true,\n  \"fuse_linear_cross_entropy\": false,\n  \"use_l2warp\": false,\n",
            cf->V, cf->I, cf->eps, cf->tie ? "true" : "false", cf->lower_bound ? "true" : "false");
    put_id(f, "bos_token_id", sp->bos, ",\n");
    put_id(f, "eos_token_id", sp->eos, ",\n");
    put_id(f, "pad_token_id", -1, "\n}\n");
    out_close(&o);
}

// dir/config.json in the form transformers' LlamaConfig writes it: a transformer's sizes, a key and a value per
// head, plain rotary positions at LLaMA's base, no biases; ctx: the context it was trained for.
static void llama_write_config(const char *dir, const Config *cf, const Specials *sp, int ctx) {
    OutFile o = out_open(dir, "config.json");
    FILE *f = o.f;
    fprintf(f, "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n"
               "  \"vocab_size\": %d,\n  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n"
               "  \"num_hidden_layers\": %d,\n  \"num_attention_heads\": %d,\n  \"num_key_value_heads\": %d,\n"
               "  \"head_dim\": %d,\n  \"hidden_act\": \"silu\",\n  \"max_position_embeddings\": %d,\n"
               "  \"rms_norm_eps\": %.17g,\n  \"rope_theta\": %.1f,\n  \"rope_scaling\": null,\n"
               "  \"attention_bias\": false,\n  \"attention_dropout\": 0.0,\n  \"mlp_bias\": false,\n"
               "  \"pretraining_tp\": 1,\n  \"tie_word_embeddings\": %s,\n  \"initializer_range\": 0.02,\n"
               "  \"use_cache\": true,\n  \"torch_dtype\": \"float32\",\n",
            cf->V, cf->D, cf->I, cf->L, cf->H, cf->H, cf->K, ctx, cf->eps, ROPE_THETA, cf->tie ? "true" : "false");
    put_id(f, "bos_token_id", sp->bos, ",\n");
    put_id(f, "eos_token_id", sp->eos, ",\n");
    put_id(f, "pad_token_id", -1, "\n}\n");
    out_close(&o);
}

// dir/generation_config.json: generate's defaults, the same ids as config.json.
static void hf_write_generation_config(const char *dir, const Specials *sp) {
    OutFile o = out_open(dir, "generation_config.json");
    fprintf(o.f, "{\n");
    put_id(o.f, "bos_token_id", sp->bos, ",\n");
    put_id(o.f, "eos_token_id", sp->eos, ",\n");
    put_id(o.f, "pad_token_id", -1, "\n}\n");
    out_close(&o);
}

// The largest length transformers knows, the value it uses itself when a tokenizer names none (int(1e30)).
// HGRN2 is recurrent, without positions: it runs on a text of any length with a state of one size, so the
// training sequence length is no limit, and a limit here would only make transformers warn about, or
// truncate, inputs the model handles. (A transformer's export names its context instead.)
#define NO_MAX_LENGTH "1000000000000000019884624838656"

// Whether back (the tokenizer.json written for tok, read back) encodes text as tok does: every token's text,
// and a sample of several scripts. Returns how many token texts differ (the first in *first) and sets
// *sample when the sample does. GPT-2 files rank a pair of parts by the rank of the token they make and take
// a piece that is a token as that token (tiktoken's rule); Hugging Face applies the listed merges in order.
// The released GPT-2 files give the same ids either way; other files in their format may not.
static int differences(const Tokenizer *tok, const Tokenizer *back, int32_t *first, int *sample) {
    static const char *SAMPLE = "Hello, world! It's 2024: caf\xc3\xa9, \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e, "
                                "\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd  spaces\n\ttabs\r\n";
    IdBuf a = {0}, b = {0};
    ByteBuf text = {0};
    int n = 0;
    *first = -1;
    *sample = 0;
    for (int32_t id = -1; id < tokenizer_vocab_size(tok); id++) {    // -1: the sample
        text.n = 0;
        if (id < 0) bytebuf_append(&text, SAMPLE, strlen(SAMPLE));
        else tokenizer_decode_one(tok, id, 0, &text);
        a.n = b.n = 0;
        tokenizer_encode(tok, text.data, text.n, &a);
        tokenizer_encode(back, text.data, text.n, &b);
        if (a.n == b.n && !memcmp(a.ids, b.ids, a.n * sizeof *a.ids)) continue;
        if (id < 0) *sample = 1;
        else if (!n++) *first = id;
    }
    free(a.ids); free(b.ids); free(text.data);
    return n;
}

// The tokenizer's files in dir: tokenizer.json (written for byte and GPT-2 files, copied for a tokenizer.json
// run), tokenizer_config.json and special_tokens_map.json; for GPT-2, also its own files under the names
// transformers' slow GPT2Tokenizer reads (vocab.json, merges.txt). max_length: model_max_length, digits.
// Returns the names written.
static char *hf_write_tokenizer(const char *dir, const char *spec, const Tokenizer *tok, const Specials *sp,
                                const char *max_length) {
    char *names;
    char *tj = xasprintf("%s/tokenizer.json", dir);
    if (tokenizer_file(tok)) {
        copy_file(tokenizer_file(tok), tj);
        names = xstrdup("tokenizer.json");
    } else {
        OutFile o = out_open(dir, "tokenizer.json");
        tokenizer_write_hf_json(tok, spec, o.f, o.tmp);
        out_close(&o);
        // read back: the file must load and encode as the run's tokenizer, ids and specials alike
        Tokenizer *back = tokenizer_load(tj);
        if (tokenizer_vocab_size(back) != tokenizer_vocab_size(tok) || tokenizer_eot(back) != tokenizer_eot(tok))
            die("%s reads back with %d ids and end-of-text %d, not %d and %d", tj, tokenizer_vocab_size(back),
                tokenizer_eot(back), tokenizer_vocab_size(tok), tokenizer_eot(tok));
        int32_t first;
        int sample, nd = differences(tok, back, &first, &sample);
        if (nd || sample) {
            char firstid[48] = "";
            if (nd) snprintf(firstid, sizeof firstid, " (the first: id %d)", first);
            fprintf(stderr, "hgrn2: warning: %s encodes %s%d of the %d token texts otherwise than %s%s: Hugging Face "
                    "applies these files' merges in order where hgrn2 ranks a pair by the token it makes, so "
                    "AutoTokenizer's ids differ from the model's on such text\n", tj, sample ? "a sample text and " : "",
                    nd, tokenizer_vocab_size(tok), spec, firstid);
        }
        tokenizer_free(back);
        names = xstrdup("tokenizer.json");
        if (strcmp(tokenizer_name(tok), "byte")) {
            char *from = xasprintf("%s/encoder.json", spec), *to = xasprintf("%s/vocab.json", dir);
            copy_file(from, to);
            free(from); free(to);
            from = xasprintf("%s/vocab.bpe", spec), to = xasprintf("%s/merges.txt", dir);
            copy_file(from, to);
            free(from); free(to);
            free(names);
            names = xstrdup("tokenizer.json, vocab.json, merges.txt");
        }
    }
    free(tj);

    OutFile o = out_open(dir, "tokenizer_config.json");
    fprintf(o.f, "{\n  \"tokenizer_class\": \"PreTrainedTokenizerFast\",\n  \"model_max_length\": %s,\n"
                 "  \"add_bos_token\": false,\n  \"add_eos_token\": false,\n  \"clean_up_tokenization_spaces\": false",
            max_length);
    put_token_texts(o.f, o.tmp, sp, 0);
    fprintf(o.f, "\n}\n");
    out_close(&o);
    o = out_open(dir, "special_tokens_map.json");
    fprintf(o.f, "{");
    fprintf(o.f, put_token_texts(o.f, o.tmp, sp, 1) ? "\n}\n" : "}\n");
    out_close(&o);
    char *all = xasprintf("%s, tokenizer_config.json, special_tokens_map.json", names);
    free(names);
    return all;
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
    const int llama = m.c.mixer == MIXER_TRANSFORMER;
    const char *form = llama ? "LLaMA" : m.c.mixer == MIXER_HGRN1 ? "fla's HGRN" : "fla's HGRN2";   // the HF model
    if (!m.c.I)
        die("%s has no MLPs (--mlp-width 0); %s always has them, so it has no Hugging Face form", ckpt, form);
    if (m.c.layer != LAYER_FLA)
        die("%s has the HGRN2 authors' mixer layer (--mixer-layer %s: sigmoid q, silu v, a LayerNorm, biases); fla's "
            "HGRN2 has only its own layer, so this model has no Hugging Face form", ckpt, LAYER_NAMES[m.c.layer]);
    if (m.c.block != BLOCK_FLA)
        die("%s has Zoology's blocks (--block %s: LayerNorms with biases); %s has RMSNorms, so this model has no "
            "Hugging Face form", ckpt, BLOCK_NAMES[m.c.block], form);
    mkdir_p(dir);

    int n = hf_write_tensors(dir, &m, dtype);
    // the run's tokenizer, when it had one (a run on ids alone has none)
    Tokenizer *tok = rs.tokenizer[0] ? tokenizer_load(rs.tokenizer) : NULL;
    Specials sp = specials_of(tok);
    // a transformer's context is the sequence length it trained at: past it, its positions are untried
    char ctx[32];
    snprintf(ctx, sizeof ctx, "%d", rs.h.T);
    if (llama) llama_write_config(dir, &m.c, &sp, rs.h.T);
    else hf_write_config(dir, &m.c, &sp);
    hf_write_generation_config(dir, &sp);
    char *tok_files = tok ? hf_write_tokenizer(dir, rs.tokenizer, tok, &sp, llama ? ctx : NO_MAX_LENGTH) : NULL;
    printf("wrote %s: config.json, generation_config.json, model.safetensors (%d tensors)%s%s\n", dir, n,
           tok_files ? ", " : "", tok_files ? tok_files : "");
    free(tok_files);
    specials_free(&sp);
    if (tok) tokenizer_free(tok);
    model_free(&m);
    return 0;
}
