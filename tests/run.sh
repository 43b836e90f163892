#!/usr/bin/env bash
# Runs every test program and shell test; prints one line per test and the total. Exit status 1 on any failure.
cd "$(dirname "$0")/.." || exit 1
# A test that exits 77 was skipped (what it needs is missing): its last line says why, and the total says so.
pass=0; fail=0; failed=(); skipped=()
run() {
    local name=$1; shift
    local log="tests/tmp/$name.log"
    mkdir -p tests/tmp
    local t0=$SECONDS st
    "$@" >"$log" 2>&1
    st=$?
    if [ $st = 0 ]; then
        pass=$((pass + 1)); printf 'PASS %-28s %4ds\n' "$name" $((SECONDS - t0))
    elif [ $st = 77 ]; then
        skipped+=("$name"); printf 'SKIP %-28s %4ds  (%s)\n' "$name" $((SECONDS - t0)) "$(tail -n 1 "$log")"
    else
        fail=$((fail + 1)); failed+=("$name"); printf 'FAIL %-28s %4ds  (log: %s)\n' "$name" $((SECONDS - t0)) "$log"
        # the failed checks themselves (a long log's tail may not reach them), then how it ended
        grep -E -A3 '^ *(FAIL|not ok)' "$log" | head -n 40 | sed 's/^/    /'
        echo "    ..."
        tail -n 15 "$log" | sed 's/^/    /'
    fi
}
for t in tests/bin/test_*; do
    case "$t" in *test_gpu*) continue ;; esac      # GPU tests run with `make test-gpu`
    run "$(basename "$t")" "$t"
done
for t in tests/test_*.sh; do [ -e "$t" ] && run "$(basename "$t" .sh)" bash "$t"; done
echo
if [ ${#skipped[@]} = 0 ]; then echo "$pass passed, $fail failed"
else echo "$pass passed, $fail failed, ${#skipped[@]} skipped (${skipped[*]}: see SKIP above)"; fi
[ "$fail" -eq 0 ]
