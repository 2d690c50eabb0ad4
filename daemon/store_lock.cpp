#include "daemon/store_lock.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include <spdlog/spdlog.h>

#include "schema/errc.hpp"

namespace litedrive {

namespace {

/// The pid holding a FLOCK on the inode (dev, ino), from /proc/locks; 0 if none is listed.
pid_t flock_holder(dev_t dev, ino_t ino) {
  std::ifstream locks{"/proc/locks"};
  std::string line;
  while (std::getline(locks, line)) {
    // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
    std::istringstream in{line};
    std::string num, type, mode, rw, id;
    pid_t pid = 0;
    if (!(in >> num >> type >> mode >> rw >> pid >> id) || type != "FLOCK") continue;
    unsigned maj = 0, min = 0;
    unsigned long long inode = 0;
    if (std::sscanf(id.c_str(), "%x:%x:%llu", &maj, &min, &inode) == 3 && inode == ino
        && makedev(maj, min) == dev)
      return pid;
  }
  return 0;
}

/// Whether `pid` is on its way out: a SIGKILL pending, or already a zombie.
bool dying(pid_t pid) {
  std::ifstream status{"/proc/" + std::to_string(pid) + "/status"};
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("State:", 0) == 0
        && (line.find('Z') != std::string::npos || line.find('X') != std::string::npos))
      return true;
    if (line.rfind("ShdPnd:", 0) == 0 || line.rfind("SigPnd:", 0) == 0) {
      auto mask = std::stoull(line.substr(line.find(':') + 1), nullptr, 16);
      if (mask & (1ull << (SIGKILL - 1))) return true;
    }
  }
  return false;
}

} // namespace

caf::expected<int> claim_store(const std::string& store) {
  int fd = open(store.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd == -1)
    return make_error(errc::unavailable, "cannot open the store " + store + ": " + strerror(errno));
  struct stat st {};
  fstat(fd, &st);
  for (int attempt = 0;; ++attempt) {
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) return fd;
    if (errno != EWOULDBLOCK) {
      int err = errno;
      close(fd);
      return make_error(errc::unavailable, "cannot lock the store " + store + ": " + strerror(err));
    }
    auto holder = flock_holder(st.st_dev, st.st_ino);
    if (holder > 0 && dying(holder)) {
      if (attempt < 20) { // 2 s for it to finish exiting
        std::this_thread::sleep_for(std::chrono::milliseconds{100});
        continue;
      }
      spdlog::warn("the previous litedrive (pid {}) was killed and is still exiting; it serves "
                   "nobody any more: starting over the store {} anyway",
                   holder, store);
      // Ours as soon as it is gone, so that a later start sees this daemon as the holder.
      std::thread([fd] { flock(fd, LOCK_EX); }).detach();
      return fd;
    }
    close(fd);
    return make_error(errc::unavailable,
                      "another litedrive"
                          + (holder > 0 ? " (pid " + std::to_string(holder) + ")" : std::string{})
                          + " serves the store " + store
                          + ": one daemon per store (two would keep two lock tables over the same "
                            "files); stop it first, or give this one another --store");
  }
}

} // namespace litedrive
