"""Pushes, tag moves and deletes through a registry while garbage collectors run.

    python3 gc_stress.py HOST:PORT SECONDS [CLIENTS]

Each client pushes into its own repository (stress/t<N>): two of six shared layers, one
layer of its own and a config, by monolithic POST ?digest= after a HEAD; then a manifest
under tag v<i % 3>, and every fourth push deletes another tag. Client 0 waits 2.5 s
between its blobs and its manifest, longer than the collectors' grace period. Every push
answered 201 must pull intact at once (manifest, then every blob hashing to its digest);
a refusal with MANIFEST_BLOB_UNKNOWN (a blob collected between its check and the
manifest) is allowed and counted. At the end every tag left must pull intact.

Prints `pushed=N refused=N problems=N`, then up to 20 problems.
"""

import hashlib
import json
import sys
import threading
import time
import urllib.error
import urllib.request

OCI = "application/vnd.oci.image.manifest.v1+json"


def main():
    lb, secs = sys.argv[1], float(sys.argv[2])
    clients = int(sys.argv[3]) if len(sys.argv) > 3 else 2

    def call(method, path, body=None, headers=None):
        req = urllib.request.Request(f"http://{lb}{path}", data=body, method=method,
                                     headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def sha(b):
        return "sha256:" + hashlib.sha256(b).hexdigest()

    def pull_intact(repo, ref):
        st, body = call("GET", f"/v2/{repo}/manifests/{ref}", headers={"Accept": OCI})
        if st != 200:
            return f"{repo}@{ref}: manifest {st}"
        m = json.loads(body)
        for d in [m["config"]] + m["layers"]:
            st, b = call("GET", f"/v2/{repo}/blobs/{d['digest']}")
            if st != 200 or sha(b) != d["digest"]:
                return f"{repo}@{ref}: blob {d['digest']} {st}"
        return None

    shared = [bytes(((j % 251) ^ i) for j in range(1024 << i)) for i in range(6)]
    lock = threading.Lock()
    problems, counts = [], {"pushed": 0, "refused": 0}
    deadline = time.time() + secs

    def problem(p):
        with lock:
            problems.append(p)

    def client(t):
        repo, i = f"stress/t{t}", 0
        while time.time() < deadline:
            i += 1
            unique = f"layer of client {t}, push {i}".encode()
            config = json.dumps({"client": t, "push": i}).encode()
            layers = [shared[(i + t) % 6], shared[(i * 5 + t + 1) % 6], unique]
            for b in layers + [config]:
                d = sha(b)
                if call("HEAD", f"/v2/{repo}/blobs/{d}")[0] == 200:
                    continue
                st = call("POST", f"/v2/{repo}/blobs/uploads/?digest={d}", b,
                          {"Content-Type": "application/octet-stream"})[0]
                if st != 201:
                    problem(f"{repo}: blob push {st}")
            if t == 0:
                time.sleep(2.5)
            m = json.dumps({
                "schemaVersion": 2, "mediaType": OCI,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": sha(config), "size": len(config)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                            "digest": sha(x), "size": len(x)} for x in layers],
            }).encode()
            st, body = call("PUT", f"/v2/{repo}/manifests/v{i % 3}", m, {"Content-Type": OCI})
            if st == 201:
                with lock:
                    counts["pushed"] += 1
                p = pull_intact(repo, sha(m))
                if p:
                    problem("after a 201: " + p)
            elif st == 400 and b"MANIFEST_BLOB_UNKNOWN" in body:
                with lock:
                    counts["refused"] += 1
            else:
                problem(f"{repo}: manifest push {st} {body[:200]!r}")
            if i % 4 == 0:
                st = call("DELETE", f"/v2/{repo}/manifests/v{(i + 1) % 3}")[0]
                if st not in (202, 404):
                    problem(f"{repo}: tag delete {st}")

    threads = [threading.Thread(target=client, args=(t,)) for t in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for t in range(clients):
        st, body = call("GET", f"/v2/stress/t{t}/tags/list")
        tags = (json.loads(body).get("tags") or []) if st == 200 else []
        for tag in tags:
            p = pull_intact(f"stress/t{t}", tag)
            if p:
                problem("at the end: " + p)
    print(f"pushed={counts['pushed']} refused={counts['refused']} problems={len(problems)}")
    for p in problems[:20]:
        print("problem:", p)


if __name__ == "__main__":
    main()
