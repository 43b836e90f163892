// test_parity.c: the same model, the same numbers as the reference implementation (flash-linear-attention;
// for the Transformer++ baseline, transformers' LlamaForCausalLM).
// tests/fixtures/fla and tests/fixtures/fla-hgrn1 were made by fla itself (scripts/make_fla_fixture.py): a
// random 3-layer HGRN2 (HGRN2ForCausalLM) and HGRN1 (HGRNForCausalLM, --arch hgrn1) with perturbed lower
// bounds and norms, their inputs, fp32 logits, loss, every parameter gradient and a greedy continuation.
// tests/fixtures/llama holds the same for a random 2-layer LLaMA, made by transformers
// (scripts/make_llama_fixture.py). This program (the float32 build, as users run it) imports each checkpoint
// and compares; then checks export/import round trips, bf16/f16 and sharded files, and the refusals of bad
// checkpoints, for both formats.
#include <math.h>
#include <unistd.h>
#include <sys/wait.h>

#include "../model.h"
#include "../checkpoint.h"
#include "../commands.h"
#include "../hf.h"
#include "check.h"

#define FIX "tests/fixtures/fla"
#define FIX_LLAMA "tests/fixtures/llama"
#define TMPD "tests/tmp/test_parity"

static double rel_err(const float *ref, const real *got, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) { double d = (double)got[i] - ref[i]; num += d * d; den += (double)ref[i] * ref[i]; }
    return sqrt(num / (den > 0 ? den : 1e-300));
}

static float *fixture_tensor(const StSet *s, const char *name, int64_t *numel) {
    const StTensor *t = st_find(s, name);
    if (!t) { printf("fixture lacks %s\n", name); exit(1); }
    float *buf = xmalloc((size_t)t->numel * sizeof(float));
    st_read(s, t, buf);
    if (numel) *numel = t->numel;
    return buf;
}

// An integer tensor of the fixture (input_ids, prompt, greedy) as int32.
static int32_t *fixture_ids(const StSet *s, const char *name, int64_t *numel) {
    int64_t n;
    float *f = fixture_tensor(s, name, &n);
    int32_t *ids = xmalloc((size_t)n * sizeof(int32_t));
    for (int64_t i = 0; i < n; i++) ids[i] = (int32_t)f[i];
    free(f);
    if (numel) *numel = n;
    return ids;
}

static int run_cmd(int (*cmd)(int, char **), int argc, char **argv, int quiet) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (quiet) { freopen("/dev/null", "w", stdout); freopen("/dev/null", "w", stderr); }
        _exit(cmd(argc, argv));
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void load_ckpt(const char *path, Model *m) {
    RunState rs;
    checkpoint_load(path, m, &rs, 0);
}

