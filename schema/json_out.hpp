#pragma once
// Minimal append-only JSON text writer for the hot paths (result sets, stats). Keeps column order,
// allocates nothing but the output string, and never throws on bad UTF-8: invalid sequences in
// text become U+FFFD, so every answer is valid JSON.

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace litedrive::json_out {

/// Appends `s` as a quoted, escaped JSON string.
void string(std::string& out, std::string_view s);

inline void integer(std::string& out, int64_t v) {
  char buf[24];
  int n = std::snprintf(buf, sizeof(buf), "%lld", static_cast<long long>(v));
  out.append(buf, static_cast<size_t>(n));
}

/// Shortest text that reads back as the same double; non-finite values become null.
void real(std::string& out, double v);

/// `"key":` with escaping.
inline void key(std::string& out, std::string_view k) {
  string(out, k);
  out += ':';
}

} // namespace litedrive::json_out
