#include "actors/database.hpp"

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/sql_worker.hpp"
#include "schema/errc.hpp"
#include "schema/json_out.hpp"

namespace litedrive {

namespace {

using self_ptr = database_actor::stateful_pointer<database_state>;

/// Forwards one request to the worker and answers the original sender when it is done, keeping
/// the counters on the way. The worker's reply arrives as a message, so this actor never waits.
template <class... Ts>
caf::result<std::string> forward(self_ptr self, Ts&&... xs) {
  auto& st = self->state;
  ++st.requests;
  ++st.in_flight;
  auto started = std::chrono::steady_clock::now();
  auto rp = self->make_response_promise<std::string>();
  auto done = [self, started](bool ok) {
    auto& st = self->state;
    auto us = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                      std::chrono::steady_clock::now() - started)
                                      .count());
    st.total_latency_us += us;
    st.max_latency_us = std::max(st.max_latency_us, us);
    if (!ok)
      ++st.failures;
    if (--st.in_flight == 0 && st.closing)
      self->quit();
  };
  self->request(st.worker, caf::infinite, std::forward<Ts>(xs)...)
    .then(
      [rp, done](std::string& answer) mutable {
        done(true);
        rp.deliver(std::move(answer));
      },
      [rp, done](caf::error& err) mutable {
        done(false);
        rp.deliver(std::move(err));
      });
  return rp;
}

std::string stats_json(const database_state& st) {
  using namespace std::chrono;
  std::string out = "{\"name\":";
  json_out::string(out, st.loc.name);
  out += ",\"path\":";
  json_out::string(out, st.loc.key);
  out += ",\"requests\":";
  json_out::integer(out, static_cast<int64_t>(st.requests));
  out += ",\"failures\":";
  json_out::integer(out, static_cast<int64_t>(st.failures));
  out += ",\"in_flight\":";
  json_out::integer(out, static_cast<int64_t>(st.in_flight));
  out += ",\"avg_latency_ms\":";
  json_out::real(out, st.requests ? st.total_latency_us / 1000.0 / st.requests : 0.0);
  out += ",\"max_latency_ms\":";
  json_out::real(out, st.max_latency_us / 1000.0);
  out += ",\"open_seconds\":";
  json_out::real(out, duration<double>(steady_clock::now() - st.opened_at).count());
  out += '}';
  return out;
}

} // namespace

database_actor::behavior_type database(self_ptr self, db_location loc, settings s) {
  auto& st = self->state;
  st.loc = loc;
  st.opened_at = std::chrono::steady_clock::now();
  // The worker dies with this actor (link), and this actor dies with a crashed worker, which
  // the registry notices (monitor) and replaces on next use.
  if (s.detached_workers)
    st.worker = self->spawn<caf::detached + caf::linked>(sql_worker, loc, s);
  else
    st.worker = self->spawn<caf::linked>(sql_worker, loc, s);
  self->set_exit_handler([self](caf::exit_msg& msg) {
    self->send_exit(self->state.worker, msg.reason);
    self->quit(msg.reason);
  });
  self->attach_functor([worker = st.worker]() mutable {
    caf::anon_send_exit(worker, caf::exit_reason::user_shutdown);
  });
  spdlog::debug("database actor up for {}", loc.key);
  return {
    [self](exec_atom atm, sql_txn& txn) { return forward(self, atm, std::move(txn)); },
    [self](query_atom atm, std::string& sql) { return forward(self, atm, std::move(sql)); },
    [self](create_atom atm, bool init_kv) { return forward(self, atm, init_kv); },
    [self](stats_atom) -> caf::result<std::string> { return stats_json(self->state); },
    [self](idle_atom) -> caf::result<bool> { return self->state.in_flight == 0; },
    [self](caf::close_atom) {
      self->state.closing = true;
      if (self->state.in_flight == 0)
        self->quit();
    },
  };
}

} // namespace litedrive
