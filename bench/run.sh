#!/usr/bin/env bash
# bench/run.sh: berth side by side with what a user would run instead (issue 4).
#
# Starts each contender in turn on loopback with a fresh store, runs the same workloads
# against it, stops it, and prints one table with a ratio column per pair:
#   berth                 plain HTTP
#   registry              Debian's docker-registry 2.8.2, plain HTTP
#   berth_tls             berth serving TLS with a test CA's certificate
#   nginx_registry        docker-registry behind Debian's nginx terminating TLS (same cert)
#   berth_s3              berth on a 3-node Garage cluster (tests/e2e/garage.sh), plain HTTP
#   registry_s3           docker-registry's s3 driver on the same cluster (redirects off,
#                         so both serve the bytes themselves)
#
#   berth_base            another berth binary (--baseline PATH), plain HTTP: an older
#                         build beside this one, to show a change made nothing slower
#
#   bash bench/run.sh [--quick] [--s3] [--berth PATH] [--baseline PATH]
#                     [--only berth,registry,...] [--out FILE]
#
# --s3 adds berth_s3 and registry_s3 (and Garage's own PUT/GET of the big blob with a
# stock client, curl --aws-sigv4, as the limit they are read against); it needs garage
# (scripts/install-garage.sh).
#
# Sizes and durations can be changed with environment variables (defaults: full / quick):
#   BENCH_BLOB_MB=1024/64         workloads 1-2: the big blob
#   BENCH_CHUNK_MB=16             workload 1: chunk size of the chunked push
#   BENCH_SECONDS=15/2            workload 3: length of each load-generator run
#   BENCH_CONNECTIONS=64          workload 3: concurrent connections
#   BENCH_PULLERS=100/16          workload 4: concurrent clients
#   BENCH_IMAGE_MB=200/10         workload 4: image size (10 layers)
#   BENCH_PUSHERS=32/8            workload 5: concurrent pushes
#   BENCH_PUSH_MB=50/4            workload 5: size of each pushed image
#   BENCH_REPEAT=3/1              workload 2: warm pulls (the median is shown)
#   BENCH_DD_MB=1024/64           machine limits: size of the disk write
#   BENCH_LOADGEN_CPU=1           CPU the load generators are pinned to ("" = none)
#   BENCH_KEEP=1                  keep the temp dir (logs, results.tsv) for a post-mortem
#
# Helper logic (clients, parsers, the RSS sampler, the table) is in bench/lib.py.
# Exits non-zero when a workload fails or berth answers any request with an error.

# Functions are called indirectly (the EXIT trap, "start_$who", measure), which the
# linter takes for unreachable code.
# shellcheck disable=SC2317
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# The system interpreter: the pyenv shim costs about a second per call.
PY=/usr/bin/python3
LIB=("$PY" "$HERE/lib.py")

QUICK=0 BERTH_BIN="" BASE_BIN="" ONLY="berth,registry,berth_tls,nginx_registry" OUT=""
while [ $# -gt 0 ]; do
    case $1 in
        --quick) QUICK=1 ;;
        --berth) BERTH_BIN=$2; shift ;;
        --only) ONLY=$2; shift ;;
        --baseline) BASE_BIN=$(realpath "$2"); ONLY="$ONLY,berth_base"; shift ;;
        --s3) ONLY="$ONLY,berth_s3,registry_s3" ;;
        --out) OUT=$2; shift ;;
        -h|--help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
for c in ${ONLY//,/ }; do
    case $c in berth|registry|berth_tls|nginx_registry|berth_s3|registry_s3|berth_base) ;;
        *) echo "bench: unknown contender $c" >&2; exit 2 ;; esac
done
wants() { [[ ",$ONLY," == *",$1,"* ]]; }

if [ "$QUICK" = 1 ]; then
    : "${BENCH_BLOB_MB:=64}" "${BENCH_SECONDS:=2}" "${BENCH_PULLERS:=16}" "${BENCH_IMAGE_MB:=10}"
    : "${BENCH_PUSHERS:=8}" "${BENCH_PUSH_MB:=4}" "${BENCH_DD_MB:=64}" "${BENCH_REPEAT:=1}"
else
    : "${BENCH_BLOB_MB:=1024}" "${BENCH_SECONDS:=15}" "${BENCH_PULLERS:=100}" "${BENCH_IMAGE_MB:=200}"
    : "${BENCH_PUSHERS:=32}" "${BENCH_PUSH_MB:=50}" "${BENCH_DD_MB:=1024}" "${BENCH_REPEAT:=3}"
