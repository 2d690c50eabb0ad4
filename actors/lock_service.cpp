#include "actors/lock_service.hpp"

#include <algorithm>
#include <cerrno>
#include <utility>

#include "schema/json_out.hpp"

namespace litedrive {

lock_service::lock_service(std::string name, std::chrono::milliseconds max_wait,
                           std::function<void()> wake)
    : name_(std::move(name)), table_(max_wait), wake_(std::move(wake)) {}

lock_service::~lock_service() = default;

template <class F> size_t lock_service::change(F&& f) {
  std::vector<std::pair<lock_reply_sink_ptr, int>> answers;
  bool watch = false;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    watch = !table_.waiters().empty();
    std::vector<lock_reply> replies;
    f(table_, replies);
    watch = watch || !table_.waiters().empty();
    for (const auto& r : replies) {
      auto i = waiting_.find(r.id);
      if (i == waiting_.end()) continue;
      answers.emplace_back(std::move(i->second), r.err);
      waiting_.erase(i);
    }
  }
  for (auto& [sink, err] : answers)
    sink->reply(err);
  if (watch && wake_) wake_();
  return answers.size();
}

void lock_service::setlk(const lock_request& req, lock_reply_sink_ptr sink) {
  std::optional<int> answer;
  change([&](lock_table& t, std::vector<lock_reply>& replies) {
    answer = t.setlk(req, clock::now(), replies);
    if (!answer) waiting_.emplace(req.id, sink);
  });
  if (answer) sink->reply(*answer);
}

std::optional<int> lock_service::try_setlk(const lock_request& req) {
  std::optional<int> answer;
  change([&](lock_table& t, std::vector<lock_reply>& replies) {
    answer = t.setlk_now(req, clock::now(), replies);
  });
  return answer;
}

getlk_answer lock_service::getlk(const lock_request& req) const {
  std::lock_guard<std::mutex> guard{mtx_};
  return table_.getlk(req);
}

void lock_service::flush(uint64_t owner, file_role file) {
  change([&](lock_table& t, std::vector<lock_reply>& replies) {
    // A process that closes the file has no business waiting for a lock on it any more; and a
    // waiter killed before its interrupt reached us must not be granted a lock nobody frees.
    t.cancel_owner(owner, file, replies);
    t.release_owner(owner, file, replies);
  });
}

void lock_service::release(uint64_t handle) {
  change(
      [&](lock_table& t, std::vector<lock_reply>& replies) { t.release_handle(handle, replies); });
}

void lock_service::interrupt(uint64_t id) {
  change([&](lock_table& t, std::vector<lock_reply>& replies) { t.interrupt(id, replies); });
}

void lock_service::abort(uint64_t id) {
  change([&](lock_table& t, std::vector<lock_reply>& replies) { t.abort_waiter(id, replies); });
}

size_t lock_service::expire(clock::time_point now) {
  return change([&](lock_table& t, std::vector<lock_reply>& replies) { t.expire(now, replies); });
}

std::vector<wait_graph::waiter_info> lock_service::waiters() const {
  std::lock_guard<std::mutex> guard{mtx_};
  std::vector<wait_graph::waiter_info> out;
  for (const auto& w : table_.waiters())
    // Request ids come from one counter (lock_registry): their order is the arrival order.
    out.push_back({w.req.id, w.req.owner, table_.blockers(w), table_.victim_rank(w), w.req.id});
  return out;
}

std::vector<lock_service::waiter_processes> lock_service::waiter_pids() const {
  std::lock_guard<std::mutex> guard{mtx_};
  std::vector<waiter_processes> out;
  for (const auto& w : table_.waiters()) {
    waiter_processes p{w.req.id, w.req.pid, {}, w.since};
    for (auto owner : table_.blockers(w))
      for (const auto& l : table_.locks())
        if (l.owner == owner
            && std::find(p.holder_pids.begin(), p.holder_pids.end(), l.pid) == p.holder_pids.end())
          p.holder_pids.push_back(l.pid);
    out.push_back(std::move(p));
  }
  return out;
}

bool lock_service::has_waiters() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return !table_.waiters().empty();
}

std::vector<held_lock> lock_service::holders() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return table_.locks();
}

std::vector<lock_table::waiter> lock_service::queue() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return {table_.waiters().begin(), table_.waiters().end()};
}

bool lock_service::empty() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return table_.empty() && waiting_.empty();
}

std::string lock_service::to_json() const {
  using namespace std::chrono;
  std::lock_guard<std::mutex> guard{mtx_};
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
  json_out::string(out, name_);
  out += ",\"holders\":[";
  bool first = true;
  for (const auto& l : table_.locks()) {
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
  for (const auto& w : table_.waiters()) {
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
  const auto& c = table_.stats();
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
