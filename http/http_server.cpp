// HTTP routes of litedrive. Index:
//   1. the bridge actor (how a RESTinio thread asks an actor without blocking)
//   2. replies and the one error table
//   3. request helpers (query string, db location)
//   4. route handlers
//   5. routing and server life cycle

#include "http/http_server.hpp"

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>
#include <restinio/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/db_path.hpp"
#include "http/kv_parsing.hpp"
#include "http/request_parsing.hpp"
#include "http/web_console.hpp"
#include "schema/errc.hpp"
#include "schema/json_out.hpp"

namespace litedrive {

// == 1. the bridge actor =========================================================================

namespace {
class http_sink;

/// Answers a request SERVICE_TIMEOUT unless its answer came first.
void answer_late(http_sink& sink);
} // namespace

/// The requests waiting for a database actor's answer through their sink, oldest first,
/// for the bridge's timer. They all have the same timeout, so arrival order is deadline order.
/// Entries whose sink is gone (answered and dropped) leave from the front as new ones arrive,
/// so the list holds little more than what is in flight.
class sink_deadlines {
public:
  using clock = std::chrono::steady_clock;

  /// Adds one; true when the bridge has no timer for the list yet and must be told.
  bool add(clock::time_point deadline, std::weak_ptr<http_sink> sink) {
    std::lock_guard<std::mutex> guard{mtx_};
    while (!entries_.empty() && entries_.front().second.expired())
      entries_.pop_front();
    entries_.emplace_back(deadline, std::move(sink));
    return !std::exchange(armed_, true);
  }

  /// Takes out the expired ones still waiting for an answer. Once the list is empty, the next
  /// add tells the bridge again.
  std::vector<std::shared_ptr<http_sink>> expire(clock::time_point now) {
    std::vector<std::shared_ptr<http_sink>> late;
    std::lock_guard<std::mutex> guard{mtx_};
    while (!entries_.empty()
           && (entries_.front().second.expired() || entries_.front().first <= now)) {
      if (auto sink = entries_.front().second.lock()) late.push_back(std::move(sink));
      entries_.pop_front();
    }
    if (entries_.empty()) armed_ = false;
    return late;
  }

  std::optional<clock::time_point> earliest() {
    std::lock_guard<std::mutex> guard{mtx_};
    if (entries_.empty()) return std::nullopt;
    return entries_.front().first;
  }

private:
  std::mutex mtx_;
  std::deque<std::pair<clock::time_point, std::weak_ptr<http_sink>>> entries_;
  bool armed_ = false; ///< the bridge knows the list is not empty
};

/// The database actors that group-commit requests (KV, SQL transactions) go to directly, without
/// the registry's hop (one CAF message fewer per request: ~5-8% more GETs per second here).
/// A route is learned from the
/// registry and used for `ttl` only, then learned again: while a database is in use the
/// registry keeps seeing requests for it, so it never takes it for idle (ttl is at most a
/// quarter of idle-close-ms). A route to an actor that stopped (it crashed) is forgotten when
/// the first request sent on it is lost (its sink answers UNAVAILABLE), or after ttl.
class route_cache {
public:
  using clock = std::chrono::steady_clock;

  explicit route_cache(std::chrono::milliseconds idle_close)
      : ttl_(idle_close.count() > 0 ? std::min(idle_close / 4, std::chrono::milliseconds{1000})
                                    : std::chrono::milliseconds{1000}) {}

  std::optional<database_actor> find(const std::string& key) {
    std::lock_guard<std::mutex> guard{mtx_};
    auto i = entries_.find(key);
    if (i == entries_.end()) return std::nullopt;
    if (clock::now() >= i->second.expires) {
      entries_.erase(i);
      return std::nullopt;
    }
    return i->second.db;
  }

  void forget(const std::string& key) {
    std::lock_guard<std::mutex> guard{mtx_};
    entries_.erase(key);
  }

