// input.h: the input files of `prepare` (input.c): plain or zstd streams read in constant memory, and the
// line reader that bounds the memory a line may take. Used by prepare.c (text corpora) and lra.c (the Long
// Range Arena's files).
#ifndef HGRN2_INPUT_H
#define HGRN2_INPUT_H

#include <zstd.h>

#include "common.h"

// An input file, plain or zstd (told apart by the magic number, not the name), read as a byte stream in
// constant memory.
typedef struct {
    const char *path;
    int fd, zstd, file_eof, frame_done;
    ZSTD_DCtx *dctx;
    uint8_t *in;
    size_t in_cap;
    ZSTD_inBuffer zin;      // zstd: compressed bytes not yet decoded; plain: the sniffed bytes not yet returned
    uint64_t consumed;      // file bytes read so far
    uint64_t *bytes_in;     // a progress counter added to atomically (another thread reads it), or NULL
} InStream;
// Opens path (callers check first that it is a regular file; this dies if it is not).
void input_open(InStream *s, const char *path, uint64_t *bytes_in);
// Up to n bytes of the input's content; 0 at its end. Dies on a corrupted or truncated zstd stream.
size_t input_read(InStream *s, uint8_t *buf, size_t n);
void input_close(InStream *s);

// Lines of an input, each with its '\n' (the last one may lack it). A line is held whole only up to `max`
// bytes (its '\n' not counted), so memory stays bounded whatever the input, one endless line included: a
// longer line is skipped as it streams (records, where part of one is no use) or handed out in parts
// (WikiText, where text is text). The buffer grows to at most twice max. Set in, max and parts (or mem and
// mem_n), the rest zero; free(buf) at the end.
typedef struct {
    InStream *in;                // the source, or when NULL a buffer in memory (prepare_scan_jsonl), which is
    const uint8_t *mem;          // served a few KiB per read so that lines straddle reads as they do in files
    size_t mem_n, mem_pos;
    size_t max;
    int parts;                   // a longer line: 1 hands it out in parts, 0 skips it
    uint8_t *buf;
    size_t cap, pos, len, scan;  // scan: bytes from pos already known to hold no '\n'
    int eof, state;
    uint64_t lineno;             // the number of the line last returned (from 1)
    uint64_t bytes;              // input bytes consumed: lines returned and bytes skipped
} LineReader;
enum { LINE_END, LINE_WHOLE, LINE_PART, LINE_SKIPPED };   // what next_line returns
// The next line into *line and *n: LINE_WHOLE, a line of at most max bytes; LINE_PART (parts mode), a
// piece of a longer line, the last piece ending with the line's '\n'; LINE_SKIPPED (skip mode), a longer
// line, nothing returned (its bytes are dropped as reading goes on); LINE_END at the end of the input.
int next_line(LineReader *lr, const char **line, size_t *n);

#endif
