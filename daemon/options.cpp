#include "daemon/options.hpp"

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <vector>

#include "schema/errc.hpp"

namespace litedrive {

namespace {

caf::error bad(const std::string& what) {
  return make_error(errc::invalid_parameter, what);
}

template <class T>
caf::error parse_number(const std::string& name, const std::string& text, T& out) {
  T value{};
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || ptr != text.data() + text.size())
    return bad("--" + name + " needs a whole number, got '" + text + "'");
  out = value;
  return caf::none;
}

caf::error parse_bool(const std::string& name, const std::string& text, bool& out) {
  if (text.empty() || text == "true" || text == "yes" || text == "1" || text == "on")
    out = true;
  else if (text == "false" || text == "no" || text == "0" || text == "off")
    out = false;
  else
    return bad("--" + name + " takes true or false, got '" + text + "'");
  return caf::none;
}

caf::error parse_address(const std::string& name, const std::string& text, std::string& host_out,
                         uint16_t& port_out) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos) return bad("--" + name + " needs HOST:PORT, got '" + text + "'");
  auto host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (host.empty()) return bad("--" + name + " needs a host before the port");
  unsigned port = 0;
  if (auto err = parse_number(name, text.substr(colon + 1), port)) return err;
  if (port > 65535) return bad("--" + name + " port must be 0..65535");
  host_out = host;
  port_out = static_cast<uint16_t>(port);
  return caf::none;
}

caf::error parse_ms(const std::string& name, const std::string& text,
                    std::chrono::milliseconds& out) {
  int64_t v = 0;
  if (auto err = parse_number(name, text, v)) return err;
  if (v < 0) return bad("--" + name + " must not be negative");
  out = std::chrono::milliseconds{v};
  return caf::none;
}

struct option_def {
  const char* name;
  const char* arg;
  const char* help;
  std::function<caf::error(options&, const std::string&)> apply;
  std::function<std::string(const options&)> current;
};

