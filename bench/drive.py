#!/usr/bin/env python3
"""The drive against native SQLite on the same backing disk, measured in the same run.

Every workload runs natively (a directory on the backing disk) and through the mount, interleaved
(native, mount, native, mount, ...), and the best of the rounds is kept on each side, so a slow
disk phase hits both. A 4 KiB fdatasync is measured before each durable workload. Printed: a
Markdown table with the ratio mount/native (time ratio: lower is better, 1.00 = as fast as
native), the FUSE requests per transaction, and the round trip of a lock request next to a
plain FUSE request (the actor hand-off's cost).

usage: bench/drive.py [--rounds 2] [--quick]
"""
import argparse
import fcntl
import json
import multiprocessing as mp
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration"))
os.environ.setdefault("LITEDRIVE_BIN", os.path.join(os.path.dirname(__file__), "..", "build", "litedrive"))
from harness import Daemon  # noqa: E402
sys.path.insert(0, os.path.dirname(__file__))
from common import fsync_us  # noqa: E402

SCALE = {"full": 1.0, "quick": 0.25}


def fresh(path, journal, sync, rows=0):
    for suffix in ("", "-journal", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)
    con = sqlite3.connect(path, isolation_level=None)
    con.execute(f"PRAGMA journal_mode={journal}")
    con.execute(f"PRAGMA synchronous={sync}")
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    if rows:
        con.execute("BEGIN")
        con.executemany("INSERT INTO t (v) VALUES (?)", ((f"value-{i:08d}",) for i in range(rows)))
        con.execute("COMMIT")
    con.close()


# -- workloads: each returns (operations, seconds) ------------------------------------------------

def w_autocommit(path, journal, sync, n):
    fresh(path, journal, sync)
    con = sqlite3.connect(path, isolation_level=None)
    con.execute(f"PRAGMA synchronous={sync}")
    t0 = time.perf_counter()
    for i in range(n):
        con.execute("INSERT INTO t (v) VALUES (?)", (f"v{i}",))
    dt = time.perf_counter() - t0
    con.close()
    return n, dt


def w_bulk(path, n):
    fresh(path, "delete", "FULL")
    con = sqlite3.connect(path, isolation_level=None)
    t0 = time.perf_counter()
    con.execute("BEGIN")
    con.executemany("INSERT INTO t (v) VALUES (?)", ((f"value-{i:08d}",) for i in range(n)))
    con.execute("COMMIT")
    dt = time.perf_counter() - t0
    con.close()
    return n, dt


def w_lookups(path, n, rows, one_per_txn, journal):
    if not os.path.exists(path + ".ready"):
        fresh(path, journal, "NORMAL", rows)
        open(path + ".ready", "w").close()
    con = sqlite3.connect(path, isolation_level=None)
    ids = [(i * 7919) % rows + 1 for i in range(n)]
    t0 = time.perf_counter()
    if not one_per_txn:
        con.execute("BEGIN")
    for i in ids:
        con.execute("SELECT v FROM t WHERE id = ?", (i,)).fetchone()
    if not one_per_txn:
        con.execute("COMMIT")
    dt = time.perf_counter() - t0
    con.close()
    return n, dt


def w_scan(path, rows, repeat, journal):
    if not os.path.exists(path + ".ready"):
        fresh(path, journal, "NORMAL", rows)
        open(path + ".ready", "w").close()
    con = sqlite3.connect(path, isolation_level=None)
    t0 = time.perf_counter()
    for _ in range(repeat):
        con.execute("SELECT count(*), sum(length(v)) FROM t").fetchone()
    dt = time.perf_counter() - t0
    con.close()
    return repeat * rows, dt


def contender(args):
    path, timeout, n, sync = args
    con = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    ok = err = 0
    try:
        con.execute(f"PRAGMA synchronous={sync}")
    except sqlite3.OperationalError:
        err += 1  # opening a WAL database can already be refused natively with timeout=0
    max_wait = 0.0
    for i in range(n):
        t = time.perf_counter()
        try:
            con.execute("INSERT INTO t (v) VALUES (?)", (f"c{os.getpid()}-{i}",))
            ok += 1
        except sqlite3.OperationalError:
            err += 1
        max_wait = max(max_wait, time.perf_counter() - t)
    con.close()
    return ok, err, max_wait


def w_contend(path, journal, sync, timeout, writers, n):
    fresh(path, journal, sync)
    ctx = mp.get_context("fork")
    with ctx.Pool(writers) as pool:
        t0 = time.perf_counter()
        res = pool.map(contender, [(path, timeout, n, sync)] * writers)
        dt = time.perf_counter() - t0
    ok = sum(r[0] for r in res)
    err = sum(r[1] for r in res)
    return ok, dt, err, max(r[2] for r in res)


# -- harness --------------------------------------------------------------------------------------

def drive_requests(d):
    with urllib.request.urlopen(f"http://127.0.0.1:{d.port}/api/v1/sqlite/health") as r:
        return json.loads(r.read())["drive_requests"]["total"]


