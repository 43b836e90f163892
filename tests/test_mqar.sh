#!/usr/bin/env bash
# MQAR end to end on the CPU: the command line refuses what it cannot do, --resume repeats a run exactly,
# Ctrl-C saves, the sweep script runs, and HGRN2 (D 64, T 64, 4 pairs) learns the task to 0.9 held-out
# accuracy, checked by eval's last line 'accuracy X'.
. "$(dirname "$0")/lib.sh"
H=./hgrn2
export OMP_NUM_THREADS=2
SMALL=(--task mqar --dim 32 --seq-len 32 --kv-pairs 4 --batch 8 --eval-every 10 --eval-batches 2)

# resumes DIR STEPS STOP WHAT NOTE BASE FLAG...: trains SMALL with the FLAGs for STEPS steps into DIR, and again
# into DIR2 stopped at STOP and resumed; the startup table names NOTE both times, the two end in the same losses
# and checkpoint, and their losses are not those of the log BASE over the same steps (the FLAGs change the run)
resumes() {
    local dir=$1 steps=$2 stop=$3 what=$4 note=$5 base=$6
    shift 6
    expect 0 "train $what" -- $H train "${SMALL[@]}" "$@" --steps "$steps" --out "$dir"
    grep -q -- "$note" "$TMP/out" || fail "the startup table does not name $what"
    expect 0 "the same run stopped at step $stop" -- $H train "${SMALL[@]}" "$@" --steps "$steps" --stop-at "$stop" --out "${dir}2"
    expect 0 "and resumed to step $steps" -- $H train --resume --out "${dir}2"
    grep -q -- "$note" "$TMP/out" || fail "the resumed run lost $what"
    checks=$((checks + 1))
    if cmp -s <(cut -f2 "$dir/log.tsv") <(cut -f2 "${dir}2/log.tsv") && cmp -s "$dir/model.ckpt" "${dir}2/model.ckpt" &&
        ! cmp -s <(cut -f2 "$dir/log.tsv") <(head -n $((steps + 1)) "$base" | cut -f2)
    then ok "$what: the run resumes exactly, and its losses are not those of $base"
    else fail "$what: the runs"; paste <(cut -f2 "$dir/log.tsv") <(cut -f2 "${dir}2/log.tsv") | head -14; fi
}

# usage errors (2) and runtime failures (1)
expect 2 "train --task mqar, more pairs than the length holds" -- $H train --task mqar --seq-len 64 --kv-pairs 17
expect_msg "too many for --seq-len 64"
expect 2 "train --task mqar --seq-len 12 (4 pairs need 16)" -- $H train --task mqar --seq-len 12 --kv-pairs 4
expect 2 "train --kv-pairs without --task mqar" -- $H train --kv-pairs 4; expect_msg "for --task mqar"
expect 2 "train --task mqar --data" -- $H train --task mqar --data "$TMP/none"; expect_msg "no --data"
expect 2 "train --task mqar --vocab 3" -- $H train --task mqar --vocab 3; expect_msg "vocabulary"
expect 2 "train --task mqar --kv-pairs 0" -- $H train --task mqar --kv-pairs 0
expect 2 "train --mlp-width -1" -- $H train --task mqar --mlp-width -1
expect 2 "eval --task nope" -- $H eval --task nope
expect 2 "eval --task mqar --data" -- $H eval --task mqar --data "$TMP/none"
expect 2 "eval --task mqar --examples 0" -- $H eval --task mqar --examples 0

# an uninterrupted run, and the same run stopped at step 12 and resumed: the same losses, the same checkpoint
expect 0 "train 30 steps" -- $H train "${SMALL[@]}" --steps 30 --out "$TMP/a"
grep -q "val acc" "$TMP/out" || fail "the progress line shows no held-out accuracy"
checks=$((checks + 1))
if head -n 1 "$TMP/a/log.tsv" | grep -q '	val_acc	' && awk -F'\t' 'NR > 1 && $3 != "" && ($6 < 0 || $6 > 1 || $6 == "") { bad = 1 } END { exit bad }' "$TMP/a/log.tsv"
then ok "log.tsv has a val_acc column, a fraction at every evaluation"; else fail "log.tsv's val_acc column"; head -3 "$TMP/a/log.tsv"; fi
# --init into another shape (a curriculum: fewer pairs first, then more): the checkpoint's model, the new task's
# shape in the data field, and a first loss that is the trained model's, not a fresh one's
expect 0 "--init from the run into T 64 with 8 pairs" -- $H train --init "$TMP/a/model.ckpt" --task mqar --seq-len 64 \
    --kv-pairs 8 --batch 8 --steps 2 --eval-every 0 --out "$TMP/i"
