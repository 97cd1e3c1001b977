"""Garbage on the REST input, over real HTTP to uvicorn: always a 4xx JSON error, never a half-write."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.ledger.commands import POSTABLE_TYPES
from tests.edge.web.apibox import SEEDED_CODES, ServedBox, assert_error_shape

DOC_TYPES = [t.value for t in POSTABLE_TYPES]

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
# Never a code the box knows, so no body can be a valid posting by chance.
unknown_codes = st.text(min_size=0, max_size=80).filter(lambda c: c not in SEEDED_CODES)
fieldish = st.one_of(scalars, unknown_codes, st.integers(min_value=-(2**70), max_value=2**70))
lines = st.lists(
    st.fixed_dictionaries(
        {"code": unknown_codes | scalars, "qty": fieldish},
        optional={
            "price_fen": fieldish,
            "unit": fieldish,
            "lot": fieldish,
            "expiry": st.dates().map(str) | fieldish,
            "location": fieldish,
            "colour": fieldish,
        },
    ),
    max_size=4,
)
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"lines": lines | json_values},
        optional={
            "location": fieldish,
            "to_location": fieldish,
            "counterparty": fieldish,
            "ref_id": fieldish,
            "reason": st.sampled_from(["damaged_packaging", "其他", "expired", "other"]) | fieldish,
            "reason_text": fieldish,
            "note": fieldish,
            "payment": fieldish,
        },
    ),
)


@pytest.fixture(scope="module")
def client(served_box: ServedBox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served_box.url, headers=served_box.auth("admin"), timeout=10) as http:
        yield http


def assert_refused_cleanly(response: httpx.Response, served_box: ServedBox, before: dict[str, int]) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert_error_shape(response)
    assert served_box.counts() == before


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc_type=st.sampled_from(DOC_TYPES), body=bodies)
def test_garbage_json_bodies_are_refused_and_write_nothing(
    served_box: ServedBox, client: httpx.Client, doc_type: str, body: Any
) -> None:
    before = served_box.counts()
    content = json.dumps(body, allow_nan=True).encode()
    response = client.post(
        f"/api/v1/documents/{doc_type}",
        content=content,
        headers={"Idempotency-Key": str(uuid.uuid4()), "Content-Type": "application/json"},
    )
    assert_refused_cleanly(response, served_box, before)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    doc_type=st.sampled_from(DOC_TYPES),
    raw=st.binary(max_size=300),
    content_type=st.sampled_from(
        ["application/json", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
    ),
)
def test_garbage_bytes_are_refused_and_write_nothing(
    served_box: ServedBox, client: httpx.Client, doc_type: str, raw: bytes, content_type: str
) -> None:
    before = served_box.counts()
    response = client.post(
        f"/api/v1/documents/{doc_type}",
        content=raw,
        headers={"Idempotency-Key": str(uuid.uuid4()), "Content-Type": content_type},
    )
    assert_refused_cleanly(response, served_box, before)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"null",
        b'{"lines": [{"code": "\\ud800", "qty": 1}]}',
        b'{"lines": [{"code": "COLA", "qty": NaN}]}',
        b'{"lines": [{"code": "COLA", "qty": 1e400}]}',
        b'{"lines": [{"code": "COLA", "qty": 99999999999999999999999999999}]}',
        b'{"lines": [{"code": "COLA", "qty": 1}], "location": "\\u0000"}',
        b'{"lines": [{"code": "COLA", "qty": 1, "lot": ""}], "note": "' + b"x" * 600 + b'"}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"lines": [{"code": "COLA", "qty": 1}], "ref_id": 9223372036854775808}',
        b'{"lines": [' + b'{"code": "NOPE", "qty": 1},' * 1500 + b'{"code": "NOPE", "qty": 1}]}',
    ],
    ids=[
        "empty",
        "null",
        "lone-surrogate",
        "nan",
        "infinite",
        "huge-int",
        "nul-location",
        "long-note",
        "deep-nesting",
        "ref-id-overflow",
        "too-many-lines",
    ],
)
def test_nasty_bodies_are_refused_and_write_nothing(
    served_box: ServedBox, client: httpx.Client, content: bytes
) -> None:
    before = served_box.counts()
    for doc_type in ("sale", "receipt", "transfer_in"):
        response = client.post(
            f"/api/v1/documents/{doc_type}",
            content=content,
            headers={"Idempotency-Key": str(uuid.uuid4()), "Content-Type": "application/json"},
        )
        assert_refused_cleanly(response, served_box, before)


def test_oversized_bodies_are_413_with_or_without_content_length(served_box: ServedBox, client: httpx.Client) -> None:
    before = served_box.counts()
    big = b"{" + b" " * (1024 * 1024 + 1) + b"}"

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    headers = {"Idempotency-Key": "too-big", "Content-Type": "application/json"}
    declared = client.post("/api/v1/documents/sale", content=big, headers=headers)
    assert declared.status_code == 413
    assert_error_shape(declared)
    streamed = client.post("/api/v1/documents/sale", content=chunks(), headers=headers)
    assert "content-length" not in streamed.request.headers
    assert streamed.status_code == 413
    assert assert_error_shape(streamed)["code"] == "payload_too_large"
    assert served_box.counts() == before


def test_box_keeps_serving_after_the_garbage(served_box: ServedBox, client: httpx.Client) -> None:
    response = client.post(
        "/api/v1/documents/receipt",
        json={"counterparty": "sup-1", "lines": [{"code": "COLA", "qty": 3, "price_fen": 226}]},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code == 201, response.text
    verify = client.post("/api/v1/ledger/verify")
    assert verify.json()["ok"] is True
