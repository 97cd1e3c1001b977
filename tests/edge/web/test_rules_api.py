"""The rules API (docs/rules.md, docs/api.md "Rules"): write, validate, review, override, packs, holds, tickets —
a real box (temp SQLite, the real writer) over ASGI, and uvicorn on 127.0.0.1 for the property test."""

from __future__ import annotations

import json
import re
from copy import deepcopy
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.db import connect
from edge.rules.holds import place_hold
from edge.rules.packs import builtin_packs, install_builtin
from edge.security.roles import Role
from edge.web.api import ROUTERS
from edge.web.deps import permission_of
from edge.web.routes import rules as rules_routes
from tests.edge.web.apibox import Box, ServedBox, assert_error_shape

pytestmark = pytest.mark.anyio
DOCS = Path(__file__).resolve().parents[3] / "docs"

LEAD_TIME_RULE: dict[str, Any] = {
    "id": "lead-time-growth",
    "name": {"zh": "供应商交期延长超过阈值", "en": "Supplier lead time grows past a threshold"},
    "trigger": {"kind": "signal", "name": "supplier.lead_time_changed"},
    "when": "lead_time.change_days > params.threshold_days",
    "params": {"threshold_days": 15},
    "then": [
        {
            "action": "notify",
            "role": "category_manager",
            "message": {"zh": "{supplier.name} 交货期延长 {lead_time.change_days} 天", "en": "{supplier.name} +days"},
        },
        {
            "action": "adjust_parameter",
            "parameter": "service_level",
            "scope": "supplier",
            "by": 0.02,
            "min": 0.5,
            "max": 0.99,
        },
    ],
    "owner": "purchasing-lead",
    "impact": {"what": "service level +0.02", "who": "category managers", "how_much": "suppliers 15+ days late"},
}


def rule(**changes: Any) -> dict[str, Any]:
    doc = deepcopy(LEAD_TIME_RULE)
    doc.update(changes)
    return doc


def audit_actions(box: Box, object_: str) -> list[tuple[str, str, dict[str, Any]]]:
    conn = connect(box.db_path, readonly=True)
    try:
        return [
            (r[0], r[1], json.loads(r[2]))
            for r in conn.execute("SELECT action, actor, detail FROM audit WHERE object = ? ORDER BY seq", (object_,))
        ]
    finally:
        conn.close()


async def call(box: Box, method: str, path: str, role: Role = Role.PURCHASER, **kw: Any) -> httpx.Response:
    return await box.client.request(method, f"/api/v1{path}", headers=box.auth(role), **kw)


