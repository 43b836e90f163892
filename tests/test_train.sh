#!/usr/bin/env bash
# Training end to end on a small prepared corpus: the loss falls, --resume repeats an uninterrupted run
# bit for bit, eval and sample work on the result and refuse bad input.
. "$(dirname "$0")/lib.sh"
H=./hgrn2
export OMP_NUM_THREADS=2
D="$TMP/data"
expect 0 "prepare tinyshakespeare (byte)" -- $H prepare --task text --input "$SHARED/data/text/tinyshakespeare.txt" \
    --tokenizer byte --out "$D" --val-fraction 0.02
SMALL=(--task text --data "$D" --dim 32 --layers 2 --expand-ratio 8 --batch 4 --seq-len 80 --lr 3e-3 --warmup 5 --eval-every 10 --eval-batches 4)

# an uninterrupted run of 24 steps
expect 0 "train 24 steps" -- $H train "${SMALL[@]}" --steps 24 --out "$TMP/a"
cut -f2 "$TMP/a/log.tsv" | sed -n '2,25p' > "$TMP/a.loss"
first=$(sed -n 1p "$TMP/a.loss"); last=$(sed -n 24p "$TMP/a.loss")
checks=$((checks + 1))
if awk -v f="$first" -v l="$last" 'BEGIN { exit !(l < f - 1.0) }'; then ok "loss falls: $first -> $last"; else fail "loss did not fall by 1 nat: $first -> $last"; fi
# the summary's train loss is the mean of the steps' (all 24 here: fewer than its window of 100), not the last step's
said=$(sed -n 's/^done: .*, train loss \([0-9.]*\) (mean of the last 24 steps; first step \([0-9.]*\)).*/\1 \2/p' "$TMP/out")
checks=$((checks + 1))
if [ -n "$said" ] && awk -v s="$said" -v f="$first" '{ m += $1 } END { split(s, a, " "); m /= NR; d = a[1] - m; e = a[2] - f
                                                           exit !(d * d < 3.6e-9 && e * e < 3.6e-9) }' "$TMP/a.loss"
then ok "done: the mean train loss of the steps ($said)"; else fail "done line: $(grep '^done:' "$TMP/out")"; fi

# the same run interrupted at step 10, then resumed
expect 0 "train, stop at step 10" -- $H train "${SMALL[@]}" --steps 24 --stop-at 10 --out "$TMP/b"
expect 0 "resume to step 24" -- $H train --resume --out "$TMP/b"
cut -f2 "$TMP/b/log.tsv" | grep -v train_loss > "$TMP/b.loss"
checks=$((checks + 1))
if cmp -s "$TMP/a.loss" "$TMP/b.loss"; then ok "resumed run repeats the uninterrupted losses exactly"; else fail "resumed losses differ"; diff "$TMP/a.loss" "$TMP/b.loss" | head; fi
checks=$((checks + 1))
if cmp -s "$TMP/a/model.ckpt" "$TMP/b/model.ckpt"; then ok "resumed run ends in the identical checkpoint"; else fail "final checkpoints differ"; fi
expect 2 "resume below the steps done" -- $H train --resume --out "$TMP/b" --steps 5

# wsd: the peak holds, then falls linearly to --min-lr over the last quarter (steps 16-20 of 20); a run
# stopped in its stable phase and resumed with a larger --steps is the run that had that total from the start
WSD=(--schedule wsd --decay-fraction 0.25 --lr 1e-3 --min-lr 0 --warmup 2 --eval-every 0)
expect 0 "train 20 steps, wsd" -- $H train "${SMALL[@]}" "${WSD[@]}" --steps 20 --out "$TMP/w"
lrs=$(awk -F'\t' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "lr") c = i; next } { printf "%s ", $c }' "$TMP/w/log.tsv")
checks=$((checks + 1))
[ "$lrs" = "0.0005 0.001 0.001 0.001 0.001 0.001 0.001 0.001 0.001 0.001 0.001 0.001 0.001 0.001 0.001 0.0008 0.0006 0.0004 0.0002 0 " ] \
    && ok "wsd: warmup, 13 steps at the peak, a linear decay over the last 5" || fail "wsd rates: $lrs"
