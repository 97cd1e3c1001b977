"""The signed package format (下发包), written by HQ and read by the aggregator and the boxes (docs/packages.md).

A package is a zip file with exactly these entries:

    manifest.json      UTF-8 JSON: format, kind, name, version, created_at, created_by, stores, files, notes
    manifest.sig       128 hex digits: Ed25519 over b"SBPKG1\\n" + the exact bytes of manifest.json
    files/<path>       one entry per manifest `files` item, its sha256 and size as listed

The signature covers the manifest, and the manifest covers every file by its sha256, so one signature covers
the whole package. Reading refuses (PackageInvalid, Chinese and English, `detail.reason` a stable sub-code):
path traversal, symlinks, directories, duplicate or unlisted entries, size or hash mismatches, more bytes than
the limits (zip bombs: sizes are counted while inflating, never trusted from the headers), a bad signature,
unknown kinds and malformed manifests. This module has no I/O beyond the bytes it is given.
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import re
import stat
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge.ledger.errors import DomainError

FORMAT = "storebox-package/1"
SIGNED_PREFIX = b"SBPKG1\n"  # domain separation: a package signature is valid for nothing else
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
FILES_PREFIX = "files/"
MAX_PACKAGE_BYTES = 256 * 2**20
MAX_MANIFEST_BYTES = 1 * 2**20
MAX_FILES = 1000
MAX_FILE_BYTES = 256 * 2**20
MAX_TOTAL_BYTES = 512 * 2**20
MAX_RATIO = 200  # an entry inflating more than 200x (and past 1 MiB) is a zip bomb
MAX_VERSION = 2**53 - 1
_PATH_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}$")
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
STORE = re.compile(r"^[a-z0-9-]{1,64}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_HEX_KEY = re.compile(r"^[0-9a-fA-F]{64}$")
MANIFEST_KEYS = frozenset({"format", "kind", "name", "version", "created_at", "created_by", "stores", "files", "notes"})


class PackageKind(StrEnum):
    PRICE_LIST = "price_list"
    RULE_PACK = "rule_pack"
    MODEL = "model"
    FIRMWARE_PROFILE = "firmware_profile"
    MODULE = "module"  # a scenario module: manifest.yaml + its Python files (docs/modules.md)


class PackageError(DomainError):
    code: ClassVar[str] = "package_error"
    status: ClassVar[int] = 422


class PackageInvalid(PackageError):
    """The package is refused as a whole; `detail["reason"]` says which rule it broke."""

    code = "package_invalid"


class PackageBadSignature(PackageError):
    code = "package_bad_signature"
    status = 403


class SigningKeyInvalid(PackageError):
    code = "package_key_invalid"


def invalid(reason: str, zh: str, en: str, **detail: Any) -> PackageInvalid:
    return PackageInvalid(f"下发包无效: {zh}", f"package refused: {en}", reason=reason, **detail)


@dataclass(frozen=True, slots=True)
class FileEntry:
    path: str
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class Manifest:
    kind: PackageKind
    name: str
    version: int
    created_at: str
    created_by: str
    stores: tuple[str, ...]  # ("*",) = every store
    files: tuple[FileEntry, ...]
    notes: str = ""

    def for_store(self, store: str) -> bool:
        return "*" in self.stores or store in self.stores


@dataclass(frozen=True, slots=True)
class Package:
    """A package that passed every check: its manifest, the exact signed bytes, the signature and the files."""

    manifest: Manifest
    manifest_bytes: bytes
    signature: bytes
    files: Mapping[str, bytes]
    sha256: str  # of the whole package file


# --- keys ------------------------------------------------------------------------------------------------


def generate_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_bytes(key: Ed25519PrivateKey) -> bytes:
    """The private key file's content: PKCS#8 PEM, unencrypted (keep it 0600 and off the aggregator)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_private_key(data: bytes) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyInvalid(
            f"签名私钥文件无效: {exc}", f"not an unencrypted PEM Ed25519 private key: {exc}"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyInvalid("签名私钥不是 Ed25519 密钥", "the signing key is not an Ed25519 key")
    return key


