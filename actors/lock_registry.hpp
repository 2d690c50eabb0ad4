#pragma once
// Every database's lock service, by the database's canonical path in the store, so that the
// drive (the kernel's lock requests, per inode) and drive_io (litedrive's own connections, per
// descriptor) reach the same one for the same file, without a round trip through any actor.
//
// A service lives as long as somebody holds it: every drive inode whose file was locked, and
// every open file of litedrive's own connections. Locks exist only on open files, and an open
// file keeps its inode (and so its service) alive, so a service is empty when it goes.
//
// The registry also hands out request ids (unique across databases: the wait-for graph and
// interrupts name requests by id) and tells the lock watchdog, once per batch, that some
// database's waiters changed.
//
// Thread-safe. Lock order: the registry's mutex, then a service's (with_waiters); a service
// calls back (its `wake`) only after releasing its own.

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "actors/lock_service.hpp"

namespace litedrive {

class lock_registry : public std::enable_shared_from_this<lock_registry> {
public:
  /// `store`: the canonical store directory (database names are paths relative to it).
  lock_registry(std::string store, std::chrono::milliseconds max_wait);

  /// The lock service of the database at `db_path`, created on first use.
  std::shared_ptr<lock_service> get(const std::string& db_path);

  /// The lock service of the database at `db_path` if somebody uses it.
  std::shared_ptr<lock_service> find(const std::string& db_path) const;

  /// Every service in use, with its database's path.
  std::vector<std::pair<std::string, std::shared_ptr<lock_service>>> in_use() const;

  /// A fresh request id.
  uint64_t next_request_id() { return next_id_.fetch_add(1, std::memory_order_relaxed); }

  /// Who to tell that waiters changed (the watchdog); called at most once until woken().
  void set_wake(std::function<void()> wake);

  /// The watchdog took the cue: the next change tells it again.
  void woken() { wake_pending_.store(false, std::memory_order_release); }

  /// The services that have waiters now (and forgets those that have none any more).
  std::vector<std::shared_ptr<lock_service>> with_waiters();

private:
  void note_waiters(const std::string& db_path);

  const std::string store_;
  const std::chrono::milliseconds max_wait_;
  mutable std::mutex mtx_;
  std::unordered_map<std::string, std::weak_ptr<lock_service>> services_;
  std::unordered_map<std::string, std::weak_ptr<lock_service>> watched_; ///< had waiters
  std::function<void()> wake_;
  std::atomic<bool> wake_pending_{false};
  std::atomic<uint64_t> next_id_{1};
};

} // namespace litedrive
