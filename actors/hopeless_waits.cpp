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
#include <vector>

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

/// The pipe `pid` is blocked reading ("pipe:[N]"), or "".
std::string blocked_pipe(pid_t pid) {
  int fd = blocked_read_fd(pid);
  if (fd < 0) return {};
  auto target = link_of("/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd));
  return target.rfind("pipe:", 0) == 0 ? target : std::string{};
}

/// Whether `pid`, single-threaded, is blocked reading a pipe whose write end `waiter` holds.
bool reads_from(pid_t pid, pid_t waiter) {
  auto pipe = blocked_pipe(pid);
  return !pipe.empty() && writes_to(waiter, pipe);
}

/// The processes (other than `except`) that hold a write end of `pipe`: a scan of /proc.
std::vector<pid_t> writers_of(const std::string& pipe, pid_t except) {
  std::vector<pid_t> out;
  DIR* d = opendir("/proc");
  if (d == nullptr) return out;
  while (auto* e = readdir(d)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (pid <= 0 || *end != '\0' || pid == except) continue;
    if (writes_to(static_cast<pid_t>(pid), pipe)) out.push_back(static_cast<pid_t>(pid));
  }
  closedir(d);
  return out;
}

} // namespace

bool holder_reads_from_waiter(pid_t holder, pid_t waiter, bool look_further) {
  if (holder <= 0 || waiter <= 0 || holder == waiter || holder == getpid()) return false;
  // Only a single-threaded waiter surely cannot write while it waits: another of its threads
  // might write to the pipe later.
  if (threads_of(waiter) != 1) return false;
  auto pipe = blocked_pipe(holder);
  if (pipe.empty()) return false;
  if (writes_to(waiter, pipe)) return true;
  if (!look_further) return false;
  // One step further: the holder reads from a process that itself sleeps reading from the
  // waiter (a test driver between two of its children).
  for (auto middle : writers_of(pipe, holder))
    if (middle != waiter && middle != getpid() && threads_of(middle) == 1
        && reads_from(middle, waiter))
      return true;
  return false;
}

} // namespace litedrive::hopeless_waits
