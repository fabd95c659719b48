#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine and runs every test: the unit and integration suites in a
# normal build, then again under AddressSanitizer + UndefinedBehaviorSanitizer, then the
# Release build of scripts/run.sh and the format check. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
jobs=$(nproc)

echo "== build (RelWithDebInfo) =="
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$jobs"
echo "== tests =="
(cd build && ctest --output-on-failure)

echo "== build (ASan + UBSan) =="
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DEPCS_SANITIZE=ON >/dev/null
cmake --build build-asan -j "$jobs"
echo "== tests under ASan + UBSan =="
(cd build-asan &&
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
        ctest --output-on-failure)

# scripts/run.sh builds with -O3, where the compiler sees more (and warns more): keep it green.
echo "== build (Release, as scripts/run.sh) =="
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DEPCS_TESTS=OFF >/dev/null
cmake --build build-release -j "$jobs"

echo "== format =="
git ls-files '*.c' '*.h' | xargs clang-format --dry-run -Werror
echo "format: clean"
