// tokenizer_hf.c: the loader of Hugging Face tokenizer.json (BPE) files: normalizers, pre-tokenizers, decoders.
// The tables it fills are tokenizer.c's (through tokenizer_impl.h), which encodes and decodes with them.
#include "tokenizer_impl.h"


// ---------------------------------------------------------------- normalizers, pre-tokenizers, decoders

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
        *st = (NormStep){ NORM_PREPEND, 0, NULL, xmalloc(json_len(p) + 1), 0, json_len(p) };
        memcpy(st->to, json_str(p), json_len(p) + 1);
    } else if (!strcmp(ty, "Replace")) {
        const Json *from = replace_pattern(file, v, "the Replace normalizer");
        const Json *to = jget_typed(file, v, "content", JSON_STR, "the Replace normalizer");
        if (!to) die("%s: the Replace normalizer has no \"content\"", file);
        check_norm_string(file, from, "Replace normalizer's pattern");
        check_norm_string(file, to, "Replace normalizer's content");
        *st = (NormStep){ NORM_REPLACE, 0, xmalloc(json_len(from) + 1), xmalloc(json_len(to) + 1), json_len(from), json_len(to) };
        memcpy(st->from, json_str(from), json_len(from) + 1);
        memcpy(st->to, json_str(to), json_len(to) + 1);
    } else if (!strcmp(ty, "NFC") || !strcmp(ty, "NFD") || !strcmp(ty, "NFKC") || !strcmp(ty, "NFKD")) {
        unicode_libs_require(file, "a Unicode normalizer");
        // the composed forms decompose and then compose; the K forms also replace compatibility characters
        int opts = UTF8PROC_STABLE | (ty[2] == 'C' || ty[3] == 'C' ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE);
        if (ty[2] == 'K') opts |= UTF8PROC_COMPAT;
        *st = (NormStep){ NORM_UNICODE, opts, xstrdup(ty), NULL, 0, 0 };
    } else {
        die("%s: normalizer \"%s\" is not supported (supported: NFC, NFD, NFKC, NFKD, Prepend, Replace with a String "
            "pattern, Sequence)", file, ty);
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

// Real Split patterns are a few hundred bytes at most (Llama-3's has 130).
#define SPLIT_MAX_PATTERN 4096

// Compiles a Split pattern for PCRE2 in UTF mode with Unicode properties, read as Hugging Face's Oniguruma
// reads it; `literal` for a "String" pattern. Oniguruma's ^ and $ match at every line, and its . matches
// anything but "\n": hence PCRE2_MULTILINE and "\n" as the only newline. Its \w (letters, marks, decimal
// digits, connector punctuation) is not PCRE2's (letters, all numbers, "_"), and \b and \B follow \w, so a
// pattern that uses them is refused rather than split differently. (\s differs only on U+180E, which
// tokenizer.c handles.) The subject is always valid UTF-8 (tokenizer.c replaces invalid bytes first), so
// matching skips PCRE2's check.
static pcre2_code *compile_split(const char *file, const char *pat, size_t n, int literal, const char *what) {
    unicode_libs_require(file, what);
    if (n > SPLIT_MAX_PATTERN) die("%s: %s has a pattern of %zu bytes; the limit is %d", file, what, n, SPLIT_MAX_PATTERN);
    for (size_t i = 0; !literal && i + 1 < n; i++) {
        if (pat[i] != '\\') continue;
        char c = pat[++i];
        if (c == 'Q') {   // \Q...\E is literal text
            while (i + 2 < n && !(pat[i + 1] == '\\' && pat[i + 2] == 'E')) i++;
            i += 2;
        } else if (c == 'w' || c == 'W' || c == 'b' || c == 'B') {
            die("%s: %s: the pattern \"%s\" uses \\%c, whose Unicode meaning differs between Oniguruma (Hugging Face's "
                "regex engine) and PCRE2: not supported", file, what, pat, c);
        }
    }
    pcre2_compile_context *cc = pcre2_compile_context_create(NULL);
    if (!cc || pcre2_set_newline(cc, PCRE2_NEWLINE_LF) != 0) die("out of memory for a regex");
    int err;
    PCRE2_SIZE off;
    // (PCRE2_LITERAL admits few other options, and needs none of these)
    uint32_t opts = literal ? PCRE2_UTF | PCRE2_LITERAL : PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE | PCRE2_NEVER_BACKSLASH_C;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, n, opts, &err, &off, cc);
    pcre2_compile_context_free(cc);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        die("%s: %s: the pattern \"%s\" is not a valid regular expression (at byte %zu: %s)", file, what, pat, (size_t)off, (char *)msg);
    }
    // (without JIT, where the platform has none, PCRE2 interprets the pattern: slower, same matches)
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    return re;
}

