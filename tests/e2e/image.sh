#!/usr/bin/env bash
# The container image packaging/build.sh makes (target/packages/berth-<v>-oci.tar):
#   a. what skopeo sees: labels, user, entrypoint, command, ports, volumes, stop signal;
#   b. the layer: exactly the binary, the libraries ldd names, the configuration, the
#      berth user; owners, modes and timestamps fixed;
#   c. reproducible: rebuilt from its own binary (another directory, umask and file
#      times), the same bytes and digest; another SOURCE_DATE_EPOCH gives another digest;
#   d. the rootfs (umoci unpack) under chroot as uid 10001, with nothing but its own
#      libraries: --version, `berth user add`, and a push and pull with the image's own
#      configuration on loopback;
#   e. podman (load, run as the image says, on the host network for loopback ports):
#      `berth user add` inside the container, then registry:2's variables exactly as the
#      guides' `docker run -e REGISTRY_AUTH=htpasswd ...` lines give them (certificate
#      files, htpasswd made with `htpasswd -Bbn`), skopeo pushing the image itself into
#      that berth and pulling it back; `podman stop` ends it with status 0;
#   f. packaging/compose.yml names this image and the variables e2 ran with.
#
#   eval "$(bash packaging/build.sh | grep '^BERTH_')"
#   BERTH_OCI=$BERTH_OCI bash tests/e2e/run-all.sh image
#
# Without BERTH_OCI the suite is skipped.
SUITE=image ARTIFACT=BERTH_OCI
. "$(dirname "$0")/artifact.sh"

echo "# suite: image ($BERTH_OCI)"
[ -f "$BERTH_OCI" ] || bail "BERTH_OCI is a file ($BERTH_OCI)"
if [ "${E2E_TOOLS_OK:-0}" != 1 ] || ! command -v runc >/dev/null || ! command -v htpasswd >/dev/null; then
    ensure_tools runc:runc htpasswd:apache2-utils openssl:openssl chroot:coreutils ||
        bail "runc, htpasswd, openssl are installed"
fi
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$REPO/Cargo.toml" | head -n 1)

# ---------------------------------------------------------------- a. skopeo's view
IMG=oci-archive:$BERTH_OCI
"${SKOPEO[@]}" inspect "$IMG" >"$T/inspect.json" 2>"$T/inspect.err" ||
    bail "skopeo inspect $IMG" "$(tail -n 3 "$T/inspect.err" | tr '\n' ' ')"
"${SKOPEO[@]}" inspect --config "$IMG" >"$T/config.json" 2>"$T/config.err" ||
    bail "skopeo inspect --config $IMG" "$(tail -n 3 "$T/config.err" | tr '\n' ' ')"
label() { json_get "$T/inspect.json" "d['Labels'].get('org.opencontainers.image.$1', '')"; }
cfg() { json_get "$T/config.json" "$1"; }
check_eq "a: label title" berth "$(label title)"
check_eq "a: label version is Cargo.toml's" "$version" "$(label version)"
check_match "a: label source is a URL" '^(https?|git|ssh)://|^[^ ]+@[^ ]+:' "$(label source)"
check_match "a: label licenses names berth's Apache-2.0" '^Apache-2\.0( AND |$)' "$(label licenses)"
check_match "a: label created is RFC 3339" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z$' "$(label created)"
check_eq "a: created is the label's time" "$(label created)" "$(json_get "$T/inspect.json" 'd["Created"]')"
check_eq "a: architecture" "$(dpkg --print-architecture)" "$(json_get "$T/inspect.json" 'd["Architecture"]')"
check_eq "a: one layer" 1 "$(json_get "$T/inspect.json" 'len(d["Layers"])')"
check_eq "a: user 10001:10001 (not root)" 10001:10001 "$(cfg 'd["config"]["User"]')"
check_eq "a: entrypoint" '["/usr/bin/berth"]' "$(cfg 'd["config"]["Entrypoint"]')"
check_eq "a: default command serve" '["serve"]' "$(cfg 'd["config"]["Cmd"]')"
check_eq "a: exposed ports" '{"5000/tcp": {}, "5001/tcp": {}}' "$(cfg 'd["config"]["ExposedPorts"]')"
check_eq "a: volumes: config and store" '{"/etc/berth": {}, "/var/lib/berth": {}}' "$(cfg 'd["config"]["Volumes"]')"
check_eq "a: stop signal" SIGTERM "$(cfg 'd["config"]["StopSignal"]')"
check_eq "a: working directory" /var/lib/berth "$(cfg 'd["config"]["WorkingDir"]')"
check_eq "a: BERTH_CONFIG names the image's appliance.toml" /etc/berth/appliance.toml \
    "$(cfg '[e.split("=",1)[1] for e in d["config"]["Env"] if e.startswith("BERTH_CONFIG=")][0]')"
