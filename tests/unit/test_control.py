"""Control channel: message round trips, and a heartbeat that never blocks or raises."""

from __future__ import annotations

import os
import signal
import time

import pytest

from reclusterd import control


def test_round_trip_every_kind() -> None:
    arb, ch = control.pair()
    try:
        ch.ready()
        ch.heartbeat({"requests": 3, "in_flight": 1, "rss_kb": 1024.5})
        ch.boot_error("Traceback...\nZeroDivisionError: division by zero")
        ch.recycle("max-requests")
        got = [control.decode(d) for d in control.recv_all(arb)]
    finally:
        arb.close()
        ch.close()
    assert got == [
        ("ready", ""),
        ("hb", {"requests": 3, "in_flight": 1, "rss_kb": 1024.5}),
        ("boot_error", "Traceback...\nZeroDivisionError: division by zero"),
        ("recycle", "max-requests"),
    ]


def test_heartbeat_without_stats_is_empty_dict() -> None:
    arb, ch = control.pair()
    ch.heartbeat()
    assert control.decode(control.recv_all(arb)[0]) == ("hb", {})
    arb.close()
    ch.close()


def test_huge_boot_error_is_truncated_keeping_the_end() -> None:
    arb, ch = control.pair()
    ch.boot_error("x" * 500_000 + "\nValueError: the end")
    kind, text = control.decode(control.recv_all(arb)[0])
    assert kind == "boot_error"
    assert isinstance(text, str) and text.endswith("ValueError: the end")
    assert len(text) < 40_000
    arb.close()
    ch.close()


def test_heartbeat_never_blocks_when_the_queue_is_full() -> None:
    arb, ch = control.pair()
    start = time.monotonic()
    for i in range(5000):
        ch.heartbeat({"i": i})
    assert time.monotonic() - start < 2.0
    assert len(control.recv_all(arb, 10_000)) > 0
    arb.close()
    ch.close()


def test_heartbeat_after_arbiter_end_closed_does_not_raise() -> None:
    arb, ch = control.pair()
    arb.close()
    old = signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        ch.heartbeat({"requests": 1})
        ch.ready()
        ch.recycle("memory")
    finally:
        signal.signal(signal.SIGPIPE, old)
        ch.close()


def test_heartbeat_on_closed_channel_does_not_raise() -> None:
    arb, ch = control.pair()
    ch.close()
    ch.heartbeat({"requests": 1})
    arb.close()


def test_channel_survives_fork() -> None:
    arb, ch = control.pair()
    pid = os.fork()
    if pid == 0:  # child
        try:
            arb.close()
            ch.ready()
            ch.heartbeat({"requests": 7})
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    msgs = [control.decode(d) for d in control.recv_all(arb)]
    assert msgs == [("ready", ""), ("hb", {"requests": 7})]
    arb.close()
    ch.close()


@pytest.mark.parametrize("bad", [b"", b"ready", b"nope {}", b"hb [1,2]", b"hb {oops", b"\xff {}"])
def test_decode_rejects_malformed(bad: bytes) -> None:
    with pytest.raises(ValueError):
        control.decode(bad)


def test_encode_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError):
        control.encode("bogus")


def test_ctl_path_prefers_the_setting_then_the_pidfile_then_the_runtime_dir() -> None:
    from reclusterd.control import ctl_path

    env = {"XDG_RUNTIME_DIR": "/run/user/1000"}
    assert ctl_path("/x/y.ctl", "/run/app.pid", 7, env) == "/x/y.ctl"
    assert ctl_path("off", "/run/app.pid", 7, env) is None
    assert ctl_path(None, "/run/app.pid", 7, env) == "/run/app.ctl"
    assert ctl_path(None, "/run/app", 7, env) == "/run/app.ctl"
    assert ctl_path(None, None, 7, env) == "/run/user/1000/reclusterd/7.ctl"
    assert ctl_path(None, None, 8, env) != ctl_path(None, None, 7, env)


def test_ctl_wire_format_is_one_json_object_per_line() -> None:
    from reclusterd.control import ctl_decode, ctl_encode

    line = ctl_encode({"cmd": "workers", "n": 3})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert ctl_decode(line.strip()) == {"cmd": "workers", "n": 3}
    for bad in (b"[1]", b"nope", b"\xff"):
        with pytest.raises(ValueError):
            ctl_decode(bad)


def test_ready_carries_the_note_set_at_boot() -> None:
    arb, ch = control.pair()
    try:
        ch.ready_note = "thread, WSGI"
        ch.ready()
        got = [control.decode(d) for d in control.recv_all(arb)]
    finally:
        arb.close()
        ch.close()
    assert got == [("ready", "thread, WSGI")]