static PreStep *add_pre_step(Tokenizer *t, const char *file, int kind) {
    if (t->npre == (int)(sizeof t->pre / sizeof t->pre[0])) die("%s: more than %d pre_tokenizers", file, t->npre);
    PreStep *p = &t->pre[t->npre++];
    *p = (PreStep){ kind, SPLIT_ISOLATED, 0, NULL };
    return p;
}

static int split_behavior(const char *file, const Json *v, const char *dflt, const char *where) {
    static const char *names[] = { "Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous" };
    const Json *b = jget_typed(file, v, "behavior", JSON_STR, where);
    const char *name = b ? json_str(b) : dflt;
    if (!name) die("%s: %s has no \"behavior\"", file, where);
    for (int i = 0; i < 5; i++) if (!strcmp(name, names[i])) return i;
    die("%s: %s: behavior \"%s\" is not supported (supported: Removed, Isolated, MergedWithPrevious, MergedWithNext, "
        "Contiguous)", file, where, name);
}

// Unicode punctuation, and the ASCII symbols Rust's is_ascii_punctuation adds ($+<=>^`|~), as HF's Punctuation
#define PUNCT_CLASS "[\\p{P}!-/:-@\\[-`{-~]"

// One member of a pre_tokenizer Sequence (or a Split, Digits or Punctuation alone): a splitting step.
static void parse_pre_step(Tokenizer *t, const char *file, const Json *v) {
    const char *ty = jtype_str(file, v, "a pre_tokenizer");
    if (!strcmp(ty, "Sequence")) {
        const Json *list = jget_typed(file, v, "pretokenizers", JSON_ARR, "the Sequence pre_tokenizer");
        for (size_t i = 0; list && i < json_len(list); i++) parse_pre_step(t, file, json_item(list, i));
    } else if (!strcmp(ty, "ByteLevel")) {
        // HF adds the prefix space to every piece: the same as once to the text only before any split
        if (jget_bool(file, v, "add_prefix_space", 0, "ByteLevel")) {
            if (t->npre) die("%s: a ByteLevel pre_tokenizer with add_prefix_space after another pre_tokenizer is not supported", file);
            t->prefix_space = 1;
        }
        t->byte_level = 1;
        if (jget_bool(file, v, "use_regex", 1, "ByteLevel")) add_pre_step(t, file, PRE_GPT2);
    } else if (!strcmp(ty, "Split")) {
        const Json *pat = json_get(v, "pattern");
        const Json *re = jget_typed(file, pat, "Regex", JSON_STR, "the Split pattern");
        const Json *str = jget_typed(file, pat, "String", JSON_STR, "the Split pattern");
        if (!re && !str) die("%s: the Split pre_tokenizer needs a \"pattern\" with a \"Regex\" or a \"String\"", file);
        PreStep *p = add_pre_step(t, file, PRE_SPLIT);
        p->re = re ? compile_split(file, json_str(re), json_len(re), 0, "the Split pre_tokenizer")
                   : compile_split(file, json_str(str), json_len(str), 1, "the Split pre_tokenizer");
        p->behavior = split_behavior(file, v, NULL, "the Split pre_tokenizer");
        p->invert = jget_bool(file, v, "invert", 0, "the Split pre_tokenizer");
        t->pre_regex = 1;
    } else if (!strcmp(ty, "Digits")) {
        // each digit alone, or runs of digits (Rust's char::is_numeric: the N categories)
        int each = jget_bool(file, v, "individual_digits", 0, "Digits");
        PreStep *p = add_pre_step(t, file, PRE_SPLIT);
        p->re = compile_split(file, "\\p{N}", 5, 0, "the Digits pre_tokenizer");
        p->behavior = each ? SPLIT_ISOLATED : SPLIT_CONTIGUOUS;
        t->pre_regex = 1;
    } else if (!strcmp(ty, "Punctuation")) {
        PreStep *p = add_pre_step(t, file, PRE_SPLIT);
        p->re = compile_split(file, PUNCT_CLASS, strlen(PUNCT_CLASS), 0, "the Punctuation pre_tokenizer");
        p->behavior = split_behavior(file, v, "Isolated", "the Punctuation pre_tokenizer");
        t->pre_regex = 1;
    } else if (!strcmp(ty, "Metaspace")) {
        die("%s: a Metaspace pre_tokenizer in a Sequence with others is not supported (only alone)", file);
    } else {
        die("%s: pre_tokenizer \"%s\" is not supported (supported: ByteLevel, Metaspace, Split, Digits, Punctuation, "
            "a Sequence of these, or none)", file, ty);
    }
}

