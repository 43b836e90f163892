#!/usr/bin/env bash
# Decoding with HGRN2's fused step against decoding op by op (HGRN2_DECODE_FUSED=0), batch by batch, in one
# run: the measurement behind the fused step's row limit (model.c, DECODE_FUSED_ROWS). --switch VAR compares
# on against off for another of the program's switches instead (HGRN2_DECODE_KERNEL: the whole step in one kernel
# against the fused ops a launch each; HGRN2_GREEDY_STEPS: greedy steps in graphs of up to 16 against one graph
# and one wait a token; HGRN2_CUDA_GRAPHS, HGRN2_PDL, HGRN2_GEMV).
#   bash scripts/decode_ab.sh [--batches "1 2 4 8 16"] [--switch VAR] [-- flags for hgrn2 bench --generate]
# Default model: the 1.13B size of scripts/bench_vs_fla.sh on the GPU (--dim 2048 --layers 18 --expand-ratio 128
# --vocab 50304 --device cuda --tokens 128); flags after -- replace it, e.g. `-- --preset tiny --device cpu
# --tokens 16`. Each batch size runs both ways back to back (each after its own warm-up) and prints decode
# tokens/s and the ratio.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
batches="1 2 4 8 16"
switch=HGRN2_DECODE_FUSED
while [ $# -gt 0 ]; do
    case "$1" in
        --batches)
            [ -n "${2:-}" ] || { echo "decode_ab.sh: --batches needs a list of batch sizes" >&2; exit 2; }
            batches=$2; shift 2 ;;
        --switch)
            case "${2:-}" in
                HGRN2_DECODE_FUSED | HGRN2_DECODE_KERNEL | HGRN2_GREEDY_STEPS | HGRN2_CUDA_GRAPHS | HGRN2_PDL | HGRN2_GEMV)
                    switch=$2 ;;
                *) echo "decode_ab.sh: --switch takes HGRN2_DECODE_FUSED, HGRN2_DECODE_KERNEL, HGRN2_GREEDY_STEPS, HGRN2_CUDA_GRAPHS, HGRN2_PDL or HGRN2_GEMV" >&2; exit 2 ;;
            esac
            shift 2 ;;
        --) shift; break ;;
        -h | --help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "decode_ab.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
model=(--dim 2048 --layers 18 --expand-ratio 128 --vocab 50304 --device cuda --tokens 128)
[ $# -gt 0 ] && model=("$@")
[ -x ./hgrn2 ] || { echo "decode_ab.sh: ./hgrn2 is missing: build it first (make)" >&2; exit 1; }
rate() {   # on(0|1) batch -> decode tokens/s (the last column of bench's table row)
    env "$switch=$1" ./hgrn2 bench --generate --batch "$2" "${model[@]}" |
        awk -F'|' -v b="$2" '$2 + 0 == b && NF > 5 { gsub(/ /, "", $6); print $6 }'
}
echo "$switch: on (1) against off (0)"
printf "%6s %18s %18s %8s\n" batch "on tok/s" "off tok/s" ratio
for b in $batches; do
    f=$(rate 1 "$b") || exit 1
    o=$(rate 0 "$b") || exit 1
    if [ -z "$f" ] || [ -z "$o" ]; then echo "decode_ab.sh: no decoding rate at batch $b" >&2; exit 1; fi
    awk -v b="$b" -v f="$f" -v o="$o" 'BEGIN { printf "%6d %18.0f %18.0f %7.2fx\n", b, f, o, f / o }'
done
