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
// Locks: getlk/setlk/flush/release become messages to the database actor that owns the file (via
// the registry). A lock request that must wait is answered later from the actor's thread: no
// FUSE worker is held. Signals interrupt a waiter (EINTR) through fuse_req_interrupt_func.
//
// Index: 1. inodes and handles  2. credentials  3. lock routing  4. operations  5. mounting

#include "fuse_bridge/drive.hpp"
#include "fuse_bridge/kernel_io.hpp"

// 3.12: the loop configuration API (fuse_loop_cfg_*) that fuse_session_loop_mt takes.
#define FUSE_USE_VERSION 312
#include <fuse3/fuse_lowlevel.h>

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/file.h>
#include <sys/fsuid.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <signal.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <climits>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <map>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "schema/errc.hpp"

namespace litedrive {

namespace {

// == 1. inodes and handles ========================================================================

/// The database actor that holds a file's locks, once the registry told us: later lock traffic
/// for the file goes straight to it. Once the actor offered its table's fast path, requests
/// that need no waiting are decided right here on the FUSE thread.
struct route_slot {
  std::mutex mtx;
  database_actor handle;
  lock_fast_path_ptr fast;

  database_actor get() {
    std::lock_guard<std::mutex> guard{mtx};
    return handle;
  }

  lock_fast_path_ptr fast_path() {
    std::lock_guard<std::mutex> guard{mtx};
    return fast;
  }

  /// What a lock sink learns on the way (lock_reply_sink::learn_route): true if kept.
  bool learn(const caf::actor& database) {
    std::lock_guard<std::mutex> guard{mtx};
    if (handle)
      return false; // another request of the same file got here first
    handle = caf::actor_cast<database_actor>(database);
    return true;
  }

  void learn(const lock_fast_path_ptr& offered) {
    std::lock_guard<std::mutex> guard{mtx};
    if (!fast)
      fast = offered;
  }
};

/// One backing inode the kernel knows (nlookup > 0). Its address is the FUSE node id.
struct inode {
  int fd = -1;  ///< O_PATH descriptor of the backing inode
  dev_t dev = 0;
  ino_t ino = 0;
  uint64_t nlookup = 0;  ///< guarded by the table mutex
  /// Where its locks go, fixed at the first lock request so that an inode never changes actor.
  std::mutex route_mtx;
  std::optional<db_location> route;
  file_role role = file_role::main;
  std::atomic<bool> locked{false};  ///< lock traffic happened: FLUSH/RELEASE must follow it
  /// The kernel may hold pages of the file: it read or wrote through the mount. Set before the
  /// backing file is touched, so that a write behind the mount's back that finds it unset
  /// happened before any read the kernel could cache (drive::invalidate).
  std::atomic<bool> pages_cached{false};
  std::shared_ptr<route_slot> slot = std::make_shared<route_slot>();
};

struct file_handle {
  int fd = -1;
  uint64_t id = 0;
  int flags = 0;
  inode* node = nullptr;
  /// Opened O_DIRECT: the file offset alignment the backing file system demands of direct I/O
  /// (0: none known). Reads and writes off it fail with EINVAL, as they would natively.
  uint32_t dio_align = 0;
};

/// Replies to the kernel may come from actor threads at any time, even after the daemon began
/// to unmount; they must never touch a destroyed session. Replies hold the gate shared; the
/// unmount closes it exclusively before fuse_session_destroy().
struct reply_gate {
  std::shared_mutex mtx;
  bool open = true;
};

class fuse_lock_sink;

/// Lock requests that may still be interrupted, by request. libfuse may call the interrupt
/// callback concurrently with (or just after) our reply, so the callback must never hold a
/// pointer into a sink: it looks the request up here, under the mutex, and takes a strong
/// reference; a reply removes its entry before it answers the kernel.
struct interrupt_table {
  std::mutex mtx;
  std::unordered_map<fuse_req_t, std::weak_ptr<fuse_lock_sink>> pending;

  void add(fuse_req_t req, const std::shared_ptr<fuse_lock_sink>& sink) {
    std::lock_guard<std::mutex> guard{mtx};
    pending[req] = sink;
  }

  void remove(fuse_req_t req) {
    std::lock_guard<std::mutex> guard{mtx};
    pending.erase(req);
  }

