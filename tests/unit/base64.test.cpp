#define CAF_SUITE base64
#include <caf/test/unit_test.hpp>

#include "schema/base64.hpp"

using namespace litedrive;

CAF_TEST(round trip of every length and byte) {
  std::string bytes;
  for (int i = 0; i < 300; ++i) {
    auto enc = base64_encode(bytes);
    auto dec = base64_decode(enc);
    CAF_REQUIRE(dec);
    CAF_CHECK_EQUAL(*dec, bytes);
    bytes += static_cast<char>(i * 7 + 3);
  }
}

CAF_TEST(known vectors standard and url safe) {
  CAF_CHECK_EQUAL(base64_encode("SELECT ..."), "U0VMRUNUIC4uLg==");
  CAF_CHECK_EQUAL(*base64_decode("U0VMRUNUIC4uLg=="), "SELECT ...");
  CAF_CHECK_EQUAL(*base64_decode("U0VMRUNUIC4uLg"), "SELECT ...");
  CAF_CHECK_EQUAL(*base64_decode("-_8="), *base64_decode("+/8="));
  CAF_CHECK_EQUAL(*base64_decode(""), "");
}

CAF_TEST(malformed input is refused) {
  CAF_CHECK(!base64_decode("abc$"));
  CAF_CHECK(!base64_decode("a"));
  CAF_CHECK(!base64_decode("ab=c"));
  CAF_CHECK(!base64_decode("abc=="));
  CAF_CHECK(!base64_decode("ab cd"));
  CAF_CHECK(!base64_decode("QR=="));  // non-zero leftover bits
}
