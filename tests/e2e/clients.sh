#!/usr/bin/env bash
# Real clients against berth: skopeo (OCI and Docker schema2), podman, a multi-arch index,
# a referrer, and the upload protocol driven by hand with curl (chunks, ranges, 100-continue).
# berth runs with storage.delete_enabled=false, and DELETEs must be refused.
SUITE=clients
. "$(dirname "$0")/lib.sh"

echo "# suite: clients ($BERTH_BIN)"
start_berth "$T/store" "" BERTH__STORAGE__DELETE_ENABLED=false || bail "berth starts"
B=$BERTH_URL
H=127.0.0.1:$BERTH_PORT
L=$T/layout

# ---------------------------------------------------------------- a. skopeo, OCI
make_image "$L" app "clients-a $RANDOM $(date +%s%N)" || bail "umoci builds image app"
src_app=$(layout_manifest "$L" app)
cp "$(layout_blob "$L" "$src_app")" "$T/app.manifest.json"

if "${SKOPEO[@]}" copy -q --dest-tls-verify=false --digestfile "$T/a.digest" \
    "oci:$L:app" "docker://$H/e2e/app:v1" >"$T/a.out" 2>&1; then
    pass "a: skopeo copy oci layout -> berth"
else
    fail "a: skopeo copy oci layout -> berth" "$(tail -n 3 "$T/a.out" | tr '\n' ' ')"
fi
check_eq "a: pushed manifest digest is the layout's manifest digest" "$src_app" "$(cat "$T/a.digest" 2>/dev/null)"
"${SKOPEO[@]}" inspect --tls-verify=false "docker://$H/e2e/app:v1" >"$T/a.inspect.json" 2>"$T/a.inspect.err"
check_eq "a: skopeo inspect digest equals the pushed digest" "$src_app" "$(json_get "$T/a.inspect.json" 'd["Digest"]' 2>/dev/null)"
"${SKOPEO[@]}" inspect --raw --tls-verify=false "docker://$H/e2e/app:v1" >"$T/a.raw" 2>/dev/null
check_eq "a: manifest bytes served unchanged" "$(sha256_of "$T/app.manifest.json")" "$(sha256_of "$T/a.raw")"

if "${SKOPEO[@]}" copy -q --src-tls-verify=false "docker://$H/e2e/app:v1" "oci:$T/a.pulled:v1" >"$T/a.pull.out" 2>&1; then
    pass "a: skopeo copy berth -> oci layout"
else
    fail "a: skopeo copy berth -> oci layout" "$(tail -n 3 "$T/a.pull.out" | tr '\n' ' ')"
fi
check_eq "a: pulled manifest digest" "$src_app" "$(layout_manifest "$T/a.pulled" v1)"
n=0 bad=""
for d in $(manifest_layers "$T/app.manifest.json") $(manifest_config "$T/app.manifest.json"); do
    n=$((n + 1))
    orig=$(layout_blob "$L" "$d")
    got=$(layout_blob "$T/a.pulled" "$d")
    if [ ! -f "$got" ] || [ "$(sha256_of "$got")" != "${d#sha256:}" ] || ! cmp -s "$orig" "$got"; then
        bad="$bad $d"
    fi
done
check_eq "a: $n layer/config blobs pulled back byte-identical" "" "$bad"
bad=$(verify_blob_dir "$T/a.pulled/blobs/sha256")
check_eq "a: every blob in the pulled layout hashes to its name" "" "$bad"

# ---------------------------------------------------------------- b. skopeo, Docker schema2
make_image "$L" v2s2 "clients-b $RANDOM $(date +%s%N)" || bail "umoci builds image v2s2"
src_b=$(layout_manifest "$L" v2s2)
cp "$(layout_blob "$L" "$src_b")" "$T/b.src.manifest.json"
if "${SKOPEO[@]}" copy -q --dest-tls-verify=false --format v2s2 --digestfile "$T/b.digest" \
    "oci:$L:v2s2" "docker://$H/e2e/docker:v1" >"$T/b.out" 2>&1; then
    pass "b: skopeo copy --format v2s2 -> berth"
