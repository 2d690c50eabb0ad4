#pragma once
// Turns a KV request (method, the path below /api/v1/sqlite/kv, query parameters, body) into a
// kv_request, validated at the edge. Pure functions: no RESTinio here.

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <caf/expected.hpp>

#include "schema/kv_types.hpp"
#include "schema/settings.hpp"

namespace litedrive {

using param_map = std::map<std::string, std::string, std::less<>>;

/// Longest accepted key, in bytes.
constexpr size_t max_key_bytes = 1024;

/// Splits the path below /api/v1/sqlite/kv into percent-decoded segments ("%2F" in a key stays
/// part of the key). Error: invalid_key on a malformed escape.
caf::expected<std::vector<std::string>> kv_segments(std::string_view rest);

/// Whether `key` is acceptable: 1..1024 bytes of valid UTF-8 without control characters.
caf::error check_key(const std::string& key);

/// The request, or the error to answer. `if_match_header` is the If-Match header, if any.
/// Errors: not_found / method_not_allowed (routing), invalid_key, invalid_parameter,
/// invalid_json, invalid_request (with the item index), too_many_items.
caf::expected<kv_request> parse_kv(std::string_view method,
                                   const std::vector<std::string>& segments,
                                   const param_map& params, std::string_view body,
                                   std::optional<std::string_view> if_match_header,
                                   size_t batch_max, size_t max_depth = default_max_json_depth);

/// For 405 answers: the methods a KV path accepts.
const char* kv_allowed_methods(const std::vector<std::string>& segments);

} // namespace litedrive
