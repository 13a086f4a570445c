#!/usr/bin/env bash
# Installs what building, testing and benchmarking berth needs on a fresh Debian 12 machine, and only
# what is missing: cmake (pingora's zlib-ng build), and the real clients the end-to-end
# suites drive (skopeo, podman with runc, umoci, curl) plus the reference registry
# (docker-registry), haproxy (the load balancer of the replica suite) and containerd (a
# client of the mirror suite), chromium with node and npm (the browser of the ui suite;
# playwright-core comes from npm when the suite runs). Garage is
# scripts/install-garage.sh.
set -euo pipefail

need=()
for pair in cmake:cmake skopeo:skopeo podman:podman umoci:umoci docker-registry:docker-registry \
            curl:curl python3:python3 openssl:openssl pebble:pebble htpasswd:apache2-utils \
            lintian:lintian rpm:rpm dpkg-shlibdeps:dpkg-dev strip:binutils \
            wrk:wrk hey:hey h2load:nghttp2-client nginx:nginx runc:runc haproxy:haproxy \
            containerd:containerd chromium:chromium node:nodejs npm:npm; do
  cmd=${pair%%:*} pkg=${pair##*:}
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
if [ "${1:-}" = "--build-only" ]; then
  need=()
  command -v cmake >/dev/null 2>&1 || need+=(cmake)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq -o DPkg::Lock::Timeout=300 "${need[@]}" >/dev/null
fi