expect 2 "--decay-fraction without wsd" -- $H train "${SMALL[@]}" --decay-fraction 0.1 --out "$TMP/w2"; expect_msg "goes with --schedule wsd"
expect 2 "--decay-fraction 0" -- $H train "${SMALL[@]}" --schedule wsd --decay-fraction 0 --out "$TMP/w2"
expect 0 "wsd, 40 steps" -- $H train "${SMALL[@]}" "${WSD[@]}" --steps 40 --out "$TMP/w40"
expect 0 "wsd, 20 steps stopped at 12" -- $H train "${SMALL[@]}" "${WSD[@]}" --steps 20 --stop-at 12 --out "$TMP/w12"
expect 2 "resume with --decay-fraction" -- $H train --resume --out "$TMP/w12" --decay-fraction 0.5; expect_msg "cannot change on --resume"
expect 0 "resume it to 40 steps" -- $H train --resume --out "$TMP/w12" --steps 40 --eval-every 0
checks=$((checks + 1))
cmp -s "$TMP/w40/model.ckpt" "$TMP/w12/model.ckpt" && [ "$(cut -f1,2,4 "$TMP/w40/log.tsv")" = "$(cut -f1,2,4 "$TMP/w12/log.tsv")" ] \
    && ok "wsd extended on resume: the same rates, losses and checkpoint as a 40-step run" || fail "extended wsd run differs from a 40-step run"

# eval: shards and --ids
expect 0 "eval on the validation shards" -- $H eval --ckpt "$TMP/a/model.ckpt"
tail -n 1 "$TMP/out" | grep -Eq '^loss [0-9.]+$' || fail "eval's last line is not 'loss X': $(tail -n 1 "$TMP/out")"
grep -q "bits per byte" "$TMP/out" || fail "byte-level eval reports no bits per byte"
printf '72 101 108 108 111 32 119\n 10 84 104 101 32\n' > "$TMP/ids.txt"
expect 0 "eval --ids --logits" -- $H eval --ckpt "$TMP/a/model.ckpt" --ids "$TMP/ids.txt"
expect 1 "eval --logits with unequal lengths" -- $H eval --ckpt "$TMP/a/model.ckpt" --ids "$TMP/ids.txt" --logits "$TMP/l.bin"
printf '72 101 108 108 111\n10 84 104 101 32\n' > "$TMP/ids2.txt"
expect 0 "eval --ids --logits, equal lengths" -- $H eval --ckpt "$TMP/a/model.ckpt" --ids "$TMP/ids2.txt" --logits "$TMP/l.bin"
checks=$((checks + 1))
[ "$(stat -c %s "$TMP/l.bin")" = $((2 * 5 * 256 * 4)) ] && ok "logits file is [2, 5, 256] float32" || fail "logits file has the wrong size"
printf '72 300 108\n' > "$TMP/bad_ids.txt"
expect 1 "eval --ids with an id out of range" -- $H eval --ckpt "$TMP/a/model.ckpt" --ids "$TMP/bad_ids.txt"; expect_msg "line 1: token id 300"
printf '72 x 108\n' > "$TMP/bad_ids.txt"
expect 1 "eval --ids with a non-number" -- $H eval --ckpt "$TMP/a/model.ckpt" --ids "$TMP/bad_ids.txt"

