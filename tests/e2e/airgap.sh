#!/usr/bin/env bash
# Air-gapped sites: `berth export` and `berth import` with real clients, all on loopback.
#   A: a berth holding images pushed with skopeo (two-layer images, a multi-arch index),
#      with curl (an artifact whose subject is an image: a referrer; an image with a foreign
#      layer; 10-layer images sharing 9 layers; a 4 x 48 MiB image).
#   Export from A while it serves; import into empty stores inside `unshare -n` (a network
#   namespace with nothing but a down loopback: the isolated side), then serve them and pull
#   back with skopeo: digests, referrers, catalog and tag lists equal.
#   Interop: skopeo reads berth's layout (oci: and oci-archive:) into docker-registry;
#   layouts written by `skopeo copy --all ... oci:` and by umoci import into berth.
#   Faults: a flipped byte, a truncated blob, kill -9 mid-import (re-run equals an
#   uninterrupted import), a full disk (a 40 MiB tmpfs in a private mount namespace).
#   Incremental: --since writes only the layer a new tag does not share.
SUITE=airgap
. "$(dirname "$0")/lib.sh"
ensure_tools || bail "tools missing"
E2E_TOOLS=(unshare:util-linux script:bsdutils tar:tar) ensure_tools || bail "unshare, script and tar are installed"

# berth_cli STORE ARGS...: a berth command on the store STORE (its state beside it).
berth_cli() {
    local store=$1
    shift
    env BERTH__STORAGE__ROOT="$store" BERTH__STATE__DIR="$store.state" NO_COLOR=1 "$BERTH_BIN" "$@"
}
# isolated STORE ARGS...: the same, in a network namespace without interfaces.
isolated() {
    local store=$1
    shift
    unshare -n env BERTH__STORAGE__ROOT="$store" BERTH__STATE__DIR="$store.state" NO_COLOR=1 \
        "$BERTH_BIN" "$@"
}
# tags_of STORE: "repo:tag=digest" lines of every tag in a store, sorted.
tags_of() {
    local root=$1/docker/registry/v2/repositories f rel
    [ -d "$root" ] || return 0
    find "$root" -path '*/_manifests/tags/*/current/link' | while IFS= read -r f; do
        rel=${f#"$root"/}
        echo "${rel%%/_manifests/*}:$(basename "$(dirname "$(dirname "$f")")")=$(cat "$f")"
    done | sort
}
# links_of STORE: every link file (repository path and target) of a store, sorted: what
# a client can reach.
links_of() {
    local root=$1/docker/registry/v2/repositories
    [ -d "$root" ] || return 0
    (cd "$root" && find . -name link -not -path '*/_uploads/*' -exec sh -c 'printf "%s %s\n" "$1" "$(cat "$1")"' _ {} \; | sort)
}

# push_synthetic BASE REPO TAG SEED N MIB [SHARED_SEED]: pushes an image of N layers of MIB
# MiB each (layer i's bytes from SEED-i; with SHARED_SEED, layers 0..N-2 come from it, so
# two such images share all but the last layer). Prints the manifest digest.
push_synthetic() {
    "$PY" - "$@" <<'EOF'
import hashlib, json, random, sys, urllib.request
base, repo, tag, seed, n, mib = sys.argv[1:7]
shared = sys.argv[7] if len(sys.argv) > 7 else None
n, mib = int(n), int(mib)
def push(data):
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    req = urllib.request.Request(f"{base}/v2/{repo}/blobs/uploads/?digest={d}", data=data, method="POST")
    assert urllib.request.urlopen(req).status == 201
    return {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": len(data)}
layers = []
for i in range(n):
    s = shared if shared is not None and i < n - 1 else seed
    layers.append(push(random.Random(f"{s}-{i}").randbytes(mib << 20)))
cfg = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers",
      "diff_ids": [l["digest"] for l in layers]}, "config": {"Labels": {"seed": seed}}}).encode()
c = push(cfg); c["mediaType"] = "application/vnd.oci.image.config.v1+json"
body = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                   "config": c, "layers": layers}).encode()
req = urllib.request.Request(f"{base}/v2/{repo}/manifests/{tag}", data=body, method="PUT",
      headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
assert urllib.request.urlopen(req).status == 201
print("sha256:" + hashlib.sha256(body).hexdigest())
EOF
}

