// The litedrive FUSE file system: a passthrough of the store, modelled on libfuse's
// passthrough_ll/passthrough_hp (one do_<op> per kernel operation, filled into the ops table by
// assign_operations(), errno saved right after each syscall, exactly one reply per request).
//
// Caching: entries and attributes are cached by the kernel for `attr_timeout`, negative entries
// too, and file data stays in the page cache across opens (keep_cache) because nothing but this
// daemon changes the store while it runs. Never direct_io (mmap of -shm needs the page cache);
// a file opened O_DIRECT gets direct_io for that handle only.
//
// Credentials: the kernel checks permissions (default_permissions); operations that create an
// inode run with the caller's fsuid/fsgid/groups so that files belong to the calling user.
//
// Locks: getlk/setlk/flush/release go to the file's lock service (lock_bridge.cpp); inodes and
// handles live in the inode table (inode_table.cpp).
//
// Index: 1. credentials  2. operations, in the kernel's order

#include "fuse_bridge/drive_impl.hpp"
#include "fuse_bridge/kernel_io.hpp"
#include "fuse_bridge/lock_bridge.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/file.h>
#include <sys/fsuid.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

namespace litedrive {

namespace {

/// Looks `name` up below `parent` and counts one kernel reference on its inode.
int do_lookup(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_entry_param* e) {
  auto& st = state(req);
  return st.inodes.lookup(inode_fd(req, parent), name, st.timeout, e);
}

void forget_one(drive::impl& st, fuse_ino_t ino, uint64_t n) {
  if (ino != FUSE_ROOT_ID) st.inodes.forget(reinterpret_cast<inode*>(ino), n);
}

// == 1. credentials ===============================================================================

/// While alive, file-system calls of this thread run as the request's caller: fsuid, fsgid and
/// supplementary groups (all per thread: raw syscalls, not glibc's process-wide wrappers).
class as_caller {
public:
  explicit as_caller(fuse_req_t req) {
    const auto* ctx = fuse_req_ctx(req);
    gid_t groups[64];
    int n = fuse_req_getgroups(req, 64, groups);
    if (n > 64) n = 64;
    if (n >= 0) syscall(SYS_setgroups, static_cast<size_t>(n), groups);
    syscall(SYS_setfsgid, ctx->gid);
    syscall(SYS_setfsuid, ctx->uid);
  }
  ~as_caller() {
    syscall(SYS_setfsuid, 0);
    syscall(SYS_setfsgid, 0);
    syscall(SYS_setgroups, size_t{0}, nullptr);
  }
  as_caller(const as_caller&) = delete;
  as_caller& operator=(const as_caller&) = delete;
};

// == 2. operations, in the kernel's order =========================================================

void do_init(void* userdata, fuse_conn_info* conn) {
  auto& st = *static_cast<drive::impl*>(userdata);
  if (conn->capable & FUSE_CAP_POSIX_LOCKS) conn->want |= FUSE_CAP_POSIX_LOCKS;
  conn->want &= ~FUSE_CAP_FLOCK_LOCKS; // flock() stays kernel-local, which is correct on one host
  conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA; // nobody else writes the store: keep the page cache
  if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
  conn->want &= ~FUSE_CAP_SPLICE_READ; // kernel_io looks at every request in memory
  if (kernel_io::ring_planned())       // a ring's replies go to memory, never to a pipe
    conn->want &= ~(FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
  if (st.cfg.drive_writeback_cache && (conn->capable & FUSE_CAP_WRITEBACK_CACHE))
    conn->want |= FUSE_CAP_WRITEBACK_CACHE;
  else
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
}

void do_lookup_op(fuse_req_t req, fuse_ino_t parent, const char* name) {
  state(req).ops[op_lookup].fetch_add(1, std::memory_order_relaxed);
  fuse_entry_param e;
  int err = do_lookup(req, parent, name, &e);
  if (err == ENOENT) {
    std::memset(&e, 0, sizeof(e));
    e.ino = 0; // negative entry, cached like a positive one
    e.entry_timeout = state(req).timeout;
    fuse_reply_entry(req, &e);
  } else if (err) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_entry(req, &e);
  }
}

void do_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  state(req).ops[op_other].fetch_add(1, std::memory_order_relaxed);
  forget_one(state(req), ino, nlookup);
  fuse_reply_none(req);
}

void do_forget_multi(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  for (size_t i = 0; i < count; ++i)
    forget_one(state(req), forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

void do_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  state(req).ops[op_getattr].fetch_add(1, std::memory_order_relaxed);
  struct stat buf;
  int res = fi ? fstat(get_handle(fi).fd, &buf)
               : fstatat(inode_fd(req, ino), "", &buf, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
  if (res == -1) return (void)fuse_reply_err(req, errno);
  fuse_reply_attr(req, &buf, state(req).timeout);
}

void do_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int valid, fuse_file_info* fi) {
  state(req).ops[op_setattr].fetch_add(1, std::memory_order_relaxed);
  int ifd = inode_fd(req, ino);
  auto procname = proc_path(ifd);
  int res = 0;
  if (valid & FUSE_SET_ATTR_MODE) {
    res = fi ? fchmod(get_handle(fi).fd, attr->st_mode) : chmod(procname.c_str(), attr->st_mode);
    if (res == -1) return (void)fuse_reply_err(req, errno);
  }
  if (valid & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
    uid_t uid = (valid & FUSE_SET_ATTR_UID) ? attr->st_uid : static_cast<uid_t>(-1);
    gid_t gid = (valid & FUSE_SET_ATTR_GID) ? attr->st_gid : static_cast<gid_t>(-1);
    struct stat before {};
    bool known = fstatat(ifd, "", &before, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0;
    res = fchownat(ifd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
    if (res == -1) return (void)fuse_reply_err(req, errno);
    // Done as root, the chown keeps an S_ISGID without group-execute that the caller's own
    // chown would have dropped (the kernel leaves it to us with FUSE_HANDLE_KILLPRIV_V2).
    if (known && kernel_io::killpriv_v2())
      kernel_io::drop_sgid_after_chown(req, ino, procname.c_str(), before);
  }
  if (valid & FUSE_SET_ATTR_SIZE) {
    res = fi ? ftruncate(get_handle(fi).fd, attr->st_size)
             : truncate(procname.c_str(), attr->st_size);
    if (res == -1) return (void)fuse_reply_err(req, errno);
    if (kernel_io::kill_suidgid()) kernel_io::drop_suidgid(req, ino, procname.c_str());
  }
  if (valid & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
    struct timespec tv[2];
    tv[0].tv_sec = tv[1].tv_sec = 0;
    tv[0].tv_nsec = tv[1].tv_nsec = UTIME_OMIT;
    if (valid & FUSE_SET_ATTR_ATIME_NOW)
      tv[0].tv_nsec = UTIME_NOW;
    else if (valid & FUSE_SET_ATTR_ATIME)
      tv[0] = attr->st_atim;
    if (valid & FUSE_SET_ATTR_MTIME_NOW)
      tv[1].tv_nsec = UTIME_NOW;
    else if (valid & FUSE_SET_ATTR_MTIME)
      tv[1] = attr->st_mtim;
    res = fi ? futimens(get_handle(fi).fd, tv) : utimensat(AT_FDCWD, procname.c_str(), tv, 0);
    if (res == -1) return (void)fuse_reply_err(req, errno);
  }
  do_getattr(req, ino, fi);
}

void do_readlink(fuse_req_t req, fuse_ino_t ino) {
  state(req).ops[op_other].fetch_add(1, std::memory_order_relaxed);
  char buf[PATH_MAX + 1];
  auto n = readlinkat(inode_fd(req, ino), "", buf, sizeof(buf));
  if (n == -1) return (void)fuse_reply_err(req, errno);
  if (n == static_cast<ssize_t>(sizeof(buf))) return (void)fuse_reply_err(req, ENAMETOOLONG);
  buf[n] = '\0';
  fuse_reply_readlink(req, buf);
}

/// mknod, mkdir and symlink: create as the caller, then look the new inode up.
void make_node(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev,
               const char* link) {
  int dirfd = inode_fd(req, parent);
  int res;
  int err = 0;
  {
    as_caller who{req};
    if (S_ISDIR(mode))
      res = mkdirat(dirfd, name, mode & ~S_IFMT);
    else if (S_ISLNK(mode))
      res = symlinkat(link, dirfd, name);
    else
      res = mknodat(dirfd, name, mode, rdev);
    if (res == -1) err = errno;
  }
  if (err) return (void)fuse_reply_err(req, err);
  fuse_entry_param e;
  err = do_lookup(req, parent, name, &e);
  if (err) return (void)fuse_reply_err(req, err);
  fuse_reply_entry(req, &e);
}

void do_mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  make_node(req, parent, name, mode, rdev, nullptr);
}

void do_mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  make_node(req, parent, name, S_IFDIR | mode, 0, nullptr);
}

void do_unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  state(req).ops[op_unlink].fetch_add(1, std::memory_order_relaxed);
  int res = unlinkat(inode_fd(req, parent), name, 0);
  fuse_reply_err(req, res == -1 ? errno : 0);
}

void do_rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  state(req).ops[op_other].fetch_add(1, std::memory_order_relaxed);
  int res = unlinkat(inode_fd(req, parent), name, AT_REMOVEDIR);
  fuse_reply_err(req, res == -1 ? errno : 0);
}

