"""OPS e2e: unix sockets, fd://, systemd socket activation, IPv6, TLS, trusted proxies."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.apps import OPS_ECHO
from tests.support.http_client import (
    http_get,
    ops_http_ok,
    ops_https_get,
    ops_make_cert,
    ops_unix_answers,
    ops_unix_get,
)
from tests.support.process import Server, free_port, reclusterd, wait_for

PY = sys.executable


def base_args(app: str, *opts: str) -> list[str]:
    return [PY, "-m", "reclusterd", app, "--workers", "2", *opts]


def test_unix_socket_serves_and_is_removed_on_exit(tmp_path: Path) -> None:
    app = OPS_ECHO
    path = tmp_path / "app.sock"
    with Server(base_args(app, "--bind", f"unix:{path}"), cwd=tmp_path) as srv:
        wait_for(lambda: srv.proc.poll() is None and ops_unix_answers(path),
                 15, what="unix socket to answer")
        status, _, body = ops_unix_get(path)
        assert status == 200 and json.loads(body)["path"] == "/"
        assert stat.S_ISSOCK(path.stat().st_mode)
        assert stat.S_IMODE(path.stat().st_mode) == 0o777   # no --umask: as Gunicorn
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(20) == 0
        assert not path.exists(), "unix socket file left behind"


def test_unix_socket_stale_file_replaced(tmp_path: Path) -> None:
    app = OPS_ECHO
    path = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()
    with Server(base_args(app, "--bind", f"unix:{path}", "--workers", "1"), cwd=tmp_path):
        wait_for(lambda: ops_unix_answers(path), 15, what="unix socket to answer")


def test_fd_bind(tmp_path: Path) -> None:
    app = OPS_ECHO
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    port = lsock.getsockname()[1]
    fd = lsock.fileno()
    try:
        with Server(base_args(app, "--bind", f"fd://{fd}"), cwd=tmp_path, port=port,
                    pass_fds=[fd]) as srv:
            lsock.close()     # only the server holds it now
            srv.wait_ready()
            wait_for(lambda: ops_http_ok(port), 15, what="fd:// listener to serve")
            srv.signal(signal.SIGTERM)
            assert srv.wait_exit(20) == 0
    finally:
        lsock.close()


SD_WRAPPER = ("import os, sys; os.dup2(int(sys.argv[1]), 3); os.close(int(sys.argv[1])); "
              "os.environ['LISTEN_FDS'] = '1'; os.environ['LISTEN_PID'] = str(os.getpid()); "
              "os.execv(sys.executable, [sys.executable] + sys.argv[2:])")


def test_systemd_socket_activation(tmp_path: Path) -> None:
    """Like systemd: socket on fd 3, LISTEN_PID = the exec'd server's pid; --bind ignored."""
    app = OPS_ECHO
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    port = lsock.getsockname()[1]
    fd = lsock.fileno()
    unused = free_port()
    args = [PY, "-c", SD_WRAPPER, str(fd), "-m", "reclusterd", app, "--workers", "2",
            "--bind", f"127.0.0.1:{unused}"]
    try:
        with Server(args, cwd=tmp_path, port=port, pass_fds=[fd]) as srv:
            lsock.close()
            wait_for(lambda: srv.proc.poll() is None and ops_http_ok(port), 15,
                     what="socket-activated listener to serve")
            assert not ops_http_ok(unused), "--bind should be ignored under socket activation"
            srv.signal(signal.SIGTERM)
            assert srv.wait_exit(20) == 0
    finally:
        lsock.close()


def test_ipv6_loopback(tmp_path: Path) -> None:
    try:
        port = free_port("::1")
    except OSError:
        pytest.skip("no IPv6 loopback")
    app = OPS_ECHO
    args = base_args(app, "--bind", f"[::1]:{port}", "--workers", "1")
    with Server(args, cwd=tmp_path, port=port, host="::1") as srv:
        srv.wait_ready()
        status, _, body = http_get(port, host="::1")
        assert status == 200 and json.loads(body)["remote_addr"] == "::1"


def test_tls_serves_https_scheme(tmp_path: Path) -> None:
    cert = ops_make_cert(tmp_path)
    if cert is None:
        pytest.skip("openssl CLI not available")
    app = OPS_ECHO
    with reclusterd(app, "--workers", "1", "--certfile", cert[0], "--keyfile", cert[1],
                    cwd=tmp_path) as srv:
        srv.wait_ready()
        status, _, body = wait_for(lambda: _try_https(srv.port, cert[0]), 15,
                                   what="TLS answer")
        assert status == 200
        assert json.loads(body)["scheme"] == "https"


def _try_https(port: int, cafile: str) -> tuple[int, dict[str, str], bytes] | None:
    try:
        r = ops_https_get(port, cafile=cafile)
        return r if r[0] else None
    except OSError:
        return None


def test_tls_bad_cert_path_is_one_line_error(tmp_path: Path) -> None:
    app = OPS_ECHO
    with reclusterd(app, "--certfile", str(tmp_path / "missing.pem"), cwd=tmp_path) as srv:
        code = srv.wait_exit(20)
        err = srv.stderr()
        assert code != 0
        assert "certfile" in err and "missing.pem" in err
        assert "Traceback" not in err


def test_forwarded_headers_only_from_trusted_peers(tmp_path: Path) -> None:
    app = OPS_ECHO
    fwd = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
    with reclusterd(app, "--workers", "1", cwd=tmp_path) as srv:   # default: trust 127.0.0.1
        srv.wait_ready()
        body = json.loads(http_get(srv.port, headers=fwd)[2])
        assert (body["remote_addr"], body["scheme"]) == ("203.0.113.7", "https")
        body = json.loads(http_get(srv.port, headers={
            "Forwarded": 'for="[2001:db8::1]:4711";proto=https'})[2])
        assert (body["remote_addr"], body["scheme"]) == ("2001:db8::1", "https")
    with reclusterd(app, "--workers", "1", "--forwarded-allow-ips", "10.0.0.0/8",
                    cwd=tmp_path) as srv:
        srv.wait_ready()
        body = json.loads(http_get(srv.port, headers=fwd)[2])
        assert (body["remote_addr"], body["scheme"]) == ("127.0.0.1", "http")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch user")
def test_user_drop_after_bind(tmp_path: Path) -> None:
    import pwd

    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' user")
    try:
        probe = subprocess.run(
            [PY, "-c", "import h11, httptools, reclusterd"], cwd="/",
            env={"PYTHONPATH": str(Path(__file__).resolve().parents[2])},
            preexec_fn=lambda: (os.setgid(nobody.pw_gid), os.setuid(nobody.pw_uid)),
            capture_output=True, timeout=30)
        usable = probe.returncode == 0
    except OSError:
        usable = False
    if not usable:
        pytest.skip("user nobody cannot import the installed packages here")
    app = OPS_ECHO
    os.chmod(tmp_path, 0o755)
    os.chmod(tmp_path / "opsapp.py", 0o644)
    rootdir = tmp_path / "run"          # root's 0755 directory: nobody cannot write here
    rootdir.mkdir(mode=0o755)
    pidfile, sock = rootdir / "app.pid", rootdir / "app.sock"
    with reclusterd(app, "--workers", "1", "--user", "nobody", "--pid", str(pidfile),
                    "--bind", f"unix:{sock}", "--error-logfile", str(rootdir / "err.log"),
                    cwd=tmp_path, env={"PYTHONDONTWRITEBYTECODE": "1"}) as srv:
        srv.wait_ready()
        wait_for(lambda: ops_http_ok(srv.port), 15, what="serving as nobody")
        import psutil

        master = psutil.Process(srv.pid)
        workers = master.children()
        # as Gunicorn: the master keeps its user, the workers (which run the app) switch
        assert master.uids().real == os.geteuid()
        assert workers and all(p.uids().real == nobody.pw_uid for p in workers)
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit() == 0
    # the master could clean up what it made in root's directory
    assert not pidfile.exists() and not sock.exists()


def _connect_as(uid: int, gid: int, path: Path) -> str:
    """From a forked child running as uid/gid: "ok", "denied" or the error seen."""
    pid = os.fork()
    if pid == 0:   # child: never returns into pytest
        code = 1
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            status, _, _ = ops_unix_get(path)
            code = 0 if status == 200 else 2
        except PermissionError:
            code = 13
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return {0: "ok", 13: "denied"}.get(os.waitstatus_to_exitcode(status), f"exit {status}")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create the socket as root")
@pytest.mark.parametrize(("opts", "mode", "group", "nobody"), [
    ((), 0o777, "root", "ok"),                              # Gunicorn's default umask 0
    (("--umask", "007"), 0o770, "root", "denied"),          # others kept out
    (("--umask", "007", "--group", "nogroup"), 0o770, "nogroup", "ok"),   # a shared group
])
def test_unix_socket_mode_follows_umask(tmp_path: Path, opts: tuple[str, ...], mode: int,
                                        group: str, nobody: str) -> None:
    """Issue 11 item 9: a socket made by root is usable by nginx's user unless restricted."""
    import grp
    import pwd
    import shutil
    import tempfile

    try:
        who = pwd.getpwnam("nobody")
        grp.getgrnam(group)
    except KeyError:
        pytest.skip(f"no 'nobody' user or {group!r} group")
    app = OPS_ECHO
    sockdir = Path(tempfile.mkdtemp(prefix="reclusterd-sock-"))
    try:
        os.chmod(sockdir, 0o755)        # pytest's tmp_path is 0700: nobody could not reach it
        path = sockdir / "app.sock"
        with Server(base_args(app, "--bind", f"unix:{path}", "--workers", "1", *opts),
                    cwd=tmp_path):
            wait_for(lambda: ops_unix_answers(path), 15, what="unix socket to answer")
            st = path.stat()
            assert stat.S_IMODE(st.st_mode) == mode
            assert (st.st_uid, grp.getgrgid(st.st_gid).gr_name) == (0, group)
            # nobody's primary group is nogroup: in case 3 it reaches the socket as a member
            assert _connect_as(who.pw_uid, who.pw_gid, path) == nobody
    finally:
        shutil.rmtree(sockdir, ignore_errors=True)
