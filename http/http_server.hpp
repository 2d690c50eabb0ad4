#pragma once
// The HTTP front end (hoody-sqlite compatible API). RESTinio stays inside http/*.cpp: this header
// is all the rest of litedrive sees.
//
// Handlers parse and validate, send ONE message to the registry, and answer from its reply; they
// never touch SQLite and never block an I/O thread. Replies are sent from a CAF thread.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/expected.hpp>

#include "schema/interfaces.hpp"
#include "schema/settings.hpp"

namespace litedrive {

class http_server {
public:
  /// Binds and starts serving; fails with a message when the address cannot be bound.
  /// `drive_counters` (may be empty) answers the drive's request counters as JSON for /health.
  static caf::expected<std::unique_ptr<http_server>>
  start(caf::actor_system& sys, db_registry_actor registry, query_history_actor history,
        const settings& s, std::function<std::string()> drive_counters = {});
  ~http_server();

  /// The bound port (the picked one when the configured port is 0).
  uint16_t port() const;

  /// Stops accepting, closes connections and waits for the I/O threads. Idempotent.
  void stop();

  struct impl;

private:
  explicit http_server(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

} // namespace litedrive
