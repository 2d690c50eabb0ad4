#pragma once
// Opening files in the store (and through the mount over it) without ever leaving it (issue
// 17). litedrive runs as root; anybody who can write the store, directly or through the drive,
// can plant a symbolic link where a database, journal, WAL or -shm will be opened, or swap a
// directory for one between a check and an open. So every open of such a file by litedrive's
// own SQLite connections resolves its path with openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)
// from a descriptor of the store's (or the mount's) root: a link that leads out fails with
// EXDEV, whatever happens between two calls. Directories litedrive creates for a new database
// are made the same way, one component at a time.
//
// The hook sits in SQLite's unix VFS system-call table ("open"), installed before drive_io,
// whose own opens then pass through it too. Paths outside both roots (litedrive's state
// directory, absolute-path mode) are opened as SQLite would.

#include <string>

#include <sys/types.h>

namespace litedrive::store_files {

/// Installs the open hook for the store `store` (canonical) and, if not empty, the mount
/// `mount` (absolute). Call once at start-up, before any SQLite connection opens.
bool install(const std::string& store, const std::string& mount);

/// The mount is up: opens its root (paths under the mount are refused before that).
void mount_ready();

/// The mount is about to go: closes its root (a descriptor on the mount keeps the kernel's FUSE
/// connection, and so the unmount, waiting).
void mount_gone();

/// open(2) of `path`, confined to the root it lies under (store or mount); -1 with errno set
/// (EXDEV: the path leads out of its root).
int open_confined(const char* path, int flags, mode_t mode);

/// mkdir -p of the directories of `path` (which lies under `store`) below the store's root,
/// never through a link; 0 or an errno (EXDEV: something in the way leads out).
int make_parents(const std::string& store, const std::string& path);

} // namespace litedrive::store_files
