"""The live hub: what the bus and the writer say reaches every open page, bounded, and ends when the box stops."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from edge.web.pages.live import QUEUE_MAX, LiveHub, status_state
from tools.box_process import BoxProcess

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _events(chunks: list[bytes]) -> list[tuple[str, dict[str, object]]]:
    out = []
    for chunk in chunks:
        for block in chunk.decode().split("\n\n"):
            lines = dict(
                line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":")
            )
            if "event" in lines:
                out.append((lines["event"], json.loads(lines["data"])))
    return out


async def _take(hub: LiveHub, n: int) -> list[tuple[str, dict[str, object]]]:
    with hub.subscribe() as subscription:
        stream = hub.stream(subscription, keepalive=0.05)
        chunks = [await anext(stream)]  # hello
        while len(_events(chunks)) < n + 1:
            chunks.append(await asyncio.wait_for(anext(stream), 2))
    return _events(chunks)[1:]


async def test_bus_stock_and_alerts_postings_and_device_status_become_events() -> None:
    hub = LiveHub("store-001")
    task = asyncio.create_task(_take(hub, 4))
    await asyncio.sleep(0.01)
    hub.on_bus("storebox/store-001/stock/COLA", b'{"sku":"COLA","on_hand":{"floor":5,"backroom":7},"ts":"x"}')
    alert = {"id": "a1", "ts": "x", "data": {"message": "冷库超温", "message_en": "too warm", "room": "cold"}}
    hub.on_bus("storebox/store-001/alert/cold-room", json.dumps(alert).encode())
    hub.on_bus("storebox/other-store/stock/COLA", b'{"on_hand":{"floor":1}}')  # not ours: ignored
    hub.on_bus("storebox/store-001/stock/BAD", b"not json")  # ignored
    hub.on_postings([SimpleNamespace(document_id=7, doc_no="SA1", detail={})])
    hub.on_device_status("pos-1", status_state(b"offline"))
    events = await task
    assert events[0] == (
        "stock",
        {"sku": "COLA", "on_hand": {"floor": 5, "backroom": 7}, "total": 12, "at": events[0][1]["at"]},
    )
    assert events[1][0] == "alert" and events[1][1]["kind"] == "cold-room" and events[1][1]["room"] == "cold"
    assert events[1][1]["message"] == "冷库超温" and events[1][1]["message_en"] == "too warm"
    assert events[2][0] == "posting" and events[2][1]["doc_no"] == "SA1"
    assert events[3][0] == "device" and events[3][1]["state"] == "offline"
    assert hub.subscribers == 0


def test_status_messages_read_as_online_or_offline() -> None:
    assert status_state(b"online") == "online"
    assert status_state(b'{"state": "online", "fw": "1.2"}') == "online"
    assert status_state(b"\xff garbage") == "offline"


async def test_a_page_too_slow_to_read_is_told_to_refetch_not_fed_forever() -> None:
    hub = LiveHub("store-001")
    with hub.subscribe() as subscription:
        for n in range(QUEUE_MAX + 50):
            hub.on_bus(f"storebox/store-001/stock/S{n}", b'{"on_hand":{"floor":1}}')
        assert len(subscription.queue) == QUEUE_MAX  # bounded
        stream = hub.stream(subscription, keepalive=0.05)
        await anext(stream)
        assert b"event: resync" in await anext(stream)


async def test_closing_the_hub_ends_every_stream() -> None:
    hub = LiveHub("store-001")
    with hub.subscribe() as subscription:
        stream = hub.stream(subscription, keepalive=5)
        await anext(stream)
        waiting = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.01)
        hub.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(waiting, 2)


@pytest.mark.slow
def test_the_box_stops_at_once_while_a_page_holds_its_live_stream_open(tmp_path: Path) -> None:
    box = BoxProcess(tmp_path / "box")
    box.start(timeout=120)
    try:
        user = box.demo_json()["users"]["manager"]
        client = httpx.Client(base_url=box.url)
        client.post("/login", data={"username": user["username"], "password": user["password"], "next": "/"})
        opened = threading.Event()

        def hold() -> None:
            try:
                with client.stream("GET", "/live", timeout=None) as response:
                    for _ in response.iter_bytes():
                        opened.set()
            except httpx.HTTPError:
                pass

        threading.Thread(target=hold, daemon=True).start()
        assert opened.wait(10)
        # Before the fix the HTTP server waited on the open stream for ever: here terminate() would time out.
        assert box.terminate(timeout=30) == 0
    finally:
        box.stop()
