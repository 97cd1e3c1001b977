"""HQ bearer tokens: random high-entropy tokens shown once, kept only as their sha256 in `hq_tokens`.

Every route under /api/v1/hq takes `require_hq`; a missing, unknown or revoked token is refused with 401 and the
JSON error body, never saying which of them it was beyond the code.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from cloud_sync.errors import CloudError
from cloud_sync.tables import hq_tokens

TOKEN_PREFIX = "sbhq_"
MAX_TOKEN_LEN = 200


@dataclass(frozen=True, slots=True)
class HqCaller:
    """The HQ token a request came with."""

    token_id: int
    name: str


def new_token() -> str:
    """A fresh token: 256 random bits, URL-safe, with a prefix that says what it is."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def add_token(conn: sa.Connection, name: str, now: datetime) -> tuple[int, str]:
    """Store a new token under `name`; returns (id, token). The token itself is never stored."""
    token = new_token()
    result = conn.execute(
        hq_tokens.insert().values(name=name, token_sha256=token_digest(token), created_at=now.isoformat())
    )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0]), token


def list_tokens(conn: sa.Connection) -> list[dict[str, Any]]:
    rows = conn.execute(
        sa.select(hq_tokens.c.id, hq_tokens.c.name, hq_tokens.c.created_at, hq_tokens.c.revoked_at).order_by(
            hq_tokens.c.id
        )
    )
    return [dict(r._mapping) for r in rows]


def revoke_token(conn: sa.Connection, token_id: int, now: datetime) -> bool:
    result = conn.execute(
        hq_tokens.update()
        .where(hq_tokens.c.id == token_id, hq_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now.isoformat())
    )
    return bool(result.rowcount)


def check_token(engine: sa.Engine, authorization: str | None) -> HqCaller:
    """The caller of a valid `Authorization: Bearer <token>`, or CloudError 401."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise CloudError(
            "hq_auth_missing",
            "缺少总部令牌 (Authorization: Bearer ...)",
            "an HQ token is required (Authorization: Bearer ...)",
            401,
        )
    if len(token) > MAX_TOKEN_LEN:
        raise CloudError("hq_auth_invalid", "总部令牌无效或已吊销", "the HQ token is unknown or revoked", 401)
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(hq_tokens.c.id, hq_tokens.c.name).where(
                hq_tokens.c.token_sha256 == token_digest(token), hq_tokens.c.revoked_at.is_(None)
            )
        ).first()
    if row is None:
        raise CloudError("hq_auth_invalid", "总部令牌无效或已吊销", "the HQ token is unknown or revoked", 401)
    return HqCaller(int(row.id), str(row.name))


async def require_hq(request: Request) -> HqCaller:
    """FastAPI dependency of every HQ route."""
    engine: sa.Engine = request.app.state.engine
    return await run_in_threadpool(check_token, engine, request.headers.get("authorization"))
