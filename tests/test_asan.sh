#!/usr/bin/env bash
# The whole suite once more against builds with AddressSanitizer and UBSan (make test-asan, tests/asan.sh),
# so that `make test` catches memory errors and undefined behaviour too. Skipped inside that run itself.
cd "$(dirname "$0")/.." || exit 1
if [ -n "${HGRN2_SKIP_ASAN:-}" ]; then echo "SKIP: this is the sanitizer run itself (HGRN2_SKIP_ASAN is set)"; exit 0; fi
make --no-print-directory test-asan
