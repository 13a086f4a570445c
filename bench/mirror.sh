#!/usr/bin/env bash
# bench/mirror.sh: berth as a pull-through cache, side by side with registry:2's proxy
# mode (Debian's docker-registry 2.8.2 with `proxy: remoteurl:`), both in front of the
# same upstream (a plain docker-registry on loopback), each with a fresh store.
#
#   bash bench/mirror.sh [--quick] [--berth PATH] [--out FILE]
#
# Workloads, per contender:
#   cold pull     one client pulls an image (manifest + 10 layers) nothing has cached yet
#   warm pull     the same client pulls it again (served from the cache)
#   cold fleet    BENCH_PULLERS clients pull another uncached image at once
#   upstream GETs blob GETs the upstream saw during the cold fleet (1 per blob is best)
# plus "direct": the same cold pull from the upstream itself, the floor for a first pull.
# Ratios are registry:2 / berth for times (above 1 = berth faster), reported, not asserted.
#
#   BENCH_IMAGE_MB=200/10   image size (10 layers)     BENCH_PULLERS=100/16
#   BENCH_KEEP=1            keep the temp dir
# shellcheck disable=SC2317
set -euo pipefail
. "$(dirname "$0")/common.sh" "$@"
if [ "$QUICK" = 1 ]; then
    : "${BENCH_IMAGE_MB:=10}" "${BENCH_PULLERS:=16}"
else
    : "${BENCH_IMAGE_MB:=200}" "${BENCH_PULLERS:=100}"
fi
: "${BENCH_KEEP:=0}"
command -v docker-registry >/dev/null || { echo "bench: needs docker-registry (apt-get install docker-registry)" >&2; exit 1; }

