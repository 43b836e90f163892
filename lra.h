// lra.h: the Long Range Arena's token tasks: `prepare` for the official files of ListOps, Text and Retrieval
// (lra.c) and a ListOps generator that writes files in the official layout (listops.c). Formats, policies
// and choices: docs/lra.md.
#ifndef HGRN2_LRA_H
#define HGRN2_LRA_H

#include "common.h"

// ---- prepare: official files -> DIR/{train,val,test}.examples (examples.h) ----
typedef enum { LRA_LISTOPS, LRA_TEXT, LRA_RETRIEVAL } LraTask;
typedef struct {
    LraTask task;
    const char *input;        // listops: the folder of basic_{train,val,test}.tsv; text: the aclImdb folder;
                              // retrieval: the folder of new_aan_pairs.{train,eval,test}.tsv
    const char *out;          // output directory: created, must not hold example files already
    int strict;               // a bad line stops the run instead of being skipped and counted
    size_t max_line_bytes;    // the longest line held whole ('\n' not counted); a longer one is a bad line
} LraPrepareOptions;
const char *lra_task_name(LraTask task);   // "lra-listops", "lra-text", "lra-retrieval"
// Looks a name up; returns 0 and sets *task, or -1 for a name that is none of them.
int lra_task_parse(const char *name, LraTask *task);
// Writes the three splits, prints a progress line on stderr and a summary on stdout. Returns 0; any failure
// dies with one message naming the file (and line), leaving no file under a final name.
int lra_prepare(const LraPrepareOptions *o);

// The token ids and lengths prepare uses (docs/lra.md).
#define LRA_LISTOPS_PAD 0
#define LRA_LISTOPS_UNK 1
#define LRA_LISTOPS_EOS 2
#define LRA_LISTOPS_LEN 2048      // tokens of an example, eos included
#define LRA_LISTOPS_CLASSES 10
#define LRA_BYTE_PAD 256          // Text and Retrieval: ids 0..255 are bytes
#define LRA_BYTE_EOS 257
#define LRA_BYTE_VOCAB 258
#define LRA_TEXT_LEN 4096         // tokens of a review, eos included
#define LRA_RETRIEVAL_LEN 4000    // tokens of each document of a pair, eos included

// ---- the ListOps generator: DIR/basic_{train,val,test}.tsv ----
#define LISTOPS_MAX_DEPTH 10      // a value may sit at depth 10, an operator at most at 9 (the root is depth 1)
#define LISTOPS_MAX_ARGS 10       // arguments of an operator: 2 to 10
#define LISTOPS_MIN_LEN 500       // kept when MIN < tokens < MAX (parentheses not counted), as the original
#define LISTOPS_MAX_LEN 2000
typedef struct {
    const char *out;          // directory: created; must not hold the three files already
    uint64_t seed;
    uint64_t sizes[3];        // examples of train, val, test (each at least 1)
    int min_len, max_len;     // kept when min_len < tokens < max_len (LISTOPS_MIN_LEN, LISTOPS_MAX_LEN: the official)
    unsigned ops;             // the operators drawn, bit k for LISTOPS_OPS[k]; 0 or 15: all four, as the original
} ListopsOptions;
// Draws distinct expressions until the three splits are full and writes them; a progress line on stderr, a
// summary on stdout. Returns 0; dies on a write failure, leaving no file under a final name, and when a
// length range holds too few distinct expressions for the sizes asked (no new one in LISTOPS_GIVE_UP draws).
// The same seed, sizes and lengths give the same bytes.
#define LISTOPS_GIVE_UP 5000000
int listops_generate(const ListopsOptions *o);
// The value of one operator over its arguments: MIN, MAX, MED (the median; of an even count the mean of the
// two middle values rounded down, as the original generator's int(numpy.median)), SM (the sum modulo 10).
// op: 0 MIN, 1 MAX, 2 MED, 3 SM; args are digits, at most LISTOPS_MAX_ARGS of them.
int listops_apply(int op, const int *args, int n);
extern const char *const LISTOPS_OPS[4];   // "[MIN", "[MAX", "[MED", "[SM"
// --ops: a comma-separated list of operator names (MIN, MAX, MED, SM; any case, '[' optional) as a mask of
// LISTOPS_OPS bits; 0 with *err set for an unknown, repeated or empty name.
unsigned listops_parse_ops(const char *list, const char **err);

#endif
