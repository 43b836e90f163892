#!/usr/bin/env bash
# Batched generation (sample --batch, --prompts) on tiny models of each architecture, and bench --generate: a
# sequence's tokens do not depend on the batch it is decoded in (bit for bit on the CPU, at temperature > 0),
# prompts of different lengths decoded together give what each gives alone, a row that ends (end-of-text,
# --stop, its token budget) ends alone, and the refusals.
. "$(dirname "$0")/lib.sh"
H=./hgrn2
export OMP_NUM_THREADS=2
D="$TMP/data"
expect 0 "prepare tinyshakespeare (byte)" -- $H prepare --task text --input "$SHARED/data/text/tinyshakespeare.txt" \
    --tokenizer byte --out "$D" --val-fraction 0.02
SMALL=(--task text --data "$D" --dim 32 --layers 2 --batch 4 --seq-len 64 --lr 3e-3 --warmup 5 --eval-every 0 --steps 20)
expect 0 "train a tiny hgrn2" -- $H train "${SMALL[@]}" --expand-ratio 8 --out "$TMP/hgrn2"
expect 0 "train a tiny hgrn1" -- $H train "${SMALL[@]}" --arch hgrn1 --out "$TMP/hgrn1"
expect 0 "train a tiny transformer" -- $H train "${SMALL[@]}" --arch transformer --heads 2 --out "$TMP/transformer"

# prompts of 6, 9, 1, 8, 2 and 6 bytes (a \r before a newline is dropped; the last line has no newline)
printf 'ROMEO:\nJULIET: O\nA\r\nthe king\nAb\nKING: ' > "$TMP/prompts.txt"
for arch in hgrn2 hgrn1 transformer; do
    C="$TMP/$arch/model.ckpt"
    # 5 samples of one prompt at temperature > 0: batches of 1, 3 (a partial second round), 4 and 8
    S=(sample --ckpt "$C" --prompt "ROMEO:" -n 30 --temperature 1.2 --top-k 50 --seed 11 --num-samples 5)
    for b in 1 3 4 8; do
        expect 0 "$arch: 5 samples, --batch $b" -- $H "${S[@]}" --batch $b
        cp "$TMP/out" "$TMP/s$b"
    done
    checks=$((checks + 1))
    cmp -s "$TMP/s1" "$TMP/s3" && cmp -s "$TMP/s1" "$TMP/s4" && cmp -s "$TMP/s1" "$TMP/s8" && [ "$(grep -c '^---$' "$TMP/s1")" = 4 ] \
        && ok "$arch: the 5 samples are the same bytes at --batch 1, 3, 4 and 8" || fail "$arch: the samples depend on --batch"
    # the first sequence draws from the stream a single sample draws from
    expect 0 "$arch: one sample" -- $H sample --ckpt "$C" --prompt "ROMEO:" -n 30 --temperature 1.2 --top-k 50 --seed 11
    checks=$((checks + 1))
    [ "$(sed -n 1p "$TMP/out")" = "$(sed -n 1p "$TMP/s1")" ] && [ -n "$(sed -n 1p "$TMP/out")" ] \
        && ok "$arch: the first of the samples is the single sample" || fail "$arch: the first sample differs from a single one"
    # --prompts: 6 prompts of different lengths x 2 samples, ids, then text with --stop and a repetition penalty
    P=(sample --ckpt "$C" --prompts "$TMP/prompts.txt" -n 24 --temperature 0.9 --seed 4 --num-samples 2)
    for b in 1 3 4 16; do
        expect 0 "$arch: --prompts, --batch $b, ids" -- $H "${P[@]}" --batch $b --ids
        cp "$TMP/out" "$TMP/p$b"
        expect 0 "$arch: --prompts, --batch $b, text, --stop, --repetition-penalty" -- $H "${P[@]}" --batch $b --stop "e" \
            --repetition-penalty 1.3
        cp "$TMP/out" "$TMP/t$b"
    done
    checks=$((checks + 1))
    [ "$(wc -l < "$TMP/p1")" = 12 ] && cmp -s "$TMP/p1" "$TMP/p3" && cmp -s "$TMP/p1" "$TMP/p4" && cmp -s "$TMP/p1" "$TMP/p16" \
        && ok "$arch: 12 lines of ids, the same at --batch 1, 3, 4 and 16" || fail "$arch: --prompts ids depend on --batch"
    checks=$((checks + 1))
    [ "$(grep -c '^---$' "$TMP/t1")" = 11 ] && grep -q "^JULIET: O" "$TMP/t1" && cmp -s "$TMP/t1" "$TMP/t3" && cmp -s "$TMP/t1" "$TMP/t4" \
        && cmp -s "$TMP/t1" "$TMP/t16" && ok "$arch: 12 texts in prompt order, the same at --batch 1, 3, 4 and 16" \
        || fail "$arch: --prompts text depends on --batch"
    # greedy: each prompt decoded together with the others gives what it gives alone
    expect 0 "$arch: --prompts greedy, --batch 4" -- $H sample --ckpt "$C" --prompts "$TMP/prompts.txt" -n 20 --temperature 0 \
        --batch 4 --ids
    cp "$TMP/out" "$TMP/g"
    n=0; same=0
    while IFS= read -r line; do
        n=$((n + 1))
        $H sample --ckpt "$C" --prompt "${line%$'\r'}" -n 20 --temperature 0 --ids > "$TMP/alone" 2> /dev/null
        [ "$(cat "$TMP/alone")" = "$(sed -n ${n}p "$TMP/g")" ] && same=$((same + 1))
    done < <(cat "$TMP/prompts.txt"; echo)
    checks=$((checks + 1))
    [ $n = 6 ] && [ $same = 6 ] && ok "$arch: each of 6 prompts decoded in batches of 4 gives its greedy ids alone" \
        || fail "$arch: $same of $n prompts decoded together give their ids alone"
