#!/usr/bin/env bash
# Side-by-side benchmark on one GPU, in one device call: builds hgrn2, installs the carried fla wheels
# (pip download flash-linear-attention fla-core --no-deps -d .carry) and runs both at PERF.md's shapes, then
# prints one table (the card's name on top; every number in it comes from this card, this run).
#   bash scripts/bench_vs_fla.sh [ops|162M|1.13B|train|all|gen-162M|gen-1.13B]   (default all; train and all run
#                                    the 162M model, BIG=1 adds the 1.13B one; FLA_TIMEOUT=S stops any one fla run
#                                    after S s)
# fla's autotuning takes minutes per shape (on an H200: 5-6 min before the 162M model's first step, 2.5-3 min for
# the 1.13B one), so within a 10-minute command limit run `ops`, `162M` and `1.13B` as separate calls.
# gen-162M and gen-1.13B time greedy generation instead, each as a call of its own (`all` leaves it out): at batch
# 1 and 64, prompts of 128 random ids and GEN_TOKENS (default 128, at least 2) new tokens each, `hgrn2 bench
# --generate` against fla's Hugging Face `generate` (bf16 weights, its recurrent cache); the time to the first
# token (the prefill and its token) and the decoding tokens/s after it. fla warms up (autotunes) first, apart.
# hgrn2 runs with its defaults (--precision bf16); fla in eager mode with bf16 autocast, fp32 weights and
# fused AdamW. fla's first steps include Triton's autotuning: its time to first step is reported apart and
# its tokens/s is the median of the steps after it.
set -uo pipefail
what=${1:-all}
ops=0
sizes=()
gens=()
new=${GEN_TOKENS:-128}
case "$what" in
    ops) ops=1 ;;
    162M | 1.13B) sizes=("$what") ;;
    gen-162M | gen-1.13B) gens=("${what#gen-}") ;;
    train | all)
        [ "$what" = all ] && ops=1
        sizes=(162M)
        [ "${BIG:-0}" = 1 ] && sizes+=(1.13B) ;;
    *) echo "usage: bash scripts/bench_vs_fla.sh [ops|162M|1.13B|train|all|gen-162M|gen-1.13B]" >&2; exit 2 ;;
esac
shape() { case "$1" in 162M) echo 768 12 16 2048 ;; 1.13B) echo 2048 18 8 2048 ;; esac; }   # D L B T
log=$(mktemp -d)
python3 -m pip install --no-deps -q .carry/fla_core-*.whl .carry/flash_linear_attention-*.whl 2>&1 | grep -v WARNING
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
make -j8 hgrn2 tests/bin/test_gpu >/dev/null || exit 1
fla() { if [ -n "${FLA_TIMEOUT:-}" ]; then timeout "$FLA_TIMEOUT" python3 scripts/bench_fla.py "$@"; else python3 scripts/bench_fla.py "$@"; fi; }
ours_train() {   # name D L B T
    ./hgrn2 bench --device cuda --dim "$2" --layers "$3" --expand-ratio 128 --vocab 50304 --batch "$4" \
        --seq-len "$5" --steps 5 | tee "$log/train_$1_hgrn2"
}
ours_gen() {   # name D L (without --batch: both 1 and 64, each after a warm-up)
    ./hgrn2 bench --generate --device cuda --dim "$2" --layers "$3" --expand-ratio 128 --vocab 50304 \
        --prompt-len 128 --tokens "$new" | tee "$log/gen_$1_hgrn2"
}
# hgrn2 first, then fla (whose first use of each shape autotunes)
[ "$ops" = 1 ] && tests/bin/test_gpu --bench | tee "$log/ops_hgrn2"
for s in ${sizes[@]+"${sizes[@]}"}; do ours_train "$s" $(shape "$s"); done
for s in ${sizes[@]+"${sizes[@]}"}; do fla train $(shape "$s") | tee "$log/train_${s}_fla"; done
for s in ${gens[@]+"${gens[@]}"}; do ours_gen "$s" $(shape "$s"); done
for s in ${gens[@]+"${gens[@]}"}; do fla gen $(shape "$s" | cut -d' ' -f1-2) "$new" | tee "$log/gen_${s}_fla"; done
[ "$ops" = 1 ] && fla ops | tee "$log/ops_fla"
python3 - "$log" "$card" <<'EOF'
import os, re, sys
log, card = sys.argv[1], sys.argv[2]
def read(name):
    p = os.path.join(log, name)
    return open(p).read() if os.path.exists(p) else ''
