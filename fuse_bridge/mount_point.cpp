#include "fuse_bridge/mount_point.hpp"

#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include <spdlog/spdlog.h>

#include "schema/errc.hpp"

namespace litedrive::mount_point {

namespace {

/// statvfs(mnt) in a child process, so that a wedged mount (its daemon stuck, e.g. killed while
/// one of its threads waited on its own mount) cannot hang litedrive's start: 0 or an errno, or
/// ETIMEDOUT if no answer came within two seconds.
int probe_mount(const std::string& mnt) {
  pid_t child = fork();
  if (child == 0) {
    struct statvfs vfs;
    _exit(::statvfs(mnt.c_str(), &vfs) == 0 ? 0 : (errno & 0x7f));
  }
  if (child < 0) return errno;
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

} // namespace

caf::error fail(std::string why) {
  return make_error(errc::unavailable, std::move(why));
}

/// The kernel (>= 6.14) aborts the WHOLE connection when a request takes longer than its FUSE
/// request timeout; a lock wait longer than that would take every user of the drive down.
caf::error check_kernel_timeouts(const settings& s) {
  for (auto name : {"default_request_timeout", "max_request_timeout"}) {
    std::ifstream in{std::string{"/proc/sys/fs/fuse/"} + name};
    long seconds = 0;
    if (in >> seconds && seconds > 0 && s.lock_wait_max >= std::chrono::seconds{seconds})
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
    if (!(in >> id >> parent >> dev >> root >> point)) continue;
    if (point == mnt && line.find(" - fuse.litedrive ") != std::string::npos)
      found = dev.substr(dev.find(':') + 1); // the newest mount there wins
  }
  return found;
}

/// Aborts a FUSE connection through fusectl (mounting fusectl if needed): every pending and
/// future request of the connection fails, so the loop's reads return.
void abort_connection(const std::string& connection) {
  if (connection.empty()) return;
  std::string dir = "/sys/fs/fuse/connections";
  if (access((dir + "/" + connection).c_str(), F_OK) != 0)
    ::mount("fusectl", dir.c_str(), "fusectl", 0, nullptr);
  std::ofstream abort{dir + "/" + connection + "/abort"};
  abort << "1\n";
}

/// A mount point left behind by a crash answers ENOTCONN, or nothing at all: detach it (aborting
/// its FUSE connection first when it hangs). A live litedrive mount there is another daemon's:
/// refuse.
caf::error prepare(const std::string& mnt) {
  for (int round = 0; round < 8; ++round) {
    int err = probe_mount(mnt);
    if (err == 0) break;
    if (err == ENOTCONN || err == ECONNABORTED || err == ETIMEDOUT) {
      spdlog::warn("{} is a stale FUSE mount ({}): detaching it", mnt,
                   err == ETIMEDOUT ? "it does not answer" : "its daemon is gone");
      if (err == ETIMEDOUT) abort_connection(connection_of(mnt));
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
  if (!s.mount_allow_other || geteuid() == 0) return caf::none;
  std::ifstream conf{"/etc/fuse.conf"};
  std::string line;
  while (std::getline(conf, line))
    if (line.rfind("user_allow_other", 0) == 0) return caf::none;
  return fail("mount-allow-other needs 'user_allow_other' in /etc/fuse.conf when litedrive does "
              "not run as root (or start it with --mount-allow-other=false)");
}

} // namespace litedrive::mount_point
