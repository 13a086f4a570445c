#!/usr/bin/env bash
# Builds berth's .deb, .rpm and container image from a checkout (Debian 12, as root, Rust
# via rustup):
#
#   bash packaging/build.sh            # -> target/packages/berth_<v>_<arch>.deb, berth-<v>-1.<arch>.rpm,
#                                      #    berth-<v>-oci.tar (an oci-archive: podman/docker load)
#
# Installs what is missing first: cmake (pingora's build), dpkg-dev (dependency detection
# for the .deb), binutils (strip), python3 and ca-certificates (the image), and the cargo
# subcommands cargo-deb and cargo-generate-rpm (`cargo install --locked`, a few minutes of
# compiling, once).
# The packaging metadata is [package.metadata.deb] / [package.metadata.generate-rpm] in
# Cargo.toml; man pages and completions come from `berth gen-assets`; the image is made by
# packaging/oci-image.py from the same stripped binary, without a container engine.
# Timestamps come from SOURCE_DATE_EPOCH (default: the last commit's time), so building
# one commit twice gives the same image digest. The image's source label is
# BERTH_SOURCE_URL, else the git remote "origin", else a placeholder (berth.invalid, like
# the maintainer address in Cargo.toml).
# The last lines printed are BERTH_DEB=<path>, BERTH_RPM=<path> and BERTH_OCI=<path>, for
# the packaging, upgrade and image suites:  eval "$(bash packaging/build.sh | grep '^BERTH_')"
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "== $*" >&2; }

# ---------------------------------------------------------------- tools
need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v dpkg-shlibdeps >/dev/null 2>&1 || need+=(dpkg-dev)
command -v strip >/dev/null 2>&1 || need+=(binutils)
[ -x /usr/bin/python3 ] || need+=(python3)
[ -d /usr/share/ca-certificates/mozilla ] || need+=(ca-certificates)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq -o DPkg::Lock::Timeout=300 "${need[@]}" >/dev/null
fi
if ! cargo deb --version >/dev/null 2>&1; then
    log "installing cargo-deb"
    cargo install --locked cargo-deb --version '^3'
fi
if ! cargo generate-rpm --version >/dev/null 2>&1; then
    # Releases after 0.19 keep %config(noreplace) when scriptlets are set (upstream #144).
    log "installing cargo-generate-rpm"
    cargo install --locked cargo-generate-rpm
fi

# ---------------------------------------------------------------- build
# Full RELRO (-z now) on top of Rust's PIE, RELRO and stack protection defaults.
export RUSTFLAGS="${RUSTFLAGS:-} -C link-arg=-Wl,-z,relro,-z,now"
# PKG_TARGET_DIR builds in another target directory (CI does, so that this can run while
# the tests use target/); the binary is then copied to target/release/berth, where the
# packaging metadata looks for it.
tdir=${PKG_TARGET_DIR:-target}
log "cargo build --release (in $tdir)"
CARGO_TARGET_DIR=$tdir cargo build --release --locked
bin=target/release/berth
if [ "$tdir" != target ]; then
    mkdir -p target/release
    install -m 0755 "$tdir/release/berth" "$bin"
fi

log "man pages and shell completions"
rm -rf target/assets
"$bin" gen-assets target/assets
for f in target/assets/man/berth.1 target/assets/completions/berth.bash \
    target/assets/completions/_berth target/assets/completions/berth.fish; do
    [ -s "$f" ] || { echo "berth gen-assets did not write $f" >&2; exit 1; }
done

# The packaged binary runs on a stock system: only the C library and the loader.
log "runtime libraries"
libs=$(ldd "$bin" | awk '{print $1}' | grep -v -E '^(linux-vdso\.so|/lib64/ld-linux|/lib/ld-linux)' | sort)
echo "$libs" | while read -r l; do echo "   $l"; done >&2
bad=$(echo "$libs" | grep -v -E '^(libc|libm|libgcc_s|libdl|libpthread|librt)\.so\.[0-9]+$' || true)
if [ -n "$bad" ]; then
    echo "berth links libraries a stock Debian 12 / RHEL 9 may lack: $bad" >&2
    exit 1
fi
# RHEL 9 has glibc 2.34 (Debian 12: 2.36): no symbol may need a newer one.
glibc=$(grep -ao 'GLIBC_2\.[0-9.]*' "$bin" | sort -uV | tail -n 1)
echo "   newest glibc symbol version: ${glibc:-none}" >&2
if [ -n "$glibc" ] && [ "$(printf '%s\n' "$glibc" GLIBC_2.34 | sort -V | tail -n 1)" != GLIBC_2.34 ]; then
    echo "berth needs $glibc; RHEL 9 has GLIBC_2.34" >&2
    exit 1
fi
# cargo-deb strips its own copy; cargo-generate-rpm packs the file as it is.
strip --strip-unneeded "$bin"

# ---------------------------------------------------------------- packages
# One time for every file of every artefact: the last commit's.
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 0)
fi
export SOURCE_DATE_EPOCH
out=target/packages
rm -rf "$out"
mkdir -p "$out"
log "cargo deb"
cargo deb --no-build --locked --output "$out/" >&2
log "cargo generate-rpm"
cargo generate-rpm --output "$out/" >&2

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
log "container image"
source_url=${BERTH_SOURCE_URL:-}
if [ -z "$source_url" ]; then
    # A clone of a local path (CI clones /somewhere/repo.git) has no URL to
    # publish: the label is for people who want the source, so only a network
    # remote (https/git/ssh or scp-like user@host:path) is taken.
    remote=$(git config --get remote.origin.url 2>/dev/null || true)
    if printf '%s' "$remote" | grep -Eq '^(https?|git|ssh)://|^[^ /]+@[^ /]+:'; then
        # Never publish credentials a remote may carry (https://user:token@host/...).
        source_url=$(printf '%s' "$remote" | sed -E 's#^(https?://)[^/@]*@#\1#')
    fi
fi
revision=$(git rev-parse HEAD 2>/dev/null || true)
if [ -n "$revision" ] && ! git diff --quiet HEAD -- 2>/dev/null; then
    revision="$revision-dirty"
fi
if [ -z "$source_url" ]; then
    source_url=https://berth.invalid/berth
    log "no BERTH_SOURCE_URL and no network git remote: source label $source_url"
fi
/usr/bin/python3 packaging/oci-image.py --binary "$bin" --output "$out/berth-$version-oci.tar" \
    --version "$version" --source "$source_url" --revision "$revision"

deb=$(ls "$out"/*.deb)
rpm=$(ls "$out"/*.rpm)
oci=$out/berth-$version-oci.tar
if command -v rpm >/dev/null 2>&1; then
    flags=$(rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpm" 2>/dev/null | awk '$2 == "/etc/berth/appliance.toml" {print $1}')
    case "$flags" in
    *n*) ;;
    *)
        echo "$rpm: /etc/berth/appliance.toml is not %config(noreplace) (flags '$flags');" \
            "cargo-generate-rpm is too old: cargo install --locked --force cargo-generate-rpm" >&2
        exit 1
        ;;
    esac
fi
echo "BERTH_DEB=$PWD/$deb"
echo "BERTH_RPM=$PWD/$rpm"
echo "BERTH_OCI=$PWD/$oci"
