"""The receiving pages over real HTTP against a served box: a signed delivery note's QR text opens a draft,
goods are scanned against it, confirm posts the receipt and shows the differences, cancel drops it; forged or
garbage notes and scans are refused next to their field and write nothing."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.devices.delivery_note import NoteLine, generate_key_pair, public_key_text
from edge.security.roles import Role
from tests.edge.web.apibox import COLA_CASE, COLA_PIECE, MILK_BARCODE
from tests.edge.web.pages.pagedata import api, html, ok, text_of
from tests.edge.web.pages.site import Site
from tools.delivery_note import sign_note

TRACE = re.compile(r"Traceback|File \"/|\.py\", line")
DRAFTS = "/api/v1/receiving/drafts"
MILK_EXPIRY = date(2024, 6, 7)


def no_trace(response: Any) -> None:
    assert not TRACE.search(response.text), response.text[:2000]


class Supplier:
    """sup-1 with a signing key registered through the supplier page, and a way to make its notes."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.private, public = generate_key_pair()
        with site.login(Role.PURCHASER) as client:
            done = site.post_form(client, "/suppliers/sup-1/signing-keys", {"public_key": public_text(public)})
            assert done.status_code == 303, done.text
        self.count = 0

    def order(self) -> str:
        """A fresh purchase order of 2 cases of cola and 12 bottles of milk; its number."""
        lines = [{"code": COLA_CASE, "qty": 2, "price_fen": 5424}, {"code": "MILK", "qty": 12, "price_fen": 900}]
        body = {"counterparty": "sup-1", "lines": lines}
        made = ok(api(self.site, "POST", "/api/v1/documents/purchase_order", Role.PURCHASER, json=body), 201)
        return str(made["doc_no"])

    def note(self, po: str | None = None, **kw: Any) -> str:
        self.count += 1
        lines = kw.pop("lines", (NoteLine(COLA_CASE, 2), NoteLine(MILK_BARCODE, 12, "M0601", MILK_EXPIRY)))
        return sign_note(
            kw.pop("key", self.private),
            supplier="sup-1",
            asn_id=f"ASN-PAGE-{self.count}",
            po_no=po or self.order(),
            lines=lines,
            issued_at=self.site.box.clock() - timedelta(hours=1),
        )


def public_text(public: bytes) -> str:
    return public_key_text(public)


@pytest.fixture(scope="module")
def supplier(site: Site) -> Supplier:
    return Supplier(site)


def drafts(site: Site) -> int:
    return len(ok(api(site, "GET", DRAFTS, params={"limit": 1000})))


def open_note(site: Site, client: Any, qr: str, **extra: str) -> Any:
    return site.post_form(client, "/receiving/open", {"qr": qr, **extra}, page="/receiving")


def test_a_delivery_note_is_received_from_the_page(site: Site, supplier: Supplier) -> None:
    with site.login(Role.CLERK) as client:
        start = client.get("/receiving")
        assert start.status_code == 200
        field = html(start).xpath("//input[@name='qr']")[0]
        assert field.get("autofocus") is not None and field.get("type") == "text"
        opened = open_note(site, client, supplier.note() + "\r\n", location="backroom")  # a scanner's Enter
        assert opened.status_code == 303, opened.text
        draft_url = opened.headers["location"]
        draft_id = int(draft_url.rsplit("/", 1)[1])
        page = client.get(draft_url)
        assert "已开收货草稿" in text_of(page, "//p[@class='flash']")
        rows = {r.get("data-sku"): r for r in html(page).xpath("//table[@id='expected']/tbody/tr")}
        assert (rows["COLA"].get("data-expected"), rows["MILK"].get("data-expected")) == ("48", "12")
        assert rows["COLA"].get("data-scanned") == "0"

        scan = site.post_form(client, f"{draft_url}/scan", {"code": COLA_PIECE, "qty": "40"}, page=draft_url)
        assert scan.status_code == 200, scan.text
        assert "40/48" in text_of(scan, "//p[@id='last-scan']")
        assert html(scan).xpath("//tr[@data-sku='COLA']/@data-scanned") == ["40"]
        milk = {"code": MILK_BARCODE, "qty": "12", "lot": "M0601"}
        assert site.post_form(client, f"{draft_url}/scan", milk, page=draft_url).status_code == 200

        done = site.post_form(client, f"{draft_url}/confirm", {}, page=draft_url)
        assert done.status_code == 303, done.text
        final = client.get(draft_url)
        assert html(final).xpath("//h1/span/@data-state") == ["confirmed"]
        assert "少收" in text_of(final, "//section[@id='result']")
        assert not html(final).xpath("//form[@id='scan-form']")
    shown = ok(api(site, "GET", f"{DRAFTS}/{draft_id}"))
    assert shown["state"] == "confirmed" and shown["location"] == "backroom"
    receipt = ok(api(site, "GET", f"/api/v1/documents/{shown['receipt_id']}"))
    assert (receipt["type"], receipt["counterparty"]) == ("receipt", "sup-1")
    assert receipt["doc_no"] in text_of(final, "//p[@class='flash']")


