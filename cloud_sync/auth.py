"""Store authentication: every store request is signed with the store's key (HMAC-SHA256 over method, target,
timestamp, store, key id and the body's sha256; edge/sync/protocol.py). A refusal is logged, counted and kept in
`rejections`; it never says which part was wrong beyond the code.

Keys rotate without downtime: a new key works at once, the one it replaces until `key_grace_hours` later.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from cloud_sync.errors import CloudError
from cloud_sync.tables import rejections, store_keys, stores
from edge.sync.protocol import (
    KEY_ID_HEADER,
    MAX_SKEW_S,
    SIGNATURE_HEADER,
    STORE_HEADER,
    STORE_ID,
    TIMESTAMP_HEADER,
    StoreKey,
    generate_store_key,
    signature_matches,
)

log = logging.getLogger("storebox.cloud.auth")


@dataclass(frozen=True, slots=True)
class StoreIdentity:
    """A store whose request was signed with one of its valid keys; `body` is the request body as received."""

    store: str
    key_id: str
    body: bytes


def _refuse(code: str, message: str, message_en: str, now: datetime, **detail: Any) -> CloudError:
    return CloudError(code, message, message_en, 401, server_time=int(now.timestamp()), **detail)


def check_signature(
    engine: sa.Engine,
    headers: dict[str, str],
    method: str,
    target: str,
    body: bytes,
    now: datetime,
) -> StoreIdentity:
    """The signing store, or CloudError (401/403) saying why not."""
    store = headers.get(STORE_HEADER.lower(), "")
    key_id = headers.get(KEY_ID_HEADER.lower(), "")
    stamp = headers.get(TIMESTAMP_HEADER.lower(), "")
    signature = headers.get(SIGNATURE_HEADER.lower(), "")
    if not (store and key_id and stamp and signature):
        raise _refuse("auth_missing", "缺少门店签名", "request is not signed by a store", now)
    if not STORE_ID.match(store) or not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 12 or len(key_id) > 16:
        raise _refuse("auth_missing", "门店签名头格式无效", "malformed signature headers", now)
    timestamp = int(stamp)
    skew = timestamp - now.timestamp()
    if abs(skew) > MAX_SKEW_S:
        raise _refuse(
            "auth_clock_skew",
            f"门店时钟与服务器相差 {skew:+.0f} 秒，请按服务器时间重签",
            f"the store's clock is {skew:+.0f} s off the server's; sign again with the server time",
            now,
            skew_s=round(skew),
        )
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(
                store_keys.c.store,
                store_keys.c.secret,
                store_keys.c.expires_at,
                store_keys.c.revoked_at,
                stores.c.disabled_at,
            )
            .join(stores, stores.c.id == store_keys.c.store)
            .where(store_keys.c.key_id == key_id)
        ).first()
    if row is None or row.store != store:
        raise _refuse("auth_unknown_key", "未知的门店密钥", "unknown store key", now)
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now.isoformat()):
        raise _refuse("auth_key_expired", "门店密钥已过期或已吊销", "store key has expired or was revoked", now)
    secret = base64.urlsafe_b64decode(row.secret + "=")
    if not signature_matches(secret, signature, store, key_id, method, target, body, timestamp):
        raise _refuse("auth_bad_signature", "签名不符 (内容被改动或密钥错误)", "signature does not match", now)
    if row.disabled_at is not None:
        raise CloudError("store_disabled", "门店已停用", "store is disabled", 403, store=store)
    return StoreIdentity(store, key_id, body)


def record_rejection(
    engine: sa.Engine, error: CloudError, store: str | None, key_id: str | None, now: datetime
) -> None:
    """Keep a refused store request in `rejections` (and the log): tampering and broken boxes are visible."""
    log.warning(
        "store request refused: %s (store %s, key %s) / 门店请求被拒绝: %s", error.code, store, key_id, error.message
    )
    with engine.begin() as conn:
        conn.execute(
            rejections.insert().values(
                at=now.isoformat(),
                store=(store or "")[:64] or None,
                key_id=(key_id or "")[:16] or None,
                code=error.code,
                detail=json.dumps({"message_en": error.message_en, **error.detail}, ensure_ascii=False, default=str),
            )
        )


async def signed_store(request: Request) -> StoreIdentity:
    """FastAPI dependency of every store route: verify the signature over the raw body."""
    body = await request.body()
    state = request.app.state
    now: datetime = state.clock()
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        return await run_in_threadpool(check_signature, state.engine, headers, request.method, target, body, now)
    except CloudError as error:
        state.metrics.rejections.labels(code=error.code).inc()
        await run_in_threadpool(
            record_rejection,
            state.engine,
            error,
            headers.get(STORE_HEADER.lower()),
            headers.get(KEY_ID_HEADER.lower()),
            now,
        )
        raise


# --- keys -------------------------------------------------------------------------------------------------


def add_key(conn: sa.Connection, store: str, now: datetime) -> StoreKey:
    key = generate_store_key()
    conn.execute(
        store_keys.insert().values(
            key_id=key.key_id,
            store=store,
            secret=base64.urlsafe_b64encode(key.secret).rstrip(b"=").decode(),
            created_at=now.isoformat(),
        )
    )
    return key


def rotate_key(engine: sa.Engine, store: str, now: datetime, grace: timedelta) -> tuple[StoreKey, list[str], str]:
    """A new key for `store`; its current keys expire after `grace`. Returns the key, the old key ids, expiry."""
    expires = (now + grace).isoformat()
    with engine.begin() as conn:
        old = [
            r.key_id
            for r in conn.execute(
                sa.select(store_keys.c.key_id).where(
                    store_keys.c.store == store,
                    store_keys.c.revoked_at.is_(None),
                    sa.or_(store_keys.c.expires_at.is_(None), store_keys.c.expires_at > expires),
                )
            )
        ]
        if old:
            conn.execute(store_keys.update().where(store_keys.c.key_id.in_(old)).values(expires_at=expires))
        key = add_key(conn, store, now)
    return key, old, expires


def revoke_key(engine: sa.Engine, key_id: str, now: datetime) -> bool:
    with engine.begin() as conn:
        result = conn.execute(
            store_keys.update()
            .where(store_keys.c.key_id == key_id, store_keys.c.revoked_at.is_(None))
            .values(revoked_at=now.isoformat())
        )
    return bool(result.rowcount)
