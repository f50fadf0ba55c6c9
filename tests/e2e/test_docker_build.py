"""DOCKER e2e: the Dockerfile built for real with buildah (issue 11 item 12).

The image is built on a base made from the host's Debian packages (no registry here),
then run with chroot isolation on the host's network: its CMD and HEALTHCHECK, with the
listen addresses moved to ephemeral loopback ports, serve and pass as the non-root user,
and a source edit rebuilds without re-running the dependency install.
Deselect with `-m "not docker"`; skipped when buildah is not installed.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.buildah import (
    Buildah,
    Step,
    build_steps,
    context_files,
    store_lock,
    unavailable,
)
from tests.support.http_client import http_get
from tests.support.process import ROOT, Server, free_port, wait_for

REASON = unavailable()
pytestmark = [pytest.mark.docker, pytest.mark.timeout(480),
              pytest.mark.skipif(REASON is not None, reason=REASON or "")]

APP_UID = 10001             # the Dockerfile's `app` user
DEPS_STEP = "pip install -r"
CACHE_TAG = "localhost/reclusterd-cache"


@dataclass
class Built:
    buildah: Buildah
    context: Path
    base: str
    tag: str
    steps: list[Step]
    config: dict[str, Any]
    container: str


def source_dependent(step: Step, seen_copy: set[int]) -> bool:
    """Whether the step's layer changes with the sources: from the stage's first COPY of
    anything but pyproject.toml on (`seen_copy` collects the stages past that point)."""
    if step.instruction.startswith("COPY ") and "pyproject.toml" not in step.instruction:
        seen_copy.add(step.stage)
    return step.stage in seen_copy


def keep_cached(b: Buildah, steps: list[Step]) -> None:
    """Tag each stage's last source-independent layer (the dependency install in the
    build stage) so it stays as the cache: removing an image also removes its untagged
    parents."""
    last: dict[int, str] = {}
    seen: set[int] = set()
    for s in steps:
        if not source_dependent(s, seen):
            last[s.stage] = s.image
    for stage, image in last.items():
        b("tag", image, f"{CACHE_TAG}:stage{stage}")


def remove_image(b: Buildah, tag: str, steps: list[Step]) -> None:
    """Remove the built image and its source-dependent layers (the build stage's are no
    parents of the image): vfs stores every layer as a full copy, so they would pile up
    run after run."""
    b("rmi", tag, check=False)
    seen: set[int] = set()
    for image in reversed([s.image for s in steps if source_dependent(s, seen)]):
        b("rmi", image, check=False)    # already gone with `tag`: fine


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    b = Buildah()
    base = b.ensure_base()
    # Two suites on one machine share the store: one at a time from build to clean-up, so
    # one run's clean-up never removes a layer the other's build is reusing.
    with store_lock(b):
        yield from _built(b, base, tmp_path_factory)


def _built(b: Buildah, base: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    ctx = tmp_path_factory.mktemp("context")
    for name in context_files(ROOT / "Dockerfile"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, ctx / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, ctx / name)
    tag = f"localhost/reclusterd-test:{os.getpid()}"
    steps = build_steps(b.build(ctx, tag, base))
    keep_cached(b, steps)
    container = b("from", "--name", f"reclusterd-test-{os.getpid()}", tag).stdout.strip()
    try:
        yield Built(b, ctx, base, tag, steps, b.image_config(tag), container)
    finally:
        b("rm", container, check=False)
        remove_image(b, tag, steps)


def loopback(argv: list[str], ports: dict[str, int]) -> list[str]:
    """`argv` with every `IPv4:port` for a port in `ports` moved to 127.0.0.1 and the
    port given there (in the bind options and inside the HEALTHCHECK's URL alike)."""
    pattern = re.compile(r"\b\d+\.\d+\.\d+\.\d+:(\d+)\b")

    def move(m: re.Match[str]) -> str:
        port = m.group(1)
        return f"127.0.0.1:{ports[port]}" if port in ports else m.group(0)
    return [pattern.sub(move, a) for a in argv]


def test_image_keeps_user_cmd_and_healthcheck(built: Built) -> None:
    cfg = built.config
    assert cfg["User"].split(":")[0] == "app"
    assert cfg["Cmd"][0] == "reclusterd" and "--status-bind" in cfg["Cmd"]
    assert cfg["Healthcheck"]["Test"][0] == "CMD"   # --format docker kept it
    assert cfg["StopSignal"] == "SIGTERM"
    assert set(cfg["ExposedPorts"]) == {"8000/tcp", "9000/tcp"}


def test_cmd_serves_as_non_root_and_healthcheck_passes(built: Built) -> None:
    b, cfg = built.buildah, built.config
    port, sport = free_port(), free_port()
    ports = {"8000": port, "9000": sport}
    health = b.run_argv(built.container, loopback(cfg["Healthcheck"]["Test"][1:], ports))

    def healthy() -> bool:
        return subprocess.run(health, capture_output=True, timeout=60).returncode == 0

    with Server(b.run_argv(built.container, loopback(cfg["Cmd"], ports)),
                cwd=built.context, port=port) as srv:
        srv.wait_ready(60)
        status, _, body = http_get(port)
        assert status == 200 and body.startswith(b"Hello"), (status, body)
        wait_for(healthy, 60, interval=0.5, what="the image's HEALTHCHECK to pass")

        def arbiter() -> psutil.Process | None:
            procs = psutil.Process(srv.pid).children(recursive=True)
            return next((p for p in procs if "master" in " ".join(p.cmdline())), None)
        arb = wait_for(arbiter, 10, what="the arbiter under buildah run")
        try:
            workers = arb.children()
            assert workers
            for p in [arb, *workers]:
                assert p.uids().real == p.uids().effective == APP_UID, p
            arb.send_signal(signal.SIGTERM)     # graceful stop: buildah run returns 0
            assert srv.wait_exit(60) == 0, srv.stderr()
        finally:
            if arb.is_running():                # Server.stop kills only its own group
                arb.kill()
    assert not healthy()            # and it fails when nothing answers


def test_source_edit_reuses_dependency_layer(built: Built) -> None:
    b = built.buildah
    source = built.context / "reclusterd" / "__init__.py"
    source.write_text(source.read_text() + f"\n# edited by the layer test {os.getpid()}\n")
    tag = f"{built.tag}-edited"
    # the build stage is enough to see the dependency layer reused
    steps = build_steps(b.build(built.context, tag, built.base, target="build"))
    try:
        before = {s.instruction: s for s in built.steps}
        after = {s.instruction: s for s in steps}
        [deps] = [i for i in after if DEPS_STEP in i]
        assert after[deps].cached and after[deps].image == before[deps].image
        [src] = [i for i in after if i.startswith("COPY reclusterd")]
        assert not after[src].cached    # the edit was seen
    finally:
        remove_image(b, tag, steps)
