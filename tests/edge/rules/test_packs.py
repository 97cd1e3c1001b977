"""Rule packs (docs/rules.md "Rule packs"): signed `rule_pack` packages installed, upgraded and rolled back
atomically through edge/sync/packages.py, built-in packs, local overrides kept — real SQLite, real package files."""

from __future__ import annotations

import json
import shutil
from copy import deepcopy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.db import connect
from edge.rules import packs, store
from edge.rules.model import validate_rule
from edge.sync import packages as pk
from tests.edge.sync.packaging import T0, box_settings, direct_transact, package, reader
from tests.edge.web.apibox import seed

NAME = "supplier-delay"
LEAD = "supplier-delay.lead-time"
PAPERS = "supplier-delay.papers"


def lead_rule(threshold: int = 15, **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": LEAD,
        "name": {"zh": "交期延长", "en": "lead time grows"},
        "trigger": {"kind": "signal", "name": "supplier.lead_time_changed"},
        "when": "lead_time.change_days > params.threshold_days",
        "params": {"threshold_days": threshold},
        "then": [{"action": "notify", "role": "category_manager", "message": {"zh": "{supplier.name}", "en": "x"}}],
        "owner": "purchasing-lead",
        "impact": {"what": "a notice", "who": "category managers", "how_much": "few"},
    }
    doc.update(changes)
    return doc


def papers_rule() -> dict[str, Any]:
    return {
        "id": PAPERS,
        "name": {"zh": "证照临期", "en": "papers expiring"},
        "trigger": {"kind": "signal", "name": "paper.expiring"},
        "when": "paper.days_left <= 7",
        "then": [{"action": "open_ticket", "queue": "purchaser", "title": {"zh": "催证", "en": "chase"}}],
    }


def pack_file(version: int, rules: list[dict[str, Any]], *, fmt: str = "yaml", **top: Any) -> bytes:
    doc = {"description": f"v{version}", **top, "rules": rules}
    if fmt == "json":
        return package("rule_pack", NAME, version, {"rules.json": json.dumps(doc).encode()})
    return package("rule_pack", NAME, version, {"rules.yaml": yaml.safe_dump(doc, allow_unicode=True).encode()})


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("packs-template") / "storebox.db"
    seed(path)
    return path