done

# standard input, and the summary line
printf 'ab\ncd' | $H sample --ckpt "$TMP/hgrn2/model.ckpt" --prompts - -n 5 --temperature 0 --batch 2 > "$TMP/out" 2> "$TMP/err"
checks=$((checks + 1))
[ "$(grep -c '^---$' "$TMP/out")" = 1 ] && head -c 2 "$TMP/out" | grep -q "^ab" \
    && grep -q "^\[2 prompts, 4 tokens in .* 10 tokens in .*, 2 sequences, batch 2\]$" "$TMP/err" \
    && ok "--prompts - reads standard input; the summary counts prompts, tokens and the batch" \
    || fail "--prompts -: $(cat "$TMP/out" "$TMP/err")"

# a row that ends, ends alone: a model that learnt "hi<|endoftext|>hi<|endoftext|>..." (GPT-2 BPE)
for i in $(seq 2000); do echo '{"text": "hi"}'; done > "$TMP/hi.jsonl"
expect 0 "prepare documents of 'hi'" -- $H prepare --task pile --input "$TMP/hi.jsonl" --tokenizer "$SHARED/data/tokenizers/gpt2" \
    --out "$TMP/hidata" --val-fraction 0.05
expect 0 "train on them" -- $H train --task text --data "$TMP/hidata" --dim 16 --layers 1 --expand-ratio 8 --batch 4 \
    --seq-len 16 --steps 150 --lr 1e-2 --eval-every 0 --out "$TMP/hirun"
printf 'hi\nhi hi\nhello there\n' > "$TMP/hi.txt"
HI=(sample --ckpt "$TMP/hirun/model.ckpt" --prompts "$TMP/hi.txt" -n 8 --ids)
expect 0 "greedy, three prompts in one batch" -- $H "${HI[@]}" --temperature 0 --batch 3
checks=$((checks + 1))
[ "$(cat "$TMP/out")" = "$(printf '\n5303\n5303')" ] \
    && ok "greedy rows end at end-of-text, not printed: after 0, 1 and 1 tokens" || fail "greedy rows: $(cat "$TMP/out")"
