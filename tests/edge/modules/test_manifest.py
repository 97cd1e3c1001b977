"""The manifest of a scenario module: what it accepts, and that every refusal is a clear bilingual
`module_manifest_invalid` naming the field (never another exception), whatever bytes the file holds."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.modules.errors import ManifestInvalid
from edge.modules.manifest import load_manifest_text, parse_manifest

GOOD: dict[str, Any] = {
    "name": "near-expiry",
    "version": 3,
    "title": {"zh": "临期商品清货", "en": "Near-expiry clearance"},
    "entry": "module.py",
    "subscribes": [
        {"kind": "ledger", "doc_type": "sale"},
        {"kind": "schedule", "cron": "0 * * * *"},
        {"kind": "alert", "alert": "cold-room"},
        {"kind": "signal", "name": "supplier.lead_time_changed"},
        {"kind": "bus", "event": "temp"},
    ],
    "may": ["notify", "create_draft", "open_ticket"],
    "kpis": {"window": 200, "precision_min": 0.92, "false_positive_max": 0.05, "min_decisions": 50},
    "budget": {"timeout_seconds": 10, "memory_mb": 256, "cpu_seconds": 20},
    "params": {"days": 3, "nested": {"a": [1, 2]}},
}


def test_the_documented_manifest_is_accepted_with_its_defaults() -> None:
    m = parse_manifest(GOOD)
    assert (m.name, m.version, m.entry, m.may) == (
        "near-expiry",
        3,
        "module.py",
        ("notify", "create_draft", "open_ticket"),
    )
    assert [s.event_kind for s in m.subscribes] == [
        "ledger:sale",
        "schedule:0 * * * *",
        "alert:cold-room",
        "signal:supplier.lead_time_changed",
        "bus:temp",
    ]
    assert m.subscribed("ledger:sale") and not m.subscribed("ledger:receipt")
    minimal = parse_manifest({k: GOOD[k] for k in ("name", "version", "title", "subscribes", "may")})
    assert minimal.kpis.model_dump() == {
        "window": 200,
        "precision_min": 0.92,
        "false_positive_max": 0.05,
        "min_decisions": 50,
    }
    assert minimal.budget.model_dump() == {"timeout_seconds": 10, "memory_mb": 256, "cpu_seconds": 20}
    assert parse_manifest(m.to_dict()) == m  # what the host stores reads back the same


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"name": "Near_Expiry"}, "name", "lower-case"),
        ({"version": 0}, "version", "greater than or equal to 1"),
        ({"version": "3"}, "version", "whole number"),
        ({"version": True}, "version", "whole number"),
        ({"entry": "../escape.py"}, "entry", ".py file inside"),
        ({"subscribes": []}, "subscribes", "at least 1"),
        ({"subscribes": [{"kind": "ledger", "doc_type": "nonsense"}]}, "subscribes.0", "unknown document type"),
        ({"subscribes": [{"kind": "ledger"}]}, "subscribes.0", "exactly the field `doc_type`"),
        ({"subscribes": [{"kind": "schedule", "cron": "61 * * * *"}]}, "subscribes.0", "schedule"),
        ({"subscribes": [{"kind": "weather", "name": "x"}]}, "subscribes.0.kind", "Input should be"),
        ({"may": ["launch_rocket"]}, "may", "not in the action catalogue"),
        ({"may": ["notify", "notify"]}, "may", "listed twice"),
        ({"kpis": {"precision_min": 1.5}}, "kpis.precision_min", "less than or equal to 1"),
        ({"budget": {"memory_mb": 8}}, "budget.memory_mb", "greater than or equal to 64"),
        ({"budget": {"timeout_seconds": 0}}, "budget.timeout_seconds", "greater than 0"),
        ({"surprise": 1}, "surprise", "Extra inputs"),
        ({"title": {"zh": "只有中文"}}, "title.en", "Field required"),
    ],
)
def test_a_bad_manifest_is_refused_naming_the_field(change: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(ManifestInvalid) as refused:
        parse_manifest({**GOOD, **change})
    error = refused.value
    assert error.code == "module_manifest_invalid" and error.status == 422
    assert error.detail["field"] == field
    assert words in error.message_en and "清单无效" in error.message


def test_a_manifest_that_is_not_yaml_or_too_large_is_refused() -> None:
    with pytest.raises(ManifestInvalid, match="YAML does not parse"):
        load_manifest_text(b"name: [unclosed")
    with pytest.raises(ManifestInvalid, match="not UTF-8"):
        load_manifest_text(b"\xff\xfe\x00")
    with pytest.raises(ManifestInvalid, match="larger than"):
        load_manifest_text(b"#" * (256 * 1024 + 1))
    with pytest.raises(ManifestInvalid, match="must be a mapping"):
        load_manifest_text(b"- a list\n")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_any_bytes_either_parse_or_are_refused_cleanly(data: bytes) -> None:
    try:
        load_manifest_text(data)
    except ManifestInvalid as error:
        assert error.message and error.message_en and "field" in error.detail


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from([*sorted(GOOD), "other"]), json_values, max_size=8))
def test_any_document_either_is_a_manifest_or_is_refused_cleanly(changes: dict[str, Any]) -> None:
    doc = {**GOOD, **changes}
    try:
        manifest = parse_manifest(yaml.safe_load(yaml.safe_dump(doc, allow_unicode=True)))
    except ManifestInvalid as error:
        assert error.detail["field"] and error.detail["problems"]
    else:
        assert manifest.name == doc["name"] and manifest.version == doc["version"]