print(f"\n== hgrn2 vs fla on {card} ==")
ours, ref = read('ops_hgrn2'), read('ops_fla')
if ours and ref:
    print(f"{'chunk kernels (K = Dv = 128)':32} {'hgrn2 ms':>9} {'fla ms':>9} {'speed-up':>9} {'hgrn2 TFLOP/s':>14}")
    for B, T, H in [(8, 2048, 6), (4, 2048, 16), (16, 1024, 6)]:
        m_f = re.search(rf"hgru fwd +B{B} T{T} H{H} \S+ \S+ +([\d.]+) ms", ours)
        m_b = re.search(rf"hgru fwd\+bwd +B{B} T{T} H{H} \S+ \S+ +([\d.]+) ms", ours)
        r = re.search(rf"fla chunk_gla B{B} T{T} H{H} fwd ([\d.]+) ms fwdbwd ([\d.]+) ms", ref)
        if not (m_f and m_b and r):
            continue
        # matrix work of the chunked form per token and head: 4 K Dv (state in, state out) + 2 C (K + Dv) (scores,
        # scores x v), C = 64; the backward is counted as twice the forward
        fl = B * T * H * (4 * 128 * 128 + 2 * 64 * 256)
        for lab, a, b, f in [('fwd', float(m_f[1]), float(r[1]), fl), ('fwd+bwd', float(m_b[1]), float(r[2]), 3 * fl)]:
            print(f"{f'B{B} T{T} H{H} {lab}':32} {a:9.3f} {b:9.3f} {b / a:8.2f}x {f / a / 1e9:14.1f}")
for name in ['162M', '1.13B']:
    ours, ref = read(f'train_{name}_hgrn2'), read(f'train_{name}_fla')
    m = re.search(r"time to first step ([\d.]+) s \| step ([\d.]+) ms .*?\| (\d+) tokens/s", ours)
    p = re.search(r"peak GPU memory (\d+) MiB", ours)
    r = re.search(r"([\d.]+) tokens/s, step ([\d.]+) ms, peak ([\d.]+) GiB, first step ([\d.]+) s", ref)
    if not (m and p and r):
        continue
    print(f"\ntraining {name}: {'':14} {'hgrn2':>10} {'fla':>10} {'ratio':>8}")
    print(f"  {'tokens/s':28} {int(m[3]):10d} {float(r[1]):10.0f} {int(m[3]) / float(r[1]):7.2f}x")
    print(f"  {'peak memory (GiB)':28} {int(p[1]) / 1024:10.1f} {float(r[3]):10.1f}")
    print(f"  {'time to first step (s)':28} {float(m[1]):10.1f} {float(r[4]):10.1f}")
num = lambda x, width, prec: f"{float(x):{width}.{prec}f}" if x is not None else f"{'-':>{width}}"
for name in ['162M', '1.13B']:
    ours, ref = read(f'gen_{name}_hgrn2'), read(f'gen_{name}_fla')
    m = re.search(r"D (\d+), layers (\d+),", ours)
    g = re.search(r"prompts of (\d+) random ids, (\d+) new tokens each", ours)
    if not (m and g):
        continue
    # our table's rows: | batch | first token (ms) | prefill tokens/s | decode ms/step | decode tokens/s |
    rows = re.findall(r"^\| +(\d+) \| +([\d.]+) \| +[\d.]+ \| +[\d.]+ \| +([\d.]+) \|$", ours, re.M)
    fla = {int(x[0]): x[1:] for x in re.findall(
        rf"fla generate D{m[1]} L{m[2]} batch (\d+): first token ([\d.]+) ms, decode ([\d.]+) tokens/s, .*?"
        rf"\(prompt {g[1]}, {g[2]} new, warm-up ([\d.]+) s\)", ref)}
    print(f"\ngeneration D{m[1]} L{m[2]} (greedy, prompt {g[1]}, {g[2]} new tokens)")
    print(f"  {'batch':>5} {'hgrn2 decode tok/s':>19} {'fla decode tok/s':>17} {'ratio':>8} "
          f"{'hgrn2 first token ms':>21} {'fla first token ms':>19}")
    for B, first, tps in rows:
        f = fla.get(int(B), (None, None, None))
        ratio = f"{float(tps) / float(f[1]):7.2f}x" if f[1] else f"{'-':>8}"
        print(f"  {int(B):5d} {num(tps, 19, 0)} {num(f[1], 17, 1)} {ratio} {num(first, 21, 2)} {num(f[0], 19, 1)}")
    if fla:
        print("  fla's warm-up (Triton's autotuning included): " +
              ", ".join(f"batch {B} {w[2]} s" for B, w in sorted(fla.items())))
EOF
rm -rf "$log"
