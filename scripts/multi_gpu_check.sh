#!/usr/bin/env bash
# Training on several GPUs of one machine against one GPU (docs/distributed.md), on a machine with N GPUs:
#   bash scripts/multi_gpu_check.sh [N] [162M|1.13B|all] [STEPS]
# For each model (162M: D 768, L 12; 1.13B: the pile-1b preset, D 2048, L 18; vocabulary 50304, T 2048):
#  - the loss curves: 1 GPU with the batch B, N GPUs with the same global batch (B / N rows each) over STEPS
#    steps (default 300): they differ only in the order of the sums, so they should track each other; the
#    largest difference of 25-step means of the training loss, relative, must stay under 2e-2 (bf16 products);
#  - the scaling: N GPUs with B rows each (N B in all) against 1 GPU with B: tokens/s of each (from log.tsv,
#    the steps after the first 10) and the efficiency, tokens/s on N / (N x tokens/s on 1);
#  - the start without MPI: N processes through --rendezvous (RANK, WORLD_SIZE, LOCAL_RANK), the first 20
#    steps of the curve run again, which should give the same bits as under mpirun;
#  - --reduce-dtype bf16: the scaling run again, its tokens/s and how far its curve lies from fp32's;
#  - --bucket-mb 0: the scaling run again with the gradients reduced in one bucket after the backward instead
#    of 25 MiB buckets during it (what the overlap gains in tokens/s), in fp32 and in bf16, and whether the
#    curves are the same bits (they should be on 2 GPUs, a sum of two terms; NCCL may add more in another
#    order for pieces of other sizes).
# The data: tinyshakespeare as bytes ($HGRN2_SHARED/data/text/tinyshakespeare.txt, or .carry/shared/...) under
# a vocabulary of 50304, so that the head costs what it costs on the Pile. Everything goes under $OUT.
set -uo pipefail
N=${1:-$(nvidia-smi -L 2>/dev/null | wc -l)}
WHICH=${2:-all}
STEPS=${3:-300}
OUT=${OUT:-/tmp/multi_gpu}
SHARED=${HGRN2_SHARED:-$PWD/.carry/shared}
[ "$N" -ge 2 ] 2>/dev/null || { echo "multi_gpu_check: needs at least 2 GPUs (found '$N')"; exit 1; }
command -v mpirun >/dev/null || { echo "multi_gpu_check: mpirun not found (make setup installs Open MPI)"; exit 1; }
make -j8 hgrn2 >/dev/null || exit 1
H=$PWD/hgrn2
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# one process per GPU; each drives its OpenMP threads freely (the default binding would pin them to one core)
MPIRUN=(mpirun -np "$N" --bind-to none)
mkdir -p "$OUT"
D=$OUT/data
[ -d "$D" ] || $H prepare --task text --input "$SHARED/data/text/tinyshakespeare.txt" --tokenizer byte --out "$D" \
    --val-fraction 0.02 >/dev/null || exit 1
status=0

# tokens/s of a run: the tokens and seconds between the 10th logged step and the last
tps() { awk -F'\t' 'NR == 11 { t0 = $6; w0 = $7 } END { printf "%.0f", ($6 - t0) / ($7 - w0) }' "$1/log.tsv"; }
# the largest relative difference of the 25-step means of column 2 (training loss) of two logs
curve_diff() {
    paste "$1/log.tsv" "$2/log.tsv" | awk -F'\t' -v n="$(head -1 "$1/log.tsv" | awk -F'\t' '{ print NF }')" '
        NR > 1 { a += $2; b += $(n + 2); k++ }
        NR > 1 && k == 25 { d = (a - b) / a; if (d < 0) d = -d; if (d > m) m = d; a = b = k = 0 }
        END { printf "%.2e", m }'
}

