#!/usr/bin/env python3
"""Writes the seed corpus, fuzz/corpus/<target>/seed-*, from real tools where there are any:
ClientHellos that openssl s_client, curl and skopeo send (captured on loopback), OCI
layouts that umoci and skopeo write, htpasswd lines from htpasswd -B, JWTs signed with the
fuzzing keys of src/fuzzing/ by openssl, the shipped appliance.toml files and registry:2
config.yml files. The rest are realistic inputs written out here.

Run it by hand when a parser grows (python3 fuzz/make-seeds.py); CI only reads the
committed files. It rewrites seed-* files and leaves crash-* regression files alone.
Needs: openssl, curl, skopeo, umoci, htpasswd (apache2-utils), all in scripts/deps.sh.
"""

import base64
import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
KEYS = ROOT / "src" / "fuzzing"

D1 = "sha256:" + "a" * 64
UPLOAD = "5f1c5b2e-8d3a-4c1e-9b7a-0e6f2d4c8a11"


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / f"seed-{name}").write_bytes(data)


def clear(target):
    d = CORPUS / target
    if d.exists():
        for f in d.glob("seed-*"):
            f.unlink()


def run(*cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, **kw).stdout


def endpoint():
    d, up = D1, UPLOAD
    lines = [
        "GET /",
        "GET /v2/",
        "HEAD /v2",
        "GET /v2/_catalog?n=100&last=library%2Falpine",
        "GET /v2/library/alpine/tags/list?n=10",
        "HEAD /v2/library/alpine/manifests/3.19",
        "GET /v2/library/alpine/manifests/latest",
        "PUT /v2/team-a/app/manifests/v1.2.3",
        f"GET /v2/a/manifests/{d}",
        f"DELETE /v2/a/b/c/manifests/{d}",
        f"GET /v2/library/alpine/blobs/{d}",
        "GET /v2/a/blobs/" + d.replace(":", "%3A"),
        f"DELETE /v2/a/blobs/{d}",
        "POST /v2/team/app/blobs/uploads/",
        "POST /v2/a/blobs/uploads",
        f"POST /v2/a/blobs/uploads/?mount={d}&from=library%2Falpine",
        f"POST /v2/a/blobs/uploads/?digest={d}",
        f"GET /v2/a/blobs/uploads/{up}",
        f"PATCH /v2/a/blobs/uploads/{up}",
        f"PUT /v2/a/blobs/uploads/{up}?digest={d}",
        f"DELETE /v2/a/blobs/uploads/{up}",
        f"GET /v2/a/referrers/{d}?artifactType=application%2Fvnd.example%2Bjson",
        "GET /token?service=registry&scope=repository:a/b:pull,push&scope=registry:catalog:*",
        "POST /token",
        "DELETE /berth/v1/repositories/team/app",
        "GET /v2/a/manifests/.INVALID_MANIFEST_NAME",
        "PUT /v2/a/manifests/sha256:abc",
        "GET /v2/%2e%2e/manifests/latest",
        "GET /v2/x/blobs/manifests/latest",
        "GET /v2/a/blobs/uploads/../../x",
        "OPTIONS /v2/",
        "GET /v2/A/tags/list",
        "GET /v2/a+b/tags/list",
        "GET /metrics",
    ]
    for i, line in enumerate(lines):
        write("endpoint", f"{i:02}", line)


def reference():
    items = [
        "library/alpine",
        "a",
        "a.b/c_d/e__f/g-h/i---j",
        "registry/team-a/app",
        "latest",
        "v1.2.3",
        "_x",
        "A-b_c.d",
        D1,
        "sha512:" + "0" * 128,
        "sha256:" + "A" * 64,
        "sha256:../" + "a" * 61,
        UPLOAD,
        "..",
        "a//b",
        "a%2fb",
        "x" * 129,
        "n" * 256,
    ]
    for i, s in enumerate(items):
        write("reference", f"{i:02}", s)


