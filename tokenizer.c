// tokenizer.c: byte-level, GPT-2 BPE and Hugging Face tokenizer.json (BPE) tokenizers: loading, encoding,
// decoding. docs/tokenizers.md lists what is supported and the identity strings.
//
// Encoding runs in three stages, each configured by the loaded files:
//   1. normalize: the HF normalizers Prepend and Replace, and the prefix rules of the Metaspace and
//      ByteLevel pre-tokenizers;
//   2. split into pieces: GPT-2's regex (hand-written below), Metaspace's split before each "▁", or none;
//   3. BPE on each piece, starting from single bytes (byte-level vocabularies) or from UTF-8 characters
//      (SentencePiece-style vocabularies, with <0xAB> byte fallback), always merging the adjacent pair of
//      lowest rank first, leftmost on ties, with a heap so that long pieces cost O(n log n).
// Invalid UTF-8 is never rejected: each byte that does not belong to a valid UTF-8 sequence counts as a
// character of its own, of the class "other" (not a letter, number or space) for GPT-2's regex, and is encoded
// through the byte-level alphabet or the byte-fallback tokens, so that it decodes back to itself.
#include "tokenizer.h"
#include "json.h"
#include "unicode_tables.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>

enum { KIND_BYTE, KIND_GPT2, KIND_HF };

// ---------------------------------------------------------------- growable buffers

void idbuf_push(IdBuf *b, int32_t id) {
    if (b->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 256;
        b->ids = xrealloc(b->ids, b->cap * sizeof *b->ids);
    }
    b->ids[b->n++] = id;
}

static void idbuf_append(IdBuf *b, const int32_t *ids, size_t n) {
    if (n == 0) return;
    if (b->cap - b->n < n) {
        size_t cap = b->cap ? 2 * b->cap : 256;
        if (cap < b->n + n) cap = b->n + n;
        b->ids = xrealloc(b->ids, cap * sizeof *b->ids);
        b->cap = cap;
    }
    memcpy(b->ids + b->n, ids, n * sizeof *ids);
    b->n += n;
}

void bytebuf_append(ByteBuf *b, const void *p, size_t n) {
    if (b->cap - b->n < n) {
        size_t cap = b->cap ? 2 * b->cap : 256;
        if (cap < b->n + n) cap = b->n + n;
        b->data = xrealloc(b->data, cap);
        b->cap = cap;
    }
    if (n) memcpy(b->data + b->n, p, n);
    b->n += n;
}

static void bytebuf_putc(ByteBuf *b, char c) { bytebuf_append(b, &c, 1); }

// ---------------------------------------------------------------- hashing and files

// The identity hash of a tokenizer file (stable across versions and machines).
static uint64_t fnv1a64(const void *p, size_t n) {
    const uint8_t *s = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
    return h;
}

// The hash of the lookup tables: word at a time, since it runs once per piece of text encoded.
static inline uint64_t hash_bytes(const uint8_t *p, size_t n) {
    uint64_t h = 0x9e3779b97f4a7c15ull ^ (n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
        p += 8;
        n -= 8;
    }
    if (n) {
        uint64_t w = 0;
        for (size_t i = 0; i < n; i++) w |= (uint64_t)p[i] << (8 * i);
        h = (h ^ w) * 0x94d049bb133111ebull;
    }
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ull;
    h ^= h >> 32;
    return h;
}

static char *path_join(const char *dir, const char *name) {
    size_t nd = strlen(dir), nn = strlen(name);
    char *p = xmalloc(nd + nn + 2);
    memcpy(p, dir, nd);
    size_t k = nd;
    if (k && p[k - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, nn + 1);
    return p;
}

static int is_regular_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

// ---------------------------------------------------------------- JSON helpers (json.h parses)

static const char *jtype_name(JsonType t) {
    static const char *names[] = { "null", "boolean", "number", "string", "array", "object" };
    return names[t];
}

static int jis_null(const Json *v) { return !v || json_type(v) == JSON_NULL; }

// The value of a key that must be of the given type if present; NULL when absent or null.
static const Json *jget_typed(const char *file, const Json *obj, const char *key, JsonType type, const char *where) {
    const Json *v = json_get(obj, key);
    if (jis_null(v)) return NULL;
    if (json_type(v) != type) die("%s: \"%s\" of %s must be a %s, found a %s", file, key, where, jtype_name(type), jtype_name(json_type(v)));
    return v;
}

static int jget_bool(const char *file, const Json *obj, const char *key, int dflt, const char *where) {
    const Json *v = json_get(obj, key);
    if (jis_null(v)) return dflt;
    if (json_type(v) != JSON_BOOL) die("%s: \"%s\" of %s must be true or false, found a %s", file, key, where, jtype_name(json_type(v)));
    return json_num(v) != 0;
}

static int64_t jint(const char *file, const Json *v, int64_t lo, int64_t hi, const char *what) {
    // the range test comes first: casting an out-of-range double to an integer is undefined
    if (json_type(v) != JSON_NUM || !(json_num(v) >= (double)lo && json_num(v) <= (double)hi) || json_num(v) != (double)(int64_t)json_num(v))
        die("%s: %s must be an integer in [%lld, %lld]", file, what, (long long)lo, (long long)hi);
    return (int64_t)json_num(v);
}

static Json *parse_json_file(const char *path, char **text, size_t *len) {
    char err[256];
    *text = read_file(path, len);
    Json *root = json_parse(*text, *len, json_default_limit(*len), err, sizeof err);
    if (!root) die("%s: %s", path, err);
    return root;
}

// ---------------------------------------------------------------- Unicode classes and UTF-8

enum { CL_OTHER, CL_LETTER, CL_NUMBER, CL_SPACE };
#define CP_INVALID 0xFFFFFFFFu

static uint8_t g_bmp_class[0x10000];
static pthread_once_t g_class_once = PTHREAD_ONCE_INIT;

static void fill_class(const uint32_t (*r)[2], int n, uint8_t cl) {
    for (int i = 0; i < n; i++)
        for (uint32_t c = r[i][0]; c <= r[i][1] && c < 0x10000; c++) g_bmp_class[c] = cl;
}

static void build_class_table(void) {
    fill_class(uc_letter_ranges, UC_LETTER_NRANGES, CL_LETTER);
    fill_class(uc_number_ranges, UC_NUMBER_NRANGES, CL_NUMBER);
    fill_class(uc_space_ranges, UC_SPACE_NRANGES, CL_SPACE);
}

static int in_ranges(const uint32_t (*r)[2], int n, uint32_t cp) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < r[mid][0]) hi = mid - 1;
        else if (cp > r[mid][1]) lo = mid + 1;
        else return 1;
    }
    return 0;
}

static inline int cp_class(uint32_t cp) {
    if (cp < 0x10000) return g_bmp_class[cp];
    if (cp == CP_INVALID) return CL_OTHER;
    if (in_ranges(uc_letter_ranges, UC_LETTER_NRANGES, cp)) return CL_LETTER;
    if (in_ranges(uc_number_ranges, UC_NUMBER_NRANGES, cp)) return CL_NUMBER;
    if (in_ranges(uc_space_ranges, UC_SPACE_NRANGES, cp)) return CL_SPACE;
    return CL_OTHER;
}

// The character at s[0..n), n >= 1: returns its length in bytes. A byte that does not start a valid
// (shortest-form, non-surrogate, at most U+10FFFF) sequence is a character of length 1, code point CP_INVALID.
static inline int utf8_decode(const uint8_t *s, size_t n, uint32_t *cp) {
    uint8_t c = s[0];
    uint32_t v;
    if (c < 0x80) { *cp = c; return 1; }
    if (c < 0xC2) goto bad;
    if (c < 0xE0) {
        if (n < 2 || (s[1] & 0xC0) != 0x80) goto bad;
        *cp = ((uint32_t)(c & 0x1F) << 6) | (s[1] & 0x3F);
        return 2;
    }
    if (c < 0xF0) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) goto bad;
        v = ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        if (v < 0x800 || (v >= 0xD800 && v <= 0xDFFF)) goto bad;
        *cp = v;
        return 3;
    }
    if (c < 0xF5) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) goto bad;
        v = ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) | ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
        if (v < 0x10000 || v > 0x10FFFF) goto bad;
        *cp = v;
        return 4;
    }
bad:
    *cp = CP_INVALID;
    return 1;
}

