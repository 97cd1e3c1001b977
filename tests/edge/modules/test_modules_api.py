"""The modules API on a running box (real app, real host, real workers): list and detail with state, KPIs and the
worker; enable, disable, roll back, remove (`modules:manage`); refusals as `{code, message, message_en, detail}`."""

from __future__ import annotations

from typing import Any

import httpx

from edge.db import connect
from edge.security.users import create_user
from tests.edge.modules.modkit import MILK, HostBox, hostbox, wait_for, write_module

__all__ = ["hostbox"]
PASSWORD = "module-test-password"


def _users(hb: HostBox) -> None:
    conn = connect(hb.settings.db_path)
    try:
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            for role in ("manager", "auditor", "clerk"):
                create_user(conn, f"{role}-m", PASSWORD, role)
    finally:
        conn.close()


def call(hb: HostBox, method: str, path: str, user: str = "manager-m") -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=hb.box.api)
        async with httpx.AsyncClient(transport=transport, base_url="http://box") as client:
            token = await client.post("/api/v1/auth/token", data={"username": user, "password": PASSWORD})
            assert token.status_code == 200, token.text
            headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
            return await client.request(method, path, headers=headers)

    response: httpx.Response = hb.run(go())
    return response


def test_list_detail_and_switches_over_http(hostbox: HostBox) -> None:
    hb = hostbox
    _users(hb)
    hb.install(write_module(hb.root, "echo", 1, params={"tag": "one", "outcome": True}))
    hb.install(write_module(hb.root, "echo", 2, params={"tag": "two", "outcome": True}))
    hb.sell(hb.device(), MILK)
    wait_for(lambda: hb.notices("echo"), "a notice")

    listed = call(hb, "GET", "/api/v1/modules", "auditor-m")
    assert listed.status_code == 200, listed.text
    (row,) = listed.json()
    assert (row["name"], row["version"], row["state"], row["source"], row["previous"]) == (
        "echo",
        2,
        "enabled",
        "local",
        1,
    )
    assert row["title"] == {"zh": "测试模块 echo", "en": "test module echo"}
    assert row["runtime"]["running"] is True and row["runtime"]["handled"] >= 1
    assert row["kpis"]["judged"] == 0 and row["kpis"]["precision"] is None
    assert row["thresholds"] == {"window": 20, "precision_min": 0.9, "false_positive_max": 0.1, "min_decisions": 3}

    detail: dict[str, Any] = call(hb, "GET", "/api/v1/modules/echo").json()
    assert [v["version"] for v in detail["versions"]] == [1, 2]
    assert detail["decisions"][0]["subject"] == "MILK-1L" and detail["decisions"][0]["outcome"] is None
    assert detail["manifest"]["params"] == {"tag": "two", "outcome": True}

    judged = call(hb, "POST", "/api/v1/modules/echo/judge")
    assert judged.status_code == 200 and judged.json()["judged"] == 1

    assert call(hb, "POST", "/api/v1/modules/echo/disable", "auditor-m").status_code == 403
    assert call(hb, "GET", "/api/v1/modules", "clerk-m").status_code == 403
    disabled = call(hb, "POST", "/api/v1/modules/echo/disable")
    assert disabled.status_code == 200 and disabled.json()["state"] == "disabled"
    assert "echo" not in hb.host.runners
    assert call(hb, "POST", "/api/v1/modules/echo/enable").json()["state"] == "enabled"
    assert "echo" in hb.host.runners

    rolled = call(hb, "POST", "/api/v1/modules/echo/rollback")
    assert rolled.json() == {"name": "echo", "state": "enabled", "version": None, "from_version": 2, "to_version": 1}
    assert hb.host.runners["echo"].version == 1
    again = call(hb, "POST", "/api/v1/modules/echo/rollback")
    assert again.status_code == 409
    body = again.json()
    assert body["code"] == "module_no_previous_version" and "没有可回滚" in body["message"]
    assert "no previous version" in body["message_en"] and body["detail"] == {"module": "echo"}

    removed = call(hb, "DELETE", "/api/v1/modules/echo")
    assert removed.status_code == 200 and removed.json()["state"] == "removed"
    assert "echo" not in hb.host.runners
    assert call(hb, "POST", "/api/v1/modules/echo/enable").status_code == 409
    missing = call(hb, "GET", "/api/v1/modules/nope")
    assert missing.status_code == 404 and missing.json()["code"] == "module_not_found"
    assert call(hb, "GET", "/api/v1/modules/Bad_Name").status_code == 422
