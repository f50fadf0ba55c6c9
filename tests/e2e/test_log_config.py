"""--log-config: a real stdlib logging config (JSON, TOML, INI) in the master and workers."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.e2e.test_cli import one_error_line, run
from tests.support.apps import write_app
from tests.support.http_client import get_body
from tests.support.process import arbiter_server, wait_for, wait_log, wait_worker_pids


def access_config(path: Path, log: Path, prefix: str) -> None:
    """A dictConfig routing reclusterd.access to `log`, each line starting with `prefix`."""
    path.write_text(json.dumps({
        "version": 1,
        "formatters": {"access": {"format": prefix + " %(process)d %(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(log),
                              "formatter": "access"}},
        "loggers": {"reclusterd.access": {"handlers": ["file"], "level": "INFO"}},
    }))


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def logged_request(port: int, log: Path, target: str) -> list[str]:
    """GET `target` and wait until the access line naming it is in `log`."""
    assert get_body(port, target).startswith("v1 ")
    return wait_for(lambda: [ln for ln in lines(log) if f"GET {target} " in ln],
                    what=f"access line for {target} in {log}")


def test_json_config_routes_access_lines_to_a_file_with_its_format(tmp_path: Path) -> None:
    write_app(tmp_path, "v1")
    access_config(tmp_path / "logging.json", tmp_path / "access.log", "ACCESS")
    with arbiter_server(tmp_path, "--workers", "1", "--log-config", "logging.json") as srv:
        srv.wait_ready()
        wait_log(srv, "generation 1 ready:")   # the error log keeps its built-in handler
        (line,) = logged_request(srv.port, tmp_path / "access.log", "/json?x=1")
        pid = wait_worker_pids(srv, 1).pop()
        assert line.startswith(f"ACCESS {pid} 127.0.0.1 - - [")
        size = len(f"v1 {pid}\n")          # the body names the pid: its width varies
        assert line.endswith(f'"GET /json?x=1 HTTP/1.1" 200 {size} "-" "-"'), line
        assert "/json" not in srv.stdout() + srv.stderr()


def test_toml_config_is_a_dictconfig_too(tmp_path: Path) -> None:
    write_app(tmp_path, "v1")
    (tmp_path / "logging.toml").write_text(
        'version = 1\n'
        '[formatters.plain]\nformat = "T %(levelname)s %(message)s"\n'
        f'[handlers.file]\nclass = "logging.FileHandler"\nfilename = "{tmp_path}/all.log"\n'
        'formatter = "plain"\n'
        '[loggers."reclusterd.access"]\nhandlers = ["file"]\n'
        '[loggers."reclusterd.error"]\nhandlers = ["file"]\nlevel = "INFO"\n')
    with arbiter_server(tmp_path, "--workers", "1", "--log-config", "logging.toml") as srv:
        srv.wait_ready()
        logged_request(srv.port, tmp_path / "all.log", "/toml")
        wait_for(lambda: any(ln.startswith("T INFO generation 1 ready")
                             for ln in lines(tmp_path / "all.log")), what="error log line")


def test_ini_file_config_routes_the_error_log(tmp_path: Path) -> None:
    write_app(tmp_path, "v1")
    (tmp_path / "logging.ini").write_text(f"""\
[loggers]
keys = root, error

[handlers]
keys = errfile

[formatters]
keys = short

[logger_root]
level = WARNING
handlers =

[logger_error]
qualname = reclusterd.error
level = INFO
handlers = errfile
propagate = 0

[handler_errfile]
class = FileHandler
args = ('{tmp_path}/error.log', 'a')
formatter = short

[formatter_short]
format = INI %(levelname)s %(message)s
""")
    with arbiter_server(tmp_path, "--workers", "1", "--log-config", "logging.ini") as srv:
        srv.wait_ready()
        log = tmp_path / "error.log"
        wait_for(lambda: any(ln.startswith("INI INFO generation 1 ready")
                             for ln in lines(log)), what="the master's line in error.log")
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit() == 0
        # a worker's own line (it applied the file after fork) and the master's last one
        assert any(ln.startswith("INI INFO worker ") and ln.endswith(" draining")
                   for ln in lines(log)), lines(log)
        assert any("exiting with status 0" in ln for ln in lines(log))
        assert "generation 1 ready" not in srv.stderr()


@pytest.mark.parametrize(("name", "text", "error"), [
    ("bad.json", '{"version": 1,', "invalid JSON: Expecting property name"),
    ("bad.toml", "version = 2\n", 'dictConfig "version" must be 1, got 2'),
    ("bad.ini", "[loggers]\nkeys = root\n", "fileConfig needs the sections [handlers], "
                                             "[formatters]"),
    ("bad.yaml", "version: 1\n", "unknown format '.yaml'"),
    ("class.json", '{"version": 1, "handlers": {"h": {"class": "nosuch.Handler"}}}',
     "Unable to configure handler 'h'"),
])
def test_a_bad_file_is_one_line_naming_it(tmp_path: Path, name: str, text: str,
                                           error: str) -> None:
    (tmp_path / name).write_text(text)
    r = run("examples.hello:app", "--log-config", str(tmp_path / name))
    assert r.returncode == 2
    line = one_error_line(r)
    assert line.startswith(f"--log-config: {tmp_path / name}: "), line
    assert error in line, line
    r = run("examples.hello:app", "--log-config", str(tmp_path / name), "--check-config")
    assert r.returncode == 1
    assert error in one_error_line(r)


def test_missing_file(tmp_path: Path) -> None:
    r = run("examples.hello:app", "--log-config", str(tmp_path / "none.json"))
    assert r.returncode == 2
    assert one_error_line(r) == (f"--log-config: cannot read {tmp_path / 'none.json'}: "
                                 "No such file or directory")


def test_hup_reapplies_it_and_keeps_the_old_one_when_the_new_one_fails(tmp_path: Path) -> None:
    write_app(tmp_path, "v1")
    conf, log = tmp_path / "logging.json", tmp_path / "access.log"
    access_config(conf, log, "OLD")
    with arbiter_server(tmp_path, "--workers", "1", "--log-config", str(conf)) as srv:
        srv.wait_ready()
        wait_log(srv, "generation 1 ready:")
        assert logged_request(srv.port, log, "/one")[0].startswith("OLD ")

        conf.write_text('{"version": 1, "loggers": ')         # cannot be parsed
        srv.signal(signal.SIGHUP)
        wait_log(srv, "reload aborted: configuration error: --log-config: ")
        assert logged_request(srv.port, log, "/two")[0].startswith("OLD ")

        old = wait_worker_pids(srv, 1)
        conf.write_text(json.dumps({"version": 1, "handlers": {"h": {"class": "no.Such"}}}))
        srv.signal(signal.SIGHUP)                           # parses, fails to apply
        wait_log(srv, "reload completed: generation 2")
        wait_worker_pids(srv, 1, exclude=old)
        err = wait_log(srv, "keeping the previous logging config")
        assert "Unable to configure handler 'h'" in err
        assert logged_request(srv.port, log, "/three")[0].startswith("OLD ")

        access_config(conf, log, "NEW")
        srv.signal(signal.SIGHUP)
        wait_log(srv, "reload completed: generation 3")
        wait_for(lambda: any(ln.startswith("NEW ") for ln in logged_request(srv.port, log,
                                                                             "/four")),
                 what="the new format")
