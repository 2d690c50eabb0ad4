"""The SQL-over-HTTP API (issue 2) against the real daemon."""
import base64
import concurrent.futures
import json
import os
import socket
import sqlite3
import threading
import time
import unittest
import urllib.parse

from harness import Daemon, rows


class ReferenceExamples(unittest.TestCase):
    """The reference document's own examples answer the documented shapes."""

    @classmethod
    def setUpClass(cls):
        cls.d = Daemon().start()
        status, body, _, _ = cls.d.create("app")
        assert status == 200, body

    @classmethod
    def tearDownClass(cls):
        code = cls.d.stop()
        cls.d.cleanup()
        assert code == 0, code

    def test_01_transaction_with_insert_and_select(self):
        d = self.d
        status, body, _, _ = d.tx("app", [{"statement": "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, email TEXT)"}])
        self.assertEqual(status, 200, body)
        status, body, _, headers = d.tx("app", [
            {"statement": "INSERT INTO users (name, email) VALUES (?, ?)", "values": ["Alice", "alice@example.com"]},
            {"query": "SELECT * FROM users WHERE email = ?", "values": ["alice@example.com"]},
        ])
        self.assertEqual(status, 200, body)
        self.assertTrue(headers["Content-Type"].startswith("application/json"))
        self.assertEqual(body["results"][0]["rowsUpdated"], 1)
        self.assertEqual(body["results"][1], {"resultSet": [{"id": 1, "name": "Alice", "email": "alice@example.com"}]})

    def test_02_shareable_query_url_with_btoa(self):
        d = self.d
        d.tx("app", [{"statement": "CREATE TABLE IF NOT EXISTS users2 (id INTEGER PRIMARY KEY, status TEXT, created_at INTEGER)"},
                     {"statement": "INSERT INTO users2 (status, created_at) VALUES ('active', 1), ('gone', 2), ('active', 3)"}])
        sql = "SELECT * FROM users2 WHERE status = 'active' ORDER BY created_at DESC"
        # btoa() output pasted into the URL as is: '+', '/' and '=' unescaped.
        encoded = base64.b64encode(sql.encode()).decode()
        status, body, _, _ = d.request("GET", f"/api/v1/sqlite/query?db=app&sql={encoded}")
        self.assertEqual(status, 200, body)
        self.assertEqual([r["created_at"] for r in rows(body)], [3, 1])
        status, body, _, _ = d.query("app", sql, urlsafe=True)
        self.assertEqual(status, 200, body)
        self.assertEqual(len(rows(body)), 2)
        # The reference's iframe example: U0VMRUNUIC4uLg== is "SELECT ..." (not valid SQL).
        status, body, _, _ = d.request("GET", "/api/v1/sqlite/query?db=app&sql=U0VMRUNUIC4uLg==")
        self.assertEqual(status, 400)
        self.assertEqual(body["error"]["code"], "SQL_ERROR")

    def test_03_sql_and_kv_combination_analytics(self):
        d = self.d
        d.tx("app", [{"statement": "CREATE TABLE orders (id INTEGER PRIMARY KEY, product_id TEXT, status TEXT)"},
                     {"statement": "INSERT INTO orders (product_id, status) VALUES ('p1','pending'),('p2','done'),('p1','done')"}])
        status, body, _, _ = d.tx("app", [{"query": "SELECT product_id, COUNT(*) as purchases FROM orders GROUP BY product_id ORDER BY purchases DESC LIMIT 10"}])
        self.assertEqual(status, 200, body)
        self.assertEqual(rows(body), [{"product_id": "p1", "purchases": 2}, {"product_id": "p2", "purchases": 1}])
        # The AI-agent example uses a double-quoted string literal, which SQLite accepts.
        status, body, _, _ = d.tx("app", [{"query": 'SELECT COUNT(*) FROM orders WHERE status = "pending"'}])
        self.assertEqual(status, 200, body)
        self.assertEqual(rows(body), [{"COUNT(*)": 1}])

    def test_04_statement_items_answer_rows_updated_only(self):
        status, body, _, _ = self.d.tx("app", [{"statement": "SELECT * FROM users"}])
        self.assertEqual(status, 200, body)
        self.assertEqual(set(body["results"][0]), {"rowsUpdated", "lastInsertRowid"})

    def test_05_create_with_init_kv(self):
        status, body, _, _ = self.d.create("withkv", init_kv=True)
        self.assertEqual((status, body["created"], body["kv"]), (200, True, True))
        status, body, _, _ = self.d.tx("withkv", [{"query": "SELECT name FROM sqlite_master WHERE type='table'"}])
        self.assertIn({"name": "kv_store"}, rows(body))
        status, body, _, _ = self.d.create("withkv")
        self.assertEqual((status, body["created"], body["journal_mode"]), (200, False, "delete"))
        status, body, _, _ = self.d.request("POST", "/api/v1/sqlite/db/create?path=walkv&journal_mode=WAL")
        self.assertEqual((status, body["journal_mode"]), (200, "wal"))
        status, body, _, _ = self.d.request("POST", "/api/v1/sqlite/db/create?path=walkv&journal_mode=sideways")
        self.assertEqual((status, body["error"]["code"]), (400, "INVALID_PARAMETER"))
        self.assertTrue(os.path.exists(os.path.join(self.d.store, "withkv.db")))

    def test_06_health(self):
        status, body, _, _ = self.d.request("GET", "/api/v1/sqlite/health")
        self.assertEqual((status, body["status"]), (200, "ok"))
        status, body, _, _ = self.d.request("GET", "/api/v1/sqlite/health/cache")
        self.assertEqual(status, 200)
        self.assertGreaterEqual(body["open"], 1)
        names = {db["name"] for db in body["databases"]}
        self.assertIn("app", names)
        for db in body["databases"]:
            for field in ("requests", "failures", "in_flight", "avg_latency_ms", "path"):
                self.assertIn(field, db)

    def test_07_web_console(self):
        status, _, raw, headers = self.d.request("GET", "/")
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/html"))
        self.assertIn(b"/api/v1/sqlite/db", raw)

    def test_08_values_round_trip(self):
        d = self.d
        d.tx("app", [{"statement": "CREATE TABLE vals (i INTEGER, r REAL, t TEXT, b BLOB, n)"}])
        blob = bytes(range(256))
        big = [9223372036854775807, -9223372036854775808, 2**53 + 1]
        items = [{"statement": "INSERT INTO vals VALUES (?,?,?,?,?)",
                  "values": [v, 3.141592653589793, "snow \u2603 \"q\" \\ \n", {"$blob": base64.b64encode(blob).decode()}, None]} for v in big]
        items.append({"statement": "INSERT INTO vals VALUES (:i, :r, :t, :b, :n)",
                      "values": {"i": 7, "r": -0.0, "t": "named", "b": {"$blob": ""}, "n": False}})
        items.append({"query": "SELECT * FROM vals ORDER BY rowid"})
        status, body, raw, _ = d.tx("app", items)
        self.assertEqual(status, 200, body)
        got = body["results"][-1]["resultSet"]
        self.assertEqual([r["i"] for r in got], big + [7])
        self.assertEqual(got[0]["r"], 3.141592653589793)
        self.assertEqual(got[0]["t"], "snow \u2603 \"q\" \\ \n")
        self.assertEqual(base64.b64decode(got[0]["b"]["$blob"]), blob)
        self.assertIsNone(got[0]["n"])
        self.assertEqual(got[3]["n"], 0)


