"""Message catalogs of the page: every label the page shows, in Chinese and English.

Catalogs are YAML files in `messages/`, one per area of the page, with flat keys and both languages side by side:

```yaml
stock.title: {zh: 库存, en: Stock}
stock.found: {zh: "找到 {n} 个商品", en: "{n} items found"}
```

`Catalog.text(lang, key, **fmt)` looks a key up and fills `{placeholders}` with `str.format`. A missing key is a
programming error: tests load every catalog and check each template's keys against it; at run time a missing key
is logged and shown as itself rather than failing the page.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

log = logging.getLogger(__name__)

LANGUAGES = ("zh", "en")
DEFAULT_LANGUAGE = "zh"
MESSAGES_DIR = Path(__file__).with_name("messages")


class CatalogError(ValueError):
    """A catalog file that does not load: the file and the reason."""


@dataclass(frozen=True, slots=True)
class Catalog:
    messages: Mapping[str, Mapping[str, str]]  # key -> {lang: text}

    def text(self, lang: str, key: str, /, **fmt: object) -> str:
        entry = self.messages.get(key)
        if entry is None:  # tests keep every key used defined; in the field a missing one shows as its key
            log.warning("message catalog has no key %r", key)
            return key
        text = entry.get(lang) or entry[DEFAULT_LANGUAGE]
        try:
            return text.format(**fmt) if fmt else text
        except (KeyError, IndexError, ValueError):
            log.warning("message %r does not take %s", key, sorted(fmt))
            return text

    def __contains__(self, key: object) -> bool:
        return key in self.messages

    def __iter__(self) -> Iterator[str]:
        return iter(self.messages)


def load_catalog(directory: Path = MESSAGES_DIR) -> Catalog:
    """All `*.yaml` files of `directory` merged; a key defined twice, or without both languages, is refused."""
    merged: dict[str, dict[str, str]] = {}
    for path in sorted(directory.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise CatalogError(f"{path.name}: not a mapping of keys to {{zh, en}}")
        for key, entry in data.items():
            if not isinstance(key, str) or not isinstance(entry, dict):
                raise CatalogError(f"{path.name}: {key!r} is not `key: {{zh: ..., en: ...}}`")
            if key in merged:
                raise CatalogError(f"{path.name}: {key!r} is already defined in another catalog file")
            missing = [lang for lang in LANGUAGES if not isinstance(entry.get(lang), str) or not entry[lang]]
            if missing:
                raise CatalogError(f"{path.name}: {key!r} lacks {', '.join(missing)}")
            merged[key] = {lang: str(entry[lang]) for lang in LANGUAGES}
    return Catalog(merged)


@cache
def catalog() -> Catalog:
    """The shipped catalog, loaded once."""
    return load_catalog()


def pick_language(value: str | None) -> str:
    """A supported language from a cookie or query value; Chinese first."""
    return value if value in LANGUAGES else DEFAULT_LANGUAGE
