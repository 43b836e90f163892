#!/usr/bin/env bash
# One device call: build everything, run `make test-gpu` (full log in $OUT/test_gpu.log), then the
# side-by-side benchmark (bench_vs_fla.sh ops|train|all).
set -uo pipefail
OUT=${OUT:-/tmp}
make -j8 hgrn2 tests/bin/test_gpu tests/bin/test_gpu_model >/dev/null || exit 1
echo "== make test-gpu =="
make test-gpu > "$OUT/test_gpu.log" 2>&1
rc=$?
grep -E "^FAIL|passed|failed|device|GPU|training steps|one step|ERROR|error|Error" "$OUT/test_gpu.log" | grep -v "^PASS" | tail -40
echo "rc(test-gpu)=$rc"
bash scripts/bench_vs_fla.sh "${1:-ops}"
