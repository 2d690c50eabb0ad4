"""The key-value store (issue 4) against the real daemon, over HTTP, with the drive mounted (so
the HTTP side and sqlite3 clients share one database through the mount)."""
import concurrent.futures
import json
import os
import sqlite3
import threading
import time
import unittest
import urllib.parse

from harness import Daemon


class KV(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon("--kv-sweep-ms=200", "--allow-any-absolute-db-path", mount=True).start()
        status, body, _, _ = cls.d.create("app")
        assert status == 200, body

    @classmethod
    def tearDownClass(cls):
        code = cls.d.stop()
        cls.d.cleanup()
        assert code == 0, code

    NO_BODY = object()

    def kv(self, method, key="", body=NO_BODY, conn=None, headers=None, **params):
        """body: a Python value sent as JSON, bytes sent as they are, or nothing."""
        params.setdefault("db", "app")
        path = "/api/v1/sqlite/kv" + ("/" + key if key else "")
        query = urllib.parse.urlencode(params)
        if body is self.NO_BODY:
            body = None
        elif not isinstance(body, bytes):
            body = json.dumps(body)
        return self.d.request(method, path + "?" + query, body, headers=headers, conn=conn)

    def q(self, key):
        return urllib.parse.quote(key, safe="")

    # -- basic ------------------------------------------------------------------------------------

    def test_set_get_delete_head_and_etag(self):
        status, body, _, h = self.kv("PUT", "user:1", {"name": "Alice", "role": "editor"})
        self.assertEqual((status, body["key"], body["version"], h["ETag"]), (200, "user:1", 1, '"1"'))
        status, body, raw, h = self.kv("GET", "user:1")
        self.assertEqual((status, body, h["ETag"]), (200, {"name": "Alice", "role": "editor"}, '"1"'))
        status, _, raw, _ = self.kv("GET", "user:1", headers={"If-None-Match": '"1"'})
        self.assertEqual((status, raw), (304, b""))
        status, _, raw, h = self.kv("HEAD", "user:1")
        self.assertEqual((status, raw, h["ETag"]), (200, b"", '"1"'))
        self.kv("PUT", "user:1", {"name": "Alice", "role": "admin"})
        self.assertEqual(self.kv("GET", "user:1")[3]["ETag"], '"2"')
        status, body, _, _ = self.kv("DELETE", "user:1")
        self.assertEqual((status, body["deleted"]), (200, True))
        status, body, raw, _ = self.kv("GET", "user:1")
        self.assertEqual((status, raw), (404, b"null"))
        self.assertEqual(self.kv("HEAD", "user:1")[0], 404)
        self.assertEqual(self.kv("DELETE", "user:1")[1]["deleted"], False)

    def test_any_json_value_round_trips(self):
        for i, value in enumerate([None, True, 0, -9223372036854775808, 1.5, "text \u2603", [1, [2]], {"a": {"b": None}}]):
            self.kv("PUT", f"v:{i}", value)
            status, body, _, _ = self.kv("GET", f"v:{i}")
            self.assertEqual((status, body), (200, value))

    def test_keys_with_slashes_and_unicode(self):
        for key in ["a/b", "spaces here", "emoji \U0001F600", "x" * 1024]:
            self.assertEqual(self.kv("PUT", self.q(key), {"k": key})[0], 200, key)
            self.assertEqual(self.kv("GET", self.q(key))[1], {"k": key})

    def test_json_paths(self):
        self.kv("PUT", "doc", {"a": {"b": [10, {"c": "deep"}]}, "n": None})
        self.assertEqual(self.kv("GET", "doc", path="$.a.b[0]")[1], 10)
        self.assertEqual(self.kv("GET", "doc", path="$.a.b[1].c")[1], "deep")
        self.assertEqual(self.kv("GET", "doc", path="$.n")[:2], (200, None))
        self.assertEqual(self.kv("GET", "doc", path="$.missing")[:3][0], 404)
        status, body, _, _ = self.kv("PUT", "doc", {"x": 1}, path="$.a.b[1].c")
        self.assertEqual(status, 200)
        self.assertEqual(self.kv("GET", "doc")[1], {"a": {"b": [10, {"c": {"x": 1}}]}, "n": None})
        self.kv("PUT", "doc", 5, path="$.new.field")
        self.assertEqual(self.kv("GET", "doc", path="$.new")[1], {"field": 5})
        self.assertEqual(self.kv("GET", "doc", path="a.b")[1]["error"]["code"], "INVALID_PATH")
        self.assertEqual(self.kv("GET", "doc", path="$.a[")[1]["error"]["code"], "INVALID_PATH")

    def test_list_with_prefix_limit_and_cursor(self):
        for i in range(25):
            self.kv("PUT", f"list:{i:02d}", i)
        self.kv("PUT", "listz", 1)
        seen, cursor = [], None
        while True:
            params = {"prefix": "list:", "limit": 10}
            if cursor:
                params["cursor"] = cursor
            status, body, _, _ = self.kv("GET", **params)
            self.assertEqual(status, 200)
            seen += [k["key"] for k in body["keys"]]
            cursor = body["cursor"]
            if not cursor:
                break
        self.assertEqual(seen, [f"list:{i:02d}" for i in range(25)])

    # -- TTL ----------------------------------------------------------------------------------------

    def test_ttl_expiry_hides_and_sweeps(self):
        self.kv("PUT", "session:abc123", {"user_id": "user-456"}, ttl=0.4)
        self.kv("PUT", "keep", 1, ttl=3600)
        self.assertEqual(self.kv("GET", "session:abc123")[0], 200)
        time.sleep(0.5)
        self.assertEqual(self.kv("GET", "session:abc123")[0], 404)
        keys = [k["key"] for k in self.kv("GET", prefix="session:")[1]["keys"]]
        self.assertNotIn("session:abc123", keys)
        self.assertFalse(self.kv("POST", "batch/get", {"keys": ["session:abc123"]})[1]["results"][0]["found"])
        self.assertEqual(self.kv("GET", prefix="keep")[1]["keys"][0]["key"], "keep")
        # The sweep removes the row itself (seen with plain SQL through the drive).
        deadline = time.time() + 5
        path = os.path.join(self.d.mount, "app.db")
        while time.time() < deadline:
            con = sqlite3.connect(path)
            n = con.execute("SELECT count(*) FROM kv_store WHERE key = 'session:abc123'").fetchone()[0]
            con.close()
            if n == 0:
                break
            time.sleep(0.1)
        self.assertEqual(n, 0)
        # An atomic operation keeps the TTL; a SET replaces it.
        self.kv("PUT", "ttlcount", 1, ttl=3600)
        self.kv("POST", "ttlcount/incr")
        expires = self.kv("GET", prefix="ttlcount")[1]["keys"][0]["expires_at"]
        self.assertGreater(expires, time.time() + 3000)

    # -- compare-and-set ---------------------------------------------------------------------------

    def test_compare_and_set(self):
        status, body, _, _ = self.kv("PUT", "cas", 1, if_match=0)          # create only if absent
        self.assertEqual((status, body["version"]), (200, 1))
        status, body, _, _ = self.kv("PUT", "cas", 2, if_match=0)
        self.assertEqual((status, body["error"]["code"], body["error"]["current_version"]), (412, "VERSION_CONFLICT", 1))
        self.assertEqual(self.kv("PUT", "cas", 2, if_match=1)[1]["version"], 2)
        status, body, _, _ = self.kv("PUT", "cas", 3, headers={"If-Match": '"1"'})
        self.assertEqual((status, body["error"]["current_version"]), (412, 2))
        self.assertEqual(self.kv("DELETE", "cas", if_match=1)[0], 412)
        self.assertEqual(self.kv("DELETE", "cas", if_match=2)[1]["deleted"], True)

    def test_cas_under_contention_has_one_winner_per_version(self):
        self.kv("PUT", "race", 0)
        wins = []

        def contender(n):
            conn = self.d.connection()
            status, body, _, _ = self.kv("PUT", "race", n, conn=conn, if_match=1)
            conn.close()
            return status

        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            statuses = list(pool.map(contender, range(20)))
        self.assertEqual(statuses.count(200), 1)
        self.assertEqual(statuses.count(412), 19)
        self.assertEqual(self.kv("GET", "race")[3]["ETag"], '"2"')

    # -- atomic operations -------------------------------------------------------------------------

    def test_incr_decr(self):
        self.assertEqual(self.kv("POST", "views:homepage/incr")[1]["value"], 1)   # missing counts from 0
        self.assertEqual(self.kv("POST", "views:homepage/incr", delta=10)[1]["value"], 11)
        self.assertEqual(self.kv("POST", "views:homepage/decr", delta=3)[1]["value"], 8)
        self.assertEqual(self.kv("GET", "views:homepage")[1], 8)
        self.kv("PUT", "word", "hello")
        status, body, _, _ = self.kv("POST", "word/incr")
        self.assertEqual((status, body["error"]["code"]), (400, "NOT_A_NUMBER"))
        self.kv("PUT", "float", 1.5)
        self.assertEqual(self.kv("POST", "float/incr")[1]["error"]["code"], "NOT_A_NUMBER")
        self.kv("PUT", "big", 9223372036854775806)
        self.assertEqual(self.kv("POST", "big/incr")[1]["value"], 9223372036854775807)
        status, body, _, _ = self.kv("POST", "big/incr")
        self.assertEqual((status, body["error"]["code"]), (400, "NUMBER_OVERFLOW"))
        self.assertEqual(self.kv("GET", "big")[1], 9223372036854775807)
        self.kv("PUT", "small", -9223372036854775808)
        self.assertEqual(self.kv("POST", "small/decr")[1]["error"]["code"], "NUMBER_OVERFLOW")
        self.assertEqual(self.kv("POST", "x/incr", delta="abc")[1]["error"]["code"], "INVALID_PARAMETER")

    def test_1000_concurrent_incr_from_50_connections(self):
        def client(n):
            conn = self.d.connection()
            bad = 0
            for _ in range(20):
                status, _, _, _ = self.kv("POST", "counter/incr", conn=conn)
                bad += status != 200
            conn.close()
            return bad

        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            self.assertEqual(sum(pool.map(client, range(50))), 0)
        self.assertEqual(self.kv("GET", "counter")[1], 1000)

    def test_push_pop_remove(self):
        # The reference's shopping cart.
        item = {"product_id": "prod-xyz", "quantity": 2, "price": 29.99}
        self.assertEqual(self.kv("POST", "cart:user1/push", {"value": item})[1]["length"], 1)
        self.assertEqual(self.kv("POST", "cart:user1/push", {"value": "product-123"})[1]["length"], 2)
        self.assertEqual(self.kv("POST", "cart:user1/push", {"value": "product-123"})[1]["length"], 3)
        # Deep equality removes every equal element...
        self.assertEqual(self.kv("POST", "cart:user1/remove", {"value": "product-123"})[1]["removed"], 2)
        # ...and an object that equals nothing removes the elements containing its fields.
        self.assertEqual(self.kv("POST", "cart:user1/remove", {"value": {"product_id": "prod-xyz"}})[1]["removed"], 1)
        self.assertEqual(self.kv("GET", "cart:user1")[1], [])
        for v in ["a", "b", "c"]:
            self.kv("POST", "list/push", {"value": v})
        self.assertEqual(self.kv("POST", "list/remove", index=-1)[1]["length"], 2)
        self.assertEqual(self.kv("POST", "list/remove", index=0)[1]["removed"], 1)
        self.assertEqual(self.kv("POST", "list/remove", index=5)[1]["error"]["code"], "INDEX_OUT_OF_RANGE")
        status, body, _, _ = self.kv("POST", "list/pop")
        self.assertEqual((status, body["value"], body["length"]), (200, "b", 0))
        status, _, raw, _ = self.kv("POST", "list/pop")                       # empty: 404 null
        self.assertEqual((status, raw), (404, b"null"))
        self.assertEqual(self.kv("POST", "nothing/pop")[0], 404)
        self.kv("PUT", "scalar", 5)
        self.assertEqual(self.kv("POST", "scalar/push", {"value": 1})[1]["error"]["code"], "NOT_AN_ARRAY")
        self.assertEqual(self.kv("POST", "scalar/push", {"nope": 1})[1]["error"]["code"], "INVALID_REQUEST")

    def test_concurrent_push_loses_nothing(self):
        def client(n):
            conn = self.d.connection()
            for i in range(20):
                self.kv("POST", "queue/push", {"value": n * 100 + i}, conn=conn)
            conn.close()

        with concurrent.futures.ThreadPoolExecutor(25) as pool:
            list(pool.map(client, range(25)))
        self.assertEqual(sorted(self.kv("GET", "queue")[1]), sorted(n * 100 + i for n in range(25) for i in range(20)))

    # -- batches -----------------------------------------------------------------------------------

    def test_batches_are_all_or_nothing(self):
        batch = [{"key": f"b:{i}", "value": {"i": i}} for i in range(100)]
        status, body, _, _ = self.kv("POST", "batch/set", {"batch": batch})
        self.assertEqual((status, len(body["results"])), (200, 100))
        status, body, _, _ = self.kv("POST", "batch/get", {"keys": [f"b:{i}" for i in range(100)]})
        self.assertEqual([r["value"]["i"] for r in body["results"]], list(range(100)))
        bad = [{"key": f"c:{i}", "value": i} for i in range(100)]
        bad[57] = {"key": "", "value": 1}
        status, body, _, _ = self.kv("POST", "batch/set", {"batch": bad})
        self.assertEqual((status, body["error"]["code"], body["error"]["item"]), (400, "INVALID_KEY", 57))
        self.assertFalse(self.kv("POST", "batch/get", {"keys": ["c:0"]})[1]["results"][0]["found"])
        bad[57] = {"key": "c:57", "value": 1, "ttl": -1}
        status, body, _, _ = self.kv("POST", "batch/set", {"batch": bad})
        self.assertEqual((status, body["error"]["item"]), (400, 57))
        status, body, _, _ = self.kv("POST", "batch/set", {"batch": batch + [{"key": "b:100", "value": 1}]})
        self.assertEqual((status, body["error"]["code"]), (400, "TOO_MANY_ITEMS"))
        self.assertEqual(self.kv("POST", "batch/get", {"keys": ["k"] * 101})[1]["error"]["code"], "TOO_MANY_ITEMS")
        status, body, _, _ = self.kv("POST", "batch/delete", {"keys": ["b:0", "b:1", "missing"]})
        self.assertEqual([r["deleted"] for r in body["results"]], [True, True, False])

    def test_feature_flags_and_config_examples(self):
        self.kv("POST", "batch/set", {"batch": [{"key": "feature:new-ui", "value": True},
                                                {"key": "feature:beta-api", "value": False},
                                                {"key": "feature:dark-mode", "value": True}]})
        self.assertIs(self.kv("GET", "feature:new-ui")[1], True)
        self.assertIs(self.kv("GET", "feature:beta-api")[1], False)
        config = {"timeout": 30, "retries": 3, "endpoint": "https://api.example.com"}
        self.kv("PUT", "config:api", config)
        self.assertEqual(self.kv("GET", "config:api")[1], config)

    # -- the table is an ordinary table ------------------------------------------------------------

    def test_sql_clients_on_the_drive_see_and_change_the_table(self):
        self.kv("PUT", "shared", {"from": "http"})
        path = os.path.join(self.d.mount, "app.db")
        con = sqlite3.connect(path, timeout=0)
        row = con.execute("SELECT value, version FROM kv_store WHERE key = 'shared'").fetchone()
        self.assertEqual((json.loads(row[0]), row[1]), ({"from": "http"}, 1))
        con.execute("UPDATE kv_store SET value = '{\"from\": \"sql\"}' WHERE key = 'shared'")
        con.execute("INSERT INTO kv_store (key, value) VALUES ('fromsql', 'plain text')")
        con.commit()
        con.close()
        status, body, _, h = self.kv("GET", "shared")
        self.assertEqual((body, h["ETag"]), ({"from": "sql"}, '"2"'))   # the trigger bumped it
        self.assertEqual(self.kv("GET", "fromsql")[1], "plain text")     # non-JSON served as a string
        self.assertEqual(self.kv("PUT", "shared", 1, if_match=1)[0], 412)

    def test_a_database_renamed_or_deleted_on_the_drive_is_reopened(self):
        # The database actor's connections keep the file they opened. Once it is renamed or
        # deleted on the drive, SQLite refuses writes on them (SQLITE_READONLY_DBMOVED) and goes
        # on reading the old file: litedrive must open the file that is at the path now.
        self.assertEqual(self.d.create("moved", init_kv=True)[0], 200)
        self.assertEqual(self.kv("PUT", "k", "old", db="moved")[0], 200)
        path = os.path.join(self.d.mount, "moved.db")
        os.rename(path, os.path.join(self.d.mount, "moved-old.db"))
        con = sqlite3.connect(path)
        con.execute("CREATE TABLE marker(x)")
        con.commit()
        con.close()
        self.assertEqual(self.kv("GET", "k", db="moved")[0], 404)  # the new file: no such key
        self.assertEqual(self.kv("PUT", "k", "new", db="moved")[0], 200)
        self.assertEqual(self.kv("GET", "k", db="moved")[1], "new")
        status, body, _, _ = self.d.query("moved", "SELECT count(*) AS n FROM marker")
        self.assertEqual((status, body["results"][0]["resultSet"]), (200, [{"n": 0}]))
        con = sqlite3.connect(os.path.join(self.d.mount, "moved-old.db"))
        self.assertEqual(con.execute("SELECT value FROM kv_store WHERE key = 'k'").fetchone()[0], '"old"')
        con.close()
        # Deleted, then created again over HTTP: a new, empty database.
        os.unlink(path)
        status, body, _, _ = self.d.create("moved", init_kv=True)
        self.assertEqual((status, body["created"]), (200, True))
        self.assertEqual(self.kv("GET", "k", db="moved")[0], 404)
        self.assertEqual(self.kv("PUT", "k", "newest", db="moved")[0], 200)
        self.assertEqual(self.kv("GET", "k", db="moved")[1], "newest")

    def test_other_tables_and_absolute_paths(self):
        self.assertEqual(self.kv("PUT", "t1", 1, table="sessions")[0], 200)
        self.assertEqual(self.kv("GET", "t1", table="sessions")[1], 1)
        self.assertEqual(self.kv("GET", "t1")[0], 404)
        self.assertEqual(self.kv("GET", "t1", table="bad name")[1]["error"]["code"], "INVALID_PARAMETER")
        self.assertEqual(self.kv("GET", "t1", table="sqlite_master")[1]["error"]["code"], "INVALID_PARAMETER")
        abs_path = os.path.join(self.d.mount, "app.db")
        self.assertEqual(self.kv("GET", "t1", table="sessions", db=abs_path)[1], 1)

    # -- errors ------------------------------------------------------------------------------------

    def test_error_paths(self):
        self.assertEqual(self.kv("PUT", "k", b"{not json")[1]["error"]["code"], "INVALID_JSON")
        self.assertEqual(self.kv("PUT", "k", b"")[1]["error"]["code"], "INVALID_JSON")
        self.assertEqual(self.kv("PUT", "k", 1, ttl="soon")[1]["error"]["code"], "INVALID_PARAMETER")
        self.assertEqual(self.kv("PUT", "k", 1, ttl="-5")[1]["error"]["code"], "INVALID_PARAMETER")
        self.assertEqual(self.kv("PUT", "k", 1, ttl="0")[1]["error"]["code"], "INVALID_PARAMETER")
        self.assertEqual(self.kv("GET", "%00bad")[1]["error"]["code"], "INVALID_KEY")
        self.assertEqual(self.kv("GET", "%zz")[1]["error"]["code"], "INVALID_KEY")
        self.assertEqual(self.kv("GET", "x" * 1025)[1]["error"]["code"], "INVALID_KEY")
        self.assertEqual(self.kv("GET", "k/unknownop")[0], 404)
        status, body, _, h = self.kv("POST", "k")
        self.assertEqual((status, body["error"]["code"], h["Allow"]), (405, "METHOD_NOT_ALLOWED", "GET, HEAD, PUT, DELETE"))
        self.assertEqual(self.kv("GET", "k/incr")[0], 405)
        self.assertEqual(self.kv("GET", "k", db="missing")[1]["error"]["code"], "DATABASE_NOT_FOUND")
        self.assertEqual(self.d.request("GET", "/api/v1/sqlite/kv/k")[1]["error"]["code"], "MISSING_PARAMETER")
        self.assertEqual(self.kv("POST", "batch/set", {"nope": []})[1]["error"]["code"], "INVALID_REQUEST")
        self.assertEqual(self.kv("POST", "batch/get", {"keys": [1]})[1]["error"]["code"], "INVALID_REQUEST")
        self.assertEqual(self.kv("GET", "k", at_timestamp="yesterday")[1]["error"]["code"], "INVALID_PARAMETER")
        self.assertEqual(self.kv("GET", "k/snapshot")[1]["error"]["code"], "MISSING_PARAMETER")
        self.assertEqual(self.kv("GET", "k/snapshot", op_number=0)[1]["error"]["code"], "INVALID_PARAMETER")
        self.assertEqual(self.kv("POST", "k/rollback", steps=0)[1]["error"]["code"], "INVALID_PARAMETER")
        self.assertEqual(self.kv("POST", "k/history")[0], 405)
        self.assertEqual(self.d.request("GET", "/api/v1/sqlite/health")[0], 200)

    # -- the key history (time travel) -------------------------------------------------------------

    def test_history_snapshot_at_timestamp_and_rollback(self):
        k, t = "tt:config", "tt"
        steps = [("PUT", {"timeout": 10}), ("PUT", {"timeout": 20}), ("POST", "incr-not"),
                 ("DELETE", None), ("PUT", {"timeout": 30})]
        self.kv("PUT", k, {"timeout": 10}, table=t)
        time.sleep(0.05)
        self.kv("PUT", k, {"timeout": 20}, table=t)
        time.sleep(0.05)
        self.kv("PUT", k, 99, table=t, history="false")       # not recorded
        self.kv("PUT", k, {"timeout": 20}, table=t, history="false")
        time.sleep(0.05)
        self.kv("DELETE", k, table=t)
        time.sleep(0.05)
        self.kv("PUT", k, {"timeout": 30}, table=t)
        status, body, _, _ = self.kv("GET", k + "/history", table=t)
        self.assertEqual(status, 200)
        h = body["history"]
        self.assertEqual([e["operation"] for e in h], ["set", "delete", "set", "set"])    # newest first
        self.assertEqual([e["new_value"] for e in h], [{"timeout": 30}, None, {"timeout": 20}, {"timeout": 10}])
        self.assertEqual([e["old_value"] for e in h], [None, {"timeout": 20}, {"timeout": 10}, None])
        ops = [e["op_number"] for e in h]
        self.assertEqual(ops, sorted(ops, reverse=True))
        self.assertTrue(all(e["source"] == "http" for e in h))
        # Pagination.
        page = self.kv("GET", k + "/history", table=t, limit=2)[1]
        self.assertEqual([e["op_number"] for e in page["history"]], ops[:2])
        rest = self.kv("GET", k + "/history", table=t, limit=2, before=page["cursor"])[1]
        self.assertEqual([e["op_number"] for e in rest["history"]], ops[2:])
        self.assertIsNone(rest["cursor"])
        # Snapshot by op number: the value right after it.
        first, second, deleted, last = reversed(ops)
        self.assertEqual(self.kv("GET", k + "/snapshot", table=t, op_number=first)[1], {"timeout": 10})
        self.assertEqual(self.kv("GET", k + "/snapshot", table=t, op_number=second)[1], {"timeout": 20})
        self.assertEqual(self.kv("GET", k + "/snapshot", table=t, op_number=deleted)[0], 404)
        self.assertEqual(self.kv("GET", k + "/snapshot", table=t, op_number=last)[1], {"timeout": 30})
        self.assertEqual(self.kv("GET", k + "/snapshot", table=t, op_number=last + 1000)[1]["error"]["code"],
                         "HISTORY_UNAVAILABLE")
        # Value at a time: between the recorded changes.
        ts = [e["timestamp"] for e in reversed(h)]
        self.assertEqual(self.kv("GET", k, table=t, at_timestamp=ts[0] - 0.01)[0], 404)       # before it existed
        self.assertEqual(self.kv("GET", k, table=t, at_timestamp=(ts[0] + ts[1]) / 2)[1], {"timeout": 10})
        self.assertEqual(self.kv("GET", k, table=t, at_timestamp=(ts[1] + ts[2]) / 2)[1], {"timeout": 20})
        self.assertEqual(self.kv("GET", k, table=t, at_timestamp=(ts[2] + ts[3]) / 2)[0], 404)  # deleted then
        self.assertEqual(self.kv("GET", k, table=t, at_timestamp=ts[3] + 1)[1], {"timeout": 30})
        # Rollback of the last change, then the rollback's own undo.
        status, body, _, _ = self.kv("POST", k + "/rollback", table=t)
        self.assertEqual((status, body["value"]), (200, None))                                  # back to deleted
        self.assertEqual(self.kv("GET", k, table=t)[0], 404)
        self.assertEqual(self.kv("POST", k + "/rollback", table=t)[1]["value"], {"timeout": 30})  # undo the undo
        self.assertEqual(self.kv("GET", k, table=t)[1], {"timeout": 30})
        # Three changes back from here: the state before the delete.
        self.assertEqual(self.kv("POST", k + "/rollback", table=t, steps=4)[1]["value"], {"timeout": 20})
        self.assertEqual(self.kv("GET", k, table=t)[1], {"timeout": 20})
        ops_now = [e["operation"] for e in self.kv("GET", k + "/history", table=t)[1]["history"]]
        self.assertEqual(ops_now[:3], ["rollback", "rollback", "rollback"])
        status, body, _, _ = self.kv("POST", k + "/rollback", table=t, steps=100)
        self.assertEqual((status, body["error"]["code"]), (409, "HISTORY_UNAVAILABLE"))
        self.assertEqual(self.kv("GET", k, table=t)[1], {"timeout": 20})                         # unchanged

    def test_diff_table_snapshot_and_table_rollback(self):
        t = "tr"
        self.kv("PUT", "a", 1, table=t)
        self.kv("PUT", "b", 1, table=t)
        time.sleep(0.05)
        t0 = self.kv("GET", "b/history", table=t)[1]["history"][0]["timestamp"] + 0.01
        time.sleep(0.05)
        self.kv("PUT", "a", 2, table=t)
        self.kv("DELETE", "b", table=t)
        self.kv("PUT", "c", 3, table=t)
        self.kv("PUT", "diff", "a key named diff", table=t)       # still a key without from/to
        self.assertEqual(self.kv("GET", "diff", table=t)[1], "a key named diff")
        t1 = time.time() + 0.01
        d = self.kv("GET", "diff", table=t, **{"from": t0, "to": t1})[1]
        self.assertEqual({c["key"]: (c["before"], c["after"]) for c in d["changes"]},
                         {"a": (1, 2), "b": (1, None), "c": (None, 3), "diff": (None, "a key named diff")})
        snap = self.kv("GET", "snapshot", table=t, timestamp=t0)[1]
        self.assertEqual({e["key"]: e["value"] for e in snap["keys"]}, {"a": 1, "b": 1})
        # Without confirm=yes (or with dry_run=true): a preview, nothing changes.
        for extra in ({}, {"confirm": "no"}, {"confirm": "yes", "dry_run": "true"}):
            preview = self.kv("POST", "rollback", table=t, to_timestamp=t0, **extra)[1]
            self.assertTrue(preview["dry_run"])
            self.assertEqual(preview["count"], 4)
            self.assertEqual(self.kv("GET", "a", table=t)[1], 2)
        done = self.kv("POST", "rollback", table=t, to_timestamp=t0, confirm="yes")[1]
        self.assertEqual((done["dry_run"], done["count"]), (False, 4))
        self.assertEqual({c["key"]: c["restored"] for c in done["changes"]},
                         {"a": 1, "b": 1, "c": None, "diff": None})
        self.assertEqual(self.kv("GET", "a", table=t)[1], 1)
        self.assertEqual(self.kv("GET", "b", table=t)[1], 1)
        self.assertEqual(self.kv("GET", "c", table=t)[0], 404)
        # The table rollback is recorded, so it can be looked at and undone like any change.
        self.assertEqual(self.kv("GET", "a/history", table=t)[1]["history"][0]["operation"], "rollback")
        self.assertEqual(self.kv("POST", "rollback", table=t, to_timestamp=t0)[1]["count"], 0)
        self.assertEqual(self.kv("POST", "rollback", table=t)[1]["error"]["code"], "MISSING_PARAMETER")

    def test_table_rollback_under_concurrent_writes_is_one_transaction(self):
        t = "trc"
        self.kv("POST", "batch/set", {"batch": [{"key": f"x{i}", "value": 0} for i in range(10)]}, table=t)
        time.sleep(0.05)
        t0 = time.time()
        time.sleep(0.05)
        stop = threading.Event()

        def writer(i):
            conn = self.d.connection()
            while not stop.is_set():
                self.kv("POST", f"x{i}/incr", conn=conn, table=t)
            conn.close()

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(10)]
        for th in threads:
            th.start()
        time.sleep(0.3)
        done = self.kv("POST", "rollback", table=t, to_timestamp=t0, confirm="yes")[1]
        stop.set()
        for th in threads:
            th.join()
        self.assertEqual(done["count"], 10)
        stamps = set()
        for i in range(10):
            hist = self.kv("GET", f"x{i}/history", table=t, limit=1000)[1]["history"]
            rollbacks = [e for e in hist if e["operation"] == "rollback"]
            self.assertEqual(len(rollbacks), 1)
            self.assertEqual(rollbacks[0]["new_value"], 0)
            stamps.add(rollbacks[0]["timestamp"])
            # Increments after the rollback continue from the restored value.
            later = [e for e in hist if e["op_number"] > rollbacks[0]["op_number"]]
            if later:
                self.assertEqual(min(e["old_value"] for e in later), 0)
        self.assertEqual(len(stamps), 1, "the rollback was not applied in one transaction")

    def test_every_mutation_kind_is_recorded_and_expiry_too(self):
        t = "rec"
        self.kv("PUT", "c", 1, table=t)
        self.kv("POST", "c/incr", table=t, delta=2)
        self.kv("POST", "arr/push", {"value": 1}, table=t)
        self.kv("POST", "arr/push", {"value": 2}, table=t)
        self.kv("POST", "arr/pop", table=t)
        self.kv("POST", "arr/remove", {"value": 1}, table=t)
        self.kv("PUT", "doc", 5, table=t, path="$.a")
        self.kv("POST", "batch/set", {"batch": [{"key": "b1", "value": 1}]}, table=t)
        self.kv("POST", "batch/delete", {"keys": ["b1"]}, table=t)
        self.kv("PUT", "short", 1, table=t, ttl=0.2)
        ops = lambda key: [e["operation"] for e in reversed(self.kv("GET", key + "/history", table=t)[1]["history"])]
        self.assertEqual(ops("c"), ["set", "incr"])
        self.assertEqual(ops("arr"), ["push", "push", "pop", "remove"])
        self.assertEqual(ops("doc"), ["set_path"])
        self.assertEqual(ops("b1"), ["batch_set", "batch_delete"])
        deadline = time.time() + 5
        while time.time() < deadline and ops("short") != ["set", "expire"]:
            time.sleep(0.1)
        self.assertEqual(ops("short"), ["set", "expire"])
        expire = self.kv("GET", "short/history", table=t)[1]["history"][0]
        self.assertEqual((expire["source"], expire["old_value"], expire["new_value"]), ("expiry", 1, None))


