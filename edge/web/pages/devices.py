"""Devices (设备管理): the fleet with its status and last contact; register (credentials shown once), disable,
enable. Over `GET/POST /api/v1/devices...`; managing needs `devices:manage` (admin), see docs/fleet.md."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from fastapi import Path
from fastapi.responses import Response

from edge.web.pages.client import ApiFailure
from edge.web.pages.framework import Page, PageContext, PageRouter

router = PageRouter()

KINDS = ("pos", "handheld", "scale", "scanner", "sensor", "forklift", "printer", "gateway", "supplier", "other")
DEVICE_ID = re.compile(r"^[a-z0-9-]{1,64}$")
PROFILE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
LOCATION = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
DeviceId = Path(pattern=DEVICE_ID.pattern)
NO_STORE = {"Cache-Control": "no-store"}


async def _locations(page: PageContext) -> list[dict[str, Any]]:
    if not page.can("locations:read"):
        return []
    rows: list[dict[str, Any]] = await page.api.get("/api/v1/locations")
    return rows


def _summary(devices: list[dict[str, Any]]) -> dict[str, int]:
    enabled = [d for d in devices if d.get("enabled")]
    online = sum(1 for d in enabled if (d.get("status") or {}).get("state") == "online")
    return {"online": online, "offline": len(enabled) - online, "disabled": len(devices) - len(enabled)}


async def _list_page(
    page: PageContext,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    devices, locations = await asyncio.gather(page.api.get("/api/v1/devices"), _locations(page))
    template = "devices/_table.html" if page.request.query_params.get("fragment") == "table" else "devices/list.html"
    return page.render(
        template,
        status=status,
        devices=devices,
        summary=_summary(devices),
        locations=locations,
        kinds=KINDS,
        errors=errors or {},
        form=form or {},
    )


@router.get("/devices")
async def devices(page: Page) -> Response:
    """The fleet; `?fragment=table` answers the table alone (htmx refresh on a live `device` event)."""
    return await _list_page(page)


def _register_errors(page: PageContext, form: dict[str, str]) -> dict[str, str]:
    """What the page can say before asking the API (the API checks all of it again)."""
    errors: dict[str, str] = {}
    if not DEVICE_ID.match(form["id"]):
        errors["id"] = page.t("devices.register.id_invalid")
    if form["kind"] not in KINDS:
        errors["kind"] = page.t("devices.register.kind_invalid")
    if form["profile"] and not PROFILE.match(form["profile"]):
        errors["profile"] = page.t("devices.register.profile_invalid")
    if form["location"] and not LOCATION.match(form["location"]):
        errors["location"] = page.t("devices.register.location_invalid")
    return errors


@router.post("/devices")
async def register_device(page: Page) -> Response:
    """Register; the answer shows the MQTT credentials once and is not cached."""
    page.require("devices:manage")
    data = await page.form()
    form = {name: str(data.get(name) or "").strip()[:200] for name in ("id", "kind", "location", "profile")}
    errors = _register_errors(page, form)
    if errors:
        return await _list_page(page, status=422, errors=errors, form=form)
    body = {"id": form["id"], "kind": form["kind"]}
    body.update({name: form[name] for name in ("location", "profile") if form[name]})
    try:
        answer = await page.api.post("/api/v1/devices", json=body)
    except ApiFailure as failure:
        if failure.status in (401, 403):
            raise
        fields = failure.field_errors(page.lang)
        if failure.code == "device_exists":
            fields = {"id": failure.text(page.lang)}
        elif failure.code == "unknown_location":
            fields = {"location": failure.text(page.lang)}
        errors = fields or {"form": failure.text(page.lang)}
        return await _list_page(page, status=failure.status, errors=errors, form=form)
    response = page.render("devices/credentials.html", status=201, device=answer["device"], creds=answer["credentials"])
    response.headers.update(NO_STORE)
    return response


@router.post("/devices/{device_id}/{action}")
async def device_action(page: Page, action: str, device_id: str = DeviceId) -> Response:
    """Disable or enable a device, or rotate its password (the new one shown once, like at registration)."""
    if action not in ("disable", "enable", "rotate"):
        return page.render("error.html", status=404, title_key="error.not_found.title", body_key="error.not_found.body")
    answer = await page.api.post(f"/api/v1/devices/{device_id}/{action}")
    if action == "rotate":
        response = page.render(
            "devices/credentials.html", device=answer["device"], creds=answer["credentials"], rotated=True
        )
        response.headers.update(NO_STORE)
        return response
    return page.redirect("/devices", flash=f"devices.{action}d_flash", arg=device_id)
