#!/usr/bin/env python3
"""The reference side of the Transformer++ benchmark: transformers' LlamaForCausalLM with PyTorch's sdpa on the
same card as `hgrn2 bench --arch transformer`.

  python3 scripts/bench_llama.py ops B T H HD          causal scaled_dot_product_attention, bf16, [B,H,T,HD]:
                                                      forward and forward+backward, per sdpa backend
  python3 scripts/bench_llama.py train D L B T I       LlamaForCausalLM training tokens/s (I: the MLP width; heads of
                                                      64, vocab 50304, untied head, bf16 autocast, fp32 weights,
                                                      fused AdamW, random tokens, attn_implementation sdpa)
Prints one line per measurement, prefixed 'llama', for scripts/bench_vs_llama.sh to put into its table.
"""
import sys
import time

import torch

from hf_train_timer import time_training


def median_ms(f, warm=3, reps=20):
    for _ in range(warm):
        f()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        f()
        b.record()
        torch.cuda.synchronize()
        ts.append(a.elapsed_time(b))
    ts.sort()
    return ts[len(ts) // 2]


def ops(B, T, H, hd):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    import torch.nn.functional as F
    torch.manual_seed(0)
    q, k, v = (torch.randn(B, H, T, hd, device='cuda', dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    do = torch.randn(B, H, T, hd, device='cuda', dtype=torch.bfloat16)
    fl = 4.0 * B * H * hd * T * (T + 1) / 2   # causal: q k^T and p v over the T (T + 1) / 2 pairs
    for name, be in [('flash', SDPBackend.FLASH_ATTENTION), ('cudnn', SDPBackend.CUDNN_ATTENTION),
                     ('efficient', SDPBackend.EFFICIENT_ATTENTION)]:
        try:
            with sdpa_kernel(be):
                def fwd():
                    with torch.no_grad():
                        F.scaled_dot_product_attention(q, k, v, is_causal=True)

                def fwdbwd():
                    o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                    o.backward(do)
                    q.grad = k.grad = v.grad = None
                tf, tb = median_ms(fwd), median_ms(fwdbwd)
        except RuntimeError as e:
            print(f"llama sdpa {name} B{B} T{T} H{H} hd{hd}: not available ({str(e).splitlines()[0][:80]})")
            continue
        print(f"llama sdpa {name} B{B} T{T} H{H} hd{hd} fwd {tf:.3f} ms {fl / tf * 1e-9:.1f} TFLOP/s "
              f"fwdbwd {tb:.3f} ms {3.5 * fl / tb * 1e-9:.1f} TFLOP/s", flush=True)


def train(D, L, B, T, I, steps=10):
    from transformers import LlamaConfig, LlamaForCausalLM
    t_start = time.time()
    cfg = LlamaConfig(hidden_size=D, intermediate_size=I, num_hidden_layers=L, num_attention_heads=D // 64,
                      num_key_value_heads=D // 64, vocab_size=50304, max_position_embeddings=T,
                      tie_word_embeddings=False, use_cache=False, attn_implementation='sdpa')
    model = LlamaForCausalLM(cfg).cuda()
    med, first, n = time_training(model, B, T, 50304, t_start, steps)
    print(f"llama train D{D} L{L} B{B} T{T}: {B * T / med:.0f} tokens/s, step {med * 1e3:.1f} ms, "
          f"peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB, first step {first:.1f} s, {n / 1e6:.1f}M params, "
          f"attention {model.config._attn_implementation}", flush=True)


if __name__ == '__main__':
    if len(sys.argv) < 2 or sys.argv[1] not in ('ops', 'train'):
        sys.exit(__doc__)
    if sys.argv[1] == 'ops':
        ops(*map(int, sys.argv[2:6]))
    else:
        train(*map(int, sys.argv[2:7]))
