#pragma once
// Base64 as the API uses it: blobs travel as standard base64; `sql=` accepts standard and
// URL-safe alphabets, with or without padding.

#include <optional>
#include <string>
#include <string_view>

namespace litedrive {

/// Standard alphabet, padded.
std::string base64_encode(std::string_view bytes);

/// Accepts '+/' and '-_', optional '=' padding, no whitespace. nullopt on any malformed input.
std::optional<std::string> base64_decode(std::string_view text);

} // namespace litedrive