if __name__ == "__main__":
    unittest.main()


class KVTimeouts(unittest.TestCase):
    def test_a_kv_request_stuck_behind_slow_sql_is_answered_504_and_the_connection_goes_on(self):
        # KV answers come back through a sink, not a CAF request: the bridge's one timer must
        # still answer a request that waits longer than the request timeout (300 + 300 ms +
        # 2 s = 2.6 s), exactly once, and the late answer must never reach the connection.
        forever = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
        with Daemon("--statement-timeout-ms=300", "--busy-timeout-ms=300") as d:
            status, body, _, _ = d.create("slow", init_kv=True)
            self.assertEqual(status, 200, body)
            self.assertEqual(d.request("PUT", "/api/v1/sqlite/kv/k?db=slow", {"v": 1})[0], 200)
            conn = d.connection()
            with concurrent.futures.ThreadPoolExecutor(13) as pool:
                slow = [pool.submit(d.query, "slow", forever) for _ in range(12)]
                time.sleep(0.3)  # the queries are at the worker; the GET queues behind them
                started = time.monotonic()
                got = pool.submit(d.request, "GET", "/api/v1/sqlite/kv/k?db=slow", None, None, conn).result()
                waited = time.monotonic() - started
                for f in slow:
                    f.result()
            status, body, _, _ = got
            self.assertEqual(status, 504, body)
            self.assertEqual(body["error"]["code"], "SERVICE_TIMEOUT")
            self.assertGreater(waited, 2.0)
            # The same connection gets its own next answer, not the late one of the GET above.
            time.sleep(1.0)
            status, body, _, headers = d.request("PUT", "/api/v1/sqlite/kv/k?db=slow", {"v": 2}, conn=conn)
            self.assertEqual(status, 200, body)
            status, body, _, _ = d.request("GET", "/api/v1/sqlite/kv/k?db=slow", conn=conn)
            self.assertEqual((status, body), (200, {"v": 2}))
            conn.close()


