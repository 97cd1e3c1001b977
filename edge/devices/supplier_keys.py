"""Per-supplier API keys (供应商接口密钥) and the MQTT devices that speak for a supplier.

A key reads `sbk_<key id>_<secret>`: the key id (12 characters) is public and names the row, the secret
(256 random bits) is shown once and only its SHA-256 is stored. A key holds scopes, a subset of the
supplier permissions below; every route of the supplier API states the one it needs. Keys are created,
rotated one by one (each new key keeps its old key's label and scopes; the old key may keep working for a
grace period) and revoked; each act is in the audit trail.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from edge.finance.errors import UnknownSupplier
from edge.ledger.audit import append_audit
from edge.ledger.errors import DomainError

# What a supplier key may do; the supplier API routes each name one (`x-permission`). No user role holds them.
SUPPLIER_PERMISSIONS: tuple[str, ...] = (
    "supplier:profile:read",  # who am I: the key's supplier and scopes
    "supplier:purchase_orders:read",  # the supplier's own open purchase orders and what remains to ship
    "supplier:asns:read",  # the supplier's own ASNs, their state and differences, the connector templates
    "supplier:asns:write",  # send ASNs (JSON, template import)
)
ALWAYS_GRANTED = "supplier:profile:read"
KEY_PREFIX = "sbk_"
KEY_ID_LENGTH = 12
_KEY_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_KEY_PATTERN = re.compile(r"^sbk_([a-z0-9]{12})_([A-Za-z0-9_-]{43})$")
MAX_LABEL_LENGTH = 100


class SupplierApiError(DomainError):
    """Base of the refusals about supplier API keys and supplier devices."""

    code = "supplier_api_error"


class InvalidKeyScope(SupplierApiError):
    code = "invalid_key_scope"
    status = 422

    def __init__(self, scope: str) -> None:
        allowed = ", ".join(SUPPLIER_PERMISSIONS)
        super().__init__(
            f"未知的密钥权限: {scope!r}，可选: {allowed}",
            f"unknown key scope {scope!r}; known scopes: {allowed}",
            field="scopes",
            value=scope,
            allowed=list(SUPPLIER_PERMISSIONS),
        )


class InvalidKeyInput(SupplierApiError):
    code = "invalid_key_input"
    status = 422


class NoActiveApiKey(SupplierApiError):
    code = "no_active_api_key"
    status = 404

    def __init__(self, supplier: str, key_id: str | None = None) -> None:
        which_zh = f"密钥 {key_id}" if key_id else "有效密钥"
        which_en = f"key {key_id}" if key_id else "active key"
        super().__init__(
            f"供应商 {supplier} 没有{which_zh}",
            f"supplier {supplier} has no {which_en}",
            supplier=supplier,
            key_id=key_id,
        )


class NotASupplierDevice(SupplierApiError):
    code = "not_a_supplier_device"
    status = 422

    def __init__(self, device: str, kind: str | None) -> None:
        super().__init__(
            f"设备 {device} 不是供应商设备 (类型 {kind or '不存在'})，请用 --kind supplier 登记",
            f"device {device} is not a supplier device (kind {kind or 'none: no such device'}); "
            "register it with --kind supplier",
            device=device,
            kind=kind,
        )


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """A stored key without its secret."""

    key_id: str
    supplier: str
    scopes: tuple[str, ...]
    label: str | None
    created_at: datetime
    created_by: str
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    replaced_by: str | None = None

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def to_json(self, now: datetime) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "supplier": self.supplier,
            "scopes": list(self.scopes),
            "label": self.label,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "replaced_by": self.replaced_by,
            "active": self.active(now),
        }


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key as issued: the only time its full text exists outside the supplier's hands."""

    info: ApiKeyInfo
    key: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class RotatedKey:
    """One key rotated: the new key, which keeps the old one's label and scopes, and the key id it replaces."""

    replaces: str
    issued: IssuedKey


@dataclass(frozen=True, slots=True)
class SupplierCaller:
    """Who calls the supplier API: the supplier of a valid key, and what the key may do."""

    supplier: str
    supplier_name: str
    key_id: str
    scopes: frozenset[str]


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="seconds")


def _check_scopes(scopes: Iterable[str] | None) -> tuple[str, ...]:
    if scopes is None:
        return SUPPLIER_PERMISSIONS
    wanted = set(scopes)
    for scope in sorted(wanted):
        if scope not in SUPPLIER_PERMISSIONS:
            raise InvalidKeyScope(scope)
    wanted.add(ALWAYS_GRANTED)
    return tuple(p for p in SUPPLIER_PERMISSIONS if p in wanted)


def _check_label(label: str | None) -> str | None:
    if label is None:
        return None
    if not 1 <= len(label) <= MAX_LABEL_LENGTH or not label.isprintable():
        raise InvalidKeyInput(
            f"密钥说明须为 1 到 {MAX_LABEL_LENGTH} 个可打印字符",
            f"a key label must be 1 to {MAX_LABEL_LENGTH} printable characters",
            field="label",
        )
    return label


