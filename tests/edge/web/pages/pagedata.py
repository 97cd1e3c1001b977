"""Data for the purchasing, finance, device and cold-room page tests, made through the served box's own API."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import httpx
import lxml.html

from edge.security.roles import Role
from tests.edge.web.pages.site import Site

SELLER = "91310000MA1FL0000N"
SELLER_ID = "sup-inv"
BUYER = "91110000100000000R"
_numbers = itertools.count(1)


def api(site: Site, method: str, path: str, role: Role | str = Role.MANAGER, **kwargs: Any) -> httpx.Response:
    headers = {**site.box.auth(role), "Idempotency-Key": str(uuid.uuid4())}
    return httpx.request(method, site.url + path, headers=headers, timeout=30, **kwargs)


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def html(response: httpx.Response) -> Any:
    return lxml.html.fromstring(response.text)


def text_of(response: httpx.Response, xpath: str = "//main") -> str:
    """The whitespace-normalised text of the elements an XPath finds (the main part of the page by default)."""
    found = html(response).xpath(xpath)
    return " ".join(" ".join(el.text_content().split()) for el in found)


def ensure_seller(site: Site) -> None:
    """The invoices' seller as a supplier with a valid credit code (the seed's sup-1 has none)."""
    existing = api(site, "GET", "/api/v1/suppliers", Role.PURCHASER)
    if any(s["id"] == SELLER_ID for s in ok(existing)):
        return
    body = {"id": SELLER_ID, "name": "华润饮料(上海)有限公司", "credit_code": SELLER}
    ok(api(site, "POST", "/api/v1/suppliers", Role.PURCHASER, json=body), 201)


def purchase_order(site: Site, cases: int = 2, supplier: str = SELLER_ID, role: Role = Role.PURCHASER) -> int:
    lines = [{"code": "COLA", "qty": cases, "unit": "case", "price_fen": 5424}]
    body = {"counterparty": supplier, "lines": lines}
    return int(ok(api(site, "POST", "/api/v1/documents/purchase_order", role, json=body), 201)["document_id"])


def receive(site: Site, po_id: int, cases: int = 2, supplier: str = SELLER_ID) -> int:
    lines = [{"code": "COLA", "qty": cases, "unit": "case", "price_fen": 5424}]
    body = {"counterparty": supplier, "ref_id": po_id, "lines": lines}
    return int(ok(api(site, "POST", "/api/v1/documents/receipt", Role.PURCHASER, json=body), 201)["document_id"])


def match_exception(site: Site, *, over_fen: int = 150) -> int:
    """A PO of 2 cases of cola, its receipt, and an invoice `over_fen` above the order: an open exception."""
    result = enter_invoice(site, over_fen=over_fen)
    assert result["status"] == "exception", result
    return int(result["exception"]["id"])


def enter_invoice(site: Site, *, over_fen: int = 0) -> dict[str, Any]:
    """A PO of 2 cases of cola, its receipt, and its invoice `over_fen` above the order (0: it matches)."""
    ensure_seller(site)
    po_id = purchase_order(site)
    receive(site, po_id)
    number = f"2431200000{next(_numbers):010d}"
    amount = 9600 + over_fen
    invoice = {
        "invoice_no": number,
        "issue_date": site.box.clock().date().isoformat(),
        "seller_name": "华润饮料(上海)有限公司",
        "seller_credit_code": SELLER,
        "buyer_name": "演示商贸有限公司",
        "buyer_credit_code": BUYER,
        "po_id": po_id,
        "lines": [
            {
                "item_name": "*饮料*可乐 330ml",
                "unit": "case",
                "qty": 2,
                "amount": f"{amount // 100}.{amount % 100:02d}",
                "tax_rate": "13%",
                "tax": "12.48",
            }
        ],
    }
    entered = ok(api(site, "POST", "/api/v1/invoices", Role.PURCHASER, json=invoice), 201)
    (result,) = entered["invoices"]
    return dict(result)


def exception_state(site: Site, exception_id: int) -> dict[str, Any]:
    return dict(ok(api(site, "GET", f"/api/v1/invoices/exceptions/{exception_id}", Role.AUDITOR)))
