#include "actors/kv_engine.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <limits>

#include <nlohmann/json.hpp>

#include "schema/json_in.hpp"

#include "schema/errc.hpp"
#include "schema/json_out.hpp"
#include "schema/kv_schema.hpp"

namespace litedrive {

namespace {

using json = nlohmann::json;

std::string quoted(const std::string& table) {
  return "\"" + table + "\"";
}

std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  for (size_t pos = text.find(from); pos != std::string::npos;
       pos = text.find(from, pos + to.size()))
    text.replace(pos, from.size(), to);
  return text;
}

void bind_text(sqlite3_stmt* s, int i, const std::string& v) {
  sqlite3_bind_text64(s, i, v.data(), v.size(), SQLITE_STATIC, SQLITE_UTF8);
}

std::string column_text(sqlite3_stmt* s, int i) {
  auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
  return p ? std::string{p, static_cast<size_t>(sqlite3_column_bytes(s, i))} : std::string{};
}

/// Resets a cached statement when the scope ends, whatever happened.
struct reset_guard {
  sqlite3_stmt* s;
  ~reset_guard() {
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
  }
};

/// A stored value or a client's element. Any SQLite client may have stored the value, so it
/// gets the same nesting limit as a request body.
caf::expected<json> parse_json(const std::string& text, const char* what) {
  json out;
  std::string why;
  if (!json_in::parse(text, default_max_json_depth, out, why))
    return make_error(errc::invalid_request,
                      std::string{"the "} + what + " is not JSON litedrive can use: " + why);
  return out;
}

/// Reads a string -> value text as the API serves it: text that is not JSON (written by plain
/// SQL) is served as a JSON string.
constexpr const char* value_expr =
    "CASE WHEN json_valid(value) THEN value ELSE json_quote(value) END";

/// Writes at most `limit` rows of `s` (bound for limit + 1 rows), each through `row`, separated
/// by commas; `more` says whether a further row exists (then the page needs a cursor). Answers
/// the final step's result code.
template <class Row>
int write_page(sqlite3_stmt* s, int64_t limit, std::string& out, bool& more, Row row) {
  int64_t n = 0;
  more = false;
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    if (n == limit) {
      more = true;
      return SQLITE_DONE;
    }
    if (n++ > 0) out += ',';
    row(s);
  }
  return rc;
}

kv_answer missing() {
  return kv_answer{false, "null", -1};
}

/// {"key": key, <name>: <JSON text>..., "version": version}: the answer of every write.
std::string key_answer(const std::string& key, int64_t version,
                       std::initializer_list<std::pair<const char*, std::string>> fields = {}) {
  std::string out = "{\"key\":";
  json_out::string(out, key);
  for (const auto& [name, value] : fields) {
    out += ",\"";
    out += name;
    out += "\":";
    out += value;
  }
  out += ",\"version\":";
  json_out::integer(out, version);
  out += '}';
  return out;
}

} // namespace

bool valid_table_name(const std::string& name) {
  if (name.empty() || name.size() > 64 || name.rfind("sqlite_", 0) == 0) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'
              || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

std::string kv_table_ddl(const std::string& table) {
  // (the history table's name is "{name}_history": valid_table_name keeps it an identifier)
  return replace_all(replace_all(kv_store_ddl, "{table}", quoted(table)), "{name}", table);
}

kv_engine::~kv_engine() {
  attach(nullptr);
}

void kv_engine::attach(sqlite3* db) {
  for (auto& [sql, s] : stmts_)
    sqlite3_finalize(s);
  stmts_.clear();
  by_literal_.clear();
  tables_.clear();
  db_ = db;
}

caf::error kv_engine::failure(const char* what) {
  int rc = sqlite3_extended_errcode(db_);
  std::string msg = std::string{what} + ": " + sqlite3_errmsg(db_);
  if ((rc & 0xFF) == SQLITE_BUSY || (rc & 0xFF) == SQLITE_LOCKED)
    return make_error(errc::database_busy, msg);
  if ((rc & 0xFF) == SQLITE_ERROR && msg.find("JSON path") != std::string::npos)
    return make_error(errc::invalid_path, sqlite3_errmsg(db_));
  if ((rc & 0xFF) == SQLITE_INTERRUPT) return make_error(errc::query_timeout, msg);
  return make_error(errc::internal_error, msg);
}

caf::expected<sqlite3_stmt*> kv_engine::stmt(const std::string& table, const char* sql) {
  literal_key key{sql, table};
  if (auto hit = by_literal_.find(key); hit != by_literal_.end()) return hit->second;
  auto text = replace_all(sql, "{t}", quoted(table));
  text = replace_all(text, "{n}", table);
  text = replace_all(text, "{v}", value_expr);
  auto i = stmts_.find(text);
  if (i == stmts_.end()) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v3(db_, text.c_str(), static_cast<int>(text.size()),
                           SQLITE_PREPARE_PERSISTENT, &s, nullptr)
        != SQLITE_OK)
      return failure("cannot prepare a KV statement");
    i = stmts_.emplace(std::move(text), s).first;
  }
  by_literal_.emplace(std::move(key), i->second);
  return i->second;
}

caf::error kv_engine::ensure_table(const std::string& table) {
  if (tables_.count(table)) return caf::none;
  if (!valid_table_name(table))
    return make_error(errc::invalid_parameter,
                      "table names are letters, digits and _ (64 at most, not sqlite_...)");
  auto ddl = kv_table_ddl(table);
  char* msg = nullptr;
  if (sqlite3_exec(db_, ddl.c_str(), nullptr, nullptr, &msg) != SQLITE_OK) {
    std::string text = msg ? msg : "unknown error";
    sqlite3_free(msg);
    if (text.find("locked") != std::string::npos || text.find("busy") != std::string::npos)
      return make_error(errc::database_busy, "cannot create the KV table: " + text);
    return make_error(errc::sql_error, "cannot create the KV table '" + table + "': " + text);
  }
  tables_.insert(table);
  unindexed_[table] = history_index_batch; // unknown: the next group commit looks
  return caf::none;
}

