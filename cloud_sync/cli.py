"""`storebox-cloud`: run the aggregator, migrate its database, register stores and their keys.

Settings come from STOREBOX_CLOUD_* (docs/cloud-aggregator.md); a bad one stops the command with one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated

import sqlalchemy as sa
import typer
import uvicorn

from cloud_sync.config import CloudConfigError, CloudSettings, load_cloud_settings
from cloud_sync.hq.cli import hq_app
from cloud_sync.modules.cli import modules_app
from cloud_sync.packages.cli import packages_app

app = typer.Typer(help="StoreBox 汇总服务 / the cloud aggregator.", no_args_is_help=True, add_completion=False)
stores_app = typer.Typer(help="门店与密钥 / stores and their keys.", no_args_is_help=True)
app.add_typer(stores_app, name="stores")
app.add_typer(hq_app, name="hq")
app.add_typer(packages_app, name="packages")
app.add_typer(modules_app, name="modules")


def settings() -> CloudSettings:
    try:
        return load_cloud_settings()
    except CloudConfigError as err:
        typer.echo(f"配置无效 / invalid setting: {err}", err=True)
        raise typer.Exit(2) from None


def engine(s: CloudSettings | None = None) -> sa.Engine:
    from cloud_sync.db import SchemaTooNew, create_engine, migrate

    s = s or settings()
    eng = create_engine(s.db_url)
    try:
        migrate(eng)
    except SchemaTooNew as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from None
    except sa.exc.OperationalError as err:
        typer.echo(f"数据库无法连接 / cannot reach the database: {err.orig}", err=True)
        raise typer.Exit(1) from None
    return eng


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: serve() decides how to stop (and tells systemd)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def now() -> datetime:
    return datetime.now(UTC)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address (default STOREBOX_CLOUD_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default STOREBOX_CLOUD_PORT)")] = None,
) -> None:
    """Run the aggregator until SIGTERM (systemd Type=notify: READY once serving, watchdog while the DB answers)."""
    import uvicorn

    from cloud_sync.app import create_app, database_answers
    from cloud_sync.db import SchemaTooNew
    from edge.service_notify import ServiceNotifier

    s = settings()
    logging.basicConfig(level=s.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        api = create_app(s)
    except SchemaTooNew as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from None
    except sa.exc.OperationalError as err:
        typer.echo(f"数据库无法连接 / cannot reach the database: {err.orig}", err=True)
        raise typer.Exit(1) from None
    server = _Server(
        uvicorn.Config(api, host=host or s.host, port=port or s.port, log_level=s.log_level.lower(), lifespan="off")
    )
    notifier = ServiceNotifier()
    # A batch parses into ~150,000 small objects: with the default thresholds the cyclic GC walks the whole heap
    # several times per batch (measured: JSON parsing 3x slower). Nothing of the ingest makes cycles; collect
    # less often, and never scan what was loaded at start-up.
    gc.freeze()
    gc.set_threshold(200_000, 50, 100)

    async def run() -> None:
        loop = asyncio.get_running_loop()

        def stop() -> None:
            notifier.stopping()
            server.should_exit = True

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop)
        serving = asyncio.create_task(server.serve())
        while not server.started and not serving.done():
            await asyncio.sleep(0.05)
        if server.started:
            notifier.ready("serving")
        engine_ = api.state.engine
        watchdog = asyncio.create_task(notifier.watchdog(lambda: database_answers(engine_)))
        try:
            await serving
        finally:
            watchdog.cancel()

    asyncio.run(run())


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema (also done by serve)."""
    from cloud_sync.db import schema_version

    eng = engine()
    typer.echo(json.dumps({"schema_version": schema_version(eng)}))


