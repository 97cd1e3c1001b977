"""The page's way to the data: the box's own HTTP API, called in process with the user's bearer token.

`PageApi` is an httpx client over `ASGITransport(app)`: every call goes through the same routes, permission checks,
validation, idempotency and error mapping as a device's or HQ's request, and no page code touches the database.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import uuid4

import httpx

from edge.web.pages.i18n import pick_language

BASE_URL = "http://box.internal"


class ApiFailure(Exception):
    """An API answer other than 2xx, with the API's error body: code, both messages and the detail."""

    def __init__(self, status: int, code: str, message: str, message_en: str, detail: Mapping[str, Any]) -> None:
        super().__init__(f"{status} {code}: {message_en}")
        self.status = status
        self.code = code
        self.message = message
        self.message_en = message_en
        self.detail = dict(detail)

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiFailure:
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        detail = body.get("detail") if isinstance(body.get("detail"), dict) else {}
        return cls(
            response.status_code,
            str(body.get("code", f"http_{response.status_code}")),
            str(body.get("message", "请求失败")),
            str(body.get("message_en", "request failed")),
            detail or {},
        )

    def text(self, lang: str) -> str:
        return self.message_en if pick_language(lang) == "en" else self.message

    def field_errors(self, lang: str) -> dict[str, str]:
        """{field: message} from a validation error's problems, or from a domain error naming its `field`."""
        en = pick_language(lang) == "en"
        errors: dict[str, str] = {}
        for problem in self.detail.get("errors", ()):
            if isinstance(problem, dict) and problem.get("field"):
                name = str(problem["field"]).split(".")[-1] if "." in str(problem["field"]) else str(problem["field"])
                errors.setdefault(name, str(problem.get("message_en" if en else "message", "")))
        field = self.detail.get("field")
        if isinstance(field, str) and field not in errors:
            errors[field] = self.text(lang)
        return errors


class PageApi:
    """The API as one logged-in user sees it."""

    def __init__(self, client: httpx.AsyncClient, token: str | None) -> None:
        self._client = client
        self._token = token

    def _headers(self, key: str | None, write: bool) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        if write:
            headers["Idempotency-Key"] = key or f"page-{uuid4()}"
        return headers

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        files: Any = None,
        key: str | None = None,
        raw: bool = False,
    ) -> Any:
        write = method not in ("GET", "HEAD")
        path = _no_dot_segments(path)
        clean = {k: v for k, v in (params or {}).items() if v is not None and v != ""}
        response = await self._client.request(
            method,
            path,
            params=clean,
            json=json,
            data=data,
            files=files,
            headers=self._headers(key, write and path != "/api/v1/auth/token"),
        )
        if response.status_code >= 400:
            raise ApiFailure.from_response(response)
        if raw:
            return response
        if not response.content:
            return None
        return response.json()

    async def get(self, path: str, /, *, raw: bool = False, **params: Any) -> Any:
        return await self.request("GET", path, params=params, raw=raw)

    async def post(self, path: str, /, **kwargs: Any) -> Any:
        return await self.request("POST", path, **kwargs)

    async def put(self, path: str, /, **kwargs: Any) -> Any:
        return await self.request("PUT", path, **kwargs)

    async def patch(self, path: str, /, **kwargs: Any) -> Any:
        return await self.request("PATCH", path, **kwargs)

    async def delete(self, path: str, /, **kwargs: Any) -> Any:
        return await self.request("DELETE", path, **kwargs)


def _no_dot_segments(path: str) -> str:
    """A path segment of "." or ".." (a SKU or room typed by a user) kept as data: httpx would otherwise resolve it
    and call another endpoint (`/api/v1/items/.` is `/api/v1/items`). Percent-encoded, the API sees the text."""
    parts = path.split("/")
    if not any(part in (".", "..") for part in parts):
        return path
    return "/".join(part.replace(".", "%2E") if part in (".", "..") else part for part in parts)


def asgi_client(app: Any) -> httpx.AsyncClient:
    """One in-process client per app (kept in app.state): no sockets, no second server."""
    client: httpx.AsyncClient | None = getattr(app.state, "page_api_client", None)
    if client is None:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL, timeout=60.0)
        app.state.page_api_client = client
    return client
