#pragma once
// The POSIX byte-range lock table of one database (its main file and its -shm), with the wait
// policy that makes concurrent SQLite writers wait their turn instead of failing (DESIGN.md §2).
//
// Plain C++ and single-threaded: lock_service owns the only instance of a database's table and
// is the only way to change it (one mutex; the drive's FUSE threads, litedrive's own SQLite
// threads and the lock watchdog all go through it). Every decision is returned as data
// (replies to send); nothing here blocks or replies by itself.
//
// Semantics kept from POSIX (per lock owner = one process, as the kernel reports it):
//   - an owner's locks never conflict with each other; a new lock replaces the owner's old
//     locks in its range (split and merge), UNLCK removes them;
//   - read locks are shared, write locks exclusive;
//   - F_SETLKW waits; F_SETLK fails with EAGAIN on conflict...
// ...except for the byte ranges SQLite's unix VFS uses, where a non-blocking F_SETLK that SQLite
// could not resolve by itself waits instead (the policy table in classify()), read-write owners
// are serialized per transaction (the "token"), waiters are served FIFO, a waiter may be passed
// only by the owner that blocks it, and waits are capped.
//
// Invariants (checked after every step by tests/unit/lock_model.test.cpp against a reference
// model of POSIX locks):
//   I1. Held locks of different owners never conflict (overlapping, one of them a write lock).
//   I2. An owner's held locks never overlap each other, and are exactly what POSIX would leave
//       after the grants and unlocks it was answered, minus what FLUSH and RELEASE dropped.
//   I3. release_owner (FLUSH) leaves no lock of that owner on that file, and no waiter of it.
//   I4. release_handle (RELEASE) drops only owners that locked through that handle and hold
//       no other handle: handle ids must be unique for as long as the table may hear of them
//       (never a reused pointer: a RELEASE may arrive after the next open got the same one).
//   I5. Every queued request is answered exactly once (granted, EAGAIN, EINTR, EDEADLK), and
//       after every change a grant pass has run: a waiter that nobody blocks does not wait.
//   I6. F_SETLK waits end by the wait cap at the latest (expire); F_SETLKW waits end by a
//       grant, an interrupt, a FLUSH of its owner or a deadlock abort.
//   I7. An owner id says nothing once the owner holds nothing and waits for nothing: what the
//       table learned of it (read-only or not) is forgotten then, since the kernel recycles ids.

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "schema/lock_types.hpp"

namespace litedrive {

class lock_table {
public:
  using clock = std::chrono::steady_clock;

  explicit lock_table(std::chrono::milliseconds max_wait) : max_wait_(max_wait) {}

  // -- requests -----------------------------------------------------------------------------------

  /// F_SETLK/F_SETLKW. Returns the immediate answer, or nullopt when the request now waits
  /// (it is answered later by one of the calls below, through their reply lists).
  /// `replies` receives answers to other waiters granted as a consequence (after an unlock).
  std::optional<int> setlk(const lock_request& req, clock::time_point now,
                           std::vector<lock_reply>& replies);

  /// setlk() for a caller that first tries without preparing to wait: decides the request if it
  /// needs no waiting (granted, or failed at once), with the waiters that decision grants in
  /// `replies`; otherwise returns nullopt and queues nothing (the caller then calls setlk()).
  std::optional<int> setlk_now(const lock_request& req, clock::time_point now,
                               std::vector<lock_reply>& replies);

  /// F_GETLK: the first lock of another owner that conflicts with `req`.
  getlk_answer getlk(const lock_request& req) const;

  /// FLUSH (any close() by `owner` of `file`): drop all its locks on that file, POSIX style.
  void release_owner(uint64_t owner, file_role file, std::vector<lock_reply>& replies);

  /// RELEASE (last close of a file handle): drop what owners that locked through `fh` still
  /// hold (OFD locks; POSIX owners were cleaned at FLUSH already).
  void release_handle(uint64_t fh, std::vector<lock_reply>& replies);

  /// Ends every wait of `owner` on `file` with EAGAIN (its process closed the file).
  void cancel_owner(uint64_t owner, file_role file, std::vector<lock_reply>& replies);

  /// A signal interrupted the waiter: answers EINTR if it still waits.
  void interrupt(uint64_t id, std::vector<lock_reply>& replies);

