#!/usr/bin/env python3
"""The reference side of the side-by-side benchmark: flash-linear-attention (fla) on the same card.

  python3 scripts/bench_fla.py ops             chunk_gla forward and forward+backward at PERF.md's shapes
  python3 scripts/bench_fla.py train D L B T   HGRN2ForCausalLM training tokens/s (bf16 autocast, fp32
                                               weights, fused AdamW, random tokens, vocab 50304)
  python3 scripts/bench_fla.py gen D L NEW     HGRN2ForCausalLM.generate, bf16 weights, greedy: at batch 1 and
                                               64, prompts of 128 random ids, NEW new tokens each (NEW >= 2);
                                               the time to the first token and the decoding speed after it
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


def median_s(f, reps=3):
    ts = []
    for _ in range(reps):
        torch.cuda.synchronize()
        t0 = time.time()
        f()
        torch.cuda.synchronize()
        ts.append(time.time() - t0)
    ts.sort()
    return ts[len(ts) // 2]


def greedy(model, ids, n):
    """n new tokens for each row of ids; no early stop (no end-of-sequence id, and at least n)."""
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                         do_sample=False, pad_token_id=0, eos_token_id=None)
    assert out.shape[1] == ids.shape[1] + n, out.shape
    return out


def gen(D, L, new, P=128):
    from fla.models import HGRN2Config, HGRN2ForCausalLM
    cfg = HGRN2Config(hidden_size=D, num_hidden_layers=L, expand_ratio=128, vocab_size=50304)
    model = HGRN2ForCausalLM(cfg).to(torch.bfloat16).cuda().eval()
    for B in (1, 64):
        ids = torch.randint(0, 50304, (B, P), generator=torch.Generator().manual_seed(0)).cuda()
        with torch.inference_mode():
            warm = median_s(lambda: greedy(model, ids, 4), reps=1)   # Triton autotunes on first use
            t1 = median_s(lambda: greedy(model, ids, 1))
            tn = median_s(lambda: greedy(model, ids, new))
        step = (tn - t1) / (new - 1)
        print(f"fla generate D{D} L{L} batch {B}: first token {t1 * 1e3:.1f} ms, decode {B / step:.1f} tokens/s, "
              f"decode {step * 1e3:.2f} ms/step (prompt {P}, {new} new, warm-up {warm:.1f} s)", flush=True)


if __name__ == '__main__':
    if len(sys.argv) < 2 or sys.argv[1] not in ('ops', 'train', 'gen'):
        sys.exit(__doc__)
    if sys.argv[1] == 'ops':
        ops()
    elif sys.argv[1] == 'gen':
        if len(sys.argv) < 5 or int(sys.argv[4]) < 2:
            sys.exit(__doc__)
        gen(*map(int, sys.argv[2:5]))
    else:
        train(*map(int, sys.argv[2:6]))
