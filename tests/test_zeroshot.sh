#!/usr/bin/env bash
# Zero-shot evaluation (eval --task mc|lambada) on a tiny byte-level model of the King James Bible: every
# format's reader and prompt (the scored text read back from --dump), answers such a model must get, the
# log-likelihoods of the dump against the logits of eval --ids (tests/zeroshot_check.py), results that do not
# depend on the batch, --limit, --seq-len, a BPE tokenizer with an end-of-text token, and the refusals.
. "$(dirname "$0")/lib.sh"
H=./hgrn2
export OMP_NUM_THREADS=2
command -v bible >/dev/null || { echo "FAIL: needs Debian's bible-kjv (make setup)"; exit 1; }
bible 'gen1:1-rev22:21' > "$TMP/kjv.txt" 2>/dev/null
expect 0 "prepare the King James Bible (byte)" -- $H prepare --task text --input "$TMP/kjv.txt" --tokenizer byte \
    --out "$TMP/data" --val-fraction 0.01
expect 0 "train a tiny model" -- $H train --task text --data "$TMP/data" --dim 64 --layers 2 --expand-ratio 16 \
    --batch 8 --seq-len 128 --lr 3e-3 --warmup 10 --steps 300 --eval-every 0 --eval-batches 2 --out "$TMP/m"
M="$TMP/m/model.ckpt"
F="$TMP/f"; mkdir -p "$F"

# ---- fixtures in each data set's released layout: a verse continued rightly against gibberish ----
cat > "$F/hellaswag.jsonl" <<'EOF'
{"ind": 1, "activity_label": "Genesis", "ctx_a": "In the beginning God created the heaven", "ctx_b": "aND THE", "endings": ["earth.", "qzvkx.", "xvqj [title] pfft.", "zzqk."], "source_id": "x", "split": "val", "split_type": "indomain", "label": 0}
{"ind": 2, "activity_label": "Exodus", "ctx_a": "[header] And God said unto Moses, I AM THAT I", "ctx_b": "", "endings": ["QZXW", "AM", "XQZV", "PFKQ"], "label": "1"}
EOF
cat > "$F/valid.jsonl" <<'EOF'
{"goal": "In the beginning God created", "sol1": "qzx vvk pfq kkz.", "sol2": "the heaven and the earth."}
{"goal": "And God said, Let there be", "sol1": "light: and there was light.", "sol2": "xqzv: pq kvz qx xqzvk."}
EOF
printf '1\n0\n' > "$F/valid-labels.lst"
cat > "$F/arc.jsonl" <<'EOF'
{"id": "a1", "question": {"stem": "In the beginning God created the heaven and the", "choices": [{"text": "qzxv.", "label": "A"}, {"text": "pfkq.", "label": "B"}, {"text": "earth.", "label": "C"}, {"text": "zzvq.", "label": "D"}]}, "answerKey": "C"}
{"id": "a2", "question": {"stem": "And God said, Let there be", "choices": [{"text": "xqqz", "label": "1"}, {"text": "light", "label": "2"}, {"text": "kvzp", "label": "3"}]}, "answerKey": "2"}
EOF
cat > "$F/winogrande.jsonl" <<'EOF'
{"qID": "w1", "sentence": "And God said, Let there be _: and there was light.", "option1": "qxzv", "option2": "light", "answer": "2"}
{"qID": "w2", "sentence": "In the beginning _ created the heaven and the earth.", "option1": "God", "option2": "Zqx", "answer": "1"}
EOF
cat > "$F/boolq.jsonl" <<'EOF'
{"question": "was the earth without form", "title": "Genesis", "answer": true, "passage": "And the earth was without form, and void."}
{"question": "was there light", "passage": "And God said, Let there be light: and there was light.", "label": 0}
EOF
# generic: continuations as written; a context ending in a space gives it to the continuation; the last item's
# right answer is long and likely per character but not in sum: acc misses it, acc_norm gets it
cat > "$F/generic.jsonl" <<'EOF'
{"context": "In the beginning God created the heaven and the", "choices": [" earth.", " xqzv.", " pflrk."], "gold": 0}
{"context": "And God said, Let there be ", "choices": ["qqqqz", "light"], "gold": 1}
{"context": "And the earth was without form, and", "choices": [" void; and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters.", " qz"], "gold": 0}
EOF