void do_symlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
  make_node(req, parent, name, S_IFLNK, 0, link);
}

void do_rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
               const char* newname, unsigned int flags) {
  // RENAME_NOREPLACE, RENAME_EXCHANGE and RENAME_WHITEOUT pass straight through.
  long res =
      syscall(SYS_renameat2, inode_fd(req, parent), name, inode_fd(req, newparent), newname, flags);
  fuse_reply_err(req, res == -1 ? errno : 0);
}

void do_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
  auto& st = state(req);
  auto& node = get_inode(req, ino);
  int err = 0;
  {
    as_caller who{req};
    if (linkat(node.fd, "", inode_fd(req, newparent), newname, AT_EMPTY_PATH) == -1) err = errno;
  }
  if (err == ENOENT || err == EPERM || err == EACCES) {
    // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH, which a non-root fsuid drops: retry through
    // /proc as root (the kernel already checked the caller's permissions).
    err = 0;
    if (linkat(AT_FDCWD, proc_path(node.fd).c_str(), inode_fd(req, newparent), newname,
               AT_SYMLINK_FOLLOW)
        == -1)
      err = errno;
  }
  if (err) return (void)fuse_reply_err(req, err);
  fuse_entry_param e;
  std::memset(&e, 0, sizeof(e));
  e.attr_timeout = st.timeout;
  e.entry_timeout = st.timeout;
  if (fstatat(node.fd, "", &e.attr, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == -1)
    return (void)fuse_reply_err(req, errno);
  st.inodes.count(node);
  e.ino = reinterpret_cast<fuse_ino_t>(&node);
  fuse_reply_entry(req, &e);
}