# put_manifest BASE REPO REF FILE: PUT of an OCI manifest; prints the status.
put_manifest() {
    http PUT "$1/v2/$2/manifests/$3" -H "Content-Type: application/vnd.oci.image.manifest.v1+json" \
        --data-binary "@$4"
}

# ---------------------------------------------------------------- registry A and its images
A=$T/a
start_berth "$A" || bail "berth A starts"
A_URL=$BERTH_URL A_HOST=${BERTH_URL#http://} A_PID=$BERTH_PID
L=$T/layout
make_image "$L" v1 "airgap v1" && make_image "$L" amd "multi amd64" amd64 &&
    make_image "$L" arm "multi arm64" arm64 || bail "umoci"
make_index "$L" multi amd:amd64 arm:arm64 || bail "index"
"${SKOPEO[@]}" copy -q --dest-tls-verify=false "oci:$L:v1" "docker://$A_HOST/app/web:v1" >"$T/push.out" 2>&1 &&
    "${SKOPEO[@]}" copy -q --dest-tls-verify=false "oci:$L:v1" "docker://$A_HOST/app/web:v1.1" >>"$T/push.out" 2>&1 &&
    "${SKOPEO[@]}" copy -q --all --dest-tls-verify=false "oci:$L:multi" "docker://$A_HOST/app/multi:1.0" >>"$T/push.out" 2>&1 ||
    { sed 's/^/# /' "$T/push.out"; bail "skopeo pushes to A"; }
D_WEB=$(layout_manifest "$L" v1) D_MULTI=$(layout_manifest "$L" multi)
WEB_SIZE=$(stat -c %s "$(layout_blob "$L" "$D_WEB")")

# An artifact (a "signature") whose subject is app/web:v1: a referrer.
printf '{}' >"$T/empty.json"
printf 'signed: %s\n' "$D_WEB" >"$T/sig.txt"
[ "$(blob_upload_monolithic "$A_URL" app/web "$T/empty.json")" = 201 ] &&
    [ "$(blob_upload_monolithic "$A_URL" app/web "$T/sig.txt")" = 201 ] || bail "artifact blobs"
cat >"$T/sig.json" <<EOF
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
 "artifactType":"application/vnd.example.signature",
 "config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:$(sha256_of "$T/empty.json")","size":2},
 "layers":[{"mediaType":"text/plain","digest":"sha256:$(sha256_of "$T/sig.txt")","size":$(stat -c %s "$T/sig.txt")}],
 "subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"$D_WEB","size":$WEB_SIZE}}
EOF
D_SIG="sha256:$(sha256_of "$T/sig.json")"
check_eq "A: the signature is pushed with its subject" 201 "$(put_manifest "$A_URL" app/web "$D_SIG" "$T/sig.json")"

# An image with a foreign layer: its bytes live elsewhere and are never carried.
printf '{"architecture":"amd64","os":"windows","rootfs":{"type":"layers","diff_ids":[]}}' >"$T/fcfg.json"
[ "$(blob_upload_monolithic "$A_URL" app/foreign "$T/fcfg.json")" = 201 ] || bail "foreign config"
FOREIGN="sha256:$(printf 'not here' | sha256sum | cut -d' ' -f1)"
cat >"$T/foreign.json" <<EOF
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
 "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:$(sha256_of "$T/fcfg.json")","size":$(stat -c %s "$T/fcfg.json")},
 "layers":[{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip","digest":"$FOREIGN","size":12345,
            "urls":["https://mcr.example.com/layer.tar.gz"]}]}
EOF
check_eq "A: an image with a foreign layer is pushed" 201 "$(put_manifest "$A_URL" app/foreign v1 "$T/foreign.json")"
D_FOREIGN="sha256:$(sha256_of "$T/foreign.json")"
D_INC1=$(push_synthetic "$A_URL" inc/img v1 inc-a 10 1) &&
    D_INC2=$(push_synthetic "$A_URL" inc/img v2 inc-b 10 1 inc-a) &&
    D_BIG=$(push_synthetic "$A_URL" big/img v1 big 4 48) || bail "synthetic images"
pass "A holds skopeo's images, a referrer, a foreign layer and synthetic images"

# ---------------------------------------------------------------- export while A serves
X=$T/x
if berth_cli "$A" export --out "$X" 'app/*' >"$T/export.out" 2>"$T/export.err"; then
    pass "export app/* while A serves"