// -- the one write path -------------------------------------------------------------------------

caf::expected<int64_t> kv_engine::apply(const std::string& table, const std::string& key,
                                        const std::optional<std::string>& value,
                                        std::optional<double> expires_at, double now,
                                        const change& what) {
  if (what.record) {
    // The old value as stored (an expired key that the sweep has not removed yet still has
    // one: what the history records is what the table held).
    auto h = stmt(table,
                  "INSERT INTO \"{n}_history\" (key, operation, old_value, new_value, ts, source) "
                  "VALUES (?1, ?2, (SELECT value FROM {t} WHERE key = ?1), json(?3), ?4, ?5)");
    if (!h) return std::move(h.error());
    reset_guard g{*h};
    bind_text(*h, 1, key);
    sqlite3_bind_text(*h, 2, what.operation, -1, SQLITE_STATIC);
    if (value)
      bind_text(*h, 3, *value);
    else
      sqlite3_bind_null(*h, 3);
    sqlite3_bind_double(*h, 4, now);
    sqlite3_bind_text(*h, 5, what.source, -1, SQLITE_STATIC);
    if (sqlite3_step(*h) != SQLITE_DONE) return failure("cannot record the history");
    ++unindexed_[table];
  }
  if (!value) {
    auto s = stmt(table, "DELETE FROM {t} WHERE key = ?1");
    if (!s) return std::move(s.error());
    reset_guard g{*s};
    bind_text(*s, 1, key);
    if (sqlite3_step(*s) != SQLITE_DONE) return failure("cannot delete");
    return int64_t{0};
  }
  // Versions only grow (also across an expiry the sweep has not removed yet), so a CAS against
  // an old version can never succeed by accident.
  auto s = stmt(table, "INSERT INTO {t} (key, value, version, expires_at, updated_at) "
                       "VALUES (?1, json(?2), 1, ?3, ?4) "
                       "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                       "version = version + 1, expires_at = excluded.expires_at, "
                       "updated_at = excluded.updated_at RETURNING version");
  if (!s) return std::move(s.error());
  reset_guard g{*s};
  bind_text(*s, 1, key);
  bind_text(*s, 2, *value);
  if (expires_at)
    sqlite3_bind_double(*s, 3, *expires_at);
  else
    sqlite3_bind_null(*s, 3);
  sqlite3_bind_double(*s, 4, now);
  if (sqlite3_step(*s) != SQLITE_ROW) return failure("cannot store");
  auto version = sqlite3_column_int64(*s, 0);
  while (sqlite3_step(*s) == SQLITE_ROW) {
  }
  return version;
}

caf::expected<std::optional<kv_engine::current>>
kv_engine::load(const std::string& table, const std::string& key, double now) {
  auto s = stmt(table, "SELECT {v}, version, expires_at FROM {t} "
                       "WHERE key = ?1 AND (expires_at IS NULL OR expires_at > ?2)");
  if (!s) return std::move(s.error());
  reset_guard g{*s};
  bind_text(*s, 1, key);
  sqlite3_bind_double(*s, 2, now);
  int rc = sqlite3_step(*s);
  if (rc == SQLITE_DONE) return std::optional<current>{};
  if (rc != SQLITE_ROW) return failure("cannot read");
  std::optional<double> expires;
  if (sqlite3_column_type(*s, 2) != SQLITE_NULL) expires = sqlite3_column_double(*s, 2);
  return std::optional<current>{current{column_text(*s, 0), sqlite3_column_int64(*s, 1), expires}};
}

// -- dispatch -----------------------------------------------------------------------------------

caf::expected<kv_answer> kv_engine::run(const kv_request& req, double now) {
  if (req.op != kv_op::sweep)
    if (auto err = ensure_table(req.table)) return err;
  if (reads_history(req.op))
    if (auto n = index_history(req.table, -1); !n) return std::move(n.error());
  switch (req.op) {
  case kv_op::get:
  case kv_op::head:
    return get(req, now);
  case kv_op::list:
    return list(req, now);
  case kv_op::batch_get:
    return batch_get(req, now);
  case kv_op::set:
    return set(req, now);
  case kv_op::del:
    return del(req, now);
  case kv_op::batch_set:
    return batch_set(req, now);
  case kv_op::batch_del:
    return batch_del(req, now);
  case kv_op::incr:
    return incr(req, now);
  case kv_op::push:
    return push(req, now);
  case kv_op::pop:
    return pop(req, now);
  case kv_op::remove:
    return remove(req, now);
  case kv_op::sweep:
    return sweep(now);
  case kv_op::history:
    return history(req);
  case kv_op::snapshot:
  case kv_op::at_time:
    return value_then(req, now);
  case kv_op::rollback:
    return rollback(req, now);
  case kv_op::diff:
    return diff(req, now);
  case kv_op::table_snapshot:
    return table_snapshot(req, now);
  case kv_op::rollback_preview:
    return table_rollback(req, now, false);
  case kv_op::table_rollback:
    return table_rollback(req, now, true);
  }
  return make_error(errc::internal_error, "unknown KV operation");
}

// -- reads --------------------------------------------------------------------------------------

