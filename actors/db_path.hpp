#pragma once
// Turns what a client wrote in `?db=` / `?path=` into a db_location, following the reference's
// two modes: bare names live in the store (`notes` -> STORE/notes.db); absolute paths are refused
// unless --allow-any-absolute-db-path, and then used verbatim, except that a path inside the mount
// or the store maps to the same store file (and so to the same actor) as its bare name.

#include <string_view>

#include <caf/expected.hpp>

#include "schema/settings.hpp"
#include "schema/sql_types.hpp"

namespace litedrive {

/// Longest accepted name, in bytes, and longest path component.
constexpr size_t max_db_name_bytes = 1024;
constexpr size_t max_db_component_bytes = 255;

/// Lexical resolution: never touches the file system, so it is safe on any thread. Rejects
/// empty and over-long names, control characters (NUL included), `.`/`..` components, and
/// absolute paths when they are not allowed. `s.store` and `s.mount` must be absolute and
/// normalised (daemon start-up does that).
caf::expected<db_location> resolve_db_path(std::string_view name, const settings& s);

/// File-system check run by the SQLite worker before it opens a store database: the real path
/// of the file (or of its directory, when the file does not exist yet) must stay inside the
/// store, so a symlink in the store cannot lead out of it.
caf::error check_stays_in_store(const db_location& loc, const settings& s);

} // namespace litedrive