// The imported fixture model (fix: its directory, ref: who made it, mixer: the architecture it must import
// as) against the reference's own numbers, written to ckpt. Tolerances: the reference ran in fp32 without
// TF32, so the two fp32 computations differ by accumulated rounding only: logits ~1e-6 relative (limit 1e-5),
// the loss ~1e-7 (1e-6), gradients, through a 2- or 3-layer backward, ~1e-6..1e-5 (1e-4).
static void parity(const char *fix, const char *ref, const char *ckpt, MixerKind mixer) {
    char hf[256], fxp[256];
    snprintf(hf, sizeof hf, "%s/hf", fix);
    snprintf(fxp, sizeof fxp, "%s/fixture.safetensors", fix);
    printf("-- %s against %s (%s)\n", fix, ref, ARCH_NAMES[mixer]);
    char *argv[] = {"import", "--hf", hf, "--out", (char *)ckpt, NULL};
    CHECK(run_cmd(cmd_import, 5, argv, 1) == 0, "import of the fixture %s failed", fix);
    Model m;
    load_ckpt(ckpt, &m);
    const Config *c = &m.c;
    CHECK(c->mixer == mixer, "%s imported as %s", hf, ARCH_NAMES[c->mixer]);
    StSet *fx = st_open_file(fxp);
    int64_t nids, nlog;
    const StTensor *ti = st_find(fx, "input_ids");
    int B = (int)ti->shape[0], T = (int)ti->shape[1];
    int32_t *ids = fixture_ids(fx, "input_ids", &nids), *tgt = xmalloc((size_t)nids * sizeof(int32_t));
    for (int64_t i = 0; i < nids; i++) tgt[i] = (i % T) + 1 < T ? ids[i + 1] : -1;
    float *ref_logits = fixture_tensor(fx, "logits", &nlog);
    float *ref_loss = fixture_tensor(fx, "loss", NULL);
    CHECK(nlog == nids * c->V, "fixture logits shape");

    model_alloc_training(&m);
    Acts a;
    acts_alloc(&a, c, B, T, 1);
    real *logits = xmalloc((size_t)nlog * sizeof(real));
    int64_t cnt = 0;
    for (int64_t i = 0; i < nids; i++) cnt += tgt[i] >= 0;
    op_zero(m.grads, m.lay.n);
    double sum = model_forward(&m, &a, ids, tgt, NULL, logits, 0, 1.0 / cnt, &cnt);
    model_backward(&m, &a, ids);
    double loss = sum / cnt;
    double e_logits = rel_err(ref_logits, logits, nlog), e_loss = fabs(loss - ref_loss[0]) / ref_loss[0];
    printf("logits: relative error %.3g (limit 1e-5)\nloss:   %.8f vs %s %.8f, relative error %.3g (limit 1e-6)\n",
           e_logits, loss, ref, ref_loss[0], e_loss);
    CHECK(e_logits < 1e-5, "logits differ from %s's by %.3g", ref, e_logits);
    CHECK(e_loss < 1e-6, "loss differs from %s's by %.3g", ref, e_loss);

    double worst = 0;
    char name[300], gname[320];
    for (int p = 0; p < NPARAM; p++) {
        if (!param_numel(c, p)) continue;
        int nl = p < P_FIRST_LAYER ? 1 : c->L;
        for (int l = 0; l < nl; l++) {
            hf_name(name, sizeof name, c, p, l);
            snprintf(gname, sizeof gname, "grad.%s", name);
            int64_t n;
            float *g = fixture_tensor(fx, gname, &n);
            double e = rel_err(g, G(&m, p, l), n);
            if (e > worst) worst = e;
            CHECK(e < 1e-4, "gradient of %s differs from %s's by %.3g", name, ref, e);
            free(g);
        }
    }
    printf("gradients: worst relative error over every tensor %.3g (limit 1e-4)\n", worst);

    // greedy continuation: prefill the prompt, then one token at a time from the recurrent state (or cache)
    int64_t np, ng;
    int32_t *prompt = fixture_ids(fx, "prompt", &np), *greedy = fixture_ids(fx, "greedy", &ng);
    Acts pre, one;
    acts_alloc(&pre, c, 1, (int)np, 0);
    acts_alloc(&one, c, 1, 1, 0);
    DecodeState st;
    decode_state_alloc(&st, c, 1, (int)(np + ng));
    real *lg = xmalloc((size_t)c->V * sizeof(real));
    model_forward(&m, &pre, prompt, NULL, &st, lg, 1, 0, NULL);
    int same = 1;
    printf("greedy: ");
    for (int64_t i = 0; i < ng; i++) {
        int32_t id = sample_token(lg, c->V, 0, 0, 1, NULL, NULL);
        printf("%d%s", id, id == greedy[i] ? " " : "(!) ");
        if (id != greedy[i]) same = 0;
        model_forward(&m, &one, &id, NULL, &st, lg, 1, 0, NULL);
    }
    printf("\n");
    CHECK(same, "the greedy continuation differs from %s's", ref);
    acts_free(&a); acts_free(&pre); acts_free(&one);
    decode_state_free(&st);
    free(lg); free(prompt); free(greedy); free(ids); free(tgt);
    free(ref_logits); free(ref_loss); free(logits);
    st_close(fx);
    model_free(&m);
}

// Every tensor of s as float32, in the arrays st_write takes back (names point into s; data[i] allocated).
static void read_tensors(const StSet *s, const char **names, float **data, int64_t (*shapes)[8], int *nd) {
    for (int i = 0; i < s->n; i++) {
        names[i] = s->t[i].name;
        data[i] = xmalloc((size_t)s->t[i].numel * sizeof(float));
        st_read(s, &s->t[i], data[i]);
        memcpy(shapes[i], s->t[i].shape, sizeof shapes[i]);
        nd[i] = s->t[i].ndim;
    }
}

