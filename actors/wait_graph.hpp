#pragma once
// The wait-for graph of lock owners across ALL databases, for deadlock detection. Each database
// actor publishes its current waiters (who waits for whom) after every change of its lock table
// and asks for a cycle; a process waiting on database A for a process that waits on database B
// for the first one is found no matter which actor looks. Shared by every database actor, so it
// is guarded by a mutex (held for microseconds: the graphs are tiny).

#include <cstdint>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include <caf/actor.hpp>

namespace litedrive {

class wait_graph {
public:
  struct waiter_info {
    uint64_t waiter_id;              ///< the lock request's id
    uint64_t owner;                  ///< who waits
    std::vector<uint64_t> blockers;  ///< for whom
    int rank;                        ///< victim preference (lower first)
    uint64_t seq;                    ///< arrival order (higher = younger)
  };

  struct victim {
    caf::actor table;  ///< the database actor holding the waiter
    uint64_t waiter_id;
  };

  /// Replaces everything `table` published before with `waiting`, then looks for a cycle that
  /// runs through one of them. Returns the waiter to abort, if there is a cycle: the best-ranked
  /// (then youngest) waiter on the cycle, wherever it waits.
  std::optional<victim> update(caf::actor_id table_id, const caf::actor& table,
                               std::vector<waiter_info> waiting);

  /// Forgets a table (its actor stopped).
  void forget(caf::actor_id table);

private:
  struct entry {
    caf::actor table;
    waiter_info info;
  };
  std::optional<victim> find_cycle(uint64_t start) const;

  mutable std::mutex mtx_;
  std::unordered_map<caf::actor_id, std::vector<entry>> by_table_;  ///< by the table actor's id
};

} // namespace litedrive
