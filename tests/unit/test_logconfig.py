"""--log-config files read and checked without applying them (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reclusterd import config, logconfig


def test_json_and_toml_are_dictconfig_ini_is_fileconfig(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"loggers": {}}')
    (tmp_path / "b.toml").write_text('version = 1\n[loggers."reclusterd.access"]\n')
    (tmp_path / "c.conf").write_text("[loggers]\nkeys=root\n[handlers]\nkeys=\n"
                                     "[formatters]\nkeys=\n")
    a = logconfig.read(str(tmp_path / "a.json"))
    assert a.kind == "dictConfig" and a.schema == {"loggers": {}, "version": 1}
    assert logconfig.read(str(tmp_path / "b.toml")).schema == {
        "version": 1, "loggers": {"reclusterd.access": {}}}
    assert logconfig.read(str(tmp_path / "c.conf")).kind == "fileConfig"


@pytest.mark.parametrize(("name", "text", "error"), [
    ("a.json", "[1, 2]", "expected an object (the dictConfig schema), got list"),
    ("b.json", '{"handlers": []}', "'handlers' must be an object, got list"),
    ("c.toml", "version = [", "invalid TOML"),
    ("d.ini", "keys = root\n", "invalid INI: File contains no section headers."),
    ("e.ini", "[loggers]\n[handlers]\n[formatters]\n", "[loggers] needs keys ="),
    ("f.json", b"\xff\xfe{}", "not UTF-8 text"),
    ("logging", "{}", "unknown format '(no suffix)'"),
])
def test_errors_are_one_line_naming_the_file(tmp_path: Path, name: str, text: str | bytes,
                                             error: str) -> None:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    with pytest.raises(logconfig.LogConfigError) as e:
        logconfig.read(str(path))
    assert str(e.value).startswith(f"{path}: ")
    assert error in str(e.value)
    assert "\n" not in str(e.value)


def test_config_load_checks_it_and_makes_it_absolute(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "log.json").write_text("{}")
    assert config.load(["x:y", "--log-config", "log.json"], {}).log_config == str(
        tmp_path / "log.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(config.ConfigError, match=r"^--log-config: .*bad.json: invalid JSON"):
        config.load(["x:y", "--log-config", "bad.json"], {})


def test_gunicorn_logconfig_names_map_to_it(tmp_path: Path) -> None:
    (tmp_path / "log.ini").write_text("[loggers]\nkeys=root\n[handlers]\nkeys=\n"
                                      "[formatters]\nkeys=\n")
    for name in ("logconfig", "logconfig_json"):
        conf = tmp_path / f"{name}.conf.py"
        conf.write_text(f"{name} = {str(tmp_path / 'log.ini')!r}\n")
        cfg = config.load(["x:y", "-c", str(conf)], {})
        assert cfg.log_config == str(tmp_path / "log.ini")
