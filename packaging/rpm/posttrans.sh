# berth %posttrans: after an install or upgrade transaction, a running service hands over
# to the new binary (`systemctl reload`, ExecReload=/usr/libexec/berth/reload: the new
# process takes the listening sockets, the old one finishes its requests, so no request
# is refused and no transfer cut). If the new binary does not start, the old one keeps
# serving. Not running: nothing happens. (Upgrading from a berth package older than this
# one restarts the service once: that package's %postun still does.)
systemctl daemon-reload >/dev/null 2>&1 || :
if systemctl --quiet is-active berth.service 2>/dev/null; then
    if ! systemctl reload berth.service; then
        echo "berth: the new binary did not take over; the previous one keeps serving." >&2
        echo "berth: the reason is in: journalctl -u berth; once fixed: systemctl restart berth" >&2
    fi
fi
