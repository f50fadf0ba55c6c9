"""The HTTP/2 settings: names, defaults and validators (DESIGN.md's rows)."""

from __future__ import annotations

import pytest

from reclusterd import config


def _load(*argv: str) -> config.Config:
    return config.load([*argv, "app:app"], {})


def test_defaults() -> None:
    cfg = _load()
    assert cfg.http_protocols == ("h1", "h2")
    assert cfg.http2_cleartext == "off"
    assert (cfg.http2_max_concurrent_streams, cfg.http2_initial_window_size,
            cfg.http2_max_frame_size, cfg.http2_max_header_list_size) == (100, 65535, 16384,
                                                                          65536)


def test_values_from_cli_and_env() -> None:
    cfg = config.load(["--http-protocols", "H1", "--http2-cleartext", "both", "app:app"],
                      {"RECLUSTERD_HTTP2_MAX_FRAME_SIZE": "32768"})
    assert cfg.http_protocols == ("h1",)
    assert cfg.http2_cleartext == "both"
    assert cfg.http2_max_frame_size == 32768


@pytest.mark.parametrize(("argv", "flag"), [
    (["--http-protocols", "h3"], "--http-protocols"),
    (["--http-protocols", ","], "--http-protocols"),
    (["--http2-cleartext", "yes"], "--http2-cleartext"),
    (["--http2-max-concurrent-streams", "0"], "--http2-max-concurrent-streams"),
    (["--http2-initial-window-size", "2147483648"], "--http2-initial-window-size"),
    (["--http2-max-frame-size", "16383"], "--http2-max-frame-size"),
    (["--http2-max-frame-size", "16777216"], "--http2-max-frame-size"),
    (["--http2-max-header-list-size", "0"], "--http2-max-header-list-size"),
])
def test_bad_values_are_one_line_errors(argv: list[str], flag: str) -> None:
    with pytest.raises(config.ConfigError) as err:
        _load(*argv)
    assert err.value.setting == flag
