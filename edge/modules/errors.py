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


class ModuleVersionRolledBack(ModuleVersionExists):
    """The same files of a version that was rolled back (by a user, broken KPIs or HQ): it does not come back."""

    def __init__(self, name: str, version: int, in_force: int) -> None:
        ModuleStateConflict.__init__(
            self,
            f"场景模块 {name} 的版本 {version} 曾被回滚 (现行版本 {in_force})，不会再次安装: 修正后请发布更高的版本号",
            f"scenario module {name} version {version} was rolled back (version {in_force} is in force) and is not"
            " installed again: publish the fix as a higher version",
            module=name,
            version=version,
            in_force=in_force,
        )


class ModuleSourceInvalid(ModuleError):
    """The module's files are not usable: no entry file, a path escaping the package, a file too large."""

    code = "module_source_invalid"
    status = 422


class ModuleManagedByPackage(ModuleStateConflict):
    """A module HQ delivered as a signed package is taken out of force by HQ (a package rollback), not by the store:
    the store's package table and HQ's view must keep agreeing with what runs."""

    code = "module_managed_by_package"

    def __init__(self, name: str, version: int) -> None:
        super().__init__(
            f"场景模块 {name} 第 {version} 版由总部下发包管理: 本店可停用它 (disable); 移除或回滚请用下发包回滚"
            f" (storebox packages rollback module {name}) 或由总部回滚",
            f"scenario module {name} version {version} is managed by an HQ package: this store may disable it; to"
            f" take it out or roll it back, roll the package back (storebox packages rollback module {name}) or ask HQ",
            module=name,
            version=version,
        )
