#include "actors/sql_policy.hpp"

#include <cstring>

namespace litedrive::sql_policy {

namespace {

bool in(const char* name, std::initializer_list<const char*> list) {
  if (name == nullptr) return false;
  for (auto* x : list)
    if (sqlite3_stricmp(x, name) == 0) return true;
  return false;
}

/// SQLite's built-in functions a client may call: core scalars, aggregates and window
/// functions, date and time, math, JSON, and the FTS and R*Tree auxiliaries.
bool function_allowed(const char* name) {
  return in(name, {
                      // core
                      "abs",
                      "changes",
                      "char",
                      "coalesce",
                      "concat",
                      "concat_ws",
                      "format",
                      "glob",
                      "hex",
                      "ifnull",
                      "iif",
                      "instr",
                      "last_insert_rowid",
                      "length",
                      "like",
                      "likelihood",
                      "likely",
                      "lower",
                      "ltrim",
                      "max",
                      "min",
                      "nullif",
                      "octet_length",
                      "printf",
                      "quote",
                      "random",
                      "randomblob",
                      "replace",
                      "round",
                      "rtrim",
                      "sign",
                      "soundex",
                      "sqlite_compileoption_get",
                      "sqlite_compileoption_used",
                      "sqlite_offset",
                      "sqlite_source_id",
                      "sqlite_version",
                      "substr",
                      "substring",
                      "total_changes",
                      "trim",
                      "typeof",
                      "unhex",
                      "unicode",
                      "unlikely",
                      "upper",
                      "zeroblob",
                      // aggregates and window functions
                      "avg",
                      "count",
                      "group_concat",
                      "string_agg",
                      "sum",
                      "total",
                      "row_number",
                      "rank",
                      "dense_rank",
                      "percent_rank",
                      "cume_dist",
                      "ntile",
                      "lag",
                      "lead",
                      "first_value",
                      "last_value",
                      "nth_value",
                      // date and time
                      "date",
                      "time",
                      "datetime",
                      "julianday",
                      "unixepoch",
                      "strftime",
                      "timediff",
                      "current_date",
                      "current_time",
                      "current_timestamp",
                      // math
                      "acos",
                      "acosh",
                      "asin",
                      "asinh",
                      "atan",
                      "atan2",
                      "atanh",
                      "ceil",
                      "ceiling",
                      "cos",
                      "cosh",
                      "degrees",
                      "exp",
                      "floor",
                      "ln",
                      "log",
                      "log10",
                      "log2",
                      "mod",
                      "pi",
                      "pow",
                      "power",
                      "radians",
                      "sin",
                      "sinh",
                      "sqrt",
                      "tan",
                      "tanh",
                      "trunc",
                      // JSON (-> and ->> are functions too)
                      "json",
                      "json_array",
                      "json_array_length",
                      "json_error_position",
                      "json_extract",
                      "json_insert",
                      "json_object",
                      "json_patch",
                      "json_pretty",
                      "json_quote",
                      "json_remove",
                      "json_replace",
                      "json_set",
                      "json_type",
                      "json_valid",
                      "json_group_array",
                      "json_group_object",
                      "jsonb",
                      "jsonb_array",
                      "jsonb_extract",
                      "jsonb_insert",
                      "jsonb_object",
                      "jsonb_patch",
                      "jsonb_remove",
                      "jsonb_replace",
                      "jsonb_set",
                      "jsonb_group_array",
                      "jsonb_group_object",
                      "->",
                      "->>",
                      // full-text search and R*Tree (fts3_tokenizer and fts5() are NOT here: they
                      // hand out or take code pointers)
                      "match",
                      "matchinfo",
                      "offsets",
                      "snippet",
                      "optimize",
                      "highlight",
                      "bm25",
                      "fts5_source_id",
                      "rtreecheck",
                  });
}

/// Pragmas that only read, with or without an argument (an object name or a count).
bool pragma_reads(const char* name) {
  return in(name, {"application_id",   "auto_vacuum",   "collation_list", "compile_options",
                   "data_version",     "database_list", "encoding",       "foreign_key_check",
                   "foreign_key_list", "foreign_keys",  "freelist_count", "function_list",
                   "index_info",       "index_list",    "index_xinfo",    "integrity_check",
                   "journal_mode",     "module_list",   "page_count",     "page_size",
                   "pragma_list",      "quick_check",   "schema_version", "table_info",
                   "table_list",       "table_xinfo",   "user_version"});
}

/// Pragmas a transaction item may run with an argument: values stored in the file's header
/// for the application, and maintenance that changes no setting.
bool pragma_writes(const char* name) {
  return in(name, {"user_version", "application_id", "optimize", "incremental_vacuum",
                   "wal_checkpoint", "shrink_memory"});
}

verdict refuse(std::string what) {
  verdict v;
  v.code = SQLITE_DENY;
  v.refused = std::move(what);
  return v;
}

verdict refuse_write() {
  verdict v;
  v.code = SQLITE_DENY;
  v.write = true;
  return v;
}

} // namespace

verdict authorize(access who, int action, const char* a1, const char* a2) {
  switch (action) {
  case SQLITE_FUNCTION:
    // a1 is NULL; a2 is the function's name.
    if (function_allowed(a2)) return {};
    return refuse(std::string{"function "} + (a2 ? a2 : "?"));
  case SQLITE_PRAGMA:
    if (pragma_reads(a1)
        && (a2 == nullptr
            || in(a1, {"foreign_key_check", "foreign_key_list", "index_info", "index_list",
                       "index_xinfo", "integrity_check", "quick_check", "table_info", "table_list",
                       "table_xinfo"})))
      return {};
    if (who == access::read_only) return refuse_write();
    if (pragma_writes(a1)) return {};
    return refuse(std::string{"PRAGMA "} + (a1 ? a1 : "?") + (a2 ? " = " + std::string{a2} : ""));
  case SQLITE_ATTACH:
  case SQLITE_DETACH:
    // ATTACH would reach any file on the host, as root.
    return who == access::read_only ? refuse_write() : refuse("ATTACH and DETACH");
  case SQLITE_SELECT:
  case SQLITE_READ:
  case SQLITE_RECURSIVE:
    return {};
  case SQLITE_UPDATE:
    // A virtual table's constructor (FTS) re-reads its CREATE statement while a query is
    // prepared, which SQLite reports as an update of sqlite_master. The read-only endpoint's
    // connection cannot write anyway, and its statements are checked with
    // sqlite3_stmt_readonly() after they are prepared.
    if (a1 != nullptr
        && (sqlite3_stricmp(a1, "sqlite_master") == 0 || sqlite3_stricmp(a1, "sqlite_schema") == 0))
      return {};
    return who == access::read_only ? refuse_write() : verdict{};
  default:
    // Everything else writes or changes something: fine for items (the engine keeps them off
    // its own transaction statements), refused on the read-only endpoint.
    if (who == access::read_only) return refuse_write();
    return {};
  }
}

std::vector<limit> limits(const settings& s) {
  auto clamp = [](size_t v) { return static_cast<int>(std::min<size_t>(v, 1000000000)); };
  return {
      {"length", SQLITE_LIMIT_LENGTH, clamp(s.sql_max_value_bytes)},
      {"sql_length", SQLITE_LIMIT_SQL_LENGTH, clamp(s.sql_max_statement_bytes)},
      {"column", SQLITE_LIMIT_COLUMN, 2000},
      {"expr_depth", SQLITE_LIMIT_EXPR_DEPTH, 1000},
      {"compound_select", SQLITE_LIMIT_COMPOUND_SELECT, 500},
      {"vdbe_op", SQLITE_LIMIT_VDBE_OP, 250000000},
      {"function_arg", SQLITE_LIMIT_FUNCTION_ARG, 127},
      {"attached", SQLITE_LIMIT_ATTACHED, 0},
      {"like_pattern_length", SQLITE_LIMIT_LIKE_PATTERN_LENGTH, 50000},
      {"variable_number", SQLITE_LIMIT_VARIABLE_NUMBER, 32766},
      {"trigger_depth", SQLITE_LIMIT_TRIGGER_DEPTH, 100},
      {"worker_threads", SQLITE_LIMIT_WORKER_THREADS, 0},
  };
}

void harden(sqlite3* db, const settings& s) {
  sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, nullptr);
  sqlite3_db_config(db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, nullptr);
  sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, nullptr);
  sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_TRIGGER, 1, nullptr);
  for (const auto& l : limits(s))
    sqlite3_limit(db, l.id, l.value);
}

} // namespace litedrive::sql_policy
