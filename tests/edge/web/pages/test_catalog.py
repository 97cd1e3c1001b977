"""Every label comes from the catalogs, in both languages; templates hold no Chinese; pages never touch the DB."""

from __future__ import annotations

import ast
import hashlib
import json
import re
from pathlib import Path

import pytest

from edge.web.pages import i18n
from edge.web.pages.framework import STATIC_DIR, TEMPLATES_DIR
from edge.web.pages.nav import NAV

PAGES_DIR = Path(i18n.__file__).parent
CJK = re.compile(r"[\u3400-\u9fff\uff00-\uffef\u3000-\u303f]")
KEY_IN_TEMPLATE = re.compile(r"""\bt\(\s*['"]([a-z0-9_.]+)['"]""")
KEY_IN_PYTHON = re.compile(r"""\.t\(\s*['"]([a-z0-9_.]+)['"]|flash=['"]([a-z0-9_.]+)['"]""")
ALLOWED_IMPORTS = ("edge.web.pages", "fastapi", "starlette", "jinja2", "httpx", "yaml", "openpyxl")


def test_every_catalog_key_has_chinese_and_english() -> None:
    catalog = i18n.load_catalog()
    assert catalog.messages, "no catalogs"
    for key, entry in catalog.messages.items():
        assert entry["zh"] and entry["en"], key
        assert CJK.search(entry["zh"]) or key.startswith(("app.name", "app.language")) or entry["zh"] == entry["en"], (
            key
        )


def test_a_catalog_file_without_a_language_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("x.y: {zh: 只有中文}\n", encoding="utf-8")
    with pytest.raises(i18n.CatalogError, match="lacks en"):
        i18n.load_catalog(tmp_path)
    (tmp_path / "a.yaml").write_text("x.y: {zh: 中, en: x}\n", encoding="utf-8")
    (tmp_path / "b.yaml").write_text("x.y: {zh: 中, en: x}\n", encoding="utf-8")
    with pytest.raises(i18n.CatalogError, match="already defined"):
        i18n.load_catalog(tmp_path)


def test_templates_hold_no_chinese_text_and_use_only_known_keys() -> None:
    catalog = i18n.load_catalog()
    for path in TEMPLATES_DIR.rglob("*.html"):
        text = path.read_text(encoding="utf-8")
        assert not CJK.search(text.replace("℃", "")), f"{path.name}: Chinese text belongs in a catalog"
        for key in KEY_IN_TEMPLATE.findall(text):
            if key.endswith((".", "_")):  # a computed key, t('x.state.' ~ state): some key must start with it
                assert any(k.startswith(key) for k in catalog), f"{path.name}: no key starts with {key}"
            else:
                assert key in catalog, f"{path.relative_to(TEMPLATES_DIR)}: unknown key {key}"
    for entry in NAV:
        assert entry.label in catalog


def test_page_code_uses_known_keys_and_no_chinese() -> None:
    catalog = i18n.load_catalog()
    for path in PAGES_DIR.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        for found in KEY_IN_PYTHON.findall(text):
            key = next(k for k in found if k)
            assert key in catalog, f"{path.name}: unknown key {key}"


def test_page_code_reaches_data_only_through_the_api() -> None:
    for path in PAGES_DIR.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top == "edge" or top == "tests":
                    assert name.startswith(ALLOWED_IMPORTS), f"{path.name} imports {name}: use page.api"
                assert name != "sqlite3", f"{path.name} imports sqlite3: use page.api"


def test_vendored_assets_match_their_manifest_and_nothing_is_fetched_from_outside() -> None:
    manifest = json.loads((STATIC_DIR / "vendor" / "vendor.json").read_text(encoding="utf-8"))
    names = {p["name"] for p in manifest["packages"]}
    assert {"htmx.org", "alpinejs", "uplot"} <= names
    for package in manifest["packages"]:
        assert package["version"] and package["license"] and package["integrity"].startswith("sha512-")
        for rel, digest in package["files"].items():
            assert hashlib.sha256((STATIC_DIR / "vendor" / rel).read_bytes()).hexdigest() == digest, rel
    external = re.compile(r"""(src|href)\s*=\s*["']?(https?:)?//""", re.I)
    for path in [
        *TEMPLATES_DIR.rglob("*.html"),
        *(STATIC_DIR / "js").glob("*.js"),
        *(STATIC_DIR / "css").glob("*.css"),
    ]:
        assert not external.search(path.read_text(encoding="utf-8")), f"{path.name} loads something from outside"
