"""Issue 16 item 6: certificates are read again on HUP. A renewed certificate serves the
next connection without a restart; a broken one fails the new generation, which is rolled
back while the old one keeps serving with the certificate it has."""

from __future__ import annotations

import shutil
import signal
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from tests.support.process import reclusterd, wait_for, wait_log


def make_cert(directory: Path, serial: int) -> tuple[Path, Path]:
    cert, key = directory / f"c{serial}.pem", directory / f"k{serial}.pem"
    r = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-set_serial", str(serial), "-keyout", str(key),
         "-out", str(cert)], capture_output=True, timeout=60)
    if r.returncode != 0:
        pytest.fail(f"openssl failed: {r.stderr.decode()}")
    return cert, key


def served_serial(port: int) -> int | None:
    """The serial number of the certificate the server presents (None if no handshake)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
    except OSError:
        return None
    assert der is not None
    out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-serial"],
                         input=der, capture_output=True, timeout=30, check=True)
    return int(out.stdout.decode().strip().split("=", 1)[1], 16)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
@pytest.mark.parametrize("kind,app", [("thread", "wsgi"), ("asyncio", "asgi")])
def test_hup_reads_renewed_certificate(tmp_path: Path, kind: str, app: str) -> None:
    live_cert, live_key = tmp_path / "cert.pem", tmp_path / "key.pem"
    for serial in (1, 2):
        make_cert(tmp_path, serial)
    shutil.copy(tmp_path / "c1.pem", live_cert)
    shutil.copy(tmp_path / "k1.pem", live_key)
    with reclusterd(f"tests.apps.proxied:{app}", "-w", "1", "-k", kind, "--certfile",
                    str(live_cert), "--keyfile", str(live_key)) as srv:
        srv.wait_ready()
        assert served_serial(srv.port) == 1
        shutil.copy(tmp_path / "c2.pem", live_cert)
        shutil.copy(tmp_path / "k2.pem", live_key)
        srv.signal(signal.SIGHUP)
        wait_for(lambda: served_serial(srv.port) == 2, 30, what="the renewed certificate")
        # a broken certificate: the new generation fails, the old one keeps serving
        live_cert.write_text("not a certificate\n")
        srv.signal(signal.SIGHUP)
        log = wait_log(srv, "reload rolled back", 30)
        assert "--certfile/--keyfile: cannot load" in log
        assert served_serial(srv.port) == 2
