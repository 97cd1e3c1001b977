"""The demo store's finance (docs/demo.md): supplier papers, a price agreement, invoices, a loss to approve.

Seeded in the demo's one transaction, after the opening stock, through the same finance functions the API
uses, so every row has its voucher, outbox and audit row:

- registered addresses for the five suppliers; all but 广州洁诚日化 (daily goods) supply food;
- confirmed papers (business licence, bank account licence, general-taxpayer proof, food business licence)
  for four suppliers, rendered as licence images under `<data_dir>/papers/`; 成都鲜农's food business
  licence expires in 20 days, so the 30-day alert goes out on `alert/compliance` when the box starts;
  广州洁诚日化 has no papers yet: paying it, or ordering more than 50,000 CNY from it, is refused;
- a price agreement with 上海惠康饮品 for its first drink, and a purchase order, a receipt against it and
  the matching invoice (a tax-trusted AP voucher);
- an invoice from 杭州丰禾食品 whose price is 1.50 CNY over the order: an open three-way-match exception;
- a write-off of two items as stolen, posted by the manager, waiting for the accountant's approval.
"""

from __future__ import annotations

import hashlib
import io
import sqlite3
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from edge.finance import ap
from edge.finance import compliance as cab
from edge.finance.invoices import Invoice, InvoiceLine, InvoiceSource
from edge.finance.matching import MatchPolicy
from edge.finance.papers import FileType, PaperFields, PaperKind, Reading, required_kinds
from edge.finance.prices import PriceAgreementIn, record_agreement
from edge.ledger.commands import DocType, Line, PostDocument, WriteOffReason
from edge.ledger.errors import DomainError
from edge.ledger.money import div_round_half_up
from edge.ledger.posting import PostingContext, post
from edge.web.paper_files import store_paper_file

BUYER_NAME = "演示商贸有限公司"
BUYER_CREDIT_CODE = "91440300MA5F000007"
ADDRESSES: dict[str, tuple[str, bool]] = {  # supplier -> (registered address, supplies food)
    "sup-bev": ("上海市浦东新区张江路88号", True),
    "sup-food": ("浙江省杭州市西湖区文三路200号", True),
    "sup-daily": ("广东省广州市天河区天河路385号", False),
    "sup-cold": ("北京市朝阳区建国路77号", True),
    "sup-fresh": ("四川省成都市武侯区人民南路四段9号", True),
}
WITHOUT_PAPERS = "sup-daily"
EXPIRING = ("sup-fresh", PaperKind.FOOD_LICENCE, 20)  # days left at seeding


class DemoFinanceError(RuntimeError):
    """A demo finance step was refused (a bug in the demo data): the whole seed rolls back."""


@dataclass(frozen=True, slots=True)
class FinanceDemo:
    papers: int
    invoices: int
    exceptions: int


def seed_finance(
    conn: sqlite3.Connection,
    ctx: PostingContext,
    data_dir: Path,
    actors: dict[str, str],
    buyer_credit_code: str | None = None,
) -> FinanceDemo:
    """Seed the demo's finance; `actors` maps roles to the demo usernames; the invoices name `buyer_credit_code`
    (the configured company's, else the demo company's). The caller owns the transaction."""
    try:
        suppliers = {row["id"]: row for row in conn.execute("SELECT * FROM suppliers ORDER BY id")}
        for supplier, (address, food) in ADDRESSES.items():
            if supplier in suppliers:
                conn.execute(
                    "UPDATE suppliers SET registered_address = ?, food_supplier = ? WHERE id = ?",
                    (address, int(food), supplier),
                )
        papers = sum(
            _papers(conn, ctx, data_dir, suppliers[s], ADDRESSES[s][0], ADDRESSES[s][1], actors["purchaser"])
            for s in ADDRESSES
            if s in suppliers and s != WITHOUT_PAPERS
        )
        invoices, exceptions = _purchases(conn, ctx, actors, buyer_credit_code or BUYER_CREDIT_CODE)
        _write_off(conn, ctx, actors["manager"])
    except DomainError as err:
        raise DemoFinanceError(f"demo finance refused: {err.message_en} {err.detail}") from err
    return FinanceDemo(papers, invoices, exceptions)


