"""Starts the real litedrive binary on an ephemeral loopback port and talks HTTP to it.

LITEDRIVE_BIN names the binary (ctest sets it). Every daemon gets its own temporary store and is
stopped with SIGTERM, which must end it cleanly (exit code 0).
"""
import base64
import http.client
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse

BIN = os.environ.get("LITEDRIVE_BIN", os.path.join(os.path.dirname(__file__), "../../build/litedrive"))


class Daemon:
    def __init__(self, *args, store=None, mount=False):
        """mount=True mounts the drive at TMP/mnt."""
        self.tmp = tempfile.mkdtemp(prefix="litedrive-it-")
        self.store = store or os.path.join(self.tmp, "store")
        self.mount = os.path.join(self.tmp, "mnt") if mount else None
        self.args = list(args)
        self.proc = None
        self.port = None
        self.log_path = os.path.join(self.tmp, "daemon.log")

    def start(self, timeout=20.0):
        port_file = os.path.join(self.tmp, "port")
        if os.path.exists(port_file):
            os.unlink(port_file)
        cmd = [BIN, f"--store={self.store}", f"--state={os.path.join(self.tmp, 'state')}",
               "--http=127.0.0.1:0", f"--port-file={port_file}", "--log-level=info"] + self.args
        # An explicit empty --mount= runs without the drive (the embedded default mounts one).
        cmd.append(f"--mount={self.mount or ''}")
        # The inspection port is fixed by default: off unless a test asks (many daemons run here).
        if not any(a.startswith("--inspect=") for a in self.args):
            cmd.append("--inspect=")
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.close()
                raise RuntimeError(f"litedrive exited with {self.proc.returncode}:\n{self.read_log()}")
            if os.path.exists(port_file):
                with open(port_file) as f:
                    self.port = int(f.read().strip())
                return self
            time.sleep(0.02)
        raise RuntimeError("litedrive did not start in time:\n" + self.read_log())

    def read_log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self, timeout=20.0):
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("litedrive did not stop on SIGTERM:\n" + self.read_log())
        self.proc = None
        self.log.close()
        if code != 0:
            import sys
            sys.stderr.write(f"\n--- litedrive exited with {code}; its log:\n{self.read_log()[-4000:]}\n")
        return code

    def kill9(self):
        self.proc.kill()
        try:
            self.proc.wait(3)
        except subprocess.TimeoutExpired:
            # A thread of the daemon waits on its own mount for an answer its dying FUSE threads
            # will never send: abort the connection so that the process can end.
            for conn in self.fuse_connections():
                try:
                    with open(f"/sys/fs/fuse/connections/{conn}/abort", "w") as f:
                        f.write("1")
                except OSError:
                    pass
            self.proc.wait(30)
        self.proc = None
        self.log.close()

    def fuse_connections(self):
        """The kernel's FUSE connection numbers of mounts at this daemon's mount point."""
        found = []
        if not self.mount:
            return found
        with open("/proc/self/mountinfo") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 4 and parts[4] == self.mount and " - fuse.litedrive " in line:
                    found.append(parts[2].split(":")[1])
        return found

    def cleanup(self):
        if self.proc is not None:
            self.kill9()
        if self.mount and os.path.ismount(self.mount):
            subprocess.run(["umount", "-l", self.mount], check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        try:
            code = self.stop()
            if exc[0] is None and code != 0:
                raise AssertionError(f"litedrive exited with {code}:\n{self.read_log()}")
        finally:
            self.cleanup()

    # -- HTTP -------------------------------------------------------------------------------------

    def connection(self, timeout=60):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, conn=None):
        """Returns (status, parsed JSON or None, raw bytes, response headers)."""
        own = conn is None
        conn = conn or self.connection()
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        raw = resp.read()
        if own:
            conn.close()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return resp.status, parsed, raw, dict(resp.getheaders())

    def tx(self, db, items, conn=None):
        return self.request("POST", "/api/v1/sqlite/db?db=" + urllib.parse.quote(db, safe=""),
                            {"transaction": items}, conn=conn)

    def query(self, db, sql, urlsafe=False, conn=None):
        enc = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(sql.encode()).decode()
        return self.request("GET", "/api/v1/sqlite/query?db=" + urllib.parse.quote(db, safe="")
                            + "&sql=" + urllib.parse.quote(enc, safe=""), conn=conn)

    def create(self, path, init_kv=False):
        return self.request("POST", "/api/v1/sqlite/db/create?path=" + urllib.parse.quote(path, safe="")
                            + ("&init_kv=true" if init_kv else ""))


class SharedDaemon:
    """A unittest.TestCase mix-in: one daemon for the whole class, started with `daemon_args`
    (and the drive if `mount`), prepared by `prepare(d)`, and stopped cleanly at the end."""
    daemon_args = ()
    mount = False

    @classmethod
    def prepare(cls, d):
        pass

    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(*cls.daemon_args, mount=cls.mount).start()
        cls.prepare(cls.d)

    @classmethod
    def tearDownClass(cls):
        try:
            assert cls.d.stop() == 0
        finally:
            cls.d.cleanup()


def new_database(path, journal, ddl):
    """Creates a database at `path` in journal mode `journal` with `ddl`; returns the mode set."""
    import sqlite3
    con = sqlite3.connect(path, isolation_level=None)
    mode = con.execute(f"PRAGMA journal_mode={journal}").fetchone()[0]
    con.execute(ddl)
    con.close()
    return mode


def rows(answer, index=0):
    return answer["results"][index]["resultSet"]
