"""sd_notify messages: RELOADING=1 carries MONOTONIC_USEC= (Type=notify-reload)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from reclusterd import systemd


def test_reloading_gets_monotonic_usec_first_after_it() -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    lines = systemd.stamped("RELOADING=1\nSTATUS=reloading").split("\n")
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert lines[0] == "RELOADING=1" and lines[2] == "STATUS=reloading"
    key, _, value = lines[1].partition("=")
    assert key == "MONOTONIC_USEC" and before <= int(value) <= after


def test_other_messages_are_untouched() -> None:
    for state in ("READY=1\nSTATUS=x", "STOPPING=1", "STATUS=RELOADING=1 is text here",
                  "RELOADING=1\nMONOTONIC_USEC=5"):
        assert systemd.stamped(state) == state


def test_notify_sends_the_stamp(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(str(path))
        assert systemd.notify("RELOADING=1", {"NOTIFY_SOCKET": str(path)})
        assert s.recv(200).decode().startswith("RELOADING=1\nMONOTONIC_USEC=")


def unit_settings(name: str) -> dict[str, list[str]]:
    """KEY -> values of a unit file under conf/ (comments and sections dropped)."""
    out: dict[str, list[str]] = {}
    text = (Path(__file__).resolve().parents[2] / "conf" / name).read_text()
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_notify_reload_unit_lets_systemd_send_hup() -> None:
    unit = unit_settings("reclusterd-notify-reload.service")
    assert unit["Type"] == ["notify-reload"] and unit["ReloadSignal"] == ["SIGHUP"]
    assert "ExecReload" not in unit
    assert unit["KillSignal"] == ["SIGTERM"] and unit["KillMode"] == ["mixed"]
    classic = unit_settings("reclusterd.service")
    assert classic["Type"] == ["notify"] and classic["ExecStart"] == unit["ExecStart"]
