"""The HTTP API of the box: `create_api(deps)` builds the FastAPI app; edge/app.py serves it."""

import re

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from edge.finance.invoices import MAX_IMPORT_BYTES
from edge.web.deps import ApiDeps, permission_of
from edge.web.errors import error_responses, install_error_handlers
from edge.web.middleware import MAX_BODY_BYTES, BodySizeLimit, HttpMetrics
from edge.web.pages import mount_pages
from edge.web.pages.framework import is_page_path
from edge.web.routes import (
    attachments,
    auth,
    books,
    cold_rooms,
    compliance,
    dashboard,
    devices,
    documents,
    emergency,
    finance,
    health,
    invoices,
    items,
    ledger,
    locations,
    metrics,
    modules,
    packages,
    prices,
    receiving,
    replenishment,
    rules,
    signals,
    stock,
    stores,
    supplier_portal,
    suppliers,
    sync,
    transfers,
    vouchers,
)

API_PREFIX = "/api/v1"
# File uploads may be larger than other bodies: supplier papers and invoice files.
UPLOAD_PATHS = (
    re.compile(r"^/api/v1/suppliers/[^/]+/papers$"),
    re.compile(r"^/api/v1/invoices/import$"),
    re.compile(r"^/api/v1/receiving/drafts/photo$"),
    re.compile(r"^/suppliers/[^/]+/papers$"),  # the page's upload forms, handed on to the API above
    re.compile(r"^/receiving/photo$"),
)
PUBLIC_PATHS = frozenset({"/health", "/api/v1/health", "/metrics", "/api/v1/auth/token"})

DESCRIPTION = """\
StoreBox in-store API (门店进销存接口). Log in with `POST /api/v1/auth/token` (OAuth2 password flow)
and send `Authorization: Bearer <token>`. Every write needs an `Idempotency-Key` header. Every error
is JSON `{"code", "message", "message_en", "detail"}`. Each operation names the permission it
needs in `x-permission`; see docs/api.md for the roles that hold each one.
"""


ROUTERS: tuple[APIRouter, ...] = tuple(
    module.router
    for module in (
        health,
        metrics,
        auth,
        items,
        locations,
        suppliers,
        stores,
        documents,
        stock,
        vouchers,
        ledger,
        finance,
        invoices,
        prices,
        compliance,
        books,
        devices,
        receiving,
        supplier_portal,
        cold_rooms,
        attachments,
        replenishment,
        signals,
        emergency,
        sync,
        transfers,
        packages,
        dashboard,
        rules,
        modules,
    )
)


def create_api(deps: ApiDeps) -> FastAPI:
    """The API over `deps`; building it has no side effects beyond registering HTTP metrics."""
    app = FastAPI(
        title="StoreBox API",
        version="1",
        description=DESCRIPTION,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=f"{API_PREFIX}/docs/oauth2-redirect",
        swagger_ui_parameters={"showExtensions": True},
        responses=error_responses(500),
        generate_unique_id_function=lambda route: route.name,
    )
    app.state.deps = deps
    for router in ROUTERS:
        for route in router.routes:
            permission = permission_of(route) if isinstance(route, APIRoute) else None
            if isinstance(route, APIRoute) and permission is not None:
                route.openapi_extra = {**(route.openapi_extra or {}), "x-permission": permission}
        app.include_router(router)
    install_error_handlers(app)
    mount_pages(app)  # the manager's page on the same app, over this API (docs/web.md)
    app.add_middleware(
        BodySizeLimit,
        limit=MAX_BODY_BYTES,
        upload_paths=UPLOAD_PATHS,
        # multipart adds a boundary and headers around the file
        upload_limit=max(deps.settings.papers_max_upload_bytes, MAX_IMPORT_BYTES) + 64 * 1024,
        is_page=is_page_path,
    )
    app.add_middleware(HttpMetrics, registry=deps.metrics_registry)
    return app
