"""The transfers page with a real aggregator (`python -m cloud_sync serve` on SQLite) and two real boxes: store B's
page shows store A's stock of an item live (last outbound, shelf life, cold chain, usable), lists the transfer A
shipped as incoming, and receives it from the form."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import lxml.html
import pytest

from edge.ledger.commands import DocType, Line, PostDocument
from edge.security.roles import Role
from edge.sync import transfers as tr
from edge.web.api import create_api
from tests.edge.sync.harness import AggregatorProcess, SyncedBox
from tests.edge.web.apibox import build_deps, password_of

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def html(response: httpx.Response) -> Any:
    assert not re.search(r"Traceback|File \"/", response.text), response.text[:2000]
    return lxml.html.fromstring(response.text)


async def test_store_b_sees_store_a_stock_live_and_receives_its_transfer(tmp_path: Path) -> None:
    aggregator = AggregatorProcess(f"sqlite:///{tmp_path / 'cloud.db'}", tmp_path)
    aggregator.cli("migrate")
    key_a = aggregator.cli(
        "stores",
        "add",
        "store-001",
        "--name",
        "一号店",
        "--company",
        "co-1",
        "--cold-chain",
        "--lat",
        "31.23",
        "--lon",
        "121.47",
    )["key"]
    key_b = aggregator.cli(
        "stores", "add", "store-002", "--name", "二号店", "--company", "co-1", "--lat", "31.30", "--lon", "121.50"
    )["key"]
    aggregator.start()
    a = SyncedBox(tmp_path / "a", aggregator.url, key_a, store="store-001")
    b = SyncedBox(tmp_path / "b", aggregator.url, key_b, store="store-002")
    await a.start(run_loop=False)
    await b.start(run_loop=False)
    try:
        assert a.sync is not None and b.sync is not None
        expiry = (datetime.now(UTC) + timedelta(days=6)).date()
        await a.receive("MILK", 10, price_fen=901, lot="M-1", expiry=expiry)
        shipped = await a.writer.post(
            PostDocument("ship-1", DocType.TRANSFER_OUT, (Line("MILK", 6),), counterparty="store-002")
        )
        assert shipped.ok, shipped
        await a.sync.push_now()
        await tr.pull(b.sync.client, b.sync.ctx)

        app = create_api(build_deps(b.db_path, b.clock, b.writer, settings=b.settings))
        app.state.sync = b.sync
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://box-b") as client:
            login = await client.post(
                "/login", data={"username": "clerk", "password": password_of(Role.CLERK), "next": "/"}
            )
            assert login.status_code == 303, login.text

            page = html(await client.get("/transfers", params={"sku": "MILK"}))
            assert page.xpath('//*[@id="sources-live"]') and not page.xpath('//*[@id="sources-problem"]')
            [row] = page.xpath('//table[@id="sources"]/tbody/tr')
            assert row.get("data-store") == "store-001"
            cells = [c.text_content().strip() for c in row.xpath("./td")]
            assert cells[2] == "4 bottle"  # 10 received, 6 shipped
            assert re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", cells[3])  # the shipment is A's last outbound
            assert re.fullmatch(r"[56] 天", cells[4])
            assert cells[5] == "是" and re.fullmatch(r"[0-9]+\.[0-9] 公里", cells[6]) and "是" in cells[7]

            incoming = page.xpath('//table[@id="incoming"]/tbody/tr')
            assert len(incoming) == 1 and "在途" in incoming[0].text_content()
            receive_at = incoming[0].xpath('.//a[contains(@href, "/transfers/incoming/")]/@href')[0]
            form = html(await client.get(receive_at))
            hidden = {
                i.get("name"): i.get("value") for i in form.xpath('//form[@id="receive-form"]//input[@type="hidden"]')
            }
            done = await client.post(receive_at, data={**hidden, "part-1": "5"})
            assert done.status_code == 303, done.text[:3000]
            document = html(await client.get(done.headers["location"]))
            assert "调拨入库单" in document.xpath("//h1")[0].text_content()
            [line] = document.xpath('//table[@id="lines"]/tbody/tr')
            assert "M-1" in line.text_content() and "5 bottle" in line.text_content()
            after = html(await client.get("/transfers"))
            assert not after.xpath('//table[@id="incoming"]//a[contains(@href, "/transfers/incoming/")]')
        await app.state.page_api_client.aclose()
    finally:
        await a.stop()
        await b.stop()
        if a.sync is not None:
            await a.sync.client.aclose()
        if b.sync is not None:
            await b.sync.client.aclose()
        aggregator.stop()
