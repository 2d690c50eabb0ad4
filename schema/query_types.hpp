#pragma once
// One entry of the query history (SQL received over HTTP).

#include <cstddef>
#include <cstdint>
#include <string>

namespace litedrive {

/// The longest SQL text the query history keeps of one request, in bytes.
constexpr size_t max_query_sql_bytes = 4096;

struct query_record {
  std::string db;
  std::string sql;        ///< bounded to max_sql_bytes
  int64_t params = 0;     ///< bound values
  double duration_ms = 0;
  int64_t rows_returned = 0;
  int64_t rows_changed = 0;
  std::string status;     ///< "ok" or the error code
  double timestamp = 0;   ///< Unix seconds
};

} // namespace litedrive
