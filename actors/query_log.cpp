#include "actors/query_log.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <cmath>
#include <initializer_list>

#include "schema/errc.hpp"
#include "schema/json_out.hpp"

namespace litedrive {

namespace {

struct stmt_ptr {
  sqlite3_stmt* s = nullptr;
  ~stmt_ptr() { sqlite3_finalize(s); }
};

std::string text(sqlite3_stmt* s, int i) {
  auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
  return p ? std::string{p, static_cast<size_t>(sqlite3_column_bytes(s, i))} : std::string{};
}

/// One column of a result row as a JSON member.
struct json_field {
  enum kind { integer, real, text };
  const char* name;
  kind type;
};

/// Appends the rows of `sql` as JSON objects (comma-separated, no brackets), one member per
/// column in `fields`' order.
void append_rows(sqlite3* db, std::string& out, const char* sql,
                 std::initializer_list<json_field> fields) {
  stmt_ptr q;
  sqlite3_prepare_v2(db, sql, -1, &q.s, nullptr);
  bool first = true;
  while (sqlite3_step(q.s) == SQLITE_ROW) {
    out += first ? "{" : ",{";
    first = false;
    int i = 0;
    for (const auto& f : fields) {
      if (i > 0) out += ',';
      json_out::string(out, f.name);
      out += ':';
      if (f.type == json_field::integer)
        json_out::integer(out, sqlite3_column_int64(q.s, i));
      else if (f.type == json_field::real)
        json_out::real(out, sqlite3_column_double(q.s, i));
      else
        json_out::string(out, text(q.s, i));
      ++i;
    }
    out += '}';
  }
}

constexpr const char* ddl = R"sql(
CREATE TABLE IF NOT EXISTS query_history (
  idx           INTEGER PRIMARY KEY AUTOINCREMENT,
  db            TEXT    NOT NULL,
  sql           TEXT    NOT NULL,
  params        INTEGER NOT NULL,
  duration_ms   REAL    NOT NULL,
  rows_returned INTEGER NOT NULL,
  rows_changed  INTEGER NOT NULL,
  status        TEXT    NOT NULL,
  ts            REAL    NOT NULL
);
CREATE INDEX IF NOT EXISTS query_history_db ON query_history(db, idx);
)sql";

} // namespace

query_log::query_log(std::string path, int64_t max_rows)
    : path_(std::move(path)), max_rows_(max_rows) {}

query_log::~query_log() {
  if (db_ != nullptr) sqlite3_close_v2(db_);
}

caf::error query_log::exec(const char* sql) {
  char* msg = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &msg) == SQLITE_OK) return caf::none;
  std::string m = msg ? msg : "unknown error";
  sqlite3_free(msg);
  return make_error(errc::internal_error, "query history: " + m);
}

caf::error query_log::open() {
  if (db_ != nullptr) return caf::none;
  if (sqlite3_open_v2(path_.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr)
      != SQLITE_OK) {
    std::string m = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close_v2(db_);
    db_ = nullptr;
    return make_error(errc::internal_error, "cannot open the query history " + path_ + ": " + m);
  }
  sqlite3_busy_timeout(db_, 2000);
  exec("PRAGMA journal_mode=WAL");
  exec("PRAGMA synchronous=NORMAL"); // an audit aid, not user data: a crash may lose the last rows
  return exec(ddl);
}

