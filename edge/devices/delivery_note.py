"""Signed delivery-note QR codes (送货单二维码): the content format, Ed25519 signing and verification, and the
suppliers' public signing keys on the box.

The format is specified in docs/scan-to-receive.md:

    SBDN1:<base45( signature[64] || zlib(body) )>

`body` is compact UTF-8 JSON; the signature is Ed25519 over `b"SBDN1:" + body`. The text uses only the QR
alphanumeric character set (base45, RFC 9285), so a 50-line note fits a QR code of version <= 25 at ECC M.
Parsing checks structure only; `verify_note` checks the signature against the supplier's key. Replays are
refused by the receiving flow (edge/devices/receiving.py), which remembers every nonce.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import sqlite3
import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, ClassVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge.ledger.audit import append_audit
from edge.ledger.errors import DomainError

PREFIX = "SBDN1:"
SIGNED_PREFIX = PREFIX.encode()  # domain separation: a note signature is never valid for anything else
FORMAT_VERSION = 1
SIGNATURE_BYTES = 64
MAX_TEXT = 4296  # the most a QR code holds in alphanumeric mode (version 40, ECC L)
MAX_BODY = 65536  # decompressed; a zlib bomb stops here
MAX_LINES = 200
MAX_QTY = 10_000_000
BODY_KEYS = frozenset({"v", "s", "k", "a", "p", "t", "n", "l"})
_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_LOT = re.compile(r"^[A-Za-z0-9._/-]{1,64}$")
_KEY_ID = re.compile(r"^[0-9a-f]{8}$")
_NONCE = re.compile(r"^[A-Za-z0-9_-]{8,32}$")
_EXPIRY = re.compile(r"^[0-9]{8}$")
_ITEM = re.compile(r"^[\x21-\x7e]{1,64}$")
_UNIT = re.compile(r"^\S{1,32}$")

BASE45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_BASE45_VALUE = {c: i for i, c in enumerate(BASE45)}


class NoteError(DomainError):
    """A delivery note refused: forged, tampered, unknown key, stale, replayed or malformed."""

    code: ClassVar[str] = "note_error"
    status: ClassVar[int] = 422


class NoteMalformed(NoteError):
    code = "note_malformed"


class NoteUnknownKey(NoteError):
    code = "note_unknown_key"
    status = 403


class NoteKeyRevoked(NoteError):
    code = "note_key_revoked"
    status = 403


class NoteBadSignature(NoteError):
    code = "note_bad_signature"
    status = 403


class SigningKeyError(DomainError):
    code = "signing_key_invalid"
    status = 422


def _malformed(zh: str, en: str) -> NoteMalformed:
    return NoteMalformed(f"送货单二维码格式无效: {zh}", f"delivery note QR code is malformed: {en}")


# --- base45 (RFC 9285) -------------------------------------------------------------------------


def base45_encode(data: bytes) -> str:
    out = []
    for i in range(0, len(data) - 1, 2):
        n = data[i] * 256 + data[i + 1]
        n, c = divmod(n, 45)
        e, d = divmod(n, 45)
        out += [BASE45[c], BASE45[d], BASE45[e]]
    if len(data) % 2:
        d, c = divmod(data[-1], 45)
        out += [BASE45[c], BASE45[d]]
    return "".join(out)


def base45_decode(text: str) -> bytes:
    """Decode base45; ValueError on a character outside the alphabet, a dangling character or an overflow."""
    if len(text) % 3 == 1:
        raise ValueError("base45 length leaves a single character")
    out = bytearray()
    for i in range(0, len(text), 3):
        chunk = text[i : i + 3]
        try:
            values = [_BASE45_VALUE[c] for c in chunk]
        except KeyError:
            raise ValueError("character outside the base45 alphabet") from None
        n = sum(v * 45**k for k, v in enumerate(values))
        if len(chunk) == 3:
            if n > 0xFFFF:
                raise ValueError("base45 triple out of range")
            out += n.to_bytes(2, "big")
        else:
            if n > 0xFF:
                raise ValueError("base45 pair out of range")
            out.append(n)
    return bytes(out)


# --- the note ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NoteLine:
    """One line printed on the note: item (SKU, barcode or GTIN), quantity in `unit` (default: the code's)."""

    item: str
    qty: int
    lot: str | None = None
    expiry: date | None = None
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryNote:
    """What a delivery note's QR code says."""

    supplier: str
    key_id: str
    asn_id: str
    po_no: str
    issued_at: datetime  # UTC, whole seconds
    nonce: str
    lines: tuple[NoteLine, ...]


@dataclass(frozen=True, slots=True)
class SignedNote:
    """A parsed QR code: the note, the exact bytes that were signed, the signature, and the body's sha256."""

    note: DeliveryNote
    body: bytes
    signature: bytes
    note_hash: str


def note_body(note: DeliveryNote) -> bytes:
    """The compact JSON body of `note` (keys in a fixed order, no spaces, trailing empty line fields left out)."""
    lines: list[list[Any]] = []
    for line in note.lines:
        fields: list[Any] = [
            line.item,
            line.qty,
            line.lot,
            line.expiry.strftime("%Y%m%d") if line.expiry else None,
            line.unit,
        ]
        while len(fields) > 2 and fields[-1] is None:
            fields.pop()
        lines.append(fields)
    body = {
        "v": FORMAT_VERSION,
        "s": note.supplier,
        "k": note.key_id,
        "a": note.asn_id,
        "p": note.po_no,
        "t": int(note.issued_at.timestamp()),
        "n": note.nonce,
        "l": lines,
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def encode_note(note: DeliveryNote, private_key: Ed25519PrivateKey) -> str:
    """The QR code text of `note`, signed with the supplier's private key."""
    body = note_body(note)
    parse_body(body)  # what we sign must be what we accept
    signature = private_key.sign(SIGNED_PREFIX + body)
    return PREFIX + base45_encode(signature + zlib.compress(body, 9))


def parse_note(text: str) -> SignedNote:
    """Parse QR text into a note without trusting it (the signature is checked by `verify_note`).

    Raises NoteMalformed with the reason for anything that is not a well-formed note.
    """
    if not isinstance(text, str) or not text.startswith(PREFIX):
        raise _malformed(f"不是以 {PREFIX} 开头", f"does not start with {PREFIX}")
    if len(text) > MAX_TEXT:
        raise _malformed(f"超过 {MAX_TEXT} 字符", f"longer than {MAX_TEXT} characters")
    try:
        raw = base45_decode(text[len(PREFIX) :])
    except ValueError as exc:
        raise _malformed("base45 编码无效 (二维码内容不完整或被修改)", f"invalid base45 ({exc})") from None
    if len(raw) <= SIGNATURE_BYTES:
        raise _malformed("内容过短", "too short")
    signature, packed = raw[:SIGNATURE_BYTES], raw[SIGNATURE_BYTES:]
    try:
        inflater = zlib.decompressobj()
        body = inflater.decompress(packed, MAX_BODY)
        if inflater.unconsumed_tail or not inflater.eof or inflater.unused_data:
            raise _malformed("压缩数据不完整或过大", "compressed data incomplete, trailing or too large")
    except zlib.error:
        raise _malformed("压缩数据无效", "invalid compressed data") from None
    return SignedNote(parse_body(body), body, signature, hashlib.sha256(body).hexdigest())


def parse_body(body: bytes) -> DeliveryNote:
    """The note in a body; NoteMalformed naming the first field that is wrong."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _malformed("内容不是 JSON", "body is not JSON") from None
    if not isinstance(data, dict) or set(data) != BODY_KEYS:
        raise _malformed(
            f"字段应为 {', '.join(sorted(BODY_KEYS))}", f"fields must be exactly {', '.join(sorted(BODY_KEYS))}"
        )
    if data["v"] != FORMAT_VERSION or type(data["v"]) is not int:
        raise _malformed(f"不支持的版本 {data['v']!r}", f"unsupported version {data['v']!r}")
    for name, pattern, what in (
        ("s", _ID, "supplier"),
        ("k", _KEY_ID, "key id"),
        ("a", _ID, "ASN id"),
        ("p", _ID, "PO number"),
        ("n", _NONCE, "nonce"),
    ):
        value = data[name]
        if not isinstance(value, str) or not pattern.match(value):
            raise _malformed(f"字段 {name} ({what}) 无效", f"field {name} ({what}) is invalid")
    issued = data["t"]
    if type(issued) is not int or not 0 < issued < 2**34:
        raise _malformed("字段 t (签发时间) 无效", "field t (issue time) is invalid")
    raw_lines = data["l"]
    if not isinstance(raw_lines, list) or not 1 <= len(raw_lines) <= MAX_LINES:
        raise _malformed(f"行数应为 1..{MAX_LINES}", f"field l must hold 1..{MAX_LINES} lines")
    lines = tuple(_parse_line(no, raw) for no, raw in enumerate(raw_lines, start=1))
    return DeliveryNote(
        supplier=data["s"],
        key_id=data["k"],
        asn_id=data["a"],
        po_no=data["p"],
        issued_at=datetime.fromtimestamp(issued, UTC),
        nonce=data["n"],
        lines=lines,
    )


def _parse_line(no: int, raw: object) -> NoteLine:
    def bad(what: str, what_en: str) -> NoteMalformed:
        return _malformed(f"第 {no} 行{what}无效", f"line {no}: invalid {what_en}")

    if not isinstance(raw, list) or not 2 <= len(raw) <= 5:
        raise bad("", "line (expected [item, qty, lot, expiry, unit])")
    fields = [*raw, None, None, None][:5]
    item, qty, lot, expiry, unit = fields
    if not isinstance(item, str) or not _ITEM.match(item):
        raise bad("商品编码", "item code")
    if type(qty) is not int or not 1 <= qty <= MAX_QTY:
        raise bad("数量", "quantity")
    if lot is not None and (not isinstance(lot, str) or not _LOT.match(lot)):
        raise bad("批号", "lot")
    expiry_date = None
    if expiry is not None:
        if not isinstance(expiry, str) or not _EXPIRY.match(expiry):
            raise bad("有效期", "expiry (YYYYMMDD)")
        try:
            expiry_date = datetime.strptime(expiry, "%Y%m%d").date()
        except ValueError:
            raise bad("有效期", "expiry (YYYYMMDD)") from None
    if unit is not None and (not isinstance(unit, str) or not _UNIT.match(unit)):
        raise bad("单位", "unit")
    return NoteLine(item, qty, lot, expiry_date, unit)


def verify_note(signed: SignedNote, public_key: bytes) -> None:
    """Check the note's signature with the supplier's raw 32-byte public key; NoteBadSignature when it fails."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signed.signature, SIGNED_PREFIX + signed.body)
    except (InvalidSignature, ValueError):
        raise NoteBadSignature(
            f"送货单签名无效 (伪造或被修改): 供应商 {signed.note.supplier} 发货通知 {signed.note.asn_id}",
            f"delivery note signature is invalid (forged or tampered): supplier {signed.note.supplier}"
            f" ASN {signed.note.asn_id}",
            supplier=signed.note.supplier,
            asn_id=signed.note.asn_id,
        ) from None


# --- keys -------------------------------------------------------------------------------------


def key_id(public_key: bytes) -> str:
    """The short id of a public key printed in each note: the first 8 hex digits of its sha256."""
    return hashlib.sha256(public_key).hexdigest()[:8]


def public_key_text(public_key: bytes) -> str:
    return base64.urlsafe_b64encode(public_key).rstrip(b"=").decode()


def parse_public_key(text: str) -> bytes:
    """A raw 32-byte Ed25519 public key from base64url / base64 (32 bytes), 64 hex digits, or a PEM public key."""
    text = text.strip() if isinstance(text, str) else ""
    raw: bytes | None = None
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode())
        except ValueError:
            key = None
        if isinstance(key, Ed25519PublicKey):
            raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    elif re.fullmatch(r"[0-9a-fA-F]{64}", text):
        raw = bytes.fromhex(text)
    elif re.fullmatch(r"[A-Za-z0-9+/_-]{43}=?", text):
        try:
            raw = base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_").rstrip("=") + "=")
        except (binascii.Error, ValueError):
            raw = None
    if raw is None or len(raw) != 32:
        raise SigningKeyError(
            "公钥无效: 应为 Ed25519 公钥 (32 字节 base64url、64 位十六进制或 PEM)",
            "invalid public key: expected an Ed25519 public key (32 bytes as base64url, 64 hex digits, or PEM)",
        )
    try:
        Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise SigningKeyError("公钥无效", "invalid Ed25519 public key") from None
    return raw


def generate_key_pair() -> tuple[Ed25519PrivateKey, bytes]:
    """A new supplier signing key and its raw public key (for the supplier's tool and the tests)."""
    private = Ed25519PrivateKey.generate()
    return private, private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A supplier's public key on the box."""

    supplier: str
    key_id: str
    public_key: bytes
    added_at: datetime
    added_by: str
    revoked_at: datetime | None = None
    revoked_by: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "supplier": self.supplier,
            "key_id": self.key_id,
            "public_key": public_key_text(self.public_key),
            "added_at": self.added_at.isoformat(),
            "added_by": self.added_by,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "revoked_by": self.revoked_by,
            "active": self.active,
        }