/// Flags of our backing descriptor for an open or create: no O_NOFOLLOW (we open through
/// /proc), no O_DIRECT (alignment is the caller's business with its own buffers, not ours: the
/// handle gets direct_io instead, so the page cache is bypassed as the caller asked).
int backing_flags(int flags) {
  return (flags & ~(O_NOFOLLOW | O_DIRECT | O_CREAT | O_EXCL | O_NOCTTY)) | O_CLOEXEC;
}

/// The file offset alignment the backing file system requires of O_DIRECT on `fd`
/// (statx STATX_DIOALIGN, Linux 6.1), 0 if it does not say.
uint32_t dio_offset_align(int fd) {
  struct statx sx {};
  if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) != 0 || !(sx.stx_mask & STATX_DIOALIGN))
    return 0;
  return sx.stx_dio_offset_align;
}

/// Direct I/O at an offset or of a size the backing file system cannot do directly: EINVAL,
/// like the same call on the backing file (the caller's buffer alignment never reaches us).
bool misaligned(const file_handle& h, off_t off, size_t size) {
  return h.dio_align > 1
         && ((static_cast<uint64_t>(off) | size) & (uint64_t{h.dio_align} - 1)) != 0;
}

void fill_open_reply(drive::impl& st, fuse_file_info* fi, int fd, inode* node) {
  auto* h = st.inodes.open_handle(fd, fi->flags, node);
  fi->fh = reinterpret_cast<uint64_t>(h);
  if (fi->flags & O_DIRECT) {
    fi->direct_io = 1;
    h->dio_align = dio_offset_align(fd);
  } else {
    fi->keep_cache = 1;
  }
}

