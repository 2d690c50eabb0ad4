#pragma once
// The actor that owns one database file. It never blocks: SQL work goes to its SQLite worker
// (detached) and the answer comes back through a response promise, so the actor stays free for
// the messages that must not wait behind a long statement (stats now; the drive's lock requests
// once the FUSE bridge lands).

#include <chrono>
#include <cstdint>
#include <deque>

#include "schema/interfaces.hpp"
#include "schema/settings.hpp"

namespace litedrive {

struct database_state {
  /// A transaction waiting for the next group commit.
  struct queued_txn {
    sql_txn txn;
    caf::typed_response_promise<std::string> promise;
  };

  db_location loc;
  settings cfg;
  sql_worker_actor worker;
  std::deque<queued_txn> queue;  ///< arrived while a group was being committed
  bool committing = false;       ///< a group is at the worker
  uint64_t groups = 0;           ///< group commits done
  uint64_t grouped_txns = 0;     ///< transactions they carried
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
