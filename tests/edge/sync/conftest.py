"""Fixtures of the box-side sync tests: a real aggregator (`cloud_sync.app.create_app` over `cloud_db_url`, on
SQLite and PostgreSQL) with a registered store, over ASGI in-process or served by uvicorn on 127.0.0.1, and a box
(its own SQLite file, the real ledger writer) that posts documents."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from cloud_sync.facts import store_totals
from edge.config import Settings
from edge.db import connect
from edge.ledger.commands import DocType, Line, PostDocument, ReverseDocument
from edge.sync.keys import write_key
from edge.sync.protocol import StoreKey
from edge.sync.service import SyncService
from edge.sync.totals import ledger_totals
from edge.writer import LedgerWriter
from tests.cloud_sync.aggregator import build_app, register_store
from tools.box_process import free_port

STORE = "store-001"
RETURN_REASON = "quality"


def seed(path: Path) -> None:
    """Master data of a store (the same as tests/edge/web/apibox.py's, without its users: this package does not
    import the web layer, so a broken route elsewhere does not stop the sync tests)."""
    from edge.db import migrate
    from edge.finance.setup import prepare_books
    from edge.ledger.masterdata import add_item, add_location, add_store, add_supplier

    conn = connect(path)
    try:
        migrate(conn)
        conn.execute("BEGIN")
        prepare_books(conn)
        add_store(conn, STORE, "本店 Home", is_local=True)
        add_store(conn, "store-002", "邻店 Neighbour")
        for code, name, name_en, kind, storage in (
            ("floor", "卖场", "sales floor", "floor", "ambient"),
            ("backroom", "后仓", "back room", "backroom", "ambient"),
            ("cold", "冷藏库", "cold room", "cold", "chilled"),
            ("transit", "在途", "in transit", "transit", "ambient"),
        ):
            add_location(conn, code, name, name_en, kind, storage)
        add_item(conn, "COLA", "可乐 330ml", name_en="Cola 330ml", base_unit="piece", price_fen=350, cost_fen=226)
        add_item(conn, "RICE", "大米 5kg", base_unit="bag", price_fen=4990, cost_fen=3600, vat_rate_bp=900)
        add_supplier(conn, "sup-1", "华润饮料", credit_code="91310000MA1FL0001R")
        conn.execute("COMMIT")
    finally:
        conn.close()


def make_writer(db_path: Path, clock: Any) -> LedgerWriter:
    from edge.finance.compliance import make_purchase_order_guard
    from edge.finance.rulebook import rule_book
    from edge.ledger.posting import PostingContext

    rules = rule_book()
    guards = (make_purchase_order_guard(Settings().po_papers_required_above_yuan * 100),)
    return LedgerWriter(
        db_path,
        context=lambda: PostingContext(now=clock(), business_date=clock().date(), rules=rules, guards=guards),
        batch_max=64,
    )


class RealClock:
    """Real time plus an offset a test sets (a box whose clock is hours off)."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def __call__(self) -> datetime:
        return datetime.fromtimestamp(time.time() + self.offset_s, UTC)


@dataclass
class Aggregator:
    app: FastAPI
    key: StoreKey

    @property
    def engine(self) -> sa.Engine:
        engine: sa.Engine = self.app.state.engine
        return engine

    def transport(self) -> httpx.AsyncBaseTransport:
        return httpx.ASGITransport(app=self.app)

    def totals(self, store: str = STORE) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return store_totals(conn, store)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def aggregator(cloud_db_url: str) -> Iterator[Aggregator]:
    app = build_app(cloud_db_url)
    key = register_store(app.state.engine, STORE)
    yield Aggregator(app, key)
    app.state.engine.dispose()


class Served:
    """An ASGI app under uvicorn on 127.0.0.1:`port` in a thread of its own; `start()` again after `stop()`."""

    def __init__(self, app: FastAPI, port: int | None = None) -> None:
        self.app = app
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="aggregator-under-test", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the aggregator did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=15)


@pytest.fixture
def served(aggregator: Aggregator) -> Iterator[Served]:
    server = Served(aggregator.app)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sync_template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sync-template") / "storebox.db"
    seed(path)
    return path


