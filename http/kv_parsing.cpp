#include "http/kv_parsing.hpp"

#include <cmath>
#include <cstdlib>
#include <limits>

#include <nlohmann/json.hpp>

#include "schema/json_in.hpp"

#include "schema/errc.hpp"

namespace litedrive {

namespace {

using json = nlohmann::json;

constexpr double max_ttl_seconds = 10.0 * 365 * 24 * 3600;

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80             ? 1
                 : (c & 0xE0) == 0xC0 ? 2
                 : (c & 0xF0) == 0xE0 ? 3
                 : (c & 0xF8) == 0xF0 ? 4
                                      : 0;
    if (len == 0 || i + len > s.size() || (len == 2 && c < 0xC2)) return false;
    for (size_t k = 1; k < len; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += len;
  }
  return true;
}

caf::error bad_param(const std::string& msg) {
  return make_error(errc::invalid_parameter, msg);
}

caf::expected<int64_t> integer_param(const param_map& p, const char* name, int64_t fallback) {
  auto i = p.find(name);
  if (i == p.end()) return fallback;
  const auto& v = i->second;
  char* end = nullptr;
  errno = 0;
  long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || errno == ERANGE)
    return bad_param(std::string{"'"} + name + "' must be a 64-bit integer, got '" + v + "'");
  return static_cast<int64_t>(x);
}

/// An integer parameter that must lie in [lo, hi] (`fallback` when absent).
caf::expected<int64_t> ranged_param(const param_map& p, const char* name, int64_t fallback,
                                    int64_t lo, int64_t hi) {
  auto v = integer_param(p, name, fallback);
  if (!v) return v;
  if (*v < lo || *v > hi)
    return bad_param(std::string{"'"} + name + "' must be " + std::to_string(lo) + ".."
                     + std::to_string(hi));
  return v;
}

caf::expected<std::optional<double>> ttl_value(const json& j, const std::string& where) {
  if (j.is_null()) return std::optional<double>{};
  if (!j.is_number()) return bad_param(where + "ttl must be a number of seconds");
  double t = j.get<double>();
  if (!std::isfinite(t) || t <= 0 || t > max_ttl_seconds)
    return bad_param(where + "ttl must be more than 0 and at most 10 years of seconds");
  return std::optional<double>{t};
}

caf::expected<std::optional<double>> ttl_param(const param_map& p) {
  auto i = p.find("ttl");
  if (i == p.end()) return std::optional<double>{};
  char* end = nullptr;
  double t = std::strtod(i->second.c_str(), &end);
  if (i->second.empty() || *end != '\0' || !std::isfinite(t) || t <= 0 || t > max_ttl_seconds)
    return bad_param("'ttl' must be a number of seconds, more than 0 and at most 10 years; got '"
                     + i->second + "'");
  return std::optional<double>{t};
}

caf::expected<json> body_json(std::string_view body, size_t max_depth) {
  json out;
  std::string why;
  if (!json_in::parse(body, max_depth, out, why))
    return make_error(errc::invalid_json, "the body is not valid JSON: " + why);
  return out;
}

/// {"value": x} -> the JSON text of x.
caf::expected<std::string> value_field(std::string_view body, size_t max_depth) {
  auto j = body_json(body, max_depth);
  if (!j) return std::move(j.error());
  if (!j->is_object() || !j->contains("value"))
    return make_error(errc::invalid_request, "the body must be {\"value\": ...}");
  return (*j)["value"].dump();
}

caf::expected<std::vector<std::string>> keys_field(const json& j, size_t batch_max) {
  if (!j.is_object() || !j.contains("keys") || !j["keys"].is_array())
    return make_error(errc::invalid_request, "the body must be {\"keys\": [\"key\", ...]}");
  const auto& arr = j["keys"];
  if (arr.empty()) return make_error(errc::invalid_request, "\"keys\" is empty");
  if (arr.size() > batch_max)
    return make_error(errc::too_many_items, "the batch holds " + std::to_string(arr.size())
                                                + " keys; the limit is "
                                                + std::to_string(batch_max));
  std::vector<std::string> keys;
  for (size_t i = 0; i < arr.size(); ++i) {
    if (!arr[i].is_string())
      return make_error(errc::invalid_request, "item " + std::to_string(i) + ": keys are strings",
                        static_cast<int32_t>(i));
    auto key = arr[i].get<std::string>();
    if (auto err = check_key(key))
      return make_error(errc::invalid_key, "item " + std::to_string(i) + ": " + view(err).message,
                        static_cast<int32_t>(i));
    keys.push_back(std::move(key));
  }
  return keys;
}

} // namespace

