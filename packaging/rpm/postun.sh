# berth %postun ($1: 0 = erase, 1 = upgrade). On upgrade nothing is restarted here: the
# new package's %posttrans hands the running service over to the new binary. On erase,
# /var/lib/berth (the store, the local CA, the ACME account), /etc/berth/htpasswd and the
# berth user stay; an edited appliance.toml is kept as appliance.toml.rpmsave.
systemctl daemon-reload >/dev/null 2>&1 || :
if [ "$1" -eq 0 ] && [ -d /var/lib/berth ]; then
    echo "berth: kept /var/lib/berth and /etc/berth/htpasswd; delete them yourself if no longer needed."
fi
