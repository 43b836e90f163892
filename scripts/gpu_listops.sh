#!/usr/bin/env bash
# The authors' ListOps run on one GPU, in pieces that fit sittings of limited length: generated ListOps at the
# official size (the same --seed gives the same files, so any machine remakes the same data), the lra-listops
# preset, stopped after SECONDS of training with a checkpoint (SIGINT saves one), resumed by the next call,
# and scored on the test split once all its epochs are done.
#
#   scripts/gpu_listops.sh RUN [SECONDS] [-- more flags for the first hgrn2 train]
#     RUN      the run directory (model.ckpt and log.tsv; a run found there is resumed)
#     SECONDS  wall-clock seconds of training in this call (default: no limit, the whole run)
# The data lives in $WORK (default /tmp/hgrn2-listops: generated and prepared when missing, about 25 s; the
# test and validation files stay in $WORK/tsv for the table below); $SEED (default 1) seeds the generator,
# $GEN adds flags to generate (a smaller set for a trial: GEN="--min-len 40 --max-len 200"), $DEVICE (default
# cuda) is where it trains. Runs started together (other model seeds, `... RUN2 540 -- --seed 2 &`) share
# $WORK safely, but not faster: the card runs them one kernel at a time (on an H200, four at 1,273 examples/s
# each against one alone at 5,570).
# Prints the validation accuracy of every evaluation so far (and the test split's, scored beside it with
# --eval-test on, as the reference code logs it each epoch) and, at the end of the run, the test accuracy of the
# checkpoint of the best validation accuracy (RUN/best.ckpt, kept by --keep 1), the final model's accuracy by
# outermost operator (scripts/listops_by_op.py over RUN/test_predictions.tsv, when python3 is there), then
# 'accuracy X': the final model's on test.
set -uo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
RUN=$1; shift
SECONDS_LIMIT=0
if [ $# -gt 0 ] && [ "$1" != -- ]; then SECONDS_LIMIT=$1; shift; fi
[ "${1:-}" = -- ] && shift
WORK=${WORK:-/tmp/hgrn2-listops}
SEED=${SEED:-1}
DEVICE=${DEVICE:-cuda}
# Several runs may start at once (other seeds side by side on one card): the first builds and makes the data
# while the others wait on the lock
mkdir -p "$(dirname "$WORK")"
exec 9> "$WORK.lock"
command -v flock > /dev/null && flock 9
make -s hgrn2 || exit 1
if [ ! -f "$WORK/data/train.examples" ] || [ ! -f "$WORK/tsv/basic_test.tsv" ]; then
    rm -rf "$WORK/data" "$WORK/tsv"
    ./hgrn2 generate --task listops --seed "$SEED" ${GEN:-} --out "$WORK/tsv" > /dev/null || exit 1
    ./hgrn2 prepare --task lra-listops --input "$WORK/tsv" --out "$WORK/data" | tail -n 1 || exit 1
    rm -f "$WORK/tsv/basic_train.tsv"
fi
exec 9>&-
limit=()
[ "$SECONDS_LIMIT" -gt 0 ] && limit=(timeout -s INT "$SECONDS_LIMIT")
if [ -f "$RUN/model.ckpt" ]; then
    ${limit[@]+"${limit[@]}"} ./hgrn2 train --resume --out "$RUN" --data "$WORK/data" --device "$DEVICE" --keep 1 \
        --eval-test on > "$RUN/train.out.$$" 2>&1
else
    mkdir -p "$RUN"
    ${limit[@]+"${limit[@]}"} ./hgrn2 train --task lra-listops --data "$WORK/data" --out "$RUN" --device "$DEVICE" --keep 1 \
        --eval-test on "$@" > "$RUN/train.out.$$" 2>&1
fi
rc=$?
cat "$RUN/train.out.$$" >> "$RUN/train.out" && rm -f "$RUN/train.out.$$"
# 124: the time limit stopped it (and the interrupt saved the checkpoint); anything else but 0 is a failure
if [ $rc -ne 0 ] && [ $rc -ne 124 ]; then tail -n 5 "$RUN/train.out"; exit $rc; fi
grep -E "interrupted|^done|steps in" "$RUN/train.out" | tail -n 1
awk -F'\t' 'NR > 1 && $6 != "" { printf "epoch %.1f  val acc %s%s\n", $2, $6, $10 != "" ? "  test acc " $10 : "" }' "$RUN/log.tsv"
if [ $rc -eq 0 ]; then
    if [ -f "$RUN/best.ckpt" ]; then
        best=$(awk -F'\t' 'NR > 1 && $6 != "" && $6 + 0 > b { b = $6 + 0; e = $2 } END { printf "%.4f at epoch %.1f", b, e }' \
               "$RUN/log.tsv")
        acc=$(./hgrn2 eval --task lra-listops --ckpt "$RUN/best.ckpt" --data "$WORK/data" --device "$DEVICE" \
              --predictions "$RUN/best_test_predictions.tsv" | grep '^accuracy')
        echo "best validation accuracy $best: test ${acc:-(eval failed)}"
    fi
    ./hgrn2 eval --task lra-listops --ckpt "$RUN/model.ckpt" --data "$WORK/data" --device "$DEVICE" \
        --predictions "$RUN/test_predictions.tsv" > "$RUN/test.out" 2>&1
    rc=$?
    if [ $rc -eq 0 ] && command -v python3 > /dev/null; then
        # its operator table and the line of the validation split's mix (not the depth and length tables)
        echo "the final model on test, by outermost operator:"
        python3 scripts/listops_by_op.py "$WORK/tsv/basic_test.tsv" "$RUN/test_predictions.tsv" \
            --mix "$WORK/tsv/basic_val.tsv" | sed -n -e '/^operator/,/^depth/{/^depth/!p;}' \
            -e "s|^on the mix of $WORK/tsv/basic_val.tsv|on the validation split's mix of operators|p"
    fi
    grep -v '^predictions:' "$RUN/test.out" | tail -n 2
    exit $rc
fi
