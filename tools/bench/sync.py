"""Sync benchmark: a backlog of 1,000,000 outbox rows from one box uploaded to the aggregator on SQLite (target
under 60 s, end to end: the box reads, batches, compresses and signs; the aggregator checks, stores and applies),
the aggregator's ingest rows/s on SQLite and PostgreSQL, and HQ query latency for sales by store and day over 100
stores and a year of data.

The backlog is written straight into the box's outbox (rows shaped exactly like the ledger's `document.posted`:
sales of 1-3 lines with their moves and a five-line voucher, and some receipts): a benchmark of sync, not of
posting. The aggregator runs as its own process (`storebox-cloud serve`) on 127.0.0.1, as in production.

Run: `python -m tools.bench.sync [--rows 1000000] [--ingest-rows 200000] [--stores 100] [--skus 100]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

STORE = "bench-001"
START = datetime(2026, 1, 1, 1, 0, tzinfo=UTC)
SKUS = [f"SKU{i:05d}" for i in range(2000)]


def document_payload(doc_id: int, rng: random.Random) -> dict[str, Any]:
    """One posted document as the ledger writes it: 90 % sales of 1-3 lines, 10 % receipts."""
    at = START + timedelta(seconds=doc_id * 20)
    sale = rng.random() < 0.9
    lines, moves = [], []
    gross_total = tax_total = cost_total = 0
    for n in range(1, rng.randint(1, 3) + 1):
        sku = rng.choice(SKUS)
        qty = rng.randint(1, 6)
        price = rng.choice((250, 350, 990, 1290, 4500))
        gross = qty * price
        tax = round(gross * 13 / 113)
        cost = qty * price * 7 // 10
        lines.append(
            {
                "line_no": n,
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
        )
        moves.append([n, sku, "floor", "", -qty if sale else qty, -cost if sale else cost])
        gross_total, tax_total, cost_total = gross_total + gross, tax_total + tax, cost_total + cost
    if sale:
        voucher = [
            ["1001", gross_total, 0],
            ["5001", 0, gross_total - tax_total],
            ["22210102", 0, tax_total],
            ["5401", cost_total, 0],
            ["1405", 0, cost_total],
        ]
    else:
        voucher = [["1405", cost_total, 0], ["22210101", tax_total, 0], ["2202", 0, cost_total + tax_total]]
    kind = "SA" if sale else "RC"
    return {
        "document": {
            "id": doc_id,
            "doc_no": f"{kind}{at:%Y%m%d}-{doc_id:06d}",
            "type": "sale" if sale else "receipt",
            "command_key": f"bench:{doc_id}",
            "posted_at": at.isoformat(),
            "business_date": at.date().isoformat(),
            "actor": "bench",
            "device": None,
            "location": "floor",
            "to_location": None,
            "counterparty": None if sale else "sup-1",
            "ref_id": None,
            "reverses_id": None,
            "reason": None,
            "reason_text": None,
            "note": None,
            "payment": "cash" if sale else None,
            "gross_fen": gross_total,
            "tax_fen": tax_total,
            "cost_fen": cost_total if sale else 0,
            "external_ref": None,
        },
        "lines": lines,
        "moves": moves,
        "voucher": {
            "voucher_no": f"记{at:%Y%m}-{doc_id:06d}",
            "rule_version": "SE-2026.1",
            "tax_trusted": False,
            "lines": voucher,
        },
    }


def build_backlog(data_dir: Path, rows: int, seed: int = 6) -> dict[str, Any]:
    """A migrated box database whose outbox holds `rows` posted documents not yet synced."""
    from edge.db import connect, migrate

    data_dir.mkdir(parents=True, exist_ok=True)
    conn = connect(data_dir / "storebox.db", synchronous="NORMAL")
    migrate(conn)
    rng = random.Random(seed)
    start = time.perf_counter()
    conn.execute("PRAGMA foreign_keys=OFF")  # outbox rows without their documents: a benchmark of sync only
    conn.execute("BEGIN")
    chunk: list[tuple[int, str, str, str]] = []
    payload_bytes = 0
    for doc_id in range(1, rows + 1):
        payload = json.dumps(document_payload(doc_id, rng), ensure_ascii=False, separators=(",", ":"))
        payload_bytes += len(payload.encode())
        chunk.append((doc_id, "document.posted", payload, (START + timedelta(seconds=doc_id * 20)).isoformat()))
        if len(chunk) == 50_000:
            conn.executemany("INSERT INTO outbox (document_id, kind, payload, created_at) VALUES (?, ?, ?, ?)", chunk)
            chunk.clear()
    conn.executemany("INSERT INTO outbox (document_id, kind, payload, created_at) VALUES (?, ?, ?, ?)", chunk)
    conn.execute("COMMIT")
    conn.close()
    return {
        "rows": rows,
        "payload_mb": round(payload_bytes / 2**20, 1),
        "build_s": round(time.perf_counter() - start, 1),
    }


class Aggregator:
    """`python -m cloud_sync serve` on 127.0.0.1 over `db_url`, as in production."""

    def __init__(self, db_url: str, workdir: Path) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "STOREBOX_CLOUD_DB_URL": db_url, "STOREBOX_CLOUD_LOG_LEVEL": "WARNING"}
        self.log = workdir / "aggregator.log"
        self.process: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str) -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, "-m", "cloud_sync", *args], env=self.env, capture_output=True, check=True
        )
        result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
        return result

    @contextmanager
    def running(self) -> Iterator[Aggregator]:
        import httpx

        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cloud_sync", "serve", "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(self.log.read_text(errors="replace")[-2000:])
                time.sleep(0.1)
            yield self
        finally:
            self.process.terminate()
            self.process.wait(30)


def bench_backlog(rows: int, batch_rows: int) -> dict[str, Any]:
    """The whole backlog from one box to an aggregator on SQLite: seconds from the first batch to the last ack."""
    from prometheus_client import CollectorRegistry

    from edge.config import Settings
    from edge.db import connect
    from edge.finance.rulebook import rule_book
    from edge.ledger.posting import PostingContext
    from edge.sync.keys import write_key
    from edge.sync.outbox import pending
    from edge.sync.protocol import parse_store_key
    from edge.sync.service import SyncService
    from edge.writer import LedgerWriter

    with tempfile.TemporaryDirectory(prefix="storebox-sync-bench-") as tmp:
        work = Path(tmp)
        built = build_backlog(work / "box", rows)
        aggregator = Aggregator(f"sqlite:///{work / 'cloud.db'}", work)
        aggregator.cli("migrate")
        key = aggregator.cli("stores", "add", STORE, "--name", "压测门店", "--company", "bench")["key"]
        settings = Settings(data_dir=work / "box", store_id=STORE, sync_url=aggregator.url, sync_batch_rows=batch_rows)
        write_key(settings.sync_key_path, parse_store_key(key))
        rules = rule_book()
        clock = lambda: datetime.now(UTC)  # noqa: E731
        writer = LedgerWriter(
            settings.db_path,
            context=lambda: PostingContext(now=clock(), business_date=clock().date(), rules=rules),
            synchronous="NORMAL",
        )

        async def upload() -> dict[str, Any]:
            writer.start()
            service = SyncService(
                settings, writer, lambda: connect(settings.db_path, readonly=True), clock, CollectorRegistry()
            )
            try:
                start = time.perf_counter()
                sent = await service.push_now()
                seconds = time.perf_counter() - start
            finally:
                await service.client.aclose()
                await writer.close()
            return {**sent, "seconds": round(seconds, 1)}

        with aggregator.running():
            result = asyncio.run(upload())
        conn = connect(settings.db_path, readonly=True)
        left = pending(conn).rows
        conn.close()
        db_mb = (work / "cloud.db").stat().st_size / 2**20
    return {
        **built,
        "batch_rows": batch_rows,
        "batches": result["batches"],
        "seconds": result["seconds"],
        "rows_per_s": round(rows / result["seconds"]),
        "left_unacknowledged": left,
        "aggregator_db_mb": round(db_mb),
    }


def seed_sales(db_url: str, stores: int, skus: int, days: int, seed: int = 7) -> dict[str, Any]:
    """A year of daily sales facts for `stores` stores of one company, written straight into the aggregator."""

    from cloud_sync.db import create_engine, migrate
    from cloud_sync.tables import companies, items, sales_daily
    from cloud_sync.tables import stores as stores_table

    engine = create_engine(db_url)
    migrate(engine)
    rng = random.Random(seed)
    first = date(2026, 1, 1)
    start = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(companies.insert().values(id="bench", name="压测公司"))
        conn.execute(
            stores_table.insert(),
            [
                {"id": f"s{n:03d}", "name": f"门店{n}", "company": "bench", "created_at": START.isoformat()}
                for n in range(stores)
            ],
        )
        conn.execute(
            items.insert(),
            [
                {"store": f"s{n:03d}", "sku": f"SKU{k:04d}", "name": f"商品{k}", "category": f"C{k % 12:02d}"}
                for n in range(stores)
                for k in range(skus)
            ],
        )
    rows = 0
    with engine.begin() as conn:
        mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        columns = "store, day, sku, qty, gross_fen, tax_fen, cost_fen"
        sql = f"INSERT INTO {sales_daily.name} ({columns}) VALUES ({', '.join([mark] * 7)})"
        for n in range(stores):
            chunk = []
            for d in range(days):
                day = (first + timedelta(days=d)).isoformat()
                for k in range(skus):
                    qty = rng.randint(1, 20)
                    gross = qty * 350
                    chunk.append((f"s{n:03d}", day, f"SKU{k:04d}", qty, gross, gross * 13 // 113, qty * 250))
            conn.exec_driver_sql(sql, chunk)
            rows += len(chunk)
        conn.exec_driver_sql("ANALYZE")
    engine.dispose()
    return {
        "sales_rows": rows,
        "seed_s": round(time.perf_counter() - start, 1),
        "stores": stores,
        "days": days,
        "skus": skus,
    }


HQ_QUERIES = {
    "sales by store and day, a year, first page": "/api/v1/hq/sales?group_by=store,day&from=2026-01-01&to=2026-12-31",
    "sales by store, one month": "/api/v1/hq/sales?group_by=store&from=2026-06-01&to=2026-06-30",
    "sales by day, one store, a year": "/api/v1/hq/sales?group_by=day&store=s042&from=2026-01-01&to=2026-12-31",
    "sales by category, all stores, a year": "/api/v1/hq/sales?group_by=category&from=2026-01-01&to=2026-12-31",
}


def bench_hq(db_url: str, workdir: Path, stores: int, skus: int, days: int, repeat: int) -> dict[str, Any]:
    import httpx

    seeded = seed_sales(db_url, stores, skus, days)
    aggregator = Aggregator(db_url, workdir)
    token = aggregator.cli("hq", "token-add", "bench")["token"]
    timings: dict[str, Any] = {}
    with aggregator.running(), httpx.Client(base_url=aggregator.url, timeout=300) as client:
        headers = {"Authorization": f"Bearer {token}"}
        for name, target in HQ_QUERIES.items():
            seconds = []
            for _ in range(repeat):
                started = time.perf_counter()
                answer = client.get(target, headers=headers)
                seconds.append(time.perf_counter() - started)
                answer.raise_for_status()
            timings[name] = {
                "median_ms": round(statistics.median(seconds) * 1000),
                "max_ms": round(max(seconds) * 1000),
                "total_rows": answer.json().get("total"),
            }
    return {**seeded, "queries": timings}


def bench_ingest(db_url: str, rows: int, batch_rows: int = 5000) -> dict[str, Any]:
    """The aggregator's ingest alone (no HTTP): decompress, parse, check, store and apply, rows per second."""
    import gc

    from cloud_sync.db import create_engine, migrate
    from cloud_sync.ingest import Head, ingest_batch
    from edge.sync.protocol import batch_body, encode_body

    engine = create_engine(db_url)
    migrate(engine)
    from cloud_sync.auth import add_key
    from cloud_sync.tables import companies, stores

    with engine.begin() as conn:
        conn.execute(companies.insert().values(id="bench", name="压测公司"))
        conn.execute(stores.insert().values(id=STORE, name="压测门店", company="bench", created_at=START.isoformat()))
        add_key(conn, STORE, START)
    rng = random.Random(8)
    bodies: list[bytes] = []
    n = 1
    for seq in range(1, rows // batch_rows + 1):
        chunk = []
        for _ in range(batch_rows):
            payload = json.dumps(document_payload(n, rng), ensure_ascii=False, separators=(",", ":"))
            chunk.append((n, "document.posted", START.isoformat(), n, payload))
            n += 1
        bodies.append(encode_body(batch_body(STORE, seq, chunk)))
    gc.freeze()
    gc.set_threshold(200_000, 50, 100)  # as `storebox-cloud serve` runs
    start = time.perf_counter()
    for body in bodies:
        ingest_batch(engine, STORE, body, compressed=True, head=Head(), now=datetime.now(UTC))
    seconds = time.perf_counter() - start
    engine.dispose()
    return {"rows": n - 1, "seconds": round(seconds, 1), "rows_per_s": round((n - 1) / seconds)}


def main(argv: list[str] | None = None) -> None:
    import psutil

    from tools.pgserver import PostgresUnavailable, postgres_server

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="outbox rows in the backlog")
    parser.add_argument("--batch-rows", type=int, default=5000)
    parser.add_argument("--ingest-rows", type=int, default=200_000)
    parser.add_argument("--stores", type=int, default=100)
    parser.add_argument("--skus", type=int, default=100)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {psutil.virtual_memory().total // 2**30} GiB,"
        f" Python {platform.python_version()}",
        "backlog_sqlite": bench_backlog(args.rows, args.batch_rows),
    }
    with tempfile.TemporaryDirectory(prefix="storebox-sync-bench-") as tmp:
        report["ingest_sqlite"] = bench_ingest(f"sqlite:///{tmp}/ingest.db", args.ingest_rows)
        report["hq_sqlite"] = bench_hq(
            f"sqlite:///{tmp}/hq.db", Path(tmp), args.stores, args.skus, args.days, args.repeat
        )
        try:
            with postgres_server() as pg:
                report["ingest_postgresql"] = bench_ingest(pg.create_database("ingest"), args.ingest_rows)
                report["hq_postgresql"] = bench_hq(
                    pg.create_database("hq"), Path(tmp), args.stores, args.skus, args.days, args.repeat
                )
        except PostgresUnavailable as err:
            report["postgresql"] = f"skipped: {err}"
    print(json.dumps(report, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
