#include "schema/json_in.hpp"

namespace litedrive::json_in {

bool within_depth(std::string_view text, size_t max_depth) {
  size_t depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i; // the escaped character cannot end the string
      else if (c == '"')
        in_string = false;
      continue;
    }
    switch (c) {
    case '"':
      in_string = true;
      break;
    case '[':
    case '{':
      if (++depth > max_depth) return false;
      break;
    case ']':
    case '}':
      if (depth > 0) --depth;
      break;
    default:
      break;
    }
  }
  return true;
}

bool parse(std::string_view text, size_t max_depth, nlohmann::json& out, std::string& why) {
  if (!within_depth(text, max_depth)) {
    why = "arrays and objects nest deeper than " + std::to_string(max_depth)
          + " levels (max-json-depth)";
    return false;
  }
  try {
    out = nlohmann::json::parse(text);
    return true;
  } catch (const nlohmann::json::parse_error& e) {
    why = e.what();
  } catch (const nlohmann::json::out_of_range& e) {
    why = e.what(); // 406: a number out of range
  } catch (const nlohmann::json::exception& e) {
    why = e.what();
  }
  return false;
}

} // namespace litedrive::json_in
