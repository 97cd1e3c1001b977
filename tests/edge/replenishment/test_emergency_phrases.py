"""The test set of emergency requests (data/emergency_phrases.yaml): share parsed right, per field and overall."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.replenishment.emergency import EmergencyParse, parse_request
from tests.edge.replenishment.emergency_support import demo_index

DATA = Path(__file__).parent / "data" / "emergency_phrases.yaml"
FLOOR_OVERALL = 0.90  # share of phrasings with every listed field right; docs/emergency-requests.md has the figure
FLOOR_FIELD = 0.90


def _load(section: str = "phrases") -> tuple[datetime, list[dict[str, Any]]]:
    data = yaml.safe_load(DATA.read_text(encoding="utf-8"))
    return datetime.fromisoformat(data["now"]), data[section]


def _actual(parse: EmergencyParse, field: str) -> Any:
    if field == "deadline":
        return parse.deadline.strftime("%Y-%m-%dT%H:%M") if parse.deadline else None
    if field == "candidates_include":
        return [c.sku for c in parse.candidates]
    if field == "notes_include":
        return [n.code for n in parse.notes]
    value = getattr(parse, field)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _right(field: str, expected: Any, actual: Any) -> bool:
    if field in ("candidates_include", "notes_include"):
        return set(expected) <= set(actual)
    return bool(expected == actual)


def score_phrases(section: str = "phrases") -> tuple[int, int, dict[str, tuple[int, int]], list[str]]:
    now, phrases = _load(section)
    index = demo_index()
    fields: dict[str, tuple[int, int]] = {}
    right_overall = 0
    misses: list[str] = []
    for phrase in phrases:
        parse = parse_request(phrase["text"], index, now.date(), now)
        all_right = True
        for field, expected in phrase["expect"].items():
            actual = _actual(parse, field)
            ok = _right(field, expected, actual)
            good, seen = fields.get(field, (0, 0))
            fields[field] = (good + ok, seen + 1)
            if not ok:
                all_right = False
                misses.append(f"{phrase['text']!r}: {field} expected {expected!r}, got {actual!r}")
        right_overall += all_right
    return right_overall, len(phrases), fields, misses


def test_the_phrase_set_has_at_least_sixty_distinct_phrasings() -> None:
    texts = [p["text"] for section in ("phrases", "holdout") for p in _load(section)[1]]
    assert len(texts) >= 60
    assert len(set(texts)) == len(texts)


@pytest.mark.parametrize("section", ["phrases", "holdout"])
def test_share_parsed_right_per_field_and_overall(section: str) -> None:
    right, total, fields, misses = score_phrases(section)
    print(f"\nemergency {section} parsed right: {right}/{total} = {right / total:.1%}")
    for field, (good, seen) in sorted(fields.items()):
        print(f"  {field:20s} {good}/{seen} = {good / seen:.1%}")
    for miss in misses:
        print("  miss:", miss)
    assert right / total >= FLOOR_OVERALL, misses
    for field, (good, seen) in fields.items():
        assert good / seen >= FLOOR_FIELD, (field, misses)