  void learn(const std::string& key, database_actor db) {
    auto expires = clock::now() + ttl_;
    std::lock_guard<std::mutex> guard{mtx_};
    if (entries_.size() >= max_entries) {
      auto now = clock::now();
      for (auto i = entries_.begin(); i != entries_.end();)
        i = i->second.expires <= now ? entries_.erase(i) : std::next(i);
      if (entries_.size() >= max_entries) return;
    }
    entries_[key] = entry{std::move(db), expires};
  }

private:
  static constexpr size_t max_entries = 4096;
  struct entry {
    database_actor db;
    clock::time_point expires;
  };
  const std::chrono::milliseconds ttl_;
  std::mutex mtx_;
  std::unordered_map<std::string, entry> entries_;
};

/// What the bridge keeps of the requests it waits for. CAF's own request timeouts wake its clock
/// thread twice per request (one timer set, one cancelled, each under a mutex with a condition
/// variable): at tens of thousands of requests per second on two cores that cost more CPU than
/// the timers are worth. Every request here has the same timeout, so the waiting requests are in
/// deadline order by id, and one timer, armed for the oldest, answers the late ones.
struct bridge_state {
  using clock = std::chrono::steady_clock;
  struct waiting {
    clock::time_point deadline;
    std::function<void(caf::error&)> on_error;
  };
  std::chrono::milliseconds timeout{0};
  uint64_t next_id = 0;
  std::map<uint64_t, waiting> pending;         ///< by id, which is also by deadline
  std::shared_ptr<class sink_deadlines> sinks; ///< requests answered through sinks
  bool timer_armed = false;
  static inline const char* name = "litedrive.http_bridge";
};

using bridge_actor = caf::stateful_actor<bridge_state>;

/// A piece of work to run inside the bridge: it sends the request (with ask) and says how to
/// answer the HTTP client. Never leaves the process.
struct http_job {
  std::function<void(bridge_actor*)> run;
};

} // namespace litedrive

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(litedrive::http_job)

