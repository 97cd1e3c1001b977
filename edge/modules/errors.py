"""Scenario module errors (场景模块): each has a stable code, a Chinese and an English message, and the fields a
user needs. The web layer maps them to `{"code", "message", "message_en", "detail"}`."""

from __future__ import annotations

from edge.ledger.errors import DomainError


class ModuleError(DomainError):
    """Base of every refusal by the module host."""

    code = "module_error"


class ManifestInvalid(ModuleError):
    """A module's manifest.yaml is missing, does not parse, or breaks the schema; `detail.field` says where."""

    code = "module_manifest_invalid"
    status = 422


class ModuleNotFound(ModuleError):
    code = "module_not_found"
    status = 404

    def __init__(self, name: str) -> None:
        super().__init__(f"没有名为 {name} 的场景模块", f"no scenario module named {name}", module=name)


class ModuleStateConflict(ModuleError):
    """The module is not in a state that allows what was asked (e.g. rolling back with no previous version)."""

    code = "module_state_conflict"
    status = 409


class ModuleNoPreviousVersion(ModuleStateConflict):
    code = "module_no_previous_version"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"场景模块 {name} 没有可回滚的上一版本",
            f"scenario module {name} has no previous version to roll back to",
            module=name,
        )


class ModuleVersionExists(ModuleStateConflict):
    """A version is installed once; a changed module needs a new version number."""

    code = "module_version_exists"

    def __init__(self, name: str, version: int) -> None:
        super().__init__(
            f"场景模块 {name} 的版本 {version} 已安装（修改后的模块需要新的版本号）",
            f"scenario module {name} version {version} is already installed (a changed module needs a new version)",
            module=name,
            version=version,
        )


class ModuleSourceInvalid(ModuleError):
    """The module's files are not usable: no entry file, a path escaping the package, a file too large."""

    code = "module_source_invalid"
    status = 422
