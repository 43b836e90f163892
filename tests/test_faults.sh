#!/usr/bin/env bash
# Faults: kill -9 at random moments of train, prepare and export; a full disk while saving; two trainers in
# one run directory; log.tsv after a crash. Whatever happens, a later command either refuses or carries on,
# nothing half-written is taken for whole, and a run resumed after any number of kills ends bit for bit
# where an uninterrupted one does. The random choices come from HGRN2_FAULT_SEED (printed; default: the pid).
. "$(dirname "$0")/lib.sh"
H=./hgrn2
export OMP_NUM_THREADS=1     # one thread: on a busy machine, threads that spin-wait for each other crawl
SEED=${HGRN2_FAULT_SEED:-$$}
RANDOM=$SEED
echo "random delays from HGRN2_FAULT_SEED=$SEED"
# a delay of lo..hi milliseconds, as seconds for sleep
delay() { local ms=$(($1 + RANDOM % ($2 - $1 + 1))); printf '%d.%03d' $((ms / 1000)) $((ms % 1000)); }
now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }
# The machine's speed varies with its load, so kills are timed against progress: N step lines printed,
# or a fraction of how long the same command took when left alone.
wait_steps() {   # wait_steps PID FILE N: until FILE holds N progress lines or PID has ended
    while kill -0 "$1" 2>/dev/null && [ "$(grep -c '^step ' "$2")" -lt "$3" ]; do sleep 0.01; done
}
same() {   # same FILE FILE DESCRIPTION: one check that the two files are identical (log.tsv: but for wall_s)
    checks=$((checks + 1))
    case "$1" in
    *.tsv)   # the last column of a run's log, wall_s, is the only one that depends on the clock
        if cmp -s <(sed 's/\t[^\t]*$//' "$1") <(sed 's/\t[^\t]*$//' "$2"); then ok "$3"; else fail "$3: $1 and $2 differ"; fi ;;
    *) if cmp -s "$1" "$2"; then ok "$3"; else fail "$3: $1 and $2 differ"; fi ;;
    esac
}

D="$TMP/data"
expect 0 "prepare tinyshakespeare (byte)" -- $H prepare --task text --input "$SHARED/data/text/tinyshakespeare.txt" \
    --tokenizer byte --out "$D" --val-fraction 0.02
RUN=(--task text --data "$D" --dim 32 --layers 2 --expand-ratio 8 --batch 4 --seq-len 80 --lr 3e-3 --warmup 5 --steps 36)
PROGRESS=(--eval-every 10 --eval-batches 4 --ckpt-every 3)     # not kept in checkpoints: given on every resume
expect 0 "an uninterrupted run of 36 steps" -- $H train "${RUN[@]}" "${PROGRESS[@]}" --out "$TMP/ref"

# ---- --init: a new run from another's weights (fine-tuning, the README's command): the model is the
# checkpoint's, the task and the optimizer the command line's; the model's shape cannot change ----
expect 0 "fine-tune: --init from the run, --task text" -- $H train --init "$TMP/ref/model.ckpt" --task text --data "$D" \
    --batch 4 --seq-len 80 --lr 1e-4 --warmup 0 --steps 2 --eval-every 0 --out "$TMP/ft"
grep -q "initialising from the weights of $TMP/ref/model.ckpt" "$TMP/out" || fail "--init does not say where the weights come from"
checks=$((checks + 1))
# the trained weights start where the reference run ended, far below a fresh model's first loss
if awk -F'\t' 'FNR == 2 { f[n++] = $2 } END { exit !(f[1] < f[0] - 1) }' "$TMP/ref/log.tsv" "$TMP/ft/log.tsv"
then ok "the fine-tuned run starts from the trained weights (first loss $(sed -n 2p "$TMP/ft/log.tsv" | cut -f2) against $(sed -n 2p "$TMP/ref/log.tsv" | cut -f2))"
else fail "the fine-tuned run's first loss:"; sed -n 2p "$TMP/ref/log.tsv" "$TMP/ft/log.tsv"; fi
expect 2 "--init with --dim" -- $H train --init "$TMP/ref/model.ckpt" --task text --data "$D" --dim 64
expect_msg "--dim cannot be given with --init: the model comes from the checkpoint"
expect 2 "--resume with --task" -- $H train --resume --out "$TMP/ref" --task text
expect_msg "--task cannot be given with --resume: the run continues with its saved task"

