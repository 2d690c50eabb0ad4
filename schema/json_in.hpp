#pragma once
// Reading JSON that litedrive did not write: request bodies, and values in a database that any
// SQLite client may have stored. One parse for all of it, so that every reader gets the same
// limits (issue 17):
// - nesting deeper than `max_depth` is refused before nlohmann/json sees it (its parser is
//   iterative, but printing, comparing and walking a value recurse: 100,000 nested arrays
//   overflowed the stack);
// - a number outside the range of a double (1e999, a 100,000-digit integer) is the input's
//   fault, like any other malformed JSON.

#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "schema/settings.hpp"

namespace litedrive::json_in {

/// Whether no array or object in `text` nests deeper than `max_depth` (strings are skipped).
/// Says nothing else about `text`: it may still be malformed.
bool within_depth(std::string_view text, size_t max_depth);

/// Parses `text`; on failure returns false and says why in `why` (too deep, malformed, a
/// number out of range).
bool parse(std::string_view text, size_t max_depth, nlohmann::json& out, std::string& why);

} // namespace litedrive::json_in
