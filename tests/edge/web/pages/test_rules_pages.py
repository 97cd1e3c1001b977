"""The rule pages over real HTTP against a served box: the editor with its fact picker and action forms, live
validation next to the field in the page's language, saving a draft, the dry run, submitting to a reviewer, the
reviewer's approval (never the author's), the review queue, overrides, firings, holds and tickets; garbage in the
editor is refused next to its field and nothing is saved."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.security.roles import Role
from edge.web.pages.rule_form import form_field, parse_params, renumbered, rule_from_form, rule_to_values
from tests.edge.web.pages.pagedata import api, html, ok, text_of
from tests.edge.web.pages.site import Site

TRACE = re.compile(r"Traceback|File \"/|\.py\", line")
_ids = itertools.count(1)


def no_trace(response: Any) -> None:
    assert not TRACE.search(response.text), response.text[:2000]


def lead_time_form(rule_id: str, **changes: str) -> dict[str, str]:
    """The editor's fields for the shipped lead-time rule, as a purchaser fills them in."""
    form = {
        "id": rule_id,
        "name_zh": "供应商交期延长超过阈值",
        "name_en": "Supplier lead time grows past a threshold",
        "trigger_kind": "signal",
        "trigger_value": "supplier.lead_time_changed",
        "when": "lead_time.change_days > params.threshold_days",
        "params": "threshold_days: 15",
        "then-0-action": "notify",
        "then-0-role": "category_manager",
        "then-0-message-zh": "{supplier.name} 交货期延长 {lead_time.change_days} 天",
        "then-0-message-en": "{supplier.name}: lead time up {lead_time.change_days} days",
        "then-1-action": "adjust_parameter",
        "then-1-parameter": "service_level",
        "then-1-scope": "supplier",
        "then-1-by": "0.02",
        "then-1-min": "0.5",
        "then-1-max": "0.99",
        "owner": "purchasing-lead",
        "impact_what": "提高该供应商商品的服务水平",
        "impact_who": "品类经理",
        "impact_how_much": "每次最多 +0.02，不超过 0.99",
        "enabled": "1",
        "op": "save",
    }
    form.update(changes)
    return form


def new_id() -> str:
    return f"page-rule-{next(_ids)}"


def save_rule(site: Site, client: Any, rule_id: str, **changes: str) -> Any:
    return site.post_form(client, "/rule-editor", lead_time_form(rule_id, **changes), page="/rule-editor")


# --- the form, without the box -----------------------------------------------------------------------------------


def test_the_editor_form_makes_the_rule_document_and_back() -> None:
    from edge.rules.catalogue import actions
    from edge.web.pages.rule_form import action_forms

    catalogue = actions()
    forms = action_forms(
        {
            "actions": [
                {"action": a.name, "zh": a.zh, "en": a.en, "schema": a.schema} for a in catalogue.actions.values()
            ]
        }
    )
    doc, problems = rule_from_form(lead_time_form("x"), forms)
    assert not problems
    assert doc["trigger"] == {"kind": "signal", "name": "supplier.lead_time_changed"}
    assert doc["params"] == {"threshold_days": 15}
    assert doc["then"][1] == {
        "action": "adjust_parameter",
        "parameter": "service_level",
        "scope": "supplier",
        "by": 0.02,
        "min": 0.5,
        "max": 0.99,
    }
    assert doc["then"][0]["message"]["zh"].startswith("{supplier.name}")
    values = rule_to_values(doc)
    again, _ = rule_from_form({**values, "op": "save"}, forms)
    assert again == doc


def test_problems_land_next_to_their_field() -> None:
    assert form_field("when") == "when"
    assert form_field("then[1].role", [0, 1]) == "then-0-role"
    assert form_field("then[2].message.zh", [0, 3]) == "then-3-message"
    assert form_field("then[9]", [0]) == "then"
    assert form_field("impact.how_much") == "impact_how_much"
    assert form_field("trigger.name") == "trigger_value"
    assert form_field("name.en") == "name_en"
    assert form_field(None) == "form"
    assert form_field("something.else") == "form"


