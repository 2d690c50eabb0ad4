#include "fuse_bridge/kernel_ring.hpp"
#include "fuse_bridge/kernel_io.hpp"

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <linux/fuse.h>
#include <linux/io_uring.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <memory>
#include <mutex>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <thread>
#include <unistd.h>
#include <unordered_map>
#include <vector>

#include <spdlog/spdlog.h>

namespace litedrive::kernel_ring {

namespace {

// -- the kernel's interface (include/uapi/linux/fuse.h 7.42; Debian 12's headers predate it) --

enum : uint32_t { cmd_register = 1, cmd_commit_and_fetch = 2 };

/// The 80-byte command area of a 128-byte SQE.
struct cmd_req {
  uint64_t flags;
  uint64_t commit_id; ///< the unique of the request being answered
  uint16_t qid;
  uint8_t padding[6];
};

struct ent_in_out {
  uint64_t flags;
  uint64_t commit_id;
  uint32_t payload_sz; ///< bytes of the payload buffer in use (both directions)
  uint32_t padding;
  uint64_t reserved;
};

/// An entry's header buffer: the in header (request) or out header (reply), the operation's
/// own header (fuse_write_in, ...), and the sizes.
struct req_header {
  char in_out[128];
  char op_in[128];
  ent_in_out ent;
};

constexpr size_t page = 4096;
constexpr unsigned sq_size = 512;           ///< entries + the eventfd read, with room to spare
constexpr unsigned cq_size = 1024;
constexpr unsigned first_entries = 8;       ///< registered per queue at start
constexpr unsigned min_waiting = 4;         ///< entries kept waiting for requests per queue
constexpr unsigned max_entries = 256;       ///< per queue (parked lock waiters hold entries)
constexpr uint64_t eventfd_tag = 1;         ///< user_data of the eventfd read (entries: pointers)

int sys_setup(unsigned entries, io_uring_params* p) {
  return static_cast<int>(syscall(__NR_io_uring_setup, entries, p));
}

int sys_enter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags) {
  return static_cast<int>(syscall(__NR_io_uring_enter, fd, to_submit, min_complete, flags,
                                  nullptr, 0));
}

struct queue;

/// One ring entry: a header buffer and a payload buffer registered with the kernel, which
/// carries one request at a time. Layout of its memory: page 0 holds the header buffer, and at
/// its end the in header and operation header copied back in front of the payload (page 1 on),
/// so that header, operation header and payload lie contiguous as a /dev/fuse read delivers them.
struct entry {
  queue* q = nullptr;
  char* mem = nullptr;
  size_t payload_size = 0;
  iovec iov[2];
  uint64_t unique = 0;

  req_header* header() { return reinterpret_cast<req_header*>(mem); }
  char* payload() { return mem + page; }
};

struct queue {
  int qid = 0;
  int fd = -1;     ///< the io_uring
  int event = -1;  ///< eventfd: start, stop, and replies from other threads
  uint64_t event_value = 0;

  // submission ring (only the queue's thread writes it)
  unsigned* sq_head = nullptr;
  unsigned* sq_tail = nullptr;
  unsigned sq_mask = 0;
  unsigned* sq_array = nullptr;
  char* sqes = nullptr;
  unsigned tail = 0;
  // completion ring
  unsigned* cq_head = nullptr;
  unsigned* cq_tail = nullptr;
  unsigned cq_mask = 0;
  io_uring_cqe* cqes = nullptr;

  std::vector<std::unique_ptr<entry>> entries;
  unsigned waiting = 0; ///< entries in the kernel, ready for a request

