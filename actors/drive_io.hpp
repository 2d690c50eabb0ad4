#pragma once
// litedrive's own SQLite connections on drive databases: data straight to the backing files,
// names through the mount, locks in the drive's lock table (DESIGN.md §4, the second way).
//
// Opening a database through the mount keeps one page cache and one lock table, but then every
// page SQLite writes is a FUSE round trip (~25 µs here): a group commit of 15 KV writes made
// ~60 of them. With drive_io installed, SQLite's unix VFS (through its system-call table,
// xSetSystemCall) opens a file under the mount twice: through the mount, which creates it with
// the right owner and keeps the kernel's dentries true, and directly in the store, which is the
// descriptor SQLite reads and writes. Lock calls (fcntl F_SETLK/F_SETLKW/F_GETLK) on it and on
// the `-shm` go to the database's lock service directly (the same one the drive's requests for
// that file reach, found by the file's canonical path in the lock registry), so they meet every
// other process's requests there without a round trip through the kernel; any close drops this
// process's locks on the file (POSIX semantics, as SQLite expects). Every write or truncate is
// followed, before it returns, by an invalidation of what the mount may cache of that range (pages
// if the kernel ever read or wrote the file, the attributes if the size changed), so that a process
// reading through the mount never sees a stale page or size: the invalidation happens before SQLite
// publishes the commit (the WAL index or the lock release), which is what makes it safe.
//
// `-shm` files stay entirely on the mount: processes share the WAL index through the mount's
// page cache (mmap), and litedrive must map the same pages.
//
// Not for `--drive-writeback-cache`: dirty pages of other processes would then live in the
// kernel, unseen by direct reads.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <fcntl.h>
#include <sys/types.h>

#include "actors/lock_registry.hpp"

namespace litedrive::drive_io {

struct config {
  std::string mount; ///< absolute, without a trailing slash
  std::string store; ///< the backing directory the mount passes through to
  /// Drops the mount's cached pages of the backing file (dev, ino) in [off, off+len) (len 0: to
  /// the end) and its cached attributes, after a write that `resized` the file or not; returns
  /// whether the mount had anything to drop (drive::invalidate). Called from SQLite's thread,
  /// never from a FUSE one.
  std::function<bool(dev_t, ino_t, int64_t off, int64_t len, bool resized)> invalidate;
  /// Where this process's lock calls on drive files go (unset: through the mount).
  std::shared_ptr<lock_registry> locks;
};

/// Installs the system-call hooks in SQLite's unix VFS. Call once at start-up, before any
/// SQLite connection opens (xSetSystemCall is not thread-safe). Returns false if SQLite has no
/// unix VFS with a replaceable system-call table.
bool install(config cfg);

struct counters {
  uint64_t files = 0;         ///< files opened the split way
  uint64_t writes = 0;        ///< writes that went straight to the store
  uint64_t invalidations = 0; ///< page-cache invalidations sent to the mount
  uint64_t lock_calls = 0;    ///< lock calls decided in the lock service, without the kernel
  uint64_t lock_waits = 0;    ///< ... of which had to wait their turn
};

/// What the hooks did so far (for /health).
counters stats();

} // namespace litedrive::drive_io