static inline int class_at(const uint8_t *s, size_t n, size_t i, int *len) {
    uint32_t cp;
    if (s[i] < 0x80) { *len = 1; return g_bmp_class[s[i]]; }
    *len = utf8_decode(s + i, n - i, &cp);
    return cp_class(cp);
}

static inline size_t class_run_end(const uint8_t *s, size_t n, size_t i, int cl) {
    while (i < n) {
        if (s[i] < 0x80) {
            if (g_bmp_class[s[i]] != cl) break;
            i++;
        } else {
            int len;
            if (class_at(s, n, i, &len) != cl) break;
            i += (size_t)len;
        }
    }
    return i;
}

// The end of the piece of GPT-2's pre-tokenization regex that starts at s[i] (i < n):
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// The alternatives are tried in order at each position, as the regex engine does.
static size_t gpt2_piece_end(const uint8_t *s, size_t n, size_t i) {
    if (s[i] == '\'' && i + 1 < n) {
        uint8_t a = s[i + 1];
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
        if (i + 2 < n) {
            uint8_t b = s[i + 2];
            if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
        }
    }
    int len, cl = class_at(s, n, i, &len);
    if (s[i] == ' ' && i + 1 < n) {   // " ?" then a run of letters, numbers or others
        int len2, cl2 = class_at(s, n, i + 1, &len2);
        if (cl2 != CL_SPACE) return class_run_end(s, n, i + 1 + (size_t)len2, cl2);
    }
    if (cl != CL_SPACE) return class_run_end(s, n, i + (size_t)len, cl);
    // \s+(?!\S): a run of spaces that ends the text, or all of the run but its last character when a
    // non-space follows; a single space before a non-space falls to the final \s+.
    size_t j = i + (size_t)len, last = i;
    while (j < n) {
        int l2;
        if (class_at(s, n, j, &l2) != CL_SPACE) break;
        last = j;
        j += (size_t)l2;
    }
    return (j == n || last == i) ? j : last;
}

// GPT-2's byte-level alphabet: printable Latin-1 bytes stand for themselves, the others for U+0100 upwards.
static void byte_alphabet(uint32_t byte_cp[256], int16_t cp_byte[324]) {
    for (int i = 0; i < 324; i++) cp_byte[i] = -1;
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        byte_cp[b] = printable ? (uint32_t)b : (uint32_t)(256 + extra++);
        cp_byte[byte_cp[b]] = (int16_t)b;
    }
}

// Maps a byte-level string back to its bytes; returns -1 when a character is outside the alphabet.
static long unmap_byte_level(const int16_t cp_byte[324], const char *s, size_t n, ByteBuf *out) {
    size_t start = out->n;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += (size_t)utf8_decode((const uint8_t *)s + i, n - i, &cp);
        if (cp >= 324 || cp_byte[cp] < 0) { out->n = start; return -1; }
        bytebuf_putc(out, (char)cp_byte[cp]);
    }
    return (long)(out->n - start);
}

// ---------------------------------------------------------------- lookup tables

// Token bytes to id: open addressing over ids, with 32 bits of the hash kept to skip most compares.
typedef struct { uint32_t tag; int32_t id; } VSlot;
// (left id, right id) to (rank, merged id).
typedef struct { uint64_t key; int32_t rank, id; } PSlot;
#define PAIR_EMPTY UINT64_MAX

// A cache of encoded pieces shared by all threads: insert-only, lock-free (entries are published with a
// compare-and-swap and never change afterwards), bounded in size.
typedef struct CacheEntry { uint64_t hash; uint32_t len, nids; int32_t ids[]; /* then the bytes */ } CacheEntry;
#define CACHE_SLOTS (1u << 19)
#define CACHE_MAX_ENTRIES (CACHE_SLOTS / 2)
#define CACHE_MAX_PIECE 64
#define CACHE_PROBES 16

// Decoder steps of tokenizer.json, applied to each token's string in order.
enum { DEC_REPLACE, DEC_METASPACE };
typedef struct { int kind, drop_first; char from[16], to[16]; size_t nfrom, nto; } DecStep;
enum { NORM_PREPEND, NORM_REPLACE };
typedef struct { int kind; char *from, *to; size_t nfrom, nto; } NormStep;

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

static int32_t vocab_find(const Tokenizer *t, const uint8_t *p, size_t n, uint64_t h) {
    uint32_t tag = (uint32_t)(h >> 32);
    for (uint64_t i = h & t->vmask;; i = (i + 1) & t->vmask) {
        VSlot s = t->vslots[i];
        if (s.id < 0) return -1;
        if (s.tag == tag && t->key_off[s.id + 1] - t->key_off[s.id] == n && !memcmp(t->key + t->key_off[s.id], p, n))
            return s.id;
    }
}

static int32_t vocab_get(const Tokenizer *t, const void *p, size_t n) {
    return vocab_find(t, p, n, hash_bytes(p, n));
}

// Builds the token-bytes map over every id whose key is set; the first id wins on duplicate keys.
static void vocab_build(Tokenizer *t, const uint8_t *skip) {
    uint64_t cap = 16;
    while (cap < 2 * (uint64_t)t->nvocab) cap *= 2;
    t->vslots = xmalloc(cap * sizeof *t->vslots);
    for (uint64_t i = 0; i < cap; i++) t->vslots[i] = (VSlot){ 0, -1 };
    t->vmask = cap - 1;
    for (int32_t id = 0; id < t->nvocab; id++) {
        if (!t->has_id[id] || (skip && skip[id]) || t->key_off[id] == SIZE_MAX) continue;
        const uint8_t *p = (const uint8_t *)t->key + t->key_off[id];
        size_t n = t->key_off[id + 1] - t->key_off[id];
        uint64_t h = hash_bytes(p, n);
        if (vocab_find(t, p, n, h) >= 0) continue;
        uint64_t i = h & t->vmask;
        while (t->vslots[i].id >= 0) i = (i + 1) & t->vmask;
        t->vslots[i] = (VSlot){ (uint32_t)(h >> 32), id };
    }
}

static inline uint64_t pair_slot(uint64_t key, uint64_t mask) {
    return ((key * 0x9e3779b97f4a7c15ull) >> 20) & mask;
}

static inline int pair_find(const Tokenizer *t, int32_t a, int32_t b, int32_t *rank, int32_t *id) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (uint64_t i = pair_slot(key, t->pmask);; i = (i + 1) & t->pmask) {
        if (t->pslots[i].key == key) { *rank = t->pslots[i].rank; *id = t->pslots[i].id; return 1; }
        if (t->pslots[i].key == PAIR_EMPTY) return 0;
    }
}

static void pairs_alloc(Tokenizer *t, uint64_t cap) {
    t->pslots = xmalloc(cap * sizeof *t->pslots);
    for (uint64_t i = 0; i < cap; i++) t->pslots[i].key = PAIR_EMPTY;
    t->pmask = cap - 1;
    t->npairs = 0;
}

// The table starts at the size the caller expects and doubles when half full: its size follows the
// distinct pairs, not the length of a merge list that may repeat one pair millions of times.
static void pairs_init(Tokenizer *t, size_t expected) {
    uint64_t cap = 16;
    while (cap < 2 * (uint64_t)expected) cap *= 2;
    pairs_alloc(t, cap);
}

// overwrite=1: a later definition of the same pair replaces the earlier one (as HF's merge map does).
static void pair_insert(Tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t id, int overwrite) {
    if (2 * (t->npairs + 1) > t->pmask + 1) {
        PSlot *old = t->pslots;
        uint64_t oldcap = t->pmask + 1;
        pairs_alloc(t, 2 * oldcap);
        for (uint64_t i = 0; i < oldcap; i++) {
            if (old[i].key == PAIR_EMPTY) continue;
            uint64_t j = pair_slot(old[i].key, t->pmask);
            while (t->pslots[j].key != PAIR_EMPTY) j = (j + 1) & t->pmask;
            t->pslots[j] = old[i];
            t->npairs++;
        }
        free(old);
    }
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint64_t i = pair_slot(key, t->pmask);
    while (t->pslots[i].key != PAIR_EMPTY && t->pslots[i].key != key) i = (i + 1) & t->pmask;
    if (t->pslots[i].key == key && !overwrite) return;
    if (t->pslots[i].key == PAIR_EMPTY) t->npairs++;
    t->pslots[i] = (PSlot){ key, rank, id };
}

