#!/usr/bin/env bash
# train/eval --task imagenet on a tiny JPEG folder layout written here (3 classes of 12 training and 4
# validation images, made by test_jpeg --make-images), on the CPU at --image-size 32 with 8 x 8 patches and a
# model made tiny by flags: the startup table, resume byte-identity, the same checkpoint at 1 and 3 loader
# threads (batches depend on the seed and the step alone), eval's last two lines (top5, then accuracy, equal to
# the run's final validation), bench's two rates, and the refusals; the recipe's mixup, cutmix and label
# smoothing (on by default, so the resume check covers them) each changing the run, the per-epoch schedule's lr
# column against its formula, a version 5 checkpoint resumed as the version 6 one. A build without
# libjpeg-turbo: SKIP.
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
grep -E "^\| (input|batch|loader|targets|optimizer|model)" "$TMP/a.out" | sed 's/^/    /'
checks=$((checks + 1))
if grep -q "| input        | RGB pixels in 8 x 8 patches: 4 x 4 = 16 tokens of 192 values; scans both ways along the 16 patches" "$TMP/a.out" &&
   grep -q "(the final one a plain RMSNorm)" "$TMP/a.out" &&
   grep -q "| batch        | 8 images of 32 x 32 x 3; an epoch is 5 steps" "$TMP/a.out" &&
   grep -q "| loader       | 3 decoding threads" "$TMP/a.out" &&
   grep -q "| augment      | RandAugment m9 mstd0.5 n2, random erasing p 0.25, repeated augmentation x3" "$TMP/a.out" &&
   grep -q "| targets      | mixup alpha 0.8 or cutmix alpha 1 (cutmix with probability 0.5), every batch; label smoothing 0.1" "$TMP/a.out" &&
   grep -q "AdamW lr 0.003 (per epoch: warmup from 1e-06 over 20 epochs, cosine to 1e-05 over 300 epochs), betas (0.9, 0.98), eps 1e-08, wd 0.05, clip 5" "$TMP/a.out"
then ok "the startup table: patches, the plain final norm, batch, loader, augmentations, targets, the recipe's optimizer"
else fail "the startup table:"; sed -n 1,16p "$TMP/a.out"; fi
grep -q "val top5" "$TMP/a.out" && ok "validation logs top-5" || fail "no val top5 in the progress lines"
checks=$((checks + 1))
if grep -Eq "^step .*\| loader wait [0-9]+% \|" "$TMP/a.out" &&
   grep -Eq "^done: .*, [0-9]+% of the steps' time waiting for the loader" "$TMP/a.out"
then ok "the progress lines and the summary say how long the steps waited for the loader"
else fail "no loader wait in the progress lines or the summary"; grep -E "^(step|done)" "$TMP/a.out" | head -3; fi
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
then ok "--resume (mixup, cutmix and smoothing on): the checkpoint and log.tsv of the uninterrupted run, byte for byte"
else fail "--resume differs"; fi
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
for one in "--randaugment off" "--reprob 0" "--repeated-aug 1" "--mixup 0" "--cutmix 0" "--smoothing 0" "--mix-prob 0.5" \
           "--lr-per-epoch off"; do
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

# ---- the targets and the schedule: the per-epoch lr column against timm's formula from the startup table ----
expect 0 "30 steps, per-epoch schedule: warmup 2 epochs from 1e-5, cosine over 5" -- $H train "${TINY[@]}" --steps 30 \
    --warmup 10 --sched-steps 25 --min-lr 1e-4 --warmup-lr 1e-5 --eval-every 0 --out "$TMP/s"
