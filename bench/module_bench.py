#!/usr/bin/env python3
"""module_bench.py - the module's baseline (make bench-module).

    module_bench.py PATH/TO/safemap.so [OUT.md] [--entries N] [--requests N] [--rounds N]

One redis-server (Debian's 7.0, started here on 127.0.0.1 with the module,
no persistence) serves everything, so both sides pay the same server:

  memory      used_memory (INFO memory) above the empty server after
              filling N (1e6) entries of 64-byte values as
                - N string keys   SET key:%012d <64 B>
                - one hash        HSET h <decimal key> <64 B>, N fields
                - one safemap     SM.PUTB m <key> <64 B>   (uint8[64], inline)
                - one safemap     the same, POOLED
              each filled pipelined into an emptied server (FLUSHALL).  The
              module routes the library's allocations through Redis's
              allocator, so used_memory counts the map's segments.
  throughput  redis-benchmark (50 clients, random keys among the N filled)
              of SM.GETB / SM.PUTB against GET / SET of the same 64 bytes,
              without pipelining and with -P 16, ROUNDS rounds interleaved;
              the median of each is kept.

Writes a Markdown report (default bench/results/module.md) with the
machine, and prints it.
"""
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "module"))
from smtest import Server, info_field  # noqa: E402

VALUE = b"v" * 64


def used(srv):
    return int(info_field(srv, "memory", "used_memory"))


def fill(srv, cmds_of, n, chunk=5000):
    c = srv.conn()
    for base in range(0, n, chunk):
        replies = c.pipeline([cmds_of(i) for i in range(base, min(n, base + chunk))], chunk)
        bad = [r for r in replies if r not in ("OK", 1)]
        if bad:
            raise SystemExit("fill failed: %r" % bad[:3])
    c.close()


def settle(srv):
    """used_memory once lazy frees and the like are done."""
    time.sleep(0.3)
    return used(srv)


def bench(port, args, requests, pipeline):
    cmd = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", "50", "-n", str(requests),
           "-r", "1000000", "-P", str(pipeline), "--csv"] + args
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600).stdout
    rows = [line for line in out.splitlines() if line.startswith('"') and not line.startswith('"test"')]
    if not rows:
        raise SystemExit("redis-benchmark gave no result for %s:\n%s" % (args, out))
    return float(rows[-1].split(",")[1].strip('"'))


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.*)", f.read())
            model = m.group(1) if m else model
    except OSError:
        pass
    ver = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.strip()
    return "%s, %d logical CPUs, Linux %s; %s" % (model, os.cpu_count(), platform.release(), ver)


def main():
    args = sys.argv[1:]
    if not args or not os.path.exists(args[0]):
        raise SystemExit(__doc__)
    module = os.path.abspath(args[0])
    out = os.path.join(HERE, "results", "module.md")
    opts = {"--entries": 1000000, "--requests": 200000, "--rounds": 3}
    rest = args[1:]
    while rest:
        a = rest.pop(0)
        if a in opts:
            opts[a] = int(rest.pop(0))
        else:
            out = a
    n, requests, rounds = opts["--entries"], opts["--requests"], opts["--rounds"]
    if not shutil.which("redis-server") or not shutil.which("redis-benchmark"):
        raise SystemExit("redis-server and redis-benchmark are needed (scripts/deps.sh module)")

    srv = Server(shutil.which("redis-server"), module)
    try:
        port = srv.port
        base = settle(srv)
        mem = {}
        fill(srv, lambda i: ("SET", "key:%012d" % i, VALUE), n)
        mem["string keys"] = settle(srv) - base
        srv.cmd("FLUSHALL", "SYNC")
        base = settle(srv)
        fill(srv, lambda i: ("HSET", "h", str(1000000000000 + i), VALUE), n)
        mem["one hash"] = settle(srv) - base
        srv.cmd("FLUSHALL", "SYNC")
        base = settle(srv)
        srv.cmd("SM.CREATE", "p", "uint8", 64, "POOLED")
        fill(srv, lambda i: ("SM.PUTB", "p", 1000000000000 + i, VALUE), n)
        mem["safemap, pooled"] = settle(srv) - base
        srv.cmd("FLUSHALL", "SYNC")
        base = settle(srv)
        srv.cmd("SM.CREATE", "m", "uint8", 64)
        fill(srv, lambda i: ("SM.PUTB", "m", 1000000000000 + i, VALUE), n)
        mem["safemap"] = settle(srv) - base
        # The string keys again, beside the map, for GET/SET.
        fill(srv, lambda i: ("SET", "key:%012d" % i, VALUE), n)
        print("memory (bytes per entry): %s" % {k: round(v / n, 1) for k, v in mem.items()}, flush=True)

        val = VALUE.decode()
        tests = {
            "SET": ["SET", "key:__rand_int__", val],
            "SM.PUTB": ["SM.PUTB", "m", "1__rand_int__", val],
            "GET": ["GET", "key:__rand_int__"],
            "SM.GETB": ["SM.GETB", "m", "1__rand_int__"],
        }
        results = {(name, p): [] for name in tests for p in (1, 16)}
        for r in range(rounds):
            for p in (1, 16):
                for name, a in tests.items():
                    results[(name, p)].append(bench(port, a, requests * (4 if p > 1 else 1), p))
            print("round %d: %s" % (r + 1, {"%s/P%d" % k: v[-1] for k, v in results.items()}), flush=True)
        med = {k: statistics.median(v) for k, v in results.items()}
        if srv.cmd("SM.LEN", "m") < n:
            raise SystemExit("the map lost entries")
    finally:
        srv.close()

    per = {k: v / n for k, v in mem.items()}
    lines = [
        "# safemap module baseline",
        "",
        "Produced by `make bench-module` (bench/module_bench.py) on %s." % time.strftime("%Y-%m-%d"),
        "",
        "Machine: %s.  The machine was shared with other jobs while this ran, so" % machine(),
        "throughput varies between runs by several per cent; the ratios come from the",
        "same server, measured in interleaved rounds (median of %d)." % rounds,
        "",
        "## Throughput (redis-benchmark, 50 clients, 64-byte values, random keys among %d)" % n,
        "",
        "| pipeline | SM.GETB req/s | GET req/s | SM.GETB / GET | SM.PUTB req/s | SET req/s | SM.PUTB / SET |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in (1, 16):
        g, G = med[("SM.GETB", p)], med[("GET", p)]
        w, W = med[("SM.PUTB", p)], med[("SET", p)]
        lines.append("| %d | %.0f | %.0f | %.2fx | %.0f | %.0f | %.2fx |" % (p, g, G, g / G, w, W, w / W))
    lines += [
        "",
        "Target: at least 0.95x GET/SET.",
        "",
        "## Memory (INFO memory used_memory above the emptied server, %d entries of 64 B)" % n,
        "",
        "| layout | bytes | bytes per entry | vs string keys | vs one hash |",
        "|---|---|---|---|---|",
    ]
    for k in ("string keys", "one hash", "safemap", "safemap, pooled"):
        lines.append("| %s | %d | %.1f | %.2fx | %.2fx |" % (k, mem[k], per[k], per[k] / per["string keys"],
                                                              per[k] / per["one hash"]))
    lines += [
        "",
        "Targets: at most 0.6x the string keys and 0.6x the hash.  The payload of an",
        "entry is 72 bytes (8-byte key, 64-byte value).",
        "",
    ]
    text = "\n".join(lines)
    with open(out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
