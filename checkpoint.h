// checkpoint.h: checkpoints: what they hold besides the tensors (RunState), saving, loading, the checksum.
// A checkpoint (docs/checkpoint.md) holds the model, optionally the AdamW moments, and everything a run needs
// to continue; it is written atomically and validated field by field on load.
#ifndef HGRN2_CHECKPOINT_H
#define HGRN2_CHECKPOINT_H

#include "common.h"
#include "model.h"
#include "train.h"
#include "data.h"

// The first 8 bytes of a file (no NUL on disk): a language model's checkpoint, a classifier's (cls_run.h).
#define CKPT_MAGIC "HGRN2CKP"
#define CLS_CKPT_MAGIC "HGRN2CLS"

// What a checkpoint holds besides the tensors. Of the Config's kinds only the mixer (the architecture, from
// format version 3; before it hgrn2) is stored: every checkpoint is a language model (token input, next-token
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

// ---- what the checkpoint formats share: the language model's (here) and the classifier's (cls_ckpt.c) ----
// Writing: ckpt_out_open creates PATH.tmp; every byte written is hashed; ckpt_out_close appends the checksum,
// flushes, syncs and renames it to PATH. Any failure removes PATH.tmp, leaving PATH as it was, and dies.
typedef struct { FILE *f; char *path; const char *final; Hash hash; } CkptOut;
void ckpt_out_open(CkptOut *o, const char *path);
void ckpt_out_write(CkptOut *o, const void *p, size_t n);
void ckpt_out_i64(CkptOut *o, int64_t v);
void ckpt_out_f64(CkptOut *o, double v);
void ckpt_out_str(CkptOut *o, const char *s);                    // an i64 length, then the bytes
void ckpt_out_reals(CkptOut *o, const real *x, int64_t n);       // as float32, whatever `real` is
void ckpt_out_close(CkptOut *o);
// Reading: left counts the bytes before the checksum still unread, so sizes can be checked against the file
// before anything is allocated. A short read dies as a truncated file; hint ends the message of a file that
// cannot be opened.
typedef struct { FILE *f; const char *path; Hash hash; int64_t left; } CkptIn;
void ckpt_in_open(CkptIn *r, const char *path, const char *hint);
void ckpt_in_read(CkptIn *r, void *p, size_t n);
int64_t ckpt_in_i64(CkptIn *r);
double ckpt_in_f64(CkptIn *r);
void ckpt_in_str(CkptIn *r, const char *what, char *dst, size_t cap);   // dies unless it fits in cap with its NUL
void ckpt_in_reals(CkptIn *r, real *x, int64_t n);               // x NULL: skipped (still hashed)
void ckpt_in_close(CkptIn *r);                                   // dies unless the checksum matches
// A header field outside the range the command line accepts: "checkpoint PATH is corrupt: NAME = V is out of
// range [lo, hi]", exit 1.
void ckpt_check_int(const char *path, const char *name, int64_t v, int64_t lo, int64_t hi);
void ckpt_check_range_int(const char *path, const Range *r, int64_t v);
void ckpt_check_range_num(const char *path, const Range *r, double v);
// AdamW's settings and the clip against the ranges of their flags (--lr, --min-lr, --wd, --beta1, --beta2,
// --adam-eps, --clip), as both kinds of checkpoint store them.
void ckpt_check_optimizer(const char *path, double lr, double min_lr, double wd, double beta1, double beta2,
                          double adam_eps, double clip);

#endif
