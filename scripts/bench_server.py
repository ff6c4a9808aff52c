#!/usr/bin/env python3
"""bench_server.py - safemapd against Redis 7 on this machine's loopback.

usage: bench_server.py PATH/TO/safemapd RESULTS-DIR
       (scripts/bench_server.sh builds safemapd and calls this; `make
       bench-server`.)  Environment: BENCH_QUICK=1 for a short trial run
       (small counts, one repetition); BENCH_REPS, BENCH_N_P1, BENCH_N_P16,
       BENCH_RSS_N, BENCH_STARTUP_N, BENCH_WRK_SECONDS override one setting.

What runs.  Every server listens on 127.0.0.1 on ports from 20000 +
pid % 20000 (the first free block of 10), each in its own temporary
directory, and every one is killed when this program ends, however it ends.
  redis       redis-server --save "" --appendonly no (no persistence)
  sm-t1       safemapd --threads 1 --appendonly no
  sm-t2       safemapd --threads 2 --appendonly no
  sm-t1-aof   safemapd --threads 1 --appendonly yes --appendfsync everysec
              (only SM.PUTB: what the append-only log costs a writer)
  redis-aof   redis-server --appendonly yes --appendfsync everysec (only SET)
safemapd gets the map `bench` (SM.CREATE bench int64 8: 64-byte values).
Both are preloaded with the same KEYS keys (10^12 + i, i < KEYS, so that
redis-benchmark's zero-padded __rand_int__ behind a "1" is a decimal key
safemapd takes) holding 64-byte values, so every GET hits.

1. Throughput and latency: redis-benchmark (50 clients, -r KEYS, --csv:
   requests per second and p50/p95/p99 latency) for SET/GET against Redis and
   SM.PUTB/SM.GETB against safemapd, each with -P 1 and -P 16; REPS
   repetitions interleaved across the servers; the run with the median
   throughput is reported, with its own latencies.
2. REST: wrk (1 thread, 50 connections, --latency) GET /v1/maps/bench/KEY
   with random keys (a small Lua script), against sm-t1 and sm-t2.
3. Memory: fresh servers, RSS (/proc/PID/status VmRSS) before and after
   loading RSS_N keys with 64-byte values over a pipelined connection
   (Redis: decimal string keys); bytes per entry = the difference / RSS_N.
4. Start-up: tests/server/bench_load.py (safemapd's snapshot load against
   Redis's RDB load of the same STARTUP_N int64 entries, best of three each).

Writes RESULTS-DIR/server.md (the tables, the ratios, the machine),
server-ratios.txt ("name value" lines, every ratio bigger-is-better, read by
scripts/bench_check.sh), server-raw.txt (every measurement) and server.svg
(throughput bars, gnuplot).
"""
import datetime
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

QUICK = os.environ.get("BENCH_QUICK") == "1"


def env_int(name, quick, full):
    v = os.environ.get(name)
    return int(float(v)) if v else (quick if QUICK else full)


REPS = env_int("BENCH_REPS", 1, 3)
N_P1 = env_int("BENCH_N_P1", 20000, 200000)
N_P16 = env_int("BENCH_N_P16", 100000, 1000000)
KEYS = env_int("BENCH_KEYS", 100000, 100000)
RSS_N = env_int("BENCH_RSS_N", 100000, 1000000)
STARTUP_N = env_int("BENCH_STARTUP_N", 100000, 1000000)
WRK_SECONDS = env_int("BENCH_WRK_SECONDS", 2, 5)
CLIENTS = 50
KEY_BASE = 10**12
VALUE = bytes(0x30 + i % 75 for i in range(64))  # 64 printable bytes (argv): eight int64, a string
TIMEOUT = 300  # seconds, any one client run

procs = []
raw = []


def log(*a):
    print(*a, flush=True)


def port_free(p):
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", p))
        return True
    except OSError:
        return False
    finally:
        s.close()


