#!/usr/bin/env bash
# train --task fashion-mnist on the real Fashion-MNIST (Debian's dataset-fashion-mnist, installed by make setup),
# on the CPU: the preset's 4 x 4 patches (7 x 7 = 49 tokens) with a model made tiny by flags, trained for three
# epochs, must reach a test accuracy of 0.80 (a linear model of the pixels gets about 0.84; a model that learns
# nothing 0.10, one that reads the patches scrambled much less); eval ends with the accuracy; --resume of a patch
# run repeats it exactly. The data missing: SKIP (test_images.c does the same).
. "$(dirname "$0")/lib.sh"
H=./hgrn2
export OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive
FM=/usr/share/datasets/fashion-mnist
if [ ! -s "$FM/train-images-idx3-ubyte.gz" ] && [ ! -s "$FM/train-images-idx3-ubyte" ]; then
    echo "SKIP the real Fashion-MNIST: $FM not found (make setup installs dataset-fashion-mnist)"
    finish; exit
fi
expect 0 "prepare --task fashion-mnist" -- $H prepare --task fashion-mnist --input "$FM" --out "$TMP/fm"
# one layer of dim 32 (8 heads of key dim 4), no dropout, batch 64, lr 1e-2 decaying to 0 over the 3 epochs;
# under the sanitizers (tests/asan.sh) the run's code is what matters, not its 2,532 steps: 100 of them, and no
# accuracy criterion
TINY=(--layers 1 --dim 32 --expand-ratio 4 --glu-ratio 2 --dropout 0 --batch 64 --lr 1e-2 --warmup 50 --threads 2)
LEN=(--epochs 3) WHAT="3 epochs"
[ -n "${HGRN2_SANITIZED:-}" ] && LEN=(--steps 100) WHAT="100 steps (sanitizer build)"
expect 0 "train --task fashion-mnist, tiny, $WHAT" -- $H train --task fashion-mnist --data "$TMP/fm" "${TINY[@]}" \
    "${LEN[@]}" --sched-steps 2532 --eval-every 0 --log-every 500 --out "$TMP/run"
sed 's/^/    /' "$TMP/out" | grep -E "^    (\\| input|\\| batch|done|val)"
grep -q "| input        | pixels in 4 x 4 patches: 7 x 7 = 49 tokens of 16 values; four scans over 7 x 7" "$TMP/out" \
    || fail "the startup table does not show the preset's patches"
grep -q "random crops (padding 2) and flips; an epoch is 844 steps" "$TMP/out" || fail "the batch row: $(grep '| batch' "$TMP/out")"
expect 0 "eval --task fashion-mnist" -- $H eval --task fashion-mnist --ckpt "$TMP/run/model.ckpt" --threads 2
cat "$TMP/out"
acc=$(tail -n 1 "$TMP/out" | sed -n 's/^accuracy \([01]\.[0-9]\{4\}\)$/\1/p')
checks=$((checks + 1))
want=0.80
[ -n "${HGRN2_SANITIZED:-}" ] && want=0
if grep -q "fashion-mnist: test split of $TMP/fm, 10000 examples (49 tokens of 4 x 4 patches)" "$TMP/out" &&
   [ -n "$acc" ] && awk -v a="$acc" -v w=$want 'BEGIN { exit !(a >= w) }'
then ok "test accuracy $acc >= $want on the 10,000 test images"; else fail "test accuracy '${acc}' (want >= $want)"; fi
expect 0 "eval --task lra ignores the fashion-mnist run" -- $H eval --task lra --runs "$TMP"
grep -q "no task has a checkpoint" "$TMP/out" || fail "eval --task lra counted a fashion-mnist run: $(tail -n 1 "$TMP/out")"
# --resume of a patch run: 40 steps straight, or 15 then 25, end in the same bytes
SHORT=("${TINY[@]}" --steps 40 --eval-every 20 --eval-batches 2 --ckpt-every 10 --log-every 10)
expect 0 "40 steps" -- $H train --task fashion-mnist --data "$TMP/fm" "${SHORT[@]}" --out "$TMP/a"
expect 0 "15 steps" -- $H train --task fashion-mnist --data "$TMP/fm" "${SHORT[@]}" --stop-at 15 --out "$TMP/b"
expect 0 "resumed to 40" -- $H train --resume --out "$TMP/b" --eval-every 20 --eval-batches 2 --ckpt-every 10 --log-every 10 --threads 2
checks=$((checks + 1))
if cmp -s "$TMP/a/model.ckpt" "$TMP/b/model.ckpt" && cmp -s "$TMP/a/log.tsv" "$TMP/b/log.tsv"
then ok "the resumed fashion-mnist run ends in the identical checkpoint and log"; else fail "the resumed fashion-mnist run differs"; fi
expect 1 "--patch 3 of 28 x 28" -- $H train --task fashion-mnist --data "$TMP/fm" "${TINY[@]}" --patch 3 --out "$TMP/c"
expect_msg "--patch 3 does not divide the images of $TMP/fm/train.examples (28 x 28)"
# --init across image sizes and classes: the Fashion-MNIST model (4 x 4 patches of 28 x 28, 10 classes)
# fine-tuned on 32 x 32 Pathfinder images reads 8 x 8 patches through a new head of 2 classes; a model of 8 x 8
# patches cannot read 28 x 28 images
expect 0 "generate 40 Pathfinder images" -- $H generate --task pathfinder --size 32 --count 40 --seed 3 --out "$TMP/pf-raw"
expect 0 "prepare them" -- $H prepare --task lra-pathfinder --input "$TMP/pf-raw" --out "$TMP/pf"
IMG=(--batch 4 --steps 2 --warmup 1 --eval-every 0 --eval-batches 1 --threads 2)
expect 0 "--init of the Fashion-MNIST model on Pathfinder" -- $H train --task lra-pathfinder --data "$TMP/pf" \
    --init "$TMP/run/model.ckpt" "${IMG[@]}" --out "$TMP/pf-ft"
grep -q "| input        | pixels in 4 x 4 patches: 8 x 8 = 64 tokens of 16 values; four scans over 8 x 8" "$TMP/out" \
    || fail "the fine-tuned model's input row: $(grep '| input' "$TMP/out")"
grep -q "^a new head for 2 classes (the checkpoint's model has 10), initialised as a fresh model's" "$TMP/out" \
    || fail "two classes where the checkpoint has ten: no new head"
expect 0 "a Pathfinder model of 8 x 8 patches" -- $H train --task lra-pathfinder --data "$TMP/pf" --layers 1 --dim 8 --expand-ratio 4 \
    --patch 8 "${IMG[@]}" --out "$TMP/pf8"
expect 1 "--init of it on 28 x 28 images" -- $H train --task fashion-mnist --data "$TMP/fm" --init "$TMP/pf8/model.ckpt" "${IMG[@]}" \
    --out "$TMP/c"
expect_msg "the checkpoint's patch 8 does not divide the images of $TMP/fm/train.examples (28 x 28)"
expect 1 "fashion-mnist without data" -- $H train --task fashion-mnist --data "$TMP/none" --out "$TMP/c"
expect_msg "no training examples"
finish
