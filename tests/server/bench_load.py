#!/usr/bin/env python3
"""bench_load.py - start-up time with a 1e6-entry snapshot, safemapd against
Redis loading an RDB of the same data.

usage: bench_load.py PATH/TO/safemapd [N]     (exit 77 without redis-server)

Both servers get N (default 1e6) int64 keys with int64 values: safemapd one
map `m` int64[1] (SM.PUT), Redis N string keys holding integers (SET), each
written over one pipelined connection, then SAVE.  Each server is restarted
three times on its file; the load time is safemapd's INFO load_seconds and
Redis's "DB loaded from disk: X seconds" log line.  Prints the best of three
of each and their ratio; exits 1 when safemapd's is over half of Redis's.
Wall-clock on a shared machine is noisy: compare the best runs.
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time


def pipe(port, lines):
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    data = "".join(lines).encode()
    s.sendall(data)
    want, got = len(lines), 0
    buf = b""
    while got < want:
        chunk = s.recv(1 << 20)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
        got += buf.count(b"\r\n")
        buf = buf[buf.rfind(b"\r\n") + 2:]
    s.close()


def call(port, line):
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    s.sendall((line + "\r\n").encode())
    out = b""
    while not out.endswith(b"\r\n") or out.startswith(b"$") and out.count(b"\r\n") < 2:
        chunk = s.recv(1 << 16)
        if not chunk:
            break
        out += chunk
    s.close()
    return out.decode(errors="replace")


def wait_loaded(port, seconds=120):
    """Both servers answer while loading (Redis: -LOADING; safemapd:
    loading:1); waits for INFO persistence to say loading:0."""
    end = time.time() + seconds
    while time.time() < end:
        try:
            info = call(port, "INFO persistence")
            if re.search(r"^loading:0\r?$", info, re.M):
                return info
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError("still loading on %d" % port)


def wait_port(port, proc, seconds=60):
    end = time.time() + seconds
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("server exited")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("no server on %d" % port)


def main():
    if len(sys.argv) < 2 or not os.access(sys.argv[1], os.X_OK):
        print("skip: safemapd not built")
        return 77
    redis = shutil.which("redis-server")
    if not redis:
        print("skip: redis-server not installed")
        return 77
    exe, n = sys.argv[1], int(float(sys.argv[2])) if len(sys.argv) > 2 else 1000000
    root = tempfile.mkdtemp(prefix="bench_load.")
    port = 20000 + os.getpid() % 20000
    port -= port % 4
    procs = []
    try:
        sd, rd = os.path.join(root, "sm"), os.path.join(root, "rd")
        os.mkdir(sd)
        os.mkdir(rd)
        cmd = [exe, "--port", str(port), "--http-port", str(port + 1), "--dir", sd,
               "--appendfsync", "no"]
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(p)
        wait_port(port, p)
        pipe(port, ["SM.CREATE m int64 1\r\n"] +
             ["SM.PUT m %d %d\r\n" % (i * 7919, i) for i in range(n)])
        call(port, "SAVE")
        call(port, "SHUTDOWN")
        p.wait(60)
        sm_times = []
        for _ in range(3):
            p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(p)
            wait_port(port, p)
            info = wait_loaded(port)
            sm_times.append(float(re.search(r"load_seconds:([0-9.]+)", info).group(1)))
            call(port, "SHUTDOWN NOSAVE")
            p.wait(60)

        rport, rlog = port + 2, os.path.join(root, "redis.log")
        rcmd = [redis, "--port", str(rport), "--dir", rd, "--save", "", "--appendonly", "no",
                "--logfile", rlog]
        p = subprocess.Popen(rcmd)
        procs.append(p)
        wait_port(rport, p)
        pipe(rport, ["SET %d %d\r\n" % (i * 7919, i) for i in range(n)])
        call(rport, "SAVE")
        call(rport, "SHUTDOWN NOSAVE")
        p.wait(60)
        for _ in range(3):
            p = subprocess.Popen(rcmd)
            procs.append(p)
            wait_port(rport, p)
            wait_loaded(rport)
            call(rport, "SHUTDOWN NOSAVE")
            p.wait(60)
        with open(rlog) as f:
            rd_times = [float(x) for x in re.findall(r"DB loaded from disk: ([0-9.]+) seconds", f.read())]
        sm_best, rd_best = min(sm_times), min(rd_times)
        ratio = sm_best / rd_best if rd_best else float("inf")
        print("entries %d: safemapd load %s s, redis %s s; best %.3f / %.3f = %.2fx"
              % (n, sm_times, rd_times, sm_best, rd_best, ratio))
        return 0 if ratio <= 0.5 else 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if os.environ.get("BENCH_KEEP"):
            print("kept", root)
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
