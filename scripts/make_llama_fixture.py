#!/usr/bin/env python3
"""Build the reference fixture of tests/fixtures/llama with Hugging Face transformers itself.

The reference of the Transformer++ baseline (--arch transformer) is transformers' LlamaForCausalLM. This needs
torch, transformers and safetensors and nothing else: no network (the model is random, made here), no GPU (it
runs on one when there is one, else on the CPU; the numbers are fp32 either way). Any transformers from 4.44 on
and torch from 1.13 on will do.

What it makes (python3 scripts/make_llama_fixture.py OUTDIR, default tests/fixtures/llama):
  OUTDIR/hf/config.json, OUTDIR/hf/model.safetensors   a small random LLaMA in Hugging Face form
  OUTDIR/fixture.safetensors                           input_ids [B,T] (int32), logits [B,T,V] (fp32),
                                                       loss [1], grad.<name> for every parameter,
                                                       prompt [P] and greedy [G] (int32)
The model: vocabulary 64, hidden 32, 2 layers of 2 heads of 16 (two heads with 8 rotary frequencies each),
MLP width 48, untied lm_head, rms_norm_eps 1e-6, rope_theta 10000; every norm weight moved away from 1 and
the other weights drawn wider than LLaMA's 0.02, so that the attention is far from uniform and the logits
differ visibly. B 2 x T 24 tokens. Everything in float32, eager attention, TF32 off. The loss is transformers'
own (the labels shifted inside the model: the last position has no target). The greedy continuation: 12
tokens after an 8-token prompt, each the argmax of a full forward over the sequence so far. About 190 KB.
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM


def main(out):
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(1234)
    dev = 'cuda' if torch.cuda.is_available() else 'cpu'
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                      rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=False,
                      attention_bias=False, mlp_bias=False, use_cache=False)
    cfg._attn_implementation = 'eager'
    model = LlamaForCausalLM(cfg).to(dev).float()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'norm' in name:
                p.copy_(1 + 0.3 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))
    B, T = 2, 24
    ids = torch.randint(0, cfg.vocab_size, (B, T), device=dev)
    model.train()      # (no dropout in this model: train and eval compute the same)
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
    seq = ids[:1, :8].clone()
    prompt = seq[0].clone()
    with torch.no_grad():
        for _ in range(12):
            nxt = model(input_ids=seq).logits[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat([seq, nxt], 1)
    tensors['prompt'] = prompt.int().cpu()
    tensors['greedy'] = seq[0, prompt.numel():].int().cpu()
    os.makedirs(os.path.join(out, 'hf'), exist_ok=True)
    save_file({k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()},
              os.path.join(out, 'hf', 'model.safetensors'), metadata={'format': 'pt'})
    cfg.save_pretrained(os.path.join(out, 'hf'))
    save_file(tensors, os.path.join(out, 'fixture.safetensors'))
    print(json.dumps({'loss': out_.loss.item(), 'prompt': prompt.tolist(), 'greedy': tensors['greedy'].tolist(),
                      'transformers': __import__('transformers').__version__, 'torch': torch.__version__,
                      'device': dev}))


if __name__ == '__main__':
    main(sys.argv[1] if len(sys.argv) > 1 else 'tests/fixtures/llama')
