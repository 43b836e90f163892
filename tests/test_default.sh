#!/usr/bin/env bash
# The README's first command, shortened: `hgrn2 train` with no model arguments prepares the King James
# Bible on first use, trains the default preset, and its loss falls; sample and eval then find the model.
. "$(dirname "$0")/lib.sh"
H=./hgrn2
command -v bible >/dev/null || { echo "the bible command is missing: run 'make setup'"; exit 1; }
OUT="$TMP/run"
expect 0 "default run, 30 steps" -- $H train --steps 30 --eval-batches 4 --out "$OUT"
cat "$TMP/out"
first=$(awk -F'\t' 'NR == 2 { print $2 }' "$OUT/log.tsv"); last=$(awk -F'\t' 'END { print $2 }' "$OUT/log.tsv")
checks=$((checks + 1))
if awk -v f="$first" -v l="$last" 'BEGIN { exit !(l < f - 2.0) }'; then ok "loss falls: $first -> $last"; else fail "loss did not fall by 2 nats: $first -> $last"; fi
grep -q "preparing the default corpus" "$TMP/out" || [ -d data/bible ] || fail "data/bible was not prepared"
expect 0 "sample from the run" -- $H sample --ckpt "$OUT/model.ckpt" --prompt "And God said" -n 40 --seed 1
checks=$((checks + 1))
[ "$(wc -c < "$TMP/out")" -gt 40 ] && ok "sample printed text" || fail "sample printed too little"
expect 0 "eval of the run" -- $H eval --ckpt "$OUT/model.ckpt" --max-batches 4
tail -n 1 "$TMP/out" | grep -Eq '^loss [0-9.]+$' || fail "eval's last line is not 'loss X'"
finish
