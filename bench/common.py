"""Helpers shared by the benchmarks."""
import os
import time


def fsync_us(directory, n=200):
    """Microseconds of one 4 KiB pwrite + fdatasync in `directory` (the disk's durable cost)."""
    path = os.path.join(directory, "fsync.probe")
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
    t0 = time.perf_counter()
    for _ in range(n):
        os.pwrite(fd, b"x" * 4096, 0)
        os.fdatasync(fd)
    dt = time.perf_counter() - t0
    os.close(fd)
    os.unlink(path)
    return dt / n * 1e6
