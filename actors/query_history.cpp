#include "actors/query_history.hpp"

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

namespace litedrive {

namespace {

using self_ptr = query_history_actor::stateful_pointer<query_history_state>;

void flush(self_ptr self) {
  auto& st = self->state;
  if (st.buffer.empty())
    return;
  if (auto err = st.log->append(st.buffer))
    spdlog::warn("query history: {}", caf::to_string(err));
  st.buffer.clear();
}

template <class F>
caf::result<std::string> answer(self_ptr self, F f) {
  flush(self); // reads see everything recorded before them
  auto res = f(*self->state.log);
  if (!res)
    return std::move(res.error());
  return std::move(*res);
}

} // namespace

query_history_actor::behavior_type query_history(self_ptr self, std::string path, int64_t max_rows) {
  self->state.log = std::make_unique<query_log>(std::move(path), max_rows);
  self->set_exit_handler([self](caf::exit_msg& msg) {
    flush(self);
    self->quit(msg.reason);
  });
  return {
    [self](record_atom, query_record& r) {
      auto& st = self->state;
      st.buffer.push_back(std::move(r));
      if (st.buffer.size() >= 256) {
        flush(self);
      } else if (!st.flush_armed) {
        st.flush_armed = true;
        self->delayed_send(self, std::chrono::milliseconds{200}, caf::flush_atom_v);
      }
    },
    [self](caf::flush_atom) {
      self->state.flush_armed = false;
      flush(self);
    },
    [self](caf::get_atom, const std::string& db, const std::string& status, int64_t limit) {
      return answer(self, [&](query_log& l) { return l.list(db, status, limit); });
    },
    [self](caf::delete_atom) { return answer(self, [](query_log& l) { return l.clear(); }); },
    [self](caf::delete_atom, int64_t index) {
      return answer(self, [index](query_log& l) { return l.remove(index); });
    },
    [self](stats_atom) { return answer(self, [](query_log& l) { return l.stats(); }); },
  };
}

} // namespace litedrive
