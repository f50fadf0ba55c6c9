"""The master process (DESIGN.md "Layout"): loop, table, policy, rollout, stop, reexec,
process, status. Only `cli` imports it, for `Arbiter`."""

from reclusterd.arbiter.loop import Arbiter
from reclusterd.arbiter.startup import StartupError

__all__ = ["Arbiter", "StartupError"]