async def test_a_purchaser_writes_the_lead_time_rule_and_a_manager_approves_it(box: Box) -> None:
    created = await call(box, "POST", "/rules", json=LEAD_TIME_RULE)
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["state"], body["latest_version"], body["active_version"]) == ("draft", 1, None)
    assert body["versions"][0]["author"] == "purchaser" and body["origin"] == "local"

    # the reviewer may not be the author, nor someone who cannot review
    for reviewer, code in (("purchaser", "rule_review_refused"), ("clerk", "rule_review_refused")):
        refused = await call(box, "POST", "/rules/lead-time-growth/submit", json={"reviewer": reviewer})
        assert refused.status_code == 409 and assert_error_shape(refused)["code"] == code
    submitted = await call(box, "POST", "/rules/lead-time-growth/submit", json={"reviewer": "manager"})
    assert submitted.status_code == 200 and submitted.json()["state"] == "in_review"
    waiting = await call(box, "GET", "/rules", Role.MANAGER, params={"reviewer": "manager"})
    assert [r["id"] for r in waiting.json()] == ["lead-time-growth"]

    # under review the version is frozen; the author cannot approve their own rule
    frozen = await call(box, "PUT", "/rules/lead-time-growth", json=rule(params={"threshold_days": 10}))
    assert frozen.status_code == 409 and frozen.json()["code"] == "rule_state_invalid"
    own = await call(box, "POST", "/rules/lead-time-growth/approve")
    assert own.status_code == 409 and own.json()["code"] == "rule_review_refused"
    approved = await call(box, "POST", "/rules/lead-time-growth/approve", Role.MANAGER, json={"note": "ok"})
    assert approved.status_code == 200, approved.text
    assert (approved.json()["state"], approved.json()["active_version"]) == ("active", 1)

    # editing the active rule writes version 2 as a draft; version 1 keeps acting
    edited = await call(box, "PUT", "/rules/lead-time-growth", json=rule(params={"threshold_days": 10}))
    assert edited.status_code == 200, edited.text
    out = edited.json()
    assert (out["state"], out["active_version"], out["latest_version"], out["latest_state"]) == (
        "active",
        1,
        2,
        "draft",
    )
    assert [(v["version"], v["state"]) for v in out["versions"]] == [(2, "draft"), (1, "active")]
    assert out["versions"][1]["document"]["params"] == {"threshold_days": 15}

    await call(box, "POST", "/rules/lead-time-growth/submit", json={"reviewer": "accountant"})
    rejected = await call(box, "POST", "/rules/lead-time-growth/reject", Role.ACCOUNTANT, json={"reason": "too low"})
    assert rejected.json()["latest_state"] == "draft" and rejected.json()["versions"][0]["reject_reason"] == "too low"
    await call(box, "POST", "/rules/lead-time-growth/submit", json={"reviewer": "accountant"})
    second = await call(box, "POST", "/rules/lead-time-growth/approve", Role.ACCOUNTANT)
    assert [(v["version"], v["state"]) for v in second.json()["versions"]] == [(2, "active"), (1, "superseded")]

    retired = await call(box, "POST", "/rules/lead-time-growth/retire", json={"reason": "season over"})
    assert (retired.json()["state"], retired.json()["active_version"]) == ("retired", None)

    trail = [(a, actor, d["version"]) for a, actor, d in audit_actions(box, "rule:lead-time-growth")][:5]
    assert trail == [
        ("rule.create", "purchaser", 1),
        ("rule.submit", "purchaser", 1),
        ("rule.approve", "manager", 1),
        ("rule.edit", "purchaser", 2),
        ("rule.submit", "purchaser", 2),
    ]
    reviews = (await call(box, "GET", "/rules/lead-time-growth")).json()["reviews"]
    assert [r["action"] for r in reversed(reviews)] == [
        "created",
        "submitted",
        "approved",
        "edited",
        "submitted",
        "rejected",
        "submitted",
        "approved",
        "retired",
    ]


async def test_submit_needs_an_owner_and_the_whole_business_impact(box: Box) -> None:
    doc = rule()
    del doc["owner"]
    doc["impact"] = None
    assert (await call(box, "POST", "/rules", json={k: v for k, v in doc.items() if v is not None})).status_code == 201
    refused = await call(box, "POST", "/rules/lead-time-growth/submit", json={"reviewer": "manager"})
    body = assert_error_shape(refused)
    assert refused.status_code == 422 and body["code"] == "rule_not_ready"
    assert set(body["detail"]["fields"]) == {"owner", "impact.what", "impact.who", "impact.how_much"}
    assert "负责人" in body["message"] and "owner" in body["message_en"]


