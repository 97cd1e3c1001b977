"""Delivery-note QR codes: the format, signatures, forged and tampered notes, garbage, keys, and QR size."""

from __future__ import annotations

import json
import random
import re
import sqlite3
import zlib
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import segno
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.devices.delivery_note import (
    BASE45,
    MAX_BODY,
    MAX_TEXT,
    PREFIX,
    SIGNED_PREFIX,
    DeliveryNote,
    NoteBadSignature,
    NoteError,
    NoteKeyRevoked,
    NoteLine,
    NoteMalformed,
    NoteUnknownKey,
    SigningKeyError,
    base45_decode,
    base45_encode,
    check_note,
    encode_note,
    generate_key_pair,
    key_id,
    list_signing_keys,
    note_body,
    parse_note,
    parse_public_key,
    public_key_text,
    revoke_signing_key,
    set_signing_key,
    verify_note,
)
from edge.ledger.masterdata import ean13_check_digit
from tests.edge.devices.receiving_store import NOW, in_tx, open_store
from tools.delivery_note import qr_code, sign_note

PRIVATE, PUBLIC = generate_key_pair()
LINES = (
    NoteLine("6901234567908", 2),
    NoteLine("6920000000012", 24, "M2611", date(2026, 12, 2)),
    NoteLine("F1", 10, "F/2611-a", date(2027, 5, 24), "袋"),
)


def a_note(**changes: object) -> DeliveryNote:
    fields: dict[str, object] = {
        "supplier": "sup1",
        "key_id": key_id(PUBLIC),
        "asn_id": "ASN-1",
        "po_no": "PO20261125-000001",
        "issued_at": datetime(2026, 11, 25, 7, 30, tzinfo=UTC),
        "nonce": "n0nce-AbCdEfGh",
        "lines": LINES,
    }
    fields.update(changes)
    return DeliveryNote(**fields)  # type: ignore[arg-type]


def repack(text: str, body: bytes, signature: bytes | None = None) -> str:
    """The note's text with another body (and the original signature unless given)."""
    raw = base45_decode(text[len(PREFIX) :])
    return PREFIX + base45_encode((signature or raw[:64]) + zlib.compress(body))


def test_base45_matches_the_rfc_9285_examples() -> None:
    for raw, encoded in (
        (b"AB", "BB8"),
        (b"Hello!!", "%69 VD92EX0"),
        (b"base-45", "UJCLQE7W581"),
        (b"ietf!", "QED8WEX0"),
    ):
        assert base45_encode(raw) == encoded
        assert base45_decode(encoded) == raw
    for bad in ("GGW", "A", "abc", "ÄÄÄ"):  # 65535 < "GGW"; a dangling character; outside the alphabet
        with pytest.raises(ValueError):
            base45_decode(bad)


@given(st.binary(max_size=300))
def test_base45_round_trips_any_bytes_in_the_qr_alphanumeric_set(data: bytes) -> None:
    text = base45_encode(data)
    assert set(text) <= set(BASE45)
    assert base45_decode(text) == data


def test_a_signed_note_reads_back_exactly_and_verifies() -> None:
    text = encode_note(a_note(), PRIVATE)
    assert text.startswith("SBDN1:") and set(text[6:]) <= set(BASE45)
    signed = parse_note(text)
    assert signed.note == a_note()
    verify_note(signed, PUBLIC)
    body = json.loads(signed.body)
    assert list(body) == ["v", "s", "k", "a", "p", "t", "n", "l"]
    # Trailing empty fields of a line are left out; the unit comes last.
    assert body["l"] == [
        ["6901234567908", 2],
        ["6920000000012", 24, "M2611", "20261202"],
        ["F1", 10, "F/2611-a", "20270524", "袋"],
    ]
    assert body["t"] == int(datetime(2026, 11, 25, 7, 30, tzinfo=UTC).timestamp()) == 1795591800


def test_the_signature_covers_the_prefix_so_it_means_nothing_elsewhere() -> None:
    body = note_body(a_note())
    signed = parse_note(encode_note(a_note(), PRIVATE))
    assert signed.signature == PRIVATE.sign(SIGNED_PREFIX + body)
    assert signed.signature != PRIVATE.sign(body)


