"""Rule governance (edge/rules/governance.py): draft -> in_review -> active -> retired, by the right people, every
step in the review trail and the audit chain — on a real migrated SQLite database."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edge.db import connect
from edge.ledger.audit import verify_chain
from edge.rules import governance, store
from edge.rules.errors import RuleInvalid
from edge.security.users import set_user_active
from tests.edge.web.apibox import seed

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
RULE = "lead-time"


def lead_rule(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": RULE,
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


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rules-governance") / "storebox.db"
    seed(path)
    return path


@pytest.fixture
def conn(template_db: Path, tmp_path: Path) -> Iterator[sqlite3.Connection]:
    path = tmp_path / "storebox.db"
    shutil.copyfile(template_db, path)
    connection = connect(path)
    store.create_rule(connection, lead_rule(), "purchaser", T0)
    yield connection
    connection.close()


def states(conn: sqlite3.Connection) -> list[tuple[int, str]]:
    return [(int(r[0]), r[1]) for r in conn.execute("SELECT version, state FROM rule_versions ORDER BY version")]


def test_the_whole_path_from_draft_to_retired_is_audited_with_id_and_version(conn: sqlite3.Connection) -> None:
    governance.submit(conn, RULE, "manager", "purchaser", T0)
    governance.approve(conn, RULE, "manager", T0, "fine")
    store.update_rule(conn, RULE, lead_rule(params={"threshold_days": 10}), "purchaser", T0)
    governance.submit(conn, RULE, "accountant", "purchaser", T0)
    out = governance.approve(conn, RULE, "accountant", T0)
    assert states(conn) == [(1, "superseded"), (2, "active")]
    assert (out["state"], out["active_version"]) == ("active", 2)
    governance.retire(conn, RULE, "manager", T0, "season over")
    assert states(conn) == [(1, "superseded"), (2, "retired")]
    audit = [
        (r[0], r[1], json.loads(r[2])["rule_id"], json.loads(r[2]).get("version"))
        for r in conn.execute(
            "SELECT action, actor, detail FROM audit WHERE object = ? ORDER BY seq", (f"rule:{RULE}",)
        )
    ]
    assert audit == [
        ("rule.create", "purchaser", RULE, 1),
        ("rule.submit", "purchaser", RULE, 1),
        ("rule.approve", "manager", RULE, 1),
        ("rule.edit", "purchaser", RULE, 2),
        ("rule.submit", "purchaser", RULE, 2),
        ("rule.approve", "accountant", RULE, 2),
        ("rule.retire", "manager", RULE, 2),
    ]
    assert verify_chain(conn) == []


def test_the_reviewer_is_a_different_active_person_who_may_review(conn: sqlite3.Connection) -> None:
    for reviewer in ("purchaser", "clerk", "auditor", "nobody"):
        with pytest.raises(governance.ReviewRefused):
            governance.submit(conn, RULE, reviewer, "purchaser", T0)
    set_user_active(conn, "manager", False)
    with pytest.raises(governance.ReviewRefused) as inactive:
        governance.submit(conn, RULE, "manager", "purchaser", T0)
    assert "rules:review" in inactive.value.message_en and "rules:review" in inactive.value.message
    with pytest.raises(RuleInvalid):
        governance.submit(conn, RULE, " ", "purchaser", T0)
    assert states(conn) == [(1, "draft")]


def test_the_author_cannot_approve_but_any_other_reviewer_can(conn: sqlite3.Connection) -> None:
    governance.submit(conn, RULE, "manager", "admin", T0)  # sent by someone else: still the purchaser's rule
    with pytest.raises(governance.ReviewRefused) as own:
        governance.approve(conn, RULE, "purchaser", T0)
    assert own.value.detail == {"author": "purchaser", "actor": "purchaser", "reviewer": "manager"}
    with pytest.raises(governance.ReviewRefused):
        governance.approve(conn, RULE, "admin", T0)  # who submitted it does not approve it either
    out = governance.approve(conn, RULE, "accountant", T0)
    assert out["state"] == "active" and out["versions"][0]["approved_by"] == "accountant"


def test_whoever_edited_a_version_can_neither_review_nor_approve_it(conn: sqlite3.Connection) -> None:
    store.update_rule(conn, RULE, lead_rule(params={"threshold_days": 0}), "manager", T0)  # the manager rewrites it
    with pytest.raises(governance.ReviewRefused):
        governance.submit(conn, RULE, "manager", "purchaser", T0)
    governance.submit(conn, RULE, "accountant", "purchaser", T0)
    with pytest.raises(governance.ReviewRefused) as edited:
        governance.approve(conn, RULE, "manager", T0)
    assert edited.value.detail["actor"] == "manager"
    assert states(conn) == [(1, "in_review")]
    assert governance.approve(conn, RULE, "accountant", T0)["state"] == "active"


def test_submit_lists_everything_a_rule_lacks_for_review(conn: sqlite3.Connection) -> None:
    bare = lead_rule()
    del bare["owner"], bare["impact"]
    store.update_rule(conn, RULE, bare, "purchaser", T0)
    with pytest.raises(governance.RuleNotReady) as missing:
        governance.submit(conn, RULE, "manager", "purchaser", T0)
    assert missing.value.detail["fields"] == ["owner", "impact.what", "impact.who", "impact.how_much"]
    assert "what it changes" in missing.value.message_en and "改变什么" in missing.value.message


def test_transitions_from_the_wrong_state_are_refused_and_change_nothing(conn: sqlite3.Connection) -> None:
    for step in (
        lambda: governance.approve(conn, RULE, "manager", T0),
        lambda: governance.reject(conn, RULE, "no", "manager", T0),
    ):
        with pytest.raises(store.RuleStateError) as wrong:
            step()
        assert wrong.value.detail["state"] == "draft" and wrong.value.detail["expected"] == "in_review"
    governance.submit(conn, RULE, "manager", "purchaser", T0)
    with pytest.raises(store.RuleStateError):
        governance.submit(conn, RULE, "manager", "purchaser", T0)
    with pytest.raises(RuleInvalid):
        governance.reject(conn, RULE, "", "manager", T0)
    rejected = governance.reject(conn, RULE, "threshold too low", "manager", T0)
    assert (rejected["state"], rejected["versions"][0]["reject_reason"]) == ("draft", "threshold too low")
    assert [r["action"] for r in rejected["reviews"]] == ["rejected", "submitted", "created"]


def test_a_retired_rule_comes_back_only_through_a_new_reviewed_version(conn: sqlite3.Connection) -> None:
    governance.retire(conn, RULE, "purchaser", T0)
    assert states(conn) == [(1, "retired")]
    with pytest.raises(store.RuleStateError):
        governance.retire(conn, RULE, "purchaser", T0)
    revived = store.update_rule(conn, RULE, lead_rule(), "purchaser", T0)
    assert (revived["state"], revived["latest_version"]) == ("draft", 2)
    governance.submit(conn, RULE, "manager", "purchaser", T0)
    assert governance.approve(conn, RULE, "manager", T0)["active_version"] == 2
