// fuzz_examples: the bytes as an example file of the classification tasks (example_open_file), then examples
// read through example_read: all of them when there are few, else the first, middle and last ones, each at a
// short and a long truncation length. What comes back must keep the reader's promises: a label below the
// classes, every token below the vocabulary, each document's length 1 to T, the rest of the row padding.
// Two kinds of input. One that starts like an example file ('H') is the file: its header checksum is
// recomputed before it is written out, so that the fuzzer gets past it to the frame index and the zstd
// frames (HGRN2_FUZZ_RAW=1 takes the bytes as they are). Mutated compressed frames seldom decompress, so any
// other input describes a file to build (build_file below): a few header fields and the raw records of up
// to eight frames, which the harness compresses and indexes, so that the records themselves get fuzzed.
// See fuzz.h and `make fuzz`.
#include "fuzz.h"
#include "examples.h"
#include "data.h"
#include <zstd.h>

#define LONG_T 512

// Stores the checksum example_open_file expects when the header decodes and the description and the index
// lie in the file.
static void fix_checksum(uint8_t *b, size_t size) {
    ExamplesHeader h;
    char err[400];
    if (size < EXAMPLES_HEADER_BYTES || examples_header_decode(b, size, &h, err, sizeof err) != 0) return;
    if (h.desc_len > size - EXAMPLES_HEADER_BYTES || h.index_offset > size ||
        h.nframes > (size - h.index_offset) / EXAMPLES_INDEX_ENTRY_BYTES) return;
    uint64_t sum = examples_checksum(b, (const char *)b + EXAMPLES_HEADER_BYTES, h.desc_len, b + h.index_offset, h.nframes);
    for (int i = 0; i < 8; i++) b[88 + i] = (uint8_t)(sum >> (8 * i));
}

static uint32_t get_u16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }

// A file around fuzzed records. Input: flags (bit 0: 4-byte tokens, else 2; bit 1: two documents), the
// vocabulary - 1 (u16), the classes - 1, the longest document (u16), the pad id (modulo the vocabulary), the
// frames - 1 (low 3 bits); then per frame its examples - 1 (a byte), its raw bytes (u16) and those bytes.
// The index is honest about offsets and sizes; the header's token count is what the frames' bytes imply.
// Returns the file's size (0: the input is too short to describe one); *out is malloc'd.
static size_t build_file(const uint8_t *d, size_t n, uint8_t **out) {
    if (n < 8) return 0;
    ExamplesHeader h = {.version = EXAMPLES_VERSION, .token_bytes = (d[0] & 1) ? 4 : 2, .ndoc = (d[0] & 2) ? 2 : 1,
                        .vocab_size = get_u16(d + 1) + 1, .nclasses = (uint32_t)d[3] + 1, .max_len = get_u16(d + 4)};
    h.pad_id = d[6] % h.vocab_size;
    int nf = (d[7] & 7) + 1;
    const char *desc = "symbols: fuzz";
    h.desc_len = (uint32_t)strlen(desc);
    size_t cap = EXAMPLES_HEADER_BYTES + h.desc_len + (size_t)nf * EXAMPLES_INDEX_ENTRY_BYTES, len = 0;
    const uint8_t *p = d + 8, *end = d + n;
    uint64_t raw_total = 0;
    int have = 0;
    for (; have < nf && end - p >= 3; have++) {
        size_t raw = get_u16(p + 1);
        if (raw > (size_t)(end - p - 3)) raw = (size_t)(end - p - 3);
        cap += ZSTD_compressBound(raw);
        p += 3 + raw;
    }
    if (have == 0) return 0;
    uint8_t *b = calloc(1, cap), *index = malloc((size_t)have * EXAMPLES_INDEX_ENTRY_BYTES);
    ZSTD_CCtx *cctx = ZSTD_createCCtx();   // frames with a content checksum, as the writer makes them
    if (!b || !index || !cctx || ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1))) abort();
    len = EXAMPLES_HEADER_BYTES;
    memcpy(b + len, desc, h.desc_len);
    len += h.desc_len;
    p = d + 8;
    for (int f = 0; f < have; f++) {
        uint32_t count = (uint32_t)p[0] + 1, raw = get_u16(p + 1);
        if (raw > (size_t)(end - p - 3)) raw = (uint32_t)(end - p - 3);
        size_t c = ZSTD_compress2(cctx, b + len, cap - len, p + 3, raw);
        if (ZSTD_isError(c)) abort();
        uint8_t *e = index + (size_t)f * EXAMPLES_INDEX_ENTRY_BYTES;
        le_put_u64(e, len);
        le_put_u64(e + 8, c);
        le_put_u32(e + 16, count);
        le_put_u32(e + 20, raw);
        len += c;
        h.nexamples += count;
        raw_total += raw;
        p += 3 + raw;
    }
    uint64_t fixed = h.nexamples * (4 + 4 * (uint64_t)h.ndoc);
    h.ntokens = raw_total > fixed ? (raw_total - fixed) / h.token_bytes : 0;
    h.nframes = (uint64_t)have;
    h.index_offset = len;
    memcpy(b + len, index, (size_t)have * EXAMPLES_INDEX_ENTRY_BYTES);
    len += (size_t)have * EXAMPLES_INDEX_ENTRY_BYTES;
    examples_header_encode(&h, b);
    h.checksum = examples_checksum(b, desc, h.desc_len, index, h.nframes);
    examples_header_encode(&h, b);
    free(index);
    ZSTD_freeCCtx(cctx);
    *out = b;
    return len;
}

static void read_one(Examples *e, uint64_t i, int T, int32_t *tokens, int32_t *lens) {
    int32_t label = example_read(e, i, T, tokens, lens);
    if (label < 0 || (uint32_t)label >= example_classes(e)) abort();
    uint32_t V = example_vocab(e), pad = example_pad(e);
    for (int d = 0; d < example_ndoc(e); d++) {
        if (lens[d] < 1 || lens[d] > T) abort();
        for (int t = 0; t < T; t++) {
            int32_t id = tokens[d * T + t];
            if (id < 0 || (uint32_t)id >= V) abort();
            if (t >= lens[d] && (uint32_t)id != pad) abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path;
    if (size > 0 && data[0] != 'H') {
        uint8_t *file = NULL;
        size_t n = build_file(data, size, &file);
        if (!n) return 0;
        path = fuzz_write("data.examples", file, n);
        free(file);
    } else {
        path = fuzz_write_sealed("data.examples", data, size, fix_checksum);
    }
    FUZZ_TRY {
        Examples *e = example_open_file(path);
        if (example_ndoc(e) < 1 || example_ndoc(e) > EXAMPLES_DOCS_MAX || example_pad(e) >= example_vocab(e)) abort();
        (void)example_vocab_desc(e);
        uint64_t n = example_count(e);
        int32_t *tokens = malloc((size_t)EXAMPLES_DOCS_MAX * LONG_T * sizeof(int32_t)), lens[EXAMPLES_DOCS_MAX];
        if (!tokens) abort();
        if (n <= 64) {
            for (uint64_t i = 0; i < n; i++) read_one(e, i, 7, tokens, lens);
            for (uint64_t i = n; i-- > 0;) read_one(e, i, LONG_T, tokens, lens);   // backwards: frames leave the cache
        } else {
            uint64_t at[3] = {0, n / 2, n - 1};
            for (int k = 0; k < 3; k++) {
                read_one(e, at[k], 7, tokens, lens);
                read_one(e, at[k], LONG_T, tokens, lens);
            }
        }
        free(tokens);
        example_close(e);
    } FUZZ_END;
    return 0;
}
