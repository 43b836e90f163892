// hf.c: safetensors, the tensor file format of Hugging Face checkpoints: an 8-byte little-endian header
// length, a JSON header {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the
// data. Sharded checkpoints add model.safetensors.index.json mapping each tensor name to its shard file.
#include "hf.h"
#include <limits.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

float f16_to_f32(uint16_t h) {
    uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31, m = h & 1023, u;
    if (e == 31) u = s | 0x7f800000 | (m << 13);
    else if (e) u = s | ((e + 112) << 23) | (m << 13);
    else if (!m) u = s;
    else {                                  // subnormal: normalise
        e = 113;
        while (!(m & 1024)) { m <<= 1; e--; }
        u = s | (e << 23) | ((m & 1023) << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}
uint16_t f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t s = (u >> 16) & 0x8000;
    int32_t e = (int32_t)((u >> 23) & 255) - 127 + 15;
    uint32_t m = u & 0x7fffff;
    if (((u >> 23) & 255) == 255) return (uint16_t)(s | 0x7c00 | (m ? 0x200 : 0));
    if (e >= 31) return (uint16_t)(s | 0x7c00);
    if (e <= 0) {                           // subnormal or zero, round to nearest even
        if (e < -10) return (uint16_t)s;
        m |= 0x800000;
        uint32_t shift = (uint32_t)(14 - e), half = 1u << (shift - 1);
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(s | r);
    }
    uint32_t r = (uint32_t)(e << 10) | (m >> 13), rem = m & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) r++;   // may carry into the exponent: still right
    return (uint16_t)(s | r);
}

static int dtype_size(StDtype d) { return (d == ST_F64 || d == ST_I64) ? 8 : (d == ST_F32 || d == ST_I32) ? 4 : 2; }

// A size or offset of a header: a non-negative integer that a double holds exactly (below 2^53), so that
// it converts and compares without rounding.
static int header_u64(const Json *v, uint64_t *out) {
    double x = json_num(v);
    if (json_type(v) != JSON_NUM || !(x >= 0 && x <= 9007199254740992.0) || x != floor(x)) return 0;
    *out = (uint64_t)x;
    return 1;
}

