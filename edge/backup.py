"""Backups of a box's data dir (备份): one archive with an online copy of the database and every other file of the
data dir, a manifest of sha256s, verified before a restore puts it in place atomically.

The database is copied with SQLite's online backup API while the box runs and posts: the source connection holds
one read transaction for the whole copy, so the copy is the database as of one instant (WAL: the box's writer is
never blocked) and the copy is done in steps that show progress. (Without that pinned snapshot every commit of the
box restarts a stepped copy from the first page.) The data dir is locked by the running box (`storebox.lock`,
`lock_data_dir`), so a restore into it is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from edge.ledger.errors import DomainError

FORMAT = "storebox-backup"
FORMAT_VERSION = 1
ROOT = "storebox-backup"  # every member lives under this folder in the archive
MANIFEST = f"{ROOT}/manifest.json"
DATA = f"{ROOT}/data"
DB_NAME = "storebox.db"
LOCK_NAME = "storebox.lock"
# Files of the data dir never archived: the live database (copied through the backup API instead), the lock, and
# files being written (temp names of key rotation, attachments, packages).
_SKIPPED_NAMES = {DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", f"{DB_NAME}-journal", LOCK_NAME}
_SKIPPED_SUFFIXES = (".tmp", ".part")
_SKIPPED_DIRS = {".tmp"}
COPY_STEP_PAGES = 4096
Progress = Callable[[str], None]


class BackupError(DomainError):
    """Base of every refusal of backup and restore."""

    code = "backup_error"


class DataDirInUse(BackupError):
    code = "data_dir_in_use"
    status = 409

    def __init__(self, data_dir: Path) -> None:
        super().__init__(
            f"数据目录 {data_dir} 正被运行中的一体机使用，请先停止它 (systemctl stop storebox)",
            f"data dir {data_dir} is in use by a running box; stop it first (systemctl stop storebox)",
            data_dir=str(data_dir),
        )


class DataDirNotEmpty(BackupError):
    code = "data_dir_not_empty"
    status = 409

    def __init__(self, data_dir: Path) -> None:
        super().__init__(
            f"数据目录 {data_dir} 不是空的；确认要替换请加 --force (原目录会保留在旁边)",
            f"data dir {data_dir} is not empty; add --force to replace it (the old one is kept beside it)",
            data_dir=str(data_dir),
        )


class BackupInvalid(BackupError):
    """An archive that is not a backup, is damaged or was changed: `detail` names the member and the reason."""

    code = "backup_invalid"
    status = 422

    def __init__(self, reason: str, reason_en: str, **detail: Any) -> None:
        super().__init__(f"备份文件无效: {reason}", f"backup archive invalid: {reason_en}", **detail)


class BackupFailed(BackupError):
    code = "backup_failed"
    status = 500


# --- the data dir lock ---


@dataclass
class DataDirLock:
    """An exclusive flock on `<data_dir>/storebox.lock`, held while the box runs; the kernel drops it when the
    process dies, so a crash never leaves a stale lock."""

    fd: int
    path: Path

    def forget(self) -> None:
        """In a forked child: close our copy of the descriptor without unlocking the parent's lock."""
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1

    def release(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1


def lock_data_dir(data_dir: Path) -> DataDirLock:
    """Take the data dir's lock or raise DataDirInUse (creates the data dir when missing)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DataDirInUse(data_dir) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    lock = DataDirLock(fd, path)
    # The writer is a forked child: it must not keep the lock alive after the box itself died (a restart would find
    # the data dir "in use" until the child exits). SQLite's own locking keeps the two writers apart meanwhile.
    os.register_at_fork(after_in_child=lock.forget)
    return lock


def data_dir_in_use(data_dir: Path) -> bool:
    """True when a running box holds the data dir's lock."""
    path = data_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


# --- create ---


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _skipped(relative: PurePosixPath) -> bool:
    return (
        str(relative) in _SKIPPED_NAMES
        or relative.name.endswith(_SKIPPED_SUFFIXES)
        or any(part in _SKIPPED_DIRS for part in relative.parts[:-1])
    )


def copy_database(source: Path, target: Path, progress: Progress, step_pages: int = COPY_STEP_PAGES) -> None:
    """Online copy of the live database as of one instant (see the module docstring), in steps with progress."""
    src = sqlite3.connect(f"file:{source.resolve()}?mode=ro", uri=True, isolation_level=None)
    dst = sqlite3.connect(str(target), isolation_level=None)
    try:
        src.execute("PRAGMA busy_timeout=10000")
        src.execute("BEGIN")
        src.execute("SELECT count(*) FROM sqlite_master").fetchone()  # starts the read transaction: the snapshot
        shown = -1

        def step(status: int, remaining: int, total: int) -> None:
            nonlocal shown
            percent = 100 * (total - remaining) // max(total, 1)
            if percent // 10 != shown // 10:
                shown = percent
                progress(f"数据库 database {percent}% ({total - remaining}/{total} pages)")

        src.backup(dst, pages=step_pages, progress=step, sleep=0)
        src.execute("COMMIT")
        # A standalone file: the copy carries no WAL beside it.
        dst.execute("PRAGMA journal_mode=DELETE")
    finally:
        src.close()
        dst.close()


def database_facts(path: Path) -> dict[str, Any]:
    """integrity_check and what a restore can be compared with: schema versions, documents, outbox head."""
    conn = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
    try:
        integrity = [str(r[0]) for r in conn.execute("PRAGMA integrity_check").fetchall()]
        tables = {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

        def scalar(sql: str, table: str) -> int | None:
            return int(conn.execute(sql).fetchone()[0] or 0) if table in tables else None

        schema = (
            {
                f"{p}": int(v)
                for p, v in conn.execute("SELECT package, MAX(version) FROM schema_migrations GROUP BY package")
            }
            if "schema_migrations" in tables
            else {}
        )
        return {
            "integrity_check": "ok" if integrity == ["ok"] else "; ".join(integrity[:20]),
            "page_size": int(conn.execute("PRAGMA page_size").fetchone()[0]),
            "pages": int(conn.execute("PRAGMA page_count").fetchone()[0]),
            "schema": schema,
            "documents": scalar("SELECT count(*) FROM documents", "documents"),
            "outbox_max_seq": scalar("SELECT max(seq) FROM outbox", "outbox"),
        }
    finally:
        conn.close()


def _stage_files(data_dir: Path, staged: Path, progress: Progress) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    files: list[dict[str, Any]] = []
    links: list[dict[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(data_dir):
        dirnames.sort()
        here = Path(dirpath)
        for name in sorted(filenames) + [d for d in dirnames if (here / d).is_symlink()]:
            path = here / name
            relative = PurePosixPath(path.relative_to(data_dir).as_posix())
            if _skipped(relative):
                continue
            target = staged / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.is_symlink():
                links.append({"path": str(relative), "target": os.readlink(path)})
                continue
            try:
                shutil.copy2(path, target)
            except FileNotFoundError:  # removed while we walked (an attachment swept, a package rolled back)
                continue
            files.append({"path": str(relative), "size": target.stat().st_size, "sha256": _sha256(target)})
        dirnames[:] = [d for d in dirnames if not (here / d).is_symlink()]
    progress(f"文件 files: {len(files)} ({sum(f['size'] for f in files)} bytes), 链接 links: {len(links)}")
    return files, links


def create_backup(
    data_dir: Path,
    out: Path,
    *,
    now: datetime,
    store_id: str,
    progress: Progress = lambda _: None,
    step_pages: int = COPY_STEP_PAGES,
) -> dict[str, Any]:
    """Write one archive of the data dir to `out` (written beside it, then renamed); return its manifest."""
    db = data_dir / DB_NAME
    if not db.exists():
        raise BackupFailed(f"{db} 不存在", f"no database at {db}", path=str(db))
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".storebox-backup-") as tmp:
        staged = Path(tmp) / "data"
        staged.mkdir()
        copy_database(db, staged / DB_NAME, progress, step_pages)
        facts = database_facts(staged / DB_NAME)
        if facts["integrity_check"] != "ok":
            raise BackupFailed(
                f"数据库副本完整性检查失败: {facts['integrity_check']}",
                f"integrity_check of the copy failed: {facts['integrity_check']}",
            )
        progress("完整性检查通过 integrity_check ok")
        files, links = _stage_files(data_dir, staged, progress)
        files.insert(
            0, {"path": DB_NAME, "size": (staged / DB_NAME).stat().st_size, "sha256": _sha256(staged / DB_NAME)}
        )
        manifest = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "created_at": now.isoformat(),
            "store_id": store_id,
            "source": str(data_dir.resolve()),
            "database": facts,
            "files": files,
            "links": links,
        }
        partial = out.with_name(f".{out.name}.part")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the keys
        with os.fdopen(fd, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w:gz", compresslevel=6) as tar:
                body = json.dumps(manifest, ensure_ascii=False, indent=2).encode()
                info = tarfile.TarInfo(MANIFEST)
                info.size, info.mode, info.mtime = len(body), 0o600, int(now.timestamp())
                tar.addfile(info, io.BytesIO(body))
                for done, entry in enumerate(files, 1):
                    tar.add(staged / entry["path"], arcname=f"{DATA}/{entry['path']}", recursive=False)
                    if done % 500 == 0:
                        progress(f"归档 archived {done}/{len(files)} files")
                for link in links:
                    info = tarfile.TarInfo(f"{DATA}/{link['path']}")
                    info.type, info.linkname, info.mode = tarfile.SYMTYPE, link["target"], 0o777
                    tar.addfile(info)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, out)
        _fsync_dir(out.parent)
    progress(f"备份完成 backup written: {out} ({out.stat().st_size} bytes)")
    return manifest


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def prune_backups(folder: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` archives `storebox-*.tar.gz` in `folder`; return the deleted ones."""
    archives = sorted(folder.glob("storebox-*.tar.gz"), key=lambda p: p.name, reverse=True)
    for old in archives[keep:]:
        old.unlink()
    return archives[keep:]


# --- verify and restore ---


def _safe_member_path(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not name.startswith(f"{DATA}/"):
        raise BackupInvalid(f"不安全的路径 {name}", f"unsafe path {name}", member=name)
    return path.relative_to(DATA)


@contextlib.contextmanager
def _open_archive(archive: Path) -> Iterator[tarfile.TarFile]:
    try:
        tar = tarfile.open(archive, mode="r:*")  # noqa: SIM115 (closed below; errors mapped first)
    except FileNotFoundError:
        raise BackupInvalid("文件不存在", "file not found", path=str(archive)) from None
    except (tarfile.TarError, OSError, EOFError) as err:
        raise BackupInvalid("不是备份归档", f"not a backup archive ({err})", path=str(archive)) from None
    try:
        yield tar
    finally:
        tar.close()


def _read_manifest(tar: tarfile.TarFile) -> dict[str, Any]:
    first = tar.next()
    if first is None or first.name != MANIFEST or not first.isfile():
        raise BackupInvalid("缺少清单", "no manifest (not a StoreBox backup)")
    fh = tar.extractfile(first)
    assert fh is not None
    try:
        manifest = json.loads(fh.read(16 * 1024 * 1024))
    except (ValueError, UnicodeDecodeError):
        raise BackupInvalid("清单无法解析", "manifest is not JSON", member=MANIFEST) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupInvalid("清单格式错误", "manifest of another format", member=MANIFEST)
    if manifest.get("version") != FORMAT_VERSION:
        raise BackupInvalid(f"不支持的版本 {manifest.get('version')}", f"unsupported version {manifest.get('version')}")
    files, links = manifest.get("files"), manifest.get("links")
    if not isinstance(files, list) or not isinstance(links, list):
        raise BackupInvalid("清单缺少文件列表", "manifest lacks files or links")
    for entry in files:
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("path"), str)
            and isinstance(entry.get("sha256"), str)
            and isinstance(entry.get("size"), int)
        ):
            raise BackupInvalid("清单条目错误", f"bad file entry {entry!r:.200}")
        _safe_member_path(f"{DATA}/{entry['path']}")
    for link in links:
        if not (isinstance(link, dict) and isinstance(link.get("path"), str) and isinstance(link.get("target"), str)):
            raise BackupInvalid("清单条目错误", f"bad link entry {link!r:.200}")
        _safe_link(link["path"], link["target"])
    if not any(entry["path"] == DB_NAME for entry in files):
        raise BackupInvalid("备份中没有数据库", "no database in the backup")
    return manifest


def _safe_link(path: str, target: str) -> None:
    # A link must stay inside the data dir (packages' `current` -> a version folder).
    resolved = PurePosixPath(os.path.normpath(PurePosixPath(path).parent / target))
    if PurePosixPath(target).is_absolute() or resolved.parts[:1] == ("..",):
        raise BackupInvalid(f"链接指向数据目录之外 {path}", f"link leaves the data dir: {path} -> {target}")


def _unpack(archive: Path, into: Path | None, progress: Progress) -> dict[str, Any]:
    """Check every member against the manifest (sha256, size, nothing extra, nothing missing); with `into`, write
    the files there. Returns the manifest."""
    with _open_archive(archive) as tar:
        manifest = _read_manifest(tar)
        expected = {entry["path"]: entry for entry in manifest["files"]}
        links = {link["path"]: link["target"] for link in manifest["links"]}
        seen: set[str] = set()
        try:
            # next(), not iteration: iterating a TarFile starts again at the manifest.
            while (member := tar.next()) is not None:
                relative = str(_safe_member_path(member.name))
                if member.issym():
                    if links.get(relative) != member.linkname:
                        raise BackupInvalid(f"未列出的链接 {relative}", f"link not in manifest: {relative}")
                    if into is not None:
                        (into / relative).parent.mkdir(parents=True, exist_ok=True)
                        os.symlink(member.linkname, into / relative)
                    seen.add(relative)
                    continue
                entry = expected.get(relative)
                if entry is None or not member.isfile() or relative in seen:
                    raise BackupInvalid(f"未列出的成员 {relative}", f"member not in manifest: {relative}")
                fh = tar.extractfile(member)
                assert fh is not None
                digest, size = hashlib.sha256(), 0
                out = None
                if into is not None:
                    target = into / relative
                    target.parent.mkdir(parents=True, exist_ok=True)
                    out = target.open("xb")
                try:
                    while block := fh.read(1 << 20):
                        digest.update(block)
                        size += len(block)
                        if out is not None:
                            out.write(block)
                    if out is not None:
                        out.flush()
                        os.fsync(out.fileno())
                finally:
                    if out is not None:
                        out.close()
                if digest.hexdigest() != entry["sha256"] or size != entry["size"]:
                    raise BackupInvalid(
                        f"{relative} 校验和不符 (已损坏或被改动)",
                        f"{relative}: sha256 mismatch (damaged or altered)",
                        member=relative,
                    )
                seen.add(relative)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
            raise BackupInvalid("归档已损坏", f"archive damaged ({err})", path=str(archive)) from None
        missing = sorted((set(expected) | set(links)) - seen)
        if missing:
            raise BackupInvalid(f"缺少 {missing[0]}", f"missing from archive: {', '.join(missing[:5])}")
    progress(f"校验通过 checked {len(expected)} files against the manifest")
    return manifest


def verify_backup(archive: Path, progress: Progress = lambda _: None) -> dict[str, Any]:
    """Check the archive: manifest, every sha256, and integrity_check of the database in it. Returns the manifest."""
    with tempfile.TemporaryDirectory(prefix="storebox-verify-") as tmp:
        manifest = _unpack(archive, Path(tmp), progress)
        _check_database(Path(tmp) / DB_NAME, progress)
    return manifest


def _check_database(path: Path, progress: Progress) -> None:
    try:
        facts = database_facts(path)
    except sqlite3.DatabaseError as err:
        raise BackupInvalid("数据库无法打开", f"database does not open ({err})") from None
    if facts["integrity_check"] != "ok":
        raise BackupInvalid(
            f"数据库完整性检查失败: {facts['integrity_check']}", f"integrity_check: {facts['integrity_check']}"
        )
    progress("数据库完整性检查通过 integrity_check ok")


def restore_backup(
    archive: Path, data_dir: Path, *, force: bool, now: datetime, progress: Progress = lambda _: None
) -> dict[str, Any]:
    """Unpack beside `data_dir`, check everything, then rename into place. Refused when a box holds the data dir,
    or when it is not empty and not `force` (then the old dir is kept as `<dir>.before-restore-<time>`)."""
    data_dir = data_dir.absolute()
    if data_dir_in_use(data_dir):
        raise DataDirInUse(data_dir)
    occupied = data_dir.exists() and any(data_dir.iterdir())
    if occupied and not force:
        raise DataDirNotEmpty(data_dir)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=data_dir.parent, prefix=f".{data_dir.name}.restore-"))
    try:
        manifest = _unpack(archive, staging, progress)
        _check_database(staging / DB_NAME, progress)
        kept: Path | None = None
        if data_dir.exists():
            # Hold the old dir's lock across the swap: a box starting now is refused instead of opening it.
            lock = lock_data_dir(data_dir)
            try:
                if occupied:
                    kept = data_dir.with_name(f"{data_dir.name}.before-restore-{now.strftime('%Y%m%dT%H%M%S')}")
                    os.rename(data_dir, kept)
                else:
                    (data_dir / LOCK_NAME).unlink(missing_ok=True)
                    data_dir.rmdir()
            finally:
                lock.release()
        os.rename(staging, data_dir)
        _fsync_dir(data_dir.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    progress(f"已恢复 restored into {data_dir}" + (f"; previous data dir kept as {kept}" if kept else ""))
    return {"manifest": manifest, "data_dir": str(data_dir), "previous": str(kept) if kept else None}
