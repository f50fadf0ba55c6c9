"""Unit tests for sockets, tls and systemd (real sockets, no server)."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from reclusterd import config, settings, sockets, systemd, tls
from reclusterd.sockets import (
    AddressError,
    BindError,
    BindOptions,
    FDAddress,
    TCPAddress,
    UnixAddress,
)
from reclusterd.tls import TLSError, TLSOptions


def bind(*addresses: str, environ: dict[str, str] | None = None,
         **kw: Any) -> list[sockets.Listener]:
    base: dict[str, Any] = dict(backlog=16, reuse_port=False, umask=None)
    base.update(kw)
    return sockets.bind_listeners(addresses, environ or {}, BindOptions(**base))


def tls_opts(**kw: Any) -> TLSOptions:
    base: dict[str, Any] = dict(certfile=None, keyfile=None, ca_certs=None, ciphers=None,
                                alpn=("http/1.1",), min_version="TLSv1.2")
    base.update(kw)
    return TLSOptions(**base)


@pytest.mark.parametrize(("text", "addr", "canonical"), [
    ("127.0.0.1:80", TCPAddress("127.0.0.1", 80), "127.0.0.1:80"),
    ("[::1]:81", TCPAddress("::1", 81), "[::1]:81"),
    (":82", TCPAddress("0.0.0.0", 82), "0.0.0.0:82"),
    # Gunicorn: a host alone means port 8000
    ("localhost", TCPAddress("localhost", 8000), "localhost:8000"),
    ("0.0.0.0", TCPAddress("0.0.0.0", 8000), "0.0.0.0:8000"),
    ("127.0.0.1", TCPAddress("127.0.0.1", 8000), "127.0.0.1:8000"),
    ("[::1]", TCPAddress("::1", 8000), "[::1]:8000"),
    ("unix:/tmp/x.sock", UnixAddress("/tmp/x.sock"), "unix:/tmp/x.sock"),
    ("unix:///tmp/x.sock", UnixAddress("/tmp/x.sock"), "unix:/tmp/x.sock"),
    ("fd://5", FDAddress(5), "fd://5"),
    # Gunicorn's tcp:// prefix on the TCP forms
    ("tcp://127.0.0.1:83", TCPAddress("127.0.0.1", 83), "127.0.0.1:83"),
    ("tcp://[::1]:84", TCPAddress("::1", 84), "[::1]:84"),
    ("tcp://localhost", TCPAddress("localhost", 8000), "localhost:8000"),
])
def test_parse_address(text: str, addr: sockets.Address, canonical: str) -> None:
    assert sockets.parse_address(text) == addr
    assert str(addr) == canonical
    # validation uses the same grammar and stores the canonical form
    assert settings.check_address(text) == canonical


@pytest.mark.parametrize("bad", [
    "1.2.3.4:http", "::1:80", "[::1:80", "[zz]:80", "[::1]x", "fd://x", "fd://", "unix:",
    "h:70000", ":", ":70000", "127.0.0.1:-1", "host name:80", "", "localhost:",
    "tcp://", "tcp://unix:/x", "tcp://fd://3",
])
def test_parse_address_rejects(bad: str) -> None:
    with pytest.raises(AddressError) as ei:
        sockets.parse_address(bad)
    assert "\n" not in str(ei.value) and repr(bad) in str(ei.value)
    with pytest.raises(ValueError):          # what the settings validators raise
        settings.check_address(bad)


def test_bind_tcp_nonblocking_reuseaddr() -> None:
    [lis] = bind("127.0.0.1:0")
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
    [a] = bind("127.0.0.1:0", reuse_port=True)
    port = a.sock.getsockname()[1]
    [b] = bind(f"127.0.0.1:{port}", reuse_port=True)
    sockets.close_listeners([a, b])


def test_address_in_use_names_address() -> None:
    [a] = bind("127.0.0.1:0")
    port = a.sock.getsockname()[1]
    try:
        with pytest.raises(BindError) as ei:
            bind("127.0.0.1:0", f"127.0.0.1:{port}")
        assert str(ei.value) == f"address already in use: 127.0.0.1:{port}"
    finally:
        sockets.close_listeners([a])


def test_bad_host() -> None:
    with pytest.raises(BindError, match="no-such-host.invalid"):
        bind("no-such-host.invalid:80")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may bind low ports")
def test_permission_denied() -> None:
    with pytest.raises(BindError, match="permission denied binding 127.0.0.1:1"):
        bind("127.0.0.1:1")


def test_ipv6() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        [lis] = bind("[::1]:0")
    except BindError as e:
        pytest.skip(f"no ::1: {e}")
    assert lis.sock.family == socket.AF_INET6
    sockets.close_listeners([lis])


def test_unix_socket_stale_mode_and_unlink(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()                      # file left behind, nobody listening
    [lis] = bind(f"unix:{path}")
    # no --umask: Gunicorn's default of 0, so the file's mode does not shut anyone out
    assert stat.S_IMODE(path.stat().st_mode) == 0o777
    with socket.socket(socket.AF_UNIX) as c:
        c.connect(str(path))
    # a live socket is "in use", not removed
    with pytest.raises(BindError, match="address already in use"):
        bind(f"unix:{path}")
    sockets.close_listeners([lis])
    assert not path.exists()


def test_unix_umask(tmp_path: Path) -> None:
    path = tmp_path / "u.sock"
    before = os.umask(0o022)
    os.umask(before)
    [lis] = bind(f"unix:{path}", umask=0o077)
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert os.umask(before) == before, "the process umask is restored after bind"
    sockets.close_listeners([lis], unlink=False)
    assert path.exists()


def test_unix_path_not_a_socket(tmp_path: Path) -> None:
    p = tmp_path / "file"
    p.write_text("x")
    with pytest.raises(BindError, match="not a socket"):
        bind(f"unix:{p}")


def test_fd_and_reexec_inheritance(tmp_path: Path) -> None:
    raw = socket.socket()
    raw.bind(("127.0.0.1", 0))
    raw.listen()
    fd = raw.detach()
    [lis] = bind(f"fd://{fd}")
    assert lis.fileno() == fd and lis.sock.getblocking() is False
    upath = tmp_path / "r.sock"
    [ulis] = bind(f"unix:{upath}")
    env = sockets.inherit_environ([lis, ulis])
    assert lis.sock.get_inheritable()
    pairs = json.loads(env["RECLUSTERD_FDS"])
    assert pairs == [[fd, f"fd://{fd}"], [ulis.fileno(), f"unix:{upath}"]]
    # a re-exec'd arbiter would see the same fds
    again = bind("127.0.0.1:1", environ=env)
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
        "import os,sys; "
        "from reclusterd import sockets; "
        "os.environ['LISTEN_PID']=str(os.getpid()); "
        "ls=sockets.bind_listeners(['127.0.0.1:1'], os.environ, "
        "sockets.BindOptions(backlog=1, reuse_port=False, umask=None)); "
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
    assert tls.ssl_context(tls_opts()) is None
    with pytest.raises(TLSError, match="--certfile: no such file: /nope.pem"):
        tls.ssl_context(tls_opts(certfile="/nope.pem"))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a cert")
    with pytest.raises(TLSError) as ei:
        tls.ssl_context(tls_opts(certfile=str(junk)))
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
    ctx = tls.ssl_context(tls_opts(certfile=cert, keyfile=key, ciphers="ECDHE+AESGCM"))
    assert ctx is not None
    with pytest.raises(TLSError, match="ciphers"):
        tls.ssl_context(tls_opts(certfile=cert, keyfile=key, ciphers="NOPE-NOTHING"))


def test_drop_privileges_noop_and_unknown_user() -> None:
    sockets.drop_privileges(None, None, None)
    assert sockets.owner_ids(None, None) == (None, None)
    with pytest.raises(sockets.PrivilegeError, match="no such user"):
        sockets.owner_ids("no-such-user-xyz", None)
    with pytest.raises(sockets.PrivilegeError, match="no such group"):
        sockets.owner_ids(None, "no-such-group-xyz")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch user")
def test_drop_privileges_as_root() -> None:
    code = ("import os; "
            "from reclusterd import sockets; "
            "uid, gid = sockets.owner_ids('nobody', None); "
            "sockets.drop_privileges(uid, gid, 0o027); "
            "print(os.getuid(), os.umask(0))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=20, cwd=str(Path(__file__).resolve().parents[2]))
    assert out.returncode == 0, out.stderr
    import pwd
    assert out.stdout.split() == [str(pwd.getpwnam("nobody").pw_uid), str(0o027)]


def test_alpn_protocols() -> None:
    assert tls.alpn_protocols(["h1"]) == ("http/1.1",)
    assert tls.alpn_protocols(["h1", "h2"]) == ("h2", "http/1.1")
    with pytest.raises(TLSError, match="'h3'"):
        tls.alpn_protocols(["h3"])


def test_ssl_context_alpn(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    assert tls.ssl_context(tls_opts(certfile=cert, keyfile=key, alpn=("h2", "http/1.1")))


def test_tls_options_of_a_config() -> None:
    """Every TLS setting a Config has reaches the options (no defaults filled in here)."""
    cfg = config.load(["app:app", "--certfile", "c.pem", "--keyfile-password", "pw",
                       "--ssl-min-version", "TLSv1.3", "--cert-reqs", "required",
                       "--ca-certs", "ca.pem"], {})
    opts = TLSOptions.of(cfg, tls.HTTP1_ALPN)
    assert (opts.certfile, opts.keyfile_password, opts.min_version, opts.cert_reqs,
            opts.alpn) == ("c.pem", "pw", "TLSv1.3", "required", ("http/1.1",))
