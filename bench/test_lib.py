"""Unit tests for bench/lib.py's parsing of tool output and its table.

    /usr/bin/python3 -m unittest discover -s bench -p 'test_*.py'

The samples are real output of the Debian 12 tools the benchmark drives (trimmed).
"""

import math
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

WRK = """Running 3s test @ http://127.0.0.1:40353/v2/bench/small/manifests/sha256:8dcf
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   202.76ms  230.37ms 887.35ms   83.36%
    Req/Sec   486.62    683.40     2.27k    84.62%
  Latency Distribution
     50%  451.83us
     75%  366.64ms
     90%  545.14ms
     99%    1.62s
  1286 requests in 3.20s, 1.02MB read
  Socket errors: connect 0, read 2, write 0, timeout 12
  Non-2xx or 3xx responses: 5
Requests/sec:    401.39
Transfer/sec:    325.34KB
"""

HEY = """
Summary:
  Total:\t3.0933 secs
  Requests/sec:\t126.4039

Latency distribution:
  10% in 0.0013 secs
  50% in 0.0743 secs
  90% in 1.5055 secs
  99% in 2.6193 secs

Status code distribution:
  [200]\t391 responses
  [404]\t3 responses

Error distribution:
  [856]\tHead "https://127.0.0.1:59371/v2/x": remote error: tls: illegal parameter
  [2]\tHead "https://127.0.0.1:59371/v2/x": EOF
"""

# hey prints "0% in 0.0000 secs" where 99% belongs when it has few samples.
HEY_FEW = """
  Requests/sec:\t48.0654
Latency distribution:
  50% in 0.0087 secs
  95% in 0.4044 secs
  0% in 0.0000 secs
Status code distribution:
  [200]\t57 responses
"""

H2LOAD = """starting benchmark...
Application protocol: h2
finished in 2.13s, 379.50 req/s, 39.08KB/s
requests: 759 total, 823 started, 759 done, 757 succeeded, 2 failed, 0 errored, 0 timeout
status codes: 757 2xx, 0 3xx, 2 4xx, 0 5xx
traffic: 81.41KB (83361) total, 6.00KB (6144) headers (space savings 93.55%), 0B (0) data
"""
H2LOAD_LOG = [f"17956217593{i:05d}\t200\t{us}" for i, us in enumerate(range(1000, 101000, 1000))]

SPEED = "+H:16384\n+F:25:sha256:838412190.48\n"
SPEED_AES = "+H:16384\n+F:25:AES-128-GCM:2443783641.79\n"
DD = """16+0 records in
16+0 records out
268435456 bytes (268 MB, 256 MiB) copied, 5.74293 s, 46.7 MB/s
"""
STAT = "6626 (Timer thread) S 6619 6619 6619 0 -1 4194368 27 0 0 0 1019 36 0 0 20 0 6 0 1"


