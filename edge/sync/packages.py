"""HQ packages on the box (下发包, docs/packages.md): verify, install atomically, roll back, report upstream.

Install of a package file, in this order:

1. verify: HQ's signature (settings.hq_public_key; unset refuses), the format's checks, this store among its
   `stores`, a version newer than the one in force (a replay or a downgrade is refused);
2. validate its content with the handler of its kind (price_list, model, firmware_profile, rule_pack);
3. stage: unpack into packages_dir/<kind>/<name>/<version>/ (written to a temp dir, fsynced, renamed);
4. commit: one writer transaction records the install, makes it the version in force and applies the kind's
   database changes (a price list's prices) — this is the commit point;
5. switch packages_dir/<kind>/<name>/current to the new version (a new symlink renamed over it: os.replace).

A crash before 4 leaves the previous version in force (the staged directory is unused and replaced next time);
a crash between 4 and 5 is completed by `reconcile()`, which makes every `current` symlink follow the database
(run before every pull and by every packages command). Rollback returns to the version that was in force when
the current one was installed: the database in one transaction (a price list's prices restored to their values
before it), then the symlink.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import logging
import os
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from cloud_sync.packages.format import (
    Package,
    PackageKind,
    invalid,
    parse_public_key,
    read_package,
)
from edge.ledger.audit import append_audit
from edge.ledger.errors import DomainError
from edge.ledger.money import parse_yuan
from edge.rules import packs as rule_packs
from edge.sync.errors import SyncError, SyncRefused

log = logging.getLogger("storebox.sync.packages")
T = TypeVar("T")
Transact = Callable[..., Any]  # transact(fn, *args) -> fn(conn, *args) in one write transaction
Crash = Callable[[str], None]
CURRENT = "current"
MANIFEST_COPY = ".manifest.json"
MODEL_PACKAGE = "demand"  # the model package the forecaster uses (docs/packages.md)
MAX_PRICE_FEN = 1_000_000_000
MAX_PRICE_LINES = 200_000
MAX_PROBLEMS = 50
KEEP_VERSIONS = 5  # version directories kept per package: the one in force and the rollback chain behind it


class PackageRefused(SyncError):
    code = "package_refused"
    status = 422


class PackageKeyMissing(PackageRefused):
    code = "package_key_missing"
    status = 409

    def __init__(self) -> None:
        super().__init__(
            "未设置总部公钥 (hq_public_key)，拒绝安装任何下发包",
            "hq_public_key is not set: packages are refused",
        )


class PackageNotNewer(PackageRefused):
    code = "package_not_newer"
    status = 409


class PackageOtherStore(PackageRefused):
    code = "package_other_store"
    status = 403


class PackageContentInvalid(PackageRefused):
    code = "package_content_invalid"


class NothingToRollBack(PackageRefused):
    code = "package_nothing_to_roll_back"
    status = 409


# --- content handlers (validate before anything is written) ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Validated:
    """What a handler found: for a price list, (sku, price_fen) to apply."""

    prices: tuple[tuple[str, int], ...] = ()
    summary: dict[str, Any] = field(default_factory=dict)
    rule_pack: rule_packs.PackContent | None = None  # a rule pack's checked rules, put in force at commit


def _content_invalid(kind: str, problems: Sequence[str]) -> PackageContentInvalid:
    first = problems[0] if problems else "?"
    more = f" (+{len(problems) - 1})" if len(problems) > 1 else ""
    return PackageContentInvalid(
        f"下发包内容无效 ({kind}): {first}{more}",
        f"package content refused ({kind}): {first}{more}",
        problems=list(problems[:MAX_PROBLEMS]),
    )


def parse_price_list(data: bytes) -> list[tuple[int, str, int]]:
    """(line, sku, price_fen) of prices.csv: header `sku,price` (yuan, 2 decimals) or `sku,price_fen`."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _content_invalid("price_list", [f"prices.csv: not UTF-8 (byte {exc.start})"]) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader, [])]
    except csv.Error as exc:
        raise _content_invalid("price_list", [f"prices.csv:1: {exc}"]) from None
    if header not in (["sku", "price"], ["sku", "price_fen"]):
        raise _content_invalid("price_list", ["prices.csv:1: header must be `sku,price` (yuan) or `sku,price_fen`"])
    in_fen = header[1] == "price_fen"
    rows: list[tuple[int, str, int]] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    try:
        for record in reader:
            line = reader.line_num
            if not record or all(not c.strip() for c in record):
                continue
            if len(rows) >= MAX_PRICE_LINES:
                problems.append(f"prices.csv:{line}: more than {MAX_PRICE_LINES} lines")
                break
            if len(record) != 2:
                problems.append(f"prices.csv:{line}: want 2 columns, got {len(record)}")
                continue
            sku, raw = record[0].strip(), record[1].strip()
            if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", sku):
                problems.append(f"prices.csv:{line}: invalid sku {sku[:64]!r}")
                continue
            try:
                fen = int(raw) if in_fen and re.fullmatch(r"\d{1,10}", raw) else (parse_yuan(raw) if not in_fen else -1)
            except ValueError:
                fen = -1
            if not 0 <= fen <= MAX_PRICE_FEN:
                problems.append(f"prices.csv:{line}: invalid price {raw[:32]!r} for {sku}")
                continue
            if sku in seen:
                problems.append(f"prices.csv:{line}: sku {sku} already on line {seen[sku]}")
                continue
            seen[sku] = line
            rows.append((line, sku, fen))
    except csv.Error as exc:
        problems.append(f"prices.csv:{reader.line_num}: {exc}")
    if problems:
        raise _content_invalid("price_list", problems)
    if not rows:
        raise _content_invalid("price_list", ["prices.csv: no prices"])
    return rows