@pytest.mark.parametrize(
    ("changes", "code", "field"),
    [
        ({"when": "lead_time.change_days > > 15"}, "rule_syntax_invalid", "when"),
        ({"when": "lead_time.change_dayz > 15"}, "rule_fact_unknown", "when"),
        ({"when": "invoice.total_fen > 15"}, "rule_fact_unknown", "when"),
        ({"when": "lead_time.change_days > 'x'"}, "rule_type_invalid", "when"),
        ({"then": [{"action": "launch_rocket"}]}, "rule_action_invalid", "then[1]"),
        ({"trigger": {"kind": "signal", "name": "nope"}}, "rule_invalid", "trigger.name"),
    ],
)
async def test_a_bad_rule_is_refused_at_save_with_a_clear_message_and_nothing_is_stored(
    box: Box, changes: dict[str, Any], code: str, field: str
) -> None:
    response = await call(box, "POST", "/rules", json=rule(**changes))
    body = assert_error_shape(response)
    assert response.status_code == 422 and body["code"] == code, body
    assert body["detail"]["field"] == field
    assert box.count("rules") == 0 and box.count("rule_versions") == 0
    checked = (await call(box, "POST", "/rules/validate", json=rule(**changes))).json()
    assert checked["ok"] is False and checked["problems"][0]["code"] == code


async def test_an_unknown_fact_is_named_with_close_names(box: Box) -> None:
    body = (await call(box, "POST", "/rules", json=rule(when="lead_time.change_dayz > 15"))).json()
    assert "lead_time.change_dayz" in body["message_en"]
    assert "lead_time.change_days" in json.dumps(body["detail"])


async def test_a_rule_that_would_trigger_itself_through_signals_is_refused_at_save(box: Box) -> None:
    def chain(rule_id: str, listens: str, emits: str) -> dict[str, Any]:
        return {
            "id": rule_id,
            "name": {"zh": rule_id, "en": rule_id},
            "trigger": {"kind": "signal", "name": listens},
            "when": "true",
            "then": [{"action": "emit_signal", "name": emits}],
        }

    assert (await call(box, "POST", "/rules", json=chain("a", "rule.x", "rule.y"))).status_code == 201
    assert (await call(box, "POST", "/rules", json=chain("b", "rule.y", "rule.z"))).status_code == 201
    looped = await call(box, "POST", "/rules", json=chain("c", "rule.z", "rule.x"))
    body = assert_error_shape(looped)
    assert looped.status_code == 422 and body["code"] == "rule_loop"
    assert "rule.x" in body["detail"]["chain"] and "c" in body["detail"]["chain"]
    assert box.count("rules") == 2


async def test_reserved_and_taken_ids_are_refused(box: Box) -> None:
    assert (await call(box, "POST", "/rules", json=rule(id="facts"))).json()["code"] == "rule_invalid"
    assert (await call(box, "POST", "/rules", json=rule())).status_code == 201
    again = await call(box, "POST", "/rules", json=rule())
    assert again.status_code == 409 and again.json()["code"] == "rule_exists"
    renamed = await call(box, "PUT", "/rules/lead-time-growth", json=rule(id="other"))
    assert renamed.status_code == 422 and renamed.json()["detail"]["field"] == "id"
    missing = await call(box, "GET", "/rules/nope")
    assert missing.status_code == 404 and missing.json()["code"] == "unknown_rule"


async def test_validate_answers_problems_and_readiness_without_saving(box: Box) -> None:
    good = (await call(box, "POST", "/rules/validate", json=LEAD_TIME_RULE)).json()
    assert good == {"ok": True, "problems": [], "ready_for_review": True, "missing_for_review": []}
    doc = rule()
    del doc["owner"]
    partial = (await call(box, "POST", "/rules/validate", json=doc)).json()
    assert partial["ok"] and not partial["ready_for_review"]
    assert [p["detail"]["field"] for p in partial["missing_for_review"]] == ["owner"]
    for garbage in ([1, 2], "text", None, {"id": 5}):
        answer = await call(box, "POST", "/rules/validate", json=garbage)
        assert answer.status_code == 200 and answer.json()["ok"] is False
    assert box.count("rules") == 0