class KVRoutes(unittest.TestCase):
    def test_a_database_in_use_is_never_closed_and_an_unused_one_is(self):
        # KV requests skip the registry on a route learned from it, for a quarter of
        # idle-close-ms at most: the registry must still see a database in use as in use, and
        # close it once it is not.
        with Daemon("--idle-close-ms=400") as d:
            self.assertEqual(d.create("routes", init_kv=True)[0], 200)
            conn = d.connection()
            until = time.monotonic() + 2.5
            n = 0
            while time.monotonic() < until:
                status, body, _, _ = d.request("POST", "/api/v1/sqlite/kv/c/incr?db=routes", conn=conn)
                self.assertEqual(status, 200, body)
                n += 1
                time.sleep(0.01)
            conn.close()
            _, stats, _, _ = d.request("GET", "/api/v1/sqlite/health/cache")
            self.assertEqual(stats["spawned"], 1, stats)  # used all along: never closed
            self.assertEqual(d.request("GET", "/api/v1/sqlite/kv/c?db=routes")[1], n)
            time.sleep(1.5)
            _, stats, _, _ = d.request("GET", "/api/v1/sqlite/health/cache")
            self.assertEqual(stats["open"], 0, stats)  # unused: closed
            # The next request finds it again (a new actor), with nothing lost.
            self.assertEqual(d.request("GET", "/api/v1/sqlite/kv/c?db=routes")[1], n)
            _, stats, _, _ = d.request("GET", "/api/v1/sqlite/health/cache")
            self.assertEqual(stats["spawned"], 2, stats)