class ConcurrencyAndAtomicity(unittest.TestCase):
    def test_64_concurrent_clients_lose_nothing(self):
        clients, per_client = 64, 40
        with Daemon() as d:
            d.create("load")
            d.tx("load", [{"statement": "CREATE TABLE hits (client INTEGER, seq INTEGER, PRIMARY KEY (client, seq))"}])
            errors = []
            start = threading.Barrier(clients)

            def client(cid):
                conn = d.connection()
                start.wait()
                for seq in range(per_client):
                    status, body, _, _ = d.tx("load", [{"statement": "INSERT INTO hits VALUES (?, ?)", "values": [cid, seq]}], conn=conn)
                    if status != 200:
                        errors.append((cid, seq, status, body))
                conn.close()

            with concurrent.futures.ThreadPoolExecutor(clients) as pool:
                list(pool.map(client, range(clients)))
            self.assertEqual(errors, [])
            status, body, _, _ = d.query("load", "SELECT count(*) AS n, count(DISTINCT client*1000+seq) AS u FROM hits")
            self.assertEqual(rows(body), [{"n": clients * per_client, "u": clients * per_client}])
            # And the file itself agrees, read natively.
            con = sqlite3.connect(os.path.join(d.store, "load.db"))
            self.assertEqual(con.execute("SELECT count(*) FROM hits").fetchone()[0], clients * per_client)
            self.assertEqual(con.execute("PRAGMA integrity_check").fetchone()[0], "ok")
            con.close()

    def test_concurrent_failures_do_not_touch_their_group(self):
        """Many clients at once (so requests share group commits), every third one failing."""
        with Daemon() as d:
            d.create("mixed")
            d.tx("mixed", [{"statement": "CREATE TABLE m (k INTEGER PRIMARY KEY)"}])
            results = []

            def client(cid):
                conn = d.connection()
                out = []
                for seq in range(30):
                    k = cid * 1000 + seq
                    items = [{"statement": "INSERT INTO m VALUES (?)", "values": [k]}]
                    if seq % 3 == 0:
                        items.append({"statement": "INSERT INTO m VALUES (?)", "values": [k]})  # duplicate key
                    status, body, _, _ = d.tx("mixed", items, conn=conn)
                    out.append((k, seq % 3 == 0, status))
                conn.close()
                return out

            with concurrent.futures.ThreadPoolExecutor(32) as pool:
                for out in pool.map(client, range(32)):
                    results.extend(out)
            for k, should_fail, status in results:
                self.assertEqual(status, 400 if should_fail else 200, k)
            expected = sorted(k for k, should_fail, _ in results if not should_fail)
            status, body, _, _ = d.query("mixed", "SELECT k FROM m ORDER BY k")
            self.assertEqual([r["k"] for r in rows(body)], expected)
            status, body, _, _ = d.request("GET", "/api/v1/sqlite/health/cache")
            db = [x for x in body["databases"] if x["name"] == "mixed"][0]
            self.assertGreater(db["avg_group_size"], 1.0, "no group commit happened under load")

    def test_failing_item_rolls_back_everything(self):
        with Daemon() as d:
            d.create("atomic")
            d.tx("atomic", [{"statement": "CREATE TABLE t (x INTEGER UNIQUE)"}, {"statement": "INSERT INTO t VALUES (0)"}])
            status, body, _, _ = d.tx("atomic", [
                {"statement": "INSERT INTO t VALUES (1)"},
                {"statement": "UPDATE t SET x = 100 WHERE x = 0"},
                {"statement": "CREATE TABLE u (y)"},
                {"statement": "INSERT INTO t VALUES (1)"},  # UNIQUE violation
                {"statement": "INSERT INTO t VALUES (2)"},
            ])
            self.assertEqual(status, 400)
            self.assertEqual(body["error"]["code"], "SQL_ERROR")
            self.assertEqual(body["error"]["item"], 3)
            self.assertIn("item 3", body["error"]["message"])
            status, body, _, _ = d.tx("atomic", [{"query": "SELECT x FROM t"},
                                                 {"query": "SELECT count(*) AS n FROM sqlite_master WHERE name='u'"}])
            self.assertEqual(rows(body, 0), [{"x": 0}])
            self.assertEqual(rows(body, 1), [{"n": 0}])


