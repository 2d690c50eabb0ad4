#include "actors/wal_vfs.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <new>
#include <string>

#include <sqlite3.h>

namespace litedrive::wal_vfs {

namespace {

sqlite3_vfs* base_vfs = nullptr; ///< the VFS underneath (SQLite's default when installed)
sqlite3_vfs shim_vfs;
size_t max_held = 0;

/// A WAL handle: the file of the VFS underneath sits right after this struct, in the memory
/// SQLite allocated for the handle (szOsFile covers both).
struct wal_file {
  sqlite3_file base;      ///< pMethods = &wal_methods
  sqlite3_file* real;     ///< the underlying VFS's handle
  std::string held;       ///< consecutive writes not yet on file
  sqlite3_int64 held_at;  ///< file offset of held[0]
  sqlite3_int64 end;      ///< end of the furthest write since the WAL (re)started at offset 0
  bool commit_frame;      ///< the last write was the header of a commit frame, its page follows
};

constexpr size_t real_offset = (sizeof(wal_file) + 15) & ~size_t{15};

wal_file* self(sqlite3_file* f) {
  return reinterpret_cast<wal_file*>(f);
}

sqlite3_file* real(sqlite3_file* f) {
  return self(f)->real;
}

/// The most one write of the unix VFS may carry: it keeps only the low 17 bits of a length
/// (os_unix.c, seekAndWriteFd), so a larger write would come back short.
constexpr size_t max_write = (size_t{1} << 17) - 4096;

/// Writes what is held (in writes of at most max_write), and forgets it whatever the outcome:
/// after an error SQLite abandons the transaction, and stale bytes must never reach the file
/// later.
int flush(wal_file* w) {
  int rc = SQLITE_OK;
  for (size_t done = 0; done < w->held.size() && rc == SQLITE_OK; done += max_write) {
    size_t n = std::min(max_write, w->held.size() - done);
    rc = w->real->pMethods->xWrite(w->real, w->held.data() + done, static_cast<int>(n),
                                   w->held_at + static_cast<sqlite3_int64>(done));
  }
  w->held.clear();
  return rc;
}

int flush(sqlite3_file* f) {
  return flush(self(f));
}

/// A 24-byte write is a frame header (the WAL header is 32 bytes); bytes 4..7 are the database
/// size after the commit, non-zero only in the frame that commits a transaction.
bool is_commit_header(const void* data, int amount) {
  if (amount != 24) return false;
  const auto* p = static_cast<const unsigned char*>(data) + 4;
  return (p[0] | p[1] | p[2] | p[3]) != 0;
}

int wal_write(sqlite3_file* f, const void* data, int amount, sqlite3_int64 offset) {
  auto* w = self(f);
  if (!w->held.empty()
      && (offset != w->held_at + static_cast<sqlite3_int64>(w->held.size())
          || w->held.size() + static_cast<size_t>(amount) > max_held)) {
    if (int rc = flush(w); rc != SQLITE_OK) return rc;
  }
  if (static_cast<size_t>(amount) > std::min(max_held, max_write))
    return w->real->pMethods->xWrite(w->real, data, amount, offset);
  if (w->held.empty()) w->held_at = offset;
  w->held.append(static_cast<const char*>(data), static_cast<size_t>(amount));
  // A write at offset 0 is the WAL header of a restarted WAL: frames start over from there.
  bool appends = offset == 0 || offset >= w->end;
  w->end = offset == 0 ? offset + amount : std::max(w->end, offset + amount);
  bool completes_commit = w->commit_frame;
  w->commit_frame = false;
  if (is_commit_header(data, amount)) {
    // Appended, its page follows in the next write; rewritten in place (SQLite recomputing the
    // checksums of frames it overwrote during the transaction), it is the last write.
    if (appends)
      w->commit_frame = true;
    else
      completes_commit = true;
  }
  // The commit frame is complete: it goes to the file before SQLite publishes it in the index.
  return completes_commit ? flush(w) : SQLITE_OK;
}

int wal_close(sqlite3_file* f) {
  auto* w = self(f);
  int rc = flush(w);
  int rc2 = w->real->pMethods ? w->real->pMethods->xClose(w->real) : SQLITE_OK;
  w->~wal_file();
  return rc != SQLITE_OK ? rc : rc2;
}

int wal_read(sqlite3_file* f, void* out, int amount, sqlite3_int64 offset) {
  if (int rc = flush(f); rc != SQLITE_OK) return rc;
  return real(f)->pMethods->xRead(real(f), out, amount, offset);
}

int wal_truncate(sqlite3_file* f, sqlite3_int64 size) {
  if (int rc = flush(f); rc != SQLITE_OK) return rc;
  self(f)->end = std::min(self(f)->end, size);
  return real(f)->pMethods->xTruncate(real(f), size);
}

int wal_sync(sqlite3_file* f, int flags) {
  if (int rc = flush(f); rc != SQLITE_OK) return rc;
  return real(f)->pMethods->xSync(real(f), flags);
}

int wal_file_size(sqlite3_file* f, sqlite3_int64* size) {
  if (int rc = flush(f); rc != SQLITE_OK) return rc;
  return real(f)->pMethods->xFileSize(real(f), size);
}

int wal_lock(sqlite3_file* f, int level) {
  return real(f)->pMethods->xLock(real(f), level);
}

int wal_unlock(sqlite3_file* f, int level) {
  return real(f)->pMethods->xUnlock(real(f), level);
}

int wal_check_reserved(sqlite3_file* f, int* out) {
  return real(f)->pMethods->xCheckReservedLock(real(f), out);
}

int wal_file_control(sqlite3_file* f, int op, void* arg) {
  if (int rc = flush(f); rc != SQLITE_OK) return rc;
  return real(f)->pMethods->xFileControl(real(f), op, arg);
}

int wal_sector_size(sqlite3_file* f) {
  return real(f)->pMethods->xSectorSize(real(f));
}

int wal_device_characteristics(sqlite3_file* f) {
  return real(f)->pMethods->xDeviceCharacteristics(real(f));
}

int wal_shm_map(sqlite3_file* f, int region, int size, int extend, void volatile** out) {
  return real(f)->pMethods->xShmMap(real(f), region, size, extend, out);
}

int wal_shm_lock(sqlite3_file* f, int offset, int n, int flags) {
  return real(f)->pMethods->xShmLock(real(f), offset, n, flags);
}

void wal_shm_barrier(sqlite3_file* f) {
  real(f)->pMethods->xShmBarrier(real(f));
}

int wal_shm_unmap(sqlite3_file* f, int delete_flag) {
  return real(f)->pMethods->xShmUnmap(real(f), delete_flag);
}

int wal_fetch(sqlite3_file* f, sqlite3_int64 offset, int amount, void** out) {
  if (int rc = flush(f); rc != SQLITE_OK) return rc;
  return real(f)->pMethods->xFetch(real(f), offset, amount, out);
}

int wal_unfetch(sqlite3_file* f, sqlite3_int64 offset, void* page) {
  return real(f)->pMethods->xUnfetch(real(f), offset, page);
}

const sqlite3_io_methods wal_methods = {
  3,
  wal_close,
  wal_read,
  wal_write,
  wal_truncate,
  wal_sync,
  wal_file_size,
  wal_lock,
  wal_unlock,
  wal_check_reserved,
  wal_file_control,
  wal_sector_size,
  wal_device_characteristics,
  wal_shm_map,
  wal_shm_lock,
  wal_shm_barrier,
  wal_shm_unmap,
  wal_fetch,
  wal_unfetch,
};

int shim_open(sqlite3_vfs*, const char* name, sqlite3_file* f, int flags, int* out_flags) {
  if (!(flags & SQLITE_OPEN_WAL))
    return base_vfs->xOpen(base_vfs, name, f, flags, out_flags); // the handle is the base's own
  auto* w = new (f) wal_file{};
  w->real = reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(f) + real_offset);
  std::memset(w->real, 0, static_cast<size_t>(base_vfs->szOsFile));
  int rc = base_vfs->xOpen(base_vfs, name, w->real, flags, out_flags);
  if (rc != SQLITE_OK) {
    if (w->real->pMethods) w->real->pMethods->xClose(w->real);
    w->~wal_file();
    f->pMethods = nullptr;
    return rc;
  }
  // The underlying handle's methods must offer what ours forward (version 3 has them all).
  if (w->real->pMethods->iVersion < 3) {
    w->real->pMethods->xClose(w->real);
    w->~wal_file();
    f->pMethods = nullptr;
    return SQLITE_CANTOPEN;
  }
  w->base.pMethods = &wal_methods;
  return SQLITE_OK;
}

// -- everything else is the base VFS's, called with the base VFS ----------------------------------

int shim_delete(sqlite3_vfs*, const char* name, int sync_dir) {
  return base_vfs->xDelete(base_vfs, name, sync_dir);
}
int shim_access(sqlite3_vfs*, const char* name, int flags, int* out) {
  return base_vfs->xAccess(base_vfs, name, flags, out);
}
int shim_full_pathname(sqlite3_vfs*, const char* name, int n, char* out) {
  return base_vfs->xFullPathname(base_vfs, name, n, out);
}
void* shim_dl_open(sqlite3_vfs*, const char* name) {
  return base_vfs->xDlOpen(base_vfs, name);
}
void shim_dl_error(sqlite3_vfs*, int n, char* out) {
  base_vfs->xDlError(base_vfs, n, out);
}
void (*shim_dl_sym(sqlite3_vfs*, void* lib, const char* sym))(void) {
  return base_vfs->xDlSym(base_vfs, lib, sym);
}
void shim_dl_close(sqlite3_vfs*, void* lib) {
  base_vfs->xDlClose(base_vfs, lib);
}
int shim_randomness(sqlite3_vfs*, int n, char* out) {
  return base_vfs->xRandomness(base_vfs, n, out);
}
int shim_sleep(sqlite3_vfs*, int us) {
  return base_vfs->xSleep(base_vfs, us);
}
int shim_current_time(sqlite3_vfs*, double* out) {
  return base_vfs->xCurrentTime(base_vfs, out);
}
int shim_last_error(sqlite3_vfs*, int n, char* out) {
  return base_vfs->xGetLastError ? base_vfs->xGetLastError(base_vfs, n, out) : 0;
}
int shim_current_time_int64(sqlite3_vfs*, sqlite3_int64* out) {
  return base_vfs->xCurrentTimeInt64(base_vfs, out);
}
int shim_set_system_call(sqlite3_vfs*, const char* name, sqlite3_syscall_ptr call) {
  return base_vfs->xSetSystemCall(base_vfs, name, call);
}
sqlite3_syscall_ptr shim_get_system_call(sqlite3_vfs*, const char* name) {
  return base_vfs->xGetSystemCall(base_vfs, name);
}
const char* shim_next_system_call(sqlite3_vfs*, const char* name) {
  return base_vfs->xNextSystemCall(base_vfs, name);
}

} // namespace

