#!/usr/bin/env bash
# --arch hgrn1 (HGRN1's element-wise token mixer) end to end on the CPU, on the built-in Bible corpus: the loss
# falls, --resume repeats an uninterrupted run bit for bit, eval and sample read the architecture from the
# checkpoint, a checkpoint of format version 2 still loads as hgrn2, and the refusals.
. "$(dirname "$0")/lib.sh"
H=./hgrn2
export OMP_NUM_THREADS=2
SMALL=(--arch hgrn1 --dim 32 --layers 2 --batch 4 --seq-len 64 --lr 3e-3 --warmup 5 --eval-every 10 --eval-batches 4)

# an uninterrupted run of 30 steps (prepares data/bible on first use)
expect 0 "hgrn1: train 30 steps" -- $H train "${SMALL[@]}" --steps 30 --out "$TMP/a"
grep -q "| model        | HGRN1, V 256, D 32, layers 2, state a vector of 32" "$TMP/out" \
    && ok "the startup table names HGRN1" || fail "startup table: $(grep '| model' "$TMP/out")"
# the parameter count: embeddings and lm_head 2 x 256 x 32, final norm 32, lower bounds 2 x 32; per layer two
# norms and g_norm 3 x 32, i/f/g and o projections 4 x 32 x 32, MLP (fla's width 256) 3 x 256 x 32
want=$((2 * 256 * 32 + 32 + 2 * 32 + 2 * (3 * 32 + 4 * 32 * 32 + 3 * 256 * 32)))
grep -q "| parameters   | $want " "$TMP/out" && ok "parameter count $want" || fail "parameters: $(grep '| parameters' "$TMP/out"), expected $want"
cut -f2 "$TMP/a/log.tsv" | sed -n '2,31p' > "$TMP/a.loss"
first=$(sed -n 1p "$TMP/a.loss"); last=$(sed -n 30p "$TMP/a.loss")
checks=$((checks + 1))
if awk -v f="$first" -v l="$last" 'BEGIN { exit !(l < f - 1.0) }'; then ok "loss falls: $first -> $last"; else fail "loss did not fall by 1 nat: $first -> $last"; fi

# the same run stopped at step 12, then resumed: the same losses and the same checkpoint
expect 0 "hgrn1: train, stop at step 12" -- $H train "${SMALL[@]}" --steps 30 --stop-at 12 --out "$TMP/b"
expect 2 "resume with another architecture" -- $H train --resume --out "$TMP/b" --arch hgrn2
expect_msg "a resumed run keeps its architecture"
expect 0 "hgrn1: resume to step 30 (--arch hgrn1 agrees with the checkpoint)" -- $H train --resume --arch hgrn1 --out "$TMP/b"
cut -f2 "$TMP/b/log.tsv" | grep -v train_loss > "$TMP/b.loss"
checks=$((checks + 1))
if cmp -s "$TMP/a.loss" "$TMP/b.loss"; then ok "resumed run repeats the uninterrupted losses exactly"; else fail "resumed losses differ"; diff "$TMP/a.loss" "$TMP/b.loss" | head; fi
checks=$((checks + 1))
if cmp -s "$TMP/a/model.ckpt" "$TMP/b/model.ckpt"; then ok "resumed run ends in the identical checkpoint"; else fail "final checkpoints differ"; fi

