// A randomized test of a database's lock service (its lock table behind the one interface
// every caller uses) against a small reference model (issue 16).
//
// Simulated processes open a database's main file and -shm, lock and unlock SQLite's byte
// ranges and plain ones (F_SETLK mostly, F_SETLKW sometimes), ask F_GETLK, close files (FLUSH,
// with the RELEASE of the handle arriving later, as the kernel sends it), get interrupted, and
// exit — also while waiting, as kill -9 does — after which their lock owner id goes back to a
// small pool and is soon reused by a new process, while RELEASEs of the dead one's handles are
// still in flight. Time passes (the wait cap), and deadlocks across databases are broken through
// the wait-for graph, as the database actors do.
//
// The model is POSIX itself: per owner, file and elementary byte segment, the lock it holds. It
// changes only when the table answers a request with a grant (at once or later), and at FLUSH.
// After every step:
//   1. the table holds exactly what the model holds (grants, splits, merges, unlocks, FLUSH;
//      a stale RELEASE never drops a live process's lock);
//   2. no two owners hold conflicting locks;
//   3. the waiters are exactly the processes blocked in fcntl, and every one of them gets
//      exactly one answer;
//   4. no waiter is forgotten: one whose file nobody else locks and nobody waits ahead of is
//      granted; an F_SETLK answered EAGAIN at once had somebody else on the file;
// and at the end every wait has ended and the table is empty.
//
// LITEDRIVE_SEED replays a run (the seed is printed); LITEDRIVE_MODEL_STEPS sets its length.

#define CAF_SUITE lock_model
#include <caf/test/unit_test.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "actors/lock_service.hpp"
#include "actors/wait_graph.hpp"

using namespace litedrive;
using namespace litedrive::sqlite_bytes;

namespace {

using clock_type = lock_table::clock;

struct range {
  lock_kind kind;
  uint64_t start;
  uint64_t end;
};

/// What SQLite's unix VFS does on a main file, and some plain POSIX traffic.
const std::vector<range> main_ranges = {
    {lock_kind::read, pending, pending},           // SHARED begins
    {lock_kind::read, shared_first, shared_last},  // SHARED (or the downgrade from EXCLUSIVE)
    {lock_kind::unlock, pending, pending},         // ... and PENDING goes
    {lock_kind::write, reserved, reserved},        // RESERVED
    {lock_kind::write, pending, pending},          // PENDING on the way to EXCLUSIVE
    {lock_kind::write, shared_first, shared_last}, // EXCLUSIVE
    {lock_kind::unlock, pending, reserved},        // back to SHARED
    {lock_kind::unlock, 0, to_eof},                // NO_LOCK
    {lock_kind::write, 0, 9},                      // plain ranges
    {lock_kind::read, 5, 14},
    {lock_kind::unlock, 0, 4},
    {lock_kind::write, 100, to_eof},
    {lock_kind::read, 0, to_eof},
};

/// What it does on a -shm: single bytes (write lock, checkpoint, recover, read marks, DMS) and
/// the recovery's range.
std::vector<range> make_shm_ranges() {
  std::vector<range> out;
  for (uint64_t b = shm_write; b <= shm_dms; ++b) {
    out.push_back({lock_kind::read, b, b});
    out.push_back({lock_kind::write, b, b});
    out.push_back({lock_kind::unlock, b, b});
  }
  out.push_back({lock_kind::write, shm_checkpoint, shm_read_last});
  out.push_back({lock_kind::unlock, shm_checkpoint, shm_read_last});
  out.push_back({lock_kind::unlock, 0, to_eof});
  return out;
}
const std::vector<range> shm_ranges = make_shm_ranges();

/// The elementary segments every range of a file is a union of.
struct segments {
  std::vector<uint64_t> starts; // segment i is [starts[i], starts[i+1] - 1]; the last to EOF

  explicit segments(const std::vector<range>& ranges) {
    std::set<uint64_t> points{0};
    for (const auto& r : ranges) {
      points.insert(r.start);
      if (r.end != to_eof) points.insert(r.end + 1);
    }
    starts.assign(points.begin(), points.end());
  }

  uint64_t end_of(size_t i) const { return i + 1 < starts.size() ? starts[i + 1] - 1 : to_eof; }

