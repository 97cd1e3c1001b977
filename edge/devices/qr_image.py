"""A delivery note's QR code read from a photo (a phone's camera, a scan): zxing-cpp over a Pillow image.

`read_delivery_note(data)` answers the QR text (`SBDN1:...`, docs/scan-to-receive.md) or refuses the picture:
not an image, too large, no delivery-note QR code in it, or several different ones. Pure: bytes in, text out.
"""

from __future__ import annotations

import io
from typing import ClassVar

import zxingcpp
from PIL import Image, UnidentifiedImageError

from edge.ledger.errors import DomainError

MAX_PIXELS = 40_000_000  # a 48-megapixel phone photo scaled by the phone; more is not a photo of a note
MAX_BYTES = 20 * 1024 * 1024
PREFIX = "SBDN1:"
QR_ONLY = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)


class QrImageError(DomainError):
    code: ClassVar[str] = "qr_image_invalid"
    status: ClassVar[int] = 422


def read_delivery_note(data: bytes) -> str:
    if len(data) > MAX_BYTES:
        raise QrImageError(
            f"图片过大: 最多 {MAX_BYTES // 2**20} MB",
            f"picture too large: at most {MAX_BYTES // 2**20} MB",
            field="photo",
        )
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_PIXELS:
                raise QrImageError("图片像素过多", "picture has too many pixels", field="photo")
            image.load()
            picture = image.convert("L")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise QrImageError("无法读取图片: 请上传 JPEG 或 PNG 照片", "cannot read the picture: send a JPEG or PNG photo",
                           field="photo") from None  # fmt: skip
    texts = {result.text for result in zxingcpp.read_barcodes(picture, formats=QR_ONLY)}
    notes = sorted(text for text in texts if text.startswith(PREFIX))
    if not notes:
        raise QrImageError(
            "照片中没有找到送货单二维码: 请对准二维码、保持清晰后重拍",
            "no delivery-note QR code found in the photo: hold the camera square to the code and take it again",
            field="photo",
            other_codes=len(texts),
        )
    if len(notes) > 1:
        raise QrImageError(
            f"照片中有 {len(notes)} 张送货单的二维码: 请一次只拍一张",
            f"the photo holds {len(notes)} delivery-note QR codes: photograph one at a time",
            field="photo",
        )
    return notes[0]
