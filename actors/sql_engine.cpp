#include "actors/sql_engine.hpp"

#include <cstdlib>
#include <sqlite3.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <string_view>

#include <spdlog/spdlog.h>

#include "actors/db_path.hpp"
#include "actors/sql_policy.hpp"
#include "actors/store_files.hpp"
#include "actors/wal_vfs.hpp"
#include "schema/base64.hpp"
#include "schema/errc.hpp"
#include "schema/json_out.hpp"
#include "schema/kv_schema.hpp"

namespace litedrive {

// -- callbacks ----------------------------------------------------------------------------------

/// Interrupts a statement once the request's deadline has passed (checked every 1000 VM steps).
int progress_callback(void* ptr) {
  auto* self = static_cast<sql_engine*>(ptr);
  // litedrive's own BEGIN/COMMIT/ROLLBACK must never be interrupted.
  if (self->mode_ == sql_engine::mode::internal
      || std::chrono::steady_clock::now() < self->deadline_)
    return 0;
  self->timed_out_ = true;
  return 1;
}

int authorizer_callback(void* ptr, int action, const char* a1, const char* a2, const char*,
                        const char*) {
  auto* self = static_cast<sql_engine*>(ptr);
  if (self->mode_ == sql_engine::mode::internal) return SQLITE_OK;
  if (self->mode_ == sql_engine::mode::items) {
    // BEGIN/COMMIT would break the request's own transaction (SAVEPOINT is fine: it nests).
    if (action == SQLITE_TRANSACTION) {
      self->denied_ = "BEGIN, COMMIT and ROLLBACK (a request is one transaction already)";
      return SQLITE_DENY;
    }
    if (action == SQLITE_SAVEPOINT && a2 != nullptr && sqlite3_stricmp(a2, "litedrive_txn") == 0) {
      self->denied_ = "the savepoint litedrive_txn (litedrive's own)";
      return SQLITE_DENY;
    }
  }
  auto who = self->mode_ == sql_engine::mode::read_only ? sql_policy::access::read_only
                                                        : sql_policy::access::items;
  auto v = sql_policy::authorize(who, action, a1, a2);
  if (v.code != SQLITE_OK) {
    if (v.write)
      self->denied_write_ = true;
    else if (self->denied_.empty())
      self->denied_ = std::move(v.refused);
  }
  return v.code;
}

// -- construction -------------------------------------------------------------------------------

sql_engine::sql_engine(db_location loc, settings s)
    : loc_(std::move(loc)), settings_(std::move(s)) {}

sql_engine::~sql_engine() {
  close();
}

void sql_engine::close() {
  kv_.attach(nullptr); // finalizes its statements before the connection goes
  for (auto& [sql, stmt] : control_)
    sqlite3_finalize(stmt);
  control_.clear();
  // sqlite3_close_v2 defers the close until outstanding statements are finalized; we keep none.
  if (rw_ != nullptr) sqlite3_close_v2(rw_);
  if (ro_ != nullptr) sqlite3_close_v2(ro_);
  rw_ = ro_ = nullptr;
}

namespace {

/// True when the file a connection has open is no longer the one at its path: deleted, renamed
/// or replaced (through the drive, or by anyone). SQLite would then refuse every write
/// (SQLITE_READONLY_DBMOVED) and go on reading the old file. One stat() of the path.
bool has_moved(sqlite3* db) {
  int moved = 0;
  return db != nullptr
         && sqlite3_file_control(db, "main", SQLITE_FCNTL_HAS_MOVED, &moved) == SQLITE_OK
         && moved != 0;
}

bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

caf::error not_found(const db_location& loc) {
  return make_error(errc::database_not_found, "database '" + loc.name
                                                  + "' does not exist (create it with "
                                                    "POST /api/v1/sqlite/db/create?path="
                                                  + loc.name + ")");
}

/// An open that failed because the path leads out of the store (a symbolic link planted or
/// swapped in: store_files refuses to follow it).
bool left_the_store(sqlite3* db) {
  if (db != nullptr && sqlite3_extended_errcode(db) == SQLITE_CANTOPEN_SYMLINK) return true;
  int err = db ? sqlite3_system_errno(db) : 0;
  return err == EXDEV || err == ELOOP;
}

/// Open flags for a database in the store: SQLite resolves symbolic links in a database's path
/// by itself (to put the journal next to the real file), then opens what it found; NOFOLLOW
/// makes it refuse instead, and store_files keeps the open itself from following one swapped in
/// meanwhile.
int confine(const db_location& loc, int flags) {
  return loc.in_store ? flags | SQLITE_OPEN_NOFOLLOW : flags;
}

caf::error out_of_store(const db_location& loc) {
  return make_error(errc::invalid_db_path,
                    "the database path '" + loc.name
                        + "' leads out of the store through a symbolic link");
}

} // namespace

void sql_engine::close_if_moved() {
  if (!has_moved(rw_) && !has_moved(ro_)) return;
  spdlog::info("{}: the database file was deleted, renamed or replaced; reopening it", loc_.name);
  close();
}

caf::error sql_engine::configure(sqlite3* db) {
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, static_cast<int>(settings_.busy_timeout.count()));
  sqlite3_progress_handler(db, 1000, progress_callback, this);
  sqlite3_set_authorizer(db, authorizer_callback, this);
  sql_policy::harden(db, settings_);
  return caf::none;
}