  std::mutex foreign_mtx;
  std::vector<entry*> foreign; ///< answered by other threads, to commit
  std::thread thread;
};

// -- state shared by the queues ----------------------------------------------------------------

enum class phase { idle, prepared, started, stopping };

std::mutex state_mtx;
phase state = phase::idle;
fuse_session* session = nullptr;
int fuse_fd = -1;
size_t payload_bytes = 0;
std::vector<std::unique_ptr<queue>> queues;
std::atomic<bool> ring_active{false};
std::atomic<uint64_t> requests{0};

std::mutex flight_mtx;
std::unordered_map<uint64_t, entry*> in_flight; ///< unique -> entry of unanswered requests

thread_local queue* own_queue = nullptr; ///< the queue whose thread this is

// -- the submission ring ----------------------------------------------------------------------

io_uring_sqe* next_sqe(queue& q) {
  // Never full: each entry and the eventfd read have at most one SQE in it, and sq_size is
  // above max_entries + 1.
  unsigned index = q.tail & q.sq_mask;
  auto* sqe = reinterpret_cast<io_uring_sqe*>(q.sqes + index * 128);
  std::memset(sqe, 0, 128);
  q.sq_array[index] = index;
  return sqe;
}

void publish(queue& q) {
  ++q.tail;
  __atomic_store_n(q.sq_tail, q.tail, __ATOMIC_RELEASE);
}

void push_cmd(queue& q, entry& e, uint32_t op) {
  auto* sqe = next_sqe(q);
  sqe->opcode = IORING_OP_URING_CMD;
  sqe->fd = fuse_fd;
  sqe->cmd_op = op;
  sqe->user_data = reinterpret_cast<uint64_t>(&e);
  cmd_req cmd{};
  cmd.qid = static_cast<uint16_t>(q.qid);
  if (op == cmd_register) {
    sqe->addr = reinterpret_cast<uint64_t>(e.iov);
    sqe->len = 2;
  } else {
    cmd.commit_id = e.unique;
  }
  std::memcpy(sqe->cmd, &cmd, sizeof(cmd));
  publish(q);
  ++q.waiting;
}

void push_event_read(queue& q) {
  auto* sqe = next_sqe(q);
  sqe->opcode = IORING_OP_READ;
  sqe->fd = q.event;
  sqe->addr = reinterpret_cast<uint64_t>(&q.event_value);
  sqe->len = sizeof(q.event_value);
  sqe->off = static_cast<uint64_t>(-1);
  sqe->user_data = eventfd_tag;
  publish(q);
}

bool add_entry(queue& q) {
  size_t size = page + payload_bytes;
  void* mem = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED)
    return false;
  auto e = std::make_unique<entry>();
  e->q = &q;
  e->mem = static_cast<char*>(mem);
  e->payload_size = payload_bytes;
  e->iov[0] = {e->mem, sizeof(req_header)};
  e->iov[1] = {e->payload(), payload_bytes};
  push_cmd(q, *e, cmd_register);
  q.entries.push_back(std::move(e));
  return true;
}

void wake(queue& q) {
  uint64_t one = 1;
  ssize_t rc = write(q.event, &one, sizeof(one));
  (void) rc;
}

// -- serving requests ---------------------------------------------------------------------------

/// Answers the request of `e` with an error, without libfuse (a malformed request).
void reply_error(entry& e, int err) {
  fuse_out_header out{sizeof(fuse_out_header), -err, e.unique};
  std::memcpy(e.header()->in_out, &out, sizeof(out));
  e.header()->ent.payload_sz = 0;
  push_cmd(*e.q, e, cmd_commit_and_fetch);
}

