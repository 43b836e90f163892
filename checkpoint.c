// checkpoint.c: the checkpoint format: writing it atomically, reading it back with every field checked.
// A versioned little-endian header, the fp32 parameters, optionally the AdamW moments, and a 64-bit checksum
// of everything before it (docs/checkpoint.md).
#include <math.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "checkpoint.h"

#define CKPT_VERSION 4      // 2 added the wsd decay fraction, 3 the architecture, 4 HGRN2's mixer layer, the blocks
                            // and the embeddings' dropout; older files still load (as 0: no decay fraction, hgrn2,
                            // fla's layer and blocks, no dropout)

void hash_init(Hash *s) { s->h = 0xcbf29ce484222325ull; s->tail = 0; s->ntail = 0; }
static inline void hash_word(Hash *s, uint64_t w) { s->h = (s->h ^ w) * 0x100000001b3ull; s->h ^= s->h >> 29; }
void hash_bytes(Hash *s, const void *p, size_t n) {
    const unsigned char *b = p;
    while (n && s->ntail) { s->tail |= (uint64_t)*b++ << (8 * s->ntail); n--; if (++s->ntail == 8) { hash_word(s, s->tail); s->tail = 0; s->ntail = 0; } }
    for (; n >= 8; n -= 8, b += 8) { uint64_t w; memcpy(&w, b, 8); hash_word(s, w); }
    while (n--) { s->tail |= (uint64_t)*b++ << (8 * s->ntail); s->ntail++; }
}
uint64_t hash_final(const Hash *s) { Hash t = *s; if (t.ntail) hash_word(&t, t.tail ^ ((uint64_t)t.ntail << 56)); return t.h; }

// The header integers, in the order they are stored.
enum { I_V, I_D, I_L, I_K, I_I, I_TIE, I_LB, I_B, I_T, I_ACCUM, I_STEPS, I_WARMUP, I_SCHED, I_SEED, I_STEP,
       I_LOADER_SEED, I_LOADER_BATCHES, I_LOADER_CURSOR, I_LOADER_RESERVED, I_N, I_OPT, I_ARCH, I_LAYER, I_BLOCK,
       NINTS };
enum { NINTS_V2 = I_ARCH };             // versions 1 and 2 stop before the architecture
enum { NINTS_V3 = I_LAYER };            // version 3 stops before the mixer layer
// The header floats.
enum { F_EPS, F_LR, F_MIN_LR, F_WD, F_BETA1, F_BETA2, F_ADAM_EPS, F_CLIP, F_DECAY_FRAC, F_EMBED_DROP, NFLOATS };
enum { NFLOATS_V1 = F_DECAY_FRAC };     // version 1 stops before the decay fraction
enum { NFLOATS_V3 = F_EMBED_DROP };     // versions 2 and 3 before the embeddings' dropout

// Every failure while saving removes the partial temporary file and leaves the checkpoint under the final
// name as it was.
__attribute__((noreturn)) static void out_fail(CkptOut *o, const char *what, int e) {
    if (o->f) fclose(o->f);
    unlink(o->path);
    die("%s checkpoint %s failed: %s; %s was left as it was (free disk space or choose another --out)", what, o->path,
        strerror(e), o->final);
}
void ckpt_out_open(CkptOut *o, const char *path) {
    o->path = xasprintf("%s.tmp", path);
    o->final = path;
    o->f = fopen(o->path, "wb");
    if (!o->f) die("cannot create checkpoint %s: %s", o->path, strerror(errno));
    hash_init(&o->hash);
}
void ckpt_out_write(CkptOut *o, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, o->f) != n) out_fail(o, "writing", errno);
    hash_bytes(&o->hash, p, n);
}
void ckpt_out_i64(CkptOut *o, int64_t v) { ckpt_out_write(o, &v, 8); }
void ckpt_out_f64(CkptOut *o, double v) { ckpt_out_write(o, &v, 8); }
void ckpt_out_str(CkptOut *o, const char *s) { int64_t n = (int64_t)strlen(s); ckpt_out_i64(o, n); ckpt_out_write(o, s, (size_t)n); }
// Tensors go out as fp32 whatever `real` is.
void ckpt_out_reals(CkptOut *o, const real *x, int64_t n) {
    float buf[4096];
    for (int64_t i = 0; i < n; i += 4096) {
        int64_t k = n - i < 4096 ? n - i : 4096;
        for (int64_t j = 0; j < k; j++) buf[j] = (float)x[i + j];
        ckpt_out_write(o, buf, (size_t)k * 4);
    }
}

