#pragma once
// The byte-range locks of one database: its lock table, the sinks of the requests waiting in
// it, and the ONE way to change them. Every caller — the drive's FUSE threads (the kernel's
// requests), litedrive's own SQLite threads (drive_io) and the lock watchdog (deadlocks, the
// wait cap) — calls these functions; each one runs under the service's mutex, decides at once,
// and answers the sinks of the requests it ended after the mutex is released.
//
// A request that must wait is queued here with its sink and answered later by whichever call
// ends its wait (an unlock, a FLUSH, an interrupt, the watchdog): no thread waits for it, and
// no message stands between the request and the table, so no two threads can see the table in
// different orders. After a change that leaves or found waiters the service calls `wake` (once
// per change; lock_registry coalesces them), so the watchdog checks the cross-database wait-for
// graph and arms the wait cap.
//
// Lock order: the mutex is a leaf. It is never held while a sink answers (a FUSE reply) or
// while `wake` runs; so the FUSE interrupt callback, which libfuse calls holding the request's
// own lock, may call interrupt() directly.

#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "actors/lock_table.hpp"
#include "actors/wait_graph.hpp"

namespace litedrive {

class lock_service {
public:
  using clock = lock_table::clock;

  /// `name`: the database as the API names it (logs and /locks); `wake`: the watchdog's cue.
  lock_service(std::string name, std::chrono::milliseconds max_wait, std::function<void()> wake);

  /// The sinks of requests still waiting are destroyed unanswered: each answers its fallback.
  ~lock_service();

  lock_service(const lock_service&) = delete;
  lock_service& operator=(const lock_service&) = delete;

  // -- requests -----------------------------------------------------------------------------------

  /// F_SETLK/F_SETLKW: answers `sink` at once, or queues it until its turn (or its end).
  void setlk(const lock_request& req, lock_reply_sink_ptr sink);

  /// The same request decided at once if it needs no waiting (0 or an errno); nullopt, with
  /// nothing queued, if it would wait: then the caller prepares to wait (a sink, interrupts) and
  /// calls setlk(), which decides again. Most requests end here, without that preparation.
  std::optional<int> try_setlk(const lock_request& req);

  /// F_GETLK: the first lock of another owner that conflicts with `req`.
  getlk_answer getlk(const lock_request& req) const;

  /// FLUSH (any close() by `owner` of `file`): its POSIX locks there go, and so do its waits.
  void flush(uint64_t owner, file_role file);

  /// RELEASE of file handle `handle` (a unique id): OFD leftovers of owners that locked only
  /// through it go.
  void release(uint64_t handle);

  /// A signal interrupted request `id`: EINTR if it still waits (else nothing).
  void interrupt(uint64_t id);

  // -- the watchdog -------------------------------------------------------------------------------

  /// Request `id` is a deadlock victim: EAGAIN (EDEADLK for F_SETLKW) if it waits here.
  void abort(uint64_t id);

  /// Answers EAGAIN to the waiters past the wait cap; returns how many.
  size_t expire(clock::time_point now);

  /// The waiters as the wait-for graph wants them.
  std::vector<wait_graph::waiter_info> waiters() const;

  bool has_waiters() const;

  /// For each waiter: its process, and the processes holding the locks it waits for (to find
  /// waits on a holder that waits for the waiter outside the table: hopeless_waits).
  struct waiter_processes {
    uint64_t waiter_id;
    uint32_t waiter_pid;
    std::vector<uint32_t> holder_pids;
    clock::time_point since; ///< when it began to wait
  };
  std::vector<waiter_processes> waiter_pids() const;

  // -- inspection ---------------------------------------------------------------------------------

  const std::string& name() const { return name_; }

  /// A copy of the held locks and of the queue, taken under the mutex (tests, diagnostics).
  std::vector<held_lock> holders() const;
  std::vector<lock_table::waiter> queue() const;
  bool empty() const;

  /// Holders, waiters and counters as the /locks JSON object.
  std::string to_json() const;

private:
  /// Runs `f(lock_table&, std::vector<lock_reply>&)` under the mutex, answers the sinks of the
  /// requests it ended, and wakes the watchdog if waiters were or are there. Returns how many
  /// sinks it answered.
  template <class F> size_t change(F&& f);

  const std::string name_;
  mutable std::mutex mtx_;
  lock_table table_;
  std::unordered_map<uint64_t, lock_reply_sink_ptr> waiting_; ///< sinks by request id
  std::function<void()> wake_;
};

} // namespace litedrive
