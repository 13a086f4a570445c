# berth %post ($1: 1 = first install, 2 = upgrade). The system user, /var/lib/berth
# (0750), /etc/berth (2750 root:berth) and an empty htpasswd (0640 root:berth), then the
# vendor preset decides whether the unit is enabled (as %systemd_post does).
systemd-sysusers berth.conf || :
systemd-tmpfiles --create berth.conf || :
if [ "$1" -eq 1 ]; then
    systemctl --no-reload preset berth.service >/dev/null 2>&1 || :
fi
if ! grep -q '^[^#[:space:]][^:]*:' /etc/berth/htpasswd 2>/dev/null; then
    host=$(cat /etc/hostname 2>/dev/null || uname -n)
    cat <<EOT

berth: an authenticated registry on https://$host/ (port 443; port 80 redirects),
with a certificate from berth's own local CA ("self-signed" mode).

Next steps:
  1. Add a user; until then every login is refused:
       sudo berth user add -c /etc/berth/appliance.toml alice
  2. Start it:
       sudo systemctl enable --now berth
  3. Clients trust the local CA, made on first start:
       /var/lib/berth/state/tls/ca.crt   (or: sudo berth cert ca -c /etc/berth/appliance.toml)
       docker:         /etc/docker/certs.d/$host/ca.crt
       podman, skopeo: /etc/containers/certs.d/$host/ca.crt
  4. For a public name, get the certificate from Let's Encrypt instead; in
     /etc/berth/appliance.toml set
       [tls]       mode = "acme" and hostnames = ["registry.example.com"]
       [tls.acme]  email = "you@example.com"
     then: sudo systemctl restart berth   (ports 80/443 reachable under that name)

Configuration: /etc/berth/appliance.toml   Logs: journalctl -u berth

EOT
fi
