"""HQ packages on a box: verify, install atomically, roll back, each kind's handler (real SQLite, real files)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_sync.packages.format import PackageBadSignature
from edge.db import connect
from edge.devices.profiles import shipped_profiles_dir
from edge.forecast.runtime import load_demand_model, shipped_models_dir
from edge.ledger.errors import DomainError
from edge.sync import packages as pk
from tests.edge.sync.packaging import (
    T0,
    box_settings,
    direct_transact,
    in_force,
    package,
    price_of,
    prices,
    reader,
)
from tests.edge.web.apibox import seed


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A box database seeded like the API tests' (items COLA, MILK, RICE; one user per role)."""
    path = tmp_path_factory.mktemp("packages-template") / "storebox.db"
    seed(path)
    return path


class Box:
    def __init__(self, root: Path, template: Path, **overrides: Any) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.db = root / "storebox.db"
        shutil.copyfile(template, self.db)
        conn = connect(self.db)
        from edge.db import migrate

        migrate(conn)
        conn.close()
        self.settings = box_settings(root, **overrides)
        self.root = self.settings.packages_dir

    def install(self, data: bytes, **kw: Any) -> pk.InstallOutcome:
        return pk.install_package(
            data,
            self.settings,
            direct_transact(self.db),
            reader(self.db),
            lambda: T0,
            actor="test",
            source="file",
            **kw,
        )

    def rollback(self, kind: str = "price_list", name: str = "prices") -> dict[str, Any]:
        return pk.rollback_package(
            self.settings, direct_transact(self.db), kind, name, lambda: T0, actor="test", source="cli"
        )

    def link(self, kind: str = "price_list", name: str = "prices") -> str | None:
        path = self.root / kind / name / "current"
        return str(path.readlink()) if path.is_symlink() else None

    def history(self) -> list[dict[str, Any]]:
        conn = connect(self.db, readonly=True)
        try:
            return pk.list_history(conn)
        finally:
            conn.close()

    def reconcile(self) -> list[str]:
        conn = connect(self.db, readonly=True)
        try:
            return pk.reconcile(self.root, conn)
        finally:
            conn.close()


@pytest.fixture
def box(tmp_path: Path, template_db: Path) -> Box:
    return Box(tmp_path / "box", template_db)


def test_a_price_list_sets_retail_prices_and_becomes_current(box: Box) -> None:
    outcome = box.install(prices(1, "sku,price\nCOLA,3.80\nRICE,13\n"))
    assert (outcome.version, outcome.previous, outcome.summary) == (1, 0, {"prices": 2})
    assert (price_of(box.db, "COLA"), price_of(box.db, "RICE")) == (380, 1300)
    assert box.link() == "1" and (box.root / "price_list/prices/1/prices.csv").is_file()
    assert [h["action"] for h in box.history()] == ["installed"]


def test_prices_in_fen_are_accepted_too(box: Box) -> None:
    box.install(prices(1, "sku,price_fen\nRICE,5290\n"))
    assert price_of(box.db, "RICE") == 5290


def test_unknown_skus_refuse_the_whole_list_with_line_numbers(box: Box) -> None:
    with pytest.raises(pk.PackageContentInvalid) as err:
        box.install(prices(1, "sku,price\nCOLA,3.80\nNOPE,1\nRICE,x\n"))
    problems = err.value.detail["problems"]
    assert "prices.csv:4: invalid price 'x' for RICE" in problems
    with pytest.raises(pk.PackageContentInvalid) as err:
        box.install(prices(2, "sku,price\nCOLA,3.80\nNOPE,1\n"))
    assert err.value.detail["problems"] == ["prices.csv:3: unknown sku NOPE"]
    assert price_of(box.db, "COLA") == 350 and in_force(box.db, "price_list", "prices") == 0 and box.link() is None
    assert [h["action"] for h in box.history()] == ["failed", "failed"]


def test_replay_and_downgrade_are_refused(box: Box) -> None:
    v2 = prices(2, "sku,price\nCOLA,3.80\n")
    box.install(v2)
    for data in (v2, prices(1, "sku,price\nCOLA,1.00\n")):
        with pytest.raises(pk.PackageNotNewer) as err:
            box.install(data)
        assert "降级" in err.value.message and "downgrade" in err.value.message_en
    assert price_of(box.db, "COLA") == 380


def test_a_package_signed_by_another_key_is_refused_before_anything_is_written(box: Box) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    with pytest.raises(PackageBadSignature):
        box.install(prices(1, "sku,price\nCOLA,0.01\n", key=Ed25519PrivateKey.generate()))
    assert price_of(box.db, "COLA") == 350 and box.history() == []


