// litedrive's entry point: parse options, prepare the store, start the actors and the front
// ends, then wait for SIGTERM/SIGINT and shut down in order (front ends first, then actors).

#include <climits>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <thread>

#include <sys/stat.h>
#include <unistd.h>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/all.hpp>
#include <caf/io/middleman.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include "actors/db_registry.hpp"
#include "actors/drive_io.hpp"
#include "actors/inspector.hpp"
#include "actors/lock_registry.hpp"
#include "actors/lock_watchdog.hpp"
#include "actors/query_history.hpp"
#include "actors/store_files.hpp"
#include "daemon/options.hpp"
#include "daemon/store_lock.hpp"
#include "fuse_bridge/drive.hpp"
#include "http/http_server.hpp"
#include "schema/errc.hpp"

using namespace litedrive;

namespace {

/// mkdir -p, then the real path: the store is always absolute and symlink-free, which the
/// path rules (db_path.cpp) rely on.
caf::expected<std::string> prepare_dir(const std::string& dir, unsigned mode_if_created) {
  std::string path = dir;
  if (path.empty()) return make_error(errc::invalid_parameter, "empty directory name");
  if (path.front() != '/') {
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof(cwd)) == nullptr)
      return make_error(errc::internal_error, "getcwd failed");
    path = std::string{cwd} + "/" + path;
  }
  for (size_t pos = path.find('/', 1); pos != std::string::npos; pos = path.find('/', pos + 1))
    ::mkdir(path.substr(0, pos).c_str(), 0755);
  if (::mkdir(path.c_str(), 0755) == 0)
    ::chmod(path.c_str(), mode_if_created); // after mkdir: the umask must not trim it
  char real[PATH_MAX];
  if (realpath(path.c_str(), real) == nullptr)
    return make_error(errc::invalid_parameter, "cannot create or resolve '" + dir + "'");
  return std::string{real};
}

void setup_logging(const std::string& level) {
  auto logger = spdlog::stderr_color_mt("litedrive");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e [%^%l%$] %v");
  spdlog::set_level(spdlog::level::from_str(level));
  spdlog::flush_on(spdlog::level::info);
}

} // namespace

