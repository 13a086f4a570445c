#!/usr/bin/env bash
# The .deb and .rpm that packaging/build.sh makes: file lists, modes and metadata, the
# conffile, the scriptlets, lintian, the systemd unit (verify, exposure score), the deb
# maintainer scripts run against a throw-away root (DPKG_ROOT), and the packaged binary
# itself: installed into a temp root (dpkg -x, systemd-sysusers --root, systemd-tmpfiles
# --root), a user added with `berth user add`, then `berth serve` run as the berth user
# with the shipped appliance.toml (only paths and ports moved, by BERTH__ overrides) and
# an image pushed and pulled with skopeo over TLS, trusting berth's own CA.
#
#   eval "$(bash packaging/build.sh | grep '^BERTH_')"
#   BERTH_DEB=$BERTH_DEB BERTH_RPM=$BERTH_RPM bash tests/e2e/run-all.sh packaging
#
# Without BERTH_DEB the suite is skipped; without BERTH_RPM the rpm checks are.
SUITE=packaging ARTIFACT=BERTH_DEB
. "$(dirname "$0")/artifact.sh"

echo "# suite: packaging ($BERTH_DEB${BERTH_RPM:+, $BERTH_RPM})"
[ -f "$BERTH_DEB" ] || bail "BERTH_DEB is a file ($BERTH_DEB)"
if [ "${E2E_TOOLS_OK:-0}" != 1 ] || ! command -v lintian >/dev/null || ! command -v rpm >/dev/null; then
    ensure_tools lintian:lintian rpm:rpm setpriv:util-linux systemd-analyze:systemd ||
        bail "lintian, rpm, setpriv and systemd are installed"
fi
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$REPO/Cargo.toml" | head -n 1)
arch=$(dpkg --print-architecture)

# The files both packages install (besides optional man pages berth-<subcommand>.1).
DEB_FILES="-rw-r--r-- ./etc/berth/appliance.toml
-rwxr-xr-x ./usr/bin/berth
-rw-r--r-- ./usr/lib/systemd/system/berth.service
-rw-r--r-- ./usr/lib/sysusers.d/berth.conf
-rw-r--r-- ./usr/lib/tmpfiles.d/berth.conf
-rwxr-xr-x ./usr/libexec/berth/reload
-rw-r--r-- ./usr/share/bash-completion/completions/berth
-rw-r--r-- ./usr/share/doc/berth/README.md
-rw-r--r-- ./usr/share/doc/berth/changelog.gz
-rw-r--r-- ./usr/share/doc/berth/copyright
-rw-r--r-- ./usr/share/fish/vendor_completions.d/berth.fish
-rw-r--r-- ./usr/share/lintian/overrides/berth
-rw-r--r-- ./usr/share/man/man1/berth.1.gz
-rw-r--r-- ./usr/share/zsh/vendor-completions/_berth"
RPM_FILES="-rw-r--r-- root:root /etc/berth/appliance.toml
-rwxr-xr-x root:root /usr/bin/berth
-rw-r--r-- root:root /usr/lib/systemd/system/berth.service
-rw-r--r-- root:root /usr/lib/sysusers.d/berth.conf
-rw-r--r-- root:root /usr/lib/tmpfiles.d/berth.conf
-rwxr-xr-x root:root /usr/libexec/berth/reload
-rw-r--r-- root:root /usr/share/bash-completion/completions/berth
-rw-r--r-- root:root /usr/share/doc/berth/CHANGELOG.md
-rw-r--r-- root:root /usr/share/doc/berth/LICENSE
-rw-r--r-- root:root /usr/share/doc/berth/README.md
-rw-r--r-- root:root /usr/share/fish/vendor_completions.d/berth.fish
-rw-r--r-- root:root /usr/share/man/man1/berth.1
-rw-r--r-- root:root /usr/share/zsh/site-functions/_berth"

