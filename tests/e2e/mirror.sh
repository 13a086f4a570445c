#!/usr/bin/env bash
# berth as a pull-through cache, with real upstreams and real clients, all on loopback:
#   upstream 1: Debian's docker-registry 2.8 over TLS (a test CA) with htpasswd logins;
#   upstream 2: a second berth with its built-in token service (a Docker Hub-like Bearer
#               flow: 401 challenge -> /token with Basic -> Bearer);
#   the mirror: berth with both as [[proxy.upstreams]] (prefixes "up" and "tok"; "up" is
#               the default for un-prefixed names), tag_ttl 2s.
# Clients: skopeo (single image and --all of a multi-arch index), podman pulling a prefixed
# name and pulling through a registries.conf [[registry.mirror]] (un-prefixed names),
# containerd's ctr with a hosts.toml mirror (which sends ?ns=), 100 concurrent cold pulls
# (one upstream GET per blob in docker-registry's log), and the upstream stopped: cached
# pulls work, uncached ones get an error naming the upstream; restarted: a moved tag is
# picked up after tag_ttl.
SUITE=mirror
. "$(dirname "$0")/lib.sh"
ensure_tools || bail "tools missing"
E2E_TOOLS=(htpasswd:apache2-utils openssl:openssl ctr:containerd containerd:containerd) ensure_tools ||
    bail "htpasswd, openssl, containerd are installed"

# ---------------------------------------------------------------- upstream 1: docker-registry, TLS + htpasswd
C=$T/ca
mkdir -p "$C"
{
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=berth e2e mirror CA" \
        -keyout "$C/ca.key" -out "$C/ca.pem" &&
        openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
            -keyout "$C/leaf.key" -out "$C/leaf.csr" &&
        printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$C/ext" &&
        openssl x509 -req -in "$C/leaf.csr" -CA "$C/ca.pem" -CAkey "$C/ca.key" -CAcreateserial \
            -days 2 -extfile "$C/ext" -out "$C/leaf.pem"
} >"$T/openssl.out" 2>&1 || { sed 's/^/# /' "$T/openssl.out"; bail "test CA"; }
htpasswd -Bbc "$T/reg.htpasswd" upuser 'up-pass-123' >/dev/null 2>&1 || bail "htpasswd"
REG_ROOT=$T/reg-store
REG_PORT=$(free_port)
REG_LOG=$T/registry.log
cat >"$T/registry.yml" <<EOF
version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: $REG_ROOT
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$REG_PORT
  secret: berth-e2e-not-a-secret
  tls:
    certificate: $C/leaf.pem
    key: $C/leaf.key
auth:
  htpasswd:
    realm: e2e
    path: $T/reg.htpasswd
EOF
start_upstream() {
    docker-registry serve "$T/registry.yml" >>"$REG_LOG" 2>&1 &
    REG_PID=$!
    track_pid "$REG_PID"
    local i
    for ((i = 0; i < 100; i++)); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$C/ca.pem" "https://127.0.0.1:$REG_PORT/v2/")" = 401 ] && return 0
        sleep 0.1
    done
    return 1
}
start_upstream || { sed 's/^/# /' "$REG_LOG"; bail "docker-registry with TLS and htpasswd"; }
UP=127.0.0.1:$REG_PORT
UPCREDS=(--dest-creds upuser:up-pass-123 --dest-cert-dir "$T/certs.d")
mkdir -p "$T/certs.d" && cp "$C/ca.pem" "$T/certs.d/ca.crt"

# Images: one single-arch, one multi-arch index, pushed to the upstream.
L=$T/layout
make_image "$L" v1 "mirror v1" && make_image "$L" v2 "mirror v2" &&
    make_image "$L" amd "multi amd64" amd64 && make_image "$L" arm "multi arm64" arm64 &&
    make_image "$L" many "mirror many" || bail "umoci"
make_index "$L" multi amd:amd64 arm:arm64 || bail "index"
push_up() { # LAYOUT_TAG DEST [--all]
    "${SKOPEO[@]}" copy -q ${3:-} "${UPCREDS[@]}" "oci:$L:$1" "docker://$UP/$2" >"$T/push.out" 2>&1 ||
        { sed 's/^/# /' "$T/push.out"; return 1; }
}
push_up v1 library/app:v1 && push_up v2 library/other:v2 && push_up multi library/multi:multi --all &&
    push_up many library/many:v1 || bail "pushing to docker-registry"
pass "docker-registry upstream over TLS with htpasswd holds the images"
D_V1=$(layout_manifest "$L" v1)
D_MULTI=$(layout_manifest "$L" multi)

