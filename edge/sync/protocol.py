"""The wire contract between a box and the aggregator (docs/sync-protocol.md): store keys, request signatures,
batch bodies. Pure functions, imported by both sides (edge/sync and cloud_sync), so they cannot drift apart.

A store key is `<key_id>.<secret>`: 8 hex digits naming the key, then 32 random bytes in URL-safe base64. Each
request carries four headers; the signature is HMAC-SHA256 with the secret over

    METHOD \\n path?query \\n timestamp \\n store \\n key_id \\n sha256(body as sent)

so the body, the target, the store and the time are all covered, and nothing else needs to be canonicalised.
The aggregator accepts a timestamp within `MAX_SKEW_S` of its own clock; a refusal carries its clock in
`SERVER_TIME_HEADER` so a box with a wrong clock corrects its offset and signs again (clocks skewed by hours work).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import re
import secrets
import zlib
from dataclasses import dataclass
from typing import Any

import orjson

PROTOCOL_VERSION = 1
STORE_HEADER = "X-StoreBox-Store"
KEY_ID_HEADER = "X-StoreBox-Key-Id"
TIMESTAMP_HEADER = "X-StoreBox-Timestamp"
SIGNATURE_HEADER = "X-StoreBox-Signature"
SERVER_TIME_HEADER = "X-StoreBox-Server-Time"
SIGNATURE_SCHEME = "v1="
MAX_SKEW_S = 300
MAX_BATCH_ROWS = 20_000
MAX_BATCH_BYTES = 64 * 1024 * 1024  # decompressed; a batch larger than this is refused (413)
MAX_COMPRESSED_BYTES = 16 * 1024 * 1024

STORE_ID = re.compile(r"^[a-z0-9-]{1,64}$")
_KEY = re.compile(r"^([0-9a-f]{8})\.([A-Za-z0-9_-]{43})$")
_SIGNATURE = re.compile(r"^v1=[0-9a-f]{64}$")


class ProtocolError(ValueError):
    """Input that does not follow the wire contract; `code`, Chinese and English messages for the error body."""

    def __init__(self, code: str, message: str, message_en: str, **detail: Any) -> None:
        super().__init__(message_en)
        self.code = code
        self.message = message
        self.message_en = message_en
        self.detail = detail


@dataclass(frozen=True, slots=True)
class StoreKey:
    key_id: str
    secret: bytes

    def __str__(self) -> str:
        return f"{self.key_id}.{base64.urlsafe_b64encode(self.secret).rstrip(b'=').decode()}"


def generate_store_key() -> StoreKey:
    return StoreKey(secrets.token_hex(4), secrets.token_bytes(32))


def parse_store_key(text: str) -> StoreKey:
    """`<key_id>.<secret>` -> StoreKey; ProtocolError for anything else (the text is never echoed back)."""
    match = _KEY.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ProtocolError(
            "store_key_invalid",
            "门店密钥格式无效 (应为 8 位十六进制编号.43 位密钥)",
            "store key is malformed (expected <8 hex digits>.<43 base64url characters>)",
        )
    return StoreKey(match.group(1), base64.urlsafe_b64decode(match.group(2) + "="))


def canonical_request(method: str, target: str, timestamp: int, store: str, key_id: str, body: bytes) -> bytes:
    """What the signature covers; `target` is the path with its query string exactly as sent."""
    return "\n".join((method.upper(), target, str(timestamp), store, key_id, hashlib.sha256(body).hexdigest())).encode()


def sign_request(key: StoreKey, store: str, method: str, target: str, body: bytes, timestamp: int) -> dict[str, str]:
    """The four headers of a signed request."""
    mac = hmac.new(key.secret, canonical_request(method, target, timestamp, store, key.key_id, body), "sha256")
    return {
        STORE_HEADER: store,
        KEY_ID_HEADER: key.key_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: SIGNATURE_SCHEME + mac.hexdigest(),
    }


def signature_matches(
    secret: bytes, signature: str, store: str, key_id: str, method: str, target: str, body: bytes, timestamp: int
) -> bool:
    """Constant-time check of a signature header value against the secret."""
    if not _SIGNATURE.match(signature):
        return False
    expected = hmac.new(secret, canonical_request(method, target, timestamp, store, key_id, body), "sha256")
    return hmac.compare_digest(SIGNATURE_SCHEME + expected.hexdigest(), signature)


def encode_body(value: Any) -> bytes:
    """Compact UTF-8 JSON, gzip-compressed (sent with `Content-Encoding: gzip`)."""
    raw = (
        value
        if isinstance(value, bytes)
        else json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()
    )
    return gzip.compress(raw, compresslevel=1, mtime=0)  # level 1: most of the saving at a fifth of the CPU


def inflate(data: bytes) -> bytes:
    """A gzip body decompressed; ProtocolError when it is not gzip, truncated, or too big (a bomb stops early)."""
    if len(data) > MAX_COMPRESSED_BYTES:
        raise ProtocolError("batch_too_large", "请求体过大", "request body too large", limit=MAX_COMPRESSED_BYTES)
    inflater = zlib.decompressobj(wbits=31)  # gzip framing; max_length stops a decompression bomb
    try:
        raw = inflater.decompress(data, MAX_BATCH_BYTES + 1)
    except zlib.error:
        raise ProtocolError("batch_invalid", "压缩数据无效", "body is not valid gzip") from None
    if len(raw) > MAX_BATCH_BYTES:
        raise ProtocolError("batch_too_large", "批次解压后过大", "batch too large once decompressed")
    if not inflater.eof:
        raise ProtocolError("batch_invalid", "压缩数据不完整", "gzip body is truncated")
    return raw


def parse_json(raw: bytes) -> Any:
    """JSON of a body; ProtocolError when it is not UTF-8 JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError("batch_invalid", "请求体不是有效的 JSON", f"body is not valid JSON ({exc})") from None


def decode_body(data: bytes, *, compressed: bool) -> Any:
    """The JSON of a request body; ProtocolError when it is not gzip (if said), too big, or not JSON."""
    if compressed:
        return parse_json(inflate(data))
    if len(data) > MAX_BATCH_BYTES:
        raise ProtocolError("batch_too_large", "请求体过大", "request body too large")
    return parse_json(data)


def batch_body(store: str, seq: int, rows: list[tuple[int, str, str, int | None, str]]) -> bytes:
    """The uncompressed body of batch `seq`: `rows` are (outbox seq, kind, created_at, document_id, payload JSON
    text) as the outbox holds them. The payload text is spliced in unparsed, so that the same rows always give the
    same bytes (the aggregator's digest of a batch is sha256 of these bytes) and a million rows cost no parsing."""
    parts = [
        f'{{"created_at":{json.dumps(created_at)},"document_id":{"null" if document_id is None else int(document_id)},'
        f'"kind":{json.dumps(kind)},"payload":{payload},"seq":{int(row_seq)}}}'
        for row_seq, kind, created_at, document_id, payload in rows
    ]
    body = f'{{"rows":[{",".join(parts)}],"seq":{int(seq)},"store":{json.dumps(store)},"v":{PROTOCOL_VERSION}}}'
    return body.encode()


def batch_digest(raw: bytes) -> str:
    """The digest by which the aggregator recognises a batch sent again: sha256 of its uncompressed bytes."""
    return hashlib.sha256(raw).hexdigest()


def rows_digest(rows: list[dict[str, Any]]) -> str:
    """sha256 of a batch's rows in canonical JSON: the same (store, seq) with another digest is a conflict."""
    raw = json.dumps(rows, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()
    return hashlib.sha256(raw).hexdigest()