async def test_the_catalogue_lists_facts_per_trigger_and_the_actions(box: Box) -> None:
    facts = (await call(box, "GET", "/rules/facts", Role.AUDITOR)).json()
    names = {f["name"]: f for ns in facts["namespaces"] for f in ns["fields"]}
    assert names["lead_time.change_days"]["zh"] == "变化(天)" and names["lead_time.change_days"]["type"] == "float"
    signals = {s["name"]: s["namespaces"] for s in facts["signals"]}
    assert signals["supplier.lead_time_changed"] == ["event", "store", "params", "supplier", "lead_time"]
    acts = (await call(box, "GET", "/rules/actions", Role.AUDITOR)).json()
    assert {a["action"] for a in acts["actions"]} == {
        "notify",
        "open_ticket",
        "hold_document",
        "adjust_parameter",
        "create_draft",
        "tag_return",
        "send_email",
        "emit_signal",
    }
    assert "supplier_claim" in {c["name"] for c in acts["channels"]}
    assert (await call(box, "GET", "/rules/facts", Role.CLERK)).status_code == 403


async def test_overrides_change_declared_params_only_and_survive(box: Box) -> None:
    await call(box, "POST", "/rules", json=LEAD_TIME_RULE)
    unknown = await call(box, "PUT", "/rules/lead-time-growth/override", json={"params": {"nope": 1}})
    assert unknown.status_code == 422 and unknown.json()["code"] == "rule_override_invalid"
    wrong_type = await call(box, "PUT", "/rules/lead-time-growth/override", json={"params": {"threshold_days": "x"}})
    assert wrong_type.status_code == 422 and wrong_type.json()["code"] == "rule_override_invalid"
    ok = await call(
        box, "PUT", "/rules/lead-time-growth/override", json={"enabled": False, "params": {"threshold_days": 20}}
    )
    assert ok.json() | {"updated_at": None} == {
        "rule_id": "lead-time-growth",
        "enabled": False,
        "params": {"threshold_days": 20},
        "updated_by": "purchaser",
        "updated_at": None,
    }
    listed = (await call(box, "GET", "/rules")).json()
    assert listed[0]["enabled"] is False
    cleared = await call(box, "PUT", "/rules/lead-time-growth/override", json={"clear": True})
    assert cleared.json()["enabled"] is None and cleared.json()["params"] == {}


async def test_built_in_packs_are_listed_and_their_rules_change_only_with_the_pack(box: Box) -> None:
    conn = connect(box.db_path)
    try:
        conn.execute("BEGIN")
        install_builtin(conn, "system", box.clock())
        conn.execute("COMMIT")
    finally:
        conn.close()
    listed = (await call(box, "GET", "/rule-packs", Role.AUDITOR)).json()
    assert {p["name"] for p in listed} == {
        "supplier-delay-response",
        "channel-return-flows",
        "price-difference-hold",
        "papers-escalation",
        "weather-response",
    }
    assert all(p["in_force"] and p["source"] == "builtin" and not p["signed"] for p in listed)
    rule_id = "supplier-delay-response.lead-time-growth"
    shown = (await call(box, "GET", f"/rules/{rule_id}")).json()
    assert (shown["state"], shown["origin"], shown["lineage"]["pack"]["name"]) == (
        "active",
        "builtin:supplier-delay-response@1",
        "supplier-delay-response",
    )
    edit = await call(box, "PUT", f"/rules/{rule_id}", json={**shown["versions"][0]["document"], "params": {}})
    assert edit.status_code == 409 and edit.json()["code"] == "rule_from_pack"
    assert (await call(box, "POST", f"/rules/{rule_id}/retire")).json()["code"] == "rule_from_pack"
    off = await call(box, "PUT", f"/rules/{rule_id}/override", json={"enabled": False})
    assert off.status_code == 200 and off.json()["enabled"] is False