caf::expected<kv_answer> kv_engine::get(const kv_request& req, double now) {
  if (!req.path) {
    auto cur = load(req.table, req.key, now);
    if (!cur) return std::move(cur.error());
    if (!*cur) return missing();
    return kv_answer{true, req.op == kv_op::head ? std::string{} : std::move((*cur)->value),
                     (*cur)->version};
  }
  auto s = stmt(req.table, "SELECT json_type(value, ?3), value -> ?3, version FROM {t} "
                           "WHERE key = ?1 AND (expires_at IS NULL OR expires_at > ?2) "
                           "AND json_valid(value)");
  if (!s) return std::move(s.error());
  reset_guard g{*s};
  bind_text(*s, 1, req.key);
  sqlite3_bind_double(*s, 2, now);
  bind_text(*s, 3, *req.path);
  int rc = sqlite3_step(*s);
  if (rc == SQLITE_DONE) return missing();
  if (rc != SQLITE_ROW) return failure("cannot read the path");
  if (sqlite3_column_type(*s, 0) == SQLITE_NULL) // the path is not in the value
    return kv_answer{false, "null", sqlite3_column_int64(*s, 2)};
  return kv_answer{true, req.op == kv_op::head ? std::string{} : column_text(*s, 1),
                   sqlite3_column_int64(*s, 2)};
}

caf::expected<kv_answer> kv_engine::list(const kv_request& req, double now) {
  auto s = stmt(req.table, "SELECT key, version, expires_at FROM {t} "
                           "WHERE key > ?1 AND key >= ?2 AND substr(key, 1, length(?2)) = ?2 "
                           "AND (expires_at IS NULL OR expires_at > ?3) "
                           "ORDER BY key LIMIT ?4");
  if (!s) return std::move(s.error());
  reset_guard g{*s};
  bind_text(*s, 1, req.cursor);
  bind_text(*s, 2, req.prefix);
  sqlite3_bind_double(*s, 3, now);
  sqlite3_bind_int64(*s, 4, req.limit + 1);
  std::string out = "{\"keys\":[";
  std::string last;
  bool more = false;
  int rc = write_page(*s, req.limit, out, more, [&](sqlite3_stmt* row) {
    last = column_text(row, 0);
    out += "{\"key\":";
    json_out::string(out, last);
    out += ",\"version\":";
    json_out::integer(out, sqlite3_column_int64(row, 1));
    out += ",\"expires_at\":";
    if (sqlite3_column_type(row, 2) == SQLITE_NULL)
      out += "null";
    else
      json_out::real(out, sqlite3_column_double(row, 2));
    out += '}';
  });
  if (rc != SQLITE_DONE) return failure("cannot list");
  out += "],\"cursor\":";
  if (more)
    json_out::string(out, last);
  else
    out += "null";
  out += '}';
  return kv_answer{true, std::move(out), -1};
}

caf::expected<kv_answer> kv_engine::batch_get(const kv_request& req, double now) {
  std::string out = "{\"results\":[";
  for (size_t i = 0; i < req.keys.size(); ++i) {
    auto cur = load(req.table, req.keys[i], now);
    if (!cur) return std::move(cur.error());
    if (i > 0) out += ',';
    out += "{\"key\":";
    json_out::string(out, req.keys[i]);
    if (*cur) {
      out += ",\"found\":true,\"value\":";
      out += (*cur)->value;
      out += ",\"version\":";
      json_out::integer(out, (*cur)->version);
    } else {
      out += ",\"found\":false,\"value\":null";
    }
    out += '}';
  }
  out += "]}";
  return kv_answer{true, std::move(out), -1};
}

// -- writes -------------------------------------------------------------------------------------

namespace {

std::optional<double> expiry(std::optional<double> ttl, double now) {
  if (!ttl) return std::nullopt;
  return now + *ttl;
}

caf::error conflict(const std::string& key, int64_t expected, int64_t actual) {
  std::string msg = "key '" + key + "' is ";
  msg += actual == 0 ? std::string{"absent"} : "at version " + std::to_string(actual);
  msg += expected == 0 ? ", expected absent" : ", expected version " + std::to_string(expected);
  return make_error(errc::version_conflict, msg, -1, actual);
}

} // namespace

caf::expected<kv_answer> kv_engine::set(const kv_request& req, double now) {
  auto cur = load(req.table, req.key, now);
  if (!cur) return std::move(cur.error());
  int64_t actual = *cur ? (*cur)->version : 0;
  if (req.if_match && *req.if_match != actual) return conflict(req.key, *req.if_match, actual);
  std::string value = req.value;
  if (req.path) {
    // Partial update: set the part at `path` of the current value (an absent key starts as {}).
    auto s = stmt(req.table, "SELECT json_set(?1, ?2, json(?3))");
    if (!s) return std::move(s.error());
    reset_guard g{*s};
    std::string base = *cur ? (*cur)->value : std::string{"{}"};
    bind_text(*s, 1, base);
    bind_text(*s, 2, *req.path);
    bind_text(*s, 3, req.value);
    if (sqlite3_step(*s) != SQLITE_ROW) return failure("cannot set the path");
    value = column_text(*s, 0);
  }
  auto version = apply(req.table, req.key, value, expiry(req.ttl, now), now,
                       {req.path ? "set_path" : "set", req.history});
  if (!version) return std::move(version.error());
  return kv_answer{true, key_answer(req.key, *version), *version};
}