# eval and sample take the architecture from the checkpoint; eval's loss is the run's last held-out loss
expect 0 "hgrn1: eval" -- $H eval --ckpt "$TMP/a/model.ckpt" --max-batches 4
val=$(awk -F'\t' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "val_loss") c = i; next } $c != "" { v = $c } END { print v }' "$TMP/a/log.tsv")
got=$(awk '/^loss / { print $2 }' "$TMP/out")
checks=$((checks + 1))
if awk -v a="$val" -v b="$got" 'BEGIN { d = a - b; exit !(d < 1e-3 && d > -1e-3) }'; then ok "eval loss $got = the run's held-out loss $val"
else fail "eval loss $got, the run's held-out loss $val"; fi
expect 0 "hgrn1: sample" -- $H sample --ckpt "$TMP/a/model.ckpt" --prompt "In the beginning" -n 40 --seed 3
checks=$((checks + 1))
[ "$(wc -c < "$TMP/out")" -ge 40 ] && ok "sample printed text" || fail "sample printed $(wc -c < "$TMP/out") bytes"
expect 0 "hgrn1: bench on the CPU" -- $H bench --arch hgrn1 --dim 32 --layers 2 --batch 2 --seq-len 32 --steps 2
grep -q "HGRN1" "$TMP/out" && ok "bench runs HGRN1" || fail "bench's table lacks HGRN1"

# a checkpoint of format version 2 (no architecture field) loads as hgrn2: an hgrn2 run's checkpoint rewritten
# in version 2's layout (the 22nd header integer cut out) evaluates to the same loss
expect 0 "hgrn2: train 3 steps" -- $H train --dim 32 --layers 2 --expand-ratio 8 --batch 4 --seq-len 64 --steps 3 \
    --eval-every 0 --eval-batches 2 --out "$TMP/h2"
expect 0 "hgrn2: eval" -- $H eval --ckpt "$TMP/h2/model.ckpt" --max-batches 2
want_loss=$(awk '/^loss / { print $2 }' "$TMP/out")
python3 - "$TMP/h2/model.ckpt" "$TMP/v2.ckpt" <<'PY'
import struct, sys
sys.path.insert(0, 'tests')
import ckpt_seal
b = bytearray(open(sys.argv[1], 'rb').read()[:-8])
assert struct.unpack_from('<qq', b, 8) == (4, 24)
arch_at = 24 + 8 * 21                     # the 22nd integer, the architecture, then the mixer layer and the blocks
assert struct.unpack_from('<qqq', b, arch_at) == (0, 0, 0)
nfl_at = 24 + 8 * 24                      # the float count (10), and after the 10th float, the embeddings' dropout
assert struct.unpack_from('<q', b, nfl_at)[0] == 10 and struct.unpack_from('<d', b, nfl_at + 8 * 10)[0] == 0
del b[nfl_at + 8 * 10:nfl_at + 8 * 11]
struct.pack_into('<q', b, nfl_at, 9)
del b[arch_at:arch_at + 24]
struct.pack_into('<qq', b, 8, 2, 21)
ckpt_seal.write(sys.argv[2], b)
PY
expect 0 "a version-2 checkpoint evaluates" -- $H eval --ckpt "$TMP/v2.ckpt" --max-batches 2
got=$(awk '/^loss / { print $2 }' "$TMP/out")
checks=$((checks + 1))
[ -n "$got" ] && [ "$got" = "$want_loss" ] && ok "version 2 loads as hgrn2: loss $got" || fail "version 2: loss '$got', expected $want_loss"

# refusals: each one clear line
expect 2 "unknown architecture" -- $H train --arch hgrn3 --steps 1 --out "$TMP/x"
expect_msg "hgrn2 train: --arch must be hgrn2, hgrn1 or transformer, got 'hgrn3'"
expect 2 "expand ratio with hgrn1" -- $H train --arch hgrn1 --expand-ratio 4 --steps 1 --out "$TMP/x"
expect_msg "--expand-ratio 4 is not possible with --arch hgrn1"
expect 0 "expand ratio 1 with hgrn1 is fine (bench)" -- $H bench --arch hgrn1 --expand-ratio 1 --dim 16 --layers 1 --batch 1 --seq-len 8 --steps 1
expect 2 "--arch transformer with a classifier task" -- $H train --task lra-listops --arch transformer
expect_msg "--arch must be hgrn2 or hgrn1 for a classifier task"
# MQAR with HGRN1 (the issue's comparison row): it trains, is scored, and says so in its startup table
expect 0 "mqar with --arch hgrn1" -- $H train --task mqar --arch hgrn1 --dim 32 --layers 1 --seq-len 32 --kv-pairs 2 \
    --batch 8 --steps 6 --eval-every 0 --threads 2 --out "$TMP/mq"