# ---------------------------------------------------------------- upstream 2: berth with its token service
htpasswd -Bbc "$T/tok.htpasswd" tokuser 'tok-pass-456' >/dev/null 2>&1 || bail "htpasswd"
TOK_PORT=$(free_port)
TOK_URL=http://127.0.0.1:$TOK_PORT
TOK_LOG=$T/tok.log
env BERTH__HTTP__LISTEN="[\"127.0.0.1:$TOK_PORT\"]" BERTH__STORAGE__ROOT="$T/tok-store" \
    BERTH__HTTP__ADMIN_LISTEN="[]" BERTH__AUTH__MODE=token BERTH__AUTH__HTPASSWD__PATH="$T/tok.htpasswd" \
    BERTH__STATE__DIR="$T/tok-state" NO_COLOR=1 "$BERTH_BIN" serve >"$TOK_LOG" 2>&1 &
track_pid $!
# /v2/ answers 401 there: wait for the challenge.
for ((i = 0; i < 100; i++)); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$TOK_URL/v2/")" = 401 ] && break
    sleep 0.1
done
"${SKOPEO[@]}" copy -q --dest-tls-verify=false --dest-creds tokuser:tok-pass-456 "oci:$L:v2" \
    "docker://${TOK_URL#http://}/team/tool:v2" >"$T/tokpush.out" 2>&1 ||
    { sed 's/^/# /' "$T/tokpush.out" "$TOK_LOG"; bail "push to the token-service berth"; }
pass "berth upstream with its built-in token service holds team/tool:v2"

# ---------------------------------------------------------------- the mirror
printf 'up-pass-123\n' >"$T/up.pw" && printf 'tok-pass-456\n' >"$T/tok.pw" && chmod 600 "$T/up.pw" "$T/tok.pw"
cat >"$T/mirror.toml" <<EOF
[[proxy.upstreams]]
name = "up.example"
url = "https://$UP"
prefix = "up"
username = "upuser"
password_file = "$T/up.pw"
ca = "$C/ca.pem"
tag_ttl = "2s"
default = true

[[proxy.upstreams]]
name = "tok.example"
url = "$TOK_URL"
prefix = "tok"
username = "tokuser"
password_file = "$T/tok.pw"
EOF
ADMIN_PORT=$(free_port)
start_berth "$T/mirror-store" "" BERTH_CONFIG="$T/mirror.toml" \
    BERTH__HTTP__ADMIN_LISTEN="[\"127.0.0.1:$ADMIN_PORT\"]" BERTH__STATE__DIR="$T/mirror-state" ||
    bail "the mirror starts"