# ---------------------------------------------------------------- a. the .deb, statically
dpkg-deb --contents "$BERTH_DEB" >"$T/deb.contents" 2>"$T/deb.contents.err" || bail "dpkg-deb --contents reads the .deb"
# "perms owner size date time path": regular files, without the optional subcommand pages.
got=$(awk '$1 !~ /^d/ {print $1, $6}' "$T/deb.contents" | grep -v -E ' \./usr/share/man/man1/berth-[a-z-]+\.1\.gz$' | sort)
check_eq "a: .deb file list and modes" "$(echo "$DEB_FILES" | sort)" "$got"
check_eq "a: every .deb entry is owned by root" "" "$(awk '$2 != "root/root" && $2 != "0/0" {print $2, $6}' "$T/deb.contents")"
check_eq "a: every .deb directory is 0755" "" "$(awk '$1 ~ /^d/ && $1 != "drwxr-xr-x" {print $1, $6}' "$T/deb.contents")"

dpkg-deb --field "$BERTH_DEB" >"$T/deb.fields"
field() { sed -n "s/^$1: //p" "$T/deb.fields"; }
check_eq "a: Package" berth "$(field Package)"
check_eq "a: Version is Cargo.toml's (native)" "$version" "$(field Version)"
check_eq "a: Architecture" "$arch" "$(field Architecture)"
check_eq "a: Section" net "$(field Section)"
check_eq "a: Priority" optional "$(field Priority)"
check_match "a: Maintainer is a name and address" '^[^<]+ <[^@ ]+@[^> ]+>$' "$(field Maintainer)"
# $auto: glibc and libgcc (Rust's unwinder), both in every Debian system.
check_eq "a: Depends on the C runtime only" "" \
    "$(field Depends | tr ',' '\n' | sed 's/^ *//' | grep -v -E '^(libc6|libgcc-s1)( \(>= [0-9.]+\))?$')"
check_match "a: Installed-Size" '^[0-9]+$' "$(field Installed-Size)"
synopsis=$(field Description)
check_match "a: a one-line synopsis under 80 characters" '^.{10,79}$' "$synopsis"
dpkg-deb --info "$BERTH_DEB" >"$T/deb.info"
check_match "a: extended description present" ' berth is a container-image registry' "$(cat "$T/deb.info")"

mkdir -p "$T/ctrl"
dpkg-deb --control "$BERTH_DEB" "$T/ctrl"
check_eq "a: conffiles is the appliance.toml" /etc/berth/appliance.toml "$(cat "$T/ctrl/conffiles" 2>/dev/null)"
for s in postinst prerm postrm; do
    check_eq "a: $s is 0755" 755 "$(stat -c %a "$T/ctrl/$s" 2>/dev/null)"
    check "a: $s is valid sh" sh -n "$T/ctrl/$s"
done
check_eq "a: no preinst, config or templates" "" "$(cd "$T/ctrl" && ls preinst config templates 2>/dev/null)"
check "a: postinst creates the user" grep -q 'systemd-sysusers' "$T/ctrl/postinst"
check "a: postinst creates the directories" grep -q 'systemd-tmpfiles' "$T/ctrl/postinst"
check "a: postinst prints how to add a user" grep -q 'berth user add' "$T/ctrl/postinst"
check "a: postinst hands a running service over on upgrade (reload)" \
    grep -q "deb-systemd-invoke reload 'berth.service'" "$T/ctrl/postinst"
check_eq "a: postrm never removes /var/lib/berth" "" "$(grep -n 'rm .*/var/lib/berth' "$T/ctrl/postrm" | grep -v 'echo')"

# lintian: no errors. Tags the package itself overrides are justified in
# packaging/lintian-overrides (usr/share/lintian/overrides/berth); nothing is allowed here.
lintian --tag-display-limit 0 --display-info "$BERTH_DEB" >"$T/lintian.out" 2>"$T/lintian.err"
lintian_rc=$?
check_eq "a: lintian reports no errors" "" "$(grep '^E:' "$T/lintian.out")"
check_eq "a: lintian ran (exit 0)" 0 "$lintian_rc"
sed 's/^/#   lintian: /' "$T/lintian.out" | grep -v -E '^#   lintian: (N|I|P):' | head -n 20

