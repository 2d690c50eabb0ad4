"""Hostile input (issue 17): bodies and stored values that used to crash the root daemon or
answer 500 get a clear 400, and the daemon keeps serving."""
import ctypes
import os
import sqlite3
import threading
import time
import unittest

from harness import Daemon, SharedDaemon, rows

DEEP = 100000  # the depth that overflowed the stack


def nested(depth, leaf="1"):
    return "[" * depth + leaf + "]" * depth


class HostileJson(SharedDaemon, unittest.TestCase):
    mount = True

    @classmethod
    def prepare(cls, d):
        d.create("h", init_kv=True)
        status, body, _, _ = d.tx("h", [{"statement": "CREATE TABLE t (x)"}])
        assert status == 200, body

    def post(self, path, raw):
        return self.d.request("POST", path, raw.encode(), headers={"Content-Type": "application/json"})

    def put(self, path, raw):
        return self.d.request("PUT", path, raw.encode(), headers={"Content-Type": "application/json"})

    def alive(self):
        status, body, _, _ = self.d.query("h", "SELECT 1 AS one")
        self.assertEqual((status, rows(body)), (200, [{"one": 1}]))

    def bad_json(self, answer):
        status, body, raw, _ = answer
        self.assertEqual((status, body and body["error"]["code"]), (400, "INVALID_JSON"), raw[:300])
        return body["error"]["message"]

    def test_deep_nesting_is_refused_everywhere(self):
        deep = nested(DEEP)
        msg = self.bad_json(self.post("/api/v1/sqlite/db?db=h",
                                      '{"transaction":[{"statement":"INSERT INTO t VALUES (?)","values":[' + deep + ']}]}'))
        self.assertIn("nest deeper than 512", msg)
        self.bad_json(self.post("/api/v1/sqlite/db?db=h", deep))
        self.bad_json(self.put("/api/v1/sqlite/kv/k?db=h", '{"value":' + deep + '}'))
        self.bad_json(self.put("/api/v1/sqlite/kv/k?db=h", deep))
        self.bad_json(self.post("/api/v1/sqlite/kv/k/push?db=h", '{"value":' + deep + '}'))
        self.bad_json(self.post("/api/v1/sqlite/kv/k/remove?db=h", '{"value":' + deep + '}'))
        self.bad_json(self.post("/api/v1/sqlite/kv/batch/set?db=h",
                                '{"batch":[{"key":"a","value":' + deep + '}]}'))
        self.alive()

    def test_nesting_up_to_the_limit_works(self):
        ok = nested(500)
        status, body, raw, _ = self.put("/api/v1/sqlite/kv/ok?db=h", ok)  # PUT's body is the value
        self.assertEqual(status, 200, raw[:300])
        status, body, raw, _ = self.d.request("GET", "/api/v1/sqlite/kv/ok?db=h")
        self.assertEqual(status, 200, raw[:200])
        depth = 0
        while isinstance(body, list):
            body = body[0]
            depth += 1
        self.assertEqual(depth, 500)
        self.assertEqual(body, 1)
        status, body, raw, _ = self.post("/api/v1/sqlite/kv/ok/push?db=h", '{"value":' + nested(10) + '}')
        self.assertEqual(status, 200, raw[:300])

    def test_numbers_out_of_range_are_the_clients_error(self):
        for number in ["1e999", "-1e999", "9" * 100000]:
            self.bad_json(self.post("/api/v1/sqlite/db?db=h",
                                    '{"transaction":[{"statement":"INSERT INTO t VALUES (?)","values":[' + number + ']}]}'))
            self.bad_json(self.put("/api/v1/sqlite/kv/n?db=h", '{"value":' + number + '}'))
        self.alive()

    def test_a_deep_value_stored_by_another_sqlite_client_is_refused_not_crashed_on(self):
        # Any process on the drive may store anything in the KV table; the KV engine parses
        # stored values for push/remove/paths.
        status, body, raw, _ = self.d.request("PUT", "/api/v1/sqlite/kv/arr?db=h", b'{"value":[1]}')
        self.assertEqual(status, 200, raw)
        con = sqlite3.connect(os.path.join(self.d.mount, "h.db"), timeout=30)
        table = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' AND sql LIKE '%value%' AND name NOT LIKE '%history%'")]
        self.assertTrue(table, "no KV table found")
        con.execute(f"UPDATE \"{table[0]}\" SET value = ? WHERE key = 'arr'", (nested(DEEP),))
        con.commit()
        con.close()
        status, body, raw, _ = self.post("/api/v1/sqlite/kv/arr/push?db=h", '{"value":2}')
        self.assertIn(status, (400, 409), raw[:300])
        self.alive()


