#!/usr/bin/env bash
# The web UI: HTTP-level checks with curl (headers, cookie flags, CSRF and origin refusals,
# the switch, no leak of a repository a user may not pull), then a real browser (Debian's
# headless Chromium driven by playwright-core from npm, tests/e2e/ui.js): log in, browse to
# images pushed by skopeo, an index and a platform, a referrer, the pull command, a delete
# allowed and one refused, log out. Screenshots go to target/ui-screenshots/.
SUITE=ui
. "$(dirname "$0")/lib.sh"
ensure_tools || bail "tools missing"
E2E_TOOLS=(htpasswd:apache2-utils chromium:chromium node:nodejs npm:npm) ensure_tools ||
    bail "htpasswd, chromium, node and npm are installed"
NODE_DIR=${BERTH_UI_NODE_DIR:-$HOME/.cache/berth/ui-node}
if [ ! -d "$NODE_DIR/node_modules/playwright-core" ]; then
    mkdir -p "$NODE_DIR"
    npm install --silent --no-audit --no-fund --prefix "$NODE_DIR" playwright-core@1 >"$T/npm.log" 2>&1 ||
        { sed 's/^/# /' "$T/npm.log" | tail -n 5; bail "npm install playwright-core"; }
fi
SHOTS=$(cd "$E2E_DIR/../.." && pwd)/target/ui-screenshots
rm -rf "$SHOTS" && mkdir -p "$SHOTS"

# Users: root (admin), alice (team/* and public/* in full), bob (pulls team/*), carol
# (secret/*); anonymous pulls public/*.
: >"$T/htpasswd"
for u in root:root-pass-0 alice:alice-pass-1 bob:bob-pass-2 carol:carol-pass-3; do
    htpasswd -Bb "$T/htpasswd" "${u%%:*}" "${u#*:}" >/dev/null 2>&1 || bail "htpasswd"
done
cat >"$T/berth.toml" <<EOF
[storage]
delete_enabled = true
[gc]
interval = "0s"
[state]
dir = "$T/state"
[auth]
mode = "htpasswd"
admins = ["root"]
[auth.htpasswd]
path = "$T/htpasswd"
[[auth.rules]]
repositories = ["public/*"]
users = ["anonymous"]
actions = ["pull"]
[[auth.rules]]
repositories = ["team/*", "public/*"]
users = ["alice"]
actions = ["*"]
[[auth.rules]]
repositories = ["team/*"]
users = ["bob"]
actions = ["pull"]
[[auth.rules]]
repositories = ["secret/*"]
users = ["carol"]
actions = ["*"]
EOF
BERTH_READY_CODE=401 start_berth "$T/store" "" BERTH_CONFIG="$T/berth.toml" || bail "berth starts with htpasswd and rules"
BASE=$BERTH_URL HOST=${BERTH_URL#http://}

L=$T/layout
make_image "$L" v1 "ui v1" && make_image "$L" v2 "ui v2" && make_image "$L" amd "ui amd64" amd64 &&
    make_image "$L" arm "ui arm64" arm64 || bail "umoci"
make_index "$L" multi amd:amd64 arm:arm64 || bail "index"
push() { # LAYOUT_TAG DEST USER:PASS [--all]
    "${SKOPEO[@]}" copy -q ${4:-} --dest-tls-verify=false --dest-creds "$3" "oci:$L:$1" "docker://$HOST/$2" >>"$T/push.out" 2>&1
}
push v1 team/web:v1 alice:alice-pass-1 && push v2 team/web:v2 alice:alice-pass-1 &&
    push multi team/multi:1.0 alice:alice-pass-1 --all && push v1 public/hello:latest alice:alice-pass-1 &&
    push v2 secret/x:1 carol:carol-pass-3 || { sed 's/^/# /' "$T/push.out"; bail "skopeo pushes"; }
D_WEB=$(layout_manifest "$L" v1)
printf '{}' >"$T/empty.json" && printf 'signed\n' >"$T/sig.txt"
A=(-u alice:alice-pass-1)
for f in "$T/empty.json" "$T/sig.txt"; do
    http POST "$BASE/v2/team/web/blobs/uploads/?digest=sha256:$(sha256_of "$f")" "${A[@]}" --data-binary "@$f" >/dev/null
done
cat >"$T/sig.json" <<EOF
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.example.signature",
 "config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:$(sha256_of "$T/empty.json")","size":2},
 "layers":[{"mediaType":"text/plain","digest":"sha256:$(sha256_of "$T/sig.txt")","size":7}],
 "subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"$D_WEB","size":$(stat -c %s "$(layout_blob "$L" "$D_WEB")")}}
