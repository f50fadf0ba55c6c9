"""Gunicorn .py config files: executed, mapped through the one table, hooks checked."""

from __future__ import annotations

import multiprocessing
import textwrap
from pathlib import Path

import pytest

from reclusterd import config, gunicorn_map, hooks, settings
from reclusterd.apploader import import_callable, load_hooks
from reclusterd.config import ConfigError, hook_specs, load

ROOT = Path(__file__).resolve().parents[2]

REALISTIC = '''
import multiprocessing
import os

bind = ["127.0.0.1:8123", "unix:/tmp/app.sock"]
workers = multiprocessing.cpu_count() * 2 + 1
worker_class = "gthread"
threads = 8
timeout = 60
graceful_timeout = 20
keepalive = 2
max_requests = 1000
max_requests_jitter = 50
accesslog = "-"
errorlog = "-"
loglevel = "WARNING"
proc_name = "shop"
preload_app = True
raw_env = ["DJANGO_SETTINGS_MODULE=site.settings", "LIST=a,b"]
forwarded_allow_ips = "10.0.0.0/8,127.0.0.1"
limit_request_line = 4094
daemon = False                       # Gunicorn's default: fine
HOOK_LOG = os.path.join(os.path.dirname(__file__), "hooks.log")


def _log(line):
    with open(HOOK_LOG, "a") as f:
        f.write(line + "\\n")


def on_starting(server):
    _log("on_starting")


def when_ready(server):
    _log("when_ready")


def post_fork(server, worker):
    _log(f"post_fork {worker.pid} {server.cfg.name}")


def pre_request(worker, req):
    _log(f"pre_request {req.method} {req.uri}")


def post_request(worker, req, environ, resp):
    _log(f"post_request {req.path} {resp.status}")


def nworkers_changed(server, new_value, old_value):
    _log(f"nworkers {old_value} -> {new_value}")
'''