def _validate_price_list(package: Package, conn: sqlite3.Connection) -> Validated:
    if set(package.files) != {"prices.csv"}:
        raise _content_invalid("price_list", ["a price list holds exactly one file, prices.csv"])
    rows = parse_price_list(package.files["prices.csv"])
    known = {r[0] for r in conn.execute("SELECT sku FROM items")}
    unknown = [f"prices.csv:{line}: unknown sku {sku}" for line, sku, _ in rows if sku not in known]
    if unknown:
        raise _content_invalid("price_list", unknown)
    return Validated(prices=tuple((sku, fen) for _, sku, fen in rows), summary={"prices": len(rows)})


def _validate_model(package: Package, folder: Path) -> Validated:
    """The metadata must match this box's feature schema and every model file it names must load."""
    from edge.forecast.features import FEATURE_NAMES, SCHEMA_VERSION
    from edge.forecast.runtime import MODEL_NAME, MetadataError, load_demand_model, parse_metadata

    meta_name = f"{MODEL_NAME}.json"
    if meta_name not in package.files:
        raise _content_invalid("model", [f"{meta_name} (the model's metadata) is missing"])
    try:
        meta = parse_metadata(package.files[meta_name])
    except MetadataError as exc:
        raise _content_invalid("model", [f"{meta_name}: {exc}"]) from None
    if meta.schema_version != SCHEMA_VERSION or meta.feature_names != FEATURE_NAMES:
        raise _content_invalid(
            "model",
            [f"{meta_name}: feature schema {meta.schema_version} does not match this box's {SCHEMA_VERSION}"],
        )
    if not meta.files:
        raise _content_invalid("model", [f"{meta_name}: names no model file"])
    problems = [
        f"{name} ({kind}) is not in the package" for kind, name in meta.files.items() if name not in package.files
    ]
    if problems:
        raise _content_invalid("model", problems)
    for kind in meta.files:
        if kind == "tflite":
            try:
                import ai_edge_litert  # type: ignore[import-untyped]  # noqa: F401
            except ImportError:
                continue  # this box cannot run .tflite: the onnx file decides
        if load_demand_model(folder, kind) is None:
            raise _content_invalid("model", [f"the {kind} model file does not load or its shapes differ (see the log)"])
    return Validated(summary={"model": meta.name, "kinds": sorted(meta.files)})


def _validate_profiles(package: Package) -> Validated:
    from edge.devices.profiles import parse_profile

    problems: list[str] = []
    for path, data in sorted(package.files.items()):
        if "/" in path or not path.endswith(".yaml"):
            problems.append(f"{path}: a firmware profile package holds *.yaml files at its top only")
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            problems.append(f"{path}: not UTF-8")
            continue
        _, found = parse_profile(text, path, expected_id=path[: -len(".yaml")])
        problems.extend(str(p) for p in found)
    if problems:
        raise _content_invalid("firmware_profile", problems)
    return Validated(summary={"profiles": sorted(p[: -len(".yaml")] for p in package.files)})


# A rule pack's file (docs/rules.md "Rule packs"): `{description?, state?: active|draft, rules: [<rule>...]}`, each
# rule a full rule document checked by edge.rules.model.validate_rule (edge.rules.packs.PACK_SCHEMA).
RULE_PACK_SCHEMA: dict[str, Any] = rule_packs.PACK_SCHEMA


