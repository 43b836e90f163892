#!/usr/bin/env bash
# Zero-shot scoring (eval --task mc|lambada) on the GPU against the CPU. Run from the repository root on a
# CUDA machine after `make`:   bash scripts/gpu_zeroshot.sh [CKPT]
# Without CKPT it trains a small byte-level model of the King James Bible on the GPU (Debian's bible-kjv,
# else $HGRN2_SHARED/data/text/tinyshakespeare.txt). The items are made from the text: 400 multiple-choice
# items (the first half of a verse; its own second half against three others') and 400 LAMBADA items (a
# verse's last word). Each is scored with --dump on the CPU and on the GPU in every precision, and each
# choice's log-likelihood is compared; exits 1 when one is off by more than its precision's tolerance.
#
# Tolerances (|ll_gpu - ll_cpu| <= rel * |ll_cpu| + tok * tokens, per choice):
#   fp32  rel 1e-4, tok 1e-5: exact GEMMs and the plain recurrence, as the CPU; only the order of fp32 sums
#         differs (the repository holds fp32 losses to 1e-5: tests/test_gpu_model.c).
#   tf32  rel 5e-3, tok 5e-3: GEMM inputs rounded to 10-bit mantissas (2^-11 relative), the chunked mixer.
#   bf16  rel 2e-2, tok 2e-2: the default of --device cuda (hgrn2.c, machine_start: --precision bf16): GEMM
#         operands and the activations that feed them are bf16 (7-bit mantissas, 2^-8 relative) with fp32
#         accumulation, the recurrence chunked on bf16 tensor cores with an fp32 state (docs/kernels.md). The
#         repository holds bf16 losses, means over many tokens, to ~1e-3 relative; a choice's log-likelihood
#         is a sum over a few tokens, each log-probability carrying its own rounding of about 1e-2 relative
#         (a token of log-probability -5 can move by ~0.05), and a near-certain token (log-probability ~0) by
#         an absolute amount: hence a relative and a per-token bound, 4 to 8 times the typical rounding.
# The GPU's own results at --batch 1 and the default batch are also compared (fp32: to 1e-5 relative; the
# reduced precisions are printed only, as cuBLAS may pick other kernels for other shapes). acc and acc_norm of
# every run are printed; they may differ between precisions by the few items whose choices are within the
# rounding of each other.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
H=./hgrn2
W=${OUT:-/tmp}/gpu_zeroshot
rm -rf "$W"; mkdir -p "$W"
$H --version | grep -q CUDA || { echo "./hgrn2 was built without CUDA (run make on a machine with nvcc)"; exit 1; }
command -v python3 >/dev/null || { echo "needs python3"; exit 1; }

if command -v bible >/dev/null; then bible 'gen1:1-rev22:21' > "$W/text.txt" 2>/dev/null
else cp "${HGRN2_SHARED:-../shared}/data/text/tinyshakespeare.txt" "$W/text.txt" || exit 1; fi
CKPT=${1:-}
if [ -z "$CKPT" ]; then
    $H prepare --task text --input "$W/text.txt" --tokenizer byte --out "$W/data" --val-fraction 0.01 >/dev/null || exit 1
    $H train --task text --data "$W/data" --dim 128 --layers 2 --expand-ratio 32 --batch 16 --seq-len 256 --lr 3e-3 \
        --warmup 20 --steps 400 --eval-every 0 --eval-batches 4 --device cuda --out "$W/run" | tail -n 2 || exit 1
    CKPT=$W/run/model.ckpt
fi

# the items: verses (or lines) of the text
python3 - "$W/text.txt" "$W" <<'EOF' || exit 1
import json, random, re, sys
text, out = open(sys.argv[1], encoding='utf-8', errors='replace').read(), sys.argv[2]
verses, cur, blank = [], [], True
for line in text.splitlines():
    m = re.match(r'^\s+\d+ (.*)', line)
    if m or blank or not line.strip():      # a verse starts; a heading (after a blank line) or a blank ends one
        if cur: verses.append(' '.join(cur))
        cur = [m.group(1).strip()] if m else []
    else:
        cur.append(line.strip())
    blank = not line.strip()
if cur: verses.append(' '.join(cur))
if len(verses) < 1000:          # not the Bible: lines of text
    verses = [l.strip() for l in text.splitlines() if len(l.split()) >= 8]