@stores_app.command("add")
def stores_add(
    store_id: Annotated[str, typer.Argument(help="the box's STOREBOX_STORE_ID, [a-z0-9-]+")],
    name: Annotated[str, typer.Option(help="store name")],
    company: Annotated[str, typer.Option(help="company id the store belongs to, [a-z0-9-]+")],
    company_name: Annotated[str | None, typer.Option(help="company name (when the company is new)")] = None,
    cold_chain: Annotated[bool, typer.Option(help="the store can ship chilled and frozen goods")] = False,
    lat: Annotated[float | None, typer.Option(help="latitude, for transfer distances")] = None,
    lon: Annotated[float | None, typer.Option(help="longitude")] = None,
) -> None:
    """Register a store and print its first key once (set it on the box: storebox sync set-key KEY)."""
    from cloud_sync.auth import add_key
    from cloud_sync.tables import companies, stores
    from edge.sync.protocol import STORE_ID

    for value, what in ((store_id, "store id"), (company, "company id")):
        if not STORE_ID.match(value):
            typer.echo(f"{what} 只能含小写字母、数字和 - / {what} must match [a-z0-9-]{{1,64}}: {value!r}", err=True)
            raise typer.Exit(2)
    if (
        (lat is None) != (lon is None)
        or (lat is not None and not -90 <= lat <= 90)
        or (lon is not None and not -180 <= lon <= 180)
    ):
        typer.echo("经纬度须成对且有效 / --lat and --lon go together and must be valid", err=True)
        raise typer.Exit(2)
    eng = engine()
    with eng.begin() as conn:
        if conn.execute(sa.select(stores.c.id).where(stores.c.id == store_id)).first():
            typer.echo(f"门店已存在 / store already registered: {store_id}", err=True)
            raise typer.Exit(1)
        if not conn.execute(sa.select(companies.c.id).where(companies.c.id == company)).first():
            conn.execute(companies.insert().values(id=company, name=company_name or company))
        conn.execute(
            stores.insert().values(
                id=store_id,
                name=name,
                company=company,
                cold_chain=int(cold_chain),
                lat=lat,
                lon=lon,
                created_at=now().isoformat(),
            )
        )
        key = add_key(conn, store_id, now())
    typer.echo(json.dumps({"store": store_id, "key": str(key), "key_id": key.key_id}, ensure_ascii=False))


@stores_app.command("list")
def stores_list() -> None:
    """Stores with their keys (ids only) and sync state, as JSON lines."""
    from cloud_sync.tables import store_keys, stores, sync_state

    eng = engine()
    with eng.connect() as conn:
        keys: dict[str, list[dict[str, str | None]]] = {}
        for k in conn.execute(sa.select(store_keys).order_by(store_keys.c.created_at)):
            keys.setdefault(k.store, []).append(
                {"key_id": k.key_id, "created_at": k.created_at, "expires_at": k.expires_at, "revoked_at": k.revoked_at}
            )
        for r in conn.execute(
            sa.select(stores, sync_state.c.applied_through, sync_state.c.last_contact_at)
            .outerjoin(sync_state, sync_state.c.store == stores.c.id)
            .order_by(stores.c.id)
        ):
            typer.echo(
                json.dumps(
                    {
                        "store": r.id,
                        "name": r.name,
                        "company": r.company,
                        "disabled_at": r.disabled_at,
                        "applied_through": r.applied_through or 0,
                        "last_contact_at": r.last_contact_at,
                        "keys": keys.get(r.id, []),
                    },
                    ensure_ascii=False,
                )
            )


@stores_app.command("rotate-key")
def stores_rotate_key(
    store_id: str,
    grace_hours: Annotated[float | None, typer.Option(help="old keys keep working this long (default setting)")] = None,
) -> None:
    """A new key for a store (printed once); its current keys expire after the grace period."""
    from cloud_sync.auth import rotate_key
    from cloud_sync.tables import stores

    s = settings()
    eng = engine(s)
    with eng.connect() as conn:
        if not conn.execute(sa.select(stores.c.id).where(stores.c.id == store_id)).first():
            typer.echo(f"未知门店 / unknown store: {store_id}", err=True)
            raise typer.Exit(1)
    grace = timedelta(hours=s.key_grace_hours if grace_hours is None else grace_hours)
    key, old, expires = rotate_key(eng, store_id, now(), grace)
    typer.echo(
        json.dumps(
            {
                "store": store_id,
                "key": str(key),
                "key_id": key.key_id,
                "old_key_ids": old,
                "old_keys_expire_at": expires,
            }
        )
    )


@stores_app.command("revoke-key")
def stores_revoke_key(key_id: str) -> None:
    """Revoke one key at once (a lost or leaked key)."""
    from cloud_sync.auth import revoke_key

    if not revoke_key(engine(), key_id, now()):
        typer.echo(f"无此有效密钥 / no such active key: {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps({"revoked": key_id}))


@stores_app.command("disable")
def stores_disable(store_id: str) -> None:
    """Refuse every request of a store from now on (its data stays)."""
    from cloud_sync.tables import stores

    with engine().begin() as conn:
        result = conn.execute(
            stores.update()
            .where(stores.c.id == store_id, stores.c.disabled_at.is_(None))
            .values(disabled_at=now().isoformat())
        )
    if not result.rowcount:
        typer.echo(f"未知或已停用的门店 / unknown or already disabled store: {store_id}", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps({"disabled": store_id}))


@stores_app.command("enable")
def stores_enable(store_id: str) -> None:
    """Take a disabled store's requests again."""
    from cloud_sync.tables import stores

    with engine().begin() as conn:
        result = conn.execute(
            stores.update().where(stores.c.id == store_id, stores.c.disabled_at.is_not(None)).values(disabled_at=None)
        )
    if not result.rowcount:
        typer.echo(f"未知或未停用的门店 / unknown store, or not disabled: {store_id}", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps({"enabled": store_id}))


def main() -> None:
    app()
