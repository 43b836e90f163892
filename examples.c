// examples.c: example files (labelled documents of token ids): the format (encoding and checks), the
// writer, the reader and the prefetching batch loader. The format and what a reader checks: docs/examples.md.
#define _GNU_SOURCE
#include <unistd.h>
#include <zstd.h>

#include "data.h"
#include "examples.h"

// ----------------------------------------------------------------------------------------------------------
// The layout: little-endian fields (data.h's le_put/le_get), a fixed header, the description, the frames,
// the index at the end.

void examples_header_encode(const ExamplesHeader *h, uint8_t out[EXAMPLES_HEADER_BYTES]) {
    memset(out, 0, EXAMPLES_HEADER_BYTES);
    memcpy(out, EXAMPLES_MAGIC, 8);
    le_put_u32(out + 8, h->version);
    le_put_u32(out + 12, h->token_bytes);
    le_put_u32(out + 16, h->vocab_size);
    le_put_u32(out + 20, h->pad_id);
    le_put_u32(out + 24, h->nclasses);
    le_put_u32(out + 28, h->ndoc);
    le_put_u32(out + 32, h->max_len);
    le_put_u32(out + 36, h->desc_len);
    le_put_u64(out + 40, h->nexamples);
    le_put_u64(out + 48, h->ntokens);
    le_put_u64(out + 56, h->nframes);
    le_put_u64(out + 64, h->index_offset);
    // bytes 72..87 reserved, 0
    le_put_u64(out + 88, h->checksum);
}

// The bytes of one example's record: its label, and each document's length and tokens.
static uint64_t record_bytes(uint64_t ndoc, uint64_t tokens, uint64_t token_bytes) { return 4 + 4 * ndoc + tokens * token_bytes; }

int examples_header_decode(const uint8_t in[EXAMPLES_HEADER_BYTES], uint64_t file_size, ExamplesHeader *h, char *err,
                           size_t errlen) {
    if (memcmp(in, EXAMPLES_MAGIC, 8) != 0) {
        char found[40];
        for (int i = 0; i < 8; i++) snprintf(found + 2 * i, 3, "%02x", in[i]);
        snprintf(err, errlen, "not an example file: bad magic (expected \"%s\", found bytes %s)", EXAMPLES_MAGIC, found);
        return -1;
    }
    h->version = le_get_u32(in + 8);
    h->token_bytes = le_get_u32(in + 12);
    h->vocab_size = le_get_u32(in + 16);
    h->pad_id = le_get_u32(in + 20);
    h->nclasses = le_get_u32(in + 24);
    h->ndoc = le_get_u32(in + 28);
    h->max_len = le_get_u32(in + 32);
    h->desc_len = le_get_u32(in + 36);
    h->nexamples = le_get_u64(in + 40);
    h->ntokens = le_get_u64(in + 48);
    h->nframes = le_get_u64(in + 56);
    h->index_offset = le_get_u64(in + 64);
    h->checksum = le_get_u64(in + 88);
    if (h->version != EXAMPLES_VERSION) {
        snprintf(err, errlen, "unsupported example file version: expected %d, found %u (re-run hgrn2 prepare with this build)",
                 EXAMPLES_VERSION, h->version);
        return -1;
    }
    for (int i = 72; i < 88; i++)
        if (in[i]) { snprintf(err, errlen, "corrupted header: reserved byte %d is %u, expected 0", i, in[i]); return -1; }
    if (h->vocab_size == 0 || h->vocab_size > (uint32_t)INT32_MAX) {
        snprintf(err, errlen, "corrupted header: vocabulary size %u (expected 1 to %d)", h->vocab_size, INT32_MAX);
        return -1;
    }
    if (!(h->token_bytes == 4 || (h->token_bytes == 2 && h->vocab_size <= 65536))) {
        snprintf(err, errlen, "corrupted header: token width %u bytes for a vocabulary of %u", h->token_bytes, h->vocab_size);
        return -1;
    }
    if (h->pad_id >= h->vocab_size) {
        snprintf(err, errlen, "corrupted header: pad id %u is not below the vocabulary size %u", h->pad_id, h->vocab_size);
        return -1;
    }
    if (h->nclasses == 0 || h->nclasses > EXAMPLES_CLASSES_MAX) {
        snprintf(err, errlen, "corrupted header: %u classes (expected 1 to %u)", h->nclasses, EXAMPLES_CLASSES_MAX);
        return -1;
    }
    if (h->ndoc < 1 || h->ndoc > EXAMPLES_DOCS_MAX) {
        snprintf(err, errlen, "corrupted header: %u documents per example (expected 1 or 2)", h->ndoc);
        return -1;
    }
    if (h->max_len > EXAMPLES_LEN_MAX || (h->max_len == 0) != (h->nexamples == 0)) {
        snprintf(err, errlen, "corrupted header: longest document of %u tokens for %llu examples (expected 1 to %u, 0 for "
                 "none)", h->max_len, (unsigned long long)h->nexamples, EXAMPLES_LEN_MAX);
        return -1;
    }
    if (h->desc_len > EXAMPLES_DESC_MAX) {
        snprintf(err, errlen, "corrupted header: vocabulary description of %u bytes (at most %u)", h->desc_len, EXAMPLES_DESC_MAX);
        return -1;
    }
    uint64_t data_start = EXAMPLES_HEADER_BYTES + (uint64_t)h->desc_len;
    if (file_size < data_start || h->index_offset < data_start) {
        snprintf(err, errlen, "the vocabulary description of %u bytes runs past the frame index at byte %llu or the end of "
                 "the file (%llu bytes): the file is truncated or corrupted", h->desc_len, (unsigned long long)h->index_offset,
                 (unsigned long long)file_size);
        return -1;
    }
    // The index is the file's tail: its offset and the frame count fix the file size exactly.
    if (h->index_offset > file_size ||
        h->nframes > (file_size - h->index_offset) / EXAMPLES_INDEX_ENTRY_BYTES ||
        file_size - h->index_offset != h->nframes * EXAMPLES_INDEX_ENTRY_BYTES) {
        snprintf(err, errlen, "file is %llu bytes but its header says %llu (frame index at byte %llu, %llu frames): "
                 "the file is truncated or corrupted", (unsigned long long)file_size,
                 (unsigned long long)(h->index_offset + h->nframes * EXAMPLES_INDEX_ENTRY_BYTES),
                 (unsigned long long)h->index_offset, (unsigned long long)h->nframes);
        return -1;
    }
    // Every frame holds 1 to EXAMPLES_FRAME_EXAMPLES_MAX examples in at least one byte; every document 1 to
    // max_len tokens.
    uint64_t frame_bytes = h->index_offset - data_start;
    typedef unsigned __int128 u128;   // products of header fields, which may be anything
    if (h->nframes > frame_bytes || h->nframes > h->nexamples ||
        (u128)h->nexamples > (u128)h->nframes * EXAMPLES_FRAME_EXAMPLES_MAX) {
        snprintf(err, errlen, "corrupted header: %llu examples in %llu frames of %llu bytes", (unsigned long long)h->nexamples,
                 (unsigned long long)h->nframes, (unsigned long long)frame_bytes);
        return -1;
    }
    if ((u128)h->ntokens < (u128)h->nexamples * h->ndoc || (u128)h->ntokens > (u128)h->nexamples * h->ndoc * h->max_len) {
        snprintf(err, errlen, "corrupted header: %llu tokens in %llu examples of %u document%s of 1 to %u tokens",
                 (unsigned long long)h->ntokens, (unsigned long long)h->nexamples, h->ndoc, h->ndoc == 1 ? "" : "s", h->max_len);
        return -1;
    }
    return 0;
}

