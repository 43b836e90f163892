#!/usr/bin/env bash
# The GPU training step replayed as a CUDA graph against the same step launched op by op (HGRN2_CUDA_GRAPHS=0),
# one program, alternating in one sitting: each shape's step time both ways, and whether both train the same
# bits (the training runs' log.tsv, step, losses, lr and gradient norm; also held-out accuracy for MQAR).
#
#   bash scripts/step_graph_ab.sh [HGRN2] [DATA]
#     HGRN2    the program (default ./hgrn2)
#     DATA     token shards (hgrn2 prepare): when given, the tiny preset also trains STEPS steps on them both ways
#   Environment: SHAPES (default "tiny mqar wiki103-44m 162M"), ROUNDS (default 2), STEPS (default 200),
#   WORK (default /tmp/step_graph_ab). An MQAR run (T 64, 4 pairs) of STEPS steps is always compared.
#
# The report: per shape, every run's median step (bench, 20 timed steps; 5 at 162M) and tokens/s, each way's mean
# and graph/op-by-op speed-up; then the training runs' logs compared and their wall times.
set -uo pipefail
H=${1:-./hgrn2} DATA=${2:-}
ROUNDS=${ROUNDS:-2} STEPS=${STEPS:-200} WORK=${WORK:-/tmp/step_graph_ab}
SHAPES=${SHAPES:-tiny mqar wiki103-44m 162M}
[ -x "$H" ] || { echo "step_graph_ab.sh: $H is not an executable" >&2; exit 2; }
[ -z "$DATA" ] || [ -d "$DATA" ] || { echo "step_graph_ab.sh: $DATA is not a folder of shards" >&2; exit 2; }
mkdir -p "$WORK" || exit 1

shape() {   # name -> bench flags
    case "$1" in
        tiny | mqar | wiki103-44m) echo "--device cuda --preset $1 --steps 20" ;;
        162M) echo "--device cuda --dim 768 --layers 12 --expand-ratio 128 --vocab 50304 --batch 16 --seq-len 2048 --steps 5" ;;
        *) echo "step_graph_ab.sh: unknown shape $1 (tiny, mqar, wiki103-44m, 162M)" >&2; return 1 ;;
    esac
}
way() { [ "$1" = G ] && echo 1 || echo 0; }   # G: graphs, O: op by op
for s in $SHAPES; do shape "$s" > /dev/null || exit 2; done

printf '%-12s %-4s %10s %12s\n' shape way 'step ms' 'tokens/s'
for s in $SHAPES; do
    f=$(shape "$s") || exit 2
    for r in $(seq 1 "$ROUNDS"); do
        for w in O G; do
            out="$WORK/bench_${s}_$w$r.txt"
            # shellcheck disable=SC2086
            HGRN2_CUDA_GRAPHS=$(way $w) "$H" bench $f > "$out" 2>&1 || { echo "step_graph_ab.sh: bench $s failed:" >&2; tail -3 "$out" >&2; exit 1; }
            awk -v s="$s" -v w="$w" '/time to first step/ { for (i = 1; i <= NF; i++) { if ($i == "step" && $(i + 1) + 0 > 0) ms = $(i + 1); if ($i == "tokens/s") t = $(i - 1) }
                 printf "%-12s %-4s %10s %12s\n", s, w, ms, t }' "$out"
        done
    done
done | tee "$WORK/steps.txt"
[ "${PIPESTATUS[0]}" = 0 ] || exit 1
echo
awk '{ k = $1 " " $2; sum[k] += $3; n[k]++; if (!($1 in seen)) { seen[$1] = 1; order[++m] = $1 } }
     END { for (i = 1; i <= m; i++) { s = order[i]; o = sum[s " O"] / n[s " O"]; g = sum[s " G"] / n[s " G"];
           printf "%-12s op by op %.3f ms, graphs %.3f ms: %.3fx\n", s, o, g, o / g } }' <(tail -n +2 "$WORK/steps.txt")

same() {   # name, then the train flags: both ways, logs compared
    local name=$1; shift
    for w in O G; do
        rm -rf "$WORK/run_${name}_$w"
        local t0=$(date +%s.%N)
        HGRN2_CUDA_GRAPHS=$(way $w) "$H" train "$@" --out "$WORK/run_${name}_$w" > "$WORK/run_${name}_$w.txt" 2>&1 ||
            { echo "step_graph_ab.sh: train $name failed:" >&2; tail -3 "$WORK/run_${name}_$w.txt" >&2; return 1; }
        echo "$name $w: $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s; $(grep -o 'done: .*' "$WORK/run_${name}_$w.txt" | cut -c1-120)"
    done
    # every column but tokens seen and wall time (the last two)
    local a b
    a=$(awk -F'\t' '{ NF -= 2; print }' OFS='\t' "$WORK/run_${name}_O/log.tsv" | md5sum | cut -c1-32)
    b=$(awk -F'\t' '{ NF -= 2; print }' OFS='\t' "$WORK/run_${name}_G/log.tsv" | md5sum | cut -c1-32)
    if [ "$a" = "$b" ]; then echo "$name: log.tsv the same bits both ways ($(wc -l < "$WORK/run_${name}_G/log.tsv") lines)"
    else
        echo "step_graph_ab.sh: $name: log.tsv differs between the two ways" >&2
        diff <(cut -f1-6 "$WORK/run_${name}_O/log.tsv") <(cut -f1-6 "$WORK/run_${name}_G/log.tsv") | head -6
        return 1
    fi
}
echo
rc=0
same mqar --task mqar --device cuda --steps "$STEPS" --eval-every $((STEPS / 2)) --seed 3 || rc=1
if [ -n "$DATA" ]; then
    same tiny --task text --data "$DATA" --device cuda --steps "$STEPS" --eval-every $((STEPS / 4)) --ckpt-every $((STEPS / 2)) --seed 7 || rc=1
fi
exit $rc
