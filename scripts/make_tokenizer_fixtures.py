#!/usr/bin/env python3
"""Generate the tokenizer test fixtures in tests/fixtures/tokenizer/ with independent implementations.

What it writes:
  sp_llama.json   a small SentencePiece-style BPE (vocab 2000, byte_fallback, <0x00>..<0xFF>) trained here with
                  Hugging Face `tokenizers` on shared text, laid out like the LLaMA/Mistral tokenizer.json:
                  normalizer Prepend("▁") + Replace(" " -> "▁"), no pre-tokenizer, decoder Replace + ByteFallback +
                  Fuse + Strip, merges written as "a b" strings (the older format), non-ASCII kept as UTF-8
  sp_meta.json    the same model with the Metaspace pre-tokenizer (prepend "always", split) and a ByteFallback +
                  Metaspace decoder, merges as ["a", "b"] pairs (the newer format), non-ASCII as \\u escapes
  bl.json         a small byte-level BPE (GPT-2/RoBERTa style: ByteLevel pre-tokenizer and decoder), vocab 1500
  bl_prefix.json  the same model with add_prefix_space and ignore_merges set, merges as "a b" strings
  llama3.json     a byte-level BPE (vocab 1500; trained with some indented code too) laid out like Llama-3's tokenizer.json: no normalizer, pre-tokenizer
                  Sequence[Split(Regex <Llama-3's pattern>, Isolated), ByteLevel(use_regex false)], ByteLevel decoder
  qwen2.json      the same layout with Qwen2's pattern and an NFC normalizer (trained so)
  nfkc.json       NFKC normalizer, pre-tokenizer Sequence[Digits(individual), Punctuation(Contiguous),
                  Split(String " ", MergedWithNext), ByteLevel(use_regex true)], vocab 1000
  split_mix.json  nfkc.json's model under an NFD normalizer and a Sequence of Splits with every other behaviour
                  (Removed, MergedWithPrevious, Contiguous, MergedWithNext, invert), to check their rules
  <name>.cases    for gpt2 (the shared GPT-2 files) and each file above: encode cases with the reference ids

`--only NAME,...` regenerates only those files (e.g. --only llama3,qwen2,nfkc,split_mix), leaving the others.

The Split files' cases add real text in other languages, cut from Debian's fortunes-de, -ru, -es, -pl, -cs and
-zh packages (embedded in the .cases, so the tests do not need them; the script needs them installed), text
that NFC / NFKC change, and invalid UTF-8. Neither `tokenizers` nor Oniguruma accept invalid UTF-8, so the
reference for those cases follows hgrn2's rule with `tokenizers`' own parts: the text is decoded with
errors="surrogateescape", each run of valid characters between invalid bytes goes through the file's
normalizer on its own, each invalid byte becomes U+E000 (a private-use character: neither letter, number nor
space) for the pre-tokenizer, whose pieces are mapped back to the original bytes and run through the BPE
model (Model.tokenize on their byte-level characters). On every valid case that reference must give the ids
of `tokenizers`' own encode, or the script stops.

Random strings for the Split files keep to characters assigned in Python's Unicode (14.0, the version of
PCRE2 10.42's tables): Oniguruma knows later letters and digits that PCRE2 takes for unassigned.

Reference encoders: tiktoken for GPT-2 (an offline tiktoken.Encoding built from the shared encoder.json and
vocab.bpe with tiktoken's own GPT-2 pattern; nothing is downloaded), `tokenizers` for the tokenizer.json files.
hgrn2 encodes special-token text as ordinary text, so the reference is tiktoken's encode_ordinary, and for
`tokenizers` a copy of the file without added_tokens and post_processor.

Invalid UTF-8 (GPT-2 only, as neither reference accepts it): hgrn2 treats each byte that is not part of a valid
UTF-8 sequence as a character of its own in the regex class "other". The reference for those cases splits the
text with the `regex` module after decoding it with errors="surrogateescape" (each invalid byte becomes a lone
surrogate, category Cs, which is "other" for the regex too), and runs tiktoken's BPE on each piece's bytes.

Case file format (parsed by tests/test_tokenizer.c):
  text <name> <nbytes>\\n<the bytes>\\n             a text given inline, or
  file <path> <offset> <nbytes>\\n                  bytes [offset, offset+nbytes) of ../shared/data/<path>
                                                   (nbytes -1: the whole file)
  then either   ids <count> <id> <id> ...\\n
  or            hash <count> <fnv1a64 of the ids as little-endian int32, 16 hex digits>\\n
  and optionally decoded <nbytes>\\n<bytes>\\n      what decoding the ids gives when that is not the text
                                                   (the reference decoder's output),
             or dechash <nbytes> <fnv1a64 hex>\\n  the same for a whole file, as its length and hash
Lines starting with '#' before the first case are comments.

Rerun from the repository root (about a minute; no network needed):
    pip install tiktoken==0.14.0 tokenizers==0.23.3 regex==2026.5.9
    apt-get install fortunes-de fortunes-ru fortunes-es fortunes-pl fortunes-cs fortunes-zh
    python3 scripts/make_tokenizer_fixtures.py [--shared ../shared] [--only NAME,...]
Generated with Python 3.11.7, tiktoken 0.14.0, tokenizers 0.23.3, regex 2026.5.9. Training with `tokenizers` is not
bit-identical from run to run (parallel tie-breaking), so a rerun may give slightly different merges: that is
fine because the .json files and the .cases files are always regenerated together.
"""
import argparse
import json
import os
import random
import struct
import sys
import unicodedata

