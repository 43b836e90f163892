// data.h: the interface of the data path: token shards, the prefetching loader (and the read-ahead it shares
// with the example loader) and `hgrn2 prepare`.
// Code in shard.c, loader.c and prepare.c (its input files: input.h); formats and policies in docs/shards.md.
// The labelled examples of the classification tasks build on the helpers at the end (examples.h).
#ifndef HGRN2_DATA_H
#define HGRN2_DATA_H

#include <zstd.h>

#include "common.h"

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
// The rows [row0, row0 + B) of every batch of that loader with B_all rows (one process's share of a batch in
// a run of several, dist.h): the same windows as those rows of the whole batch, the same positions and state.
Loader *loader_open_rows(const char *dir, const char *split, int B_all, int row0, int B, int T, int random,
                         uint64_t seed);
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

// ---- read-ahead, shared by the loader above and the example loader (examples.h) ----
// A background thread produces batches in order into a ring; the consumer takes them from its head. The
// batches themselves live with the owner, in PREFETCH_SLOTS buffers named by slot number: the ring's and the
// one the thread is filling. A restart (a new position) throws away whatever was made for the old one.
#define PREFETCH_SLOTS 5
typedef struct {
    uint64_t epoch, pos;   // where a batch starts (an owner without epochs leaves epoch 0)
    uint64_t seed;         // what its random choices derive from
} PrefetchPos;
typedef struct {
    void *owner;
    void *state;            // the consumer's position, the owner's to define: the lock guards it
    size_t state_bytes;
    // Whether nothing is left to produce at `at` (the end of a sequential pass): the thread waits. Called
    // under the lock; it may read only what does not change while the thread runs.
    int (*done)(void *owner, PrefetchPos at);
    // Fills buffer `slot` with the batch at `at`; runs on the thread, outside the lock.
    void (*produce)(void *owner, PrefetchPos at, int slot);
    // Where the batch after the one at `at` starts.
    PrefetchPos (*advance)(void *owner, PrefetchPos at);
} PrefetchOps;
typedef struct Prefetch Prefetch;
// Starts the thread, producing from `at`; `name` ("loader") begins its messages.
Prefetch *prefetch_start(const char *name, const PrefetchOps *ops, PrefetchPos at);
// Stops and joins the thread (at most one batch's work away) and frees p.
void prefetch_stop(Prefetch *p);
// The lock that guards the ring and the consumer's position.
void prefetch_lock(Prefetch *p);
void prefetch_unlock(Prefetch *p);
// With the lock held: waits for the head batch and returns its slot, which stays the consumer's until
// prefetch_pop. Dies (an internal error) unless that batch starts at want's epoch and pos.
int prefetch_head(Prefetch *p, PrefetchPos want);
void prefetch_pop(Prefetch *p);   // with the lock held: the head batch is used, its slot goes back
// A copy of the consumer's position, taken under the lock.
void prefetch_get_state(const Prefetch *p, void *state);
// The consumer's position set from state, which starts at `at`: the batches made so far are dropped and
// production starts again there.
void prefetch_set_state(Prefetch *p, const void *state, PrefetchPos at);

// ---- prepare: text, WikiText or JSON Lines files (plain or zstd) -> DIR/{train,val}_NNNNNN.shard, DIR/meta.txt ----
typedef enum { PREPARE_PILE, PREPARE_WIKI103, PREPARE_TEXT } PrepareTask;
typedef struct {
    PrepareTask task;               // pile: JSON Lines with a "text" field; wiki103: WikiText articles; text: a
                                    // file is a document
    const char *const *inputs;      // the training inputs, in order (at least one)
    int ninputs;
    const char *const *val_inputs;  // held-out inputs: when given, they alone form the validation split
    int nval_inputs;
    const char *tokenizer;          // a tokenizer_load spec
    const char *out;                // output directory: created, must not hold shards already
    double val_fraction;            // [0, 0.5]: documents sent to validation by a hash of their index
    uint64_t shard_tokens;          // [1, 1e12]: tokens per shard at most
    int threads;                    // [1, 1024]: tokenizer threads
    int strict;                     // a malformed or too long JSON line is fatal instead of skipped and counted
    const char *text_field;         // pile: the member of each record that holds its text (NULL: "text")
    size_t max_line_bytes;          // the longest line held whole ('\n' not counted): a longer JSON line is
                                    // skipped as it streams, a longer WikiText line is read in parts
} PrepareOptions;
#define PREPARE_MAX_LINE_DEFAULT (16u << 20)
#define PREPARE_MAX_LINE_MIN 1024u
#define PREPARE_MAX_LINE_MAX (1u << 30)
// The defaults of `hgrn2 prepare`: no inputs, task text, val_fraction 0.005, 100M tokens per shard, all cores,
// lines up to 16 MiB.
void prepare_defaults(PrepareOptions *o);
const char *prepare_task_name(PrepareTask task);   // "pile", "wiki103", "text": the names in meta.txt
// What prepare's JSON Lines path makes of some input (for fuzzing and tests).
typedef struct {
    uint64_t lines;        // all lines, blank and skipped ones included
    uint64_t records;      // valid records, each a document (an empty "text" included, which prepare then drops)
    uint64_t blank;        // whitespace only: skipped silently
    uint64_t malformed;    // skipped and counted (fatal with strict)
    uint64_t too_long;     // longer than max_line: skipped as they stream, counted (fatal with strict)
    uint64_t text_bytes;   // unescaped bytes of the records' "text" strings
} PrepareScanCounts;
// Runs the line reader and JSON Lines scanner of prepare (the same code, not a copy) over buf[0, n), as if
// it were the content of a --task pile input read with --max-line-bytes max_line; the buffer is served in
// slices of a few KiB, so lines straddle reads as they do in files. Any max_line works here, 0 included
// (small values exercise the skipping). Never dies on any input bytes.
void prepare_scan_jsonl(const char *buf, size_t n, size_t max_line, PrepareScanCounts *out);
// Tokenizes the inputs into shards, prints a progress line on stderr and a summary on stdout. Returns 0;
// any failure dies with one message, leaving no file under a final name.
int prepare_run(const PrepareOptions *o);

