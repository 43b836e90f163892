// json.h: a small JSON reader for the files hgrn2 reads (tokenizer.json, config.json, safetensors headers).
#ifndef HGRN2_JSON_H
#define HGRN2_JSON_H

#include "common.h"

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUM, JSON_STR, JSON_ARR, JSON_OBJ } JsonType;

typedef struct Json Json;
struct Json {
    JsonType type;
    double num;          // JSON_NUM (also JSON_BOOL: 0 or 1)
    char *str;           // JSON_STR: the decoded UTF-8 bytes, NUL-terminated (may contain NULs: use len)
    size_t len;          // JSON_STR: bytes in str; JSON_ARR and JSON_OBJ: number of items
    Json *items;         // JSON_ARR and JSON_OBJ: the values
    Json *keys;          // JSON_OBJ: the keys (JSON_STR), keys[i] names items[i]
};

// Parses text[0..len). Returns NULL on malformed input with a message ("byte N: what") in err.
// Everything hangs off one allocation: json_free releases it all.
Json *json_parse(const char *text, size_t len, char *err, size_t errlen);
void json_free(Json *root);
// The value of key in an object, or NULL when absent (or when obj is not an object).
const Json *json_get(const Json *obj, const char *key);
// Reads a whole file into memory (NUL-terminated); dies naming the file on failure.
char *read_file(const char *path, size_t *len);

#endif