class ReadOnlyEnforcement(unittest.TestCase):
    def test_query_endpoint_refuses_writes(self):
        with Daemon() as d:
            d.create("ro")
            d.tx("ro", [{"statement": "CREATE TABLE t (x)"}, {"statement": "CREATE INDEX tx ON t (x)"},
                        {"statement": "INSERT INTO t VALUES (1)"}])
            refused = ["DELETE FROM t", "INSERT INTO t VALUES (2)", "UPDATE t SET x = 3", "DROP TABLE t",
                       "CREATE TABLE evil (x)", "CREATE TEMP TABLE tmp (x)", "ATTACH DATABASE '/tmp/x.db' AS x",
                       "PRAGMA user_version = 5", "PRAGMA journal_mode = WAL", "PRAGMA writable_schema = 1",
                       "VACUUM", "REINDEX", "ANALYZE", "BEGIN IMMEDIATE",
                       "WITH x AS (SELECT 1) DELETE FROM t", "insert/**/into t values (9)"]
            for sql in refused:
                status, body, _, _ = d.query("ro", sql)
                self.assertEqual((status, body["error"]["code"]), (403, "READ_ONLY_VIOLATION"), sql)
            status, body, _, _ = d.query("ro", "SELECT 1; DELETE FROM t")
            self.assertEqual((status, body["error"]["code"]), (400, "INVALID_REQUEST"))
            status, body, _, _ = d.query("ro", "SELECT x FROM t")
            self.assertEqual(rows(body), [{"x": 1}])
            status, body, _, _ = d.query("ro", "PRAGMA user_version")
            self.assertEqual(rows(body), [{"user_version": 0}])
            status, body, _, _ = d.query("ro", "PRAGMA table_info(t)")
            self.assertEqual(status, 200)
            self.assertFalse(os.path.exists("/tmp/x.db") and os.path.getmtime("/tmp/x.db") > time.time() - 60)


