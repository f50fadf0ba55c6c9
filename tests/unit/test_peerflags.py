"""Gunicorn's and Uvicorn's flags on our command line: harmless ones dropped with a
warning, renamed ones refused with the spelling to use; Gunicorn's --cert-reqs numbers."""

from __future__ import annotations

import pytest

from reclusterd import config
from reclusterd.config import ConfigError
from reclusterd.config.peerflags import strip_peer_flags


@pytest.mark.parametrize("argv", [
    ["app:app", "--worker-tmp-dir", "/dev/shm", "-w", "2"],
    ["app:app", "--worker-tmp-dir=/dev/shm", "-w", "2"],
    ["--capture-output", "app:app", "-w", "2"],
    ["app:app", "--no-sendfile", "-w", "2"],
])
def test_harmless_gunicorn_flags_are_dropped_with_a_warning(argv: list[str]) -> None:
    kept, warnings = strip_peer_flags(argv)
    assert [w for w in kept if w != "app:app"] == ["-w", "2"] and "app:app" in kept
    assert len(warnings) == 1 and "ignored" in warnings[0]


def test_load_passes_the_warning_on_and_keeps_the_rest() -> None:
    seen: list[str] = []
    cfg = config.load(["examples.hello:app", "--worker-tmp-dir", "/dev/shm", "-w", "3"],
                      {}, warn=seen.append)
    assert cfg.workers == 3 and cfg.app == "examples.hello:app"
    assert seen and seen[0].startswith("--worker-tmp-dir")


@pytest.mark.parametrize(("argv", "hint"), [
    (["app:app", "--host", "0.0.0.0"], "--bind HOST:PORT"),
    (["app:app", "--port=9000"], "--bind HOST:PORT"),
    (["app:app", "--uds", "/run/app.sock"], "--bind unix:PATH"),
    (["app:app", "--fd", "3"], "--bind fd://N"),
])
def test_uvicorn_bind_flags_name_the_bind_spelling(argv: list[str], hint: str) -> None:
    with pytest.raises(ConfigError) as e:
        config.load(argv, {})
    assert hint in str(e.value)


def test_values_after_double_dash_are_not_flags() -> None:
    kept, warnings = strip_peer_flags(["app:app", "--", "--host"])
    assert kept == ["app:app", "--", "--host"] and not warnings


@pytest.mark.parametrize(("given", "means"), [("0", "none"), ("1", "optional"),
                                              ("2", "required"), ("none", "none")])
def test_cert_reqs_takes_gunicorns_numbers(given: str, means: str) -> None:
    cfg = config.load(["examples.hello:app", "--cert-reqs", given, "--ca-certs", "/x"], {})
    assert cfg.cert_reqs == means


def test_cert_reqs_still_refuses_other_words() -> None:
    with pytest.raises(ConfigError):
        config.load(["examples.hello:app", "--cert-reqs", "3"], {})


@pytest.mark.parametrize("text", ["[app]\nworkers = 4\n", "[server]\nbind = '0.0.0.0:80'\n"])
def test_an_ini_file_that_parses_as_toml_is_named_as_such(tmp_path: object, text: str) -> None:
    from pathlib import Path
    path = Path(str(tmp_path)) / "server.ini"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        config.load(["examples.hello:app", "-c", str(path)], {})
    assert "is a section (TOML table)" in str(e.value) and "top-level keys" in str(e.value)


@pytest.mark.parametrize(("argv", "says"), [
    (["-k", "sync", "--http2-cleartext", "both"], "has no effect on the sync worker"),
    (["--http-protocols", "h1", "--http2-cleartext", "upgrade"], "h2 is not in"),
])
def test_h2c_that_cannot_work_is_warned_about(argv: list[str], says: str) -> None:
    seen: list[str] = []
    config.load(["examples.hello:app", *argv], {}, warn=seen.append)
    assert len(seen) == 1 and says in seen[0]


def test_h2c_on_a_class_that_speaks_it_is_not_warned_about() -> None:
    seen: list[str] = []
    config.load(["examples.hello:app", "--http2-cleartext", "both"], {}, warn=seen.append)
    assert seen == []
