// shard.c: token shards: the format (encoding and checks), the writer, the reader and split listing.
// Also the list of partial files removed at exit. The format and what a reader checks: docs/shards.md.
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include <zstd.h>

#include "data.h"

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

void data_cleanup_add(const char *path) {
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

void data_cleanup_remove(const char *path) {
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
// Shard layout: little-endian fields (data.h's le_put/le_get).

void shard_header_encode(const ShardHeader *h, uint8_t out[SHARD_HEADER_BYTES]) {
    memcpy(out, SHARD_MAGIC, 8);
    le_put_u32(out + 8, h->version);
    le_put_u32(out + 12, h->token_bytes);
    le_put_u32(out + 16, h->vocab_size);
    le_put_u32(out + 20, h->frame_tokens);
    le_put_u64(out + 24, h->ntokens);
    le_put_u64(out + 32, h->nframes);
    le_put_u64(out + 40, h->index_offset);
    le_put_u32(out + 48, h->name_len);
    le_put_u32(out + 52, 0);
    le_put_u64(out + 56, h->meta_hash);
}

int shard_header_decode(const uint8_t in[SHARD_HEADER_BYTES], uint64_t file_size, ShardHeader *h, char *err, size_t errlen) {
    if (memcmp(in, SHARD_MAGIC, 8) != 0) {
        char found[40];
        for (int i = 0; i < 8; i++) snprintf(found + 2 * i, 3, "%02x", in[i]);
        snprintf(err, errlen, "not a shard: bad magic (expected \"%s\", found bytes %s)", SHARD_MAGIC, found);
        return -1;
    }
    h->version = le_get_u32(in + 8);
    h->token_bytes = le_get_u32(in + 12);
    h->vocab_size = le_get_u32(in + 16);
    h->frame_tokens = le_get_u32(in + 20);
    h->ntokens = le_get_u64(in + 24);
    h->nframes = le_get_u64(in + 32);
    h->index_offset = le_get_u64(in + 40);
    h->name_len = le_get_u32(in + 48);
    h->meta_hash = le_get_u64(in + 56);
    uint32_t reserved = le_get_u32(in + 52);
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
    le_put_u64(out, offset);
    le_put_u64(out + 8, csize);
}
void shard_index_decode(const uint8_t in[SHARD_INDEX_ENTRY_BYTES], uint64_t *offset, uint64_t *csize) {
    *offset = le_get_u64(in);
    *csize = le_get_u64(in + 8);
}

uint64_t data_fnv1a(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001B3ull;
    return h;
}
uint64_t shard_meta_hash(const uint8_t header[SHARD_HEADER_BYTES], const char *name, size_t name_len,
                         const uint8_t *index, uint64_t nframes) {
    uint64_t h = data_fnv1a(DATA_FNV_INIT, header, 56);
    h = data_fnv1a(h, name, name_len);
    return data_fnv1a(h, index, (size_t)(nframes * SHARD_INDEX_ENTRY_BYTES));
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
        w->cctx[k] = data_zstd_cctx(path);
    }
    if (pthread_mutex_init(&w->mu, NULL) || pthread_cond_init(&w->go, NULL) || pthread_cond_init(&w->done, NULL))
        die("%s: cannot create a mutex", path);
    data_cleanup_add(w->tmp);
    w->f = data_create_file(w->tmp);
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
                le_put_u32(dst + 4 * k, (uint32_t)id);
        }
        w->nraw += take;
        w->h.ntokens += take;
        i += take;
        if (w->nraw == cap) writer_flush(w);
    }
}

FILE *data_create_file(const char *path) {
    // O_NONBLOCK makes the open of a FIFO without a reader fail (ENXIO) instead of waiting for one.
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NONBLOCK, 0666);
    if (fd < 0 && errno != ENXIO) die("cannot create %s: %s", path, strerror(errno));
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        data_cleanup_remove(path);   // not ours: the exit must not remove it
        die("cannot create %s: something that is not a regular file is in the way (a FIFO or a device?); remove it", path);
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) die("cannot create %s: %s", path, strerror(errno));
    FILE *f = fdopen(fd, "wb");
    if (!f) die("cannot create %s: %s", path, strerror(errno));
    return f;
}

// fsync of the directory makes the rename itself durable; some filesystems refuse it, which is harmless.
void data_fsync_parent(const char *path) {
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

// ----------------------------------------------------------------------------------------------------------
// What the binary formats of the data path share: opening a file to read, exact reads, zstd frames.

int data_open_regular(const char *path, const char *what, uint64_t *size) {
    // Opening a FIFO waits for a writer and a device may never end, so anything but a regular file is
    // refused before the open; O_NONBLOCK and the fstat after it close the window in which the path could
    // be replaced (the flag changes nothing for regular files).
    struct stat st;
    if (stat(path, &st) != 0) die("cannot open %s %s: %s", what, path, strerror(errno));
    if (!S_ISREG(st.st_mode)) die("%s %s is not a regular file", what, path);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) die("cannot open %s %s: %s", what, path, strerror(errno));
    if (fstat(fd, &st) != 0) die("cannot stat %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) die("%s %s is not a regular file", what, path);
    *size = (uint64_t)st.st_size;
    return fd;
}

void data_pread(int fd, void *buf, size_t n, uint64_t off, const char *path) {
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

ZSTD_CCtx *data_zstd_cctx(const char *path) {
    ZSTD_CCtx *c = ZSTD_createCCtx();
    if (!c) die("%s: cannot create a zstd compression context (out of memory)", path);
    size_t r = ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, 3);
    if (!ZSTD_isError(r)) r = ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
    if (!ZSTD_isError(r)) r = ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 1);
    if (ZSTD_isError(r)) die("%s: zstd: %s", path, ZSTD_getErrorName(r));
    return c;
}