const std::vector<option_def>& option_table() {
  static const std::vector<option_def> table = {
      {"store", "DIR", "backing directory that holds the databases (created if missing)",
       [](options& o, const std::string& v) {
         o.cfg.store = v;
         return caf::error{};
       },
       [](const options& o) { return o.cfg.store; }},
      {"state", "DIR", "litedrive's own files, such as the query history (created if missing)",
       [](options& o, const std::string& v) {
         o.cfg.state = v;
         return caf::error{};
       },
       [](const options& o) { return o.cfg.state; }},
      {"query-history-max", "N", "SQL requests kept in the query history, the oldest go first",
       [](options& o, const std::string& v) {
         return parse_number("query-history-max", v, o.cfg.query_history_max);
       },
       [](const options& o) { return std::to_string(o.cfg.query_history_max); }},
      {"store-mode", "OCTAL", "mode given to the store when litedrive creates it (1777: like /tmp)",
       [](options& o, const std::string& v) {
         char* end = nullptr;
         auto mode = std::strtoul(v.c_str(), &end, 8);
         if (v.empty() || *end != '\0' || mode > 07777)
           return bad("--store-mode needs an octal mode such as 1777 or 0755");
         o.cfg.store_mode = static_cast<unsigned>(mode);
         return caf::error{};
       },
       [](const options& o) {
         char buf[8];
         std::snprintf(buf, sizeof(buf), "%04o", o.cfg.store_mode);
         return std::string{buf};
       }},
      {"mount", "DIR", "where the FUSE drive appears (--mount= with nothing: no drive)",
       [](options& o, const std::string& v) {
         o.cfg.mount = v;
         return caf::error{};
       },
       [](const options& o) { return o.cfg.mount; }},
      {"http", "HOST:PORT", "HTTP listen address; port 0 picks a free port and logs it",
       [](options& o, const std::string& v) {
         return parse_address("http", v, o.cfg.http_host, o.cfg.http_port);
       },
       [](const options& o) { return o.cfg.http_host + ":" + std::to_string(o.cfg.http_port); }},
      {"inspect", "HOST:PORT",
       "CAF remote inspection actor (read-only; litedrive-inspect); empty: off",
       [](options& o, const std::string& v) {
         if (v.empty()) {
           o.cfg.inspect_host.clear();
           return caf::error{};
         }
         return parse_address("inspect", v, o.cfg.inspect_host, o.cfg.inspect_port);
       },
       [](const options& o) {
         return o.cfg.inspect_host.empty()
                    ? std::string{}
                    : o.cfg.inspect_host + ":" + std::to_string(o.cfg.inspect_port);
       }},
      {"allow-any-absolute-db-path", "[BOOL]", "accept absolute ?db= paths (used verbatim)",
       [](options& o, const std::string& v) {
         return parse_bool("allow-any-absolute-db-path", v, o.cfg.allow_any_absolute_db_path);
       },
       [](const options& o) {
         return std::string{o.cfg.allow_any_absolute_db_path ? "true" : "false"};
       }},
      {"log-level", "LEVEL", "trace, debug, info, warn, error, critical or off",
       [](options& o, const std::string& v) {
         static const char* levels[] = {"trace", "debug",    "info", "warn",
                                        "error", "critical", "off"};
         for (auto* l : levels)
           if (v == l) {
             o.cfg.log_level = v;
             return caf::error{};
           }
         return bad("--log-level: unknown level '" + v + "'");
       },
       [](const options& o) { return o.cfg.log_level; }},
      {"http-threads", "N", "RESTinio I/O threads",
       [](options& o, const std::string& v) {
         return parse_number("http-threads", v, o.cfg.http_threads);
       },
       [](const options& o) { return std::to_string(o.cfg.http_threads); }},
      {"max-body-bytes", "N", "largest accepted request body (larger: 413 PAYLOAD_TOO_LARGE)",
       [](options& o, const std::string& v) {
         return parse_number("max-body-bytes", v, o.cfg.max_body_bytes);
       },
       [](const options& o) { return std::to_string(o.cfg.max_body_bytes); }},
      {"max-json-depth", "N",
       "nesting of arrays and objects in a JSON body or KV value (deeper: 400 INVALID_JSON)",
       [](options& o, const std::string& v) {
         return parse_number("max-json-depth", v, o.cfg.max_json_depth);
       },
       [](const options& o) { return std::to_string(o.cfg.max_json_depth); }},
      {"max-connections", "N", "concurrent HTTP connections (more wait in the accept queue)",
       [](options& o, const std::string& v) {
         return parse_number("max-connections", v, o.cfg.max_connections);
       },
       [](const options& o) { return std::to_string(o.cfg.max_connections); }},
      {"max-items", "N", "items per transaction (more: 400 TOO_MANY_ITEMS)",
       [](options& o, const std::string& v) {
         return parse_number("max-items", v, o.cfg.max_items);
       },
       [](const options& o) { return std::to_string(o.cfg.max_items); }},
      {"statement-timeout-ms", "MS", "run time of one request's SQL (then 408 QUERY_TIMEOUT)",
       [](options& o, const std::string& v) {
         return parse_ms("statement-timeout-ms", v, o.cfg.statement_timeout);
       },
       [](const options& o) { return std::to_string(o.cfg.statement_timeout.count()); }},
      {"busy-timeout-ms", "MS", "wait for locks held by other processes (then 503 DATABASE_BUSY)",
       [](options& o, const std::string& v) {
         return parse_ms("busy-timeout-ms", v, o.cfg.busy_timeout);
       },
       [](const options& o) { return std::to_string(o.cfg.busy_timeout.count()); }},
      {"max-result-rows", "N", "rows in one result set (more: 413 RESULT_TOO_LARGE)",
       [](options& o, const std::string& v) {
         return parse_number("max-result-rows", v, o.cfg.max_result_rows);
       },
       [](const options& o) { return std::to_string(o.cfg.max_result_rows); }},
      {"max-result-bytes", "N", "bytes of one JSON answer (more: 413 RESULT_TOO_LARGE)",
       [](options& o, const std::string& v) {
         return parse_number("max-result-bytes", v, o.cfg.max_result_bytes);
       },
       [](const options& o) { return std::to_string(o.cfg.max_result_bytes); }},
      {"sql-max-value-bytes", "N",
       "largest string or blob one SQL value may become (larger: 400 SQL_ERROR)",
       [](options& o, const std::string& v) {
         return parse_number("sql-max-value-bytes", v, o.cfg.sql_max_value_bytes);
       },
       [](const options& o) { return std::to_string(o.cfg.sql_max_value_bytes); }},
      {"sql-max-statement-bytes", "N", "longest SQL statement (longer: 400 SQL_ERROR)",
       [](options& o, const std::string& v) {
         return parse_number("sql-max-statement-bytes", v, o.cfg.sql_max_statement_bytes);
       },
       [](const options& o) { return std::to_string(o.cfg.sql_max_statement_bytes); }},
      {"sqlite-heap-max-bytes", "N",
       "memory all SQLite connections together may hold (then a statement fails with SQLITE_NOMEM)",
       [](options& o, const std::string& v) {
         return parse_number("sqlite-heap-max-bytes", v, o.cfg.sqlite_heap_max_bytes);
       },
       [](const options& o) { return std::to_string(o.cfg.sqlite_heap_max_bytes); }},
      {"synchronous", "MODE",
       "PRAGMA synchronous of litedrive's connections: OFF, NORMAL, FULL, EXTRA",
       [](options& o, const std::string& v) {
         for (auto* m : {"OFF", "NORMAL", "FULL", "EXTRA"})
           if (v == m) {
             o.cfg.synchronous = v;
             return caf::error{};
           }
         return bad("--synchronous must be OFF, NORMAL, FULL or EXTRA");
       },
       [](const options& o) { return o.cfg.synchronous; }},
      {"group-commit-max", "N", "HTTP transactions combined into one SQLite commit, at most",
       [](options& o, const std::string& v) {
         return parse_number("group-commit-max", v, o.cfg.group_commit_max);
       },
       [](const options& o) { return std::to_string(o.cfg.group_commit_max); }},
      {"wal-autocheckpoint", "PAGES",
       "litedrive's writer checkpoints the WAL when it holds this many pages (0: never)",
       [](options& o, const std::string& v) {
         return parse_number("wal-autocheckpoint", v, o.cfg.wal_autocheckpoint);
       },
       [](const options& o) { return std::to_string(o.cfg.wal_autocheckpoint); }},
      {"wal-write-buffer", "BYTES",
       "a commit's WAL frames go to the file in one write of up to this much (0: one per frame)",
       [](options& o, const std::string& v) {
         return parse_number("wal-write-buffer", v, o.cfg.wal_write_buffer);
       },
       [](const options& o) { return std::to_string(o.cfg.wal_write_buffer); }},
      {"kv-batch-max", "N", "keys in one KV batch request (more: 400 TOO_MANY_ITEMS)",
       [](options& o, const std::string& v) {
         return parse_number("kv-batch-max", v, o.cfg.kv_batch_max);
       },
       [](const options& o) { return std::to_string(o.cfg.kv_batch_max); }},
      {"kv-sweep-ms", "MS", "how often expired keys are deleted (they are invisible at once)",
       [](options& o, const std::string& v) { return parse_ms("kv-sweep-ms", v, o.cfg.kv_sweep); },
       [](const options& o) { return std::to_string(o.cfg.kv_sweep.count()); }},
      {"history-max-age-s", "S", "KV history older than this is deleted (0: keep forever)",
       [](options& o, const std::string& v) {
         return parse_number("history-max-age-s", v, o.cfg.history_max_age_s);
       },
       [](const options& o) { return std::to_string(o.cfg.history_max_age_s); }},
      {"history-max-rows", "N", "KV history rows kept per table, the oldest go first (0: all)",
       [](options& o, const std::string& v) {
         return parse_number("history-max-rows", v, o.cfg.history_max_rows);
       },
       [](const options& o) { return std::to_string(o.cfg.history_max_rows); }},
      {"history-index-batch", "N",
       "new KV history rows are added to the by-key history in batches of N (N >= 1)",
       [](options& o, const std::string& v) -> caf::error {
         if (auto err = parse_number("history-index-batch", v, o.cfg.history_index_batch))
           return err;
         if (o.cfg.history_index_batch < 1) return bad("--history-index-batch must be at least 1");
         return caf::none;
       },
       [](const options& o) { return std::to_string(o.cfg.history_index_batch); }},
      {"lock-wait-max-ms", "MS",
       "longest wait litedrive adds to a non-blocking lock request (then EAGAIN)",
       [](options& o, const std::string& v) {
         return parse_ms("lock-wait-max-ms", v, o.cfg.lock_wait_max);
       },
       [](const options& o) { return std::to_string(o.cfg.lock_wait_max.count()); }},
      {"mount-allow-other", "[BOOL]",
       "let other users and containers use the drive (FUSE allow_other)",
       [](options& o, const std::string& v) {
         return parse_bool("mount-allow-other", v, o.cfg.mount_allow_other);
       },
       [](const options& o) { return std::string{o.cfg.mount_allow_other ? "true" : "false"}; }},
      {"drive-writeback-cache", "[BOOL]",
       "FUSE writeback cache: faster bulk writes, kernel-side O_APPEND",
       [](options& o, const std::string& v) {
         return parse_bool("drive-writeback-cache", v, o.cfg.drive_writeback_cache);
       },
       [](const options& o) {
         return std::string{o.cfg.drive_writeback_cache ? "true" : "false"};
       }},
      {"drive-io-uring", "[BOOL]",
       "FUSE over io_uring (Linux >= 6.14; turns fuse's enable_uring on): requests served on their "
       "caller's CPU",
       [](options& o, const std::string& v) {
         return parse_bool("drive-io-uring", v, o.cfg.drive_io_uring);
       },
       [](const options& o) { return std::string{o.cfg.drive_io_uring ? "true" : "false"}; }},
      {"drive-direct-writes", "[BOOL]",
       "litedrive's own SQLite writes go straight to the store (locks via the mount)",
       [](options& o, const std::string& v) {
         return parse_bool("drive-direct-writes", v, o.cfg.drive_direct_writes);
       },
       [](const options& o) { return std::string{o.cfg.drive_direct_writes ? "true" : "false"}; }},
      {"attr-timeout-ms", "MS", "how long the kernel caches entries and attributes of the drive",
       [](options& o, const std::string& v) {
         return parse_ms("attr-timeout-ms", v, o.cfg.attr_timeout);
       },
       [](const options& o) { return std::to_string(o.cfg.attr_timeout.count()); }},
      {"actor-scheduler", "POLICY",
       "sharing (sleep when idle) or spinning (poll ~2 ms before sleeping)",
       [](options& o, const std::string& v) {
         if (v != "sharing" && v != "spinning")
           return bad("--actor-scheduler must be sharing or spinning");
         o.cfg.actor_scheduler = v;
         return caf::error{};
       },
       [](const options& o) { return o.cfg.actor_scheduler; }},
      {"actor-threads", "N", "CAF scheduler threads (SQLite and FUSE have their own)",
       [](options& o, const std::string& v) {
         return parse_number("actor-threads", v, o.cfg.actor_threads);
       },
       [](const options& o) { return std::to_string(o.cfg.actor_threads); }},
      {"idle-close-ms", "MS", "close a database unused for this long (0: never)",
       [](options& o, const std::string& v) {
         return parse_ms("idle-close-ms", v, o.cfg.idle_close);
       },
       [](const options& o) { return std::to_string(o.cfg.idle_close.count()); }},
      {"port-file", "FILE", "write the bound HTTP port to FILE once serving",
       [](options& o, const std::string& v) {
         o.port_file = v;
         return caf::error{};
       },
       [](const options& o) { return o.port_file; }},
  };
  return table;
}