uint64_t examples_checksum(const uint8_t header[EXAMPLES_HEADER_BYTES], const char *desc, size_t desc_len,
                           const uint8_t *index, uint64_t nframes) {
    uint64_t h = data_fnv1a(DATA_FNV_INIT, header, 88);
    h = data_fnv1a(h, desc, desc_len);
    return data_fnv1a(h, index, (size_t)(nframes * EXAMPLES_INDEX_ENTRY_BYTES));
}

static void index_encode(uint8_t *p, uint64_t offset, uint64_t csize, uint32_t count, uint32_t raw) {
    le_put_u64(p, offset);
    le_put_u64(p + 8, csize);
    le_put_u32(p + 16, count);
    le_put_u32(p + 20, raw);
}

// ----------------------------------------------------------------------------------------------------------
// The writer: records are gathered into a frame of about EXAMPLES_FRAME_BYTES, compressed and appended; the
// index goes at the end; the header, first a placeholder, is rewritten once the counts are known.

struct ExampleWriter {
    char *path, *tmp, *desc;
    FILE *f;
    ExamplesHeader h;
    ZSTD_CCtx *cctx;
    uint8_t *raw, *cbuf;
    size_t nraw, rawcap, ccap;
    uint32_t in_frame;          // examples in the frame being filled
    uint64_t pos;               // file offset of the next frame
    uint8_t *index;
    uint64_t index_cap;         // entries
};

static void write_all(const void *p, size_t n, FILE *f, const char *path) {
    if (n && fwrite(p, 1, n, f) != n) die("writing %s failed: %s", path, strerror(errno));
}

