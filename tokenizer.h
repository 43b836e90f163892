// tokenizer.h: byte-level, GPT-2 BPE and Hugging Face tokenizer.json (BPE) tokenizers. See tokenizer.c.
#ifndef HGRN2_TOKENIZER_H
#define HGRN2_TOKENIZER_H

#include "common.h"

typedef struct Tokenizer Tokenizer;

// A growable array of token ids.
typedef struct { int32_t *ids; size_t n, cap; } IdBuf;
// A growable byte string.
typedef struct { char *data; size_t n, cap; } ByteBuf;

// spec: "byte"; a directory holding encoder.json and vocab.bpe (GPT-2); a directory holding tokenizer.json;
// or the path of a tokenizer.json file. Dies with a message naming the file and what is wrong.
Tokenizer *tokenizer_load(const char *spec);
void tokenizer_free(Tokenizer *t);
int tokenizer_vocab_size(const Tokenizer *t);      // one more than the largest id, special tokens included
// Identity stored in shard headers and checkpoints: "byte", "gpt2", or "hf:" followed by a content hash.
const char *tokenizer_name(const Tokenizer *t);
int32_t tokenizer_eot(const Tokenizer *t);         // the end-of-text / end-of-sequence id, or -1 if none
int32_t tokenizer_bos(const Tokenizer *t);         // the beginning-of-sequence id, or -1 if none
int32_t tokenizer_unk(const Tokenizer *t);         // a tokenizer.json's unk_token id, or -1 if none
// The tokenizer.json file t was loaded from, or NULL for the byte tokenizer and GPT-2 files.
const char *tokenizer_file(const Tokenizer *t);
// Writes to f (named path in messages) a Hugging Face tokenizer.json that encodes every text as t does: for
// the byte tokenizer and GPT-2 files (spec: what t was loaded from). tokenizer_json.c; dies for a
// tokenizer.json tokenizer, which is its own file.
void tokenizer_write_hf_json(const Tokenizer *t, const char *spec, FILE *f, const char *path);
// Append the ids of text[0..len) to out, adding no special tokens. Thread-safe: any number of threads may
// encode with the same tokenizer at once.
void tokenizer_encode(const Tokenizer *t, const char *text, size_t len, IdBuf *out);
// Append the bytes of ids to out. decode(encode(x)) == x byte for byte, invalid UTF-8 included.
void tokenizer_decode(const Tokenizer *t, const int32_t *ids, size_t n, ByteBuf *out);
// The bytes of one token when it is the first of a text (first=1) or follows others (first=0), for streaming
// output while sampling; concatenating these equals tokenizer_decode. Ids out of range die.
void tokenizer_decode_one(const Tokenizer *t, int32_t id, int first, ByteBuf *out);

void idbuf_push(IdBuf *b, int32_t id);
void bytebuf_append(ByteBuf *b, const void *p, size_t n);

#endif