caf::error apply(options& o, const std::string& name, const std::string& value, bool has_value) {
  for (const auto& def : option_table()) {
    if (name != def.name) continue;
    if (!has_value && def.arg[0] != '[')
      return bad("--" + name + " needs a value (--" + name + "=" + def.arg + ")");
    return def.apply(o, value);
  }
  return bad("unknown option --" + name + " (see --help)");
}

caf::error read_config_file(options& o, const std::string& path) {
  std::ifstream in{path};
  if (!in) return bad("cannot read config file '" + path + "'");
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    auto hash = line.find('#');
    if (hash != std::string::npos) line.erase(hash);
    auto trim = [](std::string s) {
      auto b = s.find_first_not_of(" \t\r");
      auto e = s.find_last_not_of(" \t\r");
      return b == std::string::npos ? std::string{} : s.substr(b, e - b + 1);
    };
    line = trim(line);
    if (line.empty()) continue;
    auto eq = line.find('=');
    auto key = trim(eq == std::string::npos ? line : line.substr(0, eq));
    auto value = eq == std::string::npos ? std::string{} : trim(line.substr(eq + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"')
      value = value.substr(1, value.size() - 2);
    if (auto err = apply(o, key, value, eq != std::string::npos))
      return bad(path + ":" + std::to_string(lineno) + ": " + view(err).message);
  }
  return caf::none;
}

} // namespace

