#include "actors/wait_graph.hpp"

#include <algorithm>
#include <functional>
#include <unordered_map>
#include <unordered_set>

namespace litedrive::wait_graph {

namespace {

/// A cycle from `start` back to it, as the waiters that make its edges; empty if none.
std::vector<const waiter_info*>
cycle_from(uint64_t start,
           const std::unordered_map<uint64_t, std::vector<std::pair<uint64_t, const waiter_info*>>>&
               edges) {
  std::vector<const waiter_info*> path;
  std::vector<const waiter_info*> found;
  std::unordered_set<uint64_t> visited{start};
  std::function<bool(uint64_t)> dfs = [&](uint64_t node) -> bool {
    auto i = edges.find(node);
    if (i == edges.end()) return false;
    for (const auto& [to, via] : i->second) {
      path.push_back(via);
      if (to == start) {
        found = path;
        return true;
      }
      if (visited.insert(to).second && dfs(to)) return true;
      path.pop_back();
    }
    return false;
  };
  dfs(start);
  return found;
}

} // namespace

std::optional<uint64_t> find_victim(const std::vector<waiter_info>& waiters) {
  std::unordered_map<uint64_t, std::vector<std::pair<uint64_t, const waiter_info*>>> edges;
  for (const auto& w : waiters)
    for (auto b : w.blockers)
      edges[w.owner].emplace_back(b, &w);
  std::unordered_set<uint64_t> tried;
  for (const auto& w : waiters) {
    if (!tried.insert(w.owner).second) continue;
    auto found = cycle_from(w.owner, edges);
    if (found.empty()) continue;
    auto best = *std::min_element(found.begin(), found.end(),
                                  [](const waiter_info* a, const waiter_info* b) {
                                    if (a->rank != b->rank) return a->rank < b->rank;
                                    return a->seq > b->seq; // the youngest loses
                                  });
    return best->waiter_id;
  }
  return std::nullopt;
}

} // namespace litedrive::wait_graph