namespace litedrive {

namespace {

void arm_timer(bridge_actor* self) {
  auto& st = self->state;
  if (st.timer_armed) return;
  auto next = st.sinks->earliest();
  if (!st.pending.empty() && (!next || st.pending.begin()->second.deadline < *next))
    next = st.pending.begin()->second.deadline;
  if (!next) return;
  st.timer_armed = true;
  using namespace std::chrono;
  auto wait = duration_cast<milliseconds>(*next - bridge_state::clock::now());
  self->delayed_send(self, std::max(wait, milliseconds{0}) + milliseconds{1}, caf::tick_atom_v);
}

/// Sends one request to dest and answers exactly once: on_value with the reply, on_error with an
/// error reply or, when no reply came within the timeout, SERVICE_TIMEOUT (a late reply is
/// dropped).
template <class Value, class Dest, class OnValue, class OnError, class... Ts>
void ask(bridge_actor* self, const Dest& dest, OnValue on_value, OnError on_error, Ts&&... xs) {
  auto& st = self->state;
  auto id = st.next_id++;
  st.pending.emplace(
      id, bridge_state::waiting{bridge_state::clock::now() + st.timeout, std::move(on_error)});
  arm_timer(self);
  self->request(dest, caf::infinite, std::forward<Ts>(xs)...)
      .then(
          [self, id, on_value](Value& x) mutable {
            if (self->state.pending.erase(id) > 0) on_value(x);
          },
          [self, id](caf::error& err) {
            auto& pending = self->state.pending;
            auto i = pending.find(id);
            if (i == pending.end()) return;
            auto f = std::move(i->second.on_error);
            pending.erase(i);
            f(err);
          });
}

caf::behavior http_bridge(bridge_actor* self, std::chrono::milliseconds timeout,
                          std::shared_ptr<sink_deadlines> sinks) {
  self->state.timeout = timeout;
  self->state.sinks = std::move(sinks);
  return {
      [self](http_job& job) {
        try {
          job.run(self);
        } catch (const std::exception& e) {
          spdlog::error("http bridge: unexpected exception: {}", e.what());
        }
      },
      [self](caf::tick_atom) {
        auto& st = self->state;
        st.timer_armed = false;
        auto now = bridge_state::clock::now();
        while (!st.pending.empty() && st.pending.begin()->second.deadline <= now) {
          auto f = std::move(st.pending.begin()->second.on_error);
          st.pending.erase(st.pending.begin());
          auto err = caf::make_error(caf::sec::request_timeout);
          f(err);
        }
        for (auto& sink : st.sinks->expire(now))
          answer_late(*sink);
        arm_timer(self);
      },
      // A request is waiting on an empty list: the timer must cover it.
      [self](sweep_atom) { arm_timer(self); },
  };
}

// == 2. replies and the one error table ==========================================================

using request_handle = restinio::request_handle_t;

struct http_status {
  uint16_t code;
  const char* reason;
};

/// errc -> HTTP status. The README's error table is this function.
http_status status_of(errc x) {
  switch (x) {
  case errc::none:
    return {200, "OK"};
  case errc::invalid_json:
  case errc::invalid_request:
  case errc::missing_parameter:
  case errc::invalid_parameter:
  case errc::invalid_base64:
  case errc::invalid_db_path:
  case errc::too_many_items:
  case errc::sql_error:
    return {400, "Bad Request"};
  case errc::read_only_violation:
    return {403, "Forbidden"};
  case errc::sql_not_allowed:
    return {403, "Forbidden"};
  case errc::database_not_found:
  case errc::not_found:
    return {404, "Not Found"};
  case errc::method_not_allowed:
    return {405, "Method Not Allowed"};
  case errc::query_timeout:
    return {408, "Request Timeout"};
  case errc::payload_too_large:
  case errc::result_too_large:
    return {413, "Payload Too Large"};
  case errc::database_busy:
  case errc::unavailable:
    return {503, "Service Unavailable"};
  case errc::service_timeout:
    return {504, "Gateway Timeout"};
  case errc::internal_error:
    return {500, "Internal Server Error"};
  case errc::invalid_key:
  case errc::invalid_path:
  case errc::not_a_number:
  case errc::number_overflow:
  case errc::not_an_array:
  case errc::index_out_of_range:
    return {400, "Bad Request"};
  case errc::version_conflict:
    return {412, "Precondition Failed"};
  case errc::history_unavailable:
    return {409, "Conflict"};
  }
  return {500, "Internal Server Error"};
}

void reply(const request_handle& req, http_status status, std::string body,
           const char* allow = nullptr, const char* content_type = "application/json") {
  auto resp = req->create_response(
      restinio::http_status_line_t{restinio::http_status_code_t{status.code}, status.reason});
  resp.append_header(restinio::http_field::content_type, content_type);
  if (allow != nullptr) resp.append_header(restinio::http_field::allow, allow);
  resp.set_body(std::move(body));
  resp.done();
}

void reply_ok(const request_handle& req, std::string body) {
  reply(req, {200, "OK"}, std::move(body));
}

/// Every failure, whatever its origin, leaves through here: {"error":{"code","message"[,"item"]}}.
void reply_error(const request_handle& req, const caf::error& err, const char* allow = nullptr) {
  auto v = view(err);
  if (v.code == errc::internal_error)
    spdlog::error("{} {}: {}", req->header().method().c_str(), req->header().path(), v.message);
  std::string body = "{\"error\":{\"code\":";
  json_out::string(body, to_code(v.code));
  body += ",\"message\":";
  json_out::string(body, v.message);
  if (v.item >= 0) {
    body += ",\"item\":";
    json_out::integer(body, v.item);
  }
  if (v.code == errc::version_conflict) {
    body += ",\"current_version\":";
    json_out::integer(body, v.version < 0 ? 0 : v.version);
  }
  body += "}}";
  reply(req, status_of(v.code), std::move(body), allow);
}

// == 3. request helpers ==========================================================================

struct context {
  caf::actor_system* sys = nullptr;
  db_registry_actor registry;
  query_history_actor history;
  caf::actor bridge;
  std::shared_ptr<sink_deadlines> sinks = std::make_shared<sink_deadlines>();
  std::shared_ptr<route_cache> routes;
  settings cfg;
  std::function<std::string()> drive_counters;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  std::atomic<uint64_t> requests{0};
};

using query_params = restinio::query_string_params_t;

/// parse_query throws on malformed escapes; that is the client's error, not ours.
caf::expected<query_params> parse_params(const request_handle& req) {
  try {
    return restinio::parse_query<restinio::parse_query_traits::relaxed>(req->header().query());
  } catch (const std::exception& e) {
    return make_error(errc::invalid_parameter, std::string{"malformed query string: "} + e.what());
  }
}

caf::expected<std::string> required(const query_params& qp, const char* name) {
  auto v = qp.get_param(name);
  if (!v)
    return make_error(errc::missing_parameter,
                      std::string{"the query parameter '"} + name + "' is required");
  return std::string{*v};
}

caf::expected<db_location> location_param(const query_params& qp, const char* name,
                                          const settings& cfg) {
  auto raw = required(qp, name);
  if (!raw) return std::move(raw.error());
  return resolve_db_path(*raw, cfg);
}

caf::expected<bool> bool_param(const query_params& qp, const char* name, bool fallback) {
  auto v = qp.get_param(name);
  if (!v) return fallback;
  if (*v == "true" || *v == "1" || *v == "yes") return true;
  if (*v == "false" || *v == "0" || *v == "no") return false;
  return make_error(errc::invalid_parameter, std::string{"'"} + name + "' must be true or false");
}

/// Sends one request to the registry from the bridge and answers the client with the reply.
template <class... Ts> void ask_registry(context& ctx, request_handle req, Ts... xs) {
  auto registry = ctx.registry;
  caf::anon_send(ctx.bridge, http_job{[=](bridge_actor* self) mutable {
                   ask<std::string>(
                       self, registry, [req](std::string& body) { reply_ok(req, std::move(body)); },
                       [req](caf::error& err) { reply_error(req, err); }, std::move(xs)...);
                 }});
}

/// One HTTP request whose outcome a database actor delivers through this sink, straight to the
/// client from the actor's thread, with no request/response pair through the bridge. Exactly one
/// answer wins: the actor's, the bridge's timeout (504), or, when the sink is dropped unanswered
/// (its actor stopped), UNAVAILABLE.
class http_sink : public op_reply_sink {
public:
  explicit http_sink(request_handle req) : req_(std::move(req)) {}

