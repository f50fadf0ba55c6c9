"""A FastAPI app for the HTTP/2 tests: the same answers are expected over h1 and h2."""

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, StreamingResponse

app = FastAPI()


@app.get("/", response_class=PlainTextResponse)
async def hello(request: Request) -> str:
    return f"hello {request.scope['http_version']} {request.url.scheme}"


@app.post("/echo")
async def echo(request: Request) -> StreamingResponse:
    async def body():  # type: ignore[no-untyped-def]
        async for chunk in request.stream():
            yield chunk
    return StreamingResponse(body(), media_type="application/octet-stream")


@app.get("/big")
async def big(n: int = 1_000_000) -> StreamingResponse:
    async def body():  # type: ignore[no-untyped-def]
        for i in range(0, n, 65536):
            yield b"x" * min(65536, n - i)
    return StreamingResponse(body(), media_type="application/octet-stream")


@app.get("/client")
async def client(request: Request) -> dict[str, object]:
    return {"client": request.client.host if request.client else None,
            "scheme": request.url.scheme}