check_eq "a: the glibc mmap threshold is set as in the systemd unit" "glibc.malloc.mmap_threshold=1048576" \
    "$(cfg '[e.split("=",1)[1] for e in d["config"]["Env"] if e.startswith("GLIBC_TUNABLES=")][0]')"

# ---------------------------------------------------------------- b. the layer
mkdir -p "$T/archive"
tar -xf "$BERTH_OCI" -C "$T/archive" || bail "the archive unpacks with tar"
check "a: docker load's manifest.json names berth:$version" \
    grep -q "\"RepoTags\":\[\"berth:$version\"\]" "$T/archive/manifest.json"
check_eq "b: every blob hashes to its name" "" "$(verify_blob_dir "$T/archive/blobs/sha256")"
layer=$(layout_blob "$T/archive" "$(json_get "$T/inspect.json" 'd["Layers"][0]')")
# path mode uid gid mtime, one a line, in archive order.
"$PY" - "$layer" >"$T/layer.list" <<'EOF'
import sys, tarfile
with tarfile.open(sys.argv[1]) as t:
    for m in t.getmembers():
        print(m.name + ("/" if m.isdir() else ""), oct(m.mode), m.uid, m.gid, m.mtime, m.uname or "-", m.gname or "-")
EOF
check "b: the layer is a gzip tar" test -s "$T/layer.list"
epoch=$("$PY" -c 'import calendar, sys, time; print(calendar.timegm(time.strptime(sys.argv[1], "%Y-%m-%dT%H:%M:%SZ")))' "$(label created)")
check_eq "b: tar entries are sorted" "$(awk '{print $1}' "$T/layer.list" | LC_ALL=C sort)" "$(awk '{print $1}' "$T/layer.list")"
check_eq "b: every timestamp is SOURCE_DATE_EPOCH ($epoch)" "" "$(awk -v e="$epoch" '$5 != e' "$T/layer.list")"
check_eq "b: no user or group names" "" "$(awk '$6 != "-" || $7 != "-"' "$T/layer.list")"
check_eq "b: only berth's directories belong to 10001" \
    "etc/berth/ 0o750 10001 10001
etc/berth/htpasswd 0o640 10001 10001
var/lib/berth/ 0o750 10001 10001" "$(awk '$3 != 0 || $4 != 0 {print $1, $2, $3, $4}' "$T/layer.list")"
mkdir -p "$T/rootfs-raw"
tar -xzf "$layer" -C "$T/rootfs-raw" usr/bin/berth || bail "the layer holds usr/bin/berth"
# What the image's binary needs, by ldd on this machine: the loader and the libraries.
libs=$(ldd "$T/rootfs-raw/usr/bin/berth" | awk '$2 == "=>" {print $3; next} $1 ~ /^\// {print $1}' | sed 's#^/##' | sort)
files=$(awk '$1 !~ /\/$/ {print $1}' "$T/layer.list" | grep -v -E '^usr/share/doc/[^/]+/(copyright|LICENSE)$' | sort)
check_eq "b: files: the binary, its libraries, the configuration, the CA roots, the berth user" \
    "$(printf '%s\n' etc/berth/appliance.toml etc/berth/htpasswd etc/group etc/passwd \
        etc/ssl/certs/ca-certificates.crt usr/bin/berth $libs | sort)" "$files"
check "b: glibc's copyright travels with it" grep -q '^usr/share/doc/libc6/copyright ' "$T/layer.list"
check "b: berth's licence travels with it" grep -q '^usr/share/doc/berth/LICENSE ' "$T/layer.list"

