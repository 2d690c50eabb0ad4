#include "actors/drive_io.hpp"

#include <atomic>
#include <cerrno>
#include <climits>
#include <condition_variable>
#include <cstdarg>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <random>
#include <string_view>
#include <unordered_map>

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "actors/lock_requests.hpp"

namespace litedrive::drive_io {

namespace {

// -- SQLite's system calls we replace (signatures as in os_unix.c's aSyscall[]) -----------------

using open_fn = int (*)(const char*, int, int);
using close_fn = int (*)(int);
using fcntl_fn = int (*)(int, int, ...);
using write_fn = ssize_t (*)(int, const void*, size_t);
using pwrite_fn = ssize_t (*)(int, const void*, size_t, off_t);
using ftruncate_fn = int (*)(int, off_t);
using fallocate_fn = int (*)(int, off_t, off_t);

struct originals {
  open_fn open = nullptr;
  close_fn close = nullptr;
  fcntl_fn fcntl = nullptr;
  write_fn write = nullptr;
  pwrite_fn pwrite = nullptr;
  pwrite_fn pwrite64 = nullptr;
  ftruncate_fn ftruncate = nullptr;
  fallocate_fn fallocate = nullptr;
};

originals real;
config cfg;

/// Where a file's lock calls go: its database's lock service, as this process's owner there.
struct lock_target {
  std::shared_ptr<lock_service> locks;
  std::string db_path;
  file_role role;
  uint64_t owner; ///< this process's lock owner for the database the file belongs to
  bool writable;  ///< opened for writing (the lock table serializes writers' transactions)
};

/// A file of the drive SQLite opened: the split way (SQLite holds the store's descriptor; this
/// is the rest), or a `-shm`, which stays on the mount (SQLite holds the mount's descriptor).
struct split_file {
  int mount_fd;
  dev_t dev; ///< the backing file's identity, which the drive knows its inode by
  ino_t ino;
  bool split; ///< SQLite's descriptor is the store's: writes need invalidating the mount
  std::shared_ptr<const lock_target> lock; ///< null: lock calls go through the mount
};

/// This process's POSIX lock owner in the drive's lock table, as the kernel's lock_owner is for
/// every other process: random, so that it never meets a kernel one. It is told apart per
/// database: each database is locked by its own SQLite thread here, so this process never waits
/// for one database while holding another, and one owner for all of them would make the
/// wait-for graph see a deadlock where there is none (a process holding A and waiting for B,
/// which litedrive holds, while litedrive waits for A: both finish if left alone).
uint64_t own_owner = 0;

/// The owner for the files of the database at `db_path`.
uint64_t owner_for(std::string_view db_path) {
  return own_owner ^ (std::hash<std::string_view>{}(db_path)*0x9E3779B97F4A7C15ull);
}

std::mutex files_mtx; ///< guards `files`; a leaf lock
std::unordered_map<int, split_file> files;

std::atomic<uint64_t> n_files{0};
std::atomic<uint64_t> n_writes{0};
std::atomic<uint64_t> n_invalidations{0};
std::atomic<uint64_t> n_lock_calls{0};
std::atomic<uint64_t> n_lock_waits{0};

/// The lock target of a file whose canonical backing path is `path`.
std::shared_ptr<const lock_target> target_for(const std::string& path, bool writable) {
  if (!cfg.locks || path.empty()) return nullptr;
  auto id = lock_requests::identify(path);
  auto t = std::make_shared<lock_target>();
  t->locks = cfg.locks->get(id.db_path);
  t->db_path = id.db_path;
  t->role = id.role;
  t->owner = owner_for(id.db_path);
  t->writable = writable;
  return t;
}

/// The answer to one lock call, which the SQLite thread waits for: set once, by whichever
/// thread decides (this one, or the one whose unlock granted it).
class own_lock_sink final : public lock_reply_sink {
public:
  ~own_lock_sink() override { reply(EAGAIN); } // unanswered: the service went away

