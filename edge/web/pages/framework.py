"""What every page handler builds on: the logged-in `Page`, rendering, forms, flashes, exports and errors.

A handler is `async def view(page: Page, ...) -> Response` on a `PageRouter`. `Page` logs the user in from the
session cookie (the API's bearer token, asking `/api/v1/auth/me` who it is), checks the CSRF token of every
POST, and carries the language, the store's time zone and `page.api`, the only way to data (client.py).

Errors never reach the user as a stack trace: an expired session goes to the login page, a refused permission to
the no-permission page, a missing object to the not-found page, anything else to an error page with a reference
that is in the log with its traceback.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, unquote, urlencode
from uuid import uuid4
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException

from edge.web.pages import format as fmt
from edge.web.pages.client import ApiFailure, PageApi, asgi_client
from edge.web.pages.i18n import Catalog, catalog, pick_language
from edge.web.pages.nav import active, visible

log = logging.getLogger("storebox.pages")

SESSION_COOKIE = "sb_session"
LANG_COOKIE = "sb_lang"
FLASH_COOKIE = "sb_flash"
CSRF_FIELD = "_csrf"
CSRF_HEADER = "x-csrf-token"
IDEMPOTENCY_FIELD = "_idem"
LANG_MAX_AGE = 365 * 24 * 3600
TEMPLATES_DIR = Path(__file__).with_name("templates")
ALERT_KINDS = {
    "cold-room": "alert.kind.cold_room",
    "device-offline": "alert.kind.device_offline",
    "compliance": "alert.kind.compliance",
    "returns": "alert.kind.returns",
    "rule": "alert.kind.rule",
    "module": "alert.kind.module",
}
# Every page: not framed by another site (clickjacking of the confirm forms), not kept in a shared browser's
# cache (the books), no referrer leaving the box, no content sniffing.
PAGE_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}
STATIC_DIR = Path(__file__).resolve().parents[1] / "static"


class PageRoute(APIRoute):
    """A page's route: an unexpected error becomes the error page right here, so the connection stays healthy
    (an app-wide `Exception` handler answers too, but Starlette re-raises after it and the server drops the
    connection)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except EXPECTED_ERRORS:
                raise
            except Exception as exc:
                return unexpected_error_page(request, exc)

        return guarded


class PageRouter(APIRouter):
    """An APIRouter for pages: HTML answers, kept out of the API's OpenAPI document."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(include_in_schema=False, default_response_class=HTMLResponse, route_class=PageRoute, **kwargs)


class LoginRequired(Exception):
    """No session, or the token expired: the login page, then back to where the user was."""

    def __init__(self, *, expired: bool = False) -> None:
        super().__init__("login required")
        self.expired = expired


class PageForbidden(Exception):
    """The user's role lacks what the page needs (the API refused, or the page checked first)."""

    def __init__(self, permission: str | None = None) -> None:
        super().__init__(f"permission {permission} needed")
        self.permission = permission


class BadCsrf(Exception):
    """A POST without this session's CSRF token (another site's form, or a stale page)."""


def unexpected_error_page(request: Request, exc: BaseException) -> HTMLResponse:
    """The error page with a reference that is in the log with the traceback; never the traceback itself."""
    reference = uuid4().hex[:12]
    log.error("page error %s in %s %s", reference, request.method, request.url.path, exc_info=exc)
    shell = shell_for(request)
    return shell.render(
        "error.html",
        status=500,
        title_key="error.unexpected.title",
        body_key="error.unexpected.body",
        reference=reference,
    )


# Errors the app's handlers turn into pages (login, no permission, CSRF, API refusals, HTTP and validation errors).
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    LoginRequired,
    PageForbidden,
    BadCsrf,
    ApiFailure,
    StarletteHTTPException,
    RequestValidationError,
)

# --- rendering ----------------------------------------------------------------------------------------------