import regex
import tiktoken
import tiktoken.load
import tokenizers
from tiktoken_ext.openai_public import r50k_pat_str
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

OUT = "tests/fixtures/tokenizer"
TEXT_FILES = ["canterbury-alice29.txt", "canterbury-asyoulik.txt", "canterbury-lcet10.txt", "canterbury-plrabn12.txt",
              "tinyshakespeare.txt", "wikitext-103-raw.test.txt", "wikitext-103-raw.valid.txt",
              "wikitext-2.test.tokens", "wikitext-2.valid.tokens"]

CASES = [
    ("empty", ""),
    ("hello", "Hello, world!"),
    ("single_char", "a"),
    ("single_space", " "),
    ("latin_accents", "Café naïve façade — señor Müller's Ærøskøbing; Ångström, œuvre, Straße, ĳssel, Łódź, Ğü"),
    ("greek", "Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο. ΑΒΓΔ ἀρχή"),
    ("cyrillic", "Съешь же ещё этих мягких французских булок, да выпей чаю. ЁЖИК"),
    ("cjk", "我能吞下玻璃而不伤身体。日本語のテキスト、カタカナとひらがな。𠀀𠀁 ＡＢＣ１２３"),
    ("arabic", "أنا قادر على أكل الزجاج و هذا لا يؤلمني. ١٢٣٤ مرحبا"),
    ("hebrew", "אני יכול לאכול זכוכית וזה לא מזיק לי."),
    ("devanagari", "मैं काँच खा सकता हूँ और मुझे उससे कोई चोट नहीं पहुंचती। १२३ क्षत्रिय"),
    ("hangul", "나는 유리를 먹을 수 있어요. 그래도 아프지 않아요 ㄱㄴㄷ"),
    ("thai", "ฉันกินกระจกได้ แต่มันไม่ทำให้ฉันเจ็บ"),
    ("emoji", "I ❤️ 🍕! 👍🏽 👍🏿 👨‍👩‍👧‍👦 🏳️‍🌈 🇫🇷🇯🇵 😀😃😄 🧑🏾‍💻 ✌🏻 #️⃣"),
    ("whitespace_runs", "a  b   c\t\td\n\ne \n \n  f\r\n\tg    h"),
    ("trailing_spaces", "end   "),
    ("trailing_newlines", "line\n\n\n"),
    ("only_spaces", "     "),
    ("only_newlines", "\n\n\n"),
    ("leading_spaces", "   lead"),
    ("unicode_spaces", " \t \n\u00a0x\u3000y\u2003z\u2028w\u0085v\u200bu\ufeffq  "),
    ("space_before_punct", "x  !  ?\t. \n, "),
    ("contractions", "I'm he's she'd we'll they've you're it's can't don't"),
    ("contractions_upper", "I'M HE'S SHE'D WE'LL THEY'VE YOU'RE IT'S CAN'T 'S 'T 'RE 'Ll"),
    ("contractions_edge", "'s 't 're 've 'm 'll 'd 'tis 'Twas rock'n'roll o'clock ''s ''' x's 'sup' ' s'"),
    ("digits", "123 4567 89.01 3.14159 1,000,000 2024-01-01 x2 42nd 0.5e-10 007"),
    ("unicode_numbers", "١٢٣ ½ ²³ Ⅻ ④ 𝟙𝟚 ৩"),
    ("punctuation", "!!! ??? ... ,,, ;: --- ((x)) [y] {z} @user #tag $5 %20 ^_^ &amp; *bold* ~t~ `c` |p| \\b/"),
    ("quotes", "«quote» “smart” ‘single’ … „low“ ‹a› 「かぎ」"),
    ("code", "def f(x):\n    return x**2  # square\n\nint main() { printf(\"%d\\n\", 42); }\n"),
    ("html", "<a href=\"https://example.com/p?q=1&r=two#frag\">user@example.org</a>"),
    ("special_text", "<|endoftext|> <s> </s> <unk> hello<|endoftext|>world <0x41>"),
    ("mixed_scripts", "abcДЕЖ123αβγ中文ab1c"),
    ("combining", "e\u0301 a\u0308 n\u0303 Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇"),
    ("math_letters", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝐀𝐁𝐂 ℕℤℚ"),
    ("control_chars", "\x00\x01\x1b[31mred\x1b[0m\x7f\x08"),
    ("long_word", "a" * 300),
    ("long_digits", "1" * 200),
    ("long_spaces", " " * 100 + "x"),
    ("long_mixed", "ab" * 150),
    ("repeated_emoji", "😀" * 50),
]

# Random strings from many Unicode ranges (all planes, combining marks, rare spaces, private use), with
# contractions, digits and whitespace runs mixed in.
RANGES = [(0x20, 0x7E)] * 6 + [
    (0x9, 0xD), (0xA0, 0x2FF), (0x300, 0x36F), (0x370, 0x52F), (0x590, 0x6FF), (0x900, 0xDFF), (0x1100, 0x11FF),
    (0x1680, 0x1680), (0x2000, 0x206F), (0x2070, 0x218F), (0x2460, 0x24FF), (0x3000, 0x30FF), (0x4E00, 0x9FFF),
    (0xAC00, 0xD7A3), (0xE000, 0xF8FF), (0xFB00, 0xFFFD), (0x10000, 0x1FFFF), (0x1F300, 0x1FAFF), (0x20000, 0x3134A),
    (0xE0000, 0xE01EF), (0xF0000, 0x10FFFF)]


def random_cases(n, seed):
    rng = random.Random(seed)
    out = []
    for k in range(n):
        parts = []
        for _ in range(rng.randint(1, 40)):
            cp = rng.randint(*rng.choice(RANGES))
            if 0xD800 <= cp <= 0xDFFF:
                continue
            parts.append(chr(cp) * rng.choice([1, 1, 1, 2, 5]))
            if rng.random() < 0.2:
                parts.append(rng.choice([" ", "  ", "'s", "'S", "\n", " \n", "\t", "'ll", "'", "1", " 9"]))
        out.append(("random%d" % k, "".join(parts)))
    return out


CASES += random_cases(100, 7)

INVALID = [
    ("inv_ff", b"abc\xffdef"),
    ("inv_fffe", b"\xff\xfe"),
    ("inv_space_ff", b" \xff"),
    ("inv_a_ff_space_b", b"a\xff b"),
    ("inv_truncated2", b"\xc3"),
    ("inv_e_acute_trunc", b"\xc3\xa9\xc3"),
    ("inv_truncated3", b"x\xe2\x82"),
    ("inv_surrogate", b"\xed\xa0\x80abc"),
    ("inv_overlong", b"\xc0\x80 \xe0\x80\x80"),
    ("inv_too_big", b"\xf4\x90\x80\x80z"),
    ("inv_f8", b"\xf8\x88\x80\x80\x80"),
    ("inv_continuation", b"x\x80y \x80\x80"),
    ("inv_apostrophe", b"'\xffs \xff's"),
    ("inv_spaces", b"  \xff\n\xff\t \xff"),
    ("inv_digits", b"1\xff2 \xff3"),
    ("inv_cjk_trunc", b"\xe4\xb8\xad\xe6\x96"),
    ("inv_letters", b"\xe4\xb8\xadabc\xb8def"),
]


def fnv_bytes(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def fnv_ids(ids):
    return fnv_bytes(struct.pack("<%di" % len(ids), *ids))


class CaseWriter:
    def __init__(self, path, comment):
        self.f = open(path, "wb")
        for line in comment.splitlines():
            self.f.write(b"# " + line.encode() + b"\n")
        self.n = 0

    def text(self, name, data: bytes):
        self.f.write(b"text %s %d\n" % (name.encode(), len(data)) + data + b"\n")

    def file(self, path, off, n):
        self.f.write(b"file %s %d %d\n" % (path.encode(), off, n))

    def ids(self, ids, decoded=None, text=None, hashed=False):
        if hashed:
            self.f.write(b"hash %d %s\n" % (len(ids), fnv_ids(ids).encode()))
        else:
            self.f.write(b"ids %d%s\n" % (len(ids), b"".join(b" %d" % i for i in ids)))
        if decoded is not None and decoded != text:
            if hashed:
                self.f.write(b"dechash %d %s\n" % (len(decoded), fnv_bytes(decoded).encode()))
            else:
                self.f.write(b"decoded %d\n" % len(decoded) + decoded + b"\n")
        self.n += 1

    def close(self):
        self.f.close()


def chunks(shared):
    """A few UTF-8-aligned chunks of each shared text file: (path, offset, bytes)."""
    out = []
    rng = random.Random(1234)
    for name in TEXT_FILES:
        data = open(os.path.join(shared, "data/text", name), "rb").read()
        for _ in range(2):
            n = rng.randint(500, 3000)
            off = rng.randint(0, len(data) - n)
            while off > 0 and (data[off] & 0xC0) == 0x80:
                off -= 1
            end = off + n
            while end < len(data) and (data[end] & 0xC0) == 0x80:
                end += 1
            out.append(("text/" + name, off, data[off:end]))
    return out


def gpt2_reference(shared):
    d = os.path.join(shared, "data/tokenizers/gpt2")
    ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=os.path.join(d, "vocab.bpe"), encoder_json_file=os.path.join(d, "encoder.json"))
    return tiktoken.Encoding(name="gpt2_local", pat_str=r50k_pat_str, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": 50256}, explicit_n_vocab=50257)


GPT2_SPLIT = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def gpt2_bytes_reference(enc, data: bytes):
    """GPT-2 ids of any bytes, each invalid UTF-8 byte being an 'other' character of its own (see top)."""
    s = data.decode("utf-8", errors="surrogateescape")
    ids = []
    for piece in GPT2_SPLIT.findall(s):
        ids += enc._encode_single_piece(piece.encode("utf-8", errors="surrogateescape"))
    return ids


def write_gpt2(shared):
    enc = gpt2_reference(shared)
    w = CaseWriter(os.path.join(OUT, "gpt2.cases"),
                   "GPT-2 (../shared/data/tokenizers/gpt2): ids from tiktoken %s encode_ordinary.\n"
                   "inv_* cases: see scripts/make_tokenizer_fixtures.py. Generated by that script; do not edit." % tiktoken.__version__)
    for name, text in CASES:
        ids = enc.encode_ordinary(text)
        # the invalid-UTF-8 reference must agree with tiktoken wherever tiktoken can be asked
        if gpt2_bytes_reference(enc, text.encode()) != ids:
            sys.exit("the regex-module reference disagrees with tiktoken on case %s" % name)
        w.text(name, text.encode())
        w.ids(ids)
    for name, data in INVALID:
        w.text(name, data)
        w.ids(gpt2_bytes_reference(enc, data))
    rng = random.Random(99)
    for k in range(8):
        data = bytes(rng.randrange(256) for _ in range(rng.randint(1, 200)))
        w.text("inv_random%d" % k, data)
        w.ids(gpt2_bytes_reference(enc, data))
    for path, off, data in chunks(shared):
        w.file(path, off, len(data))
        w.ids(enc.encode_ordinary(data.decode()))
    for name in TEXT_FILES:
        text = open(os.path.join(shared, "data/text", name), "rb").read().decode()
        w.file("text/" + name, 0, -1)
        w.ids(enc.encode_ordinary(text), hashed=True)
    w.close()
    print("gpt2.cases: %d cases" % w.n)


def train(shared):
    files = [os.path.join(shared, "data/text", f) for f in ("tinyshakespeare.txt", "wikitext-103-raw.valid.txt")]
    # SentencePiece style: byte fallback tokens at ids 3..258 as in LLaMA; a small alphabet so that rarer
    # characters go through byte fallback.
    sp = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    sp.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    specials = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)]
    sp.train(files, trainers.BpeTrainer(vocab_size=2000, special_tokens=specials, limit_alphabet=120, show_progress=False))
    bl = Tokenizer(models.BPE())
    bl.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bl.decoder = decoders.ByteLevel()
    bl.train(files, trainers.BpeTrainer(vocab_size=1500, special_tokens=["<|endoftext|>"],
                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    return sp, bl


def merges_as_strings(d):
    d["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in d["model"]["merges"]]


def variants(sp, bl):
    """The four tokenizer.json files as dicts."""
    out = {}
    # LLaMA layout
    sp.pre_tokenizer = None
    sp.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    sp.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    d = json.loads(sp.to_str())
    d["added_tokens"] = [a for a in d["added_tokens"] if not a["content"].startswith("<0x")]   # plain vocab, as in LLaMA
    merges_as_strings(d)
    out["sp_llama"] = (d, False)
    # Metaspace layout
    sp.normalizer = None
    sp.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    sp.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)])
    d = json.loads(sp.to_str())
    d["added_tokens"] = [a for a in d["added_tokens"] if not a["content"].startswith("<0x")]
    out["sp_meta"] = (d, True)
    out["bl"] = (json.loads(bl.to_str()), False)
    d = json.loads(bl.to_str())
    d["pre_tokenizer"]["add_prefix_space"] = True
    d["model"]["ignore_merges"] = True
    merges_as_strings(d)
    out["bl_prefix"] = (d, False)
    return out