caf::error query_log::append(const std::vector<query_record>& records) {
  if (auto err = open()) return err;
  if (auto err = exec("BEGIN IMMEDIATE")) return err;
  stmt_ptr ins;
  sqlite3_prepare_v2(db_,
                     "INSERT INTO query_history (db, sql, params, duration_ms, rows_returned, "
                     "rows_changed, status, ts) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                     -1, &ins.s, nullptr);
  for (const auto& r : records) {
    auto sql = r.sql.size() > max_sql_bytes ? r.sql.substr(0, max_sql_bytes) : r.sql;
    sqlite3_bind_text(ins.s, 1, r.db.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(ins.s, 2, sql.c_str(), static_cast<int>(sql.size()), SQLITE_TRANSIENT);
    sqlite3_bind_int64(ins.s, 3, r.params);
    sqlite3_bind_double(ins.s, 4, r.duration_ms);
    sqlite3_bind_int64(ins.s, 5, r.rows_returned);
    sqlite3_bind_int64(ins.s, 6, r.rows_changed);
    sqlite3_bind_text(ins.s, 7, r.status.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_double(ins.s, 8, r.timestamp);
    sqlite3_step(ins.s);
    sqlite3_reset(ins.s);
  }
  if (max_rows_ > 0) {
    stmt_ptr trim;
    sqlite3_prepare_v2(db_,
                       "DELETE FROM query_history WHERE idx <= (SELECT max(idx) FROM "
                       "query_history) - ?1",
                       -1, &trim.s, nullptr);
    sqlite3_bind_int64(trim.s, 1, max_rows_);
    sqlite3_step(trim.s);
  }
  return exec("COMMIT");
}

caf::expected<std::string> query_log::list(const std::string& db, const std::string& status,
                                           int64_t limit) {
  if (auto err = open()) return err;
  stmt_ptr q;
  sqlite3_prepare_v2(db_,
                     "SELECT idx, db, sql, params, duration_ms, rows_returned, rows_changed, "
                     "status, ts FROM query_history WHERE (?1 = '' OR db = ?1) AND "
                     "(?2 = '' OR status = ?2 OR (?2 = 'error' AND status <> 'ok')) "
                     "ORDER BY idx DESC LIMIT ?3",
                     -1, &q.s, nullptr);
  sqlite3_bind_text(q.s, 1, db.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(q.s, 2, status.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(q.s, 3, limit);
  std::string out = "{\"entries\":[";
  bool first = true;
  while (sqlite3_step(q.s) == SQLITE_ROW) {
    out += first ? "{" : ",{";
    first = false;
    out += "\"index\":";
    json_out::integer(out, sqlite3_column_int64(q.s, 0));
    out += ",\"db\":";
    json_out::string(out, text(q.s, 1));
    out += ",\"sql\":";
    json_out::string(out, text(q.s, 2));
    out += ",\"params\":";
    json_out::integer(out, sqlite3_column_int64(q.s, 3));
    out += ",\"duration_ms\":";
    json_out::real(out, sqlite3_column_double(q.s, 4));
    out += ",\"rows_returned\":";
    json_out::integer(out, sqlite3_column_int64(q.s, 5));
    out += ",\"rows_changed\":";
    json_out::integer(out, sqlite3_column_int64(q.s, 6));
    out += ",\"status\":";
    json_out::string(out, text(q.s, 7));
    out += ",\"timestamp\":";
    json_out::real(out, sqlite3_column_double(q.s, 8));
    out += '}';
  }
  out += "]}";
  return out;
}

caf::expected<std::string> query_log::clear() {
  if (auto err = open()) return err;
  if (auto err = exec("DELETE FROM query_history")) return err;
  return "{\"deleted\":" + std::to_string(sqlite3_changes(db_)) + "}";
}

caf::expected<std::string> query_log::remove(int64_t index) {
  if (auto err = open()) return err;
  stmt_ptr d;
  sqlite3_prepare_v2(db_, "DELETE FROM query_history WHERE idx = ?1", -1, &d.s, nullptr);
  sqlite3_bind_int64(d.s, 1, index);
  sqlite3_step(d.s);
  return std::string{"{\"deleted\":"} + (sqlite3_changes(db_) > 0 ? "true" : "false") + "}";
}

caf::expected<std::string> query_log::stats() {
  if (auto err = open()) return err;
  std::vector<double> durations;
  int64_t errors = 0;
  {
    stmt_ptr q;
    sqlite3_prepare_v2(db_, "SELECT duration_ms, status <> 'ok' FROM query_history", -1, &q.s,
                       nullptr);
    while (sqlite3_step(q.s) == SQLITE_ROW) {
      durations.push_back(sqlite3_column_double(q.s, 0));
      errors += sqlite3_column_int(q.s, 1);
    }
  }
  std::sort(durations.begin(), durations.end());
  auto pct = [&durations](double p) {
    if (durations.empty()) return 0.0;
    auto i = static_cast<size_t>(std::ceil(p * durations.size())) - 1;
    return durations[std::min(i, durations.size() - 1)];
  };
  std::string out = "{\"total\":";
  json_out::integer(out, static_cast<int64_t>(durations.size()));
  out += ",\"errors\":";
  json_out::integer(out, errors);
  out += ",\"error_rate\":";
  json_out::real(out, durations.empty() ? 0.0 : double(errors) / double(durations.size()));
  out += ",\"latency_ms\":{\"p50\":";
  json_out::real(out, pct(0.50));
  out += ",\"p95\":";
  json_out::real(out, pct(0.95));
  out += ",\"p99\":";
  json_out::real(out, pct(0.99));
  out += ",\"max\":";
  json_out::real(out, durations.empty() ? 0.0 : durations.back());
  out += "},\"slowest\":[";
  append_rows(db_, out,
              "SELECT idx, db, sql, duration_ms FROM query_history "
              "ORDER BY duration_ms DESC LIMIT 5",
              {{"index", json_field::integer},
               {"db", json_field::text},
               {"sql", json_field::text},
               {"duration_ms", json_field::real}});
  out += "],\"most_frequent\":[";
  append_rows(db_, out,
              "SELECT sql, count(*) AS n, avg(duration_ms) FROM query_history "
              "GROUP BY sql ORDER BY n DESC, sql LIMIT 5",
              {{"sql", json_field::text},
               {"count", json_field::integer},
               {"avg_duration_ms", json_field::real}});
  out += "]}";
  return out;
}

} // namespace litedrive