  std::shared_ptr<fuse_lock_sink> find(fuse_req_t req) {
    std::lock_guard<std::mutex> guard{mtx};
    auto i = pending.find(req);
    return i == pending.end() ? nullptr : i->second.lock();
  }
};

struct dir_handle {
  std::mutex mtx;
  DIR* dp = nullptr;
  struct dirent* entry = nullptr;
  off_t offset = 0;
};

} // namespace

/// Requests served per operation (relaxed atomics: statistics, not synchronization).
enum op_id : int {
  op_lookup, op_getattr, op_setattr, op_open, op_create, op_read, op_write, op_flush, op_release,
  op_fsync, op_unlink, op_getlk, op_setlk, op_getxattr, op_other,
  op_requests, ///< the kernel's requests end here; what follows counts how they were served
  op_fast_lock = op_requests, ///< setlk/getlk/flush decided on the FUSE thread (no actor hand-off)
  op_own_lock, ///< lock calls of litedrive's own connections, decided without a FUSE round trip
  op_own_lock_wait, ///< ... of which had to wait (went to the actor)
  op_count
};
constexpr const char* op_names[op_count] = {
  "lookup", "getattr", "setattr", "open", "create", "read", "write", "flush", "release",
  "fsync", "unlink", "getlk", "setlk", "getxattr", "other", "locks_decided_in_drive", "own_locks",
  "own_lock_waits"};

struct drive::impl {
  std::array<std::atomic<uint64_t>, op_count> ops{};
  settings cfg;
  db_registry_actor registry;
  double timeout = 1.0;
  inode root;
  std::mutex table_mtx;  ///< guards `inodes` and every inode's nlookup
  std::map<std::pair<dev_t, ino_t>, std::unique_ptr<inode>> inodes;
  std::atomic<uint64_t> next_lock_id{1};
  fuse_session* session = nullptr;
  std::shared_ptr<reply_gate> gate = std::make_shared<reply_gate>();
  std::shared_ptr<interrupt_table> interrupts = std::make_shared<interrupt_table>();
  std::thread loop;
  std::atomic<bool> mounted{false};
  std::atomic<bool> loop_done{false};
  std::string connection;  ///< the kernel's FUSE connection number (fusectl), from mountinfo
};

namespace {

drive::impl& state(fuse_req_t req) {
  return *static_cast<drive::impl*>(fuse_req_userdata(req));
}

inode& get_inode(fuse_req_t req, fuse_ino_t ino) {
  if (ino == FUSE_ROOT_ID)
    return state(req).root;
  return *reinterpret_cast<inode*>(ino);
}

int inode_fd(fuse_req_t req, fuse_ino_t ino) {
  return get_inode(req, ino).fd;
}

file_handle& get_handle(fuse_file_info* fi) {
  return *reinterpret_cast<file_handle*>(fi->fh);
}

std::string proc_path(int fd) {
  return "/proc/self/fd/" + std::to_string(fd);
}

/// Looks `name` up below `parent` and counts one kernel reference on its inode. ENOENT becomes a
/// negative entry (ino 0), which the kernel caches for the entry timeout.
int do_lookup(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_entry_param* e) {
  auto& st = state(req);
  std::memset(e, 0, sizeof(*e));
  e->attr_timeout = st.timeout;
  e->entry_timeout = st.timeout;
  int fd = openat(inode_fd(req, parent), name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd == -1)
    return errno;
  if (fstatat(fd, "", &e->attr, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == -1) {
    int err = errno;
    close(fd);
    return err;
  }
  std::lock_guard<std::mutex> guard{st.table_mtx};
  auto key = std::make_pair(e->attr.st_dev, e->attr.st_ino);
  auto i = st.inodes.find(key);
  inode* node;
  if (i != st.inodes.end()) {
    node = i->second.get();
    close(fd);
  } else {
    auto fresh = std::make_unique<inode>();
    fresh->fd = fd;
    fresh->dev = e->attr.st_dev;
    fresh->ino = e->attr.st_ino;
    node = fresh.get();
    st.inodes.emplace(key, std::move(fresh));
  }
  node->nlookup++;
  e->ino = reinterpret_cast<fuse_ino_t>(node);
  return 0;
}

void forget_one(drive::impl& st, fuse_ino_t ino, uint64_t n) {
  if (ino == FUSE_ROOT_ID)
    return;
  auto* node = reinterpret_cast<inode*>(ino);
  std::lock_guard<std::mutex> guard{st.table_mtx};
  node->nlookup = n >= node->nlookup ? 0 : node->nlookup - n;
  if (node->nlookup == 0) {
    if (auto db = node->slot->get())
      caf::anon_send(db, detach_atom_v); // the database may close once nobody routes to it
    close(node->fd);
    st.inodes.erase(std::make_pair(node->dev, node->ino));
  }
}

// == 2. credentials ===============================================================================

/// While alive, file-system calls of this thread run as the request's caller: fsuid, fsgid and
/// supplementary groups (all per thread: raw syscalls, not glibc's process-wide wrappers).
class as_caller {
public:
  explicit as_caller(fuse_req_t req) {
    const auto* ctx = fuse_req_ctx(req);
    gid_t groups[64];
    int n = fuse_req_getgroups(req, 64, groups);
    if (n > 64)
      n = 64;
    if (n >= 0)
      syscall(SYS_setgroups, static_cast<size_t>(n), groups);
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

// == 3. lock routing ==============================================================================

/// F_GETLK's answer as fcntl gives it: the conflicting lock, or F_UNLCK.
void to_flock(const getlk_answer& answer, struct flock& fl) {
  if (!answer) {
    fl.l_type = F_UNLCK;
    return;
  }
  fl.l_type = answer->kind == lock_kind::write ? F_WRLCK : F_RDLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = static_cast<off_t>(answer->start);
  fl.l_len = answer->end == to_eof ? 0 : static_cast<off_t>(answer->end - answer->start + 1);
  fl.l_pid = static_cast<pid_t>(answer->pid);
}

/// Answers the kernel for one lock request, exactly once, from whichever thread the actor
/// answers on. Unanswered at destruction (the actor died): answers `fallback` so no process is
/// left in fcntl() forever.
class fuse_lock_sink final : public lock_reply_sink {
public:
  fuse_lock_sink(fuse_req_t req, int fallback, std::shared_ptr<route_slot> slot = nullptr)
    : req_(req), fallback_(fallback), gate_(state(req).gate), slot_(std::move(slot)) {}

  /// Makes the request interruptible (F_SETLK/F_SETLKW waits).
  void watch_interrupts(std::shared_ptr<interrupt_table> table) {
    interrupts_ = std::move(table);
  }

  bool learn_route(const caf::actor& database) override {
    return slot_ && slot_->learn(database);
  }

  void learn_fast_path(const lock_fast_path_ptr& fast) override {
    if (slot_)
      slot_->learn(fast);
  }

  ~fuse_lock_sink() override {
    reply(fallback_);
  }

  void reply(int err) override {
    if (done_.exchange(true))
      return;
    if (interrupts_)
      interrupts_->remove(req_); // before the reply frees the request
    std::shared_lock<std::shared_mutex> guard{gate_->mtx};
    if (gate_->open)
      fuse_reply_err(req_, err);
  }

  void reply_getlk(const getlk_answer& answer) override {
    if (done_.exchange(true))
      return;
    std::shared_lock<std::shared_mutex> guard{gate_->mtx};
    if (gate_->open)
      answer_getlk(req_, answer);
  }

  static void answer_getlk(fuse_req_t req, const getlk_answer& answer) {
    struct flock fl {};
    to_flock(answer, fl);
    fuse_reply_lock(req, &fl);
  }

  // For the interrupt callback.
  db_registry_actor registry;
  db_location loc;
  uint64_t id = 0;
  std::shared_ptr<route_slot> slot;

private:
  fuse_req_t req_;
  int fallback_;
  std::shared_ptr<reply_gate> gate_;
  std::shared_ptr<route_slot> slot_;
  std::shared_ptr<interrupt_table> interrupts_;
  std::atomic<bool> done_{false};
};

/// The answer to one lock call of litedrive's own connections, which its thread waits for: set
/// once, by whichever thread decides (the actor's, or one whose unlock granted it).
struct own_answer {
  std::mutex mtx;
  std::condition_variable cv;
  bool done = false;
  int err = 0;
  getlk_answer lock;

  void set(int e, getlk_answer l = std::nullopt) {
    std::lock_guard<std::mutex> guard{mtx};
    if (done)
      return;
    done = true;
    err = e;
    lock = std::move(l);
    cv.notify_all();
  }

  void wait() {
    std::unique_lock<std::mutex> guard{mtx};
    cv.wait(guard, [this] { return done; });
  }
};

/// The sink of such a call. The waiting thread keeps only the answer, so that an actor dropping
/// the sink unanswered (it died) makes it answer `fallback`, as a FUSE request's sink does.
class own_lock_sink final : public lock_reply_sink {
public:
  own_lock_sink(std::shared_ptr<own_answer> answer, int fallback,
                std::shared_ptr<route_slot> slot)
    : answer_(std::move(answer)), fallback_(fallback), slot_(std::move(slot)) {}

  ~own_lock_sink() override {
    answer_->set(fallback_);
  }

  void reply(int err) override {
    answer_->set(err);
  }

  void reply_getlk(const getlk_answer& answer) override {
    answer_->set(0, answer);
  }

  bool learn_route(const caf::actor& database) override {
    return slot_ && slot_->learn(database);
  }

  void learn_fast_path(const lock_fast_path_ptr& fast) override {
    if (slot_)
      slot_->learn(fast);
  }

private:
  std::shared_ptr<own_answer> answer_;
  int fallback_;
  std::shared_ptr<route_slot> slot_;
};

constexpr std::string_view shm_suffix = "-shm";

/// Where a file's locks go: the database it belongs to (a -shm file belongs to its main file),
/// found from the backing path the kernel keeps for our O_PATH descriptor. Fixed per inode.
bool route_of(drive::impl& st, inode& node, db_location& loc, file_role& role) {
  std::lock_guard<std::mutex> guard{node.route_mtx};
  if (!node.route) {
    char buf[PATH_MAX + 1];
    auto n = readlink(proc_path(node.fd).c_str(), buf, PATH_MAX);
    if (n <= 0)
      return false;
    std::string path{buf, static_cast<size_t>(n)};
    static constexpr std::string_view deleted = " (deleted)";
    if (path.size() > deleted.size() && path.compare(path.size() - deleted.size(), deleted.size(), deleted) == 0)
      path.erase(path.size() - deleted.size());
    if (path.compare(0, st.cfg.store.size() + 1, st.cfg.store + "/") != 0)
      return false;
    auto rel = path.substr(st.cfg.store.size() + 1);
    node.role = file_role::main;
    if (rel.size() > shm_suffix.size()
        && rel.compare(rel.size() - shm_suffix.size(), shm_suffix.size(), shm_suffix) == 0) {
      rel.erase(rel.size() - shm_suffix.size());
      node.role = file_role::shm;
    }
    db_location l;
    l.key = st.cfg.store + "/" + rel;
    l.open_path = st.cfg.mount + "/" + rel;
    l.name = rel;
    l.in_store = true;
    node.route = std::move(l);
  }
  loc = *node.route;
  role = node.role;
  return true;
}

/// The database header says WAL when its read and write versions (bytes 18, 19) are 2.
bool header_says_wal(int fd) {
  unsigned char v[2] = {0, 0};
  return pread(fd, v, 2, 18) == 2 && v[0] == 2 && v[1] == 2;
}

bool hot_journal_exists(const db_location& loc) {
  struct stat st;
  return ::stat((loc.key + "-journal").c_str(), &st) == 0 && st.st_size > 0;
}

void on_interrupt(fuse_req_t req, void* data) {
  // Called by libfuse with the request's lock held: only send, never wait. `data` is the
  // interrupt table (alive as long as the session); the sink may already be answered and gone.
  auto sink = static_cast<interrupt_table*>(data)->find(req);
  if (!sink)
    return;
  if (auto db = sink->slot->get())
    caf::anon_send(db, interrupt_atom_v, sink->id);
  else
    caf::anon_send(sink->registry, interrupt_atom_v, sink->loc, sink->id);
}

/// The lock request for `fl` (SEEK_SET, l_len >= 0) on `node` by (owner, pid), through a handle
/// that reads the file with `fd` and is open for writing or not.
bool make_request(drive::impl& st, inode& node, const struct flock& fl, uint64_t owner,
                  uint32_t pid, bool writable, int fd, lock_request& out, db_location& loc) {
  file_role role;
  if (!route_of(st, node, loc, role))
    return false;
  out.id = st.next_lock_id++;
  out.file = role;
  out.owner = owner;
  out.pid = pid;
  out.kind = fl.l_type == F_UNLCK ? lock_kind::unlock
             : fl.l_type == F_WRLCK ? lock_kind::write
                                    : lock_kind::read;
  out.start = static_cast<uint64_t>(fl.l_start);
  out.end = fl.l_len == 0 ? to_eof : static_cast<uint64_t>(fl.l_start + fl.l_len - 1);
  out.writable = writable;
  out.wal = role == file_role::shm || header_says_wal(fd);
  if (role == file_role::main && !out.wal && out.kind == lock_kind::write
      && out.end >= sqlite_bytes::pending && out.start <= sqlite_bytes::shared_last)
    out.hot_journal = hot_journal_exists(loc);
  node.locked = true;
  return true;
}

/// The kernel's lock request: it resolved l_whence and the length to a SEEK_SET range already.
bool build_request(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, const struct flock* fl,
                   lock_request& out, db_location& loc) {
  auto& h = get_handle(fi);
  if (!make_request(state(req), get_inode(req, ino), *fl, fi->lock_owner,
                    static_cast<uint32_t>(fuse_req_ctx(req)->pid),
                    (h.flags & O_ACCMODE) != O_RDONLY, h.fd, out, loc))
    return false;
  out.fh = get_handle(fi).id;
  return true;
}

// == 4. operations, in the kernel's order =========================================================

void do_init(void* userdata, fuse_conn_info* conn) {
  auto& st = *static_cast<drive::impl*>(userdata);
  if (conn->capable & FUSE_CAP_POSIX_LOCKS)
    conn->want |= FUSE_CAP_POSIX_LOCKS;
  conn->want &= ~FUSE_CAP_FLOCK_LOCKS; // flock() stays kernel-local, which is correct on one host
  conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA; // nobody else writes the store: keep the page cache
  if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
    conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
  conn->want &= ~FUSE_CAP_SPLICE_READ; // kernel_io looks at every request in memory
  if (kernel_io::ring_planned()) // a ring's replies go to memory, never to a pipe
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
  if (res == -1)
    return (void) fuse_reply_err(req, errno);
  fuse_reply_attr(req, &buf, state(req).timeout);
}

void do_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int valid, fuse_file_info* fi) {
  state(req).ops[op_setattr].fetch_add(1, std::memory_order_relaxed);
  int ifd = inode_fd(req, ino);
  auto procname = proc_path(ifd);
  int res = 0;
  if (valid & FUSE_SET_ATTR_MODE) {
    res = fi ? fchmod(get_handle(fi).fd, attr->st_mode) : chmod(procname.c_str(), attr->st_mode);
    if (res == -1)
      return (void) fuse_reply_err(req, errno);
  }
  if (valid & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
    uid_t uid = (valid & FUSE_SET_ATTR_UID) ? attr->st_uid : static_cast<uid_t>(-1);
    gid_t gid = (valid & FUSE_SET_ATTR_GID) ? attr->st_gid : static_cast<gid_t>(-1);
    struct stat before {};
    bool known = fstatat(ifd, "", &before, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0;
    res = fchownat(ifd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
    if (res == -1)
      return (void) fuse_reply_err(req, errno);
    // Done as root, the chown keeps an S_ISGID without group-execute that the caller's own
    // chown would have dropped (the kernel leaves it to us with FUSE_HANDLE_KILLPRIV_V2).
    if (known && kernel_io::killpriv_v2())
      kernel_io::drop_sgid_after_chown(req, ino, procname.c_str(), before);
  }
  if (valid & FUSE_SET_ATTR_SIZE) {
    res = fi ? ftruncate(get_handle(fi).fd, attr->st_size)
             : truncate(procname.c_str(), attr->st_size);
    if (res == -1)
      return (void) fuse_reply_err(req, errno);
    if (kernel_io::kill_suidgid())
      kernel_io::drop_suidgid(req, ino, procname.c_str());
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
    if (res == -1)
      return (void) fuse_reply_err(req, errno);
  }
  do_getattr(req, ino, fi);
}

void do_readlink(fuse_req_t req, fuse_ino_t ino) {
  state(req).ops[op_other].fetch_add(1, std::memory_order_relaxed);
  char buf[PATH_MAX + 1];
  auto n = readlinkat(inode_fd(req, ino), "", buf, sizeof(buf));
  if (n == -1)
    return (void) fuse_reply_err(req, errno);
  if (n == static_cast<ssize_t>(sizeof(buf)))
    return (void) fuse_reply_err(req, ENAMETOOLONG);
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
    if (res == -1)
      err = errno;
  }
  if (err)
    return (void) fuse_reply_err(req, err);
  fuse_entry_param e;
  err = do_lookup(req, parent, name, &e);
  if (err)
    return (void) fuse_reply_err(req, err);
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
  long res = syscall(SYS_renameat2, inode_fd(req, parent), name, inode_fd(req, newparent),
                     newname, flags);
  fuse_reply_err(req, res == -1 ? errno : 0);
}

void do_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
  auto& st = state(req);
  auto& node = get_inode(req, ino);
  int err = 0;
  {
    as_caller who{req};
    if (linkat(node.fd, "", inode_fd(req, newparent), newname, AT_EMPTY_PATH) == -1)
      err = errno;
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
  if (err)
    return (void) fuse_reply_err(req, err);
  fuse_entry_param e;
  std::memset(&e, 0, sizeof(e));
  e.attr_timeout = st.timeout;
  e.entry_timeout = st.timeout;
  if (fstatat(node.fd, "", &e.attr, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == -1)
    return (void) fuse_reply_err(req, errno);
  {
    std::lock_guard<std::mutex> guard{st.table_mtx};
    node.nlookup++;
  }
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
  static std::atomic<uint64_t> next_id{1};
  auto* h = new file_handle{fd, next_id++, fi->flags, node};
  fi->fh = reinterpret_cast<uint64_t>(h);
  if (fi->flags & O_DIRECT) {
    fi->direct_io = 1;
    h->dio_align = dio_offset_align(fd);
  } else {
    fi->keep_cache = 1;
  }
  (void) st;
}

void do_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  state(req).ops[op_open].fetch_add(1, std::memory_order_relaxed);
  auto& st = state(req);
  int flags = backing_flags(fi->flags);
  if (st.cfg.drive_writeback_cache && (flags & O_ACCMODE) == O_WRONLY)
    flags = (flags & ~O_ACCMODE) | O_RDWR; // the kernel may read to fill partial pages
  int fd = open(proc_path(inode_fd(req, ino)).c_str(), flags);
  if (fd == -1)
    return (void) fuse_reply_err(req, errno);
  if ((flags & O_TRUNC) && kernel_io::kill_suidgid())
    kernel_io::drop_suidgid(req, ino, proc_path(fd).c_str());
  fill_open_reply(st, fi, fd, &get_inode(req, ino));
  fuse_reply_open(req, fi);
}

void do_read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  state(req).ops[op_read].fetch_add(1, std::memory_order_relaxed);
  if (misaligned(get_handle(fi), off, size))
    return (void) fuse_reply_err(req, EINVAL);
  get_handle(fi).node->pages_cached.store(true);
  fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
  buf.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  buf.buf[0].fd = get_handle(fi).fd;
  buf.buf[0].pos = off;
  fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

void do_write_buf(fuse_req_t req, fuse_ino_t ino, fuse_bufvec* in_buf, off_t off, fuse_file_info* fi) {
  state(req).ops[op_write].fetch_add(1, std::memory_order_relaxed);
  if (misaligned(get_handle(fi), off, fuse_buf_size(in_buf)))
    return (void) fuse_reply_err(req, EINVAL);
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
  state(req).ops[op_flush].fetch_add(1, std::memory_order_relaxed);
  auto& h = get_handle(fi);
  // close() of a dup reports delayed write errors of the backing file system, like close would.
  int res = close(dup(h.fd));
  int err = res == -1 ? errno : 0;
  auto& node = get_inode(req, ino);
  if (!node.locked)
    return (void) fuse_reply_err(req, err);
  // POSIX: any close by a process drops all its locks on the file. Answer when they are gone.
  db_location loc;
  file_role role;
  if (!route_of(state(req), node, loc, role))
    return (void) fuse_reply_err(req, err);
  auto owner = static_cast<uint64_t>(fi->lock_owner);
  if (auto fast = node.slot->fast_path(); fast && fast->try_flush(owner, role)) {
    state(req).ops[op_fast_lock].fetch_add(1, std::memory_order_relaxed);
    return (void) fuse_reply_err(req, err);
  }
  auto sink = std::make_shared<fuse_lock_sink>(req, 0);
  if (auto db = node.slot->get())
    caf::anon_send(db, caf::flush_atom_v, owner, role, lock_reply_sink_ptr{sink});
  else
    caf::anon_send(state(req).registry, caf::flush_atom_v, std::move(loc), owner, role,
                   lock_reply_sink_ptr{sink});
}

void do_release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  state(req).ops[op_release].fetch_add(1, std::memory_order_relaxed);
  auto* h = &get_handle(fi);
  auto& node = get_inode(req, ino);
  if (node.locked) {
    db_location loc;
    file_role role;
    if (auto db = node.slot->get())
      caf::anon_send(db, release_atom_v, h->id);
    else if (route_of(state(req), node, loc, role))
      caf::anon_send(state(req).registry, release_atom_v, std::move(loc),
                     h->id);
  }
  close(h->fd);
  delete h;
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
  if (fd == -1)
    return (void) fuse_reply_err(req, errno);
  auto* d = new dir_handle;
  d->dp = fdopendir(fd);
  if (d->dp == nullptr) {
    int err = errno;
    close(fd);
    delete d;
    return (void) fuse_reply_err(req, err);
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
        if (err)
          break;
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
      if (counted != 0)
        forget_one(state(req), counted, 1);
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
  if (fstatvfs(inode_fd(req, ino), &buf) == -1)
    return (void) fuse_reply_err(req, errno);
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
    if (n == -1)
      return (void) fuse_reply_err(req, errno);
    return (void) fuse_reply_xattr(req, static_cast<size_t>(n));
  }
  std::vector<char> buf(size);
  auto n = getxattr(path.c_str(), name, buf.data(), size);
  if (n == -1)
    return (void) fuse_reply_err(req, errno);
  fuse_reply_buf(req, buf.data(), static_cast<size_t>(n));
}

void do_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  auto path = proc_path(inode_fd(req, ino));
  if (size == 0) {
    auto n = listxattr(path.c_str(), nullptr, 0);
    if (n == -1)
      return (void) fuse_reply_err(req, errno);
    return (void) fuse_reply_xattr(req, static_cast<size_t>(n));
  }
  std::vector<char> buf(size);
  auto n = listxattr(path.c_str(), buf.data(), size);
  if (n == -1)
    return (void) fuse_reply_err(req, errno);
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
  if (fi->flags & O_EXCL)
    flags |= O_EXCL;
  if (st.cfg.drive_writeback_cache && (flags & O_ACCMODE) == O_WRONLY)
    flags = (flags & ~O_ACCMODE) | O_RDWR;
  int fd;
  int err = 0;
  {
    as_caller who{req};
    fd = openat(inode_fd(req, parent), name, flags | O_NOFOLLOW, mode);
    if (fd == -1)
      err = errno;
  }
  if (err)
    return (void) fuse_reply_err(req, err);
  fuse_entry_param e;
  err = do_lookup(req, parent, name, &e);
  if (err) {
    close(fd);
    return (void) fuse_reply_err(req, err);
  }
  fill_open_reply(st, fi, fd, reinterpret_cast<inode*>(e.ino));
  fuse_reply_create(req, &e, fi);
}

void do_getlk(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, struct flock* fl) {
  state(req).ops[op_getlk].fetch_add(1, std::memory_order_relaxed);
  lock_request r;
  db_location loc;
  if (!build_request(req, ino, fi, fl, r, loc))
    return (void) fuse_reply_err(req, ENOLCK);
  auto& slot = get_inode(req, ino).slot;
  if (auto fast = slot->fast_path()) {
    if (auto answer = fast->try_getlk(r)) {
      state(req).ops[op_fast_lock].fetch_add(1, std::memory_order_relaxed);
      return fuse_lock_sink::answer_getlk(req, *answer);
    }
  }
  auto sink = std::make_shared<fuse_lock_sink>(req, ENOLCK);
  if (auto db = slot->get())
    caf::anon_send(db, getlk_atom_v, r, lock_reply_sink_ptr{sink});
  else
    caf::anon_send(state(req).registry, getlk_atom_v, std::move(loc), r, lock_reply_sink_ptr{sink});
}

void do_setlk(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, struct flock* fl, int sleep) {
  state(req).ops[op_setlk].fetch_add(1, std::memory_order_relaxed);
  auto& st = state(req);
  lock_request r;
  db_location loc;
  if (!build_request(req, ino, fi, fl, r, loc))
    return (void) fuse_reply_err(req, ENOLCK);
  r.sleep = sleep != 0;
  auto& slot = get_inode(req, ino).slot;
  if (auto fast = slot->fast_path()) {
    if (auto answer = fast->try_setlk(r)) {
      st.ops[op_fast_lock].fetch_add(1, std::memory_order_relaxed);
      return (void) fuse_reply_err(req, *answer);
    }
  }
  auto sink = std::make_shared<fuse_lock_sink>(req, EAGAIN, slot);
  sink->registry = st.registry;
  sink->loc = loc;
  sink->id = r.id;
  sink->slot = slot;
  // Register before sending; libfuse calls the function at once if a signal already came, and
  // the waiter is identified by id, so a late interrupt after the grant is harmless.
  sink->watch_interrupts(st.interrupts);
  st.interrupts->add(req, sink);
  fuse_req_interrupt_func(req, on_interrupt, st.interrupts.get());
  if (fuse_req_interrupted(req))
    return sink->reply(EINTR);
  if (auto db = slot->get())
    caf::anon_send(db, lock_atom_v, r, lock_reply_sink_ptr{sink});
  else
    caf::anon_send(st.registry, lock_atom_v, std::move(loc), r, lock_reply_sink_ptr{sink});
}

void do_fallocate(fuse_req_t req, fuse_ino_t, int mode, off_t offset, off_t length,
                  fuse_file_info* fi) {
  int res = fallocate(get_handle(fi).fd, mode, offset, length);
  fuse_reply_err(req, res == -1 ? errno : 0);
}

void do_copy_file_range(fuse_req_t req, fuse_ino_t, off_t off_in, fuse_file_info* fi_in,
                        fuse_ino_t, off_t off_out, fuse_file_info* fi_out, size_t len, int flags) {
  auto res = copy_file_range(get_handle(fi_in).fd, &off_in, get_handle(fi_out).fd, &off_out, len,
                             static_cast<unsigned>(flags));
  if (res < 0)
    return (void) fuse_reply_err(req, errno);
  fuse_reply_write(req, static_cast<size_t>(res));
}

void do_lseek(fuse_req_t req, fuse_ino_t, off_t off, int whence, fuse_file_info* fi) {
  auto res = lseek(get_handle(fi).fd, off, whence);
  if (res == -1)
    return (void) fuse_reply_err(req, errno);
  fuse_reply_lseek(req, res);
}

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

// == 5. mounting ==================================================================================

caf::error fail(std::string why) {
  return make_error(errc::unavailable, std::move(why));
}

/// The kernel (>= 6.14) aborts the WHOLE connection when a request takes longer than its FUSE
/// request timeout; a lock wait longer than that would take every user of the drive down.
caf::error check_kernel_timeouts(const settings& s) {
  for (auto name : {"default_request_timeout", "max_request_timeout"}) {
    std::ifstream in{std::string{"/proc/sys/fs/fuse/"} + name};
    long seconds = 0;
    if (in >> seconds && seconds > 0
        && s.lock_wait_max >= std::chrono::seconds{seconds})
      return fail("the kernel's fs.fuse." + std::string{name} + " is " + std::to_string(seconds)
                  + " s, and a lock wait that long would abort the whole drive: set "
                    "--lock-wait-max-ms below "
                  + std::to_string(seconds * 1000) + " or raise/clear the sysctl");
  }
  return caf::none;
}

/// The FUSE connection number of the mount at `mnt`: the minor device number in mountinfo.
std::string connection_of(const std::string& mnt) {
  std::ifstream info{"/proc/self/mountinfo"};
  std::string line;
  std::string found;
  while (std::getline(info, line)) {
    std::istringstream in{line};
    std::string id, parent, dev, root, point;
    if (!(in >> id >> parent >> dev >> root >> point))
      continue;
    if (point == mnt && line.find(" - fuse.litedrive ") != std::string::npos)
      found = dev.substr(dev.find(':') + 1); // the newest mount there wins
  }
  return found;
}

/// Aborts a FUSE connection through fusectl (mounting fusectl if needed): every pending and
/// future request of the connection fails, so the loop's reads return.
void abort_connection(const std::string& connection) {
  if (connection.empty())
    return;
  std::string dir = "/sys/fs/fuse/connections";
  if (access((dir + "/" + connection).c_str(), F_OK) != 0)
    ::mount("fusectl", dir.c_str(), "fusectl", 0, nullptr);
  std::ofstream abort{dir + "/" + connection + "/abort"};
  abort << "1\n";
}

/// statvfs(mnt) in a child process, so that a wedged mount (its daemon stuck, e.g. killed while
/// one of its threads waited on its own mount) cannot hang litedrive's start: 0 or an errno, or
/// ETIMEDOUT if no answer came within two seconds.
int probe_mount(const std::string& mnt) {
  pid_t child = fork();
  if (child == 0) {
    struct statvfs vfs;
    _exit(::statvfs(mnt.c_str(), &vfs) == 0 ? 0 : (errno & 0x7f));
  }
  if (child < 0)
    return errno;
  for (int i = 0; i < 200; ++i) {
    int status = 0;
    if (waitpid(child, &status, WNOHANG) == child)
      return WIFEXITED(status) ? WEXITSTATUS(status) : EIO;
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
  }
  // A request still pending dies with the child, but one its daemon already took (a ring
  // entry handed to a stopped thread) holds the child until the connection is aborted: reap it
  // in the background.
  kill(child, SIGKILL);
  std::thread([child] { waitpid(child, nullptr, 0); }).detach();
  return ETIMEDOUT;
}

/// A mount point left behind by a crash answers ENOTCONN, or nothing at all: detach it (aborting
/// its FUSE connection first when it hangs). A live litedrive mount there is another daemon's:
/// refuse.
caf::error prepare_mount_point(const std::string& mnt) {
  for (int round = 0; round < 8; ++round) {
    int err = probe_mount(mnt);
    if (err == 0)
      break;
    if (err == ENOTCONN || err == ECONNABORTED || err == ETIMEDOUT) {
      spdlog::warn("{} is a stale FUSE mount ({}): detaching it", mnt,
                   err == ETIMEDOUT ? "it does not answer" : "its daemon is gone");
      if (err == ETIMEDOUT)
        abort_connection(connection_of(mnt));
      if (umount2(mnt.c_str(), MNT_DETACH) == -1)
        return fail("cannot detach the stale mount at " + mnt + ": " + strerror(errno));
      continue; // another stale mount may lie below it
    }
    if (err == ENOENT) {
      for (size_t pos = mnt.find('/', 1); pos != std::string::npos; pos = mnt.find('/', pos + 1))
        ::mkdir(mnt.substr(0, pos).c_str(), 0755);
      if (::mkdir(mnt.c_str(), 0755) == -1 && errno != EEXIST)
        return fail("cannot create the mount point " + mnt + ": " + strerror(errno));
      continue;
    }
    return fail("cannot use the mount point " + mnt + ": " + strerror(err));
  }
  std::ifstream mounts{"/proc/self/mounts"};
  std::string src, target, type, rest;
  while (mounts >> src >> target >> type && std::getline(mounts, rest)) {
    if (target == mnt && type.rfind("fuse", 0) == 0 && type.find("litedrive") != std::string::npos)
      return fail(mnt + " is already a live litedrive mount: is another litedrive running?");
  }
  struct stat st;
  if (::stat(mnt.c_str(), &st) == -1 || !S_ISDIR(st.st_mode))
    return fail("the mount point " + mnt + " is not a directory");
  return caf::none;
}

caf::error check_allow_other(const settings& s) {
  if (!s.mount_allow_other || geteuid() == 0)
    return caf::none;
  std::ifstream conf{"/etc/fuse.conf"};
  std::string line;
  while (std::getline(conf, line))
    if (line.rfind("user_allow_other", 0) == 0)
      return caf::none;
  return fail("mount-allow-other needs 'user_allow_other' in /etc/fuse.conf when litedrive does "
              "not run as root (or start it with --mount-allow-other=false)");
}

} // namespace

drive::drive(std::unique_ptr<impl> p) : impl_(std::move(p)) {
}

drive::~drive() {
  unmount();
}

caf::expected<std::unique_ptr<drive>> drive::mount(const settings& s, db_registry_actor registry) {
  if (access("/dev/fuse", R_OK | W_OK) != 0)
    return fail("/dev/fuse is missing or not accessible (" + std::string{strerror(errno)}
                + "): load the fuse module (modprobe fuse) or pass --device /dev/fuse to the "
                  "container");
  if (s.mount == s.store || s.mount.rfind(s.store + "/", 0) == 0
      || s.store.rfind(s.mount + "/", 0) == 0)
    return fail("the mount point and the store must not contain each other");
  if (auto err = check_kernel_timeouts(s))
    return err;
  if (auto err = check_allow_other(s))
    return err;
  if (auto err = prepare_mount_point(s.mount))
    return err;
  // The kernel decides what it offers (FUSE over io_uring) when the mount is made.
  bool ring = s.drive_io_uring && kernel_io::allow_ring();
  auto p = std::make_unique<impl>();
  p->cfg = s;
  p->registry = std::move(registry);
  p->timeout = std::chrono::duration<double>(s.attr_timeout).count();
  p->root.fd = open(s.store.c_str(), O_PATH | O_CLOEXEC);
  if (p->root.fd == -1)
    return fail("cannot open the store " + s.store + ": " + strerror(errno));
  // Modes arrive already masked by the caller's umask; ours must not mask them again.
  umask(0);
  std::string opts = "fsname=litedrive,subtype=litedrive,default_permissions";
  if (s.mount_allow_other)
    opts += ",allow_other";
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
    if (rc != 0 && raw->mounted)
      spdlog::error("the FUSE loop ended with {}", rc);
    raw->loop_done = true;
  });
  p->connection = connection_of(s.mount);
  spdlog::info("drive mounted at {} (store {})", s.mount, s.store);
  return std::unique_ptr<drive>(new drive(std::move(p)));
}

