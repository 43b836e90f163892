// zeroshot.h: zero-shot evaluation of a language model on multiple-choice benchmarks and LAMBADA
// (`hgrn2 eval --task mc|lambada`, zeroshot.c; the definitions in docs/zeroshot.md). Each benchmark's own
// released JSON Lines file is read, every choice's continuation is scored by its log-likelihood given the
// context, as lm-evaluation-harness defines it, and accuracy is reported.
#ifndef HGRN2_ZEROSHOT_H
#define HGRN2_ZEROSHOT_H

#include "common.h"

// The formats `--format` names: each data set's released layout, and a generic one.
typedef enum { ZS_HELLASWAG, ZS_PIQA, ZS_ARC, ZS_WINOGRANDE, ZS_BOOLQ, ZS_LAMBADA, ZS_JSONL, ZS_NFORMATS } ZsFormat;
extern const char *const ZS_FORMAT_NAMES[ZS_NFORMATS];

// One item: a context (one per choice where they differ, as WinoGrande's) and the choices' continuations,
// strings as scored (the delimiter " " included); norm_len is what acc_norm divides by.
typedef struct {
    int n;              // choices, 1 (LAMBADA) to ZS_MAX_CHOICES
    int gold;           // the right one, in [0, n)
    int shared;         // one context for every choice: ctx[0]
    char **ctx;         // [shared ? 1 : n]
    char **cont;        // [n]
    int64_t *norm_len;  // [n] characters (Unicode code points) of the choice's text
    int64_t line;       // its line in the file (from 1)
} ZsItem;
#define ZS_MAX_CHOICES 64

// Reads the items of path in format f: at most limit (0: all). labels: PIQA's label file (NULL: the released
// name beside path). Any bad line dies naming the file and the line. Returns the count; free with zs_free_items.
int64_t zs_read_items(const char *path, ZsFormat f, const char *labels, int64_t limit, ZsItem **items);
void zs_free_items(ZsItem *items, int64_t n);

#endif
