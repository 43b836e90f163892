#!/usr/bin/env bash
# Runs every test program and shell test; prints one line per test and the total. Exit status 1 on any failure.
cd "$(dirname "$0")/.." || exit 1
pass=0; fail=0; failed=()
run() {
    local name=$1; shift
    local log="tests/tmp/$name.log"
    mkdir -p tests/tmp
    local t0=$SECONDS
    if "$@" >"$log" 2>&1; then
        pass=$((pass + 1)); printf 'PASS %-28s %4ds\n' "$name" $((SECONDS - t0))
    else
        fail=$((fail + 1)); failed+=("$name"); printf 'FAIL %-28s %4ds  (log: %s)\n' "$name" $((SECONDS - t0)) "$log"
        tail -n 30 "$log" | sed 's/^/    /'
    fi
}
for t in tests/bin/test_*; do
    case "$t" in *test_gpu*) continue ;; esac      # GPU tests run with `make test-gpu`
    run "$(basename "$t")" "$t"
done
for t in tests/test_*.sh; do [ -e "$t" ] && run "$(basename "$t" .sh)" bash "$t"; done
echo
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
