// tokenizer.c: the tokenizers' encoding, decoding and lookup tables, and the byte and GPT-2 loaders.
// tokenizer_hf.c loads Hugging Face tokenizer.json (BPE) files; docs/tokenizers.md lists what is supported and
// the identity strings.
//
// Encoding runs in three stages, each configured by the loaded files:
//   1. normalize: the HF normalizers Prepend, Replace and NFC/NFD/NFKC/NFKD (utf8proc), and the prefix rules
//      of the Metaspace and ByteLevel pre-tokenizers;
//   2. split into pieces: GPT-2's regex (hand-written below), Metaspace's split before each "▁", a Sequence
//      of regex Splits (PCRE2) and GPT-2's regex, or none;
//   3. BPE on each piece, starting from single bytes (byte-level vocabularies) or from UTF-8 characters
//      (SentencePiece-style vocabularies, with <0xAB> byte fallback), always merging the adjacent pair of
//      lowest rank first, leftmost on ties, with a heap so that long pieces cost O(n log n).
// Invalid UTF-8 is never rejected: each byte that does not belong to a valid UTF-8 sequence counts as a
// character of its own, of the class "other" (not a letter, number or space) for GPT-2's regex, and is encoded
// through the byte-level alphabet or the byte-fallback tokens, so that it decodes back to itself.
#include "tokenizer_impl.h"
#include "unicode_tables.h"


#include <limits.h>
#include <pthread.h>
#include <sys/stat.h>

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

// ---------------------------------------------------------------- hashing and files

