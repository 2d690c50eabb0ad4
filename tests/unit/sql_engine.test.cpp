#define CAF_SUITE sql_engine
#include <caf/test/unit_test.hpp>

#include <nlohmann/json.hpp>

#include "actors/db_path.hpp"
#include "actors/sql_engine.hpp"
#include "http/request_parsing.hpp"
#include "schema/errc.hpp"
#include "temp_dir.hpp"

using namespace litedrive;
using json = nlohmann::json;

namespace {

struct fixture {
  test::temp_dir dir;
  settings cfg;
  std::unique_ptr<sql_engine> engine;

  fixture() {
    cfg.store = dir.path;
    cfg.statement_timeout = std::chrono::milliseconds{300};
    cfg.max_result_rows = 50;
    engine = std::make_unique<sql_engine>(*resolve_db_path("t", cfg), cfg);
    CAF_REQUIRE(engine->create(false));
  }

  caf::expected<json> exec(const std::string& body) {
    auto txn = parse_transaction(body, 100);
    if (!txn) return std::move(txn.error());
    auto res = engine->execute(*txn);
    if (!res) return std::move(res.error());
    return json::parse(*res);
  }

  caf::expected<json> query(const std::string& sql) {
    auto res = engine->query(sql);
    if (!res) return std::move(res.error());
    return json::parse(*res);
  }
};

template <class T> errc code_of(const caf::expected<T>& x) {
  return x ? errc::none : view(x.error()).code;
}

} // namespace

CAF_TEST_FIXTURE_SCOPE(sql_engine_tests, fixture)

CAF_TEST(values round trip exactly) {
  auto r = exec(R"j({"transaction":[
    {"statement":"CREATE TABLE v(i INTEGER, r REAL, t TEXT, b BLOB, n)"},
    {"statement":"INSERT INTO v VALUES (?,?,?,?,?)",
     "values":[-9223372036854775808, 0.1, "h\u00e9\"llo\n", {"$blob":"AP8BAg=="}, null]},
    {"statement":"INSERT INTO v VALUES (:i,:r,:t,:b,:n)",
     "values":{"i":9223372036854775807,"r":1e300,"t":"","b":{"$blob":""},"n":true}},
    {"query":"SELECT * FROM v ORDER BY rowid"}]})j");
  CAF_REQUIRE(r);
  auto rows = (*r)["results"][3]["resultSet"];
  CAF_REQUIRE_EQUAL(rows.size(), 2u);
  CAF_CHECK_EQUAL(rows[0]["i"].get<int64_t>(), INT64_MIN);
  CAF_CHECK_EQUAL(rows[0]["r"].get<double>(), 0.1);
  CAF_CHECK_EQUAL(rows[0]["t"].get<std::string>(), "h\xc3\xa9\"llo\n");
  CAF_CHECK_EQUAL(rows[0]["b"]["$blob"].get<std::string>(), "AP8BAg==");
  CAF_CHECK(rows[0]["n"].is_null());
  CAF_CHECK_EQUAL(rows[1]["i"].get<int64_t>(), INT64_MAX);
  CAF_CHECK_EQUAL(rows[1]["r"].get<double>(), 1e300);
  CAF_CHECK_EQUAL(rows[1]["n"].get<int64_t>(), 1);
  CAF_CHECK_EQUAL((*r)["results"][1]["rowsUpdated"].get<int64_t>(), 1);
}

CAF_TEST(a failing item rolls back the whole transaction) {
  CAF_REQUIRE(exec(R"j({"transaction":[{"statement":"CREATE TABLE a(x INTEGER UNIQUE)"}]})j"));
  auto r = exec(R"j({"transaction":[
    {"statement":"INSERT INTO a VALUES (1)"},
    {"statement":"INSERT INTO a VALUES (2)"},
    {"statement":"INSERT INTO a VALUES (1)"}]})j");
  CAF_REQUIRE(!r);
  auto v = view(r.error());
  CAF_CHECK_EQUAL(v.code, errc::sql_error);
  CAF_CHECK_EQUAL(v.item, 2);
  auto count = query("SELECT count(*) AS n FROM a");
  CAF_REQUIRE(count);
  CAF_CHECK_EQUAL((*count)["results"][0]["resultSet"][0]["n"].get<int>(), 0);
}

CAF_TEST(transaction control and attach are refused inside items) {
  CAF_CHECK_EQUAL(code_of(exec(R"j({"transaction":[{"statement":"COMMIT"}]})j")),
                  errc::sql_not_allowed);
  CAF_CHECK_EQUAL(code_of(exec(R"j({"transaction":[{"statement":"ATTACH '/tmp/x.db' AS x"}]})j")),
                  errc::sql_not_allowed);
  CAF_CHECK_EQUAL(
      code_of(exec(R"j({"transaction":[{"query":"SELECT fts3_tokenizer('simple')"}]})j")),
      errc::sql_not_allowed);
  CAF_CHECK_EQUAL(code_of(exec(R"j({"transaction":[{"statement":"PRAGMA query_only=1"}]})j")),
                  errc::sql_not_allowed);
  // The engine is still usable afterwards.
  CAF_CHECK(exec(R"j({"transaction":[{"query":"SELECT 1 AS one"}]})j"));
}

CAF_TEST(parameter mismatches are reported) {
  CAF_CHECK_EQUAL(code_of(exec(R"j({"transaction":[{"query":"SELECT ?","values":[1,2]}]})j")),
                  errc::invalid_request);
  CAF_CHECK_EQUAL(code_of(exec(R"j({"transaction":[{"query":"SELECT :a","values":{"b":1}}]})j")),
                  errc::invalid_request);
  CAF_CHECK_EQUAL(code_of(exec(R"j({"transaction":[{"query":"SELECT ?"}]})j")),
                  errc::invalid_request);
}

