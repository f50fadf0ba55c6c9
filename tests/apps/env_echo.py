"""A WSGI app answering the GREETING, TARGET and FROM_PARENT environment variables."""

import os


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    keys = ("GREETING", "TARGET", "FROM_PARENT")
    return [" ".join(f"{k}={os.environ.get(k)}" for k in keys).encode()]
