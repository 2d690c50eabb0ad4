#pragma once
// Turns request bodies into the typed messages the actors take. Pure functions (nlohmann_json
// only), validated at the edge: every error names what is wrong and, for items, which one.

#include <string_view>

#include <caf/expected.hpp>

#include "schema/settings.hpp"
#include "schema/sql_types.hpp"

namespace litedrive {

/// Parses {"transaction":[{"statement"|"query": SQL, "values": [..] | {..}}, ...]} (a bare
/// array of items is accepted too). Errors: invalid_json, invalid_request (with the item index),
/// too_many_items.
caf::expected<sql_txn> parse_transaction(std::string_view body, size_t max_items,
                                         size_t max_depth = default_max_json_depth);

/// Decodes the `sql=` parameter: standard or URL-safe base64, padding optional; a space (a '+'
/// that a form decoder turned into one) counts as '+'. Error: invalid_base64.
caf::expected<std::string> decode_sql_param(std::string_view text);

} // namespace litedrive
