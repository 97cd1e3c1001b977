"""The aggregator with the HQ pages served by uvicorn on 127.0.0.1 in a thread of its own (real HTTP), over the
seeded chain of tests/cloud_sync/hq/seed.py, and HTTP clients logged in with an HQ token."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from fastapi import FastAPI

CSRF = re.compile(r'name="_csrf" value="([0-9a-f]+)"')


class ServedAggregator:
    def __init__(self, app: FastAPI, token: str) -> None:
        self.app = app
        self.token = token
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server: uvicorn.Server | None = None
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="aggregator-under-test", daemon=True)

    def _run(self) -> None:
        try:
            config = uvicorn.Config(self.app, log_level="warning", lifespan="off", access_log=False)
            self.server = uvicorn.Server(config)
            asyncio.run(self.server.serve(sockets=[self.sock]))
        except BaseException as exc:
            self.failure = exc

    def start(self) -> ServedAggregator:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not (self.server is not None and self.server.started):
            if self.failure is not None or not self.thread.is_alive():
                raise RuntimeError(f"the aggregator did not start: {self.failure!r}")
            if time.monotonic() > deadline:
                raise TimeoutError("the aggregator did not start within 10 s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    def client(self, lang: str | None = None) -> httpx.Client:
        """An anonymous browser-like client (cookies kept, redirects not followed)."""
        client = httpx.Client(base_url=self.url, follow_redirects=False, timeout=30)
        if lang:
            client.cookies.set("sb_lang", lang)
        return client

    @contextmanager
    def login(self, lang: str | None = None) -> Iterator[httpx.Client]:
        """A client logged in through the login form with the chain's HQ token."""
        with self.client(lang) as client:
            response = client.post("/hq/login", data={"token": self.token, "next": "/hq"})
            assert response.status_code == 303, response.text
            assert response.headers["location"] == "/hq"
            yield client

    def csrf(self, client: httpx.Client) -> str:
        found = CSRF.search(client.get("/hq").text)
        assert found, "no CSRF token on the stores page"
        return found.group(1)
