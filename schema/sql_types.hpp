#pragma once
// Plain data carried by messages between the front ends and the database actors.

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include <caf/actor.hpp>
#include <caf/error.hpp>

#include "schema/kv_types.hpp"

namespace litedrive {

/// A blob value. JSON form (both directions): {"$blob": "<standard base64>"}.
struct blob {
  std::string bytes;
  bool operator==(const blob& other) const { return bytes == other.bytes; }
};

/// One bound parameter or result cell. JSON mapping: null <-> null, integers <-> int64 (exact),
/// floating point <-> double, strings <-> text, {"$blob": base64} <-> blob. Booleans bind as 1/0;
/// other arrays and objects bind as their JSON text (so SQLite's JSON functions accept them).
using sql_value = std::variant<std::nullptr_t, int64_t, double, std::string, blob>;

/// One element of a transaction: a `statement` (answers rowsUpdated) or a `query` (answers a
/// resultSet). Parameters are positional (`?`, `?NNN`) or named (`:name`, `@name`, `$name`).
struct sql_item {
  bool is_query = false;
  std::string sql;
  std::vector<sql_value> positional;
  std::vector<std::pair<std::string, sql_value>> named;
};

/// A whole request of POST /api/v1/sqlite/db: all items run in ONE SQLite transaction.
struct sql_txn {
  std::vector<sql_item> items;
};

/// One operation of a group commit: an SQL transaction or a key-value request.
using db_op = std::variant<sql_txn, kv_request>;

/// What one operation of a group came to: the answer, or the error (then none of its changes
/// were applied). SQL answers are JSON text in answer.body.
struct op_outcome {
  kv_answer answer;
  caf::error error;
};

/// Where the outcome of one group-commit operation goes when the front end that asked has no
/// actor of its own to receive a response (the HTTP server answers its client from here, without
/// a request/response pair through CAF per operation). The database actor calls reply() exactly
/// once, on its own thread. A sink destroyed unanswered (its message was dropped, its actor died)
/// answers UNAVAILABLE by itself, so no client waits for an answer that cannot come.
class op_reply_sink {
public:
  virtual ~op_reply_sink() = default;
  virtual void reply(op_outcome&& outcome) = 0;
  /// The registry tells the sender which actor serves this database, so that its next requests
  /// can skip the registry for a while (see the HTTP server's route cache). Default: not
  /// interested.
  virtual void learn_route(const caf::actor& database) {
    // nothing
  }
};

using op_reply_sink_ptr = std::shared_ptr<op_reply_sink>;

/// Where a database lives. `key` is the canonical backing path (what the registry maps to one
/// actor); `open_path` is the path litedrive's own SQLite connection opens (the backing file, or
/// the same file through the mount once the drive is up); `name` is what the client called it.
struct db_location {
  std::string key;
  std::string open_path;
  std::string name;
  bool in_store = true;
};

} // namespace litedrive
