"""HQ's module rollouts page (docs/hq-page.md, docs/canary.md): the rollouts with their state, a form to
roll a module version out to pilot stores (three by default) with its KPI thresholds, and one rollout with each pilot
store's reported precision and false positives against the thresholds, why it may not be promoted yet, promote and
roll back.

Everything through the HQ API (`/api/v1/hq/modules/rollouts...`): the aggregator decides whether the KPIs hold
(409 `rollout_kpis_not_met` with each store's reasons); this page shows its answers in the user's language.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Path, Query
from fastapi.responses import Response

from cloud_sync.web.framework import HqPage, HqPageContext, HqPageRouter, redirect
from edge.web.pages.client import ApiFailure

router = HqPageRouter()

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
STORE = re.compile(r"^[a-z0-9-]{1,64}$")
STATES = ("piloting", "promoted", "rolled_back")
PAGE_SIZE = 50
FIELDS = ("name", "version", "stores", "precision_min", "false_positive_max", "window", "min_decisions")
RolloutId = Annotated[int, Path(ge=1, le=2**53 - 1)]
Offset = Annotated[int, Query(ge=0, le=10**9)]
DONE = {
    "created": "hq.rollouts.done.created",
    "promoted": "hq.rollouts.done.promoted",
    "rolled_back": "hq.rollouts.done.rolled_back",
}
STATE_KEYS = {
    "piloting": "hq.rollouts.state.piloting",
    "promoted": "hq.rollouts.state.promoted",
    "rolled_back": "hq.rollouts.state.rolled_back",
}
EVENT_KEYS = {
    "created": "hq.rollouts.event.created",
    "promoted": "hq.rollouts.event.promoted",
    "promotion_refused": "hq.rollouts.event.promotion_refused",
    "rolled_back": "hq.rollouts.event.rolled_back",
}


def labels(page: HqPageContext) -> dict[str, Any]:
    """A rollout's state and its events in the page's language."""
    return {
        "state_label": lambda s: page.t(STATE_KEYS.get(str(s), "hq.rollouts.state.other")),
        "event_label": lambda e: page.t(EVENT_KEYS.get(str(e), "hq.rollouts.event.other")),
    }


def form_text(form: Any, name: str, limit: int = 2000) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def percent_of(text: str) -> float | None:
    """A threshold typed in percent ("92", "92.5", "92%") as a ratio; None when it is not one in 0..100."""
    text = text.rstrip("%").strip()
    try:
        value = float(text)
    except ValueError:
        return None
    return value / 100 if 0 <= value <= 100 else None


def rollout_body(page: HqPageContext, values: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The create form as the API's body, and the problems the page sees itself, next to their fields."""
    errors: dict[str, str] = {}
    body: dict[str, Any] = {}
    if not NAME.match(values["name"]):
        errors["name"] = page.t("hq.rollouts.error.name")
    body["name"] = values["name"]
    if not values["version"].isdigit() or int(values["version"]) < 1 or len(values["version"]) > 15:
        errors["version"] = page.t("hq.rollouts.error.version")
    else:
        body["version"] = int(values["version"])
    stores = [s for s in re.split(r"[,\uff0c\s]+", values["stores"]) if s]
    if stores:
        if len(stores) > 100 or not all(STORE.match(s) for s in stores):
            errors["stores"] = page.t("hq.rollouts.error.stores")
        body["stores"] = stores
    thresholds: dict[str, Any] = {}
    for key in ("precision_min", "false_positive_max"):
        if values[key]:
            ratio = percent_of(values[key])
            if ratio is None:
                errors[key] = page.t("hq.rollouts.error.percent")
            thresholds[key] = ratio
    for key in ("window", "min_decisions"):
        if values[key]:
            if not values[key].isdigit() or not 1 <= int(values[key]) <= 100_000:
                errors[key] = page.t("hq.rollouts.error.count")
            else:
                thresholds[key] = int(values[key])
    if thresholds:
        body["thresholds"] = thresholds
    return body, errors


def api_field(failure: ApiFailure) -> str:
    """The create form's field an API refusal is about."""
    field = str(failure.detail.get("field") or "")
    for name in FIELDS:
        if name in field:
            return name
    if "store" in failure.code or "pilot" in failure.code:
        return "stores"
    if "threshold" in failure.code:
        return "precision_min"
    if "package" in failure.code or "version" in failure.code:
        return "version"
    return "name"


# --- the list and the create form -------------------------------------------------------------------------------


