#!/usr/bin/env bash
# Builds berth and runs it with its built-in defaults: plain HTTP on 127.0.0.1:5000,
# store in ./berth-data. Extra arguments go to `berth serve` (e.g. -c appliance.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh --build-only
cargo build --release --locked
exec target/release/berth serve "$@"
