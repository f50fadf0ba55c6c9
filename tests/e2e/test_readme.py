"""README.md's shell blocks and loadtests/ docstring commands run as written (issue 11).

Each block runs, or runs in its `--help`/dry-run form, through tests/readme_shell.py, so a
command that drifts from the code fails here. A block marked `<!-- not-run: why -->` is
skipped with that reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.readme_shell import Block, BlockRunner, docstring_blocks, markdown_blocks
from tests.support.process import ROOT

BLOCKS = markdown_blocks(ROOT / "README.md") + [
    b for f in sorted((ROOT / "loadtests").glob("*.py")) for b in docstring_blocks(f)]


@pytest.mark.parametrize("block", BLOCKS, ids=[b.where for b in BLOCKS])
def test_block(block: Block, tmp_path: Path) -> None:
    if block.not_run:
        pytest.skip(f"marked not-run in README: {block.not_run}")
    runner = BlockRunner(block, tmp_path)
    runner.run()
    print("\n".join(runner.notes))  # what was only checked, shown by `pytest -rP`
    if runner.skips:  # everything else in the block ran and passed
        pytest.skip("; ".join(runner.skips))


def test_quick_start_has_the_two_commands() -> None:
    quick = [b for b in BLOCKS if b.where.startswith("README.md")][:2]
    assert "reclusterd examples.hello:app" in quick[0].text
    assert "-m pytest" in quick[1].text
    assert quick[1].text.strip() in (ROOT / ".ci" / "run").read_text()


def test_blocks_found() -> None:
    readme = [b for b in BLOCKS if b.where.startswith("README.md")]
    assert len(readme) >= 10
    assert any("locust" in b.text for b in BLOCKS if b.where.startswith("loadtests"))