EOF
check_eq "a signature of team/web:v1 is pushed" 201 "$(http PUT "$BASE/v2/team/web/manifests/sha256:$(sha256_of "$T/sig.json")" "${A[@]}" \
    -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary "@$T/sig.json")"

# ---------------------------------------------------------------- HTTP level
check_eq "a health checker's GET / still gets 200" 200 "$(http GET "$BASE/")"
check_eq "a browser's GET / is sent to /ui/" "303 /ui/" "$(http GET "$BASE/" -H 'Accept: text/html,*/*') $(hdr Location)"
check_eq "the UI answers 200" 200 "$(http GET "$BASE/ui/")"
check_match "pages carry a strict CSP" "default-src 'none'; style-src 'self'; script-src 'self'.*frame-ancestors 'none'" "$(hdr Content-Security-Policy)"
check_eq "pages may not be framed" DENY "$(hdr X-Frame-Options)"
check_match "pages have no inline script or style" "^0$" "$(grep -c -E '<script>|<style>| style=| on[a-z]+=' "$T/http.body")"
CSS=$(grep -o '/ui/static/app\.[0-9a-f]*\.css' "$T/http.body")
check_eq "the stylesheet is served" 200 "$(http GET "$BASE$CSS")"
check_match "under its content hash with a year's cache" "max-age=31536000, immutable" "$(hdr Cache-Control)"
check_eq "a login from another origin is refused" 403 \
    "$(http POST "$BASE/ui/login" -H 'Origin: http://evil.example' --data 'username=alice&password=alice-pass-1')"
check_eq "a wrong password gets the form again with 401" 401 \
    "$(http POST "$BASE/ui/login" -H "Origin: $BASE" --data 'username=alice&password=nope')"
check_eq "a right one gets a session and is sent on" 303 \
    "$(http POST "$BASE/ui/login" -H "Origin: $BASE" --data 'username=bob&password=bob-pass-2')"
COOKIE=$(hdr Set-Cookie)
check_match "the session cookie is HttpOnly, SameSite=Strict, short-lived" "^berth_ui=[^;]+; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=3600$" "$COOKIE"
BOB=(-H "Cookie: ${COOKIE%%;*}" -H "Origin: $BASE")
http GET "$BASE/ui/r/team/web" "${BOB[@]}" >/dev/null
CSRF=$(grep -o 'name="csrf" value="[^"]*"' "$T/http.body" | head -n 1 | sed 's/.*value="//; s/"$//')
check_ne "bob's pages carry a CSRF token" "" "$CSRF"
check_eq "a POST without the token is refused" 403 "$(http POST "$BASE/ui/delete" "${BOB[@]}" --data 'repo=team/web&tag=v1')"
check_eq "a POST with it but from another origin is refused" 403 \
    "$(http POST "$BASE/ui/delete" -H "Cookie: ${COOKIE%%;*}" -H 'Origin: http://evil.example' --data "csrf=$CSRF&repo=team/web&tag=v1")"
check_eq "bob's delete with the token is refused by the rules" 403 \
    "$(http POST "$BASE/ui/delete" "${BOB[@]}" --data "csrf=$CSRF&repo=team/web&tag=v1")"
check_eq "and team/web:v1 is still served" 200 "$(http HEAD "$BASE/v2/team/web/manifests/v1" -u bob:bob-pass-2)"
leaks=0
for p in /ui/ "/ui/?q=sec" /ui/r/team/web /ui/r/team/multi "/ui/m/team/web@$D_WEB" /ui/r/secret/x /ui/login; do
    http GET "$BASE$p" "${BOB[@]}" >/dev/null
    grep -q 'secret' "$T/http.body" && { leaks=$((leaks + 1)); echo "# leak on $p"; }
