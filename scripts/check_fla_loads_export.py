#!/usr/bin/env python3
"""fla loads a model exported by `hgrn2 export` and computes the same logits as the reference fixture.

  python3 scripts/check_fla_loads_export.py EXPORT_DIR tests/fixtures/fla/fixture.safetensors

EXPORT_DIR comes from `hgrn2 import --hf tests/fixtures/fla/hf --out f.ckpt` then
`hgrn2 export --ckpt f.ckpt --hf EXPORT_DIR`. The directory is loaded unchanged with from_pretrained;
only the runtime mode is chosen ('fused_recurrent', which needs no minutes of autotuning), in fp32
without TF32. Exits 1 when the logits differ by more than 1e-5 relative.
"""
import sys

import torch
from safetensors.torch import load_file

import fla  # noqa: F401
from fla.models import HGRN2ForCausalLM


def main(export_dir, fixture):
    torch.backends.cuda.matmul.allow_tf32 = False
    fx = load_file(fixture)
    model = HGRN2ForCausalLM.from_pretrained(export_dir, attn_mode='fused_recurrent').cuda().float().eval()
    with torch.no_grad():
        logits = model(input_ids=fx['input_ids'].long().cuda()).logits.float().cpu()
    ref = fx['logits']
    rel = ((logits - ref).norm() / ref.norm()).item()
    print(f"fla loads the hgrn2 export: logits relative error {rel:.3g} against the fixture (limit 1e-5)")
    sys.exit(0 if rel < 1e-5 else 1)


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2])
