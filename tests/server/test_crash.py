#!/usr/bin/env python3
"""test_crash.py - kill -9 against a running safemapd, then restart and check.

usage: test_crash.py PATH/TO/safemapd     (exit 77, skipped, when it is absent)

appendfsync always: writer threads (each its own connection and keys) put
and delete over raw RESP; a write counts as acknowledged when its reply has
arrived.  At a random moment the server is killed with SIGKILL (a BGSAVE may
be running, or the log may be rotating); it is restarted on the same
directory and every acknowledged write must be there: the last acknowledged
value of each key, or, for a key whose write was in flight at the kill, that
write's value or the one before.  Five rounds, each building on the last.

appendfsync everysec: the same, and a write acknowledged more than a second
and a half before the kill must be there (the documented bound is about a
second; safemapd in fact write()s every record before replying, so a killed
process loses nothing and the count lost is reported).

Only the standard library; servers listen on 127.0.0.1 with ports from
20000 + pid % 20000; every loop is bounded; the servers are killed on exit.
"""
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from respclient import Conn

ROUNDS = 5
WRITERS = 3
SKIP = 77

procs = []


def start(exe, d, policy, base_port):
    """Starts safemapd on d; returns (proc, port).  Retries other ports
    when one is taken."""
    for attempt in range(10):
        port = base_port + 2 * attempt
        log = open(os.path.join(d, "..", "server-%d.log" % port), "ab")
        p = subprocess.Popen([exe, "--port", str(port), "--http-port", str(port + 1),
                              "--dir", d, "--appendfsync", policy, "--appendonly", "yes",
                              "--threads", "2"], stdout=log, stderr=log)
        log.close()
        procs.append(p)
        deadline = time.time() + 20
        while time.time() < deadline:
            if p.poll() is not None:
                break
            try:
                c = Conn(port, timeout=2)
                if c.cmd("PING") == "PONG":
                    c.close()
                    return p, port
                c.close()
            except OSError:
                pass
            time.sleep(0.05)
        if p.poll() is None:
            p.kill()
            p.wait()
            raise RuntimeError("safemapd did not answer on port %d" % port)
    raise RuntimeError("safemapd would not start (ports %d..)" % base_port)


def as_value(reply):
    """SM.GET's reply for an int64[1] map: the number, or None."""
    if reply is None:
        return None
    if isinstance(reply, list):
        return None if not reply else int(reply[0])
    if isinstance(reply, Exception):
        raise reply
    return int(reply)


class Writer(threading.Thread):
    """Puts and deletes keys w*1e6 + [0, 500) until its connection dies."""

    def __init__(self, port, w, rnd, model, acked_at):
        super().__init__(daemon=True)
        self.port, self.w, self.rnd = port, w, random.Random(rnd)
        self.model, self.acked_at = model, acked_at  # key -> value/None, key -> time
        self.inflight = None  # (key, value) sent, reply not seen
        self.ops = 0

    def run(self):
        try:
            c = Conn(self.port, timeout=5)
        except OSError:
            return
        try:
            for _ in range(200000):
                key = self.w * 1000000 + self.rnd.randrange(500)
                if self.rnd.random() < 0.15:
                    value = None
                    self.inflight = (key, value)
                    r = c.cmd("SM.DEL", "c", key)
                else:
                    value = self.rnd.randrange(1 << 40)
                    self.inflight = (key, value)
                    r = c.cmd("SM.PUT", "c", key, value)
                if isinstance(r, Exception):
                    raise r
                self.model[key] = value
                self.acked_at[key] = time.time()
                self.inflight = None
                self.ops += 1
        except (OSError, ConnectionError):
            pass
        finally:
            c.close()


def check(port, model, inflight, acked_at, kill_time, slack):
    """Returns (bad, lost): keys wrong beyond the allowance, and keys
    missing within it.  A write in flight at the kill may or may not have
    made it; the model takes whichever the server shows."""
    c = Conn(port)
    bad, lost = [], 0
    try:
        for key, want in model.items():
            got = as_value(c.cmd("SM.GET", "c", key))
            if got == want:
                continue
            if key in inflight and got == inflight[key]:
                model[key] = got  # the unacknowledged write made it: now the state
                continue
            if slack and acked_at.get(key, 0) > kill_time - slack:
                lost += 1
                continue
            bad.append((key, want, got))
    finally:
        c.close()
    return bad, lost


def run_policy(exe, root, policy, base_port, seed):
    d = os.path.join(root, policy)
    os.mkdir(d)
    rnd = random.Random(seed)
    model, acked_at = {}, {}
    p, port = start(exe, d, policy, base_port)
    c = Conn(port)
    r = c.cmd("SM.CREATE", "c", "int64", 1)
    c.close()
    if r != "OK":
        print("SM.CREATE: %r" % r)
        return False
    slack = 1.5 if policy == "everysec" else 0
    total_ops, total_lost = 0, 0
    for rnd_no in range(ROUNDS):
        writers = [Writer(port, w, rnd.random(), model, acked_at) for w in range(WRITERS)]
        for w in writers:
            w.start()
        # A BGSAVE now and then, so some kills land during one.
        if rnd.random() < 0.6:
            time.sleep(rnd.uniform(0.0, 0.3))
            try:
                b = Conn(port, timeout=2)
                b.cmd("BGSAVE")
                b.close()
            except OSError:
                pass
        time.sleep(rnd.uniform(0.05, 0.6))
        kill_time = time.time()
        p.send_signal(signal.SIGKILL)
        p.wait()
        for w in writers:
            w.join(10)
        inflight = {w.inflight[0]: w.inflight[1] for w in writers if w.inflight}
        ops = sum(w.ops for w in writers)
        total_ops += ops
        p, port = start(exe, d, policy, base_port)
        for key, value in inflight.items():
            model.setdefault(key, None)
        bad, lost = check(port, model, inflight, acked_at, kill_time, slack)
        total_lost += lost
        print("%s round %d: %d acknowledged writes, %d keys checked, %d lost within %.1f s, %d wrong"
              % (policy, rnd_no, ops, len(model), lost, slack, len(bad)))
        for key, want, got in bad[:10]:
            print("  key %d: acknowledged %r, after restart %r" % (key, want, got))
        if bad:
            return False
        if ops == 0:
            print("  no write was acknowledged in this round")
            return False
    p.terminate()
    p.wait(20)
    print("%s: %d writes in %d rounds, none lost%s" %
          (policy, total_ops, ROUNDS, "" if not total_lost else " beyond the bound (%d within)" % total_lost))
    return True


def main():
    if len(sys.argv) < 2 or not os.access(sys.argv[1], os.X_OK):
        print("skip: safemapd not built (%s)" % (sys.argv[1] if len(sys.argv) > 1 else "no path"))
        return SKIP
    exe = sys.argv[1]
    root = tempfile.mkdtemp(prefix="test_crash.")
    base = 20000 + os.getpid() % 20000
    base -= base % 2
    if base > 65000:
        base -= 20000
    ok = False
    try:
        seed = int(os.environ.get("CRASH_SEED", str(os.getpid())))
        print("seed %d" % seed)
        ok = run_policy(exe, root, "always", base, seed)
        ok = ok and run_policy(exe, root, "everysec", base + 40, seed + 1)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if not ok:
            for name in sorted(os.listdir(root)):
                if name.endswith(".log"):
                    with open(os.path.join(root, name), "rb") as f:
                        tail = f.read()[-2000:]
                    print("--- %s\n%s" % (name, tail.decode(errors="replace")))
        shutil.rmtree(root, ignore_errors=True)
    print("ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
