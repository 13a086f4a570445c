# shellcheck shell=bash
# Shared helpers for berth's end-to-end suites. Source it from a suite:
#
#   SUITE=clients; . "$(dirname "$0")/lib.sh"
#
# It creates a private temp dir ($T), installs an EXIT trap that kills every process the
# suite started (berth, docker-registry, background curls) and removes $T, and keeps the
# pass/fail counters. Every check prints `ok - NAME` or `not ok - NAME (REASON)`; `summary`
# prints `N passed, M failed` and returns non-zero when anything failed.
#
# Environment:
#   BERTH_BIN      binary under test (default <repo>/target/debug/berth)
#   E2E_KEEP=1     keep the temp dir (its path is printed) for post-mortem
#   E2E_VERBOSE=1  print berth's log of every failing suite at the end

set -u
set -o pipefail

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BERTH_BIN=${BERTH_BIN:-$(cd "$E2E_DIR/../.." && pwd)/target/debug/berth}
SUITE=${SUITE:-e2e}
# The system interpreter: a pyenv shim costs over a second per call.
if [ -x /usr/bin/python3 ]; then PY=/usr/bin/python3; else PY=python3; fi
PASS=0
FAIL=0
_STARTED_PIDS=()
_LOG_SEQ=0

T=$(mktemp -d "${TMPDIR:-/tmp}/berth-e2e-${SUITE}.XXXXXX")
export T

# ---------------------------------------------------------------- cleanup

_e2e_cleanup() {
    local p
    for p in "${_STARTED_PIDS[@]}"; do
        if proc_alive "$p"; then
            disown "$p" 2>/dev/null
            kill -9 "$p" 2>/dev/null || true
        fi
    done
    for p in "${_STARTED_PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    if [ "${E2E_KEEP:-0}" = 1 ]; then
        echo "# kept temp dir $T"
    else
        rm -rf "$T"
    fi
}
trap _e2e_cleanup EXIT
trap 'exit 130' INT TERM

# Remembers a pid so the EXIT trap kills it.
track_pid() {
    _STARTED_PIDS+=("$1")
}

