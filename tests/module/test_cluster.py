#!/usr/bin/env python3
"""test_cluster.py - one logical safemap spread over a Redis Cluster, through
a master's failover.

    test_cluster.py PATH/TO/safemap.so PATH/TO/smr [ENTRIES] [SUBMAPS]

Starts four redis-server processes on 127.0.0.1 with cluster mode and the
module, makes three of them masters (slots split in thirds, CLUSTER MEET,
ADDSLOTSRANGE) and the fourth a replica of the first.  Then, with the smr
client (module/client): SM.CREATE of SUBMAPS sub-maps "quotes{i}" (default
1024), ENTRIES pipelined SM.PUTBs (default 1e6) routed by key, and a read
back of every entry.  Once the replica has caught up, the first master is
killed (SIGKILL); the test waits for the replica to take over its slots and
reads every entry again through the cluster, checks SM.LEN over the
sub-maps, and writes and reads more.  Every wait is bounded; all servers are
killed at exit.  Exit 77 when redis-server or the programs are missing.
"""
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from smtest import Server, check, eq, info_field, wait_for  # noqa: E402

SLOTS = 16384


def smr(binary, port, submaps, *args, timeout=600):
    cmd = [binary, "-p", str(port), "-S", str(submaps), "-t", "60000", "quotes"] + [str(a) for a in args]
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    out = (p.stdout + p.stderr).strip()
    print("  smr %s -> %s (%.1fs)" % (" ".join(str(a) for a in args), out.splitlines()[-1] if out else "",
                                      time.time() - t0), flush=True)
    if p.returncode != 0:
        raise AssertionError("smr %s failed (%d): %s" % (" ".join(map(str, args)), p.returncode, out[-2000:]))
    return p.stdout.strip()


def cluster_ok(srv):
    try:
        return b"cluster_state:ok" in srv.cmd("CLUSTER", "INFO")
    except (OSError, ConnectionError):
        return False


def main():
    if len(sys.argv) < 3 or not os.path.exists(sys.argv[1]) or not os.path.exists(sys.argv[2]):
        print("SKIP: usage: test_cluster.py safemap.so smr [ENTRIES] [SUBMAPS]")
        return 77
    module, smr_bin = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 1000000
    submaps = int(sys.argv[4]) if len(sys.argv) > 4 else 1024
    binary = shutil.which("redis-server")
    if not binary:
        print("SKIP: redis-server is not installed")
        return 77
    t_start = time.time()
    nodes = []
    try:
        for _ in range(4):
            nodes.append(Server(binary, module, ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                                                 "--cluster-node-timeout", "1500", "--repl-diskless-sync-delay", "0",
                                                 "--cluster-replica-validity-factor", "0"]))
        print("# nodes on ports %s" % [s.port for s in nodes], flush=True)
        ids = [s.cmd("CLUSTER", "MYID").decode() for s in nodes]
        for i, s in enumerate(nodes):
            eq(s.cmd("CLUSTER", "SET-CONFIG-EPOCH", i + 1), "OK", "config epoch")
        for i in range(3):
            lo, hi = SLOTS * i // 3, SLOTS * (i + 1) // 3 - 1
            eq(nodes[i].cmd("CLUSTER", "ADDSLOTSRANGE", lo, hi), "OK", "addslots")
        for s in nodes[1:]:
            eq(nodes[0].cmd("CLUSTER", "MEET", "127.0.0.1", s.port), "OK", "meet")
        wait_for(lambda: all(len(s.cmd("CLUSTER", "NODES").decode().strip().splitlines()) == 4 for s in nodes),
                 30, "every node knows the others")
        eq(nodes[3].cmd("CLUSTER", "REPLICATE", ids[0]), "OK", "replicate")
        wait_for(lambda: all(cluster_ok(s) for s in nodes), 30, "cluster_state ok")
        wait_for(lambda: info_field(nodes[3], "replication", "master_link_status") == "up", 30, "replica link")
        print("# cluster up in %.1fs" % (time.time() - t_start), flush=True)

        port = nodes[1].port
        smr(smr_bin, port, submaps, "create", "int64", 2)
        smr(smr_bin, port, submaps, "fill", n)
        smr(smr_bin, port, submaps, "verify", n)
        eq(int(smr(smr_bin, port, submaps, "len")), n, "entries over the sub-maps")
        # Every master holds part of the map.
        for s in nodes[:3]:
            check(int(info_field(s, "keyspace", "db0").split(",")[0].split("=")[1]) > 0, "keys on every master")

        def caught_up():
            off = int(info_field(nodes[0], "replication", "master_repl_offset"))
            return int(info_field(nodes[3], "replication", "slave_repl_offset")) == off
        wait_for(caught_up, 60, "replica caught up")
        t_kill = time.time()
        nodes[0].kill()
        wait_for(lambda: info_field(nodes[3], "replication", "role") == "master", 60, "replica promoted")
        wait_for(lambda: cluster_ok(nodes[1]) and cluster_ok(nodes[3]), 60, "cluster ok after failover")
        print("# failover in %.1fs" % (time.time() - t_kill), flush=True)
        smr(smr_bin, port, submaps, "verify", n)
        eq(int(smr(smr_bin, nodes[3].port, submaps, "len")), n, "entries after failover")
        extra = min(n, 10000)
        smr(smr_bin, port, submaps, "fill", extra, n)
        smr(smr_bin, port, submaps, "verify", n + extra)
        for s in nodes[1:]:
            check(not s.crashed(), "no crash report")
        print("1 passed, 0 failed (%d entries, %d sub-maps, %.1fs)" % (n, submaps, time.time() - t_start))
        return 0
    except AssertionError as e:
        print("FAIL: %s" % e)
        for s in nodes:
            state = ""
            if s.proc.poll() is None:
                try:
                    state = (s.cmd("CLUSTER", "INFO").decode().split("\r\n")[0] + "\n" +
                             s.cmd("CLUSTER", "NODES").decode())
                except (OSError, ConnectionError) as e:
                    state = str(e)
            print("--- %d\n%s\n%s" % (s.port, state, s.log()[-1500:]))
        return 1
    finally:
        for s in nodes:
            s.close()


if __name__ == "__main__":
    sys.exit(main())
