"""Photos and signatures in chunks: reassembly, checks, atomic files, refusals, and garbage of every kind.

The chunk job runs as the writer runs it (`run_event_job` inside a transaction, once per event id) over a
migrated temp SQLite file; events are decoded by the ingest's own `decode_event` with the box's kinds.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import itertools
import json
import random
import sqlite3
import struct
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from edge.bus.event_kinds import decode_options, device_event_kinds
from edge.bus.payloads import DecodedEvent, DecodeOptions, JobOutcome, Rejection, decode_event, event_key
from edge.bus.storage import run_event_job
from edge.config import Settings
from edge.db import connect, migrate
from edge.devices.attachments import (
    ATTACHMENTS_DIR,
    OPTIONS_KEY,
    TEMP_DIR,
    AttachmentLimits,
    AttachmentRef,
    attachment_path,
    get_attachment,
    list_attachments,
    sniff_mime,
    sweep_attachments,
)
from edge.finance.rulebook import rule_book
from edge.ledger.posting import PostingContext

T0 = datetime(2024, 6, 1, 2, 0, tzinfo=UTC)
RULES = rule_book()


@functools.cache
def png_bytes(width: int = 40, height: int = 30, seed: int = 0) -> bytes:
    image = Image.new("RGB", (width, height), (seed % 256, 120, 200))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@functools.cache
def jpeg_bytes(width: int = 160, height: int = 120, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    image = Image.new("RGB", (width, height))
    image.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(width * height)])
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


SIGNATURE_SVG = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 300 100" width="300" height="100">'
    b'<path d="M10 80 C 40 10, 65 10, 95 80 S 150 150, 180 80" stroke="#000" stroke-width="2" fill="none"/>'
    b'<polyline points="200,80 220,40 240,80 260,40" stroke="black" fill="none"/></svg>'
)


@dataclass
class Box:
    """A migrated database, the attachments folder, and a clock for the writer jobs."""

    conn: sqlite3.Connection
    root: Path
    limits: AttachmentLimits
    now: datetime = T0
    ids: Iterator[int] = field(default_factory=itertools.count)

    def options(self) -> DecodeOptions:
        return DecodeOptions(max_bytes=1 << 20, extra={OPTIONS_KEY: self.limits})

    def send(
        self, data: dict[str, Any], *, device: str = "pda-1", event_id: str | None = None
    ) -> JobOutcome | Rejection:
        """One `evt/attachment` event through decoding and its writer job, committed like a group commit."""
        event_id = event_id or f"e{next(self.ids)}"
        payload = json.dumps({"id": event_id, "ts": "2024-06-01T10:00:00+08:00", "data": data}).encode()
        decoded = decode_event(device, "attachment", payload, kinds=device_event_kinds(), options=self.options())
        if isinstance(decoded, Rejection):
            return decoded
        assert isinstance(decoded, DecodedEvent) and decoded.job is not None
        ctx = PostingContext(now=self.now, business_date=self.now.date(), rules=RULES)
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            outcome = run_event_job(
                self.conn, ctx, event_key(device, event_id), "attachment", decoded.job.fn, decoded.job.args
            )
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        return outcome

    def count(self, table: str) -> int:
        return int(self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    def files(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*") if p.is_file())

    def assert_consistent(self) -> None:
        """Every row names a whole file with its digest; no file, temp file or chunk is left over."""
        rows = list_attachments(self.conn, limit=1000)
        for row in rows:
            path = attachment_path(self.root, row["sha256"], row["mime"])
            content = path.read_bytes()
            assert hashlib.sha256(content).hexdigest() == row["sha256"]
            assert len(content) == row["size"]
            assert sniff_mime(content) == row["mime"]
        expected = {attachment_path(self.root, r["sha256"], r["mime"]) for r in rows}
        assert set(self.files()) == expected
        stray = self.conn.execute(
            "SELECT COUNT(*) FROM attachment_chunks c JOIN attachment_uploads u ON u.id = c.upload_id"
            " WHERE u.state != 'open'"
        ).fetchone()[0]
        assert stray == 0


@functools.cache
def template_db() -> bytes:
    """A migrated database, made once per run (the migrations take a while) and copied into each test."""
    with tempfile.TemporaryDirectory() as folder:
        conn = connect(Path(folder) / "template.db")
        migrate(conn)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        return (Path(folder) / "template.db").read_bytes()


def make_box(tmp_path: Path, **limits: Any) -> Box:
    (tmp_path / "storebox.db").write_bytes(template_db())
    conn = connect(tmp_path / "storebox.db")
    conn.execute("PRAGMA synchronous = OFF")  # a test database: no fsync per commit
    root = tmp_path / ATTACHMENTS_DIR
    values: dict[str, Any] = {"root": str(root), "max_bytes": 256 * 1024, "incomplete_seconds": 3600, "max_open": 4}
    values.update(limits)
    return Box(conn, root, AttachmentLimits(**values))


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Box]:
    the_box = make_box(tmp_path)
    yield the_box
    the_box.conn.close()


def chunks(
    content: bytes,
    attachment: str = "ph-1",
    *,
    purpose: str = "photo",
    ref: dict[str, Any] | None = None,
    size: int = 4096,
    sha256: str | None = None,
    declared_size: int | None = None,
) -> list[dict[str, Any]]:
    pieces = [content[i : i + size] for i in range(0, len(content), size)]
    return [
        {
            "attachment": attachment,
            "purpose": purpose,
            **(ref or {"asn": "ASN-2024-0001", "supplier": "sup-1"}),
            "seq": seq,
            "count": len(pieces),
            "size": len(content) if declared_size is None else declared_size,
            "sha256": sha256 or hashlib.sha256(content).hexdigest(),
            "data": base64.b64encode(piece).decode(),
        }
        for seq, piece in enumerate(pieces)
    ]


def ok(outcome: JobOutcome | Rejection) -> JobOutcome:
    assert isinstance(outcome, JobOutcome) and outcome.ok, outcome
    return outcome


def refused(outcome: JobOutcome | Rejection, code: str) -> JobOutcome:
    assert isinstance(outcome, JobOutcome), outcome
    assert not outcome.ok and outcome.code == code, outcome
    assert outcome.message and outcome.message_en
    return outcome


# --- the way it should go ----------------------------------------------------------------------------------


def test_photo_in_chunks_is_stored_whole_once_checked_and_linked_to_its_asn(box: Box) -> None:
    photo = jpeg_bytes()
    parts = chunks(photo, size=8192)
    assert len(parts) >= 3
    for n, part in enumerate(parts[:-1], start=1):
        outcome = ok(box.send(part))
        assert outcome.detail == {"attachment": "ph-1", "received": n, "count": len(parts)}
        assert box.files() == []  # nothing on disk before the last chunk
    last = ok(box.send(parts[-1]))
    assert last.detail is not None
    stored = get_attachment(box.conn, last.detail["stored"])
    assert stored is not None
    assert stored["mime"] == "image/jpeg" and stored["size"] == len(photo)
    assert (stored["device"], stored["purpose"], stored["ref_kind"], stored["ref"], stored["supplier"]) == (
        "pda-1",
        "photo",
        "asn",
        "ASN-2024-0001",
        "sup-1",
    )
    assert (last.detail["asn"], last.detail["supplier"]) == ("ASN-2024-0001", "sup-1")
    assert last.detail["sha256"] == hashlib.sha256(photo).hexdigest()
    assert attachment_path(box.root, stored["sha256"], "image/jpeg").read_bytes() == photo
    assert box.count("attachment_chunks") == 0
    assert list_attachments(box.conn, refs=[AttachmentRef.asn("sup-1", "ASN-2024-0001")]) == [stored]
    assert list_attachments(box.conn, refs=[AttachmentRef.asn("sup-2", "ASN-2024-0001")]) == []  # another shipment
    assert list_attachments(box.conn, refs=[AttachmentRef.draft(1)]) == []
    box.assert_consistent()


def test_chunks_in_any_order_sent_twice_store_the_file_once(box: Box) -> None:
    photo = png_bytes(200, 150)
    parts = chunks(photo, size=97)
    order = list(range(len(parts)))
    random.Random(7).shuffle(order)
    outcomes = [box.send(parts[i], event_id=f"c{i}") for i in order]
    outcomes += [box.send(parts[i], event_id=f"again-{i}") for i in order[:3]]  # new ids, same bytes
    assert all(isinstance(o, JobOutcome) and o.ok for o in outcomes)
    replay = box.send(parts[order[-1]], event_id=f"c{order[-1]}")  # a resend: the first answer again
    assert isinstance(replay, JobOutcome) and replay.replayed and replay.detail == outcomes[len(order) - 1].detail
    assert box.count("attachments") == 1
    box.assert_consistent()


def test_signature_as_svg_strokes_or_png_is_taken(box: Box) -> None:
    for name, content in (("sig-svg", SIGNATURE_SVG), ("sig-png", png_bytes(300, 100))):
        outcomes = [box.send(c) for c in chunks(content, name, purpose="signature", ref={"draft": 12}, size=150)]
        assert ok(outcomes[-1]).detail is not None
    mimes = {r["attachment"]: r["mime"] for r in list_attachments(box.conn, refs=[AttachmentRef.draft(12)])}
    assert mimes == {"sig-svg": "image/svg+xml", "sig-png": "image/png"}
    box.assert_consistent()


def test_the_same_photo_from_two_terminals_is_two_rows_and_one_file(box: Box) -> None:
    photo = jpeg_bytes(seed=3)
    for device in ("pda-1", "pda-2"):
        for part in chunks(photo, ref={"receipt": 42}):
            ok(box.send(part, device=device))
    assert box.count("attachments") == 2 and len(box.files()) == 1
    box.assert_consistent()


# --- refusals: clear, final, nothing half-stored ------------------------------------------------------------


def test_wrong_hash_refuses_the_whole_upload_and_keeps_no_bytes(box: Box) -> None:
    photo = jpeg_bytes()
    parts = chunks(photo, sha256=hashlib.sha256(b"another photo").hexdigest())
    for part in parts[:-1]:
        ok(box.send(part))
    outcome = refused(box.send(parts[-1]), "attachment_hash_mismatch")
    assert "sha256" in outcome.message_en and outcome.detail is not None
    assert outcome.detail["actual"] == hashlib.sha256(photo).hexdigest()
    assert box.count("attachments") == 0 and box.count("attachment_chunks") == 0 and box.files() == []
    # A later chunk of that upload (a resend under a new id) hears the same reason.
    again = refused(box.send(parts[0], event_id="late"), "attachment_hash_mismatch")
    assert again.detail == {"attachment": "ph-1", "refused": True}
    assert "已被拒收" in again.message


def test_too_large_is_refused_at_the_first_chunk(tmp_path: Path) -> None:
    box = make_box(tmp_path, max_bytes=10_000)
    big = jpeg_bytes()
    assert len(big) > box.limits.max_bytes
    parts = chunks(big, size=8192)
    outcome = refused(box.send(parts[0]), "attachment_too_large")
    assert outcome.detail is not None and outcome.detail["max_bytes"] == box.limits.max_bytes
    refused(box.send(parts[1]), "attachment_too_large")
    assert box.count("attachment_chunks") == 0 and box.files() == []


def test_random_bytes_with_a_matching_hash_are_refused_by_their_type(box: Box) -> None:
    garbage = random.Random(1).randbytes(5000)
    for part in chunks(garbage)[:-1]:
        ok(box.send(part))
    outcome = refused(box.send(chunks(garbage)[-1]), "attachment_type_refused")
    assert outcome.detail is not None and outcome.detail["allowed"] == ["image/jpeg", "image/png"]
    assert outcome.message_en == "unsupported file type for the inspection photo: only image/jpeg, image/png"
    assert box.files() == [] and box.count("attachments") == 0


@pytest.mark.parametrize(
    ("purpose", "content"),
    [
        ("signature", jpeg_bytes(seed=5)),  # a photo is not a signature
        ("photo", SIGNATURE_SVG),  # nor a drawing a photo
        ("signature", SIGNATURE_SVG.replace(b"<path", b"<script>alert(1)</script><path")),
        ("signature", SIGNATURE_SVG.replace(b'fill="none"/>', b'fill="none" onload="alert(1)"/>', 1)),
        ("signature", SIGNATURE_SVG.replace(b'stroke="#000"', b'stroke="url(https://x.example/a)"')),
        (
            "signature",
            b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaa">]>'
            b'<svg xmlns="http://www.w3.org/2000/svg"><title>&a;</title></svg>',
        ),
        ("signature", b'<svg xmlns="http://www.w3.org/2000/svg"><image href="file:///etc/passwd"/></svg>'),
        ("photo", png_bytes()[:-20]),  # truncated: no IEND
        ("photo", jpeg_bytes()[:-2]),  # no end-of-image marker
    ],
)
def test_a_file_that_is_not_what_the_purpose_takes_is_refused(box: Box, purpose: str, content: bytes) -> None:
    outcome = box.send(chunks(content, purpose=purpose, size=len(content))[0])
    refused(outcome, "attachment_type_refused")
    assert box.files() == []


def test_missing_chunks_keep_the_upload_open_until_it_expires(box: Box) -> None:
    parts = chunks(jpeg_bytes(), size=3000)
    assert len(parts) >= 3
    ok(box.send(parts[0]))
    ok(box.send(parts[2]))
    assert box.count("attachment_chunks") == 2 and box.count("attachments") == 0
    box.now += timedelta(seconds=box.limits.incomplete_seconds + 1)
    outcome = refused(box.send(parts[1]), "attachment_incomplete")
    assert "2" in outcome.message_en  # how many chunks came
    assert box.count("attachment_chunks") == 0 and box.files() == []


def test_a_chunk_that_disagrees_with_its_upload_is_refused_alone(box: Box) -> None:
    photo = jpeg_bytes()
    parts = chunks(photo, size=5000)
    ok(box.send(parts[0]))
    wrong = {**parts[1], "asn": "ASN-OTHER"}
    outcome = refused(box.send(wrong), "attachment_mismatch")
    assert outcome.detail is not None and outcome.detail["fields"] == ["ref"]
    other_supplier = refused(box.send({**parts[1], "supplier": "sup-2"}), "attachment_mismatch")
    assert other_supplier.detail is not None and other_supplier.detail["fields"] == ["supplier"]
    conflict = {**parts[1], "data": base64.b64encode(b"x" * len(base64.b64decode(parts[1]["data"]))).decode()}
    ok(box.send(parts[1]))
    refused(box.send(conflict), "attachment_chunk_conflict")
    for part in parts[2:]:
        ok(box.send(part))
    assert box.count("attachments") == 1
    box.assert_consistent()


def test_chunks_that_hold_more_than_the_declared_size_refuse_the_upload(box: Box) -> None:
    content = png_bytes()
    parts = chunks(content, size=len(content) // 2 + 1, declared_size=len(content) - 5)
    ok(box.send(parts[0]))
    refused(box.send(parts[1]), "attachment_size_mismatch")
    assert box.count("attachment_chunks") == 0 and box.files() == []


def test_a_terminal_may_keep_only_so_many_uploads_open(box: Box) -> None:
    for n in range(box.limits.max_open):
        ok(box.send(chunks(jpeg_bytes(), f"open-{n}", size=3000)[0]))
    refused(box.send(chunks(jpeg_bytes(), "one-too-many", size=3000)[0]), "attachment_too_many_open")
    ok(box.send(chunks(jpeg_bytes(), "other-device", size=3000)[0], device="pda-2"))


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"data": "not base64!"}, "base64"),
        ({"data": "===="}, "base64"),
        ({"seq": 3, "count": 3}, "outside"),
        ({"count": 5000, "size": 10}, "cannot hold"),
        ({"size": 1}, "larger than the whole file"),
        ({"asn": None}, "exactly one"),
        ({"supplier": None}, "needs its supplier"),
        ({"asn": None, "draft": 5}, "supplier goes with asn only"),
        ({"supplier": "has space"}, "supplier"),
        ({"draft": 5}, "exactly one"),
        ({"sha256": "ABC"}, "sha256"),
        ({"purpose": "selfie"}, "purpose"),
        ({"attachment": "../../etc/passwd"}, "attachment"),
        ({"colour": "red"}, "colour"),
        ({"seq": -1}, "seq"),
    ],
)
def test_garbage_chunks_are_refused_before_the_writer(box: Box, change: dict[str, Any], words: str) -> None:
    data = {**chunks(png_bytes(), size=100)[0], **change}
    data = {k: v for k, v in data.items() if v is not None}
    outcome = box.send(data)
    assert isinstance(outcome, Rejection), outcome
    assert outcome.code == "invalid_data" and words in outcome.message_en, outcome.message_en
    assert box.count("attachment_uploads") == 0


def test_a_box_without_the_setting_refuses_attachments() -> None:
    part = chunks(png_bytes())[0]
    payload = json.dumps({"id": "x", "ts": "2024-06-01T10:00:00+08:00", "data": part}).encode()
    outcome = decode_event("pda-1", "attachment", payload, kinds=device_event_kinds(), options=DecodeOptions())
    assert isinstance(outcome, Rejection) and "not configured" in outcome.message_en


def test_the_box_settings_give_the_limits(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, attachment_max_bytes=2048, attachment_incomplete_hours=2)
    limits = decode_options(settings).extra[OPTIONS_KEY]
    assert limits == AttachmentLimits(str(tmp_path / ATTACHMENTS_DIR), 2048, 7200, 16)


# --- crashes: a file is linked only when whole, the sweep removes the rest -----------------------------------


def test_a_commit_that_fails_after_the_file_was_written_leaves_it_unlinked_and_the_resend_stores_it(
    box: Box,
) -> None:
    photo = jpeg_bytes()
    parts = chunks(photo, size=8192)
    for part in parts[:-1]:
        ok(box.send(part))
    # The writer ran the last chunk but its group commit failed (power cut, disk full): all of it rolls back.
    box.conn.execute("BEGIN IMMEDIATE")
    decoded = decode_event(
        "pda-1",
        "attachment",
        json.dumps({"id": "last", "ts": "2024-06-01T10:00:00+08:00", "data": parts[-1]}).encode(),
        kinds=device_event_kinds(),
        options=box.options(),
    )
    assert isinstance(decoded, DecodedEvent) and decoded.job is not None
    ctx = PostingContext(now=box.now, business_date=box.now.date(), rules=RULES)
    ok(run_event_job(box.conn, ctx, event_key("pda-1", "last"), "attachment", decoded.job.fn, decoded.job.args))
    box.conn.execute("ROLLBACK")
    assert box.count("attachments") == 0 and len(box.files()) == 1  # whole, but nothing names it
    (box.root / TEMP_DIR / "half.part").write_bytes(b"\xff\xd8 half a photo")

    box.conn.execute("BEGIN IMMEDIATE")
    swept = sweep_attachments(box.conn, str(box.root), box.now, box.limits.incomplete_seconds)
    box.conn.execute("COMMIT")
    assert swept == {"expired": 0, "temp_files": 1, "orphan_files": 1}
    assert box.files() == []

    stored = ok(box.send(parts[-1], event_id="last"))  # the terminal resends: no answer was kept
    assert stored.detail is not None and "stored" in stored.detail
    box.assert_consistent()


def test_sweep_keeps_linked_files_and_expires_stale_uploads(box: Box) -> None:
    for part in chunks(png_bytes(), "kept"):
        ok(box.send(part))
    ok(box.send(chunks(jpeg_bytes(), "stale", size=3000)[0]))
    box.conn.execute("BEGIN IMMEDIATE")
    later = box.now + timedelta(hours=2)
    swept = sweep_attachments(box.conn, str(box.root), later, box.limits.incomplete_seconds)
    box.conn.execute("COMMIT")
    assert swept == {"expired": 1, "temp_files": 0, "orphan_files": 0}
    assert len(box.files()) == 1
    box.assert_consistent()


def test_a_write_that_fails_rolls_the_chunk_back_and_the_resend_succeeds(box: Box) -> None:
    box.root.parent.mkdir(parents=True, exist_ok=True)
    box.root.write_bytes(b"not a folder")  # the disk is in trouble: the file cannot be written
    photo = png_bytes()
    with pytest.raises(OSError):
        box.send(chunks(photo)[0], event_id="only")
    assert box.count("attachment_uploads") == 0 and box.count("event_outcomes") == 0
    box.root.unlink()
    ok(box.send(chunks(photo)[0], event_id="only"))
    box.assert_consistent()


# --- sniffing ----------------------------------------------------------------------------------------------------


def test_sniffing_checks_structure_not_only_the_magic_bytes() -> None:
    png = png_bytes()
    assert sniff_mime(png) == "image/png"
    assert sniff_mime(jpeg_bytes()) == "image/jpeg"
    assert sniff_mime(SIGNATURE_SVG) == "image/svg+xml"
    damaged = bytearray(png)
    damaged[40] ^= 0xFF  # inside a chunk: its CRC no longer fits
    assert sniff_mime(bytes(damaged)) is None
    assert sniff_mime(b"\x89PNG\r\n\x1a\n") is None
    assert sniff_mime(b"\xff\xd8\xff\xe0" + b"\x00" * 50 + b"\xff\xd9") is None
    assert sniff_mime(png + b"trailing") is None
    # A PNG whose first chunk is not IHDR
    chunk = b"tEXt" + b"a\x00b"
    fake = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 3) + chunk + struct.pack(">I", zlib.crc32(chunk))
    assert sniff_mime(fake) is None
    assert sniff_mime(b"") is None
    assert sniff_mime(b"<svg") is None


# --- hypothesis: garbage chunks of every kind ---------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_sniffing_never_raises_on_any_bytes(content: bytes) -> None:
    assert sniff_mime(content) in (None, "image/png", "image/jpeg", "image/svg+xml")


@settings(max_examples=200, deadline=None)
@given(png_prefix=st.integers(0, 200), noise=st.binary(max_size=64), at=st.integers(0, 400))
def test_damaged_images_are_never_taken_for_whole_ones(png_prefix: int, noise: bytes, at: int) -> None:
    png = png_bytes(8, 8)
    damaged = png[: max(0, len(png) - png_prefix - 1)] + noise if png_prefix else png[:at] + noise + png[at + 1 :]
    if damaged != png:
        assert sniff_mime(damaged) is None  # a cut or a changed byte breaks a length, a CRC or the IEND chunk


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=8,
)
CHUNK_FIELDS = (
    "attachment",
    "purpose",
    "draft",
    "asn",
    "supplier",
    "receipt",
    "seq",
    "count",
    "size",
    "sha256",
    "data",
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    raw=st.binary(max_size=300)
    | st.dictionaries(st.sampled_from(CHUNK_FIELDS) | st.text(max_size=8), JSON_VALUES, max_size=12).map(
        lambda d: json.dumps({"id": "g", "ts": "2024-06-01T10:00:00+08:00", "data": d}).encode()
    )
)
def test_decoding_any_attachment_payload_never_raises(box: Box, raw: bytes) -> None:
    outcome = decode_event("pda-1", "attachment", raw, kinds=device_event_kinds(), options=box.options())
    assert isinstance(outcome, Rejection | DecodedEvent)


_DEVICES = itertools.count()


@st.composite
def garbage_chunk(draw: st.DrawFn, files: list[bytes]) -> dict[str, Any]:
    """Chunks of a few real files, mixed with wrong numbers, sizes, digests, bytes and references."""
    content = draw(st.sampled_from(files))
    count = draw(st.integers(1, 4))
    size = draw(st.sampled_from([len(content), len(content) + 1, max(count, len(content) - 3), count]))
    seq = draw(st.integers(0, count - 1))
    piece = -(-len(content) // count)
    honest = content[seq * piece : (seq + 1) * piece] or b"\x00"
    data = draw(st.sampled_from([honest, honest[:-1] or b"\x01", draw(st.binary(min_size=1, max_size=40))]))
    digest = draw(st.sampled_from([hashlib.sha256(content).hexdigest(), hashlib.sha256(data).hexdigest()]))
    return {
        "attachment": draw(st.sampled_from(["a", "b", "c"])),
        "purpose": draw(st.sampled_from(["photo", "signature"])),
        draw(st.sampled_from(["draft", "asn", "receipt"])): draw(st.sampled_from([1, 2])),
        "seq": seq,
        "count": count,
        "size": max(size, count, len(data)),
        "sha256": digest,
        "data": base64.b64encode(data).decode(),
    }


FILES = [png_bytes(6, 5, seed=1), SIGNATURE_SVG, jpeg_bytes(16, 16, seed=2)]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(garbage_chunk(FILES), min_size=1, max_size=25))
def test_any_sequence_of_garbage_chunks_leaves_only_whole_checked_files(
    box: Box, sequence: list[dict[str, Any]]
) -> None:
    device = f"dev-{next(_DEVICES)}"  # one device per example: the database is shared
    for data in sequence:
        if "asn" in data:
            data["asn"] = f"ASN-{data['asn']}"
            data["supplier"] = f"sup-{data['seq'] % 2 + 1}"  # the same ASN id from two suppliers now and then
        outcome = box.send(data, device=device)
        assert isinstance(outcome, JobOutcome | Rejection)
        if isinstance(outcome, JobOutcome) and not outcome.ok:
            assert outcome.code.startswith("attachment_") and outcome.message and outcome.message_en
    box.assert_consistent()
    stored = list_attachments(box.conn, device=device, limit=1000)
    for row in stored:
        assert attachment_path(box.root, row["sha256"], row["mime"]).read_bytes() in FILES
    event("some stored" if stored else "none stored")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    which=st.sampled_from(range(len(FILES))),
    size=st.integers(1, 300),
    order=st.randoms(use_true_random=False),
    repeats=st.lists(st.integers(0, 1000), max_size=6),
)
def test_a_whole_file_in_any_order_with_resends_is_stored_exactly_once(
    box: Box, which: int, size: int, order: random.Random, repeats: list[int]
) -> None:
    device = f"dev-{next(_DEVICES)}"
    content = FILES[which]
    parts = chunks(content, "whole", purpose="signature" if which == 1 else "photo", size=size)
    sequence = list(range(len(parts)))
    order.shuffle(sequence)
    sequence += [sequence[r % len(sequence)] for r in repeats]
    outcomes = [box.send(parts[i], device=device, event_id=f"{device}-{n}") for n, i in enumerate(sequence)]
    assert all(isinstance(o, JobOutcome) and o.ok for o in outcomes), outcomes
    rows = list_attachments(box.conn, device=device)
    assert len(rows) == 1
    assert attachment_path(box.root, rows[0]["sha256"], rows[0]["mime"]).read_bytes() == content


def test_files_sent_before_the_supplier_was_named_get_it_where_the_asn_id_is_one_suppliers(box: Box) -> None:
    """The backfill of migration 0006: an ASN id only one supplier used gets that supplier, a shared one none."""
    from edge.db import _split_statements

    conn = box.conn
    conn.execute("BEGIN")
    conn.execute("INSERT INTO suppliers (id, name) VALUES ('sup-bev', 'b'), ('sup-cold', 'c')")
    conn.execute(
        "INSERT INTO delivery_notes (supplier, nonce, note_hash, asn_id, po_id, key_id, issued_at, first_seen)"
        " VALUES ('sup-bev', 'n1', 'h1', 'DN-B-51', 1, 'k', 't', 't'), ('sup-cold', 'n2', 'h2', 'DN-B-51', 1, 'k',"
        " 't', 't'), ('sup-bev', 'n3', 'h3', 'DN-B-52', 1, 'k', 't', 't')"
    )
    for n, ref in enumerate(("DN-B-51", "DN-B-52", "DN-X")):
        conn.execute(
            "INSERT INTO attachments (device, attachment, purpose, ref_kind, ref, sha256, size, mime, taken_at,"
            " stored_at) VALUES ('pda-1', ?, 'photo', 'asn', ?, ?, 1, 'image/png', 't', 't')",
            (f"old-{n}", ref, f"{n}" * 64),
        )
    sql = (Path(__file__).parents[3] / "edge/devices/migrations/0006_attachment_supplier.sql").read_text("utf-8")
    for statement in _split_statements(sql):
        if statement.lstrip("-\n ").startswith("UPDATE") or "\nUPDATE" in statement:
            conn.execute(statement)
    conn.execute("COMMIT")
    rows = conn.execute("SELECT ref, supplier FROM attachments ORDER BY id").fetchall()
    assert [tuple(r) for r in rows] == [("DN-B-51", None), ("DN-B-52", "sup-bev"), ("DN-X", None)]
