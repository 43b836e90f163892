#!/usr/bin/env bash
# --arch transformer (the Transformer++ baseline: LLaMA's attention with rotary positions) end to end on the CPU,
# on the built-in Bible corpus: the loss falls, --resume repeats an uninterrupted run bit for bit, eval, sample
# (through the key/value cache) and export/import as LLaMA read the architecture from the checkpoint, MQAR,
# bench, and the refusals.
. "$(dirname "$0")/lib.sh"
H=./hgrn2
export OMP_NUM_THREADS=2
SMALL=(--arch transformer --dim 32 --heads 2 --layers 2 --batch 4 --seq-len 64 --lr 3e-3 --warmup 5 --eval-every 10
       --eval-batches 4)

# an uninterrupted run of 30 steps (prepares data/bible on first use)
expect 0 "transformer: train 30 steps" -- $H train "${SMALL[@]}" --steps 30 --out "$TMP/a"
grep -q "| model        | Transformer++, V 256, D 32, layers 2, heads 2 x 16 (RoPE), MLP 256, untied lm_head" "$TMP/out" \
    && ok "the startup table names the transformer" || fail "startup table: $(grep '| model' "$TMP/out")"
# the parameter count: embeddings and lm_head 2 x 256 x 32, final norm 32; per layer two norms 2 x 32, q/k/v and
# o projections 4 x 32 x 32, MLP (fla's width 256) 3 x 256 x 32; no g_norm, no lower bounds
want=$((2 * 256 * 32 + 32 + 2 * (2 * 32 + 4 * 32 * 32 + 3 * 256 * 32)))
grep -q "| parameters   | $want " "$TMP/out" && ok "parameter count $want" || fail "parameters: $(grep '| parameters' "$TMP/out"), expected $want"
cut -f2 "$TMP/a/log.tsv" | sed -n '2,31p' > "$TMP/a.loss"
first=$(sed -n 1p "$TMP/a.loss"); last=$(sed -n 30p "$TMP/a.loss")
checks=$((checks + 1))
if awk -v f="$first" -v l="$last" 'BEGIN { exit !(l < f - 1.0) }'; then ok "loss falls: $first -> $last"; else fail "loss did not fall by 1 nat: $first -> $last"; fi

# the same run stopped at step 12, then resumed: the same losses and the same checkpoint
expect 0 "transformer: train, stop at step 12" -- $H train "${SMALL[@]}" --steps 30 --stop-at 12 --out "$TMP/b"
expect 2 "resume with another architecture" -- $H train --resume --out "$TMP/b" --arch hgrn2
expect_msg "a resumed run keeps its architecture"
expect 2 "--heads on --resume" -- $H train --resume --out "$TMP/b" --heads 4
expect_msg "--heads cannot be given with --resume"
expect 0 "transformer: resume to step 30 (--arch transformer agrees with the checkpoint)" -- \
    $H train --resume --arch transformer --out "$TMP/b"
cut -f2 "$TMP/b/log.tsv" | grep -v train_loss > "$TMP/b.loss"
checks=$((checks + 1))
if cmp -s "$TMP/a.loss" "$TMP/b.loss"; then ok "resumed run repeats the uninterrupted losses exactly"; else fail "resumed losses differ"; diff "$TMP/a.loss" "$TMP/b.loss" | head; fi
checks=$((checks + 1))
if cmp -s "$TMP/a/model.ckpt" "$TMP/b/model.ckpt"; then ok "resumed run ends in the identical checkpoint"; else fail "final checkpoints differ"; fi

# eval and sample take the architecture from the checkpoint; eval's loss is the run's last held-out loss
expect 0 "transformer: eval" -- $H eval --ckpt "$TMP/a/model.ckpt" --max-batches 4
val=$(awk -F'\t' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "val_loss") c = i; next } $c != "" { v = $c } END { print v }' "$TMP/a/log.tsv")
got=$(awk '/^loss / { print $2 }' "$TMP/out")
checks=$((checks + 1))
if awk -v a="$val" -v b="$got" 'BEGIN { d = a - b; exit !(d < 1e-3 && d > -1e-3) }'; then ok "eval loss $got = the run's held-out loss $val"
else fail "eval loss $got, the run's held-out loss $val"; fi
expect 0 "transformer: sample, two samples" -- $H sample --ckpt "$TMP/a/model.ckpt" --prompt "In the beginning" -n 40 --seed 3 \
    --num-samples 2
checks=$((checks + 1))
[ "$(wc -c < "$TMP/out")" -ge 80 ] && ok "sample printed text" || fail "sample printed $(wc -c < "$TMP/out") bytes"
# greedy decoding through the cache: each token the argmax of the logits eval gives for the sequence so far
expect 0 "greedy sample" -- $H sample --ckpt "$TMP/a/model.ckpt" --prompt-ids "73 110 32 116 104 101" --temperature 0 -n 6 \
    --ids --ignore-eos
