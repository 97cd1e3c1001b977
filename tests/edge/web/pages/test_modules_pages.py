"""The scenario module pages over real HTTP against a served box: the modules with their state, version and KPI
gauges against the thresholds, one module with its KPI chart, decisions, failures, versions and history, and the
enable, disable, roll back and remove buttons for who may use them."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.db import connect
from edge.modules import store
from edge.modules.host import install_from_dir, install_shipped, shipped_dirs
from edge.security.roles import Role
from tests.edge.web.pages.pagedata import api, html, ok, text_of
from tests.edge.web.pages.site import Site

NAME = "near-expiry"
NOW = datetime(2024, 6, 1, 2, 0, tzinfo=UTC)


def transact(db_path: Path) -> Any:
    """Run `fn(conn, ...)` in one transaction on the box's database, as the writer would."""

    def run(fn: Any, *args: Any) -> Any:
        conn = connect(db_path)
        try:
            conn.execute("BEGIN IMMEDIATE")
            result = fn(conn, *args)
            conn.execute("COMMIT")
            return result
        finally:
            conn.close()

    return run


@pytest.fixture(scope="module")
def installed(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """near-expiry installed twice (the shipped version, then a copy one version up), with judged decisions of the
    newer version: 57 right and 3 wrong (precision 95 %, false positives 5 %)."""
    run = transact(site.box.db_path)
    modules_dir = tmp_path_factory.mktemp("modules")
    install_shipped(modules_dir, run, NOW.isoformat(), actor="admin", names=[NAME])
    source = next(d for d in shipped_dirs() if yaml.safe_load((d / "manifest.yaml").read_text())["name"] == NAME)
    newer = tmp_path_factory.mktemp("newer") / "near_expiry"
    shutil.copytree(source, newer)
    manifest = yaml.safe_load((newer / "manifest.yaml").read_text(encoding="utf-8"))
    manifest["version"] = int(manifest["version"]) + 1
    (newer / "manifest.yaml").write_text(yaml.safe_dump(manifest, allow_unicode=True), encoding="utf-8")
    install_from_dir(newer, modules_dir, run, (NOW + timedelta(hours=1)).isoformat(), actor="admin")
    version = manifest["version"]
    decisions = [
        {"key": f"lot-{n}", "subject": f"MILK/lot-{n}", "predicted": "waste", "check_on": "2024-06-05"}
        for n in range(60)
    ]
    run(store.record_decisions, NAME, version, decisions, "test", (NOW + timedelta(hours=2)).isoformat())
    conn = connect(site.box.db_path, readonly=True)
    try:
        ids = [r[0] for r in conn.execute("SELECT id FROM module_decisions WHERE module = ? ORDER BY id", (NAME,))]
    finally:
        conn.close()
    outcomes = [(decision_id, n < 57) for n, decision_id in enumerate(ids)]  # the newest 3 wrong
    run(store.record_outcomes, outcomes, (NOW + timedelta(days=5)).isoformat())
    yield site


def module(site: Site) -> dict[str, Any]:
    return dict(ok(api(site, "GET", f"/api/v1/modules/{NAME}", Role.AUDITOR)))


def test_the_list_shows_state_version_and_kpi_gauges_against_the_thresholds(installed: Site) -> None:
    shown = module(installed)
    with installed.login(Role.MANAGER) as client:
        page = client.get("/modules")
        assert page.status_code == 200, page.text
        card = html(page).xpath(f"//article[@data-module='{NAME}']")[0]
        assert card.xpath(".//span[@data-state='enabled']")
        assert f"第 {shown['version']} 版" in card.text_content()
        precision = card.xpath(".//meter[contains(@id, '-precision')]")[0]
        assert float(precision.get("value")) == pytest.approx(0.95)
        assert float(precision.get("low")) == pytest.approx(shown["thresholds"]["precision_min"])
        assert "不低于 92%" in card.text_content()
        assert card.xpath(".//div[@data-kpi-state]/@data-kpi-state") == ["ok"]
        assert set(card.xpath(".//form/@data-action")) == {"disable", "rollback", "remove"}
    with installed.login(Role.MANAGER, lang="en") as client:
        page = client.get("/modules")
        assert "Precision" in text_of(page) and "准确率" not in text_of(page)


def test_one_module_shows_its_kpi_chart_decisions_versions_and_history(installed: Site) -> None:
    with installed.login(Role.AUDITOR) as client:
        page = client.get(f"/modules/{NAME}")
        assert page.status_code == 200, page.text
        doc = html(page)
        spec = json.loads(doc.xpath("//section[@id='kpi-chart']//div[@data-chart]/@data-chart")[0])
        # Over the 50 decisions the page shows (the API's newest 50): 47 right, 3 wrong.
        assert len(spec["x"]) == 50 and spec["series"][0]["values"][-1] == pytest.approx(94.0)
        assert spec["series"][1]["values"][-1] == pytest.approx(6.0)
        assert spec["bands"][0]["lo"] == pytest.approx(92.0)
        assert len(doc.xpath("//section[@id='decisions']//tbody/tr")) == 50
        assert doc.xpath("//section[@id='versions']//li[@data-version]")
        assert not doc.xpath("//form[@data-action]")  # the auditor only reads
        refused = installed.post_form(client, f"/modules/{NAME}/disable", {}, page=f"/modules/{NAME}")
        assert refused.status_code == 403


def test_the_manager_disables_enables_and_rolls_back_from_the_page(installed: Site) -> None:
    before = module(installed)
    with installed.login(Role.MANAGER) as client:
        off = installed.post_form(client, f"/modules/{NAME}/disable", {"back": "list"}, page="/modules")
        assert off.status_code == 303 and off.headers["location"] == "/modules"
        assert module(installed)["state"] == "disabled"
        on = installed.post_form(client, f"/modules/{NAME}/enable", {}, page=f"/modules/{NAME}")
        assert on.status_code == 303 and on.headers["location"] == f"/modules/{NAME}"
        back = installed.post_form(client, f"/modules/{NAME}/rollback", {}, page=f"/modules/{NAME}")
        assert back.status_code == 303, back.text
        page = client.get(back.headers["location"])
        assert "已回滚" in text_of(page, "//p[@class='flash']")
        # Nothing before the first version: the API's refusal shows on the module's page.
        again = installed.post_form(client, f"/modules/{NAME}/rollback", {}, page=f"/modules/{NAME}")
        assert again.status_code == 409 and text_of(again, f"//p[@id='e-{NAME}']")
    after = module(installed)
    assert after["version"] == before["previous"] and after["version"] < before["version"]


def test_who_sees_the_modules(installed: Site) -> None:
    with installed.login(Role.CLERK) as client:
        assert client.get("/modules").status_code == 403
        assert not html(client.get("/")).xpath("//nav//a[@href='/modules']")
    with installed.login(Role.PURCHASER) as client:
        page = client.get("/modules")
        assert page.status_code == 200 and not html(page).xpath("//form[@data-action]")
        assert html(page).xpath("//nav//a[@href='/modules' and @aria-current='page']")
    with installed.login(Role.MANAGER) as client:
        assert client.get("/modules/no-such-module").status_code == 404
        assert client.get("/modules/Bad Name").status_code == 404
        assert installed.post_form(client, f"/modules/{NAME}/explode", {}).status_code == 404