mc() { expect 0 "$1: eval --task mc" -- $H eval --task mc --ckpt "$M" --format "$1" --data "$2" --dump "$TMP/$1.dump" "${@:3}"; }
last() { grep "^$1 " "$TMP/out" | tail -n 1 | cut -d' ' -f2; }
want() {   # want NAME VALUE WHAT: the line 'NAME X' of the last output has X = VALUE
    checks=$((checks + 1))
    if [ "$(last "$1")" = "$2" ]; then ok "$3: $1 $2"; else fail "$3: $1 is '$(last "$1")', expected $2"; fi
}
for f in hellaswag arc winogrande; do
    mc $f "$F/$f.jsonl"
    want acc 1.000000 $f; want acc_norm 1.000000 $f; want items 2 $f
done
mc piqa "$F/valid.jsonl"
want acc 1.000000 piqa; want acc_norm 1.000000 piqa
checks=$((checks + 1))
[ "$(tail -n 2 "$TMP/out" | cut -d' ' -f1 | tr '\n' ' ')" = "acc acc_norm " ] && ok "the last lines are acc and acc_norm" \
    || fail "the last lines are not acc, acc_norm: $(tail -n 2 "$TMP/out")"
mc boolq "$F/boolq.jsonl"
mc jsonl "$F/generic.jsonl"
want acc 0.666667 "generic"; want acc_norm 1.000000 "generic"

# the scored text, read back from the dumps (byte ids are bytes): the prompts, the cleaning, the gold indices
cat > "$TMP/text.py" <<'EOF'
import sys
rows = {}
for name in sys.argv[1:]:
    for line in open(name):
        if line.startswith('#'): continue
        c = line.rstrip('\n').split('\t')
        ids = bytes(int(x) for x in c[7].split())
        n = int(c[5])
        rows[(name.split('/')[-1].split('.')[0], int(c[0]), int(c[2]))] = (ids[:-n].decode(), ids[-n:].decode(), int(c[3]))
want = [
    ('hellaswag', 0, 0, 'Genesis: In the beginning God created the heaven And the', ' earth.', 0),
    ('hellaswag', 0, 2, 'Genesis: In the beginning God created the heaven And the', ' xvqj. pfft.', 0),
    ('hellaswag', 1, 1, 'Exodus: And God said unto Moses, I AM THAT I', ' AM', 1),
    ('piqa', 0, 1, 'Question: In the beginning God created\nAnswer:', ' the heaven and the earth.', 1),
    ('piqa', 1, 0, 'Question: And God said, Let there be\nAnswer:', ' light: and there was light.', 0),
    ('arc', 0, 2, 'Question: In the beginning God created the heaven and the\nAnswer:', ' earth.', 2),
    ('arc', 1, 1, 'Question: And God said, Let there be\nAnswer:', ' light', 1),
    ('winogrande', 0, 0, 'And God said, Let there be qxzv', ' : and there was light.', 1),
    ('winogrande', 0, 1, 'And God said, Let there be light', ' : and there was light.', 1),
    ('winogrande', 1, 0, 'In the beginning God', ' created the heaven and the earth.', 0),
    ('boolq', 0, 1, 'And the earth was without form, and void.\nQuestion: was the earth without form?\nAnswer:', ' yes', 1),
    ('boolq', 1, 0, 'And God said, Let there be light: and there was light.\nQuestion: was there light?\nAnswer:', ' no', 0),
    ('jsonl', 1, 1, 'And God said, Let there be', ' light', 1),
]
bad = 0
for fmt, item, choice, ctx, cont, gold in want:
    got = rows.get((fmt, item, choice))
    if got != (ctx, cont, gold):
        print('MISMATCH %s item %d choice %d: %r, expected %r' % (fmt, item, choice, got, (ctx, cont, gold))); bad += 1
print('%d scored texts checked, %d mismatches' % (len(want), bad))
sys.exit(1 if bad else 0)
EOF
expect 0 "the dumps hold each format's prompt, continuation and gold index" -- python3 "$TMP/text.py" \
    "$TMP/hellaswag.dump" "$TMP/piqa.dump" "$TMP/arc.dump" "$TMP/winogrande.dump" "$TMP/boolq.dump" "$TMP/jsonl.dump"