static const CacheEntry *cache_find(const Tokenizer *t, const uint8_t *p, size_t n, uint64_t h) {
    for (uint64_t k = 0, i = h & (CACHE_SLOTS - 1); k < CACHE_PROBES; k++, i = (i + 1) & (CACHE_SLOTS - 1)) {
        const CacheEntry *e = atomic_load_explicit(&t->cache[i], memory_order_acquire);
        if (!e) return NULL;
        if (e->hash == h && e->len == n && !memcmp(e->ids + e->nids, p, n)) return e;
    }
    return NULL;
}

static void cache_insert(Tokenizer *t, const uint8_t *p, size_t n, uint64_t h, const int32_t *ids, size_t nids) {
    if (atomic_load_explicit(&t->cache_count, memory_order_relaxed) >= CACHE_MAX_ENTRIES) return;
    CacheEntry *e = xmalloc(sizeof *e + nids * sizeof(int32_t) + n);
    e->hash = h;
    e->len = (uint32_t)n;
    e->nids = (uint32_t)nids;
    if (nids) memcpy(e->ids, ids, nids * sizeof(int32_t));
    memcpy(e->ids + nids, p, n);
    for (uint64_t k = 0, i = h & (CACHE_SLOTS - 1); k < CACHE_PROBES; k++, i = (i + 1) & (CACHE_SLOTS - 1)) {
        CacheEntry *cur = NULL;
        if (atomic_compare_exchange_strong_explicit(&t->cache[i], &cur, e, memory_order_acq_rel, memory_order_acquire)) {
            atomic_fetch_add_explicit(&t->cache_count, 1, memory_order_relaxed);
            return;
        }
        if (cur->hash == h && cur->len == n && !memcmp(cur->ids + cur->nids, p, n)) break;   // another thread won
    }
    free(e);
}

// ---------------------------------------------------------------- BPE

typedef struct { int32_t id, prev, next; } Sym;

static inline void heap_push(uint64_t *h, size_t *n, uint64_t v) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h[parent] <= v) break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = v;
}

static inline uint64_t heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0], v = h[--*n];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && h[c + 1] < h[c]) c++;
        if (h[c] >= v) break;
        h[i] = h[c];
        i = c;
    }
    if (m) h[i] = v;
    return top;
}

// The initial symbols of a piece: its bytes (byte-level) or its characters (with byte fallback, else the
// unknown token, else dropped, as HF's BPE model does). Returns the count; at most n.
static size_t initial_symbols(const Tokenizer *t, const uint8_t *p, size_t n, Sym *sym) {
    size_t ns = 0;
    int unk_pending = 0;
#define ADD(x) (sym[ns].id = (x), ns++)
    for (size_t i = 0; i < n;) {
        int32_t id;
        size_t len = 1;
        if (t->byte_level) {
            id = t->byte_id[p[i]];
        } else if (p[i] < 0x80) {
            id = t->ascii_id[p[i]];
        } else {
            uint32_t cp;
            len = (size_t)utf8_decode(p + i, n - i, &cp);
            id = vocab_get(t, p + i, len);
        }
        if (id >= 0) {
            if (unk_pending) { ADD(t->unk); unk_pending = 0; }
            ADD(id);
        } else {
            int fell_back = 0;
            if (t->byte_fallback) {
                fell_back = 1;
                for (size_t k = 0; k < len; k++) fell_back &= t->fallback_id[p[i + k]] >= 0;
                // HF adds the byte tokens before a pending unknown token; kept for identical ids.
                if (fell_back) for (size_t k = 0; k < len; k++) ADD(t->fallback_id[p[i + k]]);
            }
            if (!fell_back && t->unk >= 0) {
                if (unk_pending && !t->fuse_unk) ADD(t->unk);
                unk_pending = 1;
            }
        }
        i += len;
    }
    if (unk_pending) ADD(t->unk);
#undef ADD
    for (size_t i = 0; i < ns; i++) {
        sym[i].prev = (int32_t)i - 1;
        sym[i].next = i + 1 < ns ? (int32_t)i + 1 : -1;
    }
    return ns;
}

#define BPE_SMALL 128

static void bpe(const Tokenizer *t, const uint8_t *p, size_t n, IdBuf *out) {
    if (n > INT32_MAX) die("a piece of %zu bytes is too long to encode (the limit is 2 GiB)", n);
    Sym sym_small[BPE_SMALL];
    uint64_t heap_small[3 * BPE_SMALL];
    Sym *sym = n <= BPE_SMALL ? sym_small : xmalloc(n * sizeof *sym);
    size_t ns = initial_symbols(t, p, n, sym);
    uint64_t *heap = ns <= BPE_SMALL ? heap_small : xmalloc(3 * ns * sizeof *heap);
    size_t nh = 0;
    int32_t rank, id;
    // A heap of (rank, position) of mergeable pairs; entries made stale by an earlier merge are skipped when
    // popped (the pair at that position no longer has that rank). Equal ranks merge leftmost first.
    for (size_t i = 0; i + 1 < ns; i++)
        if (pair_find(t, sym[i].id, sym[i + 1].id, &rank, &id)) heap_push(heap, &nh, (uint64_t)rank << 32 | i);
    while (nh) {
        uint64_t top = heap_pop(heap, &nh);
        int32_t r = (int32_t)(top >> 32), pos = (int32_t)(uint32_t)top, nx = sym[pos].next;
        if (sym[pos].id < 0 || nx < 0) continue;
        if (!pair_find(t, sym[pos].id, sym[nx].id, &rank, &id) || rank != r) continue;
        sym[pos].id = id;
        sym[pos].next = sym[nx].next;
        if (sym[nx].next >= 0) sym[sym[nx].next].prev = pos;
        sym[nx].id = -1;
        int32_t pv = sym[pos].prev, nn = sym[pos].next;
        if (pv >= 0 && pair_find(t, sym[pv].id, id, &rank, &r)) heap_push(heap, &nh, (uint64_t)rank << 32 | (uint32_t)pv);
        if (nn >= 0 && pair_find(t, id, sym[nn].id, &rank, &r)) heap_push(heap, &nh, (uint64_t)rank << 32 | (uint32_t)pos);
    }
    for (int32_t i = ns ? 0 : -1; i >= 0; i = sym[i].next) idbuf_push(out, sym[i].id);
    if (sym != sym_small) free(sym);
    if (heap != heap_small) free(heap);
}

static void encode_piece(const Tokenizer *t, const uint8_t *p, size_t n, IdBuf *out) {
    uint64_t h = hash_bytes(p, n);
    // tiktoken (and HF's ignore_merges) emit a piece that is itself a token without running BPE.
    if (t->whole_piece_first) {
        int32_t id = vocab_find(t, p, n, h);
        if (id >= 0) { idbuf_push(out, id); return; }
    }
    if (n <= CACHE_MAX_PIECE) {
        const CacheEntry *e = cache_find(t, p, n, h);
        if (e) { idbuf_append(out, e->ids, e->nids); return; }
    }
    size_t start = out->n;
    bpe(t, p, n, out);
    // (a piece can give no ids: characters outside a vocabulary without unk or byte fallback are dropped)
    if (n <= CACHE_MAX_PIECE) cache_insert((Tokenizer *)t, p, n, h, out->n > start ? out->ids + start : NULL, out->n - start);
}

// Normalizers and decoders may grow a text (Replace(" ", "▁") triples each space), but never without bound:
// real ones grow it a few times at most, while a file that chains Replace steps could ask for gigabytes for
// a few bytes. At every step a text may grow to 16 times its size, or to 64 KiB when that is more.
#define GROWTH_FACTOR 16
#define GROWTH_FLOOR (64u << 10)

static size_t growth_cap(size_t n) {
    if (n > SIZE_MAX / GROWTH_FACTOR) return SIZE_MAX;
    return n * GROWTH_FACTOR > GROWTH_FLOOR ? n * GROWTH_FACTOR : GROWTH_FLOOR;
}

// Appends s[0..n) to out with every `from` replaced by `to`. Returns -1, out left partly written, as soon
// as more than max bytes would be appended.
static int replace_all(const uint8_t *s, size_t n, const char *from, size_t nfrom, const char *to, size_t nto, size_t max, ByteBuf *out) {
    size_t i = 0, lit = 0, start = out->n;
    if (n == 0) return 0;
    while (i + nfrom <= n) {
        if (s[i] == (uint8_t)from[0] && !memcmp(s + i, from, nfrom)) {
            if (out->n - start + (i - lit) + nto > max) return -1;
            bytebuf_append(out, s + lit, i - lit);
            bytebuf_append(out, to, nto);
            i += nfrom;
            lit = i;
        } else {
            i++;
        }
    }
    if (out->n - start + (n - lit) > max) return -1;
    bytebuf_append(out, s + lit, n - lit);
    return 0;
}

