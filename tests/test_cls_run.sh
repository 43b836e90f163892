#!/usr/bin/env bash
# The classifier's commands end to end on the CPU: train and eval --task lra-* on a tiny generated ListOps
# and a tiny IMDb-layout folder written here, --resume ending in the identical checkpoint, Ctrl-C, every
# damaged checkpoint refused with its message (header fields changed behind a recomputed checksum), the
# language model's and the classifier's checkpoints told apart, the table of eval --task lra; image tasks on
# generated Pathfinder images, pixels and 4 x 4 patches, mixing and smoothing resumed exactly, and a version 2
# checkpoint read back.
. "$(dirname "$0")/lib.sh"
H=./hgrn2
export OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive     # a shared machine: no spinning threads

# ---- usage errors (2) ----
expect 0 "train --task lra-listops --help" -- $H train --task lra-listops --help
grep -q "usage: hgrn2 train --task lra-listops|lra-text|lra-retrieval" "$TMP/out" || fail "train --task lra-listops --help prints no usage line"
grep -q -- "--glu-ratio" "$TMP/out" || fail "the classifier's train help lacks --glu-ratio"
expect 0 "train --help mentions the lra tasks" -- $H train --help
grep -q "lra-listops" "$TMP/out" || fail "train --help does not list lra-listops"
expect 0 "eval --task lra --help" -- $H eval --task lra --help
grep -q -- "--runs DIR" "$TMP/out" || fail "eval --task lra --help lacks --runs"
expect 2 "train --task lra-nope" -- $H train --task lra-nope --data x; expect_msg "must be lra-listops, lra-text, lra-retrieval, lra-image, lra-pathfinder, lra-pathx, fashion-mnist or imagenet"
expect 2 "train --task lra-listops without --data" -- $H train --task lra-listops; expect_msg "needs --data DIR"
expect 2 "train --task lra-listops --profile on the CPU" -- $H train --task lra-listops --data x --profile; expect_msg "needs --device cuda"
expect 2 "train --norm nope" -- $H train --task lra-listops --data x --norm nope; expect_msg "--norm must be batch, layer or rms"
expect 2 "train --pos nope" -- $H train --task lra-listops --data x --pos nope; expect_msg "--pos must be"
expect 2 "train --weight-init nope" -- $H train --task lra-listops --data x --weight-init nope; expect_msg "--weight-init must be"
expect 2 "train --init with --weight-init" -- $H train --task lra-listops --data x --init y --weight-init torch
expect_msg "--weight-init cannot be given with --init: the model comes from the checkpoint"
expect 2 "train --dropout 1" -- $H train --task lra-listops --data x --dropout 1; expect_msg "--dropout needs a number"
expect 2 "train --glu-ratio 0" -- $H train --task lra-listops --data x --glu-ratio 0; expect_msg "--glu-ratio needs an integer"
expect 2 "train --epochs 0" -- $H train --task lra-listops --data x --epochs 0
expect 2 "train --sched-steps 0" -- $H train --task lra-listops --data x --sched-steps 0
expect 2 "train --expand-ratio 5 (does not divide 64)" -- $H train --task lra-listops --data x --expand-ratio 5; expect_msg "divide"
expect 2 "train an unknown flag" -- $H train --task lra-text --data x --mlp-width 3; expect_msg "unknown option"
expect 2 "train --ckpt without --resume" -- $H train --task lra-text --data x --ckpt y
expect 2 "eval --split nope" -- $H eval --task lra-listops --split nope
expect 2 "eval --task lra --ckpt" -- $H eval --task lra --ckpt x; expect_msg "takes no --ckpt"
expect 2 "eval --runs without --task lra" -- $H eval --task lra-text --runs x; expect_msg "for --task lra"
expect 1 "train on a folder without examples" -- $H train --task lra-listops --data "$TMP/none"; expect_msg "no training examples"

# ---- data: a tiny ListOps, and a tiny folder in the IMDb layout ----
expect 0 "generate a tiny ListOps" -- $H generate --task listops --out "$TMP/lo" --seed 5 --train-size 200 --val-size 50 --test-size 50
expect 0 "prepare it" -- $H prepare --task lra-listops --input "$TMP/lo" --out "$TMP/ex"
for s in train test; do
    for c in pos neg; do
        mkdir -p "$TMP/imdb/$s/$c"
        for i in 0 1 2 3 4 5 6 7; do
            if [ $c = pos ]; then w="great wonderful moving film, loved it"; else w="dull boring awful film, hated it"; fi
            printf '%s review %d: %s %s\n' "$s" "$i" "$w" "$(printf '%*s' $((i * 7)) '' | tr ' ' x)" > "$TMP/imdb/$s/$c/${i}_$((i % 10 + 1)).txt"
        done
    done
done
expect 0 "prepare the IMDb-layout folder" -- $H prepare --task lra-text --input "$TMP/imdb" --out "$TMP/tx"
expect 1 "train lra-text on ListOps examples" -- $H train --task lra-text --data "$TMP/ex" --out "$TMP/wrong"
expect_msg "does not hold lra-text examples"

# ---- training, and --resume repeating it exactly ----
SMALL=(--layers 1 --dim 16 --expand-ratio 4 --batch 8 --seq-len 256 --warmup 5 --lr 3e-3 --threads 2)
# the two initial schemes: the default (torch) is what --weight-init torch gives, normal starts elsewhere
first_loss() { sed -n 's/.*(first step \([0-9.]*\)).*/\1/p' "$TMP/out" | tail -n 1; }
for w in default torch normal; do
    flag=(); [ $w = default ] || flag=(--weight-init $w)
    expect 0 "train 1 step, weights $w" -- $H train --task lra-listops --data "$TMP/ex" "${SMALL[@]}" ${flag[@]+"${flag[@]}"} \
        --steps 1 --eval-every 0 --out "$TMP/w_$w"
    eval "first_$w=$(first_loss)"
done
[ -n "$first_default" ] && [ "$first_default" = "$first_torch" ] || fail "default and --weight-init torch start at losses $first_default and $first_torch"
[ -n "$first_normal" ] && [ "$first_normal" != "$first_torch" ] || fail "--weight-init normal and torch both start at loss $first_normal"
checks=$((checks + 1))
expect 2 "--resume --weight-init" -- $H train --resume --out "$TMP/w_torch" --weight-init normal; expect_msg "cannot change on --resume"
PROG=(--eval-every 10 --ckpt-every 7 --log-every 5)
expect 0 "train 30 steps" -- $H train --task lra-listops --data "$TMP/ex" "${SMALL[@]}" "${PROG[@]}" --steps 30 --out "$TMP/a"
grep -q "| model        | bidirectional classifier, HGRN2, 4 heads of key dim 4: 1 layers, dim 16" "$TMP/out" || fail "no model row in the startup table"
grep -q "an epoch is 25 steps" "$TMP/out" || fail "200 examples in batches of 8 are not 25 steps an epoch"
grep -q "^step     30/30 | epoch 2/2 | loss" "$TMP/out" || fail "no progress line of step 30"
grep -Eq "^val loss [0-9.]+, val accuracy (0|1)\.[0-9]+ at step 30" "$TMP/out" || fail "no final validation accuracy"
checks=$((checks + 1))
if head -n 1 "$TMP/a/log.tsv" | grep -q "^step	epoch	train_loss	train_acc	val_loss	val_acc	lr	grad_norm	test_loss	test_acc$" &&
   [ "$(wc -l < "$TMP/a/log.tsv")" = 31 ] &&
   awk -F'\t' 'NR > 1 && ($4 < 0 || $4 > 1 || ($1 % 10 == 0) != ($6 != "") || ($6 != "" && ($6 < 0 || $6 > 1))) { bad = 1 } END { exit bad }' "$TMP/a/log.tsv"
