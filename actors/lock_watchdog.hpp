#pragma once
// The lock watchdog: the one actor that ends waits nobody else would end. Woken (once per batch)
// whenever a database's waiters change, it collects the waiters of every database, breaks a
// cycle of the cross-database wait-for graph by aborting one victim (DESIGN.md §2's preference),
// and while anybody waits it ticks every 100 ms to answer EAGAIN to waiters past the wait cap
// (`lock-wait-max`) and to end waits whose holder waits for the waiter outside the table
// (hopeless_waits.hpp). Everything else about locks happens in the lock services themselves.

#include <memory>

#include "actors/lock_registry.hpp"
#include "schema/interfaces.hpp"

namespace litedrive {

struct lock_watchdog_state {
  std::shared_ptr<lock_registry> locks;
  bool tick_armed = false;
  static inline const char* name = "litedrive.lock_watchdog";
};

lock_watchdog_actor::behavior_type
lock_watchdog(lock_watchdog_actor::stateful_pointer<lock_watchdog_state> self,
              std::shared_ptr<lock_registry> locks);

} // namespace litedrive
