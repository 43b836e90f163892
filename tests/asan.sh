#!/usr/bin/env bash
# `make test-asan`: the whole suite against builds with AddressSanitizer and UBSan.
#   tests/asan.sh CC CFLAGS
# Copies the working tree's sources (tracked and new files) to build/asan, builds ./hgrn2 and every C test
# there with CFLAGS, and runs its `make test` (the fuzz part excepted) with HGRN2_SHARED pointing at this
# checkout's shared directory. Sanitizer reports go to build/asan/tests/tmp/sanitizer.*, so that a report
# from a command whose failure a test expected is not lost; any report fails the run.
# Leak reports are off: die() ends the process with its allocations live, by design.
# ./hgrn2's dense kernels and recurrences (cpu.c, cpu_mixer.c) are built without sanitizers unless ASAN_FULL=1:
# instrumented, they run about 30x slower and the default-preset run of test_default.sh alone takes over an
# hour on two cores.
# The gradient tests (test_ops, test_cls_ops, test_model: the float64 build) run them instrumented either way.
set -u
cd "$(dirname "$0")/.." || exit 1
cc=$1 cflags=$2
t0=$SECONDS
shared=$(realpath "${HGRN2_SHARED:-../shared}") || exit 1
# the copy has no .venv (git-ignored): the tokenizer test uses this checkout's (the path itself, not the
# interpreter it links to, which would not see the environment's packages)
export HGRN2_PYTHON=${HGRN2_PYTHON:-$PWD/.venv/bin/python}
rm -rf build/asan && mkdir -p build/asan
git ls-files -z --cached --others --exclude-standard |
    tar --null --ignore-failed-read -cf - -T - | tar -xf - -C build/asan || exit 1
cd build/asan || exit 1
mkdir -p tests/tmp
# HGRN2_SANITIZED: tests whose point is a long run (MQAR learning its task) keep to its first stretch
export HGRN2_SHARED=$shared HGRN2_SKIP_FUZZ=1 HGRN2_SKIP_ASAN=1 HGRN2_SANITIZED=1 CFLAGS=$cflags
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1:log_path=$PWD/tests/tmp/sanitizer}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:abort_on_error=1:log_path=$PWD/tests/tmp/sanitizer}
if [ -z "${ASAN_FULL:-}" ]; then
    # built after the copy, so it is newer than its sources and make keeps it in the program's library
    mkdir -p build/cpu
    for f in cpu cpu_mixer; do
        "$cc" -O3 -march=native -std=gnu11 -fopenmp -g -c -o build/cpu/$f.o $f.c || exit 1
    done
fi
make --no-print-directory NVCC= test
status=$?
reports=$(ls tests/tmp/sanitizer.* 2>/dev/null)
if [ -n "$reports" ]; then
    status=1
    echo
    echo "sanitizer reports (build/asan/tests/tmp/sanitizer.*):"
    for r in $reports; do
        echo "== $r"
        grep -E 'ERROR|runtime error|SUMMARY|^    #[0-9] ' "$r" | head -n 12
    done
fi
echo "make test-asan: $((SECONDS - t0)) s, $([ $status -eq 0 ] && echo clean || echo FAILED)"
exit $status
