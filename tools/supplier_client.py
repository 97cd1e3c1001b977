"""Example client of the StoreBox supplier API (供应商接口示例客户端), for a supplier's integrator to read and copy.

    python tools/supplier_client.py --url http://192.168.1.20:8080 --key sbk_... pos
    python tools/supplier_client.py send asn.json
    python tools/supplier_client.py import delivery.csv --template erp-gbk-csv
    python tools/supplier_client.py get DN-20240601-01

`--url` and `--key` may come from STOREBOX_URL and STOREBOX_SUPPLIER_KEY. Exit code 0: done; 1: the box refused
(every problem is printed with its line); 2: the request could not be made (usage, network, key).
Only httpx is needed. Sending an ASN again is safe: the box keys it by its ASN id, so a retry after a timeout
never records it twice — which is why `SupplierClient` retries sends on network errors, 429 and 503.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import httpx

CONTENT_TYPES = {".csv": "text/csv", ".txt": "text/csv", ".json": "application/json"}


class SupplierApiError(Exception):
    """The box answered with an error: `status`, and the body `{"code", "message", "message_en", "detail"}`."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {body.get('code')}: {body.get('message_en')}")
        self.status = status
        self.body = body

    @property
    def code(self) -> str:
        return str(self.body.get("code", ""))

    @property
    def problems(self) -> list[dict[str, Any]]:
        """Every problem of a refused ASN or file (each with `line` or `where`), or the request's field errors."""
        detail = self.body.get("detail") or {}
        return list(detail.get("problems") or detail.get("errors") or [])


