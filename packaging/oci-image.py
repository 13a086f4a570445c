#!/usr/bin/env python3
"""Builds berth's container image as an oci-archive, without a container engine.

    python3 packaging/oci-image.py --binary target/release/berth \
        --output target/packages/berth-<version>-oci.tar [--version V] [--source URL]

One layer: the binary, the shared libraries `ldd` says it loads (with the dynamic loader)
and their Debian copyright files, packaging/container.toml as /etc/berth/appliance.toml,
an empty /etc/berth/htpasswd, the Mozilla CA bundle from Debian's ca-certificates (ACME
and webhooks verify TLS with the system roots), and passwd/group entries for the berth
user (uid/gid 10001). Nothing else: no shell, no package manager.

Reproducible: every timestamp is SOURCE_DATE_EPOCH (default: 0), tar entries are sorted
with fixed owners and modes, gzip has no name or time, JSON is written with sorted keys.
Two runs over the same inputs give the same bytes, hence the same image digest.

The archive is an OCI image layout (oci-layout, index.json, blobs/sha256/...) for
`skopeo copy oci-archive:...` and `podman load`, plus the manifest.json that
`docker load` reads (Docker before 25 knows only that one), naming the image
berth:<version>.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import time

UID = GID = 10001
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", required=True, help="the berth executable to ship")
    ap.add_argument("--output", required=True, help="the oci-archive to write")
    ap.add_argument("--version", help="image version (default: Cargo.toml's)")
    ap.add_argument("--source", default="", help="org.opencontainers.image.source URL")
    ap.add_argument("--revision", default="", help="org.opencontainers.image.revision")
    args = ap.parse_args()

    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    version = args.version or cargo_version()
    arch = ARCH.get(os.uname().machine, os.uname().machine)

    files = rootfs(args.binary)
    layer_tar = tar_bytes(files, epoch)
    layer_gz = gzip_bytes(layer_tar)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))

    labels = {
        "org.opencontainers.image.title": "berth",
        "org.opencontainers.image.description": cargo_field("description"),
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.created": created,
        # berth, glibc, libgcc, the Mozilla CA list.
        "org.opencontainers.image.licenses": (
            cargo_field("license")
            + " AND LGPL-2.1-or-later AND GPL-3.0-or-later WITH GCC-exception-3.1 AND MPL-2.0"
        ),
    }
    if args.source:
        labels["org.opencontainers.image.source"] = args.source
    if args.revision:
        labels["org.opencontainers.image.revision"] = args.revision

    config = {
        "created": created,
        "architecture": arch,
        "os": "linux",
        "config": {
            "User": f"{UID}:{GID}",
            "Env": [
                "PATH=/usr/bin",
                # Every subcommand (user add, cert ca, config show) reads the same file.
                "BERTH_CONFIG=/etc/berth/appliance.toml",
                # registry:2's address: REGISTRY_HTTP_TLS_CERTIFICATE alone then serves TLS
                # on it, as with registry:2 (see packaging/container.toml).
                "REGISTRY_HTTP_ADDR=:5000",
                # As systemd/berth.service: freed multi-MiB buffers go back to the system
                # (a 1 GiB push through S3 peaks at 31 MiB RSS instead of 71 MiB).
                "GLIBC_TUNABLES=glibc.malloc.mmap_threshold=1048576",
            ],
            "Entrypoint": ["/usr/bin/berth"],
            "Cmd": ["serve"],
            "WorkingDir": "/var/lib/berth",
            "ExposedPorts": {"5000/tcp": {}, "5001/tcp": {}},
            "Volumes": {"/etc/berth": {}, "/var/lib/berth": {}},
            "StopSignal": "SIGTERM",
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [digest(layer_tar)]},
        "history": [
            {
                "created": created,
                "created_by": "packaging/oci-image.py",
                "comment": f"berth {version}: the binary, its libraries, its configuration",
            }
        ],
    }
    config_bytes = canonical(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor("application/vnd.oci.image.config.v1+json", config_bytes),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+gzip", layer_gz)],
        "annotations": {
            k: v
            for k, v in labels.items()
            if k.split(".")[-1] in ("created", "version", "source", "revision")
        },
    }
    manifest_bytes = canonical(manifest)
    mdesc = descriptor("application/vnd.oci.image.manifest.v1+json", manifest_bytes)
    mdesc["annotations"] = {
        "org.opencontainers.image.ref.name": version,
        # The full name containerd and `docker load` (25+) give the image.
        "io.containerd.image.name": f"docker.io/library/berth:{version}",
    }
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [mdesc],
    }
    blob = lambda b: "blobs/sha256/" + digest(b).split(":", 1)[1]
    docker_manifest = [
        {
            "Config": blob(config_bytes),
            "RepoTags": [f"berth:{version}"],
            "Layers": [blob(layer_gz)],
        }
    ]
    archive = [
        ("blobs/", None, 0o755),
        ("blobs/sha256/", None, 0o755),
        (blob(config_bytes), config_bytes, 0o644),
        (blob(layer_gz), layer_gz, 0o644),
        (blob(manifest_bytes), manifest_bytes, 0o644),
        ("index.json", canonical(index), 0o644),
        ("manifest.json", canonical(docker_manifest), 0o644),
        ("oci-layout", canonical({"imageLayoutVersion": "1.0.0"}), 0o644),
    ]
    out = tar_bytes([(p, d, m, 0, 0) for p, d, m in archive], epoch)
    tmp = args.output + ".tmp"
    with open(tmp, "wb") as f:
        f.write(out)
    os.replace(tmp, args.output)
    print(f"{args.output}: berth:{version} {mdesc['digest']}", file=sys.stderr)


def rootfs(binary):
    """(path, bytes or None for a directory, mode, uid, gid) of every entry of the layer."""
    entries = {}

    def add(path, data, mode, uid=0, gid=0):
        parts = path.strip("/").split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i]) + "/"
            entries.setdefault(d, (d, None, 0o755, 0, 0))
        key = path.strip("/") + ("/" if data is None else "")
        entries[key] = (key, data, mode, uid, gid)

    add("usr/bin/berth", read(binary), 0o755)
    for path in shared_libraries(binary):
        add(path, read(path), 0o755)
        owner = copyright_of(path)
        if owner:
            add(f"usr/share/doc/{owner[0]}/copyright", read(owner[1]), 0o644)
    add("usr/share/doc/berth/LICENSE", read(os.path.join(REPO, "LICENSE")), 0o644)

    add("etc/passwd", b"root:x:0:0:root:/root:/sbin/nologin\n"
        + f"berth:x:{UID}:{GID}:berth container registry:/var/lib/berth:/sbin/nologin\n".encode(), 0o644)
    add("etc/group", b"root:x:0:\n" + f"berth:x:{GID}:\n".encode(), 0o644)
    # Written by `berth user add` as the berth user: the directory is berth's.
    add("etc/berth", None, 0o750, UID, GID)
    add("etc/berth/appliance.toml", read(os.path.join(REPO, "packaging/container.toml")), 0o644)
    add("etc/berth/htpasswd", b"", 0o640, UID, GID)
    add("etc/ssl/certs/ca-certificates.crt", ca_bundle(), 0o644)
    add("usr/share/doc/ca-certificates/copyright", read("/usr/share/doc/ca-certificates/copyright"), 0o644)
    add("var/lib/berth", None, 0o750, UID, GID)
    add("tmp", None, 0o1777)
    return sorted(entries.values())


def shared_libraries(binary):
    """What the dynamic loader maps for `binary`: the loader itself and every library."""
    out = subprocess.run(["ldd", binary], check=True, capture_output=True, text=True).stdout
    libs = []
    for line in out.splitlines():
        m = re.match(r"\s*(?:\S+ => )?(/\S+) \(0x[0-9a-f]+\)$", line)
        if m:
            libs.append(m.group(1))
        elif "=>" in line and "not found" in line:
            sys.exit(f"oci-image: {binary}: {line.strip()}")
    if not any("ld-linux" in l for l in libs):
        sys.exit(f"oci-image: {binary}: ldd names no dynamic loader:\n{out}")
    return sorted(set(libs))


def copyright_of(path):
    """(Debian package, its copyright file) for a library, when dpkg knows it."""
    for p in (path, os.path.realpath(path)):
        r = subprocess.run(["dpkg-query", "-S", p], capture_output=True, text=True)
        if r.returncode == 0:
            pkg = r.stdout.split(":", 1)[0]
            f = f"/usr/share/doc/{pkg}/copyright"
            if os.path.exists(f):
                return pkg, f
    return None


def ca_bundle():
    """The Mozilla roots Debian ships, in name order: not this machine's own trust
    choices or local CAs (/etc/ssl/certs is generated from those)."""
    d = "/usr/share/ca-certificates/mozilla"
    names = sorted(n for n in os.listdir(d) if n.endswith(".crt"))
    if not names:
        sys.exit(f"oci-image: no certificates in {d} (apt-get install ca-certificates)")
    return b"".join(read(os.path.join(d, n)).rstrip(b"\n") + b"\n" for n in names)


def tar_bytes(entries, epoch):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for path, data, mode, uid, gid in sorted(entries, key=lambda e: e[0]):
            info = tarfile.TarInfo(path.rstrip("/"))
            info.mode, info.uid, info.gid, info.mtime = mode, uid, gid, epoch
            info.uname = info.gname = ""
            if data is None:
                info.type = tarfile.DIRTYPE
                t.addfile(info)
            else:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def gzip_bytes(data):
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=6, mtime=0) as g:
        g.write(data)
    return buf.getvalue()


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(media_type, data):
    return {"mediaType": media_type, "digest": digest(data), "size": len(data)}


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def read(path):
    with open(path, "rb") as f:
        return f.read()


def cargo_field(key):
    with open(os.path.join(REPO, "Cargo.toml")) as f:
        for line in f:
            m = re.match(rf'^{key} = "(.*)"$', line)
            if m:
                return m.group(1)
    sys.exit(f"oci-image: no {key} in Cargo.toml")


def cargo_version():
    return cargo_field("version")


if __name__ == "__main__":
    main()