CAF_TEST(the read only endpoint refuses every kind of write) {
  CAF_REQUIRE(exec(R"j({"transaction":[{"statement":"CREATE TABLE a(x)"}]})j"));
  for (auto sql :
       {"DELETE FROM a", "INSERT INTO a VALUES (1)", "CREATE TABLE b(x)", "DROP TABLE a",
        "PRAGMA user_version=7", "PRAGMA journal_mode=WAL", "ATTACH '/tmp/other.db' AS o", "BEGIN",
        "CREATE TEMP TABLE t(x)", "PRAGMA wal_checkpoint", "VACUUM"})
    CAF_CHECK_EQUAL(code_of(query(sql)), errc::read_only_violation);
  CAF_CHECK_EQUAL(code_of(query("SELECT 1; DELETE FROM a")), errc::invalid_request);
  CAF_CHECK(query("SELECT * FROM a"));
  CAF_CHECK(query("PRAGMA table_info(a)"));
  CAF_CHECK(query("PRAGMA user_version"));
  CAF_CHECK(query("SELECT 1;  -- trailing comment"));
}

CAF_TEST(long statements are interrupted) {
  auto r = query("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) "
                 "SELECT count(*) FROM c");
  CAF_CHECK_EQUAL(code_of(r), errc::query_timeout);
  CAF_CHECK(query("SELECT 1"));
}

CAF_TEST(result sets are bounded) {
  auto r = query("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 51) "
                 "SELECT x FROM c");
  CAF_CHECK_EQUAL(code_of(r), errc::result_too_large);
  auto ok = query("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 50) "
                  "SELECT x FROM c");
  CAF_REQUIRE(ok);
  CAF_CHECK_EQUAL((*ok)["results"][0]["resultSet"].size(), 50u);
}

CAF_TEST(missing databases are reported as such) {
  sql_engine other{*resolve_db_path("nope", cfg), cfg};
  sql_txn txn;
  txn.items.push_back(sql_item{true, "SELECT 1", {}, {}});
  CAF_CHECK_EQUAL(code_of(other.execute(txn)), errc::database_not_found);
  CAF_CHECK_EQUAL(code_of(other.query("SELECT 1")), errc::database_not_found);
}

CAF_TEST(symlinks out of the store are refused) {
  std::string outside = dir.path + "-outside.db";
  CAF_REQUIRE(
      std::system(
          ("touch '" + outside + "' && ln -s '" + outside + "' '" + dir.path + "/link.db'").c_str())
      == 0);
  sql_engine linked{*resolve_db_path("link", cfg), cfg};
  CAF_CHECK_EQUAL(code_of(linked.query("SELECT 1")), errc::invalid_db_path);
  std::remove(outside.c_str());
}

CAF_TEST(a group commit fails only the failing transaction) {
  CAF_REQUIRE(exec(R"j({"transaction":[{"statement":"CREATE TABLE g(x INTEGER UNIQUE)"}]})j"));
  std::vector<db_op> group;
  for (auto body :
       {R"j([{"statement":"INSERT INTO g VALUES (1)"}])j",
        R"j([{"statement":"INSERT INTO g VALUES (2)"},{"statement":"INSERT INTO g VALUES (1)"}])j",
        R"j([{"statement":"INSERT INTO g VALUES (3)"},{"query":"SELECT count(*) AS n FROM g"}])j",
        R"j([{"statement":"SAVEPOINT litedrive_txn"}])j",
        R"j([{"statement":"RELEASE litedrive_txn"}])j"})
    group.push_back(*parse_transaction(body, 10));
  auto out = engine->execute_group(group);
  CAF_REQUIRE_EQUAL(out.size(), 5u);
  CAF_CHECK(!out[0].error);
  CAF_CHECK_EQUAL(view(out[1].error).code, errc::sql_error);
  CAF_CHECK_EQUAL(view(out[1].error).item, 1);
  CAF_CHECK(!out[2].error);
  // Inside the group the third transaction sees the first one's row, not the second's.
  CAF_CHECK_EQUAL(json::parse(out[2].answer.body)["results"][1]["resultSet"][0]["n"].get<int>(), 2);
  CAF_CHECK(out[3].error); // the group's own savepoint is off limits
  CAF_CHECK(out[4].error);
  auto rows = query("SELECT x FROM g ORDER BY x");
  CAF_REQUIRE(rows);
  CAF_CHECK_EQUAL((*rows)["results"][0]["resultSet"].dump(), R"j([{"x":1},{"x":3}])j");
}

CAF_TEST(an interrupt that aborts the sqlite transaction reruns the innocent ones) {
  CAF_REQUIRE(exec(R"j({"transaction":[{"statement":"CREATE TABLE h(x)"}]})j"));
  std::vector<db_op> group;
  for (
      auto body :
      {R"j([{"statement":"INSERT INTO h VALUES (1)"}])j",
       R"j([{"statement":"INSERT INTO h WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT x FROM c"}])j",
       R"j([{"statement":"INSERT INTO h VALUES (2)"}])j"})
    group.push_back(*parse_transaction(body, 10));
  auto out = engine->execute_group(group);
  CAF_CHECK(!out[0].error);
  CAF_CHECK_EQUAL(view(out[1].error).code, errc::query_timeout);
  CAF_CHECK(!out[2].error);
  auto rows = query("SELECT x FROM h ORDER BY x");
  CAF_REQUIRE(rows);
  CAF_CHECK_EQUAL((*rows)["results"][0]["resultSet"].dump(), R"j([{"x":1},{"x":2}])j");
}

CAF_TEST_FIXTURE_SCOPE_END()
