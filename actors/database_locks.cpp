// The database actor's byte-range locks: the handlers of lock traffic from the drive. The
// decisions are the lock table's; this file delivers its replies, keeps the wait-for graph
// current and runs the wait-cap timer.

#include <algorithm>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/database.hpp"
#include "schema/json_out.hpp"

namespace litedrive {

namespace {

constexpr auto tick_period = std::chrono::milliseconds{100};

/// Publishes the current waiters to the cross-database wait-for graph and breaks a deadlock
/// if one exists: the victim gets EAGAIN (EDEADLK for F_SETLKW), wherever it waits.
void check_deadlocks(database_self self) {
  auto& st = self->state;
  for (int round = 0; round < 16; ++round) {
    auto victim =
        st.graph->update(self->id(), caf::actor_cast<caf::actor>(self), st.locks->waiter_infos());
    if (!victim) return;
    if (victim->table != caf::actor_cast<caf::actor>(self)) {
      caf::anon_send(caf::actor_cast<database_actor>(victim->table), deadlock_atom_v,
                     victim->waiter_id);
      return;
    }
    spdlog::info("{}: deadlock; lock request {} is the victim", st.loc.name, victim->waiter_id);
    st.locks->change([&](lock_table& t, std::vector<lock_reply>& replies) {
      t.abort_waiter(victim->waiter_id, replies);
    });
  }
}

void arm_tick(database_self self) {
  auto& st = self->state;
  if (st.tick_armed || st.locks->with([](const lock_table& t) { return t.waiters().empty(); }))
    return;
  st.tick_armed = true;
  self->delayed_send(self, tick_period, caf::tick_atom_v);
}

/// After any change of the table: deadlock check, timer. (Whoever changed it has answered the
/// waiters it ended.)
void settle(database_self self) {
  check_deadlocks(self);
  arm_tick(self);
}

} // namespace

void on_setlk(database_self self, const lock_request& req, lock_reply_sink_ptr sink) {
  auto& st = self->state;
  auto early = std::find(st.early_interrupts.begin(), st.early_interrupts.end(), req.id);
  if (early != st.early_interrupts.end()) {
    st.early_interrupts.erase(early);
    sink->reply(EINTR);
    return;
  }
  // Later requests for the same file that need no waiting are decided on the FUSE thread.
  sink->learn_fast_path(st.locks);
  if (auto answer = st.locks->setlk_or_queue(req, sink)) sink->reply(*answer);
  settle(self);
}

void on_getlk(database_self self, const lock_request& req, const lock_reply_sink_ptr& sink) {
  sink->reply_getlk(self->state.locks->with([&](const lock_table& t) { return t.getlk(req); }));
}

void on_flush(database_self self, uint64_t owner, file_role file, const lock_reply_sink_ptr& sink) {
  self->state.locks->change([&](lock_table& t, std::vector<lock_reply>& replies) {
    // A process that closes the file has no business waiting for a lock on it any more; and a
    // waiter killed before its interrupt reached us must not be granted a lock nobody releases.
    t.cancel_owner(owner, file, replies);
    t.release_owner(owner, file, replies);
  });
  settle(self);
  sink->reply(0);
}

void on_release(database_self self, uint64_t fh) {
  self->state.locks->change(
      [&](lock_table& t, std::vector<lock_reply>& replies) { t.release_handle(fh, replies); });
  settle(self);
}

void on_interrupt(database_self self, uint64_t id) {
  auto& st = self->state;
  if (!st.locks->is_waiting(id)) {
    // Either already answered (a late interrupt: harmless) or not arrived yet (it overtook its
    // request on another FUSE thread): remember it for a while.
    st.early_interrupts.push_back(id);
    if (st.early_interrupts.size() > 256) st.early_interrupts.pop_front();
  }
  st.locks->change(
      [&](lock_table& t, std::vector<lock_reply>& replies) { t.interrupt(id, replies); });
  settle(self);
}

void on_deadlock(database_self self, uint64_t id) {
  spdlog::info("{}: deadlock; lock request {} is the victim", self->state.loc.name, id);
  self->state.locks->change(
      [&](lock_table& t, std::vector<lock_reply>& replies) { t.abort_waiter(id, replies); });
  settle(self);
}

void on_lock_tick(database_self self) {
  auto& st = self->state;
  st.tick_armed = false;
  auto expired = st.locks->change([](lock_table& t, std::vector<lock_reply>& replies) {
    t.expire(std::chrono::steady_clock::now(), replies);
  });
  if (expired > 0)
    spdlog::warn("{}: {} lock request(s) waited longer than lock-wait-max ({} ms): EAGAIN",
                 st.loc.name, expired, st.cfg.lock_wait_max.count());
  settle(self);
}

void on_locks_changed(database_self self) {
  self->state.locks->settled();
  settle(self);
}

std::string locks_json(const database_state& st) {
  return st.locks->with([&](const lock_table& t) { return locks_json(st, t); });
}

std::string locks_json(const database_state& st, const lock_table& table) {
  using namespace std::chrono;
  auto now = steady_clock::now();
  auto range = [](std::string& out, uint64_t start, uint64_t end) {
    out += "\"start\":";
    json_out::integer(out, static_cast<int64_t>(start));
    out += ",\"end\":";
    if (end == to_eof)
      out += "null";
    else
      json_out::integer(out, static_cast<int64_t>(end));
  };
  auto role = [](file_role f) { return f == file_role::shm ? "\"shm\"" : "\"main\""; };
  auto kind = [](lock_kind k) { return k == lock_kind::write ? "\"write\"" : "\"read\""; };
  std::string out = "{\"open\":true,\"name\":";
  json_out::string(out, st.loc.name);
  out += ",\"holders\":[";
  bool first = true;
  for (const auto& l : table.locks()) {
    out += first ? "{" : ",{";
    first = false;
    out += "\"pid\":";
    json_out::integer(out, l.pid);
    out += ",\"owner\":";
    json_out::string(out, std::to_string(l.owner));
    out += ",\"file\":";
    out += role(l.file);
    out += ",\"type\":";
    out += kind(l.kind);
    out += ',';
    range(out, l.start, l.end);
    out += ",\"held_ms\":";
    json_out::real(out, duration<double, std::milli>(now - l.since).count());
    out += '}';
  }
  out += "],\"waiters\":[";
  first = true;
  for (const auto& w : table.waiters()) {
    out += first ? "{" : ",{";
    first = false;
    out += "\"id\":";
    json_out::integer(out, static_cast<int64_t>(w.req.id));
    out += ",\"pid\":";
    json_out::integer(out, w.req.pid);
    out += ",\"owner\":";
    json_out::string(out, std::to_string(w.req.owner));
    out += ",\"file\":";
    out += role(w.req.file);
    out += ",\"type\":";
    out += kind(w.req.kind);
    out += ',';
    range(out, w.req.start, w.req.end);
    out += ",\"blocking\":";
    out += w.req.sleep ? "true" : "false";
    out += ",\"waited_ms\":";
    json_out::real(out, duration<double, std::milli>(now - w.since).count());
    out += '}';
  }
  const auto& c = table.stats();
  out += "],\"counters\":{\"grants\":";
  json_out::integer(out, static_cast<int64_t>(c.grants));
  out += ",\"waits\":";
  json_out::integer(out, static_cast<int64_t>(c.waits));
  out += ",\"fast_fails\":";
  json_out::integer(out, static_cast<int64_t>(c.fast_fails));
  out += ",\"deadlock_victims\":";
  json_out::integer(out, static_cast<int64_t>(c.deadlocks));
  out += ",\"timeouts\":";
  json_out::integer(out, static_cast<int64_t>(c.timeouts));
  out += ",\"interrupts\":";
  json_out::integer(out, static_cast<int64_t>(c.interrupts));
  out += "}}";
  return out;
}

} // namespace litedrive
