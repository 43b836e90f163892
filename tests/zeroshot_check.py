#!/usr/bin/env python3
# Checks the dumps of `hgrn2 eval --task mc|lambada --dump` against logits written by `hgrn2 eval --ids
# --logits` for the same token windows: each choice's summed log-likelihood (log-softmax of the logits at the
# positions before its continuation tokens, computed here in double precision) to 1e-5 relative, and whether
# every continuation token is the argmax (first of equal logits). Standard library only.
# usage: zeroshot_check.py HGRN2 CKPT TMPDIR [--tokenizer SPEC] DUMP...
import collections, math, os, struct, subprocess, sys

hgrn2, ckpt, tmp = sys.argv[1:4]
dumps, extra = sys.argv[4:], []
if dumps[:1] == ['--tokenizer']:     # (eval --ids decodes the ids for its bits per byte)
    extra, dumps = dumps[:2], dumps[2:]
rows = []
for path in dumps:
    with open(path) as f:
        for line in f:
            if line.startswith('#'):
                continue
            c = line.rstrip('\n').split('\t')
            rows.append({'dump': path, 'item': int(c[0]), 'choice': int(c[2]), 'll': float(c[4]), 'ncont': int(c[5]),
                         'greedy': int(c[6]), 'ids': [int(x) for x in c[7].split()]})
if not rows:
    sys.exit('no rows in the dumps')

by_len = collections.defaultdict(list)
for r in rows:
    by_len[len(r['ids'])].append(r)
bad = checked = 0
for T, rs in sorted(by_len.items()):
    ids_path = os.path.join(tmp, 'check_%d.ids' % T)
    logits_path = os.path.join(tmp, 'check_%d.f32' % T)
    with open(ids_path, 'w') as f:
        for r in rs:
            f.write(' '.join(map(str, r['ids'])) + '\n')
    subprocess.run([hgrn2, 'eval', '--ckpt', ckpt, '--ids', ids_path, '--logits', logits_path] + extra, check=True,
                   stdout=subprocess.DEVNULL)
    raw = open(logits_path, 'rb').read()
    V = len(raw) // (4 * len(rs) * T)
    if V * 4 * len(rs) * T != len(raw):
        sys.exit('%s: %d bytes is not [%d, %d, V] float32' % (logits_path, len(raw), len(rs), T))
    for k, r in enumerate(rs):
        ll, greedy = 0.0, 1
        for t in range(T - r['ncont'] - 1, T - 1):
            off = ((k * T) + t) * V * 4
            row = struct.unpack('<%df' % V, raw[off:off + V * 4])
            mx = max(row)
            lse = mx + math.log(sum(math.exp(x - mx) for x in row))
            target = r['ids'][t + 1]
            ll += row[target] - lse
            if row.index(mx) != target:
                greedy = 0
        checked += 1
        where = '%s item %d choice %d' % (r['dump'], r['item'], r['choice'])
        if abs(ll - r['ll']) > 1e-5 * abs(ll) + 1e-9:
            print('MISMATCH %s: log-likelihood %.9g in the dump, %.9g from the logits' % (where, r['ll'], ll))
            bad += 1
        if r['greedy'] != greedy:
            print('MISMATCH %s: greedy %d in the dump, %d from the logits' % (where, r['greedy'], greedy))
            bad += 1
print('%d continuations checked against the logits of eval --ids, %d mismatches' % (checked, bad))
sys.exit(1 if bad else 0)
