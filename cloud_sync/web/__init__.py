"""HQ pages on the aggregator (docs/hq-page.md): the store page's look, catalogs and charts, over the HQ API.

`mount_hq_pages(app)` adds the page routes under /hq (and /lang, /), the box page's static files at /static and
the HTML not-found page for page paths; the API keeps its JSON everywhere else.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from cloud_sync.web import rollouts
from cloud_sync.web.framework import install_page_not_found
from cloud_sync.web.routes import router
from edge.web.pages.framework import STATIC_DIR


def mount_hq_pages(app: FastAPI) -> None:
    app.include_router(router)
    app.include_router(rollouts.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR, follow_symlink=False), name="static")
    install_page_not_found(app)