class Box:
    def __init__(self, root: Path, template: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.db = root / "storebox.db"
        shutil.copyfile(template, self.db)
        self.settings = box_settings(root)

    def install(self, data: bytes) -> pk.InstallOutcome:
        return pk.install_package(
            data, self.settings, direct_transact(self.db), reader(self.db), lambda: T0, actor="sync", source="sync"
        )

    def rollback(self) -> dict[str, Any]:
        return pk.rollback_package(
            self.settings, direct_transact(self.db), "rule_pack", NAME, lambda: T0, actor="hq", source="cli"
        )

    def run(self, fn: Any, *args: Any, **kw: Any) -> Any:
        return direct_transact(self.db)(lambda conn: fn(conn, *args, **kw))

    def read(self, fn: Any, *args: Any, **kw: Any) -> Any:
        conn = connect(self.db, readonly=True)
        try:
            return fn(conn, *args, **kw)
        finally:
            conn.close()

    def active(self) -> dict[str, tuple[int, dict[str, Any]]]:
        """rule id -> (active version, its document)."""
        conn = connect(self.db, readonly=True)
        try:
            return {
                r[0]: (int(r[1]), json.loads(r[2]))
                for r in conn.execute("SELECT rule_id, version, document FROM rule_versions WHERE state = 'active'")
            }
        finally:
            conn.close()

    def table(self, sql: str) -> list[tuple[Any, ...]]:
        conn = connect(self.db, readonly=True)
        try:
            return [tuple(r) for r in conn.execute(sql)]
        finally:
            conn.close()


@pytest.fixture
def box(tmp_path: Path, template_db: Path) -> Box:
    return Box(tmp_path / "box", template_db)


def test_a_signed_pack_puts_its_rules_in_force_with_the_signature_as_their_review(box: Box) -> None:
    outcome = box.install(pack_file(1, [lead_rule(), papers_rule()]))
    assert outcome.summary == {"rules": 2, "state": "active"}
    active = box.active()
    assert set(active) == {LEAD, PAPERS} and active[LEAD][0] == 1
    shown = box.read(store.get_rule, LEAD)
    assert (shown["state"], shown["origin"], shown["pack"]) == ("active", f"pack:{NAME}@1", NAME)
    review = shown["reviews"][0]
    assert review["action"] == "pack_installed" and review["actor"] == "sync" and len(review["signature"]) == 128
    listed = box.read(packs.list_packs)
    assert [(p["name"], p["version"], p["source"], p["signed"], p["in_force"]) for p in listed] == [
        (NAME, 1, "package", True, True)
    ]
    assert box.table("SELECT action FROM audit WHERE object = 'rule_pack:pack:supplier-delay'") == [
        ("rule_pack.install",)
    ]


def test_upgrade_and_rollback_restore_the_previous_rules_exactly_and_keep_overrides(box: Box) -> None:
    box.install(pack_file(1, [lead_rule(15), papers_rule()]))
    box.run(store.set_override, LEAD, "manager", T0, enabled=False, params={"threshold_days": 20})
    v1 = box.active()

    box.install(pack_file(2, [lead_rule(10)], fmt="json"))  # the threshold changes, the papers rule goes away
    v2 = box.active()
    assert set(v2) == {LEAD} and v2[LEAD][0] == 2 and v2[LEAD][1]["params"] == {"threshold_days": 10}
    assert box.read(store.get_rule, PAPERS)["state"] == "retired"
    assert box.read(store.get_override, LEAD)["params"] == {"threshold_days": 20}

    result = box.rollback()
    assert (result["from_version"], result["to_version"]) == (2, 1)
    assert box.active() == v1  # the same version numbers and documents as before the upgrade
    assert box.read(store.get_override, LEAD) | {"updated_at": None} == {
        "rule_id": LEAD,
        "enabled": False,
        "params": {"threshold_days": 20},
        "updated_by": "manager",
        "updated_at": None,
    }
    states = box.table(f"SELECT version, state FROM rule_versions WHERE rule_id = '{LEAD}' ORDER BY version")
    assert states == [(1, "active"), (2, "superseded")]
    assert box.read(packs.list_packs)[0]["version"] == 1

    box.rollback()  # past the first version: the pack's rules are withdrawn, overrides still kept
    assert box.active() == {}
    assert box.read(store.get_rule, LEAD)["state"] == "retired"
    assert box.read(store.get_override, LEAD)["enabled"] is False
    assert box.read(packs.list_packs) == []


def test_a_pack_with_a_bad_rule_is_refused_whole_and_nothing_is_written(box: Box) -> None:
    box.install(pack_file(1, [lead_rule()]))
    before = box.table("SELECT rule_id, version, state, sha256 FROM rule_versions ORDER BY rule_id, version")
    broken = lead_rule(when="lead_time.change_dayz > 15")
    with pytest.raises(pk.PackageContentInvalid) as err:
        box.install(pack_file(2, [broken, papers_rule()]))
    problem = err.value.detail["problems"][0]
    assert "rules[0]" in problem and LEAD in problem and "rule_fact_unknown" in problem
    assert "下发包内容无效" in err.value.message
    assert box.table("SELECT rule_id, version, state, sha256 FROM rule_versions ORDER BY rule_id, version") == before
    assert pk.current_version(connect(box.db, readonly=True), "rule_pack", NAME) == 1


def test_a_pack_whose_rules_loop_through_signals_is_refused(box: Box) -> None:
    def emits(rule_id: str, listens: str, signal: str) -> dict[str, Any]:
        return {
            "id": rule_id,
            "name": {"zh": rule_id, "en": rule_id},
            "trigger": {"kind": "signal", "name": listens},
            "when": "true",
            "then": [{"action": "emit_signal", "name": signal}],
        }

    with pytest.raises(pk.PackageContentInvalid) as err:
        box.install(pack_file(1, [emits("a", "rule.x", "rule.y"), emits("b", "rule.y", "rule.x")]))
    assert any("rule_loop" in p for p in err.value.detail["problems"])
    assert box.table("SELECT COUNT(*) FROM rules") == [(0,)]


def test_a_pack_may_not_take_over_a_local_rule(box: Box) -> None:
    box.run(store.create_rule, lead_rule(), "purchaser", T0)
    with pytest.raises(packs.RulePackConflict) as err:
        box.install(pack_file(1, [lead_rule()]))
    assert LEAD in err.value.message_en
    assert box.read(store.get_rule, LEAD)["origin"] == "local"
    history = box.read(pk.list_history)
    assert history[0]["action"] == "failed" and history[0]["code"] == "rule_pack_conflict"


def test_a_draft_pack_waits_for_a_local_review_while_the_old_version_keeps_acting(box: Box) -> None:
    from edge.rules import governance

    box.install(pack_file(1, [lead_rule(15)]))
    box.install(pack_file(2, [lead_rule(10)], state="draft"))
    assert box.active()[LEAD][0] == 1
    shown = box.read(store.get_rule, LEAD)
    assert (shown["state"], shown["latest_version"], shown["latest_state"]) == ("active", 2, "draft")
    box.run(governance.submit, LEAD, "manager", "purchaser", T0)
    box.run(governance.approve, LEAD, "manager", T0)
    assert box.active()[LEAD] == (2, validate_rule(lead_rule(10)).to_dict())


def test_built_in_packs_install_once_and_are_all_valid(box: Box) -> None:
    shipped = packs.builtin_packs()
    assert {p.name for p in shipped} == {
        "supplier-delay-response",
        "channel-return-flows",
        "price-difference-hold",
        "papers-escalation",
        "weather-response",
    }
    first = box.run(packs.install_builtin, "system", T0)
    assert all(r["installed"] for r in first)
    again = box.run(packs.install_builtin, "system", T0)
    assert not any(r["installed"] for r in again)
    ids = set(box.active())
    assert {
        "supplier-delay-response.lead-time-growth",
        "channel-return-flows.damaged-packaging",
        "channel-return-flows.taste-complaint",
        "channel-return-flows.late-delivery",
        "price-difference-hold.invoice-price-gap",
        "papers-escalation.expiring-within-a-week",
        "weather-response.frost",
    } == ids
    origins = {r["origin"] for r in box.read(store.list_rules)}
    assert origins == {f"builtin:{p.name}@{p.version}" for p in shipped}
    with pytest.raises(packs.UnknownRulePack):
        box.run(packs.install_builtin, "system", T0, ["nope"])


def test_every_shipped_rule_is_ready_for_review_and_names_its_owner_and_impact() -> None:
    from edge.rules.governance import readiness_problems

    for pack in packs.builtin_packs():
        for doc in pack.rules:
            assert readiness_problems(doc) == [], doc["id"]
            assert str(doc["id"]).startswith(f"{pack.name}."), doc["id"]


def test_the_lead_time_rule_reads_as_the_issue_says() -> None:
    pack = next(p for p in packs.builtin_packs() if p.name == "supplier-delay-response")
    rule = validate_rule(pack.rules[0])
    assert rule.when.startswith("lead_time.change_days > params.threshold_days") and rule.params == {
        "threshold_days": 15
    }
    kinds = [a.kind for a in rule.then]
    assert kinds == ["notify", "adjust_parameter"]
    adjust = rule.then[1].fields
    assert adjust["parameter"] == "service_level" and adjust["by"] > 0 and adjust["max"] <= 0.999
    assert rule.condition.matches(
        {"lead_time": {"change_days": 16.0}, "supplier": {"name": "s"}, "params": {"threshold_days": 15}}
    )
    assert not rule.condition.matches({"lead_time": {"change_days": 15.0}, "params": {"threshold_days": 15}})
    # once per crossing: a later step of the same drift (already past 15 at the last signal) does not act again
    assert not rule.condition.matches(
        {"lead_time": {"change_days": 17.0, "last_change_days": 16.0}, "params": {"threshold_days": 15}}
    )


def test_return_routing_sends_each_reason_to_its_channel() -> None:
    pack = next(p for p in packs.builtin_packs() if p.name == "channel-return-flows")
    routes = {}
    for doc in pack.rules:
        rule = validate_rule(doc)
        channel = next(a.fields["channel"] for a in rule.then if a.kind == "tag_return")
        for reason in ("包装破损", "口味不符", "物流超时", "质量问题"):
            if rule.condition.matches({"return": {"reason": reason}, "params": dict(rule.params)}):
                routes[reason] = channel
    assert routes == {"包装破损": "supplier_claim", "口味不符": "category_team", "物流超时": "logistics"}


@settings(max_examples=200, deadline=None)
@given(
    st.binary(max_size=600)
    | st.text(max_size=400).map(str.encode)
    | st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=15,
    ).map(lambda v: json.dumps({"rules": v}).encode())
)
def test_any_pack_file_parses_or_is_refused_with_reasons(data: bytes) -> None:
    try:
        content = packs.load_pack_text(data, "rules.json")
    except packs.RulePackInvalid as error:
        assert error.detail["problems"] and error.message and error.message_en
        return
    assert content.rules and all(validate_rule(r).id == r["id"] for r in content.rules)


