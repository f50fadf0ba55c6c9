"""The arbiter's decisions, driven with a fake clock and a fake spawner (no processes)."""

from __future__ import annotations

import logging
import signal
from collections.abc import Sequence

import pytest

from reclusterd import config
from reclusterd.arbiter.pause import PAUSE_GAP, paused_for
from reclusterd.arbiter.policy import Policy
from reclusterd.arbiter.stop import ABORT_KILL_AFTER
from reclusterd.arbiter.table import State, Worker
from reclusterd.backoff import Backoff


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class FakeEffects:
    """Records what the policy asked for; `spawn` hands out pids (or fails on demand)."""

    def __init__(self) -> None:
        self.next_pid = 100
        self.fail_spawn = False
        self.signals: list[tuple[int, int]] = []
        self.notes: list[str] = []
        self.listeners_closed = False
        self.logging_applied: list[config.Config] = []

    def spawn(self, generation: int, cfg: config.Config) -> int | None:
        if self.fail_spawn:
            return None
        self.next_pid += 1
        return self.next_pid

    def send(self, pid: int, sig: int) -> None:
        self.signals.append((pid, sig))

    def notify(self, state: str) -> None:
        self.notes.append(state)

    def close_listeners(self) -> None:
        self.listeners_closed = True

    def apply_logging(self, cfg: config.Config) -> None:
        self.logging_applied.append(cfg)

    def sent(self, sig: int) -> list[int]:
        return [pid for pid, s in self.signals if s == sig]


def cfg(*opts: str) -> config.Config:
    return config.load(["app:app", "--workers", "2", "--boot-timeout", "5", "--timeout", "0",
                        "--backoff", "1", "--graceful-timeout", "10", *opts], {})


class Harness:
    """A Policy plus its fake clock and effects; `turn()` is one loop iteration."""

    def __init__(self, *opts: str) -> None:
        self.clock = Clock()
        self.fx = FakeEffects()
        self.policy = Policy(cfg(*opts), self.fx, Backoff(1.0, clock=self.clock), self.clock.t)

    def turn(self, advance: float = 0.0) -> None:
        self.clock.t += advance
        self.policy.check_timers(self.clock.t)
        self.policy.manage(self.clock.t)

    def workers(self, gen: int | None = None) -> list[Worker]:
        return [w for w in self.policy.table if gen is None or w.generation == gen]

    def ready(self, workers: Sequence[Worker]) -> None:
        for w in workers:
            self.policy.on_message(w, "ready", None, self.clock.t)

    def exit(self, w: Worker, what: str = "exited with code 1") -> None:
        self.policy.exited(w.pid, what, self.clock.t)

    def started(self) -> list[Worker]:
        """First start: two workers booted and ready."""
        self.turn()
        self.ready(self.workers())
        self.turn()
        return self.workers()


def test_first_start_spawns_the_target_and_notifies_ready_once_all_are_ready() -> None:
    h = Harness()
    h.turn()
    first = h.workers()
    assert len(first) == 2 and all(w.state is State.BOOTING for w in first)
    h.ready(first[:1])
    h.turn()
    assert not any(n.startswith("READY=1") for n in h.fx.notes)
    h.ready(first[1:])
    h.turn()
    assert h.fx.notes[-1] == "READY=1\nSTATUS=serving, generation 1, 2 of 2 workers ready"


def test_first_start_failure_stops_with_exit_code_1() -> None:
    h = Harness()
    h.turn()
    h.exit(h.workers()[0])
    assert h.policy.stopping == "fast" and h.policy.exit_code == 1
    assert h.fx.listeners_closed


def test_reload_promotes_the_new_generation_once_every_worker_is_ready() -> None:
    h = Harness()
    old = h.started()
    h.policy.reload(cfg("--workers", "3"), h.clock.t)
    assert h.fx.notes[-1].startswith("RELOADING=1")
    new = h.workers(2)
    assert len(new) == 3
    h.ready(new[:2])
    h.turn(1)
    assert h.policy.generation == 1 and not h.fx.sent(signal.SIGTERM)
    h.ready(new[2:])
    h.turn()
    assert h.policy.generation == 2 and h.policy.target == 3
    assert sorted(h.fx.sent(signal.SIGTERM)) == sorted(w.pid for w in old)
    assert h.fx.notes[-1].startswith("READY=1\nSTATUS=serving, generation 2")
    assert h.fx.logging_applied


