#!/usr/bin/env python3
"""Helper of bench/gc.sh: fills a registry with small images and deletes some of them.

  gcload.py push PORT FIRST COUNT BLOBS THREADS OUT   push images FIRST..FIRST+COUNT-1, each a
      config and BLOBS-1 layers of 64 random bytes, tagged t<i> in repository gc/r<i % 100>,
      over keep-alive connections from THREADS threads; writes "repo digest" lines to OUT and
      prints the seconds it took.
  gcload.py delete PORT IN EVERY                        DELETE by digest every EVERY-th manifest
      listed in IN (so 10 deletes 10%); prints how many.
"""
import hashlib
import http.client
import json
import os
import sys
import threading
import time


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def request(conn, method, path, body=None, headers=None):
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, resp.getheader("Location"), data


def push_one(conn, i, blobs):
    repo = f"gc/r{i % 100}"
    descs = []
    for b in range(blobs):
        data = os.urandom(64)
        digest = sha(data)
        # One request where the registry takes a monolithic POST (berth); else, as
        # distribution wants, an empty POST and a PUT with the bytes.
        status, location, text = request(conn, "POST", f"/v2/{repo}/blobs/uploads/?digest={digest}", data,
                                         {"Content-Length": str(len(data))})
        if status == 202:
            sep = "&" if "?" in location else "?"
            path = location.split("://", 1)[-1]
            path = path[path.index("/"):] if not location.startswith("/") else location
            status, _, text = request(conn, "PUT", f"{path}{sep}digest={digest}", data,
                                      {"Content-Length": str(len(data))})
        if status != 201:
            raise SystemExit(f"blob push to {repo}: {status} {text[:200]!r}")
        kind = "application/vnd.oci.image.config.v1+json" if b == 0 else "application/vnd.oci.image.layer.v1.tar"
        descs.append({"mediaType": kind, "digest": digest, "size": len(data)})
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": descs[0], "layers": descs[1:]}).encode()
    status, _, text = request(conn, "PUT", f"/v2/{repo}/manifests/t{i}", manifest,
                              {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    if status != 201:
        raise SystemExit(f"manifest push to {repo}: {status} {text[:200]!r}")
    return repo, sha(manifest)


def push(port, first, count, blobs, threads, out):
    results, errors = [], []
    lock = threading.Lock()
    todo = list(range(first, first + count))

    def work():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                if not todo:
                    return
                i = todo.pop()
            try:
                r = push_one(conn, i, blobs)
            except BaseException as e:  # noqa: BLE001 - reported below
                with lock:
                    errors.append(str(e))
                return
            with lock:
                results.append(r)

    start = time.monotonic()
    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    took = time.monotonic() - start
    if errors:
        raise SystemExit(errors[0])
    with open(out, "w") as f:
        for repo, digest in results:
            f.write(f"{repo} {digest}\n")
    print(f"{took:.3f}")


def delete(port, path, every):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    n = 0
    with open(path) as f:
        lines = [line.split() for line in f if line.strip()]
    for k, (repo, digest) in enumerate(lines):
        if k % every:
            continue
        status, _, text = request(conn, "DELETE", f"/v2/{repo}/manifests/{digest}")
        if status != 202:
            raise SystemExit(f"delete {repo}@{digest}: {status} {text[:200]!r}")
        n += 1
    print(n)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "push":
        push(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7])
    elif cmd == "delete":
        delete(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
    else:
        raise SystemExit(__doc__)
