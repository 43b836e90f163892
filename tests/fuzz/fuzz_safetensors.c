// fuzz_safetensors: the bytes as a safetensors file (st_open_file), then every tensor read back as float32
// (st_read) when its element count is small enough to hold. See fuzz.h and `make fuzz`.
#include "fuzz.h"
#include "hf.h"

// Tensors up to this many elements are read back (the harness's own buffer: 64 MiB of float32).
#define MAX_READ (INT64_C(1) << 24)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("model.safetensors", data, size);
    FUZZ_TRY {
        StSet *s = st_open_file(path);
        for (int i = 0; i < s->n; i++) {
            const StTensor *t = &s->t[i];
            if (st_find(s, t->name) == NULL) abort();
            if (t->numel < 0 || t->numel > MAX_READ) continue;
            float *out = malloc((size_t)(t->numel ? t->numel : 1) * sizeof(float));
            if (!out) abort();
            st_read(s, t, out);
            free(out);
        }
        st_close(s);
    } FUZZ_END;
    return 0;
}