void do_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  state(req).ops[op_open].fetch_add(1, std::memory_order_relaxed);
  auto& st = state(req);
  int flags = backing_flags(fi->flags);
  if (st.cfg.drive_writeback_cache && (flags & O_ACCMODE) == O_WRONLY)
    flags = (flags & ~O_ACCMODE) | O_RDWR; // the kernel may read to fill partial pages
  int fd = open(proc_path(inode_fd(req, ino)).c_str(), flags);
  if (fd == -1) return (void)fuse_reply_err(req, errno);
  if ((flags & O_TRUNC) && kernel_io::kill_suidgid())
    kernel_io::drop_suidgid(req, ino, proc_path(fd).c_str());
  fill_open_reply(st, fi, fd, &get_inode(req, ino));
  fuse_reply_open(req, fi);
}

void do_read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  state(req).ops[op_read].fetch_add(1, std::memory_order_relaxed);
  if (misaligned(get_handle(fi), off, size)) return (void)fuse_reply_err(req, EINVAL);
  get_handle(fi).node->pages_cached.store(true);
  fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
  buf.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  buf.buf[0].fd = get_handle(fi).fd;
  buf.buf[0].pos = off;
  fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

void do_write_buf(fuse_req_t req, fuse_ino_t ino, fuse_bufvec* in_buf, off_t off,
                  fuse_file_info* fi) {
  state(req).ops[op_write].fetch_add(1, std::memory_order_relaxed);
  if (misaligned(get_handle(fi), off, fuse_buf_size(in_buf)))
    return (void)fuse_reply_err(req, EINVAL);
  get_handle(fi).node->pages_cached.store(true);
  fuse_bufvec out = FUSE_BUFVEC_INIT(fuse_buf_size(in_buf));
  out.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  out.buf[0].fd = get_handle(fi).fd;
  out.buf[0].pos = off;
  ssize_t res = fuse_buf_copy(&out, in_buf, static_cast<fuse_buf_copy_flags>(0));
  if (res > 0 && kernel_io::kill_suidgid())
    kernel_io::drop_suidgid(req, ino, proc_path(get_handle(fi).fd).c_str());
  if (res < 0)
    fuse_reply_err(req, static_cast<int>(-res));
  else
    fuse_reply_write(req, static_cast<size_t>(res));
}

void do_flush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  state(req).count(op_flush);
  // close() of a dup reports delayed write errors of the backing file system, like close would.
  int res = close(dup(get_handle(fi).fd));
  int err = res == -1 ? errno : 0;
  // POSIX: any close by a process drops all its locks on the file. Answer when they are gone.
  lock_bridge::flush(get_inode(req, ino), static_cast<uint64_t>(fi->lock_owner));
  fuse_reply_err(req, err);
}

void do_release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  state(req).count(op_release);
  auto* h = &get_handle(fi);
  lock_bridge::release(get_inode(req, ino), *h);
  inode_table::close_handle(h);
  fuse_reply_err(req, 0);
}

void do_fsync(fuse_req_t req, fuse_ino_t, int datasync, fuse_file_info* fi) {
  state(req).ops[op_fsync].fetch_add(1, std::memory_order_relaxed);
  int fd = get_handle(fi).fd;
  int res = datasync ? fdatasync(fd) : fsync(fd);
  fuse_reply_err(req, res == -1 ? errno : 0);
}

void do_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  state(req).ops[op_other].fetch_add(1, std::memory_order_relaxed);
  int fd = openat(inode_fd(req, ino), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd == -1) return (void)fuse_reply_err(req, errno);
  auto* d = new dir_handle;
  d->dp = fdopendir(fd);
  if (d->dp == nullptr) {
    int err = errno;
    close(fd);
    delete d;
    return (void)fuse_reply_err(req, err);
  }
  fi->fh = reinterpret_cast<uint64_t>(d);
  fuse_reply_open(req, fi);
}

bool is_dot_or_dotdot(const char* name) {
  return name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}