def test_reload_rolls_back_when_a_new_worker_exits_before_ready() -> None:
    h = Harness()
    old = h.started()
    h.policy.reload(cfg(), h.clock.t)
    new = h.workers(2)
    h.ready(new[:1])
    h.exit(new[1])
    h.turn()
    assert h.policy.generation == 1 and h.policy.rollout.pending is None
    assert h.fx.sent(signal.SIGTERM) == [new[0].pid]      # the survivor of gen 2 is stopped
    assert all(w.state is State.READY and w.reason is None for w in old)
    assert "reload failed" in h.fx.notes[-1]
    h.turn(10)
    assert len(h.workers(1)) == 2 and not h.workers(3)     # nothing respawned for gen 2


def test_reload_rolls_back_when_a_new_worker_misses_boot_timeout() -> None:
    h = Harness()
    h.started()
    h.policy.reload(cfg(), h.clock.t)
    new = h.workers(2)
    h.ready(new[:1])
    h.turn(4.9)
    assert h.policy.rollout.pending is not None
    h.turn(0.2)
    assert h.fx.sent(signal.SIGABRT) == [new[1].pid]
    assert h.fx.sent(signal.SIGTERM) == [new[0].pid]
    assert h.policy.rollout.pending is None and h.policy.generation == 1
    h.turn(ABORT_KILL_AFTER)
    assert h.fx.sent(signal.SIGKILL) == [new[1].pid]


def test_a_newer_reload_supersedes_the_pending_one() -> None:
    h = Harness()
    h.started()
    h.policy.reload(cfg(), h.clock.t)
    second = h.workers(2)
    h.policy.reload(cfg(), h.clock.t)
    assert sorted(h.fx.sent(signal.SIGTERM)) == sorted(w.pid for w in second)
    assert h.policy.rollout.pending is not None and h.policy.rollout.pending.generation == 3


def test_backoff_doubles_from_point_one_to_the_cap_and_decays() -> None:
    h = Harness()
    h.started()
    delays = []
    for _ in range(6):
        victim = h.workers(1)[0]
        h.exit(victim)                  # crashed soon after ready: a failure
        delays.append(h.policy.backoff.wait())
        h.turn()
        assert len(h.workers()) == 1    # no respawn before the delay
        h.turn(h.policy.backoff.wait())
        assert len(h.workers()) == 2
        h.ready([w for w in h.workers() if w.state is State.BOOTING])
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    h.turn(5.0)                         # workers stay up: the delay decays
    assert h.policy.backoff.delay() == pytest.approx(0.5)
    h.turn(15.0)                        # 1.0 / 2**4 is below the first step
    assert h.policy.backoff.delay() == 0.0


def test_recycle_replaces_one_worker_at_a_time_replacement_ready_first() -> None:
    h = Harness()
    a, b = h.started()
    h.policy.on_message(a, "recycle", "max-requests", h.clock.t)
    h.policy.on_message(b, "recycle", "max-requests", h.clock.t)
    h.turn()
    (repl,) = [w for w in h.workers() if w.pid not in (a.pid, b.pid)]
    h.turn(1)
    assert not h.fx.sent(signal.SIGTERM)        # replacement not ready: nobody drains
    h.ready([repl])
    h.turn()
    recycled = h.fx.sent(signal.SIGTERM)
    assert recycled == [a.pid]                  # one at a time, the oldest first
    h.turn()
    booting = [w for w in h.workers() if w.state is State.BOOTING]
    assert len(booting) == 1                    # the second one's replacement
    h.turn(1)
    assert h.fx.sent(signal.SIGTERM) == [a.pid]  # b serves until it is ready
    h.ready(booting)
    h.turn()
    assert h.fx.sent(signal.SIGTERM) == [a.pid, b.pid]


