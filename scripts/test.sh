#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine and runs every test: the unit and integration suites in a
# normal build, then again under AddressSanitizer + UndefinedBehaviorSanitizer, then the tests
# of threaded code under ThreadSanitizer, then the Release build of scripts/run.sh and the format
# check. Prints how long each stage took. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
jobs=$(nproc)

# Each stage's title, and when one ends, how long it took.
stage_name=
stage_started=$SECONDS
stage() {
    if [ -n "$stage_name" ]; then
        echo "-- $stage_name: $((SECONDS - stage_started)) s"
    fi
    stage_name=$1
    stage_started=$SECONDS
    if [ -n "$stage_name" ]; then
        echo "== $stage_name =="
    fi
}

stage "build (RelWithDebInfo)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$jobs"
stage "tests"
(cd build && ctest --output-on-failure)

stage "build (ASan + UBSan)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DEPCS_SANITIZE=ON >/dev/null
cmake --build build-asan -j "$jobs"
stage "tests under ASan + UBSan"
(cd build-asan &&
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
        ctest --output-on-failure)

# ThreadSanitizer on the tests labelled `threads` (tests/CMakeLists.txt): the unit tests of the
# decision log (its writer thread), the case store (its hand-over to the writer) and the keys
# (rate buckets all workers take from), and every integration suite, since each epcsd runs
# two workers, the decision log's writer and journal, libuv's pool (case store, exports, the
# sweep) and the rules watch. The other unit tests run one thread and would only cost time.
# All of them take about 6 minutes on a quiet 2-core machine (TSan slows epcsd five to fifteen
# times), well within CI's budget. RelWithDebInfo: TSan's own advice is -O1 or more.
# Each process stops at its first report (halt_on_error=1) and writes it to
# build-tsan/tsan-reports/ (TSAN_OPTIONS in tests/CMakeLists.txt); any report there fails the
# stage, also one from an epcsd that its suite only killed. tests/tsan.supp says what is
# suppressed and why.
stage "build (ThreadSanitizer)"
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEPCS_SANITIZE_THREAD=ON >/dev/null
cmake --build build-tsan -j "$jobs"
stage "tests under ThreadSanitizer"
rm -rf build-tsan/tsan-reports
mkdir -p build-tsan/tsan-reports
tsan_status=0
(cd build-tsan && ctest -L threads --output-on-failure) || tsan_status=$?
reports=$(find build-tsan/tsan-reports -type f | sort)
if [ -n "$reports" ]; then
    for report in $reports; do
        echo "---- $report"
        cat "$report"
    done
    echo "tsan: $(echo "$reports" | wc -l) report(s) in build-tsan/tsan-reports" >&2
    tsan_status=1
fi
if [ "$tsan_status" -ne 0 ]; then
    exit "$tsan_status"
fi
echo "tsan: no report"

# scripts/run.sh builds with -O3, where the compiler sees more (and warns more): keep it green.
stage "build (Release, as scripts/run.sh)"
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DEPCS_TESTS=OFF >/dev/null
cmake --build build-release -j "$jobs"

stage "format"
git ls-files '*.c' '*.h' | xargs clang-format --dry-run -Werror
echo "format: clean"
stage ""
echo "test.sh: every stage passed in $SECONDS s"