def write_hf(name, d, ascii_only, shared):
    js = json.dumps(d, ensure_ascii=ascii_only, separators=(",", ":"))
    path = os.path.join(OUT, name + ".json")
    with open(path, "w", encoding="utf-8") as f:
        f.write(js)
    full = Tokenizer.from_str(js)
    plain = dict(d, added_tokens=[], post_processor=None)   # special-token text is ordinary text in hgrn2
    ref = Tokenizer.from_str(json.dumps(plain))
    w = CaseWriter(os.path.join(OUT, name + ".cases"),
                   "%s.json: ids from tokenizers %s (without added_tokens), decoded text from its decoder.\n"
                   "Generated by scripts/make_tokenizer_fixtures.py; do not edit." % (name, tokenizers.__version__))

    def case(text):
        ids = ref.encode(text, add_special_tokens=False).ids
        return ids, full.decode(ids, skip_special_tokens=False).encode()

    for cname, text in CASES:
        ids, dec = case(text)
        w.text(cname, text.encode())
        w.ids(ids, dec, text.encode())
    for path, off, data in chunks(shared):
        ids, dec = case(data.decode())
        w.file(path, off, len(data))
        w.ids(ids, dec, data)
    for fname in TEXT_FILES:
        data = open(os.path.join(shared, "data/text", fname), "rb").read()
        ids = ref.encode(data.decode(), add_special_tokens=False).ids
        w.file("text/" + fname, 0, -1)
        w.ids(ids, full.decode(ids, skip_special_tokens=False).encode(), data, hashed=True)
    w.close()
    print("%s.json: %d bytes, %s.cases: %d cases" % (name, len(js.encode()), name, w.n))


