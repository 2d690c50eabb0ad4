#include "schema/errc.hpp"

#include <caf/sec.hpp>

namespace litedrive {

const char* to_code(errc x) noexcept {
  switch (x) {
  case errc::none:
    return "OK";
  case errc::invalid_json:
    return "INVALID_JSON";
  case errc::invalid_request:
    return "INVALID_REQUEST";
  case errc::missing_parameter:
    return "MISSING_PARAMETER";
  case errc::invalid_parameter:
    return "INVALID_PARAMETER";
  case errc::invalid_base64:
    return "INVALID_BASE64";
  case errc::invalid_db_path:
    return "INVALID_DB_PATH";
  case errc::too_many_items:
    return "TOO_MANY_ITEMS";
  case errc::sql_error:
    return "SQL_ERROR";
  case errc::read_only_violation:
    return "READ_ONLY_VIOLATION";
  case errc::sql_not_allowed:
    return "SQL_NOT_ALLOWED";
  case errc::database_not_found:
    return "DATABASE_NOT_FOUND";
  case errc::not_found:
    return "NOT_FOUND";
  case errc::method_not_allowed:
    return "METHOD_NOT_ALLOWED";
  case errc::query_timeout:
    return "QUERY_TIMEOUT";
  case errc::payload_too_large:
    return "PAYLOAD_TOO_LARGE";
  case errc::result_too_large:
    return "RESULT_TOO_LARGE";
  case errc::database_busy:
    return "DATABASE_BUSY";
  case errc::service_timeout:
    return "SERVICE_TIMEOUT";
  case errc::internal_error:
    return "INTERNAL_ERROR";
  case errc::unavailable:
    return "UNAVAILABLE";
  case errc::invalid_key:
    return "INVALID_KEY";
  case errc::invalid_path:
    return "INVALID_PATH";
  case errc::version_conflict:
    return "VERSION_CONFLICT";
  case errc::not_a_number:
    return "NOT_A_NUMBER";
  case errc::number_overflow:
    return "NUMBER_OVERFLOW";
  case errc::not_an_array:
    return "NOT_AN_ARRAY";
  case errc::index_out_of_range:
    return "INDEX_OUT_OF_RANGE";
  case errc::history_unavailable:
    return "HISTORY_UNAVAILABLE";
  }
  return "INTERNAL_ERROR";
}

error_view view(const caf::error& err) {
  if (!err) return {errc::none, {}, -1};
  if (err.category() == errc_category) {
    error_view result{static_cast<errc>(err.code()), {}, -1};
    const auto& ctx = err.context();
    if (ctx.match_elements<std::string, int32_t, int64_t>()) {
      result.message = ctx.get_as<std::string>(0);
      result.item = ctx.get_as<int32_t>(1);
      result.version = ctx.get_as<int64_t>(2);
    }
    return result;
  }
  if (err.category() == caf::atom("system")) {
    switch (static_cast<caf::sec>(err.code())) {
    case caf::sec::request_timeout:
      return {errc::service_timeout, "the database actor did not answer in time", -1};
    case caf::sec::request_receiver_down:
      return {errc::unavailable, "the database actor stopped while serving the request", -1};
    default:
      break;
    }
  }
  if (err.category() == caf::atom("exit"))
    return {errc::unavailable, "the database actor stopped while serving the request", -1};
  return {errc::internal_error, caf::to_string(err), -1};
}

} // namespace litedrive