# sample: greedy is deterministic, seeded sampling is reproducible, ids out of range are refused
expect 0 "greedy sample ids" -- $H sample --ckpt "$TMP/a/model.ckpt" --prompt-ids "72 101 108" --temperature 0 -n 24 --ids
cp "$TMP/out" "$TMP/greedy1"
expect 0 "greedy sample ids again" -- $H sample --ckpt "$TMP/a/model.ckpt" --prompt-ids "72 101 108" --temperature 0 -n 24 --ids
checks=$((checks + 1))
if cmp -s "$TMP/out" "$TMP/greedy1" && [ "$(wc -w < "$TMP/out")" = 24 ]; then ok "greedy sampling prints 24 ids, twice the same"; else fail "greedy outputs differ or are not 24 ids"; fi
expect 0 "sample text with top-k and top-p" -- $H sample --ckpt "$TMP/a/model.ckpt" --prompt "ROMEO:" -n 40 --top-k 20 --top-p 0.9 --seed 3
cp "$TMP/out" "$TMP/s1"
expect 0 "sample text again with the same seed" -- $H sample --ckpt "$TMP/a/model.ckpt" --prompt "ROMEO:" -n 40 --top-k 20 --top-p 0.9 --seed 3
checks=$((checks + 1))
if cmp -s "$TMP/out" "$TMP/s1" && grep -q "^ROMEO:" "$TMP/out"; then ok "seeded sampling is reproducible and streams the prompt first"; else fail "seeded samples differ"; fi
expect 1 "sample --prompt-ids out of range" -- $H sample --ckpt "$TMP/a/model.ckpt" --prompt-ids "1 256" --ids; expect_msg "outside the vocabulary"
# the repetition penalty changes a greedy continuation; 1 is no penalty; a prompt file ('-': stdin) is --prompt
G=(sample --ckpt "$TMP/a/model.ckpt" --prompt "ROMEO:" --temperature 0 -n 40)
expect 0 "greedy text" -- $H "${G[@]}"; cp "$TMP/out" "$TMP/g0"
expect 0 "greedy text, repetition penalty 1" -- $H "${G[@]}" --repetition-penalty 1; cp "$TMP/out" "$TMP/g1"
expect 0 "greedy text, repetition penalty 1.5" -- $H "${G[@]}" --repetition-penalty 1.5; cp "$TMP/out" "$TMP/g2"
checks=$((checks + 1))
if cmp -s "$TMP/g0" "$TMP/g1" && ! cmp -s "$TMP/g0" "$TMP/g2"; then ok "the repetition penalty changes greedy text, and 1 does not"
else fail "repetition penalty: 1 changed the text or 1.5 did not"; fi
printf 'ROMEO:' > "$TMP/prompt.txt"
expect 0 "greedy text, --prompt-file" -- $H sample --ckpt "$TMP/a/model.ckpt" --prompt-file "$TMP/prompt.txt" --temperature 0 -n 40
cmp -s "$TMP/out" "$TMP/g0" && ok "--prompt-file reads the prompt" || fail "--prompt-file gave other text"
checks=$((checks + 1))
printf 'ROMEO:' | $H sample --ckpt "$TMP/a/model.ckpt" --prompt-file - --temperature 0 -n 40 > "$TMP/out" 2>/dev/null
checks=$((checks + 1))
cmp -s "$TMP/out" "$TMP/g0" && ok "--prompt-file - reads standard input" || fail "--prompt-file - gave other text"
expect 1 "a missing prompt file" -- $H sample --ckpt "$TMP/a/model.ckpt" --prompt-file "$TMP/nothing.txt"; expect_msg "cannot read --prompt-file"
expect 2 "--prompt with --prompt-file" -- $H sample --ckpt "$TMP/a/model.ckpt" --prompt x --prompt-file "$TMP/prompt.txt"
expect_msg "exclude each other"
expect 2 "--stop with --ids" -- $H sample --ckpt "$TMP/a/model.ckpt" --stop x --ids; expect_msg "does not go with --ids"
expect 2 "--num-samples 0" -- $H sample --ckpt "$TMP/a/model.ckpt" --num-samples 0
expect 2 "--repetition-penalty 0" -- $H sample --ckpt "$TMP/a/model.ckpt" --repetition-penalty 0

# --keep: the newest step checkpoints and the best held-out loss's, across a resume
expect 0 "train 40 steps keeping 2" -- $H train "${SMALL[@]}" --steps 40 --ckpt-every 10 --keep 2 --out "$TMP/k"
checks=$((checks + 1))
kept=$(cd "$TMP/k" && ls model_step*.ckpt | tr '\n' ' ')
[ "$kept" = "model_step30.ckpt model_step40.ckpt " ] && [ -s "$TMP/k/best.ckpt" ] && ok "--keep 2 leaves steps 30 and 40 and best.ckpt" \
    || fail "--keep 2 left: $kept $(ls "$TMP/k")"
