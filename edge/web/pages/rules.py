"""Rule pages (业务规则, docs/web.md "Rules"): the rules and their state, the editor (a trigger, the condition
written with a fact picker, actions from the catalogue as forms, params, owner and business impact, checked live by
the API), one rule with its versions, lineage, dry run, submit, review, override and retire, the review queue,
firings with the documents they acted on, and the holds and tickets rules opened, to release and close.

Everything through the API (`/api/v1/rules...`, `/api/v1/rule-firings`, `/api/v1/holds`, `/api/v1/rule-tickets`):
the API validates the rule (`POST /api/v1/rules/validate`), refuses a reviewer who is the author, and keeps the
versions; this page only shows its answers in the user's language next to the field they are about.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import Path, Query
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from edge.web.pages.client import ApiFailure
from edge.web.pages.framework import Page, PageContext, PageRouter
from edge.web.pages.i18n import catalog
from edge.web.pages.rule_form import (
    MAX_ACTIONS,
    TRIGGER_KINDS,
    ActionForm,
    action_forms,
    action_indexes,
    fact_groups,
    form_field,
    normal_facts,
    parse_params,
    problems_by_field,
    renumbered,
    rule_from_form,
    rule_to_values,
    suggestions,
    trigger_choices,
)

router = PageRouter()

RULE_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
STATES = ("draft", "in_review", "active", "retired")
FIRING_STATES = ("done", "partial", "failed", "fired")
MAX_NOTE = 500
MAX_DAYS = 90  # what the API replays at most
DRY_RUN_DAYS = 30
DRY_RUN_ROWS = 20
LIST_LIMIT = 500
MAX_REVIEW_DETAILS = 50  # waiting rules whose impact the review queue shows
HoldId = Annotated[int, Path(ge=1, le=2**63 - 1)]
TicketId = Annotated[int, Path(ge=1, le=2**63 - 1)]
DraftId = Annotated[int, Path(ge=1, le=2**63 - 1)]


def form_text(form: Any, name: str, limit: int = 5000) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def form_dict(form: Any) -> dict[str, str]:
    """The submitted form as plain strings (files and repeated keys dropped), without the guard fields."""
    return {
        str(k): v[:5000] for k, v in form.items() if isinstance(v, str) and k not in ("_csrf", "_idem") and len(k) < 80
    }


def checked_id(rule_id: str) -> str:
    """A rule id from the URL as the API takes it; anything else is simply not found."""
    if not RULE_ID.match(rule_id):
        raise HTTPException(404)
    return rule_id


def rows_of(answer: Any) -> list[dict[str, Any]]:
    """A list answer, bare or wrapped (`items`, `rows`, `rules`, ...)."""
    if isinstance(answer, list):
        return [r for r in answer if isinstance(r, dict)]
    if isinstance(answer, dict):
        for key in ("items", "rows", "rules", "firings", "holds", "tickets", "versions", "packs"):
            if isinstance(answer.get(key), list):
                return [r for r in answer[key] if isinstance(r, dict)]
    return []


def bilingual(value: Any, lang: str) -> str:
    """A {zh, en} text in the page's language (the other one when it is missing); plain text as it is."""
    if isinstance(value, Mapping):
        first, second = ("en", "zh") if lang == "en" else ("zh", "en")
        return str(value.get(first) or value.get(second) or "")
    return "" if value is None else str(value)


def rule_document(answer: Mapping[str, Any]) -> dict[str, Any]:
    """The rule document inside a `GET /api/v1/rules/{id}` answer (or a version of it)."""
    for key in ("document", "rule", "doc", "definition"):
        if isinstance(answer.get(key), dict):
            return dict(answer[key])
    return dict(answer)


def latest_version(answer: Mapping[str, Any]) -> dict[str, Any]:
    """The rule's newest version (a draft being edited, or the active one)."""
    versions = rows_of(answer.get("versions"))
    if versions:
        return max(versions, key=lambda v: int(v.get("version") or 0))
    return dict(answer)


def name_of(row: Mapping[str, Any], lang: str) -> str:
    """A rule summary's name in the page's language (`name` is Chinese, `name_en` English)."""
    if isinstance(row.get("name"), Mapping):
        return bilingual(row["name"], lang)
    return bilingual({"zh": row.get("name"), "en": row.get("name_en")}, lang)


def state_of(row: Mapping[str, Any]) -> str:
    state = row.get("state")
    return state if isinstance(state, str) and state in STATES else "draft"


def text_of_problem(page: PageContext, problem: Mapping[str, Any]) -> str:
    key = "message_en" if page.lang == "en" else "message"
    return str(problem.get(key) or problem.get("message") or "")


# --- shared data --------------------------------------------------------------------------------------------------


