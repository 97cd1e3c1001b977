"""Store authentication at the aggregator: HMAC signatures over real HTTP, the clock window, key rotation and
revocation, and every refusal kept in `rejections` and counted."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud_sync.app import create_app
from cloud_sync.auth import revoke_key
from cloud_sync.config import CloudSettings
from cloud_sync.errors import CloudError
from cloud_sync.tables import rejections, stores
from edge.sync.protocol import SERVER_TIME_HEADER, StoreKey, encode_body, generate_store_key, parse_store_key
from tests.cloud_sync.aggregator import StoreSession, register_store, rows_of, sale


class Clock:
    """The aggregator's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def aggregator(db_url: str, clock: Clock | None = None, **settings: Any) -> FastAPI:
    return create_app(CloudSettings(db_url=db_url, **settings), clock=clock or Clock())


def codes(app: FastAPI) -> list[str]:
    with app.state.engine.connect() as conn:
        return [r.code for r in conn.execute(sa.select(rejections.c.code).order_by(rejections.c.id))]


def counted(app: FastAPI, code: str) -> float:
    value = app.state.metrics.registry.get_sample_value("storebox_cloud_rejections_total", {"code": code})
    return value or 0.0


def test_a_signed_request_is_answered_with_the_server_time(cloud_db_url: str) -> None:
    app = aggregator(cloud_db_url)
    key = register_store(app.state.engine, "s1")
    answer = asyncio.run(StoreSession(app, "s1", key).get("/api/v1/sync/state"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["store"] == "s1"
    assert answer.json()["applied_through"] == 0
    assert abs(int(answer.headers[SERVER_TIME_HEADER]) - datetime.now(UTC).timestamp()) < 120


def test_unsigned_requests_are_refused_and_still_carry_the_server_time(cloud_db_url: str) -> None:
    app = aggregator(cloud_db_url)
    register_store(app.state.engine, "s1")

    async def go() -> httpx.Response:
        async with StoreSession(app, "s1", generate_store_key()).client() as c:
            return await c.get("/api/v1/sync/state")

    answer = asyncio.run(go())
    assert answer.status_code == 401
    assert answer.json()["code"] == "auth_missing"
    assert SERVER_TIME_HEADER in answer.headers
    assert codes(app) == ["auth_missing"]
    assert counted(app, "auth_missing") == 1


def test_a_wrong_secret_is_a_bad_signature(cloud_db_url: str) -> None:
    app = aggregator(cloud_db_url)
    key = register_store(app.state.engine, "s1")
    forged = StoreKey(key.key_id, generate_store_key().secret)
    answer = asyncio.run(StoreSession(app, "s1", forged).get("/api/v1/sync/state"))
    assert answer.status_code == 401
    assert answer.json()["code"] == "auth_bad_signature"
    assert codes(app) == ["auth_bad_signature"]


def test_a_tampered_body_is_refused_and_nothing_is_applied(cloud_db_url: str) -> None:
    app = aggregator(cloud_db_url)
    key = register_store(app.state.engine, "s1")
    session = StoreSession(app, "s1", key)
    target = "/api/v1/sync/batches"
    honest = encode_body({"v": 1, "store": "s1", "seq": 1, "rows": rows_of([sale(1, qty=1)])})
    tampered = encode_body({"v": 1, "store": "s1", "seq": 1, "rows": rows_of([sale(1, qty=100)])})
    headers = session.headers("POST", target, honest, **{"Content-Encoding": "gzip"})

    async def go() -> httpx.Response:
        async with session.client() as c:
            return await c.post(target, content=tampered, headers=headers)

    answer = asyncio.run(go())
    assert answer.status_code == 401
    assert answer.json()["code"] == "auth_bad_signature"
    state = asyncio.run(session.get("/api/v1/sync/state")).json()
    assert state["applied_through"] == 0
    assert codes(app) == ["auth_bad_signature"]


def test_a_tampered_target_is_refused(cloud_db_url: str) -> None:
    app = aggregator(cloud_db_url)
    key = register_store(app.state.engine, "s1")
    session = StoreSession(app, "s1", key)
    headers = session.headers("GET", "/api/v1/sync/state", b"")

    async def go() -> httpx.Response:
        async with session.client() as c:
            return await c.get("/api/v1/sync/totals", headers=headers)

    assert asyncio.run(go()).json()["code"] == "auth_bad_signature"


def test_a_key_of_another_store_is_unknown_for_this_one(cloud_db_url: str) -> None:
    app = aggregator(cloud_db_url)
    register_store(app.state.engine, "s1")
    key2 = register_store(app.state.engine, "s2")
    answer = asyncio.run(StoreSession(app, "s1", key2).get("/api/v1/sync/state"))
    assert answer.status_code == 401
    assert answer.json()["code"] == "auth_unknown_key"
    assert answer.json()["message"] and answer.json()["message_en"]


def test_a_batch_for_another_store_is_refused_even_with_a_good_signature(cloud_db_url: str) -> None:
    app = aggregator(cloud_db_url)
    key1 = register_store(app.state.engine, "s1")
    register_store(app.state.engine, "s2")
    raw = json.dumps({"v": 1, "store": "s2", "seq": 1, "rows": rows_of([sale(1)])}).encode()
    answer = asyncio.run(StoreSession(app, "s1", key1).send_raw("/api/v1/sync/batches", raw))
    assert answer.status_code == 403
    assert answer.json()["code"] == "store_mismatch"
    assert codes(app) == ["store_mismatch"]
    with app.state.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM documents")).scalar_one() == 0


def test_a_clock_skewed_beyond_the_window_is_told_the_server_time(cloud_db_url: str) -> None:
    app = aggregator(cloud_db_url)
    key = register_store(app.state.engine, "s1")
    for skew, ok in ((-290, True), (290, True), (-3 * 3600, False), (400, False)):
        answer = asyncio.run(StoreSession(app, "s1", key, skew_s=skew).get("/api/v1/sync/state"))
        assert (answer.status_code == 200) is ok, (skew, answer.text)
        if not ok:
            body = answer.json()
            assert body["code"] == "auth_clock_skew"
            assert abs(body["detail"]["server_time"] - int(answer.headers[SERVER_TIME_HEADER])) <= 1
            assert abs(body["detail"]["skew_s"] - skew) <= 2
    assert codes(app) == ["auth_clock_skew", "auth_clock_skew"]
    assert counted(app, "auth_clock_skew") == 2


def test_a_rotated_key_works_until_the_grace_period_ends(cloud_db_url: str) -> None:
    clock = Clock()
    app = aggregator(cloud_db_url, clock, key_grace_hours=2)
    old = register_store(app.state.engine, "s1")
    answer = asyncio.run(StoreSession(app, "s1", old).post_json("/api/v1/sync/keys/rotate", {}))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    new = parse_store_key(body["key"])
    assert new.key_id != old.key_id
    assert body["old_key_id"] == old.key_id
    assert datetime.fromisoformat(body["old_key_expires_at"]) == clock.now + timedelta(hours=2)

    def state(key: StoreKey) -> httpx.Response:
        # The box signs with the aggregator's time, as a box following X-StoreBox-Server-Time does.
        skew = int(clock.now.timestamp() - datetime.now(UTC).timestamp())
        return asyncio.run(StoreSession(app, "s1", key, skew_s=skew).get("/api/v1/sync/state"))

    assert state(old).status_code == 200
    assert state(new).status_code == 200
    clock.now += timedelta(hours=2, minutes=1)
    refused = state(old)
    assert refused.status_code == 401
    assert refused.json()["code"] == "auth_key_expired"
    assert state(new).status_code == 200


def test_a_revoked_key_is_refused_at_once(cloud_db_url: str) -> None:
    app = aggregator(cloud_db_url)
    key = register_store(app.state.engine, "s1")
    session = StoreSession(app, "s1", key)
    assert asyncio.run(session.get("/api/v1/sync/state")).status_code == 200
    assert revoke_key(app.state.engine, key.key_id, datetime.now(UTC))
    assert not revoke_key(app.state.engine, key.key_id, datetime.now(UTC))
    answer = asyncio.run(session.get("/api/v1/sync/state"))
    assert answer.json()["code"] == "auth_key_expired"


def test_a_disabled_store_is_refused(cloud_db_url: str) -> None:
    app = aggregator(cloud_db_url)
    key = register_store(app.state.engine, "s1")
    with app.state.engine.begin() as conn:
        conn.execute(stores.update().values(disabled_at=datetime.now(UTC).isoformat()))
    answer = asyncio.run(StoreSession(app, "s1", key).get("/api/v1/sync/state"))
    assert answer.status_code == 403
    assert answer.json()["code"] == "store_disabled"


def doc_vectors() -> dict[str, str]:
    import re
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "sync-protocol.md").read_text()
    return {m.group(1): m.group(2) for m in re.finditer(r"```\w+ vector:(\S+)\n(.*?)\n```", text, re.S)}


def test_the_documented_test_vectors_hold_and_the_aggregator_accepts_them(cloud_db_url: str) -> None:
    from edge.sync.protocol import canonical_request, sign_request

    vectors = doc_vectors()
    key = parse_store_key("0a1b2c3d.AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8")
    assert key.secret == bytes(range(32))
    stamp = 1796486400
    batch_target = "/api/v1/sync/batches?head=1&pending=0&sent_at=2026-12-05T08%3A00%3A00%2B00%3A00"
    body = vectors["batch-body"].encode()
    assert len(body) == 181
    assert (
        canonical_request("GET", "/api/v1/sync/state", stamp, "s1", key.key_id, b"").decode()
        == vectors["get-canonical"]
    )
    assert canonical_request("POST", batch_target, stamp, "s1", key.key_id, body).decode() == vectors["batch-canonical"]
    get_headers = sign_request(key, "s1", "GET", "/api/v1/sync/state", b"", stamp)
    post_headers = sign_request(key, "s1", "POST", batch_target, body, stamp)
    assert get_headers["X-StoreBox-Signature"] == vectors["get-signature"]
    assert post_headers["X-StoreBox-Signature"] == vectors["batch-signature"]

    clock = Clock()
    clock.now = datetime.fromtimestamp(stamp + 10, UTC)
    app = aggregator(cloud_db_url, clock)
    register_store(app.state.engine, "s1")
    with app.state.engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO store_keys (key_id, store, secret, created_at) VALUES (:k, 's1', :s, :t)"),
            {"k": key.key_id, "s": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", "t": clock.now.isoformat()},
        )

    async def go() -> tuple[httpx.Response, httpx.Response]:
        async with StoreSession(app, "s1", key).client() as c:
            batch = await c.post(batch_target, content=body, headers=post_headers)
            state = await c.get("/api/v1/sync/state", headers=get_headers)
            return batch, state

    batch, state = asyncio.run(go())
    assert batch.status_code == 200, batch.text
    assert batch.json()["status"] == "applied"
    assert state.json()["applied_through"] == 1


HEADER_TEXT = (
    st.text(max_size=80)
    | st.text("0123456789²٣", max_size=12)  # digits Python's isdigit() knows but int() does not all take
    | st.sampled_from(["s1", "0a1b2c3d", "v1=" + "0" * 64, "1796486400", ""])
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.fixed_dictionaries(
        {},
        optional={
            "x-storebox-store": HEADER_TEXT,
            "x-storebox-key-id": HEADER_TEXT,
            "x-storebox-timestamp": HEADER_TEXT | st.integers(0, 2**70).map(str),
            "x-storebox-signature": HEADER_TEXT,
        },
    ),
    target=st.text(max_size=40),
    body=st.binary(max_size=64),
)
def test_any_headers_are_either_a_store_or_a_refusal(
    auth_engine: sa.Engine, values: dict[str, str], target: str, body: bytes
) -> None:
    from cloud_sync.auth import check_signature

    try:
        check_signature(auth_engine, values, "POST", target, body, datetime.fromtimestamp(1796486400, UTC))
    except CloudError as refused:
        assert refused.code in ("auth_missing", "auth_unknown_key", "auth_bad_signature", "auth_clock_skew")
        assert refused.status == 401
        assert refused.detail["server_time"] == 1796486400
    else:
        raise AssertionError("a random signature was accepted")


@pytest.fixture
def auth_engine(cloud_db_url: str) -> sa.Engine:
    from cloud_sync.db import create_engine, migrate

    engine = create_engine(cloud_db_url)
    migrate(engine)
    register_store(engine, "s1")
    return engine


@settings(max_examples=200, deadline=None)
@given(
    params=st.dictionaries(
        st.sampled_from(["head", "pending", "oldest", "sent_at", "x"]),
        st.text(max_size=40) | st.text("0123456789²٣", max_size=20),
    )
)
def test_any_outbox_head_in_the_query_string_is_read_or_left_out(params: dict[str, str]) -> None:
    from cloud_sync.ingest import parse_head

    head = parse_head(params)
    for value in (head.outbox_seq, head.pending_rows):
        assert value is None or value >= 0
    for when in (head.oldest_pending_at, head.sent_at):
        assert when is None or when.tzinfo is not None