def test_scale_during_reload_applies_to_the_new_generation() -> None:
    h = Harness()
    h.started()
    h.policy.reload(cfg(), h.clock.t)
    h.policy.scale(+1)
    h.turn()
    assert len(h.workers(2)) == 3 and len(h.workers(1)) == 3
    h.ready([w for w in h.workers() if w.state is State.BOOTING])
    h.turn()
    assert h.policy.generation == 2 and h.policy.target == 3
    h.policy.scale(-1)
    h.policy.scale(-1)
    h.policy.scale(-1)                          # never below one
    h.turn()
    assert h.policy.target == 1
    assert len([w for w in h.workers(2) if w.active()]) == 1


def test_ttou_during_reload_retires_a_booting_worker_of_the_new_generation() -> None:
    h = Harness()
    h.started()
    h.policy.reload(cfg(), h.clock.t)
    h.ready(h.workers(2)[:1])
    h.policy.scale(-1)
    h.turn()
    active = [w for w in h.workers(2) if w.active()]
    assert len(active) == 1 and active[0].state is State.READY
    h.turn()
    assert h.policy.generation == 2 and h.policy.target == 1


def test_silent_worker_gets_abrt_then_kill_and_is_replaced() -> None:
    h = Harness("--timeout", "3")
    a, b = h.started()
    h.policy.on_message(b, "hb", {"requests": 3}, h.clock.t + 2)
    h.turn(3)
    assert h.fx.sent(signal.SIGABRT) == [a.pid]
    h.turn(ABORT_KILL_AFTER - 0.1)
    assert not h.fx.sent(signal.SIGKILL)
    h.turn(0.1)
    assert h.fx.sent(signal.SIGKILL) == [a.pid]
    h.exit(a, "killed by SIGKILL")
    h.turn(h.policy.backoff.wait())
    assert len([w for w in h.workers() if w.active()]) == 2
    assert h.policy.stats.restarts["timeout"] == 1


def test_status_line_follows_every_change_of_worker_count() -> None:
    h = Harness()
    a, _ = h.started()
    h.policy.scale(+1)
    h.turn()
    assert h.fx.notes[-1] == "STATUS=serving, generation 1, 2 of 3 workers ready"
    h.ready([w for w in h.workers() if w.state is State.BOOTING])
    h.turn()
    assert h.fx.notes[-1] == "STATUS=serving, generation 1, 3 of 3 workers ready"
    h.exit(a)
    h.turn()
    assert h.fx.notes[-1] == "STATUS=serving, generation 1, 2 of 3 workers ready"
    count = len(h.fx.notes)
    h.turn()
    assert len(h.fx.notes) == count             # no change, nothing sent


def test_live_fails_once_no_worker_was_ready_for_longer_than_boot_timeout() -> None:
    h = Harness()
    workers = h.started()
    assert h.policy.live(h.clock.t)
    h.fx.fail_spawn = True                      # respawns cannot even fork
    for w in workers:
        h.exit(w)
    h.turn()
    assert h.policy.live(h.clock.t + 5)
    assert not h.policy.live(h.clock.t + 5.1)
    assert not h.policy.snapshot(h.clock.t + 6, pid=1)["live"]
    h.fx.fail_spawn = False
    h.turn(6)
    h.ready([w for w in h.workers() if w.state is State.BOOTING][:1])
    h.turn()
    assert h.policy.live(h.clock.t)


def test_live_transitions_are_logged_once_each(caplog: pytest.LogCaptureFixture) -> None:
    h = Harness()
    workers = h.started()
    h.fx.fail_spawn = True
    for w in workers:
        h.exit(w)
    with caplog.at_level(logging.INFO, logger="reclusterd"):
        h.turn()
        h.turn(6)
        h.turn(1)
        h.fx.fail_spawn = False
        h.turn(6)                                 # past the respawn back-off
        h.ready([w for w in h.workers() if w.state is State.BOOTING][:1])
        h.turn()
        h.turn()
    lines = [r.getMessage() for r in caplog.records if "/livez" in r.getMessage()]
    assert [line.split(":")[0] for line in lines] == ["/livez failing", "/livez healthy again"]


