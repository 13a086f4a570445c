#!/usr/bin/env bash
# On-disk compatibility with distribution's registry 2.8 (Debian's docker-registry) on the
# SAME directory, both ways: what berth writes, registry:2 serves intact, and the reverse.
SUITE=compat
. "$(dirname "$0")/lib.sh"

echo "# suite: compat ($BERTH_BIN, $(docker-registry --version 2>/dev/null))"
export BERTH_GRACE=1s
L=$T/layout

# push_workload PREFIX BASE_URL: pushes the same shape of content to the registry at
# BASE_URL, recording `repo tag digest` lines in $T/PREFIX.tags and every manifest digest
# (tagged or not) in $T/PREFIX.digests:
#   e2e/oci:v1                  OCI image
#   e2e/docker:v1               Docker schema2 image (skopeo --format v2s2)
#   e2e/oci:latest              pushed twice: re-pointed from one image to another
#   e2e/deep/nested/multi:multi OCI index of an amd64 and an arm64 image pushed by digest
#   e2e/deep-sea:v1             the OCI image again (a name that sorts between the others
#                               differently byte-wise and component-wise)
#   e2e/interrupted             a blob but no manifest: a push that died before its manifest
push_workload() {
    local p=$1 base=$2 host=${2#http://} d tag
    : >"$T/$p.tags"
    : >"$T/$p.digests"
    local i
    for i in oci docker old new amd arm; do
        local arch=""
        [ "$i" = amd ] && arch=amd64
        [ "$i" = arm ] && arch=arm64
        make_image "$L" "$p-$i" "compat $p $i $RANDOM $(date +%s%N)" $arch || return 1
    done
    _push() { # name src dest [extra skopeo args]; sets PUSHED
        local name=$1 src=$2 dest=$3
        shift 3
        PUSHED=sha256:push-failed
        if "${SKOPEO[@]}" copy -q --dest-tls-verify=false --digestfile "$T/$p.dfile" "$@" \
            "oci:$L:$src" "docker://$host/$dest" >"$T/$p.push.out" 2>&1; then
            pass "$p: push $name"
            PUSHED=$(cat "$T/$p.dfile")
        else
            fail "$p: push $name" "$(tail -n 2 "$T/$p.push.out" | tr '\n' ' ')"
        fi
    }
    _push "OCI image e2e/oci:v1" "$p-oci" e2e/oci:v1; d=$PUSHED
    echo "e2e/oci v1 $d" >>"$T/$p.tags"
    echo "e2e/oci $d" >>"$T/$p.digests"
    _push "schema2 image e2e/docker:v1" "$p-docker" e2e/docker:v1 --format v2s2; d=$PUSHED
    echo "e2e/docker v1 $d" >>"$T/$p.tags"
    echo "e2e/docker $d" >>"$T/$p.digests"
    _push "e2e/oci:latest (first)" "$p-old" e2e/oci:latest; d=$PUSHED
    echo "$d" >"$T/$p.old"
    echo "e2e/oci $d" >>"$T/$p.digests"
    _push "e2e/oci:latest (re-pointed)" "$p-new" e2e/oci:latest; d=$PUSHED
    echo "e2e/oci latest $d" >>"$T/$p.tags"
    echo "e2e/oci $d" >>"$T/$p.digests"
    check_ne "$p: re-pointed tag changed digest" "$(cat "$T/$p.old")" "$d"
    local children=()
    for tag in amd arm; do
        d=$(layout_manifest "$L" "$p-$tag")
        _push "$tag image by digest" "$p-$tag" "e2e/deep/nested/multi@$d"
        check_eq "$p: $tag image pushed under its layout digest" "$d" "$PUSHED"
        children+=("$d")
        echo "e2e/deep/nested/multi $d" >>"$T/$p.digests"
    done
    "$PY" - "$L" "${children[@]}" >"$T/$p.index.json" <<'EOF'
import json, os, sys
layout, amd, arm = sys.argv[1:]
def desc(d, arch):
    size = os.path.getsize(os.path.join(layout, "blobs", "sha256", d.split(":")[1]))
    return {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": size,
            "platform": {"architecture": arch, "os": "linux"}}
sys.stdout.write(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                             "manifests": [desc(amd, "amd64"), desc(arm, "arm64")]}))
EOF
    local code
    code=$(http PUT "$base/v2/e2e/deep/nested/multi/manifests/multi" \
        -H 'Content-Type: application/vnd.oci.image.index.v1+json' --data-binary "@$T/$p.index.json")
    d="sha256:$(sha256_of "$T/$p.index.json")"
    check_eq "$p: PUT OCI index e2e/deep/nested/multi:multi" "201 $d" "$code $(hdr Docker-Content-Digest)"
    echo "e2e/deep/nested/multi multi $d" >>"$T/$p.tags"
    echo "e2e/deep/nested/multi $d" >>"$T/$p.digests"
    _push "the OCI image again as e2e/deep-sea:v1" "$p-oci" e2e/deep-sea:v1
    echo "e2e/deep-sea v1 $PUSHED" >>"$T/$p.tags"
    echo "e2e/deep-sea $PUSHED" >>"$T/$p.digests"
    random_file "$T/$p.orphan" 4096
    code=$(blob_upload_post_put "$base" e2e/interrupted "$T/$p.orphan")
    check_eq "$p: upload a blob to e2e/interrupted (no manifest follows)" 201 "$code"
}

