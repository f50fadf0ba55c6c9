"""--env-file / -e: parsing (python-dotenv), precedence, apply and undo, config errors."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("dotenv")

from reclusterd import appenv, config  # noqa: E402
from reclusterd.config import ConfigError, load  # noqa: E402


def test_dotenv_file_and_env_pairs(tmp_path: Path) -> None:
    f = tmp_path / ".env"
    f.write_text("# comment\nexport A=1\nB='two words'\nC=\"x=${A}\"\nBARE\nD=keep\n")
    cfg = load(["app:app", "--env-file", str(f), "-e", "D=over", "--env", "E=a,b"], {})
    assert cfg.env == ("D=over", "E=a,b")
    assert appenv.app_environ(cfg) == {"A": "1", "B": "two words", "C": "x=1", "D": "over",
                                       "E": "a,b"}


def test_env_from_environment_is_one_per_line() -> None:
    cfg = load(["app:app"], {"RECLUSTERD_ENV": "A=1,2\nB=3"})
    assert cfg.env == ("A=1,2", "B=3")


@pytest.mark.parametrize(("argv", "says"), [
    (["-e", "NOVALUE"], "--env: expected KEY=VALUE, got 'NOVALUE'"),
    (["-e", "=x"], "--env: expected KEY=VALUE, got '=x'"),
    (["--env-file", "/nonexistent/.env"], "--env-file: cannot read '/nonexistent/.env'"),
])
def test_bad_values_are_one_line(argv: list[str], says: str) -> None:
    with pytest.raises(ConfigError) as ei:
        load(["app:app", *argv], {})
    assert str(ei.value).startswith(says) and "\n" not in str(ei.value)


def test_unparsable_line_names_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / ".env"
    f.write_text("A=1\nB='unterminated\n")
    with pytest.raises(ConfigError) as ei:
        load(["app:app", "--env-file", str(f)], {})
    assert str(ei.value).startswith(f"--env-file: {f}:2: cannot parse")


def test_apply_sets_and_undoes_on_reapply() -> None:
    env = {"KEEP": "orig", "OTHER": "x"}
    appenv.apply({"KEEP": "new", "ADDED": "1"}, env)
    assert env == {"KEEP": "new", "OTHER": "x", "ADDED": "1"}
    appenv.apply({"ADDED": "2"}, env)      # a HUP whose file no longer sets KEEP
    assert env == {"KEEP": "orig", "OTHER": "x", "ADDED": "2"}
    appenv.apply({}, env)
    assert env == {"KEEP": "orig", "OTHER": "x"}


def test_raw_env_of_gunicorn_file_is_env(tmp_path: Path) -> None:
    f = tmp_path / "g.py"
    f.write_text("raw_env = ['A=1']\n")
    assert config.load(["app:app", "-c", str(f)], {}).env == ("A=1",)