  void reply(op_outcome&& outcome) final {
    if (claim()) answer_safely(std::move(outcome));
  }

  void expire() {
    if (claim()) answer_safely(op_outcome{{}, caf::make_error(caf::sec::request_timeout)});
  }

  void learn_route(const caf::actor& database) override {
    if (routes_) routes_->learn(key_, caf::actor_cast<database_actor>(database));
  }

  /// Sends `atom, payload` with the sink to the database's actor, on a cached route or through
  /// the registry (which then teaches the route), and arms the timeout. Not make_shared for
  /// sinks: the deadline list holds a weak_ptr, which would keep a make_shared object's memory
  /// (and with it the request's) until the entry leaves the list.
  template <class Atom, class Payload>
  static void send(context& ctx, std::shared_ptr<http_sink> sink, db_location loc, Atom atom,
                   Payload payload);

protected:
  /// The outcome to the client: called at most once.
  virtual void answer(op_outcome&& outcome) = 0;

  /// For the destructor of every derived class (where answer() still reaches it): a request
  /// nobody answered gets UNAVAILABLE, and its route, which led to a stopped actor, is forgotten.
  void abandon() noexcept {
    if (!claim()) return;
    if (routes_) routes_->forget(key_);
    answer_safely(op_outcome{
        {}, make_error(errc::unavailable, "the database actor stopped before answering")});
  }

  request_handle req_;

private:
  bool claim() { return !answered_.exchange(true, std::memory_order_acq_rel); }

  void answer_safely(op_outcome&& outcome) noexcept {
    try {
      answer(std::move(outcome));
    } catch (const std::exception& e) {
      spdlog::warn("cannot answer {}: {}", req_->header().path(), e.what());
    }
  }

  std::atomic<bool> answered_{false};
  std::shared_ptr<route_cache> routes_;
  std::string key_; ///< the database's canonical path, for the route cache
};

void answer_late(http_sink& sink) {
  sink.expire();
}

template <class Atom, class Payload>
void http_sink::send(context& ctx, std::shared_ptr<http_sink> sink, db_location loc, Atom atom,
                     Payload payload) {
  if (ctx.sinks->add(sink_deadlines::clock::now() + ctx.cfg.request_timeout(), sink))
    caf::anon_send(ctx.bridge, sweep_atom_v);
  sink->routes_ = ctx.routes;
  if (auto db = ctx.routes->find(loc.key)) {
    sink->key_ = std::move(loc.key);
    caf::anon_send(*db, atom, std::move(payload), op_reply_sink_ptr{std::move(sink)});
    return;
  }
  sink->key_ = loc.key;
  caf::anon_send(ctx.registry, atom, std::move(loc), std::move(payload),
                 op_reply_sink_ptr{std::move(sink)});
}

// == 4. route handlers ===========================================================================

/// What the query history keeps of one SQL request, filled in when its answer comes.
struct sql_trace {
  std::string db;
  std::string sql;
  int64_t params = 0;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
};

double unix_now() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

/// Counts result rows and changed rows in an answer
/// ({"results":[{"resultSet":[...]}|{"rowsUpdated":N}]}).
void count_rows(const std::string& body, query_record& r) {
  if (body.size() > (1u << 20)) return; // big answers: not worth parsing again for the statistics
  try {
    auto j = nlohmann::json::parse(body);
    for (const auto& item : j.at("results")) {
      if (item.contains("resultSet"))
        r.rows_returned += static_cast<int64_t>(item["resultSet"].size());
      if (item.contains("rowsUpdated")) r.rows_changed += item["rowsUpdated"].get<int64_t>();
    }
  } catch (const std::exception&) {
  }
}

void record(const query_history_actor& history, const sql_trace& t, const std::string* body,
            const caf::error* err) {
  using namespace std::chrono;
  query_record r;
  r.db = t.db;
  r.sql = t.sql;
  r.params = t.params;
  r.duration_ms = duration<double, std::milli>(steady_clock::now() - t.started).count();
  r.timestamp = unix_now();
  if (body != nullptr) {
    r.status = "ok";
    count_rows(*body, r);
  } else {
    r.status = to_code(view(*err).code);
  }
  caf::anon_send(history, record_atom_v, std::move(r));
}

/// ask_registry for SQL requests: the answer also goes to the query history.
template <class... Ts>
void ask_registry_traced(context& ctx, request_handle req, sql_trace trace, Ts... xs) {
  auto registry = ctx.registry;
  auto* c = &ctx;
  caf::anon_send(ctx.bridge, http_job{[=](bridge_actor* self) mutable {
                   ask<std::string>(
                       self, registry,
                       [req, trace, c](std::string& body) {
                         record(c->history, trace, &body, nullptr);
                         reply_ok(req, std::move(body));
                       },
                       [req, trace, c](caf::error& err) {
                         record(c->history, trace, nullptr, &err);
                         reply_error(req, err);
                       },
                       std::move(xs)...);
                 }});
}

/// Where a database actor answers one SQL transaction (POST /db); the outcome also goes to the
/// query history.
class sql_sink final : public http_sink {
public:
  sql_sink(request_handle req, query_history_actor history, sql_trace trace)
      : http_sink(std::move(req)), history_(std::move(history)), trace_(std::move(trace)) {}

