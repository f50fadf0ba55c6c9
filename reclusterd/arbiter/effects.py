"""What the policy asks the outside world to do: the loop does it, tests fake it.

The policy (policy.py, rollout.py, stop.py) decides; it never forks, kills or
sends a datagram itself. Everything with a side effect goes through this seam,
so unit tests drive the whole decision logic with a fake spawner and a fake clock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from reclusterd.config import Config


class Effects(Protocol):
    """Side effects of arbiter decisions."""

    def spawn(self, generation: int, cfg: Config) -> int | None:
        """Fork one worker; its pid, or None when fork failed."""

    def send(self, pid: int, sig: int) -> None:
        """Signal a worker (a process already gone is not an error)."""

    def notify(self, state: str) -> None:
        """sd_notify `state` (a no-op outside systemd)."""

    def close_listeners(self) -> None:
        """Stop accepting (shutdown): close the listening sockets."""

    def apply_logging(self, cfg: Config) -> None:
        """A reload was promoted: apply its log settings in the master."""
