"""What the API needs from the box (ApiDeps), and the FastAPI dependencies built on it.

`require(permission)` is the one way an endpoint states the permission it needs; `permission_of`
reads it back from a route, for the OpenAPI `x-permission` field and the roles x endpoints test.
Both are built on `Access`: a permission together with the OpenAPI security scheme that carries the
caller — a user's bearer token here, a supplier's API key for the supplier API (routes/supplier_portal.py).
"""

import re
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated, Any, ClassVar, TypeVar

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import OAuth2PasswordBearer
from prometheus_client import CollectorRegistry
from starlette.concurrency import run_in_threadpool

from edge.config import Settings
from edge.security.errors import InvalidToken, NotAuthenticated, PermissionDenied
from edge.security.roles import has_permission
from edge.security.tokens import decode_token
from edge.security.users import User, get_user
from edge.web.errors import ApiError
from edge.writer import LedgerWriter

T = TypeVar("T")
TOKEN_URL = "/api/v1/auth/token"
IDEMPOTENCY_KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,200}$")
DEVICE_ID_PATTERN = r"^[a-z0-9-]{1,64}$"


def _no_health_facts() -> dict[str, Any]:
    return {}


@dataclass(frozen=True, slots=True)
class ApiDeps:
    """Everything the HTTP API uses; built by edge/app.py and passed to create_api."""

    settings: Settings
    writer: LedgerWriter
    open_reader: Callable[[], sqlite3.Connection]
    token_secret: bytes
    metrics_registry: CollectorRegistry
    clock: Callable[[], datetime]
    health: Callable[[], dict[str, Any]] = field(default=_no_health_facts)

    def today(self) -> date:
        """The store's business day now."""
        return self.settings.business_date(self.clock())


def get_deps(request: Request) -> ApiDeps:
    deps: ApiDeps = request.app.state.deps
    return deps


Deps = Annotated[ApiDeps, Depends(get_deps)]


def get_reader(deps: Deps) -> Iterator[sqlite3.Connection]:
    """A read connection for this request, closed after it."""
    conn = deps.open_reader()
    try:
        yield conn
    finally:
        conn.close()


Reader = Annotated[sqlite3.Connection, Depends(get_reader)]


def _read_with(deps: ApiDeps, fn: Callable[..., T], *args: Any) -> T:
    conn = deps.open_reader()
    try:
        return fn(conn, *args)
    finally:
        conn.close()


async def read(deps: ApiDeps, fn: Callable[..., T], *args: Any) -> T:
    """`fn(conn, *args)` on a fresh read connection in a worker thread: e.g. to answer a write with what it wrote."""
    return await run_in_threadpool(_read_with, deps, fn, *args)


bearer_token = OAuth2PasswordBearer(
    tokenUrl=TOKEN_URL, auto_error=False, description="Bearer token from POST /api/v1/auth/token"
)


def current_user(deps: Deps, reader: Reader, token: Annotated[str | None, Depends(bearer_token)]) -> User:
    """The user of the bearer token, as the database has them now (a disabled user is refused at once)."""
    if token is None:
        raise NotAuthenticated()
    claims = decode_token(deps.token_secret, token, now=deps.clock())
    user = get_user(reader, claims.sub)
    if user is None or not user.active:
        raise InvalidToken("the user is disabled or no longer exists")
    return user


CurrentUser = Annotated[User, Depends(current_user)]


class Access:
    """What an endpoint needs from its caller: one permission, checked against the caller that the OpenAPI
    security scheme `scheme` carries. Subclasses are the FastAPI dependencies that do the check."""

    scheme: ClassVar[str] = "OAuth2PasswordBearer"
    permission: str


class Requirement(Access):
    """Dependency that lets the request through only when the user's role holds `permission`."""

    def __init__(self, permission: str) -> None:
        self.permission = permission

    def __call__(self, user: CurrentUser) -> User:
        if not has_permission(user.role, self.permission):
            raise PermissionDenied(self.permission, user.role.value)
        return user

    def __repr__(self) -> str:
        return f"require({self.permission!r})"


def require(permission: str) -> Any:
    """`user: Annotated[User, require("stock:read")]` or `dependencies=[require(...)]` on a route."""
    return Depends(Requirement(permission))


def access_of(route: APIRoute) -> Access | None:
    """What a route requires of its caller, found in its dependency tree (None for public routes)."""
    pending: list[Dependant] = [route.dependant]
    while pending:
        dependant = pending.pop()
        if isinstance(dependant.call, Access):
            return dependant.call
        pending.extend(dependant.dependencies)
    return None


def permission_of(route: APIRoute) -> str | None:
    """The permission a route requires (None for public routes)."""
    access = access_of(route)
    return None if access is None else access.permission


def idempotency_key(request: Request) -> str:
    """The `Idempotency-Key` header: required, 1..200 visible ASCII characters (400 otherwise)."""
    key = request.headers.get("idempotency-key")
    if key is None:
        raise ApiError(
            400,
            "idempotency_key_missing",
            "缺少 Idempotency-Key 请求头: 每个写入请求都须带一个唯一键，重试时使用同一个键",
            "missing Idempotency-Key header: every write needs a unique key, reused on retries",
            header="Idempotency-Key",
        )
    if not IDEMPOTENCY_KEY_PATTERN.match(key):
        raise ApiError(
            400,
            "idempotency_key_invalid",
            "Idempotency-Key 须为 1 到 200 个可见 ASCII 字符",
            "Idempotency-Key must be 1 to 200 visible ASCII characters",
            header="Idempotency-Key",
            length=len(key),
        )
    return key


IDEMPOTENCY_KEY_PARAMETER: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": True,
    "description": "Unique key of this write (1..200 visible ASCII characters, e.g. a UUID); "
    "send the same key when retrying. 每次写入一个唯一键，重试时使用同一个键。",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[\\x21-\\x7e]+$"},
}
