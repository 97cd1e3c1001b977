"""The transfers page over real HTTP: other stores' stock of an item (the last snapshot when the aggregator cannot
answer), incoming and outgoing transfers, and receiving an incoming transfer with counted quantities."""

from __future__ import annotations

import re
from typing import Any

import httpx
import lxml.html
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.db import connect
from edge.security.roles import Role
from edge.sync import transfers as tr
from tests.edge.web.pages.site import Site

TRACE = re.compile(r"Traceback|File \"/|sqlite3\.|NameError|KeyError|TypeError|UndefinedError")


def html(response: httpx.Response) -> Any:
    assert not TRACE.search(response.text), response.text[:2000]
    return lxml.html.fromstring(response.text)


def incoming(transfer_id: int, state: str = "in_transit") -> dict[str, Any]:
    return {
        "id": transfer_id,
        "from_store": "store-002",
        "to_store": "store-001",
        "out_doc_id": 40 + transfer_id,
        "out_doc_no": f"TO20240601-{transfer_id:06d}",
        "shipped_date": "2024-06-01",
        "state": state,
        "shipped_value_fen": 4520 + 5400,
        "received_value_fen": None,
        "in_doc_no": None,
        "settle_doc_no": None,
        "parts": [
            {"part_no": 1, "sku": "COLA", "lot": "", "qty": 20, "value_fen": 4520, "expiry": None},
            {"part_no": 2, "sku": "MILK", "lot": "M-9", "qty": 6, "value_fen": 5400, "expiry": "2024-06-08"},
        ],
    }


