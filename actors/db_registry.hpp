#pragma once
// The registry: one database actor per canonical database path, spawned on first use, monitored,
// and replaced on the next request if it died. Idle databases are closed after `idle_close`.

#include <chrono>
#include <cstdint>
#include <string>
#include <unordered_map>

#include <memory>

#include "actors/lock_registry.hpp"
#include "schema/interfaces.hpp"
#include "schema/settings.hpp"

namespace litedrive {

struct db_registry_state {
  struct entry {
    database_actor handle;
    uint64_t forwards = 0; ///< bumped on every request routed to it (idle detection)
    std::chrono::steady_clock::time_point last_use;
  };
  settings cfg;
  std::unordered_map<std::string, entry> dbs;
  std::shared_ptr<lock_registry> locks; ///< the drive's locks, for /locks (none without a drive)
  uint64_t spawned = 0;
  uint64_t died = 0; ///< database actors that stopped abnormally
  static inline const char* name = "litedrive.db_registry";
};

db_registry_actor::behavior_type
db_registry(db_registry_actor::stateful_pointer<db_registry_state> self, settings s,
            std::shared_ptr<lock_registry> locks);

} // namespace litedrive