async def catalogues(page: PageContext) -> tuple[dict[str, Any], Any]:
    """The documented facts and the action catalogue (`GET /api/v1/rules/facts`, `/actions`)."""
    facts, actions = await asyncio.gather(page.api.get("/api/v1/rules/facts"), page.api.get("/api/v1/rules/actions"))
    return normal_facts(facts), actions


def field_label(page: PageContext, action: ActionForm, name: str, zh: str, en: str) -> str:
    """The label of an action's field: the catalog's words for it, else the API's, else its name."""
    key = f"rules.af.{action.kind}.{name}"
    if key in catalog():
        return page.t(key)
    return (en if page.lang == "en" else zh) or name


def option_label(page: PageContext, value: str) -> str:
    key = f"rules.opt.{value}"
    return page.t(key) if key in catalog() else value


def action_label(page: PageContext, forms: Mapping[str, ActionForm], kind: str) -> str:
    key = f"rules.action.{kind}"
    if key in catalog():
        return page.t(key)
    action = forms.get(kind)
    if action is None:
        return kind
    return action.en if page.lang == "en" else action.zh


def describe_trigger(page: PageContext, facts: Mapping[str, Any], trigger: Any) -> str:
    """A trigger in words: "业务信号: 供应商交货期变化 (supplier.lead_time_changed)"."""
    if not isinstance(trigger, Mapping):
        return ""
    if "trigger_kind" in trigger:  # a rule summary: {trigger_kind, trigger_key}
        trigger = {"kind": trigger.get("trigger_kind"), "name": trigger.get("trigger_key")}
    kind = str(trigger.get("kind") or "")
    value = ""
    for key in ("doc_type", "event", "alert", "cron", "name"):
        if trigger.get(key):
            value = str(trigger[key])
    words = ""
    if kind == "signal":
        entry = (facts.get("signals") or {}).get(value) if isinstance(facts.get("signals"), Mapping) else None
        if isinstance(entry, Mapping):
            words = bilingual({"zh": entry.get("zh"), "en": entry.get("en")}, page.lang)
    label = page.t(f"rules.trigger.{kind}") if f"rules.trigger.{kind}" in catalog() else kind
    return f"{label}: {words} ({value})" if words else f"{label}: {value}"


def helpers(page: PageContext, forms: Mapping[str, ActionForm] | None = None) -> dict[str, Any]:
    """What every rules template uses to say things in the page's language."""
    known = forms or {}
    return {
        "bilingual": lambda v: bilingual(v, page.lang),
        "action_label": lambda k: action_label(page, known, str(k or "")),
        "option_label": lambda v: option_label(page, str(v)),
        "count_label": lambda k: count_label(page, known, str(k)),
        "link": object_link,
        "firing_document": firing_document,
        "would": lambda w: would_text(page, known, w),
    }


def firing_document(firing: Mapping[str, Any]) -> tuple[str, str] | None:
    """The document a firing was about (its `document` facts): (id, number)."""
    facts = firing.get("facts")
    document = facts.get("document") if isinstance(facts, Mapping) else None
    if isinstance(document, Mapping) and document.get("id"):
        return str(document["id"]), str(document.get("no") or document["id"])
    return None


def would_text(page: PageContext, forms: Mapping[str, ActionForm], would: Any) -> str:
    """What one action would have done (a dry run's sample), in the page's language."""
    if not isinstance(would, Mapping):
        return str(would)
    en = page.lang == "en"
    kind = str(would.get("action") or "")
    parts: list[str] = []
    for key in ("role", "queue", "channel", "draft", "signal", "object", "line", "sku", "parameter", "subject"):
        if would.get(key) not in (None, ""):
            parts.append(option_label(page, str(would[key])))
    for key in ("message", "title", "reason", "subject"):
        text = would.get(f"{key}_en") if en else None
        text = text or would.get(key)
        if key != "subject" and text:
            parts.append(f"“{text}”")
    if isinstance(would.get("to"), list):
        parts.append(", ".join(str(a) for a in would["to"]))
    for change in would.get("changes") or ():
        if isinstance(change, Mapping):
            parts.append(f"{change.get('sku')}: {change.get('before')} → {change.get('after')}")
    return f"{action_label(page, forms, kind)}: " + " · ".join(parts) if parts else action_label(page, forms, kind)


def count_label(page: PageContext, forms: Mapping[str, ActionForm], key: str) -> str:
    """A dry-run total's label: `action:<kind>` as the action's name, else the catalog's words for it."""
    if key.startswith("action:"):
        return action_label(page, forms, key[7:])
    catalog_key = f"rules.dry.count.{key}"
    return page.t(catalog_key) if catalog_key in catalog() else key


# --- the list ---------------------------------------------------------------------------------------------------