def test_without_hq_public_key_every_package_is_refused(tmp_path: Path, template_db: Path) -> None:
    box = Box(tmp_path / "nokey", template_db, hq_public_key=None)
    with pytest.raises(pk.PackageKeyMissing) as err:
        box.install(prices(1, "sku,price\nCOLA,3.80\n"))
    assert "hq_public_key" in err.value.message_en


def test_a_package_for_other_stores_is_refused(box: Box) -> None:
    with pytest.raises(pk.PackageOtherStore):
        box.install(prices(1, "sku,price\nCOLA,3.80\n", stores=["store-009"]))
    box.install(prices(1, "sku,price\nCOLA,3.80\n", stores=["store-009", "store-001"]))


@pytest.mark.parametrize("step", ["staged"])
def test_a_crash_before_the_commit_leaves_the_previous_version_in_force(box: Box, step: str) -> None:
    box.install(prices(1, "sku,price\nCOLA,3.80\n"))

    def crash(at: str) -> None:
        if at == step:
            raise KeyboardInterrupt(at)  # the process dies here

    with pytest.raises(KeyboardInterrupt):
        box.install(prices(2, "sku,price\nCOLA,4.20\nRICE,9.90\n"), crash=crash)
    box.reconcile()
    assert (in_force(box.db, "price_list", "prices"), box.link()) == (1, "1")
    assert (price_of(box.db, "COLA"), price_of(box.db, "RICE")) == (380, 4990)
    box.install(prices(2, "sku,price\nCOLA,4.20\nRICE,9.90\n"))  # the staged leftovers are replaced
    assert (box.link(), price_of(box.db, "COLA")) == ("2", 420)


def test_a_crash_after_the_commit_is_completed_by_reconcile(box: Box) -> None:
    box.install(prices(1, "sku,price\nCOLA,3.80\n"))

    def crash(at: str) -> None:
        if at == "committed":
            raise KeyboardInterrupt(at)

    with pytest.raises(KeyboardInterrupt):
        box.install(prices(2, "sku,price\nCOLA,4.20\n"), crash=crash)
    assert box.link() == "1"  # files behind the database until the repair
    assert box.reconcile() == ["price_list/prices: 1 -> 2"]
    assert (in_force(box.db, "price_list", "prices"), box.link(), price_of(box.db, "COLA")) == (2, "2", 420)
    assert box.reconcile() == []


def test_a_failing_commit_leaves_the_previous_version_in_force(box: Box) -> None:
    box.install(prices(1, "sku,price\nCOLA,3.80\n"))
    conn = connect(box.db)  # an item disappears between the check and the commit
    conn.execute(
        "CREATE TRIGGER no_milk BEFORE UPDATE OF price_fen ON items WHEN NEW.sku = 'RICE'"
        " BEGIN SELECT RAISE(ABORT, 'refused: milk / milk'); END"
    )
    conn.close()
    with pytest.raises(Exception):  # noqa: B017 - the database refuses
        box.install(prices(2, "sku,price\nCOLA,4.20\nRICE,9.90\n"))
    assert (in_force(box.db, "price_list", "prices"), box.link(), price_of(box.db, "COLA")) == (1, "1", 380)


def test_rollback_restores_the_prices_and_the_files_of_the_previous_version(box: Box) -> None:
    box.install(prices(1, "sku,price\nCOLA,3.80\n"))
    box.install(prices(2, "sku,price\nCOLA,4.20\nRICE,9.90\n"))
    result = box.rollback()
    assert (result["from_version"], result["to_version"], result["prices_restored"]) == (2, 1, 2)
    assert (price_of(box.db, "COLA"), price_of(box.db, "RICE"), box.link()) == (380, 4990, "1")
    result = box.rollback()
    assert (result["to_version"], price_of(box.db, "COLA"), box.link()) == (0, 350, None)
    with pytest.raises(pk.NothingToRollBack):
        box.rollback()
    assert [h["action"] for h in box.history()] == ["rolled_back", "rolled_back", "installed", "installed"]


def test_rollback_keeps_a_price_someone_changed_since(box: Box) -> None:
    box.install(prices(1, "sku,price\nCOLA,3.80\nRICE,13\n"))
    conn = connect(box.db)
    conn.execute("UPDATE items SET price_fen = 999 WHERE sku = 'RICE'")
    conn.close()
    result = box.rollback()
    assert result["prices_kept"] == ["RICE"]
    assert (price_of(box.db, "COLA"), price_of(box.db, "RICE")) == (350, 999)