def _papers(
    conn: sqlite3.Connection,
    ctx: PostingContext,
    data_dir: Path,
    supplier: sqlite3.Row,
    address: str,
    food: bool,
    actor: str,
) -> int:
    today = ctx.business_date
    for kind in required_kinds(food):
        valid_to: date | None = today + timedelta(days=365 * 8)
        if (supplier["id"], kind) == EXPIRING[:2]:
            valid_to = today + timedelta(days=EXPIRING[2])
        if kind in (PaperKind.BANK_ACCOUNT, PaperKind.GENERAL_TAXPAYER):
            valid_to = None
        fields = PaperFields(
            name=supplier["name"],
            credit_code=supplier["credit_code"],
            address=None if kind is PaperKind.BANK_ACCOUNT else address,
            legal_rep=supplier["contact"],
            valid_from=today - timedelta(days=365 * 2),
            valid_to=valid_to,
            bank_name="中国工商银行股份有限公司演示支行" if kind is PaperKind.BANK_ACCOUNT else None,
            bank_account=_account_no(supplier["id"]) if kind is PaperKind.BANK_ACCOUNT else None,
            licence_no=f"JY1{supplier['credit_code'][2:8]}0012345" if kind is PaperKind.FOOD_LICENCE else None,
        )
        image = _image(kind, fields)
        digest = store_paper_file(data_dir, image, FileType.PNG)
        created = cab.record_paper(
            conn,
            cab.PaperUpload(
                supplier=supplier["id"],
                kind=kind.value,
                sha256=digest,
                file_type=FileType.PNG.value,
                size_bytes=len(image),
                filename=f"{supplier['id']}-{kind.value}.png",
                ocr={"lines": [], "pages": 1, "seconds": 0.0, "note": "demo paper: fields given, not read by OCR"},
                reading=Reading(fields=fields, detected_kind=kind).to_json(),
            ),
            actor,
            ctx.now,
            f"demo-paper-{supplier['id']}-{kind.value}",
        )
        cab.confirm_paper(conn, int(created.id), None, actor, ctx.now)
    return len(required_kinds(food))


def _account_no(supplier: str) -> str:
    return "6222" + str(int(hashlib.sha256(supplier.encode()).hexdigest(), 16) % 10**15).zfill(15)


def _image(kind: PaperKind, fields: PaperFields) -> bytes:
    """The paper as a PNG: the licence-like rendering when the CJK font is installed, else a plain card."""
    try:
        from tools.render_licence import PaperFacts, render

        facts = PaperFacts(
            name=fields.name or "",
            credit_code=fields.credit_code or "",
            legal_rep=fields.legal_rep or "",
            address=fields.address or "",
            valid_from=fields.valid_from,
            valid_to=fields.valid_to,
            bank_name=fields.bank_name or "",
            bank_account=fields.bank_account or "",
            licence_no=fields.licence_no or "",
        )
        return render(kind.value, facts, width=1000)
    except (ImportError, OSError):  # no CJK font on this machine: a plain card with the code
        from PIL import Image, ImageDraw

        image = Image.new("RGB", (800, 400), "white")
        draw = ImageDraw.Draw(image)
        draw.text((40, 40), f"DEMO {kind.value}", fill="black")
        draw.text((40, 100), fields.credit_code or "", fill="black")
        out = io.BytesIO()
        image.save(out, format="PNG")
        return out.getvalue()


def _first_item(conn: sqlite3.Connection, supplier: str) -> sqlite3.Row:
    row = conn.execute(
        "SELECT i.sku, i.name, i.cost_fen, i.vat_rate_bp FROM items i"
        " JOIN document_lines l ON l.sku = i.sku JOIN documents d ON d.id = l.document_id"
        " WHERE d.type = 'receipt' AND d.counterparty = ? AND i.base_unit != 'g' ORDER BY i.sku LIMIT 1",
        (supplier,),
    ).fetchone()
    if row is None:
        raise DemoFinanceError(f"demo supplier {supplier} has no items")
    found: sqlite3.Row = row
    return found