def test_a_shipped_pack_round_trips_through_the_signed_format(box: Box) -> None:
    shipped = next(p for p in packs.builtin_packs() if p.name == "papers-escalation")
    doc = {"rules": [deepcopy(r) for r in shipped.rules]}
    data = package("rule_pack", NAME, 1, {"rules.yaml": yaml.safe_dump(doc, allow_unicode=True).encode()})
    box.install(data)
    assert set(box.active()) == {"papers-escalation.expiring-within-a-week"}


# --- the shipped packs end to end: installed, then driven by events through the rules runtime's engine and actions


@pytest.fixture
def ledger(tmp_path: Path) -> Any:
    from tests.edge.rules.rulebox import open_rules_db

    opened = open_rules_db(tmp_path / "rules.db")
    opened.run(packs.install_builtin, "system", opened.now)
    yield opened
    opened.conn.close()


def fire_event(ledger: Any, event: Any, **config: Any) -> list[Any]:
    """The engine over the rules in force (overrides applied), then the actions in one transaction."""
    from edge.rules.actions import ActionConfig, execute_firings
    from edge.rules.engine import evaluate, load_active_rules
    from tests.edge.rules.rulebox import STORE

    rules = load_active_rules(ledger.conn)
    firings = evaluate(rules, event, STORE)
    return list(ledger.run(execute_firings, firings, ledger.now, ActionConfig(store_id=STORE, **config)))


