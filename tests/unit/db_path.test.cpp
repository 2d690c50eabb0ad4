#define CAF_SUITE db_path
#include <caf/test/unit_test.hpp>

#include "actors/db_path.hpp"
#include "schema/errc.hpp"

using namespace litedrive;

namespace {

settings make_settings(bool allow_abs) {
  settings s;
  s.store = "/srv/store";
  s.mount = "/hoody/databases";
  s.allow_any_absolute_db_path = allow_abs;
  return s;
}

// By value: the checks must not hold references into a temporary expected<>.
std::string key_of(std::string_view name, const settings& s) {
  auto loc = resolve_db_path(name, s);
  return loc ? loc->key : std::string{"<error>"};
}

std::string open_path_of(std::string_view name, const settings& s) {
  auto loc = resolve_db_path(name, s);
  return loc ? loc->open_path : std::string{"<error>"};
}

errc code_of(const caf::expected<db_location>& x) {
  return x ? errc::none : view(x.error()).code;
}

} // namespace

CAF_TEST(bare names live in the store with a .db extension) {
  auto s = make_settings(false);
  auto loc = resolve_db_path("notes", s);
  CAF_REQUIRE(loc);
  CAF_CHECK_EQUAL(loc->key, "/srv/store/notes.db");
  CAF_CHECK_EQUAL(loc->open_path, "/srv/store/notes.db");
  CAF_CHECK(loc->in_store);
  CAF_CHECK_EQUAL(key_of("notes.db", s), "/srv/store/notes.db");
  CAF_CHECK_EQUAL(key_of("data.sqlite3", s), "/srv/store/data.sqlite3");
  CAF_CHECK_EQUAL(key_of("team/app", s), "/srv/store/team/app.db");
  CAF_CHECK_EQUAL(key_of("team//./app", s), "/srv/store/team/app.db");
}

CAF_TEST(absolute paths are refused unless allowed) {
  CAF_CHECK_EQUAL(code_of(resolve_db_path("/data/app.db", make_settings(false))),
                  errc::invalid_db_path);
  auto loc = resolve_db_path("/data/app.db", make_settings(true));
  CAF_REQUIRE(loc);
  CAF_CHECK_EQUAL(loc->key, "/data/app.db");
  CAF_CHECK(!loc->in_store);
}

CAF_TEST(mount and store paths reach the same key as the bare name) {
  auto s = make_settings(true);
  auto bare = resolve_db_path("app", s);
  auto via_mount = resolve_db_path("/hoody/databases/app.db", s);
  auto via_store = resolve_db_path("/srv/store/app.db", s);
  CAF_REQUIRE(bare && via_mount && via_store);
  CAF_CHECK_EQUAL(bare->key, via_mount->key);
  CAF_CHECK_EQUAL(bare->key, via_store->key);
  s.open_through_mount = true;
  CAF_CHECK_EQUAL(open_path_of("app", s), "/hoody/databases/app.db");
}

CAF_TEST(traversal empty long and control characters are refused in every mode) {
  for (bool allow : {false, true}) {
    auto s = make_settings(allow);
    CAF_CHECK_EQUAL(code_of(resolve_db_path("", s)), errc::invalid_db_path);
    CAF_CHECK_EQUAL(code_of(resolve_db_path("../etc/passwd", s)), errc::invalid_db_path);
    CAF_CHECK_EQUAL(code_of(resolve_db_path("a/../../b", s)), errc::invalid_db_path);
    CAF_CHECK_EQUAL(code_of(resolve_db_path("/srv/store/../etc", s)), errc::invalid_db_path);
    CAF_CHECK_EQUAL(code_of(resolve_db_path(std::string("a\0b", 3), s)), errc::invalid_db_path);
    CAF_CHECK_EQUAL(code_of(resolve_db_path("a\nb", s)), errc::invalid_db_path);
    CAF_CHECK_EQUAL(code_of(resolve_db_path(std::string(1025, 'a'), s)), errc::invalid_db_path);
    CAF_CHECK_EQUAL(code_of(resolve_db_path(std::string(256, 'a'), s)), errc::invalid_db_path);
    CAF_CHECK_EQUAL(code_of(resolve_db_path("/", s)), errc::invalid_db_path);
    CAF_CHECK_EQUAL(code_of(resolve_db_path(".", s)), errc::invalid_db_path);
  }
}
