#!/usr/bin/env bash
# Training over several processes on the CPU (mpirun, MPI; docs/distributed.md): 2 processes against 1 (the
# same losses up to the order of fp32 sums), two 2-process runs bit for bit alike, --resume across 1, 2 and
# 3 processes, the gathered checkpoint the single process's own, --accum and MQAR over 2 processes, the
# gradients' reduction in small buckets against one, Ctrl-C, and every refusal. Exits 77 (skipped, tests/run.sh) where mpirun or MPI's compiler wrapper is missing.
. "$(dirname "$0")/lib.sh"
H=./hgrn2
if ! command -v mpirun >/dev/null 2>&1 || ! command -v mpicc >/dev/null 2>&1; then
    echo "skipped: mpirun or mpicc not found (make setup installs Open MPI)"
    exit 77
fi
# Open MPI refuses root unless told, and counts cores as slots: 2 or 3 processes on 2 cores oversubscribe
MPIRUN=(mpirun)
if mpirun --version 2>/dev/null | grep -q "Open MPI"; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    MPIRUN+=(--oversubscribe)
fi
mpi() { local n=$1; shift; "${MPIRUN[@]}" -np "$n" "$@"; }

# close A B COLS TOL: logs A and B have the same rows, and in each of the (1-based, comma-separated) columns
# COLS, the same empty fields and values within a relative TOL of each other. A and B may be pipes (<(...)),
# which read once: they are copied to files first.
close() {
    checks=$((checks + 1))
    cat "$1" > "$TMP/close.a"; cat "$2" > "$TMP/close.b"
    set -- "$TMP/close.a" "$TMP/close.b" "$3" "$4" "$5"
    if [ "$(wc -l < "$1")" != "$(wc -l < "$2")" ]; then fail "$5: $(wc -l < "$1") against $(wc -l < "$2") rows"; return; fi
    if [ "$(wc -l < "$1")" -lt 2 ]; then fail "$5: no rows to compare"; return; fi
    if awk -F'\t' -v cols="$3" -v tol="$4" '
        NR == FNR { a[FNR] = $0; next }
        FNR > 1 { split(a[FNR], x, "\t"); n = split(cols, c, ",")
                  for (i = 1; i <= n; i++) { u = x[c[i]]; v = $c[i]
                      if ((u == "") != (v == "")) { bad = 1; printf "    row %d column %d: \"%s\" against \"%s\"\n", FNR, c[i], u, v; continue }
                      if (u == "") continue
                      d = u - v; if (d < 0) d = -d; s = u < 0 ? -u : u
                      if (d > tol * s) { bad = 1; printf "    row %d column %d: %s against %s\n", FNR, c[i], u, v } } }
        END { exit bad }' "$1" "$2" > "$TMP/close"
    then ok "$5"; else fail "$5"; head -5 "$TMP/close"; fi
}
same() {   # same A B WHAT: byte-identical files
    checks=$((checks + 1))
    if cmp -s "$1" "$2"; then ok "$3"; else fail "$3"; fi
}

D="$TMP/data"
expect 0 "prepare tinyshakespeare (byte)" -- $H prepare --task text --input "$SHARED/data/text/tinyshakespeare.txt" \
    --tokenizer byte --out "$D" --val-fraction 0.02
SMALL=(--task text --data "$D" --dim 32 --layers 2 --expand-ratio 8 --batch 8 --seq-len 32 --lr 3e-3 --warmup 5
       --threads 1)
PROG=(--eval-every 10 --eval-batches 4)

# (a) 2 processes against 1. Each process sums the gradients of its 4 rows, MPI adds the two sums: the fp32
# roundings of another order of addition, a few units of 2^-24 relative in each gradient (the norm shows
# them: about 1e-6 relative). AdamW turns them into parameter differences of the same relative order, and the
# training losses and held-out losses, which average thousands of terms, differ by less (1e-8 relative over
# these 30 steps). The tolerances leave a factor of 100: 1e-6 for the losses, 1e-4 for the norm; lr and the
# token counts are exact.
expect 0 "train 30 steps, 1 process" -- $H train "${SMALL[@]}" "${PROG[@]}" --steps 30 --out "$TMP/one"
expect 0 "train 30 steps, 2 processes" -- mpi 2 $H train "${SMALL[@]}" "${PROG[@]}" --steps 30 --out "$TMP/two"
grep -q "rows on each of 2 processes" "$TMP/out" && grep -q "2 processes (MPI, buckets of 25 MiB), cpu, 1 thread each" "$TMP/out" &&
    grep -q "AdamW 0.3 MiB (a 1/2 part; one process holds 0.6 MiB)" "$TMP/out" ||
    { fail "the startup table of 2 processes"; head -n 20 "$TMP/out" | sed 's/^/    /'; }