# ---------------------------------------------------------------- b. the unit
ROOT=$T/root
mkdir -p "$ROOT"
dpkg-deb -x "$BERTH_DEB" "$ROOT" || bail "dpkg-deb -x unpacks the .deb"
UNIT=$ROOT/usr/lib/systemd/system/berth.service
systemd-analyze security --offline=true --threshold=20 "$UNIT" >"$T/security.out" 2>&1
check_eq "b: systemd-analyze security --offline=true --threshold=20 passes" 0 $?
score=$(sed -n 's/.*Overall exposure level for berth.service: \([0-9.]*\).*/\1/p' "$T/security.out")
echo "# exposure level: ${score:-?}"
check "b: exposure level is 2.0 or lower (got ${score:-none})" awk -v s="${score:-99}" 'BEGIN { exit !(s <= 2.0) }'
# verify, with ExecStart pointing at the unpacked binary and man:berth(1) found in the
# unpacked man pages.
mkdir -p "$T/unit"
sed -e "s#/usr/bin/berth#$ROOT/usr/bin/berth#g" -e "s#/usr/libexec/berth/#$ROOT/usr/libexec/berth/#g" \
    "$UNIT" >"$T/unit/berth.service"
man_opt=--man=yes
command -v man >/dev/null 2>&1 || man_opt=--man=no
if MANPATH="$ROOT/usr/share/man" systemd-analyze verify "$man_opt" "$T/unit/berth.service" >"$T/verify.out" 2>&1; then
    pass "b: systemd-analyze verify passes ($man_opt)"
else
    fail "b: systemd-analyze verify passes ($man_opt)" "$(tr '\n' ' ' <"$T/verify.out")"
fi
unit_has() { grep -q -x -E "$1" "$UNIT"; }
for line in 'Type=notify' 'NotifyAccess=exec' 'User=berth' 'ExecReload=/usr/libexec/berth/reload \$MAINPID' \
    'AmbientCapabilities=CAP_NET_BIND_SERVICE' 'CapabilityBoundingSet=CAP_NET_BIND_SERVICE' \
    'StateDirectory=berth' 'ConfigurationDirectory=berth' 'ExecStart=/usr/bin/berth serve -c /etc/berth/appliance.toml'; do
    check "b: unit has $line" unit_has "$line"
done

