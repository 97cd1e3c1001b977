"""ASGI middleware: a limit on request bodies, and HTTP request metrics for Prometheus."""

import json
import re
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 1024 * 1024
DRAIN_BODY_BYTES = 16 * 1024 * 1024


async def _send_error(
    send: Send, status: int, code: str, message: str, message_en: str, *, close: bool, **detail: Any
) -> None:
    body = json.dumps(
        {"code": code, "message": message, "message_en": message_en, "detail": detail}, ensure_ascii=False
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *([(b"connection", b"close")] if close else []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


_TOO_LARGE_PAGE = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>文件过大 / Too large</title>
<link rel="stylesheet" href="/static/css/app.css"></head><body><main id="main"><section class="card error-page">
<h1>文件或表单过大 / Too large</h1><p>最多 {mb} MB。请缩小照片或文件后重试。</p>
<p lang="en">At most {mb} MB. Make the photo or file smaller and try again.</p>
<p><a href="javascript:history.back()">返回 / Back</a></p></section></main></body></html>"""


async def _send_html_too_large(send: Send, limit: int, *, close: bool) -> None:
    body = _TOO_LARGE_PAGE.format(mb=round(limit / 2**20, 1)).encode()
    headers = [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": headers + ([(b"connection", b"close")] if close else []),
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodySizeLimit:
    """Refuse request bodies over `limit` bytes with 413, whether or not Content-Length is sent.

    File uploads (paths matching one of `upload_paths`) may be up to `upload_limit` bytes; their routes
    check their own, tighter limits with their own errors.

    The body is read here in full (it is at most `limit` bytes) and replayed to the app, so a too
    large body is refused before any handler sees a byte of it. A too large body is read on and
    dropped up to `drain_limit` bytes before the 413 goes out: a client still sending would otherwise
    see the connection reset instead of the answer.
    """

    def __init__(
        self,
        app: ASGIApp,
        limit: int = MAX_BODY_BYTES,
        drain_limit: int = DRAIN_BODY_BYTES,
        upload_paths: tuple[re.Pattern[str], ...] = (),
        upload_limit: int = MAX_BODY_BYTES,
        is_page: Callable[[str], bool] | None = None,
    ) -> None:
        self.app = app
        self.is_page = is_page  # paths of the web page: the refusal is a page, not JSON
        self.default_limit = limit
        self.drain_limit = max(drain_limit, upload_limit)
        self.upload_paths = upload_paths
        self.upload_limit = max(upload_limit, limit)

    def _limit(self, scope: Scope) -> int:
        path = str(scope.get("path", ""))
        if scope.get("method") == "POST" and any(p.match(path) for p in self.upload_paths):
            return self.upload_limit
        return self.default_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and not declared.isdigit():
            await _send_error(send, 400, "bad_request", "Content-Length 无效", "invalid Content-Length", close=True)
            return
        limit = self._limit(scope)
        too_large = declared is not None and int(declared) > limit
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                if not too_large:
                    await self.app(scope, _replay([message], receive), send)
                return
            chunk = message.get("body", b"")
            more = bool(message.get("more_body", False))
            size += len(chunk)
            too_large = too_large or size > limit
            if too_large:
                if size > self.drain_limit:
                    break
                continue
            chunks.append(chunk)
        if too_large and self.is_page is not None and self.is_page(str(scope.get("path", ""))):
            await _send_html_too_large(send, limit, close=more)
            return
        if too_large:
            await _send_error(
                send,
                413,
                "payload_too_large",
                f"请求体过大: 最多 {limit} 字节",
                f"request body too large: at most {limit} bytes",
                close=more,
                limit_bytes=limit,
            )
            return
        body_message: Message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body_message], receive), send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


class HttpMetrics:
    """Count requests and time them, by method, route template and status."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter(
            "storebox_http_requests",
            "HTTP requests by method, route and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.seconds = Histogram(
            "storebox_http_request_seconds",
            "HTTP request duration by method and route",
            ["method", "route"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = str(scope.get("method", ""))
            self.requests.labels(method, template, str(status)).inc()
            self.seconds.labels(method, template).observe(time.perf_counter() - started)
