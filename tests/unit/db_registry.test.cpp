#define CAF_SUITE db_registry
#include <caf/test/dsl.hpp>

#include <optional>

#include <nlohmann/json.hpp>

#include "actors/db_path.hpp"
#include "actors/db_registry.hpp"
#include "schema/errc.hpp"
#include "temp_dir.hpp"

using namespace litedrive;
using json = nlohmann::json;

namespace {

struct fixture : test_coordinator_fixture<> {
  test::temp_dir dir;
  settings cfg;
  db_registry_actor registry;

  fixture() {
    cfg.store = dir.path;
    cfg.mount = "/hoody/databases";
    cfg.allow_any_absolute_db_path = true;
    cfg.detached_workers = false; // SQLite inline: the test coordinator runs everything
    cfg.idle_close = std::chrono::seconds{10};
    registry = sys.spawn(db_registry, cfg, std::shared_ptr<lock_registry>{});
    drain();
  }

  ~fixture() {
    anon_send_exit(registry, caf::exit_reason::user_shutdown);
    drain();
  }

  /// Runs every queued message but fires no timer: the registry's idle sweep re-arms itself, so
  /// the fixture's run() (which also fires timers) would never return.
  void drain() { sched.run(); }

  db_location loc(const std::string& name) { return *resolve_db_path(name, cfg); }

  /// Keeps what the database actor delivers, the route the registry teaches, and whether it was
  /// dropped unanswered.
  struct capture_sink : op_reply_sink {
    std::optional<op_outcome> outcome;
    caf::actor route;
    std::shared_ptr<bool> dropped_unanswered = std::make_shared<bool>(false);
    void reply(op_outcome&& x) override {
      CAF_CHECK(!outcome); // exactly once
      outcome = std::move(x);
    }
    void learn_route(const caf::actor& database) override { route = database; }
    ~capture_sink() override { *dropped_unanswered = !outcome; }
  };

  /// A group-commit request through the registry (as the HTTP server sends it).
  caf::expected<std::string> exec(const db_location& where, sql_txn t,
                                  std::shared_ptr<capture_sink> sink = nullptr) {
    if (!sink) sink = std::make_shared<capture_sink>();
    self->send(registry, exec_atom_v, where, std::move(t), op_reply_sink_ptr{sink});
    drain();
    if (!sink->outcome) return make_error(errc::internal_error, "no outcome");
    if (sink->outcome->error) return std::move(sink->outcome->error);
    return std::move(sink->outcome->answer.body);
  }

  template <class... Ts> caf::expected<std::string> ask(Ts... xs) {
    auto hdl = self->request(registry, caf::infinite, xs...);
    drain();
    caf::expected<std::string> result{caf::error{}};
    hdl.receive([&](std::string& s) { result = std::move(s); },
                [&](caf::error& e) { result = std::move(e); });
    return result;
  }

  database_actor actor_for(const std::string& name) {
    auto hdl = self->request(registry, caf::infinite, caf::get_atom_v, loc(name));
    drain();
    database_actor result;
    hdl.receive([&](database_actor& a) { result = a; },
                [&](caf::error& e) { CAF_FAIL("get failed: " << to_string(e)); });
    return result;
  }

  json stats() {
    auto s = ask(stats_atom_v);
    CAF_REQUIRE(s);
    return json::parse(*s);
  }