verses = [v for v in verses if 8 <= len(v.split()) <= 60]
rng = random.Random(1)
rng.shuffle(verses)
with open(out + '/mc.jsonl', 'w') as f:
    for i in range(400):
        w = verses[i].split(); h = len(w) // 2
        others = [verses[1000 + 3 * i + k].split() for k in range(3)]
        choices = [' ' + ' '.join(w[h:])] + [' ' + ' '.join(o[len(o) // 2:]) for o in others]
        gold = rng.randrange(4)
        choices[0], choices[gold] = choices[gold], choices[0]
        f.write(json.dumps({'context': ' '.join(w[:h]), 'choices': choices, 'gold': gold}) + '\n')
with open(out + '/lambada.jsonl', 'w') as f:
    for v in verses[3000:3400]:
        f.write(json.dumps({'text': re.sub(r'[^\w]+$', '', v)}) + '\n')
EOF

run() {   # run NAME TASK DEVICE-ARGS...: one evaluation with its dump; prints its metrics
    local name=$1 task=$2; shift 2
    local fmt=(--format jsonl --data "$W/mc.jsonl"); [ "$task" = lambada ] && fmt=(--data "$W/lambada.jsonl")
    if ! $H eval --task "$task" --ckpt "$CKPT" "${fmt[@]}" --dump "$W/$name.dump" "$@" > "$W/$name.out" 2>&1; then
        echo "FAIL: $name: eval exited non-zero"; tail -n 3 "$W/$name.out"; return 1
    fi
    printf '%-22s %s | %s\n' "$name" "$(grep -E '^(acc|acc_norm|perplexity) ' "$W/$name.out" | tr '\n' ' ')" \
        "$(head -n 1 "$W/$name.out" | sed 's/.*(\([0-9]* tokens\/s\).*/\1/')"
}
rc=0
for task in mc lambada; do
    run "$task-cpu" $task --device cpu || rc=1
    for p in fp32 tf32 bf16; do run "$task-cuda-$p" $task --device cuda --precision $p || rc=1; done
    run "$task-cuda-fp32-b1" $task --device cuda --precision fp32 --batch 1 || rc=1
    run "$task-cuda-bf16-b1" $task --device cuda --precision bf16 --batch 1 || rc=1
done
[ $rc = 0 ] || exit 1

python3 - "$W" <<'EOF'
import sys
W = sys.argv[1]
def load(name):
    rows = {}
    for line in open('%s/%s.dump' % (W, name)):
        if line.startswith('#'): continue
        c = line.rstrip('\n').split('\t')
        rows[(int(c[0]), int(c[2]))] = (float(c[4]), int(c[5]), int(c[6]), c[7])
    return rows
TOL = {'fp32': (1e-4, 1e-5), 'tf32': (5e-3, 5e-3), 'bf16': (2e-2, 2e-2)}
bad = 0
def compare(a, b, rel, tok, check):
    global bad
    A, B = load(a), load(b)
    if A.keys() != B.keys() or any(A[k][3] != B[k][3] for k in A):
        print('FAIL %s vs %s: not the same windows' % (b, a)); bad += 1; return
    worst, worst_tok, off, greedy_diff = 0.0, 0.0, 0, 0
    for k, (ll, n, g, _) in A.items():
        d = abs(B[k][0] - ll)
        worst = max(worst, d / max(abs(ll), 1e-30)); worst_tok = max(worst_tok, d / n)
        if d > rel * abs(ll) + tok * n: off += 1
        greedy_diff += g != B[k][2]
    verdict = ('FAIL' if off else 'ok') if check else 'info'
    if check and off: bad += 1
    print('%-4s %-20s vs %-18s %5d choices: worst rel %.2e, worst per token %.2e nats, %d beyond (rel %.0e + %.0e/token), '
          'greedy differs on %d' % (verdict, b, a, len(A), worst, worst_tok, off, rel, tok, greedy_diff))
for task in ('mc', 'lambada'):
    for p in ('fp32', 'tf32', 'bf16'):
        compare(task + '-cpu', '%s-cuda-%s' % (task, p), *TOL[p], True)
    compare(task + '-cuda-fp32', task + '-cuda-fp32-b1', 1e-5, 0, True)
    compare(task + '-cuda-bf16', task + '-cuda-bf16-b1', 1e-5, 0, False)
print('%s' % ('FAILED' if bad else 'all within tolerance'))
sys.exit(1 if bad else 0)
EOF
