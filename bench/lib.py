"""Measurement helpers for bench/run.sh: registry clients, load tools' output parsers, the
RSS sampler and the results table.

run.sh starts and stops the servers; everything that measures or parses lives here, so the
parsers can be unit-tested (bench/test_lib.py). Results are appended to a TSV file, one
`contender<TAB>metric<TAB>value` line per figure, and `table` renders them at the end.

Only the standard library: the benchmark must run on a bare Debian 12 with /usr/bin/python3.
"""

import argparse
import concurrent.futures
import hashlib
import http.client
import json
import math
import os
import re
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

MiB = 1 << 20
BLOCK = 1 * MiB  # large socket writes: 8 KiB (http.client's default) costs Python CPU per byte
TIMEOUT = 300  # seconds without progress on one socket before a client gives up

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"

# The contenders, in column order, and the ratio columns: (numerator, denominator).
CONTENDERS = [
    ("berth", "berth"),
    ("berth_base", "berth baseline"),
    ("registry", "registry"),
    ("berth_tls", "berth TLS"),
    ("nginx_registry", "nginx+registry TLS"),
    ("berth_s3", "berth on Garage"),
    ("registry_s3", "registry s3 on Garage"),
]
RATIOS = [("berth", "berth_base"), ("berth", "registry"), ("berth_tls", "nginx_registry"), ("berth_s3", "registry_s3")]

# Every row of the table, in order: (metric key, label, unit, better). better is "higher",
# "lower", or "" for figures that are information only (no ratio is meaningful).
ROWS = [
    ("push_mono", "1. push blob, monolithic", "MB/s", "higher"),
    ("push_chunked", "1. push blob, 16 MiB chunks", "MB/s", "higher"),
    ("pull_cold", "2. pull blob, cold page cache", "MB/s", "higher"),
    ("pull_warm", "2. pull blob, warm page cache", "MB/s", "higher"),
]
for key, label in [
    ("head_tag", "3. manifest HEAD by tag (hey, HTTP/1.1)"),
    ("get_digest", "3. manifest GET by digest (wrk, HTTP/1.1)"),
    ("head_tag_h2", "3. manifest HEAD by tag (h2load, HTTP/2)"),
    ("get_digest_h2", "3. manifest GET by digest (h2load, HTTP/2)"),
]:
    ROWS += [
        (f"{key}.rps", label, "req/s", "higher"),
        (f"{key}.p50", "   p50 latency", "ms", "lower"),
        (f"{key}.p99", "   p99 latency", "ms", "lower"),
        (f"{key}.errors", "   errors", "count", "lower"),
    ]
ROWS += [
    ("fleet_pull.seconds", "4. concurrent pulls of one image: total time", "s", "lower"),
    ("fleet_pull.errors", "   errors", "count", "lower"),
    ("fleet_push.seconds", "5. concurrent pushes of distinct images: total time", "s", "lower"),
    ("fleet_push.errors", "   errors", "count", "lower"),
    ("cpu.idle", "CPU idle, after start", "% core", "lower"),
    ("cpu.idle_after", "CPU idle, after the workloads", "% core", "lower"),
    ("rss.idle", "6. RSS idle, after start", "MiB", "lower"),
]
ROWS += [
    (f"rss.{key}", f"6. peak RSS: {label}", "MiB", "lower")
    for key, label in [
        ("push_mono", "push monolithic"), ("push_chunked", "push chunked"),
        ("pull_cold", "pull cold"), ("pull_warm", "pull warm"),
        ("head_tag", "manifest HEAD"), ("get_digest", "manifest GET"),
        ("head_tag_h2", "manifest HEAD, HTTP/2"), ("get_digest_h2", "manifest GET, HTTP/2"),
        ("fleet_pull", "concurrent pulls"), ("fleet_push", "concurrent pushes"),
    ]
]
ROWS.append(("rss.idle_after", "6. RSS idle, after the workloads", "MiB", "lower"))
# Server CPU time: on two shared cores the client is often the bottleneck (curl decrypting
# TLS takes more CPU than berth encrypting), so elapsed time understates how little a server
# spends; its own CPU seconds show it.
ROWS += [
    (f"cpu.{key}", f"7. server CPU: {label}", "s", "lower")
    for key, label in [
        ("push_mono", "push monolithic"), ("pull_warm", "pull warm"),
        ("get_digest", "manifest GET"), ("fleet_pull", "concurrent pulls"),
        ("fleet_push", "concurrent pushes"),
    ]
]
ROWS.append(("pull_warm.per_cpu", "7. pull warm: MB sent per server CPU-second", "MB/s",
             "higher"))