grep -q "mqar:kv-pairs=8" "$TMP/out" && grep -q "D 32, layers 2" "$TMP/out" || fail "--init: the startup table: $(grep -E 'task|model' "$TMP/out")"
expect 0 "the same shape from a fresh model" -- $H train --task mqar --dim 32 --seq-len 64 --kv-pairs 8 --batch 8 --steps 2 \
    --eval-every 0 --out "$TMP/i0"
checks=$((checks + 1))
if ! cmp -s <(sed -n 2p "$TMP/i/log.tsv" | cut -f2) <(sed -n 2p "$TMP/i0/log.tsv" | cut -f2)
then ok "the run from --init does not start where a fresh model does"; else fail "--init: the first loss is a fresh model's"; fi
expect 2 "--init with --mixer-layer" -- $H train --init "$TMP/a/model.ckpt" --task mqar --mixer-layer lra
expect_msg "--mixer-layer cannot be given with --init"
expect 0 "plot the run's held-out accuracy" -- $H plot "$TMP/a" --y acc --x step --out "$TMP/acc.png"
checks=$((checks + 1))
if [ "$(head -c 8 "$TMP/acc.png" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] && grep -q "1 run, 30 rows" "$TMP/out"
then ok "plot --y acc wrote a PNG of the 30 rows"; else fail "plot --y acc: $(cat "$TMP/out")"; fi
expect 0 "train, stop at step 12" -- $H train "${SMALL[@]}" --steps 30 --stop-at 12 --out "$TMP/b"
expect 0 "resume to step 30" -- $H train --resume --out "$TMP/b"
# a fixed training set: named in the checkpoint, resumed exactly, other batches than fresh examples give
resumes "$TMP/f" 12 5 "on a fixed set of 24 examples" "a fixed training set of 24 examples" "$TMP/a/log.tsv" \
    --train-examples 24
grep -q "mqar:kv-pairs=4,train-examples=24" "$TMP/out" || fail "the startup table does not name the fixed set"
expect 0 "eval of the fixed set's model (held-out examples)" -- $H eval --ckpt "$TMP/f/model.ckpt" --examples 64
grep -q "^accuracy " "$TMP/out" || fail "eval printed no accuracy line"
expect 2 "--train-examples with --resume" -- $H train --resume --out "$TMP/f2" --train-examples 5; expect_msg "cannot change on --resume"
expect 2 "--train-examples without --task mqar" -- $H train --train-examples 5; expect_msg "for --task mqar"
expect 2 "--train-examples 0" -- $H train --task mqar --train-examples 0
expect 0 "train, stop at step 5, before the first evaluation" -- $H train "${SMALL[@]}" --steps 30 --stop-at 5 --out "$TMP/c"
checks=$((checks + 1))
if grep -q "^done: 5 steps" "$TMP/out" && ! grep -q "held-out\|accuracy\|nan" "$TMP/out"
then ok "a sitting without an evaluation shows no held-out loss or accuracy in its summary"
else fail "the summary of a sitting without an evaluation"; grep "^done" "$TMP/out"; fi
checks=$((checks + 1))
if cmp -s <(cut -f2 "$TMP/a/log.tsv") <(cut -f2 "$TMP/b/log.tsv") && cmp -s "$TMP/a/model.ckpt" "$TMP/b/model.ckpt"
then ok "the resumed run repeats the training losses and ends in the identical checkpoint"; else fail "the resumed run differs"; fi
expect 2 "resume with --kv-pairs" -- $H train --resume --out "$TMP/b" --kv-pairs 8
# the HGRN2 authors' layer (--mixer-layer lra): named at startup, resumed exactly, kept by the checkpoint; refused
# where it does not apply, and by export (fla's HGRN2 has no such layer)
resumes "$TMP/l" 20 7 "with the authors' layer" "the authors' mixer layer (lra)" "$TMP/a/log.tsv" --mixer-layer lra
expect 0 "eval of the lra layer's model" -- $H eval --ckpt "$TMP/l/model.ckpt" --examples 64
grep -q "^accuracy " "$TMP/out" || fail "eval printed no accuracy line"
expect 2 "--mixer-layer with --resume" -- $H train --resume --out "$TMP/l2" --mixer-layer fla; expect_msg "--mixer-layer cannot be given with --resume"
expect 2 "--mixer-layer nope" -- $H train --task mqar --mixer-layer nope; expect_msg "--mixer-layer must be fla or lra, got 'nope'"
expect 2 "--mixer-layer lra with hgrn1" -- $H train --task mqar --arch hgrn1 --mixer-layer lra
expect_msg "--mixer-layer lra is a form of HGRN2's layer: not with --arch hgrn1"
expect 2 "--mixer-layer lra with the transformer" -- $H train --task mqar --arch transformer --mixer-layer lra
expect_msg "not with --arch transformer"
# Zoology's blocks: named at startup, resumed exactly, refused by export and on --resume
resumes "$TMP/z" 12 5 "with Zoology's blocks and the lra layer" \
    "Zoology's: LayerNorms with biases (eps 1e-05), the identity as the state mixer" "$TMP/l/log.tsv" \
    --block zoology --mixer-layer lra
# dropout on the embeddings: named at startup, resumed exactly, other losses than without it
resumes "$TMP/zd" 12 5 "with embedding dropout" "on the embeddings, p 0.1" "$TMP/z/log.tsv" \
    --block zoology --mixer-layer lra --embed-dropout 0.1
expect 2 "--embed-dropout 1" -- $H train --task mqar --embed-dropout 1; expect_msg "embed-dropout"
expect 2 "--embed-dropout with --resume" -- $H train --resume --out "$TMP/zd2" --embed-dropout 0.2; expect_msg "cannot change on --resume"
expect 2 "--block with --resume" -- $H train --resume --out "$TMP/z2" --block fla; expect_msg "--block cannot be given with --resume"
expect 2 "--block nope" -- $H train --task mqar --block nope; expect_msg "--block must be fla or zoology, got 'nope'"
expect 0 "a language model with MLPs in Zoology's blocks" -- $H train --task mqar --mlp-width 64 --dim 32 --seq-len 32 --batch 4 --block zoology --steps 2 --eval-every 0 --out "$TMP/zm"
expect 1 "export of Zoology's blocks" -- $H export --ckpt "$TMP/zm/model.ckpt" --hf "$TMP/zmhf"
expect_msg "has Zoology's blocks"
expect 0 "a language model with MLPs and the lra layer" -- $H train --task mqar --mlp-width 64 --dim 32 --seq-len 32 --batch 4 --mixer-layer lra --steps 2 --eval-every 0 --out "$TMP/lm"
expect 1 "export of the lra layer" -- $H export --ckpt "$TMP/lm/model.ckpt" --hf "$TMP/lmhf"
expect_msg "has the HGRN2 authors' mixer layer"
expect 2 "resume with --data" -- $H train --resume --out "$TMP/b" --data "$TMP/none"; expect_msg "no --data"
expect 2 "eval with more pairs than the length holds" -- $H eval --ckpt "$TMP/a/model.ckpt" --kv-pairs 9
expect 1 "export of a model without MLPs" -- $H export --ckpt "$TMP/a/model.ckpt" --hf "$TMP/hf"; expect_msg "no MLPs"
expect 1 "sample text without a tokenizer" -- $H sample --ckpt "$TMP/a/model.ckpt"; expect_msg "prompt-ids"
expect 0 "sample ids" -- $H sample --ckpt "$TMP/a/model.ckpt" --prompt-ids "5 4100 7 4200 0 5" -n 4 --ids --temperature 0
[ "$(wc -w < "$TMP/out")" = 4 ] || fail "sample printed $(wc -w < "$TMP/out") ids, not 4"

# Ctrl-C: the step in progress finishes, a checkpoint is saved, exit status 130, resume continues
ctrl_c "$TMP/int" 3 $H train "${SMALL[@]}" --steps 1000000 --out "$TMP/int"
expect 0 "resume after Ctrl-C" -- $H train --resume --out "$TMP/int" --steps "$(( $(wc -l < "$TMP/int/log.tsv") + 1 ))"

# the sweep script, a tiny grid
expect 0 "scripts/mqar_sweep.sh --device cpu --tiny" -- bash scripts/mqar_sweep.sh --device cpu --tiny --out "$TMP/sweep"
checks=$((checks + 1))
if grep -Eq '^64 +[0-9.]+ \(.*\) +[0-9.]+ \(' "$TMP/out" && grep -q "over lr in { 1e-2 3e-3 } (64 examples each)" "$TMP/out"
then ok "the sweep prints its title and a row of accuracies for D 64"
else fail "the sweep's table"; tail -4 "$TMP/out"; fi
# the same sweep again reuses every run; one with other flags into the same folder stops before it starts
expect 0 "the tiny sweep again: its runs reused" -- bash scripts/mqar_sweep.sh --device cpu --tiny --out "$TMP/sweep"
checks=$((checks + 1))
if ! grep -Eq '^D +64 +T' "$TMP/out" && grep -Eq '^64 +[0-9.]+ \(' "$TMP/out"; then ok "nothing trained again, the same table"
else fail "the sweep run again:"; sed 's/^/    /' "$TMP/out" | head -5; fi
expect 2 "the tiny sweep with -- --arch hgrn1 into the same --out" -- bash scripts/mqar_sweep.sh --device cpu --tiny \
    --out "$TMP/sweep" -- --arch hgrn1; expect_msg "trained with other settings"
# a shape with its own steps and batch: its run trains that long, in a directory that names them
expect 0 "mqar_sweep.sh with a shape's own steps and batch" -- bash scripts/mqar_sweep.sh --device cpu --dims 64 \
    --shapes "32:2:12:8" --lrs 1e-2 --steps 40 --examples 32 --threads 1 --out "$TMP/sweep2"
checks=$((checks + 1))
if grep -q "| steps        | 12 " "$TMP/sweep2/d64_t32_p2_lr1e-2_s12_b8/train.out" &&
    grep -q "| batch        | 8 x 32 tokens" "$TMP/sweep2/d64_t32_p2_lr1e-2_s12_b8/train.out" &&
    grep -Eq '^64 +[0-9.]+ \(1e-2\)' "$TMP/out"; then ok "the shape's steps and batch, and its row of the table"
else fail "a shape's own steps and batch"; ls "$TMP/sweep2"; fi
expect 2 "mqar_sweep.sh with a malformed shape" -- bash scripts/mqar_sweep.sh --device cpu --shapes "32:x" --out "$TMP/sweep3"
expect_msg "bad shape"
# --seeds: a run per seed in a directory that names it (the two seeds' losses differ); the best in the table
expect 0 "mqar_sweep.sh --seeds" -- bash scripts/mqar_sweep.sh --device cpu --dims 64 --shapes "32:2:6:8" --lrs 1e-2 \
    --seeds "3 4" --examples 32 --threads 1 --out "$TMP/sweep4"
checks=$((checks + 1))
d3="$TMP/sweep4/d64_t32_p2_lr1e-2_s6_b8_seed3" d4="$TMP/sweep4/d64_t32_p2_lr1e-2_s6_b8_seed4"
best=$(cat "$d3/accuracy" "$d4/accuracy" 2>/dev/null | sort -g | tail -n 1)
if [ -s "$d3/log.tsv" ] && [ -s "$d4/log.tsv" ] && ! cmp -s <(cut -f2 "$d3/log.tsv") <(cut -f2 "$d4/log.tsv") && [ -n "$best" ] &&
    grep -Eq "^64 +$(printf '%.4f' "$best") \(1e-2\)" "$TMP/out" && grep -q "over lr in { 1e-2 } and seed in { 3 4 } (32 examples" "$TMP/out"
then ok "a run per seed, and the best of them in the table"
else fail "--seeds"; ls "$TMP/sweep4"; tail -n 3 "$TMP/out"; fi
expect 2 "mqar_sweep.sh with a bad seed" -- bash scripts/mqar_sweep.sh --device cpu --seeds "1 x" --out "$TMP/sweep5"
expect_msg "bad seed"
# --curriculum: the second shape's runs start from the first shape's best run at the same width
expect 0 "mqar_sweep.sh --curriculum" -- bash scripts/mqar_sweep.sh --device cpu --dims 64 --shapes "32:2:6:8 64:4:6:8" \
    --lrs "1e-2 3e-3" --examples 32 --threads 1 --curriculum --out "$TMP/sweep6"
checks=$((checks + 1))
from=$(sed -n 's/^initialising from the weights of \(.*\)\/model.ckpt$/\1/p' "$TMP"/sweep6/d64_t64_*/train.out | sort -u)
best=$(cat "$TMP"/sweep6/d64_t32_*/accuracy | sort -g | tail -n 1)
if [ "$(echo "$from" | wc -w)" = 1 ] && [ "$(grep -c initialising "$TMP"/sweep6/d64_t64_*/train.out | grep -c ':1$')" = 2 ] &&
    case "$from" in "$TMP"/sweep6/d64_t32_p2_*) true ;; *) false ;; esac && [ "$(cat "$from/accuracy")" = "$best" ] &&
    ! grep -q initialising "$TMP"/sweep6/d64_t32_*/train.out && grep -q "^(--curriculum" "$TMP/out"
