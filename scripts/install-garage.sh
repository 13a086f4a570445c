#!/usr/bin/env bash
# Garage, the distributed S3-compatible store the S3 tests run on (tests/e2e/garage.sh
# starts a 3-node cluster of it), built from crates.io with `cargo install --locked` when
# this machine does not have this version yet: about 10 minutes of compiling on 2 cores,
# once per machine (the binary stays in ~/.cargo/bin). Its own target directory, at low
# priority, so it can build beside berth's own build.
set -euo pipefail
version=${GARAGE_VERSION:-2.5.0}
bin=$(command -v garage || echo "$HOME/.cargo/bin/garage")
if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "cargo:$version"; then
  echo "garage: $bin ($version)"
  exit 0
fi
echo "garage: building $version with cargo install --locked (once per machine)"
env -u RUSTC_WORKSPACE_WRAPPER -u CLIPPY_ARGS \
  CARGO_TARGET_DIR=${GARAGE_TARGET_DIR:-$HOME/.cache/berth/garage-target} \
  nice -n 10 cargo install --locked --quiet "garage@$version"
"$HOME/.cargo/bin/garage" --version
