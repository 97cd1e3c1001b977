"""Device pages over real HTTP: the fleet with status and last contact, registering with credentials shown once,
disabling and enabling, and garbage in the registration form refused next to the field."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.security.roles import Role
from edge.web.pages.devices import KINDS
from edge.web.pages.i18n import load_catalog
from tests.edge.web.pages.pagedata import api, html, ok, text_of
from tests.edge.web.pages.site import Site

TRACE = re.compile(r"Traceback|File \"/|sqlite3\.|NameError|KeyError")


def register(site: Site, client: object, **fields: str) -> object:
    return site.post_form(client, "/devices", fields, page="/devices")  # type: ignore[arg-type]


def devices(site: Site) -> dict[str, dict[str, object]]:
    return {d["id"]: d for d in ok(api(site, "GET", "/api/v1/devices", Role.ADMIN))}


def test_every_kind_has_its_label() -> None:
    catalog = load_catalog()
    for kind in KINDS:
        assert f"devices.kind.{kind}" in catalog
    for state in ("online", "offline", "unknown", "disabled"):
        assert f"devices.state.{state}" in catalog


def test_the_admin_registers_a_device_and_sees_its_password_once(site: Site) -> None:
    with site.login(Role.ADMIN) as admin:
        form = admin.get("/devices")
        assert html(form).xpath("//div[@id='device-table'][@hx-trigger='sb:device from:body']")  # live refresh
        assert html(form).xpath("//form[@action='/devices']//select[@name='kind']/option[@value='sensor']")
        assert html(form).xpath("//select[@name='location']/option[@value='cold']")
        done = register(site, admin, id="cold-7", kind="sensor", location="cold", profile="mqtt-cold-room-sensor")
        assert done.status_code == 201, done.text  # type: ignore[attr-defined]
        assert done.headers["cache-control"] == "no-store"  # type: ignore[attr-defined]
        password = text_of(done, "//*[@id='cred-password']")  # type: ignore[arg-type]
        assert len(password) >= 16 and text_of(done, "//*[@id='cred-username']") == "cold-7"  # type: ignore[arg-type]
        assert "只显示这一次" in done.text  # type: ignore[attr-defined]
        assert "storebox/store-001/dev/cold-7/" in done.text  # type: ignore[attr-defined]
        listed = admin.get("/devices")
        row = text_of(listed, "//tr[@data-device='cold-7']")
        assert "温度传感器" in row and "从未上报" in row and "cold" in row and "mqtt-cold-room-sensor" in row
        assert password not in listed.text  # shown once, never again
    device = devices(site)["cold-7"]
    assert (device["kind"], device["location"], device["enabled"]) == ("sensor", "cold", True)


def test_a_second_registration_of_the_same_id_is_refused_at_the_field(site: Site) -> None:
    with site.login(Role.ADMIN, lang="en") as admin:
        assert register(site, admin, id="pda-9", kind="handheld").status_code == 201  # type: ignore[attr-defined]
        again = register(site, admin, id="pda-9", kind="pos")
        assert again.status_code == 409  # type: ignore[attr-defined]
        assert "pda-9" in text_of(again, "//*[@id='e-id']")  # type: ignore[arg-type]
        assert 'value="pda-9"' in again.text  # type: ignore[attr-defined]  # what was typed stays
    assert devices(site)["pda-9"]["kind"] == "handheld"


def test_disable_and_enable_from_the_list(site: Site) -> None:
    ok(api(site, "POST", "/api/v1/devices", Role.ADMIN, json={"id": "pos-5", "kind": "pos"}), 201)
    with site.login(Role.ADMIN) as admin:
        done = site.post_form(admin, "/devices/pos-5/disable", {}, page="/devices")
        assert done.status_code == 303 and done.headers["location"] == "/devices"
        listed = admin.get("/devices")
        assert "设备 pos-5 已停用" in text_of(listed, "//p[@class='flash']")
        assert html(listed).xpath("//tr[@data-device='pos-5']/@data-state") == ["disabled"]
        assert html(listed).xpath("//tr[@data-device='pos-5']//form[@action='/devices/pos-5/enable']")
        assert devices(site)["pos-5"]["enabled"] is False
        site.post_form(admin, "/devices/pos-5/enable", {}, page="/devices")
        assert devices(site)["pos-5"]["enabled"] is True
        unknown = site.post_form(admin, "/devices/nope-1/disable", {}, page="/devices")
        assert unknown.status_code == 404 and not TRACE.search(unknown.text)
        bad = site.post_form(admin, "/devices/pos-5/explode", {}, page="/devices")
        assert bad.status_code == 404
        rotated = site.post_form(admin, "/devices/pos-5/rotate", {}, page="/devices")
        assert rotated.status_code == 200 and rotated.headers["cache-control"] == "no-store"
        assert "设备 pos-5 的新密码" in rotated.text and len(text_of(rotated, "//*[@id='cred-password']")) >= 16
        assert devices(site)["pos-5"]["credentials_rotated_at"]
        fragment = admin.get("/devices?fragment=table")
        assert fragment.status_code == 200 and "<html" not in fragment.text and 'data-device="pos-5"' in fragment.text


def test_the_store_manager_registers_and_disables_devices_and_the_clerk_sees_no_devices(site: Site) -> None:
    ok(api(site, "POST", "/api/v1/devices", Role.ADMIN, json={"id": "scale-3", "kind": "scale"}), 201)
    with site.login(Role.MANAGER) as manager:
        listed = manager.get("/devices")
        assert listed.status_code == 200 and html(listed).xpath("//tr[@data-device='scale-3']")
        assert html(listed).xpath("//form[@action='/devices']")  # the issue: the manager registers and disables
        registered = register(site, manager, id="pos-77", kind="pos")
        assert registered.status_code == 201  # type: ignore[attr-defined]
        assert site.post_form(manager, "/devices/scale-3/disable", {}, page="/devices").status_code == 303
    assert "pos-77" in devices(site) and devices(site)["scale-3"]["enabled"] is False
    with site.login(Role.AUDITOR) as auditor:
        listed = auditor.get("/devices")
        assert listed.status_code == 200 and not html(listed).xpath("//form[@action='/devices']")
        assert site.post_form(auditor, "/devices/scale-3/enable", {}, page="/devices").status_code == 403
    with site.login(Role.CLERK) as clerk:
        assert clerk.get("/devices").status_code == 403
        assert 'href="/devices"' not in clerk.get("/").text


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    device_id=st.text(max_size=80) | st.from_regex(r"\Ag-[a-z0-9]{1,8}\Z"),
    kind=st.text(max_size=20) | st.sampled_from(KINDS),
    location=st.text(max_size=70) | st.sampled_from(["", "cold", "floor", "attic"]),
    profile=st.text(max_size=70),
)
def test_garbage_registrations_are_refused_next_to_the_field(
    site: Site, device_id: str, kind: str, location: str, profile: str
) -> None:
    before = set(devices(site))
    with site.login(Role.ADMIN) as admin:
        response = register(site, admin, id=device_id, kind=kind, location=location, profile=profile)
    status = response.status_code  # type: ignore[attr-defined]
    text = response.text  # type: ignore[attr-defined]
    assert status in (201, 404, 409, 422), text
    assert not TRACE.search(text)
    after = set(devices(site))
    if status == 201:
        assert after - before == {device_id.strip()}
    else:
        assert after == before  # nothing half-written
        assert re.search(r'id="e-(id|kind|location|profile)"', text) or 'class="form-error"' in text