async def seed_rule_outputs(box: Box) -> tuple[int, int]:
    """A purchase order the purchaser posted, held by a rule, and an open ticket, as the actions write them."""
    response = await box.post(
        "purchase_order",
        {"counterparty": "sup-1", "lines": [{"code": "COLA", "qty": 24, "price_fen": 226}]},
        role=Role.PURCHASER,
        key="po-held",
    )
    assert response.status_code == 201, response.text
    document_id = int(response.json()["document_id"])
    conn = connect(box.db_path)
    try:
        conn.execute("BEGIN")
        hold, _ = place_hold(
            conn,
            kind="purchase_order",
            object_id=document_id,
            rule_id="r",
            version=1,
            reason="价差",
            reason_en="price gap",
            now=box.clock(),
        )
        ticket = conn.execute(
            "INSERT INTO rule_tickets (queue, title, title_en, rule_id, version, opened_at)"
            " VALUES ('supplier_claims', '索赔', 'claim', 'r', 1, '2024-06-01T00:00:00+00:00')"
        ).lastrowid
        conn.execute("COMMIT")
    finally:
        conn.close()
    return hold, int(ticket or 0)


async def test_holds_are_released_by_someone_other_than_the_author_and_tickets_closed(box: Box) -> None:
    hold, ticket = await seed_rule_outputs(box)
    held = (await call(box, "GET", "/holds", Role.AUDITOR, params={"state": "open"})).json()
    assert [h["id"] for h in held] == [hold]
    by_author = await call(box, "POST", f"/holds/{hold}/release", Role.PURCHASER, json={"note": "ok"})
    assert by_author.status_code == 409
    assert (await call(box, "POST", f"/holds/{hold}/release", Role.AUDITOR, json={"note": "ok"})).status_code == 403
    released = await call(box, "POST", f"/holds/{hold}/release", Role.ACCOUNTANT, json={"note": "checked"})
    assert released.status_code == 200 and released.json()["state"] == "released"

    tickets = (await call(box, "GET", "/rule-tickets", params={"queue": "supplier_claims"})).json()
    assert [t["id"] for t in tickets] == [ticket]
    closed = await call(box, "POST", f"/rule-tickets/{ticket}/close", Role.ACCOUNTANT, json={"resolution": "claimed"})
    assert closed.status_code == 200 and (closed.json()["state"], closed.json()["closed_by"]) == (
        "closed",
        "accountant",
    )
    again = await call(box, "POST", f"/rule-tickets/{ticket}/close", Role.MANAGER, json={"resolution": "x"})
    assert again.status_code == 409 and again.json()["code"] == "rule_ticket_closed"
    assert [a for a, _, _ in audit_actions(box, f"rule_ticket:{ticket}")] == ["rule_ticket.close"]


def seed_drafts(box: Box) -> tuple[int, int]:
    """A purchase order draft and a presale draft, as the create_draft action writes them."""
    conn = connect(box.db_path)
    try:
        conn.execute("BEGIN")
        ids = []
        for kind, payload in (
            ("purchase_order", {"sku": "COLA", "base_unit": "piece", "supplier": "sup-1", "base_qty": 24}),
            ("presale", {"sku": "COLA", "base_unit": "piece", "note": "霜冻预售", "note_en": "frost presale"}),
        ):
            ids.append(
                conn.execute(
                    "INSERT INTO rule_drafts (kind, payload, subject, rule_id, version, created_at)"
                    " VALUES (?, ?, 'COLA', 'weather-response.frost', 1, '2024-06-01T00:00:00+00:00')",
                    (kind, json.dumps(payload, ensure_ascii=False)),
                ).lastrowid
            )
        conn.execute("COMMIT")
    finally:
        conn.close()
    return int(ids[0] or 0), int(ids[1] or 0)


