// litedrive-inspect: asks a running litedrive's inspection actor over CAF's remote interface
// (io::middleman) and prints its JSON answer.
//
//   litedrive-inspect [--at=HOST:PORT] stats        every open database's counters
//   litedrive-inspect [--at=HOST:PORT] locks NAME   the lock table of one database
//
// Exit status: 0 answered, 1 the daemon could not be reached or did not answer, 2 bad usage.

#include <chrono>
#include <cstdio>
#include <string>

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>

#include "schema/interfaces.hpp"

namespace {

int usage() {
  std::fputs("usage: litedrive-inspect [--at=HOST:PORT] stats | locks NAME\n", stderr);
  return 2;
}

} // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  uint16_t port = 8421;
  int i = 1;
  if (i < argc && std::string{argv[i]}.rfind("--at=", 0) == 0) {
    std::string at = std::string{argv[i]}.substr(5);
    auto colon = at.rfind(':');
    if (colon == std::string::npos) return usage();
    host = at.substr(0, colon);
    try {
      auto p = std::stoul(at.substr(colon + 1));
      if (p == 0 || p > 65535) return usage();
      port = static_cast<uint16_t>(p);
    } catch (...) {
      return usage();
    }
    ++i;
  }
  if (i >= argc) return usage();
  std::string command = argv[i++];
  if (!((command == "stats" && i == argc) || (command == "locks" && i + 1 == argc))) return usage();

  caf::actor_system_config cfg;
  cfg.set("logger.console-verbosity", caf::atom("quiet"));
  cfg.set("logger.file-verbosity", caf::atom("quiet"));
  cfg.load<caf::io::middleman>();
  caf::actor_system sys{cfg};
  auto remote = sys.middleman().remote_actor<litedrive::inspector_actor>(host, port);
  if (!remote) {
    std::fprintf(stderr, "litedrive-inspect: cannot reach %s:%u: %s\n", host.c_str(), port,
                 caf::to_string(remote.error()).c_str());
    return 1;
  }
  int rc = 0;
  caf::scoped_actor self{sys};
  auto print = [](const std::string& json) { std::printf("%s\n", json.c_str()); };
  auto fail = [&rc](const caf::error& err) {
    std::fprintf(stderr, "litedrive-inspect: %s\n", caf::to_string(err).c_str());
    rc = 1;
  };
  // A request to a dead remote actor times out rather than failing fast: bound the wait.
  constexpr auto timeout = std::chrono::seconds{10};
  if (command == "stats")
    self->request(*remote, timeout, litedrive::stats_atom_v).receive(print, fail);
  else
    self->request(*remote, timeout, litedrive::locks_atom_v, std::string{argv[i]})
        .receive(print, fail);
  return rc;
}
