// data.c: token shards (writer and seekable reader), the prefetching loader, and `hgrn2 prepare`.
// The shard format, the data directory layout and the policies of prepare and the loader: docs/shards.md.
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "data.h"
#include "tokenizer.h"

#define SHARD_ZSTD_LEVEL 3
#define SHARD_FRAME_TOKENS_MAX (1u << 24)   // bounds what a corrupt header can make a reader allocate

// ----------------------------------------------------------------------------------------------------------
// Files to remove if the process exits before finishing them: the .tmp of every open shard writer and the
// .part files of a running prepare. die() calls exit(), which runs this list, so a failure anywhere (any
// thread) leaves nothing half-written under a name that looks finished.

static pthread_mutex_t cleanup_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t cleanup_once = PTHREAD_ONCE_INIT;
static char **cleanup_paths;
static size_t cleanup_n, cleanup_cap;
static int cleanup_exiting;

static void cleanup_at_exit(void) {
    pthread_mutex_lock(&cleanup_mu);
    cleanup_exiting = 1;
    for (size_t i = 0; i < cleanup_n; i++) unlink(cleanup_paths[i]);
    pthread_mutex_unlock(&cleanup_mu);
}
static void cleanup_register(void) { atexit(cleanup_at_exit); }

static void cleanup_add(const char *path) {
    pthread_once(&cleanup_once, cleanup_register);
    pthread_mutex_lock(&cleanup_mu);
    // Another thread is already exiting: creating a file now could outlive the cleanup, so wait for the end.
    if (cleanup_exiting) {
        pthread_mutex_unlock(&cleanup_mu);
        for (;;) pause();
    }
    if (cleanup_n == cleanup_cap) {
        cleanup_cap = cleanup_cap ? 2 * cleanup_cap : 16;
        cleanup_paths = xrealloc(cleanup_paths, cleanup_cap * sizeof *cleanup_paths);
    }
    cleanup_paths[cleanup_n++] = xstrdup(path);
    pthread_mutex_unlock(&cleanup_mu);
}

static void cleanup_remove(const char *path) {
    pthread_mutex_lock(&cleanup_mu);
    for (size_t i = 0; i < cleanup_n; i++)
        if (!strcmp(cleanup_paths[i], path)) {
            free(cleanup_paths[i]);
            cleanup_paths[i] = cleanup_paths[--cleanup_n];
            break;
        }
    pthread_mutex_unlock(&cleanup_mu);
}

// ----------------------------------------------------------------------------------------------------------
// Shard layout: little-endian fields, written byte by byte so the format does not depend on the host.

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_u32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

void shard_header_encode(const ShardHeader *h, uint8_t out[SHARD_HEADER_BYTES]) {
    memcpy(out, SHARD_MAGIC, 8);
    put_u32(out + 8, h->version);
    put_u32(out + 12, h->token_bytes);
    put_u32(out + 16, h->vocab_size);
    put_u32(out + 20, h->frame_tokens);
    put_u64(out + 24, h->ntokens);
    put_u64(out + 32, h->nframes);
    put_u64(out + 40, h->index_offset);
    put_u32(out + 48, h->name_len);
    put_u32(out + 52, 0);
    put_u64(out + 56, h->meta_hash);
}

int shard_header_decode(const uint8_t in[SHARD_HEADER_BYTES], uint64_t file_size, ShardHeader *h, char *err, size_t errlen) {
    if (memcmp(in, SHARD_MAGIC, 8) != 0) {
        char found[40];
        for (int i = 0; i < 8; i++) snprintf(found + 2 * i, 3, "%02x", in[i]);
        snprintf(err, errlen, "not a shard: bad magic (expected \"%s\", found bytes %s)", SHARD_MAGIC, found);
        return -1;
    }
    h->version = get_u32(in + 8);
    h->token_bytes = get_u32(in + 12);
    h->vocab_size = get_u32(in + 16);
    h->frame_tokens = get_u32(in + 20);
    h->ntokens = get_u64(in + 24);
    h->nframes = get_u64(in + 32);
    h->index_offset = get_u64(in + 40);
    h->name_len = get_u32(in + 48);
    h->meta_hash = get_u64(in + 56);
    uint32_t reserved = get_u32(in + 52);
    if (h->version != SHARD_VERSION) {
        snprintf(err, errlen, "unsupported shard version: expected %d, found %u (re-run hgrn2 prepare with this build)",
                 SHARD_VERSION, h->version);
        return -1;
    }
    if (reserved != 0) { snprintf(err, errlen, "corrupted header: reserved field is %u, expected 0", reserved); return -1; }
    if (h->vocab_size == 0) { snprintf(err, errlen, "corrupted header: vocabulary size 0"); return -1; }
    if (!(h->token_bytes == 4 || (h->token_bytes == 2 && h->vocab_size <= 65536))) {
        snprintf(err, errlen, "corrupted header: token width %u bytes for a vocabulary of %u", h->token_bytes, h->vocab_size);
        return -1;
    }
    if (h->frame_tokens == 0 || h->frame_tokens > SHARD_FRAME_TOKENS_MAX) {
        snprintf(err, errlen, "corrupted header: %u tokens per frame (expected 1 to %u)", h->frame_tokens, SHARD_FRAME_TOKENS_MAX);
        return -1;
    }
    if (h->name_len > SHARD_NAME_MAX) {
        snprintf(err, errlen, "corrupted header: tokenizer name of %u bytes (at most %d)", h->name_len, SHARD_NAME_MAX);
        return -1;
    }
    uint64_t want_frames = h->ntokens / h->frame_tokens + (h->ntokens % h->frame_tokens != 0);
    if (h->nframes != want_frames) {
        snprintf(err, errlen, "corrupted header: %llu frames for %llu tokens of %u per frame (expected %llu frames)",
                 (unsigned long long)h->nframes, (unsigned long long)h->ntokens, h->frame_tokens,
                 (unsigned long long)want_frames);
        return -1;
    }
    uint64_t data_start = SHARD_HEADER_BYTES + (uint64_t)h->name_len;
    // The index is the file's tail: its offset and the frame count fix the file size exactly.
    if (file_size < data_start || h->index_offset < data_start || h->index_offset > file_size ||
        h->nframes > (file_size - h->index_offset) / SHARD_INDEX_ENTRY_BYTES ||
        file_size - h->index_offset != h->nframes * SHARD_INDEX_ENTRY_BYTES) {
        snprintf(err, errlen, "file is %llu bytes but its header says %llu (frame index at byte %llu, %llu frames): "
                 "the file is truncated or corrupted",
                 (unsigned long long)file_size,
                 (unsigned long long)(h->index_offset + h->nframes * SHARD_INDEX_ENTRY_BYTES),
                 (unsigned long long)h->index_offset, (unsigned long long)h->nframes);
        return -1;
    }
    return 0;
}

void shard_index_encode(uint64_t offset, uint64_t csize, uint8_t out[SHARD_INDEX_ENTRY_BYTES]) {
    put_u64(out, offset);
    put_u64(out + 8, csize);
}
void shard_index_decode(const uint8_t in[SHARD_INDEX_ENTRY_BYTES], uint64_t *offset, uint64_t *csize) {
    *offset = get_u64(in);
    *csize = get_u64(in + 8);
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001B3ull;
    return h;
}
uint64_t shard_meta_hash(const uint8_t header[SHARD_HEADER_BYTES], const char *name, size_t name_len,
                         const uint8_t *index, uint64_t nframes) {
    uint64_t h = 0xCBF29CE484222325ull;
    h = fnv1a(h, header, 56);
    h = fnv1a(h, name, name_len);
    return fnv1a(h, index, (size_t)(nframes * SHARD_INDEX_ENTRY_BYTES));
}

static uint32_t frame_tokens_knob;   // 0: SHARD_FRAME_TOKENS
void shard_set_frame_tokens(uint32_t n) {
    if (n > SHARD_FRAME_TOKENS_MAX) die("shard_set_frame_tokens: %u tokens per frame is above the limit %u", n, SHARD_FRAME_TOKENS_MAX);
    frame_tokens_knob = n;
}

// ----------------------------------------------------------------------------------------------------------
// Shard writer: tokens are buffered for a batch of frames (one per core); a full batch goes to helper threads
// that compress its frames in parallel while the caller fills the next batch, and is appended in order when
// that one is full too (compression is most of prepare's work for small vocabularies). The index goes at the
// end; the header, written first as a placeholder, is rewritten once the counts are known.

#define WRITER_BATCH_MAX 16

struct ShardWriter {
    char *path, *tmp;
    FILE *f;
    ShardHeader h;
    char *name;
    int batch;                          // frames compressed together: one per core, at most WRITER_BATCH_MAX
    uint8_t *raw, *craw;                // encoded tokens of up to `batch` frames: being filled, being compressed
    size_t nraw, ncraw;                 // tokens in each
    ZSTD_CCtx *cctx[WRITER_BATCH_MAX];  // one per frame of a batch
    uint8_t *cbuf[WRITER_BATCH_MAX];
    size_t csize[WRITER_BATCH_MAX], ccap;
    uint64_t pos;                       // file offset of the next frame
    uint8_t *index;
    uint64_t index_cap;                 // entries
    // helper threads (started at the first batch); they block on a condition variable between batches
    pthread_t helpers[WRITER_BATCH_MAX];
    int nhelpers, quit, nf, next, finished;
    uint64_t round;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
};

static void fwrite_or_die(const void *p, size_t n, FILE *f, const char *path) {
    if (n && fwrite(p, 1, n, f) != n) die("writing %s failed: %s", path, strerror(errno));
}

