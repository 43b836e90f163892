// checkpoint.h: checkpoints: what they hold besides the tensors (RunState), saving, loading, the checksum.
// A checkpoint (docs/checkpoint.md) holds the model, optionally the AdamW moments, and everything a run needs
// to continue; it is written atomically and validated field by field on load.
#ifndef HGRN2_CHECKPOINT_H
#define HGRN2_CHECKPOINT_H

#include "common.h"
#include "model.h"
#include "train.h"
#include "data.h"

// What a checkpoint holds besides the tensors. The Config's input, mixer and head kinds are not stored
// yet: every checkpoint of format version 1 is a language model (token input, causal mixer, next-token
// head), which is what a loaded Config says.
typedef struct RunState {
    Config c;
    Hyper h;
    int64_t step;           // optimizer steps done
    LoaderState loader;
    char tokenizer[1024];   // tokenizer spec ("byte", a directory or a tokenizer.json path)
    char data[1024];        // the data directory trained on
} RunState;

// Writes PATH.tmp, flushes, syncs and renames it to PATH, so a crash or a full disk never leaves a broken
// file under PATH and never loses the previous one. with_optimizer: the AdamW moments too.
void checkpoint_save(const char *path, const Model *m, const RunState *rs, int with_optimizer);
// Loads a checkpoint into a freshly allocated model (on the host). want_optimizer: 1 = the AdamW moments
// must be there, 0 = skip them. Every field is validated; any problem dies with a message naming the file.
void checkpoint_load(const char *path, Model *m, RunState *rs, int want_optimizer);

// The checksum that ends a checkpoint: FNV-style mixing of 8-byte little-endian words, fed in pieces of
// any size, over every byte before it.
typedef struct { uint64_t h, tail; int ntail; } Hash;
void hash_init(Hash *s);
void hash_bytes(Hash *s, const void *p, size_t n);
uint64_t hash_final(const Hash *s);

#endif
