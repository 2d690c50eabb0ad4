#include "actors/hopeless_waits.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

namespace litedrive::hopeless_waits {

namespace {

std::string link_of(const std::string& path) {
  char buf[PATH_MAX];
  auto n = readlink(path.c_str(), buf, sizeof(buf) - 1);
  return n > 0 ? std::string{buf, static_cast<size_t>(n)} : std::string{};
}

/// The fd `pid` is blocked reading, or -1: /proc/PID/syscall is "NR arg1 ..." while in a call.
int blocked_read_fd(pid_t pid) {
  std::ifstream in{"/proc/" + std::to_string(pid) + "/syscall"};
  long nr = -1;
  std::string arg;
  if (!(in >> nr >> arg) || (nr != SYS_read && nr != SYS_readv)) return -1;
  return static_cast<int>(std::strtol(arg.c_str(), nullptr, 16));
}

/// Whether `pid` holds an end of `pipe` ("pipe:[N]") open for writing.
bool writes_to(pid_t pid, const std::string& pipe) {
  auto dir = "/proc/" + std::to_string(pid) + "/fd";
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return false;
  bool found = false;
  while (auto* e = readdir(d)) {
    if (e->d_name[0] == '.' || link_of(dir + "/" + e->d_name) != pipe) continue;
    std::ifstream info{"/proc/" + std::to_string(pid) + "/fdinfo/" + e->d_name};
    std::string key;
    unsigned long flags = 0;
    while (info >> key)
      if (key == "flags:") {
        info >> std::oct >> flags;
        break;
      }
    if ((flags & O_ACCMODE) != O_RDONLY) {
      found = true;
      break;
    }
  }
  closedir(d);
  return found;
}

/// The number of threads of the process `pid` belongs to (0 if unknown).
int threads_of(pid_t pid) {
  std::ifstream in{"/proc/" + std::to_string(pid) + "/status"};
  std::string key;
  while (in >> key)
    if (key == "Threads:") {
      int n = 0;
      in >> n;
      return n;
    }
  return 0;
}

} // namespace

bool holder_reads_from_waiter(pid_t holder, pid_t waiter) {
  if (holder <= 0 || waiter <= 0 || holder == waiter || holder == getpid()) return false;
  // Only a single-threaded waiter surely cannot write while it waits: another of its threads
  // might write to the pipe later.
  if (threads_of(waiter) != 1) return false;
  int fd = blocked_read_fd(holder);
  if (fd < 0) return false;
  auto target = link_of("/proc/" + std::to_string(holder) + "/fd/" + std::to_string(fd));
  if (target.rfind("pipe:", 0) != 0) return false;
  return writes_to(waiter, target);
}

} // namespace litedrive::hopeless_waits