  /// The segments [first, last) that make up [start, end]; fails if it does not align.
  std::pair<size_t, size_t> cover(uint64_t start, uint64_t end) const {
    auto first = std::lower_bound(starts.begin(), starts.end(), start) - starts.begin();
    size_t last = static_cast<size_t>(first);
    while (last < starts.size() && end_of(last) <= end && end_of(last) != to_eof)
      ++last;
    if (last < starts.size() && end == to_eof && end_of(last) == to_eof) ++last;
    return {static_cast<size_t>(first), last};
  }
};

const segments main_segments{main_ranges};
const segments shm_segments{shm_ranges};

const segments& segs(file_role f) {
  return f == file_role::shm ? shm_segments : main_segments;
}

/// kind per segment; 0 none, 1 read, 2 write.
using holding = std::vector<int>;

struct process {
  uint64_t owner = 0;
  bool writable = true;
  std::vector<int> dbs;                                  ///< the databases it uses (one or two)
  std::map<std::pair<int, file_role>, uint64_t> handles; ///< open file handles
  std::optional<uint64_t> waiting;                       ///< the request it is blocked on
  lock_request waiting_req;
  int waiting_db = -1;
};

struct database {
  bool wal;
  std::unique_ptr<lock_service> locks;
  /// The model: (owner, file) -> kind per segment.
  std::map<std::pair<uint64_t, file_role>, holding> held;
};

/// The answers of the lock services, in the order given (all calls come from this thread).
std::vector<lock_reply> answers;

/// One request's sink: records its answer; must be answered exactly once.
class model_sink final : public lock_reply_sink {
public:
  explicit model_sink(uint64_t id) : id_(id) {}
  ~model_sink() override { CAF_CHECK(answered_); }
  void reply(int err) override {
    CAF_REQUIRE(!answered_); // a second answer
    answered_ = true;
    answers.push_back({id_, err});
  }

private:
  uint64_t id_;
  bool answered_ = false;
};

struct harness {
  std::mt19937_64 rng;
  clock_type::time_point now;
  std::chrono::milliseconds max_wait{1000};
  std::vector<database> dbs;
  std::vector<process> procs;
  std::vector<uint64_t> free_owners;
  std::vector<std::pair<int, uint64_t>> releases; ///< (db, fh) RELEASEs still in flight
  uint64_t next_id = 1;
  uint64_t next_fh = 1;
  // -- statistics --
  uint64_t grants = 0, waits = 0, eagain = 0, interrupts = 0, victims = 0, expired = 0, exits = 0;

  explicit harness(uint64_t seed) : rng(seed) {
    now = clock_type::now();
    for (int i = 0; i < 4; ++i)
      dbs.push_back(
          database{i % 2 == 1,
                   std::make_unique<lock_service>("db" + std::to_string(i), max_wait, nullptr),
                   {}});
    for (uint64_t o = 1; o <= 6; ++o)
      free_owners.push_back(0x1000 + o);
    for (int i = 0; i < 5; ++i)
      spawn();
  }

