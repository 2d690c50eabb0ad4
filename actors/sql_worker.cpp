#include "actors/sql_worker.hpp"

#include <exception>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/sql_engine.hpp"
#include "schema/errc.hpp"

namespace litedrive {

namespace {

/// No exception may escape a handler (it would kill the actor and fail every queued request):
/// turn it into an internal error for this one request.
template <class F>
caf::result<std::string> guarded(const db_location& loc, F&& f) {
  try {
    auto res = f();
    if (res)
      return std::move(*res);
    return std::move(res.error());
  } catch (const std::exception& e) {
    spdlog::error("{}: unexpected exception: {}", loc.name, e.what());
    return make_error(errc::internal_error, e.what());
  } catch (...) {
    spdlog::error("{}: unexpected exception", loc.name);
    return make_error(errc::internal_error, "unexpected exception");
  }
}

} // namespace

sql_worker_actor::behavior_type
sql_worker(sql_worker_actor::stateful_pointer<sql_worker_state> self, db_location loc, settings s) {
  self->state.engine = std::make_shared<sql_engine>(std::move(loc), std::move(s));
  auto* engine = self->state.engine.get();
  // Close the connections here, on this actor's own thread: closing a file of the drive waits
  // for the drive's FLUSH, which a CAF scheduler thread must never do.
  self->set_exit_handler([self](caf::exit_msg& msg) {
    self->state.engine->close();
    self->quit(msg.reason);
  });
  return {
    [engine](exec_atom, const std::vector<db_op>& group) -> std::vector<op_outcome> {
      try {
        return engine->execute_group(group);
      } catch (const std::exception& e) {
        spdlog::error("{}: unexpected exception: {}", engine->location().name, e.what());
        engine->close(); // whatever state the connection was left in, start afresh
        return std::vector<op_outcome>(group.size(),
                                       op_outcome{{}, make_error(errc::internal_error, e.what())});
      }
    },
    [engine](query_atom, const std::string& sql) {
      return guarded(engine->location(), [&] { return engine->query(sql); });
    },
    [engine](create_atom, bool init_kv, const std::string& journal_mode) {
      return guarded(engine->location(), [&] { return engine->create(init_kv, journal_mode); });
    },
  };
}

} // namespace litedrive
