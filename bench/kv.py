#!/usr/bin/env python3
"""KV throughput and p99 latency over HTTP keep-alive, against Redis measured in the same run.

Redis runs from the Debian package on a loopback port with `appendonly yes` and
`appendfsync always` (durable like litedrive), its data directory on the same disk as litedrive's
store; redis-benchmark drives it with 50 connections over 10,000 random keys. litedrive is driven
by wrk with 50 connections over the same key space: SET changes the value on every request (SQLite
skips writing an identical value), INCR, GET. Printed: a Markdown table with the ratios.

usage: bench/kv.py [--seconds 10] [--no-drive] [--daemon-arg=--http-threads=2 ...]
"""
import argparse
import csv
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration"))
os.environ.setdefault("LITEDRIVE_BIN", os.path.join(os.path.dirname(__file__), "..", "build", "litedrive"))
from harness import Daemon  # noqa: E402

KEYS = 10000
CONNECTIONS = 50
JOURNAL = "wal"  # an append-only log, like Redis's AOF; synchronous=FULL: one fsync per group commit

LUA = {
    "SET": r"""
local n = 0
request = function()
  n = n + 1
  local k = math.random(0, %(keys)d - 1)
  return wrk.format("PUT", "/api/v1/sqlite/kv/key:" .. k .. "?db=bench", nil, '{"v":' .. n .. ',"t":"' .. os.time() .. '"}')
end
""",
    "SET history=false": r"""
local n = 0
request = function()
  n = n + 1
  local k = math.random(0, %(keys)d - 1)
  return wrk.format("PUT", "/api/v1/sqlite/kv/key:" .. k .. "?db=bench&history=false", nil, '{"v":' .. n .. ',"t":"' .. os.time() .. '"}')
end
""",
    "INCR": r"""
request = function()
  local k = math.random(0, %(keys)d - 1)
  return wrk.format("POST", "/api/v1/sqlite/kv/counter:" .. k .. "/incr?db=bench")
end
""",
    "GET": r"""
request = function()
  local k = math.random(0, %(keys)d - 1)
  return wrk.format("GET", "/api/v1/sqlite/kv/key:" .. k .. "?db=bench")
end
""",
}

DONE = r"""
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %.1f %.1f\n", summary.requests, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.duration, latency:percentile(50), latency:percentile(99)))
end
"""


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def redis(base, seconds):
    port = free_port()
    rdir = os.path.join(base, "redis")
    os.makedirs(rdir)
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", rdir,
                             "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                             "--protected-mode", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True).stdout.strip() == "PONG":
                break
            time.sleep(0.05)
        results = {}
        for test in ("SET", "INCR", "GET"):
            # -n sized to last about `seconds` at the rate Redis reaches here.
            n = {"SET": 60000, "INCR": 60000, "GET": 400000}[test] * seconds // 10
            out = subprocess.run(["redis-benchmark", "-p", str(port), "-c", str(CONNECTIONS), "-n", str(n),
                                  "-r", str(KEYS), "-t", test.lower(), "--csv"],
                                 capture_output=True, text=True, timeout=600).stdout
            rows = list(csv.reader(io.StringIO(out)))
            header, data = rows[0], rows[1]
            rec = dict(zip(header, data))
            results[test] = (float(rec["rps"]), float(rec["p50_latency_ms"]), float(rec["p99_latency_ms"]))
        return results
    finally:
        proc.terminate()
        proc.wait()


def litedrive(base, seconds, drive, extra=()):
    args = ["--log-level=warn", *extra]
    d = Daemon(*args, store=os.path.join(base, "store"), mount=drive)
    d.start()
    try:
        status, body, _, _ = d.request("POST", "/api/v1/sqlite/db/create?path=bench&init_kv=true&journal_mode=" + JOURNAL)
        assert status == 200 and body["journal_mode"] == JOURNAL, body
        # Every key exists before GET is measured.
        for start in range(0, KEYS, 100):
            d.request("POST", "/api/v1/sqlite/kv/batch/set?db=bench",
                      {"batch": [{"key": f"key:{i}", "value": {"v": i}} for i in range(start, start + 100)]})
        results = {}
        for test in ("SET", "SET history=false", "INCR", "GET"):
            script = os.path.join(base, test.replace(" ", "_").replace("=", "_") + ".lua")
            with open(script, "w") as f:
                f.write(LUA[test] % {"keys": KEYS} + DONE)
            out = subprocess.run(["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-s", script,
                                  f"http://127.0.0.1:{d.port}"], capture_output=True, text=True,
                                 timeout=seconds + 120).stdout
            m = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) ([\d.]+) ([\d.]+)", out)
            reqs, status_errs, sock_errs, dur_us, p50, p99 = m.groups()
            results[test] = (int(reqs) / (int(dur_us) / 1e6), float(p50) / 1000, float(p99) / 1000,
                             int(status_errs) + int(sock_errs))
        _, body, _, _ = d.request("GET", "/api/v1/sqlite/health/cache")
        group = next((db["avg_group_size"] for db in body["databases"] if db["name"] == "bench"), 0)
        return results, group
    finally:
        d.stop()
        d.cleanup()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--no-drive", action="store_true", help="litedrive without the FUSE mount")
    ap.add_argument("--daemon-arg", action="append", default=[],
                    help="one more option for litedrive (repeatable), e.g. --daemon-arg=--http-threads=2")
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="litedrive-kvbench-", dir=os.environ.get("BENCH_DIR", "/var/tmp"))
    try:
        r = redis(base, args.seconds)
        l, group = litedrive(base, args.seconds, not args.no_drive, args.daemon_arg)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    mode = "without the drive" if args.no_drive else "through the drive (default)"
    if args.daemon_arg:
        mode += " with " + " ".join(args.daemon_arg)
    print(f"50 connections, {KEYS} random keys, {args.seconds} s per test; litedrive {mode}; "
          f"average group commit: {group:.1f} requests")
    print("| operation | Redis ops/s (p50 / p99 ms) | litedrive ops/s (p50 / p99 ms) | litedrive / Redis | errors | target |")
    print("|---|---|---|---|---|---|")
    for test in ("SET", "INCR", "GET"):
        rr, lr = r[test], l[test]
        print(f"| {test} | {rr[0]:,.0f} ({rr[1]:.2f} / {rr[2]:.2f}) | {lr[0]:,.0f} ({lr[1]:.2f} / {lr[2]:.2f}) | "
              f"**{lr[0] / rr[0]:.0%}** | {lr[3]} | ≥ 40% |")
    with_h, without_h = l["SET"][0], l["SET history=false"][0]
    print(f"\nCost of the key history on SET: {with_h:,.0f}/s with, {without_h:,.0f}/s with history=false "
          f"({(without_h - with_h) / without_h:.0%} fewer SETs per second with history)")


if __name__ == "__main__":
    main()
