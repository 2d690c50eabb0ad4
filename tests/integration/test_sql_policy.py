"""What a client's SQL may do (issue 17): an allow-list of functions and pragmas, hardened
connections, and limits on what one statement may allocate. Every refusal is a clear JSON error,
and the daemon keeps serving."""
import base64
import unittest
import urllib.parse

from harness import SharedDaemon, rows


class SqlPolicy(SharedDaemon, unittest.TestCase):
    daemon_args = ("--sql-max-value-bytes=1000000", "--max-result-bytes=2000000")

    @classmethod
    def prepare(cls, d):
        d.create("p", init_kv=True)
        status, body, _, _ = d.tx("p", [{"statement": "CREATE TABLE t (x)"},
                                        {"statement": "INSERT INTO t VALUES (1)"}])
        assert status == 200, body

    def tx(self, sql):
        status, body, _, _ = self.d.tx("p", [{"statement": sql}])
        return status, body

    def query(self, sql):
        status, body, _, _ = self.d.query("p", sql)
        return status, body

    def alive(self):
        status, body, _, _ = self.d.query("p", "SELECT count(*) AS n FROM t")
        self.assertEqual((status, rows(body)), (200, [{"n": 1}]))

    def refused(self, answer, code="SQL_NOT_ALLOWED", status=403):
        self.assertEqual((answer[0], answer[1]["error"]["code"]), (status, code), answer)

    def test_fts3_tokenizer_is_refused_everywhere(self):
        # It returns a code pointer, and its two-argument form makes the daemon call any address.
        for sql in ["SELECT fts3_tokenizer('simple')",
                    "SELECT fts3_tokenizer('evil', x'4141414141414141')"]:
            self.refused(self.tx(sql))
            self.refused(self.query(sql))
        status, body = self.tx("CREATE VIRTUAL TABLE f USING fts3(x, tokenize=simple)")
        self.assertEqual(status, 200, body)  # FTS itself works
        status, body = self.tx("INSERT INTO f VALUES ('hello world')")
        self.assertEqual(status, 200, body)
        status, body = self.query("SELECT snippet(f) AS s FROM f WHERE f MATCH 'hello'")
        self.assertEqual(status, 200, body)
        self.alive()

    def test_other_dangerous_functions_are_refused(self):
        for sql in ["SELECT load_extension('/tmp/x.so')", "SELECT fts5(NULL)",
                    "SELECT no_such_function_at_all(1)"]:
            status, body = self.tx(sql)
            self.assertIn(status, (400, 403), body)
        self.refused(self.tx("SELECT load_extension('/tmp/x.so')"))
        self.refused(self.tx("SELECT fts5(NULL)"))
        self.alive()

    def test_ordinary_functions_work(self):
        status, body = self.query(
            "SELECT abs(-1) AS a, upper('x') AS u, json_extract('{\"k\":2}', '$.k') AS j, "
            "'{\"k\":3}' ->> '$.k' AS arrow, date('2020-01-02') AS d, sqrt(4.0) AS r, "
            "length(randomblob(10)) AS b, sqlite_version() IS NOT NULL AS v, "
            "(SELECT group_concat(x) FROM t) AS g")
        self.assertEqual(status, 200, body)
        self.assertEqual(rows(body), [{"a": 1, "u": "X", "j": 2, "arrow": 3, "d": "2020-01-02",
                                       "r": 2.0, "b": 10, "v": 1, "g": "1"}])
        status, body = self.tx("SELECT row_number() OVER (ORDER BY x) AS n FROM t")
        self.assertEqual(status, 200, body)

    def test_pragmas_that_would_change_the_database_for_everyone_are_refused(self):
        for pragma in ["query_only = 1", "journal_mode = OFF", "journal_mode = WAL",
                       "locking_mode = EXCLUSIVE", "writable_schema = 1", "synchronous = OFF",
                       "foreign_keys = ON", "recursive_triggers = 1", "cache_size = 1000000",
                       "mmap_size = 1000000000", "temp_store = MEMORY", "trusted_schema = 1",
                       "busy_timeout = 0", "schema_version = 7", "page_size = 512",
                       "max_page_count = 1", "secure_delete = 1", "hard_heap_limit = 0"]:
            self.refused(self.tx("PRAGMA " + pragma))
        # Still a normal database for everybody afterwards.
        status, body = self.tx("INSERT INTO t VALUES (2)")
        self.assertEqual(status, 200, body)
        status, body = self.tx("DELETE FROM t WHERE x = 2")
        self.assertEqual(status, 200, body)
        self.alive()

    def test_pragmas_that_read_or_store_application_values_work(self):
        for sql in ["PRAGMA user_version = 3", "PRAGMA application_id = 42", "PRAGMA optimize",
                    "PRAGMA journal_mode", "PRAGMA table_info(t)", "PRAGMA integrity_check",
                    "PRAGMA foreign_keys", "PRAGMA page_size"]:
            status, body = self.tx(sql)
            self.assertEqual(status, 200, (sql, body))
        status, body = self.query("PRAGMA user_version")
        self.assertEqual(rows(body), [{"user_version": 3}])
        # The read-only endpoint still refuses a setting as a write.
        self.refused(self.query("PRAGMA user_version = 5"), "READ_ONLY_VIOLATION")

    def test_attach_is_refused(self):
        self.refused(self.tx("ATTACH DATABASE '/tmp/litedrive-attach.db' AS x"))
        self.refused(self.query("ATTACH DATABASE '/tmp/litedrive-attach.db' AS x"), "READ_ONLY_VIOLATION")

    def test_a_huge_value_fails_at_once_instead_of_taking_the_memory(self):
        # Above sql-max-value-bytes (1 MB here): SQLite refuses to make it.
        for answer in [self.query("SELECT randomblob(1000000000)"),
                       self.query("SELECT length(zeroblob(1000000000))"),
                       self.tx("SELECT randomblob(1000000000)")]:
            self.assertEqual(answer[0], 400, answer)
            self.assertEqual(answer[1]["error"]["code"], "SQL_ERROR")
            self.assertIn("too big", answer[1]["error"]["message"])
        # Below it, fine.
        status, body = self.query("SELECT length(randomblob(100000)) AS n")
        self.assertEqual(rows(body), [{"n": 100000}])
        self.alive()

    def test_a_result_too_large_stops_while_rows_are_produced(self):
        # 5,000,000 rows of 16 bytes would be ~100 MB of JSON: cut at max-result-bytes (2 MB).
        answer = self.query("WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c "
                            "WHERE i < 5000000) SELECT hex(randomblob(8)) AS h FROM c")
        self.refused(answer, "RESULT_TOO_LARGE", 413)
        self.alive()

    def test_defensive_mode_keeps_the_schema_safe(self):
        # Even were writable_schema reachable, defensive mode refuses writes to sqlite_master.
        status, body = self.tx("UPDATE sqlite_master SET sql = 'garbage' WHERE name = 't'")
        self.assertIn(status, (400, 403), body)
        self.alive()


if __name__ == "__main__":
    unittest.main()