ExampleWriter *example_writer_open(const char *path, const ExampleSpec *spec) {
    size_t desc_len = spec->desc ? strlen(spec->desc) : 0;
    if (desc_len > EXAMPLES_DESC_MAX) die("%s: vocabulary description of %zu bytes is longer than %u", path, desc_len, EXAMPLES_DESC_MAX);
    if (spec->vocab_size == 0 || spec->vocab_size > (uint32_t)INT32_MAX || spec->pad_id >= spec->vocab_size)
        die("%s: vocabulary of %u with pad id %u", path, spec->vocab_size, spec->pad_id);
    if (spec->nclasses == 0 || spec->nclasses > EXAMPLES_CLASSES_MAX) die("%s: %u classes", path, spec->nclasses);
    if (spec->ndoc < 1 || spec->ndoc > EXAMPLES_DOCS_MAX) die("%s: %d documents per example", path, spec->ndoc);
    ExampleWriter *w = xcalloc(1, sizeof *w);
    w->path = xstrdup(path);
    w->tmp = xasprintf("%s.tmp", path);
    w->desc = xstrdup(spec->desc ? spec->desc : "");
    w->h = (ExamplesHeader){.version = EXAMPLES_VERSION, .token_bytes = spec->vocab_size <= 65536 ? 2 : 4,
                            .vocab_size = spec->vocab_size, .pad_id = spec->pad_id, .nclasses = spec->nclasses,
                            .ndoc = (uint32_t)spec->ndoc, .desc_len = (uint32_t)desc_len};
    w->cctx = data_zstd_cctx(path);
    data_cleanup_add(w->tmp);
    w->f = data_create_file(w->tmp);
    uint8_t hdr[EXAMPLES_HEADER_BYTES] = {0};
    write_all(hdr, sizeof hdr, w->f, w->tmp);
    write_all(w->desc, desc_len, w->f, w->tmp);
    w->pos = EXAMPLES_HEADER_BYTES + desc_len;
    return w;
}

static void writer_flush_frame(ExampleWriter *w) {
    if (!w->in_frame) return;
    size_t need = ZSTD_compressBound(w->nraw);
    if (need > w->ccap) w->cbuf = xrealloc(w->cbuf, w->ccap = need);
    size_t c = ZSTD_compress2(w->cctx, w->cbuf, w->ccap, w->raw, w->nraw);
    if (ZSTD_isError(c)) die("%s: zstd compression of frame %llu failed: %s", w->tmp, (unsigned long long)w->h.nframes, ZSTD_getErrorName(c));
    write_all(w->cbuf, c, w->f, w->tmp);
    if (w->h.nframes == w->index_cap) {
        w->index_cap = w->index_cap ? 2 * w->index_cap : 64;
        w->index = xrealloc(w->index, (size_t)w->index_cap * EXAMPLES_INDEX_ENTRY_BYTES);
    }
    index_encode(w->index + w->h.nframes * EXAMPLES_INDEX_ENTRY_BYTES, w->pos, c, w->in_frame, (uint32_t)w->nraw);
    w->h.nframes++;
    w->pos += c;
    w->nraw = 0;
    w->in_frame = 0;
}

void example_writer_add(ExampleWriter *w, int32_t label, const int32_t *const *docs, const uint32_t *lens) {
    unsigned long long k = (unsigned long long)w->h.nexamples;
    if (label < 0 || (uint32_t)label >= w->h.nclasses) die("%s: example %llu: label %d is outside [0, %u)", w->path, k, label, w->h.nclasses);
    uint64_t tokens = 0;
    for (uint32_t d = 0; d < w->h.ndoc; d++) {
        if (lens[d] < 1 || lens[d] > EXAMPLES_LEN_MAX)
            die("%s: example %llu: document %u of %u tokens (expected 1 to %u)", w->path, k, d, lens[d], EXAMPLES_LEN_MAX);
        tokens += lens[d];
    }
    size_t rec = (size_t)record_bytes(w->h.ndoc, tokens, w->h.token_bytes);
    if (w->nraw + rec > w->rawcap) {
        w->rawcap = w->nraw + rec > 2 * w->rawcap ? w->nraw + rec : 2 * w->rawcap;
        w->raw = xrealloc(w->raw, w->rawcap);
    }
    uint8_t *p = w->raw + w->nraw;
    le_put_u32(p, (uint32_t)label);
    p += 4;
    for (uint32_t d = 0; d < w->h.ndoc; d++) {
        le_put_u32(p, lens[d]);
        p += 4;
        for (uint32_t t = 0; t < lens[d]; t++) {
            int32_t id = docs[d][t];
            if (id < 0 || (uint32_t)id >= w->h.vocab_size)
                die("%s: example %llu: token id %d is outside the vocabulary [0, %u)", w->path, k, id, w->h.vocab_size);
            if (w->h.token_bytes == 2) {
                p[0] = (uint8_t)id;
                p[1] = (uint8_t)(id >> 8);
                p += 2;
            } else {
                le_put_u32(p, (uint32_t)id);
                p += 4;
            }
        }
        if (lens[d] > w->h.max_len) w->h.max_len = lens[d];
    }
    w->nraw += rec;
    w->in_frame++;
    w->h.nexamples++;
    w->h.ntokens += tokens;
    if (w->nraw >= EXAMPLES_FRAME_BYTES || w->in_frame == EXAMPLES_FRAME_EXAMPLES_MAX) writer_flush_frame(w);
}

