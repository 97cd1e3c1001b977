"""A small chain at a real aggregator, fed through the store protocol (signed batches, C's ingest): company co-1
with stores s1 and s2, company co-2 with s3, and an HQ token. The expected figures in the tests are worked out
by hand from these documents."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI

from cloud_sync.hq.auth import add_token
from tests.cloud_sync.aggregator import StoreSession, build_app, register_store, rows_of, sale


def receipt(doc_id: int, sku: str, qty: int, value: int, day: str) -> dict[str, Any]:
    doc = sale(doc_id, sku, qty, 0, value, day)
    doc["document"].update(type="receipt", doc_no=f"RC-{doc_id}", gross_fen=value, tax_fen=0, cost_fen=value)
    doc["lines"][0].update(price_fen=0, gross_fen=value, tax_fen=0)
    doc["moves"] = [[1, sku, "floor", "", qty, value]]
    doc["voucher"]["lines"] = [["1405", value, 0], ["2202", 0, value]]
    return doc


def customer_return(doc_id: int, sku: str, qty: int, price: int, cost: int, day: str) -> dict[str, Any]:
    doc = sale(doc_id, sku, qty, price, cost, day)
    doc["document"].update(type="customer_return", doc_no=f"CR-{doc_id}")
    doc["moves"] = [[1, sku, "floor", "", qty, cost]]
    doc["voucher"]["lines"] = [[a, c, d] for a, d, c in doc["voucher"]["lines"]]
    return doc


def transfer_to_transit(doc_id: int, sku: str, qty: int, value: int, day: str) -> dict[str, Any]:
    doc = copy.deepcopy(sale(doc_id, sku, qty, 0, value, day))
    doc["document"].update(type="transfer_out", doc_no=f"TO-{doc_id}", to_location="transit", gross_fen=0, tax_fen=0)
    doc["moves"] = [[1, sku, "floor", "", -qty, -value], [1, sku, "transit", "", qty, value]]
    doc["voucher"] = None
    return doc


ITEMS = {
    "kind": "state.items",
    "payload": {
        "items": [
            {"sku": "COLA", "name": "可乐", "name_en": "Cola", "category": "drinks", "category_name": "饮料"},
            {"sku": "CHIPS", "name": "薯片", "name_en": "Chips", "category": "snacks", "category_name": "零食"},
        ]
    },
}


def compliance(frozen_supplier: bool) -> dict[str, Any]:
    return {
        "kind": "state.compliance",
        "payload": {
            "suppliers": [
                {
                    "id": "sup-milk",
                    "name": "光明乳业",
                    "frozen": frozen_supplier,
                    "freeze_reason": "证照过期" if frozen_supplier else None,
                    "frozen_at": "2026-12-01T08:00:00+00:00" if frozen_supplier else None,
                    "papers": [
                        {"kind": "license", "name": "食品经营许可证", "number": "JY1", "expires_on": "2026-12-20"},
                        {"kind": "tax", "name": "税务登记", "number": "T1", "expires_on": "2028-01-01"},
                    ],
                    "next_expiry": "2026-12-20",
                },
                {
                    "id": "sup-bread",
                    "name": "面包坊",
                    "frozen": False,
                    "papers": [{"kind": "license", "name": "许可证", "number": "B1", "expires_on": "2027-06-30"}],
                    "next_expiry": "2027-06-30",
                },
            ]
        },
    }


def numbered(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "seq": i} for i, r in enumerate(rows, start=1)]


S1 = [
    receipt(1, "COLA", 100, 40000, "2026-11-20"),
    receipt(2, "CHIPS", 50, 25000, "2026-11-20"),
    sale(3, "COLA", 2, 300, 800, "2026-11-30"),
    sale(4, "COLA", 3, 300, 1200, "2026-12-01"),
    sale(5, "CHIPS", 1, 650, 500, "2026-12-01"),
    customer_return(6, "COLA", 1, 300, 400, "2026-12-02"),
    transfer_to_transit(7, "COLA", 5, 2000, "2026-12-03"),
]
S2 = [receipt(1, "COLA", 10, 4500, "2026-12-01"), sale(2, "COLA", 4, 300, 1800, "2026-12-01")]
S3 = [sale(1, "COLA", 1, 500, 100, "2026-12-01")]

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def build_chain(db_url: str) -> tuple[FastAPI, str]:
    """The aggregator app with the chain's facts ingested, and an HQ token."""
    app = build_app(db_url)
    app.state.clock = lambda: NOW
    engine = app.state.engine
    plan = {
        "s1": ("co-1", numbered([ITEMS, compliance(True), *rows_of(S1)])),
        "s2": ("co-1", numbered([ITEMS, compliance(False), *rows_of(S2)])),
        "s3": ("co-2", numbered(rows_of(S3))),
    }
    for store, (company, rows) in plan.items():
        key = register_store(engine, store, company)
        session = StoreSession(app, store, key)
        # Signed with the real clock (the window is checked against it); answers stamped by the fixed one.
        app.state.clock = lambda: datetime.now(UTC)
        response = asyncio.run(session.send_batch(1, rows))
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "applied"
    app.state.clock = lambda: NOW
    with engine.begin() as conn:
        _, token = add_token(conn, "tests", NOW)
    return app, token


class HqClient:
    """HTTP requests to the aggregator app in-process (httpx over ASGI), with or without the HQ token."""

    def __init__(self, app: FastAPI, token: str | None) -> None:
        self.app = app
        self.token = token

    def get(self, path: str, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> Any:
        auth = {"Authorization": f"Bearer {self.token}"} if self.token else {}

        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://aggregator") as client:
                return await client.get(path, params=params, headers={**auth, **(headers or {})})

        return asyncio.run(go())
