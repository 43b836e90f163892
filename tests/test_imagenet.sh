#!/usr/bin/env bash
# train/eval --task imagenet on a tiny JPEG folder layout written here (3 classes of 12 training and 4
# validation images, made by test_jpeg --make-images), on the CPU at --image-size 32 with 8 x 8 patches and a
# model made tiny by flags: the startup table, resume byte-identity, the same checkpoint at 1 and 3 loader
# threads (batches depend on the seed and the step alone), eval's last two lines (top5, then accuracy, equal to
# the run's final validation), bench's two rates, and the refusals. A build without libjpeg-turbo: SKIP.
. "$(dirname "$0")/lib.sh"
H=./hgrn2
export OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive
G=tests/bin/test_jpeg
[ -x $G ] || make -s $G >/dev/null 2>&1
if ! $G --make-images "$TMP/img" 3 12 4 2>/dev/null; then
    echo "SKIP: no JPEG support in this build (tests/bin/test_jpeg --make-images failed)"
    finish; exit
fi
expect 0 "prepare --task imagenet" -- $H prepare --task imagenet --input "$TMP/img" --out "$TMP/data"
TINY=(--task imagenet --data "$TMP/data" --image-size 32 --patch 8 --layers 1 --dim 16 --expand-ratio 8 --batch 8
      --lr 3e-3 --threads 2 --eval-every 4 --log-every 1)

# ---- a run, and the startup table ----
expect 0 "train --task imagenet, 10 steps, 3 loader threads" -- $H train "${TINY[@]}" --steps 10 --loader-threads 3 --out "$TMP/a"
cp "$TMP/out" "$TMP/a.out"
grep -E "^\| (input|batch|loader|optimizer|model)" "$TMP/a.out" | sed 's/^/    /'
checks=$((checks + 1))
if grep -q "| input        | RGB pixels in 8 x 8 patches: 4 x 4 = 16 tokens of 192 values; scans both ways along the 16 patches" "$TMP/a.out" &&
   grep -q "(the final one a plain RMSNorm)" "$TMP/a.out" &&
   grep -q "| batch        | 8 images of 32 x 32 x 3; an epoch is 5 steps" "$TMP/a.out" &&
   grep -q "| loader       | 3 decoding threads" "$TMP/a.out" &&
   grep -q "| augment      | RandAugment m9 mstd0.5 n2, random erasing p 0.25, repeated augmentation x3" "$TMP/a.out" &&
   grep -q "AdamW lr 0.003 (warmup 100, cosine to 1e-05 over 1500 steps), betas (0.9, 0.98), eps 1e-08, wd 0.05, clip 5" "$TMP/a.out"
then ok "the startup table: patches, the plain final norm, batch, loader, augmentations, the recipe's optimizer"
else fail "the startup table:"; sed -n 1,16p "$TMP/a.out"; fi
grep -q "val top5" "$TMP/a.out" && ok "validation logs top-5" || fail "no val top5 in the progress lines"
checks=$((checks + 1))

# ---- loader threads change nothing; --resume repeats the run exactly ----
expect 0 "the same run, 1 loader thread" -- $H train "${TINY[@]}" --steps 10 --loader-threads 1 --out "$TMP/b"
checks=$((checks + 1))
if cmp -s "$TMP/a/model.ckpt" "$TMP/b/model.ckpt" && cmp -s "$TMP/a/log.tsv" "$TMP/b/log.tsv"
then ok "1 and 3 loader threads: identical checkpoints and logs"; else fail "1 and 3 loader threads differ"; fi
expect 0 "stop at step 3 (across an epoch's end later)" -- $H train "${TINY[@]}" --steps 10 --stop-at 3 --loader-threads 2 --out "$TMP/c"
expect 0 "--resume to step 10" -- $H train --resume --out "$TMP/c" --threads 2 --loader-threads 2 --eval-every 4 --log-every 1
grep -q "resuming $TMP/c/model.ckpt at step 3 of 10" "$TMP/out" && ok "resume says where" || fail "resume line: $(head -1 "$TMP/out")"
checks=$((checks + 1))
if cmp -s "$TMP/a/model.ckpt" "$TMP/c/model.ckpt" && cmp -s "$TMP/a/log.tsv" "$TMP/c/log.tsv"
then ok "--resume: the checkpoint and log.tsv of the uninterrupted run, byte for byte"; else fail "--resume differs"; fi
# a different seed must give another model (the comparisons above can fail)
expect 0 "another seed" -- $H train "${TINY[@]}" --steps 10 --seed 7 --out "$TMP/d"
checks=$((checks + 1))
cmp -s "$TMP/a/model.ckpt" "$TMP/d/model.ckpt" && fail "seed 7 made the same checkpoint" || ok "another seed, another model"

# ---- the augmentations: off, another run; their settings are stored, so a resumed run draws as they say ----
NOAUG=(--randaugment off --reprob 0 --repeated-aug 1)
expect 0 "augmentations off" -- $H train "${TINY[@]}" --steps 10 "${NOAUG[@]}" --out "$TMP/f"
grep -q "| augment      | no RandAugment, no random erasing, no repeated augmentation" "$TMP/out" &&
    ok "the startup table says they are off" || fail "augment line: $(grep augment "$TMP/out")"
checks=$((checks + 1))
cmp -s "$TMP/a/log.tsv" "$TMP/f/log.tsv" && fail "the augmentations changed nothing" || ok "the augmentations change the run"
checks=$((checks + 1))
expect 0 "4 steps with the augmentations" -- $H train "${TINY[@]}" --steps 4 --out "$TMP/g0"
for one in "--randaugment off" "--reprob 0" "--repeated-aug 1"; do
    expect 0 "only $one" -- $H train "${TINY[@]}" --steps 4 $one --out "$TMP/g"
    checks=$((checks + 1))
    cmp -s "$TMP/g/log.tsv" "$TMP/g0/log.tsv" && fail "$one changed nothing" || ok "$one: another run"
    rm -rf "$TMP/g"
