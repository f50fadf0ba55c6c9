"""The settings table is the single source: Config, CLI, docs and conf/ agree with it."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import tomllib

from reclusterd import config, settings
from reclusterd.settings import SETTINGS
from reclusterd.settings import docs as settings_docs

ROOT = Path(__file__).resolve().parents[2]


def test_names_unique_and_match_config_fields() -> None:
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names))
    assert names == list(config.CONFIG_FIELDS)


def test_config_fields_typed_from_table() -> None:
    """Config declares each setting once more only as an annotation: same name, same type."""
    hints = typing.get_type_hints(config.Config)
    assert list(hints) == [s.name for s in SETTINGS]
    for s in SETTINGS:
        assert hints[s.name] == s.python_type, s.name


def test_config_has_no_defaults_of_its_own() -> None:
    """The table is the only list of defaults: Config's fields have none."""
    for f in dataclasses.fields(config.Config):
        assert f.default is dataclasses.MISSING, f.name
        assert f.default_factory is dataclasses.MISSING, f.name


def test_make_fills_table_defaults() -> None:
    cfg = config.make(app="x:y", workers=2)
    for s in SETTINGS:
        if s.name not in ("app", "workers"):
            assert getattr(cfg, s.name) == s.default, s.name
    assert (cfg.app, cfg.workers) == ("x:y", 2)


def test_long_flag_is_attribute_name() -> None:
    for s in SETTINGS:
        if s.name in ("app",):
            continue
        assert s.flag == "--" + s.name.replace("_", "-"), s.name
        assert s.env == "RECLUSTERD_" + s.name.upper()
        assert s.help.endswith("."), s.name


def test_defaults_pass_their_own_validation() -> None:
    for s in SETTINGS:
        if s.default is not None:
            assert s.check(s.default) == s.default, s.name
        if s.example is not None:
            s.from_toml(s.example)


def test_every_flag_parses() -> None:
    parser = config.build_parser()
    for s in SETTINGS:
        for flag in s.flags:
            assert flag in parser._option_string_actions, flag  # noqa: SLF001


def test_design_flags_present() -> None:
    flags = {f for s in SETTINGS for f in s.flags}
    for f in ("-w", "--workers", "-b", "--bind", "-k", "--worker-class", "--threads",
              "--worker-connections", "--http", "--loop", "-t", "--timeout", "--boot-timeout",
              "--graceful-timeout", "--keep-alive", "--header-timeout", "--max-requests",
              "--max-requests-jitter", "--max-worker-memory", "--backoff", "-c", "--config",
              "--check-config", "--chdir", "-p", "--pid", "--name", "--access-logfile",
              "--access-logformat", "--error-logfile", "--log-level", "--certfile",
              "--keyfile", "--ca-certs", "--forwarded-allow-ips", "--limit-request-line",
              "--limit-request-fields", "--limit-request-field-size", "--status-bind",
              "--shutdown-delay", "--limit-request-body", "--factory", "--lifespan", "--ws",
              "--post-fork", "--reuse-port", "--backlog", "--preload", "--user", "--group",
              "--umask", "--ciphers"):
        assert f in flags, f


def test_markdown_lists_every_setting() -> None:
    md = settings_docs.render_markdown()
    for s in SETTINGS:
        assert f"`{s.env}`" in md
    assert md.count("\n") == len(SETTINGS) + 2


def test_generated_toml_parses_and_every_line_uncomments(tmp_path: Path) -> None:
    text = settings_docs.render_toml()
    assert tomllib.loads(text) == {}
    keys = [ln[2:] for ln in text.splitlines() if ln.startswith("# ") and " = " in ln
            and ln[2:].split(" = ")[0] in settings.BY_NAME]
    assert len(keys) == len([s for s in SETTINGS if "file" in s.sources])
    p = tmp_path / "all.toml"
    # every documented value is valid (chdir's example directory and env_file's and
    # log_config's example files need not exist here)
    p.write_text("\n".join(k for k in keys
                           if not k.startswith(("chdir ", "env_file ", "log_config ")))
                 + "\n")
    cfg = config.load(["-c", str(p)], {})
    assert cfg.app == "examples.hello:app"


def test_conf_toml_matches_generator() -> None:
    committed = (ROOT / "conf" / "reclusterd.toml").read_text()
    assert committed == settings_docs.render_toml(), (
        "conf/reclusterd.toml drifted: run `python -m reclusterd.settings --toml "
        "> conf/reclusterd.toml`")


def test_readme_reference_matches_generator() -> None:
    """README's CLI reference, between the settings markers, is the generated table."""
    readme = ROOT / "README.md"
    text = readme.read_text() if readme.exists() else ""
    start, end = "<!-- settings:start -->", "<!-- settings:end -->"
    if start not in text or end not in text:
        pytest.skip("README.md has no generated settings reference yet")
    block = text.split(start, 1)[1].split(end, 1)[0]
    assert block.strip() == settings_docs.render_markdown().strip(), (
        "README's settings reference drifted: paste `python -m reclusterd.settings --markdown`")


@pytest.mark.parametrize("arg", ["--markdown", "--toml"])
def test_module_main(arg: str) -> None:
    out = subprocess.run([sys.executable, "-m", "reclusterd.settings", arg], cwd=ROOT,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    assert "workers" in out.stdout


def test_module_main_usage() -> None:
    assert settings_docs.main(["--nope"]) == 2


def test_hook_help_says_what_the_hook_receives() -> None:
    """--help and README describe the arguments the workers really pass (issue 11 item 8)."""
    from reclusterd.workers.base import Worker
    from reclusterd.workers.boot import WorkerInfo

    post_fork = settings.BY_NAME["post_fork"].help
    assert "module:func(info)" in post_fork
    for field in dataclasses.fields(WorkerInfo):
        assert f".{field.name}" in post_fork, field.name
    assert "module:func(worker, environ)" in settings.BY_NAME["pre_request"].help
    assert "module:func(worker, environ, status)" in settings.BY_NAME["post_request"].help
    for attr in ("pid", "generation", "cfg"):
        assert f".{attr}" in settings.BY_NAME["pre_request"].help
        assert attr in Worker.__init__.__code__.co_names, attr  # the worker really has it
    readme = (ROOT / "README.md").read_text()
    for call in ("post_fork(info)", "pre_request(worker, environ)",
                 "post_request(worker, environ, status)"):
        assert f"`{call}`" in readme, call
