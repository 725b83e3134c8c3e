#!/usr/bin/env bash
# Runs the fuzz targets in fuzz/ (cargo-fuzz, libFuzzer) one after another, each for
# FUZZ_SECONDS (default 60), starting from the committed seeds in fuzz/corpus/<target>/.
# Inputs libFuzzer finds go to fuzz/target/corpus/<target>/ (not committed); a crash leaves its
# input in fuzz/artifacts/<target>/ and a `cargo fuzz tmin` command to minimize it. Exits
# non-zero when any target crashed, after running the others.
#
# Usage: scripts/fuzz.sh [TARGET...]     TARGET: token jwks config discovery shared_records
#                                                (default: all of them)
# Needs the nightly toolchain (installed here when missing) and cargo-fuzz (likewise).
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-60}
ALL_TARGETS=(token jwks config discovery shared_records)

say() { echo "fuzz: $*"; }

if ! rustup toolchain list | grep -q '^nightly'; then
    say "installing the nightly toolchain (libFuzzer's instrumentation needs it)"
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    say "installing cargo-fuzz"
    cargo install cargo-fuzz
fi

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${ALL_TARGETS[@]}")
root=$(pwd)
mkdir -p fuzz/target/logs
failed=()
for target in "${targets[@]}"; do
    seeds="$root/fuzz/corpus/$target"
    found="$root/fuzz/target/corpus/$target"
    log="$root/fuzz/target/logs/$target.log"
    [ -d "$seeds" ] || { say "no seed corpus $seeds (is '$target' a target?)"; exit 2; }
    mkdir -p "$found"
    say "$target for ${FUZZ_SECONDS}s (log: fuzz/target/logs/$target.log)"
    # The first corpus directory receives new inputs, so the committed seeds stay as they are.
    if (cd fuzz && cargo +nightly fuzz run "$target" "$found" "$seeds" -- \
        -max_total_time="$FUZZ_SECONDS" -print_final_stats=1) >"$log" 2>&1; then
        executions=$(awk '/stat::number_of_executed_units/ { print $2 }' "$log" | tail -n 1)
        say "$target: no crash, ${executions:-?} executions"
    else
        failed+=("$target")
        say "$target: FAILED; the end of its log:"
        tail -n 40 "$log"
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    say "crashed: ${failed[*]} (inputs in fuzz/artifacts/)"
    exit 1
fi
