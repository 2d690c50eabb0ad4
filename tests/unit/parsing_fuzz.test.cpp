// A bounded fuzz run of the request parsers (issue 17): bodies of POST /db and of every KV
// route, mutated from well-formed seeds (byte flips, splices, deep nesting, huge numbers,
// truncation, random bytes). Every input must come back as a value or as a litedrive error
// with a stable client code — never an exception, a crash or a 500-class code.
//
// LITEDRIVE_SEED replays a run; LITEDRIVE_FUZZ_RUNS sets its length (default 20,000 inputs).

#define CAF_SUITE parsing_fuzz
#include <caf/test/unit_test.hpp>

#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "http/kv_parsing.hpp"
#include "http/request_parsing.hpp"
#include "schema/errc.hpp"

using namespace litedrive;

namespace {

const std::vector<std::string> seeds = {
    R"j({"transaction":[{"statement":"INSERT INTO t VALUES (?)","values":[1,2.5,"x",null,true]}]})j",
    R"j([{"query":"SELECT :a","values":{"a":{"$blob":"AAEC"}}}])j",
    R"j({"transaction":[{"query":"SELECT ?","values":[{"a":[1,{"b":[2,3]}]}]}]})j",
    R"j({"value":{"name":"Alice","tags":["a","b"],"n":-12345678901234}})j",
    R"j({"batch":[{"key":"a","value":1},{"key":"b","value":[1,2],"ttl":10}]})j",
    R"j({"keys":["a","b","c"]})j",
    R"j({"value":"\u00e9\ud83d\ude00 \"quoted\" \\ back"})j",
    R"j(9223372036854775807)j",
};

const std::vector<std::string> fragments = {
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "\"",
    "\\",
    "1e999",
    "-1e999",
    "1e-999",
    "NaN",
    "Infinity",
    "18446744073709551616",
    "0.",
    "-",
    "\\u0000",
    "\\ud800",
    "\xff",
    "\xc3",
    "null",
    "true",
    "{\"$blob\":\"%%\"}",
    "\"values\":",
    "\"transaction\":",
    "\"value\":",
    "\"batch\":",
};

std::string mutate(std::mt19937_64& rng, std::string s) {
  auto pick = [&](size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); };
  int rounds = 1 + static_cast<int>(pick(4));
  for (int r = 0; r < rounds; ++r) {
    switch (pick(8)) {
    case 0: // flip a byte
      if (!s.empty()) s[pick(s.size())] = static_cast<char>(pick(256));
      break;
    case 1: // insert a fragment
      s.insert(s.empty() ? 0 : pick(s.size() + 1), fragments[pick(fragments.size())]);
      break;
    case 2: // cut
      if (!s.empty()) s.erase(pick(s.size()), pick(8) + 1);
      break;
    case 3: // truncate
      s.resize(s.empty() ? 0 : pick(s.size()));
      break;
    case 4: { // deep nesting, around the limit or far past it
      size_t depth = pick(2) ? default_max_json_depth - 2 + pick(5) : 1000 + pick(100000);
      std::string deep = std::string(depth, '[') + "1" + std::string(depth, ']');
      s.insert(s.empty() ? 0 : pick(s.size() + 1), deep);
      break;
    }
    case 5: // a huge number
      s.insert(s.empty() ? 0 : pick(s.size() + 1), std::string(1 + pick(20000), '9'));
      break;
    case 6: // splice with another seed
      s += seeds[pick(seeds.size())].substr(pick(10));
      break;
    default: // random bytes
      for (size_t i = 0, n = pick(16); i < n; ++i)
        s.push_back(static_cast<char>(pick(256)));
    }
  }
  return s;
}

/// A parser's answer for a client's input: a value, or an error with a 4xx code.
template <class T> bool acceptable(const caf::expected<T>& x) {
  if (x) return true;
  auto code = view(x.error()).code;
  return code != errc::internal_error && code != errc::none && code != errc::unavailable;
}

uint64_t env_or(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v ? std::strtoull(v, nullptr, 0) : fallback;
}

} // namespace

CAF_TEST(the parsers answer every input with a value or a client error) {
  auto seed = env_or("LITEDRIVE_SEED", std::random_device{}());
  auto runs = env_or("LITEDRIVE_FUZZ_RUNS", 20000);
  CAF_MESSAGE("seed " << seed << " (LITEDRIVE_SEED=" << seed << " replays it), " << runs
                      << " inputs");
  std::mt19937_64 rng{seed};
  const std::vector<std::pair<std::string, std::vector<std::string>>> kv_routes = {
      {"PUT", {"k"}},
      {"POST", {"k", "push"}},
      {"POST", {"k", "remove"}},
      {"POST", {"batch", "set"}},
      {"POST", {"batch", "get"}},
      {"POST", {"batch", "delete"}},
      {"POST", {"k", "incr"}},
      {"POST", {"k", "cas"}},
  };
  param_map params;
  uint64_t values = 0;
  for (uint64_t i = 0; i < runs; ++i) {
    auto input = mutate(rng, seeds[i % seeds.size()]);
    try {
      auto txn = parse_transaction(input, 1000);
      if (txn) ++values;
      CAF_REQUIRE(acceptable(txn));
      const auto& [method, segments] = kv_routes[i % kv_routes.size()];
      auto kv = parse_kv(method, segments, params, input, std::nullopt, 100);
      CAF_REQUIRE(acceptable(kv));
    } catch (const std::exception& e) {
      CAF_FAIL("input " << i << " threw: " << e.what());
    }
  }
  CAF_MESSAGE(values << " of " << runs << " inputs were well-formed transactions");
}
