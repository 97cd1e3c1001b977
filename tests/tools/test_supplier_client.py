"""The supplier API pack against the box served by uvicorn on 127.0.0.1: the example client (tools/supplier_client.py)
and the Postman collection, whose requests are sent in order and must get the statuses its test scripts expect."""

from __future__ import annotations

import io
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.db import connect
from edge.devices.supplier_keys import create_api_key
from tests.edge.web.apibox import COLA_CASE, MILK_BARCODE, ServedBox, seed
from tests.edge.web.test_api_permissions import concrete
from tools.supplier_client import SupplierApiError, SupplierClient, main

PACK = Path(__file__).resolve().parents[2] / "docs" / "supplier-api"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedBox]:
    template = tmp_path_factory.mktemp("supplier-template") / "storebox.db"
    seed(template)
    path = tmp_path_factory.mktemp("supplier-served") / "storebox.db"
    shutil.copyfile(template, path)
    box = ServedBox(path)
    box.start()
    body = {
        "counterparty": "sup-1",
        "lines": [{"code": COLA_CASE, "qty": 100, "price_fen": 5400}, {"code": "MILK", "qty": 200, "price_fen": 900}],
    }
    headers = {**box.auth("purchaser"), "Idempotency-Key": "client-po"}
    response = httpx.post(f"{box.url}/api/v1/documents/purchase_order", json=body, headers=headers)
    assert response.status_code == 201, response.text
    yield box
    box.stop()


