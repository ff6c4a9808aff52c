#!/usr/bin/env python3
"""tests/server/test_http.py SAFEMAPD [OPENAPI_JSON]

Checks safemapd's HTTP port against its OpenAPI description, end to end.

It starts the real safemapd on 127.0.0.1 (ports 20000 + pid % 20000 and up,
retried when taken) with a fresh data directory, and:

  * for EVERY (path, method, status) that server/openapi.json documents, runs
    at least one request that produces it; a documented status no scenario
    produced fails the test, and so does any response (to a documented path
    and method) with a status the description does not list;
  * checks bodies: JSON shapes, the error object {"error", "code"}, raw
    octet-stream values, the embedded description equal to the file;
  * feeds bad input (malformed JSON, deep nesting, bad UTF-8, bad keys and
    names, unknown maps, huge bodies, wrong content types, wrong methods,
    unknown paths, garbage request lines) and checks the server answers
    each and is still alive;
  * runs `promtool check metrics` on /metrics (skipped only when promtool is
    not installed) and checks the metric families the server promises;
  * restarts the server on the same directory: what REST wrote is still
    there (the writes reached the append-only log);
  * starts a second server with --maxmemory 1 for the 507 responses.

Python 3 standard library only.  Every wait is bounded; every server
started is stopped (and killed if it will not stop) before the test ends.
Exit status: 0 pass, 1 fail, 77 skip (safemapd not built).
"""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
HOST = "127.0.0.1"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")

failures = []
checks = 0


def check(cond, what):
    global checks
    checks += 1
    if not cond:
        failures.append(what)
        print("FAIL: " + what, flush=True)
    return cond


# ---- Servers ---------------------------------------------------------------


class Server:
    """One safemapd process; stop() is safe to call more than once."""

    def __init__(self, binary, datadir, extra=()):
        self.binary = binary
        self.datadir = datadir
        self.extra = list(extra)
        self.proc = None
        self.port = self.http_port = None
        self.log = os.path.join(datadir, "server.log")

    def start(self):
        base = 20000 + (os.getpid() * 7) % 19000
        for attempt in range(8):
            port = base + attempt * 64 + (hash(self.datadir) % 16) * 2
            if not (port_free(port) and port_free(port + 1)):
                continue
            args = [self.binary, "--bind", HOST, "--port", str(port), "--http-port",
                    str(port + 1), "--dir", self.datadir] + self.extra
            logf = open(self.log, "ab")
            self.proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
            logf.close()
            self.port, self.http_port = port, port + 1
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break  # exited: port taken after all, or a real failure
                try:
                    st, _, _ = request(self, "GET", "/health/ready", timeout=1)
                    if st == 200:
                        return
                except OSError:
                    pass
                time.sleep(0.05)
            self.stop()
        raise RuntimeError("safemapd did not become ready; log:\n" + self.read_log())

    def read_log(self):
        try:
            with open(self.log, "rb") as f:
                return f.read().decode("utf-8", "replace")[-4000:]
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM):
        """Stops the server; returns its exit status (None if it had to be killed)."""
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
            return None