static void die_growth(const Tokenizer *t, const char *what, size_t len, size_t cap) {
    die("%s: %s grows a text of %zu bytes beyond %zu bytes (the limit is %d times the text, or %u KiB; real "
        "normalizers grow it a few times at most)", t->file, what, len, cap, GROWTH_FACTOR, GROWTH_FLOOR >> 10);
}

#define SP_SPACE "\xe2\x96\x81"   // "▁", SentencePiece's space

static int starts_with(const uint8_t *s, size_t n, const char *p, size_t np) {
    return n >= np && !memcmp(s, p, np);
}

void tokenizer_encode(const Tokenizer *t, const char *text, size_t len, IdBuf *out) {
    const uint8_t *s = (const uint8_t *)text;
    size_t n = len;
    if (t->kind == KIND_BYTE) {
        for (size_t i = 0; i < n; i++) idbuf_push(out, s[i]);
        return;
    }
    if (n == 0) return;
    // Normalization rewrites the text into a buffer (ping-pong between two for multi-step sequences).
    ByteBuf nb[2] = { { 0 }, { 0 } };
    int cur = 0;
    size_t cap = growth_cap(len);
    char what[64];
    for (int k = 0; k < t->nnorm; k++) {
        const NormStep *st = &t->norm[k];
        ByteBuf *dst = &nb[cur];
        dst->n = 0;
        int over;
        if (st->kind == NORM_PREPEND) {
            over = n + st->nto > cap;
            if (!over) {
                bytebuf_append(dst, st->to, st->nto);
                bytebuf_append(dst, s, n);
            }
        } else {
            over = replace_all(s, n, st->from, st->nfrom, st->to, st->nto, cap, dst) < 0;
        }
        if (over) {
            snprintf(what, sizeof what, "normalizer %d of %d (%s)", k + 1, t->nnorm, st->kind == NORM_PREPEND ? "Prepend" : "Replace");
            die_growth(t, what, len, cap);
        }
        s = (const uint8_t *)dst->data;
        n = dst->n;
        cur ^= 1;
    }
    if (t->meta) {
        ByteBuf *dst = &nb[cur];
        dst->n = 0;
        ByteBuf tmp = { 0 };
        if (replace_all(s, n, " ", 1, t->meta_rep, t->meta_rep_len, cap, &tmp) < 0 || tmp.n + t->meta_rep_len > cap)
            die_growth(t, "the Metaspace pre_tokenizer", len, cap);
        if (t->meta_prepend && !starts_with((const uint8_t *)tmp.data, tmp.n, t->meta_rep, t->meta_rep_len))
            bytebuf_append(dst, t->meta_rep, t->meta_rep_len);
        bytebuf_append(dst, tmp.data, tmp.n);
        free(tmp.data);
        s = (const uint8_t *)dst->data;
        n = dst->n;
        cur ^= 1;
    }
    if (t->prefix_space && n && s[0] != ' ') {
        ByteBuf *dst = &nb[cur];
        dst->n = 0;
        bytebuf_putc(dst, ' ');
        bytebuf_append(dst, s, n);
        s = (const uint8_t *)dst->data;
        n = dst->n;
    }
    if (t->use_regex) {
        for (size_t i = 0; i < n;) {
            size_t e = gpt2_piece_end(s, n, i);
            encode_piece(t, s + i, e - i, out);
            i = e;
        }
    } else if (t->meta_split) {
        // Metaspace splits before each replacement character, which stays with the text that follows it.
        size_t start = 0, r = t->meta_rep_len;
        for (size_t i = 1; i + r <= n; i++) {
            if (s[i] == (uint8_t)t->meta_rep[0] && !memcmp(s + i, t->meta_rep, r)) {
                encode_piece(t, s + start, i - start, out);
                start = i;
            }
        }
        if (start < n) encode_piece(t, s + start, n - start, out);
    } else if (t->sp_split) {
        size_t start = 0;
        for (size_t i = 1; i + 3 <= n; i++) {
            if (s[i] == 0xE2 && !memcmp(s + i, SP_SPACE, 3) && !(i >= 3 && !memcmp(s + i - 3, SP_SPACE, 3))) {
                encode_piece(t, s + start, i - start, out);
                start = i;
            }
        }
        if (start < n) encode_piece(t, s + start, n - start, out);
    } else if (n) {
        encode_piece(t, s, n, out);
    }
    free(nb[0].data);
    free(nb[1].data);
}

// ---------------------------------------------------------------- decoding

static void check_id(const Tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->nvocab) die("token id %d is out of range [0, %d) of tokenizer %s", id, t->nvocab, t->name);
    if (!t->has_id[id]) die("token id %d is not a token of tokenizer %s (the vocabulary has no such id)", id, t->name);
}

// The bytes of a tokenizer.json token through the decoder: model tokens run their string through the
// Replace / Metaspace steps (Metaspace drops its replacement characters in the first token); added and
// byte-fallback tokens keep their bytes. The first token of a text then loses the leading characters the
// Strip decoder removes. Added and fallback tokens are only rendered once t->dec is built.
static void render_token(const Tokenizer *t, int32_t id, int first, ByteBuf *out) {
    ByteBuf a = { 0 }, b = { 0 };
    if (t->is_added[id] || t->is_fallback[id]) {
        bytebuf_append(&a, t->dec + t->dec_off[id], t->dec_off[id + 1] - t->dec_off[id]);
    } else {
        size_t len = t->key_off[id + 1] - t->key_off[id], cap = growth_cap(len);
        bytebuf_append(&a, t->key + t->key_off[id], len);
        for (int s = 0; s < t->ndec; s++) {
            const DecStep *d = &t->decs[s];
            b.n = 0;
            size_t nto = (d->kind == DEC_METASPACE && first && d->drop_first) ? 0 : d->nto;
            if (replace_all((const uint8_t *)a.data, a.n, d->from, d->nfrom, d->to, nto, cap, &b) < 0)
                die("%s: decoder %d of %d (%s) grows token %d of %zu bytes beyond %zu bytes (the limit is %d times the "
                    "token, or %u KiB)", t->file, s + 1, t->ndec, d->kind == DEC_REPLACE ? "Replace" : "Metaspace", id, len,
                    cap, GROWTH_FACTOR, GROWTH_FLOOR >> 10);
            ByteBuf tmp = a;
            a = b;
            b = tmp;
        }
    }
    // (a token may render to nothing, its buffer then never allocated: no pointer arithmetic on it)
    size_t skip = 0;
    if (first && !t->is_fallback[id] && t->strip_len)
        for (int s = 0; s < t->strip_n && skip + t->strip_len <= a.n && !memcmp(a.data + skip, t->strip, t->strip_len); s++)
            skip += t->strip_len;
    if (a.n > skip) bytebuf_append(out, a.data + skip, a.n - skip);
    free(a.data);
    free(b.data);
}

void tokenizer_decode_one(const Tokenizer *t, int32_t id, int first, ByteBuf *out) {
    check_id(t, id);
    if (first && t->first_differs) render_token(t, id, 1, out);
    else bytebuf_append(out, t->dec + t->dec_off[id], t->dec_off[id + 1] - t->dec_off[id]);
}

void tokenizer_decode(const Tokenizer *t, const int32_t *ids, size_t n, ByteBuf *out) {
    for (size_t i = 0; i < n; i++) tokenizer_decode_one(t, ids[i], i == 0, out);
}

// ---------------------------------------------------------------- loading

int tokenizer_vocab_size(const Tokenizer *t) { return t->nvocab; }
const char *tokenizer_name(const Tokenizer *t) { return t->name; }
int32_t tokenizer_eot(const Tokenizer *t) { return t->eot; }
int32_t tokenizer_bos(const Tokenizer *t) { return t->bos; }

static Tokenizer *tokenizer_new(int kind) {
    int rc = pthread_once(&g_class_once, build_class_table);
    if (rc != 0) die("pthread_once failed: %s", strerror(rc));
    Tokenizer *t = xcalloc(1, sizeof *t);
    t->kind = kind;
    t->eot = t->bos = t->unk = -1;
    for (int i = 0; i < 256; i++) t->byte_id[i] = t->fallback_id[i] = -1;
    for (int i = 0; i < 128; i++) t->ascii_id[i] = -1;
    return t;
}