def test_a_note_signed_with_another_key_is_forged() -> None:
    other, _ = generate_key_pair()
    forged = parse_note(encode_note(a_note(), other))  # claims the real key's id
    with pytest.raises(NoteBadSignature) as caught:
        verify_note(forged, PUBLIC)
    assert caught.value.code == "note_bad_signature" and caught.value.status == 403
    assert "forged" in caught.value.message_en and "伪造" in caught.value.message


@pytest.mark.parametrize(
    "change",
    [
        {"po_no": "PO20261125-000002"},
        {"asn_id": "ASN-2"},
        {"supplier": "sup2"},
        {"nonce": "another-nonce"},
        {"issued_at": datetime(2026, 11, 25, 7, 31, tzinfo=UTC)},
        {"lines": (NoteLine("6901234567908", 20), *LINES[1:])},
        {"lines": (*LINES[:1], NoteLine("6920000000012", 24, "M2612", date(2026, 12, 2)), LINES[2])},
        {"lines": (*LINES[:1], NoteLine("6920000000012", 24, "M2611", date(2027, 12, 2)), LINES[2])},
        {"lines": LINES[:2]},
    ],
)
def test_a_tampered_field_breaks_the_signature(change: dict[str, object]) -> None:
    text = encode_note(a_note(), PRIVATE)
    tampered = repack(text, note_body(a_note(**change)))
    signed = parse_note(tampered)
    with pytest.raises(NoteBadSignature):
        verify_note(signed, PUBLIC)


@settings(max_examples=300, deadline=None)
@given(position=st.integers(min_value=len(PREFIX), max_value=10_000), replacement=st.sampled_from(BASE45))
def test_changing_any_character_of_the_text_is_refused_or_reads_the_same_signed_note(
    position: int, replacement: str
) -> None:
    text = encode_note(a_note(), PRIVATE)
    position %= len(text)
    if position < len(PREFIX) or text[position] == replacement:
        return
    changed = text[:position] + replacement + text[position + 1 :]
    try:
        signed = parse_note(changed)
        verify_note(signed, PUBLIC)
    except NoteError:
        return
    # The signature covers the note's content, not its compressed form: a few bits of a deflate stream carry
    # nothing (the padding after the last block, some header slack), so a change there still reads as the very
    # same signed note, and the receiving flow refuses it as a replay of its nonce. Anything else is refused.
    assert signed.body == parse_note(text).body


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(max_size=400)
    | st.text(alphabet=BASE45, max_size=400).map(lambda t: PREFIX + t)
    | st.binary(max_size=300).map(lambda b: PREFIX + base45_encode(b))
    | st.binary(min_size=64, max_size=64).flatmap(
        lambda sig: st.binary(max_size=200).map(lambda b: PREFIX + base45_encode(sig + zlib.compress(b)))
    )
)
def test_garbage_qr_text_is_refused_as_malformed(text: str) -> None:
    with pytest.raises(NoteMalformed) as caught:
        parse_note(text)
    assert caught.value.code == "note_malformed" and caught.value.message_en.startswith("delivery note QR code")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20) | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from("vskaptnlx"), inner, max_size=9),
    max_leaves=30,
)


@settings(max_examples=120, deadline=None)
@given(body=json_values)
def test_any_json_body_is_read_or_refused_as_malformed(body: object) -> None:
    text = PREFIX + base45_encode(b"\0" * 64 + zlib.compress(json.dumps(body).encode()))
    try:
        parse_note(text)
    except NoteMalformed:
        return


@settings(max_examples=200, deadline=None)
@given(
    index=st.integers(min_value=0, max_value=7),
    value=st.none() | st.integers() | st.text(max_size=80) | st.lists(st.integers(), max_size=3) | st.floats(),
)
def test_a_wrong_value_in_any_field_is_malformed_not_a_crash(index: int, value: object) -> None:
    body = json.loads(note_body(a_note()))
    body[list(body)[index]] = value
    text = repack(encode_note(a_note(), PRIVATE), json.dumps(body, ensure_ascii=False).encode())
    try:
        parse_note(text)
    except NoteMalformed:
        return


