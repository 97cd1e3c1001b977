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
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from collections.abc import Iterator

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
