"""Login (OAuth2 password flow) and who am I."""

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.security import OAuth2PasswordRequestForm

from edge.security.errors import AuthenticationFailed
from edge.security.roles import ROLE_PERMISSIONS
from edge.security.tokens import issue_token
from edge.security.users import User, authenticate_user
from edge.web.deps import Deps, Reader, require
from edge.web.errors import error_responses
from edge.web.schemas import MeOut, TokenOut

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


@router.post(
    "/token",
    response_model=TokenOut,
    responses=error_responses(401, 422, 500),
    summary="Log in: username and password for a bearer token / 登录",
)
def login(form: Annotated[OAuth2PasswordRequestForm, Depends()], deps: Deps, reader: Reader) -> TokenOut:
    """OAuth2 password flow: form fields `username` and `password`; answers a bearer token.

    Wrong credentials and disabled accounts get the same 401, so a caller cannot tell which it was.
    """
    user = authenticate_user(reader, form.username, form.password)
    if user is None:
        raise AuthenticationFailed()
    ttl = timedelta(minutes=deps.settings.token_ttl_minutes)
    issued = issue_token(deps.token_secret, user.username, user.role, now=deps.clock(), ttl=ttl)
    return TokenOut(access_token=issued.access_token, expires_in=issued.expires_in, role=user.role)


@router.get(
    "/me",
    response_model=MeOut,
    responses=error_responses(401, 403, 500),
    summary="The logged-in user and what they may do / 当前用户",
)
def me(user: Annotated[User, require("profile:read")]) -> MeOut:
    return MeOut(
        username=user.username,
        role=user.role,
        display_name=user.display_name,
        permissions=sorted(ROLE_PERMISSIONS[user.role]),
    )
