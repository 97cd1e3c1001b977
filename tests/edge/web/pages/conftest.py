"""Fixtures of the page tests: `site` serves a seeded box over real HTTP; browser fixtures live in browser.py."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.edge.web.apibox import ServedBox
from tests.edge.web.pages.browser import demo_box, page  # noqa: F401  (fixtures)
from tests.edge.web.pages.site import Site


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, template_db: Path) -> Iterator[Site]:
    path = tmp_path_factory.mktemp("site") / "storebox.db"
    shutil.copyfile(template_db, path)
    served = ServedBox(path)
    served.start()
    yield Site(served)
    served.stop()