static void add_file(StSet *s, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open %s: %s", path, strerror(errno));
    uint64_t hlen;
    if (fread(&hlen, 8, 1, f) != 1) die("%s is not a safetensors file (shorter than 8 bytes)", path);
    if (fseeko(f, 0, SEEK_END) != 0) die("cannot read %s: %s", path, strerror(errno));
    off_t end = ftello(f);
    if (end < 0) die("cannot read %s: %s", path, strerror(errno));
    uint64_t fsize = (uint64_t)end;
    // the header length is a claim of the file: check it against the file before allocating for it
    if (hlen > 100000000 || hlen > fsize - 8)
        die("%s is not a safetensors file or is truncated (header of %llu bytes in a file of %llu)", path,
            (unsigned long long)hlen, (unsigned long long)fsize);
    char *hdr = xmalloc(hlen + 1);
    if (fseeko(f, 8, SEEK_SET) != 0 || fread(hdr, 1, hlen, f) != hlen) die("reading %s failed", path);
    fclose(f);
    char err[200];
    Json *j = json_parse(hdr, hlen, json_default_limit(hlen), err, sizeof err);
    if (!j) die("%s: the safetensors header: %s", path, err);
    free(hdr);   // the tree holds its own copy of every string
    if (json_type(j) != JSON_OBJ) die("%s: the safetensors header is not a JSON object", path);
    int fi = s->npaths++;
    s->paths = xrealloc(s->paths, (size_t)s->npaths * sizeof(char *));
    s->paths[fi] = xstrdup(path);
    if (json_len(j) > (size_t)(INT_MAX - s->n)) die("%s: the header lists more than %d tensors", path, INT_MAX);
    s->t = xrealloc(s->t, ((size_t)s->n + json_len(j)) * sizeof(StTensor));
    uint64_t data0 = 8 + hlen, data_size = fsize - data0;
    for (size_t i = 0; i < json_len(j); i++) {
        const Json *k = json_key(j, i), *v = json_item(j, i);
        const char *name = json_str(k);
        if (strlen(name) != json_len(k)) die("%s: a tensor name holds a NUL byte (\"%s...\")", path, name);
        if (!strcmp(name, "__metadata__")) continue;
        const Json *dt = json_get(v, "dtype"), *sh = json_get(v, "shape"), *off = json_get(v, "data_offsets");
        if (!dt || json_type(dt) != JSON_STR || !sh || json_type(sh) != JSON_ARR || !off || json_type(off) != JSON_ARR || json_len(off) != 2)
            die("%s: tensor %s has a malformed header entry", path, name);
        StTensor t = {.file = fi, .ndim = (int)json_len(sh), .numel = 1};
        if (!strcmp(json_str(dt), "F32")) t.dtype = ST_F32;
        else if (!strcmp(json_str(dt), "F16")) t.dtype = ST_F16;
        else if (!strcmp(json_str(dt), "BF16")) t.dtype = ST_BF16;
        else if (!strcmp(json_str(dt), "F64")) t.dtype = ST_F64;
        else if (!strcmp(json_str(dt), "I32")) t.dtype = ST_I32;
        else if (!strcmp(json_str(dt), "I64")) t.dtype = ST_I64;
        else die("%s: tensor %s has dtype %s; hgrn2 reads F32, F16, BF16, F64, I32 and I64", path, name, json_str(dt));
        if (json_len(sh) > 8) die("%s: tensor %s has %zu dimensions", path, name, json_len(sh));
        // element and byte counts in checked 64-bit arithmetic: a product that wraps could pass for a
        // small tensor (2^31 x 2^31 x 4 bytes is 0 modulo 2^64)
        uint64_t numel = 1, bytes, b, e;
        int wraps = 0;
        for (size_t d = 0; d < json_len(sh); d++) {
            uint64_t x;
            if (!header_u64(json_item(sh, d), &x)) die("%s: tensor %s has a bad shape", path, name);
            t.shape[d] = (int64_t)x;
            wraps |= __builtin_mul_overflow(numel, x, &numel);
        }
        wraps |= __builtin_mul_overflow(numel, (uint64_t)dtype_size(t.dtype), &bytes);
        if (wraps || bytes > data_size)
            die("%s: tensor %s has a shape of more bytes than the file's %llu bytes of data", path, name, (unsigned long long)data_size);
        if (!header_u64(json_item(off, 0), &b) || !header_u64(json_item(off, 1), &e) || e < b || e > data_size || e - b != bytes)
            die("%s: tensor %s has data offsets [%.0f, %.0f] that disagree with its shape (%llu bytes) or the file size (%llu data bytes)",
                path, name, json_num(json_item(off, 0)), json_num(json_item(off, 1)), (unsigned long long)bytes,
                (unsigned long long)data_size);
        t.numel = (int64_t)numel;
        t.offset = data0 + b;
        t.name = xstrdup(name);
        s->t[s->n++] = t;
    }
    json_free(j);
}

typedef struct { const char *name; int i; } NameAt;

static int cmp_name_at(const void *a, const void *b) { return strcmp(((const NameAt *)a)->name, ((const NameAt *)b)->name); }

// Sorts the tensors by name once, so that looking names up costs log n (an index may name millions), and
// refuses a name stored twice, which would leave it unclear which tensor is meant.
static void index_names(StSet *s) {
    NameAt *v = xmalloc((size_t)(s->n ? s->n : 1) * sizeof *v);
    for (int i = 0; i < s->n; i++) v[i] = (NameAt){ s->t[i].name, i };
    qsort(v, (size_t)s->n, sizeof *v, cmp_name_at);
    s->by_name = xmalloc((size_t)(s->n ? s->n : 1) * sizeof *s->by_name);
    for (int i = 0; i < s->n; i++) {
        s->by_name[i] = v[i].i;
        if (i == 0 || strcmp(v[i - 1].name, v[i].name)) continue;
        const StTensor *a = &s->t[v[i - 1].i], *b = &s->t[v[i].i];
        if (a->file == b->file) die("%s: tensor %s is stored twice", s->paths[b->file], b->name);
        die("%s: tensor %s is stored twice, also in %s", s->paths[b->file], b->name, s->paths[a->file]);
    }
    free(v);
}

