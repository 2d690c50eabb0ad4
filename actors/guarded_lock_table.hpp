#pragma once
// A database's lock table behind a mutex, with the sinks of its waiting requests, so that the
// drive's FUSE threads can decide every request that needs no waiting themselves
// (lock_fast_path) — grants, unlocks that hand the lock to a waiter, fail-at-once answers,
// F_GETLK, FLUSH — while the database actor keeps everything that waits: queueing, deadlock
// detection over all databases, the wait cap, interrupts. Measured here: a lock request took
// 56 µs through the actor against 16.5 µs for a plain FUSE round trip; the difference is waking
// the CAF worker, paid once per request before and now only by requests that wait.
//
// Whoever changes the table answers the waiters it granted (from its own thread: a sink may
// answer from anywhere). A FUSE-thread change made while somebody waits calls `changed` (the
// actor then republishes its wait-for edges and arms its timer), after the fact and once per
// batch: a grant never closes a wait-for cycle by itself, it only needs the graph current.
//
// Lock order: the mutex is a leaf. Sinks are answered and `changed` is called after it is
// released.

#include <atomic>
#include <functional>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "actors/lock_table.hpp"
#include "actors/wait_graph.hpp"

namespace litedrive {

class guarded_lock_table final : public lock_fast_path {
public:
  using clock = lock_table::clock;

  guarded_lock_table(std::chrono::milliseconds max_wait, std::function<void()> changed)
      : table_(max_wait), changed_(std::move(changed)) {}

  // -- lock_fast_path (FUSE threads) --------------------------------------------------------------

  std::optional<int> try_setlk(const lock_request& req) override {
    std::optional<int> answer;
    bool had_waiters = false;
    change([&](lock_table& t, std::vector<lock_reply>& replies) {
      had_waiters = !t.waiters().empty();
      answer = t.setlk_now(req, clock::now(), replies);
    });
    if (answer && had_waiters) tell_actor();
    return answer;
  }

  std::optional<getlk_answer> try_getlk(const lock_request& req) override {
    std::lock_guard<std::mutex> guard{mtx_};
    if (closed_) return std::nullopt;
    return table_.getlk(req);
  }

  bool try_flush(uint64_t owner, file_role file) override {
    bool had_waiters = false;
    bool done = false;
    change([&](lock_table& t, std::vector<lock_reply>& replies) {
      had_waiters = !t.waiters().empty();
      // A process that closes the file has no business waiting for a lock on it any more; and a
      // waiter killed before its interrupt reached us must not be granted a lock nobody frees.
      t.cancel_owner(owner, file, replies);
      t.release_owner(owner, file, replies);
      done = true;
    });
    if (done && had_waiters) tell_actor();
    return done;
  }

  // -- the owning actor ---------------------------------------------------------------------------

  /// F_SETLK/F_SETLKW through the actor: the immediate answer, or nullopt when the request now
  /// waits (its sink is kept here and answered by whoever grants, aborts or expires it).
  std::optional<int> setlk_or_queue(const lock_request& req, lock_reply_sink_ptr sink) {
    std::optional<int> answer;
    change([&](lock_table& t, std::vector<lock_reply>& replies) {
      answer = t.setlk(req, clock::now(), replies);
      if (!answer) waiting_.emplace(req.id, waiting_request{std::move(sink), ++arrivals_});
    });
    return answer;
  }

  /// Runs `f(lock_table&, std::vector<lock_reply>&)` under the mutex, then answers the waiters
  /// it ended. Returns how many it answered. Does nothing once closed.
  template <class F> size_t change(F&& f) {
    std::vector<std::pair<lock_reply_sink_ptr, int>> answers;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (closed_) return 0;
      std::vector<lock_reply> replies;
      f(table_, replies);
      for (const auto& r : replies) {
        auto i = waiting_.find(r.id);
        if (i == waiting_.end()) continue;
        answers.emplace_back(std::move(i->second.sink), r.err);
        waiting_.erase(i);
      }
    }
    for (auto& [sink, err] : answers)
      sink->reply(err);
    return answers.size();
  }

  /// Runs `f(const lock_table&)` under the mutex and returns its result.
  template <class F> decltype(auto) with(F&& f) const {
    std::lock_guard<std::mutex> guard{mtx_};
    return f(table_);
  }

  bool is_waiting(uint64_t id) const {
    std::lock_guard<std::mutex> guard{mtx_};
    return waiting_.count(id) > 0;
  }

  /// The waiters as the wait-for graph wants them (who waits for whom, victim rank, arrival).
  std::vector<wait_graph::waiter_info> waiter_infos() const {
    std::lock_guard<std::mutex> guard{mtx_};
    std::vector<wait_graph::waiter_info> out;
    for (const auto& w : table_.waiters()) {
      auto i = waiting_.find(w.req.id);
      out.push_back({w.req.id, w.req.owner, table_.blockers(w), table_.victim_rank(w),
                     i == waiting_.end() ? 0 : i->second.arrival});
    }
    return out;
  }

  /// The actor took note of the drive's changes (it runs its checks after this call).
  void settled() { change_pending_.store(false, std::memory_order_release); }

  /// The actor is gone: every waiter answers EAGAIN (its sink's fallback, as it is destroyed),
  /// and later requests decline and reach the dead actor's fallback.
  void close() {
    std::unordered_map<uint64_t, waiting_request> gone;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      closed_ = true;
      gone.swap(waiting_);
    }
  }

private:
  /// One note to the actor per batch of changes: it reads the whole table anyway.
  void tell_actor() {
    if (changed_ && !change_pending_.exchange(true, std::memory_order_acq_rel)) changed_();
  }

  struct waiting_request {
    lock_reply_sink_ptr sink;
    uint64_t arrival; ///< arrival order (deadlock victims: youngest first)
  };

  mutable std::mutex mtx_;
  lock_table table_;
  std::unordered_map<uint64_t, waiting_request> waiting_;
  uint64_t arrivals_ = 0;
  bool closed_ = false;
  std::function<void()> changed_;
  std::atomic<bool> change_pending_{false};
};

} // namespace litedrive
