"""Test helpers for HQ packages on a box: a seeded box database, HQ's key, package files, a direct transact."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_sync.packages.format import build_package, public_key_hex
from edge.config import Settings
from edge.db import connect

HQ_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
T0 = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)


def box_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"data_dir": data_dir, "hq_public_key": public_key_hex(HQ_KEY), "store_id": "store-001"}
    values.update(overrides)
    return Settings(**values)


def package(kind: str, name: str, version: int, files: dict[str, bytes], **kw: Any) -> bytes:
    return build_package(kind, name, version, files, kw.pop("key", HQ_KEY), created_at=T0, created_by="hq-test", **kw)


def prices(version: int, lines: str, **kw: Any) -> bytes:
    return package("price_list", "prices", version, {"prices.csv": lines.encode()}, **kw)


def direct_transact(db_path: Path) -> Callable[..., Any]:
    def transact(fn: Callable[..., Any], *args: Any) -> Any:
        conn = connect(db_path)
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn, *args)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result
        finally:
            conn.close()

    return transact


def reader(db_path: Path) -> Callable[[], sqlite3.Connection]:
    return lambda: connect(db_path, readonly=True)


def price_of(db_path: Path, sku: str) -> int:
    conn = connect(db_path, readonly=True)
    try:
        return int(conn.execute("SELECT price_fen FROM items WHERE sku = ?", (sku,)).fetchone()[0])
    finally:
        conn.close()


def in_force(db_path: Path, kind: str, name: str) -> int:
    conn = connect(db_path, readonly=True)
    try:
        row = conn.execute("SELECT version FROM package_current WHERE kind = ? AND name = ?", (kind, name)).fetchone()
        return int(row[0]) if row else 0
    finally:
        conn.close()