# Every repository the workload creates, in distribution's catalog order (component-wise:
# "/" sorts before every other character), and those that have manifests.
ALL_REPOS="e2e/deep/nested/multi e2e/deep-sea e2e/docker e2e/interrupted e2e/oci"
MANIFEST_REPOS="e2e/deep/nested/multi e2e/deep-sea e2e/docker e2e/oci"

# words_sorted "a b c": the words sorted byte-wise, space-separated.
words_sorted() {
    echo $1 | tr ' ' '\n' | grep -v '^$' | LC_ALL=C sort | paste -sd' '
}

# only_words_in "LIST" "OTHER": the words of LIST that are also in OTHER, in LIST's order.
only_words_in() {
    local w out=""
    for w in $1; do
        case " $2 " in *" $w "*) out="$out $w" ;; esac
    done
    echo "${out# }"
}

# check_same NAME LABEL1 VALUE1 LABEL2 VALUE2: the two registries agree.
check_same() {
    if [ "$3" == "$5" ]; then
        pass "$1"
    else
        fail "$1" "$2: '$3'; $4: '$5'"
    fi
}

# tag_list BASE REPO: "STATUS tag tag..." (tags sorted).
tag_list() {
    local code
    code=$(http GET "$1/v2/$2/tags/list")
    echo "$code $(json_get "$T/http.body" '" ".join(sorted(d.get("tags") or []))' 2>/dev/null)"
}

# snapshot PREFIX BASE_URL: the catalog and the tag list of every workload repository as
# the writer sees them.
snapshot() {
    local p=$1 base=$2 repo
    http GET "$base/v2/_catalog" >/dev/null
    json_get "$T/http.body" '" ".join(d["repositories"])' >"$T/$p.catalog" 2>/dev/null
    : >"$T/$p.taglists"
    for repo in $ALL_REPOS; do
        echo "$repo: $(tag_list "$base" "$repo")" >>"$T/$p.taglists"
    done
    # Sanity: every repository with manifests is listed, and tagged as pushed.
    check_eq "$p: the writer's catalog lists every repository with manifests" "$(words_sorted "$MANIFEST_REPOS")" \
        "$(words_sorted "$(sed 's#e2e/interrupted##' "$T/$p.catalog")")"
    check_eq "$p: the writer's tag lists" "e2e/deep/nested/multi: 200 multi|e2e/deep-sea: 200 v1|e2e/docker: 200 v1|e2e/oci: 200 latest v1" \
        "$(grep -v '^e2e/interrupted:' "$T/$p.taglists" | paste -sd'|')"
}

