#!/usr/bin/env bash
# The HGRN2 paper's MQAR grid (docs/mqar.md): trains HGRN2 at every width D and (length T, pairs P), once per
# learning rate, scores each on the held-out examples and prints the best accuracy per cell (rows D,
# columns T). Each run lives in OUT/d<D>_t<T>_p<P>_lr<lr>/ (model.ckpt, log.tsv, train.out, settings,
# accuracy); a run whose accuracy file is there is not run again, so an interrupted sweep continues where it
# stopped. A run's settings (steps, batch, held-out examples, the flags after --) are kept beside it: a sweep
# that would reuse a directory trained otherwise (another --steps, -- --arch hgrn1 into the same OUT) stops
# before it starts, rather than report the other run's accuracy as its own.
#   bash scripts/mqar_sweep.sh [options] [-- more flags for hgrn2 train]
#     --device cuda|cpu   (default cuda)         --out DIR     (default runs/mqar_sweep)
#     --dims "64 128 256 512"                    --shapes "64:4 128:8 256:16 512:64"   (T:P[:STEPS[:BATCH]]:
#                a shape's own steps and batch, over --steps and --batch; such runs' directories name them)
#     --lrs "1e-3 3e-3 1e-2"                     --steps N     (default: the mqar preset's)
#     --seeds "1 2"  train every cell once per seed too, and take the best over lr and seed (a run leaves
#                MQAR's plateau after a number of steps that varies with the seed; default: the preset's seed)
#     --batch B (default: the preset's)          --examples N  held-out examples per score (default 3000)
#     --jobs N   runs at a time (on cuda, run i takes GPU i mod the GPUs nvidia-smi lists; default 1)
#     --threads N (cpu)                          --hgrn2 PATH  (default ./hgrn2)
#     --curriculum  every shape after the first starts from the weights of the best run of the shape
#                before it at the same D (train --init), the shapes taken in the order given; without it
#                every run starts from a fresh model, as the paper's runs did
#     --table    train nothing: print the table of the runs already scored in OUT (a sweep stopped part way,
#                or looked at again later; give it the sweep's own options)
#     --tiny     a small grid that finishes in a minute on a CPU: D 64, T:P 32:2 64:4, lr 1e-2 3e-3,
#                40 steps, 64 examples (with --device cpu; for checking the script, not for results)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
device=cuda out=runs/mqar_sweep dims="64 128 256 512" shapes="64:4 128:8 256:16 512:64" lrs="1e-3 3e-3 1e-2"
steps="" batch="" examples=3000 jobs=1 threads="" hgrn2=./hgrn2 seeds="" curriculum=0 table_only=0
usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit "$1"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device=$2; shift ;;
        --out) out=$2; shift ;;
        --dims) dims=$2; shift ;;
        --shapes) shapes=$2; shift ;;
        --lrs) lrs=$2; shift ;;
        --seeds) seeds=$2; shift ;;
        --steps) steps=$2; shift ;;
        --batch) batch=$2; shift ;;
        --examples) examples=$2; shift ;;
        --jobs) jobs=$2; shift ;;
        --threads) threads=$2; shift ;;
        --hgrn2) hgrn2=$2; shift ;;
        --curriculum) curriculum=1 ;;
        --table) table_only=1 ;;
        --tiny) dims="64" shapes="32:2 64:4" lrs="1e-2 3e-3" steps=40 examples=64 ;;
        --) shift; break ;;
        -h | --help) usage 0 ;;
        *) echo "mqar_sweep.sh: unknown option '$1'" >&2; usage 2 >&2 ;;
    esac
    [ $# -gt 0 ] && shift
done
extra=("$@")
case "$device" in cuda | cpu) ;; *) echo "mqar_sweep.sh: --device must be cuda or cpu" >&2; exit 2 ;; esac
[ "$table_only" = 1 ] || [ -x "$hgrn2" ] || { echo "mqar_sweep.sh: $hgrn2 not found: build it first (make)" >&2; exit 1; }
[ "$table_only" = 1 ] || mkdir -p "$out"
ngpu=1
[ "$device" = cuda ] && ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU') && [ "$ngpu" -ge 1 ] || ngpu=1