@router.get("/rules")
async def rules_page(page: Page, state: str = Query("", max_length=20)) -> Response:
    """Every rule with its state, version, trigger, owner and where it came from; filter by state."""
    state = state if state in STATES else ""
    answer, (facts, _) = await asyncio.gather(page.api.get("/api/v1/rules", limit=LIST_LIMIT), catalogues(page))
    rules = rows_of(answer)
    counts = {s: sum(1 for r in rules if state_of(r) == s) for s in STATES}
    shown = [r for r in rules if not state or state_of(r) == state]
    return page.render(
        "rules/list.html",
        tab="rules",
        rules=shown,
        counts=counts,
        state=state,
        states=STATES,
        name_of=lambda r: name_of(r, page.lang),
        trigger_of=lambda r: describe_trigger(page, facts, r),
        state_of=state_of,
    )


# --- the editor -------------------------------------------------------------------------------------------------


async def _editor(
    page: PageContext,
    *,
    values: dict[str, str],
    rule_id: str | None,
    errors: dict[str, list[str]] | None = None,
    status: int = 200,
    checked: bool = False,
) -> Response:
    facts, actions = await catalogues(page)
    forms = action_forms(actions)
    params, _ = parse_params(values.get("params", ""))
    kind = values.get("trigger_kind") or "signal"
    return page.render(
        "rules/editor.html",
        status=status,
        tab="rules",
        rule_id=rule_id,
        values=values,
        errors=errors or {},
        checked=checked,
        kinds=TRIGGER_KINDS,
        choices=trigger_choices(facts),
        groups=fact_groups(facts, kind, values.get("trigger_value", ""), params),
        forms=forms,
        slots=action_indexes(values),
        max_actions=MAX_ACTIONS,
        suggest=suggestions(actions),
        field_label=lambda action, f: field_label(page, action, f.name, f.zh, f.en),
        **helpers(page, forms),
    )


@router.get("/rule-editor")
async def new_rule(page: Page) -> Response:
    """An empty editor: a signal trigger, one notify action to start from."""
    page.require("rules:write")
    values = {
        "trigger_kind": "signal",
        "trigger_value": "supplier.lead_time_changed",
        "enabled": "1",
        "owner": str(page.me.get("username") or ""),
        "then-0-action": "notify",
    }
    return await _editor(page, values=values, rule_id=None)


@router.get("/rules/{rule_id}/edit")
async def edit_rule(page: Page, rule_id: str) -> Response:
    """The rule's newest version in the editor; saving makes a new draft version (the active one keeps acting)."""
    page.require("rules:write")
    answer = await page.api.get(f"/api/v1/rules/{checked_id(rule_id)}")
    values = rule_to_values(rule_document(latest_version(answer)))
    values["id"] = rule_id
    return await _editor(page, values=values, rule_id=rule_id)


@router.get("/rule-editor/facts")
async def fact_picker(
    page: Page,
    trigger_kind: str = Query("signal", max_length=20),
    trigger_value: str = Query("", max_length=200),
    params: str = Query("", max_length=2000),
    reset: str = Query("", max_length=1),
) -> Response:
    """The trigger's value field and the fact picker for it (refetched when the trigger changes; a new kind of
    trigger starts from an empty value)."""
    facts, _ = await catalogues(page)
    kind = trigger_kind if trigger_kind in TRIGGER_KINDS else "signal"
    trigger_value = "" if reset else trigger_value
    parsed, _ = parse_params(params)
    return page.render(
        "rules/_trigger_fragment.html",
        values={"trigger_kind": kind, "trigger_value": trigger_value},
        errors={},
        choices=trigger_choices(facts),
        groups=fact_groups(facts, kind, trigger_value, parsed),
        **helpers(page),
    )


async def _validate(
    page: PageContext, doc: dict[str, Any], slots: list[int], *, for_review: bool = False
) -> tuple[bool, dict[str, list[str]]]:
    """The API's verdict on a rule document: ok, and its problems by editor field (with `for_review`, also what
    it lacks before it can be submitted: owner, impact)."""
    answer = await page.api.post("/api/v1/rules/validate", json=doc)
    if not isinstance(answer, dict):
        return False, {}
    problems = list(answer.get("problems") or [])
    if for_review and not problems:
        problems = list(answer.get("missing_for_review") or [])
    return bool(answer.get("ok")) and not problems, problems_by_field(problems, page.lang, slots)


def _own_problems(page: PageContext, problems: dict[str, str]) -> dict[str, list[str]]:
    return {name: [page.t(key, n=2000)] for name, key in problems.items()}


