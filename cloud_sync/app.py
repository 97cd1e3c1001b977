"""The aggregator's HTTP service: `create_app(settings)` migrates the database and serves the store protocol,
the HQ API and packages. Stateless over the database: any number of replicas may serve the same one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cloud_sync.config import CloudSettings
from cloud_sync.db import create_engine, migrate
from cloud_sync.errors import install_error_handlers
from cloud_sync.metrics import build_metrics
from cloud_sync.routes import hq, packages, sync, transfers
from edge.sync.protocol import SERVER_TIME_HEADER

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(settings: CloudSettings, *, engine: sa.Engine | None = None, clock: Clock = utc_now) -> FastAPI:
    app = FastAPI(
        title="StoreBox aggregator",
        version="1",
        description="门店数据汇总服务 / the cloud aggregator: store sync protocol, HQ API, packages.",
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
    for module in (sync, hq, transfers, packages):
        app.include_router(module.router)
    install_error_handlers(app)

    @app.middleware("http")
    async def server_time(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        # Every answer carries the aggregator's clock: a box with a wrong clock corrects its offset from it.
        response = await call_next(request)
        response.headers[SERVER_TIME_HEADER] = str(int(clock().timestamp()))
        return response

    @app.get("/health", include_in_schema=False)
    def health() -> Any:
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError as exc:
            return JSONResponse({"status": "down", "database": False, "error": type(exc).__name__}, status_code=503)
        return {"status": "ok", "database": True, "time": clock().isoformat()}

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def database_answers(engine: sa.Engine) -> bool:
    """The watchdog's health check: the database takes a query."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError:
        return False
    return True
