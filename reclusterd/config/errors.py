"""The one error a bad setting raises, and the "did you mean" hint its messages use."""

from __future__ import annotations

import difflib
from collections.abc import Sequence


class ConfigError(Exception):
    """A bad setting; str() is one line naming it, e.g. "--workers: must be ..."."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(setting, message)
        self.setting = setting
        self.message = message

    def __str__(self) -> str:
        return f"{self.setting}: {self.message}"


def did_you_mean(word: str, known: Sequence[str], prefix: str = "") -> str:
    """"; did you mean X?" for the closest known name, or "" (flags, env vars, TOML keys).

    A prefix every name shares ("--", "RECLUSTERD_") is left out of the comparison, or
    it alone would make any word look close.
    """
    bare = {k.removeprefix(prefix): k for k in known}
    close = difflib.get_close_matches(word.removeprefix(prefix), list(bare), n=1)
    return f"; did you mean {bare[close[0]]}?" if close else ""