# a shape T:P[:STEPS[:BATCH]] in parts: sets T P S B (S, B: the shape's own steps and batch, or empty)
parse_shape() {
    IFS=: read -r T P S B <<< "$1"
    case "$T$P$S$B" in *[!0-9]* | "") echo "mqar_sweep.sh: bad shape '$1' (T:P[:STEPS[:BATCH]], numbers)" >&2; exit 2 ;; esac
    [ -n "$T" ] && [ -n "$P" ] || { echo "mqar_sweep.sh: bad shape '$1' (T:P[:STEPS[:BATCH]])" >&2; exit 2; }
}
# a run's directory: the shape's own steps and batch, and the seed, when given, are part of its name
run_dir() {   # D T P lr S B seed
    local d="$out/d$1_t$2_p$3_lr$4"
    [ -n "$5" ] && d+="_s$5"
    [ -n "$6" ] && d+="_b$6"
    [ -n "${7:-}" ] && d+="_seed$7"
    echo "$d"
}

# what a run's result depends on beyond its directory's name: steps, batch, held-out examples, the extra flags,
# and whether it started from the shape before it
settings_of() {   # S B
    local s="steps=${1:-${steps:-preset}} batch=${2:-${batch:-preset}} examples=$examples flags=${extra[*]+${extra[*]}}"
    [ "$curriculum" = 1 ] && s+=" curriculum=$shapes"
    echo "$s"
}

# one run: train (from the weights of INIT when given), then score the final model; writes its accuracy file last
run() {   # slot D T P lr S B seed INIT
    local slot=$1 D=$2 T=$3 P=$4 lr=$5 rsteps=${6:-$steps} rbatch=${7:-$batch} seed=${8:-} init=${9:-}
    local dir
    dir=$(run_dir "$D" "$T" "$P" "$lr" "$6" "$7" "$seed")
    [ -s "$dir/accuracy" ] && return 0
    local flags=(--device "$device")
    [ -n "$threads" ] && flags+=(--threads "$threads")
    local env=()
    [ "$device" = cuda ] && env=(env CUDA_VISIBLE_DEVICES=$((slot % ngpu)))
    local train=(--task mqar --seq-len "$T" --kv-pairs "$P" --lr "$lr" --out "$dir" --log-every 100)
    if [ -n "$init" ]; then train+=(--init "$init"); else train+=(--dim "$D"); fi
    [ -n "$rsteps" ] && train+=(--steps "$rsteps")
    [ -n "$rbatch" ] && train+=(--batch "$rbatch")
    [ -n "$seed" ] && train+=(--seed "$seed")
    mkdir -p "$dir"
    settings_of "$6" "$7" > "$dir/settings"
    if ! ${env[@]+"${env[@]}"} "$hgrn2" train "${train[@]}" "${flags[@]}" ${extra[@]+"${extra[@]}"} > "$dir/train.out" 2>&1; then
        echo "D $D T $T P $P lr $lr: training failed (see $dir/train.out)" >&2
        return 1
    fi
    if ! ${env[@]+"${env[@]}"} "$hgrn2" eval --ckpt "$dir/model.ckpt" --examples "$examples" "${flags[@]}" > "$dir/eval.out" 2>&1; then
        echo "D $D T $T P $P lr $lr: evaluation failed (see $dir/eval.out)" >&2
        return 1
    fi
    local acc
    acc=$(tail -n 1 "$dir/eval.out" | awk '$1 == "accuracy" { print $2 }')
    [ -n "$acc" ] || { echo "D $D T $T P $P lr $lr: no accuracy in $dir/eval.out" >&2; return 1; }
    echo "$acc" > "$dir/accuracy"
    printf 'D %4d  T %4d  P %3d  lr %-6s%s accuracy %s\n' "$D" "$T" "$P" "$lr" "${seed:+ seed $seed}" "$acc"
}