caf::expected<std::vector<std::string>> kv_segments(std::string_view rest) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < rest.size()) {
    auto next = rest.find('/', pos);
    if (next == std::string_view::npos) next = rest.size();
    auto raw = rest.substr(pos, next - pos);
    std::string seg;
    for (size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == '%') {
        if (i + 2 >= raw.size() || hex(raw[i + 1]) < 0 || hex(raw[i + 2]) < 0)
          return make_error(errc::invalid_key, "malformed percent escape in the key");
        int hi = hex(raw[i + 1]);
        int lo = hex(raw[i + 2]);
        seg += static_cast<char>(hi * 16 + lo);
        i += 2;
      } else {
        seg += raw[i];
      }
    }
    out.push_back(std::move(seg));
    pos = next + 1;
  }
  return out;
}

caf::error check_key(const std::string& key) {
  if (key.empty()) return make_error(errc::invalid_key, "the key is empty");
  if (key.size() > max_key_bytes)
    return make_error(errc::invalid_key, "the key is longer than 1024 bytes");
  for (unsigned char c : key)
    if (c < 0x20 || c == 0x7f)
      return make_error(errc::invalid_key, "the key contains a control character");
  if (!valid_utf8(key)) return make_error(errc::invalid_key, "the key is not valid UTF-8");
  return caf::none;
}

const char* kv_allowed_methods(const std::vector<std::string>& seg) {
  if (seg.empty()) return "GET";
  if (seg.size() == 1) return "GET, HEAD, PUT, DELETE";
  if (seg.size() == 2 && (seg[1] == "history" || seg[1] == "snapshot")) return "GET";
  return "POST";
}

