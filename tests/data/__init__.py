"""Test data kept in the repository, so a plain clone runs the whole suite."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CONFORMANCE = Path(__file__).parent / "conformance" / "requests.json"


def conformance_cases() -> list[dict[str, Any]]:
    """The conformance corpus (see conformance/README.md).

    A missing file raises FileNotFoundError at collection: the suite must fail, not skip.
    """
    cases: list[dict[str, Any]] = json.loads(CONFORMANCE.read_text(encoding="utf-8"))
    return cases