void serve(entry& e) {
  requests.fetch_add(1, std::memory_order_relaxed);
  fuse_in_header in;
  std::memcpy(&in, e.header()->in_out, sizeof(in));
  e.unique = in.unique;
  size_t payload = e.header()->ent.payload_sz;
  // The kernel counts the operation header in len but says only the payload's size.
  if (in.len < sizeof(in) + payload || in.len - sizeof(in) - payload > sizeof(req_header::op_in)
      || payload > e.payload_size) {
    spdlog::warn("drive ring: malformed request (opcode {}, len {}, payload {})", in.opcode,
                 in.len, payload);
    return reply_error(e, EIO);
  }
  size_t op_size = in.len - sizeof(in) - payload;
  char* start = e.payload() - op_size - sizeof(in);
  std::memcpy(start, &in, sizeof(in));
  std::memcpy(start + sizeof(in), e.header()->op_in, op_size);
  {
    std::lock_guard<std::mutex> guard{flight_mtx};
    in_flight[in.unique] = &e;
  }
  kernel_io::note_request(start, in.len);
  fuse_buf buf{};
  buf.size = in.len;
  buf.mem = start;
  fuse_session_process_buf(session, &buf);
}

void commit(entry& e) {
  auto& q = *e.q;
  if (own_queue == &q) {
    push_cmd(q, e, cmd_commit_and_fetch); // submitted with the thread's next wait
    return;
  }
  {
    std::lock_guard<std::mutex> guard{q.foreign_mtx};
    q.foreign.push_back(&e);
  }
  wake(q);
}

void commit_foreign(queue& q) {
  std::vector<entry*> batch;
  {
    std::lock_guard<std::mutex> guard{q.foreign_mtx};
    batch.swap(q.foreign);
  }
  for (auto* e : batch)
    push_cmd(q, *e, cmd_commit_and_fetch);
}

void pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof(set), &set) != 0)
    spdlog::debug("drive ring {}: cannot pin to CPU {}: {}", cpu, cpu, std::strerror(errno));
  std::string name = "fuse-ring-" + std::to_string(cpu);
  pthread_setname_np(pthread_self(), name.c_str());
}

/// The queue's thread: waits for INIT's outcome, registers its entries, then serves requests
/// until the connection ends or stop() is called.
void run(queue& q) {
  own_queue = &q;
  pin(q.qid);
  push_event_read(q);
  bool registered = false;
  for (;;) {
    unsigned unsubmitted = q.tail - __atomic_load_n(q.sq_head, __ATOMIC_ACQUIRE);
    int rc = sys_enter(q.fd, unsubmitted, 1, IORING_ENTER_GETEVENTS);
    if (rc < 0 && errno != EINTR && errno != EAGAIN && errno != EBUSY) {
      spdlog::error("drive ring {}: io_uring_enter: {}", q.qid, std::strerror(errno));
      return;
    }
    unsigned head = *q.cq_head;
    unsigned tail = __atomic_load_n(q.cq_tail, __ATOMIC_ACQUIRE);
    bool leave = false;
    for (; head != tail; ++head) {
      io_uring_cqe cqe = q.cqes[head & q.cq_mask];
      if (cqe.user_data == eventfd_tag) {
        phase now;
        {
          std::lock_guard<std::mutex> guard{state_mtx};
          now = state;
        }
        if (now == phase::stopping || now == phase::idle) {
          leave = true;
          continue;
        }
        if (now == phase::started && !registered) {
          registered = true;
          for (unsigned i = 0; i < first_entries; ++i)
            if (!add_entry(q))
              break;
        }
        commit_foreign(q);
        push_event_read(q);
        continue;
      }
      auto& e = *reinterpret_cast<entry*>(cqe.user_data);
      --q.waiting;
      if (cqe.res == 0) {
        serve(e);
      } else if (cqe.res == -EINTR || cqe.res == -EAGAIN) {
        push_cmd(q, e, e.unique == 0 ? cmd_register : cmd_commit_and_fetch);
      } else {
        // ENOTCONN: the connection is over (unmount). Anything else: the kernel refused the
        // entry; with a register that happens before the ring is used, and the kernel then
        // stays on /dev/fuse.
        if (cqe.res != -ENOTCONN && cqe.res != -ECANCELED)
          spdlog::warn("drive ring {}: the kernel ended an entry: {}", q.qid,
                       std::strerror(-cqe.res));
        leave = true;
      }
    }
    __atomic_store_n(q.cq_head, head, __ATOMIC_RELEASE);
    if (leave)
      break;
    commit_foreign(q);
    // Requests parked by the handlers (lock waits) hold their entries: keep some waiting.
    while (registered && q.waiting < min_waiting && q.entries.size() < max_entries)
      if (!add_entry(q))
        break;
  }
  own_queue = nullptr;
}