// Syncs the directory holding path, so that a rename into it survives a crash.
static void fsync_dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? xasprintf("%.*s", (int)(slash - path), path) : xstrdup(".");
    int fd = open(dir, O_RDONLY);
    if (fd >= 0) { fsync(fd); close(fd); }
    free(dir);
}

void ckpt_out_close(CkptOut *o) {
    uint64_t sum = hash_final(&o->hash);
    if (fwrite(&sum, 8, 1, o->f) != 1) out_fail(o, "writing", errno);
    if (fflush(o->f) != 0) out_fail(o, "writing", errno);
    if (fsync(fileno(o->f)) != 0) out_fail(o, "syncing", errno);
    int closed = fclose(o->f);
    o->f = NULL;
    if (closed != 0) out_fail(o, "closing", errno);
    if (rename(o->path, o->final) != 0) {
        int e = errno;
        unlink(o->path);
        die("renaming checkpoint %s to %s failed: %s; %s was left as it was", o->path, o->final, strerror(e), o->final);
    }
    fsync_dir_of(o->final);
    free(o->path);
    o->path = NULL;
}

void checkpoint_save(const char *path, const Model *m, const RunState *rs, int with_optimizer) {
    CkptOut o;
    ckpt_out_open(&o, path);
    const Config *c = &m->c;
    const Hyper *h = &rs->h;
    ckpt_out_write(&o, CKPT_MAGIC, 8);
    ckpt_out_i64(&o, CKPT_VERSION);
    const int64_t ints[NINTS] = {
        [I_V] = c->V, [I_D] = c->D, [I_L] = c->L, [I_K] = c->K, [I_I] = c->I, [I_TIE] = c->tie,
        [I_LB] = c->lower_bound, [I_B] = h->B, [I_T] = h->T, [I_ACCUM] = h->accum, [I_STEPS] = h->steps,
        [I_WARMUP] = h->warmup, [I_SCHED] = h->sched, [I_SEED] = (int64_t)h->seed, [I_STEP] = rs->step,
        [I_LOADER_SEED] = (int64_t)rs->loader.seed, [I_LOADER_BATCHES] = (int64_t)rs->loader.batches,
        [I_LOADER_CURSOR] = (int64_t)rs->loader.cursor, [I_LOADER_RESERVED] = (int64_t)rs->loader.reserved,
        [I_N] = m->lay.n, [I_OPT] = with_optimizer, [I_ARCH] = c->mixer, [I_LAYER] = c->layer, [I_BLOCK] = c->block};
    ckpt_out_i64(&o, NINTS);
    for (int i = 0; i < NINTS; i++) ckpt_out_i64(&o, ints[i]);
    const double fl[NFLOATS] = {[F_EPS] = c->eps, [F_LR] = h->lr, [F_MIN_LR] = h->min_lr, [F_WD] = h->wd,
                                [F_BETA1] = h->beta1, [F_BETA2] = h->beta2, [F_ADAM_EPS] = h->adam_eps, [F_CLIP] = h->clip,
                                [F_DECAY_FRAC] = h->decay_frac, [F_EMBED_DROP] = h->embed_drop};
    ckpt_out_i64(&o, NFLOATS);
    for (int i = 0; i < NFLOATS; i++) ckpt_out_f64(&o, fl[i]);
    ckpt_out_str(&o, rs->tokenizer);
    ckpt_out_str(&o, rs->data);
    const real *tensors[3] = {m->params, m->m, m->v};    // the moments only with the optimizer state
    for (int i = 0; i < (with_optimizer ? 3 : 1); i++) {
        real *staged;
        ckpt_out_reals(&o, host_view(m, tensors[i], m->lay.n, &staged), m->lay.n);
        free(staged);
    }
    ckpt_out_close(&o);
}

