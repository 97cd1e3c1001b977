"""The `module` package kind: a signed HQ package puts a module in force in the package's own commit transaction,
the running host notices and starts it without a restart; rolling the package back (HQ, `storebox packages
rollback`) or the module back (API, CLI, broken KPIs) returns to the previous version in both records."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from cloud_sync.packages.format import public_key_hex
from edge.sync import packages as pk
from tests.edge.modules.modkit import ECHO, MILK, HostBox, close_box, module_source, open_box, wait_for
from tests.edge.sync.packaging import HQ_KEY, package


def module_package(name: str, version: int, tag: str, **files: bytes) -> bytes:
    manifest = f"""name: {name}
version: {version}
title: {{zh: 测试模块, en: test module}}
entry: module.py
subscribes: [{{kind: ledger, doc_type: sale}}]
may: [notify]
params: {{tag: {tag}}}
"""
    content = {"manifest.yaml": manifest.encode(), "module.py": module_source(ECHO).encode(), **files}
    return package("module", name, version, content)


@pytest.fixture
def pkgbox(tmp_path: Path) -> Any:
    hb = open_box(tmp_path, hq_public_key=public_key_hex(HQ_KEY))
    try:
        yield hb
    finally:
        close_box(hb)


def _install(hb: HostBox, data: bytes) -> pk.InstallOutcome:
    async def go() -> pk.InstallOutcome:
        loop = asyncio.get_running_loop()
        return await asyncio.to_thread(
            pk.install_package,
            data,
            hb.settings,
            pk.writer_transact(hb.box.writer, loop),
            hb.box.open_reader,
            hb.box.clock,
            actor="test",
            source="file",
        )

    return hb.run(go())  # type: ignore[no-any-return]


def _rollback_package(hb: HostBox) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        return await asyncio.to_thread(
            pk.rollback_package,
            hb.settings,
            pk.writer_transact(hb.box.writer, loop),
            "module",
            "echo",
            hb.box.clock,
            actor="hq",
            source="sync",
        )

    return hb.run(go())  # type: ignore[no-any-return]


def _package_version(hb: HostBox) -> int:
    rows = hb.sql("SELECT version FROM package_current WHERE kind = 'module' AND name = 'echo'")
    return int(rows[0][0]) if rows else 0


def test_a_signed_module_package_runs_without_a_restart_and_rolls_back_as_a_package(pkgbox: HostBox) -> None:
    hb = pkgbox
    pos = hb.device()
    outcome = _install(hb, module_package("echo", 1, "one"))
    assert outcome.kind == "module" and outcome.summary == {"module": "echo", "may": ["notify"]}
    # The host follows the database on its own (no refresh call): the module starts within the refresh period.
    runner = wait_for(lambda: hb.host.runners.get("echo"), "the packaged module to start")
    assert Path(runner.directory) == hb.settings.packages_dir / "module" / "echo" / "1"
    hb.sell(pos, MILK)
    assert wait_for(lambda: hb.notices("echo"), "a notice") == ["one: MILK-1L"]

    _install(hb, module_package("echo", 2, "two"))
    wait_for(lambda: getattr(hb.host.runners.get("echo"), "version", 0) == 2, "v2 to run")
    hb.sell(pos, MILK)
    wait_for(lambda: len(hb.notices("echo")) == 2, "the second notice")
    assert hb.notices("echo")[-1] == "two: MILK-1L"

    # HQ's rollback (the package kind): the module returns to v1 in the same transaction.
    result = _rollback_package(hb)
    assert (result["from_version"], result["to_version"]) == (2, 1)
    wait_for(lambda: getattr(hb.host.runners.get("echo"), "version", 0) == 1, "v1 to run again")
    hb.sell(pos, MILK)
    wait_for(lambda: len(hb.notices("echo")) == 3, "the third notice")
    assert hb.notices("echo")[-1] == "one: MILK-1L"
    assert hb.state("echo") == "enabled"


def test_rolling_the_module_back_rolls_its_package_back_and_reports_it(pkgbox: HostBox) -> None:
    hb = pkgbox
    _install(hb, module_package("echo", 1, "one"))
    _install(hb, module_package("echo", 2, "two"))
    result = hb.run(hb.host.rollback("echo", actor="manager"))
    assert result == {"name": "echo", "from_version": 2, "to_version": 1, "state": "enabled"}
    assert _package_version(hb) == 1
    history = hb.sql("SELECT action, version, to_version FROM package_history WHERE kind = 'module' ORDER BY id")
    assert [tuple(r) for r in history][-1] == ("rolled_back", 2, 1)


def test_rolling_back_the_first_module_package_takes_the_module_out_of_force(pkgbox: HostBox) -> None:
    from edge.modules.errors import ModuleManagedByPackage

    hb = pkgbox
    _install(hb, module_package("echo", 1, "one"))
    wait_for(lambda: "echo" in hb.host.runners, "v1 to run")
    # the store does not remove what HQ's package put in force (its package table and HQ would disagree)
    with pytest.raises(ModuleManagedByPackage):
        hb.run(hb.host.remove("echo", actor="manager"))
    assert hb.state("echo") == "enabled" and _package_version(hb) == 1
    _rollback_package(hb)
    assert hb.state("echo") == "removed"
    wait_for(lambda: "echo" not in hb.host.runners, "the worker to stop")


def test_a_module_package_with_a_bad_manifest_or_code_is_refused_and_nothing_is_in_force(pkgbox: HostBox) -> None:
    hb = pkgbox
    bad_name = module_package("echo", 1, "x").replace(b"name: echo", b"name: other")
    with pytest.raises(pk.PackageContentInvalid) as refused:
        _install(hb, package("module", "echo", 1, {"manifest.yaml": b"name: [", "module.py": b"x = 1\n"}))
    assert "YAML" in refused.value.message_en
    with pytest.raises(pk.PackageContentInvalid) as refused:
        _install(hb, module_package("echo", 2, "x", **{"helper.py": b"def broken(:\n"}))
    assert "helper.py: does not compile" in refused.value.message_en
    assert bad_name  # the signature covers the manifest: a tampered package does not even verify
    assert hb.sql("SELECT COUNT(*) FROM modules")[0][0] == 0
    assert _package_version(hb) == 0
    failed = hb.sql("SELECT action, code FROM package_history WHERE kind = 'module'")
    assert {tuple(r) for r in failed} == {("failed", "package_content_invalid")}
