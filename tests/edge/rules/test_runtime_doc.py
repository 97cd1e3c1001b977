"""docs/rules-runtime.md: the settings example loads, the notice and dry-run examples have exactly the fields the box
sends, and every setting the page names exists."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

from edge.config import Settings, load_settings
from edge.rules.actions import Notification
from edge.rules.dryrun import DryRun

DOC = Path(__file__).parents[3] / "docs" / "rules-runtime.md"
_FENCE = re.compile(r"^```(\w+) ([\w-]+)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def block(language: str, name: str) -> str:
    (body,) = [b for lang, info, b in _FENCE.findall(DOC.read_text("utf-8")) if (lang, info) == (language, name)]
    return body


def test_the_smtp_example_is_a_valid_configuration(tmp_path: Path) -> None:
    path = tmp_path / "storebox.toml"
    path.write_text(block("toml", "settings"), encoding="utf-8")
    settings = load_settings(path)
    assert settings.smtp_host == "smtp.example.cn" and settings.smtp_starttls and settings.smtp_port == 587
    assert settings.rule_email_routes["finance"] == ("ap@example.cn", "cfo@example.cn")
    assert settings.smtp_password is not None and "app-password" not in settings.model_dump_json()


def test_the_notice_example_has_the_fields_the_box_publishes() -> None:
    example = json.loads(block("json", "notification"))
    notice = Notification(12, "r", 2, "category_manager", "m", "m", "sup-1", "2026-12-06T02:00:00+00:00")
    real = json.loads(notice.payload(datetime(2026, 12, 6, 2, tzinfo=UTC)))
    assert set(example) == set(real) and set(example["data"]) == set(real["data"])


def test_the_dry_run_example_has_the_fields_of_the_answer() -> None:
    example = json.loads(block("json", "dry-run"))
    real = DryRun("r", 1, 7, datetime(2026, 11, 30).date(), datetime(2026, 12, 6).date()).to_json()
    assert set(example) == set(real)


def test_every_setting_the_page_names_exists() -> None:
    named = set(re.findall(r"`((?:rules?|smtp)_[a-z_]+)`", DOC.read_text("utf-8")))
    assert named and named <= set(Settings.model_fields), named - set(Settings.model_fields)
