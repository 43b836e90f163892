#!/usr/bin/env bash
# Training speed of the language model with two builds of hgrn2 (before and after a change), alternating
# A B A B ... in one sitting on one machine, and whether the two train the same numbers.
#
#   scripts/lm_speed_ab.sh A B [DATA] [-- flags for hgrn2 bench]
#     A, B     the two programs (paths to hgrn2 executables)
#     DATA     token shards (hgrn2 prepare): when given, each program also trains STEPS steps on them from one
#              seed, and their log.tsv are compared
#     flags    after --, one shape for `hgrn2 bench` in place of SIZES (e.g. -- --preset tiny --device cpu)
#   Environment: SIZES (default "162M 1.13B": the README's two sizes, B 16 and B 8 x T 2048, bf16 on the GPU),
#   ROUNDS (default 2), STEPS (default 30), TRAIN_FLAGS (the training run's model and device; default D 768, two
#   layers of K 128, B 8 x T 512 on the GPU), WORK (default /tmp/lm_speed_ab).
#
# Each bench run prints the median step of 5 timed steps; the report gives every run's step and tokens/s and each
# program's mean. The same arithmetic in another order or place gives the same bits in the training logs; a
# change that moves numbers shows where (log.tsv's first five columns: step, train loss, held-out loss, lr,
# gradient norm).
set -uo pipefail
[ $# -ge 2 ] || { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
A=$1 B=$2; shift 2
DATA=
if [ $# -gt 0 ] && [ "$1" != -- ]; then DATA=$1; shift; fi
[ "${1:-}" = -- ] && shift
ROUNDS=${ROUNDS:-2} STEPS=${STEPS:-30} WORK=${WORK:-/tmp/lm_speed_ab} SIZES=${SIZES:-162M 1.13B}
TRAIN_FLAGS=${TRAIN_FLAGS:---device cuda --dim 768 --layers 2 --expand-ratio 128 --batch 8 --seq-len 512}
for p in "$A" "$B"; do [ -x "$p" ] || { echo "lm_speed_ab.sh: $p is not an executable" >&2; exit 2; }; done
[ -z "$DATA" ] || [ -d "$DATA" ] || { echo "lm_speed_ab.sh: $DATA is not a folder of shards" >&2; exit 2; }
mkdir -p "$WORK" || exit 1

shape() {   # size name -> bench flags
    case "$1" in
        162M) echo "--device cuda --dim 768 --layers 12 --expand-ratio 128 --vocab 50304 --batch 16 --seq-len 2048" ;;
        1.13B) echo "--device cuda --dim 2048 --layers 18 --expand-ratio 128 --vocab 50304 --batch 8 --seq-len 2048" ;;
        *) echo "lm_speed_ab.sh: unknown size $1 (162M or 1.13B)" >&2; return 1 ;;
    esac
}
declare -a names flags
if [ $# -gt 0 ]; then
    names=(flags); flags=("$*")
else
    for s in $SIZES; do names+=("$s"); f=$(shape "$s") || exit 2; flags+=("$f"); done
fi

for i in "${!names[@]}"; do
    declare -A sum=([A]=0 [B]=0)
    for r in $(seq 1 "$ROUNDS"); do
        for w in A B; do
            prog=$A; [ $w = B ] && prog=$B
            out="$WORK/bench_${names[$i]}_$w$r.txt"   # every size and run kept (peak memory, the profile line)
            # shellcheck disable=SC2086
            if ! "$prog" bench ${flags[$i]} > "$out" 2>&1; then
                echo "lm_speed_ab.sh: $w ($prog) failed:" >&2; tail -n 5 "$out" >&2; exit 1
            fi
            line=$(grep -E '^time to first step' "$out" | tail -n 1)
            ms=$(sed -E 's/.*\| step ([0-9.]+) ms.*/\1/' <<< "$line")
            tps=$(sed -E 's/.*\| ([0-9]+) tokens\/s.*/\1/' <<< "$line")
            [[ $ms =~ ^[0-9.]+$ && $tps =~ ^[0-9]+$ ]] || { echo "lm_speed_ab.sh: no step line in $out" >&2; exit 1; }
            echo "${names[$i]} $w round $r: step $ms ms, $tps tokens/s"
            sum[$w]=$(awk -v s="${sum[$w]}" -v x="$ms" 'BEGIN { print s + x }')
        done
    done
    ma=$(awk -v s="${sum[A]}" -v n="$ROUNDS" 'BEGIN { printf "%.2f", s / n }')
    mb=$(awk -v s="${sum[B]}" -v n="$ROUNDS" 'BEGIN { printf "%.2f", s / n }')
    echo "${names[$i]} mean step: A $ma ms, B $mb ms, A/B $(awk -v a="$ma" -v b="$mb" 'BEGIN { printf "%.3f", a / b }')"
done

[ -n "$DATA" ] || exit 0
for w in A B; do
    prog=$A; [ $w = B ] && prog=$B
    rm -rf "$WORK/train_$w"
    # shellcheck disable=SC2086
    if ! "$prog" train --data "$DATA" $TRAIN_FLAGS --steps "$STEPS" --eval-every 10 --seed 3 --out "$WORK/train_$w" \
            > "$WORK/train_$w.txt" 2>&1; then
        echo "lm_speed_ab.sh: training with $w ($prog) failed:" >&2; tail -n 5 "$WORK/train_$w.txt" >&2; exit 1
    fi
done
if cmp -s <(cut -f1-5 "$WORK/train_A/log.tsv") <(cut -f1-5 "$WORK/train_B/log.tsv"); then
    echo "logs: the same bits over $STEPS steps"
else
    first=$(diff <(cut -f1-5 "$WORK/train_A/log.tsv") <(cut -f1-5 "$WORK/train_B/log.tsv") | sed -n '2p')
    echo "logs: differ, first at: $first"
fi
