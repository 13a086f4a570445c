#!/usr/bin/env bash
# berth and registry:2 on one S3 bucket, both ways: Debian's docker-registry 2.8.2 with
# its s3 driver against a Garage cluster, berth on the same bucket and rootdirectory,
# configured by `berth config import-distribution` from registry:2's own config.yml.
#   a. skopeo pushes to registry:2; berth serves the image (manifest, every blob).
#   b. skopeo pushes to berth (and a chunked curl blob); registry:2 serves them.
#   c. both list the same tags: one namespace, one layout.
SUITE=s3compat
. "$(dirname "$0")/lib.sh"
ensure_tools || bail "tools missing"
GARAGE_BIN=${GARAGE_BIN:-$(command -v garage || echo "$HOME/.cargo/bin/garage")}
[ -x "$GARAGE_BIN" ] || bail "no garage binary: run scripts/deps.sh (cargo install --locked garage)"
export GARAGE_BIN
G=$T/garage
GS=$(dirname "$0")/garage.sh
trap 'bash "$GS" stop "$G" >/dev/null 2>&1; _e2e_cleanup' EXIT
bash "$GS" start "$G" >"$T/garage.out" 2>&1 || { sed 's/^/# /' "$T/garage.out"; bail "garage cluster did not start"; }
. "$G/env"

REG_PORT=$(free_port)
REG=127.0.0.1:$REG_PORT
cat >"$T/config.yml" <<EOF
version: 0.1
log:
  level: info
storage:
  s3:
    accesskey: $AWS_ACCESS_KEY_ID
    secretkey: $AWS_SECRET_ACCESS_KEY
    region: garage
    regionendpoint: $GARAGE_S3_1
    bucket: berth
    rootdirectory: /compat
    secure: false
    v4auth: true
  delete:
    enabled: true
  redirect:
    disable: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $REG
  secret: s3compat-not-a-secret
EOF
# AWS_CA_BUNDLE (set on some machines) makes its aws-sdk-go panic at start with
# "LoadCustomCABundleError ... unsupported transport": the endpoint is plain http.
env -u AWS_CA_BUNDLE docker-registry serve "$T/config.yml" >"$T/registry.log" 2>&1 &
track_pid $!
wait_http "http://$REG/v2/" 100 || { sed 's/^/# /' "$T/registry.log"; bail "docker-registry (s3) did not start"; }
pass "docker-registry 2.8.2 runs on the Garage bucket (its s3 driver)"

# berth's configuration: registry:2's config.yml, translated.
if "$BERTH_BIN" config import-distribution "$T/config.yml" -o "$T/appliance.toml" 2>"$T/import.err"; then
    pass "berth config import-distribution translates the s3 section"
else
    fail "berth config import-distribution translates the s3 section" "$(tr '\n' ' ' <"$T/import.err")"
fi
check_match "the translation says where the secret key goes" 'secret_access_key_file|AWS_SECRET_ACCESS_KEY' "$(cat "$T/import.err")"
check "the translation does not copy the secret into appliance.toml" bash -c "! grep -qF -- '$AWS_SECRET_ACCESS_KEY' '$T/appliance.toml'"
grep -E 'driver|endpoint|bucket|prefix|path_style|redirect' "$T/appliance.toml" | sed 's/^/#   /'
BP=$(free_port)
env BERTH__HTTP__LISTEN="[\"127.0.0.1:$BP\"]" BERTH__HTTP__ADMIN_LISTEN='[]' BERTH__TLS__MODE=off \
    BERTH__TLS__LISTEN='[]' BERTH__AUTH__MODE=none BERTH__STATE__DIR="$T/state" \
    AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" NO_COLOR=1 \
    "$BERTH_BIN" serve -c "$T/appliance.toml" >"$T/berth.log" 2>&1 &
track_pid $!
B=127.0.0.1:$BP
wait_http "http://$B/v2/" 100 || { sed 's/^/# /' "$T/berth.log"; bail "berth on the imported configuration did not start"; }
pass "berth serves on the imported configuration (the same bucket and rootdirectory)"

SK=(skopeo --command-timeout 120s)
# ---------------------------------------------------------------- a. registry:2 -> berth
L=$T/layout
make_image "$L" r2 "pushed to registry:2" || bail "umoci"
if "${SK[@]}" copy -q --dest-tls-verify=false "oci:$L:r2" "docker://$REG/compat/app:r2" >"$T/a.out" 2>&1; then
    pass "a: skopeo push to registry:2 (s3)"