def customer_return(ledger: Any, reason: str) -> list[Any]:
    from edge.ledger.commands import DocType, Line
    from edge.rules.engine import ledger_events

    ledger.document(DocType.RECEIPT, Line("COLA", 10, price_fen=226), counterparty="sup-1")
    doc = ledger.document(DocType.CUSTOMER_RETURN, Line("COLA", 1), reason=reason)
    events: list[Any] = ledger_events(ledger.conn, doc)
    return events


@pytest.mark.parametrize(
    ("reason", "channel", "rule_id"),
    [
        ("damaged_packaging", "supplier_claim", "channel-return-flows.damaged-packaging"),
        ("taste", "category_team", "channel-return-flows.taste-complaint"),
        ("late_delivery", "logistics", "channel-return-flows.late-delivery"),
    ],
)
def test_shipped_return_routing_sends_each_reason_to_its_channel(
    ledger: Any, reason: str, channel: str, rule_id: str
) -> None:
    (event,) = customer_return(ledger, reason)
    (result,) = fire_event(ledger, event)
    assert (result.origin.rule_id, result.origin.version, result.state) == (rule_id, 1, "done")
    flows = ledger.rows("SELECT channel, rule_id, version, line_no FROM return_flows")
    assert flows == [{"channel": channel, "rule_id": rule_id, "version": 1, "line_no": 1}]
    if channel == "supplier_claim":
        [ticket] = ledger.rows("SELECT queue, title, rule_id FROM rule_tickets")
        assert ticket["queue"] == "supplier_claims" and "包装破损" in ticket["title"] and ticket["rule_id"] == rule_id
    else:
        [notice] = ledger.rows("SELECT role, message FROM rule_notifications")
        assert notice["role"] == channel
    audited = [json.loads(r["detail"]) for r in ledger.rows("SELECT detail FROM audit WHERE action LIKE 'rule.%'")]
    assert audited and all(d["rule_id"] == rule_id and d["version"] == 1 for d in audited)


