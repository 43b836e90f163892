#!/usr/bin/env python3
"""transformers loads a transformer's `hgrn2 export` folder as LlamaForCausalLM and computes hgrn2's numbers.

Needs torch and transformers (any machine; the GPU's when there is one, fp32 and TF32 off either way):

  ./hgrn2 export --ckpt RUN/model.ckpt --hf EXPORT_DIR               # a run of --arch transformer
  printf '1 2 3 4 5 6 7 8\\n9 8 7 6 5 4 3 2\\n' > ids.txt              # sequences of one length, ids < V
  ./hgrn2 eval --ckpt RUN/model.ckpt --ids ids.txt --logits ours.f32
  ./hgrn2 sample --ckpt RUN/model.ckpt --prompt-ids "1 2 3" --temperature 0 -n 40 --ids --ignore-eos > greedy.txt
  python3 scripts/check_llama_loads_export.py EXPORT_DIR --ids ids.txt --logits ours.f32 \\
      --prompt-ids "1 2 3" --expect greedy.txt

1. The folder loads unchanged with from_pretrained (eager attention), and its logits on the sequences of
   --ids are hgrn2's (eval --logits: little-endian float32 [sequences, T, V]) to 1e-5 relative.
2. With --prompt-ids and --expect: generate (greedy, through transformers' own key/value cache) continues the
   prompt with the ids `hgrn2 sample` printed (its key/value cache). At a mismatch the two logits are printed,
   to tell a near-tie (about 1e-5 apart or less) from a bug.

Exits 1 on any failure.
"""
import argparse
import os
import sys

import numpy as np
import torch
from transformers import LlamaForCausalLM


def read_ids(arg):
    text = open(arg).read() if os.path.exists(arg) else arg
    return [int(x) for x in text.replace(",", " ").split()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("export_dir")
    ap.add_argument("--ids", help="one sequence of token ids per line, all of one length")
    ap.add_argument("--logits", help="hgrn2 eval --ids FILE --logits OUT for those sequences")
    ap.add_argument("--prompt-ids", help="generate greedily after these ids (a file, or the ids)")
    ap.add_argument("--expect", help="the ids `hgrn2 sample --ids --temperature 0` printed: a file, or the ids")
    a = ap.parse_args()
    if bool(a.ids) != bool(a.logits) or bool(a.prompt_ids) != bool(a.expect) or not (a.ids or a.prompt_ids):
        ap.error("give --ids with --logits, or --prompt-ids with --expect, or both")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = 'cuda' if torch.cuda.is_available() else 'cpu'
    model = LlamaForCausalLM.from_pretrained(a.export_dir, torch_dtype=torch.float32, attn_implementation='eager')
    model = model.to(dev).eval()
    ok = True
    if a.ids:
        seqs = [read_ids(line) for line in open(a.ids) if line.strip()]
        ids = torch.tensor(seqs, device=dev)
        with torch.no_grad():
            got = model(input_ids=ids).logits.float().cpu().numpy()
        ours = np.fromfile(a.logits, dtype='<f4').reshape(got.shape)
        rel = float(np.linalg.norm(got - ours) / np.linalg.norm(ours))
        print(f"transformers loads the export: logits relative error {rel:.3g} against hgrn2's (limit 1e-5), "
              f"{ids.shape[0]} x {ids.shape[1]} tokens")
        ok &= rel < 1e-5
    if a.prompt_ids:
        prompt, want = read_ids(a.prompt_ids), read_ids(a.expect)
        inp = torch.tensor([prompt], device=dev)
        with torch.no_grad():
            out = model.generate(inp, attention_mask=torch.ones_like(inp), max_new_tokens=len(want), min_new_tokens=len(want),
                                 do_sample=False, pad_token_id=0, output_scores=True, return_dict_in_generate=True)
        got = out.sequences[0, len(prompt):].tolist()
        if got == want:
            print(f"greedy generation matches hgrn2 sample: {len(got)} ids")
        else:
            i = next(k for k in range(min(len(got), len(want)) + 1) if k == min(len(got), len(want)) or got[k] != want[k])
            if i < min(len(got), len(want)):
                s = out.scores[i][0].float()
                print(f"first difference at new id {i}: generate {got[i]} (logit {s[got[i]].item():.6g}), hgrn2 "
                      f"{want[i]} (logit {s[want[i]].item():.6g})")
            print(f"FAIL: greedy generation differs from hgrn2 sample:\n  generate {got}\n  hgrn2    {want}")
            ok = False
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    main()
