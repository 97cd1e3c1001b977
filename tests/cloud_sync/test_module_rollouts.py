"""Module canary at the aggregator (docs/canary.md): a published module is held until HQ rolls it out, served only
to the pilot stores, promoted only when every pilot's KPIs hold, rolled back by HQ or by a report that breaks a
threshold, and the stores that had it are told to roll back. On SQLite and PostgreSQL (`cloud_db_url`)."""

from __future__ import annotations

import gzip
import json
import re
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cloud_sync.cli import app as cloud_cli
from cloud_sync.hq.auth import add_token
from cloud_sync.modules.kpis import KpiReport, KpiReportInvalid, parse_reports
from cloud_sync.modules.rollouts import (
    Kpis,
    RolloutError,
    Thresholds,
    create_rollout,
    kpi_reasons,
    list_rollouts,
    manifest_thresholds,
)
from cloud_sync.packages import store as package_store
from cloud_sync.packages.format import build_package, public_key_hex
from cloud_sync.tables import rejections, stores, sync_state
from tests.cloud_sync.aggregator import StoreSession, build_app, register_store

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
NOW = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
MODULE = "near-expiry"
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def manifest(version: int, kpis: str = "") -> bytes:
    return f"""name: {MODULE}
version: {version}
title: {{zh: 临期商品清货, en: Near-expiry clearance}}
entry: module.py
subscribes: [{{kind: schedule, cron: "0 * * * *"}}]
may: [notify]
{kpis}budget: {{timeout_seconds: 10, memory_mb: 256, cpu_seconds: 20}}
params: {{}}
""".encode()


MODULE_PY = b"def handle(ctx, event):\n    return []\n\n\ndef judge(ctx, decision):\n    return None\n"


def module_package(version: int, *, stores_: list[str] | None = None, kpis: str = "", name: str = MODULE) -> bytes:
    return build_package(
        "module",
        name,
        version,
        {"manifest.yaml": manifest(version, kpis), "module.py": MODULE_PY},
        KEY,
        created_at=NOW,
        created_by="hq-modules",
        stores=stores_ or ["*"],
    )


