# syntax=docker/dockerfile:1
# reclusterd container image.
#   docker build -t reclusterd .
#   docker run --rm -p 8000:8000 -p 9000:9000 reclusterd
# With buildah/podman, build with `--format docker`: the default OCI image format has no
# HEALTHCHECK, so it would be dropped (with a warning) from the image.
# Your own app: COPY it into /app and override the command, e.g.
#   CMD ["reclusterd", "myapp:app", "--bind", "0.0.0.0:8000", "--status-bind", "0.0.0.0:9000"]
# Workers default to $WEB_CONCURRENCY, else the CPU count: set WEB_CONCURRENCY to match
# the container's CPU limit.

# The base of both stages. Any image with python3 >= 3.11 and its venv module works (the
# tests build on a Debian bookworm base made from the host's packages: --build-arg BASE=...).
ARG BASE=python:3.11-slim

# ---- build: a venv with reclusterd and its dependencies (no compilers in the final image)
FROM ${BASE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
# `python3`, not `python`: Debian's python3 has no `python` alias (the venv has both).
RUN python3 -m venv /venv
WORKDIR /src
# Dependencies first, from pyproject.toml alone: editing a source file reuses this layer
# (and the pip cache mount keeps downloads out of every layer).
COPY pyproject.toml ./
RUN --mount=type=cache,target=/root/.cache/pip \
    python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/deps.txt \
 && /venv/bin/pip install -r /tmp/deps.txt
COPY README.md ./
COPY reclusterd ./reclusterd
RUN --mount=type=cache,target=/root/.cache/pip \
    /venv/bin/pip install --no-deps .

# ---- runtime: the venv copied over (same base image, so the venv's python link resolves)
FROM ${BASE}
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/venv/bin:$PATH
# uid/gid 10001 are in the regular range (UID_MIN..UID_MAX), so no --system: a system
# account above SYS_UID_MAX makes useradd warn.
RUN groupadd --gid 10001 app \
 && useradd --uid 10001 --gid app --no-create-home --no-log-init --home-dir /app \
      --shell /usr/sbin/nologin app
COPY --from=build /venv /venv
WORKDIR /app
COPY --chown=app:app examples ./examples
USER app:app
EXPOSE 8000 9000
# The arbiter runs as PID 1: it handles TERM itself (graceful drain, exit 0) and reaps
# every child, so no init shim is needed.
STOPSIGNAL SIGTERM
# slim has no curl: ask the arbiter's /livez (status port) with the stdlib. /livez fails
# once no worker has been ready for longer than --boot-timeout, so an app that cannot
# boot marks the container unhealthy.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9000/livez', timeout=2).status == 200 else 1)"]
CMD ["reclusterd", "examples.hello:app", "--bind", "0.0.0.0:8000", "--status-bind", "0.0.0.0:9000"]
