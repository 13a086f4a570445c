#!/usr/bin/env bash
# The upgrade suite's claim with systemd itself (opt-in, not in CI: it debootstraps a
# Debian 12 root once, about 250 MB and two minutes): a podman container whose PID 1 is
# systemd, the real .deb installed with dpkg (postinst starts berth.service, hardened as
# shipped), then under a request loop and a slow 48 MiB pull a newer .deb installed with
# dpkg: its postinst reloads the unit and the hand-over happens under systemd's eyes.
# Checked: systemd's Main PID and status move to the new process, the reload exited 0,
# zero failed requests, the pull intact, the old process gone, the new one logging as
# berth; `systemctl reload` with the binary unchanged stays a SIGHUP; a .deb whose binary
# fails at start leaves the unit active on the same Main PID, and the postinst says so;
# `systemctl restart` still works afterwards.
#
#   E2E_SYSTEMD=1 BERTH_DEB=... bash tests/e2e/run-all.sh systemd
#   E2E_SYSTEMD_ROOTFS=DIR   the Debian root to use or make (default target/e2e-systemd-rootfs)
SUITE=systemd
if [ -z "${BERTH_DEB:-}" ] || [ "${E2E_SYSTEMD:-0}" != 1 ]; then
    echo "# skip: opt-in (E2E_SYSTEMD=1 and BERTH_DEB)"
    echo "0 passed, 0 failed"
    exit 0
fi
BERTH_BIN=/bin/true
. "$(dirname "$0")/lib.sh"
REPO=$(cd "$E2E_DIR/../.." && pwd)
echo "# suite: systemd ($BERTH_DEB)"
ensure_tools debootstrap:debootstrap runc:runc || bail "debootstrap and runc are installed"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$REPO/Cargo.toml" | head -n 1)

ROOTFS=${E2E_SYSTEMD_ROOTFS:-$REPO/target/e2e-systemd-rootfs}
if [ ! -x "$ROOTFS/lib/systemd/systemd" ]; then
    echo "# debootstrap of a Debian 12 root with systemd into $ROOTFS (once)"
    rm -rf "$ROOTFS.tmp"
    if debootstrap --variant=minbase --include=systemd,systemd-sysv,curl,ca-certificates \
        bookworm "$ROOTFS.tmp" http://deb.debian.org/debian >"$T/debootstrap.log" 2>&1; then
        mv "$ROOTFS.tmp" "$ROOTFS"
    else
        bail "debootstrap" "$(tail -n 3 "$T/debootstrap.log" | tr '\n' ' ')"
    fi
fi

# The .debs: a newer one, and one whose binary fails to serve.
repack() {
    local dir=$T/pkg.$1
    dpkg-deb -R "$BERTH_DEB" "$dir" || return 1
    sed -i "s/^Version: .*/Version: $1/" "$dir/DEBIAN/control"
    if [ -n "${3:-}" ]; then
        mv "$dir/usr/bin/berth" "$dir/usr/bin/berth.real"
        printf '#!/bin/sh\ncase "$1" in serve) echo "berth: simulated failure at start" >&2; exit 1 ;; *) exec /usr/bin/berth.real "$@" ;; esac\n' >"$dir/usr/bin/berth"
        chmod 0755 "$dir/usr/bin/berth"
    fi
    dpkg-deb --root-owner-group -Zgzip -b "$dir" "$2" >/dev/null
}
repack "$version+upgrade1" "$T/new.deb" || bail "repack $version+upgrade1"
repack "$version+upgrade2" "$T/broken.deb" broken || bail "repack $version+upgrade2"

# systemd as PID 1; no network (berth's ports are the container's own), changes to the
# root discarded (:O).
podman_cmd run -d --name sd --runtime runc --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 \
    --network none --systemd=always --rootfs "$ROOTFS:O" /sbin/init >"$T/run.out" 2>&1 ||
    bail "podman run systemd" "$(tail -n 3 "$T/run.out" | tr '\n' ' ')"
_e2e_stop_container() { podman_cmd rm -f -t 5 sd >/dev/null 2>&1; }
trap '_e2e_stop_container; _e2e_cleanup' EXIT
in_sd() { podman_cmd exec sd "$@"; }
state=
for ((i = 0; i < 100; i++)); do
    state=$(in_sd systemctl is-system-running 2>/dev/null)
    case "$state" in running | degraded) break ;; esac
    sleep 0.2
done
check_match "systemd runs as PID 1 ($state)" '^(running|degraded)$' "$state"
for f in "$BERTH_DEB:old.deb" "$T/new.deb:new.deb" "$T/broken.deb:broken.deb"; do
    podman_cmd cp "${f%%:*}" "sd:/root/${f##*:}" || bail "podman cp ${f##*:}"
done

