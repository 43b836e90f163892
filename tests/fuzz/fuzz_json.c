// fuzz_json: the bytes as a JSON document (json_parse), then every object of the tree looked up by each of
// its keys and by a few absent ones (json_get). See fuzz.h and `make fuzz`.
#include "fuzz.h"
#include "json.h"

// Looks up each key of every object below v; returns the number of values reached.
static size_t walk(const Json *v, int depth) {
    if (!v || depth > 600) return 0;
    size_t n = 1;
    if (json_type(v) == JSON_OBJ) {
        // The first keys only: json_get is a linear search, and all of them would cost n^2 on a big object.
        for (size_t i = 0; i < json_len(v) && i < 64; i++) {
            const Json *k = json_key(v, i);
            // json_get takes a NUL-terminated key, so a key holding a NUL byte is not looked up.
            if (json_type(k) == JSON_STR && memchr(json_str(k), 0, json_len(k)) == NULL && json_get(v, json_str(k)) == NULL)
                abort();
        }
        (void)json_get(v, "");
        (void)json_get(v, "model");
    }
    if (json_type(v) == JSON_OBJ || json_type(v) == JSON_ARR)
        for (size_t i = 0; i < json_len(v); i++) n += walk(json_item(v, i), depth + 1);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    FUZZ_TRY {
        char err[256] = "";
        Json *root = json_parse((const char *)data, size, json_default_limit(size), err, sizeof err);
        if (root) {
            walk(root, 0);
            (void)json_get(root, "text");
            json_free(root);
        } else if (!memchr(err, 0, sizeof err)) {
            abort();   // the message is a terminated string
        }
    } FUZZ_END;
    return 0;
}
