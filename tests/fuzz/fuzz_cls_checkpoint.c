// fuzz_cls_checkpoint: the bytes as a classifier's checkpoint file (docs/classify.md), loaded twice by
// cls_checkpoint_load: once skipping the AdamW moments, once asking for them. As fuzz_checkpoint does, the
// trailing checksum is recomputed over the input first so the fuzzer reaches the fields behind it;
// HGRN2_FUZZ_RAW=1 takes the bytes as they are. See fuzz.h and `make fuzz`.
#include "fuzz.h"
#include "seal_checkpoint.h"
#include "cls_run.h"

static void load(const char *path, int want_moments) {
    FUZZ_TRY {
        ClsModel m = {0};
        ClsRunState rs;
        real *moments = NULL;
        cls_checkpoint_load(path, &m, &rs, want_moments ? &moments : NULL);
        if (want_moments && !moments) abort();   // a successful resume has the moments
        free(moments);
        cls_free(&m);
    } FUZZ_END;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write_sealed("model.ckpt", data, size, seal_checkpoint);
    load(path, 0);
    load(path, 1);
    return 0;
}