caf::expected<kv_answer> kv_engine::del(const kv_request& req, double now) {
  auto cur = load(req.table, req.key, now);
  if (!cur) return std::move(cur.error());
  int64_t actual = *cur ? (*cur)->version : 0;
  if (req.if_match && *req.if_match != actual) return conflict(req.key, *req.if_match, actual);
  auto done = apply(req.table, req.key, std::nullopt, std::nullopt, now, {"delete", req.history});
  if (!done) return std::move(done.error());
  std::string out = "{\"key\":";
  json_out::string(out, req.key);
  out += ",\"deleted\":";
  out += *cur ? "true" : "false";
  out += '}';
  return kv_answer{true, std::move(out), -1};
}

caf::expected<kv_answer> kv_engine::batch_set(const kv_request& req, double now) {
  std::string out = "{\"results\":[";
  for (size_t i = 0; i < req.items.size(); ++i) {
    const auto& item = req.items[i];
    auto version = apply(req.table, item.key, item.value, expiry(item.ttl, now), now,
                         {"batch_set", req.history});
    if (!version) {
      auto v = view(version.error());
      return make_error(v.code, "item " + std::to_string(i) + ": " + v.message,
                        static_cast<int32_t>(i));
    }
    if (i > 0) out += ',';
    out += key_answer(item.key, *version);
  }
  out += "]}";
  return kv_answer{true, std::move(out), -1};
}

caf::expected<kv_answer> kv_engine::batch_del(const kv_request& req, double now) {
  std::string out = "{\"results\":[";
  for (size_t i = 0; i < req.keys.size(); ++i) {
    auto cur = load(req.table, req.keys[i], now);
    if (!cur) return std::move(cur.error());
    auto done = apply(req.table, req.keys[i], std::nullopt, std::nullopt, now,
                      {"batch_delete", req.history});
    if (!done) return std::move(done.error());
    if (i > 0) out += ',';
    out += "{\"key\":";
    json_out::string(out, req.keys[i]);
    out += ",\"deleted\":";
    out += *cur ? "true" : "false";
    out += '}';
  }
  out += "]}";
  return kv_answer{true, std::move(out), -1};
}

caf::expected<kv_answer> kv_engine::incr(const kv_request& req, double now) {
  auto cur = load(req.table, req.key, now);
  if (!cur) return std::move(cur.error());
  int64_t value = 0;
  if (*cur) {
    auto parsed = parse_json((*cur)->value, "value");
    if (!parsed) return std::move(parsed.error());
    if (parsed->is_number_integer())
      value = parsed->get<int64_t>();
    else if (parsed->is_number_unsigned())
      return make_error(errc::number_overflow,
                        "the value of '" + req.key + "' is beyond the 64-bit signed range");
    else
      return make_error(errc::not_a_number,
                        "the value of '" + req.key + "' is not an integer: " + (*cur)->value);
  }
  int64_t result;
  if (__builtin_add_overflow(value, req.delta, &result))
    return make_error(errc::number_overflow, "incrementing '" + req.key + "' by "
                                                 + std::to_string(req.delta)
                                                 + " leaves the 64-bit signed range");
  // Atomic operations keep the key's TTL, like Redis INCR does; only a SET replaces it.
  auto version = apply(req.table, req.key, std::to_string(result),
                       *cur ? (*cur)->expires_at : std::nullopt, now, {"incr", req.history});
  if (!version) return std::move(version.error());
  return kv_answer{true, key_answer(req.key, *version, {{"value", std::to_string(result)}}),
                   *version};
}

namespace {

caf::expected<json> as_array(const std::string& key, const std::string& text) {
  auto parsed = parse_json(text, "value");
  if (!parsed) return std::move(parsed.error());
  if (!parsed->is_array())
    return make_error(errc::not_an_array, "the value of '" + key + "' is not an array: " + text);
  return std::move(*parsed);
}

} // namespace

caf::expected<kv_answer> kv_engine::push(const kv_request& req, double now) {
  auto cur = load(req.table, req.key, now);
  if (!cur) return std::move(cur.error());
  json arr = json::array();
  if (*cur) {
    auto a = as_array(req.key, (*cur)->value);
    if (!a) return std::move(a.error());
    arr = std::move(*a);
  }
  auto element = parse_json(req.value, "element");
  if (!element) return make_error(errc::invalid_json, "value is not JSON");
  arr.push_back(std::move(*element));
  auto version = apply(req.table, req.key, arr.dump(), *cur ? (*cur)->expires_at : std::nullopt,
                       now, {"push", req.history});
  if (!version) return std::move(version.error());
  return kv_answer{true, key_answer(req.key, *version, {{"length", std::to_string(arr.size())}}),
                   *version};
}

caf::expected<kv_answer> kv_engine::pop(const kv_request& req, double now) {
  auto cur = load(req.table, req.key, now);
  if (!cur) return std::move(cur.error());
  if (!*cur) return missing();
  auto arr = as_array(req.key, (*cur)->value);
  if (!arr) return std::move(arr.error());
  if (arr->empty()) return kv_answer{false, "null", (*cur)->version};
  auto last = std::move(arr->back());
  arr->erase(arr->end() - 1);
  auto version =
      apply(req.table, req.key, arr->dump(), (*cur)->expires_at, now, {"pop", req.history});
  if (!version) return std::move(version.error());
  return kv_answer{true,
                   key_answer(req.key, *version,
                              {{"value", last.dump(-1, ' ', false, json::error_handler_t::replace)},
                               {"length", std::to_string(arr->size())}}),
                   *version};
}

namespace {

/// Whether every field of `pattern` is in `element` with an equal value (objects only).
bool contains_fields(const json& element, const json& pattern) {
  if (!element.is_object() || !pattern.is_object() || pattern.empty()) return false;
  for (const auto& [k, v] : pattern.items()) {
    auto i = element.find(k);
    if (i == element.end() || *i != v) return false;
  }
  return true;
}

} // namespace