class ErrorCodes(unittest.TestCase):
    """Every documented error code, with its HTTP status, and the daemon keeps serving."""

    @classmethod
    def setUpClass(cls):
        cls.d = Daemon("--max-items=5", "--max-body-bytes=65536", "--statement-timeout-ms=300",
                       "--busy-timeout-ms=300", "--max-result-rows=10").start()
        cls.d.create("e")
        cls.d.tx("e", [{"statement": "CREATE TABLE t (x)"}])

    @classmethod
    def tearDownClass(cls):
        code = cls.d.stop()
        cls.d.cleanup()
        assert code == 0, code

    def expect(self, answer, status, code):
        got_status, body, raw, headers = answer
        self.assertEqual(got_status, status, raw)
        self.assertEqual(body["error"]["code"], code, raw)
        self.assertIsInstance(body["error"]["message"], str)
        self.assertTrue(body["error"]["message"])
        return body, headers

    def tearDown(self):
        status, body, _, _ = self.d.request("GET", "/api/v1/sqlite/health")
        self.assertEqual(status, 200, "the daemon stopped serving")

    def post(self, path, body):
        return self.d.request("POST", path, body)

    def test_invalid_json(self):
        for body in ["{", "not json", '{"transaction": [}', b"\xff\xfe", "[" * 60000]:
            self.expect(self.post("/api/v1/sqlite/db?db=e", body), 400, "INVALID_JSON")
        self.expect(self.post("/api/v1/sqlite/db?db=e", ""), 400, "INVALID_JSON")

    def test_invalid_request(self):
        for body in [{}, {"transaction": "SELECT 1"}, {"transaction": []}, {"transaction": [42]},
                     {"transaction": [{"query": 1}]}, {"transaction": [{"sql": "SELECT 1"}]},
                     {"transaction": [{"query": "SELECT ?", "values": "x"}]},
                     {"transaction": [{"query": "SELECT ?", "values": [1, 2]}]},
                     {"transaction": [{"query": "SELECT ?", "values": [18446744073709551615]}]},
                     {"transaction": [{"query": "SELECT ?", "values": [{"$blob": 5}]}]},
                     {"transaction": [{"query": "   "}]}]:
            self.expect(self.post("/api/v1/sqlite/db?db=e", body), 400, "INVALID_REQUEST")
        body, _ = self.expect(self.post("/api/v1/sqlite/db?db=e", {"transaction": [{"query": "SELECT 1"}, {"query": 2}]}),
                              400, "INVALID_REQUEST")
        self.assertEqual(body["error"]["item"], 1)

    def test_missing_and_invalid_parameters(self):
        self.expect(self.post("/api/v1/sqlite/db", {"transaction": [{"query": "SELECT 1"}]}), 400, "MISSING_PARAMETER")
        self.expect(self.d.request("GET", "/api/v1/sqlite/query?db=e"), 400, "MISSING_PARAMETER")
        self.expect(self.post("/api/v1/sqlite/db/create", None), 400, "MISSING_PARAMETER")
        self.expect(self.post("/api/v1/sqlite/db?db=%zz", {"transaction": [{"query": "SELECT 1"}]}), 400, "INVALID_PARAMETER")
        self.expect(self.post("/api/v1/sqlite/db/create?path=x&init_kv=maybe", None), 400, "INVALID_PARAMETER")

    def test_invalid_base64(self):
        for sql in ["***", "a", "U0VMRUNUIDE=x"]:
            self.expect(self.d.request("GET", "/api/v1/sqlite/query?db=e&sql=" + urllib.parse.quote(sql)), 400, "INVALID_BASE64")

    def test_invalid_db_path(self):
        q = {"transaction": [{"query": "SELECT 1"}]}
        for db in ["", "../etc/passwd", "a/../../b", "/etc/passwd", "/tmp/x.db", "a%00b", "x" * 2000, "a%0Ab"]:
            self.expect(self.post("/api/v1/sqlite/db?db=" + db, q), 400, "INVALID_DB_PATH")
        self.expect(self.post("/api/v1/sqlite/db/create?path=../escape", None), 400, "INVALID_DB_PATH")
        os.symlink("/etc", os.path.join(self.d.store, "etc-link"))
        self.expect(self.post("/api/v1/sqlite/db?db=etc-link/passwd.db", q), 400, "INVALID_DB_PATH")

    def test_too_many_items(self):
        body, _ = self.expect(self.post("/api/v1/sqlite/db?db=e", {"transaction": [{"query": "SELECT 1"}] * 6}), 400, "TOO_MANY_ITEMS")
        status, _, _, _ = self.post("/api/v1/sqlite/db?db=e", {"transaction": [{"query": "SELECT 1"}] * 5})
        self.assertEqual(status, 200)

    def test_sql_error(self):
        body, _ = self.expect(self.post("/api/v1/sqlite/db?db=e", {"transaction": [{"statement": "INSERT INTO nope VALUES (1)"}]}), 400, "SQL_ERROR")
        self.assertIn("no such table", body["error"]["message"])
        self.expect(self.post("/api/v1/sqlite/db?db=e", {"transaction": [{"statement": "SELEC 1"}]}), 400, "SQL_ERROR")
        self.expect(self.post("/api/v1/sqlite/db?db=e", {"transaction": [{"statement": "COMMIT"}]}), 403, "SQL_NOT_ALLOWED")
        with open(os.path.join(self.d.store, "garbage.db"), "wb") as f:
            f.write(b"this is not a database" * 100)
        self.expect(self.post("/api/v1/sqlite/db?db=garbage", {"transaction": [{"query": "SELECT count(*) FROM sqlite_master"}]}), 400, "SQL_ERROR")

    def test_read_only_violation(self):
        self.expect(self.d.query("e", "DELETE FROM t"), 403, "READ_ONLY_VIOLATION")

    def test_database_not_found(self):
        self.expect(self.post("/api/v1/sqlite/db?db=nothere", {"transaction": [{"query": "SELECT 1"}]}), 404, "DATABASE_NOT_FOUND")
        self.expect(self.d.query("nothere", "SELECT 1"), 404, "DATABASE_NOT_FOUND")
        self.assertFalse(os.path.exists(os.path.join(self.d.store, "nothere.db")))

    def test_not_found_and_method_not_allowed(self):
        self.expect(self.d.request("GET", "/api/v1/sqlite/nope"), 404, "NOT_FOUND")
        self.expect(self.d.request("GET", "/API/V1/SQLITE/HEALTH"), 404, "NOT_FOUND")
        _, headers = self.expect(self.d.request("GET", "/api/v1/sqlite/db?db=e"), 405, "METHOD_NOT_ALLOWED")
        self.assertEqual(headers["Allow"], "POST")
        _, headers = self.expect(self.d.request("DELETE", "/api/v1/sqlite/query"), 405, "METHOD_NOT_ALLOWED")
        self.assertEqual(headers["Allow"], "GET")

    def test_query_timeout(self):
        forever = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
        self.expect(self.d.query("e", forever), 408, "QUERY_TIMEOUT")
        self.expect(self.post("/api/v1/sqlite/db?db=e", {"transaction": [{"query": forever}]}), 408, "QUERY_TIMEOUT")

    def test_payload_too_large(self):
        big = {"transaction": [{"query": "SELECT ?", "values": ["x" * 70000]}]}
        self.expect(self.post("/api/v1/sqlite/db?db=e", big), 413, "PAYLOAD_TOO_LARGE")

    def test_result_too_large(self):
        many = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 11) SELECT x FROM c"
        self.expect(self.d.query("e", many), 413, "RESULT_TOO_LARGE")

    def test_database_busy(self):
        # Another process (here: this test, natively on the backing file) holds the write lock
        # longer than the daemon's busy timeout.
        con = sqlite3.connect(os.path.join(self.d.store, "e.db"), isolation_level=None)
        con.execute("BEGIN EXCLUSIVE")
        try:
            self.expect(self.post("/api/v1/sqlite/db?db=e", {"transaction": [{"statement": "INSERT INTO t VALUES (1)"}]}), 503, "DATABASE_BUSY")
        finally:
            con.execute("ROLLBACK")
            con.close()
        status, _, _, _ = self.post("/api/v1/sqlite/db?db=e", {"transaction": [{"statement": "INSERT INTO t VALUES (1)"}]})
        self.assertEqual(status, 200)

    def test_service_timeout(self):
        # Requests queue behind each other on one database; one that waits longer than the
        # request timeout (statement + busy timeout + 2 s = 2.6 s) is answered 504.
        forever = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
        d = self.d
        d.create("slow")
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(lambda _: d.query("slow", forever), range(12)))
        codes = sorted({a[1]["error"]["code"] for a in answers})
        self.assertIn("SERVICE_TIMEOUT", codes)
        for a in answers:
            if a[1]["error"]["code"] == "SERVICE_TIMEOUT":
                self.assertEqual(a[0], 504)

    def test_internal_error(self):
        # The store is fine, but a file stands where the database's directory must be created.
        open(os.path.join(self.d.store, "afile"), "w").close()
        self.expect(self.post("/api/v1/sqlite/db/create?path=afile/db", None), 500, "INTERNAL_ERROR")


