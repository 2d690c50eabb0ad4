#include "actors/db_path.hpp"

#include <climits>
#include <optional>
#include <cstdlib>
#include <string>
#include <vector>

#include "schema/errc.hpp"

namespace litedrive {

namespace {

caf::error bad_path(std::string why) {
  return make_error(errc::invalid_db_path, std::move(why));
}

/// Splits on '/', dropping empty and "." components; fails on "..".
caf::expected<std::vector<std::string_view>> components(std::string_view path) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (pos <= path.size()) {
    auto next = path.find('/', pos);
    if (next == std::string_view::npos)
      next = path.size();
    auto part = path.substr(pos, next - pos);
    pos = next + 1;
    if (part.empty() || part == ".")
      continue;
    if (part == "..")
      return bad_path("path traversal ('..') is not allowed");
    if (part.size() > max_db_component_bytes)
      return bad_path("a path component is longer than 255 bytes");
    out.push_back(part);
  }
  if (out.empty())
    return bad_path("the database name names no file");
  return out;
}

std::string join(const std::vector<std::string_view>& parts, size_t first = 0) {
  std::string out;
  for (size_t i = first; i < parts.size(); ++i) {
    if (!out.empty())
      out += '/';
    out.append(parts[i].data(), parts[i].size());
  }
  return out;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

/// Bare names get ".db" unless they already carry a usual SQLite extension.
bool has_sqlite_extension(std::string_view file) {
  for (auto ext : {".db", ".sqlite", ".sqlite3", ".db3"})
    if (ends_with(file, ext) && file.size() > std::string_view{ext}.size())
      return true;
  return false;
}

/// If `path` (normalised, absolute) lies strictly below `dir`, the part below it.
std::optional<std::string> below(const std::string& path, const std::string& dir) {
  if (dir.empty() || path.size() <= dir.size() + 1)
    return std::nullopt;
  if (path.compare(0, dir.size(), dir) != 0 || path[dir.size()] != '/')
    return std::nullopt;
  return path.substr(dir.size() + 1);
}

db_location in_store(std::string rel, std::string_view name, const settings& s) {
  db_location loc;
  loc.key = s.store + "/" + rel;
  loc.open_path = s.open_through_mount ? s.mount + "/" + rel : loc.key;
  loc.name = std::string{name};
  loc.in_store = true;
  return loc;
}

} // namespace

caf::expected<db_location> resolve_db_path(std::string_view name, const settings& s) {
  if (name.empty())
    return bad_path("the database name is empty");
  if (name.size() > max_db_name_bytes)
    return bad_path("the database name is longer than 1024 bytes");
  for (unsigned char c : name)
    if (c < 0x20 || c == 0x7f)
      return bad_path("the database name contains a control character");
  auto parts = components(name);
  if (!parts)
    return std::move(parts.error());
  if (name.front() != '/') {
    auto rel = join(*parts);
    if (!has_sqlite_extension(parts->back()))
      rel += ".db";
    return in_store(std::move(rel), name, s);
  }
  if (!s.allow_any_absolute_db_path)
    return bad_path("absolute database paths are refused; use a bare name or start litedrive "
                    "with --allow-any-absolute-db-path");
  auto abs = "/" + join(*parts);
  if (auto rel = below(abs, s.mount); rel && !s.mount.empty())
    return in_store(std::move(*rel), name, s);
  if (auto rel = below(abs, s.store))
    return in_store(std::move(*rel), name, s);
  db_location loc;
  loc.key = abs;
  loc.open_path = abs;
  loc.name = std::string{name};
  loc.in_store = false;
  return loc;
}

caf::error check_stays_in_store(const db_location& loc, const settings& s) {
  if (!loc.in_store)
    return caf::none;
  char buf[PATH_MAX];
  std::string target = loc.key;
  if (realpath(target.c_str(), buf) == nullptr) {
    // The file does not exist yet: its directory must resolve inside the store.
    auto slash = target.rfind('/');
    target = target.substr(0, slash);
    if (realpath(target.c_str(), buf) == nullptr)
      return caf::none; // nothing there: opening fails later with a clear "not found"
  }
  std::string real{buf};
  char store_buf[PATH_MAX];
  std::string store_real = realpath(s.store.c_str(), store_buf) ? store_buf : s.store;
  if (real == store_real || below(real, store_real))
    return caf::none;
  return bad_path("the database path leads out of the store through a symbolic link");
}

} // namespace litedrive
