#pragma once
// The wait-for graph of lock owners across ALL databases, for deadlock detection: a process
// waiting on database A for a process that waits on database B for the first one is a cycle no
// single lock table can see. The lock watchdog collects every waiter of every database and asks
// for a victim; plain C++, unit-tested.

#include <cstdint>
#include <optional>
#include <vector>

namespace litedrive::wait_graph {

struct waiter_info {
  uint64_t waiter_id;             ///< the lock request's id (unique across databases)
  uint64_t owner;                 ///< who waits
  std::vector<uint64_t> blockers; ///< for whom
  int rank;                       ///< victim preference (lower first)
  uint64_t seq;                   ///< arrival order (higher = younger)
};

/// The waiter to abort if the waiters form a cycle: the best-ranked (then youngest) waiter on
/// the first cycle found; nothing if there is none. An owner may wait in several places at once
/// (one per thread): its edges are the union over its waiters.
std::optional<uint64_t> find_victim(const std::vector<waiter_info>& waiters);

} // namespace litedrive::wait_graph