std::string drive::counters_json() const {
  std::string out = "{";
  uint64_t total = 0;
  for (int i = 0; i < op_count; ++i) {
    auto n = impl_->ops[i].load(std::memory_order_relaxed);
    if (i < op_requests)
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

namespace {

/// The inode of the backing file (dev, ino) if the kernel knows it. The caller keeps it known
/// (an open descriptor on the mount) for as long as it uses the pointer.
inode* known_inode(drive::impl& st, dev_t dev, ino_t ino) {
  std::lock_guard<std::mutex> guard{st.table_mtx};
  auto i = st.inodes.find(std::make_pair(dev, ino));
  return i == st.inodes.end() ? nullptr : i->second.get();
}

/// Sends a request that must wait to the file's database actor (or, before the route is known,
/// to the registry, which tells the sink the route) and blocks until it is answered.
template <class Atom, class... Ts>
void own_wait(drive::impl& st, inode& node, const db_location& loc, own_answer& answer,
              lock_reply_sink_ptr sink, Atom atm, Ts... xs) {
  if (auto db = node.slot->get())
    caf::anon_send(db, atm, xs..., std::move(sink));
  else
    caf::anon_send(st.registry, atm, loc, xs..., std::move(sink));
  answer.wait();
}

} // namespace

std::optional<int> drive::own_lock(dev_t dev, ino_t ino, int cmd, struct flock& fl,
                                   uint64_t owner, bool writable, int fd) {
  auto& st = *impl_;
  if (!st.mounted || fl.l_whence != SEEK_SET || fl.l_start < 0 || fl.l_len < 0)
    return std::nullopt;
  auto* node = known_inode(st, dev, ino);
  lock_request r;
  db_location loc;
  if (node == nullptr
      || !make_request(st, *node, fl, owner, static_cast<uint32_t>(getpid()), writable, fd, r, loc))
    return std::nullopt;
  st.ops[op_own_lock].fetch_add(1, std::memory_order_relaxed);
  auto fast = node->slot->fast_path();
  if (cmd == F_GETLK) {
    if (fast)
      if (auto decided = fast->try_getlk(r)) {
        to_flock(*decided, fl);
        return 0;
      }
  } else {
    r.sleep = cmd == F_SETLKW;
    if (fast)
      if (auto decided = fast->try_setlk(r))
        return *decided;
  }
  st.ops[op_own_lock_wait].fetch_add(1, std::memory_order_relaxed);
  auto answer = std::make_shared<own_answer>();
  auto sink = std::make_shared<own_lock_sink>(answer, cmd == F_GETLK ? ENOLCK : EAGAIN, node->slot);
  if (cmd == F_GETLK) {
    own_wait(st, *node, loc, *answer, std::move(sink), getlk_atom_v, r);
    to_flock(answer->lock, fl);
  } else {
    own_wait(st, *node, loc, *answer, std::move(sink), lock_atom_v, r);
  }
  return answer->err;
}

void drive::own_flush(dev_t dev, ino_t ino, uint64_t owner) {
  auto& st = *impl_;
  auto* node = st.mounted ? known_inode(st, dev, ino) : nullptr;
  db_location loc;
  file_role role;
  if (node == nullptr || !node->locked || !route_of(st, *node, loc, role))
    return;
  if (auto fast = node->slot->fast_path(); fast && fast->try_flush(owner, role))
    return;
  auto answer = std::make_shared<own_answer>();
  own_wait(st, *node, loc, *answer, std::make_shared<own_lock_sink>(answer, 0, nullptr),
           caf::flush_atom_v, owner, role);
}

bool drive::invalidate(dev_t dev, ino_t ino, int64_t off, int64_t len, bool resized) {
  auto* node = known_inode(*impl_, dev, ino);
  if (node == nullptr)
    return false; // the kernel caches nothing of a file it does not know
  std::atomic_thread_fence(std::memory_order_seq_cst); // the write before, the flag after
  if (!node->pages_cached.load()) {
    if (!resized)
      return false; // no page to drop, and the size the kernel knows is still true
    off = -1;       // attributes only
  }
  auto nodeid = reinterpret_cast<fuse_ino_t>(node);
  // A node id forgotten meanwhile is harmless: the kernel finds no inode for it.
  std::shared_lock<std::shared_mutex> guard{impl_->gate->mtx};
  if (!impl_->gate->open || !impl_->mounted)
    return false;
  int rc = fuse_lowlevel_notify_inval_inode(impl_->session, nodeid, off, len);
  if (rc != 0 && rc != -ENOENT)
    spdlog::warn("drive: cache invalidation failed: {}", std::strerror(-rc));
  return true;
}

void drive::unmount() {
  if (!impl_ || !impl_->mounted.exchange(false))
    return;
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
    abort_connection(impl_->connection);
    if (!wait_for_loop(std::chrono::milliseconds{3000})) {
      // Leave the threads and the session to the process exit, which closes /dev/fuse.
      spdlog::warn("the FUSE loop did not stop; leaving it to the process exit");
      impl_->loop.detach();
      impl_.release();
      return;
    }
  }
  if (impl_->loop.joinable())
    impl_->loop.join();
  kernel_io::finish();
  // The loop is over: now the session's descriptor can go (the mount is already detached).
  fuse_session_unmount(impl_->session);
  {
    std::unique_lock<std::shared_mutex> guard{impl_->gate->mtx};
    impl_->gate->open = false;
  }
  fuse_session_destroy(impl_->session);
  for (auto& [key, node] : impl_->inodes)
    close(node->fd);
  impl_->inodes.clear();
  close(impl_->root.fd);
  spdlog::info("drive unmounted from {}", impl_->cfg.mount);
}

} // namespace litedrive
