#!/usr/bin/env python3
"""How far each op of a profiled step is from its floor.

Reads the output of `hgrn2 bench --profile` (or `bench --generate --profile`, or a training run's --profile)
and, for every op line that carries its work (TFLOP/s and TB/s), works out the flops and bytes it did per
step, the least time the card could do them in, max(flops / peak flops, bytes / peak bandwidth), how many
times over that floor the op runs and the milliseconds above it. Ops are listed by those milliseconds, the
largest first, then the totals: the step as profiled, the sum of the floors, and the tokens/s each would give
with --tokens N (tokens per step).

    ./hgrn2 bench --device cuda --dim 768 --layers 12 --expand-ratio 128 --vocab 50304 --batch 16 \\
        --seq-len 2048 --profile | python3 scripts/profile_floors.py --tokens 32768

The ceilings default to an H200's nominal figures (4.8 TB/s, 989 TFLOP/s of dense bf16 products);
--tbs and --tflops set others, for example what the card reaches in practice (the best op of the same call),
and --best takes those from the profile itself: the highest TB/s and the highest TFLOP/s of any op in it.
A file with several profiles (bench --generate prints one per batch size) is read profile by profile.
"""
import argparse
import re
import sys

LINE = re.compile(r"^\s+(?P<name>\S.*?\S)\s+(?P<calls>[\d.]+) calls\s+(?P<ms>[\d.]+) ms\s+[\d.]+%"
                  r"(?:\s+(?P<tflops>[\d.]+) TFLOP/s)?(?:\s+(?P<tbs>[\d.]+) TB/s)?\s*$")
HEAD = re.compile(r"GPU time per step by section and op")


def parse(lines):
    """The profiles in the text: a list of (title, ops), each op a dict with name, calls, ms, flops, bytes
    (flops and bytes None where the op states no work)."""
    profiles, cur = [], None
    for raw in lines:
        line = raw.rstrip("\n")
        h = HEAD.search(line)
        if h:
            cur = []
            profiles.append((line[:h.start()].strip(" ,"), cur))   # "batch 64, GPU time ...": "batch 64"
            continue
        m = LINE.match(line)
        if m and cur is not None:
            ms = float(m["ms"])
            tb = m["tbs"]
            op = {"name": m["name"], "calls": float(m["calls"]), "ms": ms, "flops": None, "bytes": None}
            if tb is not None:   # TB/s x ms x 1e9 = bytes; TFLOP/s x ms x 1e9 = flops
                op["bytes"] = float(tb) * ms * 1e9
                op["flops"] = float(m["tflops"]) * ms * 1e9 if m["tflops"] else 0.0
            cur.append(op)
    return [(t, ops) for t, ops in profiles if ops]


def floors(ops, tbs, tflops):
    rows = []
    for op in ops:
        if op["bytes"] is None:
            rows.append(dict(op, floor=None, over=None, excess=None))
            continue
        floor = max(op["flops"] / (tflops * 1e9), op["bytes"] / (tbs * 1e9))
        rows.append(dict(op, floor=floor, over=op["ms"] / floor if floor > 0 else None,
                         excess=op["ms"] - floor))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file", nargs="?", help="the profile's text (default: standard input)")
    ap.add_argument("--tbs", type=float, default=4.8, help="memory bandwidth ceiling in TB/s (default 4.8)")
    ap.add_argument("--tflops", type=float, default=989.0, help="arithmetic ceiling in TFLOP/s (default 989)")
    ap.add_argument("--best", action="store_true",
                    help="take the ceilings from the profile: its best TB/s and its best TFLOP/s")
    ap.add_argument("--tokens", type=float, default=0, help="tokens per step, to print tokens/s")
    a = ap.parse_args()
    if a.tbs <= 0 or a.tflops <= 0:
        ap.error("--tbs and --tflops must be positive")
    text = open(a.file).readlines() if a.file else sys.stdin.readlines()
    profiles = parse(text)
    if not profiles:
        sys.exit("profile_floors.py: no 'GPU time per step by section and op' profile with op lines in the input")
    for title, ops in profiles:
        tbs, tflops = a.tbs, a.tflops
        if a.best:
            costed = [o for o in ops if o["bytes"] is not None and o["ms"] > 0]
            tbs = max((o["bytes"] / o["ms"] / 1e9 for o in costed), default=0) or a.tbs
            tflops = max((o["flops"] / o["ms"] / 1e9 for o in costed), default=0) or a.tflops
        rows = floors(ops, tbs, tflops)
        total = sum(r["ms"] for r in rows)
        stated = [r for r in rows if r["floor"] is not None]
        floor = sum(r["floor"] for r in stated) + sum(r["ms"] for r in rows if r["floor"] is None)
        print(f"{title + ': ' if title else ''}floors at {tbs:.2f} TB/s and {tflops:.1f} TFLOP/s")
        print(f"  {'section / op':34} {'ms':>9} {'floor ms':>9} {'x floor':>8} {'above':>8} {'share':>6}")
        stated.sort(key=lambda r: -r["excess"])
        above = sum(r["excess"] for r in stated)
        for r in stated:
            over = f"{r['over']:8.1f}" if r["over"] is not None else f"{'-':>8}"
            share = 100 * r["excess"] / above if above > 0 else 0
            print(f"  {r['name']:34} {r['ms']:9.3f} {r['floor']:9.3f} {over} {r['excess']:8.3f} {share:5.1f}%")
        for r in rows:
            if r["floor"] is None:
                print(f"  {r['name']:34} {r['ms']:9.3f} {'(no cost stated: counted as its time)':>36}")
        line = f"  step {total:.3f} ms, at the ops' floors {floor:.3f} ms ({total / floor if floor else 0:.2f}x)"
        if a.tokens > 0:
            line += f": {a.tokens / total * 1e3:,.0f} against {a.tokens / floor * 1e3:,.0f} tokens/s"
        print(line)


if __name__ == "__main__":
    main()
