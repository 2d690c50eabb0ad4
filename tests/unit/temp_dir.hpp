#pragma once
// A fresh directory under /tmp for one test, removed with everything in it afterwards.
#include <cstdlib>
#include <string>

namespace litedrive::test {

struct temp_dir {
  std::string path;
  temp_dir() {
    char tmpl[] = "/tmp/litedrive-test-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~temp_dir() {
    std::string cmd = "rm -rf '" + path + "'";
    if (std::system(cmd.c_str()) != 0) {
      // best effort: a leftover temp directory is harmless
    }
  }
};

} // namespace litedrive::test
