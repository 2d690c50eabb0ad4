"""The query history (issue 5): every SQL request over HTTP is recorded, persistently."""
import base64
import time
import unittest

from harness import Daemon


class QueryHistory(unittest.TestCase):
    def test_recording_filtering_deletion_stats_and_restart(self):
        d = Daemon("--query-history-max=50")
        try:
            d.start()
            d.create("qa")
            d.create("qb")
            d.tx("qa", [{"statement": "CREATE TABLE t (x)"}])
            d.tx("qa", [{"statement": "INSERT INTO t VALUES (?), (?)", "values": [1, 2]}])
            d.tx("qa", [{"statement": "INSERT INTO nope VALUES (1)"}])          # fails
            d.query("qa", "SELECT x FROM t")
            d.tx("qb", [{"query": "SELECT 1 AS one"}])

            def history(**params):
                q = "&".join(f"{k}={v}" for k, v in params.items())
                status, body, _, _ = d.request("GET", "/api/v1/sqlite/history?" + q)
                self.assertEqual(status, 200, body)
                return body["entries"]

            deadline = time.time() + 5
            while time.time() < deadline and len(history()) < 5:
                time.sleep(0.05)
            entries = history()
            self.assertEqual([e["db"] for e in entries], ["qb", "qa", "qa", "qa", "qa"])   # newest first
            self.assertEqual([e["status"] for e in entries], ["ok", "ok", "SQL_ERROR", "ok", "ok"])
            insert = entries[3]
            self.assertEqual((insert["sql"], insert["params"], insert["rows_changed"]),
                             ("INSERT INTO t VALUES (?), (?)", 2, 2))
            self.assertEqual(entries[1]["rows_returned"], 2)                                 # the query endpoint
            self.assertGreater(insert["duration_ms"], 0)
            self.assertEqual(len(history(db="qa")), 4)
            self.assertEqual([e["status"] for e in history(status="error")], ["SQL_ERROR"])
            self.assertEqual(len(history(limit=2)), 2)
            stats = d.request("GET", "/api/v1/sqlite/history/stats")[1]
            self.assertEqual((stats["total"], stats["errors"]), (5, 1))
            self.assertAlmostEqual(stats["error_rate"], 0.2)
            self.assertGreaterEqual(stats["latency_ms"]["p99"], stats["latency_ms"]["p50"])
            self.assertEqual(len(stats["slowest"]), 5)
            self.assertEqual(stats["most_frequent"][0]["count"], 1)
            self.assertEqual(sorted(stats["slowest"][0]), ["db", "duration_ms", "index", "sql"])
            self.assertEqual(sorted(stats["most_frequent"][0]), ["avg_duration_ms", "count", "sql"])
            # Deleting one entry, then a restart keeps the rest.
            status, body, _, _ = d.request("DELETE", f"/api/v1/sqlite/history/{insert['index']}")
            self.assertEqual((status, body["deleted"]), (200, True))
            self.assertEqual(d.request("DELETE", f"/api/v1/sqlite/history/{insert['index']}")[1]["deleted"], False)
            self.assertEqual(d.stop(), 0)
            d.start()
            self.assertEqual(len(history()), 4)
            # Bounded: at most --query-history-max entries, the oldest go first.
            for i in range(60):
                d.tx("qb", [{"query": f"SELECT {i}"}])
            deadline = time.time() + 5
            while time.time() < deadline and history(limit=1)[0]["sql"] != "SELECT 59":
                time.sleep(0.05)
            self.assertEqual(len(history(limit=1000)), 50)
            self.assertEqual(d.request("DELETE", "/api/v1/sqlite/history")[1]["deleted"], 50)
            self.assertEqual(history(), [])
            self.assertEqual(d.request("PUT", "/api/v1/sqlite/history")[0], 405)
            self.assertEqual(d.request("GET", "/api/v1/sqlite/history/abc")[0], 404)
            self.assertEqual(d.stop(), 0)
        finally:
            d.cleanup()


if __name__ == "__main__":
    unittest.main()