def port_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((HOST, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def request(srv, method, path, body=None, headers=None, timeout=10):
    """One request on a fresh connection: (status, headers dict lower-case, body bytes)."""
    conn = http.client.HTTPConnection(HOST, srv.http_port, timeout=timeout)
    try:
        hdrs = dict(headers or {})
        if isinstance(body, str):
            body = body.encode()
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        conn.close()


def raw_exchange(srv, data, timeout=5):
    """Sends raw bytes, returns what comes back until the server closes or goes quiet."""
    s = socket.create_connection((HOST, srv.http_port), timeout=timeout)
    try:
        s.sendall(data)
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


def raw_status(resp):
    try:
        return int(resp.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


# ---- The description and its coverage --------------------------------------


class Coverage:
    def __init__(self, spec):
        self.documented = {}  # (template, METHOD) -> set of statuses
        for path, item in spec["paths"].items():
            for m in METHODS:
                if m in item:
                    codes = {int(c) for c in item[m]["responses"] if c.isdigit()}
                    self.documented[(path, m.upper())] = codes
        self.seen = set()

    def record(self, template, method, status, what):
        key = (template, method)
        if key not in self.documented:
            check(False, "%s: %s %s is not a documented operation" % (what, method, template))
            return
        check(status in self.documented[key],
              "%s: %s %s returned %s, which the description does not list (%s)" %
              (what, method, template, status, sorted(self.documented[key])))
        self.seen.add((template, method, status))

    def missing(self):
        out = []
        for (template, method), codes in sorted(self.documented.items()):
            for c in sorted(codes):
                if (template, method, c) not in self.seen:
                    out.append("%s %s %d" % (method, template, c))
        return out


class Client:
    """Requests against one server, each recorded against the description."""

    def __init__(self, srv, cov):
        self.srv = srv
        self.cov = cov
        self.count = 0

    def do(self, method, template, path, expect, body=None, headers=None, what=""):
        st, hdrs, data = request(self.srv, method, path, body, headers)
        self.count += 1
        label = what or ("%s %s" % (method, path[:80]))
        if template:
            self.cov.record(template, method, st, label)
        check(st == expect, "%s: expected %d, got %d: %r" % (label, expect, st, data[:200]))
        if st >= 400:
            check_error_body(label, hdrs, data)
        return st, hdrs, data


def check_error_body(label, hdrs, data):
    ok = hdrs.get("content-type", "").startswith("application/json")
    try:
        obj = json.loads(data)
        ok = ok and isinstance(obj, dict) and isinstance(obj.get("error"), str) and \
            isinstance(obj.get("code"), str)
    except ValueError:
        ok = False
    check(ok, "%s: error body is not {\"error\",\"code\"} JSON: %r" % (label, data[:200]))


def jbody(obj):
    return json.dumps(obj)


JSON = {"Content-Type": "application/json"}
OCTETS = {"Content-Type": "application/octet-stream"}


# ---- Scenarios ---------------------------------------------------------------


def health_and_meta(c, spec_bytes):
    _, h, d = c.do("GET", "/health/live", "/health/live", 200)
    check(json.loads(d) == {"status": "live"}, "live body %r" % d)
    _, h, d = c.do("GET", "/health/ready", "/health/ready", 200)
    check(json.loads(d).get("status") == "ready", "ready body %r" % d)
    _, h, d = c.do("GET", "/openapi.json", "/openapi.json", 200)
    check(h.get("content-type", "").startswith("application/json"), "openapi content type")
    check(d == spec_bytes, "GET /openapi.json differs from server/openapi.json")
    # Query strings are ignored by routing.
    c.do("GET", "/health/live", "/health/live?verbose=1", 200)


def maps_scenarios(c):
    M = "/v1/maps/{name}"
    st, h, d = c.do("GET", "/v1/maps", "/v1/maps", 200)
    check(json.loads(d) == [], "empty list %r" % d)

    # Create: PUT and POST, each status.
    st, h, d = c.do("PUT", M, "/v1/maps/i64", 201, jbody({"type": "int64", "len": 3}), JSON)
    info = json.loads(d)
    check(info == {"name": "i64", "type": "int64", "len": 3, "pooled": False, "entries": 0},
          "created map info %r" % info)
    check(h.get("location") == "/v1/maps/i64", "Location header %r" % h.get("location"))
    c.do("POST", M, "/v1/maps/dbl", 201,
         jbody({"type": "DOUBLE", "len": 3, "pooled": True}), JSON)
    c.do("PUT", M, "/v1/maps/u64", 201, jbody({"type": "uint64", "len": 1}))  # no Content-Type
    c.do("PUT", M, "/v1/maps/i8", 201, jbody({"type": "int8", "len": 2}), JSON)
    c.do("PUT", M, "/v1/maps/f32", 201, jbody({"type": "float", "len": 2}), JSON)
    # A name that needs percent-encoding: printable ASCII other than space.
    c.do("PUT", M, "/v1/maps/a%2Fb%22c", 201, jbody({"type": "int16", "len": 1}), JSON)
    c.do("GET", M, "/v1/maps/a%2Fb%22c", 200)
    c.do("PUT", M, "/v1/maps/i64", 409, jbody({"type": "int64", "len": 3}), JSON)
    c.do("POST", M, "/v1/maps/i64", 409, jbody({"type": "int8", "len": 1}), JSON)

    bad_specs = [
        ("not JSON", "{type: int64}"),
        ("empty body", ""),
        ("array", "[1,2]"),
        ("unknown type", jbody({"type": "int128", "len": 1})),
        ("len 0", jbody({"type": "int64", "len": 0})),
        ("len too big", jbody({"type": "int64", "len": 65537})),
        ("len fraction", jbody({"type": "int64", "len": 1.5})),
        ("len string", jbody({"type": "int64", "len": "8"})),
        ("missing len", jbody({"type": "int64"})),
        ("unknown member", jbody({"type": "int64", "len": 1, "x": 1})),
        ("repeated member", '{"type":"int64","len":1,"len":2}'),
        ("pooled not bool", jbody({"type": "int64", "len": 1, "pooled": 1})),
        ("trailing bytes", jbody({"type": "int64", "len": 1}) + " x"),
        ("bad UTF-8", b'{"type":"\xff\xfe","len":1}'),
        ("deep nesting", '{"x":' + "[" * 5000 + "]" * 5000 + "}"),
        ("lone surrogate", '{"type":"\\ud800","len":1}'),
        ("NUL escape", '{"type":"int\\u0000","len":1}'),
    ]
    for what, body in bad_specs:
        c.do("PUT", M, "/v1/maps/bad", 400, body, JSON, what="create, " + what)
    c.do("POST", M, "/v1/maps/bad", 400, "{", JSON, what="POST create, bad JSON")
    for what, name in [("space", "a%20b"), ("control", "a%01b"), ("NUL", "a%00b"),
                       ("bad escape", "a%zzb"), ("too long", "n" * 201)]:
        c.do("PUT", M, "/v1/maps/" + name, 400, jbody({"type": "int64", "len": 1}), JSON,
             what="create, name " + what)
    c.do("GET", M, "/v1/maps/" + "n" * 201, 400, what="GET name too long")
    c.do("DELETE", M, "/v1/maps/" + "n" * 201, 400, what="DELETE name too long")
    c.do("PUT", M, "/v1/maps/" + "n" * 200, 201, jbody({"type": "int64", "len": 1}), JSON,
         what="create, name of 200 bytes")
    c.do("DELETE", M, "/v1/maps/" + "n" * 200, 204)

    big = b'{"type":"int64","len":1,"pad":"' + b"x" * (1 << 20) + b'"}'
    c.do("PUT", M, "/v1/maps/big", 413, big, JSON, what="create, 1 MiB body")
    c.do("POST", M, "/v1/maps/big", 413, big, JSON, what="POST create, 1 MiB body")
    c.do("PUT", M, "/v1/maps/t", 415, "type=int64", {"Content-Type": "text/plain"})
    c.do("POST", M, "/v1/maps/t", 415, "type=int64",
         {"Content-Type": "application/x-www-form-urlencoded"})
    c.do("PUT", M, "/v1/maps/cs", 201, jbody({"type": "int64", "len": 1}),
         {"Content-Type": "Application/JSON; charset=utf-8"}, what="create, JSON with charset")

    st, h, d = c.do("GET", M, "/v1/maps/i64", 200)
    check(json.loads(d)["entries"] == 0, "info entries %r" % d)
    c.do("GET", M, "/v1/maps/nosuch", 404)
    c.do("DELETE", M, "/v1/maps/cs", 204)
    c.do("DELETE", M, "/v1/maps/cs", 404)
    c.do("GET", M, "/v1/maps/cs", 404)

    st, h, d = c.do("GET", "/v1/maps", "/v1/maps", 200)
    names = [m["name"] for m in json.loads(d)]
    check(names == sorted(names) and set(names) == {"i64", "dbl", "u64", "i8", "f32", 'a/b"c'},
          "list of maps %r" % names)
    dbl = [m for m in json.loads(d) if m["name"] == "dbl"]
    check(dbl and dbl[0]["type"] == "double" and dbl[0]["pooled"] is True, "dbl info %r" % dbl)


def keys_scenarios(c):
    K = "/v1/maps/{name}/{key}"
    c.do("PUT", K, "/v1/maps/i64/5", 204, jbody({"value": [1, -2, 9223372036854775807]}), JSON)
    st, h, d = c.do("GET", K, "/v1/maps/i64/5", 200)
    check(json.loads(d) == {"key": 5, "value": [1, -2, 9223372036854775807]}, "GET json %r" % d)
    st, h, d = c.do("GET", K, "/v1/maps/i64/5", 200,
                    headers={"Accept": "application/octet-stream"})
    check(h.get("content-type") == "application/octet-stream", "octet content type %r" % h)
    want = b"".join(v.to_bytes(8, sys.byteorder, signed=True) for v in (1, -2, 2**63 - 1))
    check(d == want, "raw bytes %r" % d)
    st, h, d = c.do("GET", K, "/v1/maps/i64/5", 200,
                    headers={"Accept": "application/json, application/octet-stream"})
    check(d.startswith(b"{"), "JSON preferred on a tie: %r" % d[:40])
    st, h, d = c.do("GET", K, "/v1/maps/i64/5", 200,
                    headers={"Accept": "application/octet-stream;q=0.5, application/json"})
    check(d.startswith(b"{"), "JSON preferred by q: %r" % d[:40])
    st, h, d = c.do("GET", K, "/v1/maps/i64/5", 200,
                    headers={"Accept": "application/octet-stream, */*;q=0.1"})
    check(d == want, "octets preferred by q: %r" % d[:40])

    # Raw writes: exactly the value size.
    raw = b"".join(v.to_bytes(8, sys.byteorder, signed=True) for v in (-1, 0, 7))
    c.do("PUT", K, "/v1/maps/i64/-9223372036854775808", 204, raw, OCTETS)
    st, h, d = c.do("GET", K, "/v1/maps/i64/-9223372036854775808", 200)
    check(json.loads(d) == {"key": -9223372036854775808, "value": [-1, 0, 7]}, "raw put %r" % d)
    c.do("PUT", K, "/v1/maps/i64/6", 400, raw[:-1], OCTETS, what="raw body one byte short")
    c.do("PUT", K, "/v1/maps/i64/6", 400, raw + b"\0", OCTETS, what="raw body one byte long")
    c.do("PUT", K, "/v1/maps/i64/6", 400, b"", OCTETS, what="raw body empty")

    # Types: floats, non-finite values, unsigned, small ints.
    c.do("PUT", K, "/v1/maps/dbl/1", 204, jbody({"value": [0.1, "nan", "-inf"]}), JSON)
    st, h, d = c.do("GET", K, "/v1/maps/dbl/1", 200)
    check(json.loads(d) == {"key": 1, "value": [0.1, "nan", "-inf"]}, "double value %r" % d)
    c.do("PUT", K, "/v1/maps/dbl/2", 204, '{"value":[1e308, -2.5E-3, "INF"]}', JSON)
    st, h, d = c.do("GET", K, "/v1/maps/dbl/2", 200)
    check(json.loads(d)["value"] == [1e308, -0.0025, "inf"], "double value 2 %r" % d)
    c.do("PUT", K, "/v1/maps/f32/1", 204, jbody({"value": [0.1, 3]}), JSON)
    st, h, d = c.do("GET", K, "/v1/maps/f32/1", 200)
    check(json.loads(d)["value"] == [0.1, 3], "float value %r" % d)
    c.do("PUT", K, "/v1/maps/u64/0", 204, jbody({"value": [18446744073709551615]}), JSON)
    st, h, d = c.do("GET", K, "/v1/maps/u64/0", 200)
    check(json.loads(d)["value"] == [18446744073709551615], "uint64 max %r" % d)
    c.do("PUT", K, "/v1/maps/i8/3", 204, jbody({"value": [-128, 127]}), JSON)

    bad_values = [
        ("too few", "i64", jbody({"value": [1, 2]})),
        ("too many", "i64", jbody({"value": [1, 2, 3, 4]})),
        ("empty array", "i64", jbody({"value": []})),
        ("out of range int8", "i8", jbody({"value": [128, 0]})),
        ("negative uint64", "u64", jbody({"value": [-1]})),
        ("uint64 overflow", "u64", jbody({"value": [18446744073709551616]})),
        ("fraction for int", "i64", jbody({"value": [1.5, 2, 3]})),
        ("exponent for int", "i64", jbody({"value": [1e3, 2, 3]})),
        ("nan for int", "i64", jbody({"value": ["nan", 2, 3]})),
        ("string element", "dbl", jbody({"value": ["1", 2, 3]})),
        ("null element", "dbl", jbody({"value": [None, 2, 3]})),
        ("nested array", "dbl", jbody({"value": [[1], 2, 3]})),
        ("double overflow", "dbl", '{"value":[1e999, 2, 3]}'),
        ("value not array", "dbl", jbody({"value": 1})),
        ("no value", "dbl", jbody({"values": [1, 2, 3]})),
        ("bare array", "dbl", jbody([1, 2, 3])),
        ("bad JSON", "dbl", '{"value":[1,2,3}'),
        ("leading zero", "dbl", '{"value":[01,2,3]}'),
        ("plus sign", "dbl", '{"value":[+1,2,3]}'),
        ("NaN literal", "dbl", '{"value":[NaN,2,3]}'),
        ("trailing comma", "dbl", '{"value":[1,2,3,]}'),
        ("truncated", "dbl", '{"value":[1,2,'),
        ("deep nesting", "dbl", '{"value":' + "[" * 3000 + "]" * 3000 + "}"),
        ("bad UTF-8 member", "dbl", b'{"\xc3\x28":[1,2,3]}'),
        ("control char in string", "dbl", '{"value":["na\x01n",2,3]}'),
    ]
    for what, m, body in bad_values:
        c.do("PUT", K, "/v1/maps/%s/7" % m, 400, body, JSON, what="put, " + what)
    st, h, d = c.do("GET", K, "/v1/maps/i64/7", 404, what="failed puts wrote nothing")

    bad_keys = ["abc", "0x1", "%2B1", "1.0", "9223372036854775808", "-9223372036854775809",
                "%201", "1%20", "", "0x10", "-", "1e3", "%00"]
    for k in bad_keys:
        if k == "":
            continue  # "/v1/maps/i64/" is not a key path: covered by the 404 tests
        st, h, d = c.do("GET", K, "/v1/maps/i64/" + k, 400, what="GET bad key %r" % k)
        check(json.loads(d).get("code") == "bad_key", "bad key %r: code %r" % (k, d))
        c.do("PUT", K, "/v1/maps/i64/" + k, 400, jbody({"value": [1, 2, 3]}), JSON,
             what="PUT bad key %r" % k)
        c.do("DELETE", K, "/v1/maps/i64/" + k, 400, what="DELETE bad key %r" % k)
    # Leading zeros name the same key (redis-benchmark pads its keys).
    c.do("PUT", K, "/v1/maps/i64/00042", 204, jbody({"value": [1, 2, 3]}), JSON,
         what="PUT zero-padded key")
    st, h, d = c.do("GET", K, "/v1/maps/i64/42", 200, what="GET the zero-padded key")
    check(json.loads(d).get("value") == [1, 2, 3], "zero-padded key: %r" % d)
    c.do("DELETE", K, "/v1/maps/i64/-0", 404, what="DELETE key -0 (absent)")
    c.do("DELETE", K, "/v1/maps/i64/042", 204, what="DELETE zero-padded key")
    st, h, d = c.do("GET", K, "/v1/maps/i64/" + "1" * 40, 400, what="GET key of 40 digits")
    check(json.loads(d).get("code") == "bad_key", "long key: code %r" % d)

    c.do("GET", K, "/v1/maps/i64/12345", 404, what="GET absent key")
    c.do("GET", K, "/v1/maps/nosuch/1", 404, what="GET key of unknown map")
    c.do("PUT", K, "/v1/maps/nosuch/1", 404, jbody({"value": [1]}), JSON,
         what="PUT key of unknown map")
    c.do("DELETE", K, "/v1/maps/nosuch/1", 404, what="DELETE key of unknown map")

    # Body limits and media types.
    limit = (1 << 20) + 32 * 3
    c.do("PUT", K, "/v1/maps/i64/8", 413, b" " * (limit + 1), JSON, what="put, body over limit")
    c.do("PUT", K, "/v1/maps/i64/8", 400, b" " * limit, JSON, what="put, body at limit")
    c.do("PUT", K, "/v1/maps/i64/8", 415, "1 2 3", {"Content-Type": "text/plain"})
    c.do("PUT", K, "/v1/maps/i64/8", 415, "1", {"Content-Type": "multipart/form-data"})

    # Delete.
    c.do("DELETE", K, "/v1/maps/i64/-9223372036854775808", 204)
    c.do("DELETE", K, "/v1/maps/i64/-9223372036854775808", 404)
    st, h, d = c.do("GET", "/v1/maps/{name}", "/v1/maps/i64", 200)
    check(json.loads(d)["entries"] == 1, "entries after puts and deletes: %r" % d)


def protocol_scenarios(srv, c):
    # Wrong methods: 405 with Allow.
    for method, path, allow in [
        ("POST", "/health/live", "GET, HEAD"),
        ("DELETE", "/health/ready", "GET, HEAD"),
        ("PUT", "/metrics", "GET, HEAD"),
        ("POST", "/openapi.json", "GET, HEAD"),
        ("POST", "/v1/maps", "GET, HEAD"),
        ("PATCH", "/v1/maps/i64", "GET, HEAD, PUT, POST, DELETE"),
        ("POST", "/v1/maps/i64/1", "GET, HEAD, PUT, DELETE"),
        ("OPTIONS", "/v1/maps/i64/1", "GET, HEAD, PUT, DELETE"),
    ]:
        st, h, d = c.do(method, None, path, 405)
        check(h.get("allow") == allow, "%s %s: Allow %r, want %r" % (method, path, h.get("allow"),
                                                                      allow))
    # Unknown paths.
    for path in ["/", "/nope", "/v1", "/v1/maps/", "/v1/maps/i64/", "/v1/maps/i64/1/2",
                 "/v1//maps", "/health", "/health/live/x", "/metrics/", "/V1/maps",
                 "/v2/maps/i64"]:
        c.do("GET", None, path, 404, what="unknown path %r" % path)
    # HEAD works where GET does (no body).
    st, h, d = request(srv, "HEAD", "/health/live")
    check(st == 200 and d == b"", "HEAD /health/live: %d %r" % (st, d))

    # Garbage on the wire: the server answers or closes, and lives on.
    for junk in [b"GARBAGE\r\n\r\n", b"GET\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
                 b"\x00\x01\x02\x03\r\n\r\n", b"GET /health/live HTTP/1.1\r\nHost: x\r\n" +
                 b"X-Long: " + b"a" * 100000 + b"\r\n\r\n",
                 b"PUT /v1/maps/i64/1 HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
                 b"PUT /v1/maps/i64/1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
                 b"zz\r\n"]:
        resp = raw_exchange(srv, junk, timeout=3)
        st = raw_status(resp)
        check(st is None or 400 <= st < 500, "junk %r: status %r" % (junk[:30], st))
    # A Content-Length over the largest body the server ever takes: refused
    # from the headers (413) without reading the body.
    resp = raw_exchange(srv, b"PUT /v1/maps/i64/1 HTTP/1.1\r\nHost: x\r\nContent-Type: "
                        b"application/json\r\nContent-Length: 100000000\r\n\r\n", timeout=3)
    check(raw_status(resp) == 413, "100 MB Content-Length: %r" % resp[:80])
    # Keep-alive: several requests on one connection.
    conn = http.client.HTTPConnection(HOST, srv.http_port, timeout=5)
    try:
        for _ in range(5):
            conn.request("GET", "/health/live")
            r = conn.getresponse()
            r.read()
            check(r.status == 200, "keep-alive request: %d" % r.status)
    finally:
        conn.close()
    c.count += 1 + 5  # HEAD and keep-alive (junk never reaches the handler)


def metric_value(text, name, labels=None):
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if labels is None and line.startswith(name + " "):
            return float(line.split()[-1])
        if labels is not None and line.startswith(name + "{" + labels + "}"):
            return float(line.split()[-1])
    return None


def metrics_scenarios(srv, c, tmp):
    st, h, d = c.do("GET", "/metrics", "/metrics", 200)
    text = d.decode()
    check(h.get("content-type", "").startswith("text/plain"), "metrics content type %r" % h)
    check("version=0.0.4" in h.get("content-type", ""), "metrics version %r" % h)
    for fam in ["safemapd_commands_total", "safemapd_command_errors_total",
                "safemapd_command_duration_seconds", "safemapd_connections",
                "safemapd_connections_total", "safemapd_http_requests_total", "safemapd_maps",
                "safemapd_map_entries", "safemapd_map_bytes", "safemapd_memory_bytes",
                "safemapd_log_lag_seconds", "safemapd_log_bytes", "safemapd_uptime_seconds"]:
        check("# TYPE %s " % fam in text, "metrics: no family %s" % fam)
    types = [l for l in text.splitlines() if l.startswith("# TYPE ")]
    helps = [l for l in text.splitlines() if l.startswith("# HELP ")]
    check(len(types) == len(set(l.split()[2] for l in types)), "duplicate TYPE lines")
    check(len(helps) == len(set(l.split()[2] for l in helps)), "duplicate HELP lines")
    check(any(l.startswith("# TYPE safemap_") for l in types), "library metrics missing")
    n = metric_value(text, "safemapd_http_requests_total")
    check(n is not None and n >= c.count, "http_requests_total %r < %d requests made" %
          (n, c.count))
    check(metric_value(text, "safemapd_maps") == 6, "safemapd_maps %r" %
          metric_value(text, "safemapd_maps"))
    check(metric_value(text, "safemapd_map_entries", 'map="i64"') == 1, "map_entries i64")
    check(metric_value(text, "safemapd_map_entries", 'map="a/b\\"c"') == 0,
          "map_entries of a name with a quote, escaped")
    puts = metric_value(text, "safemapd_commands_total", 'cmd="sm.put"')
    check(puts is not None and puts >= 8, "REST puts counted as sm.put: %r" % puts)
    inf = metric_value(text, "safemapd_command_duration_seconds_bucket",
                       'cmd="sm.put",le="+Inf"')
    cnt = metric_value(text, "safemapd_command_duration_seconds_count", 'cmd="sm.put"')
    check(inf is not None and inf == cnt, "histogram +Inf %r == count %r" % (inf, cnt))
    promtool = shutil.which("promtool")
    if not promtool:
        print("skip: promtool not found (Debian package prometheus): exposition not linted")
        return
    path = os.path.join(tmp, "metrics.prom")
    with open(path, "wb") as f:
        f.write(d)
    with open(path, "rb") as f:
        p = subprocess.run([promtool, "check", "metrics"], stdin=f, capture_output=True,
                           timeout=60)
    out = (p.stdout + p.stderr).decode(errors="replace").strip()
    check(p.returncode == 0 and out == "", "promtool check metrics: %d %s" % (p.returncode, out))


def maxmemory_scenarios(binary, tmp, cov):
    srv = Server(binary, os.path.join(tmp, "oom"), ["--maxmemory", "1"])
    os.makedirs(srv.datadir)
    srv.start()
    try:
        c = Client(srv, cov)
        M, K = "/v1/maps/{name}", "/v1/maps/{name}/{key}"
        st, _, _ = request(srv, "PUT", "/v1/maps/first", jbody({"type": "int64", "len": 1}),
                           JSON)
        if st == 201:
            cov.record(M, "PUT", st, "first map under maxmemory 1")
            c.do("PUT", K, "/v1/maps/first/1", 507, jbody({"value": [1]}), JSON,
                 what="put over maxmemory")
            c.do("PUT", K, "/v1/maps/first/1", 507, b"\0" * 8, OCTETS,
                 what="raw put over maxmemory")
            c.do("GET", K, "/v1/maps/first/1", 404, what="nothing written over maxmemory")
        else:
            check(st == 507, "first map under maxmemory 1: %d" % st)
            check(False, "maxmemory 1 refused the first map: PUT of a key cannot reach 507")
        c.do("PUT", M, "/v1/maps/second", 507, jbody({"type": "int64", "len": 1}), JSON)
        c.do("POST", M, "/v1/maps/second", 507, jbody({"type": "int64", "len": 1}), JSON)
        st, h, d = request(srv, "GET", "/metrics")
        v = metric_value(d.decode(), "safemapd_oom_rejections_total")
        check(v is not None and v >= 4, "oom_rejections_total %r" % v)
        if st == 200:
            cov.record("/metrics", "GET", st, "metrics under maxmemory")
    finally:
        check(srv.stop() == 0, "maxmemory server exit status")


def restart_and_drain(srv, cov):
    """Restarts on the same directory (REST writes were logged), then drains."""
    check(srv.stop() == 0, "server exit status after SIGTERM: %r" % srv.proc.returncode)
    srv.start()
    c = Client(srv, cov)
    st, h, d = c.do("GET", "/v1/maps/{name}/{key}", "/v1/maps/i64/5", 200, what="after restart")
    check(json.loads(d)["value"] == [1, -2, 9223372036854775807], "value after restart %r" % d)
    st, h, d = c.do("GET", "/v1/maps/{name}/{key}", "/v1/maps/dbl/1", 200, what="dbl restart")
    check(json.loads(d)["value"] == [0.1, "nan", "-inf"], "double after restart %r" % d)
    c.do("GET", "/v1/maps/{name}", "/v1/maps/cs", 404, what="dropped map stays dropped")
    c.do("GET", "/v1/maps/{name}/{key}", "/v1/maps/i64/-9223372036854775808", 404,
         what="deleted key stays deleted")

    # Draining: after SIGTERM readiness fails first (503) while the process
    # still serves; then the port closes.  Poll briefly, bounded.
    srv.proc.send_signal(signal.SIGTERM)
    seen = None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and srv.proc.poll() is None:
        try:
            st, h, d = request(srv, "GET", "/health/ready", timeout=1)
        except OSError:
            break
        if st == 503:
            seen = (st, d)
            break
        time.sleep(0.002)
    if seen:
        cov.record("/health/ready", "GET", 503, "ready while draining")
        check(json.loads(seen[1]).get("status") in ("draining", "stopped"),
              "503 body %r" % seen[1])
    try:
        rc = srv.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        rc = None
    check(rc == 0, "exit status after drain: %r" % rc)


def supports(binary, option):
    try:
        p = subprocess.run([binary, "--help"], capture_output=True, timeout=10,
                           stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return ("--" + option).encode() in p.stdout + p.stderr


def main():
    if len(sys.argv) < 2:
        print("usage: test_http.py SAFEMAPD [OPENAPI_JSON]", file=sys.stderr)
        return 2
    binary = sys.argv[1]
    spec_path = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "server",
                                                                   "openapi.json")
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        print("skip: %s is not built" % binary)
        return 77
    with open(spec_path, "rb") as f:
        spec_bytes = f.read()
    spec = json.loads(spec_bytes)
    cov = Coverage(spec)

    tmp = tempfile.mkdtemp(prefix="safemapd-http-")
    servers = []
    try:
        # A drain delay, when the daemon has one, keeps /health/ready's 503
        # visible for a while after SIGTERM (otherwise the poll may miss it).
        extra = ["--shutdown-delay-ms", "400"] if supports(binary, "shutdown-delay-ms") else []
        srv = Server(binary, os.path.join(tmp, "data"), extra)
        os.makedirs(srv.datadir)
        servers.append(srv)
        srv.start()
        c = Client(srv, cov)
        health_and_meta(c, spec_bytes)
        maps_scenarios(c)
        keys_scenarios(c)
        protocol_scenarios(srv, c)
        metrics_scenarios(srv, c, tmp)
        st, _, _ = request(srv, "GET", "/health/live")
        check(st == 200, "alive after all the bad input")
        maxmemory_scenarios(binary, tmp, cov)
        restart_and_drain(srv, cov)
        for m in cov.missing():
            check(False, "documented but no scenario produced it: " + m)
        if failures:
            print("--- server log\n" + srv.read_log())
    except Exception as e:  # a crash of the test itself is a failure too
        check(False, "exception: %r" % (e,))
        if servers:
            print("--- server log\n" + servers[0].read_log())
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    covered = len(cov.seen)
    print("test_http: %d checks, %d documented responses covered, %d failed" %
          (checks, covered, len(failures)))
    print("%d passed, %d failed" % (checks - len(failures), len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