MACHINE_ROWS = [
    ("sha256", "SHA-256, one core (openssl speed, 16 KiB blocks)", "MB/s"),
    ("aes128gcm", "AES-128-GCM, one core (openssl speed, 16 KiB blocks)", "MB/s"),
    ("disk_fsync", "sequential disk write + fsync (dd conv=fsync)", "MB/s"),
    ("s3_put", "Garage (3 nodes): one PUT of the big blob (curl --aws-sigv4)", "MB/s"),
    ("s3_get", "Garage (3 nodes): one GET of the big blob (curl --aws-sigv4)", "MB/s"),
]


# ------------------------------------------------------------------ registry client


class Registry:
    """A minimal OCI Distribution client over one keep-alive HTTP/1.1 connection."""

    def __init__(self, base, ca=None):
        url = urllib.parse.urlsplit(base)
        self.host, self.port = url.hostname, url.port
        if url.scheme == "https":
            ctx = ssl.create_default_context(cafile=ca)
            self.conn = http.client.HTTPSConnection(
                self.host, self.port, context=ctx, timeout=TIMEOUT, blocksize=BLOCK
            )
        else:
            self.conn = http.client.HTTPConnection(
                self.host, self.port, timeout=TIMEOUT, blocksize=BLOCK
            )

    def close(self):
        self.conn.close()

    def request(self, method, path, body=None, headers=None, expect=(200,)):
        """Sends one request, reads the whole response, returns (response, body bytes)."""
        self.conn.request(method, path, body=body, headers=headers or {})
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.status not in expect:
            raise RuntimeError(f"{method} {path}: {resp.status} {data[:300]!r}")
        return resp, data

    def start_upload(self, repo):
        resp, _ = self.request("POST", f"/v2/{repo}/blobs/uploads/", body=b"", expect=(202,))
        return location(resp)

    def push_blob(self, repo, path, digest, chunk=0):
        """Pushes the file at `path`: one PUT with the body, or PATCHes of `chunk` bytes
        (each following the previous Location) and an empty closing PUT."""
        size = os.path.getsize(path)
        loc = self.start_upload(repo)
        with open(path, "rb") as f:
            if chunk:
                offset = 0
                while offset < size:
                    n = min(chunk, size - offset)
                    headers = {
                        "Content-Type": "application/octet-stream",
                        "Content-Length": str(n),
                        "Content-Range": f"{offset}-{offset + n - 1}",
                    }
                    resp, _ = self.request(
                        "PATCH", loc, body=FileSlice(f, n), headers=headers, expect=(202,)
                    )
                    loc = location(resp)
                    offset += n
                body, length = b"", 0
            else:
                body, length = f, size
            headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length)}
            self.request("PUT", with_query(loc, "digest", digest), body=body, headers=headers,
                         expect=(201,))

    def push_bytes(self, repo, data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        loc = self.start_upload(repo)
        headers = {"Content-Type": "application/octet-stream"}
        self.request("PUT", with_query(loc, "digest", digest), body=data, headers=headers,
                     expect=(201,))
        return digest

    def push_image(self, repo, tag, layers):
        """Pushes an OCI image made of the given layer files (with their digests) and a
        config naming them; returns the image description pull-fleet and wrk use."""
        blobs = []
        for path, digest in layers:
            self.push_blob(repo, path, digest)
            blobs.append({"mediaType": OCI_LAYER, "digest": digest,
                          "size": os.path.getsize(path)})
        config = json.dumps({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [b["digest"] for b in blobs]},
        }).encode()
        config_digest = self.push_bytes(repo, config)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": blobs,
        }).encode()
        self.request("PUT", f"/v2/{repo}/manifests/{tag}", body=manifest,
                     headers={"Content-Type": OCI_MANIFEST}, expect=(201,))
        return {
            "repo": repo, "tag": tag,
            "manifest": "sha256:" + hashlib.sha256(manifest).hexdigest(),
            "blobs": [{"digest": config_digest, "size": len(config)}]
                     + [{"digest": b["digest"], "size": b["size"]} for b in blobs],
        }