else
    fail "export app/* while A serves" "$(tail -n 3 "$T/export.err" | tr '\n' ' ')"
fi
check_match "export prints a summary" "exported 3 repositories, 4 tags" "$(cat "$T/export.out")"
check_eq "the layout's index names every tag as repo:tag" \
    "app/foreign:v1 app/multi:1.0 app/web:v1 app/web:v1.1" \
    "$(json_get "$X/index.json" '" ".join(sorted(m["annotations"]["org.opencontainers.image.ref.name"] for m in d["manifests"] if "org.opencontainers.image.ref.name" in m["annotations"]))')"
check_eq "the referrer is in the index with its repository" "app/web" \
    "$(json_get "$X/index.json" '"".join(m["annotations"].get("dev.berth.repository","") for m in d["manifests"] if m["digest"]=="'"$D_SIG"'")')"
check "every blob of the layout hashes to its name" verify_blob_dir "$X/blobs/sha256"
check "the foreign layer's bytes are not carried" test ! -e "$(layout_blob "$X" "$FOREIGN")"
check "the multi-arch children are in the layout" test -s "$(layout_blob "$X" "$(layout_manifest "$L" arm)")"
berth_cli "$A" export --out "$X.tar" 'app/*' >/dev/null 2>"$T/export-tar.err" ||
    fail "export to a .tar" "$(tail -n 2 "$T/export-tar.err" | tr '\n' ' ')"
check_match "the .tar is a tar of the layout" "index.json" "$(tar -tf "$X.tar" 2>&1 | tr '\n' ' ')"
berth_cli "$A" export --out "$T/xg" --no-referrers 'app/*:v1*' >/dev/null 2>&1 ||
    fail "export of a tag glob"
check_eq "a tag glob selects the matching tags of every matching repository" \
    "app/foreign:v1 app/web:v1 app/web:v1.1" \
    "$(json_get "$T/xg/index.json" '" ".join(sorted(m["annotations"].get("org.opencontainers.image.ref.name","-") for m in d["manifests"]))')"
check "--no-referrers leaves the signature out" test ! -e "$(layout_blob "$T/xg" "$D_SIG")"
berth_cli "$A" export --out "$T/xr" --tag-regex '^v1\.1$' app/web >/dev/null 2>&1 || fail "export with --tag-regex"
check_eq "--tag-regex narrows a repository's tags" "app/web:v1.1" \
    "$(json_get "$T/xr/index.json" '" ".join(m["annotations"].get("org.opencontainers.image.ref.name","") for m in d["manifests"] if "org.opencontainers.image.ref.name" in m["annotations"])')"
check_match "a bad selector is refused naming it" "selector \"Bad/Name\"" \
    "$(berth_cli "$A" export --out "$T/no" Bad/Name 2>&1)"
check_match "a selector matching nothing is refused" "matches no repository" \
    "$(berth_cli "$A" export --out "$T/no" 'nothing/*' 2>&1)"

# ---------------------------------------------------------------- import on the isolated side
B=$T/b
if isolated "$B" import "$X" >"$T/import.out" 2>"$T/import.err"; then
    pass "import into an empty store inside unshare -n"
else
    fail "import into an empty store inside unshare -n" "$(tail -n 3 "$T/import.err" | tr '\n' ' ')"
fi
check_match "import prints a summary" "imported 3 repositories, 4 tags" "$(cat "$T/import.out")"
check_match "without a terminal, progress is a line per blob" "^import: app/" "$(head -n 1 "$T/import.err")"
check_eq "the imported tags are the exported ones" "$(tags_of "$A" | grep '^app/')" "$(tags_of "$B")"
isolated "$B" import "$X" >"$T/import2.out" 2>&1
# On a terminal (script(1) gives it a pty) progress is one line redrawn in place.
script -qec "env BERTH__STORAGE__ROOT='$T/tty' BERTH__STATE__DIR='$T/tty.state' '$BERTH_BIN' import '$X'" /dev/null >"$T/tty.out" 2>&1
check_match "on a terminal, progress redraws one line with the rate and time left" \
    $'\r.*import: [0-9]+/[0-9]+ items, .* of .*/s, ETA' "$(cat "$T/tty.out")"
