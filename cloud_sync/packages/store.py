"""Packages at the aggregator: published (checked, version monotonic per kind and name), offered to the stores they
target (the newest version of each kind and name), served, and the stores' statuses recorded."""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from cloud_sync.errors import CloudError
from cloud_sync.packages.format import PackageError, parse_public_key, read_package
from cloud_sync.packages.tables import package_status, packages
from cloud_sync.tables import stores

STATUSES = ("installed", "failed", "rolled_back")


def publish(engine: sa.Engine, data: bytes, *, public_key: str | None, now: datetime, by: str) -> dict[str, Any]:
    """Store a package file; the same file again answers its first id. With `public_key` (the aggregator's
    STOREBOX_CLOUD_HQ_PUBLIC_KEY) the signature is checked here too, else only on the boxes."""
    try:
        key = parse_public_key(public_key) if public_key else None
        package = read_package(data, key, verify=key is not None)  # type: ignore[arg-type]
    except PackageError as err:
        raise CloudError(
            err.code, err.message, err.message_en, 422 if err.status != 403 else 403, **err.detail
        ) from None
    m = package.manifest
    with engine.begin() as conn:
        same = conn.execute(sa.select(packages.c.id).where(packages.c.sha256 == package.sha256)).first()
        if same is not None:
            return {"id": int(same.id), "kind": m.kind.value, "name": m.name, "version": m.version, "replayed": True}
        newest = conn.execute(
            sa.select(sa.func.max(packages.c.version)).where(packages.c.kind == m.kind.value, packages.c.name == m.name)
        ).scalar_one()
        if newest is not None and m.version <= int(newest):
            raise CloudError(
                "package_version_not_newer",
                f"{m.kind}/{m.name} 版本 {m.version} 不比已发布的 {newest} 新",
                f"{m.kind}/{m.name} version {m.version} is not newer than the published {newest}",
                409,
                published=int(newest),
            )
        package_id = conn.execute(
            packages.insert()
            .values(
                kind=m.kind.value,
                name=m.name,
                version=m.version,
                stores=json.dumps(list(m.stores)),
                sha256=package.sha256,
                size=len(data),
                manifest=package.manifest_bytes.decode(),
                content=data,
                published_at=now.isoformat(),
                published_by=by[:100],
            )
            .returning(packages.c.id)
        ).scalar_one()
    return {"id": int(package_id), "kind": m.kind.value, "name": m.name, "version": m.version, "replayed": False}


def _row(r: Any) -> dict[str, Any]:
    return {
        "id": int(r.id),
        "kind": r.kind,
        "name": r.name,
        "version": int(r.version),
        "stores": json.loads(r.stores),
        "sha256": r.sha256,
        "size": int(r.size),
        "published_at": r.published_at,
    }


_LISTED = (
    packages.c.id,
    packages.c.kind,
    packages.c.name,
    packages.c.version,
    packages.c.stores,
    packages.c.sha256,
    packages.c.size,
    packages.c.published_at,
    packages.c.published_by,
)


def list_packages(conn: sa.Connection) -> list[dict[str, Any]]:
    rows = conn.execute(sa.select(*_LISTED).order_by(packages.c.kind, packages.c.name, packages.c.version))
    return [{**_row(r), "published_by": r.published_by} for r in rows]


def for_store(conn: sa.Connection, store: str, held: Collection[int] = ()) -> list[dict[str, Any]]:
    """The newest version of each kind and name that targets `store`, passing over the `held` package ids (module
    versions the canary does not serve this store: cloud_sync.modules.gate)."""
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    rows = conn.execute(sa.select(*_LISTED).where(packages.c.withdrawn_at.is_(None)).order_by(packages.c.version)).all()
    for r in rows:
        targets = json.loads(r.stores)
        if ("*" in targets or store in targets) and int(r.id) not in held:
            newest[(r.kind, r.name)] = _row(r)
    return sorted(newest.values(), key=lambda p: (p["kind"], p["name"]))


def _targeted(conn: sa.Connection, store: str, package_id: int) -> Any:
    row = conn.execute(
        sa.select(packages.c.id, packages.c.stores, packages.c.version).where(packages.c.id == package_id)
    ).first()
    if row is None or not ({"*", store} & set(json.loads(row.stores))):
        raise CloudError("package_not_found", "没有这个下发包", "no such package for this store", 404, id=package_id)
    return row


def content(conn: sa.Connection, store: str, package_id: int) -> bytes:
    _targeted(conn, store, package_id)
    return bytes(conn.execute(sa.select(packages.c.content).where(packages.c.id == package_id)).scalar_one())


def record_status(engine: sa.Engine, store: str, package_id: int, body: Any, now: datetime) -> dict[str, Any]:
    if not isinstance(body, dict) or body.get("status") not in STATUSES:
        raise CloudError(
            "package_status_invalid",
            "状态须为 installed、failed 或 rolled_back",
            "status must be installed, failed or rolled_back",
            422,
        )

    def integer(key: str) -> int | None:
        value = body.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    with engine.begin() as conn:
        row = _targeted(conn, store, package_id)
        conn.execute(
            package_status.insert().values(
                package_id=package_id,
                store=store,
                status=body["status"],
                version=integer("version") or int(row.version),
                from_version=integer("from_version"),
                to_version=integer("to_version"),
                code=str(body.get("code") or "")[:64] or None,
                reason=str(body.get("reason") or "")[:2000] or None,
                box_at=str(body.get("at") or "")[:40] or None,
                received_at=now.isoformat(),
            )
        )
    return {"recorded": True}


def store_status(conn: sa.Connection) -> list[dict[str, Any]]:
    """Per store and kind/name: the last status reported (which version is installed where)."""
    latest = (
        sa.select(sa.func.max(package_status.c.id).label("id"))
        .select_from(package_status.join(packages, packages.c.id == package_status.c.package_id))
        .group_by(package_status.c.store, packages.c.kind, packages.c.name)
        .subquery()
    )
    rows = conn.execute(
        sa.select(
            package_status.c.store,
            packages.c.kind,
            packages.c.name,
            package_status.c.status,
            package_status.c.version,
            package_status.c.to_version,
            package_status.c.code,
            package_status.c.reason,
            package_status.c.received_at,
        )
        .join(packages, packages.c.id == package_status.c.package_id)
        .join(latest, latest.c.id == package_status.c.id)
        .order_by(package_status.c.store, packages.c.kind, packages.c.name)
    ).all()
    out = []
    for r in rows:
        in_force = r.to_version if r.status == "rolled_back" else (r.version if r.status == "installed" else None)
        out.append(
            {
                "store": r.store,
                "kind": r.kind,
                "name": r.name,
                "status": r.status,
                "version": int(r.version),
                "in_force": None if in_force is None else int(in_force),
                "code": r.code,
                "reason": r.reason,
                "at": r.received_at,
            }
        )
    return out


def known_store(conn: sa.Connection, store: str) -> bool:
    return conn.execute(sa.select(stores.c.id).where(stores.c.id == store)).first() is not None
