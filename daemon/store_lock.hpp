#pragma once
// One daemon per store. Two litedrives over the same backing directory (with two mount points)
// would run two lock tables over the same files: the processes of one mount could never see
// the locks of the other's, and commits would be lost as they were when one lock table lost
// track of a lock (issue 16). So a daemon holds an exclusive flock() on the store directory
// itself for its whole life (no file appears in the store), and a second one refuses to start.
//
// A previous daemon killed with SIGKILL may take a while to finish exiting (threads waiting in
// the kernel on its dead mount) and holds the lock until then; it can serve nobody any more, so
// after a short wait for it the new daemon starts anyway and says so.

#include <string>

#include <caf/expected.hpp>

namespace litedrive {

/// Takes the store's lock: the descriptor to keep open for the daemon's life, or an error that
/// names the daemon holding it.
caf::expected<int> claim_store(const std::string& store);

} // namespace litedrive
