#include "actors/db_registry.hpp"

#include <memory>
#include <optional>
#include <vector>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/database.hpp"
#include "schema/json_out.hpp"

namespace litedrive {

namespace {

using self_ptr = db_registry_actor::stateful_pointer<db_registry_state>;

database_actor route(self_ptr self, const db_location& loc) {
  auto& st = self->state;
  auto i = st.dbs.find(loc.key);
  if (i == st.dbs.end()) {
    auto handle = self->spawn(database, loc, st.cfg, st.graph);
    self->monitor(handle);
    ++st.spawned;
    i = st.dbs.emplace(loc.key, db_registry_state::entry{handle, 0, {}}).first;
    spdlog::debug("registry: spawned database actor for {}", loc.key);
  }
  i->second.forwards++;
  i->second.last_use = self->clock().now();
  return i->second.handle;
}

/// A group-commit request: to the database's actor, whose handle the sink learns so that the
/// sender can skip the registry for a while (the HTTP server's route cache).
template <class Atom, class Payload>
void route_with_sink(self_ptr self, const db_location& loc, Atom atm, Payload&& payload,
                     op_reply_sink_ptr sink) {
  auto db = route(self, loc);
  sink->learn_route(caf::actor_cast<caf::actor>(db));
  self->send(db, atm, std::forward<Payload>(payload), std::move(sink));
}

/// The actor of a database that is open, without spawning one.
std::optional<database_actor> existing(self_ptr self, const db_location& loc) {
  auto i = self->state.dbs.find(loc.key);
  if (i == self->state.dbs.end())
    return std::nullopt;
  return i->second.handle;
}

/// Closes databases nobody used for `idle_close`: ask each whether it is quiescent, and forget
/// it only if no request was routed to it since the question (so nothing can be lost).
void sweep(self_ptr self) {
  auto& st = self->state;
  auto now = self->clock().now();  // the actor clock: deterministic under the test coordinator
  for (auto& [key, e] : st.dbs) {
    if (now - e.last_use < st.cfg.idle_close)
      continue;
    auto forwards = e.forwards;
    self->request(e.handle, std::chrono::seconds{5}, idle_atom_v)
      .then(
        [self, key = key, forwards](bool quiescent) {
          auto& st = self->state;
          auto i = st.dbs.find(key);
          if (!quiescent || i == st.dbs.end() || i->second.forwards != forwards)
            return;
          auto handle = i->second.handle;
          st.dbs.erase(i);
          self->demonitor(handle.address());
          self->send(handle, caf::close_atom_v);
          spdlog::debug("registry: closed idle database {}", key);
        },
        [](caf::error&) { /* busy or gone: try again next sweep */ });
  }
}

/// Collects every database's stats into {"databases":[...],"open":N,...}.
caf::result<std::string> all_stats(self_ptr self) {
  auto& st = self->state;
  auto rp = self->make_response_promise<std::string>();
  struct collector {
    std::vector<std::string> parts;
    size_t pending;
  };
  auto header = [self] {
    std::string out = "{\"open\":";
    json_out::integer(out, static_cast<int64_t>(self->state.dbs.size()));
    out += ",\"spawned\":";
    json_out::integer(out, static_cast<int64_t>(self->state.spawned));
    out += ",\"died\":";
    json_out::integer(out, static_cast<int64_t>(self->state.died));
    out += ",\"databases\":[";
    return out;
  };
  if (st.dbs.empty()) {
    rp.deliver(header() + "]}");
    return rp;
  }
  auto acc = std::make_shared<collector>(collector{{}, st.dbs.size()});
  auto finish = [rp, acc, header]() mutable {
    if (--acc->pending > 0)
      return;
    auto out = header();
    for (size_t i = 0; i < acc->parts.size(); ++i) {
      if (i > 0)
        out += ',';
      out += acc->parts[i];
    }
    out += "]}";
    rp.deliver(std::move(out));
  };
  for (auto& [key, e] : st.dbs) {
    self->request(e.handle, std::chrono::seconds{2}, stats_atom_v)
      .then([acc, finish](std::string& s) mutable {
              acc->parts.push_back(std::move(s));
              finish();
            },
            [finish](caf::error&) mutable { finish(); });
  }
  return rp;
}

} // namespace

db_registry_actor::behavior_type db_registry(self_ptr self, settings s) {
  self->state.cfg = std::move(s);
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& st = self->state;
    for (auto i = st.dbs.begin(); i != st.dbs.end(); ++i) {
      if (i->second.handle.address() == dm.source) {
        if (dm.reason && dm.reason != caf::exit_reason::user_shutdown) {
          ++st.died;
          spdlog::warn("registry: database actor for {} stopped ({}); a new one starts on the "
                       "next request", i->first, caf::to_string(dm.reason));
        }
        st.dbs.erase(i);
        return;
      }
    }
  });
  self->set_exit_handler([self](caf::exit_msg& msg) {
    for (auto& [key, e] : self->state.dbs)
      self->send_exit(e.handle, msg.reason);
    self->state.dbs.clear();
    self->quit(msg.reason);
  });
  if (self->state.cfg.idle_close.count() > 0) {
    auto period = std::max<std::chrono::milliseconds>(self->state.cfg.idle_close / 4,
                                                      std::chrono::milliseconds{250});
    self->delayed_send(self, period, caf::tick_atom_v);
  }
  return {
    [self](exec_atom atm, db_location& loc, sql_txn& txn, op_reply_sink_ptr& sink) {
      route_with_sink(self, loc, atm, std::move(txn), std::move(sink));
    },
    [self](query_atom atm, db_location& loc, std::string& sql) -> caf::result<std::string> {
      return self->delegate(route(self, loc), atm, std::move(sql));
    },
    [self](create_atom atm, db_location& loc, bool init_kv,
           std::string& journal_mode) -> caf::result<std::string> {
      return self->delegate(route(self, loc), atm, init_kv, std::move(journal_mode));
    },
    [self](kv_atom atm, db_location& loc, kv_request& req, op_reply_sink_ptr& sink) {
      route_with_sink(self, loc, atm, std::move(req), std::move(sink));
    },
    [self](caf::get_atom, db_location& loc) { return route(self, loc); },
    // -- the drive's lock traffic --
    [self](lock_atom atm, db_location& loc, lock_request& req, lock_reply_sink_ptr& sink) {
      auto db = route(self, loc);
      // The sender may cache the handle and send the file's later lock traffic straight to the
      // database actor; `attach` (ahead of any idle question) keeps that actor alive meanwhile.
      if (sink->learn_route(caf::actor_cast<caf::actor>(db)))
        self->send(db, attach_atom_v);
      self->send(db, atm, std::move(req), std::move(sink));
    },
    [self](getlk_atom atm, db_location& loc, lock_request& req, lock_reply_sink_ptr& sink) {
      if (auto db = existing(self, loc))
        self->send(*db, atm, std::move(req), std::move(sink));
      else
        sink->reply_getlk(std::nullopt); // nobody holds a lock on a database nobody uses
    },
    [self](caf::flush_atom atm, db_location& loc, uint64_t owner, file_role file,
           lock_reply_sink_ptr& sink) {
      if (auto db = existing(self, loc))
        self->send(*db, atm, owner, file, std::move(sink));
      else
        sink->reply(0);
    },
    [self](release_atom atm, db_location& loc, uint64_t fh) {
      if (auto db = existing(self, loc))
        self->send(*db, atm, fh);
    },
    [self](interrupt_atom atm, db_location& loc, uint64_t id) {
      if (auto db = existing(self, loc))
        self->send(*db, atm, id);
    },
    [self](locks_atom atm, db_location& loc) -> caf::result<std::string> {
      if (auto db = existing(self, loc))
        return self->delegate(*db, atm);
      return std::string{"{\"open\":false,\"holders\":[],\"waiters\":[]}"};
    },
    [self](stats_atom) { return all_stats(self); },
    [self](caf::tick_atom) {
      sweep(self);
      auto period = std::max<std::chrono::milliseconds>(self->state.cfg.idle_close / 4,
                                                        std::chrono::milliseconds{250});
      self->delayed_send(self, period, caf::tick_atom_v);
    },
  };
}

} // namespace litedrive