// Export then import gives identical tensors (f32), bf16/f16 exports give the rounded values.
static void round_trips(void) {
    Model a, b;
    load_ckpt(TMPD "/fla.ckpt", &a);
    const char *dts[] = {"f32", "bf16", "f16"};
    for (int k = 0; k < 3; k++) {
        char dir[256], ck[256];
        snprintf(dir, sizeof dir, TMPD "/export_%s", dts[k]);
        snprintf(ck, sizeof ck, TMPD "/back_%s.ckpt", dts[k]);
        char *ea[] = {"export", "--ckpt", TMPD "/fla.ckpt", "--hf", dir, "--dtype", (char *)dts[k], NULL};
        CHECK(run_cmd(cmd_export, 7, ea, 1) == 0, "export %s failed", dts[k]);
        char *ia[] = {"import", "--hf", dir, "--out", ck, NULL};
        CHECK(run_cmd(cmd_import, 5, ia, 1) == 0, "import of the %s export failed", dts[k]);
        load_ckpt(ck, &b);
        int64_t bad = 0;
        for (int64_t i = 0; i < a.lay.n; i++) {
            float x = (float)a.params[i], want = k == 0 ? x : k == 1 ? bf16_to_f32(f32_to_bf16(x)) : f16_to_f32(f32_to_f16(x));
            if ((float)b.params[i] != want) bad++;
        }
        CHECK(bad == 0 && a.c.V == b.c.V && a.c.I == b.c.I && a.c.K == b.c.K, "%s round trip changed %lld values", dts[k], (long long)bad);
        printf("export %-4s then import: %s\n", dts[k], bad ? "DIFFERENT" : "identical tensors");
        model_free(&b);
    }
    // a tied model: the file holds no lm_head, and comes back tied
    {
        Config tc = {.V = 50, .D = 16, .L = 2, .K = 4, .I = MLP_DEFAULT, .tie = 1, .lower_bound = 1, .eps = 1e-6};
        config_finish(&tc);
        Model t, tb;
        model_alloc(&t, &tc);
        model_init(&t, 4);
        RunState trs;
        memset(&trs, 0, sizeof trs);
        trs.c = tc;
        trs.h = (Hyper){.B = 1, .T = 8, .accum = 1, .lr = 1e-3, .adam_eps = 1e-8};
        checkpoint_save(TMPD "/tied.ckpt", &t, &trs, 0);
        char *ea[] = {"export", "--ckpt", TMPD "/tied.ckpt", "--hf", TMPD "/tied_hf", NULL};
        CHECK(run_cmd(cmd_export, 5, ea, 1) == 0, "export of a tied model failed");
        StSet *ts = st_open_dir(TMPD "/tied_hf");
        CHECK(st_find(ts, "lm_head.weight") == NULL && st_find(ts, "model.embeddings.weight") != NULL,
              "a tied export should hold the embedding and no lm_head");
        st_close(ts);
        char *ia[] = {"import", "--hf", TMPD "/tied_hf", "--out", TMPD "/tied_back.ckpt", NULL};
        CHECK(run_cmd(cmd_import, 5, ia, 1) == 0, "import of a tied export failed");
        load_ckpt(TMPD "/tied_back.ckpt", &tb);
        CHECK(tb.c.tie == 1 && tb.lay.n == t.lay.n && !memcmp(tb.params, t.params, (size_t)t.lay.n * sizeof(real)),
              "tied round trip changed the model");
        printf("tied model: export holds no lm_head, import gives identical tensors\n");
        model_free(&t);
        model_free(&tb);
    }
    // a sharded copy: two files and an index
    StSet *s = st_open_file(TMPD "/export_f32/model.safetensors");
    mkdir_p(TMPD "/sharded");
    int n = s->n, half = n / 2;
    const char **names = xcalloc(n, sizeof(char *));
    float **data = xcalloc(n, sizeof(float *));
    int64_t (*shapes)[8] = xcalloc(n, sizeof *shapes);
    int *nd = xcalloc(n, sizeof(int));
    read_tensors(s, names, data, shapes, nd);
    st_write(TMPD "/sharded/model-00001-of-00002.safetensors", half, names, (const float *const *)data, (const int64_t(*)[8])shapes, nd, ST_F32);
    st_write(TMPD "/sharded/model-00002-of-00002.safetensors", n - half, names + half, (const float *const *)data + half,
             (const int64_t(*)[8])(shapes + half), nd + half, ST_F32);
    FILE *f = fopen(TMPD "/sharded/model.safetensors.index.json", "w");
    fprintf(f, "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {");
    for (int i = 0; i < n; i++) fprintf(f, "%s\"%s\": \"model-0000%d-of-00002.safetensors\"", i ? ", " : "", names[i], i < half ? 1 : 2);
    fprintf(f, "}}\n");
    fclose(f);
    copy_file(TMPD "/export_f32/config.json", TMPD "/sharded/config.json");
    char *ia[] = {"import", "--hf", TMPD "/sharded", "--out", TMPD "/sharded.ckpt", NULL};
    CHECK(run_cmd(cmd_import, 5, ia, 1) == 0, "import of the sharded copy failed");
    load_ckpt(TMPD "/sharded.ckpt", &b);
    CHECK(!memcmp(a.params, b.params, (size_t)a.lay.n * sizeof(real)), "sharded import differs");
    printf("sharded import with an index: identical tensors\n");
    model_free(&b);

    // refusals: each bad directory must exit 1
    struct { const char *what, *from, *to; int drop, reshape, extra; } bad[] = {
        {"use_short_conv true", "\"use_short_conv\": false", "\"use_short_conv\": true", -1, 0, 0},
        {"model_type llama", "\"model_type\": \"hgrn2\"", "\"model_type\": \"llama\"", -1, 0, 0},
        {"hybrid attention layers", "\"attn\": null", "\"attn\": {\"layers\": [1]}", -1, 0, 0},
        {"expand ratio not dividing hidden size", "\"expand_ratio\": 16", "\"expand_ratio\": 15", -1, 0, 0},
        {"a missing tensor", NULL, NULL, 3, 0, 0},
        {"a tensor of the wrong shape", NULL, NULL, -1, 1, 0},
        {"an unknown tensor", NULL, NULL, -1, 0, 1},
    };
    size_t clen;
    char *cfg = read_file(TMPD "/export_f32/config.json", &clen);
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        char dir[256], path[300];
        snprintf(dir, sizeof dir, TMPD "/bad%zu", k);
        mkdir_p(dir);
        snprintf(path, sizeof path, "%s/config.json", dir);
        f = fopen(path, "w");
        if (bad[k].from) {
            char *at = strstr(cfg, bad[k].from);
            CHECK(at != NULL, "config lacks %s", bad[k].from);
            if (!at) continue;
            fwrite(cfg, 1, (size_t)(at - cfg), f);
            fputs(bad[k].to, f);
            fputs(at + strlen(bad[k].from), f);
        } else fputs(cfg, f);
        fclose(f);
        int m = 0;
        const char *nn[64]; const float *dd[64]; int64_t ss[64][8]; int ndd[64];
        for (int i = 0; i < n && m < 60; i++) {
            if (i == bad[k].drop) continue;
            nn[m] = names[i]; dd[m] = data[i]; memcpy(ss[m], shapes[i], sizeof ss[m]); ndd[m] = nd[i];
            if (bad[k].reshape && i == 4) ss[m][0] -= 1;
            m++;
        }
        if (bad[k].extra) { nn[m] = "model.layers.0.attn.q_conv1d.weight"; dd[m] = data[0]; ss[m][0] = 4; ndd[m] = 1; m++; }
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        st_write(path, m, nn, dd, (const int64_t(*)[8])ss, ndd, ST_F32);
        char *ia2[] = {"import", "--hf", dir, "--out", TMPD "/bad.ckpt", NULL};
        int st = run_cmd(cmd_import, 5, ia2, 1);
        CHECK(st == 1, "import of a checkpoint with %s: exit %d, expected 1", bad[k].what, st);
        printf("refused: %s\n", bad[k].what);
    }
    // a truncated safetensors file
    {
        size_t len;
        char *raw = read_file(TMPD "/export_f32/model.safetensors", &len);
        mkdir_p(TMPD "/trunc");
        copy_file(TMPD "/export_f32/config.json", TMPD "/trunc/config.json");
        f = fopen(TMPD "/trunc/model.safetensors", "wb");
        fwrite(raw, 1, len - 1000, f);
        fclose(f);
        free(raw);
        char *ia2[] = {"import", "--hf", TMPD "/trunc", "--out", TMPD "/bad.ckpt", NULL};
        CHECK(run_cmd(cmd_import, 5, ia2, 1) == 1, "import of a truncated file did not fail");
        printf("refused: a truncated model.safetensors\n");
    }
    free(cfg);
    for (int i = 0; i < n; i++) free(data[i]);
    free(names); free(data); free(shapes); free(nd);
    st_close(s);
    model_free(&a);
}

