"""The examples of docs/demo.md run as written against a real demo box."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tools.box_process import BoxProcess

pytestmark = pytest.mark.slow

DOC = Path(__file__).resolve().parents[3] / "docs" / "demo.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory):
    process = BoxProcess(tmp_path_factory.mktemp("demo-docs"))
    process.start()
    yield process
    process.terminate()


def _env(box: BoxProcess) -> dict[str, str]:
    return {**os.environ, "DEMO": str(box.data_dir / "demo.json")}


def test_the_documented_demo_json_keys_are_the_real_ones(box: BoxProcess) -> None:
    documented = json.loads(_blocks("json")[0])
    real = box.demo_json()
    assert list(documented) == list(real)
    assert set(documented["users"]) == set(real["users"])
    assert [d["id"] for d in documented["devices"]] == [d["id"] for d in real["devices"]]


@pytest.mark.skipif(shutil.which("curl") is None or shutil.which("jq") is None, reason="needs curl and jq")
def test_the_shell_example_logs_in_reads_stock_and_sells(box: BoxProcess) -> None:
    script = _blocks("bash")[0]
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=_env(box), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    sku = box.demo_json()["items"][0]["sku"]
    assert any(r.get("sku") == sku and r.get("location") == "floor" and r["qty"] > 0 for r in rows)
    assert rows[-1]["doc_no"].startswith("SA")


def test_the_paho_example_gets_an_ok_ack_for_its_sale(box: BoxProcess, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(_blocks("python")[0], encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], env=_env(box), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    ok, code, document, _ = done.stdout.split(" ", 3)
    assert (ok, code) == ("True", "ok") and int(document) > 0


@pytest.mark.skipif(shutil.which("mosquitto_pub") is None, reason="needs the Mosquitto clients")
def test_the_mosquitto_example_gets_an_ok_ack(box: BoxProcess) -> None:
    watch, publish = _blocks("bash")[1:3]
    setup = "\n".join(watch.strip().splitlines()[:3])
    watcher = subprocess.Popen(
        ["bash", "-c", watch.replace(" -v", " -C 1")], env=_env(box), stdout=subprocess.PIPE, text=True
    )
    out = None
    try:
        # Acks are not retained: publish until the watcher, subscribed by then, has seen one.
        for _ in range(40):
            subprocess.run(["bash", "-euo", "pipefail", "-c", f"{setup}\n{publish}"], env=_env(box), check=True)
            try:
                out, _ = watcher.communicate(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                continue
    finally:
        watcher.kill()
    assert out is not None and json.loads(out)["ok"] is True