grep "| optimizer" "$TMP/out" | sed 's/^/    /'
read -r LR WLR W MIN E <<<"$(sed -n 's/^| optimizer    | AdamW lr \([^ ]*\) (per epoch: warmup from \([^ ]*\) over \([^ ]*\) epochs, cosine to \([^ ]*\) over \([^ ]*\) epochs).*/\1 \2 \3 \4 \5/p' "$TMP/out")"
SPE=$(sed -n 's/.*an epoch is \([0-9]*\) steps.*/\1/p' "$TMP/out")
checks=$((checks + 1))
# epoch e = (step - 1) / steps per epoch; e < W: wlr + e (lr - wlr) / W; then min + (lr - min) (1 + cos(pi e / E)) / 2;
# min from epoch E on. The column has 9 significant digits.
bad=$(awk -F'\t' -v lr="$LR" -v wlr="$WLR" -v W="$W" -v mn="$MIN" -v E="$E" -v spe="$SPE" 'NR > 1 {
    e = int(($1 - 1) / spe)
    want = e < W ? wlr + e * (lr - wlr) / W : e >= E ? mn : mn + 0.5 * (lr - mn) * (1 + cos(3.141592653589793 * e / E))
    d = $7 - want; if (d < 0) d = -d
    if (d > 1e-8 * want) { print "step " $1 ": lr " $7 ", want " want; n++ }
    seen[e] = 1
} END { for (k = 0; k <= 5; k++) if (!(k in seen)) print "epoch " k " not in the log" }' "$TMP/s/log.tsv")
if [ -n "$LR" ] && [ "$SPE" = 5 ] && [ "$W" = 2 ] && [ "$E" = 5 ] && [ -z "$bad" ] && [ "$(wc -l < "$TMP/s/log.tsv")" = 31 ]
then ok "log.tsv's lr follows the per-epoch schedule (lr $LR, warmup from $WLR over $W epochs, cosine to $MIN over $E)"
else fail "the per-epoch lr column (lr '$LR' W '$W' E '$E' spe '$SPE'): $bad"; fi
expect 0 "the per-step schedule" -- $H train "${TINY[@]}" --steps 2 --lr-per-epoch off --mixup 0.4 --cutmix 0 --smoothing 0.2 \
    --mix-prob 0.5 --out "$TMP/t"
checks=$((checks + 1))
if grep -q "| optimizer    | AdamW lr 0.003 (warmup 100, cosine to 1e-05 over 1500 steps)" "$TMP/out" &&
   grep -q "| targets      | mixup alpha 0.4, a batch with probability 0.5; label smoothing 0.2" "$TMP/out" &&
   [ "$(awk -F'\t' 'NR == 3 { print $7 }' "$TMP/t/log.tsv")" = "6e-05" ]
then ok "--lr-per-epoch off: the per-step warmup (step 2: 6e-05); the targets line"; else fail "per-step run: $(grep -E '^\| (optimizer|targets)' "$TMP/out")"; fi
for flag in "--smoothing 0.2" "--mixup 0.5" "--cutmix 0" "--mix-switch 0.2" "--mix-prob 0.5" "--lr-per-epoch off" "--warmup-lr 1e-5"; do
    expect 2 "$flag on --resume" -- $H train --resume --out "$TMP/h" $flag
    expect_msg "cannot change on --resume"
done
expect 2 "--smoothing 1" -- $H train "${TINY[@]}" --smoothing 1 --out "$TMP/e"
expect_msg "--smoothing needs a number in \[0, 0.99\]"
expect 2 "--mixup -1" -- $H train "${TINY[@]}" --mixup -1 --out "$TMP/e"
expect 2 "--cutmix 101" -- $H train "${TINY[@]}" --cutmix 101 --out "$TMP/e"
expect 2 "--mix-switch 1.5" -- $H train "${TINY[@]}" --mix-switch 1.5 --out "$TMP/e"
expect 2 "--mix-prob 2" -- $H train "${TINY[@]}" --mix-prob 2 --out "$TMP/e"
expect 2 "--lr-per-epoch maybe" -- $H train "${TINY[@]}" --lr-per-epoch maybe --out "$TMP/e"
expect_msg "--lr-per-epoch must be on or off"
expect 2 "--warmup-lr with the per-step schedule" -- $H train "${TINY[@]}" --lr-per-epoch off --warmup-lr 1e-5 --out "$TMP/e"
expect_msg "give --lr-per-epoch on"
expect 2 "mixing in batches of 1" -- $H train "${TINY[@]}" --batch 1 --out "$TMP/e"
expect_msg "--batch 1 has none"
expect 0 "batches of 1 without mixing" -- $H train "${TINY[@]}" --batch 1 --mixup 0 --cutmix 0 --steps 2 --out "$TMP/e1"
expect 2 "--mixup for a task of tokens" -- $H train --task lra-text --data x --mixup 0.8
expect_msg "mix images: they are for the image tasks"
expect 2 "--mix-prob for a task of tokens" -- $H train --task lra-listops --data x --mix-prob 0.5
expect_msg "mix images"