def _validate_rule_pack(package: Package) -> Validated:
    names = sorted(package.files)
    if len(names) != 1 or names[0] not in ("rules.json", "rules.yaml"):
        raise _content_invalid("rule_pack", ["a rule pack holds exactly one file, rules.json or rules.yaml"])
    name = names[0]
    try:
        content = rule_packs.load_pack_text(package.files[name], name)
    except rule_packs.RulePackInvalid as error:
        raise _content_invalid("rule_pack", error.detail.get("problems") or [error.message_en]) from None
    return Validated(summary={"rules": len(content.rules), "state": content.state}, rule_pack=content)


def _validate_module(package: Package) -> Validated:
    """A scenario module (docs/modules.md): manifest.yaml naming this package's name and version, its entry file,
    every Python file compiling. Nothing is imported or run here; the module host runs it in its own process."""
    from edge.modules.errors import ModuleError
    from edge.modules.manifest import load_manifest_text

    m = package.manifest
    if "manifest.yaml" not in package.files:
        raise _content_invalid("module", ["manifest.yaml (the module's manifest) is missing"])
    try:
        manifest = load_manifest_text(package.files["manifest.yaml"])
    except ModuleError as error:
        raise _content_invalid("module", error.detail.get("problems") or [error.message_en]) from None
    problems: list[str] = []
    if (manifest.name, manifest.version) != (m.name, m.version):
        problems.append(f"manifest.yaml names {manifest.name} v{manifest.version}, the package {m.name} v{m.version}")
    if manifest.entry not in package.files:
        problems.append(f"the entry file {manifest.entry} is not in the package")
    for path, data in sorted(package.files.items()):
        if path.endswith(".py"):
            try:
                compile(data, path, "exec", dont_inherit=True)
            except (SyntaxError, ValueError) as exc:
                problems.append(f"{path}: does not compile: {str(exc)[:200]}")
    if problems:
        raise _content_invalid("module", problems)
    return Validated(summary={"module": manifest.name, "may": list(manifest.may)})


def _module_record(package: Package, folder: Path, actor: str) -> Any:
    """The module host's install record of a staged module package (edge.modules.store.ModuleInstall)."""
    import json

    from edge.modules.host import tree_sha256
    from edge.modules.manifest import load_manifest_text
    from edge.modules.store import ModuleInstall

    manifest = load_manifest_text(package.files["manifest.yaml"])
    return ModuleInstall(
        name=manifest.name,
        version=manifest.version,
        source="package",
        directory=str(folder),
        manifest=json.dumps(manifest.to_dict(), ensure_ascii=False),
        sha256=tree_sha256(folder),
        actor=actor,
    )


# --- the transaction parts (module-level: they run in the writer process) -----------------------------


@dataclass(frozen=True, slots=True)
class InstallRecord:
    kind: str
    name: str
    version: int
    package_sha256: str
    remote_id: int | None
    manifest: str
    actor: str
    source: str
    prices: tuple[tuple[str, int], ...] = ()
    rule_pack: rule_packs.PackContent | None = None
    signature: str | None = None  # hex of the manifest signature (recorded as a rule pack's review)
    module: Any = None  # a scenario module's install (edge.modules.store.ModuleInstall), put in force at commit


def current_version(conn: sqlite3.Connection, kind: str, name: str) -> int:
    row = conn.execute("SELECT version FROM package_current WHERE kind = ? AND name = ?", (kind, name)).fetchone()
    return int(row[0]) if row else 0


def _not_newer(kind: str, name: str, version: int, installed: int) -> PackageNotNewer:
    return PackageNotNewer(
        f"{kind}/{name} 版本 {version} 不比已安装的版本 {installed} 新 (拒绝重放或降级)",
        f"{kind}/{name} version {version} is not newer than the installed {installed} (replay or downgrade refused)",
        kind=kind,
        name=name,
        version=version,
        installed=installed,
    )