@router.post("/rule-editor/check")
async def check_rule(page: Page) -> Response:
    """Live validation while the user types: each problem next to its field, in the page's language."""
    page.require("rules:write")
    form = form_dict(await page.form())
    rule_id = form.get("rule_id") or None
    if rule_id is not None and not RULE_ID.match(rule_id):
        rule_id = None
    _, actions = await catalogues(page)
    forms = action_forms(actions)
    doc, own = rule_from_form(form, forms, rule_id=rule_id)
    errors = _own_problems(page, own)
    ok = False
    if not errors:
        ok, errors = await _validate(page, doc, action_indexes(form), for_review=True)
    slots = ["form", "then", *rule_fields(forms, form)]
    return page.render("rules/_check.html", ok=ok and not errors, errors=errors, slots=slots)


def rule_fields(forms: Mapping[str, ActionForm], values: Mapping[str, str]) -> list[str]:
    """Every field of the editor that has an error slot (the live check clears or fills each)."""
    names = [
        "id",
        "name_zh",
        "name_en",
        "description",
        "trigger_kind",
        "trigger_value",
        "when",
        "params",
        "owner",
        "impact_what",
        "impact_who",
        "impact_how_much",
    ]
    for index in action_indexes(values):
        names.append(f"then-{index}")
        action = forms.get(values.get(f"then-{index}-action", ""))
        for item in action.fields if action else ():
            names.append(f"then-{index}-{item.name}")
    return names


async def _save(page: PageContext, rule_id: str | None) -> Response:
    form = form_dict(await page.form())
    op = form.get("op", "save")
    _, actions = await catalogues(page)
    forms = action_forms(actions)
    if op == "add":
        kind = form.get("add_kind", "")
        values = renumbered(form, add=kind if kind in forms else None)
        return await _editor(page, values=values, rule_id=rule_id)
    if op.startswith("remove-") and op[7:].isdigit():
        return await _editor(page, values=renumbered(form, drop=int(op[7:])), rule_id=rule_id)
    doc, own = rule_from_form(form, forms, rule_id=rule_id)
    if own:
        return await _editor(page, values=form, rule_id=rule_id, errors=_own_problems(page, own), status=422)
    ok, errors = await _validate(page, doc, action_indexes(form), for_review=op == "check")
    if not ok:
        errors = errors or {"form": [page.t("rules.error.invalid")]}
        return await _editor(page, values=form, rule_id=rule_id, errors=errors, status=422)
    if op == "check":
        return await _editor(page, values=form, rule_id=rule_id, checked=True)
    key = form.get("_idem") or None
    try:
        if rule_id is None:
            saved = await page.api.post("/api/v1/rules", json=doc, key=await page.form_key())
        else:
            saved = await page.api.put(f"/api/v1/rules/{rule_id}", json=doc, key=key or await page.form_key())
    except ApiFailure as failure:
        if failure.status not in (409, 422):
            raise
        problems = failure.detail.get("problems")
        slots = action_indexes(form)
        errors = problems_by_field(problems, page.lang, slots) if isinstance(problems, list) else {}
        if not errors:
            errors = {form_field(failure.detail.get("field"), slots): [failure.text(page.lang)]}
        return await _editor(page, values=form, rule_id=rule_id, errors=errors, status=failure.status)
    target = str((saved or {}).get("id") or doc["id"]) if isinstance(saved, dict) else str(doc["id"])
    return page.redirect(f"/rules/{target}", flash="rules.flash.saved", arg=target)


@router.post("/rule-editor")
async def create_rule(page: Page) -> Response:
    """Save a new rule as a draft (or add/remove an action slot, or check it, without saving)."""
    page.require("rules:write")
    return await _save(page, None)


@router.post("/rules/{rule_id}/edit")
async def update_rule(page: Page, rule_id: str) -> Response:
    """Save the edited rule as its new draft version."""
    page.require("rules:write")
    return await _save(page, checked_id(rule_id))


# --- one rule ---------------------------------------------------------------------------------------------------


