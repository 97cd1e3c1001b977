"""What every HQ page builds on: the logged-in `HqPage`, rendering in the box page's look, CSRF, downloads, errors.

An HQ page handler is `async def view(page: HqPage, ...) -> Response` on an `HqPageRouter`. The session is the HQ
bearer token itself (made by `storebox-cloud hq token-add`), kept in an HttpOnly SameSite=Strict cookie; `page.api`
is the box page's in-process client (edge/web/pages/client.py) carrying it, so every figure comes through the HQ
API with its checks and errors, never from the database.

Errors never reach the user as a stack trace: an unknown or revoked token goes to the login page, a refused
parameter to a page with the API's message in the user's language, anything else to an error page with a reference
that is in the log with its traceback.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Coroutine, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode
from uuid import uuid4
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException

from edge.web.pages import format as fmt
from edge.web.pages.client import ApiFailure, PageApi, asgi_client
from edge.web.pages.framework import (
    LANG_COOKIE,
    PAGE_HEADERS,
    BadCsrf,
    check_csrf,
    make_environment,
    static_url,
)
from edge.web.pages.framework import TEMPLATES_DIR as BOX_TEMPLATES_DIR
from edge.web.pages.framework import safe_next as box_safe_next
from edge.web.pages.i18n import Catalog, catalog, pick_language

log = logging.getLogger("storebox.cloud.pages")

SESSION_COOKIE = "sb_hq_session"
SESSION_MAX_AGE = 12 * 3600
TEMPLATES_DIR = Path(__file__).with_name("templates")
# HQ and its stores are in China: times the API gives in UTC are shown in Beijing time.
TIME_ZONE = ZoneInfo("Asia/Shanghai")
HOME = "/hq"
LOGIN = "/hq/login"
PAGE_PREFIXES = ("/hq", "/lang/")


class LoginRequired(Exception):
    """No HQ session, or its token was refused by the API (revoked): the login page, then back."""

    def __init__(self, *, expired: bool = False) -> None:
        super().__init__("HQ login required")
        self.expired = expired


# --- rendering ----------------------------------------------------------------------------------------------

_RENDERING: ContextVar[Shell] = ContextVar("hq_rendering")


# The HQ templates first; the box page's macros.html (fields, exports, charts) is shared as it is.
ENVIRONMENT = make_environment(TEMPLATES_DIR, BOX_TEMPLATES_DIR, rendering=_RENDERING)

# The menu: (path, catalog key).
NAV = (
    ("/hq", "hq.nav.stores"),
    ("/hq/stock", "hq.nav.stock"),
    ("/hq/sales", "hq.nav.sales"),
    ("/hq/trial-balance", "hq.nav.trial_balance"),
    ("/hq/compliance", "hq.nav.compliance"),
    ("/hq/rollouts", "hq.nav.rollouts"),
)


def csrf_token(session_token: str) -> str:
    """The session's CSRF token: an HMAC keyed by the HQ token itself. Replicas share no secret, and a page of
    another site, which cannot read the HttpOnly cookie, cannot make it."""
    return hmac.new(session_token.encode(), b"storebox-hq-csrf", hashlib.sha256).hexdigest()[:40]


def age_words(lang_catalog: Catalog, lang: str, seconds: float | None) -> str:
    """How long ago, in the largest whole unit ("3 min ago"); None -> "never"."""
    if seconds is None:
        return lang_catalog.text(lang, "hq.age.never")
    s = max(0, int(seconds))
    if s < 60:
        return lang_catalog.text(lang, "hq.age.seconds", n=s)
    if s < 3600:
        return lang_catalog.text(lang, "hq.age.minutes", n=s // 60)
    if s < 86400:
        return lang_catalog.text(lang, "hq.age.hours", n=s // 3600)
    return lang_catalog.text(lang, "hq.age.days", n=s // 86400)


@dataclass(slots=True)
class Shell:
    """What every HQ template sees besides its own context: language, menu, CSRF token, whether logged in."""

    request: Request
    lang: str
    catalog: Catalog
    logged_in: bool = False
    csrf: str = ""

    def t(self, key: str, /, **values: object) -> str:
        return self.catalog.text(self.lang, key, **values)

    def globals(self) -> dict[str, Any]:
        path = self.request.url.path
        return {
            "t": self.t,
            "lang": self.lang,
            "other_lang": "en" if self.lang == "zh" else "zh",
            "logged_in": self.logged_in,
            "csrf_token": self.csrf,
            "static": static_url,
            "path": path,
            "full_path": path + (f"?{self.request.url.query}" if self.request.url.query else ""),
            "nav": [(href, label, path == href) for href, label in NAV],
            "dt": lambda value, seconds=False: fmt.local_time(value, TIME_ZONE, seconds=seconds),
            "age": lambda seconds: age_words(self.catalog, self.lang, seconds),
            "now_local": datetime.now(TIME_ZONE).strftime("%Y-%m-%d %H:%M"),
        }

    def render(self, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
        token = _RENDERING.set(self)
        try:
            html = ENVIRONMENT.get_template(template).render({**self.globals(), **context})
        finally:
            _RENDERING.reset(token)
        response = HTMLResponse(html, status_code=status)
        response.headers["Content-Language"] = "zh-CN" if self.lang == "zh" else "en"
        response.headers.update(PAGE_HEADERS)  # not framed, not cached, as on the box
        return response


def shell_for(request: Request) -> Shell:
    return Shell(request=request, lang=pick_language(request.cookies.get(LANG_COOKIE)), catalog=catalog())


def redirect(url: str) -> Response:
    return RedirectResponse(url, status_code=303)


def safe_next(value: str | None) -> str:
    """A local HQ path to go back to after login or a language switch; anything else goes to the stores page."""
    return box_safe_next(value, HOME)


# --- the logged-in page --------------------------------------------------------------------------------------


@dataclass(slots=True)
class HqPageContext:
    """One request of an HQ user: the API client with their token, language, rendering, forms, downloads."""

    request: Request
    api: PageApi
    shell: Shell
    _form: FormData | None = None

    @property
    def lang(self) -> str:
        return self.shell.lang

    def t(self, key: str, /, **values: object) -> str:
        return self.shell.t(key, **values)

    def render(self, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
        return self.shell.render(template, status=status, **context)

    def today(self) -> date:
        """Today in Beijing by the aggregator's clock (tests fix the clock)."""
        clock: Callable[[], datetime] = self.request.app.state.clock
        return clock().astimezone(TIME_ZONE).date()

    async def form(self) -> FormData:
        if self._form is None:
            self._form = await self.request.form()
        return self._form

    async def download(self, path: str, params: Mapping[str, Any]) -> Response:
        """The API's own CSV or XLSX export of `path`, handed to the browser as the API made it."""
        answer = await self.api.get(path, raw=True, **params)
        headers = {"Cache-Control": "no-store"}
        disposition = answer.headers.get("content-disposition")
        if disposition:
            headers["Content-Disposition"] = disposition
        return Response(answer.content, media_type=answer.headers.get("content-type"), headers=headers)


