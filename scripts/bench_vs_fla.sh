#!/usr/bin/env bash
# Side-by-side benchmark on one GPU, in one device call: builds hgrn2, installs the carried fla wheels
# (pip download flash-linear-attention fla-core --no-deps -d .carry) and runs both at PERF.md's shapes.
#   bash scripts/bench_vs_fla.sh [ops|train|all]     (default all; 'train' adds the 1.13B model with BIG=1)
# The card's name heads the output; every number in one run comes from the same card.
set -uo pipefail
what=${1:-all}
python3 -m pip install --no-deps -q .carry/fla_core-*.whl .carry/flash_linear_attention-*.whl 2>&1 | grep -v WARNING
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
make -j8 hgrn2 tests/bin/test_gpu >/dev/null || exit 1
if [ "$what" != train ]; then
    echo "== chunk kernels: hgrn2 (fp32 storage) =="
    tests/bin/test_gpu --bench
    echo "== chunk kernels: fla chunk_gla (bf16 q, k, v; fp32 g) =="
    python3 scripts/bench_fla.py ops
fi
if [ "$what" != ops ]; then
    echo "== training 162M (D 768, L 12, vocab 50304), B 16 x T 2048 =="
    ./hgrn2 bench --device cuda --dim 768 --layers 12 --expand-ratio 128 --vocab 50304 --batch 16 --seq-len 2048 --steps 5
    python3 scripts/bench_fla.py train 768 12 16 2048
    if [ "${BIG:-0}" = 1 ]; then
        echo "== training 1.13B (D 2048, L 18), B 8 x T 2048 =="
        ./hgrn2 bench --device cuda --dim 2048 --layers 18 --expand-ratio 128 --vocab 50304 --batch 8 --seq-len 2048 --steps 3
        python3 scripts/bench_fla.py train 2048 18 8 2048
    fi
fi
