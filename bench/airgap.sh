#!/usr/bin/env bash
# bench/airgap.sh: `berth export` / `berth import` beside skopeo doing the same job, on one
# image set of 20 layers (BENCH_IMAGE_MB in all) held by a berth on loopback:
#   export   berth export --out DIR repo:tag      vs  skopeo copy docker://berth/... oci:DIR
#   import   berth import DIR into an empty store vs  skopeo copy oci:DIR docker://<empty berth>
# Each is timed and its peak RSS taken (the tool's own process: for skopeo's import the
# receiving berth's work is not counted in the RSS, only in the time). Ratios are
# skopeo / berth (above 1 = berth better), reported, not asserted.
#
#   bash bench/airgap.sh [--quick] [--berth PATH] [--out FILE]
#   BENCH_IMAGE_MB=2048/64   BENCH_KEEP=1 keeps the temp dir
set -euo pipefail
. "$(dirname "$0")/common.sh" "$@"
if [ "$QUICK" = 1 ]; then : "${BENCH_IMAGE_MB:=64}"; else : "${BENCH_IMAGE_MB:=2048}"; fi
: "${BENCH_KEEP:=0}"
command -v skopeo >/dev/null || { echo "bench: needs skopeo (apt-get install skopeo)" >&2; exit 1; }

T=$(mktemp -d "${TMPDIR:-/tmp}/berth-bench-airgap.XXXXXX")
SERVERS=()
cleanup() {
    local p
    for p in "${SERVERS[@]}"; do kill -TERM "-$p" 2>/dev/null || true; done
    for p in "${SERVERS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ "$BENCH_KEEP" = 1 ]; then log "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
serve() { # NAME STORE: a berth on a free port; sets URL
    local port
    port=$("${LIB[@]}" free-port)
    env BERTH__HTTP__LISTEN="[\"127.0.0.1:$port\"]" BERTH__STORAGE__ROOT="$2" \
        BERTH__STATE__DIR="$2.state" BERTH__HTTP__ADMIN_LISTEN="[]" BERTH__LOG__LEVEL=warn \
        setsid "$BERTH_BIN" serve >"$T/$1.log" 2>&1 &
    SERVERS+=("$!")
    URL=http://127.0.0.1:$port
    local i
    for ((i = 0; i < 300; i++)); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$URL/v2/")" = 200 ] && return 0
        sleep 0.1
    done
    die "$1 not ready"
}
RES=$T/results.tsv
: >"$RES"
measure() { # WHO METRIC CMD...: wall seconds and the command's peak RSS (KiB) into $RES
    local who=$1 metric=$2
    shift 2
    python3 - "$who" "$metric" "$RES" "$@" <<'EOF' || die "$1 $2 failed"
import resource, subprocess, sys, time
who, metric, res, cmd = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
t = time.monotonic()
r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
secs = time.monotonic() - t
if r.returncode != 0:
    sys.stderr.write(r.stderr.decode(errors="replace")[-2000:])
    sys.exit(1)
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
with open(res, "a") as f:
    f.write(f"{who}\t{metric}.seconds\t{secs}\n{who}\t{metric}.rss_kib\t{rss}\n")
EOF
}

log "an image of 20 layers, ${BENCH_IMAGE_MB} MiB in all"
serve source "$T/source"
SRC=$URL
files=()
for i in $(seq 1 20); do files+=("$T/layer.$i"); done
"${LIB[@]}" gen --size $((BENCH_IMAGE_MB * (1 << 20) / 20)) "${files[@]}"
"${LIB[@]}" push-image --base "$SRC" --repo bench/set --tag v1 "${files[@]}" >/dev/null
rm -f "${files[@]}"
sync

src_env=(env BERTH__STORAGE__ROOT="$T/source" BERTH__STATE__DIR="$T/source.state")
log "export: berth export, then skopeo copy to oci:"
measure berth export "${src_env[@]}" "$BERTH_BIN" export --out "$T/bx" bench/set:v1
measure skopeo export skopeo --insecure-policy copy -q --src-tls-verify=false \
    "docker://${SRC#http://}/bench/set:v1" "oci:$T/sx:v1"

log "import: berth import into an empty store, then skopeo copy from oci: into an empty berth"
measure berth import env BERTH__STORAGE__ROOT="$T/bi" BERTH__STATE__DIR="$T/bi.state" \
    "$BERTH_BIN" import "$T/bx"
serve sink "$T/si"
measure skopeo import skopeo --insecure-policy copy -q --dest-tls-verify=false \
    "oci:$T/sx:v1" "docker://${URL#http://}/bench/set:v1"

python3 - "$RES" "$BENCH_IMAGE_MB" >"$T/table.md" <<'EOF'
import sys
res = {}
for line in open(sys.argv[1]):
    who, metric, value = line.rstrip("\n").split("\t")
    res[(who, metric)] = float(value)
print(f"Air-gap transfer: berth export/import vs skopeo copy, {sys.argv[2]} MiB in 20 layers "
      "(ratio = skopeo / berth, above 1 = berth better)")
print()
print("| workload | berth | skopeo | ratio |")
print("|---|---|---|---|")
for op in ("export", "import"):
    b, s = res[("berth", f"{op}.seconds")], res[("skopeo", f"{op}.seconds")]
    print(f"| {op}, s | {b:.2f} | {s:.2f} | {s / b:.2f} |")
    b, s = res[("berth", f"{op}.rss_kib")] / 1024, res[("skopeo", f"{op}.rss_kib")] / 1024
    print(f"| {op}, peak RSS MiB | {b:.0f} | {s:.0f} | {s / b:.2f} |")
EOF
cat "$T/table.md"
[ -z "$OUT" ] || cp "$T/table.md" "$OUT"