# ---- resuming a finished run trains nothing, says so, and keeps its checkpoint ----
cp "$TMP/ref/model.ckpt" "$TMP/ref.ckpt"
expect 0 "resume a finished run" -- $H train --resume --out "$TMP/ref"
checks=$((checks + 1))
if grep -q "already at step 36 of 36: nothing to train" "$TMP/out" && grep -q "^done: 0 steps$" "$TMP/out" &&
    ! grep -qi "nan" "$TMP/out" && cmp -s "$TMP/ref/model.ckpt" "$TMP/ref.ckpt"
then ok "a finished run resumed: nothing to train, no loss summary, the same checkpoint"
else fail "resuming a finished run:"; tail -n 4 "$TMP/out"; fi

# ---- log.tsv after a crash: rows past the checkpoint, and a row cut short, are dropped on resume ----
expect 0 "a run stopped at step 12" -- $H train "${RUN[@]}" "${PROGRESS[@]}" --stop-at 12 --out "$TMP/log"
sed -n 14,15p "$TMP/ref/log.tsv" >> "$TMP/log/log.tsv"          # steps 13 and 14, logged before a crash
printf '15\t4.1' >> "$TMP/log/log.tsv"                            # and half of step 15
expect 0 "resume after the crash" -- $H train --resume --out "$TMP/log" "${PROGRESS[@]}"
same "$TMP/ref/log.tsv" "$TMP/log/log.tsv" "log.tsv after resuming past logged steps equals the uninterrupted one"
# an old log that repeats steps is cleaned too; a missing log is started afresh
expect 0 "a run stopped at step 6" -- $H train "${RUN[@]}" "${PROGRESS[@]}" --stop-at 6 --out "$TMP/log2"
{ head -n 5 "$TMP/log2/log.tsv"; tail -n 4 "$TMP/log2/log.tsv"; } > "$TMP/log2/x" && mv "$TMP/log2/x" "$TMP/log2/log.tsv"
expect 0 "resume with repeated rows in log.tsv" -- $H train --resume --out "$TMP/log2" "${PROGRESS[@]}" --stop-at 8
head -n 9 "$TMP/ref/log.tsv" > "$TMP/ref8.tsv"
same "$TMP/ref8.tsv" "$TMP/log2/log.tsv" "repeated rows are dropped"
rm "$TMP/log2/log.tsv"
expect 0 "resume without log.tsv" -- $H train --resume --out "$TMP/log2" "${PROGRESS[@]}"
{ head -n 1 "$TMP/ref/log.tsv"; sed -n '10,$p' "$TMP/ref/log.tsv"; } > "$TMP/ref9-36.tsv"
same "$TMP/ref9-36.tsv" "$TMP/log2/log.tsv" "a missing log.tsv is started with its header"

# ---- kill -9 at random moments of a run: resume each time; the end is the uninterrupted run's ----
K="$TMP/kill"
printf '1 2 3\n' > "$TMP/ids.txt"
kills=0; starts=0; finished=0
while [ $finished = 0 ] && [ $starts -lt 40 ]; do
    starts=$((starts + 1))
    if [ -e "$K/model.ckpt" ]; then args=(--resume --out "$K" "${PROGRESS[@]}"); else args=("${RUN[@]}" "${PROGRESS[@]}" --out "$K"); fi
    if [ $kills -ge 8 ]; then
        expect 0 "after $kills kills, a start that runs to the end (${args[0]})" -- $H train "${args[@]}" && finished=1
        break
    fi
    $H train "${args[@]}" > "$TMP/kill.out" 2>&1 &
    pid=$!
    # one kill in four while it starts up, the others after 1 to 6 steps and a moment into the next
    # (saves come every 3 steps, so some kills fall inside one)
    if [ $((RANDOM % 4)) = 0 ]; then sleep "$(delay 0 60)"; else wait_steps $pid "$TMP/kill.out" $((1 + RANDOM % 6)); sleep "$(delay 0 40)"; fi
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null; st=$?
    case $st in
    0) finished=1; echo "start $starts reached the end before its kill" ;;
    137) kills=$((kills + 1)) ;;
    *) fail "a killed run exited $st"; sed 's/^/    /' "$TMP/kill.out" | tail -3; break ;;
    esac
    # the checkpoint under the final name is always whole: eval reads it (whatever .tmp lies beside it)
    if [ -e "$K/model.ckpt" ]; then
        $H eval --ckpt "$K/model.ckpt" --ids "$TMP/ids.txt" > /dev/null 2> "$TMP/err" \
            || { fail "after kill $kills the checkpoint does not load:"; cat "$TMP/err"; }
    fi
    [ -e "$K/model.ckpt.tmp" ] && echo "kill $kills interrupted a save: model.ckpt.tmp lies beside model.ckpt"
