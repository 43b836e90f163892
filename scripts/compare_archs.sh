#!/usr/bin/env bash
# HGRN2 against its baselines, HGRN1 and the Transformer++ (the HGRN2 paper's comparisons), trained by the same
# code: the same data, preset, width, depth, batch, steps, seed and optimizer, so all see the same tokens. At the
# same D and L the three have the same parameter count up to 2 L D (each mixer holds three D x D projections and
# the output projection; the transformer has no g_norm and no lower bounds; docs/model.md).
# Each model is scored by 'hgrn2 eval' on the same held-out windows; the table lists the parameter counts,
# the tokens trained on, the held-out loss, perplexity and bits per byte, and the training time.
# Runs live in OUT/hgrn1, OUT/hgrn2 and OUT/transformer (model.ckpt, log.tsv, train.out, eval.out); with gnuplot
# installed, OUT/curves.png draws their training and held-out losses (hgrn2 plot).
#   bash scripts/compare_archs.sh [options] [-- more flags for every 'hgrn2 train' run]
#     --out DIR        (default runs/compare_archs)      --task NAME --data DIR  (default: bible)
#     --preset NAME    (default: the task's)             --dim N --layers N  (default: the preset's)
#     --expand-ratio N HGRN2's (default: the preset's; HGRN1's is always 1)
#     --heads N        the transformer's attention heads (default: heads of 64 where 64 divides D, else one)
#     --steps N --batch B --seq-len T  (default: the preset's)
#     --eval-batches N held-out batches scored (default 0: the whole val split)
#     --device cpu|cuda (default cpu)   --threads N   --hgrn2 PATH
#     --archs "LIST"   which of them, in this order (default "hgrn2 hgrn1 transformer")
#     --tiny           D 64, 2 layers, batch 8 x 128, 300 steps on the Bible: about a minute on 2 CPU cores
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
out=runs/compare_archs task="" data="" preset="" dim="" layers="" expand="" heads="" steps="" batch="" seq="" evalb=0
device=cpu threads="" hgrn2=./hgrn2 archs="hgrn2 hgrn1 transformer"
usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit "$1"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out=$2; shift ;;
        --task) task=$2; shift ;;
        --data) data=$2; shift ;;
        --preset) preset=$2; shift ;;
        --dim) dim=$2; shift ;;
        --layers) layers=$2; shift ;;
        --expand-ratio) expand=$2; shift ;;
        --heads) heads=$2; shift ;;
        --steps) steps=$2; shift ;;
        --batch) batch=$2; shift ;;
        --seq-len) seq=$2; shift ;;
        --eval-batches) evalb=$2; shift ;;
        --device) device=$2; shift ;;
        --threads) threads=$2; shift ;;
        --hgrn2) hgrn2=$2; shift ;;
        --archs) archs=$2; shift ;;
        --tiny) dim=64 layers=2 batch=8 seq=128 steps=300 ;;
        --) shift; break ;;
        -h|--help) usage 0 ;;
        *) echo "compare_archs.sh: unknown option '$1'" >&2; usage 2 >&2 ;;
    esac
    shift
done
[ -x "$hgrn2" ] || { echo "compare_archs.sh: $hgrn2 is missing: build it first (make)" >&2; exit 1; }
common=()
[ -n "$task" ] && common+=(--task "$task")
[ -n "$data" ] && common+=(--data "$data")
[ -n "$preset" ] && common+=(--preset "$preset")
[ -n "$dim" ] && common+=(--dim "$dim")
[ -n "$layers" ] && common+=(--layers "$layers")
[ -n "$steps" ] && common+=(--steps "$steps")
[ -n "$batch" ] && common+=(--batch "$batch")
[ -n "$seq" ] && common+=(--seq-len "$seq")
[ -n "$threads" ] && common+=(--threads "$threads")
common+=(--device "$device" --eval-every 0 --eval-batches 4 "$@")
mkdir -p "$out"
for arch in $archs; do
    case "$arch" in hgrn1|hgrn2|transformer) ;; *) echo "compare_archs.sh: unknown arch '$arch'" >&2; exit 2 ;; esac
    extra=(--arch "$arch")
    [ "$arch" = hgrn2 ] && [ -n "$expand" ] && extra+=(--expand-ratio "$expand")
    [ "$arch" = transformer ] && [ -n "$heads" ] && extra+=(--heads "$heads")
    echo "training $arch -> $out/$arch" >&2
    mkdir -p "$out/$arch"
    "$hgrn2" train "${common[@]}" "${extra[@]}" --out "$out/$arch" > "$out/$arch/train.out" 2>&1 \
        || { echo "compare_archs.sh: training $arch failed; see $out/$arch/train.out" >&2; exit 1; }
    ev=(--ckpt "$out/$arch/model.ckpt" --max-batches "$evalb")
    [ -n "$threads" ] && ev+=(--threads "$threads")
    "$hgrn2" eval "${ev[@]}" > "$out/$arch/eval.out" 2>&1 \
        || { echo "compare_archs.sh: evaluating $arch failed; see $out/$arch/eval.out" >&2; exit 1; }
done
printf '| arch | model | parameters | tokens trained | held-out loss | perplexity | bits per byte | train time |\n'
printf '|---|---|---|---|---|---|---|---|\n'
for arch in $archs; do
    d=$out/$arch
    # the sizes from the startup table's model row, without the vocabulary and what follows the mixer
    model=$(sed -n 's/^| model *| //p' "$d/train.out" | head -1 | sed -e 's/^HGRN1, //' -e 's/^Transformer++, //' -e 's/^V [0-9]*, //' \
            -e 's/, \(no \)\{0,1\}MLP.*//')
    params=$(sed -n 's/^| parameters *| \([0-9]*\).*/\1/p' "$d/train.out" | head -1)
    tokens=$(awk -F'\t' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "tokens") c = i; next } { t = $c } END { print t }' "$d/log.tsv")
    loss=$(awk '/^loss / { print $2 }' "$d/eval.out")
    ppl=$(sed -n 's/^perplexity \([^ ]*\).*/\1/p' "$d/eval.out")
    bpb=$(sed -n 's/.*bits per byte \([^ ]*\).*/\1/p' "$d/eval.out")
    secs=$(awk -F'\t' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "wall_s") c = i; next } { t = $c } END { printf "%.0f s", t }' "$d/log.tsv")
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$arch" "$model" "$params" "$tokens" "$loss" "$ppl" "${bpb:--}" "$secs"
done
# the loss curves of the runs in one picture, where gnuplot is installed (hgrn2 plot)
runs=()
for arch in $archs; do runs+=("$out/$arch"); done
if command -v gnuplot > /dev/null; then
    "$hgrn2" plot "${runs[@]}" --out "$out/curves.png" --title "$(echo $archs | sed 's/ /, /g'): training and held-out loss" > /dev/null \
        && echo "loss curves: $out/curves.png" >&2
else
    echo "compare_archs.sh: no gnuplot, so no loss curves (make setup installs it; hgrn2 plot ${runs[*]} draws them)" >&2
fi
