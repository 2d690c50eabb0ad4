#pragma once
// The SQLite worker of one database: owns its sql_engine and runs every request to completion,
// one at a time. It blocks (SQLite, fsync, other processes' locks), so it is spawned detached:
// on its own thread, never on CAF's scheduler.

#include <memory>

#include "schema/interfaces.hpp"
#include "schema/settings.hpp"

namespace litedrive {

class sql_engine;

struct sql_worker_state {
  std::shared_ptr<sql_engine> engine;  // shared_ptr: destructible where sql_engine is incomplete
  static inline const char* name = "litedrive.sql_worker";
};

sql_worker_actor::behavior_type
sql_worker(sql_worker_actor::stateful_pointer<sql_worker_state> self, db_location loc, settings s);

} // namespace litedrive
