#pragma once
// The drive: a FUSE file system that passes through to the store and hands every byte-range
// lock to its database's lock service. No FUSE header leaks out of fuse_bridge/: this is all the
// daemon sees.

#include <memory>
#include <string>

#include <sys/types.h>

#include <caf/expected.hpp>

#include "actors/lock_registry.hpp"
#include "schema/settings.hpp"

namespace litedrive {

class drive {
public:
  /// Checks the host (/dev/fuse, the kernel's FUSE request timeout, stale or foreign mounts at
  /// the mount point), mounts `s.mount` over `s.store` and starts serving on FUSE's own threads.
  /// Fails with a message that says what to fix.
  /// Lock requests go to the services of `locks` (shared with litedrive's own connections).
  static caf::expected<std::unique_ptr<drive>> mount(const settings& s,
                                                     std::shared_ptr<lock_registry> locks);

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

  /// Requests served so far, by operation, as a JSON object (for /health and the benchmarks).
  std::string counters_json() const;

  struct impl;

private:
  explicit drive(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

} // namespace litedrive
