"""Work handed to the thread worker's pollers that is not a ready socket: an HTTP/2
stream's WSGI call (wsgi.h2conn starts one per request, and several run at once).

The queue is an eventfd in the worker's epoll set (EPOLLONESHOT, level-triggered), so
a task wakes one idle poller exactly as a ready connection does: no dispatcher thread,
and the pool's growth rule (a spare joins when every poller is busy) covers streams too.
Invariant, kept under one lock: the eventfd counter is non-zero exactly while tasks are
queued; `take` re-arms it, so a second queued task wakes a second poller at once.
"""

from __future__ import annotations

import os
import select
import threading
from collections import deque
from collections.abc import Callable

__all__ = ["Task", "TaskQueue"]

Task = Callable[[], None]
_ARM = select.EPOLLIN | select.EPOLLONESHOT


class TaskQueue:
    """FIFO of tasks whose `fd` is registered in `ep`; pollers call `take` on its event."""

    def __init__(self, ep: select.epoll) -> None:
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.ep = ep
        self.lock = threading.Lock()
        self.tasks: deque[Task] = deque()
        ep.register(self.fd, _ARM)

    def submit(self, task: Task) -> None:
        """Queue `task` for the next idle poller (any thread)."""
        with self.lock:
            self.tasks.append(task)
            if len(self.tasks) == 1:
                os.eventfd_write(self.fd, 1)

    def take(self) -> Task | None:
        """The poller that got the fd's event: the oldest task (None if another took it)."""
        with self.lock:
            task = self.tasks.popleft() if self.tasks else None
            if not self.tasks:
                try:
                    os.eventfd_read(self.fd)
                except BlockingIOError:
                    pass
            try:
                self.ep.modify(self.fd, _ARM)
            except OSError:
                pass        # the worker is closing its epoll set
        return task

    @property
    def pending(self) -> bool:
        return bool(self.tasks)