def _signing_key(row: sqlite3.Row) -> SigningKey:
    return SigningKey(
        supplier=row["supplier"],
        key_id=row["key_id"],
        public_key=base64.urlsafe_b64decode(row["public_key"] + "="),
        added_at=datetime.fromisoformat(row["added_at"]),
        added_by=row["added_by"],
        revoked_at=datetime.fromisoformat(row["revoked_at"]) if row["revoked_at"] else None,
        revoked_by=row["revoked_by"],
    )


def set_signing_key(
    conn: sqlite3.Connection, supplier: str, public_key: str, actor: str, now: datetime, replace: bool = False
) -> SigningKey:
    """Register a supplier's public signing key (idempotent); `replace` revokes the supplier's other keys.

    A revoked key is never taken back: the supplier makes a new key pair.
    """
    raw = parse_public_key(public_key)
    if conn.execute("SELECT 1 FROM suppliers WHERE id = ?", (supplier,)).fetchone() is None:
        raise SigningKeyError(f"未知供应商: {supplier}", f"unknown supplier: {supplier}", supplier=supplier)
    kid = key_id(raw)
    row = conn.execute(
        "SELECT * FROM supplier_signing_keys WHERE supplier = ? AND key_id = ?", (supplier, kid)
    ).fetchone()
    if row is not None and row["public_key"] != public_key_text(raw):
        raise SigningKeyError(
            f"供应商 {supplier} 已有编号相同的另一把公钥 {kid}，请重新生成密钥",
            f"supplier {supplier} already has another key with id {kid}; generate a new key pair",
        )
    if row is not None and row["revoked_at"]:
        raise SigningKeyError(
            f"公钥 {kid} 已吊销，不能再启用；请供应商生成新的密钥",
            f"key {kid} was revoked and cannot be used again; the supplier must generate a new key pair",
            supplier=supplier,
            key_id=kid,
        )
    ts = now.isoformat()
    if row is None:
        conn.execute(
            "INSERT INTO supplier_signing_keys (supplier, key_id, public_key, added_at, added_by)"
            " VALUES (?, ?, ?, ?, ?)",
            (supplier, kid, public_key_text(raw), ts, actor),
        )
        append_audit(
            conn,
            ts=ts,
            actor=actor,
            device=None,
            action="supplier.signing_key.set",
            object=f"supplier:{supplier}",
            detail={"key_id": kid, "public_key": public_key_text(raw)},
        )
    if replace:
        for other in conn.execute(
            "SELECT key_id FROM supplier_signing_keys WHERE supplier = ? AND key_id != ? AND revoked_at IS NULL",
            (supplier, kid),
        ).fetchall():
            revoke_signing_key(conn, supplier, other[0], actor, now)
    key = signing_key(conn, supplier, kid)
    assert key is not None
    return key


