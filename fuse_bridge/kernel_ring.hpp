#pragma once
// FUSE over io_uring (Linux >= 6.14), which libfuse 3.14 does not know: one queue per CPU, each
// served by a thread pinned to that CPU, so that a request is answered on the CPU that made it.
//
// Why: on this kind of machine (virtual CPUs) a FUSE round trip through /dev/fuse costs ~11 us
// when the client and the drive's thread share a CPU and ~48 us when the wake-up crosses CPUs;
// libfuse's worker pool lands on either. The kernel sends each request to the queue of the CPU
// its caller runs on, so the queue's thread is woken on that CPU.
//
// How it fits libfuse: requests that arrive on a queue are rebuilt into the layout of a
// /dev/fuse read (header, operation header, payload: the payload stays where the kernel wrote
// it) and handed to fuse_session_process_buf, so every handler runs unchanged. Their replies
// still come through kernel_io's writev hook, which passes those of ring requests here: the
// reply goes into the request's ring entry and is committed with the fetch of the next request.
// A reply may come from any thread (a lock granted later by an actor); only the queue's own
// thread submits to its ring, so such replies are handed to it through an eventfd.
//
// INIT, FORGET, INTERRUPT and notifications keep going through /dev/fuse (libfuse's loop).
// Nothing changes until the kernel accepted the ring: if it is not offered, or registering
// fails, the drive runs on /dev/fuse as before.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <sys/types.h>
#include <sys/uio.h>

struct fuse_session;

namespace litedrive::kernel_ring {

/// Before mounting (the kernel decides what INIT offers when the mount is made): whether the
/// fuse module lets file systems use io_uring. Turns its `enable_uring` on if it is off and this
/// process may: that only allows servers that ask for it, like this one, to use it.
bool module_allows();

/// Before the session's loop starts: sets up one io_uring and one thread per possible CPU,
/// waiting for INIT. False (reason logged): the drive stays on /dev/fuse.
bool prepare(fuse_session* se);

/// INIT: whether to accept the kernel's offer (the rings are prepared).
bool prepared();

/// After the INIT reply that accepted the ring was written: the queue threads register their
/// entries, each with `payload` bytes for a request's data.
void start(size_t payload);

/// The ring was not negotiated: the prepared threads end.
void abandon();

/// Whether requests may be arriving on the rings.
bool active();

/// If `unique` is a request that came through a ring and is not answered yet: copies the reply
/// in `iov` (an out header, then the arguments) into its entry, commits it and returns the
/// bytes "written"; otherwise nothing (the reply goes to /dev/fuse).
std::optional<ssize_t> reply(uint64_t unique, const iovec* iov, int count);

/// At unmount, once the connection is over: the queue threads end.
void stop();

/// Requests served through the rings so far (all queues).
uint64_t served();

} // namespace litedrive::kernel_ring