caf::error sql_engine::open_rw(bool create) {
  if (rw_ != nullptr) return caf::none;
  if (auto err = check_stays_in_store(loc_, settings_)) return err;
  if (!create && !file_exists(loc_.open_path)) return not_found(loc_);
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
  sqlite3* db = nullptr;
  // The writer's commits reach the WAL in one write each (the first engine's size counts).
  const char* vfs = settings_.wal_write_buffer > 0 && wal_vfs::install(settings_.wal_write_buffer)
                        ? wal_vfs::name
                        : nullptr;
  int rc = sqlite3_open_v2(loc_.open_path.c_str(), &db, confine(loc_, flags), vfs);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    bool escaped = left_the_store(db);
    sqlite3_close_v2(db);
    if (escaped) return out_of_store(loc_);
    if (!create && !file_exists(loc_.open_path)) return not_found(loc_);
    return make_error(errc::internal_error, "cannot open database '" + loc_.name + "': " + msg);
  }
  configure(db);
  rw_ = db;
  kv_.attach(db);
  kv_.max_batch = settings_.kv_batch_max;
  kv_.history_max_age_s = settings_.history_max_age_s;
  kv_.history_max_rows = settings_.history_max_rows;
  kv_.history_index_batch = settings_.history_index_batch;
  auto sync = "PRAGMA synchronous=" + settings_.synchronous;
  if (auto err = exec_internal(sync.c_str())) {
    spdlog::warn("{}: {}", loc_.name, caf::to_string(err));
  }
  sqlite3_wal_autocheckpoint(db, settings_.wal_autocheckpoint);
  spdlog::debug("opened {} read-write ({})", loc_.name, loc_.open_path);
  return caf::none;
}

caf::error sql_engine::open_ro() {
  if (ro_ != nullptr) return caf::none;
  if (auto err = check_stays_in_store(loc_, settings_)) return err;
  if (!file_exists(loc_.open_path)) return not_found(loc_);
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(loc_.open_path.c_str(), &db,
                           confine(loc_, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX), nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    bool escaped = left_the_store(db);
    sqlite3_close_v2(db);
    if (escaped) return out_of_store(loc_);
    return make_error(errc::internal_error, "cannot open database '" + loc_.name + "': " + msg);
  }
  configure(db);
  ro_ = db;
  return caf::none;
}

caf::error sql_engine::exec_internal(const char* sql) {
  mode_ = mode::internal;
  char* msg = nullptr;
  int rc = sqlite3_exec(rw_, sql, nullptr, nullptr, &msg);
  if (rc == SQLITE_OK) return caf::none;
  std::string text = msg ? msg : sqlite3_errstr(rc);
  sqlite3_free(msg);
  return internal_failure(rc, text);
}

caf::error sql_engine::internal_failure(int rc, const std::string& text) const {
  if ((rc & 0xFF) == SQLITE_BUSY || (rc & 0xFF) == SQLITE_LOCKED)
    return make_error(errc::database_busy, "database '" + loc_.name + "' is busy: " + text);
  return make_error(errc::sql_error, text);
}

