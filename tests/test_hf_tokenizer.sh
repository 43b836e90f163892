#!/usr/bin/env bash
# The tokenizer of an `hgrn2 export` as Hugging Face reads it: for a byte, a GPT-2 and a tokenizer.json run,
# the `tokenizers` library loads the exported tokenizer.json and encodes the shared texts, multilingual
# snippets, edge cases and random strings to the ids `hgrn2 tokenize` gives, and decodes them back
# (tests/hf_tokenizer_check.py). The library lives in .venv, which `make setup` makes (HGRN2_PYTHON: another
# interpreter, as make test-asan gives its copy of the tree).
. "$(dirname "$0")/lib.sh"
H=./hgrn2
PY=${HGRN2_PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=2
checks=$((checks + 1))
if ! "$PY" -c 'import tokenizers' >/dev/null 2>&1; then
    fail "$PY cannot import tokenizers (Hugging Face's tokenizer library): \`make setup\` installs it into .venv"
    finish; exit 1
fi
ok "$PY has tokenizers $("$PY" -c 'import tokenizers; print(tokenizers.__version__)')"
head -c 100000 "$SHARED/data/text/tinyshakespeare.txt" > "$TMP/small.txt"
# kind, the tokenizer's spec, the checker's extra flags
for run in "byte byte --bytes" "gpt2 $SHARED/data/tokenizers/gpt2" "bl tests/fixtures/tokenizer/bl.json"; do
    set -- $run
    kind=$1 spec=$2; shift 2
    expect 0 "prepare with $kind" -- $H prepare --task text --input "$TMP/small.txt" --tokenizer "$spec" --out "$TMP/data-$kind" \
        --val-fraction 0.05
    expect 0 "train 1 step with $kind" -- $H train --task text --data "$TMP/data-$kind" --dim 16 --layers 1 --expand-ratio 8 \
        --batch 2 --seq-len 16 --steps 1 --eval-every 0 --out "$TMP/run-$kind"
    expect 0 "export the $kind run" -- $H export --ckpt "$TMP/run-$kind/model.ckpt" --hf "$TMP/hf-$kind"
    checks=$((checks + 1))
    if "$PY" tests/hf_tokenizer_check.py --hgrn2 $H --export "$TMP/hf-$kind" --tokenizer "$spec" "$@" "$SHARED"/data/text/* \
        > "$TMP/check-$kind.out" 2>&1; then
        ok "$kind: Hugging Face encodes and decodes as hgrn2 ($(tail -n 1 "$TMP/check-$kind.out"))"
    else
        fail "$kind: Hugging Face and hgrn2 differ:"; grep -v "^ok" "$TMP/check-$kind.out" | tail -n 20 | sed 's/^/    /'
    fi
done
finish