def commit_install(conn: sqlite3.Connection, record: InstallRecord, now: str) -> int:
    """Record the install, put it in force and apply its prices: one transaction (the commit point)."""
    installed = current_version(conn, record.kind, record.name)
    if record.version <= installed:
        raise _not_newer(record.kind, record.name, record.version, installed)
    install_id = int(
        conn.execute(
            "INSERT INTO package_installs (kind, name, version, previous, package_sha256, remote_id, manifest,"
            " installed_at, installed_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.kind,
                record.name,
                record.version,
                installed,
                record.package_sha256,
                record.remote_id,
                record.manifest,
                now,
                record.actor,
            ),
        ).lastrowid
        or 0
    )
    if record.prices:
        unknown: list[str] = []
        for sku, fen in record.prices:
            row = conn.execute("SELECT price_fen FROM items WHERE sku = ?", (sku,)).fetchone()
            if row is None:
                unknown.append(sku)
                continue
            conn.execute(
                "INSERT INTO package_price_changes (install_id, sku, old_price_fen, new_price_fen) VALUES (?, ?, ?, ?)",
                (install_id, sku, int(row[0]), fen),
            )
            conn.execute("UPDATE items SET price_fen = ? WHERE sku = ?", (fen, sku))
        if unknown:
            raise _content_invalid("price_list", [f"unknown sku {s}" for s in unknown])
    if record.rule_pack is not None:  # the pack's rules in force in this same transaction (edge/rules/packs.py)
        rule_packs.install_pack(
            conn,
            name=record.name,
            version=record.version,
            source="package",
            content=record.rule_pack,
            actor=record.actor,
            now=datetime.fromisoformat(now),
            signature=record.signature,
            install_id=install_id,
        )
    if record.module is not None:  # the module in force in this same transaction; its host follows (docs/modules.md)
        from edge.modules.store import install_version

        install_version(conn, record.module, now)
    _set_current(conn, record.kind, record.name, record.version, install_id, now)
    _history(
        conn,
        now,
        record.kind,
        record.name,
        record.version,
        "installed",
        installed,
        record.version,
        None,
        None,
        record.actor,
        record.source,
        record.remote_id,
        record.package_sha256,
    )
    append_audit(
        conn,
        ts=now,
        actor=record.actor,
        device=None,
        action="package.install",
        object=f"package:{record.kind}/{record.name}",
        detail={
            "version": record.version,
            "previous": installed,
            "sha256": record.package_sha256,
            "prices": len(record.prices),
            "source": record.source,
        },
    )
    return install_id


def _set_current(
    conn: sqlite3.Connection, kind: str, name: str, version: int, install_id: int | None, now: str
) -> None:
    conn.execute(
        "INSERT INTO package_current (kind, name, version, install_id, since) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (kind, name) DO UPDATE SET version = excluded.version, install_id = excluded.install_id,"
        " since = excluded.since",
        (kind, name, version, install_id, now),
    )


def _history(
    conn: sqlite3.Connection,
    now: str,
    kind: str,
    name: str,
    version: int,
    action: str,
    from_version: int | None,
    to_version: int | None,
    code: str | None,
    reason: str | None,
    actor: str,
    source: str,
    remote_id: int | None,
    sha: str | None,
) -> None:
    conn.execute(
        "INSERT INTO package_history (at, kind, name, version, action, from_version, to_version, code, reason, actor,"
        " source, remote_id, package_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (now, kind, name, version, action, from_version, to_version, code, reason, actor, source, remote_id, sha),
    )


def record_failure(
    conn: sqlite3.Connection,
    now: str,
    kind: str,
    name: str,
    version: int,
    code: str,
    reason: str,
    actor: str,
    source: str,
    remote_id: int | None,
    sha: str | None,
) -> None:
    _history(
        conn,
        now,
        kind,
        name,
        version,
        "failed",
        current_version(conn, kind, name),
        None,
        code,
        reason[:2000],
        actor,
        source,
        remote_id,
        sha,
    )