def range_():
    items = [
        "1024\nbytes=0-99",
        "1024\nbytes=-100",
        "1024\nbytes=1000-",
        "1024\nbytes=0-0,5-9",
        "1024\nbytes=2000-3000",
        "0\nbytes=0-",
        "0\nbytes=-1",
        "100\nitems=0-1",
        "1024\n bytes=10-20 ",
        "1024\nbytes 1024-2047/4096",
        "1024\n1024-2047",
        "0\n0-1048575",
        "0\nbytes=0-1048575/*",
        "5\n5-4",
    ]
    for i, s in enumerate(items):
        write("range", f"{i:02}", s)


def oci_images(tmp):
    """An image made with umoci and copied with skopeo, in every format berth takes."""
    lay = tmp / "lay"
    run("umoci", "init", "--layout", str(lay))
    run("umoci", "new", "--image", f"{lay}:latest")
    run("umoci", "config", "--image", f"{lay}:latest", "--tag", "v1",
        "--config.env", "FOO=bar", "--architecture", "arm64", "--os", "linux")
    sk = tmp / "sk"
    run("skopeo", "copy", f"oci:{lay}:latest", f"oci:{sk}:library/demo:1.0")
    run("skopeo", "copy", f"oci:{lay}:v1", f"oci:{sk}:v1")
    docker = tmp / "docker"
    run("skopeo", "copy", "--format", "v2s2", f"oci:{lay}:latest", f"dir:{docker}")
    return lay, sk, docker


def manifest(lay, sk, docker):
    oci = "application/vnd.oci.image.manifest.v1+json"
    idx_type = "application/vnd.oci.image.index.v1+json"
    dm = "application/vnd.docker.distribution.manifest.v2+json"
    index = json.loads((sk / "index.json").read_text())
    blobs = []
    for m in index["manifests"]:
        blob = sk / "blobs" / "sha256" / m["digest"].split(":")[1]
        blobs.append((m, blob.read_bytes()))
    write("manifest", "skopeo-oci", f"{oci}\n".encode() + blobs[0][1])
    write("manifest", "skopeo-oci-no-header", b"\n" + blobs[1][1])
    write("manifest", "skopeo-docker-v2s2", f"{dm}\n".encode() + (docker / "manifest.json").read_bytes())
    multi = {
        "schemaVersion": 2,
        "mediaType": idx_type,
        "manifests": [
            {"mediaType": oci, "digest": m["digest"], "size": m["size"],
             "platform": {"architecture": arch, "os": "linux"}}
            for (m, _), arch in zip(blobs, ["amd64", "arm64"])
        ],
    }
    write("manifest", "index", f"{idx_type}\n" + json.dumps(multi))
    sub = blobs[0][0]
    artifact = {
        "schemaVersion": 2,
        "mediaType": oci,
        "artifactType": "application/vnd.example.sbom.v1+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                   "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
                   "size": 2, "data": "e30="},
        "layers": [{"mediaType": "application/spdx+json", "digest": D1, "size": 1234}],
        "subject": {"mediaType": oci, "digest": sub["digest"], "size": sub["size"]},
        "annotations": {"org.opencontainers.image.created": "2026-12-03T00:00:00Z"},
    }
    write("manifest", "referrer", f"{oci}\n" + json.dumps(artifact, indent=2))
    foreign = json.loads(blobs[0][1])
    foreign["layers"] = [{"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                          "digest": D1, "size": 1, "urls": ["https://example.com/layer"]}]
    write("manifest", "foreign-layer", "\n" + json.dumps(foreign))
    write("manifest", "schema1", "application/vnd.docker.distribution.manifest.v1+prettyjws\n"
          '{"schemaVersion":1,"name":"a","tag":"b","fsLayers":[]}')
    write("manifest", "rc-artifact", "application/vnd.oci.artifact.manifest.v1+json\n"
          + json.dumps({"mediaType": "application/vnd.oci.artifact.manifest.v1+json",
                        "artifactType": "x/y", "blobs": [], "subject": artifact["subject"]}))


def oci_layout(lay, sk):
    write("oci_layout", "marker", (lay / "oci-layout").read_bytes())
    write("oci_layout", "umoci-index", (lay / "index.json").read_bytes())
    write("oci_layout", "skopeo-index", (sk / "index.json").read_bytes())
    index = json.loads((sk / "index.json").read_text())
    m = index["manifests"][0]
    multi = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            dict(m, platform={"architecture": "arm64", "os": "linux", "variant": "v8"}),
            dict(index["manifests"][1], platform={"architecture": "amd64", "os": "windows",
                                                  "os.version": "10.0.17763.1", "os.features": ["win32k"]}),
            {"mediaType": "application/vnd.oci.empty.v1+json",
             "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
             "size": 2, "data": "e30=", "artifactType": "application/vnd.example"},
        ],
        "annotations": {"org.opencontainers.image.created": "2026-12-03T00:00:00Z"},
    }
    write("oci_layout", "multi-platform", json.dumps(multi, indent=3))