# ---------------------------------------------------------------- c. reproducible
# The same inputs from elsewhere: the image's own binary, copied now (a new mtime), built
# in another directory under another umask; the labels give version, source, revision.
mkdir -p "$T/rebuild/bin"
cp "$T/rootfs-raw/usr/bin/berth" "$T/rebuild/bin/berth"
touch "$T/rebuild/bin/berth"
rebuild() {
    (cd "$T/rebuild" && umask "$1" && SOURCE_DATE_EPOCH=$2 "$PY" "$REPO/packaging/oci-image.py" \
        --binary "$T/rebuild/bin/berth" --output "$3" --version "$(label version)" \
        --source "$(label source)" --revision "$(label revision)") 2>"$T/rebuild.err"
}
if rebuild 077 "$epoch" "$T/rebuild/again.tar"; then
    pass "c: oci-image.py rebuilds the image"
else
    fail "c: oci-image.py rebuilds the image" "$(tail -n 3 "$T/rebuild.err" | tr '\n' ' ')"
fi
digest_of() { "${SKOPEO[@]}" inspect --format '{{.Digest}}' "oci-archive:$1" 2>/dev/null; }
first=$(digest_of "$BERTH_OCI")
echo "# image digest: $first"
check_match "c: the image has a digest" '^sha256:[0-9a-f]{64}$' "$first"
check_eq "c: the rebuild has the same digest" "$first" "$(digest_of "$T/rebuild/again.tar")"
check_eq "c: the rebuild is the same archive, byte for byte" "$(sha256_of "$BERTH_OCI")" "$(sha256_of "$T/rebuild/again.tar" 2>/dev/null)"
rebuild 022 $((epoch + 1)) "$T/rebuild/later.tar"
check_ne "c: another SOURCE_DATE_EPOCH gives another digest" "$first" "$(digest_of "$T/rebuild/later.tar")"

# ---------------------------------------------------------------- d. the rootfs, under chroot
layout=$T/layout
mkdir -p "$layout"
cp -r "$T/archive/." "$layout/"
if umoci unpack --image "$layout:$(label version)" "$T/bundle" >"$T/unpack.out" 2>&1; then
    pass "d: umoci unpack"
else
    bail "d: umoci unpack" "$(tail -n 3 "$T/unpack.out" | tr '\n' ' ')"
fi
RFS=$T/bundle/rootfs
chmod 0711 "$T" "$T/bundle"
CHROOT=$(command -v chroot)
# in_image [VAR=VALUE...] CMD...: CMD (a path in the rootfs) run as the image's user,
# seeing only the image's files (its own loader and libraries), with the image's
# environment.
in_image() {
    local vars=()
    while [[ "${1:-}" == *=* ]]; do
        vars+=("$1")
        shift
    done
    env -i PATH=/usr/bin BERTH_CONFIG=/etc/berth/appliance.toml REGISTRY_HTTP_ADDR=:5000 NO_COLOR=1 \
        "${vars[@]}" "$CHROOT" --userspec=10001:10001 "$RFS" "$@"
}
check_eq "d: berth --version in the rootfs, as 10001" "berth $version" "$(in_image /usr/bin/berth --version 2>&1)"
check "d: the image's configuration checks out" in_image /usr/bin/berth config check /etc/berth/appliance.toml
in_image /usr/bin/berth config show >"$T/show.toml" 2>&1
check "d: image config: htpasswd auth" grep -q '^mode = "htpasswd"' "$T/show.toml"
check "d: image config: the store is /var/lib/berth" grep -q '^root = "/var/lib/berth"' "$T/show.toml"
check "d: image config: REGISTRY_HTTP_ADDR :5000 listens on 0.0.0.0:5000" grep -q '^listen = \["0.0.0.0:5000"\]' "$T/show.toml"
PW="img-$RANDOM-$RANDOM"
if printf '%s\n' "$PW" | in_image /usr/bin/berth user add chroot --password-stdin >"$T/useradd.out" 2>&1; then
    pass "d: berth user add as 10001 in the rootfs"
else
    fail "d: berth user add as 10001 in the rootfs" "$(tr '\n' ' ' <"$T/useradd.out")"
