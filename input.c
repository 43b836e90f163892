// input.c: the input files of prepare: plain or zstd streams read in constant memory, and the line reader.
// Shared by prepare.c (text corpora) and lra.c (the Long Range Arena's files). Policies: docs/shards.md.
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include <zstd.h>

#include "data.h"
#include "input.h"

// ----------------------------------------------------------------------------------------------------------
// Input files, plain or zstd (told apart by the magic number, not the name), read as a byte stream in
// constant memory.

static size_t raw_read(InStream *s, void *buf, size_t n) {
    for (;;) {
        ssize_t r = read(s->fd, buf, n);
        if (r >= 0) {
            s->consumed += (uint64_t)r;
            if (s->bytes_in) __atomic_fetch_add(s->bytes_in, (uint64_t)r, __ATOMIC_RELAXED);
            return (size_t)r;
        }
        if (errno != EINTR) die("reading %s failed: %s", s->path, strerror(errno));
    }
}

void input_open(InStream *s, const char *path, uint64_t *bytes_in) {
    memset(s, 0, sizeof *s);
    s->path = path;
    s->bytes_in = bytes_in;
    if (!strcmp(path, "-")) {
        // standard input, which the caller allowed (prepare's text corpora): read as it comes, to its end
        s->path = "standard input";
        s->fd = dup(STDIN_FILENO);
        if (s->fd < 0) die("cannot read standard input: %s", strerror(errno));
    } else {
        // Callers refuse anything but regular files before reading; O_NONBLOCK and fstat catch a path replaced
        // since (a FIFO would block this open, a device never end).
        s->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        if (s->fd < 0) die("cannot open input %s: %s", path, strerror(errno));
        struct stat st;
        if (fstat(s->fd, &st) != 0) die("cannot stat input %s: %s", path, strerror(errno));
        if (!S_ISREG(st.st_mode)) die("input %s is not a regular file", path);
    }
    s->in_cap = ZSTD_DStreamInSize();
    s->in = xmalloc(s->in_cap);
    size_t got = 0;
    while (got < 4) {
        size_t r = raw_read(s, s->in + got, 4 - got);
        if (!r) break;
        got += r;
    }
    uint32_t magic = got == 4 ? le_get_u32(s->in) : 0;
    s->zstd = magic == ZSTD_MAGICNUMBER || (magic & ZSTD_MAGIC_SKIPPABLE_MASK) == ZSTD_MAGIC_SKIPPABLE_START;
    s->zin = (ZSTD_inBuffer){s->in, got, 0};
    s->frame_done = 1;
    if (s->zstd && !(s->dctx = ZSTD_createDCtx())) die("%s: cannot create a zstd decompression context (out of memory)", path);
}

// Up to n bytes of the input's content; 0 at its end. Dies on a corrupted or truncated zstd stream.
size_t input_read(InStream *s, uint8_t *buf, size_t n) {
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

void input_close(InStream *s) {
    close(s->fd);
    ZSTD_freeDCtx(s->dctx);
    free(s->in);
}

// ----------------------------------------------------------------------------------------------------------
// The line reader

enum { LR_LINE, LR_SKIP, LR_PARTS };   // LineReader.state: inside a line, or a longer one

#define LINE_READ_BYTES (1u << 20)   // the first buffer, and so the size of most reads
#define MEM_READ_BYTES 4096

static size_t lr_fill(LineReader *lr, uint8_t *dst, size_t room) {
    if (lr->in) return input_read(lr->in, dst, room);
    size_t k = lr->mem_n - lr->mem_pos;
    if (k > room) k = room;
    if (k > MEM_READ_BYTES) k = MEM_READ_BYTES;
    if (k) memcpy(dst, lr->mem + lr->mem_pos, k);
    lr->mem_pos += k;
    return k;
}

int next_line(LineReader *lr, const char **line, size_t *n) {
    for (;;) {
        uint8_t *start = lr->buf ? lr->buf + lr->pos : NULL;   // no buffer yet before the first read
        size_t avail = lr->len - lr->pos, unscanned = avail - lr->scan;
        uint8_t *nl = unscanned ? memchr(start + lr->scan, '\n', unscanned) : NULL;
        size_t take = nl ? (size_t)(nl + 1 - start) : avail;   // this line's bytes in the buffer, '\n' included
        if (lr->state == LR_LINE && (nl ? take - 1 : avail) > lr->max) {
            lr->lineno++;
            lr->state = lr->parts ? LR_PARTS : LR_SKIP;
            if (lr->state == LR_SKIP) {
                *line = NULL;
                *n = 0;
                return LINE_SKIPPED;
            }
        }
        if (lr->state != LR_LINE && (take || lr->eof)) {
            lr->pos += take;
            lr->bytes += take;
            lr->scan = 0;
            if (nl || lr->eof) lr->state = LR_LINE;
            if (take && lr->parts) {
                *line = (const char *)start;
                *n = take;
                return LINE_PART;
            }
            continue;
        }
        if (lr->state == LR_LINE && take && (nl || lr->eof)) {
            *line = (const char *)start;
            *n = take;
            lr->pos += take;
            lr->bytes += take;
            lr->scan = 0;
            lr->lineno++;
            return LINE_WHOLE;
        }
        if (lr->eof) return LINE_END;
        // No line end in the buffer: keep what there is of the line at the front and read more.
        lr->scan = avail;
        if (lr->pos) {
            memmove(lr->buf, start, avail);
            lr->len = avail;
            lr->pos = 0;
        }
        if (lr->len == lr->cap) {   // only while the line fits in max, so the buffer stays below 2 max
            lr->cap = lr->cap ? 2 * lr->cap : LINE_READ_BYTES;
            lr->buf = xrealloc(lr->buf, lr->cap);
        }
        size_t got = lr_fill(lr, lr->buf + lr->len, lr->cap - lr->len);
        if (!got) lr->eof = 1;
        lr->len += got;
    }
}