done
check_eq "no page shows bob a trace of secret/*" 0 "$leaks"
check_eq "secret/x is a 404 for bob, as if it did not exist" 404 "$(http GET "$BASE/ui/r/secret/x" "${BOB[@]}")"
check_eq "and for anonymous visitors" 404 "$(http GET "$BASE/ui/r/secret/x")"
check_eq "a forged cookie is no session" "0" "$(http GET "$BASE/ui/" -H 'Cookie: berth_ui=Ym9i.9999999999.AAAA' >/dev/null; grep -c 'team/web' "$T/http.body")"
check "the catalog API shows bob no secret either" bash -c "! curl -s -u bob:bob-pass-2 '$BASE/v2/_catalog' | grep -q secret"

# Admins see the storage overview: blob bytes, the last collection, the certificate.
check_eq "root logs in" 303 "$(http POST "$BASE/ui/login" -H "Origin: $BASE" --data 'username=root&password=root-pass-0')"
ROOT=(-H "Cookie: $(hdr Set-Cookie | cut -d';' -f1)")
http GET "$BASE/ui/" "${ROOT[@]}" >/dev/null
check_match "an admin sees the store's blob bytes" "[0-9.]+ (B|KiB|MiB) of blobs in the store" "$(cat "$T/http.body")"
check_match "and that no collection has run yet" "No garbage collection has run" "$(cat "$T/http.body")"
env BERTH_CONFIG="$T/berth.toml" BERTH__STORAGE__ROOT="$T/store" "$BERTH_BIN" gc >"$T/gc.out" 2>&1 || fail "berth gc" "$(tail -n 2 "$T/gc.out")"
http GET "$BASE/ui/" "${ROOT[@]}" >/dev/null
check_match "after berth gc, the overview shows when it finished and what it freed" \
    "Last garbage collection finished [0-9-]+T[0-9:]+Z: freed [0-9]+ bytes" "$(cat "$T/http.body")"
http GET "$BASE/ui/" "${BOB[@]}" >/dev/null
check "users who are not admins see no overview" bash -c "! grep -q 'of blobs in the store' '$T/http.body'"
start_berth "$T/store3" "" BERTH__TLS__MODE=self-signed BERTH__TLS__LISTEN="[\"127.0.0.1:$(free_port)\"]" \
    BERTH__STATE__DIR="$T/state3" || bail "berth with a self-signed certificate"
check_match "with TLS, the overview shows the certificate's expiry" \
    "The served certificate expires [0-9-]+T[0-9:]+Z \(in [0-9]+ days\)" "$(curl -s "$BERTH_URL/ui/")"
stop_berth
start_berth "$T/store2" "" BERTH__UI__ENABLED=false || bail "berth with ui.enabled = false"
check_eq "ui.enabled = false: /ui/ is a 404" 404 "$(http GET "$BERTH_URL/ui/")"
check_eq "and a browser's GET / gets the health answer" 200 "$(http GET "$BERTH_URL/" -H 'Accept: text/html')"
stop_berth

# ---------------------------------------------------------------- the browser
NODE_PATH="$NODE_DIR/node_modules" timeout 300 node "$E2E_DIR/ui.js" "$BASE" "$SHOTS" >"$T/ui.out" 2>&1
while IFS= read -r line; do
    case $line in
    "ok - "*) pass "browser: ${line#ok - }" ;;
    "not ok - "*) FAIL=$((FAIL + 1)); echo "not ok - browser: ${line#not ok - }" ;;
    *) echo "# $line" ;;
    esac
done <"$T/ui.out"
grep -q '^ok - ' "$T/ui.out" || fail "the browser run printed results"
for s in anonymous repositories repository index manifest phone; do
    check "screenshot $s.png is written and not empty" test -s "$SHOTS/$s.png"
done

summary