ShardWriter *shard_writer_open(const char *path, uint32_t vocab_size, const char *tokenizer_name) {
    size_t name_len = strlen(tokenizer_name);
    if (name_len > SHARD_NAME_MAX) die("%s: tokenizer name of %zu bytes is longer than %d", path, name_len, SHARD_NAME_MAX);
    if (vocab_size == 0) die("%s: vocabulary size 0", path);
    ShardWriter *w = xcalloc(1, sizeof *w);
    w->path = xstrdup(path);
    w->tmp = xasprintf("%s.tmp", path);
    w->name = xstrdup(tokenizer_name);
    w->h.version = SHARD_VERSION;
    w->h.vocab_size = vocab_size;
    w->h.token_bytes = vocab_size <= 65536 ? 2 : 4;
    w->h.frame_tokens = frame_tokens_knob ? frame_tokens_knob : SHARD_FRAME_TOKENS;
    w->h.name_len = (uint32_t)name_len;
    long procs = sysconf(_SC_NPROCESSORS_ONLN);
    w->batch = procs < 1 ? 1 : procs > WRITER_BATCH_MAX ? WRITER_BATCH_MAX : (int)procs;
    size_t frame_bytes = (size_t)w->h.frame_tokens * w->h.token_bytes;
    w->raw = xmalloc((size_t)w->batch * frame_bytes);
    w->craw = xmalloc((size_t)w->batch * frame_bytes);
    w->ccap = ZSTD_compressBound(frame_bytes);
    for (int k = 0; k < w->batch; k++) {
        w->cbuf[k] = xmalloc(w->ccap);
        w->cctx[k] = ZSTD_createCCtx();
        if (!w->cctx[k]) die("%s: cannot create a zstd compression context (out of memory)", path);
        size_t r = ZSTD_CCtx_setParameter(w->cctx[k], ZSTD_c_compressionLevel, SHARD_ZSTD_LEVEL);
        if (!ZSTD_isError(r)) r = ZSTD_CCtx_setParameter(w->cctx[k], ZSTD_c_checksumFlag, 1);
        if (!ZSTD_isError(r)) r = ZSTD_CCtx_setParameter(w->cctx[k], ZSTD_c_contentSizeFlag, 1);
        if (ZSTD_isError(r)) die("%s: zstd: %s", path, ZSTD_getErrorName(r));
    }
    if (pthread_mutex_init(&w->mu, NULL) || pthread_cond_init(&w->go, NULL) || pthread_cond_init(&w->done, NULL))
        die("%s: cannot create a mutex", path);
    cleanup_add(w->tmp);
    w->f = fopen(w->tmp, "wb");
    if (!w->f) die("cannot create %s: %s", w->tmp, strerror(errno));
    uint8_t hdr[SHARD_HEADER_BYTES] = {0};
    fwrite_or_die(hdr, sizeof hdr, w->f, w->tmp);
    fwrite_or_die(w->name, name_len, w->f, w->tmp);
    w->pos = SHARD_HEADER_BYTES + name_len;
    return w;
}

// Takes frames of the batch being compressed until none is left; called with w->mu held.
static void writer_compress_frames(ShardWriter *w) {
    size_t F = w->h.frame_tokens, tb = w->h.token_bytes;
    while (w->next < w->nf) {
        int k = w->next++;
        pthread_mutex_unlock(&w->mu);
        size_t first = (size_t)k * F, count = w->ncraw - first < F ? w->ncraw - first : F;
        w->csize[k] = ZSTD_compress2(w->cctx[k], w->cbuf[k], w->ccap, w->craw + first * tb, count * tb);
        pthread_mutex_lock(&w->mu);
        if (++w->finished == w->nf) pthread_cond_signal(&w->done);
    }
}

static void *writer_helper(void *arg) {
    ShardWriter *w = arg;
    uint64_t seen = 0;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (w->round == seen && !w->quit) pthread_cond_wait(&w->go, &w->mu);
        if (w->quit) break;
        seen = w->round;
        writer_compress_frames(w);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

// Waits for the batch being compressed and appends its frames.
static void writer_collect(ShardWriter *w) {
    pthread_mutex_lock(&w->mu);
    while (w->finished < w->nf) pthread_cond_wait(&w->done, &w->mu);
    int nf = w->nf;
    w->nf = 0;
    pthread_mutex_unlock(&w->mu);
    for (int k = 0; k < nf; k++) {
        size_t c = w->csize[k];
        if (ZSTD_isError(c)) die("%s: zstd compression of frame %llu failed: %s", w->tmp, (unsigned long long)w->h.nframes, ZSTD_getErrorName(c));
        fwrite_or_die(w->cbuf[k], c, w->f, w->tmp);
        if (w->h.nframes == w->index_cap) {
            w->index_cap = w->index_cap ? 2 * w->index_cap : 64;
            w->index = xrealloc(w->index, (size_t)w->index_cap * SHARD_INDEX_ENTRY_BYTES);
        }
        shard_index_encode(w->pos, c, w->index + w->h.nframes * SHARD_INDEX_ENTRY_BYTES);
        w->h.nframes++;
        w->pos += c;
    }
}

// Appends the previous batch, then hands the buffered tokens to the helpers as the next one. Only the last
// frame of a shard is partial: batches are whole frames except at shard_writer_close.
static void writer_flush(ShardWriter *w) {
    writer_collect(w);
    if (!w->nraw) return;
    for (; w->nhelpers < w->batch; w->nhelpers++) {
        int e = pthread_create(&w->helpers[w->nhelpers], NULL, writer_helper, w);
        if (e) die("%s: cannot start a compression thread: %s", w->path, strerror(e));
    }
    uint8_t *t = w->craw;
    w->craw = w->raw;
    w->raw = t;
    w->ncraw = w->nraw;
    w->nraw = 0;
    pthread_mutex_lock(&w->mu);
    w->nf = (int)((w->ncraw + w->h.frame_tokens - 1) / w->h.frame_tokens);
    w->next = w->finished = 0;
    w->round++;
    pthread_cond_broadcast(&w->go);
    pthread_mutex_unlock(&w->mu);
}

void shard_writer_append(ShardWriter *w, const int32_t *ids, size_t n) {
    uint32_t V = w->h.vocab_size;
    size_t cap = (size_t)w->batch * w->h.frame_tokens;
    size_t i = 0;
    while (i < n) {
        size_t take = cap - w->nraw;
        if (take > n - i) take = n - i;
        uint8_t *dst = w->raw + w->nraw * w->h.token_bytes;
        for (size_t k = 0; k < take; k++) {
            int32_t id = ids[i + k];
            if (id < 0 || (uint32_t)id >= V)
                die("%s: token id %d at position %llu is outside the vocabulary [0, %u)", w->path, id,
                    (unsigned long long)(w->h.ntokens + k), V);
            if (w->h.token_bytes == 2) {
                dst[2 * k] = (uint8_t)id;
                dst[2 * k + 1] = (uint8_t)(id >> 8);
            } else
                put_u32(dst + 4 * k, (uint32_t)id);
        }
        w->nraw += take;
        w->h.ntokens += take;
        i += take;
        if (w->nraw == cap) writer_flush(w);
    }
}

// fsync of the directory makes the rename itself durable; some filesystems refuse it, which is harmless.
static void fsync_dir_of(const char *path) {
    char *d = xstrdup(path);
    char *slash = strrchr(d, '/');
    const char *dir = ".";
    if (slash) {
        if (slash == d) slash[1] = 0;
        else *slash = 0;
        dir = d;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS) die("fsync of directory %s failed: %s", dir, strerror(errno));
        close(fd);
    }
    free(d);
}

static void writer_free(ShardWriter *w) {
    pthread_mutex_lock(&w->mu);
    w->quit = 1;
    pthread_cond_broadcast(&w->go);
    pthread_mutex_unlock(&w->mu);
    for (int k = 0; k < w->nhelpers; k++) pthread_join(w->helpers[k], NULL);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->go);
    pthread_cond_destroy(&w->done);
    for (int k = 0; k < w->batch; k++) {
        ZSTD_freeCCtx(w->cctx[k]);
        free(w->cbuf[k]);
    }
    free(w->path);
    free(w->tmp);
    free(w->name);
    free(w->raw);
    free(w->craw);
    free(w->index);
    free(w);
}

void shard_writer_close(ShardWriter *w) {
    writer_flush(w);
    writer_collect(w);
    w->h.index_offset = w->pos;
    fwrite_or_die(w->index, (size_t)(w->h.nframes * SHARD_INDEX_ENTRY_BYTES), w->f, w->tmp);
    uint8_t hdr[SHARD_HEADER_BYTES];
    shard_header_encode(&w->h, hdr);
    w->h.meta_hash = shard_meta_hash(hdr, w->name, w->h.name_len, w->index, w->h.nframes);
    shard_header_encode(&w->h, hdr);
    if (fseeko(w->f, 0, SEEK_SET) != 0) die("seeking in %s failed: %s", w->tmp, strerror(errno));
    fwrite_or_die(hdr, sizeof hdr, w->f, w->tmp);
    if (fflush(w->f) != 0) die("writing %s failed: %s", w->tmp, strerror(errno));
    if (fsync(fileno(w->f)) != 0) die("fsync of %s failed: %s", w->tmp, strerror(errno));
    if (fclose(w->f) != 0) die("closing %s failed: %s", w->tmp, strerror(errno));
    w->f = NULL;
    if (rename(w->tmp, w->path) != 0) die("renaming %s to %s failed: %s", w->tmp, w->path, strerror(errno));
    cleanup_remove(w->tmp);
    fsync_dir_of(w->path);
    writer_free(w);
}

void shard_writer_abort(ShardWriter *w) {
    if (w->f) fclose(w->f);
    unlink(w->tmp);
    cleanup_remove(w->tmp);
    writer_free(w);
}

// ----------------------------------------------------------------------------------------------------------
// Shard reader: the header and index are checked at open; a frame is checked (size, checksum, token range)
// when it is first decompressed, and the last one stays cached for the reads that follow.

struct Shard {
    char *path;
    int fd;
    ShardHeader h;
    char *name;
    uint64_t *off, *csize;  // per frame
    uint8_t *cbuf;
    size_t ccap;
    uint8_t *raw;
    int32_t *frame;         // the cached frame's tokens
    uint64_t cached;        // its index, or UINT64_MAX
    ZSTD_DCtx *dctx;
};

static void pread_or_die(int fd, void *buf, size_t n, uint64_t off, const char *path) {
    uint8_t *p = buf;
    while (n) {
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0) {
            if (errno == EINTR) continue;
            die("reading %s at byte %llu failed: %s", path, (unsigned long long)off, strerror(errno));
        }
        if (r == 0) die("%s: unexpected end of file at byte %llu (the file is truncated)", path, (unsigned long long)off);
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
}

