#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, unit and integration tests
# (cargo nextest), then the end-to-end suites with real clients (skopeo, podman, umoci,
# curl, docker-registry), all against one debug build of the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh

echo "== fmt"
cargo fmt --all -- --check
echo "== clippy"
cargo clippy --locked --all-targets -- -D warnings
echo "== build"
cargo build --locked --all-targets
echo "== unit and integration tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast
else
  cargo test --locked --no-fail-fast
fi
echo "== end-to-end (real clients)"
BERTH_BIN="$PWD/target/debug/berth" bash tests/e2e/run-all.sh
