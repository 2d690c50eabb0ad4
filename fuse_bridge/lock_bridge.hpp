#pragma once
// The drive's lock operations: the kernel's GETLK, SETLK/SETLKW, FLUSH and RELEASE become calls
// of the file's lock service (actors/lock_service.hpp), found by one routing function. A request
// that waits holds no FUSE worker: its sink answers the kernel exactly once, from whichever
// thread ends the wait. Signals interrupt a waiter (EINTR) through fuse_req_interrupt_func.

#include <memory>

#include "fuse_bridge/drive_impl.hpp"

namespace litedrive::lock_bridge {

/// The waiters a signal may interrupt, for the session's life.
std::shared_ptr<interrupt_table> make_interrupt_table();

void getlk(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, struct flock* fl);

void setlk(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, struct flock* fl, int sleep);

/// FLUSH (any close() of a descriptor): `owner`'s POSIX locks on the file, and its waits there,
/// are gone when this returns (POSIX semantics, and the kernel's lock owners are recycled).
void flush(inode& node, uint64_t owner);

/// RELEASE of handle `h` (the last close): OFD leftovers of owners that locked only through it.
void release(inode& node, const file_handle& h);

} // namespace litedrive::lock_bridge
