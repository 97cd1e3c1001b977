"""Delivery-note QR codes read from photos: the note's text, or a clear refusal for anything else."""

from __future__ import annotations

import io

import pytest
import segno
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from edge.devices.qr_image import QrImageError, read_delivery_note


def png(*texts: str, rotate: int = 0) -> bytes:
    images = []
    for text in texts:
        buffer = io.BytesIO()
        segno.make(text, error="m").save(buffer, kind="png", scale=5, border=4)
        images.append(Image.open(io.BytesIO(buffer.getvalue())).convert("L"))
    sheet = Image.new("L", (sum(i.width for i in images) + 40 * len(images), max(i.height for i in images)), 255)
    x = 0
    for image in images:
        sheet.paste(image, (x, 0))
        x += image.width + 40
    out = io.BytesIO()
    sheet.rotate(rotate, expand=True, fillcolor=255).save(out, format="JPEG" if rotate else "PNG")
    return out.getvalue()


def test_the_notes_text_is_read_from_a_photo_even_turned() -> None:
    assert read_delivery_note(png("SBDN1:ABC 123")) == "SBDN1:ABC 123"
    assert read_delivery_note(png("SBDN1:ABC 123", rotate=17)) == "SBDN1:ABC 123"


def test_other_codes_beside_the_note_are_ignored_and_two_notes_are_refused() -> None:
    assert read_delivery_note(png("https://shop.example/", "SBDN1:X")) == "SBDN1:X"
    with pytest.raises(QrImageError, match="2 delivery-note QR codes"):
        read_delivery_note(png("SBDN1:X", "SBDN1:Y"))
    with pytest.raises(QrImageError, match="no delivery-note QR code"):
        read_delivery_note(png("https://shop.example/"))


@given(st.binary(max_size=2048))
def test_garbage_is_refused_with_a_clear_error(data: bytes) -> None:
    with pytest.raises(QrImageError) as refused:
        read_delivery_note(data)
    assert refused.value.detail["field"] == "photo" and refused.value.message and refused.value.message_en
