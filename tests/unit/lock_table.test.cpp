#define CAF_SUITE lock_table
#include <caf/test/unit_test.hpp>

#include <cerrno>

#include "actors/lock_table.hpp"
#include "actors/wait_graph.hpp"

using namespace litedrive;
using namespace litedrive::sqlite_bytes;

namespace {

struct fixture {
  lock_table table{std::chrono::milliseconds{1000}};
  std::vector<lock_reply> replies;
  uint64_t next_id = 1;
  lock_table::clock::time_point now = lock_table::clock::now();

  lock_request req(uint64_t owner, lock_kind kind, uint64_t start, uint64_t end,
                   file_role file = file_role::main) {
    lock_request r;
    r.id = next_id++;
    r.owner = owner;
    r.pid = static_cast<uint32_t>(owner);
    r.kind = kind;
    r.start = start;
    r.end = end;
    r.file = file;
    r.fh = owner * 10;
    return r;
  }

  /// Returns the immediate answer, or -1 if the request waits.
  int set(const lock_request& r) {
    auto answer = table.setlk(r, now, replies);
    return answer ? *answer : -1;
  }

  // SQLite's rollback-mode steps, as the unix VFS issues them.
  int shared_begin(uint64_t o, bool writable = true) {
    auto r = req(o, lock_kind::read, pending, pending);
    r.writable = writable;
    return set(r);
  }
  int shared_range(uint64_t o) { return set(req(o, lock_kind::read, shared_first, shared_last)); }
  int unlock_pending(uint64_t o) { return set(req(o, lock_kind::unlock, pending, pending)); }
  int reserved_lock(uint64_t o) { return set(req(o, lock_kind::write, reserved, reserved)); }
  int exclusive_pending(uint64_t o, bool hot = false) {
    auto r = req(o, lock_kind::write, pending, pending);
    r.hot_journal = hot;
    return set(r);
  }
  int unlock_all(uint64_t o) { return set(req(o, lock_kind::unlock, 0, to_eof)); }
  bool granted(uint64_t id) {
    for (auto& r : replies)
      if (r.id == id && r.err == 0) return true;
    return false;
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(lock_table_tests, fixture)

CAF_TEST(posix semantics split merge and conflicts) {
  CAF_CHECK_EQUAL(set(req(1, lock_kind::write, 0, 99)), 0);
  CAF_CHECK_EQUAL(set(req(2, lock_kind::read, 50, 60)), EAGAIN); // plain range: try-lock fails
  CAF_CHECK_EQUAL(set(req(1, lock_kind::unlock, 40, 69)), 0);    // split into [0,39] [70,99]
  CAF_CHECK_EQUAL(table.locks().size(), 2u);
  CAF_CHECK_EQUAL(set(req(2, lock_kind::read, 50, 60)), 0);
  CAF_CHECK_EQUAL(set(req(1, lock_kind::write, 40, 45)), 0); // merges with [0,39]
  CAF_CHECK_EQUAL(table.locks().size(), 3u);
  auto conflict = table.getlk(req(3, lock_kind::write, 55, 55));
  CAF_REQUIRE(conflict);
  CAF_CHECK_EQUAL(conflict->owner, 2u);
  CAF_CHECK(table.getlk(req(3, lock_kind::read, 0, 10)).has_value()); // owner 1 holds WR there
  CAF_CHECK(!table.getlk(req(2, lock_kind::read, 50, 60)));           // own locks never conflict
}

CAF_TEST(rollback writers are serialized per transaction) {
  // Owner 1 takes SHARED and RESERVED.
  CAF_CHECK_EQUAL(shared_begin(1), 0);
  CAF_CHECK_EQUAL(shared_range(1), 0);
  CAF_CHECK_EQUAL(unlock_pending(1), 0);
  CAF_CHECK_EQUAL(reserved_lock(1), 0);
  // Owner 2, a read-write owner, must wait for the token instead of taking SHARED.
  auto waiting = req(2, lock_kind::read, pending, pending);
  CAF_CHECK_EQUAL(set(waiting), -1);
  // A read-only owner is exempt: it reads concurrently.
  CAF_CHECK_EQUAL(shared_begin(3, false), 0);
  CAF_CHECK_EQUAL(shared_range(3), 0);
  CAF_CHECK_EQUAL(unlock_pending(3), 0);
  // Owner 1 goes EXCLUSIVE: PENDING at once (it holds RESERVED), the SHARED range waits for 3.
  CAF_CHECK_EQUAL(exclusive_pending(1), 0);
  auto excl = req(1, lock_kind::write, shared_first, shared_last);
  CAF_CHECK_EQUAL(set(excl), -1);
  CAF_CHECK_EQUAL(unlock_all(3), 0);
  CAF_CHECK(granted(excl.id));
  CAF_CHECK(!granted(waiting.id));
  // Commit: owner 1 drops everything, owner 2 gets its turn.
  CAF_CHECK_EQUAL(unlock_all(1), 0);
  CAF_CHECK(granted(waiting.id));
}

CAF_TEST(exclusive without reserved fails fast unless a hot journal waits for it) {
  CAF_CHECK_EQUAL(shared_begin(1, false), 0);
  CAF_CHECK_EQUAL(shared_range(1), 0);
  CAF_CHECK_EQUAL(unlock_pending(1), 0);
  CAF_CHECK_EQUAL(shared_begin(2, false), 0);
  CAF_CHECK_EQUAL(shared_range(2), 0);
  CAF_CHECK_EQUAL(unlock_pending(2), 0);
  CAF_CHECK_EQUAL(exclusive_pending(2), 0); // nobody holds PENDING: granted
  auto excl = req(2, lock_kind::write, shared_first, shared_last);
  CAF_CHECK_EQUAL(set(excl), EAGAIN); // opportunistic: fail at once
  auto hot = req(2, lock_kind::write, shared_first, shared_last);
  hot.hot_journal = true;
  CAF_CHECK_EQUAL(set(hot), -1); // hot-journal rollback: wait for readers
  CAF_CHECK_EQUAL(unlock_all(1), 0);
  CAF_CHECK(granted(hot.id));
}

CAF_TEST(wal writers wait for the write lock and serialize on read marks) {
  auto mark = [&](uint64_t o) {
    auto r = req(o, lock_kind::read, shm_read_first + 1, shm_read_first + 1, file_role::shm);
    r.wal = true;
    return r;
  };
  auto write_lock = [&](uint64_t o) {
    auto r = req(o, lock_kind::write, shm_write, shm_write, file_role::shm);
    r.wal = true;
    return r;
  };
  CAF_CHECK_EQUAL(set(mark(1)), 0);
  CAF_CHECK_EQUAL(set(write_lock(1)), 0);
  auto other = mark(2);
  CAF_CHECK_EQUAL(set(other), -1); // the token: another writer is in a transaction
  auto recover = req(2, lock_kind::write, shm_recover, shm_recover, file_role::shm);
  CAF_CHECK_EQUAL(set(recover), 0); // unrelated try-locks stay POSIX
  CAF_CHECK_EQUAL(set(req(1, lock_kind::unlock, shm_write, shm_write, file_role::shm)), 0);
  CAF_CHECK(!granted(other.id)); // still holds its read mark
  CAF_CHECK_EQUAL(set(req(1, lock_kind::unlock, 0, to_eof, file_role::shm)), 0);
  CAF_CHECK(granted(other.id));
  // WAL close-time checkpoint attempt: EXCLUSIVE on the main file fails at once.
  auto excl = req(3, lock_kind::write, pending, pending);
  excl.wal = true;
  CAF_CHECK_EQUAL(set(req(4, lock_kind::read, shared_first, shared_last)), 0);
  CAF_CHECK_EQUAL(set(excl), 0); // PENDING itself is free: SQLite's next step is the range
  CAF_CHECK_EQUAL(set(req(3, lock_kind::unlock, pending, pending)), 0);
  auto excl2 = req(3, lock_kind::write, shared_first, shared_last);
  excl2.wal = true;
  CAF_CHECK_EQUAL(set(excl2), EAGAIN);
}

CAF_TEST(waiters are served in fifo order) {
  CAF_CHECK_EQUAL(reserved_lock(1), 0);
  auto second = req(2, lock_kind::write, reserved, reserved);
  auto third = req(3, lock_kind::write, reserved, reserved);
  CAF_CHECK_EQUAL(set(second), -1);
  CAF_CHECK_EQUAL(set(third), -1);
  CAF_CHECK_EQUAL(unlock_all(1), 0);
  CAF_CHECK(granted(second.id));
  CAF_CHECK(!granted(third.id));
  CAF_CHECK_EQUAL(unlock_all(2), 0);
  CAF_CHECK(granted(third.id));
}

CAF_TEST(flush drops the owners locks on that file only) {
  CAF_CHECK_EQUAL(reserved_lock(1), 0);
  CAF_CHECK_EQUAL(set(req(1, lock_kind::write, shm_write, shm_write, file_role::shm)), 0);
  auto waiter = req(2, lock_kind::write, reserved, reserved);
  CAF_CHECK_EQUAL(set(waiter), -1);
  table.release_owner(1, file_role::shm, replies);
  CAF_CHECK(!granted(waiter.id));
  table.release_owner(1, file_role::main, replies);
  CAF_CHECK(granted(waiter.id));
}

CAF_TEST(release of a handle drops ofd leftovers) {
  auto ofd = req(7, lock_kind::write, 0, 10);
  ofd.fh = 700;
  CAF_CHECK_EQUAL(set(ofd), 0);
  table.release_handle(700, replies);
  CAF_CHECK(table.locks().empty());
}

CAF_TEST(interrupts timeouts and deadlock aborts answer the waiter) {
  CAF_CHECK_EQUAL(reserved_lock(1), 0);
  auto a = req(2, lock_kind::write, reserved, reserved);
  auto b = req(3, lock_kind::write, reserved, reserved);
  auto c = req(4, lock_kind::write, reserved, reserved);
  c.sleep = true; // F_SETLKW: never capped
  CAF_CHECK_EQUAL(set(a), -1);
  CAF_CHECK_EQUAL(set(b), -1);
  CAF_CHECK_EQUAL(set(c), -1);
  table.interrupt(a.id, replies);
  CAF_CHECK_EQUAL(replies.back().err, EINTR);
  table.expire(now + std::chrono::seconds{2}, replies);
  CAF_CHECK_EQUAL(replies.back().id, b.id);
  CAF_CHECK_EQUAL(replies.back().err, EAGAIN);
  CAF_CHECK_EQUAL(table.waiters().size(), 1u); // the F_SETLKW waiter stays
  table.abort_waiter(c.id, replies);
  CAF_CHECK_EQUAL(replies.back().err, EDEADLK);
  CAF_CHECK_EQUAL(table.stats().interrupts, 1u);
  CAF_CHECK_EQUAL(table.stats().timeouts, 1u);
  CAF_CHECK_EQUAL(table.stats().deadlocks, 1u);
}

CAF_TEST(wal read marks that wait only for the token are granted at the cap) {
  auto shm = [&](uint64_t o, lock_kind k, uint64_t byte, bool writable = true) {
    auto r = req(o, k, byte, byte, file_role::shm);
    r.wal = true;
    r.writable = writable;
    return r;
  };
  // Owner 1 writes: read mark 124 and the WAL write lock.
  CAF_CHECK_EQUAL(set(shm(1, lock_kind::read, shm_read_first + 1)), 0);
  CAF_CHECK_EQUAL(set(shm(1, lock_kind::write, shm_write)), 0);
  // Owner 2 (read-write) waits for the token to take its read mark...
  auto mark = shm(2, lock_kind::read, shm_read_first + 1);
  CAF_CHECK_EQUAL(set(mark), -1);
  // ...and past the cap it is granted, not refused (SQLite would retry a refusal 100 times).
  table.expire(now + std::chrono::milliseconds{1001}, replies);
  CAF_CHECK(granted(mark.id));
  CAF_CHECK(table.waiters().empty());
  // Its transaction's cap is spent: the WAL write lock, a real conflict, fails at the next look.
  auto write = shm(2, lock_kind::write, shm_write);
  CAF_CHECK_EQUAL(set(write), -1);
  table.expire(now + std::chrono::milliseconds{1002}, replies);
  CAF_CHECK_EQUAL(replies.back().id, write.id);
  CAF_CHECK_EQUAL(replies.back().err, EAGAIN);
  // Once owner 2's transaction is over (its read mark gone), its next one gets a whole cap.
  CAF_CHECK_EQUAL(set(shm(2, lock_kind::unlock, shm_read_first + 1)), 0);
  auto again = shm(2, lock_kind::read, shm_read_first + 1);
  CAF_CHECK_EQUAL(set(again), -1); // (the fixture's clock stands still: `now` is its start)
  table.expire(now + std::chrono::milliseconds{999}, replies);
  CAF_CHECK(!granted(again.id));
  CAF_CHECK_EQUAL(table.waiters().size(), 1u);
}

CAF_TEST(a readonly shm connection is a reader) {
  auto shm = [&](uint64_t o, lock_kind k, uint64_t first, uint64_t last, bool writable = true) {
    auto r = req(o, k, first, last, file_role::shm);
    r.wal = true;
    r.writable = writable;
    return r;
  };
  // Owner 1 opened the -shm read-only (readonly_shm=1) though its main file is read-write.
  auto main_rw = req(1, lock_kind::read, shared_first, shared_last);
  main_rw.wal = true;
  CAF_CHECK_EQUAL(set(main_rw), 0);
  CAF_CHECK_EQUAL(set(shm(1, lock_kind::read, shm_read_first, shm_read_first, false)), 0);
  // A writer's read mark does not wait for it...
  CAF_CHECK_EQUAL(set(shm(2, lock_kind::read, shm_read_first + 1, shm_read_first + 1)), 0);
  CAF_CHECK_EQUAL(set(shm(2, lock_kind::write, shm_write, shm_write)), 0);
  // ...nor does the read-only one wait for the writer.
  CAF_CHECK_EQUAL(set(shm(1, lock_kind::unlock, shm_read_first, shm_read_first, false)), 0);
  CAF_CHECK_EQUAL(set(shm(1, lock_kind::read, shm_read_first + 1, shm_read_first + 1, false)), 0);
  CAF_CHECK_EQUAL(set(shm(2, lock_kind::unlock, 0, to_eof)), 0);
}

CAF_TEST(the wait for graph finds a cycle across two databases) {
  using wait_graph::find_victim;
  // Owner 1 waits for 2 (on database A), 2 waits for 1 (on database B).
  CAF_CHECK(!find_victim({{11, 1, {2}, 2, 1}}));
  auto victim = find_victim({{11, 1, {2}, 2, 1}, {22, 2, {1}, 0, 2}});
  CAF_REQUIRE(victim);
  CAF_CHECK_EQUAL(*victim, 22u); // the better-ranked victim (rank 0)
  // With equal ranks the youngest loses.
  auto youngest = find_victim({{11, 1, {2}, 2, 1}, {33, 2, {1}, 2, 9}});
  CAF_REQUIRE(youngest);
  CAF_CHECK_EQUAL(*youngest, 33u);
  // A longer cycle through a third owner, and an owner waiting in two places at once.
  auto three =
      find_victim({{1, 1, {2}, 3, 1}, {2, 2, {3}, 3, 2}, {3, 3, {9}, 3, 3}, {4, 3, {1}, 3, 4}});
  CAF_REQUIRE(three);
  CAF_CHECK_EQUAL(*three, 4u);
  CAF_CHECK(!find_victim({{1, 1, {2}, 3, 1}, {2, 2, {3}, 3, 2}, {3, 3, {9}, 3, 3}}));
}

CAF_TEST_FIXTURE_SCOPE_END()
