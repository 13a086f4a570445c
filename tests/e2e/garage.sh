#!/usr/bin/env bash
# A 3-node Garage cluster on loopback, for the S3 tests.
#
#   bash tests/e2e/garage.sh start DIR   # prints nothing; writes DIR/env (shell variables)
#   bash tests/e2e/garage.sh stop DIR
#   bash tests/e2e/garage.sh node DIR I stop|start   # one node down or up again
#
# Every port is a free one; the sqlite engine (LMDB, the default, refuses object keys
# over 511 bytes, which the longest repository names and tags reach); replication factor 3, consistency_mode "consistent" (reads
# see completed writes), one key and one bucket named "berth". DIR/env has
# GARAGE_S3_1..3 (each node's S3 URL), GARAGE_ADMIN_1..3, BERTH_S3_ENDPOINT (node 1),
# BERTH_S3_BUCKET, BERTH_S3_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
# The garage binary is $GARAGE_BIN, or `garage` on PATH, or ~/.cargo/bin/garage
# (scripts/deps.sh installs it with `cargo install --locked garage`).
set -euo pipefail

if [ -x /usr/bin/python3 ]; then PY=/usr/bin/python3; else PY=python3; fi
G=${GARAGE_BIN:-$(command -v garage || echo "$HOME/.cargo/bin/garage")}
cmd=${1:?start|stop|node}
dir=${2:?DIR}

free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

start_node() {
    local n=$dir/n$1
    RUST_LOG=garage=warn setsid "$G" -c "$n/garage.toml" server >>"$n/log" 2>&1 &
    echo $! >"$n/pid"
}

stop_node() {
    local pidf=$dir/n$1/pid
    [ -f "$pidf" ] || return 0
    local pid
    pid=$(cat "$pidf")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidf"
}

# After a restart a node finds its peers again only slowly (its peer list is retried
# on a long period): introduce it to the others at once.
reconnect() {
    local i=$1 j
    retry "$G" -c "$dir/n$i/garage.toml" node id -q
    for j in 1 2 3; do
        [ "$j" = "$i" ] || [ ! -f "$dir/n$j/pid" ] && continue
        retry "$G" -c "$dir/n$i/garage.toml" node connect "$(cat "$dir/n$j/id")" || true
    done
}

retry() {
    for _ in $(seq 150); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
    "$@"
}

case $cmd in
stop)
    for i in 1 2 3; do stop_node "$i"; done
    exit 0
    ;;
node)
    i=${3:?node number}
    case ${4:?stop|start} in
    stop) stop_node "$i" ;;
    start) start_node "$i"; reconnect "$i" ;;
    esac
    exit 0
    ;;
start) ;;
*) echo "usage: $0 start|stop|node DIR" >&2; exit 2 ;;
esac

[ -x "$G" ] || { echo "garage.sh: no garage binary ($G); run scripts/deps.sh" >&2; exit 1; }
mkdir -p "$dir"
secret=$(openssl rand -hex 32)
ak=GK$(openssl rand -hex 12)
sk=$(openssl rand -hex 32)
: >"$dir/env"
for i in 1 2 3; do
    n=$dir/n$i
    mkdir -p "$n/meta" "$n/data"
    s3=$(free_port); rpc=$(free_port); admin=$(free_port)
    cat >"$n/garage.toml" <<EOF
metadata_dir = "$n/meta"
data_dir = "$n/data"
db_engine = "sqlite"
replication_factor = 3
consistency_mode = "consistent"
metadata_fsync = false
data_fsync = false
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$secret"
bootstrap_peers = []
[s3_api]
api_bind_addr = "127.0.0.1:$s3"
s3_region = "garage"
root_domain = ".s3.garage.localhost"
[admin]
api_bind_addr = "127.0.0.1:$admin"
EOF
    chmod 0600 "$n/garage.toml"
    printf 'GARAGE_S3_%s=http://127.0.0.1:%s\nGARAGE_ADMIN_%s=http://127.0.0.1:%s\n' "$i" "$s3" "$i" "$admin" >>"$dir/env"
    start_node "$i"
done
c1=$dir/n1/garage.toml
for i in 1 2 3; do
    retry "$G" -c "$dir/n$i/garage.toml" node id -q
    "$G" -c "$dir/n$i/garage.toml" node id -q 2>/dev/null >"$dir/n$i/id"
done
for i in 2 3; do
    retry "$G" -c "$c1" node connect "$("$G" -c "$dir/n$i/garage.toml" node id -q)"
done
for _ in $(seq 150); do
    [ "$("$G" -c "$c1" status 2>/dev/null | grep -c 'NO ROLE')" = 3 ] && break
    sleep 0.2
done
"$G" -c "$c1" status 2>/dev/null | awk '/NO ROLE/ {print $1}' | while read -r id; do
    "$G" -c "$c1" layout assign -z dc1 -c 1G "$id" >/dev/null
done
"$G" -c "$c1" layout apply --version 1 >/dev/null
"$G" -c "$c1" key import --yes -n berth "$ak" "$sk" >/dev/null
retry "$G" -c "$c1" bucket create berth
"$G" -c "$c1" bucket allow --read --write --owner berth --key berth >/dev/null
. "$dir/env"
for u in "$GARAGE_ADMIN_1" "$GARAGE_ADMIN_2" "$GARAGE_ADMIN_3"; do
    retry curl -fsS "$u/health"
done
cat >>"$dir/env" <<EOF
BERTH_S3_ENDPOINT=$GARAGE_S3_1
BERTH_S3_BUCKET=berth
BERTH_S3_REGION=garage
AWS_ACCESS_KEY_ID=$ak
AWS_SECRET_ACCESS_KEY=$sk
EOF
