"""The drive as a plain POSIX file system: operations, errno values, ownership of created files,
O_DIRECT and mmap, as root and as an unprivileged user."""
import errno
import sqlite3
import mmap
import os
import stat
import subprocess
import sys
import textwrap
import unittest

from harness import Daemon


def err(f):
    try:
        f()
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]


class Posix(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(mount=True)
        os.chmod(cls.d.tmp, 0o755)  # let the unprivileged user reach the mount point
        cls.d.start()
        cls.m = cls.d.mount

    @classmethod
    def tearDownClass(cls):
        code = cls.d.stop()
        cls.d.cleanup()
        assert code == 0, code

    def p(self, *parts):
        return os.path.join(self.m, *parts)

    def test_store_root_is_shared_like_tmp(self):
        self.assertEqual(stat.S_IMODE(os.stat(self.m).st_mode), 0o1777)

    def test_files_and_directories(self):
        os.mkdir(self.p("d"))
        self.assertEqual(err(lambda: os.mkdir(self.p("d"))), "EEXIST")
        with open(self.p("d", "f"), "w") as f:
            f.write("hello world")
        self.assertEqual(err(lambda: os.rmdir(self.p("d"))), "ENOTEMPTY")
        self.assertEqual(err(lambda: os.unlink(self.p("d"))), "EISDIR")
        self.assertEqual(err(lambda: os.rmdir(self.p("d", "f"))), "ENOTDIR")
        self.assertEqual(err(lambda: open(self.p("missing"))), "ENOENT")
        self.assertEqual(err(lambda: open(self.p("x" * 300), "w")), "ENAMETOOLONG")
        self.assertEqual(err(lambda: os.open(self.p("d"), os.O_WRONLY)), "EISDIR")
        self.assertEqual(err(lambda: os.open(self.p("d", "f"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)), "EEXIST")
        os.truncate(self.p("d", "f"), 5)
        with open(self.p("d", "f")) as f:
            self.assertEqual(f.read(), "hello")
        self.assertIn("f", os.listdir(self.p("d")))
        os.unlink(self.p("d", "f"))
        os.rmdir(self.p("d"))
        self.assertFalse(os.path.exists(self.p("d")))

    def test_attributes(self):
        path = self.p("attrs")
        open(path, "w").close()
        os.chmod(path, 0o640)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o640)
        os.chown(path, 65534, 65534)
        self.assertEqual((os.stat(path).st_uid, os.stat(path).st_gid), (65534, 65534))
        os.utime(path, ns=(1_000_000_123, 2_000_000_456))
        self.assertEqual(os.stat(path).st_mtime_ns, 2_000_000_456)
        os.setxattr(path, "user.litedrive", b"v1")
        self.assertEqual(os.getxattr(path, "user.litedrive"), b"v1")
        self.assertIn("user.litedrive", os.listxattr(path))
        os.removexattr(path, "user.litedrive")
        self.assertEqual(err(lambda: os.getxattr(path, "user.litedrive")), "ENODATA")
        self.assertGreater(os.statvfs(self.m).f_blocks, 0)

    def test_links_and_renames(self):
        open(self.p("src"), "w").close()
        os.symlink("src", self.p("sym"))
        self.assertEqual(os.readlink(self.p("sym")), "src")
        os.link(self.p("src"), self.p("hard"))
        self.assertEqual(os.stat(self.p("src")).st_nlink, 2)
        os.rename(self.p("hard"), self.p("moved"))
        self.assertTrue(os.path.exists(self.p("moved")) and not os.path.exists(self.p("hard")))
        with open(self.p("other"), "w") as f:
            f.write("other")
        # renameat2 flags pass through: NOREPLACE refuses, EXCHANGE swaps.
        renameat2 = getattr(os, "renameat2", None)
        libc = __import__("ctypes").CDLL(None, use_errno=True)
        AT_FDCWD, RENAME_NOREPLACE, RENAME_EXCHANGE = -100, 1, 2
        rc = libc.renameat2(AT_FDCWD, self.p("src").encode(), AT_FDCWD, self.p("other").encode(), RENAME_NOREPLACE)
        self.assertEqual((rc, __import__("ctypes").get_errno()), (-1, errno.EEXIST))
        rc = libc.renameat2(AT_FDCWD, self.p("src").encode(), AT_FDCWD, self.p("other").encode(), RENAME_EXCHANGE)
        self.assertEqual(rc, 0)
        with open(self.p("src")) as f:
            self.assertEqual(f.read(), "other")
        os.mkfifo(self.p("fifo"))
        self.assertTrue(stat.S_ISFIFO(os.lstat(self.p("fifo")).st_mode))

    def test_o_direct_and_mmap(self):
        fd = os.open(self.p("direct"), os.O_CREAT | os.O_RDWR | os.O_DIRECT, 0o644)
        buf = mmap.mmap(-1, 4096)
        buf.write(b"d" * 4096)
        self.assertEqual(os.write(fd, buf), 4096)
        os.lseek(fd, 0, os.SEEK_SET)
        back = mmap.mmap(-1, 4096)
        self.assertEqual(os.readv(fd, [back]), 4096)
        self.assertEqual(back[:4], b"dddd")
        os.close(fd)
        fd = os.open(self.p("mapped"), os.O_CREAT | os.O_RDWR, 0o644)
        os.ftruncate(fd, 8192)
        m = mmap.mmap(fd, 8192)
        m[4096:4101] = b"abcde"
        m.flush()
        m.close()
        os.close(fd)
        with open(self.p("mapped"), "rb") as f:
            f.seek(4096)
            self.assertEqual(f.read(5), b"abcde")
        # What was written through the mount is in the store, byte for byte.
        with open(os.path.join(self.d.store, "mapped"), "rb") as f:
            f.seek(4096)
            self.assertEqual(f.read(5), b"abcde")

    def test_o_direct_misaligned_is_einval_like_native(self):
        """Direct I/O at an offset or of a size the backing file system cannot do directly fails
        with the errno the same call gets on the store itself (ext4: EINVAL)."""
        def attempt(path):
            fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_DIRECT, 0o644)
            try:
                buf = mmap.mmap(-1, 8192)  # page-aligned: only offset and size are off
                buf.write(b"q" * 8192)
                return (err(lambda: os.pwrite(fd, memoryview(buf)[:4096], 100)),
                        err(lambda: os.pwrite(fd, memoryview(buf)[:1000], 0)),
                        err(lambda: os.pwrite(fd, memoryview(buf)[:4096], 4096)),
                        err(lambda: os.preadv(fd, [memoryview(buf)[:4096]], 100)),
                        err(lambda: os.preadv(fd, [memoryview(buf)[:4096]], 0)))
            finally:
                os.close(fd)
        native = attempt(os.path.join(self.d.store, "..", "direct-native"))
        self.assertEqual(native[2], "ok")
        self.assertEqual(attempt(self.p("direct-misaligned")), native)

    def test_fsync_fallocate_seek(self):
        fd = os.open(self.p("sync"), os.O_CREAT | os.O_RDWR, 0o644)
        os.pwrite(fd, b"x" * 100, 1 << 20)
        os.fsync(fd)
        os.fdatasync(fd)
        os.posix_fallocate(fd, 0, 4096)
        self.assertEqual(os.fstat(fd).st_size, (1 << 20) + 100)
        # SEEK_DATA/SEEK_HOLE answer what the backing file system answers.
        with open(os.path.join(self.d.store, "sync"), "rb") as native:
            for whence in (os.SEEK_DATA, os.SEEK_HOLE):
                self.assertEqual(os.lseek(fd, 0, whence), os.lseek(native.fileno(), 0, whence))
        os.close(fd)

    def test_unprivileged_user(self):
        script = textwrap.dedent(f"""
            import errno, os, sqlite3
            m = {self.m!r}
            def err(f):
                try:
                    f(); return "ok"
                except OSError as e:
                    return errno.errorcode[e.errno]
            os.umask(0o022)
            with open(m + "/u-file", "w") as f: f.write("x")
            st = os.stat(m + "/u-file")
            print("file", st.st_uid, st.st_gid, oct(st.st_mode & 0o777))
            os.mkdir(m + "/u-dir", 0o750)
            print("dir", os.stat(m + "/u-dir").st_uid, oct(os.stat(m + "/u-dir").st_mode & 0o777))
            os.symlink("u-file", m + "/u-link")
            print("link", os.lstat(m + "/u-link").st_uid)
            print("chown-root", err(lambda: os.chown(m + "/u-file", 0, 0)))
            print("write-root-file", err(lambda: open(m + "/root-file", "a")))
            print("unlink-root-file", err(lambda: os.unlink(m + "/root-file")))
            con = sqlite3.connect(m + "/u.db", timeout=0)
            con.execute("CREATE TABLE t (x)"); con.execute("INSERT INTO t VALUES (1)"); con.commit()
            print("sqlite", con.execute("SELECT count(*) FROM t").fetchone()[0])
            con.close()
            print("journal-owner", os.stat(m + "/u.db").st_uid)
        """)
        with open(self.p("root-file"), "w") as f:
            f.write("root")
        os.chmod(self.p("root-file"), 0o644)
        out = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                              "/usr/bin/python3", "-c", script], capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        lines = dict(line.split(" ", 1) for line in out.stdout.strip().splitlines())
        self.assertEqual(lines["file"], "65534 65534 0o644")
        self.assertEqual(lines["dir"], "65534 0o750")
        self.assertEqual(lines["link"], "65534")
        self.assertEqual(lines["chown-root"], "EPERM")
        self.assertEqual(lines["write-root-file"], "EACCES")
        self.assertEqual(lines["unlink-root-file"], "EPERM")  # sticky store root
        self.assertEqual(lines["sqlite"], "1")
        self.assertEqual(lines["journal-owner"], "65534")
        # The store holds the same ownership.
        self.assertEqual(os.stat(os.path.join(self.d.store, "u-file")).st_uid, 65534)

    def test_set_id_bits_dropped_as_the_kernel_would(self):
        # The drive negotiates FUSE_HANDLE_KILLPRIV_V2: the kernel leaves dropping S_ISUID and
        # S_ISGID on writes, truncates and O_TRUNC opens of unprivileged processes to it.
        # Expected values are Linux's on a local file system (checked on ext4 beside the mount).
        os.makedirs(self.p("sid"), exist_ok=True)
        os.chmod(self.p("sid"), 0o1777)
        cases = {"append": "open(p, 'a').write('x')",
                 "truncate": "os.truncate(p, 1)",
                 "otrunc": "open(p, 'w').close()",
                 "ftruncate": "os.ftruncate(os.open(p, os.O_WRONLY), 0)"}
        expected = {0o4777: 0o777, 0o6777: 0o777, 0o2777: 0o777, 0o2767: 0o767, 0o4766: 0o766}
        for how, code in cases.items():
            for mode, after in expected.items():
                with self.subTest(how=how, mode=oct(mode)):
                    p = self.p("sid", f"{how}-{mode:o}")
                    with open(p, "w") as f:
                        f.write("data")
                    os.chmod(p, mode)
                    out = subprocess.run(
                        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                         "/usr/bin/python3", "-c", f"import os; p = {p!r}; {code}"],
                        capture_output=True, text=True, timeout=60)
                    self.assertEqual(out.returncode, 0, out.stderr)
                    # Right away through the mount (the kernel must not serve its cached mode)
                    # and in the store.
                    self.assertEqual(oct(os.stat(p).st_mode & 0o7777), oct(after))
                    self.assertEqual(oct(os.stat(os.path.join(self.d.store, "sid", os.path.basename(p))).st_mode & 0o7777), oct(after))
        # Root (CAP_FSETID) keeps them.
        p = self.p("sid", "root")
        with open(p, "w") as f:
            f.write("data")
        os.chmod(p, 0o6777)
        with open(p, "a") as f:
            f.write("more")
        os.truncate(p, 1)
        self.assertEqual(oct(os.stat(p).st_mode & 0o7777), oct(0o6777))

    def test_writes_do_not_ask_for_capabilities_each_time(self):
        # Without FUSE_HANDLE_KILLPRIV_V2 the kernel sends GETXATTR security.capability before
        # every write; with it, once per inode.
        def getxattrs():
            return self.d.request("GET", "/api/v1/sqlite/health")[1]["drive_requests"]["getxattr"]
        p = self.p("many-writes")
        before = getxattrs()
        fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            for i in range(100):
                os.pwrite(fd, b"x" * 10, i * 10)
        finally:
            os.close(fd)
        self.assertLess(getxattrs() - before, 5)
        self.assertEqual(os.path.getsize(p), 1000)


