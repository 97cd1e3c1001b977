"""Logging in and out, and the language switch (remembered in a cookie for a year)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Query, Request
from fastapi.responses import Response

from edge.web.pages.client import ApiFailure, PageApi, asgi_client
from edge.web.pages.framework import (
    LANG_COOKIE,
    LANG_MAX_AGE,
    SESSION_COOKIE,
    Page,
    PageRouter,
    redirect,
    safe_next,
    shell_for,
)
from edge.web.pages.i18n import LANGUAGES

router = PageRouter()
MAX_USERNAME = 100
MAX_PASSWORD = 1000


@router.get("/login")
async def login_form(
    request: Request, next: Annotated[str, Query(max_length=2000)] = "/", expired: str = ""
) -> Response:
    shell = shell_for(request)
    return shell.render("login.html", next=safe_next(next), expired=expired == "1", errors={}, username="")


@router.post("/login")
async def login(
    request: Request,
    username: Annotated[str, Form(max_length=100_000)] = "",
    password: Annotated[str, Form(max_length=100_000)] = "",
    next: Annotated[str, Form(max_length=100_000)] = "/",
) -> Response:
    """The API's password login; the token becomes an HttpOnly, SameSite=Strict session cookie."""
    shell = shell_for(request)
    errors: dict[str, str] = {}
    if not username.strip():
        errors["username"] = shell.t("login.username_required")
    elif len(username) > MAX_USERNAME or "\x00" in username:
        errors["username"] = shell.t("login.username_invalid", n=MAX_USERNAME)
        username = username[:MAX_USERNAME].replace("\x00", "")
    if not password:
        errors["password"] = shell.t("login.password_required")
    elif len(password) > MAX_PASSWORD:
        errors["password"] = shell.t("login.password_invalid", n=MAX_PASSWORD)
    if not errors:
        api = PageApi(asgi_client(request.app), None)
        try:
            token = await api.post("/api/v1/auth/token", data={"username": username.strip(), "password": password})
        except ApiFailure as failure:
            if failure.status == 401:
                errors["form"] = shell.t("login.failed")
            else:
                errors["form"] = failure.text(shell.lang)
        else:
            response = redirect(request, safe_next(next))
            response.set_cookie(
                SESSION_COOKIE,
                token["access_token"],
                max_age=int(token["expires_in"]),
                path="/",
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
            )
            return response
    return shell.render("login.html", status=400, next=safe_next(next), expired=False, errors=errors, username=username)


@router.post("/logout")
async def logout(page: Page) -> Response:
    response = page.redirect("/login")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/lang/{lang}")
async def switch_language(request: Request, lang: str, next: Annotated[str, Query(max_length=2000)] = "/") -> Response:
    response = redirect(request, safe_next(next))
    if lang in LANGUAGES:
        response.set_cookie(LANG_COOKIE, lang, max_age=LANG_MAX_AGE, path="/", samesite="lax")
    return response
