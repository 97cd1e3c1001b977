from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest

from edge.security.errors import InvalidUsername, SecurityError, UnknownRole, UnknownUser, UserExists
from edge.security.roles import Role
from edge.security.users import (
    User,
    authenticate_user,
    create_user,
    get_user,
    list_users,
    set_user_active,
    set_user_password,
    set_user_role,
)


def test_created_user_authenticates_with_the_right_password(conn: sqlite3.Connection) -> None:
    created = create_user(conn, "wang.fang", "s3cret-pass", "manager", "王芳")
    user = authenticate_user(conn, "wang.fang", "s3cret-pass")
    assert user == created == User("wang.fang", Role.MANAGER, "王芳", True)


def test_wrong_password_or_unknown_user_gives_none(conn: sqlite3.Connection) -> None:
    create_user(conn, "li", "s3cret-pass", Role.CLERK)
    assert authenticate_user(conn, "li", "s3cret-pasS") is None
    assert authenticate_user(conn, "nobody", "s3cret-pass") is None
    assert authenticate_user(conn, "li", "") is None


def test_password_is_stored_only_as_argon2_hash(conn: sqlite3.Connection) -> None:
    create_user(conn, "li", "s3cret-pass", Role.CLERK)
    stored = conn.execute("SELECT password_hash FROM users WHERE username = 'li'").fetchone()[0]
    assert stored.startswith("$argon2id$") and "s3cret-pass" not in stored


def test_inactive_user_cannot_authenticate(conn: sqlite3.Connection) -> None:
    create_user(conn, "li", "s3cret-pass", Role.CLERK)
    set_user_active(conn, "li", False)
    assert authenticate_user(conn, "li", "s3cret-pass") is None
    assert get_user(conn, "li") == User("li", Role.CLERK, "li", False)
    set_user_active(conn, "li", True)
    assert authenticate_user(conn, "li", "s3cret-pass") is not None


def test_password_and_role_changes_take_effect(conn: sqlite3.Connection) -> None:
    create_user(conn, "li", "s3cret-pass", Role.CLERK)
    set_user_password(conn, "li", "new-s3cret-pass")
    set_user_role(conn, "li", "auditor")
    assert authenticate_user(conn, "li", "s3cret-pass") is None
    user = authenticate_user(conn, "li", "new-s3cret-pass")
    assert user is not None and user.role is Role.AUDITOR


def test_created_at_uses_the_given_clock(conn: sqlite3.Connection) -> None:
    create_user(conn, "li", "s3cret-pass", Role.CLERK, now=datetime(2024, 5, 1, 8, 30, tzinfo=UTC))
    assert conn.execute("SELECT created_at FROM users").fetchone()[0] == "2024-05-01T08:30:00+00:00"


def test_duplicate_user_is_refused(conn: sqlite3.Connection) -> None:
    create_user(conn, "li", "s3cret-pass", Role.CLERK)
    with pytest.raises(UserExists) as err:
        create_user(conn, "li", "other-pass-1", Role.ADMIN)
    assert err.value.status == 409 and err.value.detail == {"username": "li"}


@pytest.mark.parametrize("username", ["", "Li", "li wei", "-li", "李", "x" * 65, "li/../x"])
def test_invalid_username_is_refused(conn: sqlite3.Connection, username: str) -> None:
    with pytest.raises(InvalidUsername):
        create_user(conn, username, "s3cret-pass", Role.CLERK)
    assert list_users(conn) == []


def test_unknown_role_is_refused_naming_the_known_roles(conn: sqlite3.Connection) -> None:
    with pytest.raises(UnknownRole) as err:
        create_user(conn, "li", "s3cret-pass", "cashier")
    assert "clerk" in err.value.message and "clerk" in err.value.message_en
    assert err.value.detail["allowed"] == [r.value for r in Role]


def test_changing_an_unknown_user_is_refused(conn: sqlite3.Connection) -> None:
    for change in (
        lambda: set_user_active(conn, "ghost", False),
        lambda: set_user_password(conn, "ghost", "s3cret-pass"),
        lambda: set_user_role(conn, "ghost", Role.CLERK),
    ):
        with pytest.raises(UnknownUser):
            change()


def test_errors_carry_code_and_both_languages() -> None:
    err: SecurityError = UserExists("li")
    body = err.to_dict()
    assert body == {
        "code": "user_exists",
        "message": "用户已存在: li",
        "message_en": "user already exists: li",
        "detail": {"username": "li"},
    }
