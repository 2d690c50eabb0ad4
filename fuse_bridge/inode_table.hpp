#pragma once
// The backing inodes the kernel knows, and the handles it opened on them.
//
// An inode is known while the kernel holds a lookup count on it (nlookup > 0): its address is
// the FUSE node id, and it keeps an O_PATH descriptor of the backing inode, which also keeps
// the backing inode number from being reused while the kernel may still name it. Inodes are
// found by the backing (dev, ino), so one backing file is one node whatever name reached it.
//
// Invariants:
//   - one inode per backing (dev, ino) at a time; it is freed only when the kernel forgot
//     every lookup of it (FORGET), never while a handle is open on it (the kernel keeps the
//     inode of an open file);
//   - a handle's `id` is never reused in the daemon's life (lock bookkeeping names handles by
//     it, and a RELEASE may be decided after the next open got the same memory);
//   - an inode's lock service, once set, never changes: all of its lock traffic meets in one
//     lock table.
//
// Thread-safe: the table's mutex guards the map and every nlookup; `locks_mtx` guards an
// inode's lock service pointer. Both are leaves.

#include <sys/stat.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include <dirent.h>

#include "actors/lock_service.hpp"

struct fuse_entry_param;

namespace litedrive {

struct inode {
  int fd = -1; ///< O_PATH descriptor of the backing inode
  dev_t dev = 0;
  ino_t ino = 0;
  uint64_t nlookup = 0; ///< guarded by the table's mutex
  /// The database whose lock table decides this file's locks (its main file's, for a -shm),
  /// fixed at the first lock request; null until then (FLUSH has nothing to drop before).
  std::mutex locks_mtx;
  std::shared_ptr<lock_service> locks;
  std::string db_path; ///< its database's main file in the store
  file_role role = file_role::main;
  /// The kernel may hold pages of the file: it read or wrote through the mount. Set before the
  /// backing file is touched, so that a write behind the mount's back that finds it unset
  /// happened before any read the kernel could cache (drive::invalidate).
  std::atomic<bool> pages_cached{false};

  /// The lock service, or null if the file was never locked.
  std::shared_ptr<lock_service> lock_service_if_any() {
    std::lock_guard<std::mutex> guard{locks_mtx};
    return locks;
  }
};

struct file_handle {
  int fd = -1;
  uint64_t id = 0; ///< unique for the daemon's life (see above)
  int flags = 0;
  inode* node = nullptr;
  /// Opened O_DIRECT: the file offset alignment the backing file system demands of direct I/O
  /// (0: none known). Reads and writes off it fail with EINVAL, as they would natively.
  uint32_t dio_align = 0;
};

struct dir_handle {
  std::mutex mtx;
  DIR* dp = nullptr;
  struct dirent* entry = nullptr;
  off_t offset = 0;
};

class inode_table {
public:
  /// Looks `name` up below the directory `parent_fd` and counts one kernel reference on its
  /// inode; fills `e` (attributes, node id) with the given timeouts. 0 or an errno.
  int lookup(int parent_fd, const char* name, double timeout, fuse_entry_param* e);

  /// One more kernel reference on a node it already knows (a hard link's entry).
  void count(inode& node);

  /// The kernel dropped `n` references to `node`; the last one frees it.
  void forget(inode* node, uint64_t n);

  /// The inode of the backing file (dev, ino) if the kernel knows it. The caller keeps it
  /// known (an open descriptor on the mount) for as long as it uses the pointer.
  inode* find(dev_t dev, ino_t ino);

  /// A new handle on `node` for the backing descriptor `fd` (freed by close_handle).
  file_handle* open_handle(int fd, int flags, inode* node);
  static void close_handle(file_handle* h);

  /// Closes every backing descriptor (after the session ended).
  void clear();

private:
  std::mutex mtx_;
  std::map<std::pair<dev_t, ino_t>, std::unique_ptr<inode>> inodes_;
  static std::atomic<uint64_t> next_handle_id_;
};

} // namespace litedrive
