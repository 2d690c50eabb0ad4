#pragma once
// The read-only inspection actor published over CAF's remote interface: it answers from the
// registry and the database actors, and can change nothing.

#include "schema/interfaces.hpp"
#include "schema/settings.hpp"

namespace litedrive {

inspector_actor::behavior_type inspector(inspector_actor::pointer self, db_registry_actor registry,
                                         settings cfg);

} // namespace litedrive