def revoke_signing_key(conn: sqlite3.Connection, supplier: str, kid: str, actor: str, now: datetime) -> SigningKey:
    """Revoke a key: notes signed with it are refused from now on (idempotent)."""
    key = signing_key(conn, supplier, kid)
    if key is None:
        raise SigningKeyError(
            f"供应商 {supplier} 没有公钥 {kid}", f"supplier {supplier} has no key {kid}", supplier=supplier, key_id=kid
        )
    if key.active:
        ts = now.isoformat()
        conn.execute(
            "UPDATE supplier_signing_keys SET revoked_at = ?, revoked_by = ? WHERE supplier = ? AND key_id = ?",
            (ts, actor, supplier, kid),
        )
        append_audit(
            conn,
            ts=ts,
            actor=actor,
            device=None,
            action="supplier.signing_key.revoke",
            object=f"supplier:{supplier}",
            detail={"key_id": kid},
        )
        key = signing_key(conn, supplier, kid)
        assert key is not None
    return key


def signing_key(conn: sqlite3.Connection, supplier: str, kid: str) -> SigningKey | None:
    row = conn.execute(
        "SELECT * FROM supplier_signing_keys WHERE supplier = ? AND key_id = ?", (supplier, kid)
    ).fetchone()
    return _signing_key(row) if row is not None else None


