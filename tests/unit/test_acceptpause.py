"""workers/acceptpause: the back-off and the rate-limited log line after accept() runs
out of file descriptors (issue 14 item 2), on a fake clock."""

from __future__ import annotations

import errno
import os

from reclusterd.workers.acceptpause import PAUSE, REPORT_EVERY, AcceptPause


def emfile() -> OSError:
    return OSError(errno.EMFILE, os.strerror(errno.EMFILE))


def test_first_error_is_logged_then_one_line_per_interval_with_a_count() -> None:
    p = AcceptPause()
    first = p.failed(emfile(), 100.0)
    assert first is not None and "out of file descriptors" in first and "; 1 time in" in first
    assert all(p.failed(emfile(), 100.0 + i * 0.01) is None for i in range(1, 500))
    line = p.failed(emfile(), 100.0 + REPORT_EVERY)
    assert line is not None and "500 times in the last 10 s" in line


def test_accepting_pauses_after_an_error_and_resumes_after_the_pause() -> None:
    p = AcceptPause()
    assert not p.paused(5.0) and p.resume_in(5.0) == 0.0
    p.failed(OSError(errno.ENOBUFS, "No buffer space"), 5.0)
    assert p.paused(5.0) and p.resume_in(5.0) == PAUSE
    assert not p.paused(5.0 + PAUSE)
