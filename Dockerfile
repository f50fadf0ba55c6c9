# syntax=docker/dockerfile:1
# reclusterd container image.
#   docker build -t reclusterd .
#   docker run --rm -p 8000:8000 -p 9000:9000 reclusterd
# Your own app: COPY it into /app and override the command, e.g.
#   CMD ["reclusterd", "myapp:app", "--bind", "0.0.0.0:8000", "--status-bind", "0.0.0.0:9000"]
# Workers default to $WEB_CONCURRENCY, else the CPU count: set WEB_CONCURRENCY to match
# the container's CPU limit.

# ---- build: wheels for reclusterd and its dependencies (no compilers in the final image)
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY reclusterd ./reclusterd
RUN pip wheel --wheel-dir /wheels .

# ---- runtime
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app
COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links=/wheels reclusterd && rm -rf /wheels
WORKDIR /app
COPY --chown=app:app examples ./examples
USER app:app
EXPOSE 8000 9000
# The arbiter runs as PID 1: it handles TERM itself (graceful drain, exit 0) and reaps
# every child, so no init shim is needed.
STOPSIGNAL SIGTERM
# slim has no curl: ask the arbiter's /livez (status port) with the stdlib.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9000/livez', timeout=2).status == 200 else 1)"]
CMD ["reclusterd", "examples.hello:app", "--bind", "0.0.0.0:8000", "--status-bind", "0.0.0.0:9000"]
