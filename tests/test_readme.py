"""README.md is the front door: its table of where to go next names every page of docs/, and only pages that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_the_readme_lists_every_docs_page() -> None:
    text = (ROOT / "README.md").read_text("utf-8")
    listed = set(re.findall(r"^\| \[(docs/[^\]]+\.md)\]\(\1\) \|", text, re.MULTILINE))
    pages = {path.relative_to(ROOT).as_posix() for path in (ROOT / "docs").rglob("*.md")}
    assert listed == pages