static void alloc_tables(Tokenizer *t, int32_t nvocab) {
    t->nvocab = nvocab;
    t->has_id = xcalloc((size_t)nvocab, 1);
    t->is_added = xcalloc((size_t)nvocab, 1);
    t->is_fallback = xcalloc((size_t)nvocab, 1);
    t->cache = xcalloc(CACHE_SLOTS, sizeof *t->cache);
    atomic_init(&t->cache_count, 0);
}

// Packs per-id byte strings (given as offsets into a ByteBuf, SIZE_MAX for none) into a blob + offsets.
static void pack_strings(int32_t nvocab, const size_t *off, const size_t *len, const ByteBuf *src, char **blob, size_t **offs) {
    size_t total = 0;
    for (int32_t i = 0; i < nvocab; i++) if (off[i] != SIZE_MAX) total += len[i];
    *blob = xmalloc(total);
    *offs = xmalloc(((size_t)nvocab + 1) * sizeof **offs);
    size_t pos = 0;
    for (int32_t i = 0; i < nvocab; i++) {
        (*offs)[i] = pos;
        // (empty strings only: src may be empty and its buffer never allocated)
        if (off[i] != SIZE_MAX && len[i]) { memcpy(*blob + pos, src->data + off[i], len[i]); pos += len[i]; }
    }
    (*offs)[nvocab] = pos;
}

static void set_name_hash(Tokenizer *t, const char *prefix, uint64_t h) {
    snprintf(t->name, sizeof t->name, "%s%016llx", prefix, (unsigned long long)h);
}

static Tokenizer *load_byte(void) {
    Tokenizer *t = tokenizer_new(KIND_BYTE);
    snprintf(t->name, sizeof t->name, "byte");
    alloc_tables(t, 256);
    t->dec = xmalloc(256);
    t->dec_off = xmalloc(257 * sizeof *t->dec_off);
    for (int i = 0; i < 256; i++) { t->dec[i] = (char)i; t->dec_off[i] = (size_t)i; t->has_id[i] = 1; }
    t->dec_off[256] = 256;
    return t;
}

// The FNV-1a hashes of the released GPT-2 encoder.json and vocab.bpe: those files are named "gpt2".
#define GPT2_ENCODER_FNV 0x38c24f1cfdf09fa4ull
#define GPT2_VOCAB_FNV 0xd73386ba902b110dull

static Tokenizer *load_gpt2(const char *dir) {
    char *enc_path = path_join(dir, "encoder.json"), *bpe_path = path_join(dir, "vocab.bpe");
    size_t enc_len, bpe_len;
    char *enc_text;
    char *bpe_text = read_file(bpe_path, &bpe_len);
    Json *root = parse_json_file(enc_path, &enc_text, &enc_len);
    if (json_type(root) != JSON_OBJ) die("%s: expected an object of token -> id, found a %s", enc_path, jtype_name(json_type(root)));
    Tokenizer *t = tokenizer_new(KIND_GPT2);
    uint64_t he = fnv1a64(enc_text, enc_len), hb = fnv1a64(bpe_text, bpe_len);
    if (he == GPT2_ENCODER_FNV && hb == GPT2_VOCAB_FNV) snprintf(t->name, sizeof t->name, "gpt2");
    else set_name_hash(t, "gpt2:", he ^ (hb * 0x100000001b3ull));

    uint32_t byte_cp[256];
    int16_t cp_byte[324];
    byte_alphabet(byte_cp, cp_byte);
    // ids must be 0..n-1 (checked below); one far beyond n would size every table before that check
    int32_t nvocab = 0;
    for (size_t i = 0; i < json_len(root); i++) {
        int64_t id = jint(enc_path, json_item(root, i), 0, (1 << 24) - 1, "a token id");
        if ((uint64_t)id >= json_len(root))
            die("%s: token id %lld of \"%s\" is beyond the %zu entries of the file", enc_path, (long long)id,
                json_str(json_key(root, i)), json_len(root));
        if (id + 1 > nvocab) nvocab = (int32_t)id + 1;
    }
    alloc_tables(t, nvocab);
    size_t *off = xmalloc((size_t)nvocab * sizeof *off), *len = xmalloc((size_t)nvocab * sizeof *len);
    for (int32_t i = 0; i < nvocab; i++) off[i] = SIZE_MAX;
    ByteBuf bytes = { 0 };
    uint8_t *special = xcalloc((size_t)nvocab, 1);
    for (size_t i = 0; i < json_len(root); i++) {
        const Json *k = json_key(root, i);
        int32_t id = (int32_t)json_num(json_item(root, i));
        if (t->has_id[id]) die("%s: token id %d appears twice", enc_path, id);
        t->has_id[id] = 1;
        off[id] = bytes.n;
        // tiktoken keeps these two out of the mergeable vocabulary; they decode as their text.
        if (!strcmp(json_str(k), "<|endoftext|>") || !strcmp(json_str(k), "<|startoftext|>")) {
            special[id] = 1;
            bytebuf_append(&bytes, json_str(k), json_len(k));
            if (!strcmp(json_str(k), "<|endoftext|>")) t->eot = id;
        } else if (unmap_byte_level(cp_byte, json_str(k), json_len(k), &bytes) < 0) {
            die("%s: token \"%s\" has a character outside GPT-2's byte-level alphabet", enc_path, json_str(k));
        }
        len[id] = bytes.n - off[id];
        if (len[id] == 0) die("%s: token %d is empty", enc_path, id);
    }
    for (int32_t id = 0; id < nvocab; id++)
        if (!t->has_id[id]) die("%s: token ids are not contiguous: no token has id %d", enc_path, id);
    pack_strings(nvocab, off, len, &bytes, &t->key, &t->key_off);
    pack_strings(nvocab, off, len, &bytes, &t->dec, &t->dec_off);
    vocab_build(t, special);
    for (int b = 0; b < 256; b++) {
        uint8_t c = (uint8_t)b;
        t->byte_id[b] = vocab_get(t, &c, 1);
        if (t->byte_id[b] < 0) die("%s: the byte 0x%02X has no token", enc_path, b);
    }

    // vocab.bpe: "#version" line, then one merge "a b" per line, in rank order.
    int32_t *rank_of = xmalloc((size_t)nvocab * sizeof *rank_of);
    for (int32_t i = 0; i < nvocab; i++) rank_of[i] = -1;
    size_t line_no = 0, nmerges = 0;
    ByteBuf ab = { 0 };
    for (char *line = bpe_text; line < bpe_text + bpe_len;) {
        char *nl = memchr(line, '\n', (size_t)(bpe_text + bpe_len - line));
        char *end = nl ? nl : bpe_text + bpe_len;
        line_no++;
        if (end > line && end[-1] == '\r') end[-1] = 0;
        *end = 0;
        char *next = nl ? nl + 1 : bpe_text + bpe_len;
        if (!strncmp(line, "#version", 8) || !*line) { line = next; continue; }
        char *save, *a = strtok_r(line, " \t\r", &save), *b = strtok_r(NULL, " \t\r", &save);
        if (!a || !b || strtok_r(NULL, " \t\r", &save)) die("%s line %zu: expected two tokens separated by a space", bpe_path, line_no);
        ab.n = 0;
        if (unmap_byte_level(cp_byte, a, strlen(a), &ab) < 0 || unmap_byte_level(cp_byte, b, strlen(b), &ab) < 0)
            die("%s line %zu: a character outside GPT-2's byte-level alphabet", bpe_path, line_no);
        int32_t id = vocab_get(t, ab.data, ab.n);
        if (id < 0) die("%s line %zu: the merge of \"%s\" and \"%s\" is not a token of %s", bpe_path, line_no, a, b, enc_path);
        if (rank_of[id] < 0) rank_of[id] = (int32_t)nmerges;
        nmerges++;
        line = next;
    }
    // tiktoken ranks a pair of adjacent parts by the rank of their concatenation, whichever merge made it:
    // so every split of a ranked token into two tokens is a pair.
    size_t npairs = 0;
    for (int32_t id = 0; id < nvocab; id++)
        if (rank_of[id] >= 0) npairs += t->key_off[id + 1] - t->key_off[id] - 1;
    pairs_init(t, npairs);
    for (int32_t id = 0; id < nvocab; id++) {
        if (rank_of[id] < 0) continue;
        const char *k = t->key + t->key_off[id];
        size_t n = t->key_off[id + 1] - t->key_off[id];
        for (size_t s = 1; s < n; s++) {
            int32_t a = vocab_get(t, k, s), b = vocab_get(t, k + s, n - s);
            if (a >= 0 && b >= 0) pair_insert(t, a, b, rank_of[id], id, 0);
        }
    }
    t->byte_level = 1;
    t->use_regex = 1;
    t->whole_piece_first = 1;
    free(rank_of); free(ab.data); free(bytes.data); free(off); free(len); free(special);
    json_free(root);
    free(enc_text); free(bpe_text); free(enc_path); free(bpe_path);
    return t;
}

