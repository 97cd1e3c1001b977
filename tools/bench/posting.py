"""Posting benchmark: sales posted straight into the ledger in group commits, no broker, no network.

This is the ceiling the ingest can reach on one core: it separates the cost of the ledger from the cost of
MQTT. Run: `python -m tools.bench.posting [--sales N] [--batch B]`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from edge.app import StoreBox
from edge.config import load_settings
from edge.db import connect
from edge.ledger.commands import DocType, Line, PostDocument
from edge.ledger.posting import post


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sales", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL")
    args = parser.parse_args(argv)
    data_dir = Path(tempfile.mkdtemp(prefix="storebox-bench-posting-"))
    settings = load_settings(data_dir=data_dir, sqlite_synchronous=args.synchronous)
    box = StoreBox(settings)
    box.prepare_database(demo=True)
    codes = [item["barcode"] for item in json.loads((data_dir / "demo.json").read_text())["items"][:20]]
    commands = [
        PostDocument(key=f"dev:bench:{i}", type=DocType.SALE, lines=(Line(codes[i % len(codes)], 1),), actor="bench")
        for i in range(args.sales)
    ]
    conn = connect(settings.db_path, synchronous=args.synchronous)
    began = time.perf_counter()
    for start in range(0, len(commands), args.batch):
        conn.execute("BEGIN IMMEDIATE")
        ctx = box.posting_context()
        for command in commands[start : start + args.batch]:
            if not post(conn, command, ctx).ok:
                raise RuntimeError(f"posting refused: {command.key}")
        conn.execute("COMMIT")
    seconds = time.perf_counter() - began
    conn.close()
    result = {
        "sales": args.sales,
        "batch": args.batch,
        "synchronous": args.synchronous,
        "seconds": round(seconds, 3),
        "sales_per_second": round(args.sales / seconds, 1),
        "us_per_sale": round(seconds / args.sales * 1e6, 1),
    }
    print(
        f"| posting only, batches of {args.batch}, synchronous={args.synchronous} | {args.sales} | "
        f"{result['seconds']} | {result['sales_per_second']} | {result['us_per_sale']} µs per sale |"
    )
    return result


if __name__ == "__main__":
    main()
