"""The signed client against a real aggregator (create_app over SQLite and PostgreSQL, in-process HTTP): signed
requests accepted, the aggregator's clock followed, refusals and failures sorted; and whatever bytes a server
answers, the client returns JSON or raises SyncUnavailable / SyncRefused, never anything else."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.config import Settings
from edge.sync.client import SyncClient
from edge.sync.errors import SyncNotConfigured, SyncRefused, SyncUnavailable
from edge.sync.protocol import SERVER_TIME_HEADER, StoreKey, generate_store_key
from edge.sync.service import _read_answer
from tests.edge.sync.conftest import STORE, Aggregator, RealClock, free_port

pytestmark = pytest.mark.anyio


def settings_for(tmp_path: Path, url: str = "http://aggregator") -> Settings:
    return Settings(data_dir=tmp_path, store_id=STORE, sync_url=url, sync_timeout_seconds=2)


def client_for(
    tmp_path: Path, key: StoreKey | None, transport: httpx.AsyncBaseTransport, clock: RealClock | None = None
) -> SyncClient:
    return SyncClient(settings_for(tmp_path), lambda: key, clock or RealClock(), transport=transport)


async def test_signed_get_is_accepted_and_the_server_clock_is_kept(tmp_path: Path, aggregator: Aggregator) -> None:
    client = client_for(tmp_path, aggregator.key, aggregator.transport())
    state = await client.get_json("/api/v1/sync/state")
    await client.aclose()
    assert state["store"] == STORE and state["applied_through"] == 0
    assert abs(client.offset_s) < 60


async def test_clock_three_hours_fast_is_corrected_and_the_request_retried_once(
    tmp_path: Path, aggregator: Aggregator
) -> None:
    clock = RealClock()
    clock.offset_s = 3 * 3600
    client = client_for(tmp_path, aggregator.key, aggregator.transport(), clock)
    state = await client.get_json("/api/v1/sync/state")
    await client.aclose()
    assert state["store"] == STORE
    assert abs(client.offset_s + 3 * 3600) < 60


async def test_query_string_is_signed_as_sent(tmp_path: Path, aggregator: Aggregator) -> None:
    client = client_for(tmp_path, aggregator.key, aggregator.transport())
    answer = await client.post_json(
        "/api/v1/sync/heartbeat", b"", gzip=False, params={"head": 5, "pending": 2, "oldest": None, "sent_at": "x y"}
    )
    await client.aclose()
    assert "applied_through" in answer


async def test_a_wrong_secret_is_refused_with_the_aggregators_code(tmp_path: Path, aggregator: Aggregator) -> None:
    forged = StoreKey(aggregator.key.key_id, b"\x00" * 32)
    client = client_for(tmp_path, forged, aggregator.transport())
    with pytest.raises(SyncRefused) as refused:
        await client.get_json("/api/v1/sync/state")
    await client.aclose()
    assert refused.value.remote_code == "auth_bad_signature"
    assert refused.value.http_status == 401
    assert refused.value.message and refused.value.message_en


async def test_unreachable_aggregator_is_unavailable(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, f"http://127.0.0.1:{free_port()}")
    client = SyncClient(settings, generate_store_key, RealClock())
    with pytest.raises(SyncUnavailable):
        await client.get_json("/api/v1/sync/state")
    await client.aclose()


async def test_no_url_or_no_key_is_not_configured(tmp_path: Path, aggregator: Aggregator) -> None:
    with pytest.raises(SyncNotConfigured):
        SyncClient(Settings(data_dir=tmp_path), generate_store_key, RealClock())
    client = client_for(tmp_path, None, aggregator.transport())
    with pytest.raises(SyncNotConfigured):
        await client.get_json("/api/v1/sync/state")
    await client.aclose()


# --- garbage from the server ------------------------------------------------------------------------------------

answers = st.tuples(
    st.sampled_from([200, 201, 204, 301, 400, 401, 403, 404, 408, 409, 413, 422, 429, 500, 502, 503]),
    st.one_of(
        st.binary(max_size=200),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
            lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
            max_leaves=12,
        ).map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries(
            {"code": st.sampled_from(["auth_clock_skew", "batch_conflict", "x"]), "detail": st.integers() | st.none()}
        ).map(lambda v: json.dumps(v).encode()),
    ),
    st.one_of(st.none(), st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=12)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(answer=answers)
def test_any_answer_is_json_or_a_sync_error(tmp_path: Path, answer: tuple[int, bytes, str | None]) -> None:
    import asyncio

    status, body, server_time = answer

    def respond(_request: httpx.Request) -> httpx.Response:
        headers = {} if server_time is None else {SERVER_TIME_HEADER: server_time}
        return httpx.Response(status, content=body, headers=headers)

    async def go() -> Any:
        client = client_for(tmp_path, generate_store_key(), httpx.MockTransport(respond))
        try:
            return await client.get_json("/api/v1/sync/state")
        finally:
            await client.aclose()

    try:
        asyncio.run(go())
    except SyncUnavailable:
        assert status >= 500 or status in (408, 429) or status < 400
    except SyncRefused as refused:
        assert 400 <= refused.http_status < 500
        assert refused.message and refused.message_en


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(["status", "seq", "applied_through", "missing", "store", "x"]), inner, max_size=6
            )
        ),
        max_leaves=15,
    )
)
def test_any_batch_answer_is_understood_or_unavailable(answer: Any) -> None:
    try:
        status, applied, missing = _read_answer(answer, 3)
    except SyncUnavailable:
        return
    assert status in ("applied", "duplicate", "queued")
    assert isinstance(applied, int)
    assert all(isinstance(m, int) and m > 0 for m in missing)