# ---------------------------------------------------------------- c. the .rpm
if [ -n "${BERTH_RPM:-}" ]; then
    [ -f "$BERTH_RPM" ] || bail "BERTH_RPM is a file ($BERTH_RPM)"
    q() { rpm -qp --nosignature "$@" "$BERTH_RPM" 2>/dev/null; }
    check_eq "c: name version release" "berth $version 1" "$(q --qf '%{NAME} %{VERSION} %{RELEASE}')"
    check_eq "c: arch" "$(uname -m)" "$(q --qf '%{ARCH}')"
    got=$(q --qf '[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILENAMES}\n]' |
        grep -v -E ' /usr/share/man/man1/berth-[a-z-]+\.1$' | sort)
    check_eq "c: .rpm file list, modes and owners" "$(echo "$RPM_FILES" | sort)" "$got"
    check_eq "c: rpm -qlp lists the same files" "$(echo "$RPM_FILES" | awk '{print $3}' | sort)" \
        "$(q -l | grep -v -E '^/usr/share/man/man1/berth-[a-z-]+\.1$' | sort)"
    check_eq "c: --configfiles" /etc/berth/appliance.toml "$(q --configfiles)"
    flags=$(q --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' | awk '$2 == "/etc/berth/appliance.toml" {print $1}')
    check_eq "c: appliance.toml is %config(noreplace) (flags $flags)" cn "$(echo "$flags" | grep -o '[cn]' | sort | tr -d '\n')"
    q --scripts >"$T/rpm.scripts"
    for s in 'postinstall scriptlet' 'preuninstall scriptlet' 'postuninstall scriptlet'; do
        check "c: has a $s" grep -q "^$s" "$T/rpm.scripts"
    done
    check "c: %post creates the user" grep -q 'systemd-sysusers berth.conf' "$T/rpm.scripts"
    check "c: %post creates the directories" grep -q 'systemd-tmpfiles --create berth.conf' "$T/rpm.scripts"
    check "c: %post prints how to add a user" grep -q 'berth user add' "$T/rpm.scripts"
    check "c: %preun disables the unit on erase" grep -q 'disable --now berth.service' "$T/rpm.scripts"
    check "c: has a posttrans scriptlet" grep -q '^posttrans scriptlet' "$T/rpm.scripts"
    check "c: %posttrans hands a running service over (reload)" grep -q 'systemctl reload berth.service' "$T/rpm.scripts"
    check_eq "c: no scriptlet restarts the service" "" \
        "$(grep -E '^[[:space:]]*(systemctl|deb-systemd-invoke)[^#]*restart' "$T/rpm.scripts")"
    check_eq "c: no scriptlet removes /var/lib/berth" "" "$(grep -n 'rm .*/var/lib/berth' "$T/rpm.scripts")"
    # Requires: the C library (and /bin/sh for the scriptlets, /bin/bash for the reload
    # helper), nothing RHEL 9 lacks; rpm adds config(berth) itself for the conffile.
    check_eq "c: requires nothing beyond glibc, /bin/sh and /bin/bash" "" \
        "$(q --requires | grep -v -E '^(/bin/sh|/bin/bash|config\(berth\) = |rpmlib\(|libc\.so\.6|libm\.so\.6|libgcc_s\.so\.1|ld-linux-x86-64\.so\.2|ld-linux-aarch64\.so\.1|rtld\()')"
else
    echo "# BERTH_RPM is not set: rpm checks skipped"
fi

# ---------------------------------------------------------------- d. the binary on a stock system
B=$ROOT/usr/bin/berth
check "d: the man page is a man page" sh -c "zcat '$ROOT/usr/share/man/man1/berth.1.gz' | grep -q '^\.TH'"
check "d: bash completion parses" bash -n "$ROOT/usr/share/bash-completion/completions/berth"
check "d: the reload helper parses" bash -n "$ROOT/usr/libexec/berth/reload"
check "d: zsh completion is for berth" grep -q '#compdef berth' "$ROOT/usr/share/zsh/vendor-completions/_berth"
check "d: fish completion is for berth" grep -q 'complete -c berth' "$ROOT/usr/share/fish/vendor_completions.d/berth.fish"
check "d: berth --version runs" "$B" --version
check_eq "d: the binary needs only the C runtime" "" \
    "$(ldd "$B" | awk '{print $1}' | grep -v -E '^(linux-vdso\.so\.1|/lib64/ld-linux-x86-64\.so\.2|/lib/ld-linux-aarch64\.so\.1|libc\.so\.6|libm\.so\.6|libgcc_s\.so\.1)$')"
glibc=$(grep -ao 'GLIBC_2\.[0-9.]*' "$B" | sort -uV | tail -n 1)
check_eq "d: newest glibc symbol ($glibc) is in RHEL 9's 2.34" GLIBC_2.34 "$(printf '%s\n' "$glibc" GLIBC_2.34 | sort -V | tail -n 1)"

# ---------------------------------------------------------------- e. maintainer scripts in a throw-away root
R2=$T/root2
mkdir -p "$R2"
dpkg-deb -x "$BERTH_DEB" "$R2"
# maint SCRIPT ARGS...: runs a maintainer script as dpkg would, into $R2.
maint() {
    local script=$1
    shift
    DPKG_ROOT=$R2 DPKG_MAINTSCRIPT_PACKAGE=berth DPKG_MAINTSCRIPT_NAME=$script sh "$T/ctrl/$script" "$@"
}
if maint postinst configure >"$T/postinst.out" 2>&1; then
    pass "e: postinst configure (DPKG_ROOT)"
else
    fail "e: postinst configure (DPKG_ROOT)" "$(tail -n 3 "$T/postinst.out" | tr '\n' ' ')"
fi
check "e: postinst created the berth user" grep -q '^berth:' "$R2/etc/passwd"
check_eq "e: /var/lib/berth is 0750 berth" "750 $(awk -F: '$1 == "berth" {print $3}' "$R2/etc/passwd" 2>/dev/null)" \
    "$(stat -c '%a %u' "$R2/var/lib/berth" 2>/dev/null)"
check_eq "e: an empty htpasswd 0640 root:berth" "640 0 $(awk -F: '$1 == "berth" {print $3}' "$R2/etc/group" 2>/dev/null) 0" \
    "$(stat -c '%a %u %g %s' "$R2/etc/berth/htpasswd" 2>/dev/null)"
check "e: postinst enabled the unit" test -L "$R2/etc/systemd/system/multi-user.target.wants/berth.service"
check "e: postinst printed how to add a user" grep -q 'berth user add' "$T/postinst.out"
check "e: postinst printed where the CA is" grep -q '/var/lib/berth/state/tls/ca.crt' "$T/postinst.out"
check "e: postinst printed how to turn on Let's Encrypt" grep -q 'mode = "acme"' "$T/postinst.out"
echo "data" >"$R2/var/lib/berth/marker"
maint prerm remove >/dev/null 2>&1
maint postrm remove >/dev/null 2>&1
if maint postrm purge >"$T/purge.out" 2>&1; then
    pass "e: postrm purge (DPKG_ROOT)"
else
    fail "e: postrm purge (DPKG_ROOT)" "$(tail -n 3 "$T/purge.out" | tr '\n' ' ')"
fi
check "e: purge keeps /var/lib/berth" test -f "$R2/var/lib/berth/marker"
check "e: purge removes the package's htpasswd" test ! -e "$R2/etc/berth/htpasswd"
check "e: purge says what it kept" grep -q 'kept /var/lib/berth' "$T/purge.out"
check "e: purge removes the unit's enablement" test ! -e "$R2/etc/systemd/system/multi-user.target.wants/berth.service"

# ---------------------------------------------------------------- f. installed and running as berth
# The berth user must reach the temp root.
chmod 0711 "$T"
systemd-sysusers --root="$ROOT" >"$T/sysusers.out" 2>&1 || bail "systemd-sysusers --root" "$(cat "$T/sysusers.out")"
systemd-tmpfiles --root="$ROOT" --create >"$T/tmpfiles.out" 2>&1 || bail "systemd-tmpfiles --root --create" "$(cat "$T/tmpfiles.out")"
uid=$(awk -F: '$1 == "berth" {print $3}' "$ROOT/etc/passwd")
gid=$(awk -F: '$1 == "berth" {print $3}' "$ROOT/etc/group")
[ -n "$uid" ] && [ -n "$gid" ] || bail "sysusers made the berth user and group"
check_eq "f: berth's shell is nologin" /usr/sbin/nologin "$(awk -F: '$1 == "berth" {print $7}' "$ROOT/etc/passwd")"
check_eq "f: /var/lib/berth 0750 berth:berth" "750 $uid $gid" "$(stat -c '%a %u %g' "$ROOT/var/lib/berth")"
check_eq "f: /etc/berth 2750 root:berth" "2750 0 $gid" "$(stat -c '%a %u %g' "$ROOT/etc/berth")"
check_eq "f: /etc/berth/htpasswd empty, 0640 root:berth" "640 0 $gid 0" "$(stat -c '%a %u %g %s' "$ROOT/etc/berth/htpasswd")"

CFG=$ROOT/etc/berth/appliance.toml
P443=$(free_port)
P80=$(free_port)
# The shipped configuration, with only its paths and ports moved under the temp root.
OVR=(BERTH__STORAGE__ROOT="$ROOT/var/lib/berth"
    BERTH__STATE__DIR="$ROOT/var/lib/berth/state"
    BERTH__AUTH__HTPASSWD__PATH="$ROOT/etc/berth/htpasswd"
    BERTH__TLS__LISTEN="[\"127.0.0.1:$P443\"]"
    BERTH__HTTP__REDIRECT_LISTEN="[\"127.0.0.1:$P80\"]"
    BERTH__HTTP__ADMIN_LISTEN="[]")
check "f: berth config check accepts the shipped appliance.toml" env -u BERTH_CONFIG "$B" config check "$CFG"
env "${OVR[@]}" "$B" config show -c "$CFG" >"$T/show.toml" 2>&1
check "f: shipped config: auth is htpasswd" grep -q '^mode = "htpasswd"' "$T/show.toml"
check "f: shipped config: self-signed TLS" grep -q '^mode = "self-signed"' "$T/show.toml"

PW="pkg-$RANDOM-$RANDOM"
# As root, like an administrator: the file stays root:berth 0640 (setgid /etc/berth).
if printf '%s\n' "$PW" | env "${OVR[@]}" "$B" user add e2e --password-stdin -c "$CFG" >"$T/useradd.out" 2>&1; then
    pass "f: berth user add --password-stdin (as root)"
else
    fail "f: berth user add --password-stdin (as root)" "$(cat "$T/useradd.out")"
fi
check_eq "f: htpasswd after user add: 0640 root:berth" "640 0 $gid" "$(stat -c '%a %u %g' "$ROOT/etc/berth/htpasswd")"
check "f: htpasswd holds a bcrypt entry" grep -q '^e2e:\$2[aby]\$' "$ROOT/etc/berth/htpasswd"

# sd_notify: a datagram socket standing in for systemd's.
NSOCK=$T/notify.sock
"$PY" - "$NSOCK" "$T/notify.out" <<'EOF' &
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o777)
s.settimeout(120)
with open(sys.argv[2], "ab", buffering=0) as f:
    try:
        while True:
            f.write(s.recv(4096) + b"\n")
    except socket.timeout:
        pass