# ---------------------------------------------------------------- Split pre-tokenizers, Unicode normalizers

# The patterns exactly as the released tokenizer.json files of Llama-3 and Qwen2 hold them.
LLAMA3_PAT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN2_PAT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"

SPLIT_CASES = [
    ("decomposed", "Cafe\u0301 nai\u0308ve A\u030angstro\u0308m e\u0301\u0301 o\u0323\u0302 q\u0307\u0323 \u1100\u1161\u11a8 \u1112\u1161\u11ab"),
    ("composed", "Café naïve Ångström ệ 한국어 \u212b \u2126 \u0344 \u0958"),
    ("compat", "ﬁle ﬂow ﬀ ﬃ ① ② ⑩ ２０２４年 ＡＢＣ ㎏ ½ x² H₂O ™ … Ⅻ ﾊﾝｶｸ ㍻ \u00a0nbsp ſ \ufdfa \u3300"),
    ("contractions_caps", "I'LL WE'RE THEY'VE SHE'D IT'S 'ſ 'K 'Ll I'm"),
    ("digits_mixed", "1234567890 12,345,678.9012 ١٢٣٤٥٦ ๑๒๓๔ ୧୨୩ 3.14159265 x1y22z333w4444 ⅔"),
    ("crlf", "line1\r\nline2\r\n\r\n  \r\n\tend\r\rx\n\r"),
    ("space_runs", "a    b\t\t c  \n   d      \n\n\n e  "),
    ("spaces_unicode", "x\u0085y \u0085z\u180ew \u180e v\u2028u\u3000t\u00a0\u00a0s"),
    ("spaces_180e", "a  \u180e b   \u180e\u180e c\t\t\u180e the  \u180e"),
    ("empty_matches", "the that this other thth hth tthh, hello.world 12a34"),
    ("spaces_180e_end", "a  \u180e"),
    ("punct_runs", "Hello!!! ...wait?! (yes) --no-- \"quoted\" «fr» 「日本」 ¿Qué? ¡Sí! a,b;c:d"),
    ("emoji_zwj", "👨‍👩‍👧‍👦 🏳️‍🌈 👍🏽 🇩🇪 ❤️ x😀y"),
    ("arabic_marks", "السَّلَامُ عَلَيْكُمْ ١٢٣"),
    ("devanagari_marks", "क्षत्रिय हिन्दी ॐ"),
]

