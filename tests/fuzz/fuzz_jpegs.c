// fuzz_jpegs: the bytes as a JPEG example file of the ImageNet task (jpeg_set_open_file), then its images
// read back (jpeg_set_read: the bytes and the label), and the first few through jpeg_set_sample, the decoding
// and the evaluation and training transforms the loader applies. A label must be below the classes, a class
// name (when the file has names) non-empty, a sample's label the read one's or -1 with a reason.
// So that the fuzzer gets past the checksums to the index and the images, the harness recomputes the
// header's checksum and every image's hash over the input before it is written out (HGRN2_FUZZ_RAW=1 takes
// the bytes as they are). See fuzz.h and `make fuzz`.
#include "fuzz.h"
#include "data.h"
#include "imagenet.h"
#include "jpeg.h"

#define MAX_READ 64     // images read back
#define MAX_SAMPLE 2    // images decoded and transformed (224 x 224 each, twice: the slow part)

// Stores the image hashes and the header checksum that jpeg_set_open_file and jpeg_set_read expect, where
// the header's sizes lie in the file.
static void seal(uint8_t *b, size_t size) {
    if (size < JPEGS_HEADER_BYTES) return;
    uint64_t names_len = le_get_u32(b + 16), images = le_get_u64(b + 24), index = le_get_u64(b + 32);
    if (names_len > size - JPEGS_HEADER_BYTES || index > size || images > (size - index) / JPEGS_INDEX_ENTRY_BYTES) return;
    for (uint64_t i = 0; i < images; i++) {
        uint8_t *e = b + index + i * JPEGS_INDEX_ENTRY_BYTES;
        uint64_t off = le_get_u64(e);
        uint32_t n = le_get_u32(e + 8);
        if (off <= size && n <= size - off) le_put_u64(e + 16, data_fnv1a(DATA_FNV_INIT, b + off, n));
    }
    uint64_t c = data_fnv1a(DATA_FNV_INIT, b, 56);
    c = data_fnv1a(c, b + JPEGS_HEADER_BYTES, (size_t)names_len);
    c = data_fnv1a(c, b + index, (size_t)(images * JPEGS_INDEX_ENTRY_BYTES));
    le_put_u64(b + 56, c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write_sealed("data.jpegs", data, size, seal);
    FUZZ_TRY {
        JpegSet *s = jpeg_set_open_file(path);
        uint64_t n = jpeg_set_count(s);
        uint32_t classes = jpeg_set_classes(s);
        if (classes < 1) abort();
        for (uint32_t c = 0; c < classes && c < 1000; c++) {
            const char *name = jpeg_set_class_name(s, c);
            if (name && !name[0]) abort();
        }
        uint8_t *buf = NULL, *out = malloc((size_t)IMAGENET_SIDE * IMAGENET_SIDE * 3);
        if (!out) abort();
        size_t cap = 0, len = 0;
        for (uint64_t i = 0; i < n && i < MAX_READ; i++) {
            int32_t label = jpeg_set_read(s, i, &buf, &cap, &len);
            if (label < 0 || (uint32_t)label >= classes || len < 1 || len > cap) abort();
            if (i < MAX_SAMPLE)
                for (int train = 0; train < 2; train++) {
                    char err[300] = "";
                    int32_t got = jpeg_set_sample(s, i, train, 5, 1, out, err, sizeof err);
                    if (got != label && !(got == -1 && err[0])) abort();
                }
        }
        free(buf);
        free(out);
        jpeg_set_close(s);
    } FUZZ_END;
    return 0;
}