check_match "a second import writes nothing" "; 0 blobs written" "$(cat "$T/import2.out")"

start_berth "$B" || bail "berth B starts"
B_URL=$BERTH_URL B_HOST=${BERTH_URL#http://}
for ref in app/web:v1 app/web:v1.1 app/multi:1.0 app/foreign:v1; do
    a=$("${SKOPEO[@]}" inspect --raw --tls-verify=false "docker://$A_HOST/$ref" | sha256sum)
    b=$("${SKOPEO[@]}" inspect --raw --tls-verify=false "docker://$B_HOST/$ref" | sha256sum)
    check_eq "B serves $ref with A's digest" "$a" "$b"
done
if "${SKOPEO[@]}" copy -q --all --src-tls-verify=false "docker://$B_HOST/app/multi:1.0" "oci:$T/pulled:multi" >"$T/pull.out" 2>&1 &&
    "${SKOPEO[@]}" copy -q --src-tls-verify=false "docker://$B_HOST/app/web:v1" "oci:$T/pulled:web" >>"$T/pull.out" 2>&1; then
    pass "skopeo pulls the index with all platforms and the image from B"
else
    fail "skopeo pulls the index with all platforms and the image from B" "$(tail -n 3 "$T/pull.out" | tr '\n' ' ')"
fi
check_eq "the pulled index is the pushed one" "$D_MULTI" "$(layout_manifest "$T/pulled" multi)"
check "the pulled image's blobs are intact" verify_blob_dir "$T/pulled/blobs/sha256"
curl -s "$B_URL/v2/app/web/referrers/$D_WEB" >"$T/refs.json"
check_eq "B lists the signature as a referrer of app/web:v1" "$D_SIG application/vnd.example.signature" \
    "$(json_get "$T/refs.json" '" ".join(m["digest"]+" "+m.get("artifactType","") for m in d["manifests"])')"
check_eq "B's catalog is A's app/ repositories" \
    "$(curl -s "$A_URL/v2/_catalog" | "$PY" -c 'import json,sys; print(" ".join(r for r in json.load(sys.stdin)["repositories"] if r.startswith("app/")))')" \
    "$(curl -s "$B_URL/v2/_catalog" | "$PY" -c 'import json,sys; print(" ".join(json.load(sys.stdin)["repositories"]))')"
check_eq "B's tag list of app/web is A's" "$(curl -s "$A_URL/v2/app/web/tags/list")" "$(curl -s "$B_URL/v2/app/web/tags/list")"

# A tar through a pipe: export to stdout, import from stdin.
P=$T/p
if berth_cli "$A" export --out - app/web:v1 2>"$T/pipe-export.err" | isolated "$P" import - >"$T/pipe.out" 2>&1; then
    pass "export --out - | import - carries app/web:v1"
else
    fail "export --out - | import - carries app/web:v1" "$(tail -n 3 "$T/pipe.out" | tr '\n' ' ')"
fi
check_eq "the piped import holds the tag (and the signature's repository link)" \
    "app/web:v1=$D_WEB" "$(tags_of "$P")"
check "the spooled copy of stdin is removed" bash -c "[ -z \"\$(ls -A '$P.state' 2>/dev/null)\" ]"

# ---------------------------------------------------------------- interop
start_reference_registry "$T/reg" || bail "docker-registry starts"
REG_HOST=${REG_URL#http://}
check_run "skopeo copies oci:LAYOUT:app/web:v1 into docker-registry" "$T/i1.out" "${SKOPEO[@]}" copy -q --dest-tls-verify=false "oci:$X:app/web:v1" "docker://$REG_HOST/from-dir/web:v1"
check_run "skopeo copies --all oci-archive:LAYOUT.tar:app/multi:1.0 into docker-registry" "$T/i2.out" "${SKOPEO[@]}" copy -q --all --dest-tls-verify=false "oci-archive:$X.tar:app/multi:1.0" "docker://$REG_HOST/from-tar/multi:1.0"
check_eq "docker-registry serves the index skopeo read from the tar" "$(curl -s "$A_URL/v2/app/multi/manifests/1.0" -H 'Accept: application/vnd.oci.image.index.v1+json' | sha256sum)" \
    "$(curl -s "$REG_URL/v2/from-tar/multi/manifests/1.0" -H 'Accept: application/vnd.oci.image.index.v1+json' | sha256sum)"
"${SKOPEO[@]}" copy -q --all --src-tls-verify=false "docker://$A_HOST/app/multi:1.0" "oci:$T/sk:multi" >"$T/sk.out" 2>&1 ||
    fail "skopeo writes an oci: layout" "$(tail -n 2 "$T/sk.out")"
check_run "a layout written by skopeo copy --all imports into B while it serves" "$T/sk-import.out" berth_cli "$B" import --repo sk/multi "$T/sk"
check_eq "B serves it under --repo with the same digest" "$D_MULTI" \
    "$(curl -s -o /dev/null -D - "$B_URL/v2/sk/multi/manifests/multi" -H 'Accept: application/vnd.oci.image.index.v1+json' | tr -d '\r' | awk -F': ' 'tolower($1)=="docker-content-digest"{print $2}')"
check_run "a layout written by umoci imports into B" "$T/umoci-import.out" berth_cli "$B" import --repo umoci/img "$L"
check_eq "umoci's tags are B's umoci/img tags" '{"name":"umoci/img","tags":["amd","arm","multi","v1"]}' \
    "$(curl -s "$B_URL/v2/umoci/img/tags/list")"
check_match "a layout with bare tags and no --repo is refused with the fix" "give --repo NAME" \
    "$(berth_cli "$T/none" import "$L" 2>&1)"

# ---------------------------------------------------------------- faults
C=$T/c
cp -r "$X" "$T/xc"
BAD=$(layout_blob "$T/xc" "$(manifest_layers "$(layout_blob "$L" "$D_WEB")" | tail -n 1)")
"$PY" -c 'import sys; f=open(sys.argv[1],"r+b"); f.seek(1000); b=f.read(1); f.seek(1000); f.write(bytes([b[0]^1]))' "$BAD"
out=$(isolated "$C" import "$T/xc" 2>&1)
rc=$?
check_ne "a flipped byte fails the import" 0 "$rc"
check_match "the error names the corrupt blob" "${BAD#"$T/xc/"}" "$out"
check_eq "no tag is stored after the refused import" "" "$(tags_of "$C")"
cp -r "$X" "$T/xt"
TRUNC=$(layout_blob "$T/xt" "$(manifest_layers "$(layout_blob "$L" "$D_WEB")" | tail -n 1)")
truncate -s 100 "$TRUNC"
out=$(isolated "$T/ct" import "$T/xt" 2>&1)
check_match "a truncated blob is refused before anything is written, naming it" "${TRUNC#"$T/xt/"}.*truncated" "$out"
check "the refused layout left no blob in the store" test ! -e "$T/ct/docker/registry/v2/blobs"
out=$(isolated "$T/dry" import --dry-run "$X" 2>&1)
check_match "--dry-run says what would be added" "would add [0-9]+ blobs" "$out"
check "--dry-run writes nothing" test ! -e "$T/dry/docker/registry/v2/repositories"

# kill -9 halfway through an import of the 4 x 48 MiB image, then again to the end.
berth_cli "$A" export --out "$T/big" big/img >/dev/null 2>&1 || fail "export big/img"
K=$T/k
isolated "$K" import "$T/big" >"$T/k1.out" 2>&1 &
KPID=$!
track_pid "$KPID"
for ((i = 0; i < 300; i++)); do
    [ "$(find "$K/docker/registry/v2/blobs" -name data 2>/dev/null | wc -l)" -ge 1 ] && break
    sleep 0.05
done
KILLED_AT=$(find "$K/docker/registry/v2/blobs" -name data 2>/dev/null | wc -l)
kill -9 "$KPID" 2>/dev/null
wait "$KPID" 2>/dev/null
check "the import was killed midway (not finished: $KILLED_AT of its 6 blob files stored)" \
    bash -c "[ $KILLED_AT -ge 1 ] && [ $KILLED_AT -lt 6 ] && ! grep -q '^imported' '$T/k1.out'"
check_eq "the killed import left no tag" "" "$(tags_of "$K")"
isolated "$K" import "$T/big" >"$T/k2.out" 2>&1 || fail "the re-run import completes" "$(tail -n 2 "$T/k2.out")"
isolated "$T/u" import "$T/big" >/dev/null 2>&1 || fail "an uninterrupted import"
check_eq "the re-run's result equals an uninterrupted import" "$(links_of "$T/u")" "$(links_of "$K")"
check_eq "the re-run's tag is big/img:v1" "big/img:v1=$D_BIG" "$(tags_of "$K")"
check "the re-run's blobs are intact" verify_store_blobs "$K"

# A full disk: a 40 MiB tmpfs in a mount namespace of its own (gone when it exits).
out=$(unshare -m -n bash -c '
    mkdir -p "$1" && mount -t tmpfs -o size=40m tmpfs "$1" || exit 99
    env BERTH__STORAGE__ROOT="$1/store" BERTH__STATE__DIR="$1/state" NO_COLOR=1 "$2" import "$3" 2>&1
    echo "rc=$?"
    find "$1/store" -path "*/_manifests/tags/*" -name link | wc -l | sed "s/^/tags=/"' _ "$T/full" "$BERTH_BIN" "$T/big")
check_match "a full disk stops the import with 507 and the cause" "507.*(space|storage|full)" "$out"
check_match "the import exits non-zero on a full disk" "rc=[1-9]" "$out"
check_match "nothing is tagged on the full disk" "tags=0" "$out"

# Beside a collector that unlinks untagged manifests: tags are set by a PUT of the whole
# manifest, so one unlinked between the content and the tag comes back.
GC_STORE=$T/gcs
isolated "$GC_STORE" import "$X" >/dev/null 2>&1 || fail "a first import for the collector test"
isolated "$GC_STORE" import "$T/big" >"$T/gc-import.out" 2>&1 &
GC_IMPORT=$!
track_pid "$GC_IMPORT"
gcs=0
while proc_alive "$GC_IMPORT" && [ $gcs -lt 200 ]; do
    berth_cli "$GC_STORE" gc --delete-untagged >/dev/null 2>&1 || true
    gcs=$((gcs + 1))
done
wait "$GC_IMPORT"
check_eq "an import beside $gcs runs of gc --delete-untagged succeeds" 0 "$?"
check_match "and stores its tag" "big/img:v1=$D_BIG" "$(tags_of "$GC_STORE")"
check "and fsck finds the store whole" berth_cli "$GC_STORE" fsck

# ---------------------------------------------------------------- incremental
berth_cli "$A" export --out "$T/inc1" inc/img:v1 >/dev/null 2>&1 || fail "export inc/img:v1"
berth_cli "$A" export --out "$T/inc2" --since "$T/inc1" inc/img:v2 >"$T/inc2.out" 2>&1 ||
    fail "export inc/img:v2 --since inc1" "$(tail -n 2 "$T/inc2.out")"
NEW=$(manifest_layers "$(layout_blob "$T/inc1" "$D_INC1")" | sort >"$T/l1"; berth_cli "$A" export --out "$T/inc2full" inc/img:v2 >/dev/null 2>&1;
    manifest_layers "$(layout_blob "$T/inc2full" "$D_INC2")" | sort | comm -13 "$T/l1" -)
check_eq "v2 has exactly one layer v1 lacks" 1 "$(echo "$NEW" | grep -c .)"
check_eq "the incremental layout's blobs: the new layer, the config, the manifest" 3 \
    "$(find "$T/inc2/blobs/sha256" -type f | wc -l)"
check "the new layer is among them" test -s "$(layout_blob "$T/inc2" "$NEW")"
check_match "the summary: the new layer and config written, the 9 shared layers skipped" \
    "2 blobs written \(1.0 MiB\), 9 skipped" "$(cat "$T/inc2.out")"
check "the incremental layout is under 1.1 MiB" bash -c "[ \$(du -sb '$T/inc2/blobs' | cut -f1) -lt 1153434 ]"
G=$T/g
isolated "$G" import "$T/inc1" >/dev/null 2>&1 && isolated "$G" import "$T/inc2" >"$T/g.out" 2>&1 ||
    fail "importing the full then the incremental layout" "$(tail -n 2 "$T/g.out")"
check_eq "both tags arrive" "inc/img:v1=$D_INC1 inc/img:v2=$D_INC2" "$(tags_of "$G" | tr '\n' ' ' | sed 's/ $//')"
check_match "an incremental layout into a store without its base is refused" "missing from the layout, and not in the store" \
    "$(isolated "$T/nobase" import "$T/inc2" 2>&1)"

summary
