"""Scenario module pages (场景模块, docs/web.md "Modules"): each module with its state, version, worker and its
KPIs as gauges against their thresholds; one module with its precision and false positives over its latest judged
decisions, its decisions, failures, versions and history; enable, disable, roll back and remove where the user may.

Everything through the API (`GET /api/v1/modules[/{name}]`, `POST /api/v1/modules/{name}/enable|disable|rollback`,
`DELETE /api/v1/modules/{name}`): the module host decides, this page shows its answers in the user's language.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from fastapi.responses import Response
from starlette.exceptions import HTTPException

from edge.web.pages.charts import line_chart
from edge.web.pages.client import ApiFailure
from edge.web.pages.framework import Page, PageContext, PageRouter

router = PageRouter()

MODULE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
ACTIONS = ("enable", "disable", "rollback", "remove")
STATES = ("enabled", "disabled", "failed", "removed")


def checked_name(name: str) -> str:
    """A module name from the URL as the API takes it; anything else is simply not found."""
    if not MODULE_NAME.match(name):
        raise HTTPException(404)
    return name


def title_of(module: Mapping[str, Any], lang: str) -> str:
    title = module.get("title")
    if isinstance(title, Mapping):
        first, second = ("en", "zh") if lang == "en" else ("zh", "en")
        return str(title.get(first) or title.get(second) or module.get("name") or "")
    return str(module.get("name") or "")


def kpi_state(module: Mapping[str, Any]) -> str:
    """How the KPIs stand against the thresholds: `ok`, `broken`, `learning` (too few judged decisions to say),
    or `none` (no KPIs)."""
    kpis, limits = module.get("kpis"), module.get("thresholds")
    if not isinstance(kpis, Mapping) or not isinstance(limits, Mapping):
        return "none"
    if int(kpis.get("judged") or 0) < int(limits.get("min_decisions") or 0) or kpis.get("precision") is None:
        return "learning"
    precision = float(kpis["precision"])
    false_positives = float(kpis.get("false_positive_rate") or 0.0)
    if precision < float(limits["precision_min"]) or false_positives > float(limits["false_positive_max"]):
        return "broken"
    return "ok"


def offered(module: Mapping[str, Any]) -> tuple[str, ...]:
    """The buttons that make sense in the module's state (the API refuses the rest with a message anyway)."""
    state = module.get("state")
    actions: list[str] = []
    if state in ("disabled", "failed"):
        actions.append("enable")
    if state == "enabled":
        actions.append("disable")
    if module.get("previous"):
        actions.append("rollback")
    if state != "removed":
        actions.append("remove")
    return tuple(actions)


def _unix(value: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def kpi_chart(decisions: Sequence[Mapping[str, Any]], thresholds: Any, labels: tuple[str, str]) -> dict[str, Any]:
    """Precision and false-positive rate (in %) over the judged decisions shown, in the order they were judged:
    after each one, right / judged and wrong / judged so far; the band is where precision must stay."""
    judged = [d for d in decisions if d.get("outcome") is not None and _unix(d.get("judged_at")) is not None]
    judged.sort(key=lambda d: (_unix(d.get("judged_at")) or 0.0, int(d.get("id") or 0)))
    xs: list[float] = []
    precision: list[float | None] = []
    false_positives: list[float | None] = []
    right = 0
    for n, decision in enumerate(judged, 1):
        right += 1 if decision["outcome"] else 0
        moment = _unix(decision["judged_at"]) or 0.0
        if xs and moment <= xs[-1]:
            moment = xs[-1] + 1  # uPlot wants x strictly increasing; decisions judged in one pass share a time
        xs.append(moment)
        precision.append(round(100 * right / n, 1))
        false_positives.append(round(100 * (n - right) / n, 1))
    bands = []
    if isinstance(thresholds, Mapping) and thresholds.get("precision_min") is not None:
        bands.append((round(100 * float(thresholds["precision_min"]), 1), 100.0))
    return line_chart(xs, [(labels[0], precision), (labels[1], false_positives)], unit="%", bands=bands)


# --- the list ---------------------------------------------------------------------------------------------------


async def _list_page(page: PageContext, *, errors: dict[str, str] | None = None, status: int = 200) -> Response:
    modules = await page.api.get("/api/v1/modules")
    modules = [m for m in modules if isinstance(m, dict)] if isinstance(modules, list) else []
    return page.render(
        "modules/list.html",
        status=status,
        modules=modules,
        errors=errors or {},
        title_of=lambda m: title_of(m, page.lang),
        kpi_state=kpi_state,
        offered=offered,
    )


@router.get("/modules")
async def modules_page(page: Page) -> Response:
    """Every module with its state, version, worker and KPI gauges against the thresholds."""
    return await _list_page(page)


# --- one module -------------------------------------------------------------------------------------------------


async def _module_page(
    page: PageContext, name: str, *, errors: dict[str, str] | None = None, status: int = 200
) -> Response:
    module = await page.api.get(f"/api/v1/modules/{name}")
    decisions = [d for d in module.get("decisions") or () if isinstance(d, dict)]
    labels = (page.t("modules.kpi.precision"), page.t("modules.kpi.false_positives"))
    return page.render(
        "modules/module.html",
        status=status,
        module=module,
        decisions=decisions,
        chart=kpi_chart(decisions, module.get("thresholds"), labels),
        errors=errors or {},
        title_of=lambda m: title_of(m, page.lang),
        kpi_state=kpi_state,
        offered=offered,
    )


@router.get("/modules/{name}")
async def module_page(page: Page, name: str) -> Response:
    """One module: KPIs against the thresholds with a chart, decisions, failures, versions, history."""
    return await _module_page(page, checked_name(name))


@router.post("/modules/{name}/{action}")
async def change_module(page: Page, name: str, action: str) -> Response:
    """Enable, disable, roll back or remove the module; the host switches its worker before the API answers."""
    name = checked_name(name)
    if action not in ACTIONS:
        raise HTTPException(404)
    page.require("modules:manage")
    form = await page.form()
    back = "list" if form.get("back") == "list" else "module"
    try:
        if action == "remove":
            await page.api.delete(f"/api/v1/modules/{name}")
        else:
            await page.api.post(f"/api/v1/modules/{name}/{action}")
    except ApiFailure as failure:
        if failure.status not in (404, 409, 422):
            raise
        errors = {name: failure.text(page.lang)}
        if back == "list":
            return await _list_page(page, errors=errors, status=failure.status)
        return await _module_page(page, name, errors=errors, status=failure.status)
    target = "/modules" if back == "list" else f"/modules/{name}"
    return page.redirect(target, flash=f"modules.flash.{action}", arg=name)
