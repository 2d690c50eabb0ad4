#include "actors/inspector.hpp"

#include <caf/all.hpp>

#include "actors/db_path.hpp"
#include "schema/errc.hpp"
#include "schema/json_out.hpp"

namespace litedrive {

inspector_actor::behavior_type inspector(inspector_actor::pointer self, db_registry_actor registry,
                                         settings cfg) {
  return {
      [self, registry](stats_atom atm) -> caf::result<std::string> {
        return self->delegate(registry, atm);
      },
      [self, registry, cfg](locks_atom atm, const std::string& name) -> caf::result<std::string> {
        auto loc = resolve_db_path(name, cfg);
        if (!loc) {
          // A remote caller gets the same stable error codes as an HTTP client, as JSON.
          auto err = view(loc.error());
          std::string out = "{\"error\":{\"code\":";
          json_out::string(out, to_code(err.code));
          out += ",\"message\":";
          json_out::string(out, err.message);
          out += "}}";
          return out;
        }
        return self->delegate(registry, atm, std::move(*loc));
      },
  };
}

} // namespace litedrive
