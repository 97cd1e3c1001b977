"""HQ bearer tokens: shown once, stored as sha256, refused when missing, unknown or revoked; the CLI."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from cloud_sync.cli import app as cloud_cli
from cloud_sync.hq.auth import revoke_token
from cloud_sync.tables import hq_tokens
from tests.cloud_sync.hq.seed import NOW, HqClient, build_chain

ROUTES = [
    "/api/v1/hq/stores",
    "/api/v1/hq/sync-lag",
    "/api/v1/hq/stock",
    "/api/v1/hq/sales",
    "/api/v1/hq/vouchers?company=co-1&period=2026-12",
    "/api/v1/hq/trial-balance?company=co-1&period=2026-12",
    "/api/v1/hq/suppliers",
    "/api/v1/hq/stores/s1/totals",
]


@pytest.fixture
def chain(cloud_db_url: str) -> Iterator[tuple[HqClient, str]]:
    app, token = build_chain(cloud_db_url)
    yield HqClient(app, None), token
    app.state.engine.dispose()


@pytest.mark.parametrize("route", ROUTES)
def test_every_hq_route_refuses_without_a_token(chain: tuple[HqClient, str], route: str) -> None:
    client, token = chain
    response = client.get(route)
    assert response.status_code == 401
    body = response.json()
    assert body["code"] == "hq_auth_missing" and "令牌" in body["message"] and "token" in body["message_en"]
    assert client.get(route, headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_unknown_malformed_and_revoked_tokens_are_refused(chain: tuple[HqClient, str]) -> None:
    client, token = chain
    for header in (f"Bearer {token}x", f"Basic {token}", "Bearer ", "Bearer " + "a" * 5000, token):
        response = client.get("/api/v1/hq/stock", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response.json()["code"] in ("hq_auth_missing", "hq_auth_invalid")
    engine = client.app.state.engine
    with engine.begin() as conn:
        token_id = conn.execute(sa.select(hq_tokens.c.id)).scalar_one()
        assert revoke_token(conn, token_id, NOW)
    response = client.get("/api/v1/hq/stock", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401 and response.json()["code"] == "hq_auth_invalid"


def test_only_the_tokens_sha256_is_stored(chain: tuple[HqClient, str]) -> None:
    client, token = chain
    with client.app.state.engine.connect() as conn:
        stored = conn.execute(sa.select(hq_tokens.c.token_sha256)).scalar_one()
    assert token.startswith("sbhq_") and len(token) > 40
    assert stored == hashlib.sha256(token.encode()).hexdigest()


def test_cli_adds_lists_and_revokes_tokens(cloud_db_url: str) -> None:
    runner = CliRunner()
    env = {"STOREBOX_CLOUD_DB_URL": cloud_db_url}
    added = runner.invoke(cloud_cli, ["hq", "token-add", "bi-dashboard"], env=env)
    assert added.exit_code == 0, added.output
    shown = json.loads(added.stdout.splitlines()[0])
    assert shown["name"] == "bi-dashboard" and shown["token"].startswith("sbhq_")
    listed = runner.invoke(cloud_cli, ["hq", "token-list"], env=env)
    rows = json.loads(listed.stdout)
    assert [(r["id"], r["name"], r["revoked_at"]) for r in rows] == [(shown["id"], "bi-dashboard", None)]
    assert shown["token"] not in listed.stdout
    revoked = runner.invoke(cloud_cli, ["hq", "token-revoke", str(shown["id"])], env=env)
    assert revoked.exit_code == 0
    again = runner.invoke(cloud_cli, ["hq", "token-revoke", str(shown["id"])], env=env)
    assert again.exit_code == 1
    assert json.loads(runner.invoke(cloud_cli, ["hq", "token-list"], env=env).stdout)[0]["revoked_at"]
    empty = runner.invoke(cloud_cli, ["hq", "token-add", "  "], env=env)
    assert empty.exit_code == 2


def test_cli_query_answers_like_the_api_without_a_token(cloud_db_url: str, tmp_path: Path) -> None:
    app, _ = build_chain(cloud_db_url)
    app.state.engine.dispose()
    runner = CliRunner()
    env = {"STOREBOX_CLOUD_DB_URL": cloud_db_url}
    answer = runner.invoke(cloud_cli, ["hq", "query", "sales?group_by=store&store=s2"], env=env)
    assert answer.exit_code == 0, answer.output
    assert [(r["store"], r["gross_fen"]) for r in json.loads(answer.stdout)["items"]] == [("s2", 1200)]
    target = tmp_path / "tb.csv"
    export = runner.invoke(
        cloud_cli, ["hq", "query", "trial-balance?company=co-1&period=2026-12&format=csv", "-o", str(target)], env=env
    )
    assert export.exit_code == 0, export.output
    assert target.read_bytes().startswith(b"\xef\xbb\xbf") and "合计" in target.read_text("utf-8-sig")
    refused = runner.invoke(cloud_cli, ["hq", "query", "vouchers?company=co-1&period=12"], env=env)
    assert refused.exit_code == 1 and "hq_bad_parameter" in refused.stderr
