#!/usr/bin/env bash
# Process death and shutdown during uploads: kill -9 mid-upload (nothing half-written becomes
# a blob; the upload resumes after a restart), SIGTERM mid-upload (the request finishes within
# the grace period, then berth exits by itself), SIGINT (exits at once).
SUITE=crash
. "$(dirname "$0")/lib.sh"

echo "# suite: crash ($BERTH_BIN)"
R=$T/store
REPO=e2e/crash
SIZE=$((64 * 1024 * 1024))

random_file "$T/big1.bin" $SIZE
random_file "$T/big2.bin" $SIZE
d1="sha256:$(sha256_of "$T/big1.bin")"
d2="sha256:$(sha256_of "$T/big2.bin")"

# ================================================================ kill -9 during uploads
start_berth "$R" || bail "berth starts"
code=$(http POST "$BERTH_URL/v2/$REPO/blobs/uploads/")
check_eq "POST starts upload 1" 202 "$code"
loc1=$(hdr Location | sed -E 's#^https?://[^/]+##') # path: berth restarts on another port
id1=$(hdr Docker-Upload-UUID)
updata1="$R/docker/registry/v2/repositories/$REPO/_uploads/$id1/data"
check "upload 1 has its data file in the layout" test -f "$updata1"

# Upload 1: a streamed PATCH (to resume later). Upload 2: a monolithic POST ?digest=.
curl -sS -X PATCH -H 'Content-Type: application/octet-stream' --limit-rate 2M \
    --data-binary "@$T/big1.bin" -o /dev/null -w '%{http_code}' "$(abs_url "$BERTH_URL" "$loc1")" \
    >"$T/patch1.code" 2>"$T/patch1.err" &
c1=$!
track_pid $c1
curl -sS -X POST -H 'Content-Type: application/octet-stream' --limit-rate 2M \
    --data-binary "@$T/big2.bin" -o /dev/null -w '%{http_code}' "$BERTH_URL/v2/$REPO/blobs/uploads/?digest=$d2" \
    >"$T/post2.code" 2>"$T/post2.err" &
c2=$!
track_pid $c2
# Wait until bytes are arriving, then let ~1 s of them land.
for ((i = 0; i < 100; i++)); do
    [ "$(stat -c %s "$updata1" 2>/dev/null || echo 0)" -gt 0 ] && break
    sleep 0.1
done
sleep 1
killed_pid=$BERTH_PID
disown "$killed_pid" 2>/dev/null # no "Killed" job notice
kill -9 "$killed_pid"
check "berth dies on kill -9" wait_exit "$killed_pid" 50
BERTH_PID=
wait_exit $c1 100 || { disown $c1; kill -9 $c1; } 2>/dev/null
wait_exit $c2 100 || { disown $c2; kill -9 $c2; } 2>/dev/null
check_ne "the interrupted PATCH did not succeed" 202 "$(cat "$T/patch1.code" 2>/dev/null)"
check_ne "the interrupted monolithic POST did not succeed" 201 "$(cat "$T/post2.code" 2>/dev/null)"