greedy=$(head -1 "$TMP/out")
seq="73 110 32 116 104 101 $greedy"
printf '%s\n' "$seq" | awk '{ $NF = ""; print }' > "$TMP/seq.txt"
expect 0 "eval --ids of the greedy sequence" -- $H eval --ckpt "$TMP/a/model.ckpt" --ids "$TMP/seq.txt" --logits "$TMP/seq.f32"
checks=$((checks + 1))
argmax=$(python3 - "$TMP/seq.f32" 6 <<'PY'
import struct, sys
raw = open(sys.argv[1], 'rb').read()
V, P = 256, int(sys.argv[2])
T = len(raw) // 4 // V
rows = [struct.unpack_from('<%df' % V, raw, 4 * V * t) for t in range(T)]
print(' '.join(str(max(range(V), key=lambda v: (r[v], -v))) for r in rows[P - 1:]))
PY
)
[ "$argmax" = "$greedy" ] && ok "sampling through the cache = the argmax of full forwards: $greedy" || fail "cache decoding '$greedy', full forwards '$argmax'"
expect 0 "transformer: bench on the CPU" -- $H bench --arch transformer --dim 32 --heads 4 --layers 2 --batch 2 --seq-len 32 --steps 2
grep -q "Transformer++" "$TMP/out" && ok "bench runs the transformer" || fail "bench's table lacks the transformer"

# export as LLaMA and import back: the same held-out loss
expect 0 "export as LLaMA" -- $H export --ckpt "$TMP/a/model.ckpt" --hf "$TMP/hf"
checks=$((checks + 1))
grep -q '"model_type": "llama"' "$TMP/hf/config.json" && grep -q '"max_position_embeddings": 64' "$TMP/hf/config.json" &&
    grep -q '"model_max_length": 64' "$TMP/hf/tokenizer_config.json" && ok "config.json is LLaMA's, its context the run's 64" ||
    fail "config.json: $(head -c 300 "$TMP/hf/config.json")"
expect 0 "import the LLaMA export" -- $H import --hf "$TMP/hf" --out "$TMP/back.ckpt"
expect 0 "eval of the imported model" -- $H eval --ckpt "$TMP/back.ckpt" --data data/bible --max-batches 4 --seq-len 64 --batch 4
checks=$((checks + 1))
back=$(awk '/^loss / { print $2 }' "$TMP/out")
[ "$back" = "$got" ] && ok "the imported model's held-out loss is the run's: $back" || fail "imported loss $back, the run's $got"

# MQAR: the preset's 64 wide model has one head of 64
expect 0 "mqar with --arch transformer" -- $H train --task mqar --arch transformer --dim 32 --layers 1 --seq-len 32 --kv-pairs 2 \
    --batch 8 --steps 6 --eval-every 0 --out "$TMP/mq"
checks=$((checks + 1))
grep -q "^| model        | Transformer++, V 8192, D 32, layers 1, heads 1 x 32 (RoPE), no MLP, tied embeddings" "$TMP/out" &&
    ok "mqar's startup table names the transformer" || fail "mqar's startup table: $(grep '^| model' "$TMP/out")"
expect 0 "eval --task mqar of the transformer run" -- $H eval --task mqar --ckpt "$TMP/mq/model.ckpt" --examples 16
checks=$((checks + 1))
tail -1 "$TMP/out" | grep -Eq "^accuracy [0-9.]+$" && ok "eval --task mqar ends with its accuracy" ||
    fail "eval --task mqar's last line: $(tail -1 "$TMP/out")"

# refusals: each one clear line
expect 2 "unknown architecture" -- $H train --arch llama --steps 1 --out "$TMP/x"
expect_msg "hgrn2 train: --arch must be hgrn2, hgrn1 or transformer, got 'llama'"
expect 2 "--heads not dividing --dim" -- $H train --arch transformer --dim 32 --heads 3 --steps 1 --out "$TMP/x"
expect_msg "--heads 3 must divide --dim 32"
expect 2 "an odd head dim" -- $H bench --arch transformer --dim 30 --heads 2
expect_msg "must be even"
expect 2 "--expand-ratio with the transformer" -- $H train --arch transformer --expand-ratio 16 --steps 1 --out "$TMP/x"
expect_msg "the transformer's heads are set by --heads"
expect 2 "--heads without the transformer" -- $H train --heads 4 --steps 1 --out "$TMP/x"
expect_msg "--heads is for --arch transformer"
expect 2 "--init with another architecture" -- $H train --init "$TMP/a/model.ckpt" --arch hgrn1 --steps 1 --out "$TMP/x"
expect_msg "--init keeps the architecture of its weights"
expect 1 "export of a transformer without MLPs" -- $H export --ckpt "$TMP/mq/model.ckpt" --hf "$TMP/hf2"
expect_msg "LLaMA always has them"
sed 's/"num_key_value_heads": 2/"num_key_value_heads": 1/' "$TMP/hf/config.json" > "$TMP/gqa.json"
mkdir -p "$TMP/gqa" && cp "$TMP/gqa.json" "$TMP/gqa/config.json" && cp "$TMP/hf/model.safetensors" "$TMP/gqa/"
expect 1 "import of grouped-query attention" -- $H import --hf "$TMP/gqa" --out "$TMP/x.ckpt"
expect_msg "grouped-query attention is not implemented"
finish