bool install(size_t max_bytes) {
  static std::once_flag once;
  static bool installed = false;
  std::call_once(once, [&] {
    base_vfs = sqlite3_vfs_find(nullptr);
    if (base_vfs == nullptr || base_vfs->iVersion < 3) return;
    max_held = max_bytes;
    shim_vfs = sqlite3_vfs{};
    shim_vfs.iVersion = 3;
    shim_vfs.szOsFile = static_cast<int>(real_offset) + base_vfs->szOsFile;
    shim_vfs.mxPathname = base_vfs->mxPathname;
    shim_vfs.zName = name;
    shim_vfs.xOpen = shim_open;
    shim_vfs.xDelete = shim_delete;
    shim_vfs.xAccess = shim_access;
    shim_vfs.xFullPathname = shim_full_pathname;
    shim_vfs.xDlOpen = shim_dl_open;
    shim_vfs.xDlError = shim_dl_error;
    shim_vfs.xDlSym = shim_dl_sym;
    shim_vfs.xDlClose = shim_dl_close;
    shim_vfs.xRandomness = shim_randomness;
    shim_vfs.xSleep = shim_sleep;
    shim_vfs.xCurrentTime = shim_current_time;
    shim_vfs.xGetLastError = shim_last_error;
    shim_vfs.xCurrentTimeInt64 = shim_current_time_int64;
    shim_vfs.xSetSystemCall = shim_set_system_call;
    shim_vfs.xGetSystemCall = shim_get_system_call;
    shim_vfs.xNextSystemCall = shim_next_system_call;
    installed = sqlite3_vfs_register(&shim_vfs, 0) == SQLITE_OK;
  });
  return installed;
}

} // namespace litedrive::wal_vfs
