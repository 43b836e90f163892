#!/usr/bin/env bash
# The Hugging Face workflow end to end: a model trained here with a tokenizer.json is exported, imported
# back, sampled with --tokenizer and evaluated; GPT-2 and byte runs export a tokenizer.json of their own (GPT-2's
# files also travel under transformers' names), and every export its tokenizer and generation configs.
. "$(dirname "$0")/lib.sh"
H=./hgrn2
export OMP_NUM_THREADS=2
# jval FILE EXPR: EXPR (Python, over the document d) as JSON; fails when FILE is not valid JSON
jval() { python3 -c 'import json, sys; d = json.load(open(sys.argv[1], encoding="utf-8")); print(json.dumps(eval(sys.argv[2])))' "$@"; }
# jcheck FILE EXPR WANT: the value of EXPR in FILE is WANT (as JSON)
jcheck() {
    local got; checks=$((checks + 1))
    got=$(jval "$1" "$2" 2>&1)
    [ "$got" = "$3" ] && ok "$(basename "$1"): $2 = $3" || fail "$1: $2 is $got, expected $3"
}
# the files an export with a tokenizer writes, each valid JSON (model.safetensors aside)
EXPORTED="config.json generation_config.json tokenizer.json tokenizer_config.json special_tokens_map.json"
exported() {
    local f; for f in $EXPORTED; do
        checks=$((checks + 1)); jval "$1/$f" 1 >/dev/null 2>&1 && ok "$1/$f is valid JSON" || fail "$1/$f is missing or not JSON"
    done
}
# the ids `hgrn2 tokenize` gives every shared text, the same with both tokenizers
same_ids() {
    local f a b n=0; checks=$((checks + 1))
    for f in "$SHARED"/data/text/*; do
        a=$($H tokenize --tokenizer "$1" < "$f" | cksum); b=$($H tokenize --tokenizer "$2" < "$f" | cksum)
        [ "$a" = "$b" ] || { fail "$f: $1 and $2 give different ids"; return; }
        n=$((n + 1))
    done
    ok "$2 encodes the $n shared texts as $1 does"
}
TOK=tests/fixtures/tokenizer/bl.json
expect 0 "prepare with a tokenizer.json" -- $H prepare --task text --input "$SHARED/data/text/tinyshakespeare.txt" \
    --tokenizer "$TOK" --out "$TMP/data" --val-fraction 0.02
TINY=(--task text --dim 32 --layers 2 --expand-ratio 8 --batch 2 --seq-len 32 --steps 6 --eval-every 0 --eval-batches 2)
expect 0 "train 6 steps" -- $H train "${TINY[@]}" --data "$TMP/data" --out "$TMP/run"
expect 0 "export" -- $H export --ckpt "$TMP/run/model.ckpt" --hf "$TMP/hf"
checks=$((checks + 1)); [ -s "$TMP/hf/model.safetensors" ] && ok "export wrote model.safetensors" || fail "export wrote no model.safetensors"
exported "$TMP/hf"
jcheck "$TMP/hf/config.json" 'd["model_type"]' '"hgrn2"'
# a tokenizer.json run: its file as it is; <|endoftext|> (id 0) ends a text, nothing begins one
checks=$((checks + 1)); cmp -s "$TOK" "$TMP/hf/tokenizer.json" && ok "tokenizer.json copied as it is" || fail "tokenizer.json differs from $TOK"
for f in config.json generation_config.json; do
    jcheck "$TMP/hf/$f" '[d["bos_token_id"], d["eos_token_id"], d["pad_token_id"]]' '[null, 0, null]'
done
jcheck "$TMP/hf/tokenizer_config.json" '[d["tokenizer_class"], d.get("bos_token"), d["eos_token"], d.get("unk_token"), d["add_bos_token"], d["add_eos_token"], d["clean_up_tokenization_spaces"]]' \
    '["PreTrainedTokenizerFast", null, "<|endoftext|>", null, false, false, false]'
jcheck "$TMP/hf/tokenizer_config.json" 'd["model_max_length"]' 1000000000000000019884624838656
jcheck "$TMP/hf/special_tokens_map.json" 'd' '{"eos_token": "<|endoftext|>"}'
expect 0 "import" -- $H import --hf "$TMP/hf" --out "$TMP/imported.ckpt"
grep -q "tokenizer: /" "$TMP/out" || fail "import did not pick up tokenizer.json"
checks=$((checks + 1))
grep -q "^imported .*: [0-9]* tensors, [0-9]* parameters (.*): vocabulary 1500, dim 32, 2 layers" "$TMP/out" && ! grep -q "|" "$TMP/out" \
    && ok "import says what it read in a sentence" || { fail "import's summary:"; cat "$TMP/out"; }
expect 1 "eval of an imported model without --data" -- $H eval --ckpt "$TMP/imported.ckpt"
expect_msg "records no data directory (an imported model): pass --data DIR"
expect 0 "sample the imported model with --tokenizer" -- $H sample --ckpt "$TMP/imported.ckpt" --tokenizer "$TMP/hf" \
    --prompt "ROMEO:" -n 12 --seed 1
checks=$((checks + 1)); grep -q "^ROMEO:" "$TMP/out" && ok "sample streams text after the prompt" || fail "no text from sample"
expect 0 "eval the imported model with --tokenizer" -- $H eval --ckpt "$TMP/imported.ckpt" --data "$TMP/data" \
    --max-batches 2 --tokenizer "$TMP/hf"
checks=$((checks + 1)); grep -q "bits per byte" "$TMP/out" && ok "bits per byte from a BPE tokenizer" || fail "no bits per byte"
# the round trip keeps the function: the same loss on the same ids
printf '5 17 99 240 3 12 7 1000 45\n' > "$TMP/ids.txt"
expect 0 "eval --ids, trained checkpoint" -- $H eval --ckpt "$TMP/run/model.ckpt" --ids "$TMP/ids.txt"
a=$(tail -n 1 "$TMP/out")
expect 0 "eval --ids, exported and imported" -- $H eval --ckpt "$TMP/imported.ckpt" --ids "$TMP/ids.txt"
checks=$((checks + 1)); [ "$a" = "$(tail -n 1 "$TMP/out")" ] && ok "same loss after export and import: $a" || fail "loss changed: $a vs $(tail -n 1 "$TMP/out")"
expect 1 "sample with a tokenizer larger than the model" -- $H sample --ckpt "$TMP/imported.ckpt" \
    --tokenizer "$SHARED/data/tokenizers/gpt2" --prompt hi -n 2; expect_msg "ids but the model only"
# GPT-2 files go out as vocab.json and merges.txt
head -c 200000 "$SHARED/data/text/tinyshakespeare.txt" > "$TMP/small.txt"
expect 0 "prepare with GPT-2" -- $H prepare --task text --input "$TMP/small.txt" --tokenizer "$SHARED/data/tokenizers/gpt2" \
    --out "$TMP/gdata" --val-fraction 0.05
expect 0 "train 2 steps with GPT-2" -- $H train --task text --data "$TMP/gdata" --dim 16 --layers 1 --expand-ratio 8 \
    --batch 2 --seq-len 16 --steps 2 --eval-every 0 --out "$TMP/grun"
expect 0 "export a GPT-2 run" -- $H export --ckpt "$TMP/grun/model.ckpt" --hf "$TMP/ghf"
checks=$((checks + 1))
cmp -s "$SHARED/data/tokenizers/gpt2/encoder.json" "$TMP/ghf/vocab.json" && cmp -s "$SHARED/data/tokenizers/gpt2/vocab.bpe" "$TMP/ghf/merges.txt" \
    && ok "GPT-2 files exported as vocab.json and merges.txt" || fail "GPT-2 files missing or changed"
exported "$TMP/ghf"
# GPT-2: <|endoftext|> (50256) ends and begins texts and stands for unknown, as in GPT-2's own files
for f in config.json generation_config.json; do
    jcheck "$TMP/ghf/$f" '[d["bos_token_id"], d["eos_token_id"], d["pad_token_id"]]' '[50256, 50256, null]'
done
jcheck "$TMP/ghf/tokenizer_config.json" '[d["tokenizer_class"], d["bos_token"], d["eos_token"], d["unk_token"], d["add_bos_token"], d["add_eos_token"]]' \
    '["PreTrainedTokenizerFast", "<|endoftext|>", "<|endoftext|>", "<|endoftext|>", false, false]'
jcheck "$TMP/ghf/special_tokens_map.json" 'd' '{"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}'
# tokenizer.json: encoder.json's vocabulary, vocab.bpe's merges in order, <|endoftext|> a special added token
jcheck "$TMP/ghf/tokenizer.json" '[d["model"]["type"], d["model"]["vocab"] == json.load(open(sys.argv[1][:-14] + "vocab.json", encoding="utf-8")), d["model"]["unk_token"]]' \
    '["BPE", true, null]'
jcheck "$TMP/ghf/tokenizer.json" 'd["model"]["merges"] == open(sys.argv[1][:-14] + "merges.txt", encoding="utf-8").read().split("\n")[1:50001] and len(d["model"]["merges"])' 50000
jcheck "$TMP/ghf/tokenizer.json" '[(t["id"], t["content"], t["special"]) for t in d["added_tokens"]]' '[[50256, "<|endoftext|>", true]]'
jcheck "$TMP/ghf/tokenizer.json" '[d["pre_tokenizer"], d["decoder"]["type"], d["post_processor"]["type"]]' \
    '[{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}, "ByteLevel", "ByteLevel"]'
# import takes the folder's tokenizer.json: it must encode as the GPT-2 files, and the imported model sample as the run
same_ids "$SHARED/data/tokenizers/gpt2" "$TMP/ghf"
expect 0 "import the GPT-2 export" -- $H import --hf "$TMP/ghf" --out "$TMP/gimported.ckpt"
checks=$((checks + 1)); grep -q "^tokenizer: /.*ghf$" "$TMP/out" && ok "import takes the exported tokenizer.json" || fail "import's tokenizer: $(cat "$TMP/out")"
G=(--prompt "ROMEO: Is it thou, fair Juliet?" --temperature 0 -n 12 --ignore-eos --ids)
expect 0 "greedy ids of the GPT-2 run" -- $H sample --ckpt "$TMP/grun/model.ckpt" "${G[@]}"
a=$(cat "$TMP/out")
expect 0 "greedy ids of its import, with the exported tokenizer" -- $H sample --ckpt "$TMP/gimported.ckpt" "${G[@]}"
checks=$((checks + 1)); [ -n "$a" ] && [ "$a" = "$(cat "$TMP/out")" ] && ok "the same ids after export and import: $a" || fail "ids changed: $a vs $(cat "$TMP/out")"
# files in GPT-2's format whose merges Hugging Face applies otherwise than hgrn2: "abc" is a token, so hgrn2
# (tiktoken's rule) takes the piece "abc" whole, while the listed merges make "a" "bc" of it. Export warns.
mkdir -p "$TMP/oddgpt2"
python3 - "$TMP/oddgpt2" <<'PY'
import json, sys
# GPT-2's byte-level alphabet: printable Latin-1 bytes stand for themselves, the others for U+0100 on
keep = [b for b in range(256) if 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or 0xAE <= b <= 0xFF]
rest = [b for b in range(256) if b not in keep]
char = {b: chr(b) for b in keep} | {b: chr(256 + i) for i, b in enumerate(rest)}
enc = {char[b]: b for b in range(256)} | {"bc": 256, "ab": 257, "abc": 258, "<|endoftext|>": 259}
json.dump(enc, open(sys.argv[1] + "/encoder.json", "w", encoding="utf-8"), ensure_ascii=False)
open(sys.argv[1] + "/vocab.bpe", "w").write("#version: 0.2\nb c\na b\nab c\n")
PY
printf 'abc abcabc bc ab\n%.0s' $(seq 200) > "$TMP/abc.txt"
expect 0 "prepare with the odd GPT-2 files" -- $H prepare --task text --input "$TMP/abc.txt" --tokenizer "$TMP/oddgpt2" \
    --out "$TMP/odata" --val-fraction 0.05
expect 0 "train 1 step with them" -- $H train --task text --data "$TMP/odata" --dim 16 --layers 1 --expand-ratio 8 \
    --batch 2 --seq-len 16 --steps 1 --eval-every 0 --out "$TMP/orun"
expect 0 "export warns" -- $H export --ckpt "$TMP/orun/model.ckpt" --hf "$TMP/ohf"
expect_msg "warning: .*tokenizer.json encodes 1 of the 260 token texts otherwise than .*oddgpt2 (the first: id 258)"
checks=$((checks + 1))
[ "$(printf abc | $H tokenize --tokenizer "$TMP/oddgpt2")" = 258 ] && [ "$(printf abc | $H tokenize --tokenizer "$TMP/ohf")" = "97 256" ] \
    && ok "the GPT-2 files take abc whole, the exported tokenizer.json as a + bc" || fail "abc: the two tokenizers agree or differ otherwise"
expect 0 "no warning for the released GPT-2 files" -- $H export --ckpt "$TMP/grun/model.ckpt" --hf "$TMP/ghf2"
checks=$((checks + 1)); [ ! -s "$TMP/err" ] && ok "export is silent" || fail "export says: $(cat "$TMP/err")"
# the byte tokenizer: 256 tokens, token i the alphabet character of byte i, no merges, no special tokens
expect 0 "prepare with bytes" -- $H prepare --task text --input "$TMP/small.txt" --tokenizer byte --out "$TMP/bdata" --val-fraction 0.05
expect 0 "train 1 step with bytes" -- $H train --task text --data "$TMP/bdata" --dim 16 --layers 1 --expand-ratio 8 \
    --batch 2 --seq-len 16 --steps 1 --eval-every 0 --out "$TMP/brun"
expect 0 "export a byte run" -- $H export --ckpt "$TMP/brun/model.ckpt" --hf "$TMP/bhf"
exported "$TMP/bhf"
for f in config.json generation_config.json; do
    jcheck "$TMP/bhf/$f" '[d["bos_token_id"], d["eos_token_id"], d["pad_token_id"]]' '[null, null, null]'
done
jcheck "$TMP/bhf/tokenizer_config.json" '[d["tokenizer_class"], "bos_token" in d, "eos_token" in d, "unk_token" in d]' '["PreTrainedTokenizerFast", false, false, false]'
jcheck "$TMP/bhf/special_tokens_map.json" 'd' '{}'
jcheck "$TMP/bhf/tokenizer.json" '[sorted(d["model"]["vocab"].values()) == list(range(256)), d["model"]["vocab"]["Ġ"], d["model"]["vocab"]["a"], d["model"]["vocab"]["Ā"], d["model"]["merges"], d["added_tokens"]]' \
    '[true, 32, 97, 0, [], []]'
jcheck "$TMP/bhf/tokenizer.json" '[d["pre_tokenizer"]["type"], d["pre_tokenizer"]["use_regex"], d["pre_tokenizer"]["add_prefix_space"], d["decoder"]["type"]]' '["ByteLevel", false, false, "ByteLevel"]'
same_ids byte "$TMP/bhf"
# --text-field: the member that holds a record's text
printf '{"id": 1, "content": "hello world"}\n{"id": 2, "content": "more"}\n{"id": 3, "text": "not this"}\n' > "$TMP/tf.jsonl"
expect 0 "prepare --text-field content" -- $H prepare --task pile --input "$TMP/tf.jsonl" --tokenizer byte --out "$TMP/tf" \
    --text-field content --val-fraction 0
checks=$((checks + 1))
grep -q "2 documents, 15 tokens" "$TMP/out" && grep -q "no member named by --text-field" "$TMP/err" \
    && ok "--text-field reads that member (15 bytes of text) and skips records without it" || fail "--text-field: $(cat "$TMP/out" "$TMP/err")"
expect 2 "--text-field with --task text" -- $H prepare --task text --input "$TMP/tf.jsonl" --tokenizer byte --out "$TMP/tf2" \
    --text-field content; expect_msg "goes with --task pile only"
# --input -: standard input, the same shards as the file
head -n 2 "$TMP/tf.jsonl" | $H prepare --task pile --input - --tokenizer byte --out "$TMP/stdin" --text-field content \
    --val-fraction 0 > "$TMP/out" 2> "$TMP/err"
head -n 2 "$TMP/tf.jsonl" > "$TMP/tf2.jsonl"
expect 0 "the same from a file" -- $H prepare --task pile --input "$TMP/tf2.jsonl" --tokenizer byte --out "$TMP/fromfile" \
    --text-field content --val-fraction 0
checks=$((checks + 1))
cmp -s "$TMP/stdin/train_000000.shard" "$TMP/fromfile/train_000000.shard" && ok "--input - reads standard input" || fail "--input - differs"
echo x | $H prepare --task text --input - - --tokenizer byte --out "$TMP/twice" > "$TMP/out" 2> "$TMP/err"; rc=$?
checks=$((checks + 1))
[ $rc = 1 ] && grep -q "can be given as an input once" "$TMP/err" && ok "standard input twice is refused" || fail "standard input twice: exit $rc, $(cat "$TMP/err")"
# sampling ends at the end-of-text token: a model that learnt "hi<|endoftext|>hi<|endoftext|>..."
for i in $(seq 2000); do echo '{"text": "hi"}'; done > "$TMP/hi.jsonl"
expect 0 "prepare documents of 'hi'" -- $H prepare --task pile --input "$TMP/hi.jsonl" --tokenizer "$SHARED/data/tokenizers/gpt2" \
    --out "$TMP/hidata" --val-fraction 0.05
expect 0 "train on them" -- $H train --task text --data "$TMP/hidata" --dim 16 --layers 1 --expand-ratio 8 --batch 4 \
    --seq-len 16 --steps 150 --lr 1e-2 --eval-every 0 --out "$TMP/hirun"
S=(sample --ckpt "$TMP/hirun/model.ckpt" --prompt hi --temperature 0 -n 6)
expect 0 "greedy ids, ending at end-of-text" -- $H "${S[@]}" --ids
checks=$((checks + 1)); [ -z "$(tr -d ' \n' < "$TMP/out")" ] && ok "the sample ends at once at end-of-text, which is not printed" || fail "sample went past end-of-text: $(cat "$TMP/out")"
expect 0 "greedy ids, --ignore-eos" -- $H "${S[@]}" --ids --ignore-eos
checks=$((checks + 1)); [ "$(cat "$TMP/out")" = "50256 5303 50256 5303 50256 5303" ] && ok "--ignore-eos goes on" || fail "--ignore-eos: $(cat "$TMP/out")"
expect 0 "greedy text, --ignore-eos --stop hi" -- $H "${S[@]}" --ignore-eos --stop hi
checks=$((checks + 1)); [ "$(cat "$TMP/out")" = "hi<|endoftext|>hi" ] && ok "--stop ends the sample after its string" || fail "--stop: $(cat "$TMP/out")"
expect 0 "three samples" -- $H "${S[@]}" --ids --ignore-eos --num-samples 3 -n 2
checks=$((checks + 1)); [ "$(cat "$TMP/out")" = "$(printf '50256 5303\n50256 5303\n50256 5303')" ] && ok "--num-samples: each from the prompt's state" || fail "--num-samples: $(cat "$TMP/out")"
expect 2 "export --dtype f8" -- $H export --ckpt "$TMP/grun/model.ckpt" --hf "$TMP/x" --dtype f8
expect 2 "import without --out" -- $H import --hf "$TMP/hf"
expect 1 "import of a directory without a model" -- $H import --hf "$TMP" --out "$TMP/x.ckpt"
finish
