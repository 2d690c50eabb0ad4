#include "actors/lock_table.hpp"

#include <algorithm>
#include <cerrno>

namespace litedrive {

namespace {

using namespace sqlite_bytes;

bool overlap(uint64_t a0, uint64_t a1, uint64_t b0, uint64_t b1) {
  return a0 <= b1 && b0 <= a1;
}

bool single(const lock_request& r, uint64_t byte) {
  return r.start == byte && r.end == byte;
}

bool in_range(const lock_request& r, uint64_t first, uint64_t last) {
  return r.start >= first && r.end <= last;
}

/// A request that starts a transaction of a read-write owner and so needs the token:
/// rollback mode, the RD lock on PENDING that begins SHARED; WAL mode, a read mark on -shm.
bool token_request(const lock_request& r) {
  if (r.kind != lock_kind::read || r.sleep) return false;
  if (r.file == file_role::main) return !r.wal && single(r, pending);
  return r.start == r.end && in_range(r, shm_read_first, shm_read_last);
}

/// Whether a held lock is (part of) a transaction token in the sense of token_request().
bool holds_token_range(const held_lock& l, file_role file, bool wal) {
  if (l.file != file) return false;
  if (file == file_role::main) return !wal && overlap(l.start, l.end, pending, shared_last);
  // The WAL write lock or a read mark. (A write lock on a read mark holds no snapshot, but it is
  // how a connection moves a mark on its way to one: letting others pass it made SQLite's
  // read-mark retries under contention run past their limit, SQLITE_PROTOCOL.)
  return overlap(l.start, l.end, shm_write, shm_write)
         || overlap(l.start, l.end, shm_read_first, shm_read_last);
}

bool kinds_conflict(lock_kind a, lock_kind b) {
  return a == lock_kind::write || b == lock_kind::write;
}

} // namespace

// -- classification -------------------------------------------------------------------------------

lock_table::on_conflict lock_table::classify(const lock_request& r) const {
  if (r.sleep) return on_conflict::wait; // F_SETLKW waits by definition
  if (r.file == file_role::main) {
    if (r.kind == lock_kind::read && (single(r, pending) || in_range(r, shared_first, shared_last)))
      return on_conflict::wait; // acquiring SHARED
    if (r.kind == lock_kind::write && single(r, reserved)) return on_conflict::wait; // RESERVED
    if (r.kind == lock_kind::write
        && (single(r, pending) || in_range(r, shared_first, shared_last))) {
      // EXCLUSIVE. A writer holding RESERVED will get it once readers drain; so will a
      // connection rolling back a hot journal. Anything else (opportunistic attempts, WAL's
      // close-time checkpoint) expects to fail and must not hang.
      if (r.wal) return on_conflict::fail;
      if (r.hot_journal
          || owner_holds(r.owner, file_role::main, lock_kind::write, reserved, reserved))
        return on_conflict::wait;
      return on_conflict::fail;
    }
    return on_conflict::fail;
  }
  if (r.kind == lock_kind::write && single(r, shm_write))
    return on_conflict::wait; // WAL write lock
  if (r.kind == lock_kind::read && r.start == r.end && in_range(r, shm_read_first, shm_read_last))
    return on_conflict::wait; // read mark
  return on_conflict::fail;   // WR read marks, CKPT, RECOVER, DMS: SQLite retries itself
}

bool lock_table::writer(uint64_t owner) const {
  // Unknown owners (e.g. a -shm lock before any main-file lock) count as writers: the safe side.
  auto i = owner_writable_.find(owner);
  if (i != owner_writable_.end() && !i->second) return false;
  // A connection that opened the -shm read-only (readonly_shm) cannot write, whatever its main
  // file allows: the kernel refuses it the WAL write lock on a read-only descriptor.
  auto s = owner_shm_writable_.find(owner);
  return s == owner_shm_writable_.end() || s->second;
}

bool lock_table::requester_is_writer(const lock_request& r) const {
  // On the main file the handle the lock comes through decides; on the -shm, that handle too.
  if (r.file == file_role::main)
    return r.writable || (owner_writable_.count(r.owner) > 0 && owner_writable_.at(r.owner));
  return r.writable && writer(r.owner);
}

// -- conflicts ------------------------------------------------------------------------------------

bool lock_table::owner_holds(uint64_t owner, file_role file, lock_kind kind, uint64_t start,
                             uint64_t end) const {
  for (const auto& l : locks_)
    if (l.owner == owner && l.file == file && l.kind == kind && l.start <= start && l.end >= end)
      return true;
  return false;
}

bool lock_table::conflicts_with_held(const lock_request& r) const {
  for (const auto& l : locks_)
    if (l.file == r.file && l.owner != r.owner && overlap(l.start, l.end, r.start, r.end)
        && kinds_conflict(l.kind, r.kind))
      return true;
  return false;
}

bool lock_table::token_blocked(const lock_request& r) const {
  if (!token_request(r) || !requester_is_writer(r)) return false;
  for (const auto& l : locks_)
    if (l.owner != r.owner && holds_token_range(l, r.file, r.wal) && writer(l.owner)) return true;
  return false;
}

bool lock_table::blocked_by_owner(const waiter& w, uint64_t owner) const {
  for (const auto& l : locks_) {
    if (l.owner != owner || l.file != w.req.file) continue;
    if (overlap(l.start, l.end, w.req.start, w.req.end) && kinds_conflict(l.kind, w.req.kind))
      return true;
    if (token_request(w.req) && holds_token_range(l, w.req.file, w.req.wal) && writer(owner))
      return true;
  }
  return false;
}

/// FIFO per file: `req` may not be granted ahead of an earlier waiter it would block (or that
/// competes with it for the token), unless that waiter is blocked by req's own owner anyway.
bool lock_table::must_yield(const lock_request& req, size_t queue_limit) const {
  for (size_t i = 0; i < queue_limit && i < queue_.size(); ++i) {
    const auto& w = queue_[i];
    if (w.req.file != req.file || w.req.owner == req.owner) continue;
    bool competes = (overlap(w.req.start, w.req.end, req.start, req.end)
                     && kinds_conflict(w.req.kind, req.kind))
                    || (token_request(w.req) && token_request(req) && requester_is_writer(w.req)
                        && requester_is_writer(req));
    if (competes && !blocked_by_owner(w, req.owner)) return true;
  }
  return false;
}

bool lock_table::grantable(const lock_request& req, size_t queue_limit) const {
  return !conflicts_with_held(req) && !token_blocked(req) && !must_yield(req, queue_limit);
}

// -- changing the table ---------------------------------------------------------------------------

namespace {

/// Removes `owner`'s locks on `file` in [start, end], splitting the ones that stick out.
void remove_range(std::vector<held_lock>& locks, uint64_t owner, file_role file, uint64_t start,
                  uint64_t end) {
  std::vector<held_lock> keep;
  keep.reserve(locks.size() + 1);
  for (const auto& l : locks) {
    if (l.owner != owner || l.file != file || !overlap(l.start, l.end, start, end)) {
      keep.push_back(l);
      continue;
    }
    if (l.start < start) {
      auto left = l;
      left.end = start - 1;
      keep.push_back(left);
    }
    if (end != to_eof && l.end > end) {
      auto right = l;
      right.start = end + 1;
      keep.push_back(right);
    }
  }
  locks.swap(keep);
}

} // namespace

void lock_table::apply(const lock_request& req, clock::time_point now) {
  remove_range(locks_, req.owner, req.file, req.start, req.end);
  if (req.kind == lock_kind::unlock) {
    end_transaction_if_done(req.owner);
    return;
  }
  held_lock added{req.file, req.owner, req.pid, req.kind, req.start, req.end, now};
  // Merge with adjacent or overlapping locks of the same owner and kind (POSIX coalescing).
  for (auto i = locks_.begin(); i != locks_.end();) {
    bool touches = i->owner == added.owner && i->file == added.file && i->kind == added.kind
                   && (overlap(i->start, i->end, added.start, added.end)
                       || (i->end != to_eof && i->end + 1 == added.start)
                       || (added.end != to_eof && added.end + 1 == i->start));
    if (touches) {
      added.start = std::min(added.start, i->start);
      added.end = std::max(added.end, i->end);
      added.since = std::min(added.since, i->since);
      i = locks_.erase(i);
    } else {
      ++i;
    }
  }
  locks_.push_back(added);
  ++counters_.grants;
  if (req.fh != 0) {
    auto& owners = handle_owners_[req.fh];
    if (std::find(owners.begin(), owners.end(), req.owner) == owners.end())
      owners.push_back(req.owner);
  }
}

void lock_table::grant_pass(clock::time_point now, std::vector<lock_reply>& replies) {
  for (size_t i = 0; i < queue_.size();) {
    const auto& w = queue_[i];
    if (grantable(w.req, i)) {
      apply(w.req, now);
      replies.push_back({w.req.id, 0});
      queue_.erase(queue_.begin() + static_cast<ptrdiff_t>(i));
    } else {
      ++i;
    }
  }
}

std::optional<int> lock_table::decide_at_once(const lock_request& req, clock::time_point now,
                                              std::vector<lock_reply>& replies) {
  if (req.end < req.start) return EINVAL;
  if (req.kind == lock_kind::unlock) {
    apply(req, now);
    grant_pass(now, replies);
    return 0;
  }
  if (req.file == file_role::main) {
    owner_writable_[req.owner] = owner_writable_[req.owner] || req.writable;
    wal_ = req.wal;
  } else
    owner_shm_writable_[req.owner] = owner_shm_writable_[req.owner] || req.writable;
  auto policy = classify(req);
  bool free_now = !conflicts_with_held(req) && !token_blocked(req);
  // Try-locks that fail at once follow plain POSIX (no FIFO); waiting ones keep their turn.
  if (free_now && (policy == on_conflict::fail || !must_yield(req, queue_.size()))) {
    apply(req, now);
    // An upgrade or a change of range can unblock nobody, but a downgrade (WR -> RD) can.
    grant_pass(now, replies);
    return 0;
  }
  if (policy == on_conflict::fail || (!req.sleep && max_wait_.count() == 0)) {
    ++counters_.fast_fails;
    return EAGAIN;
  }
  return std::nullopt;
}

std::optional<int> lock_table::setlk(const lock_request& req, clock::time_point now,
                                     std::vector<lock_reply>& replies) {
  if (auto answer = decide_at_once(req, now, replies)) return answer;
  ++counters_.waits;
  // F_SETLKW waits as long as POSIX says (until granted, interrupted or deadlocked); the
  // F_SETLK waits litedrive adds are capped, once per transaction: the cap counts from the first
  // wait of the owner's transaction, so that SHARED, RESERVED and EXCLUSIVE (or a read mark and
  // then the WAL write lock) do not each get the whole cap.
  auto deadline = clock::time_point::max();
  if (!req.sleep) {
    // An owner outside any transaction starts a new one (a wait that failed before left no
    // lock to end it with).
    if (!in_transaction(req.owner)) txn_wait_start_.erase(req.owner);
    auto started = txn_wait_start_.emplace(req.owner, now).first->second;
    deadline = started + max_wait_;
  }
  queue_.push_back({req, now, deadline});
  return std::nullopt;
}

std::optional<int> lock_table::setlk_now(const lock_request& req, clock::time_point now,
                                         std::vector<lock_reply>& replies) {
  return decide_at_once(req, now, replies);
}

getlk_answer lock_table::getlk(const lock_request& req) const {
  for (const auto& l : locks_)
    if (l.file == req.file && l.owner != req.owner && overlap(l.start, l.end, req.start, req.end)
        && kinds_conflict(l.kind, req.kind))
      return l;
  return std::nullopt;
}

void lock_table::release_owner(uint64_t owner, file_role file, std::vector<lock_reply>& replies) {
  auto before = locks_.size();
  locks_.erase(std::remove_if(locks_.begin(), locks_.end(),
                              [owner, file](const held_lock& l) {
                                return l.owner == owner && l.file == file;
                              }),
               locks_.end());
  bool still_holds = std::any_of(locks_.begin(), locks_.end(),
                                 [owner](const held_lock& l) { return l.owner == owner; });
  bool still_waiting = still_holds
                       || std::any_of(queue_.begin(), queue_.end(),
                                      [owner](const waiter& w) { return w.req.owner == owner; });
  // Owner ids are recycled quickly: forget what we learned about a process that holds nothing.
  if (!still_waiting) {
    owner_writable_.erase(owner);
    owner_shm_writable_.erase(owner);
  }
  end_transaction_if_done(owner);
  if (locks_.size() != before) grant_pass(clock::now(), replies);
}

void lock_table::release_handle(uint64_t fh, std::vector<lock_reply>& replies) {
  auto i = handle_owners_.find(fh);
  if (i == handle_owners_.end()) return;
  auto owners = std::move(i->second);
  handle_owners_.erase(i);
  // Owners still holding locks here after every process closed this handle (each close sent a
  // FLUSH that dropped its POSIX locks) are OFD owners: their locks die with the handle.
  for (auto owner : owners) {
    bool other_handle = false;
    for (const auto& [other_fh, other_owners] : handle_owners_)
      if (std::find(other_owners.begin(), other_owners.end(), owner) != other_owners.end())
        other_handle = true;
    if (!other_handle) {
      release_owner(owner, file_role::main, replies);
      release_owner(owner, file_role::shm, replies);
    }
  }
}

void lock_table::remove_waiter(uint64_t id, int err, std::vector<lock_reply>& replies) {
  for (auto i = queue_.begin(); i != queue_.end(); ++i) {
    if (i->req.id == id) {
      queue_.erase(i);
      replies.push_back({id, err});
      // Whoever waited behind it may go now.
      grant_pass(clock::now(), replies);
      return;
    }
  }
}

void lock_table::cancel_owner(uint64_t owner, file_role file, std::vector<lock_reply>& replies) {
  std::vector<uint64_t> ids;
  for (const auto& w : queue_)
    if (w.req.owner == owner && w.req.file == file) ids.push_back(w.req.id);
  for (auto id : ids)
    remove_waiter(id, EAGAIN, replies);
}

void lock_table::interrupt(uint64_t id, std::vector<lock_reply>& replies) {
  auto before = replies.size();
  remove_waiter(id, EINTR, replies);
  if (replies.size() != before) ++counters_.interrupts;
}

void lock_table::abort_waiter(uint64_t id, std::vector<lock_reply>& replies) {
  for (const auto& w : queue_) {
    if (w.req.id == id && token_only(w.req)) {
      // Waiting only for the token: granting it ends the cycle as well as a refusal would,
      // without SQLite's read-mark retries.
      ++counters_.deadlocks;
      grant_or_fail(id, clock::now(), replies);
      return;
    }
    if (w.req.id == id) {
      // Never EDEADLK to an F_SETLK: SQLite turns it into SQLITE_IOERR_LOCK ("disk I/O error");
      // EAGAIN is SQLITE_BUSY, which it handles.
      int err = w.req.sleep ? EDEADLK : EAGAIN;
      ++counters_.deadlocks;
      remove_waiter(id, err, replies);
      return;
    }
  }
}

bool lock_table::token_only(const lock_request& r) const {
  return r.file == file_role::shm && token_request(r) && !conflicts_with_held(r);
}

void lock_table::expire(clock::time_point now, std::vector<lock_reply>& replies) {
  std::vector<uint64_t> expired;
  for (const auto& w : queue_)
    if (w.deadline <= now) expired.push_back(w.req.id);
  for (auto id : expired) {
    ++counters_.timeouts;
    grant_or_fail(id, now, replies);
  }
}

void lock_table::grant_or_fail(uint64_t id, clock::time_point now,
                               std::vector<lock_reply>& replies) {
  for (auto i = queue_.begin(); i != queue_.end(); ++i) {
    if (i->req.id != id) continue;
    if (token_only(i->req)) {
      // A WAL read mark that waited only for the transaction token: POSIX would have granted it.
      // Refusing it would not end the wait: SQLite retries a refused read mark up to 100 times
      // (then SQLITE_PROTOCOL). Granted, the reader reads its snapshot; if it then writes, it
      // meets the real conflict on the WAL write lock (and SQLITE_BUSY_SNAPSHOT, as natively).
      auto req = i->req;
      queue_.erase(i);
      apply(req, now);
      replies.push_back({id, 0});
      grant_pass(now, replies);
      return;
    }
    remove_waiter(id, EAGAIN, replies);
    return;
  }
}

bool lock_table::in_transaction(uint64_t owner) const {
  // Rollback: a lock in [PENDING, SHARED_LAST]; WAL: the write lock or a read mark (the main
  // file's SHARED lasts as long as the connection).
  for (const auto& l : locks_)
    if (l.owner == owner && holds_token_range(l, l.file, wal_)) return true;
  return false;
}

void lock_table::end_transaction_if_done(uint64_t owner) {
  if (!in_transaction(owner)) txn_wait_start_.erase(owner);
}

// -- inspection -----------------------------------------------------------------------------------

std::vector<uint64_t> lock_table::blockers(const waiter& w) const {
  std::vector<uint64_t> out;
  auto add = [&out](uint64_t owner) {
    if (std::find(out.begin(), out.end(), owner) == out.end()) out.push_back(owner);
  };
  for (const auto& l : locks_) {
    if (l.owner == w.req.owner || l.file != w.req.file) continue;
    if (overlap(l.start, l.end, w.req.start, w.req.end) && kinds_conflict(l.kind, w.req.kind))
      add(l.owner);
    else if (token_request(w.req) && requester_is_writer(w.req)
             && holds_token_range(l, w.req.file, w.req.wal) && writer(l.owner))
      add(l.owner);
  }
  for (const auto& e : queue_) {
    if (&e == &w) break;
    if (e.req.file != w.req.file || e.req.owner == w.req.owner) continue;
    bool competes = (overlap(e.req.start, e.req.end, w.req.start, w.req.end)
                     && kinds_conflict(e.req.kind, w.req.kind))
                    || (token_request(e.req) && token_request(w.req));
    if (competes && !blocked_by_owner(e, w.req.owner)) add(e.req.owner);
  }
  return out;
}

int lock_table::victim_rank(const waiter& w) const {
  const auto& r = w.req;
  if (r.file == file_role::main && r.kind == lock_kind::write && single(r, reserved)
      && owner_holds(r.owner, file_role::main, lock_kind::read, shared_first, shared_last))
    return 0; // a RESERVED requester holding SHARED: the classic SQLite upgrade deadlock
  if (r.file == file_role::shm && r.kind == lock_kind::write && single(r, shm_write))
    return 1;                              // a WAL writer
  if (r.kind == lock_kind::read) return 2; // SHARED requests
  return 3;
}

} // namespace litedrive