def test_structural_refusals_name_the_reason() -> None:
    text = encode_note(a_note(), PRIVATE)
    cases = {
        "SBDN2:" + text[6:]: "does not start with SBDN1:",
        text + "Z": "invalid base45",
        PREFIX + base45_encode(b"x" * 64): "too short",
        PREFIX + base45_encode(b"x" * 64 + b"not zlib"): "invalid compressed data",
        PREFIX + base45_encode(b"x" * 64 + zlib.compress(b"{}")[:-2]): "incomplete",
        PREFIX + base45_encode(b"x" * 64 + zlib.compress(b"[]") + b"!"): "trailing",
        PREFIX + "0" * 5000: "longer than",
    }
    for bad, reason in cases.items():
        with pytest.raises(NoteMalformed) as caught:
            parse_note(bad)
        assert reason in caught.value.message_en, (reason, caught.value.message_en)


def test_a_compression_bomb_stops_at_the_body_limit() -> None:
    bomb = PREFIX + base45_encode(b"x" * 64 + zlib.compress(b" " * (MAX_BODY * 20), 9))
    assert len(bomb) < MAX_TEXT  # 1.3 MB inflated from what fits one QR code
    with pytest.raises(NoteMalformed, match="too large"):
        parse_note(bomb)


def test_line_fields_are_checked() -> None:
    for line, what in (
        (["6901234567908"], "expected [item, qty"),
        (["6901234567908", 0], "quantity"),
        (["6901234567908", 1.5], "quantity"),
        (["6901234567908", True], "quantity"),
        (["has space", 1], "item code"),
        (["A1", 1, "lot with space"], "lot"),
        (["A1", 1, "L1", "2026-12-01"], "expiry"),
        (["A1", 1, "L1", "20261301"], "expiry"),
        (["A1", 1, None, None, ""], "unit"),
    ):
        body = json.loads(note_body(a_note()))
        body["l"] = [line]
        with pytest.raises(NoteMalformed, match=re.escape(what)):
            parse_note(repack(encode_note(a_note(), PRIVATE), json.dumps(body).encode()))


def test_encoding_refuses_a_note_the_box_would_not_read() -> None:
    with pytest.raises(NoteMalformed, match="nonce"):
        encode_note(a_note(nonce="short"), PRIVATE)
    with pytest.raises(NoteMalformed, match="lines"):
        encode_note(a_note(lines=()), PRIVATE)


def gtin(rng: random.Random, prefix: str) -> str:
    digits = prefix + "".join(rng.choice("0123456789") for _ in range(12 - len(prefix)))
    return digits + str(ean13_check_digit(digits))


def fifty_lines(seed: int = 7) -> tuple[NoteLine, ...]:
    """A hard 50-line note: GTIN-13s with 9 random digits, random 4-digit lots, expiries spread over 300 days."""
    rng = random.Random(seed)
    return tuple(
        NoteLine(
            gtin(rng, "690"),
            rng.randint(1, 200),
            f"L2026{rng.randint(1000, 9999)}",
            date(2027, 1, 1) + timedelta(days=rng.randint(0, 300)),
        )
        for _ in range(50)
    )


def typical_lines(seed: int = 7) -> tuple[NoteLine, ...]:
    """A typical one: three brand owners' GTIN prefixes, lots by production day, the same few expiries."""
    rng = random.Random(seed)
    return tuple(
        NoteLine(
            gtin(rng, rng.choice(["6901234", "6920152", "6954767"])),
            rng.choice([6, 12, 24, 48, 60]),
            f"{rng.choice(['20261118', '20261120', '20261121'])}A",
            date(2027, 5, 18) + timedelta(days=rng.choice([0, 2, 3])),
        )
        for _ in range(50)
    )


@pytest.mark.parametrize(("lines", "at_most"), [(fifty_lines(), 25), (typical_lines(), 22)])
def test_a_fifty_line_note_fits_a_qr_code_of_version_25_at_ecc_m(lines: tuple[NoteLine, ...], at_most: int) -> None:
    text = sign_note(
        PRIVATE,
        supplier="sup-huarun-01",
        asn_id="ASN-2026-000123",
        po_no="PO20261125-000001",
        lines=lines,
        issued_at=NOW,
        nonce="AbCdEfGhIjKlMnOp",
    )
    code = qr_code(text)
    assert code.mode == "alphanumeric" and code.error == "M"
    assert code.version <= at_most, (code.version, len(text))
    assert segno.make(text, error="m").version == code.version
    assert parse_note(text).note.lines == lines


# --- keys on the box --------------------------------------------------------------------------


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = open_store(tmp_path / "store.db")
    yield connection
    connection.close()


