#pragma once
// litedrive's own reads and writes of /dev/fuse (libfuse's custom I/O), for what libfuse 3.14
// does not know: FUSE_HANDLE_KILLPRIV_V2.
//
// Without it the kernel asks the file system for the `security.capability` attribute before
// every write (to know whether the write must drop it): one GETXATTR round trip per WRITE, ~11
// of the ~50 requests of a rollback-journal transaction. With it the kernel marks inodes that
// have nothing to drop and stops asking, and leaves dropping set-user-ID and set-group-ID bits
// to the file system: it flags the writes, truncates and O_TRUNC opens of processes without
// CAP_FSETID, and the drive clears the bits itself (its own writes run as root, which keeps
// them). The capability attribute goes by itself: the backing file system drops it on any
// write, also root's.
//
// The hooks only look at requests and patch one reply (INIT); everything else passes through.

#include <cstddef>
#include <cstdint>
#include <sys/stat.h>

struct fuse_session;
struct fuse_req;
typedef struct fuse_req* fuse_req_t;
typedef uint64_t fuse_ino_t;

namespace litedrive::kernel_io {

/// Installs the hooks on a mounted session, before its loop starts, and with `ring` prepares
/// FUSE over io_uring (kernel_ring.hpp). False: not installed (the drive works as before, with a
/// GETXATTR per write).
bool install(fuse_session* se, bool ring);

/// Before mounting: whether the kernel will offer FUSE over io_uring (turns the fuse module's
/// enable_uring on if it is off and this process may).
bool allow_ring();

/// INIT (do_init): whether the kernel offered FUSE over io_uring and the drive will take it.
bool ring_planned();

/// Requests served through FUSE over io_uring so far.
uint64_t ring_requests();

/// At unmount, once the connection is over: ends what install() started.
void finish();

/// Notes what a request that did not come through the read hook (a ring's) asks beyond what
/// libfuse passes on; called by the thread that then serves it.
void note_request(const char* buf, size_t n);

/// Whether the kernel negotiated FUSE_HANDLE_KILLPRIV_V2 (after INIT).
bool killpriv_v2();

/// Whether the request this thread is serving must drop set-user-ID and set-group-ID bits (a
/// write, truncate or O_TRUNC open by a process without CAP_FSETID).
bool kill_suidgid();

/// Clears S_ISUID and S_ISGID as the kernel would for the caller of `req` (S_ISGID without
/// group-execute stays for members of the file's group) of the regular file at `path` (a
/// /proc/self/fd path: it also works for descriptors opened read-only or O_PATH), and makes the
/// kernel forget the cached mode of inode `ino`. Errors are ignored: the data operation it
/// follows already succeeded. True if bits were cleared.
bool drop_suidgid(fuse_req_t req, fuse_ino_t ino, const char* path);

/// After a chown done as root of the file at `path` whose attributes were `before`: clears an
/// S_ISGID without group-execute if the caller of `req` (not root) is not a member of the
/// file's former group, as the caller's own chown would have.
void drop_sgid_after_chown(fuse_req_t req, fuse_ino_t ino, const char* path,
                           const struct stat& before);

} // namespace litedrive::kernel_io