def write(tmp_path: Path, text: str, name: str = "gunicorn.conf.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def err(argv: list[str], env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as ei:
        load(argv, env or {}, warn=lambda m: None)
    text = str(ei.value)
    assert "\n" not in text
    return text


def test_realistic_file_maps_every_setting(tmp_path: Path) -> None:
    path = write(tmp_path, REALISTIC)
    warnings: list[str] = []
    cfg = load(["app:app", "-c", path], {}, warn=warnings.append)
    assert warnings == []
    assert cfg.bind == ("127.0.0.1:8123", "unix:/tmp/app.sock")
    assert cfg.workers == multiprocessing.cpu_count() * 2 + 1
    assert (cfg.worker_class, cfg.threads) == ("thread", 8)
    assert (cfg.timeout, cfg.graceful_timeout, cfg.keep_alive) == (60.0, 20.0, 2.0)
    assert (cfg.max_requests, cfg.max_requests_jitter) == (1000, 50)
    assert (cfg.access_logfile, cfg.error_logfile, cfg.log_level) == ("-", "-", "warning")
    assert (cfg.name, cfg.preload, cfg.limit_request_line) == ("shop", True, 4094)
    assert cfg.env == ("DJANGO_SETTINGS_MODULE=site.settings", "LIST=a,b")
    assert cfg.forwarded_allow_ips == ("10.0.0.0/8", "127.0.0.1")
    assert cfg.config == path


def test_hooks_carried_as_specs_and_callable_as_reclusterd_calls_them(tmp_path: Path) -> None:
    path = write(tmp_path, REALISTIC)
    cfg = load(["app:app", "-c", path, "--name", "shop"], {}, warn=lambda m: None)
    assert set(hook_specs(cfg)) == {"on_starting", "when_ready", "post_fork",
                                         "pre_request", "post_request", "nworkers_changed"}
    loaded = load_hooks(cfg)

    class Info:
        pid, generation = 4711, 1

    Info.cfg = cfg  # type: ignore[attr-defined]
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/a", "QUERY_STRING": "x=1",
               "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "h"}
    assert hooks.call(loaded, "on_starting", object())
    assert hooks.call(loaded, "post_fork", Info())
    assert hooks.call(loaded, "pre_request", Info(), environ)
    assert hooks.call(loaded, "post_request", Info(), environ, 204)
    assert hooks.call(loaded, "nworkers_changed", object(), 3, 2)
    scope = {"type": "http", "method": "POST", "path": "/s", "query_string": b"",
             "http_version": "2", "headers": [(b"host", b"h")]}
    assert hooks.call(loaded, "pre_request", Info(), scope)
    assert (tmp_path / "hooks.log").read_text().splitlines() == [
        "on_starting", "post_fork 4711 shop", "pre_request GET /a?x=1",
        "post_request /a 204", "nworkers 2 -> 3", "pre_request POST /s"]


def test_precedence_cli_env_file(tmp_path: Path) -> None:
    path = write(tmp_path, "workers = 3\ntimeout = 10\nkeepalive = 9\n")
    cfg = load(["app:app", "-c", path, "--workers", "5"], {"RECLUSTERD_TIMEOUT": "7"},
               warn=lambda m: None)
    assert (cfg.workers, cfg.timeout, cfg.keep_alive) == (5, 7.0, 9.0)


def test_cli_hook_beats_file_hook(tmp_path: Path) -> None:
    path = write(tmp_path, "def post_fork(server, worker):\n    pass\n")
    cfg = load(["app:app", "-c", path, "--post-fork", "mod:fn"], {}, warn=lambda m: None)
    assert cfg.post_fork == "mod:fn"


def test_non_settings_ignored_as_gunicorn_does(tmp_path: Path) -> None:
    path = write(tmp_path, "import os, multiprocessing\nname_of_thing = 1\n"
                           "def helper():\n    pass\nworkers = 2\n")
    assert load(["app:app", "-c", path], {}, warn=lambda m: None).workers == 2


@pytest.mark.parametrize(("text", "says"), [
    ("daemon = True\n", "daemon: Gunicorn setting not supported: run under systemd"),
    ("statsd_host = 'localhost:8125'\n", "statsd_host: Gunicorn setting not supported"),
    ("worker_class = 'gevent'\n", "worker_class: 'gevent': green-thread workers"),
    ("worker_class = 'myproj.workers.Custom'\n", "worker_class: 'myproj.workers.Custom' is "
     "a Gunicorn worker class"),
    ("keepalive = 'long'\n", "keepalive: must be a non-negative number, got 'long'"),
    ("cert_reqs = 7\n", "cert_reqs: must be ssl.CERT_NONE"),
])
def test_bad_or_unsupported_setting_names_it(tmp_path: Path, text: str, says: str) -> None:
    path = write(tmp_path, text)
    msg = err(["app:app", "-c", path])
    assert msg.startswith(says), msg
    assert path in msg


def test_harmless_settings_warn(tmp_path: Path) -> None:
    path = write(tmp_path, "worker_tmp_dir = '/dev/shm'\ncapture_output = True\n"
                           "capture_output_x = 1\n")
    warnings: list[str] = []
    load(["app:app", "-c", path], {}, warn=warnings.append)
    assert [w.split(":")[0] for w in warnings] == ["worker_tmp_dir", "capture_output"]


def test_conversions(tmp_path: Path) -> None:
    path = write(tmp_path, "import ssl\nbind = '127.0.0.1:9'\nworker_class = "
                           "'uvicorn.workers.UvicornWorker'\nuser = 1000\ngroup = 1000\n"
                           "umask = 0o22\ncert_reqs = ssl.CERT_REQUIRED\nca_certs = 'ca.pem'\n"
                           "raw_env = 'ONE=1'\nwsgi_app = 'site.wsgi:application'\n")
    cfg = load(["-c", path], {}, warn=lambda m: None)
    assert cfg.bind == ("127.0.0.1:9",) and cfg.worker_class == "asyncio"
    assert (cfg.user, cfg.group, cfg.umask) == ("1000", "1000", 0o22)
    assert cfg.cert_reqs == "required" and cfg.env == ("ONE=1",)
    assert cfg.app == "site.wsgi:application"


@pytest.mark.parametrize(("text", "where", "says"), [
    ("workers = 2\nbind = [\n", 2, "SyntaxError: '[' was never closed"),
    ("workers = 2\nx = 1 / 0\n", 2, "ZeroDivisionError: division by zero"),
    ("import no_such_module_here\n", 1, "ModuleNotFoundError"),
])
def test_error_in_file_names_file_and_line(tmp_path: Path, text: str, where: int,
                                           says: str) -> None:
    path = write(tmp_path, text)
    msg = err(["app:app", "-c", path])
    assert msg.startswith(f"--config: {path}:{where}: ") and says in msg, msg


@pytest.mark.parametrize(("text", "says"), [
    ("def post_fork(server):\n    pass\n", "post_fork must take 2 argument(s) (server, worker)"),
    ("def on_exit(server, extra):\n    pass\n", "on_exit must take 1 argument(s) (server)"),
    ("when_ready = 3\n", "when_ready must be a function, got int"),
])
def test_bad_hook_is_an_error(tmp_path: Path, text: str, says: str) -> None:
    path = write(tmp_path, text)
    assert says in err(["app:app", "-c", path])


def test_hook_with_defaults_or_varargs_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, "def pre_fork(*args):\n    pass\n"
                           "def on_exit(server, extra=None):\n    pass\n")
    cfg = load(["app:app", "-c", path], {}, warn=lambda m: None)
    assert cfg.pre_fork and cfg.on_exit


