"""A real aggregator for tests: `create_app` over a database URL, a registered store with its key, and signed
requests over real HTTP (httpx over ASGI in-process, or uvicorn on 127.0.0.1 for boxes in other tasks)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import sqlalchemy as sa
from fastapi import FastAPI

from cloud_sync.app import create_app
from cloud_sync.auth import add_key
from cloud_sync.config import CloudSettings
from cloud_sync.tables import companies, stores
from edge.sync.protocol import StoreKey, batch_body, encode_body, sign_request


def register_store(engine: sa.Engine, store: str, company: str = "co-1", **extra: Any) -> StoreKey:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        if not conn.execute(sa.select(companies.c.id).where(companies.c.id == company)).first():
            conn.execute(companies.insert().values(id=company, name=f"公司 {company}"))
        conn.execute(
            stores.insert().values(id=store, name=f"门店 {store}", company=company, created_at=now.isoformat(), **extra)
        )
        return add_key(conn, store, now)


def build_app(db_url: str, **settings: Any) -> FastAPI:
    return create_app(CloudSettings(db_url=db_url, **settings))


@dataclass
class StoreSession:
    """Signed requests of one store to an aggregator app (in-process HTTP)."""

    app: FastAPI
    store: str
    key: StoreKey
    skew_s: int = 0

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://aggregator")

    def headers(self, method: str, target: str, body: bytes, **extra: str) -> dict[str, str]:
        stamp = int(datetime.now(UTC).timestamp()) + self.skew_s
        return {**sign_request(self.key, self.store, method, target, body, stamp), **extra}

    async def send_raw(self, target: str, raw: bytes) -> httpx.Response:
        body = encode_body(raw)
        async with self.client() as c:
            return await c.post(
                target, content=body, headers=self.headers("POST", target, body, **{"Content-Encoding": "gzip"})
            )

    async def send_batch(self, seq: int, rows: list[dict[str, Any]], query: str = "") -> httpx.Response:
        raw = batch_body(
            self.store,
            seq,
            [
                (
                    r["seq"],
                    r["kind"],
                    r.get("created_at", "2026-12-05T00:00:00+00:00"),
                    r.get("document_id"),
                    json.dumps(r["payload"], ensure_ascii=False, separators=(",", ":")),
                )
                for r in rows
            ],
        )
        return await self.send_raw("/api/v1/sync/batches" + query, raw)

    async def get(self, target: str) -> httpx.Response:
        async with self.client() as c:
            return await c.get(target, headers=self.headers("GET", target, b""))

    async def post_json(self, target: str, value: Any) -> httpx.Response:
        body = json.dumps(value).encode()
        async with self.client() as c:
            return await c.post(
                target, content=body, headers=self.headers("POST", target, body, **{"Content-Type": "application/json"})
            )


def sale(
    doc_id: int, sku: str = "COLA", qty: int = 2, price: int = 300, cost: int = 400, day: str = "2026-12-05"
) -> dict[str, Any]:
    """A `document.posted` payload of a one-line sale, shaped like the ledger writes it."""
    gross = qty * price
    tax = round(gross * 13 / 113)
    return {
        "document": {
            "id": doc_id,
            "doc_no": f"SA-{doc_id}",
            "type": "sale",
            "command_key": f"k{doc_id}",
            "posted_at": f"{day}T02:00:00+00:00",
            "business_date": day,
            "actor": "clerk",
            "device": None,
            "location": "floor",
            "to_location": None,
            "counterparty": None,
            "ref_id": None,
            "reverses_id": None,
            "reason": None,
            "reason_text": None,
            "note": None,
            "payment": "cash",
            "gross_fen": gross,
            "tax_fen": tax,
            "cost_fen": cost,
        },
        "lines": [
            {
                "line_no": 1,
                "sku": sku,
                "unit": "个",
                "qty": qty,
                "qty_base": qty,
                "price_fen": price,
                "gross_fen": gross,
                "tax_fen": tax,
                "lot": None,
                "location": "floor",
            }
        ],
        "moves": [[1, sku, "floor", "", -qty, -cost]],
        "voucher": {
            "voucher_no": f"记-{doc_id}",
            "rule_version": "SE",
            "tax_trusted": False,
            "lines": [
                ["1001", gross, 0],
                ["5001", 0, gross - tax],
                ["22210102", 0, tax],
                ["5401", cost, 0],
                ["1405", 0, cost],
            ],
        },
    }


def rows_of(payloads: list[dict[str, Any]], first_seq: int = 1) -> list[dict[str, Any]]:
    return [
        {"seq": first_seq + i, "kind": "document.posted", "document_id": p["document"]["id"], "payload": p}
        for i, p in enumerate(payloads)
    ]