def test_graceful_stop_waits_shutdown_delay_then_drains() -> None:
    h = Harness("--shutdown-delay", "2")
    workers = h.started()
    h.policy.stop_graceful(h.clock.t)
    assert h.fx.notes[-1].startswith("STOPPING=1") and not h.fx.listeners_closed
    assert h.policy.snapshot(h.clock.t, pid=1)["ready"] is False
    h.turn(2)
    assert h.fx.listeners_closed
    assert sorted(h.fx.sent(signal.SIGTERM)) == sorted(w.pid for w in workers)
    for w in workers:
        h.exit(w, "exited with code 0")
    assert h.policy.finished()


# ---------------------------------------------------------------- issue 14 item 14

def test_first_start_worker_killed_by_sigkill_is_respawned_not_a_failed_start() -> None:
    h = Harness()
    h.turn()
    w = h.workers()[0]
    h.policy.exited(w.pid, "killed by SIGKILL", h.clock.t, signal.SIGKILL)
    assert h.policy.stopping is None and h.policy.exit_code == 0
    h.turn(h.policy.backoff.wait())
    assert len(h.workers()) == 2 and w.pid not in {x.pid for x in h.workers()}


def test_first_start_crash_by_sigsegv_is_still_a_failed_start() -> None:
    h = Harness()
    h.turn()
    w = h.workers()[0]
    h.policy.exited(w.pid, "killed by SIGSEGV", h.clock.t, signal.SIGSEGV)
    assert h.policy.stopping == "fast" and h.policy.exit_code == 1


def test_sigkill_with_a_boot_error_is_a_failed_start() -> None:
    h = Harness()
    h.turn()
    w = h.workers()[0]
    h.policy.on_message(w, "boot_error", "ImportError: nope", h.clock.t)
    h.policy.exited(w.pid, "killed by SIGKILL", h.clock.t, signal.SIGKILL)
    assert h.policy.exit_code == 1


def test_first_start_gives_up_after_repeated_kills_before_ready() -> None:
    h = Harness("--workers", "1")
    for _ in range(5):
        h.turn(h.policy.backoff.wait())
        if h.policy.stopping is not None:
            break
        (w,) = h.workers()
        h.policy.exited(w.pid, "killed by SIGKILL", h.clock.t, signal.SIGKILL)
    assert h.policy.stopping == "fast" and h.policy.exit_code == 1


def test_heartbeat_with_served_requests_means_ready_even_if_ready_was_lost() -> None:
    h = Harness("--workers", "1")
    h.turn()
    (w,) = h.workers()
    h.policy.on_message(w, "hb", {"requests": 1, "in_flight": 0}, h.clock.t)
    assert w.state is State.READY
    h.policy.exited(w.pid, "exited with code 1", h.clock.t)
    assert h.policy.stopping is None


def test_a_booting_heartbeat_without_requests_is_not_ready() -> None:
    h = Harness("--workers", "1")
    h.turn()
    (w,) = h.workers()
    h.policy.on_message(w, "hb", {"requests": 0}, h.clock.t)
    assert w.state is State.BOOTING


def test_reload_worker_killed_from_outside_is_replaced_not_rolled_back() -> None:
    h = Harness()
    h.started()
    h.policy.reload(cfg(), h.clock.t)
    victim = h.workers(2)[0]
    h.policy.exited(victim.pid, "killed by SIGKILL", h.clock.t, signal.SIGKILL)
    assert h.policy.rollout.pending is not None
    h.turn()
    new = h.workers(2)
    assert len(new) == 2 and victim.pid not in {w.pid for w in new}
    h.ready(new)
    h.turn()
    assert h.policy.generation == 2


# ---------------------------------------------------------------- issue 14 item 4

def test_after_a_master_pause_ready_workers_get_a_fresh_timeout() -> None:
    h = Harness("--timeout", "3")
    workers = h.started()
    h.clock.t += 8                       # the master was stopped: no heartbeats read
    h.policy.resumed(8.0, h.clock.t)
    h.turn()
    assert not h.fx.sent(signal.SIGABRT)
    h.turn(3)                            # a whole --timeout silent while running: stuck
    assert sorted(h.fx.sent(signal.SIGABRT)) == sorted(w.pid for w in workers)


