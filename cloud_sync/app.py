"""The aggregator's HTTP service: `create_app(settings)` migrates the database and serves the store protocol,
the HQ API, the HQ pages and packages. Stateless over the database: any number of replicas may serve the same one."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloud_sync.config import CloudSettings
from cloud_sync.db import create_engine, migrate
from cloud_sync.errors import CloudError, error_response, install_error_handlers
from cloud_sync.metrics import build_metrics
from cloud_sync.routes import hq, modules, packages, sync, transfers
from cloud_sync.web import mount_hq_pages
from edge.sync.protocol import MAX_COMPRESSED_BYTES, SERVER_TIME_HEADER

Clock = Callable[[], datetime]
log = logging.getLogger("storebox.cloud")


def utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(settings: CloudSettings, *, engine: sa.Engine | None = None, clock: Clock = utc_now) -> FastAPI:
    app = FastAPI(
        title="StoreBox aggregator",
        version="1",
        description="门店数据汇总服务 / the cloud aggregator: store sync protocol, HQ API, packages, module rollouts.",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    engine = engine or create_engine(settings.db_url)
    migrate(engine)
    app.state.settings = settings
    app.state.engine = engine
    app.state.clock = clock
    app.state.metrics = build_metrics()
    for module in (sync, hq, transfers, packages, modules):
        app.include_router(module.router)
    install_error_handlers(app)
    mount_hq_pages(app)  # the HQ staff's pages over the HQ API (docs/hq-page.md)

    app.add_middleware(EdgeOfService, clock=clock, packages_max_bytes=settings.packages_max_bytes)

    @app.get("/health", include_in_schema=False)
    def health() -> Any:
        try:
            with app.state.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError as exc:
            return JSONResponse({"status": "down", "database": False, "error": type(exc).__name__}, status_code=503)
        return {"status": "ok", "database": True, "time": clock().isoformat()}

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


class EdgeOfService:
    """Pure ASGI middleware: every answer carries the aggregator's clock (`X-StoreBox-Server-Time`, so a box with a
    wrong clock corrects its offset), and a request body larger than allowed is refused with 413 before it is read
    into memory (sync requests: the protocol's compressed limit; others, e.g. packages: `packages_max_bytes`)."""

    def __init__(self, app: ASGIApp, clock: Clock, packages_max_bytes: int) -> None:
        self.app = app
        self.clock = clock
        self.packages_max_bytes = packages_max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = MAX_COMPRESSED_BYTES if scope["path"].startswith("/api/v1/sync/") else self.packages_max_bytes
        started = False

        async def send_with_time(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                headers[SERVER_TIME_HEADER] = str(int(self.clock().timestamp()))
            await send(message)

        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await self._too_large(scope, receive, send_with_time, limit)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge
            return message

        try:
            await self.app(scope, counted, send_with_time)
        except BodyTooLarge:
            if started:
                raise
            await self._too_large(scope, receive, send_with_time, limit)
        except Exception:
            # Answered here rather than by Starlette's outermost handler so that a 500 carries the server time too.
            log.exception("unexpected error in %s %s / 未预期的错误", scope.get("method"), scope["path"])
            if started:
                raise
            error = CloudError("internal_error", "内部错误，已记录日志", "internal error; it has been logged", 500)
            await error_response(error)(scope, receive, send_with_time)

    @staticmethod
    async def _too_large(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        code = "batch_too_large" if scope["path"].startswith("/api/v1/sync/") else "body_too_large"
        error = CloudError(code, "请求体过大", "request body too large", 413, limit=limit)
        await error_response(error)(scope, receive, send)


class BodyTooLarge(Exception):
    """A chunked request body went over the limit while it was being read."""


def database_answers(engine: sa.Engine) -> bool:
    """The watchdog's health check: the database takes a query."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError:
        return False
    return True
