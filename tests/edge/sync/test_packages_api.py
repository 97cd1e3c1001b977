"""The box's package API and `storebox packages` commands: list, install from a file (a USB stick), roll back,
history; permissions packages:read and packages:manage."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from edge.cli import app as box_cli
from edge.security.roles import Role
from edge.web.api import create_api
from tests.edge.sync.packaging import box_settings, price_of, prices
from tests.edge.web.apibox import Box, Clock, assert_error_shape, build_deps, make_writer, seed

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A box database seeded like the API tests' (items COLA, MILK, RICE; one user per role)."""
    path = tmp_path_factory.mktemp("packages-template") / "storebox.db"
    seed(path)
    return path


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def api_box(tmp_path: Path, template_db: Path) -> AsyncIterator[Box]:
    db_path = tmp_path / "storebox.db"
    shutil.copyfile(template_db, db_path)
    clock = Clock()
    writer = make_writer(db_path, clock)
    writer.start()
    deps = build_deps(db_path, clock, writer, settings=box_settings(tmp_path))
    app = create_api(deps)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://box") as client:
        yield Box(db_path, clock, writer, deps, app, client)
    await writer.close()


def cli(*args: str, data_dir: Path) -> tuple[int, str]:
    result = CliRunner().invoke(
        box_cli,
        ["packages", *args, "--data-dir", str(data_dir)],
        env={"STOREBOX_HQ_PUBLIC_KEY": box_settings(data_dir).hq_public_key or ""},
    )
    return result.exit_code, result.output


async def test_install_from_a_file_then_list_roll_back_over_the_api(api_box: Box, tmp_path: Path) -> None:
    for version, price in ((1, "3.80"), (2, "4.20")):
        stick = tmp_path / f"prices-{version}.zip"
        stick.write_bytes(prices(version, f"sku,price\nCOLA,{price}\n"))
        code, output = cli("install", str(stick), data_dir=tmp_path)
        assert code == 0, output
    code, output = cli("install", str(tmp_path / "prices-1.zip"), data_dir=tmp_path)
    assert code == 2 and "downgrade" in output
    assert price_of(api_box.db_path, "COLA") == 420

    listed = await api_box.client.get("/api/v1/packages", headers=api_box.auth(Role.MANAGER))
    assert listed.status_code == 200, listed.text
    assert [(c["kind"], c["version"], c["previous"]) for c in listed.json()["current"]] == [("price_list", 2, 1)]
    refused = await api_box.client.post(
        "/api/v1/packages/price_list/prices/rollback", headers=api_box.auth(Role.MANAGER)
    )
    assert refused.status_code == 403
    assert (await api_box.client.get("/api/v1/packages", headers=api_box.auth(Role.CLERK))).status_code == 403

    rolled = await api_box.client.post("/api/v1/packages/price_list/prices/rollback", headers=api_box.auth(Role.ADMIN))
    assert rolled.status_code == 200, rolled.text
    assert (rolled.json()["to_version"], price_of(api_box.db_path, "COLA")) == (1, 380)
    assert (tmp_path / "packages/price_list/prices/current").readlink() == Path("1")
    unknown = await api_box.client.post("/api/v1/packages/model/demand/rollback", headers=api_box.auth(Role.ADMIN))
    assert unknown.status_code == 409 and assert_error_shape(unknown)["code"] == "package_nothing_to_roll_back"

    code, output = cli("rollback", "price_list", "prices", data_dir=tmp_path)
    assert code == 0 and json.loads(output)["to_version"] == 0
    code, output = cli("history", data_dir=tmp_path)
    actions = [json.loads(line)["action"] for line in output.splitlines()]
    assert actions == ["rolled_back", "rolled_back", "installed", "installed"]
    code, output = cli("list", data_dir=tmp_path)
    assert json.loads(output.splitlines()[0])["version"] == 0