def commit_rollback(
    conn: sqlite3.Connection, kind: str, name: str, actor: str, source: str, now: str, root: str | None = None
) -> dict[str, Any]:
    """Return kind/name to the version in force before the current one (prices restored): one transaction."""
    row = conn.execute(
        "SELECT c.version, c.install_id, i.previous, i.remote_id FROM package_current c"
        " LEFT JOIN package_installs i ON i.id = c.install_id WHERE c.kind = ? AND c.name = ?",
        (kind, name),
    ).fetchone()
    if row is None or int(row[0]) == 0:
        raise NothingToRollBack(
            f"{kind}/{name} 没有可回滚的版本",
            f"{kind}/{name} has no installed version to roll back",
            kind=kind,
            name=name,
        )
    version, install_id, previous, remote_id = int(row[0]), int(row[1]), int(row[2]), row[3]
    if root is not None and previous and not (package_dir(Path(root), kind, name) / str(previous)).is_dir():
        raise PackageRefused(
            f"{kind}/{name} 版本 {previous} 的文件已不在，无法回滚",
            f"the files of {kind}/{name} version {previous} are gone: cannot roll back",
            kind=kind,
            name=name,
            version=previous,
        )
    restored, kept = 0, []
    for sku, old, new in conn.execute(
        "SELECT sku, old_price_fen, new_price_fen FROM package_price_changes WHERE install_id = ? ORDER BY sku",
        (install_id,),
    ).fetchall():
        price = conn.execute("SELECT price_fen FROM items WHERE sku = ?", (sku,)).fetchone()
        if price is not None and int(price[0]) == int(new):
            conn.execute("UPDATE items SET price_fen = ? WHERE sku = ?", (int(old), sku))
            restored += 1
        else:
            kept.append(sku)  # changed by someone since: their price stays
    if kind == PackageKind.MODULE.value:  # the module's previous version, files and state (edge/modules/store.py)
        from edge.modules.store import package_rolled_back

        package_rolled_back(conn, name, version, actor, now)
    if kind == PackageKind.RULE_PACK.value:  # the previous version's rules exactly, overrides kept
        rule_packs.remove_pack(
            conn, name=name, source="package", actor=actor, now=datetime.fromisoformat(now), to_version=previous
        )
    target = None
    if previous:
        found = conn.execute(
            "SELECT MAX(id) FROM package_installs WHERE kind = ? AND name = ? AND version = ?", (kind, name, previous)
        ).fetchone()
        target = int(found[0]) if found and found[0] is not None else None
    _set_current(conn, kind, name, previous, target, now)
    _history(
        conn, now, kind, name, version, "rolled_back", version, previous, None, None, actor, source, remote_id, None
    )
    append_audit(
        conn,
        ts=now,
        actor=actor,
        device=None,
        action="package.rollback",
        object=f"package:{kind}/{name}",
        detail={"from": version, "to": previous, "prices_restored": restored, "prices_kept": kept},
    )
    return {
        "kind": kind,
        "name": name,
        "from_version": version,
        "to_version": previous,
        "prices_restored": restored,
        "prices_kept": kept,
    }


def mark_reported(conn: sqlite3.Connection, ids: list[int], now: str) -> None:
    conn.executemany("UPDATE package_history SET reported_at = ? WHERE id = ?", [(now, i) for i in ids])


# --- reads ----------------------------------------------------------------------------------------------


def list_current(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT c.kind, c.name, c.version, c.since, i.previous, i.package_sha256, i.remote_id, i.installed_by"
        " FROM package_current c LEFT JOIN package_installs i ON i.id = c.install_id ORDER BY c.kind, c.name"
    ).fetchall()
    return [
        {
            "kind": r[0],
            "name": r[1],
            "version": int(r[2]),
            "since": r[3],
            "previous": r[4],
            "sha256": r[5],
            "remote_id": r[6],
            "installed_by": r[7],
        }
        for r in rows
    ]


def list_history(conn: sqlite3.Connection, limit: int = 100) -> list[dict[str, Any]]:
    cols = (
        "id",
        "at",
        "kind",
        "name",
        "version",
        "action",
        "from_version",
        "to_version",
        "code",
        "reason",
        "actor",
        "source",
        "remote_id",
        "reported_at",
    )
    rows = conn.execute(f"SELECT {', '.join(cols)} FROM package_history ORDER BY id DESC LIMIT ?", (limit,))
    return [dict(zip(cols, r, strict=True)) for r in rows.fetchall()]


def highest_seen(conn: sqlite3.Connection, kind: str, name: str) -> int:
    row = conn.execute(
        "SELECT MAX(version) FROM (SELECT version FROM package_installs WHERE kind = ? AND name = ?"
        " UNION ALL SELECT version FROM package_history WHERE kind = ? AND name = ? AND action = 'failed')",
        (kind, name, kind, name),
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


# --- files ----------------------------------------------------------------------------------------------


def package_dir(root: Path, kind: str, name: str) -> Path:
    return root / kind / name


def installed_dir(root: Path, kind: str, name: str) -> Path | None:
    """The directory in force for kind/name (its `current` symlink resolved), or None."""
    link = package_dir(root, kind, name) / CURRENT
    return link.resolve() if link.is_symlink() and link.resolve().is_dir() else None


def installed_model_dir(settings: Any) -> Path | None:
    """The demand model installed from HQ (model package `demand`), for the forecaster; None when there is none."""
    return installed_dir(Path(settings.packages_dir), PackageKind.MODEL.value, MODEL_PACKAGE)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def stage(root: Path, package: Package) -> Path:
    """Unpack into <root>/<kind>/<name>/<version>/ (temp dir, fsync, rename); the version dir, not yet in force."""
    m = package.manifest
    parent = package_dir(root, m.kind.value, m.name)
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".staging-{m.version}-", dir=parent))
    for path, data in package.files.items():
        target = tmp / path
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    (tmp / MANIFEST_COPY).write_bytes(package.manifest_bytes)  # a name no package file can have (leading dot)
    final = parent / str(m.version)
    if final.exists():
        if installed_dir(root, m.kind.value, m.name) == final.resolve():
            raise AssertionError("refusing to replace the version in force")  # the version check prevents this
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_dir(parent)
    return final