def test_removing_an_action_renumbers_the_slots() -> None:
    form = lead_time_form("x")
    dropped = renumbered(form, drop=0)
    assert dropped["then-0-action"] == "adjust_parameter" and "then-1-action" not in dropped
    added = renumbered(form, add="tag_return")
    assert added["then-2-action"] == "tag_return"


@given(st.text(max_size=300))
def test_params_text_is_a_mapping_of_names_or_a_named_problem(text: str) -> None:
    params, problem = parse_params(text)
    assert (problem is None) or (params == {} and problem.startswith("rules.error."))
    for name, value in params.items():
        assert re.fullmatch(r"[a-z_][a-z0-9_]{0,63}", name)
        assert isinstance(value, (str, int, float, bool, list))


# --- over the box --------------------------------------------------------------------------------------------------


def test_the_editor_shows_the_triggers_facts_with_their_names_and_the_actions_as_forms(site: Site) -> None:
    with site.login(Role.PURCHASER) as client:
        page = client.get("/rule-editor")
        assert page.status_code == 200, page.text
        doc = html(page)
        picker = doc.xpath("//section[@id='fact-picker']")[0].text_content()
        assert "lead_time.change_days" in picker and "变化(天)" in picker and "change (days)" in picker
        assert "supplier.lead_time_days" in picker and "invoice.price_diff_bp" not in picker
        assert doc.xpath("//fieldset[@data-action='notify']//input[@name='then-0-message-zh']")
        assert doc.xpath("//label[@for='f-then-0-role']")
        notify = doc.xpath("//fieldset[@data-action='notify']")[0].text_content()
        assert "在 MQTT alert/rule 和店长页面上通知" in notify and "A notice to a role" not in notify
        kinds = doc.xpath("//select[@id='f-add_kind']/option/@value")
        assert {"notify", "adjust_parameter", "hold_document", "send_email"} <= set(kinds)
        # Another trigger: the picker follows (a document line's facts, no lead time).
        ledger = client.get("/rule-editor/facts", params={"trigger_kind": "ledger", "reset": "1"})
        assert ledger.status_code == 200
        assert "return.reason" in ledger.text and "lead_time.change_days" not in ledger.text
        assert 'hx-swap-oob="true"' not in ledger.text or "fact-picker" in ledger.text
    with site.login(Role.PURCHASER, lang="en") as client:
        page = client.get("/rule-editor")
        assert "Condition" in text_of(page) and "条件" not in text_of(page, "//label")


def test_live_validation_names_the_unknown_fact_next_to_the_condition_in_the_pages_language(site: Site) -> None:
    with site.login(Role.PURCHASER) as client:
        csrf = site.csrf(client, "/rule-editor")
        bad = lead_time_form(new_id(), when="lead_time.change_dayz > 15")
        answer = client.post("/rule-editor/check", data={"_csrf": csrf, **bad}, headers={"HX-Request": "true"})
        assert answer.status_code == 200, answer.text
        slot = html(answer).xpath("//small[@id='e-when']")[0].text_content()
        assert "lead_time.change_dayz" in slot and "lead_time.change_days" in slot  # names it, suggests the fact
        assert html(answer).xpath("//div[@id='rule-check']/@data-ok") == ["false"]
        good = client.post(
            "/rule-editor/check", data={"_csrf": csrf, **lead_time_form(new_id())}, headers={"HX-Request": "true"}
        )
        assert html(good).xpath("//div[@id='rule-check']/@data-ok") == ["true"]
        assert not html(good).xpath("//small[@id='e-when']")[0].text_content()
        syntax = client.post(
            "/rule-editor/check",
            data={"_csrf": csrf, **lead_time_form(new_id(), when="lead_time.change_days >")},
            headers={"HX-Request": "true"},
        )
        assert html(syntax).xpath("//small[@id='e-when']")[0].text_content()
    with site.login(Role.PURCHASER, lang="en") as client:
        csrf = site.csrf(client, "/rule-editor")
        bad = lead_time_form(new_id(), **{"then-0-role": "Bad Role!"})
        answer = client.post("/rule-editor/check", data={"_csrf": csrf, **bad}, headers={"HX-Request": "true"})
        slot = html(answer).xpath("//small[@id='e-then-0-role']")[0].text_content()
        assert slot and not re.search(r"[\u4e00-\u9fff]", slot.replace("Bad Role!", "")), slot


