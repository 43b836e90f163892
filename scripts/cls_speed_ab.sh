#!/usr/bin/env bash
# Training speed of a classification task with two builds of hgrn2 (before and after a change), alternating
# A B A B ... in one sitting on one machine, and whether the two train the same numbers.
#
#   scripts/cls_speed_ab.sh A B DATA [-- more flags for hgrn2 train]
#     A, B     the two programs (paths to hgrn2 executables)
#     DATA     the task's prepared examples (train --data)
#   Environment: TASK (default lra-listops), DEVICE (default cuda), STEPS (default 300), EVERY (default 100: the
#   progress lines whose examples/s are reported), ROUNDS (default 2), WORK (default /tmp/cls_speed_ab).
#
# Each run trains STEPS steps of the task's preset from the same seed (evaluating one batch, at the end). A
# progress line's examples/s covers the steps since the line before (evaluations and saves not included); the
# first line holds the start's warm-up, so the report gives the later lines' and their mean. Then the logs of the
# first A and B runs are compared: the same arithmetic in another order or place gives the same bits, and a
# change that moves numbers shows where (log.tsv's first four columns: step, epoch, train loss, train accuracy).
set -uo pipefail
[ $# -ge 3 ] || { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
A=$1 B=$2 DATA=$3; shift 3
[ "${1:-}" = -- ] && shift
TASK=${TASK:-lra-listops} DEVICE=${DEVICE:-cuda} STEPS=${STEPS:-300} EVERY=${EVERY:-100} ROUNDS=${ROUNDS:-2}
WORK=${WORK:-/tmp/cls_speed_ab}
for p in "$A" "$B"; do [ -x "$p" ] || { echo "cls_speed_ab.sh: $p is not an executable" >&2; exit 2; }; done
[ "$STEPS" -gt "$EVERY" ] || { echo "cls_speed_ab.sh: STEPS must be above EVERY" >&2; exit 2; }
mkdir -p "$WORK" || exit 1
declare -A sum=([A]=0 [B]=0) cnt=([A]=0 [B]=0)
for r in $(seq 1 "$ROUNDS"); do
    for w in A B; do
        prog=$A; [ $w = B ] && prog=$B
        out="$WORK/$w$r"
        rm -rf "$out"
        if ! "$prog" train --task "$TASK" --data "$DATA" --device "$DEVICE" --steps "$STEPS" --log-every "$EVERY" \
                --eval-every 0 --eval-batches 1 --out "$out" "$@" > "$out.txt" 2>&1; then
            echo "cls_speed_ab.sh: $w ($prog) failed:" >&2; tail -n 5 "$out.txt" >&2; exit 1
        fi
        # examples/s of every progress line after the first
        rates=$(grep -E '^step +[0-9]+/' "$out.txt" | tail -n +2 | sed -E 's/.* \| ([0-9.]+) ex\/s.*/\1/')
        [ -n "$rates" ] || { echo "cls_speed_ab.sh: no progress lines in $out.txt" >&2; exit 1; }
        echo "$w round $r: $(echo $rates | sed 's/ / and /g') examples/s"
        for x in $rates; do
            sum[$w]=$(awk -v s="${sum[$w]}" -v x="$x" 'BEGIN { print s + x }'); cnt[$w]=$((cnt[$w] + 1))
        done
    done
done
ma=$(awk -v s="${sum[A]}" -v n="${cnt[A]}" 'BEGIN { printf "%.1f", s / n }')
mb=$(awk -v s="${sum[B]}" -v n="${cnt[B]}" 'BEGIN { printf "%.1f", s / n }')
echo "mean examples/s: A $ma, B $mb, B/A $(awk -v a="$ma" -v b="$mb" 'BEGIN { printf "%.3f", b / a }')"
if cmp -s <(cut -f1-4 "$WORK/A1/log.tsv") <(cut -f1-4 "$WORK/B1/log.tsv"); then
    echo "logs: the same bits over $STEPS steps"
else
    first=$(diff <(cut -f1-4 "$WORK/A1/log.tsv") <(cut -f1-4 "$WORK/B1/log.tsv") | sed -n '2p')
    echo "logs: differ, first at: $first"
fi
