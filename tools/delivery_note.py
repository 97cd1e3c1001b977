"""A supplier's delivery-note tool: make a signing key pair, sign a delivery note, print its QR code.

    python -m tools.delivery_note keygen --out sup1.pem
    python -m tools.delivery_note sign --key sup1.pem --supplier sup1 --asn ASN-1 --po PO20261125-000001 \\
        --line 6901234567908,2 --line 6920000000012,24,L2611,2026-12-01 --png note.png

`keygen` writes the private key (PKCS#8 PEM; keep it at the supplier) and prints the public key to register on
the box (`storebox supplier signing-key set SUP --public-key ...`). `sign` prints the QR text
(docs/scan-to-receive.md) and the QR version it needs at ECC M. The tests and the benchmark use the functions.
"""

from __future__ import annotations

import argparse
import base64
import secrets
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path

import segno
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.devices.delivery_note import (
    DeliveryNote,
    NoteLine,
    encode_note,
    generate_key_pair,
    key_id,
    public_key_text,
)
from edge.ledger.errors import DomainError


def new_nonce() -> str:
    """96 random bits, base64url: unique per note."""
    return base64.urlsafe_b64encode(secrets.token_bytes(12)).decode()


def private_key_pem(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 private key")
    return key


def public_key_of(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def sign_note(
    private_key: Ed25519PrivateKey,
    *,
    supplier: str,
    asn_id: str,
    po_no: str,
    lines: Iterable[NoteLine],
    issued_at: datetime,
    nonce: str | None = None,
) -> str:
    """The QR text of a delivery note signed with `private_key`."""
    note = DeliveryNote(
        supplier=supplier,
        key_id=key_id(public_key_of(private_key)),
        asn_id=asn_id,
        po_no=po_no,
        issued_at=issued_at.astimezone(UTC).replace(microsecond=0),
        nonce=nonce or new_nonce(),
        lines=tuple(lines),
    )
    return encode_note(note, private_key)


def qr_code(text: str) -> segno.QRCode:
    """The QR code of a note at ECC level M (segno picks the smallest version; alphanumeric mode)."""
    return segno.make_qr(text, error="m", boost_error=False)


def parse_line(text: str) -> NoteLine:
    """`ITEM,QTY[,LOT[,EXPIRY[,UNIT]]]` with EXPIRY as YYYY-MM-DD (empty fields allowed)."""
    parts = text.split(",")
    if not 2 <= len(parts) <= 5:
        raise ValueError(f"line {text!r}: expected ITEM,QTY[,LOT[,EXPIRY[,UNIT]]]")
    parts += [""] * (5 - len(parts))
    item, qty, lot, expiry, unit = (p.strip() for p in parts)
    return NoteLine(
        item=item,
        qty=int(qty),
        lot=lot or None,
        expiry=date.fromisoformat(expiry) if expiry else None,
        unit=unit or None,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.delivery_note", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    keygen = commands.add_parser("keygen", help="make a signing key pair")
    keygen.add_argument("--out", type=Path, required=True, help="where to write the private key (PEM)")
    sign = commands.add_parser("sign", help="sign a delivery note and print its QR text")
    sign.add_argument("--key", type=Path, required=True, help="the supplier's private key (PEM)")
    sign.add_argument("--supplier", required=True, help="the supplier's id on the box")
    sign.add_argument("--asn", required=True, help="the ASN id")
    sign.add_argument("--po", required=True, help="the purchase order number (doc_no)")
    sign.add_argument("--line", action="append", required=True, help="ITEM,QTY[,LOT[,EXPIRY[,UNIT]]]")
    sign.add_argument("--issued-at", help="RFC 3339 time of issue (default now)")
    sign.add_argument("--nonce", help="the note's nonce (default: 12 random bytes, base64url)")
    sign.add_argument("--png", type=Path, help="also write the QR code as a PNG")
    sign.add_argument("--svg", type=Path, help="also write the QR code as an SVG")
    args = parser.parse_args(argv)
    if args.command == "keygen":
        private, public = generate_key_pair()
        if args.out.exists():
            print(f"{args.out} exists; not overwriting a key", file=sys.stderr)
            return 2
        args.out.write_bytes(private_key_pem(private))
        args.out.chmod(0o600)
        print(f"key id: {key_id(public)}")
        print(f"public key: {public_key_text(public)}")
        return 0
    try:
        private_key = load_private_key(args.key.read_bytes())
        lines = [parse_line(text) for text in args.line]
        issued = datetime.fromisoformat(args.issued_at) if args.issued_at else datetime.now(UTC)
        if issued.tzinfo is None:
            raise ValueError("--issued-at needs a UTC offset")
        text = sign_note(
            private_key,
            supplier=args.supplier,
            asn_id=args.asn,
            po_no=args.po,
            lines=lines,
            issued_at=issued,
            nonce=args.nonce,
        )
    except (OSError, ValueError) as exc:
        print(f"delivery_note: {exc}", file=sys.stderr)
        return 2
    except DomainError as exc:  # the format's own checks name the field
        print(f"delivery_note: {exc.message_en}", file=sys.stderr)
        return 2
    qr = qr_code(text)
    if args.png:
        qr.save(str(args.png), scale=4)
    if args.svg:
        qr.save(str(args.svg), scale=4)
    print(text)
    print(f"QR version {qr.version} at ECC M, {len(text)} characters", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
