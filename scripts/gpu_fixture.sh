#!/usr/bin/env bash
# One device call: install the carried fla wheels (.carry/*.whl) and build tests/fixtures/fla (HGRN2) and
# tests/fixtures/fla-hgrn1 (HGRN1). Run from the repository root on the GPU machine; the fixtures are written
# under $OUT/fla and $OUT/fla-hgrn1.
set -euo pipefail
pip install --no-deps -q .carry/fla_core-*.whl .carry/flash_linear_attention-*.whl
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, triton, transformers; print('torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__)"
python3 scripts/make_fla_fixture.py "${OUT:-/tmp/out}/fla"
python3 scripts/make_fla_fixture.py --arch hgrn1 "${OUT:-/tmp/out}/fla-hgrn1"
ls -la "${OUT:-/tmp/out}"/fla*/ "${OUT:-/tmp/out}"/fla*/hf
