#!/usr/bin/env bash
# The token mixer's speed with two builds of the GPU tests (before and after a change to the chunk kernels), in
# one sitting on one machine: `test_gpu --bench-mixer` alternating A B A B ..., then, where ncu is installed,
# each chunk kernel's time in two forward and backward passes at B 8, T 2048, H 6, K = Dv = 128.
#
#   scripts/mixer_ab.sh A B
#     A, B     the two test programs (tests/bin/test_gpu of each build)
#   Environment: ROUNDS (default 2), NCU (default 1 where ncu is found; 0: no kernel times), WORK (default
#   /tmp/mixer_ab).
#
# --bench-mixer's timings are medians of 20 runs after 3 of warm-up, at three shapes and both directions; the
# report gives every run's and each program's mean. ncu replays each kernel alone at the card's base clocks, so
# its microseconds compare kernels and builds with each other, not with the timings above.
set -uo pipefail
[ $# -ge 2 ] || { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
A=$1 B=$2
ROUNDS=${ROUNDS:-2} WORK=${WORK:-/tmp/mixer_ab} NCU=${NCU:-1}
for p in "$A" "$B"; do [ -x "$p" ] || { echo "mixer_ab.sh: $p is not an executable" >&2; exit 2; }; done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "mixer_ab.sh: ROUNDS must be a positive count" >&2; exit 2; }
mkdir -p "$WORK" || exit 1

# a timing line of --bench-mixer -> "what<TAB>ms": what is the text before the colon, ms the first number after it
timings() { grep -E '^hgru .*: +[0-9.]+ ms' "$1" | sed -E 's/ +/ /g; s/^(hgru [^:]*): ([0-9.]+) ms.*/\1\t\2/'; }

for r in $(seq 1 "$ROUNDS"); do
    for w in A B; do
        prog=$A; [ $w = B ] && prog=$B
        out="$WORK/bench_$w$r.txt"
        if ! "$prog" --bench-mixer > "$out" 2>&1; then
            echo "mixer_ab.sh: $w ($prog --bench-mixer) failed:" >&2; tail -n 5 "$out" >&2; exit 1
        fi
        [ -n "$(timings "$out")" ] || { echo "mixer_ab.sh: no timings in $out" >&2; exit 1; }
    done
done
echo "test_gpu --bench-mixer, ms (each round's A, then B), and the means:"
for r in $(seq 1 "$ROUNDS"); do for w in A B; do timings "$WORK/bench_$w$r.txt" | sed "s/^/$w\t/"; done; done |
    awk -F'\t' '!(($2) in seen) { seen[$2] = 1; order[++n] = $2 }
                 { vals[$1, $2] = vals[$1, $2] " " $3; sum[$1, $2] += $3; cnt[$1, $2]++ }
                 END { for (i = 1; i <= n; i++) {
                           k = order[i]; line = "  " k ":"
                           for (w = 1; w <= 2; w++) {
                               p = w == 1 ? "A" : "B"
                               line = line " " p vals[p, k] " (mean " (cnt[p, k] ? sprintf("%.3f", sum[p, k] / cnt[p, k]) : "?") ")"
                           }
                           print line } }'

[ "$NCU" = 0 ] && exit 0
command -v ncu > /dev/null || { echo "mixer_ab.sh: no ncu on PATH; kernel times left out (NCU=0 says so quietly)"; exit 0; }
# The first shape's forward timing runs 3 + 20 forwards of two kernels each; the 12 launches after them are the
# first two forward and backward passes of the next timing: prep, state, prep, states_bwd, bwd_mm, bwd_qkg each.
SKIP=46
names=("chunk_prep (forward)" chunk_state "chunk_prep (backward)" chunk_states_bwd chunk_bwd_mm chunk_bwd_qkg)
for w in A B; do
    prog=$A; [ $w = B ] && prog=$B
    out="$WORK/ncu_$w.txt"
    if ! ncu --kernel-name regex:chunk --launch-skip $SKIP --launch-count 12 --metrics gpu__time_duration.sum \
            "$prog" --bench-mixer > "$out" 2>&1; then
        echo "mixer_ab.sh: ncu on $w failed:" >&2; tail -n 5 "$out" >&2; exit 1
    fi
    # one line a launch: the kernel's name and its microseconds
    grep -E '^  [a-z_ ]+.*\(|gpu__time_duration' "$out" |
        awk '/gpu__time_duration/ { v = $NF; u = $(NF - 1); gsub(/,/, "", v)
                                    if (u == "ms" || u == "msecond") v *= 1000; if (u == "ns" || u == "nsecond") v /= 1000
                                    print k "\t" v; next }
             { k = $0; sub(/^ *(void )?/, "", k); sub(/<.*/, "", k) }' > "$WORK/kernels_$w.tsv"
    [ "$(wc -l < "$WORK/kernels_$w.tsv")" -eq 12 ] || { echo "mixer_ab.sh: ncu gave no 12 launches in $out" >&2; exit 1; }
done
echo "ncu, B 8 T 2048 H 6 K 128, us a launch (two passes: A, then B):"
paste "$WORK/kernels_A.tsv" "$WORK/kernels_B.tsv" | cut -f2,4 |
    awk -v names="$(IFS=,; echo "${names[*]}")" '
        { a[NR] = $1; b[NR] = $2 }
        END { split(names, nm, ",")
              for (i = 1; i <= 6; i++)
                  printf "  %-22s A %8.2f %8.2f   B %8.2f %8.2f   B/A %.3f\n", nm[i], a[i], a[i + 6], b[i], b[i + 6],
                         (b[i] + b[i + 6]) / (a[i] + a[i + 6]) }'