[ -s "$TMP/out" ] && sed 's/^/    /' "$TMP/out"
# boolq's accuracy (a Bible model cannot answer these) recomputed from its dump
checks=$((checks + 1))
want_acc=$(awk -F'\t' '!/^#/ { ll[$1, $3] = $5; gold[$1] = $4; n[$1]++ }
    END { for (i in n) { best = 0; for (j = 1; j < n[i]; j++) if (ll[i, j] > ll[i, best]) best = j; hits += best == gold[i]; items++ }
          printf "%.6f", hits / items }' "$TMP/boolq.dump")
expect 0 "boolq again" -- $H eval --task mc --ckpt "$M" --format boolq --data "$F/boolq.jsonl"
want acc "$want_acc" "boolq, as its dump says"

# LAMBADA: items made of the model's own greedy continuations (sample --temperature 0) must be right, the same
# with the last word changed must be wrong
: > "$F/lambada.jsonl"; nright=0
for p in "Thus saith the" "And the LORD spake unto" "In the beginning God created the heaven and the" "And it came to pass"; do
    s=$($H sample --ckpt "$M" --prompt "$p" --temperature 0 -n 24 2>/dev/null)
    s=${s#"$p"}
    case "$s" in " "[A-Za-z]*) ;; *) continue ;; esac
    w=$(printf '%s' "${s# }" | sed 's/[^A-Za-z].*//' | head -n 1)
    printf '{"text": "%s %s"}\n{"text": "%s %sq"}\n' "$p" "$w" "$p" "$w" >> "$F/lambada.jsonl"
    nright=$((nright + 1))
done
checks=$((checks + 1))
[ $nright -ge 2 ] && ok "$nright greedy continuations start a word" || fail "only $nright greedy continuations start a word"
expect 0 "lambada" -- $H eval --task lambada --ckpt "$M" --data "$F/lambada.jsonl" --dump "$TMP/lambada.dump"
want acc 0.500000 "lambada: the greedy words right, the changed ones wrong"
checks=$((checks + 1))
[ "$(tail -n 2 "$TMP/out" | cut -d' ' -f1 | tr '\n' ' ')" = "acc perplexity " ] && ok "the last lines are acc and perplexity" \
    || fail "the last lines are not acc, perplexity: $(tail -n 2 "$TMP/out")"
checks=$((checks + 1))
ppl=$(awk -F'\t' '!/^#/ { s += $5; n++ } END { printf "%.6f", exp(-s / n) }' "$TMP/lambada.dump")
[ "$(last perplexity)" = "$ppl" ] && ok "perplexity is exp(-mean log-likelihood): $ppl" || fail "perplexity $(last perplexity), from the dump $ppl"

# ---- exact log-likelihoods: every dump against the logits of eval --ids ----
D=("$TMP/hellaswag.dump" "$TMP/piqa.dump" "$TMP/arc.dump" "$TMP/winogrande.dump" "$TMP/boolq.dump" "$TMP/jsonl.dump" "$TMP/lambada.dump")
expect 0 "dumps match the logits of eval --ids (1e-5 relative)" -- python3 tests/zeroshot_check.py $H "$M" "$TMP" "${D[@]}"
sed 's/^/    /' "$TMP/out"

# ---- batches and order change nothing; --limit; --seq-len ----
for b in 1 3 64; do
    expect 0 "generic, --batch $b" -- $H eval --task mc --ckpt "$M" --format jsonl --data "$F/generic.jsonl" --batch $b --dump "$TMP/b$b.dump"
    tail -n 5 "$TMP/out" > "$TMP/b$b.out"
done
checks=$((checks + 1))
if cmp -s "$TMP/b1.dump" "$TMP/b64.dump" && cmp -s "$TMP/b3.dump" "$TMP/b64.dump" && cmp -s "$TMP/b1.dump" "$TMP/jsonl.dump" \
   && cmp -s "$TMP/b1.out" "$TMP/b64.out" && cmp -s "$TMP/b3.out" "$TMP/b64.out"
then ok "--batch 1, 3, 64 and the default give identical log-likelihoods and results"; else fail "results depend on the batch"; fi
tac "$F/generic.jsonl" > "$TMP/reversed.jsonl"
expect 0 "generic, items reversed" -- $H eval --task mc --ckpt "$M" --format jsonl --data "$TMP/reversed.jsonl" --dump "$TMP/rev.dump"
checks=$((checks + 1))
if cmp -s <(grep -v '^#' "$TMP/rev.dump" | cut -f3,5 | sort) <(grep -v '^#' "$TMP/jsonl.dump" | cut -f3,5 | sort) \
   && cmp -s <(tail -n 5 "$TMP/out") "$TMP/b1.out"