def write(site: Site, fn: Any, *args: Any) -> None:
    """Set up what the aggregator would have delivered (a writer job's function, in its own transaction)."""
    conn = connect(site.box.db_path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        fn(conn, *args)
        conn.execute("COMMIT")
    finally:
        conn.close()


def hidden_of(page: Any, form: str) -> dict[str, str]:
    return {i.get("name"): i.get("value") for i in page.xpath(f'//form[@id="{form}"]//input[@type="hidden"]')}


def test_other_stores_stock_falls_back_to_the_last_snapshot_with_the_reason(site: Site) -> None:
    snapshot = {
        "store": "store-002",
        "rows": [{"sku": "MILK", "qty": 30, "min_shelf_life_days": 5, "last_outbound_date": "2024-05-31"}],
    }
    with httpx.Client(base_url=site.url, headers=site.box.auth(Role.MANAGER), timeout=30) as http:
        loaded = http.post("/api/v1/replenishment/peer-stock", json=snapshot)
        assert loaded.status_code == 200, loaded.text
    with site.login(Role.CLERK) as client:
        page = html(client.get("/transfers", params={"sku": "MILK"}))
        assert "sync_url" in page.xpath('//*[@id="sources-problem"]')[0].text_content()
        rows = page.xpath('//table[@id="sources"]/tbody/tr')
        assert len(rows) == 1 and rows[0].get("data-store") == "store-002"
        text = rows[0].text_content()
        assert "邻店 Neighbour" in text and "30" in text and "5 天" in text and "2024-05-31" in text
        assert page.xpath('//*[@data-live-stock="MILK"]')


def test_an_item_is_found_by_pinyin_or_a_choice_is_offered(site: Site) -> None:
    with site.login(Role.CLERK, lang="en") as client:
        page = html(client.get("/transfers", params={"sku": "xianniunai"}))
        assert "MILK" in page.xpath("//h3")[0].text_content()
        none = html(client.get("/transfers", params={"sku": "zzzqqq"}))
        assert none.xpath('//*[@id="no-item"]')
        bad = client.get("/transfers", params={"sku": "x" * 101})
        assert bad.status_code == 422 and html(bad).xpath('//*[@id="e-sku"]')


def test_an_incoming_transfer_is_received_with_counted_quantities(site: Site) -> None:
    write(site, tr.store_transfers, "incoming", [incoming(7)], "2024-06-01T03:00:00+00:00")
    with site.login(Role.CLERK) as client:
        listing = html(client.get("/transfers"))
        row = listing.xpath('//table[@id="incoming"]/tbody/tr[@data-id="7"]')[0]
        assert "在途" in row.text_content() and "邻店 Neighbour" in row.text_content()
        assert row.xpath(".//a/@href")[-1] == "/transfers/incoming/7"
        form = html(client.get("/transfers/incoming/7"))
        assert form.xpath('//*[@id="f-part-1"]/@value') == ["20"]
        hidden = hidden_of(form, "receive-form")
        bad = client.post("/transfers/incoming/7", data={**hidden, "part-1": "-1", "part-2": "six", "location": "moon"})
        assert bad.status_code == 422
        bad_page = html(bad)
        for field in ("part-1", "part-2", "location"):
            assert bad_page.xpath(f'//*[@id="e-{field}"]'), field
        before = site.box.counts()["documents"]
        done = client.post("/transfers/incoming/7", data={**hidden, "part-1": "18", "part-2": "6", "note": "少两听"})
        assert done.status_code == 303, done.text[:2000]
        again = client.post("/transfers/incoming/7", data={**hidden, "part-1": "18", "part-2": "6"})
        assert again.headers.get("location") == done.headers["location"]  # the same form posts once
        assert site.box.counts()["documents"] == before + 1
        document = html(client.get(done.headers["location"]))
        assert "调拨入库单" in document.xpath("//h1")[0].text_content()
        lines = document.xpath('//table[@id="lines"]/tbody/tr')
        assert "18" in lines[0].text_content() and "M-9" in lines[1].text_content()
        received = html(client.get("/transfers")).xpath('//table[@id="incoming"]/tbody/tr[@data-id="7"]')[0]
        assert "/transfers/incoming/7" not in received.xpath(".//a/@href")


def test_readers_cannot_receive_and_unknown_transfers_are_not_found(site: Site) -> None:
    write(site, tr.store_transfers, "incoming", [incoming(8)], "2024-06-01T03:00:00+00:00")
    with site.login(Role.ACCOUNTANT) as client:
        row = html(client.get("/transfers")).xpath('//table[@id="incoming"]/tbody/tr[@data-id="8"]')[0]
        assert "/transfers/incoming/8" not in row.xpath(".//a/@href")
        assert client.get("/transfers/incoming/8").status_code == 403
    with site.login(Role.MANAGER) as client:
        assert client.get("/transfers/incoming/999").status_code == 404
        assert client.get("/transfers/incoming/99999999999999999999999").status_code == 404


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.dictionaries(
        st.sampled_from(["part-1", "part-2", "part-3", "location", "note"]),
        st.text(max_size=12) | st.integers(-5, 10**9).map(str),
        max_size=5,
    )
)
def test_garbage_counts_are_errors_next_to_the_part_or_one_whole_receipt(site: Site, data: dict[str, str]) -> None:
    write(site, tr.store_transfers, "incoming", [incoming(9)], "2024-06-01T03:00:00+00:00")
    with site.login(Role.MANAGER) as client:
        page = client.get("/transfers/incoming/9")
        if page.status_code != 200 or 'id="receive-form"' not in page.text:
            return  # received by an earlier example
        hidden = hidden_of(html(page), "receive-form")
        before = site.box.counts()
        response = client.post("/transfers/incoming/9", data={**hidden, **data})
        after = site.box.counts()
    assert response.status_code in (303, 409, 422), response.text[:2000]
    parsed = html(response) if response.status_code != 303 else None
    if parsed is not None:
        assert parsed.xpath('//small[@class="error"]') or parsed.xpath('//*[@class="form-error"]')
        assert after == before
    else:
        assert after["documents"] == before["documents"] + 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sku=st.text(max_size=120))
def test_garbage_item_look_ups_answer_a_page_never_a_trace(site: Site, sku: str) -> None:
    with site.login(Role.CLERK) as client:
        response = client.get("/transfers", params={"sku": sku})
    assert response.status_code in (200, 422), response.text[:2000]
    page = html(response)
    if response.status_code == 422:
        assert page.xpath('//*[@id="e-sku"]')


def test_the_transfers_page_speaks_english_when_switched(site: Site) -> None:
    write(site, tr.store_transfers, "incoming", [incoming(11)], "2024-06-01T03:00:00+00:00")
    with site.login(Role.MANAGER, lang="en") as client:
        page = html(client.get("/transfers", params={"sku": "RICE"}))
        text = page.text_content()
        for words in (
            "Other stores' stock",
            "Incoming (sent to this store)",
            "Outgoing (sent by this store)",
            "In transit",
        ):
            assert words in text, words
        form = html(client.get("/transfers/incoming/11"))
        assert "Receive transfer TO20240601-000011" in form.xpath("//h1")[0].text_content()