int main(int argc, char** argv) {
  auto parsed = parse_options(argc, argv);
  if (!parsed) {
    std::fprintf(stderr, "litedrive: %s\n", view(parsed.error()).message.c_str());
    return 2;
  }
  auto& opts = *parsed;
  if (opts.help) {
    std::fputs(help_text().c_str(), stdout);
    return 0;
  }
  if (opts.version) {
    std::puts("litedrive 0.1.0");
    return 0;
  }
  setup_logging(opts.cfg.log_level);
  // One request must not be able to take the whole daemon's memory: past this, SQLite's
  // allocations fail (the statement answers an error) instead of the process growing. SQLite
  // enforces the limit only with its memory statistics on (SQLITE_CONFIG_MEMSTATUS, the default),
  // which cost a process-wide mutex per allocation: measured at 2-8% of durable KV SETs.
  sqlite3_hard_heap_limit64(static_cast<sqlite3_int64>(opts.cfg.sqlite_heap_max_bytes));
  auto& cfg = opts.cfg;
  auto store = prepare_dir(cfg.store, cfg.store_mode);
  if (!store) {
    spdlog::critical("store: {}", view(store.error()).message);
    return 1;
  }
  cfg.store = *store;
  // Held (open) until the process ends: one daemon per store.
  auto store_lock = claim_store(cfg.store);
  if (!store_lock) {
    spdlog::critical("store: {}", view(store_lock.error()).message);
    return 1;
  }
  auto state = prepare_dir(cfg.state, 0700);
  if (!state) {
    spdlog::critical("state: {}", view(state.error()).message);
    return 1;
  }
  cfg.state = *state;
  if (!cfg.mount.empty()) {
    if (cfg.mount.front() != '/') {
      char cwd[PATH_MAX];
      if (getcwd(cwd, sizeof(cwd)) != nullptr) cfg.mount = std::string{cwd} + "/" + cfg.mount;
    }
    while (cfg.mount.size() > 1 && cfg.mount.back() == '/')
      cfg.mount.pop_back();
    // litedrive's own connections go through the drive: one page cache, one lock table.
    cfg.open_through_mount = true;
  }

  // Block the stop signals in every thread; main waits for them with sigwait below.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  caf::actor_system_config sys_cfg;
  sys_cfg.set("logger.file-verbosity", caf::atom("quiet"));
  sys_cfg.set("logger.console-verbosity", caf::atom("quiet"));
  // Work sharing wakes an idle worker through a condition variable the moment a FUSE or HTTP
  // thread sends a message; CAF's default work stealing polls with sleeps of up to 10 ms, which
  // measured at ~25 ms added per SQLite transaction on the drive.
  if (cfg.actor_scheduler == "spinning") {
    // Poll without sleeping for a while after each job, then sleep 50 us between polls, then
    // 1 ms: lock requests of a busy database find a worker awake.
    sys_cfg.set("scheduler.policy", caf::atom("stealing"));
    sys_cfg.set("work-stealing.aggressive-poll-attempts", size_t{20000});
    sys_cfg.set("work-stealing.moderate-poll-attempts", size_t{200});
    sys_cfg.set("work-stealing.moderate-sleep-duration",
                caf::timespan{std::chrono::microseconds{50}});
    sys_cfg.set("work-stealing.relaxed-sleep-duration",
                caf::timespan{std::chrono::milliseconds{1}});
  } else {
    sys_cfg.set("scheduler.policy", caf::atom("sharing"));
  }
  sys_cfg.set("scheduler.max-threads", std::max<size_t>(cfg.actor_threads, 1));
  if (!cfg.inspect_host.empty())
    sys_cfg.load<caf::io::middleman>(); // the remote inspection interface
  // litedrive's own opens of files in the store never follow a link out of it (before drive_io,
  // whose opens go through this hook too).
  if (!store_files::install(cfg.store, cfg.mount)) {
    spdlog::critical("store: cannot confine litedrive's own opens to the store");
    return 1;
  }
  // Every database's byte-range locks, shared by the drive (the kernel's requests) and
  // litedrive's own connections (drive_io): one lock table per database file.
  auto locks = std::make_shared<lock_registry>(cfg.store, cfg.lock_wait_max);
  // Before any SQLite connection exists (the hooks are process-wide and not thread-safe to
  // install); the drive they invalidate comes up a moment later.
  std::atomic<drive*> live_drive{nullptr};
  if (cfg.open_through_mount && cfg.drive_direct_writes && !cfg.drive_writeback_cache) {
    drive_io::config io;
    io.mount = cfg.mount;
    io.store = cfg.store;
    io.invalidate = [&live_drive](dev_t dev, ino_t ino, int64_t off, int64_t len, bool resized) {
      auto* d = live_drive.load(std::memory_order_acquire);
      return d != nullptr && d->invalidate(dev, ino, off, len, resized);
    };
    io.locks = locks;
    drive_io::install(std::move(io));
  }
  int exit_code = 0;
  {
    caf::actor_system sys{sys_cfg};
    auto registry = sys.spawn(db_registry, cfg, locks);
    auto watchdog = sys.spawn(lock_watchdog, locks);
    locks->set_wake([watchdog] { caf::anon_send(watchdog, settle_atom_v); });
    auto history = sys.spawn<caf::detached>(query_history, cfg.state + "/query_history.db",
                                            cfg.query_history_max);
    std::unique_ptr<drive> mounted;
    if (!cfg.mount.empty()) {
      auto d = drive::mount(cfg, locks);
      if (!d) {
        spdlog::critical("drive: {}", view(d.error()).message);
        locks->set_wake(nullptr);
        caf::anon_send_exit(watchdog, caf::exit_reason::user_shutdown);
        caf::anon_send_exit(registry, caf::exit_reason::user_shutdown);
        caf::anon_send_exit(history, caf::exit_reason::user_shutdown);
        return 1;
      }
      mounted = std::move(*d);
      live_drive.store(mounted.get(), std::memory_order_release);
      store_files::mount_ready();
    }
    inspector_actor inspect;
    if (!cfg.inspect_host.empty()) {
      // Read-only, loopback by default; failing to publish it is not a reason to stop serving.
      inspect = sys.spawn(inspector, registry, cfg);
      auto bound =
          sys.middleman().publish(inspect, cfg.inspect_port, cfg.inspect_host.c_str(), true);
      if (bound)
        spdlog::info("inspection actor published at {}:{} (CAF remote interface)", cfg.inspect_host,
                     *bound);
      else
        spdlog::warn("cannot publish the inspection actor at {}:{}: {}", cfg.inspect_host,
                     cfg.inspect_port, caf::to_string(bound.error()));
    }
    std::function<std::string()> drive_counters;
    if (mounted)
      drive_counters = [d = mounted.get()] {
        // The kernel's requests, and what litedrive's own connections did behind the mount.
        auto out = d->counters_json();
        auto io = drive_io::stats();
        out.pop_back();
        out += ",\"own_direct_writes\":" + std::to_string(io.writes)
               + ",\"own_cache_invalidations\":" + std::to_string(io.invalidations)
               + ",\"own_locks\":" + std::to_string(io.lock_calls)
               + ",\"own_lock_waits\":" + std::to_string(io.lock_waits) + "}";
        return out;
      };
    auto server = http_server::start(sys, registry, history, cfg, std::move(drive_counters));
    if (!server) {
      spdlog::critical("{}", view(server.error()).message);
      if (inspect) caf::anon_send_exit(inspect, caf::exit_reason::user_shutdown);
      locks->set_wake(nullptr);
      caf::anon_send_exit(watchdog, caf::exit_reason::user_shutdown);
      caf::anon_send_exit(registry, caf::exit_reason::user_shutdown);
      caf::anon_send_exit(history, caf::exit_reason::user_shutdown);
      sys.await_all_actors_done();
      return 1;
    }
    auto port = (*server)->port();
    spdlog::info("litedrive serving http://{}:{}/ (store {})", cfg.http_host, port, cfg.store);
    if (!opts.port_file.empty()) {
      std::ofstream pf{opts.port_file + ".tmp"};
      pf << port << "\n";
      pf.close();
      std::rename((opts.port_file + ".tmp").c_str(), opts.port_file.c_str());
    }
    int sig = 0;
    sigwait(&stop_signals, &sig);
    spdlog::info("signal {}: shutting down", sig);
    (*server)->stop();
    if (inspect) {
      sys.middleman().unpublish(inspect, 0);
      caf::anon_send_exit(inspect, caf::exit_reason::user_shutdown);
    }
    caf::anon_send_exit(registry, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(history, caf::exit_reason::user_shutdown);
    // The watchdog stays until everything else is gone: a database closing may still wait for
    // a lock, and only the watchdog ends waits at the cap.
    while (sys.registry().running() > 1)
      std::this_thread::sleep_for(std::chrono::milliseconds{10});
    locks->set_wake(nullptr);
    caf::anon_send_exit(watchdog, caf::exit_reason::user_shutdown);
    // The actors close their databases through the drive: unmount only after they are gone.
    sys.await_all_actors_done();
    live_drive.store(nullptr, std::memory_order_release);
    store_files::mount_gone();
    if (mounted) mounted->unmount();
  }
  spdlog::info("litedrive stopped");
  return exit_code;
}