fi
check_eq "d: the htpasswd file is 10001's, 0640" "640 10001" "$(stat -c '%a %u' "$RFS/etc/berth/htpasswd")"
DP=$(free_port)
# exec all the way down: the PID is berth's own.
(exec env -i PATH=/usr/bin BERTH_CONFIG=/etc/berth/appliance.toml NO_COLOR=1 \
    REGISTRY_HTTP_ADDR="127.0.0.1:$DP" BERTH__HTTP__ADMIN_LISTEN='[]' \
    "$CHROOT" --userspec=10001:10001 "$RFS" /usr/bin/berth serve) >"$T/chroot.log" 2>&1 &
CPID=$!
track_pid "$CPID"
if wait_http "http://127.0.0.1:$DP/" 150; then
    pass "d: the rootfs's berth serves on loopback"
else
    sed 's/^/#   berth: /' "$T/chroot.log" | tail -n 10
    fail "d: the rootfs's berth serves on loopback" "no answer"
fi
check_eq "d: anonymous /v2/ is 401" 401 "$(http GET "http://127.0.0.1:$DP/v2/")"
make_image "$T/img" app "image chroot $RANDOM" || bail "umoci builds an image"
src=$(layout_manifest "$T/img" app)
if "${SKOPEO[@]}" copy -q --dest-tls-verify=false --dest-creds "chroot:$PW" "oci:$T/img:app" \
    "docker://127.0.0.1:$DP/e2e/app:v1" >"$T/push.out" 2>&1 &&
    "${SKOPEO[@]}" copy -q --src-tls-verify=false --src-creds "chroot:$PW" \
        "docker://127.0.0.1:$DP/e2e/app:v1" "oci:$T/pulled:v1" >>"$T/push.out" 2>&1; then
    pass "d: push and pull through the rootfs's berth"
else
    fail "d: push and pull through the rootfs's berth" "$(tail -n 3 "$T/push.out" | tr '\n' ' ')"
fi
check_eq "d: pulled manifest digest" "$src" "$(layout_manifest "$T/pulled" v1)"
check "d: the store is in the image's /var/lib/berth, owned by 10001" \
    test -n "$(find "$RFS/var/lib/berth/docker" -type f -user 10001 -name data 2>/dev/null | head -n 1)"
kill -TERM "$CPID"
wait_exit "$CPID" 150 && check_eq "d: SIGTERM ends it with status 0" 0 "$WAIT_RC"

# ---------------------------------------------------------------- e. podman
# runc: crun refuses hybrid cgroup hierarchies (some CI hosts); the limits stay within
# what podman itself runs with. The host network: loopback ports, as every suite uses.
RUN_OPTS=(--runtime runc --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 --network host)
# Containers outlive the suite's own processes: removed on every way out.
_e2e_remove_containers() { podman_cmd rm -f -t 2 e1 e2 >/dev/null 2>&1; }
trap '_e2e_remove_containers; _e2e_cleanup' EXIT
if podman_cmd load -i "$BERTH_OCI" >"$T/load.out" 2>&1; then
    pass "e: podman load"
else
    bail "e: podman load" "$(tail -n 3 "$T/load.out" | tr '\n' ' ')"
fi
check_match "e: loaded as berth:$version" "Loaded image.*berth:$version" "$(cat "$T/load.out")"
REF=berth:$version
check_eq "e: podman sees the user" 10001:10001 "$(podman_cmd image inspect --format '{{.Config.User}}' "$REF" 2>&1)"
out=$(podman_cmd run --rm "${RUN_OPTS[@]}" "$REF" --version 2>&1)
if [ "$out" = "berth $version" ]; then
    pass "e: podman run berth --version"
else
    bail "e: podman run berth --version" "$(echo "$out" | tail -n 3 | tr '\n' ' ')"
fi

# e1. The image's defaults: `berth user add` inside the container, a login, a push.
P1=$(free_port)
podman_cmd run -d --name e1 "${RUN_OPTS[@]}" -e REGISTRY_HTTP_ADDR="127.0.0.1:$P1" \
    -e BERTH__HTTP__ADMIN_LISTEN='[]' "$REF" >"$T/e1.id" 2>"$T/e1.err" ||
    bail "e1: podman run -d" "$(tail -n 3 "$T/e1.err" | tr '\n' ' ')"
if wait_http "http://127.0.0.1:$P1/" 150; then
    pass "e1: the container serves"
