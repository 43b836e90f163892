#!/usr/bin/env bash
# The command line: every usage error exits 2 with the usage line, every runtime failure exits 1 with one message.
. "$(dirname "$0")/lib.sh"
H=./hgrn2

expect 0 "hgrn2 --help" -- $H --help
expect 0 "hgrn2 --version" -- $H --version
checks=$((checks + 1))
grep -qE "^hgrn2 [^ ]+ \((CPU and CUDA backends|CPU backend; built without CUDA)\)$" "$TMP/out" && ok "--version names the commit" || fail "--version: $(cat "$TMP/out")"
expect 2 "no command" -- $H
expect 2 "unknown command" -- $H frobnicate; expect_msg "unknown command"
for cmd in train eval sample prepare tokenize bench plot; do
    expect 0 "$cmd --help" -- $H $cmd --help
    grep -q "usage:" "$TMP/out" || fail "$cmd --help prints no usage line"
    expect 2 "$cmd with an unknown flag" -- $H $cmd --no-such-flag; expect_msg "usage:"
done
expect 2 "train --steps without a value" -- $H train --steps; expect_msg "needs a value"
expect 2 "train --steps -5" -- $H train --steps -5; expect_msg "usage:"
expect 2 "train --steps 12abc" -- $H train --steps 12abc
expect 2 "train --lr 1e9" -- $H train --lr 1e9
expect 2 "train --lr nan" -- $H train --lr nan
expect 2 "train --task nope" -- $H train --task nope
expect 2 "train --preset nope" -- $H train --preset nope; expect_msg "tiny"
expect 2 "train --schedule nope" -- $H train --schedule nope
expect 2 "train --task pile without --data" -- $H train --task pile
expect 2 "train --expand-ratio not dividing --dim" -- $H train --dim 100 --expand-ratio 7 --data /nonexistent
expect 2 "train --resume with --lr" -- $H train --resume --lr 1e-3
expect 2 "train stray argument" -- $H train extra
expect 2 "train --device tpu" -- $H train --device tpu
expect 2 "train --precision fp8" -- $H train --precision fp8; expect_msg "bf16, tf32 or fp32"
expect 2 "train --precision bf16 on the CPU" -- $H train --precision bf16; expect_msg "needs --device cuda"
expect 2 "bench --profile on the CPU" -- $H bench --profile; expect_msg "needs --device cuda"
# scripts/profile_floors.py on a profile of known work: hgru_bwd 2e10 flops and 1e9 bytes in 2 ms (floor 0.25 ms
# at 4 TB/s and 100 TFLOP/s, bytes-bound), adamw 4e9 bytes in 1 ms (at its floor), an op with no cost (0.01 ms)
cat > "$TMP/prof.txt" <<'PROF'
| batch        | 16 x 2048 on some GPU, bf16
GPU time per step by section and op (5 steps; 3.01 ms per step in all), with the work of the ops that
state it: TFLOP/s of their arithmetic and TB/s of the bytes they must move at the least:
  mixer bwd / hgru_bwd                 12.0 calls     2.000 ms  66.4%     10.000 TFLOP/s  0.5000 TB/s
  optimizer / adamw_multi               1.0 calls     1.000 ms  33.2%                     4.0000 TB/s
  embedding / lower_bounds_fwd          1.0 calls     0.010 ms   0.3%
PROF
expect 0 "scripts/profile_floors.py on a profile" -- python3 scripts/profile_floors.py "$TMP/prof.txt" --tbs 4 --tflops 100 --tokens 1000
checks=$((checks + 1))
if grep -Eq '^  mixer bwd / hgru_bwd +2\.000 +0\.250 +8\.0 +1\.750 +100\.0%$' "$TMP/out" &&
    grep -Eq '^  optimizer / adamw_multi +1\.000 +1\.000 +1\.0 +0\.000 ' "$TMP/out" &&
    grep -q "step 3.010 ms, at the ops' floors 1.260 ms (2.39x): 332,226 against 793,651 tokens/s" "$TMP/out"