def kv_call(d, db, method, key, body=None, **params):
    """One KV request to daemon d on database db; body: a Python value sent as JSON, or None."""
    params["db"] = db
    return d.request(method, f"/api/v1/sqlite/kv/{key}?" + urllib.parse.urlencode(params),
                     None if body is None else json.dumps(body))


class HistoryRetentionAndRestart(unittest.TestCase):
    def test_retention_boundary_errors_and_restart_keeps_history(self):
        d = Daemon("--kv-sweep-ms=100", "--history-max-rows=5", mount=True)
        try:
            d.start()
            d.create("ret")

            def kv(method, key, body=None, **params):
                return kv_call(d, "ret", method, key, body, **params)

            for i in range(10):
                kv("PUT", "k", i)
                time.sleep(0.01)
            deadline = time.time() + 5
            while time.time() < deadline and len(kv("GET", "k/history")[1]["history"]) > 5:
                time.sleep(0.05)
            hist = kv("GET", "k/history")[1]["history"]
            self.assertEqual([e["new_value"] for e in hist], [9, 8, 7, 6, 5])
            oldest = hist[-1]
            # Before the retained horizon: a clear error, never a wrong answer.
            status, body, _, _ = kv("GET", "k/snapshot", op_number=oldest["op_number"] - 1)
            self.assertEqual((status, body["error"]["code"]), (409, "HISTORY_UNAVAILABLE"))
            # (a time between the last trimmed op and the oldest kept one is still exact: the old
            # value of the oldest kept op; before the trimmed ops it is not)
            self.assertEqual(kv("GET", "k", at_timestamp=oldest["timestamp"] - 1)[1]["error"]["code"],
                             "HISTORY_UNAVAILABLE")
            self.assertEqual(kv("GET", "k", at_timestamp=oldest["timestamp"] - 0.001)[1], 4)
            self.assertEqual(kv("POST", "k/rollback", steps=6)[1]["error"]["code"], "HISTORY_UNAVAILABLE")
            self.assertEqual(kv("GET", "snapshot", timestamp=oldest["timestamp"] - 1)[1]["error"]["code"],
                             "HISTORY_UNAVAILABLE")
            # Inside it: answers.
            self.assertEqual(kv("GET", "k/snapshot", op_number=oldest["op_number"])[1], 5)
            self.assertEqual(kv("POST", "k/rollback", steps=5)[1]["value"], 4)
            # The history lives in the database file: a restart keeps it.
            before = kv("GET", "k/history")[1]["history"]
            self.assertEqual(d.stop(), 0)
            d.start()
            self.assertEqual(kv("GET", "k/history")[1]["history"], before)
            self.assertEqual(kv("GET", "k")[1], 4)
            self.assertEqual(d.stop(), 0)
        finally:
            d.cleanup()

    def test_age_limit_trims_the_old_rows_and_keeps_the_new(self):
        with Daemon("--kv-sweep-ms=100", "--history-max-age-s=2") as d:
            d.create("age")

            def kv(method, key, body=None, **params):
                return kv_call(d, "age", method, key, body, **params)

            for i in range(3):
                kv("PUT", "k", i)
            old_op = kv("GET", "k/history")[1]["history"][0]["op_number"]
            time.sleep(2.6)  # the three rows are now past the age limit; the sweep trims them
            kv("PUT", "k", 10)
            kv("PUT", "k", 11)
            deadline = time.time() + 1.0
            while time.time() < deadline and len(kv("GET", "k/history")[1]["history"]) > 2:
                time.sleep(0.05)
            self.assertEqual([e["new_value"] for e in kv("GET", "k/history")[1]["history"]], [11, 10])
            status, body, _, _ = kv("GET", "k/snapshot", op_number=old_op)
            self.assertEqual((status, body["error"]["code"]), (409, "HISTORY_UNAVAILABLE"))


