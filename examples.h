// examples.h: labelled examples for the classification tasks: one or two documents of token ids and a class
// label each. The file format (writer and reader) and the batch loader for training and evaluation; code in
// examples.c, the format and what a reader checks in docs/examples.md.
#ifndef HGRN2_EXAMPLES_H
#define HGRN2_EXAMPLES_H

#include "common.h"

// ---- the on-disk layout (docs/examples.md), exposed for tests and tools ----
#define EXAMPLES_MAGIC "HGRN2EXS"          // the first 8 bytes of every example file (no NUL on disk)
#define EXAMPLES_VERSION 1
#define EXAMPLES_HEADER_BYTES 96           // the fixed header; the vocabulary's description follows it
#define EXAMPLES_INDEX_ENTRY_BYTES 24      // per frame: u64 offset, u64 compressed size, u32 examples, u32 bytes
#define EXAMPLES_FRAME_BYTES (16u << 10)   // a writer closes a frame once its records reach this many bytes
// Limits that bound what a reader allocates, whatever a header says.
#define EXAMPLES_DOCS_MAX 2                // documents per example: 1 (classification) or 2 (a pair)
#define EXAMPLES_LEN_MAX (1u << 22)        // tokens of one document
#define EXAMPLES_CLASSES_MAX (1u << 24)
#define EXAMPLES_DESC_MAX (1u << 24)       // bytes of the vocabulary's description
#define EXAMPLES_FRAME_EXAMPLES_MAX 4096   // examples of one frame
#define EXAMPLES_FRAME_RAW_MAX (64u << 20) // decompressed bytes of one frame
#define EXAMPLES_SUFFIX ".examples"        // DIR/<split>.examples

typedef struct {
    uint32_t version, token_bytes, vocab_size, pad_id, nclasses, ndoc, max_len, desc_len;
    uint64_t nexamples, ntokens, nframes, index_offset, checksum;
} ExamplesHeader;
void examples_header_encode(const ExamplesHeader *h, uint8_t out[EXAMPLES_HEADER_BYTES]);
// Decodes the fixed header and checks every field and the sizes against the file's size. Returns 0, or -1
// with the problem in err.
int examples_header_decode(const uint8_t in[EXAMPLES_HEADER_BYTES], uint64_t file_size, ExamplesHeader *h, char *err,
                           size_t errlen);
// The checksum: FNV-1a 64 over header bytes [0, 88), the description and the encoded index.
uint64_t examples_checksum(const uint8_t header[EXAMPLES_HEADER_BYTES], const char *desc, size_t desc_len,
                           const uint8_t *index, uint64_t nframes);

// What an example file describes besides its examples.
typedef struct {
    uint32_t vocab_size;   // every token id is below it
    uint32_t pad_id;       // the id a loader pads documents with (below vocab_size)
    uint32_t nclasses;     // every label is in [0, nclasses)
    int ndoc;              // documents per example: 1 or 2
    const char *desc;      // the vocabulary's description: how ids map to symbols (text without NUL bytes,
                           // docs/examples.md); two files share a vocabulary when their descriptions are equal
} ExampleSpec;

// ---- writing ----
typedef struct ExampleWriter ExampleWriter;
// Writes to path + ".tmp"; example_writer_close renames it to path once complete and flushed to disk. Any
// exit before that removes the temporary file.
ExampleWriter *example_writer_open(const char *path, const ExampleSpec *spec);
// One example: docs[d][0, lens[d]) for each of the spec's documents. Dies on a label outside [0, nclasses),
// a document of no tokens or more than EXAMPLES_LEN_MAX, or an id outside the vocabulary.
void example_writer_add(ExampleWriter *w, int32_t label, const int32_t *const *docs, const uint32_t *lens);
uint64_t example_writer_count(const ExampleWriter *w);
void example_writer_close(ExampleWriter *w);
void example_writer_abort(ExampleWriter *w);   // removes the temporary file