then ok "profile_floors.py: each op's floor, times over it and ms above it, and the step at the floors"
else fail "profile_floors.py's table:"; sed 's/^/    /' "$TMP/out"; fi
expect 0 "profile_floors.py --best takes the ceilings from the profile" -- python3 scripts/profile_floors.py "$TMP/prof.txt" --best
grep -q "floors at 4.00 TB/s and 10.0 TFLOP/s" "$TMP/out" || fail "--best: $(head -1 "$TMP/out")"
expect 1 "profile_floors.py on text without a profile" -- python3 scripts/profile_floors.py "$TMP/err"; expect_msg "no 'GPU time per step"
expect 2 "profile_floors.py --tbs 0" -- python3 scripts/profile_floors.py "$TMP/prof.txt" --tbs 0
# scripts/offline_deps.sh env puts carried CUDA objects in build/ only when they were built from the sources
# there (its checksum of them), and leaves build/ alone otherwise
D="$TMP/offline"
mkdir -p "$D/scripts" "$D/cuda" "$D/.carry/obj"
cp scripts/offline_deps.sh "$D/scripts/"
for f in kernels.cu cuda/mixer.cuh cuda_ops.h common.h Makefile; do echo "$f" > "$D/$f"; done
printf 'an object' | gzip > "$D/.carry/obj/kernels-cudnn.o.gz"
(cd "$D" && bash scripts/offline_deps.sh sum > .carry/obj/SOURCES)
expect 0 "offline_deps.sh env with objects of these sources" -- bash -c "cd '$D' && . scripts/offline_deps.sh env"
checks=$((checks + 1))
if grep -q "the carried objects are in build/" "$TMP/out" && [ "$(cat "$D/build/kernels-cudnn.o")" = "an object" ] &&
    [ "$D/build/kernels-cudnn.o" -nt "$D/kernels.cu" ]
then ok "offline_deps.sh: the objects in build/, newer than their sources"
else fail "offline_deps.sh env: $(cat "$TMP/out" "$TMP/err")"; fi
rm -rf "$D/build"
echo changed >> "$D/cuda/mixer.cuh"
expect 0 "offline_deps.sh env after a source changed" -- bash -c "cd '$D' && . scripts/offline_deps.sh env"
checks=$((checks + 1))
if grep -q "no carried objects for these sources" "$TMP/out" && [ ! -e "$D/build/kernels-cudnn.o" ]
then ok "offline_deps.sh: stale objects left out"
else fail "offline_deps.sh env with stale objects: $(cat "$TMP/out" "$TMP/err")"; fi
# scripts/mixer_ab.sh over two stand-ins for test_gpu and for ncu (the formats of their output): the means of
# --bench-mixer's timings, and each kernel's microseconds in ncu's two passes
D="$TMP/mixer_ab"
mkdir -p "$D/bin"
for w in A B; do
    f=0.800; [ $w = B ] && f=0.720
    printf '#!/bin/sh\necho "hgru fwd      B8 T2048 H6 K128 Dv128:    0.184 ms   1371.3 GB/s"\n' > "$D/test_gpu_$w"
    printf 'echo "hgru fwd+bwd  B8 T2048 H6 K128 Dv128:    %s ms    895.9 GB/s"\n' $f >> "$D/test_gpu_$w"
    chmod +x "$D/test_gpu_$w"
done
cat > "$D/bin/ncu" <<'NCU'
#!/bin/sh
for p; do [ "$p" = --bench-mixer ] && break; prog=$p; done   # ncu ... PROGRAM --bench-mixer
us=200.00; case "$prog" in *_B) us=180.00 ;; esac
for pass in 1 2; do
    for k in chunk_prep chunk_state chunk_prep chunk_states_bwd chunk_bwd_mm chunk_bwd_qkg; do
        echo "  void ${k}_kernel<128, 0>(ChunkArgs) (32, 48, 1)x(256, 1, 1), Context 1, Stream 13, Device 0, CC 9.0"
        echo "    gpu__time_duration.sum          us       $us"
    done
