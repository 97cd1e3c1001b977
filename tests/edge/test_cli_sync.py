"""`storebox sync ...` against a real aggregator served by uvicorn on 127.0.0.1 (SQLite and PostgreSQL): set-key,
status, push, verify (agreeing, then naming a difference), rotate-key, compact; exit codes when refused or
unreachable."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge.cli import app
from edge.sync.keys import load_key
from edge.sync.protocol import generate_store_key
from tests.edge.sync.conftest import (  # noqa: F401 (fixtures)
    Aggregator,
    Box,
    Served,
    aggregator,
    anyio_backend,
    box,
    free_port,
    served,
    sync_template_db,
)

pytestmark = pytest.mark.anyio
runner = CliRunner()


async def storebox(on: Box, url: str, *args: str) -> tuple[int, str]:
    """The command in a thread of its own (it runs its own event loop), as an operator would type it."""
    config = on.data_dir / "storebox.toml"
    config.write_text(f'store_id = "store-001"\nsync_url = "{url}"\nsync_batch_rows = 30\n', encoding="utf-8")
    done = await asyncio.to_thread(runner.invoke, app, [*args, "--config", str(config), "--data-dir", str(on.data_dir)])
    return done.exit_code, done.output


@pytest.fixture
def aggregator_url(served: Served) -> Iterator[str]:  # noqa: F811
    yield served.url


async def test_set_key_push_status_verify_rotate_compact(
    box: Box,  # noqa: F811
    aggregator: Aggregator,  # noqa: F811
    aggregator_url: str,
) -> None:
    await box.trade(4)
    code, out = await storebox(box, aggregator_url, "sync", "set-key", str(aggregator.key))
    assert code == 0, out
    assert (box.data_dir / "sync.key").stat().st_mode & 0o777 == 0o600

    code, out = await storebox(box, aggregator_url, "sync", "status", "--json")
    assert code == 0, out
    before = json.loads(out)
    assert before["configured"] is True and before["pending_rows"] > 0 and before["last_batch"] is None

    code, out = await storebox(box, aggregator_url, "sync", "push", "--json")
    assert code == 0, out
    sent = json.loads(out)
    assert sent["rows"] >= before["pending_rows"] and sent["batches"] >= 1

    code, out = await storebox(box, aggregator_url, "sync", "status")
    assert code == 0, out
    assert "pending rows: 0" in out

    code, out = await storebox(box, aggregator_url, "sync", "verify")
    assert code == 0, out
    assert "totals agree" in out

    # A sale the aggregator has not seen: verify names the differences and exits 1.
    await box.sell("COLA", 2)
    code, out = await storebox(box, aggregator_url, "sync", "verify")
    assert code == 1, out
    assert "documents: box" in out and "sales:" in out and "stock_lines COLA|floor|" in out

    old = load_key(box.settings())
    code, out = await storebox(box, aggregator_url, "sync", "rotate-key")
    assert code == 0, out
    new = load_key(box.settings())
    assert new is not None and old is not None and new.key_id != old.key_id
    code, out = await storebox(box, aggregator_url, "sync", "push")  # signed with the new key
    assert code == 0, out
    code, out = await storebox(box, aggregator_url, "sync", "verify", "--json")
    assert code == 0, out
    assert json.loads(out)["differences"] == []

    code, out = await storebox(box, aggregator_url, "sync", "compact")
    assert code == 0, out
    assert "compacted 0 outbox row(s)" in out  # acknowledged just now: kept for the retention period
    code, out = await storebox(box, aggregator_url, "ledger", "verify")
    assert code == 0, out


async def test_push_exits_2_when_refused_and_3_when_unreachable(
    box: Box,  # noqa: F811
    aggregator: Aggregator,  # noqa: F811
    aggregator_url: str,
) -> None:
    await box.trade(1)
    code, out = await storebox(box, aggregator_url, "sync", "set-key", str(generate_store_key()))
    assert code == 0, out
    code, out = await storebox(box, aggregator_url, "sync", "push")
    assert code == 2
    assert "auth_unknown_key" in out
    code, out = await storebox(box, f"http://127.0.0.1:{free_port()}", "sync", "push")
    assert code == 3
    assert "cannot reach the aggregator" in out
    code, out = await storebox(box, aggregator_url, "sync", "status", "--json")
    assert code == 0, out
    assert json.loads(out)["last_batch_error"]["batch"] == 1


def test_set_key_refuses_a_malformed_key_without_echoing_it(tmp_path: Path) -> None:
    done = runner.invoke(app, ["sync", "set-key", "not-a-key-SECRET", "--data-dir", str(tmp_path)])
    assert done.exit_code == 2
    assert "store_key" in done.output or "门店密钥格式无效" in done.output
    assert "SECRET" not in done.output
    assert not (tmp_path / "sync.key").exists()