def list_signing_keys(conn: sqlite3.Connection, supplier: str | None = None) -> list[SigningKey]:
    where, params = ("WHERE supplier = ?", (supplier,)) if supplier else ("", ())
    return [
        _signing_key(row)
        for row in conn.execute(f"SELECT * FROM supplier_signing_keys {where} ORDER BY supplier, added_at", params)
    ]


def check_note(conn: sqlite3.Connection, text: str) -> SignedNote:
    """Parse `text` and verify it with the supplier's registered key: a note the box can trust (not yet checked
    for freshness or replay, which the receiving flow does)."""
    signed = parse_note(text)
    note = signed.note
    key = signing_key(conn, note.supplier, note.key_id)
    if key is None:
        raise NoteUnknownKey(
            f"供应商 {note.supplier} 没有登记编号为 {note.key_id} 的签名公钥",
            f"supplier {note.supplier} has no registered signing key {note.key_id}",
            supplier=note.supplier,
            key_id=note.key_id,
        )
    if not key.active:
        raise NoteKeyRevoked(
            f"签名公钥 {note.key_id} 已于 {key.revoked_at:%Y-%m-%d} 吊销",
            f"signing key {note.key_id} was revoked on {key.revoked_at:%Y-%m-%d}",
            supplier=note.supplier,
            key_id=note.key_id,
        )
    verify_note(signed, key.public_key)
    return signed