class Parsers(unittest.TestCase):
    def test_wrk(self):
        r = lib.parse_wrk(WRK)
        self.assertEqual(r["rps"], 401.39)
        self.assertAlmostEqual(r["p50"], 0.45183)
        self.assertEqual(r["p99"], 1620.0)
        self.assertEqual(r["errors"], 2 + 12 + 5)

    def test_wrk_without_errors(self):
        text = WRK.replace("  Socket errors: connect 0, read 2, write 0, timeout 12\n", "")
        text = text.replace("  Non-2xx or 3xx responses: 5\n", "")
        self.assertEqual(lib.parse_wrk(text)["errors"], 0)

    def test_wrk_no_request_completed(self):
        text = """  Latency Distribution
     50%    0.00us
     99%    0.00us
  0 requests in 2.40s, 22.44KB read
Requests/sec:      0.00
"""
        r = lib.parse_wrk(text)
        self.assertEqual(r["rps"], 0.0)
        self.assertTrue(math.isnan(r["p50"]) and math.isnan(r["p99"]))

    def test_hey(self):
        r = lib.parse_hey(HEY)
        self.assertEqual(r["rps"], 126.4039)
        self.assertAlmostEqual(r["p50"], 74.3)
        self.assertAlmostEqual(r["p99"], 2619.3)
        self.assertEqual(r["errors"], 3 + 856 + 2)

    def test_hey_few_samples(self):
        r = lib.parse_hey(HEY_FEW)
        self.assertAlmostEqual(r["p50"], 8.7)
        self.assertTrue(math.isnan(r["p99"]))
        self.assertEqual(r["errors"], 0)

    def test_h2load(self):
        r = lib.parse_h2load(H2LOAD, H2LOAD_LOG)
        self.assertEqual(r["rps"], 379.5)
        self.assertEqual(r["errors"], 2)
        self.assertEqual(r["p50"], 50.0)
        self.assertEqual(r["p99"], 99.0)

    def test_percentile(self):
        self.assertEqual(lib.percentile([5.0], 99), 5.0)
        self.assertEqual(lib.percentile([1.0, 2.0, 3.0, 4.0], 50), 2.0)
        self.assertTrue(math.isnan(lib.percentile([], 50)))

    def test_openssl_speed(self):
        self.assertEqual(lib.parse_openssl_speed(SPEED), 838412190.48)
        self.assertEqual(lib.parse_openssl_speed(SPEED_AES), 2443783641.79)

    def test_dd(self):
        self.assertAlmostEqual(lib.parse_dd(DD), 268435456 / 5.74293)

    def test_curl_pull(self):
        self.assertEqual(lib.parse_curl_pull("200 67108864 0.123456\n"), (200, 67108864, 0.123456))

    def test_proc(self):
        self.assertEqual(lib.parse_stat_cpu(STAT), 1019 + 36)
        self.assertEqual(lib.parse_vmrss("Name:\tberth\nVmHWM:\t  30000 kB\nVmRSS:\t   18040 kB\n"),
                         18040)


class Table(unittest.TestCase):
    def test_ratio_marks_the_winner(self):
        self.assertEqual(lib.ratio(300.0, 100.0, "higher"), "3.00x +")
        self.assertEqual(lib.ratio(300.0, 100.0, "lower"), "3.00x -")
        self.assertEqual(lib.ratio(0.0, 0.0, "lower"), "-")
        self.assertEqual(lib.ratio(1.0, 0.0, "lower"), "worse")
        self.assertEqual(lib.ratio(None, 1.0, "higher"), "-")
        self.assertEqual(lib.ratio(float("nan"), 1.0, "higher"), "-")

    def test_render(self):
        results = {
            ("berth", "push_mono"): 900.0, ("registry", "push_mono"): 450.0,
            ("berth", "fleet_pull.errors"): 0.0, ("registry", "fleet_pull.errors"): 3.0,
            ("machine", "sha256"): 1800.0, ("machine", "disk_fsync"): 1000.0,
        }
        text = lib.render(results, ["berth", "registry"])
        row = next(line for line in text.splitlines() if "monolithic" in line)
        self.assertIn("900", row)
        self.assertIn("2.00x +", row)
        errors = next(line for line in text.splitlines() if "errors" in line)
        self.assertIn("0.00x +", errors)
        self.assertNotIn("berth TLS", text)  # only the contenders that ran
        self.assertIn("90%", text)  # 900 MB/s of min(1800, 1000)

    def test_server_cpu_per_byte(self):
        results = {
            ("berth_tls", "pull_warm"): 800.0, ("berth_tls", "cpu.pull_warm"): 2.0,
            ("berth_tls", "pull_warm.bytes"): 3e9, ("machine", "aes128gcm"): 3000.0,
            ("nginx_registry", "pull_warm"): 300.0,
            ("nginx_registry", "cpu.pull_warm"): 6.0,
            ("nginx_registry", "pull_warm.bytes"): 3e9,
        }
        text = lib.render(results, ["berth_tls", "nginx_registry"])
        row = next(line for line in text.splitlines() if "per server CPU-second" in line)
        self.assertIn("1,500", row)  # 3 GB in 2 s of CPU
        self.assertIn("3.00x +", row)  # against 500 MB per CPU-second
        cpu = next(line for line in text.splitlines() if "server CPU: pull warm" in line)
        self.assertIn("0.33x +", cpu)
        self.assertIn("50%", text)  # 1,500 of 3,000 MB/s AES
        self.assertIn("27%", text)  # 800 of 3,000


if __name__ == "__main__":
    unittest.main()