then ok "log.tsv: a row per step, accuracies in [0, 1], validation every 10 steps"
else fail "log.tsv's rows"; head -3 "$TMP/a/log.tsv"; fi
# the summary's train loss and accuracy: the means over the last epoch's steps (26 to 30), not the last step's
want=$(awk -F'\t' 'NR > 1 && $1 > 25 { l += $3; a += $4; n++ } END { printf "train loss %.4f \\(first step [0-9.]+\\), train acc %.3f \\(means over %d steps of epoch 2\\)", l / n, a / n, n }' "$TMP/a/log.tsv")
if grep -Eq "^done: 30 steps .*, $want" "$TMP/out"; then ok "done: the last epoch's mean train loss and accuracy"
else fail "done line: wanted '$want'"; grep "^done:" "$TMP/out"; fi
checks=$((checks + 1))
# scripts/cls_speed_ab.sh, the speed of two builds side by side: one program twice trains the same bits
if DEVICE=cpu STEPS=6 EVERY=2 ROUNDS=1 WORK="$TMP/ab" bash scripts/cls_speed_ab.sh $H $H "$TMP/ex" -- "${SMALL[@]}" \
        > "$TMP/ab.out" 2>&1 && [ "$(grep -c '^[AB] round 1: [0-9.]* and [0-9.]* examples/s$' "$TMP/ab.out")" = 2 ] &&
   grep -Eq "^mean examples/s: A [0-9.]+, B [0-9.]+, B/A [0-9.]+$" "$TMP/ab.out" &&
   grep -q "^logs: the same bits over 6 steps$" "$TMP/ab.out"
then ok "scripts/cls_speed_ab.sh: rates of both, the same bits"
else fail "scripts/cls_speed_ab.sh"; cat "$TMP/ab.out"; fi
checks=$((checks + 1))
expect 0 "train, stop at step 12" -- $H train --task lra-listops --data "$TMP/ex" "${SMALL[@]}" "${PROG[@]}" --steps 30 --stop-at 12 --out "$TMP/b"
grep -q "stopped at step 12 of 30" "$TMP/out" || fail "--stop-at 12 did not say where it stopped"
expect 2 "resume with --dim" -- $H train --resume --out "$TMP/b" --dim 32; expect_msg "cannot change on --resume"
expect 1 "resume as another task" -- $H train --resume --task lra-text --out "$TMP/b"; expect_msg "is a run of lra-listops"
expect 1 "resume on other data" -- $H train --resume --out "$TMP/b" --data "$TMP/tx"; expect_msg "does not hold lra-listops examples"
expect 0 "resume to step 30 (the task from the checkpoint)" -- $H train --resume --out "$TMP/b" --threads 2 "${PROG[@]}"
grep -q "resuming $TMP/b/model.ckpt at step 12 of 30" "$TMP/out" || fail "the resume did not start at step 12"
checks=$((checks + 1))
if cmp -s "$TMP/a/model.ckpt" "$TMP/b/model.ckpt" && cmp -s "$TMP/a/log.tsv" "$TMP/b/log.tsv"
then ok "the resumed run ends in the identical checkpoint and log"
else fail "the resumed run differs from the uninterrupted one"; diff "$TMP/a/log.tsv" "$TMP/b/log.tsv" | head -5; fi
expect 0 "resume a finished run with --epochs 2" -- $H train --resume --out "$TMP/b" --threads 2 --epochs 2 "${PROG[@]}"
grep -q "resuming .* at step 30 of 50" "$TMP/out" || fail "--epochs 2 on resume is not 50 steps"
expect 2 "resume with --steps below the steps done" -- $H train --resume --out "$TMP/b" --steps 3; expect_msg "below the 50 steps"

# --arch hgrn1: HGRN1's mixer both ways (expand ratio 1 whatever the preset's), a byte-exact resume, eval
H1=(--layers 1 --dim 16 --batch 8 --seq-len 256 --warmup 5 --lr 3e-3 --threads 2)
expect 0 "train --arch hgrn1 30 steps" -- $H train --task lra-listops --arch hgrn1 --data "$TMP/ex" "${H1[@]}" "${PROG[@]}" --steps 30 --out "$TMP/h1a"
grep -q "| model        | bidirectional classifier, HGRN1, state a vector of 16: 1 layers, dim 16" "$TMP/out" ||
    fail "the startup table's model row of hgrn1: $(grep '| model' "$TMP/out")"
checks=$((checks + 1))
h1first=$(sed -n 2p "$TMP/h1a/log.tsv" | cut -f3); h2first=$(sed -n 2p "$TMP/a/log.tsv" | cut -f3)
[ -n "$h1first" ] && [ "$h1first" != "$h2first" ] && ok "hgrn1 trains another model (first loss $h1first, hgrn2's $h2first)" ||
    fail "hgrn1's first loss '$h1first' is hgrn2's '$h2first'"
expect 0 "hgrn1, stop at step 12" -- $H train --task lra-listops --arch hgrn1 --data "$TMP/ex" "${H1[@]}" "${PROG[@]}" --steps 30 --stop-at 12 --out "$TMP/h1b"
expect 2 "resume the hgrn1 run with --arch hgrn2" -- $H train --resume --out "$TMP/h1b" --arch hgrn2; expect_msg "a resumed run keeps its architecture"
expect 0 "resume the hgrn1 run (--arch hgrn1 agrees)" -- $H train --resume --out "$TMP/h1b" --arch hgrn1 --threads 2 "${PROG[@]}"
same_h1=0; cmp -s "$TMP/h1a/model.ckpt" "$TMP/h1b/model.ckpt" && cmp -s "$TMP/h1a/log.tsv" "$TMP/h1b/log.tsv" && same_h1=1
checks=$((checks + 1))
[ $same_h1 = 1 ] && ok "hgrn1: the resumed run ends in the identical checkpoint and log" || fail "hgrn1: the resumed run differs"
expect 0 "eval the hgrn1 model" -- $H eval --task lra-listops --ckpt "$TMP/h1a/model.ckpt" --threads 2
tail -n 1 "$TMP/out" | grep -Eq '^accuracy [01]\.[0-9]{4}$' || fail "eval of hgrn1: $(tail -n 1 "$TMP/out")"
expect 2 "--arch hgrn1 --expand-ratio 4" -- $H train --task lra-listops --arch hgrn1 --expand-ratio 4 --data "$TMP/ex"
expect_msg "--expand-ratio 4 is not possible with --arch hgrn1"
expect 2 "--arch transformer on a classifier task" -- $H train --task lra-listops --arch transformer --data "$TMP/ex"
expect_msg "--arch must be hgrn2 or hgrn1 for a classifier task"
expect 2 "--arch rwkv" -- $H train --task lra-listops --arch rwkv --data "$TMP/ex"; expect_msg "--arch must be hgrn2 or hgrn1"

# --mixer-layer lra: HGRN2 with the authors' LRA layer; a byte-exact resume, eval, the refusals
expect 0 "train --mixer-layer lra 30 steps" -- $H train --task lra-listops --mixer-layer lra --data "$TMP/ex" "${SMALL[@]}" "${PROG[@]}" --steps 30 --out "$TMP/lra_a"
grep -q "| model        | bidirectional classifier, HGRN2 (the LRA layer), 4 heads of key dim 4: 1 layers, dim 16" "$TMP/out" ||
    fail "the startup table's model row of the LRA layer: $(grep '| model' "$TMP/out")"
checks=$((checks + 1))
lfirst=$(sed -n 2p "$TMP/lra_a/log.tsv" | cut -f3)
[ -n "$lfirst" ] && [ "$lfirst" != "$h2first" ] && ok "the LRA layer trains another model (first loss $lfirst)" || fail "the LRA layer's first loss '$lfirst'"
expect 0 "the LRA layer, stop at step 12" -- $H train --task lra-listops --mixer-layer lra --data "$TMP/ex" "${SMALL[@]}" "${PROG[@]}" --steps 30 --stop-at 12 --out "$TMP/lra_b"
expect 2 "resume with --mixer-layer" -- $H train --resume --out "$TMP/lra_b" --mixer-layer fla; expect_msg "cannot change on --resume"
expect 0 "resume the LRA layer's run" -- $H train --resume --out "$TMP/lra_b" --threads 2 "${PROG[@]}"
checks=$((checks + 1))
cmp -s "$TMP/lra_a/model.ckpt" "$TMP/lra_b/model.ckpt" && cmp -s "$TMP/lra_a/log.tsv" "$TMP/lra_b/log.tsv" &&
    ok "the LRA layer: the resumed run ends in the identical checkpoint and log" || fail "the LRA layer: the resumed run differs"