[ "$(grep -c '^step ' "$TMP/out")" = 30 ] ||
    { fail "rank 1 printed too, or output was lost: $(grep -c '^step ' "$TMP/out") progress lines"; sed 's/^/    /' "$TMP/out"; }
close "$TMP/one/log.tsv" "$TMP/two/log.tsv" 2,3 1e-6 "2 processes: the training and held-out losses of 1, within 1e-6"
close "$TMP/one/log.tsv" "$TMP/two/log.tsv" 5 1e-4 "2 processes: the gradient norms of 1, within 1e-4"
close "$TMP/one/log.tsv" "$TMP/two/log.tsv" 1,4,6 0 "2 processes: the steps, rates and token counts of 1"

# (b) the same 2-process run again: the same bits (each process's ops are deterministic, and a sum of two
# terms does not depend on the order MPI takes them in)
expect 0 "train 30 steps, 2 processes, again" -- mpi 2 $H train "${SMALL[@]}" "${PROG[@]}" --steps 30 --out "$TMP/two2"
same <(cut -f1-5 "$TMP/two/log.tsv") <(cut -f1-5 "$TMP/two2/log.tsv") "two 2-process runs log the same losses"
same "$TMP/two/model.ckpt" "$TMP/two2/model.ckpt" "two 2-process runs end in the identical checkpoint"

# (c) resume across process counts: 2 processes stopped at 12 and resumed on 2 repeat the uninterrupted run
# exactly; 1 process to 12, then 2, and 2 to 12, then 1, stay within the tolerances of (a)
expect 0 "2 processes, stop at 12" -- mpi 2 $H train "${SMALL[@]}" "${PROG[@]}" --steps 30 --stop-at 12 --out "$TMP/r22"
expect 0 "resume on 2 processes" -- mpi 2 $H train --resume --out "$TMP/r22" "${PROG[@]}" --threads 1
same <(cut -f1-5 "$TMP/two/log.tsv") <(cut -f1-5 "$TMP/r22/log.tsv") "2 -> 2 processes: the uninterrupted run's losses"
same "$TMP/two/model.ckpt" "$TMP/r22/model.ckpt" "2 -> 2 processes: the uninterrupted run's checkpoint"
expect 0 "1 process, stop at 12" -- $H train "${SMALL[@]}" "${PROG[@]}" --steps 30 --stop-at 12 --out "$TMP/r12"
expect 0 "resume on 2 processes" -- mpi 2 $H train --resume --out "$TMP/r12" "${PROG[@]}" --threads 1
close "$TMP/one/log.tsv" "$TMP/r12/log.tsv" 2,3 1e-6 "1 -> 2 processes: the losses of 1 process throughout"
expect 0 "2 processes, stop at 12" -- mpi 2 $H train "${SMALL[@]}" "${PROG[@]}" --steps 30 --stop-at 12 --out "$TMP/r21"
expect 0 "resume on 1 process" -- $H train --resume --out "$TMP/r21" "${PROG[@]}" --threads 1
close "$TMP/one/log.tsv" "$TMP/r21/log.tsv" 2,3 1e-6 "2 -> 1 process: the losses of 1 process throughout"
expect 2 "resume on 3 processes, which do not divide the batch of 8" -- mpi 3 $H train --resume --out "$TMP/r21" --threads 1
expect_msg "batch of 8 rows (its checkpoint's) does not split over 3 processes"

