#pragma once
// The vocabulary of byte-range locks shared by the FUSE bridge and drive_io (which build requests
// from the kernel's and from litedrive's own connections') and the lock services that decide them.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>

namespace litedrive {

// -- SQLite's unix VFS lock bytes ---------------------------------------------------------------

namespace sqlite_bytes {
constexpr uint64_t pending = 0x40000000;
constexpr uint64_t reserved = pending + 1;
constexpr uint64_t shared_first = pending + 2;
constexpr uint64_t shared_last = pending + 511;
constexpr uint64_t shm_write = 120; ///< WAL write lock
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
  uint64_t id = 0; ///< unique: identifies the waiter (interrupts, timeouts, deadlocks)
  file_role file = file_role::main;
  uint64_t owner = 0; ///< the kernel's lock_owner
  uint32_t pid = 0;
  lock_kind kind = lock_kind::read;
  uint64_t start = 0;
  uint64_t end = 0;         ///< inclusive; to_eof for "up to the end of file"
  bool sleep = false;       ///< F_SETLKW
  bool writable = true;     ///< taken through a handle opened for writing (main file)
  bool wal = false;         ///< the main file's header says WAL (bytes 18-19 == 2)
  bool hot_journal = false; ///< a non-empty -journal exists (rollback mode)
  uint64_t fh = 0;          ///< the FUSE file handle it came through
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

/// Where the answer to one lock request goes: the drive's sink answers the kernel, litedrive's
/// own connections' sink wakes the SQLite thread that waits. The lock service calls reply()
/// exactly once, from whichever thread decides (the requester's own, or the one whose unlock
/// granted it). A sink destroyed unanswered (the daemon shuts down with waiters) answers on
/// its own, so that no process stays in fcntl() forever.
class lock_reply_sink {
public:
  virtual ~lock_reply_sink() = default;
  /// 0 (granted) or an errno.
  virtual void reply(int err) = 0;
};

using lock_reply_sink_ptr = std::shared_ptr<lock_reply_sink>;

} // namespace litedrive