  size_t pick(size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); }
  bool chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; }

  void spawn() {
    // Owner ids are recycled quickly: a new process often gets the one just freed.
    size_t i = chance(0.7) ? free_owners.size() - 1 : pick(free_owners.size());
    process p;
    p.owner = free_owners[i];
    free_owners.erase(free_owners.begin() + static_cast<ptrdiff_t>(i));
    p.writable = chance(0.85);
    p.dbs.push_back(static_cast<int>(pick(dbs.size())));
    if (chance(0.3)) p.dbs.push_back(static_cast<int>(pick(dbs.size())));
    for (int db : p.dbs) {
      p.handles[{db, file_role::main}] = next_fh++;
      p.handles[{db, file_role::shm}] = next_fh++;
    }
    procs.push_back(std::move(p));
  }

  // -- the model ----------------------------------------------------------------------------------

  holding& model(int db, uint64_t owner, file_role f) {
    auto& h = dbs[db].held[{owner, f}];
    h.resize(segs(f).starts.size(), 0);
    return h;
  }

  void model_apply(int db, const lock_request& r) {
    auto [first, last] = segs(r.file).cover(r.start, r.end);
    auto& h = model(db, r.owner, r.file);
    int k = r.kind == lock_kind::unlock ? 0 : r.kind == lock_kind::read ? 1 : 2;
    for (size_t s = first; s < last; ++s)
      h[s] = k;
  }

  void model_drop(int db, uint64_t owner, file_role f) { dbs[db].held.erase({owner, f}); }

  /// What the table holds, in the model's terms.
  std::map<std::pair<uint64_t, file_role>, holding> table_holdings(int db) {
    std::map<std::pair<uint64_t, file_role>, holding> out;
    for (const auto& l : dbs[db].locks->holders()) {
      auto [first, last] = segs(l.file).cover(l.start, l.end);
      CAF_REQUIRE(first < last);
      CAF_REQUIRE_EQUAL(segs(l.file).starts[first], l.start);
      CAF_REQUIRE_EQUAL(segs(l.file).end_of(last - 1), l.end);
      auto& h = out[{l.owner, l.file}];
      h.resize(segs(l.file).starts.size(), 0);
      for (size_t s = first; s < last; ++s) {
        CAF_REQUIRE_EQUAL(h[s], 0); // an owner's locks never overlap each other
        h[s] = l.kind == lock_kind::read ? 1 : 2;
      }
    }
    return out;
  }

  bool others_on_file(int db, uint64_t owner, file_role f) {
    for (const auto& l : dbs[db].locks->holders())
      if (l.owner != owner && l.file == f) return true;
    return false;
  }

  // -- replies
  // --------------------------------------------------------------------------------------

  process* waiter_with(uint64_t id) {
    for (auto& p : procs)
      if (p.waiting && *p.waiting == id) return &p;
    return nullptr;
  }

  /// Every answer ends a blocked process's request, once; a grant changes the model.
  void deliver() {
    auto replies = std::move(answers);
    answers.clear();
    for (const auto& r : replies) {
      auto* p = waiter_with(r.id);
      CAF_REQUIRE(p != nullptr); // an answer for nobody, or a second one
      if (r.err == 0) {
        model_apply(p->waiting_db, p->waiting_req);
        ++grants;
      } else {
        CAF_REQUIRE(r.err == EAGAIN || r.err == EINTR || r.err == EDEADLK);
        if (r.err == EDEADLK) CAF_REQUIRE(p->waiting_req.sleep); // never EDEADLK to an F_SETLK
      }
      p->waiting.reset();
      p->waiting_db = -1;
    }
  }

  // -- steps
  // ----------------------------------------------------------------------------------------

  lock_request make_request(process& p, int db, file_role f) {
    const auto& list = f == file_role::shm ? shm_ranges : main_ranges;
    const auto& rg = list[pick(list.size())];
    lock_request r;
    r.id = next_id++;
    r.file = f;
    r.owner = p.owner;
    r.pid = static_cast<uint32_t>(p.owner);
    r.kind = rg.kind;
    r.start = rg.start;
    r.end = rg.end;
    r.sleep = rg.kind != lock_kind::unlock && chance(0.08);
    r.writable = p.writable;
    r.wal = f == file_role::shm || dbs[db].wal;
    r.hot_journal = f == file_role::main && !r.wal && chance(0.1);
    r.fh = p.handles[{db, f}];
    return r;
  }

  void step_setlk(process& p) {
    int db = p.dbs[pick(p.dbs.size())];
    auto f = dbs[db].wal && chance(0.6) ? file_role::shm : file_role::main;
    auto r = make_request(p, db, f);
    bool others = others_on_file(db, p.owner, f);
    bool queue = !dbs[db].locks->queue().empty();
    // The process is in fcntl() from now on, until its answer comes (at once or later).
    p.waiting = r.id;
    p.waiting_req = r;
    p.waiting_db = db;
    // As the drive does: try without preparing to wait, then (if it would wait) with a sink.
    std::optional<int> tried;
    if (chance(0.5)) tried = dbs[db].locks->try_setlk(r);
    if (tried)
      answers.push_back({r.id, *tried});
    else
      dbs[db].locks->setlk(r, std::make_shared<model_sink>(r.id));
    std::optional<int> at_once;
    for (const auto& a : answers)
      if (a.id == r.id) at_once = a.err;
    if (!at_once)
      ++waits;
    else if (*at_once == EAGAIN) {
      CAF_REQUIRE(others || queue); // failed although nobody else was on the file
      ++eagain;
    }
    deliver();
  }

  void step_getlk(process& p) {
    int db = p.dbs[pick(p.dbs.size())];
    auto f = dbs[db].wal && chance(0.5) ? file_role::shm : file_role::main;
    auto r = make_request(p, db, f);
    if (r.kind == lock_kind::unlock) r.kind = lock_kind::write;
    auto answer = dbs[db].locks->getlk(r);
    // The model's view: does another owner hold a conflicting lock in the range?
    auto [first, last] = segs(f).cover(r.start, r.end);
    bool conflict = false;
    for (const auto& [key, h] : dbs[db].held) {
      if (key.first == p.owner || key.second != f) continue;
      for (size_t s = first; s < last; ++s)
        if (h[s] == 2 || (h[s] == 1 && r.kind == lock_kind::write)) conflict = true;
    }
    CAF_REQUIRE_EQUAL(answer.has_value(), conflict);
    if (answer) CAF_REQUIRE(answer->owner != p.owner);
  }

  /// FLUSH of `p` on one file of `db`, as any close() sends it; the handle's RELEASE follows
  /// later. The process opens the file again at once (a new handle).
  void flush(process& p, int db, file_role f, bool reopen) {
    dbs[db].locks->flush(p.owner, f);
    model_drop(db, p.owner, f);
    deliver();
    releases.emplace_back(db, p.handles[{db, f}]);
    if (reopen) p.handles[{db, f}] = next_fh++;
  }

  void step_close(process& p) {
    int db = p.dbs[pick(p.dbs.size())];
    flush(p, db, chance(0.5) ? file_role::main : file_role::shm, true);
  }

  void step_exit(size_t i) {
    auto& p = procs[i];
    if (p.waiting && chance(0.5))
      step_interrupt(p); // the signal's INTERRUPT may come first, or not at all
    for (int db : std::set<int>(p.dbs.begin(), p.dbs.end())) {
      flush(p, db, file_role::main, false);
      flush(p, db, file_role::shm, false);
    }
    CAF_REQUIRE(!p.waiting); // the FLUSH ended its wait
    free_owners.push_back(p.owner);
    procs.erase(procs.begin() + static_cast<ptrdiff_t>(i));
    ++exits;
    spawn();
  }

  void step_interrupt(process& p) {
    auto id = *p.waiting;
    dbs[p.waiting_db].locks->interrupt(id);
    bool answered = false;
    for (const auto& r : answers)
      if (r.id == id) {
        CAF_REQUIRE_EQUAL(r.err, EINTR);
        answered = true;
      }
    CAF_REQUIRE(answered);
    ++interrupts;
    deliver();
  }

  void step_time() {
    now += std::chrono::milliseconds{std::uniform_int_distribution<int>(0, 700)(rng)};
    for (auto& d : dbs)
      expired += d.locks->expire(now);
    deliver();
  }

  void step_release() {
    if (releases.empty()) return;
    auto i = pick(releases.size());
    auto [db, fh] = releases[i];
    releases.erase(releases.begin() + static_cast<ptrdiff_t>(i));
    dbs[db].locks->release(fh);
    deliver();
  }

  /// What the lock watchdog does after every change: break cycles of the wait-for graph.
  void break_deadlocks() {
    for (int round = 0; round < 16; ++round) {
      std::vector<wait_graph::waiter_info> all;
      for (const auto& d : dbs) {
        auto w = d.locks->waiters();
        all.insert(all.end(), w.begin(), w.end());
      }
      auto victim = wait_graph::find_victim(all);
      if (!victim) return;
      for (auto& d : dbs)
        d.locks->abort(*victim);
      // Exactly one table held it (its abort may grant others behind it too).
      CAF_REQUIRE_EQUAL(std::count_if(answers.begin(), answers.end(),
                                      [&](const lock_reply& a) { return a.id == *victim; }),
                        1);
      ++victims;
      deliver();
    }
  }

  // -- the invariants
  // -------------------------------------------------------------------------------

  void check() {
    for (int db = 0; db < static_cast<int>(dbs.size()); ++db) {
      auto& d = dbs[db];
      // 1. exactly the model's holdings
      auto actual = table_holdings(db);
      for (auto i = d.held.begin(); i != d.held.end();) {
        if (std::all_of(i->second.begin(), i->second.end(), [](int k) { return k == 0; }))
          i = d.held.erase(i);
        else
          ++i;
      }
      if (actual != d.held) {
        for (const auto& [key, h] : d.held)
          if (actual.count(key) == 0 || actual[key] != h)
            CAF_MESSAGE("db " << db << ": the model has owner " << key.first << " file "
                              << int(key.second) << " not matched by the table");
        for (const auto& [key, h] : actual)
          if (d.held.count(key) == 0)
            CAF_MESSAGE("db " << db << ": the table has owner " << key.first << " file "
                              << int(key.second) << " unknown to the model");
      }
      CAF_REQUIRE(actual == d.held);
      // 2. no conflicting holders
      for (const auto& [a, ha] : actual)
        for (const auto& [b, hb] : actual) {
          if (a.first >= b.first || a.second != b.second) continue;
          for (size_t s = 0; s < ha.size(); ++s)
            CAF_REQUIRE(!(ha[s] && hb[s] && (ha[s] == 2 || hb[s] == 2)));
        }
      // 3. the waiters are the blocked processes
      auto q = d.locks->queue();
      std::set<uint64_t> queued;
      for (const auto& w : q)
        queued.insert(w.req.id);
      std::set<uint64_t> blocked;
      for (const auto& p : procs)
        if (p.waiting && p.waiting_db == db) blocked.insert(*p.waiting);
      CAF_REQUIRE(queued == blocked);
      // 4. nobody waits for nothing
      for (size_t i = 0; i < q.size(); ++i) {
        const auto& w = q[i];
        bool ahead = false;
        for (size_t j = 0; j < i; ++j)
          if (q[j].req.file == w.req.file && q[j].req.owner != w.req.owner) ahead = true;
        CAF_REQUIRE(ahead || others_on_file(db, w.req.owner, w.req.file));
      }
    }
  }

  void step() {
    auto roll = pick(100);
    auto& p = procs[pick(procs.size())];
    if (roll < 55) {
      if (!p.waiting) step_setlk(p);
    } else if (roll < 62) {
      if (!p.waiting) step_getlk(p);
    } else if (roll < 70) {
      if (!p.waiting) step_close(p);
    } else if (roll < 75) {
      step_exit(static_cast<size_t>(&p - procs.data()));
    } else if (roll < 82) {
      if (p.waiting) step_interrupt(p);
    } else if (roll < 88) {
      step_time();
    } else {
      step_release();
    }
    break_deadlocks();
    check();
  }

  /// Everybody exits; every wait must end and the tables end up empty.
  void drain() {
    while (!procs.empty()) {
      auto& p = procs.back();
      if (p.waiting) step_interrupt(p);
      for (int db : std::set<int>(p.dbs.begin(), p.dbs.end())) {
        flush(p, db, file_role::main, false);
        flush(p, db, file_role::shm, false);
      }
      procs.pop_back();
      break_deadlocks();
      check();
    }
    while (!releases.empty())
      step_release();
    for (auto& d : dbs)
      CAF_REQUIRE(d.locks->empty());
  }
};

uint64_t env_or(const char* name, uint64_t fallback) {
  if (const char* v = std::getenv(name)) return std::strtoull(v, nullptr, 0);
  return fallback;
}

} // namespace

CAF_TEST(the lock table keeps the model locks through random traffic) {
  auto seed = env_or("LITEDRIVE_SEED", std::random_device{}());
  auto steps = env_or("LITEDRIVE_MODEL_STEPS", 100000);
  CAF_MESSAGE("seed " << seed << " (LITEDRIVE_SEED=" << seed << " replays it), " << steps
                      << " steps");
  harness h{seed};
  for (uint64_t i = 0; i < steps; ++i)
    h.step();
  h.drain();
  CAF_MESSAGE("grants " << h.grants << ", waits " << h.waits << ", EAGAIN at once " << h.eagain
                        << ", expired " << h.expired << ", interrupted " << h.interrupts
                        << ", deadlock victims " << h.victims << ", exits " << h.exits);
  CAF_CHECK(h.waits > 0 && h.victims > 0 && h.expired > 0 && h.exits > 0);
}
