"""Security errors: each has a stable code, a Chinese and an English message, and the fields a user needs."""

from __future__ import annotations

from edge.ledger.errors import DomainError


class SecurityError(DomainError):
    """Base of every refusal by the security package. `code` is stable; clients switch on it."""

    code = "security_error"


class InvalidUsername(SecurityError):
    code = "invalid_username"
    status = 422

    def __init__(self, username: str) -> None:
        super().__init__(
            f"用户名无效: {username!r} (小写字母、数字、. _ -，以字母或数字开头，最长 64)",
            f"invalid username {username!r}: lowercase letters, digits, . _ -, starting with a letter "
            "or digit, up to 64",
            field="username",
            value=username,
        )


class WeakPassword(SecurityError):
    code = "weak_password"
    status = 422

    def __init__(self, min_length: int, max_length: int) -> None:
        super().__init__(
            f"密码长度须为 {min_length} 到 {max_length} 个字符",
            f"a password must be {min_length} to {max_length} characters long",
            field="password",
            min_length=min_length,
            max_length=max_length,
        )


class UnknownRole(SecurityError):
    code = "unknown_role"
    status = 422

    def __init__(self, role: str, known: list[str]) -> None:
        super().__init__(
            f"未知角色: {role!r}，可选: {', '.join(known)}",
            f"unknown role {role!r}; known roles: {', '.join(known)}",
            field="role",
            value=role,
            allowed=known,
        )


class UserExists(SecurityError):
    code = "user_exists"
    status = 409

    def __init__(self, username: str) -> None:
        super().__init__(f"用户已存在: {username}", f"user already exists: {username}", username=username)


class UnknownUser(SecurityError):
    code = "unknown_user"
    status = 404

    def __init__(self, username: str) -> None:
        super().__init__(f"用户不存在: {username}", f"no such user: {username}", username=username)


class InvalidDeviceId(SecurityError):
    code = "invalid_device_id"
    status = 422

    def __init__(self, device_id: str) -> None:
        super().__init__(
            f"设备编号无效: {device_id!r} (小写字母、数字和 -，最长 64)",
            f"invalid device id {device_id!r}: lowercase letters, digits and -, up to 64",
            field="device_id",
            value=device_id,
        )


class UnknownDeviceKind(SecurityError):
    code = "unknown_device_kind"
    status = 422

    def __init__(self, kind: str, known: list[str]) -> None:
        super().__init__(
            f"未知设备类型: {kind!r}，可选: {', '.join(known)}",
            f"unknown device kind {kind!r}; known kinds: {', '.join(known)}",
            field="kind",
            value=kind,
            allowed=known,
        )


class DeviceExists(SecurityError):
    code = "device_exists"
    status = 409

    def __init__(self, device_id: str) -> None:
        super().__init__(f"设备已存在: {device_id}", f"device already exists: {device_id}", device=device_id)


class UnknownDevice(SecurityError):
    code = "unknown_device"
    status = 404

    def __init__(self, device_id: str) -> None:
        super().__init__(f"设备不存在: {device_id}", f"no such device: {device_id}", device=device_id)


class AuthenticationFailed(SecurityError):
    """Wrong username or password; deliberately does not say which."""

    code = "authentication_failed"
    status = 401

    def __init__(self) -> None:
        super().__init__("用户名或密码错误，或账号已停用", "wrong username or password, or the account is disabled")


class NotAuthenticated(SecurityError):
    code = "not_authenticated"
    status = 401

    def __init__(self) -> None:
        super().__init__(
            "需要登录: 请在 Authorization 头中提供 Bearer 令牌",
            "authentication required: send a bearer token in the Authorization header",
        )


class InvalidToken(SecurityError):
    code = "invalid_token"
    status = 401

    def __init__(self, reason: str = "malformed or wrongly signed") -> None:
        super().__init__("令牌无效，请重新登录", f"invalid token ({reason}); log in again", reason=reason)


class TokenExpired(InvalidToken):
    code = "token_expired"

    def __init__(self, expired_at: str) -> None:
        SecurityError.__init__(
            self,
            f"令牌已于 {expired_at} 过期，请重新登录",
            f"token expired at {expired_at}; log in again",
            expired_at=expired_at,
        )


class PermissionDenied(SecurityError):
    code = "permission_denied"
    status = 403

    def __init__(self, permission: str, role: str) -> None:
        super().__init__(
            f"权限不足: 角色 {role} 没有权限 {permission}",
            f"permission denied: role {role} lacks permission {permission}",
            permission=permission,
            role=role,
        )


class SecretFileError(SecurityError):
    code = "secret_file_invalid"
    status = 500

    def __init__(self, path: str, reason: str, reason_zh: str) -> None:
        super().__init__(f"密钥文件 {path} 无效: {reason_zh}", f"secret file {path} is invalid: {reason}", path=path)
