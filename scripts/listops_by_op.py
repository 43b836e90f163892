#!/usr/bin/env python3
"""Accuracy on ListOps by the expression's outermost operator, its depth and its length.

    python3 scripts/listops_by_op.py SPLIT.tsv PREDICTIONS [--mix OTHER.tsv]

SPLIT.tsv is the ListOps file the predictions were made on (basic_test.tsv or basic_val.tsv, the official
layout `hgrn2 generate --task listops` writes), PREDICTIONS the file of `hgrn2 eval --task lra-listops
--predictions FILE` on that split (a header, then index, label, predicted class, ... per example, in the split's
order). The two are matched line by line, and every label must agree.

Prints, for each outermost operator, how many expressions have it and the accuracy on them, then the accuracy
by nesting depth and by length (tokens without parentheses). With --mix OTHER.tsv, also the accuracy these
per-operator accuracies would give on OTHER's mix of outermost operators: how much of a difference between two
splits is their mix of operators (the hardest, SM, sits at chance on a model that has not learned it).
"""
import argparse
import collections
import sys


def die(msg):
    sys.stderr.write("listops_by_op.py: " + msg + "\n")
    sys.exit(2)


def read_split(path):
    """[(outermost operator, label, tokens, depth)] of a ListOps TSV file."""
    rows = []
    try:
        f = open(path, encoding="utf-8", newline="")
    except OSError as e:
        die("cannot read %s: %s" % (path, e.strerror))
    with f:
        header = f.readline().rstrip("\r\n")
        if header != "Source\tTarget":
            die("%s: line 1 is not the header 'Source<TAB>Target' of a ListOps file" % path)
        for n, line in enumerate(f, start=2):
            parts = line.rstrip("\r\n").split("\t")
            if len(parts) != 2 or not parts[1].strip().isdigit():
                die("%s: line %d is not an expression, a tab and a label" % (path, n))
            toks = [t for t in parts[0].split() if t not in ("(", ")")]
            if not toks or not toks[0].startswith("["):
                die("%s: line %d does not start with an operator" % (path, n))
            depth = deepest = 0
            for t in toks:
                if t.startswith("["):
                    depth += 1
                    deepest = max(deepest, depth)
                elif t == "]":
                    depth -= 1
            rows.append((toks[0][1:], int(parts[1]), len(toks), deepest))
    if not rows:
        die("%s has no expressions" % path)
    return rows


def read_predictions(path):
    """[(label, predicted)] of an eval --predictions file."""
    out = []
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        die("cannot read %s: %s" % (path, e.strerror))
    with f:
        first = f.readline()
        if not first.startswith("index\tlabel\tpredicted"):
            die("%s: line 1 is not the header of an eval --predictions file" % path)
        for n, line in enumerate(f, start=2):
            parts = line.split("\t")
            try:
                out.append((int(parts[1]), int(parts[2])))
            except (IndexError, ValueError):
                die("%s: line %d is not index, label, predicted, ..." % (path, n))
    return out


def table(title, groups):
    print("%-10s %8s %9s" % (title, "examples", "accuracy"))
    for key in sorted(groups):
        n, right = groups[key]
        label = key if isinstance(key, str) else "%d-%d" % key if isinstance(key, tuple) else str(key)
        print("%-10s %8d %9.4f" % (label, n, right / n))


def main():
    ap = argparse.ArgumentParser(description="ListOps accuracy by outermost operator, depth and length")
    ap.add_argument("split")
    ap.add_argument("predictions")
    ap.add_argument("--mix", help="a second split: the accuracy these per-operator accuracies give on its mix")
    a = ap.parse_args()
    rows, preds = read_split(a.split), read_predictions(a.predictions)
    if len(rows) != len(preds):
        die("%s has %d expressions but %s %d predictions: not the same split" %
            (a.split, len(rows), a.predictions, len(preds)))
    by_op, by_depth, by_len = (collections.defaultdict(lambda: [0, 0]) for _ in range(3))
    for i, ((op, label, ntok, depth), (plabel, pred)) in enumerate(zip(rows, preds)):
        if label != plabel:
            die("example %d: label %d in %s but %d in %s: not the same split" %
                (i, label, a.split, plabel, a.predictions))
        lo = ntok // 500 * 500
        for g, key in ((by_op, op), (by_depth, depth), (by_len, (lo, lo + 499))):
            g[key][0] += 1
            g[key][1] += pred == label
    right = sum(v[1] for v in by_op.values())
    print("%d examples, accuracy %.4f" % (len(rows), right / len(rows)))
    table("operator", by_op)
    table("depth", by_depth)
    table("tokens", by_len)
    if a.mix:
        other = collections.Counter(r[0] for r in read_split(a.mix))
        missing = [op for op in other if op not in by_op]
        if missing:
            die("%s has outermost operators %s that %s has not" % (a.mix, ", ".join(sorted(missing)), a.split))
        total = sum(other.values())
        acc = sum(other[op] * by_op[op][1] / by_op[op][0] for op in other) / total
        print("on the mix of %s (%s): accuracy %.4f" %
              (a.mix, ", ".join("%s %d" % (op, other[op]) for op in sorted(other)), acc))


if __name__ == "__main__":
    main()
