"""`storebox rules ...` on a real data dir (docs/rules.md): write a rule from a YAML file, check it, review it,
override it, dry-run it, install the built-in packs; refusals are one bilingual line and exit code 2."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from edge.cli import app
from edge.rules_cli.commands import facts_table, parse_param
from tests.edge.web.apibox import seed

runner = CliRunner()
DOCS = Path(__file__).resolve().parents[2] / "docs"

RULE_YAML = """\
id: lead-time-growth
name: {zh: 供应商交期延长超过阈值, en: Supplier lead time grows past a threshold}
trigger: {kind: signal, name: supplier.lead_time_changed}
when: "lead_time.change_days > params.threshold_days"
params: {threshold_days: 15}
then:
  - action: notify
    role: category_manager
    message:
      zh: "供应商 {supplier.name} 交货期延长 {lead_time.change_days} 天"
      en: "{supplier.name}: +{lead_time.change_days} days"
  - {action: adjust_parameter, parameter: service_level, scope: supplier, by: 0.02, min: 0.5, max: 0.99}
owner: purchasing-lead
impact: {what: 服务水平 +0.02, who: 品类经理, how_much: 交期延长超过 15 天的供应商}
"""


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rules-cli") / "storebox.db"
    seed(path)
    return path


@pytest.fixture
def data_dir(tmp_path: Path, template_db: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    shutil.copyfile(template_db, folder / "storebox.db")
    return folder


def storebox(data_dir: Path, *args: str) -> tuple[int, str, str]:
    done = runner.invoke(app, ["rules", *args, "--data-dir", str(data_dir)])
    return done.exit_code, done.stdout, done.stderr


def rule_file(tmp_path: Path, text: str = RULE_YAML, name: str = "rule.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_a_rule_is_written_reviewed_and_put_in_force_from_the_shell(data_dir: Path, tmp_path: Path) -> None:
    path = rule_file(tmp_path)
    code, out, err = storebox(data_dir, "validate", path)
    assert code == 0, err
    assert json.loads(out) == {"ok": True, "ready_for_review": True, "missing_for_review": []}

    code, out, err = storebox(data_dir, "create", path, "--actor", "purchaser")
    assert code == 0, err
    assert json.loads(out)["state"] == "draft"
    code, out, err = storebox(data_dir, "submit", "lead-time-growth", "--reviewer", "manager", "--actor", "purchaser")
    assert code == 0 and json.loads(out)["state"] == "in_review", err

    code, _, err = storebox(data_dir, "approve", "lead-time-growth", "--actor", "clerk")
    assert code == 2 and "rules:review" in err
    code, _, err = storebox(data_dir, "approve", "lead-time-growth", "--actor", "purchaser")
    assert code == 2 and "cannot approve" in err and "不能批准" in err
    code, out, err = storebox(data_dir, "approve", "lead-time-growth", "--actor", "manager", "--note", "ok")
    assert code == 0, err
    assert json.loads(out)["active_version"] == 1

    code, out, err = storebox(
        data_dir, "override", "lead-time-growth", "--disable", "--param", "threshold_days=20", "--actor", "manager"
    )
    assert code == 0, err
    assert json.loads(out)["params"] == {"threshold_days": 20} and json.loads(out)["enabled"] is False

    code, out, _ = storebox(data_dir, "list")
    assert code == 0 and "lead-time-growth" in out and "active" in out and " off " in out
    code, out, _ = storebox(data_dir, "show", "lead-time-growth")
    assert [r["action"] for r in json.loads(out)["reviews"]][:3] == ["overridden", "approved", "submitted"]

    code, out, err = storebox(data_dir, "dry-run", "lead-time-growth", "--days", "3")
    assert code == 0, err
    answer = json.loads(out)
    assert (answer["rule_id"], answer["days"], answer["firings"]) == ("lead-time-growth", 3, 0)

    code, out, _ = storebox(data_dir, "retire", "lead-time-growth", "--reason", "done", "--actor", "manager")
    assert code == 0 and json.loads(out)["state"] == "retired"
    code, out, _ = storebox(data_dir, "firings", "--rule", "lead-time-growth")
    assert code == 0 and out == ""


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (("lead_time.change_days > params.threshold_days", "lead_time.change_days > > 15"), "> > 15"),
        (("lead_time.change_days > params", "lead_time.change_dayz > params"), "lead_time.change_dayz"),
        (("role: category_manager", "role: nobody"), "nobody"),
    ],
)
def test_a_bad_rule_is_refused_with_one_clear_line_and_nothing_saved(
    data_dir: Path, tmp_path: Path, change: tuple[str, str], words: str
) -> None:
    path = rule_file(tmp_path, RULE_YAML.replace(*change))
    for command in ("validate", "create"):
        code, out, err = storebox(data_dir, command, path)
        assert code == 2 and out == "", (command, out)
        assert words in err and err.startswith("storebox: ")
    assert storebox(data_dir, "list")[1] == ""


def test_a_file_that_does_not_parse_is_refused(data_dir: Path, tmp_path: Path) -> None:
    code, _, err = storebox(data_dir, "create", rule_file(tmp_path, "id: [unclosed", "bad.yaml"))
    assert code == 2 and "does not parse" in err


def test_the_built_in_packs_are_installed_once(data_dir: Path) -> None:
    code, out, err = storebox(data_dir, "install-builtin")
    assert code == 0, err
    results = [json.loads(line) for line in out.splitlines()]
    assert len(results) == 5 and all(r["installed"] for r in results)
    code, out, _ = storebox(data_dir, "install-builtin", "papers-escalation")
    assert [json.loads(line)["installed"] for line in out.splitlines()] == [False]
    code, out, _ = storebox(data_dir, "packs")
    assert {json.loads(line)["name"] for line in out.splitlines()} == {
        "supplier-delay-response",
        "channel-return-flows",
        "price-difference-hold",
        "papers-escalation",
        "weather-response",
    }
    code, _, err = storebox(data_dir, "install-builtin", "nope")
    assert code == 2 and "no such built-in rule pack" in err


def test_a_pack_file_validates_as_a_whole(data_dir: Path, tmp_path: Path) -> None:
    rule: dict[str, Any] = yaml.safe_load(RULE_YAML)
    pack = {"description": "test", "rules": [rule, {**rule, "id": "second", "when": "nope.x > 1"}]}
    code, _, err = storebox(data_dir, "validate", rule_file(tmp_path, yaml.safe_dump(pack, allow_unicode=True)))
    assert code == 2 and "rules[1] (second)" in err
    pack["rules"] = [rule]
    code, out, _ = storebox(data_dir, "validate", rule_file(tmp_path, yaml.safe_dump(pack, allow_unicode=True)))
    assert code == 0 and json.loads(out) == {"ok": True, "rules": ["lead-time-growth"]}


def test_params_on_the_command_line_read_as_yaml_values() -> None:
    assert parse_param("threshold_days=20") == ("threshold_days", 20)
    assert parse_param("reason=包装破损") == ("reason", "包装破损")
    assert parse_param("ratio=0.5") == ("ratio", 0.5)
    assert parse_param("threshold_days=") == ("threshold_days", None)


def test_docs_rules_md_shows_the_fact_table_of_facts_yaml() -> None:
    """Regenerate with `storebox rules facts` (between the two markers) when facts.yaml changes."""
    text = (DOCS / "rules.md").read_text(encoding="utf-8")
    begin, end = "<!-- facts: storebox rules facts -->\n", "<!-- end of facts -->"
    assert text[text.index(begin) + len(begin) : text.index(end)] == facts_table()


def test_the_examples_in_docs_rules_md_validate() -> None:
    from edge.rules.model import validate_rule
    from edge.rules.packs import parse_pack

    text = (DOCS / "rules.md").read_text(encoding="utf-8")
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.S)]
    rules = [b for b in blocks if "id" in b]
    packs = [b for b in blocks if "rules" in b]
    assert rules and packs
    for doc in rules:
        assert validate_rule(doc).id == doc["id"]
    for doc in packs:
        assert parse_pack(doc).rule_ids


@pytest.mark.parametrize(
    ("when", "code"),
    [
        ("lead_time.change_days > > 15", "rule_syntax_invalid"),
        ("lead_time.change_dayz > 15", "rule_fact_unknown"),
        ("invoice.total_fen > 15", "rule_fact_unknown"),
        ('lead_time.change_days > "x"', "rule_type_invalid"),
        ('supplier.name =~ "a.*"', "rule_syntax_invalid"),
    ],
)
def test_the_refusals_docs_rules_md_lists_have_the_codes_it_says(when: str, code: str) -> None:
    from edge.rules.errors import RuleInvalid
    from edge.rules.model import validate_rule

    text = (DOCS / "rules.md").read_text(encoding="utf-8")
    assert f"`{code}`" in text
    with pytest.raises(RuleInvalid) as refused:
        validate_rule({**yaml.safe_load(RULE_YAML), "when": when})
    assert refused.value.code == code


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_any_param_text_is_read_or_refused_with_exit_code_2(text: str) -> None:
    try:
        name, _ = parse_param(text)
    except typer.Exit as exit_:
        assert exit_.exit_code == 2
        return
    assert name == name.strip() and name
