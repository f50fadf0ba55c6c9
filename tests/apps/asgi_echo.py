"""An ASGI app answering the request as JSON for the conformance corpus (CGI-style header names)."""

import json
from urllib.parse import unquote_to_bytes


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        m = await receive()
        body += m.get("body", b"")
        if not m.get("more_body"):
            break
    headers, ctype, clen = {}, None, None
    for name, value in scope["headers"]:
        n, v = name.decode("latin-1"), value.decode("latin-1")
        if n == "content-type":
            ctype = v
        elif n == "content-length":
            clen = v
        elif "_" not in n:     # the WSGI rule the corpus expects (CGI names)
            key = n.upper().replace("-", "_")
            headers[key] = headers[key] + "," + v if key in headers else v
    data = {"method": scope["method"],
            "path": unquote_to_bytes(scope["raw_path"]).decode("latin-1"),
            "query": scope["query_string"].decode("latin-1"), "headers": headers,
            "content_type": ctype, "content_length": clen, "body": body.decode("latin-1")}
    out = json.dumps(data).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})