void ckpt_in_open(CkptIn *r, const char *path, const char *hint) {
    r->path = path;
    r->f = fopen(path, "rb");
    if (!r->f) die("cannot open checkpoint %s: %s%s", path, strerror(errno), hint);
    struct stat st;
    if (fstat(fileno(r->f), &st) == 0 && S_ISDIR(st.st_mode))
        die("%s is a directory, not a checkpoint (a run's checkpoint is %s/model.ckpt)", path, path);
    if (fseeko(r->f, 0, SEEK_END) != 0) die("cannot read checkpoint %s: %s", path, strerror(errno));
    r->left = ftello(r->f) - 8;     // the checksum is not part of the hashed bytes
    rewind(r->f);
    hash_init(&r->hash);
}
void ckpt_in_read(CkptIn *r, void *p, size_t n) {
    if ((int64_t)n > r->left || (n && fread(p, 1, n, r->f) != n))
        die("checkpoint %s is truncated or unreadable; it was not written completely (use an earlier one)", r->path);
    r->left -= (int64_t)n;
    hash_bytes(&r->hash, p, n);
}
int64_t ckpt_in_i64(CkptIn *r) { int64_t v; ckpt_in_read(r, &v, 8); return v; }
double ckpt_in_f64(CkptIn *r) { double v; ckpt_in_read(r, &v, 8); return v; }
// A length-prefixed string into dst[cap], its length checked against the rest of the file first.
void ckpt_in_str(CkptIn *r, const char *what, char *dst, size_t cap) {
    int64_t n = ckpt_in_i64(r);
    if (n < 0 || n > r->left)
        die("checkpoint %s is corrupt: the %s is %lld bytes long, but %lld bytes are left in the file", r->path, what,
            (long long)n, (long long)r->left);
    if ((size_t)n >= cap) die("checkpoint %s is corrupt: the %s is %lld bytes long, at most %zu fit", r->path, what, (long long)n, cap - 1);
    ckpt_in_read(r, dst, (size_t)n);
    dst[n] = 0;
}
void ckpt_in_reals(CkptIn *r, real *x, int64_t n) {
    float buf[4096];
    for (int64_t i = 0; i < n; i += 4096) {
        int64_t k = n - i < 4096 ? n - i : 4096;
        ckpt_in_read(r, buf, (size_t)k * 4);
        if (x) for (int64_t j = 0; j < k; j++) x[i + j] = buf[j];
    }
}
void ckpt_in_close(CkptIn *r) {
    uint64_t want = hash_final(&r->hash), got;
    if (fread(&got, 8, 1, r->f) != 1 || got != want)
        die("checkpoint %s is corrupt (checksum mismatch); use an earlier checkpoint", r->path);
    fclose(r->f);
    r->f = NULL;
}

// A checksum only proves the file is what its writer wrote; a buggy or hostile writer can still store a
// schedule of 99 or an lr of NaN, and everything after loading trusts these fields. So each must lie in
// the range the command line accepts for it, or loading dies naming the field.
void ckpt_check_int(const char *path, const char *name, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi)
        die("checkpoint %s is corrupt: %s = %lld is out of range [%lld, %lld]", path, name, (long long)v, (long long)lo, (long long)hi);
}
void ckpt_check_range_int(const char *path, const Range *r, int64_t v) {
    ckpt_check_int(path, r->name, v, (int64_t)r->lo, r->hi >= 0x1p63 ? INT64_MAX : (int64_t)r->hi);
}
void ckpt_check_range_num(const char *path, const Range *r, double v) {
    if (!in_range(r, v)) die("checkpoint %s is corrupt: %s = %g is out of range [%g, %g]", path, r->name, v, r->lo, r->hi);
}

