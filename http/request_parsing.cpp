#include "http/request_parsing.hpp"

#include <limits>
#include <string>

#include <nlohmann/json.hpp>

#include "schema/json_in.hpp"

#include "schema/base64.hpp"
#include "schema/errc.hpp"

namespace litedrive {

namespace {

using json = nlohmann::json;

caf::error item_error(size_t index, const std::string& what) {
  return make_error(errc::invalid_request, "item " + std::to_string(index) + ": " + what,
                    static_cast<int32_t>(index));
}

caf::expected<sql_value> to_sql_value(const json& v, size_t index, const std::string& where) {
  switch (v.type()) {
  case json::value_t::null:
    return sql_value{nullptr};
  case json::value_t::boolean:
    return sql_value{int64_t{v.get<bool>() ? 1 : 0}};
  case json::value_t::number_integer:
    return sql_value{v.get<int64_t>()};
  case json::value_t::number_unsigned: {
    auto u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return item_error(index, where + " is larger than a 64-bit signed integer");
    return sql_value{static_cast<int64_t>(u)};
  }
  case json::value_t::number_float:
    return sql_value{v.get<double>()};
  case json::value_t::string:
    return sql_value{v.get<std::string>()};
  case json::value_t::object:
    if (v.size() == 1 && v.contains("$blob")) {
      const auto& b = v["$blob"];
      if (!b.is_string()) return item_error(index, where + ": $blob must be a base64 string");
      auto bytes = base64_decode(b.get_ref<const std::string&>());
      if (!bytes) return item_error(index, where + ": $blob is not valid base64");
      return sql_value{blob{std::move(*bytes)}};
    }
    return sql_value{v.dump()};
  case json::value_t::array:
    return sql_value{v.dump()};
  default:
    return item_error(index, where + " has an unsupported type");
  }
}

caf::expected<sql_item> to_item(const json& j, size_t index) {
  if (!j.is_object()) return item_error(index, "must be an object with \"statement\" or \"query\"");
  sql_item item;
  bool has_sql = false;
  const json* values = nullptr;
  for (const auto& [k, v] : j.items()) {
    if (k == "statement" || k == "query") {
      if (has_sql) return item_error(index, "has both \"statement\" and \"query\"");
      if (!v.is_string()) return item_error(index, "\"" + k + "\" must be a string of SQL");
      item.is_query = k == "query";
      item.sql = v.get<std::string>();
      if (item.sql.find('\0') != std::string::npos)
        return item_error(index, "the SQL contains a NUL character");
      has_sql = true;
    } else if (k == "values") {
      values = &v;
    } else {
      return item_error(index, "unknown field \"" + k + "\" (expected statement, query, values)");
    }
  }
  if (!has_sql) return item_error(index, "needs \"statement\" or \"query\"");
  if (values == nullptr || values->is_null()) return item;
  if (values->is_array()) {
    item.positional.reserve(values->size());
    for (size_t i = 0; i < values->size(); ++i) {
      auto v = to_sql_value((*values)[i], index, "value " + std::to_string(i));
      if (!v) return std::move(v.error());
      item.positional.push_back(std::move(*v));
    }
  } else if (values->is_object()) {
    for (const auto& [name, jv] : values->items()) {
      auto v = to_sql_value(jv, index, "value '" + name + "'");
      if (!v) return std::move(v.error());
      item.named.emplace_back(name, std::move(*v));
    }
  } else {
    return item_error(index, "\"values\" must be an array (positional) or an object (named)");
  }
  return item;
}

} // namespace

caf::expected<sql_txn> parse_transaction(std::string_view body, size_t max_items,
                                         size_t max_depth) {
  json root;
  std::string why;
  if (!json_in::parse(body, max_depth, root, why))
    return make_error(errc::invalid_json, "the body is not valid JSON: " + why);
  const json* items = &root;
  if (root.is_object()) {
    auto i = root.find("transaction");
    if (i == root.end())
      return make_error(errc::invalid_request, "the body needs a \"transaction\" array");
    items = &*i;
  }
  if (!items->is_array())
    return make_error(errc::invalid_request, "\"transaction\" must be an array of items");
  if (items->empty()) return make_error(errc::invalid_request, "\"transaction\" holds no items");
  if (items->size() > max_items)
    return make_error(errc::too_many_items, "the transaction holds " + std::to_string(items->size())
                                                + " items; the limit is "
                                                + std::to_string(max_items) + " (max_items)");
  sql_txn txn;
  txn.items.reserve(items->size());
  for (size_t i = 0; i < items->size(); ++i) {
    auto item = to_item((*items)[i], i);
    if (!item) return std::move(item.error());
    txn.items.push_back(std::move(*item));
  }
  return txn;
}

caf::expected<std::string> decode_sql_param(std::string_view text) {
  std::string fixed{text};
  for (auto& c : fixed)
    if (c == ' ') c = '+';
  auto decoded = base64_decode(fixed);
  if (!decoded)
    return make_error(errc::invalid_base64,
                      "sql= is not valid base64 (standard or URL-safe alphabet expected)");
  if (decoded->empty())
    return make_error(errc::invalid_request, "sql= decodes to an empty statement");
  if (decoded->find('\0') != std::string::npos)
    return make_error(errc::invalid_request, "sql= decodes to SQL with a NUL character");
  return std::move(*decoded);
}

} // namespace litedrive
