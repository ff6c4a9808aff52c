#!/usr/bin/env python3
"""test_module.py - the safemap module (safemap.so) in Redis 7.0 and Valkey 8.

    test_module.py PATH/TO/safemap.so [redis|valkey]

For each server installed (redis-server, valkey-server; or the one named),
starts it on 127.0.0.1 with the module and checks:

  commands        every command, its replies (RESP2 and RESP3) and errors:
                  arity, WRONGTYPE, unknown map, map exists, bad values
  flags           COMMAND INFO flags, COMMAND GETKEYS, an ACL user limited to
                  @read refused the writes
  notifications   keyspace events for sm.create / sm.put / sm.putb / sm.del,
                  none for a write that changed nothing
  memory          used_memory and MEMORY USAGE grow with the map (the library
                  allocates through Redis), OOM refuses puts under maxmemory
  digest_copy     DEBUG DIGEST-VALUE independent of insertion order, COPY
  save_restart    SAVE, restart, same digests (every element type, pooled)
  debug_reload    DEBUG RELOAD keeps every map
  aof_rewrite     BGREWRITEAOF (no RDB preamble: the module's rewrite), more
                  writes, restart from the AOF, same digests
  replica         a replica receives the maps (full sync, then the stream)
  restore_fuzz    DUMP payloads with every byte changed (checksum fixed)
                  given to RESTORE: refused or loaded, never a crash
  corrupt_rdb     a dump.rdb with a bad layout field: the server refuses to
                  start, cleanly; a newer encoding version refused likewise
  lazy_free       UNLINK of a large map is freed in the background

Exit status 0 / 1 / 77 (skipped: no server or no module).
"""
import os
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from smtest import (Conn, RespError, Runner, Server, check, eq, find_module,  # noqa: E402
                    info_field, server_binaries, wait_for)

TYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float", "double"]
SIZES = dict(int8=1, int16=2, int32=4, int64=8, uint8=1, uint16=2, uint32=4, uint64=8, float=4, double=8)


def fill(conn, key, n, vsize, first=0, seed=1):
    cmds = [("SM.PUTB", key, k, value_of(k, vsize, seed)) for k in range(first, first + n)]
    for r in conn.pipeline(cmds):
        if r != "OK":
            raise AssertionError("SM.PUTB: %r" % r)