  sql_txn txn(const std::string& sql, bool is_query) {
    sql_txn t;
    t.items.push_back(sql_item{is_query, sql, {}, {}});
    return t;
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(db_registry_tests, fixture)

CAF_TEST(one actor per canonical path) {
  CAF_REQUIRE(ask(create_atom_v, loc("app"), false, std::string{}));
  auto a = actor_for("app");
  CAF_CHECK_EQUAL(a, actor_for("app.db"));
  CAF_CHECK_EQUAL(a, actor_for("/hoody/databases/app.db"));
  CAF_CHECK_EQUAL(a, actor_for(dir.path + "/app.db"));
  CAF_CHECK_NOT_EQUAL(a, actor_for("other"));
  CAF_CHECK_EQUAL(stats()["open"].get<int>(), 2);
}

CAF_TEST(requests are answered through the database actor) {
  CAF_REQUIRE(ask(create_atom_v, loc("app"), false, std::string{}));
  CAF_REQUIRE(exec(loc("app"), txn("CREATE TABLE t(x)", false)));
  CAF_REQUIRE(exec(loc("app"), txn("INSERT INTO t VALUES (42)", false)));
  auto r = ask(query_atom_v, loc("app"), std::string{"SELECT x FROM t"});
  CAF_REQUIRE(r);
  CAF_CHECK_EQUAL(json::parse(*r)["results"][0]["resultSet"][0]["x"].get<int>(), 42);
  auto missing = exec(loc("missing"), txn("SELECT 1", true));
  CAF_REQUIRE(!missing);
  CAF_CHECK_EQUAL(view(missing.error()).code, errc::database_not_found);
  auto s = stats();
  for (auto& db : s["databases"])
    if (db["name"] == "app") CAF_CHECK_EQUAL(db["requests"].get<int>(), 4);
}

CAF_TEST(the registry teaches the route and a sink gets exactly one outcome) {
  CAF_REQUIRE(ask(create_atom_v, loc("app"), false, std::string{}));
  auto sink = std::make_shared<capture_sink>();
  CAF_REQUIRE(exec(loc("app"), txn("SELECT 1 AS one", true), sink));
  CAF_CHECK_EQUAL(sink->route, caf::actor_cast<caf::actor>(actor_for("app")));
  // The route works without the registry.
  auto direct = std::make_shared<capture_sink>();
  self->send(actor_for("app"), exec_atom_v, txn("SELECT 2 AS two", true),
             op_reply_sink_ptr{direct});
  drain();
  CAF_REQUIRE(direct->outcome && !direct->outcome->error);
  CAF_CHECK_EQUAL(
      json::parse(direct->outcome->answer.body)["results"][0]["resultSet"][0]["two"].get<int>(), 2);
}

CAF_TEST(a sink sent to a stopped database actor is dropped unanswered) {
  CAF_REQUIRE(ask(create_atom_v, loc("app"), false, std::string{}));
  auto first = actor_for("app");
  anon_send_exit(first, caf::exit_reason::kill);
  drain();
  std::shared_ptr<bool> flag;
  {
    auto sink = std::make_shared<capture_sink>();
    flag = sink->dropped_unanswered;
    self->send(first, exec_atom_v, txn("SELECT 1", true), op_reply_sink_ptr{std::move(sink)});
    drain();
  }
  // Nobody holds it any more and nobody answered: the front end's sink answers by itself.
  CAF_CHECK(*flag);
}

CAF_TEST(a database actor that dies is replaced on the next request) {
  CAF_REQUIRE(ask(create_atom_v, loc("app"), false, std::string{}));
  auto first = actor_for("app");
  anon_send_exit(first, caf::exit_reason::kill);
  drain();
  CAF_CHECK_EQUAL(stats()["died"].get<int>(), 1);
  CAF_CHECK_EQUAL(stats()["open"].get<int>(), 0);
  CAF_REQUIRE(exec(loc("app"), txn("SELECT 1", true)));
  auto second = actor_for("app");
  CAF_CHECK_NOT_EQUAL(first, second);
}

CAF_TEST(idle databases are closed and reopened on demand) {
  CAF_REQUIRE(ask(create_atom_v, loc("app"), false, std::string{}));
  CAF_CHECK_EQUAL(stats()["open"].get<int>(), 1);
  advance_time(std::chrono::seconds{5});
  drain();
  CAF_CHECK_EQUAL(stats()["open"].get<int>(), 1); // not idle long enough yet
  for (int i = 0; i < 4; ++i) {
    advance_time(std::chrono::seconds{3});
    drain();
  }
  CAF_CHECK_EQUAL(stats()["open"].get<int>(), 0);
  CAF_REQUIRE(exec(loc("app"), txn("SELECT 1", true)));
  CAF_CHECK_EQUAL(stats()["open"].get<int>(), 1);
}

CAF_TEST_FIXTURE_SCOPE_END()