# ---- a version 5 checkpoint (before the targets and the schedule's stepping) reads as a run without them ----
OFF=(--mixup 0 --cutmix 0 --smoothing 0 --lr-per-epoch off)
expect 0 "targets off, per step, to step 3 of 8" -- $H train "${TINY[@]}" "${OFF[@]}" --steps 8 --stop-at 3 --out "$TMP/v6"
cp tests/ckpt_seal.py "$TMP/seal.py"
cat > "$TMP/v5.py" <<'EOF5'
import struct, sys
sys.path.insert(0, sys.argv[3])
import seal
b = bytearray(open(sys.argv[1], 'rb').read()[:-8])
assert struct.unpack_from('<q', b, 8)[0] == 10 and struct.unpack_from('<q', b, 16)[0] == 41
# the per-step schedule, HGRN2, the fla layer, fp32 scans, no padding groups
assert [struct.unpack_from('<q', b, 24 + 8 * i)[0] for i in range(36, 41)] == [0, 0, 0, 0, 0]
fl = 24 + 8 * 41
assert struct.unpack_from('<q', b, fl)[0] == 23
# smoothing, mixup, cutmix 0; switch 0.5, probability 1, warmup lr 1e-6: what version 5 reads as; then the
# input dropout, which version 5 reads as the dropout: the same here (0)
assert [struct.unpack_from('<d', b, fl + 8 + 8 * i)[0] for i in range(16, 23)] == [0, 0, 0, 0.5, 1, 1e-6, 0]
assert struct.unpack_from('<d', b, fl + 8)[0] == 0
del b[fl + 8 + 8 * 16:fl + 8 + 8 * 23]
struct.pack_into('<q', b, fl, 16)
del b[24 + 8 * 36:24 + 8 * 41]
struct.pack_into('<q', b, 8, 5); struct.pack_into('<q', b, 16, 36)
seal.write(sys.argv[2], b)
EOF5
cp -r "$TMP/v6" "$TMP/v5"
checks=$((checks + 1))
if python3 "$TMP/v5.py" "$TMP/v6/model.ckpt" "$TMP/v5/model.ckpt" "$TMP" && ! cmp -s "$TMP/v5/model.ckpt" "$TMP/v6/model.ckpt"
then ok "a version 5 copy of the checkpoint"; else fail "v5.py"; fi
expect 0 "resume the version 6 run" -- $H train --resume --out "$TMP/v6" --threads 2 --eval-every 4 --log-every 1
expect 0 "resume the version 5 copy" -- $H train --resume --out "$TMP/v5" --threads 2 --eval-every 4 --log-every 1
grep -q "| targets      | no mixup or cutmix; no label smoothing" "$TMP/out" && grep -q "AdamW lr 0.003 (warmup 100," "$TMP/out" &&
    ok "version 5 resumes without the targets, on the per-step schedule" || fail "the version 5 run's table: $(grep -E '^\| (targets|optimizer)' "$TMP/out")"
checks=$((checks + 2))
if cmp -s "$TMP/v5/model.ckpt" "$TMP/v6/model.ckpt" && cmp -s "$TMP/v5/log.tsv" "$TMP/v6/log.tsv"
then ok "the version 5 copy resumed ends in the version 6 run's checkpoint and log"; else fail "the version 5 resume differs"; fi
python3 - "$TMP/v6/model.ckpt" "$TMP/bad.ckpt" "$TMP" <<'EOFB'
import struct, sys
sys.path.insert(0, sys.argv[3])
import seal
b = bytearray(open(sys.argv[1], 'rb').read()[:-8])
struct.pack_into('<d', b, 24 + 8 * 41 + 8 + 8 * 17, 200.0)     # mixup alpha
seal.write(sys.argv[2], b)
EOFB
expect 1 "a checkpoint with mixup alpha 200" -- $H eval --ckpt "$TMP/bad.ckpt" --threads 2
expect_msg "is corrupt: mixup = 200 is out of range \[0, 100\]"

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
expect 0 "eval --predictions --per-class" -- $H eval --task imagenet --ckpt "$TMP/a/model.ckpt" --threads 2 --predictions "$TMP/pred.tsv" --per-class
right=$(sed -n 's/^imagenet: val split .*: \([0-9]*\) right, .*/\1/p' "$TMP/out")
checks=$((checks + 1))
if [ "$(tail -n +2 "$TMP/pred.tsv" | wc -l)" = 12 ] && [ "$(tail -n +2 "$TMP/pred.tsv" | awk -F'\t' '$2 == $3' | wc -l)" = "$right" ] &&
   [ "$(grep -Ec '^ +[0-2] +4 +[0-9]+ +[01]\.[0-9]{4} +[0-9]+$' "$TMP/out")" = 3 ] && grep -q "^confusion (rows: label, columns: predicted)" "$TMP/out" &&
   [ "$(tail -n 1 "$TMP/out")" = "accuracy $val" ]