def test_a_rule_with_an_unknown_fact_is_refused_at_save_and_nothing_is_kept(site: Site) -> None:
    rule_id = new_id()
    with site.login(Role.PURCHASER) as client:
        refused = save_rule(site, client, rule_id, when="supplier.lead_time_dayz > 15")
        assert refused.status_code == 422
        no_trace(refused)
        assert text_of(refused, "//small[@id='e-when']")
        assert html(refused).xpath("//input[@name='name_zh']/@value") == ["供应商交期延长超过阈值"]  # kept as typed
    assert api(site, "GET", f"/api/v1/rules/{rule_id}").status_code == 404


def test_the_purchaser_writes_dry_runs_and_submits_and_the_manager_approves(site: Site) -> None:
    rule_id = new_id()
    with site.login(Role.PURCHASER) as client:
        saved = save_rule(site, client, rule_id)
        assert saved.status_code == 303, saved.text
        assert saved.headers["location"] == f"/rules/{rule_id}"
        page = client.get(f"/rules/{rule_id}")
        assert page.status_code == 200, page.text
        assert html(page).xpath("//h1//span[@data-state='draft']")
        assert "lead_time.change_days > params.threshold_days" in text_of(page, "//section[@id='what']")
        # The dry run: counts and what it would do; nothing is done.
        dry = site.post_form(client, f"/rules/{rule_id}/dry-run", {"days": "30"}, page=f"/rules/{rule_id}")
        assert dry.status_code == 200, dry.text
        assert html(dry).xpath("//div[@id='dry-run-result']//dl[@id='dry-run-counts']")
        bad_days = site.post_form(client, f"/rules/{rule_id}/dry-run", {"days": "abc"}, page=f"/rules/{rule_id}")
        assert bad_days.status_code == 422 and text_of(bad_days, "//small[@id='e-dry-run-days']")
        # Submitting to oneself is refused next to the reviewer field.
        own = site.post_form(client, f"/rules/{rule_id}/submit", {"reviewer": "purchaser"}, page=f"/rules/{rule_id}")
        assert own.status_code in (409, 422) and text_of(own, "//small[@id='e-submit-reviewer']")
        sent = site.post_form(client, f"/rules/{rule_id}/submit", {"reviewer": "manager"}, page=f"/rules/{rule_id}")
        assert sent.status_code == 303, sent.text
        waiting = client.get(f"/rules/{rule_id}")
        assert html(waiting).xpath("//p[@id='waiting']") and not html(waiting).xpath("//form[@id='approve-form']")
    with site.login(Role.MANAGER) as client:
        queue = client.get("/rule-reviews")
        assert html(queue).xpath(f"//article[@data-rule='{rule_id}']//span[contains(@class, 'warn')]")
        approved = site.post_form(client, f"/rules/{rule_id}/approve", {}, page=f"/rules/{rule_id}")
        assert approved.status_code == 303, approved.text
        page = client.get(f"/rules/{rule_id}")
        assert html(page).xpath("//h1//span[@data-state='active']")
    shown = ok(api(site, "GET", f"/api/v1/rules/{rule_id}"))
    assert shown["state"] == "active" and shown["active_version"] == 1


def test_the_rejected_rule_goes_back_to_draft_with_the_reason(site: Site) -> None:
    rule_id = new_id()
    with site.login(Role.PURCHASER) as client:
        assert save_rule(site, client, rule_id).status_code == 303
        site.post_form(client, f"/rules/{rule_id}/submit", {"reviewer": "manager"}, page=f"/rules/{rule_id}")
    with site.login(Role.MANAGER) as client:
        empty = site.post_form(client, f"/rules/{rule_id}/reject", {"reason": ""}, page=f"/rules/{rule_id}")
        assert empty.status_code == 422 and text_of(empty, "//small[@id='e-reject-reason']")
        done = site.post_form(client, f"/rules/{rule_id}/reject", {"reason": "阈值太低"}, page=f"/rules/{rule_id}")
        assert done.status_code == 303
        page = client.get(f"/rules/{rule_id}")
        assert "阈值太低" in text_of(page, "//section[@id='governance']")
    assert ok(api(site, "GET", f"/api/v1/rules/{rule_id}"))["versions"][0]["state"] == "draft"