class FileSlice:
    """The next `n` bytes of an open file, read in BLOCK pieces (a PATCH body)."""

    def __init__(self, f, n):
        self.f, self.left = f, n

    def read(self, size=-1):
        if self.left <= 0:
            return b""
        want = self.left if size < 0 else min(size, self.left)
        data = self.f.read(want)
        self.left -= len(data)
        return data


def location(resp):
    """The path and query of a Location header. docker-registry answers absolute URLs,
    berth relative ones: both mean the same server, and the connection stays open."""
    loc = resp.getheader("Location")
    if not loc:
        raise RuntimeError(f"{resp.status} without Location")
    url = urllib.parse.urlsplit(loc)
    return url.path + ("?" + url.query if url.query else "")


def with_query(path, key, value):
    sep = "&" if "?" in path else "?"
    return f"{path}{sep}{key}={urllib.parse.quote(value, safe=':')}"


def file_digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MiB):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


# ------------------------------------------------------------------ workloads


def cmd_gen(args):
    """Random files (incompressible, so no layer can be cheaper than its size)."""
    for path in args.paths:
        with open(path, "wb") as f:
            left = args.size
            while left > 0:
                n = min(left, 4 * MiB)
                f.write(os.urandom(n))
                left -= n


def cmd_push_blob(args):
    digest = args.digest or file_digest(args.file)
    size = os.path.getsize(args.file)
    reg = Registry(args.base, args.ca)
    start = time.monotonic()
    reg.push_blob(args.repo, args.file, digest, chunk=args.chunk)
    seconds = time.monotonic() - start
    reg.close()
    record(args, args.metric, size / seconds / 1e6)


def cmd_push_image(args):
    layers = [(p, file_digest(p)) for p in args.layers]
    reg = Registry(args.base, args.ca)
    image = reg.push_image(args.repo, args.tag, layers)
    reg.close()
    json.dump(image, sys.stdout)


def cmd_push_fleet(args):
    """One thread per client, each pushing its own image (one layer file + config +
    manifest) over its own connection; all start together."""
    layers = [(p, file_digest(p)) for p in args.layers]
    errors = []
    barrier = threading.Barrier(len(layers))

    def push(i):
        reg = Registry(args.base, args.ca)
        barrier.wait(timeout=60)
        try:
            reg.push_image(f"{args.repo}{i}", "latest", [layers[i]])
        except Exception as e:  # an error is a result here, counted and shown
            errors.append(f"client {i}: {e}")
        finally:
            reg.close()

    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(len(layers)) as pool:
        list(pool.map(push, range(len(layers))))
    seconds = time.monotonic() - start
    report_errors(args, "fleet_push", errors)
    record(args, "fleet_push.seconds", seconds)
    record(args, "fleet_push.errors", len(errors))


