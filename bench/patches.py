#!/usr/bin/env python3
"""Helper of bench/lib.sh's push_chunked: the start and the PATCHes of a chunked push over one
keep-alive connection, as docker, containerd and skopeo hold theirs (Go's HTTP client keeps
connections open), so that the push is not timed with a client process started per chunk.

    patches.py PORT REPO CHUNK_FILE...

POST /v2/REPO/blobs/uploads/, then one PATCH per file, in order, with `Content-Range:
start-end`, `Content-Length` and `Content-Type: application/octet-stream`, each sent to the
Location the previous answer gave; the body goes from the file to the socket by sendfile(2),
so the client copies nothing. No `Expect: 100-continue`. Prints the seconds from the POST to
the last answer and the upload's absolute URL, on one line. Any answer but 202 ends it with
exit 1 and the answer on stderr.
"""

import os
import socket
import sys
import time
from urllib.parse import urlsplit


class Conn:
    def __init__(self, port):
        self.port = port
        self.sock = None
        self.buf = b""

    def open(self):
        self.sock = socket.create_connection(("127.0.0.1", self.port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def request(self, method, path, headers, body_file=None, length=0):
        if self.sock is None:
            self.open()
        head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}", f"Content-Length: {length}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        if body_file is not None:
            sent = 0
            while sent < length:
                n = os.sendfile(self.sock.fileno(), body_file.fileno(), sent, length - sent)
                if n == 0:
                    raise SystemExit(f"{body_file.name}: shorter than {length} bytes")
                sent += n
        return self.response()

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise SystemExit(f"127.0.0.1:{self.port} closed the connection")
        self.buf += data

    def response(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = self._chunked()
        else:
            n = int(headers.get("content-length", "0"))
            while len(self.buf) < n:
                self._fill()
            body, self.buf = self.buf[:n], self.buf[n:]
        if headers.get("connection", "").lower() == "close":
            self.sock.close()
            self.sock = None
        return status, headers, body

    def _chunked(self):
        body = b""
        while True:
            while b"\r\n" not in self.buf:
                self._fill()
            size_line, self.buf = self.buf.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(self.buf) < size + 2:
                self._fill()
            body += self.buf[:size]
            self.buf = self.buf[size + 2:]
            if size == 0:
                return body


def path_of(location):
    parts = urlsplit(location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def expect_202(what, answer):
    status, headers, body = answer
    if status != 202 or "location" not in headers:
        raise SystemExit(f"{what} answered {status}: {body[:300]!r}")
    return headers["location"]


def main():
    port, repo, files = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    conn = Conn(port)
    conn.open()
    t0 = time.monotonic()
    location = expect_202("POST", conn.request("POST", f"/v2/{repo}/blobs/uploads/", {}))
    offset = 0
    for name in files:
        with open(name, "rb") as f:
            length = os.fstat(f.fileno()).st_size
            headers = {"Content-Range": f"{offset}-{offset + length - 1}", "Content-Type": "application/octet-stream"}
            location = expect_202(f"PATCH {offset}-{offset + length - 1}",
                                  conn.request("PATCH", path_of(location), headers, f, length))
        offset += length
    elapsed = time.monotonic() - t0
    absolute = location if location.startswith("http") else f"http://127.0.0.1:{port}{path_of(location)}"
    print(f"{elapsed:.6f} {absolute}")


if __name__ == "__main__":
    main()
