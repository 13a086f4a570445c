#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, unit and integration tests
# (cargo nextest), then the end-to-end suites with real clients (skopeo, podman, umoci,
# curl, docker-registry, Garage and HAProxy), all against one debug build of the binary;
# the fuzz targets meanwhile, in the background (scripts/fuzz.sh).
#
# One compile does both the lints and the binaries: clippy-driver compiles our own crate
# (RUSTC_WORKSPACE_WRAPPER, as `cargo clippy` does) but with code generation, so the
# dependencies are built once instead of once for `cargo clippy` and once for the tests.
# The clients the end-to-end suites need are installed in the background meanwhile.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh --build-only

# The fuzz targets (fuzz/, their own flags and target directory) build and run for a
# short budget each in the background, at the lowest priority, while everything below
# runs: CPU the suites leave idle. Waited for at the end. FUZZ_SECONDS=0 skips it.
fuzz_seconds=${FUZZ_SECONDS:-30}
fuzz_log=$(mktemp)
fuzz_pid=
if [ "$fuzz_seconds" != 0 ]; then
  echo "== fuzz: building and running in the background (${FUZZ_TARGET_DIR:-fuzz/target}, ${fuzz_seconds} s per target)"
  FUZZ_PROFILE=quick setsid nice -n 15 bash scripts/fuzz.sh "$fuzz_seconds" >"$fuzz_log" 2>&1 &
  fuzz_pid=$!
  # Its own process group: ended with this script, whichever way this script ends.
  trap 'kill -- "-$fuzz_pid" 2>/dev/null || true' EXIT
fi

deps_log=$(mktemp)
bash scripts/deps.sh >"$deps_log" 2>&1 &
deps_pid=$!

# Garage (the S3 store of the S3 suites) builds once per machine, in the background and
# at low priority, while berth builds and its other tests run; waited for before the S3
# contract run below.
garage_log=$(mktemp)
bash scripts/install-garage.sh >"$garage_log" 2>&1 &
garage_pid=$!

echo "== fmt"
cargo fmt --all -- --check

driver=$(dirname "$(rustup which rustc 2>/dev/null || command -v rustc)")/clippy-driver
echo "== build with clippy lints (-D warnings)"
if [ -x "$driver" ]; then
  export RUSTC_WORKSPACE_WRAPPER="$driver"
  export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
else
  echo "clippy-driver not found next to rustc; running cargo clippy separately"
  cargo clippy --locked --all-targets -- -D warnings
fi
cargo build --locked --all-targets

echo "== unit and integration tests"
if ! wait "$deps_pid"; then
  cat "$deps_log"
  echo "installing the test clients failed" >&2
  exit 1
fi
cat "$deps_log"

# The packages (and the container image, made from the same binary) need a release
# build and two cargo subcommands (cargo-deb,
# cargo-generate-rpm): minutes of compiling that run, at low priority and in their own
# target directory, while the tests below mostly wait on clients and servers. Without the
# clippy wrapper: that is for our debug build only.
echo "== packages: building in the background (target/pkg)"
pkg_out=$(mktemp)
pkg_err=$(mktemp)
env -u RUSTC_WORKSPACE_WRAPPER -u CLIPPY_ARGS PKG_TARGET_DIR=target/pkg \
  nice -n 10 bash packaging/build.sh >"$pkg_out" 2>"$pkg_err" &
pkg_pid=$!

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast
else
  cargo test --locked --no-fail-fast
fi
echo "== the storage contract on S3 (a 3-node Garage cluster)"
garage_waited=$SECONDS
if ! wait "$garage_pid"; then
  cat "$garage_log"
  echo "building Garage failed" >&2
  exit 1
fi
cat "$garage_log"
echo "garage: waited $((SECONDS - garage_waited)) s for its build"
garage_dir=$(mktemp -d)
trap 'bash tests/e2e/garage.sh stop "$garage_dir" >/dev/null 2>&1 || true; [ -z "$fuzz_pid" ] || kill -- "-$fuzz_pid" 2>/dev/null || true' EXIT
bash tests/e2e/garage.sh start "$garage_dir"
(
  set -a
  . "$garage_dir/env"
  set +a
  BERTH_S3_REQUIRED=1 cargo nextest run --locked --no-fail-fast --lib s3
)
bash tests/e2e/garage.sh stop "$garage_dir"
rm -rf "$garage_dir"
echo "== end-to-end (real clients)"
BERTH_BIN="$PWD/target/debug/berth" bash tests/e2e/run-all.sh
echo "== benchmark tool (parsers and table)"
/usr/bin/python3 -m unittest discover -s bench -p 'test_*.py'
echo "== packages (.deb, .rpm, image): contents, lintian, unit, install and run, upgrade under load, the image"
if ! wait "$pkg_pid"; then
    tail -n 50 "$pkg_err"
    echo "building the packages failed" >&2
    exit 1
fi
eval "$(grep '^BERTH_' "$pkg_out")"
BERTH_DEB=$BERTH_DEB BERTH_RPM=$BERTH_RPM BERTH_OCI=$BERTH_OCI \
  bash tests/e2e/run-all.sh packaging upgrade image
echo "== benchmark smoke run (--quick, release build; ratios reported, not asserted)"
bash bench/run.sh --quick --berth "$PWD/target/release/berth"
bash bench/mirror.sh --quick --berth "$PWD/target/release/berth"
bash bench/airgap.sh --quick --berth "$PWD/target/release/berth"
bash bench/ui.sh --quick --berth "$PWD/target/release/berth"
if [ -n "$fuzz_pid" ]; then
  echo "== fuzz (started in the background)"
  fuzz_status=0
  waited=$SECONDS
  wait "$fuzz_pid" || fuzz_status=$?
  cat "$fuzz_log"
  echo "fuzz: waited $((SECONDS - waited)) s for it at the end"
  if [ "$fuzz_status" != 0 ]; then
    echo "fuzzing found a failure (inputs in fuzz/target/artifacts/; see fuzz/README.md)" >&2
    exit 1
  fi
fi
