"""Photos of the goods at inspection (拍照验货) and the deliverer's signature (电子签收) from terminals.

A terminal sends a file as numbered chunks, each its own `evt/attachment` event (its own id, base64 data that
fits the payload limit, and the size and sha256 of the whole file). The chunks may arrive in any order and
more than once (a terminal resends after a reconnect); they wait in the database until all have come. Then the
whole file is checked (size, sha256, type sniffed from its bytes), written under `<data_dir>/attachments/` to a
temporary name, synced and renamed, and only then gets its row: a crash leaves at most an unlinked file, which
`sweep_attachments` removes. A refused upload keeps its reason and no bytes; every later chunk of it hears the
same reason. The file is linked to what the terminal named: a receipt draft, a supplier's ASN (发货通知; ASN ids
are per supplier, so the supplier comes with it) or a receipt.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import os
import re
import sqlite3
import struct
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from xml.etree import ElementTree

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from edge.bus.payloads import DecodeOptions, EventEnvelope, JobOutcome, KindSpec, WriterJob
from edge.ledger.errors import DomainError
from edge.ledger.posting import PostingContext

if TYPE_CHECKING:
    from edge.config import Settings
    from edge.writer import LedgerWriter

log = logging.getLogger(__name__)

EVENT_KIND = "attachment"
OPTIONS_KEY = "attachments"  # DecodeOptions.extra key of AttachmentLimits
ATTACHMENTS_DIR = "attachments"  # under the data dir
TEMP_DIR = ".tmp"  # under ATTACHMENTS_DIR: files being written; never linked
MAX_CHUNKS = 8192
HARD_MAX_BYTES = 256 * 1024 * 1024  # no setting goes beyond this
MAX_SVG_ELEMENTS = 20_000

ATTACHMENT_ID = r"^[A-Za-z0-9._-]{1,64}$"
ASN_ID = r"^[A-Za-z0-9._-]{1,64}$"  # the supplier's ASN id (edge/devices/asn.py), also in its delivery note
SUPPLIER_ID = r"^[A-Za-z0-9._-]{1,64}$"  # a supplier id on the box, also in the delivery note (`s`)
_SHA256 = re.compile(r"[0-9a-f]{64}")


class Purpose(StrEnum):
    PHOTO = "photo"  # photo of the goods at inspection (拍照验货)
    SIGNATURE = "signature"  # the deliverer's electronic signature (电子签收)


class RefKind(StrEnum):
    """What an attachment belongs to, as the terminal names it (offline it may know only the note's ASN)."""

    DRAFT = "draft"  # a receipt draft id (收货草稿)
    ASN = "asn"  # a supplier's ASN id (发货通知), also printed in the delivery note's QR code
    RECEIPT = "receipt"  # a posted receipt's document id (入库单)


@dataclass(frozen=True, slots=True)
class AttachmentRef:
    """One thing attachments belong to. An ASN id is the supplier's own: it names its supplier, the others none."""

    kind: RefKind
    ref: str
    supplier: str | None = None

    @classmethod
    def asn(cls, supplier: str, asn_id: str) -> AttachmentRef:
        return cls(RefKind.ASN, asn_id, supplier)

    @classmethod
    def draft(cls, draft_id: int) -> AttachmentRef:
        return cls(RefKind.DRAFT, str(draft_id))

    @classmethod
    def receipt(cls, receipt_id: int) -> AttachmentRef:
        return cls(RefKind.RECEIPT, str(receipt_id))


PURPOSE_NAMES: dict[Purpose, tuple[str, str]] = {
    Purpose.PHOTO: ("验货照片", "inspection photo"),
    Purpose.SIGNATURE: ("电子签收", "delivery signature"),
}
JPEG, PNG, SVG = "image/jpeg", "image/png", "image/svg+xml"
ALLOWED_TYPES: dict[Purpose, tuple[str, ...]] = {Purpose.PHOTO: (JPEG, PNG), Purpose.SIGNATURE: (PNG, SVG)}
EXTENSIONS: dict[str, str] = {JPEG: "jpg", PNG: "png", SVG: "svg"}


# --- refusals -------------------------------------------------------------------------------------


class AttachmentError(DomainError):
    """Base of every refusal of an attachment; the code travels in the chunk's ack."""

    code = "attachment_error"
    status = 422


class AttachmentTooLarge(AttachmentError):
    code = "attachment_too_large"
    status = 413


class AttachmentSizeMismatch(AttachmentError):
    """The chunks do not add up to the size the terminal declared."""

    code = "attachment_size_mismatch"


class AttachmentHashMismatch(AttachmentError):
    """The whole file's sha256 is not the one the terminal declared: a chunk was damaged or mixed up."""

    code = "attachment_hash_mismatch"


class AttachmentTypeRefused(AttachmentError):
    """The bytes are not a file of a type taken for the purpose (sniffed, not declared)."""

    code = "attachment_type_refused"
    status = 415


class AttachmentMismatch(AttachmentError):
    """A chunk whose header (purpose, reference, count, size, sha256) differs from its upload's."""

    code = "attachment_mismatch"
    status = 409


class AttachmentChunkConflict(AttachmentError):
    """A chunk number that already came with other bytes."""

    code = "attachment_chunk_conflict"
    status = 409


class AttachmentIncomplete(AttachmentError):
    """Chunks were still missing when the upload's time ran out."""

    code = "attachment_incomplete"


class TooManyOpenAttachments(AttachmentError):
    code = "attachment_too_many_open"
    status = 429


class UnknownAttachment(AttachmentError):
    code = "unknown_attachment"
    status = 404

    def __init__(self, attachment_id: int) -> None:
        super().__init__(f"附件不存在: {attachment_id}", f"no such attachment: {attachment_id}", id=attachment_id)


# --- the event at the MQTT boundary ---------------------------------------------------------------


class AttachmentChunkData(BaseModel):
    """`evt/attachment`: one chunk of a photo or signature. Exactly one of `draft`, `asn`, `receipt`; `asn`
    with its `supplier` (ASN ids are per supplier)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    attachment: Annotated[str, StringConstraints(pattern=ATTACHMENT_ID)]
    purpose: Annotated[Purpose, Field(strict=False)]
    draft: Annotated[int, Field(ge=1, le=2**62)] | None = None
    asn: Annotated[str, StringConstraints(pattern=ASN_ID)] | None = None
    supplier: Annotated[str, StringConstraints(pattern=SUPPLIER_ID)] | None = None
    receipt: Annotated[int, Field(ge=1, le=2**62)] | None = None
    seq: Annotated[int, Field(ge=0, lt=MAX_CHUNKS)]
    count: Annotated[int, Field(ge=1, le=MAX_CHUNKS)]
    size: Annotated[int, Field(ge=1, le=HARD_MAX_BYTES)]
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    data: Annotated[str, StringConstraints(min_length=4, max_length=1 << 20)]

    @model_validator(mode="after")
    def _fits(self) -> AttachmentChunkData:
        if sum(ref is not None for ref in (self.draft, self.asn, self.receipt)) != 1:
            raise ValueError("exactly one of draft, asn, receipt names what the attachment belongs to")
        if self.asn is not None and self.supplier is None:
            raise ValueError("an asn needs its supplier (ASN ids are per supplier; the delivery note names it)")
        if self.asn is None and self.supplier is not None:
            raise ValueError("supplier goes with asn only (a draft or receipt knows its supplier)")
        if self.seq >= self.count:
            raise ValueError(f"seq {self.seq} is outside the {self.count} chunks (0..{self.count - 1})")
        if self.count > self.size:
            raise ValueError(f"{self.count} chunks cannot hold {self.size} bytes (each chunk has at least one)")
        chunk = decode_chunk(self.data)
        if len(chunk) > self.size:
            raise ValueError(f"chunk of {len(chunk)} bytes is larger than the whole file ({self.size} bytes)")
        return self

    def reference(self) -> AttachmentRef:
        if self.draft is not None:
            return AttachmentRef.draft(self.draft)
        if self.receipt is not None:
            return AttachmentRef.receipt(self.receipt)
        assert self.asn is not None and self.supplier is not None
        return AttachmentRef.asn(self.supplier, self.asn)


def decode_chunk(text: str) -> bytes:
    """The bytes of a chunk's `data`: standard base64 with padding, nothing else; never empty."""
    try:
        chunk = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise ValueError("data is not base64 (RFC 4648, with padding)") from exc
    if not chunk:
        raise ValueError("data holds no bytes")
    return chunk


@dataclass(frozen=True, slots=True)
class AttachmentLimits:
    """What the writer job needs from the settings (picklable: it crosses to the writer process)."""

    root: str  # <data_dir>/attachments
    max_bytes: int
    incomplete_seconds: int
    max_open: int  # open uploads per device


@dataclass(frozen=True, slots=True)
class Chunk:
    """One validated chunk, as the writer job takes it."""

    device: str
    event_id: str
    taken_at: str
    attachment: str
    purpose: Purpose
    ref: AttachmentRef
    seq: int
    count: int
    size: int
    sha256: str
    data: bytes


def attachment_limits(settings: Settings) -> AttachmentLimits:
    """The store's attachment settings, for `edge.bus.event_kinds.decode_options`."""
    return AttachmentLimits(
        root=str((settings.data_dir / ATTACHMENTS_DIR).absolute()),
        max_bytes=settings.attachment_max_bytes,
        incomplete_seconds=settings.attachment_incomplete_hours * 3600,
        max_open=settings.attachment_max_open_per_device,
    )


def _handle(device: str, envelope: EventEnvelope, data: AttachmentChunkData, options: DecodeOptions) -> WriterJob:
    limits = options.extra.get(OPTIONS_KEY)
    if not isinstance(limits, AttachmentLimits):
        raise ValueError("this box takes no attachments (not configured)")
    chunk = Chunk(
        device=device,
        event_id=envelope.id,
        taken_at=envelope.ts.isoformat(),
        attachment=data.attachment,
        purpose=data.purpose,
        ref=data.reference(),
        seq=data.seq,
        count=data.count,
        size=data.size,
        sha256=data.sha256,
        data=decode_chunk(data.data),
    )
    return WriterJob(take_chunk, (chunk, limits))


ATTACHMENT_KIND = KindSpec(AttachmentChunkData, _handle)


# --- what a file is, from its bytes ---------------------------------------------------------------


def sniff_mime(content: bytes) -> str | None:
    """`image/jpeg`, `image/png` or `image/svg+xml` when the bytes are a well-formed file of that type, else None.

    Checked by structure, not only magic bytes: PNG chunk CRCs (PNG spec, section 5), JPEG marker segments up
    to the scan and the end-of-image marker (ITU T.81, annex B), an SVG of drawing elements only.
    """
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG if _is_png(content) else None
    if content.startswith(b"\xff\xd8\xff"):
        return JPEG if _is_jpeg(content) else None
    if _is_signature_svg(content):
        return SVG
    return None


def _is_png(content: bytes) -> bool:
    pos, first, seen_data = 8, True, False
    while pos + 12 <= len(content):
        length, kind = struct.unpack(">I4s", content[pos : pos + 8])
        end = pos + 12 + length
        if length > 0x7FFFFFFF or end > len(content):
            return False
        body = content[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", content[pos + 8 + length : end])
        if zlib.crc32(kind + body) != crc:
            return False
        if first:
            width, height = struct.unpack(">II", body[:8]) if len(body) == 13 else (0, 0)
            if kind != b"IHDR" or width == 0 or height == 0:
                return False
            first = False
        seen_data = seen_data or kind == b"IDAT"
        if kind == b"IEND":
            return bool(seen_data and end == len(content))
        pos = end
    return False


_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOF0..SOF15 without DHT, JPG, DAC


def _is_jpeg(content: bytes) -> bool:
    pos, frame = 2, False
    while pos + 4 <= len(content):
        if content[pos] != 0xFF:
            return False
        marker = content[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        (length,) = struct.unpack(">H", content[pos + 2 : pos + 4])
        if length < 2 or pos + 2 + length > len(content):
            return False
        frame = frame or marker in _JPEG_FRAMES
        if marker == 0xDA:  # start of scan: entropy-coded data follows up to the end-of-image marker
            return frame and len(content) >= pos + 2 + length + 2 and content.endswith(b"\xff\xd9")
        if marker == 0xD9:
            return False
        pos += 2 + length
    return False


_SVG_NS = "{http://www.w3.org/2000/svg}"
_SVG_ELEMENTS = frozenset({"svg", "g", "path", "polyline", "line", "title", "desc"})
_SVG_ATTRIBUTES = frozenset(
    {
        "viewBox",
        "width",
        "height",
        "version",
        "d",
        "points",
        "x1",
        "y1",
        "x2",
        "y2",
        "fill",
        "stroke",
        "stroke-width",
        "stroke-linecap",
        "stroke-linejoin",
        "stroke-opacity",
        "fill-opacity",
        "opacity",
    }
)
_SVG_VALUE = re.compile(r"[A-Za-z0-9 .,#%()+\-\n\r\t]*")  # numbers, path commands, colours; no url(), no quotes


def _is_signature_svg(content: bytes) -> bool:
    """A signature drawn as strokes: SVG with drawing elements and plain attributes only.

    No DOCTYPE or entities (`<!`), no scripts, links, styles, images or event handlers, so the file is safe
    to show in the page.
    """
    head = content.lstrip()[:256]
    if not (head.startswith(b"<svg") or head.startswith(b"<?xml")) or b"<!" in content:
        return False
    try:
        root = ElementTree.fromstring(content.decode("utf-8"))
    except (UnicodeDecodeError, ElementTree.ParseError, ValueError):
        return False
    if root.tag != f"{_SVG_NS}svg":
        return False
    for count, element in enumerate(root.iter()):
        if count > MAX_SVG_ELEMENTS or not isinstance(element.tag, str) or not element.tag.startswith(_SVG_NS):
            return False
        if element.tag[len(_SVG_NS) :] not in _SVG_ELEMENTS:
            return False
        for name, value in element.attrib.items():
            if name not in _SVG_ATTRIBUTES or _SVG_VALUE.fullmatch(value) is None:
                return False
    return True


# --- files ----------------------------------------------------------------------------------------


def attachment_path(root: Path, sha256: str, mime: str) -> Path:
    """Where a file's bytes are kept: content-addressed, so the same photo sent twice is one file."""
    if _SHA256.fullmatch(sha256) is None:
        raise ValueError(f"not a sha256 digest: {sha256!r}")
    return root / sha256[:2] / f"{sha256}.{EXTENSIONS[mime]}"


def write_file(root: Path, sha256: str, mime: str, content: bytes) -> Path:
    """Write the file atomically (temp file, fsync, rename, fsync the folder); keep an intact existing copy."""
    path = attachment_path(root, sha256, mime)
    if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == sha256:
        return path
    temp_dir = root / TEMP_DIR
    temp_dir.mkdir(parents=True, exist_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_dir / f"{sha256}.{os.getpid()}.{uuid.uuid4().hex}.part"
    try:
        with temp.open("wb") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- the writer job: one chunk ----------------------------------------------------------------------


def take_chunk(conn: sqlite3.Connection, ctx: PostingContext, chunk: Chunk, limits: AttachmentLimits) -> JobOutcome:
    """Keep one chunk; when it was the last one missing, check the whole file, store it and link it.

    Runs in the writer once per chunk event (`run_event_job`). Refusals are answers (`ok=False`) and keep
    what they decided (a refused upload stays refused); an exception (disk trouble) rolls this chunk back and
    the terminal resends it.
    """
    expire_uploads(conn, ctx.now, limits.incomplete_seconds)
    try:
        return _take(conn, ctx.now, chunk, limits)
    except AttachmentError as err:
        return _refusal(chunk.attachment, err)


def _take(conn: sqlite3.Connection, now: datetime, chunk: Chunk, limits: AttachmentLimits) -> JobOutcome:
    upload = conn.execute(
        "SELECT id, purpose, ref_kind, ref, supplier, chunk_count, size, sha256, state, code, message, message_en,"
        " attachment_id FROM attachment_uploads WHERE device = ? AND attachment = ?",
        (chunk.device, chunk.attachment),
    ).fetchone()
    if upload is None:
        opened = _open_upload(conn, now, chunk, limits)
        if isinstance(opened, AttachmentError):
            return _refusal(chunk.attachment, opened)
        upload_id = opened
    else:
        _same_header(upload, chunk)
        if upload["state"] == "refused":
            return _stored_refusal(chunk.attachment, upload)
        if upload["state"] == "stored":
            return _stored_outcome(conn, int(upload["attachment_id"]), again=True)
        upload_id = int(upload["id"])

    earlier = conn.execute(
        "SELECT data FROM attachment_chunks WHERE upload_id = ? AND seq = ?", (upload_id, chunk.seq)
    ).fetchone()
    if earlier is not None and bytes(earlier["data"]) != chunk.data:
        raise AttachmentChunkConflict(
            f"附件 {chunk.attachment} 的第 {chunk.seq + 1} 块已收到过, 内容不同",
            f"chunk {chunk.seq + 1} of attachment {chunk.attachment} already came with other bytes",
            seq=chunk.seq,
        )
    if earlier is None:
        conn.execute(
            "INSERT INTO attachment_chunks (upload_id, seq, data) VALUES (?, ?, ?)", (upload_id, chunk.seq, chunk.data)
        )
    received, total = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(length(data)), 0) FROM attachment_chunks WHERE upload_id = ?", (upload_id,)
    ).fetchone()
    if total > chunk.size:
        return _refuse_upload(conn, upload_id, chunk.attachment, _size_mismatch(chunk, f"> {total}"))
    if received < chunk.count:
        return JobOutcome(
            ok=True,
            code="ok",
            message=f"已收到附件 {chunk.attachment} 第 {chunk.seq + 1}/{chunk.count} 块",
            message_en=f"chunk {chunk.seq + 1}/{chunk.count} of attachment {chunk.attachment} received",
            detail={"attachment": chunk.attachment, "received": received, "count": chunk.count},
        )
    return _complete(conn, now, upload_id, chunk, limits)


def _open_upload(
    conn: sqlite3.Connection, now: datetime, chunk: Chunk, limits: AttachmentLimits
) -> int | AttachmentError:
    """Open the upload of a new attachment; or refuse it at once (recorded with the reason, for its other chunks)."""
    refusal: AttachmentError | None = None
    if chunk.size > limits.max_bytes:
        refusal = AttachmentTooLarge(
            f"附件过大: {chunk.size} 字节, 上限 {limits.max_bytes} 字节",
            f"attachment too large: {chunk.size} bytes, limit {limits.max_bytes}",
            size=chunk.size,
            max_bytes=limits.max_bytes,
        )
    else:
        (open_now,) = conn.execute(
            "SELECT COUNT(*) FROM attachment_uploads WHERE device = ? AND state = 'open'", (chunk.device,)
        ).fetchone()
        if open_now >= limits.max_open:
            refusal = TooManyOpenAttachments(
                f"未完成的附件过多 ({open_now} 个), 请先发完已开始的附件",
                f"too many unfinished attachments ({open_now}); finish sending those first",
                open=open_now,
                max_open=limits.max_open,
            )
    cursor = conn.execute(
        "INSERT INTO attachment_uploads (device, attachment, purpose, ref_kind, ref, supplier, chunk_count, size,"
        " sha256, taken_at, started_at, state, code, message, message_en)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            chunk.device,
            chunk.attachment,
            chunk.purpose.value,
            chunk.ref.kind.value,
            chunk.ref.ref,
            chunk.ref.supplier,
            chunk.count,
            chunk.size,
            chunk.sha256,
            chunk.taken_at,
            now.isoformat(),
            "open" if refusal is None else "refused",
            None if refusal is None else refusal.code,
            None if refusal is None else refusal.message,
            None if refusal is None else refusal.message_en,
        ),
    )
    return refusal if refusal is not None else int(cursor.lastrowid or 0)


def _same_header(upload: sqlite3.Row, chunk: Chunk) -> None:
    mine = {
        "purpose": chunk.purpose.value,
        "ref_kind": chunk.ref.kind.value,
        "ref": chunk.ref.ref,
        "supplier": chunk.ref.supplier,
        "chunk_count": chunk.count,
        "size": chunk.size,
        "sha256": chunk.sha256,
    }
    differ = [name for name, value in mine.items() if upload[name] != value]
    if differ:
        raise AttachmentMismatch(
            f"附件 {chunk.attachment} 的这一块与之前的块不一致: {', '.join(differ)}",
            f"this chunk of attachment {chunk.attachment} disagrees with its earlier chunks: {', '.join(differ)}",
            fields=differ,
        )


def _size_mismatch(chunk: Chunk, got: str) -> AttachmentSizeMismatch:
    return AttachmentSizeMismatch(
        f"附件 {chunk.attachment} 的大小不符: 声明 {chunk.size} 字节, 收到 {got} 字节",
        f"attachment {chunk.attachment} has the wrong size: declared {chunk.size} bytes, got {got}",
        size=chunk.size,
    )


def _complete(
    conn: sqlite3.Connection, now: datetime, upload_id: int, chunk: Chunk, limits: AttachmentLimits
) -> JobOutcome:
    content = b"".join(
        bytes(row[0])
        for row in conn.execute("SELECT data FROM attachment_chunks WHERE upload_id = ? ORDER BY seq", (upload_id,))
    )
    if len(content) != chunk.size:
        return _refuse_upload(conn, upload_id, chunk.attachment, _size_mismatch(chunk, str(len(content))))
    digest = hashlib.sha256(content).hexdigest()
    if digest != chunk.sha256:
        return _refuse_upload(
            conn,
            upload_id,
            chunk.attachment,
            AttachmentHashMismatch(
                f"附件 {chunk.attachment} 校验失败: sha256 不符, 请重新拍摄发送",
                f"attachment {chunk.attachment} failed its check: the sha256 differs; take and send it again",
                declared=chunk.sha256,
                actual=digest,
            ),
        )
    mime = sniff_mime(content)
    allowed = ALLOWED_TYPES[chunk.purpose]
    if mime not in allowed:
        name, name_en = PURPOSE_NAMES[chunk.purpose]
        return _refuse_upload(
            conn,
            upload_id,
            chunk.attachment,
            AttachmentTypeRefused(
                f"{name}的文件类型不支持: 只接受 {', '.join(allowed)}",
                f"unsupported file type for the {name_en}: only {', '.join(allowed)}",
                sniffed=mime,
                allowed=list(allowed),
                head=content[:8].hex(),
            ),
        )
    write_file(Path(limits.root), digest, mime, content)
    # The file is complete on disk before its row exists: a row always names a whole file.
    cursor = conn.execute(
        "INSERT INTO attachments (device, attachment, purpose, ref_kind, ref, supplier, sha256, size, mime,"
        " taken_at, stored_at) SELECT device, attachment, purpose, ref_kind, ref, supplier, sha256, size, ?,"
        " taken_at, ?"
        " FROM attachment_uploads WHERE id = ?",
        (mime, now.isoformat(), upload_id),
    )
    attachment_id = int(cursor.lastrowid or 0)
    conn.execute(
        "UPDATE attachment_uploads SET state = 'stored', attachment_id = ? WHERE id = ?", (attachment_id, upload_id)
    )
    conn.execute("DELETE FROM attachment_chunks WHERE upload_id = ?", (upload_id,))
    return _stored_outcome(conn, attachment_id, again=False)


def _refuse_upload(conn: sqlite3.Connection, upload_id: int, attachment: str, err: AttachmentError) -> JobOutcome:
    """Refuse the whole upload for good: its chunks go, its reason stays for any later chunk."""
    conn.execute(
        "UPDATE attachment_uploads SET state = 'refused', code = ?, message = ?, message_en = ? WHERE id = ?",
        (err.code, err.message, err.message_en, upload_id),
    )
    conn.execute("DELETE FROM attachment_chunks WHERE upload_id = ?", (upload_id,))
    return _refusal(attachment, err)


def _refusal(attachment: str, err: AttachmentError) -> JobOutcome:
    return JobOutcome(
        ok=False,
        code=err.code,
        message=err.message,
        message_en=err.message_en,
        detail={"attachment": attachment, **err.detail},
    )


def _stored_refusal(attachment: str, upload: sqlite3.Row) -> JobOutcome:
    return JobOutcome(
        ok=False,
        code=str(upload["code"]),
        message=f"附件 {attachment} 已被拒收: {upload['message']}",
        message_en=f"attachment {attachment} was refused: {upload['message_en']}",
        detail={"attachment": attachment, "refused": True},
    )


def _stored_outcome(conn: sqlite3.Connection, attachment_id: int, *, again: bool) -> JobOutcome:
    row = get_attachment(conn, attachment_id)
    assert row is not None
    name, name_en = PURPOSE_NAMES[Purpose(row["purpose"])]
    return JobOutcome(
        ok=True,
        code="ok",
        message=f"{name}已保存 ({row['size']} 字节){', 此前已收齐' if again else ''}",
        message_en=f"{name_en} stored ({row['size']} bytes){', complete before' if again else ''}",
        detail={
            "attachment": row["attachment"],
            "stored": attachment_id,
            "sha256": row["sha256"],
            "size": row["size"],
            "mime": row["mime"],
            **_reference_json(row),
        },
    )


def expire_uploads(conn: sqlite3.Connection, now: datetime, incomplete_seconds: int) -> int:
    """Refuse open uploads older than the limit (`attachment_incomplete`) and drop their chunks; return how many."""
    cutoff = (now - timedelta(seconds=incomplete_seconds)).isoformat()
    stale = [
        int(row[0])
        for row in conn.execute(
            "SELECT id FROM attachment_uploads WHERE state = 'open' AND started_at < ?", (cutoff,)
        ).fetchall()
    ]
    hours = incomplete_seconds / 3600
    for upload_id in stale:
        (received,) = conn.execute(
            "SELECT COUNT(*) FROM attachment_chunks WHERE upload_id = ?", (upload_id,)
        ).fetchone()
        err = AttachmentIncomplete(
            f"附件未在 {hours:g} 小时内收齐 (收到 {received} 块), 请重新发送",
            f"attachment not complete within {hours:g} hours ({received} chunks came); send it again",
        )
        _refuse_upload(conn, upload_id, "", err)
    return len(stale)


# --- keeping the folder clean ---------------------------------------------------------------------


def sweep_attachments(conn: sqlite3.Connection, root: str, now: datetime, incomplete_seconds: int) -> dict[str, int]:
    """Expire stale uploads, remove temporary files and files no row names (left by a crash before a commit).

    Runs in the writer (`writer.execute`), so no chunk job writes a file at the same time, and rows written
    earlier in the same transaction are seen.
    """
    expired = expire_uploads(conn, now, incomplete_seconds)
    folder = Path(root)
    temps = orphans = 0
    if (folder / TEMP_DIR).is_dir():
        for temp in (folder / TEMP_DIR).iterdir():
            temp.unlink(missing_ok=True)
            temps += 1
    if folder.is_dir():
        known = {str(row[0]) for row in conn.execute("SELECT DISTINCT sha256 FROM attachments")}
        for path in folder.glob("??/*"):
            if path.is_file() and path.name.split(".", 1)[0] not in known:
                path.unlink(missing_ok=True)
                orphans += 1
    return {"expired": expired, "temp_files": temps, "orphan_files": orphans}


async def sweep_periodically(
    writer: LedgerWriter, limits: AttachmentLimits, clock: Callable[[], datetime], every_seconds: float = 3600.0
) -> None:
    """Run `sweep_attachments` at start and then every `every_seconds` until cancelled."""
    while True:
        try:
            swept = await writer.execute(sweep_attachments, limits.root, clock(), limits.incomplete_seconds)
            if any(swept.values()):
                log.info("attachments swept: %s", swept)
        except Exception:  # the writer is stopping or the disk is in trouble: try again next time
            log.warning("sweeping attachments failed", exc_info=True)
        await asyncio.sleep(every_seconds)


# --- reading ----------------------------------------------------------------------------------------

_COLUMNS = "id, device, attachment, purpose, ref_kind, ref, supplier, sha256, size, mime, taken_at, stored_at"


def _row(row: sqlite3.Row) -> dict[str, Any]:
    return dict(zip(row.keys(), tuple(row), strict=True))


def _reference_json(row: dict[str, Any]) -> dict[str, Any]:
    """What the file belongs to as the ack says it: `{"draft": 5}`, `{"receipt": 9}`, `{"asn": .., "supplier": ..}`."""
    if row["ref_kind"] == RefKind.ASN:
        return {"asn": row["ref"], "supplier": row["supplier"]}
    return {row["ref_kind"]: int(row["ref"])}


def get_attachment(conn: sqlite3.Connection, attachment_id: int) -> dict[str, Any] | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM attachments WHERE id = ?", (attachment_id,)).fetchone()
    return None if row is None else _row(row)


def list_attachments(
    conn: sqlite3.Connection,
    *,
    refs: list[AttachmentRef] | None = None,
    device: str | None = None,
    purpose: Purpose | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Stored attachments, oldest first; `refs` keeps those linked to any of these references."""
    where: list[str] = []
    params: list[Any] = []
    if refs is not None:
        if not refs:
            return []
        where.append("(" + " OR ".join("(ref_kind = ? AND ref = ? AND supplier IS ?)" for _ in refs) + ")")
        params.extend(value for ref in refs for value in (ref.kind.value, ref.ref, ref.supplier))
    if device is not None:
        where.append("device = ?")
        params.append(device)
    if purpose is not None:
        where.append("purpose = ?")
        params.append(purpose.value)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM attachments {clause} ORDER BY id LIMIT ? OFFSET ?", (*params, limit, offset)
    ).fetchall()
    return [_row(row) for row in rows]


def linked_refs(conn: sqlite3.Connection, refs: list[AttachmentRef]) -> list[AttachmentRef]:
    """`refs` and everything a receipt draft ties to them: its id, its supplier's ASN and its posted receipt.

    A terminal offline knows only the supplier and the ASN id from the delivery note's QR code; once a draft of
    that supplier's ASN is opened and confirmed, the draft and the receipt list those photos too (and the other
    way round). Another supplier's ASN of the same id is another shipment.
    """
    found = dict.fromkeys(refs)
    drafts = [int(r.ref) for r in refs if r.kind is RefKind.DRAFT]
    receipts = [int(r.ref) for r in refs if r.kind is RefKind.RECEIPT]
    shipments = [(r.supplier, r.ref) for r in refs if r.kind is RefKind.ASN and r.supplier is not None]
    clauses = [
        "id IN (SELECT value FROM json_each(?))",
        "receipt_id IN (SELECT value FROM json_each(?))",
        "EXISTS (SELECT 1 FROM json_each(?) j WHERE j.value ->> 0 = supplier AND j.value ->> 1 = asn_id)",
    ]
    rows = conn.execute(
        f"SELECT id, supplier, asn_id, receipt_id FROM receipt_drafts WHERE {' OR '.join(clauses)}",
        (json.dumps(drafts), json.dumps(receipts), json.dumps(shipments)),
    ).fetchall()
    for draft_id, supplier, asn_id, receipt_id in rows:
        found.setdefault(AttachmentRef.draft(int(draft_id)))
        found.setdefault(AttachmentRef.asn(str(supplier), str(asn_id)))
        if receipt_id is not None:
            found.setdefault(AttachmentRef.receipt(int(receipt_id)))
    return list(found)


def attachment_file(root: Path, attachment: dict[str, Any]) -> Path:
    """The file of a stored attachment (it exists unless someone removed it by hand)."""
    return attachment_path(root, str(attachment["sha256"]), str(attachment["mime"]))
