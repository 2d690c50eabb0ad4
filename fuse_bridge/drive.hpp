#pragma once
// The drive: a FUSE file system that passes through to the store and hands every byte-range
// lock to the database actors. No FUSE header leaks out of fuse_bridge/: this is all the daemon
// sees.

#include <memory>
#include <string>

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

  /// Requests served so far, by operation, as a JSON object (for /health and the benchmarks).
  std::string counters_json() const;

  struct impl;

private:
  explicit drive(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

} // namespace litedrive