  ~sql_sink() override { abandon(); }

private:
  void answer(op_outcome&& outcome) override {
    if (outcome.error) {
      record(history_, trace_, nullptr, &outcome.error);
      reply_error(req_, outcome.error);
    } else {
      record(history_, trace_, &outcome.answer.body, nullptr);
      reply_ok(req_, std::move(outcome.answer.body));
    }
  }

  query_history_actor history_;
  sql_trace trace_;
};

void handle_transaction(context& ctx, const request_handle& req, const query_params& qp) {
  auto loc = location_param(qp, "db", ctx.cfg);
  if (!loc) return reply_error(req, loc.error());
  auto txn = parse_transaction(req->body(), ctx.cfg.max_items, ctx.cfg.max_json_depth);
  if (!txn) return reply_error(req, txn.error());
  sql_trace trace;
  trace.db = loc->name;
  for (const auto& item : txn->items) {
    if (!trace.sql.empty()) trace.sql += "; ";
    if (trace.sql.size() < max_query_sql_bytes) trace.sql += item.sql;
    trace.params += static_cast<int64_t>(item.positional.size() + item.named.size());
  }
  std::shared_ptr<http_sink> sink{new sql_sink{req, ctx.history, std::move(trace)}};
  http_sink::send(ctx, std::move(sink), std::move(*loc), exec_atom_v, std::move(*txn));
}

void handle_query(context& ctx, const request_handle& req, const query_params& qp) {
  auto loc = location_param(qp, "db", ctx.cfg);
  if (!loc) return reply_error(req, loc.error());
  auto encoded = required(qp, "sql");
  if (!encoded) return reply_error(req, encoded.error());
  auto sql = decode_sql_param(*encoded);
  if (!sql) return reply_error(req, sql.error());
  sql_trace trace;
  trace.db = loc->name;
  trace.sql = sql->substr(0, max_query_sql_bytes);
  ask_registry_traced(ctx, req, std::move(trace), query_atom_v, std::move(*loc), std::move(*sql));
}

void handle_create(context& ctx, const request_handle& req, const query_params& qp) {
  auto loc = location_param(qp, "path", ctx.cfg);
  if (!loc) return reply_error(req, loc.error());
  auto init_kv = bool_param(qp, "init_kv", false);
  if (!init_kv) return reply_error(req, init_kv.error());
  std::string journal_mode;
  if (auto j = qp.get_param("journal_mode")) {
    journal_mode = std::string{*j};
    for (auto& c : journal_mode)
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (journal_mode != "delete" && journal_mode != "truncate" && journal_mode != "persist"
        && journal_mode != "wal")
      return reply_error(req, make_error(errc::invalid_parameter,
                                         "journal_mode must be delete, truncate, persist or wal"));
  }
  ask_registry(ctx, req, create_atom_v, std::move(*loc), *init_kv, std::move(journal_mode));
}

void handle_locks(context& ctx, const request_handle& req, const query_params& qp) {
  auto loc = location_param(qp, "db", ctx.cfg);
  if (!loc) return reply_error(req, loc.error());
  ask_registry(ctx, req, locks_atom_v, std::move(*loc));
}

// -- the key-value store ----------------------------------------------------------------------

void reply_kv(const request_handle& req, kv_op op, kv_answer&& a,
              const std::optional<std::string>& if_none_match) {
  std::string etag;
  if (a.version >= 0) etag = "\"" + std::to_string(a.version) + "\"";
  bool read = op == kv_op::get || op == kv_op::head || op == kv_op::at_time;
  if (read && a.found && if_none_match && !etag.empty()
      && (*if_none_match == etag || *if_none_match == "W/" + etag || *if_none_match == "*")) {
    auto resp = req->create_response(restinio::status_not_modified());
    resp.append_header(restinio::http_field::etag, etag);
    return (void)resp.done();
  }
  http_status status = a.found ? http_status{200, "OK"} : http_status{404, "Not Found"};
  auto resp = req->create_response(
      restinio::http_status_line_t{restinio::http_status_code_t{status.code}, status.reason});
  resp.append_header(restinio::http_field::content_type, "application/json");
  if (!etag.empty()) resp.append_header(restinio::http_field::etag, etag);
  if (op != kv_op::head) resp.set_body(std::move(a.body));
  resp.done();
}

/// Where a database actor answers one KV request.
class kv_sink final : public http_sink {
public:
  kv_sink(request_handle req, kv_op op, std::optional<std::string> if_none_match)
      : http_sink(std::move(req)), op_(op), if_none_match_(std::move(if_none_match)) {}

