// fuzz_jsonl: the bytes as a JSON Lines input of `hgrn2 prepare --task pile` (prepare_scan_jsonl: each line
// a record whose "text" field is the document). See fuzz.h and `make fuzz`.
#include "fuzz.h"
#include "data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    FUZZ_TRY {
        PrepareScanCounts counts;
        memset(&counts, 0, sizeof counts);
        (void)prepare_scan_jsonl((const char *)data, size, 1u << 16, &counts);
        // again with a small line limit, so that the path of over-long lines runs too
        memset(&counts, 0, sizeof counts);
        (void)prepare_scan_jsonl((const char *)data, size, 64, &counts);
    } FUZZ_END;
    return 0;
}