async def test_a_purchase_order_draft_is_confirmed_into_a_po_once_and_a_presale_dismissed(box: Box) -> None:
    order, presale = seed_drafts(box)
    listed = (await call(box, "GET", "/rule-drafts", Role.AUDITOR, params={"state": "open"})).json()
    assert {d["id"] for d in listed} >= {order, presale}
    # the accountant may act on rule outputs but may not raise purchase orders
    denied = await call(box, "POST", f"/rule-drafts/{order}/confirm", Role.ACCOUNTANT, json={})
    assert denied.status_code == 403 and denied.json()["code"] == "permission_denied"
    confirmed = await call(box, "POST", f"/rule-drafts/{order}/confirm", Role.PURCHASER, json={"note": "ok"})
    assert confirmed.status_code == 200, confirmed.text
    body = confirmed.json()
    assert (body["state"], body["decided_by"]) == ("confirmed", "purchaser") and body["document_id"]
    document = (await call(box, "GET", f"/documents/{body['document_id']}")).json()
    assert document["type"] == "purchase_order" and document["counterparty"] == "sup-1"
    assert [(line["sku"], line["qty_base"]) for line in document["lines"]] == [("COLA", 24)]
    again = await call(box, "POST", f"/rule-drafts/{order}/confirm", Role.MANAGER, json={})
    assert again.status_code == 409 and again.json()["code"] == "rule_draft_invalid"
    dismissed = await call(box, "POST", f"/rule-drafts/{presale}/dismiss", Role.MANAGER, json={"note": "not now"})
    assert dismissed.status_code == 200 and dismissed.json()["state"] == "dismissed"
    assert (await call(box, "POST", "/rule-drafts/999999/dismiss", Role.MANAGER, json={})).status_code == 404
    assert [a for a, _, _ in audit_actions(box, f"rule_draft:{order}")] == ["rule_draft.confirm"]
    assert [a for a, _, _ in audit_actions(box, f"rule_draft:{presale}")] == ["rule_draft.dismiss"]


async def test_a_rules_parameter_changes_are_undone_except_a_value_changed_since(box: Box) -> None:
    created = await call(box, "POST", "/rules", json=rule(id="undo-me"))
    assert created.status_code == 201, created.text
    conn = connect(box.db_path)
    try:
        conn.execute("BEGIN")
        for sku, now_value in (("COLA", 0.97), ("MILK", 0.8)):  # MILK was changed by hand after the rule
            conn.execute(
                "INSERT OR REPLACE INTO item_suppliers (sku, supplier, unit, pack, service_level, updated_at,"
                " updated_by) VALUES (?, 'sup-1', 'piece', 1, ?, '2024-06-01', 'test')",
                (sku, now_value),
            )
            conn.execute(
                "INSERT INTO parameter_changes (rule_id, version, sku, supplier, parameter, before, after, at)"
                " VALUES ('undo-me', 1, ?, 'sup-1', 'service_level', 0.95, 0.97, '2024-06-01')",
                (sku,),
            )
        conn.execute("COMMIT")
    finally:
        conn.close()
    assert (await call(box, "POST", "/rules/undo-me/restore-parameters", Role.CLERK, json={})).status_code == 403
    assert (await call(box, "POST", "/rules/nope/restore-parameters", Role.MANAGER, json={})).status_code == 404
    done = await call(box, "POST", "/rules/undo-me/restore-parameters", Role.MANAGER, json={})
    assert done.status_code == 200, done.text
    body = done.json()
    assert [(r["sku"], r["restored_to"]) for r in body["restored"]] == [("COLA", 0.95)]
    assert [(k["sku"], k["current"]) for k in body["kept"]] == [("MILK", 0.8)]
    conn = connect(box.db_path, readonly=True)
    try:
        levels = dict(conn.execute("SELECT sku, service_level FROM item_suppliers WHERE sku IN ('COLA', 'MILK')"))
    finally:
        conn.close()
    assert levels == {"COLA": 0.95, "MILK": 0.8}
    again = (await call(box, "POST", "/rules/undo-me/restore-parameters", Role.MANAGER, json={})).json()
    assert again["restored"] == []  # each change is undone once


