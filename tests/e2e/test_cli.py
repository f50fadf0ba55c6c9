"""The `reclusterd` command as a user meets it: version, bad values, --check-config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from reclusterd import __version__
from tests.support.process import ROOT


def run(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None,
        timeout: float = 30) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ)
    full["PYTHONPATH"] = str(ROOT)
    for k in list(full):
        if k.startswith("RECLUSTERD_") or k == "WEB_CONCURRENCY":
            del full[k]
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "reclusterd", *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def one_error_line(r: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("reclusterd: error: "), r.stderr
    return lines[0].removeprefix("reclusterd: error: ")


@pytest.mark.parametrize("flag", ["--version", "-v"])
def test_version(flag: str) -> None:
    r = run(flag)
    assert r.returncode == 0
    assert r.stdout.strip() == f"reclusterd {__version__}"
    assert r.stderr == ""


@pytest.mark.parametrize(("args", "line"), [
    (["-w", "0"], "--workers: must be a positive integer, got 0"),
    (["--workers", "abc"], "--workers: must be a positive integer, got 'abc'"),
    (["--workers=-2"], "--workers: must be a positive integer, got -2"),
    (["-w"], "--workers: expected one argument"),
])
def test_gunicorn_habits_workers_errors_exact(args: list[str], line: str) -> None:
    r = run("examples.hello:app", *args)
    assert r.returncode == 2
    assert one_error_line(r) == line
    assert r.stdout == ""


def test_console_script_module_entry_point() -> None:
    r = subprocess.run([sys.executable, "-c", "import sys; from reclusterd.cli import main; "
                        "sys.exit(main(['--version']))"], cwd=ROOT, capture_output=True,
                       text=True, timeout=30, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0 and r.stdout.startswith("reclusterd ")


def test_help() -> None:
    r = run("--help")
    assert r.returncode == 0
    assert "--workers" in r.stdout and "--forwarded-allow-ips" in r.stdout


@pytest.mark.parametrize(("args", "named"), [
    (["examples.hello:app", "--workers", "abc"], "--workers"),
    (["examples.hello:app", "-w", "0"], "--workers"),
    (["examples.hello:app", "--bind", "127.0.0.1:99999"], "--bind"),
    (["examples.hello:app", "--worker-class", "gevent"], "--worker-class"),
    (["examples.hello:app", "--timeout", "-3"], "--timeout"),
    (["examples.hello:app", "--log-level", "loud"], "--log-level"),
    (["examples.hello:app", "--no-such-flag"], "--no-such-flag"),
    (["examples.hello:app", "--threads"], "--threads"),
    ([], "APP"),
])
def test_bad_values_exit_2_naming_the_setting(args: list[str], named: str) -> None:
    r = run(*args)
    assert r.returncode == 2, r.stderr
    assert one_error_line(r).startswith(f"{named}: ")


def test_bad_env_value_exit_2() -> None:
    r = run("examples.hello:app", env={"RECLUSTERD_THREADS": "many"})
    assert r.returncode == 2
    assert one_error_line(r).startswith("RECLUSTERD_THREADS: ")


def test_unknown_flag_exit_2_with_suggestion() -> None:
    r = run("examples.hello:app", "--wrokers", "3")
    assert r.returncode == 2
    assert one_error_line(r) == "--wrokers: unknown option (see --help); did you mean --workers?"


def test_unknown_env_var_warns_and_runs_on() -> None:
    r = run("examples.hello:app", "--check-config", env={"RECLUSTERD_WORKRS": "3"})
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == [
        "reclusterd: warning: RECLUSTERD_WORKRS: unknown setting (ignored); "
        "did you mean RECLUSTERD_WORKERS?"]
    assert "config OK" in r.stdout


def test_unknown_toml_key_exit_2(tmp_path: Path) -> None:
    conf = tmp_path / "bad.toml"
    conf.write_text("workers = 2\nworkrs = 4\n")
    r = run("examples.hello:app", "-c", str(conf))
    assert r.returncode == 2
    msg = one_error_line(r)
    assert msg.startswith("workrs: unknown setting") and str(conf) in msg


def test_non_toml_config_file_exit_2(tmp_path: Path) -> None:
    conf = tmp_path / "settings.yaml"
    conf.write_text("workers: 2\n")
    r = run("examples.hello:app", "-c", str(conf))
    assert r.returncode == 2
    msg = one_error_line(r)
    assert msg.startswith(f"--config: '{conf}'") and "is not TOML (Expected '='" in msg, msg
    assert msg.endswith("or a Gunicorn config file (.py)")


def test_gunicorn_config_error_exit_2_names_file_and_line(tmp_path: Path) -> None:
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text("import multiprocessing\nworkers = multiprocessing.cpu_count(\n")
    r = run("examples.hello:app", "-c", str(conf))
    assert r.returncode == 2
    assert one_error_line(r).startswith(f"--config: {conf}:2: SyntaxError"), r.stderr


def test_gunicorn_config_check_reports_hooks_and_warns(tmp_path: Path) -> None:
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text("import multiprocessing\nworkers = multiprocessing.cpu_count()\n"
                    "worker_tmp_dir = '/dev/shm'\nworker_class = 'sync'\n"
                    "def when_ready(server):\n    pass\n")
    r = run("examples.hello:app", "-c", str(conf), "--check-config")
    assert r.returncode == 0, r.stderr
    assert "hooks:       when_ready (gunicorn.conf.py)" in r.stdout
    assert "x sync" in r.stdout
    assert "reclusterd: warning: worker_tmp_dir: Gunicorn setting ignored" in r.stderr


def test_wrong_toml_type_exit_2(tmp_path: Path) -> None:
    conf = tmp_path / "bad.toml"
    conf.write_text('timeout = "soon"\n')
    r = run("examples.hello:app", "-c", str(conf))
    assert r.returncode == 2
    assert one_error_line(r).startswith("timeout: ")


def test_check_config_ok() -> None:
    r = run("examples.hello:app", "--check-config")
    assert r.returncode == 0, r.stderr
    assert "config OK" in r.stdout and "WSGI" in r.stdout


def test_check_config_reports_precedence(tmp_path: Path) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text('workers = 2\nbind = ["127.0.0.1:9001"]\n')
    r = run("examples.hello:app", "-c", str(conf), "--check-config",
            env={"RECLUSTERD_WORKERS": "3"})
    assert r.returncode == 0, r.stderr
    assert "3 x thread" in r.stdout and "127.0.0.1:9001" in r.stdout


@pytest.mark.parametrize(("app", "opts", "says"), [
    # every worker would fail to boot: --check-config says so, exit 1, one line
    ("tests.apps.matrix:asgi", ("-k", "sync"), "serves WSGI apps only"),
    ("tests.apps.matrix:wsgi", ("-k", "asyncio"), "serves ASGI apps only"),
    ("tests.apps.matrix:asgi", ("--proxy-protocol", "--loop", "uvloop"),
     "--proxy-protocol runs on the asyncio loop"),
])
def test_check_config_finds_what_would_fail_every_boot(app: str, opts: tuple[str, ...],
                                                      says: str) -> None:
    r = run(app, *opts, "--check-config")
    assert r.returncode == 1 and says in one_error_line(r), r.stderr


def test_check_config_reports_proxy_root_path_and_headers() -> None:
    r = run("tests.apps.matrix:wsgi", "--check-config", "--proxy-protocol",
            "--proxy-allow-ips", "10.0.0.0/8", "--root-path", "/api", "--no-server-header")
    assert r.returncode == 0, r.stderr
    assert "PROXY protocol v1/v2 required from 10.0.0.0/8" in r.stdout
    assert "root path:" in r.stdout and "/api" in r.stdout
    assert "no Server header added" in r.stdout


def test_check_config_missing_module() -> None:
    r = run("nosuchmodule:app", "--check-config")
    assert r.returncode == 1
    assert one_error_line(r) == "could not import module 'nosuchmodule'"


def test_check_config_missing_attr() -> None:
    r = run("examples.hello:nosuchattr", "--check-config")
    assert r.returncode == 1
    assert one_error_line(r) == "module 'examples.hello' has no attribute 'nosuchattr'"


def test_check_config_user_exception_shows_traceback_once(tmp_path: Path) -> None:
    (tmp_path / "brokenapp.py").write_text("raise RuntimeError('kaboom')\n")
    r = run("brokenapp:app", "--check-config", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.count("Traceback") == 1
    assert "brokenapp.py" in r.stderr and "importlib" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        "reclusterd: error: error while importing module 'brokenapp': RuntimeError: kaboom")


def test_check_config_chdir(tmp_path: Path) -> None:
    (tmp_path / "asgimod.py").write_text("async def app(scope, receive, send):\n    pass\n")
    r = run("asgimod:app", "--chdir", str(tmp_path), "--check-config")
    assert r.returncode == 0, r.stderr
    assert "ASGI" in r.stdout and "x asyncio" in r.stdout


def test_check_config_bad_hook(tmp_path: Path) -> None:
    r = run("examples.hello:app", "--post-fork", "nosuchhooks:pf", "--check-config")
    assert r.returncode == 1
    assert one_error_line(r) == "--post-fork: could not import module 'nosuchhooks'"


def test_check_config_hook_not_callable_and_class_not_a_class() -> None:
    r = run("examples.hello:app", "--pre-request", "examples.hello:app.__name__",
            "--check-config")
    assert r.returncode == 1
    assert one_error_line(r) == ("--pre-request: 'examples.hello:app.__name__' is not "
                                 "callable (got str)")
    r = run("examples.hello:app", "--worker-class", "examples.hello:app", "--check-config")
    assert r.returncode == 1
    assert one_error_line(r) == ("--worker-class: 'examples.hello:app' is not a class "
                                 "(got function)")


def test_check_config_bad_value_exits_1() -> None:
    r = run("examples.hello:app", "--check-config", "--workers", "x")
    assert r.returncode == 1
    assert one_error_line(r).startswith("--workers: ")


CONF_FILES = sorted((ROOT / "conf").glob("*.toml"))


@pytest.mark.parametrize("path", CONF_FILES, ids=[p.name for p in CONF_FILES])
def test_check_config_on_every_conf_file(path: Path) -> None:
    with path.open("rb") as f:
        has_app = "app" in tomllib.load(f)
    args = ([] if has_app else ["examples.hello:app"]) + ["-c", str(path), "--check-config"]
    r = run(*args)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "config OK" in r.stdout


def test_keyboard_interrupt_is_quiet(monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    from reclusterd import cli, config

    def interrupted(*a: object, **k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(config, "load", interrupted)
    assert cli.main(["examples.hello:app"]) == 130
    assert "Traceback" not in capsys.readouterr().err


def test_in_process_config_error(capsys: pytest.CaptureFixture[str]) -> None:
    from reclusterd import cli

    assert cli.main(["examples.hello:app", "--backlog", "0"]) == 2
    assert capsys.readouterr().err == (
        "reclusterd: error: --backlog: must be a positive integer, got 0\n")


def test_check_config_into_a_closed_pipe_is_quiet() -> None:
    # `reclusterd APP --check-config | head -1`: the reader goes away after one line.
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen([sys.executable, "-m", "reclusterd", "examples.hello:app",
                          "--check-config"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert p.stdout is not None and p.stderr is not None
    p.stdout.close()  # nothing will read the report
    err = p.stderr.read().decode()
    assert p.wait(30) == 0
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_relative_chdir_serves(tmp_path: Path) -> None:
    """`cd /srv && reclusterd app:app --chdir run/site` (issue 14 item 12)."""
    from tests.support.http_client import get_body
    from tests.support.process import reclusterd

    site = tmp_path / "run" / "site"
    site.mkdir(parents=True)
    (site / "relapp.py").write_text(
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'from site']\n")
    with reclusterd("relapp:app", "-w", "1", "--chdir", "run/site", cwd=tmp_path) as srv:
        srv.wait_ready()
        assert get_body(srv.port) == "from site"


def test_check_config_reports_tls_websocket_reload_env_and_hooks(tmp_path: Path) -> None:
    """issue 16 "Done when": --check-config reports the setting groups added with it."""
    from tests.support.http_client import ops_make_cert

    made = ops_make_cert(tmp_path)
    if made is None:
        pytest.skip("no openssl CLI to make a certificate")
    cert, key = made
    (tmp_path / "wsapp.py").write_text(
        "async def app(scope, receive, send):\n    pass\n\n\ndef bye(worker):\n    pass\n")
    (tmp_path / ".env").write_text("DB_URL=postgres://u:hunter2@db/x\n")
    (tmp_path / "log.json").write_text('{"version": 1}')
    r = run("wsapp:app", "--certfile", cert, "--keyfile", key, "--ssl-min-version", "1.3",
            "--ws-max-size", "1048576", "--ws-ping-interval", "5", "--ws-ping-timeout", "0",
            "--ws-per-message-deflate", "false", "--reload", "--reload-include", "*.html",
            "--env-file", ".env", "-e", "TOKEN=s3cret", "--log-config", "log.json",
            "--worker-int", "wsapp:bye", "--check-config", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    report = {ln.split(":", 1)[0].strip(): ln.split(":", 1)[1].strip()
              for ln in r.stdout.splitlines()[1:]}
    assert report["bind"].endswith("(TLS)")
    assert report["tls"] == "TLSv1.3 or newer, client certificates none"
    assert report["websocket"] == ("wsproto, messages up to 1 MiB, pings every 5 s "
                                   "(no timeout), permessage-deflate off")
    assert report["reload"].startswith(f"*.py, *.html under {tmp_path} (excluding .venv")
    assert report["env"] == "DB_URL, TOKEN (from .env, -e)"
    assert report["log config"] == f"{tmp_path / 'log.json'} (dictConfig)"
    assert report["hooks"] == "worker_int=wsapp:bye"
    assert "hunter2" not in r.stdout and "s3cret" not in r.stdout   # names, never values