# at temperature 2 the rows end at different steps (end-of-text, or the 8 tokens), and every one only once:
# the batched lines are the lines of --batch 1, none holds end-of-text (50256)
expect 0 "temperature 2, --batch 1" -- $H "${HI[@]}" --temperature 2 --seed 2 --num-samples 3 --batch 1
cp "$TMP/out" "$TMP/hi1"
expect 0 "temperature 2, --batch 4" -- $H "${HI[@]}" --temperature 2 --seed 2 --num-samples 3 --batch 4
checks=$((checks + 1))
lens=$(awk '{ printf "%d ", NF }' "$TMP/out")
cmp -s "$TMP/out" "$TMP/hi1" && ! grep -qw 50256 "$TMP/out" && [ "$(wc -l < "$TMP/out")" = 9 ] \
    && [ -n "$(head -n 4 "$TMP/out" | awk 'NF < 8')" ] && [ -n "$(head -n 4 "$TMP/out" | awk 'NF == 8')" ] \
    && ok "rows of one batch end apart (ids per line: $lens), as at --batch 1" || fail "per-row end: $lens; $(cat "$TMP/out")"
expect 0 "--stop per row, text, --batch 4" -- $H sample --ckpt "$TMP/hirun/model.ckpt" --prompts "$TMP/hi.txt" -n 8 \
    --temperature 2 --seed 5 --num-samples 3 --ignore-eos --stop hi --batch 4
cp "$TMP/out" "$TMP/st4"
expect 0 "--stop per row, text, --batch 1" -- $H sample --ckpt "$TMP/hirun/model.ckpt" --prompts "$TMP/hi.txt" -n 8 \
    --temperature 2 --seed 5 --num-samples 3 --ignore-eos --stop hi --batch 1
checks=$((checks + 1))
cmp -s "$TMP/out" "$TMP/st4" && [ "$(grep -c '^---$' "$TMP/out")" = 8 ] && ok "--stop ends each row on its own" \
    || fail "--stop per row: $(cat "$TMP/st4")"

# bench --generate on the CPU: its table, at a given batch and at both defaults, from a checkpoint too
expect 0 "bench --generate, tiny size" -- $H bench --generate --dim 32 --layers 2 --expand-ratio 8 --prompt-len 8 --tokens 6
checks=$((checks + 1))
grep -q "^| batch | first token (ms) | prefill tokens/s | decode ms/step | decode tokens/s |$" "$TMP/out" \
    && grep -Eq '^\|     1 \| +[0-9.]+ \| +[0-9]+ \| +[0-9.]+ \| +[0-9]+ \|$' "$TMP/out" \
    && grep -Eq '^\|    64 \| +[0-9.]+ \| +[0-9]+ \| +[0-9.]+ \| +[0-9]+ \|$' "$TMP/out" \
    && ok "bench --generate: rows of batch 1 and 64" || fail "bench --generate's table: $(cat "$TMP/out")"
expect 0 "bench --generate --ckpt (transformer) --batch 3" -- $H bench --generate --ckpt "$TMP/transformer/model.ckpt" --batch 3 \
    --prompt-len 5 --tokens 4
checks=$((checks + 1))
grep -q "Transformer++" "$TMP/out" && grep -Eq '^\|     3 \|' "$TMP/out" && [ "$(grep -c '^| *[0-9]' "$TMP/out")" = 1 ] \
    && ok "bench --generate --ckpt: the checkpoint's model, one row of batch 3" || fail "bench --generate --ckpt: $(cat "$TMP/out")"
expect 0 "bench --generate --arch hgrn1 --tokens 1" -- $H bench --generate --arch hgrn1 --dim 16 --layers 1 --batch 2 --tokens 1 \
    --prompt-len 3
grep -Eq '^\|     2 \| +[0-9.]+ \| +[0-9]+ \| +- \| +- \|$' "$TMP/out" || fail "one token has no decoding step: $(cat "$TMP/out")"