else
    podman_cmd logs e1 2>&1 | tail -n 10 | sed 's/^/#   e1: /'
    fail "e1: the container serves" "no answer"
fi
cpid=$(podman_cmd inspect --format '{{.State.Pid}}' e1 2>/dev/null)
check_eq "e1: berth runs as 10001 in the container" 10001 "$(awk '/^Uid:/ {print $2}' "/proc/$cpid/status" 2>/dev/null)"
if printf '%s\n' "$PW" | podman_cmd exec -i e1 berth user add alice --password-stdin >"$T/e1.useradd" 2>&1; then
    pass "e1: podman exec berth user add"
else
    fail "e1: podman exec berth user add" "$(tr '\n' ' ' <"$T/e1.useradd")"
fi
check_eq "e1: berth user list inside shows alice" alice "$(podman_cmd exec e1 berth user list 2>&1)"
# The htpasswd file is looked at again a second after the last look.
for ((i = 0; i < 5; i++)); do
    code=$(http GET "http://127.0.0.1:$P1/v2/" -u "alice:$PW")
    [ "$code" = 200 ] && break
    sleep 0.5
done
check_eq "e1: alice logs in" 200 "$code"
check_eq "e1: a wrong password does not" 401 "$(http GET "http://127.0.0.1:$P1/v2/" -u "alice:nope")"
if "${SKOPEO[@]}" copy -q --dest-tls-verify=false --dest-creds "alice:$PW" "oci:$T/img:app" \
    "docker://127.0.0.1:$P1/e2e/app:v1" >"$T/e1.push" 2>&1; then
    pass "e1: skopeo push into the container"
else
    fail "e1: skopeo push into the container" "$(tail -n 3 "$T/e1.push" | tr '\n' ' ')"
fi
podman_cmd stop -t 20 e1 >/dev/null 2>&1
check_eq "e1: podman stop (SIGTERM) ends it with status 0" 0 "$(podman_cmd inspect --format '{{.State.ExitCode}}' e1 2>&1)"
podman_cmd rm e1 >/dev/null 2>&1

# e2. The guides' lines: certificate files from openssl, an htpasswd file from
# `htpasswd -Bbn`, both mounted; only the address is moved to loopback.
mkdir -p "$T/certs" "$T/auth"
openssl req -newkey rsa:2048 -nodes -sha256 -keyout "$T/certs/domain.key" -x509 -days 30 \
    -subj /CN=localhost -addext "subjectAltName = DNS:localhost,IP:127.0.0.1" \
    -out "$T/certs/domain.crt" >/dev/null 2>&1 || bail "openssl makes a certificate"
chmod 0644 "$T/certs/domain.key"
htpasswd -Bbn testuser testpassword >"$T/auth/htpasswd" 2>/dev/null || bail "htpasswd -Bbn"
P2=$(free_port)
podman_cmd run -d --name e2 "${RUN_OPTS[@]}" \
    -v "$T/auth:/auth:ro" \
    -e "REGISTRY_AUTH=htpasswd" \
    -e "REGISTRY_AUTH_HTPASSWD_REALM=Registry Realm" \
    -e REGISTRY_AUTH_HTPASSWD_PATH=/auth/htpasswd \
    -v "$T/certs:/certs:ro" \
    -e REGISTRY_HTTP_ADDR="127.0.0.1:$P2" \
    -e REGISTRY_HTTP_TLS_CERTIFICATE=/certs/domain.crt \
    -e REGISTRY_HTTP_TLS_KEY=/certs/domain.key \
    -e BERTH__HTTP__ADMIN_LISTEN='[]' \
    "$REF" >"$T/e2.id" 2>"$T/e2.err" || bail "e2: podman run -d (registry:2's variables)" "$(tail -n 3 "$T/e2.err" | tr '\n' ' ')"
B2=https://127.0.0.1:$P2
up=0
for ((i = 0; i < 150; i++)); do
    [ "$(curl -s -m 2 -o /dev/null -w '%{http_code}' --cacert "$T/certs/domain.crt" "$B2/" 2>/dev/null)" = 200 ] && up=1 && break
    sleep 0.1