def test_as_announced_receives_what_was_not_scanned(site: Site, supplier: Supplier) -> None:
    with site.login(Role.CLERK) as client:
        opened = open_note(site, client, supplier.note())
        draft_url = opened.headers["location"]
        done = site.post_form(client, f"{draft_url}/confirm", {"as_announced": "1"}, page=draft_url)
        assert done.status_code == 303
        assert "与送货单一致" in text_of(client.get(draft_url), "//section[@id='result']")


def test_nothing_scanned_is_refused_in_words_and_cancel_drops_the_draft(site: Site, supplier: Supplier) -> None:
    with site.login(Role.CLERK) as client:
        draft_url = open_note(site, client, supplier.note()).headers["location"]
        refused = site.post_form(client, f"{draft_url}/confirm", {}, page=draft_url)
        assert refused.status_code == 422
        assert text_of(refused, "//small[@id='e-confirm']")
        cancelled = site.post_form(client, f"{draft_url}/cancel", {}, page=draft_url)
        assert cancelled.status_code == 303 and cancelled.headers["location"] == "/receiving"
        assert html(client.get(draft_url)).xpath("//h1/span/@data-state") == ["cancelled"]
        late = site.post_form(client, f"{draft_url}/scan", {"code": COLA_PIECE}, page="/receiving")
        assert late.status_code == 409 and text_of(late, "//div[@id='e-closed']")  # the form is gone: above


def test_a_forged_or_stale_note_is_refused_next_to_the_field(site: Site, supplier: Supplier) -> None:
    other, _ = generate_key_pair()
    before = drafts(site)
    with site.login(Role.CLERK) as client:
        for qr, words in ((supplier.note(key=other), "签名"), ("SBDN1:" + "A" * 40, "送货单"), ("hello", "")):
            refused = open_note(site, client, qr)
            assert refused.status_code in (403, 422), refused.text
            assert text_of(refused, "//small[@id='e-qr']")
            assert words in text_of(refused, "//small[@id='e-qr']")
            assert html(refused).xpath("//input[@name='qr']/@value") == [qr]  # kept to look at
        empty = open_note(site, client, "   ")
        assert empty.status_code == 422 and text_of(empty, "//small[@id='e-qr']")
    assert drafts(site) == before


def test_an_accountant_may_not_receive(site: Site, supplier: Supplier) -> None:
    with site.login(Role.ACCOUNTANT) as client:
        start = client.get("/receiving")
        assert start.status_code in (200, 403)
        assert not html(start).xpath("//form[@id='open-note']")
        refused = open_note(site, client, supplier.note())
        assert refused.status_code == 403
        no_trace(refused)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    qr=st.one_of(
        st.text(max_size=300),
        st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:", max_size=300).map(lambda s: "SBDN1:" + s),
        st.just("x" * 5000),
    ),
    location=st.one_of(st.just(""), st.just("backroom"), st.text(max_size=20)),
)
def test_garbage_notes_open_nothing_and_never_fail(site: Site, qr: str, location: str) -> None:
    before = drafts(site)
    with site.login(Role.CLERK) as client:
        response = open_note(site, client, qr, location=location)
    no_trace(response)
    assert response.status_code in (403, 404, 409, 422), response.text
    assert text_of(response, "//small[@id='e-qr']") or text_of(response, "//small[@id='e-location']")
    assert drafts(site) == before