EOF
track_pid $!
for ((i = 0; i < 50; i++)); do [ -S "$NSOCK" ] && break; sleep 0.1; done

LOG=$T/berth.pkg.log
(
    cd "$ROOT/var/lib/berth" &&
        exec setpriv --reuid="$uid" --regid="$gid" --clear-groups --no-new-privs --inh-caps=-all \
            env -i PATH=/usr/bin:/bin NO_COLOR=1 NOTIFY_SOCKET="$NSOCK" "${OVR[@]}" \
            "$B" serve -c "$CFG"
) >"$LOG" 2>&1 &
PID=$!
track_pid "$PID"
B443=https://127.0.0.1:$P443
up=0
for ((i = 0; i < 200; i++)); do
    proc_alive "$PID" || break
    if [ "$(curl -sk -m 2 -o /dev/null -w '%{http_code}' "$B443/" 2>/dev/null)" = 200 ]; then
        up=1
        break
    fi
    sleep 0.1
done
if [ "$up" != 1 ]; then
    sed 's/^/#   berth: /' "$LOG" | tail -n 20
    bail "f: the packaged berth serves as the berth user"
fi
pass "f: the packaged berth serves as the berth user"
check_eq "f: it runs as berth" "$uid" "$(awk '/^Uid:/ {print $2}' "/proc/$PID/status")"
for ((i = 0; i < 50; i++)); do grep -q READY=1 "$T/notify.out" 2>/dev/null && break; sleep 0.1; done
check "f: READY=1 reached NOTIFY_SOCKET" grep -q READY=1 "$T/notify.out"