def switch_current(root: Path, kind: str, name: str, version: int) -> None:
    """Point <kind>/<name>/current at <version> atomically (a new symlink renamed over it); 0 removes it."""
    parent = package_dir(root, kind, name)
    link = parent / CURRENT
    if version == 0:
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        return
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".current-{os.getpid()}-{version}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(str(version), tmp)
    os.replace(tmp, link)
    _fsync_dir(parent)


def prune(root: Path, conn: sqlite3.Connection, kind: str, name: str) -> list[int]:
    """Delete the version directories below the one in force that are not in its rollback chain (KEEP_VERSIONS).
    Versions above the one in force are never touched: another install may be about to commit one."""
    current = current_version(conn, kind, name)
    previous_of = {
        int(v): int(p)
        for v, p in conn.execute(
            "SELECT version, previous FROM package_installs WHERE kind = ? AND name = ? ORDER BY id", (kind, name)
        ).fetchall()
    }
    keep: set[int] = set()
    version = current
    while version and version not in keep and len(keep) < KEEP_VERSIONS:
        keep.add(version)
        version = previous_of.get(version, 0)
    removed: list[int] = []
    parent = package_dir(root, kind, name)
    for child in parent.iterdir() if parent.is_dir() else ():
        if (
            child.name.isdigit()
            and int(child.name) < current
            and int(child.name) not in keep
            and not child.is_symlink()
        ):
            shutil.rmtree(child, ignore_errors=True)
            removed.append(int(child.name))
    return sorted(removed)


def reconcile(root: Path, conn: sqlite3.Connection) -> list[str]:
    """Make every `current` symlink follow the database (after a crash between commit and switch)."""
    fixed: list[str] = []
    for kind, name, version in conn.execute("SELECT kind, name, version FROM package_current").fetchall():
        link = package_dir(root, kind, name) / CURRENT
        want = str(version) if version else None
        have = os.readlink(link) if link.is_symlink() else None
        if have != want:
            switch_current(root, kind, name, int(version))
            fixed.append(f"{kind}/{name}: {have} -> {want}")
    for line in fixed:
        log.warning("下发包链接已修复 / package link repaired: %s", line)
    return fixed


# --- install and rollback (the orchestration; blocking: run it in a thread) ------------------------------


@dataclass(frozen=True, slots=True)
class InstallOutcome:
    kind: str
    name: str
    version: int
    previous: int
    directory: str
    summary: dict[str, Any]


def verify_package(data: bytes, settings: Any) -> Package:
    """The package checked against HQ's key and meant for this store (PackageKeyMissing when no key is set)."""
    if not settings.hq_public_key:
        raise PackageKeyMissing()
    package = read_package(data, parse_public_key(settings.hq_public_key))
    if not package.manifest.for_store(settings.store_id):
        m = package.manifest
        raise PackageOtherStore(
            f"下发包 {m.kind}/{m.name} v{m.version} 不是发给本店 {settings.store_id} 的",
            f"package {m.kind}/{m.name} v{m.version} is not for store {settings.store_id}",
            stores=list(m.stores),
        )
    return package