async def _rule_page(
    page: PageContext,
    rule_id: str,
    *,
    errors: dict[str, dict[str, str]] | None = None,
    values: dict[str, str] | None = None,
    dry_run: Any = None,
    status: int = 200,
) -> Response:
    answer = await page.api.get(f"/api/v1/rules/{rule_id}")
    (facts, actions), firings = await asyncio.gather(
        catalogues(page), page.api.get(f"/api/v1/rules/{rule_id}/firings", limit=20)
    )
    forms = action_forms(actions)
    versions = sorted(rows_of(answer.get("versions")), key=lambda v: -int(v.get("version") or 0))
    latest = versions[0] if versions else dict(answer)
    doc = rule_document(latest)
    override = answer.get("override") if isinstance(answer.get("override"), dict) else {}
    if values is None:
        values = {"days": str(DRY_RUN_DAYS)}
    if "params" not in values:
        params = dict(doc.get("params") or {})
        if isinstance(override.get("params"), dict):
            params.update(override["params"])
        values["params"] = rule_to_values({"params": params})["params"]
        values["enabled"] = "1" if answer.get("enabled", True) else ""
    author = latest.get("author") or answer.get("created_by")
    origin = str(latest.get("origin") or answer.get("origin") or "local")
    lineage = answer.get("lineage") if isinstance(answer.get("lineage"), dict) else {}
    return page.render(
        "rules/rule.html",
        status=status,
        tab="rules",
        rule=answer,
        rule_id=rule_id,
        latest=latest,
        doc=doc,
        versions=versions,
        state=state_of(answer),
        latest_state=str(latest.get("state") or "draft"),
        author=author,
        local=origin == "local",
        origin=origin,
        lineage=lineage,
        firings=rows_of(firings),
        override=override,
        dry_run=dry_run,
        dry_rows=dry_run_rows(dry_run),
        dry_counts=dry_run_counts(dry_run),
        errors=errors or {},
        values=values,
        trigger_words=describe_trigger(page, facts, doc.get("trigger")),
        describe_action=lambda a: describe_action(page, forms, a),
        **helpers(page, forms),
    )


def describe_action(page: PageContext, forms: Mapping[str, ActionForm], action: Any) -> list[tuple[str, str]]:
    """An action's fields as (label, value) pairs in the page's language."""
    if not isinstance(action, Mapping):
        return []
    kind = str(action.get("action") or "")
    form = forms.get(kind)
    pairs = []
    for key, value in action.items():
        if key == "action":
            continue
        spec = next((f for f in form.fields if f.name == key), None) if form else None
        label = field_label(page, form, key, spec.zh, spec.en) if form and spec else key
        if isinstance(value, Mapping):
            shown = bilingual(value, page.lang)
        elif isinstance(value, list):
            shown = ", ".join(str(v) for v in value)
        else:
            shown = option_label(page, str(value))
        pairs.append((label, shown))
    return pairs


def dry_run_counts(result: Any) -> list[tuple[str, Any]]:
    """The dry run's totals: every number it reports at the top level, and its per-action counts."""
    if not isinstance(result, Mapping):
        return []
    counts: list[tuple[str, Any]] = []
    for key in ("days", "events", "firings", "failed"):
        value = result.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            counts.append((key, value))
    for key in ("actions", "by_action", "action_counts"):
        found = result.get(key)
        if isinstance(found, Mapping):
            counts.extend((f"action:{k}", v) for k, v in found.items() if isinstance(v, (int, float)))
    return counts


def dry_run_rows(result: Any) -> list[dict[str, Any]]:
    """The first rows of what the rule would have done (one per firing)."""
    if not isinstance(result, Mapping):
        return []
    for key in ("firings", "rows", "would", "results", "samples", "events"):
        if isinstance(result.get(key), list):
            return [r for r in result[key] if isinstance(r, dict)][:DRY_RUN_ROWS]
    return []


@router.get("/rules/{rule_id}")
async def rule_page(page: Page, rule_id: str) -> Response:
    """One rule: what it does in words, its state and versions, lineage, the latest firings; dry run, submit,
    review, override and retire where the user may."""
    return await _rule_page(page, checked_id(rule_id))


@router.post("/rules/{rule_id}/dry-run")
async def dry_run(page: Page, rule_id: str) -> Response:
    """What the rule would have done over the last N days of ledger events, without doing it."""
    rule_id = checked_id(rule_id)
    form = await page.form()
    days_text = form_text(form, "days", 10)
    values = {"days": days_text}
    if not days_text.isdigit() or not 1 <= int(days_text) <= MAX_DAYS:
        errors = {"dry-run": {"days": page.t("rules.error.days", n=MAX_DAYS)}}
        return await _rule_page(page, rule_id, errors=errors, values=values, status=422)
    try:
        result = await page.api.post(f"/api/v1/rules/{rule_id}/dry-run", json={"days": int(days_text)})
    except ApiFailure as failure:
        if failure.status not in (409, 422):
            raise
        errors = {"dry-run": {"days": failure.text(page.lang)}}
        return await _rule_page(page, rule_id, errors=errors, values=values, status=failure.status)
    if page.request.headers.get("hx-request") == "true":
        _, actions = await catalogues(page)
        return page.render(
            "rules/_dry_run.html",
            dry_run=result,
            dry_rows=dry_run_rows(result),
            dry_counts=dry_run_counts(result),
            **helpers(page, action_forms(actions)),
        )
    return await _rule_page(page, rule_id, values=values, dry_run=result)