done
expect 0 "augmentations off, stop at step 3" -- $H train "${TINY[@]}" --steps 10 "${NOAUG[@]}" --stop-at 3 --out "$TMP/h"
expect 0 "--resume it" -- $H train --resume --out "$TMP/h" --threads 2 --eval-every 4 --log-every 1
checks=$((checks + 1))
if cmp -s "$TMP/f/model.ckpt" "$TMP/h/model.ckpt" && cmp -s "$TMP/f/log.tsv" "$TMP/h/log.tsv"
then ok "--resume of a run without augmentations keeps them off (stored in the checkpoint)"; else fail "--resume without augmentations differs"; fi
expect 2 "--reprob on --resume" -- $H train --resume --out "$TMP/h" --reprob 0.5
expect_msg "cannot change on --resume"
expect 2 "--randaugment maybe" -- $H train "${TINY[@]}" --randaugment maybe --out "$TMP/e"
expect_msg "--randaugment must be on or off"
expect 2 "--repeated-aug 0" -- $H train "${TINY[@]}" --repeated-aug 0 --out "$TMP/e"
expect 2 "--reprob 1.5" -- $H train "${TINY[@]}" --reprob 1.5 --out "$TMP/e"
expect 2 "--reprob for an LRA task" -- $H train --task lra-text --data x --reprob 0.1
expect_msg "are for --task imagenet"

# ---- eval: top5 then accuracy, the run's validation accuracy ----
expect 0 "eval --task imagenet" -- $H eval --task imagenet --ckpt "$TMP/a/model.ckpt" --threads 2 --loader-threads 2
cat "$TMP/out" | sed 's/^/    /'
val=$(grep "^val loss" "$TMP/a.out" | sed -n 's/.*val accuracy \([0-9.]*\) at step 10$/\1/p')
checks=$((checks + 1))
if [ "$(tail -n 2 "$TMP/out" | head -1 | sed -n 's/^top5 \([01]\.[0-9]\{4\}\)$/ok/p')" = ok ] &&
   [ "$(tail -n 1 "$TMP/out")" = "accuracy $val" ] &&
   grep -q "imagenet: val split of $TMP/data, 12 images (32 x 32, 16 tokens of 8 x 8 patches)" "$TMP/out"
then ok "eval ends 'top5 Y', 'accuracy $val' (the run's final validation)"; else fail "eval output (run's val acc '$val')"; fi
# 3 classes: every label is among the 5 most likely
tail -n 2 "$TMP/out" | head -1 | grep -qx "top5 1.0000" && ok "top5 of 3 classes is 1" || fail "top5 of 3 classes: $(tail -n 2 "$TMP/out" | head -1)"
checks=$((checks + 1))
expect 0 "eval --split train" -- $H eval --ckpt "$TMP/a/model.ckpt" --split train --threads 2
grep -q "imagenet: train split of $TMP/data, 36 images" "$TMP/out" && ok "a checkpoint says its task; --split train" || fail "eval --split train: $(head -1 "$TMP/out")"
checks=$((checks + 1))

# ---- bench: the loader and the steps, each with a rate, and which limits ----
expect 0 "bench --task imagenet" -- $H bench --task imagenet --data "$TMP/data" --image-size 32 --patch 8 --layers 1 --dim 16 \
    --expand-ratio 8 --batch 8 --steps 2 --threads 2 --loader-threads 2
sed 's/^/    /' "$TMP/out"
checks=$((checks + 1))
if grep -q "^loader: first batch [0-9.]* s, then [0-9.]* images/s$" "$TMP/out" &&
   grep -q "^training steps: 0.01M parameters, first step [0-9.]* s, then [0-9.]* images/s$" "$TMP/out" &&
   grep -Eq "^the (loader|training step) limits: a run goes at about [0-9.]+ images/s$" "$TMP/out"
then ok "bench reports the loader's and the steps' images/s"; else fail "bench output"; fi
expect 2 "bench --task imagenet without --data" -- $H bench --task imagenet
expect_msg "needs --data DIR"

# ---- refusals ----
mkdir -p "$TMP/empty"
expect 1 "data without .jpegs files" -- $H train --task imagenet --data "$TMP/empty" --out "$TMP/e"
expect_msg "train.jpegs"
expect 2 "--patch not dividing --image-size" -- $H train "${TINY[@]}" --patch 5 --out "$TMP/e"
expect_msg "does not divide the 32 x 32 images"
expect 2 "--preset of another task" -- $H train "${TINY[@]}" --preset lra-text --out "$TMP/e"
expect_msg "imagenet-tiny or imagenet-small"
expect 2 "--image-size for an LRA task" -- $H train --task lra-text --data x --image-size 32
expect_msg "are for --task imagenet"
expect 1 "eval of an imagenet checkpoint as lra-image" -- $H eval --task lra-image --ckpt "$TMP/a/model.ckpt"
expect_msg "is a model of imagenet, not of lra-image"
expect 1 "resume an imagenet run as lra-text" -- $H train --resume --task lra-text --out "$TMP/a"
expect_msg "is a run of imagenet"
expect 1 "eval on data without val.jpegs" -- $H eval --task imagenet --ckpt "$TMP/a/model.ckpt" --data "$TMP/empty"
expect_msg "val.jpegs is missing"
expect 2 "resume with another --image-size" -- $H train --resume --out "$TMP/a" --image-size 64
expect_msg "cannot change on --resume"
finish
