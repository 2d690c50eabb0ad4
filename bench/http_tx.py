#!/usr/bin/env python3
"""HTTP transactions per second on one database, against native SQLite in the same run.

Starts the real daemon (build/litedrive) with its store on the same disk as the native baseline,
then drives POST /api/v1/sqlite/db with wrk (keep-alive, C connections) for D seconds: every
request is one transaction holding one INSERT. The baseline is a native Python sqlite3 process
doing the same autocommit INSERT on a file in the same directory. Both run with the same
journal mode and synchronous setting. Prints a table and the ratios.

usage: bench/http_tx.py [--connections 16] [--seconds 10] [--journal delete|wal] [--sync FULL]
"""
import argparse
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration"))
os.environ.setdefault("LITEDRIVE_BIN", os.path.join(os.path.dirname(__file__), "..", "build", "litedrive"))
from harness import Daemon  # noqa: E402
sys.path.insert(0, os.path.dirname(__file__))
from common import fsync_us  # noqa: E402

WRK_SCRIPT = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, nil, nil,
    '{"transaction":[{"statement":"INSERT INTO t (v) VALUES (?)","values":["v' .. counter .. '"]}]}')
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %.1f %.1f\n", summary.requests, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.duration, latency:percentile(50), latency:percentile(99)))
end
"""


def native(path, seconds, journal, sync):
    con = sqlite3.connect(path, isolation_level=None)
    con.execute(f"PRAGMA journal_mode={journal}")
    con.execute(f"PRAGMA synchronous={sync}")
    con.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)")
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        con.execute("INSERT INTO t (v) VALUES (?)", (f"v{n}",))
        n += 1
    dt = time.perf_counter() - t0
    con.close()
    return n / dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--journal", default="delete")
    ap.add_argument("--sync", default="FULL")
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="litedrive-bench-", dir=os.environ.get("BENCH_DIR", "/var/tmp"))
    native_tps = native(os.path.join(base, "native.db"), args.seconds, args.journal, args.sync)
    f_us = fsync_us(base)
    d = Daemon(f"--synchronous={args.sync}", "--log-level=warn", store=os.path.join(base, "store"))
    d.start()
    try:
        d.create("bench")
        con = sqlite3.connect(os.path.join(d.store, "bench.db"), isolation_level=None)
        con.execute(f"PRAGMA journal_mode={args.journal}")
        con.close()
        d.tx("bench", [{"statement": "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"}])
        script = os.path.join(base, "tx.lua")
        with open(script, "w") as f:
            f.write(WRK_SCRIPT)
        out = subprocess.run(["wrk", "-t2", f"-c{args.connections}", f"-d{args.seconds}s", "--latency", "-s", script,
                              f"http://127.0.0.1:{d.port}/api/v1/sqlite/db?db=bench"],
                             capture_output=True, text=True, timeout=args.seconds + 60)
        m = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) ([\d.]+) ([\d.]+)", out.stdout)
        if not m:
            print(out.stdout, out.stderr)
            sys.exit(1)
        reqs, status_errs, sock_errs, dur_us, p50, p99 = m.groups()
        http_tps = int(reqs) / (int(dur_us) / 1e6)
        _, body, _, _ = d.query("bench", "SELECT count(*) AS n FROM t")
        rows_in_db = body["results"][0]["resultSet"][0]["n"]
    finally:
        d.stop()
        d.cleanup()
        subprocess.run(["rm", "-rf", base])
    print(f"journal={args.journal} synchronous={args.sync} connections={args.connections} seconds={args.seconds}")
    print(f"4 KiB fdatasync on this disk: {f_us:.0f} us")
    print(f"| what | transactions/s | p50 ms | p99 ms | errors |")
    print(f"|---|---|---|---|---|")
    print(f"| native sqlite3, 1 process, autocommit INSERT | {native_tps:.0f} | | | 0 |")
    print(f"| HTTP POST /db, 1 INSERT per transaction, {args.connections} connections | {http_tps:.0f} | {float(p50)/1000:.2f} | {float(p99)/1000:.2f} | {int(status_errs) + int(sock_errs)} |")
    print(f"ratio HTTP/native: {http_tps / native_tps:.2f}")
    print(f"rows committed: {rows_in_db} (requests answered: {reqs})")


if __name__ == "__main__":
    main()