else
    fail "a: skopeo push to registry:2 (s3)" "$(tail -n 3 "$T/a.out" | tr '\n' ' ')"
fi
if "${SK[@]}" copy -q --src-tls-verify=false "docker://$B/compat/app:r2" "oci:$T/a.pulled:r2" >"$T/a.pull" 2>&1; then
    pass "a: berth serves registry:2's image: skopeo pull from berth"
else
    fail "a: berth serves registry:2's image: skopeo pull from berth" "$(tail -n 3 "$T/a.pull" | tr '\n' ' ')"
fi
want=$(layout_manifest "$L" r2)
check_eq "a: the same manifest digest" "$want" "$(layout_manifest "$T/a.pulled" r2)"
ok=1
for b in $(manifest_layers "$(layout_blob "$L" "$want")"); do
    cmp -s "$(layout_blob "$L" "$b")" "$(layout_blob "$T/a.pulled" "$b")" || ok=0
done
check_eq "a: every layer byte for byte" 1 "$ok"
check_match "a: berth lists registry:2's tag" '"r2"' "$(curl -s "http://$B/v2/compat/app/tags/list")"
check_match "a: berth's catalog has registry:2's repository" 'compat/app' "$(curl -s "http://$B/v2/_catalog")"

# ---------------------------------------------------------------- b. berth -> registry:2
make_image "$L" bb "pushed to berth" || bail "umoci"
if "${SK[@]}" copy -q --dest-tls-verify=false "oci:$L:bb" "docker://$B/compat/app:bb" >"$T/b.out" 2>&1; then
    pass "b: skopeo push to berth (s3)"
else
    fail "b: skopeo push to berth (s3)" "$(tail -n 3 "$T/b.out" | tr '\n' ' ')"
fi
if "${SK[@]}" copy -q --src-tls-verify=false "docker://$REG/compat/app:bb" "oci:$T/b.pulled:bb" >"$T/b.pull" 2>&1; then
    pass "b: registry:2 serves berth's image: skopeo pull from registry:2"
else
    fail "b: registry:2 serves berth's image: skopeo pull from registry:2" "$(tail -n 3 "$T/b.pull" | tr '\n' ' ')"
fi
check_eq "b: the same manifest digest" "$(layout_manifest "$L" bb)" "$(layout_manifest "$T/b.pulled" bb)"
# A chunked upload through berth (two PATCHes, the first under S3's 5 MiB part minimum)
# that registry:2 then serves.
head -c 3000000 /dev/urandom >"$T/p1"
head -c 6000000 /dev/urandom >"$T/p2"
dig="sha256:$(cat "$T/p1" "$T/p2" | sha256sum | cut -d' ' -f1)"
loc=$(curl -s -o /dev/null -D - -X POST "http://$B/v2/compat/blobs/blobs/uploads/" | tr -d '\r' | sed -n 's/^location: //Ip')
curl -s -o /dev/null -H 'Expect:' -X PATCH -H 'Content-Range: 0-2999999' --data-binary "@$T/p1" "http://$B$loc"
curl -s -o /dev/null -H 'Expect:' -X PATCH -H 'Content-Range: 3000000-8999999' --data-binary "@$T/p2" "http://$B$loc"
sep='?'; case $loc in *\?*) sep='&' ;; esac
check_eq "b: a chunked upload through berth -> 201" 201 "$(curl -s -o /dev/null -w '%{http_code}' -X PUT "http://$B$loc${sep}digest=$dig")"
curl -s -o "$T/p.got" "http://$REG/v2/compat/blobs/blobs/$dig"
check_eq "b: registry:2 serves that blob byte for byte" "$dig" "sha256:$(sha256_of "$T/p.got")"

# ---------------------------------------------------------------- c. one namespace
check_eq "c: registry:2 lists both tags (its own and berth's)" '{"name":"compat/app","tags":["bb","r2"]}' "$(curl -s "http://$REG/v2/compat/app/tags/list")"
check_match "c: berth lists both too" '"bb".*"r2"|"r2".*"bb"' "$(curl -s "http://$B/v2/compat/app/tags/list")"
summary