def cmd_pull_fleet(args):
    """N curl processes started at once, each fetching the manifest and then every blob in
    turn on one keep-alive connection, as a CI runner pulling an image would."""
    image = json.load(open(args.image))
    repo = image["repo"]
    urls = [f"{args.base}/v2/{repo}/manifests/{image['tag']}"]
    urls += [f"{args.base}/v2/{repo}/blobs/{b['digest']}" for b in image["blobs"]]
    sizes = [None] + [b["size"] for b in image["blobs"]]
    cmd = ["curl", "-sS", "-L", "--max-time", str(args.max_time), "-H", f"Accept: {OCI_MANIFEST}",
           "-w", "%{http_code} %{size_download}\\n"]
    if args.ca:
        cmd += ["--cacert", args.ca]
    for url in urls:
        cmd += ["-o", "/dev/null", url]

    start = time.monotonic()
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(args.clients)]
    errors = []
    for i, p in enumerate(procs):
        out, err = p.communicate(timeout=args.max_time + 30)
        lines = out.split()
        got = [(lines[j], lines[j + 1]) for j in range(0, len(lines) - 1, 2)]
        if p.returncode != 0:
            errors.append(f"client {i}: curl exit {p.returncode}: {err.strip()[:200]}")
        for (status, size), want in zip(got, sizes):
            if status != "200" or (want is not None and int(size) != want):
                errors.append(f"client {i}: status {status}, {size} bytes (want {want})")
        if p.returncode == 0 and len(got) != len(urls):
            errors.append(f"client {i}: {len(got)} of {len(urls)} transfers")
    seconds = time.monotonic() - start
    report_errors(args, "fleet_pull", errors)
    record(args, "fleet_pull.seconds", seconds)
    record(args, "fleet_pull.errors", len(errors))


def report_errors(args, workload, errors):
    if errors:
        print(f"bench: {args.who} {workload}: {len(errors)} errors, first ones:", file=sys.stderr)
        for e in errors[:5]:
            print(f"  {e}", file=sys.stderr)