M=${BERTH_URL#http://}
MLOG=$BERTH_LOG

# a. skopeo through the mirror, prefixed names.
if "${SKOPEO[@]}" copy -q --src-tls-verify=false "docker://$M/up/library/app:v1" "oci:$T/a.pulled:v1" >"$T/a.out" 2>&1; then
    pass "a: skopeo pulls up/library/app:v1 through the mirror"
else
    fail "a: skopeo pulls up/library/app:v1 through the mirror" "$(tail -n 3 "$T/a.out" | tr '\n' ' ')"
fi
check_eq "a: the pulled manifest digest is the upstream's" "$D_V1" "$(layout_manifest "$T/a.pulled" v1)"
bad=$(verify_blob_dir "$T/a.pulled/blobs/sha256")
check_eq "a: every pulled blob hashes to its name" "" "$bad"
bad=$(verify_store_blobs "$T/mirror-store")
check_eq "a: every blob the mirror stored hashes to its name" "" "$bad"
nblobs=$(find "$T/mirror-store/docker/registry/v2/blobs" -name data | wc -l)
check "a: the mirror stored the image: manifest, config, layers ($nblobs blobs)" test "$nblobs" -ge 3
if "${SKOPEO[@]}" copy -q --all --src-tls-verify=false "docker://$M/up/library/multi:multi" "oci:$T/a.multi:multi" >"$T/a2.out" 2>&1; then
    pass "a: skopeo copy --all of a multi-arch index through the mirror"
else
    fail "a: skopeo copy --all of a multi-arch index through the mirror" "$(tail -n 3 "$T/a2.out" | tr '\n' ' ')"
fi
check_eq "a: the index digest is the upstream's" "$D_MULTI" "$(layout_manifest "$T/a.multi" multi)"
code=$(http GET "$BERTH_URL/v2/up/library/app/tags/list")
check_eq "a: tags/list of a mirrored repository" '200 ["v1"]' "$code $(json_get "$T/http.body" 'json.dumps(d["tags"])')"
code=$(http GET "$BERTH_URL/v2/_catalog")
check_match "a: _catalog lists the cached repositories" '"up/library/app"' "$(cat "$T/http.body")"

# b. The token-service upstream: 401 -> /token with the credentials (its realm is on its
# own host) -> Bearer.
if "${SKOPEO[@]}" copy -q --src-tls-verify=false "docker://$M/tok/team/tool:v2" "oci:$T/b.pulled:v2" >"$T/b.out" 2>&1; then
    pass "b: skopeo pulls tok/team/tool:v2 through a Bearer-token upstream"
else
    fail "b: skopeo pulls tok/team/tool:v2 through a Bearer-token upstream" "$(tail -n 3 "$T/b.out" | tr '\n' ' ')"
fi
check_eq "b: its manifest digest" "$(layout_manifest "$L" v2)" "$(layout_manifest "$T/b.pulled" v2)"
check "b: no credential or token in the mirror's log" bash -c "! grep -qE 'up-pass-123|tok-pass-456|Bearer ey' '$MLOG'"

# c. podman: a prefixed name, then a registries.conf mirror (un-prefixed names: the
# default upstream).
if podman_cmd pull -q --tls-verify=false "$M/up/library/other:v2" >"$T/c.out" 2>&1; then
    pass "c: podman pulls up/library/other:v2 through the mirror"
else
    fail "c: podman pulls up/library/other:v2 through the mirror" "$(tail -n 3 "$T/c.out" | tr '\n' ' ')"
fi
cat >"$T/registries.conf" <<EOF
[[registry]]
prefix = "up.example"
location = "up.example"
[[registry.mirror]]
location = "$M"
insecure = true
EOF
if CONTAINERS_REGISTRIES_CONF="$T/registries.conf" podman_cmd pull -q "up.example/library/app:v1" >"$T/c2.out" 2>&1; then
    pass "c: podman pulls up.example/library/app:v1 via a registries.conf mirror"
else
    fail "c: podman pulls up.example/library/app:v1 via a registries.conf mirror" "$(tail -n 3 "$T/c2.out" | tr '\n' ' ')"
fi
check_match "c: podman asked berth for the un-prefixed name" 'path=/v2/library/app/manifests/' "$(cat "$MLOG")"

# d. containerd: a hosts.toml mirror for tok.example, which is not the default upstream:
# only ctr's ?ns=tok.example routes team/tool to it.
CD=$T/containerd
mkdir -p "$CD/hosts/tok.example"
cat >"$CD/config.toml" <<EOF
version = 2
root = "$CD/root"
state = "$CD/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$CD/sock"
EOF
cat >"$CD/hosts/tok.example/hosts.toml" <<EOF
server = "https://tok.example"
[host."http://$M"]
  capabilities = ["pull", "resolve"]
EOF
containerd --config "$CD/config.toml" >"$CD/log" 2>&1 &
track_pid $!
for ((i = 0; i < 100; i++)); do [ -S "$CD/sock" ] && break; sleep 0.1; done
if ctr -a "$CD/sock" images pull --hosts-dir "$CD/hosts" --snapshotter native "tok.example/team/tool:v2" >"$T/d.out" 2>&1; then
    pass "d: ctr pulls tok.example/team/tool:v2 through a hosts.toml mirror (?ns=)"
else
    fail "d: ctr pulls tok.example/team/tool:v2 through a hosts.toml mirror (?ns=)" "$(tail -n 3 "$T/d.out" "$CD/log" | tr '\n' ' ')"
fi
check_match "d: containerd asked berth for the upstream's own name" 'path=/v2/team/tool/manifests/' "$(cat "$MLOG")"
got=$(ctr -a "$CD/sock" images ls -q 2>/dev/null | grep -c 'tok.example/team/tool:v2')
check_eq "d: containerd has the image" 1 "$got"

# e. 100 concurrent cold pulls of an image not cached yet (its own layers: berth keeps
# blobs by digest, so layers shared with an image pulled before would not be cold): one
# upstream GET per blob.
curl -s -o "$T/e.manifest" -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$BERTH_URL/v2/up/library/many/manifests/v1"
mapfile -t E_BLOBS < <(manifest_layers "$T/e.manifest"; manifest_config "$T/e.manifest")
check "e: the manifest names blobs (${#E_BLOBS[@]})" test "${#E_BLOBS[@]}" -ge 2
E_PIDS=()
for n in $(seq 1 100); do
    (
        for b in "${E_BLOBS[@]}"; do
            curl -s -m 120 -o "$T/e.$n.${b#sha256:}" "$BERTH_URL/v2/up/library/many/blobs/$b" || echo "curl $b" >>"$T/e.err"
        done
    ) &
    E_PIDS+=($!)
done
for p in "${E_PIDS[@]}"; do wait "$p"; done
bad=0
for n in $(seq 1 100); do
    for b in "${E_BLOBS[@]}"; do
        [ "$(sha256_of "$T/e.$n.${b#sha256:}")" = "${b#sha256:}" ] || bad=$((bad + 1))
    done
done
check_eq "e: 100 pullers x ${#E_BLOBS[@]} blobs, every body right" 0 "$bad"
rm -f "$T"/e.[0-9]*
worst=0
for b in "${E_BLOBS[@]}"; do
    n=$(grep -c "\"GET /v2/library/many/blobs/$b " "$REG_LOG" || true)
    [ "$n" -gt "$worst" ] && worst=$n
done
check_eq "e: docker-registry's log shows one GET per blob" 1 "$worst"
curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" >"$T/metrics"
check "e: /metrics counts the coalesced requests" grep -qE '^berth_proxy_coalesced_total [1-9]' "$T/metrics"

# f. Offline: the upstream stops.
kill -TERM "$REG_PID"; wait_exit "$REG_PID" 100 || true
sleep 2.2 # past tag_ttl
if "${SKOPEO[@]}" copy -q --src-tls-verify=false "docker://$M/up/library/app:v1" "oci:$T/f.pulled:v1" >"$T/f.out" 2>&1; then
    pass "f: upstream down: a cached tag (past its tag_ttl) still pulls"
else
    fail "f: upstream down: a cached tag (past its tag_ttl) still pulls" "$(tail -n 3 "$T/f.out" | tr '\n' ' ')"
fi
check_eq "f: ... with the cached digest" "$D_V1" "$(layout_manifest "$T/f.pulled" v1)"
check_match "f: the stale tag is logged" 'serving the cached tag' "$(cat "$MLOG")"
curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" >"$T/metrics"
check "f: and counted" grep -qE '^berth_proxy_stale_served_total [1-9]' "$T/metrics"
code=$(http GET "$BERTH_URL/v2/up/library/app/manifests/nope" -H 'Accept: application/vnd.oci.image.manifest.v1+json')
check_eq "f: an uncached tag: 503 UNAVAILABLE" "503 UNAVAILABLE" "$code $(json_get "$T/http.body" 'd["errors"][0]["code"]')"
check_match "f: ... naming the upstream" 'up.example' "$(json_get "$T/http.body" 'd["errors"][0]["message"]')"
if "${SKOPEO[@]}" copy -q --src-tls-verify=false "docker://$M/up/library/app:nope" "oci:$T/f2:x" >"$T/f2.out" 2>&1; then
    fail "f: skopeo of an uncached tag fails"
else
    check_match "f: skopeo of an uncached tag fails with 503 (skopeo does not show the message)" '503' "$(cat "$T/f2.out")"
fi

# g. Back online; the tag moves upstream; picked up after tag_ttl.
start_upstream || bail "docker-registry restarts"
push_up v2 library/app:v1 || bail "moving the tag"
sleep 2.2
"${SKOPEO[@]}" inspect --raw --tls-verify=false "docker://$M/up/library/app:v1" >"$T/g.raw" 2>"$T/g.err"
check_eq "g: the moved tag is served after tag_ttl" "$(layout_manifest "$L" v2)" "sha256:$(sha256_of "$T/g.raw")"

# h. Read-only for clients.
if "${SKOPEO[@]}" copy -q --dest-tls-verify=false "oci:$L:v1" "docker://$M/up/library/app:pushed" >"$T/h.out" 2>&1; then
    fail "h: a push into a mirrored repository is refused"
else
    check_match "h: a push into a mirrored repository is refused (UNSUPPORTED, read-only mirror)" 'read-only mirror|UNSUPPORTED|405' "$(cat "$T/h.out")"
fi
if "${SKOPEO[@]}" copy -q --dest-tls-verify=false "oci:$L:v1" "docker://$M/mine/app:v1" >"$T/h2.out" 2>&1; then
    pass "h: a push outside the prefixes works"
else
    fail "h: a push outside the prefixes works" "$(tail -n 3 "$T/h2.out" | tr '\n' ' ')"
fi

stop_berth
summary
