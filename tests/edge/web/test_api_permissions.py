"""The whole matrix: every endpoint x every role, read from the OpenAPI document the box serves; the supplier API's
endpoints (security scheme SupplierApiKey) x every scope of a supplier key instead."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.routing import APIRoute

from edge.db import connect
from edge.devices.supplier_keys import SUPPLIER_PERMISSIONS, create_api_key
from edge.security.roles import ROLE_PERMISSIONS, Role
from edge.web.api import PUBLIC_PATHS, ROUTERS
from edge.web.deps import permission_of
from tests.edge.web.apibox import Box, assert_error_shape

BEARER = "OAuth2PasswordBearer"

pytestmark = pytest.mark.anyio

# Path parameters by name; any other (numeric ids of papers, freezes, invoices, ...) is "1".
PATH_VALUES = {
    "document_id": "1",
    "sku": "COLA",
    "code": "6901234567892",
    "supplier_id": "sup-1",
    "version": "SE-2026.1",
}


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES.get(m.group(1), "1"), path)


async def operations(box: Box, scheme: str | None = BEARER) -> list[tuple[str, str, str | None]]:
    """(method, path, x-permission) of the operations whose caller comes by `scheme` (None: all of them)."""
    spec: dict[str, Any] = (await box.client.get("/api/v1/openapi.json")).json()
    return [
        (method.upper(), path, operation.get("x-permission"))
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if scheme is None
        or ("x-permission" in operation and operation["security"] == [{scheme: []}])
        or ("x-permission" not in operation and scheme == BEARER)
    ]


async def test_every_endpoint_but_the_public_ones_states_a_permission(box: Box) -> None:
    ops = await operations(box, None)
    assert len(ops) >= 25
    for method, path, permission in ops:
        assert (permission is None) == (path in PUBLIC_PATHS), (method, path, permission)
    for router in ROUTERS:
        for route in router.routes:
            if isinstance(route, APIRoute) and route.path not in PUBLIC_PATHS:
                assert permission_of(route) is not None, route.path


async def test_each_role_gets_403_exactly_where_it_lacks_the_permission(box: Box) -> None:
    protected = [op for op in await operations(box) if op[2] is not None]
    assert len(protected) >= 24
    checked = 0
    for method, path, permission in protected:
        assert permission is not None
        for role in Role:
            response = await box.client.request(method, concrete(path), headers=box.auth(role))
            allowed = permission in ROLE_PERMISSIONS[role]
            if allowed:
                assert response.status_code not in (401, 403), (role, method, path, response.text)
            else:
                assert response.status_code == 403, (role, method, path, response.text)
                body = assert_error_shape(response)
                assert body["code"] == "permission_denied"
                assert body["detail"] == {"permission": permission, "role": role.value}
                assert permission in body["message"] and permission in body["message_en"]
            checked += 1
    assert checked == len(protected) * len(Role)
    assert box.count("documents") == 0


async def test_without_a_token_everything_but_the_public_endpoints_is_401(box: Box) -> None:
    for method, path, permission in await operations(box):
        response = await box.client.request(method, concrete(path))
        if permission is None:
            assert response.status_code not in (401, 403), (method, path)
            continue
        assert response.status_code == 401, (method, path)
        assert response.headers["www-authenticate"] == "Bearer"
        assert assert_error_shape(response)["code"] == "not_authenticated"


async def test_supplier_key_endpoints_take_no_token_and_403_exactly_where_the_key_lacks_the_scope(box: Box) -> None:
    protected = await operations(box, "SupplierApiKey")
    assert len(protected) >= 8
    conn = connect(box.db_path)
    try:
        keys = {
            scope: create_api_key(conn, "sup-1", now=box.clock(), actor="t", scopes=[scope])
            for scope in SUPPLIER_PERMISSIONS
        }
    finally:
        conn.close()
    for method, path, permission in protected:
        assert permission in SUPPLIER_PERMISSIONS, (method, path)
        for headers in ({}, box.auth(Role.ADMIN)):
            response = await box.client.request(method, concrete(path), headers=headers)
            assert response.status_code == 401, (method, path)
            assert response.headers["www-authenticate"] == 'ApiKey header="X-Api-Key"'
        for scope, issued in keys.items():
            response = await box.client.request(method, concrete(path), headers={"X-Api-Key": issued.key})
            if permission in issued.info.scopes:
                assert response.status_code not in (401, 403, 429), (scope, method, path, response.text)
            else:
                assert response.status_code == 403, (scope, method, path, response.text)
                assert assert_error_shape(response)["detail"] == {
                    "permission": permission,
                    "key_id": issued.info.key_id,
                }