caf::expected<kv_answer> kv_engine::remove(const kv_request& req, double now) {
  auto cur = load(req.table, req.key, now);
  if (!cur) return std::move(cur.error());
  if (!*cur) return missing();
  auto arr = as_array(req.key, (*cur)->value);
  if (!arr) return std::move(arr.error());
  size_t removed = 0;
  if (req.index) {
    auto n = static_cast<int64_t>(arr->size());
    auto i = *req.index < 0 ? n + *req.index : *req.index;
    if (i < 0 || i >= n)
      return make_error(errc::index_out_of_range, "index " + std::to_string(*req.index)
                                                      + " is outside the array of "
                                                      + std::to_string(n) + " elements");
    arr->erase(arr->begin() + i);
    removed = 1;
  } else {
    auto target = parse_json(req.value, "element");
    if (!target) return make_error(errc::invalid_json, "value is not JSON");
    // Deep equality first; if nothing is equal, an object removes the elements that contain
    // all of its fields (the reference's cart example removes {"product_id": ...}).
    json kept = json::array();
    for (auto& e : *arr) {
      if (e == *target)
        ++removed;
      else
        kept.push_back(e);
    }
    if (removed == 0 && target->is_object()) {
      kept = json::array();
      for (auto& e : *arr) {
        if (contains_fields(e, *target))
          ++removed;
        else
          kept.push_back(e);
      }
    }
    *arr = std::move(kept);
  }
  int64_t version = (*cur)->version;
  if (removed > 0) {
    auto v =
        apply(req.table, req.key, arr->dump(), (*cur)->expires_at, now, {"remove", req.history});
    if (!v) return std::move(v.error());
    version = *v;
  }
  return kv_answer{
      true,
      key_answer(req.key, version,
                 {{"removed", std::to_string(removed)}, {"length", std::to_string(arr->size())}}),
      version};
}

// -- time travel --------------------------------------------------------------------------------

caf::expected<kv_answer> kv_engine::history(const kv_request& req) {
  auto s = stmt(req.table, "SELECT h.op_number, operation, old_value, new_value, ts, source "
                           "FROM \"{n}_history_keys\" k JOIN \"{n}_history\" h USING (op_number) "
                           "WHERE k.key = ?1 AND (?2 = 0 OR k.op_number < ?2) "
                           "ORDER BY k.op_number DESC LIMIT ?3");
  if (!s) return std::move(s.error());
  reset_guard g{*s};
  bind_text(*s, 1, req.key);
  sqlite3_bind_int64(*s, 2, req.before);
  sqlite3_bind_int64(*s, 3, req.limit + 1);
  std::string out = "{\"key\":";
  json_out::string(out, req.key);
  out += ",\"history\":[";
  int64_t last = 0;
  bool more = false;
  auto json_or_null = [&out](sqlite3_stmt* st, int col) {
    if (sqlite3_column_type(st, col) == SQLITE_NULL)
      out += "null";
    else
      out += column_text(st, col);
  };
  int rc = write_page(*s, req.limit, out, more, [&](sqlite3_stmt* row) {
    last = sqlite3_column_int64(row, 0);
    out += "{\"op_number\":";
    json_out::integer(out, last);
    out += ",\"operation\":";
    json_out::string(out, column_text(row, 1));
    out += ",\"old_value\":";
    json_or_null(row, 2);
    out += ",\"new_value\":";
    json_or_null(row, 3);
    out += ",\"timestamp\":";
    json_out::real(out, sqlite3_column_double(row, 4));
    out += ",\"source\":";
    json_out::string(out, column_text(row, 5));
    out += '}';
  });
  if (rc != SQLITE_DONE) return failure("cannot read the history");
  out += "],\"cursor\":";
  if (more)
    json_out::integer(out, last);
  else
    out += "null";
  out += '}';
  return kv_answer{true, std::move(out), -1};
}

/// The value of a key at a point of its history (after op N, or at time T): the new value of the
/// last recorded change up to that point; else the old value of the first change after it; else,
/// with no recorded change around it, the value it has now.
caf::expected<std::optional<std::string>> kv_engine::value_at(const std::string& table,
                                                              const std::string& key, bool by_op,
                                                              int64_t op_number, double ts,
                                                              double now) {
  using result = std::optional<std::string>;
  auto column = [](sqlite3_stmt* st) {
    return sqlite3_column_type(st, 0) == SQLITE_NULL ? result{} : result{column_text(st, 0)};
  };
  for (int pass = 0; pass < 2; ++pass) {
    const char* sql;
    if (pass == 0)
      sql = by_op ? "SELECT new_value FROM \"{n}_history_keys\" k JOIN \"{n}_history\" h "
                    "USING (op_number) WHERE k.key = ?1 AND k.op_number <= ?2 "
                    "ORDER BY k.op_number DESC LIMIT 1"
                  : "SELECT new_value FROM \"{n}_history_keys\" k JOIN \"{n}_history\" h "
                    "USING (op_number) WHERE k.key = ?1 AND h.ts <= ?2 "
                    "ORDER BY k.op_number DESC LIMIT 1";
    else
      sql = by_op ? "SELECT old_value FROM \"{n}_history_keys\" k JOIN \"{n}_history\" h "
                    "USING (op_number) WHERE k.key = ?1 AND k.op_number > ?2 "
                    "ORDER BY k.op_number LIMIT 1"
                  : "SELECT old_value FROM \"{n}_history_keys\" k JOIN \"{n}_history\" h "
                    "USING (op_number) WHERE k.key = ?1 AND h.ts > ?2 "
                    "ORDER BY k.op_number LIMIT 1";
    auto s = stmt(table, sql);
    if (!s) return std::move(s.error());
    reset_guard g{*s};
    bind_text(*s, 1, key);
    if (by_op)
      sqlite3_bind_int64(*s, 2, op_number);
    else
      sqlite3_bind_double(*s, 2, ts);
    int rc = sqlite3_step(*s);
    if (rc == SQLITE_ROW) return column(*s);
    if (rc != SQLITE_DONE) return failure("cannot read the history");
  }
  auto cur = load(table, key, by_op ? now : std::min(now, ts));
  if (!cur) return std::move(cur.error());
  if (!*cur) return result{};
  return result{std::move((*cur)->value)};
}

