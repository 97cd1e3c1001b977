"""Backups of the data dir (edge/backup.py): online copy, manifest, verify, atomic restore, the data dir lock."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.backup import (
    DB_NAME,
    BackupInvalid,
    DataDirInUse,
    DataDirNotEmpty,
    create_backup,
    data_dir_in_use,
    lock_data_dir,
    prune_backups,
    restore_backup,
    verify_backup,
)
from tests.edge.web.apibox import seed

NOW = datetime(2026, 12, 5, 3, 30, tzinfo=UTC)


def _data_dir(root: Path) -> Path:
    data = root / "data"
    data.mkdir(parents=True)
    seed(data / DB_NAME)
    (data / "secret.key").write_bytes(os.urandom(32))
    (data / "sync.key").write_text("k1.secret\n")
    (data / "packages" / "price-list-3").mkdir(parents=True)
    (data / "packages" / "price-list-3" / "prices.json").write_text('{"COLA": 350}')
    (data / "packages" / "current").symlink_to("price-list-3")
    (data / "attachments" / "ab").mkdir(parents=True)
    (data / "attachments" / "ab" / "photo.jpg").write_bytes(b"\xff\xd8" + os.urandom(5000))
    (data / "attachments" / ".tmp").mkdir()
    (data / "attachments" / ".tmp" / "half.part").write_bytes(b"x")  # being written: not archived
    (data / "papers").mkdir()
    (data / "papers" / "licence.png").write_bytes(os.urandom(300))
    return data


def _tree(folder: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        relative = str(path.relative_to(folder))
        if path.is_symlink():
            found[relative] = "-> " + os.readlink(path)
        elif path.is_file() and not relative.startswith(DB_NAME) and relative != "storebox.lock":
            found[relative] = path.read_bytes().hex()
    return found


def _dump(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def test_backup_then_restore_gives_the_same_data_dir(tmp_path: Path) -> None:
    data = _data_dir(tmp_path)
    lines: list[str] = []
    manifest = create_backup(data, tmp_path / "b.tar.gz", now=NOW, store_id="store-001", progress=lines.append)
    assert manifest["database"]["integrity_check"] == "ok"
    assert any("100%" in line for line in lines)
    assert (tmp_path / "b.tar.gz").stat().st_mode & 0o777 == 0o600  # it holds the keys
    paths = {entry["path"] for entry in manifest["files"]}
    assert {DB_NAME, "secret.key", "sync.key", "packages/price-list-3/prices.json", "papers/licence.png"} <= paths
    assert not any(".tmp" in p for p in paths)
    assert manifest["links"] == [{"path": "packages/current", "target": "price-list-3"}]
    assert verify_backup(tmp_path / "b.tar.gz")["files"] == manifest["files"]

    result = restore_backup(tmp_path / "b.tar.gz", tmp_path / "restored", force=False, now=NOW)
    restored = Path(result["data_dir"])
    expected = {k: v for k, v in _tree(data).items() if ".tmp" not in k}
    assert _tree(restored) == expected
    assert _dump(restored / DB_NAME) == _dump(data / DB_NAME)
    assert (restored.stat().st_mode & 0o777) == 0o700
    assert not list(tmp_path.glob(".restored.restore-*"))  # the staging folder was renamed into place


def test_backup_is_one_instant_while_another_process_commits(tmp_path: Path) -> None:
    import subprocess
    import sys

    data = _data_dir(tmp_path)
    conn = sqlite3.connect(data / DB_NAME, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE ticks (n INTEGER PRIMARY KEY, pad TEXT)")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO ticks (pad) VALUES (?)", [("x" * 500,)] * 20000)  # many pages: several steps
    conn.execute("COMMIT")
    conn.close()
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3,sys\n"
            f"c=sqlite3.connect({str(data / DB_NAME)!r},isolation_level=None)\n"
            "c.execute('PRAGMA busy_timeout=5000')\n"
            "print('go',flush=True)\n"
            "while True:\n"
            "    c.execute('BEGIN IMMEDIATE');c.execute(\"INSERT INTO ticks (pad) VALUES ('y')\");"
            "c.execute(\"INSERT INTO ticks (pad) VALUES ('z')\");c.execute('COMMIT')\n",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline() == b"go\n"
        lines: list[str] = []
        create_backup(data, tmp_path / "b.tar.gz", now=NOW, store_id="s", progress=lines.append, step_pages=100)
    finally:
        writer.kill()
        writer.wait()
    restore_backup(tmp_path / "b.tar.gz", tmp_path / "r", force=False, now=NOW)
    copy = sqlite3.connect(tmp_path / "r" / DB_NAME)
    # Every commit adds a 'y' and a 'z' together: a copy of one instant has as many of each.
    y, z = copy.execute("SELECT sum(pad = 'y'), sum(pad = 'z') FROM ticks").fetchone()
    assert y == z
    assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert len([line for line in lines if "database" in line]) >= 3  # stepped, with progress


def test_restore_into_a_running_box_data_dir_is_refused(tmp_path: Path) -> None:
    data = _data_dir(tmp_path)
    create_backup(data, tmp_path / "b.tar.gz", now=NOW, store_id="s")
    lock = lock_data_dir(data)
    try:
        assert data_dir_in_use(data)
        with pytest.raises(DataDirInUse):
            lock_data_dir(data)
        before = _tree(data)
        with pytest.raises(DataDirInUse):
            restore_backup(tmp_path / "b.tar.gz", data, force=True, now=NOW)
        assert _tree(data) == before
    finally:
        lock.release()
    assert not data_dir_in_use(data)


def test_non_empty_dir_needs_force_and_the_old_one_is_kept(tmp_path: Path) -> None:
    data = _data_dir(tmp_path)
    create_backup(data, tmp_path / "b.tar.gz", now=NOW, store_id="s")
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep-me").write_text("old")
    with pytest.raises(DataDirNotEmpty):
        restore_backup(tmp_path / "b.tar.gz", target, force=False, now=NOW)
    result = restore_backup(tmp_path / "b.tar.gz", target, force=True, now=NOW)
    assert (Path(result["previous"]) / "keep-me").read_text() == "old"
    assert (target / "sync.key").read_text() == "k1.secret\n"
    empty = tmp_path / "empty"
    empty.mkdir()
    restore_backup(tmp_path / "b.tar.gz", empty, force=False, now=NOW)  # an empty dir needs no --force
    assert (empty / DB_NAME).exists()


def _rewrite(archive: Path, out: Path, change: dict[str, bytes | None], manifest_edit: object = None) -> None:
    with tarfile.open(archive) as src, tarfile.open(out, "w:gz") as dst:
        for member in src:
            body = src.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            if member.name.endswith("manifest.json") and manifest_edit is not None:
                body = manifest_edit(json.loads(body)) if callable(manifest_edit) else body  # type: ignore[arg-type]
            if member.name in change:
                body = change[member.name]
                if body is None:
                    continue
            if body is not None:
                member.size = len(body)
                dst.addfile(member, io.BytesIO(body))
            else:
                dst.addfile(member)


def test_a_damaged_or_altered_archive_is_refused_and_restores_nothing(tmp_path: Path) -> None:
    data = _data_dir(tmp_path)
    good = tmp_path / "b.tar.gz"
    create_backup(data, good, now=NOW, store_id="s")

    flipped = tmp_path / "flipped.tar.gz"
    raw = bytearray(good.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    flipped.write_bytes(bytes(raw))
    altered = tmp_path / "altered.tar.gz"
    _rewrite(good, altered, {"storebox-backup/data/sync.key": b"k9.stolen\n"})
    missing = tmp_path / "missing.tar.gz"
    _rewrite(good, missing, {"storebox-backup/data/secret.key": None})
    extra = tmp_path / "extra.tar.gz"
    with tarfile.open(good) as src, tarfile.open(extra, "w:gz") as dst:
        for member in src:
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
        info = tarfile.TarInfo("storebox-backup/data/../../evil")
        info.size = 1
        dst.addfile(info, io.BytesIO(b"x"))
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])

    for bad in (flipped, altered, missing, extra, truncated):
        with pytest.raises(BackupInvalid):
            verify_backup(bad)
        with pytest.raises(BackupInvalid):
            restore_backup(bad, tmp_path / f"r-{bad.stem}", force=False, now=NOW)
        assert not (tmp_path / f"r-{bad.stem}").exists()
    assert not list(tmp_path.glob(".r-*"))  # staging removed


def test_a_link_out_of_the_data_dir_is_refused(tmp_path: Path) -> None:
    data = _data_dir(tmp_path)
    (data / "packages" / "current").unlink()
    (data / "packages" / "current").symlink_to("/etc")
    create_backup(data, tmp_path / "b.tar.gz", now=NOW, store_id="s")
    with pytest.raises(BackupInvalid, match="link"):
        verify_backup(tmp_path / "b.tar.gz")


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.binary(max_size=4096))
def test_arbitrary_bytes_are_refused_cleanly(tmp_path: Path, blob: bytes) -> None:
    path = tmp_path / "junk.tar.gz"
    path.write_bytes(blob)
    with pytest.raises(BackupInvalid):
        verify_backup(path)


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    manifest=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda c: (
            st.lists(c, max_size=4)
            | st.dictionaries(
                st.sampled_from(["format", "version", "files", "links", "path", "sha256", "size", "target"]),
                c,
                max_size=6,
            )
        ),
        max_leaves=20,
    )
)
def test_arbitrary_manifests_are_refused_cleanly(tmp_path: Path, manifest: object) -> None:
    path = tmp_path / "m.tar.gz"
    body = json.dumps(manifest).encode()
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("storebox-backup/manifest.json")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    with pytest.raises(BackupInvalid):
        verify_backup(path)


def test_prune_keeps_the_newest(tmp_path: Path) -> None:
    for stamp in ("20261201T033000Z", "20261202T033000Z", "20261203T033000Z"):
        (tmp_path / f"storebox-s-{stamp}.tar.gz").write_bytes(b"")
    deleted = prune_backups(tmp_path, 2)
    assert [p.name for p in deleted] == ["storebox-s-20261201T033000Z.tar.gz"]
    assert len(list(tmp_path.glob("*.tar.gz"))) == 2


def test_the_lock_dies_with_the_box_not_with_its_forked_writer(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = (
        "import os, sys, time\n"
        "from pathlib import Path\n"
        "from edge.backup import lock_data_dir\n"
        "lock = lock_data_dir(Path(sys.argv[1]))\n"
        "child = os.fork()\n"
        "if child == 0:\n"
        "    os.closerange(0, 3)\n"  # let the test read the parent's output without waiting for the child
        "    time.sleep(60)\n"
        "    os._exit(0)\n"
        "print(child, flush=True)\n"
        "os._exit(0)\n"  # the box dies without releasing anything; its forked child lives on
    )
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True)
    child = int(out.stdout)
    try:
        os.kill(child, 0)  # still alive
        assert not data_dir_in_use(tmp_path)
        lock_data_dir(tmp_path).release()
    finally:
        os.kill(child, 9)