def value_of(k, vsize, seed=1):
    x = (k * 0x9E3779B97F4A7C15 + seed) & 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while len(out) < vsize:
        x = (x * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        out += struct.pack("<Q", x)
    return bytes(out[:vsize])


def make_maps(conn, n=2000):
    """One map per element type (two values each), and a pooled one."""
    maps = {}
    for t in TYPES:
        key = "m:" + t
        eq(conn.cmd("SM.CREATE", key, t, 2), "OK", "create " + t)
        fill(conn, key, n, SIZES[t] * 2)
        maps[key] = n
    eq(conn.cmd("SM.CREATE", "m:pooled", "int32", 16, "POOLED"), "OK")
    fill(conn, "m:pooled", n, 64)
    maps["m:pooled"] = n
    return maps


def digests(conn, keys):
    return {k: conn.cmd("DEBUG", "DIGEST-VALUE", k) for k in keys}


# ---- tests ---------------------------------------------------------------

def t_commands(srv):
    c = srv.conn()
    eq(c.cmd("SM.CREATE", "a", "int64", 2), "OK")
    eq(c.cmd("SM.CREATE", "a", "int64", 2), RespError("ERR map 'a' exists"))
    eq(c.cmd("TYPE", "a"), "safemap01")
    eq(c.cmd("SM.PUT", "a", 5, 10, -20), "OK")
    eq(c.cmd("SM.PUT", "a", -7, 1, 2), "OK")
    eq(c.cmd("SM.GET", "a", 5), [10, -20])
    eq(c.cmd("SM.GET", "a", 6), None)
    eq(c.cmd("SM.GETB", "a", 5), struct.pack("<qq", 10, -20))
    eq(c.cmd("SM.PUTB", "a", 6, struct.pack("<qq", 3, 4)), "OK")
    eq(c.cmd("SM.MGET", "a", 5, 9, 6), [[10, -20], None, [3, 4]])
    eq(c.cmd("SM.EXISTS", "a", 5, 9, 6), 2)
    eq(c.cmd("SM.LEN", "a"), 3)
    eq(c.cmd("SM.SCAN", "a", 0, "COUNT", 2), [b"9223372036854775814", [-7, 5]])
    eq(c.cmd("SM.SCAN", "a", "9223372036854775814", "COUNT", 2), [b"0", [6]])
    info = c.cmd("SM.INFO", "a")
    d = dict(zip(info[::2], info[1::2]))
    eq((d[b"type"], d[b"len"], d[b"entries"]), (b"int64", 2, 3), "SM.INFO")
    eq(c.cmd("SM.DEL", "a", 5, 9), 1)
    eq(c.cmd("SM.DEL", "a", 9), 0)
    eq(c.cmd("SM.LEN", "a"), 2)
    # Errors.
    check(str(c.cmd("SM.PUT", "a", 1, 2)).startswith("WRONGLEN"), "wrong value count")
    check("not an integer" in str(c.cmd("SM.PUT", "a", 1, "x", 2)), "bad value")
    check("invalid key" in str(c.cmd("SM.GET", "a", "0x1")), "bad key")
    check(c.cmd("SM.GET", "a", "-000") == c.cmd("SM.GET", "a", 0), "zero-padded key")
    check("SM.PUTB expects 16 bytes" in str(c.cmd("SM.PUTB", "a", 1, "short")), "PUTB size")
    for args in (("SM.GET",), ("SM.GET", "a"), ("SM.PUT", "a", 1), ("SM.LEN", "a", "x"),
                 ("SM.CREATE", "b", "int8"), ("SM.SCAN", "a", 0, "COUNT")):
        r = c.cmd(*args)
        check(isinstance(r, RespError) and "wrong number of arguments" in str(r), "arity %r: %r" % (args, r))
    eq(c.cmd("SET", "s", "x"), "OK")
    for args in (("SM.GET", "s", 1), ("SM.PUT", "s", 1, 2, 3), ("SM.LEN", "s"), ("SM.CREATE", "s", "int8", 1)):
        r = c.cmd(*args)
        check(isinstance(r, RespError) and str(r).startswith("WRONGTYPE"), "wrongtype %r: %r" % (args, r))
    eq(c.cmd("SM.GET", "nomap", 1), RespError("ERR unknown map 'nomap'"))
    check("unknown type" in str(c.cmd("SM.CREATE", "b", "int128", 1)), "bad type")
    check("length" in str(c.cmd("SM.CREATE", "b", "int8", 0)), "bad length")
    eq(c.cmd("EXISTS", "b"), 0)
    eq(c.cmd("GET", "a"), RespError("WRONGTYPE Operation against a key holding the wrong kind of value"))
    # A binary key name and a CR/LF in a value cannot break the protocol.
    eq(c.cmd("SM.CREATE", b"k\r\n\x00y", "uint64", 1), "OK")
    eq(c.cmd("SM.PUT", b"k\r\n\x00y", 1, 18446744073709551615), "OK")
    eq(c.cmd("SM.GET", b"k\r\n\x00y", 1), [b"18446744073709551615"])
    check("is not an integer" in str(c.cmd("SM.PUT", b"k\r\n\x00y", 1, "1\r\n2")), "CR/LF in a value")
    eq(c.cmd("PING"), "PONG")
    # RESP3: doubles; RESP2: bulk strings.
    eq(c.cmd("SM.CREATE", "f", "float", 2), "OK")
    eq(c.cmd("SM.PUT", "f", 1, "0.1", "-2.5"), "OK")
    eq(c.cmd("SM.GET", "f", 1), [b"0.1", b"-2.5"])
    c.cmd("HELLO", 3)
    eq(c.cmd("SM.GET", "f", 1), [0.1, -2.5])
    eq(c.cmd("SM.GET", "f", 2), None)
    info = c.cmd("SM.INFO", "f")
    check(isinstance(info, dict) and info[b"type"] == b"float", "RESP3 SM.INFO is a map")
    # Generic key commands.
    eq(c.cmd("RENAME", "a", "a2"), "OK")
    eq(c.cmd("SM.GET", "a2", 6), [3, 4])
    eq(c.cmd("DEL", "a2"), 1)
    eq(c.cmd("SM.LEN", "a2"), RespError("ERR unknown map 'a2'"))
    # MULTI/EXEC.
    c.cmd("MULTI")
    c.cmd("SM.PUT", "f", 3, 1, 2)
    c.cmd("SM.LEN", "f")
    eq(c.cmd("EXEC"), ["OK", 2])
    c.close()


def t_flags(srv):
    c = srv.conn()
    want = {"sm.create": {"write", "denyoom"}, "sm.put": {"write", "denyoom", "fast"},
            "sm.putb": {"write", "denyoom", "fast"}, "sm.get": {"readonly", "fast"},
            "sm.getb": {"readonly", "fast"}, "sm.mget": {"readonly", "fast"}, "sm.del": {"write"},
            "sm.exists": {"readonly", "fast"}, "sm.len": {"readonly", "fast"}, "sm.scan": {"readonly"},
            "sm.info": {"readonly"}}
    for name, flags in want.items():
        info = c.cmd("COMMAND", "INFO", name)[0]
        check(info is not None, name + " registered")
        got = {f.decode() if isinstance(f, bytes) else f for f in info[2]}
        check(flags <= got, "%s flags %s lack %s" % (name, got, flags - got))
        eq((info[3], info[4], info[5]), (1, 1, 1), name + " key positions")
    eq(c.cmd("COMMAND", "GETKEYS", "SM.PUT", "mymap", 1, 2), [b"mymap"])
    eq(c.cmd("COMMAND", "GETKEYS", "SM.MGET", "other", 1, 2, 3), [b"other"])
    # ACL: a user allowed the read commands only (Redis 7.0 puts module
    # commands in no category), and a user limited to the key "acl".
    eq(c.cmd("SM.CREATE", "acl", "int8", 1), "OK")
    eq(c.cmd("ACL", "SETUSER", "reader", "on", ">pw", "~*", "+sm.len", "+sm.get", "+auth"), "OK")
    eq(c.cmd("ACL", "SETUSER", "keyed", "on", ">pw", "~acl", "+@all"), "OK")
    u = srv.conn()
    eq(u.cmd("AUTH", "reader", "pw"), "OK")
    eq(u.cmd("SM.LEN", "acl"), 0)
    eq(u.cmd("SM.GET", "acl", 1), None)
    check(str(u.cmd("SM.PUT", "acl", 1, 1)).startswith("NOPERM"), "reader may not write")
    eq(u.cmd("AUTH", "keyed", "pw"), "OK")
    eq(u.cmd("SM.PUT", "acl", 1, 1), "OK")
    check(str(u.cmd("SM.CREATE", "other", "int8", 1)).startswith("NOPERM"), "key pattern applies")
    check(str(u.cmd("SM.GET", "other", 1)).startswith("NOPERM"), "key pattern applies to reads")
    u.close()
    c.close()


def t_notifications(srv):
    c = srv.conn()
    eq(c.cmd("CONFIG", "SET", "notify-keyspace-events", "Kd"), "OK")
    sub = srv.conn()
    sub.s.settimeout(5)
    sub.cmd("PSUBSCRIBE", "__keyspace@0__:ev")
    c.cmd("SM.CREATE", "ev", "int16", 1)
    c.cmd("SM.PUT", "ev", 1, 7)
    c.cmd("SM.PUTB", "ev", 2, b"\x01\x00")
    c.cmd("SM.DEL", "ev", 99)  # nothing removed: no event
    c.cmd("SM.GET", "ev", 1)  # a read: no event
    c.cmd("SM.PUT", "ev", 1, "x")  # refused: no event
    c.cmd("SM.DEL", "ev", 1, 2)
    got = [sub.read()[3] for _ in range(4)]
    eq(got, [b"sm.create", b"sm.put", b"sm.putb", b"sm.del"], "events")
    c.cmd("SM.PUT", "ev", 5, 5)
    eq(sub.read()[3], b"sm.put", "next event")
    c.cmd("CONFIG", "SET", "notify-keyspace-events", "")
    sub.close()
    c.close()


def t_memory(srv):
    c = srv.conn()
    before = int(info_field(c, "memory", "used_memory"))
    eq(c.cmd("SM.CREATE", "mem", "int64", 8), "OK")
    empty = c.cmd("MEMORY", "USAGE", "mem")
    fill(c, "mem", 50000, 64)
    after = int(info_field(c, "memory", "used_memory"))
    usage = c.cmd("MEMORY", "USAGE", "mem")
    check(after - before > 50000 * 72, "used_memory grew by %d for 50000 entries of 72 B" % (after - before))
    check(usage > empty + 50000 * 72, "MEMORY USAGE %d (empty %d)" % (usage, empty))
    check(usage < 50000 * 72 * 3, "MEMORY USAGE %d too large" % usage)
    # MEMORY USAGE is smc_map_bytes, SM.INFO's bytes (plus Redis's key
    # overhead); for a pooled map that includes the pool holding the values.
    eq(c.cmd("SM.CREATE", "memp", "int64", 8, "POOLED"), "OK")
    fill(c, "memp", 20000, 64)
    for key in ("mem", "memp"):
        info = c.cmd("SM.INFO", key)
        ib = dict(zip(info[::2], info[1::2]))[b"bytes"]
        mu = c.cmd("MEMORY", "USAGE", key)
        check(ib <= mu < ib + 1024, "%s: MEMORY USAGE %d, SM.INFO bytes %d" % (key, mu, ib))
        check(ib > 10000, "%s: bytes %d count the map's own struct" % (key, ib))
    check(c.cmd("MEMORY", "USAGE", "memp") > 20000 * 64, "pooled MEMORY USAGE counts the pool")
    c.cmd("DEL", "memp")
    c.cmd("DEL", "mem")
    wait_for(lambda: int(info_field(c, "memory", "used_memory")) < before + 4 * 1024 * 1024, 10,
             "memory given back")
    # deny-oom: under maxmemory, puts are refused, reads and deletes served.
    eq(c.cmd("SM.CREATE", "oom", "int64", 8), "OK")
    fill(c, "oom", 100, 64)
    used = int(info_field(c, "memory", "used_memory"))
    eq(c.cmd("CONFIG", "SET", "maxmemory", used - 1024), "OK")
    check(str(c.cmd("SM.PUT", "oom", 1, *range(8))).startswith("OOM"), "put under maxmemory")
    check(str(c.cmd("SM.CREATE", "oom2", "int8", 1)).startswith("OOM"), "create under maxmemory")
    eq(c.cmd("SM.LEN", "oom"), 100)
    eq(c.cmd("SM.DEL", "oom", 1), 1)
    eq(c.cmd("CONFIG", "SET", "maxmemory", 0), "OK")
    c.close()


def t_digest_copy(srv):
    c = srv.conn()
    c.cmd("SM.CREATE", "d1", "int32", 3)
    c.cmd("SM.CREATE", "d2", "int32", 3)
    keys = list(range(-500, 500))
    c.pipeline([("SM.PUT", "d1", k, k, k * 2, -k) for k in keys])
    c.pipeline([("SM.PUT", "d2", k, k, k * 2, -k) for k in reversed(keys)])
    d1, d2 = c.cmd("DEBUG", "DIGEST-VALUE", "d1"), c.cmd("DEBUG", "DIGEST-VALUE", "d2")
    eq(d1, d2, "digest independent of insertion order")
    c.cmd("SM.PUT", "d2", 0, 0, 0, 1)
    check(c.cmd("DEBUG", "DIGEST-VALUE", "d2") != d1, "digest sees a changed value")
    eq(c.cmd("COPY", "d1", "d3"), 1)
    eq(c.cmd("DEBUG", "DIGEST-VALUE", "d3"), d1, "copy")
    c.cmd("SM.PUT", "d3", 0, 9, 9, 9)
    eq(c.cmd("DEBUG", "DIGEST-VALUE", "d1"), d1, "the copy is independent")
    c.cmd("SM.CREATE", "d4", "int32", 4)
    check(c.cmd("DEBUG", "DIGEST-VALUE", "d4") != c.cmd("DEBUG", "DIGEST-VALUE", "d5"), "layout in digest")
    c.close()


def t_save_restart(srv):
    c = srv.conn()
    c.cmd("FLUSHALL")
    maps = make_maps(c)
    c.cmd("SM.CREATE", "empty", "double", 3)
    before = digests(c, list(maps) + ["empty"])
    all_before = c.cmd("DEBUG", "DIGEST")
    eq(c.cmd("SAVE"), "OK")
    c.close()
    srv.stop()
    srv.start()
    c = srv.conn()
    eq(digests(c, list(maps) + ["empty"]), before, "digests after restart")
    eq(c.cmd("DEBUG", "DIGEST"), all_before, "dataset digest")
    eq(c.cmd("SM.LEN", "m:int8"), maps["m:int8"])
    eq(c.cmd("SM.GETB", "m:pooled", 1234), value_of(1234, 64))
    info = c.cmd("SM.INFO", "m:pooled")
    eq(dict(zip(info[::2], info[1::2]))[b"pooled"], 1, "pooled after load")
    c.close()


def t_debug_reload(srv):
    c = srv.conn()
    c.cmd("FLUSHALL")
    maps = make_maps(c, 1000)
    before = c.cmd("DEBUG", "DIGEST")
    eq(c.cmd("DEBUG", "RELOAD"), "OK")
    eq(c.cmd("DEBUG", "DIGEST"), before, "digest after DEBUG RELOAD")
    eq(c.cmd("SM.LEN", "m:double"), maps["m:double"])
    c.close()


def t_aof_rewrite(srv):
    c = srv.conn()
    c.cmd("FLUSHALL")
    eq(c.cmd("CONFIG", "SET", "aof-use-rdb-preamble", "no"), "OK")
    eq(c.cmd("CONFIG", "SET", "appendonly", "yes"), "OK")
    wait_for(lambda: info_field(c, "persistence", "aof_rewrite_in_progress") == "0" and
             info_field(c, "persistence", "aof_rewrite_scheduled") == "0", 30, "initial rewrite")
    maps = make_maps(c, 1000)
    c.cmd("BGREWRITEAOF")
    wait_for(lambda: info_field(c, "persistence", "aof_rewrite_in_progress") == "0" and
             info_field(c, "persistence", "aof_rewrite_scheduled") == "0", 30, "rewrite")
    eq(info_field(c, "persistence", "aof_last_bgrewrite_status"), "ok")
    # The base file holds what the module emitted.
    adir = os.path.join(srv.dir, "appendonlydir")
    base = [f for f in os.listdir(adir) if ".base." in f]
    eq(len(base), 1, "one base file")
    check(base[0].endswith(".aof"), "base is an AOF, not an RDB preamble: " + base[0])
    with open(os.path.join(adir, base[0]), "rb") as f:
        text = f.read()
    check(b"SM.PUTB" in text and b"SM.CREATE" in text, "rewrite emitted SM.CREATE and SM.PUTB")
    # Writes after the rewrite go to the incremental file.
    c.cmd("SM.PUT", "m:int64", 99999, 1, 2)
    c.cmd("SM.DEL", "m:int8", 5)
    c.cmd("SM.CREATE", "late", "uint16", 1)
    c.cmd("SM.PUT", "late", 1, 65535)
    before = c.cmd("DEBUG", "DIGEST")
    c.close()
    srv.stop()
    srv.extra = ["--appendonly", "yes", "--aof-use-rdb-preamble", "no"]
    srv.start()
    c = srv.conn()
    eq(c.cmd("DEBUG", "DIGEST"), before, "digest after restart from the AOF")
    eq(c.cmd("SM.LEN", "m:int8"), maps["m:int8"] - 1)
    eq(c.cmd("SM.GET", "late", 1), [65535])
    c.cmd("CONFIG", "SET", "appendonly", "no")
    srv.extra = []
    c.close()


def t_replica(srv):
    c = srv.conn()
    c.cmd("FLUSHALL")
    make_maps(c, 1000)
    c.cmd("CONFIG", "SET", "repl-diskless-sync-delay", 0)
    rep = Server(srv.binary, srv.module, ["--replicaof", "127.0.0.1", str(srv.port)])
    try:
        r = rep.conn()
        wait_for(lambda: info_field(r, "replication", "master_link_status") == "up", 30, "replica link")
        wait_for(lambda: r.cmd("DEBUG", "DIGEST") == c.cmd("DEBUG", "DIGEST"), 20, "full sync")
        # The stream: writes after the sync.
        c.cmd("SM.CREATE", "after", "int8", 1)
        c.pipeline([("SM.PUT", "after", k, k % 100) for k in range(500)])
        c.cmd("SM.DEL", "m:int64", 1, 2, 3)
        eq(c.cmd("WAIT", 1, 10000), 1, "replica acknowledged")
        eq(r.cmd("DEBUG", "DIGEST"), c.cmd("DEBUG", "DIGEST"), "digest on the replica")
        eq(r.cmd("SM.GET", "after", 42), [42])
        check(str(r.cmd("SM.PUT", "after", 1, 1)).startswith("READONLY"), "replica refuses writes")
        r.close()
    finally:
        rep.close()
    c.close()


CRC64_TABLE = []


def crc64(data):
    """Redis's CRC-64 (Jones polynomial, reflected, no final xor)."""
    if not CRC64_TABLE:
        poly = 0x95AC9329AC4BC9B5
        for i in range(256):
            crc = i
            for _ in range(8):
                crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
            CRC64_TABLE.append(crc)
    crc = 0
    for b in data:
        crc = CRC64_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


def module_id(name, encver):
    chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    mid = 0
    for ch in name:
        mid = (mid << 6) | chars.index(ch)
    return (mid << 10) | encver


def with_crc(body):
    return body + struct.pack("<Q", crc64(body))


def t_restore_fuzz(srv):
    assert crc64(b"123456789") == 0xE9C6D914C4B8D9CA
    c = srv.conn()
    c.cmd("FLUSHALL")
    c.cmd("SM.CREATE", "src", "int16", 3)
    c.pipeline([("SM.PUT", "src", k * 7919, k, -k, 3) for k in range(40)])
    payload = c.cmd("DUMP", "src")
    body = payload[:-8]
    eq(with_crc(body), payload, "our CRC matches Redis's")
    eq(c.cmd("RESTORE", "ok", 0, payload), "OK")
    eq(c.cmd("DEBUG", "DIGEST-VALUE", "ok"), c.cmd("DEBUG", "DIGEST-VALUE", "src"))
    refused = loaded = 0
    for i in range(len(body) - 2):  # not the RDB version
        for delta in (1, 0x80, 0xFF):
            b = bytearray(body)
            b[i] = (b[i] + delta) & 0xFF
            r = c.cmd("RESTORE", "fz", 0, with_crc(bytes(b)), "REPLACE")
            if isinstance(r, RespError):
                refused += 1
            else:
                eq(r, "OK", "RESTORE")
                loaded += 1
                n = c.cmd("SM.LEN", "fz")
                check(isinstance(n, int) and n <= 40, "a loaded payload is a sane map: %r" % n)
                c.cmd("SM.SCAN", "fz", 0, "COUNT", 100)
    check(refused > len(body), "most corruptions refused (%d refused, %d loaded)" % (refused, loaded))
    # Every truncation (the RDB version and checksum fixed up) is refused.
    for cut in range(1, len(body) - 2):
        r = c.cmd("RESTORE", "tr", 0, with_crc(body[:cut] + body[-2:]), "REPLACE")
        check(isinstance(r, RespError), "a payload cut at %d refused: %r" % (cut, r))
    eq(c.cmd("PING"), "PONG")
    # A newer encoding version is refused.
    mid = module_id("safemap01", 1)
    check(body[1:10] == b"\x81" + struct.pack(">Q", mid), "payload starts with the module id")
    newer = body[:1] + b"\x81" + struct.pack(">Q", module_id("safemap01", 2)) + body[10:]
    r = c.cmd("RESTORE", "nv", 0, with_crc(newer))
    check(isinstance(r, RespError), "encoding version 2 refused: %r" % r)
    wait_for(lambda: "unknown encoding version" in srv.log() or "encver" in srv.log().lower(), 5,
             "the refusal logged")
    check(not srv.crashed(), "no crash report")
    c.close()


def t_corrupt_rdb(srv):
    c = srv.conn()
    c.cmd("FLUSHALL")
    c.cmd("SM.CREATE", "cm", "int32", 2)
    c.pipeline([("SM.PUT", "cm", k, k, k) for k in range(100)])
    eq(c.cmd("SAVE"), "OK")
    c.close()
    srv.stop()
    path = os.path.join(srv.dir, "dump.rdb")
    with open(path, "rb") as f:
        good = f.read()
    marker = b"\x81" + struct.pack(">Q", module_id("safemap01", 1))
    at = good.find(marker)
    check(at > 0, "module id in dump.rdb")
    # After the id: opcode UINT (2) and the type (int32 = 2, one byte).
    eq(good[at + 9:at + 11], b"\x02\x02", "the type field")
    bad = bytearray(good)
    bad[at + 10] = 0x3F  # type 63: no such type
    bad[-8:] = b"\x00" * 8  # no checksum: the module must catch it
    with open(path, "wb") as f:
        f.write(bytes(bad))
    started = srv.start(expect_fail=True)
    check(not started, "the server refused the file")
    check(srv.proc.returncode is not None and srv.proc.returncode >= 0,
          "exit status %s (not a signal)" % srv.proc.returncode)
    check("refusing a map payload: bad layout" in srv.log(), "the module said why")
    check(not srv.crashed(), "no crash report")
    with open(path, "wb") as f:
        f.write(good)
    srv.start()
    eq(srv.cmd("SM.LEN", "cm"), 100, "the good file loads")


def t_lazy_free(srv):
    c = srv.conn()
    c.cmd("FLUSHALL")
    c.cmd("CONFIG", "SET", "lazyfree-lazy-user-del", "no")
    c.cmd("SM.CREATE", "big", "int64", 1)
    c.pipeline([("SM.PUT", "big", k, k) for k in range(60000)])
    c.cmd("SM.CREATE", "small", "int64", 1)
    c.cmd("SM.PUT", "small", 1, 1)
    field = "lazyfreed_objects"
    start = info_field(c, "memory", field)
    if start is None:
        start = info_field(c, "stats", field)
    section = "memory" if info_field(c, "memory", field) is not None else "stats"
    check(start is not None, "INFO has lazyfreed_objects")
    eq(c.cmd("UNLINK", "small"), 1)
    eq(info_field(c, section, field), start, "a small map is freed at once")
    eq(c.cmd("UNLINK", "big"), 1)
    wait_for(lambda: int(info_field(c, section, field)) == int(start) + 1, 10, "background free")
    c.close()


def main():
    module = find_module()
    only = sys.argv[2] if len(sys.argv) > 2 else None
    runner = Runner()
    servers = server_binaries()
    if only and only not in [label for label, _ in servers]:
        print("SKIP: %s-server is not installed" % only)
        sys.exit(77)
    for label, binary in servers:
        if only and label != only:
            continue
        srv = Server(binary, module)
        try:
            ver = info_field(srv, "server", "valkey_version") or info_field(srv, "server", "redis_version")
            print("# %s (%s %s) port %d" % (label, binary, ver, srv.port), flush=True)
            for name, fn in (("commands", t_commands), ("flags", t_flags),
                             ("notifications", t_notifications), ("memory", t_memory),
                             ("digest_copy", t_digest_copy), ("save_restart", t_save_restart),
                             ("debug_reload", t_debug_reload), ("aof_rewrite", t_aof_rewrite),
                             ("replica", t_replica), ("restore_fuzz", t_restore_fuzz),
                             ("corrupt_rdb", t_corrupt_rdb), ("lazy_free", t_lazy_free)):
                if srv.proc.poll() is not None:
                    srv.extra = []
                    srv.start()
                runner.run("%s/%s" % (label, name), fn, srv)
            check(not srv.crashed(), "crash report in the log")
        finally:
            srv.close()
    runner.finish()


if __name__ == "__main__":
    main()
