"""The supplier pages and the compliance desk over real HTTP against a served box: suppliers and their standing,
adding one, uploading a paper read by real OCR, reviewing the reading beside the image, confirming (a licence
address unlike the registered one freezes payments), rejecting, signing keys, and deciding freezes, review
tickets and bank account changes where the user may; garbage in every form is refused next to its field."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.security.roles import Role
from tests.edge.web.pages.pagedata import api, html, ok, text_of
from tests.edge.web.pages.site import Site
from tools.render_licence import PaperFacts, render

TRACE = re.compile(r"Traceback|File \"/|\.py\", line")
FACTS = PaperFacts()  # 上海华润饮料有限公司, 91310115MA1K3YJ71K, 上海市浦东新区张江路88号
_ids = itertools.count(1)


def no_trace(response: Any) -> None:
    assert not TRACE.search(response.text), response.text[:2000]


def new_supplier(site: Site, **fields: Any) -> str:
    supplier_id = f"sup-page-{next(_ids)}"
    body = {"id": supplier_id, "name": FACTS.name, **fields}
    ok(api(site, "POST", "/api/v1/suppliers", Role.PURCHASER, json=body), 201)
    return supplier_id


def papers(site: Site, supplier_id: str) -> list[dict[str, Any]]:
    return list(ok(api(site, "GET", f"/api/v1/suppliers/{supplier_id}/papers")))


def upload(site: Site, client: Any, supplier_id: str, kind: str, data: bytes, name: str = "licence.png") -> Any:
    csrf = site.csrf(client, f"/suppliers/{supplier_id}")
    return client.post(
        f"/suppliers/{supplier_id}/papers",
        data={"_csrf": csrf, "kind": kind},
        files={"file": (name, data, "application/octet-stream")},
    )


def test_the_list_shows_each_suppliers_standing(site: Site) -> None:
    with site.login(Role.MANAGER) as client:
        page = client.get("/suppliers")
        assert page.status_code == 200
        row = html(page).xpath("//tr[@data-supplier='sup-1']")[0]
        assert "华润饮料" in row.text_content() and "资质不全" in row.text_content()
        assert html(page).xpath("//form[@action='/suppliers']")
    with site.login(Role.CLERK) as client:
        page = client.get("/suppliers")
        assert page.status_code == 200 and not html(page).xpath("//form[@action='/suppliers']")
        assert client.get("/suppliers/sup-1").status_code == 403
        assert client.get("/compliance").status_code == 403


def test_a_supplier_is_added_from_the_page_and_bad_fields_are_named(site: Site) -> None:
    with site.login(Role.PURCHASER) as client:
        bad = site.post_form(
            client,
            "/suppliers",
            {"id": "sup-page-x", "name": "x", "credit_code": "91310115MA1K3YJ71D"},
            page="/suppliers",
        )
        assert bad.status_code == 422 and text_of(bad, "//small[@id='e-credit_code']")
        assert html(bad).xpath("//input[@name='id']/@value") == ["sup-page-x"]
        good = {"id": "sup-page-new", "name": FACTS.name, "credit_code": FACTS.credit_code, "food_supplier": "1"}
        done = site.post_form(client, "/suppliers", good, page="/suppliers")
        assert done.status_code == 303 and done.headers["location"] == "/suppliers/sup-page-new"
        again = site.post_form(client, "/suppliers", good, page="/suppliers")
        assert again.status_code == 409 and text_of(again, "//small[@id='e-id']")
    shown = ok(api(site, "GET", "/api/v1/suppliers/sup-page-new"))
    assert shown["food_supplier"] is True and shown["credit_code"] == FACTS.credit_code


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    supplier_id=st.one_of(st.text(max_size=70), st.just("")),
    name=st.text(max_size=210),
    credit_code=st.text(max_size=45),
)
def test_garbage_suppliers_are_refused_next_to_the_field(
    site: Site, supplier_id: str, name: str, credit_code: str
) -> None:
    before = len(ok(api(site, "GET", "/api/v1/suppliers")))
    with site.login(Role.PURCHASER) as client:
        form = {"id": supplier_id, "name": name, "credit_code": credit_code}
        response = site.post_form(client, "/suppliers", form, page="/suppliers")
    no_trace(response)
    if response.status_code == 303:  # a valid supplier after all
        return
    assert response.status_code in (409, 422), response.text
    assert any(text_of(response, f"//small[@id='e-{n}']") for n in ("id", "name", "credit_code")), response.text
    assert len(ok(api(site, "GET", "/api/v1/suppliers"))) == before


def test_a_licence_is_uploaded_read_and_confirmed_beside_its_image(site: Site) -> None:
    supplier_id = new_supplier(site, registered_address="上海市徐汇区漕溪北路1号", credit_code=FACTS.credit_code)
    data = render("business_licence", FACTS, width=1000)
    with site.login(Role.MANAGER) as client:
        done = upload(site, client, supplier_id, "business_licence", data, name="营业执照 扫描件.png")
        assert done.status_code == 303, done.text
        paper_url = done.headers["location"]
        page = client.get(paper_url)
        assert page.status_code == 200
        doc = html(page)
        assert doc.xpath("//input[@name='name']/@value") == [FACTS.name]
        assert doc.xpath("//input[@name='credit_code']/@value") == [FACTS.credit_code]
        assert doc.xpath("//input[@name='address']/@value") == [FACTS.address]
        image_src = doc.xpath("//section[contains(@class, 'paper-image')]//img/@src")[0]
        assert doc.xpath("//svg/polygon")  # the OCR boxes over the image
        image = client.get(image_src)
        assert (image.status_code, image.headers["content-type"], image.content) == (200, "image/png", data)
        assert "统一社会信用代码" in text_of(page, "//ol[@class='ocr-lines']")

        inputs = doc.xpath("//form[@id='confirm-paper']//input")
        form = {i.get("name"): i.get("value") for i in inputs if i.get("name") and i.get("name") != "_csrf"}
        if "long_term" in form and not doc.xpath("//input[@name='long_term']/@checked"):
            del form["long_term"]
        wrong = site.post_form(client, f"{paper_url}/confirm", {**form, "credit_code": "91310115MA1K3YJ71D"})
        assert wrong.status_code == 422 and text_of(wrong, "//small[@id='e-credit_code']")
        assert html(wrong).xpath("//input[@name='credit_code']/@value") == ["91310115MA1K3YJ71D"]  # kept as typed
        no_end = site.post_form(client, f"{paper_url}/confirm", {**form, "valid_to": ""})
        assert no_end.status_code == 422 and text_of(no_end, "//small[@id='e-valid_to']")
        bad_date = site.post_form(client, f"{paper_url}/confirm", {**form, "valid_to": "2038-13-45"})
        assert bad_date.status_code == 422 and text_of(bad_date, "//small[@id='e-valid_to']")
        assert papers(site, supplier_id)[0]["state"] == "uploaded"

        confirmed = site.post_form(client, f"{paper_url}/confirm", form, page=paper_url)
        assert confirmed.status_code == 303, confirmed.text
        after = client.get(paper_url)
        assert html(after).xpath("//h1/span/@data-state") == ["confirmed"]
        assert "冻结" in text_of(after, "//p[@class='flash']")  # the licence's address is not the registered one
    standing = ok(api(site, "GET", f"/api/v1/suppliers/{supplier_id}/compliance"))
    assert standing["frozen"] is True

    # The manager confirmed, so the freeze is theirs: another reviewer resolves its ticket.
    ticket = ok(api(site, "GET", "/api/v1/review-tickets", params={"state": "open", "supplier": supplier_id}))[0]
    with site.login(Role.MANAGER) as client:
        desk = client.get("/compliance")
        card = html(desk).get_element_by_id(f"ticket-{ticket['id']}")
        assert not card.xpath(".//form") and "另一位审核人" in card.text_content()
    with site.login(Role.ADMIN) as client:
        card = html(client.get("/compliance")).get_element_by_id(f"ticket-{ticket['id']}")
        assert card.xpath(".//input[@name='accept_licence_address']")
        form = {"resolution": "营业执照为准", "accept_licence_address": "1"}
        done = site.post_form(client, f"/compliance/tickets/{ticket['id']}/resolve", form, page="/compliance")
        assert done.status_code == 303, done.text
        assert "已处理" in text_of(client.get("/compliance"), "//p[@class='flash']")
    standing = ok(api(site, "GET", f"/api/v1/suppliers/{supplier_id}/compliance"))
    assert standing["frozen"] is False
    assert ok(api(site, "GET", f"/api/v1/suppliers/{supplier_id}"))["registered_address"] == FACTS.address


def test_bad_uploads_are_refused_next_to_the_field_and_record_nothing(site: Site) -> None:
    supplier_id = new_supplier(site)
    with site.login(Role.PURCHASER) as client:
        for kind, data, field in (
            ("business_licence", b"GIF89a not a paper", "file"),
            ("business_licence", b"", "file"),
            ("passport", b"\x89PNG\r\n\x1a\n", "kind"),
        ):
            refused = upload(site, client, supplier_id, kind, data)
            no_trace(refused)
            assert refused.status_code in (413, 415, 422), refused.text
            assert text_of(refused, f"//*[@id='e-{field}']"), (kind, data)
        csrf = site.csrf(client, f"/suppliers/{supplier_id}")
        missing = client.post(f"/suppliers/{supplier_id}/papers", data={"_csrf": csrf, "kind": "bank_account"})
        assert missing.status_code == 422 and text_of(missing, "//*[@id='e-file']")
    assert papers(site, supplier_id) == []


def test_a_paper_is_rejected_with_a_reason(site: Site) -> None:
    supplier_id = new_supplier(site)
    with site.login(Role.PURCHASER) as client:
        paper_url = upload(site, client, supplier_id, "general_taxpayer", render("general_taxpayer", FACTS, width=800))
        paper_url = paper_url.headers["location"]
        empty = site.post_form(client, f"{paper_url}/reject", {"reason": ""}, page=paper_url)
        assert empty.status_code == 422 and text_of(empty, "//small[@id='e-reason']")
        done = site.post_form(client, f"{paper_url}/reject", {"reason": "图片模糊"}, page=paper_url)
        assert done.status_code == 303
        assert "图片模糊" in text_of(client.get(paper_url))
    assert papers(site, supplier_id)[0]["state"] == "rejected"


def test_another_suppliers_paper_is_not_found_under_this_one(site: Site) -> None:
    with site.login(Role.MANAGER) as client:
        assert client.get("/suppliers/sup-1/papers/1").status_code == 404
        assert client.get("/suppliers/no-such-supplier").status_code == 404
        assert client.get("/suppliers/bad%20id!").status_code == 404


def test_signing_keys_are_registered_from_the_supplier_page(site: Site) -> None:
    from edge.devices.delivery_note import generate_key_pair, key_id, public_key_text

    _, public = generate_key_pair()
    with site.login(Role.PURCHASER) as client:
        bad = site.post_form(client, "/suppliers/sup-1/signing-keys", {"public_key": "not a key"}, page="/suppliers")
        assert bad.status_code == 422 and text_of(bad, "//small[@id='e-public_key']")
        done = site.post_form(client, "/suppliers/sup-1/signing-keys", {"public_key": public_key_text(public)})
        assert done.status_code == 303
        assert html(client.get("/suppliers/sup-1")).xpath(f"//tr[@data-key='{key_id(public)}']")


def test_freezes_are_lifted_by_another_reviewer_with_a_reason(site: Site) -> None:
    supplier_id = new_supplier(site)
    freeze = ok(api(site, "POST", f"/api/v1/suppliers/{supplier_id}/freezes", Role.ADMIN, json={"note": "核对"}), 201)
    with site.login(Role.ADMIN) as client:  # who froze it cannot lift it
        desk = client.get("/compliance")
        card = html(desk).get_element_by_id(f"freeze-{freeze['id']}")
        assert not card.xpath(".//form")
        assert "冻结" in text_of(desk, f"//tr[@data-unpayable='{supplier_id}']")
    with site.login(Role.MANAGER) as client:
        empty = site.post_form(client, f"/compliance/freezes/{freeze['id']}/lift", {"reason": " "}, page="/compliance")
        assert empty.status_code == 422
        assert text_of(empty, f"//small[@id='e-freeze-{freeze['id']}-reason']")
        done = site.post_form(client, f"/compliance/freezes/{freeze['id']}/lift", {"reason": "已核实"})
        assert done.status_code == 303
        assert not html(client.get("/compliance")).xpath(f"//*[@id='freeze-{freeze['id']}']")
        again = site.post_form(client, f"/compliance/freezes/{freeze['id']}/lift", {"reason": "再次"})
        assert again.status_code == 409  # already lifted: said in words above, the freeze is no longer listed
        assert text_of(again, "//div[@id='e-elsewhere']")
    assert ok(api(site, "GET", f"/api/v1/suppliers/{supplier_id}/compliance"))["frozen"] is False


def test_bank_account_changes_are_decided_on_the_desk(site: Site) -> None:
    supplier_id = new_supplier(site)
    body = {"bank_name": "招商银行上海分行", "bank_account": "6225880123456789", "reason": "换开户行"}
    change = ok(api(site, "POST", f"/api/v1/suppliers/{supplier_id}/bank-account-changes", json=body), 201)
    with site.login(Role.MANAGER) as client:  # the requester
        card = html(client.get("/compliance")).get_element_by_id(f"change-{change['id']}")
        assert not card.xpath(".//form")
        # A freeze of a bank change is lifted by deciding the change, not by hand.
        freeze_card = html(client.get("/compliance")).get_element_by_id(f"freeze-{change['freeze']}")
        assert not freeze_card.xpath(".//form")
    with site.login(Role.ADMIN) as client:
        empty = site.post_form(
            client, f"/compliance/bank-changes/{change['id']}/reject", {"note": ""}, page="/compliance"
        )
        assert empty.status_code == 422 and text_of(empty, f"//small[@id='e-change-{change['id']}-note']")
        assert client.get("/compliance/bank-changes/1/steal").status_code in (403, 404, 405)
        done = site.post_form(client, f"/compliance/bank-changes/{change['id']}/approve", {})
        assert done.status_code == 303
    shown = ok(api(site, "GET", f"/api/v1/suppliers/{supplier_id}"))
    assert shown["bank_account"] == "6225880123456789"


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reason=st.one_of(st.text(max_size=20), st.text(min_size=501, max_size=700), st.just("\x00")))
def test_garbage_reasons_never_fail_and_half_decide_nothing(site: Site, reason: str) -> None:
    supplier_id = new_supplier(site)
    made = ok(api(site, "POST", f"/api/v1/suppliers/{supplier_id}/freezes", Role.ADMIN, json={"note": "x"}), 201)
    freeze_id = int(made["id"])
    with site.login(Role.MANAGER) as client:
        response = site.post_form(
            client, f"/compliance/freezes/{freeze_id}/lift", {"reason": reason}, page="/compliance"
        )
    no_trace(response)
    assert response.status_code in (303, 422), response.text
    lifted = not any(f["id"] == freeze_id for f in ok(api(site, "GET", "/api/v1/freezes", params={"open": "true"})))
    if response.status_code == 422:
        assert not lifted and text_of(response, f"//small[@id='e-freeze-{freeze_id}-reason']")
    else:
        assert lifted


def test_every_page_reads_in_english(site: Site) -> None:
    with site.login(Role.ADMIN, lang="en") as client:
        for path, heading in (
            ("/replenishment", "Reorder suggestions"),
            ("/replenishment/emergency", "Emergency request"),
            ("/receiving", "Receiving"),
            ("/suppliers", "Suppliers"),
            ("/suppliers/sup-1", "华润饮料"),
            ("/compliance", "Compliance"),
        ):
            page = client.get(path)
            assert page.status_code == 200, (path, page.text)
            assert heading in text_of(page, "//h1"), path
            assert page.headers["content-language"] == "en"


@pytest.fixture(scope="module")
def uploaded_paper(site: Site) -> str:
    """A general-taxpayer proof uploaded (read by OCR) and not yet confirmed: its page's URL."""
    supplier_id = new_supplier(site)
    with site.login(Role.PURCHASER) as client:
        done = upload(site, client, supplier_id, "general_taxpayer", render("general_taxpayer", FACTS, width=800))
        assert done.status_code == 303, done.text
        return str(done.headers["location"])


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    fields=st.dictionaries(
        st.sampled_from(["name", "credit_code", "address", "valid_from", "valid_to", "established", "bank_account"]),
        st.one_of(st.text(max_size=40), st.text(min_size=490, max_size=520), st.just("2024-02-30")),
        max_size=4,
    ),
    long_term=st.booleans(),
)
def test_garbage_paper_fields_are_refused_next_to_the_field(
    site: Site, uploaded_paper: str, fields: dict[str, str], long_term: bool
) -> None:
    with site.login(Role.PURCHASER) as client:
        form = {**fields, **({"long_term": "1"} if long_term else {})}
        response = site.post_form(client, f"{uploaded_paper}/confirm", form, page=uploaded_paper)
    no_trace(response)
    assert response.status_code in (303, 409, 422), response.text
    paper_id = int(uploaded_paper.rsplit("/", 1)[1])
    state = ok(api(site, "GET", f"/api/v1/papers/{paper_id}"))["state"]
    if response.status_code == 422:
        assert html(response).xpath("//small[@class='error']"), response.text
        assert state == "uploaded"
    else:
        assert state == "confirmed"


def test_a_ticket_is_not_resolved_without_a_resolution(site: Site) -> None:
    supplier_id = new_supplier(site)
    freeze = ok(api(site, "POST", f"/api/v1/suppliers/{supplier_id}/freezes", Role.ADMIN, json={"note": "查"}), 201)
    ticket = freeze["ticket"]
    with site.login(Role.MANAGER) as client:
        for resolution in ("", " ", "x" * 501):
            refused = site.post_form(client, f"/compliance/tickets/{ticket}/resolve", {"resolution": resolution})
            assert refused.status_code == 422
            assert text_of(refused, f"//small[@id='e-ticket-{ticket}-resolution']")
        assert client.get("/compliance").status_code == 200
    assert ok(api(site, "GET", f"/api/v1/review-tickets/{ticket}"))["state"] == "open"
    assert ok(api(site, "GET", f"/api/v1/suppliers/{supplier_id}/compliance"))["frozen"] is True