CA=$ROOT/var/lib/berth/state/tls/ca.crt
check "f: the local CA is in the state directory" test -s "$CA"
check_eq "f: the CA key is 0600 berth" "600 $uid" "$(stat -c '%a %u' "$ROOT/var/lib/berth/state/tls/ca.key" 2>/dev/null)"
env "${OVR[@]}" "$B" cert ca -c "$CFG" >"$T/ca.pem" 2>/dev/null
check "f: berth cert ca prints that CA" cmp -s "$CA" "$T/ca.pem"
check "f: the log says where the CA is" grep -q 'tls/ca.crt' "$LOG"

code=$(http GET "$B443/v2/" --cacert "$CA")
check_eq "f: anonymous /v2/ is 401 (authentication required by default)" 401 "$code"
check_match "f: Basic challenge" '^Basic realm="berth"' "$(hdr WWW-Authenticate)"
check_eq "f: wrong password is 401" 401 "$(http GET "$B443/v2/" --cacert "$CA" -u "e2e:wrong")"
check_eq "f: the added user gets 200 over verified TLS" 200 "$(http GET "$B443/v2/" --cacert "$CA" -u "e2e:$PW")"
check_eq "f: port 80 redirects to https" 308 "$(http GET "http://127.0.0.1:$P80/v2/")"
check_match "f: redirect Location is https" '^https://' "$(hdr Location)"

