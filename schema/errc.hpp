#pragma once
// litedrive's error vocabulary. Every failure an actor reports is a caf::error of category
// "litedrive" whose code is an errc; the front ends map it once: http/ to an HTTP status and a
// stable code string, fuse_bridge/ to an errno. The strings are part of the public API (README).

#include <cstdint>
#include <string>

#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/is_error_code_enum.hpp>
#include <caf/make_message.hpp>

namespace litedrive {

enum class errc : uint8_t {
  none = 0,
  invalid_json,      ///< the body is not JSON
  invalid_request,   ///< JSON of the wrong shape or type
  missing_parameter, ///< a required query parameter is absent
  invalid_parameter, ///< a query parameter has a bad value
  invalid_base64,    ///< `sql=` is not base64
  invalid_db_path,   ///< `db=`/`path=` is empty, too long, traversing or absolute when not allowed
  too_many_items,    ///< more items than the configured limit
  sql_error,         ///< SQLite refused a statement (syntax, constraint, ...)
  read_only_violation, ///< a write attempted on the read-only query endpoint
  sql_not_allowed,     ///< a function, pragma or statement litedrive's SQL policy refuses
  database_not_found,  ///< the database file does not exist
  not_found,           ///< no such route
  method_not_allowed,  ///< route exists, method does not
  query_timeout,       ///< a statement ran longer than the statement time limit
  payload_too_large,   ///< request body over the limit
  result_too_large,    ///< result set over the row or byte limit
  database_busy,       ///< another process held the database longer than the wait limit
  service_timeout,     ///< the database actor did not answer in time
  internal_error,      ///< a bug or an unexpected I/O failure
  unavailable,         ///< the daemon is shutting down or the database actor died
  // -- key-value store --
  invalid_key,         ///< empty, over-long or control characters
  invalid_path,        ///< a JSON path SQLite does not accept
  version_conflict,    ///< compare-and-set: the key is at another version
  not_a_number,        ///< incr/decr of a value that is not a 64-bit integer
  number_overflow,     ///< incr/decr past the 64-bit range
  not_an_array,        ///< push/pop/remove on a value that is not an array
  index_out_of_range,  ///< remove?index= past the array
  history_unavailable, ///< time travel past what the history holds
};

/// The stable, upper-case code string used in JSON error bodies.
const char* to_code(errc x) noexcept;

/// The CAF error category of litedrive errors.
constexpr caf::atom_value errc_category = caf::atom("litedrive");

/// A litedrive error. `item` is the index of the failing transaction/batch item, or -1;
/// `version` the key's current version for version_conflict, or -1.
inline caf::error make_error(errc x, std::string message = {}, int32_t item = -1,
                             int64_t version = -1) {
  return caf::error{static_cast<uint8_t>(x), errc_category,
                    caf::make_message(std::move(message), item, version)};
}

/// Decomposes any caf::error into litedrive terms (foreign errors become internal_error or
/// unavailable, with CAF's rendering as message).
struct error_view {
  errc code;
  std::string message;
  int32_t item;
  int64_t version = -1;
};
error_view view(const caf::error& err);

} // namespace litedrive

CAF_ERROR_CODE_ENUM(litedrive::errc)