for pair in "1:$d1" "2:$d2"; do
    n=${pair%%:*} d=${pair#*:}
    hex=${d#sha256:}
    check "no blob directory for upload $n's digest after kill -9" \
        test ! -e "$R/docker/registry/v2/blobs/sha256/${hex:0:2}/$hex"
    check_eq "no file anywhere under blobs/ names upload $n's digest" "" \
        "$(find "$R/docker/registry/v2/blobs" -name "*$hex*" 2>/dev/null)"
done
check_eq "nothing under blobs/ fails its digest" "" "$(verify_store_blobs "$R")"
check "no layer link for upload 1's digest" test ! -e "$R/docker/registry/v2/repositories/$REPO/_layers/sha256/${d1#sha256:}"

start_berth "$R" || bail "berth restarts after kill -9"
for pair in "1:$d1" "2:$d2"; do
    n=${pair%%:*} d=${pair#*:}
    code=$(http HEAD "$BERTH_URL/v2/$REPO/blobs/$d" -I)
    check_eq "after restart: HEAD upload $n's digest -> 404" 404 "$code"
    code=$(http GET "$BERTH_URL/v2/$REPO/blobs/$d")
    check_eq "after restart: GET upload $n's digest -> 404" 404 "$code"
done

# ---- resume upload 1 where the dead process left it
survived=$(stat -c %s "$updata1" 2>/dev/null || echo missing)
check_match "some of upload 1 survived on disk (got $survived of $SIZE bytes)" '^[1-9][0-9]*$' "$survived"
if [[ "$survived" =~ ^[0-9]+$ ]] && [ "$survived" -lt "$SIZE" ]; then
    pass "upload 1 was cut short ($survived < $SIZE)"
else
    fail "upload 1 was cut short" "on disk: $survived bytes of $SIZE"
    survived=0
fi
check "the surviving bytes are exactly the file's prefix" cmp -n "$survived" "$updata1" "$T/big1.bin"
code=$(http GET "$BERTH_URL$loc1")
check_eq "GET old upload status after restart -> 204" 204 "$code"
check_eq "old upload's Range shows what survived" "0-$((survived - 1))" "$(hdr Range)"
check_eq "old upload's Docker-Upload-UUID" "$id1" "$(hdr Docker-Upload-UUID)"
tail -c +$((survived + 1)) "$T/big1.bin" >"$T/rest1.bin"
code=$(http PATCH "$BERTH_URL$loc1" -H 'Content-Type: application/octet-stream' \
    -H "Content-Range: $survived-$((SIZE - 1))" --data-binary "@$T/rest1.bin")
check_eq "PATCH the remainder ($survived-$((SIZE - 1))) -> 202" 202 "$code"
check_eq "upload now reports the whole file" "0-$((SIZE - 1))" "$(hdr Range)"
loc1b=$(hdr Location)
code=$(http PUT "$(abs_url "$BERTH_URL" "$loc1b")?digest=$d1")
check_eq "PUT ?digest= completes the resumed upload -> 201" 201 "$code"
check_eq "resumed upload's Docker-Content-Digest" "$d1" "$(hdr Docker-Content-Digest)"
code=$(http HEAD "$BERTH_URL/v2/$REPO/blobs/$d1" -I)
check_eq "HEAD resumed blob -> 200, Content-Length $SIZE" "200 $SIZE" "$code $(hdr Content-Length)"
code=$(http GET "$BERTH_URL/v2/$REPO/blobs/$d1")
check_eq "resumed blob's bytes are right" "200 ${d1#sha256:}" "$code $(sha256_of "$T/http.body")"
check_eq "resumed blob on disk hashes right" "${d1#sha256:}" "$(sha256_of "$(store_blob_path "$R" "$d1")" 2>/dev/null)"

# ---- a fresh monolithic upload of the file whose monolithic push was killed
code=$(blob_upload_monolithic "$BERTH_URL" "$REPO" "$T/big2.bin")
check_eq "fresh monolithic upload of file 2 -> 201" 201 "$code"
code=$(http HEAD "$BERTH_URL/v2/$REPO/blobs/$d2" -I)
check_eq "HEAD file 2 -> 200 with Content-Length $SIZE" "200 $SIZE" "$code $(hdr Content-Length)"
code=$(http GET "$BERTH_URL/v2/$REPO/blobs/$d2")
check_eq "file 2's bytes are right" "200 ${d2#sha256:}" "$code $(sha256_of "$T/http.body")"
check_eq "everything under blobs/ hashes right" "" "$(verify_store_blobs "$R")"
stop_berth INT 30
check_eq "berth stops on SIGINT at once (3 s), exit status 0" 0 "${BERTH_EXIT:-still running}"

# ================================================================ SIGTERM mid-upload
R2=$T/store-term
TSIZE=$((5 * 1024 * 1024))
random_file "$T/term.bin" $TSIZE
dt="sha256:$(sha256_of "$T/term.bin")"
start_berth "$R2" "" BERTH__HTTP__SHUTDOWN_GRACE=10s || bail "berth starts (grace 10s)"
code=$(http POST "$BERTH_URL/v2/$REPO/blobs/uploads/")
check_eq "POST starts the upload that SIGTERM will interrupt" 202 "$code"
loct=$(abs_url "$BERTH_URL" "$(hdr Location)")
started=$(date +%s%N)
curl -sS -X PUT -H 'Content-Type: application/octet-stream' --limit-rate 2M \
    --data-binary "@$T/term.bin" -o "$T/term.body" -D "$T/term.headers" -w '%{http_code}' "$loct?digest=$dt" \
    >"$T/term.code" 2>"$T/term.err" &
ct=$!
track_pid $ct
# SIGTERM only once the body is really arriving (under load curl may take a while to
# connect, and a connection not yet accepted is rightly refused by a stopping server).
tid=${loct##*/}
tid=${tid%%\?*}
for _ in $(seq 1 50); do
    sz=$(stat -c %s "$R2/docker/registry/v2/repositories/$REPO/_uploads/$tid/data" 2>/dev/null || echo 0)
    [ "${sz:-0}" -gt 0 ] && break
    sleep 0.1
done
term_pid=$BERTH_PID
kill -TERM "$term_pid"
if wait_exit $ct 150; then
    pass "the slow upload's request ended within the grace period"
else
    fail "the slow upload's request ended within the grace period" "curl still running after 15 s"
fi
took=$((($(date +%s%N) - started) / 1000000))
check_eq "the upload in flight at SIGTERM completed -> 201" 201 "$(cat "$T/term.code" 2>/dev/null)"
check_match "the upload really was in flight at SIGTERM (took ${took} ms)" '^([1-9][0-9]{3,})$' "$took"
check_eq "its Docker-Content-Digest" "$dt" "$(hdr Docker-Content-Digest "$T/term.headers")"
if wait_exit "$term_pid" 200; then
    pass "berth exits by itself after SIGTERM (within 20 s)"
    check_eq "berth's exit status after SIGTERM" 0 "$WAIT_RC"
else
    fail "berth exits by itself after SIGTERM (within 20 s)" "still running"
    { disown "$term_pid"; kill -9 "$term_pid"; } 2>/dev/null
fi
BERTH_PID=
check "berth logged the graceful shutdown" grep -q 'SIGTERM received' "$BERTH_LOG"
check_eq "the blob is intact on disk" "${dt#sha256:}" "$(sha256_of "$(store_blob_path "$R2" "$dt")" 2>/dev/null)"
start_berth "$R2" || bail "berth restarts after SIGTERM"
code=$(http GET "$BERTH_URL/v2/$REPO/blobs/$dt")
check_eq "after restart the blob is served intact" "200 ${dt#sha256:}" "$code $(sha256_of "$T/http.body")"

# ================================================================ SIGINT mid-upload: immediate
random_file "$T/int.bin" $TSIZE
di="sha256:$(sha256_of "$T/int.bin")"
code=$(http POST "$BERTH_URL/v2/$REPO/blobs/uploads/")
loci=$(abs_url "$BERTH_URL" "$(hdr Location)")
curl -sS -X PUT -H 'Content-Type: application/octet-stream' --limit-rate 1M \
    --data-binary "@$T/int.bin" -o /dev/null -w '%{http_code}' "$loci?digest=$di" \
    >"$T/int.code" 2>"$T/int.err" &
ci=$!
track_pid $ci
sleep 0.5
int_pid=$BERTH_PID
kill -INT "$int_pid"
if wait_exit "$int_pid" 20; then
    pass "SIGINT with an upload in flight: berth exits within 2 s"
else
    fail "SIGINT with an upload in flight: berth exits within 2 s" "still running"
    { disown "$int_pid"; kill -9 "$int_pid"; } 2>/dev/null
fi
BERTH_PID=
wait_exit $ci 100 || { disown $ci; kill -9 $ci; } 2>/dev/null
check_ne "the upload cut by SIGINT did not succeed" 201 "$(cat "$T/int.code" 2>/dev/null)"
check "the upload cut by SIGINT left no blob" test ! -e "$(store_blob_path "$R2" "$di")"
check_eq "everything under blobs/ hashes right" "" "$(verify_store_blobs "$R2")"

summary