// ---- the three splits of a prepared set, written together ----
// DIR/{train,val,test}.examples, each written first as DIR/<split>.examples.part (registered for removal at
// exit, so a failure anywhere leaves no final name) and renamed to its final name only once all three are
// complete; the folder is synced after the renames.
typedef struct { char *final, *part; ExampleWriter *w; } SplitFile;
void split_files_open(SplitFile f[3], const char *dir, const ExampleSpec *spec);
void split_files_finish(SplitFile f[3]);   // closes, renames, frees the names

// ---- reading ----
typedef struct Examples Examples;
// Opens DIR/<split>.examples (example_open_file: any path). Validates the header, the description and the
// frame index against the file's size before allocating anything they size; dies naming the file and the
// problem. Frames are checked when first read.
Examples *example_open(const char *dir, const char *split);
Examples *example_open_file(const char *path);
uint64_t example_count(const Examples *e);
uint64_t example_ntokens(const Examples *e);    // tokens of all documents
uint32_t example_vocab(const Examples *e);
uint32_t example_pad(const Examples *e);
uint32_t example_classes(const Examples *e);
int example_ndoc(const Examples *e);
uint32_t example_max_len(const Examples *e);    // the longest document, in tokens
const char *example_vocab_desc(const Examples *e);
const char *example_path(const Examples *e);
// Example i (below example_count): returns its label; tokens[d * T + t] holds document d truncated to T
// tokens and padded with the pad id, lens[d] its length after truncation (at least 1). Dies on a corrupt
// frame, naming the file and the frame. Not thread-safe (one Examples per thread).
int32_t example_read(Examples *e, uint64_t i, int T, int32_t *tokens, int32_t *lens);
void example_close(Examples *e);

// ---- the batch loader: DIR/<split>.examples, read ahead on a background thread ----
// Its position, stored in checkpoints. Plain old data of a fixed size.
typedef struct {
    uint64_t seed;      // shuffled mode: the seed the permutations derive from
    uint64_t epoch;     // shuffled mode: the epoch of the next example (sequential mode: 0)
    uint64_t index;     // the next example's position in its epoch's order
    uint64_t reserved;
} ExampleLoaderState;

typedef struct ExampleLoader ExampleLoader;
// B examples per batch, each document truncated to T tokens. shuffle=1 (training): epoch e visits every
// example once, in a permutation that is a function of (seed, e) alone; batches are always full and run on
// into the next epoch. shuffle=0 (evaluation): examples 0, 1, 2, ... in order; the last batch may be
// partial, after it the split is exhausted until example_loader_reset. Dies if the split is missing or
// corrupt, or (shuffled) empty.
ExampleLoader *example_loader_open(const char *dir, const char *split, int B, int T, int shuffle, uint64_t seed);
// The next batch: tokens[B][ndoc][T] (padded with the pad id), lens[B][ndoc], labels[B], and when index is
// not NULL index[B], each row's example number. Returns the rows that hold an example: B when shuffled; in
// sequential mode fewer at the end, 0 once exhausted. Rows without an example have pad tokens, lengths 0,
// label -1 and index UINT64_MAX.
int example_loader_next(ExampleLoader *l, int32_t *tokens, int32_t *lens, int32_t *labels, uint64_t *index);
const Examples *example_loader_data(const ExampleLoader *l);   // the split's counts, vocabulary and classes
ExampleLoaderState example_loader_get_state(const ExampleLoader *l);
// Continues from a saved state: the batches that follow are those an uninterrupted run saw. Dies on a state
// that does not fit the split (an index past its end).
void example_loader_set_state(ExampleLoader *l, ExampleLoaderState s);
void example_loader_reset(ExampleLoader *l);   // back to epoch 0, example 0 (the same seed)
void example_loader_close(ExampleLoader *l);
// Example k of epoch e's order in shuffled mode (k below n): the permutation the loader uses, for tests.
// Fills perm[0, n).
void example_permutation(uint64_t seed, uint64_t epoch, uint64_t n, uint64_t *perm);

#endif
