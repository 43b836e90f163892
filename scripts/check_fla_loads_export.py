#!/usr/bin/env python3
"""fla and transformers load a folder written by `hgrn2 export` (HGRN2ForCausalLM, or HGRNForCausalLM for
--arch hgrn1, through AutoModelForCausalLM): the model computes the logits of the reference fixture
(tests/fixtures/fla, or tests/fixtures/fla-hgrn1), and AutoTokenizer with the model's generate continues a prompt greedily with the
ids `hgrn2 sample` gives.

On a CUDA machine with torch, transformers and the fla wheels (scripts/gpu_check.sh installs them).

1. The logits (as before):

  ./hgrn2 import --hf tests/fixtures/fla/hf --out f.ckpt && ./hgrn2 export --ckpt f.ckpt --hf EXPORT_DIR
  python3 scripts/check_fla_loads_export.py EXPORT_DIR tests/fixtures/fla/fixture.safetensors

   The folder is loaded unchanged with from_pretrained; only the runtime mode is chosen ('fused_recurrent',
   which needs no minutes of autotuning), in fp32 without TF32. Fails when the logits differ by more than
   1e-5 relative.

2. The tokenizer and greedy generation, with a model trained with a tokenizer (a GPT-2 run here):

  S=$HGRN2_SHARED/data    # ../shared/data
  ./hgrn2 prepare --task text --input $S/text/tinyshakespeare.txt --tokenizer $S/tokenizers/gpt2 --out /tmp/g
  ./hgrn2 train --task text --data /tmp/g --dim 64 --layers 2 --expand-ratio 16 --batch 8 --seq-len 64 \\
      --steps 300 --lr 3e-3 --eval-every 0 --out /tmp/grun
  ./hgrn2 export --ckpt /tmp/grun/model.ckpt --hf /tmp/gexp
  ./hgrn2 sample --ckpt /tmp/grun/model.ckpt --prompt "ROMEO:" --temperature 0 -n 40 --ids --device cpu > /tmp/ids.txt
  ./hgrn2 tokenize --tokenizer /tmp/gexp < <(printf %s "ROMEO:") > /tmp/prompt_ids.txt
  python3 scripts/check_fla_loads_export.py /tmp/gexp --prompt "ROMEO:" --expect /tmp/ids.txt \\
      --prompt-ids /tmp/prompt_ids.txt

   (The same for a byte run: --tokenizer byte at prepare.) --expect takes a file or the ids themselves
   ("13 27 ..."). hgrn2 samples in fp32 on the CPU (--device cpu) and fla runs in fp32, so that the two
   argmaxes agree except at near-ties; at a mismatch the script prints the two logits to tell a tie from a
   bug. `hgrn2 sample` stops before the end-of-text token (without --ignore-eos) and generate stops after
   it: the generated ids are compared up to it. The number of new tokens is that of the expected ids, or
   -n when given (generate stops there or at end-of-text).

   It also checks that AutoTokenizer encodes the prompt (without special tokens) to the ids --prompt-ids
   gives, adds no special token of its own for an export's tokenizer.json (add_bos_token/add_eos_token
   false), decodes the prompt back, and decodes some multilingual text back unchanged.

Exits 1 on any failure.
"""
import argparse
import json
import os
import sys

import torch

import fla  # noqa: F401  (registers the model classes with transformers)
from transformers import AutoModelForCausalLM

TEXTS = ["Hello, world! How's it going?", "héllo wörld\n\t  x", "  leading spaces and trailing  ",
         "日本語のテキスト 中文 한국어", "emoji 👍🏽 👨‍👩‍👧‍👦", "Привет, мир", "numbers 12345 3.14"]


def read_ids(arg):
    text = open(arg).read() if os.path.exists(arg) else arg
    return [int(x) for x in text.replace(",", " ").split()]


def check_logits(model, fixture):
    from safetensors.torch import load_file
    fx = load_file(fixture)
    with torch.no_grad():
        logits = model(input_ids=fx['input_ids'].long().cuda()).logits.float().cpu()
    ref = fx['logits']
    rel = ((logits - ref).norm() / ref.norm()).item()
    print(f"fla loads the hgrn2 export: logits relative error {rel:.3g} against the fixture (limit 1e-5)")
    return rel < 1e-5


