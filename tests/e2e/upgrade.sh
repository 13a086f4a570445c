#!/usr/bin/env bash
# A package upgrade under load refuses no request and cuts no transfer.
#
# The .deb is installed with dpkg into a throw-away root (dpkg --root, maintainer scripts
# run with DPKG_ROOT); berth runs from it as the berth user the way berth.service runs it
# (its ExecStart, User, WorkingDirectory, a notification socket), with the shipped
# appliance.toml (paths and ports moved by BERTH__ overrides, as a drop-in would). While
# two loops of requests (a new TLS connection each) and a slow 48 MiB pull run, a newer
# .deb (Cargo.toml's version + "+upgrade1", repacked from the same .deb) is installed
# with dpkg, and then what its postinst asks systemd for on a real system is done here:
# `systemctl reload berth` runs the unit's ExecReload as the berth user with MAINPID and
# NOTIFY_SOCKET, because systemd is not PID 1 on the machines this runs on (the postinst
# skips systemctl inside a DPKG_ROOT anyway). Counted: zero failed requests, the pull
# intact and spanning the hand-over, the new main PID reported to the notification
# socket by the reload process itself, the old process gone with status 0.
# Then a third .deb whose binary cannot serve: the reload fails, the running process is
# never signalled and keeps serving, still with zero failed requests.
#
#   eval "$(bash packaging/build.sh | grep '^BERTH_')"
#   BERTH_DEB=$BERTH_DEB bash tests/e2e/run-all.sh upgrade
#
# Without BERTH_DEB the suite is skipped.
SUITE=upgrade ARTIFACT=BERTH_DEB
. "$(dirname "$0")/artifact.sh"

echo "# suite: upgrade ($BERTH_DEB)"
[ -f "$BERTH_DEB" ] || bail "BERTH_DEB is a file ($BERTH_DEB)"
if [ "${E2E_TOOLS_OK:-0}" != 1 ] || ! command -v systemd-notify >/dev/null || ! command -v setpriv >/dev/null; then
    ensure_tools setpriv:util-linux systemd-sysusers:systemd systemd-notify:systemd dpkg-deb:dpkg ||
        bail "setpriv, systemd and dpkg are installed"
fi
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$REPO/Cargo.toml" | head -n 1)
if [ -d /run/systemd/system ]; then
    echo "# systemd runs here, but the test stays in its throw-away root: ExecReload is run by hand"
else
    echo "# systemd is not PID 1 here: ExecReload is run by hand, as systemd would run it"
fi

