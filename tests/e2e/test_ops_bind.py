"""OPS e2e: the bind-address grammar from the command line (`-b HOST` means port 8000)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.process import ROOT

PY = sys.executable


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECLUSTERD_")}
    return subprocess.run([PY, "-m", "reclusterd", "examples.hello:app", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, env={**env, "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize(("given", "shown"), [
    ("localhost", "localhost:8000"), ("0.0.0.0", "0.0.0.0:8000"), ("[::1]", "[::1]:8000"),
    ("127.0.0.1", "127.0.0.1:8000"), (":8123", "0.0.0.0:8123"),
])
def test_host_alone_means_port_8000(given: str, shown: str) -> None:
    r = run("-b", given, "--check-config")
    assert r.returncode == 0, r.stderr
    bind_line = next(line for line in r.stdout.splitlines() if "bind:" in line)
    assert bind_line.split() == ["bind:", shown]


@pytest.mark.parametrize("bad", ["127.0.0.1:http", "::1", "[::1", "host name", "localhost:"])
def test_bad_bind_is_one_line_naming_the_flag(bad: str) -> None:
    r = run("-b", bad)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("reclusterd: error: --bind: ") and repr(bad) in lines[0]


# Runs inside a private network namespace, where port 8000 is free whatever else runs on
# this machine: brings up lo, serves `-b 127.0.0.1`, fetches http://127.0.0.1:8000/.
_DRIVER = textwrap.dedent("""
    import socket, subprocess, sys, time
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    srv = subprocess.Popen([sys.executable, "-m", "reclusterd", "examples.hello:app",
                            "-w", "1", "-b", "127.0.0.1"])
    try:
        deadline = time.monotonic() + 60
        while True:
            assert srv.poll() is None, "server exited"
            try:
                with socket.create_connection(("127.0.0.1", 8000), timeout=5) as c:
                    c.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
                    data = b""
                    while chunk := c.recv(65536):
                        data += chunk
                if data:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "port 8000 never answered"
            time.sleep(0.05)   # poll interval of the deadline loop above
        print(data.split(b"\\r\\n")[0].decode())
    finally:
        srv.terminate()
        srv.wait(30)
""")


@pytest.mark.skipif(os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("ip")),
                    reason="needs root, unshare and ip for a private network namespace")
def test_host_alone_serves_on_port_8000(tmp_path: Path) -> None:
    driver = tmp_path / "driver.py"
    driver.write_text(_DRIVER)
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {probe.stderr.decode().strip()}")
    r = subprocess.run(["unshare", "-n", PY, str(driver)], cwd=ROOT, capture_output=True,
                       text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "HTTP/1.1 200 OK"
