// The drive's interface to the daemon: mounting (after the host checks of mount_point.cpp),
// serving on libfuse's loop (or FUSE over io_uring, kernel_io.cpp), cache invalidation for
// litedrive's own writes behind the mount, counters, and unmounting. The kernel's operations
// are in operations.cpp.

#include "fuse_bridge/drive.hpp"

#include "fuse_bridge/drive_impl.hpp"
#include "fuse_bridge/kernel_io.hpp"
#include "fuse_bridge/lock_bridge.hpp"
#include "fuse_bridge/mount_point.hpp"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <shared_mutex>
#include <thread>

#include <spdlog/spdlog.h>

namespace litedrive {

namespace {

constexpr const char* op_names[op_count] = {"lookup", "getattr", "setattr", "open",     "create",
                                            "read",   "write",   "flush",   "release",  "fsync",
                                            "unlink", "getlk",   "setlk",   "getxattr", "other"};

} // namespace

drive::drive(std::unique_ptr<impl> p) : impl_(std::move(p)) {}

drive::~drive() {
  unmount();
}

caf::expected<std::unique_ptr<drive>> drive::mount(const settings& s,
                                                   std::shared_ptr<lock_registry> locks) {
  using mount_point::fail;
  if (access("/dev/fuse", R_OK | W_OK) != 0)
    return fail("/dev/fuse is missing or not accessible (" + std::string{strerror(errno)}
                + "): load the fuse module (modprobe fuse) or pass --device /dev/fuse to the "
                  "container");
  if (s.mount == s.store || s.mount.rfind(s.store + "/", 0) == 0
      || s.store.rfind(s.mount + "/", 0) == 0)
    return fail("the mount point and the store must not contain each other");
  if (auto err = mount_point::check_kernel_timeouts(s)) return err;
  if (auto err = mount_point::check_allow_other(s)) return err;
  if (auto err = mount_point::prepare(s.mount)) return err;
  // The kernel decides what it offers (FUSE over io_uring) when the mount is made.
  bool ring = s.drive_io_uring && kernel_io::allow_ring();
  auto p = std::make_unique<impl>();
  p->cfg = s;
  p->locks = std::move(locks);
  p->interrupts = lock_bridge::make_interrupt_table();
  p->timeout = std::chrono::duration<double>(s.attr_timeout).count();
  p->root.fd = open(s.store.c_str(), O_PATH | O_CLOEXEC);
  if (p->root.fd == -1) return fail("cannot open the store " + s.store + ": " + strerror(errno));
  // Modes arrive already masked by the caller's umask; ours must not mask them again.
  umask(0);
  std::string opts = "fsname=litedrive,subtype=litedrive,default_permissions";
  if (s.mount_allow_other) opts += ",allow_other";
  const char* argv[] = {"litedrive", "-o", opts.c_str()};
  fuse_args args = FUSE_ARGS_INIT(3, const_cast<char**>(argv));
  static const fuse_lowlevel_ops ops = assign_operations();
  p->session = fuse_session_new(&args, &ops, sizeof(ops), p.get());
  if (p->session == nullptr) {
    close(p->root.fd);
    return fail("cannot create the FUSE session (see the messages above)");
  }
  if (fuse_session_mount(p->session, s.mount.c_str()) != 0) {
    fuse_session_destroy(p->session);
    close(p->root.fd);
    return fail("cannot mount the drive at " + s.mount);
  }
  p->mounted = true;
  kernel_io::install(p->session, ring);
  auto* raw = p.get();
  p->loop = std::thread([raw] {
    auto* cfg = fuse_loop_cfg_create();
    fuse_loop_cfg_set_clone_fd(cfg, 0);
    // Lock waits hold no worker, so libfuse's default pool (10) is plenty; keeping idle
    // workers around (libfuse's default) avoids a thread start per request burst.
    fuse_loop_cfg_set_max_threads(cfg, 16);
    int rc = fuse_session_loop_mt(raw->session, cfg);
    fuse_loop_cfg_destroy(cfg);
    if (rc != 0 && raw->mounted) spdlog::error("the FUSE loop ended with {}", rc);
    raw->loop_done = true;
  });
  p->connection = mount_point::connection_of(s.mount);
  spdlog::info("drive mounted at {} (store {})", s.mount, s.store);
  return std::unique_ptr<drive>(new drive(std::move(p)));
}

std::string drive::counters_json() const {
  std::string out = "{";
  uint64_t total = 0;
  for (int i = 0; i < op_count; ++i) {
    auto n = impl_->ops[i].load(std::memory_order_relaxed);
    total += n;
    out += "\"";
    out += op_names[i];
    out += "\":";
    out += std::to_string(n);
    out += ',';
  }
  // Of all requests, those that came through FUSE over io_uring (0: the drive uses /dev/fuse).
  out += "\"through_io_uring\":" + std::to_string(kernel_io::ring_requests()) + ',';
  out += "\"total\":" + std::to_string(total) + "}";
  return out;
}

bool drive::invalidate(dev_t dev, ino_t ino, int64_t off, int64_t len, bool resized) {
  auto* node = impl_->inodes.find(dev, ino);
  if (node == nullptr) return false; // the kernel caches nothing of a file it does not know
  std::atomic_thread_fence(std::memory_order_seq_cst); // the write before, the flag after
  if (!node->pages_cached.load()) {
    if (!resized) return false; // no page to drop, and the size the kernel knows is still true
    off = -1;                   // attributes only
  }
  auto nodeid = reinterpret_cast<fuse_ino_t>(node);
  // A node id forgotten meanwhile is harmless: the kernel finds no inode for it.
  std::shared_lock<std::shared_mutex> guard{impl_->gate->mtx};
  if (!impl_->gate->open || !impl_->mounted) return false;
  int rc = fuse_lowlevel_notify_inval_inode(impl_->session, nodeid, off, len);
  if (rc != 0 && rc != -ENOENT)
    spdlog::warn("drive: cache invalidation failed: {}", std::strerror(-rc));
  return true;
}

void drive::unmount() {
  if (!impl_ || !impl_->mounted.exchange(false)) return;
  fuse_session_exit(impl_->session);
  // Detach the mount WITHOUT closing /dev/fuse (fuse_session_unmount would close it under the
  // feet of workers still replying): once nothing uses the drive the kernel ends the
  // connection, the workers' reads fail with ENODEV and they leave the loop on their own.
  if (umount2(impl_->cfg.mount.c_str(), MNT_DETACH) == -1) {
    // Not root: fusermount3 may detach a user's own FUSE mount.
    std::string cmd = "fusermount3 -u -z '" + impl_->cfg.mount + "' 2>/dev/null";
    if (std::system(cmd.c_str()) != 0)
      spdlog::warn("cannot detach {}: {}", impl_->cfg.mount, strerror(errno));
  }
  auto wait_for_loop = [this](std::chrono::milliseconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (!impl_->loop_done && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds{10});
    return impl_->loop_done.load();
  };
  if (!wait_for_loop(std::chrono::milliseconds{1500})) {
    // Processes still hold files open on the detached drive, which keeps the connection up.
    spdlog::warn("files are still open on the drive: aborting the FUSE connection (their users "
                 "get ENOTCONN)");
    mount_point::abort_connection(impl_->connection);
    if (!wait_for_loop(std::chrono::milliseconds{3000})) {
      // Leave the threads and the session to the process exit, which closes /dev/fuse.
      spdlog::warn("the FUSE loop did not stop; leaving it to the process exit");
      impl_->loop.detach();
      impl_.release();
      return;
    }
  }
  if (impl_->loop.joinable()) impl_->loop.join();
  kernel_io::finish();
  // The loop is over: now the session's descriptor can go (the mount is already detached).
  fuse_session_unmount(impl_->session);
  {
    std::unique_lock<std::shared_mutex> guard{impl_->gate->mtx};
    impl_->gate->open = false;
  }
  fuse_session_destroy(impl_->session);
  impl_->inodes.clear();
  close(impl_->root.fd);
  spdlog::info("drive unmounted from {}", impl_->cfg.mount);
}

} // namespace litedrive
