#!/usr/bin/env bash
# The Hugging Face workflow end to end: a model trained here with a tokenizer.json is exported, imported
# back, sampled with --tokenizer and evaluated; GPT-2 tokenizer files travel under transformers' names.
. "$(dirname "$0")/lib.sh"
H=./hgrn2
export OMP_NUM_THREADS=2
TOK=tests/fixtures/tokenizer/bl.json
expect 0 "prepare with a tokenizer.json" -- $H prepare --task text --input "$SHARED/data/text/tinyshakespeare.txt" \
    --tokenizer "$TOK" --out "$TMP/data" --val-fraction 0.02
TINY=(--task text --dim 32 --layers 2 --expand-ratio 8 --batch 2 --seq-len 32 --steps 6 --eval-every 0 --eval-batches 2)
expect 0 "train 6 steps" -- $H train "${TINY[@]}" --data "$TMP/data" --out "$TMP/run"
expect 0 "export" -- $H export --ckpt "$TMP/run/model.ckpt" --hf "$TMP/hf"
for f in config.json model.safetensors tokenizer.json; do
    checks=$((checks + 1)); [ -s "$TMP/hf/$f" ] && ok "export wrote $f" || fail "export wrote no $f"
done
grep -q '"model_type": "hgrn2"' "$TMP/hf/config.json" || fail "config.json lacks model_type hgrn2"
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
[ -s "$TMP/ghf/vocab.json" ] && [ -s "$TMP/ghf/merges.txt" ] && ok "GPT-2 files exported as vocab.json and merges.txt" || fail "GPT-2 files missing"
grep -q '"eos_token_id": 50256' "$TMP/ghf/config.json" || fail "config.json lacks GPT-2's end-of-text id"
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