bool setup(queue& q) {
  io_uring_params p{};
  p.flags = IORING_SETUP_SQE128 | IORING_SETUP_CQSIZE;
  p.cq_entries = cq_size;
  q.fd = sys_setup(sq_size, &p);
  if (q.fd < 0)
    return false;
  size_t sq_bytes = p.sq_off.array + p.sq_entries * sizeof(unsigned);
  size_t cq_bytes = p.cq_off.cqes + p.cq_entries * sizeof(io_uring_cqe);
  if (p.features & IORING_FEAT_SINGLE_MMAP)
    sq_bytes = cq_bytes = std::max(sq_bytes, cq_bytes);
  auto map = [&](size_t bytes, off_t what) -> char* {
    void* m = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, q.fd, what);
    return m == MAP_FAILED ? nullptr : static_cast<char*>(m);
  };
  char* sq = map(sq_bytes, IORING_OFF_SQ_RING);
  char* cq = (p.features & IORING_FEAT_SINGLE_MMAP) ? sq : map(cq_bytes, IORING_OFF_CQ_RING);
  q.sqes = map(p.sq_entries * 128, IORING_OFF_SQES);
  if (sq == nullptr || cq == nullptr || q.sqes == nullptr)
    return false;
  q.sq_head = reinterpret_cast<unsigned*>(sq + p.sq_off.head);
  q.sq_tail = reinterpret_cast<unsigned*>(sq + p.sq_off.tail);
  q.sq_mask = *reinterpret_cast<unsigned*>(sq + p.sq_off.ring_mask);
  q.sq_array = reinterpret_cast<unsigned*>(sq + p.sq_off.array);
  q.tail = *q.sq_tail;
  q.cq_head = reinterpret_cast<unsigned*>(cq + p.cq_off.head);
  q.cq_tail = reinterpret_cast<unsigned*>(cq + p.cq_off.tail);
  q.cq_mask = *reinterpret_cast<unsigned*>(cq + p.cq_off.ring_mask);
  q.cqes = reinterpret_cast<io_uring_cqe*>(cq + p.cq_off.cqes);
  q.event = eventfd(0, EFD_CLOEXEC);
  return q.event >= 0;
}

/// The number of CPUs the kernel may run callers on (its queue count): /sys's "possible".
int possible_cpus() {
  std::ifstream in("/sys/devices/system/cpu/possible");
  std::string text;
  if (!(in >> text))
    return static_cast<int>(sysconf(_SC_NPROCESSORS_CONF));
  auto dash = text.rfind('-');
  auto last = text.substr(dash == std::string::npos ? 0 : dash + 1);
  return std::atoi(last.c_str()) + 1;
}

} // namespace

bool module_allows() {
  const char* path = "/sys/module/fuse/parameters/enable_uring";
  std::ifstream in(path);
  std::string value;
  if (!(in >> value)) {
    spdlog::info("the kernel has no FUSE over io_uring (Linux >= 6.14): the drive uses /dev/fuse");
    return false;
  }
  if (value == "Y" || value == "1")
    return true;
  std::ofstream out(path);
  out << "Y";
  out.close();
  if (!out) {
    spdlog::info("cannot turn on the fuse module's enable_uring ({}): the drive uses /dev/fuse",
                 std::strerror(errno));
    return false;
  }
  spdlog::info("turned on the fuse module's enable_uring (FUSE over io_uring)");
  return true;
}

