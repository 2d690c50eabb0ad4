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
    auto handle = self->spawn(database, loc, st.cfg);
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

/// Closes databases nobody used for `idle_close`: ask each whether it is quiescent, and forget
/// it only if no request was routed to it since the question (so nothing can be lost).
void sweep(self_ptr self) {
  auto& st = self->state;
  auto now = self->clock().now(); // the actor clock: deterministic under the test coordinator
  for (auto& [key, e] : st.dbs) {
    if (now - e.last_use < st.cfg.idle_close) continue;
    auto forwards = e.forwards;
    self->request(e.handle, std::chrono::seconds{5}, idle_atom_v)
        .then(
            [self, key = key, forwards](bool quiescent) {
              auto& st = self->state;
              auto i = st.dbs.find(key);
              if (!quiescent || i == st.dbs.end() || i->second.forwards != forwards) return;
              auto handle = i->second.handle;
              st.dbs.erase(i);
              self->demonitor(handle.address());
              self->send(handle, caf::close_atom_v);
              spdlog::debug("registry: closed idle database {}", key);
            },
            [](caf::error&) { /* busy or gone: try again next sweep */ });
  }
}

/// The drive's lock view of the database at `key`, as a member to append to its stats object
/// (empty if nobody locks it).
std::string locks_member(const db_registry_state& st, const std::string& key) {
  if (!st.locks) return {};
  auto service = st.locks->find(key);
  return service ? ",\"locks\":" + service->to_json() : std::string{};
}

/// Collects every database's stats into {"databases":[...],"open":N,...}: the open database
/// actors' counters, with their lock tables; then the databases only the drive uses.
caf::result<std::string> all_stats(self_ptr self) {
  auto& st = self->state;
  auto rp = self->make_response_promise<std::string>();
  struct collector {
    std::vector<std::string> parts;
    size_t pending;
  };
  std::vector<std::string> lock_only;
  if (st.locks)
    for (const auto& [key, service] : st.locks->in_use())
      if (st.dbs.count(key) == 0) {
        std::string part = "{\"name\":";
        json_out::string(part, service->name());
        part += ",\"path\":";
        json_out::string(part, key);
        part += ",\"locks\":" + service->to_json() + "}";
        lock_only.push_back(std::move(part));
      }
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
  auto acc = std::make_shared<collector>(collector{std::move(lock_only), st.dbs.size() + 1});
  auto finish = [rp, acc, header]() mutable {
    if (--acc->pending > 0) return;
    auto out = header();
    for (size_t i = 0; i < acc->parts.size(); ++i) {
      if (i > 0) out += ',';
      out += acc->parts[i];
    }
    out += "]}";
    rp.deliver(std::move(out));
  };
  for (auto& [key, e] : st.dbs) {
    self->request(e.handle, std::chrono::seconds{2}, stats_atom_v)
        .then(
            [self, key = key, acc, finish](std::string& s) mutable {
              if (!s.empty() && s.back() == '}')
                s.insert(s.size() - 1, locks_member(self->state, key));
              acc->parts.push_back(std::move(s));
              finish();
            },
            [finish](caf::error&) mutable { finish(); });
  }
  finish(); // the lock-only part is complete
  return rp;
}

} // namespace

db_registry_actor::behavior_type db_registry(self_ptr self, settings s,
                                             std::shared_ptr<lock_registry> locks) {
  self->state.cfg = std::move(s);
  self->state.locks = std::move(locks);
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& st = self->state;
    for (auto i = st.dbs.begin(); i != st.dbs.end(); ++i) {
      if (i->second.handle.address() == dm.source) {
        if (dm.reason && dm.reason != caf::exit_reason::user_shutdown) {
          ++st.died;
          spdlog::warn("registry: database actor for {} stopped ({}); a new one starts on the "
                       "next request",
                       i->first, caf::to_string(dm.reason));
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
      [self](locks_atom, db_location& loc) -> caf::result<std::string> {
        if (self->state.locks)
          if (auto service = self->state.locks->find(loc.key)) return service->to_json();
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
