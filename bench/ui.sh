#!/usr/bin/env bash
# bench/ui.sh: how long the web UI takes to render a repository page with BENCH_TAGS tags
# (each a distinct image manifest), the repositories page, and a manifest page, measured
# with curl against a release berth on loopback (median of BENCH_REPEAT requests), beside
# the API's own tags/list as the floor. Reported, not asserted.
#
#   bash bench/ui.sh [--quick] [--berth PATH] [--out FILE]     BENCH_TAGS=1000/100
set -euo pipefail
. "$(dirname "$0")/common.sh" "$@"
if [ "$QUICK" = 1 ]; then : "${BENCH_TAGS:=100}" "${BENCH_REPEAT:=5}"; else : "${BENCH_TAGS:=1000}" "${BENCH_REPEAT:=21}"; fi
T=$(mktemp -d "${TMPDIR:-/tmp}/berth-bench-ui.XXXXXX")
PID=
cleanup() { [ -z "$PID" ] || kill "$PID" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$T"; }
trap cleanup EXIT
port=$(python3 "$REPO/bench/lib.py" free-port)
BASE=http://127.0.0.1:$port
env BERTH__HTTP__LISTEN="[\"127.0.0.1:$port\"]" BERTH__STORAGE__ROOT="$T/store" \
    BERTH__STATE__DIR="$T/state" BERTH__HTTP__ADMIN_LISTEN="[]" BERTH__LOG__LEVEL=warn \
    "$BERTH_BIN" serve >"$T/berth.log" 2>&1 &
PID=$!
for ((i = 0; i < 300; i++)); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/v2/")" = 200 ] && break
    sleep 0.1
done
echo "bench: pushing $BENCH_TAGS tags to bench/tags" >&2
DIGEST=$(python3 - "$BASE" "$BENCH_TAGS" <<'PY'
import hashlib, http.client, json, sys, urllib.parse
base, n = sys.argv[1], int(sys.argv[2])
u = urllib.parse.urlsplit(base)
c = http.client.HTTPConnection(u.hostname, u.port)
def req(method, path, body=b"", headers={}):
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse(); r.read()
    assert r.status in (201, 202), (method, path, r.status)
layer = b"bench layer" * 100
ld = "sha256:" + hashlib.sha256(layer).hexdigest()
req("POST", f"/v2/bench/tags/blobs/uploads/?digest={ld}", layer)
last = None
for i in range(n):
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": {"i": str(i)}}}).encode()
    cd = "sha256:" + hashlib.sha256(cfg).hexdigest()
    req("POST", f"/v2/bench/tags/blobs/uploads/?digest={cd}", cfg)
    m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": len(cfg)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": len(layer)}]}).encode()
    req("PUT", f"/v2/bench/tags/manifests/t{i:05d}", m, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    last = "sha256:" + hashlib.sha256(m).hexdigest()
print(last)
PY
)
median() { # URL: median time_total in ms of BENCH_REPEAT GETs
    local i
    for ((i = 0; i < BENCH_REPEAT; i++)); do
        curl -s -o /dev/null -w '%{time_total}\n' "$1"
    done | sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]*1000}'
}
{
    echo "Web UI render times (curl time_total, median of $BENCH_REPEAT, loopback, release build)"
    echo
    echo "| page | ms |"
    echo "|---|---|"
    echo "| repository page with $BENCH_TAGS tags (/ui/r/bench/tags) | $(median "$BASE/ui/r/bench/tags") |"
    echo "| the API's tags/list of the same repository (the floor) | $(median "$BASE/v2/bench/tags/tags/list") |"
    echo "| repositories page (/ui/) | $(median "$BASE/ui/") |"
    echo "| manifest page (/ui/m/bench/tags@...) | $(median "$BASE/ui/m/bench/tags@$DIGEST") |"
} >"$T/table.md"
cat "$T/table.md"
[ -z "$OUT" ] || cp "$T/table.md" "$OUT"