Shard *shard_open(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("cannot open shard %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) die("cannot stat %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) die("%s is not a regular file", path);
    uint64_t size = (uint64_t)st.st_size;
    if (size < SHARD_HEADER_BYTES)
        die("%s: truncated header: the file is %llu bytes, a shard header is %d", path, (unsigned long long)size, SHARD_HEADER_BYTES);
    uint8_t hdr[SHARD_HEADER_BYTES];
    pread_or_die(fd, hdr, sizeof hdr, 0, path);
    Shard *s = xcalloc(1, sizeof *s);
    char err[400];
    if (shard_header_decode(hdr, size, &s->h, err, sizeof err) != 0) die("%s: %s", path, err);
    s->path = xstrdup(path);
    s->fd = fd;
    s->name = xmalloc(s->h.name_len + 1);
    pread_or_die(fd, s->name, s->h.name_len, SHARD_HEADER_BYTES, path);
    s->name[s->h.name_len] = 0;
    if (strlen(s->name) != s->h.name_len) die("%s: corrupted header: the tokenizer name holds a NUL byte", path);
    size_t index_bytes = (size_t)(s->h.nframes * SHARD_INDEX_ENTRY_BYTES);
    uint8_t *index = xmalloc(index_bytes);
    pread_or_die(fd, index, index_bytes, s->h.index_offset, path);
    s->off = xmalloc((size_t)s->h.nframes * sizeof *s->off);
    s->csize = xmalloc((size_t)s->h.nframes * sizeof *s->csize);
    // Frames lie back to back between the name and the index; anything else is a broken index.
    uint64_t expect = SHARD_HEADER_BYTES + (uint64_t)s->h.name_len;
    for (uint64_t i = 0; i < s->h.nframes; i++) {
        shard_index_decode(index + i * SHARD_INDEX_ENTRY_BYTES, &s->off[i], &s->csize[i]);
        if (s->off[i] != expect)
            die("%s: corrupted frame index: frame %llu starts at byte %llu, expected %llu", path, (unsigned long long)i,
                (unsigned long long)s->off[i], (unsigned long long)expect);
        if (s->csize[i] == 0 || s->csize[i] > s->h.index_offset - s->off[i])
            die("%s: corrupted frame index: frame %llu of %llu bytes at byte %llu runs past the frame data, which ends at "
                "byte %llu (file size %llu)", path, (unsigned long long)i, (unsigned long long)s->csize[i],
                (unsigned long long)s->off[i], (unsigned long long)s->h.index_offset, (unsigned long long)size);
        expect = s->off[i] + s->csize[i];
    }
    if (expect != s->h.index_offset)
        die("%s: corrupted frame index: the frames end at byte %llu but the index starts at byte %llu", path,
            (unsigned long long)expect, (unsigned long long)s->h.index_offset);
    uint64_t hash = shard_meta_hash(hdr, s->name, s->h.name_len, index, s->h.nframes);
    free(index);
    if (hash != s->h.meta_hash)
        die("%s: header checksum mismatch (stored %016llx, computed %016llx): the header or frame index is corrupted",
            path, (unsigned long long)s->h.meta_hash, (unsigned long long)hash);
    s->cached = UINT64_MAX;
    return s;
}

uint64_t shard_ntokens(const Shard *s) { return s->h.ntokens; }
uint32_t shard_vocab(const Shard *s) { return s->h.vocab_size; }
const char *shard_tokenizer(const Shard *s) { return s->name; }

static void shard_load_frame(Shard *s, uint64_t f) {
    uint64_t F = s->h.frame_tokens, first = f * F;
    uint64_t count = s->h.ntokens - first < F ? s->h.ntokens - first : F;
    size_t bytes = (size_t)count * s->h.token_bytes;
    size_t csize = (size_t)s->csize[f];
    unsigned long long fr = (unsigned long long)f;
    if (!s->frame) {
        s->raw = xmalloc((size_t)F * s->h.token_bytes);
        s->frame = xmalloc((size_t)F * sizeof(int32_t));
        s->dctx = ZSTD_createDCtx();
        if (!s->dctx) die("%s: cannot create a zstd decompression context (out of memory)", s->path);
    }
    if (csize > s->ccap) {
        s->ccap = csize;
        s->cbuf = xrealloc(s->cbuf, csize);
    }
    s->cached = UINT64_MAX;
    pread_or_die(s->fd, s->cbuf, csize, s->off[f], s->path);
    // A frame must be exactly one zstd frame that declares our size and carries a content checksum
    // (bit 2 of the frame header descriptor, RFC 8878), or a flipped byte could go unnoticed.
    unsigned long long content = ZSTD_getFrameContentSize(s->cbuf, csize);
    if (content == ZSTD_CONTENTSIZE_ERROR || csize < 5 || get_u32(s->cbuf) != ZSTD_MAGICNUMBER)
        die("%s: frame %llu (byte %llu): not a zstd frame; the shard is corrupted", s->path, fr, (unsigned long long)s->off[f]);
    if (content != bytes)
        die("%s: frame %llu: declares %llu decompressed bytes, expected %zu; the shard is corrupted", s->path, fr,
            content == ZSTD_CONTENTSIZE_UNKNOWN ? 0ull : content, bytes);
    if (!(s->cbuf[4] & 4)) die("%s: frame %llu has no content checksum; the shard is corrupted", s->path, fr);
    size_t fsz = ZSTD_findFrameCompressedSize(s->cbuf, csize);
    if (ZSTD_isError(fsz) || fsz != csize)
        die("%s: frame %llu: %s; the shard is corrupted", s->path, fr,
            ZSTD_isError(fsz) ? ZSTD_getErrorName(fsz) : "trailing bytes after the zstd frame");
    size_t r = ZSTD_decompressDCtx(s->dctx, s->raw, bytes, s->cbuf, csize);
    if (ZSTD_isError(r)) die("%s: frame %llu (byte %llu): zstd: %s; the shard is corrupted", s->path, fr,
                             (unsigned long long)s->off[f], ZSTD_getErrorName(r));
    if (r != bytes) die("%s: frame %llu: decompressed to %zu bytes, expected %zu; the shard is corrupted", s->path, fr, r, bytes);
    uint32_t V = s->h.vocab_size;
    for (size_t k = 0; k < count; k++) {
        uint32_t id = s->h.token_bytes == 2 ? (uint32_t)s->raw[2 * k] | (uint32_t)s->raw[2 * k + 1] << 8 : get_u32(s->raw + 4 * k);
        if (id >= V)
            die("%s: frame %llu: token id %u at position %llu is not below the vocabulary size %u", s->path, fr, id,
                (unsigned long long)(first + k), V);
        s->frame[k] = (int32_t)id;
    }
    s->cached = f;
}

void shard_read(Shard *s, uint64_t start, uint64_t n, int32_t *out) {
    if (n > s->h.ntokens || start > s->h.ntokens - n)
        die("%s: read of tokens [%llu, %llu + %llu) past the end (%llu tokens)", s->path, (unsigned long long)start,
            (unsigned long long)start, (unsigned long long)n, (unsigned long long)s->h.ntokens);
    uint64_t F = s->h.frame_tokens;
    while (n) {
        uint64_t f = start / F, in = start - f * F;
        if (s->cached != f) shard_load_frame(s, f);
        uint64_t avail = (f + 1) * F < s->h.ntokens ? F - in : s->h.ntokens - start;
        uint64_t take = n < avail ? n : avail;
        memcpy(out, s->frame + in, (size_t)take * sizeof(int32_t));
        out += take;
        start += take;
        n -= take;
    }
}

void shard_close(Shard *s) {
    if (!s) return;
    close(s->fd);
    ZSTD_freeDCtx(s->dctx);
    free(s->path);
    free(s->name);
    free(s->off);
    free(s->csize);
    free(s->cbuf);
    free(s->raw);
    free(s->frame);
    free(s);
}

// ----------------------------------------------------------------------------------------------------------
// A split: DIR/<split>_NNNNNN.shard numbered from 0 without gaps.

typedef struct { uint64_t num; char *path; } ShardName;

static int shard_name_cmp(const void *a, const void *b) {
    uint64_t x = ((const ShardName *)a)->num, y = ((const ShardName *)b)->num;
    return x < y ? -1 : x > y;
}

// The shard paths of a split in order (NULL-terminated, count in *n). A missing directory is an empty split;
// a gap or a duplicate in the numbering dies, since training on part of a split would go unnoticed.
static char **split_paths(const char *dir, const char *split, size_t *n) {
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT || errno == ENOTDIR) return NULL;
        die("cannot read directory %s: %s", dir, strerror(errno));
    }
    size_t len = strlen(split), cap = 0;
    ShardName *v = NULL;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *name = e->d_name;
        if (strncmp(name, split, len) != 0 || name[len] != '_') continue;
        const char *p = name + len + 1, *q = p;
        while (*q >= '0' && *q <= '9') q++;
        if (q - p < 6 || q - p > 18 || strcmp(q, ".shard") != 0) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            v = xrealloc(v, cap * sizeof *v);
        }
        v[*n].num = strtoull(p, NULL, 10);
        v[*n].path = xasprintf("%s/%s", dir, name);
        (*n)++;
    }
    closedir(d);
    if (!*n) return NULL;
    qsort(v, *n, sizeof *v, shard_name_cmp);
    for (size_t i = 0; i < *n; i++)
        if (v[i].num != i)
            die("%s: the %s shards are not numbered 0, 1, 2, ... without gaps (%s is number %llu, expected %zu); "
                "re-run hgrn2 prepare into an empty directory", dir, split, v[i].path, (unsigned long long)v[i].num, i);
    char **paths = xmalloc((*n + 1) * sizeof *paths);
    for (size_t i = 0; i < *n; i++) paths[i] = v[i].path;
    paths[*n] = NULL;
    free(v);
    return paths;
}

static void free_paths(char **p) {
    for (size_t i = 0; p && p[i]; i++) free(p[i]);
    free(p);
}

int data_has_split(const char *dir, const char *split) {
    size_t n;
    char **p = split_paths(dir, split, &n);
    free_paths(p);
    return n > 0;
}

// ----------------------------------------------------------------------------------------------------------
// Loader. Positions address the concatenation of a split's shards, so windows may cross shard boundaries
// (prepare cuts shards at a token count, not at document ends, so the concatenation is the original
// stream). A background thread fills a small ring of batches in order; loader_set_state bumps a generation
// so that whatever the thread was preparing for the old position is thrown away.