// A "String" pattern of a Replace normalizer or decoder: {"String": " "}.
static const Json *replace_pattern(const char *file, const Json *v, const char *where) {
    const Json *pat = json_get(v, "pattern");
    const Json *s = json_get(pat, "String");
    if (!s || json_type(s) != JSON_STR) die("%s: %s: only Replace with a \"String\" pattern is supported (regex patterns are not)", file, where);
    if (json_len(s) == 0) die("%s: %s: the Replace pattern is empty", file, where);
    return s;
}

static const char *jtype_str(const char *file, const Json *v, const char *where) {
    const Json *ty = json_get(v, "type");
    if (!ty || json_type(ty) != JSON_STR) die("%s: %s has no \"type\"", file, where);
    return json_str(ty);
}

// Real normalizer strings are a character or two ("▁", " "); a long pattern would make matching slow.
#define NORM_MAX_STRING 256

static void check_norm_string(const char *file, const Json *s, const char *what) {
    if (json_len(s) > NORM_MAX_STRING) die("%s: the %s has %zu bytes; the limit is %d", file, what, json_len(s), NORM_MAX_STRING);
}

static void parse_normalizer(Tokenizer *t, const char *file, const Json *v) {
    if (jis_null(v)) return;
    const char *ty = jtype_str(file, v, "the normalizer");
    if (!strcmp(ty, "Sequence")) {
        const Json *list = jget_typed(file, v, "normalizers", JSON_ARR, "the Sequence normalizer");
        for (size_t i = 0; list && i < json_len(list); i++) parse_normalizer(t, file, json_item(list, i));
        return;
    }
    if (t->nnorm == (int)(sizeof t->norm / sizeof t->norm[0])) die("%s: more than %d normalizers", file, t->nnorm);
    NormStep *st = &t->norm[t->nnorm];
    if (!strcmp(ty, "Prepend")) {
        const Json *p = jget_typed(file, v, "prepend", JSON_STR, "the Prepend normalizer");
        if (!p) die("%s: the Prepend normalizer has no \"prepend\" string", file);
        check_norm_string(file, p, "Prepend normalizer's string");
        *st = (NormStep){ NORM_PREPEND, NULL, xmalloc(json_len(p) + 1), 0, json_len(p) };
        memcpy(st->to, json_str(p), json_len(p) + 1);
    } else if (!strcmp(ty, "Replace")) {
        const Json *from = replace_pattern(file, v, "the Replace normalizer");
        const Json *to = jget_typed(file, v, "content", JSON_STR, "the Replace normalizer");
        if (!to) die("%s: the Replace normalizer has no \"content\"", file);
        check_norm_string(file, from, "Replace normalizer's pattern");
        check_norm_string(file, to, "Replace normalizer's content");
        *st = (NormStep){ NORM_REPLACE, xmalloc(json_len(from) + 1), xmalloc(json_len(to) + 1), json_len(from), json_len(to) };
        memcpy(st->from, json_str(from), json_len(from) + 1);
        memcpy(st->to, json_str(to), json_len(to) + 1);
    } else {
        die("%s: normalizer \"%s\" is not supported (supported: Prepend, Replace with a String pattern, Sequence)", file, ty);
    }
    t->nnorm++;
}

static void copy_small(const char *file, char *dst, size_t cap, size_t *n, const Json *s, const char *what) {
    if (json_len(s) + 1 > cap) die("%s: %s \"%s\" is too long", file, what, json_str(s));
    memcpy(dst, json_str(s), json_len(s) + 1);
    *n = json_len(s);
}

// Metaspace's prepend rule, from "prepend_scheme" (newer files) or "add_prefix_space" (older ones).
static int metaspace_prepends(const char *file, const Json *v) {
    const Json *ps = jget_typed(file, v, "prepend_scheme", JSON_STR, "Metaspace");
    if (ps) {
        if (!strcmp(json_str(ps), "always") || !strcmp(json_str(ps), "first")) return 1;
        if (!strcmp(json_str(ps), "never")) return 0;
        die("%s: unknown Metaspace prepend_scheme \"%s\"", file, json_str(ps));
    }
    return jget_bool(file, v, "add_prefix_space", 1, "Metaspace");
}

static void parse_pre_tokenizer(Tokenizer *t, const char *file, const Json *v) {
    if (jis_null(v)) return;
    const char *ty = jtype_str(file, v, "the pre_tokenizer");
    if (!strcmp(ty, "Sequence")) {
        const Json *list = jget_typed(file, v, "pretokenizers", JSON_ARR, "the Sequence pre_tokenizer");
        if (list && json_len(list) > 1) die("%s: a Sequence of %zu pre_tokenizers is not supported (only one)", file, json_len(list));
        if (list && json_len(list) == 1) parse_pre_tokenizer(t, file, json_item(list, 0));
        return;
    }
    if (!strcmp(ty, "ByteLevel")) {
        t->byte_level = 1;
        t->prefix_space = jget_bool(file, v, "add_prefix_space", 0, "ByteLevel");
        t->use_regex = jget_bool(file, v, "use_regex", 1, "ByteLevel");
    } else if (!strcmp(ty, "Metaspace")) {
        const Json *r = jget_typed(file, v, "replacement", JSON_STR, "Metaspace");
        if (!r || json_len(r) == 0) die("%s: the Metaspace pre_tokenizer has no \"replacement\"", file);
        t->meta = 1;
        copy_small(file, t->meta_rep, sizeof t->meta_rep, &t->meta_rep_len, r, "Metaspace replacement");
        t->meta_prepend = metaspace_prepends(file, v);
        t->meta_split = jget_bool(file, v, "split", 1, "Metaspace");
    } else {
        die("%s: pre_tokenizer \"%s\" is not supported (supported: ByteLevel, Metaspace, or none)", file, ty);
    }
}

static void add_dec_step(Tokenizer *t, const char *file, int kind, const Json *from, const char *to, size_t nto, int drop_first) {
    if (t->ndec == (int)(sizeof t->decs / sizeof t->decs[0])) die("%s: too many decoders", file);
    DecStep *d = &t->decs[t->ndec++];
    d->kind = kind;
    d->drop_first = drop_first;
    copy_small(file, d->from, sizeof d->from, &d->nfrom, from, "decoder pattern");
    if (nto + 1 > sizeof d->to) die("%s: decoder content too long", file);
    memcpy(d->to, to, nto);
    d->to[nto] = 0;
    d->nto = nto;
}