# refusals
C="$TMP/hgrn2/model.ckpt"
expect 2 "--batch 0" -- $H sample --ckpt "$C" --batch 0; expect_msg "batch needs an integer"
expect 1 "--prompts of a missing file" -- $H sample --ckpt "$C" --prompts "$TMP/none.txt"; expect_msg "cannot read --prompts"
: > "$TMP/empty.txt"
expect 1 "--prompts of an empty file" -- $H sample --ckpt "$C" --prompts "$TMP/empty.txt"; expect_msg "holds no prompts"
printf 'a\n\nb\n' > "$TMP/blank.txt"
expect 1 "--prompts with an empty line" -- $H sample --ckpt "$C" --prompts "$TMP/blank.txt"; expect_msg "line 2 is empty"
expect 2 "--prompts with --prompt" -- $H sample --ckpt "$C" --prompts "$TMP/prompts.txt" --prompt x; expect_msg "exclude each other"
expect 2 "--prompts with --prompt-ids" -- $H sample --ckpt "$C" --prompts "$TMP/prompts.txt" --prompt-ids 1; expect_msg "exclude each other"
printf 'ROMEO:\n%s\n' "$(head -c 3000 /dev/zero | tr '\0' x)" > "$TMP/long.txt"
expect 1 "--prompts: a line longer than the transformer's cache" -- $H sample --ckpt "$TMP/transformer/model.ckpt" \
    --prompts "$TMP/long.txt" -n $(((1 << 24) - 2000)) --batch 2
expect_msg "line 2: a prompt of 3000 tokens and 16775216 more exceed the 16777216 positions"
expect 2 "bench --generate --steps" -- $H bench --generate --steps 3; expect_msg "does not go with --generate"
expect 2 "bench --generate --seq-len" -- $H bench --generate --seq-len 8; expect_msg "does not go with --generate"
expect 2 "bench --generate --profile on the CPU" -- $H bench --generate --profile; expect_msg "needs --device cuda"
expect 2 "bench --tokens without --generate" -- $H bench --tokens 3; expect_msg "goes with --generate"
expect 2 "bench --generate --ckpt with a size flag" -- $H bench --generate --ckpt "$C" --dim 8; expect_msg "comes from the checkpoint"
expect 2 "bench --generate --prompt-len 0" -- $H bench --generate --prompt-len 0
expect 1 "bench --generate of a missing checkpoint" -- $H bench --generate --ckpt "$TMP/none.ckpt"; expect_msg "cannot open checkpoint"
# scripts/decode_ab.sh: a row per batch size, both ways (the tiny preset on the CPU, a few tokens)
expect 0 "decode_ab.sh on the CPU" -- bash scripts/decode_ab.sh --batches "1 3" -- --preset tiny --device cpu --tokens 4 \
    --prompt-len 8 --threads 1
checks=$((checks + 1))
if [ "$(grep -cE '^ +[13] +[0-9]+ +[0-9]+ +[0-9.]+x$' "$TMP/out")" = 2 ]; then ok "decode_ab.sh prints batches 1 and 3"
else fail "decode_ab.sh's table:"; sed 's/^/    /' "$TMP/out" | head -5; fi
expect 2 "decode_ab.sh with an unknown option" -- bash scripts/decode_ab.sh --bogus; expect_msg "unknown option"
expect 0 "decode_ab.sh --switch HGRN2_DECODE_KERNEL on the CPU" -- bash scripts/decode_ab.sh --batches 2 \
    --switch HGRN2_DECODE_KERNEL -- --preset tiny --device cpu --tokens 4 --prompt-len 8 --threads 1
checks=$((checks + 1))
if grep -q "^HGRN2_DECODE_KERNEL: on (1) against off (0)$" "$TMP/out" && grep -qE '^ +2 +[0-9]+ +[0-9]+ +[0-9.]+x$' "$TMP/out"
then ok "decode_ab.sh --switch names the switch and prints batch 2"
else fail "decode_ab.sh --switch's table:"; sed 's/^/    /' "$TMP/out" | head -5; fi
expect 2 "decode_ab.sh --switch of an unknown switch" -- bash scripts/decode_ab.sh --switch HGRN2_BOGUS
expect_msg "--switch takes"
expect 2 "decode_ab.sh --switch without a value" -- bash scripts/decode_ab.sh --switch; expect_msg "--switch takes"
expect 2 "decode_ab.sh --batches without a value" -- bash scripts/decode_ab.sh --batches
expect_msg "--batches needs"
finish