StSet *st_open_file(const char *path) {
    StSet *s = xcalloc(1, sizeof *s);
    add_file(s, path);
    index_names(s);
    return s;
}

StSet *st_open_dir(const char *dir) {
    struct stat st;
    char *path = xasprintf("%s/model.safetensors", dir);
    if (stat(path, &st) == 0) {
        StSet *s = st_open_file(path);
        free(path);
        return s;
    }
    free(path);
    path = xasprintf("%s/model.safetensors.index.json", dir);
    if (stat(path, &st) != 0)
        die("%s holds neither model.safetensors nor model.safetensors.index.json", dir);
    size_t len;
    char *text = read_file(path, &len), err[200];
    Json *j = json_parse(text, len, json_default_limit(len), err, sizeof err);
    if (!j) die("%s: %s", path, err);
    free(text);
    const Json *map = json_get(j, "weight_map");
    if (!map || json_type(map) != JSON_OBJ) die("%s has no weight_map object", path);
    StSet *s = xcalloc(1, sizeof *s);
    // open each shard once, in the order of first mention
    for (size_t i = 0; i < json_len(map); i++) {
        const Json *f = json_item(map, i);
        if (json_type(f) != JSON_STR || !json_len(f) || strlen(json_str(f)) != json_len(f) || strchr(json_str(f), '/') ||
            !strcmp(json_str(f), ".") || !strcmp(json_str(f), ".."))
            die("%s: weight_map entry %s is not a file name", path, json_str(json_key(map, i)));
        char *shard = xasprintf("%s/%s", dir, json_str(f));
        int seen = 0;
        for (int p = 0; p < s->npaths && !seen; p++) seen = !strcmp(s->paths[p], shard);
        if (!seen) add_file(s, shard);
        free(shard);
    }
    index_names(s);
    for (size_t i = 0; i < json_len(map); i++)
        if (!st_find(s, json_str(json_key(map, i))))
            die("%s names tensor %s in %s, which does not hold it", path, json_str(json_key(map, i)), json_str(json_item(map, i)));
    json_free(j);
    free(path);
    return s;
}

const StTensor *st_find(const StSet *s, const char *name) {
    int lo = 0, hi = s->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(s->t[s->by_name[mid]].name, name);
        if (!c) return &s->t[s->by_name[mid]];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

void st_read(const StSet *s, const StTensor *t, float *out) {
    const char *path = s->paths[t->file];
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open %s: %s", path, strerror(errno));
    if (fseeko(f, (off_t)t->offset, SEEK_SET) != 0) die("cannot seek in %s: %s", path, strerror(errno));
    int es = dtype_size(t->dtype);
    unsigned char buf[1 << 16];
    for (int64_t i = 0; i < t->numel;) {
        int64_t k = t->numel - i < (int64_t)(sizeof buf) / es ? t->numel - i : (int64_t)(sizeof buf) / es;
        if (fread(buf, (size_t)es, (size_t)k, f) != (size_t)k) die("%s is truncated inside tensor %s", path, t->name);
        for (int64_t j = 0; j < k; j++) {
            const unsigned char *b = buf + j * es;
            uint16_t h;
            switch (t->dtype) {
            case ST_F32: memcpy(&out[i + j], b, 4); break;
            case ST_F64: { double d; memcpy(&d, b, 8); out[i + j] = (float)d; break; }
            case ST_BF16: memcpy(&h, b, 2); out[i + j] = bf16_to_f32(h); break;
            case ST_F16: memcpy(&h, b, 2); out[i + j] = f16_to_f32(h); break;
            case ST_I32: { int32_t v; memcpy(&v, b, 4); out[i + j] = (float)v; break; }
            case ST_I64: { int64_t v; memcpy(&v, b, 8); out[i + j] = (float)v; break; }
            }
        }
        i += k;
    }
    fclose(f);
}

void st_close(StSet *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) free(s->t[i].name);
    for (int i = 0; i < s->npaths; i++) free(s->paths[i]);
    free(s->t); free(s->by_name); free(s->paths); free(s);
}

