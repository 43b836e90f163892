// tokenizer_json.c: the byte tokenizer and GPT-2 files written as a Hugging Face tokenizer.json, for
// `hgrn2 export`. Both become a byte-level BPE in the format of the `tokenizers` library that encodes any
// text to the ids tokenizer.c gives it (docs/tokenizers.md, "Export").
#include "tokenizer_impl.h"

// s[0..n) as a JSON string; dies when it is not UTF-8 (a JSON file cannot hold it).
static void put_str(FILE *f, const char *path, const char *s, size_t n) {
    char *q = json_quote(s, n);
    if (!q) die("%s: \"%.*s\" is not valid UTF-8, so it cannot be written as JSON", path, (int)n, s);
    fputs(q, f);
    free(q);
}

// The code point c as UTF-8 (c < 0x800: the byte-level alphabet ends at U+0143).
static size_t utf8_put(char *o, uint32_t c) {
    if (c < 0x80) { o[0] = (char)c; return 1; }
    o[0] = (char)(0xC0 | (c >> 6));
    o[1] = (char)(0x80 | (c & 0x3F));
    return 2;
}

// The ByteLevel step as a pre-tokenizer (and the decoder and post-processor, which read no more than these
// flags). add_prefix_space is false: a prefix space would change the ids of every text's first word.
static void put_byte_level(FILE *f, const char *key, int use_regex, int trim_offsets) {
    fprintf(f, "  \"%s\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": %s, \"use_regex\": %s},\n",
            key, trim_offsets ? "true" : "false", use_regex ? "true" : "false");
}

static void put_model_head(FILE *f) {
    fprintf(f, "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n"
               "    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n    \"fuse_unk\": false,\n"
               "    \"byte_fallback\": false,\n    \"vocab\": {");
}

// The byte tokenizer: 256 tokens, id b the alphabet character of byte b, and no merges, so that BPE leaves
// every byte its own token. Without the regex the whole text is one piece, which changes nothing here.
static void write_byte(FILE *f) {
    uint32_t byte_cp[256];
    int16_t cp_byte[324];
    byte_alphabet(byte_cp, cp_byte);
    fprintf(f, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [],\n"
               "  \"normalizer\": null,\n");
    // offsets are not trimmed: a token is one byte, and a space token would otherwise get an empty span
    put_byte_level(f, "pre_tokenizer", 0, 0);
    fprintf(f, "  \"post_processor\": null,\n");
    put_byte_level(f, "decoder", 0, 0);
    put_model_head(f);
    for (int b = 0; b < 256; b++) {
        char ch[2];
        size_t n = utf8_put(ch, byte_cp[b]);
        fputs(b ? ",\n      " : "\n      ", f);
        put_str(f, "byte alphabet", ch, n);
        fprintf(f, ": %d", b);
    }
    fprintf(f, "\n    },\n    \"merges\": []\n  }\n}\n");
}

// GPT-2 files: encoder.json is the vocabulary as it is (already in the byte-level alphabet), vocab.bpe the
// merges in rank order. The special tokens the loader keeps out of BPE are added tokens.
static void write_gpt2(FILE *f, const char *dir) {
    char *enc_path = xasprintf("%s/encoder.json", dir), *bpe_path = xasprintf("%s/vocab.bpe", dir);
    size_t enc_len, bpe_len;
    char *enc_text, *bpe_text = read_file(bpe_path, &bpe_len);
    Json *root = parse_json_file(enc_path, &enc_text, &enc_len);
    if (json_type(root) != JSON_OBJ) die("%s: expected an object of token -> id, found a %s", enc_path, jtype_name(json_type(root)));
    static const char *SPECIAL[] = {"<|endoftext|>", "<|startoftext|>"};
    fprintf(f, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [");
    int nspecial = 0;
    for (int s = 0; s < 2; s++) {
        const Json *v = json_get(root, SPECIAL[s]);
        if (!v) continue;
        fprintf(f, "%s\n    {\"id\": %lld, \"content\": \"%s\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, "
                   "\"normalized\": true, \"special\": true}", nspecial++ ? "," : "",
                (long long)jint(enc_path, v, 0, (int64_t)json_len(root) - 1, "a token id"), SPECIAL[s]);
    }
    fprintf(f, "%s],\n  \"normalizer\": null,\n", nspecial ? "\n  " : "");
    put_byte_level(f, "pre_tokenizer", 1, 1);
    put_byte_level(f, "post_processor", 1, 1);
    put_byte_level(f, "decoder", 1, 1);
    put_model_head(f);
    for (size_t i = 0; i < json_len(root); i++) {
        const Json *k = json_key(root, i);
        fputs(i ? ",\n      " : "\n      ", f);
        put_str(f, enc_path, json_str(k), json_len(k));
        fprintf(f, ": %lld", (long long)jint(enc_path, json_item(root, i), 0, (int64_t)json_len(root) - 1, "a token id"));
    }
    fprintf(f, "\n    },\n    \"merges\": [");
    // the lines as the loader reads them: a "#version" line and empty lines skipped, "a b" otherwise
    size_t line_no = 0, nmerges = 0;
    for (char *line = bpe_text; line < bpe_text + bpe_len;) {
        char *nl = memchr(line, '\n', (size_t)(bpe_text + bpe_len - line));
        char *end = nl ? nl : bpe_text + bpe_len, *next = nl ? nl + 1 : end;
        line_no++;
        if (end > line && end[-1] == '\r') end--;
        *end = 0;
        if (!strncmp(line, "#version", 8) || !*line) { line = next; continue; }
        char *save, *a = strtok_r(line, " \t\r", &save), *b = strtok_r(NULL, " \t\r", &save);
        if (!a || !b || strtok_r(NULL, " \t\r", &save)) die("%s line %zu: expected two tokens separated by a space", bpe_path, line_no);
        // "a b": neither part holds a space (the alphabet writes it as U+0120)
        char *ab = xasprintf("%s %s", a, b);
        fputs(nmerges++ ? ",\n      " : "\n      ", f);
        put_str(f, bpe_path, ab, strlen(ab));
        free(ab);
        line = next;
    }
    fprintf(f, "%s]\n  }\n}\n", nmerges ? "\n    " : "");
    json_free(root);
    free(enc_text); free(bpe_text); free(enc_path); free(bpe_path);
}

void tokenizer_write_hf_json(const Tokenizer *t, const char *spec, FILE *f, const char *path) {
    if (t->kind == KIND_BYTE) write_byte(f);
    else if (t->kind == KIND_GPT2) write_gpt2(f, spec);
    else die("%s: a tokenizer.json tokenizer is exported as its own file, not rewritten", path);
}

const char *tokenizer_file(const Tokenizer *t) { return t->kind == KIND_HF ? t->file : NULL; }
int32_t tokenizer_unk(const Tokenizer *t) { return t->unk; }