expect 0 "eval the LRA layer's model" -- $H eval --task lra-listops --ckpt "$TMP/lra_a/model.ckpt" --threads 2
tail -n 1 "$TMP/out" | grep -Eq '^accuracy [01]\.[0-9]{4}$' || fail "eval of the LRA layer: $(tail -n 1 "$TMP/out")"
expect 2 "--mixer-layer lra --arch hgrn1" -- $H train --task lra-listops --arch hgrn1 --mixer-layer lra --data "$TMP/ex"
expect_msg "--mixer-layer lra is a form of HGRN2's layer"
expect 2 "--mixer-layer other" -- $H train --task lra-listops --mixer-layer other --data "$TMP/ex"; expect_msg "mixer-layer"

# --scan-dtype bf16: the LRA layer in the authors' bf16 numerics; named at startup, kept by the checkpoint (a
# byte-exact resume, eval), another model than fp32's; refused where it does not apply
expect 0 "train --scan-dtype bf16 30 steps" -- $H train --task lra-listops --mixer-layer lra --scan-dtype bf16 --data "$TMP/ex" "${SMALL[@]}" "${PROG[@]}" --steps 30 --out "$TMP/l16_a"
grep -q "| model        | bidirectional classifier, HGRN2 (the LRA layer, its scans in bf16), 4 heads of key dim 4" "$TMP/out" ||
    fail "the startup table's model row of bf16 scans: $(grep '| model' "$TMP/out")"
checks=$((checks + 1))
cmp -s "$TMP/lra_a/log.tsv" "$TMP/l16_a/log.tsv" && fail "bf16 scans trained the fp32 layer's run" || ok "bf16 scans train another run than fp32's"
expect 0 "bf16 scans, stop at step 12" -- $H train --task lra-listops --mixer-layer lra --scan-dtype bf16 --data "$TMP/ex" "${SMALL[@]}" "${PROG[@]}" --steps 30 --stop-at 12 --out "$TMP/l16_b"
expect 2 "resume with --scan-dtype" -- $H train --resume --out "$TMP/l16_b" --scan-dtype fp32; expect_msg "cannot change on --resume"
expect 0 "resume the bf16 scans' run" -- $H train --resume --out "$TMP/l16_b" --threads 2 "${PROG[@]}"
checks=$((checks + 1))
cmp -s "$TMP/l16_a/model.ckpt" "$TMP/l16_b/model.ckpt" && cmp -s "$TMP/l16_a/log.tsv" "$TMP/l16_b/log.tsv" &&
    ok "bf16 scans: the resumed run ends in the identical checkpoint and log" || fail "bf16 scans: the resumed run differs"
expect 0 "eval the bf16 scans' model" -- $H eval --task lra-listops --ckpt "$TMP/l16_a/model.ckpt" --threads 2
tail -n 1 "$TMP/out" | grep -Eq '^accuracy [01]\.[0-9]{4}$' || fail "eval of bf16 scans: $(tail -n 1 "$TMP/out")"
expect 2 "--init with --scan-dtype" -- $H train --task lra-listops --init "$TMP/lra_a/model.ckpt" --scan-dtype bf16 --data "$TMP/ex" --out "$TMP/l16_c"
expect_msg "--scan-dtype cannot be given with --init"
expect 2 "--scan-dtype bf16 with the fla layer" -- $H train --task lra-listops --scan-dtype bf16 --data "$TMP/ex"
expect_msg "--scan-dtype bf16 is the numerics of the authors' layer: it needs --mixer-layer lra"
expect 2 "--scan-dtype bf16 with expand ratio 3" -- $H train --task lra-listops --mixer-layer lra --scan-dtype bf16 --dim 12 --expand-ratio 3 --data "$TMP/ex"
expect_msg "divides 32"
expect 2 "--scan-dtype fp16" -- $H train --task lra-listops --mixer-layer lra --scan-dtype fp16 --data "$TMP/ex"; expect_msg "scan-dtype"

# --pad-group: each group of G examples of a batch padded only to its longest document (short ListOps, 40 to 200
# tokens in 256 positions); the text presets' default (ListOps: 16), off with 0; named at startup, kept by the
# checkpoint (a byte-exact resume, eval), another run than without; refused on resume, free with --init (a
# training setting), refused for images read as 2-D grids
expect 0 "generate a tiny short ListOps" -- $H generate --task listops --out "$TMP/los" --seed 6 --min-len 40 --max-len 200 \
    --train-size 120 --val-size 20 --test-size 20
expect 0 "prepare it" -- $H prepare --task lra-listops --input "$TMP/los" --out "$TMP/exs"
expect 0 "the preset's groups: 16, the authors' examples per GPU" -- $H train --task lra-listops --data "$TMP/exs" \
    "${SMALL[@]}" --steps 1 --eval-every 0 --out "$TMP/pg_p"
grep -q "| padding      | each group of 16 examples of a batch to its longest document (--pad-group)" "$TMP/out" ||
    fail "lra-listops's preset without its padding groups: $(grep '| padding' "$TMP/out")"
expect 0 "train 30 steps on short documents, --pad-group 0" -- $H train --task lra-listops --pad-group 0 --data "$TMP/exs" \
    "${SMALL[@]}" "${PROG[@]}" --steps 30 --out "$TMP/pg_0"
grep -q "| padding" "$TMP/out" && fail "--pad-group 0 still named padding groups: $(grep '| padding' "$TMP/out")"
expect 0 "train --pad-group 2 30 steps" -- $H train --task lra-listops --pad-group 2 --data "$TMP/exs" "${SMALL[@]}" "${PROG[@]}" --steps 30 --out "$TMP/pg_a"
grep -q "| padding      | each group of 2 examples of a batch to its longest document (--pad-group)" "$TMP/out" ||
    fail "the startup table's padding row: $(grep '| padding' "$TMP/out")"
checks=$((checks + 1))
cmp -s "$TMP/pg_0/log.tsv" "$TMP/pg_a/log.tsv" && fail "--pad-group 2 trained the run without groups" || ok "padding groups train another run"
expect 0 "padding groups, stop at step 12" -- $H train --task lra-listops --pad-group 2 --data "$TMP/exs" "${SMALL[@]}" "${PROG[@]}" --steps 30 --stop-at 12 --out "$TMP/pg_b"
expect 2 "resume with --pad-group" -- $H train --resume --out "$TMP/pg_b" --pad-group 4; expect_msg "cannot change on --resume"
expect 0 "resume the padding groups' run" -- $H train --resume --out "$TMP/pg_b" --threads 2 "${PROG[@]}"
checks=$((checks + 1))
cmp -s "$TMP/pg_a/model.ckpt" "$TMP/pg_b/model.ckpt" && cmp -s "$TMP/pg_a/log.tsv" "$TMP/pg_b/log.tsv" &&
    ok "padding groups: the resumed run ends in the identical checkpoint and log" || fail "padding groups: the resumed run differs"
expect 0 "eval the padding groups' model" -- $H eval --task lra-listops --ckpt "$TMP/pg_a/model.ckpt" --threads 2
tail -n 1 "$TMP/out" | grep -Eq '^accuracy [01]\.[0-9]{4}$' || fail "eval of padding groups: $(tail -n 1 "$TMP/out")"
expect 0 "--init with --pad-group" -- $H train --task lra-listops --init "$TMP/pg_0/model.ckpt" --pad-group 3 --data "$TMP/exs" \
    --batch 8 --seq-len 256 --threads 2 --steps 2 --eval-every 0 --out "$TMP/pg_c"
grep -q "| padding      | each group of 3 examples" "$TMP/out" || fail "--init did not take --pad-group 3"
expect 2 "--pad-group -1" -- $H train --task lra-listops --pad-group -1 --data "$TMP/ex"; expect_msg "--pad-group needs an integer"