# True while the process exists and is not a zombie.
proc_alive() {
    local pid=$1 state
    [ -r "/proc/$pid/stat" ] || return 1
    state=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# wait_exit PID TRIES: waits (TRIES x 0.1 s) for PID to exit; reaps it and leaves its exit
# status in WAIT_RC (when PID is a child of this shell). 0 when it exited.
WAIT_RC=
wait_exit() {
    local pid=$1 tries=${2:-100} i
    WAIT_RC=
    for ((i = 0; i < tries; i++)); do
        if ! proc_alive "$pid"; then
            wait "$pid" 2>/dev/null
            WAIT_RC=$?
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# ---------------------------------------------------------------- tools

# ensure_tools CMD:PACKAGE...: installs with apt-get (as root) the package of every CMD that
# is missing. run-all.sh does it once up front and sets E2E_TOOLS_OK=1 for the suites, so
# parallel suites never race for dpkg's lock.
ensure_tools() {
    local missing=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "# installing missing tools: ${missing[*]}"
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "# cannot install ${missing[*]}: not root or no apt-get"
        return 1
    fi
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } \
        >"$T/apt.log" 2>&1; then
        sed 's/^/#   apt: /' "$T/apt.log" | tail -n 10
        return 1
    fi
}
E2E_TOOLS=(curl:curl sha256sum:coreutils /usr/bin/python3:python3 skopeo:skopeo podman:podman
    umoci:umoci docker-registry:docker-registry timeout:coreutils)

# ---------------------------------------------------------------- results

pass() {
    PASS=$((PASS + 1))
    echo "ok - $1"
}

fail() {
    FAIL=$((FAIL + 1))
    echo "not ok - $1 (${2:-failed})"
}

# check NAME CMD...: passes when CMD succeeds.
check() {
    local name=$1
    shift
    if "$@" >/dev/null 2>&1; then pass "$name"; else fail "$name" "command failed: $*"; fi
}

# check_run NAME OUT CMD...: passes when CMD succeeds, its output (both streams) in OUT;
# a failure shows OUT's last lines.
check_run() {
    local name=$1 out=$2
    shift 2
    if "$@" >"$out" 2>&1; then pass "$name"; else fail "$name" "$(tail -n 3 "$out" | tr '\n' ' ')"; fi
}

# check_eq NAME EXPECTED ACTUAL
check_eq() {
    if [ "$2" == "$3" ]; then
        pass "$1"
    else
        fail "$1" "expected '$2', got '$3'"
    fi
}

# check_ne NAME UNEXPECTED ACTUAL
check_ne() {
    if [ "$2" != "$3" ]; then
        pass "$1"
    else
        fail "$1" "did not expect '$3'"
    fi
}

# check_match NAME REGEX ACTUAL
check_match() {
    if [[ "$3" =~ $2 ]]; then
        pass "$1"
    else
        fail "$1" "'$3' does not match /$2/"
    fi
}

summary() {
    echo "$PASS passed, $FAIL failed"
    if [ "$FAIL" -gt 0 ] && [ "${E2E_VERBOSE:-0}" = 1 ]; then
        local f
        for f in "$T"/*.log; do
            [ -e "$f" ] || continue
            echo "# ---- $f (last 40 lines)"
            tail -n 40 "$f" | sed 's/^/# /'
        done
    fi
    [ "$FAIL" -eq 0 ]
}

# Stops the suite early (a precondition failed): counts it and prints the summary.
bail() {
    fail "$1" "${2:-precondition failed, stopping suite}"
    summary
    exit 1
}

# ---------------------------------------------------------------- small tools

free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

sha256_of() {
    sha256sum "$1" | cut -d' ' -f1
}

# JSON query with python3: json_get FILE EXPR, where EXPR is Python over `d`, e.g.
#   json_get out.json 'd["Digest"]'   json_get x.json '" ".join(sorted(d["tags"]))'
json_get() {
    "$PY" -c 'import json,sys
d=json.load(open(sys.argv[1]))
v=eval(sys.argv[2])
print(v if not isinstance(v,(dict,list)) else json.dumps(v, sort_keys=True))' "$1" "$2"
}

# random_file PATH BYTES: incompressible content, distinct each call.
random_file() {
    head -c "$2" /dev/urandom >"$1"
}

# ---------------------------------------------------------------- HTTP

# http METHOD URL [curl args...]: runs one request; prints the status code. The body is in
# $T/http.body and the response headers in $T/http.headers (of every response, 100 too).
http() {
    local method=$1 url=$2
    shift 2
    curl -sS -X "$method" -o "$T/http.body" -D "$T/http.headers" -w '%{http_code}' "$@" "$url" 2>"$T/http.err" || true
}

# hdr NAME [HEADERS_FILE]: value of the last header NAME (case-insensitive), CR stripped.
hdr() {
    local f=${2:-$T/http.headers}
    awk -v n="$(echo "$1" | tr 'A-Z' 'a-z')" 'BEGIN{FS=":"} {
        line=$0; sub(/\r$/, "", line);
        i=index(line, ":"); if (i==0) next;
        k=tolower(substr(line,1,i-1)); v=substr(line,i+1); sub(/^[ \t]+/, "", v);
        if (k==n) val=v } END { if (val!="") print val }' "$f"
}

# abs_url BASE LOCATION: the Location header as an absolute URL.
abs_url() {
    case "$2" in
    http://* | https://*) echo "$2" ;;
    /*) echo "$1$2" ;;
    *) echo "$1/$2" ;;
    esac
}

# wait_http URL [TRIES]: polls (TRIES x 0.1 s) until URL answers 200.
wait_http() {
    local url=$1 tries=${2:-100} i code
    for ((i = 0; i < tries; i++)); do
        code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$url" 2>/dev/null || true)
        [ "$code" = 200 ] && return 0
        sleep 0.1
    done
    return 1
}

# ---------------------------------------------------------------- berth

# start_berth ROOT [PORT] [VAR=VALUE...]: starts `berth serve` on 127.0.0.1:PORT (a free
# port when empty) with store ROOT and any extra environment; waits for GET /v2/ to answer
# 200 (BERTH_READY_CODE=401 for a berth with access control).
# Sets BERTH_PID, BERTH_PORT, BERTH_URL, BERTH_LOG. Returns non-zero if it did not come up.
start_berth() {
    local root=$1 port=${2:-}
    shift
    [ $# -gt 0 ] && shift
    [ -n "$port" ] || port=$(free_port)
    _LOG_SEQ=$((_LOG_SEQ + 1))
    BERTH_LOG="$T/berth.$_LOG_SEQ.log"
    BERTH_PORT=$port
    BERTH_URL="http://127.0.0.1:$port"
    env BERTH__HTTP__LISTEN="[\"127.0.0.1:$port\"]" \
        BERTH__STORAGE__ROOT="$root" \
        BERTH__HTTP__SHUTDOWN_GRACE="${BERTH_GRACE:-2s}" \
        BERTH__HTTP__ADMIN_LISTEN="[]" \
        NO_COLOR=1 \
        "$@" "$BERTH_BIN" serve >"$BERTH_LOG" 2>&1 &
    BERTH_PID=$!
    track_pid "$BERTH_PID"
    local i
    for ((i = 0; i < 100; i++)); do
        if ! proc_alive "$BERTH_PID"; then
            echo "# berth exited at startup; log:" && sed 's/^/#   /' "$BERTH_LOG"
            return 1
        fi
        if [ "$(curl -s -m 2 -o /dev/null -w '%{http_code}' "$BERTH_URL/v2/" 2>/dev/null)" = "${BERTH_READY_CODE:-200}" ]; then
            return 0
        fi
        sleep 0.1
    done
    echo "# berth did not answer on $BERTH_URL/v2/; log:" && sed 's/^/#   /' "$BERTH_LOG"
    return 1
}

# stop_berth [SIGNAL] [TRIES]: signals berth (TERM by default) and waits (TRIES x 0.1 s,
# default 150) for it to exit; SIGKILLs it if it does not. 0 when it exited by itself with
# status 0; its status is left in BERTH_EXIT.
BERTH_EXIT=
stop_berth() {
    local sig=${1:-TERM} tries=${2:-150}
    BERTH_EXIT=
    [ -n "${BERTH_PID:-}" ] || return 0
    kill -s "$sig" "$BERTH_PID" 2>/dev/null || true
    if wait_exit "$BERTH_PID" "$tries"; then
        BERTH_PID=
        BERTH_EXIT=$WAIT_RC
        [ "$BERTH_EXIT" = 0 ]
        return
    fi
    disown "$BERTH_PID" 2>/dev/null
    kill -9 "$BERTH_PID" 2>/dev/null || true
    wait_exit "$BERTH_PID" 50 || true
    BERTH_PID=
    return 1
}

# ---------------------------------------------------------------- docker-registry

# start_reference_registry ROOT: starts distribution's registry (2.8, Debian's
# docker-registry) on a loopback free port over the filesystem store ROOT, deletes enabled.
# Sets REG_PID, REG_PORT, REG_URL, REG_LOG.
start_reference_registry() {
    local root=$1 port
    port=$(free_port)
    _LOG_SEQ=$((_LOG_SEQ + 1))
    local cfg="$T/registry.$_LOG_SEQ.yml"
    REG_LOG="$T/registry.$_LOG_SEQ.log"
    REG_PORT=$port
    REG_URL="http://127.0.0.1:$port"
    cat >"$cfg" <<EOF
version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: $root
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
  secret: berth-e2e-not-a-secret
EOF
    docker-registry serve "$cfg" >"$REG_LOG" 2>&1 &
    REG_PID=$!
    track_pid "$REG_PID"
    if ! wait_http "$REG_URL/v2/" 100; then
        echo "# docker-registry did not come up; log:" && sed 's/^/#   /' "$REG_LOG"
        return 1
    fi
}

stop_reference_registry() {
    [ -n "${REG_PID:-}" ] || return 0
    kill -TERM "$REG_PID" 2>/dev/null || true
    if ! wait_exit "$REG_PID" 100; then
        disown "$REG_PID" 2>/dev/null
        kill -9 "$REG_PID" 2>/dev/null || true
        wait_exit "$REG_PID" 50 || true
    fi
    REG_PID=
}

# ---------------------------------------------------------------- images

# make_image LAYOUT TAG CONTENT [ARCH]: builds an OCI image with umoci into the layout dir
# LAYOUT (created when missing) under TAG: an empty base plus one layer holding
# /e2e/content.txt = CONTENT and a 64 KiB random file, then a second layer with 1 MiB of
# random bytes, so every image has two distinct layers.
# ARCH (e.g. arm64) sets the config's architecture.
make_image() {
    local layout=$1 tag=$2 content=$3 arch=${4:-}
    local bundle
    bundle=$(mktemp -d "$T/bundle.XXXXXX")
    rmdir "$bundle"
    {
        [ -e "$layout/index.json" ] || umoci init --layout "$layout"
        umoci new --image "$layout:$tag" &&
            umoci unpack --rootless --image "$layout:$tag" "$bundle" &&
            mkdir -p "$bundle/rootfs/e2e" &&
            printf '%s\n' "$content" >"$bundle/rootfs/e2e/content.txt" &&
            head -c 65536 /dev/urandom >"$bundle/rootfs/e2e/random.bin" &&
            umoci repack --image "$layout:$tag" "$bundle" &&
            head -c 1048576 /dev/urandom >"$bundle/rootfs/e2e/second-layer.bin" &&
            umoci repack --image "$layout:$tag" "$bundle" &&
            if [ -n "$arch" ]; then
                umoci config --image "$layout:$tag" --architecture "$arch" --tag "$tag"
            fi
    } >"$T/umoci.out" 2>&1
    local rc=$?
    rm -rf "$bundle"
    if [ $rc -ne 0 ]; then
        sed 's/^/#   umoci: /' "$T/umoci.out"
        return 1
    fi
}

# make_index LAYOUT NAME REF:ARCH...: adds to the OCI layout LAYOUT an image index tagged
# NAME whose children are the manifests tagged REF, each with platform linux/ARCH.
make_index() {
    "$PY" - "$@" <<'EOF'
import hashlib, json, sys
L, name, children = sys.argv[1], sys.argv[2], sys.argv[3:]
idx = json.load(open(f"{L}/index.json"))
byref = {m.get("annotations", {}).get("org.opencontainers.image.ref.name"): m for m in idx["manifests"]}
man = []
for child in children:
    ref, arch = child.split(":")
    d = dict(byref[ref]); d.pop("annotations", None)
    d["platform"] = {"architecture": arch, "os": "linux"}
    man.append(d)
body = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                   "manifests": man}).encode()
h = hashlib.sha256(body).hexdigest()
open(f"{L}/blobs/sha256/{h}", "wb").write(body)
idx["manifests"].append({"mediaType": "application/vnd.oci.image.index.v1+json",
    "digest": f"sha256:{h}", "size": len(body),
    "annotations": {"org.opencontainers.image.ref.name": name}})
json.dump(idx, open(f"{L}/index.json", "w"))
EOF
}

# layout_manifest LAYOUT TAG: digest of TAG's manifest in an OCI layout.
layout_manifest() {
    "$PY" - "$1" "$2" <<'EOF'
import json, sys
idx = json.load(open(sys.argv[1] + "/index.json"))
for m in idx["manifests"]:
    if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == sys.argv[2]:
        print(m["digest"])
        break
EOF
}

# layout_blob LAYOUT DIGEST: path of a blob in an OCI layout.
layout_blob() {
    echo "$1/blobs/${2%%:*}/${2#*:}"
}

# manifest_layers MANIFEST_FILE: the layer digests of an image manifest, one a line.
manifest_layers() {
    json_get "$1" '"\n".join(l["digest"] for l in d["layers"])'
}

# manifest_config MANIFEST_FILE: the config digest of an image manifest.
manifest_config() {
    json_get "$1" 'd["config"]["digest"]'
}

# verify_blob_dir DIR: every file named by a hex digest in DIR (an OCI layout's
# blobs/sha256 or a skopeo dir:) hashes to its name. Prints the bad ones; 0 when none.
verify_blob_dir() {
    local dir=$1 f name bad=0
    for f in "$dir"/*; do
        name=$(basename "$f")
        [[ "$name" =~ ^[0-9a-f]{64}$ ]] || continue
        if [ "$(sha256_of "$f")" != "$name" ]; then
            echo "$name"
            bad=1
        fi
    done
    return $bad
}

# verify_store_blobs ROOT: every blobs/sha256/xx/HEX/data under a distribution store
# hashes to HEX. Prints the bad ones; 0 when none.
verify_store_blobs() {
    local root=$1 f hex bad=0
    while IFS= read -r f; do
        hex=$(basename "$(dirname "$f")")
        if [ "$(sha256_of "$f")" != "$hex" ]; then
            echo "$hex"
            bad=1
        fi
    done < <(find "$root/docker/registry/v2/blobs" -type f -name data 2>/dev/null)
    return $bad
}

# store_blob_path ROOT DIGEST
store_blob_path() {
    local hex=${2#*:}
    echo "$1/docker/registry/v2/blobs/${2%%:*}/${hex:0:2}/$hex/data"
}

# ---------------------------------------------------------------- clients

SKOPEO=(skopeo --insecure-policy)

# podman with private vfs storage under $T; no daemon, no system state.
podman_cmd() {
    podman --root "$T/podman/root" --runroot "$T/podman/run" --tmpdir "$T/podman/tmp" \
        --storage-driver vfs --cgroup-manager=cgroupfs --events-backend=file "$@"
}

# blob_upload_monolithic BASE REPO FILE: POST ?digest= with the whole body; prints status.
blob_upload_monolithic() {
    local base=$1 repo=$2 file=$3 d
    d="sha256:$(sha256_of "$file")"
    http POST "$base/v2/$repo/blobs/uploads/?digest=$d" \
        -H 'Content-Type: application/octet-stream' --data-binary "@$file"
}

# blob_upload_post_put BASE REPO FILE: POST, then PUT <Location>?digest= with the whole
# body (the flow every registry supports); prints the PUT's status.
blob_upload_post_put() {
    local base=$1 repo=$2 file=$3 d up sep
    d="sha256:$(sha256_of "$file")"
    http POST "$base/v2/$repo/blobs/uploads/" >/dev/null
    up=$(abs_url "$base" "$(hdr Location)")
    case "$up" in *\?*) sep='&' ;; *) sep='?' ;; esac
    http PUT "$up${sep}digest=$d" -H 'Content-Type: application/octet-stream' --data-binary "@$file"
}

# ---------------------------------------------------------------- preconditions

if [ "${E2E_TOOLS_OK:-0}" != 1 ] && ! ensure_tools "${E2E_TOOLS[@]}"; then
    echo "not ok - the suite's tools are installed"
    echo "0 passed, 1 failed"
    exit 1
fi
if [ ! -x "$BERTH_BIN" ]; then
    echo "not ok - berth binary is executable ($BERTH_BIN)"
    echo "0 passed, 1 failed"
    exit 1
fi
