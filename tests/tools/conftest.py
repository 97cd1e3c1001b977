"""A plain amqtt broker (anonymous, no topic rules) on a free port, in a thread of its own.

The simulators' delivery contract is tested against it with a test-side acker; the full box (device
credentials, ACL, ingest) is exercised by the end-to-end test in test_sim.py.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from amqtt.broker import Broker

from tools.box_process import free_port


@dataclass
class PlainBroker:
    port: int
    _loop: asyncio.AbstractEventLoop | None = None
    _stop: asyncio.Event | None = None
    _thread: threading.Thread | None = None

    def start(self) -> None:
        ready = threading.Event()
        failed: list[BaseException] = []

        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            config = {
                "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
                "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
            }
            try:
                broker = Broker(config)
                await broker.start()
            except BaseException as exc:
                failed.append(exc)
                ready.set()
                return
            ready.set()
            await self._stop.wait()
            await broker.shutdown()

        self._thread = threading.Thread(target=asyncio.run, args=(serve(),), name="test-broker", daemon=True)
        self._thread.start()
        assert ready.wait(10), "broker did not start"
        if failed:
            raise failed[0]

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)
        self._loop = self._stop = self._thread = None


@pytest.fixture
def plain_broker() -> Iterator[PlainBroker]:
    broker = PlainBroker(free_port())
    broker.start()
    yield broker
    broker.stop()
