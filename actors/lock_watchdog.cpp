#include "actors/lock_watchdog.hpp"

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/hopeless_waits.hpp"

namespace litedrive {

namespace {

using self_ptr = lock_watchdog_actor::stateful_pointer<lock_watchdog_state>;

constexpr auto tick_period = std::chrono::milliseconds{100};

/// Aborts deadlock victims until no cycle is left (a victim ends one cycle; there may be more).
void break_deadlocks(self_ptr self) {
  for (int round = 0; round < 16; ++round) {
    auto tables = self->state.locks->with_waiters();
    std::vector<wait_graph::waiter_info> all;
    for (const auto& t : tables) {
      auto w = t->waiters();
      all.insert(all.end(), w.begin(), w.end());
    }
    auto victim = wait_graph::find_victim(all);
    if (!victim) return;
    for (const auto& t : tables)
      t->abort(*victim); // only the table where it waits has it
    spdlog::info("locks: deadlock; lock request {} is the victim", *victim);
  }
}

/// Ends the waits whose holder sleeps reading a pipe the waiter writes: a deadlock outside the
/// table (hopeless_waits.hpp). Checked on the tick: the holder may reach its read() a moment
/// after the waiter arrived.
void end_hopeless_waits(self_ptr self) {
  auto now = lock_service::clock::now();
  for (const auto& t : self->state.locks->with_waiters())
    for (const auto& w : t->waiter_pids())
      for (auto holder : w.holder_pids)
        if (hopeless_waits::holder_reads_from_waiter(
                static_cast<pid_t>(holder), static_cast<pid_t>(w.waiter_pid),
                now - w.since >= std::chrono::milliseconds{300})) {
          spdlog::info("{}: lock request {} of pid {} waits for pid {}, which waits for it "
                       "(reading a pipe it writes): ended as a deadlock",
                       t->name(), w.waiter_id, w.waiter_pid, holder);
          t->abort(w.waiter_id);
          break;
        }
}

void arm_tick(self_ptr self) {
  auto& st = self->state;
  if (st.tick_armed || st.locks->with_waiters().empty()) return;
  st.tick_armed = true;
  self->delayed_send(self, tick_period, caf::tick_atom_v);
}

} // namespace

lock_watchdog_actor::behavior_type lock_watchdog(self_ptr self,
                                                 std::shared_ptr<lock_registry> locks) {
  self->state.locks = std::move(locks);
  return {
      [self](settle_atom) {
        self->state.locks->woken(); // before looking: a later change wakes us again
        break_deadlocks(self);
        arm_tick(self);
      },
      [self](caf::tick_atom) {
        auto& st = self->state;
        st.tick_armed = false;
        auto now = lock_service::clock::now();
        for (const auto& t : st.locks->with_waiters())
          if (auto expired = t->expire(now))
            spdlog::warn("{}: {} lock request(s) waited longer than lock-wait-max: EAGAIN",
                         t->name(), expired);
        end_hopeless_waits(self);
        break_deadlocks(self);
        arm_tick(self);
      },
  };
}

} // namespace litedrive
