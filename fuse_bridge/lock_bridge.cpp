#include "fuse_bridge/lock_bridge.hpp"

#include <fcntl.h>

#include <cerrno>
#include <mutex>
#include <unordered_map>

#include "actors/lock_requests.hpp"

namespace litedrive {

/// Lock requests that may still be interrupted, by FUSE request. libfuse calls the interrupt
/// callback holding the request's lock, possibly concurrently with (or just after) the answer,
/// so the callback never touches a sink: it finds the request's service and id here. An answer
/// removes its entry before it replies (so a request pointer reused later starts afresh).
/// Lock order: libfuse's request lock, then this mutex; the mutex is never held while calling
/// the lock service (whose answers come back here).
class interrupt_table {
public:
  void add(fuse_req_t req, std::weak_ptr<lock_service> locks, uint64_t id) {
    std::lock_guard<std::mutex> guard{mtx_};
    pending_[req] = entry{std::move(locks), id, false};
  }

  void remove(fuse_req_t req) {
    std::lock_guard<std::mutex> guard{mtx_};
    pending_.erase(req);
  }

  /// A signal came for `req`: interrupt its request if it waits (and note the signal, in case
  /// the request has not reached its service yet).
  void signal(fuse_req_t req) {
    std::shared_ptr<lock_service> locks;
    uint64_t id = 0;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      auto i = pending_.find(req);
      if (i == pending_.end()) return;
      i->second.signaled = true;
      locks = i->second.locks.lock();
      id = i->second.id;
    }
    if (locks) locks->interrupt(id);
  }

  /// After the request reached its service: a signal that came before found nothing to
  /// interrupt, so it is delivered now (if the request is still unanswered).
  void deliver_early_signal(fuse_req_t req, uint64_t id) {
    std::shared_ptr<lock_service> locks;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      auto i = pending_.find(req);
      if (i == pending_.end() || i->second.id != id || !i->second.signaled) return;
      locks = i->second.locks.lock();
    }
    if (locks) locks->interrupt(id);
  }

private:
  struct entry {
    std::weak_ptr<lock_service> locks;
    uint64_t id;
    bool signaled;
  };
  std::mutex mtx_;
  std::unordered_map<fuse_req_t, entry> pending_;
};

namespace lock_bridge {

namespace {

/// Answers the kernel for one lock request, exactly once, from whichever thread decides.
/// Destroyed unanswered (the daemon stops with it waiting): answers EAGAIN, so no process is
/// left in fcntl() forever.
class fuse_lock_sink final : public lock_reply_sink {
public:
  fuse_lock_sink(fuse_req_t req, std::shared_ptr<reply_gate> gate,
                 std::shared_ptr<interrupt_table> interrupts)
      : req_(req), gate_(std::move(gate)), interrupts_(std::move(interrupts)) {}

  ~fuse_lock_sink() override { reply(EAGAIN); }

  void reply(int err) override {
    if (done_.exchange(true)) return;
    interrupts_->remove(req_); // before the reply frees the request
    std::shared_lock<std::shared_mutex> guard{gate_->mtx};
    if (gate_->open) fuse_reply_err(req_, err);
  }

private:
  fuse_req_t req_;
  std::shared_ptr<reply_gate> gate_;
  std::shared_ptr<interrupt_table> interrupts_;
  std::atomic<bool> done_{false};
};

void on_interrupt(fuse_req_t req, void* data) {
  // `data` is the interrupt table, alive as long as the session.
  static_cast<interrupt_table*>(data)->signal(req);
}

/// The one routing function: the lock service of the database `node` belongs to (its main
/// file's, for a -shm), found by the backing file's canonical path and fixed for the inode's
/// life; null for a file outside the store.
std::shared_ptr<lock_service> locks_for(drive::impl& st, inode& node) {
  std::lock_guard<std::mutex> guard{node.locks_mtx};
  if (!node.locks) {
    auto path = lock_requests::path_of(node.fd);
    if (path.compare(0, st.cfg.store.size() + 1, st.cfg.store + "/") != 0) return nullptr;
    auto id = lock_requests::identify(path);
    node.role = id.role;
    node.db_path = id.db_path;
    node.locks = st.locks->get(id.db_path);
  }
  return node.locks;
}

/// The lock request for the kernel's `fl` (already a SEEK_SET range) through handle `fi`.
std::shared_ptr<lock_service> build(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi,
                                    const struct flock* fl, lock_request& r) {
  auto& st = state(req);
  auto& node = get_inode(req, ino);
  auto locks = locks_for(st, node);
  if (!locks || !lock_requests::from_flock(*fl, r)) return nullptr;
  auto& h = get_handle(fi);
  r.id = st.locks->next_request_id();
  r.file = node.role;
  r.owner = fi->lock_owner;
  r.pid = static_cast<uint32_t>(fuse_req_ctx(req)->pid);
  r.writable = (h.flags & O_ACCMODE) != O_RDONLY;
  r.fh = h.id;
  lock_requests::describe(r, h.fd, node.db_path);
  return locks;
}

} // namespace

std::shared_ptr<interrupt_table> make_interrupt_table() {
  return std::make_shared<interrupt_table>();
}

void getlk(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, struct flock* fl) {
  state(req).count(op_getlk);
  lock_request r;
  auto locks = build(req, ino, fi, fl, r);
  if (!locks) return (void)fuse_reply_err(req, ENOLCK);
  struct flock answer {};
  lock_requests::to_flock(locks->getlk(r), answer);
  fuse_reply_lock(req, &answer);
}

void setlk(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, struct flock* fl, int sleep) {
  auto& st = state(req);
  st.count(op_setlk);
  lock_request r;
  auto locks = build(req, ino, fi, fl, r);
  if (!locks) return (void)fuse_reply_err(req, ENOLCK);
  r.sleep = sleep != 0;
  if (auto answer = locks->try_setlk(r)) return (void)fuse_reply_err(req, *answer);
  auto sink = std::make_shared<fuse_lock_sink>(req, st.gate, st.interrupts);
  // Interruptible before it can wait. libfuse calls on_interrupt at once if a signal already
  // came, holding the request's lock: no lock of ours is held here.
  st.interrupts->add(req, locks, r.id);
  fuse_req_interrupt_func(req, on_interrupt, st.interrupts.get());
  locks->setlk(r, std::move(sink));
  // `req` may be answered and gone by now: only the table may look at it.
  st.interrupts->deliver_early_signal(req, r.id);
}

void flush(inode& node, uint64_t owner) {
  if (auto locks = node.lock_service_if_any()) locks->flush(owner, node.role);
}

void release(inode& node, const file_handle& h) {
  if (auto locks = node.lock_service_if_any()) locks->release(h.id);
}

} // namespace lock_bridge

} // namespace litedrive