caf::error sql_engine::exec_control(const char* sql) {
  mode_ = mode::internal;
  auto i = control_.find(std::string_view{sql});
  if (i == control_.end()) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v3(rw_, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr) != SQLITE_OK
        || stmt == nullptr) {
      sqlite3_finalize(stmt);
      return exec_internal(sql); // reports the error as exec_internal does
    }
    i = control_.emplace(sql, stmt).first;
  }
  int rc = sqlite3_step(i->second);
  sqlite3_reset(i->second);
  if (rc == SQLITE_DONE || rc == SQLITE_ROW) return caf::none;
  return internal_failure(rc, sqlite3_errmsg(rw_));
}

// -- errors -------------------------------------------------------------------------------------

caf::error sql_engine::sqlite_failure(sqlite3* db, int rc, int32_t index, const char* what) {
  std::string prefix = index >= 0 ? "item " + std::to_string(index) + ": " : std::string{};
  std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  if (timed_out_ || (rc & 0xFF) == SQLITE_INTERRUPT)
    return make_error(errc::query_timeout,
                      prefix + "statement interrupted after the statement time limit ("
                          + std::to_string(settings_.statement_timeout.count()) + " ms)",
                      index);
  if (!denied_.empty())
    return make_error(errc::sql_not_allowed,
                      prefix + denied_
                          + " is not allowed here (litedrive's SQL policy, see the "
                            "README's security section)",
                      index);
  if (mode_ == mode::read_only && denied_write_)
    return make_error(errc::read_only_violation,
                      prefix
                          + "the query endpoint is read-only; this statement would change "
                            "state or reach outside the database ("
                          + msg + ")",
                      index);
  switch (rc & 0xFF) {
  case SQLITE_BUSY:
  case SQLITE_LOCKED:
    return make_error(errc::database_busy,
                      prefix
                          + "database is locked by another connection for longer than the "
                            "wait limit ("
                          + msg + ")",
                      index);
  case SQLITE_NOMEM:
    return make_error(errc::sql_error,
                      prefix
                          + "out of memory: the statement needs more memory than litedrive "
                            "gives SQLite (sqlite-heap-max-bytes)",
                      index);
  case SQLITE_IOERR:
  case SQLITE_CORRUPT:
  case SQLITE_FULL:
  case SQLITE_CANTOPEN:
    return make_error(errc::internal_error, prefix + what + ": " + msg, index);
  default:
    return make_error(errc::sql_error, prefix + msg, index);
  }
}

// -- binding and reading values -----------------------------------------------------------------

namespace {

int bind_value(sqlite3_stmt* stmt, int pos, const sql_value& v) {
  switch (v.index()) {
  case 0:
    return sqlite3_bind_null(stmt, pos);
  case 1:
    return sqlite3_bind_int64(stmt, pos, std::get<int64_t>(v));
  case 2:
    return sqlite3_bind_double(stmt, pos, std::get<double>(v));
  case 3: {
    const auto& s = std::get<std::string>(v);
    return sqlite3_bind_text64(stmt, pos, s.data(), s.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
  }
  default: {
    const auto& b = std::get<blob>(v).bytes;
    return sqlite3_bind_blob64(stmt, pos, b.data(), b.size(), SQLITE_TRANSIENT);
  }
  }
}

caf::error bind_all(sqlite3_stmt* stmt, const sql_item& item, int32_t index) {
  auto fail = [index](std::string msg) {
    return make_error(errc::invalid_request, "item " + std::to_string(index) + ": " + msg, index);
  };
  int count = sqlite3_bind_parameter_count(stmt);
  if (!item.positional.empty()) {
    if (static_cast<int>(item.positional.size()) != count)
      return fail("the statement has " + std::to_string(count) + " parameter(s) but "
                  + std::to_string(item.positional.size()) + " value(s) were given");
    for (int i = 0; i < count; ++i)
      if (bind_value(stmt, i + 1, item.positional[i]) != SQLITE_OK)
        return fail("cannot bind value " + std::to_string(i));
    return caf::none;
  }
  for (const auto& [name, value] : item.named) {
    int pos = 0;
    if (!name.empty() && (name[0] == ':' || name[0] == '@' || name[0] == '$')) {
      pos = sqlite3_bind_parameter_index(stmt, name.c_str());
    } else {
      for (const char* prefix : {":", "@", "$"}) {
        pos = sqlite3_bind_parameter_index(stmt, (prefix + name).c_str());
        if (pos > 0) break;
      }
    }
    if (pos == 0) return fail("the statement has no parameter named '" + name + "'");
    if (bind_value(stmt, pos, value) != SQLITE_OK) return fail("cannot bind value '" + name + "'");
  }
  if (item.named.empty() && count > 0)
    return fail("the statement has " + std::to_string(count)
                + " parameter(s) but no values "
                  "were given");
  return caf::none;
}

void append_column(std::string& out, sqlite3_stmt* stmt, int col) {
  switch (sqlite3_column_type(stmt, col)) {
  case SQLITE_INTEGER:
    json_out::integer(out, sqlite3_column_int64(stmt, col));
    break;
  case SQLITE_FLOAT:
    json_out::real(out, sqlite3_column_double(stmt, col));
    break;
  case SQLITE_TEXT: {
    auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt, col));
    json_out::string(out,
                     std::string_view{p, static_cast<size_t>(sqlite3_column_bytes(stmt, col))});
    break;
  }
  case SQLITE_BLOB: {
    auto* p = static_cast<const char*>(sqlite3_column_blob(stmt, col));
    auto n = static_cast<size_t>(sqlite3_column_bytes(stmt, col));
    out += "{\"$blob\":\"";
    out += base64_encode(std::string_view{p ? p : "", n});
    out += "\"}";
    break;
  }
  default:
    out += "null";
  }
}

} // namespace