INVALID_SPLIT = INVALID + [
    ("inv_combining", b"e\xcc\x81\xff\xcc\x81 a\xcc\x88"),
    ("inv_ligature", b"\xef\xac\x81\xff1\xef\xbc\x91"),
    ("inv_in_spaces", b"a \xff b  \xfe\n\xff\r\n"),
    ("inv_before_letters", b"\xffabc \xfe\xffdef"),
    ("inv_digits_long", b"12345\xff678\xff9"),
    ("inv_contraction", b"I\xff'LL \xff's"),
]


def assigned_random_cases(n, seed):
    """random_cases, keeping to characters assigned in Python's Unicode version (and not surrogates)."""
    out = []
    for name, text in random_cases(n, seed):
        t = "".join(c for c in text if unicodedata.category(c) not in ("Cn", "Cs"))
        out.append(("urandom" + name[6:], t))
    return out


def fortune_cases():
    """A few fortunes of each language package, as (name, text)."""
    base = "/usr/share/games/fortunes"
    files = [("de", "de/computer.u8"), ("ru", "ru/knowledge.u8"), ("es", "es/asimov.fortunes.u8"),
             ("pl", "pl/7thguard.u8"), ("cs", "cs/citat.u8"), ("zh", "chinese.u8"), ("zh_tang", "tang300.u8")]
    out = []
    for lang, f in files:
        path = os.path.join(base, f)
        if not os.path.exists(path):
            sys.exit("%s is missing: install fortunes-de fortunes-ru fortunes-es fortunes-pl fortunes-cs fortunes-zh" % path)
        k = 0
        for chunk in open(path, "rb").read().split(b"\n%\n"):
            try:
                text = chunk.decode()
            except UnicodeDecodeError:
                continue
            if 60 <= len(chunk) <= 400 and "\x1b" not in text:
                out.append(("fortune_%s%d" % (lang, k), text))
                k += 1
                if k == 3:
                    break
    return out