def test_a_return_for_another_reason_is_left_alone(ledger: Any) -> None:
    (event,) = customer_return(ledger, "quality")
    assert fire_event(ledger, event) == []


def test_shipped_lead_time_rule_notifies_and_raises_service_level_within_bounds(ledger: Any) -> None:
    from edge.rules.engine import signal_event, supplier_facts

    def grew(change: float, key: str) -> Any:
        facts = {
            "supplier": supplier_facts(ledger.conn, "sup-1"),
            "lead_time": {"days": 3 + change, "previous_days": 3.0, "change_days": change, "deliveries": 4},
        }
        return signal_event("supplier.lead_time_changed", key, ledger.now, facts, "sup-1")

    assert fire_event(ledger, grew(15, "a")) == []  # not more than 15 days
    (result,) = fire_event(ledger, grew(16, "b"))
    assert result.state == "done"
    levels = {r["sku"]: r["service_level"] for r in ledger.rows("SELECT sku, service_level FROM item_suppliers")}
    assert levels == {"COLA": pytest.approx(0.97), "CHIPS": pytest.approx(0.92), "MILK": pytest.approx(0.95)}
    [notice] = ledger.rows("SELECT role, message FROM rule_notifications")
    assert notice["role"] == "category_manager" and "华润饮料" in notice["message"] and "19" in notice["message"]
    for key in ("c", "d", "e"):
        fire_event(ledger, grew(20, key))
    assert ledger.value("SELECT MAX(service_level) FROM item_suppliers") == pytest.approx(0.99)  # the rule's max

    # the store raises the threshold with an override: the same growth no longer acts
    rule_id = "supplier-delay-response.lead-time-growth"
    ledger.run(lambda conn: store.set_override(conn, rule_id, "manager", ledger.now, params={"threshold_days": 30}))
    assert fire_event(ledger, grew(20, "f")) == []


def test_shipped_price_difference_rule_holds_the_invoice_and_tells_finance(ledger: Any) -> None:
    from edge.rules.engine import signal_event, supplier_facts
    from edge.rules.holds import open_hold

    def invoice(diff_bp: int, invoice_id: int) -> Any:
        facts = {
            "invoice": {
                "id": invoice_id,
                "no": f"0440012300{invoice_id:010d}",
                "supplier": "sup-1",
                "price_diff_bp": diff_bp,
                "price_diff_fen": diff_bp * 10,
            },
            "supplier": supplier_facts(ledger.conn, "sup-1"),
        }
        return signal_event("invoice.registered", str(invoice_id), ledger.now, facts, facts["invoice"]["no"])

    assert fire_event(ledger, invoice(150, 1)) == []
    (result,) = fire_event(ledger, invoice(350, 2))
    assert result.state == "done"
    hold = open_hold(ledger.conn, "invoice", 2)
    assert hold is not None and hold.rule_id == "price-difference-hold.invoice-price-gap" and "350" in hold.reason
    assert open_hold(ledger.conn, "invoice", 1) is None
    [notice] = ledger.rows("SELECT role FROM rule_notifications")
    assert notice["role"] == "finance"


def test_shipped_papers_escalation_opens_a_ticket_tells_the_manager_and_queues_an_email(ledger: Any) -> None:
    from edge.rules.engine import signal_event, supplier_facts

    def expiring(days_left: int, key: str) -> Any:
        facts = {
            "paper": {"id": 5, "kind": "food_licence", "valid_to": "2026-11-27", "days_left": days_left},
            "supplier": supplier_facts(ledger.conn, "sup-1"),
        }
        return signal_event("paper.expiring", key, ledger.now, facts, "sup-1")

    assert fire_event(ledger, expiring(30, "p30"), email_routes={"purchaser": ("buyer@store.example",)}) == []
    (result,) = fire_event(ledger, expiring(7, "p7"), email_routes={"purchaser": ("buyer@store.example",)})
    assert result.state == "done", result
    [ticket] = ledger.rows("SELECT queue, subject, title FROM rule_tickets")
    assert ticket["queue"] == "purchaser" and ticket["subject"] == "sup-1" and "2026-11-27" in ticket["title"]
    [notice] = ledger.rows("SELECT role FROM rule_notifications")
    assert notice["role"] == "manager"
    [email] = ledger.rows("SELECT recipients, subject, state FROM rule_emails")
    assert json.loads(email["recipients"]) == ["buyer@store.example"] and email["state"] == "queued"