def _purchases(
    conn: sqlite3.Connection, ctx: PostingContext, actors: dict[str, str], buyer_credit_code: str
) -> tuple[int, int]:
    policy = MatchPolicy(qty_tolerance=0, price_tolerance_fen=100, tax_tolerance_fen=10, window_hours=72)
    entered = exceptions = 0
    for n, (supplier, overcharge_fen) in enumerate((("sup-bev", 0), ("sup-food", 150)), start=1):
        item = _first_item(conn, supplier)
        price = item["cost_fen"]  # per base unit, VAT included
        if overcharge_fen == 0:
            record_agreement(
                conn,
                PriceAgreementIn(
                    supplier_id=supplier,
                    sku=item["sku"],
                    price_fen=price,
                    valid_from=ctx.business_date,
                    valid_to=ctx.business_date + timedelta(days=365),
                    contract_no=f"HT-{ctx.business_date:%Y}-001",
                    note="年度协议价 annual agreed price",
                ),
                f"demo-agreement-{n}",
                actors["purchaser"],
                ctx.now,
            )
        qty = 24
        po = _posted(
            conn,
            ctx,
            PostDocument(
                f"demo-po-{n}",
                DocType.PURCHASE_ORDER,
                (Line(item["sku"], qty, price),),
                counterparty=supplier,
                actor=actors["purchaser"],
            ),
        )
        _posted(
            conn,
            ctx,
            PostDocument(
                f"demo-rc-{n}",
                DocType.RECEIPT,
                (Line(item["sku"], qty, price),),
                counterparty=supplier,
                ref_id=po,
                actor=actors["purchaser"],
            ),
        )
        gross = qty * price
        tax = div_round_half_up(gross * item["vat_rate_bp"], 10_000 + item["vat_rate_bp"])
        net = gross - tax + overcharge_fen
        tax = div_round_half_up(net * item["vat_rate_bp"], 10_000)
        seller = conn.execute("SELECT name, credit_code FROM suppliers WHERE id = ?", (supplier,)).fetchone()
        invoice = Invoice(
            invoice_no=f"{ctx.business_date:%y}31200000{ctx.business_date:%m%d}{n:06d}",
            issue_date=ctx.business_date,
            seller_name=seller["name"],
            seller_credit_code=seller["credit_code"],
            buyer_name=BUYER_NAME,
            buyer_credit_code=buyer_credit_code,
            lines=(InvoiceLine(1, item["name"], qty, net, item["vat_rate_bp"], tax, sku=item["sku"]),),
            po_id=po,
        )
        result = ap.enter_invoices(
            conn,
            ctx,
            ap.EntryRequest(
                invoices=(invoice,),
                source=InvoiceSource.API,
                key=f"demo-invoice-{n}",
                actor=actors["purchaser"],
                policy=policy,
            ),
        )
        entered += 1
        exceptions += sum(1 for i in result["invoices"] if i["status"] == "exception")
    return entered, exceptions


def _posted(conn: sqlite3.Connection, ctx: PostingContext, command: PostDocument) -> int:
    result = post(conn, command, ctx)
    if not result.ok or result.document_id is None:
        raise DemoFinanceError(f"demo posting {command.key} refused: {result.message_en} {result.detail}")
    return result.document_id


def _write_off(conn: sqlite3.Connection, ctx: PostingContext, manager: str) -> None:
    row = conn.execute(
        "SELECT sku, location FROM balances WHERE qty >= 10 AND location = 'floor' AND lot = '' ORDER BY sku LIMIT 1"
    ).fetchone()
    if row is None:
        return
    _posted(
        conn,
        ctx,
        PostDocument(
            "demo-wo-1",
            DocType.WRITE_OFF,
            (Line(row["sku"], 2),),
            location=row["location"],
            reason=WriteOffReason.THEFT.value,
            note="货架失窃 stolen from the shelf",
            actor=manager,
        ),
    )
