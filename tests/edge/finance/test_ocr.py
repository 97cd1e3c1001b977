"""Real OCR (rapidocr-onnxruntime) of licence images rendered by tools/render_licence.py, and the decoding of
uploads that are not what they claim to be. The engine is built once for the module."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from edge.finance.errors import InvalidPaper
from edge.finance.ocr import MAX_SIDE, OcrEngine, load_pages
from edge.finance.papers import FileType, PaperKind, read_fields, sniff_upload
from edge.finance.uscc import validate_uscc
from tools.render_licence import PaperFacts, render

Y_CODE = "Y1310115MA1K3YJ71X"  # a code stdnum refuses (letter first) but the standard allows


@pytest.fixture(scope="module")
def engine() -> Iterator[OcrEngine]:
    yield OcrEngine()


def test_business_licence_png_reads_name_code_address_and_long_term(engine: OcrEngine) -> None:
    facts = PaperFacts(
        name="杭州西湖农产品专业合作社",
        credit_code=Y_CODE,
        address="浙江省杭州市西湖区文三路90号",
        legal_rep="李娜",
        established=date(2016, 3, 8),
        valid_from=date(2016, 3, 8),
        valid_to=None,
    )
    data = render("business_licence", facts, width=1000)
    result = engine.read(data, sniff_upload(data, 10**7))
    reading = read_fields(list(result.lines))
    f = reading.fields
    assert reading.detected_kind is PaperKind.BUSINESS_LICENCE
    assert f.name == facts.name
    assert validate_uscc(f.credit_code or "") == Y_CODE
    assert f.address == facts.address
    assert f.legal_rep == "李娜"
    assert (f.valid_from, f.valid_to, f.long_term) == (date(2016, 3, 8), None, True)
    assert result.pages == 1 and all(len(line.box) == 4 for line in result.lines)


def test_food_licence_pdf_reads_validity_and_licence_number(engine: OcrEngine) -> None:
    facts = PaperFacts(valid_to=date(2027, 5, 9), licence_no="JY13101150012345")
    data = render("food_licence", facts, fmt="pdf", width=1000)
    assert sniff_upload(data, 10**7) is FileType.PDF
    result = engine.read(data, FileType.PDF)
    reading = read_fields(list(result.lines))
    f = reading.fields
    assert reading.detected_kind is PaperKind.FOOD_LICENCE
    assert f.name == facts.name
    assert f.credit_code == facts.credit_code
    assert f.address == facts.address
    assert f.valid_to == date(2027, 5, 9)
    assert f.licence_no == "JY13101150012345"


# --- uploads that do not decode (no OCR needed) ---


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_truncated_png_is_refused_clearly() -> None:
    data = render("business_licence", width=600)
    with pytest.raises(InvalidPaper) as caught:
        load_pages(data[: len(data) // 2], FileType.PNG)
    assert "损坏" in caught.value.message and "truncated" in caught.value.message_en


def test_huge_image_dimensions_are_refused_before_decoding() -> None:
    with pytest.raises(InvalidPaper) as caught:
        load_pages(_png_header(8000, 6000), FileType.PNG)  # 48 megapixels, header only
    assert caught.value.detail["reason"] == "pixels"
    with pytest.raises(InvalidPaper):  # beyond Pillow's own decompression-bomb limit
        load_pages(_png_header(100_000, 100_000), FileType.PNG)


def test_a_png_posing_as_jpeg_is_refused() -> None:
    with pytest.raises(InvalidPaper):
        load_pages(render("bank_account", width=400), FileType.JPEG)


def test_pdf_with_junk_is_refused() -> None:
    with pytest.raises(InvalidPaper):
        load_pages(b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF", FileType.PDF)


def test_large_images_are_scaled_down_before_ocr() -> None:
    out = io.BytesIO()
    Image.new("RGB", (4000, 1000), "white").save(out, format="PNG")
    (page,) = load_pages(out.getvalue(), FileType.PNG)
    assert max(page.size) == MAX_SIDE


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"%PDF-1.4\n"]),
    st.binary(max_size=2000),
)
def test_garbage_behind_a_magic_number_is_invalid_paper_never_a_crash(head: bytes, tail: bytes) -> None:
    data = head + tail
    file_type = sniff_upload(data, 10**6)
    try:
        pages = load_pages(data, file_type)
    except InvalidPaper as err:
        assert err.message and err.message_en and err.status == 422
    else:
        assert pages and all(p.mode == "RGB" for p in pages)