class HistoryByKey(unittest.TestCase):
    """A key's history is read through kv_store_history_keys, which litedrive fills in batches
    (--history-index-batch) and brings up to date before every read of a key's history."""

    def kv(self, d, method, key, body=None, db="hk", **params):
        params["db"] = db
        return d.request(method, f"/api/v1/sqlite/kv/{key}?" + urllib.parse.urlencode(params),
                         None if body is None else json.dumps(body))

    def test_reads_see_rows_before_and_after_a_batch(self):
        with Daemon("--history-index-batch=4", mount=True) as d:
            d.create("hk")
            db = os.path.join(d.store, "hk.db")
            expected = {"a": [], "b": []}
            for i in range(11):                      # two full batches and a tail of 3
                key = "a" if i % 3 else "b"
                status, body, _, _ = self.kv(d, "PUT", key, {"i": i})
                self.assertEqual(status, 200, body)
                expected[key].append({"i": i})
            con = sqlite3.connect(db)
            indexed = con.execute("SELECT count(*) FROM kv_store_history_keys").fetchone()[0]
            total = con.execute("SELECT count(*) FROM kv_store_history").fetchone()[0]
            con.close()
            self.assertEqual(total, 11)
            self.assertLess(indexed, total)           # the tail waits for its batch...
            self.assertGreaterEqual(indexed, 4)       # ...the full batches did not
            for key, values in expected.items():     # ...and reads see every row all the same
                h = self.kv(d, "GET", key + "/history")[1]["history"]
                self.assertEqual([e["new_value"] for e in h], values[::-1])
                ops = [e["op_number"] for e in h]
                for op, value in zip(ops, values[::-1]):
                    self.assertEqual(self.kv(d, "GET", key + "/snapshot", op_number=op)[1], value)
            con = sqlite3.connect(db)
            self.assertEqual(con.execute("SELECT count(*) FROM kv_store_history_keys").fetchone()[0], 11)
            self.assertEqual(con.execute("SELECT op_number FROM litedrive_history_indexed "
                                         "WHERE tbl = 'kv_store'").fetchone()[0],
                             con.execute("SELECT max(op_number) FROM kv_store_history").fetchone()[0])
            con.close()
            # A change after the catch-up is in the tail again, and a rollback finds it.
            self.kv(d, "PUT", "a", {"i": 99})
            self.assertEqual(self.kv(d, "POST", "a/rollback")[1]["value"], expected["a"][-1])
            self.assertEqual(self.kv(d, "POST", "a/rollback", steps=3)[1]["value"], expected["a"][-2])

    def test_a_database_with_the_old_history_index_is_migrated(self):
        with Daemon(mount=True) as d:
            d.create("old")
            con = sqlite3.connect(os.path.join(d.mount, "old.db"))
            con.executescript("""
                CREATE TABLE kv_store (key TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL,
                  version INTEGER NOT NULL DEFAULT 1, expires_at REAL, updated_at REAL NOT NULL
                  DEFAULT 0) WITHOUT ROWID;
                CREATE TABLE kv_store_history (op_number INTEGER PRIMARY KEY AUTOINCREMENT,
                  key TEXT NOT NULL, operation TEXT NOT NULL, old_value TEXT, new_value TEXT,
                  ts REAL NOT NULL, source TEXT NOT NULL);
                CREATE INDEX kv_store_history_key ON kv_store_history(key, op_number);
                CREATE INDEX kv_store_history_ts ON kv_store_history(ts);
                INSERT INTO kv_store (key, value, version, updated_at) VALUES ('k', '3', 3, 3);
                INSERT INTO kv_store_history (key, operation, old_value, new_value, ts, source)
                  VALUES ('k', 'set', NULL, '1', 1, 'http'), ('k', 'set', '1', '2', 2, 'http'),
                         ('k', 'set', '2', '3', 3, 'http');
            """)
            con.close()
            h = self.kv(d, "GET", "k/history", db="old")[1]["history"]
            self.assertEqual([e["new_value"] for e in h], [3, 2, 1])
            self.assertEqual(self.kv(d, "GET", "k", db="old", at_timestamp=2.5)[1], 2)
            con = sqlite3.connect(os.path.join(d.mount, "old.db"))
            names = {n for (n,) in con.execute("SELECT name FROM sqlite_master")}
            con.close()
            self.assertNotIn("kv_store_history_key", names)
            self.assertIn("kv_store_history_keys", names)

    def test_retention_removes_by_key_entries_with_their_rows(self):
        with Daemon("--kv-sweep-ms=100", "--history-max-rows=5", "--history-index-batch=2",
                    mount=True) as d:
            d.create("hk")
            for i in range(12):
                self.kv(d, "PUT", f"k{i % 2}", i)
            self.kv(d, "GET", "k0/history")          # everything is by key now
            deadline = time.time() + 5
            db = os.path.join(d.store, "hk.db")
            while time.time() < deadline:
                con = sqlite3.connect(db)
                rows = con.execute("SELECT count(*) FROM kv_store_history").fetchone()[0]
                con.close()
                if rows <= 5:
                    break
                time.sleep(0.05)
            con = sqlite3.connect(db)
            kept = con.execute("SELECT key, op_number FROM kv_store_history ORDER BY 1, 2").fetchall()
            by_key = con.execute("SELECT key, op_number FROM kv_store_history_keys ORDER BY 1, 2").fetchall()
            con.close()
            self.assertEqual(len(kept), 5)
            self.assertEqual(by_key, kept)
            self.assertEqual([e["new_value"] for e in self.kv(d, "GET", "k1/history")[1]["history"]],
                             [11, 9, 7])

    def test_bad_batch_size_is_refused(self):
        d = Daemon("--history-index-batch=0")
        try:
            with self.assertRaises(RuntimeError) as ctx:
                d.start()
            self.assertIn("history-index-batch must be at least 1", str(ctx.exception))
        finally:
            d.cleanup()


