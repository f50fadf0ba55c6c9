"""Config: precedence, validators, TOML, env, WEB_CONCURRENCY (pure, no processes)."""

from __future__ import annotations

import os
import re
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from reclusterd import config, settings
from reclusterd.config import ConfigError, load


def err(argv: list[str], env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as ei:
        load(argv, env or {})
    text = str(ei.value)
    assert "\n" not in text
    return text


def toml(tmp_path: Path, text: str) -> str:
    p = tmp_path / "c.toml"
    p.write_text(text)
    return str(p)


def test_minimal_load() -> None:
    cfg = load(["app:app", "--workers", "1"], {})
    assert cfg.app == "app:app"
    assert cfg.workers == 1
    assert cfg.bind == ("127.0.0.1:8000",)
    assert cfg.timeout == 30.0 and isinstance(cfg.timeout, float)
    assert cfg.config is None and cfg.umask is None


def test_frozen() -> None:
    cfg = load(["app:app"], {})
    with pytest.raises(FrozenInstanceError):
        cfg.workers = 3  # type: ignore[misc]


def test_bad_workers_names_flag() -> None:
    assert err(["app:app", "--workers", "abc"]) == \
        "--workers: must be a positive integer, got 'abc'"
    assert err(["app:app", "-w", "0"]).startswith("--workers: must be a positive integer")


def test_short_flags() -> None:
    cfg = load(["app:app", "-w", "3", "-b", "0.0.0.0:1", "-k", "sync", "-t", "7", "-p", "x.pid",
                "-n", "nm", "-u", "nobody", "-g", "nogroup", "-m", "027"], {})
    assert (cfg.workers, cfg.bind, cfg.worker_class, cfg.timeout) == (3, ("0.0.0.0:1",), "sync", 7)
    assert (cfg.pid, cfg.name, cfg.user, cfg.group, cfg.umask) == \
        ("x.pid", "nm", "nobody", "nogroup", 0o27)


def test_app_required_unless_given_elsewhere(tmp_path: Path) -> None:
    assert err([]).startswith("APP: missing")
    assert load([], {"RECLUSTERD_APP": "m:a"}).app == "m:a"
    assert load(["-c", toml(tmp_path, 'app = "f:a"\n')], {}).app == "f:a"


def test_bad_app_syntax() -> None:
    assert err(["not a spec"]).startswith("APP: expected module:attr")
    assert load(["pkg.mod:obj.attr"], {}).app == "pkg.mod:obj.attr"
    assert load(["pkg.mod"], {}).app == "pkg.mod"


def test_unknown_option_and_missing_value() -> None:
    assert err(["app:app", "--bogus"]).startswith("--bogus: unknown option")
    assert err(["app:app", "--workers"]) == "--workers: expected one argument"
    assert err(["app:app", "--work", "2"]).startswith("--work: unknown option")  # no abbrev


@pytest.mark.parametrize("argv", [["--wrokers", "3"], ["--wrokers=3"], ["-w", "2", "--wrokers"]])
def test_unknown_flag_suggests_the_near_one(argv: list[str]) -> None:
    assert err(["app:app", *argv]) == \
        "--wrokers: unknown option (see --help); did you mean --workers?"


def test_unknown_flag_far_from_any_has_no_suggestion() -> None:
    assert err(["app:app", "--zzzzzzzz"]) == "--zzzzzzzz: unknown option (see --help)"


def test_unknown_env_var_warns_with_suggestion() -> None:
    env = {"RECLUSTERD_WORKRS": "3", "RECLUSTERD_WORKERS": "2", "RECLUSTERD_FDS": "[]",
           "RECLUSTERD_QQQQQQQQ": "1", "OTHER_WORKRS": "1"}
    assert config.unknown_env(env) == [
        "RECLUSTERD_QQQQQQQQ: unknown setting (ignored)",
        "RECLUSTERD_WORKRS: unknown setting (ignored); did you mean RECLUSTERD_WORKERS?"]
    assert load(["app:app"], env).workers == 2  # a warning, not an error


def test_every_reclusterd_env_name_in_the_tree_is_known() -> None:
    """A RECLUSTERD_* name used by our own code or tools must not draw the unknown warning."""
    root = Path(__file__).resolve().parents[2]
    names: set[str] = set()
    for folder in ("reclusterd", "loadtests", "tests", "conf", "examples"):
        for path in (root / folder).rglob("*"):
            if path.is_file() and path.suffix in (".py", ".toml", ".service", ".yaml", ".md"):
                names.update(re.findall(r"\bRECLUSTERD_[A-Z][A-Z_]*[A-Z]\b", path.read_text()))
    names -= {"RECLUSTERD_WORKRS", "RECLUSTERD_QQQQQQQQ"}  # the typos tested here
    assert config.unknown_env(dict.fromkeys(names, "")) == []


def test_precedence_cli_env_file_default(tmp_path: Path) -> None:
    path = toml(tmp_path, "workers = 2\nthreads = 8\nkeep_alive = 9\nbacklog = 10\n")
    env = {"RECLUSTERD_WORKERS": "3", "RECLUSTERD_THREADS": "7"}
    cfg = load(["app:app", "-c", path, "--workers", "4"], env)
    assert cfg.workers == 4        # cli beats env and file
    assert cfg.threads == 7        # env beats file
    assert cfg.keep_alive == 9.0   # file beats default
    assert cfg.backlog == 10
    assert cfg.graceful_timeout == 30.0
    assert cfg.config == path


def test_bool_cli_overrides_file(tmp_path: Path) -> None:
    path = toml(tmp_path, "preload = true\nfactory = true\n")
    cfg = load(["app:app", "-c", path, "--no-preload"], {})
    assert cfg.preload is False and cfg.factory is True
    assert load(["app:app", "--reuse-port"], {}).reuse_port is True


def test_config_from_env_and_toml_path_override(tmp_path: Path) -> None:
    a = toml(tmp_path, "workers = 5\n")
    b = tmp_path / "b.toml"
    b.write_text("workers = 6\n")
    assert load(["app:app"], {"RECLUSTERD_CONFIG": a}).workers == 5
    assert load(["app:app", "-c", a], {}, toml_path=str(b)).workers == 6
    assert load(["app:app", "-c", a], {}, toml_path=str(b)).config == str(b)


def test_web_concurrency() -> None:
    assert load(["app:app"], {"WEB_CONCURRENCY": "7"}).workers == 7
    assert load(["app:app"], {}).workers == (os.cpu_count() or 1)
    assert load(["app:app", "-w", "2"], {"WEB_CONCURRENCY": "7"}).workers == 2
    assert load(["app:app"], {"WEB_CONCURRENCY": "7", "RECLUSTERD_WORKERS": "3"}).workers == 3
    assert err(["app:app"], {"WEB_CONCURRENCY": "lots"}).startswith("WEB_CONCURRENCY:")
    # a bad WEB_CONCURRENCY does not matter when workers is set explicitly
    assert load(["app:app", "-w", "1"], {"WEB_CONCURRENCY": "lots"}).workers == 1


def test_web_concurrency_below_file(tmp_path: Path) -> None:
    path = toml(tmp_path, "workers = 2\n")
    assert load(["app:app", "-c", path], {"WEB_CONCURRENCY": "9"}).workers == 2


def test_env_values_and_errors() -> None:
    env = {"RECLUSTERD_BIND": "127.0.0.1:1, unix:/tmp/x.sock", "RECLUSTERD_PRELOAD": "yes",
           "RECLUSTERD_TIMEOUT": "2.5", "RECLUSTERD_UMASK": "0o22", "RECLUSTERD_FDS": "3"}
    cfg = load(["app:app"], env)
    assert cfg.bind == ("127.0.0.1:1", "unix:/tmp/x.sock")
    assert cfg.preload is True and cfg.timeout == 2.5 and cfg.umask == 0o22
    assert err(["app:app"], {"RECLUSTERD_PRELOAD": "maybe"}) == \
        "RECLUSTERD_PRELOAD: must be true or false, got 'maybe'"
    assert err(["app:app"], {"RECLUSTERD_THREADS": "-1"}).startswith("RECLUSTERD_THREADS:")


def test_bind_empty_host_means_all_ipv4_interfaces() -> None:
    # Gunicorn's and Cloud Run's "--bind :$PORT" idiom.
    assert load(["app:app", "-b", ":8080"], {}).bind == ("0.0.0.0:8080",)


def test_factory_call_syntax_points_at_factory_flag() -> None:
    msg = err(["myapp:create_app()"])
    assert msg.startswith("APP: expected module:attr")
    assert "'myapp:create_app' with --factory" in msg


def test_bind_repeatable_and_forms() -> None:
    cfg = load(["app:app", "-b", "127.0.0.1:0", "--bind", "[::1]:8080", "-b", "unix:/tmp/s",
                "-b", "fd://3", "-b", "localhost:65535"], {})
    assert cfg.bind == ("127.0.0.1:0", "[::1]:8080", "unix:/tmp/s", "fd://3", "localhost:65535")


@pytest.mark.parametrize("addr", [
    "127.0.0.1:65536", "127.0.0.1:-1", ":70000", ":", "::1:80", "[zz]:80",
    "unix:", "fd://", "fd://x", "host name:80", "127.0.0.1:http",
])
def test_bad_bind(addr: str) -> None:
    assert err(["app:app", "-b", addr]).startswith("--bind: ")


@pytest.mark.parametrize(("flag", "value"), [
    ("--threads", "0"), ("--worker-connections", "0"), ("--backlog", "0"),
    ("--max-requests", "-1"), ("--max-requests-jitter", "x"), ("--max-worker-memory", "-5"),
    ("--limit-request-line", "-1"), ("--limit-request-fields", "1.5"),
    ("--limit-request-field-size", "x"), ("--limit-request-body", "-1"),
    ("--timeout", "-1"), ("--timeout", "nan"), ("--boot-timeout", "soon"),
    ("--graceful-timeout", "-0.1"), ("--keep-alive", "inf"), ("--header-timeout", "x"),
    ("--backoff", "-1"), ("--shutdown-delay", "x"),
    ("--worker-class", "gevent"), ("--worker-class", "mod:"), ("--http", "curl"),
    ("--loop", "trio"), ("--lifespan", "maybe"), ("--ws", "websockets2"),
    ("--log-level", "loud"), ("--umask", "999"), ("--umask", "0o1000"),
    ("--forwarded-allow-ips", "10.0.0.0/33"), ("--forwarded-allow-ips", "example.com"),
    ("--post-fork", "nocolon"), ("--pre-request", "a:b:c"), ("--post-request", "1mod:f"),
    ("--status-bind", "nope:port"), ("--chdir", "/no/such/dir/xyz"),
])
def test_bad_values_name_the_flag(flag: str, value: str) -> None:
    assert err(["app:app", flag, value]).startswith(f"{flag}: ")


def test_good_values() -> None:
    cfg = load(["app:app", "-k", "myworkers:Special", "--http", "h11", "--loop", "uvloop",
                "--lifespan", "off", "--ws", "none", "--log-level", "debug",
                "--forwarded-allow-ips", "10.0.0.0/8, ::1,192.168.1.1", "--post-fork", "h:pf",
                "--status-bind", "127.0.0.1:9100", "--timeout", "0", "--umask", "0",
                "--limit-request-field_size", "100", "--log-file", "-"], {})
    assert cfg.worker_class == "myworkers:Special"
    assert cfg.forwarded_allow_ips == ("10.0.0.0/8", "::1", "192.168.1.1")
    assert (cfg.http, cfg.loop, cfg.lifespan, cfg.ws) == ("h11", "uvloop", "off", "none")
    assert cfg.timeout == 0 and cfg.umask == 0 and cfg.limit_request_field_size == 100
    assert cfg.error_logfile == "-"
    assert load(["app:app", "--forwarded-allow-ips", "*"], {}).forwarded_allow_ips == ("*",)


def test_keyfile_needs_certfile() -> None:
    assert err(["app:app", "--keyfile", "k.pem"]).startswith("--keyfile: needs --certfile")


def test_toml_types_and_lists(tmp_path: Path) -> None:
    path = toml(tmp_path, 'bind = ["127.0.0.1:1", "[::1]:2"]\ntimeout = 5\numask = 0o22\n'
                          'forwarded_allow_ips = "10.0.0.1,10.0.0.2"\nfactory = false\n'
                          'pre_request = "h:pre"\n')
    cfg = load(["app:app", "-c", path], {})
    assert cfg.bind == ("127.0.0.1:1", "[::1]:2")
    assert cfg.timeout == 5.0 and isinstance(cfg.timeout, float)
    assert cfg.umask == 0o22
    assert cfg.forwarded_allow_ips == ("10.0.0.1", "10.0.0.2")
    assert cfg.pre_request == "h:pre"


@pytest.mark.parametrize(("text", "start"), [
    ('workers = "4"\n', "workers: must be a positive integer, got '4'"),
    ("workers = true\n", "workers: must be a positive integer"),
    ("timeout = \"30\"\n", "timeout: must be a non-negative number"),
    ("preload = 1\n", "preload: must be true or false"),
    ("bind = [1, 2]\n", "bind: must be a list of strings"),
    ("name = 3\n", "name: must be a string"),
    ("workrs = 4\n", "workrs: unknown setting"),
    ("[server]\nworkers = 4\n", "server: [server] is a section (TOML table)"),
    ('config = "x.toml"\n', "config: cannot be set in a config file"),
    ("check_config = true\n", "check_config: cannot be set in a config file"),
    ("workers = \n", "--config: invalid TOML"),
])
def test_toml_errors(tmp_path: Path, text: str, start: str) -> None:
    path = toml(tmp_path, text)
    msg = err(["app:app", "-c", path])
    assert msg.startswith(start), msg
    assert path in msg


def test_toml_unknown_key_suggests(tmp_path: Path) -> None:
    path = toml(tmp_path, "workrs = 4\n")
    assert err(["app:app", "-c", path]) == \
        f"workrs: unknown setting (in {path}); did you mean workers?"


ACCEPTED = ("use a TOML file (.toml, keys are setting names: workers = 4) or a Gunicorn "
            "config file (.py)")


def test_python_config_file_is_read_as_gunicorn_config(tmp_path: Path) -> None:
    # Valid TOML as well as valid Python: the extension decides.
    path = tmp_path / "gunicorn.conf.py"
    path.write_text('workers = 4\nbind = "0.0.0.0:8000"\n')
    cfg = load(["app:app", "-c", str(path)], {})
    assert (cfg.workers, cfg.bind) == (4, ("0.0.0.0:8000",))


@pytest.mark.parametrize(("name", "content"), [
    ("c.yaml", b"workers: 4\n"), ("c.json", b'{"workers": 4}'),
    ("c.ini", b"[server]\nbind = 0.0.0.0:8000\n"),
    ("config", b"\xff\xfe\x00binary"),
])
def test_other_formats_name_the_accepted_one(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    msg = err(["app:app", "-c", str(path)])
    assert msg.startswith(f"--config: {str(path)!r} is not TOML (") and msg.endswith(ACCEPTED)


def test_toml_content_in_a_file_of_any_name_is_read(tmp_path: Path) -> None:
    path = tmp_path / "reclusterd.conf"
    path.write_text("workers = 3\n")
    assert load(["app:app", "-c", str(path)], {}).workers == 3


def test_toml_missing_file(tmp_path: Path) -> None:
    assert err(["app:app", "-c", str(tmp_path / "nope.toml")]).startswith("--config: cannot read")


def test_version_requested() -> None:
    assert config.version_requested(["--version"])
    assert config.version_requested(["app:app", "--version"])
    assert config.version_requested(["--bogus", "--version"])
    assert config.version_requested(["-v"]) and config.version_requested(["--bogus", "-v"])
    assert not config.version_requested(["app:app"])
    assert config.version_text().startswith("reclusterd ")


def test_reload_ignored() -> None:
    old = load(["app:app", "-b", "127.0.0.1:1", "-w", "2"], {})
    new = load(["app:app", "-b", "127.0.0.1:2", "-w", "3"], {})
    assert config.reload_ignored(old, new) == ["bind"]


def test_config_made_directly() -> None:
    cfg = config.make(app="x:y")
    assert cfg.bind == ("127.0.0.1:8000",) and cfg.threads == settings.AUTO


def test_relative_chdir_made_absolute_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    (tmp_path / "run" / "site").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    cfg = load(["app:app", "--chdir", "run/site"], {})
    assert cfg.chdir == str(tmp_path / "run" / "site")


@pytest.mark.parametrize(("argv", "want"), [
    ([], True), (["--ws-per-message-deflate", "false"], False),
    (["--ws-per-message-deflate=on"], True), (["--ws-per-message-deflate", "0"], False),
    (["--no-ws-per-message-deflate"], False),
    (["--no-ws-per-message-deflate", "--ws-per-message-deflate", "yes"], True)])
def test_bool_flag_that_takes_a_value(argv: list[str], want: bool) -> None:
    """Uvicorn's `--ws-per-message-deflate BOOL`; `--no-...` works too."""
    assert load(["a:app", *argv], {}).ws_per_message_deflate is want


def test_valued_bool_errors_and_bare_bools_keep_app() -> None:
    assert err(["a:app", "--ws-per-message-deflate", "maybe"]) == (
        "--ws-per-message-deflate: must be true or false, got 'maybe'")
    assert "expected one argument" in err(["a:app", "--ws-per-message-deflate"])
    # only settings that opt in take a value: a bare bool never eats APP
    cfg = load(["--factory", "examples.hello:app"], {})
    assert (cfg.app, cfg.factory) == ("examples.hello:app", True)
    opted = [s.name for s in config.SETTINGS if s.takes_value]
    assert opted == ["ws_per_message_deflate"]


def test_threads_take_auto_or_a_positive_integer(tmp_path: Path) -> None:
    assert load(["app:app", "--threads", "auto"], {}).threads == settings.AUTO
    assert load(["app:app"], {"RECLUSTERD_THREADS": "AUTO"}).threads == settings.AUTO
    assert load(["app:app", "--threads", "8"], {}).threads == 8
    path = tmp_path / "c.toml"
    path.write_text('threads = "auto"\n')
    assert load(["app:app", "-c", str(path)], {}).threads == settings.AUTO
    path.write_text("threads = 0\n")
    with pytest.raises(ConfigError, match="auto or a positive integer"):
        load(["app:app", "-c", str(path)], {})


@pytest.mark.parametrize(("given", "got"), [
    ("gthread", "thread"), ("sync", "sync"), ("uvicorn.workers.UvicornWorker", "asyncio"),
    ("uvicorn_worker.UvicornWorker", "asyncio"), ("egg:gunicorn#gthread", "thread"),
    ("thread", "thread"), ("mypkg.workers:Custom", "mypkg.workers:Custom"),
])
def test_gunicorn_worker_class_names_on_the_command_line(given: str, got: str) -> None:
    """A pasted `gunicorn -k gthread ...` works as in a gunicorn.conf.py (one table)."""
    assert config.load(["x:app", "-k", given], {}).worker_class == got
    assert config.load(["x:app"], {"RECLUSTERD_WORKER_CLASS": given}).worker_class == got


def test_green_worker_classes_are_refused_with_a_reason() -> None:
    with pytest.raises(config.ConfigError, match="--worker-class"):
        config.load(["x:app", "-k", "gevent"], {})