def _require_supplier(conn: sqlite3.Connection, supplier: str) -> None:
    if conn.execute("SELECT 1 FROM suppliers WHERE id = ?", (supplier,)).fetchone() is None:
        raise UnknownSupplier(supplier)


def _new_key_id(conn: sqlite3.Connection) -> str:
    while True:
        key_id = "".join(secrets.choice(_KEY_ID_ALPHABET) for _ in range(KEY_ID_LENGTH))
        if conn.execute("SELECT 1 FROM supplier_api_keys WHERE key_id = ?", (key_id,)).fetchone() is None:
            return key_id


def _info(row: sqlite3.Row) -> ApiKeyInfo:
    def when(value: str | None) -> datetime | None:
        return datetime.fromisoformat(value) if value else None

    return ApiKeyInfo(
        key_id=row["key_id"],
        supplier=row["supplier"],
        scopes=tuple(row["scopes"].split()),
        label=row["label"],
        created_at=datetime.fromisoformat(row["created_at"]),
        created_by=row["created_by"],
        expires_at=when(row["expires_at"]),
        revoked_at=when(row["revoked_at"]),
        replaced_by=row["replaced_by"],
    )


def _issue(
    conn: sqlite3.Connection, supplier: str, scopes: tuple[str, ...], label: str | None, now: datetime, actor: str
) -> IssuedKey:
    key_id = _new_key_id(conn)
    key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    conn.execute(
        "INSERT INTO supplier_api_keys (key_id, supplier, secret_sha256, scopes, label, created_at, created_by)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (key_id, supplier, _sha256(key), " ".join(scopes), label, _iso(now), actor),
    )
    info = ApiKeyInfo(key_id, supplier, scopes, label, datetime.fromisoformat(_iso(now)), actor)
    return IssuedKey(info=info, key=key)


def _audit(conn: sqlite3.Connection, now: datetime, actor: str, action: str, supplier: str, **detail: Any) -> None:
    append_audit(
        conn, ts=_iso(now), actor=actor, device=None, action=action, object=f"supplier:{supplier}", detail=detail
    )


def create_api_key(
    conn: sqlite3.Connection,
    supplier: str,
    *,
    now: datetime,
    actor: str,
    scopes: Iterable[str] | None = None,
    label: str | None = None,
) -> IssuedKey:
    """Issue a new key for `supplier` (all scopes unless given); other keys of the supplier stay valid."""
    _require_supplier(conn, supplier)
    checked = _check_scopes(scopes)
    issued = _issue(conn, supplier, checked, _check_label(label), now, actor)
    _audit(conn, now, actor, "supplier_api_key.create", supplier, key_id=issued.info.key_id, scopes=list(checked))
    return issued


def _active_rows(conn: sqlite3.Connection, supplier: str, key_id: str | None, now: datetime) -> list[ApiKeyInfo]:
    _require_supplier(conn, supplier)
    rows = conn.execute(
        "SELECT * FROM supplier_api_keys WHERE supplier = ? AND (? IS NULL OR key_id = ?) ORDER BY created_at, rowid",
        (supplier, key_id, key_id),
    ).fetchall()
    active = [info for info in map(_info, rows) if info.active(now)]
    if not active:
        raise NoActiveApiKey(supplier, key_id)
    return active


def rotate_api_keys(
    conn: sqlite3.Connection,
    supplier: str,
    *,
    now: datetime,
    actor: str,
    key_id: str | None = None,
    grace: timedelta = timedelta(0),
) -> list[RotatedKey]:
    """Replace each of the supplier's active keys (or only `key_id`) by a new key of its own, with the old key's
    label and scopes; return each new key with the id it replaces, in the order of the old keys.

    Keys are rotated one by one, never merged: a read-only key stays read-only. The old key stops at once, or
    after `grace` so that the supplier's system can switch without a gap; a key in its grace period was rotated
    already and is not rotated again.
    """
    if grace < timedelta(0) or grace > timedelta(days=30):
        raise InvalidKeyInput(
            "宽限期须在 0 到 30 天之间",
            "the grace period must be 0 to 30 days",
            field="grace",
            seconds=int(grace.total_seconds()),
        )
    current = []
    for info in _active_rows(conn, supplier, key_id, now):
        if info.replaced_by is None:
            current.append(info)
        elif key_id is not None:  # a key in its grace period was rotated already: rotate its successor
            raise InvalidKeyInput(
                f"密钥 {info.key_id} 已被 {info.replaced_by} 替换，请轮换 {info.replaced_by}",
                f"key {info.key_id} was already replaced by {info.replaced_by}; rotate {info.replaced_by}",
                field="key_id",
                key_id=info.key_id,
                replaced_by=info.replaced_by,
            )
    if not current:
        raise NoActiveApiKey(supplier, key_id)
    rotated = []
    for old in current:
        new = _issue(conn, supplier, old.scopes, old.label, now, actor)
        if grace > timedelta(0):
            ends = now + grace if old.expires_at is None else min(old.expires_at, now + grace)
            conn.execute(
                "UPDATE supplier_api_keys SET expires_at = ?, replaced_by = ? WHERE key_id = ?",
                (_iso(ends), new.info.key_id, old.key_id),
            )
        else:
            conn.execute(
                "UPDATE supplier_api_keys SET revoked_at = ?, replaced_by = ? WHERE key_id = ?",
                (_iso(now), new.info.key_id, old.key_id),
            )
        _audit(
            conn,
            now,
            actor,
            "supplier_api_key.rotate",
            supplier,
            key_id=new.info.key_id,
            replaced=old.key_id,
            scopes=list(old.scopes),
            grace_seconds=int(grace.total_seconds()),
        )
        rotated.append(RotatedKey(old.key_id, new))
    return rotated


