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

import http.client
import os
import sys
import time
from urllib.parse import urlsplit


def request(conn, method, path, headers, body_file=None, length=0):
    """One request on `conn`; a body is sent from `body_file` with sendfile. Returns the
    location of a 202 answer."""
    conn.putrequest(method, path, skip_accept_encoding=True)
    for k, v in {**headers, "Content-Length": str(length)}.items():
        conn.putheader(k, v)
    conn.endheaders()
    sent = 0
    while sent < length:
        n = os.sendfile(conn.sock.fileno(), body_file.fileno(), sent, length - sent)
        if n == 0:
            raise SystemExit(f"{body_file.name}: shorter than {length} bytes")
        sent += n
    answer = conn.getresponse()
    body = answer.read()
    location = answer.getheader("Location")
    if answer.status != 202 or not location:
        raise SystemExit(f"{method} {path} answered {answer.status}: {body[:300]!r}")
    parts = urlsplit(location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def main():
    port, repo, files = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.connect()
    t0 = time.monotonic()
    path = request(conn, "POST", f"/v2/{repo}/blobs/uploads/", {})
    offset = 0
    for name in files:
        with open(name, "rb") as f:
            length = os.fstat(f.fileno()).st_size
            headers = {"Content-Range": f"{offset}-{offset + length - 1}", "Content-Type": "application/octet-stream"}
            path = request(conn, "PATCH", path, headers, f, length)
        offset += length
    elapsed = time.monotonic() - t0
    print(f"{elapsed:.6f} http://127.0.0.1:{port}{path}")


if __name__ == "__main__":
    main()