# (d) the checkpoint: the moments gathered into the single process's format. A 1-process checkpoint saved
# again by 2 and by 3 processes with nothing left to do (parts of unequal use: 57800 parameters over 3)
# comes out byte for byte; a 2-process one loads in eval.
ODD=(--task text --data "$D" --dim 40 --layers 1 --expand-ratio 8 --batch 6 --seq-len 32 --lr 3e-3 --warmup 5 --threads 1)
expect 0 "1 process, 12 steps, 57800 parameters" -- $H train "${ODD[@]}" "${PROG[@]}" --steps 12 --out "$TMP/odd"
cp "$TMP/odd/model.ckpt" "$TMP/odd.ckpt"
expect 0 "the same on 2 processes: nothing to do" -- mpi 2 $H train --resume --out "$TMP/odd" --threads 1
grep -q "already at step 12 of 12" "$TMP/out" || { fail "the finished run did not say so"; sed 's/^/    /' "$TMP/out" "$TMP/err"; }
same "$TMP/odd.ckpt" "$TMP/odd/model.ckpt" "saved again by 2 processes: the same bytes"
expect 0 "the same on 3 processes: nothing to do" -- mpi 3 $H train --resume --out "$TMP/odd" --threads 1
same "$TMP/odd.ckpt" "$TMP/odd/model.ckpt" "saved again by 3 processes (a padded part): the same bytes"
expect 0 "1 process, the same 12 steps" -- $H train "${ODD[@]}" "${PROG[@]}" --steps 12 --out "$TMP/odd1"
expect 0 "resumed on 1 process to step 24" -- $H train --resume --out "$TMP/odd1" --steps 24 "${PROG[@]}" --threads 1
expect 0 "resumed on 3 processes to step 24" -- mpi 3 $H train --resume --out "$TMP/odd" --steps 24 "${PROG[@]}" --threads 1
close "$TMP/odd1/log.tsv" "$TMP/odd/log.tsv" 2,3 1e-6 "1 -> 3 processes: the losses of 1 process throughout"
checks=$((checks + 1))
[ "$(stat -c %s "$TMP/one/model.ckpt")" = "$(stat -c %s "$TMP/two/model.ckpt")" ] && ok "a 2-process checkpoint has the 1-process size" ||
    fail "checkpoint sizes $(stat -c %s "$TMP/one/model.ckpt") and $(stat -c %s "$TMP/two/model.ckpt")"
expect 0 "eval a 2-process checkpoint" -- $H eval --ckpt "$TMP/two/model.ckpt" --max-batches 2 --threads 1
expect 0 "eval a 1-process checkpoint" -- $H eval --ckpt "$TMP/one/model.ckpt" --max-batches 2 --threads 1

# --accum 2 on 2 processes against 1
expect 0 "accum 2, 1 process" -- $H train "${SMALL[@]}" --accum 2 --eval-every 5 --eval-batches 2 --steps 10 --out "$TMP/acc1"
expect 0 "accum 2, 2 processes" -- mpi 2 $H train "${SMALL[@]}" --accum 2 --eval-every 5 --eval-batches 2 --steps 10 --out "$TMP/acc2"
close "$TMP/acc1/log.tsv" "$TMP/acc2/log.tsv" 2,3 1e-6 "--accum 2 on 2 processes: the losses of 1"

# (g) buckets: the gradients' reduction starts during the backward, one bucket of --bucket-mb at a time from
# the top of the vector, each piece within one process's part summed into that process (MPI_Ireduce). SMALL
# has 74016 parameters: layer 1 at [45248, 74016), layer 0 at [16480, 45248), the global tensors below;
# the parts of 2 processes meet at 37008, inside layer 0's up_proj. Buckets of 0.01 MiB (2622 values) cut
# each layer into 11 or 12, and the bucket [34686, 37308) crosses the parts' boundary. With 2 processes each
# sum is of two terms, whatever the cut: the same bits as one bucket (--bucket-mb 0, the whole vector after
# the backward), and as the default 25 MiB (one bucket here too, run as (a)'s "two").
expect 0 "2 processes, buckets of 0.01 MiB" -- mpi 2 $H train "${SMALL[@]}" "${PROG[@]}" --steps 30 --bucket-mb 0.01 --out "$TMP/b001"
grep -q "2 processes (MPI, buckets of 0.01 MiB)" "$TMP/out" || fail "the startup table of buckets of 0.01 MiB"
expect 0 "2 processes, one bucket" -- mpi 2 $H train "${SMALL[@]}" "${PROG[@]}" --steps 30 --bucket-mb 0 --out "$TMP/b0"
grep -q "2 processes (MPI, one bucket)" "$TMP/out" || fail "the startup table of one bucket"
same <(cut -f1-5 "$TMP/b0/log.tsv") <(cut -f1-5 "$TMP/b001/log.tsv") "buckets of 0.01 MiB: the losses of one bucket, bit for bit"
same "$TMP/b0/model.ckpt" "$TMP/b001/model.ckpt" "buckets of 0.01 MiB: the checkpoint of one bucket"
same "$TMP/two/model.ckpt" "$TMP/b001/model.ckpt" "buckets of 0.01 MiB: the checkpoint of the default bucket"
close "$TMP/one/log.tsv" "$TMP/b001/log.tsv" 2,3 1e-6 "buckets of 0.01 MiB: the losses of 1 process, within 1e-6"
# --accum 2: the first micro-batch's gradients stay local, the second's backward sends the buckets
expect 0 "accum 2, 2 processes, buckets of 0.01 MiB" -- mpi 2 $H train "${SMALL[@]}" --accum 2 --eval-every 5 --eval-batches 2 \
    --steps 10 --bucket-mb 0.01 --out "$TMP/accb"