class KillDuringWriteStorm(unittest.TestCase):
    def test_every_acknowledged_set_survives_kill9_of_the_daemon(self):
        """litedrive writes a group commit's WAL frames in one write at the commit (wal_vfs):
        whatever it acknowledged must be in the file when the daemon dies. synchronous=NORMAL,
        so no fsync stands in for that write. Through /dev/fuse: a daemon killed with WAL
        databases open hangs in the kernel until its connection is aborted (README, honest
        limits), which the harness does; with io_uring the abort does not free it (~80 s)."""
        d = Daemon("--synchronous=NORMAL", "--drive-io-uring=false", mount=True)
        try:
            d.start()
            status, body, _, _ = d.request("POST", "/api/v1/sqlite/db/create?path=storm&journal_mode=wal")
            self.assertEqual(status, 200, body)
            acked, stop = [], threading.Event()

            def writer(w):
                conn = d.connection(timeout=10)
                i = 0
                try:
                    while not stop.is_set():
                        # a value of ~2 KiB: a group's frames take more than one write of the VFS
                        status, _, _, _ = d.request("PUT", f"/api/v1/sqlite/kv/w{w}:{i}?db=storm",
                                                    {"w": w, "i": i, "pad": "x" * 2000}, conn=conn)
                        if status == 200:
                            acked.append(f"w{w}:{i}")
                        i += 1
                except OSError:
                    pass  # the daemon is gone

            threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
            for t in threads:
                t.start()
            time.sleep(2)
            d.kill9()
            stop.set()
            for t in threads:
                t.join()
            self.assertGreater(len(acked), 100)
            d.start()
            con = sqlite3.connect(os.path.join(d.mount, "storm.db"))
            self.assertEqual(con.execute("PRAGMA integrity_check").fetchone()[0], "ok")
            present = {k for (k,) in con.execute("SELECT key FROM kv_store")}
            con.close()
            self.assertEqual(set(acked) - present, set(), "acknowledged writes were lost")
            self.assertEqual(d.stop(), 0)
        finally:
            d.cleanup()