def revoke_api_keys(
    conn: sqlite3.Connection, supplier: str, *, now: datetime, actor: str, key_id: str | None = None
) -> list[str]:
    """Revoke the supplier's active keys (or the one `key_id`) at once; return the key ids revoked."""
    old = _active_rows(conn, supplier, key_id, now)
    conn.executemany(
        "UPDATE supplier_api_keys SET revoked_at = ? WHERE key_id = ?", [(_iso(now), info.key_id) for info in old]
    )
    revoked = [info.key_id for info in old]
    _audit(conn, now, actor, "supplier_api_key.revoke", supplier, revoked=revoked)
    return revoked


def list_api_keys(conn: sqlite3.Connection, supplier: str | None = None) -> list[ApiKeyInfo]:
    """Keys (without secrets), of one supplier or all, oldest first."""
    rows = conn.execute(
        "SELECT * FROM supplier_api_keys WHERE ? IS NULL OR supplier = ? ORDER BY supplier, created_at, rowid",
        (supplier, supplier),
    ).fetchall()
    return [_info(row) for row in rows]


def authenticate_api_key(conn: sqlite3.Connection, presented: str, now: datetime) -> SupplierCaller | None:
    """The caller of a valid, active key of an active supplier; None for anything else (read-only)."""
    match = _KEY_PATTERN.match(presented)
    if match is None:
        return None
    row = conn.execute(
        "SELECT k.*, s.name AS supplier_name FROM supplier_api_keys k JOIN suppliers s ON s.id = k.supplier"
        " WHERE k.key_id = ? AND s.active = 1",
        (match.group(1),),
    ).fetchone()
    if row is None or not hmac.compare_digest(row["secret_sha256"], _sha256(presented)):
        return None
    info = _info(row)
    if not info.active(now):
        return None
    return SupplierCaller(info.supplier, row["supplier_name"], info.key_id, frozenset(info.scopes))


# --- supplier devices on the MQTT bus ---------------------------------------------------------------


def link_supplier_device(conn: sqlite3.Connection, device: str, supplier: str, *, now: datetime, actor: str) -> None:
    """Let the device (kind `supplier`) send ASNs for `supplier` over MQTT; relinking moves it."""
    _require_supplier(conn, supplier)
    row = conn.execute("SELECT kind FROM devices WHERE id = ?", (device,)).fetchone()
    if row is None or row["kind"] != "supplier":
        raise NotASupplierDevice(device, row["kind"] if row else None)
    conn.execute(
        "INSERT INTO supplier_devices (device, supplier, linked_at) VALUES (?, ?, ?)"
        " ON CONFLICT (device) DO UPDATE SET supplier = excluded.supplier, linked_at = excluded.linked_at",
        (device, supplier, _iso(now)),
    )
    _audit(conn, now, actor, "supplier_device.link", supplier, device=device)


def unlink_supplier_device(conn: sqlite3.Connection, device: str, *, now: datetime, actor: str) -> str:
    """Stop the device speaking for its supplier; return that supplier."""
    row = conn.execute("SELECT supplier FROM supplier_devices WHERE device = ?", (device,)).fetchone()
    if row is None:
        kind = conn.execute("SELECT kind FROM devices WHERE id = ?", (device,)).fetchone()
        raise NotASupplierDevice(device, kind["kind"] if kind else None)
    conn.execute("DELETE FROM supplier_devices WHERE device = ?", (device,))
    _audit(conn, now, actor, "supplier_device.unlink", row["supplier"], device=device)
    return str(row["supplier"])


def supplier_of_device(conn: sqlite3.Connection, device: str) -> str | None:
    """The active supplier an enabled device of kind `supplier` speaks for, else None."""
    row = conn.execute(
        "SELECT sd.supplier FROM supplier_devices sd JOIN devices d ON d.id = sd.device"
        " JOIN suppliers s ON s.id = sd.supplier"
        " WHERE sd.device = ? AND d.kind = 'supplier' AND d.enabled = 1 AND s.active = 1",
        (device,),
    ).fetchone()
    return None if row is None else str(row["supplier"])


def list_supplier_devices(conn: sqlite3.Connection, supplier: str | None = None) -> list[dict[str, str]]:
    rows = conn.execute(
        "SELECT device, supplier, linked_at FROM supplier_devices WHERE ? IS NULL OR supplier = ? ORDER BY device",
        (supplier, supplier),
    ).fetchall()
    return [{"device": r["device"], "supplier": r["supplier"], "linked_at": r["linked_at"]} for r in rows]