BYTES_TO_UNICODE = None


def byte_level(data: bytes):
    global BYTES_TO_UNICODE
    if BYTES_TO_UNICODE is None:
        bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
        cs = bs[:]
        n = 0
        for b in range(256):
            if b not in bs:
                bs.append(b)
                cs.append(256 + n)
                n += 1
        BYTES_TO_UNICODE = dict(zip(bs, map(chr, cs)))
    return "".join(BYTES_TO_UNICODE[b] for b in data)


def split_bytes_reference(tok, data: bytes):
    """hgrn2's rule for any bytes with `tokenizers`' parts (see the top): (ids, decoded bytes)."""
    s = data.decode("utf-8", errors="surrogateescape")
    units = []   # (character the pre-tokenizer sees, the bytes it stands for)
    for run in regex.split("([\udc80-\udcff])", s):
        if not run:
            continue
        if len(run) == 1 and "\udc80" <= run <= "\udcff":
            units.append(("\ue000", run.encode("utf-8", errors="surrogateescape")))
        else:
            r = tok.normalizer.normalize_str(run) if tok.normalizer else run
            units += [(c, c.encode()) for c in r]
    subject = "".join(u[0] for u in units)
    ids, kept = [], []   # (a Split may remove text: what decodes is the pieces)
    for _, (a, b) in tok.pre_tokenizer.pre_tokenize_str(subject):
        piece = b"".join(u[1] for u in units[a:b])
        ids += [t.id for t in tok.model.tokenize(byte_level(piece))]
        kept.append(piece)
    return ids, b"".join(kept)


