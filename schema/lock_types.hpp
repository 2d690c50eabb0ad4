#pragma once
// The vocabulary of byte-range locks shared by the FUSE bridge (which builds requests from the
// kernel's) and the database actors (whose lock tables decide them).

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>

#include <caf/actor.hpp>

namespace litedrive {

// -- SQLite's unix VFS lock bytes ---------------------------------------------------------------

namespace sqlite_bytes {
constexpr uint64_t pending = 0x40000000;
constexpr uint64_t reserved = pending + 1;
constexpr uint64_t shared_first = pending + 2;
constexpr uint64_t shared_last = pending + 511;
constexpr uint64_t shm_write = 120;      ///< WAL write lock
constexpr uint64_t shm_checkpoint = 121;
constexpr uint64_t shm_recover = 122;
constexpr uint64_t shm_read_first = 123; ///< read marks 123..127
constexpr uint64_t shm_read_last = 127;
constexpr uint64_t shm_dms = 128;
} // namespace sqlite_bytes

enum class lock_kind : uint8_t { read, write, unlock };

/// Which file of the database a lock is on. Any file that is not a `-shm` counts as `main`
/// (a plain file's locks follow POSIX unless they hit SQLite's byte ranges).
enum class file_role : uint8_t { main, shm };

constexpr uint64_t to_eof = UINT64_MAX;

struct lock_request {
  uint64_t id = 0;        ///< unique: identifies the waiter (interrupts, timeouts, deadlocks)
  file_role file = file_role::main;
  uint64_t owner = 0;     ///< the kernel's lock_owner
  uint32_t pid = 0;
  lock_kind kind = lock_kind::read;
  uint64_t start = 0;
  uint64_t end = 0;       ///< inclusive; to_eof for "up to the end of file"
  bool sleep = false;     ///< F_SETLKW
  bool writable = true;   ///< taken through a handle opened for writing (main file)
  bool wal = false;       ///< the main file's header says WAL (bytes 18-19 == 2)
  bool hot_journal = false; ///< a non-empty -journal exists (rollback mode)
  uint64_t fh = 0;        ///< the FUSE file handle it came through
};

struct held_lock {
  file_role file;
  uint64_t owner;
  uint32_t pid;
  lock_kind kind;
  uint64_t start;
  uint64_t end;
  std::chrono::steady_clock::time_point since;
};

/// What to answer to one lock request: `err` is 0 (granted) or an errno.
struct lock_reply {
  uint64_t id;
  int err;
};

/// The answer of F_GETLK: the first conflicting lock, or nothing (F_UNLCK).
using getlk_answer = std::optional<held_lock>;

/// The part of a database's lock table that a front end may use on its own thread, without the
/// hand-off to the database actor (~40 µs per request here, DESIGN.md §5): requests that are
/// decided at once. Every call either decides (and the caller answers the kernel itself) or
/// declines (nullopt / false), and the caller then sends the request to the actor as usual.
/// Anything that waits — queueing, deadlock detection, the wait cap, interrupts — is the
/// actor's alone. Thread-safe.
class lock_fast_path {
public:
  virtual ~lock_fast_path() = default;
  /// F_SETLK/F_SETLKW: 0 or an errno, or nullopt when the request may have to wait.
  virtual std::optional<int> try_setlk(const lock_request& req) = 0;
  /// F_GETLK, or nullopt once the table is closed.
  virtual std::optional<getlk_answer> try_getlk(const lock_request& req) = 0;
  /// FLUSH of `owner` (its POSIX locks on `file` dropped); false when somebody waits.
  virtual bool try_flush(uint64_t owner, file_role file) = 0;
};

using lock_fast_path_ptr = std::shared_ptr<lock_fast_path>;

/// Where the answer to one lock request goes. The FUSE bridge implements it (it answers the
/// kernel); the database actor calls exactly one reply function, from any thread. If it is
/// destroyed unanswered (an actor died), it answers on its own so no process hangs.
class lock_reply_sink {
public:
  virtual ~lock_reply_sink() = default;
  /// F_SETLK/F_SETLKW, FLUSH acknowledgement: 0 or an errno.
  virtual void reply(int err) = 0;
  /// F_GETLK.
  virtual void reply_getlk(const getlk_answer& answer) = 0;
  /// The registry tells the sender which actor holds this database's locks, so that later
  /// requests for the same file can skip the registry. Returns true if the sender keeps the
  /// handle (it then sends `detach` to that actor when it lets go). Default: not interested.
  virtual bool learn_route(const caf::actor& database) {
    return false;
  }
  /// The database actor offers its table's fast path for the same file's later requests.
  virtual void learn_fast_path(const lock_fast_path_ptr& fast) {
    // Default: not interested.
  }
};

using lock_reply_sink_ptr = std::shared_ptr<lock_reply_sink>;

} // namespace litedrive
