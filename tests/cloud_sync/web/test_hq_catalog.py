"""The HQ pages keep the box page's rules: labels from the catalogs in both languages, no Chinese in templates,
the same look (base layout, stylesheet, vendored scripts), nothing from outside, and data only through the API."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

import cloud_sync.web
from cloud_sync.web.framework import NAV, TEMPLATES_DIR
from edge.web.pages import i18n
from edge.web.pages.framework import TEMPLATES_DIR as BOX_TEMPLATES_DIR

WEB_DIR = Path(cloud_sync.web.__file__).parent
HQ_CATALOG = i18n.MESSAGES_DIR / "hq.yaml"
CJK = re.compile(r"[\u3400-\u9fff\uff00-\uffef\u3000-\u303f]")
KEY_IN_TEMPLATE = re.compile(r"""\bt\(\s*['"]([a-z0-9_.]+)['"]""")
# Keys handed to macros (m.field('sku', 'hq.stock.sku', ...)) and keys in Python.
KEY_ARGUMENT = re.compile(r"""['"]((?:hq|app|common|error)\.[a-z0-9_.]+)['"]""")
STATIC_REF = re.compile(r"""static\('([^']+)'\)""")
# Page code may use the box page's framework pieces, the web stack and the standard library; never the database,
# the aggregator's tables and queries, or the HQ API's own modules.
ALLOWED = ("cloud_sync.web", "edge.web.pages", "fastapi", "starlette", "jinja2", "httpx")
FORBIDDEN_TOP = {"sqlalchemy", "sqlite3", "psycopg", "psycopg2", "tests"}


def test_hq_catalog_keys_are_prefixed_and_in_both_languages() -> None:
    data = yaml.safe_load(HQ_CATALOG.read_text(encoding="utf-8"))
    assert data and all(key.startswith("hq.") for key in data)
    for key, entry in data.items():
        assert set(entry) == {"zh", "en"}, key
        assert CJK.search(entry["zh"]) or key == "hq.app.name", key
        assert not CJK.search(entry["en"]), key
    assert "hq.app.name" in i18n.load_catalog()


def test_hq_templates_hold_no_chinese_and_use_only_known_keys() -> None:
    catalog = i18n.load_catalog()
    templates = list(TEMPLATES_DIR.rglob("*.html"))
    assert len(templates) >= 8
    for path in templates:
        source = path.read_text(encoding="utf-8")
        assert not CJK.search(source), f"{path.name}: Chinese text belongs in a catalog"
        for key in [*KEY_IN_TEMPLATE.findall(source), *KEY_ARGUMENT.findall(source)]:
            assert key in catalog, f"{path.relative_to(TEMPLATES_DIR)}: unknown key {key}"
    for _, label in NAV:
        assert label in catalog


def test_hq_page_code_uses_known_keys_and_no_chinese() -> None:
    catalog = i18n.load_catalog()
    for path in WEB_DIR.glob("*.py"):
        source = path.read_text(encoding="utf-8")
        for key in KEY_ARGUMENT.findall(source):
            assert key in catalog, f"{path.name}: unknown key {key}"
        tree = ast.parse(source)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert not CJK.search(node.value), f"{path.name}: Chinese text {node.value!r} belongs in a catalog"


def test_hq_page_code_reaches_data_only_through_the_api() -> None:
    files = list(WEB_DIR.glob("*.py"))
    assert len(files) >= 3
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path.name}: relative import"
                names = [node.module or ""]
            for name in names:
                top = name.split(".")[0]
                assert top not in FORBIDDEN_TOP, f"{path.name} imports {name}: use page.api"
                if top in ("cloud_sync", "edge"):
                    assert name.startswith(ALLOWED), f"{path.name} imports {name}: use page.api"


def test_the_hq_layout_is_the_box_pages_layout() -> None:
    box = (BOX_TEMPLATES_DIR / "base.html").read_text(encoding="utf-8")
    hq = (TEMPLATES_DIR / "hq_base.html").read_text(encoding="utf-8")
    # The same stylesheet and vendored scripts (live.js excepted: the aggregator has no live stream).
    assert set(STATIC_REF.findall(box)) - {"js/live.js"} == set(STATIC_REF.findall(hq))
    for piece in (
        'class="skip" href="#main"',
        'class="top"',
        'class="brand"',
        'class="store"',
        'class="menu-toggle"',
        'class="top-right"',
        'class="lang"',
        'id="nav" class="nav"',
        'main id="main"',
        'name="_csrf"',
    ):
        assert piece in box and piece in hq, piece
    external = re.compile(r"""(src|href)\s*=\s*["']?(https?:)?//""", re.I)
    for path in TEMPLATES_DIR.rglob("*.html"):
        assert not external.search(path.read_text(encoding="utf-8")), f"{path.name} loads something from outside"
