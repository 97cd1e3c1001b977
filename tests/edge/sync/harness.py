"""Real parts for sync tests: the aggregator as its own process (`python -m cloud_sync serve`, killable), a TCP
proxy between box and aggregator whose wire can be cut, and a box (its own SQLite file, the real ledger writer,
the real SyncService) whose clock can be set hours off."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from edge.config import Settings
from edge.db import connect
from edge.ledger.commands import DocType, Line, PostDocument, ReverseDocument
from edge.sync.keys import write_key
from edge.sync.protocol import parse_store_key
from edge.sync.service import SyncService
from edge.sync.totals import ledger_totals
from tests.edge.web.apibox import make_writer, seed
from tools.box_process import free_port

ROOT = Path(__file__).resolve().parents[3]


def wait_until(check: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout} s")
        time.sleep(0.05)


class AggregatorProcess:
    """`python -m cloud_sync serve` on 127.0.0.1:port over `db_url`; start, kill -9, start again."""

    def __init__(self, db_url: str, workdir: Path) -> None:
        self.db_url = db_url
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = workdir / "aggregator.log"

    def env(self) -> dict[str, str]:
        return {**os.environ, "STOREBOX_CLOUD_DB_URL": self.db_url, "STOREBOX_CLOUD_LOG_LEVEL": "WARNING"}

    def cli(self, *args: str) -> Any:
        done = subprocess.run(
            [sys.executable, "-m", "cloud_sync", *args], env=self.env(), cwd=ROOT, capture_output=True, timeout=60
        )
        assert done.returncode == 0, done.stderr.decode()
        return json.loads(done.stdout.decode().strip().splitlines()[-1])

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cloud_sync", "serve", "--port", str(self.port)],
                env=self.env(),
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._healthy, 60, "aggregator health")

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"aggregator exited: {self.log.read_text(errors='replace')[-2000:]}")
        try:
            return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown, whatever was in flight is cut."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class CuttableProxy:
    """A TCP proxy on 127.0.0.1 in the test's event loop; `cut()` drops every connection and resets new ones.

    It keeps listening while cut: a closed port in the ephemeral range can be taken by a client's own retries
    (TCP self-connect), and the proxy could not listen there again."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: asyncio.Server | None = None
        self.connections: set[asyncio.StreamWriter] = set()
        self.bytes_up = 0
        self.is_cut = False
        self.refused = 0  # connections reset while cut

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.is_cut:
            self.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self.connections.update((writer, up_writer))

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, count: bool) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    if count:
                        self.bytes_up += len(data)
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(OSError, RuntimeError):
                dst.close()

        await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))
        self.connections.discard(writer)
        self.connections.discard(up_writer)

    async def cut(self) -> None:
        self.is_cut = True
        for conn in list(self.connections):
            with contextlib.suppress(OSError, RuntimeError):
                conn.transport.abort()
        self.connections.clear()

    async def restore(self) -> None:
        self.is_cut = False

    async def close(self) -> None:
        await self.cut()
        if self.server is not None:
            self.server.close()


class SkewedClock:
    """The box's clock: real time plus an offset the test sets (hours off, as a box with a dead RTC battery)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


class SyncedBox:
    """A store box: its database, the ledger writer, the sync service pointed at `url` with `key`."""

    def __init__(self, data_dir: Path, url: str, key: str, store: str = "store-001", **settings: Any) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        self.db_path = data_dir / "storebox.db"
        if not self.db_path.exists():
            seed(self.db_path)
        self.clock = SkewedClock()
        defaults: dict[str, Any] = {
            "sync_interval_seconds": 0.2,
            "sync_backoff_max_seconds": 1.0,
            "sync_heartbeat_seconds": 3600,
        }
        self.settings = Settings(data_dir=data_dir, store_id=store, sync_url=url, **{**defaults, **settings})
        write_key(self.settings.sync_key_path, parse_store_key(key))
        self.writer = make_writer(self.db_path, self.clock)
        self.sync: SyncService | None = None
        self.task: asyncio.Task[None] | None = None
        self._n = 0

    async def start(self, *, run_loop: bool = True) -> None:
        self.writer.start()
        self.sync = SyncService(
            self.settings, self.writer, lambda: connect(self.db_path, readonly=True), self.clock, CollectorRegistry()
        )
        if run_loop:
            self.task = asyncio.create_task(self.sync.run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.writer.close()

    def key(self) -> str:
        self._n += 1
        return f"t-{self._n}-{time.monotonic_ns()}"

    async def receive(self, code: str, qty: int, price_fen: int = 226, **line: Any) -> int:
        result = await self.writer.post(
            PostDocument(
                self.key(), DocType.RECEIPT, (Line(code, qty, price_fen=price_fen, **line),), counterparty="sup-1"
            )
        )
        return int(result.document_id)

    async def sell(self, code: str, qty: int) -> int:
        result = await self.writer.post(PostDocument(self.key(), DocType.SALE, (Line(code, qty),), payment="cash"))
        return int(result.document_id)

    async def reverse(self, document_id: int) -> int:
        result = await self.writer.post(ReverseDocument(self.key(), document_id, reason_text="测试冲销"))
        return int(result.document_id)

    def totals(self) -> dict[str, Any]:
        conn = connect(self.db_path, readonly=True)
        try:
            return ledger_totals(conn)
        finally:
            conn.close()

    def pending(self) -> int:
        conn = connect(self.db_path, readonly=True)
        try:
            from edge.sync.outbox import pending

            return pending(conn).rows
        finally:
            conn.close()