done
if [ "$up" = 1 ]; then
    pass "e2: TLS from REGISTRY_HTTP_TLS_CERTIFICATE on REGISTRY_HTTP_ADDR"
else
    podman_cmd logs e2 2>&1 | tail -n 10 | sed 's/^/#   e2: /'
    fail "e2: TLS from REGISTRY_HTTP_TLS_CERTIFICATE on REGISTRY_HTTP_ADDR" "no answer"
fi
check_eq "e2: anonymous /v2/ is 401" 401 "$(http GET "$B2/v2/" --cacert "$T/certs/domain.crt")"
check_match "e2: the realm is REGISTRY_AUTH_HTPASSWD_REALM's" '^Basic realm="Registry Realm"' "$(hdr WWW-Authenticate)"
check_eq "e2: testuser from the htpasswd file logs in" 200 "$(http GET "$B2/v2/" --cacert "$T/certs/domain.crt" -u testuser:testpassword)"
# The image itself, pushed into the berth it contains and pulled back (the certificate
# is its own CA; a *.key file in a cert dir would be taken for a client key).
mkdir -p "$T/trust"
cp "$T/certs/domain.crt" "$T/trust/ca.crt"
if "${SKOPEO[@]}" copy -q --dest-cert-dir "$T/trust" --dest-creds testuser:testpassword \
    "$IMG" "docker://127.0.0.1:$P2/berth:$version" >"$T/e2.push" 2>&1; then
    pass "e2: skopeo copy the oci-archive into berth"
else
    fail "e2: skopeo copy the oci-archive into berth" "$(tail -n 3 "$T/e2.push" | tr '\n' ' ')"
fi
"${SKOPEO[@]}" inspect --cert-dir "$T/trust" --creds testuser:testpassword --format '{{.Digest}}' \
    "docker://127.0.0.1:$P2/berth:$version" >"$T/e2.digest" 2>&1
check_eq "e2: berth serves the image under its digest" "$first" "$(cat "$T/e2.digest")"
if "${SKOPEO[@]}" copy -q --src-cert-dir "$T/trust" --src-creds testuser:testpassword \
    "docker://127.0.0.1:$P2/berth:$version" "oci-archive:$T/pulled-image.tar" >"$T/e2.pull" 2>&1; then
    pass "e2: skopeo pulls it back"
else
    fail "e2: skopeo pulls it back" "$(tail -n 3 "$T/e2.pull" | tr '\n' ' ')"
fi
check_eq "e2: the pulled image has the same digest" "$first" "$(digest_of "$T/pulled-image.tar")"
podman_cmd stop -t 20 e2 >/dev/null 2>&1
check_eq "e2: podman stop ends it with status 0" 0 "$(podman_cmd inspect --format '{{.State.ExitCode}}' e2 2>&1)"
podman_cmd rm e2 >/dev/null 2>&1

# ---------------------------------------------------------------- f. compose.yml
# The guides' compose example with this image: what e2 ran, as a compose file.
COMPOSE=$REPO/packaging/compose.yml
check_eq "f: compose.yml runs this version of the image" "image: berth:$version" "$(grep -o -E 'image: berth:[^ ]+' "$COMPOSE")"
check_eq "f: compose.yml sets the registry:2 variables e2 ran with" \
    "$(printf '%s\n' REGISTRY_AUTH REGISTRY_AUTH_HTPASSWD_PATH REGISTRY_AUTH_HTPASSWD_REALM \
        REGISTRY_HTTP_TLS_CERTIFICATE REGISTRY_HTTP_TLS_KEY)" \
    "$(grep -o -E '^ +REGISTRY_[A-Z_]+:' "$COMPOSE" | tr -d ' :' | sort)"
check "f: compose.yml mounts the store at the image's /var/lib/berth" grep -q -E '^ +- [^#]+:/var/lib/berth$' "$COMPOSE"
if "$PY" -c 'import yaml' 2>/dev/null; then
    check "f: compose.yml parses (YAML)" "$PY" -c 'import sys, yaml
d = yaml.safe_load(open(sys.argv[1]))
assert d["services"]["berth"]["environment"]["REGISTRY_AUTH"] == "htpasswd"' "$COMPOSE"
fi
check "f: the README's container lines name this version" grep -q "berth:$version\$" "$REPO/README.md"

summary
