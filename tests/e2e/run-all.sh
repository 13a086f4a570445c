#!/usr/bin/env bash
# Runs berth's end-to-end suites in parallel (each picks its own free ports and temp dir),
# then prints each suite's output whole, one after the other, and the summed result:
#   N passed, M failed
# Exit status 1 when anything failed or a suite did not finish.
#
#   BERTH_BIN=/path/to/berth tests/e2e/run-all.sh            # all suites
#   tests/e2e/run-all.sh clients crash                       # some of them
#   E2E_SUITE_TIMEOUT=900                                    # seconds per suite (default)
set -u
DIR=$(cd "$(dirname "$0")" && pwd)
export BERTH_BIN=${BERTH_BIN:-$(cd "$DIR/../.." && pwd)/target/debug/berth}
SUITES=("$@")
[ ${#SUITES[@]} -gt 0 ] || SUITES=(clients compat crash crashloop replicas s3compat mirror airgap ui)
LIMIT=${E2E_SUITE_TIMEOUT:-900}

if [ ! -x "$BERTH_BIN" ]; then
    echo "not ok - berth binary is executable ($BERTH_BIN)"
    echo "0 passed, 1 failed"
    exit 1
fi

# Install missing tools once, before the suites run side by side.
if ! SUITE=tools bash -c ". '$DIR/lib.sh'"; then
    echo "0 passed, 1 failed"
    exit 1
fi
export E2E_TOOLS_OK=1

OUT=$(mktemp -d "${TMPDIR:-/tmp}/berth-e2e-run.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$OUT"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start=$(date +%s)
for s in "${SUITES[@]}"; do
    (
        t0=$(date +%s)
        timeout --kill-after=30 "$LIMIT" bash "$DIR/$s.sh" >"$OUT/$s.out" 2>&1
        echo $? >"$OUT/$s.rc"
        echo $(($(date +%s) - t0)) >"$OUT/$s.secs"
    ) &
    PIDS+=($!)
done
for p in "${PIDS[@]}"; do
    wait "$p"
done
PIDS=()
elapsed=$(($(date +%s) - start))

passed=0
failed=0
for s in "${SUITES[@]}"; do
    echo "# ================ $s ($(cat "$OUT/$s.secs" 2>/dev/null || echo ?) s)"
    cat "$OUT/$s.out"
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$OUT/$s.out" | tail -n 1)
    rc=$(cat "$OUT/$s.rc" 2>/dev/null || echo 1)
    if [ -n "$line" ]; then
        p=${line%% passed*}
        f=${line#*, }
        f=${f%% failed*}
        passed=$((passed + p))
        failed=$((failed + f))
        if [ "$f" -eq 0 ] && [ "$rc" -ne 0 ]; then
            echo "not ok - suite $s exited with status $rc despite no failed check"
            failed=$((failed + 1))
        fi
    else
        echo "not ok - suite $s did not finish with a summary line (exit status $rc; 124 = timed out after ${LIMIT}s)"
        failed=$((failed + 1))
    fi
done
echo "# ================ total"
echo "# suites: ${SUITES[*]}; wall-clock ${elapsed} s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