def round_trips(mnt, n=3000):
    """Client-side round trip of a plain FUSE request (statfs, never cached) and of an
    uncontended lock + unlock pair (two lock requests through the database actor)."""
    path = os.path.join(mnt, "rtt.db")
    open(path, "w").close()
    fd = os.open(path, os.O_RDWR)
    t0 = time.perf_counter()
    for _ in range(n):
        os.statvfs(mnt)
    plain = (time.perf_counter() - t0) / n * 1e6
    t0 = time.perf_counter()
    for _ in range(n):
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0x40000001)
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, 0x40000001)
    lock = (time.perf_counter() - t0) / n / 2 * 1e6
    os.close(fd)
    return plain, lock


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--daemon-arg", action="append", default=[],
                    help="extra litedrive option, e.g. --daemon-arg=--drive-io-uring=false")
    args = ap.parse_args()
    k = SCALE["quick" if args.quick else "full"]
    base = tempfile.mkdtemp(prefix="litedrive-bench-", dir=os.environ.get("BENCH_DIR", "/var/tmp"))
    native_dir = os.path.join(base, "native")
    os.makedirs(native_dir)
    d = Daemon("--log-level=warn", *args.daemon_arg, store=os.path.join(base, "store"), mount=True)
    d.start()
    mnt = d.mount
    N = lambda x: max(1, int(x * k))
    workloads = [
        ("autocommit INSERT, rollback journal, synchronous=FULL", "tx", True,
         lambda p: w_autocommit(p, "delete", "FULL", N(1000)), "1.3"),
        ("autocommit INSERT, WAL, synchronous=FULL", "tx", True,
         lambda p: w_autocommit(p, "wal", "FULL", N(2000)), "1.3"),
        ("autocommit INSERT, WAL, synchronous=NORMAL", "tx", False,
         lambda p: w_autocommit(p, "wal", "NORMAL", N(10000)), "6"),
        ("one bulk transaction of 200k INSERTs", "rows", True, lambda p: w_bulk(p, N(200000)), "1.5"),
        ("point lookups, one per transaction (WAL)", "lookups", False,
         lambda p: w_lookups(p + "-lk", N(20000), 100000, True, "wal"), "8"),
        ("point lookups, one per transaction (rollback)", "lookups", False,
         lambda p: w_lookups(p + "-lkr", N(20000), 100000, True, "delete"), "8"),
        ("point lookups, 100k in one transaction", "lookups", False,
         lambda p: w_lookups(p + "-lk", N(100000), 100000, False, "wal"), "1.3"),
        ("full scan of 100k rows x 20", "rows", False, lambda p: w_scan(p + "-lk", 100000, 20, "wal"), "1.3"),
    ]
    results = []
    try:
        plain_us, lock_us = round_trips(mnt)
        for name, unit, durable, fn, target in workloads:
            best = {"native": None, "mount": None}
            reqs = None
            fs = []
            for r in range(args.rounds):
                for side in ("native", "mount"):
                    if durable:
                        fs.append(fsync_us(native_dir if side == "native" else d.store))
                    path = os.path.join(native_dir if side == "native" else mnt, "w.db")
                    before = drive_requests(d) if side == "mount" else 0
                    ops, dt = fn(path)
                    if side == "mount":
                        reqs = (drive_requests(d) - before) / ops
                    rate = ops / dt
                    if best[side] is None or rate > best[side]:
                        best[side] = rate
            ratio = best["native"] / best["mount"]
            results.append((name, unit, best["native"], best["mount"], ratio, reqs,
                            statistics.median(fs) if fs else None, target))
        # Contention: 8 writer processes, Python's default busy timeout (5 s) and timeout=0.
        contention = []
        for journal, sync, timeout, target in (("delete", "FULL", 5.0, "1"), ("wal", "NORMAL", 5.0, "3"),
                                               ("delete", "FULL", 0.0, "-"), ("wal", "NORMAL", 0.0, "-")):
            row = {}
            for side in ("native", "mount"):
                path = os.path.join(native_dir if side == "native" else mnt, "c.db")
                ok, dt, err, max_wait = w_contend(path, journal, sync, timeout, 8, N(200))
                row[side] = (ok / dt, err, max_wait, ok)
            contention.append((journal, sync, timeout, row, target))
    finally:
        d.stop()
        d.cleanup()
        shutil.rmtree(base, ignore_errors=True)

    print(f"| single process | native /s | mount /s | mount time / native time | target | FUSE requests per op | 4 KiB fdatasync |")
    print("|---|---|---|---|---|---|---|")
    for name, unit, nat, mnt_rate, ratio, reqs, f, target in results:
        fs = f"{f:.0f} µs" if f else ""
        print(f"| {name} | {nat:,.0f} {unit} | {mnt_rate:,.0f} {unit} | **{ratio:.2f}×** | ≤ {target}× | {reqs:.1f} | {fs} |")
    print()
    print("| 8 writer processes x 200 INSERTs | native: rows/s, errors, max wait | mount: rows/s, errors, max wait | mount time / native time | target |")
    print("|---|---|---|---|---|")
    for journal, sync, timeout, row, target in contention:
        n, m = row["native"], row["mount"]
        label = f"{'rollback' if journal == 'delete' else 'WAL'} {sync}, busy timeout {timeout:g} s"
        ratio = n[0] / m[0] if m[0] else float("inf")
        print(f"| {label} | {n[0]:,.0f}/s, {n[1]} errors ({n[3]} rows), {n[2]*1000:.0f} ms | "
              f"{m[0]:,.0f}/s, {m[1]} errors ({m[3]} rows), {m[2]*1000:.0f} ms | **{ratio:.2f}×** | ≤ {target}× |")
    print()
    print(f"plain FUSE request (statfs) round trip: {plain_us:.1f} µs; uncontended lock request: "
          f"{lock_us:.1f} µs; the actor hand-off adds {lock_us - plain_us:.1f} µs per lock request")


if __name__ == "__main__":
    main()
