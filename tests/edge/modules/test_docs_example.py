"""docs/modules.md: the example module (its manifest.yaml and module.py exactly as printed) installed into a running
box does what the page says, and the page's tables name every manifest field and setting."""

from __future__ import annotations

import re
import sqlite3
from datetime import timedelta
from pathlib import Path

from edge.config import Settings
from edge.modules.manifest import ManifestModel, load_manifest_file
from edge.modules.worker import load_entry, make_context
from tests.edge.modules.modkit import BREAD, MILK, HostBox, hostbox, wait_for

__all__ = ["hostbox"]
DOC = Path(__file__).resolve().parents[3] / "docs" / "modules.md"


def _block(language: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    match = re.search(rf"```{language}\n(.*?)```", text, re.S)
    assert match, language
    return match.group(1)


def test_the_example_module_runs_as_documented(hostbox: HostBox) -> None:
    hb = hostbox
    folder = hb.root / "short-life-watch"
    folder.mkdir(parents=True)
    (folder / "manifest.yaml").write_text(_block("yaml"), encoding="utf-8")
    (folder / "module.py").write_text(_block("python"), encoding="utf-8")
    conn = sqlite3.connect(hb.settings.db_path)
    with conn:
        conn.execute("UPDATE items SET shelf_life_days = 5 WHERE sku = 'MILK-1L'")
    conn.close()
    assert hb.install(folder)["name"] == "short-life-watch"
    hb.sell(hb.device(), MILK)
    notices = wait_for(lambda: hb.notices("short-life-watch"), "the notice")
    assert notices == ["short-life item MILK-1L sold: watch its stock"]
    (decision,) = hb.sql("SELECT key, subject, predicted, check_on FROM module_decisions")
    today = hb.box.clock().astimezone(hb.box.tz).date()
    assert tuple(decision) == (f"MILK-1L:{today}", "MILK-1L", '"sold_out"', (today + timedelta(days=4)).isoformat())
    # a sale of an item without a short shelf life proposes nothing
    hb.sell(hb.devices[0], BREAD)
    assert len(hb.sql("SELECT id FROM module_decisions")) == 1
    # judge, called as the worker calls it: milk is still in stock, so "sold out" did not come true
    manifest = load_manifest_file(folder / "manifest.yaml")
    module = load_entry(folder, manifest.entry, manifest.name)
    ctx = make_context(hb.settings.db_path, manifest.params, today + timedelta(days=4), "store-t")
    assert module.judge(ctx, {"subject": "MILK-1L"}) is False


def test_the_tables_name_every_manifest_field_and_setting() -> None:
    text = DOC.read_text(encoding="utf-8")
    for name in ManifestModel.model_fields:
        assert f"| `{name}` |" in text, name
    for name in Settings.model_fields:
        if name.startswith("modules_"):
            assert f"| `{name}` |" in text, name
