# berth %preun ($1: 0 = erase, 1 = upgrade): on erase, stop and disable the unit (as
# %systemd_preun does).
if [ "$1" -eq 0 ]; then
    systemctl --no-reload disable --now berth.service >/dev/null 2>&1 || :
fi