  ~kv_sink() override { abandon(); }

private:
  void answer(op_outcome&& outcome) override {
    if (outcome.error)
      reply_error(req_, outcome.error);
    else
      reply_kv(req_, op_, std::move(outcome.answer), if_none_match_);
  }

  kv_op op_;
  std::optional<std::string> if_none_match_;
};

void handle_kv(context& ctx, const request_handle& req, std::string_view rest,
               const query_params& qp) {
  auto segments = kv_segments(rest);
  if (!segments) return reply_error(req, segments.error());
  param_map params;
  for (const auto& [name, value] : qp)
    params.emplace(std::string{name}, std::string{value});
  auto loc = location_param(qp, "db", ctx.cfg);
  if (!loc) return reply_error(req, loc.error());
  const auto& hdr = req->header();
  std::optional<std::string_view> if_match;
  if (auto h = hdr.opt_value_of("If-Match")) if_match = std::string_view{h->data(), h->size()};
  std::optional<std::string> if_none_match;
  if (auto h = hdr.opt_value_of("If-None-Match")) if_none_match = std::string{h->data(), h->size()};
  std::string method = hdr.method().c_str();
  auto kv = parse_kv(method, *segments, params, req->body(), if_match, ctx.cfg.kv_batch_max,
                     ctx.cfg.max_json_depth);
  if (!kv) {
    auto code = view(kv.error()).code;
    return reply_error(req, kv.error(),
                       code == errc::method_not_allowed ? kv_allowed_methods(*segments) : nullptr);
  }
  std::shared_ptr<http_sink> sink{new kv_sink{req, kv->op, std::move(if_none_match)}};
  http_sink::send(ctx, std::move(sink), std::move(*loc), kv_atom_v, std::move(*kv));
}

void handle_health(context& ctx, const request_handle& req) {
  using namespace std::chrono;
  std::string out = "{\"status\":\"ok\",\"service\":\"litedrive\",\"uptime_seconds\":";
  json_out::real(out, duration<double>(steady_clock::now() - ctx.started).count());
  out += ",\"requests\":";
  json_out::integer(out, static_cast<int64_t>(ctx.requests.load()));
  out += ",\"store\":";
  json_out::string(out, ctx.cfg.store);
  out += ",\"mount\":";
  if (ctx.cfg.open_through_mount)
    json_out::string(out, ctx.cfg.mount);
  else
    out += "null";
  out += ",\"drive_requests\":";
  out += ctx.drive_counters ? ctx.drive_counters() : std::string{"null"};
  out += '}';
  reply_ok(req, std::move(out));
}

// == 5. routing and server life cycle ============================================================

struct route {
  const char* path;
  restinio::http_method_id_t method;
  const char* allow;
  void (*handler)(context&, const request_handle&, const query_params&);
};

/// GET /history, DELETE /history, DELETE /history/{index}, GET /history/stats.
void handle_history(context& ctx, const request_handle& req, std::string_view rest,
                    const query_params& qp) {
  auto method = req->header().method();
  auto history = ctx.history;
  auto answer = [&](auto... xs) {
    caf::anon_send(ctx.bridge, http_job{[=](bridge_actor* self) mutable {
                     ask<std::string>(
                         self, history,
                         [req](std::string& body) { reply_ok(req, std::move(body)); },
                         [req](caf::error& err) { reply_error(req, err); }, xs...);
                   }});
  };
  if (rest.empty()) {
    if (method == restinio::http_method_get()) {
      std::string db, status;
      if (auto v = qp.get_param("db")) {
        auto loc = resolve_db_path(*v, ctx.cfg);
        if (!loc) return reply_error(req, loc.error());
        db = loc->name;
      }
      if (auto v = qp.get_param("status")) status = std::string{*v};
      int64_t limit = 100;
      if (auto v = qp.get_param("limit")) {
        char* end = nullptr;
        std::string text{*v};
        limit = std::strtoll(text.c_str(), &end, 10);
        if (text.empty() || *end != '\0' || limit < 1 || limit > 10000)
          return reply_error(req, make_error(errc::invalid_parameter, "'limit' must be 1..10000"));
      }
      return answer(caf::get_atom_v, db, status, limit);
    }
    if (method == restinio::http_method_delete()) return answer(caf::delete_atom_v);
    return reply_error(req, make_error(errc::method_not_allowed, "use GET or DELETE"),
                       "GET, DELETE");
  }
  rest.remove_prefix(1);
  if (rest == "stats") {
    if (method != restinio::http_method_get())
      return reply_error(req, make_error(errc::method_not_allowed, "use GET"), "GET");
    return answer(stats_atom_v);
  }
  char* end = nullptr;
  std::string text{rest};
  long long index = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || index < 1)
    return reply_error(req, make_error(errc::not_found, "no such history route"));
  if (method != restinio::http_method_delete())
    return reply_error(req, make_error(errc::method_not_allowed, "use DELETE"), "DELETE");
  answer(caf::delete_atom_v, static_cast<int64_t>(index));
}

/// The checks every routed request passes first: the body limit (413) and a well-formed query
/// string. Answers the error itself and returns nullopt when one fails.
std::optional<query_params> checked_params(context& ctx, const request_handle& req) {
  if (req->body().size() > ctx.cfg.max_body_bytes) {
    reply_error(req,
                make_error(errc::payload_too_large,
                           "the body has " + std::to_string(req->body().size())
                               + " bytes; the limit is " + std::to_string(ctx.cfg.max_body_bytes)
                               + " (max_body_bytes)"));
    return std::nullopt;
  }
  auto qp = parse_params(req);
  if (!qp) {
    reply_error(req, qp.error());
    return std::nullopt;
  }
  return std::move(*qp);
}

restinio::request_handling_status_t dispatch(context& ctx, const request_handle& req) {
  ++ctx.requests;
  const auto& hdr = req->header();
  std::string_view path = hdr.path();
  auto method = hdr.method();
  // Routes are exact: no case folding, no trailing slash (RESTinio's router would allow both).
  static const route routes[] = {
      {"/api/v1/sqlite/db", restinio::http_method_post(), "POST",
       [](context& c, const request_handle& r, const query_params& q) {
         handle_transaction(c, r, q);
       }},
      {"/api/v1/sqlite/query", restinio::http_method_get(), "GET",
       [](context& c, const request_handle& r, const query_params& q) { handle_query(c, r, q); }},
      {"/api/v1/sqlite/db/create", restinio::http_method_post(), "POST",
       [](context& c, const request_handle& r, const query_params& q) { handle_create(c, r, q); }},
      {"/api/v1/sqlite/locks", restinio::http_method_get(), "GET",
       [](context& c, const request_handle& r, const query_params& q) { handle_locks(c, r, q); }},
      {"/api/v1/sqlite/health", restinio::http_method_get(), "GET",
       [](context& c, const request_handle& r, const query_params&) { handle_health(c, r); }},
      {"/api/v1/sqlite/health/cache", restinio::http_method_get(), "GET",
       [](context& c, const request_handle& r, const query_params&) {
         ask_registry(c, r, stats_atom_v);
       }},
      {"/", restinio::http_method_get(), "GET",
       [](context&, const request_handle& r, const query_params&) {
         reply(r, {200, "OK"}, web_console_html, nullptr, "text/html; charset=utf-8");
       }},
  };
  try {
    static constexpr std::string_view history_prefix = "/api/v1/sqlite/history";
    if (path.compare(0, history_prefix.size(), history_prefix) == 0
        && (path.size() == history_prefix.size() || path[history_prefix.size()] == '/')) {
      auto qp = checked_params(ctx, req);
      if (!qp) return restinio::request_accepted();
      handle_history(ctx, req, path.substr(history_prefix.size()), *qp);
      return restinio::request_accepted();
    }
    static constexpr std::string_view kv_prefix = "/api/v1/sqlite/kv";
    if (path.compare(0, kv_prefix.size(), kv_prefix) == 0
        && (path.size() == kv_prefix.size() || path[kv_prefix.size()] == '/')) {
      auto qp = checked_params(ctx, req);
      if (!qp) return restinio::request_accepted();
      auto rest = path.substr(kv_prefix.size());
      if (!rest.empty()) rest.remove_prefix(1);
      handle_kv(ctx, req, rest, *qp);
      return restinio::request_accepted();
    }
    for (const auto& r : routes) {
      if (path != r.path) continue;
      if (method != r.method)
        return reply_error(req,
                           make_error(errc::method_not_allowed,
                                      std::string{"use "} + r.allow + " for " + r.path),
                           r.allow),
               restinio::request_accepted();
      auto qp = checked_params(ctx, req);
      if (!qp) return restinio::request_accepted();
      r.handler(ctx, req, *qp);
      return restinio::request_accepted();
    }
    reply_error(req, make_error(errc::not_found, "no route for " + std::string{path}));
  } catch (const std::exception& e) {
    reply_error(req, make_error(errc::internal_error, e.what()));
  }
  return restinio::request_accepted();
}

struct server_traits : restinio::default_traits_t {
  static constexpr bool use_connection_count_limiter = true;
};

} // namespace