caf::expected<kv_answer> kv_engine::value_then(const kv_request& req, double now) {
  bool by_op = req.op == kv_op::snapshot;
  if (by_op) {
    auto top = stmt(req.table, "SELECT coalesce(max(op_number), 0) FROM \"{n}_history\"");
    if (!top) return std::move(top.error());
    reset_guard g{*top};
    if (sqlite3_step(*top) != SQLITE_ROW) return failure("cannot read the history");
    if (req.op_number > sqlite3_column_int64(*top, 0))
      return make_error(errc::history_unavailable,
                        "op " + std::to_string(req.op_number)
                            + " has not happened yet (the newest is "
                            + std::to_string(sqlite3_column_int64(*top, 0)) + ")");
  }
  if (auto err = check_horizon(req.table, by_op, req.op_number, req.at_timestamp)) return err;
  auto v = value_at(req.table, req.key, by_op, req.op_number, req.at_timestamp, now);
  if (!v) return std::move(v.error());
  if (!*v) return missing();
  return kv_answer{true, std::move(**v), -1};
}

namespace {

void append_value(std::string& out, const std::optional<std::string>& v) {
  out += v ? *v : std::string{"null"};
}

} // namespace

bool kv_engine::reads_history(kv_op op) {
  switch (op) {
  case kv_op::history:
  case kv_op::snapshot:
  case kv_op::at_time:
  case kv_op::diff:
  case kv_op::table_snapshot:
  case kv_op::rollback_preview:
  case kv_op::rollback:
  case kv_op::table_rollback:
    return true;
  default:
    return false;
  }
}

caf::expected<int64_t> kv_engine::index_history(const std::string& table, int64_t limit) {
  // AUTOINCREMENT: op_numbers only grow, so "after the mark" is exactly what is missing.
  auto range = stmt(table, "SELECT coalesce((SELECT op_number FROM litedrive_history_indexed "
                           "WHERE tbl = ?1), 0), "
                           "(SELECT max(op_number) FROM (SELECT op_number FROM \"{n}_history\" "
                           "WHERE op_number > coalesce((SELECT op_number FROM "
                           "litedrive_history_indexed WHERE tbl = ?1), 0) "
                           "ORDER BY op_number LIMIT ?2)), "
                           "(SELECT count(*) FROM (SELECT 1 FROM \"{n}_history\" "
                           "WHERE op_number > coalesce((SELECT op_number FROM "
                           "litedrive_history_indexed WHERE tbl = ?1), 0) LIMIT ?3))");
  if (!range) return std::move(range.error());
  int64_t from = 0, to = 0, n = 0;
  {
    reset_guard g{*range};
    bind_text(*range, 1, table);
    sqlite3_bind_int64(*range, 2, limit);
    sqlite3_bind_int64(*range, 3, limit < 0 ? -1 : limit + 1); // one more: are there more?
    if (sqlite3_step(*range) != SQLITE_ROW) return failure("cannot read the history mark");
    from = sqlite3_column_int64(*range, 0);
    to = sqlite3_column_int64(*range, 1);
    n = sqlite3_column_int64(*range, 2);
  }
  bool more = limit >= 0 && n > limit;
  n = more ? limit : n;
  if (n == 0) {
    unindexed_[table] = 0;
    return int64_t{0};
  }
  // In key order: the batch fills the by-key table's pages one after the other.
  auto add = stmt(table, "INSERT OR IGNORE INTO \"{n}_history_keys\" (key, op_number) "
                         "SELECT key, op_number FROM \"{n}_history\" "
                         "WHERE op_number > ?1 AND op_number <= ?2 ORDER BY key, op_number");
  if (!add) return std::move(add.error());
  {
    reset_guard g{*add};
    sqlite3_bind_int64(*add, 1, from);
    sqlite3_bind_int64(*add, 2, to);
    if (sqlite3_step(*add) != SQLITE_DONE) return failure("cannot index the history");
  }
  auto mark = stmt(table, "INSERT INTO litedrive_history_indexed (tbl, op_number) VALUES (?1, ?2) "
                          "ON CONFLICT (tbl) DO UPDATE SET op_number = excluded.op_number");
  if (!mark) return std::move(mark.error());
  {
    reset_guard g{*mark};
    bind_text(*mark, 1, table);
    sqlite3_bind_int64(*mark, 2, to);
    if (sqlite3_step(*mark) != SQLITE_DONE) return failure("cannot record the history mark");
  }
  // Rows left behind (a backlog, after an upgrade): the next group commit adds the next batch.
  unindexed_[table] = more ? history_index_batch : 0;
  return n;
}

caf::error kv_engine::index_history_batches() {
  for (auto& [table, count] : unindexed_) {
    if (count < history_index_batch || !tables_.count(table)) continue;
    auto n = index_history(table, history_index_batch);
    if (!n) return std::move(n.error());
  }
  return caf::none;
}

