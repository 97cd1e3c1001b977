"""`storebox backup create|verify|restore` (issue 6, docs/backup-restore.md): online backups of the data dir."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from edge.sync_cli import backup_app

ArchiveArgument = Annotated[Path, typer.Argument(help="the backup archive (.tar.gz)", dir_okay=False)]


def _progress(line: str) -> None:
    typer.echo(line, err=True)


@backup_app.command("create")
def backup_create(
    out: Annotated[
        Path | None, typer.Option("--out", help="archive to write (refused if it exists)", dir_okay=False)
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--dir", help="write storebox-<store>-<UTC time>.tar.gz into this folder instead", file_okay=False
        ),
    ] = None,
    keep: Annotated[
        int | None, typer.Option("--keep", min=1, help="with --dir: keep only the newest N archives there")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file.", dir_okay=False)] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Overrides STOREBOX_DATA_DIR.")] = None,
) -> None:
    """Back up the data dir while the box runs: database (online copy), keys, packages, attachments, papers."""
    from edge.backup import BackupError, create_backup, prune_backups
    from edge.cli import _settings

    settings = _settings(config, data_dir=data_dir)
    if (out is None) == (out_dir is None):
        typer.echo("storebox: give --out FILE or --dir DIR / 请指定 --out 或 --dir", err=True)
        raise typer.Exit(2)
    now = datetime.now(UTC)
    target = out if out is not None else out_dir / f"storebox-{settings.store_id}-{now:%Y%m%dT%H%M%S.%fZ}.tar.gz"  # type: ignore[operator]
    if target.exists():
        typer.echo(f"storebox: {target} exists / 文件已存在", err=True)
        raise typer.Exit(2)
    try:
        manifest = create_backup(settings.data_dir, target, now=now, store_id=settings.store_id, progress=_progress)
    except BackupError as err:
        typer.echo(f"storebox: {err.message} / {err.message_en}", err=True)
        raise typer.Exit(1) from None
    pruned = prune_backups(out_dir, keep) if out_dir is not None and keep is not None else []
    typer.echo(
        json.dumps(
            {
                "archive": str(target),
                "bytes": target.stat().st_size,
                "files": len(manifest["files"]),
                "database": manifest["database"],
                "pruned": [str(p) for p in pruned],
            },
            ensure_ascii=False,
        )
    )


@backup_app.command("verify")
def backup_verify(archive: ArchiveArgument) -> None:
    """Check an archive: manifest, every file's sha256, the database's integrity_check. Exit 1 when damaged."""
    from edge.backup import BackupError, verify_backup

    try:
        manifest = verify_backup(archive, progress=_progress)
    except BackupError as err:
        typer.echo(f"storebox: {err.message} / {err.message_en}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        json.dumps(
            {
                "ok": True,
                "created_at": manifest.get("created_at"),
                "store_id": manifest.get("store_id"),
                "files": len(manifest["files"]),
                "database": manifest.get("database"),
            },
            ensure_ascii=False,
        )
    )


@backup_app.command("restore")
def backup_restore(
    archive: ArchiveArgument,
    data_dir: Annotated[Path, typer.Option("--data-dir", help="the data dir to restore into", file_okay=False)],
    force: Annotated[
        bool, typer.Option("--force", help="replace a non-empty data dir (it is kept as <dir>.before-restore-<time>)")
    ] = False,
) -> None:
    """Restore an archive into a data dir: checked first, unpacked beside it, renamed into place. The box must be
    stopped (a running box's data dir is refused)."""
    from edge.backup import BackupError, BackupInvalid, restore_backup

    try:
        result = restore_backup(archive, data_dir, force=force, now=datetime.now(UTC), progress=_progress)
    except BackupError as err:
        typer.echo(f"storebox: {err.message} / {err.message_en}", err=True)
        raise typer.Exit(1 if isinstance(err, BackupInvalid) else 2) from None
    manifest = result["manifest"]
    typer.echo(
        json.dumps(
            {
                "data_dir": result["data_dir"],
                "previous": result["previous"],
                "created_at": manifest.get("created_at"),
                "store_id": manifest.get("store_id"),
                "database": manifest.get("database"),
            },
            ensure_ascii=False,
        )
    )