struct http_server::impl {
  context ctx;
  std::unique_ptr<restinio::running_server_instance_t<restinio::http_server_t<server_traits>>>
      server;
  std::atomic<uint16_t> port{0};
  bool stopped = false;
};

http_server::http_server(std::unique_ptr<impl> p) : impl_(std::move(p)) {}

http_server::~http_server() {
  stop();
}

uint16_t http_server::port() const {
  return impl_->port.load();
}

void http_server::stop() {
  if (impl_->stopped || !impl_->server) return;
  impl_->stopped = true;
  impl_->server->stop();
  impl_->server->wait();
  caf::anon_send_exit(impl_->ctx.bridge, caf::exit_reason::user_shutdown);
}

caf::expected<std::unique_ptr<http_server>>
http_server::start(caf::actor_system& sys, db_registry_actor registry, query_history_actor history,
                   const settings& s, std::function<std::string()> drive_counters) {
  auto p = std::make_unique<impl>();
  p->ctx.history = std::move(history);
  p->ctx.drive_counters = std::move(drive_counters);
  p->ctx.sys = &sys;
  p->ctx.registry = std::move(registry);
  p->ctx.bridge = sys.spawn(http_bridge, s.request_timeout(), p->ctx.sinks);
  p->ctx.cfg = s;
  p->ctx.routes = std::make_shared<route_cache>(s.idle_close);
  auto* raw = p.get();
  // RESTinio closes the connection without an answer when a hard limit is crossed; keep its
  // limits above ours so that we can answer 413 ourselves for everything in between.
  uint64_t hard_body_limit =
      std::max<uint64_t>(uint64_t{s.max_body_bytes} * 2, uint64_t{s.max_body_bytes} + (1u << 20));
  auto handle_timeout = s.request_timeout() + std::chrono::seconds{5};
  restinio::server_settings_t<server_traits> rs;
  rs.address(s.http_host)
      .port(s.http_port)
      .max_parallel_connections(s.max_connections)
      .handle_request_timeout(handle_timeout)
      .read_next_http_message_timelimit(std::chrono::seconds{60})
      .write_http_response_timelimit(std::chrono::seconds{60})
      .incoming_http_msg_limits(restinio::incoming_http_msg_limits_t{}
                                    .max_url_size(256u * 1024u)
                                    .max_field_name_size(1024u)
                                    .max_field_value_size(64u * 1024u)
                                    .max_field_count(256u)
                                    .max_body_size(hard_body_limit))
      .acceptor_post_bind_hook([raw](asio::ip::tcp::acceptor& acceptor) {
        raw->port = acceptor.local_endpoint().port();
      })
      .request_handler([raw](request_handle req) { return dispatch(raw->ctx, req); });
  try {
    auto server = restinio::run_async<server_traits>(restinio::own_io_context(), std::move(rs),
                                                     std::max<size_t>(s.http_threads, 1));
    p->server = std::move(server);
  } catch (const std::exception& e) {
    caf::anon_send_exit(p->ctx.bridge, caf::exit_reason::user_shutdown);
    return make_error(errc::unavailable, "cannot listen on " + s.http_host + ":"
                                             + std::to_string(s.http_port) + ": " + e.what());
  }
  return std::unique_ptr<http_server>(new http_server(std::move(p)));
}

} // namespace litedrive
