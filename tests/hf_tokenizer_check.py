#!/usr/bin/env python3
"""Hugging Face `tokenizers` loads the tokenizer of an `hgrn2 export` folder and encodes like hgrn2.

  .venv/bin/python tests/hf_tokenizer_check.py --hgrn2 ./hgrn2 --export DIR --tokenizer SPEC [--bytes] FILE...

DIR is the export's folder; SPEC the tokenizer its run was trained with (as `hgrn2 tokenize --tokenizer`
takes it); FILE... real texts, each encoded whole. For every text (the files, multilingual snippets, edge
cases, seeded random strings):

- tokenizers.Tokenizer.from_file(DIR/tokenizer.json).encode(text, add_special_tokens=False) gives the ids
  `hgrn2 tokenize --tokenizer SPEC` prints for the text's UTF-8 bytes, and decodes back to the text;
- `hgrn2 tokenize --tokenizer DIR` (what `hgrn2 import` of the folder uses) gives them too.

--bytes: the ids must also be the text's UTF-8 bytes (the byte tokenizer).

The special tokens named in tokenizer_config.json and special_tokens_map.json must be the ids of config.json
and generation_config.json. Text that spells a special token is not compared: Hugging Face matches it as the
special token, hgrn2 encodes it as ordinary text; that difference itself is checked.

Exits 1 naming each mismatch; prints 'N passed, M failed' last.
"""
import argparse
import concurrent.futures
import json
import os
import random
import subprocess
import sys

try:
    import tokenizers
except ImportError:
    sys.exit("tests/hf_tokenizer_check.py: the Python package tokenizers is missing: `make setup` installs it into .venv")

SNIPPETS = [
    "", " ", "  ", "x", " x", "  leading spaces", "trailing spaces   ", "\n", "\n\n\n", "\t", "\t\ttabs\tand spaces  \t",
    "\r\n windows\r\nlines\r\n", "héllo wörld\n\t  x", "Hello, world! How's it going? I'll say we've done it.",
    "DON'T SHOUT'S 'quoted' \"double\"", "numbers 12345 3.14159 1,000,000 -42 0x1F 2024-06-01",
    "Ünïcödé façade naïve coöperate résumé", "Привет, мир! Съешь же ещё этих мягких французских булок.",
    "Γειά σου Κόσμε", "日本語のテキストと漢字、カタカナ。", "中文文本，标点符号。", "한국어 텍스트입니다",
    "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "สวัสดีชาวโลก", "emoji 👍🏽 family 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵 😀😀😀",
    "e\u0301 combining a\u0308\u0304", "zero\u200bwidth\u200djoiner\ufeffbom", "nbsp\u00a0here\u2003em\u3000ideographic",
    "line\u2028separator\u2029para", "\x00nul\x01\x02\x1f\x7f controls", "\ufffd replacement \U0010ffff max \ue000 private",
    "     many     spaces     between     ", "tab\t\t\tnewline\n\n  \n x", "a" * 3000, " " * 200 + "x",
    "code: def f(x):\n    return x**2  # square\n", "<html><body>&amp; &lt;tag&gt;</body></html>",
    "mixed: abc123DEF456 ghi_jkl-mno.pqr",
]

# characters the random strings are drawn from: letters, digits, spaces of several kinds, punctuation,
# accents, other scripts, emoji and their modifiers, combining marks
POOL = (list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") + list(" \t\n\r\x0b\x0c") * 4
        + list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + list("éèàçñüßøÆœ") + list("Жжйё") + list("日本語中文한")
        + list("\u0301\u0308\u200d\ufe0f") + ["\U0001F600", "\U0001F44D", "\U0001F3FD", "\u00a0", "\u2003", "\u3000"]
        + ["'s", "'t", "'re", "'ll", "'d", "'m", "'ve"])


def random_strings(n, seed=1234):
    rng = random.Random(seed)
    return ["".join(rng.choice(POOL) for _ in range(rng.randint(1, 60))) for _ in range(n)]


def hgrn2_ids(hgrn2, spec, text):
    r = subprocess.run([hgrn2, "tokenize", "--tokenizer", spec], input=text.encode("utf-8"), capture_output=True)
    if r.returncode != 0:
        raise RuntimeError(f"hgrn2 tokenize --tokenizer {spec} failed: {r.stderr.decode(errors='replace').strip()}")
    return [int(x) for x in r.stdout.split()]