def port_block(n=10):
    base = 20000 + os.getpid() % 20000
    for i in range(64):
        b = 20000 + (base - 20000 + i * 97) % 40000
        b -= b % n
        if all(port_free(b + k) for k in range(n)):
            return b
    raise RuntimeError("no free block of %d ports" % n)


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def pipeline(port, cmds, batch=10000):
    """Sends cmds (RESP-encoded commands, each answered by one line such as
    +OK) in batches over one connection, reading every reply."""
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    try:
        for i in range(0, len(cmds), batch):
            chunk = cmds[i:i + batch]
            s.sendall(b"".join(chunk))
            got, buf = 0, b""
            while got < len(chunk):
                d = s.recv(1 << 20)
                if not d:
                    raise ConnectionError("closed by server")
                buf += d
                got += buf.count(b"\r\n")
                if b"-ERR" in buf or b"-WRONG" in buf:
                    raise RuntimeError("server error: %r" % buf[:200])
                buf = buf[buf.rfind(b"\r\n") + 2:]
    finally:
        s.close()


def call(port, *args):
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    try:
        s.sendall(resp(*args))
        out = b""
        end = time.time() + 60
        while time.time() < end:
            d = s.recv(1 << 16)
            if not d:
                break
            out += d
            if out.endswith(b"\r\n") and (not out.startswith(b"$") or out.count(b"\r\n") >= 2):
                break
        return out
    finally:
        s.close()


def start(name, argv, port, http_port=None):
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    procs.append(p)
    end = time.time() + 60
    while time.time() < end:
        if p.poll() is not None:
            raise RuntimeError("%s exited with %s: %s" % (name, p.returncode, " ".join(argv)))
        try:
            if call(port, "PING").startswith(b"+PONG"):
                if http_port is None or http_get(http_port, "/health/ready").startswith("HTTP/1.1 200"):
                    return p
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("%s did not start" % name)


def stop(p):
    if p.poll() is None:
        p.kill()
        p.wait(30)


def http_get(port, path):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" % path).encode())
        out = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            out += d
        return out.decode(errors="replace")
    finally:
        s.close()


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def bench(port, pipe, n, *cmd):
    argv = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(CLIENTS),
            "-n", str(n), "-P", str(pipe), "-r", str(KEYS), "--csv"] + list(cmd)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT)
    rows = [l for l in r.stdout.splitlines() if l.startswith('"') and not l.startswith('"test"')]
    if r.returncode != 0 or not rows or "rror" in r.stdout + r.stderr:
        raise RuntimeError("redis-benchmark failed: %s\n%s%s" % (" ".join(argv), r.stdout, r.stderr[-2000:]))
    f = [x.strip('"') for x in rows[-1].split('","')]
    return {"rps": float(f[1]), "avg": float(f[2]), "p50": float(f[4]), "p95": float(f[5]),
            "p99": float(f[6]), "max": float(f[7])}


