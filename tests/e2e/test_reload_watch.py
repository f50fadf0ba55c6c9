"""--reload: real files changed on disk start the health-gated reload HUP starts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.test_cli import one_error_line, run
from tests.support.apps import versioned_source
from tests.support.http_client import get_body
from tests.support.process import ROOT, arbiter_server, wait_for, wait_log, wait_worker_pids

WATCHING = "reload: watching "


def save(directory: Path, version: str, extra: str = "") -> None:
    """Write app.py as an editor does: a temp file, then rename over the old one."""
    tmp = directory / ".app.py.tmp"
    tmp.write_text(versioned_source(version, extra))
    os.replace(tmp, directory / "app.py")


def serves(port: int, version: str) -> bool:
    return get_body(port).startswith(version + " ")


def test_edit_break_fix_loop_keeps_last_good_code_serving(tmp_path: Path) -> None:
    save(tmp_path, "v1")
    with arbiter_server(tmp_path, "--workers", "2", "--reload") as srv:
        srv.wait_ready()
        wait_log(srv, WATCHING)
        wait_log(srv, "generation 1 ready:")
        old = wait_worker_pids(srv, 2)
        assert serves(srv.port, "v1")

        save(tmp_path, "v2")
        wait_log(srv, "reload: app.py changed; reloading")
        wait_log(srv, "reload completed: generation 2")
        v2 = wait_worker_pids(srv, 2, exclude=old)
        wait_for(lambda: serves(srv.port, "v2"), what="v2 to answer")

        save(tmp_path, "v3", extra="raise RuntimeError('edit is broken')")
        wait_log(srv, "reload rolled back: generation 3 failed")
        err = wait_log(srv, "RuntimeError: edit is broken")
        assert serves(srv.port, "v2")
        # the failed generation's worker is told to stop at the rollback; it is gone once
        # the master has reaped it, and the old generation is untouched throughout
        wait_for(lambda: srv.workers() == v2, what="the failed generation's worker to exit")

        save(tmp_path, "v4", extra="def broken(:")
        wait_log(srv, "reload rolled back: generation 4 failed")
        wait_log(srv, "SyntaxError: invalid syntax")
        assert serves(srv.port, "v2")

        save(tmp_path, "v5")
        wait_log(srv, "reload completed: generation 5")
        wait_worker_pids(srv, 2, exclude=old | v2)
        wait_for(lambda: serves(srv.port, "v5"), what="v5 to answer")
        assert srv.proc.poll() is None
        err = srv.stderr()
        # each broken save printed its traceback exactly once, in the master's log
        assert err.count("Traceback (most recent call last)") == 1
        assert err.count("raise RuntimeError('edit is broken')") == 1
        assert err.count("def broken(:") == 1


@pytest.mark.parametrize("worker_class", ["sync", "asyncio"])
def test_excluded_and_unwatched_files_start_no_reload(tmp_path: Path, worker_class: str) -> None:
    if worker_class == "asyncio":
        (tmp_path / "wrap.py").write_text(
            "import app\n\n"
            "async def asgi(scope, receive, send):\n"
            "    assert scope['type'] == 'http'\n"
            "    body = ('%s %d\\n' % (app.VERSION, __import__('os').getpid())).encode()\n"
            "    await send({'type': 'http.response.start', 'status': 200,\n"
            "                'headers': [(b'content-length', str(len(body)).encode())]})\n"
            "    await send({'type': 'http.response.body', 'body': body})\n")
    save(tmp_path, "v1")
    target = "app:app" if worker_class == "sync" else "wrap:asgi"
    with arbiter_server(tmp_path, "--workers", "1", "-k", worker_class, "--reload",
                        "--reload-exclude", "generated/*", "--lifespan", "off",
                        app=target) as srv:
        srv.wait_ready()
        wait_log(srv, WATCHING)
        wait_log(srv, "generation 1 ready:")
        for rel in (".venv/lib/site.py", "__pycache__/app.cpython.pyc", "notes.txt",
                    "generated/models.py", ".app.py.swp"):
            path = tmp_path / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("x = 1\n")
        # Then a watched file: the first reload must name it alone (an excluded change
        # before it would have started a reload of its own, or been named with it).
        save(tmp_path, "v2")
        err = wait_log(srv, "reload completed: generation 2")
        wait_for(lambda: serves(srv.port, "v2"), what="v2 to answer")
        changed = [line for line in err.splitlines() if "reload: " in line and " changed" in line]
        assert len(changed) == 1 and "reload: app.py changed;" in changed[0], changed


def test_reload_with_preload_is_refused_in_one_line() -> None:
    r = run("examples.hello:app", "--reload", "--preload")
    assert r.returncode == 2
    assert one_error_line(r).startswith("--reload: cannot be used with --preload")


def test_reload_without_watchfiles_says_how_to_install(tmp_path: Path) -> None:
    # A watchfiles that cannot be imported (as when it is not installed) shadows the real one.
    (tmp_path / "watchfiles.py").write_text("raise ImportError('No module named watchfiles')\n")
    r = run("examples.hello:app", "--reload",
            env={"PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])})
    assert r.returncode == 2
    line = one_error_line(r)
    assert line.startswith("--reload: needs watchfiles: pip install 'reclusterd[reload]'"), line
