"""`storebox-cloud packages ...` commands: HQ's signing key, building (signing) package files, publishing them to
the aggregator, and what the stores installed (docs/packages.md). `keygen` and `build` need no database: sign on
a machine of HQ's and publish the file; the private key never has to be on the aggregator."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

packages_app = typer.Typer(help="下发包 / packages: signing keys, publish, list.", no_args_is_help=True)


def _fail(message: str, message_en: str, code: int = 2) -> typer.Exit:
    typer.echo(f"storebox-cloud: {message} / {message_en}", err=True)
    return typer.Exit(code)


@packages_app.command()
def keygen(out: Annotated[Path, typer.Option("--out", help="private key file to write (mode 0600)")]) -> None:
    """Create HQ's Ed25519 signing key; prints the public key (hex) for STOREBOX_HQ_PUBLIC_KEY on the boxes."""
    from cloud_sync.packages.format import generate_key, private_key_bytes, public_key_hex

    key = generate_key()
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise _fail(f"{out} 已存在，不覆盖", f"{out} exists; not overwritten") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_key_bytes(key))
    typer.echo(public_key_hex(key))
    typer.echo(
        "把上面的公钥设为门店的 STOREBOX_HQ_PUBLIC_KEY / set the line above as STOREBOX_HQ_PUBLIC_KEY on boxes",
        err=True,
    )


@packages_app.command()
def build(
    kind: Annotated[str, typer.Option("--kind", help="price_list | rule_pack | model | firmware_profile | module")],
    name: Annotated[str, typer.Option("--name", help="the package's name, e.g. prices or demand")],
    version: Annotated[int, typer.Option("--version", help="integer, higher than every earlier one of kind+name")],
    files: Annotated[list[Path], typer.Option("--file", help="a file to include (repeat); stored under its name")],
    key: Annotated[Path, typer.Option("--key", help="HQ's private key file (keygen)")],
    out: Annotated[Path, typer.Option("--out", help="the package file to write")],
    stores: Annotated[str, typer.Option("--stores", help="comma-separated store ids, or * for every store")] = "*",
    notes: Annotated[str, typer.Option("--notes", help="free text kept in the manifest")] = "",
    by: Annotated[str, typer.Option("--by", help="who built it (manifest created_by)")] = "hq",
) -> None:
    """Build and sign a package file."""
    from cloud_sync.packages.format import PackageError, build_package, load_private_key

    contents: dict[str, bytes] = {}
    for path in files:
        if path.name in contents:
            raise _fail(f"文件名 {path.name} 重复", f"file name {path.name} given twice")
        try:
            contents[path.name] = path.read_bytes()
        except OSError as exc:
            raise _fail(f"无法读取 {path}", f"cannot read {path}: {exc.strerror}") from None
    try:
        private = load_private_key(key.read_bytes())
        data = build_package(
            kind,
            name,
            version,
            contents,
            private,
            created_at=datetime.now(UTC).replace(microsecond=0),
            created_by=by,
            stores=[s.strip() for s in stores.split(",") if s.strip()],
            notes=notes,
        )
    except OSError as exc:
        raise _fail(f"无法读取私钥 {key}", f"cannot read the key {key}: {exc.strerror}") from None
    except PackageError as err:
        raise _fail(err.message, err.message_en) from None
    out.write_bytes(data)
    typer.echo(json.dumps({"out": str(out), "kind": kind, "name": name, "version": version, "bytes": len(data)}))


@packages_app.command()
def publish(package: Annotated[Path, typer.Argument(help="a package file written by build")]) -> None:
    """Publish a package file into the aggregator's database (stores pick it up at their next pull)."""
    from cloud_sync.cli import engine, settings
    from cloud_sync.errors import CloudError
    from cloud_sync.packages.store import publish as publish_package

    s = settings()
    try:
        data = package.read_bytes()
    except OSError as exc:
        raise _fail(f"无法读取 {package}", f"cannot read {package}: {exc.strerror}") from None
    try:
        result = publish_package(engine(s), data, public_key=s.hq_public_key, now=datetime.now(UTC), by="cli")
    except CloudError as err:
        raise _fail(err.message, err.message_en) from None
    typer.echo(json.dumps(result, ensure_ascii=False))


@packages_app.command("list")
def list_() -> None:
    """Every published package (JSON lines)."""
    from cloud_sync.cli import engine
    from cloud_sync.packages.store import list_packages

    with engine().connect() as conn:
        for row in list_packages(conn):
            typer.echo(json.dumps(row, ensure_ascii=False))


@packages_app.command()
def status() -> None:
    """Which store has which version in force, as the stores last reported (JSON lines)."""
    from cloud_sync.cli import engine
    from cloud_sync.packages.store import store_status

    with engine().connect() as conn:
        for row in store_status(conn):
            typer.echo(json.dumps(row, ensure_ascii=False))
