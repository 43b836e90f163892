// data.h: zstd-compressed token shards, the prefetching loader and `hgrn2 prepare`. See data.c and docs/shards.md.
#ifndef HGRN2_DATA_H
#define HGRN2_DATA_H

#include "hgrn2.h"

// ---- one shard file ----
typedef struct ShardWriter ShardWriter;
// Writes to path + ".tmp"; shard_writer_close renames it to path once complete and flushed to disk.
// Token width is u16 when vocab_size <= 65536, else u32.
ShardWriter *shard_writer_open(const char *path, uint32_t vocab_size, const char *tokenizer_name);
void shard_writer_append(ShardWriter *w, const int32_t *ids, size_t n);   // dies on an id outside [0, vocab)
void shard_writer_close(ShardWriter *w);
void shard_writer_abort(ShardWriter *w);                                  // removes the temporary file

typedef struct Shard Shard;
Shard *shard_open(const char *path);          // validates header and index; dies naming the file and the problem
uint64_t shard_ntokens(const Shard *s);
uint32_t shard_vocab(const Shard *s);
const char *shard_tokenizer(const Shard *s);
// out[0..n) = tokens [start, start+n); dies on corruption naming the file and the frame. Thread-compatible
// (one Shard per thread).
void shard_read(Shard *s, uint64_t start, uint64_t n, int32_t *out);
void shard_close(Shard *s);

// ---- a split of a prepared data directory: DIR/<split>_NNNNNN.shard ----
// The loader's position, stored in checkpoints. Plain old data of a fixed size.
typedef struct {
    uint64_t seed;      // random mode: the seed the windows derive from
    uint64_t batches;   // batches handed out so far (random mode) ...
    uint64_t cursor;    // ... or the next window's start token (sequential mode)
    uint64_t reserved;
} LoaderState;

typedef struct Loader Loader;
// B rows of T+1 tokens per batch. random=1: windows at positions derived from (seed, batch, row), the same
// for the same seed whatever else happens; random=0: consecutive windows starting at tokens 0, T, 2T, ...
// so that every token after the first is predicted exactly once; the last rows past the end are padded
// with -1 (no target). Reading and decompression run ahead on a background thread.
Loader *loader_open(const char *dir, const char *split, int B, int T, int random, uint64_t seed);
// ids[B*(T+1)]. Returns the number of rows that hold data: B in random mode; in sequential mode fewer
// at the end, 0 once the split is exhausted.
int loader_next(Loader *l, int32_t *ids);
uint64_t loader_ntokens(const Loader *l);
uint32_t loader_vocab(const Loader *l);
const char *loader_tokenizer(const Loader *l);
LoaderState loader_get_state(const Loader *l);
void loader_set_state(Loader *l, LoaderState s);
void loader_reset(Loader *l);                    // sequential mode: back to the first window
void loader_close(Loader *l);
// Whether DIR holds at least one shard of the split.
int data_has_split(const char *dir, const char *split);

// `hgrn2 prepare` (argv[0] is "prepare"). Returns the exit code.
int cmd_prepare(int argc, char **argv);

#endif
