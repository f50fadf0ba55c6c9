"""Shared state across workers: sessions and a counter in Redis, next to a naive dict version.

`app` (WSGI, redis), `asgi` (ASGI, redis.asyncio), `naive` (WSGI, module-level dict).
"""
