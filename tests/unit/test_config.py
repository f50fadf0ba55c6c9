"""Config: precedence, validators, TOML, env (pure, no processes)."""

from __future__ import annotations

import pytest

from reclusterd import config
from reclusterd.config import ConfigError, load


def test_minimal_load() -> None:
    cfg = load(["app:app", "--workers", "1"], {})
    assert cfg.app == "app:app"
    assert cfg.workers == 1
    assert cfg.bind == ("127.0.0.1:8000",)


def test_bad_workers_names_flag() -> None:
    with pytest.raises(ConfigError) as ei:
        load(["app:app", "--workers", "abc"], {})
    assert str(ei.value) == "--workers: must be a positive integer, got 'abc'"
    assert isinstance(config.Config, type)