// ---- the on-disk layout (docs/shards.md), exposed for tests and tools ----
#define SHARD_MAGIC "HGRN2SHD"            // the first 8 bytes of every shard (no NUL on disk)
#define SHARD_VERSION 1
#define SHARD_HEADER_BYTES 64             // the fixed header; the tokenizer name follows it
#define SHARD_INDEX_ENTRY_BYTES 16        // per frame: u64 offset, u64 compressed size
#define SHARD_FRAME_TOKENS 65536          // tokens per zstd frame (all frames but the last)
#define SHARD_NAME_MAX 1024               // longest tokenizer name in a header
typedef struct {
    uint32_t version, token_bytes, vocab_size, frame_tokens, name_len;
    uint64_t ntokens, nframes, index_offset, meta_hash;
} ShardHeader;
void shard_header_encode(const ShardHeader *h, uint8_t out[SHARD_HEADER_BYTES]);
// Decodes the fixed header and checks it against the file's size. Returns 0, or -1 with the problem in err.
int shard_header_decode(const uint8_t in[SHARD_HEADER_BYTES], uint64_t file_size, ShardHeader *h, char *err, size_t errlen);
void shard_index_encode(uint64_t offset, uint64_t csize, uint8_t out[SHARD_INDEX_ENTRY_BYTES]);
void shard_index_decode(const uint8_t in[SHARD_INDEX_ENTRY_BYTES], uint64_t *offset, uint64_t *csize);
// The checksum stored in meta_hash: FNV-1a 64 over header bytes [0, 56), the name and the encoded index.
uint64_t shard_meta_hash(const uint8_t header[SHARD_HEADER_BYTES], const char *name, size_t name_len,
                         const uint8_t *index, uint64_t nframes);
// Tokens per frame of the shard writers opened afterwards (tests use small frames); 0 restores the default.
void shard_set_frame_tokens(uint32_t n);

// ---- shared by shard.c, loader.c and prepare.c ----
// Files removed if the process exits (a die() in any thread) before they are finished, so that nothing
// half-written is left under a name that looks complete: shard .tmp files, prepare's .part files.
void data_cleanup_add(const char *path);
void data_cleanup_remove(const char *path);
// Creates or truncates path for writing. Dies unless what is there is (or becomes) a regular file: a FIFO
// there would block the open, a device would swallow the data.
FILE *data_create_file(const char *path);
// fsync of the directory holding path, which makes a rename into it durable.
void data_fsync_parent(const char *path);
// Flushes, syncs and closes a file written through f; dies naming path on any failure (a full disk shows
// here, not as a short file later).
void data_close_file(FILE *f, const char *path);
// data_close_file, then tmp renamed to path (durably) and taken off the cleanup list: the last step of
// writing a file under a temporary name.
void data_commit_file(FILE *f, const char *tmp, const char *path);
// The shard paths of DIR/<split>_NNNNNN.shard in order, NULL-terminated, their count in *n; NULL for a
// missing directory or an empty split. Dies on a gap or a duplicate number. Free with data_free_paths.
char **data_split_paths(const char *dir, const char *split, size_t *n);
void data_free_paths(char **paths);

// ---- what the binary formats of the data path share (shards, example files) ----
// Little-endian fields, written byte by byte so that a format does not depend on the host.
static inline void le_put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline void le_put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint32_t le_get_u32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static inline uint64_t le_get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}
#define DATA_FNV_INIT 0xCBF29CE484222325ull
// FNV-1a 64 of p[0, n) continuing from h (DATA_FNV_INIT to start): the header checksums.
uint64_t data_fnv1a(uint64_t h, const void *p, size_t n);
// Opens path for reading; dies unless it is a regular file (a FIFO would block the open, a device never
// end: checked with stat before the open and fstat after it). `what` names the file in messages ("shard").
// Returns the descriptor and the size in *size.
int data_open_regular(const char *path, const char *what, uint64_t *size);
// pread of exactly n bytes at off; dies naming the file on an error or an early end of file.
void data_pread(int fd, void *buf, size_t n, uint64_t off, const char *path);
// A compression context for the frames of a binary file: level 3, content size and content checksum in
// every frame (so that a reader can check both). Dies naming path when zstd fails.
ZSTD_CCtx *data_zstd_cctx(const char *path);
// Decompresses src[0, csize), which must be exactly one zstd frame that declares `bytes` decompressed bytes
// and carries a content checksum, into dst[0, bytes). Returns 0, or -1 with what is wrong in err.
int data_zstd_frame(ZSTD_DCtx *dctx, const uint8_t *src, size_t csize, void *dst, size_t bytes, char *err, size_t errlen);

#endif
