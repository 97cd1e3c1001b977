"""Every example of docs/signals.md parses as the format it documents."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge.replenishment.signal_formats import IMPORT_FORMATS, parse_signal_file

DOC = Path(__file__).resolve().parents[3] / "docs" / "signals.md"
EXAMPLE = re.compile(r"<!-- example: (\w+) (json|csv) -->\n```(?:json|csv)\n(.*?)```", re.S)


def examples() -> list[tuple[str, str, str]]:
    return [(m.group(1), m.group(2), m.group(3)) for m in EXAMPLE.finditer(DOC.read_text(encoding="utf-8"))]


def test_every_kind_has_an_example() -> None:
    assert {kind for kind, _, _ in examples()} == set(IMPORT_FORMATS)


@pytest.mark.parametrize(("kind", "form", "text"), examples())
def test_the_documented_example_parses(kind: str, form: str, text: str) -> None:
    records, lines = parse_signal_file(kind, text.encode("utf-8"), f"example.{form}")
    assert records and (lines is None or len(lines) == len(records))
