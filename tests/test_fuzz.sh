#!/usr/bin/env bash
# The fuzz harnesses for about 20 s each (make fuzz-short): any crash, sanitizer report, timeout or
# memory blow-up fails. Skipped, saying so, where clang with libFuzzer is missing (make setup installs it)
# and in the sanitizer build of the suite (make test-asan sets HGRN2_SKIP_FUZZ).
cd "$(dirname "$0")/.." || exit 1
if [ -n "${HGRN2_SKIP_FUZZ:-}" ]; then echo "SKIP: fuzzing is not part of this run (HGRN2_SKIP_FUZZ is set)"; exit 0; fi
cc=${FUZZ_CC:-clang}
probe=tests/tmp/fuzz-probe
mkdir -p "$probe"
printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { return 0; }\n' >"$probe/p.c"
if ! command -v "$cc" >/dev/null || ! "$cc" -fsanitize=fuzzer,address,undefined -fopenmp -o "$probe/p" "$probe/p.c" 2>"$probe/err"; then
    echo "SKIP: $cc with libFuzzer and OpenMP (-fsanitize=fuzzer -fopenmp) is not available; make setup installs clang and libomp"
    sed 's/^/    /' "$probe/err" 2>/dev/null | head -3
    exit 0
fi
# a make of its own: the suite's make does not hand its job slots down through tests/run.sh
MAKEFLAGS= make --no-print-directory fuzz-short