uint64_t example_writer_count(const ExampleWriter *w) { return w->h.nexamples; }

static void writer_free(ExampleWriter *w) {
    ZSTD_freeCCtx(w->cctx);
    free(w->path);
    free(w->tmp);
    free(w->desc);
    free(w->raw);
    free(w->cbuf);
    free(w->index);
    free(w);
}

void example_writer_close(ExampleWriter *w) {
    writer_flush_frame(w);
    w->h.index_offset = w->pos;
    write_all(w->index, (size_t)(w->h.nframes * EXAMPLES_INDEX_ENTRY_BYTES), w->f, w->tmp);
    uint8_t hdr[EXAMPLES_HEADER_BYTES];
    examples_header_encode(&w->h, hdr);
    w->h.checksum = examples_checksum(hdr, w->desc, w->h.desc_len, w->index, w->h.nframes);
    examples_header_encode(&w->h, hdr);
    if (fseeko(w->f, 0, SEEK_SET) != 0) die("seeking in %s failed: %s", w->tmp, strerror(errno));
    write_all(hdr, sizeof hdr, w->f, w->tmp);
    FILE *f = w->f;
    w->f = NULL;
    data_commit_file(f, w->tmp, w->path);
    writer_free(w);
}

void example_writer_abort(ExampleWriter *w) {
    if (w->f) fclose(w->f);
    unlink(w->tmp);
    data_cleanup_remove(w->tmp);
    writer_free(w);
}

static const char *const SPLIT_NAMES[3] = {"train", "val", "test"};

void split_files_open(SplitFile f[3], const char *dir, const ExampleSpec *spec) {
    for (int s = 0; s < 3; s++) {
        f[s].final = xasprintf("%s/%s" EXAMPLES_SUFFIX, dir, SPLIT_NAMES[s]);
        f[s].part = xasprintf("%s.part", f[s].final);
        data_cleanup_add(f[s].part);
        f[s].w = example_writer_open(f[s].part, spec);
    }
}

void split_files_finish(SplitFile f[3]) {
    for (int s = 0; s < 3; s++) {
        example_writer_close(f[s].w);
        f[s].w = NULL;
    }
    for (int s = 0; s < 3; s++) data_cleanup_add(f[s].final);
    for (int s = 0; s < 3; s++)
        if (rename(f[s].part, f[s].final) != 0) die("renaming %s to %s failed: %s", f[s].part, f[s].final, strerror(errno));
    data_fsync_parent(f[0].final);
    for (int s = 0; s < 3; s++) {
        data_cleanup_remove(f[s].final);
        data_cleanup_remove(f[s].part);
        free(f[s].final);
        free(f[s].part);
        f[s].final = f[s].part = NULL;
    }
}

// ----------------------------------------------------------------------------------------------------------
// The reader: the header, description and index are checked at open; a frame (its size, checksum and every
// record) when it is first decompressed, and the last one stays cached for the reads that follow.

struct Examples {
    char *path, *desc;
    int fd;
    ExamplesHeader h;
    uint64_t *off, *csize, *first;   // per frame; first[nframes] = nexamples
    uint32_t *raw_bytes;
    uint8_t *cbuf, *raw;
    size_t ccap, rawcap;
    uint64_t *rec;                   // the cached frame's record offsets, one per example
    uint64_t cached;                 // its index, or UINT64_MAX
    ZSTD_DCtx *dctx;
};

