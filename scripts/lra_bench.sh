#!/usr/bin/env bash
# The Long Range Arena presets on a GPU: makes the data a machine without downloads can have (ListOps
# generated at the official size, Pathfinder-32 and Path-X generated, Fashion-MNIST from Debian's package),
# then trains each preset for a few steps and prints its examples/s, batch shape and peak memory.
#   bash scripts/lra_bench.sh [--steps N] [--data DIR] [--device cuda|cpu] [--tasks "listops pathfinder ..."]
#                             [--placeholder] [-- more flags for hgrn2 train, e.g. --arch hgrn1]
# Tasks: listops, pathfinder, pathx, fmnist (Fashion-MNIST through the lra-image preset); Text, Retrieval and
# CIFAR-10 need their official files (put prepared example folders at DIR/text, DIR/aan, DIR/cifar10 and
# name them in --tasks as text, retrieval, image); with --placeholder, Text and Retrieval without such a
# folder run on random letters of the official lengths instead (for speed only: nothing there to learn).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
steps=30 data=runs/lra_bench_data device=cuda tasks="listops pathfinder pathx fmnist" placeholder=0
while [ $# -gt 0 ]; do
    case "$1" in
        --steps) steps=$2; shift ;;
        --data) data=$2; shift ;;
        --device) device=$2; shift ;;
        --tasks) tasks=$2; shift ;;
        --placeholder) placeholder=1 ;;
        --) shift; break ;;
        -h | --help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "lra_bench.sh: unknown option '$1'" >&2; exit 2 ;;
    esac
    [ $# -gt 0 ] && shift
done
extra=("$@")
[ -x ./hgrn2 ] || { echo "lra_bench.sh: ./hgrn2 not found: build it first (make)" >&2; exit 1; }
mkdir -p "$data"
H=./hgrn2
need() {   # need DIR COMMAND...: runs the command unless DIR/train.examples exists
    local dir=$1; shift
    [ -s "$dir/train.examples" ] && return 0
    echo "preparing $dir ..."
    "$@" > "$dir.prepare.log" 2>&1 || { echo "lra_bench.sh: preparing $dir failed (see $dir.prepare.log)" >&2; return 1; }
}
# letters N LEN SEED: N lines of LEN random lower-case letters and spaces
letters() { awk -v n="$1" -v len="$2" -v seed="$3" 'BEGIN { srand(seed); for (i = 0; i < n; i++) { s = "";
    for (j = 0; j < len; j++) s = s substr("abcdefghijklmnopqrstuvwxyz     ", 1 + int(rand() * 31), 1); print s } }'; }
placeholder_text() {   # an aclImdb folder of random reviews 4,500 bytes long
    local d=$1 split cls i=0
    for split in train test; do for cls in neg pos; do
        mkdir -p "$d/$split/$cls"
        letters 128 4500 $((i += 1)) | split -l 1 -a 4 --additional-suffix=.txt - "$d/$split/$cls/r"
    done; done
}
placeholder_aan() {    # new_aan_pairs.*.tsv of random pairs of 4,500-byte texts
    local d=$1 f i=0
    mkdir -p "$d"
    for f in train eval test; do
        paste <(letters 256 1 $((i += 1)) | awk '{ print NR % 2 }') <(seq 256) <(seq 256) \
            <(letters 256 4500 $((i += 1))) <(letters 256 4500 $((i += 1))) > "$d/new_aan_pairs.$f.tsv"
    done
}
for t in $tasks; do
    case "$t" in
        listops) task=lra-listops dir=$data/listops
            need "$dir" bash -c "$H generate --task listops --seed 1 --out $data/listops-tsv && $H prepare --task lra-listops --input $data/listops-tsv --out $dir" || continue ;;
        pathfinder) task=lra-pathfinder dir=$data/pathfinder
            need "$dir" bash -c "$H generate --task pathfinder --size 32 --count 20000 --seed 1 --out $data/pf32-raw && $H prepare --task lra-pathfinder --input $data/pf32-raw --out $dir" || continue ;;
        pathx) task=lra-pathx dir=$data/pathx
            need "$dir" bash -c "$H generate --task pathfinder --size 128 --count 2000 --seed 1 --out $data/pf128-raw && $H prepare --task lra-pathx --input $data/pf128-raw --out $dir" || continue ;;
        fmnist) task=lra-image dir=$data/fmnist
            need "$dir" $H prepare --task fashion-mnist --input /usr/share/datasets/fashion-mnist --out "$dir" || continue ;;
        text) task=lra-text dir=$data/text
            [ $placeholder = 1 ] && { need "$dir" bash -c "$(declare -f letters placeholder_text); placeholder_text $data/text-raw && $H prepare --task lra-text --input $data/text-raw --out $dir" || continue; } ;;
        retrieval) task=lra-retrieval dir=$data/aan
            [ $placeholder = 1 ] && { need "$dir" bash -c "$(declare -f letters placeholder_aan); placeholder_aan $data/aan-raw && $H prepare --task lra-retrieval --input $data/aan-raw --out $dir" || continue; } ;;
        image) task=lra-image dir=$data/cifar10 ;;
        *) echo "lra_bench.sh: unknown task '$t'" >&2; continue ;;
    esac
    log=$data/bench-$t.log
    rm -rf "$data/bench-run-$t"     # a scratch run, made again each time
    $H train --task "$task" --data "$dir" --out "$data/bench-run-$t" --device "$device" --steps "$steps" \
        --eval-every 0 --ckpt-every 0 --log-every 5 ${extra[@]+"${extra[@]}"} > "$log" 2>&1 ||
        { echo "$t: training failed (see $log)"; continue; }
    # the last progress line's rate (past the first steps' start-up) and the summary's memory
    rate=$(grep -E '^step' "$log" | tail -n 1 | grep -oE '[0-9.]+ ex/s')
    model=$(grep -E '^\| (model|parameters)' "$log" | sed 's/^| *//' | tr '\n' ';')
    mem=$(grep -oE 'peak GPU memory [0-9]+ MiB' "$log" | tail -n 1)
    batch=$(grep -E '^\| batch' "$log" | sed 's/^| batch *| //')
    printf '%-11s %-12s %s; %s; %s\n' "$t" "$rate" "$batch" "${mem:-(cpu)}" "$model"
done