def test_toml_hooks_by_spec_checked_for_arity(tmp_path: Path) -> None:
    mod = tmp_path / "gh_hooks_mod.py"
    mod.write_text("def ready(server):\n    pass\ndef bad(a, b, c):\n    pass\n")
    import sys
    sys.path.insert(0, str(tmp_path))
    try:
        ok = config.make(app="a:b", when_ready="gh_hooks_mod:ready")
        assert load_hooks(ok)["when_ready"] is import_callable("gh_hooks_mod:ready", "x")
        bad = config.make(app="a:b", on_exit="gh_hooks_mod:bad")
        with pytest.raises(Exception, match="--on-exit: gh_hooks_mod:bad: on_exit must take 1"):
            load_hooks(bad)
    finally:
        sys.path.remove(str(tmp_path))


def test_a_hook_that_raises_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def boom(server: object) -> None:
        raise RuntimeError("x")

    assert hooks.call({"on_exit": boom}, "on_exit", None) is False
    assert "on_exit hook failed" in caplog.text


def test_every_hook_has_a_setting_and_every_target_exists_or_is_optional() -> None:
    for h in hooks.HOOKS:
        assert h.name in settings.BY_NAME
    optional = {"log_config", "reload"}  # other branches
    for e in gunicorn_map.EQUIVALENTS:
        if e.ours is not None and e.ours not in optional:
            assert e.ours in settings.BY_NAME, e.gunicorn
        assert e.ours is None or e.ours in settings.BY_NAME or e.is_default(e.default)


def test_readme_gunicorn_table_matches_generator() -> None:
    text = (ROOT / "README.md").read_text()
    start, end = "<!-- gunicorn:start -->", "<!-- gunicorn:end -->"
    block = text.split(start, 1)[1].split(end, 1)[0]
    assert block.strip() == gunicorn_map.render_markdown().strip(), (
        "README's Gunicorn table drifted: paste `python -m reclusterd.settings --gunicorn`")


@pytest.mark.parametrize(("mode", "on"), [("'auto'", True), ("'v2'", True), ("'off'", False),
                                          ("True", True)])
def test_proxy_protocol_modes(tmp_path: Path, mode: str, on: bool) -> None:
    path = write(tmp_path, f"wsgi_app = 'a:b'\nproxy_protocol = {mode}\n"
                           "proxy_allow_ips = '10.0.0.1,10.0.0.2'\n")
    cfg = load(["-c", path], {}, warn=lambda m: None)
    assert cfg.proxy_protocol is on and cfg.proxy_allow_ips == ("10.0.0.1", "10.0.0.2")
