#pragma once
// The message vocabulary: litedrive's CAF type-ID block, its atoms, and the typed interfaces of
// its actors. All replies are either the JSON text of the answer or a caf::error (schema/errc).

#include <string>

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/replies_to.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/type_id.hpp>
#include <caf/typed_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "schema/lock_types.hpp"
#include "schema/query_types.hpp"
#include "schema/sql_types.hpp"

// Messages that only ever travel inside the daemon's process carry these by value; they are not
// meant for the remote inspection interface, which only speaks atoms and strings.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(litedrive::sql_txn)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(litedrive::db_location)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<litedrive::db_op>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<litedrive::op_outcome>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(litedrive::kv_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(litedrive::kv_answer)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(litedrive::op_reply_sink_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(litedrive::query_record)

CAF_BEGIN_TYPE_ID_BLOCK(litedrive, caf::first_custom_type_id)
CAF_ADD_ATOM(litedrive, litedrive, exec_atom, "exec")
CAF_ADD_ATOM(litedrive, litedrive, query_atom, "query")
CAF_ADD_ATOM(litedrive, litedrive, create_atom, "create")
CAF_ADD_ATOM(litedrive, litedrive, stats_atom, "stats")
CAF_ADD_ATOM(litedrive, litedrive, idle_atom, "idle")
CAF_ADD_ATOM(litedrive, litedrive, locks_atom, "locks")
CAF_ADD_ATOM(litedrive, litedrive, kv_atom, "kv")
CAF_ADD_ATOM(litedrive, litedrive, sweep_atom, "sweep")
CAF_ADD_ATOM(litedrive, litedrive, record_atom, "record")
CAF_ADD_ATOM(litedrive, litedrive, settle_atom, "settle")
CAF_END_TYPE_ID_BLOCK(litedrive)

namespace litedrive {

/// The SQLite worker of one database: the only place that blocks. Operations come in groups
/// (group commit): the writes in one SQLite transaction, each in its own savepoint, then the
/// reads in one read transaction; one outcome each.
using sql_worker_actor =
    caf::typed_actor<caf::replies_to<exec_atom, std::vector<db_op>>::with<std::vector<op_outcome>>,
                     caf::replies_to<query_atom, std::string>::with<std::string>,
                     caf::replies_to<create_atom, bool, std::string>::with<std::string>>;

/// SQL work on one database, as the front ends see it.
using sql_actor = caf::typed_actor<
    // Runs every item of the transaction atomically (joining the group commit); the outcome, whose
    // answer.body is {"results":[...]}, goes to the sink.
    caf::reacts_to<exec_atom, sql_txn, op_reply_sink_ptr>,
    // Runs one read-only statement on a read-only connection; answers {"results":[{resultSet}]}.
    caf::replies_to<query_atom, std::string>::with<std::string>,
    // Creates the database file if missing (bool: also create the KV table; string: journal
    // mode to set, or empty); answers the outcome.
    caf::replies_to<create_atom, bool, std::string>::with<std::string>,
    // Answers this database's counters as a JSON object.
    caf::replies_to<stats_atom>::with<std::string>,
    // A key-value request (reads and writes join the group commit); the outcome goes to the sink.
    caf::reacts_to<kv_atom, kv_request, op_reply_sink_ptr>>;

/// The per-database actor: SQL work (forwarded to its worker) plus its own life cycle.
using database_actor = sql_actor::extend<
    // Asked by the registry when the database has been unused for a while: true when nothing is
    // in flight, so it may be closed. (The drive's locks live in the lock services, apart.)
    caf::replies_to<idle_atom>::with<bool>,
    // Sent by the registry after it forgot this actor: finish what is queued, then stop.
    caf::reacts_to<caf::close_atom>,
    // Self-sent while the database serves the KV store: sweeps expired keys.
    caf::reacts_to<sweep_atom>>;

/// Maps a db_location to its database actor and forwards requests to it.
using db_registry_actor = caf::typed_actor<
    // Group-commit work (the sink learns the route and gets the outcome).
    caf::reacts_to<exec_atom, db_location, sql_txn, op_reply_sink_ptr>,
    caf::replies_to<query_atom, db_location, std::string>::with<std::string>,
    caf::replies_to<create_atom, db_location, bool, std::string>::with<std::string>,
    caf::reacts_to<kv_atom, db_location, kv_request, op_reply_sink_ptr>,
    // Lock holders and waiters of one database ({"open":false} if nobody uses it).
    caf::replies_to<locks_atom, db_location>::with<std::string>,
    // The database actor serving this location (spawned if needed): for inspection and tests.
    caf::replies_to<caf::get_atom, db_location>::with<database_actor>,
    // Answers {"databases":[...]} with every open database's stats.
    caf::replies_to<stats_atom>::with<std::string>,
    // Self-sent: the idle sweep.
    caf::reacts_to<caf::tick_atom>>;

/// The lock watchdog (actors/lock_watchdog.hpp): ends the waits nobody else would end.
using lock_watchdog_actor = caf::typed_actor<
    // Some database's lock waiters changed: look for a deadlock, arm the wait-cap tick.
    caf::reacts_to<settle_atom>,
    // Self-sent while requests wait: the wait cap.
    caf::reacts_to<caf::tick_atom>>;

/// The daemon-wide query history (one detached actor; see actors/query_log.hpp).
using query_history_actor = caf::typed_actor<
    // Remember one SQL request (buffered, written in batches).
    caf::reacts_to<record_atom, query_record>,
    // Newest first: (db or "", status or "", limit).
    caf::replies_to<caf::get_atom, std::string, std::string, int64_t>::with<std::string>,
    caf::replies_to<caf::delete_atom>::with<std::string>,
    caf::replies_to<caf::delete_atom, int64_t>::with<std::string>,
    caf::replies_to<stats_atom>::with<std::string>,
    // Self-sent: write what is buffered.
    caf::reacts_to<caf::flush_atom>>;

/// The remote inspection interface, published over CAF's middleman (io::middleman, loopback by
/// default; see `inspect` in the README): read-only, and it speaks only atoms and strings, so any
/// CAF 0.17 node that declares this same type can ask (`litedrive-inspect` does).
using inspector_actor = caf::typed_actor<
    // {"databases":[...]}: every open database actor's counters (requests, failures, latency,
    // group commits, lock holders and waiters).
    caf::replies_to<stats_atom>::with<std::string>,
    // The lock table of one database, named as in ?db=: holders, waiters, counters.
    caf::replies_to<locks_atom, std::string>::with<std::string>>;

} // namespace litedrive