Examples *example_open_file(const char *path) {
    uint64_t size;
    int fd = data_open_regular(path, "example file", &size);
    if (size < EXAMPLES_HEADER_BYTES)
        die("%s: truncated header: the file is %llu bytes, an example file header is %d", path, (unsigned long long)size,
            EXAMPLES_HEADER_BYTES);
    uint8_t hdr[EXAMPLES_HEADER_BYTES];
    data_pread(fd, hdr, sizeof hdr, 0, path);
    Examples *e = xcalloc(1, sizeof *e);
    char err[400];
    if (examples_header_decode(hdr, size, &e->h, err, sizeof err) != 0) die("%s: %s", path, err);
    ExamplesHeader *h = &e->h;
    e->path = xstrdup(path);
    e->fd = fd;
    // Every size below was checked against the file's size by the decode: nothing allocated here is larger
    // than the file.
    e->desc = xmalloc((size_t)h->desc_len + 1);
    data_pread(fd, e->desc, h->desc_len, EXAMPLES_HEADER_BYTES, path);
    e->desc[h->desc_len] = 0;
    if (strlen(e->desc) != h->desc_len) die("%s: corrupted header: the vocabulary description holds a NUL byte", path);
    size_t index_bytes = (size_t)(h->nframes * EXAMPLES_INDEX_ENTRY_BYTES);
    uint8_t *index = xmalloc(index_bytes);
    data_pread(fd, index, index_bytes, h->index_offset, path);
    uint64_t hash = examples_checksum(hdr, e->desc, h->desc_len, index, h->nframes);
    if (hash != h->checksum) {
        free(index);
        die("%s: header checksum mismatch (stored %016llx, computed %016llx): the header, description or frame index is "
            "corrupted", path, (unsigned long long)h->checksum, (unsigned long long)hash);
    }
    size_t nf = (size_t)h->nframes;
    e->off = xmalloc(nf * sizeof *e->off);
    e->csize = xmalloc(nf * sizeof *e->csize);
    e->first = xmalloc((nf + 1) * sizeof *e->first);
    e->raw_bytes = xmalloc(nf * sizeof *e->raw_bytes);
    // Frames lie back to back between the description and the index; each holds 1 to the maximum examples,
    // in as many bytes as records of documents of 1 to max_len tokens can take; together they hold exactly
    // the examples and tokens of the header.
    uint64_t expect = EXAMPLES_HEADER_BYTES + (uint64_t)h->desc_len, examples = 0, raw_total = 0;
    for (size_t i = 0; i < nf; i++) {
        const uint8_t *p = index + i * EXAMPLES_INDEX_ENTRY_BYTES;
        e->off[i] = le_get_u64(p);
        e->csize[i] = le_get_u64(p + 8);
        uint32_t count = le_get_u32(p + 16), raw = le_get_u32(p + 20);
        e->raw_bytes[i] = raw;
        unsigned long long fi = (unsigned long long)i;
        if (e->off[i] != expect)
            die("%s: corrupted frame index: frame %llu starts at byte %llu, expected %llu", path, fi,
                (unsigned long long)e->off[i], (unsigned long long)expect);
        if (e->csize[i] == 0 || e->csize[i] > h->index_offset - e->off[i])
            die("%s: corrupted frame index: frame %llu of %llu bytes at byte %llu runs past the frame data, which ends at "
                "byte %llu", path, fi, (unsigned long long)e->csize[i], (unsigned long long)e->off[i],
                (unsigned long long)h->index_offset);
        uint64_t lo = (uint64_t)count * record_bytes(h->ndoc, h->ndoc, h->token_bytes);
        uint64_t hi = (uint64_t)count * record_bytes(h->ndoc, (uint64_t)h->ndoc * h->max_len, h->token_bytes);
        if (count == 0 || count > EXAMPLES_FRAME_EXAMPLES_MAX || raw < lo || raw > hi || raw > EXAMPLES_FRAME_RAW_MAX)
            die("%s: corrupted frame index: frame %llu holds %u examples in %u bytes (expected 1 to %d examples, and for "
                "those %llu to %llu bytes, at most %u)", path, fi, count, raw, EXAMPLES_FRAME_EXAMPLES_MAX,
                (unsigned long long)lo, (unsigned long long)hi, EXAMPLES_FRAME_RAW_MAX);
        e->first[i] = examples;
        examples += count;
        raw_total += raw;
        expect = e->off[i] + e->csize[i];
    }
    free(index);
    e->first[nf] = examples;
    if (expect != h->index_offset)
        die("%s: corrupted frame index: the frames end at byte %llu but the index starts at byte %llu", path,
            (unsigned long long)expect, (unsigned long long)h->index_offset);
    if (examples != h->nexamples ||
        (unsigned __int128)raw_total != (unsigned __int128)record_bytes(h->ndoc, 0, 0) * h->nexamples +
                                            (unsigned __int128)h->ntokens * h->token_bytes)
        die("%s: corrupted frame index: the frames hold %llu examples in %llu bytes, the header says %llu examples of %llu "
            "tokens", path, (unsigned long long)examples, (unsigned long long)raw_total, (unsigned long long)h->nexamples,
            (unsigned long long)h->ntokens);
    e->cached = UINT64_MAX;
    return e;
}

Examples *example_open(const char *dir, const char *split) {
    char *path = xasprintf("%s/%s" EXAMPLES_SUFFIX, dir, split);
    if (!file_exists(path)) die("%s not found: no %s split in %s (run hgrn2 prepare with an LRA task)", path, split, dir);
    Examples *e = example_open_file(path);
    free(path);
    return e;
}