namespace {

void end_threads() {
  for (auto& q : queues)
    wake(*q);
  for (auto& q : queues)
    if (q->thread.joinable())
      q->thread.join();
  // The rings' memory stays: the kernel may still hold entries until the connection is gone,
  // and this happens once, at exit.
}

} // namespace

bool prepare(fuse_session* se) {
  std::lock_guard<std::mutex> guard{state_mtx};
  if (state != phase::idle)
    return false;
  int cpus = possible_cpus();
  if (cpus <= 0 || cpus > 4096)
    return false;
  std::vector<std::unique_ptr<queue>> made;
  for (int cpu = 0; cpu < cpus; ++cpu) {
    auto q = std::make_unique<queue>();
    q->qid = cpu;
    if (!setup(*q)) {
      spdlog::info("cannot set up io_uring for the drive ({}): it uses /dev/fuse",
                   std::strerror(errno));
      for (auto& m : made) {
        close(m->fd);
        close(m->event);
      }
      return false;
    }
    made.push_back(std::move(q));
  }
  session = se;
  fuse_fd = fuse_session_fd(se);
  queues = std::move(made);
  state = phase::prepared;
  for (auto& q : queues)
    q->thread = std::thread(run, std::ref(*q));
  return true;
}

bool prepared() {
  std::lock_guard<std::mutex> guard{state_mtx};
  return state == phase::prepared;
}

void start(size_t payload) {
  {
    std::lock_guard<std::mutex> guard{state_mtx};
    if (state != phase::prepared)
      return;
    payload_bytes = (payload + page - 1) / page * page;
    state = phase::started;
  }
  ring_active = true;
  for (auto& q : queues)
    wake(*q);
  spdlog::info("drive: FUSE over io_uring, {} queues (one per CPU)", queues.size());
}

void abandon() {
  {
    std::lock_guard<std::mutex> guard{state_mtx};
    if (state != phase::prepared)
      return;
    state = phase::stopping;
  }
  end_threads();
}

bool active() {
  return ring_active.load(std::memory_order_relaxed);
}

std::optional<ssize_t> reply(uint64_t unique, const iovec* iov, int count) {
  entry* e = nullptr;
  {
    std::lock_guard<std::mutex> guard{flight_mtx};
    auto i = in_flight.find(unique);
    if (i == in_flight.end())
      return std::nullopt;
    e = i->second;
    in_flight.erase(i);
  }
  fuse_out_header out;
  std::memcpy(&out, iov[0].iov_base, sizeof(out));
  // Everything after the out header is the reply's arguments, which go to the payload buffer
  // (memmove: a handler may answer with data it read into that buffer).
  size_t total = 0;
  for (int i = 0; i < count; ++i)
    total += iov[i].iov_len;
  total -= sizeof(out);
  if (total > e->payload_size) {
    spdlog::error("drive ring: a reply of {} bytes does not fit its entry", total);
    out.error = -EIO;
    total = 0;
  } else {
    size_t at = 0;
    for (int i = 0; i < count; ++i) {
      auto* from = static_cast<const char*>(iov[i].iov_base);
      size_t len = iov[i].iov_len;
      if (i == 0) {
        from += sizeof(out);
        len -= sizeof(out);
      }
      if (len > 0 && from != e->payload() + at)
        std::memmove(e->payload() + at, from, len);
      at += len;
    }
  }
  out.len = static_cast<uint32_t>(sizeof(out) + total);
  std::memcpy(e->header()->in_out, &out, sizeof(out));
  e->header()->ent.payload_sz = static_cast<uint32_t>(total);
  commit(*e);
  return static_cast<ssize_t>(out.len);
}

void stop() {
  {
    std::lock_guard<std::mutex> guard{state_mtx};
    if (state == phase::idle || state == phase::stopping)
      return;
    state = phase::stopping;
  }
  ring_active = false;
  end_threads();
}

uint64_t served() {
  return requests.load(std::memory_order_relaxed);
}

} // namespace litedrive::kernel_ring