def _model_files(**meta_changes: Any) -> dict[str, bytes]:
    folder = shipped_models_dir()
    meta = json.loads((folder / "demand-v1.json").read_text())
    meta.update(meta_changes)
    return {
        "demand-v1.json": json.dumps(meta).encode(),
        "demand-v1.onnx": (folder / "demand-v1.onnx").read_bytes(),
        "demand-v1.tflite": (folder / "demand-v1.tflite").read_bytes(),
    }


def test_a_model_package_is_what_the_forecaster_loads(box: Box) -> None:
    box.install(package("model", "demand", 1, _model_files()))
    folder = pk.installed_model_dir(box.settings)
    assert folder == (box.root / "model/demand/1").resolve()
    model = load_demand_model(folder, "onnx")
    assert model is not None and model.name == "demand-v1"


def test_a_model_of_another_feature_schema_is_refused_at_install(box: Box) -> None:
    with pytest.raises(pk.PackageContentInvalid) as err:
        box.install(package("model", "demand", 1, _model_files(schema_version="demand-features-0")))
    assert "feature schema" in err.value.message_en
    assert pk.installed_model_dir(box.settings) is None


def test_a_model_file_that_does_not_load_is_refused(box: Box) -> None:
    files = _model_files()
    files["demand-v1.onnx"] = b"not a model"
    with pytest.raises(pk.PackageContentInvalid):
        box.install(package("model", "demand", 1, files))


def test_firmware_profiles_are_validated_by_the_profile_schema(box: Box) -> None:
    good = (shipped_profiles_dir() / "mqtt-pos.yaml").read_bytes()
    box.install(package("firmware_profile", "pos", 1, {"mqtt-pos.yaml": good}))
    assert (box.root / "firmware_profile/pos/current/mqtt-pos.yaml").read_bytes() == good
    broken = good.replace(b"transport:", b"transprt:", 1)
    with pytest.raises(pk.PackageContentInvalid) as err:
        box.install(package("firmware_profile", "pos", 2, {"mqtt-pos.yaml": broken}))
    assert any(p.startswith("mqtt-pos.yaml:") for p in err.value.detail["problems"])


def test_rule_packs_of_the_documented_shape_are_stored(box: Box) -> None:
    rule = {
        "id": "cold-alert",
        "name": {"zh": "冷库告警", "en": "cold room alert"},
        "trigger": {"kind": "alert", "alert": "cold-room"},
        "when": "alert.level == 'critical'",
        "then": [{"action": "notify", "role": "quality", "message": {"zh": "冷库告警", "en": "cold room alert"}}],
    }
    outcome = box.install(package("rule_pack", "cold-chain", 1, {"rules.json": json.dumps({"rules": [rule]}).encode()}))
    assert outcome.summary == {"rules": 1, "state": "active"}
    yaml_text = b"rules:\n  - id: a\n    when: x\n    then: [{action: alert}]\n  - id: a\n    when: y\n    then: []\n"
    with pytest.raises(pk.PackageContentInvalid) as err:
        box.install(package("rule_pack", "cold-chain", 2, {"rules.yaml": yaml_text}))
    assert any("appears twice" in p for p in err.value.detail["problems"])


def test_every_refusal_speaks_chinese_and_english(box: Box) -> None:
    with pytest.raises(DomainError) as err:
        box.install(prices(1, "sku,price\nNOPE,1\n"))
    assert "无效" in err.value.message and "refused" in err.value.message_en


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000) | st.text(max_size=500).map(lambda t: ("sku,price\n" + t).encode()))
def test_any_price_list_bytes_parse_or_are_refused_with_reasons(data: bytes) -> None:
    try:
        rows = pk.parse_price_list(data)
    except pk.PackageContentInvalid as err:
        assert err.detail["problems"]
        return
    assert rows and all(0 <= fen <= pk.MAX_PRICE_FEN for _, _, fen in rows)
    assert len({sku for _, sku, _ in rows}) == len(rows)


def test_old_versions_are_pruned_but_the_rollback_chain_stays(box: Box) -> None:
    for version in range(1, 9):
        box.install(prices(version, f"sku,price\nCOLA,{version}.00\n"))
    kept = sorted(int(p.name) for p in (box.root / "price_list/prices").iterdir() if p.name.isdigit())
    assert kept == [4, 5, 6, 7, 8] == list(range(9 - pk.KEEP_VERSIONS, 9))
    for expected in (7, 6, 5, 4):
        assert box.rollback()["to_version"] == expected and box.link() == str(expected)
    with pytest.raises(pk.PackageRefused) as err:
        box.rollback()  # version 3's files were pruned
    assert "gone" in err.value.message_en
    assert (in_force(box.db, "price_list", "prices"), price_of(box.db, "COLA")) == (4, 400)