// -- running statements -------------------------------------------------------------------------

caf::error sql_engine::step_into(sqlite3_stmt* stmt, bool collect, int32_t index, std::string& out,
                                 size_t& rows) {
  auto* db = sqlite3_db_handle(stmt);
  std::vector<std::string> names;
  if (collect) {
    int n = sqlite3_column_count(stmt);
    names.reserve(n);
    for (int i = 0; i < n; ++i) {
      std::string k;
      const char* name = sqlite3_column_name(stmt, i);
      json_out::key(k, name ? name : "");
      names.push_back(std::move(k));
    }
  }
  for (;;) {
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_DONE) return caf::none;
    if (rc != SQLITE_ROW) return sqlite_failure(db, rc, index, "cannot run statement");
    if (!collect) continue;
    if (++rows > settings_.max_result_rows)
      return make_error(errc::result_too_large,
                        "item " + std::to_string(index) + ": more than "
                            + std::to_string(settings_.max_result_rows)
                            + " rows (max_result_rows); add a LIMIT or page with OFFSET/keyset",
                        index);
    out += rows == 1 ? "{" : ",{";
    for (size_t i = 0; i < names.size(); ++i) {
      if (i > 0) out += ',';
      out += names[i];
      append_column(out, stmt, static_cast<int>(i));
    }
    out += '}';
    if (response_bytes_ + out.size() > settings_.max_result_bytes)
      return make_error(errc::result_too_large,
                        "item " + std::to_string(index) + ": the answer exceeds "
                            + std::to_string(settings_.max_result_bytes)
                            + " bytes (max_result_bytes)",
                        index);
  }
}

caf::error sql_engine::run_item(const sql_item& item, int32_t index, std::string& out) {
  denied_.clear();
  const char* sql = item.sql.data();
  const char* end = sql + item.sql.size();
  bool has_values = !item.positional.empty() || !item.named.empty();
  int statements = 0;
  int64_t changes = 0;
  size_t rows = 0;
  std::string result_set;
  while (sql < end) {
    sqlite3_stmt* stmt = nullptr;
    const char* tail = nullptr;
    int rc = sqlite3_prepare_v3(rw_, sql, static_cast<int>(end - sql), 0, &stmt, &tail);
    if (rc != SQLITE_OK) return sqlite_failure(rw_, rc, index, "cannot prepare statement");
    if (stmt == nullptr && tail == sql)
      break; // no progress: an embedded NUL ends the SQL text for SQLite
    sql = tail;
    if (stmt == nullptr) // whitespace or a comment
      continue;
    if (++statements > 1 && has_values) {
      sqlite3_finalize(stmt);
      return make_error(errc::invalid_request,
                        "item " + std::to_string(index)
                            + ": values can only be bound to an item holding one statement",
                        index);
    }
    caf::error err = bind_all(stmt, item, index);
    if (!err) {
      if (item.is_query) {
        // A query item answers the rows of its last statement.
        result_set.clear();
        rows = 0;
      }
      err = step_into(stmt, item.is_query, index, result_set, rows);
      if (!err && !sqlite3_stmt_readonly(stmt)) changes += sqlite3_changes64(rw_);
    }
    sqlite3_finalize(stmt);
    if (err) return err;
  }
  if (statements == 0)
    return make_error(errc::invalid_request,
                      "item " + std::to_string(index) + ": the SQL holds no statement", index);
  if (item.is_query) {
    out += "{\"resultSet\":[";
    out += result_set;
    out += "]}";
  } else {
    out += "{\"rowsUpdated\":";
    json_out::integer(out, changes);
    out += ",\"lastInsertRowid\":";
    json_out::integer(out, sqlite3_last_insert_rowid(rw_));
    out += '}';
  }
  response_bytes_ += out.size();
  return caf::none;
}