// A random transformer (tie: tied embeddings) saved with a run's sequence length of 40, exported as LLaMA,
// imported back: the same configuration, context and tensors, and so the same logits to the bit.
static void llama_round_trip(int tie) {
    Config tc = {.V = 50, .D = 16, .L = 2, .K = 8, .I = 24, .tie = tie, .eps = 1e-6, .mixer = MIXER_TRANSFORMER};
    config_finish(&tc);
    Model t, tb;
    model_alloc(&t, &tc);
    model_init(&t, 5);
    for (int64_t i = 0; i < t.lay.n; i++) t.params[i] *= 10;    // logits that differ visibly
    RunState trs, back;
    memset(&trs, 0, sizeof trs);
    trs.c = tc;
    trs.h = (Hyper){.B = 1, .T = 40, .accum = 1, .lr = 1e-3, .adam_eps = 1e-8};
    char ck[256], dir[256], ck2[256];
    snprintf(ck, sizeof ck, TMPD "/tpp%d.ckpt", tie);
    snprintf(dir, sizeof dir, TMPD "/tpp%d_hf", tie);
    snprintf(ck2, sizeof ck2, TMPD "/tpp%d_back.ckpt", tie);
    checkpoint_save(ck, &t, &trs, 0);
    char *ea[] = {"export", "--ckpt", ck, "--hf", dir, NULL};
    CHECK(run_cmd(cmd_export, 5, ea, 1) == 0, "export of a transformer failed");
    StSet *ts = st_open_dir(dir);
    CHECK(st_find(ts, "model.layers.1.self_attn.v_proj.weight") && st_find(ts, "model.layers.0.post_attention_layernorm.weight") &&
          (st_find(ts, "lm_head.weight") == NULL) == tie && ts->n == 2 + !tie + 9 * tc.L,
          "the export holds LLaMA's %d tensors (%d)", 2 + !tie + 9 * tc.L, ts->n);
    st_close(ts);
    char *ia[] = {"import", "--hf", dir, "--out", ck2, NULL};
    CHECK(run_cmd(cmd_import, 5, ia, 1) == 0, "import of a transformer's export failed");
    checkpoint_load(ck2, &tb, &back, 0);
    CHECK(tb.c.mixer == MIXER_TRANSFORMER && tb.c.K == 8 && tb.c.H == 2 && tb.c.I == 24 && tb.c.tie == tie &&
          back.h.T == 40 && tb.lay.n == t.lay.n && !memcmp(tb.params, t.params, (size_t)t.lay.n * sizeof(real)),
          "LLaMA round trip changed the model: mixer %d, K %d, tie %d, context %d", tb.c.mixer, tb.c.K, tb.c.tie, back.h.T);
    const int T = 30;
    int32_t ids[30];
    uint64_t r = 9;
    for (int i = 0; i < T; i++) ids[i] = (int32_t)(splitmix64(&r) % tc.V);
    Acts a;
    acts_alloc(&a, &tc, 1, T, 0);
    real *l1 = xmalloc((size_t)T * tc.V * sizeof(real)), *l2 = xmalloc((size_t)T * tc.V * sizeof(real));
    model_forward(&t, &a, ids, NULL, NULL, l1, 0, 0, NULL);
    model_forward(&tb, &a, ids, NULL, NULL, l2, 0, 0, NULL);
    CHECK(!memcmp(l1, l2, (size_t)T * tc.V * sizeof(real)), "the imported transformer's logits differ");
    printf("transformer (%s): LLaMA export then import gives identical tensors, context and logits\n",
           tie ? "tied, no lm_head in the file" : "untied");
    acts_free(&a);
    free(l1); free(l2);
    model_free(&t); model_free(&tb);
}

