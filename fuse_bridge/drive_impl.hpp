#pragma once
// The drive's state, shared by the files of fuse_bridge/ (operations, lock bridge, mounting).
// Internal to fuse_bridge/: the only place besides them that includes the FUSE header.

// 3.12: the loop configuration API (fuse_loop_cfg_*) that fuse_session_loop_mt takes.
#define FUSE_USE_VERSION 312
#include <fuse3/fuse_lowlevel.h>

#include <array>
#include <atomic>
#include <memory>
#include <shared_mutex>
#include <string>
#include <thread>

#include "actors/lock_registry.hpp"
#include "fuse_bridge/drive.hpp"
#include "fuse_bridge/inode_table.hpp"

namespace litedrive {

/// Replies to the kernel may come from any thread at any time (a lock granted by another
/// process's unlock), even after the daemon began to unmount; they must never touch a destroyed
/// session. Replies hold the gate shared; the unmount closes it exclusively before
/// fuse_session_destroy().
struct reply_gate {
  std::shared_mutex mtx;
  bool open = true;
};

class interrupt_table;

/// Requests served per operation (relaxed atomics: statistics, not synchronization).
enum op_id : int {
  op_lookup,
  op_getattr,
  op_setattr,
  op_open,
  op_create,
  op_read,
  op_write,
  op_flush,
  op_release,
  op_fsync,
  op_unlink,
  op_getlk,
  op_setlk,
  op_getxattr,
  op_other,
  op_count
};

struct drive::impl {
  std::array<std::atomic<uint64_t>, op_count> ops{};
  settings cfg;
  std::shared_ptr<lock_registry> locks;
  double timeout = 1.0;
  inode root;
  inode_table inodes;
  fuse_session* session = nullptr;
  std::shared_ptr<reply_gate> gate = std::make_shared<reply_gate>();
  std::shared_ptr<interrupt_table> interrupts;
  std::thread loop;
  std::atomic<bool> mounted{false};
  std::atomic<bool> loop_done{false};
  std::string connection; ///< the kernel's FUSE connection number (fusectl), from mountinfo

  void count(op_id op) { ops[op].fetch_add(1, std::memory_order_relaxed); }
};

/// The kernel's operations, one do_<op> each (operations.cpp).
fuse_lowlevel_ops assign_operations();

inline drive::impl& state(fuse_req_t req) {
  return *static_cast<drive::impl*>(fuse_req_userdata(req));
}

inline inode& get_inode(fuse_req_t req, fuse_ino_t ino) {
  if (ino == FUSE_ROOT_ID) return state(req).root;
  return *reinterpret_cast<inode*>(ino);
}

inline int inode_fd(fuse_req_t req, fuse_ino_t ino) {
  return get_inode(req, ino).fd;
}

inline file_handle& get_handle(fuse_file_info* fi) {
  return *reinterpret_cast<file_handle*>(fi->fh);
}

inline std::string proc_path(int fd) {
  return "/proc/self/fd/" + std::to_string(fd);
}

} // namespace litedrive
