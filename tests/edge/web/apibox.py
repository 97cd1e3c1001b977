"""A real box for API tests: a temp SQLite file with master data and one user per role, the real
ledger writer, and the API over real HTTP (httpx over ASGI in-process, or uvicorn on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from edge.config import Settings
from edge.db import connect, migrate
from edge.finance.compliance import make_purchase_order_guard
from edge.finance.rulebook import rule_book
from edge.finance.setup import prepare_books
from edge.ledger.masterdata import add_item, add_location, add_store, add_supplier
from edge.ledger.posting import PostingContext
from edge.security.roles import Role
from edge.security.tokens import issue_token
from edge.security.users import create_user
from edge.web.api import create_api
from edge.web.deps import ApiDeps
from edge.writer import LedgerWriter

SECRET = b"test-secret-" * 6
T0 = datetime(2024, 6, 1, 2, 0, tzinfo=UTC)
COLA_PIECE = "6901234567892"
COLA_CASE = "6901234567809"
MILK_BARCODE = "6909876543212"
SEEDED_CODES = frozenset({"COLA", "MILK", "RICE", COLA_PIECE, COLA_CASE, MILK_BARCODE})
TABLES_WRITTEN_BY_POSTING = ("documents", "document_lines", "stock_moves", "balances", "vouchers", "outbox", "audit")


def password_of(role: Role | str) -> str:
    return f"{Role(role).value}-password"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def seed(path: Path) -> None:
    conn = connect(path)
    try:
        migrate(conn)
        conn.execute("BEGIN")
        prepare_books(conn)
        add_store(conn, "store-001", "本店 Home", is_local=True)
        add_store(conn, "store-002", "邻店 Neighbour")
        add_location(conn, "floor", "卖场", "sales floor", "floor", "ambient")
        add_location(conn, "backroom", "后仓", "back room", "backroom", "ambient")
        add_location(conn, "cold", "冷藏库", "cold room", "cold", "chilled")
        add_location(conn, "transit", "在途", "in transit", "transit", "ambient")
        add_item(
            conn,
            "COLA",
            "可乐 330ml",
            name_en="Cola 330ml",
            base_unit="piece",
            price_fen=350,
            cost_fen=226,
            units={"case": 24},
            barcodes={COLA_PIECE: "piece", COLA_CASE: "case"},
        )
        add_item(
            conn,
            "MILK",
            "鲜牛奶 1L",
            name_en="Fresh milk 1L",
            base_unit="bottle",
            storage_class="chilled",
            shelf_life_days=7,
            price_fen=1290,
            cost_fen=900,
            vat_rate_bp=900,
            barcodes={MILK_BARCODE: "bottle"},
        )
        add_item(conn, "RICE", "大米 5kg", base_unit="bag", price_fen=4990, cost_fen=3600, vat_rate_bp=900)
        add_supplier(conn, "sup-1", "华润饮料", credit_code="91310000MA1FL0001R")
        for role in Role:
            create_user(conn, role.value, password_of(role), role, f"测试{role.value}")
        conn.execute("COMMIT")
    finally:
        conn.close()


@dataclass
class Box:
    """One running API over its own database."""

    db_path: Path
    clock: Clock
    writer: LedgerWriter
    deps: ApiDeps
    app: FastAPI
    client: httpx.AsyncClient
    tokens: dict[Role, str] = field(default_factory=dict)

    def auth(self, role: Role | str) -> dict[str, str]:
        role = Role(role)
        if role not in self.tokens:
            issued = issue_token(SECRET, role.value, role, now=self.clock(), ttl=timedelta(hours=8))
            self.tokens[role] = issued.access_token
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def count(self, table: str) -> int:
        conn = connect(self.db_path, readonly=True)
        try:
            return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
        finally:
            conn.close()

    def counts(self) -> dict[str, int]:
        return {table: self.count(table) for table in TABLES_WRITTEN_BY_POSTING}

    async def post(
        self, doc_type: str, body: Any, *, role: Role | str = Role.MANAGER, key: str | None = None, **headers: str
    ) -> httpx.Response:
        sent = {**self.auth(role), **headers}
        if key is not None:
            sent["Idempotency-Key"] = key
        return await self.client.post(f"/api/v1/documents/{doc_type}", json=body, headers=sent)

    async def receive(self, code: str, qty: int, *, price_fen: int = 226, key: str | None = None, **line: Any) -> int:
        response = await self.post(
            "receipt",
            {"counterparty": "sup-1", "lines": [{"code": code, "qty": qty, "price_fen": price_fen, **line}]},
            key=key or f"receive-{code}-{qty}-{time.monotonic_ns()}",
        )
        assert response.status_code == 201, response.text
        return int(response.json()["document_id"])


def build_deps(db_path: Path, clock: Clock, writer: LedgerWriter, **overrides: Any) -> ApiDeps:
    values: dict[str, Any] = {
        "settings": Settings(data_dir=db_path.parent),
        "writer": writer,
        "open_reader": lambda: connect(db_path, readonly=True),
        "token_secret": SECRET,
        "metrics_registry": CollectorRegistry(),
        "clock": clock,
        "health": lambda: {"writer": writer.running},
    }
    values.update(overrides)
    return ApiDeps(**values)


def make_writer(db_path: Path, clock: Clock) -> LedgerWriter:
    """The writer as the box builds it: the company's rule book and the purchase-order compliance guard."""
    rules = rule_book()
    guards = (make_purchase_order_guard(Settings().po_papers_required_above_yuan * 100),)
    return LedgerWriter(
        db_path,
        context=lambda: PostingContext(now=clock(), business_date=clock().date(), rules=rules, guards=guards),
        batch_max=64,
    )


class ServedBox:
    """The API served by uvicorn on 127.0.0.1 in a thread of its own, with its own event loop."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.clock = Clock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: uvicorn.Server | None = None
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="api-under-test", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self.failure = exc

    async def _serve(self) -> None:
        writer = make_writer(self.db_path, self.clock)
        writer.start()
        app = create_api(build_deps(self.db_path, self.clock, writer))
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        self.server = uvicorn.Server(config)
        try:
            await self.server.serve(sockets=[self.sock])
        finally:
            await writer.close()

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not (self.server is not None and self.server.started):
            if self.failure is not None or not self.thread.is_alive():
                raise RuntimeError(f"the API did not start: {self.failure!r}")
            if time.monotonic() > deadline:
                raise TimeoutError("the API did not start within 10 s")
            time.sleep(0.01)

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    def counts(self) -> dict[str, int]:
        conn = connect(self.db_path, readonly=True)
        try:
            return {t: int(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]) for t in TABLES_WRITTEN_BY_POSTING}
        finally:
            conn.close()

    def auth(self, role: Role | str) -> dict[str, str]:
        role = Role(role)
        token = issue_token(SECRET, role.value, role, now=self.clock(), ttl=timedelta(hours=8)).access_token
        return {"Authorization": f"Bearer {token}"}


def assert_error_shape(response: httpx.Response) -> dict[str, Any]:
    """The response is a JSON error {code, message, message_en, detail} and nothing else."""
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert set(body) == {"code", "message", "message_en", "detail"}, body
    assert isinstance(body["code"], str) and body["code"]
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["message_en"], str) and body["message_en"]
    assert isinstance(body["detail"], dict)
    return dict(body)


def readonly(db_path: Path) -> sqlite3.Connection:
    return connect(db_path, readonly=True)