uint64_t example_count(const Examples *e) { return e->h.nexamples; }
uint64_t example_ntokens(const Examples *e) { return e->h.ntokens; }
uint32_t example_vocab(const Examples *e) { return e->h.vocab_size; }
uint32_t example_pad(const Examples *e) { return e->h.pad_id; }
uint32_t example_classes(const Examples *e) { return e->h.nclasses; }
int example_ndoc(const Examples *e) { return (int)e->h.ndoc; }
uint32_t example_max_len(const Examples *e) { return e->h.max_len; }
const char *example_vocab_desc(const Examples *e) { return e->desc; }
const char *example_path(const Examples *e) { return e->path; }

// Decompresses frame f and walks its records: each label below the classes, each document 1 to max_len
// tokens, each id below the vocabulary, the records filling the frame exactly.
static void load_frame(Examples *e, uint64_t f) {
    const ExamplesHeader *h = &e->h;
    size_t csize = (size_t)e->csize[f], raw = e->raw_bytes[f];
    uint32_t count = (uint32_t)(e->first[f + 1] - e->first[f]);
    unsigned long long fr = (unsigned long long)f;
    if (!e->dctx && !(e->dctx = ZSTD_createDCtx())) die("%s: cannot create a zstd decompression context (out of memory)", e->path);
    if (csize > e->ccap) e->cbuf = xrealloc(e->cbuf, e->ccap = csize);
    if (raw > e->rawcap) e->raw = xrealloc(e->raw, e->rawcap = raw);
    if (!e->rec) e->rec = xmalloc(EXAMPLES_FRAME_EXAMPLES_MAX * sizeof *e->rec);
    e->cached = UINT64_MAX;
    data_pread(e->fd, e->cbuf, csize, e->off[f], e->path);
    char err[300];
    if (data_zstd_frame(e->dctx, e->cbuf, csize, e->raw, raw, err, sizeof err) != 0)
        die("%s: frame %llu (byte %llu): %s; the example file is corrupted", e->path, fr, (unsigned long long)e->off[f], err);
    size_t pos = 0;
    for (uint32_t k = 0; k < count; k++) {
        unsigned long long ex = (unsigned long long)(e->first[f] + k);
        e->rec[k] = pos;
        if (raw - pos < 4) die("%s: frame %llu: example %llu runs past the frame; the example file is corrupted", e->path, fr, ex);
        uint32_t label = le_get_u32(e->raw + pos);
        if (label >= h->nclasses)
            die("%s: frame %llu: example %llu has label %u, not below the %u classes; the example file is corrupted", e->path, fr,
                ex, label, h->nclasses);
        pos += 4;
        for (uint32_t d = 0; d < h->ndoc; d++) {
            if (raw - pos < 4) die("%s: frame %llu: example %llu runs past the frame; the example file is corrupted", e->path, fr, ex);
            uint32_t len = le_get_u32(e->raw + pos);
            pos += 4;
            if (len < 1 || len > h->max_len || (uint64_t)len * h->token_bytes > raw - pos)
                die("%s: frame %llu: example %llu: document %u of %u tokens (expected 1 to %u, within the frame); the example "
                    "file is corrupted", e->path, fr, ex, d, len, h->max_len);
            for (uint32_t t = 0; t < len; t++) {
                const uint8_t *q = e->raw + pos + (size_t)t * h->token_bytes;
                uint32_t id = h->token_bytes == 2 ? (uint32_t)q[0] | (uint32_t)q[1] << 8 : le_get_u32(q);
                if (id >= h->vocab_size)
                    die("%s: frame %llu: example %llu: token id %u is not below the vocabulary size %u; the example file is "
                        "corrupted", e->path, fr, ex, id, h->vocab_size);
            }
            pos += (size_t)len * h->token_bytes;
        }
    }
    if (pos != raw)
        die("%s: frame %llu: its records end at byte %zu of %zu; the example file is corrupted", e->path, fr, pos, raw);
    e->cached = f;
}

int32_t example_read(Examples *e, uint64_t i, int T, int32_t *tokens, int32_t *lens) {
    const ExamplesHeader *h = &e->h;
    if (T < 1) die("%s: example_read with a sequence length of %d", e->path, T);
    if (i >= h->nexamples)
        die("%s: example %llu is past the end (%llu examples)", e->path, (unsigned long long)i, (unsigned long long)h->nexamples);
    // the last frame whose first example is <= i
    uint64_t lo = 0, hi = h->nframes;
    while (hi - lo > 1) {
        uint64_t mid = (lo + hi) / 2;
        if (e->first[mid] <= i) lo = mid;
        else hi = mid;
    }
    if (e->cached != lo) load_frame(e, lo);
    const uint8_t *p = e->raw + e->rec[i - e->first[lo]];
    int32_t label = (int32_t)le_get_u32(p);
    p += 4;
    for (uint32_t d = 0; d < h->ndoc; d++) {
        uint32_t len = le_get_u32(p);
        p += 4;
        uint32_t keep = len < (uint32_t)T ? len : (uint32_t)T;
        int32_t *out = tokens + (size_t)d * (size_t)T;
        for (uint32_t t = 0; t < keep; t++)
            out[t] = (int32_t)(h->token_bytes == 2 ? (uint32_t)p[2 * t] | (uint32_t)p[2 * t + 1] << 8 : le_get_u32(p + 4 * t));
        for (uint32_t t = keep; t < (uint32_t)T; t++) out[t] = (int32_t)h->pad_id;
        lens[d] = (int32_t)keep;
        p += (size_t)len * h->token_bytes;
    }
    return label;
}

