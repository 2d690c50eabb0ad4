#pragma once
// The actor that owns one database file. It never blocks: SQL work goes to its SQLite worker
// (detached) and the answer comes back through a response promise, so the actor stays free for
// the messages that must not wait behind a long statement (stats now; the drive's lock requests
// once the FUSE bridge lands).

#include <chrono>
#include <cstdint>
#include <deque>

#include <memory>
#include <unordered_map>

#include "actors/guarded_lock_table.hpp"
#include "actors/wait_graph.hpp"
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
  sql_worker_actor worker;  ///< spawned on the first SQL request: lock-only databases need none
  std::deque<queued_op> queue;   ///< arrived while a group was being committed
  bool kv_used = false;          ///< the KV store is in use: the expiry sweep runs
  bool sweep_armed = false;
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
  // -- the drive's locks (database_locks.cpp) --
  /// Shared with the drive, which decides requests that need no waiting on its own threads.
  /// Holds the sinks of queued requests too: whoever grants a waiter answers it.
  std::shared_ptr<guarded_lock_table> locks;
  std::shared_ptr<wait_graph> graph;
  bool tick_armed = false;
  caf::actor_id self_id = 0;
  uint64_t attached = 0;  ///< drive inodes that cache this actor's handle
  /// Interrupts that overtook their lock request (sent from another FUSE thread): the request
  /// is answered EINTR when it arrives. Bounded; old entries are dropped first.
  std::deque<uint64_t> early_interrupts;

  /// Runs when the actor is gone: every queued lock request's sink answers EAGAIN as it is
  /// destroyed (no process stays in fcntl()), the drive stops deciding on the table, and the
  /// wait-for graph forgets it.
  ~database_state() {
    if (locks)
      locks->close();
    if (graph)
      graph->forget(self_id);
  }
  static inline const char* name = "litedrive.database";
};

database_actor::behavior_type database(database_actor::stateful_pointer<database_state> self,
                                       db_location loc, settings s,
                                       std::shared_ptr<wait_graph> graph);

// -- lock handling, in database_locks.cpp -------------------------------------------------------

using database_self = database_actor::stateful_pointer<database_state>;

void on_setlk(database_self self, const lock_request& req, lock_reply_sink_ptr sink);
void on_getlk(database_self self, const lock_request& req, const lock_reply_sink_ptr& sink);
void on_flush(database_self self, uint64_t owner, file_role file, const lock_reply_sink_ptr& sink);
void on_release(database_self self, uint64_t fh);
void on_interrupt(database_self self, uint64_t id);
void on_deadlock(database_self self, uint64_t id);
void on_lock_tick(database_self self);
void on_locks_changed(database_self self);
std::string locks_json(const database_state& st);
std::string locks_json(const database_state& st, const lock_table& table);

} // namespace litedrive