  /// Deadlock victim chosen elsewhere (the wait-for graph): EAGAIN, or EDEADLK for F_SETLKW; a
  /// WAL read mark that waits only for the transaction token is granted instead.
  void abort_waiter(uint64_t id, std::vector<lock_reply>& replies);

  /// Ends the waits past the cap (which counts from the first wait of the owner's transaction):
  /// EAGAIN, except for a WAL read mark that waits only for the transaction token, which is
  /// granted (SQLite would retry a refused one up to 100 times).
  void expire(clock::time_point now, std::vector<lock_reply>& replies);

  // -- inspection ---------------------------------------------------------------------------------

  struct waiter {
    lock_request req;
    clock::time_point since;
    clock::time_point deadline;
  };

  const std::vector<held_lock>& locks() const { return locks_; }
  const std::deque<waiter>& waiters() const { return queue_; }
  bool empty() const { return locks_.empty() && queue_.empty(); }

  /// The owners a waiter waits for (holders of conflicting locks, the token holder, earlier
  /// waiters it may not pass): the edges of the wait-for graph.
  std::vector<uint64_t> blockers(const waiter& w) const;

  /// How good a deadlock victim the waiter is: lower is better (DESIGN.md §2's preference).
  int victim_rank(const waiter& w) const;

  struct counters {
    uint64_t grants = 0;     ///< granted at once or after waiting
    uint64_t waits = 0;      ///< requests that had to wait
    uint64_t fast_fails = 0; ///< EAGAIN at once (try-locks SQLite expects to fail)
    uint64_t timeouts = 0;   ///< waiters that hit the wait cap
    uint64_t interrupts = 0; ///< waiters ended by a signal
    uint64_t deadlocks = 0;  ///< waiters chosen as deadlock victims
  };
  const counters& stats() const { return counters_; }

  std::chrono::milliseconds max_wait() const { return max_wait_; }

private:
  /// How a request is treated when it cannot be granted now.
  enum class on_conflict { wait, fail };

  on_conflict classify(const lock_request& req) const;
  /// The answer setlk() gives without queueing, or nullopt if the request has to wait.
  std::optional<int> decide_at_once(const lock_request& req, clock::time_point now,
                                    std::vector<lock_reply>& replies);
  bool conflicts_with_held(const lock_request& req) const;
  bool token_blocked(const lock_request& req) const;
  bool owner_holds(uint64_t owner, file_role file, lock_kind kind, uint64_t start,
                   uint64_t end) const;
  bool blocked_by_owner(const waiter& w, uint64_t owner) const;
  bool must_yield(const lock_request& req, size_t queue_limit) const;
  bool grantable(const lock_request& req, size_t queue_limit) const;
  void apply(const lock_request& req, clock::time_point now);
  void grant_pass(clock::time_point now, std::vector<lock_reply>& replies);
  bool writer(uint64_t owner) const;
  bool requester_is_writer(const lock_request& req) const;
  void remove_waiter(uint64_t id, int err, std::vector<lock_reply>& replies);
  /// A WAL read mark that waits only for the transaction token (no lock conflicts with it).
  bool token_only(const lock_request& r) const;
  /// Ends waiter `id` past its cap or as a deadlock victim: a token-only read mark is granted,
  /// anything else fails.
  void grant_or_fail(uint64_t id, clock::time_point now, std::vector<lock_reply>& replies);
  /// Whether `owner` holds a lock of a transaction (the token range).
  bool in_transaction(uint64_t owner) const;
  /// Forgets when `owner`'s transaction began waiting once it holds no transaction lock.
  void end_transaction_if_done(uint64_t owner);

  std::chrono::milliseconds max_wait_;
  std::vector<held_lock> locks_;
  std::deque<waiter> queue_;
  /// Whether each owner opened the main file for writing (learned from its main-file locks):
  /// read-only owners are exempt from transaction serialization.
  std::unordered_map<uint64_t, bool> owner_writable_;
  /// Whether each owner opened the -shm for writing (readonly_shm connections do not).
  std::unordered_map<uint64_t, bool> owner_shm_writable_;
  /// When each owner's current transaction first waited: its F_SETLK waits share one cap.
  std::unordered_map<uint64_t, clock::time_point> txn_wait_start_;
  /// The database is in WAL mode (its main file's header, as the last main-file request said).
  bool wal_ = false;
  /// The owners that locked through each file handle (RELEASE cleanup).
  std::unordered_map<uint64_t, std::vector<uint64_t>> handle_owners_;
  counters counters_;
};

} // namespace litedrive
