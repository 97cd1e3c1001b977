"""The documents pages over real HTTP: the list and its filters, one document with lines, moves and voucher,
reversal after a confirmation, and the new-document forms with errors next to the field (garbage too)."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import lxml.html
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.security.roles import Role
from tests.edge.web.apibox import COLA_CASE, MILK_BARCODE
from tests.edge.web.pages.site import Site

TRACE = re.compile(r"Traceback|File \"/|sqlite3\.|NameError|KeyError|TypeError|UndefinedError")


def html(response: httpx.Response) -> Any:
    assert not TRACE.search(response.text), response.text[:2000]
    return lxml.html.fromstring(response.text)


def form_page(site: Site, client: httpx.Client, kind: str, data: dict[str, str]) -> httpx.Response:
    """Open the form as a browser would (its CSRF token and idempotency key), then submit `data`."""
    page = html(client.get(f"/documents/new/{kind}"))
    hidden = {i.get("name"): i.get("value") for i in page.xpath('//form[@id="document-form"]//input[@type="hidden"]')}
    return client.post(f"/documents/new/{kind}", data={**hidden, **data})


def error_of(page: Any, field: str) -> str:
    found = page.xpath(f'//*[@id="e-{field}"]')
    assert found, f"no error next to {field}"
    assert page.xpath(f'//*[@id="f-{field}"]/@aria-invalid') in (["true"], []), field
    return str(found[0].text_content())


def post_api(site: Site, doc_type: str, body: dict[str, Any]) -> dict[str, Any]:
    key = f"page-test-{time.monotonic_ns()}"
    with httpx.Client(base_url=site.url, headers={**site.box.auth(Role.MANAGER), "Idempotency-Key": key}) as http:
        response = http.post(f"/api/v1/documents/{doc_type}", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def counts(site: Site) -> dict[str, int]:
    return site.box.counts()


def test_a_receipt_posted_from_the_form_opens_the_document(site: Site) -> None:
    with site.login(Role.MANAGER) as client:
        response = form_page(
            site,
            client,
            "receipt",
            {
                "counterparty": "sup-1",
                "location": "floor",
                "lines-0-code": "COLA",
                "lines-0-qty": "48",
                "lines-0-price": "2.26",
                "lines-1-code": MILK_BARCODE,
                "lines-1-qty": "6",
                "lines-1-price": "9",
                "lines-1-lot": "L1",
                "lines-1-expiry": "2024-06-08",
                "lines-1-unit": "",
                "note": "第一批",
            },
        )
        assert response.status_code == 303, response.text[:3000]
        target = response.headers["location"]
        assert re.fullmatch(r"/documents/[0-9]+", target)
        page = html(client.get(target))
        assert "已过账" in page.xpath('//p[@class="flash"]')[0].text_content()
        lines = page.xpath('//table[@id="lines"]/tbody/tr')
        assert len(lines) == 2 and "可乐 330ml" in lines[0].text_content() and "¥2.26" in lines[0].text_content()
        assert "L1" in lines[1].text_content() and "2024-06-08" in lines[1].text_content()
        assert len(page.xpath('//table[@id="moves"]/tbody/tr')) == 2
        assert "1405" in page.xpath('//table[@id="voucher"]')[0].text_content()
        assert "第一批" in page.xpath('//dl[@id="doc-header"]')[0].text_content()


def test_a_double_submit_posts_once(site: Site) -> None:
    with site.login(Role.MANAGER) as client:
        page = html(client.get("/documents/new/receipt"))
        hidden = {
            i.get("name"): i.get("value") for i in page.xpath('//form[@id="document-form"]//input[@type="hidden"]')
        }
        data = {**hidden, "lines-0-code": "RICE", "lines-0-qty": "3", "lines-0-price": "36.00"}
        before = counts(site)["documents"]
        first = client.post("/documents/new/receipt", data=data)
        second = client.post("/documents/new/receipt", data=data)
        assert first.status_code == second.status_code == 303
        assert first.headers["location"] == second.headers["location"]
        assert counts(site)["documents"] == before + 1


def test_a_clerk_sees_no_voucher_and_no_reverse_button(site: Site) -> None:
    posted = post_api(site, "receipt", {"counterparty": "sup-1", "lines": [{"code": "RICE", "qty": 2}]})
    with site.login(Role.CLERK) as client:
        listing = html(client.get("/documents", params={"type": "receipt"}))
        assert str(posted["document_id"]) in listing.xpath('//table[@id="document-table"]/tbody/tr/@data-id')
        page = html(client.get(f"/documents/{posted['document_id']}"))
        assert "华润饮料" in page.xpath('//dl[@id="doc-header"]')[0].text_content()  # the supplier's name
        assert not page.xpath('//table[@id="voucher"]') and page.xpath('//*[@id="no-voucher"]')
        assert not page.xpath('//*[@id="reverse"]')
        assert client.get(f"/documents/{posted['document_id']}/reverse").status_code == 403


def test_the_list_filters_by_type_date_number_and_item(site: Site) -> None:
    posted = post_api(
        site, "receipt", {"lines": [{"code": MILK_BARCODE, "qty": 2, "lot": "F1", "expiry": "2024-06-09"}]}
    )
    doc_id, doc_no = str(posted["document_id"]), posted["doc_no"]

    def ids(client: httpx.Client, **params: str) -> list[str]:
        page = html(client.get("/documents", params=params))
        return list(page.xpath('//table[@id="document-table"]/tbody/tr/@data-id'))

    with site.login(Role.MANAGER, lang="en") as client:
        assert doc_id in ids(client)
        assert doc_id in ids(client, type="receipt", sku="MILK")
        assert doc_id not in ids(client, type="sale", sku="MILK")
        assert doc_id not in ids(client, type="receipt", sku="COLA")
        assert ids(client, q=doc_no, since="2024-06-01") == [doc_id]
        row = html(client.get("/documents", params={"q": doc_no})).xpath('//table[@id="document-table"]/tbody/tr')[0]
        assert "Goods receipt" in row.text_content()
        nothing = html(client.get("/documents", params={"until": "2000-01-01"}))
        assert not nothing.xpath('//table[@id="document-table"]') and "No documents match" in nothing.text_content()
        bad = client.get("/documents", params={"type": "bogus", "since": "yesterday", "q": "x" * 80})
        assert bad.status_code == 422
        page = html(bad)
        for field in ("type", "since", "q"):
            error_of(page, field)


def test_reversal_needs_the_confirmation_and_then_posts_once(site: Site) -> None:
    with site.login(Role.MANAGER) as client:
        created = form_page(site, client, "receipt", {"lines-0-code": "RICE", "lines-0-qty": "1"})
        document = created.headers["location"]
        detail = html(client.get(document))
        assert detail.xpath('//*[@id="reverse"]/@href') == [document + "/reverse"]
        confirm = html(client.get(document + "/reverse"))
        hidden = {
            i.get("name"): i.get("value") for i in confirm.xpath('//form[@id="reverse-form"]//input[@type="hidden"]')
        }
        before = counts(site)["documents"]
        unconfirmed = client.post(document + "/reverse", data={**hidden, "reason_text": "录错了"})
        assert unconfirmed.status_code == 422
        error_of(html(unconfirmed), "confirm")
        assert counts(site)["documents"] == before
        done = client.post(document + "/reverse", data={**hidden, "confirm": "yes", "reason_text": "录错了"})
        assert done.status_code == 303, done.text[:2000]
        reversal = html(client.get(done.headers["location"]))
        assert "冲销单" in reversal.xpath("//h1")[0].text_content()
        assert reversal.xpath('//*[@id="reverses"]/@href') == [document]
        assert counts(site)["documents"] == before + 1
        original = html(client.get(document))
        assert original.xpath('//*[@id="reversed-by"]') and not original.xpath('//*[@id="reverse"]')
        again = client.post(document + "/reverse", data={**hidden, "confirm": "yes"})
        assert again.status_code == 409 and counts(site)["documents"] == before + 1
        html(again)
        # The same form sent twice (a double click landing second) shows the reversal, not a refusal.
        twice = client.post(document + "/reverse", data={**hidden, "confirm": "yes", "reason_text": "录错了"})
        assert twice.status_code == 303 and twice.headers["location"] == done.headers["location"]
        assert counts(site)["documents"] == before + 1


def test_errors_are_shown_next_to_their_fields(site: Site) -> None:
    with site.login(Role.MANAGER) as client:
        before = counts(site)
        response = form_page(
            site,
            client,
            "receipt",
            {
                "counterparty": "nobody",
                "lines-0-code": "COLA",
                "lines-0-qty": "zwei",
                "lines-1-code": "",
                "lines-1-qty": "3",
                "lines-2-code": "COLA",
                "lines-2-qty": "1",
                "lines-2-price": "1.234",
                "lines-2-expiry": "2024-02-30",
            },
        )
        assert response.status_code == 422
        page = html(response)
        error_of(page, "counterparty")
        assert "整数" in error_of(page, "lines-0-qty")
        error_of(page, "lines-1-code")
        error_of(page, "lines-2-price")
        error_of(page, "lines-2-expiry")
        assert page.xpath('//*[@id="f-lines-0-qty"]/@value') == ["zwei"]  # what was typed stays
        empty = html(form_page(site, client, "stocktake", {}))
        assert empty.xpath('//*[@id="e-lines"]')
        assert counts(site) == before


def test_refusals_of_the_api_are_put_next_to_the_line(site: Site) -> None:
    with site.login(Role.MANAGER) as client:
        stocked = form_page(site, client, "receipt", {"lines-0-code": "COLA", "lines-0-qty": "2"})
        assert stocked.status_code == 303
        before = counts(site)
        unknown = form_page(
            site, client, "write_off", {"reason": "damaged", "lines-0-code": "NOPE", "lines-0-qty": "1"}
        )
        assert unknown.status_code == 422
        assert "NOPE" in error_of(html(unknown), "lines-0-code")
        short = form_page(
            site,
            client,
            "write_off",
            {
                "reason": "expired",
                "lines-0-code": "COLA",
                "lines-0-qty": "1",
                "lines-3-code": "RICE",
                "lines-3-qty": "999",
            },
        )
        assert short.status_code == 409
        assert "库存不足" in error_of(html(short), "lines-3-qty")
        other = form_page(site, client, "write_off", {"reason": "other", "lines-0-code": "COLA", "lines-0-qty": "1"})
        error_of(html(other), "reason_text")
        assert counts(site) == before


@pytest.mark.parametrize("kind", ["receipt", "transfer_out", "stocktake", "write_off"])
def test_each_form_renders_in_both_languages(site: Site, kind: str) -> None:
    for lang in ("zh", "en"):
        with site.login(Role.MANAGER, lang=lang) as client:
            page = html(client.get(f"/documents/new/{kind}"))
            assert page.xpath('//form[@id="document-form"]//input[@name="lines-4-code"]')
            assert page.xpath('//input[@name="_idem"]/@value')


def test_a_stocktake_and_a_transfer_out_post_from_the_page(site: Site) -> None:
    post_api(site, "receipt", {"lines": [{"code": "RICE", "qty": 2}, {"code": "COLA", "qty": 5}]})
    with site.login(Role.MANAGER) as client:
        counted = form_page(
            site, client, "stocktake", {"location": "floor", "lines-0-code": "COLA", "lines-0-qty": "0"}
        )
        assert counted.status_code == 303, counted.text[:3000]
        no_store = form_page(site, client, "transfer_out", {"lines-0-code": COLA_CASE, "lines-0-qty": "1"})
        error_of(html(no_store), "counterparty")
        shipped = form_page(
            site, client, "transfer_out", {"counterparty": "store-002", "lines-0-code": "RICE", "lines-0-qty": "1"}
        )
        assert shipped.status_code == 303, shipped.text[:3000]
        page = html(client.get(shipped.headers["location"]))
        assert "调拨出库单" in page.xpath("//h1")[0].text_content()


def test_roles_without_the_write_permission_get_no_form(site: Site) -> None:
    with site.login(Role.ACCOUNTANT) as client:
        assert client.get("/documents/new/receipt").status_code == 403
        assert not html(client.get("/documents")).xpath('//*[@id="new-documents"]')
    with site.login(Role.CLERK) as client:
        assert client.get("/documents/new/write_off").status_code == 403
        assert client.get("/documents/new/sale").status_code == 404
        assert client.get("/documents/999999").status_code == 404
        assert client.get("/documents/99999999999999999999999").status_code == 404


line_text = st.text(max_size=20) | st.from_regex(r"-?[0-9]{1,12}(\.[0-9]{0,4})?", fullmatch=True)
FIELDS = [
    "lines-0-code",
    "lines-0-qty",
    "lines-0-price",
    "lines-0-lot",
    "lines-0-expiry",
    "lines-0-unit",
    "lines-1-code",
    "lines-1-qty",
    "lines-199-qty",
    "lines-9999-code",
    "location",
    "counterparty",
    "ref_id",
    "reason",
    "reason_text",
    "note",
    "to_location",
]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(["receipt", "transfer_out", "stocktake", "write_off"]),
    data=st.dictionaries(st.sampled_from(FIELDS), line_text, max_size=8),
)
def test_garbage_forms_answer_errors_or_a_whole_document(site: Site, kind: str, data: dict[str, str]) -> None:
    with site.login(Role.MANAGER) as client:
        before = counts(site)
        response = form_page(site, client, kind, data)
        after = counts(site)
    assert response.status_code in (303, 409, 422), response.text[:2000]
    if response.status_code == 303:
        assert after["documents"] == before["documents"] + 1
    else:
        page = html(response)
        assert page.xpath('//*[@class="form-error"]') or page.xpath('//small[@class="error"]')
        assert after == before


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    params=st.dictionaries(
        st.sampled_from(["type", "since", "until", "q", "sku", "offset"]),
        st.text(max_size=70) | st.sampled_from(["receipt", "2024-06-01", "-1", "9" * 30]),
        max_size=6,
    )
)
def test_garbage_filters_answer_the_list_or_errors_next_to_them(site: Site, params: dict[str, str]) -> None:
    with site.login(Role.AUDITOR) as client:
        response = client.get("/documents", params=params)
    assert response.status_code in (200, 422), response.text[:2000]
    page = html(response)
    if response.status_code == 422:
        assert page.xpath('//small[@class="error"]')


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reason=st.text(max_size=600), confirm=st.sampled_from(["", "yes", "no", "YES", "\x00"]))
def test_garbage_reversal_forms_reverse_once_or_not_at_all(site: Site, reason: str, confirm: str) -> None:
    posted = post_api(site, "receipt", {"lines": [{"code": "RICE", "qty": 1}]})
    path = f"/documents/{posted['document_id']}/reverse"
    with site.login(Role.MANAGER) as client:
        hidden = {
            i.get("name"): i.get("value")
            for i in html(client.get(path)).xpath('//form[@id="reverse-form"]//input[@type="hidden"]')
        }
        before = counts(site)["documents"]
        response = client.post(path, data={**hidden, "reason_text": reason, "confirm": confirm})
        after = counts(site)["documents"]
    assert response.status_code in (303, 409, 422), response.text[:2000]
    if response.status_code == 303:
        assert confirm == "yes" and after == before + 1
    else:
        assert html(response).xpath('//small[@class="error"]') or html(response).xpath('//*[@class="form-error"]')
        assert after == before


def test_a_document_and_its_reversal_form_speak_english_when_switched(site: Site) -> None:
    receipt = post_api(site, "receipt", {"counterparty": "sup-1", "lines": [{"code": "RICE", "qty": 1}]})
    with site.login(Role.MANAGER, lang="en") as client:
        page = html(client.get(f"/documents/{receipt['document_id']}"))
        assert page.xpath("//h1")[0].text_content().startswith("Goods receipt")
        assert "Voucher" in page.text_content() and "Reverse" in page.xpath('//*[@id="reverse"]')[0].text_content()
        confirm = html(client.get(f"/documents/{receipt['document_id']}/reverse"))
        assert "I confirm reversing this document" in confirm.text_content()
