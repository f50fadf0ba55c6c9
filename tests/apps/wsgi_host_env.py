"""A WSGI app answering SERVER_NAME, SERVER_PORT, HTTP_HOST, PATH_INFO, QUERY_STRING as JSON."""

import json


def app(environ, start_response):
    keys = ("SERVER_NAME", "SERVER_PORT", "HTTP_HOST", "PATH_INFO", "QUERY_STRING")
    body = json.dumps({k: environ.get(k) for k in keys}).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