# ---------------------------------------------------------------- packages and the root
# mk_deb VERSION OUT [BINARY]: the .deb again with another version (and binary).
mk_deb() {
    local dir=$T/pkg.$1
    rm -rf "$dir"
    dpkg-deb -R "$BERTH_DEB" "$dir" || return 1
    sed -i "s/^Version: .*/Version: $1/" "$dir/DEBIAN/control"
    if [ -n "${3:-}" ]; then
        install -m 0755 "$3" "$dir/usr/bin/berth"
        (cd "$dir" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum >DEBIAN/md5sums)
    fi
    dpkg-deb --root-owner-group -Zgzip -b "$dir" "$2" >/dev/null
}
NEW=$version+upgrade1
BROKEN=$version+upgrade2
mk_deb "$NEW" "$T/berth_new.deb" || bail "dpkg-deb repacks the .deb as $NEW"
R=$T/root
# A new process the reload helper started is nobody's child here: on the way out, every
# process running a binary of this root is ended, by PID.
_e2e_end_root_processes() {
    local p
    for p in /proc/[0-9]*; do
        case "$(readlink "$p/exe" 2>/dev/null)" in "$R"/usr/bin/*) kill -9 "${p#/proc/}" 2>/dev/null ;; esac
    done
}
trap '_e2e_end_root_processes; _e2e_cleanup' EXIT
mkdir -p "$R/var/lib/dpkg/info" "$R/var/lib/dpkg/updates"
touch "$R/var/lib/dpkg/status" "$R/var/lib/dpkg/available"
# --force-depends: the throw-away root has no libc6 in its database (the host's is used).
DPKG=(dpkg --root="$R" --force-script-chrootless --force-depends --log="$T/dpkg.log")
if "${DPKG[@]}" -i "$BERTH_DEB" >"$T/dpkg1.out" 2>&1; then
    pass "dpkg -i the .deb into a throw-away root"
else
    bail "dpkg -i the .deb into a throw-away root" "$(tail -n 3 "$T/dpkg1.out" | tr '\n' ' ')"
fi
installed() { dpkg-query --admindir="$R/var/lib/dpkg" -W -f '${Version} ${Status}' berth 2>/dev/null; }
check_eq "dpkg says $version is installed" "$version install ok installed" "$(installed)"
uid=$(awk -F: '$1 == "berth" {print $3}' "$R/etc/passwd")
gid=$(awk -F: '$1 == "berth" {print $3}' "$R/etc/group")
[ -n "$uid" ] && [ -n "$gid" ] || bail "the postinst made the berth user"
chmod 0711 "$T"
UNIT=$R/usr/lib/systemd/system/berth.service
unit_value() { sed -n "s/^$1=//p" "$UNIT" | tail -n 1; }
# Unit paths, inside the root.
in_root() { sed -e "s# /etc/# $R/etc/#g" -e "s#^/usr/#$R/usr/#" -e "s#^/var/#$R/var/#"; }
read -r -a EXEC_START <<<"$(unit_value ExecStart | in_root)"
WORKDIR=$(unit_value WorkingDirectory | in_root)
check_eq "the unit runs $R/usr/bin/berth serve -c ..." "$R/usr/bin/berth serve -c $R/etc/berth/appliance.toml" "${EXEC_START[*]}"
check_eq "the unit's reload is the hand-over helper" '/usr/libexec/berth/reload $MAINPID' "$(unit_value ExecReload)"
check_eq "the unit lets the reload helper notify" exec "$(unit_value NotifyAccess)"

P443=$(free_port)
P80=$(free_port)
OVR=(BERTH__STORAGE__ROOT="$R/var/lib/berth"
    BERTH__STATE__DIR="$R/var/lib/berth/state"
    BERTH__AUTH__HTPASSWD__PATH="$R/etc/berth/htpasswd"
    BERTH__TLS__LISTEN="[\"127.0.0.1:$P443\"]"
    BERTH__HTTP__REDIRECT_LISTEN="[\"127.0.0.1:$P80\"]"
    BERTH__HTTP__ADMIN_LISTEN="[]")
PW="up-$RANDOM-$RANDOM"
printf '%s\n' "$PW" | env "${OVR[@]}" "$R/usr/bin/berth" user add e2e --password-stdin -c "$R/etc/berth/appliance.toml" >"$T/useradd.out" 2>&1 ||
    bail "berth user add" "$(cat "$T/useradd.out")"

# The notification socket systemd would give the service: each datagram logged with the
# sender's PID (SCM_CREDENTIALS), file descriptors (systemd-notify's barrier) closed.
NSOCK=$T/notify.sock
"$PY" - "$NSOCK" "$T/notify.out" <<'EOF' &
import os, socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o777)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
s.settimeout(300)
room = socket.CMSG_SPACE(struct.calcsize("3i")) + socket.CMSG_SPACE(16 * 4)
with open(sys.argv[2], "a", buffering=1) as out:
    try:
        while True:
            msg, anc, _, _ = s.recvmsg(4096, room)
            pid = "?"
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("3i", data[:12])[0]
                elif level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    for fd in struct.unpack("%di" % (len(data) // 4), data[: len(data) // 4 * 4]):
                        os.close(fd)
            out.write("pid=%s %s\n" % (pid, msg.decode(errors="replace").replace("\n", " ")))
    except socket.timeout:
        pass
EOF
track_pid $!
for ((i = 0; i < 50; i++)); do [ -S "$NSOCK" ] && break; sleep 0.1; done

# as_service CMD... &: as systemd runs the unit's commands: the berth user, no
# capabilities (the ports here are high), the unit's working directory, its environment,
# the socket. Only in the background: it execs, so that $! is CMD's own PID.
as_service() {
    cd "$WORKDIR" && exec setpriv --reuid="$uid" --regid="$gid" --clear-groups --no-new-privs --inh-caps=-all \
        env -i PATH=/usr/bin:/bin NO_COLOR=1 NOTIFY_SOCKET="$NSOCK" "${OVR[@]}" "$@"
}
as_service "${EXEC_START[@]}" >"$T/berth.old.log" 2>&1 &
OLD=$!
track_pid "$OLD"
B=https://127.0.0.1:$P443
CA=$R/var/lib/berth/state/tls/ca.crt
up=0
for ((i = 0; i < 200; i++)); do
    proc_alive "$OLD" || break
    [ "$(curl -sk -m 2 -o /dev/null -w '%{http_code}' "$B/" 2>/dev/null)" = 200 ] && up=1 && break
    sleep 0.1
done
[ "$up" = 1 ] || bail "the installed berth serves" "$(tail -n 5 "$T/berth.old.log" | tr '\n' ' ')"
pass "the installed berth serves (pid $OLD)"
for ((i = 0; i < 50; i++)); do grep -q "pid=$OLD READY=1" "$T/notify.out" 2>/dev/null && break; sleep 0.1; done
check "it reported READY=1 as the main process" grep -q "pid=$OLD READY=1" "$T/notify.out"
CURL=(curl -sS --cacert "$CA" -u "e2e:$PW")

# What the pulls fetch: a small image, and a 48 MiB blob for the slow pull.
make_image "$T/img" app "upgrade $RANDOM" || bail "umoci builds an image"
mkdir -p "$T/certs"
cp "$CA" "$T/certs/ca.crt"
"${SKOPEO[@]}" copy -q --dest-cert-dir "$T/certs" --dest-creds "e2e:$PW" "oci:$T/img:app" \
    "docker://127.0.0.1:$P443/e2e/app:v1" >"$T/push.out" 2>&1 || bail "skopeo push" "$(tail -n 3 "$T/push.out")"
random_file "$T/large.bin" $((48 << 20))
LARGE=sha256:$(sha256_of "$T/large.bin")
code=$(http POST "$B/v2/e2e/large/blobs/uploads/?digest=$LARGE" --cacert "$CA" -u "e2e:$PW" \
    -H 'Content-Type: application/octet-stream' --data-binary "@$T/large.bin")
[ "$code" = 201 ] || bail "the 48 MiB blob is pushed" "status $code"
MANIFEST=$(layout_manifest "$T/img" app)

# ---------------------------------------------------------------- load
# load NAME URL ACCEPT: a bounded loop, one new connection per request, until $T/stop.
load() {
    local i code
    for ((i = 0; i < 6000; i++)); do
        [ -e "$T/stop" ] && break
        code=$("${CURL[@]}" -o /dev/null -m 20 -w '%{http_code}' -H "Accept: $3" "$2" 2>>"$T/load.$1.err")
        echo "$(date +%s.%N) $code" >>"$T/load.$1"
        sleep 0.02
    done
}
load v2 "$B/v2/" '*/*' &
track_pid $!
LOADERS=($!)
load manifest "$B/v2/e2e/app/manifests/v1" application/vnd.oci.image.manifest.v1+json &
track_pid $!
LOADERS+=($!)
sleep 1
# The slow pull: 4 MiB/s, 12 s, started on the process being upgraded.
pull_started=$(date +%s.%N)
"${CURL[@]}" --limit-rate 4M -m 60 -o "$T/large.pulled" -w '%{http_code} %{size_download}' \
    "$B/v2/e2e/large/blobs/$LARGE" >"$T/pull.result" 2>"$T/pull.err" &
PULL=$!
track_pid "$PULL"
sleep 0.5

# ---------------------------------------------------------------- the upgrade
# reload: what `systemctl reload berth` does, the unit's ExecReload as the berth user,
# with MAINPID. Leaves its status in RELOAD_RC, its PID in RELOAD_PID.
reload() {
    local cmd
    cmd=$(unit_value ExecReload | in_root)
    cmd=${cmd//\$MAINPID/$1}
    read -r -a cmd <<<"$cmd"
    as_service MAINPID="$1" "${cmd[@]}" >"$T/reload.$2.out" 2>"$T/reload.$2.err" &
    RELOAD_PID=$!
    track_pid "$RELOAD_PID"
    wait "$RELOAD_PID"
    RELOAD_RC=$?
}
if "${DPKG[@]}" -i "$T/berth_new.deb" >"$T/dpkg2.out" 2>&1; then
    pass "dpkg -i the $NEW .deb over it"
else
    fail "dpkg -i the $NEW .deb over it" "$(tail -n 3 "$T/dpkg2.out" | tr '\n' ' ')"
fi
check_eq "dpkg says $NEW is installed" "$NEW install ok installed" "$(installed)"
check "the running process's binary was replaced" test ! "/proc/$OLD/exe" -ef "$R/usr/bin/berth"
reload "$OLD" new
handed_over=$(date +%s.%N)
check_eq "the reload (ExecReload) succeeds" 0 "$RELOAD_RC"
NEWPID=$(grep -o 'MAINPID=[0-9]*' "$T/notify.out" | tail -n 1 | cut -d= -f2)
check_match "the new main PID reached the notification socket" '^[0-9]+$' "$NEWPID"
check "... sent by the reload process itself (NotifyAccess=exec)" grep -q "^pid=$RELOAD_PID MAINPID=$NEWPID" "$T/notify.out"
[ -n "$NEWPID" ] && track_pid "$NEWPID"
check "the new process runs the new binary" test "/proc/$NEWPID/exe" -ef "$R/usr/bin/berth"
check_eq "the new process runs as berth" "$uid" "$(awk '/^Uid:/ {print $2}' "/proc/$NEWPID/status" 2>/dev/null)"
check "the old process got SIGQUIT and handed its sockets over" grep -q 'listener sockets sent' "$T/berth.old.log"

if wait "$PULL"; then
    pass "the slow pull finishes (curl status 0)"
else
    fail "the slow pull finishes (curl status 0)" "$(tail -n 2 "$T/pull.err" | tr '\n' ' ')"
fi
pull_ended=$(date +%s.%N)
check_eq "the slow pull: 200, every byte" "200 $((48 << 20))" "$(cat "$T/pull.result")"
check_eq "the slow pull is intact" "$LARGE" "sha256:$(sha256_of "$T/large.pulled" 2>/dev/null)"
check "the slow pull started before and ended after the hand-over" \
    awk -v s="$pull_started" -v h="$handed_over" -v e="$pull_ended" 'BEGIN { exit !(s < h && h < e) }'
if wait_exit "$OLD" 300; then
    check_eq "the old process exits with status 0 after its requests" 0 "$WAIT_RC"
else
    fail "the old process exits after its requests" "still running after 30 s"
fi

# ---------------------------------------------------------------- a binary that cannot start
# It answers `config show` (the helper checks the configuration with the new binary) but
# fails to serve, as a new release that crashes at start would.
cp "$R/usr/bin/berth" "$T/good-berth"
cat >"$T/broken-berth" <<EOF
#!/bin/sh
case "\$1" in
serve) echo "berth: simulated failure at start" >&2; exit 1 ;;
*) exec $T/good-berth "\$@" ;;
esac
EOF
chmod 0755 "$T/good-berth" "$T/broken-berth"
mk_deb "$BROKEN" "$T/berth_broken.deb" "$T/broken-berth" || bail "dpkg-deb packs a broken $BROKEN"
"${DPKG[@]}" -i "$T/berth_broken.deb" >"$T/dpkg3.out" 2>&1
check_eq "dpkg says $BROKEN is installed" "$BROKEN install ok installed" "$(installed)"
reload "$NEWPID" broken
check_ne "the reload fails when the new binary does not start" 0 "$RELOAD_RC"
check "... and says the running process keeps serving" grep -q 'keeps serving' "$T/reload.broken.err"
check "... naming the failure" grep -q 'simulated failure at start' "$T/reload.broken.err"
sleep 2
check "the running process was not signalled" proc_alive "$NEWPID"
check_eq "... and did not hand over" 0 "$(grep -c 'SIGQUIT received' "$T/reload.new.err")"
check_eq "it still serves" 200 "$(http GET "$B/v2/" --cacert "$CA" -u "e2e:$PW")"