best=$(awk -F'\t' 'NR > 1 && $3 != "" { if (b == "" || $3 < b) { b = $3; s = $1 } } END { print s }' "$TMP/k/log.tsv")
checks=$((checks + 1))
cmp -s "$TMP/k/best.ckpt" "$TMP/k/model_step$best.ckpt" 2>/dev/null || [ "$best" -lt 30 ] \
    && ok "best.ckpt is the checkpoint of the lowest held-out loss (step $best)" || fail "best.ckpt differs from step $best's"
expect 0 "resume to 60 steps keeping 2" -- $H train --resume --out "$TMP/k" --steps 60 --ckpt-every 10 --keep 2
kept=$(cd "$TMP/k" && ls model_step*.ckpt | tr '\n' ' ')
checks=$((checks + 1)); [ "$kept" = "model_step50.ckpt model_step60.ckpt " ] && ok "resumed: steps 50 and 60 kept" || fail "after resume: $kept"
grep -q "was kept by --keep" "$TMP/err" && fail "a resume with --keep warned that it was not given"
# a resume without the progress flags takes them from OUT/progress: --keep 2 and --ckpt-every 10 again
expect 0 "resume to 70 steps without the progress flags" -- $H train --resume --out "$TMP/k" --steps 70
checks=$((checks + 1)); grep -q "resuming with the progress flags of $TMP/k/progress: --eval-every 10 --eval-batches 4 --ckpt-every 10 --keep 2" "$TMP/out" && ok "the flags taken from OUT/progress are named" || fail "no line naming the flags taken from OUT/progress"
kept=$(cd "$TMP/k" && ls model_step*.ckpt | tr '\n' ' ')
checks=$((checks + 1)); [ "$kept" = "model_step60.ckpt model_step70.ckpt " ] && ! grep -q "was kept by --keep" "$TMP/err" \
    && ok "resumed from OUT/progress: steps 60 and 70 kept, no warning" || fail "after a resume from OUT/progress: $kept"
# --keep 0 given: best.ckpt stays as it is, and the run says so
cp "$TMP/k/best.ckpt" "$TMP/best_before.ckpt"
expect 0 "resume to 80 steps with --keep 0" -- $H train --resume --out "$TMP/k" --steps 80 --keep 0
expect_msg "best.ckpt was kept by --keep, but this run has --keep 0"
cmp -s "$TMP/k/best.ckpt" "$TMP/best_before.ckpt" || fail "a resume with --keep 0 changed best.ckpt"
checks=$((checks + 1)); grep -q "^--keep 0$" "$TMP/k/progress" && grep -q "^--ckpt-every 10$" "$TMP/k/progress" \
    && ok "OUT/progress: the flags given replace, the others stay" || fail "OUT/progress: $(tr '\n' ' ' < "$TMP/k/progress")"