void example_close(Examples *e) {
    if (!e) return;
    close(e->fd);
    ZSTD_freeDCtx(e->dctx);
    free(e->path);
    free(e->desc);
    free(e->off);
    free(e->csize);
    free(e->first);
    free(e->raw_bytes);
    free(e->cbuf);
    free(e->raw);
    free(e->rec);
    free(e);
}

// ----------------------------------------------------------------------------------------------------------
// The batch loader. A background thread fills a small ring of batches in order; example_loader_set_state
// bumps a generation so that whatever the thread was preparing for the old position is thrown away.


void example_permutation(uint64_t seed, uint64_t epoch, uint64_t n, uint64_t *perm) {
    // Fisher-Yates driven by splitmix64 from a state that depends on the seed and the epoch alone.
    uint64_t s = mix64(mix64(seed ^ 0x6578616D706C6573ull) ^ epoch);
    for (uint64_t i = 0; i < n; i++) perm[i] = i;
    for (uint64_t i = n; i > 1; i--) {
        uint64_t j = (uint64_t)(((unsigned __int128)splitmix64(&s) * i) >> 64);
        uint64_t t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
}

typedef struct {
    int32_t *tokens, *lens, *labels;
    uint64_t *index;
    int rows;
} ExBatch;

struct ExampleLoader {
    int B, T, shuffle, ndoc;
    uint64_t n;
    Examples *ex;                 // the background thread reads frames through it; the main thread only its
                                  // fixed fields (counts, vocabulary)
    uint64_t *perm, perm_epoch, perm_seed;   // the thread's permutation of (perm_seed, perm_epoch); epoch
                                             // UINT64_MAX: none yet
    ExBatch batch[PREFETCH_SLOTS];   // the read-ahead's buffers (data.h)
    Prefetch *pf;
    ExampleLoaderState state;        // the consumer's position, under the Prefetch's lock
};

static void batch_alloc(ExBatch *b, const ExampleLoader *l) {
    size_t rows = (size_t)l->B, docs = rows * (size_t)l->ndoc;
    b->tokens = xmalloc(docs * (size_t)l->T * sizeof(int32_t));
    b->lens = xmalloc(docs * sizeof(int32_t));
    b->labels = xmalloc(rows * sizeof(int32_t));
    b->index = xmalloc(rows * sizeof(uint64_t));
}
static void batch_free(ExBatch *b) {
    free(b->tokens);
    free(b->lens);
    free(b->labels);
    free(b->index);
}

static int seq_done(const ExampleLoader *l, uint64_t pos) { return pos >= l->n; }

// The position b examples after (epoch, pos): shuffled, across epochs; sequential, at most the end.
static void advance(const ExampleLoader *l, uint64_t *epoch, uint64_t *pos, uint64_t b) {
    if (!l->shuffle) {
        *pos = l->n - *pos < b ? l->n : *pos + b;
        return;
    }
    *epoch += b / l->n;
    *pos += b % l->n;
    if (*pos >= l->n) {
        *pos -= l->n;
        (*epoch)++;
    }
}

static void produce(ExampleLoader *l, uint64_t epoch, uint64_t pos, uint64_t seed, ExBatch *b) {
    size_t T = (size_t)l->T, nd = (size_t)l->ndoc;
    int32_t pad = (int32_t)example_pad(l->ex);
    b->rows = 0;
    for (int r = 0; r < l->B; r++) {
        int32_t *tok = b->tokens + (size_t)r * nd * T, *lens = b->lens + (size_t)r * nd;
        if (!l->shuffle && seq_done(l, pos)) {
            for (size_t k = 0; k < nd * T; k++) tok[k] = pad;
            for (size_t d = 0; d < nd; d++) lens[d] = 0;
            b->labels[r] = -1;
            b->index[r] = UINT64_MAX;
            continue;
        }
        uint64_t i = pos;
        if (l->shuffle) {
            if (l->perm_epoch != epoch || l->perm_seed != seed) {
                example_permutation(seed, epoch, l->n, l->perm);
                l->perm_epoch = epoch;
                l->perm_seed = seed;
            }
            i = l->perm[pos];
        }
        b->labels[r] = example_read(l->ex, i, l->T, tok, lens);
        b->index[r] = i;
        b->rows++;
        advance(l, &epoch, &pos, 1);
    }
}

// The Prefetch's view: a position is (epoch, example in the epoch's order).
static int loader_done(void *owner, PrefetchPos at) {
    const ExampleLoader *l = owner;
    return !l->shuffle && seq_done(l, at.pos);
}
static void loader_fill(void *owner, PrefetchPos at, int slot) {
    ExampleLoader *l = owner;
    produce(l, at.epoch, at.pos, at.seed, &l->batch[slot]);
}
static PrefetchPos loader_step(void *owner, PrefetchPos at) {
    const ExampleLoader *l = owner;
    advance(l, &at.epoch, &at.pos, (uint64_t)l->B);
    return at;
}
static PrefetchPos loader_at(ExampleLoaderState s) { return (PrefetchPos){s.epoch, s.index, s.seed}; }

ExampleLoader *example_loader_open(const char *dir, const char *split, int B, int T, int shuffle, uint64_t seed) {
    if (B < 1 || T < 1 || (uint64_t)B * (uint64_t)T * EXAMPLES_DOCS_MAX > (1ull << 34))
        die("example loader for %s/%s: batch %d x sequence length %d is out of range", dir, split, B, T);
    ExampleLoader *l = xcalloc(1, sizeof *l);
    l->ex = example_open(dir, split);
    l->B = B;
    l->T = T;
    l->shuffle = shuffle != 0;
    l->ndoc = example_ndoc(l->ex);
    l->n = example_count(l->ex);
    if (l->shuffle && l->n == 0) die("%s holds no examples to train on", example_path(l->ex));
    if (l->shuffle) l->perm = xmalloc((size_t)l->n * sizeof *l->perm);
    l->perm_epoch = UINT64_MAX;
    for (int k = 0; k < PREFETCH_SLOTS; k++) batch_alloc(&l->batch[k], l);
    l->state.seed = seed;
    PrefetchOps ops = {l, &l->state, sizeof l->state, loader_done, loader_fill, loader_step};
    l->pf = prefetch_start("example loader", &ops, loader_at(l->state));
    return l;
}

int example_loader_next(ExampleLoader *l, int32_t *tokens, int32_t *lens, int32_t *labels, uint64_t *index) {
    size_t rows = (size_t)l->B, docs = rows * (size_t)l->ndoc;
    prefetch_lock(l->pf);
    if (!l->shuffle && seq_done(l, l->state.index)) {
        prefetch_unlock(l->pf);
        int32_t pad = (int32_t)example_pad(l->ex);
        for (size_t k = 0; k < docs * (size_t)l->T; k++) tokens[k] = pad;
        memset(lens, 0, docs * sizeof *lens);
        for (size_t r = 0; r < rows; r++) labels[r] = -1;
        for (size_t r = 0; index && r < rows; r++) index[r] = UINT64_MAX;
        return 0;
    }
    const ExBatch *b = &l->batch[prefetch_head(l->pf, loader_at(l->state))];
    memcpy(tokens, b->tokens, docs * (size_t)l->T * sizeof *tokens);
    memcpy(lens, b->lens, docs * sizeof *lens);
    memcpy(labels, b->labels, rows * sizeof *labels);
    if (index) memcpy(index, b->index, rows * sizeof *index);
    int got = b->rows;
    prefetch_pop(l->pf);
    advance(l, &l->state.epoch, &l->state.index, (uint64_t)l->B);
    prefetch_unlock(l->pf);
    return got;
}

const Examples *example_loader_data(const ExampleLoader *l) { return l->ex; }

ExampleLoaderState example_loader_get_state(const ExampleLoader *l) {
    ExampleLoaderState s;
    prefetch_get_state(l->pf, &s);
    return s;
}

void example_loader_set_state(ExampleLoader *l, ExampleLoaderState s) {
    if (s.index > l->n || (l->shuffle && s.index == l->n) || (!l->shuffle && s.epoch != 0))
        die("%s: a loader state at epoch %llu, example %llu does not fit this split of %llu examples (was the data "
            "prepared again?)", example_path(l->ex), (unsigned long long)s.epoch, (unsigned long long)s.index,
            (unsigned long long)l->n);
    prefetch_set_state(l->pf, &s, loader_at(s));
}

void example_loader_reset(ExampleLoader *l) {
    ExampleLoaderState s = {.seed = example_loader_get_state(l).seed};
    example_loader_set_state(l, s);
}

void example_loader_close(ExampleLoader *l) {
    if (!l) return;
    prefetch_stop(l->pf);
    for (int k = 0; k < PREFETCH_SLOTS; k++) batch_free(&l->batch[k]);
    example_close(l->ex);
    free(l->perm);
    free(l);
}
