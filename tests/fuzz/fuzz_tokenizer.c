// fuzz_tokenizer: the bytes up to the first NUL as a tokenizer.json (tokenizer_load of a file), the bytes
// after it as a text to encode (a fixed sample when there is no NUL); the ids, which must lie in the
// vocabulary, are then decoded. See fuzz.h and `make fuzz`.
#include "fuzz.h"
#include "tokenizer.h"

static const char SAMPLE[] = "Hello, world! It's 2024:\n\tnaïve café, 東京 \xF0\x9F\x98\x80 and \xFF bytes.  ";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *sep = memchr(data, 0, size);
    size_t json_len = sep ? (size_t)(sep - data) : size;
    const char *text = sep ? (const char *)sep + 1 : SAMPLE;
    size_t text_len = sep ? size - json_len - 1 : sizeof SAMPLE - 1;
    const char *path = fuzz_write("tokenizer.json", data, json_len);
    FUZZ_TRY {
        Tokenizer *t = tokenizer_load(path);
        int V = tokenizer_vocab_size(t);
        int32_t eot = tokenizer_eot(t), bos = tokenizer_bos(t);
        if (V < 1 || eot >= V || bos >= V || !tokenizer_name(t)) abort();
        IdBuf ids = {0};
        tokenizer_encode(t, text, text_len, &ids);
        for (size_t i = 0; i < ids.n; i++)
            if (ids.ids[i] < 0 || ids.ids[i] >= V) abort();
        ByteBuf bytes = {0};
        tokenizer_decode(t, ids.ids, ids.n, &bytes);
        free(ids.ids);
        free(bytes.data);
        tokenizer_free(t);
    } FUZZ_END;
    return 0;
}
