"""The live page: what happens in the store, pushed to open pages as server-sent events (`GET /live`).

`LiveHub` is fed by the box (edge/app.py): the writer's after-commit listener hands it every posting, and the bus
hands it every message the box publishes (retained stock topics, alerts) and every device status change. Each open
page holds one subscription, a bounded queue: a page too slow to read loses the oldest events and is told to reload
its figures (`resync`). Events:

- `stock`    {sku, on_hand: {location: qty}, total}   from the retained `stock/<sku>` topic
- `posting`  {doc_type, document_id, doc_no}           after each commit
- `alert`    {kind, ...the alert's payload}            from `alert/<kind>`
- `device`   {device, state}                           from device status topics
- `resync`   {}                                        the queue overflowed: refetch
- `ended`    {}                                        the session ended (expired, user disabled): log in again

Only what the page's user may read is sent: a posting carries no amounts, and pages refetch their figures through
the API (which checks permissions). A comment line every 15 s keeps proxies and phones from closing the stream, and
every minute the stream asks the API whether its session is still good; a stream whose session ended stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from fastapi.responses import StreamingResponse

from edge.web.pages.client import ApiFailure
from edge.web.pages.framework import Page, PageRouter

log = logging.getLogger("storebox.live")

QUEUE_MAX = 500
KEEPALIVE_S = 15.0
RECHECK_S = 60.0  # how often an open stream asks the API whether its session is still good
router = PageRouter()


@dataclass(slots=True)
class LiveEvent:
    name: str
    data: dict[str, Any]
    at: float = field(default_factory=time.time)

    def encode(self) -> bytes:
        payload = json.dumps({**self.data, "at": round(self.at, 3)}, ensure_ascii=False, separators=(",", ":"))
        return f"event: {self.name}\ndata: {payload}\n\n".encode()


class Subscription:
    def __init__(self) -> None:
        self.queue: deque[LiveEvent] = deque(maxlen=QUEUE_MAX)
        self.wake = asyncio.Event()
        self.overflowed = False
        self.closed = False

    def put(self, event: LiveEvent) -> None:
        if len(self.queue) == QUEUE_MAX:
            self.overflowed = True
        self.queue.append(event)
        self.wake.set()


class LiveHub:
    """Fan-out of the box's events to the open pages; every method is called on the event loop."""

    def __init__(self, store_id: str) -> None:
        self._prefix = f"storebox/{store_id}/"
        self._subscriptions: set[Subscription] = set()
        self.sent = 0
        self.closed = False

    def close(self) -> None:
        """End every open stream (the box is stopping: open pages must not hold the HTTP server up)."""
        self.closed = True
        for subscription in self._subscriptions:
            subscription.closed = True
            subscription.wake.set()

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)

    def publish(self, name: str, data: dict[str, Any]) -> None:
        event = LiveEvent(name, data)
        for subscription in self._subscriptions:
            subscription.put(event)

    # --- feeds ---

    def on_postings(self, results: Iterable[Any]) -> None:
        """Writer after-commit listener: one `posting` event per document posted."""
        for result in results:
            doc_type = (getattr(result, "detail", None) or {}).get("doc_type")
            self.publish(
                "posting",
                {"doc_type": doc_type, "document_id": result.document_id, "doc_no": result.doc_no},
            )

    def on_bus(self, topic: str, payload: bytes) -> None:
        """Every message the box publishes on its bus (broker tap): stock and alerts."""
        if not topic.startswith(self._prefix):
            return
        rest = topic[len(self._prefix) :]
        kind, _, name = rest.partition("/")
        try:
            body = json.loads(payload) if payload else {}
        except ValueError:
            return
        if not isinstance(body, dict):
            return
        if kind == "stock" and name:
            raw = body.get("on_hand")
            on_hand = {str(k): v for k, v in raw.items() if isinstance(v, int)} if isinstance(raw, dict) else {}
            total = sum(on_hand.values())
            self.publish("stock", {"sku": name, "on_hand": on_hand, "total": total})
        elif kind == "alert" and name:
            # An alert is {"id", "ts", "data": {"message", "message_en", ...}} (docs/cold-chain.md): flattened.
            data = body.get("data")
            inner: dict[str, Any] = data if isinstance(data, dict) else {}
            self.publish("alert", {**body, **inner, "kind": name})

    def on_device_status(self, device: str, state: str) -> None:
        self.publish("device", {"device": device, "state": state})

    # --- streams ---

    @contextlib.contextmanager
    def subscribe(self) -> Any:
        subscription = Subscription()
        self._subscriptions.add(subscription)
        try:
            yield subscription
        finally:
            self._subscriptions.discard(subscription)

    async def stream(self, subscription: Subscription, *, keepalive: float = KEEPALIVE_S) -> AsyncIterator[bytes]:
        yield b"retry: 2000\nevent: hello\ndata: {}\n\n"
        while not subscription.closed and not self.closed:
            if not subscription.queue:
                subscription.wake.clear()
                try:
                    await asyncio.wait_for(subscription.wake.wait(), timeout=keepalive)
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                if subscription.closed:
                    break
            if subscription.overflowed:
                subscription.overflowed = False
                subscription.queue.clear()
                yield LiveEvent("resync", {}).encode()
                continue
            while subscription.queue:
                self.sent += 1
                yield subscription.queue.popleft().encode()


def status_state(payload: bytes) -> str:
    """ "online" or "offline" from a device's status message (plain text, or JSON with a `state`)."""
    text = payload.decode("utf-8", "replace").strip()
    try:
        body = json.loads(text)
    except ValueError:
        body = text
    state = body.get("state") if isinstance(body, dict) else body
    return "online" if state == "online" else "offline"


def hub_of(app: Any) -> LiveHub | None:
    hub: LiveHub | None = getattr(app.state, "live", None)
    return hub


@router.get("/live")
async def live(page: Page) -> StreamingResponse:
    """The event stream of the logged-in user's open page."""
    hub = hub_of(page.request.app)
    if hub is None:  # an API without a box behind it (tests of single routes): a stream that only keeps alive
        hub = LiveHub(page.request.app.state.deps.settings.store_id)
        page.request.app.state.live = hub

    async def events() -> AsyncIterator[bytes]:
        checked = time.monotonic()
        with hub.subscribe() as subscription:
            async for chunk in hub.stream(subscription):
                yield chunk
                if time.monotonic() - checked >= RECHECK_S:
                    # The session may have ended since the page opened (expired, user disabled): ask the API again.
                    checked = time.monotonic()
                    try:
                        await page.api.get("/api/v1/auth/me")
                    except ApiFailure:
                        yield LiveEvent("ended", {}).encode()
                        return

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