static void check_header(const char *path, const int64_t *v, const double *fl) {
    ckpt_check_range_int(path, &R_VOCAB, v[I_V]);
    ckpt_check_range_int(path, &R_DIM, v[I_D]);
    ckpt_check_range_int(path, &R_LAYERS, v[I_L]);
    ckpt_check_range_int(path, &R_EXPAND, v[I_K]);
    ckpt_check_range_int(path, &R_MLP, v[I_I]);
    ckpt_check_int(path, "tied", v[I_TIE], 0, 1);
    ckpt_check_int(path, "lower-bounds", v[I_LB], 0, 1);
    ckpt_check_int(path, "architecture", v[I_ARCH], 0, NMIXERS - 1);
    ckpt_check_int(path, "mixer layer", v[I_LAYER], 0, NLAYERS - 1);
    ckpt_check_int(path, "blocks", v[I_BLOCK], 0, NBLOCKS - 1);
    if (v[I_D] % v[I_K])
        die("checkpoint %s is corrupt: expand-ratio %lld does not divide dim %lld", path, (long long)v[I_K], (long long)v[I_D]);
    if (!(fl[F_EPS] > 0 && fl[F_EPS] < 1)) die("checkpoint %s is corrupt: norm eps = %g is out of range (0, 1)", path, fl[F_EPS]);
    ckpt_check_range_int(path, &R_BATCH, v[I_B]);
    ckpt_check_range_int(path, &R_SEQ_LEN, v[I_T]);
    ckpt_check_range_int(path, &R_ACCUM, v[I_ACCUM]);
    ckpt_check_int(path, R_STEPS.name, v[I_STEPS], 0, (int64_t)R_STEPS.hi);     // 0: an imported model, no run yet
    ckpt_check_range_int(path, &R_WARMUP, v[I_WARMUP]);
    ckpt_check_int(path, "schedule", v[I_SCHED], 0, NSCHED - 1);
    // wsd needs its fraction, which no other schedule has
    ckpt_check_range_num(path, &R_EMBED_DROP, fl[F_EMBED_DROP]);
    if (v[I_SCHED] == SCHED_WSD) ckpt_check_range_num(path, &R_DECAY_FRAC, fl[F_DECAY_FRAC]);
    else if (fl[F_DECAY_FRAC] != 0)
        die("checkpoint %s is corrupt: decay-fraction = %g with schedule %s (only wsd has one)", path, fl[F_DECAY_FRAC],
            SCHED_NAMES[v[I_SCHED]]);
    ckpt_check_range_int(path, &R_SEED, v[I_SEED]);
    ckpt_check_int(path, "steps done", v[I_STEP], 0, v[I_STEPS]);
    // the training loader hands out accum batches a step, in random mode (no cursor)
    if (v[I_LOADER_BATCHES] != v[I_STEP] * v[I_ACCUM])
        die("checkpoint %s is corrupt: loader batches = %lld, but %lld steps of %lld micro-batches read %lld", path,
            (long long)v[I_LOADER_BATCHES], (long long)v[I_STEP], (long long)v[I_ACCUM], (long long)(v[I_STEP] * v[I_ACCUM]));
    ckpt_check_int(path, "loader cursor", v[I_LOADER_CURSOR], 0, 0);
    ckpt_check_int(path, "loader reserved", v[I_LOADER_RESERVED], 0, 0);
    ckpt_check_int(path, "optimizer flag", v[I_OPT], 0, 1);
    ckpt_check_optimizer(path, fl[F_LR], fl[F_MIN_LR], fl[F_WD], fl[F_BETA1], fl[F_BETA2], fl[F_ADAM_EPS], fl[F_CLIP]);
}

void ckpt_check_optimizer(const char *path, double lr, double min_lr, double wd, double beta1, double beta2,
                          double adam_eps, double clip) {
    ckpt_check_range_num(path, &R_LR, lr);
    ckpt_check_range_num(path, &R_MIN_LR, min_lr);
    ckpt_check_range_num(path, &R_WD, wd);
    ckpt_check_range_num(path, &R_BETA1, beta1);
    ckpt_check_range_num(path, &R_BETA2, beta2);
    ckpt_check_range_num(path, &R_ADAM_EPS, adam_eps);
    ckpt_check_range_num(path, &R_CLIP, clip);
}

