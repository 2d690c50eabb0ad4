#pragma once
// A thin SQLite VFS over the default one that turns the many small writes SQLite makes to a WAL
// file during one commit into one write.
//
// SQLite appends a WAL frame as two writes: its 24-byte header, then the page. A page of 4096
// bytes after a header straddles two kernel pages, so a group commit of N frames makes 2N
// pwrite calls that touch ~3N pages of the page cache (and, with drive_io, 2N size checks and
// invalidations). Measured on a KV SET storm, that was a quarter of the SQLite worker's time.
//
// The shim keeps a WAL handle's consecutive writes in memory and writes them out as one
// pwrite:
//   - when the frame that commits a transaction has been written (a frame header whose
//     "database size after commit" field is not zero, then its page; or that header alone when
//     SQLite rewrites it in place to fix the checksums of frames it overwrote during the
//     transaction), before xWrite returns: a reader, in this process or through the mount, can
//     only learn of a frame from the WAL index that SQLite updates after that write, so it never
//     reads past what is on file;
//   - before any other call on the handle (xSync, xRead, xFileSize, xTruncate, xClose, ...);
//   - when a write is not contiguous with what is held, or would take it past `max_bytes`.
// An error of that write is the error of the xWrite or other call that caused it, so SQLite sees
// it where it would have seen it without the shim. Files that are not WALs pass straight through
// (the default VFS opens them; the shim adds nothing to their calls).

#include <cstddef>

namespace litedrive::wal_vfs {

/// The name to pass to sqlite3_open_v2 to use the shim.
inline constexpr const char* name = "litedrive-wal";

/// Registers the shim (not as the default VFS) over the current default VFS, once; later calls
/// do nothing. `max_bytes` bounds what one WAL handle holds before it writes. Returns false if
/// there is no default VFS to wrap.
bool install(size_t max_bytes = 1u << 20);

} // namespace litedrive::wal_vfs
