#include "actors/wait_graph.hpp"

#include <algorithm>
#include <functional>
#include <unordered_set>

namespace litedrive {

std::optional<wait_graph::victim> wait_graph::update(caf::actor_id table_id,
                                                     const caf::actor& table,
                                                     std::vector<waiter_info> waiting) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto& entries = by_table_[table_id];
  entries.clear();
  for (auto& w : waiting)
    entries.push_back({table, std::move(w)});
  if (entries.empty()) {
    by_table_.erase(table_id);
    return std::nullopt;
  }
  // Only a cycle through one of this table's waiters can be new.
  std::vector<uint64_t> starts;
  for (const auto& e : entries)
    starts.push_back(e.info.owner);
  for (auto owner : starts)
    if (auto v = find_cycle(owner))
      return v;
  return std::nullopt;
}

void wait_graph::forget(caf::actor_id table) {
  std::lock_guard<std::mutex> guard{mtx_};
  by_table_.erase(table);
}

std::optional<wait_graph::victim> wait_graph::find_cycle(uint64_t start) const {
  // Edges: owner -> (blocker, the waiter that makes the edge). An owner may wait in several
  // places at once (one per thread), so edges are the union over its waiters.
  struct edge {
    uint64_t to;
    const entry* via;
  };
  std::unordered_map<uint64_t, std::vector<edge>> edges;
  for (const auto& [addr, entries] : by_table_)
    for (const auto& e : entries)
      for (auto b : e.info.blockers)
        edges[e.info.owner].push_back({b, &e});
  // Depth-first search from `start` back to `start`, remembering the path of waiters.
  std::vector<const entry*> path;
  std::unordered_set<uint64_t> visited;
  std::vector<const entry*> found;
  std::function<bool(uint64_t)> dfs = [&](uint64_t node) -> bool {
    auto i = edges.find(node);
    if (i == edges.end())
      return false;
    for (const auto& ed : i->second) {
      path.push_back(ed.via);
      if (ed.to == start) {
        found = path;
        return true;
      }
      if (visited.insert(ed.to).second && dfs(ed.to))
        return true;
      path.pop_back();
    }
    return false;
  };
  visited.insert(start);
  if (!dfs(start))
    return std::nullopt;
  auto best = *std::min_element(found.begin(), found.end(), [](const entry* a, const entry* b) {
    if (a->info.rank != b->info.rank)
      return a->info.rank < b->info.rank;
    return a->info.seq > b->info.seq; // the youngest loses
  });
  return victim{best->table, best->info.waiter_id};
}

} // namespace litedrive