def first_difference(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hgrn2", required=True)
    ap.add_argument("--export", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--bytes", action="store_true")
    ap.add_argument("--random", type=int, default=24, help="random strings (default 24)")
    ap.add_argument("files", nargs="*")
    a = ap.parse_args()
    passed = failed = 0

    def check(cond, what):
        nonlocal passed, failed
        if cond:
            passed += 1
        else:
            failed += 1
            print(f"FAIL: {what}")
        return cond

    tok = tokenizers.Tokenizer.from_file(os.path.join(a.export, "tokenizer.json"))
    load = lambda name: json.load(open(os.path.join(a.export, name), encoding="utf-8"))
    config, gen = load("config.json"), load("generation_config.json")
    tconf, smap = load("tokenizer_config.json"), load("special_tokens_map.json")

    # the special tokens: the same ids everywhere, and the names the tokenizer files give them
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        check(gen.get(key) == config.get(key), f"generation_config.json {key} {gen.get(key)} != config.json's {config.get(key)}")
    check(tconf.get("tokenizer_class") == "PreTrainedTokenizerFast", "tokenizer_config.json tokenizer_class")
    check(tconf.get("add_bos_token") is False and tconf.get("add_eos_token") is False, "add_bos_token/add_eos_token false")
    check(tconf.get("clean_up_tokenization_spaces") is False, "clean_up_tokenization_spaces false")
    check(isinstance(tconf.get("model_max_length"), int), "model_max_length an integer")
    for kind in ("bos", "eos", "unk"):
        name = tconf.get(f"{kind}_token")
        check(smap.get(f"{kind}_token") == name, f"special_tokens_map.json {kind}_token {smap.get(kind + '_token')!r} != {name!r}")
        want = config.get(f"{kind}_token_id")
        if name is not None:
            check(tok.token_to_id(name) is not None, f"{kind}_token {name!r} is not a token")
            if kind != "unk":
                check(tok.token_to_id(name) == want, f"{kind}_token {name!r} is id {tok.token_to_id(name)}, config.json says {want}")
        elif kind != "unk":
            check(want is None, f"config.json has {kind}_token_id {want} but tokenizer_config.json no {kind}_token")

    # the texts; those that spell a special token are left out of the comparison
    specials = [t.content for t in tok.get_added_tokens_decoder().values() if t.special]
    texts = [(f, open(f, encoding="utf-8").read()) for f in a.files]
    texts += [(f"snippet {i} {s[:24]!r}", s) for i, s in enumerate(SNIPPETS)]
    texts += [(f"random {i} {s[:24]!r}", s) for i, s in enumerate(random_strings(a.random))]
    texts = [(n, s) for n, s in texts if not any(sp in s for sp in specials)]

    def run(item):
        name, text = item
        return name, text, hgrn2_ids(a.hgrn2, a.tokenizer, text), hgrn2_ids(a.hgrn2, a.export, text)

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        for name, text, want, imported in pool.map(run, texts):
            got = tok.encode(text, add_special_tokens=False).ids
            if not check(got == want, f"{name}: Hugging Face gives {len(got)} ids, hgrn2 {len(want)}"):
                i = first_difference(got, want)
                print(f"    first difference at id {i}: HF {got[max(0, i - 3):i + 4]} hgrn2 {want[max(0, i - 3):i + 4]}")
            check(imported == want, f"{name}: hgrn2 with the exported folder gives other ids than with {a.tokenizer}")
            if a.bytes:
                check(got == list(text.encode("utf-8")), f"{name}: the byte tokenizer's ids are not the UTF-8 bytes")
            back = tok.decode(got, skip_special_tokens=False)
            check(back == text, f"{name}: decodes to another text ({len(back)} characters, not {len(text)})")
    print(f"compared {len(texts)} texts ({sum(len(t.encode('utf-8')) for _, t in texts)} bytes) with hgrn2 tokenize")

    # special-token text: Hugging Face matches the token, hgrn2 does not (docs/tokenizers.md)
    for sp in specials:
        text = f"a{sp}b"
        got = tok.encode(text, add_special_tokens=False).ids
        want = hgrn2_ids(a.hgrn2, a.tokenizer, text)
        sid = tok.token_to_id(sp)
        check(sid in got and sid not in want,
              f"{sp!r}: expected Hugging Face to match it as id {sid} and hgrn2 to spell it out: HF {got}, hgrn2 {want}")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
