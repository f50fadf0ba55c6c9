"""Gunicorn's and Uvicorn's command-line flags that have no reclusterd flag: the harmless
ones are dropped with a warning (a Gunicorn CMD such as `--worker-tmp-dir /dev/shm` keeps
working), the others are refused with the reclusterd spelling to use instead."""

from __future__ import annotations

from collections.abc import Sequence

from reclusterd.config.errors import ConfigError
from reclusterd.gunicorn_map import EQUIVALENTS

# Flags a peer spells differently: flag -> what to write instead.
_RENAMED: dict[str, str] = {
    "--host": "--bind HOST:PORT (Uvicorn's --host/--port)",
    "--port": "--bind HOST:PORT (Uvicorn's --host/--port)",
    "--uds": "--bind unix:PATH",
    "--fd": "--bind fd://N",
}


def _harmless() -> dict[str, tuple[bool, str]]:
    """Gunicorn flag -> (takes a value, why it is not needed), from the equivalence table."""
    out: dict[str, tuple[bool, str]] = {}
    for e in EQUIVALENTS:
        if e.ours is None and e.harmless:
            flag = "--" + e.gunicorn.replace("_", "-")
            out[flag] = (not isinstance(e.default, bool), e.note)
    out["--no-sendfile"] = (False, out["--sendfile"][1])
    del out["--config"]             # ours: -c/--config
    return out


def strip_peer_flags(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """argv without the harmless peer flags, and one warning per flag dropped.

    Raises ConfigError for a peer flag that has another spelling here (--host -> --bind).
    """
    harmless = _harmless()
    kept: list[str] = []
    warnings: list[str] = []
    words = list(argv)
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--":
            kept.extend(words[i:])
            break
        flag, eq, _ = word.partition("=")
        if flag in _RENAMED:
            raise ConfigError(flag, f"not a reclusterd option; use {_RENAMED[flag]}")
        if flag in harmless:
            takes_value, why = harmless[flag]
            skip = 2 if takes_value and not eq else 1
            warnings.append(f"{flag} ignored (Gunicorn's): {why}")
            i += skip
            continue
        kept.append(word)
        i += 1
    return kept, warnings