if __name__ == "__main__":
    unittest.main()


class StoreEscape(unittest.TestCase):
    """A symbolic link planted in the store, or swapped in while litedrive works, never makes the
    root daemon create or write a file outside the store."""

    def setUp(self):
        self.d = Daemon(mount=True).start()
        self.outside = os.path.join(self.d.tmp, "outside")
        os.mkdir(self.outside, 0o700)

    def tearDown(self):
        try:
            self.assertEqual(self.d.stop(), 0)
        finally:
            self.d.cleanup()

    def escaped(self):
        found = []
        for root, dirs, files in os.walk(self.outside):
            found += [os.path.join(root, n) for n in dirs + files]
        return found

    def test_planted_links_are_not_followed(self):
        store = self.d.store
        os.symlink(os.path.join(self.outside, "planted.db"), os.path.join(store, "evil.db"))
        os.symlink(self.outside, os.path.join(store, "dir"))
        # Through the drive too: a link made by a user of the mount.
        os.symlink(os.path.join(self.outside, "viamount.db"), os.path.join(self.d.mount, "mnt.db"))
        for path in ["evil", "dir/x", "dir/new/deeper/x", "mnt"]:
            status, body, raw, _ = self.d.create(path, init_kv=True)
            self.assertEqual(status, 400, (path, raw))
            self.assertEqual(body["error"]["code"], "INVALID_DB_PATH", (path, raw))
            status, body, raw, _ = self.d.request("PUT", f"/api/v1/sqlite/kv/k?db={path}", b'"v"')
            self.assertNotEqual(status, 200, (path, raw))
            status, body, raw, _ = self.d.tx(path, [{"statement": "CREATE TABLE t (x)"}])
            self.assertNotEqual(status, 200, (path, raw))
        # A journal link next to a real database: the write fails, nothing appears outside.
        self.assertEqual(self.d.create("real")[0], 200)
        self.assertEqual(self.d.tx("real", [{"statement": "CREATE TABLE t (x)"}])[0], 200)
        # (through the drive: nothing but litedrive may change the store while it runs)
        os.symlink(os.path.join(self.outside, "journal"), os.path.join(self.d.mount, "real.db-journal"))
        status, body, raw, _ = self.d.tx("real", [{"statement": "INSERT INTO t VALUES (1)"}])
        self.assertNotEqual(status, 200, raw)
        self.assertEqual(self.escaped(), [])
        os.unlink(os.path.join(self.d.mount, "real.db-journal"))
        answer = self.d.tx("real", [{"statement": "INSERT INTO t VALUES (1)"}])
        self.assertEqual(answer[0], 200, answer[2])

    def test_a_link_swapped_in_for_a_directory_is_not_followed(self):
        store = self.d.store
        sw = os.path.join(store, "sw")
        os.mkdir(sw)
        os.symlink(self.outside, sw + ".link")
        stop = threading.Event()
        libc = ctypes.CDLL(None, use_errno=True)
        AT_FDCWD, RENAME_EXCHANGE = -100, 2

        def swapper():
            # "sw" is a directory, then a link out of the store, then a directory... (atomic
            # exchanges, so that it always exists).
            while not stop.is_set():
                rc = libc.renameat2(AT_FDCWD, sw.encode(), AT_FDCWD, (sw + ".link").encode(), RENAME_EXCHANGE)
                assert rc == 0, os.strerror(ctypes.get_errno())

        t = threading.Thread(target=swapper)
        t.start()
        try:
            deadline = time.monotonic() + 3
            i = 0
            while time.monotonic() < deadline:
                self.d.create(f"sw/db{i}")
                self.d.request("PUT", f"/api/v1/sqlite/kv/k?db=sw/kv{i}", b'"v"')
                i += 1
        finally:
            stop.set()
            t.join()
        self.assertEqual(self.escaped(), [])
        self.assertGreater(i, 10)