def public_key_hex(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def parse_public_key(text: str) -> Ed25519PublicKey:
    """HQ's public key as 64 hex digits (the documented form) or 44 characters of base64."""
    import base64
    import binascii

    value = text.strip()
    try:
        raw = bytes.fromhex(value) if _HEX_KEY.match(value) else base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        raw = b""
    if len(raw) != 32:
        raise SigningKeyInvalid("总部公钥无效 (应为 64 位十六进制)", "HQ public key is invalid (want 64 hex digits)")
    return Ed25519PublicKey.from_public_bytes(raw)


# --- writing ---------------------------------------------------------------------------------------------


def manifest_bytes(manifest: Manifest) -> bytes:
    """The canonical manifest text (sorted keys, two-space indent, trailing newline)."""
    doc = {
        "format": FORMAT,
        "kind": manifest.kind.value,
        "name": manifest.name,
        "version": manifest.version,
        "created_at": manifest.created_at,
        "created_by": manifest.created_by,
        "stores": list(manifest.stores),
        "files": [{"path": f.path, "sha256": f.sha256, "size": f.size} for f in manifest.files],
        "notes": manifest.notes,
    }
    return (json.dumps(doc, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode()


def build_package(
    kind: PackageKind | str,
    name: str,
    version: int,
    files: Mapping[str, bytes],
    key: Ed25519PrivateKey,
    *,
    created_at: datetime,
    created_by: str,
    stores: Sequence[str] = ("*",),
    notes: str = "",
) -> bytes:
    """A signed package file; what it writes is read back with `read_package` before it is returned."""
    entries = tuple(FileEntry(p, hashlib.sha256(d).hexdigest(), len(d)) for p, d in sorted(files.items()))
    try:
        kind = PackageKind(kind)
    except ValueError:
        raise invalid(
            "kind", f"未知的包类型 {kind!r}", f"unknown kind {kind!r}", kinds=[k.value for k in PackageKind]
        ) from None
    manifest = Manifest(kind, name, version, created_at.isoformat(), created_by, tuple(stores), entries, notes)
    raw = manifest_bytes(manifest)
    check_manifest(json.loads(raw))  # what we sign must be what we accept
    signature = key.sign(SIGNED_PREFIX + raw)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for info_name, data in (
            (MANIFEST, raw),
            (SIGNATURE, signature.hex().encode() + b"\n"),
            *((FILES_PREFIX + p, d) for p, d in sorted(files.items())),
        ):
            info = zipfile.ZipInfo(info_name, date_time=(2000, 1, 1, 0, 0, 0))
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    data = out.getvalue()
    read_package(data, key.public_key())
    return data


# --- reading ---------------------------------------------------------------------------------------------


def check_path(path: Any) -> str:
    """A file path of a package: relative, `/`-separated, parts of letters, digits, . _ - (no `..`, no `.`)."""
    if not isinstance(path, str) or not 0 < len(path) <= 200:
        raise invalid("path", "文件路径无效", "invalid file path", path=str(path)[:200])
    parts = path.split("/")
    if len(parts) > 4 or not all(_PATH_PART.match(p) for p in parts) or any(p in (".", "..") for p in parts):
        raise invalid(
            "path",
            f"文件路径 {path!r} 不允许 (只能是相对路径，字母数字 . _ -，不得含 ..)",
            f"file path {path!r} is not allowed (relative, letters digits . _ -, no ..)",
            path=path,
        )
    return path


def check_manifest(doc: Any) -> Manifest:
    """A Manifest from parsed JSON, or PackageInvalid naming the field."""
    if not isinstance(doc, dict):
        raise invalid("manifest", "清单不是 JSON 对象", "manifest is not a JSON object")
    missing = sorted(MANIFEST_KEYS - set(doc))
    extra = sorted(set(doc) - MANIFEST_KEYS)
    if missing or extra:
        raise invalid(
            "manifest",
            f"清单字段不符: 缺少 {missing}，多余 {extra}",
            f"manifest fields: missing {missing}, unexpected {extra}",
            missing=missing,
            unexpected=extra,
        )
    if doc["format"] != FORMAT:
        raise invalid(
            "format", f"不支持的包格式 {doc['format']!r}", f"unsupported format {doc['format']!r}", want=FORMAT
        )
    try:
        kind = PackageKind(doc["kind"])
    except (ValueError, TypeError):
        raise invalid(
            "kind",
            f"未知的包类型 {str(doc['kind'])[:40]!r}",
            f"unknown package kind {str(doc['kind'])[:40]!r}",
            kinds=[k.value for k in PackageKind],
        ) from None

    def text(field: str, pattern: re.Pattern[str] | None = None, limit: int = 200) -> str:
        value = doc[field]
        if not isinstance(value, str) or len(value) > limit or (pattern is not None and not pattern.match(value)):
            raise invalid("manifest", f"字段 {field} 无效", f"field {field} is invalid", field=field)
        return value

    version = doc["version"]
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= MAX_VERSION:
        raise invalid("version", "版本号须为正整数", "version must be a positive integer", field="version")
    created_at = text("created_at", limit=40)
    try:
        datetime.fromisoformat(created_at)
    except ValueError:
        raise invalid(
            "manifest", "created_at 不是 ISO 时间", "created_at is not an ISO time", field="created_at"
        ) from None
    stores = doc["stores"]
    if (
        not isinstance(stores, list)
        or not stores
        or len(stores) > 10_000
        or not all(isinstance(s, str) and (s == "*" or STORE.match(s)) for s in stores)
        or len(set(stores)) != len(stores)
    ):
        raise invalid(
            "manifest", 'stores 须为 ["*"] 或门店编号列表', 'stores must be ["*"] or store ids', field="stores"
        )
    files = doc["files"]
    if not isinstance(files, list) or not 1 <= len(files) <= MAX_FILES:
        raise invalid(
            "manifest", f"files 须有 1..{MAX_FILES} 项", f"files must list 1..{MAX_FILES} entries", field="files"
        )
    entries: list[FileEntry] = []
    seen: set[str] = set()
    total = 0
    for i, entry in enumerate(files):
        if not isinstance(entry, dict) or set(entry) != {"path", "sha256", "size"}:
            raise invalid("manifest", f"files[{i}] 须有 path, sha256, size", f"files[{i}] needs path, sha256, size")
        path = check_path(entry["path"])
        if path.casefold() in seen:
            raise invalid("duplicate", f"文件 {path!r} 重复", f"file {path!r} is listed twice", path=path)
        seen.add(path.casefold())
        digest, size = entry["sha256"], entry["size"]
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise invalid("manifest", f"files[{i}].sha256 无效", f"files[{i}].sha256 is invalid", path=path)
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_FILE_BYTES:
            raise invalid("size", f"文件 {path!r} 大小无效或超限", f"file {path!r}: size invalid or too big", path=path)
        total += size
        entries.append(FileEntry(path, digest, size))
    if total > MAX_TOTAL_BYTES:
        raise invalid("too_large", "包解压后过大", "package unpacks to too many bytes", limit=MAX_TOTAL_BYTES)
    return Manifest(
        kind=kind,
        name=text("name", NAME, 64),
        version=version,
        created_at=created_at,
        created_by=text("created_by"),
        stores=tuple(stores),
        files=tuple(entries),
        notes=text("notes", limit=4000),
    )


def _read_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    """An entry's bytes, counting while inflating: more than `limit` (or a bomb-like ratio) is refused."""
    out = bytearray()
    try:
        with zf.open(info) as handle:
            while chunk := handle.read(65536):
                out += chunk
                if len(out) > limit or (len(out) > 2**20 and len(out) > MAX_RATIO * max(info.compress_size, 1)):
                    raise invalid(
                        "too_large",
                        f"{info.filename!r} 解压后超过限制 (疑似压缩炸弹)",
                        f"{info.filename!r} inflates past the limit (zip bomb?)",
                        entry=info.filename[:200],
                    )
    # A flipped method byte picks bzip2 or LZMA: their decoders raise OSError ("Invalid data stream") or LZMAError.
    except (
        zipfile.BadZipFile,
        zlib.error,
        lzma.LZMAError,
        EOFError,
        NotImplementedError,
        RuntimeError,
        ValueError,
        OSError,
    ) as exc:
        if isinstance(exc, PackageInvalid):
            raise
        raise invalid(
            "corrupt", f"{info.filename[:200]!r} 无法解压", f"{info.filename[:200]!r} does not unpack: {exc}"
        ) from None
    return bytes(out)


def read_package(data: bytes, public_key: Ed25519PublicKey, *, verify: bool = True) -> Package:
    """Check a package file completely (structure, manifest, signature, every file's size and sha256)."""
    if len(data) > MAX_PACKAGE_BYTES:
        raise invalid("too_large", "包文件过大", "package file is too large", limit=MAX_PACKAGE_BYTES)
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError, NotImplementedError) as exc:
        raise invalid("corrupt", "不是有效的 zip 文件", f"not a valid zip file: {exc}") from None
    with zf:
        names = [i.filename for i in infos]
        if len(names) != len(set(names)):
            dup = next(n for n in names if names.count(n) > 1)
            raise invalid(
                "duplicate", f"包内条目 {dup[:200]!r} 重复", f"entry {dup[:200]!r} appears twice", entry=dup[:200]
            )
        if len(infos) > MAX_FILES + 2:
            raise invalid("too_large", "包内条目过多", "too many entries", limit=MAX_FILES + 2)
        by_name: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            mode = info.external_attr >> 16
            if info.is_dir() or stat.S_ISDIR(mode):
                raise invalid(
                    "directory", f"包内不允许目录条目 {info.filename[:200]!r}", "directory entries are not allowed"
                )
            if stat.S_ISLNK(mode):
                raise invalid("symlink", f"包内不允许符号链接 {info.filename[:200]!r}", "symlinks are not allowed")
            if info.flag_bits & 0x1:
                raise invalid("corrupt", "包内条目不得加密", "encrypted entries are not allowed")
            by_name[info.filename] = info
        for required in (MANIFEST, SIGNATURE):
            if required not in by_name:
                raise invalid("manifest", f"缺少 {required}", f"{required} is missing")
        raw_manifest = _read_entry(zf, by_name[MANIFEST], MAX_MANIFEST_BYTES)
        raw_signature = _read_entry(zf, by_name[SIGNATURE], 200)
        try:
            signature = bytes.fromhex(raw_signature.decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            signature = b""
        if len(signature) != 64:
            raise PackageBadSignature("签名格式无效", "the signature is malformed")
        if verify:
            try:
                public_key.verify(signature, SIGNED_PREFIX + raw_manifest)
            except InvalidSignature:
                raise PackageBadSignature(
                    "下发包签名无效 (不是总部签发或已被改动)", "bad package signature (not signed by HQ, or changed)"
                ) from None
        try:
            doc = json.loads(raw_manifest.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise invalid("manifest", "清单不是 UTF-8 JSON", "manifest is not UTF-8 JSON") from None
        manifest = check_manifest(doc)
        listed = {FILES_PREFIX + f.path: f for f in manifest.files}
        for name in by_name:
            if name not in (MANIFEST, SIGNATURE) and name not in listed:
                raise invalid(
                    "unlisted",
                    f"包内文件 {name[:200]!r} 未列在清单中",
                    f"entry {name[:200]!r} is not listed",
                    entry=name[:200],
                )
        files: dict[str, bytes] = {}
        total = 0
        for name, entry in listed.items():
            if name not in by_name:
                raise invalid(
                    "missing",
                    f"清单中的文件 {entry.path!r} 不在包内",
                    f"listed file {entry.path!r} is missing",
                    path=entry.path,
                )
            content = _read_entry(zf, by_name[name], entry.size)
            total += len(content)
            if len(content) != entry.size:
                raise invalid(
                    "size",
                    f"文件 {entry.path!r} 大小 {len(content)} 与清单 {entry.size} 不符",
                    f"file {entry.path!r} is {len(content)} bytes, the manifest says {entry.size}",
                    path=entry.path,
                )
            if hashlib.sha256(content).hexdigest() != entry.sha256:
                raise invalid(
                    "hash",
                    f"文件 {entry.path!r} 的 sha256 与清单不符",
                    f"file {entry.path!r}: sha256 differs from the manifest",
                    path=entry.path,
                )
            files[entry.path] = content
    return Package(manifest, raw_manifest, signature, files, hashlib.sha256(data).hexdigest())
