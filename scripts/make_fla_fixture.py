#!/usr/bin/env python3
"""Build the reference fixtures of tests/fixtures/fla (HGRN2) and tests/fixtures/fla-hgrn1 (HGRN1) with the
reference implementation itself.

The reference is flash-linear-attention ("fla", classes HGRN2ForCausalLM and, with --arch hgrn1,
HGRNForCausalLM). Its kernels are Triton, so this
runs on a CUDA machine with torch, triton, transformers, einops and safetensors installed, plus the two
wheels (pip download flash-linear-attention==0.5.2 fla-core==0.5.2 --no-deps), installed with
`pip install --no-deps`. scripts/gpu_fixture.sh does all of it in one device call.

What it makes (python3 scripts/make_fla_fixture.py [--arch hgrn1] OUTDIR):
  OUTDIR/hf/config.json, OUTDIR/hf/model.safetensors   a small random HGRN2 (or HGRN1) in Hugging Face form
  OUTDIR/fixture.safetensors                           input_ids [B,T] (int32), logits [B,T,V] (fp32),
                                                       loss [1], grad.<name> for every parameter,
                                                       prompt [P] and greedy [G] (int32)
The model: vocabulary 300, hidden 64, 3 layers, expand ratio 16 (4 heads; HGRN1: expand ratio 1, its
element-wise state), untied lm_head, lower bounds
and every norm weight perturbed away from their initial values, weights drawn wider than fla's 0.02 so
that logits differ visibly. B 2 x T 100 (not a multiple of 64). Everything runs in float32 with the
'fused_recurrent' mode (the chunk mode would only add minutes of Triton autotuning) and TF32 off.
The greedy continuation: 20 tokens, each the argmax of a full forward over the sequence so far.
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file

import fla  # noqa: F401  (registers the model classes)
from fla.models import HGRN2Config, HGRN2ForCausalLM, HGRNConfig, HGRNForCausalLM


def main(out, arch):
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(1234)
    Config, Model = (HGRNConfig, HGRNForCausalLM) if arch == 'hgrn1' else (HGRN2Config, HGRN2ForCausalLM)
    cfg = Config(vocab_size=300, hidden_size=64, num_hidden_layers=3, expand_ratio=1 if arch == 'hgrn1' else 16,
                 attn_mode='fused_recurrent', use_lower_bound=True, tie_word_embeddings=False,
                 fuse_norm=False, fuse_swiglu=False, fuse_cross_entropy=False, use_cache=False)
    model = Model(cfg).cuda().float()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith('lower_bounds'):
                p.copy_(torch.randn_like(p))
            elif 'norm' in name:
                p.copy_(1 + 0.3 * torch.randn_like(p))
            else:
                p.copy_(0.1 * torch.randn_like(p))
    B, T = 2, 100
    ids = torch.randint(0, cfg.vocab_size, (B, T), device='cuda')
    model.train()
    out_ = model(input_ids=ids, labels=ids)
    out_.loss.backward()
    tensors = {
        'input_ids': ids.int().cpu(),
        'logits': out_.logits.detach().float().cpu().contiguous(),
        'loss': out_.loss.detach().float().reshape(1).cpu(),
    }
    for name, p in model.named_parameters():
        tensors['grad.' + name] = p.grad.detach().float().cpu().contiguous()
    model.eval()
    seq = ids[:1, :37].clone()
    prompt = seq[0].clone()
    with torch.no_grad():
        for _ in range(20):
            nxt = model(input_ids=seq).logits[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat([seq, nxt], 1)
    tensors['prompt'] = prompt.int().cpu()
    tensors['greedy'] = seq[0, prompt.numel():].int().cpu()
    os.makedirs(os.path.join(out, 'hf'), exist_ok=True)
    # save_pretrained of transformers 5 trips over fla's tied-weight keys: write the pieces directly
    save_file({k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()},
              os.path.join(out, 'hf', 'model.safetensors'), metadata={'format': 'pt'})
    cfg.save_pretrained(os.path.join(out, 'hf'))
    save_file(tensors, os.path.join(out, 'fixture.safetensors'))
    print(json.dumps({'loss': out_.loss.item(), 'prompt': prompt.tolist(),
                      'greedy': tensors['greedy'].tolist()}))


if __name__ == '__main__':
    args = sys.argv[1:]
    arch = 'hgrn2'
    if args[:1] == ['--arch']:
        arch, args = args[1], args[2:]
    if arch not in ('hgrn1', 'hgrn2'):
        sys.exit('--arch must be hgrn1 or hgrn2')
    main(args[0] if args else 'tests/fixtures/' + ('fla-hgrn1' if arch == 'hgrn1' else 'fla'), arch)