def capture_hellos():
    """The first bytes clients send to a TLS port on loopback."""
    got = {}

    def serve(sock, name):
        conn, _ = sock.accept()
        conn.settimeout(1.0)
        data = b""
        try:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
        except socket.timeout:
            pass
        conn.close()
        got[name] = data

    clients = {
        "openssl-default": ["openssl", "s_client", "-connect", "{addr}", "-servername", "registry.example"],
        "openssl-alpn": ["openssl", "s_client", "-connect", "{addr}", "-servername", "registry.example",
                         "-alpn", "h2,http/1.1"],
        "openssl-tls12": ["openssl", "s_client", "-connect", "{addr}", "-tls1_2", "-servername", "old.example"],
        "openssl-acme": ["openssl", "s_client", "-connect", "{addr}", "-servername", "acme.example",
                         "-alpn", "acme-tls/1"],
        "openssl-no-sni": ["openssl", "s_client", "-connect", "{addr}", "-noservername"],
        "curl": ["curl", "-sk", "--http2", "--max-time", "3", "https://localhost:{port}/v2/"],
        "skopeo": ["skopeo", "inspect", "--retry-times", "0", "docker://localhost:{port}/library/alpine:3.19"],
    }
    for name, cmd in clients.items():
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        t = threading.Thread(target=serve, args=(sock, name))
        t.start()
        cmd = [c.format(addr=f"127.0.0.1:{port}", port=port) for c in cmd]
        subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=20)
        t.join(10)
        sock.close()
    return got


