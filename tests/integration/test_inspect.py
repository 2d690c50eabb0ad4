"""The CAF remote inspection interface: litedrive-inspect asks the daemon's published inspection
actor over CAF's middleman (a real network connection on loopback) and prints its JSON."""
import json
import os
import socket
import sqlite3
import subprocess
import unittest

from harness import Daemon

INSPECT = os.environ.get("LITEDRIVE_INSPECT_BIN",
                         os.path.join(os.path.dirname(__file__), "../../build/litedrive-inspect"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RemoteInspection(unittest.TestCase):
    def setUp(self):
        self.port = free_port()
        self.d = Daemon(f"--inspect=127.0.0.1:{self.port}", mount=True).start()

    def tearDown(self):
        try:
            self.assertEqual(self.d.stop(), 0, self.d.read_log())
        finally:
            self.d.cleanup()

    def inspect(self, *args, port=None):
        p = subprocess.run([INSPECT, f"--at=127.0.0.1:{port or self.port}", *args],
                           capture_output=True, text=True, timeout=60)
        return p.returncode, p.stdout, p.stderr

    def test_stats_and_a_held_lock_are_visible_remotely(self):
        path = os.path.join(self.d.mount, "seen.db")
        con = sqlite3.connect(path, isolation_level=None)
        con.execute("CREATE TABLE t (x)")
        con.execute("BEGIN EXCLUSIVE")  # holds the main file's locks until COMMIT
        con.execute("INSERT INTO t VALUES (1)")
        rc, out, err = self.inspect("locks", "seen")
        self.assertEqual(rc, 0, err)
        locks = json.loads(out)
        self.assertTrue(locks["open"])
        self.assertEqual({h["pid"] for h in locks["holders"]}, {os.getpid()})
        self.assertIn("write", {h["type"] for h in locks["holders"]})
        self.assertGreater(locks["counters"]["grants"], 0)
        con.execute("COMMIT")
        con.close()
        rc, out, err = self.inspect("stats")
        self.assertEqual(rc, 0, err)
        names = [db["name"] for db in json.loads(out)["databases"]]
        self.assertIn("seen.db", names)
        # The same view as the HTTP API's.
        status, body, _, _ = self.d.request("GET", "/api/v1/sqlite/locks?db=seen")
        self.assertEqual(status, 200)
        self.assertEqual(body["holders"], [])

    def test_bad_names_get_the_apis_error_codes(self):
        rc, out, err = self.inspect("locks", "../outside")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["error"]["code"], "INVALID_DB_PATH")

    def test_usage_and_unreachable_daemon(self):
        self.assertEqual(self.inspect("frobnicate")[0], 2)
        self.assertEqual(self.inspect("locks")[0], 2)
        rc, _, err = self.inspect("stats", port=free_port())
        self.assertEqual(rc, 1)
        self.assertIn("cannot reach", err)


if __name__ == "__main__":
    unittest.main()