def train_split(shared):
    files = [os.path.join(shared, "data/text", f) for f in ("tinyshakespeare.txt", "wikitext-103-raw.valid.txt")]
    # and indented lines, so that runs of spaces become tokens ("ĠĠ", "ĠĠĠ") whose merges a split can block
    code = os.path.join(OUT, "indented.tmp")
    with open(code, "w") as f:
        for i in range(400):
            f.write("def f%d(x):\n    if x:\n        return  x  +  %d\n    return None\n\n" % (i, i))
    files.append(code)
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    out = {}
    for name, pat, norm, specials in (("llama3", LLAMA3_PAT, None, ["<|begin_of_text|>", "<|end_of_text|>"]),
                                      ("qwen2", QWEN2_PAT, normalizers.NFC(), ["<|endoftext|>"])):
        t = Tokenizer(models.BPE())
        if norm:
            t.normalizer = norm
        t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(pat), "isolated", invert=False),
                                                   pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        t.decoder = decoders.ByteLevel()
        t.train(files, trainers.BpeTrainer(vocab_size=1500, special_tokens=specials, initial_alphabet=alphabet, show_progress=False))
        out[name] = json.loads(t.to_str())
    t = Tokenizer(models.BPE())
    t.normalizer = normalizers.NFKC()
    t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                               pre_tokenizers.Punctuation("contiguous"),
                                               pre_tokenizers.Split(" ", "merged_with_next"),
                                               pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    t.decoder = decoders.ByteLevel()
    t.train(files, trainers.BpeTrainer(vocab_size=1000, special_tokens=["</s>"], initial_alphabet=alphabet, show_progress=False))
    out["nfkc"] = json.loads(t.to_str())
    # the behaviours Llama-3 and Qwen2 do not use, on nfkc's model
    mix = Tokenizer.from_str(json.dumps(out["nfkc"]))
    mix.normalizer = normalizers.NFD()
    mix.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"[ \t]+"), "removed"),
        pre_tokenizers.Split(Regex(r"[aeiouAEIOU]"), "merged_with_previous"),
        pre_tokenizers.Split(Regex(r"\p{N}"), "contiguous"),
        pre_tokenizers.Split(Regex(r"[.,;:!?]"), "merged_with_next"),
        pre_tokenizers.Split(Regex(r"e"), "merged_with_previous", invert=True),   # "the" -> "th", "e"
        pre_tokenizers.Split(Regex(r"t+|(?=h)"), "merged_with_next"),   # empty matches before "h"
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    out["split_mix"] = json.loads(mix.to_str())
    os.remove(code)
    return out