async def test_firings_list_empty_for_a_new_rule_and_unknown_rules_404(box: Box) -> None:
    await call(box, "POST", "/rules", json=LEAD_TIME_RULE)
    assert (await call(box, "GET", "/rules/lead-time-growth/firings")).json() == []
    assert (await call(box, "GET", "/rule-firings", params={"state": "failed"})).json() == []
    assert (await call(box, "GET", "/rules/nope/firings")).status_code == 404


async def test_a_dry_run_of_the_return_routing_rule_replays_the_returns_and_writes_nothing(box: Box) -> None:
    shipped = next(p for p in builtin_packs() if p.name == "channel-return-flows")
    damaged = {**shipped.rules[0], "id": "damaged-returns"}
    assert (await call(box, "POST", "/rules", json=damaged)).status_code == 201
    await box.receive("COLA", 5)
    sale = await box.post("sale", {"lines": [{"code": "COLA", "qty": 3}]}, role="clerk", key="s")
    for key, reason in (("r1", "包装破损"), ("r2", "口味不符")):
        returned = await box.post(
            "customer_return",
            {"lines": [{"code": "COLA", "qty": 1}], "reason": reason, "ref_id": sale.json()["document_id"]},
            role="clerk",
            key=key,
        )
        assert returned.status_code == 201, returned.text
    before = {t: box.count(t) for t in ("audit", "rule_firings", "return_flows", "rule_tickets")}
    response = await call(box, "POST", "/rules/damaged-returns/dry-run", json={"days": 7})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["rule_id"], body["version"], body["days"], body["replayable"]) == ("damaged-returns", 1, 7, True)
    assert (body["events"], body["firings"], body["failed"]) == (2, 1, 0)
    assert body["actions"] == {"tag_return": 1, "open_ticket": 1}
    assert body["samples"][0]["facts"]["return"]["reason"] == "包装破损"
    assert {t: box.count(t) for t in before} == before
    assert (await call(box, "POST", "/rules/nope/dry-run", json={"days": 7})).status_code == 404
    too_long = await call(box, "POST", "/rules/damaged-returns/dry-run", json={"days": 1000})
    assert too_long.status_code == 422


def test_every_rules_endpoint_has_a_row_in_docs_api_md_with_its_permission() -> None:
    text = (DOCS / "api.md").read_text("utf-8")
    section = text[text.index("### Rules (业务规则)") : text.index("### Modules")]
    rows = {
        (m.group(1), re.sub(r"\?.*$", "", m.group(2))): m.group(3)
        for m in re.finditer(r"^\| `(GET|POST|PUT|DELETE) (/api/v1/\S+?)` \| `([a-z:]+)` \|", section, re.M)
    }
    routes = {
        (method, re.sub(r"\{\w+\}", "{id}", route.path)): permission_of(route)
        for route in rules_routes.router.routes
        for method in route.methods  # type: ignore[attr-defined]
    }
    assert rules_routes.router in ROUTERS
    assert routes == rows


@pytest.fixture(scope="module")
def served(served_box: ServedBox) -> ServedBox:
    return served_box


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=30),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
        max_leaves=20,
    )
    | st.fixed_dictionaries(
        {
            "id": st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True),
            "name": st.just({"zh": "规则", "en": "rule"}),
            "trigger": st.sampled_from(
                [{"kind": "signal", "name": "supplier.lead_time_changed"}, {"kind": "ledger", "doc_type": "sale"}]
            ),
            "when": st.text(max_size=80),
            "then": st.lists(st.dictionaries(st.sampled_from(["action", "role", "message"]), st.text(max_size=10))),
        }
    )
)
def test_validate_never_fails_whatever_the_body(served: ServedBox, body: Any) -> None:
    response = httpx.post(
        f"{served.url}/api/v1/rules/validate", json=body, headers=served.auth(Role.PURCHASER), timeout=30
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["ok"] == (answer["problems"] == [])
    for problem in answer["problems"]:
        assert problem["code"].startswith("rule_") and problem["message"] and problem["message_en"]
