from __future__ import annotations

from datetime import timedelta

import pytest

from edge.security.roles import ROLE_PERMISSIONS, Role
from edge.security.tokens import issue_token
from edge.security.users import set_user_active
from tests.edge.web.apibox import Box, assert_error_shape, password_of

pytestmark = pytest.mark.anyio


async def login(box: Box, username: str, password: str) -> tuple[int, dict]:
    response = await box.client.post("/api/v1/auth/token", data={"username": username, "password": password})
    return response.status_code, response.json()


async def test_login_gives_a_bearer_token_that_opens_the_api(box: Box) -> None:
    status, body = await login(box, "clerk", password_of("clerk"))
    assert status == 200
    assert body["token_type"] == "bearer"
    assert body["role"] == "clerk"
    assert body["expires_in"] == box.deps.settings.token_ttl_minutes * 60
    me = await box.client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json() == {
        "username": "clerk",
        "role": "clerk",
        "display_name": "测试clerk",
        "permissions": sorted(ROLE_PERMISSIONS[Role.CLERK]),
    }


@pytest.mark.parametrize(("username", "password"), [("clerk", "wrong-password"), ("nobody", "clerk-password")])
async def test_bad_credentials_get_401_json_with_bearer_challenge(box: Box, username: str, password: str) -> None:
    response = await box.client.post("/api/v1/auth/token", data={"username": username, "password": password})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    body = assert_error_shape(response)
    assert body["code"] == "authentication_failed"
    assert "密码" in body["message"] and "password" in body["message_en"]


async def test_login_without_password_is_a_validation_error_naming_the_field(box: Box) -> None:
    response = await box.client.post("/api/v1/auth/token", data={"username": "clerk"})
    assert response.status_code == 422
    body = assert_error_shape(response)
    assert body["code"] == "validation_error"
    assert "password" in body["message"] and "password" in body["message_en"]


async def test_disabled_user_cannot_log_in_and_their_token_stops_working(box: Box) -> None:
    headers = box.auth("clerk")
    assert (await box.client.get("/api/v1/items", headers=headers)).status_code == 200
    await box.writer.execute(set_user_active, "clerk", False)
    status, body = await login(box, "clerk", password_of("clerk"))
    assert (status, body["code"]) == (401, "authentication_failed")
    response = await box.client.get("/api/v1/items", headers=headers)
    assert response.status_code == 401
    assert assert_error_shape(response)["code"] == "invalid_token"


async def test_token_expires_by_the_box_clock(box: Box) -> None:
    headers = box.auth("manager")
    box.clock.advance(timedelta(hours=8))
    response = await box.client.get("/api/v1/items", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert assert_error_shape(response)["code"] == "token_expired"


@pytest.mark.parametrize(
    "authorization",
    ["Bearer not-a-token", "Bearer ", "Basic Y2xlcms6Y2xlcmstcGFzc3dvcmQ=", "Bearer a.b.c", "Bearer " + "x" * 5000],
)
async def test_garbage_authorization_gets_401(box: Box, authorization: str) -> None:
    response = await box.client.get("/api/v1/stock", headers={"Authorization": authorization})
    assert response.status_code == 401
    assert assert_error_shape(response)["code"] in {"invalid_token", "not_authenticated"}
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_token_signed_by_another_box_is_refused(box: Box) -> None:
    token = issue_token(b"another-box" * 6, "admin", "admin", now=box.clock(), ttl=timedelta(hours=1)).access_token
    response = await box.client.get("/api/v1/items", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert assert_error_shape(response)["code"] == "invalid_token"


async def test_role_comes_from_the_database_not_the_token(box: Box) -> None:
    token = issue_token(box.deps.token_secret, "clerk", "admin", now=box.clock(), ttl=timedelta(hours=1))
    response = await box.client.get("/api/v1/vouchers", headers={"Authorization": f"Bearer {token.access_token}"})
    assert response.status_code == 403
    body = assert_error_shape(response)
    assert body["detail"] == {"permission": "vouchers:read", "role": "clerk"}