class AbusiveInput(unittest.TestCase):
    def test_huge_and_broken_requests_leave_the_daemon_serving(self):
        with Daemon("--max-body-bytes=1048576") as d:
            d.create("abuse")
            # Far beyond RESTinio's hard limit: the connection is closed or answered 413.
            s = socket.create_connection(("127.0.0.1", d.port))
            s.sendall(b"POST /api/v1/sqlite/db?db=abuse HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n")
            s.settimeout(10)
            try:
                reply = s.recv(4096)
            except (ConnectionResetError, socket.timeout):
                reply = b""
            self.assertTrue(reply == b"" or b" 413 " in reply.split(b"\r\n")[0], reply[:100])
            s.close()
            # Garbage on the wire.
            s = socket.create_connection(("127.0.0.1", d.port))
            s.sendall(b"\x00\x01\x02 garbage garbage\r\n\r\n")
            s.settimeout(10)
            try:
                s.recv(4096)
            except (ConnectionResetError, socket.timeout):
                pass
            s.close()
            # Just above our own limit: a clean 413.
            status, body, _, _ = d.request("POST", "/api/v1/sqlite/db?db=abuse", "x" * (1048576 + 1))
            self.assertEqual((status, body["error"]["code"]), (413, "PAYLOAD_TOO_LARGE"))
            # Deep nesting, wrong types, invalid UTF-8, NUL in SQL.
            for body in ["[" * 500000 + "]" * 500000, '{"transaction": [{"query": "SELECT 1", "values": [' + "[" * 10000 + "]" * 10000 + "]}]}",
                         b'{"transaction": [{"query": "SELECT \xc3\x28"}]}', '{"transaction": [{"query": "SELECT 1\\u0000; DROP TABLE x"}]}']:
                status, body_json, raw, _ = d.request("POST", "/api/v1/sqlite/db?db=abuse", body)
                self.assertEqual(status, 400, raw[:200])
            status, body, _, _ = d.request("GET", "/api/v1/sqlite/health")
            self.assertEqual(status, 200)
            status, body, _, _ = d.tx("abuse", [{"query": "SELECT 1 AS one"}])
            self.assertEqual(rows(body), [{"one": 1}])


