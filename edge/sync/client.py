"""The box's HTTP client of the aggregator: every request signed with the store key (edge/sync/protocol.py),
the aggregator's clock followed (a box whose clock is hours off still signs acceptable timestamps), failures
sorted into "try again later" (SyncUnavailable) and "refused" (SyncRefused)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import httpx

from edge.config import Settings
from edge.sync.errors import SyncNotConfigured, SyncRefused, SyncUnavailable
from edge.sync.protocol import SERVER_TIME_HEADER, StoreKey, encode_body, sign_request

Clock = Callable[[], datetime]


class SyncClient:
    def __init__(
        self,
        settings: Settings,
        key_provider: Callable[[], StoreKey | None],
        clock: Clock,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if settings.sync_url is None:
            raise SyncNotConfigured("未设置 sync_url", "sync_url is not set")
        self.settings = settings
        self.store = settings.store_id
        self.key_provider = key_provider
        self.clock = clock
        self.offset_s = 0.0  # aggregator clock minus ours, from its last answer
        verify: Any = str(settings.sync_ca_file) if settings.sync_ca_file else True
        self._http = httpx.AsyncClient(
            base_url=settings.sync_url.rstrip("/"),
            timeout=settings.sync_timeout_seconds,
            verify=verify,
            transport=transport,
            headers={"User-Agent": f"storebox/{self.store}"},
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    def server_now(self) -> datetime:
        from datetime import timedelta

        return self.clock() + timedelta(seconds=self.offset_s)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        content: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """A signed request; the answer on 2xx, SyncRefused on 4xx, SyncUnavailable otherwise."""
        key = self.key_provider()
        if key is None:
            raise SyncNotConfigured("没有门店密钥 (storebox sync set-key)", "no store key (storebox sync set-key)")
        query = urlencode({k: v for k, v in (params or {}).items() if v is not None})
        target = path + (f"?{query}" if query else "")
        for attempt in (1, 2):
            stamp = int(self.server_now().timestamp())
            signed = {**(headers or {}), **sign_request(key, self.store, method, target, content, stamp)}
            try:
                response = await self._http.request(method, target, content=content, headers=signed)
            except httpx.HTTPError as exc:
                raise SyncUnavailable(
                    f"无法连接汇总服务: {type(exc).__name__}",
                    f"cannot reach the aggregator: {type(exc).__name__}: {exc}",
                ) from None
            self._follow_clock(response)
            if response.status_code < 400:
                return response
            body = _error_body(response)
            detail = body.get("detail")
            if response.status_code == 401 and body.get("code") == "auth_clock_skew" and attempt == 1:
                continue  # the offset is corrected from the answer: sign again
            if response.status_code >= 500 or response.status_code in (408, 429):
                raise SyncUnavailable(
                    f"汇总服务暂不可用 (HTTP {response.status_code})",
                    f"the aggregator is unavailable (HTTP {response.status_code})",
                )
            raise SyncRefused(
                str(body.get("code") or f"http_{response.status_code}"),
                str(body.get("message") or "请求被拒绝"),
                str(body.get("message_en") or f"HTTP {response.status_code}"),
                response.status_code,
                detail if isinstance(detail, dict) else {},
            )
        raise AssertionError("unreachable")

    def _follow_clock(self, response: httpx.Response) -> None:
        value = response.headers.get(SERVER_TIME_HEADER, "")
        if value.isdigit():
            self.offset_s = int(value) - self.clock().timestamp()

    async def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return _json(await self.request("GET", path, params=params))

    async def post_json(self, path: str, body: Any, *, gzip: bool = True, params: dict[str, Any] | None = None) -> Any:
        if gzip:
            content = encode_body(body)
            headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
        else:
            content = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
            headers = {"Content-Type": "application/json"}
        return _json(await self.request("POST", path, params=params, content=content, headers=headers))

    async def get_bytes(self, path: str, params: dict[str, Any] | None = None) -> bytes:
        return (await self.request("GET", path, params=params)).content


def _error_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise SyncUnavailable("汇总服务的应答不是 JSON", "the aggregator's answer is not JSON") from None