# verify_reader PREFIX WHO BASE_URL WRITER: WHO (the other registry) serves everything
# PREFIX's WRITER recorded, intact, and lists the same catalog and tags.
verify_reader() {
    local p=$1 who=$2 base=$3 host=${3#http://} writer=$4 repo tag d code
    while read -r repo tag d; do
        "${SKOPEO[@]}" inspect --raw --tls-verify=false "docker://$host/$repo:$tag" >"$T/$p.raw" 2>"$T/$p.raw.err"
        check_eq "$p: $who serves $repo:$tag with the writer's manifest digest" "$d" "sha256:$(sha256_of "$T/$p.raw")"
        "${SKOPEO[@]}" inspect --tls-verify=false "docker://$host/$repo:$tag" >"$T/$p.inspect" 2>/dev/null
        if [ "$tag" != multi ]; then
            check_eq "$p: $who skopeo inspect $repo:$tag digest" "$d" "$(json_get "$T/$p.inspect" 'd["Digest"]' 2>/dev/null)"
        fi
        local out="$T/$p.pull.${repo//\//_}.$tag"
        rm -rf "$out"
        if "${SKOPEO[@]}" copy -q --all --src-tls-verify=false "docker://$host/$repo:$tag" "dir:$out" >"$T/$p.pull.out" 2>&1; then
            pass "$p: skopeo copy $repo:$tag out of $who"
        else
            fail "$p: skopeo copy $repo:$tag out of $who" "$(tail -n 2 "$T/$p.pull.out" | tr '\n' ' ')"
            continue
        fi
        check_eq "$p: pulled $repo:$tag manifest hashes to the writer's digest" "$d" "sha256:$(sha256_of "$out/manifest.json")"
        local bad="" f n=0
        for f in "$out"/*.manifest.json; do
            [ -e "$f" ] || continue
            n=$((n + 1))
            [ "$(sha256_of "$f")" = "$(basename "$f" .manifest.json)" ] || bad="$bad $f"
        done
        bad="$bad$(verify_blob_dir "$out" | tr '\n' ' ')"
        check_eq "$p: every blob of $repo:$tag ($(ls "$out" | grep -c -E '^[0-9a-f]{64}$') blobs, $n child manifests) hashes right" "" "$bad"
    done <"$T/$p.tags"
    while read -r repo d; do
        code=$(http GET "$base/v2/$repo/manifests/$d" -H 'Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json')
        check_eq "$p: $who serves $repo@${d:7:12} by digest" "200 $d" "$code sha256:$(sha256_of "$T/http.body")"
    done <"$T/$p.digests"
    local orphan
    orphan="sha256:$(sha256_of "$T/$p.orphan")"
    code=$(http HEAD "$base/v2/e2e/interrupted/blobs/$orphan" -I)
    check_eq "$p: $who serves the blob of the interrupted push" "200 4096" "$code $(hdr Content-Length)"

    http GET "$base/v2/_catalog" >/dev/null
    json_get "$T/http.body" '" ".join(d["repositories"])' >"$T/$p.catalog.reader" 2>/dev/null
    local w=$writer r
    check_same "$p: _catalog on the same directory lists the same repositories" \
        "$w" "$(words_sorted "$(cat "$T/$p.catalog")")" "$who" "$(words_sorted "$(cat "$T/$p.catalog.reader")")"
    check_same "$p: _catalog lists the repositories both list in the same order" \
        "$w" "$(only_words_in "$(cat "$T/$p.catalog")" "$(cat "$T/$p.catalog.reader")")" \
        "$who" "$(only_words_in "$(cat "$T/$p.catalog.reader")" "$(cat "$T/$p.catalog")")"
    for repo in $ALL_REPOS; do
        r=$(tag_list "$base" "$repo")
        check_same "$p: tags/list $repo (status, tags) is the same" \
            "$w" "$(grep "^$repo: " "$T/$p.taglists" | sed "s#^$repo: ##")" "$who" "$r"
    done
}

# check_tag_history PREFIX ROOT: the re-pointed tag keeps both digests in its index, and
# current/link names the second.
check_tag_history() {
    local p=$1 root=$2 tagdir
    tagdir="$root/docker/registry/v2/repositories/e2e/oci/_manifests/tags/latest"
    check_eq "$p: tag index of e2e/oci:latest holds both digests" \
        "$(printf '%s\n' "$(cat "$T/$p.old")" "$(awk '$1=="e2e/oci" && $2=="latest"{print $3}' "$T/$p.tags")" | sort | tr '\n' ' ')" \
        "$(ls "$tagdir/index/sha256" 2>/dev/null | sed 's/^/sha256:/' | sort | tr '\n' ' ')"
    check_eq "$p: current/link of e2e/oci:latest names the re-pointed digest" \
        "$(awk '$1=="e2e/oci" && $2=="latest"{print $3}' "$T/$p.tags")" "$(cat "$tagdir/current/link" 2>/dev/null)"
}

# check_links PREFIX ROOT: every link file is exactly `sha256:<64 hex>`, no newline.
check_links() {
    local p=$1 root=$2 f n=0 bad=""
    while IFS= read -r f; do
        n=$((n + 1))
        if ! "$PY" -c 'import re,sys; b=open(sys.argv[1],"rb").read(); sys.exit(0 if re.fullmatch(rb"sha256:[0-9a-f]{64}", b) else 1)' "$f"; then
            bad="$bad ${f#"$root"/}"
        fi
    done < <(find "$root/docker/registry/v2/repositories" -type f -name link)
    check_match "$p: the layout has link files" '^[1-9][0-9]*$' "$n"
    check_eq "$p: all $n link files are exactly sha256:<hex> with no trailing newline" "" "$bad"
}

# ================================================================ a. berth writes, registry:2 reads
A=$T/root-a
start_berth "$A" || bail "a: berth starts"
push_workload a "$BERTH_URL" || bail "a: workload images build"
# berth-only state beside distribution's: a referrer of the index (kept under _referrers).
printf '{}' >"$T/empty.json"
blob_upload_monolithic "$BERTH_URL" e2e/deep/nested/multi "$T/empty.json" >/dev/null
d_idx=$(awk '$2=="multi"{print $3}' "$T/a.tags")
"$PY" - "$d_idx" "$(stat -c %s "$T/a.index.json")" >"$T/a.referrer.json" <<'EOF'
import json, sys
e = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
sys.stdout.write(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "artifactType": "application/vnd.example.sbom",
    "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": e, "size": 2},
    "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": e, "size": 2}],
    "subject": {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": sys.argv[1], "size": int(sys.argv[2])}}))
EOF
d_ref="sha256:$(sha256_of "$T/a.referrer.json")"
code=$(http PUT "$BERTH_URL/v2/e2e/deep/nested/multi/manifests/$d_ref" -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary "@$T/a.referrer.json")
check_eq "a: berth stores a referrer of the index" 201 "$code"
echo "e2e/deep/nested/multi $d_ref" >>"$T/a.digests"
snapshot a "$BERTH_URL"
stop_berth TERM 100
check_eq "a: berth stops on SIGTERM, exit status 0" 0 "${BERTH_EXIT:-still running}"
check_tag_history a "$A"

start_reference_registry "$A" || bail "a: docker-registry starts on berth's directory"
verify_reader a docker-registry "$REG_URL" berth
stop_reference_registry
bad=$(verify_store_blobs "$A")
check_eq "a: every blob in the store hashes to its name" "" "$bad"

# ================================================================ b. registry:2 writes, berth reads
B=$T/root-b
start_reference_registry "$B" || bail "b: docker-registry starts"
push_workload b "$REG_URL" || bail "b: workload images build"
snapshot b "$REG_URL"
check_eq "b: docker-registry's catalog, in distribution's order" "$ALL_REPOS" "$(cat "$T/b.catalog")"
stop_reference_registry
check_tag_history b "$B"

start_berth "$B" || bail "b: berth starts on docker-registry's directory"
verify_reader b berth "$BERTH_URL" docker-registry
# berth writes into registry:2's tree too, and registry:2 still serves everything after.
d_b_oci=$(awk '$1=="e2e/oci" && $2=="v1"{print $3}' "$T/b.tags")
"${SKOPEO[@]}" copy -q --src-tls-verify=false --dest-tls-verify=false \
    "docker://127.0.0.1:$BERTH_PORT/e2e/oci:v1" "docker://127.0.0.1:$BERTH_PORT/e2e/berth-added:v9" >"$T/b.add.out" 2>&1
code=$(http GET "$BERTH_URL/v2/e2e/berth-added/manifests/v9" -H 'Accept: application/vnd.oci.image.manifest.v1+json')
check_eq "b: berth adds a tag in registry:2's tree" "200 $d_b_oci" "$code $(hdr Docker-Content-Digest)"
stop_berth TERM 100
check_eq "b: berth stops on SIGTERM, exit status 0" 0 "${BERTH_EXIT:-still running}"
start_reference_registry "$B" || bail "b: docker-registry restarts"
code=$(http GET "$REG_URL/v2/e2e/berth-added/manifests/v9" -H 'Accept: application/vnd.oci.image.manifest.v1+json')
check_eq "b: docker-registry serves the tag berth added" "200 $d_b_oci" "$code $(hdr Docker-Content-Digest)"
http GET "$REG_URL/v2/_catalog" >/dev/null
check_eq "b: docker-registry's catalog includes berth's repo" "e2e/berth-added $ALL_REPOS" \
    "$(json_get "$T/http.body" '" ".join(d["repositories"])' 2>/dev/null)"
stop_reference_registry
bad=$(verify_store_blobs "$B")
check_eq "b: every blob in the store hashes to its name" "" "$bad"

# ================================================================ c. link files
check_links a "$A"
check_links b "$B"
f=$(find "$A/docker/registry/v2/repositories/e2e/oci/_manifests/tags/v1/current" -name link)
check_eq "c: berth's e2e/oci:v1 current/link bytes" "$(awk '$1=="e2e/oci" && $2=="v1"{print $3}' "$T/a.tags" | tr -d '\n' | od -An -c)" \
    "$(od -An -c "$f" 2>/dev/null)"
f=$(find "$B/docker/registry/v2/repositories/e2e/berth-added/_manifests/tags/v9/current" -name link)
check_eq "c: link berth wrote in registry:2's tree is 71 bytes, no newline" "71 $d_b_oci" "$(stat -c %s "$f" 2>/dev/null) $(cat "$f" 2>/dev/null)"

summary
