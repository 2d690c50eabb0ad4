#pragma once
// The key-value vocabulary: what the HTTP front end asks of a database actor, and what it gets
// back. Values travel as JSON text and are stored as JSON text (schema/kv_store.sql).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace litedrive {

enum class kv_op : uint8_t {
  // -- reads (run after the group's commit, in one read transaction) --
  get,        ///< the value (or the part at `path`)
  head,       ///< existence and version only
  list,       ///< keys by prefix, paginated
  batch_get,  ///< several keys
  history,    ///< the key's recorded changes, newest first
  snapshot,   ///< the key's value right after op `op_number`
  at_time,    ///< the key's value at Unix time `at_timestamp`
  diff,       ///< keys changed between `from` and `to`, with their values then
  table_snapshot,  ///< every key's value at `at_timestamp`
  rollback_preview,  ///< what a table rollback to `at_timestamp` would change
  // -- writes (each in its own savepoint of the group commit) --
  set,        ///< store `value` (or set it at `path`); `ttl`, `if_match`
  del,        ///< delete
  batch_set,  ///< several keys, all or nothing
  batch_del,  ///< several keys, all or nothing
  incr,       ///< add `delta` (decr is incr with a negative delta)
  push,       ///< append `value` to the array
  pop,        ///< remove and answer the last element
  remove,     ///< remove elements equal to `value`, or the one at `index`
  sweep,      ///< delete expired keys (the actor's timer)
  rollback,   ///< undo the key's last `steps` changes (recorded as a change itself)
  table_rollback,  ///< restore every key to its value at `at_timestamp`, in one transaction
};

constexpr bool is_write(kv_op op) {
  return op >= kv_op::set;
}

struct kv_item {
  std::string key;
  std::string value;           ///< JSON text (batch_set)
  std::optional<double> ttl;   ///< seconds
};

struct kv_request {
  kv_op op = kv_op::get;
  std::string table = "kv_store";
  std::string key;
  std::string value;               ///< JSON text: set, push, remove-by-value
  std::optional<std::string> path; ///< JSON path ($.a.b[0])
  std::optional<double> ttl;       ///< seconds from now
  std::optional<int64_t> if_match; ///< compare-and-set: expected version (0 = must not exist)
  std::optional<int64_t> index;    ///< remove by index (negative: from the end)
  int64_t delta = 1;               ///< incr/decr
  bool history = true;             ///< record the change in the key's history
  // list
  std::string prefix;
  std::string cursor;              ///< list: continue after this key
  int64_t limit = 100;
  // time travel
  int64_t before = 0;              ///< history: only ops older than this one (0 = from the newest)
  int64_t op_number = 0;           ///< snapshot
  double at_timestamp = 0;         ///< at_time
  int64_t steps = 1;               ///< rollback
  double from = 0;                 ///< diff
  double to = 0;                   ///< diff
  // batches
  std::vector<kv_item> items;      ///< batch_set
  std::vector<std::string> keys;   ///< batch_get, batch_del
};

/// A KV answer: `found` false means "no such key" (HTTP 404 with the body `null`).
struct kv_answer {
  bool found = true;
  std::string body;       ///< JSON text
  int64_t version = -1;   ///< the key's version (ETag), -1 when there is none
};

} // namespace litedrive