async def hq_page_context(request: Request) -> HqPageContext:
    shell = shell_for(request)
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise LoginRequired()
    # The token is checked by every API call the page makes: a revoked one answers 401 and goes to the login page.
    shell.logged_in = True
    shell.csrf = csrf_token(token)
    context = HqPageContext(request=request, api=PageApi(asgi_client(request.app), token), shell=shell)
    await check_csrf(request, shell.csrf, context.form)
    return context


HqPage = Annotated[HqPageContext, Depends(hq_page_context)]


# --- errors ----------------------------------------------------------------------------------------------------


def error_page(request: Request, status: int, title: str, body: str | None, **extra: Any) -> HTMLResponse:
    shell = shell_for(request)
    shell.logged_in = bool(request.cookies.get(SESSION_COOKIE))
    return shell.render("hq/error.html", status=status, title_key=title, body_key=body, **extra)


def login_redirect(request: Request, *, expired: bool) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    target = safe_next(target) if request.method == "GET" else HOME
    response = redirect(f"{LOGIN}?" + urlencode({"next": target, **({"expired": "1"} if expired else {})}))
    if expired:
        response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def page_error(request: Request, exc: Exception) -> Response:
    """The HTML answer to anything a page handler raised; never a stack trace."""
    if isinstance(exc, LoginRequired):
        return login_redirect(request, expired=exc.expired)
    if isinstance(exc, BadCsrf):
        return error_page(request, 403, "hq.error.csrf.title", "hq.error.csrf.body")
    if isinstance(exc, ApiFailure):
        if exc.status == 401:
            return login_redirect(request, expired=True)
        if exc.status == 404:
            return error_page(request, 404, "hq.error.not_found.title", "hq.error.not_found.body")
        lang = pick_language(request.cookies.get(LANG_COOKIE))
        status = exc.status if 400 <= exc.status < 600 else 500
        title = "hq.error.bad_request.title" if status in (400, 422) else "hq.error.refused.title"
        return error_page(request, status, title, None, message=exc.text(lang))
    if isinstance(exc, RequestValidationError):
        fields = sorted({str(e.get("loc", ("", ""))[-1]) for e in exc.errors()})
        return error_page(
            request, 422, "hq.error.bad_request.title", "hq.error.bad_request.body", fields=", ".join(fields)
        )
    if isinstance(exc, StarletteHTTPException):
        if exc.status_code in (404, 405):
            return error_page(request, exc.status_code, "hq.error.not_found.title", "hq.error.not_found.body")
        return error_page(request, exc.status_code, "hq.error.refused.title", "hq.error.unexpected.body")
    reference = uuid4().hex[:12]
    log.error("HQ page error %s in %s %s", reference, request.method, request.url.path, exc_info=exc)
    return error_page(request, 500, "hq.error.unexpected.title", "hq.error.unexpected.body", reference=reference)


class HqPageRoute(APIRoute):
    """A page route whose every failure (dependencies and parameter parsing included) becomes an HTML page.

    Caught here, inside the route, because the aggregator's JSON error handlers and its outer middleware answer
    every other path with the API's error body.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:  # every failure becomes a page, the unexpected ones logged
                return page_error(request, exc)

        return guarded


class HqPageRouter(APIRouter):
    """An APIRouter for HQ pages: HTML answers, kept out of the API's OpenAPI document."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            include_in_schema=False, default_response_class=HTMLResponse, route_class=HqPageRoute, **kwargs
        )


def is_page_path(path: str) -> bool:
    return path == "/" or path.startswith(PAGE_PREFIXES)


def install_page_not_found(app: FastAPI) -> None:
    """An unknown HQ page path (/hq/nothing) answers the HTML not-found page; the API keeps its JSON 404."""
    json_http = app.exception_handlers.get(StarletteHTTPException)

    async def on_http(request: Request, exc: Exception) -> Response:
        if is_page_path(request.url.path) or json_http is None:
            return page_error(request, exc)
        answer = json_http(request, exc)
        if hasattr(answer, "__await__"):
            answer = await answer
        assert isinstance(answer, Response)
        return answer

    app.add_exception_handler(StarletteHTTPException, on_http)
