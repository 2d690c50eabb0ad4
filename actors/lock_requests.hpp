#pragma once
// What a POSIX lock call on a database's files means to the lock policy: the database a file
// belongs to, the file's role, and the SQLite facts the policy needs (is the database in WAL
// mode, is there a hot journal). Both ways into the lock table use it: the drive (the kernel's
// requests) and drive_io (litedrive's own SQLite connections), so they build the same requests
// for the same file.

#include <fcntl.h>

#include <string>
#include <string_view>

#include "schema/lock_types.hpp"

namespace litedrive::lock_requests {

/// The database a file belongs to: its main file's path (a `-shm` belongs to its main file;
/// any other file is its own "database": a plain file whose locks follow POSIX).
struct file_identity {
  std::string db_path;
  file_role role = file_role::main;
};

/// `path` as the kernel reports it for an open descriptor (" (deleted)" removed).
file_identity identify(std::string_view path);

/// The canonical path of the file behind `fd` (readlink of /proc/self/fd), with a deleted
/// file's " (deleted)" suffix removed; empty if unknown.
std::string path_of(int fd);

/// Turns an F_SETLK/F_SETLKW/F_GETLK flock (SEEK_SET, l_start >= 0, l_len >= 0) into the
/// range and kind of `out`; false if the range is not of that form (the caller then lets the
/// kernel decide).
bool from_flock(const struct flock& fl, lock_request& out);

/// F_GETLK's answer as fcntl reports it: the conflicting lock, or F_UNLCK.
void to_flock(const getlk_answer& answer, struct flock& fl);

/// Fills in what SQLite's file formats say about the request: `wal` (the main file's header
/// says WAL, read through `fd`; a -shm is always WAL) and `hot_journal` (for an EXCLUSIVE
/// request on a rollback database: a non-empty `-journal` exists next to it).
void describe(lock_request& r, int fd, const std::string& db_path);

} // namespace litedrive::lock_requests