cat >"$T/inside.sh" <<'EOF'
#!/bin/bash
# Runs in the container; prints key=value lines.
set -u
show() { systemctl show -p "$1" --value berth; }
dpkg -i /root/old.deb >/root/dpkg.old 2>&1; echo "dpkg_old=$?"
echo "active_old=$(systemctl is-active berth)"
old=$(show MainPID); echo "main_old=$old"
CA=/var/lib/berth/state/tls/ca.crt
echo secret-pw | berth user add -c /etc/berth/appliance.toml e2e --password-stdin >/dev/null 2>&1
sleep 1.5
C=(curl -sS --cacert $CA -u e2e:secret-pw)
B=https://localhost
head -c $((48 << 20)) /dev/urandom >/root/large.bin
d=sha256:$(sha256sum /root/large.bin | cut -d' ' -f1)
echo "push=$("${C[@]}" -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/octet-stream' --data-binary @/root/large.bin "$B/v2/e2e/large/blobs/uploads/?digest=$d")"
load() { for ((i = 0; i < 5000; i++)); do [ -e /root/stop ] && break; echo "$("${C[@]}" -o /dev/null -m 20 -w '%{http_code}' "$B/v2/" 2>/dev/null)" >>/root/load.$1; sleep 0.02; done; }
load a & la=$!
load b & lb=$!
sleep 1
"${C[@]}" --limit-rate 4M -o /root/large.pulled -w '%{http_code} %{size_download}' "$B/v2/e2e/large/blobs/$d" >/root/pull.out 2>/root/pull.err &
pp=$!
sleep 0.5
dpkg -i /root/new.deb >/root/dpkg.new 2>&1; echo "dpkg_new=$?"
new=$(show MainPID); echo "main_new=$new"
echo "status_new=$(show StatusText)"
echo "reload_status=$(systemctl show -p ExecReload --value berth | grep -o 'status=[0-9]*' | head -n 1)"
echo "argv_new=$(tr '\0' ' ' </proc/$new/cmdline)"
wait $pp; echo "pull_rc=$?"
echo "pull=$(cat /root/pull.out)"
echo "pull_intact=$([ "sha256:$(sha256sum /root/large.pulled | cut -d' ' -f1)" = "$d" ] && echo yes || echo no)"
for ((i = 0; i < 300; i++)); do [ -e /proc/$old ] || break; sleep 0.1; done
echo "old_gone=$([ -e /proc/$old ] && echo no || echo yes)"
echo "new_logs_as_berth=$(journalctl -u berth -o cat -t berth _PID=$new | grep -c .)"
systemctl reload berth; echo "reload_same_rc=$?"
echo "main_after_hup=$(show MainPID)"
sleep 0.5
echo "hup_logged=$(journalctl -u berth _PID=$new | grep -c 'reason="SIGHUP"')"
dpkg -i /root/broken.deb >/root/dpkg.broken 2>&1; echo "dpkg_broken=$?"
echo "broken_said=$(grep -c 'keeps serving' /root/dpkg.broken)"
sleep 1
echo "main_after_broken=$(show MainPID)"
echo "active_after_broken=$(systemctl is-active berth)"
echo "serves_after_broken=$("${C[@]}" -o /dev/null -w '%{http_code}' "$B/v2/")"
touch /root/stop; wait $la $lb
echo "requests=$(cat /root/load.a /root/load.b | wc -l)"
echo "failed=$(grep -v -c '^200$' /root/load.a /root/load.b | awk -F: '{s += $2} END {print s}')"
dpkg -i /root/new.deb >/dev/null 2>&1
systemctl restart berth; echo "restart_rc=$?"
echo "active_after_restart=$(systemctl is-active berth)"
EOF
podman_cmd cp "$T/inside.sh" sd:/root/inside.sh || bail "podman cp inside.sh"
in_sd bash /root/inside.sh >"$T/inside.out" 2>"$T/inside.err"
in_sd journalctl -u berth --no-pager >"$T/journal.log" 2>&1
v() { sed -n "s/^$1=//p" "$T/inside.out" | tail -n 1; }
old=$(v main_old)
new=$(v main_new)
check_eq "dpkg -i $version: postinst starts berth.service" "0 active" "$(v dpkg_old) $(v active_old)"
check_eq "a 48 MiB blob is pushed" 201 "$(v push)"
check_eq "dpkg -i $version+upgrade1 under load" 0 "$(v dpkg_new)"
check_ne "systemd's Main PID moved to the new process" "$old" "$new"
check_eq "systemd's status says who took over" "serving (took over from $old)" "$(v status_new)"
check_eq "the reload (ExecReload) exited 0" status=0 "$(v reload_status)"
check_eq "the new process is the unit's command with --upgrade" \
    "/usr/bin/berth serve -c /etc/berth/appliance.toml --upgrade " "$(v argv_new)"
check_eq "the slow pull: curl 0, 200, every byte, intact" "0 200 $((48 << 20)) yes" "$(v pull_rc) $(v pull) $(v pull_intact)"
check_eq "the old process is gone" yes "$(v old_gone)"
check_ne "the new process logs as berth" 0 "$(v new_logs_as_berth)"
check_eq "systemctl reload with the binary unchanged: SIGHUP, same Main PID" "0 $new" "$(v reload_same_rc) $(v main_after_hup)"
check_ne "... logged as a SIGHUP reload" 0 "$(v hup_logged)"
check_eq "a .deb whose binary fails at start installs (dpkg 0) and says the old one serves" "0 1" "$(v dpkg_broken) $(v broken_said)"
check_eq "... the unit stays active on the same Main PID and serves" "active $new 200" \
    "$(v active_after_broken) $(v main_after_broken) $(v serves_after_broken)"
echo "# requests: $(v requests), failed: $(v failed)"
check_eq "zero failed requests" 0 "$(v failed)"
check "the load ran (over 200 requests)" test "$(v requests)" -gt 200
check_eq "systemctl restart works afterwards" "0 active" "$(v restart_rc) $(v active_after_restart)"
[ "$FAIL" = 0 ] || { sed 's/^/#   inside: /' "$T/inside.out"; tail -n 30 "$T/journal.log" | sed 's/^/#   journal: /'; }
summary
