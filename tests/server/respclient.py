"""respclient.py - the RESP client the server's Python tests share: commands
encoded as RESP arrays of bulk strings, every RESP2 and RESP3 reply type
read back, over a raw socket to 127.0.0.1.

Replies: simple strings as str, bulk strings as bytes, integers as int,
doubles as float, nulls as None, booleans as bool, arrays, sets and pushes
as lists, maps as dicts (keys decoded to str when they are bytes), verbatim
strings without their format prefix; an error reply is returned (not
raised) as a RespError.  A closed connection raises Closed, a
ConnectionError.
"""
import socket
import time


class RespError(Exception):
    pass


class Closed(ConnectionError):
    pass


class Conn:
    """A RESP client over a raw socket."""

    def __init__(self, port, timeout=10.0):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.s.settimeout(timeout)
        self.buf = b""

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def send_raw(self, data):
        self.s.sendall(data)

    def send(self, *args):
        self.s.sendall(encode(*args))

    def _fill(self):
        d = self.s.recv(1 << 20)
        if not d:
            raise Closed("connection closed")
        self.buf += d

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2:]
                return line
            self._fill()

    def _bytes(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        d, self.buf = self.buf[:n], self.buf[n + 2:]
        return d

    def read(self):
        """One reply: str/bytes/int/float/None/list/dict, or a RespError
        instance for an error reply (returned, not raised)."""
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RespError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self._bytes(n)
        if t in (b"*", b"~", b">"):
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        if t == b"%":
            n = int(rest)
            out = {}
            for _ in range(n):
                k = self.read()
                out[k.decode() if isinstance(k, bytes) else k] = self.read()
            return out
        if t == b"_":
            return None
        if t == b",":
            return float(rest)
        if t == b"#":
            return rest == b"t"
        if t == b"=":
            return self._bytes(int(rest))[4:]
        raise AssertionError("bad reply type %r" % line)

    def cmd(self, *args):
        self.send(*args)
        return self.read()

    def wait_closed(self, timeout):
        """True when the server closes the connection within timeout s
        (the bytes it sent before are kept in self.buf)."""
        end = time.time() + timeout
        while time.time() < end:
            self.s.settimeout(max(0.05, end - time.time()))
            try:
                d = self.s.recv(1 << 16)
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError):
                return True
            if not d:
                return True
            self.buf += d
        return False


def encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, int):
            a = str(a)
        if isinstance(a, str):
            a = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)