async def _transition(
    page: PageContext,
    rule_id: str,
    action: str,
    body: dict[str, Any],
    form_id: str,
    field: str,
    values: dict[str, str],
    flash: str,
) -> Response:
    """Post a governance step; a refusal (not the reviewer, the author, missing impact) shows next to its form."""
    try:
        await page.api.post(f"/api/v1/rules/{rule_id}/{action}", json=body)
    except ApiFailure as failure:
        if failure.status not in (409, 422):
            raise
        problems = failure.detail.get("problems")
        listed = problems if isinstance(problems, list) else []
        messages = [text_of_problem(page, p) for p in listed if isinstance(p, dict)]
        message = "; ".join([failure.text(page.lang), *messages]) if messages else failure.text(page.lang)
        errors = {form_id: {field: message}}
        return await _rule_page(page, rule_id, errors=errors, values=values, status=failure.status)
    return page.redirect(f"/rules/{rule_id}", flash=flash, arg=rule_id)


@router.post("/rules/{rule_id}/submit")
async def submit_rule(page: Page, rule_id: str) -> Response:
    """Send the draft to a named reviewer who is not its author."""
    rule_id = checked_id(rule_id)
    reviewer = form_text(await page.form(), "reviewer", 200)
    values = {"reviewer": reviewer}
    if not reviewer:
        errors = {"submit": {"reviewer": page.t("rules.error.reviewer")}}
        return await _rule_page(page, rule_id, errors=errors, values=values, status=422)
    body = {"reviewer": reviewer}
    return await _transition(page, rule_id, "submit", body, "submit", "reviewer", values, "rules.flash.submitted")


@router.post("/rules/{rule_id}/approve")
async def approve_rule(page: Page, rule_id: str) -> Response:
    """Approve the version in review: it becomes the active one."""
    rule_id = checked_id(rule_id)
    note = form_text(await page.form(), "note", MAX_NOTE + 1)
    if len(note) > MAX_NOTE:
        errors = {"review": {"note": page.t("rules.error.too_long", n=MAX_NOTE)}}
        return await _rule_page(page, rule_id, errors=errors, values={"note": note}, status=422)
    body = {"note": note} if note else {}
    return await _transition(page, rule_id, "approve", body, "review", "note", {"note": note}, "rules.flash.approved")


@router.post("/rules/{rule_id}/reject")
async def reject_rule(page: Page, rule_id: str) -> Response:
    """Send the version in review back to draft with a reason."""
    rule_id = checked_id(rule_id)
    reason = form_text(await page.form(), "reason", MAX_NOTE + 1)
    values = {"reason": reason}
    problem = None
    if not reason:
        problem = page.t("rules.error.required")
    elif len(reason) > MAX_NOTE:
        problem = page.t("rules.error.too_long", n=MAX_NOTE)
    if problem:
        return await _rule_page(page, rule_id, errors={"reject": {"reason": problem}}, values=values, status=422)
    body = {"reason": reason}
    return await _transition(page, rule_id, "reject", body, "reject", "reason", values, "rules.flash.rejected")


@router.post("/rules/{rule_id}/retire")
async def retire_rule(page: Page, rule_id: str) -> Response:
    """Retire the rule: it stops acting; its versions and firings stay."""
    rule_id = checked_id(rule_id)
    return await _transition(page, rule_id, "retire", {}, "retire", "retire", {}, "rules.flash.retired")


@router.post("/rules/{rule_id}/override")
async def override_rule(page: Page, rule_id: str) -> Response:
    """This store's own switch and params for the rule (kept across pack upgrades and rollbacks)."""
    rule_id = checked_id(rule_id)
    form = await page.form()
    enabled = form_text(form, "enabled", 10) in ("1", "on", "true", "yes")
    text = form_text(form, "params", 2001)
    values = {"enabled": "1" if enabled else "", "params": text}
    params, problem = parse_params(text)
    if problem or len(text) > 2000:
        errors = {"override": {"params": page.t(problem or "rules.error.too_long", n=2000)}}
        return await _rule_page(page, rule_id, errors=errors, values=values, status=422)
    body: dict[str, Any] = {"enabled": enabled}
    if params:
        body["params"] = params
    try:
        await page.api.put(f"/api/v1/rules/{rule_id}/override", json=body)
    except ApiFailure as failure:
        if failure.status not in (409, 422):
            raise
        field = "params" if "param" in str(failure.detail.get("field", "")) else "enabled"
        errors = {"override": {field: failure.text(page.lang)}}
        return await _rule_page(page, rule_id, errors=errors, values=values, status=failure.status)
    return page.redirect(f"/rules/{rule_id}", flash="rules.flash.overridden", arg=rule_id)


# --- the review queue -------------------------------------------------------------------------------------------