void read_dir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, fuse_file_info* fi,
              bool plus) {
  auto* d = reinterpret_cast<dir_handle*>(fi->fh);
  std::vector<char> buf(size);
  char* p = buf.data();
  size_t rem = size;
  int err = 0;
  // The answer is built under the handle's lock and sent after it is released: once the kernel
  // has the reply, the application may close the directory and RELEASEDIR may free `d` on
  // another thread, so nothing may touch `d` after fuse_reply_*.
  std::unique_lock<std::mutex> guard{d->mtx};
  if (offset != d->offset) {
    seekdir(d->dp, offset);
    d->entry = nullptr;
    d->offset = offset;
  }
  for (;;) {
    if (d->entry == nullptr) {
      errno = 0;
      d->entry = readdir(d->dp);
      if (d->entry == nullptr) {
        err = errno;
        break;
      }
    }
    off_t next = d->entry->d_off;
    const char* name = d->entry->d_name;
    size_t used;
    fuse_ino_t counted = 0;
    if (plus) {
      fuse_entry_param e;
      if (is_dot_or_dotdot(name)) {
        std::memset(&e, 0, sizeof(e));
        e.attr.st_ino = d->entry->d_ino;
        e.attr.st_mode = static_cast<mode_t>(d->entry->d_type) << 12;
      } else {
        err = do_lookup(req, ino, name, &e);
        if (err == ENOENT) { // vanished between readdir and lookup
          err = 0;
          d->entry = nullptr;
          d->offset = next;
          continue;
        }
        if (err) break;
        counted = e.ino;
      }
      used = fuse_add_direntry_plus(req, p, rem, name, &e, next);
    } else {
      struct stat st {};
      st.st_ino = d->entry->d_ino;
      st.st_mode = static_cast<mode_t>(d->entry->d_type) << 12;
      used = fuse_add_direntry(req, p, rem, name, &st, next);
    }
    if (used > rem) {
      if (counted != 0) forget_one(state(req), counted, 1);
      break;
    }
    p += used;
    rem -= used;
    d->entry = nullptr;
    d->offset = next;
  }
  guard.unlock();
  // An error after some entries were stored cannot be reported without breaking the lookup
  // counts of those entries: answer what we have.
  if (err && rem == size)
    fuse_reply_err(req, err);
  else
    fuse_reply_buf(req, buf.data(), size - rem);
}

void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  read_dir(req, ino, size, off, fi, false);
}

void do_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  read_dir(req, ino, size, off, fi, true);
}

void do_releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  auto* d = reinterpret_cast<dir_handle*>(fi->fh);
  closedir(d->dp);
  delete d;
  fuse_reply_err(req, 0);
}

void do_fsyncdir(fuse_req_t req, fuse_ino_t, int datasync, fuse_file_info* fi) {
  state(req).ops[op_other].fetch_add(1, std::memory_order_relaxed);
  int fd = dirfd(reinterpret_cast<dir_handle*>(fi->fh)->dp);
  int res = datasync ? fdatasync(fd) : fsync(fd);
  fuse_reply_err(req, res == -1 ? errno : 0);
}

void do_statfs(fuse_req_t req, fuse_ino_t ino) {
  state(req).ops[op_other].fetch_add(1, std::memory_order_relaxed);
  struct statvfs buf;
  if (fstatvfs(inode_fd(req, ino), &buf) == -1) return (void)fuse_reply_err(req, errno);
  fuse_reply_statfs(req, &buf);
}

void do_setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                 int flags) {
  int res = setxattr(proc_path(inode_fd(req, ino)).c_str(), name, value, size, flags);
  fuse_reply_err(req, res == -1 ? errno : 0);
}

void do_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  state(req).ops[op_getxattr].fetch_add(1, std::memory_order_relaxed);
  auto path = proc_path(inode_fd(req, ino));
  if (size == 0) {
    auto n = getxattr(path.c_str(), name, nullptr, 0);
    if (n == -1) return (void)fuse_reply_err(req, errno);
    return (void)fuse_reply_xattr(req, static_cast<size_t>(n));
  }
  std::vector<char> buf(size);
  auto n = getxattr(path.c_str(), name, buf.data(), size);
  if (n == -1) return (void)fuse_reply_err(req, errno);
  fuse_reply_buf(req, buf.data(), static_cast<size_t>(n));
}

void do_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  auto path = proc_path(inode_fd(req, ino));
  if (size == 0) {
    auto n = listxattr(path.c_str(), nullptr, 0);
    if (n == -1) return (void)fuse_reply_err(req, errno);
    return (void)fuse_reply_xattr(req, static_cast<size_t>(n));
  }
  std::vector<char> buf(size);
  auto n = listxattr(path.c_str(), buf.data(), size);
  if (n == -1) return (void)fuse_reply_err(req, errno);
  fuse_reply_buf(req, buf.data(), static_cast<size_t>(n));
}