# a damaged OUT/progress is refused before anything is trained, the checkpoint untouched
cp "$TMP/k/model.ckpt" "$TMP/ck_before"; cp "$TMP/k/progress" "$TMP/progress_good"
printf -- '--eval-every 5\n--nope 3\n' > "$TMP/k/progress"
expect 1 "resume with an unknown flag in OUT/progress" -- $H train --resume --out "$TMP/k" --steps 90
expect_msg "progress:2: '--nope' is not a progress flag"
printf -- '--eval-test 1\n' > "$TMP/k/progress"
expect 1 "resume a language model with a classifier's progress flag" -- $H train --resume --out "$TMP/k" --steps 90
expect_msg "progress:1: '--eval-test' is not a progress flag of this command"
printf -- '--keep 99999999\n' > "$TMP/k/progress"
expect 1 "resume with --keep out of range in OUT/progress" -- $H train --resume --out "$TMP/k" --steps 90
expect_msg "progress:1: --keep 99999999 is outside"
printf -- '--log-every 2 3\n' > "$TMP/k/progress"
expect 1 "resume with a malformed OUT/progress line" -- $H train --resume --out "$TMP/k" --steps 90
expect_msg "progress:1: expected a flag and a number"
cmp -s "$TMP/k/model.ckpt" "$TMP/ck_before" || fail "a refused OUT/progress changed model.ckpt"
cp "$TMP/progress_good" "$TMP/k/progress"
expect 0 "eval best.ckpt" -- $H eval --ckpt "$TMP/k/best.ckpt"
# plot: the curves of two runs into a PNG (gnuplot), and its errors
expect 0 "plot two runs" -- $H plot "$TMP/a" "$TMP/k" --out "$TMP/curves.png" --size 640x400 --title "two runs"
checks=$((checks + 1))
sig=$(head -c 8 "$TMP/curves.png" | od -An -tx1 | tr -d ' \n'); wh=$(od -An -tu1 -j16 -N8 "$TMP/curves.png" | tr -s ' ')
[ "$sig" = "89504e470d0a1a0a" ] && [ "$wh" = " 0 0 2 128 0 0 1 144" ] && grep -q "2 runs" "$TMP/out" \
    && ok "plot wrote a 640 x 400 PNG" || fail "plot: signature $sig, size bytes $wh"
expect 0 "plot against wall time" -- $H plot "$TMP/k/log.tsv" --x wall --out "$TMP/wall.png"
expect 1 "plot --y acc of a language model" -- $H plot "$TMP/a" --y acc --out "$TMP/x.png"; expect_msg "logs no accuracy"
expect 2 "plot --y nope" -- $H plot "$TMP/a" --y nope --out "$TMP/x.png"; expect_msg "loss or acc"
expect 2 "plot without a run" -- $H plot --out "$TMP/x.png"; expect_msg "at least one run"
expect 2 "plot --out not a .png" -- $H plot "$TMP/a" --out "$TMP/x.jpg"; expect_msg "must name a .png"
expect 1 "plot of a missing run" -- $H plot "$TMP/nothing"; expect_msg "cannot read"
expect 1 "plot of a file that is no log" -- $H plot "$TMP/prompt.txt"; expect_msg "not a run's log.tsv"
expect 1 "plot of /dev/zero" -- $H plot /dev/zero; expect_msg "is not a regular file"
head -c 100000 /dev/zero | tr '\0' x > "$TMP/long.tsv"
expect 1 "plot of a file with a 100 kB line" -- $H plot "$TMP/long.tsv"; expect_msg "longer than 4094 bytes"
# a step whose loss is not finite is skipped; too many in a row stop the run (HGRN2_FAULT_NONFINITE makes them)
HGRN2_FAULT_NONFINITE=5-7 $H train "${SMALL[@]}" --steps 12 --max-bad-steps 3 --out "$TMP/bad1" > "$TMP/out" 2> "$TMP/err"; rc=$?
checks=$((checks + 1))
[ $rc = 0 ] && [ "$(grep -c "skipped: loss nan" "$TMP/err")" = 3 ] && grep -q "3 steps skipped (non-finite)" "$TMP/out" \
    && ok "three non-finite steps skipped and counted" || fail "skipping: exit $rc; $(cat "$TMP/err")"
HGRN2_FAULT_NONFINITE=5-30 $H train "${SMALL[@]}" --steps 12 --max-bad-steps 3 --ckpt-every 2 --out "$TMP/bad2" > "$TMP/out" 2> "$TMP/err"; rc=$?
checks=$((checks + 1))
[ $rc = 1 ] && grep -q "training diverged: 4 steps in a row up to step 8" "$TMP/err" && [ -s "$TMP/bad2/model.ckpt" ] \
    && ok "four in a row stop the run, its checkpoint intact" || fail "stopping: exit $rc; $(cat "$TMP/err")"