else
    fail "b: skopeo copy --format v2s2 -> berth" "$(tail -n 3 "$T/b.out" | tr '\n' ' ')"
fi
pushed_b=$(cat "$T/b.digest" 2>/dev/null)
"${SKOPEO[@]}" inspect --raw --tls-verify=false "docker://$H/e2e/docker:v1" >"$T/b.raw" 2>/dev/null
check_eq "b: served manifest is Docker schema2" "application/vnd.docker.distribution.manifest.v2+json" \
    "$(json_get "$T/b.raw" 'd.get("mediaType")' 2>/dev/null)"
check_eq "b: sha256 of served manifest bytes equals pushed digest" "$pushed_b" "sha256:$(sha256_of "$T/b.raw")"
"${SKOPEO[@]}" inspect --tls-verify=false "docker://$H/e2e/docker:v1" >"$T/b.inspect.json" 2>/dev/null
check_eq "b: skopeo inspect digest equals pushed digest" "$pushed_b" "$(json_get "$T/b.inspect.json" 'd["Digest"]' 2>/dev/null)"
code=$(http HEAD "$B/v2/e2e/docker/manifests/v1" -I -H 'Accept: application/vnd.docker.distribution.manifest.v2+json')
check_eq "b: HEAD manifest 200" 200 "$code"
check_eq "b: HEAD Content-Type is schema2" "application/vnd.docker.distribution.manifest.v2+json" "$(hdr Content-Type)"
check_eq "b: HEAD Docker-Content-Digest" "$pushed_b" "$(hdr Docker-Content-Digest)"

rm -rf "$T/b.dir"
if "${SKOPEO[@]}" copy -q --src-tls-verify=false "docker://$H/e2e/docker:v1" "dir:$T/b.dir" >"$T/b.pull.out" 2>&1; then
    pass "b: skopeo copy berth -> dir"
else
    fail "b: skopeo copy berth -> dir" "$(tail -n 3 "$T/b.pull.out" | tr '\n' ' ')"
fi
check_eq "b: pulled manifest bytes hash to pushed digest" "$pushed_b" "sha256:$(sha256_of "$T/b.dir/manifest.json" 2>/dev/null)"
n=0 bad=""
for d in $(manifest_layers "$T/b.src.manifest.json"); do
    n=$((n + 1))
    got="$T/b.dir/${d#sha256:}"
    if [ ! -f "$got" ] || ! cmp -s "$(layout_blob "$L" "$d")" "$got"; then bad="$bad $d"; fi
done
check_eq "b: $n layer blobs pulled back byte-identical to the OCI originals" "" "$bad"
check_eq "b: schema2 layers are the original layers" "$(manifest_layers "$T/b.src.manifest.json")" "$(manifest_layers "$T/b.raw" 2>/dev/null)"
bad=$(verify_blob_dir "$T/b.dir")
check_eq "b: every pulled blob hashes to its name" "" "$bad"

# ---------------------------------------------------------------- c. podman
mkdir -p "$T/podman"
if podman_cmd pull -q --tls-verify=false "$H/e2e/app:v1" >"$T/c.pull.out" 2>&1; then
    pass "c: podman pull from berth"
else
    fail "c: podman pull from berth" "$(tail -n 3 "$T/c.pull.out" | tr '\n' ' ')"
fi
cfg_app=$(manifest_config "$T/app.manifest.json")
check_eq "c: podman image id is the pushed config digest" "${cfg_app#sha256:}" \
    "$(podman_cmd image inspect --format '{{.Id}}' "$H/e2e/app:v1" 2>/dev/null)"
podman_cmd tag "$H/e2e/app:v1" "$H/e2e/podman-copy:v2" >"$T/c.tag.out" 2>&1
if podman_cmd push -q --tls-verify=false "$H/e2e/podman-copy:v2" >"$T/c.push.out" 2>&1; then
    pass "c: podman push to berth under a new name"
else
    fail "c: podman push to berth under a new name" "$(tail -n 3 "$T/c.push.out" | tr '\n' ' ')"