int data_zstd_frame(ZSTD_DCtx *dctx, const uint8_t *src, size_t csize, void *dst, size_t bytes, char *err, size_t errlen) {
    // Exactly one zstd frame that declares our size and carries a content checksum (bit 2 of the frame
    // header descriptor, RFC 8878), or a flipped byte could go unnoticed.
    unsigned long long content = ZSTD_getFrameContentSize(src, csize);
    if (content == ZSTD_CONTENTSIZE_ERROR || csize < 5 || le_get_u32(src) != ZSTD_MAGICNUMBER) {
        snprintf(err, errlen, "not a zstd frame");
        return -1;
    }
    if (content != bytes) {
        snprintf(err, errlen, "declares %llu decompressed bytes, expected %zu",
                 content == ZSTD_CONTENTSIZE_UNKNOWN ? 0ull : content, bytes);
        return -1;
    }
    if (!(src[4] & 4)) { snprintf(err, errlen, "has no content checksum"); return -1; }
    size_t fsz = ZSTD_findFrameCompressedSize(src, csize);
    if (ZSTD_isError(fsz) || fsz != csize) {
        snprintf(err, errlen, "%s", ZSTD_isError(fsz) ? ZSTD_getErrorName(fsz) : "trailing bytes after the zstd frame");
        return -1;
    }
    size_t r = ZSTD_decompressDCtx(dctx, dst, bytes, src, csize);
    if (ZSTD_isError(r)) { snprintf(err, errlen, "zstd: %s", ZSTD_getErrorName(r)); return -1; }
    if (r != bytes) { snprintf(err, errlen, "decompressed to %zu bytes, expected %zu", r, bytes); return -1; }
    return 0;
}

void data_close_file(FILE *f, const char *path) {
    if (ferror(f) || fflush(f) != 0) die("writing %s failed: %s", path, strerror(errno));
    if (fsync(fileno(f)) != 0) die("fsync of %s failed: %s", path, strerror(errno));
    if (fclose(f) != 0) die("closing %s failed: %s", path, strerror(errno));
}

void data_commit_file(FILE *f, const char *tmp, const char *path) {
    data_close_file(f, tmp);
    if (rename(tmp, path) != 0) die("renaming %s to %s failed: %s", tmp, path, strerror(errno));
    data_cleanup_remove(tmp);
    data_fsync_parent(path);
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
    FILE *f = w->f;
    w->f = NULL;
    data_commit_file(f, w->tmp, w->path);
    writer_free(w);
}

void shard_writer_abort(ShardWriter *w) {
    if (w->f) fclose(w->f);
    unlink(w->tmp);
    data_cleanup_remove(w->tmp);
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

Shard *shard_open(const char *path) {
    uint64_t size;
    int fd = data_open_regular(path, "shard", &size);
    if (size < SHARD_HEADER_BYTES)
        die("%s: truncated header: the file is %llu bytes, a shard header is %d", path, (unsigned long long)size, SHARD_HEADER_BYTES);
    uint8_t hdr[SHARD_HEADER_BYTES];
    data_pread(fd, hdr, sizeof hdr, 0, path);
    Shard *s = xcalloc(1, sizeof *s);
    char err[400];
    if (shard_header_decode(hdr, size, &s->h, err, sizeof err) != 0) die("%s: %s", path, err);
    s->path = xstrdup(path);
    s->fd = fd;
    s->name = xmalloc(s->h.name_len + 1);
    data_pread(fd, s->name, s->h.name_len, SHARD_HEADER_BYTES, path);
    s->name[s->h.name_len] = 0;
    if (strlen(s->name) != s->h.name_len) die("%s: corrupted header: the tokenizer name holds a NUL byte", path);
    size_t index_bytes = (size_t)(s->h.nframes * SHARD_INDEX_ENTRY_BYTES);
    uint8_t *index = xmalloc(index_bytes);
    data_pread(fd, index, index_bytes, s->h.index_offset, path);
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
    data_pread(s->fd, s->cbuf, csize, s->off[f], s->path);
    char err[300];
    if (data_zstd_frame(s->dctx, s->cbuf, csize, s->raw, bytes, err, sizeof err) != 0)
        die("%s: frame %llu (byte %llu): %s; the shard is corrupted", s->path, fr, (unsigned long long)s->off[f], err);
    uint32_t V = s->h.vocab_size;
    for (size_t k = 0; k < count; k++) {
        uint32_t id = s->h.token_bytes == 2 ? (uint32_t)s->raw[2 * k] | (uint32_t)s->raw[2 * k + 1] << 8 : le_get_u32(s->raw + 4 * k);
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
char **data_split_paths(const char *dir, const char *split, size_t *n) {
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

void data_free_paths(char **p) {
    for (size_t i = 0; p && p[i]; i++) free(p[i]);
    free(p);
}

int data_has_split(const char *dir, const char *split) {
    size_t n;
    char **p = data_split_paths(dir, split, &n);
    data_free_paths(p);
    return n > 0;
}

