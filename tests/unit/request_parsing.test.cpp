#define CAF_SUITE request_parsing
#include <caf/test/unit_test.hpp>

#include "http/request_parsing.hpp"
#include "schema/errc.hpp"

using namespace litedrive;

namespace {

errc code_of(const caf::expected<sql_txn>& x) {
  return x ? errc::none : view(x.error()).code;
}

int32_t item_of(const caf::expected<sql_txn>& x) {
  return x ? -1 : view(x.error()).item;
}

} // namespace

CAF_TEST(well formed transactions parse) {
  auto t = parse_transaction(R"j({"transaction":[{"statement":"INSERT INTO t VALUES (?)","values":[1]},
                                                 {"query":"SELECT :x","values":{"x":"y"}}]})j", 10);
  CAF_REQUIRE(t);
  CAF_REQUIRE_EQUAL(t->items.size(), 2u);
  CAF_CHECK(!t->items[0].is_query);
  CAF_CHECK(t->items[1].is_query);
  CAF_CHECK_EQUAL(std::get<int64_t>(t->items[0].positional[0]), 1);
  CAF_CHECK_EQUAL(t->items[1].named[0].first, "x");
  // a bare array of items is accepted too
  CAF_CHECK(parse_transaction(R"j([{"query":"SELECT 1"}])j", 10));
  // nested JSON binds as its text
  auto nested = parse_transaction(R"j([{"query":"SELECT ?","values":[{"a":[1,2]}]}])j", 10);
  CAF_REQUIRE(nested);
  CAF_CHECK_EQUAL(std::get<std::string>(nested->items[0].positional[0]), R"j({"a":[1,2]})j");
}

CAF_TEST(malformed bodies get precise errors) {
  CAF_CHECK_EQUAL(code_of(parse_transaction("{", 10)), errc::invalid_json);
  CAF_CHECK_EQUAL(code_of(parse_transaction("", 10)), errc::invalid_json);
  CAF_CHECK_EQUAL(code_of(parse_transaction("{}", 10)), errc::invalid_request);
  CAF_CHECK_EQUAL(code_of(parse_transaction(R"j({"transaction":{}})j", 10)), errc::invalid_request);
  CAF_CHECK_EQUAL(code_of(parse_transaction(R"j({"transaction":[]})j", 10)), errc::invalid_request);
  auto bad_item = parse_transaction(R"j({"transaction":[{"query":"SELECT 1"},{"query":5}]})j", 10);
  CAF_CHECK_EQUAL(code_of(bad_item), errc::invalid_request);
  CAF_CHECK_EQUAL(item_of(bad_item), 1);
  CAF_CHECK_EQUAL(item_of(parse_transaction(R"j([{"query":"x"},{"query":"x"},{"sql":"x"}])j", 10)), 2);
  CAF_CHECK_EQUAL(code_of(parse_transaction(R"j([{"query":"x","statement":"y"}])j", 10)),
                  errc::invalid_request);
  CAF_CHECK_EQUAL(code_of(parse_transaction(R"j([{"query":"x","values":"y"}])j", 10)),
                  errc::invalid_request);
  CAF_CHECK_EQUAL(code_of(parse_transaction(R"j([{"query":"x","values":[18446744073709551615]}])j", 10)),
                  errc::invalid_request);
  CAF_CHECK_EQUAL(code_of(parse_transaction(R"j([{"query":"x","values":[{"$blob":"%%"}]}])j", 10)),
                  errc::invalid_request);
  CAF_CHECK_EQUAL(code_of(parse_transaction(R"j([{"query":"x"},{"query":"x"},{"query":"x"}])j", 2)),
                  errc::too_many_items);
}

CAF_TEST(sql parameter decoding) {
  CAF_CHECK_EQUAL(*decode_sql_param("U0VMRUNUIDE="), "SELECT 1");
  CAF_CHECK_EQUAL(*decode_sql_param("U0VMRUNUIDE"), "SELECT 1");
  CAF_CHECK(!decode_sql_param("***"));
  CAF_CHECK(!decode_sql_param(""));
}
