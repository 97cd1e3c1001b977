"""The aggregator app: health, metrics per app, JSON errors, the settings, and a store's totals endpoint."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI

from cloud_sync.config import CloudConfigError, load_cloud_settings
from cloud_sync.db import create_engine
from edge.sync.protocol import SERVER_TIME_HEADER
from tests.cloud_sync.aggregator import StoreSession, build_app, register_store, rows_of, sale


def get(app: FastAPI, path: str) -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://aggregator") as c:
            return await c.get(path)

    return asyncio.run(go())


def test_health_checks_the_database(cloud_db_url: str) -> None:
    app = build_app(cloud_db_url)
    answer = get(app, "/health")
    assert answer.status_code == 200
    assert answer.json()["database"] is True
    app.state.engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/gone?connect_timeout=2")
    down = get(app, "/health")
    assert down.status_code == 503
    assert down.json()["database"] is False


def test_metrics_are_per_app_and_count_batches(cloud_db_url: str) -> None:
    first, second = build_app(cloud_db_url), build_app(cloud_db_url)
    session = StoreSession(first, "s1", register_store(first.state.engine, "s1"))
    assert asyncio.run(session.send_batch(1, rows_of([sale(1)]))).status_code == 200
    text = get(first, "/metrics").text
    assert 'storebox_cloud_batches_total{status="applied"} 1.0' in text
    assert "storebox_cloud_rows_total 1.0" in text
    assert 'status="applied"' not in get(second, "/metrics").text


def test_unknown_paths_answer_json_errors_with_the_server_time(cloud_db_url: str) -> None:
    answer = get(build_app(cloud_db_url), "/api/v1/nothing-here")
    assert answer.status_code == 404
    assert answer.json()["code"] == "not_found"
    assert answer.json()["message"] and answer.json()["message_en"]
    assert SERVER_TIME_HEADER in answer.headers


def test_a_store_reads_its_totals(cloud_db_url: str) -> None:
    app = build_app(cloud_db_url)
    session = StoreSession(app, "s1", register_store(app.state.engine, "s1"))
    other = StoreSession(app, "s2", register_store(app.state.engine, "s2"))
    asyncio.run(session.send_batch(1, rows_of([sale(1, qty=2, price=300, cost=400)])))
    totals = asyncio.run(session.get("/api/v1/sync/totals")).json()
    assert totals == {
        "documents": 1,
        "stock": {"qty": -2, "value_fen": -400},
        "stock_lines": {"COLA|floor|": [-2, -400]},
        "sales": {"qty": 2, "gross_fen": 600, "tax_fen": 69, "cost_fen": 400},
        "gl": {"1001": [600, 0], "1405": [0, 400], "22210102": [0, 69], "5001": [0, 531], "5401": [400, 0]},
    }
    assert asyncio.run(other.get("/api/v1/sync/totals")).json()["documents"] == 0


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"STOREBOX_CLOUD_PORT": "70000"}, "STOREBOX_CLOUD_PORT"),
        ({"STOREBOX_CLOUD_KEY_GRACE_HOURS": "-1"}, "STOREBOX_CLOUD_KEY_GRACE_HOURS"),
        ({"STOREBOX_CLOUD_LOG_LEVEL": "LOUD"}, "STOREBOX_CLOUD_LOG_LEVEL"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], name: str) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(CloudConfigError) as bad:
        load_cloud_settings()
    assert str(bad.value).startswith(name + ":")
    assert "\n" not in str(bad.value)


def test_settings_have_pilot_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DB_URL", "HOST", "PORT", "KEY_GRACE_HOURS", "DATA_DIR"):
        monkeypatch.delenv(f"STOREBOX_CLOUD_{name}", raising=False)
    s = load_cloud_settings()
    assert (s.db_url, s.host, s.port, s.key_grace_hours) == ("sqlite:///var-cloud/cloud.db", "127.0.0.1", 8090, 24)
    assert s.packages_max_bytes == 256 * 2**20
    assert s.hq_public_key is None
