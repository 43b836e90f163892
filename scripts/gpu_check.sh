#!/usr/bin/env bash
# One device call after a change to GPU code: `make test-gpu` (full log in $OUT/test_gpu.log), the
# export check against fla, then the side-by-side benchmark (bench_vs_fla.sh ops|162M|1.13B|train|all).
# Carry .carry (the fla wheels; .carry/shared/data/text/tinyshakespeare.txt for the training test).
set -uo pipefail
OUT=${OUT:-/tmp}
export HGRN2_SHARED=${HGRN2_SHARED:-$PWD/.carry/shared}
make -j8 hgrn2 tests/bin/test_gpu tests/bin/test_gpu_cls tests/bin/test_gpu_model >/dev/null || exit 1
python3 -m pip install --no-deps -q .carry/fla_core-*.whl .carry/flash_linear_attention-*.whl 2>&1 | grep -v WARNING
echo "== make test-gpu =="
timeout 240 make test-gpu > "$OUT/test_gpu.log" 2>&1
echo "rc(test-gpu)=$?"
grep -E "^FAIL|passed|failed|device|training steps|one step|fixture|ERROR|rror" "$OUT/test_gpu.log" | tail -30
echo "== fla loads our export =="
./hgrn2 import --hf tests/fixtures/fla/hf --out "$OUT/f.ckpt" >/dev/null &&
    ./hgrn2 export --ckpt "$OUT/f.ckpt" --hf "$OUT/export" >/dev/null &&
    python3 scripts/check_fla_loads_export.py "$OUT/export" tests/fixtures/fla/fixture.safetensors 2>&1 | grep -v Warning
rm -rf "$OUT/export" "$OUT/f.ckpt"
bash scripts/bench_vs_fla.sh "${1:-ops}"
