#pragma once
// A database's lock table behind a mutex, so that the drive's FUSE threads can decide the
// requests that need no waiting themselves (lock_fast_path) while the database actor keeps
// everything that waits. Measured here: an uncontended lock request took 56 µs through the
// actor against 16.5 µs for a plain FUSE round trip; the difference is waking the CAF worker.
//
// Lock order: this mutex is a leaf. Nothing is called while holding it except the table itself;
// replies to the kernel are sent after it is released.

#include <mutex>

#include "actors/lock_table.hpp"

namespace litedrive {

class guarded_lock_table final : public lock_fast_path {
public:
  explicit guarded_lock_table(std::chrono::milliseconds max_wait) : table_(max_wait) {}

  // -- lock_fast_path (any thread) ----------------------------------------------------------------

  std::optional<int> try_setlk(const lock_request& req) override {
    std::lock_guard<std::mutex> guard{mtx_};
    if (closed_) return std::nullopt;
    return table_.setlk_now(req, lock_table::clock::now());
  }

  std::optional<getlk_answer> try_getlk(const lock_request& req) override {
    std::lock_guard<std::mutex> guard{mtx_};
    if (closed_) return std::nullopt;
    return table_.getlk(req);
  }

  bool try_flush(uint64_t owner, file_role file) override {
    std::lock_guard<std::mutex> guard{mtx_};
    if (closed_ || !table_.waiters().empty()) return false;
    std::vector<lock_reply> none; // nobody waits: nobody can be granted
    table_.release_owner(owner, file, none);
    return true;
  }

  // -- the owning actor ---------------------------------------------------------------------------

  /// Runs `f(lock_table&)` under the mutex and returns its result.
  template <class F> decltype(auto) with(F&& f) {
    std::lock_guard<std::mutex> guard{mtx_};
    return f(table_);
  }

  /// The actor is gone: later requests decline and reach the (dead) actor's fallback answer.
  void close() {
    std::lock_guard<std::mutex> guard{mtx_};
    closed_ = true;
  }

private:
  std::mutex mtx_;
  lock_table table_;
  bool closed_ = false;
};

} // namespace litedrive
