#pragma once
// The drive: a FUSE file system that passes through to the store and hands every byte-range
// lock to the database actors. No FUSE header leaks out of fuse_bridge/: this is all the daemon
// sees.

#include <fcntl.h>

#include <memory>
#include <optional>
#include <string>

#include <sys/types.h>

#include <caf/expected.hpp>

#include "schema/interfaces.hpp"
#include "schema/settings.hpp"

namespace litedrive {

class drive {
public:
  /// Checks the host (/dev/fuse, the kernel's FUSE request timeout, stale or foreign mounts at
  /// the mount point), mounts `s.mount` over `s.store` and starts serving on FUSE's own threads.
  /// Fails with a message that says what to fix.
  static caf::expected<std::unique_ptr<drive>> mount(const settings& s, db_registry_actor registry);

  ~drive();

  /// Unmounts (lazily if files are still open) and waits for the FUSE threads. Idempotent.
  void unmount();

  /// Drops what the kernel caches of the backing file (dev, ino) — pages in [off, off+len)
  /// (len 0: to the end; off < 0: none) and attributes — after a write made to the store behind
  /// the mount's back (drive_io), which `resized` the file or not. Only what the kernel may
  /// hold: nothing for a file it does not know, only the attributes of a resized file it never
  /// read or wrote through the mount, nothing if such a file kept its size (then only its
  /// mtime may look old for the attribute timeout). Returns whether it told the kernel.
  /// Any thread but a FUSE one.
  bool invalidate(dev_t dev, ino_t ino, int64_t off, int64_t len, bool resized);

  /// One POSIX lock call (F_SETLK, F_SETLKW, F_GETLK) of litedrive's own SQLite connections
  /// (drive_io) on the backing file (dev, ino), decided by the same lock table as every other
  /// process's lock requests but without a round trip through the kernel. `owner` stands for
  /// this process on the file's database (what the kernel's lock_owner is for the others), `writable` says whether the
  /// descriptor was opened for writing, `fd` reads the file (its WAL header). Blocks while the
  /// request waits its turn, so only from a thread that may block (never a FUSE or CAF scheduler
  /// thread). Returns 0 or an errno (F_GETLK fills `fl` in), or nullopt when the drive cannot
  /// decide it (unknown file, a range not given from SEEK_SET): then the mount must.
  std::optional<int> own_lock(dev_t dev, ino_t ino, int cmd, struct flock& fl, uint64_t owner,
                              bool writable, int fd);

  /// What the kernel's FLUSH does when a process closes a descriptor: `owner`'s POSIX locks on
  /// the file (dev, ino) go. Blocks until they are gone (the same threads as own_lock).
  void own_flush(dev_t dev, ino_t ino, uint64_t owner);

  /// Requests served so far, by operation, as a JSON object (for /health and the benchmarks).
  std::string counters_json() const;

  struct impl;

private:
  explicit drive(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

} // namespace litedrive