def wrk(port, tmp):
    script = os.path.join(tmp, "keys.lua")
    with open(script, "w") as f:
        f.write("math.randomseed(%d)\n" % os.getpid())
        f.write("request = function()\n")
        f.write('  return wrk.format("GET", "/v1/maps/bench/" .. (%d + math.random(0, %d)))\n'
                % (KEY_BASE, KEYS - 1))
        f.write("end\n")
    argv = ["wrk", "-t1", "-c%d" % CLIENTS, "-d%ds" % WRK_SECONDS, "--latency", "-s", script,
            "http://127.0.0.1:%d" % port]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=WRK_SECONDS + 60)
    out = r.stdout
    m = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    if r.returncode != 0 or not m:
        raise RuntimeError("wrk failed: %s\n%s%s" % (" ".join(argv), out, r.stderr))

    def ms(pct):
        mm = re.search(r"^\s+%s%%\s+([0-9.]+)(us|ms|s)\s*$" % pct, out, re.M)
        if not mm:
            return float("nan")
        return float(mm.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[mm.group(2)]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors: (.*)", out)
    return {"rps": float(m.group(1)), "p50": ms(50), "p90": ms(90), "p99": ms(99),
            "non2xx": int(bad.group(1)) if bad else 0, "errors": errs.group(1) if errs else ""}


def machine():
    lines = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    info = dict(l.split(":", 1) for l in lines if ":" in l)
    model = info.get("Model name", "?").strip()
    return model, os.cpu_count(), os.uname().release


def median_run(runs):
    s = sorted(runs, key=lambda r: r["rps"])
    return s[(len(s) - 1) // 2]


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    exe, outdir = os.path.abspath(sys.argv[1]), sys.argv[2]
    for tool in ("redis-server", "redis-benchmark", "wrk"):
        if not shutil.which(tool):
            print("bench_server: %s is missing (sh scripts/deps.sh server-bench)" % tool)
            return 1
    os.makedirs(outdir, exist_ok=True)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tmp = tempfile.mkdtemp(prefix="bench_server.")
    t0 = time.time()
    try:
        return run(exe, outdir, root, tmp, t0)
    finally:
        for p in procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except OSError:
                    pass
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def run(exe, outdir, root, tmp, t0):
    base = port_block()
    redis_v = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()[2].replace("v=", "")
    sm_v = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
    log("bench_server: %s, Redis %s; ports %d-%d; reps %d, -n %d (P1) / %d (P16), %d keys"
        % (sm_v, redis_v, base, base + 9, REPS, N_P1, N_P16, KEYS))

    def redis_argv(port, d, aof=False):
        os.makedirs(d, exist_ok=True)
        return ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "yes" if aof else "no", "--appendfsync", "everysec",
                "--dir", d, "--daemonize", "no", "--logfile", ""]

    def sm_argv(port, threads, d, aof=False):
        os.makedirs(d, exist_ok=True)
        return [exe, "--port", str(port), "--http-port", str(port + 1), "--threads", str(threads),
                "--dir", d, "--appendonly", "yes" if aof else "no", "--appendfsync", "everysec"]

    servers = {
        "redis": (base, start("redis", redis_argv(base, os.path.join(tmp, "redis")), base)),
        "sm-t1": (base + 2, start("sm-t1", sm_argv(base + 2, 1, os.path.join(tmp, "sm1")), base + 2, base + 3)),
        "sm-t2": (base + 4, start("sm-t2", sm_argv(base + 4, 2, os.path.join(tmp, "sm2")), base + 4, base + 5)),
        "sm-t1-aof": (base + 6, start("sm-t1-aof", sm_argv(base + 6, 1, os.path.join(tmp, "sm3"), True),
                                      base + 6, base + 7)),
        "redis-aof": (base + 8, start("redis-aof", redis_argv(base + 8, os.path.join(tmp, "redis-aof"), True),
                                      base + 8)),
    }
    # Preload the same keys into each.
    for name, (port, _) in servers.items():
        if name.startswith("redis"):
            cmds = [resp("SET", str(KEY_BASE + i), VALUE) for i in range(KEYS)]
        else:
            call(port, "SM.CREATE", "bench", "int64", "8")
            cmds = [resp("SM.PUTB", "bench", str(KEY_BASE + i), VALUE) for i in range(KEYS)]
        pipeline(port, cmds)
    log("preloaded %d keys into each server (%.0f s)" % (KEYS, time.time() - t0))

    vstr = VALUE.decode("latin-1")
    key = "1__rand_int__"
    cases = []  # (server, op, pipe, cmd)
    for pipe in (1, 16):
        cases.append(("redis", "set", pipe, ["SET", key, vstr]))
        cases.append(("redis", "get", pipe, ["GET", key]))
        for sm in ("sm-t1", "sm-t2"):
            cases.append((sm, "putb", pipe, ["SM.PUTB", "bench", key, vstr]))
            cases.append((sm, "getb", pipe, ["SM.GETB", "bench", key]))
        cases.append(("sm-t1-aof", "putb", pipe, ["SM.PUTB", "bench", key, vstr]))
        cases.append(("redis-aof", "set", pipe, ["SET", key, vstr]))
    runs = {}
    for rep in range(REPS):
        for server, op, pipe, cmd in cases:
            r = bench(servers[server][0], pipe, N_P1 if pipe == 1 else N_P16, *cmd)
            runs.setdefault((server, op, pipe), []).append(r)
            raw.append("rep %d %s %s P%d: %s" % (rep, server, op, pipe, r))
        log("throughput repetition %d/%d done (%.0f s)" % (rep + 1, REPS, time.time() - t0))
    tp = {k: median_run(v) for k, v in runs.items()}

    rest = {}
    for sm in ("sm-t1", "sm-t2"):
        rest[sm] = wrk(servers[sm][0] + 1, tmp)
        raw.append("wrk %s: %s" % (sm, rest[sm]))
    log("REST done (%.0f s)" % (time.time() - t0))
    for name, (_, p) in servers.items():
        stop(p)

    # Memory: fresh servers, the same RSS_N keys with 64-byte values.
    mem = {}
    rport = base
    p = start("redis-rss", redis_argv(rport, os.path.join(tmp, "redis-rss")), rport)
    before = rss_kib(p.pid)
    for i in range(0, RSS_N, 100000):
        pipeline(rport, [resp("SET", str(k), VALUE) for k in range(i, min(RSS_N, i + 100000))])
    time.sleep(0.5)
    after = rss_kib(p.pid)
    used = re.search(rb"used_memory:(\d+)", call(rport, "INFO", "memory"))
    mem["redis"] = (before, after, (after - before) * 1024.0 / RSS_N,
                    "used_memory %.1f B/entry" % (int(used.group(1)) / RSS_N) if used else "")
    stop(p)
    sport = base + 2
    p = start("sm-rss", sm_argv(sport, 1, os.path.join(tmp, "sm-rss")), sport, sport + 1)
    call(sport, "SM.CREATE", "bench", "int64", "8")
    before = rss_kib(p.pid)
    for i in range(0, RSS_N, 100000):
        pipeline(sport, [resp("SM.PUTB", "bench", str(k), VALUE) for k in range(i, min(RSS_N, i + 100000))])
    time.sleep(0.5)
    after = rss_kib(p.pid)
    info = call(sport, "SM.INFO", "bench")
    used = re.search(rb"bytes\r\n:(\d+)", info)
    mem["safemapd"] = (before, after, (after - before) * 1024.0 / RSS_N,
                       "SM.INFO bytes %.1f B/entry" % (int(used.group(1)) / RSS_N) if used else "")
    stop(p)
    raw.append("rss: %s" % mem)
    log("memory done (%.0f s)" % (time.time() - t0))

    # Start-up: persistence's own benchmark.
    for attempt in range(2):  # once more if it fails (its ports are its own choice)
        r = subprocess.run([sys.executable, os.path.join(root, "tests", "server", "bench_load.py"), exe,
                            str(STARTUP_N)], capture_output=True, text=True, timeout=1200)
        raw.append("bench_load.py (exit %d): %s %s" % (r.returncode, r.stdout.strip(), r.stderr.strip()[-2000:]))
        m = re.search(r"best ([0-9.]+) / ([0-9.]+) =", r.stdout)
        if m:
            break
    startup = (float(m.group(1)), float(m.group(2))) if m else None
    log("start-up done (%.0f s): %s" % (time.time() - t0, r.stdout.strip()))

    write_results(outdir, tp, rest, mem, startup, sm_v, redis_v, time.time() - t0)
    return 0


def write_results(outdir, tp, rest, mem, startup, sm_v, redis_v, seconds):
    model, cores, kernel = machine()
    date = datetime.date.today().isoformat()
    ratios = []
    rows = []
    for pipe in (1, 16):
        for op, rop in (("putb", "set"), ("getb", "get")):
            rd = tp[("redis", rop, pipe)]
            rows.append(("redis %s" % rop.upper(), pipe, rd, None, None))
            for sm in ("sm-t1", "sm-t2"):
                s = tp[(sm, op, pipe)]
                t = sm[-1]
                ratio = s["rps"] / rd["rps"]
                p99 = rd["p99"] / s["p99"] if s["p99"] > 0 else float("inf")
                ratios.append(("%s_p%d_t%s_vs_%s" % (op, pipe, t, rop), ratio))
                ratios.append(("%s_p%d_t%s_p99_redis_over_sm" % (op, pipe, t), p99))
                rows.append(("safemapd --threads %s SM.%s" % (t, op.upper()), pipe, s, ratio, p99))
            if op == "putb":
                ra = tp[("redis-aof", "set", pipe)]
                rows.append(("redis SET, appendonly everysec", pipe, ra, None, None))
                s = tp[("sm-t1-aof", "putb", pipe)]
                ratio = s["rps"] / ra["rps"]
                p99 = ra["p99"] / s["p99"] if s["p99"] > 0 else float("inf")
                ratios.append(("putb_p%d_t1_everysec_vs_set_everysec" % pipe, ratio))
                rows.append(("safemapd --threads 1 SM.PUTB, appendonly everysec", pipe, s, ratio, p99))
    rss_ratio = mem["redis"][2] / mem["safemapd"][2] if mem["safemapd"][2] > 0 else float("inf")
    ratios.append(("rss_redis_over_sm", rss_ratio))
    if startup:
        ratios.append(("startup_redis_over_sm", startup[1] / startup[0] if startup[0] > 0 else float("inf")))

    with open(os.path.join(outdir, "server-ratios.txt"), "w") as f:
        f.write("# written by scripts/bench_server.py %s; every ratio: bigger is better\n" % date)
        for name, v in ratios:
            f.write("%s %.3f\n" % (name, v))
    with open(os.path.join(outdir, "server-raw.txt"), "w") as f:
        f.write("\n".join(raw) + "\n")

    L = []
    L.append("# safemapd against Redis: results")
    L.append("")
    L.append("Written by `make bench-server` (scripts/bench_server.sh) on %s: %s, %d cores "
             "(lscpu), Linux %s; %s, Redis %s. The machine is shared: read the ratios. "
             "Whole run %.0f s." % (date, model, cores, kernel, sm_v, redis_v, seconds))
    L.append("")
    L.append("## Throughput and latency (redis-benchmark)")
    L.append("")
    L.append("50 clients, one redis-benchmark thread on the same machine, -r %d keys (all present), "
             "64-byte values; -n %d at -P 1 and %d at -P 16; median of %d runs by throughput, its "
             "own latencies. Redis: `--save \"\" --appendonly no`; safemapd `--appendonly no` "
             "unless the row says everysec (then both log every write with appendfsync everysec, "
             "and the ratio is to Redis's everysec row). Ratio = safemapd / Redis ops/s; p99 ratio = Redis "
             "p99 / safemapd p99 (above 1: safemapd's tail is shorter)." % (KEYS, N_P1, N_P16, REPS))
    L.append("")
    L.append("| server and command | -P | ops/s | p50 ms | p95 ms | p99 ms | ratio | p99 ratio |")
    L.append("|---|--:|--:|--:|--:|--:|--:|--:|")
    for name, pipe, r, ratio, p99 in rows:
        L.append("| %s | %d | %.0f | %.3f | %.3f | %.3f | %s | %s |" % (
            name, pipe, r["rps"], r["p50"], r["p95"], r["p99"],
            "" if ratio is None else "%.2fx" % ratio, "" if p99 is None else "%.2fx" % p99))
    L.append("")
    L.append("![throughput](server.svg)")
    L.append("")
    L.append("## REST (wrk)")
    L.append("")
    L.append("`GET /v1/maps/bench/KEY` (JSON reply), random keys of the same %d, wrk 1 thread, "
             "50 connections, %d s." % (KEYS, WRK_SECONDS))
    L.append("")
    L.append("| server | req/s | p50 ms | p90 ms | p99 ms | non-2xx | socket errors |")
    L.append("|---|--:|--:|--:|--:|--:|---|")
    for sm, r in rest.items():
        L.append("| safemapd --threads %s | %.0f | %.3f | %.3f | %.3f | %d | %s |" % (
            sm[-1], r["rps"], r["p50"], r["p90"], r["p99"], r["non2xx"], r["errors"] or "none"))
    L.append("")
    L.append("## Memory")
    L.append("")
    L.append("%d keys with 64-byte values loaded into a fresh server over one pipelined "
             "connection; VmRSS after minus VmRSS before (safemapd: after SM.CREATE bench int64 8; "
             "Redis: decimal string keys)." % RSS_N)
    L.append("")
    L.append("| server | RSS before KiB | RSS after KiB | RSS bytes per entry | the server's own count |")
    L.append("|---|--:|--:|--:|---|")
    for name in ("redis", "safemapd"):
        b, a, per, own = mem[name]
        L.append("| %s | %d | %d | %.1f | %s |" % (name, b, a, per, own))
    L.append("")
    L.append("safemapd / Redis bytes per entry: %.2fx." % (1 / rss_ratio if rss_ratio else float("inf")))
    L.append("")
    L.append("## Start-up")
    L.append("")
    if startup:
        L.append("tests/server/bench_load.py with %d int64 entries: safemapd loads its snapshot in "
                 "%.3f s, Redis its RDB in %.3f s (best of three each): %.2fx."
                 % (STARTUP_N, startup[0], startup[1], startup[0] / startup[1]))
    else:
        L.append("tests/server/bench_load.py gave no result (its output is in server-raw.txt).")
    L.append("")
    L.append("## Ratios")
    L.append("")
    L.append("Every ratio bigger-is-better, as `make bench-server-check` compares them with "
             "bench/server-thresholds.txt (also in server-ratios.txt):")
    L.append("")
    L.append("| ratio | value |")
    L.append("|---|--:|")
    for name, v in ratios:
        L.append("| %s | %.3f |" % (name, v))
    L.append("")
    text = "\n".join(L)
    with open(os.path.join(outdir, "server.md"), "w") as f:
        f.write(text)
    print(text)
    plot(outdir, tp)


def plot(outdir, tp):
    if not shutil.which("gnuplot"):
        log("gnuplot missing: no server.svg")
        return
    dat = os.path.join(outdir, "server.dat.tmp")
    with open(dat, "w") as f:
        f.write("case redis sm-t1 sm-t2\n")
        for pipe in (1, 16):
            for op, rop in (("putb", "set"), ("getb", "get")):
                f.write('"%s/%s -P%d" %.0f %.0f %.0f\n' % (
                    rop.upper(), "SM." + op.upper(), pipe, tp[("redis", rop, pipe)]["rps"] / 1000,
                    tp[("sm-t1", op, pipe)]["rps"] / 1000, tp[("sm-t2", op, pipe)]["rps"] / 1000))
    gp = """set terminal svg size 800,420 dynamic font "sans,12"
set output '%s'
set title "safemapd against Redis 7: thousand requests per second (redis-benchmark, 50 clients)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key top left
set yrange [0:*]
set grid ytics
set ylabel "k ops/s"
plot '%s' using 2:xtic(1) title "Redis SET/GET", '' using 3 title "safemapd --threads 1", '' using 4 title "safemapd --threads 2"
""" % (os.path.join(outdir, "server.svg"), dat)
    subprocess.run(["gnuplot"], input=gp, text=True, check=True, timeout=60)
    os.remove(dat)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    sys.exit(main())
