"""The store manager's page (docs/web.md): server-rendered over the box's own API, live by server-sent events.

`mount_pages(app)` adds the page routes, the static files and the HTML error pages to the API app. Each area is
one module with its own `router`; PAGE_MODULES lists them in menu order.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from edge.web.pages.framework import STATIC_DIR, install_page_errors

PAGE_MODULES = (
    "edge.web.pages.session",
    "edge.web.pages.live",
    "edge.web.pages.dashboard",
    "edge.web.pages.stock",
    "edge.web.pages.documents",
    "edge.web.pages.transfers",
    "edge.web.pages.replenishment",
    "edge.web.pages.receiving",
    "edge.web.pages.suppliers",
    "edge.web.pages.purchasing",
    "edge.web.pages.finance",
    "edge.web.pages.devices",
    "edge.web.pages.cold_rooms",
    "edge.web.pages.rules",
    "edge.web.pages.modules",
)


def page_modules() -> list[ModuleType]:
    """The area modules that exist (areas land one by one)."""
    modules = []
    for name in PAGE_MODULES:
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as err:
            if err.name != name:
                raise
    return modules


def mount_pages(app: FastAPI) -> None:
    for module in page_modules():
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR, follow_symlink=False), name="static")
    install_page_errors(app)