def install_package(
    data: bytes,
    settings: Any,
    transact: Transact,
    open_reader: Callable[[], sqlite3.Connection],
    clock: Callable[[], datetime],
    *,
    actor: str,
    source: str,
    remote_id: int | None = None,
    crash: Crash | None = None,
) -> InstallOutcome:
    """Verify, validate, stage, commit, switch (see the module docstring). Refusals raise DomainError; a refusal
    after the signature was checked is recorded in the history as `failed`."""
    root = Path(settings.packages_dir)
    package = verify_package(data, settings)
    m = package.manifest
    try:
        conn = open_reader()
        try:
            installed = current_version(conn, m.kind.value, m.name)
            if m.version <= installed:
                raise _not_newer(m.kind.value, m.name, m.version, installed)
            validated = Validated()
            if m.kind is PackageKind.PRICE_LIST:
                validated = _validate_price_list(package, conn)
        finally:
            conn.close()
        if m.kind is PackageKind.FIRMWARE_PROFILE:
            validated = _validate_profiles(package)
        elif m.kind is PackageKind.RULE_PACK:
            validated = _validate_rule_pack(package)
        elif m.kind is PackageKind.MODULE:
            validated = _validate_module(package)
        final = stage(root, package)
        if crash:
            crash("staged")
        if m.kind is PackageKind.MODEL:
            validated = _validate_model(package, final)
        record = InstallRecord(
            m.kind.value,
            m.name,
            m.version,
            package.sha256,
            remote_id,
            package.manifest_bytes.decode(),
            actor,
            source,
            validated.prices,
            validated.rule_pack,
            package.signature.hex(),
            module=_module_record(package, final, actor) if m.kind is PackageKind.MODULE else None,
        )
        transact(commit_install, record, clock().isoformat())
    except DomainError as error:
        if not isinstance(error, PackageNotNewer):
            with contextlib.suppress(Exception):
                transact(
                    record_failure,
                    clock().isoformat(),
                    m.kind.value,
                    m.name,
                    m.version,
                    error.code,
                    f"{error.message} / {error.message_en}",
                    actor,
                    source,
                    remote_id,
                    package.sha256,
                )
        raise
    if crash:
        crash("committed")
    switch_current(root, m.kind.value, m.name, m.version)
    with contextlib.suppress(OSError, sqlite3.Error):
        conn = open_reader()
        try:
            prune(root, conn, m.kind.value, m.name)
        finally:
            conn.close()
    log.info("下发包已安装 / package installed: %s/%s v%d (was v%d)", m.kind, m.name, m.version, installed)
    return InstallOutcome(m.kind.value, m.name, m.version, installed, str(final), validated.summary)


def rollback_package(
    settings: Any, transact: Transact, kind: str, name: str, clock: Callable[[], datetime], *, actor: str, source: str
) -> dict[str, Any]:
    """Roll kind/name back to the version before it: the database in one transaction, then the symlink."""
    root = Path(settings.packages_dir)
    result: dict[str, Any] = transact(commit_rollback, kind, name, actor, source, clock().isoformat(), str(root))
    switch_current(root, kind, name, int(result["to_version"]))
    return result


def writer_transact(writer: Any, loop: asyncio.AbstractEventLoop) -> Transact:
    """transact() for a worker thread: the job runs in the box's one writer (on `loop`)."""

    def transact(fn: Callable[..., T], *args: Any) -> T:
        result: T = asyncio.run_coroutine_threadsafe(writer.execute(fn, *args), loop).result()
        return result

    return transact


# --- the puller ---------------------------------------------------------------------------------------


async def report_status(client: Any, ctx: Any) -> int:
    """Send the history rows not yet reported (of packages that came from the aggregator); their count."""
    conn = ctx.open_reader()
    try:
        rows = conn.execute(
            "SELECT id, remote_id, version, action, from_version, to_version, code, reason, at FROM package_history"
            " WHERE reported_at IS NULL AND remote_id IS NOT NULL ORDER BY id LIMIT 100"
        ).fetchall()
    finally:
        conn.close()
    done: list[int] = []
    for r in rows:
        try:
            await client.post_json(
                f"/api/v1/sync/packages/{int(r[1])}/status",
                {
                    "status": r[3],
                    "version": r[2],
                    "from_version": r[4],
                    "to_version": r[5],
                    "code": r[6],
                    "reason": r[7],
                    "at": r[8],
                },
                gzip=False,
            )
        except SyncRefused as refused:  # the aggregator will never take this one (e.g. the package was removed)
            log.warning("下发包状态未被接受 / package status refused: %s (%s)", refused.message_en, int(r[1]))
        done.append(int(r[0]))
    if done:
        await ctx.writer.execute(mark_reported, done, ctx.clock().isoformat())
    return len(done)


_KEY_WARNED: set[int] = set()


def rollback_order(entry: Any) -> tuple[str, str, int, int | None] | None:
    """One entry of the aggregator's `rollbacks` as (kind, name, to_version, highest version rolled back), or None
    when it cannot be read (an unknown kind, a missing or non-integer version)."""
    if not isinstance(entry, dict):
        return None
    kind, name = entry.get("kind"), entry.get("name")
    to_version, highest = entry.get("to_version"), entry.get("version")
    if not isinstance(kind, str) or kind not in {k.value for k in PackageKind}:
        return None
    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,63}", name):
        return None
    if isinstance(to_version, bool) or not isinstance(to_version, int) or to_version < 0:
        return None
    if highest is not None and (isinstance(highest, bool) or not isinstance(highest, int)):
        return None
    return str(kind), name, to_version, highest