def test_the_lists_and_the_work_queues_render_for_every_reader(site: Site) -> None:
    for role in (Role.MANAGER, Role.PURCHASER, Role.ACCOUNTANT, Role.AUDITOR):
        with site.login(role) as client:
            for path in (
                "/rules",
                "/rules?state=active",
                "/rule-reviews",
                "/rule-firings",
                "/rule-firings?state=failed&rule=module:near-expiry",
                "/rule-firings?state=nonsense&rule=%00",
                "/holds",
                "/rule-tickets",
            ):
                page = client.get(path)
                assert page.status_code == 200, (role, path, page.text[:500])
                no_trace(page)
    with site.login(Role.AUDITOR) as client:
        assert not html(client.get("/rules")).xpath("//a[@id='new-rule']")
        assert client.get("/rule-editor").status_code == 403
    with site.login(Role.CLERK) as client:
        assert client.get("/rules").status_code == 403
        assert not html(client.get("/")).xpath("//nav//a[@href='/rules']")


def test_unknown_rules_and_bad_ids_are_not_found(site: Site) -> None:
    with site.login(Role.MANAGER) as client:
        assert client.get("/rules/no-such-rule").status_code == 404
        assert client.get("/rules/BAD ID").status_code == 404
        assert client.get("/rules/no-such-rule/edit").status_code == 404


@pytest.mark.parametrize("field", ["id", "when", "params", "then-0-role", "impact_what"])
def test_the_edit_keeps_what_was_typed_when_a_field_is_refused(site: Site, field: str) -> None:
    changes = {
        "id": "Bad Id",
        "when": "",
        "params": "threshold_days: [1, {a: 2}]",
        "then-0-role": "",
        "impact_what": "",
    }
    with site.login(Role.PURCHASER) as client:
        refused = save_rule(site, client, new_id(), **{field: changes[field]})
    assert refused.status_code == 422, refused.text
    assert text_of(refused, f"//small[@id='e-{field}']"), refused.text[:3000]
    assert html(refused).xpath("//input[@name='name_zh']/@value") == ["供应商交期延长超过阈值"]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    when=st.text(max_size=300),
    params=st.text(max_size=200),
    role=st.text(max_size=40),
    kind=st.sampled_from(["signal", "ledger", "bus", "alert", "schedule", "nonsense"]),
    value=st.text(max_size=60),
)
def test_garbage_in_the_editor_is_refused_next_to_a_field_and_nothing_is_saved(
    site: Site, when: str, params: str, role: str, kind: str, value: str
) -> None:
    rule_id = new_id()
    changes = {"when": when, "params": params, "then-0-role": role, "trigger_kind": kind, "trigger_value": value}
    with site.login(Role.PURCHASER) as client:
        response = save_rule(site, client, rule_id, **changes)
    no_trace(response)
    if response.status_code == 303:  # a valid rule after all
        return
    assert response.status_code == 422, response.text[:2000]
    errors = [e.text_content().strip() for e in html(response).xpath("//small[contains(@class, 'error')]")]
    assert any(errors), response.text[:3000]
    assert api(site, "GET", f"/api/v1/rules/{rule_id}").status_code == 404


def active_rule(site: Site) -> str:
    """The lead-time rule written by the purchaser and approved by the manager, through the API."""
    rule_id = new_id()
    with site.login(Role.PURCHASER) as client:
        assert save_rule(site, client, rule_id).status_code == 303
    ok(api(site, "POST", f"/api/v1/rules/{rule_id}/submit", Role.PURCHASER, json={"reviewer": "manager"}))
    ok(api(site, "POST", f"/api/v1/rules/{rule_id}/approve", Role.MANAGER, json={}))
    return rule_id


