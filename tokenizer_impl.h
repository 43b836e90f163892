// tokenizer_impl.h: internal to tokenizer.c and tokenizer_hf.c: the Tokenizer's fields and the helpers both use.
#ifndef HGRN2_TOKENIZER_IMPL_H
#define HGRN2_TOKENIZER_IMPL_H

#include "tokenizer.h"
#include "json.h"

#include <stdatomic.h>

#include "unicode_libs.h"

enum { KIND_BYTE, KIND_GPT2, KIND_HF };

#define SP_SPACE "\xe2\x96\x81"   // "▁", SentencePiece's space

// The lookup tables and the piece cache (tokenizer.c).
typedef struct VSlot VSlot;
typedef struct PSlot PSlot;
typedef struct CacheEntry CacheEntry;

// Decoder steps of tokenizer.json, applied to each token's string in order.
enum { DEC_REPLACE, DEC_METASPACE };
typedef struct { int kind, drop_first; char from[16], to[16]; size_t nfrom, nto; } DecStep;
// NORM_UNICODE: NFC, NFD, NFKC or NFKD (through utf8proc; `uopts` holds its options, `from` the form's name).
enum { NORM_PREPEND, NORM_REPLACE, NORM_UNICODE };
typedef struct { int kind, uopts; char *from, *to; size_t nfrom, nto; } NormStep;

// Pre-tokenizer steps of a Sequence, each splitting every piece the previous one made: a regex Split (also
// Digits and Punctuation, which are Splits on a character class), or GPT-2's regex (ByteLevel's use_regex).
// The behaviours are Hugging Face's SplitDelimiterBehavior: what becomes of the matches.
enum { PRE_SPLIT, PRE_GPT2 };
enum { SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT, SPLIT_CONTIGUOUS };
typedef struct { int kind, behavior, invert; pcre2_code *re; } PreStep;

struct Tokenizer {
    int kind;
    char name[48];
    char *file;             // tokenizer.json: its path, for messages
    int32_t nvocab, eot, bos;
    // decoding: the bytes of each id, and whether the id exists (ids may have holes)
    char *dec;
    size_t *dec_off;        // nvocab + 1
    uint8_t *has_id;
    int first_differs;      // the first token of a text decodes differently (Strip / Metaspace decoders)
    // encoding: the bytes each model token stands for after normalization (with "▁" for SentencePiece)
    char *key;
    size_t *key_off;        // nvocab + 1
    uint8_t *is_added;      // tokenizer.json added_tokens (decoded from their content)
    uint8_t *is_fallback;   // <0xAB> byte-fallback tokens
    VSlot *vslots;
    uint64_t vmask;
    PSlot *pslots;
    uint64_t pmask, npairs;
    int byte_level;         // BPE starts from single bytes (else from UTF-8 characters)
    int32_t byte_id[256];   // byte-level: the token of each byte
    int32_t ascii_id[128];  // character-level: the token of each ASCII character
    int32_t fallback_id[256];
    int byte_fallback, fuse_unk, whole_piece_first, use_regex;
    int32_t unk;
    NormStep norm[8];
    int nnorm;
    int prefix_space;       // ByteLevel add_prefix_space
    int meta, meta_prepend, meta_split;
    int sp_split;           // split before each "▁" that follows another character (see sp_split_safe)
    PreStep pre[8];         // a Sequence of splitting pre-tokenizers (npre > 0), used instead of use_regex
    int npre;
    int pre_regex;          // some step is a PCRE2 regex: invalid UTF-8 is replaced for it (see tokenizer.c)
    char meta_rep[8];
    size_t meta_rep_len;
    DecStep decs[8];
    int ndec;
    char strip[8];          // Strip decoder: remove up to strip_n leading `strip` characters of the first token
    size_t strip_len;
    int strip_n;
    // the piece cache
    CacheEntry *_Atomic *cache;
    atomic_size_t cache_count;
};

static inline void bytebuf_putc(ByteBuf *b, char c) { bytebuf_append(b, &c, 1); }

// Per-id byte strings, written in any order into one buffer (each between idstrings_start and idstrings_end),
// then packed in id order into a blob and nvocab + 1 offsets; an id never started packs as the empty string.
typedef struct { int32_t nvocab; size_t *off, *len; ByteBuf buf; } IdStrings;
IdStrings idstrings_new(int32_t nvocab);
static inline void idstrings_start(IdStrings *s, int32_t id) { s->off[id] = s->buf.n; }
static inline size_t idstrings_end(IdStrings *s, int32_t id) { return s->len[id] = s->buf.n - s->off[id]; }
void idstrings_pack(const IdStrings *s, char **blob, size_t **offs);
void idstrings_free(IdStrings *s);

// hashing and JSON helpers (json.h parses; these die naming the file, the key and what was expected)
uint64_t fnv1a64(const void *p, size_t n);
const char *jtype_name(JsonType t);
int jis_null(const Json *v);
const Json *jget_typed(const char *file, const Json *obj, const char *key, JsonType type, const char *where);
int jget_bool(const char *file, const Json *obj, const char *key, int dflt, const char *where);
int64_t jint(const char *file, const Json *v, int64_t lo, int64_t hi, const char *what);
Json *parse_json_file(const char *path, char **text, size_t *len);

// GPT-2's byte-level alphabet and its inverse
void byte_alphabet(uint32_t byte_cp[256], int16_t cp_byte[324]);
long unmap_byte_level(const int16_t cp_byte[324], const char *s, size_t n, ByteBuf *out);

// building a tokenizer: its tables, the token-bytes map, the pair table, decoded tokens
Tokenizer *tokenizer_new(int kind);
void set_name_hash(Tokenizer *t, const char *prefix, uint64_t h);
void alloc_tables(Tokenizer *t, int32_t nvocab);
void vocab_build(Tokenizer *t, const uint8_t *skip);
int32_t vocab_get(const Tokenizer *t, const void *p, size_t n);
void pairs_init(Tokenizer *t, size_t expected);
void pair_insert(Tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t id, int overwrite);
// Entry i of a JSON object of token -> id, its ids already checked to be in range: marks the id present, starts
// its string in s and returns it. Dies, naming the id as `what`, when an earlier entry had the same id.
int32_t vocab_entry(Tokenizer *t, IdStrings *s, const char *file, const Json *obj, size_t i, const char *what);
void render_token(const Tokenizer *t, int32_t id, int first, ByteBuf *out);

// tokenizer_hf.c: a tokenizer.json file
Tokenizer *load_hf(const char *file);

#endif
