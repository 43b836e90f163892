#!/usr/bin/env bash
# The Long Range Arena commands end to end through ./hgrn2: generate ListOps and Pathfinder, prepare them, their
# summaries, help and usage errors (the cases in detail are tests/test_lra.c's and tests/test_images.c's).
. "$(dirname "$0")/lib.sh"
H=./hgrn2

expect 0 "hgrn2 --help lists generate" -- $H --help
grep -q "generate" "$TMP/out" || fail "hgrn2 --help does not list generate"
expect 0 "generate --help" -- $H generate --help
grep -q "usage: hgrn2 generate --task listops" "$TMP/out" || fail "generate --help prints no usage line"
expect 2 "generate with an unknown flag" -- $H generate --no-such-flag; expect_msg "usage:"
expect 2 "generate --task nope" -- $H generate --task nope --out "$TMP/x"; expect_msg "--task must be listops"
expect 2 "generate --val-size 0" -- $H generate --task listops --out "$TMP/x" --val-size 0; expect_msg "--val-size"

expect 0 "generate a small ListOps" -- $H generate --task listops --out "$TMP/lo" --seed 3 --train-size 50 --val-size 10 --test-size 10
grep -q "generate: listops: train 50, val 10, test 10 expressions of" "$TMP/out" || fail "generate summary: $(cat "$TMP/out")"
[ "$(wc -l < "$TMP/lo/basic_train.tsv")" = 51 ] || fail "basic_train.tsv does not hold a header and 50 lines"
expect 1 "generate over existing files" -- $H generate --task listops --out "$TMP/lo"; expect_msg "already exists"
# other lengths: every kept expression within them (tokens without parentheses: split on spaces, drop them)
expect 0 "generate ListOps of 21 to 59 tokens" -- $H generate --task listops --out "$TMP/los" --seed 4 --min-len 20 --max-len 60 \
    --train-size 200 --val-size 5 --test-size 5
grep -q "expressions of 2[1-9] to [3-5][0-9] tokens" "$TMP/out" || fail "generate --min-len/--max-len summary: $(cat "$TMP/out")"
bad=$(tail -n +2 "$TMP/los/basic_train.tsv" | cut -f1 | awk '{ n = 0; for (i = 1; i <= NF; i++) if ($i != "(" && $i != ")") n++; if (n <= 20 || n >= 60) print n }' | wc -l)
[ "$bad" = 0 ] || fail "$bad expressions of --min-len 20 --max-len 60 are out of range"
expect 2 "generate --min-len 100 --max-len 101" -- $H generate --task listops --out "$TMP/x" --min-len 100 --max-len 101
expect_msg "leave no length"
expect 2 "generate --max-len 2001" -- $H generate --task listops --out "$TMP/x" --max-len 2001; expect_msg "--max-len"
expect 2 "generate pathfinder --min-len" -- $H generate --task pathfinder --size 32 --out "$TMP/x" --min-len 30
expect_msg "does not apply"
# 4 tokens hold 4 operators x 10 x 10 digits = 400 distinct expressions: asking 502 stops, and writes nothing
expect 1 "generate more expressions than a range holds" -- $H generate --task listops --out "$TMP/lon" --min-len 3 --max-len 5 \
    --train-size 500 --val-size 1 --test-size 1
expect_msg "too narrow"
[ ! -e "$TMP/lon/basic_train.tsv" ] && [ ! -e "$TMP/lon/basic_train.tsv.tmp" ] || fail "a stopped generate left files"