def write_split(name, d, shared, nchunks):
    js = json.dumps(d, ensure_ascii=False, separators=(",", ":"))
    path = os.path.join(OUT, name + ".json")
    with open(path, "w", encoding="utf-8") as f:
        f.write(js)
    full = Tokenizer.from_str(js)
    ref = Tokenizer.from_str(json.dumps(dict(d, added_tokens=[], post_processor=None)))
    w = CaseWriter(os.path.join(OUT, name + ".cases"),
                   "%s.json: ids from tokenizers %s (without added_tokens), decoded text from its decoder; inv_* cases\n"
                   "and the rule for invalid UTF-8: see scripts/make_tokenizer_fixtures.py. Generated by that script; do not edit."
                   % (name, tokenizers.__version__))
    cases = CASES[:40] + SPLIT_CASES + fortune_cases() + assigned_random_cases(20, 11)
    for cname, text in cases:
        ids = ref.encode(text, add_special_tokens=False).ids
        if split_bytes_reference(ref, text.encode())[0] != ids:
            sys.exit("%s: the invalid-UTF-8 reference disagrees with tokenizers on case %s" % (name, cname))
        w.text(cname, text.encode())
        w.ids(ids, full.decode(ids, skip_special_tokens=False).encode(), text.encode())
    for cname, data in INVALID_SPLIT:
        ids, dec = split_bytes_reference(ref, data)
        w.text(cname, data)
        w.ids(ids, dec, data)
    rng = random.Random(5)
    for k in range(6):
        data = bytes(rng.randrange(256) for _ in range(rng.randint(1, 120)))
        ids, dec = split_bytes_reference(ref, data)
        w.text("inv_random%d" % k, data)
        w.ids(ids, dec, data)
    for path, off, data in chunks(shared)[:nchunks]:
        ids = ref.encode(data.decode(), add_special_tokens=False).ids
        w.file(path, off, len(data))
        w.ids(ids, full.decode(ids, skip_special_tokens=False).encode(), data)
    for fname in TEXT_FILES:
        data = open(os.path.join(shared, "data/text", fname), "rb").read()
        ids = ref.encode(data.decode(), add_special_tokens=False).ids
        w.file("text/" + fname, 0, -1)
        w.ids(ids, full.decode(ids, skip_special_tokens=False).encode(), data, hashed=True)
    w.close()
    print("%s.json: %d bytes, %s.cases: %d cases" % (name, len(js.encode()), name, w.n))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", default=os.environ.get("HGRN2_SHARED", "../shared"))
    ap.add_argument("--only", default="", help="comma-separated names of the files to regenerate (default: all)")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else None
    want = lambda *names: only is None or any(n in only for n in names)
    os.makedirs(OUT, exist_ok=True)
    if want("gpt2"):
        write_gpt2(args.shared)
    if want("sp_llama", "sp_meta", "bl", "bl_prefix"):
        sp, bl = train(args.shared)
        for name, (d, ascii_only) in variants(sp, bl).items():
            if want(name):
                write_hf(name, d, ascii_only, args.shared)
    if want("llama3", "qwen2", "nfkc", "split_mix"):
        for name, d in train_split(args.shared).items():
            if want(name):
                write_split(name, d, args.shared, 0 if name == "split_mix" else 3)


if __name__ == "__main__":
    main()