static void parse_pre_tokenizer(Tokenizer *t, const char *file, const Json *v) {
    if (jis_null(v)) return;
    const char *ty = jtype_str(file, v, "the pre_tokenizer");
    if (!strcmp(ty, "Sequence")) {
        const Json *list = jget_typed(file, v, "pretokenizers", JSON_ARR, "the Sequence pre_tokenizer");
        if (list && json_len(list) == 1) parse_pre_tokenizer(t, file, json_item(list, 0));
        else if (list) parse_pre_step(t, file, v);
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
        parse_pre_step(t, file, v);
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

// ---------------------------------------------------------------- the model: byte fallback, merges, special tokens

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
    if (t->byte_level || t->meta || t->use_regex || t->npre || t->whole_piece_first || fallback_merges) return 0;
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

Tokenizer *load_hf(const char *file) {
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
    IdStrings keys = idstrings_new(nvocab);
    uint8_t *unmappable = xcalloc((size_t)nvocab, 1);
    for (size_t i = 0; i < json_len(vocab); i++) {
        const Json *k = json_key(vocab, i);
        int32_t id = vocab_entry(t, &keys, file, vocab, i, "vocab id");
        // Byte-level vocabularies are kept as raw bytes; a token outside the alphabet keeps its text and
        // can only come out of decoding.
        if (!t->byte_level || unmap_byte_level(cp_byte, json_str(k), json_len(k), &keys.buf) < 0) {
            bytebuf_append(&keys.buf, json_str(k), json_len(k));
            unmappable[id] = (uint8_t)t->byte_level;
        }
        idstrings_end(&keys, id);
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
            idstrings_start(&keys, id);
            bytebuf_append(&keys.buf, json_str(content[id]), json_len(content[id]));
            idstrings_end(&keys, id);
            unmappable[id] = 1;
        }
    }
    idstrings_pack(&keys, &t->key, &t->key_off);
    vocab_build(t, unmappable);
    free(unmappable);
    idstrings_free(&keys);

    // The bytes of each id when it is not the first of a text.
    IdStrings dec = idstrings_new(nvocab);
    for (int32_t id = 0; id < nvocab; id++) {
        idstrings_start(&dec, id);
        int b;
        if (t->is_added[id]) bytebuf_append(&dec.buf, json_str(content[id]), json_len(content[id]));
        else if (t->is_fallback[id] && is_fallback_name(t->key + t->key_off[id], t->key_off[id + 1] - t->key_off[id], &b)) bytebuf_putc(&dec.buf, (char)b);
        else if (t->has_id[id]) render_token(t, id, 0, &dec.buf);
        idstrings_end(&dec, id);
    }
    idstrings_pack(&dec, &t->dec, &t->dec_off);
    idstrings_free(&dec);
    free(content);

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

