"""Users of the HTTP API and the local page (用户), each with one role and an argon2id password.

Functions write inside the caller's transaction (through the ledger writer in the running box).
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from datetime import datetime

from edge.security.errors import InvalidUsername, UnknownRole, UnknownUser, UserExists
from edge.security.passwords import hash_password, verify_password
from edge.security.roles import Role, parse_role

USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_SQL_NOW = "strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now')"


@dataclass(frozen=True, slots=True)
class User:
    username: str
    role: Role
    display_name: str
    active: bool


def _check_username(username: str) -> None:
    if not USERNAME_PATTERN.match(username):
        raise InvalidUsername(username)


def _check_role(role: str) -> Role:
    parsed = parse_role(role)
    if parsed is None:
        raise UnknownRole(role, [r.value for r in Role])
    return parsed


def _user(row: sqlite3.Row) -> User | None:
    role = parse_role(row["role"])
    if role is None:
        return None
    return User(row["username"], role, row["display_name"], bool(row["active"]))


def create_user(
    conn: sqlite3.Connection,
    username: str,
    password: str,
    role: Role | str,
    display_name: str | None = None,
    *,
    now: datetime | None = None,
) -> User:
    """Add a user; `now` defaults to the database's clock."""
    _check_username(username)
    parsed = _check_role(role)
    password_hash = hash_password(password)
    created = now.isoformat(timespec="seconds") if now else None
    try:
        conn.execute(
            "INSERT INTO users (username, password_hash, role, display_name, active, created_at)"
            f" VALUES (?, ?, ?, ?, 1, COALESCE(?, {_SQL_NOW}))",
            (username, password_hash, parsed.value, display_name or username, created),
        )
    except sqlite3.IntegrityError as exc:
        raise UserExists(username) from exc
    return User(username, parsed, display_name or username, True)


def get_user(conn: sqlite3.Connection, username: str) -> User | None:
    row = conn.execute(
        "SELECT username, role, display_name, active FROM users WHERE username = ?", (username,)
    ).fetchone()
    return None if row is None else _user(row)


def list_users(conn: sqlite3.Connection) -> list[User]:
    rows = conn.execute("SELECT username, role, display_name, active FROM users ORDER BY username").fetchall()
    return [user for user in map(_user, rows) if user is not None]


def authenticate_user(conn: sqlite3.Connection, username: str, password: str) -> User | None:
    """The active user with this username and password, else None (same time either way)."""
    row = conn.execute(
        "SELECT username, password_hash, role, display_name, active FROM users WHERE username = ?",
        (username,),
    ).fetchone()
    matches = verify_password(row["password_hash"] if row is not None else None, password)
    if row is None or not matches:
        return None
    user = _user(row)
    return user if user is not None and user.active else None


def set_user_active(conn: sqlite3.Connection, username: str, active: bool) -> None:
    if conn.execute("UPDATE users SET active = ? WHERE username = ?", (int(active), username)).rowcount == 0:
        raise UnknownUser(username)


def set_user_password(conn: sqlite3.Connection, username: str, password: str) -> None:
    password_hash = hash_password(password)
    updated = conn.execute("UPDATE users SET password_hash = ? WHERE username = ?", (password_hash, username))
    if updated.rowcount == 0:
        raise UnknownUser(username)


def set_user_role(conn: sqlite3.Connection, username: str, role: Role | str) -> None:
    parsed = _check_role(role)
    if conn.execute("UPDATE users SET role = ? WHERE username = ?", (parsed.value, username)).rowcount == 0:
        raise UnknownUser(username)