same <(cut -f1-5 "$TMP/acc2/log.tsv") <(cut -f1-5 "$TMP/accb/log.tsv") "--accum 2, buckets of 0.01 MiB: the losses of the default bucket"
close "$TMP/acc1/log.tsv" "$TMP/accb/log.tsv" 2,3 1e-6 "--accum 2, buckets of 0.01 MiB: the losses of 1 process"
# 3 processes: ODD's 57800 parameters in parts of 19267 that begin inside lm_head ([10320, 20560)) and
# inside layer 0's up_proj; buckets of 0.004 MiB (1049 values), 36 or 37 of them over the layer's 37240. Sums of three
# terms may be taken in another order for pieces of another size: within (a)'s tolerance of 1 process.
expect 0 "3 processes, buckets of 0.004 MiB" -- mpi 3 $H train "${ODD[@]}" "${PROG[@]}" --steps 12 --bucket-mb 0.004 --out "$TMP/b3"
close <(head -n 13 "$TMP/odd1/log.tsv") "$TMP/b3/log.tsv" 2,3 1e-6 "3 processes, buckets of 0.004 MiB: the losses of 1 process"
close <(head -n 13 "$TMP/odd1/log.tsv") "$TMP/b3/log.tsv" 5 1e-4 "3 processes, buckets of 0.004 MiB: the gradient norms of 1"
# every process must cut the same buckets
expect 2 "processes given different --bucket-mb" -- "${MPIRUN[@]}" -np 1 $H train "${SMALL[@]}" --steps 2 --bucket-mb 1 \
    --out "$TMP/bad" : -np 1 $H train "${SMALL[@]}" --steps 2 --bucket-mb 2 --out "$TMP/bad"
expect_msg "the processes were given different --bucket-mb (from 1 to 2 MiB)"
expect 2 "--bucket-mb -1" -- $H train "${SMALL[@]}" --steps 2 --bucket-mb -1 --out "$TMP/bad"

# (e) MQAR: each process draws its examples of each batch; the loss counts the answers of the whole batch.
# Its first steps agree as in (a); later ones drift further apart: the vocabulary of 8192 has rows whose
# gradients are tiny, where AdamW's first steps move a parameter by about lr whatever the size of its
# gradient, so a difference in the last bits grows (about 1e-4 relative by step 12 at lr 1e-2). The first
# 5 steps are compared, and the rest bit for bit between two 2-process runs and across a 2 -> 2 resume.
MQ=(--task mqar --dim 32 --layers 2 --seq-len 32 --kv-pairs 4 --batch 8 --eval-every 10 --eval-batches 2 --threads 1)
expect 0 "mqar, 1 process" -- $H train "${MQ[@]}" --steps 20 --out "$TMP/mq1"
expect 0 "mqar, 2 processes" -- mpi 2 $H train "${MQ[@]}" --steps 20 --out "$TMP/mq2"
close <(head -n 6 "$TMP/mq1/log.tsv") <(head -n 6 "$TMP/mq2/log.tsv") 2 1e-6 "mqar on 2 processes: the first 5 losses of 1"
awk -F'\t' 'NR > 1 && $3 != "" && !($6 >= 0 && $6 <= 1) { bad = 1 } END { exit bad }' "$TMP/mq2/log.tsv" ||
    fail "mqar on 2 processes: a held-out accuracy outside [0, 1]"