@router.get("/rule-reviews")
async def review_queue(page: Page) -> Response:
    """Rules waiting for review; the ones waiting for this user first."""
    answer, (facts, _) = await asyncio.gather(
        page.api.get("/api/v1/rules", state="in_review", limit=LIST_LIMIT), catalogues(page)
    )
    me = str(page.me.get("username") or "")
    waiting = [r for r in rows_of(answer) if state_of(r) == "in_review"]
    waiting.sort(key=lambda r: (str(r.get("reviewer") or "") != me, str(r.get("id"))))
    # What each waiting version would change, for whom and how much: the reviewer reads it before opening it.
    details = await asyncio.gather(*(page.api.get(f"/api/v1/rules/{r['id']}") for r in waiting[:MAX_REVIEW_DETAILS]))
    documents = {str(d.get("id")): rule_document(latest_version(d)) for d in details if isinstance(d, dict)}
    return page.render(
        "rules/reviews.html",
        tab="reviews",
        rules=waiting,
        documents=documents,
        me=page.me,
        name_of=lambda r: name_of(r, page.lang),
        trigger_of=lambda r: describe_trigger(page, facts, r),
        **helpers(page),
    )


# --- firings ----------------------------------------------------------------------------------------------------


@router.get("/rule-firings")
async def firings_page(
    page: Page, rule: str = Query("", max_length=100), state: str = Query("", max_length=20)
) -> Response:
    """What the rules (and modules) did, newest first, with links to the documents they acted on; the failed ones
    alone with `state=failed`."""
    rule = rule if RULE_ID.match(rule) or re.fullmatch(r"module:[a-z0-9-]{1,64}(@\d{1,9})?", rule) else ""
    state = state if state in FIRING_STATES else ""
    answer, (_, actions) = await asyncio.gather(
        page.api.get("/api/v1/rule-firings", rule_id=rule or None, state=state or None, limit=200), catalogues(page)
    )
    return page.render(
        "rules/firings.html",
        tab="firings",
        firings=rows_of(answer),
        rule=rule,
        state=state,
        states=FIRING_STATES,
        **helpers(page, action_forms(actions)),
    )


def object_link(kind: Any, object_id: Any) -> str | None:
    """The page of a held or acted-on object."""
    if object_id in (None, ""):
        return None
    if kind == "purchase_order":
        return f"/purchasing/{object_id}"
    if kind in ("document", "receipt", "sale", "customer_return"):
        return f"/documents/{object_id}"
    if kind == "supplier":
        return f"/suppliers/{object_id}"
    if kind == "ticket":
        return f"/rule-tickets#ticket-{object_id}"
    if kind == "draft":
        return f"/rule-drafts#draft-{object_id}"
    if kind == "item":
        return f"/stock/{object_id}"
    return None


# --- holds and tickets ------------------------------------------------------------------------------------------


async def _holds_page(
    page: PageContext,
    *,
    errors: dict[str, dict[str, str]] | None = None,
    values: dict[str, dict[str, str]] | None = None,
    status: int = 200,
) -> Response:
    answer = await page.api.get("/api/v1/holds", limit=LIST_LIMIT)
    holds = rows_of(answer)
    # An error shows next to its form; a hold that is no longer open has no form, so its error goes on top.
    listed = {f"hold-{h.get('id')}" for h in holds if (h.get("state") or "open") == "open"}
    elsewhere = [m for form_id, found in (errors or {}).items() if form_id not in listed for m in found.values()]
    return page.render(
        "rules/holds.html",
        status=status,
        tab="holds",
        holds=holds,
        elsewhere=elsewhere,
        errors=errors or {},
        values=values or {},
        **helpers(page),
    )


@router.get("/holds")
async def holds_page(page: Page) -> Response:
    """Documents held by a rule: open first; release with a note (not by the document's author)."""
    return await _holds_page(page)


@router.post("/holds/{hold_id}/release")
async def release_hold(page: Page, hold_id: HoldId) -> Response:
    form = await page.form()
    note = form_text(form, "note", MAX_NOTE + 1)
    form_id = f"hold-{hold_id}"
    values = {form_id: {"note": note}}
    problem = None
    if not note:
        problem = page.t("rules.error.required")
    elif len(note) > MAX_NOTE:
        problem = page.t("rules.error.too_long", n=MAX_NOTE)
    if problem:
        return await _holds_page(page, errors={form_id: {"note": problem}}, values=values, status=422)
    try:
        await page.api.post(f"/api/v1/holds/{hold_id}/release", json={"note": note})
    except ApiFailure as failure:
        if failure.status not in (404, 409, 422):
            raise
        errors = {form_id: {"note": failure.text(page.lang)}}
        return await _holds_page(page, errors=errors, values=values, status=failure.status)
    return page.redirect("/holds", flash="rules.flash.released", arg=str(hold_id))