# --max-bad-steps is a progress flag: a resume without it keeps the run's 3 (the default 10 would skip these 4)
HGRN2_FAULT_NONFINITE=14-30 $H train --resume --out "$TMP/bad1" --steps 20 > "$TMP/out" 2> "$TMP/err"; rc=$?
checks=$((checks + 1))
[ $rc = 1 ] && grep -q "resuming with the progress flags of $TMP/bad1/progress: .*--max-bad-steps 3" "$TMP/out" \
    && grep -q "training diverged: 4 steps in a row up to step 17" "$TMP/err" \
    && ok "a resume keeps --max-bad-steps from OUT/progress" || fail "resumed --max-bad-steps: exit $rc; $(cat "$TMP/out" "$TMP/err")"

# Ctrl-C: the step in progress finishes, a checkpoint is saved, the exit status is 130, resume continues
ctrl_c "$TMP/int" 3 $H train "${SMALL[@]}" --steps 100000 --out "$TMP/int"
expect 0 "resume after Ctrl-C with a nearer end" -- $H train --resume --out "$TMP/int" --steps "$(( $(wc -l < "$TMP/int/log.tsv") + 1 ))"
# steps of about 0.2 s, so that the second of ctrl_c's two signals comes while a step or the save is under way:
# it must not cut them short (a run stopped by `timeout -s INT` gets both)
ctrl_c "$TMP/int2" 2 $H train --task text --data "$D" --dim 128 --layers 2 --batch 8 --seq-len 256 --threads 1 --eval-every 0 \
    --steps 100000 --out "$TMP/int2"

# scripts/lm_speed_ab.sh, two builds' speed side by side: one program twice trains the same bits; a program that
# trains other numbers (here a wrapper with another learning rate) is reported with the first row that differs
AB=(--data "$D" --dim 32 --layers 2 --expand-ratio 8 --batch 2 --seq-len 32 --threads 1 --steps 1)
TF="--device cpu --dim 32 --layers 2 --expand-ratio 8 --batch 2 --seq-len 32 --threads 1"
checks=$((checks + 1))
if ROUNDS=1 STEPS=4 TRAIN_FLAGS="$TF" WORK="$TMP/lab" bash scripts/lm_speed_ab.sh $H $H "$D" -- --device cpu "${AB[@]:2}" \
        > "$TMP/lab.out" 2>&1 && [ "$(grep -Ec '^flags [AB] round 1: step [0-9.]+ ms, [0-9]+ tokens/s$' "$TMP/lab.out")" = 2 ] &&
   grep -Eq '^flags mean step: A [0-9.]+ ms, B [0-9.]+ ms, A/B [0-9.]+$' "$TMP/lab.out" &&
   grep -q '^logs: the same bits over 4 steps$' "$TMP/lab.out"
then ok "scripts/lm_speed_ab.sh: steps of both, the same bits"
else fail "scripts/lm_speed_ab.sh"; cat "$TMP/lab.out"; fi
printf '#!/bin/sh\nif [ "$1" = train ]; then exec %s "$@" --lr 5e-2; fi\nexec %s "$@"\n' "$PWD/$H" "$PWD/$H" > "$TMP/other_lr"
chmod +x "$TMP/other_lr"
checks=$((checks + 1))
if ROUNDS=1 STEPS=4 TRAIN_FLAGS="$TF" WORK="$TMP/lab2" bash scripts/lm_speed_ab.sh $H "$TMP/other_lr" "$D" -- --device cpu \
        "${AB[@]:2}" > "$TMP/lab2.out" 2>&1 && grep -Eq '^logs: differ, first at: ' "$TMP/lab2.out"
then ok "scripts/lm_speed_ab.sh: other numbers are reported"
else fail "scripts/lm_speed_ab.sh with another lr"; cat "$TMP/lab2.out"; fi
expect 2 "lm_speed_ab.sh: a missing program" -- bash scripts/lm_speed_ab.sh $H "$TMP/nothing"

# a damaged latest checkpoint is refused by resume, sample and eval alike
cp "$TMP/a/model.ckpt" "$TMP/damaged.ckpt"
printf '\x13' | dd of="$TMP/damaged.ckpt" bs=1 seek=4000 conv=notrunc 2>/dev/null
expect 1 "resume from a damaged checkpoint" -- $H train --resume --ckpt "$TMP/damaged.ckpt" --out "$TMP/c"; expect_msg "checksum"
finish
