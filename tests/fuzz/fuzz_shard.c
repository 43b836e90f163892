// fuzz_shard: the bytes as a token shard (shard_open), then every token read in a few windows (shard_read);
// a shard claiming more tokens than a small file can hold gets its first, middle and last windows read.
// The header checksum is recomputed over the input before it is written out, so that the fuzzer gets past
// it to the frame index and the zstd frames; HGRN2_FUZZ_RAW=1 takes the bytes as they are.
// See fuzz.h and `make fuzz`.
#include "fuzz.h"
#include "data.h"

#define WINDOW (UINT64_C(1) << 16)

// Stores the checksum shard_open expects when the header decodes and the name and index lie in the file.
static void fix_checksum(uint8_t *b, size_t size) {
    ShardHeader h;
    char err[400];
    if (size < SHARD_HEADER_BYTES || shard_header_decode(b, size, &h, err, sizeof err) != 0) return;
    if (h.name_len > size - SHARD_HEADER_BYTES || h.index_offset > size ||
        h.nframes > (size - h.index_offset) / SHARD_INDEX_ENTRY_BYTES) return;
    uint64_t sum = shard_meta_hash(b, (const char *)b + SHARD_HEADER_BYTES, h.name_len, b + h.index_offset, h.nframes);
    for (int i = 0; i < 8; i++) b[56 + i] = (uint8_t)(sum >> (8 * i));
}

static void read_window(Shard *s, uint64_t start, uint64_t n, int32_t *buf) {
    shard_read(s, start, n, buf);
    uint32_t V = shard_vocab(s);
    for (uint64_t i = 0; i < n; i++)
        if (buf[i] < 0 || (uint32_t)buf[i] >= V) abort();   // ids outside the vocabulary must be refused
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write_sealed("data.shard", data, size, fix_checksum);
    FUZZ_TRY {
        Shard *s = shard_open(path);
        uint64_t n = shard_ntokens(s);
        (void)shard_tokenizer(s);
        int32_t *buf = malloc(WINDOW * sizeof(int32_t));
        if (!buf) abort();
        if (n <= 16 * WINDOW) {
            // all of it, in up to 4 windows (the last may be shorter)
            uint64_t w = n / 4 + 1 < WINDOW ? n / 4 + 1 : WINDOW;
            for (uint64_t at = 0; at < n; at += w) read_window(s, at, n - at < w ? n - at : w, buf);
        } else {
            uint64_t w = 4096;
            read_window(s, 0, w, buf);
            read_window(s, n / 2, w, buf);
            read_window(s, n - w, w, buf);
        }
        free(buf);
        shard_close(s);
    } FUZZ_END;
    return 0;
}
