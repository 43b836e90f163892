// checkpoint.c: the checkpoint format: writing it atomically, reading it back with every field checked.
// A versioned little-endian header, the fp32 parameters, optionally the AdamW moments, and a 64-bit checksum
// of everything before it (docs/checkpoint.md).
#include <math.h>
#include <unistd.h>
#include <fcntl.h>

#include "checkpoint.h"

#define CKPT_MAGIC "HGRN2CKP"
#define CKPT_VERSION 1

void hash_init(Hash *s) { s->h = 0xcbf29ce484222325ull; s->tail = 0; s->ntail = 0; }
static inline void hash_word(Hash *s, uint64_t w) { s->h = (s->h ^ w) * 0x100000001b3ull; s->h ^= s->h >> 29; }
void hash_bytes(Hash *s, const void *p, size_t n) {
    const unsigned char *b = p;
    while (n && s->ntail) { s->tail |= (uint64_t)*b++ << (8 * s->ntail); n--; if (++s->ntail == 8) { hash_word(s, s->tail); s->tail = 0; s->ntail = 0; } }
    for (; n >= 8; n -= 8, b += 8) { uint64_t w; memcpy(&w, b, 8); hash_word(s, w); }
    while (n--) { s->tail |= (uint64_t)*b++ << (8 * s->ntail); s->ntail++; }
}
uint64_t hash_final(const Hash *s) { Hash t = *s; if (t.ntail) hash_word(&t, t.tail ^ ((uint64_t)t.ntail << 56)); return t.h; }