caf::error kv_engine::check_horizon(const std::string& table, bool by_op, int64_t op_number,
                                    double ts) {
  auto s = stmt(table, "SELECT op_number, ts FROM litedrive_history_horizon WHERE tbl = ?1");
  if (!s) return std::move(s.error());
  reset_guard g{*s};
  bind_text(*s, 1, table);
  if (sqlite3_step(*s) != SQLITE_ROW) return caf::none; // nothing was ever trimmed
  auto horizon_op = sqlite3_column_int64(*s, 0);
  auto horizon_ts = sqlite3_column_double(*s, 1);
  if (by_op ? op_number <= horizon_op : ts < horizon_ts)
    return make_error(errc::history_unavailable,
                      by_op ? "op " + std::to_string(op_number)
                                  + " is older than the retained history (it starts after op "
                                  + std::to_string(horizon_op) + ")"
                            : "that time is older than the retained history of '" + table + "'");
  return caf::none;
}

caf::expected<int64_t> kv_engine::trim_history(const std::string& table, double now) {
  // Retention trims the oldest rows, a prefix in op_number order: those older than the age limit
  // and those beyond the row limit. Bounded work per sweep: 1000 rows read and deleted, and never
  // a scan past them (a WHERE over both limits made SQLite walk the whole history, every
  // second, in the write path, whenever fewer than 1000 rows were due).
  int64_t cut_by_rows = 0; // rows up to this op_number are beyond the row limit
  if (history_max_rows > 0) {
    auto mx = stmt(table, "SELECT max(op_number) FROM \"{n}_history\"");
    if (!mx) return std::move(mx.error());
    reset_guard g{*mx};
    if (sqlite3_step(*mx) != SQLITE_ROW) return failure("cannot read the history");
    cut_by_rows = sqlite3_column_int64(*mx, 0) - history_max_rows;
  }
  bool by_age = history_max_age_s > 0;
  double cutoff = now - static_cast<double>(history_max_age_s);
  auto s = stmt(table, "SELECT op_number, ts FROM \"{n}_history\" ORDER BY op_number LIMIT 1000");
  if (!s) return std::move(s.error());
  int64_t last_op = 0;
  double last_ts = 0;
  int64_t n = 0;
  {
    reset_guard g{*s};
    while (sqlite3_step(*s) == SQLITE_ROW) {
      auto op = sqlite3_column_int64(*s, 0);
      auto ts = sqlite3_column_double(*s, 1);
      if (op > cut_by_rows && !(by_age && ts < cutoff)) break;
      last_op = op;
      last_ts = ts;
      ++n;
    }
  }
  if (n == 0) return int64_t{0};
  // The by-key entries first, found through the rows about to go (bounded like them).
  for (const char* sql : {"DELETE FROM \"{n}_history_keys\" WHERE (key, op_number) IN "
                          "(SELECT key, op_number FROM \"{n}_history\" WHERE op_number <= ?1)",
                          "DELETE FROM \"{n}_history\" WHERE op_number <= ?1"}) {
    auto del = stmt(table, sql);
    if (!del) return std::move(del.error());
    reset_guard g{*del};
    sqlite3_bind_int64(*del, 1, last_op);
    if (sqlite3_step(*del) != SQLITE_DONE) return failure("cannot trim the history");
  }
  auto mark = stmt(
      table, "INSERT INTO litedrive_history_horizon (tbl, op_number, ts) VALUES (?1, ?2, ?3) "
             "ON CONFLICT (tbl) DO UPDATE SET op_number = excluded.op_number, ts = excluded.ts");
  if (!mark) return std::move(mark.error());
  reset_guard g{*mark};
  bind_text(*mark, 1, table);
  sqlite3_bind_int64(*mark, 2, last_op);
  sqlite3_bind_double(*mark, 3, last_ts);
  if (sqlite3_step(*mark) != SQLITE_DONE) return failure("cannot record the history horizon");
  return n;
}

caf::expected<kv_answer> kv_engine::diff(const kv_request& req, double now) {
  if (auto err = check_horizon(req.table, false, 0, req.from)) return err;
  auto s = stmt(req.table, "SELECT DISTINCT key FROM \"{n}_history\" WHERE ts > ?1 AND ts <= ?2 "
                           "ORDER BY key LIMIT ?3");
  if (!s) return std::move(s.error());
  std::vector<std::string> keys;
  {
    reset_guard g{*s};
    sqlite3_bind_double(*s, 1, req.from);
    sqlite3_bind_double(*s, 2, req.to);
    sqlite3_bind_int64(*s, 3, req.limit);
    while (sqlite3_step(*s) == SQLITE_ROW)
      keys.push_back(column_text(*s, 0));
  }
  std::string out = "{\"from\":";
  json_out::real(out, req.from);
  out += ",\"to\":";
  json_out::real(out, req.to);
  out += ",\"changes\":[";
  bool first = true;
  for (const auto& key : keys) {
    auto before = value_at(req.table, key, false, 0, req.from, now);
    if (!before) return std::move(before.error());
    auto after = value_at(req.table, key, false, 0, req.to, now);
    if (!after) return std::move(after.error());
    if (!first) out += ',';
    first = false;
    out += "{\"key\":";
    json_out::string(out, key);
    out += ",\"before\":";
    append_value(out, *before);
    out += ",\"after\":";
    append_value(out, *after);
    out += '}';
  }
  out += "]}";
  return kv_answer{true, std::move(out), -1};
}

namespace {

/// Every key the table holds now or has history for, in order.
constexpr const char* all_keys_sql =
    "SELECT key FROM {t} UNION SELECT key FROM \"{n}_history_keys\" ORDER BY 1";

} // namespace

