#pragma once
// The mount point and the host around it: the checks litedrive makes before it mounts (the
// kernel's FUSE request timeout, /etc/fuse.conf), what it does with a mount point left behind
// by a crashed daemon (probe it without hanging, abort its FUSE connection, detach it), and
// how it aborts its own connection when files stay open at exit.

#include <string>

#include <caf/error.hpp>

#include "schema/settings.hpp"

namespace litedrive::mount_point {

/// An `unavailable` error with the message `why`.
caf::error fail(std::string why);

/// The kernel (>= 6.14) aborts the WHOLE connection when a request takes longer than its FUSE
/// request timeout; a lock wait longer than that would take every user of the drive down.
caf::error check_kernel_timeouts(const settings& s);

/// allow_other needs 'user_allow_other' in /etc/fuse.conf when litedrive does not run as root.
caf::error check_allow_other(const settings& s);

/// Makes `mnt` usable: creates it, detaches stale mounts (a dead or wedged daemon's), refuses a
/// live litedrive mount (another daemon).
caf::error prepare(const std::string& mnt);

/// The FUSE connection number of the litedrive mount at `mnt` (fusectl), or "".
std::string connection_of(const std::string& mnt);

/// Aborts a FUSE connection through fusectl: every pending and future request of it fails.
void abort_connection(const std::string& connection);

} // namespace litedrive::mount_point