def test_this_store_switches_an_active_rule_off_and_changes_its_params(site: Site) -> None:
    rule_id = active_rule(site)
    with site.login(Role.PURCHASER) as client:
        page = client.get(f"/rules/{rule_id}")
        assert html(page).xpath("//textarea[@id='f-override-params']/text()") == ["threshold_days: 15"]
        bad = site.post_form(
            client, f"/rules/{rule_id}/override", {"params": "threshold_days: {a: 1}"}, page=f"/rules/{rule_id}"
        )
        assert bad.status_code == 422 and text_of(bad, "//small[@id='e-override-params']")
        unknown = site.post_form(
            client, f"/rules/{rule_id}/override", {"enabled": "1", "params": "other: 3"}, page=f"/rules/{rule_id}"
        )
        assert unknown.status_code in (409, 422) and text_of(unknown, "//small[@id='e-override-params']")
        done = site.post_form(
            client, f"/rules/{rule_id}/override", {"params": "threshold_days: 20"}, page=f"/rules/{rule_id}"
        )
        assert done.status_code == 303, done.text
        page = client.get(f"/rules/{rule_id}")
        assert "本店停用" in text_of(page, "//dd[@id='override-state']")
    shown = ok(api(site, "GET", f"/api/v1/rules/{rule_id}"))
    assert shown["override"]["enabled"] is False and shown["override"]["params"] == {"threshold_days": 20}
    assert shown["enabled"] is False