async def obey_rollbacks(entries: list[Any], ctx: Any) -> list[dict[str, Any]]:
    """Roll back what HQ rolled back (a module rollout, docs/canary.md): for each `{kind, name, to_version,
    version?}` the box rolls kind/name back, through the ordinary rollback, while the version in force is above
    `to_version` (and not above `version`, the highest one HQ rolled back). Each rollback is in the history and
    reported upstream like one made on the box; an entry that cannot be followed is logged and left."""
    done: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    for entry in entries[:100]:
        order = rollback_order(entry)
        if order is None:
            log.warning("总部回滚指令无法识别 / unreadable rollback from HQ: %.200r", entry)
            continue
        kind, name, to_version, highest = order
        for _ in range(KEEP_VERSIONS):
            conn = ctx.open_reader()
            try:
                in_force = current_version(conn, kind, name)
            finally:
                conn.close()
            if in_force <= to_version or (highest is not None and in_force > highest):
                break
            try:
                result = await asyncio.to_thread(
                    rollback_package,
                    ctx.settings,
                    writer_transact(ctx.writer, loop),
                    kind,
                    name,
                    ctx.clock,
                    actor="hq",
                    source="sync",
                )
            except DomainError as error:
                log.warning(
                    "未能按总部指令回滚 / could not roll back as HQ asked: %s/%s v%d: %s / %s",
                    kind,
                    name,
                    in_force,
                    error.message,
                    error.message_en,
                )
                break
            log.info(
                "已按总部指令回滚 / rolled back as HQ asked: %s/%s v%d -> v%d",
                kind,
                name,
                result["from_version"],
                result["to_version"],
            )
            done.append(result)
    return done


async def pull(client: Any, ctx: Any) -> None:
    """The sync service's puller: repair links, install what is new for this store, report statuses."""
    settings = ctx.settings
    root = Path(settings.packages_dir)
    conn = ctx.open_reader()
    try:
        reconcile(root, conn)
    finally:
        conn.close()
    await report_status(client, ctx)
    if not settings.hq_public_key:
        if id(ctx) not in _KEY_WARNED:  # once per sync service, not at every pull
            log.warning("未设置 hq_public_key，不接收下发包 / hq_public_key is not set: packages are not pulled")
            _KEY_WARNED.add(id(ctx))
        return
    offered = await client.get_json("/api/v1/sync/packages")
    loop = asyncio.get_running_loop()
    if isinstance(offered, dict) and isinstance(offered.get("rollbacks"), list):
        await obey_rollbacks(offered["rollbacks"], ctx)
    for item in offered.get("packages", []) if isinstance(offered, dict) else []:
        kind, name, version, remote_id = str(item["kind"]), str(item["name"]), int(item["version"]), int(item["id"])
        conn = ctx.open_reader()
        try:
            seen = highest_seen(conn, kind, name)
        finally:
            conn.close()
        if version <= seen:
            continue  # installed, rolled back or failed before: HQ publishes a newer version to try again
        data = await client.get_bytes(f"/api/v1/sync/packages/{remote_id}/content")
        try:
            await asyncio.to_thread(
                install_package,
                data,
                settings,
                writer_transact(ctx.writer, loop),
                ctx.open_reader,
                ctx.clock,
                actor="sync",
                source="sync",
                remote_id=remote_id,
            )
        except DomainError as error:
            log.warning(
                "下发包未安装 / package not installed: %s/%s v%d: %s / %s",
                kind,
                name,
                version,
                error.message,
                error.message_en,
            )
            conn = ctx.open_reader()
            try:
                recorded = highest_seen(conn, kind, name) >= version
            finally:
                conn.close()
            if not recorded:  # refused before its manifest could be trusted (signature, format, store)
                await ctx.writer.execute(
                    record_failure,
                    ctx.clock().isoformat(),
                    kind,
                    name,
                    version,
                    error.code,
                    f"{error.message} / {error.message_en}",
                    "sync",
                    "sync",
                    remote_id,
                    None,
                )
    await report_status(client, ctx)


__all__ = [
    "InstallOutcome",
    "NothingToRollBack",
    "PackageKeyMissing",
    "PackageNotNewer",
    "PackageOtherStore",
    "PackageRefused",
    "install_package",
    "installed_dir",
    "installed_model_dir",
    "invalid",
    "list_current",
    "list_history",
    "pull",
    "reconcile",
    "rollback_package",
]