// Config edits and tensors a LLaMA import must refuse (exit 1), and a stale rotary-frequency buffer it ignores.
static void llama_refusals(void) {
    const char *src = TMPD "/tpp0_hf";
    size_t clen;
    char *cfg = read_file(TMPD "/tpp0_hf/config.json", &clen), path[300];
    StSet *s = st_open_dir(src);
    const int n = s->n;
    const char *names[64]; float *data[64]; int64_t shapes[64][8]; int nd[64];
    read_tensors(s, names, data, shapes, nd);
    struct { const char *what, *from, *to, *extra; int expect; } cases[] = {
        {"grouped-query attention", "\"num_key_value_heads\": 2", "\"num_key_value_heads\": 1", NULL, 1},
        {"rope scaling", "\"rope_scaling\": null", "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}", NULL, 1},
        {"another rotary base", "\"rope_theta\": 10000.0", "\"rope_theta\": 500000.0", NULL, 1},
        {"rope_parameters of another type", "\"model_type\": \"llama\",",
         "\"model_type\": \"llama\", \"rope_parameters\": {\"rope_type\": \"linear\", \"rope_theta\": 10000.0},", NULL, 1},
        {"attention biases", "\"attention_bias\": false", "\"attention_bias\": true", NULL, 1},
        {"MLP biases", "\"mlp_bias\": false", "\"mlp_bias\": true", NULL, 1},
        {"a head_dim other than hidden / heads", "\"head_dim\": 8", "\"head_dim\": 16", NULL, 1},
        {"hidden_act gelu", "\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\"", NULL, 1},
        {"a head dim that is odd", "\"num_attention_heads\": 2,\n  \"num_key_value_heads\": 2,\n  \"head_dim\": 8",
         "\"num_attention_heads\": 16,\n  \"num_key_value_heads\": 16,\n  \"head_dim\": 1", NULL, 1},
        {"a bias tensor", NULL, NULL, "model.layers.0.self_attn.q_proj.bias", 1},
        {"a stale rotary_emb.inv_freq (ignored)", NULL, NULL, "model.layers.1.self_attn.rotary_emb.inv_freq", 0},
        {"rope_parameters of the default type (accepted)", "\"model_type\": \"llama\",",
         "\"model_type\": \"llama\", \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 10000.0},", NULL, 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char dir[256];
        snprintf(dir, sizeof dir, TMPD "/tppbad%zu", k);
        mkdir_p(dir);
        snprintf(path, sizeof path, "%s/config.json", dir);
        FILE *f = fopen(path, "w");
        const char *at = cases[k].from ? strstr(cfg, cases[k].from) : NULL;
        CHECK(!cases[k].from || at, "the exported config lacks %s", cases[k].from);
        if (at) {
            fwrite(cfg, 1, (size_t)(at - cfg), f);
            fputs(cases[k].to, f);
            fputs(at + strlen(cases[k].from), f);
        } else fputs(cfg, f);
        fclose(f);
        int m = n;
        if (cases[k].extra) { names[m] = cases[k].extra; data[m] = data[0]; shapes[m][0] = 4; nd[m] = 1; m++; }
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        st_write(path, m, names, (const float *const *)data, (const int64_t(*)[8])shapes, nd, ST_F32);
        char *ia[] = {"import", "--hf", dir, "--out", TMPD "/tppbad.ckpt", NULL};
        int st = run_cmd(cmd_import, 5, ia, 1);
        CHECK(st == cases[k].expect, "LLaMA import with %s: exit %d, expected %d", cases[k].what, st, cases[k].expect);
        printf("%s: %s\n", cases[k].expect ? "refused" : "imported", cases[k].what);
    }
    for (int i = 0; i < n; i++) free(data[i]);
    free(cfg);
    st_close(s);
}

int main(void) {
    mkdir_p(TMPD);
    parity(FIX, "fla", TMPD "/fla.ckpt", MIXER_CAUSAL);
    parity("tests/fixtures/fla-hgrn1", "fla", TMPD "/fla-hgrn1.ckpt", MIXER_HGRN1);
    parity(FIX_LLAMA, "transformers", TMPD "/llama.ckpt", MIXER_TRANSFORMER);
    round_trips();
    llama_round_trip(0);
    llama_round_trip(1);
    llama_refusals();
    return check_summary("test_parity");
}