expect 0 "mqar, 2 processes, stop at 8" -- mpi 2 $H train "${MQ[@]}" --steps 20 --stop-at 8 --out "$TMP/mq3"
expect 0 "mqar, resume on 2 processes" -- mpi 2 $H train --resume --out "$TMP/mq3" --eval-every 10 --eval-batches 2 --threads 1
same <(cut -f1-6 "$TMP/mq2/log.tsv") <(cut -f1-6 "$TMP/mq3/log.tsv") "mqar 2 -> 2 processes: the uninterrupted run's log"
same "$TMP/mq2/model.ckpt" "$TMP/mq3/model.ckpt" "mqar 2 -> 2 processes: the uninterrupted run's checkpoint"
# a fixed training set: each process takes its rows of the same shuffled batches
expect 0 "mqar, a fixed set of 24, 1 process" -- $H train "${MQ[@]}" --train-examples 24 --steps 6 --out "$TMP/mqf1"
expect 0 "mqar, a fixed set of 24, 2 processes" -- mpi 2 $H train "${MQ[@]}" --train-examples 24 --steps 6 --out "$TMP/mqf2"
# (its drift grows faster: 5e-8 relative at step 4, 1e-6 at step 5, 3e-6 at step 6, so its first 4 are compared)
close <(head -n 5 "$TMP/mqf1/log.tsv") <(head -n 5 "$TMP/mqf2/log.tsv") 2 1e-6 "mqar's fixed set on 2 processes: the first 4 losses of 1"
# dropout on the embeddings: each sequence's mask comes from its index in the global batch, so 2 processes
# drop what 1 does (and Zoology's blocks with the authors' layer, the model the dropout comes from)
ZD=(--block zoology --mixer-layer lra --embed-dropout 0.3 --steps 6)
expect 0 "mqar with embedding dropout, 1 process" -- $H train "${MQ[@]}" "${ZD[@]}" --out "$TMP/mqd1"
expect 0 "mqar with embedding dropout, 2 processes" -- mpi 2 $H train "${MQ[@]}" "${ZD[@]}" --out "$TMP/mqd2"
close <(head -n 6 "$TMP/mqd1/log.tsv") <(head -n 6 "$TMP/mqd2/log.tsv") 2 1e-6 "embedding dropout on 2 processes: the losses of 1"
expect 0 "eval --task mqar on the 2-process model" -- $H eval --ckpt "$TMP/mq2/model.ckpt" --examples 64 --threads 1

# Ctrl-C: mpirun passes it on as SIGTERM to every process (after odls_base_sigkill_timeout, 1 s, and kills
# them that long later); they finish the step, rank 0 saves, and the run resumes
"${MPIRUN[@]}" -np 2 $H train "${SMALL[@]}" --steps 1000000 --out "$TMP/int" > "$TMP/int.out" 2>&1 &
pid=$!   # mpirun's own
for _ in $(seq 1 300); do [ -s "$TMP/int/log.tsv" ] && [ "$(wc -l < "$TMP/int/log.tsv")" -ge 5 ] && break; sleep 0.1; done
kill -INT $pid; wait $pid
checks=$((checks + 1))
if grep -q "terminated: saved" "$TMP/int.out" && [ -s "$TMP/int/model.ckpt" ]; then ok "Ctrl-C on mpirun: every process stops, rank 0 saves"
else fail "Ctrl-C on mpirun"; tail -3 "$TMP/int.out"; fi
done_steps=$(( $(wc -l < "$TMP/int/log.tsv") - 1 ))
expect 0 "resume after Ctrl-C on 2 processes" -- mpi 2 $H train --resume --out "$TMP/int" --steps $((done_steps + 2)) --threads 1

# (f) refusals: each a clear message from rank 0 and a non-zero exit
expect 2 "a batch of 7 over 2 processes" -- mpi 2 $H train "${SMALL[@]}" --batch 7 --steps 2 --out "$TMP/bad"
expect_msg "batch 7 does not split over 2 processes"
[ "$(grep -c 'does not split' "$TMP/err")" = 1 ] || fail "the usage error came $(grep -c 'does not split' "$TMP/err") times"
expect 2 "a classifier task under mpirun" -- mpi 2 $H train --task lra-listops --out "$TMP/bad"
expect_msg "training a classifier (lra-\*, fashion-mnist, imagenet) runs in one process"
expect 2 "eval under mpirun" -- mpi 2 $H eval --ckpt "$TMP/one/model.ckpt"
expect_msg "'hgrn2 eval' runs in one process"
expect 2 "--rendezvous on the CPU" -- $H train "${SMALL[@]}" --steps 2 --rendezvous "$TMP/rv" --rank 0 --world-size 2 --out "$TMP/bad"
expect_msg "needs --device cuda"
expect 2 "--rank without --rendezvous" -- $H train "${SMALL[@]}" --steps 2 --rank 1 --out "$TMP/bad"
expect_msg "go with --rendezvous"
expect 2 "--reduce-dtype bf16 over MPI" -- mpi 2 $H train "${SMALL[@]}" --steps 2 --reduce-dtype bf16 --out "$TMP/bad"
expect_msg "reduces in fp32"
expect 2 "--reduce-dtype fp16" -- $H train "${SMALL[@]}" --steps 2 --reduce-dtype fp16 --out "$TMP/bad"
expect 1 "a launcher's process count that is not a number" -- env OMPI_COMM_WORLD_SIZE=two $H train "${SMALL[@]}" --steps 2 --out "$TMP/bad"
expect_msg "OMPI_COMM_WORLD_SIZE is 'two'"
expect 1 "2 processes on missing data" -- mpi 2 $H train --task text --data "$TMP/none" --steps 2 --out "$TMP/bad"
expect_msg "no training shards"
finish