def make_environment(*template_dirs: Path, rendering: ContextVar[Any]) -> Environment:
    """The page's Jinja environment over `template_dirs` (first wins): autoescape, the format filters, and globals
    that reach the shell being rendered (`rendering` holds it) from imported macros. The HQ pages use it too."""
    env = Environment(
        loader=ChoiceLoader([FileSystemLoader(d) for d in template_dirs]),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        fen=fmt.fen,
        qty=fmt.qty,
        grams=fmt.grams,
        pct=fmt.percent,
        day=fmt.day,
        urlq=lambda value: quote(str(value), safe=""),
    )
    # Imported macros (macros.html) see only globals: the shell of the request being rendered is reached here.
    env.globals.update(
        new_key=lambda: uuid4().hex,
        urlencode=urlencode,
        t=lambda key, **values: rendering.get().t(key, **values),
        csrf=lambda: rendering.get().csrf,
    )
    return env


_RENDERING: ContextVar[Shell] = ContextVar("rendering")
ENVIRONMENT = make_environment(TEMPLATES_DIR, rendering=_RENDERING)


def static_url(path: str) -> str:
    return f"/static/{path.lstrip('/')}"


@dataclass(slots=True)
class Shell:
    """What every template sees besides its own context: language, user, menu, CSRF token, flash."""

    request: Request
    lang: str
    tz: ZoneInfo
    catalog: Catalog
    me: Mapping[str, Any] | None = None
    csrf: str = ""
    flash: tuple[str, str] | None = None  # (catalog key, argument)
    permissions: frozenset[str] = field(default_factory=frozenset)

    def t(self, key: str, /, **values: object) -> str:
        return self.catalog.text(self.lang, key, **values)

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    def globals(self) -> dict[str, Any]:
        path = self.request.url.path
        return {
            "t": self.t,
            "lang": self.lang,
            "other_lang": "en" if self.lang == "zh" else "zh",
            "me": self.me,
            "can": self.can,
            "csrf_token": self.csrf,
            "static": static_url,
            "path": path,
            "full_path": path + (f"?{self.request.url.query}" if self.request.url.query else ""),
            "nav": [(entry, active(path, entry)) for entry in visible(self.permissions)],
            "flash": self.flash,
            "dt": lambda value, seconds=False: fmt.local_time(value, self.tz, seconds=seconds),
            "store_id": _settings(self.request).store_id,
            "tz_name": self.tz.key,
            "now_local": datetime.now(self.tz).strftime("%Y-%m-%d %H:%M"),
            "is_htmx": self.request.headers.get("hx-request") == "true",
            # Alert kinds on the bus (alert/<kind>) in the page's language, for live.js's notices.
            "alert_kinds": {kind: self.t(key) for kind, key in ALERT_KINDS.items()},
        }

    def render(self, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
        token = _RENDERING.set(self)
        try:
            html = ENVIRONMENT.get_template(template).render({**self.globals(), **context})
        finally:
            _RENDERING.reset(token)
        response = HTMLResponse(html, status_code=status)
        if self.flash is not None:
            response.delete_cookie(FLASH_COOKIE, path="/")
        response.headers["Content-Language"] = "zh-CN" if self.lang == "zh" else "en"
        response.headers.update(PAGE_HEADERS)
        return response


def _settings(request: Request) -> Any:
    return request.app.state.deps.settings


def shell_for(request: Request) -> Shell:
    """The shell of an anonymous request (login page, error pages before the user is known)."""
    settings = _settings(request)
    flash = _read_flash(request.cookies.get(FLASH_COOKIE))
    return Shell(
        request=request,
        lang=pick_language(request.cookies.get(LANG_COOKIE)),
        tz=ZoneInfo(settings.timezone),
        catalog=catalog(),
        flash=flash,
    )


def _read_flash(value: str | None) -> tuple[str, str] | None:
    if not value:
        return None
    key, _, arg = value.partition("|")
    return (key, unquote(arg)[:200]) if key in catalog() else None


def csrf_token(request: Request, session_token: str) -> str:
    secret: bytes = request.app.state.deps.token_secret
    return hmac.new(secret, b"csrf|" + session_token.encode(), hashlib.sha256).hexdigest()[:40]


# --- the logged-in page --------------------------------------------------------------------------------------


@dataclass(slots=True)
class PageContext:
    """One request of a logged-in user: API client, language, rendering, forms."""

    request: Request
    api: PageApi
    shell: Shell
    _form: FormData | None = None

    @property
    def me(self) -> Mapping[str, Any]:
        assert self.shell.me is not None
        return self.shell.me

    @property
    def lang(self) -> str:
        return self.shell.lang

    @property
    def tz(self) -> ZoneInfo:
        return self.shell.tz

    def t(self, key: str, /, **values: object) -> str:
        return self.shell.t(key, **values)

    def can(self, permission: str) -> bool:
        return self.shell.can(permission)

    def require(self, permission: str) -> None:
        """Refuse the page before asking the API, e.g. to hide a form the user could not submit."""
        if not self.can(permission):
            raise PageForbidden(permission)

    def render(self, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
        return self.shell.render(template, status=status, **context)

    def redirect(self, url: str, *, flash: str | None = None, arg: str = "") -> Response:
        return redirect(self.request, url, flash=flash, arg=arg)

    async def form(self) -> FormData:
        if self._form is None:
            self._form = await self.request.form()
        return self._form

    async def form_key(self) -> str:
        """The form's idempotency key (hidden `_idem`): a resubmitted form posts once."""
        value = (await self.form()).get(IDEMPOTENCY_FIELD)
        if isinstance(value, str) and 8 <= len(value) <= 64 and value.isalnum():
            return f"page-{value}"
        return f"page-{uuid4().hex}"

    async def export(
        self, rows: Iterable[Mapping[str, Any]], columns: Sequence[tuple[str, str]], fmt_: str, filename: str
    ) -> Response:
        """`rows` as a CSV (UTF-8 with BOM, so Excel reads the Chinese) or XLSX download; headers from the catalog.
        Built in a worker thread: a large export does not hold up other pages, the API or the live streams."""
        headers = [(key, self.t(label)) for key, label in columns]
        return await run_in_threadpool(table_export, list(rows), headers, fmt_, filename)


async def page_context(request: Request) -> PageContext:
    shell = shell_for(request)
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise LoginRequired()
    api = PageApi(asgi_client(request.app), token)
    try:
        me = await api.get("/api/v1/auth/me")
    except ApiFailure as failure:
        if failure.status in (401, 403):
            raise LoginRequired(expired=True) from None
        raise
    shell.me = me
    shell.permissions = frozenset(me.get("permissions", ()))
    shell.csrf = csrf_token(request, token)
    context = PageContext(request=request, api=api, shell=shell)
    await check_csrf(request, shell.csrf, context.form)
    return context


async def check_csrf(request: Request, expected: str, form: Callable[[], Awaitable[FormData]]) -> None:
    """A request that changes something carries `expected` in the X-CSRF-Token header (htmx) or the `_csrf` field
    (a plain form); BadCsrf otherwise. Used by the box's and the HQ pages."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        value = (await form()).get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if sent is None or not hmac.compare_digest(sent, expected):
        raise BadCsrf()


Page = Annotated[PageContext, Depends(page_context)]


def redirect(request: Request, url: str, *, flash: str | None = None, arg: str = "") -> Response:
    """303 to `url` (an htmx request gets HX-Redirect), with an optional one-shot flash message."""
    if request.headers.get("hx-request") == "true":
        response: Response = Response(status_code=204, headers={"HX-Redirect": url})
    else:
        response = RedirectResponse(url, status_code=303)
    if flash is not None:
        # The argument percent-encoded: a cookie holds ASCII only (a supplier's or an item's Chinese name is fine).
        value = f"{flash}|{quote(arg[:200], safe='')}"
        response.set_cookie(FLASH_COOKIE, value, path="/", httponly=True, samesite="strict")
    return response


def safe_next(value: str | None, home: str = "/") -> str:
    """A local path to go back to after login or a language switch; anything else goes `home`."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value or len(value) > 2000:
        return home
    return value


# --- exports ---------------------------------------------------------------------------------------------------


def table_export(
    rows: Iterable[Mapping[str, Any]], columns: Sequence[tuple[str, str]], fmt_: str, filename: str
) -> Response:
    """CSV or XLSX of `rows`, columns as (key, header). Values are written as they are (fen stay fen)."""
    if fmt_ == "xlsx":
        from openpyxl import Workbook  # type: ignore[import-untyped]

        book = Workbook(write_only=True)
        sheet = book.create_sheet(filename[:31])
        sheet.append([header for _, header in columns])
        for row in rows:
            sheet.append([_cell(row.get(key)) for key, _ in columns])
        buffer = io.BytesIO()
        book.save(buffer)
        return Response(
            buffer.getvalue(),
            media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            headers={"Content-Disposition": f'attachment; filename="{filename}.xlsx"'},
        )
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow([header for _, header in columns])
    for row in rows:
        writer.writerow([_cell(row.get(key)) for key, _ in columns])
    return Response(
        "\ufeff" + text.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'},
    )


def _cell(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return str(value)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@") and not _numeric(value):
        return "'" + value  # no formulas from data into a spreadsheet
    return value


def _numeric(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


# --- errors ----------------------------------------------------------------------------------------------------

API_PREFIXES = ("/api/", "/metrics", "/health")


def is_page_path(path: str) -> bool:
    return not path.startswith(API_PREFIXES) and path not in ("/metrics", "/health")


def install_page_errors(app: FastAPI) -> None:
    """HTML answers for page paths; the API's own JSON handlers keep every other path."""
    json_http = app.exception_handlers.get(StarletteHTTPException)
    json_validation = app.exception_handlers.get(RequestValidationError)
    json_unexpected = app.exception_handlers.get(Exception)

    def error_page(request: Request, status: int, title: str, body: str, **extra: Any) -> HTMLResponse:
        shell = shell_for(request)
        return shell.render("error.html", status=status, title_key=title, body_key=body, **extra)

    async def on_login_required(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LoginRequired)
        target = safe_next(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        if request.method != "GET":
            target = "/"
        url = "/login?" + urlencode({"next": target, **({"expired": "1"} if exc.expired else {})})
        response = redirect(request, url)
        if exc.expired:
            response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    async def on_forbidden(request: Request, exc: Exception) -> Response:
        return error_page(request, 403, "error.forbidden.title", "error.forbidden.body")

    async def on_bad_csrf(request: Request, exc: Exception) -> Response:
        return error_page(request, 403, "error.csrf.title", "error.csrf.body")

    async def on_api_failure(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiFailure)
        if exc.status == 401:
            return await on_login_required(request, LoginRequired(expired=True))
        if exc.status == 403:
            return error_page(request, 403, "error.forbidden.title", "error.forbidden.body")
        if exc.status == 404:
            return error_page(request, 404, "error.not_found.title", "error.not_found.body")
        shell = shell_for(request)
        return shell.render(
            "error.html",
            status=exc.status if 400 <= exc.status < 600 else 500,
            title_key="error.refused.title",
            body_key=None,
            message=exc.text(shell.lang),
        )

    async def on_http(request: Request, exc: Exception) -> Response:
        if not is_page_path(request.url.path) and json_http is not None:
            return await _call(json_http, request, exc)
        status = getattr(exc, "status_code", 500)
        if status == 404:
            return error_page(request, 404, "error.not_found.title", "error.not_found.body")
        if status == 405:
            return error_page(request, 405, "error.not_found.title", "error.not_found.body")
        return error_page(request, status, "error.refused.title", "error.unexpected.body")

    async def on_validation(request: Request, exc: Exception) -> Response:
        if not is_page_path(request.url.path) and json_validation is not None:
            return await _call(json_validation, request, exc)
        return error_page(request, 422, "error.bad_request.title", "error.bad_request.body")

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        if not is_page_path(request.url.path) and json_unexpected is not None:
            return await _call(json_unexpected, request, exc)
        return unexpected_error_page(request, exc)

    app.add_exception_handler(LoginRequired, on_login_required)
    app.add_exception_handler(PageForbidden, on_forbidden)
    app.add_exception_handler(BadCsrf, on_bad_csrf)
    app.add_exception_handler(ApiFailure, on_api_failure)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(Exception, on_unexpected)


async def _call(handler: Callable[..., Any], request: Request, exc: Exception) -> Response:
    response = handler(request, exc)
    if hasattr(response, "__await__"):
        response = await response
    assert isinstance(response, Response)
    return response
