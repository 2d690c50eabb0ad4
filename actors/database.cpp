#include "actors/database.hpp"

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/sql_worker.hpp"
#include "schema/errc.hpp"
#include "schema/json_out.hpp"

namespace litedrive {

namespace {

using self_ptr = database_actor::stateful_pointer<database_state>;

/// Counts a finished request; quits when closing and nothing is left.
void finished(self_ptr self, std::chrono::steady_clock::time_point started, bool ok) {
  auto& st = self->state;
  auto us = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                      std::chrono::steady_clock::now() - started)
                                      .count());
  st.total_latency_us += us;
  st.max_latency_us = std::max(st.max_latency_us, us);
  if (!ok) ++st.failures;
  if (--st.in_flight == 0 && st.closing) {
    if (st.worker) self->send_exit(st.worker, caf::exit_reason::user_shutdown);
    self->quit();
  }
}

/// Forwards one request to the worker and answers the original sender when it is done, keeping
/// the counters on the way. The worker's reply arrives as a message, so this actor never waits.
/// The SQLite worker, spawned on first use. It dies with this actor (link), and this actor dies
/// with a crashed worker, which the registry notices (monitor) and replaces on next use.
sql_worker_actor& worker(self_ptr self) {
  auto& st = self->state;
  if (!st.worker) {
    if (st.cfg.detached_workers)
      st.worker = self->spawn<caf::detached + caf::linked>(sql_worker, st.loc, st.cfg);
    else
      st.worker = self->spawn<caf::linked>(sql_worker, st.loc, st.cfg);
  }
  return st.worker;
}

template <class... Ts> caf::result<std::string> forward(self_ptr self, Ts&&... xs) {
  auto& st = self->state;
  ++st.requests;
  ++st.in_flight;
  auto started = std::chrono::steady_clock::now();
  auto rp = self->make_response_promise<std::string>();
  self->request(worker(self), caf::infinite, std::forward<Ts>(xs)...)
      .then(
          [self, rp, started](std::string& answer) mutable {
            rp.deliver(std::move(answer));
            finished(self, started, true);
          },
          [self, rp, started](caf::error& err) mutable {
            rp.deliver(std::move(err));
            finished(self, started, false);
          });
  return rp;
}

/// Re-arms the expiry sweep of the KV store.
void arm_sweep(self_ptr self) {
  auto& st = self->state;
  if (st.sweep_armed || st.cfg.kv_sweep.count() == 0) return;
  st.sweep_armed = true;
  self->delayed_send(self, st.cfg.kv_sweep, sweep_atom_v);
}

/// Group commit: everything that queued up while the previous group was at the worker goes to
/// it as the next group (up to group_commit_max transactions), so one fsync serves them all.
/// Each request is answered only after its group committed.
void commit_next_group(self_ptr self) {
  auto& st = self->state;
  if (st.committing || st.queue.empty()) return;
  auto n = std::min(st.queue.size(), std::max<size_t>(st.cfg.group_commit_max, 1));
  std::vector<db_op> group;
  // Shared by the two handlers below: whichever runs answers every sink once.
  auto sinks = std::make_shared<std::vector<op_reply_sink_ptr>>();
  group.reserve(n);
  sinks->reserve(n);
  for (size_t i = 0; i < n; ++i) {
    group.push_back(std::move(st.queue.front().op));
    sinks->push_back(std::move(st.queue.front().sink));
    st.queue.pop_front();
  }
  st.committing = true;
  ++st.groups;
  st.grouped_txns += n;
  auto started = std::chrono::steady_clock::now();
  self->request(worker(self), caf::infinite, exec_atom_v, std::move(group))
      .then(
          [self, sinks, started](std::vector<op_outcome>& outcomes) {
            // The next group goes to the worker first: it commits while these answers travel.
            self->state.committing = false;
            commit_next_group(self);
            for (size_t i = 0; i < sinks->size(); ++i) {
              auto outcome =
                  i < outcomes.size()
                      ? std::move(outcomes[i])
                      : op_outcome{{}, make_error(errc::internal_error, "missing group outcome")};
              bool ok = !outcome.error;
              if (auto& sink = (*sinks)[i])
                sink->reply(std::move(outcome));
              else if (!ok)
                spdlog::warn("{}: {}", self->state.loc.name, caf::to_string(outcome.error));
              finished(self, started, ok);
            }
            sinks->clear();
          },
          [self, sinks, started](caf::error& err) {
            for (auto& sink : *sinks) {
              if (sink) sink->reply(op_outcome{{}, err});
              finished(self, started, false);
            }
            sinks->clear();
            self->state.committing = false;
            commit_next_group(self);
          });
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
  out += ",\"queued\":";
  json_out::integer(out, static_cast<int64_t>(st.queue.size()));
  out += ",\"group_commits\":";
  json_out::integer(out, static_cast<int64_t>(st.groups));
  out += ",\"avg_group_size\":";
  json_out::real(out, st.groups ? double(st.grouped_txns) / double(st.groups) : 0.0);
  out += ",\"open_seconds\":";
  json_out::real(out, duration<double>(steady_clock::now() - st.opened_at).count());
  out += '}';
  return out;
}

} // namespace

database_actor::behavior_type database(self_ptr self, db_location loc, settings s) {
  auto& st = self->state;
  st.loc = loc;
  st.cfg = s;
  st.opened_at = std::chrono::steady_clock::now();
  self->set_exit_handler([self](caf::exit_msg& msg) {
    if (self->state.worker) self->send_exit(self->state.worker, msg.reason);
    self->quit(msg.reason);
  });
  spdlog::debug("database actor up for {}", loc.key);
  return {
      [self](exec_atom, sql_txn& txn, op_reply_sink_ptr& sink) {
        auto& st = self->state;
        ++st.requests;
        ++st.in_flight;
        st.queue.push_back({db_op{std::move(txn)}, std::move(sink)});
        commit_next_group(self);
      },
      [self](kv_atom, kv_request& req, op_reply_sink_ptr& sink) {
        auto& st = self->state;
        ++st.requests;
        ++st.in_flight;
        if (!st.kv_used) {
          st.kv_used = true;
          arm_sweep(self);
        }
        st.queue.push_back({db_op{std::move(req)}, std::move(sink)});
        commit_next_group(self);
      },
      [self](sweep_atom) {
        auto& st = self->state;
        st.sweep_armed = false;
        // Expired keys are invisible to every read already; the sweep only reclaims their rows,
        // through the same write path (and, with history, records the expiry).
        if (st.queue.empty() && !st.closing) {
          kv_request req;
          req.op = kv_op::sweep;
          ++st.in_flight;
          st.queue.push_back({db_op{std::move(req)}, nullptr});
          commit_next_group(self);
        }
        arm_sweep(self);
      },
      [self](query_atom atm, std::string& sql) { return forward(self, atm, std::move(sql)); },
      [self](create_atom atm, bool init_kv, std::string& journal_mode) {
        return forward(self, atm, init_kv, std::move(journal_mode));
      },
      [self](stats_atom) -> caf::result<std::string> { return stats_json(self->state); },
      [self](idle_atom) -> caf::result<bool> { return self->state.in_flight == 0; },
      [self](caf::close_atom) {
        self->state.closing = true;
        if (self->state.in_flight == 0) {
          if (self->state.worker)
            self->send_exit(self->state.worker, caf::exit_reason::user_shutdown);
          self->quit();
        }
      },
  };
}

} // namespace litedrive
