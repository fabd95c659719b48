#!/usr/bin/env bash
# Fuzzes what takes untrusted input with libFuzzer for a bounded time: builds tests/fuzz with
# clang under AddressSanitizer + UndefinedBehaviorSanitizer in build-fuzz/, then runs, one after
# the other, FUZZ_SECONDS (or the first argument; default 60) each:
#   fuzz_decode    the request decoders (msgpack and JSON, their prescans) and the JSON encoder
#   fuzz_check     the check path, as POST /v1/check decides, with the bundled rules
#   fuzz_patterns  epcs's Lua pattern functions against Lua's own string library
# Exits non-zero when one found a crash, a leak, a timeout or runaway memory, and names the
# input that did it. CI runs it after the test command (.ci/run).
#
# Each run starts from the kept corpus, tests/fuzz/corpus/<harness> (only read), and grows
# build-fuzz/corpus/<harness>. With --merge (after the seconds, or alone), a run that found
# nothing then adds to the kept corpus those grown inputs that reach code it does not
# (libFuzzer's -merge=1): commit tests/fuzz/corpus afterwards, so that every later run starts
# there. A fixed crash's input goes into the kept corpus by hand.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-60}
merge=0
for arg in "$@"; do
    case $arg in
    --merge) merge=1 ;;
    *) seconds=$arg ;;
    esac
done
if ! [[ $seconds =~ ^[1-9][0-9]*$ ]]; then
    echo "fuzz: the time per harness must be a whole number of seconds, got '$seconds'" >&2
    exit 2
fi

bash scripts/setup.sh
# clang, and libFuzzer (libclang_rt.fuzzer), which Debian 12 ships in libclang-rt-14-dev.
missing=()
for pkg in clang libclang-rt-14-dev; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=$([ "$(id -u)" -ne 0 ] && echo sudo || true)
    echo "fuzz: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -q
    $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

harnesses=(decode check patterns)
started=$SECONDS
echo "== build (clang, libFuzzer, ASan + UBSan) =="
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEPCS_SANITIZE=ON \
    -DEPCS_FUZZ=ON >/dev/null
cmake --build build-fuzz -j "$(nproc)" --target "${harnesses[@]/#/fuzz_}"
echo "fuzz: built in $((SECONDS - started)) s"

# No input of at most -max_len bytes needs more than a few MiB at once (the rule states are
# capped at 32 MiB): a larger single allocation means sizes are taken from the input unchecked,
# as msgpack-c does with a container's declared count, and is reported as a failure.
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:suppressions=$PWD/tests/fuzz/known_issues.supp
export LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp

# A harness's own flags: bodies up to the batch limit's order for the decoders and the check
# path; a subject and a pattern of up to a few hundred bytes, as rules write them.
flags_of() {
    case $1 in
    patterns) echo "-max_len=512 -dict=tests/fuzz/patterns.dict" ;;
    *) echo "-max_len=70000 -dict=tests/fuzz/epcs.dict" ;;
    esac
}

failed=()
summary=()
for harness in "${harnesses[@]}"; do
    name=fuzz_$harness
    corpus=build-fuzz/corpus/$harness
    kept=tests/fuzz/corpus/$harness
    artifacts=build-fuzz/artifacts/$harness
    log=build-fuzz/$name.log
    mkdir -p "$corpus" "$artifacts"
    echo "== $name: ${seconds} s (log: $log) =="
    status=0
    # shellcheck disable=SC2046 # flags_of gives separate flags
    "build-fuzz/tests/fuzz/$name" -max_total_time="$seconds" -timeout=10 -malloc_limit_mb=256 \
        $(flags_of "$harness") -artifact_prefix="$artifacts/" -print_final_stats=1 \
        "$corpus" "$kept" >"$log" 2>&1 || status=$?
    runs=$(sed -n 's/^Done \([0-9]*\) runs in .*/\1/p' "$log" | tail -n 1)
    coverage=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 || true)
    inputs=$(find "$corpus" -type f | wc -l)
    if [ "$status" -eq 0 ]; then
        line="$name: ok, ${runs:-0} runs in ${seconds} s, ${coverage:-cov: ?}, $inputs inputs in $corpus"
        if [ "$merge" -eq 1 ]; then
            before=$(find "$kept" -type f | wc -l)
            # shellcheck disable=SC2046
            "build-fuzz/tests/fuzz/$name" -merge=1 $(flags_of "$harness") "$kept" "$corpus" \
                >"build-fuzz/$name.merge.log" 2>&1
            line+=", $(($(find "$kept" -type f | wc -l) - before)) merged into $kept"
        fi
    else
        # libFuzzer names the input it stopped on: "Test unit written to <path>".
        artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
        reason=$(grep -m 1 -E 'ERROR: |runtime error:|^fuzz_[a-z]+: ' "$log" || true)
        line="$name: FAILED (exit $status): ${reason:-see $log}"
        line+=$'\n'"    input: ${artifact:-none written; see $log}"
        line+=$'\n'"    replay: build-fuzz/tests/fuzz/$name ${artifact:-<input>}"
        failed+=("$name")
        tail -n 40 "$log"
    fi
    echo "$line"
    summary+=("$line")
done

echo "== summary ($((SECONDS - started)) s) =="
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: ${failed[*]} found a problem (replay with UBSAN_OPTIONS and LSAN_OPTIONS as" \
        "set in scripts/fuzz.sh)"
    exit 1
fi
echo "fuzz: nothing found"
