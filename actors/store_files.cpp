#include "actors/store_files.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <string_view>

#include <spdlog/spdlog.h>

namespace litedrive::store_files {

namespace {

using open_fn = int (*)(const char*, int, int);

open_fn real_open = nullptr;
std::string store_root;
std::string mount_root;
int store_fd = -1;
std::atomic<int> mount_fd{-1};

/// `path` relative to `root` if it lies strictly below it.
bool below(std::string_view path, const std::string& root, std::string_view& rel) {
  if (root.empty() || path.size() <= root.size() + 1 || path.compare(0, root.size(), root) != 0
      || path[root.size()] != '/')
    return false;
  rel = path.substr(root.size() + 1);
  return true;
}

int openat_beneath(int dirfd, const std::string& rel, int flags, mode_t mode) {
  struct open_how how {};
  how.flags = static_cast<uint64_t>(flags) | O_CLOEXEC;
  how.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  for (;;) {
    long fd = syscall(SYS_openat2, dirfd, rel.c_str(), &how, sizeof(how));
    if (fd >= 0 || errno != EAGAIN) return static_cast<int>(fd);
    // EAGAIN: a rename raced the lookup; the kernel asks to try again.
  }
}

int hook_open(const char* path, int flags, int mode) {
  return open_confined(path, flags, static_cast<mode_t>(mode));
}

} // namespace

int open_confined(const char* path, int flags, mode_t mode) {
  std::string_view rel;
  if (below(path, store_root, rel)) return openat_beneath(store_fd, std::string{rel}, flags, mode);
  if (below(path, mount_root, rel)) {
    int root = mount_fd.load(std::memory_order_acquire);
    if (root < 0) {
      errno = ENOENT; // the drive is not mounted yet
      return -1;
    }
    return openat_beneath(root, std::string{rel}, flags, mode);
  }
  return real_open ? real_open(path, flags, static_cast<int>(mode)) : ::open(path, flags, mode);
}

bool install(const std::string& store, const std::string& mount) {
  store_root = store;
  mount_root = mount;
  store_fd = ::open(store.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (store_fd < 0) {
    spdlog::error("store_files: cannot open the store {}: {}", store, strerror(errno));
    return false;
  }
  auto* vfs = sqlite3_vfs_find("unix");
  if (vfs == nullptr || vfs->iVersion < 3 || vfs->xSetSystemCall == nullptr) return false;
  real_open = reinterpret_cast<open_fn>(vfs->xGetSystemCall(vfs, "open"));
  if (real_open == nullptr
      || vfs->xSetSystemCall(vfs, "open", reinterpret_cast<sqlite3_syscall_ptr>(&hook_open))
             != SQLITE_OK) {
    spdlog::error("store_files: cannot hook SQLite's open()");
    return false;
  }
  return true;
}

void mount_ready() {
  if (mount_root.empty()) return;
  int fd = ::open(mount_root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    spdlog::error("store_files: cannot open the mount {}: {}", mount_root, strerror(errno));
  mount_fd.store(fd, std::memory_order_release);
}

void mount_gone() {
  int fd = mount_fd.exchange(-1, std::memory_order_acq_rel);
  if (fd >= 0) close(fd);
}

int make_parents(const std::string& store, const std::string& path) {
  std::string_view rel;
  if (!below(path, store, rel)) return EXDEV;
  int dir = ::open(store.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return errno;
  size_t start = 0;
  for (size_t slash = rel.find('/'); slash != std::string_view::npos;
       start = slash + 1, slash = rel.find('/', start)) {
    std::string name{rel.substr(start, slash - start)};
    if (name.empty() || name == "." || name == "..") {
      close(dir);
      return EXDEV;
    }
    if (mkdirat(dir, name.c_str(), 0755) == -1 && errno != EEXIST) {
      int err = errno;
      close(dir);
      return err;
    }
    // Never through a link: a component that is one (planted, or swapped in since the mkdir)
    // stops the walk.
    int next = openat(dir, name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int err = errno;
    struct stat st {};
    bool link = next < 0 && fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0
                && S_ISLNK(st.st_mode);
    close(dir);
    if (next < 0) return link ? EXDEV : err;
    dir = next;
  }
  close(dir);
  return 0;
}

} // namespace litedrive::store_files
