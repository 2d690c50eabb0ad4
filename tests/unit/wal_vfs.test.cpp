#define CAF_SUITE wal_vfs
#include <caf/test/unit_test.hpp>

#include <fstream>
#include <iterator>
#include <string>

#include <sqlite3.h>

#include "actors/wal_vfs.hpp"
#include "temp_dir.hpp"

using namespace litedrive;

// The shim holds a WAL handle's writes and writes them out at the commit. These tests check what
// is on the file system (not in SQLite's cache) at the moments that matter: each test copies the
// database and its WAL while the writing connection is still open, as a crash would leave them,
// and opens the copy with SQLite's own VFS, which recovers from the WAL alone.
// synchronous=NORMAL: no xSync at the commit, so only the shim's own write at the commit frame
// puts the commit on file.

namespace {

struct fixture {
  test::temp_dir dir;
  std::string path = dir.path + "/t.db";
  sqlite3* db = nullptr;

  fixture() {
    CAF_REQUIRE(wal_vfs::install(1u << 20)); // 1 MiB held at most: big commits take several
    CAF_REQUIRE_EQUAL(sqlite3_open_v2(path.c_str(), &db,
                                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, wal_vfs::name),
                      SQLITE_OK);
    exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0;"
             "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB NOT NULL)");
  }

  ~fixture() {
    sqlite3_close_v2(db);
  }

  static void exec(sqlite3* c, const std::string& sql) {
    char* msg = nullptr;
    int rc = sqlite3_exec(c, sql.c_str(), nullptr, nullptr, &msg);
    CAF_CHECK_EQUAL(rc, SQLITE_OK);
    if (msg) {
      CAF_MESSAGE("sqlite: " << msg);
      sqlite3_free(msg);
    }
  }

  static int64_t number(sqlite3* c, const std::string& sql) {
    sqlite3_stmt* s = nullptr;
    CAF_REQUIRE_EQUAL(sqlite3_prepare_v2(c, sql.c_str(), -1, &s, nullptr), SQLITE_OK);
    int64_t out = -1;
    if (sqlite3_step(s) == SQLITE_ROW) out = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return out;
  }

  static std::string text(sqlite3* c, const std::string& sql) {
    sqlite3_stmt* s = nullptr;
    CAF_REQUIRE_EQUAL(sqlite3_prepare_v2(c, sql.c_str(), -1, &s, nullptr), SQLITE_OK);
    std::string out;
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0))
      out = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return out;
  }

  /// `n` rows of `size` random bytes each, in one transaction.
  void insert(int n, int size) {
    exec(db, "BEGIN");
    exec(db, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < "
               + std::to_string(n) + ") INSERT INTO t(v) SELECT randomblob(" + std::to_string(size)
               + ") FROM c");
    exec(db, "COMMIT");
  }

  static void copy(const std::string& from, const std::string& to) {
    std::ifstream in(from, std::ios::binary);
    std::ofstream out(to, std::ios::binary | std::ios::trunc);
    if (in) out << in.rdbuf();
  }

  /// Copies the database and its WAL as they are on the file system now, and opens the copy
  /// with SQLite's default VFS.
  sqlite3* crash_copy() {
    auto to = dir.path + "/copy" + std::to_string(++copies) + ".db";
    copy(path, to);
    copy(path + "-wal", to + "-wal");
    sqlite3* c = nullptr;
    CAF_REQUIRE_EQUAL(sqlite3_open_v2(to.c_str(), &c, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK);
    return c;
  }

  int copies = 0;
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(wal_vfs_tests, fixture)

CAF_TEST(a committed transaction is on file when COMMIT returns) {
  insert(10, 100);
  auto* c = crash_copy();
  CAF_CHECK_EQUAL(number(c, "SELECT count(*) FROM t"), 10);
  CAF_CHECK_EQUAL(text(c, "PRAGMA integrity_check"), "ok");
  sqlite3_close_v2(c);
}

CAF_TEST(commits larger than one write and than the buffer arrive whole) {
  // ~200 KiB (more than one write of the unix VFS) and ~3 MiB (more than the 1 MiB held).
  insert(50, 4000);
  insert(750, 4000);
  auto* c = crash_copy();
  CAF_CHECK_EQUAL(number(c, "SELECT count(*) FROM t"), 800);
  CAF_CHECK_EQUAL(number(c, "SELECT sum(length(v)) FROM t"), 800 * 4000);
  CAF_CHECK_EQUAL(text(c, "PRAGMA integrity_check"), "ok");
  sqlite3_close_v2(c);
}

CAF_TEST(another connection sees each commit at once) {
  sqlite3* reader = nullptr;
  CAF_REQUIRE_EQUAL(sqlite3_open_v2(path.c_str(), &reader, SQLITE_OPEN_READONLY, nullptr),
                    SQLITE_OK);
  for (int i = 1; i <= 20; ++i) {
    insert(i, 3000);
    CAF_CHECK_EQUAL(number(reader, "SELECT count(*) FROM t"), i * (i + 1) / 2);
  }
  sqlite3_close_v2(reader);
}

CAF_TEST(a rolled back transaction leaves nothing and the next commit is whole) {
  exec(db, "BEGIN");
  exec(db, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100) "
                 "INSERT INTO t(v) SELECT randomblob(3000) FROM c");
  exec(db, "ROLLBACK");
  exec(db, "BEGIN");
  exec(db, "INSERT INTO t(v) VALUES (x'01')");
  exec(db, "SAVEPOINT s");
  exec(db, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100) "
                 "INSERT INTO t(v) SELECT randomblob(3000) FROM c");
  exec(db, "ROLLBACK TO s");
  exec(db, "RELEASE s");
  exec(db, "INSERT INTO t(v) VALUES (x'02')");
  exec(db, "COMMIT");
  auto* c = crash_copy();
  CAF_CHECK_EQUAL(number(c, "SELECT count(*) FROM t"), 2);
  CAF_CHECK_EQUAL(text(c, "SELECT group_concat(hex(v), '') FROM t"), "0102");
  CAF_CHECK_EQUAL(text(c, "PRAGMA integrity_check"), "ok");
  sqlite3_close_v2(c);
}

