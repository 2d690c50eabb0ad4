#pragma once
// The query history: every SQL transaction and read-only query received over HTTP, kept in a
// SQLite file of litedrive's own (STATE/query_history.db), so it survives restarts. Plain C++;
// the query_history actor (detached: it blocks on SQLite) owns one.

#include <cstdint>
#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "schema/query_types.hpp"

struct sqlite3;

namespace litedrive {



class query_log {
public:
  static constexpr size_t max_sql_bytes = max_query_sql_bytes;

  query_log(std::string path, int64_t max_rows);
  ~query_log();
  query_log(const query_log&) = delete;
  query_log& operator=(const query_log&) = delete;

  /// Appends records in one transaction and trims to max_rows (oldest first).
  caf::error append(const std::vector<query_record>& records);

  /// Newest first. `status`: "" (all), "ok", "error" (any failure) or one error code.
  caf::expected<std::string> list(const std::string& db, const std::string& status, int64_t limit);
  caf::expected<std::string> clear();
  caf::expected<std::string> remove(int64_t index);
  caf::expected<std::string> stats();

private:
  caf::error open();
  caf::error exec(const char* sql);

  std::string path_;
  int64_t max_rows_;
  sqlite3* db_ = nullptr;
};

} // namespace litedrive