def test_shipped_frost_rule_raises_fresh_safety_stock_mails_the_partner_and_proposes_a_presale(ledger: Any) -> None:
    from edge.ledger import masterdata as md
    from edge.rules.engine import signal_event

    def setup(conn: Any) -> None:
        md.add_category(conn, "fresh", "生鲜", "Fresh produce", "chilled")
        md.add_supplier(conn, "sup-veg", "绿源蔬菜")
        md.add_item(conn, "FR0001", "大白菜", base_unit="g", category="fresh", price_fen=1, cost_fen=1)
        conn.execute(
            "INSERT INTO item_suppliers (sku, supplier, unit, pack, service_level, updated_at, updated_by)"
            " VALUES ('FR0001', 'sup-veg', 'g', 1000, 0.9, ?, 'test')",
            (ledger.now.isoformat(),),
        )

    ledger.run(setup)

    def forecast(low: float, days_ahead: int, key: str) -> Any:
        facts = {"weather": {"date": "2026-11-22", "days_ahead": days_ahead, "temp_min_c": low, "temp_max_c": 6.0}}
        return signal_event("weather.forecast", key, ledger.now, facts, "2026-11-22")

    routes = {"processing_partner": ("orders@partner.example",)}
    assert fire_event(ledger, forecast(2.0, 1, "mild"), email_routes=routes) == []
    assert fire_event(ledger, forecast(-3.0, 5, "far"), email_routes=routes) == []
    (result,) = fire_event(ledger, forecast(-3.0, 1, "frost"), email_routes=routes)
    assert result.state == "done", result
    assert [(a.action, a.state) for a in result.actions] == [
        ("adjust_parameter", "done"),
        ("send_email", "queued"),
        ("create_draft", "done"),
    ]
    fresh = ledger.value("SELECT service_level FROM item_suppliers WHERE sku = 'FR0001'")
    assert fresh == pytest.approx(0.93)
    others = {r["sku"]: r["service_level"] for r in ledger.rows("SELECT sku, service_level FROM item_suppliers")}
    assert others["COLA"] == pytest.approx(0.95)  # not fresh produce: untouched
    [email] = ledger.rows("SELECT recipients, subject, body FROM rule_emails")
    assert json.loads(email["recipients"]) == ["orders@partner.example"] and "-3" in email["body"]
    [draft] = ledger.rows("SELECT kind, subject, rule_id, state FROM rule_drafts")
    assert draft == {"kind": "presale", "subject": "FR0001", "rule_id": "weather-response.frost", "state": "open"}


def test_rolling_a_pack_back_restores_the_parameters_its_rules_changed_except_those_changed_since(
    ledger: Any,
) -> None:
    from edge.rules.engine import signal_event, supplier_facts

    before = {r["sku"]: r["service_level"] for r in ledger.rows("SELECT sku, service_level FROM item_suppliers")}
    facts = {
        "supplier": supplier_facts(ledger.conn, "sup-1"),
        "lead_time": {"days": 20.0, "previous_days": 3.0, "change_days": 17.0, "deliveries": 4},
    }
    (result,) = fire_event(ledger, signal_event("supplier.lead_time_changed", "grew", ledger.now, facts, "sup-1"))
    assert result.state == "done"
    changed = {r["sku"] for r in ledger.rows("SELECT DISTINCT sku FROM parameter_changes")}
    assert len(changed) >= 2
    kept_sku = sorted(changed)[0]
    ledger.run(lambda conn: conn.execute("UPDATE item_suppliers SET service_level = 0.9 WHERE sku = ?", (kept_sku,)))
    rolled = ledger.run(
        lambda conn: packs.remove_pack(
            conn, name="supplier-delay-response", source="builtin", actor="hq", now=ledger.now
        )
    )
    assert rolled["parameters_restored"] == len(changed) - 1
    assert [k["sku"] for k in rolled["parameters_kept"]] == [kept_sku]
    after = {r["sku"]: r["service_level"] for r in ledger.rows("SELECT sku, service_level FROM item_suppliers")}
    assert after == {**before, kept_sku: pytest.approx(0.9)}