class AbsolutePaths(unittest.TestCase):
    def test_any_absolute_path_mode(self):
        with Daemon("--allow-any-absolute-db-path") as d:
            outside = os.path.join(d.tmp, "outside", "abs.db")
            os.makedirs(os.path.dirname(outside))
            status, body, _, _ = d.create(outside)
            self.assertEqual(status, 200, body)
            self.assertTrue(os.path.exists(outside))
            d.tx(outside, [{"statement": "CREATE TABLE t (x)"}, {"statement": "INSERT INTO t VALUES (5)"}])
            status, body, _, _ = d.query(outside, "SELECT x FROM t")
            self.assertEqual(rows(body), [{"x": 5}])
            # A path inside the store reaches the same database as its bare name.
            d.create("same")
            d.tx("same", [{"statement": "CREATE TABLE t (x)"}, {"statement": "INSERT INTO t VALUES (7)"}])
            status, body, _, _ = d.query(os.path.join(d.store, "same.db"), "SELECT x FROM t")
            self.assertEqual(rows(body), [{"x": 7}])
            status, body, _, _ = d.request("GET", "/api/v1/sqlite/health/cache")
            self.assertEqual(sum(1 for db in body["databases"] if db["path"].endswith("/same.db")), 1)
            # Traversal stays refused in this mode too.
            status, body, _, _ = d.tx("/tmp/../etc/x.db", [{"query": "SELECT 1"}])
            self.assertEqual(body["error"]["code"], "INVALID_DB_PATH")