check() {   # check NAME ARGS...: one model
    local name=$1; shift
    local -a args=("$@" --vocab 50304 --seq-len 2048 --data "$D" --task text --device cuda --eval-every 100
                   --eval-batches 4 --ckpt-every 0 --log-every 50 --warmup 50)
    local B=$BATCH R=$OUT/$name
    rm -rf "$R"; mkdir -p "$R"
    echo "== $name: the loss curve, 1 GPU against $N GPUs at the global batch $B, $STEPS steps =="
    if [ $((B % N)) != 0 ]; then echo "$N GPUs do not divide the batch of $B: curve skipped"; else
        $H train "${args[@]}" --batch "$B" --steps "$STEPS" --out "$R/one" > "$R/one.out" 2>&1 || { tail -n 3 "$R/one.out"; return 1; }
        "${MPIRUN[@]}" $H train "${args[@]}" --batch "$B" --steps "$STEPS" --out "$R/many" > "$R/many.out" 2>&1 ||
            { tail -n 5 "$R/many.out"; return 1; }
        grep -E "^\| (batch|memory|machine)" "$R/many.out"
        local d; d=$(curve_diff "$R/one" "$R/many")
        echo "training loss at the end: 1 GPU $(tail -1 "$R/one/log.tsv" | cut -f2), $N GPUs $(tail -1 "$R/many/log.tsv" | cut -f2);" \
             "held-out: $(tail -1 "$R/one/log.tsv" | cut -f3), $(tail -1 "$R/many/log.tsv" | cut -f3)"
        if awk -v d="$d" 'BEGIN { exit !(d < 2e-2) }'; then echo "curves agree: 25-step means within $d"
        else echo "FAIL: curves differ: 25-step means apart by $d"; status=1; fi

        echo "== $name: $N processes through --rendezvous (no MPI), 20 steps =="
        local pids=() r
        for r in $(seq 0 $((N - 1))); do
            RANK=$r WORLD_SIZE=$N LOCAL_RANK=$r $H train "${args[@]}" --batch "$B" --steps "$STEPS" --stop-at 20 \
                --rendezvous "$R/rv" --out "$R/rv_run" > "$R/rv$r.out" 2>&1 &
            pids+=($!)
        done
        local rv=0
        for p in "${pids[@]}"; do wait "$p" || rv=1; done
        if [ $rv != 0 ]; then echo "FAIL: a rendezvous process failed"; tail -n 3 "$R"/rv*.out; status=1
        elif cmp -s <(head -n 21 "$R/many/log.tsv" | cut -f1-5) <(cut -f1-5 "$R/rv_run/log.tsv"); then
            echo "the first 20 steps repeat the mpirun run's bits"
        else echo "note: the first 20 steps differ from the mpirun run's (NCCL may pick another algorithm)"
            paste <(head -n 21 "$R/many/log.tsv" | cut -f2) <(cut -f2 "$R/rv_run/log.tsv") | tail -3
        fi
    fi

    echo "== $name: scaling, $B rows on each GPU, 50 steps =="
    $H train "${args[@]}" --batch "$B" --steps 50 --out "$R/s1" > "$R/s1.out" 2>&1 || { tail -n 3 "$R/s1.out"; return 1; }
    "${MPIRUN[@]}" $H train "${args[@]}" --batch $((B * N)) --steps 50 --out "$R/sN" > "$R/sN.out" 2>&1 ||
        { tail -n 5 "$R/sN.out"; return 1; }
    local t1 tn; t1=$(tps "$R/s1"); tn=$(tps "$R/sN")
    echo "tokens/s: 1 GPU $t1, $N GPUs $tn; scaling efficiency $(awk -v a="$t1" -v b="$tn" -v n="$N" 'BEGIN { printf "%.3f", b / (n * a) }')"
    grep -E "peak GPU memory" "$R/sN.out" | sed 's/.*peak GPU memory/peak GPU memory (rank 0)/'

    echo "== $name: the same with --reduce-dtype bf16 =="
    "${MPIRUN[@]}" $H train "${args[@]}" --batch $((B * N)) --steps 50 --reduce-dtype bf16 --out "$R/sNb" > "$R/sNb.out" 2>&1 ||
        { tail -n 5 "$R/sNb.out"; return 1; }
    echo "tokens/s: $N GPUs, bf16 gradients $(tps "$R/sNb"); its curve against fp32 gradients' (25-step means): $(curve_diff "$R/sN" "$R/sNb")"

    echo "== $name: the same with --bucket-mb 0 (one bucket after the backward: no overlap) =="
    local d dt same
    for dt in fp32 bf16; do
        d=$R/sN1_$dt
        "${MPIRUN[@]}" $H train "${args[@]}" --batch $((B * N)) --steps 50 --reduce-dtype $dt --bucket-mb 0 --out "$d" > "$d.out" 2>&1 ||
            { tail -n 5 "$d.out"; return 1; }
        local ref=$R/sN; [ $dt = bf16 ] && ref=$R/sNb
        if cmp -s <(cut -f1-5 "$ref/log.tsv") <(cut -f1-5 "$d/log.tsv"); then same="the same bits as 25 MiB buckets"
        else same="not the same bits as 25 MiB buckets (25-step means within $(curve_diff "$ref" "$d"))"; fi
        echo "tokens/s, $dt gradients: one bucket $(tps "$d"), 25 MiB buckets $(tps "$ref"); $same"
    done
}

if [ "$WHICH" = 162M ] || [ "$WHICH" = all ]; then
    BATCH=16 check 162M --preset pile-150m --layers 12 || status=1
fi
if [ "$WHICH" = 1.13B ] || [ "$WHICH" = all ]; then
    BATCH=8 check 1.13B --preset pile-1b || status=1
fi
exit $status