async def _tickets_page(
    page: PageContext,
    *,
    errors: dict[str, dict[str, str]] | None = None,
    values: dict[str, dict[str, str]] | None = None,
    status: int = 200,
) -> Response:
    answer = await page.api.get("/api/v1/rule-tickets", limit=LIST_LIMIT)
    tickets = rows_of(answer)
    listed = {f"ticket-{t.get('id')}" for t in tickets if (t.get("state") or "open") == "open"}
    elsewhere = [m for form_id, found in (errors or {}).items() if form_id not in listed for m in found.values()]
    return page.render(
        "rules/tickets.html",
        status=status,
        tab="tickets",
        tickets=tickets,
        elsewhere=elsewhere,
        errors=errors or {},
        values=values or {},
        **helpers(page),
    )


@router.get("/rule-tickets")
async def tickets_page(page: Page) -> Response:
    """Tickets rules opened in the teams' queues; close with a resolution."""
    return await _tickets_page(page)


@router.post("/rule-tickets/{ticket_id}/close")
async def close_ticket(page: Page, ticket_id: TicketId) -> Response:
    form = await page.form()
    resolution = form_text(form, "resolution", MAX_NOTE + 1)
    form_id = f"ticket-{ticket_id}"
    values = {form_id: {"resolution": resolution}}
    problem = None
    if not resolution:
        problem = page.t("rules.error.required")
    elif len(resolution) > MAX_NOTE:
        problem = page.t("rules.error.too_long", n=MAX_NOTE)
    if problem:
        return await _tickets_page(page, errors={form_id: {"resolution": problem}}, values=values, status=422)
    try:
        await page.api.post(f"/api/v1/rule-tickets/{ticket_id}/close", json={"resolution": resolution})
    except ApiFailure as failure:
        if failure.status not in (404, 409, 422):
            raise
        errors = {form_id: {"resolution": failure.text(page.lang)}}
        return await _tickets_page(page, errors=errors, values=values, status=failure.status)
    return page.redirect("/rule-tickets", flash="rules.flash.closed", arg=str(ticket_id))


# --- drafts rules and modules proposed ---------------------------------------------------------------------------


async def _drafts_page(
    page: PageContext,
    *,
    errors: dict[str, dict[str, str]] | None = None,
    values: dict[str, dict[str, str]] | None = None,
    status: int = 200,
) -> Response:
    answer = await page.api.get("/api/v1/rule-drafts", limit=LIST_LIMIT)
    drafts = rows_of(answer)
    listed = {f"draft-{d.get('id')}" for d in drafts if (d.get("state") or "open") == "open"}
    elsewhere = [m for form_id, found in (errors or {}).items() if form_id not in listed for m in found.values()]
    return page.render(
        "rules/drafts.html",
        status=status,
        tab="drafts",
        drafts=drafts,
        elsewhere=elsewhere,
        errors=errors or {},
        values=values or {},
        **helpers(page),
    )


@router.get("/rule-drafts")
async def drafts_page(page: Page) -> Response:
    """Drafts rules and modules proposed (a purchase order, a presale, a markdown, a transfer request): confirm or
    dismiss each; confirming a purchase order draft posts the PO."""
    return await _drafts_page(page)


@router.post("/rule-drafts/{draft_id}/{decision}")
async def decide_draft(page: Page, draft_id: DraftId, decision: str) -> Response:
    if decision not in ("confirm", "dismiss"):
        return await _drafts_page(page, status=404)
    form = await page.form()
    note = form_text(form, "note", MAX_NOTE + 1)
    form_id = f"draft-{draft_id}"
    values = {form_id: {"note": note}}
    if len(note) > MAX_NOTE:
        errors = {form_id: {"note": page.t("rules.error.too_long", n=MAX_NOTE)}}
        return await _drafts_page(page, errors=errors, values=values, status=422)
    try:
        decided = await page.api.post(f"/api/v1/rule-drafts/{draft_id}/{decision}", json={"note": note or None})
    except ApiFailure as failure:
        if failure.status not in (403, 404, 409, 422):
            raise
        errors = {form_id: {"note": failure.text(page.lang)}}
        return await _drafts_page(page, errors=errors, values=values, status=failure.status)
    if decision == "confirm" and isinstance(decided, Mapping) and decided.get("document_id"):
        return page.redirect(
            f"/purchasing/{decided['document_id']}", flash="rules.flash.draft_ordered", arg=str(draft_id)
        )
    flash = "rules.flash.draft_confirmed" if decision == "confirm" else "rules.flash.draft_dismissed"
    return page.redirect("/rule-drafts", flash=flash, arg=str(draft_id))
