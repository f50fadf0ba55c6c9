"""A WSGI probe app answering JSON: pid, REMOTE_ADDR, wsgi.url_scheme, path."""

import json
import os


def app(environ, start_response):
    body = json.dumps({"pid": os.getpid(), "remote_addr": environ.get("REMOTE_ADDR"),
                       "scheme": environ.get("wsgi.url_scheme"),
                       "path": environ.get("PATH_INFO")}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