then ok "the 12 validation images' predictions ($right right), 3 classes' rows and the confusion matrix"
else fail "eval --predictions of the ImageNet model:"; cat "$TMP/out"; fi
expect 0 "eval --split train" -- $H eval --ckpt "$TMP/a/model.ckpt" --split train --threads 2
grep -q "imagenet: train split of $TMP/data, 36 images" "$TMP/out" && ok "a checkpoint says its task; --split train" || fail "eval --split train: $(head -1 "$TMP/out")"
checks=$((checks + 1))

# ---- bench: the loader and the steps, each with a rate, and which limits ----
expect 0 "bench --task imagenet" -- $H bench --task imagenet --data "$TMP/data" --image-size 32 --patch 8 --layers 1 --dim 16 \
    --expand-ratio 8 --batch 8 --steps 2 --threads 2 --loader-threads 2
sed 's/^/    /' "$TMP/out"
checks=$((checks + 1))
if grep -q "^loader: first batch [0-9.]* s, then [0-9.]* images/s$" "$TMP/out" &&
   grep -q "^training steps: 0.01M parameters, first step [0-9.]* s, then [0-9.]* images/s | [0-9.]* TFLOP/s$" "$TMP/out" &&
   grep -Eq "^the (loader|training step) limits: a run goes at about [0-9.]+ images/s$" "$TMP/out"
then ok "bench reports the loader's and the steps' images/s"; else fail "bench output"; fi
expect 2 "bench --task imagenet without --data" -- $H bench --task imagenet
expect_msg "needs --data DIR"

# ---- refusals ----
mkdir -p "$TMP/empty"
expect 1 "data without .jpegs files" -- $H train --task imagenet --data "$TMP/empty" --out "$TMP/e"
expect_msg "train.jpegs"
expect 1 "train --task imagenet --eval-test on" -- $H train "${TINY[@]}" --steps 1 --eval-test on --out "$TMP/et"
expect_msg "an imagenet run has no test split"
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
# ---- --init: the run's model fine-tuned on larger crops (6 x 6 patches of 8 x 8); sides not a multiple of 8 refused ----
FT=(--task imagenet --data "$TMP/data" --batch 8 --lr 1e-3 --threads 2 --eval-every 0 --steps 2)
expect 0 "--init at --image-size 48" -- $H train "${FT[@]}" --image-size 48 --init "$TMP/a/model.ckpt" --out "$TMP/ft"
checks=$((checks + 1))
grep -q "^initialising from the weights of $TMP/a/model.ckpt (a model of imagenet after 10 steps)" "$TMP/out" &&
    grep -q "| input        | RGB pixels in 8 x 8 patches: 6 x 6 = 36 tokens of 192 values" "$TMP/out" &&
    ok "the fine-tuned run reads 36 patches of the checkpoint's size" || fail "the --init run's table: $(grep '| input' "$TMP/out")"
expect 2 "--init at --image-size 36" -- $H train "${FT[@]}" --image-size 36 --init "$TMP/a/model.ckpt" --out "$TMP/ft2"
expect_msg "the patches of $TMP/a/model.ckpt (8 x 8) do not divide the 36 x 36 images"
expect 2 "--init with --patch" -- $H train "${FT[@]}" --patch 4 --init "$TMP/a/model.ckpt" --out "$TMP/ft2"
expect_msg "--patch cannot be given with --init"

finish
