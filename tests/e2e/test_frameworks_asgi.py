"""Real ASGI frameworks served unchanged by the asyncio worker (both parsers):
Starlette (routes, lifespan state, WebSocket echo), FastAPI (JSON, streaming), Django ASGI."""

from __future__ import annotations

import json
import socket
import textwrap
from pathlib import Path

import pytest
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, TextMessage

from tests.support.http_client import http_get, read_responses
from tests.support.process import reclusterd
from tests.support.ws_client import WSClient

PARSERS = ["httptools", "h11"]

STARLETTE = '''
import contextlib
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute

@contextlib.asynccontextmanager
async def lifespan(app):
    yield {"greeting": "hello from lifespan"}

async def home(request):
    return PlainTextResponse(request.state.greeting)

async def items(request):
    return JSONResponse({"id": int(request.path_params["item_id"]),
                         "q": request.query_params.get("q")})

async def echo(ws):
    await ws.accept()
    while True:
        msg = await ws.receive()
        if msg["type"] == "websocket.disconnect":
            return
        if msg.get("text") is not None:
            await ws.send_text("echo: " + msg["text"])
        else:
            await ws.send_bytes(msg["bytes"][::-1])

app = Starlette(routes=[Route("/", home), Route("/items/{item_id}", items),
                        WebSocketRoute("/ws", echo)], lifespan=lifespan)
'''

FASTAPI = '''
import asyncio
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

app = FastAPI()

class Item(BaseModel):
    name: str
    price: float

@app.get("/items/{item_id}")
async def read_item(item_id: int, q: str | None = None):
    return {"item_id": item_id, "q": q}

@app.post("/items")
async def create_item(item: Item):
    return {"name": item.name, "price_with_tax": round(item.price * 1.2, 2)}

@app.get("/sync")
def sync_route():
    return {"sync": True}

@app.get("/stream")
async def stream():
    async def gen():
        for i in range(5):
            yield f"line {i}\\n"
            await asyncio.sleep(0.01)
    return StreamingResponse(gen(), media_type="text/plain")
'''

DJANGO = '''
import django
from django.conf import settings

settings.configure(
    DEBUG=False, SECRET_KEY="test", ROOT_URLCONF=__name__, ALLOWED_HOSTS=["*"],
    MIDDLEWARE=["django.middleware.common.CommonMiddleware"], INSTALLED_APPS=[],
)
django.setup()

import json
from django.http import JsonResponse, HttpResponse, StreamingHttpResponse
from django.urls import path
from django.core.asgi import get_asgi_application

def hello(request):
    return HttpResponse("hello from django " + request.method)

async def echo(request):
    return JsonResponse({"got": json.loads(request.body), "path": request.path,
                         "q": request.GET.get("q")})

def stream(request):
    return StreamingHttpResponse(b"chunk%d;" % i for i in range(4))

urlpatterns = [path("", hello), path("echo/", echo), path("stream/", stream)]
app = get_asgi_application()
'''


def serve(tmp_path: Path, name: str, source: str, http: str):  # type: ignore[no-untyped-def]
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    srv = reclusterd(f"{name}:app", "--workers", "1", "--http", http, "--chdir", str(tmp_path))
    return srv


def post_json(port: int, path: str, obj: object) -> tuple[int, bytes]:
    body = json.dumps(obj).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body))
        (r,), _ = read_responses(s, ["POST"])
    return r.status, r.body


@pytest.mark.parametrize("http", PARSERS)
def test_starlette_routes_lifespan_and_websocket(tmp_path: Path, http: str) -> None:
    with serve(tmp_path, "star", STARLETTE, http) as srv:
        srv.wait_ready()
        assert http_get(srv.port, "/")[2] == b"hello from lifespan"
        status, headers, body = http_get(srv.port, "/items/42?q=abc")
        assert status == 200 and headers["content-type"] == "application/json"
        assert json.loads(body) == {"id": 42, "q": "abc"}
        assert http_get(srv.port, "/missing")[0] == 404
        with WSClient(srv.port, "/ws") as ws:
            assert isinstance(ws.next_event(), AcceptConnection)
            ws.send(TextMessage(data="hi"))
            ev = ws.next_event()
            assert isinstance(ev, TextMessage) and ev.data == "echo: hi"
            ws.send(BytesMessage(data=b"abc"))
            ev = ws.next_event()
            assert isinstance(ev, BytesMessage) and ev.data == b"cba"
            ws.send(CloseConnection(code=1000))
            assert isinstance(ws.next_event(), CloseConnection)


@pytest.mark.parametrize("http", PARSERS)
def test_fastapi_json_and_streaming(tmp_path: Path, http: str) -> None:
    with serve(tmp_path, "fast", FASTAPI, http) as srv:
        srv.wait_ready()
        status, _, body = http_get(srv.port, "/items/5?q=x")
        assert status == 200 and json.loads(body) == {"item_id": 5, "q": "x"}
        assert post_json(srv.port, "/items", {"name": "pen", "price": 10}) == \
            (200, b'{"name":"pen","price_with_tax":12.0}')
        status, body = post_json(srv.port, "/items", {"name": "pen"})
        assert status == 422 and b"price" in body
        assert json.loads(http_get(srv.port, "/sync")[2]) == {"sync": True}
        status, headers, body = http_get(srv.port, "/stream")
        assert status == 200 and headers.get("transfer-encoding") == "chunked"
        assert body == b"".join(b"line %d\n" % i for i in range(5))


@pytest.mark.parametrize("http", PARSERS)
def test_django_asgi(tmp_path: Path, http: str) -> None:
    with serve(tmp_path, "dj", DJANGO, http) as srv:
        srv.wait_ready()
        status, _, body = http_get(srv.port, "/")
        assert (status, body) == (200, b"hello from django GET")
        status, body = post_json(srv.port, "/echo/?q=1", {"a": [1, 2]})
        assert status == 200
        assert json.loads(body) == {"got": {"a": [1, 2]}, "path": "/echo/", "q": "1"}
        assert http_get(srv.port, "/stream/")[2] == b"chunk0;chunk1;chunk2;chunk3;"
        assert http_get(srv.port, "/nope/")[0] == 404
