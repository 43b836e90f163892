#!/usr/bin/env bash
# Runs libFuzzer harnesses built by `make fuzz`: tests/fuzz/run.sh SECONDS TARGET...
# Each target's binary build/fuzz/fuzz_TARGET runs for SECONDS on its corpus tests/tmp/fuzz-corpus/TARGET
# (first filled from tests/tmp/fuzz-seeds/TARGET, see seeds.sh), in chunks of at most FUZZ_CHUNK seconds
# (default 60): an input the library rejects leaves its allocations behind (die() jumps out of the middle
# of a call), and a fresh process per chunk keeps that from adding up to the memory limit.
# A finding (crash, sanitizer report, timeout, out-of-memory, one allocation over 512 MB) is saved under
# tests/tmp/fuzz-findings/TARGET/ and makes the exit status 1; the log is tests/tmp/fuzz-logs/TARGET.log.
# FUZZ_KEEP_GOING=1 goes on after a finding (libFuzzer's fork mode) to collect several in one run.
# tests/fuzz/TARGET.dict, when present, is the target's dictionary of tokens worth inserting.
# Replay one input: build/fuzz/fuzz_TARGET FILE (HGRN2_FUZZ_VERBOSE=1 prints die()'s messages).
cd "$(dirname "$0")/../.." || exit 1
seconds=${1:?usage: tests/fuzz/run.sh SECONDS TARGET...}
shift
chunk=${FUZZ_CHUNK:-60}
# ASan reserves terabytes of address space for its shadow memory, so `ulimit -v` cannot cap these
# processes; libFuzzer's RSS and malloc limits do, and ASan's hard RSS limit is the net under them.
export ASAN_OPTIONS=${ASAN_OPTIONS:-hard_rss_limit_mb=3072:detect_leaks=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
for t in "$@"; do
    bin=build/fuzz/fuzz_$t corpus=tests/tmp/fuzz-corpus/$t seeds=tests/tmp/fuzz-seeds/$t
    findings=tests/tmp/fuzz-findings/$t log=tests/tmp/fuzz-logs/$t.log
    [ -x "$bin" ] || { echo "FAIL fuzz_$t: $bin is not built (make fuzz builds it)"; status=1; continue; }
    mkdir -p "$corpus" "$findings" "$(dirname "$log")"
    [ -d "$seeds" ] && cp -n "$seeds"/* "$corpus"/ 2>/dev/null
    : >"$log"
    before=$(ls "$findings" | grep -cE '^(crash|timeout|oom|leak)-')
    left=$seconds rc=0 t0=$SECONDS
    while [ "$left" -gt 0 ] && [ "$rc" -eq 0 ]; do
        n=$((left < chunk ? left : chunk))
        args=(-max_total_time="$n" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 -detect_leaks=0
              -report_slow_units=5 -print_final_stats=1 -artifact_prefix="$findings/")
        [ -f "tests/fuzz/$t.dict" ] && args+=(-dict="tests/fuzz/$t.dict")
        [ -n "${FUZZ_KEEP_GOING:-}" ] && args+=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
        nice -n 10 "$bin" "${args[@]}" "$corpus" >>"$log" 2>&1
        rc=$?
        left=$((left - n))
    done
    after=$(ls "$findings" | grep -cE '^(crash|timeout|oom|leak)-')
    # executions: the final statistics of each chunk; fork mode prints a running count instead
    runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | awk '{s += $2} END {print s + 0}')
    [ "$runs" = 0 ] && runs=$(grep -oE '^#[0-9]+: cov' "$log" | tr -d '#:a-z ' | tail -n 1)
    if [ "$rc" -ne 0 ] || [ "$after" -gt "$before" ]; then
        status=1
        printf 'FAIL fuzz_%-12s %4ds %9s runs  (log: %s)\n' "$t" $((SECONDS - t0)) "$runs" "$log"
        grep -E '^(==[0-9]+==ERROR|SUMMARY|[^ ]*: runtime error|artifact_prefix|Test unit written|ALARM|==[0-9]+== ERROR)' "$log" | tail -n 8 | sed 's/^/    /'
    else
        printf 'ok   fuzz_%-12s %4ds %9s runs, corpus %s inputs\n' "$t" $((SECONDS - t0)) "$runs" "$(ls "$corpus" | wc -l)"
    fi
done
# the scratch files of harness processes that crashed (a live process's are its own)
for f in /dev/shm/hgrn2-fuzz-* /tmp/hgrn2-fuzz-*; do
    [ -e "$f" ] || continue
    pid=${f#*/hgrn2-fuzz-}; pid=${pid%%-*}
    kill -0 "$pid" 2>/dev/null || rm -f "$f"
done
exit $status
