#!/usr/bin/env python3
"""The reference side of the side-by-side benchmark: flash-linear-attention (fla) on the same card.

  python3 scripts/bench_fla.py ops             chunk_gla forward and forward+backward at PERF.md's shapes
  python3 scripts/bench_fla.py train D L B T   HGRN2ForCausalLM training tokens/s (bf16 autocast, fp32
                                               weights, fused AdamW, random tokens, vocab 50304)
Prints one line per measurement, prefixed 'fla', for scripts/bench_vs_fla.sh to put into its table.
"""
import sys
import time

import torch
import triton

from hf_train_timer import time_training


def ops():
    from fla.ops.gla import chunk_gla
    for B, T, H in [(8, 2048, 6), (4, 2048, 16), (16, 1024, 6)]:
        K = V = 128
        torch.manual_seed(0)
        q = torch.randn(B, T, H, K, device='cuda', dtype=torch.bfloat16, requires_grad=True)
        k = torch.randn(B, T, H, K, device='cuda', dtype=torch.bfloat16, requires_grad=True)
        v = torch.randn(B, T, H, V, device='cuda', dtype=torch.bfloat16, requires_grad=True)
        g = torch.nn.functional.logsigmoid(torch.randn(B, T, H, K, device='cuda')).requires_grad_(True)
        do = torch.randn(B, T, H, V, device='cuda', dtype=torch.bfloat16)
        t0 = time.time()
        o, _ = chunk_gla(q, k, v, g)
        o.backward(do)
        torch.cuda.synchronize()
        first = time.time() - t0

        def fwd():
            with torch.no_grad():
                chunk_gla(q, k, v, g)

        def fwdbwd():
            o, _ = chunk_gla(q, k, v, g)
            o.backward(do)
        tf = triton.testing.do_bench(fwd, warmup=50, rep=200, return_mode='median')
        tb = triton.testing.do_bench(fwdbwd, warmup=50, rep=200, return_mode='median', grad_to_none=[q, k, v, g])
        print(f"fla chunk_gla B{B} T{T} H{H} fwd {tf:.3f} ms fwdbwd {tb:.3f} ms (first call incl. autotune {first:.1f} s)",
              flush=True)


def train(D, L, B, T, steps=10):
    from fla.models import HGRN2Config, HGRN2ForCausalLM
    t_start = time.time()
    cfg = HGRN2Config(hidden_size=D, num_hidden_layers=L, expand_ratio=128, vocab_size=50304, use_cache=False)
    model = HGRN2ForCausalLM(cfg).cuda()
    med, first, n = time_training(model, B, T, 50304, t_start, steps)
    print(f"fla train D{D} L{L} B{B} T{T}: {B * T / med:.0f} tokens/s, step {med * 1e3:.1f} ms, "
          f"peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB, first step {first:.1f} s, {n / 1e6:.1f}M params",
          flush=True)


if __name__ == '__main__':
    if sys.argv[1] == 'ops':
        ops()
    else:
        train(*map(int, sys.argv[2:6]))
