#include "fuse_bridge/kernel_io.hpp"
#include "fuse_bridge/kernel_ring.hpp"

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <linux/fuse.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <fcntl.h>
#include <cstddef>
#include <cstring>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <vector>

#include <spdlog/spdlog.h>

namespace litedrive::kernel_io {

namespace {

std::atomic<fuse_session*> session{nullptr}; ///< the drive's (one per process)
std::atomic<uint64_t> init_unique{0};     ///< the INIT request, whose reply gets patched
std::atomic<bool> offered{false};         ///< the kernel offered FUSE_HANDLE_KILLPRIV_V2
std::atomic<bool> negotiated{false};
std::atomic<bool> ring_offered{false};    ///< the kernel offered FUSE over io_uring
/// FUSE_OVER_IO_URING (bit 41 of the 64 INIT flags: bit 9 of flags2; newer than these headers).
constexpr uint32_t over_io_uring_flags2 = 1u << 9;
thread_local bool kill_current = false;   ///< the request read last by this thread asks it

template <class T> bool field(const char* buf, size_t n, size_t off, T& out) {
  if (n < off + sizeof(T)) return false;
  std::memcpy(&out, buf + off, sizeof(T));
  return true;
}

/// Whether the 32-bit word at `off` of the request holds `mask`.
bool flag(const char* buf, size_t n, size_t off, uint32_t mask) {
  uint32_t word = 0;
  return field(buf, n, off, word) && (word & mask) != 0;
}

/// Where the kernel says that a request comes from a process without CAP_FSETID, so that the
/// file system must drop set-ID bits (FUSE_HANDLE_KILLPRIV_V2): a flag word of the request body.
struct kill_flag {
  uint32_t opcode;
  size_t offset;
  uint32_t mask;
};
constexpr kill_flag kill_flags[] = {
  {FUSE_WRITE, offsetof(fuse_write_in, write_flags), FUSE_WRITE_KILL_SUIDGID},
  {FUSE_OPEN, offsetof(fuse_open_in, open_flags), FUSE_OPEN_KILL_SUIDGID},
  {FUSE_CREATE, offsetof(fuse_create_in, open_flags), FUSE_OPEN_KILL_SUIDGID},
  {FUSE_SETATTR, offsetof(fuse_setattr_in, valid), FATTR_KILL_SUIDGID},
};

/// Notes what the request in `buf` asks of the file system that libfuse does not pass on.
void inspect(const char* buf, size_t n) {
  kill_current = false;
  fuse_in_header in;
  if (!field(buf, n, 0, in)) return;
  constexpr size_t body = sizeof(fuse_in_header);
  switch (in.opcode) {
  case FUSE_INIT: {
    uint32_t flags = 0;
    uint32_t flags2 = 0;
    if (field(buf, n, body + offsetof(fuse_init_in, flags), flags))
      offered = (flags & FUSE_HANDLE_KILLPRIV_V2) != 0;
    ring_offered = (flags & FUSE_INIT_EXT) != 0
                   && field(buf, n, body + offsetof(fuse_init_in, flags2), flags2)
                   && (flags2 & over_io_uring_flags2) != 0;
    init_unique = in.unique;
    break;
  }
  default:
    for (const auto& k : kill_flags)
      if (in.opcode == k.opcode)
        kill_current = flag(buf, n, body + k.offset, k.mask);
    break;
  }
}

ssize_t hook_read(int fd, void* buf, size_t len, void*) {
  ssize_t n = ::read(fd, buf, len);
  if (n > 0) {
    int saved = errno;
    inspect(static_cast<const char*>(buf), static_cast<size_t>(n));
    errno = saved;
  }
  return n;
}

/// The bytes a ring entry needs for a request's data, from the INIT reply (as the kernel
/// computes it: the largest of 8 KiB, max_write and max_pages pages).
size_t ring_payload(const fuse_init_out& out) {
  size_t pages = (out.flags & FUSE_MAX_PAGES) ? out.max_pages : 32;
  return std::max<size_t>({8192, out.max_write, pages * 4096});
}

/// The INIT reply with what libfuse 3.14 cannot ask for: FUSE_HANDLE_KILLPRIV_V2, and FUSE over
/// io_uring when the rings are prepared.
ssize_t write_init_reply(int fd, const iovec* iov, int count) {
  std::vector<char> out;
  for (int i = 0; i < count; ++i)
    out.insert(out.end(), static_cast<const char*>(iov[i].iov_base),
               static_cast<const char*>(iov[i].iov_base) + iov[i].iov_len);
  fuse_out_header head;
  fuse_init_out init{};
  constexpr size_t at = sizeof(fuse_out_header);
  bool ring = false;
  if (field(out.data(), out.size(), 0, head) && head.error == 0
      && field(out.data(), out.size(), at, init)) {
    if (offered) {
      init.flags |= FUSE_HANDLE_KILLPRIV_V2;
      negotiated = true;
    }
    if (ring_offered && kernel_ring::prepared()) {
      init.flags |= FUSE_INIT_EXT;
      init.flags2 |= over_io_uring_flags2;
      ring = true;
    }
    std::memcpy(out.data() + at, &init, sizeof(init));
  }
  ssize_t rc = ::write(fd, out.data(), out.size());
  if (ring && rc == static_cast<ssize_t>(out.size()))
    kernel_ring::start(ring_payload(init));
  else
    kernel_ring::abandon();
  return rc;
}

ssize_t hook_writev(int fd, iovec* iov, int count, void*) {
  if (count == 0 || iov[0].iov_len < sizeof(fuse_out_header))
    return ::writev(fd, iov, count);
  fuse_out_header head;
  std::memcpy(&head, iov[0].iov_base, sizeof(head));
  auto init = init_unique.load(std::memory_order_relaxed);
  if (init != 0 && head.unique == init) {
    init_unique = 0;
    return write_init_reply(fd, iov, count);
  }
  // A reply to a request that came through a ring goes back through it (notifications,
  // unique 0, always go to /dev/fuse).
  if (head.unique != 0 && kernel_ring::active())
    if (auto written = kernel_ring::reply(head.unique, iov, count))
      return *written;
  return ::writev(fd, iov, count);
}

/// Replies that carry file data still go by splice (libfuse uses none without this).
ssize_t hook_splice_send(int fdin, off_t* offin, int fdout, off_t* offout, size_t len,
                         unsigned int flags, void*) {
  return splice(fdin, offin, fdout, offout, len, flags);
}

} // namespace

bool install(fuse_session* se, bool ring) {
  // No splice_receive: requests must arrive in memory to be looked at (the drive does not ask
  // for FUSE_CAP_SPLICE_READ).
  static const fuse_custom_io io = {hook_writev, hook_read, nullptr, hook_splice_send};
  session = se;
  int rc = fuse_session_custom_io(se, &io, fuse_session_fd(se));
  if (rc != 0) {
    spdlog::warn("the drive's own /dev/fuse I/O is off ({}): one GETXATTR round trip per write",
                 std::strerror(-rc));
    return false;
  }
  if (ring)
    kernel_ring::prepare(se);
  return true;
}

void note_request(const char* buf, size_t n) {
  inspect(buf, n);
}

bool allow_ring() {
  return kernel_ring::module_allows();
}

bool ring_planned() {
  return ring_offered.load() && kernel_ring::prepared();
}

uint64_t ring_requests() {
  return kernel_ring::served();
}

void finish() {
  kernel_ring::stop();
}

bool killpriv_v2() {
  return negotiated.load(std::memory_order_relaxed);
}

bool kill_suidgid() {
  return kill_current;
}

namespace {

/// Whether the caller of `req` is a member of group `gid` (primary or supplementary).
bool in_group(fuse_req_t req, gid_t gid) {
  if (fuse_req_ctx(req)->gid == gid) return true;
  gid_t groups[64];
  int n = fuse_req_getgroups(req, 64, groups);
  for (int i = 0; i < n && i < 64; ++i)
    if (groups[i] == gid) return true;
  return false;
}

} // namespace

bool drop_suidgid(fuse_req_t req, fuse_ino_t ino, const char* path) {
  struct stat st {};
  if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return false;
  mode_t mode = st.st_mode & 07777;
  mode_t keep = mode & ~S_ISUID;
  // As the kernel's setattr_should_drop_sgid: S_ISGID without group-execute (mandatory locking
  // once) stays for members of the file's group.
  if ((mode & S_ISGID) && ((mode & S_IXGRP) || !in_group(req, st.st_gid))) keep &= ~S_ISGID;
  if (keep == mode || chmod(path, keep) != 0) return false;
  // The kernel still caches the old mode: have it ask again.
  if (auto* se = session.load()) fuse_lowlevel_notify_inval_inode(se, ino, -1, 0);
  return true;
}

void drop_sgid_after_chown(fuse_req_t req, fuse_ino_t ino, const char* path,
                           const struct stat& before) {
  if (!S_ISREG(before.st_mode) || fuse_req_ctx(req)->uid == 0) return;
  if ((before.st_mode & (S_ISGID | S_IXGRP)) != S_ISGID || in_group(req, before.st_gid)) return;
  struct stat now {};
  if (stat(path, &now) != 0 || !(now.st_mode & S_ISGID)) return;
  if (chmod(path, now.st_mode & 07777 & ~S_ISGID) == 0 && session.load())
    fuse_lowlevel_notify_inval_inode(session.load(), ino, -1, 0);
}

} // namespace litedrive::kernel_io
