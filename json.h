// json.h: a small JSON reader for the files hgrn2 reads (tokenizer.json, config.json, safetensors headers).
#ifndef HGRN2_JSON_H
#define HGRN2_JSON_H

#include "common.h"

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUM, JSON_STR, JSON_ARR, JSON_OBJ } JsonType;

// A value of a parsed document. Its layout is private to json.c (8 bytes a value, see there): read it
// through the functions below, which accept any value and never read outside the tree.
typedef struct Json Json;

// The memory a document of len bytes may take to parse: 3 x its size + 1 MiB. Real files need less than
// 2.5 x (a tokenizer.json written without spaces is the densest); only a document made to blow up memory,
// such as a long array of one-digit numbers, needs more.
size_t json_default_limit(size_t len);

// Parses text[0..len) (which need not be NUL-terminated) in two passes: the first checks the syntax and
// counts what the tree needs, the second builds it in one allocation of exactly that size. Returns NULL with
// a one-line message in err on malformed input ("malformed JSON at byte N: what") or when the tree would
// need more than limit bytes ("needs more than N MiB of memory to parse ..."). json_free releases the tree.
Json *json_parse(const char *text, size_t len, size_t limit, char *err, size_t errlen);
void json_free(Json *root);

JsonType json_type(const Json *v);
// JSON_STR: the bytes of the decoded string; JSON_ARR: the items; JSON_OBJ: the entries; otherwise 0.
size_t json_len(const Json *v);
// JSON_NUM: the number; JSON_BOOL: 0 or 1; otherwise NaN.
double json_num(const Json *v);
// JSON_STR: the decoded UTF-8 bytes, NUL-terminated (they may hold NULs: use json_len); otherwise "".
const char *json_str(const Json *v);
// Item i of an array, or the value of entry i of an object; NULL when out of range or not a container.
const Json *json_item(const Json *v, size_t i);
// The key (a JSON_STR) of entry i of an object; NULL when out of range or not an object.
const Json *json_key(const Json *obj, size_t i);
// The value of key in an object (the first entry of that name), or NULL when absent or obj is not an object.
const Json *json_get(const Json *obj, const char *key);

// s[0..n) as a JSON string literal: quoted, with '"', '\\' and the control characters escaped, every other
// character kept as its UTF-8 bytes. Returns a NUL-terminated string the caller frees, or NULL when s is not
// valid UTF-8 (overlong forms, surrogates and code points above U+10FFFF included), which JSON cannot hold.
char *json_quote(const char *s, size_t n);

// Reads a whole file into memory (NUL-terminated); dies naming the file on failure.
char *read_file(const char *path, size_t *len);

#endif