async def _list_page(
    page: HqPageContext,
    *,
    state: str = "",
    offset: int = 0,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    answer = await page.api.get("/api/v1/hq/modules/rollouts", state=state or None, limit=PAGE_SIZE, offset=offset)
    items = answer.get("items", []) if isinstance(answer, dict) else []
    limit = int(answer.get("limit") or PAGE_SIZE) if isinstance(answer, dict) else PAGE_SIZE
    following = answer.get("next_offset") if isinstance(answer, dict) else None
    return page.render(
        "hq/rollouts.html",
        status=status,
        rollouts=items,
        state=state,
        states=STATES,
        previous=f"/hq/rollouts?offset={max(0, offset - limit)}" if offset > 0 else None,
        following=f"/hq/rollouts?offset={following}" if following is not None else None,
        values=values or {name: "" for name in FIELDS},
        errors=errors or {},
        **labels(page),
    )


@router.get("/hq/rollouts")
async def rollouts_page(page: HqPage, state: Annotated[str, Query(max_length=20)] = "", offset: Offset = 0) -> Response:
    """Rollouts newest first, by state, with the form for a new one."""
    return await _list_page(page, state=state if state in STATES else "", offset=offset)


@router.post("/hq/rollouts")
async def create_rollout(page: HqPage) -> Response:
    """Roll a published module version out to pilot stores; the aggregator picks three when none are named."""
    form = await page.form()
    values = {name: form_text(form, name) for name in FIELDS}
    body, errors = rollout_body(page, values)
    if errors:
        return await _list_page(page, values=values, errors=errors, status=422)
    try:
        created = await page.api.post("/api/v1/hq/modules/rollouts", json=body)
    except ApiFailure as failure:
        if failure.status not in (404, 409, 422):
            raise
        errors = {api_field(failure): failure.text(page.lang)}
        return await _list_page(page, values=values, errors=errors, status=failure.status)
    return redirect(f"/hq/rollouts/{created['id']}?done=created")


# --- one rollout ------------------------------------------------------------------------------------------------


async def _rollout_page(
    page: HqPageContext,
    rollout_id: int,
    *,
    done: str = "",
    error: str | None = None,
    reasons: list[dict[str, Any]] | None = None,
    values: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    rollout = await page.api.get(f"/api/v1/hq/modules/rollouts/{rollout_id}")
    return page.render(
        "hq/rollout.html",
        status=status,
        rollout=rollout,
        done_key=DONE.get(done, ""),
        error=error,
        reasons=reasons or [],
        values=values or {},
        reason_text=lambda r: str(r.get("message_en" if page.lang == "en" else "message") or r.get("code") or ""),
        **labels(page),
    )


@router.get("/hq/rollouts/{rollout_id}")
async def rollout_page(
    page: HqPage, rollout_id: RolloutId, done: Annotated[str, Query(max_length=20)] = ""
) -> Response:
    """Each pilot store's KPIs against the thresholds, why promotion waits, the rollout's events."""
    return await _rollout_page(page, rollout_id, done=done)


@router.post("/hq/rollouts/{rollout_id}/promote")
async def promote(page: HqPage, rollout_id: RolloutId) -> Response:
    """Promote to every store: refused, with each pilot store's reasons, unless every pilot's KPIs hold."""
    try:
        await page.api.post(f"/api/v1/hq/modules/rollouts/{rollout_id}/promote")
    except ApiFailure as failure:
        if failure.status not in (409, 422):
            raise
        found = failure.detail.get("stores") or failure.detail.get("reasons") or []
        reasons = [r for r in found if isinstance(r, dict)] if isinstance(found, list) else []
        return await _rollout_page(
            page, rollout_id, error=failure.text(page.lang), reasons=reasons, status=failure.status
        )
    return redirect(f"/hq/rollouts/{rollout_id}?done=promoted")


@router.post("/hq/rollouts/{rollout_id}/rollback")
async def rollback(page: HqPage, rollout_id: RolloutId) -> Response:
    """Roll the rollout back: the pilot stores are told to return to the version before."""
    reason = form_text(await page.form(), "reason", 1001)
    if len(reason) > 1000:
        message = page.t("hq.rollouts.error.too_long", n=1000)
        return await _rollout_page(page, rollout_id, error=message, values={"reason": reason}, status=422)
    try:
        await page.api.post(f"/api/v1/hq/modules/rollouts/{rollout_id}/rollback", json={"reason": reason or None})
    except ApiFailure as failure:
        if failure.status not in (409, 422):
            raise
        return await _rollout_page(
            page, rollout_id, error=failure.text(page.lang), values={"reason": reason}, status=failure.status
        )
    return redirect(f"/hq/rollouts/{rollout_id}?done=rolled_back")
