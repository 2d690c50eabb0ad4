#pragma once
// What a client's SQL may do on litedrive's connections, which run as root, are shared by every
// client of a database, and sit next to every other database on the host (issue 17).
//
// - An allow-list, enforced by SQLite's authorizer on every statement a client sends (POST /db
//   items, /query, and the KV engine's statements on a client's behalf): functions by name,
//   pragmas by name and by whether they set something. Anything not listed is refused with
//   403 SQL_NOT_ALLOWED, so a function or pragma a later SQLite adds is refused until it is
//   reviewed. Notably refused: fts3_tokenizer (it hands out and calls code pointers),
//   load_extension, fts5() (the API pointer), ATTACH/DETACH, and every pragma that would change
//   the shared connection or the file's format for everybody after the request (journal_mode,
//   locking_mode, query_only, writable_schema, synchronous, ...).
// - Every connection is hardened: SQLITE_DBCONFIG_DEFENSIVE on (no writes to the schema or
//   shadow tables), SQLITE_DBCONFIG_TRUSTED_SCHEMA off (functions in the schema must be
//   innocuous), extensions off, and sqlite3_limit()s that bound one statement (see limits()).
//
// Plain C++; the README's security section lists the same decisions.

#include <sqlite3.h>

#include <string>
#include <vector>

#include "schema/settings.hpp"

namespace litedrive::sql_policy {

/// Who asks: a read-write transaction item (or the KV engine for a client), or the read-only
/// query endpoint (which also refuses every write).
enum class access { items, read_only };

/// What the authorizer decided, and why when it refused.
struct verdict {
  int code = SQLITE_OK; ///< SQLITE_OK or SQLITE_DENY
  bool write = false;   ///< refused because the endpoint is read-only
  std::string refused;  ///< what was refused by the allow-list ("function fts3_tokenizer")
};

/// The authorizer's decision for `action` with its first two arguments.
verdict authorize(access who, int action, const char* a1, const char* a2);

/// Turns the hardening on and sets the limits on a connection litedrive opened.
void harden(sqlite3* db, const settings& s);

/// The sqlite3_limit()s litedrive sets, for the README and tests: (name, id, value).
struct limit {
  const char* name;
  int id;
  int value;
};
std::vector<limit> limits(const settings& s);

} // namespace litedrive::sql_policy