// The identity hash of a tokenizer file (stable across versions and machines).
uint64_t fnv1a64(const void *p, size_t n) {
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

const char *jtype_name(JsonType t) {
    static const char *names[] = { "null", "boolean", "number", "string", "array", "object" };
    return names[t];
}

int jis_null(const Json *v) { return !v || json_type(v) == JSON_NULL; }

// The value of a key that must be of the given type if present; NULL when absent or null.
const Json *jget_typed(const char *file, const Json *obj, const char *key, JsonType type, const char *where) {
    const Json *v = json_get(obj, key);
    if (jis_null(v)) return NULL;
    if (json_type(v) != type) die("%s: \"%s\" of %s must be a %s, found a %s", file, key, where, jtype_name(type), jtype_name(json_type(v)));
    return v;
}

int jget_bool(const char *file, const Json *obj, const char *key, int dflt, const char *where) {
    const Json *v = json_get(obj, key);
    if (jis_null(v)) return dflt;
    if (json_type(v) != JSON_BOOL) die("%s: \"%s\" of %s must be true or false, found a %s", file, key, where, jtype_name(json_type(v)));
    return json_num(v) != 0;
}

int64_t jint(const char *file, const Json *v, int64_t lo, int64_t hi, const char *what) {
    // the range test comes first: casting an out-of-range double to an integer is undefined
    if (json_type(v) != JSON_NUM || !(json_num(v) >= (double)lo && json_num(v) <= (double)hi) || json_num(v) != (double)(int64_t)json_num(v))
        die("%s: %s must be an integer in [%lld, %lld]", file, what, (long long)lo, (long long)hi);
    return (int64_t)json_num(v);
}

Json *parse_json_file(const char *path, char **text, size_t *len) {
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
void byte_alphabet(uint32_t byte_cp[256], int16_t cp_byte[324]) {
    for (int i = 0; i < 324; i++) cp_byte[i] = -1;
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        byte_cp[b] = printable ? (uint32_t)b : (uint32_t)(256 + extra++);
        cp_byte[byte_cp[b]] = (int16_t)b;
    }
}

// Maps a byte-level string back to its bytes; returns -1 when a character is outside the alphabet.
long unmap_byte_level(const int16_t cp_byte[324], const char *s, size_t n, ByteBuf *out) {
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
struct VSlot { uint32_t tag; int32_t id; };
// (left id, right id) to (rank, merged id).
struct PSlot { uint64_t key; int32_t rank, id; };
#define PAIR_EMPTY UINT64_MAX

// A cache of encoded pieces shared by all threads: insert-only, lock-free (entries are published with a
// compare-and-swap and never change afterwards), bounded in size.
struct CacheEntry { uint64_t hash; uint32_t len, nids; int32_t ids[]; /* then the bytes */ };
#define CACHE_SLOTS (1u << 19)
#define CACHE_MAX_ENTRIES (CACHE_SLOTS / 2)
#define CACHE_MAX_PIECE 64
#define CACHE_PROBES 16

static int32_t vocab_find(const Tokenizer *t, const uint8_t *p, size_t n, uint64_t h) {
    uint32_t tag = (uint32_t)(h >> 32);
    for (uint64_t i = h & t->vmask;; i = (i + 1) & t->vmask) {
        VSlot s = t->vslots[i];
        if (s.id < 0) return -1;
        if (s.tag == tag && t->key_off[s.id + 1] - t->key_off[s.id] == n && !memcmp(t->key + t->key_off[s.id], p, n))
            return s.id;
    }
}

int32_t vocab_get(const Tokenizer *t, const void *p, size_t n) {
    return vocab_find(t, p, n, hash_bytes(p, n));
}

// Builds the token-bytes map over every id whose key is set; the first id wins on duplicate keys.
void vocab_build(Tokenizer *t, const uint8_t *skip) {
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
void pairs_init(Tokenizer *t, size_t expected) {
    uint64_t cap = 16;
    while (cap < 2 * (uint64_t)expected) cap *= 2;
    pairs_alloc(t, cap);
}

// overwrite=1: a later definition of the same pair replaces the earlier one (as HF's merge map does).
void pair_insert(Tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t id, int overwrite) {
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

static int starts_with(const uint8_t *s, size_t n, const char *p, size_t np) {
    return n >= np && !memcmp(s, p, np);
}

// ---------------------------------------------------------------- Unicode normalization (NFC, NFD, NFKC, NFKD)

// Appends s[0..n) in the normalization form of utf8proc's `opts` to out, through the code point buffer *w
// (grown as needed). ASCII characters are copied: no form changes one, and none composes one with the
// character before it, so only runs of other characters go through utf8proc, each with the ASCII character
// before it (which may take the run's combining marks). A byte that is not valid UTF-8 is copied as it is
// and ends a run: the valid runs between invalid bytes are normalized each on its own (Hugging Face refuses
// such text). Returns -1 as soon as more than max bytes would be appended.
static int unicode_normalize(const uint8_t *s, size_t n, int opts, size_t max, ByteBuf *out, int32_t **w, size_t *wcap) {
    size_t start = out->n;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int len = s[i] < 0x80 ? 1 : utf8_decode(s + i, n - i, &cp);
        if (s[i] < 0x80 || cp == CP_INVALID) {
            if (out->n - start + 1 > max) return -1;
            bytebuf_putc(out, (char)s[i++]);
            continue;
        }
        size_t j = i + (size_t)len;
        while (j < n && s[j] >= 0x80 && (len = utf8_decode(s + j, n - j, &cp), cp != CP_INVALID)) j += (size_t)len;
        size_t r = i;
        if (i > 0 && s[i - 1] < 0x80) { r = i - 1; out->n--; }   // it was the byte copied last
        utf8proc_ssize_t m = utf8proc_decompose(s + r, (utf8proc_ssize_t)(j - r), *w, (utf8proc_ssize_t)*wcap, opts);
        if (m >= 0 && (size_t)m > max) return -1;   // every code point takes a byte at least
        if (m >= 0 && (size_t)m + 1 > *wcap) {
            // (utf8proc_reencode writes a terminating 0 after the bytes: one code point more)
            *wcap = (size_t)m + 1 > 2 * *wcap ? (size_t)m + 1 : 2 * *wcap;
            free(*w);
            *w = xmalloc(*wcap * sizeof **w);
            m = utf8proc_decompose(s + r, (utf8proc_ssize_t)(j - r), *w, (utf8proc_ssize_t)*wcap, opts);
        }
        if (m >= 0) m = utf8proc_reencode(*w, m, opts);
        if (m < 0) die("utf8proc cannot normalize a text of %zu bytes: %s", j - r, utf8proc_errmsg(m));
        if (out->n - start + (size_t)m > max) return -1;
        bytebuf_append(out, *w, (size_t)m);
        i = j;
    }
    return 0;
}

// ---------------------------------------------------------------- pre-tokenizer Sequences

// A text goes through the steps of t->pre in order, each splitting every piece of the previous one (each
// regex runs on the piece alone, as Hugging Face's does); the pieces of the last step are encoded. `s` is
// the subject the steps see; when the text had invalid UTF-8 for a regex step, that is a copy where each
// invalid byte became U+E000, a private-use character (see pre_subject), and map takes its offsets back
// to the text's.
typedef struct {
    const Tokenizer *t;
    const uint8_t *text;
    const size_t *map;
    pcre2_match_data *md;
    IdBuf *out;
} PreRun;

// A group of segments that a behaviour may still extend, and whether its last segment was a match.
typedef struct { size_t a, b; int have, match; } Pending;

static void pre_split(const PreRun *r, int k, const uint8_t *s, size_t a, size_t b);

static void pending_flush(const PreRun *r, int k, const uint8_t *s, Pending *p) {
    if (p->have) pre_split(r, k + 1, s, p->a, p->b);
    p->have = 0;
}

// One segment of a piece cut by step k's regex, a match or the text between two, by the step's behaviour
// (Hugging Face's SplitDelimiterBehavior, inverted matches already flipped):
//   Isolated: every segment is a piece; Removed: the matches are dropped;
//   Contiguous: consecutive segments that are both matches (or both not) are one piece;
//   MergedWithPrevious: a match joins the piece before it, unless that one ends with a match;
//   MergedWithNext: a match joins the segment after it, unless that one is a match too.
static void pre_segment(const PreRun *r, int k, const uint8_t *s, Pending *p, size_t a, size_t b, int match) {
    switch (r->t->pre[k].behavior) {
    case SPLIT_ISOLATED:
        pre_split(r, k + 1, s, a, b);
        return;
    case SPLIT_REMOVED:
        if (!match) pre_split(r, k + 1, s, a, b);
        return;
    case SPLIT_CONTIGUOUS:
        if (p->have && p->match == match) { p->b = b; return; }
        break;
    case SPLIT_MERGED_PREV:
        if (p->have && match && !p->match) { p->b = b; p->match = 1; return; }
        break;
    case SPLIT_MERGED_NEXT:
        // the pending group is always a lone match here
        if (p->have && !match) { p->b = b; pending_flush(r, k, s, p); return; }
        pending_flush(r, k, s, p);
        if (!match) { pre_split(r, k + 1, s, a, b); return; }
        break;
    }
    pending_flush(r, k, s, p);
    *p = (Pending){ a, b, 1, match };
}

// Step k's regex over the piece s[a..b): the matches as Oniguruma's find_iter gives them to Hugging Face,
// leftmost first and not overlapping; an empty match where the previous match ended is skipped, and after
// an empty match the search resumes one character further.
static void pre_regex(const PreRun *r, int k, const uint8_t *s, size_t a, size_t b) {
    const PreStep *st = &r->t->pre[k];
    const uint8_t *p = s + a;
    size_t n = b - a, from = 0, prev = 0;   // prev: the end of the last match (or 0)
    int matched = 0;
    Pending pend = { 0 };
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(r->md);
    while (from <= n) {
        int rc = pcre2_match(st->re, p, n, from, PCRE2_NO_UTF_CHECK, r->md, NULL);
        // the JIT's own stack is small: a long piece may need the interpreter, whose frames are on the heap
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT) rc = pcre2_match(st->re, p, n, from, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, r->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            die("%s: the regex of pre_tokenizer %d of %d fails on a piece of %zu bytes: %s", r->t->file, k + 1, r->t->npre, n, (char *)msg);
        }
        size_t ms = ov[0], me = ov[1];
        if (ms < from || ms > me || me > n) die("%s: the regex of pre_tokenizer %d of %d reports a match outside the text", r->t->file, k + 1, r->t->npre);
        from = me;
        if (ms == me) {
            uint32_t cp;
            from += me < n ? (size_t)utf8_decode(p + me, n - me, &cp) : 1;
            if (matched && ms == prev) continue;
        }
        if (prev != ms) pre_segment(r, k, s, &pend, a + prev, a + ms, st->invert);
        pre_segment(r, k, s, &pend, a + ms, a + me, !st->invert);
        prev = me;
        matched = 1;
    }
    if (prev != n) pre_segment(r, k, s, &pend, a + prev, b, st->invert);
    pending_flush(r, k, s, &pend);
}

static void pre_split(const PreRun *r, int k, const uint8_t *s, size_t a, size_t b) {
    if (a == b) return;   // Hugging Face drops empty pieces
    const Tokenizer *t = r->t;
    if (k == t->npre) {
        if (r->map) encode_piece(t, r->text + r->map[a], r->map[b] - r->map[a], r->out);
        else encode_piece(t, s + a, b - a, r->out);
    } else if (t->pre[k].kind == PRE_GPT2) {
        for (size_t i = a; i < b;) {
            size_t e = a + gpt2_piece_end(s + a, b - a, i - a);
            pre_split(r, k + 1, s, i, e);
            i = e;
        }
    } else {
        pre_regex(r, k, s, a, b);
    }
}

// PCRE2 needs valid UTF-8. Each invalid byte becomes U+E000 (EE 80 80), a private-use character: like the
// byte under GPT-2's regex, it is neither a letter, a number nor a space, so [^\s\p{L}\p{N}], \S and . match
// it. (PCRE2's PCRE2_MATCH_INVALID_UTF would instead make it match nothing, not even \S or [^x]: Llama-3's
// pattern would then split "a \xff b" as "a", " ", "\xff", " b", where GPT-2's rule gives "a", " \xff",
// " b".) Also, U+180E (MONGOLIAN
// VOWEL SEPARATOR) becomes U+200B: both are format characters, but PCRE2's \s still takes U+180E, which
// left Unicode's spaces in 6.3 and Oniguruma's \s. Returns 0 when the text needs neither; else fills sub
// and *map (offset in sub -> offset in the text, at every character boundary).
static int pre_subject(const uint8_t *s, size_t n, ByteBuf *sub, size_t **map) {
    size_t i = 0;
    uint32_t cp;
    while (i < n) {
        if (s[i] < 0x80) { i++; continue; }
        int len = utf8_decode(s + i, n - i, &cp);
        if (cp == CP_INVALID || cp == 0x180E) break;
        i += (size_t)len;
    }
    if (i == n) return 0;
    size_t cap = i + 3 * (n - i) + 1;
    *map = xmalloc(cap * sizeof **map);
    bytebuf_append(sub, s, i);
    for (size_t k = 0; k < i; k++) (*map)[k] = k;
    while (i < n) {
        int len = s[i] < 0x80 ? 1 : utf8_decode(s + i, n - i, &cp);
        const char *rep = s[i] < 0x80 ? NULL : cp == CP_INVALID ? "\xee\x80\x80" : cp == 0x180E ? "\xe2\x80\x8b" : NULL;
        for (size_t k = 0; k < (rep ? 3 : (size_t)len); k++) (*map)[sub->n + k] = rep ? i : i + k;
        bytebuf_append(sub, rep ? (const uint8_t *)rep : s + i, rep ? 3 : (size_t)len);
        i += (size_t)len;
    }
    (*map)[sub->n] = n;
    return 1;
}

static void pre_tokenize(const Tokenizer *t, const uint8_t *s, size_t n, IdBuf *out) {
    PreRun r = { t, s, NULL, NULL, out };
    ByteBuf sub = { 0 };
    size_t *map = NULL;
    const uint8_t *subject = s;
    if (t->pre_regex) {
        r.md = pcre2_match_data_create(1, NULL);   // per call: threads share the tokenizer
        if (!r.md) die("out of memory for a regex match");
        if (pre_subject(s, n, &sub, &map)) {
            subject = (const uint8_t *)sub.data;
            r.map = map;
            n = sub.n;
        }
    }
    pre_split(&r, 0, subject, 0, n);
    pcre2_match_data_free(r.md);
    free(sub.data);
    free(map);
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
    int32_t *ucs = NULL;   // the code points of a run being normalized
    size_t ucs_cap = 0;
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
        } else if (st->kind == NORM_UNICODE) {
            over = unicode_normalize(s, n, st->uopts, cap, dst, &ucs, &ucs_cap) < 0;
        } else {
            over = replace_all(s, n, st->from, st->nfrom, st->to, st->nto, cap, dst) < 0;
        }
        if (over) {
            snprintf(what, sizeof what, "normalizer %d of %d (%s)", k + 1, t->nnorm,
                     st->kind == NORM_PREPEND ? "Prepend" : st->kind == NORM_REPLACE ? "Replace" : st->from);
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
    if (t->npre) {
        pre_tokenize(t, s, n, out);
    } else if (t->use_regex) {
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
    free(ucs);
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
void render_token(const Tokenizer *t, int32_t id, int first, ByteBuf *out) {
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

Tokenizer *tokenizer_new(int kind) {
    int rc = pthread_once(&g_class_once, build_class_table);
    if (rc != 0) die("pthread_once failed: %s", strerror(rc));
    Tokenizer *t = xcalloc(1, sizeof *t);
    t->kind = kind;
    t->eot = t->bos = t->unk = -1;
    for (int i = 0; i < 256; i++) t->byte_id[i] = t->fallback_id[i] = -1;
    for (int i = 0; i < 128; i++) t->ascii_id[i] = -1;
    return t;
}

void alloc_tables(Tokenizer *t, int32_t nvocab) {
    t->nvocab = nvocab;
    t->has_id = xcalloc((size_t)nvocab, 1);
    t->is_added = xcalloc((size_t)nvocab, 1);
    t->is_fallback = xcalloc((size_t)nvocab, 1);
    t->cache = xcalloc(CACHE_SLOTS, sizeof *t->cache);
    atomic_init(&t->cache_count, 0);
}

IdStrings idstrings_new(int32_t nvocab) {
    IdStrings s = { nvocab, xmalloc((size_t)nvocab * sizeof *s.off), xmalloc((size_t)nvocab * sizeof *s.len), { 0 } };
    for (int32_t i = 0; i < nvocab; i++) s.off[i] = SIZE_MAX;   // not started
    return s;
}

void idstrings_pack(const IdStrings *s, char **blob, size_t **offs) {
    const size_t *off = s->off, *len = s->len;
    int32_t nvocab = s->nvocab;
    size_t total = 0;
    for (int32_t i = 0; i < nvocab; i++) if (off[i] != SIZE_MAX) total += len[i];
    *blob = xmalloc(total);
    *offs = xmalloc(((size_t)nvocab + 1) * sizeof **offs);
    size_t pos = 0;
    for (int32_t i = 0; i < nvocab; i++) {
        (*offs)[i] = pos;
        // (empty strings only: the buffer may be empty and never allocated)
        if (off[i] != SIZE_MAX && len[i]) { memcpy(*blob + pos, s->buf.data + off[i], len[i]); pos += len[i]; }
    }
    (*offs)[nvocab] = pos;
}

void idstrings_free(IdStrings *s) {
    free(s->off); free(s->len); free(s->buf.data);
}

int32_t vocab_entry(Tokenizer *t, IdStrings *s, const char *file, const Json *obj, size_t i, const char *what) {
    int32_t id = (int32_t)json_num(json_item(obj, i));
    if (t->has_id[id]) die("%s: %s %d appears twice", file, what, id);
    t->has_id[id] = 1;
    idstrings_start(s, id);
    return id;
}

void set_name_hash(Tokenizer *t, const char *prefix, uint64_t h) {
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
    IdStrings bytes = idstrings_new(nvocab);
    uint8_t *special = xcalloc((size_t)nvocab, 1);
    for (size_t i = 0; i < json_len(root); i++) {
        const Json *k = json_key(root, i);
        int32_t id = vocab_entry(t, &bytes, enc_path, root, i, "token id");
        // tiktoken keeps these two out of the mergeable vocabulary; they decode as their text.
        if (!strcmp(json_str(k), "<|endoftext|>") || !strcmp(json_str(k), "<|startoftext|>")) {
            special[id] = 1;
            bytebuf_append(&bytes.buf, json_str(k), json_len(k));
            if (!strcmp(json_str(k), "<|endoftext|>")) t->eot = id;
        } else if (unmap_byte_level(cp_byte, json_str(k), json_len(k), &bytes.buf) < 0) {
            die("%s: token \"%s\" has a character outside GPT-2's byte-level alphabet", enc_path, json_str(k));
        }
        if (idstrings_end(&bytes, id) == 0) die("%s: token %d is empty", enc_path, id);
    }
    for (int32_t id = 0; id < nvocab; id++)
        if (!t->has_id[id]) die("%s: token ids are not contiguous: no token has id %d", enc_path, id);
    idstrings_pack(&bytes, &t->key, &t->key_off);
    idstrings_pack(&bytes, &t->dec, &t->dec_off);
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
    free(rank_of); free(ab.data); free(special);
    idstrings_free(&bytes);
    json_free(root);
    free(enc_text); free(bpe_text); free(enc_path); free(bpe_path);
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
    for (int k = 0; k < t->npre; k++) pcre2_code_free(t->pre[k].re);
    free(t->dec); free(t->dec_off); free(t->has_id); free(t->key); free(t->key_off);
    free(t->is_added); free(t->is_fallback); free(t->vslots); free(t->pslots);
    free(t->file);
    free(t);
}