def same_greedy(got, want, eos):
    """Whether generate's new ids `got` continue as hgrn2's `want` did, and where got's end-of-text is.

    hgrn2 stops before an end-of-text id and prints it not; generate stops after it (or at its token limit):
    so got up to its first end-of-text id must be want, and want must end there too."""
    cut = next((k for k, t in enumerate(got) if t in eos), len(got))
    return got[:cut] == want and (cut == len(got) or len(want) == cut), cut


def check_generate(model, export_dir, prompt, expect, prompt_ids, n):
    from transformers import AutoTokenizer
    ok = True
    tok = AutoTokenizer.from_pretrained(export_dir)
    print(f"AutoTokenizer: {type(tok).__name__}, vocabulary {len(tok)}, eos {tok.eos_token!r} ({tok.eos_token_id}), "
          f"bos {tok.bos_token!r}")
    ids = tok(prompt, add_special_tokens=False).input_ids
    if prompt_ids is not None and ids != prompt_ids:
        print(f"FAIL: AutoTokenizer encodes the prompt to {ids}, hgrn2 tokenize to {prompt_ids}")
        ok = False
    # the export's own tokenizer.json (not a copied file) has no post-processor that adds tokens
    post = json.load(open(os.path.join(export_dir, "tokenizer.json"), encoding="utf-8")).get("post_processor")
    if (post is None or post.get("type") == "ByteLevel") and tok(prompt).input_ids != ids:
        print(f"FAIL: AutoTokenizer adds special tokens by default: {tok(prompt).input_ids} vs {ids}")
        ok = False
    for text in [prompt] + TEXTS:
        back = tok.decode(tok(text, add_special_tokens=False).input_ids)
        if back != text:
            print(f"FAIL: AutoTokenizer decodes {text!r} back as {back!r}")
            ok = False
    eos = model.generation_config.eos_token_id          # an id, a list of ids, or None
    eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    new = n if n else len(expect)
    inp = torch.tensor([ids], device="cuda")
    with torch.no_grad():
        out = model.generate(inp, attention_mask=torch.ones_like(inp), max_new_tokens=new, do_sample=False,
                             pad_token_id=eos[0] if eos else 0, output_scores=True, return_dict_in_generate=True)
    got = out.sequences[0, len(ids):].tolist()
    want = expect[:new]
    same, cut = same_greedy(got, want, eos)
    print(f"generate, {len(got)} new ids: {got}")
    print(f"hgrn2 sample, {len(want)} ids: {want}")
    if same:
        print(f"greedy generation matches hgrn2 sample: {cut} ids{' then end-of-text' if cut < len(got) else ''}; "
              f"text {tok.decode(got[:cut])!r}")
    else:
        i = next((k for k in range(min(cut, len(want))) if got[k] != want[k]), min(cut, len(want)))
        if i < len(out.scores) and i < len(got) and i < len(want):
            s = out.scores[i][0].float()
            print(f"first difference at new id {i}: generate {got[i]} (logit {s[got[i]].item():.6g}), hgrn2 {want[i]} "
                  f"(logit {s[want[i]].item():.6g}); a difference of about 1e-5 or less is a near-tie, not a bug")
        print("FAIL: greedy generation differs from hgrn2 sample")
        ok = False
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("export_dir")
    ap.add_argument("fixture", nargs="?", help="tests/fixtures/fla/fixture.safetensors: compare the logits")
    ap.add_argument("--prompt", help="generate greedily after this text (needs --expect)")
    ap.add_argument("--expect", help="the ids `hgrn2 sample --ids --temperature 0` printed: a file, or the ids")
    ap.add_argument("--prompt-ids", help="the ids `hgrn2 tokenize` gives the prompt: a file, or the ids")
    ap.add_argument("-n", type=int, default=0, help="new tokens (default: as many as --expect holds)")
    a = ap.parse_args()
    if not a.fixture and not a.prompt:
        ap.error("give the fixture, or --prompt and --expect, or both")
    if bool(a.prompt) != bool(a.expect):
        ap.error("--prompt and --expect go together")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = AutoModelForCausalLM.from_pretrained(a.export_dir, attn_mode='fused_recurrent').cuda().float().eval()
    ok = True
    if a.fixture:
        ok &= check_logits(model, a.fixture)
    if a.prompt:
        expect = read_ids(a.expect)
        if not expect and not a.n:
            ap.error("--expect holds no ids (hgrn2 stopped at once at end-of-text): give -n")
        ok &= check_generate(model, a.export_dir, a.prompt, expect,
                             read_ids(a.prompt_ids) if a.prompt_ids else None, a.n)
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    main()