for shape in $shapes; do parse_shape "$shape"; done   # every shape checked before the first run
for seed in $seeds; do case "$seed" in *[!0-9]*) echo "mqar_sweep.sh: bad seed '$seed'" >&2; exit 2 ;; esac; done
seed_list=${seeds:-"-"}    # "-": the preset's seed, no suffix
# calls "$@" D T P lr S B seed for every run of one shape at one width
shape_runs() {   # D shape command...
    local D=$1 lr seed
    parse_shape "$2"
    shift 2
    for lr in $lrs; do
        for seed in $seed_list; do
            [ "$seed" = - ] && seed=""
            "$@" "$D" "$T" "$P" "$lr" "$S" "$B" "$seed"
        done
    done
}
# calls "$@" D T P lr S B seed for every run of the sweep, in order
each_run() {
    local D shape
    for D in $dims; do for shape in $shapes; do shape_runs "$D" "$shape" "$@"; done; done
}
# the best scored run of a cell: sets best (its accuracy), blr and bdir, or leaves best empty
best_of() {   # D shape
    best="" blr="" bdir=""
    shape_runs "$1" "$2" best_step
}
best_step() {   # D T P lr S B seed
    local d a
    d=$(run_dir "$@")
    [ -s "$d/accuracy" ] || return 0
    a=$(cat "$d/accuracy")
    if [ -z "$best" ] || awk -v a="$a" -v b="$best" 'BEGIN { exit !(a > b) }'; then best=$a blr=$4 bdir=$d; fi
}
# every directory this sweep would reuse must have been trained with its settings
check_settings() {   # D T P lr S B seed
    local dir want
    dir=$(run_dir "$@")
    want=$(settings_of "$5" "$6")
    if [ -f "$dir/settings" ] && [ "$(cat "$dir/settings")" != "$want" ]; then
        echo "mqar_sweep.sh: $dir was trained with other settings ($(cat "$dir/settings")) than this sweep's ($want)" >&2
        clash=1
    fi
}
clash=0
each_run check_settings
if [ "$clash" = 1 ]; then
    if [ "$table_only" = 1 ]; then echo "mqar_sweep.sh: give --table the options that sweep ran with" >&2
    else echo "mqar_sweep.sh: give this sweep another --out" >&2; fi
    exit 2
fi
# the runs, --jobs at a time
launch() {   # D T P lr S B seed
    if [ "$jobs" -gt 1 ]; then
        while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || failed=1; done
        run $((i % jobs)) "$@" "$init" &
    else
        run 0 "$@" "$init" || failed=1
    fi
    i=$((i + 1))
}
wait_all() { while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n || failed=1; done; }
failed=0 i=0 init=""
if [ "$table_only" = 1 ]; then
    [ -d "$out" ] || { echo "mqar_sweep.sh: no sweep in $out" >&2; exit 2; }
elif [ "$curriculum" = 0 ]; then
    each_run launch
    wait_all
else
    # a shape at a time, every width's runs of it together; the next shape waits for them all, then starts
    # each width from that width's best run so far
    prev=""
    for shape in $shapes; do
        for D in $dims; do
            init=""
            if [ -n "$prev" ]; then
                best_of "$D" "$prev"
                if [ -z "$best" ]; then
                    echo "D $D T:P $shape: no scored run of $prev to start from; skipped" >&2
                    failed=1
                    continue
                fi
                init="$bdir/model.ckpt"
            fi
            shape_runs "$D" "$shape" launch
        done
        wait_all
        prev=$shape
    done
fi

# the table: per (D, T) the best accuracy over the learning rates, and the lr that gave it
echo
over_seeds=""
[ -n "$seeds" ] && over_seeds=" and seed in { $seeds }"
echo "best held-out accuracy over lr in { $lrs }$over_seeds ($examples examples each), rows D, columns T/pairs:"
[ "$curriculum" = 1 ] && echo "(--curriculum: each shape from the best run of the one before it at the same D)"
{
    printf '%-6s' "D"
    for shape in $shapes; do parse_shape "$shape"; printf '  %-16s' "T $T/$P"; done
    printf '\n'
    for D in $dims; do
        printf '%-6s' "$D"
        for shape in $shapes; do
            best_of "$D" "$shape"
            if [ -n "$best" ]; then printf '  %-16s' "$(printf '%.4f (%s)' "$best" "$blr")"; else printf '  %-16s' "-"; fi
        done
        printf '\n'
    done
} | tee "$out/table.txt"
exit $failed