# --keep and best.ckpt (the best validation accuracy); non-finite steps skipped, then the stop
expect 0 "train 30 steps keeping 1" -- $H train --task lra-listops --data "$TMP/ex" "${SMALL[@]}" "${PROG[@]}" --steps 30 \
    --keep 1 --out "$TMP/keep"
kept=$(cd "$TMP/keep" && ls model_step*.ckpt | tr '\n' ' ')
checks=$((checks + 1)); [ "$kept" = "model_step30.ckpt " ] && [ -s "$TMP/keep/best.ckpt" ] && ok "--keep 1 leaves step 30 and best.ckpt" \
    || fail "--keep 1 left: $kept"
expect 0 "eval best.ckpt" -- $H eval --task lra-listops --ckpt "$TMP/keep/best.ckpt" --data "$TMP/ex"
expect 0 "resume the kept run to 36 steps without --keep" -- $H train --resume --out "$TMP/keep" --steps 36
checks=$((checks + 1)); grep -q "resuming with the progress flags of $TMP/keep/progress: --eval-every 10 --ckpt-every 7 --log-every 5 --keep 1" "$TMP/out" && ok "the flags taken from OUT/progress are named" || fail "no line naming the flags taken from OUT/progress"
kept=$(cd "$TMP/keep" && ls model_step*.ckpt | tr '\n' ' ')
checks=$((checks + 1)); [ "$kept" = "model_step36.ckpt " ] && ok "the classifier's progress flags from OUT/progress: step 36 kept" \
    || fail "after a resume from OUT/progress: $kept"
cp "$TMP/keep/best.ckpt" "$TMP/best_before.ckpt"
expect 0 "resume the kept run to 40 steps with --keep 0" -- $H train --resume --out "$TMP/keep" --steps 40 --keep 0
expect_msg "best.ckpt was kept by --keep, but this run has --keep 0"
cmp -s "$TMP/keep/best.ckpt" "$TMP/best_before.ckpt" || fail "a resume with --keep 0 changed best.ckpt"
# --eval-test: the test split scored at each validation, into log.tsv's last two columns; the same accuracy as
# eval --split test of the checkpoint; taken from OUT/progress on --resume
expect 0 "train 20 steps with --eval-test on" -- $H train --task lra-listops --data "$TMP/ex" "${SMALL[@]}" --steps 20 \
    --eval-every 10 --eval-test on --out "$TMP/et"
checks=$((checks + 1))
et_rows=$(awk -F'\t' 'NR == 1 { h = $9 "," $10 } NR > 1 && $10 != "" && $9 != "" { r = r $1 " " } END { print h ": " r }' "$TMP/et/log.tsv")
[ "$et_rows" = "test_loss,test_acc: 10 20 " ] && ok "--eval-test: test_loss and test_acc at steps 10 and 20" \
    || fail "--eval-test: log.tsv gives '$et_rows'"
et_acc=$(awk -F'\t' 'NR > 1 && $10 != "" { a = $10 } END { printf "%.4f", a }' "$TMP/et/log.tsv")
expect 0 "eval the --eval-test run's model on test" -- $H eval --task lra-listops --ckpt "$TMP/et/model.ckpt" --data "$TMP/ex" --threads 2
checks=$((checks + 1))
[ "$(tail -n 1 "$TMP/out")" = "accuracy $et_acc" ] && ok "the logged test accuracy is eval's ($et_acc)" \
    || fail "log.tsv's last test_acc $et_acc, eval: $(tail -n 1 "$TMP/out")"
expect 0 "resume the --eval-test run to 30 steps" -- $H train --resume --out "$TMP/et" --steps 30 --threads 2
checks=$((checks + 1))
grep -q "resuming with the progress flags of $TMP/et/progress: --eval-every 10 --eval-test on" "$TMP/out" &&
    [ -n "$(awk -F'\t' '$1 == 30 { print $10 }' "$TMP/et/log.tsv")" ] && ok "--eval-test on taken from OUT/progress" \
    || fail "--eval-test after a resume: $(grep resuming "$TMP/out")"
mkdir -p "$TMP/ex_notest" && cp "$TMP/ex/train.examples" "$TMP/ex/val.examples" "$TMP/ex_notest/"
expect 1 "--eval-test on without a test split" -- $H train --task lra-listops --data "$TMP/ex_notest" "${SMALL[@]}" --steps 2 \
    --eval-test on --out "$TMP/et2"
expect_msg "test.examples is missing"
expect 2 "--eval-test maybe" -- $H train --task lra-listops --data "$TMP/ex" --eval-test maybe; expect_msg "--eval-test must be on or off"
HGRN2_FAULT_NONFINITE=3-4 $H train --task lra-listops --data "$TMP/ex" "${SMALL[@]}" --steps 8 --max-bad-steps 2 \
    --out "$TMP/bad1" > "$TMP/out" 2> "$TMP/err"; rc=$?
checks=$((checks + 1))
[ $rc = 0 ] && [ "$(grep -c "skipped: loss nan" "$TMP/err")" = 2 ] && grep -q "2 steps skipped (non-finite)" "$TMP/out" \
    && ok "classifier: two non-finite steps skipped and counted" || fail "classifier skipping: exit $rc; $(cat "$TMP/err")"
HGRN2_FAULT_NONFINITE=3-20 $H train --task lra-listops --data "$TMP/ex" "${SMALL[@]}" --steps 8 --max-bad-steps 2 \
    --out "$TMP/bad2" > "$TMP/out" 2> "$TMP/err"; rc=$?
checks=$((checks + 1))
[ $rc = 1 ] && grep -q "training diverged: 3 steps in a row up to step 5" "$TMP/err" \
    && ok "classifier: three in a row stop the run" || fail "classifier stopping: exit $rc; $(cat "$TMP/err")"
# --max-bad-steps is a progress flag: a resume without it keeps the run's 2 (the default 10 would skip these 3)
HGRN2_FAULT_NONFINITE=10-20 $H train --resume --out "$TMP/bad1" --steps 14 > "$TMP/out" 2> "$TMP/err"; rc=$?
checks=$((checks + 1))
[ $rc = 1 ] && grep -q "resuming with the progress flags of $TMP/bad1/progress: .*--max-bad-steps 2" "$TMP/out" \
    && grep -q "training diverged: 3 steps in a row up to step 12" "$TMP/err" \
    && ok "classifier: a resume keeps --max-bad-steps from OUT/progress" \
    || fail "classifier, resumed --max-bad-steps: exit $rc; $(cat "$TMP/out" "$TMP/err")"

