"""What an operator and a script see while the arbiter starts: pidfile, start line."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

from tests.support.apps import write_app
from tests.support.process import arbiter_server, port_answers, reclusterd, wait_for, wait_log


def test_pidfile_exists_once_the_port_answers(tmp_path: Path) -> None:
    """A script that waits for the port, then reads the pidfile, must never miss it."""
    write_app(tmp_path)
    pidfile = tmp_path / "r.pid"
    with arbiter_server(tmp_path, "--workers", "1", "--pid", str(pidfile)) as srv:
        # no sleep between polls: the pidfile is read the moment the port answers
        wait_for(lambda: port_answers(srv.port), 15, interval=0, what="the port")
        assert pidfile.read_text().strip() == str(srv.pid)


def test_failed_bind_removes_the_pidfile(tmp_path: Path) -> None:
    write_app(tmp_path)
    pidfile = tmp_path / "r.pid"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with reclusterd("app:app", "--workers", "1", "--pid", str(pidfile), cwd=tmp_path,
                        port=port) as srv:
            assert srv.wait_exit(10) == 1
            wait_log(srv, "in use")
    assert not pidfile.exists()


def test_start_line_names_version_class_parser_and_urls(tmp_path: Path) -> None:
    from reclusterd import __version__

    write_app(tmp_path)
    sock = tmp_path / "app.sock"
    with arbiter_server(tmp_path, "--workers", "1", "-k", "sync", "--http", "h11",
                        "--bind", f"unix:{sock}") as srv:
        text = wait_log(srv, "generation 1 ready: 1 worker serving")
        start = next(line for line in text.splitlines() if "started:" in line)
        assert f"reclusterd {__version__} master {srv.pid} started: app:app, 1 worker," in start
        assert "worker class sync, parser h11" in start
        assert f"open http://127.0.0.1:{srv.port}, unix:{sock}" in start


def test_start_line_says_what_auto_means(tmp_path: Path) -> None:
    write_app(tmp_path)
    with arbiter_server(tmp_path, "--workers", "2") as srv:
        text = wait_log(srv, "generation 1 ready: 2 workers serving")
        assert "2 workers, worker class auto (thread for WSGI, asyncio for ASGI), " \
               "parser httptools" in text


def test_second_start_on_a_live_pidfile_leaves_it_alone(tmp_path: Path) -> None:
    write_app(tmp_path)
    pidfile = tmp_path / "r.pid"
    with arbiter_server(tmp_path, "--workers", "1", "--pid", str(pidfile)) as first:
        first.wait_ready()
        with reclusterd("app:app", "--pid", str(pidfile), cwd=tmp_path,
                        port=first.port) as second:
            assert second.wait_exit(10) == 1
            wait_log(second, f"names process {first.pid}, which is running")
        assert pidfile.read_text().strip() == str(first.pid)


def test_graceful_stop_says_when_draining_starts(tmp_path: Path) -> None:
    write_app(tmp_path)
    with arbiter_server(tmp_path, "--workers", "1", "--graceful-timeout", "7") as srv:
        wait_log(srv, "generation 1 ready:")
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(15) == 0
        err = srv.stderr()
    assert "graceful shutdown: draining now; requests in flight get 7s to finish" in err
    assert "draining in 0.0s" not in err
    with arbiter_server(tmp_path, "--workers", "1", "--shutdown-delay", "0.5") as srv:
        wait_log(srv, "generation 1 ready:")
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(15) == 0
        assert "reporting not ready for 0.5s (--shutdown-delay), then draining" \
            in srv.stderr()