def client_hello():
    for name, data in capture_hellos().items():
        if data:
            write("client_hello", name, data)
    write("client_hello", "plain-http", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")


def proxy_header():
    v2sig = b"\r\n\r\n\x00\r\nQUIT\n"

    def v2(cmd, fam, body):
        return v2sig + bytes([cmd, fam]) + struct.pack(">H", len(body)) + body

    v4 = socket.inet_aton("192.0.2.7") + socket.inet_aton("10.0.0.1") + struct.pack(">HH", 56324, 443)
    v6 = (socket.inet_pton(socket.AF_INET6, "2001:db8::1") + socket.inet_pton(socket.AF_INET6, "::1")
          + struct.pack(">HH", 4000, 443))
    tlv = bytes([0x04, 0, 1, 0]) + bytes([0x01, 0, 2]) + b"h2"
    unix = b"/run/a.sock".ljust(108, b"\0") + b"/run/b.sock".ljust(108, b"\0")
    items = {
        "v1-tcp4": b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\nGET / HTTP/1.1\r\n",
        "v1-tcp6": b"PROXY TCP6 2001:db8::1 ::1 4000 443\r\n\x16\x03\x01",
        "v1-unknown": b"PROXY UNKNOWN\r\n",
        "v1-unknown-addresses": b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n",
        "v1-worst-case": b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
        "v2-tcp4": v2(0x21, 0x11, v4) + b"GET /",
        "v2-tcp4-tlvs": v2(0x21, 0x11, v4 + tlv),
        "v2-tcp6": v2(0x21, 0x21, v6),
        "v2-udp4": v2(0x21, 0x12, v4),
        "v2-local": v2(0x20, 0x00, b""),
        "v2-unix": v2(0x21, 0x31, unix),
        "v2-short": v2(0x21, 0x11, v4[:5]),
        "http": b"GET / HTTP/1.1\r\n\r\n",
    }
    for name, data in items.items():
        write("proxy_header", name, data)


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def der_to_raw(sig):
    # ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }, to JWS's r || s.
    assert sig[0] == 0x30
    i = 2 if sig[1] < 0x80 else 3
    out = b""
    for _ in range(2):
        assert sig[i] == 0x02
        n = sig[i + 1]
        v = sig[i + 2:i + 2 + n].lstrip(b"\0")
        out += v.rjust(32, b"\0")
        i += 2 + n
    return out


def sign(key, header, claims):
    msg = f"{b64url(header.encode())}.{b64url(claims.encode())}"
    sig = run("openssl", "dgst", "-sha256", "-sign", str(KEYS / key), input=msg.encode())
    return f"{msg}.{b64url(der_to_raw(sig))}"


def cert_b64(name):
    pem = (KEYS / name).read_text()
    body = "".join(l for l in pem.splitlines() if not l.startswith("-----"))
    return body


def libtrust_kid(cert):
    der = run("openssl", "x509", "-in", str(KEYS / cert), "-pubkey", "-noout")
    spki = run("openssl", "pkey", "-pubin", "-outform", "DER", input=der)
    h = hashlib.sha256(spki).digest()[:30]
    b32 = base64.b32encode(h).decode().rstrip("=")
    return ":".join(b32[i:i + 4] for i in range(0, 48, 4))


def jwt():
    now = 1_800_000_000
    kid = libtrust_kid("issuer.pem")
    claims = json.dumps({
        "iss": "berth-fuzzing", "sub": "alice", "aud": "registry.fuzzing",
        "exp": now + 300, "nbf": now - 10, "iat": now - 10, "jti": "0123456789abcdef",
        "access": [{"type": "repository", "name": "team/app", "actions": ["pull", "push"]},
                   {"type": "registry", "name": "catalog", "actions": ["*"]}],
    }, separators=(",", ":"))
    kid_header = json.dumps({"typ": "JWT", "alg": "ES256", "kid": kid}, separators=(",", ":"))
    x5c_header = json.dumps({"typ": "JWT", "alg": "ES256", "x5c": [cert_b64("leaf.pem")]})
    chain_header = json.dumps({"typ": "JWT", "alg": "ES256",
                               "x5c": [cert_b64("leaf.pem"), cert_b64("issuer.pem")]})
    tokens = {
        "kid": sign("issuer.key", kid_header, claims),
        "no-kid": sign("issuer.key", '{"alg":"ES256"}', claims),
        "x5c-leaf": sign("leaf.key", x5c_header, claims),
        "x5c-chain": sign("leaf.key", chain_header, claims),
        "expired": sign("issuer.key", kid_header, claims.replace(str(now + 300), str(now - 3600))),
        "alg-none": b64url(b'{"alg":"none"}') + "." + b64url(claims.encode()) + ".",
        "hs256": b64url(b'{"alg":"HS256","typ":"JWT"}') + "." + b64url(claims.encode()) + ".c2ln",
    }
    for name, t in tokens.items():
        write("jwt", f"token-{name}", "0" + t)
    variants = {
        "claims": claims,
        "claims-aud-list": claims.replace('"aud":"registry.fuzzing"', '"aud":["other","registry.fuzzing"]'),
        "claims-minimal": json.dumps({"iss": "berth-fuzzing", "aud": "registry.fuzzing", "exp": now + 60}),
        "claims-not-yet": claims.replace(f'"nbf":{now - 10}', f'"nbf":{now + 3600}'),
        "claims-other-issuer": claims.replace("berth-fuzzing", "someone-else"),
    }
    for name, c in variants.items():
        write("jwt", name, "1" + c)
    headers = {
        "header-kid": kid_header,
        "header-x5c": x5c_header,
        "header-rs256": '{"alg":"RS256","kid":"' + kid + '"}',
        "header-none": '{"alg":"none"}',
    }
    for name, h in headers.items():
        write("jwt", name, "2" + h)
    return tokens["kid"]


def authorization(token):
    items = {
        "basic": "Basic " + base64.b64encode(b"alice:s3cret").decode(),
        "basic-colons": "Basic " + base64.b64encode(b"bob:pa:ss:word").decode(),
        "basic-lower": "basic  " + base64.b64encode(b"carol:").decode() + " ",
        "basic-urlsafe": "Basic " + base64.urlsafe_b64encode("dävid:ü?>~".encode()).decode().rstrip("="),
        "bearer": "Bearer " + token,
        "bearer-garbage": "Bearer abc.def.ghi",
        "scopes": "repository:team/app:pull,push repository(plugin):x:pull registry:catalog:* repository:a:b:c:",
    }
    for name, v in items.items():
        write("authorization", name, v)


def www_authenticate():
    items = {
        "docker-hub": 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"',
        "ghcr": 'Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:owner/image:pull"',
        "quay-error": 'Bearer realm="https://quay.io/v2/auth",service="quay.io",scope="repository:a/b:pull,push",error="insufficient_scope"',
        "berth": 'Bearer realm="https://registry.lan/token",service="registry.lan",scope="registry:catalog:*"',
        "basic": 'Basic realm="Registry Realm"',
        "basic-charset": 'Basic realm="simple", charset="UTF-8"',
        "rfc-example": r'Newauth realm="apps", type=1, title="Login to \"apps\"", Basic realm="simple"',
        "token68": "Negotiate YIIBJQYGKwYBBQUCoIIBGTCCARWgDTALBgkqhkiG9xIBAgKiggECBIH/",
        "lists": ' , Basic realm="a" ,, Bearer realm=b , Digest realm="x", qop="auth,auth-int", nonce="dcd98b7102dd2f0e"',
        "scopes": 'Bearer realm="r",scope="repository:a:pull repository:b:pull,push"',
    }
    for name, v in items.items():
        write("www_authenticate", name, v)


def htpasswd():
    alice = run("htpasswd", "-nbB", "alice", "correct horse").decode().strip()
    bob = run("htpasswd", "-nbB", "-C", "5", "bob", "s3cret").decode().strip()
    md5 = run("htpasswd", "-nbm", "carol", "x").decode().strip()
    sha = run("htpasswd", "-nbs", "dave", "x").decode().strip()
    write("htpasswd", "bcrypt", f"{alice}\n{bob}\n")
    write("htpasswd", "comments", f"# users of the registry\n\n{alice}\r\n   {bob}   \n#end")
    write("htpasswd", "berth-2b", bob.replace("$2y$", "$2b$") + "\n")
    write("htpasswd", "md5-refused", f"{alice}\n{md5}\n")
    write("htpasswd", "sha-refused", sha)
    write("htpasswd", "no-colon", "alice\n")
    write("htpasswd", "empty-user", ":" + alice.split(":", 1)[1])


def config():
    write("config", "appliance.toml", (ROOT / "appliance.toml").read_bytes())
    write("config", "packaging-appliance.toml", (ROOT / "packaging" / "appliance.toml").read_bytes())
    write("config", "env-overrides", """# env: REGISTRY_HTTP_ADDR=:5001
# env: REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=/var/lib/registry
# env: REGISTRY_STORAGE_DELETE_ENABLED=false
# env: BERTH__LIMITS__MANIFEST_MAX=8MiB
# env: BERTH__HTTP__LISTEN=["127.0.0.1:5000", "[::1]:5000"]
[storage]
root = "/srv/registry"
""")
    write("config", "token-auth", """[http]
listen = ["0.0.0.0:443"]
trusted_proxies = ["10.0.0.0/8", "fd00::/8", "192.0.2.1"]
proxy_protocol = true

[tls]
mode = "files"
certificate = "/etc/berth/tls/cert.pem"
key = "/etc/berth/tls/key.pem"
min_version = "1.3"

[auth]
mode = "token"
admins = ["root"]

[auth.groups]
devs = ["carol", "dave"]

[[auth.rules]]
repositories = ["team-a/*"]
users = ["@devs"]
actions = ["pull", "push"]

[auth.token]
issuer = "external"
realm = "https://auth.example.com/token"
service = "registry.example.com"
rootcertbundle = "/etc/berth/token-ca.pem"
algorithms = ["ES256", "RS256"]
expiration = "5m"
""")
    write("config", "webhooks", """[limits]
manifest_max = "4MiB"

[gc]
interval = "12h"
grace_period = "90m"

[[notifications.endpoints]]
name = "ci"
url = "https://ci.example.com:8443/hook?x=1"
headers = { Authorization = "Bearer abc" }
timeout = "250ms"
ignore_actions = ["pull"]

[log]
level = "berth=debug,pingora_core=warn"
format = "json"
""")
    write("config", "acme", """# env: REGISTRY_HTTP_TLS_LETSENCRYPT_EMAIL=ops@example.com
# env: REGISTRY_HTTP_TLS_LETSENCRYPT_HOSTS_0=registry.example.com
[tls]
mode = "acme"
hostnames = ["registry.example.com"]
""")


def import_distribution():
    write("import_distribution", "debian-config.yml", Path("/etc/docker/registry/config.yml").read_bytes()
          if Path("/etc/docker/registry/config.yml").exists() else b"version: 0.1\n")
    write("import_distribution", "e2e-config.yml", """version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: /srv/registry
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:5000
  secret: not-a-secret
""")
    write("import_distribution", "tls-token.yml", """version: 0.1
storage:
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :443
  tls:
    certificate: /certs/domain.crt
    key: /certs/domain.key
    minimumtls: tls1.3
auth:
  token:
    realm: https://auth.example.com/token
    service: registry.example.com
    issuer: auth.example.com
    rootcertbundle: /certs/token.pem
notifications:
  endpoints:
    - name: ci
      url: https://ci.example.com/hook
      headers:
        Authorization: [Bearer abc]
      timeout: 500ms
      threshold: 5
      backoff: 1s
""")
    write("import_distribution", "compose.env", """# compose environment
REGISTRY_HTTP_ADDR=:5000
export REGISTRY_STORAGE_DELETE_ENABLED=true
REGISTRY_AUTH=htpasswd
REGISTRY_AUTH_HTPASSWD_REALM="Registry Realm"
REGISTRY_AUTH_HTPASSWD_PATH=/auth/htpasswd
REGISTRY_HTTP_TLS_LETSENCRYPT_HOSTS_0=registry.example.com
""")
    write("import_distribution", "s3-refused.yml", "version: 0.1\nstorage:\n  s3:\n    bucket: b\nhttp:\n  addr: :5000\n")


def main():
    for t in ["endpoint", "reference", "range", "manifest", "proxy_header", "client_hello",
              "authorization", "jwt", "www_authenticate", "htpasswd", "config",
              "import_distribution", "oci_layout"]:
        clear(t)
    endpoint()
    reference()
    range_()
    with tempfile.TemporaryDirectory() as tmp:
        lay, sk, docker = oci_images(Path(tmp))
        manifest(lay, sk, docker)
        oci_layout(lay, sk)
    proxy_header()
    client_hello()
    token = jwt()
    authorization(token)
    www_authenticate()
    htpasswd()
    config()
    import_distribution()
    for d in sorted(CORPUS.iterdir()):
        print(f"{d.name}: {len(list(d.iterdir()))} files")


if __name__ == "__main__":
    main()
