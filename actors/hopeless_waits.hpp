#pragma once
// Waits that can never end on their own because the lock's holder waits for the waiter outside
// the lock table: the holder sleeps in read() on a pipe whose write end the waiting process
// holds (a test driver reading its child's answer while the child waits for the driver's
// transaction, as SQLite's own multi-process tests do). That is a deadlock the wait-for graph
// cannot see; the lock watchdog ends it as it ends a graph cycle (a token-only WAL read mark is
// granted, anything else fails with EAGAIN, so SQLite's busy handling takes over).
//
// Read from /proc: needs the same PID namespace and root (or ptrace rights) over the processes;
// where /proc says nothing, nothing is decided.

#include <sys/types.h>

namespace litedrive::hopeless_waits {

/// Whether thread/process `holder` is blocked reading a pipe whose write end `waiter` holds,
/// and `waiter` is single-threaded (so it cannot write to it while it waits).
/// With `look_further`, also when the holder reads from a single-threaded process that itself
/// sleeps reading from the waiter (one step; it scans /proc, so only for waits that lasted).
bool holder_reads_from_waiter(pid_t holder, pid_t waiter, bool look_further);

} // namespace litedrive::hopeless_waits