def test_a_held_order_is_released_by_someone_other_than_its_author_and_a_ticket_is_closed(site: Site) -> None:
    from datetime import UTC, datetime

    from edge.db import connect
    from edge.rules.holds import place_hold
    from tests.edge.web.pages.pagedata import ensure_seller, purchase_order

    ensure_seller(site)
    po_id = purchase_order(site)  # written by the purchaser
    rule_id = active_rule(site)
    conn = connect(site.box.db_path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        now = datetime(2024, 6, 1, 3, 0, tzinfo=UTC)
        hold_id, _ = place_hold(
            conn,
            kind="purchase_order",
            object_id=po_id,
            rule_id=rule_id,
            version=1,
            reason="价差超过 1.5%",
            reason_en="price difference above 1.5%",
            now=now,
        )
        ticket_id = conn.execute(
            "INSERT INTO rule_tickets (queue, title, title_en, subject_kind, subject, rule_id, version, opened_at)"
            " VALUES ('supplier_claims', '包装破损索赔', 'Damaged packaging claim', 'supplier', 'sup-1', ?, 1, ?)",
            (rule_id, now.isoformat()),
        ).lastrowid
        conn.execute("COMMIT")
    finally:
        conn.close()
    with site.login(Role.PURCHASER) as client:
        page = client.get("/holds")
        card = html(page).xpath(f"//article[@data-hold='{hold_id}']")[0]
        assert card.xpath(f".//a[@href='/purchasing/{po_id}']") and "价差超过 1.5%" in card.text_content()
        own = site.post_form(client, f"/holds/{hold_id}/release", {"note": "已核实"}, page="/holds")
        assert own.status_code == 409 and text_of(own, f"//small[@id='e-hold-{hold_id}-note']")
    with site.login(Role.MANAGER, lang="en") as client:
        assert "price difference above 1.5%" in text_of(client.get("/holds"), f"//article[@data-hold='{hold_id}']")
        empty = site.post_form(client, f"/holds/{hold_id}/release", {"note": ""}, page="/holds")
        assert empty.status_code == 422
        done = site.post_form(client, f"/holds/{hold_id}/release", {"note": "checked with the supplier"}, page="/holds")
        assert done.status_code == 303
        tickets = client.get("/rule-tickets")
        assert "Damaged packaging claim" in text_of(tickets, f"//article[@data-ticket='{ticket_id}']")
        closed = site.post_form(
            client, f"/rule-tickets/{ticket_id}/close", {"resolution": "claim filed"}, page="/rule-tickets"
        )
        assert closed.status_code == 303, text_of(closed)
    holds = ok(api(site, "GET", "/api/v1/holds", Role.AUDITOR))
    assert next(h for h in holds if h["id"] == hold_id)["state"] == "released"
    tickets = ok(api(site, "GET", "/api/v1/rule-tickets", Role.AUDITOR))
    assert next(t for t in tickets if t["id"] == ticket_id)["state"] == "closed"


@given(st.one_of(st.none(), st.text(max_size=80)), st.lists(st.integers(0, 20), max_size=10))
def test_any_problem_path_lands_somewhere_in_the_editor(path: str | None, slots: list[int]) -> None:
    placed = form_field(path, slots)
    assert placed in {
        "form",
        "then",
        "when",
        "id",
        "description",
        "owner",
        "params",
        "enabled",
        "reviewer",
        "name_zh",
        "name_en",
        "trigger_kind",
        "trigger_value",
        "impact_what",
        "impact_who",
        "impact_how_much",
    } or re.fullmatch(r"then-\d+(-[a-z_]+)?", placed), placed


def test_the_dry_run_shows_what_a_sale_rule_would_have_done_with_links_to_the_documents(site: Site) -> None:
    receipt = {"counterparty": "sup-1", "lines": [{"code": "COLA", "qty": 24, "price_fen": 226}]}
    ok(api(site, "POST", "/api/v1/documents/receipt", Role.MANAGER, json=receipt), 201)
    sale = ok(
        api(site, "POST", "/api/v1/documents/sale", Role.CLERK, json={"lines": [{"code": "COLA", "qty": 2}]}), 201
    )
    rule_id = new_id()
    form = lead_time_form(
        rule_id,
        trigger_kind="ledger",
        trigger_value="sale",
        when="line.qty >= params.threshold_days",
        params="threshold_days: 2",
        **{"then-0-message-zh": "{item.name} 卖出 {line.qty}", "then-0-message-en": "{item.sku}: {line.qty} sold"},
    )
    form = {k: v for k, v in form.items() if not k.startswith("then-1-")}
    with site.login(Role.PURCHASER) as client:
        saved = site.post_form(client, "/rule-editor", form, page="/rule-editor")
        assert saved.status_code == 303, text_of(saved)
        dry = client.post(
            f"/rules/{rule_id}/dry-run",
            data={"_csrf": site.csrf(client, f"/rules/{rule_id}"), "days": "7"},
            headers={"HX-Request": "true"},
        )
        assert dry.status_code == 200, dry.text
        doc = html(dry)
        assert doc.xpath("//div[@data-count='firings']//dd/text()")[0] != "0"
        row = doc.xpath(f"//table[@id='dry-run-rows']//a[@href='/documents/{sale['document_id']}']/ancestor::tr")[0]
        assert "可乐 330ml 卖出 2" in row.text_content()
        assert "仅为模拟" in text_of(dry, "//div[@id='dry-run-result']")
    assert ok(api(site, "GET", f"/api/v1/rules/{rule_id}/firings"), 200) == []  # nothing was done


def test_an_active_rule_is_edited_into_a_new_draft_version_while_it_keeps_acting(site: Site) -> None:
    rule_id = active_rule(site)
    with site.login(Role.PURCHASER) as client:
        editor = client.get(f"/rules/{rule_id}/edit")
        assert html(editor).xpath("//textarea[@name='params']/text()") == ["threshold_days: 15"]
        form = {k: v for k, v in lead_time_form(rule_id, params="threshold_days: 10").items() if k != "id"}
        saved = site.post_form(client, f"/rules/{rule_id}/edit", form, page=f"/rules/{rule_id}/edit")
        assert saved.status_code == 303, text_of(saved)
        page = client.get(f"/rules/{rule_id}")
        assert html(page).xpath("//h1//span[@data-state='active']")
        assert html(page).xpath("//form[@id='submit-form']")  # the new draft goes to review in its turn
    shown = ok(api(site, "GET", f"/api/v1/rules/{rule_id}"))
    assert [(v["version"], v["state"]) for v in shown["versions"]] == [(2, "draft"), (1, "active")]


def test_a_packs_rule_is_switched_off_here_not_edited(site: Site) -> None:
    from datetime import UTC, datetime

    from edge.db import connect
    from edge.rules.packs import install_builtin

    conn = connect(site.box.db_path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        install_builtin(conn, "admin", datetime(2024, 6, 1, 3, 0, tzinfo=UTC), ["supplier-delay-response"])
        conn.execute("COMMIT")
    finally:
        conn.close()
    rules = ok(api(site, "GET", "/api/v1/rules?limit=1000"))
    packed = next(r for r in rules if r["origin"].startswith("builtin:") and r["state"] == "active")
    with site.login(Role.MANAGER) as client:
        listed = client.get("/rules")
        assert packed["origin"] in text_of(listed, f"//tr[@data-rule='{packed['id']}']")
        page = client.get(f"/rules/{packed['id']}")
        doc = html(page)
        assert not doc.xpath("//a[@id='edit-rule']") and not doc.xpath("//form[@id='retire-form']")
        assert doc.xpath("//form[@action='/rules/" + packed["id"] + "/override']")
        assert packed["origin"] in text_of(page, "//dd[@id='origin']")
        # Editing it anyway is refused by the API, said at the top of the editor, nothing changed.
        values = client.get(f"/rules/{packed['id']}/edit")
        assert values.status_code == 200
        fields = {
            el.get("name"): el.get("value") or el.text or ""
            for el in html(values).xpath("//form[@id='rule-editor']//*[self::input or self::textarea]")
            if el.get("name") and el.get("type") not in ("checkbox", "hidden", "submit")
        }
        fields.update(
            {
                k: v
                for k, v in [
                    (el.get("name"), el.get("value"))
                    for el in html(values).xpath(
                        "//form[@id='rule-editor']//input[@type='hidden' and starts-with(@name, 'then-')]"
                    )
                ]
            }
        )
        for select in html(values).xpath("//form[@id='rule-editor']//select"):
            chosen = select.xpath("./option[@selected]/@value")
            fields[select.get("name")] = chosen[0] if chosen else ""
        refused = site.post_form(client, f"/rules/{packed['id']}/edit", {**fields, "op": "save"}, page="/rules")
        assert refused.status_code == 409, text_of(refused)
        assert text_of(refused, "//small[@id='e-form']")
    assert ok(api(site, "GET", f"/api/v1/rules/{packed['id']}"))["latest_version"] == packed["latest_version"]


def test_firings_link_to_the_document_and_to_what_the_actions_made(site: Site) -> None:
    """An approved sale rule run through the real engine and actions (as the runtime does after a posting): the
    firings page shows it with the sale it was about and the ticket its action opened."""
    from datetime import UTC, datetime

    from edge.db import connect
    from edge.rules.actions import ActionConfig, execute_firings
    from edge.rules.engine import evaluate, ledger_events, load_active_rules

    receipt = {"counterparty": "sup-1", "lines": [{"code": "MILK", "qty": 12, "price_fen": 900}]}
    ok(api(site, "POST", "/api/v1/documents/receipt", Role.MANAGER, json=receipt), 201)
    sale = ok(
        api(site, "POST", "/api/v1/documents/sale", Role.CLERK, json={"lines": [{"code": "MILK", "qty": 5}]}), 201
    )
    rule_id = new_id()
    form = {
        "id": rule_id,
        "name_zh": "大单牛奶",
        "name_en": "Big milk sale",
        "trigger_kind": "ledger",
        "trigger_value": "sale",
        "when": 'line.sku == "MILK" and line.qty >= 5',
        "then-0-action": "open_ticket",
        "then-0-queue": "quality",
        "then-0-title-zh": "核对 {line.sku} 大单",
        "then-0-title-en": "Check the big {line.sku} sale",
        "owner": "quality",
        "impact_what": "开工单",
        "impact_who": "质量组",
        "impact_how_much": "每单一张",
        "enabled": "1",
        "op": "save",
    }
    with site.login(Role.PURCHASER) as client:
        assert site.post_form(client, "/rule-editor", form, page="/rule-editor").status_code == 303
    ok(api(site, "POST", f"/api/v1/rules/{rule_id}/submit", Role.PURCHASER, json={"reviewer": "manager"}))
    ok(api(site, "POST", f"/api/v1/rules/{rule_id}/approve", Role.MANAGER, json={}))
    conn = connect(site.box.db_path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        rules = [r for r in load_active_rules(conn) if r.rule_id == rule_id]
        firings = [f for event in ledger_events(conn, sale["document_id"]) for f in evaluate(rules, event, "store-001")]
        results = execute_firings(conn, firings, datetime(2024, 6, 1, 4, 0, tzinfo=UTC), ActionConfig("store-001"))
        conn.execute("COMMIT")
    finally:
        conn.close()
    assert [r.state for r in results] == ["done"]
    with site.login(Role.AUDITOR) as client:
        page = client.get(f"/rule-firings?rule={rule_id}")
        row = html(page).xpath(f"//table[@id='firings']//tr[@data-firing='{results[0].firing_id}']")[0]
        assert row.xpath(f".//a[@href='/documents/{sale['document_id']}']")
        ticket = row.xpath(".//li[@data-action='open_ticket']//a/@href")
        assert ticket and ticket[0].startswith("/rule-tickets#ticket-")
        detail = client.get(f"/rules/{rule_id}")
        assert "共 1 次" in text_of(detail, "//section[@id='lineage']")
        assert html(detail).xpath("//ul[@id='acted-on']//a[starts-with(@href, '/rule-tickets#ticket-')]")


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    extra=st.dictionaries(
        st.one_of(
            st.sampled_from(["then-0-action", "then-1-action", "then-0-by", "then-0-to", "then-12-action", "op"]),
            st.from_regex(r"then-[0-9]{1,3}-[a-z_]{1,12}(-zh|-en)?", fullmatch=True),
        ),
        st.text(max_size=40),
        max_size=6,
    ),
    kind=st.text(max_size=12),
)
def test_the_live_check_answers_any_form_with_its_verdict(site: Site, extra: dict[str, str], kind: str) -> None:
    form = {**lead_time_form(new_id()), "trigger_kind": kind, **extra}
    with site.login(Role.PURCHASER) as client:
        answer = client.post(
            "/rule-editor/check",
            data={"_csrf": site.csrf(client, "/rule-editor"), **form},
            headers={"HX-Request": "true"},
        )
    no_trace(answer)
    assert answer.status_code == 200, answer.text[:2000]
    assert html(answer).xpath("//div[@id='rule-check']/@data-ok")


def test_a_purchase_order_draft_is_confirmed_into_a_po_and_a_presale_dismissed(site: Site) -> None:
    import json

    from edge.db import connect
    from tests.edge.web.pages.pagedata import ensure_seller

    ensure_seller(site)
    conn = connect(site.box.db_path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        ids = [
            conn.execute(
                "INSERT INTO rule_drafts (kind, payload, subject, rule_id, version, created_at)"
                " VALUES (?, ?, 'COLA', 'weather-response.frost', 1, '2024-06-01T03:00:00+00:00')",
                (kind, json.dumps(payload, ensure_ascii=False)),
            ).lastrowid
            for kind, payload in (
                ("purchase_order", {"sku": "COLA", "base_unit": "piece", "supplier": "sup-1", "base_qty": 24}),
                ("presale", {"sku": "COLA", "base_unit": "piece", "note": "霜冻预售", "note_en": "frost presale"}),
            )
        ]
        conn.execute("COMMIT")
    finally:
        conn.close()
    order, presale = ids
    with site.login(Role.ACCOUNTANT) as client:  # may act on drafts, may not raise purchase orders
        card = html(client.get("/rule-drafts")).xpath(f"//article[@data-draft='{order}']")[0]
        assert not card.xpath(".//button[not(@formaction)]") and "采购订单" in card.text_content()
    with site.login(Role.PURCHASER, lang="en") as client:
        page = client.get("/rule-drafts")
        assert "frost presale" in text_of(page, f"//article[@data-draft='{presale}']")
        done = site.post_form(client, f"/rule-drafts/{order}/confirm", {"note": ""}, page="/rule-drafts")
        assert done.status_code == 303 and done.headers["location"].startswith("/purchasing/")
        again = site.post_form(client, f"/rule-drafts/{order}/confirm", {"note": ""}, page="/rule-drafts")
        assert again.status_code == 409 and "purchaser" in text_of(again, "//div[@class='form-error']")
        gone = site.post_form(client, f"/rule-drafts/{presale}/dismiss", {"note": "not now"}, page="/rule-drafts")
        assert gone.status_code == 303
    listed = {d["id"]: d for d in ok(api(site, "GET", "/api/v1/rule-drafts", Role.AUDITOR))}
    assert listed[order]["state"] == "confirmed" and listed[order]["document_id"]
    assert listed[presale]["state"] == "dismissed"