make_image "$T/layout" app "packaging $RANDOM $(date +%s%N)" || bail "umoci builds an image"
src=$(layout_manifest "$T/layout" app)
mkdir -p "$T/certs"
cp "$CA" "$T/certs/ca.crt"
if "${SKOPEO[@]}" copy -q --dest-cert-dir "$T/certs" --dest-creds "e2e:$PW" --digestfile "$T/push.digest" \
    "oci:$T/layout:app" "docker://127.0.0.1:$P443/e2e/app:v1" >"$T/push.out" 2>&1; then
    pass "f: skopeo push with the CA and credentials"
else
    fail "f: skopeo push with the CA and credentials" "$(tail -n 3 "$T/push.out" | tr '\n' ' ')"
fi
check_eq "f: pushed digest" "$src" "$(cat "$T/push.digest" 2>/dev/null)"
if "${SKOPEO[@]}" copy -q --dest-cert-dir "$T/certs" "oci:$T/layout:app" \
    "docker://127.0.0.1:$P443/e2e/anon:v1" >"$T/anon.out" 2>&1; then
    fail "f: anonymous push is refused" "it succeeded"
else
    pass "f: anonymous push is refused"
fi
if "${SKOPEO[@]}" copy -q --src-cert-dir "$T/certs" --src-creds "e2e:$PW" \
    "docker://127.0.0.1:$P443/e2e/app:v1" "oci:$T/pulled:v1" >"$T/pull.out" 2>&1; then
    pass "f: skopeo pull"
else
    fail "f: skopeo pull" "$(tail -n 3 "$T/pull.out" | tr '\n' ' ')"
fi
check_eq "f: pulled manifest digest" "$src" "$(layout_manifest "$T/pulled" v1)"
check_eq "f: pulled blobs hash to their names" "" "$(verify_blob_dir "$T/pulled/blobs/sha256")"
check_eq "f: the store is under the root's /var/lib/berth, owned by berth" "" \
    "$(find "$ROOT/var/lib/berth/docker" ! -uid "$uid" 2>/dev/null | head -n 3)"
check "f: store blobs hash to their names" verify_store_blobs "$ROOT/var/lib/berth"

# systemctl reload: the unit's ExecReload as the berth user; the binary is the one
# running, so it is SIGHUP: certificates reloaded, the process stays.
if setpriv --reuid="$uid" --regid="$gid" --clear-groups --no-new-privs --inh-caps=-all \
    "$ROOT/usr/libexec/berth/reload" "$PID" >"$T/reload.out" 2>&1; then
    pass "f: ExecReload (the reload helper) succeeds"
else
    fail "f: ExecReload (the reload helper) succeeds" "$(tr '\n' ' ' <"$T/reload.out")"
fi
for ((i = 0; i < 50; i++)); do grep -q SIGHUP "$LOG" && break; sleep 0.1; done
check "f: SIGHUP reloads the certificate (logged)" grep -q SIGHUP "$LOG"
check "f: SIGHUP reloads the permission rules (logged)" grep -q 'permission rules reloaded' "$LOG"
check "f: still running after SIGHUP" proc_alive "$PID"
check_eq "f: still serving after SIGHUP" 200 "$(http GET "$B443/v2/" --cacert "$CA" -u "e2e:$PW")"

# In-flight requests get http.shutdown_grace (10 s in the shipped file) to finish.
kill -TERM "$PID"
if wait_exit "$PID" 300; then
    check_eq "f: SIGTERM stops it with status 0" 0 "$WAIT_RC"
else
    fail "f: SIGTERM stops it" "still running after 30 s"
fi

summary