typedef struct { char *data; size_t n, cap; } TextBuf;

// Appends formatted text to b, growing it as needed: a header is as long as its names make it.
__attribute__((format(printf, 2, 3)))
static void appendf(TextBuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (k < 0) die("formatting a safetensors header failed (%s)", fmt);
    if (b->cap - b->n < (size_t)k + 1) {
        b->cap = 2 * b->cap > b->n + (size_t)k + 1 ? 2 * b->cap : b->n + (size_t)k + 256;
        b->data = xrealloc(b->data, b->cap);
    }
    va_start(ap, fmt);
    vsnprintf(b->data + b->n, b->cap - b->n, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}

// A name as a JSON string, with the escapes it needs.
static void put_json_string(TextBuf *b, const char *s) {
    char *q = json_quote(s, strlen(s));
    if (!q) die("tensor name \"%s\" is not valid UTF-8", s);
    appendf(b, "%s", q);
    free(q);
}

void st_write(const char *path, int n, const char *const *names, const float *const *data,
              const int64_t (*shapes)[8], const int *ndims, StDtype dtype) {
    static const char *DT[] = {"F32", "F16", "BF16", "F64", "I32", "I64"};
    if (dtype == ST_I32 || dtype == ST_I64) die("st_write writes floating-point tensors only");
    int es = dtype_size(dtype);
    // header: tensors in the given order, data packed back to back
    TextBuf h = {0};
    appendf(&h, "{\"__metadata__\":{\"format\":\"pt\"}");
    uint64_t at = 0;
    for (int i = 0; i < n; i++) {
        int64_t numel = 1;
        appendf(&h, ",");
        put_json_string(&h, names[i]);
        appendf(&h, ":{\"dtype\":\"%s\",\"shape\":[", DT[dtype]);
        for (int d = 0; d < ndims[i]; d++) {
            numel *= shapes[i][d];
            appendf(&h, d ? ",%lld" : "%lld", (long long)shapes[i][d]);
        }
        uint64_t bytes = (uint64_t)numel * (uint64_t)es;
        appendf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)at, (unsigned long long)(at + bytes));
        at += bytes;
    }
    appendf(&h, "}");
    while (h.n % 8) appendf(&h, " ");          // keep the data 8-byte aligned
    size_t len = h.n;
    char *tmp = xasprintf("%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) die("cannot create %s: %s", tmp, strerror(errno));
    uint64_t hl = len;
    int ok = fwrite(&hl, 8, 1, f) == 1 && fwrite(h.data, 1, len, f) == len;
    unsigned char buf[1 << 16];
    for (int i = 0; i < n && ok; i++) {
        int64_t numel = 1;
        for (int d = 0; d < ndims[i]; d++) numel *= shapes[i][d];
        for (int64_t j = 0; j < numel && ok;) {
            int64_t k = numel - j < (int64_t)(sizeof buf) / es ? numel - j : (int64_t)(sizeof buf) / es;
            for (int64_t q = 0; q < k; q++) {
                float x = data[i][j + q];
                uint16_t v;
                switch (dtype) {
                case ST_F32: memcpy(buf + q * 4, &x, 4); break;
                case ST_F64: { double d = x; memcpy(buf + q * 8, &d, 8); break; }
                case ST_BF16: v = f32_to_bf16(x); memcpy(buf + q * 2, &v, 2); break;
                case ST_F16: v = f32_to_f16(x); memcpy(buf + q * 2, &v, 2); break;
                default: break;
                }
            }
            ok = fwrite(buf, (size_t)es, (size_t)k, f) == (size_t)k;
            j += k;
        }
    }
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    if (fclose(f) != 0) ok = 0;
    if (!ok) { unlink(tmp); die("writing %s failed: %s", tmp, strerror(errno)); }
    if (rename(tmp, path) != 0) { unlink(tmp); die("renaming %s failed: %s", tmp, strerror(errno)); }
    free(h.data);
    free(tmp);
}
