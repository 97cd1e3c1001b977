from __future__ import annotations

import re
import sqlite3

import httpx
import pytest
from fastapi.routing import APIRoute
from prometheus_client import CollectorRegistry

from edge.web.api import ROUTERS, create_api
from edge.web.deps import access_of
from tests.edge.web.apibox import Box, assert_error_shape, build_deps

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("path", ["/health", "/api/v1/health"])
async def test_health_needs_no_login_and_reports_the_database(box: Box, path: str) -> None:
    response = await box.client.get(path)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] is True
    assert body["writer"] is True
    assert body["time"] == box.clock().isoformat()


async def test_health_is_degraded_when_a_part_reports_false(box: Box) -> None:
    deps = build_deps(box.db_path, box.clock, box.writer, health=lambda: {"broker": False})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_api(deps)), base_url="http://b") as client:
        response = await client.get("/health")
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["broker"]) == ("degraded", False)


async def test_metrics_are_prometheus_text_without_login(box: Box) -> None:
    await box.client.get("/api/v1/items", headers=box.auth("clerk"))
    response = await box.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'storebox_http_requests_total{method="GET",route="/api/v1/items",status="200"} 1.0' in response.text
    assert "storebox_http_request_seconds_bucket" in response.text


async def test_unknown_path_is_404_json(box: Box) -> None:
    response = await box.client.get("/api/v1/nothing-here", headers=box.auth("admin"))
    assert response.status_code == 404
    assert assert_error_shape(response)["code"] == "not_found"


async def test_unknown_document_type_is_404_json(box: Box) -> None:
    response = await box.post("invoice", {"lines": []}, key="k")
    assert response.status_code == 404
    assert assert_error_shape(response)["code"] == "not_found"


async def test_wrong_method_is_405_json(box: Box) -> None:
    response = await box.client.delete("/api/v1/items", headers=box.auth("admin"))
    assert response.status_code == 405
    assert assert_error_shape(response)["code"] == "method_not_allowed"
    assert "GET" in response.headers["allow"]


async def test_unexpected_failure_is_500_without_internals(box: Box) -> None:
    def broken_reader() -> sqlite3.Connection:
        raise RuntimeError("secret internals: /var/lib/storebox/storebox.db")

    deps = build_deps(
        box.db_path, box.clock, box.writer, open_reader=broken_reader, metrics_registry=CollectorRegistry()
    )
    transport = httpx.ASGITransport(app=create_api(deps), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://b") as client:
        response = await client.get("/api/v1/items", headers=box.auth("admin"))
    assert response.status_code == 500
    body = assert_error_shape(response)
    assert body["code"] == "internal_error"
    assert "secret" not in response.text and "storebox.db" not in response.text


async def test_body_over_one_mebibyte_is_413(box: Box) -> None:
    body = b'{"lines": [' + b" " * (1024 * 1024) + b"]}"
    response = await box.client.post(
        "/api/v1/documents/sale",
        content=body,
        headers={**box.auth("clerk"), "Idempotency-Key": "big", "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert assert_error_shape(response)["code"] == "payload_too_large"


async def test_openapi_documents_every_error_and_permission(box: Box) -> None:
    spec = (await box.client.get("/api/v1/openapi.json")).json()
    error_ref = "#/components/schemas/ErrorOut"
    schemes = {  # the security scheme each route's Access states: a bearer token, or a supplier API key
        (method.lower(), re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)): access.scheme
        for router in ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute) and (access := access_of(route)) is not None
        for method in route.methods
    }
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert responses["500"]["content"]["application/json"]["schema"]["$ref"] == error_ref, (method, path)
            success = next(code for code in responses if code.startswith("2"))
            assert "content" in responses[success], (method, path)
            if "x-permission" in operation:
                for status in ("401", "403"):
                    assert responses[status]["content"]["application/json"]["schema"]["$ref"] == error_ref
                assert operation["security"] == [{schemes[(method, path)]: []}]
            if method == "post" and path.startswith("/api/v1/documents/"):
                key = [p for p in operation["parameters"] if p["name"] == "Idempotency-Key"]
                assert key and key[0]["required"] is True and key[0]["in"] == "header"
                assert "requestBody" in operation
                assert responses["409"]["content"]["application/json"]["schema"]["$ref"] == error_ref
    assert (
        spec["paths"]["/api/v1/stock"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["type"]
        == "array"
    )