def cmd_evict(args):
    """Drops one file's pages from the page cache (written back first), so the next read
    comes from the disk. Unlike drop_caches this leaves every other file cached: the tools
    the benchmark runs, and whatever else the machine is doing, are not slowed down."""
    fd = os.open(args.path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


# ------------------------------------------------------------------ RSS


def tree_pids(roots):
    """The roots and all their descendants (nginx master -> workers)."""
    seen, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.append(pid)
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass  # exited between listing and reading
    return seen


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                total += parse_vmrss(f.read())
        except OSError:
            pass
    return total


def parse_vmrss(status):
    m = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    return int(m.group(1)) if m else 0


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                total += parse_stat_cpu(f.read())
        except OSError:
            pass
    return total


def parse_stat_cpu(stat):
    """utime + stime (clock ticks) from /proc/PID/stat; comm may hold spaces and ')'."""
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def cmd_cpu(args):
    """CPU the process trees use over --seconds while nothing is asked of them: a server
    that polls or spins shows here (percent of one core)."""
    pids = tree_pids(args.pids)
    before, start = cpu_ticks(pids), time.monotonic()
    time.sleep(args.seconds)
    used = (cpu_ticks(pids) - before) / os.sysconf("SC_CLK_TCK")
    record(args, args.metric, 100 * used / (time.monotonic() - start))


def cmd_rss(args):
    """Samples the summed RSS of the process trees every 100 ms until SIGTERM (or
    --max-seconds, so a forgotten sampler ends), then records the peak, and the CPU seconds
    the trees used meanwhile as cpu.<name> (for metric rss.<name>). --ready is created
    once the first sample is taken, so the caller knows the workload will be covered.
    --once records one sample (idle RSS)."""
    if args.once:
        record(args, args.metric, rss_kib(tree_pids(args.pids)) / 1024)
        return
    stopped = []
    # Only a flag: a threading primitive touched from a signal handler can deadlock.
    signal.signal(signal.SIGTERM, lambda *_: stopped.append(True))
    peak, deadline = 0, time.monotonic() + args.max_seconds
    pids = tree_pids(args.pids)
    ticks = cpu_ticks(pids)
    while not stopped and time.monotonic() < deadline:
        pids = tree_pids(args.pids)
        peak = max(peak, rss_kib(pids))
        if args.ready and not os.path.exists(args.ready):
            open(args.ready, "w").close()
        time.sleep(0.1)
    record(args, args.metric, peak / 1024)
    if args.metric.startswith("rss."):
        # Children that exited meanwhile are not counted (berth and nginx keep theirs).
        used = (cpu_ticks(pids) - ticks) / os.sysconf("SC_CLK_TCK")
        record(args, "cpu." + args.metric[4:], used)


# ------------------------------------------------------------------ tool output parsers


UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def parse_wrk(text):
    """wrk --latency output -> rps, p50/p99 in ms, errors (socket errors + non-2xx/3xx)."""
    rps = float(re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M).group(1))
    lat = {}
    for pct, value, unit in re.findall(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M):
        lat[pct] = float(value) * UNITS_MS[unit]
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errors += sum(int(g) for g in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        errors += int(m.group(1))
    if int(re.search(r"^\s+(\d+) requests in", text, re.M).group(1)) == 0:
        lat = {"50": float("nan"), "99": float("nan")}  # wrk prints 0us: no request, no latency
    return {"rps": rps, "p50": lat["50"], "p99": lat["99"], "errors": errors}


def parse_hey(text):
    """hey's summary -> rps, p50/p99 in ms, errors (non-2xx statuses + transport errors)."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    lat = {pct: float(v) * 1000 for pct, v in re.findall(r"^\s+(50|99)% in ([\d.]+) secs", text, re.M)}
    errors = sum(int(n) for code, n in re.findall(r"^\s+\[(\d+)\]\s+(\d+) responses", text, re.M)
                 if not code.startswith("2"))
    if "Error distribution:" in text:
        tail = text.split("Error distribution:", 1)[1]
        errors += sum(int(n) for n in re.findall(r"^\s+\[(\d+)\]\s", tail, re.M))
    return {"rps": rps, "p50": lat.get("50", float("nan")), "p99": lat.get("99", float("nan")),
            "errors": errors}


def parse_h2load(text, log_lines):
    """h2load's summary -> rps and errors; its --log-file (start, status, elapsed µs per
    request) -> p50/p99, which the summary does not give."""
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", text).group(1))
    # "failed" already counts the 4xx and 5xx answers.
    m = re.search(r"requests: .* (\d+) failed, (\d+) errored, (\d+) timeout", text)
    errors = sum(int(g) for g in m.groups())
    times = sorted(int(line.split()[2]) / 1000 for line in log_lines if line.strip())
    return {"rps": rps, "p50": percentile(times, 50), "p99": percentile(times, 99),
            "errors": errors}


def percentile(sorted_values, pct):
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(pct / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def parse_openssl_speed(text):
    """`openssl speed -mr -bytes 16384` -> bytes/s of the one measured size (`+F:` line)."""
    m = re.search(r"^\+F:\d+:[^:]+:([\d.]+)\s*$", text, re.M)
    return float(m.group(1))


def parse_dd(text):
    """dd's summary line -> bytes/s (from bytes and seconds, not its rounded rate)."""
    m = re.search(r"^(\d+) bytes .* copied, ([\d.]+) s", text, re.M)
    return int(m.group(1)) / float(m.group(2))


def parse_curl_pull(text):
    """`-w '%{http_code} %{size_download} %{time_total}'` -> (status, bytes, seconds)."""
    status, size, seconds = text.split()
    return int(status), int(size), float(seconds)


