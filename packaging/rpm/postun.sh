# berth %postun ($1: 0 = erase, 1 = upgrade). On upgrade, restart a running service on
# the new binary (as %systemd_postun_with_restart does). On erase, /var/lib/berth (the
# store, the local CA, the ACME account), /etc/berth/htpasswd and the berth user stay;
# an edited appliance.toml is kept as appliance.toml.rpmsave.
systemctl daemon-reload >/dev/null 2>&1 || :
if [ "$1" -ge 1 ]; then
    systemctl try-restart berth.service >/dev/null 2>&1 || :
elif [ -d /var/lib/berth ]; then
    echo "berth: kept /var/lib/berth and /etc/berth/htpasswd; delete them yourself if no longer needed."
fi
