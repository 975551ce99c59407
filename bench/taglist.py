#!/usr/bin/env python3
"""Time `GET /v2/<repo>/tags/list` against one registry; used by bench/registry.sh.

Two measurements over one keep-alive connection, each bounded by a request count and a
time budget:

* full: the whole list in one request (no `n`), checked to hold exactly --expect tags;
* paged: walks the list with `?n=PAGE`, following the `Link: <...>; rel="next"` header
  (or, without one, `last=<last tag>` while pages come back full), timing every request.
  A server that ignores `n` (distribution 2.8 does) is reported as `paged_supported=0`.

Prints `key=value` lines on stdout; times are milliseconds. Exit status 1 when a response
is not 200 or the tags are not the expected ones.
"""

import argparse
import http.client
import json
import re
import statistics
import sys
import time
import urllib.parse

LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


def pct(values, q):
    """The q-quantile (0..1) of values, nearest rank."""
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


class Client:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1:port."""

    def __init__(self, port):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def get(self, path):
        """GET path; returns (status, headers, body, seconds)."""
        t0 = time.perf_counter()
        self.conn.request("GET", path)
        resp = self.conn.getresponse()
        body = resp.read()
        elapsed = time.perf_counter() - t0
        return resp.status, resp.headers, body, elapsed


def fail(msg):
    print(f"error={msg}")
    sys.exit(1)


def walk(client, repo, page):
    """One paged walk; returns (tags, per-request seconds, requests, paging_supported)."""
    path = f"/v2/{repo}/tags/list?n={page}"
    tags, times = [], []
    supported = True
    while path:
        status, headers, body, elapsed = client.get(path)
        times.append(elapsed)
        if status != 200:
            fail(f"paged GET {path} answered {status}: {body[:200]!r}")
        got = json.loads(body).get("tags") or []
        if len(got) > page:
            supported = False  # the server ignored n
        tags.extend(got)
        if not supported:
            break
        link = headers.get("Link")
        m = LINK_NEXT.search(link) if link else None
        if m:
            nxt = urllib.parse.urlsplit(m.group(1))
            path = nxt.path + ("?" + nxt.query if nxt.query else "")
        elif len(got) == page:
            path = f"/v2/{repo}/tags/list?n={page}&last={urllib.parse.quote(got[-1])}"
        else:
            path = None
        if len(times) > 100_000:
            fail("paged walk did not end")
    return tags, times, supported


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--repo", required=True)
    ap.add_argument("--expect", type=int, required=True, help="number of tags pushed")
    ap.add_argument("--page", type=int, default=100)
    ap.add_argument("--requests", type=int, default=200, help="max timed full-list requests")
    ap.add_argument("--walks", type=int, default=20, help="max timed paged walks")
    ap.add_argument("--budget", type=float, default=15.0, help="seconds per measurement")
    args = ap.parse_args()
    client = Client(args.port)
    full = f"/v2/{args.repo}/tags/list"

    status, _, body, _ = client.get(full)
    if status != 200:
        fail(f"GET {full} answered {status}: {body[:200]!r}")
    tags = json.loads(body).get("tags") or []
    if len(tags) != args.expect or len(set(tags)) != args.expect:
        fail(f"full list has {len(tags)} tags ({len(set(tags))} distinct), expected {args.expect}")
    print(f"full_bytes={len(body)}")

    for _ in range(3):  # warm up
        client.get(full)
    times, deadline = [], time.monotonic() + args.budget
    while len(times) < args.requests and time.monotonic() < deadline:
        status, _, _, elapsed = client.get(full)
        if status != 200:
            fail(f"GET {full} answered {status}")
        times.append(elapsed)
    print(f"full_requests={len(times)}")
    print(f"full_median_ms={statistics.median(times) * 1e3:.3f}")
    print(f"full_p90_ms={pct(times, 0.9) * 1e3:.3f}")

    paged, _, supported = walk(client, args.repo, args.page)
    if supported and sorted(paged) != sorted(tags):
        fail(f"paged walk returned {len(paged)} tags ({len(set(paged))} distinct), "
             f"expected the {len(tags)} of the full list")
    print(f"paged_supported={int(supported)}")
    page_times, walk_times, deadline = [], [], time.monotonic() + args.budget
    while len(walk_times) < args.walks and time.monotonic() < deadline:
        _, t, _ = walk(client, args.repo, args.page)
        page_times.extend(t)
        walk_times.append(sum(t))
    print(f"paged_walks={len(walk_times)}")
    print(f"paged_requests_per_walk={len(page_times) // len(walk_times)}")
    print(f"page_median_ms={statistics.median(page_times) * 1e3:.3f}")
    print(f"page_p90_ms={pct(page_times, 0.9) * 1e3:.3f}")
    print(f"walk_median_ms={statistics.median(walk_times) * 1e3:.3f}")


if __name__ == "__main__":
    main()
