"""Timing of a Hugging Face causal LM's training steps, shared by the reference sides of the benchmarks
(bench_fla.py, bench_llama.py): bf16 autocast, fp32 weights, fused AdamW, one batch of random ids reused."""
import time

import torch


def time_training(model, B, T, vocab, t_start, steps=10):
    """Runs steps + 2 training steps of model (on the GPU) on a [B, T] batch of random ids below vocab.
    Returns (median step seconds over the steps after the first two, seconds from t_start to the end of the
    first step, parameter count)."""
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, fused=True)
    ids = torch.randint(0, vocab, (B, T), device='cuda')
    times = []
    first = None
    for s in range(steps + 2):
        torch.cuda.synchronize()
        t0 = time.time()
        with torch.autocast('cuda', dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if first is None:
            first = time.time() - t_start
        elif s >= 2:
            times.append(time.time() - t0)
    times.sort()
    return times[len(times) // 2], first, sum(p.numel() for p in model.parameters())
