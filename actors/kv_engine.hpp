#pragma once
// The key-value store inside a SQLite database: plain C++ over one connection, run by the SQLite
// worker inside the transactions the group commit opens (writes) or the read transaction after
// it (reads). Unit-testable without actors.
//
// Every mutation - set, partial set, delete, incr/decr, push, pop, remove, batch items, TTL
// expiry - ends in apply(), the one place that writes a key (and, with time travel, records its
// history).

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>

#include <caf/expected.hpp>

#include "schema/kv_types.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace litedrive {

class kv_engine {
public:
  kv_engine() = default;
  ~kv_engine();
  kv_engine(const kv_engine&) = delete;
  kv_engine& operator=(const kv_engine&) = delete;

  /// Uses `db` from now on (nullptr: let go of it). Prepared statements are per connection.
  void attach(sqlite3* db);

  /// Runs one request inside the caller's transaction. `now` is Unix time in seconds.
  caf::expected<kv_answer> run(const kv_request& req, double now);

  /// Tables this connection has served (the TTL sweep visits them).
  const std::set<std::string>& tables() const { return tables_; }

  /// Forgets which tables exist (after a rollback that may have undone a CREATE TABLE).
  void forget_tables() {
    tables_.clear();
    unindexed_.clear();
  }

  /// Creates the table (and its index and version trigger) if it does not exist.
  caf::error ensure_table(const std::string& table);

  /// The largest accepted batch and list page.
  size_t max_batch = 100;

  /// History retention, enforced by the sweep (0: unlimited).
  int64_t history_max_age_s = 0;
  int64_t history_max_rows = 0;

  /// New history rows go into TABLE_history_keys in batches of this many (schema/kv_store.sql).
  int64_t history_index_batch = 8192;

  /// Adds a batch of new history rows to the by-key table of every table that has a batch
  /// waiting; called inside the group commit's transaction, outside every request's savepoint.
  caf::error index_history_batches();

  /// Whether `op` reads a key's history (it then brings the by-key table up to date first, a
  /// write: it runs in the group commit's write transaction).
  static bool reads_history(kv_op op);

private:
  struct current {
    std::string value; ///< JSON text
    int64_t version;
    std::optional<double> expires_at;
  };

  caf::expected<std::optional<current>> load(const std::string& table, const std::string& key,
                                             double now);
  /// What a change is, for its history record.
  struct change {
    const char* operation; ///< set, delete, incr, ...
    bool record = true;    ///< false: ?history=false
    const char* source = "http";
  };

  /// THE write: stores `value` (or deletes the key when it is nullopt) and records the change
  /// with its old and new value in the table's history, in the same transaction. Answers the
  /// new version (0 after a delete).
  caf::expected<int64_t> apply(const std::string& table, const std::string& key,
                               const std::optional<std::string>& value,
                               std::optional<double> expires_at, double now, const change& what);

  caf::expected<kv_answer> get(const kv_request& req, double now);
  caf::expected<kv_answer> list(const kv_request& req, double now);
  caf::expected<kv_answer> batch_get(const kv_request& req, double now);
  caf::expected<kv_answer> set(const kv_request& req, double now);
  caf::expected<kv_answer> del(const kv_request& req, double now);
  caf::expected<kv_answer> batch_set(const kv_request& req, double now);
  caf::expected<kv_answer> batch_del(const kv_request& req, double now);
  caf::expected<kv_answer> incr(const kv_request& req, double now);
  caf::expected<kv_answer> push(const kv_request& req, double now);
  caf::expected<kv_answer> pop(const kv_request& req, double now);
  caf::expected<kv_answer> remove(const kv_request& req, double now);
  caf::expected<kv_answer> sweep(double now);
  caf::expected<kv_answer> history(const kv_request& req);
  /// The value of `key` after op `op_number` (by_op) or at time `ts`; nullopt: it did not exist.
  caf::expected<std::optional<std::string>> value_at(const std::string& table,
                                                     const std::string& key, bool by_op,
                                                     int64_t op_number, double ts, double now);
  caf::expected<kv_answer> diff(const kv_request& req, double now);
  /// Error if `ts` (or `op_number`, when by_op) lies before what the history still holds.
  caf::error check_horizon(const std::string& table, bool by_op, int64_t op_number, double ts);
  /// Adds up to `limit` (< 0: all) of the table's history rows that are not yet in
  /// TABLE_history_keys, oldest first; answers how many.
  caf::expected<int64_t> index_history(const std::string& table, int64_t limit);
  caf::expected<int64_t> trim_history(const std::string& table, double now);
  /// Every key the table holds or has history for, once `req.at_timestamp` is inside the
  /// retained history (table snapshot and table rollback walk them).
  caf::expected<std::vector<std::string>> keys_at(const kv_request& req);
  caf::expected<kv_answer> table_snapshot(const kv_request& req, double now);
  caf::expected<kv_answer> table_rollback(const kv_request& req, double now, bool apply_it);
  caf::expected<kv_answer> value_then(const kv_request& req, double now);
  caf::expected<kv_answer> rollback(const kv_request& req, double now);

  /// A cached prepared statement ({t} in `sql` is replaced by the quoted table name). `sql` must
  /// be a string literal: its address, with the table, finds the statement without building
  /// the text again (three replacements and a hash of the whole text cost ~1 us per call).
  caf::expected<sqlite3_stmt*> stmt(const std::string& table, const char* sql);
  caf::error failure(const char* what);

  sqlite3* db_ = nullptr;
  std::unordered_map<std::string, sqlite3_stmt*> stmts_;  ///< by text: owns the statements
  struct literal_key {
    const char* sql;
    std::string table;
    bool operator==(const literal_key& o) const { return sql == o.sql && table == o.table; }
  };
  struct literal_hash {
    size_t operator()(const literal_key& k) const {
      return std::hash<const void*>{}(k.sql) ^ (std::hash<std::string>{}(k.table) * 31);
    }
  };
  std::unordered_map<literal_key, sqlite3_stmt*, literal_hash> by_literal_;
  std::set<std::string> tables_;
  /// History rows recorded per table since its last batch went into TABLE_history_keys (as far
  /// as this connection knows: a first batch is tried for every table it opens).
  std::unordered_map<std::string, int64_t> unindexed_;
};

/// The KV DDL (schema/kv_store.sql) for `table`.
std::string kv_table_ddl(const std::string& table);

/// Whether `name` is acceptable as a KV table name: [A-Za-z_][A-Za-z0-9_]*, at most 64 bytes,
/// not starting with sqlite_.
bool valid_table_name(const std::string& name);

} // namespace litedrive
