"""The drive (issue 3): concurrent SQLite writers on the FUSE mount never see "database is locked".

Every test mounts the real daemon's drive in a temporary directory and drives it with real
clients: the sqlite3 CLI (no busy timeout) and Python's sqlite3 (timeout=0), in separate
processes, as the issue's proof list asks.
"""
import json
import multiprocessing as mp
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

from harness import Daemon, new_database, rows

WRITERS = 8
PER_WRITER = 200


def mounted_daemon(*args):
    return Daemon(*args, mount=True)


def create_table(path, journal):
    return new_database(path, journal, "CREATE TABLE t (id INTEGER PRIMARY KEY, w INTEGER, i INTEGER, UNIQUE (w, i))")


def check_table(test, path, expected):
    con = sqlite3.connect(path)
    n, distinct = con.execute("SELECT count(*), count(DISTINCT w * 100000 + i) FROM t").fetchone()
    integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
    con.close()
    test.assertEqual((n, distinct, integrity), (expected, expected, "ok"))


def cli_writer(path, w, batch):
    """One sqlite3 CLI process, no busy timeout; returns its stderr."""
    lines = []
    if batch == 1:
        lines = [f"INSERT INTO t (w, i) VALUES ({w}, {i});" for i in range(PER_WRITER)]
    else:
        for start in range(0, PER_WRITER, batch):
            lines.append("BEGIN;")
            lines += [f"INSERT INTO t (w, i) VALUES ({w}, {i});" for i in range(start, start + batch)]
            lines.append("COMMIT;")
    return subprocess.Popen(["sqlite3", path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True), "\n".join(lines) + "\n"


def py_writer(args):
    path, w, batch = args
    con = sqlite3.connect(path, timeout=0, isolation_level=None)
    errors = []
    for start in range(0, PER_WRITER, batch):
        try:
            if batch > 1:
                con.execute("BEGIN")
            for i in range(start, start + batch):
                con.execute("INSERT INTO t (w, i) VALUES (?, ?)", (w, i))
            if batch > 1:
                con.execute("COMMIT")
        except sqlite3.Error as e:
            errors.append(str(e))
            if con.in_transaction:
                con.execute("ROLLBACK")
    con.close()
    return errors


class DriveTestCase(unittest.TestCase):
    daemon_args = ()

    def setUp(self):
        self.d = mounted_daemon(*self.daemon_args).start()
        self.mnt = self.d.mount

    def tearDown(self):
        try:
            code = self.d.stop()
            self.assertEqual(code, 0, self.d.read_log())
            self.assertFalse(os.path.ismount(self.mnt), "the drive is still mounted after SIGTERM")
        finally:
            self.d.cleanup()

    def locks(self, name):
        status, body, _, _ = self.d.request("GET", "/api/v1/sqlite/locks?db=" + urllib.parse.quote(name))
        self.assertEqual(status, 200, body)
        return body


class ConcurrentWriters(DriveTestCase):
    """Proof 1 and 2: 8 writers x 200 rows, CLI and Python, rollback and WAL, autocommit and BEGIN..COMMIT of 10."""

    def run_cli(self, journal, batch):
        path = os.path.join(self.mnt, f"cli-{journal}-{batch}.db")
        self.assertEqual(create_table(path, journal), journal)
        procs = [cli_writer(path, w, batch) for w in range(WRITERS)]
        results = []
        threads = [threading.Thread(target=lambda p=p: results.append(p[0].communicate(p[1], timeout=600)))
                   for p in procs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        errors = [err for out, err in results if err.strip()]
        self.assertEqual(errors, [], f"{len(errors)} writers reported errors")
        self.assertTrue(all(p[0].returncode == 0 for p in procs))
        check_table(self, path, WRITERS * PER_WRITER)

    def run_python(self, journal, batch):
        path = os.path.join(self.mnt, f"py-{journal}-{batch}.db")
        self.assertEqual(create_table(path, journal), journal)
        with mp.get_context("fork").Pool(WRITERS) as pool:
            errors = sum(pool.map(py_writer, [(path, w, batch) for w in range(WRITERS)]), [])
        self.assertEqual(errors, [])
        check_table(self, path, WRITERS * PER_WRITER)

    def test_cli_rollback_autocommit(self):
        self.run_cli("delete", 1)

    def test_cli_rollback_transactions(self):
        self.run_cli("delete", 10)

    def test_cli_wal_autocommit(self):
        self.run_cli("wal", 1)

    def test_cli_wal_transactions(self):
        self.run_cli("wal", 10)

    def test_python_rollback_autocommit(self):
        self.run_python("delete", 1)

    def test_python_rollback_transactions(self):
        self.run_python("delete", 10)

    def test_python_wal_autocommit(self):
        self.run_python("wal", 1)

    def test_python_wal_transactions(self):
        self.run_python("wal", 10)


def kernel_has_fuse_over_io_uring():
    """Whether this kernel can serve FUSE over io_uring for the daemon (root may turn the fuse
    module's switch on; io_uring itself must not be disabled)."""
    try:
        with open("/proc/sys/kernel/io_uring_disabled") as f:
            if f.read().strip() != "0":
                return False
    except FileNotFoundError:
        pass
    return os.path.exists("/sys/module/fuse/parameters/enable_uring") and os.geteuid() == 0


class RequestPath(DriveTestCase):
    """Which way requests reach the daemon: FUSE over io_uring where the kernel has it."""

    def through_io_uring(self):
        return self.d.request("GET", "/api/v1/sqlite/health")[1]["drive_requests"]["through_io_uring"]

    def test_requests_come_through_io_uring_where_the_kernel_has_it(self):
        path = os.path.join(self.mnt, "ring.db")
        create_table(path, "wal")
        before = self.through_io_uring()
        for _ in range(20):
            os.statvfs(self.mnt)
        after = self.through_io_uring()
        if kernel_has_fuse_over_io_uring():
            self.assertGreaterEqual(after - before, 20)
            self.assertIn("FUSE over io_uring", self.d.read_log())
        else:
            self.assertEqual(after, 0)
            self.assertIn("/dev/fuse", self.d.read_log())


class ConcurrentWritersOverDevFuse(ConcurrentWriters):
    """Proof 1 and 2 again with the ring off: requests through /dev/fuse (libfuse's loop)."""

    def setUp(self):
        self.d = mounted_daemon("--drive-io-uring=false").start()
        self.mnt = self.d.mount

    def tearDown(self):
        health = self.d.request("GET", "/api/v1/sqlite/health")[1]
        self.assertEqual(health["drive_requests"]["through_io_uring"], 0)
        super().tearDown()


def cold_reader(args):
    path, ident = args
    con = sqlite3.connect(path, timeout=0)
    try:
        n = con.execute("SELECT count(*) FROM t").fetchone()[0]
        con.execute("INSERT INTO t (w, i) VALUES (?, 0)", (ident,))
        con.commit()
        return ("ok", n)
    except sqlite3.Error as e:
        return ("error", str(e))
    finally:
        con.close()


class ColdStart(DriveTestCase):
    def test_16_processes_open_a_closed_wal_database_at_once(self):
        """Proof 3."""
        path = os.path.join(self.mnt, "cold.db")
        create_table(path, "wal")
        for attempt in range(3):
            # Closed: no connection is open between rounds, so the first opener initialises
            # the -shm while the 15 others race it.
            ctx = mp.get_context("fork")
            with ctx.Pool(16) as pool:
                results = pool.map(cold_reader, [(path, attempt * 100 + k) for k in range(16)])
            self.assertEqual([r for r in results if r[0] != "ok"], [], f"round {attempt}")
        con = sqlite3.connect(path)
        self.assertEqual(con.execute("SELECT count(*) FROM t").fetchone()[0], 48)
        self.assertEqual(con.execute("PRAGMA integrity_check").fetchone()[0], "ok")
        con.close()


VICTIM = r"""
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=0)
con.execute("PRAGMA cache_size=2")          # spill to the database file: EXCLUSIVE + hot journal
con.execute("BEGIN IMMEDIATE")
con.execute("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 5000) "
            "INSERT INTO t (w, i) SELECT 999, x FROM c")
print("holding", flush=True)
time.sleep(3600)
"""


class KilledWriter(DriveTestCase):
    def test_kill9_of_writer_holding_exclusive_with_hot_journal(self):
        """Proof 4: the others finish with 0 errors, the victim's changes are absent."""
        path = os.path.join(self.mnt, "victim.db")
        create_table(path, "delete")
        victim = subprocess.Popen([sys.executable, "-c", VICTIM, path], stdout=subprocess.PIPE, text=True)
        self.assertEqual(victim.stdout.readline().strip(), "holding")
        journal = os.path.join(self.d.store, "victim.db-journal")
        self.assertTrue(os.path.exists(journal) and os.path.getsize(journal) > 0, "no hot journal")
        held = self.locks("victim")
        self.assertTrue(any(h["type"] == "write" for h in held["holders"]), held)
        ctx = mp.get_context("fork")
        pool = ctx.Pool(6)
        pending = pool.map_async(py_writer, [(path, w, 1) for w in range(6)])
        deadline = time.time() + 10
        while time.time() < deadline and len(self.locks("victim")["waiters"]) < 1:
            time.sleep(0.05)
        self.assertGreaterEqual(len(self.locks("victim")["waiters"]), 1, "nobody waited for the victim")
        victim.kill()
        victim.wait()
        errors = sum(pending.get(timeout=300), [])
        pool.close()
        pool.join()
        self.assertEqual(errors, [])
        con = sqlite3.connect(path)
        self.assertEqual(con.execute("SELECT count(*) FROM t WHERE w = 999").fetchone()[0], 0)
        self.assertEqual(con.execute("SELECT count(*) FROM t").fetchone()[0], 6 * PER_WRITER)
        self.assertEqual(con.execute("PRAGMA integrity_check").fetchone()[0], "ok")
        con.close()


STORM_WRITER = r"""
import sqlite3, sys
path, w, log = sys.argv[1], int(sys.argv[2]), open(sys.argv[3], "a")
con = sqlite3.connect(path, isolation_level=None, timeout=0)
i = 0
while True:
    try:
        con.execute("INSERT INTO t (w, i) VALUES (?, ?)", (w, i))
    except Exception:
        break
    log.write(f"{w} {i}\n"); log.flush()   # acknowledged: the commit returned
    i += 1
"""


class DaemonKill(unittest.TestCase):
    def test_kill9_of_the_daemon_during_a_write_storm(self):
        """Proof 5: after kill -9 and a restart (which replaces the stale mount), the database is
        intact and every commit acknowledged before the kill is there."""
        d = mounted_daemon()
        try:
            d.start()
            path = os.path.join(d.mount, "storm.db")
            create_table(path, "delete")
            ack = os.path.join(d.tmp, "acks.txt")
            writers = [subprocess.Popen([sys.executable, "-c", STORM_WRITER, path, str(w), ack],
                                        stderr=subprocess.DEVNULL) for w in range(4)]
            time.sleep(1.5)
            d.kill9()
            for w in writers:
                w.wait(timeout=60)
            acked = set()
            with open(ack) as f:
                for line in f:
                    w, i = line.split()
                    acked.add((int(w), int(i)))
            self.assertGreater(len(acked), 20)
            d.start()  # the stale mount is detected and replaced
            self.assertTrue(os.path.ismount(d.mount))
            con = sqlite3.connect(path)
            self.assertEqual(con.execute("PRAGMA integrity_check").fetchone()[0], "ok")
            present = set(con.execute("SELECT w, i FROM t").fetchall())
            con.close()
            self.assertEqual(acked - present, set(), "acknowledged commits were lost")
            self.assertEqual(d.stop(), 0)
        finally:
            d.cleanup()


class HttpAndCli(DriveTestCase):
    def test_http_transactions_and_cli_writers_interleaved_on_one_wal_database(self):
        """Proof 6, and the HTTP side sees one database with the drive (same actor, same locks)."""
        path = os.path.join(self.mnt, "mixed.db")
        create_table(path, "wal")
        procs = [cli_writer(path, w, 1) for w in range(4)]
        http_errors = []

        def http_client(w):
            conn = self.d.connection()
            for i in range(PER_WRITER):
                status, body, _, _ = self.d.tx("mixed", [{"statement": "INSERT INTO t (w, i) VALUES (?, ?)",
                                                         "values": [w, i]}], conn=conn)
                if status != 200:
                    http_errors.append(body)
            conn.close()

        cli_stderr = []
        threads = [threading.Thread(target=lambda p=p: cli_stderr.append(p[0].communicate(p[1], timeout=600)[1]))
                   for p in procs]
        threads += [threading.Thread(target=http_client, args=(100 + k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(http_errors, [])
        self.assertEqual([p[0].returncode for p in procs], [0] * 4)
        self.assertEqual(cli_stderr, [""] * 4)
        check_table(self, path, 8 * PER_WRITER)
        status, body, _, _ = self.d.query("mixed", "SELECT count(*) AS n FROM t")
        self.assertEqual(rows(body), [{"n": 8 * PER_WRITER}])


class OwnWritesCoherence(DriveTestCase):
    """litedrive's own connections write straight to the store (drive_io): a process that keeps
    its database open on the mount, with pages in the kernel's cache (and mapped, with
    mmap_size), must still see every HTTP commit at once: updates in place (same size), growth
    of the file, and the WAL's restart over frames it read before."""

    daemon_args = ("--wal-autocheckpoint=20",)  # litedrive's writer restarts the WAL often

    def check(self, journal, mmap):
        name = f"own_{journal}_{'mmap' if mmap else 'read'}"
        path = os.path.join(self.mnt, name + ".db")
        create_table(path, journal)
        reader = sqlite3.connect(path, timeout=30, isolation_level=None)
        if mmap:
            reader.execute("PRAGMA mmap_size=67108864")
        conn = self.d.connection()
        status, body, _, _ = self.d.tx(name, [
            {"statement": "INSERT INTO t (id, w, i) VALUES (1, 0, 0)"}], conn=conn)
        self.assertEqual(status, 200, body)
        for n in range(1, 301):
            items = [{"statement": "UPDATE t SET i = ? WHERE id = 1", "values": [n]}]
            if n % 3 == 0:  # grow the file too
                items.append({"statement": "INSERT INTO t (w, i) VALUES (?, ?)", "values": [n, n]})
            status, body, _, _ = self.d.tx(name, items, conn=conn)
            self.assertEqual(status, 200, body)
            seen = reader.execute("SELECT i, (SELECT count(*) FROM t) FROM t WHERE id = 1").fetchone()
            self.assertEqual(seen, (n, 1 + n // 3), f"stale read after commit {n}")
        conn.close()
        self.assertEqual(reader.execute("PRAGMA integrity_check").fetchone()[0], "ok")
        reader.close()
        health = self.d.request("GET", "/api/v1/sqlite/health")[1]
        counters = health["drive_requests"]
        self.assertGreater(counters["own_direct_writes"], 300, counters)
        self.assertGreater(counters["own_cache_invalidations"], 300, counters)

    def test_size_seen_through_the_mount_follows_http_growth(self):
        """A file nobody read through the mount gets no page invalidations, but when litedrive's
        writes grow it, the size the kernel caches (attr_timeout 1 s) must follow at once: a
        stale size would cut the file short for the next reader."""
        for journal in ("delete", "wal"):
            name = f"grow_{journal}"
            path = os.path.join(self.mnt, name + ".db")
            status, body, _, _ = self.d.request(
                "POST", f"/api/v1/sqlite/db/create?path={name}&journal_mode={journal}")
            self.assertEqual(status, 200, body)
            status, body, _, _ = self.d.tx(name, [{"statement": "CREATE TABLE t (v TEXT)"}])
            self.assertEqual(status, 200, body)
            backing = os.path.join(self.d.store, name + ".db")
            for n in range(1, 6):
                for suffix in ("", "-wal") if journal == "wal" else ("",):
                    os.stat(path + suffix)  # the kernel caches the attributes now
                status, body, _, _ = self.d.tx(name, [
                    {"statement": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200) "
                                  "INSERT INTO t SELECT hex(randomblob(500)) FROM c"}])
                self.assertEqual(status, 200, body)
                for suffix in ("", "-wal") if journal == "wal" else ("",):  # the file that grew
                    self.assertEqual(os.stat(path + suffix).st_size, os.stat(backing + suffix).st_size,
                                     f"{journal}{suffix}, round {n}")
            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)  # the first read through the mount
            self.assertEqual(con.execute("SELECT count(*) FROM t").fetchone()[0], 200 * 5)
            self.assertEqual(con.execute("PRAGMA integrity_check").fetchone()[0], "ok")
            con.close()

    def test_rollback_reader_sees_every_http_commit(self):
        self.check("delete", False)

    def test_wal_reader_sees_every_http_commit(self):
        self.check("wal", False)

    def test_wal_mmap_reader_sees_every_http_commit(self):
        self.check("wal", True)

    def test_rollback_mmap_reader_sees_every_http_commit(self):
        self.check("delete", True)


class OwnLocks(DriveTestCase):
    """litedrive's own connections take their locks in the lock table directly (no round trip
    through the kernel), and still meet every other process there: an HTTP write waits its turn
    behind a process holding the write lock, and a process waits behind an HTTP write."""

    def own_counters(self):
        return self.d.request("GET", "/api/v1/sqlite/health")[1]["drive_requests"]

    def check(self, journal):
        name = f"own_locks_{journal}"
        path = os.path.join(self.mnt, name + ".db")
        create_table(path, journal)
        holder = sqlite3.connect(path, timeout=0, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("INSERT INTO t (w, i) VALUES (1, 1)")
        before = self.own_counters()
        answer = {}
        writer = threading.Thread(target=lambda: answer.update(r=self.d.tx(
            name, [{"statement": "INSERT INTO t (w, i) VALUES (2, 2)"}])))
        writer.start()
        writer.join(0.5)
        self.assertTrue(writer.is_alive(), f"the HTTP write did not wait for the holder: {answer}")
        holder.execute("COMMIT")
        writer.join(60)
        self.assertEqual(answer["r"][0], 200, answer["r"][1])
        after = self.own_counters()
        self.assertGreater(after["own_locks"], before["own_locks"], after)
        self.assertGreater(after["own_lock_waits"], before["own_lock_waits"], after)
        # And the other way round: while litedrive commits, a process asking for the write lock
        # with timeout=0 waits instead of failing (many rounds, so some of them collide).
        conn = self.d.connection()
        errors = []

        def process_writer():
            con = sqlite3.connect(path, timeout=0, isolation_level=None)
            for i in range(100):
                try:
                    con.execute("INSERT INTO t (w, i) VALUES (3, ?)", (i,))
                except sqlite3.Error as e:
                    errors.append(str(e))
            con.close()

        other = threading.Thread(target=process_writer)
        other.start()
        for i in range(100):
            status, body, _, _ = self.d.tx(name, [{"statement": "INSERT INTO t (w, i) VALUES (4, ?)",
                                                   "values": [i]}], conn=conn)
            self.assertEqual(status, 200, body)
        other.join(120)
        conn.close()
        self.assertEqual(errors, [])
        self.assertEqual(holder.execute("SELECT w FROM t WHERE w IN (1, 2) ORDER BY id").fetchall(),
                         [(1,), (2,)])
        holder.close()
        check_table(self, path, 2 + 200)

    def test_no_false_deadlock_when_a_process_waits_for_litedrive_on_another_database(self):
        """A process holds db1 and waits for db2, which an HTTP transaction holds, while another
        HTTP transaction waits for db1: no cycle (each database is its own SQLite thread in
        litedrive), so everyone finishes and nobody is made a deadlock victim."""
        for name in ("fd1", "fd2"):
            create_table(os.path.join(self.mnt, name + ".db"), "delete")
        answers = {}
        slow = threading.Thread(target=lambda: answers.update(db2=self.d.tx("fd2", [
            {"statement": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000000) "
                          "INSERT INTO t (w, i) SELECT 1, count(*) FROM c"}])))
        slow.start()
        time.sleep(0.3)  # the HTTP transaction holds db2 now
        p1 = sqlite3.connect(os.path.join(self.mnt, "fd1.db"), timeout=0, isolation_level=None)
        p1.execute("BEGIN IMMEDIATE")
        p1.execute("INSERT INTO t (w, i) VALUES (2, 1)")
        waiter = threading.Thread(target=lambda: answers.update(db1=self.d.tx("fd1", [
            {"statement": "INSERT INTO t (w, i) VALUES (3, 1)"}])))
        waiter.start()
        time.sleep(0.3)  # and the second one waits for this process on db1
        self.assertTrue(slow.is_alive() and waiter.is_alive(), answers)
        p2 = sqlite3.connect(os.path.join(self.mnt, "fd2.db"), timeout=0, isolation_level=None)
        p2.execute("INSERT INTO t (w, i) VALUES (4, 1)")  # waits for the slow HTTP transaction
        p2.close()
        p1.execute("COMMIT")
        p1.close()
        slow.join(60)
        waiter.join(60)
        self.assertEqual((answers["db2"][0], answers["db1"][0]), (200, 200), answers)
        for name in ("fd1", "fd2"):
            counters = self.locks(name)["counters"]
            self.assertEqual(counters["deadlock_victims"], 0, counters)
        check_table(self, os.path.join(self.mnt, "fd1.db"), 2)
        check_table(self, os.path.join(self.mnt, "fd2.db"), 2)

    def test_rollback_http_and_a_process_take_turns(self):
        self.check("delete")

    def test_wal_http_and_a_process_take_turns(self):
        self.check("wal")


class AbsolutePathThroughMount(unittest.TestCase):
    def test_mount_path_and_bare_name_reach_the_same_actor(self):
        d = mounted_daemon("--allow-any-absolute-db-path")
        try:
            d.start()
            d.create("same")
            d.tx(os.path.join(d.mount, "same.db"), [{"statement": "CREATE TABLE t (x)"}])
            d.tx("same", [{"statement": "INSERT INTO t VALUES (1)"}])
            status, body, _, _ = d.request("GET", "/api/v1/sqlite/health/cache")
            self.assertEqual([x["name"] for x in body["databases"]].count("same"), 1, body)
            con = sqlite3.connect(os.path.join(d.mount, "same.db"))
            self.assertEqual(con.execute("SELECT count(*) FROM t").fetchone()[0], 1)
            con.close()
            self.assertEqual(d.stop(), 0)
        finally:
            d.cleanup()


DEADLOCK = r"""
import os, sqlite3, sys, time
first, second, go, me = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
a = sqlite3.connect(first, isolation_level=None, timeout=0)
b = sqlite3.connect(second, isolation_level=None, timeout=0)
a.execute("BEGIN IMMEDIATE")
a.execute("INSERT INTO t (w, i) VALUES (1, 1)")
open(go + "." + me, "w").close()   # both hold their first database before either asks for the second
while not (os.path.exists(go + ".1") and os.path.exists(go + ".2")):
    time.sleep(0.01)
try:
    b.execute("BEGIN IMMEDIATE")   # waits for the other process, which waits for us
    b.execute("INSERT INTO t (w, i) VALUES (2, 2)")
    b.execute("COMMIT")
    a.execute("COMMIT")
    print("ok", flush=True)
except sqlite3.OperationalError as e:
    a.execute("ROLLBACK")
    print("busy:" + str(e), flush=True)
"""


class Deadlock(DriveTestCase):
    def test_deadlock_across_two_databases_resolves_with_one_eagain(self):
        """Proof 7."""
        one, two = os.path.join(self.mnt, "one.db"), os.path.join(self.mnt, "two.db")
        create_table(one, "delete")
        create_table(two, "delete")
        go = os.path.join(self.d.tmp, "go")
        p1 = subprocess.Popen([sys.executable, "-c", DEADLOCK, one, two, go, "1"], stdout=subprocess.PIPE, text=True)
        p2 = subprocess.Popen([sys.executable, "-c", DEADLOCK, two, one, go, "2"], stdout=subprocess.PIPE, text=True)
        out1, _ = p1.communicate(timeout=60)
        out2, _ = p2.communicate(timeout=60)
        outcomes = sorted([out1.strip().split(":")[0], out2.strip().split(":")[0]])
        self.assertEqual(outcomes, ["busy", "ok"], (out1, out2))
        victims = self.locks("one")["counters"]["deadlock_victims"] + self.locks("two")["counters"]["deadlock_victims"]
        self.assertEqual(victims, 1)


HOLDER = r"""
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=0)
con.execute("BEGIN IMMEDIATE")
con.execute("INSERT INTO t (w, i) VALUES (?, 0)", (int(sys.argv[2]),))
print("holding", flush=True)
sys.stdin.readline()
con.execute("COMMIT")
print("done", flush=True)
"""


class KilledWaiter(DriveTestCase):
    def test_a_waiter_killed_with_sigkill_leaves_the_queue_at_once(self):
        """Proof 8."""
        path = os.path.join(self.mnt, "queue.db")
        create_table(path, "delete")
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, path, "1"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        self.assertEqual(holder.stdout.readline().strip(), "holding")
        waiter = subprocess.Popen([sys.executable, "-c", HOLDER, path, "2"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        deadline = time.time() + 10
        while time.time() < deadline and not self.locks("queue")["waiters"]:
            time.sleep(0.02)
        waiting = self.locks("queue")["waiters"]
        self.assertEqual([w["pid"] for w in waiting], [waiter.pid])
        third = subprocess.Popen([sys.executable, "-c", HOLDER, path, "3"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
        while time.time() < deadline and len(self.locks("queue")["waiters"]) < 2:
            time.sleep(0.02)
        self.assertEqual(len(self.locks("queue")["waiters"]), 2)
        waiter.kill()
        waiter.wait(timeout=5)  # no D state: the interrupt was answered
        time.sleep(0.2)
        self.assertEqual([w["pid"] for w in self.locks("queue")["waiters"]], [third.pid])
        self.assertGreaterEqual(self.locks("queue")["counters"]["interrupts"], 1)
        holder.stdin.write("\n")
        holder.stdin.flush()
        self.assertEqual(holder.stdout.readline().strip(), "done")
        self.assertEqual(third.stdout.readline().strip(), "holding")
        third.stdin.write("\n")
        third.stdin.flush()
        self.assertEqual(third.stdout.readline().strip(), "done")
        holder.wait(timeout=5)
        third.wait(timeout=5)
        con = sqlite3.connect(path)
        self.assertEqual(sorted(r[0] for r in con.execute("SELECT w FROM t")), [1, 3])
        con.close()


READONLY_READER = r"""
import sqlite3, sys, time
con = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True, timeout=0)
t = time.perf_counter()
n = con.execute("SELECT count(*) FROM t").fetchone()[0]
print(n, round(time.perf_counter() - t, 3), flush=True)
"""


class ReadOnlyReaders(DriveTestCase):
    """Read-only connections are exempt from transaction serialization."""

    def check(self, journal):
        path = os.path.join(self.mnt, f"ro-{journal}.db")
        create_table(path, journal)
        con = sqlite3.connect(path, isolation_level=None)
        con.execute("INSERT INTO t (w, i) VALUES (1, 1)")
        con.close()
        # A writer in the middle of a transaction (RESERVED in rollback mode, the WAL write lock).
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, path, "7"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        self.assertEqual(holder.stdout.readline().strip(), "holding")
        reader = subprocess.run([sys.executable, "-c", READONLY_READER, path], capture_output=True,
                                text=True, timeout=20)
        self.assertEqual(reader.returncode, 0, reader.stderr)
        count, seconds = reader.stdout.split()
        self.assertEqual(int(count), 1)        # the committed state, not the open transaction
        self.assertLess(float(seconds), 1.0)   # read at once, not after the writer
        holder.stdin.write("\n")
        holder.stdin.flush()
        self.assertEqual(holder.stdout.readline().strip(), "done")
        holder.wait(timeout=5)

    def test_rollback_readonly_reader_reads_during_a_write_transaction(self):
        self.check("delete")

    def test_wal_readonly_reader_reads_during_a_write_transaction(self):
        self.check("wal")


class WaitCap(unittest.TestCase):
    def test_an_idle_transaction_holds_others_back_only_until_the_cap(self):
        d = mounted_daemon("--lock-wait-max-ms=700")
        try:
            d.start()
            path = os.path.join(d.mount, "cap.db")
            create_table(path, "delete")
            holder = subprocess.Popen([sys.executable, "-c", HOLDER, path, "1"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True)
            self.assertEqual(holder.stdout.readline().strip(), "holding")
            # The writer is another process: this one holds the holder's stdin, and a waiter the
            # holder waits for (it reads that pipe) would be ended at once as hopeless.
            t0 = time.time()
            writer = subprocess.run(["sqlite3", path, "INSERT INTO t (w, i) VALUES (2, 0)"],
                                    capture_output=True, text=True, timeout=60)
            waited = time.time() - t0
            self.assertIn("locked", writer.stderr)
            self.assertGreaterEqual(waited, 0.6)
            holder.stdin.write("\n")
            holder.stdin.flush()
            holder.wait(timeout=5)
            status, body, _, _ = d.request("GET", "/api/v1/sqlite/locks?db=cap")
            self.assertGreaterEqual(body["counters"]["timeouts"], 1)
            self.assertEqual(d.stop(), 0)
        finally:
            d.cleanup()


if __name__ == "__main__":
    unittest.main()


class WedgedMount(unittest.TestCase):
    def test_a_mount_whose_daemon_does_not_answer_is_replaced_at_start(self):
        first = Daemon(mount=True).start()
        second = Daemon(mount=True)
        second.mount = first.mount
        try:
            first.proc.send_signal(signal.SIGSTOP)   # the mount stops answering
            t0 = time.time()
            second.start(timeout=30)
            self.assertLess(time.time() - t0, 15)
            self.assertIn("does not answer", second.read_log())
            path = os.path.join(second.mount, "after.db")
            create_table(path, "wal")
            check_table(self, path, 0)
            self.assertEqual(second.stop(), 0)
        finally:
            first.proc.send_signal(signal.SIGCONT)
            first.kill9()
            first.proc = None
            second.mount = None
            second.cleanup()
            first.cleanup()


HOPELESS_CHILD = r"""
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)
try:
    con.execute("INSERT INTO t (w, i) VALUES (7, 7)")
    print("inserted", flush=True)
except sqlite3.Error as e:
    print("error", e, flush=True)
"""


class HopelessWait(unittest.TestCase):
    """A process holds a transaction and then waits for its child's answer on a pipe, while the
    child waits for that transaction's lock (SQLite's own multi-process tests do this): the wait
    can never end by itself, and the drive must end it well before the wait cap."""

    CAP_MS = 20000

    def run_mode(self, journal):
        with mounted_daemon(f"--lock-wait-max-ms={self.CAP_MS}") as d:
            path = os.path.join(d.mount, f"hopeless-{journal}.db")
            create_table(path, journal)
            parent = sqlite3.connect(path, timeout=0, isolation_level=None)
            parent.execute("BEGIN")
            parent.execute("SELECT count(*) FROM t").fetchone()  # a read transaction
            if journal == "delete":
                parent.execute("INSERT INTO t (w, i) VALUES (1, 1)")  # RESERVED: a writer
            child = subprocess.Popen([sys.executable, "-c", HOPELESS_CHILD, path],
                                     stdout=subprocess.PIPE, text=True)
            started = time.monotonic()
            line = child.stdout.readline()  # the parent now sleeps in read() on the child's pipe
            waited = time.monotonic() - started
            parent.execute("COMMIT")
            parent.close()
            child.wait(60)
            self.assertLess(waited, self.CAP_MS / 1000 / 2, f"ended only by the cap: {line!r}")
            return line.strip()

    def test_wal_reader_and_a_writer_child(self):
        # WAL: the child's read mark waited only for the token: granted, and its insert goes on.
        self.assertEqual(self.run_mode("wal"), "inserted")

    def test_rollback_writer_and_a_writer_child(self):
        # Rollback: the child gets SQLITE_BUSY at once, as natively, instead of waiting 20 s.
        self.assertIn("locked", self.run_mode("delete"))