static void parse_decoder(Tokenizer *t, const char *file, const Json *v) {
    if (jis_null(v)) return;
    const char *ty = jtype_str(file, v, "the decoder");
    if (!strcmp(ty, "Sequence")) {
        const Json *list = jget_typed(file, v, "decoders", JSON_ARR, "the Sequence decoder");
        for (size_t i = 0; list && i < json_len(list); i++) parse_decoder(t, file, json_item(list, i));
    } else if (!strcmp(ty, "ByteLevel")) {
        if (!t->byte_level) die("%s: a ByteLevel decoder needs the ByteLevel pre_tokenizer", file);
    } else if (!strcmp(ty, "ByteFallback") || !strcmp(ty, "Fuse")) {
        // Byte-fallback tokens always decode to their byte; fusing strings changes nothing in bytes.
    } else if (t->byte_level) {
        die("%s: decoder \"%s\" cannot follow the ByteLevel pre_tokenizer (only ByteLevel)", file, ty);
    } else if (!strcmp(ty, "Replace")) {
        const Json *from = replace_pattern(file, v, "the Replace decoder");
        const Json *to = jget_typed(file, v, "content", JSON_STR, "the Replace decoder");
        if (!to) die("%s: the Replace decoder has no \"content\"", file);
        add_dec_step(t, file, DEC_REPLACE, from, json_str(to), json_len(to), 0);
    } else if (!strcmp(ty, "Metaspace")) {
        const Json *r = jget_typed(file, v, "replacement", JSON_STR, "the Metaspace decoder");
        if (!r || json_len(r) == 0) die("%s: the Metaspace decoder has no \"replacement\"", file);
        // HF drops every replacement character of the first token rather than turning it into a space.
        add_dec_step(t, file, DEC_METASPACE, r, " ", 1, metaspace_prepends(file, v));
    } else if (!strcmp(ty, "Strip")) {
        const Json *c = jget_typed(file, v, "content", JSON_STR, "the Strip decoder");
        const Json *start = json_get(v, "start"), *stop = json_get(v, "stop");
        if (!c || !start || !stop) die("%s: the Strip decoder needs \"content\", \"start\" and \"stop\"", file);
        if (jint(file, stop, 0, 1000, "Strip's \"stop\"") != 0) die("%s: a Strip decoder with \"stop\" > 0 is not supported", file);
        copy_small(file, t->strip, sizeof t->strip, &t->strip_len, c, "Strip content");
        t->strip_n = (int)jint(file, start, 0, 1000, "Strip's \"start\"");
    } else {
        die("%s: decoder \"%s\" is not supported (supported: ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence)", file, ty);
    }
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int is_fallback_name(const char *s, size_t n, int *byte) {
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return 0;
    int hi = hexval(s[3]), lo = hexval(s[4]);
    if (hi < 0 || lo < 0) return 0;
    *byte = hi * 16 + lo;
    return 1;
}

// A merge of tokenizer.json: "a b" (older files) or ["a", "b"] (newer ones).
static void merge_parts(const char *file, const Json *m, size_t i, const char **a, size_t *na, const char **b, size_t *nb) {
    if (json_type(m) == JSON_STR) {
        const char *sp = memchr(json_str(m), ' ', json_len(m));
        if (!sp || memchr(sp + 1, ' ', json_len(m) - (size_t)(sp + 1 - json_str(m))))
            die("%s: merge %zu \"%s\" is not two tokens separated by one space", file, i, json_str(m));
        *a = json_str(m); *na = (size_t)(sp - json_str(m));
        *b = sp + 1; *nb = json_len(m) - *na - 1;
    } else if (json_type(m) == JSON_ARR && json_len(m) == 2 && json_type(json_item(m, 0)) == JSON_STR && json_type(json_item(m, 1)) == JSON_STR) {
        *a = json_str(json_item(m, 0)); *na = json_len(json_item(m, 0));
        *b = json_str(json_item(m, 1)); *nb = json_len(json_item(m, 1));
    } else {
        die("%s: merge %zu must be a string \"a b\" or a pair [\"a\", \"b\"]", file, i);
    }
}

// SentencePiece-style files without a pre-tokenizer make the whole text one BPE piece, which is slow on
// long texts. Splitting it before each "▁" that follows another character gives the same ids when no merge
// can join across such a point: when no token has a "▁" after a character other than "▁", and no merge
// involves a byte-fallback token (whose name is not its bytes). The ignore_merges rule looks at the whole
// piece, so it keeps the text whole.
static int sp_split_safe(const Tokenizer *t, int fallback_merges) {
    if (t->byte_level || t->meta || t->use_regex || t->whole_piece_first || fallback_merges) return 0;
    if (vocab_get(t, SP_SPACE, 3) < 0) return 0;
    for (int32_t id = 0; id < t->nvocab; id++) {
        if (!t->has_id[id] || t->is_fallback[id]) continue;
        const char *k = t->key + t->key_off[id];
        size_t n = t->key_off[id + 1] - t->key_off[id];
        for (size_t i = 1; i + 3 <= n; i++)
            if (!memcmp(k + i, SP_SPACE, 3) && !(i >= 3 && !memcmp(k + i - 3, SP_SPACE, 3))) return 0;
    }
    return 1;
}

static const char *g_eot_names[] = { "</s>", "<|endoftext|>", "<|end_of_text|>" };
static const char *g_bos_names[] = { "<s>", "<|begin_of_text|>" };

static Tokenizer *load_hf(const char *file) {
    size_t text_len;
    char *text;
    Json *root = parse_json_file(file, &text, &text_len);
    if (json_type(root) != JSON_OBJ) die("%s: expected a tokenizer.json object, found a %s", file, jtype_name(json_type(root)));
    Tokenizer *t = tokenizer_new(KIND_HF);
    t->file = xstrdup(file);
    set_name_hash(t, "hf:", fnv1a64(text, text_len));

    const Json *model = json_get(root, "model");
    if (!model || json_type(model) != JSON_OBJ) die("%s: no \"model\" object", file);
    const Json *mtype = jget_typed(file, model, "type", JSON_STR, "the model");
    if (mtype && strcmp(json_str(mtype), "BPE"))
        die("%s: model type \"%s\" is not supported (only BPE)", file, json_str(mtype));
    const Json *vocab = jget_typed(file, model, "vocab", JSON_OBJ, "the model");
    const Json *merges = jget_typed(file, model, "merges", JSON_ARR, "the model");
    if (!vocab || !merges) die("%s: the model has no \"vocab\" object or no \"merges\" array: not a BPE model", file);
    const Json *cp = json_get(model, "continuing_subword_prefix"), *ew = json_get(model, "end_of_word_suffix");
    if ((!jis_null(cp) && !(json_type(cp) == JSON_STR && json_len(cp) == 0)) || (!jis_null(ew) && !(json_type(ew) == JSON_STR && json_len(ew) == 0)))
        die("%s: BPE continuing_subword_prefix / end_of_word_suffix are not supported", file);
    const Json *dropout = json_get(model, "dropout");
    if (!jis_null(dropout) && !(json_type(dropout) == JSON_NUM && json_num(dropout) == 0)) die("%s: BPE dropout is not supported", file);
    t->byte_fallback = jget_bool(file, model, "byte_fallback", 0, "the model");
    t->fuse_unk = jget_bool(file, model, "fuse_unk", 0, "the model");
    t->whole_piece_first = jget_bool(file, model, "ignore_merges", 0, "the model");

    parse_normalizer(t, file, json_get(root, "normalizer"));
    parse_pre_tokenizer(t, file, json_get(root, "pre_tokenizer"));
    parse_decoder(t, file, json_get(root, "decoder"));
    t->first_differs = t->strip_n > 0;
    for (int s = 0; s < t->ndec; s++) t->first_differs |= t->decs[s].drop_first;

    // ids: the model vocabulary plus the added tokens. Hugging Face numbers the vocabulary 0..n-1 and the
    // added tokens after it (or reuses vocabulary ids for them), so every id is below the number of entries
    // of both: the tables sized by the largest id are then proportional to the file, never to one number.
    const Json *added = jget_typed(file, root, "added_tokens", JSON_ARR, "the file");
    size_t nadded = added ? json_len(added) : 0, nentries = json_len(vocab) + nadded;
    char entries[96];
    snprintf(entries, sizeof entries, "the %zu entries of the vocabulary", json_len(vocab));
    if (nadded) snprintf(entries + strlen(entries), sizeof entries - strlen(entries), " and %zu added token%s", nadded, nadded > 1 ? "s" : "");
    int64_t maxid = -1;
    for (size_t i = 0; i < json_len(vocab); i++) {
        int64_t id = jint(file, json_item(vocab, i), 0, INT32_MAX - 1, "a vocab id");
        if ((uint64_t)id >= nentries) die("%s: vocab id %lld of \"%s\" is beyond %s", file, (long long)id, json_str(json_key(vocab, i)), entries);
        if (id > maxid) maxid = id;
    }
    for (size_t i = 0; i < nadded; i++) {
        const Json *a = json_item(added, i), *id = json_get(a, "id"), *content = json_get(a, "content");
        if (!id || !content || json_type(content) != JSON_STR) die("%s: added token %zu needs an \"id\" and a \"content\" string", file, i);
        int64_t v = jint(file, id, 0, INT32_MAX - 1, "an added token id");
        if ((uint64_t)v >= nentries) die("%s: added token id %lld of \"%s\" is beyond %s", file, (long long)v, json_str(content), entries);
        if (v > maxid) maxid = v;
    }
    if (maxid < 0) die("%s: the vocabulary is empty", file);
    if (maxid >= (1 << 26)) die("%s: token id %lld is too large (the limit is %d)", file, (long long)maxid, (1 << 26) - 1);
    int32_t nvocab = (int32_t)maxid + 1;
    alloc_tables(t, nvocab);

    uint32_t byte_cp[256];
    int16_t cp_byte[324];
    byte_alphabet(byte_cp, cp_byte);
    size_t *koff = xmalloc((size_t)nvocab * sizeof *koff), *klen = xmalloc((size_t)nvocab * sizeof *klen);
    for (int32_t i = 0; i < nvocab; i++) koff[i] = SIZE_MAX;
    ByteBuf keys = { 0 };
    uint8_t *unmappable = xcalloc((size_t)nvocab, 1);
    for (size_t i = 0; i < json_len(vocab); i++) {
        const Json *k = json_key(vocab, i);
        int32_t id = (int32_t)json_num(json_item(vocab, i));
        if (koff[id] != SIZE_MAX) die("%s: vocab id %d appears twice", file, id);
        t->has_id[id] = 1;
        koff[id] = keys.n;
        // Byte-level vocabularies are kept as raw bytes; a token outside the alphabet keeps its text and
        // can only come out of decoding.
        if (!t->byte_level || unmap_byte_level(cp_byte, json_str(k), json_len(k), &keys) < 0) {
            bytebuf_append(&keys, json_str(k), json_len(k));
            unmappable[id] = (uint8_t)t->byte_level;
        }
        klen[id] = keys.n - koff[id];
        int b;
        if (t->byte_fallback && !t->byte_level && is_fallback_name(json_str(k), json_len(k), &b)) t->is_fallback[id] = 1;
    }
    const Json **content = xcalloc((size_t)nvocab, sizeof *content);
    for (size_t i = 0; added && i < json_len(added); i++) {
        const Json *a = json_item(added, i);
        int32_t id = (int32_t)json_num(json_get(a, "id"));
        t->is_added[id] = 1;
        t->is_fallback[id] = 0;
        content[id] = json_get(a, "content");
        if (!t->has_id[id]) {   // outside the model vocabulary: BPE never makes it, only decoding knows it
            t->has_id[id] = 1;
            koff[id] = keys.n;
            bytebuf_append(&keys, json_str(content[id]), json_len(content[id]));
            klen[id] = json_len(content[id]);
            unmappable[id] = 1;
        }
    }
    pack_strings(nvocab, koff, klen, &keys, &t->key, &t->key_off);
    vocab_build(t, unmappable);
    free(unmappable); free(koff); free(klen); free(keys.data);

    // The bytes of each id when it is not the first of a text.
    ByteBuf dec = { 0 };
    size_t *doff = xmalloc((size_t)nvocab * sizeof *doff), *dlen = xmalloc((size_t)nvocab * sizeof *dlen);
    for (int32_t id = 0; id < nvocab; id++) {
        doff[id] = dec.n;
        int b;
        if (t->is_added[id]) bytebuf_append(&dec, json_str(content[id]), json_len(content[id]));
        else if (t->is_fallback[id] && is_fallback_name(t->key + t->key_off[id], t->key_off[id + 1] - t->key_off[id], &b)) bytebuf_putc(&dec, (char)b);
        else if (t->has_id[id]) render_token(t, id, 0, &dec);
        dlen[id] = dec.n - doff[id];
    }
    pack_strings(nvocab, doff, dlen, &dec, &t->dec, &t->dec_off);
    free(dec.data); free(doff); free(dlen); free(content);

    // byte-level symbols / ASCII characters, byte fallback, unknown token
    for (int b = 0; b < 256; b++) {
        uint8_t c = (uint8_t)b;
        if (t->byte_level) t->byte_id[b] = vocab_get(t, &c, 1);
        else if (b < 128) t->ascii_id[b] = vocab_get(t, &c, 1);
    }
    for (int32_t id = 0; id < nvocab; id++) {
        int b;
        if (t->is_fallback[id] && is_fallback_name(t->key + t->key_off[id], t->key_off[id + 1] - t->key_off[id], &b) && t->fallback_id[b] < 0)
            t->fallback_id[b] = id;
    }
    const Json *unk = jget_typed(file, model, "unk_token", JSON_STR, "the model");
    if (unk) t->unk = vocab_get(t, json_str(unk), json_len(unk));

    // merges: rank = position in the list
    // real files have about one merge per token; the table grows if the distinct pairs are more
    pairs_init(t, json_len(merges) < (size_t)nvocab ? json_len(merges) : (size_t)nvocab);
    // allocated from the start: a merge of two empty parts must not look a token up through a null pointer
    ByteBuf ab = { xmalloc(64), 0, 64 };
    int fallback_merges = 0;
    for (size_t i = 0; i < json_len(merges); i++) {
        const char *a, *b;
        size_t na, nb;
        merge_parts(file, json_item(merges, i), i, &a, &na, &b, &nb);
        ab.n = 0;
        long la = 0, lb = 0;
        if (t->byte_level) {
            la = unmap_byte_level(cp_byte, a, na, &ab);
            lb = la < 0 ? -1 : unmap_byte_level(cp_byte, b, nb, &ab);
        } else {
            bytebuf_append(&ab, a, na); la = (long)na;
            bytebuf_append(&ab, b, nb); lb = (long)nb;
        }
        int32_t ia = -1, ib = -1, iab = -1;
        if (la >= 0 && lb >= 0) {
            ia = vocab_get(t, ab.data, (size_t)la);
            ib = vocab_get(t, ab.data + la, (size_t)lb);
            iab = vocab_get(t, ab.data, ab.n);
        }
        if (ia < 0 || ib < 0 || iab < 0)
            die("%s: merge %zu (\"%.*s\" \"%.*s\") uses or makes a token that is not in the vocabulary", file, i,
                (int)na, a, (int)nb, b);
        pair_insert(t, ia, ib, (int32_t)i, iab, 1);
        fallback_merges |= t->is_fallback[ia] | t->is_fallback[ib];
    }
    free(ab.data);
    t->sp_split = sp_split_safe(t, fallback_merges);

    // special tokens by name: added tokens first, then the model vocabulary
    for (int pass = 0; pass < 2; pass++) {
        const char **names = pass ? g_bos_names : g_eot_names;
        int nn = pass ? 2 : 3;
        int32_t found = -1;
        for (int k = 0; k < nn && found < 0; k++) {
            for (size_t i = 0; added && i < json_len(added) && found < 0; i++) {
                const Json *c = json_get(json_item(added, i), "content");
                if (!strcmp(json_str(c), names[k])) found = (int32_t)json_num(json_get(json_item(added, i), "id"));
            }
            const Json *v = json_get(vocab, names[k]);
            if (found < 0 && v) found = (int32_t)json_num(v);
        }
        if (pass) t->bos = found; else t->eot = found;
    }
    json_free(root);
    free(text);
    return t;
}

Tokenizer *tokenizer_load(const char *spec) {
    if (!spec || !*spec) die("no tokenizer given: use \"byte\", a directory or a tokenizer.json file");
    if (!strcmp(spec, "byte")) return load_byte();
    struct stat st;
    if (stat(spec, &st) != 0) die("cannot open tokenizer %s: %s", spec, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        char *enc = path_join(spec, "encoder.json"), *bpe = path_join(spec, "vocab.bpe"), *hf = path_join(spec, "tokenizer.json");
        Tokenizer *t = NULL;
        if (is_regular_file(enc) && is_regular_file(bpe)) t = load_gpt2(spec);
        else if (is_regular_file(hf)) t = load_hf(hf);
        else die("tokenizer directory %s holds neither encoder.json and vocab.bpe (GPT-2) nor tokenizer.json", spec);
        free(enc); free(bpe); free(hf);
        return t;
    }
    return load_hf(spec);
}

void tokenizer_free(Tokenizer *t) {
    if (!t) return;
    if (t->cache) {
        for (size_t i = 0; i < CACHE_SLOTS; i++) free(atomic_load_explicit(&t->cache[i], memory_order_relaxed));
        free(t->cache);
    }
    for (int k = 0; k < t->nnorm; k++) { free(t->norm[k].from); free(t->norm[k].to); }
    free(t->dec); free(t->dec_off); free(t->has_id); free(t->key); free(t->key_off);
    free(t->is_added); free(t->is_fallback); free(t->vslots); free(t->pslots);
    free(t->file);
    free(t);
}
