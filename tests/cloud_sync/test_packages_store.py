"""Packages at the aggregator: publish (checked, versions only go up), offered per store, served, statuses; the
`storebox-cloud packages` commands from keygen to status."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from cloud_sync.cli import app as cloud_cli
from cloud_sync.errors import CloudError
from cloud_sync.packages import store
from cloud_sync.packages.format import build_package, public_key_hex, read_package
from tests.cloud_sync.aggregator import StoreSession, build_app, register_store

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
NOW = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def pkg(version: int, stores: list[str] | None = None, name: str = "prices", key: Ed25519PrivateKey = KEY) -> bytes:
    return build_package(
        "price_list",
        name,
        version,
        {"prices.csv": b"sku,price\nCOLA,3.80\n"},
        key,
        created_at=NOW,
        created_by="hq",
        stores=stores or ["*"],
    )


async def test_stores_see_the_newest_version_meant_for_them_and_nothing_else(cloud_db_url: str) -> None:
    app = build_app(cloud_db_url, hq_public_key=public_key_hex(KEY))
    engine = app.state.engine
    s1, s2 = (
        StoreSession(app, "s1", register_store(engine, "s1")),
        StoreSession(app, "s2", register_store(engine, "s2")),
    )
    first = store.publish(engine, pkg(1), public_key=public_key_hex(KEY), now=NOW, by="t")
    assert store.publish(engine, pkg(1), public_key=public_key_hex(KEY), now=NOW, by="t")["replayed"] is True
    only_s2 = store.publish(engine, pkg(2, ["s2"]), public_key=public_key_hex(KEY), now=NOW, by="t")
    with pytest.raises(CloudError) as err:
        store.publish(engine, pkg(2, ["s1"]), public_key=public_key_hex(KEY), now=NOW, by="t")
    assert err.value.code == "package_version_not_newer"
    with pytest.raises(CloudError) as err:
        store.publish(engine, pkg(3, key=Ed25519PrivateKey.generate()), public_key=public_key_hex(KEY), now=NOW, by="t")
    assert err.value.code == "package_bad_signature" and err.value.status == 403

    listed = (await s1.get("/api/v1/sync/packages")).json()["packages"]
    assert [(p["id"], p["version"]) for p in listed] == [(first["id"], 1)]
    assert [p["version"] for p in (await s2.get("/api/v1/sync/packages")).json()["packages"]] == [2]
    content = await s1.get(f"/api/v1/sync/packages/{first['id']}/content")
    assert read_package(content.content, KEY.public_key()).manifest.version == 1
    hidden = await s1.get(f"/api/v1/sync/packages/{only_s2['id']}/content")
    assert hidden.status_code == 404 and hidden.json()["code"] == "package_not_found"
    bad = await s1.post_json(f"/api/v1/sync/packages/{first['id']}/status", {"status": "maybe"})
    assert bad.status_code == 422 and bad.json()["code"] == "package_status_invalid"
    ok = await s1.post_json(f"/api/v1/sync/packages/{first['id']}/status", {"status": "installed", "version": 1})
    assert ok.status_code == 200
    with engine.connect() as conn:
        assert [(r["store"], r["in_force"]) for r in store.store_status(conn)] == [("s1", 1)]
    unsigned = await StoreSession(app, "s1", register_store(engine, "s3")).get("/api/v1/sync/packages")
    assert unsigned.status_code == 401


def test_the_cloud_commands_sign_publish_list_and_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOREBOX_CLOUD_DB_URL", f"sqlite:///{tmp_path / 'cloud.db'}")
    runner = CliRunner()
    key_file = tmp_path / "hq.key"
    made = runner.invoke(cloud_cli, ["packages", "keygen", "--out", str(key_file)])
    assert made.exit_code == 0, made.output
    public = made.stdout.strip().splitlines()[0]
    assert len(public) == 64 and stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert runner.invoke(cloud_cli, ["packages", "keygen", "--out", str(key_file)]).exit_code == 2
    csv = tmp_path / "prices.csv"
    csv.write_text("sku,price\nCOLA,3.80\n")
    out = tmp_path / "p.zip"
    built = runner.invoke(
        cloud_cli,
        [
            "packages",
            "build",
            "--kind",
            "price_list",
            "--name",
            "prices",
            "--version",
            "7",
            "--file",
            str(csv),
            "--key",
            str(key_file),
            "--out",
            str(out),
            "--stores",
            "s1,s2",
        ],
    )
    assert built.exit_code == 0, built.output
    from cloud_sync.packages.format import parse_public_key

    assert read_package(out.read_bytes(), parse_public_key(public)).manifest.stores == ("s1", "s2")
    bad_kind = runner.invoke(
        cloud_cli,
        [
            "packages",
            "build",
            "--kind",
            "script",
            "--name",
            "x",
            "--version",
            "1",
            "--file",
            str(csv),
            "--key",
            str(key_file),
            "--out",
            str(tmp_path / "x.zip"),
        ],
    )
    assert bad_kind.exit_code == 2 and "unknown" in bad_kind.output
    published = runner.invoke(cloud_cli, ["packages", "publish", str(out)])
    assert published.exit_code == 0, published.output
    assert json.loads(published.stdout)["version"] == 7
    listed = runner.invoke(cloud_cli, ["packages", "list"])
    assert json.loads(listed.stdout.splitlines()[0])["stores"] == ["s1", "s2"]
    assert runner.invoke(cloud_cli, ["packages", "status"]).exit_code == 0
