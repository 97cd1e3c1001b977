"""HQ packages end to end: HQ uploads to a real aggregator (uvicorn on 127.0.0.1, SQLite and PostgreSQL), a box
pulls, verifies and installs, rolls back, and the aggregator learns what each store has in force."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import CollectorRegistry

from cloud_sync.hq.auth import add_token
from cloud_sync.packages import store as package_store
from edge.sync import packages as pk
from edge.sync.client import SyncClient
from edge.sync.keys import load_key
from edge.sync.service import PullContext
from tests.edge.sync.conftest import Aggregator, Box, Served
from tests.edge.sync.packaging import HQ_KEY, prices

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def hq_token(aggregator: Aggregator) -> str:
    with aggregator.engine.begin() as conn:
        return add_token(conn, "pricing", datetime.now(UTC))[1]


async def upload(served: Served, token: str, data: bytes) -> httpx.Response:
    async with httpx.AsyncClient(base_url=served.url) as http:
        return await http.post(
            "/api/v1/hq/packages",
            content=data,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/zip"},
        )


def status(aggregator: Aggregator) -> list[dict[str, Any]]:
    with aggregator.engine.connect() as conn:
        return package_store.store_status(conn)


def prices_of(box: Box) -> dict[str, int]:
    return {sku: int(p) for sku, p in box.read("SELECT sku, price_fen FROM items ORDER BY sku")}


async def pull(box: Box, served: Served) -> None:
    from cloud_sync.packages.format import public_key_hex

    settings = box.settings(served.url, hq_public_key=public_key_hex(HQ_KEY))
    client = SyncClient(settings, lambda: load_key(settings), box.clock)
    try:
        await pk.pull(client, PullContext(settings, box.writer, box.reader, box.clock, CollectorRegistry()))
    finally:
        await client.aclose()


async def test_hq_publishes_the_box_installs_rolls_back_and_reports(
    aggregator: Aggregator, served: Served, box: Box
) -> None:
    box.set_key(aggregator.key)
    token = hq_token(aggregator)
    answer = await upload(served, token, prices(1, "sku,price\nCOLA,3.80\n"))
    assert answer.status_code == 201, answer.text
    assert (await upload(served, token, prices(2, "sku,price\nCOLA,9.99\n", stores=["store-777"]))).status_code == 201
    stale = await upload(served, token, prices(1, "sku,price\nCOLA,1.00\n"))
    assert stale.status_code == 409 and stale.json()["code"] == "package_version_not_newer"
    assert (await upload(served, "wrong", prices(3, "sku,price\nCOLA,1.00\n"))).status_code == 401

    await pull(box, served)
    assert prices_of(box)["COLA"] == 380
    assert [(s["store"], s["status"], s["in_force"]) for s in status(aggregator)] == [("store-001", "installed", 1)]

    assert (await upload(served, token, prices(3, "sku,price\nCOLA,4.20\n"))).status_code == 201
    await pull(box, served)
    assert prices_of(box)["COLA"] == 420

    loop = asyncio.get_running_loop()
    settings = box.settings(served.url)
    result = await asyncio.to_thread(
        pk.rollback_package,
        settings,
        pk.writer_transact(box.writer, loop),
        "price_list",
        "prices",
        box.clock,
        actor="manager",
        source="api",
    )
    assert result["to_version"] == 1 and prices_of(box)["COLA"] == 380
    await pull(box, served)  # reports the rollback, and does not install v3 again
    assert prices_of(box)["COLA"] == 380
    assert [(s["status"], s["in_force"]) for s in status(aggregator)] == [("rolled_back", 1)]
    assert all(
        r[0] is not None for r in box.read("SELECT reported_at FROM package_history WHERE remote_id IS NOT NULL")
    )


async def test_a_package_not_signed_by_hq_is_refused_by_the_box_and_reported(
    aggregator: Aggregator, served: Served, box: Box
) -> None:
    box.set_key(aggregator.key)
    forged = prices(1, "sku,price\nCOLA,0.01\n", key=Ed25519PrivateKey.generate())
    package_store.publish(aggregator.engine, forged, public_key=None, now=datetime.now(UTC), by="test")
    await pull(box, served)
    assert prices_of(box)["COLA"] == 350
    [row] = status(aggregator)
    assert (row["status"], row["code"]) == ("failed", "package_bad_signature")