checks=$((checks + 1))
grep -q "^| model        | HGRN1, V 8192, D 32, layers 1, state a vector of 32" "$TMP/out" &&
    ok "mqar's startup table names HGRN1" || fail "mqar's startup table: $(grep '^| model' "$TMP/out")"
expect 0 "eval --task mqar of the HGRN1 run" -- $H eval --task mqar --ckpt "$TMP/mq/model.ckpt" --examples 16 --threads 2
checks=$((checks + 1))
tail -1 "$TMP/out" | grep -Eq "^accuracy [0-9.]+$" && ok "eval --task mqar ends with its accuracy" ||
    fail "eval --task mqar's last line: $(tail -1 "$TMP/out")"
expect 2 "mqar resumed as hgrn2" -- $H train --resume --out "$TMP/mq" --arch hgrn2 --steps 8
expect_msg "a resumed run keeps its architecture"
expect 2 "--init with another architecture" -- $H train --init "$TMP/a/model.ckpt" --arch hgrn2 --steps 1 --out "$TMP/x"
expect_msg "--init keeps the architecture of its weights"
# Hugging Face: fla's HGRNForCausalLM (model_type hgrn) out and back in gives the same model, bit for bit
expect 0 "export of an HGRN1 checkpoint" -- $H export --ckpt "$TMP/a/model.ckpt" --hf "$TMP/hf"
checks=$((checks + 1))
grep -q '"model_type": "hgrn"' "$TMP/hf/config.json" && grep -q '"HGRNForCausalLM"' "$TMP/hf/config.json" &&
    ! grep -q num_heads "$TMP/hf/config.json" && ok "the export is an HGRNForCausalLM config" ||
    fail "config.json: $(tr -d '\n' < "$TMP/hf/config.json" | head -c 300)"
expect 0 "import of the export" -- $H import --hf "$TMP/hf" --out "$TMP/imp.ckpt"
$H sample --ckpt "$TMP/a/model.ckpt" --prompt "In the" -n 30 --temperature 0 --ids > "$TMP/s1" 2>/dev/null
$H sample --ckpt "$TMP/imp.ckpt" --prompt "In the" -n 30 --temperature 0 --ids > "$TMP/s2" 2>/dev/null
checks=$((checks + 1))
[ -s "$TMP/s1" ] && cmp -s "$TMP/s1" "$TMP/s2" && ok "the imported HGRN1 continues the prompt as the original" ||
    fail "greedy ids differ after export and import: $(head -c 80 "$TMP/s1") / $(head -c 80 "$TMP/s2")"
$H eval --ckpt "$TMP/a/model.ckpt" --max-batches 2 --data data/bible --batch 4 --seq-len 64 > "$TMP/e1" 2>&1
$H eval --ckpt "$TMP/imp.ckpt" --max-batches 2 --data data/bible --batch 4 --seq-len 64 > "$TMP/e2" 2>&1
checks=$((checks + 1))
[ "$(grep '^loss ' "$TMP/e1")" = "$(grep '^loss ' "$TMP/e2")" ] && [ -n "$(grep '^loss ' "$TMP/e1")" ] &&
    ok "the imported HGRN1 scores the held-out text as the original" ||
    fail "eval: $(grep '^loss ' "$TMP/e1") / $(grep '^loss ' "$TMP/e2")"
mkdir -p "$TMP/hf2"
sed 's/"expand_ratio": 1,/"expand_ratio": 2,/' "$TMP/hf/config.json" > "$TMP/hf2/config.json"
cp "$TMP/hf/model.safetensors" "$TMP/hf2/"
expect 1 "import of an HGRN1 with expand ratio 2" -- $H import --hf "$TMP/hf2" --out "$TMP/imp2.ckpt"
expect_msg "hgrn2 implements HGRN1 with expand ratio 1"
finish
