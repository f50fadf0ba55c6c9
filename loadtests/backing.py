"""The backing services of the framework scenarios: a SQLite file for `django`, a
redis-server for `flask` and `fastapi`. Both live in a temporary directory and on
loopback; `Backing.stop()` ends redis-server and removes the directory."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
NEEDS = {"django": ("django",), "flask": ("flask", "redis"), "fastapi": ("fastapi", "redis")}
USES_REDIS = ("flask", "fastapi")


def redis_server() -> str | None:
    return shutil.which("redis-server")


@dataclass
class Backing:
    """Environment for the servers (BENCH_SQLITE, BENCH_REDIS_URL) and what to stop."""

    tmp: Path
    env: dict[str, str] = field(default_factory=dict)
    redis: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        if self.redis is not None and self.redis.poll() is None:
            try:
                os.killpg(self.redis.pid, signal.SIGTERM)
                self.redis.wait(5)
            except (ProcessLookupError, PermissionError, subprocess.TimeoutExpired):
                os.killpg(self.redis.pid, signal.SIGKILL)
        shutil.rmtree(self.tmp, ignore_errors=True)


def _wait_redis(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("redis-server did not answer PING")


def start(groups: list[str]) -> Backing:
    """Prepare what `groups` need: the SQLite file (100 rows, made by fw_django in a child
    interpreter, so the bench itself never configures Django) and redis-server."""
    back = Backing(Path(tempfile.mkdtemp(prefix="bench-backing-")))
    try:
        if "django" in groups:
            db = back.tmp / "bench.sqlite3"
            back.env["BENCH_SQLITE"] = str(db)
            subprocess.run([sys.executable, "-c", "import fw_django; fw_django.create_db()"],
                           cwd=str(HERE), env={**os.environ, **back.env}, check=True)
        if any(g in USES_REDIS for g in groups):
            exe = redis_server()
            if exe is None:
                raise RuntimeError("redis-server not found")
            from servers import free_port

            port = free_port()
            log = open(back.tmp / "redis.log", "wb")  # noqa: SIM115 - the child owns it
            back.redis = subprocess.Popen(
                [exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                 "--appendonly", "no", "--dir", str(back.tmp)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
            log.close()
            _wait_redis(port, back.redis)
            back.env["BENCH_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    except BaseException:
        back.stop()
        raise
    return back
