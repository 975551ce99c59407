#!/usr/bin/env python3
"""bench/s3shim.py — a counting HTTP proxy in front of an S3 server, for bench/registry.sh --s3.

It does two jobs for the registry that talks through it (CNCF distribution 2.8.2):

- counts every request by S3 operation, with the body bytes sent each way, and prints the
  counts when asked: `GET /__shim/counts` (answered by the shim, never forwarded, not counted)
  returns lines `operation requests bytes_up bytes_down`;
- answers the two multipart listings itself. distribution's S3 driver sends
  `ListMultipartUploads`, then `ListParts`, before every write to an upload it resumes (each
  PATCH and the final PUT). s3s-fs 0.14.1 answers the first with 501 Not Implemented, and the
  second without `IsTruncated` or ETags and in directory order, on which distribution crashes.
  The shim answers both from what it saw pass through: uploads created and not yet completed
  or aborted, and their parts (number, size, the ETag s3s-fs returned). Every other request
  goes to the S3 server unchanged;
- makes create-only writes atomic. s3s-fs 0.14.1 checks `If-None-Match: *` and then writes,
  so two such PUTs of one key at once can both succeed, where S3 lets exactly one through
  (berth's collector lease and mirror claims rely on that). The shim lets one create-only PUT
  at a time reach the server, from its request until its whole response has come back.

Requests pass through byte for byte (same Host header, so the client's SigV4 signature still
holds). Bodies move with splice(2), kernel to kernel, so the shim adds little to a transfer;
it reads the few responses it learns from (CreateMultipartUpload, UploadPart) into memory.
Requests must carry a Content-Length (aws-sdk-go's do); a chunked request body closes the
connection. HTTP/1.1 without pipelining, which is how aws-sdk-go and curl talk; a client that
withholds a body after an `Expect: 100-continue` the server refused is not handled (neither
aws-sdk-go nor s3s-fs does that on the requests this benchmark makes).

Usage: s3shim.py --upstream PORT [--port PORT] ; prints "listening on 127.0.0.1:PORT".
Binds 127.0.0.1 only. Stops on SIGTERM or SIGINT.
"""

import argparse
import datetime
import fcntl
import os
import re
import select
import signal
import socket
import sys
import threading
import urllib.parse
from xml.sax.saxutils import escape

F_SETPIPE_SZ = 1031
CHUNK = 1 << 20
UPLOAD_ID = re.compile(rb"<UploadId>([^<]+)</UploadId>")
ETAG = re.compile(rb"\r\n[Ee][Tt][Aa][Gg]: *([^\r]+)\r\n")


class Stats:
    """Requests and body bytes by operation, and the multipart uploads in progress."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ops = {}  # operation -> [requests, bytes_up, bytes_down]
        # (bucket, key) -> {upload_id: (initiated, {part_number: [size, etag]})}
        self.uploads = {}
        # Held by one create-only PUT at a time (see the module's doc).
        self.create_lock = threading.Lock()

    def count(self, op, up=0, down=0, requests=1):
        with self.lock:
            row = self.ops.setdefault(op, [0, 0, 0])
            row[0] += requests
            row[1] += up
            row[2] += down

    def created(self, bucket, key, upload_id):
        with self.lock:
            self.uploads.setdefault((bucket, key), {})[upload_id] = (now(), {})

    def ended(self, bucket, key, upload_id):
        with self.lock:
            self.uploads.get((bucket, key), {}).pop(upload_id, None)

    def part(self, bucket, key, upload_id, number, size=None, etag=None):
        """Records a part's size (when its upload is sent) or its ETag (when answered)."""
        with self.lock:
            upload = self.uploads.get((bucket, key), {}).get(upload_id)
            if upload is None:
                return
            row = upload[1].setdefault(number, [0, None])
            if size is not None:
                row[0], row[1] = size, None
            if etag is not None:
                row[1] = etag

    def listing(self, bucket, prefix):
        with self.lock:
            return sorted(
                (key, uid, stamp)
                for (b, key), ids in self.uploads.items()
                if b == bucket and key.startswith(prefix)
                for uid, (stamp, _) in ids.items()
            )

    def parts(self, bucket, key, upload_id):
        with self.lock:
            upload = self.uploads.get((bucket, key), {}).get(upload_id)
            return None if upload is None else sorted((n, s, e) for n, (s, e) in upload[1].items())

    def report(self):
        with self.lock:
            return "".join(f"{op} {r[0]} {r[1]} {r[2]}\n" for op, r in sorted(self.ops.items()))


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def operation(method, path, query, headers):
    """The S3 operation of a path-style request."""
    parts = path.lstrip("/").split("/", 1)
    bucket = urllib.parse.unquote(parts[0])
    key = urllib.parse.unquote(parts[1]) if len(parts) > 1 else ""
    if not bucket:
        return "ListBuckets", bucket, key
    if not key:
        if method == "GET":
            if "uploads" in query:
                return "ListMultipartUploads", bucket, key
            if query.get("list-type") == ["2"]:
                return "ListObjectsV2", bucket, key
            if "location" in query:
                return "GetBucketLocation", bucket, key
            return "ListObjects", bucket, key
        if method == "POST" and "delete" in query:
            return "DeleteObjects", bucket, key
        return {"HEAD": "HeadBucket", "PUT": "CreateBucket", "DELETE": "DeleteBucket"}.get(method, method + "Bucket"), bucket, key
    copy = "x-amz-copy-source" in headers
    if method == "PUT":
        if "uploadId" in query:
            return ("UploadPartCopy" if copy else "UploadPart"), bucket, key
        return ("CopyObject" if copy else "PutObject"), bucket, key
    if method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload", bucket, key
        if "uploadId" in query:
            return "CompleteMultipartUpload", bucket, key
    if method == "GET":
        return ("ListParts" if "uploadId" in query else "GetObject"), bucket, key
    if method == "HEAD":
        return "HeadObject", bucket, key
    if method == "DELETE":
        return ("AbortMultipartUpload" if "uploadId" in query else "DeleteObject"), bucket, key
    return method + "Object", bucket, key