caf::error sql_engine::validate(const sql_txn& txn) const {
  if (txn.items.empty()) return make_error(errc::invalid_request, "the transaction holds no items");
  if (txn.items.size() > settings_.max_items)
    return make_error(errc::too_many_items,
                      "the transaction holds " + std::to_string(txn.items.size())
                          + " items; the limit is " + std::to_string(settings_.max_items)
                          + " (max_items)");
  return caf::none;
}

caf::error sql_engine::run_txn(const sql_txn& txn, std::string& out) {
  deadline_ = std::chrono::steady_clock::now() + settings_.statement_timeout;
  timed_out_ = false;
  response_bytes_ = 0;
  // Each transaction of a group runs in this savepoint; the authorizer keeps items off it.
  if (auto err = exec_control("SAVEPOINT litedrive_txn")) return err;
  out = "{\"results\":[";
  mode_ = mode::items;
  for (size_t i = 0; i < txn.items.size(); ++i) {
    if (i > 0) out += ',';
    if (auto err = run_item(txn.items[i], static_cast<int32_t>(i), out)) {
      mode_ = mode::internal;
      out.clear();
      // Unless SQLite already rolled back the whole transaction, undo just this one.
      if (!sqlite3_get_autocommit(rw_)) {
        exec_control("ROLLBACK TO litedrive_txn");
        exec_control("RELEASE litedrive_txn");
      }
      return err;
    }
  }
  mode_ = mode::internal;
  if (auto err = exec_control("RELEASE litedrive_txn")) {
    out.clear();
    return err;
  }
  out += "]}";
  return caf::none;
}

namespace {

double unix_now() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

bool op_writes(const db_op& op) {
  if (auto* kv = std::get_if<kv_request>(&op))
    return is_write(kv->op) || kv_engine::reads_history(kv->op);
  return true; // an SQL transaction may write (a read-only one is cheap in the group as well)
}

bool op_read_only_sql(const db_op& op) {
  auto* txn = std::get_if<sql_txn>(&op);
  if (!txn) return false;
  for (const auto& item : txn->items)
    if (!item.is_query) return false;
  return true;
}

} // namespace

caf::error sql_engine::run_write(const db_op& op, op_outcome& out) {
  if (auto* txn = std::get_if<sql_txn>(&op)) return run_txn(*txn, out.answer.body);
  const auto& req = std::get<kv_request>(op);
  deadline_ = std::chrono::steady_clock::now() + settings_.statement_timeout;
  timed_out_ = false;
  if (auto err = exec_control("SAVEPOINT litedrive_txn")) return err;
  denied_.clear();
  mode_ = mode::items;
  auto res = kv_.run(req, unix_now());
  mode_ = mode::internal;
  if (!res) {
    if (!sqlite3_get_autocommit(rw_)) {
      exec_control("ROLLBACK TO litedrive_txn");
      exec_control("RELEASE litedrive_txn");
    }
    kv_.forget_tables(); // the rollback may have undone a CREATE TABLE
    return std::move(res.error());
  }
  if (auto err = exec_control("RELEASE litedrive_txn")) return err;
  out.answer = std::move(*res);
  return caf::none;
}

void sql_engine::index_history_batches() {
  // Upkeep, not part of any request: if it fails, the group still commits (the rows wait for
  // the next batch, and every read of a key's history catches up first anyway).
  if (exec_control("SAVEPOINT litedrive_index")) return;
  if (auto err = kv_.index_history_batches()) {
    spdlog::warn("{}: history by key: {}", loc_.name, caf::to_string(err));
    if (!sqlite3_get_autocommit(rw_)) exec_control("ROLLBACK TO litedrive_index");
  }
  if (!sqlite3_get_autocommit(rw_)) exec_control("RELEASE litedrive_index");
}