then ok "the order of the items changes nothing"; else fail "results depend on the order of the items"; fi
expect 0 "--limit 2" -- $H eval --task mc --ckpt "$M" --format jsonl --data "$F/generic.jsonl" --limit 2 --dump "$TMP/lim.dump"
want items 2 "--limit 2"; want acc 1.000000 "--limit 2 (the first two items)"
checks=$((checks + 1))
[ "$(grep -vc '^#' "$TMP/lim.dump")" = 5 ] && ok "--limit 2 scores 5 continuations" || fail "--limit 2 scored $(grep -vc '^#' "$TMP/lim.dump")"
expect 0 "--seq-len 40" -- $H eval --task mc --ckpt "$M" --format jsonl --data "$F/generic.jsonl" --seq-len 40 --limit 2 --dump "$TMP/s40.dump"
checks=$((checks + 1))
awk -F'\t' '!/^#/ { n = split($8, a, " "); if (n > 41) bad = 1; if (n == 41) full++ } END { exit bad || !full }' "$TMP/s40.dump" \
    && ok "--seq-len 40 keeps the last 41 tokens (40 inputs)" || fail "--seq-len 40 windows: $(cut -f8 "$TMP/s40.dump" | awk '{print NF}' | tr '\n' ' ')"
expect 0 "truncated windows match the logits too" -- python3 tests/zeroshot_check.py $H "$M" "$TMP" "$TMP/s40.dump"
expect 1 "a continuation longer than --seq-len" -- $H eval --task mc --ckpt "$M" --format jsonl --data "$F/generic.jsonl" --seq-len 20
expect_msg "line 3: choice 0's continuation has 107 tokens, more than --seq-len 20"

# ---- a BPE tokenizer with an end-of-text token: an empty context is scored after it ----
TOK=tests/fixtures/tokenizer/bl.json
expect 0 "a model with room for a 1500-token vocabulary" -- $H train --task text --data "$TMP/data" --dim 32 --layers 1 \
    --expand-ratio 8 --vocab 1536 --batch 2 --seq-len 32 --steps 1 --eval-every 0 --eval-batches 1 --out "$TMP/bpe"
printf '%s\n' '{"context": "", "choices": ["And the", "Zxq vk"], "gold": 0}' '{"context": "And God said, Let there be ", "choices": ["light", "darkness"], "gold": 0}' > "$F/bpe.jsonl"
expect 0 "generic with tokenizer.json" -- $H eval --task mc --ckpt "$TMP/bpe/model.ckpt" --tokenizer "$TOK" --format jsonl \
    --data "$F/bpe.jsonl" --dump "$TMP/bpe.dump"
whole=$(printf 'And God said, Let there be light' | $H tokenize --tokenizer "$TOK")
ctx=$(printf 'And God said, Let there be' | $H tokenize --tokenizer "$TOK")
cont=$(printf 'And the' | $H tokenize --tokenizer "$TOK")
checks=$((checks + 1))
if [ "$(awk -F'\t' '$1 == 1 && $3 == 0 { print $8 }' "$TMP/bpe.dump")" = "$whole" ] \
   && [ "$(awk -F'\t' '$1 == 1 && $3 == 0 { print $6 }' "$TMP/bpe.dump")" = $(( $(wc -w <<< "$whole") - $(wc -w <<< "$ctx") )) ] \
   && [ "$(awk -F'\t' '$1 == 0 && $3 == 0 { print $8 }' "$TMP/bpe.dump")" = "0 $cont" ]
then ok "ids as lm-eval makes them: encode(context + continuation) split at len(encode(context)); '' -> end-of-text"
else fail "BPE windows:"; cat "$TMP/bpe.dump"; fi
expect 0 "BPE dump matches the logits" -- python3 tests/zeroshot_check.py $H "$TMP/bpe/model.ckpt" "$TMP" --tokenizer "$TOK" "$TMP/bpe.dump"