fi
"${SKOPEO[@]}" inspect --tls-verify=false "docker://$H/e2e/podman-copy:v2" >"$T/c.inspect.json" 2>/dev/null
check_eq "c: new tag exists" "v2" "$(json_get "$T/c.inspect.json" '" ".join(d["RepoTags"])' 2>/dev/null)"
check_eq "c: new tag has the same layer digests" "$(manifest_layers "$T/app.manifest.json" | tr '\n' ' ')" \
    "$(json_get "$T/c.inspect.json" '" ".join(d["Layers"])' 2>/dev/null) "
"${SKOPEO[@]}" inspect --raw --tls-verify=false "docker://$H/e2e/podman-copy:v2" >"$T/c.raw" 2>/dev/null
check_eq "c: new tag has the same config digest" "$cfg_app" "$(manifest_config "$T/c.raw" 2>/dev/null)"
for d in $(manifest_layers "$T/c.raw" 2>/dev/null); do
    code=$(http GET "$B/v2/e2e/podman-copy/blobs/$d")
    check_eq "c: layer ${d:7:12} of the podman push is served with the right bytes" "200 ${d#sha256:}" "$code $(sha256_of "$T/http.body")"
done

# ---------------------------------------------------------------- d. multi-arch index
make_image "$L" amd "clients-d amd64 $RANDOM $(date +%s%N)" amd64 || bail "umoci builds amd64 image"
make_image "$L" arm "clients-d arm64 $RANDOM $(date +%s%N)" arm64 || bail "umoci builds arm64 image"
d_amd=$(layout_manifest "$L" amd)
d_arm=$(layout_manifest "$L" arm)
for pair in "amd:$d_amd" "arm:$d_arm"; do
    tag=${pair%%:*} dig=${pair#*:}
    if "${SKOPEO[@]}" copy -q --dest-tls-verify=false "oci:$L:$tag" "docker://$H/e2e/multi@$dig" >"$T/d.$tag.out" 2>&1; then
        pass "d: skopeo push $tag image by digest"
    else
        fail "d: skopeo push $tag image by digest" "$(tail -n 3 "$T/d.$tag.out" | tr '\n' ' ')"
    fi
    code=$(http GET "$B/v2/e2e/multi/manifests/$dig" -H 'Accept: application/vnd.oci.image.manifest.v1+json')
    check_eq "d: $tag manifest GET by digest" "200 ${dig#sha256:}" "$code $(sha256_of "$T/http.body")"
done
"$PY" - "$L" "$d_amd" "$d_arm" >"$T/index.json" <<'EOF'
import json, os, sys
layout, amd, arm = sys.argv[1:]
def desc(d, arch):
    size = os.path.getsize(os.path.join(layout, "blobs", "sha256", d.split(":")[1]))
    return {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": size,
            "platform": {"architecture": arch, "os": "linux"}}
idx = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
       "manifests": [desc(amd, "amd64"), desc(arm, "arm64")],
       "annotations": {"org.example.e2e": "multi"}}
sys.stdout.write(json.dumps(idx, indent=2))
EOF
d_index="sha256:$(sha256_of "$T/index.json")"
code=$(http PUT "$B/v2/e2e/multi/manifests/multi" -H 'Content-Type: application/vnd.oci.image.index.v1+json' --data-binary "@$T/index.json")
check_eq "d: PUT index under tag multi -> 201" 201 "$code"
check_eq "d: Docker-Content-Digest is sha256 of the index bytes" "$d_index" "$(hdr Docker-Content-Digest)"
"${SKOPEO[@]}" inspect --raw --tls-verify=false "docker://$H/e2e/multi:multi" >"$T/d.raw" 2>/dev/null
check "d: skopeo inspect --raw returns the index bytes unchanged" cmp -s "$T/index.json" "$T/d.raw"
check_eq "d: sha256 of inspect --raw bytes equals Docker-Content-Digest" "$d_index" "sha256:$(sha256_of "$T/d.raw")"
code=$(http GET "$B/v2/e2e/multi/manifests/multi" -H 'Accept: application/vnd.oci.image.index.v1+json')
check_eq "d: GET index by tag: status, Content-Type" "200 application/vnd.oci.image.index.v1+json" "$code $(hdr Content-Type)"
if "${SKOPEO[@]}" copy -q --all --src-tls-verify=false "docker://$H/e2e/multi:multi" "oci:$T/d.pulled:multi" >"$T/d.pull.out" 2>&1; then
    pass "d: skopeo copy --all berth -> oci layout"