done
checks=$((checks + 1))
[ $finished = 1 ] && [ $kills -ge 3 ] && ok "$kills kills at random moments, each followed by a start from the last checkpoint" \
    || fail "the run did not finish after $kills kills"
same "$TMP/ref/model.ckpt" "$K/model.ckpt" "after $kills kills the final checkpoint equals the uninterrupted run's"
same "$TMP/ref/log.tsv" "$K/log.tsv" "after $kills kills log.tsv equals the uninterrupted run's"
checks=$((checks + 1))
[ ! -e "$K/model.ckpt.tmp" ] && ok "no model.ckpt.tmp is left at the end" || fail "model.ckpt.tmp is left at the end"
# a stray .tmp (a kill during a save) is never read in place of the checkpoint
head -c 5000 "$K/model.ckpt" > "$K/model.ckpt.tmp"
expect 0 "eval beside a stray model.ckpt.tmp" -- $H eval --ckpt "$K/model.ckpt" --ids "$TMP/ids.txt"

# ---- a full disk while saving (a file-size limit): the save fails, the last checkpoint survives ----
F="$TMP/full"
expect 0 "a run stopped at step 12" -- $H train "${RUN[@]}" "${PROGRESS[@]}" --stop-at 12 --out "$F"
cp "$F/model.ckpt" "$TMP/full12.ckpt"
limit=$(( $(stat -c %s "$F/model.ckpt") / 2048 ))                # KiB: half a checkpoint
expect 1 "resume with room for half a checkpoint" -- bash -c "ulimit -f $limit; trap '' XFSZ; exec $H train --resume --out '$F' ${PROGRESS[*]}"
expect_msg "writing checkpoint $F/model.ckpt.tmp failed: File too large; $F/model.ckpt was left as it was"
checks=$((checks + 1))
[ ! -e "$F/model.ckpt.tmp" ] && ok "the failed save left no model.ckpt.tmp" || fail "the failed save left model.ckpt.tmp"
same "$TMP/full12.ckpt" "$F/model.ckpt" "the failed save left the step-12 checkpoint as it was"
expect 0 "resume with room again" -- $H train --resume --out "$F" "${PROGRESS[@]}"
same "$TMP/ref/model.ckpt" "$F/model.ckpt" "after the full disk the run ends in the uninterrupted checkpoint"
same "$TMP/ref/log.tsv" "$F/log.tsv" "after the full disk log.tsv equals the uninterrupted one"

# ---- the run directory's lock: a second trainer is refused while the first runs, not after it died ----
L="$TMP/lock"
$H train "${RUN[@]}" --steps 100000 --ckpt-every 2 --eval-every 0 --out "$L" > "$TMP/lock.out" 2>&1 &
pid=$!
for i in $(seq 1 300); do [ -e "$L/model.ckpt" ] && break; sleep 0.05; done
expect 1 "a second trainer in the same --out" -- $H train "${RUN[@]}" --out "$L"
expect_msg "$L is in use by pid $pid (hgrn2 train --task text"
expect 1 "a second trainer resuming in the same --out" -- $H train --resume --out "$L"
expect_msg "is in use by pid $pid"
expect 0 "another trainer in another --out meanwhile" -- $H train "${RUN[@]}" --steps 2 --out "$TMP/lock2"
kill -9 $pid; wait $pid 2>/dev/null
expect 0 "resume after the holder was killed (a stale lock file)" -- $H train --resume --out "$L" --steps "$(( $(wc -l < "$L/log.tsv") + 1 ))"
grep -q "^$pid hgrn2 train" "$L/.lock" && fail "the lock file still names the killed holder" || true
grep -q "^[0-9]* hgrn2 train --resume --out $L" "$L/.lock" || fail "the lock file does not name its last holder: $(cat "$L/.lock")"

