#!/usr/bin/env bash
# One device call after a change to GPU code: `make test-gpu` (full log in $OUT/test_gpu.log), the
# export checks against fla and transformers (logits; AutoTokenizer and greedy generate), then the
# side-by-side benchmark (bench_vs_fla.sh ops|162M|1.13B|train|all).
# Carry .carry (the fla wheels; .carry/shared/data/text/tinyshakespeare.txt for the training test: `bash
# scripts/offline_deps.sh fetch` gathers both, and `. scripts/offline_deps.sh env` sets up a machine without network).
set -uo pipefail
OUT=${OUT:-/tmp}
export HGRN2_SHARED=${HGRN2_SHARED:-$PWD/.carry/shared}
make -j8 hgrn2 tests/bin/test_gpu tests/bin/test_gpu_cls tests/bin/test_gpu_model >/dev/null || exit 1
python3 -m pip install --no-deps -q .carry/fla_core-*.whl .carry/flash_linear_attention-*.whl 2>&1 | grep -v WARNING
echo "== make test-gpu =="
# the whole suite, sanitizers included, took more than 330 s on an H200: TEST_GPU_TIMEOUT (s) bounds it
timeout "${TEST_GPU_TIMEOUT:-900}" make test-gpu > "$OUT/test_gpu.log" 2>&1
echo "rc(test-gpu)=$?"
grep -E "^FAIL|passed|failed|device|training steps|one step|fixture|ERROR|rror" "$OUT/test_gpu.log" | tail -30
echo "== fla loads our export =="
./hgrn2 import --hf tests/fixtures/fla/hf --out "$OUT/f.ckpt" >/dev/null &&
    ./hgrn2 export --ckpt "$OUT/f.ckpt" --hf "$OUT/export" >/dev/null &&
    python3 scripts/check_fla_loads_export.py "$OUT/export" tests/fixtures/fla/fixture.safetensors 2>&1 | grep -v Warning
rm -rf "$OUT/export" "$OUT/f.ckpt"
# AutoTokenizer + HGRN2ForCausalLM.generate against hgrn2 sample's greedy ids (fp32 on both sides), for a
# byte run and, when the GPT-2 files are carried (.carry/shared/data/tokenizers/gpt2), a GPT-2 run
for tk in byte "$HGRN2_SHARED/data/tokenizers/gpt2"; do
    [ "$tk" = byte ] || [ -d "$tk" ] || continue
    echo "== AutoTokenizer and generate against hgrn2 sample ($(basename "$tk")) =="
    G=$OUT/gen && rm -rf "$G" && mkdir -p "$G"
    ./hgrn2 prepare --task text --input "$HGRN2_SHARED/data/text/tinyshakespeare.txt" --tokenizer "$tk" --out "$G/data" >/dev/null &&
        ./hgrn2 train --task text --data "$G/data" --dim 64 --layers 2 --expand-ratio 16 --batch 8 --seq-len 64 --steps 300 \
            --lr 3e-3 --eval-every 0 --out "$G/run" >/dev/null &&
        ./hgrn2 export --ckpt "$G/run/model.ckpt" --hf "$G/hf" >/dev/null &&
        ./hgrn2 sample --ckpt "$G/run/model.ckpt" --prompt "ROMEO:" --temperature 0 -n 40 --ids --device cpu > "$G/ids.txt" &&
        printf %s "ROMEO:" | ./hgrn2 tokenize --tokenizer "$G/hf" > "$G/prompt_ids.txt" &&
        python3 scripts/check_fla_loads_export.py "$G/hf" --prompt "ROMEO:" --expect "$G/ids.txt" \
            --prompt-ids "$G/prompt_ids.txt" 2>&1 | grep -v Warning
    rm -rf "$G"
done
bash scripts/bench_vs_fla.sh "${1:-ops}"