CAF_TEST(pages that spill to the WAL mid-transaction read back and commit) {
  // A 10-page cache makes SQLite write uncommitted frames and read them again before COMMIT.
  exec(db, "PRAGMA cache_size=10");
  exec(db, "BEGIN");
  exec(db, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300) "
                 "INSERT INTO t(v) SELECT randomblob(2000) FROM c");
  exec(db, "UPDATE t SET v = zeroblob(2000) WHERE id % 2 = 0");
  CAF_CHECK_EQUAL(number(db, "SELECT count(*) FROM t WHERE v = zeroblob(2000)"), 150);
  exec(db, "COMMIT");
  auto* c = crash_copy();
  CAF_CHECK_EQUAL(number(c, "SELECT count(*) FROM t"), 300);
  CAF_CHECK_EQUAL(number(c, "SELECT count(*) FROM t WHERE v = zeroblob(2000)"), 150);
  CAF_CHECK_EQUAL(text(c, "PRAGMA integrity_check"), "ok");
  sqlite3_close_v2(c);
}

CAF_TEST(checkpoints and a restarted WAL keep every commit) {
  insert(100, 3000);
  exec(db, "PRAGMA wal_checkpoint(TRUNCATE)");
  insert(5, 3000); // restarts the WAL in an empty file
  exec(db, "PRAGMA wal_checkpoint(PASSIVE)");
  insert(1, 10); // restarts it over the old frames: one small commit where bigger ones were
  auto* c = crash_copy();
  CAF_CHECK_EQUAL(number(c, "SELECT count(*) FROM t"), 106);
  CAF_CHECK_EQUAL(text(c, "PRAGMA integrity_check"), "ok");
  sqlite3_close_v2(c);
  insert(50, 3000);
  exec(db, "PRAGMA wal_checkpoint(PASSIVE)");
  insert(1, 10);
  c = crash_copy();
  CAF_CHECK_EQUAL(number(c, "SELECT count(*) FROM t"), 157);
  CAF_CHECK_EQUAL(text(c, "PRAGMA integrity_check"), "ok");
  sqlite3_close_v2(c);
}

CAF_TEST(files that are not WALs pass through) {
  exec(db, "PRAGMA journal_mode=DELETE");
  CAF_CHECK_EQUAL(text(db, "PRAGMA journal_mode"), "delete");
  insert(20, 3000);
  sqlite3* c = nullptr;
  CAF_REQUIRE_EQUAL(sqlite3_open_v2(path.c_str(), &c, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  CAF_CHECK_EQUAL(number(c, "SELECT count(*) FROM t"), 20);
  sqlite3_close_v2(c);
}

CAF_TEST_FIXTURE_SCOPE_END()