def test_public_keys_are_read_in_every_usual_form() -> None:
    raw = PUBLIC
    pem = (
        serialization.load_der_public_key(bytes.fromhex("302a300506032b6570032100") + raw).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode()
    import base64

    for text in (public_key_text(raw), base64.b64encode(raw).decode(), raw.hex(), raw.hex().upper(), pem, f"  {pem}\n"):
        assert parse_public_key(text) == raw
    for garbage in ("", "abc", "0" * 63, base64.b64encode(raw + b"x").decode(), "-----BEGIN PUBLIC KEY-----\nxx"):
        with pytest.raises(SigningKeyError):
            parse_public_key(garbage)


def test_signing_keys_are_registered_once_replaced_and_revoked_for_good(conn: sqlite3.Connection) -> None:
    first = in_tx(conn, set_signing_key, "sup1", public_key_text(PUBLIC), "manager", NOW)
    assert (first.key_id, first.active, first.added_by) == (key_id(PUBLIC), True, "manager")
    assert in_tx(conn, set_signing_key, "sup1", PUBLIC.hex(), "other", NOW + timedelta(1)) == first
    _, second_public = generate_key_pair()
    second = in_tx(conn, set_signing_key, "sup1", public_key_text(second_public), "manager", NOW, True)
    keys = {k.key_id: k for k in list_signing_keys(conn, "sup1")}
    assert keys[second.key_id].active and not keys[first.key_id].active
    with pytest.raises(SigningKeyError, match="revoked"):
        in_tx(conn, set_signing_key, "sup1", public_key_text(PUBLIC), "manager", NOW)
    with pytest.raises(SigningKeyError, match="unknown supplier"):
        in_tx(conn, set_signing_key, "nobody", public_key_text(PUBLIC), "manager", NOW)
    revoked = in_tx(conn, revoke_signing_key, "sup1", second.key_id, "manager", NOW)
    assert revoked.revoked_by == "manager" and revoked.to_dict()["active"] is False
    actions = [r[0] for r in conn.execute("SELECT action FROM audit WHERE object = 'supplier:sup1' ORDER BY seq")]
    assert actions == [
        "supplier.signing_key.set",
        "supplier.signing_key.set",
        "supplier.signing_key.revoke",
        "supplier.signing_key.revoke",
    ]


def test_check_note_needs_the_suppliers_registered_active_key(conn: sqlite3.Connection) -> None:
    text = encode_note(a_note(), PRIVATE)
    with pytest.raises(NoteUnknownKey) as unknown:
        check_note(conn, text)
    assert unknown.value.detail == {"supplier": "sup1", "key_id": key_id(PUBLIC)}
    in_tx(conn, set_signing_key, "sup1", public_key_text(PUBLIC), "manager", NOW)
    assert check_note(conn, text).note == a_note()
    # The same key registered for another supplier does not make a note claiming sup1 pass as sup2's.
    with pytest.raises(NoteUnknownKey):
        check_note(conn, encode_note(a_note(supplier="sup2"), PRIVATE))
    in_tx(conn, revoke_signing_key, "sup1", key_id(PUBLIC), "manager", NOW)
    with pytest.raises(NoteKeyRevoked):
        check_note(conn, text)


# --- docs/scan-to-receive.md ------------------------------------------------------------------

DOC = Path(__file__).parents[3] / "docs" / "scan-to-receive.md"
FENCE = re.compile(r"^```(\w+) ([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def doc_blocks(language: str, info: str) -> list[str]:
    return [
        body for lang, tag, body in FENCE.findall(DOC.read_text("utf-8")) if (lang, tag.strip()) == (language, info)
    ]


def test_the_documented_test_vector_is_what_the_format_makes() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    (seed,) = doc_blocks("text", "private-key")
    (public_text,) = doc_blocks("text", "public-key")
    (body,) = doc_blocks("json", "body")
    (text,) = doc_blocks("text", "qr")
    private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed.strip()))
    public = parse_public_key(public_text.strip())
    assert public_key_text(public) == public_text.strip() and key_id(public) == "21fe31df"
    assert public.hex() == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"  # RFC 8032 test 1
    signed = parse_note(text.strip())
    verify_note(signed, public)
    assert signed.body == body.strip().encode()
    assert encode_note(signed.note, private) == text.strip()
    assert qr_code(text.strip()).version == 11
