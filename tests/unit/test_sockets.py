"""Unit tests for reclusterd.sockets and reclusterd.systemd (real sockets, no server)."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from reclusterd import sockets, systemd
from reclusterd.sockets import BindError, TLSError


def cfg(*binds: str, **kw: Any) -> Any:
    base: dict[str, Any] = dict(bind=binds, backlog=16, reuse_port=False, umask=None,
                                user=None, group=None, certfile=None, keyfile=None,
                                ca_certs=None, ciphers=None)
    base.update(kw)
    return SimpleNamespace(**base)


def test_parse_address() -> None:
    assert sockets.parse_address("127.0.0.1:80") == ("tcp", ("127.0.0.1", 80))
    assert sockets.parse_address("[::1]:81") == ("tcp", ("::1", 81))
    assert sockets.parse_address(":82") == ("tcp", ("0.0.0.0", 82))
    assert sockets.parse_address("localhost") == ("tcp", ("localhost", 8000))
    assert sockets.parse_address("unix:/tmp/x.sock") == ("unix", "/tmp/x.sock")
    assert sockets.parse_address("fd://5") == ("fd", 5)
    for bad in ("1.2.3.4:http", "::1:80", "[::1:80", "fd://x", "unix:", "h:70000"):
        with pytest.raises(BindError):
            sockets.parse_address(bad)


def test_bind_tcp_nonblocking_reuseaddr() -> None:
    [lis] = sockets.bind_listeners(cfg("127.0.0.1:0"), {})
    try:
        assert lis.address == "127.0.0.1:0"
        assert lis.sock.getblocking() is False
        assert lis.sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        assert not lis.sock.get_inheritable()
        port = lis.sock.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
    finally:
        sockets.close_listeners([lis])


def test_reuse_port() -> None:
    [a] = sockets.bind_listeners(cfg("127.0.0.1:0", reuse_port=True), {})
    port = a.sock.getsockname()[1]
    [b] = sockets.bind_listeners(cfg(f"127.0.0.1:{port}", reuse_port=True), {})
    sockets.close_listeners([a, b])


def test_address_in_use_names_address() -> None:
    [a] = sockets.bind_listeners(cfg("127.0.0.1:0"), {})
    port = a.sock.getsockname()[1]
    try:
        with pytest.raises(BindError) as ei:
            sockets.bind_listeners(cfg("127.0.0.1:0", f"127.0.0.1:{port}"), {})
        assert str(ei.value) == f"address already in use: 127.0.0.1:{port}"
    finally:
        sockets.close_listeners([a])


def test_bad_host() -> None:
    with pytest.raises(BindError, match="no-such-host.invalid"):
        sockets.bind_listeners(cfg("no-such-host.invalid:80"), {})


@pytest.mark.skipif(os.geteuid() == 0, reason="root may bind low ports")
def test_permission_denied() -> None:
    with pytest.raises(BindError, match="permission denied binding 127.0.0.1:1"):
        sockets.bind_listeners(cfg("127.0.0.1:1"), {})


def test_ipv6() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        [lis] = sockets.bind_listeners(cfg("[::1]:0"), {})
    except BindError as e:
        pytest.skip(f"no ::1: {e}")
    assert lis.sock.family == socket.AF_INET6
    sockets.close_listeners([lis])


def test_unix_socket_stale_mode_and_unlink(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()                      # file left behind, nobody listening
    [lis] = sockets.bind_listeners(cfg(f"unix:{path}"), {})
    assert stat.S_IMODE(path.stat().st_mode) == 0o660
    with socket.socket(socket.AF_UNIX) as c:
        c.connect(str(path))
    # a live socket is "in use", not removed
    with pytest.raises(BindError, match="address already in use"):
        sockets.bind_listeners(cfg(f"unix:{path}"), {})
    sockets.close_listeners([lis])
    assert not path.exists()


def test_unix_umask(tmp_path: Path) -> None:
    path = tmp_path / "u.sock"
    [lis] = sockets.bind_listeners(cfg(f"unix:{path}", umask=0o077), {})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    sockets.close_listeners([lis], unlink=False)
    assert path.exists()


def test_unix_path_not_a_socket(tmp_path: Path) -> None:
    p = tmp_path / "file"
    p.write_text("x")
    with pytest.raises(BindError, match="not a socket"):
        sockets.bind_listeners(cfg(f"unix:{p}"), {})


def test_fd_and_reexec_inheritance(tmp_path: Path) -> None:
    raw = socket.socket()
    raw.bind(("127.0.0.1", 0))
    raw.listen()
    fd = raw.detach()
    [lis] = sockets.bind_listeners(cfg(f"fd://{fd}"), {})
    assert lis.fileno() == fd and lis.sock.getblocking() is False
    upath = tmp_path / "r.sock"
    [ulis] = sockets.bind_listeners(cfg(f"unix:{upath}"), {})
    env = sockets.inherit_environ([lis, ulis])
    assert lis.sock.get_inheritable()
    pairs = json.loads(env["RECLUSTERD_FDS"])
    assert pairs == [[fd, f"fd://{fd}"], [ulis.fileno(), f"unix:{upath}"]]
    # a re-exec'd arbiter would see the same fds
    again = sockets.bind_listeners(cfg("127.0.0.1:1"), env)
    assert [a.address for a in again] == [f"fd://{fd}", f"unix:{upath}"]
    assert again[1].unix_path == str(upath)
    for a in again:
        a.sock.detach()
    sockets.close_listeners([lis, ulis])


def test_systemd_listen_fds() -> None:
    assert systemd.listen_fds({"LISTEN_FDS": "2", "LISTEN_PID": str(os.getpid())}) == [3, 4]
    assert systemd.listen_fds({"LISTEN_FDS": "2", "LISTEN_PID": "1"}) == []
    assert systemd.listen_fds({}) == []
    assert systemd.listen_fds({"LISTEN_FDS": "x", "LISTEN_PID": "1"}) == []


def test_systemd_activation_in_child() -> None:
    """A child whose fd 3 is a listener and LISTEN_PID is itself gets it from bind_listeners."""
    raw = socket.socket()
    raw.bind(("127.0.0.1", 0))
    raw.listen()
    port = raw.getsockname()[1]
    code = (
        "import os,sys; from types import SimpleNamespace as N; "
        "from reclusterd import sockets; "
        "os.environ['LISTEN_PID']=str(os.getpid()); "
        "ls=sockets.bind_listeners(N(bind=('127.0.0.1:1',)), os.environ); "
        "print(ls[0].address)"
    )
    script = f"import os; os.dup2({raw.fileno()}, 3); os.execv({sys.executable!r}, " \
             f"[{sys.executable!r}, '-c', {code!r}])"
    env = dict(os.environ, LISTEN_FDS="1")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, pass_fds=(raw.fileno(),), timeout=20)
    raw.close()
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"127.0.0.1:{port}"


def test_notify_and_abstract(tmp_path: Path) -> None:
    assert systemd.notify("READY=1", {}) is False
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(str(path))
        assert systemd.notify("READY=1", {"NOTIFY_SOCKET": str(path)})
        assert s.recv(100) == b"READY=1"
    name = f"reclusterd-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind("\0" + name)
        assert systemd.notify("STOPPING=1", {"NOTIFY_SOCKET": "@" + name})
        assert s.recv(100) == b"STOPPING=1"
    assert systemd.notify("X=1", {"NOTIFY_SOCKET": str(tmp_path / "missing")}) is False


def test_watchdog_interval() -> None:
    assert systemd.watchdog_interval({}) is None
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "10000000"}) == 5.0
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"},
                                     pid=2) is None


def test_ssl_context_none_and_errors(tmp_path: Path) -> None:
    assert sockets.ssl_context(cfg()) is None
    with pytest.raises(TLSError, match="certfile: no such file: /nope.pem"):
        sockets.ssl_context(cfg(certfile="/nope.pem"))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a cert")
    with pytest.raises(BindError) as ei:
        sockets.ssl_context(cfg(certfile=str(junk)))
    assert "\n" not in str(ei.value) and str(junk) in str(ei.value)


def make_cert(tmp_path: Path) -> tuple[str, str]:
    import shutil
    if not shutil.which("openssl"):
        pytest.skip("openssl CLI not available")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return str(cert), str(key)


def test_ssl_context_loads(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    ctx = sockets.ssl_context(cfg(certfile=cert, keyfile=key, ciphers="ECDHE+AESGCM"))
    assert ctx is not None
    with pytest.raises(TLSError, match="ciphers"):
        sockets.ssl_context(cfg(certfile=cert, keyfile=key, ciphers="NOPE-NOTHING"))


def test_drop_privileges_noop_and_unknown_user() -> None:
    sockets.drop_privileges(cfg())
    with pytest.raises(sockets.PrivilegeError, match="no such user"):
        sockets.drop_privileges(cfg(user="no-such-user-xyz"))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch user")
def test_drop_privileges_as_root() -> None:
    code = ("from types import SimpleNamespace as N; import os; "
            "from reclusterd import sockets; "
            "sockets.drop_privileges(N(user='nobody', group=None, umask=0o027)); "
            "print(os.getuid(), os.umask(0))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=20, cwd=str(Path(__file__).resolve().parents[2]))
    assert out.returncode == 0, out.stderr
    import pwd
    assert out.stdout.split() == [str(pwd.getpwnam("nobody").pw_uid), str(0o027)]