#define LOADER_RING 4
#define LOADER_OPEN_MAX 16   // open shards kept by the background thread (a split may have thousands)

struct Loader {
    int B, T, random;
    uint32_t vocab;
    char *tokenizer;
    size_t nshards;
    char **paths;
    uint64_t *first;         // first[i]: global index of shard i's first token; first[nshards] = ntokens
    uint64_t ntokens;
    // owned by the background thread
    Shard *open[LOADER_OPEN_MAX];
    size_t open_idx[LOADER_OPEN_MAX];
    uint64_t open_used[LOADER_OPEN_MAX], use_clock;
    int32_t *work;
    // shared, under mu
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int32_t *ring[LOADER_RING];
    int ring_rows[LOADER_RING];
    uint64_t ring_pos[LOADER_RING];
    int head, count, stop;
    uint64_t gen, next_pos, seed;   // what the thread produces next (batch index or cursor) and with which seed
    LoaderState state;              // the consumer's position
};

static Shard *loader_shard(Loader *l, size_t i) {
    int slot = -1;
    for (int k = 0; k < LOADER_OPEN_MAX; k++)
        if (l->open[k] && l->open_idx[k] == i) { slot = k; break; }
    if (slot < 0) {
        slot = 0;
        for (int k = 0; k < LOADER_OPEN_MAX; k++) {
            if (!l->open[k]) { slot = k; break; }
            if (l->open_used[k] < l->open_used[slot]) slot = k;
        }
        shard_close(l->open[slot]);
        l->open[slot] = shard_open(l->paths[i]);
        l->open_idx[slot] = i;
        if (shard_ntokens(l->open[slot]) != l->first[i + 1] - l->first[i])
            die("%s changed while it was in use (%llu tokens, was %llu)", l->paths[i],
                (unsigned long long)shard_ntokens(l->open[slot]), (unsigned long long)(l->first[i + 1] - l->first[i]));
    }
    l->open_used[slot] = ++l->use_clock;
    return l->open[slot];
}

static void loader_read(Loader *l, uint64_t start, uint64_t n, int32_t *out) {
    // the last shard whose first token is <= start
    size_t lo = 0, hi = l->nshards;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (l->first[mid] <= start) lo = mid;
        else hi = mid;
    }
    for (size_t i = lo; n; i++) {
        uint64_t in = start - l->first[i], avail = l->first[i + 1] - start;
        uint64_t take = n < avail ? n : avail;
        if (take) shard_read(loader_shard(l, i), in, take, out);
        out += take;
        start += take;
        n -= take;
    }
}

// Window start of row `row` of batch `batch`: uniform over the N - T starts whose T+1 tokens fit.
static uint64_t window_start(uint64_t seed, uint64_t batch, uint64_t row, uint64_t nstarts) {
    uint64_t h = mix64(mix64(mix64(seed) ^ batch) ^ row);
    return (uint64_t)(((unsigned __int128)h * nstarts) >> 64);
}

static int seq_exhausted(const Loader *l, uint64_t cursor) { return l->ntokens < 2 || cursor >= l->ntokens - 1; }

// One batch at position pos (batch index or cursor) into out; returns the rows holding data.
static int loader_produce(Loader *l, uint64_t pos, uint64_t seed, int32_t *out) {
    size_t W = (size_t)l->T + 1;
    int rows = 0;
    for (int r = 0; r < l->B; r++) {
        int32_t *row = out + (size_t)r * W;
        if (l->random) {
            loader_read(l, window_start(seed, pos, (uint64_t)r, l->ntokens - (uint64_t)l->T), W, row);
            rows++;
            continue;
        }
        uint64_t s = pos + (uint64_t)r * (uint64_t)l->T;
        size_t n = 0;
        if (!seq_exhausted(l, s)) {
            n = l->ntokens - s < W ? (size_t)(l->ntokens - s) : W;
            loader_read(l, s, n, row);
            rows++;
        }
        for (size_t k = n; k < W; k++) row[k] = -1;
    }
    return rows;
}

static uint64_t loader_advance(const Loader *l, uint64_t pos) {
    return l->random ? pos + 1 : pos + (uint64_t)l->B * (uint64_t)l->T;
}