class SupplierClient:
    """The supplier API over httpx. Retries what is safe to retry: reads, and ASN sends (keyed by the ASN id)."""

    def __init__(
        self,
        url: str,
        key: str,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._http = httpx.Client(
            base_url=url.rstrip("/") + "/api/v1/supplier",
            headers={"X-Api-Key": key, "User-Agent": "storebox-supplier-client/1"},
            timeout=timeout,
            transport=transport,
        )
        self._retries = retries
        self._sleep = sleep

    def __enter__(self) -> SupplierClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        for attempt in range(self._retries + 1):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError:
                if attempt == self._retries:
                    raise
                self._sleep(min(2**attempt, 30))
                continue
            if response.status_code in (429, 503) and attempt < self._retries:
                self._sleep(min(float(response.headers.get("Retry-After", 2**attempt)), 60))
                continue
            if response.is_success:
                return response.json()
            try:
                body = response.json()
            except ValueError:
                body = {"code": f"http_{response.status_code}", "message": response.text, "message_en": response.text}
            raise SupplierApiError(response.status_code, body if isinstance(body, dict) else {"detail": body})
        raise AssertionError("unreachable")

    def me(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/me")
        return result

    def purchase_orders(self) -> list[dict[str, Any]]:
        """Every open purchase order of this supplier (all pages)."""
        orders: list[dict[str, Any]] = []
        while True:
            page = self._call("GET", "/purchase-orders", params={"limit": 100, "offset": len(orders)})
            orders.extend(page)
            if len(page) < 100:
                return orders

    def send_asn(self, asn: dict[str, Any]) -> dict[str, Any]:
        """Send one ASN: `{"asn_id", "po_id" or "po_no", "ship_date", "lines": [{"code", "qty", ...}], "note"?}`."""
        result: dict[str, Any] = self._call("POST", "/asns", json=asn)
        return result

    def import_file(self, template: str, data: bytes, content_type: str = "text/csv") -> dict[str, Any]:
        """Send a file in the supplier's own layout through the box's connector template `template`."""
        result: dict[str, Any] = self._call(
            "POST", "/asns/import", params={"template": template}, content=data, headers={"Content-Type": content_type}
        )
        return result

    def asn(self, asn_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/asns/{asn_id}")
        return result

    def templates(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/asn-templates")
        return result


# --- the command line ------------------------------------------------------------------------------


def _print_asn(asn: dict[str, Any], out: TextIO) -> None:
    print(
        f"ASN {asn['asn_id']} rev {asn['revision']} {asn['outcome']} / {asn['state']}: PO {asn['po_no']} "
        f"({asn['po_id']}), {len(asn['lines'])} lines, shipped {asn['ship_date']}",
        file=out,
    )
    for line in asn["lines"]:
        lot = f" lot {line['lot']}" if line["lot"] else ""
        expiry = f" exp {line['expiry']}" if line["expiry"] else ""
        print(f"  {line['line_no']:>3}. {line['sku']:<16} {line['qty']} {line['unit']}{lot}{expiry}", file=out)
    for diff in asn["differences"]:
        print(
            f"  difference {diff['kind']}: {diff['sku']} expected {diff['expected']}, received {diff['received']}",
            file=out,
        )


def _print_error(err: SupplierApiError, out: TextIO) -> None:
    print(f"refused ({err.status} {err.code}): {err.body.get('message')} / {err.body.get('message_en')}", file=out)
    for problem in err.problems:
        where = problem.get("where") or (f"line {problem['line']}" if problem.get("line") else None)
        where = where or problem.get("field") or "ASN"
        print(f"  {where}: {problem.get('message')} / {problem.get('message_en')}", file=out)


def _run(args: argparse.Namespace, client: SupplierClient, out: TextIO) -> None:
    if args.command == "me":
        me = client.me()
        print(f"{me['supplier']} {me['name']}: key {me['key_id']}, {', '.join(me['scopes'])}", file=out)
    elif args.command == "pos":
        for po in client.purchase_orders():
            print(f"PO {po['po_no']} (po_id {po['po_id']}) of {po['business_date']}", file=out)
            for item in po["items"]:
                print(
                    f"  {item['sku']:<16} {item['name']}: ordered {item['ordered']}, received {item['received']},"
                    f" announced {item['announced']}, remaining {item['remaining']} {item['base_unit']}",
                    file=out,
                )
    elif args.command == "send":
        _print_asn(client.send_asn(json.loads(Path(args.file).read_text("utf-8"))), out)
    elif args.command == "import":
        path = Path(args.file)
        content_type = CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
        result = client.import_file(args.template, path.read_bytes(), content_type)
        for asn in result["asns"]:
            _print_asn(asn, out)
    elif args.command == "get":
        _print_asn(client.asn(args.asn_id), out)
    elif args.command == "templates":
        for template in client.templates():
            print(f"{template['name']:<16} {template['format']:<5} {template['description']}", file=out)


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(description="StoreBox supplier API client / 供应商接口客户端")
    cli.add_argument("--url", default=os.environ.get("STOREBOX_URL"), help="the box, e.g. http://192.168.1.20:8080")
    cli.add_argument("--key", default=os.environ.get("STOREBOX_SUPPLIER_KEY"), help="your API key sbk_...")
    commands = cli.add_subparsers(dest="command", required=True)
    commands.add_parser("me", help="check the key: supplier and scopes")
    commands.add_parser("pos", help="your open purchase orders and what remains to ship")
    commands.add_parser("send", help="send one ASN from a JSON file").add_argument("file")
    upload = commands.add_parser("import", help="send a CSV/JSON file through a connector template")
    upload.add_argument("file")
    upload.add_argument("--template", required=True, help="e.g. generic-csv, erp-gbk-csv, nested-json")
    commands.add_parser("get", help="an ASN's state, receipts and differences").add_argument("asn_id")
    commands.add_parser("templates", help="the box's connector templates")
    return cli


def main(
    argv: Sequence[str] | None = None, out: TextIO | None = None, transport: httpx.BaseTransport | None = None
) -> int:
    out = out or sys.stdout
    args = parser().parse_args(argv)
    if not args.url or not args.key:
        print("need --url and --key (or STOREBOX_URL and STOREBOX_SUPPLIER_KEY)", file=out)
        return 2
    with SupplierClient(args.url, args.key, transport=transport) as client:
        try:
            _run(args, client, out)
        except SupplierApiError as err:
            _print_error(err, out)
            return 2 if err.status in (401, 403, 429) else 1
        except (httpx.HTTPError, OSError, ValueError) as err:
            print(f"cannot reach the box or read the file: {err}", file=out)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
