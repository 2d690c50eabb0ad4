#pragma once
// The SQLite side of one database: its connections and the three things HTTP asks of them.
// Plain C++ with no actor in sight, so it is unit-testable; the SQLite worker actor owns one and
// calls it from a thread where blocking is allowed.
//
// Connections: one read-write connection for transactions, opened on first use, and one
// read-only connection (SQLITE_OPEN_READONLY) for the shareable query endpoint, so a "read-only"
// request cannot write even if every other check were wrong.

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "actors/kv_engine.hpp"
#include "schema/settings.hpp"
#include "schema/sql_types.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace litedrive {

class sql_engine {
public:
  sql_engine(db_location loc, settings s);
  ~sql_engine();

  sql_engine(const sql_engine&) = delete;
  sql_engine& operator=(const sql_engine&) = delete;

  /// Group commit: runs every write of `group` (SQL transactions, KV mutations) inside ONE
  /// SQLite transaction (BEGIN IMMEDIATE when anything may write), each in its own savepoint,
  /// then commits once. A failing operation is rolled back to its savepoint and fails alone
  /// (its error names the failing item); the others commit. If SQLite aborts the whole
  /// transaction (interrupt, I/O error), the operations that had succeeded so far run again in
  /// a fresh one. Then the KV reads of the group run in one read transaction, so they see the
  /// group's committed writes.
  std::vector<op_outcome> execute_group(const std::vector<db_op>& group);

  /// One transaction on its own (a group of one).
  caf::expected<std::string> execute(const sql_txn& txn);

  /// Runs exactly one statement on the read-only connection. Writes, ATTACH, transaction control
  /// and state-changing pragmas are refused by the authorizer and sqlite3_stmt_readonly().
  caf::expected<std::string> query(const std::string& sql);

  /// Creates the file (and missing directories inside the store) if needed; with `init_kv` also
  /// the default KV table; with a `journal_mode` (delete, truncate, persist, wal) sets it.
  /// Answers {"created":bool,"path":...,"kv":bool,"journal_mode":...}.
  caf::expected<std::string> create(bool init_kv, const std::string& journal_mode = {});

  const db_location& location() const { return loc_; }

  /// Closes both connections (they reopen on next use).
  void close();

  /// Closes the connections when the file they have open is no longer at the database's path
  /// (deleted, renamed, replaced), so that the next request opens the file that is there now.
  void close_if_moved();

  /// Which authorizer policy is in force (used by the C callback).
  enum class mode { internal, items, read_only };

private:
  caf::error open_rw(bool create);
  caf::error open_ro();
  caf::error configure(sqlite3* db);
  caf::error validate(const sql_txn& txn) const;
  caf::error run_txn(const sql_txn& txn, std::string& out);
  caf::error run_write(const db_op& op, op_outcome& out);
  /// Adds waiting history rows to the by-key history (best effort, inside the group commit).
  void index_history_batches();
  void run_reads(const std::vector<db_op>& group, const std::vector<size_t>& reads,
                 std::vector<op_outcome>& outcomes);
  caf::error run_item(const sql_item& item, int32_t index, std::string& out);
  caf::error step_into(sqlite3_stmt* stmt, bool collect, int32_t index, std::string& out,
                       size_t& rows);
  caf::error sqlite_failure(sqlite3* db, int rc, int32_t index, const char* what);
  caf::error exec_internal(const char* sql);
  /// exec_internal for litedrive's own transaction control (BEGIN, SAVEPOINT, RELEASE, ...),
  /// which runs several times per group: prepared once per connection, not parsed per call.
  caf::error exec_control(const char* sql);
  /// The error of a failed internal statement: busy or locked → database_busy, else sql_error.
  caf::error internal_failure(int rc, const std::string& text) const;

  friend int progress_callback(void* self);
  friend int authorizer_callback(void*, int, const char*, const char*, const char*, const char*);

  db_location loc_;
  settings settings_;
  sqlite3* rw_ = nullptr;
  sqlite3* ro_ = nullptr;
  kv_engine kv_; ///< the KV store, on the read-write connection
  std::map<std::string, sqlite3_stmt*, std::less<>> control_; ///< exec_control's statements
  mode mode_ = mode::internal;
  bool denied_write_ = false; ///< the read-only authorizer refused something
  std::string denied_;        ///< what the SQL policy refused in the current item, if anything
  std::chrono::steady_clock::time_point deadline_;
  bool timed_out_ = false;
  size_t response_bytes_ = 0;
};

} // namespace litedrive