# ---- eval ----
expect 0 "eval --task lra-listops" -- $H eval --task lra-listops --ckpt "$TMP/a/model.ckpt" --threads 2
last=$(tail -n 1 "$TMP/out")
checks=$((checks + 1))
if echo "$last" | grep -Eq '^accuracy (0\.[0-9]{4}|1\.0000)$' && grep -q "lra-listops: test split of $TMP/ex, 50 examples" "$TMP/out"
then ok "eval ends with '$last' after the counts"; else fail "eval's last lines: $(tail -n 2 "$TMP/out")"; fi
acc_a=${last#accuracy }
expect 0 "eval without --task recognises the classifier" -- $H eval --ckpt "$TMP/a/model.ckpt" --split val --batch 5
tail -n 1 "$TMP/out" | grep -Eq '^accuracy [01]\.[0-9]{4}$' || fail "eval of the val split: $(tail -n 1 "$TMP/out")"
# --predictions and --per-class agree with the counts (batches of 7 leave a ragged last one of 1)
expect 0 "eval --predictions --per-class" -- $H eval --task lra-listops --ckpt "$TMP/a/model.ckpt" --batch 7 --threads 2 \
    --predictions "$TMP/pred.tsv" --per-class
right=$(sed -n 's/^lra-listops: test split .*: \([0-9]*\) right, loss \([0-9.]*\),.*/\1 \2/p' "$TMP/out")
checks=$((checks + 1))
if [ "$(head -n 1 "$TMP/pred.tsv")" = "$(printf 'index\tlabel\tpredicted\tprob\tloss')" ] && [ ! -e "$TMP/pred.tsv.tmp" ] &&
   awk -F'\t' -v want="$right" 'NR > 1 { n++; ok += $2 == $3; loss += $5; bad += $1 != NR - 2 || $3 < 0 || $3 > 9 || !($4 > 0 && $4 <= 1) }
        END { split(want, w, " "); d = loss / n - w[2]; exit !(n == 50 && ok == w[1] && !bad && d * d < 1e-10) }' "$TMP/pred.tsv"
then ok "--predictions: 50 lines in order, as many right and the same mean loss as the summary ($right)"
else fail "--predictions against the summary '$right':"; head -3 "$TMP/pred.tsv"; fi
checks=$((checks + 1))
if awk -v want="$right" '/^class  examples/ { t = 1; next } /^confusion/ { t = 0; c = 2; next } c == 2 { c = 1; next }
        t { n += $2; r += $3; as += $5 } c && /^ +[0-9]/ { for (j = 2; j <= NF; j++) { m += $j; if (j - 2 == $1) d += $j } }
        END { split(want, w, " "); exit !(n == 50 && as == 50 && r == w[1] && m == 50 && d == w[1]) }' "$TMP/out"
then ok "--per-class: the classes' examples, right and predicted sum to the split, the confusion's diagonal to the right ones"
else fail "--per-class:"; cat "$TMP/out"; fi
tail -n 1 "$TMP/out" | grep -Eq '^accuracy [01]\.[0-9]{4}$' || fail "--per-class: the last line is not the accuracy"
expect 2 "--predictions with --task lra" -- $H eval --task lra --predictions "$TMP/p2.tsv"; expect_msg "are for one model"
expect 1 "--predictions into a missing folder" -- $H eval --ckpt "$TMP/a/model.ckpt" --predictions "$TMP/no/such/p.tsv"
expect_msg "cannot write the predictions to $TMP/no/such/p.tsv.tmp"
expect 1 "eval --task lra-text of a ListOps model" -- $H eval --task lra-text --ckpt "$TMP/a/model.ckpt"
expect_msg "is a model of lra-listops, not of lra-text"
expect 1 "eval on data of another vocabulary" -- $H eval --task lra-listops --ckpt "$TMP/a/model.ckpt" --data "$TMP/tx"
expect_msg "does not hold the kind of examples"
expect 1 "sample of a classifier" -- $H sample --ckpt "$TMP/a/model.ckpt"; expect_msg "checkpoint of a classifier"
printf 'HGRN2CKP%0120d' 0 > "$TMP/lm.ckpt"
expect 1 "eval --task lra-listops of a language model's checkpoint" -- $H eval --task lra-listops --ckpt "$TMP/lm.ckpt"
expect_msg "checkpoint of a language model, not of a classifier"

# ---- damaged checkpoints: each refused with one message naming the field ----
# seal.py: write(dst, body) writes a checkpoint body followed by its checksum, as an honest writer would
cp tests/ckpt_seal.py "$TMP/seal.py"
# edit.py IN OUT WHAT INDEX VALUE: a copy of IN with one header integer (int), header float (float), parameter
# (param) or running statistic (stat) set, or a task name (task), and the checksum recomputed
cat > "$TMP/edit.py" <<'EOF'
import struct, sys
import seal
src, dst, what, idx, val = sys.argv[1:6]
b = bytearray(open(src, 'rb').read()[:-8])
nints = struct.unpack_from('<q', b, 16)[0]
fl_at = 24 + 8 * nints + 8
s_at = fl_at + 8 * struct.unpack_from('<q', b, 24 + 8 * nints)[0]
def skip_str(at): return at + 8 + struct.unpack_from('<q', b, at)[0]
p_at = skip_str(skip_str(s_at))
n = struct.unpack_from('<q', b, 24 + 8 * 24)[0]
i = int(idx)
if what == 'int': struct.pack_into('<q', b, 24 + 8 * i, int(val))
elif what == 'float': struct.pack_into('<d', b, fl_at + 8 * i, float(val))
elif what == 'param': struct.pack_into('<f', b, p_at + 4 * i, float(val))
elif what == 'stat': struct.pack_into('<f', b, p_at + 4 * n + 4 * i, float(val))
elif what == 'task': b[s_at + 8:s_at + 8 + len(val)] = val.encode()
seal.write(dst, b)
EOF
A="$TMP/a/model.ckpt"
checks=$((checks + 1))
if python3 "$TMP/edit.py" "$A" "$TMP/same.ckpt" int 0 18 && cmp -s "$A" "$TMP/same.ckpt"
then ok "the editing helper reproduces an unchanged checkpoint byte for byte"; else fail "the editing helper's checksum"; fi
bad() {   # bad DESCRIPTION MESSAGE WHAT INDEX VALUE
    python3 "$TMP/edit.py" "$A" "$TMP/bad.ckpt" "$3" "$4" "$5" || { fail "edit.py $3 $4 $5"; return; }
    expect 1 "$1" -- $H eval --task lra-listops --ckpt "$TMP/bad.ckpt" && expect_msg "checkpoint $TMP/bad.ckpt is corrupt: $2"
}
bad "norm 3" "norm = 3 is out of range \[0, 2\]" int 7 3
bad "dim 0" "dim = 0 is out of range \[1, 65536\]" int 1 0
bad "expand ratio 3 of dim 16" "expand-ratio 3 does not divide dim 16" int 3 3
bad "a GLU width of no whole ratio" "glu width 24 is not a multiple of dim 16" int 4 24
bad "classes 1" "classes = 1 is out of range" int 5 1
bad "3 documents" "documents = 3 is out of range \[1, 2\]" int 6 3
bad "batch 0" "batch = 0 is out of range" int 10 0
bad "epochs 0" "epochs = 0 is out of range" int 12 0
bad "steps done past the steps" "steps done = 31 is out of range \[0, 30\]" int 17 31
bad "a loader index that is not steps x batch" "loader index = 41 is out of range \[40, 40\]" int 22 41
bad "a loader seed of another run" "loader seed = 1 is out of range" int 20 1
bad "a parameter count of 2^40" "it says 1099511627776 parameters" int 24 1099511627776
bad "dropout 1.5" "dropout = 1.5 is out of range \[0, 0.99\]" float 0 1.5
bad "lr NaN" "lr = nan is out of range" float 2 nan
bad "beta2 1" "beta2 = 1 is out of range" float 6 1
bad "input 2" "input = 2 is out of range \[0, 1\]" int 27 2
bad "channels of a token model" "channels = 3 is out of range \[0, 0\]" int 28 3
bad "scan 3" "scan = 3 is out of range \[0, 2\]" int 29 3
bad "a grid for 1-D scans" "grid height = 4 is out of range \[0, 0\]" int 30 4
bad "patches of a token model" "patch = 2 is out of range \[0, 0\]" int 32 2
bad "a pixel deviation in a token model" "pixel std 0 = 0.5 is out of range \[0, 0\]" float 12 0.5
bad "a task of no trainer" "task = 'lra-nopeops' is none of" task 0 lra-nopeops
bad "a NaN parameter" "it holds a non-finite parameter" param 5 nan
bad "a negative running variance" "a BatchNorm running statistic is not finite, or a running variance is negative" stat 16 -1
# the augmentation fields: a token model has none (RandAugment 0, repeated augmentation 1, erasing 0)
bad "RandAugment on a token model" "randaugment = 1 is out of range \[0, 0\]" int 34 1
bad "repeated augmentation 0" "repeated augmentation = 0 is out of range \[1, 1\]" int 35 0
bad "an erasing probability on a token model" "erasing probability = 0.5 is out of range \[0, 0\]" float 15 0.5
# the targets and the schedule's stepping (version 6): a token model may smooth, never mix
bad "lr per epoch 2" "lr per epoch = 2 is out of range \[0, 1\]" int 36 2
bad "smoothing 1" "smoothing = 1 is out of range \[0, 0.99\]" float 16 1
bad "mixup on a token model" "mixup = 0.8 is out of range \[0, 0\]" float 17 0.8
bad "cutmix on a token model" "cutmix = 1 is out of range \[0, 0\]" float 18 1
bad "a switch probability of 2" "mix-switch = 2 is out of range \[0, 1\]" float 19 2
bad "a mixing probability of NaN" "mix-prob = nan is out of range" float 20 nan
bad "a negative warmup lr" "warmup-lr = -1 is out of range \[0, 10\]" float 21 -1
bad "a padding group of -1" "pad-group = -1 is out of range \[0, 1048576\]" int 40 -1
cp "$A" "$TMP/flip.ckpt"
printf '\x55' | dd of="$TMP/flip.ckpt" bs=1 seek=1000 conv=notrunc 2>/dev/null
expect 1 "a flipped byte" -- $H eval --task lra-listops --ckpt "$TMP/flip.ckpt"; expect_msg "checksum mismatch"
head -c 700 "$A" > "$TMP/short.ckpt"
expect 1 "a truncated checkpoint" -- $H eval --task lra-listops --ckpt "$TMP/short.ckpt"; expect_msg "truncated"
python3 "$TMP/edit.py" "$A" "$TMP/bad.ckpt" int 7 9
expect 1 "train --resume from a damaged checkpoint" -- $H train --resume --ckpt "$TMP/bad.ckpt" --out "$TMP/c"
expect_msg "norm = 9 is out of range"

# ---- Ctrl-C saves and stops; --resume continues ----
ctrl_c "$TMP/int" 4 $H train --task lra-listops --data "$TMP/ex" "${SMALL[@]}" --steps 1000000 --log-every 1 --out "$TMP/int"
expect 0 "resume after Ctrl-C" -- $H train --resume --out "$TMP/int" --steps "$(( $(wc -l < "$TMP/int/log.tsv") + 1 ))"

# ---- the table of eval --task lra: a ListOps run and a Text run, the other four missing ----
mkdir -p "$TMP/runs"
cp -r "$TMP/a" "$TMP/runs/lra-listops"
expect 0 "train a tiny lra-text run of hgrn1" -- $H train --task lra-text --arch hgrn1 --data "$TMP/tx" --layers 1 --dim 16 --batch 4 \
    --seq-len 64 --steps 6 --warmup 2 --out "$TMP/runs/lra-text"
grep -q "layer norm, none positions, dropout 0.1" "$TMP/out" || fail "the lra-text preset's norm, positions or dropout"
expect 0 "eval --task lra --runs" -- $H eval --task lra --runs "$TMP/runs"
pct=$(awk -v a="$acc_a" 'BEGIN { printf "%.2f", 100 * a }')
checks=$((checks + 1))
if grep -Eq "^ListOps +$pct +hgrn2 +60\.52 +59\.95$" "$TMP/out" && grep -Eq '^Text +[0-9]+\.[0-9]{2} +hgrn1 +88\.97 +88\.14$' "$TMP/out" &&
   grep -Eq '^Retrieval +missing +- +95\.07 +94\.23$' "$TMP/out" && grep -Eq '^Image +missing +- +89\.33 +88\.69$' "$TMP/out" &&
   grep -Eq '^Pathfinder +missing +- +93\.95 +92\.92$' "$TMP/out" && grep -Eq '^Path-X +missing +- +98\.12 +97\.50$' "$TMP/out" &&
   grep -Eq '^average +[0-9.]+ +74\.75 +74\.0[45] +partial: over the 2 of 6 tasks present \(the paper.s over all six: 87\.66 and 86\.91\)' "$TMP/out"
then ok "the table: ListOps (hgrn2) at eval's $pct, Text (hgrn1), four missing, a partial average"; else fail "the table:"; cat "$TMP/out"; fi
mkdir -p "$TMP/root"; ln -s "$(pwd)/$TMP/ex" "$TMP/root/lra-listops"; ln -s "$(pwd)/$TMP/tx" "$TMP/root/lra-text"
expect 0 "eval --task lra --data-root" -- $H eval --task lra --runs "$TMP/runs" --data-root "$TMP/root"
grep -q "lra-text: test split of $TMP/root/lra-text" "$TMP/out" || fail "--data-root was not used for lra-text"
expect 1 "eval --task lra of a missing folder" -- $H eval --task lra --runs "$TMP/nothere"; expect_msg "no folder of runs"
# more runs of a task: lra-listops-* beside lra-listops, a row per architecture with the mean and the range of
# its runs, and an average per architecture once a task has runs of both; folders that only look like runs of
# the task (no '-' after its name, nothing after the '-', no model.ckpt) are left out
expect 0 "train a second tiny ListOps run (seed 2)" -- $H train --task lra-listops --data "$TMP/ex" "${SMALL[@]}" --steps 30 \
    --seed 2 --out "$TMP/runs/lra-listops-seed2"
expect 0 "train a tiny ListOps run of hgrn1" -- $H train --task lra-listops --arch hgrn1 --data "$TMP/ex" --layers 1 --dim 16 --batch 8 \
    --seq-len 256 --warmup 5 --lr 3e-3 --threads 2 --steps 10 --out "$TMP/runs/lra-listops-hgrn1"
cp -r "$TMP/runs/lra-text" "$TMP/runs/lra-listopsx"
cp -r "$TMP/runs/lra-text" "$TMP/runs/lra-listops-"
mkdir -p "$TMP/runs/lra-listops-empty"
accs=()
for r in lra-listops lra-listops-seed2 lra-listops-hgrn1 lra-text; do
    t=lra-listops; [ "$r" = lra-text ] && t=lra-text
    expect 0 "eval $r" -- $H eval --task $t --ckpt "$TMP/runs/$r/model.ckpt"
    accs+=("$(tail -n 1 "$TMP/out" | awk '{ printf "%.2f", 100 * $2 }')")
done
expect 0 "eval --task lra with three ListOps runs" -- $H eval --task lra --runs "$TMP/runs"
read -r mean lo hi < <(awk -v a="${accs[0]}" -v b="${accs[1]}" 'BEGIN { m = (a + b) / 2; printf "%.2f %.2f %.2f\n", m, (a < b ? a : b), (a < b ? b : a) }')
avg1=$(awk -v a="${accs[2]}" -v b="${accs[3]}" 'BEGIN { printf "%.2f", (a + b) / 2 }')
checks=$((checks + 1))
if grep -Eq "^ListOps +$mean +hgrn2 +60\.52 +59\.95   mean of 2 runs: $lo to $hi\$" "$TMP/out" &&
   grep -Eq "^ListOps +${accs[2]} +hgrn1 +60\.52 +59\.95\$" "$TMP/out" && grep -Eq "^Text +${accs[3]} +hgrn1 +88\.97 +88\.14\$" "$TMP/out" &&
   grep -Eq "^average +$mean +hgrn2 +60\.52 +59\.95 +partial: over the 1 of 6 tasks" "$TMP/out" &&
   grep -Eq "^average +$avg1 +hgrn1 +74\.75 +74\.0[45] +partial: over the 2 of 6 tasks" "$TMP/out" &&
   [ "$(grep -c '^lra-listops: test split' "$TMP/out")" = 3 ] && [ "$(grep -c '^lra-text: test split' "$TMP/out")" = 1 ]
then ok "the table with more runs: ListOps hgrn2 the mean of 2 ($mean, $lo to $hi), hgrn1 apart, an average per architecture"
else fail "the table with more runs (accuracies ${accs[*]}):"; cat "$TMP/out"; fi
rm -rf "$TMP/runs/lra-listopsx" "$TMP/runs/lra-listops-" "$TMP/runs/lra-listops-empty"

# ---- an image task: generated Pathfinder images, pixels in, four 2-D scans over 32 x 32 ----
IMG=(--layers 1 --dim 8 --expand-ratio 4 --batch 4 --steps 4 --warmup 2 --eval-every 2 --ckpt-every 2 --eval-batches 1 --threads 2)
expect 0 "generate 40 Pathfinder images" -- $H generate --task pathfinder --size 32 --count 40 --seed 3 --out "$TMP/pf-raw"
expect 0 "prepare them" -- $H prepare --task lra-pathfinder --input "$TMP/pf-raw" --out "$TMP/pf"
expect 2 "lra-pathfinder refuses --seq-len" -- $H train --task lra-pathfinder --data "$TMP/pf" --seq-len 64; expect_msg "takes no --seq-len"
expect 1 "lra-pathfinder refuses token data" -- $H train --task lra-pathfinder --data "$TMP/ex" "${IMG[@]}" --out "$TMP/pf-bad"
expect_msg "does not hold images"
expect 1 "lra-pathfinder with --pad-group" -- $H train --task lra-pathfinder --data "$TMP/pf" "${IMG[@]}" --pad-group 2 --out "$TMP/pf-pg"
expect_msg "--pad-group pads documents of varying length: it needs 1-D scans"
expect 0 "train lra-pathfinder" -- $H train --task lra-pathfinder --data "$TMP/pf" "${IMG[@]}" --out "$TMP/pf1"
grep -q "four scans over 32 x 32" "$TMP/out" || fail "the startup table does not show the 2-D scans"
expect 0 "train lra-pathfinder to step 2" -- $H train --task lra-pathfinder --data "$TMP/pf" "${IMG[@]}" --out "$TMP/pf2" --stop-at 2
expect 0 "and resume it" -- $H train --resume --out "$TMP/pf2" --eval-every 2 --ckpt-every 2 --eval-batches 1 --threads 2
checks=$((checks + 1))
if cmp -s "$TMP/pf1/model.ckpt" "$TMP/pf2/model.ckpt" && cmp -s "$TMP/pf1/log.tsv" "$TMP/pf2/log.tsv"
then ok "an image run resumed ends in the identical checkpoint and log"; else fail "the resumed image run differs"; fi
expect 0 "eval --task lra-pathfinder" -- $H eval --task lra-pathfinder --ckpt "$TMP/pf1/model.ckpt" --threads 2
checks=$((checks + 1))
if tail -n 1 "$TMP/out" | grep -Eq '^accuracy (0|1)\.[0-9]{4}$'; then ok "it ends with the accuracy"; else fail "no accuracy line"; fi
expect 1 "eval --seq-len of an image model alone" -- $H eval --task lra-pathfinder --ckpt "$TMP/pf1/model.ckpt" --seq-len 64
expect_msg "is an image model: its documents are its images, so --seq-len does not apply"
# the table with a token task and an image task: --seq-len cuts the ListOps documents and leaves the images whole
cp -r "$TMP/pf1" "$TMP/runs/lra-pathfinder"
expect 0 "eval --task lra --seq-len over a token run and an image run" -- $H eval --task lra --runs "$TMP/runs" --seq-len 64
checks=$((checks + 1))
if grep -q "^lra-listops: test split of .*(up to 64 tokens)" "$TMP/out" && grep -Eq "^Pathfinder +[0-9]+\.[0-9]{2} +hgrn2" "$TMP/out"
then ok "the table cuts the token task to 64 tokens and scores the image task as it is"
else fail "the table with --seq-len:"; cat "$TMP/out"; fi

# ---- patches: the 32 x 32 images as 8 x 8 patches of 4 x 4 ----
expect 2 "--patch on a token task" -- $H train --task lra-listops --data "$TMP/ex" --patch 2; expect_msg "--patch is for the image tasks"
expect 2 "--patch 0" -- $H train --task lra-pathfinder --data "$TMP/pf" --patch 0; expect_msg "--patch needs an integer"
expect 1 "--patch 5 of 32 x 32 images" -- $H train --task lra-pathfinder --data "$TMP/pf" "${IMG[@]}" --patch 5 --out "$TMP/pp-bad"
expect_msg "--patch 5 does not divide the images of $TMP/pf/train.examples (32 x 32)"
expect 0 "train lra-pathfinder --patch 4" -- $H train --task lra-pathfinder --data "$TMP/pf" "${IMG[@]}" --patch 4 --out "$TMP/pp1"
grep -q "| input        | pixels in 4 x 4 patches: 8 x 8 = 64 tokens of 16 values; four scans over 8 x 8" "$TMP/out" \
    || fail "the startup table does not show the patches: $(grep '| input' "$TMP/out")"
expect 0 "train it to step 2" -- $H train --task lra-pathfinder --data "$TMP/pf" "${IMG[@]}" --patch 4 --out "$TMP/pp2" --stop-at 2
expect 2 "resume with --patch" -- $H train --resume --out "$TMP/pp2" --patch 2; expect_msg "cannot change on --resume"
expect 0 "and resume it" -- $H train --resume --out "$TMP/pp2" --eval-every 2 --ckpt-every 2 --eval-batches 1 --threads 2
checks=$((checks + 1))
if cmp -s "$TMP/pp1/model.ckpt" "$TMP/pp2/model.ckpt" && cmp -s "$TMP/pp1/log.tsv" "$TMP/pp2/log.tsv"
then ok "a patch run resumed ends in the identical checkpoint and log"; else fail "the resumed patch run differs"; fi
checks=$((checks + 1))
if cmp -s "$TMP/pf1/model.ckpt" "$TMP/pp1/model.ckpt"; then fail "--patch 4 trained the same model as pixels"; else ok "--patch 4 is another model than pixels"; fi
expect 0 "eval the patch model" -- $H eval --task lra-pathfinder --ckpt "$TMP/pp1/model.ckpt" --threads 2
checks=$((checks + 1))
if grep -q "lra-pathfinder: test split of $TMP/pf, [0-9]* examples (64 tokens of 4 x 4 patches)" "$TMP/out" &&
   tail -n 1 "$TMP/out" | grep -Eq '^accuracy (0|1)\.[0-9]{4}$'
then ok "eval of a patch model: 64 tokens, then the accuracy"; else fail "eval of the patch model: $(tail -n 2 "$TMP/out")"; fi
# mixing, smoothing and the per-epoch schedule on an image task of example files: resumed to the same bytes
MIX=(--mixup 0.8 --cutmix 1 --smoothing 0.1 --lr-per-epoch on)
expect 0 "train lra-pathfinder --patch 4 with mixing" -- $H train --task lra-pathfinder --data "$TMP/pf" "${IMG[@]}" --patch 4 "${MIX[@]}" --out "$TMP/pm1"
grep -q "| targets      | mixup alpha 0.8 or cutmix alpha 1 (cutmix with probability 0.5), every batch; label smoothing 0.1" "$TMP/out" \
    || fail "the startup table's targets: $(grep '| targets' "$TMP/out")"
expect 0 "the same to step 2" -- $H train --task lra-pathfinder --data "$TMP/pf" "${IMG[@]}" --patch 4 "${MIX[@]}" --out "$TMP/pm2" --stop-at 2
expect 0 "and resumed" -- $H train --resume --out "$TMP/pm2" --eval-every 2 --ckpt-every 2 --eval-batches 1 --threads 2
checks=$((checks + 1))
if cmp -s "$TMP/pm1/model.ckpt" "$TMP/pm2/model.ckpt" && cmp -s "$TMP/pm1/log.tsv" "$TMP/pm2/log.tsv"
then ok "a mixed run resumed ends in the identical checkpoint and log"; else fail "the resumed mixed run differs"; fi
checks=$((checks + 1))
cmp -s "$TMP/pm1/log.tsv" "$TMP/pp1/log.tsv" && fail "mixing changed nothing" || ok "mixing changes the run"
expect 0 "label smoothing on a token task" -- $H train --task lra-listops --data "$TMP/ex" "${SMALL[@]}" --steps 3 --smoothing 0.1 --out "$TMP/sm"
grep -q "| targets      | no mixup or cutmix; label smoothing 0.1" "$TMP/out" || fail "the token task's targets line: $(grep '| targets' "$TMP/out")"
# ---- --init: a new run from a checkpoint's weights ----
expect 2 "--init with --layers" -- $H train --task lra-listops --data "$TMP/ex" --init "$TMP/a/model.ckpt" --layers 2
expect_msg "--layers cannot be given with --init: the model comes from the checkpoint"
expect 2 "--init with --resume" -- $H train --resume --out "$TMP/a" --init "$TMP/a/model.ckpt"; expect_msg "exclude each other"
expect 1 "--init from a missing file" -- $H train --task lra-listops --data "$TMP/ex" --init "$TMP/none.ckpt" --out "$TMP/in0"
expect_msg "$TMP/none.ckpt"
# the held-out loss of the checkpoint, of a run started from it (one step at a negligible lr: only BatchNorm's
# running statistics move), and of a fresh model: the first two agree, the third does not
ONE=(--steps 1 --lr 1e-9 --warmup 0 --eval-every 0 --batch 8 --seq-len 256 --threads 2)
expect 0 "eval the ListOps run on val" -- $H eval --ckpt "$TMP/a/model.ckpt" --split val --seq-len 256 --threads 2
l_ckpt=$(sed -n 's/.* right, loss \([0-9.]*\),.*/\1/p' "$TMP/out")
expect 0 "train --init from it, dropout 0.2" -- $H train --task lra-listops --data "$TMP/ex" --init "$TMP/a/model.ckpt" "${ONE[@]}" \
    --dropout 0.2 --out "$TMP/in1"
grep -q "^initialising from the weights of $TMP/a/model.ckpt (a model of lra-listops after 30 steps)" "$TMP/out" ||
    fail "--init does not say where its weights come from"
grep -q "1 layers, dim 16, GLU 16, batch norm, sinusoidal positions, dropout 0.2 (input 0.1)" "$TMP/out" ||
    fail "the model row of an --init run: $(grep '| model' "$TMP/out")"
l_init=$(sed -n 's/^val loss \([0-9.]*\), .*/\1/p' "$TMP/out")
expect 0 "the same from a fresh model" -- $H train --task lra-listops --data "$TMP/ex" "${SMALL[@]}" "${ONE[@]}" --out "$TMP/in2"
l_fresh=$(sed -n 's/^val loss \([0-9.]*\), .*/\1/p' "$TMP/out")
checks=$((checks + 1))
if [ -n "$l_ckpt" ] && [ -n "$l_init" ] && [ -n "$l_fresh" ] &&
   awk -v c="$l_ckpt" -v i="$l_init" -v f="$l_fresh" 'BEGIN { d = c - i; e = c - f; exit !(d * d < 1e-4 && e * e > 1e-2) }'
then ok "an --init run starts from the checkpoint's model (val loss $l_init against its $l_ckpt; fresh $l_fresh)"
else fail "--init: val loss of the checkpoint '$l_ckpt', of the --init run '$l_init', of a fresh model '$l_fresh'"; fi
expect 1 "--init of a Text model on ListOps data" -- $H train --task lra-listops --data "$TMP/ex" --init "$TMP/runs/lra-text/model.ckpt" \
    "${ONE[@]}" --out "$TMP/in3"
expect_msg "does not have the vocabulary of the data $TMP/runs/lra-text/model.ckpt was trained on"
expect 1 "--init of a token model on images" -- $H train --task lra-pathfinder --data "$TMP/pf" --init "$TMP/a/model.ckpt" --out "$TMP/in4"
expect_msg "holds a model of lra-listops, which reads token ids; --task lra-pathfinder reads pixels"
expect 0 "--init of the patch model on its images" -- $H train --task lra-pathfinder --data "$TMP/pf" --init "$TMP/pp1/model.ckpt" \
    --batch 4 --steps 2 --warmup 1 --eval-every 0 --eval-batches 1 --threads 2 --out "$TMP/in5"
grep -q "| input        | pixels in 4 x 4 patches: 8 x 8 = 64 tokens of 16 values; four scans over 8 x 8" "$TMP/out" \
    || fail "the --init image run's input row: $(grep '| input' "$TMP/out")"

P="$TMP/pp1/model.ckpt"
badp() {   # badp DESCRIPTION MESSAGE INDEX VALUE: a header integer of the patch model's checkpoint
    python3 "$TMP/edit.py" "$P" "$TMP/badp.ckpt" int "$3" "$4" || { fail "edit.py int $3 $4"; return; }
    expect 1 "$1" -- $H eval --task lra-pathfinder --ckpt "$TMP/badp.ckpt" && expect_msg "checkpoint $TMP/badp.ckpt is corrupt: $2"
}
badp "patch 3 of 32 x 32 images" "patch 3 does not divide the 32 x 32 images" 32 3
badp "patch 1 stored" "patch = 1 (a model without patches stores 0)" 32 1
badp "patch 2048" "patch = 2048 is out of range \[0, 1024\]" 32 2048
badp "no grid for patches" "grid height = 0 is out of range \[1, 16777216\]" 30 0
badp "an arch that is none" "arch = 5 is neither hgrn2 (0) nor hgrn1 (1)" 37 5
badp "hgrn1 with expand ratio 4" "an hgrn1 model with expand-ratio 4 (HGRN1's is 1)" 37 1
badp "a mixer layer that is none" "mixer layer = 2 is out of range \[0, 1\]" 38 2
badp "bf16 scans for the fla layer" "scan dtype = 1 is out of range \[0, 0\]" 39 1
# version 2 files (no patch field, no final-norm field, no augmentation, target, schedule or arch fields) still read, as models without patches: the
# ListOps checkpoint written back in version 2's layout evaluates to the same accuracy
cat > "$TMP/v2.py" <<'EOF2'
import struct, sys
import seal
src, dst = sys.argv[1:3]
b = bytearray(open(src, 'rb').read()[:-8])
assert struct.unpack_from('<q', b, 8)[0] == 10 and struct.unpack_from('<q', b, 16)[0] == 41
# patch 0, final norm 0, RandAugment 0, repeated augmentation 1, per-step schedule, HGRN2, fla, fp32 scans, no
# padding groups; 23 floats, seven of them
# (erasing, smoothing, mixup, cutmix, switch, mixing probability, warmup lr) at their values of no augmentation,
# then the input dropout (the preset's 0.1), which version 2 reads as the dropout (0): evaluation uses neither
assert [struct.unpack_from('<q', b, 24 + 8 * i)[0] for i in range(32, 41)] == [0, 0, 0, 1, 0, 0, 0, 0, 0]
fl = 24 + 8 * 41
assert struct.unpack_from('<q', b, fl)[0] == 23
assert [struct.unpack_from('<d', b, fl + 8 + 8 * i)[0] for i in range(15, 23)] == [0, 0, 0, 0, 0.5, 1, 1e-6, 0.1]
assert struct.unpack_from('<d', b, fl + 8)[0] == 0
del b[fl + 8 + 8 * 15:fl + 8 + 8 * 23]
struct.pack_into('<q', b, fl, 15)
struct.pack_into('<q', b, 8, 2); struct.pack_into('<q', b, 16, 32)
del b[24 + 8 * 32:24 + 8 * 41]
seal.write(dst, b)
EOF2
# (a run without padding groups, which version 2 cannot hold)
expect 0 "eval the run without padding groups" -- $H eval --task lra-listops --ckpt "$TMP/pg_0/model.ckpt" --threads 2
acc_0=$(tail -n 1 "$TMP/out"); acc_0=${acc_0#accuracy }
checks=$((checks + 1))
if python3 "$TMP/v2.py" "$TMP/pg_0/model.ckpt" "$TMP/v2.ckpt"; then ok "a version 2 copy of a ListOps checkpoint"; else fail "v2.py"; fi
expect 0 "eval a version 2 checkpoint" -- $H eval --task lra-listops --ckpt "$TMP/v2.ckpt" --threads 2
checks=$((checks + 1))
[ "$(tail -n 1 "$TMP/out")" = "accuracy $acc_0" ] && ok "version 2 reads as the same model (accuracy $acc_0)" \
    || fail "the version 2 checkpoint: $(tail -n 1 "$TMP/out"), expected accuracy $acc_0"
finish