done
NCU
chmod +x "$D/bin/ncu"
expect 0 "mixer_ab.sh on two stand-ins" -- env PATH="$D/bin:$PATH" WORK="$D/w" bash scripts/mixer_ab.sh "$D/test_gpu_A" "$D/test_gpu_B"
checks=$((checks + 1))
if grep -q "hgru fwd+bwd B8 T2048 H6 K128 Dv128: A 0.800 0.800 (mean 0.800) B 0.720 0.720 (mean 0.720)" "$TMP/out" &&
    grep -qE "chunk_bwd_mm +A +200.00 +200.00 +B +180.00 +180.00 +B/A 0.900" "$TMP/out"
then ok "mixer_ab.sh: the timings' means and the kernels' times"
else fail "mixer_ab.sh: $(cat "$TMP/out" "$TMP/err")"; fi
expect 2 "mixer_ab.sh with a missing program" -- bash scripts/mixer_ab.sh "$D/none" "$D/test_gpu_B"; expect_msg "is not an executable"
expect 2 "mixer_ab.sh ROUNDS=0" -- env ROUNDS=0 bash scripts/mixer_ab.sh "$D/test_gpu_A" "$D/test_gpu_B"
# scripts/step_graph_ab.sh over a stand-in for hgrn2 whose step is 0.8 ms op by op (HGRN2_CUDA_GRAPHS=0) and 0.6
# with graphs: the means and the speed-up; the training logs compared, the same bits or (STANDIN_DIFF) not
D="$TMP/step_graph_ab"
mkdir -p "$D"
cat > "$D/hgrn2" <<'STANDIN'
#!/bin/sh
ms=0.6; [ "$HGRN2_CUDA_GRAPHS" = 0 ] && ms=0.8
if [ "$1" = bench ]; then echo "time to first step 0.24 s | step $ms ms (median of 20) | 5537193 tokens/s | 1.0 GFLOP/s"; exit 0; fi
while [ $# -gt 0 ]; do [ "$1" = --out ] && out=$2; shift; done
mkdir -p "$out"
loss=2.5; [ -n "$STANDIN_DIFF" ] && [ "$HGRN2_CUDA_GRAPHS" != 0 ] && loss=2.50000001
printf 'step\ttrain_loss\tval_loss\tlr\tgrad_norm\tval_acc\ttokens\twall_s\n1\t%s\t\t0.01\t1.5\t\t4096\t0.%s\n' $loss $$ > "$out/log.tsv"
echo "done: 1 steps in 0m01s"
STANDIN
chmod +x "$D/hgrn2"
expect 0 "step_graph_ab.sh on a stand-in" -- env SHAPES="mqar 162M" STEPS=8 WORK="$D/w" bash scripts/step_graph_ab.sh "$D/hgrn2"
checks=$((checks + 1))
if grep -q "mqar         op by op 0.800 ms, graphs 0.600 ms: 1.333x" "$TMP/out" && grep -q "162M         op by op 0.800" "$TMP/out" &&
    grep -q "mqar: log.tsv the same bits both ways (2 lines)" "$TMP/out"
then ok "step_graph_ab.sh: the means, the speed-up and the logs compared"
else fail "step_graph_ab.sh: $(cat "$TMP/out" "$TMP/err")"; fi
expect 1 "step_graph_ab.sh with logs that differ" -- env STANDIN_DIFF=1 SHAPES=tiny ROUNDS=1 WORK="$D/w2" bash scripts/step_graph_ab.sh "$D/hgrn2"
expect_msg "step_graph_ab.sh: mqar: log.tsv differs between the two ways"
expect 2 "step_graph_ab.sh with a missing program" -- bash scripts/step_graph_ab.sh "$D/none"; expect_msg "is not an executable"
expect 2 "step_graph_ab.sh with an unknown shape" -- env SHAPES=huge WORK="$D/w3" bash scripts/step_graph_ab.sh "$D/hgrn2"; expect_msg "unknown shape huge"
expect 1 "train on a missing data directory" -- $H train --task text --data "$TMP/none"; expect_msg "hgrn2: error: no training shards"
expect 1 "eval of a missing checkpoint" -- $H eval --ckpt "$TMP/none.ckpt"; expect_msg "hgrn2: error: cannot open checkpoint"
mkdir -p "$TMP/adir"
expect 1 "eval of a directory as the checkpoint" -- $H eval --ckpt "$TMP/adir"
expect_msg "hgrn2: error: $TMP/adir is a directory, not a checkpoint (a run's checkpoint is $TMP/adir/model.ckpt)"
expect 1 "train --init of a directory" -- $H train --init "$TMP/adir" --steps 1 --out "$TMP/adir2"; expect_msg "is a directory, not a checkpoint"
printf 'not a checkpoint at all, but long enough to have a header......................' > "$TMP/bad.ckpt"
expect 1 "sample of a file that is no checkpoint" -- $H sample --ckpt "$TMP/bad.ckpt"; expect_msg "not an hgrn2 checkpoint"
expect 1 "bench at sizes whose activations overflow 64-bit byte counts" -- $H bench --dim 1 --expand-ratio 1 --mlp-width 1048576 --batch 1048576 --seq-len 16777216 --threads 1; expect_msg "would need more than 2^62 bytes"
expect 1 "resume without a checkpoint" -- $H train --resume --out "$TMP/nothing"; expect_msg "cannot open checkpoint"
expect 2 "sample --top-p 0" -- $H sample --top-p 0
expect 2 "sample --prompt and --prompt-ids" -- $H sample --prompt a --prompt-ids 1
expect 2 "sample --prompt-ids ''" -- $H sample --prompt-ids ""; expect_msg "prompt-ids is empty"
expect 2 "sample --prompt-ids ' , '" -- $H sample --prompt-ids " , "; expect_msg "prompt-ids is empty"
expect 2 "eval --logits without --ids" -- $H eval --logits x
expect 2 "eval --split test" -- $H eval --split test
expect 2 "bench --dim 0" -- $H bench --dim 0
# HGRN2_CLS_ROWS: refused unless a multiple of 64 in [64, 65536]; blocks of 64 rows over 300 rows (four and a
# ragged 44) give the default's first loss to the bit, and the next ones (after updates whose classifier
# gradient was summed in other blocks) to rounding
for v in 100 0 32 65600 12x; do
    expect 1 "HGRN2_CLS_ROWS=$v" -- env HGRN2_CLS_ROWS=$v $H bench --steps 1; expect_msg "HGRN2_CLS_ROWS=$v"
done
for v in "" 64; do
    expect 0 "train, HGRN2_CLS_ROWS='$v'" -- env HGRN2_CLS_ROWS=$v $H train --steps 3 --batch 3 --seq-len 100 \
        --eval-every 0 --seed 3 --threads 2 --out "$TMP/cr$v"
done
checks=$((checks + 1))
if [ -s "$TMP/cr/log.tsv" ] && paste "$TMP/cr/log.tsv" "$TMP/cr64/log.tsv" | awk -F'\t' -v n="$(head -1 "$TMP/cr/log.tsv" | awk -F'\t' '{print NF}')" '
    NR == 1 { next }
    { a = $2; b = $(n + 2); d = a - b; if (d < 0) d = -d
      if ((NR == 2 && a != b) || d > 1e-6 * (a < 0 ? -a : a)) bad = 1; rows++ }
    END { exit !(rows == 3 && !bad) }'
then ok "HGRN2_CLS_ROWS=64: the losses of the default blocks"
else fail "HGRN2_CLS_ROWS=64 changed the losses"; fi
finish
