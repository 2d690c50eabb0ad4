#pragma once
// The actor that owns one database file. It never blocks: SQL work goes to its SQLite worker
// (detached) and the answer comes back through a response promise, so the actor stays free for
// the messages that must not wait behind a long statement. The drive's byte-range locks of the
// same file are not here: they live in its lock service (actors/lock_service.hpp).

#include <chrono>
#include <cstdint>
#include <deque>

#include <memory>
#include <unordered_map>

#include "schema/interfaces.hpp"
#include "schema/settings.hpp"

namespace litedrive {

struct database_state {
  /// An operation waiting for the next group commit, and where its outcome goes (no sink for
  /// the actor's own work, such as the expiry sweep).
  struct queued_op {
    db_op op;
    op_reply_sink_ptr sink;
  };

  db_location loc;
  settings cfg;
  sql_worker_actor worker;     ///< spawned on the first SQL request: lock-only databases need none
  std::deque<queued_op> queue; ///< arrived while a group was being committed
  bool kv_used = false;        ///< the KV store is in use: the expiry sweep runs
  bool sweep_armed = false;
  bool committing = false;   ///< a group is at the worker
  uint64_t groups = 0;       ///< group commits done
  uint64_t grouped_txns = 0; ///< transactions they carried
  // -- counters (reported by stats) --
  uint64_t requests = 0;
  uint64_t failures = 0;
  uint64_t in_flight = 0;
  uint64_t total_latency_us = 0;
  uint64_t max_latency_us = 0;
  std::chrono::steady_clock::time_point opened_at;
  bool closing = false;
  static inline const char* name = "litedrive.database";
};

database_actor::behavior_type database(database_actor::stateful_pointer<database_state> self,
                                       db_location loc, settings s);

} // namespace litedrive