class Box:
    """A store box: its own database, the real writer, posting helpers, and sync services built on demand."""

    def __init__(self, data_dir: Path, template: Path, template_seed: Any = None) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        self.db_path = data_dir / "storebox.db"
        if template_seed is not None:
            template_seed(self.db_path)  # another seed (the API tests' one, with a user per role)
        else:
            shutil.copyfile(template, self.db_path)
        self.clock = RealClock()
        self.writer: LedgerWriter = make_writer(self.db_path, self.clock)
        self._n = 0

    def settings(self, url: str = "http://aggregator", **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": self.data_dir,
            "store_id": STORE,
            "sync_url": url,
            "sync_interval_seconds": 0.2,
            "sync_backoff_max_seconds": 1.0,
            "sync_heartbeat_seconds": 3600,
            "sync_batch_rows": 50,
            "sync_pull_interval_seconds": 3600,
        }
        values.update(overrides)
        return Settings(**values)

    def set_key(self, key: StoreKey) -> None:
        write_key(self.data_dir / "sync.key", key)

    def service(
        self, url: str = "http://aggregator", *, transport: httpx.AsyncBaseTransport | None = None, **overrides: Any
    ) -> SyncService:
        return SyncService(
            self.settings(url, **overrides),
            self.writer,
            self.reader,
            self.clock,
            CollectorRegistry(),
            transport=transport,
        )

    def reader(self) -> Any:
        return connect(self.db_path, readonly=True)

    def read(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        conn = self.reader()
        try:
            return [tuple(r) for r in conn.execute(sql, args).fetchall()]
        finally:
            conn.close()

    def totals(self) -> dict[str, Any]:
        conn = self.reader()
        try:
            return ledger_totals(conn)
        finally:
            conn.close()

    def _key(self) -> str:
        self._n += 1
        return f"sync-test-{self._n}"

    async def receive(self, code: str, qty: int, price_fen: int = 226) -> int:
        command = PostDocument(
            self._key(), DocType.RECEIPT, (Line(code, qty, price_fen=price_fen),), counterparty="sup-1"
        )
        return await self._posted(command)

    async def sell(self, code: str, qty: int) -> int:
        command = PostDocument(self._key(), DocType.SALE, (Line(code, qty),), payment="cash")
        return await self._posted(command)

    async def customer_return(self, sale_id: int, code: str, qty: int) -> int:
        command = PostDocument(
            self._key(),
            DocType.CUSTOMER_RETURN,
            (Line(code, qty),),
            payment="cash",
            ref_id=sale_id,
            reason=RETURN_REASON,
            reason_text="盒子压坏了",
        )
        return await self._posted(command)

    async def _posted(self, command: Any) -> int:
        result = await self.writer.post(command)
        assert result.ok, result
        return int(result.document_id or 0)

    async def reverse(self, document_id: int) -> int:
        return await self._posted(ReverseDocument(self._key(), document_id, reason_text="测试"))

    async def trade(self, rounds: int) -> None:
        """Receipts, sales, a customer return now and then, reversals of both: every total moves."""
        for n in range(rounds):
            receipt = await self.receive("COLA", 24 + n % 5, price_fen=226 + n % 3)
            await self.receive("RICE", 3, price_fen=3600)
            sale = await self.sell("COLA", 5 + n % 4)
            rice = await self.sell("RICE", 1)
            if n % 5 == 2:
                returned = await self.customer_return(rice, "RICE", 1)
                if n % 10 == 2:
                    await self.reverse(returned)
            if n % 7 == 3:
                await self.reverse(sale)
            if n % 11 == 5:
                await self.reverse(receipt)


@pytest.fixture
async def box(tmp_path: Path, sync_template_db: Path) -> AsyncIterator[Box]:
    made = Box(tmp_path / "box", sync_template_db)
    made.writer.start()
    yield made
    await made.writer.close()


async def until(check: Any, timeout: float = 30.0, what: str = "condition") -> None:
    """Poll `check()` (sync or async) until it is true, failing after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if loop.time() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.02)