then ok "both runs of the second shape start from the first shape's best run (${from##*/})"
else fail "--curriculum: from '$from', best $best"; grep -H initialising "$TMP"/sweep6/*/train.out; fi

# --table prints the same table from the scored runs without training (no program needed); a wider grid than
# was run shows its unscored cells as '-'; a folder with no sweep is refused
cp "$TMP/sweep6/table.txt" "$TMP/table6.txt"
expect 0 "mqar_sweep.sh --table" -- bash scripts/mqar_sweep.sh --table --hgrn2 /nonexistent --dims 64 \
    --shapes "32:2:6:8 64:4:6:8" --lrs "1e-2 3e-3" --examples 32 --curriculum --out "$TMP/sweep6"
checks=$((checks + 1))
if tail -n 2 "$TMP/out" | cmp -s - <(tail -n 2 "$TMP/table6.txt") && ! grep -q "accuracy 0" "$TMP/out"
then ok "--table: the sweep's own table, nothing trained"
else fail "--table"; cat "$TMP/out"; fi
expect 0 "mqar_sweep.sh --table over a wider grid" -- bash scripts/mqar_sweep.sh --table --hgrn2 /nonexistent \
    --dims "64 128" --shapes "32:2:6:8 64:4:6:8" --lrs "1e-2 3e-3" --examples 32 --curriculum --out "$TMP/sweep6"
checks=$((checks + 1))
if grep -Eq '^128 +- +- *$' "$TMP/out"; then ok "--table: unscored cells as '-'"
else fail "--table over a wider grid"; cat "$TMP/out"; fi
expect 2 "mqar_sweep.sh --table with other options than the sweep's" -- bash scripts/mqar_sweep.sh --table --dims 64 \
    --shapes "32:2:6:8 64:4:6:8" --lrs "1e-2 3e-3" --examples 16 --curriculum --out "$TMP/sweep6"
expect_msg "give --table the options that sweep ran with"
expect 2 "mqar_sweep.sh --table of no sweep" -- bash scripts/mqar_sweep.sh --table --out "$TMP/nothing-here"
expect_msg "no sweep in"

# Learning the task: D 64, T 64, 4 pairs, the mqar preset's model, batch 64 at lr 1e-2 held constant. The
# held-out accuracy sits near 0.25 (the model copies some value of the sequence) until it learns which value
# goes with the key, some 1500 to 3000 steps in, then rises past 0.9 within a few hundred steps. The run
# goes on in chunks of 250 steps (--resume repeats a run exactly, so this is one run) until 512 held-out
# examples score 0.92, for at most 4000 steps.
LEARN=(--task mqar --dim 64 --seq-len 64 --kv-pairs 4 --batch 64 --lr 1e-2 --warmup 50 --schedule constant
       --ckpt-every 0 --log-every 250)
t0=$SECONDS
expect 0 "train 250 steps" -- $H train "${LEARN[@]}" --steps 250 --eval-every 0 --eval-batches 8 --out "$TMP/learn"
if [ -n "${HGRN2_SANITIZED:-}" ]; then
    # under the sanitizers (tests/asan.sh) the learning run's code is what matters, not its thousands of steps
    expect 0 "eval --task mqar after 250 steps (sanitizer build: no learning criterion)" -- \
        $H eval --task mqar --ckpt "$TMP/learn/model.ckpt" --examples 100
    finish
    exit
fi
s=250 acc=0
while :; do
    acc=$(tail -n 1 "$TMP/learn/log.tsv" | cut -f6)
    echo "step $s: held-out accuracy $acc"
    awk -v a="$acc" 'BEGIN { exit !(a >= 0.92) }' && break
    [ $s -ge 4000 ] && break
    s=$((s + 250))
    expect 0 "resume to step $s" -- $H train --resume --out "$TMP/learn" --steps $s --eval-every 0 --eval-batches 8 --log-every 250 || break
done
expect 0 "eval --task mqar on 1000 held-out examples" -- $H eval --task mqar --ckpt "$TMP/learn/model.ckpt" --examples 1000
last=$(tail -n 1 "$TMP/out")
checks=$((checks + 1))
if echo "$last" | grep -Eq '^accuracy (0(\.[0-9]+)?|1(\.0+)?)$' && awk -v a="${last#accuracy }" 'BEGIN { exit !(a >= 0.9) }'
then ok "MQAR T 64, 4 pairs, D 64 learnt on the CPU in $s steps, $((SECONDS - t0)) s: eval says '$last'"
else fail "MQAR did not reach 0.9 in $s steps ($((SECONDS - t0)) s): eval says '$last'"; fi
finish