class Hq:
    """HQ's side over HTTP: a bearer token and JSON requests to the aggregator app."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        with app.state.engine.begin() as conn:
            self.token = add_token(conn, "canary", NOW)[1]

    async def request(self, method: str, path: str, body: Any = None, token: str | None = None) -> httpx.Response:
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://aggregator") as c:
            headers = {"Authorization": f"Bearer {token or self.token}"}
            return await c.request(method, "/api/v1/hq/modules" + path, json=body, headers=headers)

    async def ok(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        answer = await self.request(method, path, body)
        assert answer.status_code == status, answer.text
        return answer.json()


class Chain:
    """An aggregator with stores s1..s5; s1 heard from last, s5 first; s6 never."""

    def __init__(self, db_url: str) -> None:
        self.app = build_app(db_url, hq_public_key=public_key_hex(KEY))
        self.engine: sa.Engine = self.app.state.engine
        self.stores = {
            s: StoreSession(self.app, s, register_store(self.engine, s)) for s in ("s1", "s2", "s3", "s4", "s5", "s6")
        }
        with self.engine.begin() as conn:
            for n, s in enumerate(("s5", "s4", "s3", "s2", "s1")):
                at = (NOW + timedelta(minutes=n)).isoformat()
                conn.execute(sync_state.insert().values(store=s, last_contact_at=at))
        self.hq = Hq(self.app)

    def publish(self, data: bytes) -> int:
        return int(package_store.publish(self.engine, data, public_key=public_key_hex(KEY), now=NOW, by="t")["id"])

    async def listing(self, store: str) -> dict[str, Any]:
        answer = await self.stores[store].get("/api/v1/sync/packages")
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    async def module_versions(self, store: str) -> list[int]:
        return [p["version"] for p in (await self.listing(store))["packages"] if p["kind"] == "module"]

    async def report(self, store: str, version: int, judged: int, right: int, wrong: int, **extra: Any) -> Any:
        body = {
            "reports": [
                {
                    "module": MODULE,
                    "version": version,
                    "judged": judged,
                    "right": right,
                    "wrong": wrong,
                    "precision": right / judged if judged else None,
                    "false_positive_rate": wrong / judged if judged else None,
                    "window": 200,
                    "at": NOW.isoformat(),
                    **extra,
                }
            ]
        }
        answer = await self.stores[store].post_json("/api/v1/sync/modules/kpis", body)
        assert answer.status_code == 200, answer.text
        return answer.json()


@pytest.fixture
def chain(cloud_db_url: str) -> Any:
    made = Chain(cloud_db_url)
    yield made
    made.engine.dispose()


async def test_a_published_module_is_held_until_rolled_out_then_served_to_the_pilots_only(chain: Chain) -> None:
    package_id = chain.publish(module_package(1, kpis="kpis: {window: 100, precision_min: 0.9, min_decisions: 20}\n"))
    assert await chain.module_versions("s1") == []
    held = await chain.stores["s1"].get(f"/api/v1/sync/packages/{package_id}/content")
    assert held.status_code == 404 and held.json()["code"] == "package_not_found"

    rollout = await chain.hq.ok("POST", "/rollouts", {"name": MODULE, "version": 1}, status=201)
    assert rollout["state"] == "piloting" and rollout["stores"] == ["s1", "s2", "s3"]  # heard from most recently
    assert rollout["thresholds"] == {
        "precision_min": 0.9,
        "false_positive_max": 0.05,
        "window": 100,
        "min_decisions": 20,
        "from": "manifest",
    }
    for store in ("s1", "s2", "s3"):
        assert await chain.module_versions(store) == [1]
        assert (await chain.stores[store].get(f"/api/v1/sync/packages/{package_id}/content")).status_code == 200
    for store in ("s4", "s5", "s6"):
        assert await chain.module_versions(store) == []
        assert (await chain.stores[store].get(f"/api/v1/sync/packages/{package_id}/content")).status_code == 404
    assert (await chain.listing("s4"))["rollbacks"] == []
    [event] = rollout["events"]
    assert (event["action"], event["actor"], event["detail"]["stores"]) == ("created", "hq:canary", ["s1", "s2", "s3"])


async def test_promotion_is_refused_until_every_pilot_reports_kpis_that_hold(chain: Chain) -> None:
    chain.publish(module_package(1))
    rollout = await chain.hq.ok("POST", "/rollouts", {"name": MODULE, "version": 1, "stores": ["s2", "s4"]}, 201)
    assert rollout["thresholds"]["from"] == "default" and rollout["promotable"] is False
    rid = rollout["id"]

    refused = await chain.hq.request("POST", f"/rollouts/{rid}/promote")
    assert refused.status_code == 409 and refused.json()["code"] == "rollout_kpis_not_met"
    assert {s["store"]: [r["code"] for r in s["reasons"]] for s in refused.json()["detail"]["stores"]} == {
        "s2": ["kpis_missing"],
        "s4": ["kpis_missing"],
    }
    assert (await chain.report("s2", 1, judged=60, right=58, wrong=2))["rolled_back"] == []
    assert (await chain.report("s4", 1, judged=30, right=30, wrong=0))["rolled_back"] == []
    refused = await chain.hq.request("POST", f"/rollouts/{rid}/promote")
    assert [(s["store"], [r["code"] for r in s["reasons"]]) for s in refused.json()["detail"]["stores"]] == [
        ("s4", ["too_few_decisions"])
    ]
    # 92 % exactly holds; a single wrong decision more than 5 % would not (checked on the counts, not floats)
    await chain.report("s4", 1, judged=100, right=92, wrong=5)
    shown = await chain.hq.ok("GET", f"/rollouts/{rid}")
    assert shown["promotable"] is True and [k["ok"] for k in shown["kpis"]] == [True, True]
    assert await chain.module_versions("s1") == []

    promoted = await chain.hq.ok("POST", f"/rollouts/{rid}/promote")
    assert promoted["state"] == "promoted" and promoted["promoted_by"] == "hq:canary"
    for store in chain.stores:
        assert await chain.module_versions(store) == [1]
    assert [e["action"] for e in promoted["events"]] == [
        "created",
        "promotion_refused",
        "promotion_refused",
        "promoted",
    ]
    again = await chain.hq.request("POST", f"/rollouts/{rid}/promote")
    assert again.status_code == 409 and again.json()["code"] == "rollout_not_active"


async def test_a_report_that_breaks_a_threshold_rolls_the_pilot_back_and_its_stores_are_told(chain: Chain) -> None:
    chain.publish(module_package(1))
    first = await chain.hq.ok("POST", "/rollouts", {"name": MODULE, "version": 1, "stores": ["s1"]}, 201)
    await chain.report("s1", 1, judged=50, right=50, wrong=0)
    await chain.hq.ok("POST", f"/rollouts/{first['id']}/promote")

    chain.publish(module_package(2))
    second = await chain.hq.ok(
        "POST",
        "/rollouts",
        {"name": MODULE, "version": 2, "stores": ["s1", "s2"], "thresholds": {"min_decisions": 40}},
        201,
    )
    assert second["thresholds"]["min_decisions"] == 40 and second["thresholds"]["from"] == "request"
    assert await chain.module_versions("s1") == [2] and await chain.module_versions("s3") == [1]

    # too few decisions to be sure, and a store outside the pilot: neither decides
    assert (await chain.report("s1", 2, judged=39, right=20, wrong=19))["rolled_back"] == []
    assert (await chain.report("s3", 2, judged=100, right=10, wrong=90))["rolled_back"] == []
    answer = await chain.report("s2", 2, judged=40, right=35, wrong=5)
    assert answer["rolled_back"] == [second["id"]]

    shown = await chain.hq.ok("GET", f"/rollouts/{second['id']}")
    assert shown["state"] == "rolled_back" and shown["rolled_back_by"] == "kpis:s2"
    assert "s2" in shown["reason"] and "precision 87.50% is below 92.00%" in shown["reason"]
    assert shown["events"][-1]["detail"]["broken"] == ["precision_low", "false_positives_high"]
    for store in ("s1", "s2"):
        listing = await chain.listing(store)
        assert [p["version"] for p in listing["packages"]] == [1]
        assert listing["rollbacks"] == [{"kind": "module", "name": MODULE, "version": 2, "to_version": 1}]
    assert (await chain.listing("s3"))["rollbacks"] == []  # never had version 2
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=chain.app), base_url="http://a") as c:
        metrics = (await c.get("/metrics")).text
    assert 'storebox_cloud_module_rollbacks_total{by="kpis"} 1.0' in metrics
    assert "storebox_cloud_module_kpi_reports_total 4.0" in metrics

    # a newer version rolled out to s1 ends the rollback there
    chain.publish(module_package(3))
    await chain.hq.ok("POST", "/rollouts", {"name": MODULE, "version": 3, "stores": ["s1"]}, 201)
    assert (await chain.listing("s1"))["rollbacks"] == [] and await chain.module_versions("s1") == [3]
    assert (await chain.listing("s2"))["rollbacks"][0]["to_version"] == 1


async def test_hq_rolls_back_a_promoted_rollout_and_every_store_returns_to_none(chain: Chain) -> None:
    chain.publish(module_package(1, stores_=["s1", "s2", "s3"]))
    rollout = await chain.hq.ok("POST", "/rollouts", {"name": MODULE, "version": 1, "stores": ["s1"]}, 201)
    await chain.report("s1", 1, judged=200, right=199, wrong=1)
    await chain.hq.ok("POST", f"/rollouts/{rollout['id']}/promote")
    assert await chain.module_versions("s3") == [1] and await chain.module_versions("s4") == []

    rolled = await chain.hq.ok("POST", f"/rollouts/{rollout['id']}/rollback", {"reason": "门店反馈误报"})
    assert rolled["state"] == "rolled_back" and rolled["reason"] == "门店反馈误报"
    for store in ("s1", "s2", "s3"):
        listing = await chain.listing(store)
        assert listing["packages"] == []
        assert listing["rollbacks"] == [{"kind": "module", "name": MODULE, "version": 1, "to_version": 0}]
    assert (await chain.listing("s4"))["rollbacks"] == []  # not among the package's stores
    again = await chain.hq.request("POST", f"/rollouts/{rollout['id']}/rollback")
    assert again.status_code == 409 and again.json()["code"] == "rollout_not_active"
    listed = await chain.hq.ok("GET", "/rollouts?state=rolled_back")
    assert [r["id"] for r in listed["items"]] == [rollout["id"]] and listed["next_offset"] is None
    kpis = await chain.hq.ok("GET", f"/kpis?name={MODULE}")
    assert [(k["store"], k["judged"], k["reports"]) for k in kpis["items"]] == [("s1", 200, 1)]


async def test_rollouts_that_cannot_be_made_are_refused_with_a_reason(chain: Chain) -> None:
    async def refused(body: dict[str, Any], status: int, code: str) -> dict[str, Any]:
        answer = await chain.hq.request("POST", "/rollouts", body)
        assert (answer.status_code, answer.json()["code"]) == (status, code), answer.text
        assert answer.json()["message"] and answer.json()["message_en"]
        detail: dict[str, Any] = answer.json()["detail"]
        return detail

    await refused({"name": MODULE, "version": 1}, 404, "rollout_package_unknown")
    chain.publish(module_package(1, stores_=["s1", "s2", "s6"]))
    await refused(
        {"name": MODULE, "version": 1, "thresholds": {"min_decisions": 300}}, 422, "rollout_thresholds_invalid"
    )
    detail = await refused(
        {"name": MODULE, "version": 1, "thresholds": {"precision_min": 0.92345}}, 422, "rollout_thresholds_invalid"
    )
    assert detail["field"] == "precision_min"
    await refused({"name": MODULE, "version": 1, "thresholds": {"precision_min": 1.5}}, 422, "validation_error")
    await refused({"name": MODULE, "version": 1, "stores": ["s1", "nope"]}, 422, "rollout_store_unknown")
    assert (await refused({"name": MODULE, "version": 1, "stores": ["s3"]}, 422, "rollout_store_not_targeted"))[
        "store"
    ] == "s3"
    await refused({"name": MODULE, "version": 1, "stores": []}, 422, "rollout_stores_invalid")
    await refused({"name": MODULE, "version": 1, "stores": ["s1", "s1"]}, 422, "rollout_stores_invalid")
    with chain.engine.begin() as conn:
        conn.execute(stores.update().where(stores.c.id == "s2").values(disabled_at=NOW.isoformat()))
    await refused({"name": MODULE, "version": 1, "stores": ["s2"]}, 422, "rollout_store_disabled")
    await refused({"name": MODULE, "version": 1, "extra": True}, 422, "validation_error")

    made = await chain.hq.ok("POST", "/rollouts", {"name": MODULE, "version": 1}, 201)
    assert made["stores"] == ["s1"]  # s2 is disabled and s6 never synced: fewer than three
    await refused({"name": MODULE, "version": 1}, 409, "rollout_exists")
    chain.publish(module_package(2, stores_=["s6"]))
    assert (await refused({"name": MODULE, "version": 2}, 409, "rollout_in_progress"))["id"] == made["id"]
    await chain.hq.ok("POST", f"/rollouts/{made['id']}/rollback")
    await refused({"name": MODULE, "version": 2}, 422, "rollout_no_stores")  # s6 never synced

    chain.publish(module_package(1, name="other", kpis="kpis: {precision_min: 2}\n"))
    await refused({"name": "other", "version": 1}, 422, "rollout_manifest_invalid")
    assert (await chain.hq.request("GET", "/rollouts/999")).json()["code"] == "rollout_not_found"
    unauthorised = await chain.hq.request("GET", "/rollouts", token="sbhq_wrong")
    assert unauthorised.status_code == 401 and unauthorised.json()["code"] == "hq_auth_invalid"


async def test_a_lower_version_than_one_rolled_out_before_is_refused(chain: Chain) -> None:
    chain.publish(module_package(1))
    chain.publish(module_package(2))
    second = await chain.hq.ok("POST", "/rollouts", {"name": MODULE, "version": 2, "stores": ["s1"]}, 201)
    await chain.hq.ok("POST", f"/rollouts/{second['id']}/rollback")
    answer = await chain.hq.request("POST", "/rollouts", {"name": MODULE, "version": 1, "stores": ["s1"]})
    assert answer.status_code == 409 and answer.json()["code"] == "rollout_version_not_newer"


async def test_the_kpi_endpoint_takes_only_signed_well_formed_reports(chain: Chain) -> None:
    s1 = chain.stores["s1"]
    bad = await s1.post_json("/api/v1/sync/modules/kpis", {"reports": [{"module": MODULE, "version": 1}]})
    assert bad.status_code == 422 and bad.json()["code"] == "module_kpis_invalid"
    assert bad.json()["detail"] == {"report": 1, "field": "judged"}
    with chain.engine.connect() as conn:
        kept = conn.execute(sa.select(rejections.c.store, rejections.c.code)).all()
    assert [tuple(r) for r in kept] == [("s1", "module_kpis_invalid")]
    over = {"module": MODULE, "version": 1, "judged": 5, "right": 4, "wrong": 2, "window": 200}
    answer = await s1.post_json("/api/v1/sync/modules/kpis", {"reports": [over]})
    assert answer.json()["detail"]["field"] == "right"
    unsigned = await StoreSession(chain.app, "s1", register_store(chain.engine, "s7")).post_json(
        "/api/v1/sync/modules/kpis", {"reports": []}
    )
    assert unsigned.status_code == 401
    gzipped = await s1.send_raw("/api/v1/sync/modules/kpis", json.dumps({"reports": [over | {"wrong": 1}]}).encode())
    assert gzipped.status_code == 200 and gzipped.json()["recorded"] == 1
    target = "/api/v1/sync/modules/kpis"
    async with s1.client() as c:
        headers = s1.headers("POST", target, b"not gzip", **{"Content-Encoding": "gzip"})
        broken = await c.post(target, content=b"not gzip", headers=headers)
    assert broken.status_code == 422 and broken.json()["detail"] == {"report": None, "field": "body"}
    # a module without a rollout is recorded too (HQ sees KPIs of every module), and a second report replaces it
    await chain.report("s1", 4, judged=10, right=9, wrong=1, extra_field="ignored")
    await chain.report("s1", 4, judged=12, right=11, wrong=1)
    kpis = await chain.hq.ok("GET", "/kpis?store=s1")
    assert [(k["version"], k["judged"], k["right"], k["reports"]) for k in kpis["items"]] == [
        (1, 5, 4, 1),
        (4, 12, 11, 2),
    ]
    # ratios that contradict the counts are not believed: what HQ keeps comes from the counts
    await chain.report("s1", 4, judged=3, right=3, wrong=0, precision=0.5, false_positive_rate=0.5)
    kpis = await chain.hq.ok("GET", "/kpis?store=s1")
    shown = next(k for k in kpis["items"] if k["version"] == 4)
    assert (shown["judged"], shown["right"]) == (3, 3)
    assert {v for k, v in shown.items() if k in ("precision", "precision_rate")} == {1.0}
    assert {v for k, v in shown.items() if k == "false_positive_rate"} == {0.0}


def test_the_gate_compares_counts_not_rounded_ratios() -> None:
    t = Thresholds(precision_min_bp=9200, false_positive_max_bp=500, window=200, min_decisions=50)

    def codes(judged: int, right: int, wrong: int) -> list[str]:
        return [r["code"] for r in kpi_reasons(Kpis("s1", judged, right, wrong, None, None, 200, None, None), t)]

    assert codes(50, 46, 2) == []  # 92 % and 4 %
    assert codes(50, 45, 2) == ["precision_low"]
    assert codes(100, 95, 6) == ["false_positives_high"]
    assert codes(49, 49, 0) == ["too_few_decisions"]
    assert codes(0, 0, 0) == ["too_few_decisions"]
    assert [r["code"] for r in kpi_reasons(None, t)] == ["kpis_missing"]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=20,
)
REPORT_KEYS = ("module", "version", "judged", "right", "wrong", "precision", "false_positive_rate", "window", "at")
REPORT = st.fixed_dictionaries(
    {},
    optional={
        "module": st.sampled_from([MODULE, "x", "", "Bad Name", "a" * 70]) | JSON,
        "version": st.integers(-2, 2**54) | JSON,
        "judged": st.integers(-1, 10**13) | JSON,
        "right": st.integers(-1, 300) | JSON,
        "wrong": st.integers(-1, 300) | JSON,
        "precision": st.floats(-1, 2) | st.none() | JSON,
        "false_positive_rate": st.floats(-1, 2) | st.none() | JSON,
        "window": st.integers(0, 10**7) | JSON,
        "at": st.text(max_size=50) | st.none() | JSON,
    },
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=200),
        JSON.map(lambda v: json.dumps(v).encode()),
        st.lists(REPORT, max_size=4).map(lambda r: json.dumps({"reports": r}).encode()),
    )
)
def test_any_body_is_parsed_or_refused_with_the_report_and_field(body: bytes) -> None:
    try:
        reports = parse_reports(body)
        assert parse_reports(gzip.compress(body), compressed=True) == reports
    except KpiReportInvalid as err:
        assert err.status == 422 and err.code == "module_kpis_invalid"
        assert err.detail["field"] and err.message and err.message_en
        return
    for r in reports:
        assert isinstance(r, KpiReport) and r.right + r.wrong <= r.judged and r.version >= 1 and r.window >= 1
        for ratio in (r.precision, r.false_positive_rate):
            assert ratio is None or 0 <= ratio <= 1


@settings(max_examples=200)
@given(
    st.one_of(
        st.binary(max_size=100),
        JSON.map(lambda v: json.dumps({"kpis": v}).encode()),  # JSON is YAML
        st.dictionaries(
            st.sampled_from(["precision_min", "false_positive_max", "window", "min_decisions", "judge_after_days"]),
            st.integers(-2, 300_000) | st.floats(-1, 2) | JSON,
        ).map(lambda kpis: json.dumps({"name": MODULE, "kpis": kpis}).encode()),
    )
)
def test_any_manifest_gives_thresholds_in_range_or_a_clear_refusal(raw: bytes) -> None:
    try:
        t = manifest_thresholds({"manifest.yaml": raw})
    except RolloutError as err:
        assert (err.code, err.status) == ("rollout_manifest_invalid", 422) and err.message and err.message_en
        return
    assert 0 <= t.precision_min_bp <= 10_000 and 0 <= t.false_positive_max_bp <= 10_000
    assert 1 <= t.min_decisions <= t.window <= 100_000 and t.source in ("default", "manifest")


@settings(max_examples=100)
@given(st.integers(0, 10**6).flatmap(lambda judged: st.tuples(st.just(judged), st.integers(0, judged))))
def test_a_well_formed_report_reads_back_as_sent(counts: tuple[int, int]) -> None:
    judged, right = counts
    sent = {
        "module": MODULE,
        "version": 3,
        "judged": judged,
        "right": right,
        "wrong": judged - right,
        "window": 200,
        "precision": None,
        "false_positive_rate": None,
        "at": "2026-12-05T09:00:00+00:00",
        "new_field": [1],
    }
    [report] = parse_reports(json.dumps({"reports": [sent]}).encode())
    # the counts read back as sent; the ratios are the counts' (whatever the box sent along with them)
    expected = {
        **{k: sent[k] for k in REPORT_KEYS},
        "precision": right / judged if judged else None,
        "false_positive_rate": (judged - right) / judged if judged else None,
    }
    assert {k: getattr(report, k) for k in REPORT_KEYS} == {k: expected[k] for k in REPORT_KEYS}


def test_the_modules_commands_roll_out_show_promote_and_roll_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    monkeypatch.setenv("STOREBOX_CLOUD_DB_URL", url)
    app = build_app(url, hq_public_key=public_key_hex(KEY))
    engine: sa.Engine = app.state.engine
    for s in ("s1", "s2"):
        register_store(engine, s)
    package_store.publish(engine, module_package(1), public_key=None, now=NOW, by="t")
    package_store.publish(engine, module_package(2), public_key=None, now=NOW, by="t")
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> Any:
        done = runner.invoke(cloud_cli, ["modules", *args])
        assert done.exit_code == code, done.output
        if code == 2:  # a usage error: one line of text
            return done.stderr
        return [json.loads(line) for line in (done.stdout if code == 0 else done.stderr).splitlines() if line]

    [made] = run("rollout", MODULE, "1", "--stores", "s1,s2", "--precision-min", "0.9", "--min-decisions", "10")
    assert made["thresholds"]["precision_min"] == 0.9 and made["stores"] == ["s1", "s2"]
    [refused] = run("promote", str(made["id"]), code=1)
    assert refused["code"] == "rollout_kpis_not_met"
    from cloud_sync.modules.kpis import record_reports

    for s in ("s1", "s2"):
        record_reports(engine, s, [KpiReport(MODULE, 1, 10, 10, 0, 1.0, 0.0, 200, None)], NOW)
    [shown] = run("show", str(made["id"]))
    assert shown["promotable"] is True
    assert run("promote", str(made["id"]))[0]["state"] == "promoted"
    [second] = run("rollout", MODULE, "2", "--stores", "s2")
    assert run("rollback", str(second["id"]), "--reason", "test")[0]["reason"] == "test"
    assert [r["state"] for r in run("list", "--name", MODULE)] == ["rolled_back", "promoted"]
    assert [k["store"] for k in run("kpis")] == ["s1", "s2"]
    assert "state must be one of" in run("list", "--state", "maybe", code=2)
    assert run("show", "99", code=1)[0]["code"] == "rollout_not_found"
    engine.dispose()


def examples() -> dict[str, Any]:
    """The ```json example:<name>``` blocks of docs/canary.md."""
    text = (Path(__file__).parents[2] / "docs" / "canary.md").read_text("utf-8")
    return {m[1]: json.loads(m[2]) for m in re.finditer(r"```json example:([a-z-]+)\n(.*?)```", text, re.DOTALL)}


async def test_the_examples_on_the_canary_page_are_what_the_aggregator_answers(chain: Chain) -> None:
    shown = examples()
    assert set(shown) == {"rollout-request", "rollout-answer", "kpi-report", "promote-refused", "listing"}
    chain.publish(module_package(3))
    answer = await chain.hq.ok("POST", "/rollouts", shown["rollout-request"], 201)
    assert {k: answer[k] for k in shown["rollout-answer"]} == shown["rollout-answer"]

    recorded = await chain.stores["s1"].post_json("/api/v1/sync/modules/kpis", shown["kpi-report"])
    assert recorded.json() == {"store": "s1", "recorded": 1, "rolled_back": []}
    refused = (await chain.hq.request("POST", f"/rollouts/{answer['id']}/promote")).json()
    expected = shown["promote-refused"]
    assert {k: refused[k] for k in ("code", "message", "message_en")} == {
        k: expected[k] for k in ("code", "message", "message_en")
    }
    codes = [
        {"store": s["store"], "reasons": [{"code": r["code"]} for r in s["reasons"]]}
        for s in refused["detail"]["stores"]
    ]
    assert codes == expected["detail"]["stores"]

    broke = await chain.report("s2", 3, judged=60, right=48, wrong=3)
    assert broke["rolled_back"] == [answer["id"]]
    reason = (await chain.hq.ok("GET", f"/rollouts/{answer['id']}"))["reason"]
    assert "store s2 broke the KPIs over 60 judged decisions: precision 80.00% is below 92.00%" in reason
    assert await chain.listing("s2") == shown["listing"]


def test_two_replicas_rolling_out_the_same_module_at_once_leave_one_pilot(chain: Chain) -> None:
    chain.publish(module_package(1))
    chain.publish(module_package(2))
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def roll_out(version: int) -> None:
        start.wait()
        try:
            create_rollout(chain.engine, MODULE, version, pilot_stores=["s1"], thresholds=None, now=NOW, by="t")
            outcomes.append("made")
        except RolloutError as err:
            outcomes.append(err.code)

    threads = [threading.Thread(target=roll_out, args=(v,)) for v in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == ["made", "rollout_in_progress"]
    with chain.engine.connect() as conn:
        assert [r["state"] for r in list_rollouts(conn)["items"]] == ["piloting"]
