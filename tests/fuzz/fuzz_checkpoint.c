// fuzz_checkpoint: the bytes as a checkpoint file (docs/checkpoint.md), loaded twice by checkpoint_load:
// once skipping the optimizer state, once asking for it. The trailing checksum is recomputed over the input
// before it is written out, so that the fuzzer gets past it to the fields it guards; HGRN2_FUZZ_RAW=1 takes
// the bytes as they are. See fuzz.h and `make fuzz`.
#include "fuzz.h"
#include "seal_checkpoint.h"

static void load(const char *path, int want_optimizer) {
    FUZZ_TRY {
        Model m = {0};
        RunState rs;
        checkpoint_load(path, &m, &rs, want_optimizer);
        if (want_optimizer && (!m.m || !m.v)) abort();   // a successful resume has the moments
        free(m.params);
        free(m.m);
        free(m.v);
    } FUZZ_END;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write_sealed("model.ckpt", data, size, seal_checkpoint);
    load(path, 0);
    load(path, 1);
    return 0;
}