# ---- kill -9 during prepare: no kill leaves a directory that passes for complete ----
for i in 1 2 3 4 5 6 7 8; do cat "$SHARED/data/text/tinyshakespeare.txt"; done > "$TMP/big.txt"
PREP=(--task text --input "$TMP/big.txt" --tokenizer byte --val-fraction 0.02 --shard-tokens 300000)
t0=$(now_ms)
expect 0 "prepare 8.9 MB into 31 shards" -- $H prepare "${PREP[@]}" --out "$TMP/pref"
took=$(( $(now_ms) - t0 ))
complete=0; refused=0
for k in $(seq 1 10); do
    P="$TMP/p$k"
    $H prepare "${PREP[@]}" --out "$P" > /dev/null 2>&1 &
    pid=$!
    sleep "$(delay 0 $((took * 6 / 5)))"
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
    if [ -e "$P/train_000000.shard" ]; then
        # complete: every file as a prepare that was left alone writes it
        complete=$((complete + 1))
        bad=0
        for f in "$TMP"/pref/*; do cmp -s "$f" "$P/$(basename "$f")" || bad=1; done
        checks=$((checks + 1))
        [ $bad = 0 ] && ok "kill $k: the directory is complete and equals a clean prepare" || fail "kill $k: train_000000.shard exists but the directory differs"
    else
        # not complete: train refuses it, and so does prepare while shards are there; else prepare redoes it
        refused=$((refused + 1))
        expect 1 "kill $k: train refuses the unfinished directory" -- $H train --task text --data "$P" --steps 1 --out "$TMP/prun"
        if ls "$P" 2>/dev/null | grep -q '\.shard$'; then
            expect 1 "kill $k: prepare refuses to mix into it" -- $H prepare "${PREP[@]}" --out "$P"; expect_msg "already holds shards"
        else
            expect 0 "kill $k: prepare again into it" -- $H prepare "${PREP[@]}" --out "$P"
            for f in "$TMP"/pref/*; do cmp -s "$f" "$P/$(basename "$f")" || fail "kill $k: redone prepare differs in $(basename "$f")"; done
        fi
    fi
done
echo "prepare: $complete kills after the end, $refused before it"
# the states a kill within the final renames could leave (too brief to hit by chance): never complete
P="$TMP/prenames"
mkdir -p "$P"; cp "$TMP"/pref/* "$P"/; rm "$P/train_000000.shard"
expect 1 "train with every shard but train_000000" -- $H train --task text --data "$P" --steps 1 --out "$TMP/prun"; expect_msg "without gaps"
expect 1 "prepare into it" -- $H prepare "${PREP[@]}" --out "$P"; expect_msg "already holds shards"
rm "$P"/train_*.shard
expect 1 "train with only the validation shards" -- $H train --task text --data "$P" --steps 1 --out "$TMP/prun"; expect_msg "no training shards"

# ---- kill -9 during export: model.safetensors is whole or absent ----
expect 0 "a 5.5M-parameter checkpoint" -- $H train --task text --data "$D" --dim 384 --layers 3 --expand-ratio 64 --batch 1 \
    --seq-len 8 --steps 1 --eval-every 0 --eval-batches 1 --out "$TMP/big"
t0=$(now_ms)
expect 0 "export it" -- $H export --ckpt "$TMP/big/model.ckpt" --hf "$TMP/eref"
took=$(( $(now_ms) - t0 ))
whole=0; absent=0
for k in $(seq 1 8); do
    E="$TMP/e$k"
    $H export --ckpt "$TMP/big/model.ckpt" --hf "$E" > /dev/null 2>&1 &
    pid=$!
    sleep "$(delay 0 $((took * 6 / 5)))"
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
    checks=$((checks + 1))
    if [ ! -e "$E/model.safetensors" ]; then absent=$((absent + 1)); ok "export kill $k: no model.safetensors"
    elif cmp -s "$TMP/eref/model.safetensors" "$E/model.safetensors"; then whole=$((whole + 1)); ok "export kill $k: model.safetensors is whole"
    else fail "export kill $k: a partial model.safetensors under the final name"; fi
done
echo "export: $whole kills after model.safetensors was written, $absent before"
finish