# ---- refusals: one clear line, a non-zero exit, no crash ----
E="$TMP/e"; mkdir -p "$E"
ev() { local rc=$1 what=$2; shift 2; expect "$rc" "$what" -- $H eval --ckpt "$M" "$@"; }
printf '%s\n' "$(head -n 1 "$F/hellaswag.jsonl")" '{"activity_label": "x", "ctx_a": "a", "ctx_b": "b", "label": 0}' > "$E/nofield.jsonl"
ev 1 "a missing field" --task mc --format hellaswag --data "$E/nofield.jsonl"; expect_msg "nofield.jsonl line 2: no field \"endings\""
printf '%s\n' '{"context": "a", "choices": ["b", "c"], "gold": 2}' > "$E/gold.jsonl"
ev 1 "gold out of range" --task mc --format jsonl --data "$E/gold.jsonl"; expect_msg "line 1: field \"gold\" is 2, outside the 2 choices"
printf '%s\n' '{"qID": "w", "sentence": "no blank", "option1": "a", "option2": "b", "answer": "3"}' > "$E/wino.jsonl"
ev 1 "winogrande without a blank" --task mc --format winogrande --data "$E/wino.jsonl"; expect_msg "has no '_'"
sed 's/"answerKey": "C"/"answerKey": "E"/' "$F/arc.jsonl" > "$E/arc.jsonl"
ev 1 "ARC's answer key names no choice" --task mc --format arc --data "$E/arc.jsonl"; expect_msg "line 1: answerKey \"E\" is the label of none"
cp "$F/valid.jsonl" "$E/dev.jsonl"
ev 1 "PIQA without its label file" --task mc --format piqa --data "$E/dev.jsonl"; expect_msg "dev-labels.lst is not there (give --labels FILE)"
printf '1\n' > "$E/short.lst"
ev 1 "PIQA with too few labels" --task mc --format piqa --data "$E/dev.jsonl" --labels "$E/short.lst"; expect_msg "has 1 labels, but line 2"
printf '1\n2\n' > "$E/two.lst"
ev 1 "PIQA with a label 2" --task mc --format piqa --data "$E/dev.jsonl" --labels "$E/two.lst"; expect_msg "two.lst line 2: a label is 0 or 1"
printf '%s\n' '{"context": "a", "choices": ["b", "c"], "gold": 0}' '{"context": "a", "choices": ["b",' > "$E/broken.jsonl"
ev 1 "a malformed JSON line" --task mc --format jsonl --data "$E/broken.jsonl"; expect_msg "broken.jsonl line 2: malformed JSON"
printf '[1, 2]\n' > "$E/array.jsonl"
ev 1 "a line that is no object" --task mc --format jsonl --data "$E/array.jsonl"; expect_msg "line 1: not a JSON object"
: > "$E/empty.jsonl"
ev 1 "an empty file" --task mc --format jsonl --data "$E/empty.jsonl"; expect_msg "empty.jsonl holds no items"
printf '\n  \n' > "$E/blank.jsonl"
ev 1 "a file of blank lines" --task lambada --data "$E/blank.jsonl"; expect_msg "holds no items"
ev 1 "a missing file" --task mc --format jsonl --data "$E/none.jsonl"; expect_msg "cannot read"
printf '%s\n' '{"text": "oneword"}' > "$E/noctx.jsonl"
ev 1 "an empty context with a tokenizer without end-of-text" --task lambada --data "$E/noctx.jsonl"
expect_msg "line 1: the context is empty, which is scored after the end-of-text token, and the tokenizer byte has none"
expect 0 "a model trained on token ids (mqar)" -- $H train --task mqar --dim 32 --seq-len 32 --kv-pairs 4 --batch 2 \
    --steps 1 --eval-every 0 --eval-batches 1 --out "$TMP/mqar"
expect 1 "a model without a tokenizer" -- $H eval --task mc --ckpt "$TMP/mqar/model.ckpt" --format jsonl --data "$F/generic.jsonl"
expect_msg "trained on token ids without a tokenizer: zero-shot scoring encodes text, give --tokenizer"
ev 2 "--task mc without --format" --task mc --data "$F/generic.jsonl"; expect_msg "needs --format"
ev 2 "--task mc without --data" --task mc --format jsonl; expect_msg "needs --data FILE"
ev 2 "--task lambada --format piqa" --task lambada --format piqa --data "$F/valid.jsonl"
ev 2 "--labels with arc" --task mc --format arc --data "$F/arc.jsonl" --labels "$F/valid-labels.lst"
ev 2 "an unknown format" --task mc --format nope --data "$F/arc.jsonl"; expect_msg "--format must be"
ev 2 "--limit 0" --task mc --format arc --data "$F/arc.jsonl" --limit 0
finish
