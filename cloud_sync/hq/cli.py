"""`storebox-cloud hq ...` commands: HQ API tokens, and HQ queries and exports run on the aggregator's machine."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

hq_app = typer.Typer(help="总部 / HQ: API tokens, queries, exports.", no_args_is_help=True)


@hq_app.command("token-add")
def token_add(name: Annotated[str, typer.Argument(help="who or what uses the token, e.g. 'bi-dashboard'")]) -> None:
    """Create an HQ API token; it is shown once, only its sha256 is kept."""
    from cloud_sync.cli import engine
    from cloud_sync.hq.auth import add_token

    name = name.strip()
    if not name or len(name) > 100:
        typer.echo("名称应为 1..100 个字符 / the name must be 1..100 characters", err=True)
        raise typer.Exit(2)
    with engine().begin() as conn:
        token_id, token = add_token(conn, name, datetime.now(UTC))
    typer.echo(json.dumps({"id": token_id, "name": name, "token": token}, ensure_ascii=False))
    typer.echo("令牌只显示这一次，请妥善保存 / the token is shown only once; keep it safe", err=True)


@hq_app.command("token-list")
def token_list() -> None:
    """List HQ API tokens (id, name, created, revoked); never the tokens themselves."""
    from cloud_sync.cli import engine
    from cloud_sync.hq.auth import list_tokens

    with engine().connect() as conn:
        rows = list_tokens(conn)
    typer.echo(json.dumps(rows, ensure_ascii=False))


@hq_app.command("token-revoke")
def token_revoke(token_id: Annotated[int, typer.Argument(help="the token's id (token-list)")]) -> None:
    """Revoke an HQ API token at once."""
    from cloud_sync.cli import engine
    from cloud_sync.hq.auth import revoke_token

    with engine().begin() as conn:
        done = revoke_token(conn, token_id, datetime.now(UTC))
    if not done:
        typer.echo(f"没有有效的令牌 {token_id} / no active token {token_id}", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps({"id": token_id, "revoked": True}))


@hq_app.command("query")
def query(
    target: Annotated[
        str, typer.Argument(help="an HQ API path and query below /api/v1/hq/, e.g. 'sales?group_by=store,day'")
    ],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="write the answer here instead of stdout")] = None,
) -> None:
    """Run an HQ API request on this machine without a token (the operator holds the database anyway):
    the same answers and exports as over HTTP (docs/hq-api.md)."""
    import asyncio

    import httpx

    from cloud_sync.app import create_app
    from cloud_sync.cli import settings
    from cloud_sync.hq.auth import HqCaller, require_hq

    app = create_app(settings())
    app.dependency_overrides[require_hq] = lambda: HqCaller(0, "cli")
    path = "/api/v1/hq/" + target.lstrip("/").removeprefix("api/v1/hq/")

    async def fetch() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cli") as client:
            return await client.get(path)

    try:
        response = asyncio.run(fetch())
    finally:
        app.state.engine.dispose()
    if response.status_code != 200:
        typer.echo(response.text, err=True)
        raise typer.Exit(1)
    if out is None:
        sys.stdout.buffer.write(response.content)
        sys.stdout.buffer.flush()
    else:
        out.write_bytes(response.content)
        typer.echo(f"已写入 / written: {out} ({len(response.content)} bytes)", err=True)