typedef struct { FILE *f; const char *path; Hash hash; } Out;
static void out_write(Out *o, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, o->f) != n)
        die("writing checkpoint %s failed: %s; free disk space or choose another --out", o->path, strerror(errno));
    hash_bytes(&o->hash, p, n);
}
static void out_i64(Out *o, int64_t v) { out_write(o, &v, 8); }
static void out_f64(Out *o, double v) { out_write(o, &v, 8); }
static void out_str(Out *o, const char *s) { int64_t n = (int64_t)strlen(s); out_i64(o, n); out_write(o, s, (size_t)n); }
// Tensors go out as fp32 whatever `real` is.
static void out_reals(Out *o, const real *x, int64_t n) {
    float buf[4096];
    for (int64_t i = 0; i < n; i += 4096) {
        int64_t k = n - i < 4096 ? n - i : 4096;
        for (int64_t j = 0; j < k; j++) buf[j] = (float)x[i + j];
        out_write(o, buf, (size_t)k * 4);
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

void checkpoint_save(const char *path, const Model *m, const RunState *rs, int with_optimizer) {
    char *tmp = xasprintf("%s.tmp", path);
    Out o = {fopen(tmp, "wb"), tmp, {0}};
    if (!o.f) die("cannot create checkpoint %s: %s", tmp, strerror(errno));
    hash_init(&o.hash);
    const Config *c = &m->c;
    const Hyper *h = &rs->h;
    out_write(&o, CKPT_MAGIC, 8);
    out_i64(&o, CKPT_VERSION);
    int64_t ints[] = {c->V, c->D, c->L, c->K, c->I, c->tie, c->lower_bound,
                      h->B, h->T, h->accum, h->steps, h->warmup, h->sched, (int64_t)h->seed, rs->step,
                      (int64_t)rs->loader.seed, (int64_t)rs->loader.batches, (int64_t)rs->loader.cursor,
                      (int64_t)rs->loader.reserved, m->lay.n, with_optimizer};
    out_i64(&o, (int64_t)(sizeof ints / sizeof ints[0]));
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) out_i64(&o, ints[i]);
    double fl[] = {c->eps, h->lr, h->min_lr, h->wd, h->beta1, h->beta2, h->adam_eps, h->clip};
    out_i64(&o, (int64_t)(sizeof fl / sizeof fl[0]));
    for (size_t i = 0; i < sizeof fl / sizeof fl[0]; i++) out_f64(&o, fl[i]);
    out_str(&o, rs->tokenizer);
    out_str(&o, rs->data);
    const real *tensors[3] = {m->params, m->m, m->v};    // the moments only with the optimizer state
    for (int i = 0; i < (with_optimizer ? 3 : 1); i++) {
        real *staged;
        out_reals(&o, host_view(m, tensors[i], m->lay.n, &staged), m->lay.n);
        free(staged);
    }
    uint64_t sum = hash_final(&o.hash);
    if (fwrite(&sum, 8, 1, o.f) != 1 || fflush(o.f) != 0 || fsync(fileno(o.f)) != 0) {
        int e = errno;
        fclose(o.f); unlink(tmp);
        die("writing checkpoint %s failed: %s; the previous checkpoint is untouched", tmp, strerror(e));
    }
    if (fclose(o.f) != 0) { unlink(tmp); die("closing checkpoint %s failed: %s", tmp, strerror(errno)); }
    if (rename(tmp, path) != 0) { int e = errno; unlink(tmp); die("renaming %s to %s failed: %s", tmp, path, strerror(e)); }
    fsync_dir_of(path);
    free(tmp);
}

typedef struct { FILE *f; const char *path; Hash hash; int64_t left; } In;
static void in_read(In *r, void *p, size_t n) {
    if ((int64_t)n > r->left || (n && fread(p, 1, n, r->f) != n))
        die("checkpoint %s is truncated or unreadable; it was not written completely (use an earlier one)", r->path);
    r->left -= (int64_t)n;
    hash_bytes(&r->hash, p, n);
}
static int64_t in_i64(In *r) { int64_t v; in_read(r, &v, 8); return v; }
static double in_f64(In *r) { double v; in_read(r, &v, 8); return v; }
static void in_str(In *r, char *dst, size_t cap) {
    int64_t n = in_i64(r);
    if (n < 0 || (size_t)n >= cap) die("checkpoint %s is corrupt: a string of %lld bytes", r->path, (long long)n);
    in_read(r, dst, (size_t)n);
    dst[n] = 0;
}
static void in_reals(In *r, real *x, int64_t n) {
    float buf[4096];
    for (int64_t i = 0; i < n; i += 4096) {
        int64_t k = n - i < 4096 ? n - i : 4096;
        in_read(r, buf, (size_t)k * 4);
        if (x) for (int64_t j = 0; j < k; j++) x[i + j] = buf[j];
    }
}

void checkpoint_load(const char *path, Model *m, RunState *rs, int want_optimizer) {
    In r = {fopen(path, "rb"), path, {0}, 0};
    if (!r.f) die("cannot open checkpoint %s: %s (train a model first, or pass --ckpt PATH)", path, strerror(errno));
    if (fseeko(r.f, 0, SEEK_END) != 0) die("cannot read checkpoint %s: %s", path, strerror(errno));
    r.left = ftello(r.f) - 8;     // the checksum is not part of the hashed bytes
    rewind(r.f);
    hash_init(&r.hash);
    char magic[8];
    in_read(&r, magic, 8);
    if (memcmp(magic, CKPT_MAGIC, 8)) die("%s is not an hgrn2 checkpoint (bad magic)", path);
    int64_t version = in_i64(&r);
    if (version != CKPT_VERSION)
        die("checkpoint %s has format version %lld; this hgrn2 reads version %d", path, (long long)version, CKPT_VERSION);
    int64_t nints = in_i64(&r);
    if (nints != 21) die("checkpoint %s is corrupt: %lld header integers, expected 21", path, (long long)nints);
    int64_t v[21];
    for (int i = 0; i < 21; i++) v[i] = in_i64(&r);
    int64_t nfl = in_i64(&r);
    if (nfl != 8) die("checkpoint %s is corrupt: %lld header floats, expected 8", path, (long long)nfl);
    double fl[8];
    for (int i = 0; i < 8; i++) fl[i] = in_f64(&r);
    memset(rs, 0, sizeof *rs);
    in_str(&r, rs->tokenizer, sizeof rs->tokenizer);
    in_str(&r, rs->data, sizeof rs->data);
    // input, mixer and head are left 0, the language model: version 1 does not store them
    Config c = {.V = (int)v[0], .D = (int)v[1], .L = (int)v[2], .K = (int)v[3], .I = (int)v[4],
                .tie = (int)v[5], .lower_bound = (int)v[6], .eps = fl[0]};
    for (int i = 0; i < 7; i++)
        if (v[i] < 0 || v[i] > (1 << 24)) die("checkpoint %s is corrupt: configuration value %lld", path, (long long)v[i]);
    // I = 0 is a model without MLPs (the parameter count below must then agree); V, D, L and K must be positive
    const char *bad = config_finish(&c);
    if (bad || c.tie > 1 || c.lower_bound > 1 || !(c.eps > 0 && c.eps < 1))
        die("checkpoint %s is corrupt: invalid configuration (%s)", path, bad ? bad : "sizes");
    rs->c = c;
    rs->h = (Hyper){.B = (int)v[7], .T = (int)v[8], .accum = (int)v[9], .steps = v[10], .warmup = v[11],
                    .sched = (int)v[12], .seed = (uint64_t)v[13], .lr = fl[1], .min_lr = fl[2], .wd = fl[3],
                    .beta1 = fl[4], .beta2 = fl[5], .adam_eps = fl[6], .clip = fl[7]};
    rs->step = v[14];
    rs->loader = (LoaderState){(uint64_t)v[15], (uint64_t)v[16], (uint64_t)v[17], (uint64_t)v[18]};
    int has_opt = (int)v[20];
    model_alloc(m, &c);
    if (v[19] != m->lay.n) die("checkpoint %s is corrupt: %lld parameters for a model of %lld", path, (long long)v[19], (long long)m->lay.n);
    int64_t need = m->lay.n * 4 * (has_opt ? 3 : 1);
    if (r.left != need)
        die("checkpoint %s has %lld payload bytes, expected %lld: it is truncated or corrupt", path, (long long)r.left, (long long)need);
    if (want_optimizer && !has_opt)
        die("checkpoint %s holds no optimizer state, so training cannot resume from it (start a new run with --init %s)", path, path);
    in_reals(&r, m->params, m->lay.n);
    if (has_opt && want_optimizer) {
        m->m = xmalloc((size_t)m->lay.n * sizeof(real));
        m->v = xmalloc((size_t)m->lay.n * sizeof(real));
        in_reals(&r, m->m, m->lay.n);
        in_reals(&r, m->v, m->lay.n);
    } else if (has_opt) {
        in_reals(&r, NULL, 2 * m->lay.n);
    }
    uint64_t want = hash_final(&r.hash), got;
    if (fread(&got, 8, 1, r.f) != 1 || got != want)
        die("checkpoint %s is corrupt (checksum mismatch); use an earlier checkpoint", path);
    fclose(r.f);
    for (int64_t i = 0; i < m->lay.n; i++)
        if (!isfinite(m->params[i])) die("checkpoint %s holds a non-finite parameter", path);
}
