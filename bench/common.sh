# shellcheck shell=bash
# What the side benchmarks (mirror.sh, airgap.sh, ui.sh) share: their arguments
#   [--quick] [--berth PATH] [--out FILE]
# into QUICK, BERTH_BIN (default target/release/berth, checked) and OUT; REPO, LIB (the
# helpers in bench/lib.py), and log / die. Source it with the script's arguments:
#   . "$(dirname "$0")/common.sh" "$@"
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QUICK=0 BERTH_BIN="" OUT=""
while [ $# -gt 0 ]; do
    case $1 in
        --quick) QUICK=1 ;;
        --berth) BERTH_BIN=$2; shift ;;
        --out) OUT=$2; shift ;;
        *) echo "usage: bench/$(basename "$0") [--quick] [--berth PATH] [--out FILE]" >&2; exit 2 ;;
    esac
    shift
done
[ -n "$BERTH_BIN" ] || BERTH_BIN=$REPO/target/release/berth
[ -x "$BERTH_BIN" ] || { echo "bench: no berth binary at $BERTH_BIN (cargo build --release)" >&2; exit 1; }
LIB=(python3 "$REPO/bench/lib.py")
log() { printf 'bench: [%3ds] %s\n' "$SECONDS" "$*" >&2; }
die() { log "error: $*"; exit 1; }