void sql_engine::run_reads(const std::vector<db_op>& group, const std::vector<size_t>& reads,
                           std::vector<op_outcome>& outcomes) {
  if (reads.empty()) return;
  if (auto err = exec_control("BEGIN")) {
    for (auto i : reads)
      outcomes[i].error = err;
    return;
  }
  auto now = unix_now();
  for (auto i : reads) {
    deadline_ = std::chrono::steady_clock::now() + settings_.statement_timeout;
    timed_out_ = false;
    mode_ = mode::items;
    auto res = kv_.run(std::get<kv_request>(group[i]), now);
    mode_ = mode::internal;
    if (res)
      outcomes[i].answer = std::move(*res);
    else
      outcomes[i].error = std::move(res.error());
    if (sqlite3_get_autocommit(rw_)) // the read transaction ended under us (interrupt)
      exec_control("BEGIN");
  }
  exec_control("COMMIT");
}

std::vector<op_outcome> sql_engine::execute_group(const std::vector<db_op>& group) {
  std::vector<op_outcome> outcomes(group.size());
  std::vector<size_t> todo;
  std::vector<size_t> reads;
  for (size_t i = 0; i < group.size(); ++i) {
    if (auto* txn = std::get_if<sql_txn>(&group[i]))
      if (auto err = validate(*txn)) {
        outcomes[i].error = std::move(err);
        continue;
      }
    (op_writes(group[i]) ? todo : reads).push_back(i);
  }
  if (todo.empty() && reads.empty()) return outcomes;
  close_if_moved();
  if (auto err = open_rw(false)) {
    for (auto i : todo)
      outcomes[i].error = err;
    for (auto i : reads)
      outcomes[i].error = err;
    return outcomes;
  }
  while (!todo.empty()) {
    bool read_only = true;
    for (auto i : todo)
      read_only = read_only && op_read_only_sql(group[i]);
    // IMMEDIATE takes the write lock up front: a writer never has to upgrade SHARED to RESERVED
    // mid-transaction, which is where SQLite gives up with SQLITE_BUSY without waiting.
    if (auto err = exec_control(read_only ? "BEGIN" : "BEGIN IMMEDIATE")) {
      for (auto i : todo)
        outcomes[i].error = err;
      todo.clear();
      break;
    }
    std::vector<size_t> succeeded;
    size_t k = 0;
    bool aborted = false;
    for (; k < todo.size(); ++k) {
      auto i = todo[k];
      if (auto err = run_write(group[i], outcomes[i])) {
        outcomes[i].answer = kv_answer{};
        outcomes[i].error = std::move(err);
        if (sqlite3_get_autocommit(rw_)) {
          aborted = true;
          break;
        }
      } else {
        succeeded.push_back(i);
      }
    }
    if (aborted) {
      // SQLite threw the whole transaction away: what had succeeded was never committed or
      // answered, so it runs again; what came after the failure never ran.
      std::vector<size_t> next = succeeded;
      next.insert(next.end(), todo.begin() + static_cast<ptrdiff_t>(k) + 1, todo.end());
      for (auto i : succeeded)
        outcomes[i].answer = kv_answer{};
      todo = std::move(next);
      continue;
    }
    if (!succeeded.empty()) index_history_batches();
    if (auto err = exec_control("COMMIT")) {
      exec_control("ROLLBACK");
      for (auto i : succeeded) {
        outcomes[i].answer = kv_answer{};
        outcomes[i].error = err;
      }
      // A CREATE TABLE of the failed commit is gone too.
      kv_.forget_tables();
    }
    break;
  }
  run_reads(group, reads, outcomes);
  return outcomes;
}

caf::expected<std::string> sql_engine::execute(const sql_txn& txn) {
  auto outcomes = execute_group(std::vector<db_op>{txn});
  if (outcomes[0].error) return std::move(outcomes[0].error);
  return std::move(outcomes[0].answer.body);
}

