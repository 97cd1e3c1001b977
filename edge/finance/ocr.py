"""On-device OCR of supplier papers (the edge around the pure edge/finance/papers.py).

RapidOCR (rapidocr-onnxruntime: PP-OCRv4 detection and recognition as ONNX models that ship in the wheel, so
nothing is downloaded) reads images; PDFs are rendered to images with pypdfium2 first. The engine loads its
models once (about a second) and is then reused; one OcrEngine per process, built by whoever owns it.
Calls are serialised: pdfium is not thread-safe, and two recognitions at once would only fight over two cores.
"""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass
from typing import Any

import pypdfium2 as pdfium  # type: ignore[import-untyped]
from PIL import Image, ImageOps, UnidentifiedImageError

from edge.finance.errors import InvalidPaper
from edge.finance.papers import FileType, OcrLine

MAX_PAGES = 3  # a paper is one page, a scan may add a back side; more pages are not read
MAX_PIXELS = 40_000_000  # larger images are refused before decoding (a 12 MP phone photo is fine)
MAX_SIDE = 2000  # images are scaled down to this longest side before OCR (the engine's own limit too)
PDF_DPI = 200


@dataclass(frozen=True, slots=True)
class OcrResult:
    lines: tuple[OcrLine, ...]
    pages: int
    seconds: float


def _unreadable(what: str, what_en: str, reason: str) -> InvalidPaper:
    return InvalidPaper(
        f"无法读取{what}: 文件已损坏或不完整", f"cannot read the {what_en}: damaged or truncated", reason=reason
    )


def _image_pages(data: bytes, file_type: FileType) -> list[Image.Image]:
    expected = {FileType.JPEG: "JPEG", FileType.PNG: "PNG"}[file_type]
    try:
        image = Image.open(io.BytesIO(data), formats=[expected])
        width, height = image.size
        if width < 1 or height < 1 or width * height > MAX_PIXELS:
            raise InvalidPaper(
                f"图片尺寸 {width}x{height} 不可用 (最多 {MAX_PIXELS // 1_000_000} 百万像素)",
                f"image size {width}x{height} is not usable (at most {MAX_PIXELS // 1_000_000} megapixels)",
                reason="pixels",
                width=width,
                height=height,
            )
        image.load()
        upright: Image.Image = ImageOps.exif_transpose(image) or image
        return [upright.convert("RGB")]
    except InvalidPaper:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise _unreadable("图片", "image", type(exc).__name__) from None


def _pdf_pages(data: bytes) -> list[Image.Image]:
    pages: list[Image.Image] = []
    try:
        pdf = pdfium.PdfDocument(data)
    except (pdfium.PdfiumError, ValueError, OSError) as exc:
        raise _unreadable("PDF", "PDF", type(exc).__name__) from None
    try:
        if len(pdf) < 1:
            raise InvalidPaper("PDF 没有页面", "the PDF has no pages", reason="no_pages")
        for index in range(min(len(pdf), MAX_PAGES)):
            page = pdf[index]
            try:
                width, height = page.get_size()
                longest = max(width, height)
                if not (1 <= longest <= 20_000):
                    raise InvalidPaper(
                        f"PDF 第 {index + 1} 页尺寸无效",
                        f"page {index + 1} of the PDF has no usable size",
                        reason="size",
                    )
                scale = min(PDF_DPI / 72, MAX_SIDE / longest)
                pages.append(page.render(scale=scale).to_pil().convert("RGB"))
            finally:
                page.close()
    except InvalidPaper:
        raise
    except (pdfium.PdfiumError, ValueError, OSError) as exc:
        raise _unreadable("PDF", "PDF", type(exc).__name__) from None
    finally:
        pdf.close()
    return pages


def load_pages(data: bytes, file_type: FileType) -> list[Image.Image]:
    """The pages of an upload as RGB images, or InvalidPaper when they cannot be decoded."""
    pages = _pdf_pages(data) if file_type is FileType.PDF else _image_pages(data, file_type)
    out = []
    for page in pages:
        if max(page.size) > MAX_SIDE:
            page = page.copy()
            page.thumbnail((MAX_SIDE, MAX_SIDE))
        out.append(page)
    return out


class OcrEngine:
    """RapidOCR, loaded on first use and reused; `read` is safe to call from several threads (one at a time)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._engine: Any = None

    def _loaded(self) -> Any:
        if self._engine is None:
            from rapidocr_onnxruntime import RapidOCR  # type: ignore[import-untyped]

            self._engine = RapidOCR()
        return self._engine

    def warm_up(self) -> None:
        with self._lock:
            self._loaded()

    def read(self, data: bytes, file_type: FileType) -> OcrResult:
        """Text lines with boxes of every page (up to MAX_PAGES). InvalidPaper when the file cannot be decoded."""
        began = time.perf_counter()
        with self._lock:
            pages = load_pages(data, file_type)
            engine = self._loaded()
            lines: list[OcrLine] = []
            for number, page in enumerate(pages):
                result, _ = engine(page)
                for box, text, score in result or ():
                    corners = tuple((round(float(x)), round(float(y))) for x, y in box)
                    lines.append(OcrLine(text=str(text), box=corners, score=float(score), page=number))
        return OcrResult(lines=tuple(lines), pages=len(pages), seconds=time.perf_counter() - began)
