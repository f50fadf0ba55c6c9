#!/usr/bin/env python3
"""Micro-benchmark of reclusterd's sans-IO HTTP layer: CPU µs per request, no sockets.

    .venv/bin/python loadtests/micro.py            # from the repository root
    .venv/bin/python loadtests/micro.py 100000     # more calls per step (default 20000)

Feeds the request wrk sends (GET /hello with Host) through `make_parser(...).feed()` and
builds the hello response with `Response(...)`, in one thread, timed with the process
CPU clock, so a busy machine barely moves the numbers. The same work done by bare
httptools with no-op callbacks and a pre-built response is the floor to compare with.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httptools  # noqa: E402

from reclusterd.http import Limits, Request, Response, make_parser  # noqa: E402

WRK_GET = b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n"
BROWSER_GET = (b"GET /search?q=reclusterd&page=2 HTTP/1.1\r\nHost: example.test\r\n"
               b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0\r\n"
               b"Accept: text/html,application/xhtml+xml,*/*;q=0.8\r\n"
               b"Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n"
               b"Cookie: sid=0123456789abcdef; theme=dark\r\nConnection: keep-alive\r\n\r\n")
HEADERS = [(b"Content-Type", b"text/plain"), (b"Content-Length", b"12")]
CANNED = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\n"
          b"Hello world!")


def per_call_us(fn: Callable[[], object], n: int) -> float:
    """Best of 5 runs of `n` calls, CPU µs per call."""
    best = float("inf")
    for _ in range(5):
        t0 = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, time.process_time() - t0)
    return best * 1e6 / n


class _Noop:
    def on_url(self, url: bytes) -> None:
        pass

    def on_header(self, name: bytes, value: bytes) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("calls", nargs="?", type=int, default=20000,
                    help="calls per timed step (default 20000)")
    n = ap.parse_args(argv).calls
    limits = Limits(request_line=8190, fields=100, field_size=8190, body=0)
    rows: list[tuple[str, float]] = []
    for label, raw in (("wrk GET", WRK_GET), ("browser GET, 7 headers", BROWSER_GET)):
        for kind in ("httptools", "h11"):
            parser = make_parser(kind, limits)  # one parser, keep-alive: many requests
            rows.append((f"parse {label} ({kind}, reused parser)",
                         per_call_us(lambda p=parser, r=raw: p.feed(r), n)))  # type: ignore
        rows.append((f"parse {label} (new httptools parser per request)",
                     per_call_us(lambda r=raw: make_parser("httptools", limits).feed(r), n)))
        bare = httptools.HttpRequestParser(_Noop())
        rows.append((f"floor: bare httptools, no-op callbacks ({label})",
                     per_call_us(lambda b=bare, r=raw: b.feed_data(r), n)))
    req = next(e for e in make_parser("httptools", limits).feed(WRK_GET)
               if isinstance(e, Request))

    def respond() -> bytes:
        r = Response(req, 200, list(HEADERS))
        return r.head + r.body(b"Hello world!") + r.end()

    rows.append(("Response(200, 2 headers) head+body+end", per_call_us(respond, n)))
    rows.append(("floor: canned response bytes join", per_call_us(
        lambda: b"".join((CANNED[:-12], b"Hello world!")), n)))
    width = max(len(r[0]) for r in rows)
    print(f"{'step':<{width}}  CPU µs/request")
    for label, us in rows:
        print(f"{label:<{width}}  {us:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