caf::expected<std::string> sql_engine::query(const std::string& sql) {
  close_if_moved();
  if (auto err = open_ro()) return err;
  deadline_ = std::chrono::steady_clock::now() + settings_.statement_timeout;
  timed_out_ = false;
  denied_write_ = false;
  denied_.clear();
  response_bytes_ = 0;
  mode_ = mode::read_only;
  sqlite3_stmt* stmt = nullptr;
  const char* tail = nullptr;
  int rc = sqlite3_prepare_v3(ro_, sql.data(), static_cast<int>(sql.size()), 0, &stmt, &tail);
  if (rc != SQLITE_OK) {
    auto err = sqlite_failure(ro_, rc, -1, "cannot prepare statement");
    mode_ = mode::internal;
    return err;
  }
  if (stmt == nullptr) {
    mode_ = mode::internal;
    return make_error(errc::invalid_request, "the SQL holds no statement");
  }
  // Only one statement: anything after it but whitespace and comments is refused.
  std::string_view rest{tail, static_cast<size_t>(sql.data() + sql.size() - tail)};
  if (rest.find_first_not_of(" \t\r\n;") != std::string_view::npos) {
    sqlite3_stmt* next = nullptr;
    const char* ignored = nullptr;
    int rc2 =
        sqlite3_prepare_v3(ro_, rest.data(), static_cast<int>(rest.size()), 0, &next, &ignored);
    bool more = rc2 != SQLITE_OK || next != nullptr;
    sqlite3_finalize(next);
    if (more) {
      sqlite3_finalize(stmt);
      mode_ = mode::internal;
      return make_error(errc::invalid_request, "the query endpoint runs exactly one statement");
    }
  }
  if (!sqlite3_stmt_readonly(stmt)) {
    sqlite3_finalize(stmt);
    mode_ = mode::internal;
    return make_error(errc::read_only_violation,
                      "the query endpoint is read-only; this statement would write");
  }
  std::string rows_json;
  size_t rows = 0;
  auto err = step_into(stmt, true, 0, rows_json, rows);
  sqlite3_finalize(stmt);
  mode_ = mode::internal;
  if (err) {
    auto v = view(err);
    // Single-statement endpoint: no "item 0" in what the client reads.
    static constexpr std::string_view prefix = "item 0: ";
    if (v.message.compare(0, prefix.size(), prefix) == 0) v.message.erase(0, prefix.size());
    return make_error(v.code, std::move(v.message));
  }
  std::string out = "{\"results\":[{\"resultSet\":[";
  out += rows_json;
  out += "]}]}";
  return out;
}

caf::expected<std::string> sql_engine::create(bool init_kv, const std::string& journal_mode) {
  if (auto err = check_stays_in_store(loc_, settings_)) return err;
  bool existed = file_exists(loc_.open_path);
  close_if_moved();
  if (!existed && loc_.in_store) {
    int err = store_files::make_parents(settings_.store, loc_.key);
    if (err == EXDEV || err == ELOOP) return out_of_store(loc_);
    if (err != 0)
      return make_error(errc::internal_error,
                        "cannot create the directories of '" + loc_.name + "': " + strerror(err));
  }
  if (auto err = open_rw(true)) return err;
  // An empty file is a valid database, but writing the header now makes the file a database
  // for every other tool at once (`file`, sqlite3 -readonly, the drive's WAL detection).
  std::string ddl;
  if (!existed)
    ddl = "BEGIN IMMEDIATE; CREATE TABLE __litedrive_init(x); DROP TABLE __litedrive_init; COMMIT;";
  if (init_kv) ddl += kv_table_ddl("kv_store");
  if (!ddl.empty()) {
    if (auto err = exec_internal(ddl.c_str())) {
      exec_control("ROLLBACK");
      return err;
    }
  }
  std::string mode;
  {
    // Outside any transaction: the only place a journal mode can change.
    auto pragma = journal_mode.empty() ? std::string{"PRAGMA journal_mode"}
                                       : "PRAGMA journal_mode=" + journal_mode;
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(rw_, pragma.c_str(), -1, &stmt, nullptr) == SQLITE_OK
        && sqlite3_step(stmt) == SQLITE_ROW)
      mode = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    sqlite3_finalize(stmt);
    if (!journal_mode.empty() && mode != journal_mode)
      return make_error(errc::database_busy, "cannot switch '" + loc_.name + "' to journal mode "
                                                 + journal_mode + " while others use it (it is "
                                                 + mode + ")");
  }
  std::string out = "{\"created\":";
  out += existed ? "false" : "true";
  out += ",\"path\":";
  json_out::string(out, loc_.name);
  out += ",\"kv\":";
  out += init_kv ? "true" : "false";
  out += ",\"journal_mode\":";
  json_out::string(out, mode);
  out += '}';
  return out;
}

} // namespace litedrive
