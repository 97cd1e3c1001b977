"""Fixtures: a real temp SQLite ledger with the sample store's master data, and a posting context."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge.ledger.commands import Command, PostResult
from edge.ledger.posting import PostingContext
from tests.edge.ledger.sample_store import context, open_ledger, post_committed


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = open_ledger(tmp_path / "ledger.db")
    yield connection
    connection.close()


@pytest.fixture
def ctx() -> PostingContext:
    return context()


@pytest.fixture
def posted(conn: sqlite3.Connection, ctx: PostingContext) -> Callable[..., PostResult]:
    """Post a command in its own transaction with the default context (or the one given)."""

    def _post(command: Command, at: PostingContext | None = None) -> PostResult:
        result: PostResult = post_committed(conn, command, at or ctx)
        return result

    return _post