caf::expected<std::vector<std::string>> kv_engine::keys_at(const kv_request& req) {
  if (auto err = check_horizon(req.table, false, 0, req.at_timestamp)) return err;
  auto s = stmt(req.table, all_keys_sql);
  if (!s) return std::move(s.error());
  std::vector<std::string> keys;
  reset_guard g{*s};
  while (sqlite3_step(*s) == SQLITE_ROW)
    keys.push_back(column_text(*s, 0));
  return keys;
}

caf::expected<kv_answer> kv_engine::table_snapshot(const kv_request& req, double now) {
  auto keys = keys_at(req);
  if (!keys) return std::move(keys.error());
  std::string out = "{\"timestamp\":";
  json_out::real(out, req.at_timestamp);
  out += ",\"keys\":[";
  bool first = true;
  for (const auto& key : *keys) {
    auto v = value_at(req.table, key, false, 0, req.at_timestamp, now);
    if (!v) return std::move(v.error());
    if (!*v) continue;
    if (!first) out += ',';
    first = false;
    out += "{\"key\":";
    json_out::string(out, key);
    out += ",\"value\":";
    out += **v;
    out += '}';
  }
  out += "]}";
  return kv_answer{true, std::move(out), -1};
}

caf::expected<kv_answer> kv_engine::table_rollback(const kv_request& req, double now,
                                                   bool apply_it) {
  auto keys = keys_at(req);
  if (!keys) return std::move(keys.error());
  std::string out = "{\"to_timestamp\":";
  json_out::real(out, req.at_timestamp);
  out += ",\"dry_run\":";
  out += apply_it ? "false" : "true";
  out += ",\"changes\":[";
  size_t changed = 0;
  for (const auto& key : *keys) {
    auto then = value_at(req.table, key, false, 0, req.at_timestamp, now);
    if (!then) return std::move(then.error());
    auto cur = load(req.table, key, now);
    if (!cur) return std::move(cur.error());
    std::optional<std::string> current;
    if (*cur) current = (*cur)->value;
    // Compare as JSON text normalised by SQLite, so formatting differences do not count.
    bool same = current.has_value() == then->has_value();
    if (same && current) {
      auto eq = stmt(req.table, "SELECT json(?1) = json(?2)");
      if (!eq) return std::move(eq.error());
      reset_guard g{*eq};
      bind_text(*eq, 1, *current);
      bind_text(*eq, 2, **then);
      same = sqlite3_step(*eq) == SQLITE_ROW && sqlite3_column_int(*eq, 0) == 1;
    }
    if (same) continue;
    if (changed++ > 0) out += ',';
    out += "{\"key\":";
    json_out::string(out, key);
    out += ",\"current\":";
    append_value(out, current);
    out += ",\"restored\":";
    append_value(out, *then);
    out += '}';
    if (apply_it) {
      auto v = apply(req.table, key, *then, std::nullopt, now, {"rollback", true});
      if (!v) return std::move(v.error());
    }
  }
  out += "],\"count\":";
  json_out::integer(out, static_cast<int64_t>(changed));
  out += '}';
  return kv_answer{true, std::move(out), -1};
}

caf::expected<kv_answer> kv_engine::rollback(const kv_request& req, double now) {
  auto s = stmt(req.table, "SELECT old_value, (SELECT count(*) FROM \"{n}_history_keys\" k2 "
                           "JOIN \"{n}_history\" h2 USING (op_number) WHERE k2.key = ?1) "
                           "FROM \"{n}_history_keys\" k JOIN \"{n}_history\" h USING (op_number) "
                           "WHERE k.key = ?1 ORDER BY k.op_number DESC LIMIT 1 OFFSET ?2");
  if (!s) return std::move(s.error());
  std::optional<std::string> target;
  {
    reset_guard g{*s};
    bind_text(*s, 1, req.key);
    sqlite3_bind_int64(*s, 2, req.steps - 1);
    if (sqlite3_step(*s) != SQLITE_ROW)
      return make_error(errc::history_unavailable, "key '" + req.key + "' has fewer than "
                                                       + std::to_string(req.steps)
                                                       + " recorded changes");
    if (sqlite3_column_type(*s, 0) != SQLITE_NULL) target = column_text(*s, 0);
  }
  auto cur = load(req.table, req.key, now);
  if (!cur) return std::move(cur.error());
  auto version = apply(req.table, req.key, target, *cur ? (*cur)->expires_at : std::nullopt, now,
                       {"rollback", true});
  if (!version) return std::move(version.error());
  return kv_answer{true,
                   key_answer(req.key, *version,
                              {{"value", target ? *target : std::string{"null"}},
                               {"steps", std::to_string(req.steps)}}),
                   target ? *version : -1};
}

caf::expected<kv_answer> kv_engine::sweep(double now) {
  int64_t swept = 0;
  for (const auto& table : tables_) {
    auto s = stmt(table, "SELECT key FROM {t} WHERE expires_at <= ?1 LIMIT 1000");
    if (!s) return std::move(s.error());
    std::vector<std::string> expired;
    {
      reset_guard g{*s};
      sqlite3_bind_double(*s, 1, now);
      while (sqlite3_step(*s) == SQLITE_ROW)
        expired.push_back(column_text(*s, 0));
    }
    for (const auto& key : expired) {
      auto done = apply(table, key, std::nullopt, std::nullopt, now, {"expire", true, "expiry"});
      if (!done) return std::move(done.error());
      ++swept;
    }
    auto trimmed = trim_history(table, now);
    if (!trimmed) return std::move(trimmed.error());
  }
  return kv_answer{true, "{\"swept\":" + std::to_string(swept) + "}", -1};
}

} // namespace litedrive