else
    fail "d: skopeo copy --all berth -> oci layout" "$(tail -n 3 "$T/d.pull.out" | tr '\n' ' ')"
fi
check_eq "d: pulled layout tag points at the index" "$d_index" "$(layout_manifest "$T/d.pulled" multi)"
for dig in "$d_amd" "$d_arm"; do
    f=$(layout_blob "$T/d.pulled" "$dig")
    check_eq "d: child ${dig:7:12} came back intact" "${dig#sha256:}" "$([ -f "$f" ] && sha256_of "$f")"
    for l in $(manifest_layers "$(layout_blob "$L" "$dig")"); do
        check "d: child ${dig:7:12} layer ${l:7:12} came back identical" cmp -s "$(layout_blob "$L" "$l")" "$(layout_blob "$T/d.pulled" "$l")"
    done
done
bad=$(verify_blob_dir "$T/d.pulled/blobs/sha256")
check_eq "d: every blob in the --all layout hashes to its name" "" "$bad"

# ---------------------------------------------------------------- e. referrer
printf '{}' >"$T/empty.json"
d_empty="sha256:$(sha256_of "$T/empty.json")"
check_eq "e: empty config digest is the well-known one" "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a" "$d_empty"
code=$(blob_upload_monolithic "$B" e2e/multi "$T/empty.json")
check_eq "e: push empty config blob" "201 $d_empty" "$code $(hdr Docker-Content-Digest)"
printf 'SPDX e2e sbom %s\n' "$RANDOM$RANDOM" >"$T/sbom.txt"
d_sbom="sha256:$(sha256_of "$T/sbom.txt")"
code=$(blob_upload_monolithic "$B" e2e/multi "$T/sbom.txt")
check_eq "e: push sbom layer blob" 201 "$code"
"$PY" - "$d_empty" "$d_sbom" "$(stat -c %s "$T/sbom.txt")" "$d_index" "$(stat -c %s "$T/index.json")" >"$T/referrer.json" <<'EOF'
import json, sys
empty, sbom, sbom_size, subject, subject_size = sys.argv[1:]
m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
     "artifactType": "application/vnd.example.sbom",
     "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
     "layers": [{"mediaType": "text/spdx", "digest": sbom, "size": int(sbom_size)}],
     "subject": {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": subject, "size": int(subject_size)},
     "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}}
sys.stdout.write(json.dumps(m))
EOF
d_ref="sha256:$(sha256_of "$T/referrer.json")"
code=$(http PUT "$B/v2/e2e/multi/manifests/$d_ref" -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary "@$T/referrer.json")
check_eq "e: PUT referrer manifest by digest -> 201" 201 "$code"
check_eq "e: PUT response has OCI-Subject: <index digest>" "$d_index" "$(hdr OCI-Subject)"
check_eq "e: PUT response Docker-Content-Digest" "$d_ref" "$(hdr Docker-Content-Digest)"

code=$(http GET "$B/v2/e2e/multi/referrers/$d_index")
check_eq "e: GET referrers -> 200" 200 "$code"
check_eq "e: referrers Content-Type is an OCI index" "application/vnd.oci.image.index.v1+json" "$(hdr Content-Type)"
cp "$T/http.body" "$T/e.ref.json"
check_eq "e: referrers lists the sbom with its artifactType and size" \
    "$d_ref application/vnd.example.sbom $(stat -c %s "$T/referrer.json") application/vnd.oci.image.manifest.v1+json" \
    "$(json_get "$T/e.ref.json" '";".join("%s %s %s %s" % (m["digest"], m.get("artifactType"), m["size"], m["mediaType"]) for m in d["manifests"])' 2>/dev/null)"
check_eq "e: referrers response is an OCI index (schemaVersion, mediaType)" "2 application/vnd.oci.image.index.v1+json" \
    "$(json_get "$T/e.ref.json" '"%s %s" % (d["schemaVersion"], d.get("mediaType"))' 2>/dev/null)"

code=$(http GET "$B/v2/e2e/multi/referrers/$d_index?artifactType=application/vnd.example.sbom")
check_eq "e: filtered referrers -> 200" 200 "$code"
check_eq "e: filtered referrers carries OCI-Filters-Applied: artifactType" "artifactType" "$(hdr OCI-Filters-Applied)"
check_eq "e: filtered referrers lists the sbom" "$d_ref" "$(json_get "$T/http.body" '" ".join(m["digest"] for m in d["manifests"])' 2>/dev/null)"
code=$(http GET "$B/v2/e2e/multi/referrers/$d_index?artifactType=application/vnd.example.signature")
check_eq "e: referrers filtered by another artifactType -> 200, empty list" "200 0" \
    "$code $(json_get "$T/http.body" 'len(d["manifests"])' 2>/dev/null)"
check_eq "e: ... and it says the filter was applied" "artifactType" "$(hdr OCI-Filters-Applied)"
code=$(http GET "$B/v2/e2e/multi/referrers/$d_amd")
check_eq "e: a manifest with no referrers has an empty list" "200 0" "$code $(json_get "$T/http.body" 'len(d["manifests"])' 2>/dev/null)"

# ---------------------------------------------------------------- f. chunked upload by hand
random_file "$T/chunk.all" 300000
n=120000
m=$(stat -c %s "$T/chunk.all")
head -c "$n" "$T/chunk.all" >"$T/chunk.1"
tail -c +$((n + 1)) "$T/chunk.all" >"$T/chunk.2"
d_chunk="sha256:$(sha256_of "$T/chunk.all")"
code=$(http POST "$B/v2/e2e/chunked/blobs/uploads/")
check_eq "f: POST starts an upload -> 202" 202 "$code"
up=$(abs_url "$B" "$(hdr Location)")
check_eq "f: new upload reports Range 0-0" "0-0" "$(hdr Range)"
code=$(http PATCH "$up" -H 'Content-Type: application/octet-stream' -H "Content-Range: 0-$((n - 1))" --data-binary "@$T/chunk.1")
check_eq "f: first PATCH 0-$((n - 1)) -> 202" 202 "$code"
check_eq "f: first PATCH answers Range 0-$((n - 1))" "0-$((n - 1))" "$(hdr Range)"
up=$(abs_url "$B" "$(hdr Location)")
code=$(http GET "$up")
check_eq "f: GET upload status -> 204" 204 "$code"
check_eq "f: GET upload status shows Range 0-$((n - 1))" "0-$((n - 1))" "$(hdr Range)"
code=$(http PATCH "$up" -H 'Content-Type: application/octet-stream' -H "Content-Range: $((n + 1000))-$((m - 1))" --data-binary "@$T/chunk.2")
check_eq "f: out-of-order PATCH -> 416" 416 "$code"
check_eq "f: 416 reports the upload's Range" "0-$((n - 1))" "$(hdr Range)"
code=$(http PATCH "$up" -H 'Content-Type: application/octet-stream' -H "Content-Range: 0-$((n - 1))" --data-binary "@$T/chunk.1")
check_eq "f: repeated first chunk -> 416" 416 "$code"
code=$(http GET "$up")
check_eq "f: refused PATCHes left the upload at 0-$((n - 1))" "204 0-$((n - 1))" "$code $(hdr Range)"
code=$(http PATCH "$up" -H 'Content-Type: application/octet-stream' -H "Content-Range: $n-$((m - 1))" --data-binary "@$T/chunk.1")
check_eq "f: PATCH whose body is shorter than its Content-Range -> 400 BLOB_UPLOAD_INVALID" "400 BLOB_UPLOAD_INVALID" \
    "$code $(json_get "$T/http.body" 'd["errors"][0]["code"]' 2>/dev/null)"
code=$(http GET "$up")
check_eq "f: the short PATCH was rolled back (still 0-$((n - 1)))" "204 0-$((n - 1))" "$code $(hdr Range)"
code=$(http PATCH "$up" -H 'Content-Type: application/octet-stream' -H "Content-Range: $n-$((m - 1))" --data-binary "@$T/chunk.2")
check_eq "f: second PATCH $n-$((m - 1)) -> 202" 202 "$code"
check_eq "f: second PATCH answers Range 0-$((m - 1))" "0-$((m - 1))" "$(hdr Range)"
up=$(abs_url "$B" "$(hdr Location)")
code=$(http PUT "$up?digest=$d_chunk")
check_eq "f: PUT ?digest= completes -> 201" 201 "$code"
check_eq "f: PUT Docker-Content-Digest" "$d_chunk" "$(hdr Docker-Content-Digest)"
check_eq "f: PUT Location is the blob" "/v2/e2e/chunked/blobs/$d_chunk" "$(hdr Location | sed "s#^$B##")"
code=$(http GET "$up")
check_eq "f: finished upload is gone -> 404" 404 "$code"
code=$(http GET "$B/v2/e2e/chunked/blobs/$d_chunk")
check_eq "f: blob GET -> 200" 200 "$code"
check "f: blob GET returns exactly the uploaded bytes" cmp -s "$T/chunk.all" "$T/http.body"
check_eq "f: blob GET Content-Length" "$m" "$(hdr Content-Length)"
code=$(http HEAD "$B/v2/e2e/chunked/blobs/$d_chunk" -I)
check_eq "f: blob HEAD -> 200 with Content-Length and digest" "200 $m $d_chunk" "$code $(hdr Content-Length) $(hdr Docker-Content-Digest)"
code=$(http GET "$B/v2/e2e/chunked/blobs/$d_chunk" -H 'Range: bytes=5-9')
check_eq "f: Range bytes=5-9 -> 206" 206 "$code"
check_eq "f: Range bytes=5-9 returns those 5 bytes" "$(dd if="$T/chunk.all" bs=1 skip=5 count=5 2>/dev/null | od -An -tx1 | tr -d ' \n')" \
    "$(od -An -tx1 "$T/http.body" | tr -d ' \n')"
check_eq "f: Range bytes=5-9 Content-Range and Content-Length" "bytes 5-9/$m 5" "$(hdr Content-Range) $(hdr Content-Length)"
code=$(http GET "$B/v2/e2e/chunked/blobs/$d_chunk" -H "Range: bytes=$m-")
check_eq "f: Range past the end -> 416" 416 "$code"
code=$(http GET "$B/v2/e2e/other/blobs/$d_chunk")
check_eq "f: blob is not visible from another repository" 404 "$code"

# a wrong digest is refused and nothing becomes visible
code=$(http POST "$B/v2/e2e/chunked/blobs/uploads/")
up=$(abs_url "$B" "$(hdr Location)")
wrong="sha256:$(printf 'not the content' | sha256sum | cut -d' ' -f1)"
code=$(http PUT "$up?digest=$wrong" -H 'Content-Type: application/octet-stream' --data-binary "@$T/chunk.1")
check_eq "f: PUT with a digest that does not match -> 400 DIGEST_INVALID" "400 DIGEST_INVALID" \
    "$code $(json_get "$T/http.body" 'd["errors"][0]["code"]' 2>/dev/null)"
code=$(http HEAD "$B/v2/e2e/chunked/blobs/$wrong" -I)
check_eq "f: the mismatched blob is not visible" 404 "$code"
check "f: nothing stored under the wrong digest" test ! -e "$(store_blob_path "$T/store" "$wrong")"

# ---------------------------------------------------------------- g. Expect: 100-continue
random_file "$T/big.bin" $((8 * 1024 * 1024 + 13))
d_big="sha256:$(sha256_of "$T/big.bin")"
code=$(http POST "$B/v2/e2e/expect/blobs/uploads/")
up=$(abs_url "$B" "$(hdr Location)")
code=$(curl -sS -v -X PUT -H 'Expect: 100-continue' -H 'Content-Type: application/octet-stream' \
    --expect100-timeout 10 --data-binary "@$T/big.bin" -o /dev/null -w '%{http_code}' \
    "$up?digest=$d_big" 2>"$T/g.verbose" || true)
check_eq "g: PUT with Expect: 100-continue -> 201" 201 "$code"
check "g: berth answered 100 Continue before the body" grep -q '^< HTTP/1.1 100' "$T/g.verbose"
code=$(http GET "$B/v2/e2e/expect/blobs/$d_big")
check_eq "g: blob matches" "200 ${d_big#sha256:}" "$code $(sha256_of "$T/http.body")"

random_file "$T/big2.bin" $((3 * 1024 * 1024 + 7))
d_big2="sha256:$(sha256_of "$T/big2.bin")"
code=$(curl -sS -v -X POST -H 'Expect: 100-continue' -H 'Content-Type: application/octet-stream' \
    --expect100-timeout 10 --data-binary "@$T/big2.bin" -o /dev/null -w '%{http_code}' \
    "$B/v2/e2e/expect/blobs/uploads/?digest=$d_big2" 2>"$T/g2.verbose" || true)
check_eq "g: monolithic POST ?digest= with Expect: 100-continue -> 201" 201 "$code"
check "g: ... answered 100 Continue" grep -q '^< HTTP/1.1 100' "$T/g2.verbose"
code=$(http GET "$B/v2/e2e/expect/blobs/$d_big2")
check_eq "g: monolithic blob matches" "200 ${d_big2#sha256:}" "$code $(sha256_of "$T/http.body")"

code=$(curl -sS -v -X PUT -H 'Expect: 100-continue' -H 'Content-Type: application/octet-stream' \
    --expect100-timeout 10 --data-binary "@$T/big2.bin" -o "$T/g3.body" -w '%{http_code}' \
    "$B/v2/e2e/expect/blobs/uploads/6f1c8a52-0000-4000-8000-000000000000?digest=$d_big2" 2>"$T/g3.verbose" || true)
check_eq "g: Expect: 100-continue to an unknown upload -> 404 BLOB_UPLOAD_UNKNOWN" "404 BLOB_UPLOAD_UNKNOWN" \
    "$code $(json_get "$T/g3.body" 'd["errors"][0]["code"]' 2>/dev/null)"
if grep -q '^< HTTP/1.1 100' "$T/g3.verbose"; then
    fail "g: ... refused without asking for the body" "berth sent 100 Continue"
else
    pass "g: ... refused without asking for the body"
fi
code=$(http GET "$B/v2/")
check_eq "g: berth still answers afterwards" 200 "$code"

# ---------------------------------------------------------------- deletes disabled
code=$(http DELETE "$B/v2/e2e/app/manifests/$src_app")
check_eq "storage.delete_enabled=false: DELETE manifest -> 405 UNSUPPORTED" "405 UNSUPPORTED" \
    "$code $(json_get "$T/http.body" 'd["errors"][0]["code"]' 2>/dev/null)"
code=$(http DELETE "$B/v2/e2e/chunked/blobs/$d_chunk")
check_eq "storage.delete_enabled=false: DELETE blob -> 405" 405 "$code"
code=$(http GET "$B/v2/e2e/app/manifests/v1" -H 'Accept: application/vnd.oci.image.manifest.v1+json')
check_eq "the manifest is still served after the refused DELETE" "200 $src_app" "$code $(hdr Docker-Content-Digest)"

# ---------------------------------------------------------------- catalog over everything
code=$(http GET "$B/v2/_catalog")
# As distribution does: every repository holding blobs or manifests (chunked and expect
# hold only blobs).
check_eq "catalog lists every repository with blobs or manifests" "e2e/app e2e/chunked e2e/docker e2e/expect e2e/multi e2e/podman-copy" \
    "$(json_get "$T/http.body" '" ".join(d["repositories"])' 2>/dev/null)"
bad=$(verify_store_blobs "$T/store")
check_eq "every blob in berth's store hashes to its name" "" "$bad"

check_eq "berth logged no errors" "" "$(grep -E '(^| )(ERROR|WARN) ' "$BERTH_LOG" | head -n 3)"
stop_berth TERM 100
check_eq "berth stops on SIGTERM, exit status 0" 0 "${BERTH_EXIT:-still running}"
summary
