#pragma once
// Every tunable of the daemon, with its embedded default. daemon/options.cpp fills this from the
// command line and the config file; the README's configuration table lists the same names.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

namespace litedrive {

/// The nesting limit of JSON bodies and values (issue 17): deep enough for any real document.
constexpr size_t default_max_json_depth = 512;

struct settings {
  // -- locations --------------------------------------------------------------
  std::string store = "/var/lib/litedrive/store"; ///< backing directory
  std::string state = "/var/lib/litedrive/state"; ///< litedrive's own files (query history)
  int64_t query_history_max = 10000;              ///< entries kept, the oldest go first
  unsigned store_mode = 01777; ///< mode of the store when litedrive creates it (shared, sticky)
  std::string mount = "/hoody/databases";  ///< FUSE mount point ("" = no drive)
  bool allow_any_absolute_db_path = false; ///< accept `?db=/abs/path.db`
  bool open_through_mount = false; ///< set at start-up once the mount is up: litedrive opens
                                   ///< its own databases through it (one cache, one lock table)

  // -- HTTP -------------------------------------------------------------------
  std::string http_host = "127.0.0.1";
  uint16_t http_port = 8420; ///< 0 = pick a free port and log it
  size_t http_threads = 1;   ///< RESTinio I/O threads
  /// Where the CAF remote inspection actor is published (empty host: not published).
  std::string inspect_host = "127.0.0.1";
  uint16_t inspect_port = 8421;
  size_t max_body_bytes = 4u << 20; ///< larger bodies get 413
  size_t max_json_depth =
      default_max_json_depth;     ///< nesting of JSON bodies and values (deeper: 400)
  size_t max_connections = 1024;  ///< concurrent HTTP connections
  std::string web_console = "on"; ///< "on"/"off": serve the SQL console at /

  // -- SQL --------------------------------------------------------------------
  size_t max_items = 1000;                           ///< items per transaction
  std::chrono::milliseconds statement_timeout{5000}; ///< per request, then SQLITE_INTERRUPT
  std::chrono::milliseconds busy_timeout{5000};      ///< wait for other processes' locks
  size_t max_result_rows = 100000;                   ///< rows per result set
  size_t max_result_bytes = 32u << 20;               ///< bytes of one JSON response
  size_t sql_max_value_bytes = 16u << 20;    ///< largest string or blob SQLite makes (LIMIT_LENGTH)
  size_t sql_max_statement_bytes = 4u << 20; ///< longest SQL statement (LIMIT_SQL_LENGTH)
  size_t sqlite_heap_max_bytes = 1024u << 20; ///< all of SQLite's memory (hard heap limit)
  std::string synchronous = "FULL";           ///< PRAGMA synchronous for litedrive's connections
  size_t group_commit_max = 256;              ///< transactions combined into one commit, at most
  /// A commit's WAL frames are written to the file in one write of up to this many bytes
  /// (actors/wal_vfs.hpp); 0: one write per frame header and page, as SQLite does by itself.
  size_t wal_write_buffer = 1u << 20;
  /// WAL pages after which litedrive's writer checkpoints (SQLite's wal_autocheckpoint; 0: never)
  int wal_autocheckpoint = 10000;

  // -- key-value store --
  size_t kv_batch_max = 100;                  ///< keys per batch request
  std::chrono::milliseconds kv_sweep{1000};   ///< how often expired keys are deleted
  int64_t history_max_age_s = 30 * 24 * 3600; ///< KV history older than this is deleted (0: keep)
  int64_t history_max_rows = 1000000;         ///< per table, the oldest beyond this (0: keep)
  int64_t history_index_batch = 8192; ///< history rows added to TABLE_history_keys at a time

  // -- the drive --
  std::chrono::milliseconds lock_wait_max{30000}; ///< cap on waits litedrive adds to F_SETLK
  bool mount_allow_other = true;      ///< other users (and containers) may use the mount
  bool drive_writeback_cache = false; ///< FUSE writeback cache (faster bulk writes)
  /// FUSE over io_uring where the kernel has it (>= 6.14): one queue per CPU, requests served
  /// on the CPU of their caller; turns the fuse module's enable_uring on if it is off.
  bool drive_io_uring = true;
  /// litedrive's own SQLite connections write straight to the store and invalidate the mount's
  /// cache (locks and names still go through the mount); false: everything through the mount.
  bool drive_direct_writes = true;
  std::chrono::milliseconds attr_timeout{1000}; ///< kernel attribute/entry cache time

  // -- actors -----------------------------------------------------------------
  /// "sharing": idle CAF workers sleep on a condition variable (no CPU when idle, a thread
  /// wake-up per message); "spinning": work stealing that polls for a while before sleeping.
  std::string actor_scheduler = "sharing";
  size_t actor_threads = 1;     ///< CAF scheduler threads; 1 measured best on 2 cores (fewer
                                ///< cross-CPU wakeups per lock request), SQLite runs on its own
  bool detached_workers = true; ///< SQLite work on its own thread (tests: false)
  std::chrono::milliseconds idle_close{std::chrono::minutes{5}}; ///< close idle databases

  // -- logging ----------------------------------------------------------------
  std::string log_level = "info";

  /// How long a front end waits for an actor's answer: every limit that can delay an answer
  /// plus slack, and always below RESTinio's handle_request_timeout (see http_server.cpp).
  std::chrono::milliseconds request_timeout() const {
    return statement_timeout + busy_timeout + std::chrono::milliseconds{2000};
  }
};

} // namespace litedrive