T=$(mktemp -d "${TMPDIR:-/tmp}/berth-bench-mirror.XXXXXX")
cp "$BERTH_BIN" "$T/berth"
SERVERS=()
cleanup() {
    local p
    for p in "${SERVERS[@]}"; do kill -TERM "-$p" 2>/dev/null || true; done
    for p in "${SERVERS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ "$BENCH_KEEP" = 1 ]; then log "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
start() { # NAME CMD...: its own process group, its log in $T/NAME.log
    local name=$1; shift
    setsid "$@" >"$T/$name.log" 2>&1 &
    PID=$!
    SERVERS+=("$PID")
}
stop() { kill -TERM "-$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
wait_ready() {
    local i
    for ((i = 0; i < 300; i++)); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1")" != 000 ] && return 0
        sleep 0.1
    done
    die "$1 not ready after 30 s"
}
free_port() { "${LIB[@]}" free-port; }
lib() { timeout -k 5 900 "${LIB[@]}" "$@"; }

registry_yml() { # DIR PORT [REMOTE]: docker-registry's config; a proxy when REMOTE is given
    cat >"$1/config.yml" <<EOF
version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: $1/store
http:
  addr: 127.0.0.1:$2
EOF
    if [ -n "${3:-}" ]; then printf 'proxy:\n  remoteurl: %s\n' "$3" >>"$1/config.yml"; fi
}

# The upstream, with its access log on (the GETs it saw are counted).
UPORT=$(free_port)
mkdir -p "$T/upstream"
registry_yml "$T/upstream" "$UPORT"
start upstream docker-registry serve "$T/upstream/config.yml"
UP=http://127.0.0.1:$UPORT
wait_ready "$UP/v2/"

# Three images of 10 layers: one per cold pull (a cache shares blobs by digest, so each
# contender needs its own uncached image) and one per cold fleet, plus the direct pull.
layer=$((BENCH_IMAGE_MB * (1 << 20) / 10))
push() { # NAME: 10 fresh layers, pushed as bench/NAME:v1; the image JSON in $T/NAME.json
    local files=() i
    for i in $(seq 1 10); do files+=("$T/$1.$i"); done
    "${LIB[@]}" gen --size "$layer" "${files[@]}"
    lib push-image --base "$UP" --repo "bench/$1" --tag v1 "${files[@]}" >"$T/$1.json"
    rm -f "${files[@]}"
}
log "pushing images of ${BENCH_IMAGE_MB} MiB to the upstream"
for n in direct berth_cold registry_cold berth_fleet registry_fleet; do push "$n"; done

RES=$T/results.tsv
: >"$RES"
as() { # IMAGE PREFIX: the image JSON with its repository under PREFIX
    python3 -c 'import json,sys; i=json.load(open(sys.argv[1])); i["repo"]=sys.argv[2]+i["repo"]; print(json.dumps(i))' "$T/$1.json" "$2" >"$T/$1.$3.json"
    echo "$T/$1.$3.json"
}
pull() { # WHO METRIC BASE IMAGE_JSON CLIENTS
    local r=$T/pull.tsv
    : >"$r"
    lib pull-fleet --results "$r" --who "$1" --base "$3" --image "$4" --clients "$5"
    local secs errs
    secs=$(awk -F'\t' '$2=="fleet_pull.seconds"{print $3}' "$r")
    errs=$(awk -F'\t' '$2=="fleet_pull.errors"{print $3}' "$r")
    # berth's errors fail the run; registry:2's are shown, as in bench/run.sh (its proxy
    # mode sometimes answers 500 to concurrent cold pulls of one blob).
    if [ "$errs" != 0 ]; then
        [ "$1" = registry ] || die "$1 $2: $errs clients failed"
        log "note: registry:2 $2: $errs clients failed (shown in the table, not fatal)"
    fi
    printf '%s\t%s\t%s\n%s\t%s_errors\t%s\n' "$1" "$2" "$secs" "$1" "$2" "$errs" >>"$RES"
}
upstream_gets() { grep -c "\"GET /v2/bench/$1/blobs/" "$T/upstream.log" || true; }

log "direct: a cold pull from the upstream"
pull direct cold "$UP" "$T/direct.json" 1

run() { # WHO BASE PREFIX
    log "$1: cold pull, warm pull, cold fleet of $BENCH_PULLERS"
    pull "$1" cold "$2" "$(as "$1_cold" "$3" x)" 1
    pull "$1" warm "$2" "$T/$1_cold.x.json" 1
    pull "$1" fleet "$2" "$(as "$1_fleet" "$3" x)" "$BENCH_PULLERS"
    printf '%s\tupstream_gets\t%s\n' "$1" "$(upstream_gets "$1_fleet")" >>"$RES"
}

# berth: the upstream under the prefix "up".
BPORT=$(free_port)
mkdir -p "$T/berth_store"
cat >"$T/berth.toml" <<EOF
[http]
listen = ["127.0.0.1:$BPORT"]
[storage]
root = "$T/berth_store"
[log]
level = "warn"
[[proxy.upstreams]]
name = "upstream.example"
url = "$UP"
prefix = "up"
EOF
start berth "$T/berth" serve -c "$T/berth.toml"
BPID=$PID
wait_ready "http://127.0.0.1:$BPORT/v2/"
run berth "http://127.0.0.1:$BPORT" up/
stop "$BPID"

# registry:2 in proxy mode: the upstream's names as they are.
RPORT=$(free_port)
mkdir -p "$T/proxy"
registry_yml "$T/proxy" "$RPORT" "$UP"
start proxy docker-registry serve "$T/proxy/config.yml"
RPID=$PID
wait_ready "http://127.0.0.1:$RPORT/v2/"
run registry "http://127.0.0.1:$RPORT" ""
stop "$RPID"

blobs=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["blobs"]))' "$T/direct.json")
python3 - "$RES" "$BENCH_IMAGE_MB" "$BENCH_PULLERS" "$blobs" >"$T/table.md" <<'EOF'
import sys
res = {}
for line in open(sys.argv[1]):
    who, metric, value = line.rstrip("\n").split("\t")
    res[(who, metric)] = float(value)
mb, pullers, blobs = sys.argv[2], sys.argv[3], sys.argv[4]
print(f"Pull-through cache: berth vs registry:2 proxy mode ({mb} MiB image of 10 layers, "
      f"{pullers} pullers; upstream on loopback; ratio = registry:2 / berth, above 1 = berth better)")
print()
print("| workload | berth | registry:2 proxy | ratio |")
print("|---|---|---|---|")
d = res[("direct", "cold")]
for metric, label in (("cold", "cold pull (first, via the cache)"), ("warm", "warm pull (cached)"),
                      ("fleet", f"{pullers} concurrent cold pulls")):
    b, r = res[("berth", metric)], res[("registry", metric)]
    print(f"| {label}, s | {b:.2f} | {r:.2f} | {r / b:.2f} |")
b, r = res[("berth", "fleet_errors")], res[("registry", "fleet_errors")]
print(f"| clients that failed in the cold fleet | {b:.0f} | {r:.0f} | |")
b, r = res[("berth", "upstream_gets")], res[("registry", "upstream_gets")]
print(f"| upstream blob GETs in the cold fleet ({blobs} blobs) | {b:.0f} | {r:.0f} | {r / max(b, 1):.2f} |")
print(f"| direct cold pull from the upstream, s (the floor) | {d:.2f} | | |")
EOF
cat "$T/table.md"
[ -z "$OUT" ] || cp "$T/table.md" "$OUT"