def test_a_pause_is_measured_from_the_loops_last_tick() -> None:
    """kill -STOP for 8 s during a turn that asked to sleep 2.5 s (a heartbeat would have
    ended it after 0.3 s): the pause is the time since the turn began, not that minus
    the sleep asked for (which logged 5.4 s for an 8 s stop)."""
    assert paused_for(100.0, 2.5, 108.3) == pytest.approx(8.3)
    assert paused_for(100.0, 2.5, 103.6) == pytest.approx(3.6)   # > the sleep by PAUSE_GAP
    assert paused_for(100.0, 2.5, 102.6) == 0.0                  # slept as asked
    assert paused_for(100.0, 0.0, 100.0 + PAUSE_GAP - 0.01) == 0.0


def test_after_a_master_pause_booting_workers_keep_their_boot_time() -> None:
    h = Harness()                        # --boot-timeout 5
    h.turn()
    h.clock.t += 4
    h.policy.resumed(4.0, h.clock.t)
    h.turn(2)                            # 6 s of wall time, 2 of them watched
    assert not h.fx.sent(signal.SIGABRT)
    h.turn(3.5)
    assert h.fx.sent(signal.SIGABRT)     # then judged as before (a failed first start)


def test_over_the_memory_limit_the_replacement_boots_at_once_and_a_self_drain_is_expected(
        ) -> None:
    """Issue 14 item 10: a worker over --max-worker-memory stopped taking requests itself;
    its replacement starts now (not after other recycles), and its own exit is a recycle."""
    h = Harness("--max-worker-memory", "150")
    a, b = h.started()
    h.policy.on_message(b, "recycle", "max-requests", h.clock.t)
    h.turn()                                    # b's replacement boots
    h.policy.on_message(a, "recycle", "memory", h.clock.t)
    h.turn()
    booting = [w for w in h.workers() if w.state is State.BOOTING]
    assert len(booting) == 2                    # a's replacement did not wait for b's
    h.exit(a, "exited with code 0")             # a drained and left on its own
    assert h.policy.stats.restarts == {"recycle": 1}
    assert h.policy.backoff.wait() == 0         # no crash, no respawn delay
    assert not h.fx.sent(signal.SIGTERM)


def test_over_twice_the_memory_limit_on_a_heartbeat_is_terminated_now() -> None:
    """Issue 14 item 10: the heartbeat's RSS is judged too; over 2x: TERM, no waiting."""
    h = Harness("--max-worker-memory", "150")
    a, b = h.started()
    h.policy.on_message(a, "hb", {"rss_kb": 290 * 1024}, h.clock.t)   # over, under 2x
    h.turn()
    assert not h.fx.sent(signal.SIGTERM)
    h.policy.on_message(b, "hb", {"rss_kb": 301 * 1024}, h.clock.t)
    assert h.fx.sent(signal.SIGTERM) == [b.pid]
    assert b.reason == "memory"
    h.turn()
    assert len([w for w in h.workers() if w.state is State.BOOTING]) == 1   # its replacement


def test_memory_is_not_judged_without_a_limit() -> None:
    h = Harness()
    a, _ = h.started()
    h.policy.on_message(a, "hb", {"rss_kb": 10 ** 9}, h.clock.t)
    assert not h.fx.sent(signal.SIGTERM)


def test_a_large_target_is_reached_a_bounded_number_of_forks_per_turn() -> None:
    """Signals and ctl are read between turns: a big target must not hold one turn
    (QA-14: `ctl workers 100000` left the master deaf to TERM)."""
    from reclusterd.arbiter import scaling

    h = Harness()
    h.started()
    before = len(h.workers())
    h.policy.set_workers(40)
    h.turn()
    assert len(h.workers()) - before == scaling.SPAWN_PER_TURN
    for _ in range(10):
        h.turn()
    assert len(h.workers()) == 40


def test_ttin_and_ctl_workers_stop_at_the_maximum() -> None:
    from reclusterd.arbiter import scaling
    from reclusterd.arbiter.ctlserver import command

    h = Harness()
    h.started()
    assert h.policy.set_workers(100_000) and h.policy.target == scaling.MAX_WORKERS
    h.policy.scale(+1)
    assert h.policy.target == scaling.MAX_WORKERS
    reply = command({"cmd": "workers", "n": 100_000}, h.policy, dict, lambda now: None,
                    lambda now: None)
    assert reply["ok"] is False and "1 to 1024" in str(reply["error"])
