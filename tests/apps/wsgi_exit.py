"""A WSGI app whose /exit calls sys.exit(1) and /kbd raises KeyboardInterrupt; else 200 "ok"."""

import sys


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/exit":
        sys.exit(1)
    if path == "/kbd":
        raise KeyboardInterrupt
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]
