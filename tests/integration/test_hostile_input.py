"""Hostile input (issue 17): bodies and stored values that used to crash the root daemon or
answer 500 get a clear 400, and the daemon keeps serving."""
import os
import sqlite3
import unittest

from harness import Daemon, rows

DEEP = 100000  # the depth that overflowed the stack


def nested(depth, leaf="1"):
    return "[" * depth + leaf + "]" * depth


class HostileJson(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(mount=True).start()
        cls.d.create("h", init_kv=True)
        status, body, _, _ = cls.d.tx("h", [{"statement": "CREATE TABLE t (x)"}])
        assert status == 200, body

    @classmethod
    def tearDownClass(cls):
        try:
            assert cls.d.stop() == 0
        finally:
            cls.d.cleanup()

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
