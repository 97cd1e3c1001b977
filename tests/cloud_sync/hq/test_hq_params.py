"""Garbage in the HQ API's parameters is refused with 422 and a Chinese and English message, never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cloud_sync.hq.seed import HqClient, build_chain

ROUTES = {
    "/api/v1/hq/stores": ["store", "company", "stale"],
    "/api/v1/hq/sync-lag": ["store", "company", "stale"],
    "/api/v1/hq/stock": ["store", "company", "sku", "category", "location"],
    "/api/v1/hq/sales": ["group_by", "from", "to", "store", "company", "sku", "category"],
    "/api/v1/hq/vouchers": ["company", "period", "store", "account"],
    "/api/v1/hq/trial-balance": ["company", "period", "store"],
    "/api/v1/hq/suppliers": ["store", "company", "supplier", "frozen", "attention", "days"],
}
COMMON = ["limit", "offset", "format"]
REQUIRED = {"/api/v1/hq/vouchers": {"company": "co-1", "period": "2026-12"}}
REQUIRED["/api/v1/hq/trial-balance"] = REQUIRED["/api/v1/hq/vouchers"]

garbage = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=80),
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["", "0", "-1", "10001", "2026-13", "2026-02-30", "store,day,day", "x" * 65, "%", "_", "\x00"]),
)


@pytest.fixture
def client(cloud_db_url: str) -> Iterator[HqClient]:
    app, token = build_chain(cloud_db_url)
    yield HqClient(app, token)
    app.state.engine.dispose()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(sorted(ROUTES)), data=st.data())
def test_garbage_parameters_get_422_or_an_answer_never_a_crash(
    client: HqClient, route: str, data: st.DataObject
) -> None:
    names = data.draw(st.lists(st.sampled_from(ROUTES[route] + COMMON), min_size=1, max_size=3, unique=True))
    params = {**REQUIRED.get(route, {}), **{n: data.draw(garbage) for n in names}}
    response = client.get(route + "?" + urlencode(params))
    assert response.status_code in (200, 422), (params, response.text)
    if response.status_code == 422:
        body = response.json()
        assert body["code"] in ("hq_bad_parameter", "validation_error")
        assert body["message"] and body["message_en"]


BAD = [
    ("/api/v1/hq/sales?group_by=store,week", "group_by"),
    ("/api/v1/hq/sales?from=2026-12-40", "from"),
    ("/api/v1/hq/sales?from=2026-12-05&to=2026-12-01", "from"),
    ("/api/v1/hq/stock?limit=10001", "limit"),
    ("/api/v1/hq/stock?offset=-1", "offset"),
    ("/api/v1/hq/stock?store=S1", "store"),
    ("/api/v1/hq/stock?format=pdf", "format"),
    ("/api/v1/hq/vouchers?company=co-1&period=2026-13", "period"),
    ("/api/v1/hq/vouchers?company=co-1&period=2026-12&account=1%25", "account"),
    ("/api/v1/hq/trial-balance?period=2026-12", "company"),
    ("/api/v1/hq/suppliers?days=-3", "days"),
]


def test_bad_parameters_name_the_field(client: HqClient) -> None:
    for query, field in BAD:
        response = client.get(query)
        assert response.status_code == 422, query
        body = response.json()
        assert field in body["message"] and field in body["message_en"], (query, body)