expect 0 "prepare it" -- $H prepare --task lra-listops --input "$TMP/lo" --out "$TMP/ex"
grep -q "prepare: lra-listops: train 50, val 10, test 10 examples; vocabulary 18" "$TMP/out" || fail "prepare summary: $(cat "$TMP/out")"
for s in train val test; do [ -f "$TMP/ex/$s.examples" ] || fail "no $s.examples"; done
# scripts/listops_by_op.py: predictions right on exactly the MIN-rooted expressions give MIN 1 and the others 0
awk -F'\t' 'BEGIN { print "index\tlabel\tpredicted\tprob\tloss" }
    NR > 1 { split($1, t, " "); op = ""; for (i = 1; op == "" && i <= length(t); i++) if (t[i] ~ /^\[/) op = t[i]
             sub(/\r$/, "", $2); print NR - 2 "\t" $2 "\t" (op == "[MIN" ? $2 : ($2 + 1) % 10) "\t0.5\t0.7" }' \
    "$TMP/lo/basic_test.tsv" > "$TMP/pred.tsv"
nmin=$(tail -n +2 "$TMP/lo/basic_test.tsv" | tr -d '( ' | grep -c '^\[MIN')
expect 0 "listops_by_op.py" -- python3 scripts/listops_by_op.py "$TMP/lo/basic_test.tsv" "$TMP/pred.tsv" --mix "$TMP/lo/basic_val.tsv"
awk -v n="$nmin" '$1 == "MIN" && $2 == n && $3 == "1.0000" { m = 1 } $1 ~ /^(MAX|MED|SM)$/ && $3 != "0.0000" { bad = 1 }
    END { exit !(m && !bad) }' "$TMP/out" || fail "listops_by_op.py: MIN should be $nmin at 1.0000, the rest 0: $(cat "$TMP/out")"
grep -q "^10 examples, accuracy $(awk -v n="$nmin" 'BEGIN { printf "%.4f", n / 10 }')" "$TMP/out" || fail "listops_by_op.py total: $(head -1 "$TMP/out")"
grep -q "^on the mix of .*basic_val.tsv" "$TMP/out" || fail "listops_by_op.py --mix printed no line"
head -n 5 "$TMP/pred.tsv" > "$TMP/pred_short.tsv"
expect 2 "listops_by_op.py on predictions of another split" -- python3 scripts/listops_by_op.py "$TMP/lo/basic_test.tsv" "$TMP/pred_short.tsv"
expect_msg "not the same split"
awk -F'\t' 'NR == 3 { $2 = ($2 + 1) % 10 } { print }' OFS='\t' "$TMP/pred.tsv" > "$TMP/pred_bad.tsv"
expect 2 "listops_by_op.py with a label that differs" -- python3 scripts/listops_by_op.py "$TMP/lo/basic_test.tsv" "$TMP/pred_bad.tsv"
expect_msg "example 1: label"
# scripts/gpu_listops.sh on the CPU over a small generated set: the run, its test accuracy and the table by operator
expect 0 "gpu_listops.sh, a short run on the CPU" -- env WORK="$TMP/glw" GEN="--min-len 40 --max-len 200 --train-size 200 \
    --val-size 30 --test-size 40" DEVICE=cpu bash scripts/gpu_listops.sh "$TMP/glrun" -- --steps 12 --seq-len 200 \
    --batch 8 --threads 1 --eval-every 6 --warmup 2
tail -n 1 "$TMP/out" | grep -Eq '^accuracy (0|1)\.[0-9]+$' || fail "gpu_listops.sh does not end with 'accuracy X': $(tail -n 2 "$TMP/out")"
grep -q "^best validation accuracy .*: test accuracy" "$TMP/out" || fail "gpu_listops.sh printed no best checkpoint's test accuracy"
n=$(awk '$1 ~ /^(MAX|MED|MIN|SM)$/ { n += $2 } END { print n + 0 }' "$TMP/out")
[ "$n" = 40 ] || fail "gpu_listops.sh's table by operator covers $n of the 40 test expressions: $(cat "$TMP/out")"
[ "$(wc -l < "$TMP/glrun/test_predictions.tsv")" = 41 ] || fail "gpu_listops.sh: no test_predictions.tsv of 40 lines"
[ ! -e "$TMP/glw/tsv/basic_train.tsv" ] && [ -f "$TMP/glw/tsv/basic_val.tsv" ] || fail "gpu_listops.sh: the kept files"
expect 1 "prepare into the same directory" -- $H prepare --task lra-listops --input "$TMP/lo" --out "$TMP/ex"; expect_msg "already holds example files"
expect 2 "prepare lra-listops --tokenizer" -- $H prepare --task lra-listops --input "$TMP/lo" --out "$TMP/ex2" --tokenizer byte
expect_msg "does not apply"
expect 1 "prepare lra-text of a ListOps folder" -- $H prepare --task lra-text --input "$TMP/lo" --out "$TMP/ex3"
expect_msg "train/neg"
[ ! -e "$TMP/ex3/train.examples" ] || fail "a failed prepare left train.examples"

# the image sets: a small generated Pathfinder through the binary (the cases in detail are tests/test_images.c's)
expect 0 "generate a small Pathfinder" -- $H generate --task pathfinder --size 32 --count 20 --out "$TMP/pf" --seed 1
grep -q "generate: pathfinder32: 20 images of 32x32 (10 positive) in 1 batches" "$TMP/out" || fail "generate summary: $(cat "$TMP/out")"
[ "$(wc -l < "$TMP/pf/metadata/0.npy")" = 20 ] || fail "metadata/0.npy does not hold 20 lines"
expect 0 "prepare lra-pathfinder" -- $H prepare --task lra-pathfinder --input "$TMP/pf" --out "$TMP/pfex"
grep -q "prepare: lra-pathfinder: train 16, val 2, test 2 examples of 32x32x1 pixels" "$TMP/out" || fail "prepare summary: $(cat "$TMP/out")"
expect 1 "prepare lra-pathx of 32x32 images" -- $H prepare --task lra-pathx --input "$TMP/pf" --out "$TMP/pxex"; expect_msg "lra-pathx takes 128x128"
[ ! -e "$TMP/pxex/train.examples" ] || fail "a failed prepare left train.examples"
expect 2 "generate pathfinder --size 64" -- $H generate --task pathfinder --size 64 --out "$TMP/x"; expect_msg "--size must be 32 or 128"
expect 1 "prepare lra-image of a Pathfinder folder" -- $H prepare --task lra-image --input "$TMP/pf" --out "$TMP/ex4"
expect_msg "data_batch_1.bin"
finish