def cmd_parse(args):
    text = open(args.file).read()
    if args.kind == "wrk":
        r = parse_wrk(text)
    elif args.kind == "hey":
        r = parse_hey(text)
    elif args.kind == "h2load":
        r = parse_h2load(text, open(args.log).read().splitlines())
    elif args.kind == "speed":
        record(args, args.metric, parse_openssl_speed(text) / 1e6)
        return
    elif args.kind == "dd":
        record(args, args.metric, parse_dd(text) / 1e6)
        return
    elif args.kind == "pull":
        results = [parse_curl_pull(line) for line in text.splitlines() if line.strip()]
        bad = [r for r in results if r[0] != 200 or r[1] != args.size]
        if bad:
            sys.exit(f"bench: {args.who} {args.metric}: bad pulls {bad}")
        record(args, args.metric, statistics.median(r[1] / r[2] for r in results) / 1e6)
        record(args, args.metric + ".bytes", sum(r[1] for r in results))
        return
    if r["errors"]:
        print(f"bench: {args.who} {args.metric}: {r['errors']} errors", file=sys.stderr)
    for key in ("rps", "p50", "p99", "errors"):
        record(args, f"{args.metric}.{key}", r[key])


# ------------------------------------------------------------------ results table


def record(args, metric, value):
    with open(args.results, "a") as f:
        f.write(f"{args.who}\t{metric}\t{value}\n")


def load_results(path):
    results = {}
    with open(path) as f:
        for line in f:
            who, metric, value = line.rstrip("\n").split("\t")
            results[(who, metric)] = float(value)
    return results


def fmt(value, unit):
    if value is None or math.isnan(value):
        return "-"
    if unit == "count":
        return str(int(value))
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def ratio(a, b, better):
    """berth / contender, with a mark saying whether berth wins that row."""
    if a is None or b is None or math.isnan(a) or math.isnan(b) or not better:
        return "-"
    if b == 0:
        return "-" if a == 0 else "worse"
    r = a / b
    wins = r > 1 if better == "higher" else r < 1
    return f"{r:.2f}x {'+' if wins else '-'}"


def derive(results):
    """Figures computed from recorded ones: bytes pulled per server CPU-second."""
    out = dict(results)
    for (who, metric), cpu in results.items():
        if metric == "cpu.pull_warm" and cpu > 0 and (who, "pull_warm.bytes") in results:
            out[(who, "pull_warm.per_cpu")] = results[(who, "pull_warm.bytes")] / cpu / 1e6
    return out


def render(results, contenders):
    results = derive(results)
    shown = [(k, name) for k, name in CONTENDERS if k in contenders]
    ratios = [(a, b) for a, b in RATIOS if a in contenders and b in contenders]
    names = dict(CONTENDERS)
    head = ["metric", "unit", "better"] + [n for _, n in shown] \
        + [f"{names[a]} / {names[b]}" for a, b in ratios]
    rows = []
    for key, label, unit, better in ROWS:
        values = {k: results.get((k, key)) for k, _ in shown}
        if all(v is None for v in values.values()):
            continue
        rows.append([label, unit, better] + [fmt(values[k], unit) for k, _ in shown]
                    + [ratio(values.get(a), values.get(b), better) for a, b in ratios])
    out = [markdown(head, rows)]

    machine = [[label, unit, fmt(results.get(("machine", key)), unit)]
               for key, label, unit in MACHINE_ROWS if ("machine", key) in results]
    if machine:
        out.append(markdown(["machine limit", "unit", "value"], machine))

    # The targets read berth against the machine: push against min(hash, disk),
    # TLS pull against one core's AES-GCM.
    sha, aes, disk = (results.get(("machine", k)) for k in ("sha256", "aes128gcm", "disk_fsync"))
    frac = []
    for who, key, limit, what in [
        ("berth", "push_mono", min(sha or 0, disk or 0), "min(SHA-256, disk)"),
        ("berth", "push_chunked", min(sha or 0, disk or 0), "min(SHA-256, disk)"),
        ("berth_tls", "pull_warm", aes, "AES-128-GCM"),
        ("berth_tls", "pull_warm.per_cpu", aes, "AES-128-GCM"),
    ]:
        v = results.get((who, key))
        if v is not None and limit:
            frac.append([f"{names[who]}: {dict((r[0], r[1]) for r in ROWS)[key]}", what,
                         f"{100 * v / limit:.0f}%"])
    if frac:
        out.append(markdown(["berth figure", "as a fraction of", "%"], frac))
    return "\n".join(out)


