"""smtest.py - what the module's tests share: a RESP2/RESP3 client over a
raw socket, a server process (redis-server or valkey-server with the module
loaded, on 127.0.0.1, its own directory, stopped at exit), and a tiny test
runner.

Ports come from a range chosen by the process id (30000 + pid % 4000 * 6,
below 55000 so that a cluster bus port, +10000, fits too);
a server that cannot bind exits at once and the next port is tried.  Every
wait is bounded in time.  Exit status: 0 all passed, 1 a failure, 77 skipped
(no redis-server, or no module).
"""
import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SKIP = 77


class RespError(Exception):
    """An error reply (returned, not raised, by Conn.read)."""

    def __eq__(self, other):
        return isinstance(other, RespError) and str(self) == str(other)

    __hash__ = Exception.__hash__


def encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        elif isinstance(a, int):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Conn:
    def __init__(self, port, timeout=30):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.f = self.s.makefile("rb")

    def close(self):
        self.f.close()
        self.s.close()

    def send(self, *args):
        self.s.sendall(encode(args))

    def cmd(self, *args):
        self.send(*args)
        return self.read()

    def pipeline(self, cmds, chunk=2000):
        """Sends the commands chunk by chunk; returns every reply."""
        replies = []
        for i in range(0, len(cmds), chunk):
            part = cmds[i:i + chunk]
            self.s.sendall(b"".join(encode(c) for c in part))
            replies.extend(self.read() for _ in part)
        return replies

    def read(self):
        line = self.f.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("connection closed")
        t, rest = line[:1], line[1:-2]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RespError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b",":
            return float(rest)
        if t == b"_":
            return None
        if t == b"#":
            return rest == b"t"
        if t in (b"$", b"="):
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)[:-2]
            return data
        if t in (b"*", b"~", b">"):
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        if t == b"%":
            n = int(rest)
            return {self.read(): self.read() for _ in range(n)}
        raise ValueError("unexpected reply %r" % line)


def find_module():
    """The module's path: argv[1], or $SAFEMAP_MODULE."""
    path = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("SAFEMAP_MODULE", "")
    if not path or not os.path.exists(path):
        print("SKIP: module not found (pass the path of safemap.so)")
        sys.exit(SKIP)
    return os.path.abspath(path)


def server_binaries():
    """[(label, binary)] of the servers present; exits 77 when none."""
    found = []
    for label, name in (("redis", "redis-server"), ("valkey", "valkey-server")):
        b = shutil.which(name)
        if b:
            found.append((label, b))
    if not found:
        print("SKIP: neither redis-server nor valkey-server is installed")
        sys.exit(SKIP)
    return found


_servers = []
_port = [30000 + (os.getpid() % 4000) * 6]


def next_port():
    p = _port[0]
    _port[0] += 1
    if _port[0] >= 55000:
        _port[0] = 30000
    return p


def _stop_all():
    for s in list(_servers):
        s.kill()


atexit.register(_stop_all)
for _sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_sig, lambda *_: sys.exit(1))


class Server:
    """One server process with the module loaded, in its own directory."""

    def __init__(self, binary, module, extra=(), dirname=None, port=None):
        self.binary, self.module, self.extra = binary, module, list(extra)
        self.dir = dirname or tempfile.mkdtemp(prefix="smtest-")
        self.own_dir = dirname is None
        self.proc = None
        self.port = port
        self.start()

    def args(self):
        return [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
                "--loadmodule", self.module, "--save", "", "--appendonly", "no",
                "--enable-debug-command", "yes", "--daemonize", "no",
                "--logfile", "server.log"] + self.extra

    def start(self, expect_fail=False, timeout=20):
        for _ in range(20):
            if self.port is None:
                self.port = next_port()
            self.proc = subprocess.Popen(self.args(), cwd=self.dir, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
            if self not in _servers:
                _servers.append(self)
            deadline = time.time() + timeout
            while time.time() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    c = Conn(self.port, timeout=2)
                    r = c.cmd("PING")
                    c.close()
                    if r == "PONG":
                        return True
                except OSError:
                    pass
                time.sleep(0.05)
            if expect_fail:
                if self.proc.poll() is None:
                    self.kill()
                    raise AssertionError("server still running, expected it to refuse to start")
                return False
            if self.proc.poll() is None:
                self.kill()
                raise AssertionError("server did not answer in %ds" % timeout)
            if "Address already in use" not in self.log():
                raise AssertionError("server exited %s:\n%s" % (self.proc.returncode, self.log()[-3000:]))
            self.port = next_port()
        raise AssertionError("no free port")

    def log(self):
        try:
            with open(os.path.join(self.dir, "server.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def conn(self):
        return Conn(self.port)

    def cmd(self, *args):
        c = self.conn()
        try:
            return c.cmd(*args)
        finally:
            c.close()

    def wait_exit(self, timeout=20):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("server did not exit")

    def stop(self):
        """SHUTDOWN NOSAVE, then wait."""
        if self.proc and self.proc.poll() is None:
            try:
                self.cmd("SHUTDOWN", "NOSAVE")
            except (OSError, ConnectionError):
                pass
            self.wait_exit()

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def close(self):
        self.kill()
        if self in _servers:
            _servers.remove(self)
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def crashed(self):
        log = self.log()
        return "crashed by signal" in log or "BUG REPORT" in log


def wait_for(fn, timeout=20, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def info_field(srv_or_conn, section, field):
    r = srv_or_conn.cmd("INFO", section)
    for line in r.decode().splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1]
    return None


class Runner:
    def __init__(self):
        self.passed, self.failed = 0, []

    def run(self, name, fn, *args):
        t0 = time.time()
        try:
            fn(*args)
            self.passed += 1
            print("ok   %-40s %.2fs" % (name, time.time() - t0), flush=True)
        except Exception as e:  # a failed check, or anything unexpected
            import traceback
            self.failed.append(name)
            print("FAIL %-40s %s" % (name, e), flush=True)
            traceback.print_exc()

    def finish(self):
        print("%d passed, %d failed%s" % (self.passed, len(self.failed),
                                           (": " + ", ".join(self.failed)) if self.failed else ""))
        sys.exit(1 if self.failed else 0)


def check(cond, msg="check failed"):
    if not cond:
        raise AssertionError(msg)


def eq(got, want, what=""):
    if got != want:
        raise AssertionError("%s: got %r, want %r" % (what, got, want))
