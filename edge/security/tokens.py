"""OAuth2 bearer tokens: JWTs signed with HS256 by a secret that only this box knows.

The secret is created once per box (`<data_dir>/secret.key`, mode 0600) and passed in as bytes.
Expiry is checked against the `now` the caller passes, not the system clock, so tests can move time.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt

from edge.security.errors import InvalidToken, SecretFileError, TokenExpired
from edge.security.roles import Role, parse_role

ALGORITHM = "HS256"
SECRET_BYTES = 64
MIN_SECRET_BYTES = 32
MAX_TOKEN_LENGTH = 4096


@dataclass(frozen=True, slots=True)
class IssuedToken:
    access_token: str
    expires_in: int  # seconds
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class TokenClaims:
    sub: str
    role: Role
    issued_at: datetime
    expires_at: datetime


def _epoch(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("token times must be timezone-aware")
    return int(moment.timestamp())


def issue_token(secret: bytes, username: str, role: Role | str, *, now: datetime, ttl: timedelta) -> IssuedToken:
    """A signed token for `username` with `role`, valid from `now` for `ttl`."""
    parsed = parse_role(role) if isinstance(role, str) else role
    if parsed is None:
        raise ValueError(f"unknown role {role!r}")
    issued = _epoch(now)
    expires = issued + int(ttl.total_seconds())
    token = jwt.encode({"sub": username, "role": parsed.value, "iat": issued, "exp": expires}, secret, ALGORITHM)
    return IssuedToken(token, expires - issued, datetime.fromtimestamp(expires, UTC))


def decode_token(secret: bytes, token: str, *, now: datetime) -> TokenClaims:
    """The claims of a token signed with `secret` and not expired at `now`.

    Raises TokenExpired or InvalidToken, and nothing else, whatever `token` holds.
    """
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("empty or too long")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["sub", "role", "iat", "exp"], "verify_exp": False, "verify_iat": False},
        )
    except (jwt.PyJWTError, ValueError, TypeError, KeyError, UnicodeError) as exc:
        raise InvalidToken() from exc
    sub, role_name, iat, exp = claims.get("sub"), claims.get("role"), claims.get("iat"), claims.get("exp")
    if not isinstance(sub, str) or not sub or not isinstance(role_name, str):
        raise InvalidToken("missing subject or role")
    role = parse_role(role_name)
    if role is None:
        raise InvalidToken("unknown role")
    if type(iat) is not int or type(exp) is not int or not 0 <= iat <= exp <= 2**40:
        raise InvalidToken("bad times")
    expires_at = datetime.fromtimestamp(exp, UTC)
    if _epoch(now) >= exp:
        raise TokenExpired(expires_at.isoformat())
    return TokenClaims(sub, role, datetime.fromtimestamp(iat, UTC), expires_at)


def load_or_create_secret(path: Path | str) -> bytes:
    """The box's signing secret from `path`, created (mode 0600) with fresh random bytes if missing.

    Creation is atomic: a temporary file is linked into place, so two processes starting together
    agree on one secret and nobody ever reads a half-written file.
    """
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                os.fchmod(fh.fileno(), 0o600)
                fh.write(secrets.token_bytes(SECRET_BYTES))
                fh.flush()
                os.fsync(fh.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(temp, path)
        finally:
            temp.unlink(missing_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        os.chmod(path, 0o600)
    secret = path.read_bytes()
    if len(secret) < MIN_SECRET_BYTES:
        raise SecretFileError(str(path), f"shorter than {MIN_SECRET_BYTES} bytes", f"长度不足 {MIN_SECRET_BYTES} 字节")
    return secret