class Configuration(unittest.TestCase):
    def test_config_file_and_help(self):
        import subprocess
        from harness import BIN
        out = subprocess.run([BIN, "--help"], capture_output=True, text=True, timeout=10)
        self.assertEqual(out.returncode, 0)
        for opt in ("--store", "--mount", "--http", "--allow-any-absolute-db-path", "--log-level", "--config"):
            self.assertIn(opt, out.stdout)
        bad = subprocess.run([BIN, "--no-such-option=1"], capture_output=True, text=True, timeout=10)
        self.assertEqual(bad.returncode, 2)
        self.assertIn("unknown option", bad.stderr)
        d = Daemon()
        try:
            conf = os.path.join(d.tmp, "litedrive.conf")
            with open(conf, "w") as f:
                f.write("# test config\nmax-items = 2\nallow-any-absolute-db-path = true\n")
            d.args = [f"--config={conf}"]
            d.start()
            d.create("c")
            status, body, _, _ = d.tx("c", [{"query": "SELECT 1"}] * 3)
            self.assertEqual(body["error"]["code"], "TOO_MANY_ITEMS")
            status, body, _, _ = d.create(os.path.join(d.tmp, "abs.db"))
            self.assertEqual(status, 200, body)
            self.assertEqual(d.stop(), 0)
        finally:
            d.cleanup()


if __name__ == "__main__":
    unittest.main()