void do_removexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  int res = removexattr(proc_path(inode_fd(req, ino)).c_str(), name);
  fuse_reply_err(req, res == -1 ? errno : 0);
}

void do_create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
               fuse_file_info* fi) {
  auto& st = state(req);
  st.ops[op_create].fetch_add(1, std::memory_order_relaxed);
  int flags = backing_flags(fi->flags) | O_CREAT;
  if (fi->flags & O_EXCL) flags |= O_EXCL;
  if (st.cfg.drive_writeback_cache && (flags & O_ACCMODE) == O_WRONLY)
    flags = (flags & ~O_ACCMODE) | O_RDWR;
  int fd;
  int err = 0;
  {
    as_caller who{req};
    fd = openat(inode_fd(req, parent), name, flags | O_NOFOLLOW, mode);
    if (fd == -1) err = errno;
  }
  if (err) return (void)fuse_reply_err(req, err);
  fuse_entry_param e;
  err = do_lookup(req, parent, name, &e);
  if (err) {
    close(fd);
    return (void)fuse_reply_err(req, err);
  }
  fill_open_reply(st, fi, fd, reinterpret_cast<inode*>(e.ino));
  fuse_reply_create(req, &e, fi);
}

void do_getlk(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, struct flock* fl) {
  lock_bridge::getlk(req, ino, fi, fl);
}

void do_setlk(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, struct flock* fl, int sleep) {
  lock_bridge::setlk(req, ino, fi, fl, sleep);
}

void do_fallocate(fuse_req_t req, fuse_ino_t, int mode, off_t offset, off_t length,
                  fuse_file_info* fi) {
  int res = fallocate(get_handle(fi).fd, mode, offset, length);
  fuse_reply_err(req, res == -1 ? errno : 0);
}

void do_copy_file_range(fuse_req_t req, fuse_ino_t, off_t off_in, fuse_file_info* fi_in, fuse_ino_t,
                        off_t off_out, fuse_file_info* fi_out, size_t len, int flags) {
  auto res = copy_file_range(get_handle(fi_in).fd, &off_in, get_handle(fi_out).fd, &off_out, len,
                             static_cast<unsigned>(flags));
  if (res < 0) return (void)fuse_reply_err(req, errno);
  fuse_reply_write(req, static_cast<size_t>(res));
}

void do_lseek(fuse_req_t req, fuse_ino_t, off_t off, int whence, fuse_file_info* fi) {
  auto res = lseek(get_handle(fi).fd, off, whence);
  if (res == -1) return (void)fuse_reply_err(req, errno);
  fuse_reply_lseek(req, res);
}

} // namespace

fuse_lowlevel_ops assign_operations() {
  fuse_lowlevel_ops ops;
  std::memset(&ops, 0, sizeof(ops));
  ops.init = do_init;
  ops.lookup = do_lookup_op;
  ops.forget = do_forget;
  ops.forget_multi = do_forget_multi;
  ops.getattr = do_getattr;
  ops.setattr = do_setattr;
  ops.readlink = do_readlink;
  ops.mknod = do_mknod;
  ops.mkdir = do_mkdir;
  ops.unlink = do_unlink;
  ops.rmdir = do_rmdir;
  ops.symlink = do_symlink;
  ops.rename = do_rename;
  ops.link = do_link;
  ops.open = do_open;
  ops.read = do_read;
  ops.write_buf = do_write_buf;
  ops.flush = do_flush;
  ops.release = do_release;
  ops.fsync = do_fsync;
  ops.opendir = do_opendir;
  ops.readdir = do_readdir;
  ops.readdirplus = do_readdirplus;
  ops.releasedir = do_releasedir;
  ops.fsyncdir = do_fsyncdir;
  ops.statfs = do_statfs;
  ops.setxattr = do_setxattr;
  ops.getxattr = do_getxattr;
  ops.listxattr = do_listxattr;
  ops.removexattr = do_removexattr;
  ops.create = do_create;
  ops.getlk = do_getlk;
  ops.setlk = do_setlk;
  ops.fallocate = do_fallocate;
  ops.copy_file_range = do_copy_file_range;
  ops.lseek = do_lseek;
  return ops;
}

} // namespace litedrive
