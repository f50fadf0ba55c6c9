"""workers.tasks.TaskQueue: an eventfd in an epoll set wakes one poller per queued task."""

from __future__ import annotations

import select

from reclusterd.workers.tasks import TaskQueue


def _ready(ep: select.epoll) -> list[int]:
    return [fd for fd, _ in ep.poll(0)]


def test_a_task_wakes_a_poller_and_the_fd_rearms_while_tasks_remain() -> None:
    ep = select.epoll()
    q = TaskQueue(ep)
    try:
        assert _ready(ep) == []
        ran: list[int] = []
        q.submit(lambda: ran.append(1))
        q.submit(lambda: ran.append(2))
        assert _ready(ep) == [q.fd]
        assert _ready(ep) == []             # one-shot: one poller per event
        task = q.take()                     # re-armed: the second task is still there
        assert task is not None
        task()
        assert _ready(ep) == [q.fd]
        task = q.take()
        assert task is not None
        task()
        assert ran == [1, 2]
        assert not q.pending
        assert _ready(ep) == []             # empty: the eventfd was reset
        assert q.take() is None             # a late poller finds nothing, harmlessly
    finally:
        ep.close()