caf::expected<kv_request> parse_kv(std::string_view method, const std::vector<std::string>& seg,
                                   const param_map& params, std::string_view body,
                                   std::optional<std::string_view> if_match_header,
                                   size_t batch_max, size_t max_depth) {
  kv_request req;
  if (auto t = params.find("table"); t != params.end()) req.table = t->second;
  if (auto h = params.find("history"); h != params.end()) {
    if (h->second == "false" || h->second == "0")
      req.history = false;
    else if (h->second != "true" && h->second != "1")
      return bad_param("'history' must be true or false");
  }
  if (auto p = params.find("path"); p != params.end()) {
    if (p->second.empty() || p->second[0] != '$')
      return make_error(errc::invalid_path, "a JSON path starts with $ (like $.a.b[0])");
    req.path = p->second;
  }
  auto not_found = [] { return make_error(errc::not_found, "no such KV route"); };

  // -- GET /kv: list --------------------------------------------------------------------------
  if (seg.empty()) {
    if (method != "GET") return make_error(errc::method_not_allowed, "use GET to list keys");
    req.op = kv_op::list;
    if (auto p = params.find("prefix"); p != params.end()) req.prefix = p->second;
    if (auto c = params.find("cursor"); c != params.end()) req.cursor = c->second;
    auto limit = ranged_param(params, "limit", 100, 1, 1000);
    if (!limit) return std::move(limit.error());
    req.limit = *limit;
    return req;
  }
  // -- POST /kv/batch/{get,set,delete} --------------------------------------------------------
  if (seg.size() == 2 && seg[0] == "batch"
      && (seg[1] == "get" || seg[1] == "set" || seg[1] == "delete")) {
    if (method != "POST") return make_error(errc::method_not_allowed, "use POST for batches");
    auto j = body_json(body, max_depth);
    if (!j) return std::move(j.error());
    if (seg[1] == "set") {
      req.op = kv_op::batch_set;
      if (!j->is_object() || !j->contains("batch") || !(*j)["batch"].is_array())
        return make_error(errc::invalid_request,
                          "the body must be {\"batch\": [{\"key\": ..., \"value\": ...}, ...]}");
      const auto& arr = (*j)["batch"];
      if (arr.empty()) return make_error(errc::invalid_request, "\"batch\" is empty");
      if (arr.size() > batch_max)
        return make_error(errc::too_many_items, "the batch holds " + std::to_string(arr.size())
                                                    + " keys; the limit is "
                                                    + std::to_string(batch_max));
      for (size_t i = 0; i < arr.size(); ++i) {
        auto where = "item " + std::to_string(i) + ": ";
        auto idx = static_cast<int32_t>(i);
        const auto& e = arr[i];
        if (!e.is_object() || !e.contains("key") || !e["key"].is_string() || !e.contains("value"))
          return make_error(errc::invalid_request, where + "needs \"key\" (a string) and \"value\"",
                            idx);
        kv_item item;
        item.key = e["key"].get<std::string>();
        if (auto err = check_key(item.key))
          return make_error(errc::invalid_key, where + view(err).message, idx);
        item.value = e["value"].dump();
        if (e.contains("ttl")) {
          auto t = ttl_value(e["ttl"], where);
          if (!t) return make_error(errc::invalid_parameter, view(t.error()).message, idx);
          item.ttl = *t;
        }
        for (const auto& [k, v] : e.items())
          if (k != "key" && k != "value" && k != "ttl")
            return make_error(errc::invalid_request, where + "unknown field \"" + k + "\"", idx);
        req.items.push_back(std::move(item));
      }
      return req;
    }
    req.op = seg[1] == "get" ? kv_op::batch_get : kv_op::batch_del;
    auto keys = keys_field(*j, batch_max);
    if (!keys) return std::move(keys.error());
    req.keys = std::move(*keys);
    return req;
  }
  // -- table-wide time travel: /kv/diff, /kv/snapshot, /kv/rollback (a key of the same name is
  //    reached when the table-wide parameters are absent) ----------------------------------------
  auto time_param = [&](const char* name) -> caf::expected<double> {
    auto i = params.find(name);
    if (i == params.end())
      return make_error(errc::missing_parameter,
                        std::string{"the query parameter '"} + name + "' is required");
    char* end = nullptr;
    double ts = std::strtod(i->second.c_str(), &end);
    if (i->second.empty() || *end != '\0' || !std::isfinite(ts) || ts < 0)
      return bad_param(std::string{"'"} + name + "' must be Unix time in seconds");
    return ts;
  };
  if (seg.size() == 1 && seg[0] == "diff" && method == "GET" && params.count("from")) {
    req.op = kv_op::diff;
    auto from = time_param("from");
    if (!from) return std::move(from.error());
    auto to = time_param("to");
    if (!to) return std::move(to.error());
    if (*to < *from) return bad_param("'to' is before 'from'");
    req.from = *from;
    req.to = *to;
    auto limit = ranged_param(params, "limit", 1000, 1, 10000);
    if (!limit) return std::move(limit.error());
    req.limit = *limit;
    return req;
  }
  if (seg.size() == 1 && seg[0] == "snapshot" && method == "GET" && params.count("timestamp")) {
    req.op = kv_op::table_snapshot;
    auto ts = time_param("timestamp");
    if (!ts) return std::move(ts.error());
    req.at_timestamp = *ts;
    return req;
  }
  if (seg.size() == 1 && seg[0] == "rollback" && method == "POST") {
    auto ts = time_param("to_timestamp");
    if (!ts) return std::move(ts.error());
    req.at_timestamp = *ts;
    auto confirm = params.find("confirm");
    auto dry = params.find("dry_run");
    bool dry_run = dry != params.end() && (dry->second == "true" || dry->second == "1");
    // Destructive: only an explicit confirm=yes applies it; anything else is a preview.
    req.op = (confirm != params.end() && confirm->second == "yes" && !dry_run)
                 ? kv_op::table_rollback
                 : kv_op::rollback_preview;
    return req;
  }
  req.key = seg[0];
  if (auto err = check_key(req.key)) return err;
  // -- /kv/{key} --------------------------------------------------------------------------------
  if (seg.size() == 1) {
    auto if_match = integer_param(params, "if_match", -1);
    if (!if_match) return std::move(if_match.error());
    if (*if_match >= 0) {
      req.if_match = *if_match;
    } else if (if_match_header) {
      std::string h{*if_match_header};
      if (h.rfind("W/", 0) == 0) h.erase(0, 2);
      if (h.size() >= 2 && h.front() == '"' && h.back() == '"') h = h.substr(1, h.size() - 2);
      char* end = nullptr;
      long long v = std::strtoll(h.c_str(), &end, 10);
      if (h.empty() || *end != '\0' || v < 0)
        return bad_param("If-Match must be a version (\"3\")");
      req.if_match = v;
    }
    if (method == "GET" || method == "HEAD") {
      req.op = method == "GET" ? kv_op::get : kv_op::head;
      if (auto t = params.find("at_timestamp"); t != params.end()) {
        char* end = nullptr;
        double ts = std::strtod(t->second.c_str(), &end);
        if (t->second.empty() || *end != '\0' || !std::isfinite(ts) || ts < 0)
          return bad_param("'at_timestamp' must be Unix time in seconds (fractions allowed)");
        if (req.path) return bad_param("'at_timestamp' and 'path' cannot be combined");
        req.op = kv_op::at_time;
        req.at_timestamp = ts;
      }
      return req;
    }
    if (method == "PUT") {
      req.op = kv_op::set;
      if (body.empty())
        return make_error(errc::invalid_json, "the body must be the JSON value to store");
      // Stored as sent (no DOM on the hot path): checked for nesting, syntax and numbers in range.
      if (!json_in::within_depth(body, max_depth))
        return make_error(errc::invalid_json, "the body is not valid JSON: arrays and objects nest "
                                              "deeper than "
                                                  + std::to_string(max_depth)
                                                  + " levels (max-json-depth)");
      if (!json::accept(body))
        return make_error(errc::invalid_json, "the body is not valid JSON (or holds a number "
                                              "out of range)");
      req.value = std::string{body};
      auto ttl = ttl_param(params);
      if (!ttl) return std::move(ttl.error());
      req.ttl = *ttl;
      return req;
    }
    if (method == "DELETE") {
      req.op = kv_op::del;
      return req;
    }
    return make_error(errc::method_not_allowed, "use GET, HEAD, PUT or DELETE on a key");
  }
  // -- POST /kv/{key}/{op} ----------------------------------------------------------------------
  if (seg.size() != 2) return not_found();
  const auto& op = seg[1];
  if (op == "history" || op == "snapshot") {
    if (method != "GET") return make_error(errc::method_not_allowed, "use GET for " + op);
    if (op == "history") {
      req.op = kv_op::history;
      auto limit = ranged_param(params, "limit", 100, 1, 1000);
      if (!limit) return std::move(limit.error());
      req.limit = *limit;
      auto before = ranged_param(params, "before", 0, 0, std::numeric_limits<int64_t>::max());
      if (!before) return std::move(before.error());
      req.before = *before;
      return req;
    }
    req.op = kv_op::snapshot;
    if (!params.count("op_number"))
      return make_error(errc::missing_parameter, "the query parameter 'op_number' is required");
    auto n = ranged_param(params, "op_number", 0, 1, std::numeric_limits<int64_t>::max());
    if (!n) return std::move(n.error());
    req.op_number = *n;
    return req;
  }
  if (op != "incr" && op != "decr" && op != "push" && op != "pop" && op != "remove"
      && op != "rollback")
    return not_found();
  if (method != "POST") return make_error(errc::method_not_allowed, "use POST for " + op);
  if (op == "rollback") {
    req.op = kv_op::rollback;
    auto steps = ranged_param(params, "steps", 1, 1, 1000000);
    if (!steps) return std::move(steps.error());
    req.steps = *steps;
    return req;
  }
  if (op == "incr" || op == "decr") {
    req.op = kv_op::incr;
    auto delta = integer_param(params, "delta", 1);
    if (!delta) return std::move(delta.error());
    if (op == "decr") {
      if (*delta == std::numeric_limits<int64_t>::min())
        return make_error(errc::number_overflow, "delta is out of range for decr");
      *delta = -*delta;
    }
    req.delta = *delta;
    return req;
  }
  if (op == "push") {
    req.op = kv_op::push;
    auto v = value_field(body, max_depth);
    if (!v) return std::move(v.error());
    req.value = std::move(*v);
    return req;
  }
  if (op == "pop") {
    req.op = kv_op::pop;
    return req;
  }
  req.op = kv_op::remove;
  if (params.count("index")) {
    auto index = integer_param(params, "index", 0);
    if (!index) return std::move(index.error());
    req.index = *index;
    return req;
  }
  auto v = value_field(body, max_depth);
  if (!v) return std::move(v.error());
  req.value = std::move(*v);
  return req;
}

} // namespace litedrive