def new_key(box: ServedBox, **kwargs: Any) -> str:
    conn = connect(box.db_path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        issued = create_api_key(conn, "sup-1", now=box.clock(), actor="test", **kwargs)
        conn.execute("COMMIT")
    finally:
        conn.close()
    return issued.key


def run(box: ServedBox, key: str, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["--url", box.url, "--key", key, *args], out=out)
    return code, out.getvalue()


def test_the_client_lists_open_purchase_orders_with_what_remains(served: ServedBox) -> None:
    code, out = run(served, new_key(served), "pos")
    assert code == 0, out
    assert "PO PO20240601-000001 (po_id 1)" in out
    assert "COLA" in out and "remaining" in out
    code, out = run(served, new_key(served), "me")
    assert code == 0 and out.startswith("sup-1 华润饮料: key ")


def test_the_client_sends_an_asn_and_reads_it_back(served: ServedBox, tmp_path: Path) -> None:
    key = new_key(served)
    asn = {
        "asn_id": "CLI-1",
        "po_no": "PO20240601-000001",
        "ship_date": "2024-06-01",
        "lines": [{"code": COLA_CASE, "qty": 2}, {"code": MILK_BARCODE, "qty": 5, "lot": "L1", "expiry": "2024-06-07"}],
    }
    (tmp_path / "asn.json").write_text(json.dumps(asn), "utf-8")
    code, out = run(served, key, "send", str(tmp_path / "asn.json"))
    assert code == 0, out
    assert out.splitlines()[0].startswith("ASN CLI-1 rev 1 created / open: PO PO20240601-000001 (1), 2 lines")
    code, out = run(served, key, "send", str(tmp_path / "asn.json"))
    assert (code, "rev 1 unchanged" in out) == (0, True)
    code, out = run(served, key, "get", "CLI-1")
    assert code == 0 and "MILK" in out and "lot L1 exp 2024-06-07" in out


def test_the_client_prints_every_problem_of_a_refused_asn_and_exits_1(served: ServedBox, tmp_path: Path) -> None:
    asn = {
        "asn_id": "CLI-2",
        "po_id": 1,
        "ship_date": "2024-06-01",
        "lines": [{"code": "NOPE", "qty": 1}, {"code": MILK_BARCODE, "qty": 1}],
    }
    (tmp_path / "bad.json").write_text(json.dumps(asn), "utf-8")
    code, out = run(served, new_key(served), "send", str(tmp_path / "bad.json"))
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith("refused (422 asn_rejected): 发货通知被拒绝")
    assert lines[1].startswith("  line 1: 未知商品或条码: NOPE / unknown item or barcode: NOPE")
    assert [line.split(":")[0] for line in lines[1:]] == ["  line 1", "  line 2", "  line 2"]


def test_the_client_sends_a_csv_through_a_template_and_shows_file_lines_when_refused(
    served: ServedBox, tmp_path: Path
) -> None:
    key = new_key(served)
    good = tmp_path / "shipment.csv"
    good.write_text(f"asn_id,po,ship_date,item,qty\nCLI-CSV,PO20240601-000001,2024-06-01,{COLA_CASE},1\n", "utf-8")
    code, out = run(served, key, "import", str(good), "--template", "generic-csv")
    assert code == 0, out
    assert out.startswith("ASN CLI-CSV rev 1 created")
    bad = tmp_path / "bad.csv"
    bad.write_text(f"asn_id,po,ship_date,item,qty\nCLI-CSV2,1,2024-06-01,{MILK_BARCODE},1\n", "utf-8")
    code, out = run(served, key, "import", str(bad), "--template", "generic-csv")
    assert code == 1
    assert "  line 2: 商品 MILK (鲜牛奶 1L) 须填写批号" in out
    code, out = run(served, key, "templates")
    assert code == 0 and out.split()[0] == "erp-gbk-csv"


def test_usage_key_and_network_troubles_exit_2(served: ServedBox, tmp_path: Path) -> None:
    assert main(["pos"], out=io.StringIO()) == 2  # no --url, no --key
    code, out = run(served, "sbk_wrong", "pos")
    assert code == 2 and "invalid_api_key" in out
    code, out = run(served, new_key(served), "send", str(tmp_path / "missing.json"))
    assert code == 2 and "cannot reach the box or read the file" in out


def test_the_client_waits_retry_after_when_limited_and_retries_network_errors(served: ServedBox) -> None:
    waits: list[float] = []
    limited = None
    with SupplierClient(served.url, new_key(served), sleep=waits.append, retries=2) as client:
        for _ in range(300):  # 60 a minute, refilled as time goes: the bucket runs dry within a few more
            waits.clear()  # a token refilled during a slow run can let an earlier call through on its retry
            try:
                client.me()
            except SupplierApiError as err:
                limited = err
                break
    assert limited is not None and limited.status == 429 and limited.code == "rate_limited"
    assert len(waits) == 2 and all(wait >= 1.0 for wait in waits)  # waited Retry-After twice
    waits.clear()
    with (
        SupplierClient("http://127.0.0.1:9", "sbk_x", sleep=waits.append, retries=2) as client,
        pytest.raises(httpx.ConnectError),
    ):
        client.me()
    assert waits == [1, 2]


# --- the Postman collection -------------------------------------------------------------------------

_STATUS = re.compile(r"pm\.response\.to\.have\.status\((\d+)\)")
_SET = re.compile(r'pm\.collectionVariables\.set\("(\w+)", pm\.response\.json\(\)((?:\[\d+\]|\.\w+)*)\);')
_VAR = re.compile(r"\{\{(\w+)\}\}")


def _requests(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for item in items:
        if "item" in item:
            yield from _requests(item["item"])
        else:
            yield item


def _script(item: dict[str, Any], listen: str) -> str:
    (event,) = [e for e in item["event"] if e["listen"] == listen]
    return "\n".join(event["script"]["exec"])


def _pick(value: Any, path: str) -> Any:
    for index, key in re.findall(r"\[(\d+)\]|\.(\w+)", path):
        value = value[int(index)] if index else value[key]
    return value


def test_the_postman_collection_is_v2_1_and_names_only_supplier_api_operations() -> None:
    collection = json.loads((PACK / "storebox-supplier.postman_collection.json").read_text("utf-8"))
    assert collection["info"]["schema"] == "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
    assert collection["auth"]["type"] == "apikey"
    operations = {
        (method.upper(), concrete(path).replace("/1", "/X")): path
        for path, item in json.loads((PACK / "openapi.json").read_text("utf-8"))["paths"].items()
        for method in item
    }
    seen = set()
    for item in _requests(collection["item"]):
        request = item["request"]
        script = _script(item, "test")
        assert len(_STATUS.findall(script)) == 1, item["name"]
        assert script.count("pm.test(") >= 2, item["name"]  # the status and something about the body
        path = "/" + "/".join(request["url"]["path"])
        shape = re.sub(r"/(\{\{\w+\}\}|NO-SUCH-ASN)", "/X", path)
        assert (request["method"], shape) in operations or (request["method"], path) in operations, item["name"]
        seen.add(
            (request["method"], operations.get((request["method"], shape)) or operations[(request["method"], path)])
        )
    assert len(seen) == len(operations) - 1  # all but one template's YAML
    first, *rest = _requests(collection["item"])
    assert set(re.findall(r'collectionVariables\.set\("(\w+)"', _script(first, "prerequest"))) == {"asnId", "shipDate"}
    assert not any(e["listen"] == "prerequest" for item in rest for e in item["event"])


def test_the_postman_collection_runs_against_the_box_and_every_test_status_holds(served: ServedBox) -> None:
    collection = json.loads((PACK / "storebox-supplier.postman_collection.json").read_text("utf-8"))
    variables = {v["key"]: v["value"] for v in collection["variable"]}
    variables.update(baseUrl=served.url, apiKey=new_key(served), asnId="PM-TEST-1", shipDate="2024-06-01")

    def fill(text: str) -> str:
        return _VAR.sub(lambda m: str(variables[m.group(1)]), text)

    ran = 0
    with httpx.Client(timeout=10) as http:
        for item in _requests(collection["item"]):
            request = item["request"]
            script = _script(item, "test")  # its prerequest scripts only set asnId and shipDate, as above
            headers = {h["key"]: fill(h["value"]) for h in request.get("header", [])}
            auth = request.get("auth", collection["auth"])
            if auth["type"] == "apikey":
                fields = {f["key"]: f["value"] for f in auth["apikey"]}
                headers[fields["key"]] = fill(fields["value"])
            body = fill(request["body"]["raw"]).encode() if "body" in request else None
            response = http.request(request["method"], fill(request["url"]["raw"]), headers=headers, content=body)
            (status,) = _STATUS.findall(script)
            assert response.status_code == int(status), (item["name"], response.text)
            for name, path in _SET.findall(script):
                variables[name] = _pick(response.json(), path)
            ran += 1
    assert ran == 12 and variables["poNo"] == "PO20240601-000001"