class StartupChecks(unittest.TestCase):
    def test_kernel_request_timeout_below_the_lock_wait_refuses_to_start(self):
        knob = "/proc/sys/fs/fuse/default_request_timeout"
        if not os.path.exists(knob):
            self.skipTest("this kernel has no FUSE request timeout")
        with open(knob) as f:
            before = f.read().strip()
        try:
            with open(knob, "w") as f:
                f.write("20\n")
            d = Daemon("--lock-wait-max-ms=30000", mount=True)
            try:
                with self.assertRaises(RuntimeError) as ctx:
                    d.start(timeout=10)
                self.assertIn("default_request_timeout", str(ctx.exception))
            finally:
                d.cleanup()
            d = Daemon("--lock-wait-max-ms=15000", mount=True)
            try:
                d.start()
                self.assertEqual(d.stop(), 0)
            finally:
                d.cleanup()
        finally:
            with open(knob, "w") as f:
                f.write(before + "\n")

    def test_mount_inside_the_store_is_refused(self):
        d = Daemon()
        d.mount = os.path.join(d.store, "inner")
        try:
            with self.assertRaises(RuntimeError) as ctx:
                d.start(timeout=10)
            self.assertIn("must not contain each other", str(ctx.exception))
        finally:
            d.mount = None
            d.cleanup()

    def test_a_second_daemon_on_the_same_store_is_refused(self):
        """One daemon per store (issue 16): a second one, with its own mount point, would keep a
        second lock table over the same files."""
        first = Daemon(mount=True).start()
        second = Daemon(store=first.store, mount=True)
        try:
            with self.assertRaises(RuntimeError) as ctx:
                second.start(timeout=10)
            self.assertIn("another litedrive", str(ctx.exception))
            self.assertIn(f"pid {first.proc.pid}", str(ctx.exception))
            self.assertEqual(second.proc.returncode, 1)
            self.assertFalse(os.path.ismount(second.mount), "the refused daemon mounted anyway")
            # The first one still serves, and once it stopped, the store is free again.
            path = os.path.join(first.mount, "one.db")
            con = sqlite3.connect(path)
            con.execute("CREATE TABLE t (x)")
            con.close()
            self.assertEqual(first.stop(), 0)
            second.start()
            con = sqlite3.connect(os.path.join(second.mount, "one.db"))
            self.assertEqual(con.execute("SELECT count(*) FROM t").fetchone()[0], 0)
            con.close()
            self.assertEqual(second.stop(), 0)
        finally:
            second.cleanup()
            first.cleanup()


if __name__ == "__main__":
    unittest.main()
