#!/usr/bin/env bash
# Runs each named fuzz target for $FUZZ_RUNS executions (libFuzzer's -runs), starting from
# the committed seeds and regression inputs, and prints one line per target with its
# executions and speed. A crash or a broken invariant fails the script; libFuzzer writes the
# input under fuzz/artifacts/<target>/, which then belongs in fuzz/regressions/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${FUZZ_RUNS:?}" "${CARGO_FUZZ:?}" "${FUZZ_TARGET_DIR:?}"
# cargo-fuzz is a cargo subcommand: put it on PATH for `cargo fuzz`.
export PATH="$(dirname "$CARGO_FUZZ"):$PATH"
# The instrumented build must not share the normal builds' target dir (different flags).
unset CARGO_TARGET_DIR
summary=()
for target in "$@"; do
    corpus="fuzz/corpus/$target"
    mkdir -p "$corpus" "fuzz/seeds/$target" "fuzz/regressions/$target"
    # Regression inputs first, once each: every past crash must stay fixed.
    if compgen -G "fuzz/regressions/$target/*" >/dev/null; then
        cargo fuzz run --sanitizer none --target-dir "$FUZZ_TARGET_DIR" "$target" \
            fuzz/regressions/"$target"/* -- -runs=0 2>&1 | tail -n 3
    fi
    dict=()
    if [[ -f "fuzz/dicts/$target.dict" ]]; then dict=(-dict="fuzz/dicts/$target.dict"); fi
    log="$(mktemp)"
    start=$(date +%s)
    if ! cargo fuzz run --sanitizer none --target-dir "$FUZZ_TARGET_DIR" "$target" \
        "$corpus" "fuzz/seeds/$target" -- \
        "${dict[@]}" -runs="$FUZZ_RUNS" -max_len=65536 -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
        >"$log" 2>&1; then
        tail -n 40 "$log"
        echo "fuzz target $target FAILED; the input is under fuzz/artifacts/$target/" >&2
        exit 1
    fi
    secs=$(( $(date +%s) - start ))
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    line="$(printf '%-12s %12s executions  %8s exec/s  %5s s  no crash' "$target" "$execs" "$speed" "$secs")"
    # Printed at once too, so a later target's failure does not hide this one's count.
    echo "$line"
    summary+=("$line")
    rm -f "$log"
done
echo "--- all targets:"
printf '%s\n' "${summary[@]}"
