"""Render licence-like images (营业执照, 基本存款账户信息, 一般纳税人证明, 食品经营许可证) for tests and the demo.

The layout follows the real papers closely enough for the OCR and the field parser to meet what they meet in a
store: a title, label/value rows, a seal-red border. Text is drawn with Noto Sans CJK from Debian's
fonts-noto-cjk (`make fonts`). Run: `python -m tools.render_licence business_licence out.png [--pdf]`.
"""

from __future__ import annotations

import argparse
import io
import json
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Literal

from PIL import Image, ImageDraw, ImageFont

FONT_PATH = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
BOLD_FONT_PATH = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc")
PaperKind = Literal["business_licence", "bank_account", "general_taxpayer", "food_licence"]
KINDS: tuple[PaperKind, ...] = ("business_licence", "bank_account", "general_taxpayer", "food_licence")
SEAL_RED = (200, 30, 30)
INK = (20, 20, 20)


@dataclass(frozen=True, slots=True)
class PaperFacts:
    """What a paper says; one set of facts renders as any of the four kinds."""

    name: str = "上海华润饮料有限公司"
    credit_code: str = "91310115MA1K3YJ71K"
    company_type: str = "有限责任公司(自然人投资或控股)"
    legal_rep: str = "张伟"
    address: str = "上海市浦东新区张江路88号"
    registered_capital: str = "人民币伍佰万元整"
    established: date = date(2018, 5, 10)
    valid_from: date | None = date(2018, 5, 10)
    valid_to: date | None = date(2038, 5, 9)  # None: 长期
    bank_name: str = "中国工商银行股份有限公司上海张江支行"
    bank_account: str = "1001234567890123456"
    account_no: str = "J2900012345601"
    licence_no: str = "JY13101150012345"
    authority: str = "上海市浦东新区市场监督管理局"
    issued: date = date(2023, 6, 1)
    extra: tuple[tuple[str, str], ...] = field(default=())


def cn_date(value: date) -> str:
    return f"{value.year}年{value.month:02d}月{value.day:02d}日"


def _rows(kind: PaperKind, facts: PaperFacts) -> tuple[str, list[tuple[str, str]]]:
    until = cn_date(facts.valid_to) if facts.valid_to else "长期"
    if kind == "business_licence":
        start = cn_date(facts.valid_from or facts.established)
        return "营业执照", [
            ("统一社会信用代码", facts.credit_code),
            ("名称", facts.name),
            ("类型", facts.company_type),
            ("法定代表人", facts.legal_rep),
            ("注册资本", facts.registered_capital),
            ("成立日期", cn_date(facts.established)),
            ("营业期限", f"{start}至{until}"),
            ("住所", facts.address),
            ("登记机关", facts.authority),
        ]
    if kind == "bank_account":
        return "基本存款账户信息", [
            ("账户名称", facts.name),
            ("统一社会信用代码", facts.credit_code),
            ("账号", facts.bank_account),
            ("开户银行", facts.bank_name),
            ("法定代表人(单位负责人)", facts.legal_rep),
            ("基本存款账户编号", facts.account_no),
        ]
    if kind == "general_taxpayer":
        return "增值税一般纳税人资格证明", [
            ("纳税人名称", facts.name),
            ("纳税人识别号", facts.credit_code),
            ("法定代表人", facts.legal_rep),
            ("生产经营地址", facts.address),
            ("一般纳税人资格生效之日", cn_date(facts.valid_from or facts.established)),
            ("主管税务机关", "国家税务总局上海市浦东新区税务局"),
        ]
    return "食品经营许可证", [
        ("经营者名称", facts.name),
        ("社会信用代码", facts.credit_code),
        ("法定代表人(负责人)", facts.legal_rep),
        ("住所", facts.address),
        ("经营场所", facts.address),
        ("主体业态", "食品销售经营者(商场超市)"),
        ("经营项目", "预包装食品销售(含冷藏冷冻食品)"),
        ("许可证编号", facts.licence_no),
        ("有效期至", until),
    ]


def render_image(kind: PaperKind, facts: PaperFacts | None = None, *, width: int = 1400) -> Image.Image:
    """The paper as an RGB image about A4 landscape proportions."""
    facts = facts or PaperFacts()
    title, rows = _rows(kind, facts)
    rows = rows + list(facts.extra)
    scale = width / 1400
    height = int(990 * scale)
    image = Image.new("RGB", (width, height), (252, 250, 244))
    draw = ImageDraw.Draw(image)
    margin = int(40 * scale)
    draw.rectangle((margin, margin, width - margin, height - margin), outline=SEAL_RED, width=max(2, int(8 * scale)))
    title_font = ImageFont.truetype(str(BOLD_FONT_PATH), int(72 * scale))
    label_font = ImageFont.truetype(str(FONT_PATH), int(30 * scale))
    value_font = ImageFont.truetype(str(FONT_PATH), int(30 * scale))
    spaced = " ".join(title) if len(title) <= 5 else title
    box = draw.textbbox((0, 0), spaced, font=title_font)
    draw.text(((width - (box[2] - box[0])) / 2, int(90 * scale)), spaced, font=title_font, fill=SEAL_RED)
    label_x = int(130 * scale)
    value_x = int(500 * scale)
    y = int(230 * scale)
    step = int(min(62, 620 / max(len(rows), 1)) * scale)
    for label, value in rows:
        draw.text((label_x, y), label, font=label_font, fill=INK)
        draw.text((value_x, y), value, font=value_font, fill=INK)
        y += step
    issued = f"发证日期 {cn_date(facts.issued)}"
    box = draw.textbbox((0, 0), issued, font=label_font)
    draw.text((width - margin * 3 - (box[2] - box[0]), height - int(130 * scale)), issued, font=label_font, fill=INK)
    return image


def render(
    kind: PaperKind,
    facts: PaperFacts | None = None,
    *,
    fmt: Literal["png", "jpeg", "pdf"] = "png",
    width: int = 1400,
) -> bytes:
    """The paper as PNG, JPEG or a one-page PDF (the image embedded at 150 dpi)."""
    image = render_image(kind, facts, width=width)
    out = io.BytesIO()
    if fmt == "pdf":
        image.save(out, format="PDF", resolution=150.0)
    elif fmt == "jpeg":
        image.save(out, format="JPEG", quality=90)
    else:
        image.save(out, format="PNG")
    return out.getvalue()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("out", type=Path)
    parser.add_argument("--format", choices=("png", "jpeg", "pdf"), default=None, help="default: by the suffix")
    parser.add_argument("--facts", type=Path, help="JSON object overriding fields of PaperFacts (dates ISO)")
    args = parser.parse_args(argv)
    facts = PaperFacts()
    if args.facts:
        overrides = json.loads(args.facts.read_text(encoding="utf-8"))
        for key in ("established", "valid_from", "valid_to", "issued"):
            if overrides.get(key):
                overrides[key] = date.fromisoformat(overrides[key])
        facts = replace(facts, **overrides)
    suffix = args.out.suffix.lower().lstrip(".")
    by_suffix: dict[str, Literal["png", "jpeg", "pdf"]] = {"jpg": "jpeg", "jpeg": "jpeg", "pdf": "pdf"}
    fmt: Literal["png", "jpeg", "pdf"] = args.format or by_suffix.get(suffix, "png")
    args.out.write_bytes(render(args.kind, facts, fmt=fmt))
    print(args.out)


if __name__ == "__main__":
    main()