def new_pipe():
    r, w = os.pipe()
    try:
        fcntl.fcntl(w, F_SETPIPE_SZ, CHUNK)
    except OSError:
        pass
    return r, w


def splice_exact(src, dst, n, pipe):
    """Moves exactly n bytes from socket src to socket dst through pipe; False on EOF."""
    r, w = pipe
    while n > 0:
        got = os.splice(src.fileno(), w, min(n, CHUNK))
        if got == 0:
            return False
        n -= got
        while got > 0:
            got -= os.splice(r, dst.fileno(), got)
    return True


class Connection:
    def __init__(self, client, upstream_port, stats):
        self.client = client
        self.stats = stats
        self.upstream = socket.create_connection(("127.0.0.1", upstream_port))
        for s in (client, self.upstream):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.send_lock = threading.Lock()
        # What the response now coming back answers: (operation, bucket, key[, upload id, part
        # number]) of the last request forwarded. No pipelining, so one at a time.
        self.pending = None
        # Set while this connection's create-only PUT holds stats.create_lock, until its
        # response has been relayed (or the connection closes).
        self.create_only = False
        self.create_guard = threading.Lock()
        self.closed = threading.Event()
        self.alive = 2  # threads still using the sockets; the last one out closes them

    def release_create(self):
        with self.create_guard:
            if self.create_only:
                self.create_only = False
                self.stats.create_lock.release()

    def close(self):
        self.closed.set()
        self.release_create()
        for s in (self.client, self.upstream):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with self.send_lock:
            self.alive -= 1
            if self.alive == 0:
                self.client.close()
                self.upstream.close()

    def requests(self):
        """Client to upstream: parse each request head, count it, forward it with its body."""
        buf = b""
        pipe = new_pipe()
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = self.client.recv(65536)
                    if not data:
                        return
                    buf += data
                    if len(buf) > 1 << 20:
                        return
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    return
                length = int(headers.get("content-length", "0") or 0)
                url = urllib.parse.urlsplit(target)
                if url.path == "/__shim/counts":
                    self.answer(200, "text/plain", self.stats.report().encode())
                    continue
                query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
                op, bucket, key = operation(method, url.path, query, headers)
                self.stats.count(op, up=length)
                if op in ("ListMultipartUploads", "ListParts"):
                    if length:  # a listing has no body
                        return
                    if op == "ListMultipartUploads":
                        self.list_uploads(bucket, query)
                    else:
                        self.list_parts(bucket, key, query["uploadId"][0])
                    continue
                if op in ("CompleteMultipartUpload", "AbortMultipartUpload"):
                    self.stats.ended(bucket, key, query["uploadId"][0])
                if op == "UploadPart":
                    self.stats.part(bucket, key, query["uploadId"][0], int(query["partNumber"][0]), size=length)
                    self.pending = (op, bucket, key, query["uploadId"][0], int(query["partNumber"][0]))
                else:
                    self.pending = (op, bucket, key)
                if op == "PutObject" and headers.get("if-none-match") == "*":
                    self.stats.create_lock.acquire()
                    with self.create_guard:
                        self.create_only = True
                self.upstream.sendall(head + b"\r\n\r\n")
                first, buf = buf[:length], buf[length:]
                if first:
                    self.upstream.sendall(first)
                if length > len(first) and not splice_exact(self.client, self.upstream, length - len(first), pipe):
                    return
        except (OSError, ValueError):
            return
        finally:
            os.close(pipe[0])
            os.close(pipe[1])
            self.close()

    def responses(self):
        """Upstream to client: relay bytes, reading the upload id of a CreateMultipartUpload
        and the ETag of an UploadPart out of their answers on the way."""
        pipe = new_pipe()
        seen = b""
        try:
            while not self.closed.is_set():
                select.select([self.upstream], [], [])
                pending = self.pending
                if self.create_only:
                    if not self.relay_whole_response():
                        return
                    self.release_create()
                    continue
                if pending and pending[0] in ("CreateMultipartUpload", "UploadPart"):
                    data = self.upstream.recv(65536)
                    if not data:
                        return
                    seen += data
                    if pending[0] == "CreateMultipartUpload":
                        m = UPLOAD_ID.search(seen)
                        if m:
                            self.stats.created(pending[1], pending[2], m.group(1).decode())
                    else:
                        m = ETAG.search(seen)
                        if m:
                            self.stats.part(*pending[1:], etag=m.group(1).decode())
                    if m:
                        self.pending = (pending[0],)
                        seen = b""
                    with self.send_lock:
                        self.client.sendall(data)
                    self.stats.count(pending[0], down=len(data), requests=0)
                    continue
                seen = b""
                got = os.splice(self.upstream.fileno(), pipe[1], CHUNK)
                if got == 0:
                    return
                if pending:
                    self.stats.count(pending[0], down=got, requests=0)
                with self.send_lock:
                    while got > 0:
                        got -= os.splice(pipe[0], self.client.fileno(), got)
        except OSError:
            return
        finally:
            os.close(pipe[0])
            os.close(pipe[1])
            self.close()

    def relay_whole_response(self):
        """Relays one response (head and a Content-Length or chunked body) to the client;
        False on EOF. Only for the small answers to create-only PUTs."""
        seen = b""
        while True:
            head_end = seen.find(b"\r\n\r\n")
            if head_end >= 0:
                head = seen[:head_end].decode("latin-1").lower()
                body = seen[head_end + 4 :]
                m = re.search(r"\r\ncontent-length:\s*(\d+)", head)
                if m and len(body) >= int(m.group(1)):
                    break
                if not m and ("chunked" not in head or body.endswith(b"0\r\n\r\n")):
                    break
            data = self.upstream.recv(65536)
            if not data:
                return False
            seen += data
            with self.send_lock:
                self.client.sendall(data)
        self.stats.count(self.pending[0] if self.pending else "PutObject", down=len(seen), requests=0)
        return True

    def answer(self, status, ctype, body):
        reason = {200: "OK", 404: "Not Found"}.get(status, "Error")
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            f"x-amz-request-id: s3shim\r\n\r\n"
        ).encode()
        with self.send_lock:
            self.client.sendall(head + body)

    def list_uploads(self, bucket, query):
        prefix = query.get("prefix", [""])[0]
        uploads = "".join(
            f"<Upload><Key>{escape(k)}</Key><UploadId>{escape(u)}</UploadId><Initiated>{t}</Initiated>"
            f"<StorageClass>STANDARD</StorageClass></Upload>"
            for k, u, t in self.stats.listing(bucket, prefix)
        )
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Bucket>{escape(bucket)}</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker>"
            f"<Prefix>{escape(prefix)}</Prefix><MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated>"
            f"{uploads}</ListMultipartUploadsResult>"
        ).encode()
        self.answer(200, "application/xml", body)

    def list_parts(self, bucket, key, upload_id):
        parts = self.stats.parts(bucket, key, upload_id)
        if parts is None:
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchUpload</Code>'
                "<Message>The specified upload does not exist.</Message></Error>"
            ).encode()
            self.answer(404, "application/xml", body)
            return
        rows = "".join(
            f"<Part><PartNumber>{n}</PartNumber><LastModified>{now()}</LastModified>"
            f"<ETag>{escape(e or '')}</ETag><Size>{size}</Size></Part>"
            for n, size, e in parts
        )
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<ListPartsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Bucket>{escape(bucket)}</Bucket><Key>{escape(key)}</Key><UploadId>{escape(upload_id)}</UploadId>"
            "<PartNumberMarker>0</PartNumberMarker><NextPartNumberMarker>"
            f"{parts[-1][0] if parts else 0}</NextPartNumberMarker><MaxParts>1000</MaxParts>"
            f"<IsTruncated>false</IsTruncated>{rows}</ListPartsResult>"
        ).encode()
        self.answer(200, "application/xml", body)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--upstream", type=int, required=True, help="port of the S3 server on 127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="port to listen on (default: any free one)")
    args = p.parse_args()
    stats = Stats()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(256)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))
    print(f"listening on 127.0.0.1:{listener.getsockname()[1]}", flush=True)
    while True:
        client, _ = listener.accept()
        try:
            conn = Connection(client, args.upstream, stats)
        except OSError as e:
            print(f"s3shim: cannot reach the upstream: {e}", file=sys.stderr, flush=True)
            client.close()
            continue
        threading.Thread(target=conn.requests, daemon=True).start()
        threading.Thread(target=conn.responses, daemon=True).start()


if __name__ == "__main__":
    main()
