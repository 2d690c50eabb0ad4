#include "actors/lock_requests.hpp"

#include <climits>
#include <sys/stat.h>
#include <unistd.h>

namespace litedrive::lock_requests {

namespace {

constexpr std::string_view shm_suffix = "-shm";
constexpr std::string_view deleted_suffix = " (deleted)";

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() > suffix.size()
         && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// The database header says WAL when its read and write versions (bytes 18, 19) are 2.
bool header_says_wal(int fd) {
  unsigned char v[2] = {0, 0};
  return pread(fd, v, 2, 18) == 2 && v[0] == 2 && v[1] == 2;
}

bool hot_journal_exists(const std::string& db_path) {
  struct stat st;
  return ::stat((db_path + "-journal").c_str(), &st) == 0 && st.st_size > 0;
}

} // namespace

file_identity identify(std::string_view path) {
  if (ends_with(path, deleted_suffix)) path.remove_suffix(deleted_suffix.size());
  file_identity out;
  if (ends_with(path, shm_suffix)) {
    path.remove_suffix(shm_suffix.size());
    out.role = file_role::shm;
  }
  out.db_path = std::string{path};
  return out;
}

std::string path_of(int fd) {
  char buf[PATH_MAX + 1];
  auto n = readlink(("/proc/self/fd/" + std::to_string(fd)).c_str(), buf, PATH_MAX);
  if (n <= 0) return {};
  std::string path{buf, static_cast<size_t>(n)};
  if (ends_with(path, deleted_suffix)) path.erase(path.size() - deleted_suffix.size());
  return path;
}

bool from_flock(const struct flock& fl, lock_request& out) {
  if (fl.l_whence != SEEK_SET || fl.l_start < 0 || fl.l_len < 0) return false;
  out.kind = fl.l_type == F_UNLCK   ? lock_kind::unlock
             : fl.l_type == F_WRLCK ? lock_kind::write
                                    : lock_kind::read;
  out.start = static_cast<uint64_t>(fl.l_start);
  out.end = fl.l_len == 0 ? to_eof : static_cast<uint64_t>(fl.l_start + fl.l_len - 1);
  return true;
}

void to_flock(const getlk_answer& answer, struct flock& fl) {
  if (!answer) {
    fl.l_type = F_UNLCK;
    return;
  }
  fl.l_type = answer->kind == lock_kind::write ? F_WRLCK : F_RDLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = static_cast<off_t>(answer->start);
  fl.l_len = answer->end == to_eof ? 0 : static_cast<off_t>(answer->end - answer->start + 1);
  fl.l_pid = static_cast<pid_t>(answer->pid);
}

void describe(lock_request& r, int fd, const std::string& db_path) {
  r.wal = r.file == file_role::shm || header_says_wal(fd);
  r.hot_journal = r.file == file_role::main && !r.wal && r.kind == lock_kind::write
                  && r.end >= sqlite_bytes::pending && r.start <= sqlite_bytes::shared_last
                  && hot_journal_exists(db_path);
}

} // namespace litedrive::lock_requests