def markdown(head, rows):
    widths = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                     + [line(r) for r in rows]) + "\n"


def cmd_table(args):
    results = load_results(args.results)
    text = render(results, args.contenders.split(","))
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(args.header + "\n\n" + text if args.header else text)
    # The CI smoke test's condition: berth answered every request of every workload.
    bad = [f"{who} {metric}: {value:g}" for (who, metric), value in sorted(results.items())
           if who.startswith("berth") and metric.endswith(".errors") and value]
    for b in bad:
        print(f"bench: berth had errors: {b}", file=sys.stderr)
    sys.exit(1 if bad else 0)


def cmd_free_port(_args):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
    s.close()


# ------------------------------------------------------------------ CLI


def main(argv):
    p = argparse.ArgumentParser(prog="bench/lib.py")
    sub = p.add_subparsers(dest="cmd", required=True)

    def command(name, fn, measuring=True):
        c = sub.add_parser(name)
        c.set_defaults(fn=fn)
        if measuring:
            c.add_argument("--results", required=True)
            c.add_argument("--who", required=True)
            c.add_argument("--metric", default="")
        return c

    command("free-port", cmd_free_port, measuring=False)
    c = command("gen", cmd_gen, measuring=False)
    c.add_argument("--size", type=int, required=True)
    c.add_argument("paths", nargs="+")
    for name, fn in [("push-blob", cmd_push_blob), ("push-image", cmd_push_image),
                     ("push-fleet", cmd_push_fleet), ("pull-fleet", cmd_pull_fleet)]:
        c = command(name, fn, measuring=name != "push-image")
        c.add_argument("--base", required=True)
        c.add_argument("--ca")
    c = sub.choices["push-blob"]
    c.add_argument("--repo", required=True)
    c.add_argument("--file", required=True)
    c.add_argument("--chunk", type=int, default=0)
    c.add_argument("--digest", help="the file's, when already known")
    c = sub.choices["push-image"]
    c.add_argument("--repo", required=True)
    c.add_argument("--tag", required=True)
    c.add_argument("layers", nargs="+")
    c = sub.choices["push-fleet"]
    c.add_argument("--repo", required=True, help="prefix; client i pushes <prefix><i>")
    c.add_argument("layers", nargs="+", help="one layer file per client")
    c = sub.choices["pull-fleet"]
    c.add_argument("--image", required=True, help="JSON written by push-image")
    c.add_argument("--clients", type=int, required=True)
    c.add_argument("--max-time", type=int, default=600)
    c = command("rss", cmd_rss)
    c.add_argument("--once", action="store_true")
    c.add_argument("--max-seconds", type=float, default=3600)
    c.add_argument("--ready")
    c.add_argument("pids", nargs="+", type=int)
    c = command("evict", cmd_evict, measuring=False)
    c.add_argument("path")
    c = command("cpu", cmd_cpu)
    c.add_argument("--seconds", type=float, default=2)
    c.add_argument("pids", nargs="+", type=int)
    c = command("parse", cmd_parse)
    c.add_argument("kind", choices=["wrk", "hey", "h2load", "speed", "dd", "pull"])
    c.add_argument("file")
    c.add_argument("--log", help="h2load --log-file")
    c.add_argument("--size", type=int, help="pull: expected bytes")
    c = sub.add_parser("table")
    c.set_defaults(fn=cmd_table)
    c.add_argument("--results", required=True)
    c.add_argument("--contenders", required=True)
    c.add_argument("--out")
    c.add_argument("--header", default="")

    args = p.parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    main(sys.argv[1:])