static void *loader_thread(void *arg) {
    Loader *l = arg;
    pthread_mutex_lock(&l->mu);
    while (!l->stop) {
        if (l->count == LOADER_RING || (!l->random && seq_exhausted(l, l->next_pos))) {
            pthread_cond_wait(&l->cv, &l->mu);
            continue;
        }
        uint64_t gen = l->gen, pos = l->next_pos, seed = l->seed;
        pthread_mutex_unlock(&l->mu);
        int rows = loader_produce(l, pos, seed, l->work);
        pthread_mutex_lock(&l->mu);
        if (gen != l->gen) continue;   // the position was reset meanwhile
        int slot = (l->head + l->count) % LOADER_RING;
        memcpy(l->ring[slot], l->work, (size_t)l->B * ((size_t)l->T + 1) * sizeof(int32_t));
        l->ring_rows[slot] = rows;
        l->ring_pos[slot] = pos;
        l->count++;
        l->next_pos = loader_advance(l, pos);
        pthread_cond_broadcast(&l->cv);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

Loader *loader_open(const char *dir, const char *split, int B, int T, int random, uint64_t seed) {
    if (B < 1 || T < 1 || (uint64_t)B * ((uint64_t)T + 1) > (1ull << 34))
        die("loader for %s/%s: batch %d x sequence length %d is out of range", dir, split, B, T);
    Loader *l = xcalloc(1, sizeof *l);
    l->B = B;
    l->T = T;
    l->random = random != 0;
    l->paths = split_paths(dir, split, &l->nshards);
    if (!l->nshards) die("%s holds no %s shards (expected %s/%s_000000.shard); run hgrn2 prepare", dir, split, dir, split);
    l->first = xmalloc((l->nshards + 1) * sizeof *l->first);
    // Every shard is opened once here so that a bad or mismatched one fails now, not hours into training.
    for (size_t i = 0; i < l->nshards; i++) {
        Shard *s = shard_open(l->paths[i]);
        if (i == 0) {
            l->vocab = shard_vocab(s);
            l->tokenizer = xstrdup(shard_tokenizer(s));
        } else if (shard_vocab(s) != l->vocab || strcmp(shard_tokenizer(s), l->tokenizer) != 0)
            die("%s has vocabulary %u and tokenizer \"%s\" but %s has %u and \"%s\"; all shards of a split must match",
                l->paths[i], shard_vocab(s), shard_tokenizer(s), l->paths[0], l->vocab, l->tokenizer);
        l->first[i] = l->ntokens;
        l->ntokens += shard_ntokens(s);
        shard_close(s);
    }
    l->first[l->nshards] = l->ntokens;
    if (l->random && l->ntokens < (uint64_t)T + 1)
        die("%s/%s holds %llu tokens, fewer than one window of --seq-len + 1 = %d", dir, split,
            (unsigned long long)l->ntokens, T + 1);
    size_t batch = (size_t)B * ((size_t)T + 1);
    l->work = xmalloc(batch * sizeof(int32_t));
    for (int k = 0; k < LOADER_RING; k++) l->ring[k] = xmalloc(batch * sizeof(int32_t));
    l->state.seed = l->seed = seed;
    if (pthread_mutex_init(&l->mu, NULL) || pthread_cond_init(&l->cv, NULL)) die("loader: cannot create a mutex");
    int e = pthread_create(&l->thread, NULL, loader_thread, l);
    if (e) die("loader: cannot start the prefetch thread: %s", strerror(e));
    return l;
}

int loader_next(Loader *l, int32_t *ids) {
    size_t batch = (size_t)l->B * ((size_t)l->T + 1);
    pthread_mutex_lock(&l->mu);
    if (!l->random && seq_exhausted(l, l->state.cursor)) {
        pthread_mutex_unlock(&l->mu);
        for (size_t k = 0; k < batch; k++) ids[k] = -1;
        return 0;
    }
    while (l->count == 0) pthread_cond_wait(&l->cv, &l->mu);
    int slot = l->head;
    uint64_t want = l->random ? l->state.batches : l->state.cursor;
    if (l->ring_pos[slot] != want) die("loader: internal error: batch at %llu, expected %llu", (unsigned long long)l->ring_pos[slot], (unsigned long long)want);
    memcpy(ids, l->ring[slot], batch * sizeof(int32_t));
    int rows = l->ring_rows[slot];
    l->head = (l->head + 1) % LOADER_RING;
    l->count--;
    l->state.batches++;
    if (!l->random) l->state.cursor = loader_advance(l, l->state.cursor);
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    return rows;
}

uint64_t loader_ntokens(const Loader *l) { return l->ntokens; }
uint32_t loader_vocab(const Loader *l) { return l->vocab; }
const char *loader_tokenizer(const Loader *l) { return l->tokenizer; }

LoaderState loader_get_state(const Loader *l) {
    pthread_mutex_lock((pthread_mutex_t *)&l->mu);
    LoaderState s = l->state;
    pthread_mutex_unlock((pthread_mutex_t *)&l->mu);
    return s;
}

void loader_set_state(Loader *l, LoaderState s) {
    pthread_mutex_lock(&l->mu);
    l->state = s;
    l->seed = s.seed;
    l->next_pos = l->random ? s.batches : s.cursor;
    l->gen++;
    l->head = l->count = 0;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

void loader_reset(Loader *l) {
    LoaderState s = {.seed = l->state.seed};
    loader_set_state(l, s);
}

void loader_close(Loader *l) {
    if (!l) return;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    for (int k = 0; k < LOADER_OPEN_MAX; k++) shard_close(l->open[k]);
    for (int k = 0; k < LOADER_RING; k++) free(l->ring[k]);
    free_paths(l->paths);
    free(l->first);
    free(l->work);
    free(l->tokenizer);
    free(l);
}

// ----------------------------------------------------------------------------------------------------------
// prepare, part 1: input files, plain or zstd (told apart by the magic number, not the name), read as a
// byte stream in constant memory.

typedef struct {
    const char *path;
    int fd, zstd, file_eof, frame_done;
    ZSTD_DCtx *dctx;
    uint8_t *in;
    size_t in_cap;
    ZSTD_inBuffer zin;      // zstd: compressed bytes not yet decoded; plain: the sniffed bytes not yet returned
    uint64_t consumed;      // file bytes read so far
    uint64_t *bytes_in;     // progress counter shared with the writer thread
} InStream;

static size_t raw_read(InStream *s, void *buf, size_t n) {
    for (;;) {
        ssize_t r = read(s->fd, buf, n);
        if (r >= 0) {
            s->consumed += (uint64_t)r;
            __atomic_fetch_add(s->bytes_in, (uint64_t)r, __ATOMIC_RELAXED);
            return (size_t)r;
        }
        if (errno != EINTR) die("reading %s failed: %s", s->path, strerror(errno));
    }
}

static void in_open(InStream *s, const char *path, uint64_t *bytes_in) {
    memset(s, 0, sizeof *s);
    s->path = path;
    s->bytes_in = bytes_in;
    s->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (s->fd < 0) die("cannot open input %s: %s", path, strerror(errno));
    s->in_cap = ZSTD_DStreamInSize();
    s->in = xmalloc(s->in_cap);
    size_t got = 0;
    while (got < 4) {
        size_t r = raw_read(s, s->in + got, 4 - got);
        if (!r) break;
        got += r;
    }
    uint32_t magic = got == 4 ? get_u32(s->in) : 0;
    s->zstd = magic == ZSTD_MAGICNUMBER || (magic & ZSTD_MAGIC_SKIPPABLE_MASK) == ZSTD_MAGIC_SKIPPABLE_START;
    s->zin = (ZSTD_inBuffer){s->in, got, 0};
    s->frame_done = 1;
    if (s->zstd && !(s->dctx = ZSTD_createDCtx())) die("%s: cannot create a zstd decompression context (out of memory)", path);
}

// Up to n bytes of the input's content; 0 at its end. Dies on a corrupted or truncated zstd stream.
static size_t in_read(InStream *s, uint8_t *buf, size_t n) {
    if (!s->zstd) {
        if (s->zin.pos < s->zin.size) {
            size_t k = s->zin.size - s->zin.pos < n ? s->zin.size - s->zin.pos : n;
            memcpy(buf, s->in + s->zin.pos, k);
            s->zin.pos += k;
            return k;
        }
        return raw_read(s, buf, n);
    }
    ZSTD_outBuffer out = {buf, n, 0};
    while (out.pos == 0) {
        if (s->zin.pos == s->zin.size && !s->file_eof) {
            size_t got = raw_read(s, s->in, s->in_cap);
            s->zin = (ZSTD_inBuffer){s->in, got, 0};
            if (!got) s->file_eof = 1;
        }
        int starved = s->zin.pos == s->zin.size && s->file_eof;
        if (starved && s->frame_done) return 0;
        size_t r = ZSTD_decompressStream(s->dctx, &out, &s->zin);
        if (ZSTD_isError(r))
            die("%s: corrupted zstd data near compressed byte %llu: %s", s->path,
                (unsigned long long)(s->consumed - (s->zin.size - s->zin.pos)), ZSTD_getErrorName(r));
        s->frame_done = r == 0;
        // With no input left, the decoder can only flush what it holds; no output means the frame is cut short.
        if (starved && out.pos == 0 && !s->frame_done)
            die("%s: truncated zstd stream: the file ends inside a frame (incomplete download or copy?)", s->path);
    }
    return out.pos;
}

static void in_close(InStream *s) {
    close(s->fd);
    ZSTD_freeDCtx(s->dctx);
    free(s->in);
}

// Lines of an input, each with its '\n' (the last one may lack it). Memory grows to the longest line only.
typedef struct {
    InStream *in;
    uint8_t *buf;
    size_t cap, pos, len, scan;  // scan: bytes from pos already known to hold no '\n'
    int eof;
    uint64_t lineno;
} LineReader;

static int next_line(LineReader *lr, const char **line, size_t *n) {
    for (;;) {
        uint8_t *start = lr->buf + lr->pos;
        size_t unscanned = lr->len - lr->pos - lr->scan;
        uint8_t *nl = unscanned ? memchr(start + lr->scan, '\n', unscanned) : NULL;
        if (nl || (lr->eof && lr->pos < lr->len)) {
            *line = (const char *)start;
            *n = nl ? (size_t)(nl + 1 - start) : lr->len - lr->pos;
            lr->pos += *n;
            lr->scan = 0;
            lr->lineno++;
            return 1;
        }
        if (lr->eof) return 0;
        lr->scan = lr->len - lr->pos;
        if (lr->pos) {
            memmove(lr->buf, start, lr->len - lr->pos);
            lr->len -= lr->pos;
            lr->pos = 0;
        }
        if (lr->len == lr->cap) {
            lr->cap = lr->cap ? 2 * lr->cap : (1u << 20);
            lr->buf = xrealloc(lr->buf, lr->cap);
        }
        size_t got = in_read(lr->in, lr->buf + lr->len, lr->cap - lr->len);
        if (!got) lr->eof = 1;
        lr->len += got;
    }
}

// ----------------------------------------------------------------------------------------------------------
// prepare, part 2: one JSON Lines record -> its "text" field, unescaped. A complete JSON parser for one line,
// so that a malformed record is reported, never half-used. Not json.c's tree builder: this one allocates
// nothing per line, skips the other fields in place and appends the text straight into the document, which
// makes it about twice as fast, and it runs on the one reader thread that feeds all tokenizer threads.

typedef struct {
    const uint8_t *s, *p, *end;
    const char *err;
} JsonScan;

static int js_fail(JsonScan *j, const char *msg) {
    if (!j->err) j->err = msg;
    return 0;
}

static void js_ws(JsonScan *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\r' || *j->p == '\n')) j->p++;
}

static void utf8_put(ByteBuf *b, uint32_t cp) {
    uint8_t u[4];
    size_t n;
    if (cp < 0x80) { u[0] = (uint8_t)cp; n = 1; }
    else if (cp < 0x800) { u[0] = (uint8_t)(0xC0 | cp >> 6); u[1] = (uint8_t)(0x80 | (cp & 63)); n = 2; }
    else if (cp < 0x10000) {
        u[0] = (uint8_t)(0xE0 | cp >> 12); u[1] = (uint8_t)(0x80 | (cp >> 6 & 63)); u[2] = (uint8_t)(0x80 | (cp & 63)); n = 3;
    } else {
        u[0] = (uint8_t)(0xF0 | cp >> 18); u[1] = (uint8_t)(0x80 | (cp >> 12 & 63));
        u[2] = (uint8_t)(0x80 | (cp >> 6 & 63)); u[3] = (uint8_t)(0x80 | (cp & 63)); n = 4;
    }
    bytebuf_append(b, u, n);
}

static int js_hex4(JsonScan *j, uint32_t *v) {
    if (j->end - j->p < 4) return js_fail(j, "truncated \\u escape");
    *v = 0;
    for (int i = 0; i < 4; i++) {
        uint8_t c = j->p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return js_fail(j, "invalid \\u escape");
        *v = *v << 4 | (uint32_t)d;
    }
    j->p += 4;
    return 1;
}

// The string at j->p (which is '"'); its unescaped bytes are appended to out unless out is NULL. Raw bytes
// pass through as they are, invalid UTF-8 included, except control characters, which JSON forbids; a lone
// surrogate escape becomes U+FFFD.
static int js_string(JsonScan *j, ByteBuf *out) {
    j->p++;
    for (;;) {
        const uint8_t *q = j->p;
        while (q < j->end && *q != '"' && *q != '\\' && *q >= 0x20) q++;
        if (out && q > j->p) bytebuf_append(out, j->p, (size_t)(q - j->p));
        j->p = q;
        if (q == j->end) return js_fail(j, "unterminated string");
        if (*q < 0x20) return js_fail(j, "raw control character in a string (JSON needs it escaped)");
        j->p++;
        if (*q == '"') return 1;
        if (j->p == j->end) return js_fail(j, "unterminated string");
        uint8_t c = *j->p++;
        char e;
        switch (c) {
        case '"': e = '"'; break;
        case '\\': e = '\\'; break;
        case '/': e = '/'; break;
        case 'b': e = '\b'; break;
        case 'f': e = '\f'; break;
        case 'n': e = '\n'; break;
        case 'r': e = '\r'; break;
        case 't': e = '\t'; break;
        case 'u': {
            uint32_t cp;
            if (!js_hex4(j, &cp)) return 0;
            if (cp >= 0xD800 && cp < 0xDC00 && j->end - j->p >= 6 && j->p[0] == '\\' && j->p[1] == 'u') {
                const uint8_t *save = j->p;
                uint32_t lo;
                j->p += 2;
                if (!js_hex4(j, &lo)) return 0;
                if (lo >= 0xDC00 && lo < 0xE000) cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                else j->p = save;   // not a pair: the high half alone, the next escape read on its own
            }
            if (cp >= 0xD800 && cp < 0xE000) cp = 0xFFFD;
            if (out) utf8_put(out, cp);
            continue;
        }
        default:
            j->p--;
            return js_fail(j, "invalid escape");
        }
        if (out) bytebuf_append(out, &e, 1);
    }
}

static int js_literal(JsonScan *j, const char *lit) {
    size_t n = strlen(lit);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n) != 0) return js_fail(j, "invalid literal");
    j->p += n;
    return 1;
}

static int js_digits(JsonScan *j) {
    const uint8_t *q = j->p;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
    return j->p > q ? 1 : js_fail(j, "invalid number");
}

static int js_number(JsonScan *j) {
    if (*j->p == '-') j->p++;
    if (j->p < j->end && *j->p == '0') j->p++;
    else if (!(j->p < j->end && *j->p >= '1' && *j->p <= '9') || !js_digits(j)) return js_fail(j, "invalid number");
    if (j->p < j->end && *j->p == '.') {
        j->p++;
        if (!js_digits(j)) return 0;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-')) j->p++;
        if (!js_digits(j)) return 0;
    }
    return 1;
}

// Any value (skipped). Object members and array elements share the loop; key_out, when given, receives each
// key of the top-level object and the caller handles the value (text_out: the "text" member's string).
static int js_value(JsonScan *j, int depth);
static int js_container(JsonScan *j, int depth, ByteBuf *key, ByteBuf *text, int *found) {
    uint8_t close = *j->p == '{' ? '}' : ']';
    j->p++;
    js_ws(j);
    if (j->p < j->end && *j->p == close) { j->p++; return 1; }
    for (;;) {
        js_ws(j);
        int is_text = 0;
        if (close == '}') {
            if (j->p == j->end || *j->p != '"') return js_fail(j, "expected a string key");
            if (key) key->n = 0;
            if (!js_string(j, key)) return 0;
            is_text = key && key->n == 4 && !memcmp(key->data, "text", 4);
            js_ws(j);
            if (j->p == j->end || *j->p != ':') return js_fail(j, "expected ':' after a key");
            j->p++;
            js_ws(j);
        }
        if (is_text) {
            if (j->p == j->end || *j->p != '"') return js_fail(j, "the \"text\" field is not a string");
            text->n = 0;   // a repeated key: the last one counts, as in most JSON readers
            if (!js_string(j, text)) return 0;
            *found = 1;
        } else if (!js_value(j, depth + 1)) return 0;
        js_ws(j);
        if (j->p < j->end && *j->p == ',') { j->p++; continue; }
        if (j->p < j->end && *j->p == close) { j->p++; return 1; }
        return js_fail(j, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static int js_value(JsonScan *j, int depth) {
    if (depth > 200) return js_fail(j, "nested deeper than 200 levels");
    js_ws(j);
    if (j->p == j->end) return js_fail(j, "expected a value");
    switch (*j->p) {
    case '"': return js_string(j, NULL);
    case '{':
    case '[': return js_container(j, depth, NULL, NULL, NULL);
    case 't': return js_literal(j, "true");
    case 'f': return js_literal(j, "false");
    case 'n': return js_literal(j, "null");
    default:
        if (*j->p == '-' || (*j->p >= '0' && *j->p <= '9')) return js_number(j);
        return js_fail(j, "unexpected character");
    }
}

// The "text" string of a JSON Lines record, into text (replacing its content). Returns NULL, or what is
// wrong with *col the 1-based byte position in the line.
static const char *json_record_text(const char *line, size_t n, ByteBuf *text, ByteBuf *key, size_t *col) {
    JsonScan j = {(const uint8_t *)line, (const uint8_t *)line, (const uint8_t *)line + n, NULL};
    int found = 0;
    text->n = 0;
    js_ws(&j);
    if (j.p == j.end || *j.p != '{') js_fail(&j, "a record must be a JSON object");
    else if (js_container(&j, 0, key, text, &found)) {
        js_ws(&j);
        if (j.p != j.end) js_fail(&j, "characters after the object");
        else if (!found) js_fail(&j, "no \"text\" field");
    }
    *col = (size_t)(j.p - j.s) + 1;
    return j.err;
}

// ----------------------------------------------------------------------------------------------------------
// ----------------------------------------------------------------------------------------------------------
// prepare, part 3: the pipeline. The main thread reads documents and packs them into jobs of about 1 MiB of
// text; worker threads tokenize jobs in any order; one writer thread appends their ids to the shards in job
// order, so the output does not depend on the thread count. A document longer than PIECE_MAX is tokenized
// in pieces cut where pretokenizers split anyway (see safe_cut), which keeps memory bounded.

#define JOB_BYTES (1u << 20)
#define PIECE_MAX (1u << 20)
#define COPY_TOKENS (1u << 20)

enum { TASK_PILE, TASK_WIKI, TASK_TEXT };
enum { JOB_FREE, JOB_FILLED, JOB_DONE };

typedef struct {
    size_t off, len, ids_end;   // text bytes [off, off+len) tokenize to ids [previous ids_end, ids_end)
    int val, ends_doc;
} Seg;

typedef struct {
    ByteBuf text;
    IdBuf ids;
    Seg *segs;
    size_t nseg, segcap;
    int state;
} Job;

// The shards of one split being written: DIR/<split>_NNNNNN.shard.part until the run succeeds.
typedef struct {
    const char *dir, *split, *tokname;
    uint32_t vocab;
    uint64_t max_tokens, in_shard, total;
    ShardWriter *w;
    size_t nshards, cap;
    uint64_t *counts;
    char **parts;
} SplitOut;

typedef struct {
    const Tokenizer *tok;
    int32_t eot;
    int task, strict, have_val_inputs;
    double val_fraction;
    // pipeline
    Job *jobs;
    int njobs, reader_done;
    uint64_t seq_fill, seq_tok, seq_write;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    // reader
    Job *cur;
    ByteBuf doc, key;
    size_t doc_off;
    int doc_val, doc_emitted;
    uint64_t ndocs, malformed;
    uint64_t bytes_in, bytes_text;   // atomics: read by the writer for progress
    // writer
    SplitOut train, val;
    double t0, last_print;
    int tty;
} Prep;

static void bytebuf_reserve(ByteBuf *b, size_t extra) {
    if (b->cap - b->n >= extra) return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->n < extra) cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
}

static char *part_name(const SplitOut *o, size_t i, int final) {
    return xasprintf("%s/%s_%06zu.shard%s", o->dir, o->split, i, final ? "" : ".part");
}

static void out_append(SplitOut *o, const int32_t *ids, size_t n) {
    while (n) {
        if (!o->w) {
            if (o->nshards == o->cap) {
                o->cap = o->cap ? 2 * o->cap : 16;
                o->counts = xrealloc(o->counts, o->cap * sizeof *o->counts);
                o->parts = xrealloc(o->parts, o->cap * sizeof *o->parts);
            }
            o->parts[o->nshards] = part_name(o, o->nshards, 0);
            o->counts[o->nshards] = 0;
            cleanup_add(o->parts[o->nshards]);
            o->w = shard_writer_open(o->parts[o->nshards], o->vocab, o->tokname);
            o->nshards++;
            o->in_shard = 0;
        }
        size_t take = o->max_tokens - o->in_shard < n ? (size_t)(o->max_tokens - o->in_shard) : n;
        shard_writer_append(o->w, ids, take);
        ids += take;
        n -= take;
        o->in_shard += take;
        o->total += take;
        o->counts[o->nshards - 1] += take;
        if (o->in_shard == o->max_tokens) {
            shard_writer_close(o->w);
            o->w = NULL;
        }
    }
}

static void out_close(SplitOut *o) {
    if (o->w) shard_writer_close(o->w);
    o->w = NULL;
}

// The progress line: rewritten in place on a terminal, a new line every 5 s otherwise (logs). The final call
// only ends the terminal's line; the summary follows on stdout.
static void progress(Prep *p, int final) {
    double t = now_s();
    if (final && !p->tty) return;
    if (!final && t - p->last_print < (p->tty ? 0.25 : 5.0)) return;
    p->last_print = t;
    double mb_in = (double)__atomic_load_n(&p->bytes_in, __ATOMIC_RELAXED) / 1e6;
    double mb_text = (double)__atomic_load_n(&p->bytes_text, __ATOMIC_RELAXED) / 1e6;
    double el = t - p->t0 > 1e-9 ? t - p->t0 : 1e-9;
    fprintf(stderr, "%sprepare: %.2fM tokens, %.1f MB read (%.1f MB text), %.1f MB/s%s", p->tty ? "\r" : "",
            (double)(p->train.total + p->val.total) / 1e6, mb_in, mb_text, mb_text / el, p->tty ? "\x1b[K" : "\n");
    if (final && p->tty) fputc('\n', stderr);
}

static void *prep_worker(void *arg) {
    Prep *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->seq_tok == p->seq_fill && !p->reader_done) pthread_cond_wait(&p->cv, &p->mu);
        if (p->seq_tok == p->seq_fill) break;
        Job *j = &p->jobs[p->seq_tok % (uint64_t)p->njobs];
        p->seq_tok++;
        pthread_mutex_unlock(&p->mu);
        j->ids.n = 0;
        for (size_t i = 0; i < j->nseg; i++) {
            tokenizer_encode(p->tok, j->text.data + j->segs[i].off, j->segs[i].len, &j->ids);
            j->segs[i].ids_end = j->ids.n;
        }
        pthread_mutex_lock(&p->mu);
        j->state = JOB_DONE;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void *prep_writer(void *arg) {
    Prep *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        Job *j = &p->jobs[p->seq_write % (uint64_t)p->njobs];
        while (!(p->seq_write < p->seq_fill && j->state == JOB_DONE) && !(p->reader_done && p->seq_write == p->seq_fill))
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->seq_write == p->seq_fill) break;
        pthread_mutex_unlock(&p->mu);
        size_t prev = 0;
        for (size_t i = 0; i < j->nseg; i++) {
            Seg *s = &j->segs[i];
            SplitOut *o = s->val ? &p->val : &p->train;
            out_append(o, j->ids.ids + prev, s->ids_end - prev);
            if (s->ends_doc && p->eot >= 0) out_append(o, &p->eot, 1);
            prev = s->ids_end;
        }
        progress(p, 0);
        pthread_mutex_lock(&p->mu);
        j->state = JOB_FREE;
        p->seq_write++;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void rd_submit(Prep *p) {
    pthread_mutex_lock(&p->mu);
    p->cur->state = JOB_FILLED;
    p->seq_fill++;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    p->cur = NULL;
}

static void rd_add_seg(Prep *p, const char *text, size_t len, int ends_doc) {
    if (!p->cur) {
        Job *j = &p->jobs[p->seq_fill % (uint64_t)p->njobs];
        pthread_mutex_lock(&p->mu);
        while (j->state != JOB_FREE) pthread_cond_wait(&p->cv, &p->mu);
        pthread_mutex_unlock(&p->mu);
        j->text.n = 0;
        j->nseg = 0;
        p->cur = j;
    }
    Job *j = p->cur;
    if (j->nseg == j->segcap) {
        j->segcap = j->segcap ? 2 * j->segcap : 256;
        j->segs = xrealloc(j->segs, j->segcap * sizeof *j->segs);
    }
    j->segs[j->nseg++] = (Seg){j->text.n, len, 0, p->doc_val, ends_doc};
    bytebuf_append(&j->text, text, len);
    p->doc_emitted = 1;
    if (j->text.n >= JOB_BYTES) rd_submit(p);
}

// Whole documents go to validation by a hash of their index, so the split does not depend on threads,
// shard size or anything but the order of the inputs. Document 0 always trains, so training is never empty.
static int doc_is_val(uint64_t index, double fraction) {
    return index > 0 && (double)(mix64(index ^ 0x76616C6964617465ull) >> 11) * 0x1.0p-53 < fraction;
}

static void rd_begin_doc(Prep *p, int from_val_input) {
    p->doc.n = 0;
    p->doc_off = 0;
    p->doc_emitted = 0;
    p->doc_val = from_val_input || (!p->have_val_inputs && doc_is_val(p->ndocs, p->val_fraction));
}

static int ascii_letter(uint8_t c) { return (c | 32) >= 'a' && (c | 32) <= 'z'; }
static int ascii_space(uint8_t c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

// Where to cut a document too long to tokenize in one piece: a cut in s(lo, hi] of s[0, n), hi < n.
// Preferably before the space of "letter space letter": GPT-2-style regexes split there (the space starts
// the next word's piece) and so does Metaspace, and a tokenizer that adds a prefix space adds none to a
// piece that starts with one, so the ids equal those of the whole text. Else after a newline between two
// non-space characters; else at a UTF-8 character boundary.
static size_t safe_cut(const uint8_t *s, size_t lo, size_t hi, size_t n) {
    for (size_t c = hi; c > lo; c--)
        if (s[c] == ' ' && c + 1 < n && ascii_letter(s[c - 1]) && ascii_letter(s[c + 1])) return c;
    for (size_t c = hi; c >= lo + 2; c--)
        if (s[c - 1] == '\n' && !ascii_space(s[c - 2]) && !ascii_space(s[c])) return c;
    for (size_t c = hi; c > lo; c--)
        if ((s[c] & 0xC0) != 0x80) return c;
    return hi;
}

// After bytes were appended to the current document: hand off pieces while it is too long for one.
static void rd_grew(Prep *p) {
    while (p->doc.n - p->doc_off > PIECE_MAX) {
        size_t cut = safe_cut((const uint8_t *)p->doc.data, p->doc_off + PIECE_MAX / 2, p->doc_off + PIECE_MAX, p->doc.n);
        rd_add_seg(p, p->doc.data + p->doc_off, cut - p->doc_off, 0);
        p->doc_off = cut;
    }
    if (p->doc_off) {
        memmove(p->doc.data, p->doc.data + p->doc_off, p->doc.n - p->doc_off);
        p->doc.n -= p->doc_off;
        p->doc_off = 0;
    }
}

static void rd_end_doc(Prep *p) {
    if (!p->doc_emitted && p->doc.n == 0) return;   // an empty document: no tokens, no separator
    rd_add_seg(p, p->doc.data, p->doc.n, 1);
    p->ndocs++;
    p->doc.n = 0;
}

static int blank_line(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return 0;
    return 1;
}

// A top-level WikiText heading " = Title = " (level-2 headings are " = = Title = = ").
static int wiki_heading(const char *s, size_t n) {
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ')) n--;
    while (n && *s == ' ') { s++; n--; }
    return n >= 5 && s[0] == '=' && s[1] == ' ' && s[2] != '=' && s[n - 1] == '=' && s[n - 2] == ' ' && s[n - 3] != '=';
}

static void read_input(Prep *p, const char *path, int from_val_input) {
    InStream in;
    in_open(&in, path, &p->bytes_in);
    if (p->task == TASK_TEXT) {
        rd_begin_doc(p, from_val_input);
        for (;;) {
            bytebuf_reserve(&p->doc, 1u << 20);
            size_t got = in_read(&in, (uint8_t *)p->doc.data + p->doc.n, 1u << 20);
            if (!got) break;
            p->doc.n += got;
            __atomic_fetch_add(&p->bytes_text, (uint64_t)got, __ATOMIC_RELAXED);
            rd_grew(p);
        }
        rd_end_doc(p);
        in_close(&in);
        return;
    }
    LineReader lr = {.in = &in};
    const char *line;
    size_t n;
    int in_article = 0;
    if (p->task == TASK_WIKI) rd_begin_doc(p, from_val_input);
    while (next_line(&lr, &line, &n)) {
        __atomic_fetch_add(&p->bytes_text, (uint64_t)n, __ATOMIC_RELAXED);
        if (p->task == TASK_WIKI) {
            // An article runs from its heading to the next one; text before the first heading joins the first.
            if (wiki_heading(line, n)) {
                if (in_article) {
                    rd_end_doc(p);
                    rd_begin_doc(p, from_val_input);
                }
                in_article = 1;
            }
            bytebuf_append(&p->doc, line, n);
            rd_grew(p);
            continue;
        }
        if (blank_line(line, n)) continue;
        rd_begin_doc(p, from_val_input);
        size_t col;
        const char *err = json_record_text(line, n, &p->doc, &p->key, &col);
        if (err) {
            p->doc.n = 0;
            if (p->strict) die("%s:%llu: malformed JSON record at byte %zu: %s", path, (unsigned long long)lr.lineno, col, err);
            if (++p->malformed <= 5)
                fprintf(stderr, "hgrn2 prepare: warning: %s:%llu: malformed JSON record at byte %zu: %s; skipped "
                        "(--strict makes this an error)\n", path, (unsigned long long)lr.lineno, col, err);
            continue;
        }
        rd_grew(p);
        rd_end_doc(p);
    }
    if (p->task == TASK_WIKI) rd_end_doc(p);
    free(lr.buf);
    in_close(&in);
}

// Small inputs can leave the hashed validation split empty (a single text file always does): then the last
// k tokens of the training stream become the validation split, rewriting only the shards they touch.
static void move_tail_to_val(SplitOut *train, SplitOut *val, uint64_t k) {
    uint64_t cut = train->total - k, base = 0;
    size_t j = 0;
    while (base + train->counts[j] <= cut) base += train->counts[j++];
    size_t keep_shards = j, nold = train->nshards;
    int32_t *buf = xmalloc(COPY_TOKENS * sizeof(int32_t));
    for (size_t i = j; i < nold; i++) {
        Shard *s = shard_open(train->parts[i]);
        uint64_t n = shard_ntokens(s), keep = i == j ? cut - base : 0;
        // Renaming the rewritten shard over the one being read is safe: the open descriptor keeps the old file.
        ShardWriter *w = keep ? shard_writer_open(train->parts[i], train->vocab, train->tokname) : NULL;
        for (uint64_t pos = 0; pos < n;) {
            uint64_t take = n - pos < COPY_TOKENS ? n - pos : COPY_TOKENS;
            shard_read(s, pos, take, buf);
            uint64_t head = pos < keep ? (keep - pos < take ? keep - pos : take) : 0;
            if (head) shard_writer_append(w, buf, (size_t)head);
            out_append(val, buf + head, (size_t)(take - head));
            pos += take;
        }
        shard_close(s);
        if (w) {
            shard_writer_close(w);
            train->counts[i] = keep;
            keep_shards = i + 1;
        } else {
            if (unlink(train->parts[i]) != 0) die("removing %s failed: %s", train->parts[i], strerror(errno));
            cleanup_remove(train->parts[i]);
            free(train->parts[i]);
        }
    }
    free(buf);
    train->nshards = keep_shards;
    train->total = cut;
}

// .part -> final names, all registered for removal first so that a failure halfway leaves no final name.
static void finalize_outputs(SplitOut **outs, int nouts) {
    for (int o = 0; o < nouts; o++)
        for (size_t i = 0; i < outs[o]->nshards; i++) {
            char *final = part_name(outs[o], i, 1);
            cleanup_add(final);
            free(final);
        }
    for (int o = 0; o < nouts; o++)
        for (size_t i = 0; i < outs[o]->nshards; i++) {
            char *final = part_name(outs[o], i, 1);
            if (rename(outs[o]->parts[i], final) != 0) die("renaming %s to %s failed: %s", outs[o]->parts[i], final, strerror(errno));
            free(final);
        }
    if (nouts) fsync_dir_of(outs[0]->parts[0]);
    for (int o = 0; o < nouts; o++)
        for (size_t i = 0; i < outs[o]->nshards; i++) {
            char *final = part_name(outs[o], i, 1);
            cleanup_remove(final);
            cleanup_remove(outs[o]->parts[i]);
            free(final);
        }
}

static void write_meta(const char *dir, const char *spec, const char *name, const char *task, const SplitOut *train, const SplitOut *val) {
    char *path = xasprintf("%s/meta.txt", dir), *tmp = xasprintf("%s/meta.txt.tmp", dir);
    char *abs = strcmp(spec, "byte") ? realpath(spec, NULL) : NULL;
    cleanup_add(tmp);
    FILE *f = fopen(tmp, "w");
    if (!f) die("cannot create %s: %s", tmp, strerror(errno));
    fprintf(f, "tokenizer %s\ntokenizer_name %s\ntask %s\ntrain_tokens %llu\ntrain_shards %zu\nval_tokens %llu\nval_shards %zu\n",
            abs ? abs : spec, name, task, (unsigned long long)train->total, train->nshards, (unsigned long long)val->total,
            val->nshards);
    if (ferror(f) || fflush(f) != 0 || fsync(fileno(f)) != 0) die("writing %s failed: %s", tmp, strerror(errno));
    if (fclose(f) != 0) die("closing %s failed: %s", tmp, strerror(errno));
    if (rename(tmp, path) != 0) die("renaming %s to %s failed: %s", tmp, path, strerror(errno));
    cleanup_remove(tmp);
    free(abs);
    free(path);
    free(tmp);
}

// Whether dir already holds train or val shards (a previous run): mixing runs would corrupt both.
static const char *existing_shard(const char *dir) {
    static char name[300];
    DIR *d = opendir(dir);
    if (!d) die("cannot read directory %s: %s", dir, strerror(errno));
    struct dirent *e;
    const char *found = NULL;
    while (!found && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if ((!strncmp(e->d_name, "train_", 6) || !strncmp(e->d_name, "val_", 4)) && n > 6 && !strcmp(e->d_name + n - 6, ".shard")) {
            snprintf(name, sizeof name, "%s", e->d_name);
            found = name;
        }
    }
    closedir(d);
    return found;
}

static const char *PREPARE_USAGE =
    "hgrn2 prepare --task pile|wiki103|text --input FILE... --tokenizer SPEC --out DIR [--val-input FILE...]\n"
    "              [--val-fraction F] [--shard-tokens N] [--threads N] [--strict]";
static const char *PREPARE_HELP =
    "Tokenize text into zstd-compressed token shards: DIR/train_NNNNNN.shard, DIR/val_NNNNNN.shard and DIR/meta.txt\n"
    "(format and policies: docs/shards.md). Inputs may be zstd-compressed (recognised by content, not name).\n"
    "\n"
    "  --task NAME         pile: JSON Lines, one document per line in its \"text\" field (*.jsonl, *.jsonl.zst);\n"
    "                      wiki103: WikiText .tokens/.raw files, one document per ' = Title = ' article;\n"
    "                      text: each input file is one document\n"
    "  --input FILE...     training inputs; repeat the flag or list several files after it\n"
    "  --val-input FILE... held-out inputs: all of them form the validation split (--val-fraction is ignored)\n"
    "  --tokenizer SPEC    byte, a GPT-2 directory (encoder.json, vocab.bpe) or a tokenizer.json\n"
    "  --out DIR           output directory (created; must not hold shards already)\n"
    "  --val-fraction F    documents sent to validation, chosen by a hash of their index (default 0.005, range\n"
    "                      0 to 0.5); when that picks none, the last F of the tokens are used instead\n"
    "  --shard-tokens N    tokens per shard at most (default 100000000)\n"
    "  --threads N         tokenizer threads (default: all cores)\n"
    "  --strict            a malformed JSON line stops the run (default: skipped, counted, first 5 reported)\n";

static int prepare_usage(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("hgrn2 prepare: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nusage: %s\n", PREPARE_USAGE);
    return EXIT_USAGE;
}

int cmd_prepare(int argc, char **argv) {
    enum { O_TASK = 256, O_INPUT, O_VAL_INPUT, O_TOKENIZER, O_OUT, O_VAL_FRACTION, O_SHARD_TOKENS, O_THREADS, O_STRICT };
    static const struct option opts[] = {
        {"task", required_argument, 0, O_TASK}, {"input", required_argument, 0, O_INPUT},
        {"val-input", required_argument, 0, O_VAL_INPUT}, {"tokenizer", required_argument, 0, O_TOKENIZER},
        {"out", required_argument, 0, O_OUT}, {"val-fraction", required_argument, 0, O_VAL_FRACTION},
        {"shard-tokens", required_argument, 0, O_SHARD_TOKENS}, {"threads", required_argument, 0, O_THREADS},
        {"strict", no_argument, 0, O_STRICT}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *task_name = NULL, *spec = NULL, *out = NULL;
    const char **inputs = xmalloc((size_t)argc * sizeof *inputs), **val_inputs = xmalloc((size_t)argc * sizeof *val_inputs);
    int ninputs = 0, nval_inputs = 0, list = 0, strict = 0, rc = 0;
    double val_fraction = 0.005;
    long long shard_tokens = 100000000, threads = sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1) threads = 1;
    optind = 0;
    opterr = 0;
    int c;
    // "-" makes getopt return each non-option argument in place (as 1), so "--input a b --val-input c"
    // assigns each file to the list flag before it.
    while ((c = getopt_long(argc, argv, "-:h", opts, NULL)) != -1) {
        if (c != 1) list = 0;
        switch (c) {
        case 1:
            if (list == 1) inputs[ninputs++] = optarg;
            else if (list == 2) val_inputs[nval_inputs++] = optarg;
            else { rc = prepare_usage("unexpected argument '%s' (input files follow --input or --val-input)", optarg); goto done; }
            break;
        case O_INPUT: inputs[ninputs++] = optarg; list = 1; break;
        case O_VAL_INPUT: val_inputs[nval_inputs++] = optarg; list = 2; break;
        case O_TASK: task_name = optarg; break;
        case O_TOKENIZER: spec = optarg; break;
        case O_OUT: out = optarg; break;
        case O_VAL_FRACTION:
            if (parse_f64(optarg, 0, 0.5, &val_fraction)) { rc = prepare_usage("--val-fraction needs a number in [0, 0.5], got '%s'", optarg); goto done; }
            break;
        case O_SHARD_TOKENS:
            if (parse_i64(optarg, 1, 1000000000000LL, &shard_tokens)) { rc = prepare_usage("--shard-tokens needs an integer in [1, 1e12], got '%s'", optarg); goto done; }
            break;
        case O_THREADS:
            if (parse_i64(optarg, 1, 1024, &threads)) { rc = prepare_usage("--threads needs an integer in [1, 1024], got '%s'", optarg); goto done; }
            break;
        case O_STRICT: strict = 1; break;
        case 'h':
            printf("usage: %s\n\n%s", PREPARE_USAGE, PREPARE_HELP);
            goto done;
        case ':': rc = prepare_usage("option '%s' needs a value", argv[optind - 1]); goto done;
        default: rc = prepare_usage("unknown option '%s'", argv[optind - 1]); goto done;
        }
    }
    int task = -1;
    if (!task_name) { rc = prepare_usage("--task is required"); goto done; }
    if (!strcmp(task_name, "pile")) task = TASK_PILE;
    else if (!strcmp(task_name, "wiki103")) task = TASK_WIKI;
    else if (!strcmp(task_name, "text")) task = TASK_TEXT;
    else { rc = prepare_usage("--task must be pile, wiki103 or text, got '%s'", task_name); goto done; }
    if (!ninputs) { rc = prepare_usage("--input is required"); goto done; }
    if (!spec) { rc = prepare_usage("--tokenizer is required"); goto done; }
    if (!out) { rc = prepare_usage("--out is required"); goto done; }
    for (int i = 0; i < ninputs + nval_inputs; i++) {
        const char *f = i < ninputs ? inputs[i] : val_inputs[i - ninputs];
        struct stat st;
        if (stat(f, &st) != 0 || access(f, R_OK) != 0) die("cannot read input %s: %s", f, strerror(errno));
        if (S_ISDIR(st.st_mode)) die("input %s is a directory; pass the files in it", f);
    }

    Tokenizer *tok = tokenizer_load(spec);
    int vocab = tokenizer_vocab_size(tok);
    if (vocab < 1) die("tokenizer %s reports a vocabulary of %d", spec, vocab);
    mkdir_p(out);
    const char *old = existing_shard(out);
    if (old) die("%s already holds shards (%s); remove them or choose another --out", out, old);

    Prep p = {0};
    p.tok = tok;
    p.eot = tokenizer_eot(tok);
    p.task = task;
    p.strict = strict;
    p.have_val_inputs = nval_inputs > 0;
    p.val_fraction = val_fraction;
    p.njobs = 2 * (int)threads + 4;
    p.jobs = xcalloc((size_t)p.njobs, sizeof *p.jobs);
    p.tty = isatty(2);
    p.t0 = p.last_print = now_s();
    SplitOut proto = {.dir = out, .tokname = tokenizer_name(tok), .vocab = (uint32_t)vocab, .max_tokens = (uint64_t)shard_tokens};
    p.train = proto;
    p.train.split = "train";
    p.val = proto;
    p.val.split = "val";
    if (pthread_mutex_init(&p.mu, NULL) || pthread_cond_init(&p.cv, NULL)) die("prepare: cannot create a mutex");
    pthread_t *workers = xmalloc((size_t)threads * sizeof *workers), writer;
    int e = pthread_create(&writer, NULL, prep_writer, &p);
    for (int i = 0; !e && i < threads; i++) e = pthread_create(&workers[i], NULL, prep_worker, &p);
    if (e) die("prepare: cannot start threads: %s", strerror(e));

    for (int i = 0; i < ninputs; i++) read_input(&p, inputs[i], 0);
    for (int i = 0; i < nval_inputs; i++) read_input(&p, val_inputs[i], 1);
    if (p.cur) rd_submit(&p);
    pthread_mutex_lock(&p.mu);
    p.reader_done = 1;
    pthread_cond_broadcast(&p.cv);
    pthread_mutex_unlock(&p.mu);
    for (int i = 0; i < threads; i++) pthread_join(workers[i], NULL);
    pthread_join(writer, NULL);

    out_close(&p.train);
    if (!p.have_val_inputs && val_fraction > 0 && p.val.total == 0 && p.train.total >= 2) {
        double want = ceil(val_fraction * (double)p.train.total);
        uint64_t k = want < 1 ? 1 : (uint64_t)want;
        if (k > p.train.total - 1) k = p.train.total - 1;
        move_tail_to_val(&p.train, &p.val, k);
    }
    out_close(&p.val);
    if (p.train.total == 0) die("no tokens for the training split: the inputs hold no documents%s",
                                p.malformed ? " (every JSON line was malformed)" : "");
    SplitOut *outs[2] = {&p.train, &p.val};
    finalize_outputs(outs, p.val.nshards ? 2 : 1);
    write_meta(out, spec, tokenizer_name(tok), task_name, &p.train, &p.val);
    progress(&p, 1);
    double el = now_s() - p.t0;
    printf("prepare: %llu documents, %llu tokens: train %llu in %zu shard%s, val %llu in %zu shard%s; %.1f MB text in %.1f s "
           "(%.1f MB/s); %llu malformed line%s skipped; wrote %s\n",
           (unsigned long long)p.ndocs, (unsigned long long)(p.train.total + p.val.total), (unsigned long long)p.train.total,
           p.train.nshards, p.train.nshards == 1 ? "" : "s", (unsigned long long)p.val.total, p.val.nshards,
           p.val.nshards == 1 ? "" : "s", (double)p.bytes_text / 1e6, el, (double)p.bytes_text / 1e6 / (el > 1e-9 ? el : 1e-9),
           (unsigned long long)p.malformed, p.malformed == 1 ? "" : "s", out);
    fflush(stdout);

    for (int i = 0; i < p.njobs; i++) {
        free(p.jobs[i].text.data);
        free(p.jobs[i].ids.ids);
        free(p.jobs[i].segs);
    }
    free(p.jobs);
    SplitOut *all[2] = {&p.train, &p.val};
    for (int o = 0; o < 2; o++) {
        for (size_t i = 0; i < all[o]->nshards; i++) free(all[o]->parts[i]);
        free(all[o]->parts);
        free(all[o]->counts);
    }
    free(p.doc.data);
    free(p.key.data);
    free(workers);
    pthread_mutex_destroy(&p.mu);
    pthread_cond_destroy(&p.cv);
    tokenizer_free(tok);
done:
    free(inputs);
    free(val_inputs);
    return rc;
}