# ---------------------------------------------------------------- the count
touch "$T/stop"
for p in "${LOADERS[@]}"; do wait "$p"; done
total=$(cat "$T"/load.v2 "$T"/load.manifest | wc -l)
failed=$(awk '$2 != 200' "$T"/load.v2 "$T"/load.manifest | wc -l)
during=$(awk -v s="$pull_started" -v e="$pull_ended" '$1 > s && $1 < e' "$T"/load.v2 "$T"/load.manifest | wc -l)
echo "# requests: $total, of which $during while the slow pull ran (the hand-over); failed: $failed"
check_eq "zero failed requests across both upgrades" 0 "$failed"
[ "$failed" = 0 ] || awk '$2 != 200' "$T"/load.v2 "$T"/load.manifest | head -n 5 | sed 's/^/#   failed: /'
check "the load ran through the hand-over (over 50 requests during the slow pull)" test "$during" -gt 50
check_eq "a small pull after it all" "$MANIFEST" \
    "$("${SKOPEO[@]}" inspect --cert-dir "$T/certs" --creds "e2e:$PW" --format '{{.Digest}}' "docker://127.0.0.1:$P443/e2e/app:v1" 2>&1)"

kill -TERM "$NEWPID" 2>/dev/null
gone=0
for ((i = 0; i < 200; i++)); do proc_alive "$NEWPID" || { gone=1; break; }; sleep 0.1; done
check_eq "SIGTERM stops the upgraded berth" 1 "$gone"

summary
