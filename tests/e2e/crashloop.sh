#!/usr/bin/env bash
# The crash loop: pushes go on without pause (skopeo images, and chunked uploads with
# curl) while berth is killed with kill -9 at random moments, again and again, and
# restarted on the same port each time. At the end every tag whose push was acknowledged
# (201, or skopeo's success) resolves to its manifest, every blob that manifest names is
# there and hashes to its digest, and no blob in the store fails its digest (an upload cut
# by a kill never becomes a blob).
#
#   CRASHLOOP_KILLS=100   how many kills (default 100)
SUITE=crashloop
. "$(dirname "$0")/lib.sh"

KILLS=${CRASHLOOP_KILLS:-100}
echo "# suite: crashloop ($BERTH_BIN, $KILLS kills)"
R=$T/store
PORT=$(free_port)
ACKS=$T/acks
STOP=$T/stop
: >"$ACKS"

# Images for skopeo: each with its own random layers.
for n in 1 2 3; do
    make_image "$T/layout$n" v "crash loop image $n" || bail "umoci makes image $n"
done

start_berth "$R" "$PORT" || bail "berth starts"
BASE=$BERTH_URL

# skopeo pushes an image under a new tag each time; success means the registry answered
# 201 to the manifest.
skopeo_worker() {
    local i=0 n
    while [ ! -e "$STOP" ]; do
        i=$((i + 1))
        n=$((i % 3 + 1))
        if timeout 20 "${SKOPEO[@]}" copy -q --retry-times 0 --dest-tls-verify=false \
            "oci:$T/layout$n:v" "docker://127.0.0.1:$PORT/loop/skopeo:s$i" \
            >/dev/null 2>&1; then
            echo "loop/skopeo s$i" >>"$ACKS"
        fi
    done
}

# curl: a fresh random layer in three chunks (POST, PATCH, PATCH, PUT), a config, a
# manifest; the tag counts when the manifest PUT says 201.
curl_worker() {
    local w=$1 i=0 dir sep
    dir=$T/curl$w
    mkdir -p "$dir"
    while [ ! -e "$STOP" ]; do
        i=$((i + 1))
        head -c 300000 /dev/urandom >"$dir/layer"
        split -n 3 -d "$dir/layer" "$dir/part"
        local d size loc code
        d="sha256:$(sha256_of "$dir/layer")"
        size=$(stat -c %s "$dir/layer")
        code=$(curl -sS -m 10 -X POST -D "$dir/h" -o /dev/null -w '%{http_code}' \
            "$BASE/v2/loop/curl/blobs/uploads/" 2>/dev/null) || continue
        [ "$code" = 202 ] || continue
        loc=$(abs_url "$BASE" "$(hdr Location "$dir/h")")
        local off=0 ok=1 p len
        for p in part00 part01; do
            len=$(stat -c %s "$dir/$p")
            code=$(curl -sS -m 10 -X PATCH -D "$dir/h" -o /dev/null -w '%{http_code}' \
                -H 'Content-Type: application/octet-stream' \
                -H "Content-Range: $off-$((off + len - 1))" --data-binary "@$dir/$p" \
                "$loc" 2>/dev/null) || { ok=0; break; }
            [ "$code" = 202 ] || { ok=0; break; }
            off=$((off + len))
            loc=$(abs_url "$BASE" "$(hdr Location "$dir/h")")
        done
        [ $ok = 1 ] || continue
        case "$loc" in *\?*) sep='&' ;; *) sep='?' ;; esac
        code=$(curl -sS -m 10 -X PUT -o /dev/null -w '%{http_code}' \
            -H 'Content-Type: application/octet-stream' --data-binary "@$dir/part02" \
            "$loc${sep}digest=$d" 2>/dev/null) || continue
        [ "$code" = 201 ] || continue
        printf '{"architecture":"amd64","os":"linux","w":%s,"i":%s}' "$w" "$i" >"$dir/config"
        local cd csize
        cd="sha256:$(sha256_of "$dir/config")"
        csize=$(stat -c %s "$dir/config")
        code=$(curl -sS -m 10 -X POST -o /dev/null -w '%{http_code}' \
            -H 'Content-Type: application/octet-stream' --data-binary "@$dir/config" \
            "$BASE/v2/loop/curl/blobs/uploads/?digest=$cd" 2>/dev/null) || continue
        [ "$code" = 201 ] || continue
        printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%s}]}' \
            "$cd" "$csize" "$d" "$size" >"$dir/manifest"
        code=$(curl -sS -m 10 -X PUT -o /dev/null -w '%{http_code}' \
            -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
            --data-binary "@$dir/manifest" "$BASE/v2/loop/curl/manifests/c$w-$i" 2>/dev/null) ||
            continue
        [ "$code" = 201 ] && echo "loop/curl c$w-$i" >>"$ACKS"
    done
}

skopeo_worker &
track_pid $!
sk=$!
curl_worker 1 &
track_pid $!
c1=$!
curl_worker 2 &
track_pid $!
c2=$!

kills=0
restarts_failed=0
for ((k = 1; k <= KILLS; k++)); do
    # A random moment: 100 to 500 ms after the restart.
    sleep "0.$((RANDOM % 5 + 1))"
    pid=$BERTH_PID
    disown "$pid" 2>/dev/null
    kill -9 "$pid" 2>/dev/null && kills=$((kills + 1))
    wait_exit "$pid" 50 || true
    BERTH_PID=
    if ! start_berth "$R" "$PORT" >/dev/null; then
        restarts_failed=$((restarts_failed + 1))
        sleep 0.5
        start_berth "$R" "$PORT" >/dev/null || bail "berth restarts after kill $k"
    fi
done
touch "$STOP"
for p in $sk $c1 $c2; do
    wait_exit "$p" 300 || { disown "$p"; kill -9 "$p"; } 2>/dev/null
done
check_eq "berth was killed with kill -9 $KILLS times" "$KILLS" "$kills"
check_eq "every restart on the same port came up at once" 0 "$restarts_failed"
acked=$(wc -l <"$ACKS")
check_match "pushes were acknowledged between the kills (got $acked)" '^([2-9][0-9]|[1-9][0-9]{2,})$' "$acked"
check "both kinds of push were acknowledged" \
    bash -c "grep -q '^loop/skopeo ' '$ACKS' && grep -q '^loop/curl ' '$ACKS'"

# Every acknowledged tag: its manifest, and every blob it names, whole.
stop_berth TERM 100 || true
start_berth "$R" "$PORT" || bail "berth starts for the check"
bad=0
while read -r repo tag; do
    code=$(http GET "$BERTH_URL/v2/$repo/manifests/$tag" \
        -H 'Accept: application/vnd.oci.image.manifest.v1+json')
    if [ "$code" != 200 ]; then
        echo "# $repo:$tag: manifest GET -> $code"
        bad=$((bad + 1))
        continue
    fi
    cp "$T/http.body" "$T/m.json"
    for d in $(manifest_config "$T/m.json") $(manifest_layers "$T/m.json"); do
        code=$(http GET "$BERTH_URL/v2/$repo/blobs/$d")
        if [ "$code" != 200 ] || [ "sha256:$(sha256_of "$T/http.body")" != "$d" ]; then
            echo "# $repo:$tag: blob $d -> $code"
            bad=$((bad + 1))
        fi
    done
done <"$ACKS"
check_eq "every acknowledged tag resolves, with all its blobs intact ($acked tags)" 0 "$bad"
check_eq "no blob in the store fails its digest" "" "$(verify_store_blobs "$R")"
stop_berth TERM 100 || true

summary
