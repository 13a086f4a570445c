#!/usr/bin/env bash
# Builds the fuzz targets (fuzz/: libFuzzer through libfuzzer-sys) and runs each one for a
# bounded time, starting from its committed corpus (fuzz/corpus/<target>/).
#
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]     SECONDS per target, default 30; all targets
#
# The build is what `cargo fuzz build` does (coverage instrumentation, --cfg fuzzing, debug
# assertions and overflow checks in an optimized build), done with plain cargo so that
# nothing has to be installed first. It works on the stable toolchain as it is; only
# FUZZ_SANITIZER=address (AddressSanitizer, `-Zsanitizer`) needs RUSTC_BOOTSTRAP=1, which
# is then set for that build alone. Without a sanitizer the Rust code still has every
# bounds check, and berth forbids unsafe code.
#
# New inputs a run finds go to $FUZZ_TARGET_DIR/corpus/<target>/, never into the committed
# corpus; a crash leaves its input in $FUZZ_TARGET_DIR/artifacts/<target>/ and makes the
# script exit 1 after the other targets have run. To keep a crash as a regression case,
# copy its input to fuzz/corpus/<target>/ (tests/fuzz_corpus.rs then runs it in the normal
# test suite). Environment: FUZZ_TARGET_DIR (default fuzz/target), FUZZ_SANITIZER
# (none|address, default none), FUZZ_TIMEOUT (seconds one input may take, default 10),
# FUZZ_PROFILE (release, the default, or quick: opt-level 1, built in less time, for CI).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-30}
shift || true
if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for f in fuzz/fuzz_targets/*.rs; do
    targets+=("$(basename "$f" .rs)")
  done
fi
dir=$(realpath -m "${FUZZ_TARGET_DIR:-fuzz/target}")
sanitizer=${FUZZ_SANITIZER:-none}
timeout=${FUZZ_TIMEOUT:-10}
profile=${FUZZ_PROFILE:-release}
host=$(rustc -vV | sed -n 's/^host: //p')

# The flags cargo-fuzz passes. --target keeps them off build scripts and proc macros.
flags="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
flags+=" -Cllvm-args=-sanitizer-coverage-inline-8bit-counters"
flags+=" -Cllvm-args=-sanitizer-coverage-pc-table"
flags+=" -Cllvm-args=-sanitizer-coverage-trace-compares"
flags+=" --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
case $sanitizer in
  none) ;;
  address)
    flags+=" -Zsanitizer=address"
    export RUSTC_BOOTSTRAP=1
    dir+=/asan
    ;;
  *) echo "FUZZ_SANITIZER must be none or address" >&2; exit 2 ;;
esac

mkdir -p "$dir/logs"
echo "fuzz: building ${#targets[@]} targets (profile $profile, sanitizer $sanitizer) in $dir"
start=$SECONDS
if ! env -u RUSTC_WORKSPACE_WRAPPER -u CLIPPY_ARGS RUSTFLAGS="$flags" \
    cargo build --locked --profile "$profile" --manifest-path fuzz/Cargo.toml --target "$host" \
    --target-dir "$dir" --bins >"$dir/logs/build.log" 2>&1; then
  tail -n 60 "$dir/logs/build.log"
  echo "fuzz: building the targets failed" >&2
  exit 1
fi
echo "fuzz: built in $((SECONDS - start)) s"

failed=()
printf '%-20s %6s %10s %9s %8s  %s\n' target seconds execs exec/s corpus result
for t in "${targets[@]}"; do
  bin=$dir/$host/$profile/$t
  seeds=fuzz/corpus/$t
  work=$dir/corpus/$t
  artifacts=$dir/artifacts/$t
  log=$dir/logs/$t.log
  mkdir -p "$work" "$artifacts"
  dict=()
  [ -f "fuzz/dict/$t.dict" ] && dict=("-dict=fuzz/dict/$t.dict")
  began=$SECONDS
  result=ok
  if ! "$bin" -max_total_time="$seconds" -timeout="$timeout" -print_final_stats=1 \
      -artifact_prefix="$artifacts/" "${dict[@]}" "$work" "$seeds" >"$log" 2>&1; then
    result="FAILED: $(ls -t "$artifacts" | head -n 1)"
    failed+=("$t")
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  files=$(find "$work" "$seeds" -type f | wc -l)
  printf '%-20s %6s %10s %9s %8s  %s\n' "$t" "$((SECONDS - began))" "${execs:-?}" \
    "${rate:-?}" "$files" "$result"
done

for t in "${failed[@]}"; do
  echo
  echo "== $t: the end of $dir/logs/$t.log"
  grep -v '^#[0-9]' "$dir/logs/$t.log" | tail -n 40
  echo "inputs: $dir/artifacts/$t/ (replay: $dir/$host/$profile/$t FILE)"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets ran ${seconds} s each without a failure"
