#!/usr/bin/env bash
# The Transformer++ side by side with transformers' LLaMA on one GPU, in one device call: builds hgrn2 (with
# cuDNN's attention where the build finds it), then at the 162M shape (D 768, L 12, 12 heads of 64, MLP 2048,
# vocab 50304, untied, B 16 x T 2048) times
#   - training steps: `hgrn2 bench --arch transformer` (bf16) against LlamaForCausalLM with sdpa
#     (scripts/bench_llama.py: bf16 autocast, fp32 weights, fused AdamW);
#   - causal attention alone at B 16, T 2048, H 12, hd 64: hgrn2's op (cuDNN in bf16, conversions from and to
#     the model's fp32 included; the fp32 kernels) against PyTorch's sdpa backends (flash, cuDNN, efficient),
# and prints one table; every number in it comes from this card, this run. Needs PyTorch and transformers.
#   bash scripts/bench_vs_llama.sh
set -uo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp -d)
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
make -j8 hgrn2 tests/bin/test_gpu > "$log/build" || { tail -n 20 "$log/build"; exit 1; }
tail -n 1 "$log/build"
./hgrn2 bench --device cuda --arch transformer --dim 768 --layers 12 --vocab 50304 --batch 16 --seq-len 2048 \
    --steps 5 | tee "$log/train_hgrn2"
tests/bin/test_gpu --bench | grep -E "^attention|^-- bench" | tee "$log/ops_hgrn2"
python3 scripts/bench_llama.py train 768 12 16 2048 2048 | tee "$log/train_llama"
python3 scripts/bench_llama.py ops 16 2048 12 64 | tee "$log/ops_llama"
python3 - "$log" "$card" <<'PY'
import os, re, sys
log, card = sys.argv[1], sys.argv[2]
read = lambda n: open(os.path.join(log, n)).read() if os.path.exists(os.path.join(log, n)) else ''
print(f"\n== hgrn2 --arch transformer vs transformers' LLaMA (sdpa) on {card} ==")
ours, ref = read('train_hgrn2'), read('train_llama')
m = re.search(r"time to first step ([\d.]+) s \| step ([\d.]+) ms .*?\| (\d+) tokens/s", ours)
p = re.search(r"peak GPU memory (\d+) MiB", ours)
r = re.search(r"([\d.]+) tokens/s, step ([\d.]+) ms, peak ([\d.]+) GiB, first step ([\d.]+) s", ref)
if m and r:
    print(f"training 162M, B 16 x T 2048   {'hgrn2':>10} {'llama':>10} {'ratio':>8}")
    print(f"  {'tokens/s':28} {int(m[3]):10d} {float(r[1]):10.0f} {int(m[3]) / float(r[1]):7.2f}x")
    if p:
        print(f"  {'peak memory (GiB)':28} {int(p[1]) / 1024:10.1f} {float(r[3]):10.1f}")
    print(f"  {'time to first step (s)':28} {float(m[1]):10.1f} {float(r[4]):10.1f}")
o, l = read('ops_hgrn2'), read('ops_llama')
flash = re.search(r"sdpa flash .*? fwd ([\d.]+) ms .*? fwdbwd ([\d.]+) ms", l)
print(f"\ncausal attention B16 T2048 H12 hd64  {'fwd ms':>8} {'fwd+bwd ms':>11} {'vs flash (fwd+bwd)':>19}")
rows = [(f"hgrn2 {x[0]}", float(x[1]), float(x[2])) for x in
        re.findall(r"attention fwd +B16 T2048 H12 hd64 (\S+ \S+): +([\d.]+) ms.*\n.*fwd\+bwd +B16 T2048 H12 hd64 \S+ \S+: +([\d.]+) ms", o)]
rows += [(f"torch sdpa {x[0]}", float(x[1]), float(x[2])) for x in
         re.findall(r"sdpa (\w+) B16 T2048 H12 hd64 fwd ([\d.]+) ms .*? fwdbwd ([\d.]+) ms", l)]
for name, f, b in rows:
    rel = f"{b / float(flash[2]):18.2f}x" if flash else ''
    print(f"  {name:34} {f:8.3f} {b:11.3f} {rel}")
PY
rm -rf "$log"