caf::expected<options> parse_options(int argc, char** argv) {
  options o;
  std::vector<std::pair<std::string, std::pair<std::string, bool>>> args;
  std::string config_file;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      o.help = true;
      continue;
    }
    if (a == "--version") {
      o.version = true;
      continue;
    }
    if (a.rfind("--", 0) != 0)
      return bad("unexpected argument '" + a + "' (options look like --name=value)");
    auto eq = a.find('=');
    auto name = a.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
    bool has_value = eq != std::string::npos;
    std::string value = has_value ? a.substr(eq + 1) : std::string{};
    // "--name value" form for options that need a value.
    if (!has_value && i + 1 < argc && std::string{argv[i + 1]}.rfind("--", 0) != 0) {
      bool takes_value = name == "config";
      for (const auto& def : option_table())
        if (name == def.name && def.arg[0] != '[') takes_value = true;
      if (takes_value) {
        value = argv[++i];
        has_value = true;
      }
    }
    if (name == "config") {
      if (!has_value) return bad("--config needs a file");
      config_file = value;
      continue;
    }
    args.push_back({name, {value, has_value}});
  }
  if (!config_file.empty())
    if (auto err = read_config_file(o, config_file)) return err;
  for (auto& [name, v] : args)
    if (auto err = apply(o, name, v.first, v.second)) return err;
  return o;
}

std::string help_text() {
  options defaults;
  std::ostringstream out;
  out << "litedrive: SQLite for every workload on a host: a FUSE drive where concurrent writers\n"
         "wait their turn instead of failing, and the hoody-sqlite HTTP API on the same files.\n\n"
         "usage: litedrive [--config=FILE] [--name=value ...]\n\n"
         "  --config=FILE    read options from FILE first: one 'name = value' per line, '#' "
         "starts\n"
         "                   a comment; the command line overrides the file\n"
         "  --help           print this text and exit\n"
         "  --version        print the version and exit\n";
  for (const auto& def : option_table()) {
    std::string left = std::string{"  --"} + def.name + "=" + def.arg;
    out << left;
    if (left.size() < 36)
      out << std::string(36 - left.size(), ' ');
    else
      out << "\n" << std::string(36, ' ');
    auto cur = def.current(defaults);
    out << def.help << " [default: " << (cur.empty() ? "\"\"" : cur) << "]\n";
  }
  return out.str();
}

} // namespace litedrive
