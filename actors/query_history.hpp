#pragma once
// The query history actor: owns the query_log (a SQLite file of litedrive's own). Detached, since
// it blocks on SQLite; records are buffered and written in batches off the request path.

#include <memory>
#include <string>
#include <vector>

#include "actors/query_log.hpp"
#include "schema/interfaces.hpp"

namespace litedrive {

struct query_history_state {
  std::unique_ptr<query_log> log;
  std::vector<query_record> buffer;
  bool flush_armed = false;
  static inline const char* name = "litedrive.query_history";
};

query_history_actor::behavior_type
query_history(query_history_actor::stateful_pointer<query_history_state> self, std::string path,
              int64_t max_rows);

} // namespace litedrive