void checkpoint_load(const char *path, Model *m, RunState *rs, int want_optimizer) {
    CkptIn r;
    ckpt_in_open(&r, path, " (train a model first, or pass --ckpt PATH)");
    char magic[8];
    ckpt_in_read(&r, magic, 8);
    if (!memcmp(magic, CLS_CKPT_MAGIC, 8))
        die("%s is the checkpoint of a classifier (a Long Range Arena task), not of a language model; 'hgrn2 eval "
            "--ckpt %s' evaluates it", path, path);
    if (memcmp(magic, CKPT_MAGIC, 8)) die("%s is not an hgrn2 checkpoint (bad magic)", path);
    int64_t version = ckpt_in_i64(&r);
    if (version < 1 || version > CKPT_VERSION)
        die("checkpoint %s has format version %lld; this hgrn2 reads versions 1 to %d", path, (long long)version, CKPT_VERSION);
    int64_t nints = ckpt_in_i64(&r);
    const int want_ints = version < 3 ? NINTS_V2 : version < 4 ? NINTS_V3 : NINTS;
    if (nints != want_ints) die("checkpoint %s is corrupt: %lld header integers, expected %d", path, (long long)nints, want_ints);
    int64_t v[NINTS] = {0};     // before version 3, the architecture reads as 0: hgrn2; before 4 the layer and blocks: fla's
    for (int i = 0; i < want_ints; i++) v[i] = ckpt_in_i64(&r);
    int64_t nfl = ckpt_in_i64(&r);
    int want_fl = version == 1 ? NFLOATS_V1 : version < 4 ? NFLOATS_V3 : NFLOATS;
    if (nfl != want_fl) die("checkpoint %s is corrupt: %lld header floats, expected %d", path, (long long)nfl, want_fl);
    double fl[NFLOATS] = {0};
    for (int i = 0; i < want_fl; i++) fl[i] = ckpt_in_f64(&r);
    check_header(path, v, fl);
    memset(rs, 0, sizeof *rs);
    ckpt_in_str(&r, "tokenizer spec", rs->tokenizer, sizeof rs->tokenizer);
    ckpt_in_str(&r, "data directory", rs->data, sizeof rs->data);
    // input and head are left 0, the language model's; the mixer is the architecture
    Config c = {.V = (int)v[I_V], .D = (int)v[I_D], .L = (int)v[I_L], .K = (int)v[I_K], .I = (int)v[I_I],
                .tie = (int)v[I_TIE], .lower_bound = (int)v[I_LB], .eps = fl[F_EPS], .mixer = (MixerKind)v[I_ARCH],
                .layer = (LayerKind)v[I_LAYER], .block = (BlockKind)v[I_BLOCK]};
    const char *bad = config_finish(&c);
    if (bad) die("checkpoint %s is corrupt: invalid configuration (%s)", path, bad);
    rs->c = c;
    rs->h = (Hyper){.B = (int)v[I_B], .T = (int)v[I_T], .accum = (int)v[I_ACCUM], .steps = v[I_STEPS],
                    .warmup = v[I_WARMUP], .sched = (int)v[I_SCHED], .seed = (uint64_t)v[I_SEED], .lr = fl[F_LR],
                    .min_lr = fl[F_MIN_LR], .wd = fl[F_WD], .beta1 = fl[F_BETA1], .beta2 = fl[F_BETA2],
                    .adam_eps = fl[F_ADAM_EPS], .clip = fl[F_CLIP], .decay_frac = fl[F_DECAY_FRAC],
                    .embed_drop = fl[F_EMBED_DROP]};
    rs->step = v[I_STEP];
    rs->loader = (LoaderState){(uint64_t)v[I_LOADER_SEED], (uint64_t)v[I_LOADER_BATCHES], (uint64_t)v[I_LOADER_CURSOR],
                               (uint64_t)v[I_LOADER_RESERVED]};
    int has_opt = (int)v[I_OPT];
    // The sizes the header implies, against the file, before anything is allocated: a flipped bit in a size
    // must read as a damaged file, not as a request for terabytes.
    Layout lay = layout_of(&c);
    if (v[I_N] != lay.n)
        die("checkpoint %s is corrupt: it says %lld parameters, its configuration has %lld", path, (long long)v[I_N], (long long)lay.n);
    int64_t need = lay.n * 4 * (has_opt ? 3 : 1);
    if (r.left != need)
        die("checkpoint %s is %s: its header describes %lld parameters%s, %lld bytes of tensors, but %lld bytes follow "
            "the header", path, r.left < need ? "truncated or corrupt" : "corrupt", (long long)lay.n,
            has_opt ? " with the AdamW moments" : "", (long long)need, (long long)r.left);
    if (want_optimizer && !has_opt)
        die("checkpoint %s holds no optimizer state, so training cannot resume from it (start a new run with --init %s)", path, path);
    model_alloc(m, &c);
    ckpt_in_reals(&r, m->params, m->lay.n);
    if (has_opt && want_optimizer) {
        m->m = xmalloc((size_t)m->lay.n * sizeof(real));
        m->v = xmalloc((size_t)m->lay.n * sizeof(real));
        ckpt_in_reals(&r, m->m, m->lay.n);
        ckpt_in_reals(&r, m->v, m->lay.n);
    } else if (has_opt) {
        ckpt_in_reals(&r, NULL, 2 * m->lay.n);
    }
    ckpt_in_close(&r);
    for (int64_t i = 0; i < m->lay.n; i++)
        if (!isfinite(m->params[i])) die("checkpoint %s holds a non-finite parameter", path);
    if (m->m)
        for (int64_t i = 0; i < m->lay.n; i++)
            if (!isfinite(m->m[i]) || !(m->v[i] >= 0 && isfinite(m->v[i])))
                die("checkpoint %s is corrupt: an AdamW moment is not finite, or a second moment is negative", path);
}