fi
: "${BENCH_CHUNK_MB:=16}" "${BENCH_CONNECTIONS:=64}" "${BENCH_LOADGEN_CPU=1}" "${BENCH_KEEP:=0}"
MiB=$((1 << 20))
# Any single step (one push, one load run, one fleet) is killed after this long.
STEP_LIMIT=$((QUICK ? 120 : 900))
# How long the idle CPU figures are measured.
IDLE_SECONDS=$((QUICK ? 1 : 3))

log() { printf 'bench: [%3ds] %s\n' "$SECONDS" "$*" >&2; }
die() { log "error: $*"; exit 1; }

NOTES=()
note() { NOTES+=("$*"); log "note: $*"; }
FAILURES=()
fail() { FAILURES+=("$*"); log "FAILED: $*"; }

# ---------------------------------------------------------------- the binary under test

if [ -z "$BERTH_BIN" ]; then
    BERTH_BIN=$REPO/target/release/berth
    [ -x "$BERTH_BIN" ] || BERTH_BIN=$REPO/target/debug/berth
fi
if wants berth || wants berth_tls || wants berth_s3; then
    [ -x "$BERTH_BIN" ] || die "no berth binary at $BERTH_BIN (cargo build --release)"
    if [[ $BERTH_BIN == */debug/* ]]; then
        log "##############################################################"
        log "WARNING: benchmarking a DEBUG build ($BERTH_BIN)."
        log "berth's figures mean nothing; build with cargo build --release."
        log "##############################################################"
        note "berth is a debug build ($BERTH_BIN): its figures mean nothing"
    fi
fi

# ---------------------------------------------------------------- tools

need=()
for pair in wrk:wrk h2load:nghttp2-client hey:hey nginx:nginx docker-registry:docker-registry \
            curl:curl openssl:openssl taskset:util-linux; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Debian starts nginx on :80 once installed; a policy-rc.d answering 101 forbids that.
    policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        policy=1
    fi
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" > /dev/null || install_rc=$?
    if [ "$policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
    [ "${install_rc:-0}" = 0 ] || die "apt-get install ${need[*]} failed"
fi

# ---------------------------------------------------------------- temp dir, cleanup

T=$(mktemp -d "${TMPDIR:-/tmp}/berth-bench.XXXXXX")
RESULTS=$T/results.tsv
# A private copy: a rebuild during the run must not change the binary under test.
if wants berth || wants berth_tls || wants berth_s3; then
    mkdir "$T/bin"
    cp "$BERTH_BIN" "$T/bin/berth"
    BERTH_UNDER_TEST=$BERTH_BIN BERTH_BIN=$T/bin/berth
fi
: > "$RESULTS"
SERVERS=()  # process-group leaders (setsid) of every server started

cleanup() {
    local p
    for p in "${SERVERS[@]}"; do stop_group "$p"; done
    [ ! -d "$T/garage" ] || bash "$REPO/tests/e2e/garage.sh" stop "$T/garage" >/dev/null 2>&1 || true
    if [ "$BENCH_KEEP" = 1 ]; then log "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

alive() { [ -d "/proc/$1" ] && ! grep -qE '^State:\s+[ZX]' "/proc/$1/status" 2>/dev/null; }

# SIGTERM to the whole group (nginx master and workers), then SIGKILL after 10 s.
stop_group() {
    local pid=$1 i
    alive "$pid" || return 0
    kill -TERM -- "-$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do alive "$pid" || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# start NAME CMD...: runs CMD in its own process group, logging to $T/NAME.log; sets PID.
start() {
    local name=$1; shift
    setsid "$@" > "$T/$name.log" 2>&1 &
    PID=$!
    SERVERS+=("$PID")
}

# wait_ready PID URL [curl options]: until URL answers (any HTTP status), 30 s at most.
wait_ready() {
    local pid=$1 url=$2 i; shift 2
    for ((i = 0; i < 300; i++)); do
        alive "$pid" || { tail -20 "$T"/*.log >&2; die "server $pid exited before it was ready"; }
        if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$@" "$url")" != 000 ]; then
            return 0
        fi
        sleep 0.1
    done
    die "$url not ready after 30 s"
}

free_port() { "${LIB[@]}" free-port; }
# Every helper run is bounded, so a hung server cannot hang the benchmark.
lib() { timeout -k 5 "$STEP_LIMIT" "${LIB[@]}" "$@"; }
# Load generators: bounded, and pinned to one CPU so runs are comparable.
loadgen() {
    local pin=()
    [ -z "$BENCH_LOADGEN_CPU" ] || pin=(taskset -c "$BENCH_LOADGEN_CPU")
    timeout -k 5 $((BENCH_SECONDS + 60)) "${pin[@]}" "$@"
}

load=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$load" 'BEGIN { exit !(l > 0.5) }'; then
    note "load average was $load at start: something else uses the CPUs, figures are noisy"
fi

# ---------------------------------------------------------------- machine limits

log "machine limits"
secs=$((QUICK ? 1 : 3))
openssl speed -mr -seconds "$secs" -bytes 16384 -evp sha256 > "$T/sha.txt" 2>/dev/null
lib parse speed "$T/sha.txt" --results "$RESULTS" --who machine --metric sha256
openssl speed -mr -seconds "$secs" -bytes 16384 -evp aes-128-gcm > "$T/aes.txt" 2>/dev/null
lib parse speed "$T/aes.txt" --results "$RESULTS" --who machine --metric aes128gcm
# The disk under the temp dir, where every store lives.
dd if=/dev/zero of="$T/dd.bin" bs=16M count=$((BENCH_DD_MB / 16)) conv=fsync 2> "$T/dd.txt"
rm -f "$T/dd.bin"
lib parse dd "$T/dd.txt" --results "$RESULTS" --who machine --metric disk_fsync

# ---------------------------------------------------------------- test data and certificates

log "making test data in $T"
D=$T/data
mkdir -p "$D"
# Two big blobs: a registry that already holds a blob may skip writing it again (berth
# does), so the chunked push must not repeat the monolithic one's bytes.
lib gen --size $((BENCH_BLOB_MB * MiB)) "$D/big.bin" "$D/chunked.bin"
BIG_DIGEST=sha256:$(sha256sum "$D/big.bin" | cut -d' ' -f1)
lib gen --size 4096 "$D/small.bin"
lib gen --size $((BENCH_IMAGE_MB * MiB / 10)) "$D"/layer{0..9}.bin
PUSH_LAYERS=()
for ((i = 0; i < BENCH_PUSHERS; i++)); do PUSH_LAYERS+=("$D/push$i.bin"); done
lib gen --size $((BENCH_PUSH_MB * MiB)) "${PUSH_LAYERS[@]}"

# A test CA and a leaf for 127.0.0.1 and localhost, served by berth and nginx alike.
C=$T/tls
mkdir -p "$C"
(
    cd "$C"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -keyout ca.key -out ca.crt -subj "/CN=berth bench CA" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout leaf.key -out leaf.csr -subj "/CN=localhost"
    printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=CA:FALSE" \
        "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" > leaf.ext
    openssl x509 -req -in leaf.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
        -extfile leaf.ext -out leaf.crt
) > "$T/openssl.log" 2>&1 || { cat "$T/openssl.log" >&2; die "making the test certificates"; }

# ---------------------------------------------------------------- contenders

# Each start_* sets BASE (URL), CURL_TLS (curl options), CA (for lib.py), HEY_HOST (for
# hey over TLS), STORE (the store root) and ROOTS (the server's process-group leaders:
# their trees are sampled for RSS, then stopped).

# berth_config DIR HTTP_LISTEN TLS_SECTION: a berth configuration file on stdout.
# shutdown_grace is short because SIGTERM waits out the whole grace even when nothing is
# in flight, which would only slow the benchmark down.
berth_config() {
    cat <<EOF
[http]
listen = [$2]
redirect_listen = []
admin_listen = []
shutdown_grace = "1s"
[tls]
$3
[storage]
root = "$1/store"
[state]
dir = "$1/state"
[log]
level = "warn"
EOF
}

# start_plain_berth NAME BINARY: a berth over plain HTTP with a fresh store.
start_plain_berth() {
    local dir=$T/$1 port; port=$(free_port)
    mkdir -p "$dir"
    berth_config "$dir" "\"127.0.0.1:$port\"" 'mode = "off"' > "$dir/berth.toml"
    start "$1" "$2" serve -c "$dir/berth.toml"
    BASE=http://127.0.0.1:$port CURL_TLS=() CA="" HEY_HOST=() ROOTS=("$PID") STORE=$dir/store
    wait_ready "$PID" "$BASE/v2/"
}
start_berth() { start_plain_berth berth "$BERTH_BIN"; }
start_berth_base() {
    [ -x "$BASE_BIN" ] || { echo "bench: berth_base needs --baseline PATH" >&2; exit 2; }
    start_plain_berth berth_base "$BASE_BIN"
}

start_berth_tls() {
    local dir=$T/berth_tls port; port=$(free_port)
    mkdir -p "$dir"
    berth_config "$dir" "" "mode = \"files\"
listen = [\"127.0.0.1:$port\"]
certificate = \"$C/leaf.crt\"
key = \"$C/leaf.key\"
ca = \"$C/ca.crt\"
hostnames = [\"localhost\", \"127.0.0.1\"]" > "$dir/berth.toml"
    start berth_tls "$BERTH_BIN" serve -c "$dir/berth.toml"
    BASE=https://127.0.0.1:$port CURL_TLS=(--cacert "$C/ca.crt") CA=$C/ca.crt ROOTS=("$PID")
    HEY_HOST=(-host localhost) STORE=$dir/store
    wait_ready "$PID" "$BASE/v2/" "${CURL_TLS[@]}"
}

# start_docker_registry NAME: sets RPID, RPORT and STORE.
start_docker_registry() {
    local dir=$T/$1; RPORT=$(free_port)
    mkdir -p "$dir"
    # Access logs off on every contender: berth at level warn logs none either.
    cat > "$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/store
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$RPORT
EOF
    start "$1" docker-registry serve "$dir/config.yml"
    RPID=$PID STORE=$dir/store
    wait_ready "$RPID" "http://127.0.0.1:$RPORT/v2/"
}

start_registry() {
    start_docker_registry registry
    BASE=http://127.0.0.1:$RPORT CURL_TLS=() CA="" HEY_HOST=() ROOTS=("$RPID")
}

# nginx as the distribution project's deployment guide configures it in front of
# registry:2, plus upstream keep-alive (the guide opens a connection per request; keeping
# them is the better setup, so berth is measured against that).
start_nginx_registry() {
    start_docker_registry nginx_registry
    local dir=$T/nginx port; port=$(free_port)
    mkdir -p "$dir"
    cat > "$dir/nginx.conf" <<EOF
daemon off;
user root;
worker_processes auto;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/client_body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;

    upstream docker-registry {
        server 127.0.0.1:$RPORT;
        keepalive 128;
    }
    map \$upstream_http_docker_distribution_api_version \$docker_distribution_api_version {
        '' 'registry/2.0';
    }
    server {
        listen 127.0.0.1:$port ssl http2;
        server_name localhost;
        ssl_certificate $C/leaf.crt;
        ssl_certificate_key $C/leaf.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:10m;

        client_max_body_size 0;
        chunked_transfer_encoding on;

        location /v2/ {
            add_header 'Docker-Distribution-Api-Version' \$docker_distribution_api_version always;
            proxy_pass http://docker-registry;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            proxy_set_header X-Real-IP \$remote_addr;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_read_timeout 900;
            proxy_request_buffering off;
            proxy_buffering off;
        }
    }
}
EOF
    start nginx nginx -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log"
    BASE=https://127.0.0.1:$port CURL_TLS=(--cacert "$C/ca.crt") CA=$C/ca.crt
    HEY_HOST=(-host localhost) ROOTS=("$PID" "$RPID")
    wait_ready "$PID" "$BASE/v2/" "${CURL_TLS[@]}"
}

# The S3 contenders share one Garage cluster, each under its own prefix.
start_garage() {
    [ -f "$T/garage/env" ] && return 0
    log "starting a 3-node Garage cluster"
    bash "$REPO/tests/e2e/garage.sh" start "$T/garage" > "$T/garage.log" 2>&1 ||
        { cat "$T/garage.log" >&2; die "garage did not start (scripts/install-garage.sh)"; }
    # shellcheck disable=SC1091
    . "$T/garage/env"
    export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
    # Garage's own speed with a stock client: the limit both S3 contenders are read against.
    local sig=(--aws-sigv4 "aws:amz:garage:s3" -u "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY"
        -H "x-amz-content-sha256: UNSIGNED-PAYLOAD")
    curl -sS --max-time "$STEP_LIMIT" "${sig[@]}" -T "$D/big.bin" -o /dev/null \
        -w '%{http_code} %{size_upload} %{time_total}\n' "$BERTH_S3_ENDPOINT/berth/raw/big" > "$T/s3put.txt"
    lib parse pull "$T/s3put.txt" --size $((BENCH_BLOB_MB * MiB)) --results "$RESULTS" --who machine --metric s3_put
    curl -sS --max-time "$STEP_LIMIT" "${sig[@]}" -o /dev/null \
        -w '%{http_code} %{size_download} %{time_total}\n' "$BERTH_S3_ENDPOINT/berth/raw/big" > "$T/s3get.txt"
    lib parse pull "$T/s3get.txt" --size $((BENCH_BLOB_MB * MiB)) --results "$RESULTS" --who machine --metric s3_get
}

start_berth_s3() {
    start_garage
    local dir=$T/berth_s3 port; port=$(free_port)
    mkdir -p "$dir"
    berth_config "$dir" "\"127.0.0.1:$port\"" 'mode = "off"' > "$dir/berth.toml"
    cat >> "$dir/berth.toml" <<EOF
[storage.s3]
endpoint = "$BERTH_S3_ENDPOINT"
region = "garage"
bucket = "berth"
prefix = "bench-berth"
path_style = true
EOF
    sed -i 's/^\[storage\]$/[storage]\ndriver = "s3"/' "$dir/berth.toml"
    start berth_s3 "$BERTH_BIN" serve -c "$dir/berth.toml"
    BASE=http://127.0.0.1:$port CURL_TLS=() CA="" HEY_HOST=() ROOTS=("$PID") STORE=$dir/none
    wait_ready "$PID" "$BASE/v2/"
}

start_registry_s3() {
    start_garage
    local dir=$T/registry_s3; RPORT=$(free_port)
    mkdir -p "$dir"
    cat > "$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  s3:
    accesskey: $AWS_ACCESS_KEY_ID
    secretkey: $AWS_SECRET_ACCESS_KEY
    region: garage
    regionendpoint: $BERTH_S3_ENDPOINT
    bucket: berth
    rootdirectory: /bench-registry
    secure: false
    v4auth: true
  delete:
    enabled: true
  redirect:
    disable: true
http:
  addr: 127.0.0.1:$RPORT
EOF
    # Its aws-sdk-go panics at start when AWS_CA_BUNDLE is set (some machines set it).
    start registry_s3 env -u AWS_CA_BUNDLE docker-registry serve "$dir/config.yml"
    RPID=$PID STORE=$dir/none
    BASE=http://127.0.0.1:$RPORT CURL_TLS=() CA="" HEY_HOST=() ROOTS=("$RPID")
    wait_ready "$RPID" "$BASE/v2/"
}

# ---------------------------------------------------------------- workloads

# measure WHO NAME CMD...: runs CMD (each command bounds itself) while sampling the
# server's RSS every 100 ms; the peak is recorded as rss.NAME. Returns CMD's status.
measure() {
    local who=$1 name=$2 sampler rc=0 ready=$T/rss.ready i; shift 2
    rm -f "$ready"
    # Started directly, not through lib(), so that $! is the sampler itself.
    "${LIB[@]}" rss --results "$RESULTS" --who "$who" --metric "rss.$name" --ready "$ready" \
        --max-seconds $((STEP_LIMIT + 60)) "${ROOTS[@]}" &
    sampler=$!
    for ((i = 0; i < 100; i++)); do [ -e "$ready" ] || ! alive "$sampler" && break; sleep 0.05; done
    "$@" || rc=$?
    kill -TERM "$sampler" 2>/dev/null || true
    wait "$sampler" || true
    [ "$rc" = 0 ] || fail "$who $name (exit $rc)"
    return "$rc"
}

# Makes the next read of the big blob come from the disk: its data file is evicted from
# the page cache (both servers keep the registry:2 layout); failing that, all of the cache.
evict_blob() {
    local hex=${BIG_DIGEST#sha256:}
    local data=$STORE/docker/registry/v2/blobs/sha256/${hex:0:2}/$hex/data
    if [ -f "$data" ]; then
        lib evict "$data"
    else
        sync
        { echo 3 > /proc/sys/vm/drop_caches; } 2> /dev/null
    fi
}

pull_blob() { # pull_blob OUTFILE: one timed GET of the big blob
    curl -sS --max-time "$STEP_LIMIT" "${CURL_TLS[@]}" -o /dev/null \
        -w '%{http_code} %{size_download} %{time_total}\n' \
        "$BASE/v2/bench/big/blobs/$BIG_DIGEST" >> "$1"
}

pull_warm() { local i; for ((i = 0; i < BENCH_REPEAT; i++)); do pull_blob "$1" || return 1; done; }

ACCEPT=application/vnd.oci.image.manifest.v1+json

# wrk 4.1 waits for a body after a HEAD response; hey does not. Over TLS hey sends
# "host:port" as SNI, which rustls rightly refuses: -host gives it a bare name.
hey_head() {
    loadgen hey "${HEY_HOST[@]}" -m HEAD -c "$BENCH_CONNECTIONS" -z "${BENCH_SECONDS}s" -t 30 \
        -H "Accept: $ACCEPT" "$BASE/v2/bench/small/manifests/v1" > "$1"
}

wrk_get() {
    loadgen wrk -t1 -c "$BENCH_CONNECTIONS" -d "${BENCH_SECONDS}s" --timeout 30s --latency \
        -H "Accept: $ACCEPT" "$BASE/v2/bench/small/manifests/$SMALL_MANIFEST" > "$1"
}

# h2load_run OUT LOG METHOD REFERENCE: HTTP/2 over TLS, as Go clients (docker, containerd)
# talk to a registry. The log has one line per request, for the percentiles. The warm-up
# keeps the TLS handshakes out of the figures; -N turns a stalled connection into counted
# timeouts instead of a run that never ends.
h2load_run() {
    rm -f "$2"  # h2load appends to its log
    loadgen h2load -c "$BENCH_CONNECTIONS" -m 1 -t 1 --warm-up-time 1 -D "$BENCH_SECONDS" \
        -N 10s -H ":method: $3" -H "Accept: $ACCEPT" --log-file "$2" \
        "$BASE/v2/bench/small/manifests/$4" > "$1"
}

# Each workload WHO OUT records its figures; a failure is recorded and the run goes on.

workload_push() {
    log "$1: 1. push a ${BENCH_BLOB_MB} MiB blob, monolithic and in ${BENCH_CHUNK_MB} MiB chunks"
    measure "$1" push_mono lib push-blob "${REC[@]}" --metric push_mono --base "$BASE" \
        ${CA:+--ca "$CA"} --repo bench/big --file "$D/big.bin" --digest "$BIG_DIGEST" || true
    measure "$1" push_chunked lib push-blob "${REC[@]}" --metric push_chunked --base "$BASE" \
        ${CA:+--ca "$CA"} --repo bench/chunked --file "$D/chunked.bin" \
        --chunk $((BENCH_CHUNK_MB * MiB)) || true
}

workload_pull() {
    log "$1: 2. pull it, cold and warm page cache"
    evict_blob || note "could not evict the blob from the page cache: 'cold' pulls were warm"
    measure "$1" pull_cold pull_blob "$2/pull_cold.txt" || return 0
    measure "$1" pull_warm pull_warm "$2/pull_warm.txt" || return 0
    for k in cold warm; do
        lib parse pull "$2/pull_$k.txt" "${REC[@]}" --metric "pull_$k" \
            --size $((BENCH_BLOB_MB * MiB)) || fail "$1 pull_$k"
    done
    # Throughput means nothing if the bytes are wrong: hash one pull (untimed).
    local got
    got=$(curl -sS --max-time "$STEP_LIMIT" "${CURL_TLS[@]}" \
        "$BASE/v2/bench/big/blobs/$BIG_DIGEST" | sha256sum | cut -d' ' -f1)
    [ "sha256:$got" = "$BIG_DIGEST" ] || fail "$1: the pulled blob's digest is sha256:$got"
}

workload_manifests() {
    log "$1: 3. manifest HEAD by tag and GET by digest, $BENCH_CONNECTIONS connections"
    lib push-image --base "$BASE" ${CA:+--ca "$CA"} --repo bench/small --tag v1 \
        "$D/small.bin" > "$2/small.json" || { fail "$1: pushing the small image"; return 0; }
    SMALL_MANIFEST=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["manifest"])' \
        "$2/small.json")
    measure "$1" head_tag hey_head "$2/head_tag.txt" \
        && { lib parse hey "$2/head_tag.txt" "${REC[@]}" --metric head_tag || fail "$1 head_tag"; }
    measure "$1" get_digest wrk_get "$2/get_digest.txt" \
        && { lib parse wrk "$2/get_digest.txt" "${REC[@]}" --metric get_digest || fail "$1 get_digest"; }
    [ -n "$CA" ] || return 0
    measure "$1" head_tag_h2 h2load_run "$2/head_h2.txt" "$2/head_h2.log" HEAD v1 \
        && { lib parse h2load "$2/head_h2.txt" --log "$2/head_h2.log" "${REC[@]}" \
                 --metric head_tag_h2 || fail "$1 head_tag_h2"; }
    measure "$1" get_digest_h2 h2load_run "$2/get_h2.txt" "$2/get_h2.log" GET "$SMALL_MANIFEST" \
        && { lib parse h2load "$2/get_h2.txt" --log "$2/get_h2.log" "${REC[@]}" \
                 --metric get_digest_h2 || fail "$1 get_digest_h2"; }
    return 0
}

workload_fleet_pull() {
    log "$1: 4. $BENCH_PULLERS clients pulling one ${BENCH_IMAGE_MB} MiB, 10-layer image"
    lib push-image --base "$BASE" ${CA:+--ca "$CA"} --repo bench/fleet --tag v1 \
        "$D"/layer{0..9}.bin > "$2/fleet.json" || { fail "$1: pushing the fleet image"; return 0; }
    measure "$1" fleet_pull lib pull-fleet "${REC[@]}" --base "$BASE" ${CA:+--ca "$CA"} \
        --image "$2/fleet.json" --clients "$BENCH_PULLERS" --max-time "$STEP_LIMIT" || true
}

workload_fleet_push() {
    log "$1: 5. $BENCH_PUSHERS concurrent pushes of distinct ${BENCH_PUSH_MB} MiB images"
    measure "$1" fleet_push lib push-fleet "${REC[@]}" --base "$BASE" ${CA:+--ca "$CA"} \
        --repo bench/push "${PUSH_LAYERS[@]}" || true
}

for who in berth berth_base registry berth_tls nginx_registry berth_s3 registry_s3; do
    wants "$who" || continue
    log "== $who"
    "start_$who"
    REC=(--results "$RESULTS" --who "$who")
    out=$T/out/$who
    mkdir -p "$out"
    lib cpu --seconds "$IDLE_SECONDS" "${REC[@]}" --metric cpu.idle "${ROOTS[@]}"
    lib rss --once "${REC[@]}" --metric rss.idle "${ROOTS[@]}"
    workload_push "$who" "$out"
    workload_pull "$who" "$out"
    workload_manifests "$who" "$out"
    workload_fleet_pull "$who" "$out"
    workload_fleet_push "$who" "$out"
    lib cpu --seconds "$IDLE_SECONDS" "${REC[@]}" --metric cpu.idle_after "${ROOTS[@]}"
    lib rss --once "${REC[@]}" --metric rss.idle_after "${ROOTS[@]}"
    for p in "${ROOTS[@]}"; do stop_group "$p"; done
    rm -rf "${T:?}/$who" "$T/nginx"  # the stores: up to several GiB each
done

# ---------------------------------------------------------------- the table

mode=$([ "$QUICK" = 1 ] && echo quick || echo full)
header="berth benchmark ($mode mode, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs,"
header+=" $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)); berth: ${BERTH_UNDER_TEST:-none}"
header+=$'\n'"sizes: blob ${BENCH_BLOB_MB} MiB, chunks ${BENCH_CHUNK_MB} MiB, ${BENCH_SECONDS} s x"
header+=" $BENCH_CONNECTIONS connections, $BENCH_PULLERS pullers x ${BENCH_IMAGE_MB} MiB,"
header+=" $BENCH_PUSHERS pushers x ${BENCH_PUSH_MB} MiB; ran in $SECONDS s"
for n in "${NOTES[@]}"; do header+=$'\n'"note: $n"; done
echo
echo "$header"
echo
rc=0
lib table --results "$RESULTS" --contenders "$ONLY" --header "$header" ${OUT:+--out "$OUT"} || rc=1
for f in "${FAILURES[@]}"; do log "FAILED: $f"; rc=1; done
exit "$rc"