@pytest.fixture(scope="module")
def open_draft(site: Site, supplier: Supplier) -> str:
    with site.login(Role.CLERK) as client:
        return str(open_note(site, client, supplier.note()).headers["location"])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    code=st.one_of(st.text(max_size=30), st.just("NOPE"), st.just(COLA_PIECE + " ")),
    qty=st.one_of(st.just(""), st.text(max_size=8), st.integers(-(10**9), 10**9).map(str)),
    lot=st.one_of(st.just(""), st.text(max_size=70)),
    expiry=st.one_of(st.just(""), st.text(max_size=12), st.just("2024-02-30")),
)
def test_garbage_scans_are_refused_next_to_their_field(
    site: Site, open_draft: str, code: str, qty: str, lot: str, expiry: str
) -> None:
    draft_id = int(open_draft.rsplit("/", 1)[1])
    before = ok(api(site, "GET", f"{DRAFTS}/{draft_id}"))["scanned"]
    with site.login(Role.CLERK) as client:
        data = {"code": code, "qty": qty, "lot": lot, "expiry": expiry}
        response = site.post_form(client, f"{open_draft}/scan", data, page=open_draft)
    no_trace(response)
    if response.status_code == 200:  # happened to be a good scan of something on the box
        return
    assert response.status_code in (409, 422), response.text
    named = [n for n in ("code", "qty", "lot", "expiry", "closed") if text_of(response, f"//*[@id='e-{n}']")]
    assert named, response.text
    assert ok(api(site, "GET", f"{DRAFTS}/{draft_id}"))["scanned"] == before


# --- a photo of the note (a phone's camera) ----------------------------------------------------------------------


def _png_of(text: str, scale: int = 4) -> bytes:
    import io

    import segno

    buffer = io.BytesIO()
    segno.make(text, error="m").save(buffer, kind="png", scale=scale, border=4)
    return buffer.getvalue()


def _post_photo(site: Site, client: Any, data: bytes, name: str = "note.png") -> Any:
    token = site.csrf(client, "/receiving")
    files = {"photo": (name, data, "image/png")}
    return client.post("/receiving/photo", data={"_csrf": token, "_idem": "photo" + name.replace(".", "")}, files=files)


def test_a_photo_of_the_notes_qr_code_opens_the_draft(site: Site, supplier: Supplier) -> None:
    note = supplier.note()
    with site.login(Role.CLERK) as client:
        before = drafts(site)
        opened = _post_photo(site, client, _png_of(note))
        assert opened.status_code == 303, opened.text[:2000]
        assert re.fullmatch(r"/receiving/\d+", opened.headers["location"])
        assert drafts(site) == before + 1
        # The API reads the same photo for a phone app: the same note resumes the same draft.
        headers = {**site.box.auth(Role.CLERK), "Idempotency-Key": "photo-api-1"}
        with site.client() as raw:
            again = raw.post(f"{DRAFTS}/photo", headers=headers, files={"photo": ("n.png", _png_of(note), "image/png")})
        assert again.status_code == 200 and again.json()["detail"]["resumed"] is True
        assert drafts(site) == before + 1


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"not a picture at all", "无法读取图片"),
        (_png_of("https://example.com/not-a-note"), "没有找到送货单二维码"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "无法读取图片"),
    ],
)
def test_a_photo_without_a_readable_note_is_refused_next_to_the_field(site: Site, data: bytes, words: str) -> None:
    with site.login(Role.CLERK) as client:
        before = drafts(site)
        refused = _post_photo(site, client, data, name=f"x{len(data)}.png")
        assert refused.status_code == 422
        no_trace(refused)
        assert 'id="e-photo"' in refused.text and words in refused.text
        assert drafts(site) == before
