"""Rules as stored (edge/rules/store.py): drafts, immutable versions, refusals at save that keep nothing, overrides,
lineage and tickets — on a real migrated SQLite database."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.db import connect
from edge.rules import governance, store
from edge.rules.errors import RuleFactUnknown, RuleInvalid, RuleLoop, RuleSyntaxInvalid
from tests.edge.web.apibox import seed

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def lead_rule(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": "lead-time",
        "name": {"zh": "交期延长", "en": "lead time grows"},
        "trigger": {"kind": "signal", "name": "supplier.lead_time_changed"},
        "when": "lead_time.change_days > params.threshold_days",
        "params": {"threshold_days": 15},
        "then": [{"action": "notify", "role": "category_manager", "message": {"zh": "{supplier.name}", "en": "x"}}],
        "owner": "purchasing-lead",
        "impact": {"what": "a notice", "who": "category managers", "how_much": "few"},
    }
    doc.update(changes)
    return doc


def signal_rule(rule_id: str, listens: str, emits: str) -> dict[str, Any]:
    return {
        "id": rule_id,
        "name": {"zh": rule_id, "en": rule_id},
        "trigger": {"kind": "signal", "name": listens},
        "when": "true",
        "then": [{"action": "emit_signal", "name": emits}],
    }


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rules-store") / "storebox.db"
    seed(path)
    return path


@pytest.fixture
def conn(template_db: Path, tmp_path: Path) -> Iterator[sqlite3.Connection]:
    path = tmp_path / "storebox.db"
    shutil.copyfile(template_db, path)
    connection = connect(path)
    yield connection
    connection.close()


def count(conn: sqlite3.Connection, table: str) -> int:
    return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def test_a_new_rule_is_a_draft_stored_as_its_validated_document(conn: sqlite3.Connection) -> None:
    out = store.create_rule(conn, {**lead_rule(), "name": "交期延长"}, "p", T0)
    assert (out["state"], out["latest_version"], out["active_version"], out["origin"]) == ("draft", 1, None, "local")
    version = out["versions"][0]
    assert (
        version["document"]["name"] == {"zh": "交期延长", "en": "交期延长"} and version["document"]["enabled"] is True
    )
    assert (version["trigger_kind"], version["trigger_key"]) == ("signal", "supplier.lead_time_changed")
    assert (version["name"], version["name_en"], version["owner"]) == ("交期延长", "交期延长", "purchasing-lead")
    row = conn.execute("SELECT document, sha256 FROM rule_versions").fetchone()
    assert store.sha256_of(row[0]) == row[1]
    audit = conn.execute("SELECT action, object, detail FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    assert (audit[0], audit[1], json.loads(audit[2])["version"]) == ("rule.create", "rule:lead-time", 1)


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"when": "lead_time.change_days >"}, RuleSyntaxInvalid),
        ({"when": "supplier.nope > 1"}, RuleFactUnknown),
        ({"id": "Bad Id"}, RuleInvalid),
        ({"then": []}, RuleInvalid),
    ],
)
def test_a_refused_rule_keeps_nothing(conn: sqlite3.Connection, changes: dict[str, Any], error: type) -> None:
    conn.execute("BEGIN")
    with pytest.raises(error) as raised:
        store.create_rule(conn, lead_rule(**changes), "p", T0)
    conn.execute("COMMIT")
    assert raised.value.message and raised.value.message_en and raised.value.detail["field"]
    assert (count(conn, "rules"), count(conn, "rule_versions"), count(conn, "rule_reviews")) == (0, 0, 0)


def test_a_loop_through_other_rules_is_refused_naming_the_chain(conn: sqlite3.Connection) -> None:
    store.create_rule(conn, signal_rule("a", "rule.x", "rule.y"), "p", T0)
    with pytest.raises(RuleLoop) as raised:
        store.create_rule(conn, signal_rule("b", "rule.y", "rule.x"), "p", T0)
    assert raised.value.detail["chain"] == "b -> rule.x -> a -> rule.y -> b"
    assert "循环" in raised.value.message
    # the same rule becomes acceptable once the rule it loops with is retired
    governance.retire(conn, "a", "p", T0)
    assert store.create_rule(conn, signal_rule("b", "rule.y", "rule.x"), "p", T0)["state"] == "draft"


def test_a_draft_is_edited_in_place_and_a_reviewed_version_never_changes(conn: sqlite3.Connection) -> None:
    store.create_rule(conn, lead_rule(), "p", T0)
    edited = store.update_rule(conn, "lead-time", lead_rule(params={"threshold_days": 12}), "p", T0)
    assert edited["latest_version"] == 1 and edited["versions"][0]["document"]["params"] == {"threshold_days": 12}
    governance.submit(conn, "lead-time", "manager", "p", T0)
    governance.approve(conn, "lead-time", "manager", T0)
    frozen = conn.execute("SELECT document, sha256 FROM rule_versions WHERE version = 1").fetchone()
    newer = store.update_rule(conn, "lead-time", lead_rule(params={"threshold_days": 9}), "p", T0)
    assert (newer["active_version"], newer["latest_version"], newer["state"]) == (1, 2, "active")
    assert tuple(conn.execute("SELECT document, sha256 FROM rule_versions WHERE version = 1").fetchone()) == tuple(
        frozen
    )
    again = store.update_rule(conn, "lead-time", lead_rule(params={"threshold_days": 8}), "p", T0)
    assert again["latest_version"] == 2  # the new draft is edited in place


def test_problems_of_lists_the_refusal_and_says_nothing_for_a_good_rule(conn: sqlite3.Connection) -> None:
    assert store.problems_of(conn, lead_rule()) == []
    [problem] = store.problems_of(conn, lead_rule(when="lead_time.change_dayz > 1"))
    assert problem["code"] == "rule_fact_unknown" and problem["detail"]["fact"] == "lead_time.change_dayz"


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
        max_leaves=25,
    )
    | st.builds(
        lambda when, params: lead_rule(when=when, params=params),
        st.text(max_size=120),
        st.dictionaries(st.from_regex(r"[a-z]{1,6}", fullmatch=True), st.integers() | st.text(max_size=5)),
    )
)
def test_problems_of_never_raises_whatever_the_document(template_db: Path, document: Any) -> None:
    connection = connect(template_db, readonly=True)
    try:
        problems = store.problems_of(connection, document)
    finally:
        connection.close()
    for problem in problems:
        assert problem["code"].startswith("rule_") and problem["message"] and problem["message_en"]


def test_overrides_take_only_declared_params_of_the_right_type(conn: sqlite3.Connection) -> None:
    store.create_rule(conn, lead_rule(), "p", T0)
    with pytest.raises(store.OverrideInvalid) as unknown:
        store.set_override(conn, "lead-time", "m", T0, params={"threshold": 3})
    assert unknown.value.detail["params"] == ["threshold_days"]
    with pytest.raises(store.OverrideInvalid):
        store.set_override(conn, "lead-time", "m", T0, params={"threshold_days": "many"})
    assert store.set_override(conn, "lead-time", "m", T0, params={"threshold_days": 20})["params"] == {
        "threshold_days": 20
    }
    kept = store.set_override(conn, "lead-time", "m", T0, enabled=False)
    assert (kept["enabled"], kept["params"]) == (False, {"threshold_days": 20})
    dropped = store.set_override(conn, "lead-time", "m", T0, params={"threshold_days": None})
    assert (dropped["enabled"], dropped["params"]) == (False, {})
    assert store.set_override(conn, "lead-time", "m", T0, clear=True)["enabled"] is None
    actions = [r[0] for r in conn.execute("SELECT action FROM audit WHERE object = 'rule:lead-time'")]
    assert actions.count("rule.override") == 4


def test_list_rules_filters_by_state_trigger_and_reviewer(conn: sqlite3.Connection) -> None:
    store.create_rule(conn, lead_rule(), "p", T0)
    store.create_rule(conn, signal_rule("chain", "rule.a", "rule.b"), "p", T0)
    governance.submit(conn, "lead-time", "manager", "p", T0)
    assert [r["id"] for r in store.list_rules(conn)] == ["chain", "lead-time"]
    assert [r["id"] for r in store.list_rules(conn, state="in_review")] == ["lead-time"]
    assert [r["id"] for r in store.list_rules(conn, reviewer="manager")] == ["lead-time"]
    assert store.list_rules(conn, reviewer="accountant") == []
    assert [r["id"] for r in store.list_rules(conn, trigger_kind="signal", limit=1, offset=1)] == ["lead-time"]


def test_lineage_names_the_documents_a_rule_acted_on(conn: sqlite3.Connection) -> None:
    store.create_rule(conn, lead_rule(), "p", T0)
    firing = conn.execute(
        "INSERT INTO rule_firings (rule_id, version, event_key, trigger_kind, fired_at) VALUES"
        " ('lead-time', 1, 'sup-1@1', 'signal', ?)",
        (T0.isoformat(),),
    ).lastrowid
    conn.execute(
        "INSERT INTO rule_actions (firing_id, action_index, action, spec, object_kind, object_id, at)"
        " VALUES (?, 0, 'hold_document', '{}', 'invoice', '7', ?)",
        (firing, T0.isoformat()),
    )
    lineage = store.get_rule(conn, "lead-time")["lineage"]
    assert lineage["firings"] == 1 and lineage["acted_on"][0]["object_kind"] == "invoice"
    [listed] = store.list_firings(conn, rule_id="lead-time")
    assert listed["actions"][0]["object_id"] == "7" and listed["facts"] == {}


def test_a_ticket_is_closed_once_with_a_resolution(conn: sqlite3.Connection) -> None:
    ticket = conn.execute(
        "INSERT INTO rule_tickets (queue, title, title_en, rule_id, version, opened_at)"
        " VALUES ('logistics', '超时', 'late', 'r', 3, ?)",
        (T0.isoformat(),),
    ).lastrowid
    assert ticket is not None
    with pytest.raises(RuleInvalid):
        store.close_ticket(conn, ticket, "  ", "m", T0)
    closed = store.close_ticket(conn, ticket, "called the carrier", "m", T0)
    assert (closed["state"], closed["closed_by"], closed["resolution"]) == ("closed", "m", "called the carrier")
    with pytest.raises(store.TicketClosed):
        store.close_ticket(conn, ticket, "again", "m", T0)
    with pytest.raises(store.UnknownTicket):
        store.close_ticket(conn, 999, "x", "m", T0)
    detail = json.loads(conn.execute("SELECT detail FROM audit WHERE action = 'rule_ticket.close'").fetchone()[0])
    assert (detail["rule_id"], detail["version"]) == ("r", 3)