  void reply(int err) override {
    std::lock_guard<std::mutex> guard{mtx_};
    if (done_) return;
    done_ = true;
    err_ = err;
    cv_.notify_all();
  }

  bool answered() {
    std::lock_guard<std::mutex> guard{mtx_};
    return done_;
  }

  int wait() {
    std::unique_lock<std::mutex> guard{mtx_};
    cv_.wait(guard, [this] { return done_; });
    return err_;
  }

private:
  std::mutex mtx_;
  std::condition_variable cv_;
  bool done_ = false;
  int err_ = 0;
};

/// F_SETLK, F_SETLKW or F_GETLK of this process on a drive file, decided by its database's lock
/// service; nullopt when the call is not of a form the service takes (not SEEK_SET).
std::optional<int> own_lock(const lock_target& t, int fd, int cmd, struct flock& fl) {
  lock_request r;
  if (!lock_requests::from_flock(fl, r)) return std::nullopt;
  r.id = cfg.locks->next_request_id();
  r.file = t.role;
  r.owner = t.owner;
  r.pid = static_cast<uint32_t>(getpid());
  r.writable = t.writable;
  r.sleep = cmd == F_SETLKW;
  lock_requests::describe(r, fd, t.db_path);
  n_lock_calls.fetch_add(1, std::memory_order_relaxed);
  if (cmd == F_GETLK) {
    if (r.kind == lock_kind::unlock) return EINVAL;
    lock_requests::to_flock(t.locks->getlk(r), fl);
    return 0;
  }
  if (auto answer = t.locks->try_setlk(r)) return *answer;
  auto sink = std::make_shared<own_lock_sink>();
  t.locks->setlk(r, sink);
  if (!sink->answered()) n_lock_waits.fetch_add(1, std::memory_order_relaxed);
  return sink->wait();
}

bool find(int fd, split_file& out) {
  std::lock_guard<std::mutex> guard{files_mtx};
  auto i = files.find(fd);
  if (i == files.end()) return false;
  out = i->second;
  return true;
}

/// The store path of `path` if it lies under the mount; `shm` says it is a `-shm` (which must
/// stay on the mount: its pages are the WAL index every process maps).
bool backing_path(const char* path, std::string& out, bool& shm) {
  std::string_view p{path};
  const auto& m = cfg.mount;
  if (p.size() <= m.size() + 1 || p.compare(0, m.size(), m) != 0 || p[m.size()] != '/')
    return false;
  static constexpr std::string_view suffix = "-shm";
  shm =
      p.size() >= suffix.size() && p.compare(p.size() - suffix.size(), suffix.size(), suffix) == 0;
  out = cfg.store;
  out.append(p.substr(m.size()));
  return true;
}

bool writable(int flags) {
  return (flags & O_ACCMODE) != O_RDONLY;
}

/// A `-shm` stays on the mount; its locks still skip the round trip through the kernel.
int open_shm(const char* path, const std::string& backing, int flags, int mode) {
  int fd = real.open(path, flags, mode);
  struct stat ms {
  }, bs{};
  char canonical[PATH_MAX];
  if (fd >= 0 && cfg.locks && fstat(fd, &ms) == 0 && ::stat(backing.c_str(), &bs) == 0
      && ms.st_ino == bs.st_ino && S_ISREG(bs.st_mode)
      && realpath(backing.c_str(), canonical) != nullptr) {
    // The store's path, as the drive names the file (our descriptor is the mount's).
    auto target = target_for(canonical, writable(flags));
    std::lock_guard<std::mutex> guard{files_mtx};
    files[fd] = split_file{fd, bs.st_dev, bs.st_ino, false, std::move(target)};
  }
  return fd;
}

void invalidate(const split_file& f, int64_t off, int64_t len, bool resized) {
  if (cfg.invalidate(f.dev, f.ino, off, len, resized))
    n_invalidations.fetch_add(1, std::memory_order_relaxed);
}

/// The size of the file behind `fd` (cheaper than fstat). Moves the file position, which only
/// positioned writes may afford: SQLite's pread/pwrite never use it.
off_t size_of(int fd) {
  return lseek(fd, 0, SEEK_END);
}

// -- the hooks ------------------------------------------------------------------------------------

int hook_open(const char* path, int flags, int mode) {
  std::string backing;
  bool shm = false;
  if (!backing_path(path, backing, shm)) return real.open(path, flags, mode);
  if (shm) return open_shm(path, backing, flags, mode);
  // Through the mount first: it creates (as the daemon, with the store's rules), truncates and
  // checks permissions, and the kernel learns the name.
  int mfd = real.open(path, flags | O_CLOEXEC, mode);
  if (mfd < 0) return mfd;
  int bfd = real.open(backing.c_str(), flags & ~(O_CREAT | O_EXCL | O_TRUNC), mode);
  struct stat ms {
  }, bs{};
  bool same = bfd >= 0 && fstat(mfd, &ms) == 0 && fstat(bfd, &bs) == 0 && ms.st_ino == bs.st_ino
              && S_ISREG(bs.st_mode);
  if (!same) {
    // Not the same file (renamed in between, a symlink leading out of the store) or not a
    // regular file: stay on the mount, which is always correct, only slower.
    if (bfd >= 0) real.close(bfd);
    return mfd;
  }
  auto target = target_for(lock_requests::path_of(bfd), writable(flags));
  {
    std::lock_guard<std::mutex> guard{files_mtx};
    files[bfd] = split_file{mfd, bs.st_dev, bs.st_ino, true, std::move(target)};
  }
  n_files.fetch_add(1, std::memory_order_relaxed);
  return bfd;
}

int hook_close(int fd) {
  std::optional<split_file> f;
  {
    std::lock_guard<std::mutex> guard{files_mtx};
    auto i = files.find(fd);
    if (i != files.end()) {
      f = i->second;
      files.erase(i);
    }
  }
  // Any close drops this process's POSIX locks on the file (SQLite relies on it, and avoids it
  // while another of its connections holds locks there). Taken in the service directly, they go
  // there directly; the mount's FLUSH drops whatever went through the kernel.
  if (f && f->lock) f->lock->locks->flush(f->lock->owner, f->lock->role);
  int rc = real.close(fd);
  if (f && f->split) {
    int saved = errno;
    real.close(f->mount_fd);
    errno = saved;
  }
  return rc;
}

int hook_fcntl(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  bool lock_call = cmd == F_SETLK || cmd == F_SETLKW || cmd == F_GETLK || cmd == F_OFD_SETLK
                   || cmd == F_OFD_SETLKW || cmd == F_OFD_GETLK;
  if (lock_call) {
    split_file f;
    if (find(fd, f)) {
      // Every process's locks meet in one table: this process's reach it without the kernel.
      if ((cmd == F_SETLK || cmd == F_SETLKW || cmd == F_GETLK) && f.lock) {
        auto* fl = static_cast<struct flock*>(arg);
        if (auto err = own_lock(*f.lock, fd, cmd, *fl)) {
          if (*err == 0) return 0;
          errno = *err;
          return -1;
        }
      }
      return real.fcntl(f.mount_fd, cmd, arg);
    }
  }
  return real.fcntl(fd, cmd, arg);
}

/// A write through `fd` of `n` bytes at `off` (off < 0: at the file position) by `write`: if
/// `fd` is a split file, what the mount caches of that range (and its size, if the write grew
/// the file) is dropped before the write returns to SQLite.
template <class Write> ssize_t write_through(int fd, off_t off, Write&& write) {
  split_file f;
  if (!find(fd, f) || !f.split) return write();
  off_t before = off < 0 ? -1 : size_of(fd);
  auto rc = write();
  if (rc > 0) {
    int saved = errno;
    n_writes.fetch_add(1, std::memory_order_relaxed);
    if (off < 0)
      invalidate(f, 0, 0, true); // position unknown: the whole file
    else
      invalidate(f, off, rc, before < 0 || off + rc > before);
    errno = saved;
  }
  return rc;
}

ssize_t hook_pwrite(int fd, const void* buf, size_t n, off_t off) {
  return write_through(fd, off, [&] { return real.pwrite(fd, buf, n, off); });
}

ssize_t hook_pwrite64(int fd, const void* buf, size_t n, off_t off) {
  return write_through(fd, off, [&] { return real.pwrite64(fd, buf, n, off); });
}

ssize_t hook_write(int fd, const void* buf, size_t n) {
  return write_through(fd, -1, [&] { return real.write(fd, buf, n); });
}

int hook_ftruncate(int fd, off_t size) {
  int rc = real.ftruncate(fd, size);
  split_file f;
  if (rc == 0 && find(fd, f) && f.split) {
    int saved = errno;
    invalidate(f, size, 0, true);
    errno = saved;
  }
  return rc;
}

int hook_fallocate(int fd, off_t off, off_t len) {
  int rc = real.fallocate(fd, off, len);
  split_file f;
  if (rc == 0 && find(fd, f) && f.split) invalidate(f, -1, 0, true); // attributes only
  return rc;
}

template <class Fn> bool replace(sqlite3_vfs* vfs, const char* name, Fn hook, Fn& original) {
  auto current = vfs->xGetSystemCall(vfs, name);
  if (current == nullptr) return false;
  original = reinterpret_cast<Fn>(current);
  return vfs->xSetSystemCall(vfs, name, reinterpret_cast<sqlite3_syscall_ptr>(hook)) == SQLITE_OK;
}

} // namespace

bool install(config c) {
  auto* vfs = sqlite3_vfs_find("unix");
  if (vfs == nullptr || vfs->iVersion < 3 || vfs->xSetSystemCall == nullptr) {
    spdlog::warn("drive_io: SQLite has no unix VFS with a system-call table; litedrive's own "
                 "connections stay on the mount");
    return false;
  }
  cfg = std::move(c);
  std::random_device rd;
  own_owner = (uint64_t{rd()} << 32) | rd();
  // The ones SQLite must have; pwrite64, write and fallocate depend on how it was built.
  bool ok = replace(vfs, "open", &hook_open, real.open)
            && replace(vfs, "close", &hook_close, real.close)
            && replace(vfs, "fcntl", &hook_fcntl, real.fcntl)
            && replace(vfs, "ftruncate", &hook_ftruncate, real.ftruncate);
  bool pwrite = replace(vfs, "pwrite", &hook_pwrite, real.pwrite);
  bool pwrite64 = replace(vfs, "pwrite64", &hook_pwrite64, real.pwrite64);
  replace(vfs, "write", &hook_write, real.write);
  replace(vfs, "fallocate", &hook_fallocate, real.fallocate);
  if (!ok || !(pwrite || pwrite64)) {
    vfs->xSetSystemCall(vfs, nullptr, nullptr); // back to SQLite's defaults
    spdlog::warn("drive_io: cannot hook SQLite's system calls; own connections stay on the mount");
    return false;
  }
  spdlog::info("drive_io: litedrive's own SQLite connections write straight to the store; "
               "locks and names go through the mount");
  return true;
}

counters stats() {
  counters c;
  c.files = n_files.load(std::memory_order_relaxed);
  c.writes = n_writes.load(std::memory_order_relaxed);
  c.invalidations = n_invalidations.load(std::memory_order_relaxed);
  c.lock_calls = n_lock_calls.load(std::memory_order_relaxed);
  c.lock_waits = n_lock_waits.load(std::memory_order_relaxed);
  return c;
}

} // namespace litedrive::drive_io
